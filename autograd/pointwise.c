/*
 * autograd/pointwise.c — the fused per-voxel layer for inference.
 *
 * A stack of kernel-size-1 convolutions with layer norm and leaky ReLU between them (the
 * BIB-AE post-processor) is, per voxel, a small MLP; only the layer-norm statistics couple
 * the voxels. cg_pointwise_layer runs one layer as one kernel (core/backend.h,
 * pointwise_layer): it normalises and activates its input on the fly and returns its
 * output's statistics, so the normalised activations are never written out.
 *
 * It has no backward: training uses the same computation unfused (cg_conv3d, cg_layer_norm,
 * cg_leaky_relu), which tests/test_backend_ops.c checks it against. Called while a gradient
 * is being recorded, it refuses with an error rather than silently dropping the gradient.
 */
#include "autograd/ops.h"

static bool shape_is(const cg_tensor *t, int64_t a, int64_t b) {
    return t && t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

cg_tensor *cg_pointwise_layer(cg_tensor *x, cg_tensor *x_mean, cg_tensor *x_rstd, cg_tensor *gamma,
                              cg_tensor *beta, int act, float slope, cg_tensor *w, cg_tensor *bias,
                              cg_tensor *bias_b, float eps, cg_tensor **y_stats) {
    if (!x || !w) return NULL;
    const char *op = "pointwise_layer";
    cg_tensor *all[8] = {x, x_mean, x_rstd, gamma, beta, w, bias, bias_b};
    for (int i = 0; i < 8; i++) {
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
    int64_t B = x->shape[0], Ci = x->shape[1], V = (B * Ci) > 0 ? cg_numel(x) / (B * Ci) : 0;
    int64_t Co = w->shape[0];
    char s1[96], s2[96];
    if (cg_numel(w) != Co * Ci || w->ndim < 2 || w->shape[1] != Ci) {
        cg_set_error(CG_ERR_INVALID, "%s: weight %s does not fit input %s (need (Co, %lld[, 1, 1, 1]))", op,
                     CG_SHAPE_STR(w, s1), CG_SHAPE_STR(x, s2), (long long)Ci);
        return NULL;
    }
    if ((x_mean == NULL) != (x_rstd == NULL) || (x_mean && (!shape_is(x_mean, B, Ci) || !shape_is(x_rstd, B, Ci))) ||
        (gamma && cg_numel(gamma) != V) || (beta && cg_numel(beta) != V) ||
        (bias && cg_numel(bias) != Co) || (bias_b && !shape_is(bias_b, B, Co))) {
        cg_set_error(CG_ERR_INVALID, "%s: statistics must be (B, Ci) = (%lld, %lld), gamma/beta %lld voxels, "
                     "bias (%lld), per-sample bias (%lld, %lld)", op, (long long)B, (long long)Ci, (long long)V,
                     (long long)Co, (long long)B, (long long)Co);
        return NULL;
    }
    cg_tensor *in[8];
    for (int i = 0; i < 8; i++) in[i] = all[i] ? cg_contiguous(all[i]) : NULL;
    int64_t oshape[CG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) oshape[i] = x->shape[i];
    oshape[1] = Co;
    cg_tensor *y = cg_op_new(x->device, x->ndim, oshape);
    cg_tensor *m = y_stats ? cg_op_new(x->device, 2, (int64_t[]){B, Co}) : NULL;
    cg_tensor *r = y_stats ? cg_op_new(x->device, 2, (int64_t[]){B, Co}) : NULL;
    if (!y || (y_stats && (!m || !r))) return NULL;
#define P(t) ((t) ? cg_data(t) : NULL)
    cg_backend_of(x)->pointwise_layer(cg_data(y), P(m), P(r), cg_data(in[0]), P(in[1]), P(in[2]), P(in[3]),
                                      P(in[4]), act, slope, cg_data(in[5]), P(in[6]), P(in[7]), B, (int)Ci,
                                      (int)Co, V, eps);
#undef P
    if (y_stats) {
        y_stats[0] = m;
        y_stats[1] = r;
    }
    return y;
}
