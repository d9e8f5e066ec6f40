/*
 * io/simulate.c — the parametrised shower simulator (physics and conventions in
 * io/simulate.h).
 *
 * One event is simulated by one thread from its own Philox stream; cg_sim_run spreads
 * events over the pool. Per event: draw the kinematics, the shower's longitudinal
 * parameters (T, α), then for each sensitive layer the visible energy from the gamma
 * profile, the number of spots, and each spot's position (radial profile around the tilted
 * axis) and Landau-like energy; finally noise and threshold on the cells that were hit.
 *
 * The GFlash numbers below are the published fits for homogeneous media (Grindhammer &
 * Peters, hep-ex/0001020, eqs. for T_hom, α_hom, their fluctuations and correlation, and the
 * radial Rc, Rt, p); E is in GeV there, y = E/Ec. The detector constants (sampling
 * fractions, Molière radii, pitches) are round effective values chosen so that the showers
 * look like the published samples (ILD: visible energy ≈ 2% of E, MIP 0.2 MeV), not fits.
 */
#include "io/simulate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/threads.h"

#define MAX_SAMP 128
#define W_X0_MM 3.5 /* radiation length of tungsten */

/* ------------------------------------------------------------ random numbers ---- */

/* A buffered Philox stream: every word of each block is used. */
typedef struct {
    uint64_t seed, ctr;
    uint32_t w[4];
    int k;
    int have_normal;
    float spare;
} stream;

static stream stream_for_event(uint64_t seed, int64_t event) {
    stream s = {seed, (uint64_t)event << 32, {0}, 4, 0, 0};
    return s;
}

static inline uint32_t next32(stream *s) {
    if (s->k == 4) {
        uint32_t ctr[4] = {(uint32_t)s->ctr, (uint32_t)(s->ctr >> 32), 0, 0};
        uint32_t key[2] = {(uint32_t)s->seed, (uint32_t)(s->seed >> 32)};
        cg_philox4x32_10(ctr, key, s->w);
        s->ctr++;
        s->k = 0;
    }
    return s->w[s->k++];
}

/* uniform in (0, 1): never exactly 0 or 1, so logs and ratios are safe */
static inline double unif(stream *s) { return ((double)next32(s) + 0.5) * (1.0 / 4294967296.0); }
static inline float uniff(stream *s) { return ((float)(next32(s) >> 8) + 0.5f) * (1.0f / 16777216.0f); }

static inline float normalf(stream *s) {
    if (s->have_normal) {
        s->have_normal = 0;
        return s->spare;
    }
    float r = sqrtf(-2.0f * logf(uniff(s))), a = 6.2831853f * uniff(s);
    s->spare = r * sinf(a);
    s->have_normal = 1;
    return r * cosf(a);
}

/* Gamma(k, 1) by Marsaglia & Tsang (2000); k < 1 through Gamma(k + 1)·U^(1/k). */
static double gamma_draw(stream *s, double k) {
    if (k < 1.0) return gamma_draw(s, k + 1.0) * pow(unif(s), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = normalf(s), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = unif(s);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

/* Poisson(mu): multiplication method for small means, rounded normal above 30 (its error
 * there is far below the sampling fluctuations this feeds). */
static int64_t poisson_draw(stream *s, double mu) {
    if (mu <= 0) return 0;
    if (mu < 30.0) {
        double L = exp(-mu), p = 1.0;
        int64_t k = -1;
        do {
            k++;
            p *= unif(s);
        } while (p > L);
        return k;
    }
    double n = floor(mu + sqrt(mu) * normalf(s) + 0.5);
    return n < 0 ? 0 : (int64_t)n;
}

/* Regularised lower incomplete gamma P(a, x), given lga = ln Γ(a): a series below a + 1, a
 * continued fraction (modified Lentz) above. */
static double gamma_p(double a, double x, double lga) {
    if (x <= 0) return 0;
    double pre = exp(-x + a * log(x) - lga);
    if (x < a + 1.0) {
        double sum = 1.0 / a, del = sum, ap = a;
        for (int n = 0; n < 500; n++) {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-12) break;
        }
        return fmin(1.0, sum * pre);
    }
    double b = x + 1.0 - a, c = 1.0 / 1e-300, d = 1.0 / b, h = d;
    for (int i = 1; i < 500; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-12) break;
    }
    return fmax(0.0, 1.0 - pre * h);
}

/* ------------------------------------------------------------- the detector ---- */

enum { Q_ENERGY, Q_THETA, Q_PHI, Q_X0, Q_Y0, Q_PX, Q_PY, Q_PZ, Q_NUM };
static const char *Q_NAME[Q_NUM] = {"energy", "theta", "phi", "x0", "y0", "px", "py", "pz"};
static const char *Q_UNIT[Q_NUM] = {"GeV", "deg", "deg", "mm", "mm", "GeV", "GeV", "GeV"};

struct cg_sim {
    cg_cvox_info info;
    cg_sim_opts o;
    int photon, lhcb;
    int auto_entry;
    int qcol[Q_NUM];              /* column of each quantity in cond, or -1 */
    /* sampling layers */
    int nsamp;
    double t_front[MAX_SAMP];     /* X0 of absorber before layer l's absorber */
    double t_sensor[MAX_SAMP];    /* X0 of absorber up to layer l's sensor */
    double s_frac[MAX_SAMP];      /* sampling fraction: visible / deposited in the layer */
    double z_sensor[MAX_SAMP];    /* depth of the sensor, mm */
    int out_layer[MAX_SAMP];      /* output layer it is read into */
    /* material and readout */
    double Z, Ec_mev, rm_mm;      /* effective atomic number, critical energy, Molière radius */
    double mip_mev, landau_w;     /* MIP most probable value; relative Landau width */
    double fano;                  /* variance / Poisson variance of the spot counts */
    double mean_dep;              /* mean spot energy in MIPs */
    double z_ref;                 /* auto entry: the axis crosses (0,0) at this depth, mm */
    double calib[CG_GEOM_MAX_LAYERS];
};

void cg_sim_defaults(cg_sim_opts *o) {
    memset(o, 0, sizeof *o);
    o->geometry = "ild";
    o->particle = "photon";
    o->cell_mm = 5.0;
    o->layer_x0 = 0.6;
    o->energy[0] = 10;
    o->energy[1] = 100;
    o->theta[0] = o->theta[1] = NAN;
    o->phi[0] = o->phi[1] = NAN;
    o->x0[0] = o->x0[1] = o->y0[0] = o->y0[1] = NAN;
    o->threshold_mip = 0.5;
    o->noise_mip = 0.1;
    o->seed = 1;
}

/* Sampling layers of tungsten/silicon with the given X0 per layer and pitch (mm). */
static void add_layers(cg_sim *s, int n, double x0, double pitch, double sfrac, int out0, int out_step) {
    for (int i = 0; i < n; i++) {
        int l = s->nsamp++;
        double t0 = l ? s->t_sensor[l - 1] : 0, z0 = l ? s->z_sensor[l - 1] : 0;
        s->t_front[l] = t0;
        s->t_sensor[l] = t0 + x0;
        s->z_sensor[l] = z0 + pitch;
        s->s_frac[l] = sfrac;
        s->out_layer[l] = out0 + i * out_step;
    }
}

/* Output geometry layer depths from the sampling layers read into them. */
static void set_layer_depths(cg_sim *s) {
    cg_geometry *g = &s->info.geom;
    for (int o = 0; o < g->nlayers; o++) {
        double lo = 1e30, hi = -1e30;
        for (int l = 0; l < s->nsamp; l++)
            if (s->out_layer[l] == o) {
                double z0 = l ? s->z_sensor[l - 1] : 0;
                lo = fmin(lo, z0);
                hi = fmax(hi, s->z_sensor[l]);
            }
        g->layer[o].z_mm = (float)(0.5 * (lo + hi));
        g->layer[o].depth_mm = (float)(hi - lo);
    }
}

static cg_status build_detector(cg_sim *s) {
    const char *name = s->o.geometry;
    cg_geometry *g = &s->info.geom;
    /* tungsten / silicon: ILD-like defaults */
    s->Z = 74;
    s->Ec_mev = 8.0;
    s->mip_mev = 0.2;
    s->landau_w = 0.1;
    s->rm_mm = 12.0;
    double a_target = 0.15; /* sampling term; longitudinal fluctuations add to it */
    cg_status st;
    if (strcmp(name, "ild") == 0 || strcmp(name, "ild-wide") == 0) {
        int rows = strcmp(name, "ild") == 0 ? 30 : 60;
        st = cg_geometry_grid(g, name, 30, rows, 30, 5.0f, 5.0f, 4.0f);
        add_layers(s, 20, 0.6, 4.0, 0.024, 0, 1);   /* 2.1 mm W */
        add_layers(s, 10, 1.2, 6.1, 0.012, 20, 1);  /* 4.2 mm W: half the sampling fraction */
    } else if (strcmp(name, "clic") == 0) {
        st = cg_geometry_grid(g, name, 25, 25, 25, 5.1f, 5.1f, 5.1f);
        add_layers(s, 25, 0.92, 5.1, 0.02, 0, 1);
    } else if (strcmp(name, "lhcb") == 0) {
        /* Shashlik: 2 mm Pb (0.357 X0) + 4 mm scintillator, 66 layers, read as one image */
        st = cg_geometry_grid(g, name, 1, 30, 30, 20.2f, 20.2f, 400.0f);
        s->Z = 82;
        s->Ec_mev = 7.4;
        s->rm_mm = 35.0;
        s->mip_mev = 0.8;
        a_target = 0.09;
        add_layers(s, 66, 0.357, 6.0, 0.12, 0, 0);
        s->lhcb = 1;
    } else if (strcmp(name, "custom") == 0) {
        int L = s->o.grid[0], R = s->o.grid[1], C = s->o.grid[2];
        if (L < 1 || R < 1 || C < 1 || L > MAX_SAMP || R > 4096 || C > 4096)
            return cg_set_error(CG_ERR_INVALID, "custom geometry: grid %d x %d x %d (need 1..%d layers, 1..4096 rows "
                                "and cols)", L, R, C, MAX_SAMP);
        if (!(s->o.cell_mm > 0.1 && s->o.cell_mm < 1000) || !(s->o.layer_x0 > 0.05 && s->o.layer_x0 <= 5))
            return cg_set_error(CG_ERR_INVALID, "custom geometry: cell %g mm, %g X0 per layer (need 0.1..1000 mm, "
                                "0.05..5 X0)", s->o.cell_mm, s->o.layer_x0);
        double pitch = s->o.layer_x0 * W_X0_MM + 1.9;
        st = cg_geometry_grid(g, "custom", L, R, C, (float)s->o.cell_mm, (float)s->o.cell_mm, (float)pitch);
        add_layers(s, L, s->o.layer_x0, pitch, 0.024 * 0.6 / s->o.layer_x0, 0, 1);
    } else {
        return cg_set_error(CG_ERR_INVALID, "unknown geometry '%s' (ild, ild-wide, clic, lhcb, custom)", name);
    }
    if (st) return st;
    set_layer_depths(s);
    g->mip_mev = (float)s->mip_mev;
    s->mean_dep = 1.0 + s->landau_w * 1.2703628; /* mean of a Moyal variate: γ + ln 2 */
    /* sampling term of Poisson spots of Moyal energy: a² = (F + cv²)/λ per GeV; solve for F */
    double lam_gev = 1000.0 * s->s_frac[0] / (s->mip_mev * s->mean_dep);
    double sd = s->landau_w * 2.2214415, cv2 = sd * sd / (s->mean_dep * s->mean_dep); /* Moyal σ = π/√2 */
    s->fano = fmax(1.0, a_target * a_target * lam_gev - cv2);
    /* the auto entry point centres the shower at 7 X0 (the maximum of a ~30 GeV shower) */
    s->z_ref = s->z_sensor[s->nsamp - 1] * 0.5;
    for (int l = 0; l < s->nsamp; l++)
        if (s->t_sensor[l] >= 7.0) {
            double f = (7.0 - s->t_front[l]) / (s->t_sensor[l] - s->t_front[l]);
            s->z_ref = (l ? s->z_sensor[l - 1] : 0) + f * (s->z_sensor[l] - (l ? s->z_sensor[l - 1] : 0));
            break;
        }
    for (int o = 0; o < g->nlayers; o++) s->calib[o] = 1;
    if (!s->lhcb)
        for (int l = 0; l < s->nsamp; l++) s->calib[s->out_layer[l]] = s->s_frac[0] / s->s_frac[l];
    return CG_OK;
}

static int range_set(const double *r) { return !isnan(r[0]) || !isnan(r[1]); }

static cg_status check_range(const char *what, double *r, double lo, double hi) {
    if (isnan(r[0]) != isnan(r[1]))
        return cg_set_error(CG_ERR_INVALID, "--%s: give both ends", what);
    if (!(r[0] >= lo && r[1] <= hi && r[0] <= r[1]))
        return cg_set_error(CG_ERR_INVALID, "--%s %g:%g: need %g <= A <= B <= %g", what, r[0], r[1], lo, hi);
    return CG_OK;
}

cg_sim *cg_sim_new(const cg_sim_opts *opts) {
    cg_sim *s = cg_xcalloc(1, sizeof *s);
    s->o = *opts;
    if (!s->o.geometry) s->o.geometry = "ild";
    if (!s->o.particle) s->o.particle = "photon";
    cg_status st = CG_OK;
    if (strcmp(s->o.particle, "photon") == 0 || strcmp(s->o.particle, "gamma") == 0) s->photon = 1;
    else if (strcmp(s->o.particle, "electron") != 0)
        st = cg_set_error(CG_ERR_INVALID, "unknown particle '%s' (photon or electron)", s->o.particle);
    if (!st) st = build_detector(s);
    int wide = strcmp(s->o.geometry, "ild-wide") == 0;
    if (!st && isnan(s->o.theta[0]) && isnan(s->o.theta[1])) {
        s->o.theta[0] = wide ? 30 : 90;
        s->o.theta[1] = 90;
    }
    if (!st && isnan(s->o.phi[0]) && isnan(s->o.phi[1])) s->o.phi[0] = s->o.phi[1] = 90;
    if (!st) st = check_range("energy", s->o.energy, 0.5, 10000);
    if (!st) st = check_range("theta", s->o.theta, 10, 170);
    if (!st) st = check_range("phi", s->o.phi, 10, 170);
    if (!st && range_set(s->o.x0)) st = check_range("x0", s->o.x0, -1e4, 1e4);
    if (!st && range_set(s->o.y0)) st = check_range("y0", s->o.y0, -1e4, 1e4);
    if (!st && !(s->o.threshold_mip >= 0 && s->o.threshold_mip < 100 && s->o.noise_mip >= 0 && s->o.noise_mip < 10))
        st = cg_set_error(CG_ERR_INVALID, "threshold %g MIP, noise %g MIP: need 0..100 and 0..10", s->o.threshold_mip,
                          s->o.noise_mip);
    if (st) {
        free(s);
        return NULL;
    }
    if (s->lhcb) { /* entry point within ±10 mm of the centre unless given */
        if (!range_set(s->o.x0)) s->o.x0[0] = -10, s->o.x0[1] = 10;
        if (!range_set(s->o.y0)) s->o.y0[0] = -10, s->o.y0[1] = 10;
    }
    s->auto_entry = !range_set(s->o.x0) && !range_set(s->o.y0);
    if (!s->auto_entry) { /* one given: the other defaults to 0 */
        if (!range_set(s->o.x0)) s->o.x0[0] = s->o.x0[1] = 0;
        if (!range_set(s->o.y0)) s->o.y0[0] = s->o.y0[1] = 0;
    }
    /* which quantities are stored */
    int stored[Q_NUM] = {0};
    if (s->lhcb) {
        stored[Q_PX] = stored[Q_PY] = stored[Q_PZ] = stored[Q_X0] = stored[Q_Y0] = 1;
    } else {
        stored[Q_ENERGY] = 1;
        stored[Q_THETA] = s->o.theta[0] != s->o.theta[1];
        stored[Q_PHI] = s->o.phi[0] != s->o.phi[1];
        stored[Q_X0] = !s->auto_entry && s->o.x0[0] != s->o.x0[1];
        stored[Q_Y0] = !s->auto_entry && s->o.y0[0] != s->o.y0[1];
    }
    static const int order[Q_NUM] = {Q_ENERGY, Q_THETA, Q_PHI, Q_PX, Q_PY, Q_PZ, Q_X0, Q_Y0};
    for (int q = 0; q < Q_NUM; q++) s->qcol[q] = -1;
    for (int i = 0; i < Q_NUM; i++) {
        int q = order[i];
        if (!stored[q]) continue;
        s->qcol[q] = s->info.ncond;
        snprintf(s->info.cond_name[s->info.ncond], CG_CVOX_NAME_LEN, "%s", Q_NAME[q]);
        snprintf(s->info.cond_unit[s->info.ncond], CG_CVOX_NAME_LEN, "%s", Q_UNIT[q]);
        s->info.ncond++;
    }
    snprintf(s->info.particle, sizeof s->info.particle, "%s", s->photon ? "photon" : "electron");
    char src[512];
    snprintf(src, sizeof src,
             "calograd simulate --geometry %s --particle %s --energy %g:%g%s --theta %g:%g --phi %g:%g --seed %llu",
             s->o.geometry, s->info.particle, s->o.energy[0], s->o.energy[1], s->o.log_energy ? " --log-energy" : "",
             s->o.theta[0], s->o.theta[1], s->o.phi[0], s->o.phi[1], (unsigned long long)s->o.seed);
    memcpy(s->info.source, src, sizeof s->info.source - 1); /* truncated if it must be */
    return s;
}

void cg_sim_free(cg_sim *s) { free(s); }
const cg_cvox_info *cg_sim_info(const cg_sim *s) { return &s->info; }

int cg_sim_layers(const cg_sim *s, double *depth_x0, double *calib) {
    const cg_geometry *g = &s->info.geom;
    for (int o = 0; o < g->nlayers; o++) {
        double t = 0;
        for (int l = 0; l < s->nsamp; l++)
            if (s->out_layer[l] == o) t = s->t_sensor[l];
        if (depth_x0) depth_x0[o] = t;
        if (calib) calib[o] = s->calib[o];
    }
    return g->nlayers;
}

/* ---------------------------------------------------------------- one event ---- */

static double draw_range(stream *st, const double *r) { return r[0] + (r[1] - r[0]) * unif(st); }

static void sim_event(const cg_sim *s, int64_t index, float *dense, float *cond) {
    stream st = stream_for_event(s->o.seed, index);
    const cg_geometry *g = &s->info.geom;
    double q[Q_NUM] = {0};
    /* kinematics: a fixed order of draws, whatever is stored */
    double E = s->o.log_energy ? exp(log(s->o.energy[0]) + (log(s->o.energy[1]) - log(s->o.energy[0])) * unif(&st))
                               : draw_range(&st, s->o.energy);
    double th = draw_range(&st, s->o.theta) * (M_PI / 180), ph = draw_range(&st, s->o.phi) * (M_PI / 180);
    double ex = s->auto_entry ? 0 : draw_range(&st, s->o.x0), ey = s->auto_entry ? 0 : draw_range(&st, s->o.y0);
    double u[3];
    if (s->lhcb) { /* slopes within the LHCb acceptance (250 mrad horizontal, 200 vertical) */
        double tx = -0.25 + 0.5 * unif(&st), ty = -0.2 + 0.4 * unif(&st), nrm = sqrt(1 + tx * tx + ty * ty);
        u[0] = tx / nrm, u[1] = ty / nrm, u[2] = 1 / nrm;
        q[Q_PX] = E * u[0], q[Q_PY] = E * u[1], q[Q_PZ] = E * u[2];
    } else { /* polar angle from the y axis (the beam), azimuth around it; 90°/90° = +z */
        u[0] = sin(th) * cos(ph), u[1] = cos(th), u[2] = sin(th) * sin(ph);
    }
    if (s->auto_entry) { /* through the centre of the middle cell at depth z_ref */
        const cg_layer *L0 = &g->layer[0];
        ex = (L0->cols % 2 ? 0.0 : 0.5 * L0->cell_w) - s->z_ref * u[0] / u[2];
        ey = (L0->rows % 2 ? 0.0 : 0.5 * L0->cell_h) - s->z_ref * u[1] / u[2];
    }
    q[Q_ENERGY] = E, q[Q_THETA] = th * (180 / M_PI), q[Q_PHI] = ph * (180 / M_PI), q[Q_X0] = ex, q[Q_Y0] = ey;
    if (cond)
        for (int k = 0; k < Q_NUM; k++)
            if (s->qcol[k] >= 0) cond[s->qcol[k]] = (float)q[k];
    if (!dense) return;
    memset(dense, 0, (size_t)g->ncells * sizeof(float));

    /* longitudinal: GFlash's correlated log-normal fluctuations of T and α */
    double lny = log(E * 1000.0 / s->Ec_mev), lnE = log(E);
    double mT = log(fmax(lny - 0.812, 0.5)), sT = 1.0 / (-1.4 + 1.26 * lny);
    double mA = log(0.81 + (0.458 + 2.26 / s->Z) * lny), sA = 1.0 / (-0.58 + 0.86 * lny);
    double rho = fmin(0.705 + 0.023 * lny, 0.99);
    double z1 = normalf(&st), z2 = normalf(&st);
    double T = exp(mT + sT * z1), alpha = fmax(exp(mA + sA * (rho * z1 + sqrt(1 - rho * rho) * z2)), 1.05);
    double beta = (alpha - 1.0) / T, lga;
    lga = lgamma_r(alpha, &(int){0});
    double tconv = s->photon ? -(9.0 / 7.0) * log(unif(&st)) : 0.0;
    /* radial parameters (GFlash, E in GeV) */
    double rc1 = 0.0251 + 0.00319 * lnE, rc2 = 0.1162 - 0.000381 * s->Z;
    double k1 = 0.659 - 0.00309 * s->Z, k2 = 0.645, k3 = -2.59, k4 = 0.3585 + 0.0421 * lnE;
    double p1 = 2.632 - 0.00094 * s->Z, p2 = 0.401 + 0.00187 * s->Z, p3 = 1.313 - 0.0686 * lnE;
    /* a basis (e1, e2) of the plane across the axis */
    double a[3] = {fabs(u[0]) < 0.9 ? 1.0 : 0.0, fabs(u[0]) < 0.9 ? 0.0 : 1.0, 0.0};
    double au = a[0] * u[0] + a[1] * u[1];
    double e1[3] = {a[0] - au * u[0], a[1] - au * u[1], -au * u[2]};
    double n1 = sqrt(e1[0] * e1[0] + e1[1] * e1[1] + e1[2] * e1[2]);
    e1[0] /= n1, e1[1] /= n1, e1[2] /= n1;
    double e2[3] = {u[1] * e1[2] - u[2] * e1[1], u[2] * e1[0] - u[0] * e1[2], u[0] * e1[1] - u[1] * e1[0]};
    /* a displacement r(cos ψ e1 + sin ψ e2) across the axis, followed along the axis back to
     * the sensor plane, moves the hit by r·(cos ψ·P1 + sin ψ·P2) in (x, y) */
    const float P1x = (float)(e1[0] - e1[2] * u[0] / u[2]), P1y = (float)(e1[1] - e1[2] * u[1] / u[2]);
    const float P2x = (float)(e2[0] - e2[2] * u[0] / u[2]), P2y = (float)(e2[1] - e2[2] * u[1] / u[2]);
    const double inv_uz = 1.0 / u[2], E_mev = E * 1000.0;
    const float mip = (float)s->mip_mev, lw = (float)s->landau_w;

    double P_prev = gamma_p(alpha, beta * fmax(s->t_front[0] * inv_uz - tconv, 0.0), lga);
    for (int l = 0; l < s->nsamp; l++) {
        double tb = s->t_sensor[l] * inv_uz - tconv;
        double P_b = gamma_p(alpha, beta * fmax(tb, 0.0), lga);
        double frac = P_b - P_prev;
        P_prev = P_b;
        double lam = E_mev * frac * s->s_frac[l] / (s->mip_mev * s->mean_dep);
        if (!(lam > 1e-9)) continue;
        if (s->fano > 1.0) { /* gamma-distributed mean: variance F·λ instead of λ */
            double k = lam / (s->fano - 1.0);
            lam *= gamma_draw(&st, k) / k;
        }
        int64_t nspots = poisson_draw(&st, lam);
        double tau = fmax(tb, 0.0) / T;
        float Rc = (float)((rc1 + rc2 * tau) * s->rm_mm);
        float Rt = (float)(k1 * (exp(k3 * (tau - k2)) + exp(k4 * (tau - k2))) * s->rm_mm);
        double pe = (p2 - tau) / p3;
        float pcore = (float)fmin(1.0, fmax(0.0, p1 * exp(pe - exp(pe))));
        const cg_layer *L = &g->layer[s->out_layer[l]];
        float *plane = dense + g->layer_offset[s->out_layer[l]];
        double zs = s->z_sensor[l];
        float ax = (float)(ex + u[0] * zs * inv_uz), ay = (float)(ey + u[1] * zs * inv_uz);
        float inv_w = 1.0f / L->cell_w, inv_h = 1.0f / L->cell_h;
        float half_c = 0.5f * (float)L->cols, half_r = 0.5f * (float)L->rows;
        for (int64_t j = 0; j < nspots; j++) {
            float R = uniff(&st) < pcore ? Rc : Rt;
            float v = uniff(&st);
            float r = R * sqrtf(v / (1.0f - v));
            float psi = 6.2831853f * uniff(&st), c = cosf(psi), sn = sinf(psi);
            float x = ax + r * (c * P1x + sn * P2x), y = ay + r * (c * P1y + sn * P2y);
            float fc = x * inv_w + half_c, fr = y * inv_h + half_r;
            float zn = normalf(&st);
            if (!(fc >= 0 && fc < (float)L->cols && fr >= 0 && fr < (float)L->rows)) continue;
            /* Moyal: −ln(z²) for a standard normal z, mode 0 */
            float dep = mip * (1.0f + lw * -logf(fmaxf(zn * zn, 1e-30f)));
            plane[(int)fr * L->cols + (int)fc] += dep;
        }
    }
    /* readout: noise on the cells that were hit, then the threshold */
    const float noise = (float)(s->o.noise_mip * s->mip_mev), thr = (float)(s->o.threshold_mip * s->mip_mev);
    for (int64_t i = 0; i < g->ncells; i++) {
        if (dense[i] == 0.0f) continue;
        float v = dense[i] + noise * normalf(&st);
        dense[i] = v < thr ? 0.0f : v;
    }
}

typedef struct {
    const cg_sim *s;
    int64_t first;
    float *dense, *cond;
} run_ctx;

static void run_range(void *vctx, int64_t b, int64_t e, int worker) {
    const run_ctx *c = vctx;
    const int64_t nc = c->s->info.geom.ncells;
    const int ncond = c->s->info.ncond;
    for (int64_t i = b; i < e; i++)
        sim_event(c->s, c->first + i, c->dense ? c->dense + i * nc : NULL, c->cond ? c->cond + i * ncond : NULL);
}

void cg_sim_run(const cg_sim *s, int64_t first, int64_t n, float *dense, float *cond) {
    run_ctx c = {s, first, dense, cond};
    cg_parallel_for(n, 1, run_range, &c);
}

cg_status cg_sim_write(const cg_sim *s, int64_t n, const char *path, int (*progress)(int64_t, int64_t, void *),
                       void *ctx) {
    if (n < 0) return cg_set_error(CG_ERR_INVALID, "cannot simulate %lld events", (long long)n);
    const int64_t nc = s->info.geom.ncells;
    int64_t block = (int64_t)(16u << 20) / (nc > 0 ? nc : 1); /* ~64 MB of dense floats */
    block = block < 16 ? 16 : block > 512 ? 512 : block;
    float *dense = malloc((size_t)(block * nc) * sizeof(float));
    float *cond = malloc((size_t)(block * s->info.ncond + 1) * sizeof(float));
    if (!dense || !cond) {
        free(dense);
        free(cond);
        return cg_set_error(CG_ERR_NOMEM, "out of memory for %lld simulated events of %lld cells", (long long)block,
                            (long long)nc);
    }
    cg_cvox_writer *w = cg_cvox_create(path, &s->info, 0);
    cg_status st = w ? CG_OK : cg_last_status();
    for (int64_t done = 0; !st && done < n;) {
        int64_t k = n - done < block ? n - done : block;
        cg_sim_run(s, done, k, dense, cond);
        st = cg_cvox_write(w, k, dense, cond);
        done += k;
        if (!st && progress && progress(done, n, ctx)) st = cg_set_error(CG_ERR_INVALID, "%s: interrupted", path);
    }
    if (w) {
        if (st) cg_cvox_abort(w);
        else st = cg_cvox_finish(w);
    }
    free(dense);
    free(cond);
    return st;
}
