/*
 * kernels/cpu/dev/cputime.c — a tuning harness, not a benchmark: times the dispatch table's
 * conv kernels and pointwise layer on issue 3's layer suite by CPU time (CLOCK_PROCESS_CPUTIME_ID),
 * which other processes on a loaded machine disturb far less than wall time. Run it with
 * CG_THREADS=1 to compare kernel variants; the real numbers come from bench/cpu_conv.
 *
 *   cc -O2 -I. -Icore kernels/cpu/dev/cputime.c build/libcalograd.a -lm -lz -lpthread -o /tmp/cputime
 *   CG_THREADS=1 /tmp/cputime [case-substring] [reps]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calograd.h"

#include "bench/layer_suite.h"
#define SUITE CG_LAYER_SUITE
typedef cg_layer_case bcase;

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *rnd(int64_t n) {
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    for (int64_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX - 0.5f;
    return p;
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    const cg_backend *be = cg_backend_get(CG_CPU);
    int nt = cg_threads_get();
    printf("%s, %d threads; GFLOP/s per thread by CPU time (min of %d)\n", be->name, nt, reps);
    for (size_t i = 0; i < sizeof SUITE / sizeof SUITE[0]; i++) {
        const bcase *b = &SUITE[i];
        if (only && !strstr(b->name, only)) continue;
        cg_conv_desc c = cg_layer_case_desc(b, 8);
        int64_t nx = c.N * c.Ci * c.in[0] * c.in[1] * c.in[2], ny = c.N * c.Co * c.out[0] * c.out[1] * c.out[2];
        int64_t nw = (int64_t)c.Co * c.Ci * c.k[0] * c.k[1] * c.k[2];
        float *x = rnd(nx), *dx = rnd(nx), *y = rnd(ny), *dy = rnd(ny), *w = rnd(nw), *dw = rnd(nw);
        double fl = 2.0 * ny * c.Ci * c.k[0] * c.k[1] * c.k[2];
        printf("%-22s", b->name);
        for (int pass = 0; pass < 3; pass++) {
            double best = 1e30;
            for (int r = 0; r < reps + 1; r++) {
                double t0 = cpu_s();
                if (pass == 0) be->conv_fwd(y, x, w, NULL, &c);
                if (pass == 1) be->conv_bwd_data(dx, dy, w, &c);
                if (pass == 2) be->conv_bwd_weight(dw, x, dy, &c);
                double t = cpu_s() - t0;
                if (r && t < best) best = t;
            }
            static const char *nm[3] = {"fwd", "bwd_d", "bwd_w"};
            printf("  %s %7.2f ms %6.1f", nm[pass], 1e3 * best / nt, fl / (best / nt) / 1e9);
        }
        printf("\n");
        free(x); free(dx); free(y); free(dy); free(w); free(dw);
    }
    if (!only || strstr("pointwise_128to128", only)) {
        /* the post-processor's middle layer: LN + LeakyReLU in, statistics out */
        int64_t B = 8, V = 27000, C = 128;
        float *x = rnd(B * C * V), *y = rnd(B * C * V), *w = rnd(C * C), *st = rnd(4 * B * C), *g = rnd(V);
        double best = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = cpu_s();
            be->pointwise_layer(&(cg_pw_args){.y = y, .y_mean = st + 2 * B * C, .y_rstd = st + 3 * B * C, .x = x,
                                              .x_mean = st, .x_rstd = st + B * C, .gamma = g, .beta = g, .act = 1,
                                              .slope = 0.01f, .w = w, .B = B, .Ci = (int)C, .Co = (int)C, .V = V,
                                              .eps = 1e-5f});
            double t = cpu_s() - t0;
            if (r && t < best) best = t;
        }
        printf("%-22s  %7.2f ms %6.1f\n", "pointwise_128to128", 1e3 * best / nt, 2.0 * B * V * C * C / (best / nt) / 1e9);
    }
    return 0;
}
