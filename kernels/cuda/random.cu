/*
 * kernels/cuda/random.cu — fill and the Philox random streams of core/rng.h on the GPU.
 *
 * Each thread computes one 128-bit Philox block with cuRAND's device function
 * curand_Philox4x32_10(ctr, key), ctr = {lo(c0+q), hi(c0+q), 0, 0}, key = {lo(seed),
 * hi(seed)}, and writes the block's four outputs: element i of the stream is word i%4 of
 * block i/4, exactly what curand_init(seed, 0, 4*c0) followed by curand() calls gives
 * (cg_cuda_curand_reference below draws it that way, for tests/test_cuda.c).
 *
 * Bitwise agreement with the CPU. The uniform mapping x·2^-32 + 2^-33 and lo + (hi-lo)·u are
 * written with __fmul_rn/__fadd_rn, which the compiler never fuses into an FMA (the CPU
 * reference rounds each operation too), so uniforms are bit-identical to core/rng.c.
 * Normals use cuRAND's Box–Muller formula but with the accurate logf/sincosf instead of
 * curand_normal4's __sincosf intrinsic, so they agree with the CPU to a few ulp.
 */
#include "kernels/cuda/kernels.cuh"

#ifdef CG_CUDA_EMU
extern "C" {
#include "core/rng.h"
}
/* The three cuRAND device functions used here, as cuRAND defines them (curand_kernel.h,
 * curand_philox4x32_x.h), on top of the CPU's Philox block. */
static inline uint4 curand_Philox4x32_10(uint4 c, uint2 k) {
    uint32_t ctr[4] = {c.x, c.y, c.z, c.w}, key[2] = {k.x, k.y}, o[4];
    cg_philox4x32_10(ctr, key, o);
    return make_uint4(o[0], o[1], o[2], o[3]);
}
struct curandStatePhilox4_32_10_t {
    uint4 ctr, output;
    uint2 key;
    unsigned STATE;
};
static inline void philox_incr(curandStatePhilox4_32_10_t *s, unsigned long long n) {
    uint64_t lo = ((uint64_t)s->ctr.y << 32 | s->ctr.x) + n;
    if (lo < n && ++s->ctr.z == 0) ++s->ctr.w;
    s->ctr.x = (unsigned)lo;
    s->ctr.y = (unsigned)(lo >> 32);
}
static inline void curand_init(unsigned long long seed, unsigned long long subseq, unsigned long long offset,
                               curandStatePhilox4_32_10_t *s) {
    s->ctr = make_uint4(0, 0, (unsigned)subseq, (unsigned)(subseq >> 32));
    s->key = {(unsigned)seed, (unsigned)(seed >> 32)};
    s->STATE = (unsigned)(offset & 3);
    philox_incr(s, offset / 4);
    s->output = curand_Philox4x32_10(s->ctr, s->key);
}
static inline unsigned curand(curandStatePhilox4_32_10_t *s) {
    unsigned w[4] = {s->output.x, s->output.y, s->output.z, s->output.w};
    unsigned r = w[s->STATE++];
    if (s->STATE == 4) {
        philox_incr(s, 1);
        s->output = curand_Philox4x32_10(s->ctr, s->key);
        s->STATE = 0;
    }
    return r;
}
#else
#include <curand_kernel.h>
#endif

namespace CG_CUDA_NS {

namespace {

const float kInv32 = 2.3283064e-10f;                 /* 2^-32, CURAND_2POW32_INV */
const float kInv32x2Pi = 2.3283064e-10f * 6.2831855f; /* CURAND_2POW32_INV_2PI */

__device__ __forceinline__ float to_uniform(unsigned x) { return __fadd_rn(__fmul_rn((float)x, kInv32), kInv32 / 2.0f); }

__device__ __forceinline__ uint4 philox_block(uint64_t seed, uint64_t c) {
    uint4 ctr = make_uint4((unsigned)c, (unsigned)(c >> 32), 0u, 0u);
    uint2 key;
    key.x = (unsigned)seed;
    key.y = (unsigned)(seed >> 32);
    return curand_Philox4x32_10(ctr, key);
}

__global__ void fill_kernel(float *out, float value, int64_t n) {
    for (int64_t i = gtid(); i < n; i += gstride()) out[i] = value;
}

__global__ void uniform_kernel(float *out, int64_t n, uint64_t seed, uint64_t c0, float lo, float hi) {
    int64_t nq = (n + 3) / 4;
    float span = hi - lo;
    for (int64_t q = gtid(); q < nq; q += gstride()) {
        uint4 w = philox_block(seed, c0 + (uint64_t)q);
        unsigned ws[4] = {w.x, w.y, w.z, w.w};
        for (int j = 0; j < 4 && 4 * q + j < n; j++) out[4 * q + j] = __fadd_rn(lo, __fmul_rn(span, to_uniform(ws[j])));
    }
}

__device__ __forceinline__ void box_muller(unsigned x0, unsigned x1, float *n0, float *n1) {
    float u = to_uniform(x0);
    float v = __fadd_rn(__fmul_rn((float)x1, kInv32x2Pi), kInv32x2Pi / 2.0f);
    float s = sqrtf(__fmul_rn(-2.0f, logf(u)));
    float sn = sinf(v), cs = cosf(v);
    *n0 = __fmul_rn(sn, s);
    *n1 = __fmul_rn(cs, s);
}

__global__ void normal_kernel(float *out, int64_t n, uint64_t seed, uint64_t c0, float mean, float std) {
    int64_t nq = (n + 3) / 4;
    for (int64_t q = gtid(); q < nq; q += gstride()) {
        uint4 w = philox_block(seed, c0 + (uint64_t)q);
        float z[4];
        box_muller(w.x, w.y, &z[0], &z[1]);
        box_muller(w.z, w.w, &z[2], &z[3]);
        for (int j = 0; j < 4 && 4 * q + j < n; j++) out[4 * q + j] = __fadd_rn(mean, __fmul_rn(std, z[j]));
    }
}

/* One thread per element, each with its own cuRAND state: slow, but literally the
 * documented stateful API, to show the stream above is cuRAND's. */
__global__ void curand_reference_kernel(float *out, int64_t n, uint64_t seed, uint64_t c0) {
    for (int64_t i = gtid(); i < n; i += gstride()) {
        curandStatePhilox4_32_10_t st;
        curand_init(seed, 0ull, 4ull * c0 + (uint64_t)i, &st);
        out[i] = to_uniform(curand(&st));
    }
}

} /* namespace */

void fill(float *out, float value, int64_t n) {
    if (n <= 0) return;
    CG_LAUNCH(fill_kernel, grid_for(n), kThreads, 0, out, value, n);
}

void rand_uniform(float *out, int64_t n, uint64_t seed, uint64_t counter, float lo, float hi) {
    if (n <= 0) return;
    CG_LAUNCH(uniform_kernel, grid_for((n + 3) / 4), kThreads, 0, out, n, seed, counter, lo, hi);
}

void rand_normal(float *out, int64_t n, uint64_t seed, uint64_t counter, float mean, float std) {
    if (n <= 0) return;
    CG_LAUNCH(normal_kernel, grid_for((n + 3) / 4), kThreads, 0, out, n, seed, counter, mean, std);
}

} /* namespace CG_CUDA_NS */

extern "C" void cg_cuda_curand_reference(float *out, int64_t n, uint64_t seed, uint64_t counter) {
    using namespace CG_CUDA_NS;
    if (n <= 0 || !cg_cuda_backend()) return;
    CG_LAUNCH(curand_reference_kernel, grid_for(n), kThreads, 0, out, n, seed, counter);
}
