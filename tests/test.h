/*
 * tests/test.h — a tiny test harness: CHECK macros, fresh random inputs, and a central
 * finite-difference gradient checker used by every autograd test.
 *
 * A test program calls TEST_RUN(fn) for each case and returns test_summary(): 0 when all
 * passed, 1 otherwise; a program that cannot run here (no GPU) returns 77 (meson: skip).
 *
 * Gradient checks (gradcheck). For a function f of tensors, take fresh random weights w of
 * f's output shape and L(x) = Σ w·f(x), accumulated in double on the host. The analytic
 * gradient comes from cg_grad; the numeric one from central differences
 * (L(x+h) - L(x-h)) / 2h on (a sample of) each input's elements.
 * Tolerances: f runs in float32, so L carries a relative rounding error of about
 * 1e-7·sqrt(n); divided by 2h with h = 1e-2·max(1,|x|) that is ~1e-5·sqrt(n)·|L|, while
 * the truncation error is O(h²·f''') ~ 1e-4 for the smooth ops tested. Hence the default
 * rtol 2e-2, atol 2e-3 (on the gradient's scale), the usual choice for float32 checks.
 * Second-order checks apply gradcheck to x -> cg_grad(f, x, create_graph).
 */
#ifndef CG_TEST_H
#define CG_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calograd.h"

static int t_failed, t_passed, t_case_failed;
static const char *t_case;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  FAIL %s: %s:%d: %s\n", t_case, __FILE__, __LINE__, #cond); \
            if (cg_last_error()[0]) fprintf(stderr, "       last error: %s\n", cg_last_error()); \
            t_case_failed = 1;                                                         \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  FAIL %s: %s:%d: ", t_case, __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                              \
            fprintf(stderr, "\n");                                                     \
            t_case_failed = 1;                                                         \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%s = %.9g, %s = %.9g, tol %.3g", #a, \
              (double)(a), #b, (double)(b), (double)(tol))

#define TEST_RUN(fn)                                                                   \
    do {                                                                               \
        t_case = #fn;                                                                  \
        t_case_failed = 0;                                                             \
        cg_clear_error();                                                              \
        fn();                                                                          \
        cg_tape_reset();                                                               \
        if (t_case_failed) { t_failed++; fprintf(stderr, "FAIL %s\n", #fn); }          \
        else { t_passed++; printf("ok   %s\n", #fn); }                                 \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

/* A seed that differs per run (fresh inputs every time) unless CG_TEST_SEED is set; printed
 * so that a failure can be replayed. */
static inline uint64_t test_seed(void) {
    static uint64_t seed;
    if (!seed) {
        const char *e = getenv("CG_TEST_SEED");
        seed = e ? strtoull(e, NULL, 0) : ((uint64_t)time(NULL) ^ ((uint64_t)clock() << 20)) | 1u;
        printf("seed %llu (set CG_TEST_SEED to replay)\n", (unsigned long long)seed);
    }
    return seed;
}

static inline cg_rng *test_rng(void) {
    static cg_rng r;
    static int init;
    if (!init) { r = cg_rng_make(test_seed()); init = 1; }
    return &r;
}

/* An owned random tensor, uniform in [lo, hi), optionally a leaf requiring a gradient. */
static inline cg_tensor *t_rand(cg_device dev, int ndim, const int64_t *shape, float lo, float hi, int grad) {
    cg_tensor *t = cg_tensor_rand(dev, ndim, shape, test_rng(), lo, hi);
    if (t && grad) cg_set_requires_grad(t, true);
    return t;
}

/* Max |a-b| / (atol + rtol·|b|) over two host arrays: <= 1 means close. */
static inline double t_close_ratio(const float *a, const float *b, int64_t n, double rtol, double atol) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double r = d / (atol + rtol * fabs((double)b[i]));
        if (isnan(a[i]) != isnan(b[i]) || isinf(a[i]) != isinf(b[i])) r = INFINITY;
        if (r > worst || isnan(r)) worst = isnan(r) ? INFINITY : r;
    }
    return worst;
}

/* ‖a-b‖ / ‖b‖ */
static inline double t_rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ‖got - want‖ / ‖want‖ of two tensors of the same size, on any device */
static inline double t_tensor_rel_err(const cg_tensor *got, const cg_tensor *want) {
    float *a = cg_tensor_host_copy(got), *b = cg_tensor_host_copy(want);
    double e = a && b ? t_rel_err(a, b, cg_numel(want)) : INFINITY;
    free(a);
    free(b);
    return e;
}

/* ------------------------------------------------------- gradcheck ---- */

typedef cg_tensor *(*gc_fn)(cg_tensor *const *in, void *ctx);

typedef struct {
    double rtol, atol, h;  /* 0 means the defaults above */
    int max_elems;         /* elements checked per input (a random sample), 0 = 64 */
    /* For piecewise-smooth f (leaky_relu inside a gradient penalty): a hash of the
     * activation pattern of f's last evaluation. A difference is used only when the pattern
     * at x±h equals the pattern at x (no kink crossed, f smooth on the segment); otherwise
     * the step is shrunk (8x, twice, while float noise allows) and then the sample skipped.
     * Fails if over half of all samples, or every sample of an input of >= 8 elements, are
     * skipped. */
    uint64_t (*pattern)(void *ctx);
    bool create_graph;     /* take the analytic gradient with create_graph (the path a
                              second derivative goes through; some ops differ there) */
} gc_opts;

/* L = Σ w·f(in), in double on the host; w has f's numel entries. */
static inline double gc_eval(gc_fn f, void *ctx, int nin, cg_tensor *const *in, const double *w, int64_t nw) {
    cg_tape_pos m = cg_tape_mark();
    bool prev = cg_set_grad_enabled(false);
    cg_tensor *out = f(in, ctx);
    cg_set_grad_enabled(prev);
    double L = NAN;
    if (out && cg_numel(out) == nw) {
        float *h = cg_tensor_host_copy(out);
        L = 0;
        for (int64_t i = 0; i < nw; i++) L += w[i] * h[i];
        free(h);
    }
    cg_tape_rewind(m);
    (void)nin;
    return L;
}

/* Returns 1 when the analytic gradient of Σ w·f matches central differences for every
 * input with requires_grad, 0 on a mismatch (printed), and -1 when too many samples
 * crossed kinks to say (a degenerate draw: the caller may draw fresh inputs). */
static inline int gradcheck_r(const char *what, gc_fn f, void *ctx, int nin, cg_tensor *const *in, gc_opts o) {
    double rtol = o.rtol > 0 ? o.rtol : 2e-2, atol = o.atol > 0 ? o.atol : 2e-3;
    int maxe = o.max_elems > 0 ? o.max_elems : 64;
    cg_tape_pos m = cg_tape_mark();
    cg_tensor *out = f(in, ctx);
    if (!out) {
        fprintf(stderr, "  gradcheck %s: f failed: %s\n", what, cg_last_error());
        cg_tape_rewind(m);
        return 0;
    }
    int64_t nw = cg_numel(out);
    double *w = malloc((size_t)(nw ? nw : 1) * sizeof(double));
    float *wf = malloc((size_t)(nw ? nw : 1) * sizeof(float));
    for (int64_t i = 0; i < nw; i++) {
        w[i] = (double)cg_rng_uniform(test_rng()) * 2.0 - 1.0;
        wf[i] = (float)w[i];
    }
    cg_tensor *seed = cg_op_adopt(cg_tensor_from_host(out->device, out->ndim, out->shape, wf));
    cg_tensor *grads[8] = {0};
    int ok = 1, all_skipped = 0, all_tried = 0, coverage = 1;
    if (cg_grad(1, &out, &seed, nin, in, grads, o.create_graph) != CG_OK) {
        fprintf(stderr, "  gradcheck %s: cg_grad failed: %s\n", what, cg_last_error());
        ok = 0;
    }
    for (int k = 0; ok && k < nin; k++) {
        if (!in[k]->requires_grad) continue;
        float *ga = cg_tensor_host_copy(grads[k]);
        float *xh = cg_tensor_host_copy(in[k]);
        int64_t n = cg_numel(in[k]);
        double scale = 0;
        int skipped = 0, tried = 0;
        for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ga[i]));
        uint64_t base = 0;
        if (o.pattern) {
            gc_eval(f, ctx, nin, in, w, nw);
            base = o.pattern(ctx);
        }
        for (int e = 0; e < maxe && e < n; e++) {
            tried++;
            int64_t i = n <= maxe ? e : (int64_t)cg_rng_below(test_rng(), (uint64_t)n);
            float x0 = xh[i];
            /* central difference with step h (in float: the step actually taken) */
#define GC_DIFF(hstep, out)                                                            \
    do {                                                                               \
        float xp_ = (float)(x0 + (hstep)), xm_ = (float)(x0 - (hstep));                 \
        xh[i] = xp_; cg_tensor_set_host(in[k], xh);                                     \
        double lp_ = gc_eval(f, ctx, nin, in, w, nw);                                   \
        smooth = !o.pattern || o.pattern(ctx) == base;                                  \
        xh[i] = xm_; cg_tensor_set_host(in[k], xh);                                     \
        double lm_ = gc_eval(f, ctx, nin, in, w, nw);                                   \
        smooth = smooth && (!o.pattern || o.pattern(ctx) == base);                      \
        xh[i] = x0; cg_tensor_set_host(in[k], xh);                                      \
        (out) = (lp_ - lm_) / ((double)xp_ - (double)xm_);                              \
        noise = 2e-6 * fmax(fabs(lp_), fabs(lm_)) / ((double)xp_ - (double)xm_);        \
    } while (0)
            /* noise: the float32 rounding of L (measured ~1.5e-6 relative for the deepest
             * graph here) divided by the step; a smaller step is tried only while it stays
             * under half the tolerance, and it widens the final comparison */
            double h = (o.h > 0 ? o.h : 1e-2) * fmax(1.0, fabs(x0)), num = 0, noise = 0;
            double tol = atol * fmax(1.0, scale);
            bool smooth = true;
            for (int t = 0; t < 3; t++, h /= 8) {
                GC_DIFF(h, num);
                if (smooth || 2e-6 * fabs(gc_eval(f, ctx, nin, in, w, nw)) / (h / 4) > tol / 2) break;
            }
            if (!smooth) {
                skipped++;
                continue;
            }
#undef GC_DIFF
            double err = fabs(num - ga[i]);
            if (!(err <= tol + rtol * fabs(num) + noise)) {
                fprintf(stderr, "  gradcheck %s: input %d element %lld: analytic %.7g numeric %.7g\n", what, k,
                        (long long)i, (double)ga[i], num);
                ok = 0;
                break;
            }
        }
        if (ok && n >= 8 && skipped == tried) {
            fprintf(stderr, "  gradcheck %s: input %d: all %d samples crossed kinks\n", what, k, tried);
            coverage = 0;
        }
        all_skipped += skipped;
        all_tried += tried;
        free(ga);
        free(xh);
    }
    if (ok && all_skipped * 2 > all_tried) {
        fprintf(stderr, "  gradcheck %s: %d of %d samples crossed kinks\n", what, all_skipped, all_tried);
        coverage = 0;
    }
    free(w);
    free(wf);
    cg_tape_rewind(m);
    return !ok ? 0 : coverage ? 1 : -1;
}

/* 1 when the gradient matches and enough samples were checked; 0 otherwise. */
static inline int gradcheck(const char *what, gc_fn f, void *ctx, int nin, cg_tensor *const *in, gc_opts o) {
    return gradcheck_r(what, f, ctx, nin, in, o) == 1;
}

/* Second order: gradcheck the map in -> ∂(Σ v·f(in))/∂in (concatenated, flattened). */
typedef struct { gc_fn f; void *ctx; int nin; const float *v; int64_t nv; } gg_ctx;

static inline cg_tensor *gg_fn(cg_tensor *const *in, void *vctx) {
    gg_ctx *c = vctx;
    bool prev = cg_set_grad_enabled(true);
    cg_tensor *out = c->f(in, c->ctx);
    cg_tensor *res = NULL;
    if (out && cg_numel(out) == c->nv) {
        cg_tensor *seed = cg_op_adopt(cg_tensor_from_host(out->device, out->ndim, out->shape, c->v));
        cg_tensor *g[8] = {0}, *flat[8];
        cg_tensor *ins[8];
        int k = 0;
        for (int i = 0; i < c->nin; i++)
            if (in[i]->requires_grad) ins[k++] = in[i];
        if (cg_grad(1, &out, &seed, k, ins, g, true) == CG_OK) {
            for (int i = 0; i < k; i++) flat[i] = cg_reshape(g[i], 1, (int64_t[]){-1});
            res = cg_concat(k, flat, 0);
        }
    }
    cg_set_grad_enabled(prev);
    return res;
}

static inline int gradgradcheck(const char *what, gc_fn f, void *ctx, int nin, cg_tensor *const *in, gc_opts o) {
    cg_tape_pos m = cg_tape_mark();
    cg_tensor *out = f(in, ctx);
    int64_t nv = out ? cg_numel(out) : 0;
    cg_tape_rewind(m);
    if (!out) return 0;
    float *v = malloc((size_t)(nv ? nv : 1) * sizeof(float));
    for (int64_t i = 0; i < nv; i++) v[i] = (float)(cg_rng_uniform(test_rng()) * 2.0 - 1.0);
    gg_ctx c = {f, ctx, nin, v, nv};
    /* the first derivative as the create_graph path computes it must be right too: the
     * second-order check below only shows it is differentiated consistently */
    gc_opts o1 = o;
    o1.create_graph = true;
    int ok = gradcheck(what, f, ctx, nin, in, o1) && gradcheck(what, gg_fn, &c, nin, in, o);
    free(v);
    return ok;
}

#endif
