/*
 * bench/cpu_conv.c — calograd's CPU convolution kernels side by side with oneDNN, in one run
 * (issue 3's layer suite), plus the BIB-AE post-processor forward per shower.
 *
 *   ./build/bench/cpu_conv                  the suite; writes bench/results/cpu_conv.json
 *   ./build/bench/cpu_conv --quick          one small case, nothing written (a smoke run)
 *   options: --threads N  --reps N  --runs N (passes over the suite, default 3: each time is
 *            the median over the passes)  --out PATH  --no-pp  --case NAME (only cases whose
 *            name contains NAME; nothing is written unless --out is given)
 *            --onednn-isa avx2|native (default avx2)
 *
 * For every case: forward, backward-data and backward-weight time of calograd's dispatch
 * table (cg_backend_get(CG_CPU): the AVX2 kernels on an AVX2 machine) and of oneDNN, with
 * the same thread count. oneDNN runs its AVX2 kernels by default (--onednn-isa avx2: the
 * same instruction set as calograd's kernels; on a processor with AVX-512 its default
 * would be its AVX-512 kernels, which --onednn-isa native measures). Otherwise it gets its
 * best case: every primitive chooses its own memory
 * formats (format `any`), its inputs are created in those formats, so no reorder is timed,
 * and the algorithm is `auto`. For a conv_transpose3d case the three passes are oneDNN's
 * deconvolution primitives, and calograd's are conv_bwd_data (forward), conv_fwd
 * (backward-data) and conv_bwd_weight (backward-weight). Timings are medians of `reps`
 * runs after two warm-up runs; the two libraries alternate per pass, with a pause after
 * oneDNN so that its OpenMP threads have stopped spinning before calograd runs; the first
 * case runs once untimed before the measurements, so that process start-up is not timed.
 *
 * The machine's AVX2 FMA peak is measured in the same run (bench/fma_peak.c); "% peak" is
 * the forward GFLOP/s over it. A conv's FLOPs: 2 · N · Co · Ci · k³ · out³ (the same for
 * each pass; transposed convs counted on the conv they transpose).
 *
 * oneDNN is a dependency of this program only (bench/meson.build builds it when libdnnl
 * is found), never of the library.
 */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <oneapi/dnnl/dnnl.h>

#include "calograd.h"
#include "core/threads.h"
#include "fma_peak.h"
#include "layer_suite.h"
#include "kernels/cpu/avx2.h"

typedef cg_layer_case bcase;
#define SUITE CG_LAYER_SUITE
static const bcase QUICK = {"quick_c3_16to16_12", 0, 16, 16, 3, 1, 1, 12};

#define DNNL(call)                                                                          \
    do {                                                                                    \
        dnnl_status_t st_ = (call);                                                         \
        if (st_ != dnnl_success) {                                                          \
            fprintf(stderr, "cpu_conv: %s:%d: %s failed (status %d)\n", __FILE__, __LINE__, #call, (int)st_); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill_rand(float *p, size_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

/* ------------------------------------------------------------ oneDNN ---- */

typedef struct {
    dnnl_primitive_t prim;
    dnnl_exec_arg_t args[4];
    int nargs;
    dnnl_memory_t mem[4];
    char impl[64];
} dnnl_pass;

static dnnl_engine_t g_eng;
static dnnl_stream_t g_stream;

/* A memory object in the format the primitive chose for `what`, filled with random values. */
static dnnl_memory_t dnnl_mem_for(const_dnnl_primitive_desc_t pd, dnnl_query_t what, uint32_t seed) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
    dnnl_memory_t m;
    DNNL(dnnl_memory_create(&m, md, g_eng, DNNL_MEMORY_ALLOCATE));
    void *h;
    DNNL(dnnl_memory_get_data_handle(m, &h));
    fill_rand(h, dnnl_memory_desc_get_size(md) / sizeof(float), seed);
    return m;
}

static void dnnl_pass_make(dnnl_pass *ps, const void *op_desc, const_dnnl_primitive_desc_t hint, int kind,
                           dnnl_primitive_desc_t *pd_out) {
    /* kind 0: forward (src, weights -> dst), 1: backward-data (diff_dst, weights ->
     * diff_src), 2: backward-weight (src, diff_dst -> diff_weights) */
    dnnl_primitive_desc_t pd;
    DNNL(dnnl_primitive_desc_create(&pd, op_desc, NULL, g_eng, hint));
    static const dnnl_query_t q[3][3] = {
        {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
        {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md},
        {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md},
    };
    static const int a[3][3] = {
        {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
        {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
        {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS},
    };
    ps->nargs = 3;
    for (int i = 0; i < 3; i++) {
        ps->mem[i] = dnnl_mem_for(pd, q[kind][i], 17u * (uint32_t)kind + (uint32_t)i);
        ps->args[i].arg = a[kind][i];
        ps->args[i].memory = ps->mem[i];
    }
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(ps->impl, sizeof ps->impl, "%s", impl);
    DNNL(dnnl_primitive_create(&ps->prim, pd));
    if (pd_out) *pd_out = pd;
    else dnnl_primitive_desc_destroy(pd);
}

static void dnnl_pass_run(dnnl_pass *ps) {
    DNNL(dnnl_primitive_execute(ps->prim, g_stream, ps->nargs, ps->args));
    DNNL(dnnl_stream_wait(g_stream));
}

static void dnnl_pass_free(dnnl_pass *ps) {
    dnnl_primitive_destroy(ps->prim);
    for (int i = 0; i < ps->nargs; i++) dnnl_memory_destroy(ps->mem[i]);
}

/* The three passes of a case, built on the conv (or deconv) descriptors with format any. */
static void dnnl_build(const bcase *b, int64_t N, const cg_conv_desc *c, dnnl_pass ps[3]) {
    /* conv terms: x (N, Ci, in³), w (Co, Ci, k³), y (N, Co, out³) */
    dnnl_dims_t xd = {N, c->Ci, c->in[0], c->in[1], c->in[2]};
    dnnl_dims_t yd = {N, c->Co, c->out[0], c->out[1], c->out[2]};
    dnnl_dims_t wd = {c->Co, c->Ci, c->k[0], c->k[1], c->k[2]};
    dnnl_dims_t strides = {c->stride[0], c->stride[1], c->stride[2]};
    dnnl_dims_t pl = {c->pad[0], c->pad[1], c->pad[2]}, pr;
    for (int d = 0; d < 3; d++) pr[d] = (int64_t)(c->out[d] - 1) * c->stride[d] + c->k[d] - c->in[d] - c->pad[d];
    dnnl_memory_desc_t x_md, y_md, w_md;
    dnnl_primitive_desc_t fwd_pd;
    if (!b->transposed) {
        DNNL(dnnl_memory_desc_init_by_tag(&x_md, 5, xd, dnnl_f32, dnnl_format_tag_any));
        DNNL(dnnl_memory_desc_init_by_tag(&y_md, 5, yd, dnnl_f32, dnnl_format_tag_any));
        DNNL(dnnl_memory_desc_init_by_tag(&w_md, 5, wd, dnnl_f32, dnnl_format_tag_any));
        dnnl_convolution_desc_t f, bd, bw;
        DNNL(dnnl_convolution_forward_desc_init(&f, dnnl_forward_training, dnnl_convolution_auto, &x_md, &w_md, NULL,
                                                &y_md, strides, pl, pr));
        dnnl_pass_make(&ps[0], &f, NULL, 0, &fwd_pd);
        DNNL(dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_auto, &x_md, &w_md, &y_md, strides, pl, pr));
        dnnl_pass_make(&ps[1], &bd, fwd_pd, 1, NULL);
        DNNL(dnnl_convolution_backward_weights_desc_init(&bw, dnnl_convolution_auto, &x_md, &w_md, NULL, &y_md,
                                                         strides, pl, pr));
        dnnl_pass_make(&ps[2], &bw, fwd_pd, 2, NULL);
    } else {
        /* the deconvolution's src is the conv's y, its dst the conv's x; its weights are
         * (OC = conv Ci, IC = conv Co, k³) */
        dnnl_dims_t wdt = {c->Ci, c->Co, c->k[0], c->k[1], c->k[2]};
        DNNL(dnnl_memory_desc_init_by_tag(&x_md, 5, yd, dnnl_f32, dnnl_format_tag_any));
        DNNL(dnnl_memory_desc_init_by_tag(&y_md, 5, xd, dnnl_f32, dnnl_format_tag_any));
        DNNL(dnnl_memory_desc_init_by_tag(&w_md, 5, wdt, dnnl_f32, dnnl_format_tag_any));
        dnnl_deconvolution_desc_t f, bd, bw;
        DNNL(dnnl_deconvolution_forward_desc_init(&f, dnnl_forward_training, dnnl_deconvolution_direct, &x_md, &w_md,
                                                  NULL, &y_md, strides, pl, pr));
        dnnl_pass_make(&ps[0], &f, NULL, 0, &fwd_pd);
        DNNL(dnnl_deconvolution_backward_data_desc_init(&bd, dnnl_deconvolution_direct, &x_md, &w_md, &y_md, strides,
                                                        pl, pr));
        dnnl_pass_make(&ps[1], &bd, fwd_pd, 1, NULL);
        DNNL(dnnl_deconvolution_backward_weights_desc_init(&bw, dnnl_deconvolution_direct, &x_md, &w_md, NULL, &y_md,
                                                           strides, pl, pr));
        dnnl_pass_make(&ps[2], &bw, fwd_pd, 2, NULL);
    }
    dnnl_primitive_desc_destroy(fwd_pd);
}

/* ---------------------------------------------------------- calograd ---- */

typedef struct {
    const cg_backend *be;
    cg_conv_desc c;
    int transposed;
    float *x, *w, *y, *dx, *dy, *dw;
} cg_case;

static float *balloc(const cg_backend *be, int64_t n, uint32_t seed) {
    float *p = be->alloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "cpu_conv: out of memory (%lld floats)\n", (long long)n);
        exit(1);
    }
    fill_rand(p, (size_t)n, seed);
    return p;
}

static void cg_case_make(cg_case *k, const cg_backend *be, const cg_conv_desc *c, int transposed) {
    k->be = be;
    k->c = *c;
    k->transposed = transposed;
    int64_t nx = c->N * c->Ci * c->in[0] * c->in[1] * c->in[2], ny = c->N * c->Co * c->out[0] * c->out[1] * c->out[2];
    int64_t nw = (int64_t)c->Co * c->Ci * c->k[0] * c->k[1] * c->k[2];
    k->x = balloc(be, nx, 1);
    k->dx = balloc(be, nx, 2);
    k->y = balloc(be, ny, 3);
    k->dy = balloc(be, ny, 4);
    k->w = balloc(be, nw, 5);
    k->dw = balloc(be, nw, 6);
}

/* pass 0: forward, 1: backward-data, 2: backward-weight (of the case's own op) */
static void cg_case_run(cg_case *k, int pass) {
    const cg_backend *be = k->be;
    if (!k->transposed) {
        if (pass == 0) be->conv_fwd(k->y, k->x, k->w, NULL, &k->c);
        if (pass == 1) be->conv_bwd_data(k->dx, k->dy, k->w, &k->c);
        if (pass == 2) be->conv_bwd_weight(k->dw, k->x, k->dy, &k->c);
    } else {
        /* conv_transpose3d(u, w) = bwd_data(u as dy); its input gradient = conv(g, w); its
         * weight gradient = bwd_weight(g as x, u as dy) */
        if (pass == 0) be->conv_bwd_data(k->dx, k->dy, k->w, &k->c);
        if (pass == 1) be->conv_fwd(k->y, k->x, k->w, NULL, &k->c);
        if (pass == 2) be->conv_bwd_weight(k->dw, k->x, k->dy, &k->c);
    }
}

static void cg_case_free(cg_case *k) {
    float *all[6] = {k->x, k->w, k->y, k->dx, k->dy, k->dw};
    for (int i = 0; i < 6; i++) k->be->free(all[i]);
}

/* ------------------------------------------------- post-processor ---- */

/* The BIB-AE post-processor (models.md §1.5) forward on B showers of 30³: the energy MLP,
 * then six per-voxel layers in four pointwise_layer calls (conv1 expanded in conv2's input,
 * conv6 a projection of conv5's output: core/backend.h, cg_pw_args). Returns ms for the batch. */
typedef struct {
    const cg_backend *be;
    int64_t B, V;
    float *img, *E, *econd_in, *h1, *h2, *econd, *fc[3], *fcb[3];
    float *w[6], *bias[6], *gamma[4], *beta[4], *bias_b, *act[2], *mean[2], *rstd[2], *out, *w2e, *tmp;
} pp_model;

static void pp_make(pp_model *m, const cg_backend *be, int64_t B) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->B = B;
    m->V = 27000;
    int64_t V = m->V;
    static const int ci[6] = {1, 128, 128, 128, 128, 128}, co[6] = {128, 128, 128, 128, 128, 1};
    m->img = balloc(be, B * V, 11);
    m->E = balloc(be, B, 12);
    m->econd_in = balloc(be, B * 2, 13);
    m->h1 = balloc(be, B * 64, 14);
    m->h2 = balloc(be, B * 64, 15);
    m->econd = balloc(be, B * 64, 16);
    static const int fin[3] = {2, 64, 64};
    for (int i = 0; i < 3; i++) {
        m->fc[i] = balloc(be, 64 * fin[i], 20 + i);
        m->fcb[i] = balloc(be, 64, 30 + i);
    }
    for (int l = 0; l < 6; l++) {
        m->w[l] = balloc(be, (int64_t)co[l] * ci[l], 40 + l);
        m->bias[l] = balloc(be, co[l], 50 + l);
    }
    m->w2e = balloc(be, 128 * 64, 60); /* conv2's weights on the 64 energy channels */
    for (int i = 0; i < 4; i++) {
        m->gamma[i] = balloc(be, V, 70 + i);
        m->beta[i] = balloc(be, V, 80 + i);
    }
    m->bias_b = balloc(be, B * 128, 90);
    for (int i = 0; i < 2; i++) {
        m->act[i] = balloc(be, B * 128 * V, 100 + i);
        m->mean[i] = balloc(be, B * 128, 110 + i);
        m->rstd[i] = balloc(be, B * 128, 120 + i);
    }
    m->out = balloc(be, B * V, 130);
    m->tmp = balloc(be, B * 64, 131);
}

static void pp_free(pp_model *m) {
    float **all = (float **)&m->img;
    int n = (int)((sizeof *m - offsetof(pp_model, img)) / sizeof(float *));
    for (int i = 0; i < n; i++)
        if (all[i]) m->be->free(all[i]);
}

static void pp_forward(pp_model *m) {
    const cg_backend *be = m->be;
    const int64_t B = m->B, V = m->V;
    /* econd = MLP(cat(Σ img, E)): three Linear + LeakyReLU(0.01) */
    int64_t shape[2] = {B, V};
    be->reduce_sum(m->tmp, m->img, 2, shape, 2u);
    for (int64_t b = 0; b < B; b++) { /* tiny (B × 2): assembled on the host side of the table */
        m->econd_in[2 * b] = m->tmp[b];
        m->econd_in[2 * b + 1] = m->E[b];
    }
    const float *in = m->econd_in;
    float *outs[3] = {m->h1, m->h2, m->econd};
    static const int fin[3] = {2, 64, 64};
    for (int i = 0; i < 3; i++) {
        for (int64_t b = 0; b < B; b++) memcpy(outs[i] + b * 64, m->fcb[i], 64 * sizeof(float));
        be->gemm(0, 1, B, 64, fin[i], 1.0f, in, fin[i], 0, m->fc[i], fin[i], 0, 1.0f, outs[i], 64, 0, 1);
        be->unary(CG_U_LEAKY_RELU, outs[i], outs[i], B * 64, 0.01f, 0);
        in = outs[i];
    }
    /* conv2's energy part folds into a per-sample bias: bias_b = econd · w2eᵀ */
    be->gemm(0, 1, B, 128, 64, 1.0f, m->econd, 64, 0, m->w2e, 64, 0, 0.0f, m->bias_b, 128, 0, 1);
    /* conv1 (1→128) is expanded in conv2's loader: its LN statistics per (sample, channel)
     * follow from the mean and variance of the shower (tiny: on the host side) */
    for (int64_t b = 0; b < B; b++) {
        const float *x = m->img + b * V;
        double s = 0, ss = 0;
        for (int64_t v = 0; v < V; v++) s += x[v];
        double mx = s / (double)V;
        for (int64_t v = 0; v < V; v++) ss += (x[v] - mx) * (x[v] - mx);
        for (int c = 0; c < 128; c++) {
            m->mean[1][b * 128 + c] = (float)(m->w[0][c] * mx + m->bias[0][c]);
            m->rstd[1][b * 128 + c] = (float)(1.0 / sqrt((double)m->w[0][c] * m->w[0][c] * (ss / (double)V) + 1e-5));
        }
    }
    /* conv2..conv4: LN + LeakyReLU of the previous output on the fly, statistics out */
    for (int l = 1; l <= 3; l++) {
        int a = l % 2, o = (l + 1) % 2;
        be->pointwise_layer(&(cg_pw_args){
            .y = m->act[o], .y_mean = m->mean[o], .y_rstd = m->rstd[o], .x = l == 1 ? m->img : m->act[a],
            .x_scale = l == 1 ? m->w[0] : NULL, .x_shift = l == 1 ? m->bias[0] : NULL, .x_mean = m->mean[a],
            .x_rstd = m->rstd[a], .gamma = m->gamma[l - 1], .beta = m->beta[l - 1], .act = 1, .slope = 0.01f,
            .w = m->w[l], .bias = m->bias[l], .bias_b = l == 1 ? m->bias_b : NULL, .B = B, .Ci = 128, .Co = 128,
            .V = V, .eps = 1e-5f});
    }
    /* conv5: LN4 + LeakyReLU in; conv6 (LeakyReLU in, 128→1, no bias) applied to its output
     * as a projection, so conv5's 128 channels are never written */
    be->pointwise_layer(&(cg_pw_args){.y = m->out, .x = m->act[0], .x_mean = m->mean[0], .x_rstd = m->rstd[0],
                                      .gamma = m->gamma[3], .beta = m->beta[3], .act = 1, .slope = 0.01f,
                                      .w = m->w[4], .bias = m->bias[4], .proj = m->w[5], .B = B, .Ci = 128, .Co = 128,
                                      .V = V, .eps = 1e-5f});
}

/* ------------------------------------------------------------ driver ---- */

typedef struct {
    double cg[3], dn[3];
    char impl[3][64];
} case_result;

static double conv_flops(const cg_conv_desc *c) {
    return 2.0 * (double)c->N * c->Co * c->Ci * c->k[0] * c->k[1] * c->k[2] * c->out[0] * c->out[1] * c->out[2];
}

static void run_case(const bcase *b, int64_t N, int reps, const cg_backend *be, case_result *r) {
    cg_conv_desc c = cg_layer_case_desc(b, N);
    cg_case k;
    cg_case_make(&k, be, &c, b->transposed);
    dnnl_pass ps[3];
    dnnl_build(b, N, &c, ps);
    double *t = malloc((size_t)reps * sizeof(double));
    for (int pass = 0; pass < 3; pass++) {
        snprintf(r->impl[pass], sizeof r->impl[pass], "%s", ps[pass].impl);
        for (int i = 0; i < 2; i++) cg_case_run(&k, pass);
        for (int i = 0; i < reps; i++) {
            double t0 = now_ms();
            cg_case_run(&k, pass);
            t[i] = now_ms() - t0;
        }
        r->cg[pass] = median(t, reps);
        for (int i = 0; i < 2; i++) dnnl_pass_run(&ps[pass]);
        for (int i = 0; i < reps; i++) {
            double t0 = now_ms();
            dnnl_pass_run(&ps[pass]);
            t[i] = now_ms() - t0;
        }
        r->dn[pass] = median(t, reps);
        usleep(50000); /* let OpenMP's spinning threads go to sleep before calograd runs */
    }
    free(t);
    for (int pass = 0; pass < 3; pass++) dnnl_pass_free(&ps[pass]);
    cg_case_free(&k);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void cpu_model(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ') p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(out, n, "%s", p);
            }
            break;
        }
    fclose(f);
}

int main(int argc, char **argv) {
    int quick = 0, reps = 0, threads = 0, do_pp = 1, runs = 0;
    const char *out_path = NULL, *only = NULL, *isa = "avx2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--no-pp")) do_pp = 0;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--case") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--onednn-isa") && i + 1 < argc) isa = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--threads N] [--reps N] [--out PATH] [--no-pp] [--case NAME] [--runs N]\n"
                            "       [--onednn-isa avx2|native]\n", argv[0]);
            return 2;
        }
    }
    if (!cg_cpu_has_avx2()) {
        fprintf(stderr, "cpu_conv: this processor lacks AVX2+FMA; nothing to compare\n");
        return 77;
    }
    if (threads > 0) cg_threads_set(threads);
    int nt = cg_threads_get();
    omp_set_num_threads(nt);
    if (reps <= 0) reps = quick ? 3 : 11;
    if (runs <= 0) runs = quick || only ? 1 : 3;
    if (runs > 64) runs = 64;
    if (!out_path && !quick && !only) out_path = "bench/results/cpu_conv.json";
    const cg_backend *be = cg_backend_get(CG_CPU);
    if (!strcmp(isa, "avx2")) DNNL(dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2));
    else if (strcmp(isa, "native") != 0) {
        fprintf(stderr, "cpu_conv: --onednn-isa takes avx2 or native, not '%s'\n", isa);
        return 2;
    }
    DNNL(dnnl_engine_create(&g_eng, dnnl_cpu, 0));
    DNNL(dnnl_stream_create(&g_stream, g_eng, dnnl_stream_default_flags));
    const dnnl_version_t *ver = dnnl_version();

    char model[128], cmd[512] = "", date[64];
    cpu_model(model, sizeof model);
    for (int i = 0; i < argc; i++) {
        strncat(cmd, i ? " " : "", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 1);
    }
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    double load[3] = {0};
    if (getloadavg(load, 3) < 0) load[0] = -1;

    double peak = bench_fma_peak_gflops(quick ? 2 : 5);
    printf("calograd kernels \"%s\" vs oneDNN %d.%d.%d (ISA %s), %d threads, %s; AVX2 FMA peak %.1f GFLOP/s; "
           "load %.2f\n", be->name, ver->major, ver->minor, ver->patch, isa, nt, model, peak, load[0]);
    printf("%-22s %-5s %9s %9s %7s %7s %6s  %s\n", "case", "pass", "calograd", "oneDNN", "GFLOP/s", "%peak", "ratio",
           "oneDNN implementation");

    bcase cases[sizeof SUITE / sizeof SUITE[0]];
    int ncases = 0;
    if (quick) cases[ncases++] = QUICK;
    else
        for (size_t i = 0; i < sizeof SUITE / sizeof SUITE[0]; i++)
            if (!only || strstr(SUITE[i].name, only)) cases[ncases++] = SUITE[i];
    int64_t N = quick ? 2 : 8;
    case_result *res = calloc((size_t)ncases, sizeof *res);
    double logsum = 0;
    static const char *pname[3] = {"fwd", "bwd_d", "bwd_w"};
    if (ncases > 0) { /* untimed: process start-up (OpenMP's threads, page faults) lands here */
        case_result warm;
        run_case(&cases[0], N, 2, be, &warm);
    }
    /* `runs` passes over the suite; each time is the median over the runs of the per-run
     * medians, so a burst of other work on the machine during one run does not decide a case. */
    case_result *all = calloc((size_t)(runs * ncases), sizeof *all);
    for (int r = 0; r < runs; r++)
        for (int i = 0; i < ncases; i++) run_case(&cases[i], N, reps, be, &all[r * ncases + i]);
    for (int i = 0; i < ncases; i++) {
        double v[64];
        for (int pass = 0; pass < 3; pass++) {
            for (int r = 0; r < runs; r++) v[r] = all[r * ncases + i].cg[pass];
            res[i].cg[pass] = median(v, runs);
            for (int r = 0; r < runs; r++) v[r] = all[r * ncases + i].dn[pass];
            res[i].dn[pass] = median(v, runs);
            memcpy(res[i].impl[pass], all[i].impl[pass], sizeof res[i].impl[pass]);
        }
    }
    free(all);
    for (int i = 0; i < ncases; i++) {
        cg_conv_desc c = cg_layer_case_desc(&cases[i], N);
        double fl = conv_flops(&c);
        double tc = 0, td = 0;
        for (int pass = 0; pass < 3; pass++) {
            double g = fl / res[i].cg[pass] / 1e6;
            printf("%-22s %-5s %9.2f %9.2f %7.1f %6.1f%% %6.2f  %s\n", pass ? "" : cases[i].name, pname[pass],
                   res[i].cg[pass], res[i].dn[pass], g, 100 * g / peak, res[i].dn[pass] / res[i].cg[pass],
                   res[i].impl[pass]);
            tc += res[i].cg[pass];
            td += res[i].dn[pass];
        }
        printf("%-22s %-5s %9.2f %9.2f %7s %7s %6.2f\n", "", "total", tc, td, "", "", td / tc);
        logsum += log(td / tc);
        fflush(stdout);
    }
    double geo = ncases ? exp(logsum / ncases) : 0;
    /* The peak again at the end: the higher of the two is the better estimate of the
     * unloaded machine (a busy moment only lowers it), and "% peak" uses it. */
    double peak_end = bench_fma_peak_gflops(quick ? 2 : 5), load_end[3] = {0};
    if (getloadavg(load_end, 3) < 0) load_end[0] = -1;
    if (peak_end > peak) {
        printf("(the FMA peak measured at the end is higher: %.1f GFLOP/s; %% peak above used %.1f)\n", peak_end, peak);
    }
    printf("geometric mean of the oneDNN/calograd total-time ratios: %.2f\n", geo);

    double pp_ms = 0;
    int64_t pp_B = quick ? 1 : 8;
    if (do_pp) {
        pp_model m;
        pp_make(&m, be, pp_B);
        int pp_reps = quick ? 1 : reps; /* the smoke run only checks that it runs */
        double *t = malloc((size_t)pp_reps * sizeof(double));
        pp_forward(&m);
        for (int i = 0; i < pp_reps; i++) {
            double t0 = now_ms();
            pp_forward(&m);
            t[i] = now_ms() - t0;
        }
        pp_ms = median(t, pp_reps);
        free(t);
        pp_free(&m);
        double fl = 2.0 * pp_B * 27000 * (128 + 128 * 128 * 4 + 128);
        printf("BIB-AE post-processor forward, batch %lld: %.2f ms per batch, %.3f ms per shower (%.1f GFLOP/s)\n",
               (long long)pp_B, pp_ms, pp_ms / pp_B, fl / pp_ms / 1e6);
    }

    if (out_path) {
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", out_path);
        char *slash = strrchr(tmp, '/');
        if (slash) { /* create the results folder if it is missing */
            *slash = 0;
            mkdir(tmp, 0777);
        }
        snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
        FILE *f = fopen(tmp, "w");
        if (!f) {
            fprintf(stderr, "cpu_conv: cannot write %s\n", tmp);
            return 2;
        }
        fprintf(f, "{\n  \"benchmark\": \"cpu_conv\",\n  \"command\": ");
        json_str(f, cmd);
        fprintf(f, ",\n  \"date\": \"%s\",\n  \"machine\": ", date);
        json_str(f, model);
        fprintf(f, ",\n  \"threads\": %d,\n  \"load_avg_1min_at_start\": %.2f,\n  \"calograd_table\": \"%s\",\n", nt,
                load[0], be->name);
        fprintf(f, "  \"onednn_version\": \"%d.%d.%d\",\n  \"onednn_max_isa\": \"%s\",\n  \"batch\": %lld,\n  \"reps\": %d,\n  \"runs\": %d,\n",
                ver->major, ver->minor, ver->patch, isa, (long long)N, reps, runs);
        double pk = peak_end > peak ? peak_end : peak;
        fprintf(f, "  \"fma_peak_gflops\": %.2f,\n  \"fma_peak_gflops_start_end\": [%.2f, %.2f],\n", pk, peak, peak_end);
        fprintf(f, "  \"load_avg_1min_at_end\": %.2f,\n  \"cases\": [\n", load_end[0]);
        for (int i = 0; i < ncases; i++) {
            cg_conv_desc c = cg_layer_case_desc(&cases[i], N);
            double fl = conv_flops(&c), tc = 0, td = 0;
            fprintf(f, "    {\"name\": \"%s\", \"op\": \"%s\", \"Ci\": %d, \"Co\": %d, \"k\": %d, \"stride\": %d, "
                       "\"pad\": %d, \"D\": %d, \"gflop\": %.4f,\n",
                    cases[i].name, cases[i].transposed ? "conv_transpose3d" : "conv3d", cases[i].Ci, cases[i].Co,
                    cases[i].k, cases[i].s, cases[i].p, cases[i].D, fl / 1e9);
            for (int pass = 0; pass < 3; pass++) {
                double g = fl / res[i].cg[pass] / 1e6;
                fprintf(f, "     \"%s\": {\"calograd_ms\": %.3f, \"onednn_ms\": %.3f, \"calograd_gflops\": %.1f, "
                           "\"onednn_gflops\": %.1f, \"calograd_pct_peak\": %.1f, \"ratio\": %.3f, \"onednn_impl\": ",
                        pname[pass], res[i].cg[pass], res[i].dn[pass], g, fl / res[i].dn[pass] / 1e6, 100 * g / pk,
                        res[i].dn[pass] / res[i].cg[pass]);
                json_str(f, res[i].impl[pass]);
                fprintf(f, "},\n");
                tc += res[i].cg[pass];
                td += res[i].dn[pass];
            }
            fprintf(f, "     \"total\": {\"calograd_ms\": %.3f, \"onednn_ms\": %.3f, \"ratio\": %.3f}}%s\n", tc, td,
                    td / tc, i + 1 < ncases ? "," : "");
        }
        fprintf(f, "  ],\n  \"geomean_ratio\": %.3f", geo);
        if (do_pp)
            fprintf(f, ",\n  \"postprocessor_forward\": {\"batch\": %lld, \"ms_per_batch\": %.3f, \"ms_per_shower\": %.4f}",
                    (long long)pp_B, pp_ms, pp_ms / pp_B);
        fprintf(f, "\n}\n");
        if (fclose(f) != 0 || rename(tmp, out_path) != 0) {
            fprintf(stderr, "cpu_conv: cannot write %s\n", out_path);
            remove(tmp);
            return 2;
        }
        printf("wrote %s\n", out_path);
    }
    free(res);
    dnnl_stream_destroy(g_stream);
    dnnl_engine_destroy(g_eng);
    return 0;
}
