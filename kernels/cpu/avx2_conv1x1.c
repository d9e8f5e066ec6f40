/*
 * kernels/cpu/avx2_conv1x1.c — kernel-size-1 convolutions (k 1, stride 1, no padding) as
 * packed GEMMs with AVX2+FMA, on the microkernel of avx2_packed.h. Semantics: those of the
 * reference kernels (kernels/cpu/conv3d.c), which tests/test_backend_ops.c holds them to;
 * avx2_conv3d.c hands these shapes here when cg_avx2_conv1x1_takes() says so.
 *
 * Per sample n, with P voxels:
 *   forward        Y_n (Co × P) = W (Co × Ci) · X_n (Ci × P) + bias
 *   backward-data  dX_n (Ci × P) = Wᵀ (Ci × Co) · dY_n (Co × P)
 *   backward-weight dW (Co × Ci) = Σ_n dY_n · X_nᵀ      (k-depth: all N·P voxels)
 *
 * Forward and backward-data are one routine (the BLIS loop nest, reduced to what these
 * shapes need): A (W or Wᵀ, at most a few hundred KB, in L2) is packed once, k-step-major
 * per block of 4 output channels. A work item is one sample × a block of NC voxels: its
 * X block (K × NC) is packed into panels of 24 voxels in a per-thread buffer (L2), then
 * each block of 4 output channels sweeps the panels with the 4×24 microkernel (12
 * accumulators; the panel in L1, aligned loads). Packing turns K short strided row reads
 * per tile into one sequential stream; the next item's block is prefetched a few lines
 * per tile (K short rows are too many streams for the hardware prefetcher). Outputs far
 * larger than the caches are written with streaming stores.
 *
 * Backward-weight: the voxels are cut into chunks of KC per sample, in order, and one
 * pool call takes a group of chunks (about 4 MB of dY and X, in L3). Its items are
 * (16-channel panel of X, group of output row blocks): per chunk, the item transposes its
 * X panel (16 rows × KC voxels, 8×8 register transposes) into a panel contiguous along
 * the voxel, then 6×16 tiles (4×16 for the last rows: 128 output channels are 20·6 + 2·4)
 * broadcast dY in place; each tile's fp32 chunk sum is added to a double accumulator.
 * Chunk boundaries depend on the sizes alone and each element's chunks are added in
 * order, so results do not depend on the thread count.
 *
 * Limits: shapes with few channels (the 2→128 first post-processor layer) keep the
 * generic path of avx2_conv3d.c, whose tiles suit them better (cg_avx2_conv1x1_takes).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_packed.h"
#include "kernels/cpu/avx2_util.h"

#define FW_MR 4
#define FW_NV 3
#define FW_NR (8 * FW_NV)
#define FW_NC (10 * FW_NR)             /* voxels per forward work item */
#define BW_NV 2
#define BW_NR (8 * BW_NV)
#define BW_KC 512                      /* voxels per backward-weight chunk */
#define BW_GROUP_BYTES ((int64_t)4 << 20) /* dY and X of the chunks of one pool call */
#define MIN_CH 16                      /* fewer channels in or out: the generic path */
#define STREAM_BYTES ((int64_t)48 << 20) /* outputs larger than this bypass the caches */

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int cg_avx2_conv1x1_takes(const cg_conv_desc *c) {
    for (int d = 0; d < 3; d++)
        if (c->k[d] != 1 || c->stride[d] != 1 || c->pad[d] != 0 || c->in[d] != c->out[d] || c->in[d] <= 0) return 0;
    if (c->N <= 0 || c->Ci <= 0 || c->Co <= 0) return 0;
    return c->Ci >= MIN_CH && c->Co >= MIN_CH;
}

/* ------------------------------------------- forward and backward-data ---- */

typedef struct {
    float *y;              /* (N, M, P) */
    const float *x;        /* (N, K, P) */
    const float *a;        /* packed: row block rb, k-step k, row r at a[(rb·K + k)·MR + r] */
    const float *bias;     /* (M) or NULL */
    int64_t N, M, K, P, nblk; /* work items: N · nblk (sample, block of FW_NC voxels) */
    float *pack;           /* per worker: K × FW_NC */
    int stream;
    atomic_llong next;     /* the next work item to take */
} fw_job;

/* One pool item per thread: each takes work items one at a time from the shared counter,
 * claiming the next before it computes the current one (so it can prefetch it). Finer
 * than the pool's chunks of a quarter of a thread's share, which leave a thread that the
 * system delays holding the last one; results do not depend on who computes an item. */
static void fw_task(void *ctx, int64_t b, int64_t e, int worker) {
    fw_job *J = ctx;
    float *bp = J->pack + (int64_t)worker * J->K * FW_NC;
    const int64_t nrb = ceil_div(J->M, FW_MR), nitems = J->N * J->nblk;
    int64_t it = b < e ? atomic_fetch_add(&J->next, 1) : nitems;
    for (int64_t next; it < nitems; it = next) {
        next = atomic_fetch_add(&J->next, 1);
        const int64_t n = it / J->nblk, p0 = it % J->nblk * FW_NC;
        const int nc = (int)(J->P - p0 < FW_NC ? J->P - p0 : FW_NC), npan = (int)ceil_div(nc, FW_NR);
        cg_pk_pack_cols(FW_NV, bp, J->x + n * J->K * J->P + p0, J->P, J->K, nc);
        /* the next item's block */
        cg_pk_cursor pf = cg_pk_prefetch_start(NULL, 0, 0, 0);
        if (next < nitems) {
            const int64_t n2 = next / J->nblk, q0 = next % J->nblk * FW_NC;
            pf = cg_pk_prefetch_start(J->x + n2 * J->K * J->P + q0, J->P, J->K, J->P - q0 < FW_NC ? J->P - q0 : FW_NC);
        }
        const int64_t per_tile = ceil_div(pf.left, nrb * npan);
        for (int64_t rb = 0; rb < nrb; rb++) {
            const int R = (int)(J->M - rb * FW_MR < FW_MR ? J->M - rb * FW_MR : FW_MR);
            float *y = J->y + (n * J->M + rb * FW_MR) * J->P + p0;
            for (int j = 0; j < npan; j++) {
                cg_pk_prefetch_step(&pf, per_tile);
                __m256 acc[FW_MR * FW_NV];
                cg_pk_kernel(FW_MR, FW_NV, FW_MR, J->K, J->a + rb * FW_MR * J->K, 1, FW_MR, bp + (int64_t)j * J->K * FW_NR,
                             acc);
                cg_pk_store(FW_MR, FW_NV, acc, y + j * FW_NR, J->P, R,
                            nc - j * FW_NR < FW_NR ? nc - j * FW_NR : FW_NR, J->bias ? J->bias + rb * FW_MR : NULL,
                            J->stream);
            }
        }
    }
    if (J->stream) _mm_sfence();
}

static void gemm_fw(float *y, const float *x, const float *a, int64_t ars, int64_t aks, const float *bias, int64_t N,
                    int64_t M, int64_t K, int64_t P) {
    const int nt = cg_threads_get();
    const int64_t nrb = ceil_div(M, FW_MR);
    /* a packed by row blocks, k-step-major (ap[(rb·K + k)·MR + r]): one forward stream per
     * tile, whichever way a lies (Wᵀ's rows are columns of W); rows past M are zeros */
    float *ap = cg_avx2_scratch_get((size_t)(nrb * FW_MR * K) * sizeof(float));
    for (int64_t rb = 0; rb < nrb; rb++)
        for (int64_t k = 0; k < K; k++)
            for (int r = 0; r < FW_MR; r++) {
                const int64_t i = rb * FW_MR + r;
                ap[(rb * K + k) * FW_MR + r] = i < M ? a[i * ars + k * aks] : 0.0f;
            }
    float *pack = cg_avx2_scratch_get((size_t)(nt * K * FW_NC) * sizeof(float));
    fw_job J = {.y = y, .x = x, .a = ap, .bias = bias, .N = N, .M = M, .K = K, .P = P,
                .nblk = ceil_div(P, FW_NC), .pack = pack,
                .stream = N * M * P * (int64_t)sizeof(float) > STREAM_BYTES};
    atomic_init(&J.next, 0);
    cg_parallel_for(nt, 1, fw_task, &J);
    cg_avx2_scratch_put(pack);
    cg_avx2_scratch_put(ap);
}

void cg_avx2_conv1x1_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c) {
    const int64_t P = (int64_t)c->in[0] * c->in[1] * c->in[2];
    gemm_fw(y, x, w, c->Ci, 1, bias, c->N, c->Co, c->Ci, P);
}

void cg_avx2_conv1x1_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c) {
    const int64_t P = (int64_t)c->in[0] * c->in[1] * c->in[2];
    gemm_fw(dx, dy, w, 1, c->Ci, NULL, c->N, c->Ci, c->Co, P);
}

/* ----------------------------------------------------- backward-weight ---- */

typedef struct {
    const float *x, *dy;   /* (N, Ci, P), (N, Co, P) */
    int64_t Ci, Co, P, nchunk; /* nchunk: chunks per sample */
    int64_t c0, c1;        /* the chunks of this pool call: chunk c is sample c / nchunk */
    const int32_t *rows;   /* (nrb, 2): first row and rows of each row block */
    int64_t nrb, ngrp, rb_per_grp;
    float *pack;           /* per worker: BW_KC × BW_NR */
    double *acc;           /* (Co, Ci) */
} bw_job;

/* dst[k·16 + c] = x[c·ldx + k] for c < nrow (zeros for c >= nrow), k < kc: two 8×8
 * register transposes per 8 voxels. */
static void pack_transposed(float *dst, const float *x, int64_t ldx, int nrow, int kc) {
    for (int h = 0; h < 2; h++) {
        const float *rows[8];
        static const float zero[8] = {0};
        for (int c = 0; c < 8; c++) rows[c] = h * 8 + c < nrow ? x + (h * 8 + c) * ldx : NULL;
        for (int k = 0; k < kc; k += 8) {
            const int n = kc - k < 8 ? kc - k : 8;
            const __m256i mk = cg_avx2_mask(n);
            __m256 r[8];
            for (int c = 0; c < 8; c++)
                r[c] = !rows[c] ? _mm256_loadu_ps(zero)
                     : n == 8   ? _mm256_loadu_ps(rows[c] + k)
                                : _mm256_maskload_ps(rows[c] + k, mk);
            __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
            __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
            __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
            __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            /* column q of the 8×8 block (voxel k+q, channels h·8 .. h·8+8) */
            __m256 col[8] = {
                _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31),
            };
            for (int q = 0; q < n; q++) _mm256_store_ps(dst + (int64_t)(k + q) * BW_NR + h * 8, col[q]);
        }
    }
}

/* One tile: acc(R rows of dY from row r0 × the panel's 16 channels) over kc voxels,
 * added to the double sums. MR is a constant (6, or 4 for the last rows). */
static inline __attribute__((always_inline)) void bw_tile(int MR, const bw_job *J, const float *bp, int64_t n,
                                                          int64_t p0, int kc, int64_t r0, int R, int64_t cb, int C) {
    __m256 acc[6 * BW_NV];
    cg_pk_kernel(MR, BW_NV, R, kc, J->dy + (n * J->Co + r0) * J->P + p0, J->P, 1, bp, acc);
    /* out of the registers with constant indices (a variable index would keep the
     * accumulators in memory through the k loop), then into the double sums */
    float s[6][BW_NR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < BW_NV; v++) _mm256_storeu_ps(&s[r][8 * v], acc[r * BW_NV + v]);
    for (int r = 0; r < R; r++) {
        double *o = J->acc + (r0 + r) * J->Ci + cb * BW_NR;
        if (C == BW_NR) {
            for (int c = 0; c < BW_NR; c += 4)
                _mm256_storeu_pd(o + c, _mm256_add_pd(_mm256_loadu_pd(o + c), _mm256_cvtps_pd(_mm_loadu_ps(&s[r][c]))));
        } else {
            for (int c = 0; c < C; c++) o[c] += s[r][c];
        }
    }
}

static void bw_task(void *ctx, int64_t b, int64_t e, int worker) {
    const bw_job *J = ctx;
    float *bp = J->pack + (int64_t)worker * BW_KC * BW_NR;
    for (int64_t it = b; it < e; it++) {
        const int64_t cb = it / J->ngrp, g = it % J->ngrp;
        const int C = (int)(J->Ci - cb * BW_NR < BW_NR ? J->Ci - cb * BW_NR : BW_NR);
        const int64_t rb0 = g * J->rb_per_grp, rb1 = rb0 + J->rb_per_grp < J->nrb ? rb0 + J->rb_per_grp : J->nrb;
        for (int64_t ch = J->c0; ch < J->c1; ch++) {
            const int64_t n = ch / J->nchunk, p0 = ch % J->nchunk * BW_KC;
            const int kc = (int)(J->P - p0 < BW_KC ? J->P - p0 : BW_KC);
            pack_transposed(bp, J->x + (n * J->Ci + cb * BW_NR) * J->P + p0, J->P, C, kc);
            /* the next chunk's X panel */
            cg_pk_cursor pf = cg_pk_prefetch_start(NULL, 0, 0, 0);
            if (ch + 1 < J->c1) {
                const int64_t q0 = (ch + 1) % J->nchunk * BW_KC;
                pf = cg_pk_prefetch_start(J->x + ((ch + 1) / J->nchunk * J->Ci + cb * BW_NR) * J->P + q0, J->P, C,
                              J->P - q0 < BW_KC ? J->P - q0 : BW_KC);
            }
            const int64_t per_tile = ceil_div(pf.left, rb1 - rb0 > 0 ? rb1 - rb0 : 1);
            for (int64_t rb = rb0; rb < rb1; rb++) {
                cg_pk_prefetch_step(&pf, per_tile);
                const int64_t r0 = J->rows[2 * rb];
                const int R = J->rows[2 * rb + 1];
                if (R > 4) bw_tile(6, J, bp, n, p0, kc, r0, R, cb, C);
                else bw_tile(4, J, bp, n, p0, kc, r0, R, cb, C);
            }
        }
    }
}

void cg_avx2_conv1x1_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c) {
    const int64_t P = (int64_t)c->in[0] * c->in[1] * c->in[2];
    const int nt = cg_threads_get();
    const int64_t ncb = ceil_div(c->Ci, BW_NR);
    /* Row blocks of 6, the last rows in blocks of at most 4 (a 4×16 tile, 8 accumulators,
     * keeps pace with the 6×16 one): 128 = 20·6 + 2·4, not 21·6 + a 6-row tile for 2. */
    int32_t *rows = cg_xmalloc((size_t)(c->Co / 4 + 2) * 2 * sizeof(int32_t));
    int64_t nrb = 0, n6 = c->Co / 6, rest = c->Co % 6;
    if (n6 > 0 && (rest == 1 || rest == 2)) {
        n6--;
        rest += 6;
    }
    for (int64_t i = 0; i < n6; i++, nrb++) {
        rows[2 * nrb] = (int32_t)(6 * i);
        rows[2 * nrb + 1] = 6;
    }
    for (int64_t r0 = 6 * n6; r0 < c->Co; nrb++) {
        /* rest: 3 or 4 → one block; 5 → one 6-row tile; 7, 8 → two blocks of 4 and 3 or 4 */
        int64_t R = rest == 5 ? 5 : rest > 4 ? 4 : rest;
        rows[2 * nrb] = (int32_t)r0;
        rows[2 * nrb + 1] = (int32_t)R;
        r0 += R;
        rest -= R;
    }
    /* enough items per chunk for the pool: split the row blocks when the panels are few */
    int64_t ngrp = ceil_div(2 * nt, ncb);
    ngrp = ngrp < 1 ? 1 : ngrp > nrb ? nrb : ngrp;
    float *pack = cg_avx2_scratch_get((size_t)(nt * BW_KC * BW_NR) * sizeof(float));
    /* 64-byte aligned: the threads write neighbouring 16-channel panels of each row, and a
     * cache line shared by two panels would bounce between the cores */
    double *acc = cg_avx2_scratch_get((size_t)(c->Co * c->Ci) * sizeof(double));
    memset(acc, 0, (size_t)(c->Co * c->Ci) * sizeof(double));
    bw_job J = {.x = x, .dy = dy, .Ci = c->Ci, .Co = c->Co, .P = P, .nchunk = ceil_div(P, BW_KC), .rows = rows,
                .nrb = nrb, .ngrp = ngrp, .rb_per_grp = ceil_div(nrb, ngrp), .pack = pack, .acc = acc};
    /* Groups of chunks per pool call, about BW_GROUP_BYTES of dY and X: an item runs down
     * its group's chunks while the group stays in L3; few pool calls, so few waits on a
     * thread the system has descheduled. */
    int64_t group = BW_GROUP_BYTES / (4 * (c->Ci + c->Co) * BW_KC);
    group = group < 1 ? 1 : group;
    const int64_t nch = c->N * J.nchunk;
    for (J.c0 = 0; J.c0 < nch; J.c0 = J.c1) {
        J.c1 = J.c0 + group < nch ? J.c0 + group : nch;
        cg_parallel_for(ncb * ngrp, 1, bw_task, &J);
    }
    for (int64_t i = 0; i < (int64_t)c->Co * c->Ci; i++) dw[i] = (float)acc[i];
    cg_avx2_scratch_put(acc);
    free(rows);
    cg_avx2_scratch_put(pack);
}
