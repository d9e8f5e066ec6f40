/*
 * kernels/cpu/avx2_tile.c — the broadcast and dot register tiles (see avx2_tile.h).
 *
 * Each tile shape is its own function (a generic body, inlined with constant sizes, so the
 * accumulators live in registers); a table maps (R, M, V) or (R, C) to it. The body loads
 * whichever operand set is smaller into registers once per step and streams the other,
 * which keeps accumulators + operands within the 16 YMM registers.
 */
#include <math.h>

#include "core/error.h"
#include "kernels/cpu/avx2_tile.h"
#include "kernels/cpu/avx2_util.h"

/* Fully unroll the loops over the tile's rows, lines, vectors and columns early, so that
 * GCC keeps the accumulator arrays in registers (without it, it stores them every step). */
#define UNROLL _Pragma("GCC unroll 16")

enum { MAXR = CG_TILE_MAXR, MAXM = CG_TILE_MAXM, MAXV = CG_TILE_MAXV, MAXC = CG_TILE_MAXC };

/* Measured throughput of each tile shape on L1-resident data, in % of the FMA peak (one
 * core of the AMD EPYC this was tuned on; kernels/cpu/dev/tile_roofline.c measures it).
 * Shapes with many input lines per weight are load-bound (unaligned loads cross cache
 * lines); shapes with fewer than 10 accumulators are latency-bound. */
static const unsigned char BCAST_EFF[MAXR + 1][MAXM + 1][MAXV + 1] = {
    [1] = {[1] = {0, 15, 28, 40, 52}, [2] = {0, 28, 52, 61, 65}, [3] = {0, 40, 61, 64, 64}, [4] = {0, 51, 64, 66},
           [5] = {0, 58, 66}, [6] = {0, 59, 65}},
    [2] = {[1] = {0, 28, 52, 71, 75}, [2] = {0, 52, 72, 89}, [3] = {0, 65, 81}, [4] = {0, 64}, [5] = {0, 67},
           [6] = {0, 68}},
    [3] = {[1] = {0, 40, 71, 86, 99}, [2] = {0, 70, 99}, [3] = {0, 91}, [4] = {0, 99}},
    [4] = {[1] = {0, 51, 90, 100}, [2] = {0, 88}, [3] = {0, 100}},
    [5] = {[1] = {0, 61, 93}, [2] = {0, 88}},
    [6] = {[1] = {0, 68, 99}, [2] = {0, 99}},
};
static const unsigned char DOT_EFF[MAXR + 1][MAXC + 1] = {
    [1] = {0, 22, 41, 50, 53, 58, 59}, [2] = {0, 38, 52, 56, 58, 58, 58}, [3] = {0, 47, 62, 75, 82},
    [4] = {0, 53, 67, 80}, [5] = {0, 59, 72}, [6] = {0, 65, 74},
};

double cg_avx2_bcast_cost(int R, int M, int V, int64_t K) {
    double a = (double)R * M * V;
    return (double)K * a / 2 * 100.0 / BCAST_EFF[R][M][V] + 24 + 2 * a;
}

double cg_avx2_dot_cost(int R, int C, int64_t steps) {
    double a = (double)R * C;
    return (double)steps * a / 2 * 100.0 / DOT_EFF[R][C] + 12 * a;
}

/* ----------------------------------------------------- broadcast tile ---- */

static inline __attribute__((always_inline)) void bcast_body(const cg_bcast_tile *t, const int R, const int M,
                                                             const int V) {
    __m256 acc[MAXR][MAXM][MAXV];
    UNROLL
    for (int r = 0; r < R; r++) {
        __m256 b = t->bias ? _mm256_set1_ps(t->bias[r]) : _mm256_setzero_ps();
        UNROLL
        for (int m = 0; m < M; m++)
            UNROLL
            for (int v = 0; v < V; v++) acc[r][m][v] = b;
    }
    const float *x = t->x, *wp = t->wp;
    const int32_t *off = t->off;
    const int64_t xrs = t->xrs, wps = t->wps;
    const int32_t all[2] = {0, (int32_t)t->K};
    const int32_t *runs = t->runs ? t->runs : all;
    const int nruns = t->runs ? t->nruns : 1;
    for (int ru = 0; ru < nruns; ru++)
    for (int64_t j = runs[2 * ru], K = j + runs[2 * ru + 1]; j < K; j++) {
        const float *xp = x + off[j], *wj = wp + j * wps;
        if (R <= M * V) {
            __m256 w[MAXR];
            UNROLL
            for (int r = 0; r < R; r++) w[r] = _mm256_broadcast_ss(wj + r);
            UNROLL
            for (int m = 0; m < M; m++)
                UNROLL
                for (int v = 0; v < V; v++) {
                    __m256 xv = _mm256_loadu_ps(xp + m * xrs + 8 * v);
                    UNROLL
                    for (int r = 0; r < R; r++) acc[r][m][v] = _mm256_fmadd_ps(w[r], xv, acc[r][m][v]);
                }
        } else {
            __m256 xv[MAXM][MAXV];
            UNROLL
            for (int m = 0; m < M; m++)
                UNROLL
                for (int v = 0; v < V; v++) xv[m][v] = _mm256_loadu_ps(xp + m * xrs + 8 * v);
            UNROLL
            for (int r = 0; r < R; r++) {
                __m256 w = _mm256_broadcast_ss(wj + r);
                UNROLL
                for (int m = 0; m < M; m++)
                    UNROLL
                    for (int v = 0; v < V; v++) acc[r][m][v] = _mm256_fmadd_ps(w, xv[m][v], acc[r][m][v]);
            }
        }
    }
    if (t->yws == 1) {
        const __m256 beta = _mm256_set1_ps(t->beta);
        UNROLL
        for (int r = 0; r < R; r++)
            UNROLL
            for (int m = 0; m < M; m++)
                UNROLL
                for (int v = 0; v < V; v++) {
                    float *yp = t->y + r * t->ycs + m * t->yrs + 8 * v;
                    int n = t->nw - 8 * v;
                    if (n >= 8) {
                        __m256 a = acc[r][m][v];
                        if (t->beta != 0.0f) a = _mm256_fmadd_ps(beta, _mm256_loadu_ps(yp), a);
                        if (t->stream && ((uintptr_t)yp & 31) == 0) _mm256_stream_ps(yp, a);
                        else _mm256_storeu_ps(yp, a);
                    } else if (n > 0) {
                        __m256i mk = cg_avx2_mask(n);
                        __m256 a = acc[r][m][v];
                        if (t->beta != 0.0f) a = _mm256_fmadd_ps(beta, _mm256_maskload_ps(yp, mk), a);
                        _mm256_maskstore_ps(yp, mk, a);
                    }
                }
    } else {
        UNROLL
        for (int r = 0; r < R; r++)
            UNROLL
            for (int m = 0; m < M; m++)
                UNROLL
                for (int v = 0; v < V; v++) {
                    float tmp[8];
                    _mm256_storeu_ps(tmp, acc[r][m][v]);
                    float *yp = t->y + r * t->ycs + m * t->yrs + 8 * v * t->yws;
                    for (int l = 0; l < 8 && 8 * v + l < t->nw; l++) yp[l * t->yws] = tmp[l];
                }
    }
}

typedef void (*bcast_fn)(const cg_bcast_tile *);
#define F(R, M, V) static void bcast_##R##_##M##_##V(const cg_bcast_tile *t) { bcast_body(t, R, M, V); }
F(1,1,1) F(1,1,2) F(1,1,3) F(1,1,4) F(1,2,1) F(1,2,2) F(1,2,3) F(1,2,4) F(1,3,1) F(1,3,2) F(1,3,3) F(1,3,4)
F(1,4,1) F(1,4,2) F(1,4,3) F(1,5,1) F(1,5,2) F(1,6,1) F(1,6,2) F(2,1,1) F(2,1,2) F(2,1,3) F(2,1,4) F(2,2,1)
F(2,2,2) F(2,2,3) F(2,3,1) F(2,3,2) F(2,4,1) F(2,5,1) F(2,6,1) F(3,1,1) F(3,1,2) F(3,1,3) F(3,1,4) F(3,2,1)
F(3,2,2) F(3,3,1) F(3,4,1) F(4,1,1) F(4,1,2) F(4,1,3) F(4,2,1) F(4,3,1) F(5,1,1) F(5,1,2) F(5,2,1) F(6,1,1)
F(6,1,2) F(6,2,1)
#undef F
#define F(R, M, V) [R][M][V] = bcast_##R##_##M##_##V,
static const bcast_fn BCAST[MAXR + 1][MAXM + 1][MAXV + 1] = {
F(1,1,1) F(1,1,2) F(1,1,3) F(1,1,4) F(1,2,1) F(1,2,2) F(1,2,3) F(1,2,4) F(1,3,1) F(1,3,2) F(1,3,3) F(1,3,4)
F(1,4,1) F(1,4,2) F(1,4,3) F(1,5,1) F(1,5,2) F(1,6,1) F(1,6,2) F(2,1,1) F(2,1,2) F(2,1,3) F(2,1,4) F(2,2,1)
F(2,2,2) F(2,2,3) F(2,3,1) F(2,3,2) F(2,4,1) F(2,5,1) F(2,6,1) F(3,1,1) F(3,1,2) F(3,1,3) F(3,1,4) F(3,2,1)
F(3,2,2) F(3,3,1) F(3,4,1) F(4,1,1) F(4,1,2) F(4,1,3) F(4,2,1) F(4,3,1) F(5,1,1) F(5,1,2) F(5,2,1) F(6,1,1)
F(6,1,2) F(6,2,1)
};
#undef F

void cg_avx2_bcast_tile(int R, int M, int V, const cg_bcast_tile *t) {
    CG_ASSERT(R >= 1 && R <= MAXR && M >= 1 && M <= MAXM && V >= 1 && V <= MAXV && BCAST[R][M][V]);
    BCAST[R][M][V](t);
}

/* ----------------------------------------------------------- dot tile ---- */

static inline __attribute__((always_inline)) void dot_step(__m256 acc[MAXR][MAXC], const float *const *ar,
                                                           const float *const *bc, int64_t i, const int R,
                                                           const int C, const int masked, __m256i mk) {
#define LD(p) (masked ? _mm256_maskload_ps((p), mk) : _mm256_loadu_ps(p))
    if (R <= C) {
        __m256 a[MAXR];
        UNROLL
        for (int r = 0; r < R; r++) a[r] = LD(ar[r] + i);
        UNROLL
        for (int c = 0; c < C; c++) {
            __m256 b = LD(bc[c] + i);
            UNROLL
            for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(a[r], b, acc[r][c]);
        }
    } else {
        __m256 b[MAXC];
        UNROLL
        for (int c = 0; c < C; c++) b[c] = LD(bc[c] + i);
        UNROLL
        for (int r = 0; r < R; r++) {
            __m256 a = LD(ar[r] + i);
            UNROLL
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
        }
    }
#undef LD
}

static inline __attribute__((always_inline)) void dot_body(const cg_dot_tile *t, const int R, const int C) {
    __m256 acc[MAXR][MAXC];
    UNROLL
    for (int r = 0; r < R; r++)
        UNROLL
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    const int64_t full = t->tail ? t->nvec - 1 : t->nvec;
    const __m256i mk = cg_avx2_mask(t->tail);
    for (int64_t line = 0; line < t->nlines; line++) {
        const float *ar[MAXR], *bc[MAXC];
        UNROLL
        for (int r = 0; r < R; r++) ar[r] = t->a + r * t->acs + line * t->ars;
        UNROLL
        for (int c = 0; c < C; c++) bc[c] = t->b + t->off[c] + line * t->brs;
        for (int64_t i = 0; i < 8 * full; i += 8) dot_step(acc, ar, bc, i, R, C, 0, mk);
        if (t->tail) dot_step(acc, ar, bc, 8 * full, R, C, 1, mk);
    }
    if (t->outd) {
        /* Four sums at a time: a tree of horizontal adds leaves them in one float vector
         * (each the sum of 8 lanes), added in double to the outputs. */
        const __m256 z = _mm256_setzero_ps();
        UNROLL
        for (int r = 0; r < R; r++)
            UNROLL
            for (int c0 = 0; c0 < C; c0 += 4) {
                __m256 h01 = _mm256_hadd_ps(acc[r][c0], c0 + 1 < C ? acc[r][c0 + 1] : z);
                __m256 h23 = _mm256_hadd_ps(c0 + 2 < C ? acc[r][c0 + 2] : z, c0 + 3 < C ? acc[r][c0 + 3] : z);
                __m256 h = _mm256_hadd_ps(h01, h23);
                __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
                double *o = t->outd + r * t->ocs + c0;
                __m256d d = _mm256_cvtps_pd(s4);
                if (C - c0 >= 4) {
                    _mm256_storeu_pd(o, _mm256_add_pd(_mm256_loadu_pd(o), d));
                } else {
                    __m256i mk = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(cg_avx2_mask(C - c0)));
                    _mm256_maskstore_pd(o, mk, _mm256_add_pd(_mm256_maskload_pd(o, mk), d));
                }
            }
    } else {
        UNROLL
        for (int r = 0; r < R; r++)
            UNROLL
            for (int c = 0; c < C; c++) {
                float *o = t->outf + r * t->ocs + c;
                float s = t->alpha * (float)cg_avx2_hsum_pd(acc[r][c]);
                *o = t->beta == 0.0f ? s : s + t->beta * *o;
            }
    }
}

typedef void (*dot_fn)(const cg_dot_tile *);
#define B(R, C) static void dot_##R##_##C(const cg_dot_tile *t) { dot_body(t, R, C); }
B(1,1) B(1,2) B(1,3) B(1,4) B(1,5) B(1,6) B(2,1) B(2,2) B(2,3) B(2,4) B(2,5) B(2,6) B(3,1) B(3,2) B(3,3) B(3,4)
B(4,1) B(4,2) B(4,3) B(5,1) B(5,2) B(6,1) B(6,2)
#undef B
#define B(R, C) [R][C] = dot_##R##_##C,
static const dot_fn DOT[MAXR + 1][MAXC + 1] = {
B(1,1) B(1,2) B(1,3) B(1,4) B(1,5) B(1,6) B(2,1) B(2,2) B(2,3) B(2,4) B(2,5) B(2,6) B(3,1) B(3,2) B(3,3) B(3,4)
B(4,1) B(4,2) B(4,3) B(5,1) B(5,2) B(6,1) B(6,2)
};
#undef B

void cg_avx2_dot_tile(int R, int C, const cg_dot_tile *t) {
    CG_ASSERT(R >= 1 && R <= MAXR && C >= 1 && C <= MAXC && DOT[R][C]);
    DOT[R][C](t);
}
