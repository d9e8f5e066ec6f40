/*
 * tests/test_backend_ops.c — the op-consistency test across backends (after ggml's
 * test-backend-ops): every kernel of every kernel table present in this process (cpu-avx2,
 * cuda, ... : cg_backend_list) is run on fresh random inputs and compared with cpu-ref, the
 * plain C oracle.
 *
 * Each case names its shapes, its FLOP count and its tolerance. Outputs are poisoned
 * (filled with NaN) before a kernel runs, so an element a kernel forgets to write shows.
 * Comparison: the relative error ‖a-b‖/‖b‖ AND every element within atol + rtol·|b| (a
 * norm alone hides a few wrong edge elements in a large output). fp32 kernels that sum
 * in a different order than the double-precision oracle differ by ~1e-7·sqrt(K) relative;
 * tolerances are set well above that and far below any real bug.
 * Exits 77 (skip) when only the reference table exists.
 *
 * Adding a kernel: add its entry to the table's checks below (non-NULL), and a case.
 * Adding a backend: nothing to do here; it is found through cg_backend_list.
 */
#include "test.h"
#include "kernels/cpu/ref.h"
#include "bench/layer_suite.h"

/* ------------------------------------------------------------ buffers ---- */

/* Device buffers of one backend, freed together. */
typedef struct {
    const cg_backend *be;
    void *p[64];
    int n;
} arena;

static void *a_alloc(arena *a, size_t bytes) {
    CG_ASSERT(a->n < 64);
    void *p = a->be->alloc(bytes ? bytes : 4);
    CG_ASSERT(p);
    a->p[a->n++] = p;
    return p;
}

static float *a_up(arena *a, const float *h, int64_t n) {
    float *d = a_alloc(a, (size_t)n * sizeof(float));
    if (n) a->be->upload(d, h, (size_t)n * sizeof(float));
    return d;
}

static void *a_up_bytes(arena *a, const void *h, size_t bytes) {
    void *d = a_alloc(a, bytes);
    if (bytes) a->be->upload(d, h, bytes);
    return d;
}

/* An output buffer poisoned with NaN. */
static float *a_out(arena *a, int64_t n) {
    float *d = a_alloc(a, (size_t)n * sizeof(float));
    if (n) a->be->fill(d, NAN, n);
    return d;
}

static void a_down(arena *a, float *h, const float *d, int64_t n) {
    a->be->sync();
    if (n) a->be->download(h, d, (size_t)n * sizeof(float));
}

static void a_free(arena *a) {
    a->be->sync();
    for (int i = 0; i < a->n; i++) a->be->free(a->p[i]);
    a->n = 0;
}

static float *h_rand(int64_t n, float lo, float hi) {
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    cg_philox_fill_uniform(h, n, test_rng()->seed, cg_rng_take(test_rng(), n), lo, hi);
    return h;
}

static int irand(int lo, int hi) { return lo + (int)cg_rng_below(test_rng(), (uint64_t)(hi - lo + 1)); }

static const cg_backend *REF;
static double g_flops_checked;

/* Compare a backend's output with the reference's: both checks of the header. */
static void compare(const char *kname, const char *bname, const char *shape, const float *got, const float *want,
                    int64_t n, double rtol, double atol_rel) {
    double maxabs = 0;
    for (int64_t i = 0; i < n; i++) maxabs = fmax(maxabs, fabs(want[i]));
    double rel = t_rel_err(got, want, n);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= atol_rel * maxabs + rtol * fabs(want[i]))) bad = i;
    }
    CHECK_MSG(bad < 0 && rel <= 10 * rtol, "%s on %s %s: rel err %.3g; element %lld: got %.9g want %.9g", kname,
              bname, shape, rel, (long long)bad, bad >= 0 ? (double)got[bad] : 0.0,
              bad >= 0 ? (double)want[bad] : 0.0);
}

/* Run the body (the last argument: it uses the arena `A` and writes its result to `res`,
 * n floats) on the reference and on backend `be`, and compare. */
#define ON_BOTH(be, n, rtol, atol, kname, shape, ...)                          \
    do {                                                                       \
        int64_t n_ = (n);                                                      \
        float *res_ref = malloc((size_t)(n_ > 0 ? n_ : 1) * sizeof(float));     \
        float *res_be = malloc((size_t)(n_ > 0 ? n_ : 1) * sizeof(float));      \
        for (int side = 0; side < 2; side++) {                                 \
            arena A_ = {.be = side ? (be) : REF};                              \
            arena *A = &A_;                                                    \
            float *res = side ? res_be : res_ref;                              \
            __VA_ARGS__;                                                       \
            a_free(A);                                                         \
        }                                                                      \
        compare(kname, (be)->name, shape, res_be, res_ref, n_, (rtol), (atol)); \
        free(res_ref);                                                         \
        free(res_be);                                                          \
    } while (0)

/* --------------------------------------------------------- the cases ---- */

static void check_table_complete(const cg_backend *be) {
    void *const entries[] = {
        (void *)be->alloc, (void *)be->free, (void *)be->upload, (void *)be->download, (void *)be->copy,
        (void *)be->sync, (void *)be->fill, (void *)be->rand_uniform, (void *)be->rand_normal, (void *)be->unary,
        (void *)be->binary, (void *)be->copy_strided, (void *)be->reduce_sum, (void *)be->gemm,
        (void *)be->conv_fwd, (void *)be->conv_bwd_data, (void *)be->conv_bwd_weight, (void *)be->layernorm_fwd,
        (void *)be->layernorm_bwd, (void *)be->sort_rows, (void *)be->gather_rows, (void *)be->scatter_rows,
        (void *)be->pointwise_layer, (void *)be->sgd_step, (void *)be->adam_step, (void *)be->rmsprop_step,
    };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        CHECK_MSG(entries[i] != NULL, "backend %s: table entry %zu is NULL", be->name, i);
}

static void case_random(const cg_backend *be) {
    /* The Philox stream: uniforms bit-identical, normals to float rounding of log/sin/cos. */
    int64_t n = 1000 + irand(0, 37);
    uint64_t seed = test_seed() ^ 0x5eed, ctr = (uint64_t)irand(0, 1000);
    ON_BOTH(be, n, 0, 0, "rand_uniform", "", {
        float *o = a_out(A, n);
        A->be->rand_uniform(o, n, seed, ctr, -2.0f, 3.0f);
        a_down(A, res, o, n);
    });
    ON_BOTH(be, n, 1e-5, 1e-6, "rand_normal", "", {
        float *o = a_out(A, n);
        A->be->rand_normal(o, n, seed, ctr, 0.5f, 2.0f);
        a_down(A, res, o, n);
    });
}

static void case_unary(const cg_backend *be) {
    int64_t n = 4097;
    for (int op = 0; op < CG_U_NUM; op++) {
        int positive = op == CG_U_LOG || op == CG_U_SQRT || op == CG_U_RSQRT || op == CG_U_POW || op == CG_U_RECIP;
        float *x = h_rand(n, positive ? 0.05f : -4.0f, 4.0f);
        char name[32];
        snprintf(name, sizeof name, "unary %d", op);
        ON_BOTH(be, n, 2e-6, 1e-7, name, "", {
            float *dx = a_up(A, x, n), *o = a_out(A, n);
            A->be->unary((cg_unary_op)op, o, dx, n, op == CG_U_CLAMP ? -1.0f : 0.3f, 1.5f);
            a_down(A, res, o, n);
        });
        free(x);
    }
}

static void case_binary_strided(const cg_backend *be) {
    for (int trial = 0; trial < 6; trial++) {
        cg_bcast_desc d = {.ndim = irand(1, 5)};
        int64_t na = 1, nb = 1;
        for (int i = d.ndim - 1; i >= 0; i--) {
            d.shape[i] = irand(1, 7);
            int ba = irand(0, 3) == 0, bb = irand(0, 3) == 0; /* broadcast some axes */
            d.sa[i] = ba ? 0 : na;
            d.sb[i] = bb ? 0 : nb;
            na *= ba ? 1 : d.shape[i];
            nb *= bb ? 1 : d.shape[i];
        }
        int64_t n = cg_shape_numel(d.ndim, d.shape);
        float *a = h_rand(na, -2, 2), *b = h_rand(nb, 0.5f, 2);
        for (int op = 0; op < CG_B_NUM; op++) {
            ON_BOTH(be, n, 1e-6, 1e-7, "binary", "", {
                float *da = a_up(A, a, na), *db = a_up(A, b, nb), *o = a_out(A, n);
                A->be->binary((cg_binary_op)op, o, da, db, &d);
                a_down(A, res, o, n);
            });
        }
        /* copy_strided: a permuted read of a contiguous source */
        cg_strided_desc c = {.ndim = d.ndim};
        int64_t s = 1;
        for (int i = d.ndim - 1; i >= 0; i--) {
            c.shape[i] = d.shape[d.ndim - 1 - i];
            c.sdst[i] = s;
            s *= c.shape[i];
        }
        int64_t s2 = 1;
        for (int i = 0; i < d.ndim; i++) { c.ssrc[i] = s2; s2 *= c.shape[i]; }
        float *csrc = h_rand(n, -2, 2);
        ON_BOTH(be, n, 0, 0, "copy_strided", "", {
            float *src = a_up(A, csrc, n), *o = a_out(A, n);
            A->be->copy_strided(o, src, &c);
            a_down(A, res, o, n);
        });
        free(csrc);
        free(a);
        free(b);
    }
}

static void case_reduce(const cg_backend *be) {
    for (int trial = 0; trial < 8; trial++) {
        int nd = irand(1, 5);
        int64_t shape[5];
        for (int i = 0; i < nd; i++) shape[i] = irand(1, 9);
        if (trial == 0) { nd = 2; shape[0] = 3; shape[1] = 50000; } /* long rows */
        unsigned axes = (unsigned)irand(0, (1 << nd) - 1);
        int64_t n = cg_shape_numel(nd, shape), no = 1;
        for (int i = 0; i < nd; i++) no *= ((axes >> i) & 1u) ? 1 : shape[i];
        float *x = h_rand(n, -1, 1);
        ON_BOTH(be, no, 1e-5, 1e-6, "reduce_sum", "", {
            float *dx = a_up(A, x, n), *o = a_out(A, no);
            A->be->reduce_sum(o, dx, nd, shape, axes);
            a_down(A, res, o, no);
        });
        free(x);
    }
}

/* Reductions and broadcasts on the shapes a training step has (the AVX2 kernels take
 * large inputs; small ones go to the reference): a bias gradient (sum over N and the
 * voxels), a sum over the batch, a total, a sum over rows of odd length; per-channel and
 * per-voxel broadcasts. */
static void case_reduce_binary_more(const cg_backend *be) {
    static const int64_t shapes[][5] = {{3, 5, 9, 10, 11}, {4, 1, 7, 30, 30}, {50, 1, 1, 1, 2001}, {1, 1, 1, 1, 70001},
                                        {2, 3, 5, 7, 311}};
    static const unsigned axes[] = {0x1D, 0x01, 0x01, 0x1F, 0x10, 0x0A, 0x15};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t ai = 0; ai < sizeof axes / sizeof axes[0]; ai++) {
            int64_t n = cg_shape_numel(5, shapes[si]), no = 1;
            if (n < 32768) continue;
            for (int i = 0; i < 5; i++) no *= ((axes[ai] >> i) & 1u) ? 1 : shapes[si][i];
            float *x = h_rand(n, -1, 1);
            char shape[96];
            snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lldx%lld axes 0x%x", (long long)shapes[si][0],
                     (long long)shapes[si][1], (long long)shapes[si][2], (long long)shapes[si][3],
                     (long long)shapes[si][4], axes[ai]);
            ON_BOTH(be, no, 1e-5, 1e-6, "reduce_sum", shape, {
                float *dx = a_up(A, x, n), *o = a_out(A, no);
                A->be->reduce_sum(o, dx, 5, shapes[si], axes[ai]);
                a_down(A, res, o, no);
            });
            free(x);
        }
    /* (B, C, V) op (1, C, 1), (B, C, V) op (1, 1, V), (B, C, V) op (B, C, V) */
    int64_t B = 3, C = 5, V = 1003, n = B * C * V;
    cg_bcast_desc ds[3] = {
        {.ndim = 3, .shape = {B, C, V}, .sa = {C * V, V, 1}, .sb = {0, 1, 0}},
        {.ndim = 3, .shape = {B, C, V}, .sa = {C * V, V, 1}, .sb = {0, 0, 1}},
        {.ndim = 3, .shape = {B, C, V}, .sa = {0, 0, 1}, .sb = {C * V, V, 1}},
    };
    float *a = h_rand(n, -2, 2), *b = h_rand(n, 0.5f, 2);
    for (int i = 0; i < 3; i++)
        for (int op = 0; op < CG_B_NUM; op++)
            ON_BOTH(be, n, 0, 0, "binary (bit-identical)", "", {
                float *da = a_up(A, a, n), *db = a_up(A, b, n), *o = a_out(A, n);
                A->be->binary((cg_binary_op)op, o, da, db, &ds[i]);
                a_down(A, res, o, n);
            });
    free(a);
    free(b);
}

static void case_gemm(const cg_backend *be) {
    for (int trial = 0; trial < 10; trial++) {
        int ta = irand(0, 1), tb = irand(0, 1);
        int64_t M = irand(1, 70), N = irand(1, 70), K = irand(1, 300), batch = irand(1, 3);
        if (trial == 0) { M = 128; N = 128; K = 192; }
        int64_t lda = (ta ? M : K) + irand(0, 3), ldb = (tb ? K : N) + irand(0, 3), ldc = N + irand(0, 3);
        int64_t sA = (ta ? K : M) * lda, sB = (tb ? N : K) * ldb, sC = M * ldc;
        if (irand(0, 2) == 0) sB = 0; /* broadcast B across the batch */
        float alpha = irand(0, 1) ? 1.0f : -0.5f, beta = irand(0, 1) ? 0.0f : 0.7f;
        int64_t nA = sA * batch, nB = sB ? sB * batch : (tb ? N : K) * ldb, nC = sC * batch;
        float *a = h_rand(nA, -1, 1), *b = h_rand(nB, -1, 1), *c0 = h_rand(nC, -1, 1);
        char shape[96];
        snprintf(shape, sizeof shape, "M%lld N%lld K%lld ta%d tb%d batch%lld", (long long)M, (long long)N,
                 (long long)K, ta, tb, (long long)batch);
        ON_BOTH(be, nC, 1e-5, 1e-6, "gemm", shape, {
            float *da = a_up(A, a, nA), *db = a_up(A, b, nB), *dc = a_up(A, c0, nC);
            A->be->gemm(ta, tb, M, N, K, alpha, da, lda, sA, db, ldb, sB, beta, dc, ldc, sC, batch);
            a_down(A, res, dc, nC);
        });
        g_flops_checked += 2.0 * M * N * K * batch;
        free(a);
        free(b);
        free(c0);
    }
}

/* Linear-layer shapes: x·Wᵀ with long rows and a K that is not a multiple of 8, and the
 * two backward products, with N not a multiple of 8 (the staged tail). */
static void case_gemm_linear(const cg_backend *be) {
    static const int64_t shapes[][5] = {
        /* ta, tb, M, N, K */
        {0, 1, 5, 37, 1001}, {0, 0, 5, 1001, 37}, {1, 0, 37, 1001, 5}, {1, 1, 9, 13, 17}, {0, 0, 1, 3, 1},
        {0, 1, 64, 24, 2000},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int ta = (int)shapes[i][0], tb = (int)shapes[i][1];
        int64_t M = shapes[i][2], N = shapes[i][3], K = shapes[i][4];
        int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
        float *a = h_rand(M * K, -1, 1), *b = h_rand(K * N, -1, 1), *c0 = h_rand(M * N, -1, 1);
        float beta = i % 2 ? 0.5f : 0.0f;
        char shape[96];
        snprintf(shape, sizeof shape, "M%lld N%lld K%lld ta%d tb%d", (long long)M, (long long)N, (long long)K, ta, tb);
        ON_BOTH(be, M * N, 1e-5, 1e-6, "gemm", shape, {
            float *da = a_up(A, a, M * K), *db = a_up(A, b, K * N), *dc = a_up(A, c0, M * N);
            A->be->gemm(ta, tb, M, N, K, 0.75f, da, lda, 0, db, ldb, 0, beta, dc, ldc, 0, 1);
            a_down(A, res, dc, M * N);
        });
        g_flops_checked += 2.0 * M * N * K;
        free(a);
        free(b);
        free(c0);
    }
}

/* A conv output element sums K = Ci·k³ (or N·out³ for the weight gradient) products, and
 * the fp32 kernels sum them in another order than the double-precision oracle. Where the
 * products nearly cancel, the element is small against its partial sums and its error,
 * relative to itself, reaches ~1e-4 (seen: a 64-channel k3 backward-data element 0.74 off
 * by 5.7e-5). So the absolute part of the tolerance scales with the output's largest
 * magnitude (its partial sums' scale): 1e-5 of it, ~100x above fp32 summation error and
 * ~1e4x below what a wrong tap or index produces. */
#define CONV_ATOL 1e-5

/* The conv shapes of the seed models (k4 s2 p1/p2, k3 s1 p1, k2 s2, k1, k5 p2, the
 * (10,2,2)-style anisotropic critic kernels, k3 s3 p1 deconvs) plus random odd ones. */
static void conv_case(const cg_backend *be, cg_conv_desc c) {
    for (int d = 0; d < 3; d++) c.out[d] = (c.in[d] + 2 * c.pad[d] - c.k[d]) / c.stride[d] + 1;
    int64_t nx = c.N * c.Ci * c.in[0] * c.in[1] * c.in[2];
    int64_t nw = (int64_t)c.Co * c.Ci * c.k[0] * c.k[1] * c.k[2];
    int64_t ny = c.N * c.Co * c.out[0] * c.out[1] * c.out[2];
    float *x = h_rand(nx, -1, 1), *w = h_rand(nw, -1, 1), *bias = h_rand(c.Co, -1, 1), *dy = h_rand(ny, -1, 1);
    char shape[160];
    snprintf(shape, sizeof shape, "N%lld Ci%d Co%d in %dx%dx%d k %dx%dx%d s %d,%d,%d p %d,%d,%d", (long long)c.N,
             c.Ci, c.Co, c.in[0], c.in[1], c.in[2], c.k[0], c.k[1], c.k[2], c.stride[0], c.stride[1], c.stride[2],
             c.pad[0], c.pad[1], c.pad[2]);
    int with_bias = irand(0, 1);
    ON_BOTH(be, ny, 1e-5, CONV_ATOL, "conv_fwd", shape, {
        float *dx = a_up(A, x, nx), *dw = a_up(A, w, nw), *db = a_up(A, bias, c.Co), *o = a_out(A, ny);
        A->be->conv_fwd(o, dx, dw, with_bias ? db : NULL, &c);
        a_down(A, res, o, ny);
    });
    ON_BOTH(be, nx, 1e-5, CONV_ATOL, "conv_bwd_data", shape, {
        float *ddy = a_up(A, dy, ny), *dw = a_up(A, w, nw), *o = a_out(A, nx);
        A->be->conv_bwd_data(o, ddy, dw, &c);
        a_down(A, res, o, nx);
    });
    ON_BOTH(be, nw, 1e-5, CONV_ATOL, "conv_bwd_weight", shape, {
        float *dx = a_up(A, x, nx), *ddy = a_up(A, dy, ny), *o = a_out(A, nw);
        A->be->conv_bwd_weight(o, dx, ddy, &c);
        a_down(A, res, o, nw);
    });
    g_flops_checked += 3 * 2.0 * (double)ny * c.Ci * c.k[0] * c.k[1] * c.k[2];
    free(x);
    free(w);
    free(bias);
    free(dy);
}

static cg_conv_desc conv_desc(int64_t N, int Ci, int Co, int D, int H, int W, int k0, int k1, int k2, int s0,
                              int s1, int s2, int p0, int p1, int p2) {
    cg_conv_desc c = {.N = N, .Ci = Ci, .Co = Co, .in = {D, H, W}, .k = {k0, k1, k2},
                      .stride = {s0, s1, s2}, .pad = {p0, p1, p2}};
    return c;
}

static void case_conv(const cg_backend *be) {
    conv_case(be, conv_desc(2, 1, 8, 30, 30, 30, 4, 4, 4, 2, 2, 2, 2, 2, 2));    /* BIB-AE enconv1 */
    conv_case(be, conv_desc(1, 16, 8, 9, 9, 9, 3, 3, 3, 1, 1, 1, 1, 1, 1));      /* k3 s1 p1, batch 1 */
    conv_case(be, conv_desc(2, 13, 6, 7, 8, 9, 4, 4, 4, 2, 2, 2, 1, 1, 1));      /* k4 s2 p1, odd */
    conv_case(be, conv_desc(2, 16, 8, 12, 12, 12, 2, 2, 2, 2, 2, 2, 0, 0, 0));   /* conv0 k2 s2 */
    conv_case(be, conv_desc(2, 9, 12, 5, 6, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0));      /* k1 (post-processor) */
    conv_case(be, conv_desc(1, 5, 3, 9, 9, 9, 5, 5, 5, 1, 1, 1, 2, 2, 2));       /* 3DGAN k5 p2 */
    conv_case(be, conv_desc(2, 1, 4, 30, 12, 12, 10, 2, 2, 1, 2, 2, 0, 1, 1));   /* WGAN critic (10,2,2) */
    conv_case(be, conv_desc(2, 8, 8, 12, 12, 12, 3, 3, 3, 3, 3, 3, 1, 1, 1));    /* deconv1's conv k3 s3 */
    for (int t = 0; t < 6; t++) {
        cg_conv_desc c = {.N = irand(1, 3), .Ci = irand(1, 11), .Co = irand(1, 11)};
        for (int d = 0; d < 3; d++) {
            c.k[d] = irand(1, 5);
            c.stride[d] = irand(1, 3);
            c.pad[d] = irand(0, c.k[d] - 1);
            c.in[d] = irand(c.k[d] > 2 * c.pad[d] ? c.k[d] - 2 * c.pad[d] : 1, 11);
        }
        conv_case(be, c);
    }
}

/* More conv shapes for the AVX2 kernels (issue 3): the layer suite's channel counts,
 * kernels and strides at reduced extent and batch 1, channel counts that are not
 * multiples of 8, padding edges (0, k-1, k and more), 1x1 kernels whose voxel count is and
 * is not a multiple of 8, rows wider than one register tile, 2-D convs, and a stride the
 * AVX2 backward-data hands to the reference (4). The full-size layer suite runs in the
 * slow test (case_conv_layer_suite). */
static void case_conv_more(const cg_backend *be) {
    /* the layer suite, extents 30 -> 11, 15 -> 7, 25 -> 9, batch 1 */
    conv_case(be, conv_desc(1, 1, 32, 11, 11, 11, 4, 4, 4, 2, 2, 2, 1, 1, 1));
    conv_case(be, conv_desc(1, 32, 32, 11, 11, 11, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(1, 32, 64, 11, 11, 11, 4, 4, 4, 2, 2, 2, 1, 1, 1));
    conv_case(be, conv_desc(1, 64, 64, 7, 7, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(1, 32, 64, 14, 14, 14, 4, 4, 4, 2, 2, 2, 1, 1, 1)); /* ct4s2 64->32, 7 -> 14 */
    conv_case(be, conv_desc(1, 1, 32, 11, 11, 11, 3, 3, 3, 1, 1, 1, 1, 1, 1));  /* ct3 32->1 */
    conv_case(be, conv_desc(1, 2, 128, 11, 11, 11, 1, 1, 1, 1, 1, 1, 0, 0, 0)); /* k1, 1331 voxels */
    conv_case(be, conv_desc(1, 128, 128, 8, 8, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0));  /* k1, 512 voxels: in place */
    conv_case(be, conv_desc(1, 8, 8, 9, 9, 9, 5, 5, 5, 1, 1, 1, 2, 2, 2));
    /* channel counts that are not multiples of 8 */
    conv_case(be, conv_desc(2, 3, 5, 8, 9, 10, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(1, 7, 9, 11, 10, 9, 4, 4, 4, 2, 2, 2, 1, 1, 1));
    conv_case(be, conv_desc(2, 13, 11, 10, 10, 10, 3, 3, 3, 3, 3, 3, 1, 1, 1));
    conv_case(be, conv_desc(1, 9, 3, 10, 8, 12, 2, 2, 2, 2, 2, 2, 0, 0, 0));
    conv_case(be, conv_desc(1, 5, 7, 9, 9, 9, 5, 5, 5, 1, 1, 1, 2, 2, 2));
    /* padding edges: none (valid), k-1 (full), k and beyond (zero borders) */
    conv_case(be, conv_desc(1, 4, 6, 7, 8, 9, 3, 3, 3, 1, 1, 1, 0, 0, 0));
    conv_case(be, conv_desc(1, 4, 6, 5, 6, 7, 3, 3, 3, 1, 1, 1, 2, 2, 2));
    conv_case(be, conv_desc(1, 3, 5, 4, 5, 6, 3, 3, 3, 2, 1, 2, 3, 4, 3));
    conv_case(be, conv_desc(2, 6, 4, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(1, 5, 6, 7, 7, 7, 4, 4, 4, 2, 2, 2, 2, 2, 2));   /* BIB-AE encoder p2 */
    /* 1x1 with stride 2; wide rows (several tiles per row); a 2-D conv; stride 4 */
    conv_case(be, conv_desc(1, 6, 10, 8, 9, 10, 1, 1, 1, 2, 2, 2, 0, 0, 0));
    conv_case(be, conv_desc(1, 3, 4, 3, 4, 70, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(2, 5, 6, 1, 12, 13, 1, 3, 3, 1, 1, 1, 0, 1, 1));
    conv_case(be, conv_desc(1, 4, 3, 9, 9, 9, 4, 4, 4, 4, 4, 4, 0, 0, 0));
    /* anisotropic strides and kernels */
    conv_case(be, conv_desc(1, 3, 5, 9, 10, 11, 3, 2, 4, 1, 2, 3, 1, 0, 2));
    /* few input channels (backward-data as a product and a gather), strides 1 to 3 along w */
    conv_case(be, conv_desc(2, 2, 5, 9, 10, 11, 3, 3, 3, 3, 3, 3, 1, 1, 1));
    conv_case(be, conv_desc(1, 1, 6, 8, 9, 13, 2, 3, 4, 1, 2, 2, 0, 1, 2));
    conv_case(be, conv_desc(2, 3, 4, 6, 7, 8, 3, 3, 3, 1, 1, 1, 2, 2, 2));
    /* 1x1 convs with 16 or more channels (the packed GEMMs of avx2_conv1x1.c): voxel
     * counts that are not multiples of 8, 16 or 24 and smaller than one panel, channel
     * counts that are not multiples of 4, 6 or 8 on either side, batch 1 */
    conv_case(be, conv_desc(1, 19, 23, 5, 7, 9, 1, 1, 1, 1, 1, 1, 0, 0, 0));
    conv_case(be, conv_desc(2, 128, 37, 3, 5, 11, 1, 1, 1, 1, 1, 1, 0, 0, 0));
    conv_case(be, conv_desc(1, 16, 130, 4, 4, 4, 1, 1, 1, 1, 1, 1, 0, 0, 0));
    conv_case(be, conv_desc(3, 33, 17, 1, 1, 1001, 1, 1, 1, 1, 1, 1, 0, 0, 0));
    conv_case(be, conv_desc(1, 16, 16, 1, 1, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0));
    conv_case(be, conv_desc(2, 24, 20, 8, 8, 9, 1, 1, 1, 1, 1, 1, 0, 0, 0));
    for (int t = 0; t < 3; t++)
        conv_case(be, conv_desc(irand(1, 3), irand(16, 70), irand(16, 70), irand(1, 9), irand(1, 9), irand(1, 40), 1,
                                1, 1, 1, 1, 1, 0, 0, 0));
}

/* The layer suite at full extent (bench/layer_suite.h, the table the benchmarks
 * time), batch 1 (slow: the reference is plain loops); a transposed case as the conv it
 * transposes, whose three passes are the transposed conv's three. */
static void case_conv_layer_suite(const cg_backend *be) {
    for (int i = 0; i < CG_LAYER_SUITE_N; i++) conv_case(be, cg_layer_case_desc(&CG_LAYER_SUITE[i], 1));
}

/* The channel-lane convolutions (avx2_conv_cl.c: 16·n output channels for the forward, any
 * stride up to 8; 16·n input channels and stride 1 for backward-data), forced on for every shape they can take
 * (CG_AVX2_CL=1; by default only rows that waste lanes): the suite's 15³ and 30³ layers at
 * reduced size, padding 0 / k-1 / beyond k-1 (forward only: backward-data declines),
 * anisotropic kernels and strides, a 2-D conv, one input channel, batch 3, rows of 1
 * voxel, classes of every size (left-over positions in mixed tiles). Without AVX2 the variable changes nothing. */
static void case_conv_cl(const cg_backend *be) {
    setenv("CG_AVX2_CL", "1", 1);
    conv_case(be, conv_desc(1, 64, 64, 7, 7, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(2, 32, 32, 11, 10, 9, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(3, 16, 16, 5, 6, 7, 3, 3, 3, 1, 1, 1, 0, 0, 0));
    conv_case(be, conv_desc(1, 16, 32, 6, 5, 7, 3, 3, 3, 1, 1, 1, 2, 2, 2));
    conv_case(be, conv_desc(1, 16, 16, 4, 5, 6, 3, 3, 3, 1, 1, 1, 3, 4, 3)); /* pad past k-1 */
    conv_case(be, conv_desc(1, 32, 16, 9, 10, 11, 3, 2, 4, 1, 1, 1, 1, 0, 2));
    conv_case(be, conv_desc(2, 16, 48, 1, 12, 13, 1, 3, 3, 1, 1, 1, 0, 1, 1));
    conv_case(be, conv_desc(1, 1, 32, 9, 9, 9, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(1, 16, 16, 6, 7, 1, 5, 5, 1, 1, 1, 1, 2, 2, 0));
    conv_case(be, conv_desc(1, 8, 16, 9, 9, 9, 5, 5, 5, 1, 1, 1, 2, 2, 2));
    /* strides (the forward only; backward-data of strides > 1 declines) */
    conv_case(be, conv_desc(2, 32, 64, 7, 7, 7, 4, 4, 4, 2, 2, 2, 1, 1, 1));   /* c4s2 */
    conv_case(be, conv_desc(1, 1, 32, 11, 12, 13, 4, 4, 4, 2, 2, 2, 1, 1, 1)); /* enc_c1 */
    conv_case(be, conv_desc(1, 5, 16, 9, 10, 11, 3, 2, 4, 1, 2, 3, 1, 0, 2));
    conv_case(be, conv_desc(1, 3, 16, 10, 10, 10, 3, 3, 3, 3, 3, 3, 1, 1, 1));
    conv_case(be, conv_desc(1, 4, 16, 5, 6, 7, 3, 3, 3, 2, 1, 2, 3, 4, 3));   /* pad past k-1 */
    unsetenv("CG_AVX2_CL");
}

/* The thin-input backward-data (avx2_conv_thin.c, Ci <= 3; 4 goes to the correlation). */
static void case_conv_thin(const cg_backend *be) {
    /* each channel count 1..4, batch 1, odd extents, padding 0 to k-1 and beyond, strides
     * 1..3 per axis, rows shorter than a vector and rows of several chunks, and random
     * shapes of the same family */
    conv_case(be, conv_desc(1, 1, 32, 13, 11, 15, 4, 4, 4, 2, 2, 2, 1, 1, 1));
    conv_case(be, conv_desc(1, 2, 7, 9, 8, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(2, 3, 9, 7, 9, 11, 4, 3, 5, 2, 3, 1, 2, 0, 3));
    conv_case(be, conv_desc(1, 4, 5, 5, 6, 7, 3, 3, 3, 3, 2, 3, 1, 2, 0));
    conv_case(be, conv_desc(1, 1, 3, 5, 4, 3, 2, 2, 2, 1, 1, 1, 1, 1, 1));
    conv_case(be, conv_desc(1, 1, 4, 3, 40, 70, 3, 3, 3, 1, 2, 3, 1, 1, 1));
    conv_case(be, conv_desc(1, 2, 3, 3, 4, 601, 3, 3, 3, 1, 1, 2, 1, 1, 1)); /* rows of > 256 outputs */
    for (int t = 0; t < 4; t++) {
        cg_conv_desc c = {.N = irand(1, 2), .Ci = irand(1, 4), .Co = irand(1, 12)};
        for (int d = 0; d < 3; d++) {
            c.k[d] = irand(2, 5);
            c.stride[d] = irand(1, 3);
            c.pad[d] = irand(0, c.k[d]);
            c.in[d] = irand(c.k[d] > 2 * c.pad[d] ? c.k[d] - 2 * c.pad[d] : 1, 12);
        }
        conv_case(be, c);
    }
}

static void case_layernorm(const cg_backend *be) {
    for (int trial = 0; trial < 6; trial++) {
        int64_t rows = irand(1, 40), cols = irand(1, 3000);
        if (trial == 0) { rows = 16; cols = 27000; } /* (B·C, 30³) */
        int affine = irand(0, 1), act = trial == 1 || irand(0, 1); /* act: the leaky ReLU inside */
        const float slope = 0.2f;
        int64_t n = rows * cols;
        float *x = h_rand(n, -3, 5), *g = h_rand(cols, 0.5f, 1.5f), *b = h_rand(cols, -1, 1), *dy = h_rand(n, -1, 1);
        float *mean = malloc((size_t)rows * sizeof(float)), *rstd = malloc((size_t)rows * sizeof(float));
        float *scratch = malloc((size_t)n * sizeof(float));
        cg_ref_layernorm_fwd(scratch, mean, rstd, x, NULL, NULL, rows, cols, 1e-5f, 0, 0.0f); /* stats for bwd */
        if (act) { /* no n within 1e-3 of 0, where float and double could disagree on its sign */
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    float gm = affine ? g[c] : 1.0f, bt = affine ? b[c] : 0.0f;
                    double nv = ((double)x[r * cols + c] - mean[r]) * rstd[r] * gm + bt;
                    if (fabs(nv) < 1e-3) x[r * cols + c] += (float)((nv < 0 ? -2e-3 : 2e-3) / (rstd[r] * gm));
                }
            cg_ref_layernorm_fwd(scratch, mean, rstd, x, NULL, NULL, rows, cols, 1e-5f, 0, 0.0f);
        }
        free(scratch);
        char shape[64];
        snprintf(shape, sizeof shape, "rows %lld cols %lld affine %d act %d", (long long)rows, (long long)cols, affine, act);
        ON_BOTH(be, n, 2e-5, 1e-6, "layernorm_fwd", shape, {
            float *dx = a_up(A, x, n), *dg = a_up(A, g, cols), *db = a_up(A, b, cols);
            float *o = a_out(A, n), *m = a_out(A, rows), *r = a_out(A, rows);
            A->be->layernorm_fwd(o, m, r, dx, affine ? dg : NULL, affine ? db : NULL, rows, cols, 1e-5f, act, slope);
            a_down(A, res, o, n);
        });
        /* dx = rstd·(g·dy - mean(g·dy) - x̂·mean(g·dy·x̂)) is evaluated in float per element
         * (the reference in double): its terms are as large as dx's largest elements and
         * cancel, so an element near 0 carries an absolute error of a few ulp of those
         * (seen: 2e-6 of the largest once in ~hundreds of runs) */
        ON_BOTH(be, n, 1e-4, 1e-5, "layernorm_bwd dx", shape, {
            float *dx = a_up(A, x, n), *dg = a_up(A, g, cols), *db = a_up(A, b, cols), *ddy = a_up(A, dy, n);
            float *m = a_up(A, mean, rows), *r = a_up(A, rstd, rows), *o = a_out(A, n);
            A->be->layernorm_bwd(o, NULL, NULL, ddy, dx, m, r, affine ? dg : NULL, affine ? db : NULL, rows, cols, act,
                                 slope);
            a_down(A, res, o, n);
        });
        ON_BOTH(be, 2 * cols, 1e-4, 1e-6, "layernorm_bwd dgamma/dbeta", shape, {
            float *dx = a_up(A, x, n), *dg = a_up(A, g, cols), *db = a_up(A, b, cols), *ddy = a_up(A, dy, n);
            float *m = a_up(A, mean, rows), *r = a_up(A, rstd, rows), *o = a_out(A, 2 * cols);
            A->be->layernorm_bwd(NULL, o, o + cols, ddy, dx, m, r, affine ? dg : NULL, affine ? db : NULL, rows, cols,
                                 act, slope); /* the parameters the nudge above assumed */
            a_down(A, res, o, 2 * cols);
        });
        free(x); free(g); free(b); free(dy); free(mean); free(rstd);
    }
}

static void case_sort(const cg_backend *be) {
    for (int trial = 0; trial < 4; trial++) {
        int64_t rows = irand(1, 8), cols = trial == 0 ? 27000 : irand(1, 500);
        int64_t n = rows * cols;
        float *x = h_rand(n, -1, 1);
        for (int64_t i = 0; i < n; i += 7) x[i] = 0.25f; /* ties: index order decides */
        int desc = irand(0, 1);
        int32_t *idx_ref = malloc((size_t)n * sizeof(int32_t));
        cg_ref_sort_rows(NULL, idx_ref, x, rows, cols, desc);
        float *g = h_rand(n, -1, 1);
        ON_BOTH(be, n, 0, 0, "sort_rows", "", {
            float *dx = a_up(A, x, n), *v = a_out(A, n);
            int32_t *ix = a_alloc(A, (size_t)n * sizeof(int32_t));
            A->be->sort_rows(v, ix, dx, rows, cols, desc);
            /* the permutation itself must match exactly: gather with it */
            float *dg = a_up(A, g, n), *o = a_out(A, n);
            A->be->gather_rows(o, dg, ix, rows, cols);
            a_down(A, res, o, n);
        });
        ON_BOTH(be, n, 0, 0, "scatter_rows", "", {
            float *dg = a_up(A, g, n), *o = a_out(A, n);
            int32_t *ix = a_up_bytes(A, idx_ref, (size_t)n * sizeof(int32_t));
            A->be->scatter_rows(o, dg, ix, rows, cols);
            a_down(A, res, o, n);
        });
        free(x);
        free(g);
        free(idx_ref);
    }
}

static void case_pointwise(const cg_backend *be) {
    for (int trial = 0; trial < 9; trial++) {
        int64_t B = irand(1, 3), V = irand(1, 700);
        int Ci = irand(1, 40), Co = irand(1, 40);
        /* expand: x has one channel, expanded to Ci by x_scale/x_shift; proj: the Co -> 1 layer after */
        int expand = irand(0, 3) == 0, proj = irand(0, 3) == 0;
        if (trial == 0) { B = 2; V = 27000; Ci = 128; Co = 128; expand = proj = 0; } /* the post-processor's shape */
        if (trial == 1) { B = 1; V = 1000; Ci = 1; Co = 128; expand = proj = 0; }    /* its first layer */
        if (trial == 2) { B = 2; V = 300; Ci = 128; Co = 1; expand = proj = 0; }     /* its last layer */
        if (trial == 3) { B = 2; V = 3000; Ci = 128; Co = 128; expand = 1; proj = 0; } /* conv1 in conv2 */
        if (trial == 4) { B = 2; V = 3000; Ci = 128; Co = 128; expand = 0; proj = 1; } /* conv5 + conv6 */
        if (trial == 5) { B = 2; V = 333; Ci = 20; Co = 150; proj = 1; } /* a column taller than a GPU tile */
        /* trial 6 (below: statistics of outputs far from zero) draws Ci independent channels:
         * an expanded input is one channel, scaled, and its spread can be small enough for
         * the outputs' rounding at 1000 to show in rstd */
        if (trial == 6) expand = 0;
        int norm = irand(0, 1) || trial == 0 || trial == 3, act = irand(0, 1) || trial >= 3, bb = irand(0, 1);
        int stats = !proj && irand(0, 1), shift = irand(0, 3) != 0;
        const int64_t nx = B * (expand ? 1 : Ci) * V;
        float *x = h_rand(nx, -2, 2), *w = h_rand((int64_t)Co * Ci, -0.5f, 0.5f), *bias = h_rand(Co, -1, 1);
        float *xm = h_rand(B * Ci, -0.5f, 0.5f), *xr = h_rand(B * Ci, 0.5f, 2), *g = h_rand(V, 0.5f, 1.5f);
        float *bt = h_rand(V, -1, 1), *bpb = h_rand(B * Co, -1, 1), *xs = h_rand(Ci, -1.5f, 1.5f), *xt = h_rand(Ci, -1, 1);
        float *pj = h_rand(Co, -0.5f, 0.5f);
        if (trial == 6) { /* outputs with a mean far from zero: statistics without cancellation */
            stats = 1;
            proj = 0;
            for (int co = 0; co < Co; co++) bias[co] = 1000.0f + bias[co];
            /* ... and a spread far above the outputs' rounding (6e-5 at 1000): with a tiny
             * weight a single ulp of difference in one output would move rstd by more than
             * the tolerance, in any float implementation */
            for (int64_t i = 0; i < (int64_t)Co * Ci; i++) w[i] = w[i] < 0 ? w[i] - 0.25f : w[i] + 0.25f;
        }
        const int64_t ny = B * (proj ? 1 : Co) * V, nst = stats ? 2 * B * Co : 0;
        char pwshape[160];
        snprintf(pwshape, sizeof pwshape, "trial %d B%lld V%lld Ci%d Co%d norm%d act%d stats%d bb%d expand%d proj%d",
                 trial, (long long)B, (long long)V, Ci, Co, norm, act, stats, bb, expand, proj);
        /* a projection sums Co products of either sign: its rounding is relative to the
         * terms, not to their (possibly much smaller) sum */
        ON_BOTH(be, ny + nst, 2e-5, proj ? 4e-6 : 1e-6, "pointwise_layer", pwshape, {
            float *o = a_out(A, ny + nst);
            cg_pw_args pa = {.y = o, .y_mean = stats ? o + ny : NULL, .y_rstd = stats ? o + ny + B * Co : NULL,
                             .x = a_up(A, x, nx), .x_scale = expand ? a_up(A, xs, Ci) : NULL,
                             .x_shift = expand && shift ? a_up(A, xt, Ci) : NULL,
                             .x_mean = norm ? a_up(A, xm, B * Ci) : NULL, .x_rstd = norm ? a_up(A, xr, B * Ci) : NULL,
                             .gamma = norm ? a_up(A, g, V) : NULL, .beta = norm ? a_up(A, bt, V) : NULL,
                             .act = act, .slope = 0.01f, .w = a_up(A, w, (int64_t)Co * Ci), .bias = a_up(A, bias, Co),
                             .bias_b = bb ? a_up(A, bpb, B * Co) : NULL, .proj = proj ? a_up(A, pj, Co) : NULL,
                             .B = B, .Ci = Ci, .Co = Co, .V = V, .eps = 1e-5f};
            A->be->pointwise_layer(&pa);
            a_down(A, res, o, ny + nst);
        });
        g_flops_checked += 2.0 * B * V * Ci * Co;
        free(x); free(w); free(bias); free(xm); free(xr); free(g); free(bt); free(bpb); free(xs); free(xt); free(pj);
    }
}

static void case_optim(const cg_backend *be) {
    int64_t n = 3001;
    float *p = h_rand(n, -1, 1), *g = h_rand(n, -1, 1), *m = h_rand(n, -0.1f, 0.1f), *v = h_rand(n, 0, 0.1f);
    float scale = 0.7f;
    for (int variant = 0; variant < 2; variant++) {
        ON_BOTH(be, 2 * n, 2e-6, 1e-7, "sgd_step", "", {
            float *dp = a_up(A, p, n), *dm = a_up(A, m, n), *dg = a_up(A, g, n), *ds = a_up(A, &scale, 1);
            A->be->sgd_step(dp, dm, dg, variant ? ds : NULL, n, 0.1f, 0.9f, 0.1f, 1e-2f, variant, variant);
            a_down(A, res, dp, n);
            a_down(A, res + n, dm, n);
        });
        ON_BOTH(be, 3 * n, 2e-6, 1e-7, "adam_step", "", {
            float *dp = a_up(A, p, n), *dm = a_up(A, m, n), *dv = a_up(A, v, n), *dg = a_up(A, g, n);
            float *ds = a_up(A, &scale, 1);
            A->be->adam_step(dp, dm, dv, dg, variant ? ds : NULL, n, 1e-3f, 0.5f, 0.9f, 1e-8f, 1e-2f, variant, 7);
            a_down(A, res, dp, n);
            a_down(A, res + n, dm, n);
            a_down(A, res + 2 * n, dv, n);
        });
        ON_BOTH(be, 3 * n, 2e-6, 1e-7, "rmsprop_step", "", {
            float *dp = a_up(A, p, n), *dq = a_up(A, v, n), *db = a_up(A, m, n), *dg = a_up(A, g, n);
            float *ds = a_up(A, &scale, 1);
            A->be->rmsprop_step(dp, dq, db, dg, variant ? ds : NULL, n, 1e-2f, 0.99f, 1e-8f, 1e-3f,
                                variant ? 0.9f : 0.0f);
            a_down(A, res, dp, n);
            a_down(A, res + n, dq, n);
            a_down(A, res + 2 * n, db, n);
        });
    }
    free(p); free(g); free(m); free(v);
}

static const cg_backend *g_be;
static void test_all_kernels(void) {
    check_table_complete(g_be);
    case_random(g_be);
    case_unary(g_be);
    case_binary_strided(g_be);
    case_reduce(g_be);
    case_reduce_binary_more(g_be);
    case_gemm(g_be);
    case_gemm_linear(g_be);
    case_conv(g_be);
    case_conv_more(g_be);
    case_conv_thin(g_be);
    case_conv_cl(g_be);
    case_layernorm(g_be);
    case_sort(g_be);
    case_pointwise(g_be);
    case_optim(g_be);
}

/* Same inputs, same results, bit for bit: with 1, 2 and 3 threads and on a repeat (the
 * trainer's --resume test relies on it). Conv passes, the per-voxel layer with its
 * statistics, both GEMM paths and the other kernels with a reduction. */
static int64_t det_run(const cg_backend *be, int threads, float *out) {
    cg_threads_set(threads);
    static uint64_t seed;
    if (!seed) seed = test_seed() ^ 0xde7;
    cg_rng r = cg_rng_make(seed);
    int64_t n = 0;
#define DET_RAND(p, cnt) cg_philox_fill_uniform((p), (cnt), seed, cg_rng_take(&r, (cnt)), -1.0f, 1.0f)
    float *buf = malloc(sizeof(float) * 400000);
    cg_conv_desc cs[4] = {conv_desc(2, 16, 12, 13, 12, 14, 3, 3, 3, 1, 1, 1, 1, 1, 1),
                          conv_desc(3, 8, 16, 14, 14, 14, 4, 4, 4, 2, 2, 2, 1, 1, 1),
                          conv_desc(3, 20, 18, 9, 10, 13, 1, 1, 1, 1, 1, 1, 0, 0, 0),  /* packed 1x1 GEMMs */
                          conv_desc(3, 2, 16, 14, 13, 15, 4, 4, 4, 2, 2, 2, 1, 1, 1)}; /* few input channels */
    for (int i = 0; i < 4; i++) {
        cg_conv_desc c = cs[i];
        for (int d = 0; d < 3; d++) c.out[d] = (c.in[d] + 2 * c.pad[d] - c.k[d]) / c.stride[d] + 1;
        int64_t nx = c.N * c.Ci * c.in[0] * c.in[1] * c.in[2], ny = c.N * c.Co * c.out[0] * c.out[1] * c.out[2];
        int64_t nw = (int64_t)c.Co * c.Ci * c.k[0] * c.k[1] * c.k[2];
        float *x = buf, *w = x + nx, *dy = w + nw;
        CG_ASSERT(nx + nw + ny < 400000);
        DET_RAND(x, nx);
        DET_RAND(w, nw);
        DET_RAND(dy, ny);
        be->conv_fwd(out + n, x, w, NULL, &c);
        n += ny;
        be->conv_bwd_data(out + n, dy, w, &c);
        n += nx;
        be->conv_bwd_weight(out + n, x, dy, &c);
        n += nw;
    }
    {
        int64_t B = 2, V = 3000, Ci = 40, Co = 33;
        float *x = buf, *w = x + B * Ci * V, *st = w + Co * Ci;
        DET_RAND(x, B * Ci * V);
        DET_RAND(w, Co * Ci);
        DET_RAND(st, 2 * B * Ci);
        for (int64_t i = 0; i < B * Ci; i++) st[B * Ci + i] = 1.5f + st[B * Ci + i];
        be->pointwise_layer(&(cg_pw_args){.y = out + n, .y_mean = out + n + B * Co * V,
                                          .y_rstd = out + n + B * Co * V + B * Co, .x = x, .x_mean = st,
                                          .x_rstd = st + B * Ci, .act = 1, .slope = 0.01f, .w = w, .B = B,
                                          .Ci = (int)Ci, .Co = (int)Co, .V = V, .eps = 1e-5f});
        n += B * Co * V + 2 * B * Co;
    }
    for (int tb = 0; tb < 2; tb++) {
        int64_t M = 7, N = 33, K = 3001;
        float *a = buf, *b = a + M * K;
        DET_RAND(a, M * K + K * N);
        be->gemm(0, tb, M, N, K, 1.0f, a, K, 0, b, tb ? K : N, 0, 0.0f, out + n, N, 0, 1);
        n += M * N;
    }
    {
        int64_t rows = 5, cols = 27001, shape[2] = {rows, cols};
        float *x = buf, *dy = x + rows * cols;
        DET_RAND(x, 2 * rows * cols);
        be->reduce_sum(out + n, x, 2, shape, 2u);
        n += rows;
        be->layernorm_fwd(out + n, out + n + rows * cols, out + n + rows * cols + rows, x, NULL, NULL, rows, cols, 1e-5f,
                          1, 0.2f);
        float *mean = out + n + rows * cols, *rstd = mean + rows;
        n += rows * cols + 2 * rows;
        be->layernorm_bwd(out + n, out + n + rows * cols, out + n + rows * cols + cols, dy, x, mean, rstd, x, x, rows,
                          cols, 1, 0.2f);
        n += rows * cols + 2 * cols;
    }
#undef DET_RAND
    free(buf);
    cg_threads_set(0);
    return n;
}

static void test_deterministic(void) {
    if (g_be->device != CG_CPU) return; /* the thread count is a CPU matter */
    enum { MAXN = 2000000 };
    float *first = malloc(MAXN * sizeof(float)), *again = malloc(MAXN * sizeof(float));
    int64_t n = det_run(g_be, 1, first);
    CG_ASSERT(n <= MAXN);
    static const int threads[] = {2, 3, 2};
    for (int i = 0; i < 3; i++) {
        memset(again, 0, (size_t)n * sizeof(float));
        det_run(g_be, threads[i], again);
        int64_t bad = -1;
        for (int64_t j = 0; j < n && bad < 0; j++)
            if (memcmp(first + j, again + j, sizeof(float)) != 0) bad = j;
        CHECK_MSG(bad < 0, "%s: results differ between 1 and %d threads (element %lld of %lld: %.9g vs %.9g)",
                  g_be->name, threads[i], (long long)bad, (long long)n, bad >= 0 ? first[bad] : 0.0,
                  bad >= 0 ? again[bad] : 0.0);
    }
    free(first);
    free(again);
}

static void test_conv_layer_suite(void) { case_conv_layer_suite(g_be); }

/* The fused layer equals the unfused ops it replaces (conv k1 -> layer norm -> leaky). */
static void test_pointwise_matches_unfused(void) {
    cg_device dev = CG_CPU;
    int64_t B = 2, Ci = 6, Co = 5;
    cg_tensor *x = t_rand(dev, CG_SHAPE(B, Ci, 3, 4, 5), -2, 2, 0), *w = t_rand(dev, CG_SHAPE(Co, Ci, 1, 1, 1), -1, 1, 0);
    cg_tensor *g = t_rand(dev, CG_SHAPE(3, 4, 5), 0.5f, 1.5f, 0), *b = t_rand(dev, CG_SHAPE(3, 4, 5), -1, 1, 0);
    cg_tensor *bias = t_rand(dev, CG_SHAPE(Co), -1, 1, 0);
    /* unfused: stats of x, then w · leaky(LN(x)) + bias */
    cg_tensor *ln = cg_leaky_relu(cg_layer_norm(x, 3, g, b, 1e-5f), 0.01f);
    cg_tensor *want = cg_conv3d(ln, w, bias, cg_conv_opts_make(1, 0, 0));
    cg_tensor *xm = cg_reshape(cg_mean(x, 0x1C, false), CG_SHAPE(B, Ci));
    cg_tensor *xr = cg_reshape(cg_rsqrt(cg_add_scalar(cg_var(x, 0x1C, false, 0), 1e-5f)), CG_SHAPE(B, Ci));
    cg_tensor *stats[2];
    cg_tensor *got = cg_pointwise_layer(
        x, w, &(cg_pw_opts){.x_mean = xm, .x_rstd = xr, .gamma = g, .beta = b, .act = 1, .slope = 0.01f, .bias = bias, .eps = 1e-5f},
        stats);
    CHECK(got && cg_same_shape(got, want));
    double err = t_tensor_rel_err(got, want);
    CHECK_MSG(err < 1e-5, "rel err %g", err);
    /* its statistics are those of the output */
    cg_tensor *ym = cg_reshape(cg_mean(want, 0x1C, false), CG_SHAPE(B, Co));
    float *s1 = cg_tensor_host_copy(stats[0]), *s2 = cg_tensor_host_copy(ym);
    CHECK(t_rel_err(s1, s2, B * Co) < 1e-5);
    free(s1);
    free(s2);
    /* recording a gradient through it is refused */
    cg_set_requires_grad(w, true);
    CHECK(cg_pointwise_layer(x, w, NULL, NULL) == NULL);
    CHECK(strstr(cg_last_error(), "inference-only") != NULL);
    cg_tensor_free(x); cg_tensor_free(w); cg_tensor_free(g); cg_tensor_free(b); cg_tensor_free(bias);
}

/* The two fusions with the layers around a stack equal the layers they absorb: a 1 -> Ci
 * layer before the first norm (x_scale/x_shift, its statistics from x's by
 * cg_pointwise_expand_stats) and the Co -> 1 layer after the last (proj). A four-layer
 * stack 1 -> 7 -> 6 -> 5 -> 1, shaped as the post-processor (norms after the first two). */
static void test_pointwise_fusions(void) {
    cg_device dev = CG_CPU;
    int64_t B = 3;
    cg_tensor *x = t_rand(dev, CG_SHAPE(B, 1, 4, 5, 6), 0, 3, 0);
    cg_tensor *w1 = t_rand(dev, CG_SHAPE(7, 1, 1, 1, 1), -1, 1, 0), *b1 = t_rand(dev, CG_SHAPE(7), -1, 1, 0);
    cg_tensor *w2 = t_rand(dev, CG_SHAPE(6, 7, 1, 1, 1), -1, 1, 0), *w3 = t_rand(dev, CG_SHAPE(5, 6, 1, 1, 1), -1, 1, 0);
    cg_tensor *w4 = t_rand(dev, CG_SHAPE(1, 5, 1, 1, 1), -1, 1, 0), *b3 = t_rand(dev, CG_SHAPE(5), -1, 1, 0);
    cg_tensor *g = t_rand(dev, CG_SHAPE(4, 5, 6), 0.5f, 1.5f, 0), *be = t_rand(dev, CG_SHAPE(4, 5, 6), -1, 1, 0);
    const cg_conv_opts k1 = cg_conv_opts_make(1, 0, 0);
    /* unfused, as the model's modules compute it */
    cg_tensor *h = cg_leaky_relu(cg_layer_norm(cg_conv3d(x, w1, b1, k1), 3, g, be, 1e-5f), 0.01f);
    h = cg_leaky_relu(cg_layer_norm(cg_conv3d(h, w2, NULL, k1), 3, g, be, 1e-5f), 0.01f);
    h = cg_leaky_relu(cg_conv3d(h, w3, b3, k1), 0.01f);
    cg_tensor *want = cg_conv3d(h, w4, NULL, k1);
    /* fused: two kernels */
    cg_tensor *m1, *r1, *st[2];
    CHECK(cg_pointwise_expand_stats(x, w1, b1, 1e-5f, &m1, &r1) == 0);
    cg_tensor *y2 = cg_pointwise_layer(x, w2, &(cg_pw_opts){.x_scale = w1, .x_shift = b1, .x_mean = m1, .x_rstd = r1,
                                                             .gamma = g, .beta = be, .act = 1, .slope = 0.01f, .eps = 1e-5f},
                                       st);
    cg_tensor *got = cg_pointwise_layer(y2, w3, &(cg_pw_opts){.x_mean = st[0], .x_rstd = st[1], .gamma = g, .beta = be,
                                                              .act = 1, .slope = 0.01f, .bias = b3, .proj = w4, .eps = 1e-5f},
                                        NULL);
    CHECK(got && cg_same_shape(got, want));
    double err = t_tensor_rel_err(got, want);
    CHECK_MSG(err < 1e-5, "rel err %g", err);
    /* misuse is refused with a message */
    CHECK(cg_pointwise_layer(y2, w3, &(cg_pw_opts){.x_scale = w1}, NULL) == NULL); /* 6 channels, not 1 */
    CHECK(strstr(cg_last_error(), "one channel") != NULL);
    CHECK(cg_pointwise_layer(y2, w3, &(cg_pw_opts){.proj = w4}, st) == NULL); /* statistics of a projection */
    CHECK(strstr(cg_last_error(), "no statistics") != NULL);
    CHECK(cg_pointwise_layer(y2, w3, &(cg_pw_opts){.proj = w1}, NULL) == NULL); /* proj of 7, layer of 5 */
    CHECK(cg_pointwise_expand_stats(y2, w1, b1, 1e-5f, &m1, &r1) == -1);
    cg_tensor *all[] = {x, w1, b1, w2, w3, w4, b3, g, be};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cg_tensor_free(all[i]);
}

int main(int argc, char **argv) {
    REF = cg_backend_cpu_ref();
    /* --layer-suite: only the full-size layer suite of issue 3 (the slow test) */
    int layer_suite = argc > 1 && strcmp(argv[1], "--layer-suite") == 0;
    if (!layer_suite) TEST_RUN(test_pointwise_matches_unfused);
    if (!layer_suite) TEST_RUN(test_pointwise_fusions);
    const cg_backend *list[8];
    int n = cg_backend_list(list, 8);
    int others = 0;
    for (int i = 0; i < n; i++) {
        if (list[i] == REF) continue;
        others++;
        g_be = list[i];
        printf("backend %s\n", g_be->name);
        if (layer_suite) {
            TEST_RUN(test_conv_layer_suite);
            continue;
        }
        TEST_RUN(test_all_kernels);
        TEST_RUN(test_deterministic);
    }
    if (!others) {
        printf("only the reference kernels are present: nothing to compare\n");
        return t_failed ? 1 : 77;
    }
    printf("checked %.2f GFLOP of kernel work per backend\n", g_flops_checked / 1e9 / others);
    return test_summary();
}
