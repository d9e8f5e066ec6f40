/*
 * tests/test_loader.c — the minibatch loader (io/loader.h): shapes, order, ranges,
 * conditioning selection, shuffling (a permutation per epoch, reproducible from the seed,
 * also when the memory budget forces windows), transforms and their inverses, errors from
 * a corrupted file arriving in order, and early close. Fresh random files every run.
 */
#include <unistd.h>

#include "io/loader.h"
#include "test.h"
#include "test_tmpdir.h"

/* A file of n events on a D×H×W grid, with conditioning energy, id (the event number) and
 * theta; returns its dense data and conditioning (caller frees). */
static void make_file(const char *path, int D, int H, int W, int64_t n, double occ, float **px, float **pc) {
    cg_cvox_info info = {0};
    CG_ASSERT(cg_geometry_grid(&info.geom, "grid", D, H, W, 5, 5, 4) == CG_OK);
    info.ncond = 3;
    const char *names[3] = {"energy", "id", "theta"}, *units[3] = {"GeV", "", "deg"};
    for (int i = 0; i < 3; i++) {
        snprintf(info.cond_name[i], CG_CVOX_NAME_LEN, "%s", names[i]);
        snprintf(info.cond_unit[i], CG_CVOX_NAME_LEN, "%s", units[i]);
    }
    int64_t nc = info.geom.ncells;
    float *x = malloc((size_t)(n * nc) * sizeof(float)), *c = malloc((size_t)(n * 3) * sizeof(float));
    for (int64_t e = 0; e < n; e++) {
        for (int64_t i = 0; i < nc; i++)
            x[e * nc + i] = cg_rng_uniform(test_rng()) < occ ? (float)(cg_rng_uniform(test_rng()) * 5) : 0.0f;
        c[3 * e] = (float)(10 + cg_rng_uniform(test_rng()) * 90);
        c[3 * e + 1] = (float)e;
        c[3 * e + 2] = (float)(30 + cg_rng_uniform(test_rng()) * 60);
    }
    cg_cvox_writer *w = cg_cvox_create(path, &info, 37);
    CG_ASSERT(w && cg_cvox_write(w, n, x, c) == CG_OK && cg_cvox_finish(w) == CG_OK);
    *px = x;
    *pc = c;
}

static float *host(cg_tensor *t) { return t ? cg_tensor_host_copy(t) : NULL; }

static void test_sequential(void) {
    float *x, *c;
    const int64_t n = 500, nc = 120;
    make_file(tpath("seq.cvox"), 4, 5, 6, n, 0.2, &x, &c);
    cg_loader_opts o;
    cg_loader_defaults(&o);
    cg_loader *l = cg_loader_open(tpath("seq.cvox"), &o);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(cg_loader_batches(l) == 8 && cg_loader_events(l) == n && cg_loader_ncond(l) == 3);
    CHECK(strcmp(cg_loader_cond_name(l, 1), "id") == 0);
    for (int epoch = 0; epoch < 2; epoch++) {
        int64_t seen = 0, nb = 0;
        cg_tensor *tx, *tc;
        int rc;
        while ((rc = cg_loader_next(l, &tx, &tc)) == 1) {
            int64_t B = tx->shape[0];
            CHECK(tx->ndim == 5 && tx->shape[1] == 1 && tx->shape[2] == 4 && tx->shape[3] == 5 && tx->shape[4] == 6);
            CHECK(tc->ndim == 2 && tc->shape[0] == B && tc->shape[1] == 3);
            CHECK(B == (nb < 7 ? 64 : 500 - 7 * 64));
            float *hx = host(tx), *hc = host(tc);
            CHECK(memcmp(hx, x + seen * nc, (size_t)(B * nc) * 4) == 0);
            CHECK(memcmp(hc, c + seen * 3, (size_t)(B * 3) * 4) == 0);
            free(hx);
            free(hc);
            cg_tensor_free(tx);
            cg_tensor_free(tc);
            seen += B;
            nb++;
        }
        CHECK(rc == 0 && seen == n && nb == 8);
        CHECK(cg_loader_epoch(l) == epoch + 1);
    }
    cg_loader_close(l);
    free(x);
    free(c);
}

static void test_range_flat_select(void) {
    float *x, *c;
    const int64_t n = 400, nc = 60;
    make_file(tpath("rng.cvox"), 3, 4, 5, n, 0.3, &x, &c);
    cg_loader_opts o;
    cg_loader_defaults(&o);
    o.first = 100, o.count = 250, o.drop_last = true, o.flat = true, o.cond = "theta,energy";
    cg_loader *l = cg_loader_open(tpath("rng.cvox"), &o);
    CHECK(l != NULL);
    if (!l) return;
    CHECK(cg_loader_batches(l) == 3 && cg_loader_ncond(l) == 2);
    cg_tensor *tx, *tc;
    int64_t at = 100;
    while (cg_loader_next(l, &tx, &tc) == 1) {
        CHECK(tx->ndim == 2 && tx->shape[0] == 64 && tx->shape[1] == nc && tc->shape[1] == 2);
        float *hx = host(tx), *hc = host(tc);
        CHECK(memcmp(hx, x + at * nc, (size_t)(64 * nc) * 4) == 0);
        for (int b = 0; b < 64; b++) {
            CHECK(hc[2 * b] == c[3 * (at + b) + 2]);
            CHECK(hc[2 * b + 1] == c[3 * (at + b)]);
        }
        free(hx);
        free(hc);
        cg_tensor_free(tx);
        cg_tensor_free(tc);
        at += 64;
    }
    CHECK(at == 100 + 3 * 64);
    cg_loader_close(l);
    free(x);
    free(c);
}

/* The ids of one epoch, in order; also checks that all but the last batch are full. */
static int epoch_ids(cg_loader *l, int64_t *ids, int64_t max, int B) {
    cg_tensor *tx, *tc;
    int64_t m = 0;
    int rc, short_batches = 0;
    while ((rc = cg_loader_next(l, &tx, &tc)) == 1) {
        float *hc = host(tc);
        if (tx->shape[0] != B) short_batches++;
        for (int64_t b = 0; b < tx->shape[0] && m < max; b++) ids[m++] = (int64_t)hc[3 * b + 1];
        free(hc);
        cg_tensor_free(tx);
        cg_tensor_free(tc);
    }
    CHECK(rc == 0 && short_batches <= 1);
    return (int)m;
}

static int is_permutation(const int64_t *ids, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n || seen[ids[i]]) ok = 0;
        else seen[ids[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_shuffle(void) {
    float *x, *c;
    const int64_t n = 1000;
    /* ~10 kB per event decompressed: a 1 MB budget forces about ten windows */
    make_file(tpath("shuf.cvox"), 10, 20, 20, n, 0.5, &x, &c);
    for (int windowed = 0; windowed < 2; windowed++) {
        cg_loader_opts o;
        cg_loader_defaults(&o);
        o.batch_size = 48, o.shuffle = true, o.seed = test_seed();
        if (windowed) o.memory_mb = 1;
        int64_t *a0 = malloc(n * 8), *a1 = malloc(n * 8), *b0 = malloc(n * 8);
        cg_threads_set(1);
        cg_loader *l = cg_loader_open(tpath("shuf.cvox"), &o);
        CHECK(l != NULL);
        if (!l) return;
        CHECK(epoch_ids(l, a0, n, 48) == n && is_permutation(a0, n));
        CHECK(epoch_ids(l, a1, n, 48) == n && is_permutation(a1, n));
        CHECK(memcmp(a0, a1, n * 8) != 0); /* each epoch its own order */
        int64_t in_order = 0;
        for (int64_t i = 0; i < n; i++) in_order += a0[i] == i;
        CHECK(in_order < 50);
        cg_loader_close(l);
        /* the same seed gives the same batches, with another thread count too */
        cg_threads_set(2);
        l = cg_loader_open(tpath("shuf.cvox"), &o);
        CHECK(epoch_ids(l, b0, n, 48) == n && memcmp(a0, b0, n * 8) == 0);
        /* restarting at epoch 1 gives epoch 1 again */
        CHECK(cg_loader_set_epoch(l, 1) == CG_OK);
        CHECK(epoch_ids(l, b0, n, 48) == n && memcmp(a1, b0, n * 8) == 0);
        CHECK(cg_loader_epoch(l) == 2);
        cg_loader_close(l);
        cg_threads_set(0);
        /* another seed, another order */
        o.seed++;
        l = cg_loader_open(tpath("shuf.cvox"), &o);
        CHECK(epoch_ids(l, b0, n, 48) == n && memcmp(a0, b0, n * 8) != 0);
        cg_loader_close(l);
        free(a0);
        free(a1);
        free(b0);
    }
    free(x);
    free(c);
}

static void check_round_trip(cg_transform t, const char *what) {
    cg_geometry g;
    CG_ASSERT(cg_geometry_grid(&g, "g", 3, 4, 4, 5, 5, 4) == CG_OK);
    const int64_t n = 5, nc = g.ncells;
    float x[5 * 48] = {0}, y[5 * 48] = {0}, E[5] = {0};
    for (int e = 0; e < n; e++) E[e] = (float)(10 + 90 * cg_rng_uniform(test_rng()));
    for (int64_t i = 0; i < n * nc; i++)
        x[i] = cg_rng_uniform(test_rng()) < 0.3 ? 0.0f : (float)(cg_rng_uniform(test_rng()) * 20);
    memcpy(y, x, sizeof x);
    cg_transform_apply(&t, &g, y, n, E);
    cg_transform_invert(&t, &g, y, n, E);
    double worst = 0;
    for (int64_t i = 0; i < n * nc; i++) {
        float want = t.threshold > 0 && x[i] < t.threshold ? 0.0f : x[i];
        worst = fmax(worst, fabs(y[i] - want) / (1e-4 + fabs(want)));
    }
    CHECK_MSG(worst < 1e-4, "%s: inverse(apply(x)) differs from x by %.3g (relative)", what, worst);
}

static void test_transforms(void) {
    cg_transform t = {0};
    t.scale = 1;
    check_round_trip(t, "none");
    t.kind = CG_XFORM_LOG, t.eps = 1e-3f;
    check_round_trip(t, "log");
    t.threshold = 2.0f;
    check_round_trip(t, "log+threshold");
    t.kind = CG_XFORM_POW, t.power = 0.85f, t.threshold = 0;
    check_round_trip(t, "pow");
    t.kind = CG_XFORM_BOXCOX, t.power = 0.3f, t.eps = 0.01f;
    check_round_trip(t, "box-cox");
    t.power = 0;
    check_round_trip(t, "box-cox lambda 0");
    t.norm_energy = true, t.scale = 100, t.ncalib = 3, t.calib[0] = 1, t.calib[1] = 1, t.calib[2] = 2.03f;
    check_round_trip(t, "box-cox + energy + calibration + scale");

    /* the loader applies exactly cg_transform_apply */
    float *x, *c;
    const int64_t n = 130, nc = 48;
    make_file(tpath("xf.cvox"), 3, 4, 4, n, 0.4, &x, &c);
    cg_loader_opts o;
    cg_loader_defaults(&o);
    o.batch_size = 130;
    o.transform.kind = CG_XFORM_LOG, o.transform.eps = 1e-2f, o.transform.threshold = 0.5f;
    o.transform.norm_energy = true, o.transform.ncalib = 3;
    o.transform.calib[0] = 1, o.transform.calib[1] = 1.5f, o.transform.calib[2] = 2.03f;
    cg_loader *l = cg_loader_open(tpath("xf.cvox"), &o);
    CHECK(l != NULL);
    if (!l) return;
    cg_tensor *tx, *tc;
    CHECK(cg_loader_next(l, &tx, &tc) == 1);
    float *hx = host(tx), E[130];
    CHECK(cg_energy_from_cond(cg_loader_info(l), c, n, E) == 0);
    cg_transform_apply(&o.transform, &cg_loader_info(l)->geom, x, n, E);
    CHECK(memcmp(hx, x, (size_t)(n * nc) * 4) == 0);
    /* and the tensor inverse brings back the thresholded showers */
    CHECK(cg_transform_invert_tensor(&o.transform, &cg_loader_info(l)->geom, tx, n, E) == CG_OK);
    free(hx);
    hx = host(tx);
    int64_t zeros_ok = 1;
    for (int64_t i = 0; i < n * nc; i++) zeros_ok &= hx[i] == 0 || hx[i] >= 0.5f;
    CHECK(zeros_ok);
    free(hx);
    cg_tensor_free(tx);
    cg_tensor_free(tc);
    cg_loader_close(l);
    free(x);
    free(c);

    /* bad transforms are refused when the loader opens */
    cg_transform bad = {0};
    cg_cvox_info info = {0};
    CG_ASSERT(cg_geometry_grid(&info.geom, "g", 3, 4, 4, 5, 5, 4) == CG_OK);
    bad.kind = CG_XFORM_LOG;
    CHECK(cg_transform_check(&bad, &info) == CG_ERR_INVALID);
    bad.kind = CG_XFORM_NONE, bad.ncalib = 2;
    CHECK(cg_transform_check(&bad, &info) == CG_ERR_INVALID);
    bad.ncalib = 0, bad.norm_energy = true;
    CHECK(cg_transform_check(&bad, &info) == CG_ERR_INVALID && strstr(cg_last_error(), "energy"));
}

static void test_errors(void) {
    float *x, *c;
    make_file(tpath("err.cvox"), 4, 5, 6, 300, 0.2, &x, &c);
    cg_loader_opts o;
    cg_loader_defaults(&o);
    o.cond = "energy,nope";
    CHECK(cg_loader_open(tpath("err.cvox"), &o) == NULL && strstr(cg_last_error(), "nope"));
    cg_loader_defaults(&o);
    o.first = 250, o.count = 100;
    CHECK(cg_loader_open(tpath("err.cvox"), &o) == NULL && strstr(cg_last_error(), "err.cvox"));
    cg_loader_defaults(&o);
    o.batch_size = 0;
    CHECK(cg_loader_open(tpath("err.cvox"), &o) == NULL);
    CHECK(cg_loader_open(tpath("missing.cvox"), &o) == NULL);

    /* corrupt the payload of the fourth chunk: at most the first three chunks' batches
     * arrive, then an error naming the file and the chunk */
    FILE *f = fopen(tpath("err.cvox"), "r+b");
    cg_cvox_reader *r = cg_cvox_open(tpath("err.cvox"));
    int64_t first, cnt;
    cg_cvox_chunk_span(r, 3, &first, &cnt);
    cg_cvox_close(r);
    /* find chunk 3's offset by scanning for its magic: the 4th "CVCH" */
    int64_t size;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    uint8_t *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    CG_ASSERT(fread(buf, 1, (size_t)size, f) == (size_t)size);
    int found = 0;
    for (int64_t i = 0; i + 4 < size; i++)
        if (memcmp(buf + i, "CVCH", 4) == 0 && ++found == 4) {
            buf[i + 40] ^= 0x55;
            break;
        }
    fseek(f, 0, SEEK_SET);
    fwrite(buf, 1, (size_t)size, f);
    fclose(f);
    free(buf);
    cg_loader_defaults(&o);
    o.batch_size = 10;
    cg_loader *l = cg_loader_open(tpath("err.cvox"), &o);
    CHECK(l != NULL);
    if (l) {
        cg_tensor *tx, *tc;
        int rc, good = 0;
        while ((rc = cg_loader_next(l, &tx, &tc)) == 1) {
            good++;
            cg_tensor_free(tx);
            cg_tensor_free(tc);
        }
        CHECK(rc == -1 && good <= (int)(first / 10)); /* chunks are read a window at a time */
        CHECK(strstr(cg_last_error(), "err.cvox") && strstr(cg_last_error(), "chunk 3"));
        CHECK(cg_loader_next(l, &tx, &tc) == -1); /* it stays failed */
        cg_loader_close(l);
    }
    free(x);
    free(c);
}

/* Closing while the producer waits on a full ring must not hang. */
static void test_close_early(void) {
    float *x, *c;
    make_file(tpath("early.cvox"), 4, 5, 6, 300, 0.2, &x, &c);
    cg_loader_opts o;
    cg_loader_defaults(&o);
    o.batch_size = 8, o.prefetch = 1;
    for (int k = 0; k < 5; k++) {
        cg_loader *l = cg_loader_open(tpath("early.cvox"), &o);
        CHECK(l != NULL);
        cg_tensor *tx, *tc;
        if (k) {
            CHECK(cg_loader_next(l, &tx, &tc) == 1);
            cg_tensor_free(tx);
            cg_tensor_free(tc);
        }
        if (k > 2) usleep(2000);
        cg_loader_close(l);
    }
    free(x);
    free(c);
}

static void test_cuda(void) {
    if (!cg_device_available(CG_CUDA)) {
        printf("     (no CUDA device: skipped)\n");
        return;
    }
    float *x, *c;
    make_file(tpath("cuda.cvox"), 4, 5, 6, 100, 0.2, &x, &c);
    cg_loader_opts o;
    cg_loader_defaults(&o);
    o.device = CG_CUDA;
    cg_loader *l = cg_loader_open(tpath("cuda.cvox"), &o);
    CHECK(l != NULL);
    cg_tensor *tx, *tc;
    CHECK(cg_loader_next(l, &tx, &tc) == 1);
    CHECK(tx->device == CG_CUDA && tc->device == CG_CUDA);
    float *hx = host(tx);
    CHECK(memcmp(hx, x, 64 * 120 * 4) == 0);
    free(hx);
    cg_tensor_free(tx);
    cg_tensor_free(tc);
    cg_loader_close(l);
    free(x);
    free(c);
}

int main(void) {
    test_seed();
    if (tmpdir_make("loader")) return 1;
    TEST_RUN(test_sequential);
    TEST_RUN(test_range_flat_select);
    TEST_RUN(test_shuffle);
    TEST_RUN(test_transforms);
    TEST_RUN(test_errors);
    TEST_RUN(test_close_early);
    TEST_RUN(test_cuda);
    tmpdir_remove();
    return test_summary();
}
