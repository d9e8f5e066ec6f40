/*
 * kernels/cpu/avx2_reduce.c — sum over a set of axes (core/backend.h, reduce_sum) with
 * AVX2, on the thread pool; double accumulators, as the reference.
 *
 * Adjacent axes of the same kind (reduced or kept) are merged first. Then:
 *  - innermost axis reduced (a bias gradient: sum over N and the voxels, per channel; a
 *    total sum): each output is a sum of contiguous segments. The segments are cut into
 *    blocks of about BLOCK elements whose boundaries depend on the shape alone; blocks are
 *    summed in parallel and each output adds its blocks in order.
 *  - innermost axis kept (a sum over the batch of (B, F)): each thread takes a chunk of
 *    the kept inner axis and runs down the reduced axes in order, vectorised along the
 *    chunk.
 * Either way the order of every sum is fixed: deterministic for any thread count.
 * Small inputs go to the reference kernel.
 */
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/ref.h"

#define BLOCK 32768 /* elements per partial sum */
#define CHUNK 256   /* kept inner elements per task */

typedef struct {
    int nd;                     /* merged axes */
    int64_t len[CG_MAX_DIMS], stride[CG_MAX_DIMS];
    int red[CG_MAX_DIMS];       /* axis reduced? */
    int nk, nr;                 /* kept / reduced axes, outer to inner */
    int kax[CG_MAX_DIMS], rax[CG_MAX_DIMS];
} layout;

/* x offset of kept index k (over kept axes, excluding `skip_inner` innermost ones) plus
 * reduced index r (likewise). */
static int64_t offset_of(const layout *L, int64_t k, int kskip, int64_t r, int rskip) {
    int64_t off = 0;
    for (int i = L->nk - 1 - kskip; i >= 0; i--) {
        int a = L->kax[i];
        off += (k % L->len[a]) * L->stride[a];
        k /= L->len[a];
    }
    for (int i = L->nr - 1 - rskip; i >= 0; i--) {
        int a = L->rax[i];
        off += (r % L->len[a]) * L->stride[a];
        r /= L->len[a];
    }
    return off;
}

static double sum_segment(const float *p, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    a0 = _mm256_add_pd(a0, a1);
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));
    double t = _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    for (; i < n; i++) t += p[i];
    return t;
}

/* ---------------------------------------------- innermost reduced ---- */

typedef struct {
    const layout *L;
    const float *x;
    int64_t seg;        /* innermost (reduced) length */
    int64_t nseg;       /* segments per output */
    int64_t per_block;  /* segments per block (seg <= BLOCK), or 1 */
    int64_t pieces;     /* blocks per segment (seg > BLOCK), or 1 */
    int64_t nblk;       /* blocks per output */
    double *part;       /* (outputs, nblk) */
} red_job;

static void red_task(void *ctx, int64_t b, int64_t e, int worker) {
    const red_job *J = ctx;
    for (int64_t it = b; it < e; it++) {
        int64_t o = it / J->nblk, blk = it % J->nblk;
        double t = 0;
        if (J->pieces > 1) { /* part of one long segment */
            int64_t sg = blk / J->pieces, pc = blk % J->pieces, len = (J->seg + J->pieces - 1) / J->pieces;
            int64_t start = pc * len, n = J->seg - start < len ? J->seg - start : len;
            t = sum_segment(J->x + offset_of(J->L, o, 0, sg, 1) + start, n);
        } else {
            int64_t s0 = blk * J->per_block, s1 = s0 + J->per_block < J->nseg ? s0 + J->per_block : J->nseg;
            for (int64_t sg = s0; sg < s1; sg++) t += sum_segment(J->x + offset_of(J->L, o, 0, sg, 1), J->seg);
        }
        J->part[it] = t;
    }
}

/* ------------------------------------------------- innermost kept ---- */

typedef struct {
    const layout *L;
    const float *x;
    float *out;
    int64_t inner;      /* innermost (kept) length */
    int64_t nchunk;     /* chunks per outer kept index */
    int64_t nred;       /* reduced combinations */
} kept_job;

static void kept_task(void *ctx, int64_t b, int64_t e, int worker) {
    const kept_job *J = ctx;
    double acc[CHUNK];
    for (int64_t it = b; it < e; it++) {
        int64_t ko = it / J->nchunk, c0 = (it % J->nchunk) * CHUNK;
        int64_t n = J->inner - c0 < CHUNK ? J->inner - c0 : CHUNK;
        memset(acc, 0, sizeof acc);
        for (int64_t r = 0; r < J->nred; r++) {
            const float *p = J->x + offset_of(J->L, ko, 1, r, 0) + c0;
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) {
                __m256 v = _mm256_loadu_ps(p + i);
                _mm256_storeu_pd(acc + i, _mm256_add_pd(_mm256_loadu_pd(acc + i), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
                _mm256_storeu_pd(acc + i + 4,
                                 _mm256_add_pd(_mm256_loadu_pd(acc + i + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
            }
            for (; i < n; i++) acc[i] += p[i];
        }
        float *o = J->out + ko * J->inner + c0;
        for (int64_t i = 0; i < n; i++) o[i] = (float)acc[i];
    }
}

void cg_avx2_reduce_sum(float *out, const float *x, int ndim, const int64_t *shape, unsigned axes) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (n < BLOCK) {
        cg_ref_reduce_sum(out, x, ndim, shape, axes);
        return;
    }
    /* merge axes: drop length-1 axes, join neighbours of the same kind */
    layout L = {0};
    int64_t stride = 1;
    int64_t st[CG_MAX_DIMS];
    for (int i = ndim - 1; i >= 0; i--) {
        st[i] = stride;
        stride *= shape[i];
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1) continue;
        int red = (axes >> i) & 1u;
        if (L.nd > 0 && L.red[L.nd - 1] == red) {
            L.len[L.nd - 1] *= shape[i];
            L.stride[L.nd - 1] = st[i];
            continue;
        }
        L.len[L.nd] = shape[i];
        L.stride[L.nd] = st[i];
        L.red[L.nd] = red;
        L.nd++;
    }
    int64_t nout = 1, nred = 1;
    for (int a = 0; a < L.nd; a++) {
        if (L.red[a]) { L.rax[L.nr++] = a; nred *= L.len[a]; }
        else { L.kax[L.nk++] = a; nout *= L.len[a]; }
    }
    if (L.nr == 0) {
        memcpy(out, x, (size_t)n * sizeof(float));
        return;
    }
    if (L.red[L.nd - 1]) {
        red_job J = {.L = &L, .x = x, .seg = L.len[L.nd - 1]};
        J.nseg = nred / J.seg;
        if (J.seg > BLOCK) {
            J.pieces = (J.seg + BLOCK - 1) / BLOCK;
            J.per_block = 1;
            J.nblk = J.nseg * J.pieces;
        } else {
            J.pieces = 1;
            J.per_block = BLOCK / J.seg;
            J.nblk = (J.nseg + J.per_block - 1) / J.per_block;
        }
        J.part = cg_avx2_scratch_get((size_t)(nout * J.nblk) * sizeof(double));
        cg_parallel_for(nout * J.nblk, 1, red_task, &J);
        for (int64_t o = 0; o < nout; o++) {
            double t = 0;
            for (int64_t b = 0; b < J.nblk; b++) t += J.part[o * J.nblk + b];
            out[o] = (float)t;
        }
        cg_avx2_scratch_put(J.part);
    } else {
        kept_job J = {.L = &L, .x = x, .out = out, .inner = L.len[L.nd - 1], .nred = nred};
        J.nchunk = (J.inner + CHUNK - 1) / CHUNK;
        cg_parallel_for(nout / J.inner * J.nchunk, 1, kept_task, &J);
    }
}
