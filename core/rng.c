/* core/rng.c — Philox4x32-10 and the cuRAND-compatible float mappings (see rng.h). */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void cg_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += PHILOX_W0; /* the key schedule bumps the key after every round */
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block(uint64_t seed, uint64_t c, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    cg_philox4x32_10(ctr, key, out);
}

uint32_t cg_philox_word(uint64_t seed, uint64_t c0, uint64_t i) {
    uint32_t out[4];
    block(seed, c0 + i / 4, out);
    return out[i % 4];
}

float cg_u32_to_uniform(uint32_t x) {
    const float inv = 2.3283064e-10f; /* 2^-32, cuRAND's CURAND_2POW32_INV */
    return (float)x * inv + inv / 2.0f;
}

void cg_box_muller(uint32_t x0, uint32_t x1, float *n0, float *n1) {
    const float inv = 2.3283064e-10f;
    const float inv_2pi = 2.3283064e-10f * 6.2831855f; /* CURAND_2POW32_INV_2PI */
    float u = (float)x0 * inv + inv / 2.0f;
    float v = (float)x1 * inv_2pi + inv_2pi / 2.0f;
    float s = sqrtf(-2.0f * logf(u));
    *n0 = sinf(v) * s;
    *n1 = cosf(v) * s;
}

void cg_philox_fill_uniform(float *out, int64_t n, uint64_t seed, uint64_t c0, float lo, float hi) {
    uint32_t w[4];
    for (int64_t i = 0; i < n; i += 4) {
        block(seed, c0 + (uint64_t)i / 4, w);
        for (int j = 0; j < 4 && i + j < n; j++) out[i + j] = lo + (hi - lo) * cg_u32_to_uniform(w[j]);
    }
}

void cg_philox_fill_normal(float *out, int64_t n, uint64_t seed, uint64_t c0, float mean, float std) {
    uint32_t w[4];
    float z[4];
    for (int64_t i = 0; i < n; i += 4) {
        block(seed, c0 + (uint64_t)i / 4, w);
        cg_box_muller(w[0], w[1], &z[0], &z[1]);
        cg_box_muller(w[2], w[3], &z[2], &z[3]);
        for (int j = 0; j < 4 && i + j < n; j++) out[i + j] = mean + std * z[j];
    }
}

cg_rng cg_rng_make(uint64_t seed) {
    cg_rng r = {seed, 0};
    return r;
}

uint64_t cg_rng_take(cg_rng *r, int64_t n) {
    uint64_t c = r->counter;
    r->counter += (uint64_t)((n + 3) / 4);
    return c;
}

double cg_rng_uniform(cg_rng *r) {
    uint32_t w[4];
    block(r->seed, r->counter++, w);
    uint64_t bits = ((uint64_t)w[0] << 21) ^ (uint64_t)(w[1] >> 11); /* 53 bits */
    return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double cg_rng_normal(cg_rng *r) {
    uint32_t w[4];
    block(r->seed, r->counter++, w);
    /* Box–Muller in double precision on two 53-bit uniforms; u1 in (0, 1]. */
    uint64_t a = (((uint64_t)w[0] << 21) ^ (w[1] >> 11)) & ((1ull << 53) - 1);
    uint64_t b = (((uint64_t)w[2] << 21) ^ (w[3] >> 11)) & ((1ull << 53) - 1);
    double u1 = ((double)a + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)b * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t cg_rng_below(cg_rng *r, uint64_t n) {
    /* A 53-bit uniform scaled to [0, n): bias below n / 2^53, negligible for shuffles. */
    uint64_t k = (uint64_t)(cg_rng_uniform(r) * (double)n);
    return k < n ? k : n - 1;
}
