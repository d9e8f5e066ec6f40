/*
 * kernels/cpu/avx2_packed.h — the packed-panel GEMM microkernel (BLIS / OpenBLAS style)
 * behind the kernel-size-1 convolutions (avx2_conv1x1.c) and the per-voxel layer
 * (avx2_pointwise.c): long products whose k-depth is a channel count.
 *
 *     acc[r][v] = Σ_k a[r·ars + k·aks] · b[k·8NV + 8v .. 8v + 8)        r < MR, v < NV
 *
 * b is a packed panel: the NR = 8·NV columns of each k-step contiguous, 32-byte aligned, so
 * the kernel reads it with aligned loads in one forward stream (it stays in L1 while the
 * caller sweeps the row blocks of a); a is read by broadcasts, either packed (aks = MR) or
 * in place (a matrix row per r: ars = lda, aks = 1). MR·NV <= 12 accumulators hide the FMA
 * latency on two FMA pipes. Shapes in use: 4×24 (MR 4, NV 3) and 6×16 (MR 6, NV 2).
 *
 * Every accumulator sums its k-steps in order, in fp32: deterministic.
 * Include only from files compiled with -mavx2 -mfma.
 */
#ifndef CG_KERNELS_CPU_AVX2_PACKED_H
#define CG_KERNELS_CPU_AVX2_PACKED_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/cpu/avx2_util.h"

#define CG_PK_MAXACC 12

/* MR and NV must be compile-time constants at the call site (always inlined), so that the
 * accumulators live in registers. Only rows r < R (1..MR) of a exist: the others repeat
 * row R-1 (valid memory), and the caller stores only the first R. */
static inline __attribute__((always_inline)) void cg_pk_kernel(int MR, int NV, int R, int64_t K, const float *a,
                                                               int64_t ars, int64_t aks, const float *b, __m256 *acc) {
    const float *ar[6];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) ar[r] = a + (r < R ? r : R - 1) * ars;
#pragma GCC unroll 12
    for (int i = 0; i < MR * NV; i++) acc[i] = _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int64_t k = 0; k < K; k++) {
        __m256 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = _mm256_load_ps(b + 8 * v);
        b += 8 * NV;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(ar[r] + k * aks);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r * NV + v] = _mm256_fmadd_ps(av, bv[v], acc[r * NV + v]);
        }
    }
}

/* y[r][0 .. nw) = acc[r] (+ bias[r]) for r < R: rows ldy apart, the last vector masked.
 * stream: non-temporal stores of whole vectors at 32-byte aligned addresses (outputs far
 * larger than the caches); the caller issues _mm_sfence() before the results are shared. */
static inline __attribute__((always_inline)) void cg_pk_store(int MR, int NV, const __m256 *acc, float *y, int64_t ldy,
                                                              int R, int nw, const float *bias, int stream) {
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r >= R) break;
        float *yr = y + r * ldy;
        __m256 bb = bias ? _mm256_set1_ps(bias[r]) : _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m256 s = _mm256_add_ps(acc[r * NV + v], bb);
            int n = nw - 8 * v;
            if (n >= 8) {
                if (stream && !((uintptr_t)(yr + 8 * v) & 31)) _mm256_stream_ps(yr + 8 * v, s);
                else _mm256_storeu_ps(yr + 8 * v, s);
            } else if (n > 0) {
                _mm256_maskstore_ps(yr + 8 * v, cg_avx2_mask(n), s);
            }
        }
    }
}

/* Pack columns [0, nc) of K rows (ldx apart) into panels of NR = 8·NV columns: panel j holds
 * dst[(j·K + k)·NR + c] = x[k·ldx + j·NR + c], zeros past nc. dst 32-byte aligned. */
static inline __attribute__((always_inline)) void cg_pk_pack_cols(int NV, float *dst, const float *x, int64_t ldx,
                                                                  int64_t K, int nc) {
    const int NR = 8 * NV, npan = (nc + NR - 1) / NR;
    for (int64_t k = 0; k < K; k++) {
        const float *xr = x + k * ldx;
        for (int j = 0; j < npan; j++) {
            float *d = dst + ((int64_t)j * K + k) * NR;
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                int c = j * NR + 8 * v, n = nc - c;
                __m256 t = n >= 8 ? _mm256_loadu_ps(xr + c)
                         : n > 0  ? _mm256_maskload_ps(xr + c, cg_avx2_mask(n))
                                  : _mm256_setzero_ps();
                _mm256_store_ps(d + 8 * v, t);
            }
        }
    }
}

/* Software prefetch of the next block's rows (rows × lpr lines, ld apart), spread over the
 * tiles of the current block a few lines at a time (cg_pk_prefetch_step per tile): K short rows are too many streams for
 * the hardware prefetcher, and a burst of prefetches would stall on the miss buffers. */
typedef struct {
    const float *p;        /* next line to fetch */
    int64_t ld, lpr, col, left; /* row stride, lines per row, line within the row, lines left */
} cg_pk_cursor;

static inline cg_pk_cursor cg_pk_prefetch_start(const float *base, int64_t ld, int64_t rows, int64_t cols) {
    cg_pk_cursor c = {base, ld, (cols + 15) / 16, 0, 0};
    c.left = base ? rows * c.lpr : 0;
    return c;
}

static inline void cg_pk_prefetch_step(cg_pk_cursor *c, int64_t n) {
    for (; n > 0 && c->left > 0; n--, c->left--) {
        _mm_prefetch((const char *)(c->p + 16 * c->col), _MM_HINT_T0);
        if (++c->col == c->lpr) {
            c->col = 0;
            c->p += c->ld;
        }
    }
}

#endif
