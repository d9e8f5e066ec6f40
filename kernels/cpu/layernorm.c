/*
 * kernels/cpu/layernorm.c — reference layer norm over the last `cols` elements of each row,
 * with an optional per-element gain and bias of length cols (PyTorch nn.LayerNorm).
 * Reference kernels: never optimised; statistics in double. Biased variance, as PyTorch.
 *
 * With act, a leaky ReLU follows in the same pass (core/backend.h): the backward takes dy
 * through its derivative at n = LN(x) (recomputed as the forward computed it) first.
 *
 * Backward, with xhat = (x - mean)·rstd and gx = dy·gamma:
 *   dx = rstd · (gx - mean(gx) - xhat · mean(gx · xhat)),
 *   dgamma = Σ_rows dy·xhat,  dbeta = Σ_rows dy.
 */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/ref.h"

/* The normalised value as every backend computes it for the activation: from the float
 * statistics, rounded once (the forward's output and the backward's recomputation agree). */
static float norm_at(float x, float m, float rs, const float *gamma, const float *beta, int64_t j) {
    double v = ((double)x - m) * rs;
    if (gamma) v *= gamma[j];
    if (beta) v += beta[j];
    return (float)v;
}

void cg_ref_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int64_t rows, int64_t cols, float eps, int act, float slope) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double s = 0.0, ss = 0.0;
        for (int64_t j = 0; j < cols; j++) s += xr[j];
        double m = s / (double)cols;
        for (int64_t j = 0; j < cols; j++) ss += (xr[j] - m) * (xr[j] - m);
        float mf = (float)m, rf = (float)(1.0 / sqrt(ss / (double)cols + eps));
        for (int64_t j = 0; j < cols; j++) {
            float n = norm_at(xr[j], mf, rf, gamma, beta, j);
            y[r * cols + j] = act && !(n > 0) ? slope * n : n;
        }
        if (mean) mean[r] = mf;
        if (rstd) rstd[r] = rf;
    }
}

void cg_ref_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                          const float *mean, const float *rstd, const float *gamma, const float *beta,
                          int64_t rows, int64_t cols, int act, float slope) {
    double *dg = dgamma ? cg_xcalloc((size_t)cols, sizeof(double)) : NULL;
    double *db = dbeta ? cg_xcalloc((size_t)cols, sizeof(double)) : NULL;
    double *dn = cg_xmalloc((size_t)(cols ? cols : 1) * sizeof(double)); /* the gradient of n, one row */
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *gr = dy + r * cols;
        double m = mean[r], rs = rstd[r], a = 0.0, b = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            dn[j] = gr[j];
            if (act && !(norm_at(xr[j], mean[r], rstd[r], gamma, beta, j) > 0)) dn[j] *= slope;
            double xh = (xr[j] - m) * rs;
            double gx = dn[j] * (gamma ? gamma[j] : 1.0f);
            a += gx;
            b += gx * xh;
            if (dg) dg[j] += dn[j] * xh;
            if (db) db[j] += dn[j];
        }
        a /= (double)cols;
        b /= (double)cols;
        if (dx)
            for (int64_t j = 0; j < cols; j++) {
                double xh = (xr[j] - m) * rs;
                double gx = dn[j] * (gamma ? gamma[j] : 1.0f);
                dx[r * cols + j] = (float)(rs * (gx - a - xh * b));
            }
    }
    for (int64_t j = 0; dg && j < cols; j++) dgamma[j] = (float)dg[j];
    for (int64_t j = 0; db && j < cols; j++) dbeta[j] = (float)db[j];
    free(dg);
    free(db);
    free(dn);
}
