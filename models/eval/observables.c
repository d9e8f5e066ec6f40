/*
 * models/eval/observables.c — per-shower observables (definitions in observables.h).
 *
 * All sums run in double over the float32 cells. One shower is two passes over its cells:
 * the first gathers energies, counts, first and second moments and the hottest cells; the
 * second needs the centre of gravity (asymmetry, radial distances). E1/E9/E21 then look at
 * a 5×5 window around the hottest cell of the layer of maximum energy.
 */
#include "models/eval/observables.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"

#define INF_ INFINITY

static const cg_obs_meta SCALARS[CG_OBS_NSCALAR] = {
    [CG_OBS_E_VIS] = {"e_vis", "E_vis", "MeV", CG_BINS_LINEAR, 0, INF_, 0},
    [CG_OBS_E_RATIO] = {"e_vis_over_e_inc", "E_vis / E_inc", "", CG_BINS_CC_RATIO, 0, INF_, 0},
    [CG_OBS_N_HITS] = {"n_hits", "number of hits", "", CG_BINS_INTEGER, 0, INF_, 0},
    [CG_OBS_SPARSITY] = {"sparsity", "sparsity (1 - hits/cells)", "", CG_BINS_LINEAR, 0, 1, 0},
    [CG_OBS_E_MAX] = {"e_max", "maximum cell energy", "MeV", CG_BINS_LOG, 0, INF_, 40},
    [CG_OBS_COG_X] = {"cog_x", "centre of gravity x", "mm", CG_BINS_LINEAR, -INF_, INF_, 0},
    [CG_OBS_COG_Y] = {"cog_y", "centre of gravity y", "mm", CG_BINS_LINEAR, -INF_, INF_, 0},
    [CG_OBS_COG_Z] = {"cog_z", "centre of gravity z", "mm", CG_BINS_LINEAR, -INF_, INF_, 0},
    [CG_OBS_WIDTH_X] = {"width_x", "shower width x", "mm", CG_BINS_LINEAR, 0, INF_, 0},
    [CG_OBS_WIDTH_Y] = {"width_y", "shower width y", "mm", CG_BINS_LINEAR, 0, INF_, 0},
    [CG_OBS_WIDTH_Z] = {"width_z", "shower width z", "mm", CG_BINS_LINEAR, 0, INF_, 0},
    [CG_OBS_R_MEAN] = {"r_mean", "mean radial distance", "mm", CG_BINS_LINEAR, 0, INF_, 0},
    [CG_OBS_R_WIDTH] = {"r_width", "radial width", "mm", CG_BINS_LINEAR, 0, INF_, 0},
    [CG_OBS_ASYM_X] = {"asym_x", "asymmetry x", "", CG_BINS_LINEAR, -1, 1, 0},
    [CG_OBS_ASYM_Y] = {"asym_y", "asymmetry y", "", CG_BINS_LINEAR, -1, 1, 0},
    [CG_OBS_ANGLE_X] = {"angle_x", "axis angle in x-z", "deg", CG_BINS_LINEAR, -90, 90, 0},
    [CG_OBS_ANGLE_Y] = {"angle_y", "axis angle in y-z", "deg", CG_BINS_LINEAR, -90, 90, 0},
    [CG_OBS_E1_E9] = {"e1_e9", "E1 / E9", "", CG_BINS_LINEAR, 0, 1, 0},
    [CG_OBS_E9_E21] = {"e9_e21", "E9 / E21", "", CG_BINS_LINEAR, 0, 1, 0},
};
static const cg_obs_meta LAYER = {"e_layer_", "E in layer ", "MeV", CG_BINS_LOG, 0, INF_, 40};

const cg_obs_meta *cg_obs_scalar(int i) { return i >= 0 && i < CG_OBS_NSCALAR ? &SCALARS[i] : NULL; }
const cg_obs_meta *cg_obs_layer_meta(void) { return &LAYER; }

struct cg_obs_ctx {
    cg_geometry g;
    double thr, to_mev;
    float *cx, *cy;          /* (ncells) cell centres, mm */
    float *cr;               /* (ncells) polar cells: r_mid; Cartesian: unused */
    uint8_t xy[CG_GEOM_MAX_LAYERS];    /* layer resolves x and y */
    uint8_t polar[CG_GEOM_MAX_LAYERS];
    double z[CG_GEOM_MAX_LAYERS];
    int nrad, rad_uniform;
    double rad_pitch;
    double rad_edges[CG_GEOM_MAX_RBINS + 1];
};

const cg_geometry *cg_obs_geometry(const cg_obs_ctx *c) { return &c->g; }
double cg_obs_threshold_mev(const cg_obs_ctx *c) { return c->thr * c->to_mev; }
int cg_obs_nvalues(const cg_obs_ctx *c) { return CG_OBS_NSCALAR + c->g.nlayers; }
int cg_obs_nradial(const cg_obs_ctx *c) { return c->nrad; }
const double *cg_obs_radial_edges(const cg_obs_ctx *c) { return c->rad_edges; }

/* The radial binning rule of observables.h. */
static void radial_bins(cg_obs_ctx *c) {
    const cg_geometry *g = &c->g;
    int all_polar = 1, best = -1;
    double pitch = INFINITY, rmax = 0;
    for (int l = 0; l < g->nlayers; l++) {
        const cg_layer *L = &g->layer[l];
        if (L->binning == CG_BIN_POLAR) {
            if (best < 0 || L->cols > g->layer[best].cols) best = l;
            rmax = fmax(rmax, L->r_edges[L->cols]);
        } else {
            all_polar = 0;
            pitch = fmin(pitch, fmin(L->cell_w, L->cell_h));
            rmax = fmax(rmax, 0.5 * hypot((double)L->cols * L->cell_w, (double)L->rows * L->cell_h));
        }
    }
    if (all_polar) {
        const cg_layer *L = &g->layer[best];
        c->nrad = L->cols;
        c->rad_uniform = 0;
        for (int k = 0; k <= L->cols; k++) c->rad_edges[k] = L->r_edges[k];
        return;
    }
    int n = (int)ceil(rmax / pitch - 1e-9);
    if (n < 1) n = 1;
    if (n > CG_GEOM_MAX_RBINS) {
        n = CG_GEOM_MAX_RBINS;
        pitch = rmax / n;
    }
    c->nrad = n;
    c->rad_uniform = 1;
    c->rad_pitch = pitch;
    for (int k = 0; k <= n; k++) c->rad_edges[k] = k * pitch;
}

cg_obs_ctx *cg_obs_ctx_new(const cg_geometry *g, double threshold) {
    CG_ASSERT(g && g->ncells > 0 && threshold >= 0);
    cg_obs_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        cg_set_error(CG_ERR_NOMEM, "observables: out of memory");
        return NULL;
    }
    c->g = *g;
    c->thr = threshold;
    c->to_mev = g->to_mev > 0 ? g->to_mev : 1.0;
    c->cx = malloc((size_t)g->ncells * sizeof(float));
    c->cy = malloc((size_t)g->ncells * sizeof(float));
    c->cr = malloc((size_t)g->ncells * sizeof(float));
    if (!c->cx || !c->cy || !c->cr) {
        cg_obs_ctx_free(c);
        cg_set_error(CG_ERR_NOMEM, "observables: out of memory for %lld cell positions", (long long)g->ncells);
        return NULL;
    }
    for (int l = 0; l < g->nlayers; l++) {
        const cg_layer *L = &g->layer[l];
        c->polar[l] = L->binning == CG_BIN_POLAR;
        c->xy[l] = !c->polar[l] || L->rows > 1;
        c->z[l] = L->z_mm;
        int64_t i = g->layer_offset[l];
        for (int r = 0; r < L->rows; r++)
            for (int k = 0; k < L->cols; k++, i++) {
                cg_geometry_cell_xy(g, l, r, k, &c->cx[i], &c->cy[i]);
                c->cr[i] = c->polar[l] ? 0.5f * (L->r_edges[k] + L->r_edges[k + 1]) : 0.0f;
            }
    }
    radial_bins(c);
    return c;
}

void cg_obs_ctx_free(cg_obs_ctx *c) {
    if (!c) return;
    free(c->cx);
    free(c->cy);
    free(c->cr);
    free(c);
}

static int radial_bin(const cg_obs_ctx *c, double r) {
    int b;
    if (c->rad_uniform) {
        b = (int)(r / c->rad_pitch);
    } else { /* last edge <= r: binary search on the edges */
        int lo = 0, hi = c->nrad;
        while (hi - lo > 1) {
            int mid = (lo + hi) / 2;
            if (c->rad_edges[mid] <= r) lo = mid;
            else hi = mid;
        }
        b = lo;
    }
    return b < 0 ? 0 : b >= c->nrad ? c->nrad - 1 : b;
}

/* Energy (MeV) of cell (row, col) of layer l after the threshold, 0 outside the layer.
 * Polar layers wrap around in angle when the 5-wide window cannot meet itself. */
static double cell_e(const cg_obs_ctx *c, const float *cells, int l, int row, int col) {
    const cg_layer *L = &c->g.layer[l];
    if (c->polar[l] && L->rows >= 5) row = (row + L->rows) % L->rows;
    if (row < 0 || row >= L->rows || col < 0 || col >= L->cols) return 0;
    float v = cells[c->g.layer_offset[l] + (int64_t)row * L->cols + col];
    return cg_obs_is_hit(v, c->thr) ? (double)v * c->to_mev : 0;
}

void cg_obs_compute(const cg_obs_ctx *c, const float *cells, double e_inc_gev, double *v, double *radial) {
    const cg_geometry *g = &c->g;
    const int nl = g->nlayers;
    double *el = v + CG_OBS_NSCALAR;
    /* per-layer sums for the axis fit, and each layer's hottest cell */
    double lx[CG_GEOM_MAX_LAYERS], ly[CG_GEOM_MAX_LAYERS], lmax[CG_GEOM_MAX_LAYERS];
    int64_t larg[CG_GEOM_MAX_LAYERS];
    double e_tot = 0, e_xy = 0, sx = 0, sy = 0, sxx = 0, syy = 0, sz = 0, szz = 0, e_max = 0, hot_xy = 0;
    int64_t hits = 0, hot = -1; /* the hottest cell of the x/y layers */
    for (int l = 0; l < nl; l++) {
        double e_l = 0, x_l = 0, y_l = 0, m = 0;
        int64_t arg = -1;
        for (int64_t i = g->layer_offset[l]; i < g->layer_offset[l + 1]; i++) {
            float raw = cells[i];
            if (!cg_obs_is_hit(raw, c->thr)) continue;
            double e = (double)raw * c->to_mev;
            hits++;
            e_l += e;
            x_l += e * c->cx[i];
            y_l += e * c->cy[i];
            if (c->xy[l]) {
                sxx += e * (double)c->cx[i] * c->cx[i];
                syy += e * (double)c->cy[i] * c->cy[i];
            }
            if (e > m) {
                m = e;
                arg = i;
            }
        }
        el[l] = e_l;
        lx[l] = x_l;
        ly[l] = y_l;
        lmax[l] = m;
        larg[l] = arg;
        e_tot += e_l;
        sz += e_l * c->z[l];
        szz += e_l * c->z[l] * c->z[l];
        if (c->xy[l]) {
            e_xy += e_l;
            sx += x_l;
            sy += y_l;
            if (m > hot_xy) {
                hot_xy = m;
                hot = arg;
            }
        }
        e_max = fmax(e_max, m);
    }
    v[CG_OBS_E_VIS] = e_tot;
    v[CG_OBS_E_RATIO] = e_inc_gev > 0 ? e_tot / (e_inc_gev * 1000.0) : NAN;
    v[CG_OBS_N_HITS] = (double)hits;
    v[CG_OBS_SPARSITY] = 1.0 - (double)hits / (double)g->ncells;
    v[CG_OBS_E_MAX] = e_max;

    /* moments: sqrt(max(<x²> − <x>², 0)) as CaloChallenge */
    double cgx = NAN, cgy = NAN;
    if (e_xy > 0) {
        cgx = sx / e_xy;
        cgy = sy / e_xy;
        v[CG_OBS_WIDTH_X] = sqrt(fmax(sxx / e_xy - cgx * cgx, 0));
        v[CG_OBS_WIDTH_Y] = sqrt(fmax(syy / e_xy - cgy * cgy, 0));
    } else {
        v[CG_OBS_WIDTH_X] = v[CG_OBS_WIDTH_Y] = NAN;
    }
    v[CG_OBS_COG_X] = cgx;
    v[CG_OBS_COG_Y] = cgy;
    if (e_tot > 0) {
        double cz = sz / e_tot;
        v[CG_OBS_COG_Z] = cz;
        v[CG_OBS_WIDTH_Z] = sqrt(fmax(szz / e_tot - cz * cz, 0));
    } else {
        v[CG_OBS_COG_Z] = v[CG_OBS_WIDTH_Z] = NAN;
    }

    /* second pass: asymmetry about the hottest cell (its own row and column count for
     * neither side: stable for showers centred on a cell), radial distances */
    double ax = 0, ay = 0, sr = 0, srr = 0;
    double hx = hot >= 0 ? c->cx[hot] : 0, hy = hot >= 0 ? c->cy[hot] : 0;
    double ox = e_xy > 0 ? cgx : 0, oy = e_xy > 0 ? cgy : 0;
    if (radial) memset(radial, 0, (size_t)c->nrad * sizeof(double));
    for (int l = 0; l < nl && e_tot > 0; l++) {
        if (el[l] <= 0) continue;
        for (int64_t i = g->layer_offset[l]; i < g->layer_offset[l + 1]; i++) {
            float raw = cells[i];
            if (!cg_obs_is_hit(raw, c->thr)) continue;
            double e = (double)raw * c->to_mev;
            if (c->xy[l]) {
                double dx = c->cx[i] - hx, dy = c->cy[i] - hy;
                ax += dx > 1e-3 ? e : dx < -1e-3 ? -e : 0;
                ay += dy > 1e-3 ? e : dy < -1e-3 ? -e : 0;
            }
            double r = c->polar[l] ? (double)c->cr[i] : hypot(c->cx[i] - ox, c->cy[i] - oy);
            sr += e * r;
            srr += e * r * r;
            if (radial) radial[radial_bin(c, r)] += e;
        }
    }
    v[CG_OBS_ASYM_X] = e_xy > 0 ? ax / e_xy : NAN;
    v[CG_OBS_ASYM_Y] = e_xy > 0 ? ay / e_xy : NAN;
    if (e_tot > 0) {
        double rm = sr / e_tot;
        v[CG_OBS_R_MEAN] = rm;
        v[CG_OBS_R_WIDTH] = sqrt(fmax(srr / e_tot - rm * rm, 0));
    } else {
        v[CG_OBS_R_MEAN] = v[CG_OBS_R_WIDTH] = NAN;
    }

    /* axis direction: weighted least squares of the per-layer centres against depth */
    double w = 0, wz = 0, wzz = 0, wx = 0, wy = 0, wzx = 0, wzy = 0;
    int used = 0;
    for (int l = 0; l < nl; l++) {
        if (!c->xy[l] || el[l] <= 0) continue;
        double e = el[l], xm = lx[l] / e, ym = ly[l] / e, z = c->z[l];
        w += e;
        wz += e * z;
        wzz += e * z * z;
        wx += e * xm;
        wy += e * ym;
        wzx += e * z * xm;
        wzy += e * z * ym;
        used++;
    }
    double den = w > 0 ? wzz - wz * wz / w : 0;
    if (used >= 2 && den > 1e-9 * fmax(wzz, 1e-300)) {
        v[CG_OBS_ANGLE_X] = atan((wzx - wz * wx / w) / den) * (180.0 / M_PI);
        v[CG_OBS_ANGLE_Y] = atan((wzy - wz * wy / w) / den) * (180.0 / M_PI);
    } else {
        v[CG_OBS_ANGLE_X] = v[CG_OBS_ANGLE_Y] = NAN;
    }

    /* E1/E9/E21 around the hottest cell of the layer of maximum energy (003 seed) */
    int lbest = -1;
    for (int l = 0; l < nl; l++)
        if (el[l] > 0 && (lbest < 0 || el[l] > el[lbest])) lbest = l;
    v[CG_OBS_E1_E9] = v[CG_OBS_E9_E21] = NAN;
    if (lbest >= 0 && larg[lbest] >= 0) {
        const cg_layer *L = &g->layer[lbest];
        int64_t k = larg[lbest] - g->layer_offset[lbest];
        int r0 = (int)(k / L->cols), c0 = (int)(k % L->cols);
        double e9 = 0, e21 = 0;
        for (int dr = -2; dr <= 2; dr++)
            for (int dc = -2; dc <= 2; dc++) {
                if (abs(dr) == 2 && abs(dc) == 2) continue; /* the 4 corners */
                double e = cell_e(c, cells, lbest, r0 + dr, c0 + dc);
                e21 += e;
                if (abs(dr) <= 1 && abs(dc) <= 1) e9 += e;
            }
        if (e9 > 0) v[CG_OBS_E1_E9] = lmax[lbest] / e9;
        if (e21 > 0) v[CG_OBS_E9_E21] = e9 / e21;
    }
}

typedef struct {
    const cg_obs_ctx *c;
    const float *cells;
    const double *e_inc;
    double *values, *radial;
} batch_ctx;

static void batch_range(void *vctx, int64_t b, int64_t e, int worker) {
    (void)worker;
    batch_ctx *t = vctx;
    int64_t nc = t->c->g.ncells, nv = cg_obs_nvalues(t->c), nr = t->c->nrad;
    for (int64_t i = b; i < e; i++)
        cg_obs_compute(t->c, t->cells + i * nc, t->e_inc ? t->e_inc[i] : NAN, t->values + i * nv,
                       t->radial ? t->radial + i * nr : NULL);
}

void cg_obs_compute_batch(const cg_obs_ctx *c, int64_t n, const float *cells, const double *e_inc_gev,
                          double *values, double *radial) {
    batch_ctx t = {c, cells, e_inc_gev, values, radial};
    /* a shower is ~ncells·20 flops: group small ones so a chunk is worth a thread */
    int64_t grain = 1 + 200000 / (c->g.ncells + 1);
    cg_parallel_for(n, grain, batch_range, &t);
}
