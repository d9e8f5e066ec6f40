/*
 * tests/test_cuda.c — what the op-consistency test (test_backend_ops.c) does not cover of
 * the CUDA backend: the Philox stream against the CPU and against cuRAND's stateful API,
 * the caching allocator (no cudaMalloc once a training step is warm, out-of-memory
 * reported, not fatal), streams from two host threads, bitwise reproducibility of the
 * split reductions, tensor moves and a differentiable cg_to, a WGAN-GP critic training
 * step (double backward) against the same step on the CPU, and the tensor-core math modes'
 * accuracy against a double-precision reference (printed as a table; docs/cuda.md).
 *
 * Built twice (tests/meson.build):
 *  - test_cuda: the real backend; exits 77 (skip) without a GPU, after checking that a
 *    CUDA tensor is then refused with a message rather than a crash;
 *  - test_cuda_emu: the CPU emulator of the same kernels (kernels/cuda/emu/) served as the
 *    CUDA device, so CI runs all of this without a GPU; sizes are smaller there.
 *    With CG_EMU_NO_DEVICE=1 it checks the no-device path instead.
 */
#include <pthread.h>

#include "test.h"
#include "kernels/cpu/ref.h"
#include "kernels/cuda/cuda.h"

#define GPU CG_CUDA

#ifdef CG_CUDA_EMU
static const int EMU = 1;
#else
static const int EMU = 0;
#endif

static const cg_backend *G; /* the CUDA table (real or emulated) */

static float *h_rand(int64_t n, float lo, float hi) {
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    cg_philox_fill_uniform(h, n, test_rng()->seed, cg_rng_take(test_rng(), n), lo, hi);
    return h;
}
static float *d_up(const float *h, int64_t n) {
    float *d = G->alloc((size_t)n * sizeof(float));
    CG_ASSERT(d);
    G->upload(d, h, (size_t)n * sizeof(float));
    return d;
}
static float *d_down(const float *d, int64_t n) {
    float *h = malloc((size_t)n * sizeof(float));
    G->sync();
    G->download(h, d, (size_t)n * sizeof(float));
    return h;
}
static uint64_t mallocs(void) {
    cg_cuda_mem_stats s;
    cg_cuda_mem_stats_get(&s);
    return s.malloc_calls;
}

/* --------------------------------------------------------------- Philox ---- */

static void test_philox_matches_cpu(void) {
    struct { int64_t n; uint64_t seed, ctr; } cases[] = {
        {1, 1, 0},
        {4099, test_seed(), 7},
        {EMU ? 20003 : (1 << 20) + 3, 0xdeadbeefcafeull, 0xfffffff0ull}, /* carries into the counter's high word */
        {1001, 42, (1ull << 40) - 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t n = cases[c].n;
        float *want = malloc((size_t)n * sizeof(float)), *d = G->alloc((size_t)n * sizeof(float));
        cg_philox_fill_uniform(want, n, cases[c].seed, cases[c].ctr, -2.0f, 3.0f);
        G->rand_uniform(d, n, cases[c].seed, cases[c].ctr, -2.0f, 3.0f);
        float *got = d_down(d, n);
        CHECK_MSG(memcmp(got, want, (size_t)n * sizeof(float)) == 0, "uniforms differ from the CPU (n %lld)",
                  (long long)n);
        free(got);
        /* normals: the same formula, accurate logf/sinf/cosf on both sides */
        cg_philox_fill_normal(want, n, cases[c].seed, cases[c].ctr, 0.5f, 2.0f);
        G->rand_normal(d, n, cases[c].seed, cases[c].ctr, 0.5f, 2.0f);
        got = d_down(d, n);
        double worst = 0;
        for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - want[i]) / (1.0 + fabs(want[i])));
        CHECK_MSG(worst < 4e-6, "normals differ from the CPU by %.3g (n %lld)", worst, (long long)n);
        free(got);
        /* the stream is cuRAND's: curand_init(seed, 0, 4·counter) + curand() per element */
        float *d2 = G->alloc((size_t)n * sizeof(float));
        cg_cuda_curand_reference(d2, n, cases[c].seed, cases[c].ctr);
        G->rand_uniform(d, n, cases[c].seed, cases[c].ctr, 0.0f, 1.0f);
        float *a = d_down(d, n), *b = d_down(d2, n);
        CHECK_MSG(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "rand_uniform differs from cuRAND's stateful API");
        free(a);
        free(b);
        G->free(d2);
        G->free(d);
        free(want);
    }
    /* tensors: cg_tensor_randn on the GPU equals the CPU's for the same generator state */
    cg_rng r1 = cg_rng_make(99), r2 = cg_rng_make(99);
    cg_tensor *a = cg_tensor_randn(CG_CPU, CG_SHAPE(3, 77), &r1, 0, 1), *b = cg_tensor_randn(GPU, CG_SHAPE(3, 77), &r2, 0, 1);
    float *ha = cg_tensor_host_copy(a), *hb = cg_tensor_host_copy(b);
    CHECK(t_rel_err(hb, ha, 3 * 77) < 1e-6 && r1.counter == r2.counter);
    free(ha);
    free(hb);
    cg_tensor_free(a);
    cg_tensor_free(b);
}

/* ------------------------------------------------- a WGAN-GP critic step ---- */

/* conv3d k4 s2 p1 (1->4, bias) -> leaky 0.2 -> layer norm (D,H,W, gain/bias) -> conv3d k3 p1
 * (4->4) -> leaky -> flatten -> linear -> 1; loss = mean D(fake) - mean D(real) + 10 · mean
 * (‖∇_x̂ D(x̂)‖ - 1)², then Adam on every parameter: forward, backward, double backward and
 * the optimizer, all through the device's table. */
enum { NP = 7 };
typedef struct { cg_tensor *p[NP], *m[NP], *v[NP], *real, *fake, *eps; int64_t step; int sgd; } critic_state;

static cg_tensor *critic(cg_tensor *x, cg_tensor *const *p) {
    cg_tensor *h = cg_leaky_relu(cg_conv3d(x, p[0], p[1], cg_conv_opts_make(2, 1, 0)), 0.2f);
    h = cg_layer_norm(h, 3, p[2], p[3], 1e-5f);
    h = cg_leaky_relu(cg_conv3d(h, p[4], NULL, cg_conv_opts_make(1, 1, 0)), 0.2f);
    return cg_linear(cg_flatten(h, 1), p[5], p[6]);
}

static float critic_step(critic_state *s) {
    cg_tensor *xhat = cg_add(cg_mul(s->eps, s->real), cg_mul(cg_affine(s->eps, -1, 1), s->fake));
    cg_set_requires_grad(xhat, true);
    cg_tensor *dh = critic(xhat, s->p), *g[1];
    CG_ASSERT(dh && cg_grad(1, &dh, NULL, 1, &xhat, g, true) == CG_OK);
    cg_tensor *gn = cg_norm(cg_flatten(g[0], 1), 2.0f, CG_AXIS(1), false);
    cg_tensor *gp = cg_mean_all(cg_square(cg_add_scalar(gn, -1.0f)));
    cg_tensor *w = cg_sub(cg_mean_all(critic(s->fake, s->p)), cg_mean_all(critic(s->real, s->p)));
    cg_tensor *loss = cg_add(w, cg_scale(gp, 10.0f));
    CG_ASSERT(loss && cg_backward(loss) == CG_OK);
    float l = cg_item(loss);
    s->step++;
    for (int i = 0; i < NP; i++) {
        cg_tensor *p = s->p[i];
        if (s->sgd) /* SGD with momentum: updates proportional to the gradients */
            cg_backend_of(p)->sgd_step(cg_data(p), cg_data(s->m[i]), cg_data(p->grad), NULL, cg_numel(p), 1e-3f,
                                       0.9f, 0.0f, 0.0f, 0, s->step == 1);
        else
            cg_backend_of(p)->adam_step(cg_data(p), cg_data(s->m[i]), cg_data(s->v[i]), cg_data(p->grad), NULL,
                                        cg_numel(p), 1e-2f, 0.5f, 0.9f, 1e-8f, 0.0f, 0, s->step);
        cg_tensor_free(p->grad);
        p->grad = NULL;
    }
    cg_tape_reset();
    return l;
}

static void critic_init(critic_state *s, cg_device dev, const critic_state *from, int64_t B, int64_t D) {
    memset(s, 0, sizeof *s);
    int64_t o = D / 2;
    const int64_t shapes[NP][5] = {{4, 1, 4, 4, 4}, {4}, {o, o, o}, {o, o, o}, {4, 4, 3, 3, 3}, {1, 4 * o * o * o}, {1}};
    const int nd[NP] = {5, 1, 3, 3, 5, 2, 1};
    for (int i = 0; i < NP; i++) {
        if (from) s->p[i] = cg_tensor_clone(from->p[i], dev);
        else s->p[i] = i == 2 ? cg_tensor_rand(dev, nd[i], shapes[i], test_rng(), 0.8f, 1.2f)
                              : cg_tensor_rand(dev, nd[i], shapes[i], test_rng(), -0.3f, 0.3f);
        cg_set_requires_grad(s->p[i], true);
        s->m[i] = cg_tensor_zeros(dev, s->p[i]->ndim, s->p[i]->shape);
        s->v[i] = cg_tensor_zeros(dev, s->p[i]->ndim, s->p[i]->shape);
    }
    if (from) {
        s->real = cg_tensor_clone(from->real, dev);
        s->fake = cg_tensor_clone(from->fake, dev);
        s->eps = cg_tensor_clone(from->eps, dev);
    } else {
        s->real = cg_tensor_rand(dev, CG_SHAPE(B, 1, D, D, D), test_rng(), 0, 1);
        s->fake = cg_tensor_rand(dev, CG_SHAPE(B, 1, D, D, D), test_rng(), 0, 1);
        s->eps = cg_tensor_rand(dev, CG_SHAPE(B, 1, 1, 1, 1), test_rng(), 0, 1);
    }
}

static void critic_free(critic_state *s) {
    for (int i = 0; i < NP; i++) {
        cg_tensor_free(s->p[i]);
        cg_tensor_free(s->m[i]);
        cg_tensor_free(s->v[i]);
    }
    cg_tensor_free(s->real);
    cg_tensor_free(s->fake);
    cg_tensor_free(s->eps);
}

/* Three steps on each device from the same start. SGD, not Adam: Adam moves a parameter
 * by ±lr whatever the size of its gradient, so a gradient that is ~0 on both devices (the
 * conv bias before a layer norm) could step in opposite directions on rounding alone. */
static void test_critic_step_matches_cpu(void) {
    critic_state cpu, gpu;
    critic_init(&cpu, CG_CPU, NULL, 3, EMU ? 6 : 10);
    critic_init(&gpu, GPU, &cpu, 0, 0);
    cpu.sgd = gpu.sgd = 1;
    for (int it = 0; it < 3; it++) {
        float lc = critic_step(&cpu), lg = critic_step(&gpu);
        CHECK_MSG(fabsf(lc - lg) <= 1e-4f * (1.0f + fabsf(lc)), "step %d: loss %.7g on the CPU, %.7g on the GPU", it,
                  (double)lc, (double)lg);
    }
    for (int i = 0; i < NP; i++) {
        double e = t_tensor_rel_err(gpu.p[i], cpu.p[i]);
        CHECK_MSG(e < 1e-4, "parameter %d after 3 steps: rel err %.3g", i, e);
    }
    critic_free(&cpu);
    critic_free(&gpu);
}

/* Once warm, a training step is served from the cache: no cudaMalloc. */
static void test_allocator_no_malloc_when_warm(void) {
    critic_state s;
    critic_init(&s, GPU, NULL, 2, EMU ? 6 : 16);
    critic_step(&s);
    critic_step(&s);
    cg_cuda_mem_stats a, b;
    cg_cuda_mem_stats_get(&a);
    for (int it = 0; it < (EMU ? 3 : 10); it++) critic_step(&s);
    cg_cuda_mem_stats_get(&b);
    printf("  warm training steps: %llu requests, %llu new cudaMalloc calls, %.1f MiB in use, %.1f MiB cached\n",
           (unsigned long long)(b.requests - a.requests), (unsigned long long)(b.malloc_calls - a.malloc_calls),
           b.bytes_in_use / 1048576.0, b.bytes_cached / 1048576.0);
    CHECK(b.requests > a.requests);
    CHECK_MSG(b.malloc_calls == a.malloc_calls, "%llu cudaMalloc calls in warm steps",
              (unsigned long long)(b.malloc_calls - a.malloc_calls));
    CHECK(b.bytes_in_use == a.bytes_in_use); /* nothing leaks from step to step */
    critic_free(&s);
    /* emptying the cache returns blocks to the driver; the next step mallocs again */
    cg_cuda_empty_cache();
    cg_cuda_mem_stats_get(&b);
    CHECK(b.bytes_cached == 0 && b.free_calls > 0);
}

static void test_allocator_out_of_memory(void) {
    uint64_t before = mallocs();
    cg_tensor *t = cg_tensor_new(GPU, CG_SHAPE((int64_t)1 << 43)); /* 32 TiB */
    CHECK(t == NULL && cg_last_status() == CG_ERR_NOMEM);
    CHECK_MSG(strstr(cg_last_error(), "out of cuda memory") != NULL, "message: %s", cg_last_error());
    cg_clear_error();
    /* the device is still usable */
    cg_tensor *u = cg_tensor_full(GPU, CG_SHAPE(1000), 2.5f);
    CHECK(u && cg_item(cg_sum_all(u)) == 2500.0f);
    cg_tensor_free(u);
    CHECK(mallocs() >= before);
}

/* ------------------------------------------------------------- streams ---- */

typedef struct { const float *hx, *hw; float *out; cg_conv_desc c; int64_t nx, nw, ny; } stream_job;

static void *stream_worker(void *arg) {
    stream_job *j = arg;
    cg_cuda_stream *s = cg_cuda_stream_new();
    cg_cuda_set_stream(s);
    for (int rep = 0; rep < 3; rep++) { /* repeated: blocks recycle within the stream */
        float *x = d_up(j->hx, j->nx), *w = d_up(j->hw, j->nw), *y = G->alloc((size_t)j->ny * sizeof(float));
        G->conv_fwd(y, x, w, NULL, &j->c);
        G->sync();
        G->download(j->out, y, (size_t)j->ny * sizeof(float));
        G->free(x);
        G->free(w);
        G->free(y);
    }
    cg_cuda_set_stream(NULL);
    cg_cuda_stream_free(s);
    return NULL;
}

static void test_streams(void) {
    /* two host threads, each on its own stream, against the reference */
    cg_conv_desc c = {.N = 2, .Ci = 3, .Co = 5, .in = {7, 8, 9}, .k = {3, 3, 3}, .stride = {1, 1, 1}, .pad = {1, 1, 1}};
    for (int d = 0; d < 3; d++) c.out[d] = c.in[d];
    int64_t nx = 2 * 3 * 7 * 8 * 9, nw = 5 * 3 * 27, ny = 2 * 5 * 7 * 8 * 9;
    stream_job jobs[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (stream_job){h_rand(nx, -1, 1), h_rand(nw, -1, 1), malloc((size_t)ny * sizeof(float)), c, nx, nw, ny};
        pthread_create(&th[i], NULL, stream_worker, &jobs[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        float *want = malloc((size_t)ny * sizeof(float));
        cg_ref_conv_fwd(want, jobs[i].hx, jobs[i].hw, NULL, &c);
        CHECK_MSG(t_rel_err(jobs[i].out, want, ny) < 1e-5, "stream %d: rel err %.3g", i,
                  t_rel_err(jobs[i].out, want, ny));
        free(want);
        free((void *)jobs[i].hx);
        free((void *)jobs[i].hw);
        free(jobs[i].out);
    }
    /* a block freed on one stream is not handed to another stream's work */
    cg_cuda_stream *a = cg_cuda_stream_new(), *b = cg_cuda_stream_new();
    size_t big = (size_t)3 << 20;
    cg_cuda_set_stream(a);
    void *p = G->alloc(big);
    G->free(p);
    uint64_t m0 = mallocs();
    cg_cuda_set_stream(b);
    void *q = G->alloc(big);
    CHECK(mallocs() == m0 + 1); /* not a's cached block */
    G->free(q);
    cg_cuda_set_stream(a);
    void *r = G->alloc(big);
    CHECK(mallocs() == m0 + 1 && r == p); /* a's own block, reused */
    G->free(r);
    cg_cuda_set_stream(NULL);
    cg_cuda_stream_free(a);
    cg_cuda_stream_free(b);
    CHECK(cg_cuda_set_stream(NULL) == NULL);
}

/* ------------------------------------------------------- reproducibility ---- */

static void test_bitwise_reproducible(void) {
    /* split-K weight gradient, split reductions, layer-norm parameter gradients: run twice */
    cg_conv_desc c = {.N = EMU ? 2 : 16, .Ci = 8, .Co = 16, .in = {12, 12, 12}, .k = {3, 3, 3}, .stride = {1, 1, 1},
                      .pad = {1, 1, 1}};
    for (int d = 0; d < 3; d++) c.out[d] = c.in[d];
    int64_t nx = c.N * 8 * 1728, ny = c.N * 16 * 1728, nw = 16 * 8 * 27;
    float *hx = h_rand(nx, -1, 1), *hy = h_rand(ny, -1, 1);
    float *x = d_up(hx, nx), *dy = d_up(hy, ny), *dw1 = G->alloc(nw * 4), *dw2 = G->alloc(nw * 4);
    G->conv_bwd_weight(dw1, x, dy, &c);
    G->conv_bwd_weight(dw2, x, dy, &c);
    float *a = d_down(dw1, nw), *b = d_down(dw2, nw);
    CHECK(memcmp(a, b, (size_t)nw * 4) == 0);
    free(a);
    free(b);
    float *s1 = G->alloc(4), *s2 = G->alloc(4);
    G->reduce_sum(s1, dy, 1, &ny, 1u);
    G->reduce_sum(s2, dy, 1, &ny, 1u);
    a = d_down(s1, 1);
    b = d_down(s2, 1);
    CHECK(a[0] == b[0]);
    free(a);
    free(b);
    G->free(s1);
    G->free(s2);
    G->free(x);
    G->free(dy);
    G->free(dw1);
    G->free(dw2);
    free(hx);
    free(hy);
}

/* ---------------------------------------------------------------- moves ---- */

static void test_moves_and_differentiable_to(void) {
    cg_tensor *x = t_rand(CG_CPU, CG_SHAPE(4, 33), -1, 1, 1);
    float *hx = cg_tensor_host_copy(x);
    /* a strided view copied across devices keeps its values */
    cg_tensor *xt = cg_transpose(x, 0, 1);
    cg_tensor *g = cg_to(xt, GPU);
    CHECK(g && g->device == GPU);
    float *hg = cg_tensor_host_copy(g);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 33; j++) CHECK(hg[j * 4 + i] == hx[i * 33 + j]);
    free(hg);
    /* the gradient of Σ y² with y = to(x) flows back to the CPU leaf: 2x */
    cg_tensor *loss = cg_sum_all(cg_square(cg_to(x, GPU)));
    CHECK(loss && loss->device == GPU && cg_backward(loss) == CG_OK);
    CHECK(x->grad && x->grad->device == CG_CPU);
    float *gx = cg_tensor_host_copy(x->grad);
    for (int i = 0; i < 4 * 33; i++) CHECK_NEAR(gx[i], 2.0f * hx[i], 1e-6);
    free(gx);
    /* an owned tensor moved there and back, with its gradient */
    CHECK(cg_tensor_move_(x, GPU) == CG_OK && x->device == GPU && x->grad->device == GPU);
    CHECK(cg_tensor_move_(x, CG_CPU) == CG_OK && x->device == CG_CPU);
    float *back = cg_tensor_host_copy(x);
    CHECK(memcmp(back, hx, 4 * 33 * sizeof(float)) == 0);
    free(back);
    free(hx);
    cg_tensor_free(x);
}

/* ----------------------------------------------------------- math modes ---- */

/* Relative error ‖got - ref‖/‖ref‖ of one op in the current math mode; ref from the CPU
 * reference kernels (double accumulation). */
typedef struct { const char *name; double flops; } mm_case;

static double mm_run(int which, const float *hx, const float *hw, const float *hdy, float *ref, int64_t nout,
                     const cg_conv_desc *c, int64_t M, int64_t N, int64_t K, int want_ref) {
    const cg_backend *R = cg_backend_cpu_ref();
    int64_t nx = c->N * c->Ci * c->in[0] * c->in[1] * c->in[2], nw = (int64_t)c->Co * c->Ci * 27;
    int64_t ny = c->N * c->Co * c->out[0] * c->out[1] * c->out[2];
    float *out = NULL;
    switch (which) {
    case 0: { /* gemm M x K · K x N */
        if (want_ref) R->gemm(0, 0, M, N, K, 1.0f, hx, K, 0, hw, N, 0, 0.0f, ref, N, 0, 1);
        float *a = d_up(hx, M * K), *b = d_up(hw, K * N), *o = G->alloc(M * N * 4);
        G->gemm(0, 0, M, N, K, 1.0f, a, K, 0, b, N, 0, 0.0f, o, N, 0, 1);
        out = d_down(o, M * N);
        G->free(a); G->free(b); G->free(o);
        break;
    }
    case 1: { /* conv forward */
        if (want_ref) cg_ref_conv_fwd(ref, hx, hw, NULL, c);
        float *x = d_up(hx, nx), *w = d_up(hw, nw), *o = G->alloc(ny * 4);
        G->conv_fwd(o, x, w, NULL, c);
        out = d_down(o, ny);
        G->free(x); G->free(w); G->free(o);
        break;
    }
    case 2: { /* conv backward-data */
        if (want_ref) cg_ref_conv_bwd_data(ref, hdy, hw, c);
        float *dy = d_up(hdy, ny), *w = d_up(hw, nw), *o = G->alloc(nx * 4);
        G->conv_bwd_data(o, dy, w, c);
        out = d_down(o, nx);
        G->free(dy); G->free(w); G->free(o);
        break;
    }
    case 3: { /* conv backward-weight */
        if (want_ref) cg_ref_conv_bwd_weight(ref, hx, hdy, c);
        float *x = d_up(hx, nx), *dy = d_up(hdy, ny), *o = G->alloc(nw * 4);
        G->conv_bwd_weight(o, x, dy, c);
        out = d_down(o, nw);
        G->free(x); G->free(dy); G->free(o);
        break;
    }
    default: { /* fused per-voxel layer, 128 -> 128 channels with layer norm and leaky */
        int64_t B = 2, V = N, Ci = K, Co = M;
        const float *xm = hdy, *xr = hdy + B * Ci; /* statistics: any fixed numbers */
        cg_pw_args pa = {.y = ref, .x = hx, .x_mean = xm, .x_rstd = xr, .act = 1, .slope = 0.01f, .w = hw,
                         .B = B, .Ci = (int)Ci, .Co = (int)Co, .V = V, .eps = 1e-5f};
        if (want_ref) cg_ref_pointwise_layer(&pa);
        float *x = d_up(hx, B * Ci * V), *w = d_up(hw, Co * Ci), *dm = d_up(xm, B * Ci), *dr = d_up(xr, B * Ci);
        float *o = G->alloc(B * Co * V * 4);
        pa.y = o;
        pa.x = x;
        pa.x_mean = dm;
        pa.x_rstd = dr;
        pa.w = w;
        G->pointwise_layer(&pa);
        out = d_down(o, B * Co * V);
        G->free(x); G->free(w); G->free(dm); G->free(dr); G->free(o);
        break;
    }
    }
    double e = t_rel_err(out, ref, nout);
    free(out);
    return e;
}

static void test_math_modes_accuracy(void) {
    cg_conv_desc c = {.N = 2, .Ci = 32, .Co = 32, .in = {10, 10, 10}, .k = {3, 3, 3}, .stride = {1, 1, 1},
                      .pad = {1, 1, 1}};
    if (!EMU) c.N = 8;
    for (int d = 0; d < 3; d++) c.out[d] = c.in[d];
    int64_t M = 128, N = EMU ? 256 : 1024, K = 576;
    int64_t nx = c.N * c.Ci * 1000, nw = 32 * 32 * 27, ny = c.N * 32 * 1000;
    int64_t big = nx > M * K ? nx : M * K;
    big = big > 2 * K * N ? big : 2 * K * N;
    float *hx = h_rand(big, -1, 1), *hw = h_rand(nw > K * N ? nw : K * N, -1, 1), *hdy = h_rand(ny, -1, 1);
    const char *names[5] = {"gemm 128x576x" , "conv3d fwd 32->32 k3", "conv3d bwd-data", "conv3d bwd-weight",
                            "pointwise 576->128 LN+leaky"};
    int64_t nout[5] = {M * N, ny, nx, nw, 2 * M * N};
    /* documented bounds (docs/cuda.md): fp32 1e-5, tf32 2e-3, bf16 1.5e-2 */
    const double bound[3] = {1e-5, 2e-3, 1.5e-2};
    printf("  math mode accuracy, ‖got - ref‖/‖ref‖ against double accumulation:\n");
    printf("  %-30s %10s %10s %10s\n", "op", "fp32", "tf32", "bf16");
    for (int which = 0; which < 5; which++) {
        float *ref = malloc((size_t)nout[which] * sizeof(float));
        double e[3];
        for (int mode = 0; mode < 3; mode++) {
            cg_set_math_mode((cg_math_mode)mode);
            e[mode] = mm_run(which, hx, hw, hdy, ref, nout[which], &c, M, N, K, mode == 0);
            CHECK_MSG(e[mode] <= bound[mode], "%s in mode %d: rel err %.3g above %.3g", names[which], mode, e[mode],
                      bound[mode]);
        }
        cg_set_math_mode(CG_MATH_FP32);
        /* the tensor-core modes really round their inputs (else they are not in use) */
        CHECK_MSG(e[1] > 2 * e[0] && e[2] > 2 * e[1], "%s: errors %.3g %.3g %.3g do not grow fp32 < tf32 < bf16",
                  names[which], e[0], e[1], e[2]);
        printf("  %-30s %10.2e %10.2e %10.2e\n", names[which], e[0], e[1], e[2]);
        free(ref);
    }
    free(hx);
    free(hw);
    free(hdy);
}

/* Every tile shape (4, 8, 16, 32, 64, 128 rows) in every math mode, with odd sizes, K tails,
 * transposes, batches and beta, against double accumulation. */
static void test_math_modes_every_tile(void) {
    const double bound[3] = {1e-5, 2e-3, 1.5e-2};
    int64_t Ms[6] = {3, 5, 12, 20, 40, 100};
    for (int mi = 0; mi < 6; mi++)
        for (int mode = 0; mode < 3; mode++) {
            int64_t M = Ms[mi], N = 150, K = 203, batch = 2;
            int ta = (mi + mode) & 1, tb = ((mi + mode) >> 1) & 1;
            int64_t lda = ta ? M : K, ldb = tb ? K : N, sA = M * K, sB = K * N, sC = M * N;
            float *a = h_rand(sA * batch, -1, 1), *b = h_rand(sB * batch, -1, 1), *c0 = h_rand(sC * batch, -1, 1);
            float *want = malloc((size_t)(sC * batch) * sizeof(float));
            memcpy(want, c0, (size_t)(sC * batch) * sizeof(float));
            cg_ref_gemm(ta, tb, M, N, K, 0.5f, a, lda, sA, b, ldb, sB, 0.25f, want, N, sC, batch);
            float *da = d_up(a, sA * batch), *db = d_up(b, sB * batch), *dc = d_up(c0, sC * batch);
            cg_set_math_mode((cg_math_mode)mode);
            G->gemm(ta, tb, M, N, K, 0.5f, da, lda, sA, db, ldb, sB, 0.25f, dc, N, sC, batch);
            cg_set_math_mode(CG_MATH_FP32);
            float *got = d_down(dc, sC * batch);
            double e = t_rel_err(got, want, sC * batch);
            CHECK_MSG(e <= bound[mode], "gemm M %lld ta %d tb %d mode %d: rel err %.3g", (long long)M, ta, tb, mode, e);
            free(got);
            G->free(da); G->free(db); G->free(dc);
            free(a); free(b); free(c0); free(want);
            /* conv forward and backward-data with Co = M output channels */
            cg_conv_desc c = {.N = 2, .Ci = 7, .Co = (int)M, .in = {6, 7, 5}, .k = {3, 3, 3}, .stride = {2, 1, 1},
                              .pad = {1, 1, 1}};
            for (int d = 0; d < 3; d++) c.out[d] = (c.in[d] + 2 * c.pad[d] - c.k[d]) / c.stride[d] + 1;
            int64_t nx = 2 * 7 * 210, nw = M * 7 * 27, ny = 2 * M * c.out[0] * c.out[1] * c.out[2];
            float *hx = h_rand(nx, -1, 1), *hw = h_rand(nw, -1, 1), *hy = h_rand(ny, -1, 1);
            float *ry = malloc((size_t)ny * sizeof(float)), *rx = malloc((size_t)nx * sizeof(float));
            cg_ref_conv_fwd(ry, hx, hw, NULL, &c);
            cg_ref_conv_bwd_data(rx, hy, hw, &c);
            float *x = d_up(hx, nx), *w = d_up(hw, nw), *dy = d_up(hy, ny), *y = G->alloc(ny * 4), *dx = G->alloc(nx * 4);
            cg_set_math_mode((cg_math_mode)mode);
            G->conv_fwd(y, x, w, NULL, &c);
            G->conv_bwd_data(dx, dy, w, &c);
            cg_set_math_mode(CG_MATH_FP32);
            float *gy = d_down(y, ny), *gx = d_down(dx, nx);
            CHECK_MSG(t_rel_err(gy, ry, ny) <= bound[mode], "conv fwd Co %lld mode %d: rel err %.3g", (long long)M,
                      mode, t_rel_err(gy, ry, ny));
            CHECK_MSG(t_rel_err(gx, rx, nx) <= bound[mode], "conv bwd-data Ci %d mode %d: rel err %.3g", c.Ci, mode,
                      t_rel_err(gx, rx, nx));
            free(gy); free(gx); free(hx); free(hw); free(hy); free(ry); free(rx);
            G->free(x); G->free(w); G->free(dy); G->free(y); G->free(dx);
        }
}

/* ------------------------------------------------- per-module math mode ---- */

/* Two conv branches a(x) and b(x) of one model, loss Σ a(x)·r1 + Σ b(x)·r2, run with a
 * math spec: returns a's and b's outputs and weight gradients (host copies). The thread's
 * mode is `fwd_mode` during the forward and `bwd_mode` during backward: the tape must run
 * each layer's backward in the mode of its forward, whatever the thread's mode is then. */
typedef struct { float *ya, *yb, *ga, *gb, *gx; } branch_out;

static branch_out run_branches(const char *spec, cg_math_mode fwd_mode, cg_math_mode bwd_mode, uint64_t seed) {
    const int S = EMU ? 5 : 8;
    cg_rng rng = cg_rng_make(seed);
    cg_module *root = cg_module_new(NULL, "");
    cg_module *a = cg_conv3d_new(root, "a", 16, 32, (int[3]){3, 3, 3}, (cg_conv_opts){.stride = {1, 1, 1}, .pad = {1, 1, 1}},
                                 true, GPU, &rng);
    cg_module *blk = cg_module_new(root, "block");
    cg_module *b = cg_conv3d_new(blk, "b", 16, 32, (int[3]){3, 3, 3}, (cg_conv_opts){.stride = {1, 1, 1}, .pad = {1, 1, 1}},
                                 true, GPU, &rng);
    CG_ASSERT(a && b);
    if (spec) CHECK_MSG(cg_module_set_math_spec(root, spec) == CG_OK, "spec '%s': %s", spec, cg_last_error());
    cg_tensor *x = cg_tensor_rand(GPU, CG_SHAPE(2, 16, S, S, S), &rng, -1, 1);
    cg_tensor *r1 = cg_tensor_rand(GPU, CG_SHAPE(2, 32, S, S, S), &rng, -1, 1);
    cg_tensor *r2 = cg_tensor_rand(GPU, CG_SHAPE(2, 32, S, S, S), &rng, -1, 1);
    cg_set_requires_grad(x, true);
    cg_math_mode prev = cg_set_math_mode(fwd_mode);
    cg_tensor *ya = cg_module_forward(a, x), *yb = cg_module_forward(b, x);
    CHECK_MSG(cg_get_math_mode() == fwd_mode, "cg_module_forward did not restore the thread's math mode");
    cg_tensor *loss = cg_add(cg_sum_all(cg_mul(ya, r1)), cg_sum_all(cg_mul(yb, r2)));
    cg_set_math_mode(bwd_mode);
    CHECK(cg_backward(loss) == CG_OK);
    cg_set_math_mode(prev);
    branch_out o = {cg_tensor_host_copy(ya), cg_tensor_host_copy(yb), cg_tensor_host_copy(cg_module_param(a, "weight")->grad),
                    cg_tensor_host_copy(cg_module_param(b, "weight")->grad), cg_tensor_host_copy(x->grad)};
    cg_tape_reset();
    cg_tensor_free(x);
    cg_tensor_free(r1);
    cg_tensor_free(r2);
    cg_module_free(root);
    return o;
}

static void branch_free(branch_out *o) {
    free(o->ya); free(o->yb); free(o->ga); free(o->gb); free(o->gx);
}

static bool same(const float *p, const float *q, int64_t n) { return memcmp(p, q, (size_t)n * sizeof(float)) == 0; }

static void test_module_math_mode(void) {
    const int S = EMU ? 5 : 8;
    const int64_t ny = 2 * 32 * S * S * S, nw = 32 * 16 * 27, nx = 2 * 16 * S * S * S;
    uint64_t seed = test_seed() + 11;
    branch_out f32 = run_branches(NULL, CG_MATH_FP32, CG_MATH_FP32, seed);
    branch_out t32 = run_branches(NULL, CG_MATH_TF32, CG_MATH_TF32, seed);
    branch_out b16 = run_branches(NULL, CG_MATH_BF16, CG_MATH_BF16, seed);
    /* the modes differ at all (else the checks below prove nothing) */
    CHECK(!same(f32.ya, t32.ya, ny) && !same(f32.ga, t32.ga, nw) && !same(t32.ya, b16.ya, ny));
    /* a in tf32, the block (b) in bf16, the rest in the thread's mode (fp32); the thread
     * switches to something else for backward: nothing may change */
    branch_out mix = run_branches("a:tf32,block:bf16", CG_MATH_FP32, CG_MATH_BF16, seed);
    CHECK_MSG(same(mix.ya, t32.ya, ny) && same(mix.ga, t32.ga, nw), "module a did not run in tf32");
    CHECK_MSG(same(mix.yb, b16.yb, ny) && same(mix.gb, b16.gb, nw), "module block.b did not inherit bf16");
    /* x's gradient (16 channels: a tensor-core tile) sums a's (tf32) and b's (bf16)
     * backward-data: neither pure run has it */
    CHECK(!same(mix.gx, t32.gx, nx) && !same(mix.gx, b16.gx, nx));
    branch_free(&mix);
    /* a root setting is inherited, a child's own setting wins; later pairs override earlier */
    mix = run_branches("bf16,a:fp32,a:tf32", CG_MATH_FP32, CG_MATH_FP32, seed);
    CHECK(same(mix.ya, t32.ya, ny) && same(mix.yb, b16.yb, ny) && same(mix.gb, b16.gb, nw));
    branch_free(&mix);
    /* no setting: the thread's mode, for forward and (recorded) for backward */
    mix = run_branches("", CG_MATH_TF32, CG_MATH_FP32, seed);
    CHECK(same(mix.ya, t32.ya, ny) && same(mix.ga, t32.ga, nw) && same(mix.gx, t32.gx, nx));
    branch_free(&mix);
    branch_free(&f32);
    branch_free(&t32);
    branch_free(&b16);
    /* bad specs name the problem and change nothing */
    cg_module *root = cg_module_new(NULL, "");
    cg_module_new(root, "dec");
    CHECK(cg_module_set_math_spec(root, "dec:tf33") == CG_ERR_INVALID && strstr(cg_last_error(), "tf33"));
    CHECK(cg_module_set_math_spec(root, "tf32,enc:bf16") == CG_ERR_INVALID && strstr(cg_last_error(), "'enc'"));
    CHECK(cg_module_math_mode(root) == cg_get_math_mode()); /* the valid 'tf32' before it was not applied */
    CHECK(cg_module_set_math_spec(root, "dec:bf16") == CG_OK &&
          cg_module_math_mode(cg_module_find(root, "dec")) == CG_MATH_BF16);
    cg_clear_error();
    cg_module_free(root);
}

int main(void) {
    test_seed();
#ifdef CG_CUDA_EMU
    const cg_backend *emu = cg_cuda_backend(); /* the emulated table (cuda.h renames it) */
    if (getenv("CG_EMU_NO_DEVICE")) {          /* the no-device path */
        CHECK(emu == NULL && strstr(cg_cuda_unavailable_reason(), "no CUDA device") != NULL);
        printf("no device: %s\n", cg_cuda_unavailable_reason());
        return t_case_failed ? 1 : 0;
    }
    CG_ASSERT(emu);
    cg_backend_override_cuda(emu);
    printf("CUDA kernels on the CPU emulator (%s)\n", cg_cuda_device_name());
#else
    if (!cg_device_available(GPU)) {
        /* a CUDA build without a GPU: CUDA tensors are refused with a message */
        cg_tensor *t = cg_tensor_zeros(GPU, CG_SHAPE(4));
        int ok = t == NULL && cg_last_status() == CG_ERR_DEVICE;
        printf("no GPU (%s): skipped%s\n", cg_cuda_unavailable_reason(), ok ? "" : " (BUT a CUDA tensor was not refused)");
        return ok ? 77 : 1;
    }
    printf("GPU: %s, %d multiprocessors\n", cg_cuda_device_name(), cg_cuda_sm_count());
#endif
    G = cg_backend_get(GPU);
    TEST_RUN(test_philox_matches_cpu);
    TEST_RUN(test_moves_and_differentiable_to);
    TEST_RUN(test_critic_step_matches_cpu);
    TEST_RUN(test_allocator_no_malloc_when_warm);
    TEST_RUN(test_allocator_out_of_memory);
    TEST_RUN(test_streams);
    TEST_RUN(test_bitwise_reproducible);
    TEST_RUN(test_math_modes_accuracy);
    TEST_RUN(test_math_modes_every_tile);
    TEST_RUN(test_module_math_mode);
    return test_summary();
}
