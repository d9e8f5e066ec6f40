/*
 * kernels/cpu/avx2_pointwise.c — the fused per-voxel layer (core/backend.h, pointwise_layer)
 * with AVX2+FMA: the BIB-AE post-processor's building block.
 *
 * Work unit: one sample × one block of VB voxels. The block's input is normalised (layer
 * norm with the previous layer's statistics, per-voxel gamma/beta) and activated (leaky
 * ReLU) into a small per-thread buffer A (Ci × VB, about 96 KB for 128 channels), which
 * stays in L2 while register tiles multiply it by the (Co × Ci) weights and write the
 * block's Co output rows: for layers with 16 or more channels both ways, the packed 4×24
 * microkernel of avx2_packed.h (A written straight into panels of 24 voxels, as
 * avx2_conv1x1.c packs its input); for thin layers (1→128, 128→1) the broadcast tiles of
 * avx2_tile.h. Threads take blocks one at a time from a shared counter, prefetching the
 * next block's input while they compute. So the normalised activations never go to
 * memory, and each 128-channel output block is read back for its statistics while it is
 * still in cache: per block and channel, the sum and the sum of squared deviations from
 * the block mean. The blocks are combined at the end in block order (Chan's parallel
 * formula, in double), so the statistics are deterministic and do not suffer the
 * cancellation of Σy² - (Σy)²/n.
 *
 * The two fusions of cg_pw_args: an expanded one-channel input (x_scale) is expanded in
 * the same pass that normalises it into A, reading one row instead of Ci; with proj, the
 * block's Co output rows go to a second per-thread buffer Z (Co × VB, in L2) instead of y,
 * and are projected from there to the block's one output row.
 *
 * What the layer norm does not allow: the statistics of a layer's output are known only
 * after the whole layer, so each 128-channel output is written once to memory and read
 * once by the next layer.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_packed.h"
#include "kernels/cpu/avx2_tile.h"
#include "kernels/cpu/avx2_util.h"

#define VB 192 /* voxels per block: 24 vectors, 8 panels of PK_NR */
#define PK_MR 4 /* the packed microkernel's tile (avx2_packed.h): 4 channels × 24 voxels */
#define PK_NV 3
#define PK_NR (8 * PK_NV)
#define PK_MIN 16 /* layers with fewer channels in or out keep the broadcast tiles */

typedef struct {
    float *y;
    const float *x, *x_scale, *x_shift, *x_mean, *x_rstd, *gamma, *beta, *proj;
    int xc;                  /* channels x holds: Ci, or 1 when expanded (x_scale) */
    int act;
    float slope;
    int64_t B, V, nblk;
    int Ci, Co, R, TV;       /* tile: R output channels × TV vectors */
    int packed;              /* A in panels of PK_NR voxels and the packed microkernel (R = PK_MR) */
    const float *wp;         /* packed weights (ceil(Co/R) blocks of Ci × R) */
    const int32_t *off;      /* (Ci) row offsets in A (broadcast tiles) */
    const float *bsum;       /* (B, Co rounded up to R) bias + per-sample bias */
    float *scratch;          /* per worker: Ci × VB (A), then Co × VB (Z) when projecting */
    double *stats;           /* (B, nblk, Co, 2): block sum, block M2; NULL when not wanted */
    atomic_llong next;       /* the next block (sample · nblk + block) to take */
} pw_job;

/* A[ci][0 .. nv) = act(norm(x[b][ci][v0 ..])), zero past nv. Rows of VB voxels, or
 * (packed) panels of PK_NR voxels: voxel v of channel ci at ((v/PK_NR)·Ci + ci)·PK_NR + v%PK_NR. */
static void load_block(const pw_job *J, float *A, int64_t b, int64_t v0, int nv, const float *nxt) {
    const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(J->slope);
    const int pw = J->packed ? PK_NR : VB;
    const int64_t pstr = J->packed ? (int64_t)J->Ci * PK_NR : 0, cstr = pw;
    for (int ci = 0; ci < J->Ci; ci++) {
        const float *xr = J->x + (b * J->xc + (J->x_scale ? 0 : ci)) * J->V + v0;
        float *ar = A + ci * cstr;
        __m256 m = zero, r = zero, sc = zero, sh = zero;
        if (J->x_scale) {
            sc = _mm256_set1_ps(J->x_scale[ci]);
            sh = _mm256_set1_ps(J->x_shift ? J->x_shift[ci] : 0.0f);
        }
        if (J->x_mean) {
            m = _mm256_set1_ps(J->x_mean[b * J->Ci + ci]);
            r = _mm256_set1_ps(J->x_rstd[b * J->Ci + ci]);
        }
        /* nxt: the next block's row, so that 128 short streams do not each wait on memory
         * (the packed path spreads these over its tiles instead) */
        if (nxt && (ci == 0 || !J->x_scale))
            for (int v = 0; v < VB; v += 16) _mm_prefetch((const char *)(nxt + ci * J->V + v), _MM_HINT_T1);
        /* dst steps through the row, jumping to the next panel every pw voxels (no
         * division per vector: it cost a tenth of the layer) */
        float *dst = ar - 8;
        for (int v = 0, col = -8; v < VB; v += 8) {
            int n = nv - v;
            dst += 8;
            if ((col += 8) == pw) {
                col = 0;
                dst += pstr - pw;
            }
            if (n <= 0) {
                _mm256_storeu_ps(dst, zero);
                continue;
            }
            __m256i mk = cg_avx2_mask(n >= 8 ? 8 : n);
            __m256 t = n >= 8 ? _mm256_loadu_ps(xr + v) : _mm256_maskload_ps(xr + v, mk);
            if (J->x_scale) t = _mm256_fmadd_ps(sc, t, sh);
            if (J->x_mean) {
                t = _mm256_mul_ps(_mm256_sub_ps(t, m), r);
                if (J->gamma) t = _mm256_mul_ps(t, n >= 8 ? _mm256_loadu_ps(J->gamma + v0 + v)
                                                          : _mm256_maskload_ps(J->gamma + v0 + v, mk));
                if (J->beta) t = _mm256_add_ps(t, n >= 8 ? _mm256_loadu_ps(J->beta + v0 + v)
                                                         : _mm256_maskload_ps(J->beta + v0 + v, mk));
            }
            if (J->act) t = cg_avx2_leaky_by(t, t, slope);
            if (n < 8) t = _mm256_and_ps(t, _mm256_castsi256_ps(mk));
            _mm256_storeu_ps(dst, t);
        }
    }
}

/* One pool item per thread: each takes blocks one at a time from the shared counter,
 * claiming the next before it computes the current one (to prefetch it), as in
 * avx2_conv1x1.c. Block results do not depend on which thread computes them. */
static void pw_task(void *ctx, int64_t b0, int64_t e0, int worker) {
    pw_job *J = ctx;
    const int ca = J->Ci ? J->Ci : 1; /* rows of A */
    float *A = J->scratch + (int64_t)worker * (ca + (J->proj ? J->Co : 0)) * VB, *Z = A + ca * VB;
    const int64_t nrb = (J->Co + J->R - 1) / J->R, corow = nrb * J->R, nitems = J->B * J->nblk;
    int64_t it = b0 < e0 ? atomic_fetch_add(&J->next, 1) : nitems;
    if (J->proj) memset(Z, 0, (size_t)J->Co * VB * sizeof(float)); /* columns past a short block stay defined */
    for (int64_t next; it < nitems; it = next) {
        next = atomic_fetch_add(&J->next, 1);
        int64_t b = it / J->nblk, blk = it % J->nblk, v0 = blk * VB;
        int nv = (int)(J->V - v0 < VB ? J->V - v0 : VB);
        /* the next block's input: the broadcast tiles fetch it channel by channel while this
         * block loads (whole blocks only), the packed path a few lines per tile */
        const int64_t nv0 = next % J->nblk * VB;
        const float *nx = next < nitems ? J->x + next / J->nblk * J->xc * J->V + nv0 : NULL;
        load_block(J, A, b, v0, nv, !J->packed && nx && nv0 + VB <= J->V ? nx : NULL);
        cg_pk_cursor pf = cg_pk_prefetch_start(J->packed ? nx : NULL, J->V, J->xc, J->V - nv0 < VB ? J->V - nv0 : VB);
        /* the block's output rows: y, or Z to be projected */
        float *yb = J->proj ? Z : J->y + b * J->Co * J->V + v0;
        const int64_t ldy = J->proj ? VB : J->V;
        const int64_t per_tile = (pf.left + nrb * (VB / PK_NR) - 1) / (nrb * (VB / PK_NR));
        for (int64_t rb = 0; J->packed && rb < nrb; rb++) {
            const int R = (int)(J->Co - rb * PK_MR < PK_MR ? J->Co - rb * PK_MR : PK_MR);
            float *y = yb + rb * PK_MR * ldy;
            for (int j = 0; j * PK_NR < nv; j++) {
                cg_pk_prefetch_step(&pf, per_tile);
                __m256 acc[PK_MR * PK_NV];
                cg_pk_kernel(PK_MR, PK_NV, PK_MR, J->Ci, J->wp + rb * PK_MR * J->Ci, 1, PK_MR, A + j * J->Ci * PK_NR, acc);
                cg_pk_store(PK_MR, PK_NV, acc, y + j * PK_NR, ldy, R, nv - j * PK_NR < PK_NR ? nv - j * PK_NR : PK_NR,
                            J->bsum + b * corow + rb * PK_MR, 0);
            }
        }
        for (int64_t rb = 0; !J->packed && rb < nrb; rb++) {
            int R = (int)(J->Co - rb * J->R < J->R ? J->Co - rb * J->R : J->R);
            for (int p0 = 0; p0 < nv; p0 += 8 * J->TV) {
                int nvec = (nv - p0 + 7) / 8, TV = nvec < J->TV ? nvec : J->TV;
                cg_bcast_tile t = {
                    .x = A + p0,
                    .off = J->off,
                    .wp = J->wp + rb * J->R * J->Ci,
                    .K = J->Ci,
                    .wps = J->R,
                    .xrs = 0,
                    .y = yb + rb * J->R * ldy + p0,
                    .ycs = ldy,
                    .yrs = 0,
                    .yws = 1,
                    .nw = nv - p0 < 8 * TV ? nv - p0 : 8 * TV,
                    .bias = J->bsum + b * corow + rb * J->R,
                };
                cg_avx2_bcast_tile(R, 1, TV, &t);
            }
        }
        if (J->proj) {
            /* y[v] = Σ_co proj[co] · a(Z[co][v]), four vectors at a time, channels in order */
            const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(J->slope);
            float *yr = J->y + b * J->V + v0;
            for (int v = 0; v < nv; v += 32) {
                __m256 s[4] = {zero, zero, zero, zero};
                for (int co = 0; co < J->Co; co++) {
                    const __m256 p = _mm256_set1_ps(J->proj[co]);
                    for (int u = 0; u < 4; u++) {
                        __m256 t = _mm256_loadu_ps(Z + co * VB + v + 8 * u); /* rows are VB long: in bounds */
                        if (J->act) t = cg_avx2_leaky_by(t, t, slope);
                        s[u] = _mm256_fmadd_ps(p, t, s[u]);
                    }
                }
                for (int u = 0; u < 4 && v + 8 * u < nv; u++) {
                    int n = nv - v - 8 * u;
                    if (n >= 8) _mm256_storeu_ps(yr + v + 8 * u, s[u]);
                    else _mm256_maskstore_ps(yr + v + 8 * u, cg_avx2_mask(n), s[u]);
                }
            }
            continue;
        }
        if (!J->stats) continue;
        /* the block's statistics, read back from cache */
        double *st = J->stats + (b * J->nblk + blk) * J->Co * 2;
        for (int co = 0; co < J->Co; co++) {
            const float *yr = J->y + (b * J->Co + co) * J->V + v0;
            /* the sum in double: with a mean far from zero a float sum would misplace the
             * mean by a good fraction of a small standard deviation */
            /* two vectors a step, four chains of adds (one chain waits on the add latency) */
            __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
            int v = 0;
            for (; v + 16 <= nv; v += 16) {
                __m256 y0 = _mm256_loadu_ps(yr + v), y1 = _mm256_loadu_ps(yr + v + 8);
                s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(y0)));
                s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(y0, 1)));
                s2 = _mm256_add_pd(s2, _mm256_cvtps_pd(_mm256_castps256_ps128(y1)));
                s3 = _mm256_add_pd(s3, _mm256_cvtps_pd(_mm256_extractf128_ps(y1, 1)));
            }
            for (; v < nv; v += 8) {
                int n = nv - v;
                __m256 y = n >= 8 ? _mm256_loadu_ps(yr + v) : _mm256_maskload_ps(yr + v, cg_avx2_mask(n));
                s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(y)));
                s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)));
            }
            s0 = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
            __m128d sh = _mm_add_pd(_mm256_castpd256_pd128(s0), _mm256_extractf128_pd(s0, 1));
            double sum = _mm_cvtsd_f64(_mm_add_sd(sh, _mm_unpackhi_pd(sh, sh)));
            __m256 mean = _mm256_set1_ps((float)(sum / nv)), q0 = _mm256_setzero_ps(), q1 = q0;
            for (v = 0; v + 16 <= nv; v += 16) {
                __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(yr + v), mean), d1 = _mm256_sub_ps(_mm256_loadu_ps(yr + v + 8), mean);
                q0 = _mm256_fmadd_ps(d0, d0, q0);
                q1 = _mm256_fmadd_ps(d1, d1, q1);
            }
            for (; v < nv; v += 8) {
                int n = nv - v;
                __m256 d = _mm256_sub_ps(n >= 8 ? _mm256_loadu_ps(yr + v) : _mm256_maskload_ps(yr + v, cg_avx2_mask(n)),
                                         mean);
                if (n < 8) d = _mm256_and_ps(d, _mm256_castsi256_ps(cg_avx2_mask(n)));
                q0 = _mm256_fmadd_ps(d, d, q0);
            }
            /* M2 about the block mean: Σ(y - m)² with m rounded to float, corrected for the
             * rounding: Σ(y - m_f)² = M2 + n·(m - m_f)² */
            double mf = (double)(float)(sum / nv), dm = sum / nv - mf;
            st[2 * co] = sum;
            st[2 * co + 1] = cg_avx2_hsum_pd(_mm256_add_ps(q0, q1)) - nv * dm * dm;
        }
    }
}

void cg_avx2_pointwise_layer(const cg_pw_args *a) {
    float *y = a->y, *y_mean = a->y_mean, *y_rstd = a->y_rstd;
    const float *w = a->w, *bias = a->bias, *bias_b = a->bias_b;
    const int64_t B = a->B, V = a->V;
    const int Ci = a->Ci, Co = a->Co;
    if (B <= 0 || V <= 0 || Co <= 0) return;
    CG_ASSERT(!(a->proj && y_mean));
    /* Tile shape: R channels × TV vectors of one line, by the shared cost model. */
    int bestR = 1, bestV = 1;
    double best = INFINITY;
    for (int R = 1; R <= CG_TILE_MAXR; R++)
        for (int TV = 1; TV <= CG_TILE_MAXV; TV++) {
            if (R * TV > CG_TILE_MAXACC) continue;
            int64_t nrb = (Co + R - 1) / R, nseg = (VB / 8 + TV - 1) / TV;
            double t = (double)nrb * nseg * cg_avx2_bcast_cost(R, 1, TV, Ci);
            if (t < best) { best = t; bestR = R; bestV = TV; }
        }
    /* Layers with many channels both ways: the packed microkernel, whose weight panels are
     * the broadcast tiles' packing with R = PK_MR. */
    const int packed = Ci >= PK_MIN && Co >= PK_MIN;
    if (packed) bestR = PK_MR;
    const int64_t nrb = (Co + bestR - 1) / bestR, corow = nrb * bestR, nblk = (V + VB - 1) / VB;
    const int nt = cg_threads_get();
    float *wp = cg_xmalloc((size_t)(corow * (Ci ? Ci : 1)) * sizeof(float));
    int32_t *off = cg_xmalloc((size_t)(Ci ? Ci : 1) * sizeof(int32_t));
    float *bsum = cg_xmalloc((size_t)(B * corow) * sizeof(float));
    for (int64_t rb = 0; rb < nrb; rb++)
        for (int ci = 0; ci < Ci; ci++)
            for (int r = 0; r < bestR; r++) {
                int64_t co = rb * bestR + r;
                wp[(rb * Ci + ci) * bestR + r] = co < Co ? w[co * Ci + ci] : 0.0f;
            }
    for (int ci = 0; ci < Ci; ci++) off[ci] = ci * VB;
    for (int64_t b = 0; b < B; b++)
        for (int64_t co = 0; co < corow; co++)
            bsum[b * corow + co] = co < Co ? (bias ? bias[co] : 0.0f) + (bias_b ? bias_b[b * Co + co] : 0.0f) : 0.0f;
    float *scratch = cg_avx2_scratch_get((size_t)nt * ((Ci ? Ci : 1) + (a->proj ? Co : 0)) * VB * sizeof(float));
    double *stats = y_mean ? cg_avx2_scratch_get((size_t)(B * nblk * Co * 2) * sizeof(double)) : NULL;
    pw_job J = {.y = y, .x = a->x, .x_scale = a->x_scale, .x_shift = a->x_shift, .x_mean = a->x_mean,
                .x_rstd = a->x_rstd, .gamma = a->gamma, .beta = a->beta, .proj = a->proj, .xc = a->x_scale ? 1 : Ci,
                .act = a->act, .slope = a->slope, .B = B, .V = V, .nblk = nblk, .Ci = Ci, .Co = Co, .R = bestR, .TV = bestV, .packed = packed,
                .wp = wp, .off = off, .bsum = bsum, .scratch = scratch, .stats = stats};
    atomic_init(&J.next, 0);
    cg_parallel_for(nt, 1, pw_task, &J);
    if (y_mean) {
        /* Combine the blocks in order: n, mean and M2 of the union (Chan et al.). */
        for (int64_t b = 0; b < B; b++)
            for (int co = 0; co < Co; co++) {
                double n = 0, mean = 0, m2 = 0;
                for (int64_t blk = 0; blk < nblk; blk++) {
                    const double *st = stats + ((b * nblk + blk) * Co + co) * 2;
                    double nb = (double)(V - blk * VB < VB ? V - blk * VB : VB), mb = st[0] / nb;
                    double d = mb - mean, nn = n + nb;
                    mean += d * nb / nn;
                    m2 += st[1] + d * d * n * nb / nn;
                    n = nn;
                }
                y_mean[b * Co + co] = (float)mean;
                y_rstd[b * Co + co] = (float)(1.0 / sqrt(m2 / (double)V + a->eps));
            }
    }
    cg_avx2_scratch_put(stats);
    cg_avx2_scratch_put(scratch);
    free(wp);
    free(off);
    free(bsum);
}
