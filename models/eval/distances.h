/*
 * models/eval/distances.h — distances between a reference and a generated sample of one
 * observable: CaloChallenge's separation power on histograms, the 1-D Wasserstein
 * distance and the Kolmogorov–Smirnov statistic on the samples themselves.
 *
 * Definitions (all in double precision; tests/eval_reference.py checks them against
 * numpy/scipy):
 *  - Histograms follow numpy.histogram with explicit edges: bin i holds e_i <= x < e_{i+1},
 *    the last bin also x == e_last; values outside [e_0, e_last] are not counted.
 *  - Separation power (CaloChallenge `_separation_power`, the triangular discrimination):
 *    with h = density × bin width = count / (in-range count) for each sample,
 *    SP = 0.5 · Σ (h1 − h2)² / (h1 + h2 + 1e-16). 0 for identical histograms, 1 for
 *    disjoint ones.
 *  - W1: scipy.stats.wasserstein_distance(ref, gen) = ∫ |F_ref(x) − F_gen(x)| dx.
 *  - KS: the statistic of scipy.stats.ks_2samp(ref, gen) (two-sided), max |F_ref − F_gen|.
 *  - NaN values (undefined for that shower) are dropped first and counted.
 *  - When every generated value falls outside the histogram's range, SP = 1 (the value for
 *    disjoint histograms) with a note: numpy's density would be undefined there.
 *
 * Bin edges come from the reference sample only, by the rule of the observable
 * (observables.h cg_bins_rule; the rules are spelled out in docs/metrics.md), so the
 * generated sample never moves the binning. Values of either sample outside the edges are
 * counted in `out_ref`/`out_gen` (the report warns when many generated ones are).
 */
#ifndef CG_EVAL_DISTANCES_H
#define CG_EVAL_DISTANCES_H

#include <stdint.h>

#include "core/error.h"
#include "models/eval/observables.h"

/* Fewer finite values than this in either sample: the metrics are null (NaN) with a note. */
#define CG_DIST_MIN_VALUES 10

typedef struct {
    cg_bins_rule rule;
    double lo_bound, hi_bound; /* natural bounds: the linear rule's range is clipped to them */
    int nedges;                /* LOG rule: number of edges (0 = 40) */
    double log_lo;             /* LOG rule: lowest edge, e.g. the threshold in MeV; <= 0 = the
                                  smallest positive reference value */
} cg_bins_spec;

typedef struct {
    int64_t n_ref, n_gen;        /* finite values used */
    int64_t nan_ref, nan_gen;    /* NaN values dropped */
    double mean_ref, mean_gen, std_ref, std_gen; /* std with ddof 0, as numpy */
    double sp, w1, ks;           /* NaN when not computable (see note) */
    int nbins;                   /* 0 when no histogram could be made */
    double *edges;               /* nbins + 1, owned */
    int64_t *count_ref, *count_gen; /* nbins each, owned */
    int64_t out_ref, out_gen;    /* values outside [edges[0], edges[nbins]] */
    char note[160];              /* why a metric is NaN ("" when all are defined) */
} cg_dist;

/* Compare ref[i·ref_stride] (i < n_ref) with gen[i·gen_stride] (i < n_gen). Fills d (free
 * with cg_dist_free). Returns CG_ERR_NOMEM on allocation failure; metrics that cannot be
 * computed are NaN with d->note set, not an error. */
cg_status cg_dist_compute(cg_dist *d, const double *ref, int64_t n_ref, int64_t ref_stride, const double *gen,
                          int64_t n_gen, int64_t gen_stride, const cg_bins_spec *spec);
/* The same on float32 values without NaN (the cell-energy spectrum, millions of values):
 * the histograms, means and SP use every value; W1 and KS use every ref_every-th and
 * gen_every-th value (index 0, every, 2·every, ...), a subsample that bounds the sorting
 * and the CSV written for them. */
cg_status cg_dist_compute_f(cg_dist *d, const float *ref, int64_t n_ref, int64_t ref_every, const float *gen,
                            int64_t n_gen, int64_t gen_every, const cg_bins_spec *spec);
void cg_dist_free(cg_dist *d);

/* ---- the pieces, exposed for tests and for other callers ---- */
/* Edges by rule from finite, ascending reference values; *edges is malloc'ed (nbins + 1).
 * Returns the number of bins, 0 when none can be made (n == 0), -1 on allocation failure. */
int cg_bins_make(const cg_bins_spec *spec, const double *sorted_ref, int64_t n, double **edges);
/* numpy.histogram counts of n values (stride) with the given edges; returns the number of
 * values outside the range. */
int64_t cg_histogram(const double *x, int64_t n, int64_t stride, const double *edges, int nbins, int64_t *counts);
/* SP from two count vectors (normalised to unit sum inside); NaN when a sum is 0. */
double cg_separation_power(const int64_t *c1, const int64_t *c2, int nbins);
/* On ascending finite arrays. */
double cg_wasserstein1(const double *u, int64_t n, const double *v, int64_t m);
double cg_ks_statistic(const double *u, int64_t n, const double *v, int64_t m);
/* numpy.quantile with the default (linear) interpolation on an ascending array. */
double cg_quantile_sorted(const double *x, int64_t n, double p);
/* Sort doubles ascending (NaN-free). */
void cg_sort_doubles(double *x, int64_t n);

#endif
