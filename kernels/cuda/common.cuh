/*
 * kernels/cuda/common.cuh — what every .cu file of the CUDA backend shares: the error check,
 * the launch macro, the stream and workspace accessors, and small device helpers.
 *
 * Conventions (core/backend.h has the kernels' semantics):
 *  - Every CUDA runtime call goes through CUDA_CHECK, which aborts with file:line, the
 *    failed expression, CUDA's error name and a hint. Kernels are launched with CG_LAUNCH,
 *    which checks the launch. Asynchronous faults surface at the next checked call.
 *  - All work of a host thread goes to its current stream (cur_stream()); scratch buffers
 *    come from the caching allocator (ws_alloc/ws_free) and are freed right after the
 *    launches that use them: stream order makes that safe and reuse free of cudaMalloc.
 *  - No atomics whose order could change a floating-point result: reductions run in a
 *    fixed order (block tree, then a fixed-order pass over partials), so results are
 *    bitwise reproducible run to run.
 *  - Kernels never launch an empty grid: launchers return early for empty problems.
 *  - Internal symbols live in namespace CG_CUDA_NS (renamed in the emulator build, so that
 *    the emulated backend and the real one can be linked into one program).
 *  - Math is IEEE fp32 (no --use_fast_math): expf, logf, sinf... are the accurate
 *    versions, so results match the CPU reference to a few ulp.
 */
#ifndef CG_KERNELS_CUDA_COMMON_CUH
#define CG_KERNELS_CUDA_COMMON_CUH

#ifdef CG_CUDA_EMU
#include "kernels/cuda/emu/cuda_emu.h"
#define CG_CUDA_NS cg_cuda_emu_impl
#else
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#define CG_CUDA_NS cg_cuda_impl
#endif

#include <stdint.h>

extern "C" { /* the C headers of core/ have no C++ guards */
#include "core/backend.h"
#include "core/error.h"
}
#include "kernels/cuda/cuda.h"

namespace CG_CUDA_NS {

/* ------------------------------------------------------------- checks ---- */

[[noreturn]] void cuda_fail(const char *file, int line, const char *expr, cudaError_t e);

#define CUDA_CHECK(expr)                                                          \
    do {                                                                          \
        cudaError_t e_ = (expr);                                                  \
        if (e_ != cudaSuccess) CG_CUDA_NS::cuda_fail(__FILE__, __LINE__, #expr, e_); \
    } while (0)

/* Launch `kernel` (a function or a function pointer: name templates through a variable,
 * since their commas would split the macro's arguments) on the current stream. */
#ifdef CG_CUDA_EMU
#define CG_LAUNCH(kernel, grid, block, smem, ...) \
    cg_emu::launch((const void *)(kernel), (grid), (block), (smem), [&] { (kernel)(__VA_ARGS__); })
#else
#define CG_LAUNCH(kernel, grid, block, smem, ...)                                             \
    do {                                                                                      \
        (kernel)<<<(grid), (block), (smem), CG_CUDA_NS::cur_stream()>>>(__VA_ARGS__);         \
        CUDA_CHECK(cudaGetLastError());                                                       \
    } while (0)
#endif

/* Dynamic shared memory of a kernel, as an array of T. */
#ifdef CG_CUDA_EMU
#define CG_DYN_SMEM(T, name) T *name = (T *)cg_emu::g.dyn_smem
#else
#define CG_DYN_SMEM(T, name)                        \
    extern __shared__ __align__(16) unsigned char cg_dyn_smem_[]; \
    T *name = (T *)cg_dyn_smem_
#endif

/* ----------------------------------------------------- runtime (runtime.cu) ---- */

cudaStream_t cur_stream();
int sm_count();
/* Raise a kernel's dynamic shared-memory limit once (idempotent, cheap after the first). */
void allow_smem(const void *kernel, int bytes);
/* Scratch from the caching allocator; aborts with a report when the GPU is out of memory
 * (a kernel has no way to return an error). Free right after the launches that use it. */
void *ws_alloc(size_t bytes);
void ws_free(void *p);
/* Device-to-device copy on the current stream (asynchronous). */
void copy_bytes(void *dst, const void *src, size_t bytes);

/* ------------------------------------------------------- launch helpers ---- */

const int kThreads = 256;

/* Blocks for a grid-stride loop over n items: enough to fill the GPU, never zero. */
static inline unsigned grid_for(int64_t n, int threads = kThreads) {
    int64_t b = (n + threads - 1) / threads, cap = (int64_t)sm_count() * 8;
    if (b > cap) b = cap;
    return (unsigned)(b < 1 ? 1 : b);
}

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ------------------------------------------------------- device helpers ---- */

__device__ __forceinline__ int64_t gtid() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t gstride() { return (int64_t)gridDim.x * blockDim.x; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024), in a fixed order; every
 * thread gets the result. `red` is shared scratch of 32 floats; the call begins with a
 * barrier, so it can be called repeatedly with the same scratch. */
__device__ __forceinline__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    return warp_sum(t);
}

/* The same in double (the reductions accumulate in double, as the reference does: a sum
 * of many terms that cancel loses too much in fp32). `red` holds 32 doubles. */
__device__ __forceinline__ double block_sum_d(double v, double *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    double t = lane < nw ? red[lane] : 0.0;
    return warp_sum_d(t);
}

} /* namespace CG_CUDA_NS */

#endif
