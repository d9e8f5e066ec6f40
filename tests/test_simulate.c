/*
 * tests/test_simulate.c — the physics and the determinism of the shower simulator
 * (io/simulate.h), with fixed seeds so that the physics checks are reproducible:
 *  - the energy sum is linear in the incident energy within 2% (ILD: the sum weighted by the
 *    sampling calibration factors, the ILD practice; CLIC: the raw sum, its layers are equal);
 *  - the resolution follows a/√E (a small constant term allowed);
 *  - the depth of the shower maximum grows like ln E (slope about 1 X0 per e-fold);
 *  - the cell energy spectrum has a MIP peak at 0.2 MeV with a valley before 2 MIPs;
 *  - the polar angle tilts the shower axis by cot θ; photons start later than electrons;
 *  - results do not depend on the thread count or on which events run together.
 */
#include "io/simulate.h"
#include "test.h"

static cg_sim *make(const char *geom, const char *particle, double e, double theta, uint64_t seed) {
    cg_sim_opts o;
    cg_sim_defaults(&o);
    o.geometry = geom;
    o.particle = particle;
    o.energy[0] = o.energy[1] = e;
    if (theta > 0) o.theta[0] = o.theta[1] = theta;
    o.seed = seed;
    cg_sim *s = cg_sim_new(&o);
    CG_ASSERT_MSG(s, cg_last_error());
    return s;
}

typedef struct {
    double mean, rel;          /* of the (calibrated) energy sum */
    double tmax;               /* depth of the maximum of the mean profile, X0 */
    double tcog;               /* mean longitudinal centre of gravity, X0 */
} summary;

/* Simulate n events and summarise them. */
static summary run(cg_sim *s, int64_t n) {
    const cg_geometry *g = &cg_sim_info(s)->geom;
    double depth[CG_GEOM_MAX_LAYERS], calib[CG_GEOM_MAX_LAYERS], prof[CG_GEOM_MAX_LAYERS] = {0};
    int nl = cg_sim_layers(s, depth, calib);
    float *x = malloc((size_t)(n * g->ncells) * sizeof(float));
    cg_sim_run(s, 0, n, x, NULL);
    double s1 = 0, s2 = 0, cog = 0;
    for (int64_t e = 0; e < n; e++) {
        double sum = 0, tw = 0;
        for (int l = 0; l < nl; l++) {
            double el = 0;
            for (int64_t i = g->layer_offset[l]; i < g->layer_offset[l + 1]; i++) el += x[e * g->ncells + i];
            el *= calib[l];
            sum += el;
            prof[l] += el;
            tw += el * (depth[l] - 0.5 * (depth[l] - (l ? depth[l - 1] : 0)));
        }
        s1 += sum;
        s2 += sum * sum;
        cog += tw / sum;
    }
    summary r;
    r.mean = s1 / n;
    r.rel = sqrt(fmax(s2 / n - r.mean * r.mean, 0)) / r.mean;
    r.tcog = cog / n;
    /* maximum of the deposited energy per X0: a parabola through the peak and its neighbours
     * (layers have different thicknesses: use their centres) */
    double t[CG_GEOM_MAX_LAYERS], dens[CG_GEOM_MAX_LAYERS];
    int best = 1;
    for (int l = 0; l < nl; l++) {
        double t0 = l ? depth[l - 1] : 0;
        t[l] = 0.5 * (t0 + depth[l]);
        dens[l] = prof[l] / (depth[l] - t0);
        if (l >= 1 && l < nl - 1 && dens[l] > dens[best]) best = l;
    }
    double x0 = t[best - 1], x1 = t[best], x2 = t[best + 1], y0 = dens[best - 1], y1 = dens[best], y2 = dens[best + 1];
    double d1 = (y1 - y0) / (x1 - x0), d2 = (y2 - y1) / (x2 - x1), c2 = (d2 - d1) / (x2 - x0);
    r.tmax = c2 < 0 ? 0.5 * (x0 + x1) - d1 / (2 * c2) : x1;
    free(x);
    return r;
}

static const double ENERGIES[] = {10, 20, 40, 70, 100};
#define NE 5

/* Least squares y = a + b·x. */
static void fit_line(const double *x, const double *y, int n, double *a, double *b) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) sx += x[i], sy += y[i], sxx += x[i] * x[i], sxy += x[i] * y[i];
    *b = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    *a = (sy - *b * sx) / n;
}

static void check_linear(const char *geom, const summary *r) {
    double e[NE], m[NE], a, b;
    for (int i = 0; i < NE; i++) e[i] = ENERGIES[i], m[i] = r[i].mean;
    fit_line(e, m, NE, &a, &b);
    printf("     %s: sum = %.2f MeV/GeV · E %+.1f MeV;", geom, b, a);
    for (int i = 0; i < NE; i++) {
        double dev = m[i] / (a + b * e[i]) - 1;
        printf(" %g GeV %+.2f%%", e[i], 100 * dev);
        CHECK_MSG(fabs(dev) < 0.02, "%s: mean sum at %g GeV is %.2f%% off the line", geom, e[i], 100 * dev);
    }
    printf("\n");
    /* and nearly proportional: the offset is small against the sum at 10 GeV */
    CHECK_MSG(fabs(a) < 0.05 * b * 10, "%s: offset %.1f MeV", geom, a);
}

static void test_linearity_and_resolution(void) {
    summary r[NE];
    for (int i = 0; i < NE; i++) {
        cg_sim *s = make("ild", "photon", ENERGIES[i], 0, 1000 + i);
        r[i] = run(s, 400);
        cg_sim_free(s);
    }
    check_linear("ild (calibrated)", r);
    /* σ/E = a/√E ⊕ c: fit r² = c² + a²/E */
    double inv[NE], r2[NE], c2, a2;
    for (int i = 0; i < NE; i++) inv[i] = 1 / ENERGIES[i], r2[i] = r[i].rel * r[i].rel;
    fit_line(inv, r2, NE, &c2, &a2);
    double a = sqrt(fmax(a2, 0)), c = sqrt(fmax(c2, 0));
    printf("     ild resolution:");
    for (int i = 0; i < NE; i++) printf(" %g GeV %.2f%%", ENERGIES[i], 100 * r[i].rel);
    printf(" -> a = %.1f%%/sqrt(E), c = %.1f%%\n", 100 * a, 100 * c);
    CHECK_MSG(a > 0.10 && a < 0.30, "stochastic term a = %.3f", a);
    CHECK_MSG(c2 < 0.02 * 0.02, "constant term c² = %.2g", c2);
    for (int i = 1; i < NE; i++) CHECK(r[i].rel < r[i - 1].rel);
    /* the a/√E term dominates: at 10 GeV it is over twice the constant term */
    CHECK_MSG(a / sqrt(10.0) > 2 * c, "a/sqrt(10) = %.3f vs c = %.3f", a / sqrt(10.0), c);
    /* and the fit describes the points within 10% */
    for (int i = 0; i < NE; i++) {
        double want = sqrt(c2 + a2 / ENERGIES[i]);
        CHECK_MSG(fabs(r[i].rel / want - 1) < 0.1, "σ/E = %.4f at %g GeV, fit %.4f", r[i].rel, ENERGIES[i], want);
    }

    /* CLIC has equal layers: the raw sum is linear */
    for (int i = 0; i < NE; i++) {
        cg_sim *s = make("clic", "photon", ENERGIES[i], 0, 2000 + i);
        r[i] = run(s, 200);
        cg_sim_free(s);
    }
    check_linear("clic", r);
}

static void test_shower_max_grows_with_ln_e(void) {
    double lne[NE], tmax[NE], a, b;
    printf("     shower maximum (X0):");
    for (int i = 0; i < NE; i++) {
        cg_sim *s = make("ild", "photon", ENERGIES[i], 0, 3000 + i);
        summary r = run(s, 300);
        cg_sim_free(s);
        lne[i] = log(ENERGIES[i]);
        tmax[i] = r.tmax;
        printf(" %g GeV %.2f", ENERGIES[i], r.tmax);
        if (i) CHECK_MSG(tmax[i] > tmax[i - 1], "t_max(%g GeV) = %.2f <= t_max(%g GeV) = %.2f", ENERGIES[i], tmax[i],
                         ENERGIES[i - 1], tmax[i - 1]);
    }
    fit_line(lne, tmax, NE, &a, &b);
    double worst = 0;
    for (int i = 0; i < NE; i++) worst = fmax(worst, fabs(tmax[i] - (a + b * lne[i])));
    printf(" -> %.2f X0 per e-fold, worst residual %.2f X0\n", b, worst);
    /* GFlash (and Rossi's approximation B): t_max = ln(E/Ec) + const, i.e. slope 1 */
    CHECK_MSG(b > 0.7 && b < 1.3, "slope %.2f X0 per unit ln E", b);
    CHECK_MSG(worst < 0.35, "t_max is not linear in ln E: residual %.2f X0", worst);
}

static void test_mip_peak(void) {
    cg_sim *s = make("ild", "photon", 20, 0, 4000);
    const cg_geometry *g = &cg_sim_info(s)->geom;
    int64_t n = 100;
    float *x = malloc((size_t)(n * g->ncells) * sizeof(float));
    cg_sim_run(s, 0, n, x, NULL);
    /* 0.02 MeV bins from 0.1 to 1.0 MeV */
    int64_t h[45] = {0}, below = 0;
    for (int64_t i = 0; i < n * g->ncells; i++) {
        if (x[i] == 0) continue;
        if (x[i] < 0.1f) below++;
        int b = (int)((x[i] - 0.1f) / 0.02f);
        if (x[i] >= 0.1f && b < 45) h[b]++;
    }
    int peak = 0;
    for (int b = 0; b < 45; b++)
        if (h[b] > h[peak]) peak = b;
    double e_peak = 0.1 + 0.02 * (peak + 0.5);
    int valley = (int)((0.32 - 0.1) / 0.02), first = 0;
    printf("     cell spectrum: peak at %.2f MeV (%lld cells), %lld at 0.11 MeV, %lld at 0.33 MeV\n", e_peak,
           (long long)h[peak], (long long)h[first], (long long)h[valley]);
    CHECK_MSG(e_peak > 0.15 && e_peak < 0.26, "MIP peak at %.2f MeV (MIP = %.2f MeV)", e_peak, (double)g->mip_mev);
    CHECK(h[peak] > 3 * h[first]);  /* it rises from the threshold ... */
    CHECK(h[peak] > 2 * h[valley]); /* ... and falls before 2 MIPs */
    CHECK(below == 0);               /* the 0.5 MIP threshold */
    free(x);
    cg_sim_free(s);
}

/* The tilt: on ild-wide at θ = 45° the energy centroid moves along y by cot θ per mm of
 * depth; at 90° it does not move. */
static void test_tilt(void) {
    for (int k = 0; k < 2; k++) {
        double theta = k ? 45 : 90;
        cg_sim *s = make("ild-wide", "photon", 50, theta, 5000 + k);
        const cg_geometry *g = &cg_sim_info(s)->geom;
        int64_t n = 40;
        float *x = malloc((size_t)(n * g->ncells) * sizeof(float));
        cg_sim_run(s, 0, n, x, NULL);
        double z[30], y[30], a, b;
        int m = 0;
        for (int l = 4; l < 20; l++, m++) {
            double sw = 0, sy = 0;
            const cg_layer *L = &g->layer[l];
            for (int64_t e = 0; e < n; e++)
                for (int r = 0; r < L->rows; r++)
                    for (int c = 0; c < L->cols; c++) {
                        double v = x[e * g->ncells + g->layer_offset[l] + r * L->cols + c];
                        float cx, cy;
                        cg_geometry_cell_xy(g, l, r, c, &cx, &cy);
                        sw += v;
                        sy += v * cy;
                    }
            z[m] = L->z_mm;
            y[m] = sy / sw;
        }
        fit_line(z, y, m, &a, &b);
        double want = 1 / tan(theta * M_PI / 180);
        printf("     theta %g: centroid moves %.3f mm/mm (cot theta = %.3f)\n", theta, b, want);
        CHECK_NEAR(b, want, 0.06);
        free(x);
        cg_sim_free(s);
    }
}

static void test_photon_starts_later(void) {
    cg_sim *sp = make("ild", "photon", 30, 0, 6000), *se = make("ild", "electron", 30, 0, 6001);
    summary p = run(sp, 400), e = run(se, 400);
    printf("     centre of gravity at 30 GeV: photon %.2f X0, electron %.2f X0\n", p.tcog, e.tcog);
    /* a photon converts after 9/7 X0 on average */
    CHECK_MSG(p.tcog - e.tcog > 0.8 && p.tcog - e.tcog < 1.8, "difference %.2f X0", p.tcog - e.tcog);
    CHECK_NEAR(p.mean / e.mean, 1.0, 0.03);
    cg_sim_free(sp);
    cg_sim_free(se);
}

static void test_lhcb(void) {
    double per[2];
    for (int k = 0; k < 2; k++) {
        cg_sim *s = make("lhcb", "electron", k ? 80 : 20, 0, 7000 + k);
        const cg_cvox_info *info = cg_sim_info(s);
        CHECK(info->geom.nlayers == 1 && info->geom.layer[0].rows == 30 && info->geom.layer[0].cols == 30);
        CHECK(info->ncond == 5);
        CHECK(cg_cvox_cond_index(info, "px") == 0 && cg_cvox_cond_index(info, "pz") == 2);
        CHECK(cg_cvox_cond_index(info, "x0") == 3 && cg_cvox_cond_index(info, "y0") == 4);
        int64_t n = 100;
        float *x = malloc((size_t)(n * 900) * sizeof(float)), cond[500];
        cg_sim_run(s, 0, n, x, cond);
        double sum = 0;
        for (int64_t e = 0; e < n; e++) {
            double p = sqrt(cond[5 * e] * cond[5 * e] + cond[5 * e + 1] * cond[5 * e + 1] + cond[5 * e + 2] * cond[5 * e + 2]);
            CHECK_NEAR(p, k ? 80 : 20, 1e-3 * p);
            CHECK(fabs(cond[5 * e + 3]) <= 10 && fabs(cond[5 * e + 4]) <= 10);
            for (int i = 0; i < 900; i++) sum += x[e * 900 + i];
        }
        per[k] = sum / n / (k ? 80 : 20);
        free(x);
        cg_sim_free(s);
    }
    printf("     lhcb: %.1f MeV/GeV at 20 GeV, %.1f at 80 GeV\n", per[0], per[1]);
    CHECK_NEAR(per[1] / per[0], 1.0, 0.03);
}

static void test_deterministic(void) {
    cg_sim_opts o;
    cg_sim_defaults(&o);
    o.theta[0] = 40, o.theta[1] = 90;
    o.seed = test_seed();
    cg_sim *s = cg_sim_new(&o);
    const cg_cvox_info *info = cg_sim_info(s);
    CHECK(info->ncond == 2 && strcmp(info->cond_name[1], "theta") == 0 && strcmp(info->cond_unit[1], "deg") == 0);
    int64_t n = 24, nc = info->geom.ncells;
    float *a = malloc((size_t)(n * nc) * 4), *b = malloc((size_t)(n * nc) * 4), ca[48], cb[48];
    cg_threads_set(1);
    cg_sim_run(s, 0, n, a, ca);
    cg_threads_set(2);
    cg_sim_run(s, 0, n, b, cb);
    cg_threads_set(0);
    CHECK(memcmp(a, b, (size_t)(n * nc) * 4) == 0 && memcmp(ca, cb, sizeof ca) == 0);
    /* event i does not depend on its neighbours */
    cg_sim_run(s, 7, 5, b, cb);
    CHECK(memcmp(a + 7 * nc, b, (size_t)(5 * nc) * 4) == 0 && memcmp(ca + 14, cb, 10 * 4) == 0);
    for (int64_t e = 0; e < n; e++) {
        CHECK(ca[2 * e] >= 10 && ca[2 * e] <= 100 && ca[2 * e + 1] >= 40 && ca[2 * e + 1] <= 90);
    }
    /* another seed, other showers */
    o.seed++;
    cg_sim *s2 = cg_sim_new(&o);
    cg_sim_run(s2, 0, 1, b, cb);
    CHECK(memcmp(a, b, (size_t)nc * 4) != 0);
    cg_sim_free(s2);
    free(a);
    free(b);
    cg_sim_free(s);
}

static void test_bad_options(void) {
    cg_sim_opts o;
    cg_sim_defaults(&o);
    o.geometry = "atlas";
    CHECK(cg_sim_new(&o) == NULL && strstr(cg_last_error(), "atlas"));
    cg_sim_defaults(&o);
    o.energy[0] = 0.01;
    CHECK(cg_sim_new(&o) == NULL && strstr(cg_last_error(), "energy"));
    cg_sim_defaults(&o);
    o.theta[0] = 0, o.theta[1] = 90;
    CHECK(cg_sim_new(&o) == NULL && strstr(cg_last_error(), "theta"));
    cg_sim_defaults(&o);
    o.particle = "muon";
    CHECK(cg_sim_new(&o) == NULL && strstr(cg_last_error(), "muon"));
    cg_sim_defaults(&o);
    o.geometry = "custom";
    o.grid[0] = 0, o.grid[1] = 10, o.grid[2] = 10;
    CHECK(cg_sim_new(&o) == NULL && strstr(cg_last_error(), "custom"));
    o.grid[0] = 12;
    cg_sim *s = cg_sim_new(&o);
    CHECK(s && cg_sim_info(s)->geom.ncells == 1200);
    cg_sim_free(s);
}

int main(void) {
    test_seed();
    TEST_RUN(test_deterministic);
    TEST_RUN(test_linearity_and_resolution);
    TEST_RUN(test_shower_max_grows_with_ln_e);
    TEST_RUN(test_mip_peak);
    TEST_RUN(test_tilt);
    TEST_RUN(test_photon_starts_later);
    TEST_RUN(test_lhcb);
    TEST_RUN(test_bad_options);
    return test_summary();
}
