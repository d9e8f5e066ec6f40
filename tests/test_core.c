/*
 * tests/test_core.c — core/: Philox4x32-10 against Random123's known-answer vectors and
 * cuRAND's stream layout, the uniform and normal samplers' moments, tensor creation errors,
 * views and reference counts, and the thread pool (coverage, nesting, concurrent callers).
 */
#include <pthread.h>

#include "test.h"

static void test_philox_known_answers(void) {
    /* Random123's kat_vectors for philox4x32_10: counter, key -> output */
    const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        cg_philox4x32_10(kat[i], kat[i] + 4, out);
        for (int j = 0; j < 4; j++) CHECK_MSG(out[j] == kat[i][6 + j], "vector %d word %d: %08x", i, j, out[j]);
    }
}

static void test_philox_stream_layout(void) {
    /* element i of stream (seed, c0) is word i%4 of block c0 + i/4: as cuRAND's
     * curand_init(seed, 0, 4*c0) followed by curand() calls */
    uint64_t seed = 0x0123456789abcdefull, c0 = 77;
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (uint64_t i = 0; i < 40; i++) {
        uint64_t c = c0 + i / 4;
        uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0}, out[4];
        cg_philox4x32_10(ctr, key, out);
        CHECK(cg_philox_word(seed, c0, i) == out[i % 4]);
    }
    /* the float fills follow the same stream: uniform u = x·2^-32 + 2^-33 in (0, 1] */
    float u[9];
    cg_philox_fill_uniform(u, 9, seed, c0, 0.0f, 1.0f);
    for (int i = 0; i < 9; i++) CHECK(u[i] == cg_u32_to_uniform(cg_philox_word(seed, c0, (uint64_t)i)));
    CHECK(cg_u32_to_uniform(0) > 0 && cg_u32_to_uniform(0xffffffffu) <= 1.0f);
    /* normals: Box–Muller on consecutive pairs */
    float n[4], a, b;
    cg_philox_fill_normal(n, 4, seed, c0, 0.0f, 1.0f);
    cg_box_muller(cg_philox_word(seed, c0, 0), cg_philox_word(seed, c0, 1), &a, &b);
    CHECK(n[0] == a && n[1] == b);
    /* a generator never hands out the same counters twice */
    cg_rng r = cg_rng_make(seed);
    uint64_t first = cg_rng_take(&r, 5), second = cg_rng_take(&r, 1);
    CHECK(first == 0 && second == 2);
}

static void test_sampler_moments(void) {
    const int64_t n = 400000;
    float *x = malloc((size_t)n * sizeof(float));
    cg_philox_fill_uniform(x, n, test_seed(), 0, -1.0f, 3.0f);
    double s = 0, s2 = 0, lo = 1e9, hi = -1e9;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
    }
    double m = s / n, v = s2 / n - m * m;
    /* uniform on [-1, 3]: mean 1, variance 16/12; 5 sigma of the estimates */
    CHECK_NEAR(m, 1.0, 5 * sqrt(16.0 / 12 / n));
    CHECK_NEAR(v, 16.0 / 12, 5 * 16.0 / 12 * sqrt(0.8 / n));
    CHECK(lo >= -1.0f && hi <= 3.0f);
    cg_philox_fill_normal(x, n, test_seed(), 12345, 2.0f, 0.5f);
    double k4 = 0;
    s = s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    m = s / n;
    v = s2 / n - m * m;
    for (int64_t i = 0; i < n; i++) k4 += pow((x[i] - m) / sqrt(v), 4);
    CHECK_NEAR(m, 2.0, 5 * 0.5 / sqrt(n));
    CHECK_NEAR(v, 0.25, 5 * 0.25 * sqrt(2.0 / n));
    CHECK_NEAR(k4 / n, 3.0, 5 * sqrt(96.0 / n)); /* kurtosis of a Gaussian */
    /* the double-precision scalar draws */
    cg_rng r = cg_rng_make(test_seed());
    s = s2 = 0;
    for (int i = 0; i < 100000; i++) {
        double z = cg_rng_normal(&r);
        s += z;
        s2 += z * z;
        double u = cg_rng_uniform(&r);
        CHECK(u >= 0 && u < 1);
        CHECK(cg_rng_below(&r, 7) < 7);
    }
    CHECK_NEAR(s / 1e5, 0.0, 5 / sqrt(1e5));
    CHECK_NEAR(s2 / 1e5, 1.0, 5 * sqrt(2 / 1e5));
    free(x);
}

static void test_tensor_errors_and_views(void) {
    CHECK(cg_tensor_new(CG_CPU, 6, (int64_t[]){1, 1, 1, 1, 1, 1}) == NULL && strstr(cg_last_error(), "rank"));
    CHECK(cg_tensor_new(CG_CPU, CG_SHAPE(2, -3)) == NULL && strstr(cg_last_error(), "negative"));
    CHECK(cg_tensor_new(CG_CPU, CG_SHAPE(INT64_MAX / 2, 8)) == NULL && strstr(cg_last_error(), "too large"));
    if (!cg_device_available(CG_CUDA))
        CHECK(cg_tensor_new(CG_CUDA, CG_SHAPE(2)) == NULL && strstr(cg_last_error(), "not available"));
    /* an empty tensor is fine */
    cg_tensor *e = cg_tensor_zeros(CG_CPU, CG_SHAPE(0, 3));
    CHECK(e && cg_numel(e) == 0);
    cg_tensor_free(e);
    /* views share storage and keep it alive */
    float v[6] = {1, 2, 3, 4, 5, 6};
    cg_tensor *t = cg_tensor_from_host(CG_CPU, CG_SHAPE(2, 3), v);
    cg_tensor *tv = cg_tensor_view_new(t, CG_SHAPE(3, 2), (int64_t[]){1, 3}, 0); /* the transpose */
    CHECK(tv->storage == t->storage && t->storage->refcount == 2 && !cg_is_contiguous(tv));
    cg_tensor_free(t);
    float h[6];
    cg_tensor_to_host(tv, h);
    CHECK(h[0] == 1 && h[1] == 4 && h[2] == 2 && h[3] == 5 && h[4] == 3 && h[5] == 6);
    cg_tensor *c = cg_tensor_clone(tv, CG_CPU);
    CHECK(cg_is_contiguous(c) && c->storage != tv->storage);
    cg_tensor_free(tv);
    cg_tensor_to_host(c, h);
    CHECK(h[1] == 4);
    CHECK(cg_tensor_retain(c) == c && c->refcount == 2);
    cg_tensor_free(c);
    cg_tensor_free(c);
    /* the same seed gives the same tensor */
    cg_rng r1 = cg_rng_make(9), r2 = cg_rng_make(9);
    cg_tensor *a = cg_tensor_randn(CG_CPU, CG_SHAPE(5, 7), &r1, 0, 1), *b = cg_tensor_randn(CG_CPU, CG_SHAPE(5, 7), &r2, 0, 1);
    float ha[35], hb[35];
    cg_tensor_to_host(a, ha);
    cg_tensor_to_host(b, hb);
    CHECK(memcmp(ha, hb, sizeof ha) == 0);
    CHECK(cg_tensor_move_(a, CG_CPU) == CG_OK);
    cg_tensor_free(a);
    cg_tensor_free(b);
}

/* ------------------------------------------------------------ threads ---- */

typedef struct { int *hits; int64_t n; int nested; } pf_ctx;

static void mark(void *vctx, int64_t b, int64_t e, int worker) {
    pf_ctx *c = vctx;
    CHECK(worker >= 0 && worker < cg_threads_get());
    for (int64_t i = b; i < e; i++) __atomic_fetch_add(&c->hits[i], 1, __ATOMIC_RELAXED);
    if (c->nested) { /* a nested call runs serially on this thread: still covers its range */
        pf_ctx inner = {c->hits + c->n, 10, 0};
        cg_parallel_for(inner.n, 1, mark, &inner);
    }
}

static void *caller(void *arg) {
    pf_ctx *c = arg;
    cg_parallel_for(c->n, 7, mark, c);
    return NULL;
}

static void test_parallel_for(void) {
    cg_threads_set(4);
    int64_t n = 100003;
    int *hits = calloc((size_t)n + 10, sizeof(int));
    pf_ctx c = {hits, n, 0};
    cg_parallel_for(n, 16, mark, &c);
    for (int64_t i = 0; i < n; i++) CHECK_MSG(hits[i] == 1, "index %lld hit %d times", (long long)i, hits[i]);
    /* nested: each outer chunk runs an inner loop of 10 serially */
    memset(hits, 0, ((size_t)n + 10) * sizeof(int));
    c.nested = 1;
    cg_parallel_for(n, 20000, mark, &c);
    int chunks = hits[n];
    for (int64_t i = 0; i < n; i++) CHECK(hits[i] == 1);
    for (int i = 0; i < 10; i++) CHECK(hits[n + i] == chunks && chunks >= 1);
    /* two threads calling at once: one gets the pool, the other runs serially; both finish */
    int *h1 = calloc(5000, sizeof(int)), *h2 = calloc(5000, sizeof(int));
    pf_ctx c1 = {h1, 5000, 0}, c2 = {h2, 5000, 0};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, caller, &c1);
    pthread_create(&t2, NULL, caller, &c2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    for (int i = 0; i < 5000; i++) CHECK(h1[i] == 1 && h2[i] == 1);
    free(h1);
    free(h2);
    free(hits);
    cg_threads_set(0);
}

int main(void) {
    TEST_RUN(test_philox_known_answers);
    TEST_RUN(test_philox_stream_layout);
    TEST_RUN(test_sampler_moments);
    TEST_RUN(test_tensor_errors_and_views);
    TEST_RUN(test_parallel_for);
    return test_summary();
}
