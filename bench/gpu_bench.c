/*
 * bench/gpu_bench.c — calograd's side of the GPU benchmark of issue 4. bench/gpu.sh runs it
 * next to bench/gpu_torch.py, which times PyTorch on the same cases on the same GPU and
 * merges both into bench/results/gpu.json and one table.
 *
 * Cases (shapes in ../shared/reference/models.md §1.3, §1.5 and issue 3's layer suite):
 *  - layers: the nine conv / conv_transpose layers at batch 64, forward alone and forward +
 *    backward (dx and dw, as torch's backward with both requiring grad);
 *  - generate: the Getting-High BIB-AE decoder + post-processor turning (z, E) into
 *    showers at batches 100 and 1000, the post-processor through the fused per-voxel layer
 *    (pointwise_layer), intermediates freed as soon as they are used (mark/rewind);
 *  - pp_train: a post-processor training step at batch 64 (forward unfused but the energy
 *    conditioning folded into conv2 as a per-sample bias, as in the generation; MSE loss,
 *    backward, Adam; --check compares it with the concatenated form);
 *  - critic: a WGAN-GP critic step at batch 64 (conv k4 s2 p1 1->32->64->128, LReLU 0.2,
 *    linear 3456->1; gradient penalty by double backward, λ = 10; Adam).
 * Every case runs in each math mode asked for (--modes fp32,tf32,bf16). Models are built
 * from models/module.h with PyTorch's default initialisation.
 *
 * Timing: CUDA events around each repetition, medians of --reps after --warmup runs.
 * FLOPs count the convolutions' and matrix products' multiply-adds x 2 (forward); forward
 * + backward counts 3x the forward. --check also runs the generation at batch 1 on the
 * CPU and reports the GPU's relative error per math mode.
 * --smoke shrinks every case (batch 1-2, small volumes, one repetition): a check of this
 * program, e.g. on the CPU emulator (gpu_bench_emu, tests/meson.build).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calograd.h"
#include "kernels/cuda/cuda.h"
#include "tools/cli.h"
#include "layer_suite.h"

#define GPU CG_CUDA

typedef struct {
    int warmup, reps, smoke, profile;
    cg_cuda_timer *timer, *ptimer;
    FILE *json;
    int first_record;
} bench;

static bench B;

#define MODE_NAME(m) cg_math_mode_name((cg_math_mode)(m)) /* "fp32", "tf32", "bf16" */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef void (*run_fn)(void *ctx);

/* Median GPU milliseconds of fn over B.reps runs after B.warmup runs; pre, if given, runs
 * before each run of fn, untimed. */
static double time_ms_after(run_fn pre, run_fn fn, void *ctx) {
    for (int i = 0; i < B.warmup; i++) {
        if (pre) pre(ctx);
        fn(ctx);
    }
    float t[64];
    int reps = B.reps < 64 ? B.reps : 64;
    for (int i = 0; i < reps; i++) {
        if (pre) pre(ctx);
        cg_cuda_timer_start(B.timer);
        fn(ctx);
        t[i] = cg_cuda_timer_stop(B.timer);
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_float);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

static double time_ms(run_fn fn, void *ctx) { return time_ms_after(NULL, fn, ctx); }

static void record(const char *group, const char *name, const char *mode, const char *metric, double ms,
                   double flops, int64_t batch) {
    if (!B.json) return;
    fprintf(B.json, "%s\n    {\"group\": \"%s\", \"case\": \"%s\", \"mode\": \"%s\", \"metric\": \"%s\", \"ms\": %.6g, "
            "\"flops\": %.6g, \"batch\": %lld}", B.first_record ? "" : ",", group, name, mode, metric, ms, flops,
            (long long)batch);
    fflush(B.json); /* a run cut short still leaves what it measured in the .tmp file */
    B.first_record = 0;
}

static void check(cg_tensor *t, const char *what) {
    if (!t) {
        fprintf(stderr, "gpu_bench: %s failed: %s\n", what, cg_last_error());
        exit(1);
    }
}

/* ------------------------------------------------------------- --profile ---- */
/* Where a generation's time goes: each stage between two synchronisations, with its FLOPs
 * and the fewest bytes it must move (its input read once, its output written once: what a
 * fully fused stage would move). Stages that share a name add up. */
typedef struct {
    char name[24];
    double ms, flop, bytes;
} prof_row;
static prof_row PROF[40];
static int nprof;
static bool prof_on;

static void prof_start(void) {
    if (prof_on) cg_cuda_timer_start(B.ptimer);
}
static void prof_stop(const char *name, double flop, double bytes) {
    if (!prof_on) return;
    float ms = cg_cuda_timer_stop(B.ptimer);
    int i = 0;
    while (i < nprof && strcmp(PROF[i].name, name) != 0) i++;
    if (i == nprof) {
        if (nprof == (int)(sizeof PROF / sizeof PROF[0])) return;
        memset(&PROF[nprof], 0, sizeof PROF[0]);
        snprintf(PROF[nprof++].name, sizeof PROF[0].name, "%s", name);
    }
    PROF[i].ms += ms;
    PROF[i].flop += flop;
    PROF[i].bytes += bytes;
}
static double tbytes(const cg_tensor *t) { return t ? 4.0 * (double)cg_numel(t) : 0; }
/* Multiply-adds x 2 of a layer module producing y from x. */
static double module_flop(const cg_module *m, const cg_tensor *x, const cg_tensor *y) {
    if (!x || !y) return 0;
    double k3 = (double)m->k[0] * m->k[1] * m->k[2];
    switch (m->kind) {
    case CG_MOD_LINEAR: return 2.0 * (double)cg_numel(y) * m->in;
    case CG_MOD_CONV3D: return 2.0 * (double)cg_numel(y) * m->in * k3;
    case CG_MOD_CONV_TRANSPOSE3D: return 2.0 * (double)cg_numel(x) * m->out * k3;
    default: return 0;
    }
}

/* ---------------------------------------------------------- layer suite ---- */

typedef struct {
    const cg_layer_case *c;
    cg_tensor *x, *w, *gy;
    cg_tensor *y; /* the forward's output, recorded for the backward */
} layer_ctx;

static cg_tensor *layer_forward(layer_ctx *l) {
    cg_conv_opts o = cg_conv_opts_make(l->c->s, l->c->p, 0);
    return l->c->transposed ? cg_conv_transpose3d(l->x, l->w, NULL, o) : cg_conv3d(l->x, l->w, NULL, o);
}

static void run_layer_fwd(void *ctx) {
    bool prev = cg_set_grad_enabled(false);
    check(layer_forward(ctx), "layer forward");
    cg_set_grad_enabled(prev);
    cg_tape_reset();
}

static void run_layer_recorded_fwd(void *ctx) {
    layer_ctx *l = ctx;
    l->y = layer_forward(l);
    check(l->y, "layer forward");
}

static void run_layer_bwd(void *ctx) {
    layer_ctx *l = ctx;
    if (cg_backward_with(l->y, l->gy) != CG_OK) check(NULL, "layer backward");
    cg_tensor_free(l->x->grad);
    cg_tensor_free(l->w->grad);
    l->x->grad = l->w->grad = NULL;
    cg_tape_reset();
}

static void run_layer_fwdbwd(void *ctx) {
    run_layer_recorded_fwd(ctx);
    run_layer_bwd(ctx);
}

static void bench_layers(int nmodes, const int *modes, cg_rng *rng) {
    int64_t N = B.smoke ? 1 : 64;
    printf("\nlayer suite, batch %lld (fwd+bwd = forward, dx and dw)\n", (long long)N);
    printf("%-22s %-5s %10s %9s %12s %9s\n", "case", "mode", "fwd ms", "TFLOP/s", "fwd+bwd ms", "TFLOP/s");
    for (int i = 0; i < CG_LAYER_SUITE_N; i++) {
        cg_layer_case c = CG_LAYER_SUITE[i];
        if (B.smoke) c.D = c.D / 3 > c.k ? c.D / 3 : c.k + 1;
        int64_t D = c.D, out = c.transposed ? (D - 1) * c.s - 2 * c.p + c.k : (D + 2 * c.p - c.k) / c.s + 1;
        layer_ctx l = {&c, NULL, NULL, NULL, NULL};
        l.x = cg_tensor_randn(GPU, CG_SHAPE(N, c.Ci, D, D, D), rng, 0, 1);
        l.w = c.transposed ? cg_tensor_randn(GPU, CG_SHAPE(c.Ci, c.Co, c.k, c.k, c.k), rng, 0, 0.1f)
                           : cg_tensor_randn(GPU, CG_SHAPE(c.Co, c.Ci, c.k, c.k, c.k), rng, 0, 0.1f);
        l.gy = cg_tensor_randn(GPU, CG_SHAPE(N, c.Co, out, out, out), rng, 0, 1);
        check(l.x && l.w ? l.gy : NULL, "allocating a layer case");
        cg_set_requires_grad(l.x, true);
        cg_set_requires_grad(l.w, true);
        /* MACs: Ci·Co·k³ per output voxel (conv) or per input voxel (transposed conv) */
        double vox = c.transposed ? (double)D * D * D : (double)out * out * out;
        double flops = 2.0 * N * c.Ci * c.Co * c.k * c.k * c.k * vox;
        for (int m = 0; m < nmodes; m++) {
            cg_set_math_mode((cg_math_mode)modes[m]);
            double f = time_ms(run_layer_fwd, &l), fb = time_ms(run_layer_fwdbwd, &l);
            printf("%-22s %-5s %10.3f %9.2f %12.3f %9.2f\n", c.name, MODE_NAME(modes[m]), f, flops / f / 1e9, fb,
                   3 * flops / fb / 1e9);
            record("layers", c.name, MODE_NAME(modes[m]), "fwd", f, flops, N);
            record("layers", c.name, MODE_NAME(modes[m]), "fwd+bwd", fb, 3 * flops, N);
            if (B.profile) { /* each gradient alone: the backward of a forward recorded untimed */
                cg_set_requires_grad(l.w, false);
                double fx = time_ms_after(run_layer_recorded_fwd, run_layer_bwd, &l);
                cg_set_requires_grad(l.w, true);
                cg_set_requires_grad(l.x, false);
                double fw = time_ms_after(run_layer_recorded_fwd, run_layer_bwd, &l);
                cg_set_requires_grad(l.x, true);
                printf("  %-20s %-5s %10s %9s   dx %.3f ms (%.2f TFLOP/s), dw %.3f ms (%.2f TFLOP/s)\n", "", "", "",
                       "", fx, flops / fx / 1e9, fw, flops / fw / 1e9);
                record("layers", c.name, MODE_NAME(modes[m]), "dx", fx, flops, N);
                record("layers", c.name, MODE_NAME(modes[m]), "dw", fw, flops, N);
            }
        }
        cg_set_math_mode(CG_MATH_FP32);
        cg_tensor_free(l.x);
        cg_tensor_free(l.w);
        cg_tensor_free(l.gy);
    }
}

/* ------------------------------------------- BIB-AE decoder + post-processor ---- */

typedef struct {
    cg_module *root;
    cg_module *cond[3], *deconv[2], *conv[5], *ln[7];             /* decoder (§1.3) */
    cg_module *fcec[3], *pconv[6], *pln[4];                       /* post-processor (§1.5) */
} bibae;

static void bibae_build(bibae *m, cg_device dev, cg_rng *rng) {
    memset(m, 0, sizeof *m);
    m->root = cg_module_new(NULL, "bibae");
    cg_module *dec = cg_module_new(m->root, "decoder"), *pp = cg_module_new(m->root, "pp");
    const int cin[3] = {513, 768, 4000}, cout[3] = {768, 4000, 8000};
    char nm[32];
    for (int i = 0; i < 3; i++) {
        snprintf(nm, sizeof nm, "cond%d", i + 1);
        m->cond[i] = cg_linear_new(dec, nm, cin[i], cout[i], true, dev, rng);
    }
    const int k3[3] = {3, 3, 3}, k2[3] = {2, 2, 2}, k1[3] = {1, 1, 1};
    m->deconv[0] = cg_conv_transpose3d_new(dec, "deconv1", 8, 8, k3, cg_conv_opts_make(3, 1, 2), false, dev, rng);
    m->deconv[1] = cg_conv_transpose3d_new(dec, "deconv2", 8, 16, k3, cg_conv_opts_make(2, 1, 1), false, dev, rng);
    m->conv[0] = cg_conv3d_new(dec, "conv0", 16, 8, k2, cg_conv_opts_make(2, 0, 0), false, dev, rng);
    const int ci[4] = {8, 16, 32, 16}, co[4] = {16, 32, 16, 1};
    for (int i = 0; i < 4; i++) {
        snprintf(nm, sizeof nm, "conv%d", i + 1);
        m->conv[i + 1] = cg_conv3d_new(dec, nm, ci[i], co[i], k3, cg_conv_opts_make(1, 1, 0), false, dev, rng);
    }
    const int64_t s30[3] = {30, 30, 30}, s60[3] = {60, 60, 60};
    for (int i = 0; i < 6; i++) {
        snprintf(nm, sizeof nm, "norm%d", i);
        m->ln[i] = cg_layer_norm_new(dec, nm, 3, i == 1 ? s60 : s30, true, 1e-5f, dev);
    }
    /* post-processor: econd MLP 2->64->64->64, then per-voxel 1->128, 192->128, 3x 128->128,
     * 128->1; LN after conv1..conv4; the econd channels follow conv1's 128 in the concat */
    for (int i = 0; i < 3; i++) {
        snprintf(nm, sizeof nm, "fcec%d", i + 1);
        m->fcec[i] = cg_linear_new(pp, nm, i ? 64 : 2, 64, true, dev, rng);
    }
    const int pci[6] = {1, 192, 128, 128, 128, 128}, pco[6] = {128, 128, 128, 128, 128, 1};
    for (int i = 0; i < 6; i++) {
        snprintf(nm, sizeof nm, "conv%d", i + 1);
        m->pconv[i] = cg_conv3d_new(pp, nm, pci[i], pco[i], k1, cg_conv_opts_make(1, 0, 0), i < 5, dev, rng);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(nm, sizeof nm, "norm%d", i + 1);
        m->pln[i] = cg_layer_norm_new(pp, nm, 3, s30, true, 1e-5f, dev);
    }
    if (cg_last_status() != CG_OK && cg_last_error()[0]) check(NULL, "building the BIB-AE");
}

/* Keep t past a rewind of the tape to m (the caller frees it). */
static cg_tensor *keep(cg_tape_pos m, cg_tensor *t) {
    check(t, "a generation stage");
    cg_tensor_retain(t);
    cg_tape_rewind(m);
    return t;
}

/* leaky(norm(h)) for one of the model's layer norms (3 axes, eps 1e-5: as built above),
 * one kernel each way (cg_layer_norm_leaky). */
static cg_tensor *ln_leaky(cg_module *norm, cg_tensor *h, float slope) {
    return cg_layer_norm_leaky(h, 3, cg_module_param(norm, "weight"), cg_module_param(norm, "bias"), 1e-5f, slope);
}

/* leaky(norm(layer(x))) with everything but the result freed; consumes x. */
static cg_tensor *stage(cg_module *layer, cg_module *norm, cg_tensor *x, float slope) {
    prof_start();
    cg_tape_pos m = cg_tape_mark();
    cg_tensor *h = keep(m, cg_module_forward(layer, x));
    double flop = module_flop(layer, x, h), bytes = tbytes(x) + tbytes(h);
    cg_tensor_free(x);
    CG_ASSERT(!norm || slope >= 0); /* a norm is followed by a leaky ReLU here */
    cg_tensor *a = keep(m, norm ? ln_leaky(norm, h, slope) : slope < 0 ? cg_relu(h) : cg_leaky_relu(h, slope));
    cg_tensor_free(h);
    char nm[64];
    snprintf(nm, sizeof nm, "dec.%.12s%s", layer->name, norm ? "+ln" : "");
    prof_stop(nm, flop, bytes);
    return a;
}

/* Showers (B, 1, 30, 30, 30) from z (B, 512) and E (B, 1); grad mode must be off. */
static cg_tensor *bibae_generate(bibae *m, cg_tensor *z, cg_tensor *E) {
    cg_tape_pos top = cg_tape_mark();
    int64_t Bn = z->shape[0];
    cg_tensor *h = keep(top, cg_concat(2, (cg_tensor *[]){z, E}, 1));
    for (int i = 0; i < 3; i++) h = stage(m->cond[i], NULL, h, 0.2f);
    cg_tensor *v = keep(top, cg_reshape(h, CG_SHAPE(Bn, 8, 10, 10, 10)));
    cg_tensor_free(h);
    h = stage(m->deconv[0], m->ln[0], v, 0.2f);
    h = stage(m->deconv[1], m->ln[1], h, 0.2f);
    for (int i = 0; i < 4; i++) h = stage(m->conv[i], m->ln[i + 2], h, 0.2f);
    cg_tensor *x = stage(m->conv[4], NULL, h, -1.0f); /* ReLU */
    /* post-processor: the energy conditioning, folded into conv2 as a per-sample bias */
    prof_start();
    cg_tape_pos pm = cg_tape_mark();
    cg_tensor *ec = cg_concat(2, (cg_tensor *[]){cg_sum(cg_flatten(x, 1), CG_AXIS(1), true), E}, 1);
    for (int i = 0; i < 3; i++) ec = cg_leaky_relu(cg_module_forward(m->fcec[i], ec), 0.01f);
    cg_tensor *w2 = cg_reshape(cg_module_param(m->pconv[1], "weight"), CG_SHAPE(128, 192));
    cg_tensor *bias_b = cg_linear(ec, cg_slice(w2, 1, 128, 192), NULL);
    cg_tensor *w2a = cg_contiguous(cg_slice(w2, 1, 0, 128));
    check(bias_b && w2a ? w2a : NULL, "the post-processor's conditioning");
    cg_tensor_retain(bias_b);
    cg_tensor_retain(w2a);
    cg_tape_rewind(pm);
    prof_stop("pp.econd", 0, tbytes(x));
    /* four kernels for the six layers: conv1 (1 -> 128) is expanded in conv2's loader, its
     * layer-norm statistics following from the shower's mean and variance; conv6 (128 -> 1)
     * is a projection of conv5's tile (core/backend.h, cg_pw_args) */
    cg_tensor *w1 = cg_module_param(m->pconv[0], "weight"), *b1 = cg_module_param(m->pconv[0], "bias");
    cg_tensor *stats[2], *ms = NULL, *rs = NULL;
    prof_start();
    cg_tape_pos sm = cg_tape_mark();
    check(cg_pointwise_expand_stats(x, w1, b1, 1e-5f, &ms, &rs) == 0 ? ms : NULL, "conv1's statistics");
    cg_tensor_retain(ms); /* past the rewind */
    cg_tensor_retain(rs);
    cg_tape_rewind(sm);
    prof_stop("pp.conv1_stats", 0, tbytes(x));
    const double vox = (double)cg_numel(x); /* B · 27000 */
    for (int i = 1; i <= 4; i++) {
        prof_start();
        cg_tape_pos lm = cg_tape_mark();
        int want_stats = i < 4; /* conv2..conv4 feed a layer norm */
        cg_pw_opts o = {.x_scale = i == 1 ? w1 : NULL, .x_shift = i == 1 ? b1 : NULL, .x_mean = ms, .x_rstd = rs,
                        .gamma = cg_module_param(m->pln[i - 1], "weight"), .beta = cg_module_param(m->pln[i - 1], "bias"),
                        .act = 1, .slope = 0.01f, .bias = cg_module_param(m->pconv[i], "bias"),
                        .bias_b = i == 1 ? bias_b : NULL, .proj = i == 4 ? cg_module_param(m->pconv[5], "weight") : NULL,
                        .eps = 1e-5f};
        cg_tensor *y = cg_pointwise_layer(x, i == 1 ? w2a : cg_module_param(m->pconv[i], "weight"), &o,
                                          want_stats ? stats : NULL);
        if (y && want_stats) { /* before the rewind, which would free them */
            cg_tensor_retain(stats[0]);
            cg_tensor_retain(stats[1]);
        }
        y = keep(lm, y);
        /* FLOPs of the original's layers (128·128 per voxel, plus conv1's or conv6's 128) */
        static const char *names[5] = {"", "pp.conv1+ln+conv2", "pp.ln+conv3", "pp.ln+conv4", "pp.ln+conv5+conv6"};
        prof_stop(names[i], 2.0 * vox * 128 * (128 + (i == 1 || i == 4)), tbytes(x) + tbytes(y));
        cg_tensor_free(x);
        cg_tensor_free(ms);
        cg_tensor_free(rs);
        x = y;
        ms = want_stats ? stats[0] : NULL;
        rs = want_stats ? stats[1] : NULL;
    }
    cg_tensor_free(bias_b);
    cg_tensor_free(w2a);
    cg_tape_rewind(top);
    return x; /* owned */
}

typedef struct {
    bibae *m;
    cg_tensor *z, *E;
} gen_ctx;

static void run_generate(void *ctx) {
    gen_ctx *g = ctx;
    bool prev = cg_set_grad_enabled(false);
    cg_tensor *x = bibae_generate(g->m, g->z, g->E);
    cg_set_grad_enabled(prev);
    cg_tensor_free(x);
    cg_tape_reset();
}

/* Decoder + post-processor MACs per shower: linears, convs, transposed convs (§1.10). */
static double bibae_flops_per_shower(void) {
    double mac = 513.0 * 768 + 768.0 * 4000 + 4000.0 * 8000;
    mac += 8.0 * 8 * 27 * 1000 + 8.0 * 16 * 27 * 27000;         /* deconv1, deconv2 (input voxels) */
    mac += 16.0 * 8 * 8 * 27000;                                 /* conv0 */
    mac += (8.0 * 16 + 16.0 * 32 + 32.0 * 16 + 16.0 * 1) * 27 * 27000; /* conv1..conv4 */
    mac += 27000.0 * (1 * 128 + 192 * 128 + 3 * 128 * 128 + 128); /* post-processor */
    mac += 2 * 64 + 64 * 64 * 2;
    return 2 * mac;
}

/* --profile: the stages of B.reps generations, synchronised at each stage boundary. */
static void profile_generate(gen_ctx *g, const char *mode, int64_t Bn) {
    nprof = 0;
    prof_on = true;
    for (int r = 0; r < B.reps; r++) run_generate(g);
    prof_on = false;
    double total = 0;
    for (int i = 0; i < nprof; i++) total += PROF[i].ms;
    printf("  profile (%s, batch %lld, %d runs; GB/s counts each stage's input and output once)\n", mode,
           (long long)Bn, B.reps);
    printf("  %-18s %11s %6s %9s %8s\n", "stage", "us/shower", "%", "TFLOP/s", "GB/s");
    for (int i = 0; i < nprof; i++) {
        double ms = PROF[i].ms / B.reps;
        printf("  %-18s %11.2f %6.1f %9.2f %8.0f\n", PROF[i].name, 1e3 * ms / (double)Bn, 100 * PROF[i].ms / total,
               PROF[i].flop / B.reps / ms / 1e9, PROF[i].bytes / B.reps / ms / 1e6);
        char nm[64];
        snprintf(nm, sizeof nm, "stage:%.23s", PROF[i].name);
        record("generate_profile", nm, mode, "stage", ms, PROF[i].flop / B.reps, Bn);
    }
    printf("  %-18s %11.2f\n", "sum", 1e3 * total / B.reps / (double)Bn);
}

static void bench_generate(int nmodes, const int *modes, cg_rng *rng, int do_check) {
    bibae m;
    bibae_build(&m, GPU, rng);
    double fps = bibae_flops_per_shower();
    printf("\nBIB-AE decoder + post-processor generation (%.2f GFLOP per shower)\n", fps / 1e9);
    printf("%-22s %-5s %10s %12s %9s\n", "case", "mode", "batch ms", "ms/shower", "TFLOP/s");
    const int64_t batches[2] = {B.smoke ? 1 : 100, B.smoke ? 2 : 1000};
    for (int bi = 0; bi < 2; bi++) {
        int64_t Bn = batches[bi];
        gen_ctx g = {&m, cg_tensor_randn(GPU, CG_SHAPE(Bn, 512), rng, 0, 1),
                     cg_tensor_rand(GPU, CG_SHAPE(Bn, 1), rng, 10, 100)};
        char name[48];
        snprintf(name, sizeof name, "generate_b%lld", (long long)Bn);
        /* a batch of 1000 runs for most of a second: fewer repetitions */
        int reps = B.reps, warm = B.warmup;
        if (Bn >= 1000) {
            B.reps = B.reps < 5 ? B.reps : 5;
            B.warmup = B.warmup < 1 ? B.warmup : 1;
        }
        for (int mi = 0; mi < nmodes; mi++) {
            cg_set_math_mode((cg_math_mode)modes[mi]);
            double ms = time_ms(run_generate, &g);
            printf("%-22s %-5s %10.2f %12.4f %9.2f\n", name, MODE_NAME(modes[mi]), ms, ms / Bn, fps * Bn / ms / 1e9);
            record("generate", name, MODE_NAME(modes[mi]), "batch", ms, fps * Bn, Bn);
            if (B.profile && bi == 1) profile_generate(&g, MODE_NAME(modes[mi]), Bn);
        }
        B.reps = reps;
        B.warmup = warm;
        cg_set_math_mode(CG_MATH_FP32);
        cg_tensor_free(g.z);
        cg_tensor_free(g.E);
    }
    if (do_check) {
        /* one shower on the CPU (reference path) against the GPU in each math mode */
        bibae mc;
        cg_rng r2 = cg_rng_make(7), r3 = cg_rng_make(7);
        bibae_build(&mc, CG_CPU, &r2);
        bibae mg;
        bibae_build(&mg, GPU, &r3); /* the same parameters: the same stream of draws */
        cg_rng rz = cg_rng_make(11);
        cg_tensor *z = cg_tensor_randn(CG_CPU, CG_SHAPE(1, 512), &rz, 0, 1);
        cg_tensor *E = cg_tensor_full(CG_CPU, CG_SHAPE(1, 1), 50.0f);
        bool prev = cg_set_grad_enabled(false);
        cg_tensor *want = bibae_generate(&mc, z, E);
        cg_tensor *zg = cg_tensor_clone(z, GPU), *Eg = cg_tensor_clone(E, GPU);
        float *hw = cg_tensor_host_copy(want);
        printf("check: one shower, GPU against the CPU (cg_backend %s): ‖gpu - cpu‖/‖cpu‖ =",
               cg_backend_get(CG_CPU)->name);
        for (int mi = 0; mi < nmodes; mi++) {
            cg_set_math_mode((cg_math_mode)modes[mi]);
            cg_tensor *got = bibae_generate(&mg, zg, Eg);
            float *hg = cg_tensor_host_copy(got);
            double num = 0, den = 0;
            for (int64_t i = 0; i < cg_numel(want); i++) {
                num += ((double)hg[i] - hw[i]) * ((double)hg[i] - hw[i]);
                den += (double)hw[i] * hw[i];
            }
            double e = den > 0 ? sqrt(num / den) : sqrt(num);
            printf(" %s %.2e", MODE_NAME(modes[mi]), e);
            record("check", "generate_b1_vs_cpu", MODE_NAME(modes[mi]), "rel_err", e, 0, 1);
            free(hg);
            cg_tensor_free(got);
        }
        printf("\n");
        cg_set_math_mode(CG_MATH_FP32);
        cg_set_grad_enabled(prev);
        free(hw);
        cg_tensor_free(want);
        cg_tensor_free(z);
        cg_tensor_free(E);
        cg_tensor_free(zg);
        cg_tensor_free(Eg);
        cg_module_free(mc.root);
        cg_module_free(mg.root);
        cg_tape_reset();
    }
    cg_module_free(m.root);
}

/* ------------------------------------------------ post-processor training ---- */

typedef struct {
    bibae *m;
    cg_optim *opt;
    cg_tensor *x, *E, *target;
} pp_ctx;

/* The post-processor's MSE loss, with grad mode on. fold: conv2 over [h, econd broadcast to
 * every voxel] computed as conv2's first 128 input channels over h plus its last 64 applied
 * to econd once per sample (a per-sample bias), as the generation does: the same function
 * and gradients without the 192-channel tensor and a third of conv2's work. !fold: the
 * concat, as the original code and bench/gpu_torch.py (--check compares the two). */
static cg_tensor *pp_loss(bibae *m, cg_tensor *x, cg_tensor *E, cg_tensor *target, bool fold) {
    int64_t Bn = x->shape[0];
    cg_tensor *ec = cg_concat(2, (cg_tensor *[]){cg_sum(cg_flatten(x, 1), CG_AXIS(1), true), E}, 1);
    for (int i = 0; i < 3; i++) ec = cg_leaky_relu(cg_module_forward(m->fcec[i], ec), 0.01f);
    cg_tensor *h = ln_leaky(m->pln[0], cg_module_forward(m->pconv[0], x), 0.01f);
    if (fold) {
        cg_module *c2 = m->pconv[1];
        cg_tensor *w2 = cg_reshape(cg_module_param(c2, "weight"), CG_SHAPE(128, 192));
        cg_tensor *wa = cg_reshape(cg_contiguous(cg_slice(w2, 1, 0, 128)), CG_SHAPE(128, 128, 1, 1, 1));
        cg_tensor *pb = cg_linear(ec, cg_slice(w2, 1, 128, 192), cg_module_param(c2, "bias")); /* (B, 128) */
        h = cg_add(cg_conv3d(h, wa, NULL, c2->opts), cg_reshape(pb, CG_SHAPE(Bn, 128, 1, 1, 1)));
    } else {
        cg_tensor *e5 = cg_expand(cg_reshape(ec, CG_SHAPE(Bn, 64, 1, 1, 1)), CG_SHAPE(Bn, 64, 30, 30, 30));
        h = cg_module_forward(m->pconv[1], cg_concat(2, (cg_tensor *[]){h, e5}, 1));
    }
    h = ln_leaky(m->pln[1], h, 0.01f);
    for (int i = 2; i < 5; i++) {
        h = cg_module_forward(m->pconv[i], h);
        h = i < 4 ? ln_leaky(m->pln[i], h, 0.01f) : cg_leaky_relu(h, 0.01f);
    }
    return cg_mse_loss(cg_module_forward(m->pconv[5], h), target);
}

static void run_pp_train(void *ctx) {
    pp_ctx *p = ctx;
    cg_tensor *loss = pp_loss(p->m, p->x, p->E, p->target, true);
    check(loss, "post-processor forward");
    if (cg_backward(loss) != CG_OK || cg_optim_step(p->opt) != CG_OK) check(NULL, "post-processor step");
    cg_optim_zero_grad(p->opt);
    cg_tape_reset();
}

/* --check: the folded and the concatenated forms give the same loss and gradients (batch 2,
 * fp32, on the device): worst relative difference over the parameters. Voxels in [-1, 1]
 * and E in [1, 2] keep the conditioning small (the voxel sum is its input): it enters as a
 * per-(sample, channel) constant right before a layer norm over the voxels, which removes
 * it again — in the original model too — so the gradients of the conditioning MLP, of the
 * conditioning columns of conv2 and of the biases of conv1..conv4 are zero up to rounding
 * (their size is reported, not compared), and a large constant would only measure the
 * rounding of adding and subtracting it. */
static bool analytically_zero(const char *name) {
    return strncmp(name, "fcec", 4) == 0 || (strncmp(name, "conv", 4) == 0 && name[4] >= '1' && name[4] <= '4' &&
                                            strcmp(name + 5, ".bias") == 0);
}

static double pp_fold_check(bibae *m, const cg_named_list *params, cg_rng *rng, double *zero_grad) {
    cg_tensor *x = cg_tensor_rand(GPU, CG_SHAPE(2, 1, 30, 30, 30), rng, -1, 1);
    cg_tensor *E = cg_tensor_rand(GPU, CG_SHAPE(2, 1), rng, 1, 2);
    cg_tensor *t = cg_tensor_rand(GPU, CG_SHAPE(2, 1, 30, 30, 30), rng, -1, 1);
    float *g[2][32] = {{0}}, l[2];
    int n = params->n < 32 ? params->n : 32;
    for (int f = 0; f < 2; f++) {
        cg_tensor *loss = pp_loss(m, x, E, t, f == 1);
        check(loss, "post-processor forward");
        if (cg_backward(loss) != CG_OK) check(NULL, "post-processor backward");
        l[f] = cg_item(loss);
        for (int i = 0; i < n; i++) {
            g[f][i] = cg_tensor_host_copy(params->v[i].t->grad);
            cg_tensor_free(params->v[i].t->grad);
            params->v[i].t->grad = NULL;
        }
        cg_tape_reset();
    }
    double worst = fabs(l[1] - l[0]) / fmax(fabs(l[0]), 1e-30), zmax = 0, gmax = 0;
    for (int i = 0; i < n; i++) {
        const char *name = params->v[i].name;
        int64_t k = cg_numel(params->v[i].t);
        /* conv2's weight (128, 192): the first 128 columns act on the voxels, the last 64 on the conditioning */
        bool conv2w = strcmp(name, "conv2.weight") == 0;
        double num = 0, den = 0;
        for (int64_t j = 0; j < k; j++) {
            double a = g[0][i][j], d = (double)g[1][i][j] - a;
            if (analytically_zero(name) || (conv2w && j % 192 >= 128)) {
                zmax = fmax(zmax, fmax(fabs(a), fabs(g[1][i][j])));
                continue;
            }
            gmax = fmax(gmax, fabs(a));
            num += d * d;
            den += a * a;
        }
        if (den > 0) worst = fmax(worst, sqrt(num / den));
        free(g[0][i]);
        free(g[1][i]);
    }
    *zero_grad = gmax > 0 ? zmax / gmax : zmax;
    cg_tensor_free(x);
    cg_tensor_free(E);
    cg_tensor_free(t);
    return worst;
}

static void bench_pp_train(int nmodes, const int *modes, cg_rng *rng, int do_check) {
    bibae m;
    bibae_build(&m, GPU, rng);
    cg_named_list params = {0};
    cg_module_collect(cg_module_find(m.root, "pp"), &params, false);
    pp_ctx p = {&m, cg_optim_new(&(cg_optim_cfg){.kind = CG_OPT_ADAM, .lr = 5e-4f, .beta1 = 0.5f, .beta2 = 0.9f},
                                 &params), NULL, NULL, NULL};
    int64_t Bn = B.smoke ? 1 : 64;
    p.x = cg_tensor_rand(GPU, CG_SHAPE(Bn, 1, 30, 30, 30), rng, 0, 1);
    p.E = cg_tensor_rand(GPU, CG_SHAPE(Bn, 1), rng, 10, 100);
    p.target = cg_tensor_rand(GPU, CG_SHAPE(Bn, 1, 30, 30, 30), rng, 0, 1);
    check(p.opt && p.x && p.E ? p.target : NULL, "post-processor training setup");
    double fwd = 27000.0 * (1 * 128 + 192 * 128 + 3 * 128 * 128 + 128) * 2 * Bn;
    printf("\npost-processor training step, batch %lld (forward unfused, econd folded into conv2, MSE, backward, "
           "Adam;\nTFLOP/s count the original's FLOPs, conv2 over 192 channels)\n", (long long)Bn);
    if (do_check) {
        double z, e = pp_fold_check(&m, &params, rng, &z);
        printf("check: econd folded vs concatenated, loss and gradients: worst rel diff %.2e (the gradients "
               "that are zero\n  in exact arithmetic, the conditioning's, reach %.1e of the largest other)\n", e, z);
        record("train", "pp_fold_check", "fp32", "fold_err", e, 0, 2);
    }
    for (int mi = 0; mi < nmodes; mi++) {
        cg_set_math_mode((cg_math_mode)modes[mi]);
        double ms = time_ms(run_pp_train, &p);
        printf("%-22s %-5s %10.2f ms %9.2f TFLOP/s\n", "pp_train_b64", MODE_NAME(modes[mi]), ms, 3 * fwd / ms / 1e9);
        record("train", "pp_train_b64", MODE_NAME(modes[mi]), "step", ms, 3 * fwd, Bn);
    }
    cg_set_math_mode(CG_MATH_FP32);
    cg_optim_free(p.opt);
    cg_named_list_free(&params);
    cg_tensor_free(p.x);
    cg_tensor_free(p.E);
    cg_tensor_free(p.target);
    cg_module_free(m.root);
}

/* ------------------------------------------------------ WGAN-GP critic step ---- */

typedef struct {
    cg_module *root, *conv[3], *fc;
    cg_optim *opt;
    cg_tensor *real, *fake;
    cg_rng *rng;
} critic_ctx;

static cg_tensor *critic_forward(critic_ctx *c, cg_tensor *x) {
    for (int i = 0; i < 3; i++) x = cg_leaky_relu(cg_module_forward(c->conv[i], x), 0.2f);
    return cg_module_forward(c->fc, cg_flatten(x, 1));
}

static void run_critic(void *ctx) {
    critic_ctx *c = ctx;
    int64_t Bn = c->real->shape[0];
    cg_tensor *eps = cg_rand_like(cg_full(GPU, CG_SHAPE(Bn, 1, 1, 1, 1), 0.0f), c->rng, 0, 1);
    cg_tensor *xhat = cg_add(cg_mul(eps, c->real), cg_mul(cg_affine(eps, -1, 1), c->fake));
    cg_set_requires_grad(xhat, true);
    cg_tensor *dh = critic_forward(c, xhat), *g[1];
    if (!dh || cg_grad(1, &dh, NULL, 1, &xhat, g, true) != CG_OK) check(NULL, "critic penalty gradient");
    cg_tensor *gp = cg_mean_all(cg_square(cg_add_scalar(cg_norm(cg_flatten(g[0], 1), 2.0f, CG_AXIS(1), false), -1)));
    cg_tensor *loss = cg_add(cg_sub(cg_mean_all(critic_forward(c, c->fake)), cg_mean_all(critic_forward(c, c->real))),
                             cg_scale(gp, 10.0f));
    check(loss, "critic loss");
    if (cg_backward(loss) != CG_OK || cg_optim_step(c->opt) != CG_OK) check(NULL, "critic step");
    cg_optim_zero_grad(c->opt);
    cg_tape_reset();
}

static void bench_critic(int nmodes, const int *modes, cg_rng *rng) {
    critic_ctx c = {0};
    c.rng = rng;
    c.root = cg_module_new(NULL, "critic");
    const int k4[3] = {4, 4, 4}, ch[4] = {1, 32, 64, 128};
    for (int i = 0; i < 3; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "conv%d", i + 1);
        c.conv[i] = cg_conv3d_new(c.root, nm, ch[i], ch[i + 1], k4, cg_conv_opts_make(2, 1, 0), true, GPU, rng);
    }
    c.fc = cg_linear_new(c.root, "fc", 128 * 27, 1, true, GPU, rng); /* 30 -> 15 -> 7 -> 3 */
    cg_named_list params = {0};
    cg_module_collect(c.root, &params, false);
    c.opt = cg_optim_new(&(cg_optim_cfg){.kind = CG_OPT_ADAM, .lr = 1e-4f, .beta1 = 0.5f, .beta2 = 0.9f}, &params);
    int64_t Bn = B.smoke ? 2 : 64;
    c.real = cg_tensor_rand(GPU, CG_SHAPE(Bn, 1, 30, 30, 30), rng, 0, 1);
    c.fake = cg_tensor_rand(GPU, CG_SHAPE(Bn, 1, 30, 30, 30), rng, 0, 1);
    check(c.opt && c.real ? c.fake : NULL, "critic setup");
    printf("\nWGAN-GP critic step, batch %lld (3 forward passes, double backward, Adam)\n", (long long)Bn);
    for (int mi = 0; mi < nmodes; mi++) {
        cg_set_math_mode((cg_math_mode)modes[mi]);
        double ms = time_ms(run_critic, &c);
        printf("%-22s %-5s %10.2f ms\n", "critic_gp_b64", MODE_NAME(modes[mi]), ms);
        record("train", "critic_gp_b64", MODE_NAME(modes[mi]), "step", ms, 0, Bn);
    }
    cg_set_math_mode(CG_MATH_FP32);
    cg_optim_free(c.opt);
    cg_named_list_free(&params);
    cg_tensor_free(c.real);
    cg_tensor_free(c.fake);
    cg_module_free(c.root);
}

/* ------------------------------------------------------------------ main ---- */

#ifdef CG_CUDA_EMU
/* The emulator build serves kernels/cuda/emu/ as the CUDA device (tests only). */
static void use_emulator(void) { cg_backend_override_cuda(cg_cuda_backend()); }
#else
static void use_emulator(void) {}
#endif

int main(int argc, char **argv) {
    const char *json = NULL, *modes_s = "fp32,tf32,bf16", *cases = "layers,generate,pp_train,critic";
    int warmup = 3, reps = 10;
    bool smoke = false, do_check = false, profile = false;
    cli_opt opts[] = {
        {"--json", "FILE", "write the results as JSON (temporary file, then renamed)", CLI_STR, &json},
        {"--modes", "LIST", "math modes: fp32,tf32,bf16", CLI_STR, &modes_s},
        {"--cases", "LIST", "layers,generate,pp_train,critic", CLI_STR, &cases},
        {"--warmup", "N", "untimed runs before timing (3)", CLI_INT, &warmup},
        {"--reps", "N", "timed runs; the median is reported (10, at most 64)", CLI_INT, &reps},
        {"--check", NULL, "also compare one generated shower with the CPU", CLI_FLAG, &do_check},
        {"--smoke", NULL, "tiny sizes, one run: checks this program, not the GPU", CLI_FLAG, &smoke},
        {"--profile", NULL, "also time each stage of the generation (largest batch) and each layer's dx and dw",
         CLI_FLAG, &profile},
        {0}};
    int rc = cli_parse("gpu_bench", "Time calograd's CUDA backend on issue 4's cases.", opts, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    use_emulator();
    if (!cg_device_available(GPU)) {
        fprintf(stderr, "gpu_bench: no GPU (%s)\n", cg_cuda_unavailable_reason());
        return 77;
    }
    int modes[3], nmodes = 0;
    for (int m = 0; m < 3; m++)
        if (strstr(modes_s, MODE_NAME(m))) modes[nmodes++] = m;
    if (nmodes == 0) return cli_fail("gpu_bench", "--modes names none of fp32, tf32, bf16");
    B = (bench){warmup < 0 ? 0 : warmup, reps < 1 ? 1 : reps, smoke, profile, cg_cuda_timer_new(), cg_cuda_timer_new(),
                NULL, 1};
    if (smoke) B.warmup = 0, B.reps = 1;
    char tmp[1024];
    if (json) {
        snprintf(tmp, sizeof tmp, "%s.tmp", json);
        B.json = fopen(tmp, "w");
        if (!B.json) return cli_fail("gpu_bench", "cannot write %s", tmp);
        fprintf(B.json, "{\n  \"tool\": \"calograd\",\n  \"gpu\": \"%s\",\n  \"sm_count\": %d,\n  \"command\": \"",
                cg_cuda_device_name(), cg_cuda_sm_count());
        for (int i = 0; i < argc; i++) fprintf(B.json, "%s%s", i ? " " : "", argv[i]);
        fprintf(B.json, "\",\n  \"results\": [");
    }
    printf("calograd gpu_bench on %s (%d SMs), medians of %d runs after %d warm-up\n", cg_cuda_device_name(),
           cg_cuda_sm_count(), B.reps, B.warmup);
    cg_rng rng = cg_rng_make(1234);
    if (strstr(cases, "layers")) bench_layers(nmodes, modes, &rng);
    if (strstr(cases, "generate")) bench_generate(nmodes, modes, &rng, do_check);
    if (strstr(cases, "pp_train")) bench_pp_train(nmodes, modes, &rng, do_check);
    if (strstr(cases, "critic")) bench_critic(nmodes, modes, &rng);
    cg_cuda_mem_stats st;
    cg_cuda_mem_stats_get(&st);
    printf("\nallocator: %llu requests, %llu cudaMalloc calls, peak %.2f GiB held\n",
           (unsigned long long)st.requests, (unsigned long long)st.malloc_calls, st.bytes_peak / 1073741824.0);
    if (B.json) {
        fprintf(B.json, "\n  ],\n  \"cuda_malloc_calls\": %llu,\n  \"peak_bytes\": %zu\n}\n",
                (unsigned long long)st.malloc_calls, st.bytes_peak);
        if (fclose(B.json) != 0 || rename(tmp, json) != 0) return cli_fail("gpu_bench", "cannot write %s", json);
    }
    cg_cuda_timer_free(B.timer);
    cg_cuda_timer_free(B.ptimer);
    return 0;
}
