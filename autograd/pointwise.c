/*
 * autograd/pointwise.c — the fused per-voxel layer for inference.
 *
 * A stack of kernel-size-1 convolutions with layer norm and leaky ReLU between them (the
 * BIB-AE post-processor) is, per voxel, a small MLP; only the layer-norm statistics couple
 * the voxels. cg_pointwise_layer runs one layer as one kernel (core/backend.h,
 * pointwise_layer): it normalises and activates its input on the fly and returns its
 * output's statistics, so the normalised activations are never written out. Two more
 * fusions (see cg_pw_opts): the layer before a stack's first norm, when it has one input
 * channel (x_scale, x_shift), and the one-channel layer after its last (proj).
 *
 * It has no backward: training uses the same computation unfused (cg_conv3d, cg_layer_norm,
 * cg_leaky_relu), which tests/test_backend_ops.c checks it against. Called while a gradient
 * is being recorded, it refuses with an error rather than silently dropping the gradient.
 */
#include "autograd/ops.h"

static bool shape_is(const cg_tensor *t, int64_t a, int64_t b) {
    return t && t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

cg_tensor *cg_pointwise_layer(cg_tensor *x, cg_tensor *w, const cg_pw_opts *o, cg_tensor **y_stats) {
    static const cg_pw_opts none = {0};
    if (!o) o = &none;
    if (!x || !w) return NULL;
    const char *op = "pointwise_layer";
    enum { NT = 11 };
    cg_tensor *all[NT] = {x, o->x_scale, o->x_shift, o->x_mean, o->x_rstd, o->gamma, o->beta, w, o->bias, o->bias_b, o->proj};
    for (int i = 0; i < NT; i++) {
        if (!all[i]) continue;
        if (cg_grad_enabled() && all[i]->requires_grad) {
            cg_set_error(CG_ERR_INVALID, "%s is inference-only (no gradient): train with cg_conv3d, "
                         "cg_layer_norm and cg_leaky_relu, or turn grad mode off", op);
            return NULL;
        }
        if (all[i]->device != x->device) {
            cg_set_error(CG_ERR_INVALID, "%s: tensors on different devices", op);
            return NULL;
        }
    }
    if (x->ndim < 3) {
        cg_set_error(CG_ERR_INVALID, "%s: input needs axes (B, C, voxels...)", op);
        return NULL;
    }
    int64_t B = x->shape[0], xc = x->shape[1], V = (B * xc) > 0 ? cg_numel(x) / (B * xc) : 0;
    int64_t Ci = o->x_scale ? cg_numel(o->x_scale) : xc, Co = w->shape[0];
    char s1[96], s2[96];
    if (o->x_scale && (xc != 1 || (o->x_shift && cg_numel(o->x_shift) != Ci))) {
        cg_set_error(CG_ERR_INVALID, "%s: an expanded input (x_scale) needs one channel, got %s, and x_shift "
                     "as long as x_scale (%lld)", op, CG_SHAPE_STR(x, s1), (long long)Ci);
        return NULL;
    }
    if (o->x_shift && !o->x_scale) {
        cg_set_error(CG_ERR_INVALID, "%s: x_shift without x_scale", op);
        return NULL;
    }
    if (cg_numel(w) != Co * Ci || w->ndim < 2 || w->shape[1] != Ci) {
        cg_set_error(CG_ERR_INVALID, "%s: weight %s does not fit input %s (need (Co, %lld[, 1, 1, 1]))", op,
                     CG_SHAPE_STR(w, s1), CG_SHAPE_STR(x, s2), (long long)Ci);
        return NULL;
    }
    if ((o->x_mean == NULL) != (o->x_rstd == NULL) ||
        (o->x_mean && (!shape_is(o->x_mean, B, Ci) || !shape_is(o->x_rstd, B, Ci))) ||
        (o->gamma && cg_numel(o->gamma) != V) || (o->beta && cg_numel(o->beta) != V) ||
        (o->bias && cg_numel(o->bias) != Co) || (o->bias_b && !shape_is(o->bias_b, B, Co)) ||
        (o->proj && cg_numel(o->proj) != Co)) {
        cg_set_error(CG_ERR_INVALID, "%s: statistics must be (B, Ci) = (%lld, %lld), gamma/beta %lld voxels, "
                     "bias and proj (%lld), per-sample bias (%lld, %lld)", op, (long long)B, (long long)Ci,
                     (long long)V, (long long)Co, (long long)B, (long long)Co);
        return NULL;
    }
    if (o->proj && y_stats) {
        cg_set_error(CG_ERR_INVALID, "%s: no statistics with proj (the projected layer has no norm after it)", op);
        return NULL;
    }
    cg_tensor *in[NT];
    for (int i = 0; i < NT; i++) in[i] = all[i] ? cg_contiguous(all[i]) : NULL;
    int64_t oshape[CG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) oshape[i] = x->shape[i];
    oshape[1] = o->proj ? 1 : Co;
    cg_tensor *y = cg_op_new(x->device, x->ndim, oshape);
    cg_tensor *m = y_stats ? cg_op_new(x->device, 2, (int64_t[]){B, Co}) : NULL;
    cg_tensor *r = y_stats ? cg_op_new(x->device, 2, (int64_t[]){B, Co}) : NULL;
    if (!y || (y_stats && (!m || !r))) return NULL;
#define P(t) ((t) ? cg_data(t) : NULL)
    cg_pw_args a = {.y = cg_data(y), .y_mean = P(m), .y_rstd = P(r), .x = cg_data(in[0]), .x_scale = P(in[1]),
                    .x_shift = P(in[2]), .x_mean = P(in[3]), .x_rstd = P(in[4]), .gamma = P(in[5]), .beta = P(in[6]),
                    .act = o->act, .slope = o->slope, .w = cg_data(in[7]), .bias = P(in[8]), .bias_b = P(in[9]),
                    .proj = P(in[10]), .B = B, .Ci = (int)Ci, .Co = (int)Co, .V = V, .eps = o->eps};
#undef P
    cg_backend_of(x)->pointwise_layer(&a);
    if (y_stats) {
        y_stats[0] = m;
        y_stats[1] = r;
    }
    return y;
}

/* The expanded input u = x_scale[c]·x + x_shift[c] has, per sample, the mean
 * x_scale[c]·mean(x) + x_shift[c] and the variance x_scale[c]²·var(x): one pass over the
 * one-channel x gives the statistics of all Ci channels. */
int cg_pointwise_expand_stats(cg_tensor *x, cg_tensor *x_scale, cg_tensor *x_shift, float eps, cg_tensor **mean,
                              cg_tensor **rstd) {
    if (!x || !x_scale || !mean || !rstd) return -1;
    if (x->ndim < 3 || x->shape[1] != 1) {
        char s1[96];
        cg_set_error(CG_ERR_INVALID, "pointwise_expand_stats: x must be (B, 1, voxels...), got %s", CG_SHAPE_STR(x, s1));
        return -1;
    }
    int64_t B = x->shape[0], Ci = cg_numel(x_scale);
    cg_tensor *flat = cg_reshape(x, 2, (int64_t[]){B, -1});
    cg_tensor *sc = cg_reshape(x_scale, 2, (int64_t[]){1, Ci});
    cg_tensor *mx = flat ? cg_mean(flat, 1u << 1, true) : NULL;     /* (B, 1) */
    cg_tensor *vx = flat ? cg_var(flat, 1u << 1, true, 0) : NULL;   /* biased, as the layer norm */
    cg_tensor *m = mx && sc ? cg_mul(mx, sc) : NULL;                /* (B, Ci) */
    if (m && x_shift) {
        cg_tensor *sh = cg_reshape(x_shift, 2, (int64_t[]){1, Ci});
        m = sh ? cg_add(m, sh) : NULL;
    }
    cg_tensor *sq = sc ? cg_square(sc) : NULL;
    cg_tensor *v = vx && sq ? cg_mul(vx, sq) : NULL;
    cg_tensor *r = v ? cg_rsqrt(cg_add_scalar(v, eps)) : NULL;
    if (!m || !r) return -1;
    *mean = m;
    *rstd = r;
    return 0;
}
