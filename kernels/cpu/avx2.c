/*
 * kernels/cpu/avx2.c — cpuid check and the list of AVX2 kernels that replace reference ones.
 * This file is compiled without -mavx2 so that the check itself runs on any x86-64.
 */
#include "kernels/cpu/avx2.h"

int cg_cpu_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

void cg_avx2_install(cg_backend *table) {
#if defined(__x86_64__) /* kernels/cpu/meson.build builds the AVX2 files on x86-64 only */
    table->fill = cg_avx2_fill;
    table->unary = cg_avx2_unary;
    table->binary = cg_avx2_binary;
    table->copy_strided = cg_avx2_copy_strided;
    table->reduce_sum = cg_avx2_reduce_sum;
    table->gemm = cg_avx2_gemm;
    table->conv_fwd = cg_avx2_conv_fwd;
    table->conv_bwd_data = cg_avx2_conv_bwd_data;
    table->conv_bwd_weight = cg_avx2_conv_bwd_weight;
    table->layernorm_fwd = cg_avx2_layernorm_fwd;
    table->layernorm_bwd = cg_avx2_layernorm_bwd;
    table->pointwise_layer = cg_avx2_pointwise_layer;
    table->sgd_step = cg_avx2_sgd_step;
    table->adam_step = cg_avx2_adam_step;
    table->rmsprop_step = cg_avx2_rmsprop_step;
    /* Left on the reference: the Philox fills (the numbers must not change), sort, gather
     * and scatter (the permutation must not change; they are not on a step's hot path). */
#else
    (void)table;
#endif
}
