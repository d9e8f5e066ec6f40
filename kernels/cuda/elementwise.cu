/*
 * kernels/cuda/elementwise.cu — unary ops, broadcasting binary ops and strided copies.
 *
 * Memory-bound: one thread per output element in a grid-stride loop. Strided operands are
 * first simplified on the host (size-1 axes dropped, axes merged where every operand is
 * contiguous across them, kernels/cuda/strided.cuh), so the common cases (same-shape
 * operands, a per-channel bias) index with one or two divisions, in 32-bit arithmetic
 * whenever every offset fits.
 *
 * Numerics follow kernels/cpu/elementwise.c operation by operation (accurate expf/logf...,
 * 1/sqrtf rather than the approximate rsqrtf, no fused multiply-add where the reference
 * rounds a product before adding), so results agree with the reference to a few ulp.
 */
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/strided.cuh"

namespace CG_CUDA_NS {

namespace {

__device__ __forceinline__ float sigmoid1(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

__device__ __forceinline__ float unary1(cg_unary_op op, float x, float p0, float p1) {
    switch (op) {
    case CG_U_COPY: return x;
    case CG_U_NEG: return -x;
    case CG_U_AFFINE: return __fadd_rn(__fmul_rn(p0, x), p1);
    case CG_U_SQUARE: return x * x;
    case CG_U_RECIP: return 1.0f / x;
    case CG_U_EXP: return expf(x);
    case CG_U_LOG: return logf(x);
    case CG_U_SQRT: return sqrtf(x);
    case CG_U_RSQRT: return 1.0f / sqrtf(x);
    case CG_U_POW: return powf(x, p0);
    case CG_U_ABS: return fabsf(x);
    case CG_U_SIGN: return (float)((x > 0.0f) - (x < 0.0f));
    case CG_U_CLAMP: return fminf(fmaxf(x, p0), p1);
    case CG_U_CLAMP_MASK: return (x >= p0 && x <= p1) ? 1.0f : 0.0f;
    case CG_U_RELU: return x > 0.0f ? x : 0.0f;
    case CG_U_STEP: return x > p0 ? 1.0f : 0.0f;
    case CG_U_LEAKY_RELU: return x > 0.0f ? x : p0 * x;
    case CG_U_LEAKY_STEP: return x > 0.0f ? 1.0f : p0;
    case CG_U_ELU: return x > 0.0f ? x : p0 * expm1f(x);
    case CG_U_SIGMOID: return sigmoid1(x);
    case CG_U_TANH: return tanhf(x);
    case CG_U_SOFTPLUS: return __fadd_rn(fmaxf(x, 0.0f), log1pf(expf(-fabsf(x))));
    case CG_U_SOFTSIGN: return x / (1.0f + fabsf(x));
    default: return __int_as_float(0x7fc00000); /* NaN, as the reference */
    }
}

__global__ void unary_kernel(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1) {
    for (int64_t i = gtid(); i < n; i += gstride()) out[i] = unary1(op, x[i], p0, p1);
}

__device__ __forceinline__ float binary1(cg_binary_op op, float a, float b) {
    switch (op) {
    case CG_B_ADD: return a + b;
    case CG_B_SUB: return a - b;
    case CG_B_MUL: return a * b;
    case CG_B_DIV: return a / b;
    default: return __int_as_float(0x7fc00000);
    }
}

/* out[o] = a[offset_1(o)] op b[offset_2(o)]; out is contiguous (operand 0's strides). */
template <int ND, class I>
__global__ void binary_kernel(cg_binary_op op, float *out, const float *a, const float *b, Strided<I> s, I n) {
    for (I o = (I)gtid(); o < n; o += (I)gstride()) {
        I off[3];
        s.template offsets<ND>(o, off);
        out[o] = binary1(op, a[off[1]], b[off[2]]);
    }
}

template <int ND, class I>
__global__ void copy_kernel(float *dst, const float *src, Strided<I> s, I n) {
    for (I o = (I)gtid(); o < n; o += (I)gstride()) {
        I off[3];
        s.template offsets<ND>(o, off);
        dst[off[0]] = src[off[1]];
    }
}

template <class I>
void launch_binary(cg_binary_op op, float *out, const float *a, const float *b, const StridedHost &h) {
    Strided<I> s = h.template get<I>();
    I n = (I)h.n;
    unsigned g = grid_for(h.n);
    switch (h.nd) {
    case 1: { auto k = binary_kernel<1, I>; CG_LAUNCH(k, g, kThreads, 0, op, out, a, b, s, n); break; }
    case 2: { auto k = binary_kernel<2, I>; CG_LAUNCH(k, g, kThreads, 0, op, out, a, b, s, n); break; }
    case 3: { auto k = binary_kernel<3, I>; CG_LAUNCH(k, g, kThreads, 0, op, out, a, b, s, n); break; }
    case 4: { auto k = binary_kernel<4, I>; CG_LAUNCH(k, g, kThreads, 0, op, out, a, b, s, n); break; }
    default: { auto k = binary_kernel<5, I>; CG_LAUNCH(k, g, kThreads, 0, op, out, a, b, s, n); break; }
    }
}

template <class I> void launch_copy(float *dst, const float *src, const StridedHost &h) {
    Strided<I> s = h.template get<I>();
    I n = (I)h.n;
    unsigned g = grid_for(h.n);
    switch (h.nd) {
    case 1: { auto k = copy_kernel<1, I>; CG_LAUNCH(k, g, kThreads, 0, dst, src, s, n); break; }
    case 2: { auto k = copy_kernel<2, I>; CG_LAUNCH(k, g, kThreads, 0, dst, src, s, n); break; }
    case 3: { auto k = copy_kernel<3, I>; CG_LAUNCH(k, g, kThreads, 0, dst, src, s, n); break; }
    case 4: { auto k = copy_kernel<4, I>; CG_LAUNCH(k, g, kThreads, 0, dst, src, s, n); break; }
    default: { auto k = copy_kernel<5, I>; CG_LAUNCH(k, g, kThreads, 0, dst, src, s, n); break; }
    }
}

} /* namespace */

void unary(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1) {
    if (n <= 0) return;
    CG_LAUNCH(unary_kernel, grid_for(n), kThreads, 0, op, out, x, n, p0, p1);
}

void binary(cg_binary_op op, float *out, const float *a, const float *b, const cg_bcast_desc *d) {
    int64_t out_stride[CG_MAX_DIMS], s = 1;
    for (int i = d->ndim - 1; i >= 0; i--) {
        out_stride[i] = s;
        s *= d->shape[i];
    }
    const int64_t *strides[3] = {out_stride, d->sa, d->sb};
    StridedHost h(d->ndim, d->shape, 3, strides);
    if (h.n == 0) return;
    if (h.fits32()) launch_binary<int32_t>(op, out, a, b, h);
    else launch_binary<int64_t>(op, out, a, b, h);
}

void copy_strided(float *dst, const float *src, const cg_strided_desc *d) {
    const int64_t *strides[2] = {d->sdst, d->ssrc};
    StridedHost h(d->ndim, d->shape, 2, strides);
    if (h.n == 0) return;
    if (h.fits32()) launch_copy<int32_t>(dst, src, h);
    else launch_copy<int64_t>(dst, src, h);
}

} /* namespace CG_CUDA_NS */
