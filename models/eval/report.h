/*
 * models/eval/report.h — the results of one evaluation (filled by evaluate.c) and the
 * self-contained HTML report drawn from them (report.c).
 *
 * The report is one file, index.html, that opens offline: plots are inline SVG drawn here
 * (axes, ticks, step histograms, ratio panels), shower images are small PNGs (zlib from
 * the build's dependencies) embedded as data: URIs and scaled up without smoothing. No
 * script, no external font or style sheet.
 *
 * Layout: a title block; the summary (sample sizes, threshold, the headline separation
 * power of E_vis/E_inc, the classifier AUCs, warnings) and a table of every scalar
 * observable with its SP, W1, KS and means, coloured by SP; then the histograms with a
 * ratio panel (generated / reference), the longitudinal and radial profiles, the cell
 * energy spectrum on log axes, the per-layer energy histograms, average shower images per
 * layer (reference above generated, one shared log colour scale), a few single events, the
 * metrics per conditioning bin and the conditioning distributions.
 */
#ifndef CG_EVAL_REPORT_H
#define CG_EVAL_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "io/cvox.h"
#include "models/eval/classifier.h"
#include "models/eval/distances.h"
#include "models/eval/observables.h"

/* One observable compared between the samples. */
typedef struct {
    char key[40];
    char label[64];
    char unit[8];
    cg_bins_spec spec;
    bool logx;          /* drawn on a log x axis */
    cg_dist d;          /* the metrics and the histograms */
    char hist_file[96]; /* relative to the output folder; "" when no histogram */
} cg_eval_obs;

/* A bin of the conditioning (an energy range, or one of the files' fixed test points). */
typedef struct {
    char label[96];
    double e_lo, e_hi;       /* GeV; the bin holds e_lo <= E < e_hi (the last bin includes e_hi) */
    bool has_theta;
    double t_lo, t_hi;       /* deg, when the bin is a test point in (energy, theta) */
    int64_t n_ref, n_gen;
    bool computed;           /* enough showers on both sides */
    cg_eval_obs obs[CG_OBS_NSCALAR];
} cg_eval_bin;

enum { CG_EVAL_REF = 0, CG_EVAL_GEN = 1 };

typedef struct {
    /* what was compared */
    char name[2][512];        /* paths (or names of in-memory samples) */
    int64_t n_file[2];        /* events in each file */
    int64_t n[2];             /* events used */
    cg_cvox_info info;        /* the reference's geometry and conditioning */
    char gen_particle[CG_CVOX_NAME_LEN];
    double threshold;         /* in the files' energy unit */
    double threshold_mev;
    char threshold_source[128];
    bool has_energy;          /* "energy" conditioning present */

    /* distances */
    cg_eval_obs scalar[CG_OBS_NSCALAR];
    int nlayers;
    cg_eval_obs *layer;       /* nlayers: e_layer_<l> */
    cg_eval_obs cells;        /* the cell (hit) energy spectrum */
    int64_t cells_every[2];   /* W1/KS subsample strides of the hit lists */
    int ncond;
    cg_eval_obs cond[CG_CVOX_MAX_COND]; /* the conditioning distributions */

    /* profiles: per layer and per radial bin, the mean energy per shower (MeV) and its
     * standard error */
    double *long_mean[2], *long_sem[2];
    int nrad;
    double rad_edges[CG_GEOM_MAX_RBINS + 1];
    double *rad_mean[2], *rad_sem[2];

    double *avg[2];           /* mean shower (ncells, MeV, after the threshold) */
    int nsingle[2];
    float *single[2];         /* nsingle × ncells, stored units, before the threshold */
    float *single_cond[2];    /* nsingle × ncond */

    /* conditioning bins */
    char bins_rule[160];
    int nbins;
    cg_eval_bin *bins;

    /* classifiers: [0] high-level features, [1] voxels */
    bool cls_ran[2];
    cg_cls_result cls[2];
    cg_cls_cfg cls_cfg[2];
    char cls_note[2][200];
    char cls_features[2][160];

    char **warnings;
    int nwarnings;
    double seconds_total, seconds_read, seconds_classifier;
} cg_eval_results;

/* Append a warning (printf-style) to r->warnings. */
void cg_eval_warn(cg_eval_results *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write the HTML report to `path` (through a temporary file renamed into place). */
cg_status cg_report_write_html(const cg_eval_results *r, const char *path);

/* ---- small pieces, exposed for tests ---- */
/* A PNG (8-bit RGBA, w × h) as a malloc'ed buffer; *len gets its size. NULL on failure. */
uint8_t *cg_png_encode(const uint8_t *rgba, int w, int h, size_t *len);
/* Colour of t in [0, 1] on the report's colour map (viridis-like). */
void cg_colormap(double t, uint8_t rgb[3]);

#endif
