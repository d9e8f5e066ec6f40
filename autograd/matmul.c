/*
 * autograd/matmul.c — batched matrix product and linear layers.
 *
 * cg_matmul reads each operand as a batch of matrices through strides: a transposed view
 * (from cg_transpose) is passed to the kernel as a transpose flag, not copied. Batch axes
 * broadcast; an operand whose batch axes are all 1 (or absent) gets batch stride 0.
 * Backward: dA = dC · Bᵀ, dB = Aᵀ · dC, each summed back to its operand's shape.
 */
#include <string.h>

#include "autograd/ops.h"

/* An operand as the kernel sees it: transpose flag, leading dimension, batch stride. */
typedef struct { const float *p; int trans; int64_t ld, sbatch; } mat_view;

/* Describe the last two axes of x (rows R, cols C) and its batch axes, broadcast to
 * `bnd` batch axes of sizes `bshape`. Returns false when x must be copied first. */
static bool as_matrix(const cg_tensor *x, int bnd, const int64_t *bshape, int64_t nbatch, mat_view *v) {
    int nd = x->ndim;
    int64_t R = x->shape[nd - 2], C = x->shape[nd - 1];
    int64_t sr = x->stride[nd - 2], sc = x->stride[nd - 1];
    if (sc == 1 || C == 1) { v->trans = 0; v->ld = R == 1 ? C : sr; }
    else if (sr == 1 || R == 1) { v->trans = 1; v->ld = C == 1 ? R : sc; }
    else return false;
    if (v->ld < (v->trans ? R : C)) return false;
    /* batch: all broadcast (stride 0), or one uniform stride over the flattened batch */
    int xb = nd - 2;
    bool all_one = true;
    for (int i = 0; i < xb; i++) all_one &= x->shape[i] == 1;
    if (all_one || nbatch == 1) { v->sbatch = 0; v->p = cg_data(x); return true; }
    if (xb != bnd) return false;
    int64_t expect = -1;
    for (int i = bnd - 1; i >= 0; i--) {
        if (x->shape[i] != bshape[i]) return false;
        if (x->shape[i] == 1) continue;
        if (expect < 0) { expect = x->stride[i]; v->sbatch = expect; }
        else if (x->stride[i] != expect) return false;
        expect *= x->shape[i];
    }
    v->p = cg_data(x);
    return true;
}

static void bw_matmul(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    cg_tensor *a = n->in[0], *b = n->in[1];
    if (n->needs[0]) gi[0] = cg_sum_to(cg_matmul(g, cg_transpose(b, -1, -2)), a->ndim, a->shape);
    if (n->needs[1]) gi[1] = cg_sum_to(cg_matmul(cg_transpose(a, -1, -2), g), b->ndim, b->shape);
}

cg_tensor *cg_matmul(cg_tensor *a, cg_tensor *b) {
    if (!a || !b) return NULL;
    char s1[96], s2[96];
    if (a->ndim < 2 || b->ndim < 2 || a->shape[a->ndim - 1] != b->shape[b->ndim - 2] ||
        a->device != b->device) {
        cg_set_error(CG_ERR_INVALID, "matmul: cannot multiply %s by %s%s", CG_SHAPE_STR(a, s1),
                     CG_SHAPE_STR(b, s2), a->device != b->device ? " (different devices)" : "");
        return NULL;
    }
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    /* broadcast batch shape */
    int an = a->ndim - 2, bn = b->ndim - 2, nd = an > bn ? an : bn;
    int64_t bshape[CG_MAX_DIMS], nbatch = 1;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - an), ib = i - (nd - bn);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            cg_set_error(CG_ERR_INVALID, "matmul: batch axes of %s and %s do not broadcast",
                         CG_SHAPE_STR(a, s1), CG_SHAPE_STR(b, s2));
            return NULL;
        }
        bshape[i] = sa == 1 ? sb : sa;
        nbatch *= bshape[i];
    }
    mat_view va, vb;
    cg_tensor *ac = a, *bc = b;
    if (!as_matrix(ac, nd, bshape, nbatch, &va)) {
        int64_t full[CG_MAX_DIMS];
        memcpy(full, bshape, (size_t)nd * sizeof(int64_t));
        full[nd] = M; full[nd + 1] = K;
        ac = cg_contiguous(cg_expand(a, nd + 2, full));
        if (!ac || !as_matrix(ac, nd, bshape, nbatch, &va)) return NULL;
    }
    if (!as_matrix(bc, nd, bshape, nbatch, &vb)) {
        int64_t full[CG_MAX_DIMS];
        memcpy(full, bshape, (size_t)nd * sizeof(int64_t));
        full[nd] = K; full[nd + 1] = N;
        bc = cg_contiguous(cg_expand(b, nd + 2, full));
        if (!bc || !as_matrix(bc, nd, bshape, nbatch, &vb)) return NULL;
    }
    int64_t oshape[CG_MAX_DIMS];
    memcpy(oshape, bshape, (size_t)nd * sizeof(int64_t));
    oshape[nd] = M;
    oshape[nd + 1] = N;
    cg_tensor *out = cg_op_new(a->device, nd + 2, oshape);
    if (!out) return NULL;
    cg_backend_of(a)->gemm(va.trans, vb.trans, M, N, K, 1.0f, va.p, va.ld, va.sbatch, vb.p, vb.ld,
                           vb.sbatch, 0.0f, cg_data(out), N, M * N, nbatch);
    cg_tensor *in[2] = {a, b};
    cg_op_record("matmul", bw_matmul, out, 2, in);
    return out;
}

cg_tensor *cg_linear(cg_tensor *x, cg_tensor *w, cg_tensor *b) {
    if (!x || !w) return NULL;
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1] ||
        (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) {
        char s1[96], s2[96], s3[96] = "none";
        if (b) CG_SHAPE_STR(b, s3);
        cg_set_error(CG_ERR_INVALID, "linear: input %s does not fit weight %s (out, in) and bias %s",
                     CG_SHAPE_STR(x, s1), CG_SHAPE_STR(w, s2), s3);
        return NULL;
    }
    /* (..., in) -> (rows, in) · Wᵀ -> (rows, out) -> (..., out) */
    int64_t rows = x->ndim > 1 ? cg_numel(x) / x->shape[x->ndim - 1] : 1;
    cg_tensor *x2 = cg_reshape(x, 2, (int64_t[]){rows, x->shape[x->ndim - 1]});
    cg_tensor *y = cg_matmul(x2, cg_transpose(w, 0, 1));
    if (b) y = cg_add(y, b);
    int64_t osh[CG_MAX_DIMS];
    memcpy(osh, x->shape, sizeof osh);
    osh[x->ndim - 1] = w->shape[0];
    return cg_reshape(y, x->ndim, osh);
}
