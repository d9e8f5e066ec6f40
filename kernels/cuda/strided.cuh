/*
 * kernels/cuda/strided.cuh — indexing of up to three operands that share a shape (rank <= 5)
 * but have their own strides: the output and inputs of broadcasting binary ops and strided
 * copies, and the transposes of the reductions.
 *
 * StridedHost simplifies the description on the host: axes of size 1 are dropped and an
 * axis is merged into the next inner one when every operand is contiguous across the two
 * (stride[i] == stride[i+1]·shape[i+1]; broadcast axes with stride 0 merge with each
 * other). A same-shape contiguous op becomes one axis, a per-channel bias add three. The
 * device side then turns a linear output index into the operands' offsets, with ND (the
 * simplified rank) a template parameter so the loop unrolls, in 32-bit arithmetic when
 * every offset fits (fits32()). Strides are never negative in calograd.
 */
#ifndef CG_KERNELS_CUDA_STRIDED_CUH
#define CG_KERNELS_CUDA_STRIDED_CUH

#include "kernels/cuda/common.cuh"

namespace CG_CUDA_NS {

template <class I> struct Strided {
    I shape[CG_MAX_DIMS];
    I st[3][CG_MAX_DIMS];

    /* Offsets of linear index o (< the product of the shape) in the three operands. */
    template <int ND> __device__ __forceinline__ void offsets(I o, I (&off)[3]) const {
        off[0] = off[1] = off[2] = 0;
#pragma unroll
        for (int d = ND - 1; d >= 0; d--) {
            I c = o;
            if (d > 0) {
                c = o % shape[d];
                o /= shape[d];
            }
            off[0] += c * st[0][d];
            off[1] += c * st[1][d];
            off[2] += c * st[2][d];
        }
    }
};

struct StridedHost {
    int nd;
    int64_t n;
    int64_t shape[CG_MAX_DIMS];
    int64_t st[3][CG_MAX_DIMS];

    StridedHost(int ndim, const int64_t *shp, int nops, const int64_t *const *strides) {
        n = 1;
        for (int i = 0; i < ndim; i++) n *= shp[i];
        nd = 0;
        /* walk from the innermost axis out, keeping non-trivial axes in reverse order */
        int64_t rs[CG_MAX_DIMS], rst[3][CG_MAX_DIMS];
        for (int i = ndim - 1; i >= 0; i--) {
            if (shp[i] == 1) continue;
            bool merge = nd > 0;
            for (int k = 0; merge && k < nops; k++) merge = strides[k][i] == rst[k][nd - 1] * rs[nd - 1];
            if (merge) {
                rs[nd - 1] *= shp[i];
                continue;
            }
            rs[nd] = shp[i];
            for (int k = 0; k < 3; k++) rst[k][nd] = k < nops ? strides[k][i] : 0;
            nd++;
        }
        if (nd == 0) { /* a single element */
            rs[0] = 1;
            for (int k = 0; k < 3; k++) rst[k][0] = 0;
            nd = 1;
        }
        for (int d = 0; d < nd; d++) { /* back to outer-to-inner order */
            shape[d] = rs[nd - 1 - d];
            for (int k = 0; k < 3; k++) st[k][d] = rst[k][nd - 1 - d];
        }
        for (int d = nd; d < CG_MAX_DIMS; d++) {
            shape[d] = 1;
            for (int k = 0; k < 3; k++) st[k][d] = 0;
        }
    }

    /* Every index and offset below 2^31, with room for a grid stride past the end. */
    bool fits32() const {
        const int64_t lim = ((int64_t)1 << 31) - ((int64_t)1 << 24);
        if (n >= lim) return false;
        for (int k = 0; k < 3; k++) {
            int64_t m = 0;
            for (int d = 0; d < nd; d++) m += (shape[d] - 1) * st[k][d];
            if (m >= lim) return false;
        }
        return true;
    }

    template <class I> Strided<I> get() const {
        Strided<I> s;
        for (int d = 0; d < CG_MAX_DIMS; d++) {
            s.shape[d] = (I)shape[d];
            for (int k = 0; k < 3; k++) s.st[k][d] = (I)st[k][d];
        }
        return s;
    }
};

} /* namespace CG_CUDA_NS */

#endif
