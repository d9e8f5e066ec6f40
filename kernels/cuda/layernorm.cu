/*
 * kernels/cuda/layernorm.cu — layer norm over the last `cols` elements of each row, forward
 * and backward (formulas in kernels/cpu/layernorm.c).
 *
 * Forward and dx: one block per row, two passes over the row for the statistics (mean,
 * then the centred sum of squares: no cancellation) and one to write; a 30³ row is
 * 108 KB and stays in L1/L2 between the passes. Sums accumulate in double, as the
 * reference (memory-bound: the adds cost nothing). dgamma/dbeta sum over rows: one thread
 * per column (coalesced), the rows split into a fixed number of slices whose partials a
 * last pass adds in order, so the result does not depend on scheduling.
 * With act (a leaky ReLU after the norm, core/backend.h) the forward applies it before the
 * store, and the backward kernels multiply dy by its derivative at n, recomputed by the
 * forward's own function (norm_at), so that both agree on the sign of every n.
 */
#include "kernels/cuda/kernels.cuh"

namespace CG_CUDA_NS {

namespace {

int row_threads(int64_t cols) {
    int t = 32;
    while (t < kThreads && t < cols) t *= 2;
    return t;
}

/* n = (x - m)·rs·gamma + beta at column j, the same instructions in forward and backward
 * (a separate expression could be contracted into FMAs differently) */
__device__ __forceinline__ float norm_at(float x, float m, float rs, const float *gamma, const float *beta, int64_t j) {
    float v = __fmul_rn(x - m, rs);
    if (gamma) v = __fmul_rn(v, gamma[j]);
    if (beta) v = __fadd_rn(v, beta[j]);
    return v;
}

/* dy times the leaky ReLU's derivative at n (act), or dy */
__device__ __forceinline__ float grad_at(float g, int act, float slope, float x, float m, float rs, const float *gamma,
                                         const float *beta, int64_t j) {
    return act && !(norm_at(x, m, rs, gamma, beta, j) > 0.0f) ? g * slope : g;
}

__global__ void ln_fwd_kernel(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                              const float *beta, int64_t cols, float eps, int act, float slope) {
    __shared__ double red[32];
    int64_t r = blockIdx.x;
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
    double md = block_sum_d(s, red) / (double)cols;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        double d = xr[j] - md;
        ss += d * d;
    }
    float m = (float)md;
    float rs = (float)(1.0 / sqrt(block_sum_d(ss, red) / (double)cols + eps));
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = norm_at(xr[j], m, rs, gamma, beta, j);
        yr[j] = act && !(v > 0.0f) ? slope * v : v;
    }
    if (threadIdx.x == 0) {
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = rs;
    }
}

/* dx = rstd · (gx - mean(gx) - xhat · mean(gx·xhat)), gx = dy·gamma */
__global__ void ln_bwd_dx_kernel(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                 const float *gamma, const float *beta, int64_t cols, int act, float slope) {
    __shared__ double red[32];
    int64_t r = blockIdx.x;
    const float *xr = x + r * cols, *gr = dy + r * cols;
    float m = mean[r], rs = rstd[r];
    double ad = 0.0, bd = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = grad_at(gr[j], act, slope, xr[j], m, rs, gamma, beta, j);
        float gx = gamma ? g * gamma[j] : g;
        ad += gx;
        bd += gx * ((xr[j] - m) * rs);
    }
    float a = (float)(block_sum_d(ad, red) / (double)cols);
    float b = (float)(block_sum_d(bd, red) / (double)cols);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = grad_at(gr[j], act, slope, xr[j], m, rs, gamma, beta, j);
        float gx = gamma ? g * gamma[j] : g;
        float xh = (xr[j] - m) * rs;
        dx[r * cols + j] = rs * (gx - a - xh * b);
    }
}

/* partial[(s·2 + 0)·cols + j] = Σ_{r in slice s} dy·xhat, [(s·2 + 1)·cols + j] = Σ dy */
__global__ void ln_bwd_params_kernel(double *partial, const float *dy, const float *x, const float *mean,
                                     const float *rstd, const float *gamma, const float *beta, int64_t rows,
                                     int64_t cols, int64_t chunk, int act, float slope) {
    int64_t j = gtid(), s = blockIdx.y;
    if (j >= cols) return;
    int64_t r0 = s * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    double dg = 0.0, db = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        float xv = x[r * cols + j], g = grad_at(dy[r * cols + j], act, slope, xv, mean[r], rstd[r], gamma, beta, j);
        dg += g * ((xv - mean[r]) * rstd[r]);
        db += g;
    }
    partial[(s * 2) * cols + j] = dg;
    partial[(s * 2 + 1) * cols + j] = db;
}

__global__ void ln_params_sum_kernel(float *dgamma, float *dbeta, const double *partial, int64_t cols, int64_t S) {
    for (int64_t j = gtid(); j < cols; j += gstride()) {
        double dg = 0.0, db = 0.0;
        for (int64_t s = 0; s < S; s++) {
            dg += partial[(s * 2) * cols + j];
            db += partial[(s * 2 + 1) * cols + j];
        }
        if (dgamma) dgamma[j] = (float)dg;
        if (dbeta) dbeta[j] = (float)db;
    }
}

} /* namespace */

void layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *gamma, const float *beta,
                   int64_t rows, int64_t cols, float eps, int act, float slope) {
    if (rows <= 0 || cols <= 0) return;
    CG_LAUNCH(ln_fwd_kernel, (unsigned)rows, row_threads(cols), 0, y, mean, rstd, x, gamma, beta, cols, eps, act,
              slope);
}

void layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *mean,
                   const float *rstd, const float *gamma, const float *beta, int64_t rows, int64_t cols, int act,
                   float slope) {
    if (cols <= 0) return;
    if (rows <= 0) { /* no rows: zero parameter gradients */
        if (dgamma) fill(dgamma, 0.0f, cols);
        if (dbeta) fill(dbeta, 0.0f, cols);
        return;
    }
    if (dx)
        CG_LAUNCH(ln_bwd_dx_kernel, (unsigned)rows, row_threads(cols), 0, dx, dy, x, mean, rstd, gamma, beta, cols, act,
                  slope);
    if (dgamma || dbeta) {
        int64_t cblocks = ceil_div(cols, kThreads), want = (int64_t)sm_count() * 4;
        int64_t S = cblocks >= want ? 1 : ceil_div(want, cblocks);
        if (S > rows) S = rows;
        if (S > 65535) S = 65535;
        int64_t chunk = ceil_div(rows, S);
        S = ceil_div(rows, chunk);
        double *partial = (double *)ws_alloc((size_t)(2 * S * cols) * sizeof(double));
        CG_LAUNCH(ln_bwd_params_kernel, dim3((unsigned)cblocks, (unsigned)S), kThreads, 0, partial, dy, x, mean, rstd,
                  gamma, beta, rows, cols, chunk, act, slope);
        CG_LAUNCH(ln_params_sum_kernel, grid_for(cols), kThreads, 0, dgamma, dbeta, partial, cols, S);
        ws_free(partial);
    }
}

} /* namespace CG_CUDA_NS */
