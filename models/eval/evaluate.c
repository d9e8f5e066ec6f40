/*
 * models/eval/evaluate.c — the evaluation pipeline (evaluate.h): read, compute, compare,
 * classify, write metrics.json, the CSV files and the report.
 *
 * Order of work: check that the two samples can be compared (geometry, conditioning),
 * choose the threshold, stream the reference and then the generated sample through the
 * observables in blocks (keeping per-shower values, hit energies, sums for the mean
 * images and profiles, a few single events and the classifier's voxel rows), then compute
 * every distance from what was kept, bin by conditioning, train the classifiers and write
 * everything. Nothing here is NaN in the JSON: json_num() writes null.
 */
#include "models/eval/evaluate.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/threads.h"
#include "models/eval/classifier.h"
#include "models/eval/distances.h"
#include "models/eval/observables.h"
#include "models/eval/report.h"

#define BLOCK_BYTES (32 << 20)        /* dense floats read at once */
#define MAX_HITS ((int64_t)1 << 28)   /* hit energies kept per sample (1 GiB of float) */
#define CELLS_W1KS_MAX 200000         /* hit energies used for W1/KS and written to CSV */
#define MAX_TEST_POINTS 24
/* Per conditioning bin, fewer showers than this on a side give no metrics: with 50-100 bins
 * the SP of two samples of N showers from one distribution is about bins/(2N), 0.25-0.5
 * at N = 100, so smaller bins would show noise. */
#define BIN_MIN_SHOWERS 100
/* Below this many showers per sample the report warns about the SP's noise floor. */
#define SMALL_SAMPLE 1000

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cg_eval_defaults(cg_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_single = 3;
    o->seed = 1;
    o->classifier[0] = o->classifier[1] = true;
    o->cls_width[0] = 128;
    o->cls_width[1] = 32;
    o->cls_layers = 2;
    o->cls_epochs[0] = 20;
    o->cls_epochs[1] = 4;
    o->cls_batch = 128;
    o->cls_lr = 1e-3;
    o->cls_max_per_class[0] = 6000;
    o->cls_max_per_class[1] = 2000;
}

void cg_eval_warn(cg_eval_results *r, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->warnings = cg_xrealloc(r->warnings, (size_t)(r->nwarnings + 1) * sizeof(char *));
    r->warnings[r->nwarnings++] = strdup(buf);
}

/* ------------------------------------------------------------- the samples ---- */

typedef struct {
    const char *name;
    const cg_cvox_info *info;
    int64_t n;                 /* events used */
    cg_cvox_reader *rd;        /* a file, or: */
    const float *dense, *cond; /* memory */
} source;

static cg_status source_read(source *s, int64_t first, int64_t n, float *dense, float *cond) {
    if (s->rd) return cg_cvox_read(s->rd, first, n, dense, cond);
    int64_t nc = s->info->geom.ncells, nk = s->info->ncond;
    memcpy(dense, s->dense + first * nc, (size_t)(n * nc) * sizeof(float));
    if (nk && cond) memcpy(cond, s->cond + first * nk, (size_t)(n * nk) * sizeof(float));
    return CG_OK;
}

/* What is kept of one sample while it streams by. */
typedef struct {
    int64_t n;
    double *values;        /* n × nv */
    double *cond;          /* n × ncond, in the reference's order of names */
    double *e_inc;         /* n, GeV (NaN when unknown) */
    float *hits;           /* hit energies, MeV */
    int64_t nhits, cap_hits;
    bool hits_truncated;
    double *avg_sum;       /* ncells */
    double *rad_sum, *rad_sq;
    float *x_low;          /* classifier voxel rows (n_low × ncells, MeV after threshold) */
    int64_t n_low;
    int64_t *low_row;      /* event -> row of x_low, or -1 */
    int64_t *perm;         /* a random order of the events (classifier subsets) */
    double raw_sum;        /* Σ of every finite cell before the threshold, MeV (a diagnostic) */
    int64_t nonfinite, nonfinite_showers; /* NaN/inf cells (counted as empty) and their showers */
} sample_data;

static void sample_free(sample_data *s) {
    free(s->values), free(s->cond), free(s->e_inc), free(s->hits), free(s->avg_sum);
    free(s->rad_sum), free(s->rad_sq), free(s->x_low), free(s->low_row), free(s->perm);
    memset(s, 0, sizeof *s);
}

static double energy_to_gev(const char *unit) {
    if (!strcmp(unit, "MeV")) return 1e-3;
    if (!strcmp(unit, "keV")) return 1e-6;
    if (!strcmp(unit, "TeV")) return 1e3;
    return 1.0; /* "GeV" or not given: io/cvox.h's convention */
}

/* ------------------------------------------------------------- input checks ---- */

static int feq(double a, double b) { return fabs(a - b) <= 1e-5 * fmax(1.0, fmax(fabs(a), fabs(b))); }

static cg_status check_geometry(const source *ref, const source *gen) {
    const cg_geometry *a = &ref->info->geom, *b = &gen->info->geom;
    const char *rn = ref->name, *gn = gen->name;
    if (a->nlayers != b->nlayers || a->ncells != b->ncells)
        return cg_set_error(CG_ERR_INVALID,
                            "different geometries: %s has %d layers and %lld cells ('%s'), %s has %d layers and %lld "
                            "cells ('%s')",
                            rn, a->nlayers, (long long)a->ncells, a->name, gn, b->nlayers, (long long)b->ncells,
                            b->name);
    for (int l = 0; l < a->nlayers; l++) {
        const cg_layer *p = &a->layer[l], *q = &b->layer[l];
        if (p->rows != q->rows || p->cols != q->cols || p->binning != q->binning)
            return cg_set_error(CG_ERR_INVALID,
                                "different geometries: layer %d is %d x %d %s in %s but %d x %d %s in %s", l, p->rows,
                                p->cols, p->binning == CG_BIN_POLAR ? "polar" : "cartesian", rn, q->rows, q->cols,
                                q->binning == CG_BIN_POLAR ? "polar" : "cartesian", gn);
        int same = feq(p->z_mm, q->z_mm);
        if (p->binning == CG_BIN_POLAR)
            for (int k = 0; k <= p->cols; k++) same = same && feq(p->r_edges[k], q->r_edges[k]);
        else
            same = same && feq(p->cell_w, q->cell_w) && feq(p->cell_h, q->cell_h);
        if (!same)
            return cg_set_error(CG_ERR_INVALID,
                                "different geometries: layer %d has other cell sizes or depth in %s than in %s", l, rn,
                                gn);
    }
    if (!feq(a->to_mev, b->to_mev) || strcmp(a->energy_unit, b->energy_unit))
        return cg_set_error(CG_ERR_INVALID, "different energy units: %s stores %s (x%g to MeV), %s stores %s (x%g)", rn,
                            a->energy_unit, a->to_mev, gn, b->energy_unit, b->to_mev);
    return CG_OK;
}

/* map[k] = index in the generated file of the reference's conditioning k */
static cg_status check_conditioning(const source *ref, const source *gen, int *map) {
    const cg_cvox_info *a = ref->info, *b = gen->info;
    char la[400] = "", lb[400] = "";
    for (int k = 0; k < a->ncond; k++)
        snprintf(la + strlen(la), sizeof la - strlen(la), "%s%s", k ? ", " : "", a->cond_name[k]);
    for (int k = 0; k < b->ncond; k++)
        snprintf(lb + strlen(lb), sizeof lb - strlen(lb), "%s%s", k ? ", " : "", b->cond_name[k]);
    if (a->ncond != b->ncond)
        return cg_set_error(CG_ERR_INVALID, "mismatched conditioning: %s has [%s], %s has [%s]", ref->name, la,
                            gen->name, lb);
    for (int k = 0; k < a->ncond; k++) {
        int j = cg_cvox_cond_index(b, a->cond_name[k]);
        if (j < 0)
            return cg_set_error(CG_ERR_INVALID, "mismatched conditioning: %s has [%s], %s has [%s]", ref->name, la,
                                gen->name, lb);
        if (strcmp(a->cond_unit[k], b->cond_unit[j]))
            return cg_set_error(CG_ERR_INVALID, "mismatched conditioning units: '%s' is in '%s' in %s but '%s' in %s",
                                a->cond_name[k], a->cond_unit[k], ref->name, b->cond_unit[j], gen->name);
        map[k] = j;
    }
    return CG_OK;
}

/* ---------------------------------------------------------------- streaming ---- */

typedef struct {
    const cg_eval_opts *o;
    cg_eval_results *r;
    cg_obs_ctx *obs;
    int nv, ncond, ienergy;
    double e_to_gev;
    sample_data s[2];
} eval_state;

static void random_order(int64_t *perm, int64_t n, uint64_t seed) {
    cg_rng rng = cg_rng_make(seed);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)cg_rng_below(&rng, (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static cg_status stream_sample(eval_state *E, int which, source *src, const int *map) {
    cg_eval_results *r = E->r;
    sample_data *S = &E->s[which];
    const cg_geometry *g = &r->info.geom;
    int64_t n = src->n, nc = g->ncells;
    int nk = src->info->ncond, nrad = cg_obs_nradial(E->obs);
    double thr = r->threshold, to_mev = g->to_mev;
    S->n = n;
    S->values = malloc((size_t)n * E->nv * sizeof(double));
    S->cond = malloc((size_t)(n * (nk ? nk : 1)) * sizeof(double));
    S->e_inc = malloc((size_t)n * sizeof(double));
    S->avg_sum = calloc((size_t)nc, sizeof(double));
    S->rad_sum = calloc((size_t)nrad, sizeof(double));
    S->rad_sq = calloc((size_t)nrad, sizeof(double));
    S->perm = malloc((size_t)n * sizeof(int64_t));
    S->low_row = malloc((size_t)n * sizeof(int64_t));
    int64_t block = BLOCK_BYTES / (nc * (int64_t)sizeof(float));
    block = block < 1 ? 1 : block > n ? n : block;
    float *dense = malloc((size_t)(block * nc) * sizeof(float));
    float *cond = malloc((size_t)(block * (nk ? nk : 1)) * sizeof(float));
    double *radial = malloc((size_t)(block * nrad) * sizeof(double));
    cg_status st = CG_OK;
    if (!S->values || !S->cond || !S->e_inc || !S->avg_sum || !S->rad_sum || !S->rad_sq || !S->perm || !S->low_row ||
        !dense || !cond || !radial) {
        st = cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory for %lld events of %s", (long long)n, src->name);
        goto out;
    }
    /* the classifiers' subsets: the first events of a random order, the same order for both
     * samples (a sample compared with itself then gives the classifier identical rows) */
    random_order(S->perm, n, E->o->seed * 2 + 17);
    int64_t cap = E->o->classifier[1] ? E->o->cls_max_per_class[1] : 0;
    S->n_low = n < cap ? n : cap;
    for (int64_t i = 0; i < n; i++) S->low_row[i] = -1;
    for (int64_t i = 0; i < S->n_low; i++) S->low_row[S->perm[i]] = i;
    if (S->n_low >= CG_CLS_MIN_PER_CLASS) {
        S->x_low = malloc((size_t)(S->n_low * nc) * sizeof(float));
        if (!S->x_low) {
            st = cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory for %lld voxel rows of the classifier (%.0f MB); "
                                            "lower the classifier's sample size",
                              (long long)S->n_low, (double)(S->n_low * nc) * 4e-6);
            goto out;
        }
    }
    int ns = E->o->n_single < 0 ? 0 : E->o->n_single > n ? (int)n : E->o->n_single;
    r->nsingle[which] = ns;
    r->single[which] = ns ? malloc((size_t)(ns * nc) * sizeof(float)) : NULL;
    r->single_cond[which] = ns && nk ? malloc((size_t)(ns * nk) * sizeof(float)) : NULL;

    double t0 = now_s();
    for (int64_t first = 0; first < n; first += block) {
        int64_t nb = n - first < block ? n - first : block;
        st = source_read(src, first, nb, dense, nk ? cond : NULL);
        if (st != CG_OK) goto out;
        for (int64_t i = 0; i < nb; i++) {
            double *c = S->cond + (first + i) * nk;
            for (int k = 0; k < nk; k++) c[k] = cond[i * nk + map[k]];
            S->e_inc[first + i] = E->ienergy >= 0 ? c[E->ienergy] * E->e_to_gev : NAN;
        }
        cg_obs_compute_batch(E->obs, nb, dense, S->e_inc + first, S->values + first * E->nv, radial);
        for (int64_t i = 0; i < nb; i++) {
            const float *x = dense + i * nc;
            int64_t ev = first + i, row = S->low_row[ev];
            float *xl = row >= 0 && S->x_low ? S->x_low + row * nc : NULL;
            double raw = 0;
            int64_t bad = 0;
            for (int64_t j = 0; j < nc; j++) {
                if (isfinite(x[j])) raw += x[j];
                else bad++;
            }
            S->raw_sum += raw * to_mev;
            S->nonfinite += bad;
            S->nonfinite_showers += bad > 0;
            for (int64_t j = 0; j < nc; j++) {
                float v = cg_obs_is_hit(x[j], thr) ? (float)((double)x[j] * to_mev) : 0.0f;
                if (xl) xl[j] = v;
                if (v == 0) continue;
                S->avg_sum[j] += v;
                if (S->nhits == S->cap_hits) {
                    if (S->cap_hits >= MAX_HITS) {
                        S->hits_truncated = true;
                        continue;
                    }
                    int64_t cap2 = S->cap_hits ? 2 * S->cap_hits : 1 << 16;
                    float *h = realloc(S->hits, (size_t)cap2 * sizeof(float));
                    if (!h) {
                        st = cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory for %lld hit energies of %s",
                                          (long long)cap2, src->name);
                        goto out;
                    }
                    S->hits = h;
                    S->cap_hits = cap2;
                }
                S->hits[S->nhits++] = v;
            }
            for (int k = 0; k < nrad; k++) {
                double e = radial[i * nrad + k];
                S->rad_sum[k] += e;
                S->rad_sq[k] += e * e;
            }
            if (ev < ns) {
                memcpy(r->single[which] + ev * nc, x, (size_t)nc * sizeof(float));
                if (nk)
                    for (int k = 0; k < nk; k++) r->single_cond[which][ev * nk + k] = (float)S->cond[ev * nk + k];
            }
        }
        if (E->o->verbose && (first / block) % 16 == 15)
            fprintf(stderr, "evaluate: %s: %lld / %lld events\n", src->name, (long long)(first + nb), (long long)n);
    }
    r->seconds_read += now_s() - t0;
    if (S->nonfinite)
        cg_eval_warn(r, "%s: %lld cells in %lld showers are NaN or infinite; they count as empty", src->name,
                     (long long)S->nonfinite, (long long)S->nonfinite_showers);
    if (S->hits_truncated)
        cg_eval_warn(r, "%s has more than %lld hits: the cell energy spectrum uses the first %lld", src->name,
                     (long long)MAX_HITS, (long long)MAX_HITS);
out:
    free(dense);
    free(cond);
    free(radial);
    return st;
}

/* ---------------------------------------------------------------- distances ---- */

static void obs_init(cg_eval_obs *o, const char *key, const char *label, const char *unit, cg_bins_rule rule,
                     double lo, double hi, int nedges, double log_lo) {
    memset(o, 0, sizeof *o);
    snprintf(o->key, sizeof o->key, "%s", key);
    snprintf(o->label, sizeof o->label, "%s", label);
    snprintf(o->unit, sizeof o->unit, "%s", unit);
    o->spec = (cg_bins_spec){rule, lo, hi, nedges, log_lo};
    o->logx = rule == CG_BINS_LOG;
    o->d.sp = o->d.w1 = o->d.ks = NAN;
    o->d.mean_ref = o->d.mean_gen = o->d.std_ref = o->d.std_gen = NAN;
}

/* CaloChallenge's log rule starts at the threshold for energies that can be small (layer
 * energies, cells); the maximum cell energy starts at the smallest reference value. */
static void obs_from_meta(cg_eval_obs *o, const cg_obs_meta *m, const char *key, const char *label, double thr_mev) {
    obs_init(o, key, label, m->unit, m->bins, m->lo_bound, m->hi_bound, m->nedges,
             m == cg_obs_scalar(CG_OBS_E_MAX) ? 0 : thr_mev);
}

/* Compare column `col` of the per-shower values over events sel[0..n) (NULL: all). */
static cg_status compare_column(eval_state *E, cg_eval_obs *o, int col, const int64_t *sel_r, int64_t nr,
                                const int64_t *sel_g, int64_t ng) {
    const sample_data *R = &E->s[0], *G = &E->s[1];
    if (!sel_r && !sel_g)
        return cg_dist_compute(&o->d, R->values + col, R->n, E->nv, G->values + col, G->n, E->nv, &o->spec);
    double *a = malloc((size_t)(nr > 0 ? nr : 1) * sizeof(double)), *b = malloc((size_t)(ng > 0 ? ng : 1) * sizeof(double));
    if (!a || !b) {
        free(a), free(b);
        return cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory");
    }
    for (int64_t i = 0; i < nr; i++) a[i] = R->values[sel_r[i] * E->nv + col];
    for (int64_t i = 0; i < ng; i++) b[i] = G->values[sel_g[i] * E->nv + col];
    cg_status st = cg_dist_compute(&o->d, a, nr, 1, b, ng, 1, &o->spec);
    free(a), free(b);
    return st;
}

/* A warning when the reference's histogram range leaves out many more generated values than
 * reference ones: the SP compares only the shapes inside the range. */
static void warn_outside(cg_eval_results *r, const cg_eval_obs *o) {
    const cg_dist *d = &o->d;
    if (!d->nbins || d->n_gen == 0 || d->n_ref == 0 || d->out_gen == d->n_gen) return;
    double fg = (double)d->out_gen / (double)d->n_gen, fr = (double)d->out_ref / (double)d->n_ref;
    if (fg - fr > 0.05)
        cg_eval_warn(r, "%s: %.1f%% of the generated values (%.1f%% of the reference ones) are outside the "
                        "histogram range and not in its SP",
                     o->key, 100 * fg, 100 * fr);
}

static cg_status compute_distances(eval_state *E) {
    cg_eval_results *r = E->r;
    double thr_mev = r->threshold_mev;
    cg_status st = CG_OK;
    /* showers with no hit: a model whose energies sit below the threshold shows up here */
    int64_t nempty[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < E->s[k].n; i++) nempty[k] += E->s[k].values[i * E->nv + CG_OBS_E_VIS] == 0;
    double fe[2] = {(double)nempty[0] / (double)E->s[0].n, (double)nempty[1] / (double)E->s[1].n};
    if (fe[1] > 2 * fe[0] + 0.05)
        cg_eval_warn(r, "%.1f%% of the generated showers have no cell above the threshold (%.3g MeV; reference: "
                        "%.1f%%); the mean energy of a generated shower before the threshold is %.4g MeV (reference "
                        "%.4g MeV)",
                     100 * fe[1], thr_mev, 100 * fe[0], E->s[1].raw_sum / (double)E->s[1].n,
                     E->s[0].raw_sum / (double)E->s[0].n);
    int64_t nmin = E->s[0].n < E->s[1].n ? E->s[0].n : E->s[1].n;
    if (nmin >= CG_DIST_MIN_VALUES && nmin < SMALL_SAMPLE)
        cg_eval_warn(r, "small samples (%lld showers): separation powers include a statistical floor of about "
                        "bins/(2N), %.2f for 50 bins; compare with a reference-vs-reference run of the same size",
                     (long long)nmin, 50.0 / (2.0 * (double)nmin));
    for (int i = 0; i < CG_OBS_NSCALAR && st == CG_OK; i++) {
        const cg_obs_meta *m = cg_obs_scalar(i);
        cg_eval_obs *o = &r->scalar[i];
        obs_from_meta(o, m, m->key, m->label, thr_mev);
        if (i == CG_OBS_E_RATIO && !r->has_energy) {
            snprintf(o->d.note, sizeof o->d.note, "no incident energy: the files have no \"energy\" conditioning");
            cg_eval_warn(r, "%s: %s", o->key, o->d.note);
            continue;
        }
        st = compare_column(E, o, i, NULL, 0, NULL, 0);
        if (st == CG_OK && o->d.note[0]) cg_eval_warn(r, "%s: %s", o->key, o->d.note);
        warn_outside(r, o);
    }
    const cg_obs_meta *lm = cg_obs_layer_meta();
    int nbad = 0;
    char first_bad[256] = "";
    for (int l = 0; l < r->nlayers && st == CG_OK; l++) {
        char key[40], label[64];
        snprintf(key, sizeof key, "%s%d", lm->key, l);
        snprintf(label, sizeof label, "%s%d", lm->label, l);
        obs_from_meta(&r->layer[l], lm, key, label, thr_mev);
        st = compare_column(E, &r->layer[l], CG_OBS_NSCALAR + l, NULL, 0, NULL, 0);
        if (r->layer[l].d.note[0] && nbad++ == 0)
            snprintf(first_bad, sizeof first_bad, "%s: %s", key, r->layer[l].d.note);
    }
    if (nbad) cg_eval_warn(r, "%d layer energies have a note, the first %s", nbad, first_bad);
    if (st != CG_OK) return st;

    /* the cell spectrum: every hit for the histogram, a strided subsample for W1/KS */
    cg_eval_obs *c = &r->cells;
    obs_init(c, "cell_energy", "cell (hit) energy", "MeV", CG_BINS_LOG, 0, INFINITY, 50, thr_mev);
    for (int k = 0; k < 2; k++) {
        int64_t nh = E->s[k].nhits;
        r->cells_every[k] = nh > CELLS_W1KS_MAX ? (nh + CELLS_W1KS_MAX - 1) / CELLS_W1KS_MAX : 1;
    }
    st = cg_dist_compute_f(&c->d, E->s[0].hits, E->s[0].nhits, r->cells_every[0], E->s[1].hits, E->s[1].nhits,
                           r->cells_every[1], &c->spec);
    if (st == CG_OK && c->d.note[0]) cg_eval_warn(r, "%s: %s", c->key, c->d.note);
    warn_outside(r, c);

    /* the conditioning distributions themselves: the samples should share them */
    for (int k = 0; k < r->ncond && st == CG_OK; k++) {
        cg_eval_obs *o = &r->cond[k];
        obs_init(o, r->info.cond_name[k], r->info.cond_name[k], r->info.cond_unit[k], CG_BINS_LINEAR, -INFINITY,
                 INFINITY, 0, 0);
        st = cg_dist_compute(&o->d, E->s[0].cond + k, E->s[0].n, r->ncond, E->s[1].cond + k, E->s[1].n, r->ncond,
                             &o->spec);
        if (st == CG_OK && o->d.ks > 0.1)
            cg_eval_warn(r,
                         "the conditioning '%s' is distributed differently in the two samples (KS %.3f): the "
                         "distances mix model and conditioning differences; compare samples generated for the "
                         "reference's conditioning",
                         o->key, o->d.ks);
    }
    return st;
}

/* ------------------------------------------------------- conditioning bins ---- */

static int count_distinct(const double *sorted, int64_t n) {
    int d = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || sorted[i] != sorted[i - 1]) d++;
    return d;
}

static double nice_step(double x) {
    double p = pow(10.0, floor(log10(x))), m = x / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-4 * fmax(1.0, fabs(b)); }

static int bin_of(const cg_eval_results *r, double e, double t) {
    for (int b = 0; b < r->nbins; b++) {
        const cg_eval_bin *B = &r->bins[b];
        if (B->has_theta) {
            if (near(e, B->e_lo) && near(t, B->t_lo)) return b;
        } else if (B->e_lo == B->e_hi) {
            if (near(e, B->e_lo)) return b;
        } else if (e >= B->e_lo && (e < B->e_hi || (b == r->nbins - 1 && e == B->e_hi))) {
            return b;
        }
    }
    return -1;
}

static cg_status define_bins(eval_state *E) {
    cg_eval_results *r = E->r;
    const sample_data *R = &E->s[0];
    int64_t n = R->n;
    if (!r->has_energy) {
        snprintf(r->bins_rule, sizeof r->bins_rule, "none: the files have no \"energy\" conditioning");
        return CG_OK;
    }
    int it = cg_cvox_cond_index(&r->info, "theta");
    double *e = malloc((size_t)n * sizeof(double)), *t = malloc((size_t)n * sizeof(double));
    if (!e || !t) {
        free(e), free(t);
        return cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        e[i] = R->e_inc[i];
        t[i] = it >= 0 ? R->cond[i * r->ncond + it] : 0;
    }
    cg_sort_doubles(e, n);
    cg_sort_doubles(t, n);
    int de = count_distinct(e, n), dt = it >= 0 ? count_distinct(t, n) : 1;
    r->bins = calloc(MAX_TEST_POINTS > CG_EVAL_MAX_EBINS ? MAX_TEST_POINTS : CG_EVAL_MAX_EBINS, sizeof(cg_eval_bin));
    if (!r->bins) {
        free(e), free(t);
        return cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory");
    }
    if (E->o->n_energy_bins > 0) {
        int nb = E->o->n_energy_bins;
        for (int b = 0; b < nb; b++) {
            r->bins[b].e_lo = E->o->energy_bins[b];
            r->bins[b].e_hi = E->o->energy_bins[b + 1];
        }
        r->nbins = nb;
        snprintf(r->bins_rule, sizeof r->bins_rule, "energy bins given with --energy-bins");
    } else if (de <= 12 && (it < 0 || dt > 12 || dt == 1)) {
        /* the files' fixed test points in energy */
        for (int64_t i = 0; i < n; i++)
            if (i == 0 || e[i] != e[i - 1]) {
                cg_eval_bin *B = &r->bins[r->nbins++];
                B->e_lo = B->e_hi = e[i];
            }
        snprintf(r->bins_rule, sizeof r->bins_rule, "the reference's %d fixed energies", de);
    } else if (it >= 0 && de <= 12 && dt <= 12) {
        /* fixed test points in (energy, theta), as the 000 seed's 9 points */
        for (int64_t i = 0; i < n && r->nbins <= MAX_TEST_POINTS; i++) {
            double ei = R->e_inc[i], ti = R->cond[i * r->ncond + it];
            if (bin_of(r, ei, ti) >= 0) continue;
            if (r->nbins == MAX_TEST_POINTS) {
                r->nbins++;
                break;
            }
            cg_eval_bin *B = &r->bins[r->nbins++];
            B->has_theta = true;
            B->e_lo = B->e_hi = ei;
            B->t_lo = B->t_hi = ti;
        }
        if (r->nbins > MAX_TEST_POINTS) { /* too many combinations: energies only */
            memset(r->bins, 0, MAX_TEST_POINTS * sizeof(cg_eval_bin));
            r->nbins = 0;
            for (int64_t i = 0; i < n; i++)
                if (i == 0 || e[i] != e[i - 1]) {
                    cg_eval_bin *B = &r->bins[r->nbins++];
                    B->e_lo = B->e_hi = e[i];
                }
            snprintf(r->bins_rule, sizeof r->bins_rule, "the reference's %d fixed energies", de);
        } else {
            snprintf(r->bins_rule, sizeof r->bins_rule, "the reference's %d fixed test points in (energy, theta)",
                     r->nbins);
        }
    } else {
        /* continuous energies: about five bins of a round width, or on a 1-2-5 log scale
         * when the energies span more than a factor 20 (log-uniform spectra) */
        double lo = e[0], hi = e[n - 1];
        if (lo > 0 && hi >= 20 * lo) {
            double v[64];
            int nv = 0;
            for (int k = (int)floor(log10(lo)) - 1; nv < 63 && k <= (int)ceil(log10(hi)) + 1; k++)
                for (int m = 1; m <= 5 && nv < 63; m += m == 1 ? 1 : 3) v[nv++] = m * pow(10.0, k);
            int a = 0, b = nv - 1;
            while (a + 1 < nv && v[a + 1] <= lo) a++;
            while (b - 1 >= 0 && v[b - 1] >= hi) b--;
            int step = (b - a + CG_EVAL_MAX_EBINS / 4 - 1) / (CG_EVAL_MAX_EBINS / 4) > 1 ? 3 : 1; /* decades */
            int nb = 0;
            for (int i = a; i < b && nb < CG_EVAL_MAX_EBINS; i += step, nb++) {
                r->bins[nb].e_lo = v[i];
                r->bins[nb].e_hi = v[i + step < b ? i + step : b];
            }
            r->nbins = nb;
            snprintf(r->bins_rule, sizeof r->bins_rule, "%d energy bins on a %s log scale", nb,
                     step == 1 ? "1-2-5" : "decade");
        } else if (hi > lo) {
            double w = nice_step((hi - lo) / 5);
            double start = floor(lo / w) * w;
            int nb = (int)ceil((hi - start) / w - 1e-9);
            if (nb < 1) nb = 1;
            if (nb > CG_EVAL_MAX_EBINS) nb = CG_EVAL_MAX_EBINS;
            for (int b = 0; b < nb; b++) {
                r->bins[b].e_lo = start + b * w;
                r->bins[b].e_hi = b == nb - 1 ? fmax(start + (b + 1) * w, hi) : start + (b + 1) * w;
            }
            r->nbins = nb;
            snprintf(r->bins_rule, sizeof r->bins_rule, "%d energy bins of %g GeV", nb, w);
        } else {
            snprintf(r->bins_rule, sizeof r->bins_rule, "none: one incident energy");
        }
    }
    for (int b = 0; b < r->nbins; b++) {
        cg_eval_bin *B = &r->bins[b];
        if (B->has_theta)
            snprintf(B->label, sizeof B->label, "E = %g GeV, theta = %g deg", B->e_lo, B->t_lo);
        else if (B->e_lo == B->e_hi)
            snprintf(B->label, sizeof B->label, "E = %g GeV", B->e_lo);
        else
            snprintf(B->label, sizeof B->label, "E in [%g, %g%c GeV", B->e_lo, B->e_hi, b == r->nbins - 1 ? ']' : ')');
    }
    free(e), free(t);
    return CG_OK;
}

static cg_status compare_bins(eval_state *E) {
    cg_eval_results *r = E->r;
    int it = cg_cvox_cond_index(&r->info, "theta");
    int64_t *sel[2] = {NULL, NULL};
    int *which[2] = {NULL, NULL};
    cg_status st = CG_OK;
    for (int k = 0; k < 2; k++) {
        const sample_data *S = &E->s[k];
        sel[k] = malloc((size_t)(S->n > 0 ? S->n : 1) * sizeof(int64_t));
        which[k] = malloc((size_t)(S->n > 0 ? S->n : 1) * sizeof(int));
        if (!sel[k] || !which[k]) {
            st = cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory");
            goto out;
        }
        for (int64_t i = 0; i < S->n; i++)
            which[k][i] = bin_of(r, S->e_inc[i], it >= 0 ? S->cond[i * r->ncond + it] : 0);
    }
    int nskip = 0;
    for (int b = 0; b < r->nbins && st == CG_OK; b++) {
        cg_eval_bin *B = &r->bins[b];
        int64_t cnt[2] = {0, 0};
        for (int k = 0; k < 2; k++)
            for (int64_t i = 0; i < E->s[k].n; i++)
                if (which[k][i] == b) sel[k][cnt[k]++] = i;
        B->n_ref = cnt[0];
        B->n_gen = cnt[1];
        for (int i = 0; i < CG_OBS_NSCALAR; i++) {
            const cg_obs_meta *m = cg_obs_scalar(i);
            obs_from_meta(&B->obs[i], m, m->key, m->label, r->threshold_mev);
        }
        if (cnt[0] < BIN_MIN_SHOWERS || cnt[1] < BIN_MIN_SHOWERS) {
            nskip++;
            continue;
        }
        B->computed = true;
        for (int i = 0; i < CG_OBS_NSCALAR && st == CG_OK; i++) {
            if (i == CG_OBS_E_RATIO && !r->has_energy) continue;
            st = compare_column(E, &B->obs[i], i, sel[0], cnt[0], sel[1], cnt[1]);
        }
    }
    if (nskip)
        cg_eval_warn(r, "%d of %d conditioning bins have fewer than %d showers in a sample: no metrics there", nskip,
                     r->nbins, BIN_MIN_SHOWERS);
out:
    for (int k = 0; k < 2; k++) free(sel[k]), free(which[k]);
    return st;
}

/* ------------------------------------------------------------ classifiers ---- */

/* High-level features: log10 E_inc, the scalar observables, log10(E_layer + 1e-8 MeV) as
 * CaloChallenge's cls-high; undefined values replaced by the column's mean (standardised
 * inside the classifier). */
static cg_status run_classifier_high(eval_state *E) {
    cg_eval_results *r = E->r;
    int64_t cap = E->o->cls_max_per_class[0];
    int64_t m[2];
    for (int k = 0; k < 2; k++) m[k] = E->s[k].n < cap ? E->s[k].n : cap;
    int dim = (r->has_energy ? 1 : 0) + CG_OBS_NSCALAR + r->nlayers;
    float *x[2] = {malloc((size_t)(m[0] * dim + 1) * sizeof(float)), malloc((size_t)(m[1] * dim + 1) * sizeof(float))};
    double *colmean = calloc((size_t)dim, sizeof(double));
    int64_t *colcnt = calloc((size_t)dim, sizeof(int64_t));
    cg_status st = CG_OK;
    if (!x[0] || !x[1] || !colmean || !colcnt) {
        st = cg_set_error(CG_ERR_NOMEM, "classifier: out of memory for the features");
        goto out;
    }
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < m[k]; i++) {
            int64_t ev = E->s[k].perm[i];
            const double *v = E->s[k].values + ev * E->nv;
            float *row = x[k] + i * dim;
            int j = 0;
            if (r->has_energy) row[j++] = (float)log10(fmax(E->s[k].e_inc[ev], 1e-30));
            for (int s = 0; s < CG_OBS_NSCALAR; s++) row[j++] = (float)v[s];
            for (int l = 0; l < r->nlayers; l++) row[j++] = (float)log10(v[CG_OBS_NSCALAR + l] + 1e-8);
            for (j = 0; j < dim; j++)
                if (isfinite(row[j])) {
                    colmean[j] += row[j];
                    colcnt[j]++;
                }
        }
    for (int j = 0; j < dim; j++) colmean[j] = colcnt[j] ? colmean[j] / (double)colcnt[j] : 0;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < m[k] * dim; i++)
            if (!isfinite(x[k][i])) x[k][i] = (float)colmean[i % dim];
    cg_cls_cfg cfg = {E->o->cls_width[0], E->o->cls_layers, E->o->cls_epochs[0], E->o->cls_batch,
                      (float)E->o->cls_lr, true, E->o->seed};
    r->cls_cfg[0] = cfg;
    snprintf(r->cls_features[0], sizeof r->cls_features[0], "%s%d scalar observables, log10 of %d layer energies",
             r->has_energy ? "log10 E_inc, " : "", CG_OBS_NSCALAR, r->nlayers);
    if (E->o->verbose)
        fprintf(stderr, "evaluate: classifier on high-level features (%d inputs, %lld + %lld showers)\n", dim,
                (long long)m[0], (long long)m[1]);
    st = cg_cls_run(x[0], m[0], x[1], m[1], dim, &cfg, &r->cls[0]);
    if (st == CG_OK) r->cls_ran[0] = true;
out:
    free(x[0]), free(x[1]), free(colmean), free(colcnt);
    return st;
}

/* Voxels: CaloChallenge's cls-low, [log10 E_inc, 100·voxel/E_inc], with E_inc scaled by the
 * reference's mean E_vis/E_inc so that a sampling calorimeter gets inputs of the size a
 * calibrated one gives (without an incident energy: 100·voxel / mean reference E_vis). */
static cg_status run_classifier_low(eval_state *E) {
    cg_eval_results *r = E->r;
    int64_t nc = r->info.geom.ncells, m[2] = {E->s[0].n_low, E->s[1].n_low};
    int extra = r->has_energy ? 1 : 0, dim = (int)nc + extra;
    double f = r->has_energy ? r->scalar[CG_OBS_E_RATIO].d.mean_ref : r->scalar[CG_OBS_E_VIS].d.mean_ref;
    if (!(f > 0) || !isfinite(f)) f = 1;
    /* rows are rewritten in place: nc cells -> extra + nc features (the buffer grows by one
     * float per row when there is an energy) */
    double lmean = 0, lsd = 1;
    if (extra) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < E->s[0].n; i++) s += log10(E->s[0].e_inc[i]);
        lmean = s / (double)E->s[0].n;
        for (int64_t i = 0; i < E->s[0].n; i++) ss += pow(log10(E->s[0].e_inc[i]) - lmean, 2);
        lsd = sqrt(ss / (double)E->s[0].n);
        if (!(lsd > 1e-9)) lsd = 1;
    }
    for (int k = 0; k < 2; k++) {
        sample_data *S = &E->s[k];
        if (extra) {
            float *g = realloc(S->x_low, (size_t)(m[k] * dim) * sizeof(float));
            if (!g) return cg_set_error(CG_ERR_NOMEM, "classifier: out of memory for the voxel features");
            S->x_low = g;
        }
        for (int64_t i = m[k] - 1; i >= 0; i--) { /* backwards: rows only move up */
            int64_t ev = S->perm[i];
            double scale = extra ? 100.0 / (S->e_inc[ev] * 1000.0 * f) : 100.0 / f;
            float *src = S->x_low + i * nc, *dst = S->x_low + i * dim;
            for (int64_t j = nc - 1; j >= 0; j--) dst[j + extra] = (float)(src[j] * scale);
            if (extra) dst[0] = (float)((log10(S->e_inc[ev]) - lmean) / lsd);
        }
    }
    cg_cls_cfg cfg = {E->o->cls_width[1], E->o->cls_layers, E->o->cls_epochs[1], E->o->cls_batch,
                      (float)E->o->cls_lr, false, E->o->seed + 1};
    r->cls_cfg[1] = cfg;
    snprintf(r->cls_features[1], sizeof r->cls_features[1], "%s%lld voxels x 100 / (E_inc x %.4g)",
             extra ? "log10 E_inc (standardised), " : "", (long long)nc, f);
    if (E->o->verbose)
        fprintf(stderr, "evaluate: classifier on voxels (%d inputs, %lld + %lld showers)\n", dim, (long long)m[0],
                (long long)m[1]);
    cg_status st = cg_cls_run(E->s[0].x_low, m[0], E->s[1].x_low, m[1], dim, &cfg, &r->cls[1]);
    if (st == CG_OK) r->cls_ran[1] = true;
    return st;
}

static cg_status run_classifiers(eval_state *E) {
    cg_eval_results *r = E->r;
    double t0 = now_s();
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "voxel classifier" : "high-level classifier";
        if (!E->o->classifier[k]) {
            snprintf(r->cls_note[k], sizeof r->cls_note[k], "not run (switched off)");
            continue;
        }
        int64_t have = k ? (E->s[0].n_low < E->s[1].n_low ? E->s[0].n_low : E->s[1].n_low)
                         : (E->s[0].n < E->s[1].n ? E->s[0].n : E->s[1].n);
        if (have < CG_CLS_MIN_PER_CLASS) {
            snprintf(r->cls_note[k], sizeof r->cls_note[k], "not run: %lld showers per sample, need %d",
                     (long long)have, CG_CLS_MIN_PER_CLASS);
            cg_eval_warn(r, "%s %s", what, r->cls_note[k]);
            continue;
        }
        cg_status st = k ? run_classifier_low(E) : run_classifier_high(E);
        if (st == CG_ERR_NOMEM || st == CG_ERR_DEVICE) return st;
        if (st != CG_OK) {
            snprintf(r->cls_note[k], sizeof r->cls_note[k], "failed: %s", cg_last_error());
            cg_eval_warn(r, "%s %s", what, r->cls_note[k]);
            cg_clear_error();
        }
    }
    r->seconds_classifier = now_s() - t0;
    return CG_OK;
}

/* ---------------------------------------------------------------- profiles ---- */

static cg_status profiles(eval_state *E) {
    cg_eval_results *r = E->r;
    int nl = r->nlayers, nrad = cg_obs_nradial(E->obs);
    r->nrad = nrad;
    memcpy(r->rad_edges, cg_obs_radial_edges(E->obs), (size_t)(nrad + 1) * sizeof(double));
    for (int k = 0; k < 2; k++) {
        const sample_data *S = &E->s[k];
        double n = (double)S->n;
        r->long_mean[k] = calloc((size_t)nl, sizeof(double));
        r->long_sem[k] = calloc((size_t)nl, sizeof(double));
        r->rad_mean[k] = calloc((size_t)nrad, sizeof(double));
        r->rad_sem[k] = calloc((size_t)nrad, sizeof(double));
        r->avg[k] = malloc((size_t)r->info.geom.ncells * sizeof(double));
        if (!r->long_mean[k] || !r->long_sem[k] || !r->rad_mean[k] || !r->rad_sem[k] || !r->avg[k])
            return cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory");
        for (int l = 0; l < nl; l++) {
            double s = 0, ss = 0;
            for (int64_t i = 0; i < S->n; i++) {
                double v = S->values[i * E->nv + CG_OBS_NSCALAR + l];
                s += v;
                ss += v * v;
            }
            r->long_mean[k][l] = s / n;
            r->long_sem[k][l] = sqrt(fmax(ss / n - (s / n) * (s / n), 0) / n);
        }
        for (int b = 0; b < nrad; b++) {
            double m = S->rad_sum[b] / n;
            r->rad_mean[k][b] = m;
            r->rad_sem[k][b] = sqrt(fmax(S->rad_sq[b] / n - m * m, 0) / n);
        }
        for (int64_t j = 0; j < r->info.geom.ncells; j++) r->avg[k][j] = S->avg_sum[j] / n;
    }
    return CG_OK;
}

/* ------------------------------------------------------------------ output ---- */

typedef struct {
    FILE *f;
    char tmp[4400], path[4300];
} out_file;

static cg_status out_open(out_file *o, const char *dir, const char *name) {
    snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.%d", o->path, (int)getpid());
    o->f = fopen(o->tmp, "w");
    if (!o->f) return cg_set_error(CG_ERR_IO, "cannot write %s: %s", o->tmp, strerror(errno));
    return CG_OK;
}

/* Close and rename into place; on any write error remove the temporary file. */
static cg_status out_close(out_file *o) {
    int bad = ferror(o->f);
    int err = errno;
    if (fclose(o->f) != 0) {
        bad = 1;
        err = errno;
    }
    o->f = NULL;
    if (bad) {
        remove(o->tmp);
        return cg_set_error(CG_ERR_IO, "cannot write %s: %s", o->path, strerror(err ? err : EIO));
    }
    if (rename(o->tmp, o->path) != 0) {
        err = errno;
        remove(o->tmp);
        return cg_set_error(CG_ERR_IO, "cannot rename %s to %s: %s", o->tmp, o->path, strerror(err));
    }
    return CG_OK;
}

static cg_status mkdirs(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return cg_set_error(CG_ERR_IO, "cannot create the folder %s: %s", p, strerror(errno));
            *s = '/';
        }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return cg_set_error(CG_ERR_IO, "cannot create the folder %s: %s", p, strerror(errno));
    struct stat sb;
    if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return cg_set_error(CG_ERR_IO, "%s exists and is not a folder", p);
    return CG_OK;
}

/* The shortest of %.15g..%.17g that reads back to the same double: exact and compact. */
static void put_double(FILE *f, double v) {
    if (isnan(v)) {
        fputs("nan", f);
        return;
    }
    char b[40];
    for (int p = 15; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        if (strtod(b, NULL) == v) break;
    }
    fputs(b, f);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v)) put_double(f, v);
    else fputs("null", f);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static const char *rule_name(cg_bins_rule r) {
    switch (r) {
    case CG_BINS_INTEGER: return "integer";
    case CG_BINS_LOG: return "log";
    case CG_BINS_CC_RATIO: return "calochallenge_ratio";
    default: return "linear";
    }
}

static cg_status write_histogram(const char *dir, cg_eval_obs *o, const char *prefix) {
    if (!o->d.nbins) return CG_OK;
    snprintf(o->hist_file, sizeof o->hist_file, "histograms/%s%s.csv", prefix, o->key);
    out_file of;
    cg_status st = out_open(&of, dir, o->hist_file);
    if (st != CG_OK) return st;
    FILE *f = of.f;
    int64_t nr = 0, ng = 0;
    for (int b = 0; b < o->d.nbins; b++) {
        nr += o->d.count_ref[b];
        ng += o->d.count_gen[b];
    }
    fprintf(f, "lo,hi,count_reference,count_generated,density_reference,density_generated\n");
    for (int b = 0; b < o->d.nbins; b++) {
        double w = o->d.edges[b + 1] - o->d.edges[b];
        put_double(f, o->d.edges[b]);
        fputc(',', f);
        put_double(f, o->d.edges[b + 1]);
        fprintf(f, ",%lld,%lld,", (long long)o->d.count_ref[b], (long long)o->d.count_gen[b]);
        put_double(f, nr ? (double)o->d.count_ref[b] / ((double)nr * w) : NAN);
        fputc(',', f);
        put_double(f, ng ? (double)o->d.count_gen[b] / ((double)ng * w) : NAN);
        fputc('\n', f);
    }
    return out_close(&of);
}

static void json_obs(FILE *f, const cg_eval_obs *o, const char *ind, bool full) {
    const cg_dist *d = &o->d;
    fputc('{', f);
    const char *keys[] = {"separation_power", "w1", "ks", "mean_reference", "mean_generated", "std_reference",
                          "std_generated"};
    const double vals[] = {d->sp, d->w1, d->ks, d->mean_ref, d->mean_gen, d->std_ref, d->std_gen};
    for (int i = 0; i < 7; i++) {
        fprintf(f, "%s\n%s  \"%s\": ", i ? "," : "", ind, keys[i]);
        json_num(f, vals[i]);
    }
    fprintf(f, ",\n%s  \"n_reference\": %lld,\n%s  \"n_generated\": %lld", ind, (long long)d->n_ref, ind,
            (long long)d->n_gen);
    if (full) {
        fprintf(f, ",\n%s  \"label\": ", ind);
        json_str(f, o->label);
        fprintf(f, ",\n%s  \"unit\": ", ind);
        json_str(f, o->unit);
        fprintf(f, ",\n%s  \"undefined_reference\": %lld,\n%s  \"undefined_generated\": %lld", ind,
                (long long)d->nan_ref, ind, (long long)d->nan_gen);
        fprintf(f, ",\n%s  \"outside_reference\": %lld,\n%s  \"outside_generated\": %lld", ind,
                (long long)d->out_ref, ind, (long long)d->out_gen);
        fprintf(f, ",\n%s  \"binning\": ", ind);
        json_str(f, rule_name(o->spec.rule));
        fprintf(f, ",\n%s  \"bins\": %d", ind, d->nbins);
    }
    fprintf(f, ",\n%s  \"histogram\": ", ind);
    if (o->hist_file[0]) json_str(f, o->hist_file);
    else fputs("null", f);
    fprintf(f, ",\n%s  \"note\": ", ind);
    if (d->note[0]) json_str(f, d->note);
    else fputs("null", f);
    fprintf(f, "\n%s}", ind);
}

static void json_cls(FILE *f, const cg_eval_results *r, int k) {
    const cg_cls_result *c = &r->cls[k];
    bool ran = r->cls_ran[k];
    fputc('{', f);
    const char *keys[] = {"auc", "jsd", "auc_calibrated", "jsd_calibrated", "accuracy"};
    const double vals[] = {c->auc, c->jsd, c->auc_cal, c->jsd_cal, c->accuracy};
    for (int i = 0; i < 5; i++) {
        fprintf(f, "%s\n      \"%s\": ", i ? "," : "", keys[i]);
        json_num(f, ran ? vals[i] : NAN);
    }
    if (ran) {
        fprintf(f,
                ",\n      \"best_epoch\": %d,\n      \"epochs\": %d,\n      \"n_train\": %lld,\n      \"n_test\": "
                "%lld,\n      \"n_val\": %lld,\n      \"inputs\": %d,\n      \"width\": %d,\n      \"hidden_layers\": "
                "%d,\n      \"parameters\": %lld,\n      \"seconds\": ",
                c->best_epoch, c->epochs, (long long)c->n_train, (long long)c->n_test, (long long)c->n_val, c->dim,
                r->cls_cfg[k].width, r->cls_cfg[k].layers + 1, (long long)c->nparams);
        json_num(f, c->seconds);
        fputs(",\n      \"features\": ", f);
        json_str(f, r->cls_features[k]);
    }
    fputs(",\n      \"note\": ", f);
    if (r->cls_note[k][0]) json_str(f, r->cls_note[k]);
    else fputs("null", f);
    fputs("\n    }", f);
}

static cg_status write_metrics(const char *dir, const cg_eval_results *r) {
    out_file of;
    cg_status st = out_open(&of, dir, "metrics.json");
    if (st != CG_OK) return st;
    FILE *f = of.f;
    const cg_geometry *g = &r->info.geom;
    fprintf(f, "{\n  \"format\": \"calograd-evaluate\",\n  \"version\": 1,\n");
    for (int k = 0; k < 2; k++) {
        fprintf(f, "  \"%s\": {\"path\": ", k ? "generated" : "reference");
        json_str(f, r->name[k]);
        fprintf(f, ", \"events_in_file\": %lld, \"events_used\": %lld, \"particle\": ", (long long)r->n_file[k],
                (long long)r->n[k]);
        json_str(f, k ? r->gen_particle : r->info.particle);
        fputs("},\n", f);
    }
    fputs("  \"geometry\": {\"name\": ", f);
    json_str(f, g->name);
    fprintf(f, ", \"layers\": %d, \"cells\": %lld, \"energy_unit\": ", g->nlayers, (long long)g->ncells);
    json_str(f, g->energy_unit);
    fputs(", \"to_mev\": ", f);
    json_num(f, g->to_mev);
    fputs(", \"mip_mev\": ", f);
    json_num(f, g->mip_mev > 0 ? g->mip_mev : NAN);
    fputs("},\n  \"threshold\": {\"value\": ", f);
    json_num(f, r->threshold);
    fputs(", \"mev\": ", f);
    json_num(f, r->threshold_mev);
    fputs(", \"source\": ", f);
    json_str(f, r->threshold_source);
    fputs("},\n", f);

    /* the summary: the numbers a reader (or `calograd demo`) looks at first */
    double spmax = -1;
    int imax = -1;
    double spsum = 0;
    int nsp = 0;
    for (int i = 0; i < CG_OBS_NSCALAR; i++) {
        double sp = r->scalar[i].d.sp;
        if (!isfinite(sp)) continue;
        spsum += sp;
        nsp++;
        if (sp > spmax) {
            spmax = sp;
            imax = i;
        }
    }
    fputs("  \"summary\": {\n    \"e_vis_over_e_inc_separation_power\": ", f);
    json_num(f, r->scalar[CG_OBS_E_RATIO].d.sp);
    fputs(",\n    \"max_separation_power\": ", f);
    json_num(f, imax >= 0 ? spmax : NAN);
    fputs(",\n    \"max_separation_power_observable\": ", f);
    if (imax >= 0) json_str(f, r->scalar[imax].key);
    else fputs("null", f);
    fputs(",\n    \"mean_separation_power\": ", f);
    json_num(f, nsp ? spsum / nsp : NAN);
    fputs(",\n    \"cell_energy_separation_power\": ", f);
    json_num(f, r->cells.d.sp);
    fputs(",\n    \"classifier_high_auc\": ", f);
    json_num(f, r->cls_ran[0] ? r->cls[0].auc : NAN);
    fputs(",\n    \"classifier_low_auc\": ", f);
    json_num(f, r->cls_ran[1] ? r->cls[1].auc : NAN);
    fprintf(f, ",\n    \"warnings\": %d\n  },\n", r->nwarnings);

    fputs("  \"observables\": {\n", f);
    for (int i = 0; i < CG_OBS_NSCALAR; i++) {
        fprintf(f, "    \"%s\": ", r->scalar[i].key);
        json_obs(f, &r->scalar[i], "    ", true);
        fputs(",\n", f);
    }
    for (int l = 0; l < r->nlayers; l++) {
        fprintf(f, "    \"%s\": ", r->layer[l].key);
        json_obs(f, &r->layer[l], "    ", true);
        fputs(",\n", f);
    }
    fputs("    \"cell_energy\": ", f);
    json_obs(f, &r->cells, "    ", true);
    fprintf(f, "\n  },\n  \"cell_energy_w1_ks_every\": {\"reference\": %lld, \"generated\": %lld},\n",
            (long long)r->cells_every[0], (long long)r->cells_every[1]);

    fputs("  \"conditioning\": {", f);
    for (int k = 0; k < r->ncond; k++) {
        fprintf(f, "%s\n    ", k ? "," : "");
        json_str(f, r->cond[k].key);
        fputs(": ", f);
        json_obs(f, &r->cond[k], "    ", true);
    }
    fputs(r->ncond ? "\n  },\n" : "},\n", f);

    fputs("  \"conditioning_bins\": {\n    \"rule\": ", f);
    json_str(f, r->bins_rule);
    fputs(",\n    \"bins\": [", f);
    for (int b = 0; b < r->nbins; b++) {
        const cg_eval_bin *B = &r->bins[b];
        fprintf(f, "%s\n      {\"label\": ", b ? "," : "");
        json_str(f, B->label);
        fputs(", \"energy_gev\": [", f);
        json_num(f, B->e_lo);
        fputs(", ", f);
        json_num(f, B->e_hi);
        fputs("], \"theta_deg\": ", f);
        if (B->has_theta) {
            fputs("[", f);
            json_num(f, B->t_lo);
            fputs(", ", f);
            json_num(f, B->t_hi);
            fputs("]", f);
        } else {
            fputs("null", f);
        }
        fprintf(f, ", \"n_reference\": %lld, \"n_generated\": %lld,\n       \"observables\": {", (long long)B->n_ref,
                (long long)B->n_gen);
        for (int i = 0; i < CG_OBS_NSCALAR; i++) {
            fprintf(f, "%s\n        \"%s\": ", i ? "," : "", B->obs[i].key);
            json_obs(f, &B->obs[i], "        ", false);
        }
        fputs("}}", f);
    }
    fputs(r->nbins ? "\n    ]\n  },\n" : "]\n  },\n", f);

    fputs("  \"classifier\": {\n    \"high\": ", f);
    json_cls(f, r, 0);
    fputs(",\n    \"low\": ", f);
    json_cls(f, r, 1);
    fputs("\n  },\n", f);

    fputs("  \"files\": {\"report\": \"index.html\", \"observables_reference\": \"observables_reference.csv\", "
          "\"observables_generated\": \"observables_generated.csv\", \"cells_reference\": \"cells_reference.csv\", "
          "\"cells_generated\": \"cells_generated.csv\", \"profiles\": \"profiles.csv\"},\n",
          f);
    fputs("  \"seconds\": {\"total\": ", f);
    json_num(f, r->seconds_total);
    fputs(", \"reading_and_observables\": ", f);
    json_num(f, r->seconds_read);
    fputs(", \"classifiers\": ", f);
    json_num(f, r->seconds_classifier);
    fputs("},\n  \"warnings\": [", f);
    for (int i = 0; i < r->nwarnings; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        json_str(f, r->warnings[i]);
    }
    fputs(r->nwarnings ? "\n  ]\n}\n" : "]\n}\n", f);
    return out_close(&of);
}

static cg_status write_observables_csv(const char *dir, const eval_state *E, int k) {
    const cg_eval_results *r = E->r;
    const sample_data *S = &E->s[k];
    out_file of;
    cg_status st = out_open(&of, dir, k ? "observables_generated.csv" : "observables_reference.csv");
    if (st != CG_OK) return st;
    FILE *f = of.f;
    fputs("event", f);
    for (int c = 0; c < r->ncond; c++) fprintf(f, ",%s", r->info.cond_name[c]);
    for (int i = 0; i < CG_OBS_NSCALAR; i++) fprintf(f, ",%s", r->scalar[i].key);
    for (int l = 0; l < r->nlayers; l++) fprintf(f, ",%s", r->layer[l].key);
    fputc('\n', f);
    for (int64_t i = 0; i < S->n; i++) {
        fprintf(f, "%lld", (long long)i);
        for (int c = 0; c < r->ncond; c++) {
            fputc(',', f);
            put_double(f, S->cond[i * r->ncond + c]);
        }
        for (int j = 0; j < E->nv; j++) {
            fputc(',', f);
            put_double(f, S->values[i * E->nv + j]);
        }
        fputc('\n', f);
    }
    return out_close(&of);
}

static cg_status write_cells_csv(const char *dir, const eval_state *E, int k) {
    const sample_data *S = &E->s[k];
    out_file of;
    cg_status st = out_open(&of, dir, k ? "cells_generated.csv" : "cells_reference.csv");
    if (st != CG_OK) return st;
    fputs("energy_mev\n", of.f);
    int64_t every = E->r->cells_every[k];
    for (int64_t i = 0; i < S->nhits; i += every) {
        put_double(of.f, S->hits[i]);
        fputc('\n', of.f);
    }
    return out_close(&of);
}

static cg_status write_profiles_csv(const char *dir, const cg_eval_results *r) {
    out_file of;
    cg_status st = out_open(&of, dir, "profiles.csv");
    if (st != CG_OK) return st;
    FILE *f = of.f;
    fputs("profile,bin,lo,hi,mean_reference,sem_reference,mean_generated,sem_generated\n", f);
    for (int l = 0; l < r->nlayers; l++) {
        const cg_layer *L = &r->info.geom.layer[l];
        fprintf(f, "longitudinal,%d,", l);
        put_double(f, L->z_mm - 0.5 * L->depth_mm);
        fputc(',', f);
        put_double(f, L->z_mm + 0.5 * L->depth_mm);
        for (int k = 0; k < 2; k++) {
            fputc(',', f);
            put_double(f, r->long_mean[k][l]);
            fputc(',', f);
            put_double(f, r->long_sem[k][l]);
        }
        fputc('\n', f);
    }
    for (int b = 0; b < r->nrad; b++) {
        fprintf(f, "radial,%d,", b);
        put_double(f, r->rad_edges[b]);
        fputc(',', f);
        put_double(f, r->rad_edges[b + 1]);
        for (int k = 0; k < 2; k++) {
            fputc(',', f);
            put_double(f, r->rad_mean[k][b]);
            fputc(',', f);
            put_double(f, r->rad_sem[k][b]);
        }
        fputc('\n', f);
    }
    return out_close(&of);
}

static cg_status write_outputs(const char *dir, eval_state *E) {
    cg_eval_results *r = E->r;
    char hdir[4200];
    snprintf(hdir, sizeof hdir, "%s/histograms", dir);
    cg_status st = mkdirs(hdir);
    for (int i = 0; i < CG_OBS_NSCALAR && st == CG_OK; i++) st = write_histogram(dir, &r->scalar[i], "");
    for (int l = 0; l < r->nlayers && st == CG_OK; l++) st = write_histogram(dir, &r->layer[l], "");
    if (st == CG_OK) st = write_histogram(dir, &r->cells, "");
    for (int k = 0; k < r->ncond && st == CG_OK; k++) st = write_histogram(dir, &r->cond[k], "conditioning_");
    for (int b = 0; b < r->nbins && st == CG_OK; b++) {
        char prefix[24];
        snprintf(prefix, sizeof prefix, "bin%02d_", b);
        for (int i = 0; i < CG_OBS_NSCALAR && st == CG_OK; i++) st = write_histogram(dir, &r->bins[b].obs[i], prefix);
    }
    for (int k = 0; k < 2 && st == CG_OK; k++) st = write_observables_csv(dir, E, k);
    for (int k = 0; k < 2 && st == CG_OK; k++) st = write_cells_csv(dir, E, k);
    if (st == CG_OK) st = write_profiles_csv(dir, r);
    char path[4200];
    snprintf(path, sizeof path, "%s/index.html", dir);
    if (st == CG_OK) st = cg_report_write_html(r, path);
    /* metrics.json last: its presence means the evaluation finished */
    if (st == CG_OK) st = write_metrics(dir, r);
    return st;
}

/* -------------------------------------------------------------- the pipeline ---- */

static void obs_free(cg_eval_obs *o) { cg_dist_free(&o->d); }

static void results_free(cg_eval_results *r) {
    for (int i = 0; i < CG_OBS_NSCALAR; i++) obs_free(&r->scalar[i]);
    for (int l = 0; l < r->nlayers && r->layer; l++) obs_free(&r->layer[l]);
    free(r->layer);
    obs_free(&r->cells);
    for (int k = 0; k < r->ncond; k++) obs_free(&r->cond[k]);
    for (int k = 0; k < 2; k++) {
        free(r->long_mean[k]), free(r->long_sem[k]), free(r->rad_mean[k]), free(r->rad_sem[k]);
        free(r->avg[k]), free(r->single[k]), free(r->single_cond[k]);
    }
    for (int b = 0; b < r->nbins; b++)
        for (int i = 0; i < CG_OBS_NSCALAR; i++) obs_free(&r->bins[b].obs[i]);
    free(r->bins);
    for (int i = 0; i < r->nwarnings; i++) free(r->warnings[i]);
    free(r->warnings);
}

static void fill_summary(const cg_eval_results *r, const char *dir, cg_eval_summary *s) {
    memset(s, 0, sizeof *s);
    s->n_reference = r->n[0];
    s->n_generated = r->n[1];
    s->threshold_mev = r->threshold_mev;
    s->sp_e_ratio = r->scalar[CG_OBS_E_RATIO].d.sp;
    s->sp_e_vis = r->scalar[CG_OBS_E_VIS].d.sp;
    s->sp_n_hits = r->scalar[CG_OBS_N_HITS].d.sp;
    s->sp_cog_z = r->scalar[CG_OBS_COG_Z].d.sp;
    s->sp_r_mean = r->scalar[CG_OBS_R_MEAN].d.sp;
    s->sp_e_max = r->scalar[CG_OBS_E_MAX].d.sp;
    s->sp_cells = r->cells.d.sp;
    s->sp_max = NAN;
    for (int i = 0; i < CG_OBS_NSCALAR; i++) {
        double sp = r->scalar[i].d.sp;
        if (isfinite(sp) && (isnan(s->sp_max) || sp > s->sp_max)) {
            s->sp_max = sp;
            snprintf(s->sp_max_key, sizeof s->sp_max_key, "%s", r->scalar[i].key);
        }
    }
    s->auc_high = r->cls_ran[0] ? r->cls[0].auc : NAN;
    s->jsd_high = r->cls_ran[0] ? r->cls[0].jsd : NAN;
    s->auc_low = r->cls_ran[1] ? r->cls[1].auc : NAN;
    s->jsd_low = r->cls_ran[1] ? r->cls[1].jsd : NAN;
    s->nwarnings = r->nwarnings;
    s->seconds = r->seconds_total;
    snprintf(s->metrics_path, sizeof s->metrics_path, "%s/metrics.json", dir);
    snprintf(s->report_path, sizeof s->report_path, "%s/index.html", dir);
}

static cg_status evaluate(source *src, const char *out_dir, const cg_eval_opts *opts_in, cg_eval_summary *summary) {
    double t0 = now_s();
    cg_eval_opts defaults;
    cg_eval_defaults(&defaults);
    const cg_eval_opts *o = opts_in ? opts_in : &defaults;
    if (o->threads > 0) cg_threads_set(o->threads);
    for (int k = 0; k < 2; k++)
        if (src[k].n == 0) return cg_set_error(CG_ERR_INVALID, "%s has no events", src[k].name);
    cg_status st = check_geometry(&src[0], &src[1]);
    int map[2][CG_CVOX_MAX_COND];
    for (int k = 0; k < CG_CVOX_MAX_COND; k++) map[0][k] = k;
    if (st == CG_OK) st = check_conditioning(&src[0], &src[1], map[1]);
    if (st == CG_OK) st = mkdirs(out_dir);
    if (st != CG_OK) return st;

    cg_eval_results *r = calloc(1, sizeof *r);
    eval_state E = {.o = o, .r = r, .ienergy = -1};
    if (!r) return cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory");
    r->info = *src[0].info;
    snprintf(r->gen_particle, sizeof r->gen_particle, "%s", src[1].info->particle);
    for (int k = 0; k < 2; k++) {
        snprintf(r->name[k], sizeof r->name[k], "%s", src[k].name);
        r->n_file[k] = src[k].info->nevents;
        r->n[k] = src[k].n;
    }
    const cg_geometry *g = &r->info.geom;
    r->nlayers = g->nlayers;
    r->ncond = r->info.ncond;
    E.ncond = r->ncond;
    E.ienergy = cg_cvox_cond_index(&r->info, "energy");
    r->has_energy = E.ienergy >= 0;
    if (r->has_energy) E.e_to_gev = energy_to_gev(r->info.cond_unit[E.ienergy]);

    /* the threshold: given, else half a MIP (the seeds' cut), else none */
    double to_mev = g->to_mev > 0 ? g->to_mev : 1;
    if (o->has_threshold) {
        r->threshold = o->threshold;
        snprintf(r->threshold_source, sizeof r->threshold_source, "given (--threshold)");
    } else if (g->mip_mev > 0) {
        r->threshold = 0.5 * g->mip_mev / to_mev;
        snprintf(r->threshold_source, sizeof r->threshold_source, "half a MIP (geometry mip_mev %g MeV / 2)",
                 g->mip_mev);
    } else {
        r->threshold = 0;
        snprintf(r->threshold_source, sizeof r->threshold_source, "none: the geometry does not know its MIP");
        cg_eval_warn(r, "no hit threshold: geometry '%s' does not give its MIP energy; every non-zero cell is a hit "
                        "(set one with --threshold)",
                     g->name);
    }
    if (r->threshold < 0) {
        st = cg_set_error(CG_ERR_INVALID, "the threshold must be >= 0 (got %g)", r->threshold);
        goto out;
    }
    r->threshold_mev = r->threshold * to_mev;

    E.obs = cg_obs_ctx_new(g, r->threshold);
    r->layer = calloc((size_t)r->nlayers, sizeof(cg_eval_obs));
    if (!E.obs || !r->layer) {
        st = E.obs ? cg_set_error(CG_ERR_NOMEM, "evaluate: out of memory") : cg_last_status();
        goto out;
    }
    E.nv = cg_obs_nvalues(E.obs);
    for (int k = 0; k < 2 && st == CG_OK; k++) {
        if (o->verbose) fprintf(stderr, "evaluate: reading %s (%lld events)\n", src[k].name, (long long)src[k].n);
        st = stream_sample(&E, k, &src[k], map[k]);
    }
    if (st == CG_OK) st = compute_distances(&E);
    if (st == CG_OK) st = profiles(&E);
    if (st == CG_OK) st = define_bins(&E);
    if (st == CG_OK) st = compare_bins(&E);
    if (st == CG_OK) st = run_classifiers(&E);
    r->seconds_total = now_s() - t0;
    if (st == CG_OK) st = write_outputs(out_dir, &E);
    if (st == CG_OK && summary) fill_summary(r, out_dir, summary);
out:
    cg_obs_ctx_free(E.obs);
    for (int k = 0; k < 2; k++) sample_free(&E.s[k]);
    results_free(r);
    free(r);
    return st;
}

cg_status cg_evaluate_samples(const cg_eval_sample *ref, const cg_eval_sample *gen, const char *out_dir,
                              const cg_eval_opts *opts, cg_eval_summary *summary) {
    const cg_eval_sample *in[2] = {ref, gen};
    source src[2];
    cg_cvox_info info[2];
    for (int k = 0; k < 2; k++) {
        info[k] = *in[k]->info;
        info[k].nevents = in[k]->nevents;
        int64_t n = in[k]->nevents;
        if (opts && opts->max_events > 0 && n > opts->max_events) n = opts->max_events;
        src[k] = (source){in[k]->name, &info[k], n, NULL, in[k]->dense, in[k]->cond};
    }
    return evaluate(src, out_dir, opts, summary);
}

cg_status cg_evaluate_files(const char *reference, const char *generated, const char *out_dir,
                            const cg_eval_opts *opts, cg_eval_summary *summary) {
    const char *path[2] = {reference, generated};
    source src[2] = {{0}};
    cg_status st = CG_OK;
    for (int k = 0; k < 2 && st == CG_OK; k++) {
        cg_cvox_reader *rd = cg_cvox_open(path[k]);
        if (!rd) {
            st = cg_last_status() ? cg_last_status() : CG_ERR_IO;
            break;
        }
        const cg_cvox_info *info = cg_cvox_info_of(rd);
        int64_t n = info->nevents;
        if (opts && opts->max_events > 0 && n > opts->max_events) n = opts->max_events;
        src[k] = (source){path[k], info, n, rd, NULL, NULL};
    }
    if (st == CG_OK) st = evaluate(src, out_dir, opts, summary);
    for (int k = 0; k < 2; k++)
        if (src[k].rd) cg_cvox_close(src[k].rd);
    return st;
}

void cg_eval_summary_print(FILE *f, const cg_eval_summary *s) {
    fprintf(f, "evaluated %lld reference and %lld generated showers (hit threshold %.4g MeV) in %.1f s\n",
            (long long)s->n_reference, (long long)s->n_generated, s->threshold_mev, s->seconds);
    fprintf(f, "  separation power  E_vis/E_inc %.4f   E_vis %.4f   hits %.4f   cog_z %.4f   r_mean %.4f   "
               "cells %.4f\n",
            s->sp_e_ratio, s->sp_e_vis, s->sp_n_hits, s->sp_cog_z, s->sp_r_mean, s->sp_cells);
    fprintf(f, "  largest SP        %.4f (%s)\n", s->sp_max, s->sp_max_key[0] ? s->sp_max_key : "-");
    fprintf(f, "  classifier AUC    high-level %.4f   voxels %.4f   (0.5 = indistinguishable)\n", s->auc_high,
            s->auc_low);
    if (s->nwarnings) fprintf(f, "  %d warning%s: see the report\n", s->nwarnings, s->nwarnings > 1 ? "s" : "");
    fprintf(f, "  metrics: %s\n  report:  %s\n", s->metrics_path, s->report_path);
}
