/*
 * kernels/cuda/kernels.cuh — the CUDA backend's kernel entry points, one per entry of the
 * table in core/backend.h (whose comments define what each computes), grouped by file.
 * runtime.cu assembles them into the table. All run asynchronously on the calling thread's
 * stream (common.cuh: cur_stream()).
 */
#ifndef CG_KERNELS_CUDA_KERNELS_CUH
#define CG_KERNELS_CUDA_KERNELS_CUH

#include "kernels/cuda/common.cuh"

namespace CG_CUDA_NS {

/* random.cu */
void fill(float *out, float value, int64_t n);
void rand_uniform(float *out, int64_t n, uint64_t seed, uint64_t counter, float lo, float hi);
void rand_normal(float *out, int64_t n, uint64_t seed, uint64_t counter, float mean, float std);

/* elementwise.cu */
void unary(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1);
void binary(cg_binary_op op, float *out, const float *a, const float *b, const cg_bcast_desc *d);
void copy_strided(float *dst, const float *src, const cg_strided_desc *d);

/* reduce.cu */
void reduce_sum(float *out, const float *x, int ndim, const int64_t *shape, unsigned axes);

/* matmul.cu */
void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
          int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
          int64_t batch);

/* conv3d.cu */
void conv_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c);
void conv_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c);
void conv_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c);

/* layernorm.cu */
void layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *gamma, const float *beta,
                   int64_t rows, int64_t cols, float eps, int act, float slope);
void layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *mean,
                   const float *rstd, const float *gamma, const float *beta, int64_t rows, int64_t cols, int act,
                   float slope);

/* sort.cu */
void sort_rows(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t cols, int descending);
void gather_rows(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols);
void scatter_rows(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols);

/* pointwise.cu */
void pointwise_layer(const cg_pw_args *a);

/* optim.cu */
void sgd_step(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr, float momentum,
              float dampening, float weight_decay, int nesterov, int first);
void adam_step(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n, float lr, float beta1,
               float beta2, float eps, float weight_decay, int decoupled, int64_t step);
void rmsprop_step(float *p, float *sq, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                  float alpha, float eps, float weight_decay, float momentum);

} /* namespace CG_CUDA_NS */

#endif
