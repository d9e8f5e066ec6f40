/*
 * kernels/cpu/avx2.h — the AVX2+FMA kernels' entry points.
 *
 * cg_cpu_has_avx2() asks cpuid (through the compiler's __builtin_cpu_supports, which also
 * checks that the OS saves YMM state). cg_avx2_install() replaces entries of a copy of the
 * reference table with the AVX2 kernels; entries it leaves alone keep the reference kernel.
 * Files with AVX2 code are compiled with -mavx2 -mfma and are only ever called through
 * the table after the cpuid check, so the library still runs on older processors.
 *
 * The kernels below have the signatures (and semantics) of the cg_backend entries of the
 * same name (core/backend.h); each file's header says how it is blocked and threaded.
 */
#ifndef CG_KERNELS_CPU_AVX2_H
#define CG_KERNELS_CPU_AVX2_H

#include "core/backend.h"

int cg_cpu_has_avx2(void);
void cg_avx2_install(cg_backend *table);

/* avx2_elementwise.c */
void cg_avx2_fill(float *out, float value, int64_t n);
void cg_avx2_unary(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1);
void cg_avx2_binary(cg_binary_op op, float *out, const float *a, const float *b, const cg_bcast_desc *d);
void cg_avx2_copy_strided(float *dst, const float *src, const cg_strided_desc *d);

/* avx2_reduce.c */
void cg_avx2_reduce_sum(float *out, const float *x, int ndim, const int64_t *shape, unsigned axes);

/* avx2_layernorm.c */
void cg_avx2_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                           const float *beta, int64_t rows, int64_t cols, float eps, int act, float slope);
void cg_avx2_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *gamma, const float *beta,
                           int64_t rows, int64_t cols, int act, float slope);

/* avx2_optim.c */
void cg_avx2_sgd_step(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr, float momentum,
                      float dampening, float weight_decay, int nesterov, int first);
void cg_avx2_adam_step(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, int decoupled, int64_t step);
void cg_avx2_rmsprop_step(float *p, float *sq, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                          float alpha, float eps, float weight_decay, float momentum);

/* avx2_conv3d.c */
void cg_avx2_conv_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c);
void cg_avx2_conv_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c);
void cg_avx2_conv_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c);

/* avx2_conv1x1.c: kernel-size-1 convolutions with many channels as packed GEMMs;
 * avx2_conv3d.c's entries call these when cg_avx2_conv1x1_takes() says so. */
int cg_avx2_conv1x1_takes(const cg_conv_desc *c);
void cg_avx2_conv1x1_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c);
void cg_avx2_conv1x1_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c);
void cg_avx2_conv1x1_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c);

/* avx2_gemm.c */
void cg_avx2_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                  int64_t batch);

/* avx2_pointwise.c */
void cg_avx2_pointwise_layer(const cg_pw_args *a);

/* avx2_conv_thin.c: backward-data into few input channels; 0 when the shape is not its */
int cg_avx2_thin_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c);
/* avx2_conv_cl.c: stride-1 convolutions with the output channels in the lanes; 0 when the
 * shape is not theirs */
int cg_avx2_conv_cl_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c);
int cg_avx2_conv_cl_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c);

#endif
