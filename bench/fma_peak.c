/*
 * bench/fma_peak.c — the machine's AVX2 FMA peak, measured: every pool thread runs chains
 * of independent 8-wide FMAs (12 chains, more than latency × throughput), so the total
 * rate is the FMA issue limit of the cores. Compiled with -mavx2 -mfma; call it only
 * after cg_cpu_has_avx2().
 */
#include <immintrin.h>
#include <time.h>

#include "calograd.h"
#include "core/threads.h"
#include "fma_peak.h"

#define ITERS 200000 /* per item: 12 · 16 · ITERS flops, about a millisecond */

static void fma_task(void *ctx, int64_t b, int64_t e, int worker) {
    float *sink = ctx;
    for (int64_t it = b; it < e; it++) {
        __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
        for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)(i + it));
        for (int k = 0; k < ITERS; k++)
            for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
        __m256 s = a[0];
        for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
        sink[worker] += _mm256_cvtss_f32(s);
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double bench_fma_peak_gflops(int reps) {
    static float sink[1024];
    int nt = cg_threads_get();
    int64_t items = 16 * (int64_t)nt;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cg_parallel_for(items, 1, fma_task, sink);
        double t = now_s() - t0;
        double g = (double)items * 12 * 16 * ITERS / t / 1e9;
        if (g > best) best = g;
    }
    return best;
}
