/*
 * core/rng.h — counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
 *
 * Philox is a pure function of a 128-bit counter and a 64-bit key, so any element of a
 * stream can be computed independently: that is what lets the CPU, the AVX2 threads and
 * the GPU produce the same numbers for the same seed.
 *
 * The stream. For a seed s and a starting counter c0, element i of a stream is word
 * (i % 4) of philox4x32_10(ctr = {lo(c0 + i/4), hi(c0 + i/4), 0, 0}, key = {lo(s), hi(s)}).
 * This is exactly what cuRAND's device API gives after
 * curand_init(s, 0, 4*c0, &state) followed by curand4()/curand() calls, and what
 * curand_Philox4x32_10(ctr, key) gives directly.
 *
 * Uniform floats follow cuRAND: u = x * 2^-32 + 2^-33, in (0, 1].
 * Normal floats follow cuRAND's Box–Muller on consecutive pairs (x0, x1):
 *   r = sqrt(-2 ln u(x0)), phi = 2π·x1·2^-32 + π·2^-32; n0 = r·sin(phi), n1 = r·cos(phi).
 * Integer streams are bit-identical across backends; normals agree to float rounding of
 * logf/sinf/cosf (the GPU uses its own fast intrinsics).
 *
 * cg_rng is the generator object: a seed and the next unused counter. Each fill of n
 * numbers advances the counter by ceil(n/4), so successive calls never overlap.
 */
#ifndef CG_RNG_H
#define CG_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t counter; /* next unused 128-bit block (low 64 bits; high bits stay 0) */
} cg_rng;

/* The raw Philox4x32-10 block function. */
void cg_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Element i (i >= 0) of the stream (seed, c0) as a 32-bit word. */
uint32_t cg_philox_word(uint64_t seed, uint64_t c0, uint64_t i);

/* Map words to floats the way cuRAND does. */
float cg_u32_to_uniform(uint32_t x);                                  /* (0, 1] */
void cg_box_muller(uint32_t x0, uint32_t x1, float *n0, float *n1);

/* Fill host arrays from the stream (seed, c0): the reference that other backends match. */
void cg_philox_fill_uniform(float *out, int64_t n, uint64_t seed, uint64_t c0, float lo, float hi);
void cg_philox_fill_normal(float *out, int64_t n, uint64_t seed, uint64_t c0, float mean, float std);

/* Generator helpers. cg_rng_take reserves ceil(n/4) counters and returns the first. */
cg_rng cg_rng_make(uint64_t seed);
uint64_t cg_rng_take(cg_rng *r, int64_t n);
/* Scalar draws for host code (simulator, shuffling): each consumes one counter block. */
double cg_rng_uniform(cg_rng *r);            /* [0, 1) with 53 random bits */
double cg_rng_normal(cg_rng *r);             /* N(0,1), double precision */
uint64_t cg_rng_below(cg_rng *r, uint64_t n); /* uniform integer in [0, n), n > 0 */

#endif
