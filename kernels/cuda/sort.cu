/*
 * kernels/cuda/sort.cu — row sort with indices (the BIB-AE's sorted-hit losses sort each
 * shower's 27,000 voxels), and the gather/scatter pair that carries gradients through it.
 *
 * Order (kernels/cpu/sort.c): by value, ties by original index, NaN after every number in
 * either direction, -0 equal to +0. Each float becomes a 32-bit key whose unsigned order
 * is that order (-0 canonicalised to +0; negative numbers bit-inverted, positive ones with
 * the sign bit set; descending inverts the key; every NaN is 0xFFFFFFFF), and a stable
 * LSD radix sort (4 passes of 8 bits) keeps equal keys in index order: the permutation is
 * exactly the reference's.
 *
 * One block per row. A pass counts digits (shared-memory integer atomics: the counts do
 * not depend on their order), scans them, then scatters the row in chunks of 256
 * elements; within a chunk each element's rank among equal digits comes from
 * __match_any_sync within its warp plus the counts of the warps before it, which keeps the
 * scatter stable. Keys and indices ping-pong through a workspace; the values are finally
 * gathered from x, so -0 and NaN payloads come out unchanged.
 * TODO: one block per row leaves most of the GPU idle for a handful of rows; a
 * multi-block (onesweep-style) pass would help long rows.
 */
#include "kernels/cuda/kernels.cuh"

namespace CG_CUDA_NS {

namespace {

__device__ __forceinline__ uint32_t sort_key(float v, int descending) {
    if (v != v) return 0xffffffffu; /* NaN: last */
    uint32_t u = v == 0.0f ? 0u : __float_as_uint(v);
    uint32_t k = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return descending ? ~k : k;
}

__global__ void __launch_bounds__(256) radix_sort_kernel(int32_t *idx_out, uint32_t *k0, int32_t *i0, uint32_t *k1,
                                                         int32_t *i1, const float *x, int64_t cols, int descending) {
    __shared__ int hist[256];
    __shared__ int base[256];
    __shared__ int wcount[8][256];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t row = blockIdx.x;
    const float *xr = x + row * cols;
    uint32_t *keys[2] = {k0 + row * cols, k1 + row * cols};
    int32_t *ids[2] = {i0 + row * cols, i1 + row * cols};
    for (int w = 0; w < 8; w++) wcount[w][tid] = 0;
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 8 * pass;
        const uint32_t *ksrc = keys[pass & 1];
        const int32_t *isrc = ids[pass & 1];
        uint32_t *kdst = keys[(pass + 1) & 1];
        int32_t *idst = pass == 3 ? idx_out + row * cols : ids[(pass + 1) & 1];
        hist[tid] = 0;
        __syncthreads();
        for (int64_t j = tid; j < cols; j += 256) {
            uint32_t k = pass == 0 ? sort_key(xr[j], descending) : ksrc[j];
            atomicAdd(&hist[(k >> shift) & 255u], 1);
        }
        __syncthreads();
        if (tid == 0) {
            int run = 0;
            for (int d = 0; d < 256; d++) {
                base[d] = run;
                run += hist[d];
            }
        }
        __syncthreads();
        for (int64_t c0 = 0; c0 < cols; c0 += 256) {
            int64_t j = c0 + tid;
            bool valid = j < cols;
            uint32_t k = 0;
            int32_t id = 0;
            if (valid) {
                k = pass == 0 ? sort_key(xr[j], descending) : ksrc[j];
                id = pass == 0 ? (int32_t)j : isrc[j];
            }
            unsigned d = valid ? (k >> shift) & 255u : 256u;
            unsigned same = __match_any_sync(0xffffffffu, d);
            int rank = __popc(same & ((1u << lane) - 1u));
            if (valid && rank == 0) wcount[warp][d] = __popc(same);
            __syncthreads();
            if (valid) {
                int pos = base[d] + rank;
                for (int w = 0; w < warp; w++) pos += wcount[w][d];
                kdst[pos] = k;
                idst[pos] = id;
            }
            __syncthreads();
            int add = 0;
            for (int w = 0; w < 8; w++) {
                add += wcount[w][tid];
                wcount[w][tid] = 0;
            }
            base[tid] += add;
            __syncthreads();
        }
    }
}

__global__ void gather_kernel(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols) {
    int64_t n = rows * cols;
    for (int64_t i = gtid(); i < n; i += gstride()) out[i] = x[(i / cols) * cols + idx[i]];
}

__global__ void scatter_kernel(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols) {
    int64_t n = rows * cols;
    for (int64_t i = gtid(); i < n; i += gstride()) out[(i / cols) * cols + idx[i]] = g[i];
}

} /* namespace */

void sort_rows(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t cols, int descending) {
    if (rows <= 0 || cols <= 0 || (!vals && !idx)) return;
    size_t n = (size_t)(rows * cols);
    /* keys and indices ping-pong through two buffers; the last pass writes the indices
     * into idx when given, else into a third scratch buffer */
    char *ws = (char *)ws_alloc(n * (2 * sizeof(uint32_t) + 2 * sizeof(int32_t) + (idx ? 0 : sizeof(int32_t))));
    uint32_t *k0 = (uint32_t *)ws, *k1 = k0 + n;
    int32_t *i0 = (int32_t *)(k1 + n), *i1 = i0 + n, *iout = idx ? idx : i1 + n;
    CG_LAUNCH(radix_sort_kernel, (unsigned)rows, 256, 0, iout, k0, i0, k1, i1, x, cols, descending);
    if (vals) gather_rows(vals, x, iout, rows, cols);
    ws_free(ws);
}

void gather_rows(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    CG_LAUNCH(gather_kernel, grid_for(rows * cols), kThreads, 0, out, x, idx, rows, cols);
}

void scatter_rows(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    CG_LAUNCH(scatter_kernel, grid_for(rows * cols), kThreads, 0, out, g, idx, rows, cols);
}

} /* namespace CG_CUDA_NS */
