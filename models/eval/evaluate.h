/*
 * models/eval/evaluate.h — the whole evaluation in one call: `calograd evaluate` and
 * `calograd demo` use it.
 *
 *   cg_eval_opts o;
 *   cg_eval_defaults(&o);
 *   cg_eval_summary s;
 *   if (cg_evaluate_files("ref.cvox", "gen.cvox", "eval/", &o, &s) != CG_OK) -> cg_last_error()
 *   cg_eval_summary_print(stdout, &s);   // s.sp_e_ratio: SP of E_vis/E_inc (demo: < 0.2)
 *
 * It reads both samples once, in blocks (bounded memory: the per-shower observables, the
 * hit energies and the classifier's voxel rows are kept; the showers are not), computes the
 * observables (observables.h), the distances of every observable overall and per
 * conditioning bin (distances.h), trains the classifiers (classifier.h), and writes into
 * out_dir (created if needed; every file through a temporary name renamed into place):
 *   metrics.json                 every number, keys documented in docs/metrics.md
 *   observables_reference.csv    per-shower observables of each sample (and conditioning)
 *   observables_generated.csv
 *   histograms/<key>.csv         bin edges, counts and densities of every histogram
 *   cells_reference.csv          the hit energies used for the cell spectrum's W1 and KS
 *   cells_generated.csv
 *   profiles.csv                 longitudinal and radial mean profiles
 *   index.html                   the report (report.h)
 *
 * Input errors (a missing or corrupted file, no events, different geometries or
 * conditioning names, an out_dir that cannot be written) return CG_ERR_INVALID/CG_ERR_IO
 * with a message naming the file and the problem. A metric that cannot be computed (too few
 * showers, no incident energy, empty showers) is null in metrics.json and listed under
 * "warnings" there and in the report; it is not an error.
 */
#ifndef CG_EVAL_EVALUATE_H
#define CG_EVAL_EVALUATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "io/cvox.h"

#define CG_EVAL_MAX_EBINS 32

typedef struct {
    bool has_threshold;      /* false: half a MIP when the geometry knows its MIP, else 0 */
    double threshold;        /* hit threshold in the files' energy unit */
    int64_t max_events;      /* use at most the first N events of each file (0 = all) */
    int n_single;            /* single events shown per sample (default 3) */
    int n_energy_bins;       /* > 0: energy bin edges in energy_bins[0..n] (GeV) */
    double energy_bins[CG_EVAL_MAX_EBINS + 1];
    int threads;             /* > 0: cg_threads_set(threads) */
    uint64_t seed;           /* classifier split, initialisation and subsets (default 1) */
    bool verbose;            /* progress on stderr */
    /* classifiers: [0] high-level features, [1] voxels (CaloChallenge's cls-high/cls-low) */
    bool classifier[2];      /* default both on */
    int cls_width[2];        /* hidden units (defaults 128, 32) */
    int cls_layers;          /* hidden W→W layers (default 2, as CaloChallenge) */
    int cls_epochs[2];       /* defaults 20, 4 */
    int cls_batch;           /* default 128 */
    double cls_lr;           /* Adam, default 1e-3 */
    int64_t cls_max_per_class[2]; /* showers per sample used (defaults 6000, 2000) */
} cg_eval_opts;

void cg_eval_defaults(cg_eval_opts *o);

/* What `calograd demo` prints. NaN where a number could not be computed. */
typedef struct {
    int64_t n_reference, n_generated;   /* events used */
    double threshold_mev;
    double sp_e_ratio;      /* separation power of E_vis/E_inc: the demo's criterion */
    double sp_e_vis, sp_n_hits, sp_cog_z, sp_r_mean, sp_e_max, sp_cells;
    double sp_max;          /* largest SP over the scalar observables ... */
    char sp_max_key[40];    /* ... and its key */
    double auc_high, auc_low, jsd_high, jsd_low;
    int nwarnings;
    double seconds;
    char metrics_path[4200], report_path[4200];
} cg_eval_summary;

/* Evaluate two .cvox files (opts NULL = defaults; summary may be NULL). */
cg_status cg_evaluate_files(const char *reference, const char *generated, const char *out_dir,
                            const cg_eval_opts *opts, cg_eval_summary *summary);

/* The same on showers in memory (tests; a trainer's monitoring). */
typedef struct {
    const char *name;          /* shown in the report */
    const cg_cvox_info *info;  /* geometry, particle, conditioning names and units */
    int64_t nevents;
    const float *dense;        /* nevents × ncells, stored units */
    const float *cond;         /* nevents × ncond (NULL when ncond is 0) */
} cg_eval_sample;

cg_status cg_evaluate_samples(const cg_eval_sample *reference, const cg_eval_sample *generated, const char *out_dir,
                              const cg_eval_opts *opts, cg_eval_summary *summary);

void cg_eval_summary_print(FILE *f, const cg_eval_summary *s);

#endif
