/*
 * tests/test_autograd.c — gradients of every op by central finite differences, second
 * derivatives for the ops a gradient penalty goes through, a WGAN-GP critic loss, gradient
 * accumulation, broadcasting, and the error paths of shape mismatches.
 * Inputs are fresh random numbers each run (the seed is printed).
 */
#include "test.h"

#define DEV CG_CPU
static const gc_opts DEF = {0};

/* Values in ±[0.2, 1.5]: away from the kinks at 0 of abs, relu, leaky_relu, sign. */
static cg_tensor *away0(int ndim, const int64_t *shape) {
    cg_tensor *t = t_rand(DEV, ndim, shape, 0.2f, 1.5f, 1);
    float *h = cg_tensor_host_copy(t);
    for (int64_t i = 0; i < cg_numel(t); i++)
        if (cg_rng_uniform(test_rng()) < 0.5) h[i] = -h[i];
    cg_tensor_set_host(t, h);
    free(h);
    return t;
}

static void free_all(int n, cg_tensor **t) {
    for (int i = 0; i < n; i++) cg_tensor_free(t[i]);
}

/* ------------------------------------------------------------ unary ---- */

typedef struct { cg_unary_op op; float p0, p1; } uctx;
static cg_tensor *f_unary(cg_tensor *const *in, void *c) {
    uctx *u = c;
    return cg_unary(u->op, in[0], u->p0, u->p1);
}

static void test_unary_grads(void) {
    struct { cg_unary_op op; float p0, p1; int positive; } cases[] = {
        {CG_U_NEG, 0, 0, 0},     {CG_U_AFFINE, -1.7f, 0.3f, 0}, {CG_U_SQUARE, 0, 0, 0},
        {CG_U_RECIP, 0, 0, 1},   {CG_U_EXP, 0, 0, 0},           {CG_U_LOG, 0, 0, 1},
        {CG_U_SQRT, 0, 0, 1},    {CG_U_RSQRT, 0, 0, 1},         {CG_U_POW, 2.5f, 0, 1},
        {CG_U_POW, -1.5f, 0, 1}, {CG_U_ABS, 0, 0, 0},           {CG_U_CLAMP, -0.1f, 0.1f, 0},
        {CG_U_RELU, 0, 0, 0},    {CG_U_LEAKY_RELU, 0.2f, 0, 0}, {CG_U_ELU, 1.3f, 0, 0},
        {CG_U_SIGMOID, 0, 0, 0}, {CG_U_TANH, 0, 0, 0},          {CG_U_SOFTPLUS, 0, 0, 0},
        {CG_U_SOFTSIGN, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg_tensor *x = cases[i].positive ? t_rand(DEV, CG_SHAPE(3, 5, 7), 0.3f, 2.0f, 1) : away0(CG_SHAPE(3, 5, 7));
        uctx c = {cases[i].op, cases[i].p0, cases[i].p1};
        char name[64];
        snprintf(name, sizeof name, "unary op %d", (int)cases[i].op);
        CHECK_MSG(gradcheck(name, f_unary, &c, 1, &x, DEF), "%s first order", name);
        /* second order: everything but the piecewise-linear ones has curvature to check */
        CHECK_MSG(gradgradcheck(name, f_unary, &c, 1, &x, DEF), "%s second order", name);
        cg_tensor_free(x);
    }
}

/* ----------------------------------------------------------- binary ---- */

typedef struct { int op; } bctx;
static cg_tensor *f_binary(cg_tensor *const *in, void *c) {
    switch (((bctx *)c)->op) {
    case 0: return cg_add(in[0], in[1]);
    case 1: return cg_sub(in[0], in[1]);
    case 2: return cg_mul(in[0], in[1]);
    default: return cg_div(in[0], in[1]);
    }
}

static void test_binary_broadcast_grads(void) {
    struct { int na; int64_t a[4]; int nb; int64_t b[4]; } shapes[] = {
        {3, {2, 3, 4}, 3, {2, 3, 4}}, {3, {2, 3, 4}, 2, {3, 1}}, {2, {3, 1}, 3, {2, 1, 5}},
        {1, {1}, 3, {2, 3, 4}},       {4, {2, 1, 3, 1}, 3, {4, 1, 5}},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int op = 0; op < 4; op++) {
            cg_tensor *in[2] = {t_rand(DEV, shapes[s].na, shapes[s].a, 0.5f, 2.0f, 1),
                                t_rand(DEV, shapes[s].nb, shapes[s].b, 0.5f, 2.0f, 1)};
            bctx c = {op};
            CHECK_MSG(gradcheck("binary", f_binary, &c, 2, in, DEF), "binary op %d shapes case %zu", op, s);
            CHECK_MSG(gradgradcheck("binary", f_binary, &c, 2, in, DEF), "binary op %d 2nd order case %zu", op, s);
            free_all(2, in);
        }
}

static void test_broadcast_values(void) {
    /* (2,1,3) + (4,1) -> (2,4,3), checked element by element */
    float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {10, 20, 30, 40};
    cg_tensor *ta = cg_tensor_from_host(DEV, CG_SHAPE(2, 1, 3), a), *tb = cg_tensor_from_host(DEV, CG_SHAPE(4, 1), b);
    cg_tensor *y = cg_add(ta, tb);
    CHECK(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 4 && y->shape[2] == 3);
    float *h = cg_tensor_host_copy(y);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++) CHECK(h[(i * 4 + j) * 3 + k] == a[i * 3 + k] + b[j]);
    free(h);
    /* incompatible shapes: one clear message, NULL */
    cg_tensor *c = cg_tensor_zeros(DEV, CG_SHAPE(3, 2));
    CHECK(cg_mul(ta, c) == NULL);
    CHECK(strstr(cg_last_error(), "cannot be broadcast") != NULL);
    /* NULL propagates through a chain, keeping the first message */
    CHECK(cg_exp(cg_add(cg_mul(ta, c), tb)) == NULL);
    CHECK(strstr(cg_last_error(), "cannot be broadcast") != NULL);
    cg_tensor_free(ta);
    cg_tensor_free(tb);
    cg_tensor_free(c);
}

/* -------------------------------------------------------- reductions ---- */

typedef struct { int kind; unsigned axes; bool keep; float p; } rctx;
static cg_tensor *f_reduce(cg_tensor *const *in, void *c) {
    rctx *r = c;
    switch (r->kind) {
    case 0: return cg_sum(in[0], r->axes, r->keep);
    case 1: return cg_mean(in[0], r->axes, r->keep);
    case 2: return cg_var(in[0], r->axes, r->keep, 1);
    case 3: return cg_var(in[0], r->axes, r->keep, 0);
    default: return cg_norm(in[0], r->p, r->axes, r->keep);
    }
}

static void test_reduce_grads(void) {
    unsigned axes[] = {CG_AXIS(0), CG_AXIS(1) | CG_AXIS(3), CG_AXIS(2), 0xF};
    for (int kind = 0; kind < 5; kind++)
        for (size_t a = 0; a < 4; a++)
            for (int keep = 0; keep < 2; keep++) {
                cg_tensor *x = away0(CG_SHAPE(2, 3, 4, 5));
                rctx c = {kind, axes[a], keep, kind == 4 ? (a % 2 ? 2.0f : 3.0f) : 0};
                CHECK_MSG(gradcheck("reduce", f_reduce, &c, 1, &x, DEF), "reduce kind %d axes %x keep %d", kind,
                          axes[a], keep);
                CHECK_MSG(gradgradcheck("reduce", f_reduce, &c, 1, &x, DEF), "reduce kind %d 2nd order", kind);
                cg_tensor_free(x);
            }
}

static void test_reduce_values(void) {
    float v[6] = {1, 2, 3, 4, 5, 6};
    cg_tensor *x = cg_tensor_from_host(DEV, CG_SHAPE(2, 3), v);
    cg_tensor *s0 = cg_sum(x, CG_AXIS(0), false), *s1 = cg_sum(x, CG_AXIS(1), true);
    CHECK(s0->ndim == 1 && s0->shape[0] == 3 && s1->ndim == 2 && s1->shape[1] == 1);
    float h0[3], h1[2];
    cg_tensor_to_host(s0, h0);
    cg_tensor_to_host(s1, h1);
    CHECK(h0[0] == 5 && h0[1] == 7 && h0[2] == 9 && h1[0] == 6 && h1[1] == 15);
    CHECK_NEAR(cg_item(cg_var(x, 0x3, false, 1)), 3.5, 1e-6);
    CHECK_NEAR(cg_item(cg_norm(x, 2.0f, 0x3, false)), sqrt(91.0), 1e-5);
    /* the 2-norm's gradient at 0 is 0, not NaN (the gradient penalty needs it) */
    cg_tensor *z = cg_tensor_zeros(DEV, CG_SHAPE(4));
    cg_set_requires_grad(z, true);
    cg_tensor *g;
    cg_tensor *nz = cg_norm(z, 2.0f, CG_AXIS(0), false);
    CHECK(cg_grad(1, &nz, NULL, 1, &z, &g, false) == CG_OK);
    float hg[4];
    cg_tensor_to_host(g, hg);
    for (int i = 0; i < 4; i++) CHECK(hg[i] == 0.0f);
    CHECK(cg_sum(x, CG_AXIS(3), false) == NULL);
    cg_tensor_free(x);
    cg_tensor_free(z);
}

/* ------------------------------------------------------------ shape ---- */

static cg_tensor *f_shape(cg_tensor *const *in, void *c) {
    int k = *(int *)c;
    cg_tensor *x = in[0];
    switch (k) {
    case 0: return cg_reshape(x, CG_SHAPE(6, -1));
    case 1: return cg_permute(x, (int[]){2, 0, 3, 1});
    case 2: return cg_exp(cg_contiguous(cg_transpose(x, 1, 3)));
    case 3: return cg_slice(cg_slice(x, 1, 1, 3), 3, 2, 5);
    case 4: return cg_concat(3, (cg_tensor *[]){x, cg_square(x), cg_slice(x, 1, 0, 1)}, 1);
    case 5: return cg_mul(cg_expand(cg_slice(x, 2, 0, 1), CG_SHAPE(3, 2, 3, 4, 5)), cg_full(DEV, CG_SHAPE(4, 5), 2.0f));
    case 6: return cg_pad_into(x, CG_SHAPE(4, 5, 3, 7), (int64_t[]){1, 2, 0, 1});
    case 7: return cg_flatten(cg_permute(x, (int[]){3, 2, 1, 0}), 1);
    default: return cg_square(cg_reshape(cg_transpose(x, 0, 2), CG_SHAPE(-1)));
    }
}

static void test_shape_grads(void) {
    for (int k = 0; k <= 8; k++) {
        cg_tensor *x = t_rand(DEV, CG_SHAPE(2, 3, 3, 5), -1.0f, 1.0f, 1);
        CHECK_MSG(gradcheck("shape", f_shape, &k, 1, &x, DEF), "shape op case %d", k);
        CHECK_MSG(gradgradcheck("shape", f_shape, &k, 1, &x, DEF), "shape op case %d 2nd order", k);
        cg_tensor_free(x);
    }
}

static void test_shape_views_share_storage(void) {
    cg_tensor *x = t_rand(DEV, CG_SHAPE(2, 3, 4), -1, 1, 0);
    cg_tensor *p = cg_permute(x, (int[]){2, 0, 1});
    cg_tensor *s = cg_slice(x, 2, 1, 3);
    cg_tensor *r = cg_reshape(x, CG_SHAPE(6, 4));
    CHECK(p->storage == x->storage && s->storage == x->storage && r->storage == x->storage);
    CHECK(!cg_is_contiguous(p) && !cg_is_contiguous(s) && cg_is_contiguous(r));
    float hx[24], hp[24];
    cg_tensor_to_host(x, hx);
    cg_tensor_to_host(p, hp);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) CHECK(hp[(k * 2 + i) * 3 + j] == hx[(i * 3 + j) * 4 + k]);
    CHECK(cg_reshape(x, CG_SHAPE(5, 5)) == NULL);
    CHECK(cg_slice(x, 2, 3, 5) == NULL);
    CHECK(cg_concat(2, (cg_tensor *[]){x, r}, 0) == NULL);
    cg_tensor_free(x);
}

/* ----------------------------------------------------------- matmul ---- */

static cg_tensor *f_matmul(cg_tensor *const *in, void *c) {
    int k = *(int *)c;
    switch (k) {
    case 0: return cg_matmul(in[0], in[1]);
    case 1: return cg_matmul(cg_transpose(in[0], -1, -2), in[1]);
    case 2: return cg_matmul(in[0], cg_transpose(in[1], -1, -2));
    default: return cg_linear(in[0], in[1], in[2]);
    }
}

static void test_matmul_grads(void) {
    struct { int k; int na; int64_t a[3]; int nb; int64_t b[3]; int bias; } cases[] = {
        {0, 2, {3, 4}, 2, {4, 5}, 0},       {0, 3, {2, 3, 4}, 3, {2, 4, 5}, 0},
        {0, 3, {2, 3, 4}, 2, {4, 5}, 0},    {0, 2, {3, 4}, 3, {2, 4, 5}, 0},
        {1, 3, {2, 4, 3}, 3, {2, 4, 5}, 0}, {2, 2, {3, 4}, 2, {5, 4}, 0},
        {3, 3, {2, 3, 7}, 2, {5, 7}, 1},    {3, 2, {6, 7}, 2, {5, 7}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg_tensor *in[3] = {t_rand(DEV, cases[i].na, cases[i].a, -1, 1, 1), t_rand(DEV, cases[i].nb, cases[i].b, -1, 1, 1),
                            cases[i].bias ? t_rand(DEV, CG_SHAPE(cases[i].b[0]), -1, 1, 1) : NULL};
        int n = cases[i].bias ? 3 : 2;
        CHECK_MSG(gradcheck("matmul", f_matmul, &cases[i].k, n, in, DEF), "matmul case %zu", i);
        CHECK_MSG(gradgradcheck("matmul", f_matmul, &cases[i].k, n, in, DEF), "matmul case %zu 2nd", i);
        free_all(n, in);
    }
}

static void test_matmul_values(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12};
    cg_tensor *ta = cg_tensor_from_host(DEV, CG_SHAPE(2, 3), a), *tb = cg_tensor_from_host(DEV, CG_SHAPE(3, 2), b);
    float h[4];
    cg_tensor_to_host(cg_matmul(ta, tb), h);
    CHECK(h[0] == 58 && h[1] == 64 && h[2] == 139 && h[3] == 154);
    CHECK(cg_matmul(ta, ta) == NULL && strstr(cg_last_error(), "matmul"));
    cg_tensor_free(ta);
    cg_tensor_free(tb);
}

/* ------------------------------------------------------------- conv ---- */

typedef struct { int kind; cg_conv_opts o; } cctx;
static cg_tensor *f_conv(cg_tensor *const *in, void *c) {
    cctx *k = c;
    switch (k->kind) {
    case 0: return cg_conv3d(in[0], in[1], in[2], k->o);
    case 1: return cg_conv_transpose3d(in[0], in[1], in[2], k->o);
    case 2: return cg_conv2d(in[0], in[1], in[2], k->o);
    case 3: return cg_conv_transpose2d(in[0], in[1], in[2], k->o);
    case 4: return cg_avg_pool3d(cg_square(in[0]), 2);
    default: return cg_upsample_nearest3d(cg_square(in[0]), 2);
    }
}

static int irand(int lo, int hi) { return lo + (int)cg_rng_below(test_rng(), (uint64_t)(hi - lo + 1)); }

static void test_conv_grads(void) {
    for (int trial = 0; trial < 12; trial++) {
        int kind = trial % 4;
        cctx c = {.kind = kind};
        int k[3], s[3], p[3], sp[3];
        for (int d = 0; d < 3; d++) {
            k[d] = irand(1, 3);
            s[d] = irand(1, 3);
            p[d] = irand(0, k[d] - 1);
            sp[d] = irand(k[d], 6);
            c.o.stride[d] = s[d];
            c.o.pad[d] = p[d];
            c.o.output_pad[d] = kind % 2 ? irand(0, s[d] - 1) : 0;
        }
        int N = irand(1, 2), Ci = irand(1, 3), Co = irand(1, 3);
        cg_tensor *in[3];
        if (kind == 0) {
            in[0] = t_rand(DEV, CG_SHAPE(N, Ci, sp[0], sp[1], sp[2]), -1, 1, 1);
            in[1] = t_rand(DEV, CG_SHAPE(Co, Ci, k[0], k[1], k[2]), -1, 1, 1);
        } else if (kind == 1) {
            in[0] = t_rand(DEV, CG_SHAPE(N, Ci, irand(1, 4), irand(1, 4), irand(1, 4)), -1, 1, 1);
            in[1] = t_rand(DEV, CG_SHAPE(Ci, Co, k[0], k[1], k[2]), -1, 1, 1);
            for (int d = 0; d < 3; d++) /* keep an output: (in-1)s - 2p + k + op >= 1 */
                if ((in[0]->shape[2 + d] - 1) * s[d] - 2 * p[d] + k[d] + c.o.output_pad[d] < 1) c.o.pad[d] = 0;
        } else if (kind == 2) {
            in[0] = t_rand(DEV, CG_SHAPE(N, Ci, sp[1], sp[2]), -1, 1, 1);
            in[1] = t_rand(DEV, CG_SHAPE(Co, Ci, k[1], k[2]), -1, 1, 1);
        } else {
            in[0] = t_rand(DEV, CG_SHAPE(N, Ci, irand(1, 4), irand(1, 4)), -1, 1, 1);
            in[1] = t_rand(DEV, CG_SHAPE(Ci, Co, k[1], k[2]), -1, 1, 1);
            for (int d = 1; d < 3; d++)
                if ((in[0]->shape[1 + d] - 1) * s[d] - 2 * p[d] + k[d] + c.o.output_pad[d] < 1) c.o.pad[d] = 0;
        }
        in[2] = t_rand(DEV, CG_SHAPE(Co), -1, 1, 1);
        CHECK_MSG(gradcheck("conv", f_conv, &c, 3, in, DEF), "conv kind %d trial %d", kind, trial);
        if (trial < 4) CHECK_MSG(gradgradcheck("conv", f_conv, &c, 3, in, DEF), "conv kind %d 2nd order", kind);
        free_all(3, in);
    }
    for (int kind = 4; kind <= 5; kind++) {
        cctx c = {.kind = kind};
        cg_tensor *x = t_rand(DEV, CG_SHAPE(2, 3, 4, 2, 6), -1, 1, 1);
        CHECK_MSG(gradcheck("pool", f_conv, &c, 1, &x, DEF), "pool/upsample %d", kind);
        cg_tensor_free(x);
    }
}

static void test_conv_values_and_errors(void) {
    /* a 1x1x1 input with a 1x1x3 kernel, pad 1 on w: y = [w1 x, w0... ] by hand */
    cg_tensor *x = cg_tensor_from_host(DEV, CG_SHAPE(1, 1, 1, 1, 1), (float[]){2});
    cg_tensor *w = cg_tensor_from_host(DEV, CG_SHAPE(1, 1, 1, 1, 3), (float[]){1, 10, 100});
    cg_conv_opts o = cg_conv_opts_make(1, 0, 0);
    o.pad[2] = 1;
    float h[3];
    cg_tensor *y = cg_conv3d(x, w, NULL, o);
    CHECK(y && y->shape[4] == 1);
    cg_tensor_to_host(y, h);
    CHECK(h[0] == 20);
    /* transposed: stride 2 upsamples 1 -> (1-1)*2 + 3 - 2 = 1... with pad 0: 3 outputs */
    cg_tensor *yt = cg_conv_transpose3d(x, w, NULL, cg_conv_opts_make(2, 0, 0));
    CHECK(yt && yt->shape[4] == 3 && yt->shape[3] == 1);
    cg_tensor_to_host(yt, h);
    CHECK(h[0] == 2 && h[1] == 20 && h[2] == 200);
    /* errors: channel mismatch, kernel larger than input, output_padding >= stride */
    cg_tensor *w2 = cg_tensor_zeros(DEV, CG_SHAPE(1, 2, 1, 1, 1));
    CHECK(cg_conv3d(x, w2, NULL, cg_conv_opts_make(1, 0, 0)) == NULL && strstr(cg_last_error(), "channels"));
    cg_tensor *w3 = cg_tensor_zeros(DEV, CG_SHAPE(1, 1, 3, 3, 3));
    CHECK(cg_conv3d(x, w3, NULL, cg_conv_opts_make(1, 0, 0)) == NULL && strstr(cg_last_error(), "larger"));
    CHECK(cg_conv_transpose3d(x, w, NULL, cg_conv_opts_make(2, 0, 2)) == NULL && strstr(cg_last_error(), "output_padding"));
    cg_tensor *x4 = cg_tensor_zeros(DEV, CG_SHAPE(1, 1, 2, 2));
    CHECK(cg_conv3d(x4, w, NULL, o) == NULL && strstr(cg_last_error(), "5 axes"));
    free_all(5, (cg_tensor *[]){x, w, w2, w3, x4});
}

/* ------------------------------------------------------------- norms ---- */

typedef struct { int naxes; int affine; } lnctx;
static cg_tensor *f_ln(cg_tensor *const *in, void *c) {
    lnctx *l = c;
    return cg_layer_norm(in[0], l->naxes, l->affine ? in[1] : NULL, l->affine ? in[2] : NULL, 1e-5f);
}

static void test_layer_norm_grads(void) {
    for (int naxes = 1; naxes <= 3; naxes++)
        for (int affine = 0; affine < 2; affine++) {
            int64_t sh[4] = {2, 3, 4, 5};
            cg_tensor *in[3] = {t_rand(DEV, 4, sh, -2, 2, 1), t_rand(DEV, naxes, sh + 4 - naxes, 0.5f, 1.5f, 1),
                                t_rand(DEV, naxes, sh + 4 - naxes, -1, 1, 1)};
            lnctx c = {naxes, affine};
            int n = affine ? 3 : 1;
            /* A row with a tiny variance makes layer norm nearly singular (curvature ~
             * 1/var^1.5): add a ramp along the last axis so every row has variance >= 1/3,
             * and take a smaller step to keep the truncation error (h^2 times the third derivative) small. */
            float *hx = cg_tensor_host_copy(in[0]);
            for (int64_t i = 0; i < cg_numel(in[0]); i++) hx[i] += 2.0f * (float)(i % 5) - 4.0f;
            cg_tensor_set_host(in[0], hx);
            free(hx);
            gc_opts o = {.h = 2e-3};
            CHECK_MSG(gradcheck("layer_norm", f_ln, &c, n, in, o), "layer_norm naxes %d affine %d", naxes, affine);
            CHECK_MSG(gradgradcheck("layer_norm", f_ln, &c, n, in, o), "layer_norm 2nd order naxes %d", naxes);
            free_all(3, in);
        }
}

/* The fused first-order backward and the differentiable composite agree. */
static void test_layer_norm_fused_matches_composite(void) {
    cg_tensor *x = t_rand(DEV, CG_SHAPE(3, 4, 5, 6), -2, 2, 1);
    cg_tensor *gm = t_rand(DEV, CG_SHAPE(5, 6), 0.5f, 1.5f, 1), *bt = t_rand(DEV, CG_SHAPE(5, 6), -1, 1, 1);
    cg_tensor *seed = cg_op_adopt(t_rand(DEV, CG_SHAPE(3, 4, 5, 6), -1, 1, 0));
    cg_tensor *ins[3] = {x, gm, bt}, *g1[3], *g2[3];
    cg_tensor *y = cg_layer_norm(x, 2, gm, bt, 1e-5f);
    CHECK(cg_grad(1, &y, &seed, 3, ins, g1, false) == CG_OK);
    CHECK(cg_grad(1, &y, &seed, 3, ins, g2, true) == CG_OK);
    for (int i = 0; i < 3; i++) {
        double e = t_tensor_rel_err(g1[i], g2[i]);
        CHECK_MSG(e < 1e-5, "input %d rel err %g", i, e);
    }
    free_all(3, ins);
}

/* cg_layer_norm_leaky (one kernel each way) against cg_leaky_relu(cg_layer_norm(...)):
 * values, first-order gradients (the fused kernel) and second-order ones (create_graph:
 * the differentiable form with the activation's mask), for every input. */
static void test_layer_norm_leaky(void) {
    for (int affine = 0; affine < 2; affine++) {
        cg_tensor *x = t_rand(DEV, CG_SHAPE(3, 4, 5, 6), -2, 2, 1);
        cg_tensor *gm = t_rand(DEV, CG_SHAPE(5, 6), 0.5f, 1.5f, 1), *bt = t_rand(DEV, CG_SHAPE(5, 6), -1, 1, 1);
        cg_tensor *seed = cg_op_adopt(t_rand(DEV, CG_SHAPE(3, 4, 5, 6), -1, 1, 0));
        cg_tensor *ins[3] = {x, gm, bt}, *gf[3], *gc[3];
        const int nin = affine ? 3 : 1;
        cg_tensor *yf = cg_layer_norm_leaky(x, 2, affine ? gm : NULL, affine ? bt : NULL, 1e-5f, 0.2f);
        cg_tensor *yc = cg_leaky_relu(cg_layer_norm(x, 2, affine ? gm : NULL, affine ? bt : NULL, 1e-5f), 0.2f);
        double ev = t_tensor_rel_err(yf, yc);
        CHECK_MSG(ev < 1e-6, "values: rel err %g", ev);
        for (int order = 1; order <= 2; order++) {
            /* order 2: d/d(inputs) of Σ (d(seed·y)/dx)², through create_graph */
            cg_tensor *outs[2] = {yf, yc}, **res[2] = {gf, gc};
            for (int k = 0; k < 2; k++) {
                CHECK(cg_grad(1, &outs[k], &seed, nin, ins, res[k], order == 2) == CG_OK);
                if (order == 2) {
                    cg_tensor *pen = cg_sum_all(cg_square(res[k][0]));
                    CHECK(cg_grad(1, &pen, NULL, nin, ins, res[k], false) == CG_OK);
                }
            }
            for (int i = 0; i < nin; i++) {
                double e = t_tensor_rel_err(gf[i], gc[i]);
                CHECK_MSG(e < 1e-5, "affine %d order %d input %d: rel err %g", affine, order, i, e);
            }
        }
        free_all(3, ins);
    }
}

static cg_tensor *f_bn(cg_tensor *const *in, void *c) {
    return cg_batch_norm(in[0], in[1], in[2], NULL, NULL, true, 0.1f, 1e-5f);
}

static void test_batch_norm(void) {
    cg_tensor *in[3] = {t_rand(DEV, CG_SHAPE(4, 3, 2, 5), -2, 2, 1), t_rand(DEV, CG_SHAPE(3), 0.5f, 1.5f, 1),
                        t_rand(DEV, CG_SHAPE(3), -1, 1, 1)};
    CHECK(gradcheck("batch_norm", f_bn, NULL, 3, in, DEF));
    /* running statistics follow PyTorch: new = (1-m)·old + m·batch (unbiased variance) */
    cg_tensor *rm = cg_tensor_zeros(DEV, CG_SHAPE(3)), *rv = cg_tensor_full(DEV, CG_SHAPE(3), 1.0f);
    cg_tensor *y = cg_batch_norm(in[0], NULL, NULL, rm, rv, true, 0.1f, 1e-5f);
    CHECK(y != NULL);
    cg_tensor *m = cg_mean(in[0], CG_AXIS(0) | CG_AXIS(2) | CG_AXIS(3), false);
    cg_tensor *v = cg_var(in[0], CG_AXIS(0) | CG_AXIS(2) | CG_AXIS(3), false, 1);
    float hm[3], hv[3], hrm[3], hrv[3];
    cg_tensor_to_host(m, hm);
    cg_tensor_to_host(v, hv);
    cg_tensor_to_host(rm, hrm);
    cg_tensor_to_host(rv, hrv);
    for (int i = 0; i < 3; i++) {
        CHECK_NEAR(hrm[i], 0.1 * hm[i], 1e-5);
        CHECK_NEAR(hrv[i], 0.9 + 0.1 * hv[i], 1e-5);
    }
    /* evaluation mode uses the running statistics */
    cg_tensor *ye = cg_batch_norm(in[0], NULL, NULL, rm, rv, false, 0.1f, 1e-5f);
    float x0, y0;
    cg_tensor_to_host(cg_slice(cg_reshape(in[0], CG_SHAPE(-1)), 0, 0, 1), &x0);
    cg_tensor_to_host(cg_slice(cg_reshape(ye, CG_SHAPE(-1)), 0, 0, 1), &y0);
    CHECK_NEAR(y0, (x0 - hrm[0]) / sqrt(hrv[0] + 1e-5), 1e-5);
    free_all(5, (cg_tensor *[]){in[0], in[1], in[2], rm, rv});
}

/* ----------------------------------------------------- sort and losses ---- */

/* Distinct, well separated values (spacing 0.05) in random order: small steps never swap. */
static cg_tensor *separated(int ndim, const int64_t *shape) {
    int64_t n = cg_shape_numel(ndim, shape);
    float *h = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = 0.05f * (float)(i + 1);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)cg_rng_below(test_rng(), (uint64_t)(i + 1));
        float t = h[i]; h[i] = h[j]; h[j] = t;
    }
    cg_tensor *t = cg_tensor_from_host(DEV, ndim, shape, h);
    cg_set_requires_grad(t, true);
    free(h);
    return t;
}

static cg_tensor *f_sort(cg_tensor *const *in, void *c) {
    return cg_square(cg_sort(in[0], *(int *)c, *(int *)c == 1));
}

static void test_sort(void) {
    for (int axis = 0; axis < 3; axis++) {
        cg_tensor *x = separated(CG_SHAPE(3, 7, 4));
        gc_opts o = {.h = 1e-3};
        CHECK_MSG(gradcheck("sort", f_sort, &axis, 1, &x, o), "sort axis %d", axis);
        CHECK_MSG(gradgradcheck("sort", f_sort, &axis, 1, &x, o), "sort axis %d 2nd", axis);
        cg_tensor_free(x);
    }
    float v[6] = {3, 1, 2, 2, 9, -1};
    cg_tensor *x = cg_tensor_from_host(DEV, CG_SHAPE(2, 3), v);
    float h[6];
    cg_tensor_to_host(cg_sort(x, 1, true), h);
    CHECK(h[0] == 3 && h[1] == 2 && h[2] == 1 && h[3] == 9 && h[4] == 2 && h[5] == -1);
    cg_tensor_to_host(cg_sort(x, 0, false), h);
    CHECK(h[0] == 2 && h[1] == 1 && h[2] == -1 && h[3] == 3 && h[4] == 9 && h[5] == 2);
    cg_tensor_free(x);
}

static cg_tensor *f_loss(cg_tensor *const *in, void *c) {
    static const float alphas[2] = {1.0f, 0.01f};
    switch (*(int *)c) {
    case 0: return cg_mse_loss(in[0], in[1]);
    case 1: return cg_l1_loss(in[0], in[1]);
    case 2: return cg_bce_with_logits(in[0], cg_sigmoid(in[1]));
    case 3: return cg_gaussian_kl(in[0], in[1]);
    case 4: return cg_mmd(cg_reshape(in[0], CG_SHAPE(6, -1)), cg_reshape(in[1], CG_SHAPE(6, -1)), 2, alphas);
    case 5: return cg_mmd_sorted_kernel(in[0], in[1], 5, 3, 17, 2.0f);
    case 6: return cg_soft_sparsity(in[0], 2.0f, 1.0f, 1e-6f);
    default: return cg_soft_sparsity_calogan(in[0]);
    }
}

static void test_losses(void) {
    for (int k = 0; k <= 7; k++) {
        cg_tensor *in[2];
        if (k == 5) { /* sorting inside: well-separated values */
            in[0] = separated(CG_SHAPE(2, 3, 2, 4));
            in[1] = separated(CG_SHAPE(2, 3, 2, 4));
        } else {
            in[0] = away0(CG_SHAPE(6, 2, 4));
            in[1] = away0(CG_SHAPE(6, 2, 4));
            if (k == 1) { /* l1: keep pred - target away from its kink at 0 */
                cg_tensor *t = cg_add(in[0], in[1]);
                float *h = cg_tensor_host_copy(t);
                cg_tensor_set_host(in[1], h);
                free(h);
            }
        }
        gc_opts o = {.h = k == 5 ? 1e-3 : 0};
        int n = k >= 6 ? 1 : 2;
        CHECK_MSG(gradcheck("loss", f_loss, &k, n, in, o), "loss %d", k);
        CHECK_MSG(gradgradcheck("loss", f_loss, &k, n, in, o), "loss %d 2nd", k);
        free_all(2, in);
    }
}

static void test_loss_values(void) {
    /* KL of N(0,1) is 0; MMD of a sample with itself is 0; soft sparsity: the CaloGAN form
     * is 0 on empty cells and close to 1 on large ones */
    cg_tensor *z = cg_tensor_zeros(DEV, CG_SHAPE(4, 3));
    CHECK_NEAR(cg_item(cg_gaussian_kl(z, z)), 0.0, 1e-7);
    cg_tensor *x = t_rand(DEV, CG_SHAPE(5, 3), -1, 1, 0);
    CHECK_NEAR(cg_item(cg_mmd(x, x, 1, (float[]){0.5f})), 0.0, 1e-6);
    CHECK_NEAR(cg_item(cg_mmd_sorted_kernel(x, x, 2, 1, 3, 10.0f)), 0.0, 1e-6);
    float big[4] = {0, 0, 1e4f, 1e4f};
    cg_tensor *b = cg_tensor_from_host(DEV, CG_SHAPE(1, 4), big);
    CHECK_NEAR(cg_item(cg_soft_sparsity_calogan(b)), 0.5, 1e-3);
    /* sorted-kernel MMD by hand: one window of 2, B = 1: real (1, 0), generated (0.5, 0) */
    cg_tensor *r = cg_tensor_from_host(DEV, CG_SHAPE(1, 2), (float[]){0, 1});
    cg_tensor *g = cg_tensor_from_host(DEV, CG_SHAPE(1, 2), (float[]){0.5f, 0});
    double a = 1.0, K = (1 + 1 + 2 * exp(-a)) / 4, L = (1 + 1 + 2 * exp(-a * 0.25)) / 4;
    double P = (exp(-a * 0.25) + exp(-a * 0.25) + exp(-a * 1.0) + 1.0) / 4;
    CHECK_NEAR(cg_item(cg_mmd_sorted_kernel(g, r, 2, 1, 1, 1.0f)), K + L - 2 * P, 1e-6);
    CHECK(cg_mse_loss(x, z) == NULL && strstr(cg_last_error(), "differ in shape"));
    free_all(5, (cg_tensor *[]){z, x, b, r, g});
}

/* ----------------------------------------- accumulation and the tape ---- */

static void test_backward_accumulates(void) {
    cg_tensor *w = t_rand(DEV, CG_SHAPE(3, 4), -1, 1, 1);
    cg_tensor *x = t_rand(DEV, CG_SHAPE(5, 4), -1, 1, 0);
    cg_tensor *loss = cg_sum_all(cg_tanh(cg_linear(x, w, NULL)));
    CHECK(cg_backward(loss) == CG_OK);
    float *g1 = cg_tensor_host_copy(w->grad);
    CHECK(cg_backward(loss) == CG_OK); /* second call on the same tape: gradients add */
    float *g2 = cg_tensor_host_copy(w->grad);
    for (int i = 0; i < 12; i++) CHECK_NEAR(g2[i], 2 * g1[i], 1e-6 * (1 + fabs(g1[i])));
    /* a fresh forward after a reset adds a third copy */
    cg_tape_reset();
    loss = cg_sum_all(cg_tanh(cg_linear(x, w, NULL)));
    CHECK(cg_backward(loss) == CG_OK);
    float *g3 = cg_tensor_host_copy(w->grad);
    for (int i = 0; i < 12; i++) CHECK_NEAR(g3[i], 3 * g1[i], 1e-6 * (1 + fabs(g1[i])));
    free(g1);
    free(g2);
    free(g3);
    /* a tensor used twice (x·x) gets both contributions */
    cg_tensor *a = t_rand(DEV, CG_SHAPE(4), -1, 1, 1), *ga;
    cg_tensor *sq = cg_sum_all(cg_mul(a, a));
    CHECK(cg_grad(1, &sq, NULL, 1, &a, &ga, false) == CG_OK);
    float ha[4], hg[4];
    cg_tensor_to_host(a, ha);
    cg_tensor_to_host(ga, hg);
    for (int i = 0; i < 4; i++) CHECK_NEAR(hg[i], 2 * ha[i], 1e-6);
    /* errors: backward on something that needs no gradient */
    cg_tensor *c = cg_exp(x);
    CHECK(cg_backward(c) != CG_OK && strstr(cg_last_error(), "does not require"));
    /* no-grad mode records nothing */
    size_t before = cg_tape_nodes();
    bool prev = cg_set_grad_enabled(false);
    cg_tensor *u = cg_exp(w);
    cg_set_grad_enabled(prev);
    CHECK(cg_tape_nodes() == before && !u->requires_grad);
    cg_tensor_free(w);
    cg_tensor_free(x);
    cg_tensor_free(a);
}

static void test_tape_rewind_frees(void) {
    cg_tensor *w0 = t_rand(DEV, CG_SHAPE(8, 8), -1, 1, 1), *w = w0;
    cg_tape_pos m = cg_tape_mark();
    for (int i = 0; i < 10; i++) w = i ? cg_tanh(cg_matmul(w, w)) : cg_matmul(w, w);
    CHECK(cg_tape_nodes() > m.nodes && cg_tape_temps() > m.temps);
    cg_tensor *kept = cg_tensor_retain(w);
    cg_tape_rewind(m);
    CHECK(cg_tape_nodes() == m.nodes && cg_tape_temps() == m.temps);
    CHECK(kept->node == NULL); /* a kept result becomes a leaf */
    cg_tensor_free(kept);
    cg_tensor_free(w0);
    cg_tape_reset();
}

/* ------------------------------------------- WGAN-GP gradient penalty ---- */

/* A small 3-D conv critic: conv3d (k3, pad 1) -> leaky_relu -> layer norm (D,H,W with
 * gain/bias) -> conv3d (k2, stride 2) -> leaky_relu -> flatten -> linear. Loss (WGAN-GP, λ = 10):
 * mean D(fake) - mean D(real) + λ mean (‖∇_x̂ D(x̂)‖₂ - 1)², x̂ = ε·real + (1-ε)·fake. */
typedef struct { cg_tensor *real, *fake, *eps; int smooth; uint64_t pattern; } wgan_ctx;
static wgan_ctx *g_wgan; /* the context whose activation pattern act() hashes */

/* leaky_relu as in the seeds' critics, or softplus for a smooth variant. For leaky_relu,
 * hash which inputs are positive: gradcheck uses the hash to keep only finite differences
 * that cross no kink. */
static cg_tensor *act(cg_tensor *h, int smooth) {
    if (smooth) return cg_softplus(h);
    float *v = h ? cg_tensor_host_copy(h) : NULL;
    for (int64_t i = 0; v && i < cg_numel(h); i++)
        g_wgan->pattern = (g_wgan->pattern ^ (uint64_t)(v[i] > 0)) * 1099511628211ull + (uint64_t)i;
    free(v);
    return cg_leaky_relu(h, 0.2f);
}

static uint64_t wgan_pattern(void *vc) { return ((wgan_ctx *)vc)->pattern; }

static cg_tensor *critic(cg_tensor *x, cg_tensor *const *p, int smooth) {
    cg_tensor *h = cg_conv3d(x, p[0], p[1], cg_conv_opts_make(1, 1, 0));
    h = cg_layer_norm(act(h, smooth), 3, p[2], p[3], 1e-5f);
    h = act(cg_conv3d(h, p[4], NULL, cg_conv_opts_make(2, 0, 0)), smooth); /* (B, 3, 2, 2, 2) */
    return cg_linear(cg_flatten(h, 1), p[5], p[6]);
}

static cg_tensor *f_wgan(cg_tensor *const *p, void *vc) {
    wgan_ctx *c = vc;
    c->pattern = 1469598103934665603ull; /* hash of this evaluation's activation pattern */
    /* the penalty differentiates the critic even when the caller runs without grad */
    bool prev = cg_set_grad_enabled(true);
    cg_tensor *xhat = cg_add(cg_mul(c->eps, c->real), cg_mul(cg_affine(c->eps, -1, 1), c->fake));
    cg_set_requires_grad(xhat, true);
    cg_tensor *ins[1] = {xhat}, *g[1];
    /* ∂D/∂x̂ as a differentiable tensor: create_graph */
    cg_tensor *d_hat = critic(xhat, p, c->smooth), *loss = NULL;
    if (d_hat && cg_grad(1, &d_hat, NULL, 1, ins, g, true) == CG_OK) {
        cg_tensor *gn = cg_norm(cg_flatten(g[0], 1), 2.0f, CG_AXIS(1), false);
        cg_tensor *gp = cg_mean_all(cg_square(cg_add_scalar(gn, -1.0f)));
        cg_tensor *w = cg_sub(cg_mean_all(critic(c->fake, p, c->smooth)), cg_mean_all(critic(c->real, p, c->smooth)));
        loss = cg_add(w, cg_scale(gp, 10.0f));
    }
    cg_set_grad_enabled(prev);
    return loss;
}

static cg_tensor *const *g_params;
static cg_tensor *f_critic_x(cg_tensor *const *in, void *vc) {
    wgan_ctx *c = vc;
    c->pattern = 1469598103934665603ull;
    return critic(in[0], g_params, c->smooth);
}

static void draw_critic(cg_tensor **p, wgan_ctx *c, int64_t B, int64_t D) {
    cg_tensor *fresh[7] = {
        t_rand(DEV, CG_SHAPE(2, 1, 3, 3, 3), -0.5f, 0.5f, 1), t_rand(DEV, CG_SHAPE(2), -0.1f, 0.1f, 1),
        t_rand(DEV, CG_SHAPE(D, D, D), 0.8f, 1.2f, 1),        t_rand(DEV, CG_SHAPE(D, D, D), -0.1f, 0.1f, 1),
        t_rand(DEV, CG_SHAPE(3, 2, 2, 2, 2), -0.5f, 0.5f, 1), t_rand(DEV, CG_SHAPE(1, 3 * 2 * 2 * 2), -0.5f, 0.5f, 1),
        t_rand(DEV, CG_SHAPE(1), -0.1f, 0.1f, 1),
    };
    for (int i = 0; i < 7; i++) {
        cg_tensor_free(p[i]);
        p[i] = fresh[i];
    }
    cg_tensor_free(c->real);
    cg_tensor_free(c->fake);
    cg_tensor_free(c->eps);
    c->real = t_rand(DEV, CG_SHAPE(B, 1, D, D, D), 0, 1, 0);
    c->fake = t_rand(DEV, CG_SHAPE(B, 1, D, D, D), 0, 1, 0);
    c->eps = t_rand(DEV, CG_SHAPE(B, 1, 1, 1, 1), 0, 1, 0);
}

static void test_wgan_gp_critic_gradient(void) {
    /* small enough that a perturbation moves few leaky_relu inputs (~256): finite
     * differences that cross no kink are then the rule, not the exception */
    int64_t B = 2, D = 4;
    cg_tensor *p[7] = {0};
    wgan_ctx c = {0};
    g_params = p;
    g_wgan = &c;
    /* leaky_relu makes the penalty piecewise smooth (its gradient jumps where an activation
     * changes sign): only differences whose activation pattern matches x's are used. A draw
     * that leaves too few such differences (an activation at 0) proves nothing either way
     * and is replaced, at most twice; a mismatch is never retried. */
    int r = -1;
    for (int attempt = 0; attempt < 3 && r == -1; attempt++) {
        draw_critic(p, &c, B, D);
        c.smooth = 0;
        /* ∂D/∂x̂ as the penalty computes it (create_graph path), against finite differences */
        r = gradcheck_r("critic input gradient", f_critic_x, &c, 1, &c.real,
                      (gc_opts){.create_graph = true, .pattern = wgan_pattern});
        if (r == 1) r = gradcheck_r("wgan-gp critic (leaky_relu)", f_wgan, &c, 7, p,
                                  (gc_opts){.max_elems = 40, .pattern = wgan_pattern});
    }
    CHECK(r == 1);
    /* the smooth critic: no kinks, default tolerances, more samples */
    c.smooth = 1;
    CHECK(gradcheck("wgan-gp critic (softplus)", f_wgan, &c, 7, p, (gc_opts){.max_elems = 48}));
    c.smooth = 0;
    /* the same through cg_backward into ->grad */
    cg_tensor *loss = f_wgan(p, &c);
    CHECK(loss && cg_backward(loss) == CG_OK);
    for (int i = 0; i < 7; i++) CHECK(p[i]->grad != NULL);
    free_all(7, p);
    free_all(3, (cg_tensor *[]){c.real, c.fake, c.eps});
}

int main(void) {
    TEST_RUN(test_unary_grads);
    TEST_RUN(test_binary_broadcast_grads);
    TEST_RUN(test_broadcast_values);
    TEST_RUN(test_reduce_grads);
    TEST_RUN(test_reduce_values);
    TEST_RUN(test_shape_grads);
    TEST_RUN(test_shape_views_share_storage);
    TEST_RUN(test_matmul_grads);
    TEST_RUN(test_matmul_values);
    TEST_RUN(test_conv_grads);
    TEST_RUN(test_conv_values_and_errors);
    TEST_RUN(test_layer_norm_grads);
    TEST_RUN(test_layer_norm_fused_matches_composite);
    TEST_RUN(test_layer_norm_leaky);
    TEST_RUN(test_batch_norm);
    TEST_RUN(test_sort);
    TEST_RUN(test_losses);
    TEST_RUN(test_loss_values);
    TEST_RUN(test_backward_accumulates);
    TEST_RUN(test_tape_rewind_frees);
    TEST_RUN(test_wgan_gp_critic_gradient);
    return test_summary();
}
