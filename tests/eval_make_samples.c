/*
 * tests/eval_make_samples.c — writes pairs of random .cvox files on geometries the simulator
 * does not make, for tests/eval_reference.py (not a test itself):
 *
 *   eval_make_samples KIND SEED N REF.cvox GEN.cvox
 *
 *   polar       CaloChallenge-like (alpha, r) layers, 9 layers × 16 × 9, log-uniform energies
 *   calogan     CaloGAN's three layers 3×96, 12×12, 12×6, uniform energies
 *   testpoints  a 8×10×10 grid at 9 fixed (energy, theta) points, hit energies rounded to
 *               0.05 MeV (ties everywhere), a few empty showers
 *
 * The showers are random blobs (exponential in depth and radius, sparse hits), not physics:
 * the point is odd shapes, ties, zeros and NaN-producing events for the metric checks. The
 * generated file uses another seed and a 3 % larger, 10 % wider energy scale; the generated
 * CaloGAN file also has NaN and infinite cells in every 50th shower.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calograd.h"
#include "io/cvox.h"

static void geometry(const char *kind, cg_geometry *g) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", kind);
    snprintf(g->energy_unit, sizeof g->energy_unit, "MeV");
    g->to_mev = 1;
    if (!strcmp(kind, "polar")) {
        g->nlayers = 9;
        for (int l = 0; l < 9; l++) {
            cg_layer *L = &g->layer[l];
            L->binning = CG_BIN_POLAR;
            L->rows = l == 0 ? 1 : 16; /* the first layer not binned in alpha, as CaloChallenge ds1 */
            L->cols = 9;
            for (int k = 0; k <= 9; k++) L->r_edges[k] = 4.65f * k;
            L->z_mm = 1.7f + 3.4f * l;
            L->depth_mm = 3.4f;
        }
        g->mip_mev = 0; /* unknown: the evaluation warns and uses no threshold */
    } else if (!strcmp(kind, "calogan")) {
        int rows[3] = {3, 12, 12}, cols[3] = {96, 12, 6};
        float cw[3] = {5, 40, 80}, ch[3] = {160, 40, 40}, dz[3] = {90, 347, 43};
        g->nlayers = 3;
        float z = 0;
        for (int l = 0; l < 3; l++) {
            g->layer[l] = (cg_layer){.rows = rows[l], .cols = cols[l], .binning = CG_BIN_CARTESIAN, .cell_w = cw[l],
                                     .cell_h = ch[l], .z_mm = z + dz[l] / 2, .depth_mm = dz[l]};
            z += dz[l];
        }
        g->mip_mev = 0.5f;
    } else {
        cg_geometry_grid(g, kind, 8, 10, 10, 5, 5, 4);
        g->mip_mev = 0.2f;
    }
    CG_ASSERT(cg_geometry_finish(g) == CG_OK);
}

static int write_sample(const char *kind, uint64_t seed, int64_t n, const char *path, double scale, double spread) {
    cg_cvox_info info;
    memset(&info, 0, sizeof info);
    geometry(kind, &info.geom);
    snprintf(info.particle, sizeof info.particle, "photon");
    snprintf(info.source, sizeof info.source, "tests/eval_make_samples %s", kind);
    bool tp = !strcmp(kind, "testpoints");
    info.ncond = tp ? 2 : 1;
    snprintf(info.cond_name[0], CG_CVOX_NAME_LEN, "energy");
    snprintf(info.cond_unit[0], CG_CVOX_NAME_LEN, "GeV");
    if (tp) {
        snprintf(info.cond_name[1], CG_CVOX_NAME_LEN, "theta");
        snprintf(info.cond_unit[1], CG_CVOX_NAME_LEN, "deg");
    }
    const cg_geometry *g = &info.geom;
    cg_cvox_writer *w = cg_cvox_create(path, &info, 64);
    if (!w) {
        fprintf(stderr, "eval_make_samples: %s\n", cg_last_error());
        return 2;
    }
    cg_rng rng = cg_rng_make(seed);
    float *x = malloc((size_t)g->ncells * sizeof(float));
    for (int64_t ev = 0; ev < n; ev++) {
        float cond[2];
        double e;
        if (!strcmp(kind, "polar")) e = pow(10, 2 * cg_rng_uniform(&rng)); /* 1..100 GeV */
        else if (tp) e = (double)(10 + 40 * cg_rng_below(&rng, 3));
        else e = 1 + 99 * cg_rng_uniform(&rng);
        cond[0] = (float)e;
        if (tp) cond[1] = (float)(60 + 15 * cg_rng_below(&rng, 3));
        memset(x, 0, (size_t)g->ncells * sizeof(float));
        bool empty = tp && cg_rng_uniform(&rng) < 0.03;
        double depth = 1.5 + 0.5 * cg_rng_uniform(&rng), width = 1.0 + 0.3 * cg_rng_normal(&rng);
        double sx = 0.6 * cg_rng_normal(&rng), sy = 0.6 * cg_rng_normal(&rng);
        for (int l = 0; l < g->nlayers && !empty; l++) {
            const cg_layer *L = &g->layer[l];
            double t = (l + 0.5) / g->nlayers * 5; /* a toy longitudinal profile */
            double frac = pow(t / depth, 2) * exp(-2 * (t - depth) / depth) * 0.3;
            for (int r = 0; r < L->rows; r++)
                for (int c = 0; c < L->cols; c++) {
                    float px, py;
                    cg_geometry_cell_xy(g, l, r, c, &px, &py);
                    double cell = L->binning == CG_BIN_POLAR ? 4.65 : fmin(L->cell_w, L->cell_h);
                    double d = hypot(px / cell - sx, py / cell - sy) / fmax(width, 0.3);
                    double p = frac * exp(-d);
                    if (cg_rng_uniform(&rng) > 3 * p) continue;
                    double v = e * scale * (1 + spread * cg_rng_normal(&rng)) * p * 20 *
                               (0.2 + cg_rng_uniform(&rng));
                    if (tp) v = 0.05 * floor(v / 0.05 + 0.5); /* ties */
                    x[g->layer_offset[l] + (int64_t)r * L->cols + c] = (float)fmax(v, 0);
                }
        }
        if (scale != 1.0 && !strcmp(kind, "calogan") && ev % 50 == 7) { /* a diverging generator */
            x[ev % g->ncells] = NAN;
            x[(ev * 7 + 3) % g->ncells] = INFINITY;
        }
        if (cg_cvox_write(w, 1, x, cond) != CG_OK) {
            fprintf(stderr, "eval_make_samples: %s\n", cg_last_error());
            cg_cvox_abort(w);
            free(x);
            return 2;
        }
    }
    free(x);
    if (cg_cvox_finish(w) != CG_OK) {
        fprintf(stderr, "eval_make_samples: %s\n", cg_last_error());
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6 || (strcmp(argv[1], "polar") && strcmp(argv[1], "calogan") && strcmp(argv[1], "testpoints"))) {
        fprintf(stderr, "usage: eval_make_samples polar|calogan|testpoints SEED N REF.cvox GEN.cvox\n");
        return 2;
    }
    uint64_t seed = strtoull(argv[2], NULL, 0);
    int64_t n = strtoll(argv[3], NULL, 0);
    int rc = write_sample(argv[1], seed, n, argv[4], 1.0, 0.3);
    return rc ? rc : write_sample(argv[1], seed + 7919, n, argv[5], 1.03, 0.33);
}
