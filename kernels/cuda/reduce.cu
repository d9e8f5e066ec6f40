/*
 * kernels/cuda/reduce.cu — sum over a set of axes of a contiguous tensor.
 *
 * The axes are first simplified: size-1 axes dropped, neighbours with the same role
 * merged. Almost every reduction in calograd then has the form x (A, C, L) -> out (C):
 * sum over an outer reduced axis A and an inner reduced axis L, keeping the middle C
 * (a bias gradient: (N, C, D·H·W) -> (C); a loss: (1, 1, n); a row sum: (1, rows, cols);
 * broadcasting backward: (B, C, 1)). Two kernels serve it:
 *  - long inner runs (L >= 32): blocks own (c, a slice of the A·L elements), threads run
 *    along l (coalesced), a block tree sums them;
 *  - short inner runs: threads own one c each (consecutive c are consecutive addresses)
 *    and loop over a slice of a and all l.
 * Both split the reduction into a fixed number of slices decided by the sizes alone and
 * write one partial per slice; a last pass adds the partials in slice order. Everything
 * accumulates in double, as the reference: sums of many terms that cancel (a loss, a
 * bias gradient) lose too much in fp32, and the loads, not the adds, set the speed.
 * So the result is deterministic and independent of the GPU's scheduling.
 * Anything else (two or more kept groups, e.g. (C1, R, C2, R)) is first transposed to
 * (kept..., reduced...) with a strided copy into a workspace, which makes it (1, C, L).
 */
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/strided.cuh"

namespace CG_CUDA_NS {

namespace {

/* partial[c·S + s] = Σ over q in slice s of x[(q / L)·C·L + c·L + q % L], q < A·L. */
__global__ void reduce_inner_kernel(double *partial, const float *x, int64_t A, int64_t C, int64_t L, int64_t S,
                                    int64_t chunk) {
    __shared__ double red[32];
    int64_t c = blockIdx.x, s = blockIdx.y;
    int64_t q0 = s * chunk, q1 = q0 + chunk < A * L ? q0 + chunk : A * L;
    double acc = 0.0;
    for (int64_t a = q0 / L; a * L < q1; a++) {
        int64_t lo = a * L > q0 ? 0 : q0 - a * L, hi = (a + 1) * L < q1 ? L : q1 - a * L;
        const float *row = x + (a * C + c) * L;
        for (int64_t l = lo + threadIdx.x; l < hi; l += blockDim.x) acc += row[l];
    }
    acc = block_sum_d(acc, red);
    if (threadIdx.x == 0) partial[c * S + s] = acc;
}

/* partial[c·S + s] = Σ over a in slice s, all l, of x[(a·C + c)·L + l]. */
__global__ void reduce_outer_kernel(double *partial, const float *x, int64_t A, int64_t C, int64_t L, int64_t S,
                                    int64_t chunk) {
    int64_t c = gtid(), s = blockIdx.y;
    if (c >= C) return;
    int64_t a0 = s * chunk, a1 = a0 + chunk < A ? a0 + chunk : A;
    double acc = 0.0;
    for (int64_t a = a0; a < a1; a++) {
        const float *p = x + (a * C + c) * L;
        for (int64_t l = 0; l < L; l++) acc += p[l];
    }
    partial[c * S + s] = acc;
}

__global__ void sum_partials_kernel(float *out, const double *partial, int64_t C, int64_t S) {
    for (int64_t c = gtid(); c < C; c += gstride()) {
        double acc = 0.0;
        for (int64_t s = 0; s < S; s++) acc += partial[c * S + s];
        out[c] = (float)acc;
    }
}

/* Sum x viewed as (A, C, L) over A and L into out (C). */
void reduce_acl(float *out, const float *x, int64_t A, int64_t C, int64_t L) {
    int64_t R = A * L;
    /* aim at >= 4 blocks' worth of work per multiprocessor, slices of >= 16K elements */
    int64_t want = (int64_t)sm_count() * 4;
    if (L >= 32) {
        int64_t S = C >= want ? 1 : ceil_div(want, C);
        int64_t max_s = ceil_div(R, 16384);
        if (S > max_s) S = max_s;
        if (S > 65535) S = 65535;
        if (S < 1) S = 1;
        int64_t chunk = ceil_div(R, S);
        S = ceil_div(R, chunk);
        double *partial = (double *)ws_alloc((size_t)(C * S) * sizeof(double));
        CG_LAUNCH(reduce_inner_kernel, dim3((unsigned)C, (unsigned)S), kThreads, 0, partial, x, A, C, L, S, chunk);
        CG_LAUNCH(sum_partials_kernel, grid_for(C), kThreads, 0, out, partial, C, S);
        ws_free(partial);
    } else {
        int64_t cblocks = ceil_div(C, kThreads);
        int64_t S = cblocks >= want ? 1 : ceil_div(want, cblocks);
        int64_t max_s = ceil_div(A * L, 4096);
        if (S > max_s) S = max_s;
        if (S > A) S = A;
        if (S > 65535) S = 65535;
        if (S < 1) S = 1;
        int64_t chunk = ceil_div(A, S);
        S = ceil_div(A, chunk);
        double *partial = (double *)ws_alloc((size_t)(C * S) * sizeof(double));
        CG_LAUNCH(reduce_outer_kernel, dim3((unsigned)cblocks, (unsigned)S), kThreads, 0, partial, x, A, C, L, S,
                  chunk);
        CG_LAUNCH(sum_partials_kernel, grid_for(C), kThreads, 0, out, partial, C, S);
        ws_free(partial);
    }
}

} /* namespace */

void reduce_sum(float *out, const float *x, int ndim, const int64_t *shape, unsigned axes) {
    int64_t n_in = 1, n_out = 1;
    for (int i = 0; i < ndim; i++) {
        n_in *= shape[i];
        if (!((axes >> i) & 1u)) n_out *= shape[i];
    }
    if (n_out == 0) return;
    if (n_in == 0) { /* sums over empty axes */
        fill(out, 0.0f, n_out);
        return;
    }
    /* groups of consecutive axes with the same role, size-1 axes dropped */
    int ng = 0, red[CG_MAX_DIMS];
    int64_t len[CG_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1) continue;
        int r = (axes >> i) & 1u;
        if (ng > 0 && red[ng - 1] == r) {
            len[ng - 1] *= shape[i];
        } else {
            red[ng] = r;
            len[ng] = shape[i];
            ng++;
        }
    }
    int kept = 0;
    for (int g = 0; g < ng; g++) kept += !red[g];
    if (kept == ng) { /* nothing to sum: a copy */
        copy_bytes(out, x, (size_t)n_in * sizeof(float));
        return;
    }
    if (kept <= 1) {
        int64_t A = 1, C = 1, L = 1;
        int g = 0;
        if (g < ng && red[g]) A = len[g++];
        if (g < ng && !red[g]) C = len[g++];
        if (g < ng && red[g]) L = len[g++];
        CG_ASSERT(g == ng);
        reduce_acl(out, x, A, C, L);
        return;
    }
    /* general case: transpose to (kept..., reduced...), then one (1, n_out, n_red) sum */
    int64_t gst[CG_MAX_DIMS], s = 1;
    for (int g = ng - 1; g >= 0; g--) {
        gst[g] = s;
        s *= len[g];
    }
    int64_t tshape[CG_MAX_DIMS], tsrc[CG_MAX_DIMS], tdst[CG_MAX_DIMS];
    int nt = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int g = 0; g < ng; g++)
            if (red[g] == pass) {
                tshape[nt] = len[g];
                tsrc[nt] = gst[g];
                nt++;
            }
    s = 1;
    for (int t = nt - 1; t >= 0; t--) {
        tdst[t] = s;
        s *= tshape[t];
    }
    float *tmp = (float *)ws_alloc((size_t)n_in * sizeof(float));
    cg_strided_desc d = {};
    d.ndim = nt;
    for (int t = 0; t < nt; t++) {
        d.shape[t] = tshape[t];
        d.sdst[t] = tdst[t];
        d.ssrc[t] = tsrc[t];
    }
    copy_strided(tmp, x, &d);
    reduce_acl(out, tmp, 1, n_out, n_in / n_out);
    ws_free(tmp);
}

} /* namespace CG_CUDA_NS */
