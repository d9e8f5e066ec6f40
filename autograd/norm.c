/*
 * autograd/norm.c — layer norm and batch norm.
 *
 * Layer norm runs its own kernel forward (statistics saved per row). Its backward has two
 * forms of the same formula (xhat = (x - mean)·rstd, gx = g·gamma):
 *
 *   dx = rstd · (gx - mean(gx) - xhat · mean(gx · xhat)),  dgamma = Σ g·xhat,  dbeta = Σ g
 *
 *  - first order (no create_graph): one fused kernel, layernorm_bwd;
 *  - with create_graph: the same formula written in differentiable ops, where xhat comes
 *    from cg_layer_norm itself and rstd from cg_var, so that the second derivative (the
 *    gradient penalty through a critic with layer norm) is exact.
 * tests/test_autograd.c checks both forms against each other and against finite
 * differences. cg_layer_norm_leaky adds a leaky ReLU inside the same kernels (the forward
 * writes only the activation; the backward takes g through the activation's derivative
 * first): the BIB-AE's LN -> LReLU pairs, two passes over the tensor fewer each way.
 *
 * Batch norm is a composition of differentiable ops (mean, var, rsqrt, mul, add).
 */
#include <string.h>

#include "autograd/ops.h"

typedef struct { int naxes; float eps; int act; float slope; } ln_args;

static bool affine_ok(const cg_tensor *x, int naxes, const cg_tensor *p, const char *what) {
    if (!p) return true;
    bool ok = p->ndim == naxes && p->device == x->device;
    for (int i = 0; ok && i < naxes; i++) ok = p->shape[i] == x->shape[x->ndim - naxes + i];
    if (!ok) {
        char s1[96], s2[96];
        cg_set_error(CG_ERR_INVALID, "layer_norm: %s %s must have the shape of the last %d axes of %s",
                     what, CG_SHAPE_STR(p, s1), naxes, CG_SHAPE_STR(x, s2));
    }
    return ok;
}

static void bw_layer_norm(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    ln_args *a = CG_ARGS(n, ln_args);
    cg_tensor *x = n->in[0], *gamma = n->nin > 1 ? n->in[1] : NULL, *beta = n->nin > 2 ? n->in[2] : NULL;
    int nd = x->ndim, k = a->naxes;
    unsigned trailing = 0;
    for (int i = nd - k; i < nd; i++) trailing |= 1u << i;
    if (!n->create_graph) { /* fused first-order kernel */
        int64_t cols = 1;
        for (int i = nd - k; i < nd; i++) cols *= x->shape[i];
        int64_t rows = cg_numel(x) / (cols ? cols : 1);
        g = cg_contiguous(g);
        cg_tensor *dx = n->needs[0] ? cg_op_new(x->device, nd, x->shape) : NULL;
        cg_tensor *dg = gamma && n->needs[1] ? cg_op_new(x->device, gamma->ndim, gamma->shape) : NULL;
        cg_tensor *db = beta && n->needs[2] ? cg_op_new(x->device, beta->ndim, beta->shape) : NULL;
        cg_backend_of(x)->layernorm_bwd(dx ? cg_data(dx) : NULL, dg ? cg_data(dg) : NULL,
                                        db ? cg_data(db) : NULL, cg_data(g), cg_data(x),
                                        cg_data(n->saved[0]), cg_data(n->saved[1]),
                                        gamma ? cg_data(gamma) : NULL, beta ? cg_data(beta) : NULL, rows, cols,
                                        a->act, a->slope);
        gi[0] = dx;
        if (gamma) gi[1] = dg;
        if (beta) gi[2] = db;
        return;
    }
    /* differentiable form; the activation's derivative is piecewise constant: a mask */
    if (a->act) {
        bool prev = cg_set_grad_enabled(false);
        cg_tensor *mask = cg_unary(CG_U_LEAKY_STEP, cg_layer_norm(x, k, gamma, beta, a->eps), a->slope, 0.0f);
        cg_set_grad_enabled(prev);
        g = cg_mul(g, mask);
    }
    cg_tensor *xhat = cg_layer_norm(x, k, NULL, NULL, a->eps);
    if (gamma && n->needs[1]) gi[1] = cg_sum_to(cg_mul(g, xhat), gamma->ndim, gamma->shape);
    if (beta && n->needs[2]) gi[2] = cg_sum_to(g, beta->ndim, beta->shape);
    if (n->needs[0]) {
        cg_tensor *gx = gamma ? cg_mul(g, gamma) : g;
        cg_tensor *rstd = cg_rsqrt(cg_add_scalar(cg_var(x, trailing, true, 0), a->eps));
        cg_tensor *t = cg_sub(gx, cg_mean(gx, trailing, true));
        t = cg_sub(t, cg_mul(xhat, cg_mean(cg_mul(gx, xhat), trailing, true)));
        gi[0] = cg_mul(rstd, t);
    }
}

static cg_tensor *layer_norm(cg_tensor *x, int naxes, cg_tensor *gamma, cg_tensor *beta, float eps, int act,
                             float slope) {
    if (!x) return NULL;
    if (naxes < 1 || naxes > x->ndim) {
        cg_set_error(CG_ERR_INVALID, "layer_norm: cannot normalise over the last %d axes of a rank-%d tensor",
                     naxes, x->ndim);
        return NULL;
    }
    if (!affine_ok(x, naxes, gamma, "gain") || !affine_ok(x, naxes, beta, "bias")) return NULL;
    x = cg_contiguous(x);
    if (gamma) gamma = cg_contiguous(gamma);
    if (beta) beta = cg_contiguous(beta);
    int64_t cols = 1;
    for (int i = x->ndim - naxes; i < x->ndim; i++) cols *= x->shape[i];
    int64_t rows = cols ? cg_numel(x) / cols : 0;
    cg_tensor *out = cg_op_new(x->device, x->ndim, x->shape);
    cg_tensor *mean = cg_op_new(x->device, 1, &rows), *rstd = cg_op_new(x->device, 1, &rows);
    if (!out || !mean || !rstd) return NULL;
    cg_backend_of(x)->layernorm_fwd(cg_data(out), cg_data(mean), cg_data(rstd), cg_data(x),
                                    gamma ? cg_data(gamma) : NULL, beta ? cg_data(beta) : NULL, rows,
                                    cols, eps, act, slope);
    /* inputs: x, gamma, beta (a missing gamma with a present beta is passed as NULL) */
    cg_tensor *in[3] = {x, gamma, beta};
    int nin = beta ? 3 : gamma ? 2 : 1;
    if (nin == 3 && !gamma) { /* keep positions stable: record a ones gain */
        in[1] = cg_full(x->device, naxes, x->shape + x->ndim - naxes, 1.0f);
    }
    cg_node *n = cg_op_record(act ? "layer_norm_leaky" : "layer_norm", bw_layer_norm, out, nin, in);
    if (n) {
        *CG_ARGS(n, ln_args) = (ln_args){naxes, eps, act, slope};
        cg_node_save(n, 0, mean);
        cg_node_save(n, 1, rstd);
    }
    return out;
}

cg_tensor *cg_layer_norm(cg_tensor *x, int naxes, cg_tensor *gamma, cg_tensor *beta, float eps) {
    return layer_norm(x, naxes, gamma, beta, eps, 0, 0.0f);
}

cg_tensor *cg_layer_norm_leaky(cg_tensor *x, int naxes, cg_tensor *gamma, cg_tensor *beta, float eps, float slope) {
    return layer_norm(x, naxes, gamma, beta, eps, 1, slope);
}

cg_tensor *cg_batch_norm(cg_tensor *x, cg_tensor *gamma, cg_tensor *beta, cg_tensor *running_mean,
                         cg_tensor *running_var, bool training, float momentum, float eps) {
    if (!x) return NULL;
    if (x->ndim < 2) {
        cg_set_error(CG_ERR_INVALID, "batch_norm: input needs a channel axis (rank >= 2)");
        return NULL;
    }
    int64_t C = x->shape[1];
    const cg_tensor *ps[4] = {gamma, beta, running_mean, running_var};
    for (int i = 0; i < 4; i++)
        if (ps[i] && (ps[i]->ndim != 1 || ps[i]->shape[0] != C)) {
            char s[96];
            cg_set_error(CG_ERR_INVALID, "batch_norm: parameter %s should have shape (%lld)",
                         CG_SHAPE_STR(ps[i], s), (long long)C);
            return NULL;
        }
    unsigned axes = 0;
    int64_t cshape[CG_MAX_DIMS], count = 1;
    for (int i = 0; i < x->ndim; i++) {
        cshape[i] = i == 1 ? C : 1;
        if (i != 1) { axes |= 1u << i; count *= x->shape[i]; }
    }
    cg_tensor *mean, *var;
    if (training || !running_mean || !running_var) {
        mean = cg_mean(x, axes, true);
        var = cg_var(x, axes, true, 0);
        if (training && running_mean && running_var && mean && var) {
            /* running statistics: no gradient, updated in place (PyTorch: unbiased variance) */
            bool prev = cg_set_grad_enabled(false);
            float unbias = count > 1 ? (float)count / (float)(count - 1) : 1.0f;
            cg_tensor *m = cg_reshape(cg_detach(mean), 1, &C), *v = cg_reshape(cg_detach(var), 1, &C);
            cg_tensor *nm = cg_add(cg_scale(running_mean, 1.0f - momentum), cg_scale(m, momentum));
            cg_tensor *nv = cg_add(cg_scale(running_var, 1.0f - momentum), cg_scale(v, momentum * unbias));
            if (nm && nv) {
                const cg_backend *be = cg_backend_of(x);
                be->copy(cg_data(running_mean), cg_data(nm), (size_t)C * sizeof(float));
                be->copy(cg_data(running_var), cg_data(nv), (size_t)C * sizeof(float));
            }
            cg_set_grad_enabled(prev);
        }
    } else {
        mean = cg_reshape(running_mean, x->ndim, cshape);
        var = cg_reshape(running_var, x->ndim, cshape);
    }
    cg_tensor *y = cg_mul(cg_sub(x, mean), cg_rsqrt(cg_add_scalar(var, eps)));
    if (gamma) y = cg_mul(y, cg_reshape(gamma, x->ndim, cshape));
    if (beta) y = cg_add(y, cg_reshape(beta, x->ndim, cshape));
    return y;
}
