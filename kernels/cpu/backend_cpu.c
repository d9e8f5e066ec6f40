/*
 * kernels/cpu/backend_cpu.c — the CPU's kernel tables and the run-time dispatch point.
 *
 *  cpu-ref   the reference kernels of this folder: the oracle.
 *  cpu-avx2  a copy of cpu-ref whose entries the AVX2+FMA kernels replace; it exists only
 *            when cpuid reports AVX2 and FMA (and the OS saves YMM state).
 *  cpu       the table cg_backend_get(CG_CPU) returns: cpu-avx2 when present, unless the
 *            environment says CG_KERNELS=ref, else cpu-ref. One binary runs everywhere.
 */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "core/rng.h"
#include "kernels/cpu/ref.h"
#include "kernels/cpu/avx2.h"

/* ------------------------------------------------------------- memory ---- */

static void *cpu_alloc(size_t bytes) {
    /* 64-byte alignment suits AVX2 loads and cache lines. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}
static void cpu_free(void *p) { free(p); }
static void cpu_memcpy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}
static void cpu_sync(void) {}

void cg_ref_fill(float *out, float value, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = value;
}
void cg_ref_rand_uniform(float *out, int64_t n, uint64_t seed, uint64_t counter, float lo, float hi) {
    cg_philox_fill_uniform(out, n, seed, counter, lo, hi);
}
void cg_ref_rand_normal(float *out, int64_t n, uint64_t seed, uint64_t counter, float mean, float std) {
    cg_philox_fill_normal(out, n, seed, counter, mean, std);
}

/* -------------------------------------------------------------- tables ---- */

static const cg_backend REF = {
    .name = "cpu-ref",
    .device = CG_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .sync = cpu_sync,
    .fill = cg_ref_fill,
    .rand_uniform = cg_ref_rand_uniform,
    .rand_normal = cg_ref_rand_normal,
    .unary = cg_ref_unary,
    .binary = cg_ref_binary,
    .copy_strided = cg_ref_copy_strided,
    .reduce_sum = cg_ref_reduce_sum,
    .gemm = cg_ref_gemm,
    .conv_fwd = cg_ref_conv_fwd,
    .conv_bwd_data = cg_ref_conv_bwd_data,
    .conv_bwd_weight = cg_ref_conv_bwd_weight,
    .layernorm_fwd = cg_ref_layernorm_fwd,
    .layernorm_bwd = cg_ref_layernorm_bwd,
    .sort_rows = cg_ref_sort_rows,
    .gather_rows = cg_ref_gather_rows,
    .scatter_rows = cg_ref_scatter_rows,
    .pointwise_layer = cg_ref_pointwise_layer,
    .sgd_step = cg_ref_sgd_step,
    .adam_step = cg_ref_adam_step,
    .rmsprop_step = cg_ref_rmsprop_step,
};

static cg_backend g_avx2;
static const cg_backend *g_avx2_ptr, *g_dispatch;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
    if (cg_cpu_has_avx2()) {
        g_avx2 = REF;
        g_avx2.name = "cpu-avx2";
        cg_avx2_install(&g_avx2);
        g_avx2_ptr = &g_avx2;
    }
    const char *env = getenv("CG_KERNELS");
    int force_ref = env && strcmp(env, "ref") == 0;
    g_dispatch = (g_avx2_ptr && !force_ref) ? g_avx2_ptr : &REF;
}

const cg_backend *cg_cpu_ref_backend(void) { return &REF; }

const cg_backend *cg_cpu_avx2_backend(void) {
    pthread_once(&g_once, init_tables);
    return g_avx2_ptr;
}

const cg_backend *cg_cpu_dispatch_backend(void) {
    pthread_once(&g_once, init_tables);
    return g_dispatch;
}
