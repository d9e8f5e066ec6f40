/*
 * tests/test_eval.c — the evaluation module (models/eval/): observables computed by hand on
 * small showers (grid, polar and per-layer geometries), distances on samples whose answer
 * is known, AUC and isotonic calibration, the classifier on separable and identical data,
 * a sample against itself through the whole pipeline (SP = W1 = KS = 0, AUC near 0.5), and
 * bad inputs (different geometries, no events, mismatched conditioning, too few showers,
 * a missing file). The physics test (5 % energy scale) is tests/test_eval_physics.c.
 */
#include <dirent.h>
#include <unistd.h>

#include "io/simulate.h"
#include "models/eval/classifier.h"
#include "models/eval/distances.h"
#include "models/eval/evaluate.h"
#include "models/eval/observables.h"
#include "models/eval/report.h"
#include "test.h"
#include "test_tmpdir.h"

#define NEAR(a, b, tol) CHECK_NEAR(a, b, (tol) * fmax(1.0, fabs((double)(b))))

/* ------------------------------------------------------------- observables ---- */

static void test_observables_by_hand(void) {
    cg_geometry g;
    CHECK(cg_geometry_grid(&g, "toy", 3, 5, 5, 10, 10, 20) == CG_OK); /* z centres 10, 30, 50 mm */
    cg_obs_ctx *c = cg_obs_ctx_new(&g, 0.1);
    float x[75] = {0};
#define AT(l, r, k) x[(l) * 25 + (r) * 5 + (k)]
    AT(0, 2, 2) = 4;
    AT(1, 2, 2) = 10, AT(1, 2, 3) = 2, AT(1, 1, 2) = 1, AT(1, 0, 0) = 0.05f; /* below the threshold */
    AT(2, 2, 2) = 3, AT(2, 3, 2) = 1;
#undef AT
    double v[CG_OBS_NSCALAR + 3], rad[64];
    CHECK(cg_obs_nvalues(c) == CG_OBS_NSCALAR + 3);
    cg_obs_compute(c, x, 0.5, v, rad);
    double e = 21;
    NEAR(v[CG_OBS_E_VIS], e, 1e-12);
    NEAR(v[CG_OBS_E_RATIO], e / 500, 1e-12);
    NEAR(v[CG_OBS_N_HITS], 6, 0);
    NEAR(v[CG_OBS_SPARSITY], 1 - 6.0 / 75, 1e-12);
    NEAR(v[CG_OBS_E_MAX], 10, 0);
    NEAR(v[CG_OBS_NSCALAR + 0], 4, 0);
    NEAR(v[CG_OBS_NSCALAR + 1], 13, 0);
    NEAR(v[CG_OBS_NSCALAR + 2], 4, 0);
    /* cells at x = (col − 2)·10, y = (row − 2)·10 */
    double cx = 20 / e, cy = 0;
    NEAR(v[CG_OBS_COG_X], cx, 1e-12);
    NEAR(v[CG_OBS_COG_Y], cy, 1e-12);
    NEAR(v[CG_OBS_COG_Z], 30, 1e-12);
    NEAR(v[CG_OBS_WIDTH_X], sqrt(200 / e - cx * cx), 1e-9);
    NEAR(v[CG_OBS_WIDTH_Y], sqrt(200 / e), 1e-9);
    NEAR(v[CG_OBS_WIDTH_Z], sqrt((4 * 100 + 13 * 900 + 4 * 2500) / e - 900), 1e-9);
    NEAR(v[CG_OBS_E1_E9], 10.0 / 13, 1e-12);
    NEAR(v[CG_OBS_E9_E21], 1, 1e-12);
    NEAR(v[CG_OBS_ASYM_X], 2 / e, 1e-12); /* about the hottest cell at (0, 0) */
    NEAR(v[CG_OBS_ASYM_Y], 0, 1e-12);
    NEAR(v[CG_OBS_ANGLE_X], 0, 1e-9);
    NEAR(v[CG_OBS_ANGLE_Y], atan(200.0 / 3200.0) * 180 / M_PI, 1e-9);
    /* radial distances from the axis through (cx, 0) */
    struct { double e, x, y; } hit[6] = {{4, 0, 0}, {10, 0, 0}, {2, 10, 0}, {1, 0, -10}, {3, 0, 0}, {1, 0, 10}};
    double sr = 0, srr = 0, prof[64] = {0};
    const double *edges = cg_obs_radial_edges(c);
    int nrad = cg_obs_nradial(c);
    CHECK(nrad == (int)ceil(0.5 * hypot(50, 50) / 10 - 1e-9) && edges[1] == 10);
    for (int i = 0; i < 6; i++) {
        double r = hypot(hit[i].x - cx, hit[i].y - cy);
        sr += hit[i].e * r;
        srr += hit[i].e * r * r;
        int b = (int)(r / 10);
        prof[b < nrad ? b : nrad - 1] += hit[i].e;
    }
    NEAR(v[CG_OBS_R_MEAN], sr / e, 1e-9);
    NEAR(v[CG_OBS_R_WIDTH], sqrt(srr / e - (sr / e) * (sr / e)), 1e-9);
    for (int b = 0; b < nrad; b++) NEAR(rad[b], prof[b], 1e-9);

    /* no incident energy, an empty shower: NaN where undefined, never a crash */
    memset(x, 0, sizeof x);
    cg_obs_compute(c, x, NAN, v, rad);
    CHECK(v[CG_OBS_E_VIS] == 0 && v[CG_OBS_N_HITS] == 0 && isnan(v[CG_OBS_E_RATIO]) && isnan(v[CG_OBS_COG_Z]));
    CHECK(isnan(v[CG_OBS_E1_E9]) && isnan(v[CG_OBS_ANGLE_X]) && isnan(v[CG_OBS_R_MEAN]) && v[CG_OBS_SPARSITY] == 1);
    cg_obs_ctx_free(c);
}

static void test_observables_polar_and_layers(void) {
    /* CaloChallenge-like polar layers: (alpha, r) bins; one hit at r in [0, 5) */
    cg_geometry g;
    memset(&g, 0, sizeof g);
    snprintf(g.name, sizeof g.name, "polar");
    g.nlayers = 2;
    for (int l = 0; l < 2; l++) {
        cg_layer *L = &g.layer[l];
        L->binning = CG_BIN_POLAR;
        L->rows = l ? 1 : 4; /* layer 1 is not binned in alpha */
        L->cols = 3;
        L->r_edges[0] = 0, L->r_edges[1] = 5, L->r_edges[2] = 10, L->r_edges[3] = 20;
        L->z_mm = 10 + 20 * l;
        L->depth_mm = 20;
    }
    CHECK(cg_geometry_finish(&g) == CG_OK && g.ncells == 15);
    cg_obs_ctx *c = cg_obs_ctx_new(&g, 0);
    CHECK(cg_obs_nradial(c) == 3 && cg_obs_radial_edges(c)[3] == 20);
    float x[15] = {0};
    x[0] = 2;      /* layer 0, alpha bin 0, r bin 0: r_mid 2.5, alpha_mid −3π/4 */
    x[12 + 2] = 1; /* layer 1, r bin 2: r_mid 15 */
    double v[CG_OBS_NSCALAR + 2], rad[3];
    cg_obs_compute(c, x, NAN, v, rad);
    NEAR(v[CG_OBS_COG_X], 2.5 * cos(-0.75 * M_PI), 1e-6); /* only layer 0 resolves x, y */
    NEAR(v[CG_OBS_COG_Y], 2.5 * sin(-0.75 * M_PI), 1e-6);
    NEAR(v[CG_OBS_R_MEAN], (2 * 2.5 + 1 * 15) / 3.0, 1e-6);
    NEAR(rad[0], 2, 0);
    NEAR(rad[2], 1, 0);
    NEAR(v[CG_OBS_COG_Z], (2 * 10 + 1 * 30) / 3.0, 1e-12);
    CHECK(isnan(v[CG_OBS_ANGLE_X])); /* one x/y layer: no direction */
    cg_obs_ctx_free(c);

    /* CaloGAN's three layers of different shapes: sums agree, ratios in [0, 1] */
    memset(&g, 0, sizeof g);
    snprintf(g.name, sizeof g.name, "calogan");
    int rows[3] = {3, 12, 12}, cols[3] = {96, 12, 6};
    float cw[3] = {5, 40, 80}, ch[3] = {160, 40, 40};
    g.nlayers = 3;
    for (int l = 0; l < 3; l++)
        g.layer[l] = (cg_layer){.rows = rows[l], .cols = cols[l], .binning = CG_BIN_CARTESIAN, .cell_w = cw[l],
                                .cell_h = ch[l], .z_mm = 50.0f + 100 * l, .depth_mm = 90};
    CHECK(cg_geometry_finish(&g) == CG_OK && g.ncells == 288 + 144 + 72);
    c = cg_obs_ctx_new(&g, 0.5);
    float *y = malloc((size_t)g.ncells * sizeof(float));
    double w[CG_OBS_NSCALAR + 3];
    for (int t = 0; t < 20; t++) {
        for (int64_t i = 0; i < g.ncells; i++) y[i] = (float)(cg_rng_uniform(test_rng()) < 0.2 ? 5 * cg_rng_uniform(test_rng()) : 0);
        cg_obs_compute(c, y, 10, w, NULL);
        double s = 0;
        int64_t hits = 0;
        for (int64_t i = 0; i < g.ncells; i++)
            if (y[i] > 0.5) s += y[i], hits++;
        NEAR(w[CG_OBS_E_VIS], s, 1e-9);
        NEAR(w[CG_OBS_NSCALAR] + w[CG_OBS_NSCALAR + 1] + w[CG_OBS_NSCALAR + 2], s, 1e-9);
        CHECK(w[CG_OBS_N_HITS] == hits);
        CHECK(w[CG_OBS_E1_E9] > 0 && w[CG_OBS_E1_E9] <= 1 && w[CG_OBS_E9_E21] > 0 && w[CG_OBS_E9_E21] <= 1);
        CHECK(fabs(w[CG_OBS_ASYM_X]) <= 1 && isfinite(w[CG_OBS_ANGLE_X]) && w[CG_OBS_WIDTH_Y] >= 0);
    }
    free(y);
    cg_obs_ctx_free(c);
}

/* --------------------------------------------------------------- distances ---- */

static void test_distances_known(void) {
    double u[3] = {0, 1, 3}, v[3] = {5, 6, 8};
    NEAR(cg_wasserstein1(u, 3, v, 3), 5, 1e-15);
    NEAR(cg_ks_statistic(u, 3, v, 3), 1, 0);
    double a[2] = {0, 1}, b[1] = {0.5};
    NEAR(cg_wasserstein1(a, 2, b, 1), 0.5, 1e-15);
    double p[3] = {1, 2, 3}, q[3] = {2, 3, 4};
    NEAR(cg_ks_statistic(p, 3, q, 3), 1.0 / 3, 1e-15);
    NEAR(cg_wasserstein1(p, 3, q, 3), 1, 1e-15);
    NEAR(cg_wasserstein1(p, 3, p, 3), 0, 0);
    /* numpy.histogram semantics: [e_i, e_i+1), the last bin closed, outside dropped */
    double e[3] = {0, 1, 2}, x[6] = {0, 0.5, 1, 2, 2.5, -1};
    int64_t cnt[2];
    CHECK(cg_histogram(x, 6, 1, e, 2, cnt) == 2 && cnt[0] == 2 && cnt[1] == 2);
    int64_t c1[2] = {5, 0}, c2[2] = {0, 3}, c3[2] = {10, 0};
    NEAR(cg_separation_power(c1, c2, 2), 1, 1e-12);
    NEAR(cg_separation_power(c1, c3, 2), 0, 0);
    int64_t c4[2] = {1, 1}, c5[2] = {3, 1};
    NEAR(cg_separation_power(c4, c5, 2), 0.5 * (0.0625 / 1.25 + 0.0625 / 0.75), 1e-12);
    double s[4] = {1, 2, 3, 4};
    NEAR(cg_quantile_sorted(s, 4, 0.5), 2.5, 0);
    NEAR(cg_quantile_sorted(s, 4, 0.1), 1.3, 1e-15);

    /* binning rules */
    double ints[11], *edges = NULL;
    for (int i = 0; i < 11; i++) ints[i] = i;
    cg_bins_spec is = {CG_BINS_INTEGER, 0, INFINITY, 0, 0};
    int nb = cg_bins_make(&is, ints, 11, &edges);
    CHECK(nb >= 11 && edges[0] == -0.5);
    for (int k = 0; k <= nb; k++) CHECK(edges[k] - floor(edges[k]) == 0.5);
    free(edges);
    double calib[3] = {0.95, 1.02, 1.05}, samp[3] = {0.018, 0.02, 0.021};
    cg_bins_spec cr = {CG_BINS_CC_RATIO, 0, INFINITY, 0, 0};
    CHECK(cg_bins_make(&cr, calib, 3, &edges) == 100 && edges[0] == 0.5 && edges[100] == 1.5);
    free(edges);
    CHECK(cg_bins_make(&cr, samp, 3, &edges) == 100 && fabs(edges[0] - 0.01) < 1e-15 && fabs(edges[100] - 0.03) < 1e-15);
    free(edges);
    cg_bins_spec lg = {CG_BINS_LOG, 0, INFINITY, 40, 0.1};
    double en[3] = {0.2, 3, 50};
    CHECK(cg_bins_make(&lg, en, 3, &edges) == 39 && fabs(edges[0] - 0.1) < 1e-15 && edges[39] == 50);
    NEAR(edges[1], pow(10, -1 + log10(500) / 39), 1e-12);
    free(edges);

    /* a sample against itself: all zero; a shifted copy: W1 = shift */
    int n = 500;
    double *r = malloc(n * sizeof(double)), *t = malloc(n * sizeof(double));
    for (int i = 0; i < n; i++) r[i] = cg_rng_normal(test_rng()), t[i] = r[i] + 0.25;
    cg_bins_spec ls = {CG_BINS_LINEAR, -INFINITY, INFINITY, 0, 0};
    cg_dist d;
    CHECK(cg_dist_compute(&d, r, n, 1, r, n, 1, &ls) == CG_OK);
    CHECK(d.sp == 0 && d.w1 == 0 && d.ks == 0 && d.nbins == 50 && d.n_ref == n);
    cg_dist_free(&d);
    CHECK(cg_dist_compute(&d, r, n, 1, t, n, 1, &ls) == CG_OK);
    NEAR(d.w1, 0.25, 1e-12);
    CHECK(d.sp > 0.01 && d.ks > 0.05);
    cg_dist_free(&d);
    /* every generated value outside the reference's range: disjoint, SP = 1 by convention */
    for (int i = 0; i < n; i++) t[i] = r[i] + 100;
    CHECK(cg_dist_compute(&d, r, n, 1, t, n, 1, &ls) == CG_OK);
    CHECK(d.sp == 1 && d.ks == 1 && d.out_gen == n && strstr(d.note, "convention"));
    NEAR(d.w1, 100, 1e-12);
    cg_dist_free(&d);
    /* too few values: NaN metrics and a note, not an error */
    r[0] = r[1] = NAN;
    CHECK(cg_dist_compute(&d, r, 11, 1, t, 5, 1, &ls) == CG_OK);
    CHECK(isnan(d.sp) && isnan(d.w1) && d.nan_ref == 2 && strstr(d.note, "too few"));
    cg_dist_free(&d);
    free(r);
    free(t);
}

static void test_auc_isotonic(void) {
    double s[4] = {0.1, 0.4, 0.35, 0.8};
    uint8_t y[4] = {0, 0, 1, 1};
    NEAR(cg_auc(s, y, 4), 0.75, 1e-15); /* sklearn's roc_auc_score example */
    double tie[4] = {0.3, 0.3, 0.3, 0.3};
    NEAR(cg_auc(tie, y, 4), 0.5, 0);
    double x[4] = {1, 2, 3, 4}, yy[4] = {1, 0, 1, 1}, q[5] = {0, 1.5, 2.5, 3.5, 9}, out[5];
    CHECK(cg_isotonic_fit_predict(x, yy, 4, 1e-6, 1 - 1e-6, q, 5, out) == CG_OK);
    NEAR(out[0], 0.5, 1e-15);
    NEAR(out[1], 0.5, 1e-15);
    NEAR(out[2], 0.5 + 0.5 * (1 - 1e-6 - 0.5), 1e-12);
    NEAR(out[3], 1 - 1e-6, 1e-15);
    NEAR(out[4], 1 - 1e-6, 1e-15);
    /* equal x are merged with their mean y first */
    double x2[4] = {1, 1, 2, 2}, y2[4] = {0, 1, 1, 1}, q2[2] = {1, 2}, o2[2];
    CHECK(cg_isotonic_fit_predict(x2, y2, 4, 0, 1, q2, 2, o2) == CG_OK);
    NEAR(o2[0], 0.5, 1e-15);
    NEAR(o2[1], 1, 1e-15);
}

static void test_classifier_separable_and_not(void) {
    int n = 600, dim = 4;
    float *a = malloc((size_t)n * dim * sizeof(float)), *b = malloc((size_t)n * dim * sizeof(float));
    float *c = malloc((size_t)n * dim * sizeof(float));
    for (int i = 0; i < n * dim; i++) {
        a[i] = (float)cg_rng_normal(test_rng());
        b[i] = (float)cg_rng_normal(test_rng()) + (i % dim == 0 ? 3.0f : 0.0f);
        c[i] = (float)cg_rng_normal(test_rng());
    }
    cg_cls_cfg cfg = {32, 2, 10, 64, 1e-3f, true, test_seed()};
    cg_cls_result r;
    CHECK(cg_cls_run(a, n, b, n, dim, &cfg, &r) == CG_OK);
    CHECK_MSG(r.auc > 0.9, "separable blobs: AUC %.3f", r.auc);
    CHECK(r.n_train == 720 && r.n_test == 240 && r.n_val == 240 && r.best_epoch >= 1);
    CHECK(cg_cls_run(a, n, c, n, dim, &cfg, &r) == CG_OK);
    CHECK_MSG(fabs(r.auc - 0.5) < 0.12, "same distribution: AUC %.3f", r.auc);
    CHECK(isfinite(r.jsd) && isfinite(r.jsd_cal) && r.jsd_cal < 0.2);
    /* determinism: the same seed gives the same numbers */
    cg_cls_result r2;
    CHECK(cg_cls_run(a, n, c, n, dim, &cfg, &r2) == CG_OK && r2.auc == r.auc && r2.jsd == r.jsd);
    CHECK(cg_cls_run(a, 20, c, 20, dim, &cfg, &r) == CG_ERR_INVALID && strstr(cg_last_error(), "at least"));
    free(a), free(b), free(c);
}

static void test_png(void) {
    uint8_t px[2 * 3 * 4];
    for (int i = 0; i < 24; i++) px[i] = (uint8_t)(i * 10);
    size_t n = 0;
    uint8_t *png = cg_png_encode(px, 2, 3, &n);
    CHECK(png && n > 57 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(png + 12, "IHDR", 4) == 0);
    CHECK(memcmp(png + n - 8, "IEND", 4) == 0);
    free(png);
    uint8_t lo[3], hi[3];
    cg_colormap(0, lo);
    cg_colormap(1, hi);
    CHECK(lo[0] == 68 && lo[2] == 84 && hi[0] == 253 && hi[1] == 231);
}

/* ----------------------------------------------------------- the pipeline ---- */

typedef struct {
    cg_cvox_info info;
    int64_t n;
    float *dense, *cond;
} sim_sample;

static sim_sample simulate(const char *geometry, const int grid[3], int64_t n, uint64_t seed, double theta_lo,
                           double theta_hi) {
    cg_sim_opts o;
    cg_sim_defaults(&o);
    o.geometry = geometry;
    if (grid) memcpy(o.grid, grid, sizeof o.grid);
    o.seed = seed;
    o.theta[0] = theta_lo;
    o.theta[1] = theta_hi;
    cg_sim *s = cg_sim_new(&o);
    CG_ASSERT(s);
    sim_sample r = {*cg_sim_info(s), n, NULL, NULL};
    r.dense = malloc((size_t)(n * r.info.geom.ncells + 1) * sizeof(float));
    r.cond = malloc((size_t)(n * r.info.ncond + 1) * sizeof(float));
    cg_sim_run(s, 0, n, r.dense, r.cond);
    r.info.nevents = n;
    cg_sim_free(s);
    return r;
}

static cg_eval_sample as_sample(const sim_sample *s, const char *name) {
    return (cg_eval_sample){name, &s->info, s->n, s->dense, s->cond};
}

/* Every value of "key": in the JSON text is 0 or null; returns how many there are, -1 if one
 * is not. */
static int all_zero_or_null(const char *js, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    int n = 0;
    for (const char *p = strstr(js, pat); p; p = strstr(p + 1, pat)) {
        const char *v = p + strlen(pat);
        if (!(strncmp(v, "null", 4) == 0 || (v[0] == '0' && (v[1] == ',' || v[1] == '\n')))) return -1;
        n++;
    }
    return n;
}

static bool json_clean(const char *dir) {
    char p[400];
    snprintf(p, sizeof p, "%s/metrics.json", dir);
    char *s = tfile_read(p, NULL);
    if (!s) return false;
    /* no NaN or inf anywhere: unknown numbers are null */
    bool ok = !strstr(s, "nan") && !strstr(s, "NaN") && !strstr(s, "inf") && !strstr(s, "Infinity");
    ok = ok && strstr(s, "\"e_vis_over_e_inc_separation_power\"") && strstr(s, "\"warnings\"");
    free(s);
    return ok;
}

static void test_sample_against_itself(void) {
    int grid[3] = {10, 12, 12};
    sim_sample a = simulate("custom", grid, 600, test_seed(), NAN, NAN);
    cg_eval_sample ra = as_sample(&a, "self"), rb = as_sample(&a, "self-again");
    cg_eval_opts o;
    cg_eval_defaults(&o);
    o.cls_epochs[0] = 8;
    o.cls_epochs[1] = 3;
    o.seed = test_seed();
    cg_eval_summary s;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/self", g_dir);
    CHECK(cg_evaluate_samples(&ra, &rb, dir, &o, &s) == CG_OK);
    CHECK(s.n_reference == 600 && s.n_generated == 600);
    CHECK(s.sp_e_ratio == 0 && s.sp_e_vis == 0 && s.sp_n_hits == 0 && s.sp_cells == 0 && s.sp_max == 0);
    /* identical rows in both classes (the same split for both): exactly indistinguishable */
    CHECK_MSG(fabs(s.auc_high - 0.5) < 1e-9 && fabs(s.auc_low - 0.5) < 1e-9, "AUC %.6f %.6f", s.auc_high, s.auc_low);
    CHECK(json_clean(dir));
    /* every observable's metrics in the JSON are 0 */
    char p[400];
    snprintf(p, sizeof p, "%s/metrics.json", dir);
    char *js = tfile_read(p, NULL);
    CHECK(js && strstr(js, "\"separation_power\": 0,"));
    /* 19 scalars, 10 layers, cells, the energy conditioning, and the bins' scalars */
    CHECK_MSG(js && all_zero_or_null(js, "separation_power") > 31, "%d", js ? all_zero_or_null(js, "separation_power") : 0);
    CHECK(js && all_zero_or_null(js, "w1") > 31 && all_zero_or_null(js, "ks") > 31);
    free(js);
    const char *files[] = {"index.html", "observables_reference.csv", "observables_generated.csv",
                           "cells_reference.csv", "profiles.csv", "histograms/e_vis_over_e_inc.csv",
                           "histograms/cell_energy.csv", "histograms/e_layer_9.csv"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        CHECK_MSG(access(p, R_OK) == 0, "missing %s", files[i]);
    }
    /* no temporary file left behind */
    DIR *dd = opendir(dir);
    struct dirent *de;
    while (dd && (de = readdir(dd))) CHECK_MSG(!strstr(de->d_name, ".tmp."), "left %s", de->d_name);
    if (dd) closedir(dd);
    free(a.dense), free(a.cond);
}

static void test_bad_inputs(void) {
    int g1[3] = {6, 8, 8}, g2[3] = {6, 8, 9};
    sim_sample a = simulate("custom", g1, 40, 1, NAN, NAN), b = simulate("custom", g2, 40, 2, NAN, NAN);
    sim_sample c = simulate("custom", g1, 40, 3, 60, 90); /* has a "theta" conditioning too */
    cg_eval_sample ra = as_sample(&a, "a.cvox"), rb = as_sample(&b, "b.cvox"), rc = as_sample(&c, "c.cvox");
    cg_eval_opts o;
    cg_eval_defaults(&o);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/bad", g_dir);
    CHECK(cg_evaluate_samples(&ra, &rb, dir, &o, NULL) == CG_ERR_INVALID);
    CHECK(strstr(cg_last_error(), "different geometries") && strstr(cg_last_error(), "b.cvox"));
    CHECK(cg_evaluate_samples(&ra, &rc, dir, &o, NULL) == CG_ERR_INVALID);
    CHECK(strstr(cg_last_error(), "mismatched conditioning") && strstr(cg_last_error(), "theta"));
    cg_eval_sample empty = ra;
    empty.nevents = 0;
    empty.name = "empty.cvox";
    CHECK(cg_evaluate_samples(&ra, &empty, dir, &o, NULL) == CG_ERR_INVALID);
    CHECK(strstr(cg_last_error(), "empty.cvox has no events"));
    CHECK(cg_evaluate_files("/nonexistent/ref.cvox", "/nonexistent/gen.cvox", dir, &o, NULL) != CG_OK);
    CHECK(strstr(cg_last_error(), "/nonexistent/ref.cvox"));
    /* an output folder that cannot be made */
    CHECK(cg_evaluate_samples(&ra, &ra, "/proc/no/such/dir", &o, NULL) == CG_ERR_IO);
    /* too few showers: a report with null metrics and warnings, not an error */
    ra.nevents = 6;
    cg_eval_summary s;
    CHECK(cg_evaluate_samples(&ra, &ra, dir, &o, &s) == CG_OK);
    CHECK(isnan(s.sp_e_vis) && isnan(s.auc_high) && s.nwarnings >= 3);
    CHECK(json_clean(dir));
    char p[400];
    snprintf(p, sizeof p, "%s/metrics.json", dir);
    char *js = tfile_read(p, NULL);
    CHECK(js && strstr(js, "too few defined values") && strstr(js, "\"auc\": null") && strstr(js, "need 50"));
    free(js);
    free(a.dense), free(a.cond), free(b.dense), free(b.cond), free(c.dense), free(c.cond);
}

/* A number after "key": in the JSON text, after the first occurrence of `after` */
static double json_number(const char *js, const char *after, const char *key) {
    const char *p = strstr(js, after);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    p = p ? strstr(p, pat) : NULL;
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* The same showers stored in GeV (cells / 1000, to_mev 1000) with the incident energy in
 * MeV give the same MeV observables, the same default threshold and the same E_vis/E_inc. */
static void test_units(void) {
    int grid[3] = {5, 8, 8};
    sim_sample a = simulate("custom", grid, 120, test_seed(), NAN, NAN);
    sim_sample b = a;
    int64_t nc = a.info.geom.ncells;
    b.dense = malloc((size_t)(a.n * nc) * sizeof(float));
    b.cond = malloc((size_t)(a.n * a.info.ncond) * sizeof(float));
    for (int64_t i = 0; i < a.n * nc; i++) b.dense[i] = a.dense[i] / 1000.0f;
    for (int64_t i = 0; i < a.n * a.info.ncond; i++) b.cond[i] = a.cond[i] * 1000.0f;
    snprintf(b.info.geom.energy_unit, sizeof b.info.geom.energy_unit, "GeV");
    b.info.geom.to_mev = 1000;
    int ie = cg_cvox_cond_index(&b.info, "energy");
    CHECK(ie >= 0);
    snprintf(b.info.cond_unit[ie], CG_CVOX_NAME_LEN, "MeV");
    cg_eval_sample ra = as_sample(&a, "mev"), rb = as_sample(&b, "gev");
    cg_eval_opts o;
    cg_eval_defaults(&o);
    o.classifier[0] = o.classifier[1] = false;
    char d1[300], d2[300], p[400];
    snprintf(d1, sizeof d1, "%s/units_mev", g_dir);
    snprintf(d2, sizeof d2, "%s/units_gev", g_dir);
    CHECK(cg_evaluate_samples(&ra, &ra, d1, &o, NULL) == CG_OK);
    CHECK(cg_evaluate_samples(&rb, &rb, d2, &o, NULL) == CG_OK);
    snprintf(p, sizeof p, "%s/metrics.json", d1);
    char *j1 = tfile_read(p, NULL);
    snprintf(p, sizeof p, "%s/metrics.json", d2);
    char *j2 = tfile_read(p, NULL);
    CHECK(j1 && j2);
    if (j1 && j2) {
        NEAR(json_number(j2, "\"threshold\"", "mev"), json_number(j1, "\"threshold\"", "mev"), 1e-6);
        NEAR(json_number(j2, "\"threshold\"", "value"), json_number(j1, "\"threshold\"", "value") / 1000, 1e-6);
        const char *keys[] = {"\"e_vis\": {", "\"e_vis_over_e_inc\": {", "\"n_hits\": {", "\"e_max\": {",
                              "\"cog_z\": {", "\"cell_energy\": {"};
        for (int k = 0; k < 6; k++) {
            double m1 = json_number(j1, keys[k], "mean_reference"), m2 = json_number(j2, keys[k], "mean_reference");
            CHECK_MSG(isfinite(m1) && fabs(m1 - m2) <= 1e-5 * fabs(m1), "%s %.9g vs %.9g", keys[k], m1, m2);
        }
    }
    /* files in different units are not compared silently */
    CHECK(cg_evaluate_samples(&ra, &rb, d1, &o, NULL) == CG_ERR_INVALID && strstr(cg_last_error(), "units"));
    free(j1), free(j2);
    free(a.dense), free(a.cond), free(b.dense), free(b.cond);
}

int main(void) {
    test_seed();
    if (tmpdir_make("eval")) return 1;
    TEST_RUN(test_observables_by_hand);
    TEST_RUN(test_observables_polar_and_layers);
    TEST_RUN(test_distances_known);
    TEST_RUN(test_auc_isotonic);
    TEST_RUN(test_classifier_separable_and_not);
    TEST_RUN(test_png);
    TEST_RUN(test_sample_against_itself);
    TEST_RUN(test_bad_inputs);
    TEST_RUN(test_units);
    tmpdir_remove();
    return test_summary();
}
