/*
 * kernels/cpu/avx2_conv_thin.c — AVX2+FMA backward-data into inputs with few channels
 * (Ci <= 3: the 1-channel shower that every encoder and critic of the seed models starts
 * from, and conv_transpose3d down to 1 channel, whose forward this is). Semantics: those of
 * the reference kernels (kernels/cpu/conv3d.c), which tests/test_backend_ops.c holds these
 * to. avx2_conv3d.c calls in here first and takes the shapes this declines (returns 0).
 *
 * With few input channels the correlation of avx2_conv3d.c has Ci output rows, a tile
 * shape limited by loads, and a product dcol = Wᵀ·dy of Ci·k³ rows followed by a gather
 * pays for writing and re-reading dcol through memory (8× dy for k4). Here the two are
 * fused per dx plane: a work item is one plane (sample n, depth id), all Ci channels. For
 * each tap kd whose dy plane od = (id + pad - kd) / stride exists, and for chunks of about
 * THIN_CHUNK positions (whole rows) of that dy plane:
 *   1. dcol[tap][pos] = Σ_co w[co][tap] · dy[co][od][pos] for the Ci·kH·kW taps of this kd,
 *      a small product kept in L1 (register tile: 4 or 3 taps × 3 vectors of 8 positions,
 *      weights broadcast, each dy vector loaded once per channel);
 *   2. dcol's rows are added into the dx rows they reach, in a per-worker plane buffer
 *      split by w-phase (dx[s·m + r] takes dcol[m + cc]: contiguous vectors), by a "gather
 *      program" built once per call: per vector of a dx row, the taps' masked vectors
 *      summed in registers, then one read-modify-write at a fixed offset (writing each tap
 *      at its own shifted offset stalled on store forwarding: 30% of the time);
 * and at the end the plane's w-phases are interleaved into dx. Every item sums in a fixed
 * order and items own disjoint outputs, so results do not depend on the thread count.
 *
 * Limits: Ci <= 3 (at Ci = 4 the correlation's 4-row tiles are as fast: measured mixed),
 * kernels of at least 8 taps, strides <= 8, a plane buffer of at most THIN_TMP_BYTES per
 * worker; other shapes go back to the correlation.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_util.h"

#define THIN_MAXCI 3
#define THIN_TMP_BYTES ((int64_t)8 << 20) /* per-worker dx plane buffer, at most */
#define THIN_CHUNK 256                       /* dy positions per chunk (dcol stays in L1) */
#define TV 3                                 /* vectors of positions per register tile */
/* Fully unroll the tile's loops, or GCC keeps the accumulators in memory (avx2_tile.c). */
#define UNROLL _Pragma("GCC unroll 16")

/* The gather program: for each vector of a dx row's w-phases (dst), the vectors of dcol
 * rows (src) added into it, with the lanes each src covers. */
typedef struct {
    int32_t mask[8];      /* -1 on the lanes this tap reaches */
    int64_t off;          /* kw·pitch + cc + m: offset from the dcol row of (ci, kh, kw = 0) */
} __attribute__((aligned(32))) gather_src;

typedef struct {
    int64_t off;          /* ph·mlen + m: offset within the plane buffer's dx row */
    int nsrc;
} gather_dst;

typedef struct {
    const cg_conv_desc *c;
    float *dx;
    const float *dy;
    const float *wp;      /* (kD, ngroups, Co, TT): packed weights, zero taps past T */
    int T, TT, ngroups;   /* taps per kd (Ci·kH·kW), taps per tile, tile groups */
    int rows;             /* dy rows per chunk */
    int64_t pitch;        /* dcol row pitch (>= chunk positions rounded up to vectors, + 8) */
    int64_t mlen;         /* plane buffer row length per w-phase (>= phase length + 8) */
    int32_t mr[8];        /* length of each w-phase of a dx row */
    const gather_dst *gdst; /* (ngdst) */
    const gather_src *gsrc; /* the srcs of each dst in turn */
    int ngdst;
    float *tmp;           /* per worker: Ci·IH·sw·mlen plane buffer */
    float *dcol;          /* per worker: TT·ngroups rows of `pitch` */
    int64_t tmp_n, dcol_n;
} thin_bwd_job;

/* dcol[t][v·8 + i] (TT rows × nv <= TV vectors) = Σ_co w[co][t] · dy[co][v·8 + i], the last
 * vector masked to `last` positions (1..8) so no read runs past the chunk. */
static inline __attribute__((always_inline)) void thin_tile(float *dcol, int64_t pitch, const float *dy,
                                                             int64_t dys, const float *w, int Co, int TT, int nv,
                                                             int last) {
    __m256 acc[4][TV];
    UNROLL
    for (int t = 0; t < 4; t++)
        UNROLL
        for (int v = 0; v < TV; v++) acc[t][v] = _mm256_setzero_ps();
    const __m256i mk = cg_avx2_mask(last);
    for (int co = 0; co < Co; co++, dy += dys, w += TT) {
        __m256 d[TV];
        UNROLL
        for (int v = 0; v < nv; v++)
            d[v] = v == nv - 1 && last < 8 ? _mm256_maskload_ps(dy + 8 * v, mk) : _mm256_loadu_ps(dy + 8 * v);
        UNROLL
        for (int t = 0; t < TT; t++) {
            __m256 b = _mm256_broadcast_ss(w + t);
            UNROLL
            for (int v = 0; v < nv; v++) acc[t][v] = _mm256_fmadd_ps(b, d[v], acc[t][v]);
        }
    }
    UNROLL
    for (int t = 0; t < TT; t++)
        UNROLL
        for (int v = 0; v < nv; v++) _mm256_storeu_ps(dcol + t * pitch + 8 * v, acc[t][v]);
}

/* A chunk's nvec vectors (np positions) of TT dcol rows: whole TV-vector tiles in one loop,
 * then the remainder; one function per TT, so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void thin_rows(float *dcol, int64_t pitch, const float *dy,
                                                            int64_t dys, const float *w, int Co, int TT, int nvec,
                                                            int np) {
    int v = 0;
    for (; v + TV <= nvec && 8 * (v + TV) <= np; v += TV) thin_tile(dcol + 8 * v, pitch, dy + 8 * v, dys, w, Co, TT, TV, 8);
    const int nv = nvec - v, last = np - 8 * (nvec - 1);
    if (nv == 1) thin_tile(dcol + 8 * v, pitch, dy + 8 * v, dys, w, Co, TT, 1, last);
    else if (nv == 2) thin_tile(dcol + 8 * v, pitch, dy + 8 * v, dys, w, Co, TT, 2, last);
    else if (nv == 3) thin_tile(dcol + 8 * v, pitch, dy + 8 * v, dys, w, Co, TT, 3, last);
}

static void thin_rows_4(float *dcol, int64_t pitch, const float *dy, int64_t dys, const float *w, int Co, int nvec,
                        int np) {
    thin_rows(dcol, pitch, dy, dys, w, Co, 4, nvec, np);
}

static void thin_rows_3(float *dcol, int64_t pitch, const float *dy, int64_t dys, const float *w, int Co, int nvec,
                        int np) {
    thin_rows(dcol, pitch, dy, dys, w, Co, 3, nvec, np);
}

/* The output position a tap k of input position i meets along an axis, or -1. */
static int32_t thin_meets(int i, int k, int s, int pad, int O) {
    int t = i + pad - k;
    return t < 0 || t % s || t / s >= O ? -1 : t / s;
}

static void thin_bwd_task(void *ctx, int64_t b, int64_t e, int worker) {
    const thin_bwd_job *J = ctx;
    const cg_conv_desc *c = J->c;
    const int Ci = c->Ci, Co = c->Co, kD = c->k[0], kH = c->k[1], kW = c->k[2];
    const int ID = c->in[0], IH = c->in[1], IW = c->in[2], OD = c->out[0], OH = c->out[1], OW = c->out[2];
    const int sw = c->stride[2];
    const int64_t oplane = (int64_t)OH * OW, ochan = OD * oplane;
    float *tmp = J->tmp + (int64_t)worker * J->tmp_n, *dcol = J->dcol + (int64_t)worker * J->dcol_n;
    for (int64_t it = b; it < e; it++) {
        const int64_t n = it / ID;
        const int id = (int)(it % ID);
        memset(tmp, 0, (size_t)J->tmp_n * sizeof(float));
        for (int kd = 0; kd < kD; kd++) {
            const int od = thin_meets(id, kd, c->stride[0], c->pad[0], OD);
            if (od < 0) continue;
            const float *wk = J->wp + (int64_t)kd * J->ngroups * Co * J->TT;
            for (int oh0 = 0; oh0 < OH; oh0 += J->rows) {
                const int nr = OH - oh0 < J->rows ? OH - oh0 : J->rows;
                const int np = nr * OW, nvec = (np + 7) / 8;
                const float *dyc = J->dy + n * Co * ochan + od * oplane + (int64_t)oh0 * OW;
                /* 1. the chunk's dcol, TT taps at a time */
                for (int g = 0; g < J->ngroups; g++)
                    (J->TT == 4 ? thin_rows_4 : thin_rows_3)(dcol + (int64_t)g * J->TT * J->pitch, J->pitch, dyc, ochan,
                                                             wk + (int64_t)g * Co * J->TT, Co, nvec, np);
                /* 2. each tap's rows into the dx rows they reach, by the gather program:
                 * per vector of a dx row's w-phase, the taps' vectors summed in registers
                 * and one read-modify-write of the buffer, all at the same offsets (no
                 * store-forwarding stalls between taps); the rows innermost, so that the
                 * masks stay in registers and the rows' updates overlap */
                for (int ci = 0; ci < Ci; ci++)
                    for (int kh = 0; kh < kH; kh++) {
                        /* the chunk's rows r whose dx row ih = (oh0 + r)·sh + kh - ph exists */
                        const int sh = c->stride[1], base = oh0 * sh + kh - c->pad[1];
                        int r0 = 0, r1 = nr;
                        while (r0 < r1 && base + r0 * sh < 0) r0++;
                        while (r1 > r0 && base + (r1 - 1) * sh >= IH) r1--;
                        if (r0 >= r1) continue;
                        const float *src0 = dcol + (int64_t)(ci * kH + kh) * kW * J->pitch + (int64_t)r0 * OW;
                        float *t0 = tmp + ((int64_t)ci * IH + base + r0 * sh) * sw * J->mlen;
                        const int64_t tstep = (int64_t)sh * sw * J->mlen;
                        const gather_src *gs = J->gsrc;
                        for (int i = 0; i < J->ngdst; gs += J->gdst[i].nsrc, i++) {
                            const gather_dst *gd = &J->gdst[i];
                            float *t = t0 + gd->off;
                            const float *src = src0;
                            if (gd->nsrc == 2) {
                                const __m256i m0 = _mm256_load_si256((const __m256i *)gs[0].mask);
                                const __m256i m1 = _mm256_load_si256((const __m256i *)gs[1].mask);
                                for (int r = r0; r < r1; r++, t += tstep, src += OW)
                                    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t),
                                                                      _mm256_add_ps(_mm256_maskload_ps(src + gs[0].off, m0),
                                                                                    _mm256_maskload_ps(src + gs[1].off, m1))));
                            } else {
                                for (int r = r0; r < r1; r++, t += tstep, src += OW) {
                                    __m256 a = _mm256_loadu_ps(t);
                                    for (int k = 0; k < gd->nsrc; k++)
                                        a = _mm256_add_ps(a, _mm256_maskload_ps(src + gs[k].off, _mm256_load_si256((const __m256i *)gs[k].mask)));
                                    _mm256_storeu_ps(t, a);
                                }
                            }
                        }
                    }
            }
        }
        /* 3. interleave the w-phases into dx */
        for (int ci = 0; ci < Ci; ci++)
            for (int ih = 0; ih < IH; ih++) {
                const float *t0 = tmp + (int64_t)(ci * IH + ih) * sw * J->mlen;
                float *out = J->dx + (((n * Ci + ci) * ID + id) * IH + ih) * (int64_t)IW;
                if (sw == 1) {
                    memcpy(out, t0, (size_t)IW * sizeof(float));
                } else if (sw == 2) { /* the two phases interleaved; the tail through a
                                        * buffer (masked stores are slow on AMD cores) */
                    const float *t1 = t0 + J->mlen;
                    for (int m = 0; 2 * m < IW; m += 8) {
                        __m256 a = _mm256_loadu_ps(t0 + m), bb = _mm256_loadu_ps(t1 + m);
                        __m256 lo = _mm256_unpacklo_ps(a, bb), hi = _mm256_unpackhi_ps(a, bb);
                        __m256 v0 = _mm256_permute2f128_ps(lo, hi, 0x20), v1 = _mm256_permute2f128_ps(lo, hi, 0x31);
                        if (IW - 2 * m >= 16) {
                            _mm256_storeu_ps(out + 2 * m, v0);
                            _mm256_storeu_ps(out + 2 * m + 8, v1);
                        } else {
                            float tail[16];
                            _mm256_storeu_ps(tail, v0);
                            _mm256_storeu_ps(tail + 8, v1);
                            memcpy(out + 2 * m, tail, (size_t)(IW - 2 * m) * sizeof(float));
                        }
                    }
                } else {
                    for (int iw = 0; iw < IW; iw++) out[iw] = t0[(int64_t)(iw % sw) * J->mlen + iw / sw];
                }
            }
    }
}

int cg_avx2_thin_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c) {
    if (c->Ci > THIN_MAXCI || c->N <= 0 || c->Ci <= 0 || c->Co <= 0) return 0;
    for (int d = 0; d < 3; d++)
        if (c->stride[d] > 8 || c->in[d] <= 0 || c->out[d] <= 0 || c->k[d] <= 0) return 0;
    const int Ci = c->Ci, Co = c->Co, kD = c->k[0], kH = c->k[1], kW = c->k[2], sw = c->stride[2], pw = c->pad[2];
    const int64_t k3 = (int64_t)kD * kH * kW;
    if (k3 < 8) return 0; /* too few taps to fill the tiles: the correlation does better */
    thin_bwd_job J = {.c = c, .dx = dx, .dy = dy, .T = Ci * kH * kW};
    J.mlen = (c->in[2] + sw - 1) / sw + 8;
    J.tmp_n = (int64_t)Ci * c->in[1] * sw * J.mlen;
    if (J.tmp_n * (int64_t)sizeof(float) > THIN_TMP_BYTES) return 0;
    /* 4 taps per tile unless 3 wastes fewer padded taps */
    J.TT = J.T % 4 == 0 || (J.T % 3 != 0 && J.T % 4 > J.T % 3) ? 4 : 3;
    J.ngroups = (J.T + J.TT - 1) / J.TT;
    J.rows = THIN_CHUNK / c->out[2] > 1 ? THIN_CHUNK / c->out[2] : 1;
    if (J.rows > c->out[1]) J.rows = c->out[1];
    J.pitch = ((int64_t)J.rows * c->out[2] + 7) / 8 * 8 + 8; /* + 8: slack */
    J.dcol_n = J.pitch * J.TT * J.ngroups;
    for (int r = 0; r < sw; r++) J.mr[r] = (c->in[2] - r + sw - 1) / sw;
    /* per w-tap: phase r, shift cc, first and end m of the dx row it reaches */
    int32_t wtab[4 * 64];
    int32_t *wt = kW <= 64 ? wtab : cg_xmalloc((size_t)(4 * kW) * sizeof(int32_t));
    for (int kw = 0; kw < kW; kw++) {
        int r = ((kw - pw) % sw + sw) % sw, cc = (r + pw - kw) / sw, mr = J.mr[r];
        wt[4 * kw] = r;
        wt[4 * kw + 1] = cc;
        wt[4 * kw + 2] = cc < 0 ? -cc : 0;
        wt[4 * kw + 3] = c->out[2] - cc < mr ? c->out[2] - cc : mr;
        if (wt[4 * kw + 3] < wt[4 * kw + 2]) wt[4 * kw + 3] = wt[4 * kw + 2]; /* the tap reaches no dx of this row */
    }
    /* the gather program: per w-phase ph, per vector m, the w-taps of that phase */
    int ngv = 0;
    for (int ph = 0; ph < sw; ph++) ngv += (J.mr[ph] + 7) / 8;
    gather_dst *gdst = cg_xmalloc((size_t)(ngv ? ngv : 1) * sizeof(gather_dst));
    gather_src *gsrc = aligned_alloc(32, (size_t)(ngv * kW + 1) * sizeof(gather_src));
    CG_ASSERT(gsrc != NULL);
    int nd = 0, ns = 0;
    for (int ph = 0; ph < sw; ph++)
        for (int m = 0; m < J.mr[ph]; m += 8) {
            gather_dst *gd = &gdst[nd++];
            gd->off = (int64_t)ph * J.mlen + m;
            gd->nsrc = 0;
            for (int kw = 0; kw < kW; kw++) {
                const int32_t *q = wt + 4 * kw;
                if (q[0] != ph || m + 8 <= q[2] || m >= q[3]) continue;
                gather_src *g = &gsrc[ns++];
                g->off = (int64_t)kw * J.pitch + q[1] + m;
                for (int l = 0; l < 8; l++) g->mask[l] = m + l >= q[2] && m + l < q[3] ? -1 : 0;
                gd->nsrc++;
            }
        }
    J.gdst = gdst;
    J.gsrc = gsrc;
    J.ngdst = nd;
    /* wp[kd][g][co][t] = w[co][tap g·TT + t of kd], tap = (ci·kH + kh)·kW + kw */
    const int64_t wn = (int64_t)kD * J.ngroups * Co * J.TT;
    float *wp = cg_xmalloc((size_t)wn * sizeof(float));
    for (int kd = 0; kd < kD; kd++)
        for (int g = 0; g < J.ngroups; g++)
            for (int co = 0; co < Co; co++)
                for (int t = 0; t < J.TT; t++) {
                    const int tap = g * J.TT + t;
                    float v = 0.0f;
                    if (tap < J.T) {
                        const int ci = tap / (kH * kW), kh = tap / kW % kH, kw = tap % kW;
                        v = w[((int64_t)co * Ci + ci) * k3 + ((int64_t)kd * kH + kh) * kW + kw];
                    }
                    wp[(((int64_t)kd * J.ngroups + g) * Co + co) * J.TT + t] = v;
                }
    J.wp = wp;
    const int nt = cg_threads_get();
    J.tmp = cg_avx2_scratch_get((size_t)(nt * J.tmp_n) * sizeof(float));
    J.dcol = cg_avx2_scratch_get((size_t)(nt * J.dcol_n) * sizeof(float));
    cg_parallel_for(c->N * c->in[0], 1, thin_bwd_task, &J);
    cg_avx2_scratch_put(J.dcol);
    cg_avx2_scratch_put(J.tmp);
    free(wp);
    if (wt != wtab) free(wt);
    free(gdst);
    free(gsrc);
    return 1;
}
