/*
 * bench/layer_suite.h — the layer suite of issues 3 and 4, one table for every C program
 * that times it (bench/cpu_conv.c, bench/gpu_bench.c, kernels/cpu/dev/cputime.c;
 * bench/gpu_torch.py has the same rows in Python). fp32, input N × Ci × D × D × D.
 */
#ifndef CG_BENCH_LAYER_SUITE_H
#define CG_BENCH_LAYER_SUITE_H

#include "core/backend.h"

typedef struct {
    const char *name;
    int transposed;         /* conv_transpose3d: Ci→Co are the transposed conv's channels */
    int Ci, Co, k, s, p, D; /* D: the input's extent (of the transposed conv for convT) */
} cg_layer_case;

static const cg_layer_case CG_LAYER_SUITE[] = {
    {"enc_c1_k4s2_1to32_30", 0, 1, 32, 4, 2, 1, 30},
    {"c3_32to32_30", 0, 32, 32, 3, 1, 1, 30},
    {"c4s2_32to64_15", 0, 32, 64, 4, 2, 1, 15},
    {"c3_64to64_15", 0, 64, 64, 3, 1, 1, 15},
    {"ct4s2_64to32_15to30", 1, 64, 32, 4, 2, 1, 15},
    {"ct3_32to1_30", 1, 32, 1, 3, 1, 1, 30},
    {"pp_k1_2to128_30", 0, 2, 128, 1, 1, 0, 30},
    {"pp_k1_128to128_30", 0, 128, 128, 1, 1, 0, 30},
    {"gan3d_k5_8to8_25", 0, 8, 8, 5, 1, 2, 25},
};
#define CG_LAYER_SUITE_N ((int)(sizeof CG_LAYER_SUITE / sizeof CG_LAYER_SUITE[0]))

/* The convolution a case runs at batch N: the conv itself, or for a transposed conv Ci→Co
 * with input D the conv it transposes, Co→Ci with input (D - 1)·s - 2p + k and output D. */
static inline cg_conv_desc cg_layer_case_desc(const cg_layer_case *b, int64_t N) {
    cg_conv_desc c = {.N = N, .Ci = b->transposed ? b->Co : b->Ci, .Co = b->transposed ? b->Ci : b->Co};
    for (int d = 0; d < 3; d++) {
        c.k[d] = b->k;
        c.stride[d] = b->s;
        c.pad[d] = b->p;
        c.in[d] = b->transposed ? (b->D - 1) * b->s - 2 * b->p + b->k : b->D;
        c.out[d] = b->transposed ? b->D : (b->D + 2 * b->p - b->k) / b->s + 1;
    }
    return c;
}

#endif
