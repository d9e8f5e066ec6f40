/*
 * kernels/cpu/avx2_conv_cl.c — AVX2+FMA convolutions with the output channels in the vector
 * lanes ("channel lanes"): forward (any stride up to 8), and backward-data of stride 1 (the
 * forward of the flipped, transposed kernel with padding k - 1 - pad). Semantics: those of
 * the reference kernels (kernels/cpu/conv3d.c), which tests/test_backend_ops.c holds these
 * to. avx2_conv3d.c calls in here first and takes the shapes this declines (returns 0).
 *
 * Why a second layout: the correlation tiles of avx2_conv3d.c put 8 positions of an output
 * row in a vector. On rows of 15 (the 15³ layers) a vector of every row is one lane short,
 * and a tile's vectors cover a row's border positions together with its inner ones, so the
 * taps that read the zero padding left and right are computed for the whole row: 16/15 ×
 * 45/43 of the useful work on 15³ k3 layers. Here a register tile is P = 6 output positions
 * × 16 output channels (two vectors): per k-step (input channel, tap) it loads the 16
 * weights once and broadcasts one input value per position (12 FMAs, 8 loads, all of them
 * aligned or scalar: none splits a cache line). The positions of a tile need not be
 * neighbours, so they are grouped by "class" — which taps of each axis read input rather
 * than padding — and each class computes only its taps (runs of k-steps): no padding tap
 * and no idle lane is computed anywhere (a class's last tile may hold fewer positions).
 *
 * Layout: each sample's input is staged zero-padded ([Ci][(out - 1)·stride + k] per axis, no
 * phase split: a broadcast reads one value wherever it is), so a k-step is one offset; weights are packed [Co/16][k-step][16]. Work items are (sample,
 * tile, channel block), channel blocks innermost so that the 4 blocks of a 64-channel layer
 * reuse the tile's input rows from L1/L2 while the packed weights (110 KB per block at
 * K = 1728) stream from L2. Tiles write disjoint outputs (scattered: 96 scalar stores per
 * tile of K·12 FMAs), each sums in a fixed order: results do not depend on the threads.
 *
 * Taken: Co (backward-data: Ci and stride 1) a multiple of 16, a kernel of more than one tap,
 * padding at most k - 1 for backward-data, and by default where the row tiles waste at
 * least CL_MIN_WASTE of their work (see cl_waste) and there are at least CL_MIN_K k-steps
 * (with fewer, as enc_c1's K = 64, the 96 scattered stores per tile weigh too much: equal on
 * one core, slower on two); CG_AVX2_CL=0 / =1 turns it off / on for every shape it can
 * take (for tests and comparisons).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/ref.h"

#define CL_P 6                                /* positions per tile */
#define CL_CB 16                              /* output channels per tile: two vectors */
#define CL_GROUP_BYTES ((int64_t)32 << 20)    /* staged samples processed together, at most */
#define CL_MIN_WASTE 0.05                     /* see cl_waste */
#define CL_MIN_K 256                          /* k-steps (Ci·k³) below which the row tiles stay */
/* Fully unroll the tile's loops, or GCC keeps the accumulators in memory (avx2_tile.c). */
#define UNROLL _Pragma("GCC unroll 16")

typedef struct {
    int Ci, Co;            /* channels of the correlation's input and output */
    int k[3], s[3], pad[3], in[3], out[3], L[3];
    int64_t cstride, sample, ych; /* staged channel and sample strides; output channel size */
    int64_t K;             /* k-steps: Ci · k³ */
    int32_t *off;          /* (K) staged offset of each k-step */
    float *wp;             /* (Co/16, K, 16) packed weights */
    int64_t ntiles;
    int32_t *pos, *ypos;   /* (ntiles, CL_P) staged / output offsets of the tile's positions */
    int8_t *np;            /* (ntiles) positions in the tile */
    int32_t *tcls;         /* (ntiles) class of the tile */
    int ncls;
    int32_t **runs;        /* (ncls) pairs (first k-step, count) */
    int *nruns;
} clplan;

/* Bits of the taps t of `axis` whose staged index o·stride + t holds input for output o. */
static uint32_t tap_mask(const clplan *p, int axis, int o) {
    uint32_t m = 0;
    for (int t = 0; t < p->k[axis]; t++) {
        int i = o * p->s[axis] + t - p->pad[axis];
        if (i >= 0 && i < p->in[axis]) m |= 1u << t;
    }
    return m;
}

/* The fraction of the row tiles' work (rows rounded up to vectors, every w tap) that is
 * idle lanes or padding taps along w: what this layout saves. */
static double cl_waste(int out_w, int in_w, int k, int s, int pad) {
    double useful = 0;
    for (int o = 0; o < out_w; o++)
        for (int t = 0; t < k; t++) useful += o * s + t - pad >= 0 && o * s + t - pad < in_w;
    return 1.0 - useful / ((double)((out_w + 7) / 8 * 8) * k);
}

/* Whether to take a forward-shaped correlation (Co outputs, kernel k, padding pad). */
static int cl_takes(int Ci, int Co, const int *in, const int *out, const int *k, const int *pad, const int *stride,
                    int max_stride) {
    const char *env = getenv("CG_AVX2_CL");
    if (env && env[0] == '0') return 0;
    if (Co % CL_CB != 0 || k[0] * k[1] * k[2] < 2) return 0;
    for (int d = 0; d < 3; d++)
        if (stride[d] < 1 || stride[d] > max_stride || pad[d] < 0 || k[d] > 32 || in[d] <= 0 || out[d] <= 0) return 0;
    if (env && env[0] == '1') return 1;
    if ((int64_t)Ci * k[0] * k[1] * k[2] < CL_MIN_K) return 0;
    return cl_waste(out[2], in[2], k[2], stride[2], pad[2]) >= CL_MIN_WASTE;
}

static void cl_free(clplan *p) {
    free(p->off);
    free(p->wp);
    free(p->pos);
    free(p->ypos);
    free(p->np);
    free(p->tcls);
    for (int i = 0; i < p->ncls; i++) free(p->runs[i]);
    free(p->runs);
    free(p->nruns);
}

/* The plan of a correlation of stride `stride` (1 for backward-data). For the forward w is
 * read as is (Co, Ci, taps); for backward-data (flip) as w[ci][co] with the taps reversed. */
static int cl_plan(clplan *p, int Ci, int Co, const int *k, const int *stride, const int *pad, const int *in,
                   const int *out, const float *w, int flip) {
    memset(p, 0, sizeof *p);
    p->Ci = Ci;
    p->Co = Co;
    int64_t sample = Ci;
    for (int d = 0; d < 3; d++) {
        p->k[d] = k[d];
        p->s[d] = stride[d];
        p->pad[d] = pad[d];
        p->in[d] = in[d];
        p->out[d] = out[d];
        p->L[d] = (out[d] - 1) * stride[d] + k[d];
        sample *= p->L[d];
    }
    /* channels 16 floats apart from a multiple of 4 KB (as avx2_conv3d.c's odd lines) */
    p->cstride = (int64_t)p->L[0] * p->L[1] * p->L[2];
    p->cstride = (p->cstride + 15) / 16 * 16;
    if ((p->cstride / 16) % 2 == 0) p->cstride += 16;
    p->sample = Ci * p->cstride;
    if (p->sample >= INT32_MAX / 2 || sample >= INT32_MAX / 2) return 0;
    p->ych = (int64_t)out[0] * out[1] * out[2];
    const int k3 = k[0] * k[1] * k[2];
    p->K = (int64_t)Ci * k3;
    p->off = cg_xmalloc((size_t)p->K * sizeof(int32_t));
    for (int64_t j = 0; j < p->K; j++) {
        int ci = (int)(j / k3), t = (int)(j % k3), kd = t / (k[1] * k[2]), kh = t / k[2] % k[1], kw = t % k[2];
        p->off[j] = (int32_t)(ci * p->cstride + ((int64_t)kd * p->L[1] + kh) * p->L[2] + kw);
    }
    /* weights: block b, k-step j, lane l = w of output channel 16b + l */
    const int64_t nb = Co / CL_CB;
    p->wp = cg_xmalloc((size_t)(nb * p->K * CL_CB) * sizeof(float));
    for (int64_t b = 0; b < nb; b++)
        for (int64_t j = 0; j < p->K; j++)
            for (int l = 0; l < CL_CB; l++) {
                int64_t co = b * CL_CB + l, ci = j / k3, t = j % k3;
                p->wp[(b * p->K + j) * CL_CB + l] = flip ? w[(ci * Co + co) * k3 + (k3 - 1 - t)] : w[(co * Ci + ci) * k3 + t];
            }
    /* classes: the (d, h, w) tap masks of each output position; per axis the distinct
     * masks (a few near each border, one inside), the class numbering their combinations */
    int32_t *aidx[3], na[3];
    uint32_t *amask[3];
    for (int d = 0; d < 3; d++) {
        aidx[d] = cg_xmalloc((size_t)out[d] * sizeof(int32_t));
        amask[d] = cg_xmalloc((size_t)out[d] * sizeof(uint32_t));
        na[d] = 0;
        for (int o = 0; o < out[d]; o++) {
            uint32_t m = tap_mask(p, d, o);
            int a = 0;
            while (a < na[d] && amask[d][a] != m) a++;
            if (a == na[d]) amask[d][na[d]++] = m;
            aidx[d][o] = a;
        }
    }
    const int ncls = na[0] * na[1] * na[2];
    uint32_t (*key)[3] = cg_xmalloc((size_t)(ncls + 1) * sizeof *key);
    int32_t *cls_of = cg_xmalloc((size_t)p->ych * sizeof(int32_t)), *count = cg_xcalloc((size_t)ncls, sizeof(int32_t));
    for (int c = 0; c < ncls; c++) {
        key[c][0] = amask[0][c / (na[1] * na[2])];
        key[c][1] = amask[1][c / na[2] % na[1]];
        key[c][2] = amask[2][c % na[2]];
    }
    for (int64_t i = 0; i < p->ych; i++) {
        int od = (int)(i / ((int64_t)out[1] * out[2])), oh = (int)(i / out[2] % out[1]), ow = (int)(i % out[2]);
        int c = (aidx[0][od] * na[1] + aidx[1][oh]) * na[2] + aidx[2][ow];
        cls_of[i] = c;
        count[c]++;
    }
    for (int d = 0; d < 3; d++) {
        free(aidx[d]);
        free(amask[d]);
    }
    /* the positions left over by each class's whole tiles share "mixed" tiles, which run
     * every k-step (their padding taps read zeros): a tile of 1 position would run at a
     * third of the speed of a full one */
    memset(key[ncls], 0xff, sizeof key[ncls]);
    p->ncls = ncls + 1;
    p->runs = cg_xcalloc((size_t)p->ncls, sizeof(int32_t *));
    p->nruns = cg_xcalloc((size_t)p->ncls, sizeof(int));
    for (int c = 0; c < p->ncls; c++) {
        int32_t *rn = cg_xmalloc((size_t)(2 * p->K + 2) * sizeof(int32_t));
        int n = 0;
        for (int64_t j = 0; j < p->K; j++) {
            int t = (int)(j % k3), kd = t / (k[1] * k[2]), kh = t / k[2] % k[1], kw = t % k[2];
            if (!(key[c][0] >> kd & 1) || !(key[c][1] >> kh & 1) || !(key[c][2] >> kw & 1)) continue;
            if (n > 0 && rn[2 * (n - 1)] + rn[2 * (n - 1) + 1] == j) rn[2 * (n - 1) + 1]++;
            else { rn[2 * n] = (int32_t)j; rn[2 * n + 1] = 1; n++; }
        }
        p->runs[c] = rn;
        p->nruns[c] = n;
    }
    /* tiles: each class's positions in raster order, CL_P at a time, then the mixed ones */
    int64_t nrem = 0;
    for (int c = 0; c < ncls; c++) {
        p->ntiles += count[c] / CL_P;
        nrem += count[c] % CL_P;
    }
    p->ntiles += (nrem + CL_P - 1) / CL_P;
    p->pos = cg_xmalloc((size_t)(p->ntiles * CL_P) * sizeof(int32_t));
    p->ypos = cg_xmalloc((size_t)(p->ntiles * CL_P) * sizeof(int32_t));
    p->np = cg_xcalloc((size_t)p->ntiles, 1);
    p->tcls = cg_xmalloc((size_t)p->ntiles * sizeof(int32_t));
    int64_t *first = cg_xmalloc((size_t)(ncls + 1) * sizeof(int64_t)), t = 0;
    for (int c = 0; c <= ncls; c++) {
        int64_t n = c < ncls ? count[c] / CL_P : (nrem + CL_P - 1) / CL_P;
        first[c] = t;
        for (int64_t e = t; e < t + n; e++) p->tcls[e] = c;
        t += n;
    }
    CG_ASSERT(t == p->ntiles);
    for (int c = 0; c < ncls; c++) count[c] = count[c] / CL_P * CL_P; /* positions in whole tiles */
    for (int64_t i = 0; i < p->ych; i++) {
        int c = cls_of[i];
        if (count[c]-- <= 0) c = ncls; /* past the class's whole tiles */
        int64_t e = first[c];
        if (p->np[e] == CL_P) e = ++first[c];
        int od = (int)(i / ((int64_t)out[1] * out[2])), oh = (int)(i / out[2] % out[1]), ow = (int)(i % out[2]);
        p->pos[e * CL_P + p->np[e]] =
            (int32_t)(((int64_t)od * p->s[0] * p->L[1] + (int64_t)oh * p->s[1]) * p->L[2] + (int64_t)ow * p->s[2]);
        p->ypos[e * CL_P + p->np[e]] = (int32_t)i;
        p->np[e]++;
    }
    if (getenv("CG_AVX2_DEBUG"))
        fprintf(stderr, "channel lanes: Co %d K %lld O %dx%dx%d, %d classes, %lld tiles\n", Co, (long long)p->K, out[0],
                out[1], out[2], ncls, (long long)p->ntiles);
    free(first);
    free(key);
    free(cls_of);
    free(count);
    return 1;
}

/* ------------------------------------------------------------ staging ---- */

typedef struct {
    const clplan *p;
    float *dst;
    const float *src;
} cl_stage_job;

/* One (sample, channel): dst[j] = src[j - pad] per axis, zero outside the input. */
static void cl_stage_task(void *ctx, int64_t b, int64_t e, int worker) {
    (void)worker;
    const cl_stage_job *J = ctx;
    const clplan *p = J->p;
    const int64_t iplane = (int64_t)p->in[1] * p->in[2], ichan = p->in[0] * iplane;
    int lo = p->pad[2] < p->L[2] ? p->pad[2] : p->L[2], hi = p->pad[2] + p->in[2] < p->L[2] ? p->pad[2] + p->in[2] : p->L[2];
    for (int64_t it = b; it < e; it++) {
        const float *src = J->src + it * ichan;
        float *o = J->dst + it / p->Ci * p->sample + it % p->Ci * p->cstride;
        for (int jd = 0; jd < p->L[0]; jd++)
            for (int jh = 0; jh < p->L[1]; jh++, o += p->L[2]) {
                int id = jd - p->pad[0], ih = jh - p->pad[1];
                if (id < 0 || id >= p->in[0] || ih < 0 || ih >= p->in[1] || lo >= hi) {
                    memset(o, 0, (size_t)p->L[2] * sizeof(float));
                    continue;
                }
                memset(o, 0, (size_t)lo * sizeof(float));
                memcpy(o + lo, src + id * iplane + (int64_t)ih * p->in[2] + (lo - p->pad[2]), (size_t)(hi - lo) * sizeof(float));
                memset(o + hi, 0, (size_t)(p->L[2] - hi) * sizeof(float));
            }
        memset(o, 0, (size_t)(p->cstride - (int64_t)p->L[0] * p->L[1] * p->L[2]) * sizeof(float));
    }
}

/* ------------------------------------------------------------ compute ---- */

/* One tile: out[p·16 + l] = Σ over the runs' k-steps j of wp[j·16 + l] · x[pos[p] + off[j]]. */
static inline __attribute__((always_inline)) void cl_body(const int P, const float *x, const int32_t *pos,
                                                          const int32_t *off, const float *wp, const int32_t *runs,
                                                          int nruns, float *out) {
    __m256 acc[CL_P][2];
    const float *xp[CL_P];
    UNROLL
    for (int q = 0; q < P; q++) {
        acc[q][0] = acc[q][1] = _mm256_setzero_ps();
        xp[q] = x + pos[q];
        /* an opaque pointer per position, so that each broadcast addresses [xp + 4·off]
         * (GCC otherwise rebuilds x + 4·(pos + off) with an extra add per broadcast) */
        __asm__("" : "+r"(xp[q]));
    }
    for (int r = 0; r < nruns; r++) {
        _Pragma("GCC unroll 2")
        for (int32_t j = runs[2 * r], j1 = runs[2 * r] + runs[2 * r + 1]; j < j1; j++) {
            const __m256 w0 = _mm256_loadu_ps(wp + (int64_t)j * CL_CB), w1 = _mm256_loadu_ps(wp + (int64_t)j * CL_CB + 8);
            const int32_t o = off[j];
            UNROLL
            for (int q = 0; q < P; q++) {
                const __m256 b = _mm256_broadcast_ss(xp[q] + o);
                acc[q][0] = _mm256_fmadd_ps(b, w0, acc[q][0]);
                acc[q][1] = _mm256_fmadd_ps(b, w1, acc[q][1]);
            }
        }
    }
    UNROLL
    for (int q = 0; q < P; q++) {
        _mm256_storeu_ps(out + q * CL_CB, acc[q][0]);
        _mm256_storeu_ps(out + q * CL_CB + 8, acc[q][1]);
    }
}

#define CL_TILE(P) \
    static void cl_tile##P(const float *x, const int32_t *pos, const int32_t *off, const float *wp, \
                           const int32_t *runs, int nruns, float *out) { cl_body(P, x, pos, off, wp, runs, nruns, out); }
CL_TILE(1) CL_TILE(2) CL_TILE(3) CL_TILE(4) CL_TILE(5) CL_TILE(6)
typedef void (*cl_tile_fn)(const float *, const int32_t *, const int32_t *, const float *, const int32_t *, int, float *);
static const cl_tile_fn CL_TILES[CL_P + 1] = {NULL, cl_tile1, cl_tile2, cl_tile3, cl_tile4, cl_tile5, cl_tile6};

typedef struct {
    const clplan *p;
    const float *in;       /* the group's staged samples */
    float *y;              /* output of the group's first sample */
    const float *bias;
} cl_job;

/* Items (sample, tile, channel block), channel blocks innermost. */
static void cl_task(void *ctx, int64_t b, int64_t e, int worker) {
    (void)worker;
    const cl_job *J = ctx;
    const clplan *p = J->p;
    const int64_t nb = p->Co / CL_CB;
    float out[CL_P * CL_CB] __attribute__((aligned(32)));
    for (int64_t it = b; it < e; it++) {
        const int64_t cb = it % nb, tile = it / nb % p->ntiles, n = it / nb / p->ntiles;
        const int P = p->np[tile], c = p->tcls[tile];
        const int32_t *pos = p->pos + tile * CL_P, *ypos = p->ypos + tile * CL_P;
        CL_TILES[P](J->in + n * p->sample, pos, p->off, p->wp + cb * p->K * CL_CB, p->runs[c], p->nruns[c], out);
        float *y = J->y + (n * p->Co + cb * CL_CB) * p->ych;
        for (int l = 0; l < CL_CB; l++) {
            const float bl = J->bias ? J->bias[cb * CL_CB + l] : 0.0f;
            for (int q = 0; q < P; q++) y[l * p->ych + ypos[q]] = out[q * CL_CB + l] + bl;
        }
    }
}

static void cl_run(const clplan *p, float *y, const float *x, const float *bias, int64_t N) {
    const int64_t in_elems = (int64_t)p->in[0] * p->in[1] * p->in[2];
    int64_t G = CL_GROUP_BYTES / (p->sample * (int64_t)sizeof(float));
    G = G < 1 ? 1 : G > N ? N : G;
    float *st = cg_avx2_scratch_get((size_t)(G * p->sample) * sizeof(float));
    for (int64_t n0 = 0; n0 < N; n0 += G) {
        int64_t g = N - n0 < G ? N - n0 : G;
        cl_stage_job S = {p, st, x + n0 * p->Ci * in_elems};
        cg_parallel_for(g * p->Ci, 1, cl_stage_task, &S);
        cl_job J = {p, st, y + n0 * p->Co * p->ych, bias};
        cg_parallel_for(g * p->ntiles * (p->Co / CL_CB), 1, cl_task, &J);
    }
    cg_avx2_scratch_put(st);
}

/* The correlation Ci -> Co of src into dst when cl_takes it (1), else nothing (0). */
static int cl_conv(float *dst, const float *src, const float *w, const float *bias, int64_t N, int Ci, int Co,
                   const int *k, const int *stride, const int *pad, const int *in, const int *out, int max_stride,
                   int flip) {
    if (N <= 0 || Ci <= 0 || !cl_takes(Ci, Co, in, out, k, pad, stride, max_stride)) return 0;
    clplan p;
    int ok = cl_plan(&p, Ci, Co, k, stride, pad, in, out, w, flip);
    if (ok) cl_run(&p, dst, src, bias, N);
    cl_free(&p);
    return ok;
}

int cg_avx2_conv_cl_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c) {
    return cl_conv(y, x, w, bias, c->N, c->Ci, c->Co, c->k, c->stride, c->pad, c->in, c->out, 8, 0);
}

/* Stride 1: dx = the correlation of dy (padded by k - 1 - pad) with w flipped, Co -> Ci. */
int cg_avx2_conv_cl_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c) {
    int pad[3];
    for (int d = 0; d < 3; d++) pad[d] = c->k[d] - 1 - c->pad[d];
    return cl_conv(dx, dy, w, NULL, c->N, c->Co, c->Ci, c->k, c->stride, pad, c->out, c->in, 1, 1);
}
