/*
 * tests/test_cvox.c — the .cvox format: bit-for-bit round trips on odd geometries, random
 * access, the chunk API, and every way a file can be broken (truncation at any offset,
 * flipped bytes, wrong magic or version, impossible geometry, a writer that hits a full
 * disk or is killed mid-way). Each broken file must give an error naming the file, never a
 * crash or silently different data.
 *
 * Inputs are fresh random showers each run (seed printed; CG_TEST_SEED replays), with the
 * awkward float bit patterns mixed in: -0.0, NaN payloads, infinities, denormals.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "io/cvox.h"
#include "test.h"
#include "test_tmpdir.h"


static uint32_t rnd32(void) { return (uint32_t)cg_rng_below(test_rng(), 1ull << 32); }
static int rndi(int lo, int hi) { return lo + (int)cg_rng_below(test_rng(), (uint64_t)(hi - lo + 1)); }

/* A random geometry: a regular grid, a list of different Cartesian layers, or polar
 * layers, with odd sizes. */
static void random_geometry(cg_geometry *g) {
    int kind = rndi(0, 2);
    if (kind == 0) {
        CG_ASSERT(cg_geometry_grid(g, "odd-grid", rndi(1, 9), rndi(1, 13), rndi(1, 11), 5.0f, 4.5f, 3.0f) == CG_OK);
        return;
    }
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, kind == 1 ? "layers" : "polar");
    g->nlayers = rndi(1, 6);
    for (int l = 0; l < g->nlayers; l++) {
        cg_layer *L = &g->layer[l];
        L->rows = rndi(1, 17);
        L->cols = rndi(1, kind == 2 ? 9 : 97);
        L->z_mm = 10.0f * l;
        L->depth_mm = 10.0f;
        if (kind == 2 && rndi(0, 1)) {
            L->binning = CG_BIN_POLAR;
            for (int k = 0; k <= L->cols; k++) L->r_edges[k] = 2.5f * k;
        } else {
            L->cell_w = 3.0f;
            L->cell_h = 7.0f;
        }
    }
    snprintf(g->energy_unit, sizeof g->energy_unit, "GeV");
    g->to_mev = 1000.0f;
    g->mip_mev = 0.2f;
    CG_ASSERT(cg_geometry_finish(g) == CG_OK);
}

static void random_info(cg_cvox_info *info) {
    memset(info, 0, sizeof *info);
    random_geometry(&info->geom);
    snprintf(info->particle, sizeof info->particle, "photon");
    snprintf(info->source, sizeof info->source, "tests/test_cvox.c");
    info->ncond = rndi(0, CG_CVOX_MAX_COND);
    for (int i = 0; i < info->ncond; i++) {
        snprintf(info->cond_name[i], CG_CVOX_NAME_LEN, i == 0 ? "energy" : "c%d", i);
        snprintf(info->cond_unit[i], CG_CVOX_NAME_LEN, i == 0 ? "GeV" : "u%d", i);
    }
}

/* Sparse random showers: occupancy drawn per event (empty and full events included), and
 * a few awkward bit patterns. */
static void random_showers(float *x, int64_t n, int64_t ncells) {
    for (int64_t e = 0; e < n; e++) {
        int mode = rndi(0, 9);
        double occ = mode == 0 ? 0.0 : mode == 1 ? 1.0 : cg_rng_uniform(test_rng()) * 0.2;
        uint32_t *b = (uint32_t *)(void *)(x + e * ncells);
        for (int64_t i = 0; i < ncells; i++) {
            if (cg_rng_uniform(test_rng()) >= occ) { b[i] = 0; continue; }
            switch (rndi(0, 40)) {
            case 0: b[i] = 0x80000000u; break;              /* -0.0 */
            case 1: b[i] = 0x7fc00000u | (rnd32() & 0x3fffff); break; /* NaN with payload */
            case 2: b[i] = 0x7f800000u; break;              /* +inf */
            case 3: b[i] = rnd32() & 0x007fffffu; if (!b[i]) b[i] = 1; break; /* denormal */
            case 4: b[i] = rnd32(); if (!b[i]) b[i] = 1; break;          /* any pattern */
            default: x[e * ncells + i] = (float)(cg_rng_uniform(test_rng()) * 100.0 + 1e-3); break;
            }
        }
    }
}

static void random_cond(float *c, int64_t n) {
    for (int64_t i = 0; i < n; i++) c[i] = (float)(cg_rng_uniform(test_rng()) * 90.0 + 10.0);
}

static int write_file(const char *path, const cg_cvox_info *info, int epc, int64_t n, const float *x,
                      const float *c) {
    cg_cvox_writer *w = cg_cvox_create(path, info, epc);
    if (!w) return 0;
    /* in pieces of random sizes, as a streaming writer would */
    int64_t done = 0;
    while (done < n) {
        int64_t k = rndi(1, 40);
        if (k > n - done) k = n - done;
        if (cg_cvox_write(w, k, x + done * info->geom.ncells, c ? c + done * info->ncond : NULL) != CG_OK) {
            cg_cvox_abort(w);
            return 0;
        }
        done += k;
    }
    return cg_cvox_finish(w) == CG_OK;
}

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static uint8_t *slurp(const char *path, int64_t *n) {
    uint8_t *buf = (uint8_t *)tfile_read(path, n);
    CG_ASSERT(buf);
    return buf;
}

static void spit(const char *path, const uint8_t *buf, int64_t n) {
    FILE *f = fopen(path, "wb");
    CG_ASSERT(f);
    CG_ASSERT(fwrite(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
}

/* A fixture: a random file on disk and the data it holds. */
typedef struct {
    cg_cvox_info info;
    int64_t n, ncells;
    float *x, *c;
    int epc;
} fixture;

static void fixture_make(fixture *f, const char *path, int64_t n, int epc) {
    random_info(&f->info);
    f->n = n;
    f->epc = epc;
    f->ncells = f->info.geom.ncells;
    f->x = malloc((size_t)(n * f->ncells + 1) * sizeof(float));
    f->c = malloc((size_t)(n * f->info.ncond + 1) * sizeof(float));
    random_showers(f->x, n, f->ncells);
    random_cond(f->c, n * f->info.ncond);
    CG_ASSERT(write_file(path, &f->info, epc, n, f->x, f->info.ncond ? f->c : NULL));
}

static void fixture_free(fixture *f) {
    free(f->x);
    free(f->c);
}

/* Read events [first, first+n) and compare bit for bit with the fixture. */
static int same_events(cg_cvox_reader *r, const fixture *f, int64_t first, int64_t n) {
    float *x = malloc((size_t)(n * f->ncells + 1) * sizeof(float));
    float *c = malloc((size_t)(n * f->info.ncond + 1) * sizeof(float));
    int ok = cg_cvox_read(r, first, n, x, c) == CG_OK &&
             memcmp(x, f->x + first * f->ncells, (size_t)(n * f->ncells) * sizeof(float)) == 0 &&
             memcmp(c, f->c + first * f->info.ncond, (size_t)(n * f->info.ncond) * sizeof(float)) == 0;
    free(x);
    free(c);
    return ok;
}

static void test_round_trip(void) {
    for (int trial = 0; trial < 12; trial++) {
        fixture f;
        int64_t n = trial == 0 ? 0 : rndi(1, 300);
        int epc = trial % 3 == 0 ? 0 : rndi(1, 50);
        fixture_make(&f, tpath("rt.cvox"), n, epc);
        cg_cvox_reader *r = cg_cvox_open(tpath("rt.cvox"));
        CHECK(r != NULL);
        if (!r) { fixture_free(&f); return; }
        const cg_cvox_info *in = cg_cvox_info_of(r);
        CHECK(in->nevents == n);
        CHECK(in->ncond == f.info.ncond);
        CHECK(in->geom.ncells == f.ncells);
        CHECK(in->geom.nlayers == f.info.geom.nlayers);
        CHECK(strcmp(in->geom.name, f.info.geom.name) == 0);
        CHECK(strcmp(in->particle, "photon") == 0);
        CHECK(in->geom.to_mev == f.info.geom.to_mev);
        for (int l = 0; l < in->geom.nlayers; l++) {
            CHECK(in->geom.layer[l].rows == f.info.geom.layer[l].rows);
            CHECK(in->geom.layer[l].cols == f.info.geom.layer[l].cols);
            CHECK(in->geom.layer[l].binning == f.info.geom.layer[l].binning);
            CHECK(in->geom.layer_offset[l] == f.info.geom.layer_offset[l]);
        }
        for (int i = 0; i < in->ncond; i++) {
            CHECK(strcmp(in->cond_name[i], f.info.cond_name[i]) == 0);
            CHECK(strcmp(in->cond_unit[i], f.info.cond_unit[i]) == 0);
        }
        if (in->ncond) CHECK(cg_cvox_cond_index(in, "energy") == 0);
        CHECK(cg_cvox_cond_index(in, "nonexistent") == -1);
        CHECK(same_events(r, &f, 0, n));
        /* random access, forwards and backwards, across chunk boundaries */
        for (int k = 0; k < 20 && n > 0; k++) {
            int64_t a = rndi(0, (int)n - 1), m = rndi(1, (int)(n - a));
            CHECK(same_events(r, &f, a, m));
        }
        /* the chunk API sees the same events */
        int64_t seen = 0;
        for (int64_t ch = 0; ch < cg_cvox_nchunks(r); ch++) {
            int64_t first, cnt;
            cg_cvox_chunk_span(r, ch, &first, &cnt);
            CHECK(first == seen);
            cg_cvox_chunk *c = cg_cvox_chunk_load(r, ch);
            CHECK(c != NULL);
            if (!c) break;
            float *x = malloc((size_t)f.ncells * sizeof(float));
            for (int64_t k = 0; k < cnt; k++) {
                CHECK(cg_cvox_chunk_event(c, k, x, NULL) == CG_OK);
                CHECK(memcmp(x, f.x + (first + k) * f.ncells, (size_t)f.ncells * 4) == 0);
                int64_t nz = 0;
                for (int64_t i = 0; i < f.ncells; i++) nz += ((uint32_t *)(void *)x)[i] != 0;
                CHECK(cg_cvox_chunk_nhits(c, k) == nz);
            }
            free(x);
            cg_cvox_chunk_free(c);
            seen += cnt;
        }
        CHECK(seen == n);
        /* out-of-range requests are errors, not crashes */
        CHECK(cg_cvox_read(r, n, 1, NULL, NULL) == CG_ERR_INVALID);
        CHECK(cg_cvox_read(r, -1, 1, NULL, NULL) == CG_ERR_INVALID);
        CHECK(cg_cvox_read(r, 0, n + 1, NULL, NULL) == CG_ERR_INVALID);
        cg_cvox_close(r);
        fixture_free(&f);
    }
    CHECK(partial_files_left() == 0);
}

/* Sparse showers compress: a 1%-occupied grid costs far less than the dense floats. */
static void test_compresses(void) {
    cg_cvox_info info = {0};
    CG_ASSERT(cg_geometry_grid(&info.geom, "grid", 30, 30, 30, 5, 5, 4) == CG_OK);
    int64_t n = 200, nc = info.geom.ncells;
    float *x = calloc((size_t)(n * nc), sizeof(float));
    for (int64_t e = 0; e < n; e++)
        for (int k = 0; k < 270; k++) x[e * nc + (int64_t)cg_rng_below(test_rng(), (uint64_t)nc)] = (float)cg_rng_uniform(test_rng());
    CHECK(write_file(tpath("sparse.cvox"), &info, 0, n, x, NULL));
    int64_t size = file_size(tpath("sparse.cvox"));
    CHECK_MSG(size < n * 270 * 6, "%lld bytes for %lld events of 270 hits", (long long)size, (long long)n);
    free(x);
}

/* Every truncation gives an error naming the file; salvage keeps exactly the complete
 * chunks and they hold the right events. */
static void test_truncation(void) {
    fixture f;
    fixture_make(&f, tpath("full.cvox"), 120, 16);
    int64_t size;
    uint8_t *buf = slurp(tpath("full.cvox"), &size);
    cg_cvox_reader *full = cg_cvox_open(tpath("full.cvox"));
    CG_ASSERT(full);
    int64_t nch = cg_cvox_nchunks(full);
    cg_cvox_close(full);
    int tried = 0;
    for (int64_t cut = 0; cut < size; cut += (size < 4000 ? 1 : rndi(1, (int)(size / 1500) + 1))) {
        tried++;
        spit(tpath("cut.cvox"), buf, cut);
        cg_clear_error();
        cg_cvox_reader *r = cg_cvox_open(tpath("cut.cvox"));
        CHECK_MSG(r == NULL, "truncated at %lld of %lld bytes and still opened", (long long)cut, (long long)size);
        if (r) { cg_cvox_close(r); continue; }
        CHECK_MSG(strstr(cg_last_error(), "cut.cvox") != NULL, "message without the file name: %s", cg_last_error());
        int64_t dropped = -1;
        r = cg_cvox_open_salvage(tpath("cut.cvox"), &dropped);
        if (!r) {
            /* only a cut inside the preamble/header may be unsalvageable */
            uint32_t hlen;
            memcpy(&hlen, buf + 12, 4);
            CHECK_MSG(cut < 16 + (int64_t)hlen + 4, "salvage failed at cut %lld: %s", (long long)cut, cg_last_error());
            continue;
        }
        int64_t ne = cg_cvox_info_of(r)->nevents;
        CHECK(ne >= 0 && ne <= f.n && cg_cvox_nchunks(r) <= nch);
        CHECK(dropped >= 0);
        if (ne > 0) CHECK(same_events(r, &f, 0, ne));
        cg_cvox_close(r);
    }
    printf("     %d truncations of a %lld-byte file\n", tried, (long long)size);
    free(buf);
    fixture_free(&f);
}

/* Every single flipped byte is detected: opening or reading everything fails with a
 * message naming the file. */
static void test_flipped_bytes(void) {
    fixture f;
    fixture_make(&f, tpath("ok.cvox"), 80, 10);
    int64_t size;
    uint8_t *buf = slurp(tpath("ok.cvox"), &size);
    int tried = 0;
    for (int t = 0; t < 400; t++) {
        int64_t at = t < 64 ? t : t < 128 ? size - 1 - (t - 64) : (int64_t)cg_rng_below(test_rng(), (uint64_t)size);
        uint8_t keep = buf[at];
        buf[at] ^= (uint8_t)rndi(1, 255);
        spit(tpath("flip.cvox"), buf, size);
        buf[at] = keep;
        tried++;
        cg_clear_error();
        cg_cvox_reader *r = cg_cvox_open(tpath("flip.cvox"));
        cg_status st = r ? cg_cvox_read(r, 0, f.n, NULL, NULL) : cg_last_status();
        if (r && !st) { /* decode everything densely too */
            float *x = malloc((size_t)f.ncells * sizeof(float));
            for (int64_t e = 0; e < f.n && !st; e++) st = cg_cvox_read(r, e, 1, x, NULL);
            free(x);
        }
        CHECK_MSG(st != CG_OK, "flipped byte at offset %lld went unnoticed", (long long)at);
        CHECK_MSG(strstr(cg_last_error(), "flip.cvox") != NULL, "message without the file name: %s", cg_last_error());
        cg_cvox_close(r);
    }
    printf("     %d flipped bytes, all detected\n", tried);
    free(buf);
    fixture_free(&f);
}

/* Re-sign a modified header so that only the field we changed is wrong. */
static void resign_header(uint8_t *buf) {
    uint32_t hlen;
    memcpy(&hlen, buf + 12, 4);
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, 16 + hlen);
    memcpy(buf + 16 + hlen, &c, 4);
}

static void expect_open_error(const char *name, const char *what) {
    cg_clear_error();
    cg_cvox_reader *r = cg_cvox_open(tpath(name));
    CHECK_MSG(r == NULL, "%s opened", name);
    cg_cvox_close(r);
    CHECK_MSG(strstr(cg_last_error(), name) && strstr(cg_last_error(), what), "expected '%s' in: %s", what,
              cg_last_error());
}

static void test_bad_headers(void) {
    cg_cvox_info info = {0};
    CG_ASSERT(cg_geometry_grid(&info.geom, "grid", 4, 5, 6, 5, 5, 4) == CG_OK);
    info.ncond = 1;
    snprintf(info.cond_name[0], CG_CVOX_NAME_LEN, "energy");
    float x[120] = {1.5f}, c[1] = {42};
    CHECK(write_file(tpath("h.cvox"), &info, 0, 1, x, c));
    int64_t size;
    uint8_t *buf = slurp(tpath("h.cvox"), &size);

    buf[1] = 'X';
    spit(tpath("magic.cvox"), buf, size);
    expect_open_error("magic.cvox", "magic");
    buf[1] = 'C';

    buf[8] = 7; /* major version 7 */
    spit(tpath("version.cvox"), buf, size);
    expect_open_error("version.cvox", "version 7");
    buf[8] = 1;

    /* nlayers = 0 and a zero-row layer, with valid CRCs: the geometry is what is wrong */
    size_t nl_off = 16 + 4 + 4 + 24 + 128 + 4 + 48 + 32 + 8 + 4 + 4;
    uint32_t v = 0, keep;
    memcpy(&keep, buf + nl_off, 4);
    memcpy(buf + nl_off, &v, 4);
    resign_header(buf);
    spit(tpath("geom0.cvox"), buf, size);
    expect_open_error("geom0.cvox", "impossible geometry");
    memcpy(buf + nl_off, &keep, 4);
    memcpy(buf + nl_off + 4, &v, 4); /* rows of layer 0 */
    resign_header(buf);
    spit(tpath("geom1.cvox"), buf, size);
    expect_open_error("geom1.cvox", "impossible geometry");

    spit(tpath("empty.cvox"), buf, 0);
    expect_open_error("empty.cvox", "not a .cvox file");
    expect_open_error("does-not-exist.cvox", "cannot open");
    free(buf);

    /* the writer refuses impossible geometries too */
    cg_cvox_info bad = info;
    bad.geom.layer[2].rows = 0;
    cg_clear_error();
    CHECK(cg_cvox_create(tpath("bad.cvox"), &bad, 0) == NULL);
    CHECK(strstr(cg_last_error(), "bad.cvox") != NULL);
    CHECK(cg_cvox_create("/nonexistent-dir/x.cvox", &info, 0) == NULL);
    CHECK(strstr(cg_last_error(), "/nonexistent-dir/x.cvox") != NULL);
}

/* A full disk (simulated with RLIMIT_FSIZE, which makes write() fail with EFBIG): the
 * error names the file and says so, and neither the file nor a partial file is left. */
static void test_disk_full(void) {
    cg_cvox_info info = {0};
    CG_ASSERT(cg_geometry_grid(&info.geom, "grid", 10, 10, 10, 5, 5, 4) == CG_OK);
    int64_t n = 400;
    float *x = malloc((size_t)(n * 1000) * sizeof(float));
    random_showers(x, n, 1000);
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit keep, lim;
    getrlimit(RLIMIT_FSIZE, &keep);
    lim = keep;
    lim.rlim_cur = 20000;
    CG_ASSERT(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    cg_clear_error();
    cg_cvox_writer *w = cg_cvox_create(tpath("full-disk.cvox"), &info, 8);
    cg_status st = w ? cg_cvox_write(w, n, x, NULL) : CG_ERR_IO;
    if (w) {
        if (st) cg_cvox_abort(w);
        else st = cg_cvox_finish(w);
    }
    setrlimit(RLIMIT_FSIZE, &keep);
    signal(SIGXFSZ, old);
    CHECK(st == CG_ERR_IO);
    CHECK_MSG(strstr(cg_last_error(), "full-disk.cvox") && strstr(cg_last_error(), "disk full"), "message: %s",
              cg_last_error());
    CHECK(file_size(tpath("full-disk.cvox")) < 0);
    CHECK(partial_files_left() == 0);
    free(x);
}

/* A writer killed mid-way leaves only "<name>.partial.<pid>": not the final name, and
 * salvageable up to its last complete chunk. */
static void test_killed_writer(void) {
    fixture f;
    random_info(&f.info);
    f.n = 300;
    f.ncells = f.info.geom.ncells;
    f.x = malloc((size_t)(f.n * f.ncells) * sizeof(float));
    f.c = malloc((size_t)(f.n * f.info.ncond + 1) * sizeof(float));
    random_showers(f.x, f.n, f.ncells);
    random_cond(f.c, f.n * f.info.ncond);
    pid_t pid = fork();
    if (pid == 0) {
        cg_cvox_writer *w = cg_cvox_create(tpath("killed.cvox"), &f.info, 7);
        if (!w) _exit(3);
        cg_cvox_write(w, 200, f.x, f.info.ncond ? f.c : NULL);
        kill(getpid(), SIGKILL); /* die without finishing */
        _exit(4);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));
    CHECK(file_size(tpath("killed.cvox")) < 0);
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial.%ld", tpath("killed.cvox"), (long)pid);
    CHECK(file_size(partial) > 0);
    cg_clear_error();
    cg_cvox_reader *r = cg_cvox_open(partial);
    CHECK(r == NULL && strstr(cg_last_error(), "incomplete"));
    int64_t dropped = -1;
    r = cg_cvox_open_salvage(partial, &dropped);
    CHECK(r != NULL);
    if (r) {
        CHECK(cg_cvox_info_of(r)->nevents == 196); /* 28 complete chunks of 7 */
        CHECK(same_events(r, &f, 0, 196));
        cg_cvox_close(r);
    }
    unlink(partial);
    fixture_free(&f);
}

int main(void) {
    test_seed();
    if (tmpdir_make("cvox")) return 1;
    TEST_RUN(test_round_trip);
    TEST_RUN(test_compresses);
    TEST_RUN(test_truncation);
    TEST_RUN(test_flipped_bytes);
    TEST_RUN(test_bad_headers);
    TEST_RUN(test_disk_full);
    TEST_RUN(test_killed_writer);
    tmpdir_remove();
    return test_summary();
}
