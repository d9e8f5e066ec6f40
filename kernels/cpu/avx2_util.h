/*
 * kernels/cpu/avx2_util.h — small pieces every AVX2 kernel file shares: lane masks,
 * horizontal sums, a reusable scratch-buffer cache, and the deterministic split of a
 * reduction into fixed blocks.
 *
 * Included only by files compiled with -mavx2 -mfma (cg_avx2_src in meson.build).
 *
 * Determinism: every AVX2 kernel returns bit-identical results for the same inputs,
 * whatever the thread count and whichever thread finishes first. Work is split for the
 * pool (cg_parallel_for) only over disjoint outputs; a sum over many inputs is cut into
 * blocks whose boundaries depend on the sizes alone, and block results are added in
 * block order.
 */
#ifndef CG_KERNELS_CPU_AVX2_UTIL_H
#define CG_KERNELS_CPU_AVX2_UTIL_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* The mask with the first n (0..8) lanes set: maskload/maskstore of a row's tail. */
static inline __m256i cg_avx2_mask(int n) {
    static const int32_t tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(tab + 8 - n));
}

/* The leaky ReLU's selection: v where n > 0, else slope·v (NaN n: slope·v). With n = v the
 * activation leaky_relu(v); with n the pre-activation and v a gradient, its backward. */
static inline __m256 cg_avx2_leaky_by(__m256 n, __m256 v, __m256 slope) {
    return _mm256_blendv_ps(_mm256_mul_ps(v, slope), v, _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_GT_OQ));
}

/* Sum of the 8 lanes, in a fixed order. */
static inline float cg_avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sum of the 8 lanes in double, in a fixed order: for long reductions. */
static inline double cg_avx2_hsum_pd(__m256 v) {
    __m256d a = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* Scratch buffers (64-byte aligned, contents undefined) kept across calls so that a
 * training step's kernels do not map and fault in fresh pages every time. Thread-safe;
 * cg_avx2_scratch_put() hands a buffer back for reuse. */
void *cg_avx2_scratch_get(size_t bytes);
void cg_avx2_scratch_put(void *p);

#endif
