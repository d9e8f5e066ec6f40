/*
 * bench/io_bench.c — .cvox against CaloChallenge-style HDF5 on the same showers (issue 5).
 *
 * 1. Simulate N ILD photons (default 100k, 10–100 GeV, io/simulate.h) into a .cvox file.
 * 2. Export them to HDF5 in the CaloChallenge layout: float32 showers (N, 27000), gzip
 *    level 4 with the shuffle filter, chunked by event (1 event per chunk).
 * 3. Compare file sizes, and the time to read each whole file into dense float32 on ONE
 *    thread (blocks of 1000 events into a reused buffer: cg_cvox_read against libhdf5's
 *    H5Dread through cg_h5_read). A first pass checks that both give the same bits and
 *    warms the page cache, so both timings measure decoding, not the disk. Medians of
 *    --reps timed passes.
 * Prints a table and writes bench/results/io.json. The data files are deleted at the end
 * unless --keep.
 *
 *   ./build/bench/io_bench [--events 100000] [--reps 3] [--dir /tmp] [--keep]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "calograd.h"
#include "io/cvox.h"
#include "io/hdf5.h"
#include "io/simulate.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t fsize(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what) {
    fprintf(stderr, "io_bench: %s: %s\n", what, cg_last_error());
    exit(1);
}

#define BLOCK 1000

/* One timed pass over a whole file, single-threaded, into buf (BLOCK × ncells). */
static double pass_cvox(const char *path, int64_t n, int64_t nc, float *buf) {
    double t0 = now();
    cg_cvox_reader *r = cg_cvox_open(path);
    if (!r) die(path);
    for (int64_t e = 0; e < n; e += BLOCK) {
        int64_t k = n - e < BLOCK ? n - e : BLOCK;
        if (cg_cvox_read(r, e, k, buf, NULL)) die("cvox read");
    }
    cg_cvox_close(r);
    (void)nc;
    return now() - t0;
}

static double pass_h5(const char *path, int64_t n, int64_t nc, float *buf) {
    double t0 = now();
    cg_h5_reader *r = cg_h5_open(path, NULL);
    if (!r) die(path);
    for (int64_t e = 0; e < n; e += BLOCK) {
        int64_t k = n - e < BLOCK ? n - e : BLOCK;
        if (cg_h5_read(r, e, k, buf, NULL)) die("hdf5 read");
    }
    cg_h5_close(r);
    (void)nc;
    return now() - t0;
}

int main(int argc, char **argv) {
    int64_t events = 100000;
    int reps = 3, keep = 0;
    const char *dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc) events = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--keep")) keep = 1;
        else {
            fprintf(stderr, "usage: io_bench [--events N] [--reps R] [--dir DIR] [--keep]\n");
            return 2;
        }
    }
    if (events < 1 || reps < 1 || reps > 50) {
        fprintf(stderr, "io_bench: --events >= 1, --reps 1..50\n");
        return 2;
    }
    double load[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(la);
    }
    char cpu[128] = "unknown";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[256];
        while (fgets(line, sizeof line, ci))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) snprintf(cpu, sizeof cpu, "%s", c + 2);
                cpu[strcspn(cpu, "\n")] = 0;
                break;
            }
        fclose(ci);
    }
    char cvox[600], h5[600];
    snprintf(cvox, sizeof cvox, "%s/io_bench_%ld.cvox", dir, (long)getpid());
    snprintf(h5, sizeof h5, "%s/io_bench_%ld.hdf5", dir, (long)getpid());
    printf("io_bench: %lld ILD photons, 10-100 GeV; load average %.2f; %s; %d cores\n", (long long)events, load[0], cpu,
           cg_cpu_count());

    /* 1. simulate (all cores) */
    cg_sim_opts so;
    cg_sim_defaults(&so);
    so.seed = 2026;
    cg_sim *sim = cg_sim_new(&so);
    if (!sim) die("simulator");
    double t0 = now();
    if (cg_sim_write(sim, events, cvox, NULL, NULL)) die("simulate");
    double t_sim = now() - t0;
    const int64_t nc = cg_sim_info(sim)->geom.ncells;
    cg_sim_free(sim);
    printf("  simulated into %s in %.1f s (%d threads)\n", cvox, t_sim, cg_threads_get());

    /* 2. export */
    cg_h5_export_opts eo = {0};
    eo.layout = CG_H5_CALOCHALLENGE;
    eo.gzip = 4;
    eo.chunk_events = 1;
    t0 = now();
    if (cg_h5_export(cvox, h5, &eo, NULL, NULL)) die("export");
    double t_export = now() - t0;
    printf("  exported to %s in %.1f s\n", h5, t_export);

    /* 3. read: everything single-threaded from here on */
    cg_threads_set(1);
    float *a = malloc((size_t)(BLOCK * nc) * sizeof(float)), *b = malloc((size_t)(BLOCK * nc) * sizeof(float));
    if (!a || !b) die("out of memory");
    { /* warm-up and check: both files hold the same bits */
        cg_cvox_reader *rc = cg_cvox_open(cvox);
        cg_h5_reader *rh = cg_h5_open(h5, NULL);
        if (!rc || !rh) die("open");
        for (int64_t e = 0; e < events; e += BLOCK) {
            int64_t k = events - e < BLOCK ? events - e : BLOCK;
            if (cg_cvox_read(rc, e, k, a, NULL) || cg_h5_read(rh, e, k, b, NULL)) die("read");
            if (memcmp(a, b, (size_t)(k * nc) * sizeof(float))) {
                fprintf(stderr, "io_bench: the files differ in events %lld..%lld\n", (long long)e, (long long)(e + k));
                return 1;
            }
        }
        cg_cvox_close(rc);
        cg_h5_close(rh);
    }
    double tc[50], th[50];
    for (int r = 0; r < reps; r++) { /* interleaved, so that drifting load hits both */
        tc[r] = pass_cvox(cvox, events, nc, a);
        th[r] = pass_h5(h5, events, nc, b);
        printf("  pass %d: .cvox %.2f s, HDF5 %.2f s\n", r + 1, tc[r], th[r]);
    }
    double raw_c[50], raw_h[50];
    memcpy(raw_c, tc, sizeof tc);
    memcpy(raw_h, th, sizeof th);
    double mc = median(tc, reps), mh = median(th, reps);
    int64_t sc = fsize(cvox), sh = fsize(h5);
    double dense_gb = (double)events * (double)nc * 4 / 1e9;
    double ratio = (double)sc / (double)sh, speedup = mh / mc;

    printf("\n%-34s %14s %14s %10s\n", "", ".cvox", "HDF5 gzip4+shuf", "cvox/h5");
    printf("%-34s %14.1f %14.1f %10.3f\n", "file size (MB)", sc / 1e6, sh / 1e6, ratio);
    printf("%-34s %14.2f %14.2f %10.3f\n", "bytes per shower", (double)sc / events / 1e3, (double)sh / events / 1e3,
           ratio);
    printf("%-34s %14.2f %14.2f %10.3f\n", "read all -> dense f32, 1 thread (s)", mc, mh, mc / mh);
    printf("%-34s %14.0f %14.0f %10.2f\n", "showers per second", events / mc, events / mh, speedup);
    printf("%-34s %14.2f %14.2f\n", "dense output (GB/s)", dense_gb / mc, dense_gb / mh);
    printf("\ndone criteria: size <= 0.6x HDF5: %s (%.3f); decode >= 3x faster: %s (%.2fx)\n",
           ratio <= 0.6 ? "yes" : "NO", ratio, speedup >= 3 ? "yes" : "NO", speedup);

    /* bench/results/io.json next to this source file's folder, or the current directory */
    const char *res = "bench/results/io.json";
    mkdir("bench/results", 0755);
    FILE *j = fopen(res, "w");
    if (!j) {
        res = "io.json";
        j = fopen(res, "w");
    }
    if (j) {
        time_t tt = time(NULL);
        char date[64];
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&tt));
        fprintf(j, "{\n  \"benchmark\": \"io_bench\",\n  \"date\": \"%s\",\n  \"cpu\": \"%s\",\n  \"cores\": %d,\n", date,
                cpu, cg_cpu_count());
        fprintf(j, "  \"load_average_at_start\": [%.2f, %.2f, %.2f],\n", load[0], load[1], load[2]);
        fprintf(j, "  \"showers\": %lld,\n  \"geometry\": \"ild 30x30x30, photons 10-100 GeV, seed 2026\",\n",
                (long long)events);
        fprintf(j, "  \"hdf5\": \"CaloChallenge layout, float32 showers, gzip 4 + shuffle, 1 event per chunk\",\n");
        fprintf(j, "  \"read\": \"whole file to dense float32, one thread, blocks of %d events, page cache warm\",\n",
                BLOCK);
        fprintf(j, "  \"simulate_s\": %.3f,\n  \"simulate_threads\": %d,\n  \"export_s\": %.3f,\n", t_sim,
                cg_cpu_count(), t_export);
        fprintf(j, "  \"cvox_bytes\": %lld,\n  \"hdf5_bytes\": %lld,\n  \"size_ratio\": %.4f,\n", (long long)sc,
                (long long)sh, ratio);
        fprintf(j, "  \"cvox_read_s_median\": %.4f,\n  \"hdf5_read_s_median\": %.4f,\n  \"speedup\": %.3f,\n", mc, mh,
                speedup);
        fprintf(j, "  \"cvox_read_s\": [");
        for (int r = 0; r < reps; r++) fprintf(j, "%s%.4f", r ? ", " : "", raw_c[r]);
        fprintf(j, "],\n  \"hdf5_read_s\": [");
        for (int r = 0; r < reps; r++) fprintf(j, "%s%.4f", r ? ", " : "", raw_h[r]);
        fprintf(j, "],\n  \"done_size\": %s,\n  \"done_speed\": %s\n}\n", ratio <= 0.6 ? "true" : "false",
                speedup >= 3 ? "true" : "false");
        fclose(j);
        printf("wrote %s\n", res);
    }
    free(a);
    free(b);
    if (!keep) {
        unlink(cvox);
        unlink(h5);
    }
    return 0;
}
