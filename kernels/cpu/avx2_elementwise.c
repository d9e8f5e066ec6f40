/*
 * kernels/cpu/avx2_elementwise.c — fill, unary, broadcasting binary and strided copy with
 * AVX2, on the thread pool (core/backend.h gives the semantics).
 *
 * Every vector path uses the same IEEE operations in the same order as the reference
 * (kernels/cpu/elementwise.c: no FMA contraction, true division and square root), so
 * results are bit-identical to it, NaN cases included (the comparisons are chosen so that
 * a NaN takes the same branch as in the reference). The transcendental unary ops (exp,
 * log, pow, elu, sigmoid, tanh, softplus) call the reference's scalar function on the
 * pool: they are threaded but not vectorised.
 * TODO: vector exp/log (glibc's libmvec, or a polynomial) for the transcendental ops.
 *
 * Binary ops and strided copies first merge adjacent axes that are contiguous for every
 * operand, so the innermost loop is as long as possible; the inner loop then has a vector
 * path for each of the stride patterns (1, 1), (1, 0) and (0, 1).
 */
#include <string.h>

#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/ref.h"

#define GRAIN 16384 /* elements per pool chunk, at least */

/* ------------------------------------------------------------- fill ---- */

typedef struct {
    float *out;
    float value;
} fill_job;

static void fill_task(void *ctx, int64_t b, int64_t e, int worker) {
    const fill_job *J = ctx;
    const __m256 v = _mm256_set1_ps(J->value);
    int64_t i = b;
    for (; i + 8 <= e; i += 8) _mm256_storeu_ps(J->out + i, v);
    for (; i < e; i++) J->out[i] = J->value;
}

void cg_avx2_fill(float *out, float value, int64_t n) {
    fill_job J = {out, value};
    cg_parallel_for(n, 4 * GRAIN, fill_task, &J);
}

/* ------------------------------------------------------------ unary ---- */

typedef struct {
    cg_unary_op op;
    float *out;
    const float *x;
    float p0, p1;
} unary_job;

/* One vector of an op that IEEE arithmetic computes exactly as the reference; returns 0
 * for the ops that need the scalar path. */
static inline int unary_vec(cg_unary_op op, __m256 x, __m256 p0, __m256 p1, __m256 *out) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    switch (op) {
    case CG_U_COPY: *out = x; return 1;
    case CG_U_NEG: *out = _mm256_xor_ps(x, sign); return 1;
    case CG_U_AFFINE: *out = _mm256_add_ps(_mm256_mul_ps(p0, x), p1); return 1;
    case CG_U_SQUARE: *out = _mm256_mul_ps(x, x); return 1;
    case CG_U_RECIP: *out = _mm256_div_ps(one, x); return 1;
    case CG_U_SQRT: *out = _mm256_sqrt_ps(x); return 1;
    case CG_U_RSQRT: *out = _mm256_div_ps(one, _mm256_sqrt_ps(x)); return 1;
    case CG_U_ABS: *out = _mm256_andnot_ps(sign, x); return 1;
    case CG_U_SIGN: /* (x > 0) - (x < 0): 0 for NaN */
        *out = _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_GT_OQ), one),
                             _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_LT_OQ), one));
        return 1;
    case CG_U_CLAMP: /* fminf(fmaxf(x, p0), p1): max_ps returns its second operand for a NaN */
        *out = _mm256_min_ps(_mm256_max_ps(x, p0), p1);
        return 1;
    case CG_U_CLAMP_MASK:
        *out = _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(x, p0, _CMP_GE_OQ), _mm256_cmp_ps(x, p1, _CMP_LE_OQ)), one);
        return 1;
    case CG_U_RELU: *out = _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_GT_OQ), x); return 1;
    case CG_U_STEP: *out = _mm256_and_ps(_mm256_cmp_ps(x, p0, _CMP_GT_OQ), one); return 1;
    case CG_U_LEAKY_RELU:
        *out = cg_avx2_leaky_by(x, x, p0);
        return 1;
    case CG_U_LEAKY_STEP: *out = _mm256_blendv_ps(p0, one, _mm256_cmp_ps(x, zero, _CMP_GT_OQ)); return 1;
    case CG_U_SOFTSIGN: *out = _mm256_div_ps(x, _mm256_add_ps(one, _mm256_andnot_ps(sign, x))); return 1;
    default: *out = x; return 0;
    }
}

static void unary_task(void *ctx, int64_t b, int64_t e, int worker) {
    const unary_job *J = ctx;
    const __m256 p0 = _mm256_set1_ps(J->p0), p1 = _mm256_set1_ps(J->p1);
    __m256 probe;
    int64_t i = b;
    if (unary_vec(J->op, p0, p0, p1, &probe)) {
        for (; i + 8 <= e; i += 8) {
            __m256 r;
            unary_vec(J->op, _mm256_loadu_ps(J->x + i), p0, p1, &r);
            _mm256_storeu_ps(J->out + i, r);
        }
        if (i < e) {
            __m256i mk = cg_avx2_mask((int)(e - i));
            __m256 r;
            unary_vec(J->op, _mm256_maskload_ps(J->x + i, mk), p0, p1, &r);
            _mm256_maskstore_ps(J->out + i, mk, r);
        }
        return;
    }
    for (; i < e; i++) J->out[i] = cg_ref_unary1(J->op, J->x[i], J->p0, J->p1);
}

void cg_avx2_unary(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1) {
    unary_job J = {op, out, x, p0, p1};
    __m256 probe;
    int cheap = unary_vec(op, _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), &probe);
    cg_parallel_for(n, cheap ? 4 * GRAIN : GRAIN / 8, unary_task, &J);
}

/* ----------------------------------------------- axes, merged ---- */

/* Merge adjacent axes along which every operand is contiguous (stride[i] ==
 * stride[i+1]·shape[i+1] for all), drop axes of length 1; returns the new rank (>= 1).
 * nops operands, strides in s[op][axis]. */
static int merge_axes(int ndim, int64_t *shape, int nops, int64_t s[][CG_MAX_DIMS]) {
    int64_t sh[CG_MAX_DIMS], st[3][CG_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1) continue;
        if (n > 0) {
            int ok = 1;
            for (int o = 0; o < nops; o++) ok &= st[o][n - 1] == s[o][i] * shape[i];
            if (ok) {
                sh[n - 1] *= shape[i];
                for (int o = 0; o < nops; o++) st[o][n - 1] = s[o][i];
                continue;
            }
        }
        sh[n] = shape[i];
        for (int o = 0; o < nops; o++) st[o][n] = s[o][i];
        n++;
    }
    if (n == 0) {
        sh[0] = 1;
        for (int o = 0; o < nops; o++) st[o][0] = 1;
        n = 1;
    }
    memcpy(shape, sh, sizeof sh);
    for (int o = 0; o < nops; o++) memcpy(s[o], st[o], sizeof st[o]);
    return n;
}

/* The offsets of outer index `idx` (all axes but the last) for each operand. */
static void outer_offsets(int64_t idx, int ndim, const int64_t *shape, int nops, int64_t s[][CG_MAX_DIMS],
                          int64_t *off) {
    for (int o = 0; o < nops; o++) off[o] = 0;
    for (int d = ndim - 2; d >= 0; d--) {
        int64_t i = idx % shape[d];
        idx /= shape[d];
        for (int o = 0; o < nops; o++) off[o] += i * s[o][d];
    }
}

/* ----------------------------------------------------------- binary ---- */

typedef struct {
    cg_binary_op op;
    float *out;
    const float *a, *b;
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t s[3][CG_MAX_DIMS]; /* out, a, b */
} binary_job;

static inline __m256 bin_vec(cg_binary_op op, __m256 x, __m256 y) {
    switch (op) {
    case CG_B_ADD: return _mm256_add_ps(x, y);
    case CG_B_SUB: return _mm256_sub_ps(x, y);
    case CG_B_MUL: return _mm256_mul_ps(x, y);
    default: return _mm256_div_ps(x, y);
    }
}

static inline float bin1(cg_binary_op op, float x, float y) {
    switch (op) {
    case CG_B_ADD: return x + y;
    case CG_B_SUB: return x - y;
    case CG_B_MUL: return x * y;
    default: return x / y;
    }
}

/* One inner row of n elements with strides sa, sb (out contiguous). */
static void binary_row(cg_binary_op op, float *o, const float *a, int64_t sa, const float *b, int64_t sb, int64_t n) {
    int64_t i = 0;
    if (sa == 1 && sb == 1)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, bin_vec(op, _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    else if (sa == 1 && sb == 0) {
        __m256 y = _mm256_set1_ps(*b);
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, bin_vec(op, _mm256_loadu_ps(a + i), y));
    } else if (sa == 0 && sb == 1) {
        __m256 x = _mm256_set1_ps(*a);
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, bin_vec(op, x, _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++) o[i] = bin1(op, a[i * sa], b[i * sb]);
}

static void binary_task(void *ctx, int64_t b, int64_t e, int worker) {
    const binary_job *J = ctx;
    const int64_t inner = J->shape[J->ndim - 1];
    int64_t s[3][CG_MAX_DIMS];
    memcpy(s, J->s, sizeof s);
    for (int64_t r = b; r < e; r++) {
        int64_t off[3];
        outer_offsets(r, J->ndim, J->shape, 3, s, off);
        binary_row(J->op, J->out + off[0], J->a + off[1], s[1][J->ndim - 1], J->b + off[2], s[2][J->ndim - 1], inner);
    }
}

void cg_avx2_binary(cg_binary_op op, float *out, const float *a, const float *b, const cg_bcast_desc *d) {
    binary_job J = {.op = op, .out = out, .a = a, .b = b};
    int64_t so = 1;
    for (int i = d->ndim - 1; i >= 0; i--) {
        J.shape[i] = d->shape[i];
        J.s[0][i] = so;
        J.s[1][i] = d->sa[i];
        J.s[2][i] = d->sb[i];
        so *= d->shape[i];
    }
    if (so == 0) return;
    J.ndim = merge_axes(d->ndim, J.shape, 3, J.s);
    int64_t inner = J.shape[J.ndim - 1], rows = so / inner;
    cg_parallel_for(rows, (4 * GRAIN + inner - 1) / inner, binary_task, &J);
}

/* ------------------------------------------------------ strided copy ---- */

typedef struct {
    float *dst;
    const float *src;
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t s[2][CG_MAX_DIMS]; /* dst, src */
} copy_job;

static void copy_task(void *ctx, int64_t b, int64_t e, int worker) {
    const copy_job *J = ctx;
    const int64_t inner = J->shape[J->ndim - 1], sd = J->s[0][J->ndim - 1], ss = J->s[1][J->ndim - 1];
    int64_t s[2][CG_MAX_DIMS];
    memcpy(s, J->s, sizeof s);
    for (int64_t r = b; r < e; r++) {
        int64_t off[2];
        outer_offsets(r, J->ndim, J->shape, 2, s, off);
        float *o = J->dst + off[0];
        const float *i = J->src + off[1];
        if (sd == 1 && ss == 1) memcpy(o, i, (size_t)inner * sizeof(float));
        else
            for (int64_t k = 0; k < inner; k++) o[k * sd] = i[k * ss];
    }
}

void cg_avx2_copy_strided(float *dst, const float *src, const cg_strided_desc *d) {
    copy_job J = {.dst = dst, .src = src};
    int64_t n = 1;
    for (int i = 0; i < d->ndim; i++) {
        J.shape[i] = d->shape[i];
        J.s[0][i] = d->sdst[i];
        J.s[1][i] = d->ssrc[i];
        n *= d->shape[i];
    }
    if (n == 0) return;
    J.ndim = merge_axes(d->ndim, J.shape, 2, J.s);
    int64_t inner = J.shape[J.ndim - 1];
    cg_parallel_for(n / inner, (4 * GRAIN + inner - 1) / inner, copy_task, &J);
}
