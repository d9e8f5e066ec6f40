/*
 * kernels/cpu/dev/tile_roofline.c — throughput of every broadcast- and dot-tile shape on
 * L1-resident data, single-threaded (GFLOP/s by thread CPU time): calibrates the tile cost
 * model of avx2_tile.c against the real core.
 *
 *   cc -O2 -mavx2 -mfma -I. -Icore kernels/cpu/dev/tile_roofline.c build/libcalograd.a -lm -lz -lpthread -o /tmp/roof
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "calograd.h"
#include "kernels/cpu/avx2_tile.h"

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    enum { K = 288 };
    static float x[8192] __attribute__((aligned(64))), wp[K * 8], y[8192];
    static int32_t off[K];
    for (int i = 0; i < 8192; i++) x[i] = 1e-3f * (float)(i % 17);
    for (int i = 0; i < K * 8; i++) wp[i] = 1e-3f;
    /* conv-like offsets: 3 taps along w, rows 34 apart, planes, channels */
    for (int j = 0; j < K; j++) off[j] = (j % 3) + 34 * ((j / 3) % 3) + 102 * ((j / 9) % 3) + 8 * (j / 27) % 2048;
    printf("broadcast tile R×M×V: GFLOP/s (K=%d, L1)\n", K);
    for (int R = 1; R <= 6; R++)
        for (int M = 1; M <= 6; M++)
            for (int V = 1; V <= 4; V++) {
                if (R * M * V > 12) continue;
                cg_bcast_tile t = {.x = x, .off = off, .wp = wp, .K = K, .wps = R, .xrs = 34, .y = y, .ycs = 512,
                                   .yrs = 64, .yws = 1, .nw = 8 * V};
                int n = 20000 / (R * M * V);
                double t0 = cpu_s();
                for (int i = 0; i < n; i++) cg_avx2_bcast_tile(R, M, V, &t);
                double s = cpu_s() - t0;
                printf("  %d×%d×%d %6.1f  model %.1f\n", R, M, V, 2.0 * n * K * R * M * V * 8 / s / 1e9,
                       2.0 * K * R * M * V * 8 / cg_avx2_bcast_cost(R, M, V, K) * 3.0);
            }
    printf("dot tile R×C: GFLOP/s (64 lines × 4 vectors, L1)\n");
    static double od[64];
    for (int R = 1; R <= 6; R++)
        for (int C = 1; C <= 6; C++) {
            if (R * C > 12) continue;
            int32_t o[6] = {0, 1, 2, 34, 35, 36};
            cg_dot_tile t = {.a = x, .b = x + 2048, .off = o, .acs = 1024, .ars = 32, .brs = 32, .nlines = 8, .nvec = 4,
                             .outd = od, .ocs = 8};
            int n = 400000 / (R * C);
            double t0 = cpu_s();
            for (int i = 0; i < n; i++) cg_avx2_dot_tile(R, C, &t);
            double s = cpu_s() - t0;
            printf("  %d×%d %6.1f\n", R, C, 2.0 * n * 8 * 32 * R * C / s / 1e9);
        }
    return 0;
}
