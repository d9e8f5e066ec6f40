/*
 * kernels/cuda/igemm.cuh — the one tiled matrix-product engine behind gemm, the three
 * convolution kernels and the fused per-voxel layer: C[m][j] = Σ_k A(m, k) · B(k, j), where
 * an "op" says how to fetch A and B elements from its tensors (plain strides, an implicit
 * im2col gather, a normalise-and-activate on the fly) and what to do with the finished tile.
 *
 * Structure of a block (256 threads, tile BM x BN, K in steps of BK = 8 or 16):
 *   - the K loop double-buffers the A and B tiles in shared memory (k-major: As[k][m],
 *     Bs[k][j], rows padded by 8 floats so the tensor-core fragment loads hit 32 different
 *     banks); the next step's global loads go to registers while the current step computes;
 *     one barrier per step;
 *   - compute: fp32 FMAs on a TM x TN thread tile (math mode fp32: float4 shared loads, the
 *     4-column groups BN/2 apart so a warp's loads are conflict-free), or tensor cores
 *     through mma.sync: tf32 m16n8k8 (inputs rounded once with cvt.rna when the tile is
 *     stored) or bf16 m16n8k16 (rounded to nearest-even when the fragment is packed), both
 *     accumulating in fp32, on a warp tile of MI x NI fragments;
 *   - the accumulators go through shared memory (Cs[BM][BN+4]) so that the op's epilogue
 *     writes coalesced rows and can reduce along them (the layer-norm statistics).
 * Tile shapes are picked by M (the channel count in every conv: 1 to 192): 128 or 64 rows
 * by 128 columns, 32, 16, 8 or 4 rows by 256 columns (either way one B column per thread
 * for the loads; igemm_launch_narrow also offers 128-wide short tiles for narrow N); tiles
 * under 16 rows compute in fp32 whatever the math mode (such layers are memory-bound).
 * Split-K is the op's business (it maps blockIdx.z to a K range and writes partials that
 * a fixed-order pass adds: deterministic).
 *
 * The op interface (see GemmOp in matmul.cu for the simplest one). The op itself is a
 * kernel parameter and stays constant; what a thread works out once lives in its
 * Op::Thread (registers):
 *   th.k_begin, th.k_end                      the K range of this block (set by begin)
 *   begin(th, m0, j0, z, jl) -> bool          once per thread; jl = this thread's B column;
 *                                             false (for the whole block alike) when the
 *                                             block has nothing to do: it then returns
 *   a_kfast(), b_jfast()                      which index is contiguous in memory: the tile
 *                                             loads walk it across consecutive threads
 *   a(th, m, k), b(th, k, jl)                 elements (0 outside the matrix: m >= M,
 *                                             j >= N); k_begin <= k < k_end is guaranteed.
 *                                             When b_jfast(), a thread only ever asks for
 *                                             its own column jl, so an op may precompute
 *                                             per-column state in begin.
 *   epilogue<BM, BN>(th, Cs, ldc, m0, j0, tid) the finished tile (unscaled sums)
 */
#ifndef CG_KERNELS_CUDA_IGEMM_CUH
#define CG_KERNELS_CUDA_IGEMM_CUH

#include "kernels/cuda/common.cuh"

namespace CG_CUDA_NS {

enum { MODE_FP32 = CG_MATH_FP32, MODE_TF32 = CG_MATH_TF32, MODE_BF16 = CG_MATH_BF16 };

template <int BM_, int BN_, int MODE> struct Cfg {
    /* BK: 16 for bf16 (its mma takes k in steps of 16), else 8, which halves the
     * registers that stage the next tile (fewer spills at 128 registers) */
    static constexpr int BM = BM_, BN = BN_, BK = MODE == MODE_BF16 ? 16 : 8, THREADS = 256;
    /* fp32 thread tile: TM rows (contiguous) x TN columns (groups of 4, BN/2 apart) */
    static constexpr int TN = BM >= 16 ? 8 : 4, TX = BN / TN, TY = THREADS / TX, TM = BM / TY;
    static constexpr int LDA = BM + 8, LDB = BN + 8, LDC = BN + 4;
    /* tensor-core warp tile: 8 warps as WGM x WGN, each MI x NI fragments of 16 x 8 */
    static constexpr int WGM = BM >= 32 ? 2 : 1, WGN = 8 / WGM;
    static constexpr int WTM = BM / WGM, WTN = BN / WGN, MI = WTM / 16, NI = WTN / 8;
    static constexpr int A_ELEMS = BM * BK, B_ELEMS = BN * BK;
    static constexpr int A_PER = (A_ELEMS + THREADS - 1) / THREADS, B_PER = B_ELEMS / THREADS;
    static constexpr size_t MAIN_SMEM = (size_t)2 * BK * (LDA + LDB) * sizeof(float);
    static constexpr size_t EPI_SMEM = (size_t)BM * LDC * sizeof(float);
    static constexpr size_t SMEM = MAIN_SMEM > EPI_SMEM ? MAIN_SMEM : EPI_SMEM;
    static_assert(BN == 128 || BN == 256, "a thread's B column is tid % BN, one per thread");
    static_assert(TX * TY == THREADS && TM * TY == BM && TM >= 1, "fp32 thread tile");
};

/* ------------------------------------------------------------ primitives ---- */

__device__ __forceinline__ float4 ld4(const float *p) {
#ifdef CG_CUDA_EMU
    /* a GPU faults on a misaligned 16-byte load; the emulator's four loads would not */
    if ((uintptr_t)p % 16) cg_emu::fail("ld4: a float4 load from an address that is not 16-byte aligned");
    return make_float4(p[0], p[1], p[2], p[3]);
#else
    return *reinterpret_cast<const float4 *>(p);
#endif
}

__device__ __forceinline__ float tf32_round(float x) {
#ifdef CG_CUDA_EMU
    return __uint_as_float(cg_emu::to_tf32(x));
#else
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
#endif
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
#ifdef CG_CUDA_EMU
    return cg_emu_bf16x2(lo, hi);
#else
    union {
        __nv_bfloat162 h;
        uint32_t u;
    } v;
    v.h = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    return v.u;
#endif
}

/* acc[mi][ni] += A_frag[mi] · B_frag[ni] for every pair, one warp-wide mma each. */
template <int MODE, int MI, int NI>
__device__ __forceinline__ void mma_tile(float (&acc)[MI][NI][4], const uint32_t (&af)[MI][4],
                                         const uint32_t (&bf)[NI][2]) {
#ifdef CG_CUDA_EMU
    if (MODE == MODE_TF32) cg_emu::mma_tile_tf32(&acc[0][0][0], &af[0][0], &bf[0][0], MI, NI);
    else cg_emu::mma_tile_bf16(&acc[0][0][0], &af[0][0], &bf[0][0], MI, NI);
#else
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int ni = 0; ni < NI; ni++) {
            if (MODE == MODE_TF32)
                asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                             "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                             : "+f"(acc[mi][ni][0]), "+f"(acc[mi][ni][1]), "+f"(acc[mi][ni][2]), "+f"(acc[mi][ni][3])
                             : "r"(af[mi][0]), "r"(af[mi][1]), "r"(af[mi][2]), "r"(af[mi][3]), "r"(bf[ni][0]),
                               "r"(bf[ni][1]));
            else
                asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                             "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                             : "+f"(acc[mi][ni][0]), "+f"(acc[mi][ni][1]), "+f"(acc[mi][ni][2]), "+f"(acc[mi][ni][3])
                             : "r"(af[mi][0]), "r"(af[mi][1]), "r"(af[mi][2]), "r"(af[mi][3]), "r"(bf[ni][0]),
                               "r"(bf[ni][1]));
        }
#endif
}

/* ---------------------------------------------------------------- kernel ---- */

template <class Op, int BM, int BN, int MODE>
__global__ void __launch_bounds__(256, 2) igemm_kernel(const Op op) {
    typedef Cfg<BM, BN, MODE> C;
    constexpr int BK = C::BK, LDA = C::LDA, LDB = C::LDB, LDC = C::LDC;
    static_assert(MODE == MODE_FP32 || (C::MI >= 1 && C::NI >= 1), "tile too small for tensor cores");
    CG_DYN_SMEM(float, smem);
    float *As = smem;                /* [2][BK][LDA] */
    float *Bs = smem + 2 * BK * LDA; /* [2][BK][LDB] */
    const int tid = threadIdx.x;
    const int m0 = blockIdx.y * BM, j0 = blockIdx.x * BN, jl = tid % BN;
    typename Op::Thread th;
    if (!op.begin(th, m0, j0, blockIdx.z, jl)) return; /* uniform over the block */
    const int64_t kb0 = th.k_begin, kend = th.k_end;
    const int nk = kend > kb0 ? (int)((kend - kb0 + BK - 1) / BK) : 0;
    const bool akf = op.a_kfast(), bjf = op.b_jfast();

    float ra[C::A_PER], rb[C::B_PER];
    auto load = [&](int64_t kb) {
#pragma unroll
        for (int i = 0; i < C::A_PER; i++) {
            int e = tid + i * C::THREADS;
            float v = 0.0f;
            if (e < C::A_ELEMS) {
                int m = akf ? e / BK : e % BM, k = akf ? e % BK : e / BM;
                if (kb + k < kend) v = op.a(th, (int64_t)m0 + m, kb + k);
            }
            ra[i] = v;
        }
#pragma unroll
        for (int i = 0; i < C::B_PER; i++) {
            int e = tid + i * C::THREADS;
            int j = bjf ? e % BN : e / BK, k = bjf ? e / BN : e % BK;
            rb[i] = kb + k < kend ? op.b(th, kb + k, j) : 0.0f;
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int i = 0; i < C::A_PER; i++) {
            int e = tid + i * C::THREADS;
            if (e < C::A_ELEMS) {
                int m = akf ? e / BK : e % BM, k = akf ? e % BK : e / BM;
                As[(buf * BK + k) * LDA + m] = MODE == MODE_TF32 ? tf32_round(ra[i]) : ra[i];
            }
        }
#pragma unroll
        for (int i = 0; i < C::B_PER; i++) {
            int e = tid + i * C::THREADS;
            int j = bjf ? e % BN : e / BK, k = bjf ? e / BN : e % BK;
            Bs[(buf * BK + k) * LDB + j] = MODE == MODE_TF32 ? tf32_round(rb[i]) : rb[i];
        }
    };

    /* the two accumulator layouts; only one is used per MODE */
    float acc[MODE == MODE_FP32 ? C::TM : 1][MODE == MODE_FP32 ? C::TN : 1];
    float macc[MODE == MODE_FP32 ? 1 : C::MI][MODE == MODE_FP32 ? 1 : C::NI][4];
    const int tx = tid % C::TX, ty = tid / C::TX;
    const int warp = tid / 32, lane = tid % 32, grp = lane / 4, tq = lane % 4;
    const int wm = warp / C::WGN, wn = warp % C::WGN;
    if (MODE == MODE_FP32) {
#pragma unroll
        for (int i = 0; i < C::TM; i++)
#pragma unroll
            for (int j = 0; j < C::TN; j++) acc[i][j] = 0.0f;
    } else {
#pragma unroll
        for (int i = 0; i < C::MI; i++)
#pragma unroll
            for (int j = 0; j < C::NI; j++)
#pragma unroll
                for (int q = 0; q < 4; q++) macc[i][j][q] = 0.0f;
    }

    load(kb0);
    store(0);
    __syncthreads();
    for (int t = 0; t < nk; t++) {
        const int cur = t & 1;
        if (t + 1 < nk) load(kb0 + (int64_t)(t + 1) * BK);
        const float *as = As + cur * BK * LDA, *bs = Bs + cur * BK * LDB;
        if constexpr (MODE == MODE_FP32) {
            /* not unrolled: unrolling hoists several steps' shared loads and spills the
             * accumulators of the 128-row tile; the loop overhead is 3 instructions per
             * TM·TN FMAs */
#pragma unroll 1
            for (int k = 0; k < BK; k++) {
                float a[C::TM], b[C::TN];
                const float *ap = as + k * LDA + ty * C::TM;
                if constexpr (C::TM % 4 == 0) {
#pragma unroll
                    for (int i = 0; i < C::TM; i += 4) {
                        float4 v = ld4(ap + i);
                        a[i] = v.x; a[i + 1] = v.y; a[i + 2] = v.z; a[i + 3] = v.w;
                    }
                } else {
#pragma unroll
                    for (int i = 0; i < C::TM; i++) a[i] = ap[i];
                }
#pragma unroll
                for (int j = 0; j < C::TN; j += 4) {
                    float4 v = ld4(bs + k * LDB + (j / 4) * (BN / 2) + tx * 4);
                    b[j] = v.x; b[j + 1] = v.y; b[j + 2] = v.z; b[j + 3] = v.w;
                }
#pragma unroll
                for (int i = 0; i < C::TM; i++)
#pragma unroll
                    for (int j = 0; j < C::TN; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
        } else if constexpr (MODE == MODE_TF32) {
#pragma unroll 1
            for (int kk = 0; kk < BK; kk += 8) {
                uint32_t af[C::MI][4], bf[C::NI][2];
#pragma unroll
                for (int mi = 0; mi < C::MI; mi++) {
                    const float *p = as + (kk + tq) * LDA + wm * C::WTM + mi * 16 + grp;
                    af[mi][0] = __float_as_uint(p[0]);
                    af[mi][1] = __float_as_uint(p[8]);
                    af[mi][2] = __float_as_uint(p[4 * LDA]);
                    af[mi][3] = __float_as_uint(p[4 * LDA + 8]);
                }
#pragma unroll
                for (int ni = 0; ni < C::NI; ni++) {
                    const float *p = bs + (kk + tq) * LDB + wn * C::WTN + ni * 8 + grp;
                    bf[ni][0] = __float_as_uint(p[0]);
                    bf[ni][1] = __float_as_uint(p[4 * LDB]);
                }
                mma_tile<MODE, C::MI, C::NI>(macc, af, bf);
            }
        } else {
            uint32_t af[C::MI][4], bf[C::NI][2];
#pragma unroll
            for (int mi = 0; mi < C::MI; mi++) {
                const float *p = as + (2 * tq) * LDA + wm * C::WTM + mi * 16 + grp;
                af[mi][0] = pack_bf16(p[0], p[LDA]);
                af[mi][1] = pack_bf16(p[8], p[LDA + 8]);
                af[mi][2] = pack_bf16(p[8 * LDA], p[9 * LDA]);
                af[mi][3] = pack_bf16(p[8 * LDA + 8], p[9 * LDA + 8]);
            }
#pragma unroll
            for (int ni = 0; ni < C::NI; ni++) {
                const float *p = bs + (2 * tq) * LDB + wn * C::WTN + ni * 8 + grp;
                bf[ni][0] = pack_bf16(p[0], p[LDB]);
                bf[ni][1] = pack_bf16(p[8 * LDB], p[9 * LDB]);
            }
            mma_tile<MODE, C::MI, C::NI>(macc, af, bf);
        }
        if (t + 1 < nk) store(cur ^ 1);
        __syncthreads();
    }

    /* stage the tile in shared memory (the K loop's buffers are free: it ended on a barrier) */
    float *Cs = smem;
    if constexpr (MODE == MODE_FP32) {
#pragma unroll
        for (int i = 0; i < C::TM; i++)
#pragma unroll
            for (int j = 0; j < C::TN; j++) Cs[(ty * C::TM + i) * LDC + (j / 4) * (BN / 2) + tx * 4 + j % 4] = acc[i][j];
    } else {
#pragma unroll
        for (int mi = 0; mi < C::MI; mi++)
#pragma unroll
            for (int ni = 0; ni < C::NI; ni++)
#pragma unroll
                for (int q = 0; q < 4; q++)
                    Cs[(wm * C::WTM + mi * 16 + grp + 8 * (q >> 1)) * LDC + wn * C::WTN + ni * 8 + 2 * tq + (q & 1)] =
                        macc[mi][ni][q];
    }
    __syncthreads();
    op.template epilogue<BM, BN>(th, Cs, LDC, m0, j0, tid);
}

/* --------------------------------------------------------------- launch ---- */

template <class Op, int BM, int BN, int MODE>
void igemm_launch_cfg(const Op &op, int64_t M, int64_t N, unsigned gz) {
    typedef Cfg<BM, BN, MODE> C;
    auto kern = igemm_kernel<Op, BM, BN, MODE>;
    allow_smem((const void *)kern, (int)C::SMEM);
    dim3 grid((unsigned)ceil_div(N, BN), (unsigned)ceil_div(M, BM), gz);
    CG_LAUNCH(kern, grid, C::THREADS, C::SMEM, op);
}

template <class Op, int BM, int BN> void igemm_launch_mode(const Op &op, int64_t M, int64_t N, unsigned gz, int mode) {
    if (BM < 16 || mode == MODE_FP32) igemm_launch_cfg<Op, BM, BN, MODE_FP32>(op, M, N, gz);
    else if (mode == MODE_TF32) igemm_launch_cfg<Op, BM, BN, (BM < 16 ? MODE_FP32 : MODE_TF32)>(op, M, N, gz);
    else igemm_launch_cfg<Op, BM, BN, (BM < 16 ? MODE_FP32 : MODE_BF16)>(op, M, N, gz);
}

/* The tile the launcher picks for M rows (ops size their split-K and workspaces with
 * it): the height follows M (a 4-row tile for M <= 4: the 1-channel layers); the width is
 * 128, or 256 for the short tiles (32 rows or fewer), whose threads then hold 4·8, 2·8,
 * 1·8, 1·4 accumulators instead of half that. */
static inline int igemm_tile_m(int64_t M) {
    return M > 64 ? 128 : M > 32 ? 64 : M > 16 ? 32 : M > 8 ? 16 : M > 4 ? 8 : 4;
}
static inline int igemm_tile_n(int64_t M) { return M > 32 ? 128 : 256; }
/* The width igemm_launch_narrow picks: 128 also for short tiles when N <= 128. */
static inline int igemm_tile_n_narrow(int64_t M, int64_t N) { return N <= 128 ? 128 : igemm_tile_n(M); }

/* Run op over an M x N product on gz grid layers (batch x splits), in the current math
 * mode. M and N must be >= 1, gz in 1..65535. */
template <class Op> void igemm_launch(const Op &op, int64_t M, int64_t N, unsigned gz) {
    CG_ASSERT(M >= 1 && N >= 1 && gz >= 1 && gz <= 65535 && ceil_div(M, igemm_tile_m(M)) <= 65535);
    int mode = (int)cg_get_math_mode();
    switch (igemm_tile_m(M)) {
    case 128: igemm_launch_mode<Op, 128, 128>(op, M, N, gz, mode); break;
    case 64: igemm_launch_mode<Op, 64, 128>(op, M, N, gz, mode); break;
    case 32: igemm_launch_mode<Op, 32, 256>(op, M, N, gz, mode); break;
    case 16: igemm_launch_mode<Op, 16, 256>(op, M, N, gz, mode); break;
    case 8: igemm_launch_mode<Op, 8, 256>(op, M, N, gz, mode); break;
    default: igemm_launch_mode<Op, 4, 256>(op, M, N, gz, mode); break;
    }
}

/* igemm_launch for products that may have few columns (the weight gradient of a conv with
 * 1 to 4 input channels: N = Ci·k³ = 27 or 64): 128-wide tiles then, which halves the idle
 * columns of the 256-wide ones. A separate entry so that only the ops that need these
 * extra kernels compile them. */
template <class Op> void igemm_launch_narrow(const Op &op, int64_t M, int64_t N, unsigned gz) {
    if (N > 128 || M > 32) {
        igemm_launch(op, M, N, gz);
        return;
    }
    CG_ASSERT(M >= 1 && N >= 1 && gz >= 1 && gz <= 65535);
    int mode = (int)cg_get_math_mode();
    switch (igemm_tile_m(M)) {
    case 32: igemm_launch_mode<Op, 32, 128>(op, M, N, gz, mode); break;
    case 16: igemm_launch_mode<Op, 16, 128>(op, M, N, gz, mode); break;
    default: igemm_launch_mode<Op, 8, 128>(op, M, N, gz, mode); break; /* M <= 8 */
    }
}

/* Split-K: how many K slices (each a multiple of 16 long) so that about two waves of
 * blocks fill the GPU; 1 when the tiles alone do. */
static inline int64_t igemm_splits(int64_t M, int64_t N, int64_t K, int64_t layers, int64_t max_splits, int bn = 0) {
    int64_t tiles = ceil_div(M, igemm_tile_m(M)) * ceil_div(N, bn ? bn : igemm_tile_n(M)) * layers;
    int64_t want = (int64_t)sm_count() * 2;
    if (tiles >= want || K <= 64) return 1;
    int64_t s = ceil_div(want, tiles), by_k = K / 64; /* >= 4 steps of BK per slice */
    if (s > by_k) s = by_k;
    if (s > max_splits) s = max_splits;
    return s < 1 ? 1 : s;
}

/* The K slice length for `splits` slices: a multiple of 16 (BK). */
static inline int64_t igemm_chunk(int64_t K, int64_t splits) { return ceil_div(ceil_div(K, splits), 16) * 16; }

/* Helper for epilogues: visit the tile's elements row by row, each thread its own column
 * (jl = tid % BN), so global stores are coalesced along rows. */
template <int BM, int BN, class F> __device__ __forceinline__ void tile_foreach(int tid, F f) {
#pragma unroll 4
    for (int e = tid; e < BM * BN; e += 256) f(e / BN, e % BN);
}

} /* namespace CG_CUDA_NS */

#endif
