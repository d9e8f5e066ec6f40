/*
 * kernels/cpu/avx2_conv3d.c — AVX2+FMA 3-D convolution: forward, backward-data and
 * backward-weight (and so conv_transpose3d, which is backward-data). Semantics: those of
 * the reference kernels (kernels/cpu/conv3d.c, core/backend.h), which tests/test_backend_ops.c
 * holds these to.
 *
 * One idea serves all three. Every kernel is reduced to stride-1 correlations on a
 * "staged" copy of its input:
 *   - forward, stride s: the zero-padded input is split into s³ phase planes
 *     (X_r[j] = x[s·j + r - pad]), so y[o] = Σ_r Σ_t X_r[o + t] · w[s·t + r]: a stride-1
 *     correlation whose k-steps run over (input channel, phase, sub-kernel tap);
 *   - backward-data, stride s: each output phase dx[s·m + r] is a stride-1 correlation of
 *     the zero-padded dy with the flipped sub-kernel w[k ≡ (r + pad) mod s] (s³ of them,
 *     written with stride s into dx);
 *   - backward-weight: dw[co][k-step] = Σ_positions dy · X[position + offset(k-step)], on
 *     the forward's staging.
 * A k-step is one (channel, tap) pair: an offset into the staged input and one weight per
 * output channel. Kernel-size-1 convolutions with P % 8 == 0 voxels read the input in
 * place: their k-steps are the channels and the correlation is a matrix product. Those
 * with many channels go to the packed GEMMs of avx2_conv1x1.c instead.
 *
 * The register tile (the microkernel, avx2_tile.h) of the correlation is R output channels
 * × M output rows × V vectors of 8 positions along w (R·M·V <= 12 accumulators, enough to
 * hide the FMA latency): per k-step it broadcasts R weights, loads M·V input vectors
 * (unaligned, straight from the staged rows) and issues R·M·V FMAs. A staged row holds
 * everything an output row reads (its pitch may drop trailing padding that the next row's
 * leading padding supplies), so the vectors of a tile read consecutive memory; the lanes
 * past the row's end compute garbage that is never stored. k-steps whose staged rows are
 * all padding are skipped: tiles fall into a few boundary classes, each with its list of
 * runs of k-steps. A cost model (measured per-shape throughput, counting skipped k-steps
 * and remainder tiles) picks R, M and V per layer. Where an output row wastes many lanes
 * in its last vector (30 positions in 4 vectors), a stride-1 correlation may instead run
 * each output plane as one line at the staged pitch ("flat planes", corr.fp): the few
 * positions between rows are computed and dropped at the store, and the tiles' vectors
 * are contiguous. Backward-weight's tile is R output channels × C k-steps, vectors along
 * the positions, reduced at the end of each block. Backward-data into fewer than 4
 * channels goes to avx2_conv_thin.c.
 *
 * Threads: cg_parallel_for over tiles (disjoint outputs). Backward-weight sums each
 * tile's blocks of positions in a fixed order (sample, block), so results do not depend
 * on the thread count; the threads share the tiles of one block at a time, so a block's
 * input is fetched from memory once. Staged copies live in the scratch cache (avx2_util.h).
 *
 * CG_AVX2_DEBUG=1 in the environment prints each plan's tile choice to stderr (for tuning).
 *
 * Limits: staged samples are indexed with int32 offsets, so samples of more than about
 * 2^30 staged elements, strides above 8 (above 3 for backward-data) and empty shapes go to
 * the reference kernels. Plans are rebuilt on every call (a few percent of a small conv).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_tile.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/ref.h"

#define MAXR CG_TILE_MAXR
#define MAXM CG_TILE_MAXM
#define MAXV CG_TILE_MAXV
#define MAXC CG_TILE_MAXC
#define STREAM_BYTES ((int64_t)48 << 20) /* outputs larger than this bypass the caches */
#define BW_BLOCK_BYTES ((int64_t)768 << 10) /* dy and input of one backward-weight block, all channels */
#define BW_GROUP 8 /* backward-weight blocks per pool call */
#define GROUP_BYTES ((int64_t)32 << 20) /* staged samples processed together, at most */

/* ------------------------------------------------------------ plans ---- */

/* One stride-1 correlation: out[row][o] = bias[row] + Σ_j w_j[row] · in[base(o) + off[j]]. */
typedef struct {
    int64_t K;          /* k-steps */
    int32_t *off;       /* (K) offsets into one staged sample */
    int32_t *widx;      /* (K) index into w of each k-step's weight, for row 0 */
    float *wp;          /* packed weights: block b of R rows, k-step j, row r at wp[(b·K + j)·R + r] */
    int O[3];           /* output extent (d, h, w) */
    int64_t ys[3];      /* output strides (d, h, w) within one output channel */
    int64_t yoff;       /* offset of output (0, 0, 0) within one output channel */
    int M, V;           /* tile rows and vectors per row */
    /* Flat planes (fp): an output plane's rows, at the staged row pitch W, run as one line
     * of (O[1] - 1)·W + O[2] positions, cut into tiles of V vectors (M = 1); the W - O[2]
     * positions between rows are computed and dropped when the tile is stored. Fewer
     * wasted lanes than rows rounded up to whole vectors when O[2] % 8 is small against
     * W - O[2] (30 of pitch 31: 3% instead of 30 of 32: 6%). A "row block" is then a tile's
     * run of positions. */
    int fp;
    /* Skipping rows of zero padding: each k-step reads staged row (o_d + t_d, o_h + t_h) of
     * phase (r_d, r_h); kbit[2j], kbit[2j+1] = r·LB + t per axis (LB: bits per phase). A
     * tile's output plane and rows give, per axis, a mask of the (r, t) whose staged rows
     * hold input; tiles with equal masks form a class, and each class keeps the runs of
     * k-steps it must compute. */
    uint8_t *kbit;      /* (K, 2) */
    int lb[2];          /* bits per phase, per axis; 0: no skipping on that axis */
    int32_t bitcnt[2][64]; /* k-steps per bit, per axis (for the cost model) */
    int ncd, nch;       /* classes of output planes and of row blocks */
    int32_t *dclass, *hclass; /* (O[0]), (row blocks) */
    int32_t **runs;     /* (ncd·nch): pairs (first k-step, count) */
    int *nruns;
} corr;

typedef struct {
    int flat;           /* the input is read in place: one row of P positions per channel */
    int Cin, Cout;      /* channels of the correlation's input and output ("rows") */
    int in[3];          /* input extent (of the tensor the staging reads) */
    int s[3], p[3];     /* staging: phase stride and low padding per axis */
    int L[3];           /* staged extent per axis (Dj, Hj, Wj) */
    int W;              /* staged row pitch (<= Wj) */
    int ow;             /* the widest output row of the plan's correlations */
    int nph;            /* phase planes per channel: s0·s1·s2 */
    int64_t plane, cstride, sample; /* staged element strides: phase plane, channel, sample */
    int64_t pvol;       /* elements of a phase plane in use (the rest of `plane` is zeros) */
    int64_t slack;      /* zeroed elements after a staged sample: garbage lanes read there */
    int64_t ych;        /* output elements per output channel */
    int64_t rstride;    /* weight index step between output rows (packing) */
    int R;              /* output rows per tile (weight packing block) */
    int ncorr;
    corr c[27];         /* the phases of backward-data with strides up to 3; else 1 */
} plan;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Row blocks (tile lines) and vector segments per output plane of a correlation. */
static int64_t fp_len(const plan *p, const corr *q);
static void corr_blocks(const plan *p, const corr *q, int64_t *nmb, int64_t *nseg) {
    if (q->fp) {
        *nmb = ceil_div(ceil_div(fp_len(p, q), 8), q->V);
        *nseg = 1;
    } else {
        *nmb = ceil_div(q->O[1], q->M);
        *nseg = ceil_div(ceil_div(q->O[2], 8), q->V);
    }
}

/* Positions of a flat plane's line. */
static int64_t fp_len(const plan *p, const corr *q) { return (int64_t)(q->O[1] - 1) * p->W + q->O[2]; }

/* The output rows [*o0, *o1) of row block mb. */
static void block_rows(const plan *p, const corr *q, int64_t mb, int64_t *o0, int64_t *o1) {
    if (q->fp) {
        int64_t p0 = mb * 8 * q->V, p1 = p0 + 8 * q->V < fp_len(p, q) ? p0 + 8 * q->V : fp_len(p, q);
        *o0 = p0 / p->W;
        *o1 = (p1 - 1) / p->W + 1;
    } else {
        *o0 = mb * q->M;
        *o1 = (mb + 1) * q->M < q->O[1] ? (mb + 1) * q->M : q->O[1];
    }
}

/* Does staged row j of phase r on `axis` hold input (rather than zero padding)? */
static int staged_valid(const plan *p, int axis, int r, int64_t j) {
    int64_t i = j * p->s[axis] + r - p->p[axis];
    return i >= 0 && i < p->in[axis];
}

/* The mask of (r, t) bits whose staged rows o + t (for o in [o0, o1)) hold input. */
static uint64_t axis_mask(const plan *p, const corr *q, int axis, int64_t o0, int64_t o1) {
    if (!q->lb[axis]) return ~(uint64_t)0;
    uint64_t m = 0;
    for (int r = 0; r < p->s[axis]; r++)
        for (int t = 0; t < q->lb[axis]; t++)
            for (int64_t o = o0; o < o1; o++)
                if (staged_valid(p, axis, r, o + t)) {
                    m |= (uint64_t)1 << (r * q->lb[axis] + t);
                    break;
                }
    return m;
}

/* The fraction of a correlation's k-steps whose rows on `axis` are in `mask`. */
static double frac_of(const corr *q, int axis, uint64_t mask) {
    if (!q->lb[axis] || q->K == 0) return 1.0;
    int64_t n = 0;
    for (int b = 0; b < 64; b++)
        if (mask >> b & 1) n += q->bitcnt[axis][b];
    return (double)n / (double)q->K;
}

/* Estimated cycles of a correlation with tiles of R rows × M lines × V vectors, counting
 * only the k-steps each tile computes (padding rows skipped) and the remainder tiles. */
static double corr_cost(const plan *p, const corr *q, int R, int M, int V, double fd) {
    int64_t nvec = ceil_div(q->O[2], 8);
    int64_t nr[2] = {p->Cout / R, p->Cout % R != 0}, nv[2] = {nvec / V, nvec % V != 0}; /* tile counts */
    int rr[2] = {R, p->Cout % R}, vv[2] = {V, (int)(nvec % V)};
    double t = 0;
    for (int64_t oh = 0; oh < q->O[1]; oh += M) {
        int m = (int)(q->O[1] - oh < M ? q->O[1] - oh : M);
        double fh = p->flat ? 1.0 : frac_of(q, 1, axis_mask(p, q, 1, oh, oh + m));
        for (int a = 0; a < 2; a++)
            for (int d = 0; d < 2; d++)
                if (nr[a] && nv[d] && rr[a] && vv[d]) {
                    double c0 = cg_avx2_bcast_cost(rr[a], m, vv[d], 0);
                    double c1 = cg_avx2_bcast_cost(rr[a], m, vv[d], 1) - c0;
                    t += (double)nr[a] * nv[d] * (q->O[0] * c0 + c1 * (double)q->K * fh * fd);
                }
    }
    return t;
}

/* The same for flat planes: tiles of R rows × V vectors along the plane's line, plus
 * copying the tile out past the dropped positions. */
static double corr_cost_fp(const plan *p, const corr *q, int R, int V, double fd) {
    const int64_t len = fp_len(p, q), nseg = ceil_div(ceil_div(len, 8), V);
    int64_t nr[2] = {p->Cout / R, p->Cout % R != 0};
    int rr[2] = {R, p->Cout % R};
    double t = 0;
    for (int64_t sg = 0; sg < nseg; sg++) {
        int64_t o0 = sg * 8 * V / p->W, o1 = ((sg + 1) * 8 * V < len ? (sg + 1) * 8 * V : len) - 1;
        o1 = o1 / p->W + 1;
        int v = (int)(ceil_div(len, 8) - sg * V < V ? ceil_div(len, 8) - sg * V : V);
        double fh = frac_of(q, 1, axis_mask(p, q, 1, o0, o1));
        for (int a = 0; a < 2; a++)
            if (nr[a] && rr[a]) {
                double c0 = cg_avx2_bcast_cost(rr[a], 1, v, 0) + 4.0 * rr[a] * v; /* + the copy */
                double c1 = cg_avx2_bcast_cost(rr[a], 1, v, 1) - cg_avx2_bcast_cost(rr[a], 1, v, 0);
                t += (double)nr[a] * (q->O[0] * c0 + c1 * (double)q->K * fh * fd);
            }
    }
    return t;
}

/* Flat planes suit a correlation whose output rows are contiguous (w stride 1) and waste
 * fewer lanes at the staged pitch than rounded up to vectors. */
static int fp_ok(const plan *p, const corr *q) {
    int64_t pad_round = ceil_div(q->O[2], 8) * 8 - q->O[2];
    return !p->flat && q->ys[2] == 1 && q->O[1] > 1 && p->W - q->O[2] < pad_round;
}

/* Choose R for the plan and (M, V) for each correlation. */
static void choose_tiles(plan *p) {
    for (int i = 0; i < p->ncorr; i++) {
        corr *q = &p->c[i];
        memset(q->bitcnt, 0, sizeof q->bitcnt);
        for (int64_t j = 0; j < q->K; j++) {
            q->bitcnt[0][q->kbit[2 * j]]++;
            q->bitcnt[1][q->kbit[2 * j + 1]]++;
        }
    }
    /* the planes' share of computed k-steps, summed (the same for every tile shape) */
    double fd[27] = {0};
    for (int i = 0; i < p->ncorr; i++)
        for (int64_t od = 0; od < p->c[i].O[0]; od++)
            fd[i] += p->flat ? 1.0 : frac_of(&p->c[i], 0, axis_mask(p, &p->c[i], 0, od, od + 1));
    double best_total = INFINITY;
    int bestR = 1, bestM[27] = {0}, bestV[27] = {0}, bestF[27] = {0};
    for (int R = 1; R <= MAXR; R++) {
        double total = 0;
        int Ms[27] = {0}, Vs[27] = {0}, Fs[27] = {0};
        for (int i = 0; i < p->ncorr; i++) {
            double best = INFINITY;
            Ms[i] = Vs[i] = 1;
            for (int M = 1; M <= MAXM; M++)
                for (int V = 1; V <= MAXV; V++) {
                    if (R * M * V > 12) continue;
                    double t = corr_cost(p, &p->c[i], R, M, V, fd[i]);
                    if (t < best) { best = t; Ms[i] = M; Vs[i] = V; }
                }
            for (int V = 1; V <= MAXV && fp_ok(p, &p->c[i]); V++) {
                if (R * V > 12) continue;
                double t = corr_cost_fp(p, &p->c[i], R, V, fd[i]);
                if (t < best) { best = t; Ms[i] = 1; Vs[i] = V; Fs[i] = 1; }
            }
            total += best;
        }
        if (total < best_total) {
            best_total = total;
            bestR = R;
            memcpy(bestM, Ms, sizeof Ms);
            memcpy(bestV, Vs, sizeof Vs);
            memcpy(bestF, Fs, sizeof Fs);
        }
    }
    p->R = bestR;
    for (int i = 0; i < p->ncorr; i++) { p->c[i].M = bestM[i]; p->c[i].V = bestV[i]; p->c[i].fp = bestF[i]; }
}

/* n floats rounded up to a whole, odd number of 64-byte lines. */
static int64_t odd_lines(int64_t n) {
    n = (n + 15) / 16 * 16;
    return (n / 16) % 2 ? n : n + 16;
}

static void staging_sizes(plan *p) {
    p->nph = p->s[0] * p->s[1] * p->s[2];
    /* Row pitch: with stride 1 along w, a row's trailing zero columns can be the next
     * row's leading ones (every staged row starts with the same padding), which saves the
     * garbage positions backward-weight would compute there. */
    p->W = p->L[2];
    if (!p->flat && p->s[2] == 1) {
        int hi = p->L[2] - (p->p[2] + p->in[2]);
        if (hi > 0 && hi <= p->p[2]) p->W = p->L[2] - hi;
        if (p->W < p->ow) p->W = p->ow; /* an output row must fit in a staged row */
    }
    /* Phase planes and channels start an odd number of cache lines apart: with strides of
     * a multiple of 4 KB (a 16³ plane is 16 KB) the same row of every plane falls in the
     * same L1 set, and a tile's rows from 8 phases or 32 channels evict each other. */
    p->pvol = (int64_t)p->L[0] * p->L[1] * p->W;
    p->plane = odd_lines(p->pvol);
    p->cstride = odd_lines(p->nph * p->plane);
    /* Garbage lanes (past a row's end, or past a plane's last row rounded up to a vector)
     * read up to a row and a vector beyond the last staged element. */
    p->slack = p->L[2] + 16;
    p->sample = p->Cin * p->cstride + p->slack;
    CG_ASSERT_MSG(p->sample < INT32_MAX, "a convolution sample too large for the AVX2 kernels");
}

/* A 1x1x1 kernel, stride 1, no padding, P % 8 == 0: read in place. */
static int is_flat(const cg_conv_desc *c) {
    int64_t P = (int64_t)c->in[0] * c->in[1] * c->in[2];
    for (int d = 0; d < 3; d++)
        if (c->k[d] != 1 || c->stride[d] != 1 || c->pad[d] != 0) return 0;
    return P % 8 == 0 && P < INT32_MAX / (c->Ci > c->Co ? c->Ci : c->Co);
}

static void corr_alloc(corr *c, int64_t K) {
    c->K = K;
    c->off = cg_xmalloc((size_t)(K ? K : 1) * sizeof(int32_t));
    c->widx = cg_xmalloc((size_t)(K ? K : 1) * sizeof(int32_t));
    c->kbit = cg_xcalloc((size_t)(K ? K : 1) * 2, 1);
    c->wp = NULL;
}

static void plan_free(plan *p) {
    for (int i = 0; i < p->ncorr; i++) {
        corr *q = &p->c[i];
        free(q->off);
        free(q->widx);
        free(q->wp);
        free(q->kbit);
        free(q->dclass);
        free(q->hclass);
        for (int k = 0; q->runs && k < q->ncd * q->nch; k++) free(q->runs[k]);
        free(q->runs);
        free(q->nruns);
    }
}

/* Class of each output plane and row block (after choose_tiles), and each class's runs. */
static void plan_classes(plan *p) {
    if (getenv("CG_AVX2_DEBUG"))
        for (int i = 0; i < p->ncorr; i++)
            fprintf(stderr, "corr %d: Cout %d K %lld O %dx%dx%d tile R%d M%d V%d%s\n", i, p->Cout, (long long)p->c[i].K,
                    p->c[i].O[0], p->c[i].O[1], p->c[i].O[2], p->R, p->c[i].M, p->c[i].V, p->c[i].fp ? " flat planes" : "");
    for (int i = 0; i < p->ncorr; i++) {
        corr *q = &p->c[i];
        int64_t nmb, nseg;
        corr_blocks(p, q, &nmb, &nseg);
        uint64_t dm[64], hm[64];
        q->ncd = q->nch = 0;
        q->dclass = cg_xmalloc((size_t)q->O[0] * sizeof(int32_t));
        q->hclass = cg_xmalloc((size_t)nmb * sizeof(int32_t));
        for (int64_t od = 0; od < q->O[0]; od++) {
            uint64_t m = p->flat ? ~(uint64_t)0 : axis_mask(p, q, 0, od, od + 1);
            int c = 0;
            while (c < q->ncd && dm[c] != m) c++;
            if (c == q->ncd) {
                if (q->ncd == 64) { c = 0; m = ~(uint64_t)0; } /* never expected; compute everything */
                else dm[q->ncd++] = m;
            }
            q->dclass[od] = c;
        }
        for (int64_t mb = 0; mb < nmb; mb++) {
            int64_t o0, o1;
            block_rows(p, q, mb, &o0, &o1);
            uint64_t m = p->flat ? ~(uint64_t)0 : axis_mask(p, q, 1, o0, o1);
            int c = 0;
            while (c < q->nch && hm[c] != m) c++;
            if (c == q->nch) {
                if (q->nch == 64) { c = 0; m = ~(uint64_t)0; }
                else hm[q->nch++] = m;
            }
            q->hclass[mb] = c;
        }
        if (q->ncd == 0) dm[q->ncd++] = ~(uint64_t)0;
        if (q->nch == 0) hm[q->nch++] = ~(uint64_t)0;
        q->runs = cg_xcalloc((size_t)(q->ncd * q->nch), sizeof(int32_t *));
        q->nruns = cg_xcalloc((size_t)(q->ncd * q->nch), sizeof(int));
        for (int cd = 0; cd < q->ncd; cd++)
            for (int ch = 0; ch < q->nch; ch++) {
                int32_t *rn = cg_xmalloc((size_t)(2 * q->K + 2) * sizeof(int32_t));
                int n = 0;
                for (int64_t j = 0; j < q->K; j++) {
                    int keep = (dm[cd] >> q->kbit[2 * j] & 1) && (hm[ch] >> q->kbit[2 * j + 1] & 1);
                    if (!keep) continue;
                    if (n > 0 && rn[2 * (n - 1)] + rn[2 * (n - 1) + 1] == j) rn[2 * (n - 1) + 1]++;
                    else { rn[2 * n] = (int32_t)j; rn[2 * n + 1] = 1; n++; }
                }
                q->runs[cd * q->nch + ch] = rn;
                q->nruns[cd * q->nch + ch] = n;
            }
    }
}

/* Forward: input x (Ci channels), output y (Co rows); also backward-weight's staging. */
static void plan_forward(plan *p, const cg_conv_desc *c) {
    memset(p, 0, sizeof *p);
    p->Cin = c->Ci;
    p->Cout = c->Co;
    p->ncorr = 1;
    corr *q = &p->c[0];
    const int k3 = c->k[0] * c->k[1] * c->k[2];
    p->rstride = (int64_t)c->Ci * k3;
    for (int d = 0; d < 3; d++) q->O[d] = c->out[d];
    q->ys[0] = (int64_t)c->out[1] * c->out[2];
    q->ys[1] = c->out[2];
    q->ys[2] = 1;
    q->yoff = 0;
    p->ych = (int64_t)c->out[0] * c->out[1] * c->out[2];
    if (is_flat(c)) {
        p->flat = 1;
        int64_t P = (int64_t)c->in[0] * c->in[1] * c->in[2];
        q->O[0] = q->O[1] = 1;
        q->O[2] = (int)P;
        p->L[0] = p->L[1] = 1;
        p->L[2] = p->W = (int)P;
        p->s[0] = p->s[1] = p->s[2] = 1;
        p->nph = 1;
        p->plane = p->cstride = p->pvol = P;
        corr_alloc(q, c->Ci);
        for (int ci = 0; ci < c->Ci; ci++) {
            q->off[ci] = (int32_t)(ci * P);
            q->widx[ci] = ci;
        }
        return;
    }
    int T[3][8]; /* taps of each phase per axis (strides > 8 fall back to the reference) */
    for (int d = 0; d < 3; d++) {
        p->in[d] = c->in[d];
        p->s[d] = c->stride[d];
        p->p[d] = c->pad[d];
        int T0 = (int)ceil_div(c->k[d], c->stride[d]);
        p->L[d] = c->out[d] + T0 - 1;
        for (int r = 0; r < c->stride[d]; r++) T[d][r] = c->k[d] > r ? (int)ceil_div(c->k[d] - r, c->stride[d]) : 0;
    }
    p->ow = c->out[2];
    staging_sizes(p);
    corr_alloc(q, (int64_t)c->Ci * k3);
    for (int d = 0; d < 2; d++) {
        int T0 = (int)ceil_div(c->k[d], c->stride[d]);
        q->lb[d] = c->stride[d] * T0 <= 64 ? T0 : 0;
    }
    int64_t j = 0;
    for (int ci = 0; ci < c->Ci; ci++)
        for (int rd = 0; rd < p->s[0]; rd++)
        for (int rh = 0; rh < p->s[1]; rh++)
        for (int rw = 0; rw < p->s[2]; rw++) {
            int64_t ph = ((int64_t)rd * p->s[1] + rh) * p->s[2] + rw;
            for (int td = 0; td < T[0][rd]; td++)
            for (int th = 0; th < T[1][rh]; th++)
            for (int tw = 0; tw < T[2][rw]; tw++) {
                int kd = td * p->s[0] + rd, kh = th * p->s[1] + rh, kw = tw * p->s[2] + rw;
                q->off[j] = (int32_t)(ci * p->cstride + ph * p->plane + ((int64_t)td * p->L[1] + th) * p->W + tw);
                q->widx[j] = ci * k3 + (kd * c->k[1] + kh) * c->k[2] + kw;
                q->kbit[2 * j] = (uint8_t)(q->lb[0] ? rd * q->lb[0] + td : 0);
                q->kbit[2 * j + 1] = (uint8_t)(q->lb[1] ? rh * q->lb[1] + th : 0);
                j++;
            }
        }
    CG_ASSERT(j == q->K);
}

/* Backward-data: input dy (Co channels), output dx (Ci rows), one correlation per phase. */
static void plan_bwd_data(plan *p, const cg_conv_desc *c) {
    memset(p, 0, sizeof *p);
    p->Cin = c->Co;
    p->Cout = c->Ci;
    const int k3 = c->k[0] * c->k[1] * c->k[2];
    p->rstride = k3;
    p->ych = (int64_t)c->in[0] * c->in[1] * c->in[2];
    if (is_flat(c)) {
        p->flat = 1;
        int64_t P = p->ych;
        corr *q = &p->c[0];
        p->ncorr = 1;
        q->O[0] = q->O[1] = 1;
        q->O[2] = (int)P;
        q->ys[2] = 1;
        p->L[0] = p->L[1] = 1;
        p->L[2] = p->W = (int)P;
        p->s[0] = p->s[1] = p->s[2] = 1;
        p->nph = 1;
        p->plane = p->cstride = p->pvol = P;
        corr_alloc(q, c->Co);
        for (int co = 0; co < c->Co; co++) {
            q->off[co] = (int32_t)(co * P);
            q->widx[co] = co * c->Ci; /* w[co][ci]: row ci adds ci·rstride (= ci) */
        }
        return;
    }
    /* Per axis and output phase r: the first tap k0, the tap count T, the dy shift c, the
     * phase's output count M; then the staging's low padding and each phase's offset. */
    int k0[3][8], T[3][8], M[3][8], delta[3][8];
    for (int d = 0; d < 3; d++) {
        int s = c->stride[d], pad = c->pad[d], K = c->k[d], I = c->in[d];
        int plo = 0, cr[8];
        for (int r = 0; r < s; r++) {
            k0[d][r] = (r + pad) % s;
            T[d][r] = K > k0[d][r] ? (int)ceil_div(K - k0[d][r], s) : 0;
            cr[r] = (r + pad - k0[d][r]) / s;
            M[d][r] = I > r ? (int)ceil_div(I - r, s) : 0;
            if (T[d][r] > 0 && M[d][r] > 0 && T[d][r] - 1 - cr[r] > plo) plo = T[d][r] - 1 - cr[r];
        }
        int L = 1;
        for (int r = 0; r < s; r++) {
            delta[d][r] = plo + cr[r] - T[d][r] + 1;
            if (T[d][r] == 0) delta[d][r] = 0;
            int need = M[d][r] + delta[d][r] + (T[d][r] > 0 ? T[d][r] - 1 : 0);
            if (need > L) L = need;
        }
        p->in[d] = c->out[d];
        p->s[d] = 1;
        p->p[d] = plo;
        p->L[d] = L;
    }
    p->ow = M[2][0];
    staging_sizes(p);
    for (int rd = 0; rd < c->stride[0]; rd++)
    for (int rh = 0; rh < c->stride[1]; rh++)
    for (int rw = 0; rw < c->stride[2]; rw++) {
        if (!M[0][rd] || !M[1][rh] || !M[2][rw]) continue;
        corr *q = &p->c[p->ncorr++];
        q->O[0] = M[0][rd];
        q->O[1] = M[1][rh];
        q->O[2] = M[2][rw];
        q->ys[0] = (int64_t)c->stride[0] * c->in[1] * c->in[2];
        q->ys[1] = (int64_t)c->stride[1] * c->in[2];
        q->ys[2] = c->stride[2];
        q->yoff = ((int64_t)rd * c->in[1] + rh) * c->in[2] + rw;
        corr_alloc(q, (int64_t)c->Co * T[0][rd] * T[1][rh] * T[2][rw]);
        q->lb[0] = delta[0][rd] + T[0][rd] <= 64 ? delta[0][rd] + T[0][rd] : 0;
        q->lb[1] = delta[1][rh] + T[1][rh] <= 64 ? delta[1][rh] + T[1][rh] : 0;
        int64_t j = 0;
        for (int co = 0; co < c->Co; co++)
            for (int td = 0; td < T[0][rd]; td++)
            for (int th = 0; th < T[1][rh]; th++)
            for (int tw = 0; tw < T[2][rw]; tw++) {
                int kd = k0[0][rd] + c->stride[0] * (T[0][rd] - 1 - td);
                int kh = k0[1][rh] + c->stride[1] * (T[1][rh] - 1 - th);
                int kw = k0[2][rw] + c->stride[2] * (T[2][rw] - 1 - tw);
                q->off[j] = (int32_t)(co * p->cstride + ((int64_t)(delta[0][rd] + td) * p->L[1] + delta[1][rh] + th) *
                                                            p->W + delta[2][rw] + tw);
                q->widx[j] = co * c->Ci * k3 + (kd * c->k[1] + kh) * c->k[2] + kw;
                q->kbit[2 * j] = (uint8_t)(q->lb[0] ? delta[0][rd] + td : 0);
                q->kbit[2 * j + 1] = (uint8_t)(q->lb[1] ? delta[1][rh] + th : 0);
                j++;
            }
        CG_ASSERT(j == q->K);
    }
}

/* Pack each correlation's weights in blocks of R output rows (zero rows past Cout). */
static void pack_weights(plan *p, const float *w) {
    for (int i = 0; i < p->ncorr; i++) {
        corr *q = &p->c[i];
        int64_t nb = ceil_div(p->Cout, p->R);
        q->wp = cg_xmalloc((size_t)(nb * p->R * (q->K ? q->K : 1)) * sizeof(float));
        for (int64_t b = 0; b < nb; b++)
            for (int64_t j = 0; j < q->K; j++)
                for (int r = 0; r < p->R; r++) {
                    int64_t row = b * p->R + r;
                    q->wp[(b * q->K + j) * p->R + r] = row < p->Cout ? w[row * p->rstride + q->widx[j]] : 0.0f;
                }
    }
}

/* ---------------------------------------------------------- staging ---- */

typedef struct {
    const plan *p;
    float *dst;          /* staged samples */
    const float *src;    /* the first sample's input */
} stage_job;

/* One (sample, channel): dst[ph][j] = src[s·j + r - pad] per axis, zero outside. */
static void stage_task(void *ctx, int64_t b, int64_t e, int worker) {
    const stage_job *J = ctx;
    const plan *p = J->p;
    const int64_t iplane = (int64_t)p->in[1] * p->in[2], ichan = p->in[0] * iplane;
    for (int64_t it = b; it < e; it++) {
        int64_t n = it / p->Cin, ch = it % p->Cin;
        const float *src = J->src + (n * p->Cin + ch) * ichan;
        float *dst = J->dst + n * p->sample + ch * p->cstride;
        for (int rd = 0; rd < p->s[0]; rd++)
        for (int rh = 0; rh < p->s[1]; rh++)
        for (int rw = 0; rw < p->s[2]; rw++) {
            float *o = dst + (((int64_t)rd * p->s[1] + rh) * p->s[2] + rw) * p->plane;
            memset(o + p->pvol, 0, (size_t)(p->plane - p->pvol) * sizeof(float)); /* the skew */
            /* the staged w-range [lo, hi) that maps inside the input row */
            int lo = 0, hi = p->W;
            while (lo < hi && lo * p->s[2] + rw - p->p[2] < 0) lo++;
            while (hi > lo && (hi - 1) * p->s[2] + rw - p->p[2] >= p->in[2]) hi--;
            for (int jd = 0; jd < p->L[0]; jd++) {
                int id = jd * p->s[0] + rd - p->p[0];
                for (int jh = 0; jh < p->L[1]; jh++, o += p->W) {
                    int ih = jh * p->s[1] + rh - p->p[1];
                    if (id < 0 || id >= p->in[0] || ih < 0 || ih >= p->in[1] || lo >= hi) {
                        memset(o, 0, (size_t)p->W * sizeof(float));
                        continue;
                    }
                    const float *row = src + id * iplane + (int64_t)ih * p->in[2];
                    const int64_t shift = rw - p->p[2];
                    for (int jw = 0; jw < lo; jw++) o[jw] = 0.0f;
                    if (p->s[2] == 1) {
                        memcpy(o + lo, row + lo + shift, (size_t)(hi - lo) * sizeof(float));
                    } else if (p->s[2] == 2) { /* every other element: two loads, a shuffle */
                        int jw = lo;
                        for (; jw + 8 <= hi && 2 * (int64_t)jw + shift + 15 < p->in[2]; jw += 8) {
                            const float *q = row + 2 * (int64_t)jw + shift;
                            __m256 ev = _mm256_shuffle_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(q + 8), _MM_SHUFFLE(2, 0, 2, 0));
                            _mm256_storeu_ps(o + jw, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8)));
                        }
                        for (; jw < hi; jw++) o[jw] = row[2 * (int64_t)jw + shift];
                    } else {
                        for (int jw = lo; jw < hi; jw++) o[jw] = row[(int64_t)jw * p->s[2] + shift];
                    }
                    for (int jw = hi; jw < p->W; jw++) o[jw] = 0.0f;
                }
            }
        }
        memset(dst + p->nph * p->plane, 0, (size_t)(p->cstride - p->nph * p->plane) * sizeof(float));
        if (ch == p->Cin - 1) memset(dst + p->cstride, 0, (size_t)p->slack * sizeof(float));
    }
}

static void stage(const plan *p, float *dst, const float *src, int64_t nsamples) {
    stage_job J = {p, dst, src};
    cg_parallel_for(nsamples * p->Cin, 1, stage_task, &J);
}

/* Samples staged together: as many as fit GROUP_BYTES, at least one. */
static int64_t group_size(const plan *p, int64_t N) {
    int64_t g = GROUP_BYTES / (p->sample * (int64_t)sizeof(float));
    return g < 1 ? 1 : g > N ? N : g;
}

/* ------------------------------------------------ forward and bwd-data ---- */

typedef struct {
    const plan *p;
    const float *in;     /* staged samples of the group (or the input itself when flat) */
    int64_t in_sample;   /* elements between samples of `in` */
    float *y;            /* output of the group's first sample */
    const float *bias;
    int64_t G;           /* samples in the group */
    int stream;          /* write y with non-temporal stores (it is far larger than the caches) */
    int64_t first[28];   /* first item of each correlation */
} corr_job;

static void corr_task(void *ctx, int64_t b, int64_t e, int worker) {
    const corr_job *J = ctx;
    const plan *p = J->p;
    const int64_t nrb = ceil_div(p->Cout, p->R);
    int ci = 0;
    for (int64_t it = b; it < e;) {
        while (it >= J->first[ci + 1]) ci++;
        const corr *q = &p->c[ci];
        const int64_t nvec = ceil_div(q->O[2], 8);
        int64_t nmb, nseg;
        corr_blocks(p, q, &nmb, &nseg);
        /* decompose the first item once, then step the indices like an odometer */
        int64_t k = it - J->first[ci];
        int64_t rb = k % nrb; k /= nrb;
        int64_t seg = k % nseg; k /= nseg;
        int64_t mb = k % nmb; k /= nmb;
        int64_t od = k % q->O[0], n = k / q->O[0];
        for (const int64_t end = e < J->first[ci + 1] ? e : J->first[ci + 1]; it < end; it++) {
            int R = (int)(p->Cout - rb * p->R < p->R ? p->Cout - rb * p->R : p->R);
            int M = (int)(q->O[1] - mb * q->M < q->M ? q->O[1] - mb * q->M : q->M);
            int V = (int)(nvec - seg * q->V < q->V ? nvec - seg * q->V : q->V);
            int64_t oh = q->fp ? 0 : mb * q->M, ow = seg * 8 * q->V;
            cg_bcast_tile t = {
                .x = J->in + n * J->in_sample + (od * p->L[1] + oh) * p->W + ow,
                .off = q->off,
                .wp = q->wp + rb * p->R * q->K,
                .K = q->K,
                .wps = p->R,
                .xrs = p->W,
                .y = J->y + (n * p->Cout + rb * p->R) * p->ych + q->yoff + od * q->ys[0] + oh * q->ys[1] +
                     ow * q->ys[2],
                .ycs = p->ych,
                .yrs = q->ys[1],
                .yws = q->ys[2],
                .nw = (int)(q->O[2] - ow < 8 * V ? q->O[2] - ow : 8 * V),
                .bias = J->bias ? J->bias + rb * p->R : NULL,
                .stream = J->stream,
                .runs = q->runs[q->dclass[od] * q->nch + q->hclass[mb]],
                .nruns = q->nruns[q->dclass[od] * q->nch + q->hclass[mb]],
            };
            if (q->fp) { /* a run of the plane's line, stored past the dropped positions */
                const int64_t p0 = mb * 8 * q->V, len = fp_len(p, q), nw = len - p0 < 8 * q->V ? len - p0 : 8 * q->V;
                float buf[MAXR * 8 * MAXV];
                t.x = J->in + n * J->in_sample + od * p->L[1] * p->W + p0;
                t.y = buf;
                t.ycs = 8 * q->V;
                t.yrs = 0;
                t.nw = (int)nw;
                t.stream = 0;
                cg_avx2_bcast_tile(R, 1, (int)ceil_div(nw, 8), &t);
                float *y = J->y + (n * p->Cout + rb * p->R) * p->ych + q->yoff + od * q->ys[0];
                for (int64_t pos = p0; pos < p0 + nw;) {
                    const int64_t oh = pos / p->W, ow0 = pos % p->W;
                    const int64_t end = pos - ow0 + p->W < p0 + nw ? pos - ow0 + p->W : p0 + nw;
                    const int64_t cnt = (end - pos < q->O[2] - ow0 ? end - pos : q->O[2] - ow0);
                    for (int r = 0; cnt > 0 && r < R; r++)
                        memcpy(y + r * p->ych + oh * q->ys[1] + ow0, buf + r * 8 * q->V + (pos - p0), (size_t)cnt * sizeof(float));
                    pos = end;
                }
            } else {
            if (p->flat && rb == 0 && ow + 16 * q->V <= q->O[2]) {
                /* in-place 1x1 input: one short run per channel, too many streams for the
                 * hardware prefetcher; fetch the next segment's runs while this one computes */
                for (int64_t j = 0; j < q->K; j++)
                    for (int v = 0; v < q->V; v += 2) _mm_prefetch((const char *)(t.x + q->off[j] + 8 * (q->V + v)), _MM_HINT_T1);
            }
            cg_avx2_bcast_tile(R, M, V, &t);
            }
            if (++rb < nrb) continue;
            rb = 0;
            if (++seg < nseg) continue;
            seg = 0;
            if (++mb < nmb) continue;
            mb = 0;
            if (++od < q->O[0]) continue;
            od = 0;
            n++;
        }
    }
    if (J->stream) _mm_sfence();
}

/* Run every correlation of the plan over N samples of `in` (in_chan channels of in_elems
 * each per sample) into y. */
static void run_corr(const plan *p, float *y, const float *in, const float *bias, int64_t N) {
    const int64_t in_elems = (int64_t)p->in[0] * p->in[1] * p->in[2];
    int64_t G = p->flat ? N : group_size(p, N);
    float *st = p->flat ? NULL : cg_avx2_scratch_get((size_t)(G * p->sample) * sizeof(float));
    for (int64_t n0 = 0; n0 < N; n0 += G) {
        int64_t g = N - n0 < G ? N - n0 : G;
        corr_job J = {.p = p, .y = y + n0 * p->Cout * p->ych, .bias = bias, .G = g,
                      .stream = N * p->Cout * p->ych * (int64_t)sizeof(float) > STREAM_BYTES};
        if (p->flat) {
            J.in = in + n0 * p->Cin * p->cstride;
            J.in_sample = p->Cin * p->cstride;
        } else {
            stage(p, st, in + n0 * p->Cin * in_elems, g);
            J.in = st;
            J.in_sample = p->sample;
        }
        int64_t total = 0, nrb = ceil_div(p->Cout, p->R);
        for (int i = 0; i < p->ncorr; i++) {
            const corr *q = &p->c[i];
            J.first[i] = total;
            int64_t nmb, nseg;
            corr_blocks(p, q, &nmb, &nseg);
            total += g * q->O[0] * nmb * nseg * nrb;
        }
        J.first[p->ncorr] = total;
        cg_parallel_for(total, 1, corr_task, &J);
    }
    cg_avx2_scratch_put(st);
}

/* Shapes the planner does not take: empty tensors, strides beyond its tables, and samples
 * too large for its int32 offsets (a staged sample holds at most about
 * C·Π(extent + 2·pad + kernel + stride) elements). */
static int unplanned(const cg_conv_desc *c, int max_stride) {
    if (c->N <= 0 || c->Ci <= 0 || c->Co <= 0) return 1;
    double vin = c->Ci > c->Co ? c->Ci : c->Co, vout = vin;
    for (int d = 0; d < 3; d++) {
        if (c->stride[d] > max_stride || c->in[d] <= 0 || c->out[d] <= 0 || c->k[d] <= 0) return 1;
        vin *= (double)c->in[d] + 2.0 * c->pad[d] + c->k[d] + c->stride[d];
        vout *= (double)c->out[d] + 2.0 * c->k[d];
    }
    return vin > (double)(INT32_MAX / 2) || vout > (double)(INT32_MAX / 2);
}

void cg_avx2_conv_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c) {
    if (cg_avx2_conv1x1_takes(c)) {
        cg_avx2_conv1x1_fwd(y, x, w, bias, c);
        return;
    }
    if (unplanned(c, 8)) {
        cg_ref_conv_fwd(y, x, w, bias, c);
        return;
    }
    if (cg_avx2_conv_cl_fwd(y, x, w, bias, c)) return; /* rows that waste lanes: avx2_conv_cl.c */
    plan p;
    plan_forward(&p, c);
    choose_tiles(&p);
    plan_classes(&p);
    pack_weights(&p, w);
    run_corr(&p, y, x, bias, c->N);
    plan_free(&p);
}

void cg_avx2_conv_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c) {
    if (cg_avx2_conv1x1_takes(c)) {
        cg_avx2_conv1x1_bwd_data(dx, dy, w, c);
        return;
    }
    if (unplanned(c, 3)) {
        cg_ref_conv_bwd_data(dx, dy, w, c);
        return;
    }
    if (cg_avx2_thin_bwd_data(dx, dy, w, c)) return; /* few input channels: avx2_conv_thin.c */
    if (cg_avx2_conv_cl_bwd_data(dx, dy, w, c)) return; /* stride 1, rows that waste lanes: avx2_conv_cl.c */
    plan p;
    plan_bwd_data(&p, c);
    choose_tiles(&p);
    plan_classes(&p);
    pack_weights(&p, w);
    run_corr(&p, dx, dy, NULL, c->N);
    plan_free(&p);
}

/* ---------------------------------------------------- backward-weight ---- */

/* dy is staged in the staged input's geometry: each output plane od becomes one line of
 * OH·Wj positions (Wj the staged row pitch, zeros where ow >= OW, rounded up to whole
 * vectors), so a dot tile runs down a whole plane in one line, with the input plane at
 * the same positions. An in-place 1x1 convolution is one line of P positions per sample. */
typedef struct {
    const plan *p;
    const float *xs;     /* staged x of the group (or x itself when flat) */
    int64_t x_sample, x_plane;
    const float *dys;    /* dy of the group, staged planes (or dy itself when flat) */
    int64_t dy_sample, dy_chan, dy_plane;
    int64_t G, nplanes, nvec;      /* per sample: planes (lines) of nvec vectors */
    int64_t planes_per_block, vec_per_block;
    int64_t b0, b1;      /* the blocks of this call: (sample, plane block, vector block) */
    int R, C;            /* tile: output channels × k-steps */
    int64_t ncb;         /* k-step blocks */
    const int32_t *prange; /* (ncb, 2): the planes whose input rows a k-step block reads are not all padding */
    double *acc;         /* (Co, K) sums */
} bw_job;

/* The tiles [b, e) over the blocks [J->b0, J->b1) of positions, block after block. */
static void bw_task(void *ctx, int64_t b, int64_t e, int worker) {
    const bw_job *J = ctx;
    const plan *p = J->p;
    const corr *q = &p->c[0];
    const int64_t npb = ceil_div(J->nplanes, J->planes_per_block), nvb = ceil_div(J->nvec, J->vec_per_block);
    for (int64_t blk = J->b0; blk < J->b1; blk++) {
        const int64_t n = blk / (npb * nvb), pl0 = (blk / nvb) % npb * J->planes_per_block;
        const int64_t v0 = blk % nvb * J->vec_per_block;
        const float *xs = J->xs + n * J->x_sample, *dys = J->dys + n * J->dy_sample;
        const int64_t pend = J->nplanes - pl0 < J->planes_per_block ? J->nplanes : pl0 + J->planes_per_block;
        const int64_t nv = J->nvec - v0 < J->vec_per_block ? J->nvec - v0 : J->vec_per_block;
        for (int64_t it = b; it < e; it++) {
            int64_t rb = it / J->ncb, cb = it % J->ncb;
            int R = (int)(p->Cout - rb * J->R < J->R ? p->Cout - rb * J->R : J->R);
            int C = (int)(q->K - cb * J->C < J->C ? q->K - cb * J->C : J->C);
            /* the block's planes, clipped to those where this tile reads input */
            int64_t pl = pl0 > J->prange[2 * cb] ? pl0 : J->prange[2 * cb];
            int64_t np = (pend < J->prange[2 * cb + 1] ? pend : J->prange[2 * cb + 1]) - pl;
            if (np <= 0) continue;
            cg_dot_tile t = {
                .a = dys + rb * J->R * J->dy_chan + pl * J->dy_plane + 8 * v0,
                .b = xs + pl * J->x_plane + 8 * v0,
                .off = q->off + cb * J->C,
                .acs = J->dy_chan,
                .ars = J->dy_plane,
                .brs = J->x_plane,
                .nlines = np,
                .nvec = nv,
                .outd = J->acc + rb * J->R * q->K + cb * J->C,
                .ocs = q->K,
            };
            cg_avx2_dot_tile(R, C, &t);
        }
    }
}

typedef struct {
    const float *dy;
    float *dst;
    int64_t OH, OW, Wj, dplane; /* dy rows; staged pitch and plane */
} dy_stage_job;

/* One (sample, channel, plane) of dy into its staged line. */
static void dy_stage_task(void *ctx, int64_t b, int64_t e, int worker) {
    const dy_stage_job *J = ctx;
    for (int64_t r = b; r < e; r++) {
        const float *src = J->dy + r * J->OH * J->OW;
        float *d = J->dst + r * J->dplane;
        memset(d, 0, (size_t)J->dplane * sizeof(float));
        for (int64_t oh = 0; oh < J->OH; oh++) memcpy(d + oh * J->Wj, src + oh * J->OW, (size_t)J->OW * sizeof(float));
    }
}

void cg_avx2_conv_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c) {
    if (cg_avx2_conv1x1_takes(c)) {
        cg_avx2_conv1x1_bwd_weight(dw, x, dy, c);
        return;
    }
    if (unplanned(c, 8)) {
        cg_ref_conv_bwd_weight(dw, x, dy, c);
        return;
    }
    plan p;
    plan_forward(&p, c);
    const corr *q = &p.c[0];
    /* Tile: R output channels × C k-steps (<= 12 accumulators), by the measured cost of
     * each shape over blocks of about 256 vector steps. */
    int bestR = 1, bestC = 1;
    double best = INFINITY;
    for (int R = 1; R <= MAXR; R++)
        for (int C = 1; C <= MAXC; C++) {
            if (R * C > 12) continue;
            int64_t nr[2] = {p.Cout / R, p.Cout % R != 0}, nc[2] = {q->K / C, q->K % C != 0};
            int rr[2] = {R, p.Cout % R}, cc[2] = {C, (int)(q->K % C)};
            double t = 0;
            for (int a = 0; a < 2; a++)
                for (int b2 = 0; b2 < 2; b2++)
                    if (nr[a] && nc[b2] && rr[a] && cc[b2]) {
                        t += (double)nr[a] * nc[b2] * cg_avx2_dot_cost(rr[a], cc[b2], 256);
                    }
            if (t < best) { best = t; bestR = R; bestC = C; }
        }
    const int64_t N = c->N, in_elems = (int64_t)c->in[0] * c->in[1] * c->in[2];
    const int64_t oplane = (int64_t)q->O[0] * q->O[1] * q->O[2];
    const int64_t dplane = p.flat ? oplane : ceil_div((int64_t)q->O[1] * p.W, 8) * 8;
    int64_t G = p.flat ? N : group_size(&p, N);
    float *st = p.flat ? NULL : cg_avx2_scratch_get((size_t)(G * p.sample) * sizeof(float));
    float *dyp = p.flat ? NULL : cg_avx2_scratch_get((size_t)(G * p.Cout * q->O[0] * dplane) * sizeof(float));
    double *acc = cg_xcalloc((size_t)(p.Cout * q->K), sizeof(double));
    /* Per k-step block: the output planes od for which some k-step's input plane
     * od + t holds input (an interval); other planes only multiply zeros. */
    const int64_t ncb = ceil_div(q->K, bestC);
    int32_t *prange = cg_xmalloc((size_t)(2 * ncb) * sizeof(int32_t));
    for (int64_t cb = 0; cb < ncb; cb++) {
        int lo = p.flat ? 0 : q->O[0], hi = p.flat ? 1 : 0;
        for (int64_t j = cb * bestC; !p.flat && j < q->K && j < (cb + 1) * bestC; j++) {
            if (!q->lb[0]) { lo = 0; hi = q->O[0]; break; }
            int r = q->kbit[2 * j] / q->lb[0], t = q->kbit[2 * j] % q->lb[0];
            for (int od = 0; od < q->O[0]; od++)
                if (staged_valid(&p, 0, r, od + t)) {
                    if (od < lo) lo = od;
                    if (od + 1 > hi) hi = od + 1;
                }
        }
        prange[2 * cb] = lo;
        prange[2 * cb + 1] = hi;
    }
    for (int64_t n0 = 0; n0 < N; n0 += G) {
        int64_t g = N - n0 < G ? N - n0 : G;
        /* Blocks of positions whose dy and input, all channels, take about BW_BLOCK_BYTES
         * (most of L2: the threads sweep one block at a time), 512 to 4096 positions: whole
         * planes, or a run of vectors of one line. */
        int64_t bw_block = BW_BLOCK_BYTES / (4 * (p.Cout + (int64_t)p.Cin * p.nph));
        bw_block = bw_block < 512 ? 512 : bw_block > 4096 ? 4096 : bw_block;
        bw_job J = {.p = &p, .G = g, .R = bestR, .C = bestC, .ncb = ncb, .prange = prange, .acc = acc};
        if (p.flat) {
            J.xs = x + n0 * p.Cin * p.cstride;
            J.x_sample = p.Cin * p.cstride;
            J.x_plane = oplane;
            J.dys = dy + n0 * p.Cout * oplane;
            J.dy_sample = p.Cout * oplane;
            J.dy_chan = J.dy_plane = oplane;
            J.nplanes = 1;
            J.nvec = oplane / 8;
            J.planes_per_block = 1;
            J.vec_per_block = bw_block / 8;
        } else {
            stage(&p, st, x + n0 * p.Cin * in_elems, g);
            dy_stage_job S = {dy + n0 * p.Cout * oplane, dyp, q->O[1], q->O[2], p.W, dplane};
            cg_parallel_for(g * p.Cout * q->O[0], 16, dy_stage_task, &S);
            J.xs = st;
            J.x_sample = p.sample;
            J.x_plane = (int64_t)p.L[1] * p.W;
            J.dys = dyp;
            J.dy_sample = p.Cout * q->O[0] * dplane;
            J.dy_chan = q->O[0] * dplane;
            J.dy_plane = dplane;
            J.nplanes = q->O[0];
            J.nvec = dplane / 8;
            J.planes_per_block = dplane >= bw_block ? 1 : bw_block / dplane;
            J.vec_per_block = J.nvec;
        }
        /* Groups of BW_GROUP blocks, in order; the threads share a group's tiles, each
         * running down the group's blocks in order (a block stays in L2 while a thread's
         * tiles read it; the group in L3). One pool call per group, not per block. */
        const int64_t nblk = g * ceil_div(J.nplanes, J.planes_per_block) * ceil_div(J.nvec, J.vec_per_block);
        for (J.b0 = 0; J.b0 < nblk; J.b0 = J.b1) {
            J.b1 = J.b0 + BW_GROUP < nblk ? J.b0 + BW_GROUP : nblk;
            cg_parallel_for(ceil_div(p.Cout, bestR) * J.ncb, 1, bw_task, &J);
        }
    }
    for (int64_t co = 0; co < p.Cout; co++)
        for (int64_t j = 0; j < q->K; j++) dw[co * p.rstride + q->widx[j]] = (float)acc[co * q->K + j];
    free(acc);
    free(prange);
    cg_avx2_scratch_put(st);
    cg_avx2_scratch_put(dyp);
    plan_free(&p);
}
