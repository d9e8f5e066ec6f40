/*
 * kernels/cuda/matmul.cu — batched matrix product, row-major, with transposes, leading
 * dimensions and batch strides (core/backend.h, gemm), on the igemm engine.
 *
 * C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]. The tile loads walk whichever index is
 * contiguous (k for A unless ta, j for B unless tb). When the tiles alone cannot fill the
 * GPU (a linear layer at batch 64: M = 64, K = 8001), K is split into slices whose partial
 * products go to a workspace; a second kernel adds them in slice order, then applies alpha
 * and beta: deterministic, and C is read only when beta != 0, as the reference.
 */
#include "kernels/cuda/igemm.cuh"
#include "kernels/cuda/kernels.cuh"

namespace CG_CUDA_NS {

namespace {

struct GemmOp {
    const float *A, *B;
    float *C;       /* the result, or NULL when splits > 1 */
    float *partial; /* (batch, splits, M, N) when splits > 1 */
    int64_t M, N, K, lda, ldb, ldc, sA, sB, sC, chunk;
    float alpha, beta;
    int ta, tb, splits;

    struct Thread {
        int64_t k_begin, k_end;
        const float *a, *b;
        int64_t layer, j0; /* layer = batch · splits + slice */
    };

    __device__ bool begin(Thread &th, int m0, int j0, int z, int jl) const {
        int64_t bz = z / splits, ks = z % splits;
        th.k_begin = ks * chunk;
        th.k_end = th.k_begin + chunk < K ? th.k_begin + chunk : K;
        th.a = A + bz * sA;
        th.b = B + bz * sB;
        th.layer = z;
        th.j0 = j0;
        return true;
    }
    __device__ bool a_kfast() const { return !ta; }
    __device__ bool b_jfast() const { return !tb; }
    __device__ float a(const Thread &th, int64_t m, int64_t k) const {
        if (m >= M) return 0.0f;
        return ta ? th.a[k * lda + m] : th.a[m * lda + k];
    }
    __device__ float b(const Thread &th, int64_t k, int jl) const {
        int64_t j = th.j0 + jl;
        if (j >= N) return 0.0f;
        return tb ? th.b[j * ldb + k] : th.b[k * ldb + j];
    }
    template <int BM, int BN>
    __device__ void epilogue(const Thread &th, const float *Cs, int ldc_s, int m0, int j0, int tid) const {
        tile_foreach<BM, BN>(tid, [&](int mi, int ji) {
            int64_t m = m0 + mi, j = j0 + ji;
            if (m >= M || j >= N) return;
            float v = Cs[mi * ldc_s + ji];
            if (splits > 1) {
                partial[(th.layer * M + m) * N + j] = v;
            } else {
                float *c = C + th.layer * sC + m * ldc + j;
                float r = alpha * v;
                *c = beta == 0.0f ? r : r + beta * *c;
            }
        });
    }
};

/* C[b][m][j] = alpha · Σ_s partial[b][s][m][j] + beta · C (C read only when beta != 0). */
__global__ void gemm_splitk_sum_kernel(float *C, const float *partial, int64_t M, int64_t N, int64_t ldc,
                                       int64_t sC, int64_t batch, int splits, float alpha, float beta) {
    int64_t n = batch * M * N;
    for (int64_t i = gtid(); i < n; i += gstride()) {
        int64_t b = i / (M * N), r = i % (M * N), m = r / N, j = r % N;
        double s = 0.0;
        for (int k = 0; k < splits; k++) s += partial[((b * splits + k) * M + m) * N + j];
        float *c = C + b * sC + m * ldc + j;
        float v = alpha * (float)s;
        *c = beta == 0.0f ? v : v + beta * *c;
    }
}

__global__ void gemm_scale_kernel(float *C, int64_t M, int64_t N, int64_t ldc, int64_t sC, int64_t batch, float beta) {
    int64_t n = batch * M * N;
    for (int64_t i = gtid(); i < n; i += gstride()) {
        int64_t b = i / (M * N), r = i % (M * N);
        float *c = C + b * sC + (r / N) * ldc + r % N;
        *c = beta == 0.0f ? 0.0f : beta * *c;
    }
}

} /* namespace */

void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int64_t sA,
          const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC, int64_t batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) { /* empty sum: C = beta · C */
        CG_LAUNCH(gemm_scale_kernel, grid_for(batch * M * N), kThreads, 0, C, M, N, ldc, sC, batch, beta);
        return;
    }
    GemmOp op = {};
    op.A = A; op.B = B; op.C = C;
    op.M = M; op.N = N; op.K = K;
    op.lda = lda; op.ldb = ldb; op.ldc = ldc;
    op.sA = sA; op.sB = sB; op.sC = sC;
    op.alpha = alpha; op.beta = beta;
    op.ta = ta; op.tb = tb;
    /* batches go on grid z (<= 65535 layers per launch, split-K slices included) */
    const int64_t max_layers = 65535;
    for (int64_t b0 = 0; b0 < batch; b0 += max_layers) {
        int64_t nb = batch - b0 < max_layers ? batch - b0 : max_layers;
        int64_t splits = igemm_splits(M, N, K, nb, max_layers / nb);
        op.A = A + b0 * sA;
        op.B = B + b0 * sB;
        op.C = C + b0 * sC;
        op.splits = (int)splits;
        op.chunk = igemm_chunk(K, splits);
        op.partial = splits > 1 ? (float *)ws_alloc((size_t)(nb * splits * M * N) * sizeof(float)) : nullptr;
        igemm_launch(op, M, N, (unsigned)(nb * splits));
        if (splits > 1) {
            CG_LAUNCH(gemm_splitk_sum_kernel, grid_for(nb * M * N), kThreads, 0, op.C, op.partial, M, N, ldc, sC, nb,
                      (int)splits, alpha, beta);
            ws_free(op.partial);
        }
    }
}

} /* namespace CG_CUDA_NS */
