/*
 * kernels/cpu/ref.h — the plain C reference kernels.
 *
 * These are the oracle: straightforward loops, double-precision accumulators, no blocking,
 * no threads, no intrinsics. They are NEVER optimised; every faster kernel (AVX2, CUDA) is
 * tested against them (tests/test_backend_ops.c). Their signatures are the cg_backend
 * table's (core/backend.h), which documents the semantics.
 */
#ifndef CG_KERNELS_CPU_REF_H
#define CG_KERNELS_CPU_REF_H

#include "core/backend.h"

void cg_ref_fill(float *out, float value, int64_t n);
void cg_ref_rand_uniform(float *out, int64_t n, uint64_t seed, uint64_t counter, float lo, float hi);
void cg_ref_rand_normal(float *out, int64_t n, uint64_t seed, uint64_t counter, float mean, float std);

/* elementwise.c */
float cg_ref_unary1(cg_unary_op op, float x, float p0, float p1); /* one element */
void cg_ref_unary(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1);
void cg_ref_binary(cg_binary_op op, float *out, const float *a, const float *b, const cg_bcast_desc *d);
void cg_ref_copy_strided(float *dst, const float *src, const cg_strided_desc *d);

/* reduce.c */
void cg_ref_reduce_sum(float *out, const float *x, int ndim, const int64_t *shape, unsigned axes);

/* matmul.c */
void cg_ref_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB,
                 float beta, float *C, int64_t ldc, int64_t sC, int64_t batch);

/* conv3d.c */
void cg_ref_conv_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c);
void cg_ref_conv_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c);
void cg_ref_conv_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c);

/* layernorm.c */
void cg_ref_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int64_t rows, int64_t cols, float eps, int act, float slope);
void cg_ref_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                          const float *mean, const float *rstd, const float *gamma, const float *beta,
                          int64_t rows, int64_t cols, int act, float slope);

/* sort.c */
void cg_ref_sort_rows(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t cols, int descending);
void cg_ref_gather_rows(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols);
void cg_ref_scatter_rows(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols);

/* pointwise.c */
void cg_ref_pointwise_layer(const cg_pw_args *a);

/* optim.c */
void cg_ref_sgd_step(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                     float momentum, float dampening, float weight_decay, int nesterov, int first);
void cg_ref_adam_step(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n,
                      float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                      int64_t step);
void cg_ref_rmsprop_step(float *p, float *sq, float *buf, const float *g, const float *gscale, int64_t n,
                         float lr, float alpha, float eps, float weight_decay, float momentum);

#endif
