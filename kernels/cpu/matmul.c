/*
 * kernels/cpu/matmul.c — reference batched matrix product (row-major, see core/backend.h).
 * Reference kernel: never optimised; accumulates in double.
 */
#include "kernels/cpu/ref.h"

void cg_ref_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB,
                 float beta, float *C, int64_t ldc, int64_t sC, int64_t batch) {
    for (int64_t b = 0; b < batch; b++) {
        const float *a = A + b * sA, *bb = B + b * sB;
        float *c = C + b * sC;
        for (int64_t i = 0; i < M; i++) {
            for (int64_t j = 0; j < N; j++) {
                double acc = 0.0;
                for (int64_t k = 0; k < K; k++) {
                    float av = ta ? a[k * lda + i] : a[i * lda + k];
                    float bv = tb ? bb[j * ldb + k] : bb[k * ldb + j];
                    acc += (double)av * bv;
                }
                float r = alpha * (float)acc;
                c[i * ldc + j] = beta == 0.0f ? r : r + beta * c[i * ldc + j];
            }
        }
    }
}
