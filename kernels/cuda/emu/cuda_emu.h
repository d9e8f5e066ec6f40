/*
 * kernels/cuda/emu/cuda_emu.h — a CPU emulator for the subset of CUDA C++ that kernels/cuda/
 * uses, so that the CUDA kernels themselves (not a copy) run and are tested on machines
 * without a GPU (CI has none).
 *
 * How: the .cu files are compiled as C++ with -DCG_CUDA_EMU (through the wrappers in this
 * folder). This header then stands in for cuda_runtime.h:
 *  - a kernel launch runs the grid's blocks one after another; the threads of a block are
 *    fibers (emu.cpp) scheduled round-robin, switching only at __syncthreads and at
 *    warp-collective operations (shuffles, ballots, mma). Even blocks run their threads in
 *    ascending order, odd blocks in descending order, so a missing barrier shows up as a
 *    wrong result in one direction or the other;
 *  - __shared__ arrays become static (one block runs at a time); dynamic shared memory is
 *    one buffer, checked against the 48 KB default or the kernel's raised limit;
 *  - warp-collective operations exchange values through a per-warp buffer and check that
 *    all 32 lanes take part; the tensor-core mma instructions are computed from the
 *    fragment layouts of the PTX ISA (tf32: m16n8k8, bf16: m16n8k16) with the inputs
 *    rounded as the hardware rounds them;
 *  - the runtime API (memory, streams, events, device properties) is a host-memory fake
 *    that enforces the launch limits (grid y/z <= 65535, block <= 1024 threads, non-empty
 *    grids) and can simulate an out-of-memory device (CG_EMU_MEM_LIMIT=bytes).
 *
 * Limits: no memory model (fibers are sequentially consistent), no timing, no
 * registers/occupancy, one device. What it proves is that the indexing, tiling,
 * synchronisation structure and numerics of the kernels compute the reference result; it
 * says nothing about speed.
 */
#ifndef CG_CUDA_EMU_H
#define CG_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

/* ------------------------------------------------------------ qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static
#define __align__(n) alignas(n)

/* ------------------------------------------------------------ vector types ---- */
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned x, y, z; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

/* ------------------------------------------------------------ the scheduler ---- */
namespace cg_emu {

struct Fiber;
struct State {
    dim3 grid, block;
    uint3 bidx;
    Fiber *cur;
    int live;
    bool progress;
    /* block barrier */
    int bar_arrived;
    unsigned bar_gen;
    /* warp barriers and exchange buffers (up to 32 warps of 32 lanes) */
    int warp_live[32], warp_arrived[32];
    unsigned warp_gen[32];
    uint32_t xbuf[32][32][32];
    unsigned char *dyn_smem;
    size_t dyn_smem_bytes;
};
extern State g;

struct Fiber {
    uint3 tid;
    int linear, warp, lane;
    bool done;
};

void yield();
void syncthreads();
void warp_barrier();
void launch(const void *kernel, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);
void set_max_dyn_smem(const void *kernel, int bytes);
void fail(const char *what);

/* Warp exchange: every lane deposits `bytes` of its value, then reads lane src's. */
template <class T> static inline T exchange(const T &v, int src) {
    static_assert(sizeof(T) <= sizeof(g.xbuf[0][0]), "exchange value too large");
    Fiber *f = g.cur;
    memcpy(g.xbuf[f->warp][f->lane], &v, sizeof(T));
    warp_barrier();
    T r;
    memcpy(&r, g.xbuf[f->warp][src & 31], sizeof(T));
    warp_barrier();
    return r;
}

/* tf32 as cvt.rna.tf32.f32 makes it: round to nearest, ties away, to 10 mantissa bits. */
static inline uint32_t to_tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
    return u & 0xffffe000u;
}

/* Every lane's value, in lane order (one deposit, one read). */
template <class T> static inline void gather(const T &v, T (&out)[32]) {
    static_assert(sizeof(T) <= sizeof(g.xbuf[0][0]), "exchange value too large");
    Fiber *f = g.cur;
    memcpy(g.xbuf[f->warp][f->lane], &v, sizeof(T));
    warp_barrier();
    for (int l = 0; l < 32; l++) memcpy(&out[l], g.xbuf[f->warp][l], sizeof(T));
    warp_barrier();
}

/* A warp's MI x NI tile of mma.sync instructions (tf32 m16n8k8 or bf16 m16n8k16):
 * acc[(mi·NI + ni)·4 + q] += A_mi · B_ni, with af[mi·4 + r] and bf[ni·2 + r] this lane's
 * fragment registers in the PTX ISA layouts. */
void mma_tile_tf32(float *acc, const uint32_t *af, const uint32_t *bf, int MI, int NI);
void mma_tile_bf16(float *acc, const uint32_t *af, const uint32_t *bf, int MI, int NI);

} /* namespace cg_emu */

#define threadIdx (cg_emu::g.cur->tid)
#define blockIdx (cg_emu::g.bidx)
#define blockDim (cg_emu::g.block)
#define gridDim (cg_emu::g.grid)
#define warpSize 32

static inline void __syncthreads() { cg_emu::syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    cg_emu::warp_barrier();
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    (void)mask; (void)width;
    return cg_emu::exchange(v, src);
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lanemask, int width = 32) {
    (void)mask; (void)width;
    return cg_emu::exchange(v, cg_emu::g.cur->lane ^ lanemask);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    (void)mask; (void)width;
    int l = cg_emu::g.cur->lane, s = l + (int)delta;
    return cg_emu::exchange(v, s < 32 ? s : l);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    (void)mask;
    unsigned all[32], bits = 0;
    cg_emu::gather(pred ? 1u : 0u, all);
    for (int l = 0; l < 32; l++) bits |= all[l] << l;
    return bits;
}
static inline unsigned __match_any_sync(unsigned mask, unsigned v) {
    (void)mask;
    unsigned all[32], bits = 0;
    cg_emu::gather(v, all);
    for (int l = 0; l < 32; l++) bits |= (all[l] == v ? 1u : 0u) << l;
    return bits;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
template <class T> static inline T __ldg(const T *p) { return *p; }
/* Fibers switch only at barriers, so a read-modify-write is atomic. */
template <class T> static inline T atomicAdd(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
static inline unsigned __float_as_uint(float x) { unsigned u; memcpy(&u, &x, 4); return u; }
static inline float __uint_as_float(unsigned u) { float x; memcpy(&x, &u, 4); return x; }
static inline int __float_as_int(float x) { int u; memcpy(&u, &x, 4); return u; }
static inline float __int_as_float(int u) { float x; memcpy(&x, &u, 4); return x; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
static inline int __mul24(int a, int b) { return a * b; }
/* Rounded single operations that the compiler never fuses into an FMA (the host build has
 * no FMA contraction either: x86-64 without -mfma). */
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
/* bf16x2 with round-to-nearest-even, low half = lo (what __floats2bfloat162_rn packs) */
static inline uint32_t cg_emu_bf16x2(float lo, float hi) {
    auto one = [](float x) -> uint32_t {
        uint32_t u;
        memcpy(&u, &x, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u; /* NaN */
        return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    };
    return one(lo) | (one(hi) << 16);
}

/* ------------------------------------------------------------ the runtime API ---- */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorLaunchFailure = 719,
} cudaError_t;

typedef struct cg_emu_stream *cudaStream_t;
typedef struct cg_emu_event *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                      cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
    int multiProcessorCount, major, minor, l2CacheSize, maxThreadsPerBlock;
};

const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t s);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind k);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
template <class F> static inline cudaError_t cudaFuncSetAttribute(F *kernel, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) cg_emu::set_max_dyn_smem((const void *)kernel, value);
    return cudaSuccess;
}

#endif
