/*
 * kernels/cpu/avx2_gemm.c — batched matrix product with AVX2+FMA (core/backend.h, gemm):
 * C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b], row-major.
 *
 * Two shapes of register tile (avx2_tile.h), chosen by how op(B) lies in memory:
 *  - op(B) with rows contiguous along N (tb = 0; a Linear layer's backward passes): the
 *    broadcast tile, R rows of C × V vectors of columns, k-steps over K. alpha·op(A) is
 *    packed into panels of R rows (a small copy: A is the thin operand in these uses).
 *  - op(B) = Bᵀ with ta = 0 (a Linear layer's forward, x·Wᵀ): both operands are contiguous
 *    along K, so the dot tile takes R rows of A × C rows of B and reduces along K.
 *  - Aᵀ·Bᵀ: Bᵀ is copied to a contiguous K × N buffer first (rare).
 * K is cut into panels (KC_BCAST, KC_DOT) so that the operands of one panel stay in cache
 * (a Linear layer of the seed models has K = 8001); panels run in order, each adding into C.
 * Threads: over the tiles of C within a panel (disjoint outputs), so every element's sum
 * runs in one fixed order: deterministic for any thread count.
 */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_tile.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/ref.h"

#define KC_BCAST 256  /* k-steps per panel: B's panel (KC × 8V) and A's (M × KC) in L1/L2 */
#define KC_DOT 1024   /* elements of K per panel: R + C rows of 4 KB */

/* ------------------------------------------------- broadcast (tb = 0) ---- */

typedef struct {
    int64_t M, N, K, batch;
    const float *B;        /* K × N rows (stride ldb), batch stride sB */
    int64_t ldb, sB;
    float *C;
    int64_t ldc, sC;
    float beta;
    int R, V;
    const float *wp;       /* per batch: ceil(M/R) panels of K × R (alpha·op(A)) */
    int64_t wp_batch;      /* elements per batch of wp (0: shared) */
    const int32_t *off;    /* (K) k·ldb */
    const int32_t *toff;   /* (K) k·8V: offsets into the staged tail */
    const float *tail;     /* per batch: K × 8V, the last N % (8V) columns, zero-padded */
    int64_t nseg, nfull;   /* segments of 8V columns; those lying wholly inside N */
    int64_t k0, kn;        /* the K panel: first k-step, count */
    float beta_now;        /* beta for the first panel, then 1 */
} bc_job;

static void bc_task(void *ctx, int64_t b0, int64_t e0, int worker) {
    const bc_job *J = ctx;
    const int64_t nrb = (J->M + J->R - 1) / J->R, seglen = 8 * (int64_t)J->V;
    for (int64_t it = b0; it < e0; it++) {
        int64_t rb = it % nrb, seg = (it / nrb) % J->nseg, bt = it / (nrb * J->nseg);
        int R = (int)(J->M - rb * J->R < J->R ? J->M - rb * J->R : J->R);
        int64_t n0 = seg * seglen, nw = J->N - n0 < seglen ? J->N - n0 : seglen;
        int V = (int)((nw + 7) / 8);
        int in_tail = seg >= J->nfull;
        cg_bcast_tile t = {
            .x = in_tail ? J->tail + (bt * J->K + J->k0) * seglen : J->B + bt * J->sB + J->k0 * J->ldb + n0,
            .off = in_tail ? J->toff : J->off,
            .wp = J->wp + bt * J->wp_batch + (rb * J->K + J->k0) * J->R,
            .K = J->kn,
            .wps = J->R,
            .y = J->C + bt * J->sC + rb * J->R * J->ldc + n0,
            .ycs = J->ldc,
            .yws = 1,
            .nw = (int)nw,
            .beta = J->beta_now,
        };
        cg_avx2_bcast_tile(R, 1, V, &t);
    }
}

static void gemm_bcast(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc,
                       int64_t sC, int64_t batch) {
    /* tile: R rows × V vectors of one line */
    int bestR = 1, bestV = 1;
    double best = INFINITY;
    for (int R = 1; R <= CG_TILE_MAXR; R++)
        for (int V = 1; V <= CG_TILE_MAXV; V++) {
            if (R * V > CG_TILE_MAXACC) continue;
            int64_t nr[2] = {M / R, M % R != 0}, nv = (N + 8 * V - 1) / (8 * V);
            double t = 0;
            for (int a = 0; a < 2; a++)
                if (nr[a]) t += (double)nr[a] * nv * cg_avx2_bcast_cost(a ? (int)(M % R) : R, 1, V, K < KC_BCAST ? K : KC_BCAST);
            if (t < best) { best = t; bestR = R; bestV = V; }
        }
    const int R = bestR, V = bestV;
    const int64_t nrb = (M + R - 1) / R, seglen = 8 * (int64_t)V, nseg = (N + seglen - 1) / seglen;
    /* Columns past the last whole vector would read past B: the segment holding them is
     * staged, zero-padded. */
    const int64_t nfull = N % 8 == 0 ? nseg : N / seglen;
    const int64_t wp_batch = sA ? nrb * R * K : 0, nwp_batches = sA ? batch : 1;
    float *wp = cg_avx2_scratch_get((size_t)(nwp_batches * nrb * R * (K ? K : 1)) * sizeof(float));
    for (int64_t bt = 0; bt < nwp_batches; bt++) {
        const float *a = A + bt * sA;
        float *w = wp + bt * wp_batch;
        for (int64_t rb = 0; rb < nrb; rb++)
            for (int64_t k = 0; k < K; k++)
                for (int r = 0; r < R; r++) {
                    int64_t i = rb * R + r;
                    w[(rb * K + k) * R + r] = i < M ? alpha * (ta ? a[k * lda + i] : a[i * lda + k]) : 0.0f;
                }
    }
    int32_t *off = cg_xmalloc((size_t)(K ? K : 1) * sizeof(int32_t)), *toff = cg_xmalloc((size_t)(K ? K : 1) * sizeof(int32_t));
    for (int64_t k = 0; k < K; k++) {
        off[k] = (int32_t)(k * ldb);
        toff[k] = (int32_t)(k * seglen);
    }
    float *tail = NULL;
    if (nfull < nseg) {
        tail = cg_avx2_scratch_get((size_t)(batch * (K ? K : 1) * seglen) * sizeof(float));
        int64_t n0 = nfull * seglen;
        for (int64_t bt = 0; bt < batch; bt++)
            for (int64_t k = 0; k < K; k++) {
                float *t = tail + (bt * K + k) * seglen;
                const float *src = B + bt * sB + k * ldb + n0;
                for (int64_t j = 0; j < seglen; j++) t[j] = n0 + j < N ? src[j] : 0.0f;
            }
    }
    bc_job J = {.M = M, .N = N, .K = K, .batch = batch, .B = B, .ldb = ldb, .sB = sB, .C = C, .ldc = ldc, .sC = sC,
                .beta = beta, .R = R, .V = V, .wp = wp, .wp_batch = wp_batch, .off = off, .toff = toff, .tail = tail,
                .nseg = nseg, .nfull = nfull};
    for (J.k0 = 0; J.k0 < K || J.k0 == 0; J.k0 += KC_BCAST) {
        J.kn = K - J.k0 < KC_BCAST ? K - J.k0 : KC_BCAST;
        J.beta_now = J.k0 == 0 ? beta : 1.0f;
        cg_parallel_for(batch * nseg * nrb, 1, bc_task, &J);
    }
    cg_avx2_scratch_put(tail);
    cg_avx2_scratch_put(wp);
    free(off);
    free(toff);
}

/* ------------------------------------------------------ dot (A · Bᵀ) ---- */

typedef struct {
    int64_t M, N, K;
    const float *A, *B;
    int64_t lda, sA, ldb, sB;
    float *C;
    int64_t ldc, sC;
    float alpha, beta;
    int R, Cc;
    int64_t nrb, ncb;
    const int32_t *off;    /* (Cc) c·ldb */
    int64_t k0, kn;        /* the K panel */
    float beta_now;        /* beta for the first panel, then 1 */
} dot_job;

static void dot_task(void *ctx, int64_t b0, int64_t e0, int worker) {
    const dot_job *J = ctx;
    for (int64_t it = b0; it < e0; it++) {
        int64_t rb = it % J->nrb, cb = (it / J->nrb) % J->ncb, bt = it / (J->nrb * J->ncb);
        int R = (int)(J->M - rb * J->R < J->R ? J->M - rb * J->R : J->R);
        int Cn = (int)(J->N - cb * J->Cc < J->Cc ? J->N - cb * J->Cc : J->Cc);
        cg_dot_tile t = {
            .a = J->A + bt * J->sA + rb * J->R * J->lda + J->k0,
            .b = J->B + bt * J->sB + cb * J->Cc * J->ldb + J->k0,
            .off = J->off,
            .acs = J->lda,
            .nlines = 1,
            .nvec = (J->kn + 7) / 8,
            .tail = (int)(J->kn % 8),
            .outf = J->C + bt * J->sC + rb * J->R * J->ldc + cb * J->Cc,
            .ocs = J->ldc,
            .alpha = J->alpha,
            .beta = J->beta_now,
        };
        cg_avx2_dot_tile(R, Cn, &t);
    }
}

static void gemm_dot(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int64_t sA,
                     const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                     int64_t batch) {
    int bestR = 1, bestC = 1;
    double best = INFINITY;
    int64_t steps = ((K < KC_DOT ? K : KC_DOT) + 7) / 8;
    for (int R = 1; R <= CG_TILE_MAXR; R++)
        for (int Cc = 1; Cc <= CG_TILE_MAXC; Cc++) {
            if (R * Cc > CG_TILE_MAXACC) continue;
            int64_t nr[2] = {M / R, M % R != 0}, nc[2] = {N / Cc, N % Cc != 0};
            int rr[2] = {R, (int)(M % R)}, cc[2] = {Cc, (int)(N % Cc)};
            double t = 0;
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    if (nr[a] && nc[b]) t += (double)nr[a] * nc[b] * cg_avx2_dot_cost(rr[a], cc[b], steps);
            if (t < best) { best = t; bestR = R; bestC = Cc; }
        }
    int32_t off[CG_TILE_MAXC];
    for (int c = 0; c < CG_TILE_MAXC; c++) off[c] = (int32_t)(c * ldb);
    dot_job J = {.M = M, .N = N, .K = K, .A = A, .B = B, .lda = lda, .sA = sA, .ldb = ldb, .sB = sB, .C = C,
                 .ldc = ldc, .sC = sC, .alpha = alpha, .beta = beta, .R = bestR, .Cc = bestC,
                 .nrb = (M + bestR - 1) / bestR, .ncb = (N + bestC - 1) / bestC, .off = off};
    for (J.k0 = 0; J.k0 < K || J.k0 == 0; J.k0 += KC_DOT) {
        J.kn = K - J.k0 < KC_DOT ? K - J.k0 : KC_DOT;
        J.beta_now = J.k0 == 0 ? beta : 1.0f;
        cg_parallel_for(batch * J.nrb * J.ncb, 1, dot_task, &J);
    }
}

/* ------------------------------------------------------------- entry ---- */

typedef struct {
    const float *B;
    float *T;
    int64_t N, K, ldb, sB;
} tr_job;

static void transpose_task(void *ctx, int64_t b0, int64_t e0, int worker) {
    const tr_job *J = ctx;
    for (int64_t it = b0; it < e0; it++) { /* one row k of one batch: T[k][j] = B[j][k] */
        int64_t bt = it / J->K, k = it % J->K;
        float *t = J->T + (bt * J->K + k) * J->N;
        const float *b = J->B + bt * J->sB + k;
        for (int64_t j = 0; j < J->N; j++) t[j] = b[j * J->ldb];
    }
}

void cg_avx2_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                  int64_t batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    /* int32 offsets into B: fall back to the reference for gigantic operands */
    if ((tb ? N : K) * ldb >= INT32_MAX || K * 8 * CG_TILE_MAXV >= INT32_MAX) {
        cg_ref_gemm(ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
        return;
    }
    if (!tb) {
        gemm_bcast(ta, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
    } else if (!ta) {
        gemm_dot(M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
    } else {
        int64_t nb = sB ? batch : 1;
        float *T = cg_avx2_scratch_get((size_t)(nb * (K ? K : 1) * N) * sizeof(float));
        tr_job J = {B, T, N, K, ldb, sB};
        cg_parallel_for(nb * K, 16, transpose_task, &J);
        gemm_bcast(ta, M, N, K, alpha, A, lda, sA, T, N, sB ? K * N : 0, beta, C, ldc, sC, batch);
        cg_avx2_scratch_put(T);
    }
}
