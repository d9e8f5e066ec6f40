/*
 * models/eval/distances.c — separation power, W1, KS and the binning rules (distances.h).
 *
 * W1 and KS walk the two sorted samples together once (O(n + m) after sorting), which is
 * what scipy's searchsorted formulation computes: between two consecutive distinct values
 * of the pooled sample each empirical CDF is constant.
 */
#include "models/eval/distances.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINEAR_BINS 50
#define QUANTILE_LO 0.005
#define QUANTILE_HI 0.995
#define MARGIN 0.1 /* of the central span, added on each side */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void cg_sort_doubles(double *x, int64_t n) { qsort(x, (size_t)n, sizeof(double), cmp_double); }

/* numpy's method='linear' to the last bit: index (n − 1)·p, and numpy's _lerp, which
 * interpolates from the upper neighbour when the fraction is >= 0.5 */
double cg_quantile_sorted(const double *x, int64_t n, double p) {
    CG_ASSERT(n > 0);
    double h = (double)(n - 1) * p;
    int64_t i = (int64_t)floor(h);
    if (i >= n - 1) return x[n - 1];
    if (i < 0) return x[0];
    double t = h - (double)i, a = x[i], b = x[i + 1], d = b - a;
    return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

/* numpy.linspace(lo, hi, n + 1): start + k·step, the last edge exactly hi */
static void linspace(double *e, double lo, double hi, int nbins) {
    double step = (hi - lo) / nbins;
    for (int k = 0; k < nbins; k++) e[k] = lo + (double)k * step;
    e[nbins] = hi;
}

static int bins_linear(const cg_bins_spec *s, const double *x, int64_t n, double **edges) {
    double qlo = cg_quantile_sorted(x, n, QUANTILE_LO), qhi = cg_quantile_sorted(x, n, QUANTILE_HI);
    double span = qhi - qlo, lo = qlo - MARGIN * span, hi = qhi + MARGIN * span;
    lo = fmax(lo, s->lo_bound);
    hi = fmin(hi, s->hi_bound);
    if (!(hi > lo)) { /* a (nearly) constant observable: a small window around it */
        double w = qlo != 0 ? 0.05 * fabs(qlo) : 0.5;
        lo = fmax(qlo - w, s->lo_bound);
        hi = fmin(qhi + w, s->hi_bound);
        if (!(hi > lo)) {
            lo = qlo - w;
            hi = qhi + w;
        }
    }
    *edges = malloc((LINEAR_BINS + 1) * sizeof(double));
    if (!*edges) return -1;
    linspace(*edges, lo, hi, LINEAR_BINS);
    return LINEAR_BINS;
}

/* Integer-valued observables: bins centred on integers (edges at half-integers, exact in
 * binary), one integer per bin or wider so that there are at most 50. */
static int bins_integer(const cg_bins_spec *s, const double *x, int64_t n, double **edges) {
    double qlo = cg_quantile_sorted(x, n, QUANTILE_LO), qhi = cg_quantile_sorted(x, n, QUANTILE_HI);
    double span = fmax(qhi - qlo, 1.0), lo = qlo - MARGIN * span, hi = qhi + MARGIN * span;
    double w = fmax(1.0, ceil((hi - lo) / LINEAR_BINS));
    double start = floor(lo) - 0.5;
    if (isfinite(s->lo_bound) && start < s->lo_bound - 0.5) start = s->lo_bound - 0.5;
    int nb = (int)ceil((hi + 0.5 - start) / w);
    if (nb < 1) nb = 1;
    *edges = malloc((size_t)(nb + 1) * sizeof(double));
    if (!*edges) return -1;
    for (int k = 0; k <= nb; k++) (*edges)[k] = start + k * w;
    return nb;
}

/* CaloChallenge's E_layer / voxel rule: np.logspace(log10(lo), log10(max), nedges), with
 * the last edge set to the reference maximum exactly so that it is counted. */
static int bins_log(const cg_bins_spec *s, const double *x, int64_t n, double **edges) {
    double lo = s->log_lo, hi = x[n - 1];
    if (!(lo > 0))
        for (int64_t i = 0; i < n; i++)
            if (x[i] > 0) {
                lo = x[i];
                break;
            }
    if (!(lo > 0) || !(hi > lo)) return bins_linear(s, x, n, edges);
    int ne = s->nedges > 1 ? s->nedges : 40, nb = ne - 1;
    *edges = malloc((size_t)ne * sizeof(double));
    if (!*edges) return -1;
    double a = log10(lo), b = log10(hi), step = (b - a) / nb;
    for (int k = 0; k < nb; k++) (*edges)[k] = pow(10.0, a + (double)k * step);
    (*edges)[nb] = hi;
    return nb;
}

/* CaloChallenge's E_tot/E_inc rule, np.linspace(0.5, 1.5, 101), scaled by the reference
 * median m when the data are not calibrated (m outside [0.9, 1.1]): [0.5·m, 1.5·m]. */
static int bins_cc_ratio(const cg_bins_spec *s, const double *x, int64_t n, double **edges) {
    (void)s;
    double m = cg_quantile_sorted(x, n, 0.5);
    if (!(m > 0)) return bins_linear(s, x, n, edges);
    if (fabs(m - 1.0) <= 0.1) m = 1.0;
    *edges = malloc(101 * sizeof(double));
    if (!*edges) return -1;
    linspace(*edges, 0.5 * m, 1.5 * m, 100);
    return 100;
}

int cg_bins_make(const cg_bins_spec *s, const double *x, int64_t n, double **edges) {
    *edges = NULL;
    if (n <= 0) return 0;
    switch (s->rule) {
    case CG_BINS_INTEGER: return bins_integer(s, x, n, edges);
    case CG_BINS_LOG: return bins_log(s, x, n, edges);
    case CG_BINS_CC_RATIO: return bins_cc_ratio(s, x, n, edges);
    case CG_BINS_LINEAR:
    default: return bins_linear(s, x, n, edges);
    }
}

/* The bin of v among nb bins with edges e[0..nb] (e[k] <= v < e[k+1]; v == e[nb] goes to the
 * last bin, as numpy's histogram), or -1 when v lies outside. */
static int bin_of(const double *e, int nb, double v) {
    if (v < e[0] || v > e[nb]) return -1;
    int lo = 0, hi = nb;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (e[mid] <= v) lo = mid;
        else hi = mid;
    }
    return lo;
}

int64_t cg_histogram(const double *x, int64_t n, int64_t stride, const double *e, int nb, int64_t *counts) {
    memset(counts, 0, (size_t)nb * sizeof(int64_t));
    int64_t out = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i * stride];
        if (isnan(v)) continue;
        int k = bin_of(e, nb, v);
        if (k < 0) out++;
        else counts[k]++;
    }
    return out;
}

double cg_separation_power(const int64_t *c1, const int64_t *c2, int nb) {
    int64_t n1 = 0, n2 = 0;
    for (int i = 0; i < nb; i++) {
        n1 += c1[i];
        n2 += c2[i];
    }
    if (n1 == 0 || n2 == 0) return NAN;
    double s = 0;
    for (int i = 0; i < nb; i++) {
        double h1 = (double)c1[i] / (double)n1, h2 = (double)c2[i] / (double)n2, d = h1 - h2;
        s += d * d / (h1 + h2 + 1e-16);
    }
    return 0.5 * s;
}

double cg_wasserstein1(const double *u, int64_t n, const double *v, int64_t m) {
    if (n == 0 || m == 0) return NAN;
    int64_t i = 0, j = 0;
    double prev = fmin(u[0], v[0]), w = 0;
    while (i < n || j < m) {
        double x = (j >= m || (i < n && u[i] <= v[j])) ? u[i] : v[j];
        w += fabs((double)i / (double)n - (double)j / (double)m) * (x - prev);
        while (i < n && u[i] == x) i++;
        while (j < m && v[j] == x) j++;
        prev = x;
    }
    return w;
}

double cg_ks_statistic(const double *u, int64_t n, const double *v, int64_t m) {
    if (n == 0 || m == 0) return NAN;
    int64_t i = 0, j = 0;
    double d = 0;
    while (i < n || j < m) {
        double x = (j >= m || (i < n && u[i] <= v[j])) ? u[i] : v[j];
        while (i < n && u[i] == x) i++;
        while (j < m && v[j] == x) j++;
        d = fmax(d, fabs((double)i / (double)n - (double)j / (double)m));
    }
    return d;
}

/* SP of the histograms in d; when every generated value falls outside the reference's range
 * the histograms are disjoint: SP = 1 by convention (numpy's density would be undefined). */
static double sp_or_disjoint(cg_dist *d) {
    if (d->out_ref == d->n_ref) {
        snprintf(d->note, sizeof d->note, "no reference values inside the histogram range");
        return NAN;
    }
    if (d->out_gen == d->n_gen) {
        snprintf(d->note, sizeof d->note, "every generated value is outside the reference's histogram range "
                                          "(SP = 1 by convention)");
        return 1.0;
    }
    return cg_separation_power(d->count_ref, d->count_gen, d->nbins);
}

/* Finite values of a strided column, sorted; mean and std alongside. */
static double *gather(const double *x, int64_t n, int64_t stride, int64_t *nfin, int64_t *nnan, double *mean,
                      double *std) {
    double *y = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!y) return NULL;
    int64_t k = 0;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i * stride];
        if (isnan(v)) continue;
        y[k++] = v;
        s += v;
    }
    *nfin = k;
    *nnan = n - k;
    *mean = k ? s / (double)k : NAN;
    double ss = 0;
    for (int64_t i = 0; i < k; i++) ss += (y[i] - *mean) * (y[i] - *mean);
    *std = k ? sqrt(ss / (double)k) : NAN;
    cg_sort_doubles(y, k);
    return y;
}

void cg_dist_free(cg_dist *d) {
    if (!d) return;
    free(d->edges);
    free(d->count_ref);
    free(d->count_gen);
    memset(d, 0, sizeof *d);
}

cg_status cg_dist_compute(cg_dist *d, const double *ref, int64_t n_ref, int64_t rs, const double *gen, int64_t n_gen,
                          int64_t gs, const cg_bins_spec *spec) {
    memset(d, 0, sizeof *d);
    d->sp = d->w1 = d->ks = NAN;
    double *r = gather(ref, n_ref, rs, &d->n_ref, &d->nan_ref, &d->mean_ref, &d->std_ref);
    double *g = gather(gen, n_gen, gs, &d->n_gen, &d->nan_gen, &d->mean_gen, &d->std_gen);
    if (!r || !g) {
        free(r);
        free(g);
        return cg_set_error(CG_ERR_NOMEM, "distances: out of memory for %lld values", (long long)(n_ref + n_gen));
    }
    cg_status st = CG_OK;
    if (d->n_ref < CG_DIST_MIN_VALUES || d->n_gen < CG_DIST_MIN_VALUES) {
        snprintf(d->note, sizeof d->note, "too few defined values (reference %lld, generated %lld; need %d each)",
                 (long long)d->n_ref, (long long)d->n_gen, CG_DIST_MIN_VALUES);
        goto done;
    }
    d->w1 = cg_wasserstein1(r, d->n_ref, g, d->n_gen);
    d->ks = cg_ks_statistic(r, d->n_ref, g, d->n_gen);
    int nb = cg_bins_make(spec, r, d->n_ref, &d->edges);
    if (nb < 0) {
        st = cg_set_error(CG_ERR_NOMEM, "distances: out of memory for the bins");
        goto done;
    }
    d->nbins = nb;
    d->count_ref = calloc((size_t)nb, sizeof(int64_t));
    d->count_gen = calloc((size_t)nb, sizeof(int64_t));
    if (!d->count_ref || !d->count_gen) {
        st = cg_set_error(CG_ERR_NOMEM, "distances: out of memory for the histograms");
        goto done;
    }
    d->out_ref = cg_histogram(r, d->n_ref, 1, d->edges, nb, d->count_ref);
    d->out_gen = cg_histogram(g, d->n_gen, 1, d->edges, nb, d->count_gen);
    d->sp = sp_or_disjoint(d);
done:
    free(r);
    free(g);
    return st;
}

static int64_t histogram_f(const float *x, int64_t n, const double *e, int nb, int64_t *counts, double *sum) {
    int64_t out = 0;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        s += v;
        int k = bin_of(e, nb, v);
        if (k < 0) out++;
        else counts[k]++;
    }
    *sum = s;
    return out;
}

static double *subsample_sorted(const float *x, int64_t n, int64_t every, int64_t *k) {
    if (every < 1) every = 1;
    *k = n > 0 ? (n - 1) / every + 1 : 0;
    double *y = malloc((size_t)(*k > 0 ? *k : 1) * sizeof(double));
    if (!y) return NULL;
    for (int64_t i = 0; i < *k; i++) y[i] = x[i * every];
    cg_sort_doubles(y, *k);
    return y;
}

cg_status cg_dist_compute_f(cg_dist *d, const float *ref, int64_t n_ref, int64_t ref_every, const float *gen,
                            int64_t n_gen, int64_t gen_every, const cg_bins_spec *spec) {
    memset(d, 0, sizeof *d);
    d->sp = d->w1 = d->ks = NAN;
    d->n_ref = n_ref;
    d->n_gen = n_gen;
    d->mean_ref = d->mean_gen = d->std_ref = d->std_gen = NAN;
    if (n_ref < CG_DIST_MIN_VALUES || n_gen < CG_DIST_MIN_VALUES) {
        snprintf(d->note, sizeof d->note, "too few values (reference %lld, generated %lld; need %d each)",
                 (long long)n_ref, (long long)n_gen, CG_DIST_MIN_VALUES);
        return CG_OK;
    }
    /* edges from the reference's smallest and largest values (the rules need no more) */
    double mm[2] = {INFINITY, -INFINITY};
    for (int64_t i = 0; i < n_ref; i++) {
        mm[0] = fmin(mm[0], ref[i]);
        mm[1] = fmax(mm[1], ref[i]);
    }
    int nb = cg_bins_make(spec, mm, 2, &d->edges);
    d->count_ref = calloc((size_t)(nb > 0 ? nb : 1), sizeof(int64_t));
    d->count_gen = calloc((size_t)(nb > 0 ? nb : 1), sizeof(int64_t));
    int64_t kr = 0, kg = 0;
    double *r = subsample_sorted(ref, n_ref, ref_every, &kr), *g = subsample_sorted(gen, n_gen, gen_every, &kg);
    cg_status st = CG_OK;
    if (nb < 0 || !d->count_ref || !d->count_gen || !r || !g) {
        st = cg_set_error(CG_ERR_NOMEM, "distances: out of memory for %lld cell energies", (long long)(n_ref + n_gen));
        cg_dist_free(d);
        goto done;
    }
    d->nbins = nb;
    double sr, sg;
    d->out_ref = histogram_f(ref, n_ref, d->edges, nb, d->count_ref, &sr);
    d->out_gen = histogram_f(gen, n_gen, d->edges, nb, d->count_gen, &sg);
    d->mean_ref = sr / (double)n_ref;
    d->mean_gen = sg / (double)n_gen;
    double vr = 0, vg = 0;
    for (int64_t i = 0; i < n_ref; i++) vr += ((double)ref[i] - d->mean_ref) * ((double)ref[i] - d->mean_ref);
    for (int64_t i = 0; i < n_gen; i++) vg += ((double)gen[i] - d->mean_gen) * ((double)gen[i] - d->mean_gen);
    d->std_ref = sqrt(vr / (double)n_ref);
    d->std_gen = sqrt(vg / (double)n_gen);
    d->sp = sp_or_disjoint(d);
    d->w1 = cg_wasserstein1(r, kr, g, kg);
    d->ks = cg_ks_statistic(r, kr, g, kg);
done:
    free(r);
    free(g);
    return st;
}
