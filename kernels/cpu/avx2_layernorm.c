/*
 * kernels/cpu/avx2_layernorm.c — layer norm over the last `cols` elements of each row, forward
 * and backward (core/backend.h; the reference is kernels/cpu/layernorm.c), with AVX2 on the
 * thread pool.
 *
 * Statistics as the reference: two passes over the row (mean, then the biased variance
 * about it) with double accumulators. The normalisation itself is in float
 * ((x - mean)·rstd·gamma + beta); the reference rounds once from double, so outputs
 * differ from it by an ulp or so.
 * Backward: rows in parallel for dx (each row's two sums in double); dgamma and dbeta are
 * sums over rows, computed in a second pass in which each task owns a range of columns and
 * runs down the rows in order. Both are deterministic for any thread count.
 * Rows are split among threads; a single very long row runs on one thread.
 * With act (a leaky ReLU after the norm, core/backend.h), the forward applies it before the
 * store and the backward multiplies dy by its derivative at n, which norm_vec recomputes
 * with the forward's own instructions (so the two agree on the sign of every n).
 */
#include <math.h>
#include <string.h>

#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_util.h"

#define COLS_PER_TASK 512

static inline __m256 load_or(const float *p, int64_t n, __m256i mk, float fill) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, mk),
                                                          _mm256_castsi256_ps(mk));
}

static inline __m256d lo_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
static inline __m256d hi_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

static inline double hsum4(__m256d a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* n = (x - m)·rs·gamma + beta at columns j.. (m, rs: the float statistics), as the forward
 * computes it: one function, so that the backward's recomputation is the same instructions. */
static inline __attribute__((always_inline)) __m256 norm_vec(__m256 x, __m256 m, __m256 rs, const float *gamma,
                                                             const float *beta, int64_t j, int64_t left, __m256i mk) {
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(x, m), rs);
    if (gamma) v = _mm256_mul_ps(v, load_or(gamma + j, left, mk, 0.0f));
    if (beta) v = _mm256_add_ps(v, load_or(beta + j, left, mk, 0.0f));
    return v;
}

/* ---------------------------------------------------------- forward ---- */

typedef struct {
    float *y, *mean, *rstd;
    const float *x, *gamma, *beta;
    int64_t cols;
    float eps;
    int act;
    float slope;
} fwd_job;

static void fwd_task(void *ctx, int64_t b, int64_t e, int worker) {
    const fwd_job *J = ctx;
    const int64_t n = J->cols;
    for (int64_t r = b; r < e; r++) {
        const float *x = J->x + r * n;
        float *y = J->y + r * n;
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        for (int64_t j = 0; j < n; j += 8) {
            __m256 v = load_or(x + j, n - j, cg_avx2_mask(n - j >= 8 ? 8 : (int)(n - j)), 0.0f);
            s0 = _mm256_add_pd(s0, lo_pd(v));
            s1 = _mm256_add_pd(s1, hi_pd(v));
        }
        double m = hsum4(_mm256_add_pd(s0, s1)) / (double)n;
        const __m256d md = _mm256_set1_pd(m);
        s0 = s1 = _mm256_setzero_pd();
        for (int64_t j = 0; j < n; j += 8) {
            __m256 v = load_or(x + j, n - j, cg_avx2_mask(n - j >= 8 ? 8 : (int)(n - j)), (float)m);
            __m256d d0 = _mm256_sub_pd(lo_pd(v), md), d1 = _mm256_sub_pd(hi_pd(v), md);
            if (n - j < 8) { /* the filled lanes hold (float)m, not m: zero them */
                __m256i mk = cg_avx2_mask((int)(n - j));
                __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(mk));
                __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(mk, 1));
                d0 = _mm256_and_pd(d0, _mm256_castsi256_pd(lo));
                d1 = _mm256_and_pd(d1, _mm256_castsi256_pd(hi));
            }
            s0 = _mm256_fmadd_pd(d0, d0, s0);
            s1 = _mm256_fmadd_pd(d1, d1, s1);
        }
        double rs = 1.0 / sqrt(hsum4(_mm256_add_pd(s0, s1)) / (double)n + J->eps);
        const __m256 mf = _mm256_set1_ps((float)m), rf = _mm256_set1_ps((float)rs);
        for (int64_t j = 0; j < n; j += 8) {
            int tail = n - j < 8;
            __m256i mk = cg_avx2_mask(tail ? (int)(n - j) : 8);
            __m256 v = norm_vec(load_or(x + j, n - j, mk, 0.0f), mf, rf, J->gamma, J->beta, j, n - j, mk);
            if (J->act) v = cg_avx2_leaky_by(v, v, _mm256_set1_ps(J->slope));
            if (tail) _mm256_maskstore_ps(y + j, mk, v);
            else _mm256_storeu_ps(y + j, v);
        }
        if (J->mean) J->mean[r] = (float)m;
        if (J->rstd) J->rstd[r] = (float)rs;
    }
}

void cg_avx2_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                           const float *beta, int64_t rows, int64_t cols, float eps, int act, float slope) {
    if (rows <= 0 || cols <= 0) return;
    fwd_job J = {y, mean, rstd, x, gamma, beta, cols, eps, act, slope};
    cg_parallel_for(rows, (16384 + cols - 1) / cols, fwd_task, &J);
}

/* --------------------------------------------------------- backward ---- */

typedef struct {
    float *dx, *dgamma, *dbeta;
    const float *dy, *x, *mean, *rstd, *gamma, *beta;
    int64_t rows, cols;
    int act;
    float slope;
} bwd_job;

/* dy at columns j.., times a'(n) with act */
static inline __m256 grad_vec(const bwd_job *J, __m256 g, __m256 x, __m256 m, __m256 rs, int64_t j, int64_t left,
                              __m256i mk) {
    if (!J->act) return g;
    return cg_avx2_leaky_by(norm_vec(x, m, rs, J->gamma, J->beta, j, left, mk), g, _mm256_set1_ps(J->slope));
}

/* dx = rstd·(gx - mean(gx) - xhat·mean(gx·xhat)), gx = dy·gamma, per row. */
static void dx_task(void *ctx, int64_t b, int64_t e, int worker) {
    const bwd_job *J = ctx;
    const int64_t n = J->cols;
    for (int64_t r = b; r < e; r++) {
        const float *x = J->x + r * n, *g = J->dy + r * n;
        const __m256 m = _mm256_set1_ps(J->mean[r]), rs = _mm256_set1_ps(J->rstd[r]);
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
        for (int64_t j = 0; j < n; j += 8) {
            __m256i mk = cg_avx2_mask(n - j >= 8 ? 8 : (int)(n - j));
            __m256 xv = load_or(x + j, n - j, mk, 0.0f), xh = _mm256_mul_ps(_mm256_sub_ps(xv, m), rs);
            __m256 gx = grad_vec(J, load_or(g + j, n - j, mk, 0.0f), xv, m, rs, j, n - j, mk);
            if (J->gamma) gx = _mm256_mul_ps(gx, load_or(J->gamma + j, n - j, mk, 0.0f));
            a0 = _mm256_add_pd(a0, lo_pd(gx));
            a1 = _mm256_add_pd(a1, hi_pd(gx));
            b0 = _mm256_fmadd_pd(lo_pd(gx), lo_pd(xh), b0); /* gx is 0 in the tail lanes */
            b1 = _mm256_fmadd_pd(hi_pd(gx), hi_pd(xh), b1);
        }
        const __m256 am = _mm256_set1_ps((float)(hsum4(_mm256_add_pd(a0, a1)) / (double)n));
        const __m256 bm = _mm256_set1_ps((float)(hsum4(_mm256_add_pd(b0, b1)) / (double)n));
        float *dx = J->dx + r * n;
        for (int64_t j = 0; j < n; j += 8) {
            int tail = n - j < 8;
            __m256i mk = cg_avx2_mask(tail ? (int)(n - j) : 8);
            __m256 xv = load_or(x + j, n - j, mk, 0.0f), xh = _mm256_mul_ps(_mm256_sub_ps(xv, m), rs);
            __m256 gx = grad_vec(J, load_or(g + j, n - j, mk, 0.0f), xv, m, rs, j, n - j, mk);
            if (J->gamma) gx = _mm256_mul_ps(gx, load_or(J->gamma + j, n - j, mk, 0.0f));
            __m256 v = _mm256_mul_ps(rs, _mm256_sub_ps(_mm256_sub_ps(gx, am), _mm256_mul_ps(xh, bm)));
            if (tail) _mm256_maskstore_ps(dx + j, mk, v);
            else _mm256_storeu_ps(dx + j, v);
        }
    }
}

/* dgamma[j] = Σ_r dy·xhat, dbeta[j] = Σ_r dy, for a range of columns, rows in order. */
static void dgb_task(void *ctx, int64_t b, int64_t e, int worker) {
    const bwd_job *J = ctx;
    const int64_t n = J->cols;
    double dg[COLS_PER_TASK], db[COLS_PER_TASK];
    for (int64_t t = b; t < e; t++) {
        int64_t c0 = t * COLS_PER_TASK, nc = n - c0 < COLS_PER_TASK ? n - c0 : COLS_PER_TASK;
        memset(dg, 0, sizeof dg);
        memset(db, 0, sizeof db);
        for (int64_t r = 0; r < J->rows; r++) {
            const float *x = J->x + r * n + c0, *g = J->dy + r * n + c0;
            const __m256 m = _mm256_set1_ps(J->mean[r]), rs = _mm256_set1_ps(J->rstd[r]);
            for (int64_t j = 0; j < nc; j += 8) {
                __m256i mk = cg_avx2_mask(nc - j >= 8 ? 8 : (int)(nc - j));
                __m256 xv = load_or(x + j, nc - j, mk, 0.0f);
                __m256 gv = grad_vec(J, load_or(g + j, nc - j, mk, 0.0f), xv, m, rs, c0 + j, nc - j, mk);
                __m256 p = _mm256_mul_ps(gv, _mm256_mul_ps(_mm256_sub_ps(xv, m), rs));
                _mm256_storeu_pd(dg + j, _mm256_add_pd(_mm256_loadu_pd(dg + j), lo_pd(p)));
                _mm256_storeu_pd(dg + j + 4, _mm256_add_pd(_mm256_loadu_pd(dg + j + 4), hi_pd(p)));
                _mm256_storeu_pd(db + j, _mm256_add_pd(_mm256_loadu_pd(db + j), lo_pd(gv)));
                _mm256_storeu_pd(db + j + 4, _mm256_add_pd(_mm256_loadu_pd(db + j + 4), hi_pd(gv)));
            }
        }
        for (int64_t j = 0; j < nc; j++) {
            if (J->dgamma) J->dgamma[c0 + j] = (float)dg[j];
            if (J->dbeta) J->dbeta[c0 + j] = (float)db[j];
        }
    }
}

void cg_avx2_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *gamma, const float *beta,
                           int64_t rows, int64_t cols, int act, float slope) {
    if (rows <= 0 || cols <= 0) return;
    bwd_job J = {dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, rows, cols, act, slope};
    if (dx) cg_parallel_for(rows, (16384 + cols - 1) / cols, dx_task, &J);
    if (dgamma || dbeta) cg_parallel_for((cols + COLS_PER_TASK - 1) / COLS_PER_TASK, 1, dgb_task, &J);
}
