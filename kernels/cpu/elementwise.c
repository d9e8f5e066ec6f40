/*
 * kernels/cpu/elementwise.c — reference unary, broadcasting binary and strided copy.
 * Reference kernels: never optimised; the oracle for the AVX2 and CUDA versions.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/ref.h"

static float sigmoidf(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

float cg_ref_unary1(cg_unary_op op, float x, float p0, float p1) {
    switch (op) {
    case CG_U_COPY: return x;
    case CG_U_NEG: return -x;
    case CG_U_AFFINE: return p0 * x + p1;
    case CG_U_SQUARE: return x * x;
    case CG_U_RECIP: return 1.0f / x;
    case CG_U_EXP: return expf(x);
    case CG_U_LOG: return logf(x);
    case CG_U_SQRT: return sqrtf(x);
    case CG_U_RSQRT: return 1.0f / sqrtf(x);
    case CG_U_POW: return powf(x, p0);
    case CG_U_ABS: return fabsf(x);
    case CG_U_SIGN: return (float)((x > 0) - (x < 0));
    case CG_U_CLAMP: return fminf(fmaxf(x, p0), p1);
    case CG_U_CLAMP_MASK: return (x >= p0 && x <= p1) ? 1.0f : 0.0f;
    case CG_U_RELU: return x > 0 ? x : 0.0f;
    case CG_U_STEP: return x > p0 ? 1.0f : 0.0f;
    case CG_U_LEAKY_RELU: return x > 0 ? x : p0 * x;
    case CG_U_LEAKY_STEP: return x > 0 ? 1.0f : p0;
    case CG_U_ELU: return x > 0 ? x : p0 * expm1f(x);
    case CG_U_SIGMOID: return sigmoidf(x);
    case CG_U_TANH: return tanhf(x);
    case CG_U_SOFTPLUS: return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
    case CG_U_SOFTSIGN: return x / (1.0f + fabsf(x));
    default: return NAN;
    }
}

void cg_ref_unary(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1) {
    for (int64_t i = 0; i < n; i++) out[i] = cg_ref_unary1(op, x[i], p0, p1);
}

/* Visit every index of a rank-<=5 shape, tracking two strided offsets. The shape is padded
 * to 5 dimensions with leading ones so one loop nest serves all ranks. */
#define PAD5(ndim, src, dst, fill)                                  \
    do {                                                            \
        for (int i_ = 0; i_ < 5; i_++) (dst)[i_] = (fill);          \
        for (int i_ = 0; i_ < (ndim); i_++) (dst)[5 - (ndim) + i_] = (src)[i_]; \
    } while (0)

void cg_ref_binary(cg_binary_op op, float *out, const float *a, const float *b, const cg_bcast_desc *d) {
    int64_t sh[5], sa[5], sb[5];
    PAD5(d->ndim, d->shape, sh, 1);
    PAD5(d->ndim, d->sa, sa, 0);
    PAD5(d->ndim, d->sb, sb, 0);
    int64_t o = 0;
    for (int64_t i0 = 0; i0 < sh[0]; i0++)
    for (int64_t i1 = 0; i1 < sh[1]; i1++)
    for (int64_t i2 = 0; i2 < sh[2]; i2++)
    for (int64_t i3 = 0; i3 < sh[3]; i3++)
    for (int64_t i4 = 0; i4 < sh[4]; i4++) {
        float x = a[i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3] + i4 * sa[4]];
        float y = b[i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3] + i4 * sb[4]];
        float r;
        switch (op) {
        case CG_B_ADD: r = x + y; break;
        case CG_B_SUB: r = x - y; break;
        case CG_B_MUL: r = x * y; break;
        case CG_B_DIV: r = x / y; break;
        default: r = NAN;
        }
        out[o++] = r;
    }
}

void cg_ref_copy_strided(float *dst, const float *src, const cg_strided_desc *d) {
    int64_t sh[5], sd[5], ss[5];
    PAD5(d->ndim, d->shape, sh, 1);
    PAD5(d->ndim, d->sdst, sd, 0);
    PAD5(d->ndim, d->ssrc, ss, 0);
    for (int64_t i0 = 0; i0 < sh[0]; i0++)
    for (int64_t i1 = 0; i1 < sh[1]; i1++)
    for (int64_t i2 = 0; i2 < sh[2]; i2++)
    for (int64_t i3 = 0; i3 < sh[3]; i3++)
    for (int64_t i4 = 0; i4 < sh[4]; i4++)
        dst[i0 * sd[0] + i1 * sd[1] + i2 * sd[2] + i3 * sd[3] + i4 * sd[4]] =
            src[i0 * ss[0] + i1 * ss[1] + i2 * ss[2] + i3 * ss[3] + i4 * ss[4]];
}
