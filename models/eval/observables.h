/*
 * models/eval/observables.h — per-shower physics observables, computed on any geometry the
 * .cvox format holds (io/geometry.h: regular grids, per-layer shapes, polar layers).
 *
 * What physicists look at to judge a calorimeter shower simulation (the seeds 000–004 and
 * CaloChallenge, ../shared/reference/models.md §3.1): the visible energy and its ratio to
 * the incident energy (the sampling fraction), the number of hits, the longitudinal profile
 * (energy per layer), the radial profile, the centre of gravity and widths in x, y, z, the
 * maximum cell energy, E1/E9 and E9/E21, sparsity, the asymmetry and direction of the
 * shower; over a sample, the spectrum of cell (hit) energies with its MIP peak.
 *
 * Conventions.
 *  - Threshold: a cell is a HIT when its stored value is > threshold (in the file's energy
 *    unit). Cells at or below it are treated as 0 by EVERY observable, as CaloChallenge
 *    zeroes voxels below min_energy before computing anything.
 *  - Units: energies in MeV (stored value × geometry.to_mev), positions in mm, angles in
 *    degrees; the incident energy is given in GeV.
 *  - Positions: a Cartesian cell sits at cg_geometry_cell_xy(); the depth of a layer is
 *    its z_mm. Transverse moments (cog_x/y, width_x/y, asym_x/y, angle_x/y) use the layers
 *    that resolve x and y: Cartesian layers, and polar layers with more than one angular
 *    bin (CaloChallenge also skips layers not binned in alpha). A polar cell's position is
 *    its bin centre (r_mid·cos α_mid, r_mid·sin α_mid).
 *  - Radial distance: for a polar cell its r_mid (the binning is centred on the particle's
 *    direction); for a Cartesian cell the distance from the shower axis, taken parallel to
 *    z through the shower's (cog_x, cog_y) (through (0, 0) when those are undefined).
 *  - Undefined values (a ratio with a zero denominator, moments of an empty shower) are
 *    NaN; the metrics drop them (and say how many).
 *
 * Limits: the shower axis for the radial profile is parallel to z; for strongly inclined
 * showers the radial profile is broadened by the tilt (angle_x/y measure the tilt).
 */
#ifndef CG_EVAL_OBSERVABLES_H
#define CG_EVAL_OBSERVABLES_H

#include <stdint.h>

#include "core/error.h"
#include "io/geometry.h"

/* The scalar observables, in the order of their values. Keys are stable (metrics.json,
 * CSV headers, docs/metrics.md); append new ones at the end. */
typedef enum {
    CG_OBS_E_VIS,        /* total visible energy, MeV */
    CG_OBS_E_RATIO,      /* E_vis / E_inc (MeV / MeV); NaN without an incident energy */
    CG_OBS_N_HITS,       /* cells above threshold */
    CG_OBS_SPARSITY,     /* 1 − n_hits / ncells (CaloChallenge's definition) */
    CG_OBS_E_MAX,        /* maximum cell energy, MeV */
    CG_OBS_COG_X,        /* energy-weighted mean x, mm */
    CG_OBS_COG_Y,
    CG_OBS_COG_Z,        /* energy-weighted mean depth, mm */
    CG_OBS_WIDTH_X,      /* energy-weighted standard deviation of x, mm */
    CG_OBS_WIDTH_Y,
    CG_OBS_WIDTH_Z,
    CG_OBS_R_MEAN,       /* energy-weighted mean radial distance from the axis, mm */
    CG_OBS_R_WIDTH,      /* its energy-weighted standard deviation, mm */
    CG_OBS_ASYM_X,       /* (E(x > x_hot) − E(x < x_hot)) / E over the x/y layers, x_hot the
                            x of the hottest cell (its column counts for neither side) */
    CG_OBS_ASYM_Y,
    CG_OBS_ANGLE_X,      /* direction of the axis: atan of the slope dx/dz of the per-layer
                            centres of energy (energy-weighted fit), degrees */
    CG_OBS_ANGLE_Y,
    CG_OBS_E1_E9,        /* hottest cell / 3×3 around it, in the layer of maximum energy */
    CG_OBS_E9_E21,       /* 3×3 / (5×5 minus its 4 corners) */
    CG_OBS_NSCALAR
} cg_obs_id;

/* The hit rule every observable uses: a finite stored value above the threshold (NaN and
 * infinite cells, which a diverging generator can produce, count as empty; the evaluation
 * counts them and warns). */
static inline int cg_obs_is_hit(float raw, double threshold) {
    return raw > threshold && raw <= 3.402823466e38f;
}

/* How the metrics bin an observable for the separation power (docs/metrics.md). */
typedef enum {
    CG_BINS_LINEAR,    /* 50 bins over the reference's central range (quantile rule) */
    CG_BINS_INTEGER,   /* integer-centred bins (half-integer edges) */
    CG_BINS_LOG,       /* CaloChallenge's E_layer rule: log edges from the threshold to the
                          reference maximum */
    CG_BINS_CC_RATIO,  /* CaloChallenge's E_tot/E_inc rule: 101 edges on [0.5, 1.5] */
} cg_bins_rule;

typedef struct {
    const char *key;     /* "e_vis_over_e_inc" */
    const char *label;   /* "E_vis / E_inc" (plain text, for the report) */
    const char *unit;    /* "MeV", "mm", "deg", "" */
    cg_bins_rule bins;
    double lo_bound, hi_bound; /* natural bounds of the values (−inf/inf when none) */
    int nedges;          /* edges for the LOG rule (40: CaloChallenge's E_layer) */
} cg_obs_meta;

/* Metadata of scalar observable i (0 <= i < CG_OBS_NSCALAR). */
const cg_obs_meta *cg_obs_scalar(int i);
/* Metadata shared by the per-layer energies "e_layer_<l>" (key and label without <l>). */
const cg_obs_meta *cg_obs_layer_meta(void);

/* Geometry-derived tables (cell positions, radial bins), built once per geometry. */
typedef struct cg_obs_ctx cg_obs_ctx;

/* threshold: in the geometry's stored energy unit (>= 0). NULL + error for a geometry whose
 * tables cannot be allocated. */
cg_obs_ctx *cg_obs_ctx_new(const cg_geometry *g, double threshold);
void cg_obs_ctx_free(cg_obs_ctx *c);
const cg_geometry *cg_obs_geometry(const cg_obs_ctx *c);
double cg_obs_threshold_mev(const cg_obs_ctx *c);
/* Values per shower: the scalars, then one energy per layer (MeV). */
int cg_obs_nvalues(const cg_obs_ctx *c);
/* The radial profile's bins: nrad bins with edges (nrad + 1, mm). Rule: for all-polar
 * geometries the radial edges of the layer with the most r bins; otherwise uniform bins of
 * the smallest Cartesian cell pitch up to the largest layer's half diagonal (at most 64
 * bins, wider when needed). Energy beyond the last edge goes into the last bin. */
int cg_obs_nradial(const cg_obs_ctx *c);
const double *cg_obs_radial_edges(const cg_obs_ctx *c);

/* One shower: cells (geometry's ncells, stored units), incident energy in GeV (NaN or <= 0
 * when unknown). values: cg_obs_nvalues() doubles; radial: cg_obs_nradial() doubles of
 * energy (MeV) per radial bin, or NULL. Pure function: safe on several threads at once. */
void cg_obs_compute(const cg_obs_ctx *c, const float *cells, double e_inc_gev, double *values, double *radial);
/* n showers (cells n × ncells, e_inc n or NULL, values n × nvalues, radial n × nradial or
 * NULL), in parallel over showers (core/threads.h). */
void cg_obs_compute_batch(const cg_obs_ctx *c, int64_t n, const float *cells, const double *e_inc_gev,
                          double *values, double *radial);

#endif
