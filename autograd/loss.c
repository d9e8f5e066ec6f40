/*
 * autograd/loss.c — loss terms, all written as compositions of differentiable ops.
 *
 * Because each loss is just ops, its gradient (and gradient of gradient) is exact with no
 * code here; adding a new loss term is writing its formula. Shapes are checked up front so
 * a mismatch is one clear message.
 */
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"

static bool same_shape(const char *op, cg_tensor *a, cg_tensor *b) {
    if (cg_same_shape(a, b)) return true;
    char s1[96], s2[96];
    cg_set_error(CG_ERR_INVALID, "%s: prediction %s and target %s differ in shape", op, CG_SHAPE_STR(a, s1),
                 CG_SHAPE_STR(b, s2));
    return false;
}

cg_tensor *cg_mse_loss(cg_tensor *pred, cg_tensor *target) {
    if (!pred || !target || !same_shape("mse_loss", pred, target)) return NULL;
    return cg_mean_all(cg_square(cg_sub(pred, target)));
}

cg_tensor *cg_l1_loss(cg_tensor *pred, cg_tensor *target) {
    if (!pred || !target || !same_shape("l1_loss", pred, target)) return NULL;
    return cg_mean_all(cg_abs(cg_sub(pred, target)));
}

cg_tensor *cg_bce_with_logits(cg_tensor *logits, cg_tensor *target) {
    if (!logits || !target || !same_shape("bce_with_logits", logits, target)) return NULL;
    return cg_mean_all(cg_sub(cg_softplus(logits), cg_mul(logits, target)));
}

cg_tensor *cg_gaussian_kl(cg_tensor *mu, cg_tensor *logvar) {
    if (!mu || !logvar || !same_shape("gaussian_kl", mu, logvar)) return NULL;
    if (mu->ndim < 1 || mu->shape[0] < 1) {
        cg_set_error(CG_ERR_INVALID, "gaussian_kl: needs a batch axis");
        return NULL;
    }
    /* -0.5 · Σ(1 + logvar - mu² - e^logvar) / B */
    cg_tensor *t = cg_sub(cg_sub(cg_add_scalar(logvar, 1.0f), cg_square(mu)), cg_exp(logvar));
    return cg_scale(cg_sum_all(t), -0.5f / (float)mu->shape[0]);
}

/* Squared distances between the rows of x (B, D) and y (B', D): |x_i|² + |y_j|² - 2 x_i·y_j,
 * the matrix-product form the BIB-AE code uses. */
static cg_tensor *sqdist(cg_tensor *x, cg_tensor *y) {
    cg_tensor *xx = cg_sum(cg_square(x), CG_AXIS(1), true);                  /* (B, 1) */
    cg_tensor *yy = cg_reshape(cg_sum(cg_square(y), CG_AXIS(1), false), 2,
                               (int64_t[]){1, y->shape[0]});                 /* (1, B') */
    cg_tensor *xy = cg_matmul(x, cg_transpose(y, 0, 1));                     /* (B, B') */
    return cg_sub(cg_add(xx, yy), cg_scale(xy, 2.0f));
}

cg_tensor *cg_mmd(cg_tensor *x, cg_tensor *y, int nalpha, const float *alphas) {
    if (!x || !y) return NULL;
    if (x->ndim != 2 || y->ndim != 2 || x->shape[1] != y->shape[1] || nalpha < 1) {
        char s1[96], s2[96];
        cg_set_error(CG_ERR_INVALID, "mmd: needs samples (B, D) and (B', D) and at least one bandwidth, got %s "
                     "and %s", CG_SHAPE_STR(x, s1), CG_SHAPE_STR(y, s2));
        return NULL;
    }
    cg_tensor *dxx = sqdist(x, x), *dyy = sqdist(y, y), *dxy = sqdist(x, y), *total = NULL;
    for (int i = 0; i < nalpha; i++) {
        float a = alphas[i];
        cg_tensor *k = cg_add(cg_mean_all(cg_exp(cg_scale(dxx, -a))), cg_mean_all(cg_exp(cg_scale(dyy, -a))));
        k = cg_sub(k, cg_scale(cg_mean_all(cg_exp(cg_scale(dxy, -a))), 2.0f));
        total = total ? cg_add(total, k) : k;
    }
    return total;
}

/* One MMD window batch: u, v of shape (B, W, k) -> per (B, W) the value
 * mean K(v,v) + mean K(u,u) - 2 mean K(u,v) with K(a,b) = exp(-alpha·(a_i - b_j)²). */
static cg_tensor *window_mmd(cg_tensor *u, cg_tensor *v, float alpha) {
    int64_t B = u->shape[0], W = u->shape[1], k = u->shape[2];
    int64_t col[4] = {B, W, k, 1}, row[4] = {B, W, 1, k};
    cg_tensor *uc = cg_reshape(u, 4, col), *ur = cg_reshape(u, 4, row);
    cg_tensor *vc = cg_reshape(v, 4, col), *vr = cg_reshape(v, 4, row);
    unsigned ij = CG_AXIS(2) | CG_AXIS(3);
    cg_tensor *kxx = cg_mean(cg_exp(cg_scale(cg_square(cg_sub(vc, vr)), -alpha)), ij, false);
    cg_tensor *kyy = cg_mean(cg_exp(cg_scale(cg_square(cg_sub(uc, ur)), -alpha)), ij, false);
    /* P = exp(-alpha·(y_i - x_j)²): generated rank i against real rank j */
    cg_tensor *kxy = cg_mean(cg_exp(cg_scale(cg_square(cg_sub(uc, vr)), -alpha)), ij, false);
    return cg_sub(cg_add(kxx, kyy), cg_scale(kxy, 2.0f)); /* (B, W) */
}

cg_tensor *cg_mmd_sorted_kernel(cg_tensor *recon, cg_tensor *real, int kernel, int stride, int cutoff,
                                float alpha) {
    if (!recon || !real || !same_shape("mmd_sorted_kernel", recon, real)) return NULL;
    if (recon->ndim < 2 || kernel < 1 || stride < 1 || cutoff < 1) {
        cg_set_error(CG_ERR_INVALID, "mmd_sorted_kernel: needs (B, ...) inputs and kernel, stride, cutoff >= 1");
        return NULL;
    }
    int64_t B = recon->shape[0], V = cg_numel(recon) / (B ? B : 1);
    /* descending sort of every shower's cells */
    cg_tensor *ys = cg_sort(cg_reshape(recon, 2, (int64_t[]){B, V}), 1, true);
    cg_tensor *xs = cg_sort(cg_reshape(real, 2, (int64_t[]){B, V}), 1, true);
    if (!ys || !xs) return NULL;
    /* windows j = 0, stride, ... below min(cutoff, V); each [j, min(j+kernel, V)) */
    int64_t limit = cutoff < V ? cutoff : V, nwin = (limit + stride - 1) / stride, nfull = 0;
    while (nfull < nwin && nfull * stride + kernel <= V) nfull++;
    cg_tensor *total = NULL;
    if (nfull > 0) { /* full-length windows stacked into (B, nfull, kernel): one pass */
        cg_tensor **us = cg_xmalloc((size_t)nfull * sizeof *us), **vs = cg_xmalloc((size_t)nfull * sizeof *vs);
        for (int64_t w = 0; w < nfull; w++) {
            int64_t j = w * stride;
            us[w] = cg_reshape(cg_slice(ys, 1, j, j + kernel), 3, (int64_t[]){B, 1, kernel});
            vs[w] = cg_reshape(cg_slice(xs, 1, j, j + kernel), 3, (int64_t[]){B, 1, kernel});
        }
        cg_tensor *u = cg_concat((int)nfull, us, 1), *v = cg_concat((int)nfull, vs, 1);
        free(us);
        free(vs);
        if (!u || !v) return NULL;
        total = cg_sum(window_mmd(u, v, alpha), CG_AXIS(1), false); /* (B) */
    }
    for (int64_t w = nfull; w < nwin; w++) { /* shorter windows at the end of the hit list */
        int64_t j = w * stride, e = j + kernel < V ? j + kernel : V;
        cg_tensor *u = cg_reshape(cg_slice(ys, 1, j, e), 3, (int64_t[]){B, 1, e - j});
        cg_tensor *v = cg_reshape(cg_slice(xs, 1, j, e), 3, (int64_t[]){B, 1, e - j});
        cg_tensor *t = cg_reshape(window_mmd(u, v, alpha), 1, &B);
        total = total ? cg_add(total, t) : t;
    }
    return cg_scale(cg_mean_all(total), 1.0f / (float)nwin);
}

/* Per-sample mean over all axes but the first. */
static cg_tensor *mean_per_sample(cg_tensor *t) {
    if (!t) return NULL;
    unsigned axes = 0;
    for (int i = 1; i < t->ndim; i++) axes |= 1u << i;
    return t->ndim > 1 ? cg_mean(t, axes, false) : t;
}

cg_tensor *cg_soft_sparsity(cg_tensor *x, float a, float b, float eps) {
    if (!x) return NULL;
    if (x->ndim < 1 || !(a > 0) || !(b > 0) || !(eps > 0)) {
        cg_set_error(CG_ERR_INVALID, "soft_sparsity: needs a batch axis and a, b, eps > 0");
        return NULL;
    }
    /* t = |x|^a + |x|^-b;  t / (t + 1) = 1 - 1/(t + 1), the second form stays finite */
    cg_tensor *ax = cg_clamp(cg_abs(x), eps, INFINITY);
    cg_tensor *t = cg_add(cg_pow(ax, a), cg_pow(ax, -b));
    return mean_per_sample(cg_affine(cg_recip(cg_add_scalar(t, 1.0f)), -1.0f, 1.0f));
}

cg_tensor *cg_soft_sparsity_calogan(cg_tensor *x) {
    if (!x) return NULL;
    if (x->ndim < 1) {
        cg_set_error(CG_ERR_INVALID, "soft_sparsity_calogan: needs a batch axis");
        return NULL;
    }
    /* softsign(|x|^5 + |x|^(1/5))^(1/5). The 1/5 powers have an infinite slope at 0: at
     * exactly-zero cells the value is 0 as in the formula and the gradient is taken as 0
     * (a subgradient), by evaluating the powers at |x| + (1 - m) and multiplying by the
     * mask m = [|x| > 0], which is constant. */
    cg_tensor *ax = cg_abs(x);
    cg_tensor *m = cg_step(ax, 0.0f);
    cg_tensor *safe = cg_add(ax, cg_affine(m, -1.0f, 1.0f));
    cg_tensor *s = cg_softsign(cg_add(cg_pow(safe, 5.0f), cg_pow(safe, 0.2f)));
    s = cg_mul(cg_pow(s, 0.2f), m);
    return mean_per_sample(s);
}
