/*
 * tests/test_hdf5.c — HDF5 interop (io/hdf5.h): export then import round-trips bit for bit
 * in both layouts; the real CLIC sample imports (ECAL and HCAL, several files at once);
 * every malformed input (not HDF5, truncated, missing or misshaped datasets, inconsistent
 * event counts, files that disagree) gives an error naming the file and the dataset, and a
 * full disk leaves no file behind. The per-shower sums of the CLIC sample are compared with
 * h5py's in tests/test_hdf5_h5py.py.
 *
 * argv[1]: the directory of the CLIC sample (the part that needs it is skipped without it).
 */
#include <dirent.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/hdf5.h"
#include "test.h"
#include "test_tmpdir.h"

static const char *g_clic;

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A .cvox file of random sparse showers (with awkward bit patterns) and conditioning. */
static void make_cvox(const char *path, const cg_geometry *g, int64_t n, int ncond, float **px, float **pc) {
    cg_cvox_info info = {0};
    info.geom = *g;
    snprintf(info.particle, sizeof info.particle, "electron");
    info.ncond = ncond;
    const char *names[3] = {"energy", "theta", "phi"}, *units[3] = {"GeV", "deg", "deg"};
    for (int i = 0; i < ncond; i++) {
        snprintf(info.cond_name[i], CG_CVOX_NAME_LEN, "%s", names[i]);
        snprintf(info.cond_unit[i], CG_CVOX_NAME_LEN, "%s", units[i]);
    }
    int64_t nc = g->ncells;
    float *x = malloc((size_t)(n * nc) * 4), *c = malloc((size_t)(n * ncond + 1) * 4);
    for (int64_t i = 0; i < n * nc; i++) {
        double u = cg_rng_uniform(test_rng());
        x[i] = u < 0.8 ? 0.0f : (float)(cg_rng_normal(test_rng()) * 30);
        if (u > 0.999) ((uint32_t *)(void *)x)[i] = 0x80000000u; /* -0.0 */
    }
    for (int64_t i = 0; i < n * ncond; i++) c[i] = (float)(1 + cg_rng_uniform(test_rng()) * 999);
    cg_cvox_writer *w = cg_cvox_create(path, &info, 17);
    CG_ASSERT(w && cg_cvox_write(w, n, x, c) == CG_OK && cg_cvox_finish(w) == CG_OK);
    *px = x;
    *pc = c;
}

static void round_trip(const cg_geometry *g, cg_h5_layout layout, const char *tag) {
    float *x, *c;
    const int64_t n = 150, nc = g->ncells;
    make_cvox(tpath("rt.cvox"), g, n, 3, &x, &c);
    cg_h5_export_opts eo = {0};
    eo.layout = layout;
    eo.gzip = 4;
    eo.chunk_events = layout == CG_H5_ILD ? 0 : 7;
    CHECK_MSG(cg_h5_export(tpath("rt.cvox"), tpath("rt.h5"), &eo, NULL, NULL) == CG_OK, "%s: %s", tag, cg_last_error());
    const char *in[1] = {tpath("rt.h5")};
    CHECK_MSG(cg_h5_import(in, 1, tpath("back.cvox"), NULL, 0, NULL, NULL) == CG_OK, "%s: %s", tag, cg_last_error());
    cg_cvox_reader *r = cg_cvox_open(tpath("back.cvox"));
    CHECK(r != NULL);
    if (r) {
        const cg_cvox_info *info = cg_cvox_info_of(r);
        CHECK(info->nevents == n && info->geom.ncells == nc && info->ncond == 3);
        CHECK(strcmp(info->geom.name, g->name) == 0 && strcmp(info->particle, "electron") == 0);
        for (int q = 0; q < 3; q++) CHECK(strcmp(info->cond_name[q], q == 0 ? "energy" : q == 1 ? "theta" : "phi") == 0);
        float *y = malloc((size_t)(n * nc) * 4), *d = malloc((size_t)(n * 3) * 4);
        CHECK(cg_cvox_read(r, 0, n, y, d) == CG_OK);
        CHECK_MSG(memcmp(x, y, (size_t)(n * nc) * 4) == 0, "%s: showers differ after export + import", tag);
        CHECK_MSG(memcmp(c, d, (size_t)(n * 3) * 4) == 0, "%s: conditioning differs after export + import", tag);
        free(y);
        free(d);
        cg_cvox_close(r);
    }
    free(x);
    free(c);
}

static void test_round_trips(void) {
    cg_geometry g;
    CG_ASSERT(cg_geometry_grid(&g, "grid", 7, 9, 11, 5, 5, 4) == CG_OK);
    round_trip(&g, CG_H5_CALOCHALLENGE, "calochallenge grid");
    round_trip(&g, CG_H5_ILD, "ild grid");
    /* polar layers of different shapes: the CaloChallenge layout only */
    memset(&g, 0, sizeof g);
    snprintf(g.name, sizeof g.name, "polar");
    g.nlayers = 3;
    for (int l = 0; l < 3; l++) {
        g.layer[l].binning = CG_BIN_POLAR;
        g.layer[l].rows = 1 + 4 * l;
        g.layer[l].cols = 5 + l;
        for (int k = 0; k <= 5 + l; k++) g.layer[l].r_edges[k] = 3.0f * k;
    }
    CG_ASSERT(cg_geometry_finish(&g) == CG_OK);
    round_trip(&g, CG_H5_CALOCHALLENGE, "calochallenge polar");
    cg_h5_export_opts eo = {.layout = CG_H5_ILD, .gzip = 4};
    CHECK(cg_h5_export(tpath("rt.cvox"), tpath("bad-ild.h5"), &eo, NULL, NULL) == CG_ERR_INVALID);
    CHECK(strstr(cg_last_error(), "regular grid") != NULL);
    CHECK(!exists(tpath("bad-ild.h5")) && partial_files_left() == 0);
}

static void test_clic_sample(void) {
    if (!g_clic) {
        printf("     (CLIC sample not found: skipped)\n");
        return;
    }
    const char *in[10];
    char names[10][600];
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "%s/test_data_%d.h5", g_clic, i + 1);
        in[i] = names[i];
    }
    cg_h5_opts o = {0};
    CHECK(cg_h5_import(in, 10, tpath("clic.cvox"), &o, 0, NULL, NULL) == CG_OK);
    cg_cvox_reader *r = cg_cvox_open(tpath("clic.cvox"));
    CHECK(r != NULL);
    if (!r) return;
    const cg_cvox_info *info = cg_cvox_info_of(r);
    CHECK(info->nevents == 100 && info->geom.nlayers == 25 && info->geom.layer[0].rows == 24);
    CHECK(cg_cvox_cond_index(info, "energy") == 0);
    float cond[200];
    CHECK(cg_cvox_read(r, 0, 100, NULL, cond) == CG_OK);
    for (int e = 0; e < 100; e++) CHECK(cond[2 * e] > 10 && cond[2 * e] < 500);
    /* the longitudinal profile peaks inside the calorimeter (depth is the last axis in the file) */
    float *x = malloc(14400 * 4);
    double prof[25] = {0};
    for (int e = 0; e < 100; e++) {
        CHECK(cg_cvox_read(r, e, 1, x, NULL) == CG_OK);
        for (int l = 0; l < 25; l++)
            for (int i = 0; i < 576; i++) prof[l] += x[l * 576 + i];
    }
    int peak = 0;
    for (int l = 0; l < 25; l++)
        if (prof[l] > prof[peak]) peak = l;
    CHECK_MSG(peak >= 8 && peak <= 20, "profile peaks at layer %d", peak);
    free(x);
    cg_cvox_close(r);
    o.calorimeter = "HCAL";
    CHECK(cg_h5_import(in, 2, tpath("hcal.cvox"), &o, 0, NULL, NULL) == CG_OK);
    r = cg_cvox_open(tpath("hcal.cvox"));
    CHECK(r && cg_cvox_info_of(r)->nevents == 20 && cg_cvox_info_of(r)->geom.nlayers == 60);
    cg_cvox_close(r);
}

/* --------------------------------------------------------- malformed files ---- */

static void write_ds(hid_t loc, const char *name, int rank, const hsize_t *dims) {
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    float *v = calloc((size_t)(n ? n : 1), 4);
    for (hsize_t i = 0; i < n; i++) v[i] = (float)(i % 7);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(ds);
    H5Sclose(sp);
    free(v);
}

static void expect_import_error(const char *file, cg_h5_layout layout, const char *what1, const char *what2) {
    const char *in[1] = {tpath(file)};
    cg_h5_opts o = {.layout = layout};
    cg_clear_error();
    cg_status st = cg_h5_import(in, 1, tpath("out.cvox"), &o, 0, NULL, NULL);
    CHECK_MSG(st != CG_OK, "%s imported", file);
    CHECK_MSG(strstr(cg_last_error(), file) && strstr(cg_last_error(), what1) && (!what2 || strstr(cg_last_error(), what2)),
              "%s: expected '%s'%s%s in: %s", file, what1, what2 ? " and " : "", what2 ? what2 : "", cg_last_error());
    CHECK(!exists(tpath("out.cvox")) && partial_files_left() == 0);
}

static void test_bad_files(void) {
    hid_t f;
    /* CaloChallenge without incident energies: not recognised; forced, the missing dataset */
    f = H5Fcreate(tpath("cc-noenergy.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "showers", 2, (hsize_t[]){5, 368});
    H5Fclose(f);
    expect_import_error("cc-noenergy.h5", CG_H5_AUTO, "no known layout", "showers");
    expect_import_error("cc-noenergy.h5", CG_H5_CALOCHALLENGE, "incident_energies", "missing");
    /* misshaped: showers of rank 3; energies for a different number of events */
    f = H5Fcreate(tpath("cc-rank.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "showers", 3, (hsize_t[]){5, 4, 92});
    write_ds(f, "incident_energies", 2, (hsize_t[]){5, 1});
    H5Fclose(f);
    expect_import_error("cc-rank.h5", CG_H5_AUTO, "showers", "dimensions");
    f = H5Fcreate(tpath("cc-count.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "showers", 2, (hsize_t[]){5, 368});
    write_ds(f, "incident_energies", 2, (hsize_t[]){4, 1});
    H5Fclose(f);
    expect_import_error("cc-count.h5", CG_H5_AUTO, "incident_energies", "4 events, expected 5");
    f = H5Fcreate(tpath("cc-e2.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "showers", 2, (hsize_t[]){5, 368});
    write_ds(f, "incident_energies", 2, (hsize_t[]){5, 2});
    H5Fclose(f);
    expect_import_error("cc-e2.h5", CG_H5_AUTO, "incident_energies", "(N, 1)");
    /* CaloGAN with a layer of the wrong shape */
    f = H5Fcreate(tpath("calogan.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "energy", 2, (hsize_t[]){3, 1});
    write_ds(f, "layer_0", 3, (hsize_t[]){3, 3, 96});
    write_ds(f, "layer_1", 3, (hsize_t[]){3, 12, 13});
    write_ds(f, "layer_2", 3, (hsize_t[]){3, 12, 6});
    H5Fclose(f);
    expect_import_error("calogan.h5", CG_H5_AUTO, "layer_1", "(N, 12, 12)");
    /* ILD: a group with layers but energy missing; CLIC with a 3-D ECAL */
    f = H5Fcreate(tpath("ild.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "30x30", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(g, "layers", 4, (hsize_t[]){2, 3, 4, 5});
    H5Gclose(g);
    H5Fclose(f);
    cg_h5_opts o = {.layout = CG_H5_ILD, .group = "30x30"};
    const char *in[1] = {tpath("ild.h5")};
    CHECK(cg_h5_import(in, 1, tpath("out.cvox"), &o, 0, NULL, NULL) != CG_OK);
    CHECK(strstr(cg_last_error(), "ild.h5") && strstr(cg_last_error(), "'energy' is missing"));
    f = H5Fcreate(tpath("clic3.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "ECAL", 3, (hsize_t[]){2, 25, 25});
    write_ds(f, "target", 2, (hsize_t[]){2, 2});
    H5Fclose(f);
    expect_import_error("clic3.h5", CG_H5_AUTO, "ECAL", "dimensions");
    /* not HDF5 at all; a missing file; a truncated HDF5 file */
    FILE *t = fopen(tpath("text.h5"), "w");
    fputs("this is not hdf5\n", t);
    fclose(t);
    expect_import_error("text.h5", CG_H5_AUTO, "not an HDF5 file", NULL);
    expect_import_error("nonexistent.h5", CG_H5_AUTO, "cannot open", NULL);
    if (exists(tpath("rt.h5"))) {
        struct stat sb;
        stat(tpath("rt.h5"), &sb);
        CHECK(truncate(tpath("rt.h5"), sb.st_size / 2) == 0);
        const char *tin[1] = {tpath("rt.h5")};
        cg_clear_error();
        CHECK(cg_h5_import(tin, 1, tpath("out.cvox"), NULL, 0, NULL, NULL) != CG_OK);
        CHECK(strstr(cg_last_error(), "rt.h5") != NULL);
        CHECK(!exists(tpath("out.cvox")) && partial_files_left() == 0);
    }
    /* two inputs that disagree */
    f = H5Fcreate(tpath("cc-a.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "showers", 2, (hsize_t[]){3, 368});
    write_ds(f, "incident_energies", 2, (hsize_t[]){3, 1});
    H5Fclose(f);
    f = H5Fcreate(tpath("cc-b.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "showers", 2, (hsize_t[]){3, 533});
    write_ds(f, "incident_energies", 2, (hsize_t[]){3, 1});
    H5Fclose(f);
    const char *two[2] = {tpath("cc-a.h5"), tpath("cc-b.h5")};
    CHECK(cg_h5_import(two, 2, tpath("out.cvox"), NULL, 0, NULL, NULL) == CG_ERR_INVALID);
    CHECK(strstr(cg_last_error(), "cc-b.h5") && strstr(cg_last_error(), "differs"));
    /* the good one imports, with the CaloChallenge dataset-1 photon binning */
    const char *one[1] = {tpath("cc-a.h5")};
    CHECK(cg_h5_import(one, 1, tpath("out.cvox"), NULL, 0, NULL, NULL) == CG_OK);
    cg_cvox_reader *r = cg_cvox_open(tpath("out.cvox"));
    CHECK(r && strcmp(cg_cvox_info_of(r)->geom.name, "calochallenge-ds1-photons") == 0 &&
          cg_cvox_info_of(r)->geom.nlayers == 5);
    cg_cvox_close(r);
    unlink(tpath("out.cvox"));
}

static void test_export_disk_full(void) {
    cg_geometry g;
    CG_ASSERT(cg_geometry_grid(&g, "grid", 10, 10, 10, 5, 5, 4) == CG_OK);
    float *x, *c;
    make_cvox(tpath("big.cvox"), &g, 300, 1, &x, &c);
    free(x);
    free(c);
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit keep, lim;
    getrlimit(RLIMIT_FSIZE, &keep);
    lim = keep;
    lim.rlim_cur = 100000; /* the compressed export needs ~ 700 kB */
    CG_ASSERT(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    cg_h5_export_opts eo = {.layout = CG_H5_CALOCHALLENGE, .gzip = 1, .chunk_events = 10};
    cg_clear_error();
    cg_status st = cg_h5_export(tpath("big.cvox"), tpath("full.h5"), &eo, NULL, NULL);
    setrlimit(RLIMIT_FSIZE, &keep);
    signal(SIGXFSZ, old);
    CHECK(st == CG_ERR_IO);
    CHECK_MSG(strstr(cg_last_error(), "full.h5") && strstr(cg_last_error(), "disk full"), "message: %s", cg_last_error());
    CHECK(!exists(tpath("full.h5")) && partial_files_left() == 0);
}

int main(int argc, char **argv) {
    test_seed();
    H5dont_atexit(); /* see io/hdf5.c: libhdf5 1.10 crashes at exit after a failed close */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc > 1) {
        char p[600];
        snprintf(p, sizeof p, "%s/test_data_1.h5", argv[1]);
        if (exists(p)) g_clic = argv[1];
    }
    if (tmpdir_make("hdf5")) return 1;
    TEST_RUN(test_round_trips);
    TEST_RUN(test_clic_sample);
    TEST_RUN(test_bad_files);
    TEST_RUN(test_export_disk_full);
    tmpdir_remove();
    return test_summary();
}
