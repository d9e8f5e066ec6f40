/*
 * autograd/tape.c — the tape, grad mode, and the backward sweep (see tape.h).
 *
 * Gradient convention: the sweep keeps each tensor's running gradient in t->bw_grad and
 * adds contributions as they arrive (+=); kernels and backward functions only write (=).
 * Leaf gradients accumulate across calls into t->grad (+=), like PyTorch's .grad.
 */
#include "autograd/tape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "core/backend.h"

typedef struct {
    cg_tensor **temps;
    size_t ntemps, cap_temps;
    cg_node **nodes;
    size_t nnodes, cap_nodes;
    bool no_grad;          /* grad mode is on unless set */
    uint32_t generation;   /* bumped per sweep, for bw_mark */
} tape_t;

static _Thread_local tape_t T;

/* ------------------------------------------------------------ grad mode ---- */

bool cg_grad_enabled(void) { return !T.no_grad; }

bool cg_set_grad_enabled(bool on) {
    bool prev = !T.no_grad;
    T.no_grad = !on;
    return prev;
}

void cg_set_requires_grad(cg_tensor *t, bool on) {
    if (t) t->requires_grad = on;
}

/* ------------------------------------------------------------ tape memory ---- */

cg_tensor *cg_op_adopt(cg_tensor *t) {
    if (!t) return NULL;
    if (T.ntemps == T.cap_temps) {
        T.cap_temps = T.cap_temps ? 2 * T.cap_temps : 1024;
        T.temps = cg_xrealloc(T.temps, T.cap_temps * sizeof *T.temps);
    }
    T.temps[T.ntemps++] = t;
    return t;
}

cg_tensor *cg_op_new(cg_device dev, int ndim, const int64_t *shape) {
    return cg_op_adopt(cg_tensor_new(dev, ndim, shape));
}

static void node_free(cg_node *n) {
    if (n->out && n->out->node == n) n->out->node = NULL; /* a kept output becomes a leaf */
    for (int i = 0; i < n->nin; i++) cg_tensor_free(n->in[i]);
    for (int i = 0; i < 4; i++) cg_tensor_free(n->saved[i]);
    if (n->saved_idx && --n->saved_idx->refcount == 0) {
        cg_backend_get(n->saved_idx->device)->free(n->saved_idx->data);
        free(n->saved_idx);
    }
    free(n->in);
    free(n->needs);
    free(n);
}

cg_tape_pos cg_tape_mark(void) { return (cg_tape_pos){T.ntemps, T.nnodes}; }

void cg_tape_rewind(cg_tape_pos m) {
    CG_ASSERT(m.nodes <= T.nnodes && m.temps <= T.ntemps);
    while (T.nnodes > m.nodes) node_free(T.nodes[--T.nnodes]);
    while (T.ntemps > m.temps) cg_tensor_free(T.temps[--T.ntemps]);
}

void cg_tape_reset(void) {
    cg_tape_rewind((cg_tape_pos){0, 0});
    free(T.temps);
    free(T.nodes);
    T.temps = NULL;
    T.nodes = NULL;
    T.cap_temps = T.cap_nodes = 0;
}

size_t cg_tape_nodes(void) { return T.nnodes; }
size_t cg_tape_temps(void) { return T.ntemps; }

bool cg_any_null(int n, cg_tensor *const *t) {
    for (int i = 0; i < n; i++)
        if (!t[i]) return true;
    return false;
}

cg_node *cg_op_record(const char *op, cg_backward_fn backward, cg_tensor *out, int nin,
                      cg_tensor *const *in) {
    if (T.no_grad || !out) return NULL;
    bool any = false;
    for (int i = 0; i < nin; i++) any |= in[i] && in[i]->requires_grad;
    if (!any) return NULL;
    cg_node *n = cg_xcalloc(1, sizeof *n);
    n->op = op;
    n->backward = backward;
    n->math = (unsigned char)cg_get_math_mode();
    n->out = out;
    n->nin = nin;
    n->in = cg_xcalloc((size_t)(nin ? nin : 1), sizeof *n->in);
    n->needs = cg_xcalloc((size_t)(nin ? nin : 1), sizeof *n->needs);
    for (int i = 0; i < nin; i++) n->in[i] = cg_tensor_retain(in[i]);
    out->requires_grad = true;
    out->node = n;
    if (T.nnodes == T.cap_nodes) {
        T.cap_nodes = T.cap_nodes ? 2 * T.cap_nodes : 1024;
        T.nodes = cg_xrealloc(T.nodes, T.cap_nodes * sizeof *T.nodes);
    }
    T.nodes[T.nnodes++] = n;
    return n;
}

void cg_node_save(cg_node *n, int slot, cg_tensor *t) {
    CG_ASSERT(slot >= 0 && slot < 4 && !n->saved[slot]);
    n->saved[slot] = cg_tensor_retain(t);
}

/* ------------------------------------------------------------- the sweep ---- */

typedef struct {
    cg_tensor **v;
    size_t n, cap;
} tlist;

static void tlist_push(tlist *l, cg_tensor *t) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = cg_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = t;
}

/* Add gradient g (a reference we own) into t->bw_grad. With create_graph the sum is a
 * recorded op; otherwise it is computed without a trace and its temporaries released. */
static void accumulate(cg_tensor *t, cg_tensor *g, bool create_graph, tlist *touched) {
    if (!t->bw_grad) {
        t->bw_grad = g;
        tlist_push(touched, t);
        return;
    }
    cg_tape_pos m = cg_tape_mark();
    cg_tensor *s = cg_tensor_retain(cg_add(t->bw_grad, g));
    CG_ASSERT_MSG(s, cg_last_error());
    if (!create_graph) cg_tape_rewind(m);
    cg_tensor_free(t->bw_grad);
    cg_tensor_free(g);
    t->bw_grad = s;
}

static bool is_requested(const cg_tensor *t, int nin, cg_tensor *const *ins) {
    for (int i = 0; i < nin; i++)
        if (ins[i] == t) return true;
    return false;
}

/* The one sweep behind cg_backward and cg_grad. With ins == NULL (backward mode) every input
 * that requires a gradient gets one and leaves end up in touched; otherwise only what leads
 * to ins[] is computed. */
static cg_status sweep(int nout, cg_tensor *const *outs, cg_tensor *const *gouts, int nin,
                       cg_tensor *const *ins, bool create_graph, tlist *touched) {
    uint32_t gen = ++T.generation;
    size_t end = T.nnodes; /* nodes recorded during the sweep are not part of it */

    if (ins) { /* relevance: a tensor matters if a requested input flows into it */
        for (int i = 0; i < nin; i++) ins[i]->bw_mark = gen;
        for (size_t k = 0; k < end; k++) {
            cg_node *n = T.nodes[k];
            for (int j = 0; j < n->nin; j++)
                if (n->in[j]->bw_mark == gen) { n->out->bw_mark = gen; break; }
        }
    }

    for (int k = 0; k < nout; k++) {
        cg_tensor *o = outs[k];
        cg_tensor *g = gouts ? gouts[k] : NULL;
        if (g && !cg_same_shape(g, o)) {
            char a[96], b[96];
            return cg_set_error(CG_ERR_INVALID, "gradient seed of shape %s does not match output %s",
                                CG_SHAPE_STR(g, a), CG_SHAPE_STR(o, b));
        }
        if (!g) {
            g = cg_tensor_full(o->device, o->ndim, o->shape, 1.0f);
            if (!g) return cg_last_status();
        } else {
            cg_tensor_retain(g);
        }
        accumulate(o, g, create_graph, touched);
    }

    bool prev = cg_set_grad_enabled(create_graph);
    cg_tensor *gin_small[8];
    for (size_t k = end; k-- > 0;) {
        cg_node *n = T.nodes[k];
        cg_tensor *out = n->out;
        if (!out->bw_grad) continue;
        if (ins && out->bw_mark != gen) continue;
        bool any = false;
        for (int j = 0; j < n->nin; j++) {
            n->needs[j] = ins ? n->in[j]->bw_mark == gen : n->in[j]->requires_grad;
            any |= n->needs[j];
        }
        if (any) {
            cg_tensor **gin = n->nin <= 8 ? gin_small : cg_xcalloc((size_t)n->nin, sizeof *gin);
            memset(gin, 0, (size_t)n->nin * sizeof *gin);
            n->create_graph = create_graph;
            cg_tape_pos m = cg_tape_mark();
            cg_math_mode pm = cg_set_math_mode((cg_math_mode)n->math);
            n->backward(n, out->bw_grad, gin);
            cg_set_math_mode(pm);
            for (int j = 0; j < n->nin; j++) {
                if (!n->needs[j] || !gin[j]) continue;
                if (!cg_same_shape(gin[j], n->in[j])) { /* a bug in that op's backward */
                    char a[96], b[96], msg[320];
                    snprintf(msg, sizeof msg, "backward of '%s' returned %s for input %d of shape %s",
                             n->op, CG_SHAPE_STR(gin[j], a), j, CG_SHAPE_STR(n->in[j], b));
                    cg_fatal(__FILE__, __LINE__, "gradient shape == input shape", msg);
                }
                cg_tensor_retain(gin[j]);
            }
            if (!create_graph) cg_tape_rewind(m); /* free the backward's intermediates */
            for (int j = 0; j < n->nin; j++)
                if (n->needs[j] && gin[j]) accumulate(n->in[j], gin[j], create_graph, touched);
            if (gin != gin_small) free(gin);
        }
        if (!(ins && is_requested(out, nin, ins))) { /* done with it: free early */
            cg_tensor_free(out->bw_grad);
            out->bw_grad = NULL;
        }
    }
    cg_set_grad_enabled(prev);
    return CG_OK;
}

static void clear_touched(tlist *touched) {
    for (size_t i = 0; i < touched->n; i++) {
        cg_tensor_free(touched->v[i]->bw_grad);
        touched->v[i]->bw_grad = NULL;
    }
    free(touched->v);
}

/* dst (contiguous, owned) += src (any strides, same shape and device), without a trace. */
static void add_into(cg_tensor *dst, const cg_tensor *src) {
    cg_bcast_desc d = {.ndim = dst->ndim};
    for (int i = 0; i < dst->ndim; i++) {
        d.shape[i] = dst->shape[i];
        d.sa[i] = dst->stride[i];
        d.sb[i] = src->stride[i];
    }
    cg_backend_of(dst)->binary(CG_B_ADD, cg_data(dst), cg_data(dst), cg_data(src), &d);
}

cg_status cg_backward_with(cg_tensor *out, cg_tensor *grad_out) {
    if (!out) return cg_set_error(CG_ERR_INVALID, "cg_backward on a NULL tensor (an earlier op failed: %s)",
                                  cg_last_error());
    if (!out->requires_grad)
        return cg_set_error(CG_ERR_INVALID,
                            "cg_backward: the output does not require a gradient (no tensor with "
                            "requires_grad reached it, or grad mode was off)");
    tlist touched = {0};
    cg_tensor *gouts[1] = {grad_out};
    cg_status st = sweep(1, &out, grad_out ? gouts : NULL, 0, NULL, false, &touched);
    if (st == CG_OK) {
        for (size_t i = 0; i < touched.n; i++) {
            cg_tensor *t = touched.v[i];
            if (t->node || !t->requires_grad || !t->bw_grad) continue; /* not a leaf */
            if (!t->grad) {
                t->grad = cg_tensor_clone(t->bw_grad, t->device);
                if (!t->grad) { st = cg_last_status(); break; }
            } else {
                add_into(t->grad, t->bw_grad);
            }
        }
    }
    clear_touched(&touched);
    return st;
}

cg_status cg_backward(cg_tensor *out) { return cg_backward_with(out, NULL); }

cg_status cg_grad(int nout, cg_tensor *const *outs, cg_tensor *const *gouts, int nin,
                  cg_tensor *const *ins, cg_tensor **result, bool create_graph) {
    if (cg_any_null(nout, outs) || cg_any_null(nin, ins))
        return cg_set_error(CG_ERR_INVALID, "cg_grad on a NULL tensor (an earlier op failed: %s)",
                            cg_last_error());
    for (int i = 0; i < nin; i++) result[i] = NULL;
    tlist touched = {0};
    cg_status st = sweep(nout, outs, gouts, nin, ins, create_graph, &touched);
    for (int i = 0; st == CG_OK && i < nin; i++) {
        cg_tensor *g = ins[i]->bw_grad;
        if (g) {
            /* hand our reference to the tape: the caller gets a temporary */
            ins[i]->bw_grad = NULL;
            for (int j = i + 1; j < nin; j++) /* the same tensor requested twice */
                if (ins[j] == ins[i]) ins[i]->bw_grad = cg_tensor_retain(g);
            result[i] = cg_op_adopt(g);
        } else {
            result[i] = cg_op_adopt(cg_tensor_zeros(ins[i]->device, ins[i]->ndim, ins[i]->shape));
            if (!result[i]) st = cg_last_status();
        }
    }
    clear_touched(&touched);
    return st;
}
