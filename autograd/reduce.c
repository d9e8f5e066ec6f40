/*
 * autograd/reduce.c — sum, mean, variance and norms over chosen axes; sum_to.
 *
 * Only `sum` touches a kernel; the others are compositions of differentiable ops, so their
 * derivatives (of any order) come for free. sum's backward is an expand (a stride-0 view)
 * of the gradient, and expand's backward is sum_to: the two are each other's adjoints.
 */
#include <math.h>

#include "autograd/ops.h"

typedef struct { int ndim; int64_t shape[CG_MAX_DIMS]; } shape_args;

static unsigned valid_axes(const cg_tensor *x, unsigned axes, const char *op) {
    unsigned all = x->ndim ? (1u << x->ndim) - 1u : 0u;
    if (axes & ~all) {
        cg_set_error(CG_ERR_INVALID, "%s: axis mask 0x%x names an axis beyond rank %d", op, axes, x->ndim);
        return ~0u;
    }
    return axes;
}

static void bw_sum(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    /* g has the kept-dims shape stored in args (or fewer dims); expand it back */
    shape_args *a = CG_ARGS(n, shape_args);
    cg_tensor *gk = cg_reshape(g, a->ndim, a->shape);
    gi[0] = cg_expand(gk, n->in[0]->ndim, n->in[0]->shape);
}

cg_tensor *cg_sum(cg_tensor *x, unsigned axes, bool keepdim) {
    if (!x) return NULL;
    if (valid_axes(x, axes, "sum") == ~0u) return NULL;
    x = cg_contiguous(x);
    if (!x) return NULL;
    int64_t kshape[CG_MAX_DIMS], oshape[CG_MAX_DIMS];
    int ond = 0;
    for (int i = 0; i < x->ndim; i++) {
        int red = (axes >> i) & 1u;
        kshape[i] = red ? 1 : x->shape[i];
        if (!red || keepdim) oshape[ond++] = kshape[i];
    }
    cg_tensor *out = cg_op_new(x->device, ond, oshape);
    if (!out) return NULL;
    cg_backend_of(x)->reduce_sum(cg_data(out), cg_data(x), x->ndim, x->shape, axes);
    cg_node *n = cg_op_record("sum", bw_sum, out, 1, &x);
    if (n) {
        shape_args *a = CG_ARGS(n, shape_args);
        a->ndim = x->ndim;
        for (int i = 0; i < x->ndim; i++) a->shape[i] = kshape[i];
    }
    return out;
}

cg_tensor *cg_sum_all(cg_tensor *x) {
    if (!x) return NULL;
    return cg_sum(x, x->ndim ? (1u << x->ndim) - 1u : 0u, false);
}

static int64_t count_axes(const cg_tensor *x, unsigned axes) {
    int64_t c = 1;
    for (int i = 0; i < x->ndim; i++)
        if ((axes >> i) & 1u) c *= x->shape[i];
    return c;
}

cg_tensor *cg_mean(cg_tensor *x, unsigned axes, bool keepdim) {
    if (!x) return NULL;
    int64_t c = count_axes(x, axes);
    return cg_scale(cg_sum(x, axes, keepdim), c ? 1.0f / (float)c : NAN);
}

cg_tensor *cg_mean_all(cg_tensor *x) {
    if (!x) return NULL;
    return cg_mean(x, x->ndim ? (1u << x->ndim) - 1u : 0u, false);
}

cg_tensor *cg_var(cg_tensor *x, unsigned axes, bool keepdim, int correction) {
    if (!x) return NULL;
    int64_t c = count_axes(x, axes);
    cg_tensor *d = cg_sub(x, cg_mean(x, axes, true));
    cg_tensor *s = cg_sum(cg_square(d), axes, keepdim);
    return cg_scale(s, c - correction > 0 ? 1.0f / (float)(c - correction) : NAN);
}

/* ‖x‖₂ with PyTorch's convention that the gradient at 0 is 0 (not NaN). */
static void bw_norm2(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    shape_args *a = CG_ARGS(n, shape_args);
    cg_tensor *nk = cg_reshape(n->out, a->ndim, a->shape);
    cg_tensor *gk = cg_reshape(g, a->ndim, a->shape);
    /* g / max(norm, tiny): where the norm is 0, x is 0 too, so the product is 0 */
    cg_tensor *r = cg_div(gk, cg_clamp(nk, 1e-30f, INFINITY));
    gi[0] = cg_mul(n->in[0], r);
}

cg_tensor *cg_norm(cg_tensor *x, float p, unsigned axes, bool keepdim) {
    if (!x) return NULL;
    if (p == 2.0f) {
        bool prev = cg_set_grad_enabled(false);
        cg_tensor *out = cg_sqrt(cg_sum(cg_square(x), axes, keepdim));
        cg_set_grad_enabled(prev);
        if (!out) return NULL;
        cg_node *n = cg_op_record("norm2", bw_norm2, out, 1, &x);
        if (n) {
            shape_args *a = CG_ARGS(n, shape_args);
            a->ndim = x->ndim;
            for (int i = 0; i < x->ndim; i++) a->shape[i] = ((axes >> i) & 1u) ? 1 : x->shape[i];
        }
        return out;
    }
    if (p == 1.0f) return cg_sum(cg_abs(x), axes, keepdim);
    if (!(p > 0.0f) || isinf(p)) {
        cg_set_error(CG_ERR_INVALID, "norm: p must be a finite positive number (got %g)", (double)p);
        return NULL;
    }
    return cg_pow(cg_sum(cg_pow(cg_abs(x), p), axes, keepdim), 1.0f / p);
}

cg_tensor *cg_sum_to(cg_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    if (ndim > x->ndim) {
        cg_set_error(CG_ERR_INVALID, "sum_to: target rank %d exceeds rank %d", ndim, x->ndim);
        return NULL;
    }
    unsigned axes = 0;
    int lead = x->ndim - ndim;
    for (int i = 0; i < x->ndim; i++) {
        if (i < lead) { axes |= 1u << i; continue; }
        int64_t t = shape[i - lead];
        if (t == x->shape[i]) continue;
        if (t != 1) {
            char s[96];
            cg_set_error(CG_ERR_INVALID, "sum_to: %s cannot be summed to a shape with %lld at axis %d",
                         CG_SHAPE_STR(x, s), (long long)t, i - lead);
            return NULL;
        }
        axes |= 1u << i;
    }
    if (!axes && lead == 0) return x;
    return cg_reshape(cg_sum(x, axes, true), ndim, shape);
}
