/*
 * models/eval/classifier.c — the reference-vs-generated classifier (classifier.h).
 *
 * Training uses the library like any model: a module tree of Linear layers, ops on the
 * tape, cg_backward, Adam, cg_tape_reset() after each step. Batches are gathered on the host
 * from the feature rows and uploaded with cg_tensor_from_host (the CPU backend; the
 * classifier is small next to the generative models it judges). Feature rows are read in place
 * (no copy of the samples). The parameters of the best
 * epoch are kept as host copies and restored before the validation pass.
 */
#include "models/eval/classifier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/ops.h"
#include "core/rng.h"
#include "models/module.h"
#include "models/optim.h"

#define CLS_MAX_LAYERS 8
#define LRELU_SLOPE 0.01f /* torch.nn.LeakyReLU's default, as CaloChallenge's DNN */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    double s;
    uint8_t y;
} scored;

static int cmp_scored(const void *a, const void *b) {
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

double cg_auc(const double *score, const uint8_t *label, int64_t n) {
    scored *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return NAN;
    int64_t npos = 0;
    for (int64_t i = 0; i < n; i++) {
        v[i].s = score[i];
        v[i].y = label[i] ? 1 : 0;
        npos += v[i].y;
    }
    int64_t nneg = n - npos;
    if (npos == 0 || nneg == 0) {
        free(v);
        return NAN;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_scored);
    /* Mann–Whitney: sum of the positives' ranks, tied scores sharing their mean rank */
    double rank_sum = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && v[j].s == v[i].s) j++;
        double mean_rank = 0.5 * (double)(i + 1 + j); /* ranks i+1 .. j */
        for (int64_t k = i; k < j; k++)
            if (v[k].y) rank_sum += mean_rank;
        i = j;
    }
    free(v);
    return (rank_sum - 0.5 * (double)npos * (double)(npos + 1)) / ((double)npos * (double)nneg);
}

typedef struct {
    double x, y;
} xy_pair;

static int cmp_xy(const void *a, const void *b) {
    const xy_pair *p = a, *q = b;
    if (p->x != q->x) return (p->x > q->x) - (p->x < q->x);
    return (p->y > q->y) - (p->y < q->y);
}

cg_status cg_isotonic_fit_predict(const double *x, const double *y, int64_t n, double ymin, double ymax,
                                  const double *q, int64_t nq, double *out) {
    CG_ASSERT(n > 0);
    xy_pair *p = malloc((size_t)n * sizeof *p);
    double *ux = malloc((size_t)n * sizeof(double)), *uy = malloc((size_t)n * sizeof(double));
    double *uw = malloc((size_t)n * sizeof(double));
    int64_t *blk_end = malloc((size_t)n * sizeof(int64_t));
    if (!p || !ux || !uy || !uw || !blk_end) {
        free(p), free(ux), free(uy), free(uw), free(blk_end);
        return cg_set_error(CG_ERR_NOMEM, "isotonic regression: out of memory for %lld points", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) p[i] = (xy_pair){x[i], y[i]};
    qsort(p, (size_t)n, sizeof *p, cmp_xy);
    /* equal x values become one point with the mean y and their count as weight */
    int64_t m = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        double s = 0;
        while (j < n && p[j].x == p[i].x) s += p[j++].y;
        ux[m] = p[i].x;
        uy[m] = s / (double)(j - i);
        uw[m] = (double)(j - i);
        m++;
        i = j;
    }
    /* pool adjacent violators: a stack of blocks (value uy[b], weight uw[b], end index) */
    int64_t nb = 0;
    for (int64_t i = 0; i < m; i++) {
        double v = uy[i], w = uw[i];
        while (nb > 0 && uy[nb - 1] >= v) {
            v = (uy[nb - 1] * uw[nb - 1] + v * w) / (uw[nb - 1] + w);
            w += uw[nb - 1];
            nb--;
        }
        uy[nb] = v;
        uw[nb] = w;
        blk_end[nb] = i + 1;
        nb++;
    }
    /* expand the blocks back onto the unique x (reusing uw as the fitted values) */
    for (int64_t b = nb - 1, i = m - 1; b >= 0; b--)
        for (; i >= (b ? blk_end[b - 1] : 0); i--) uw[i] = fmin(fmax(uy[b], ymin), ymax);
    for (int64_t k = 0; k < nq; k++) {
        double t = fmin(fmax(q[k], ux[0]), ux[m - 1]);
        int64_t lo = 0, hi = m - 1;
        while (hi - lo > 1) {
            int64_t mid = (lo + hi) / 2;
            if (ux[mid] <= t) lo = mid;
            else hi = mid;
        }
        if (m == 1 || t <= ux[lo]) out[k] = uw[lo];
        else if (t >= ux[hi]) out[k] = uw[hi];
        else out[k] = uw[lo] + (uw[hi] - uw[lo]) * (t - ux[lo]) / (ux[hi] - ux[lo]);
    }
    free(p), free(ux), free(uy), free(uw), free(blk_end);
    return CG_OK;
}

/* ------------------------------------------------------------------ the network ---- */

typedef struct {
    cg_module *root;
    cg_module *fc[CLS_MAX_LAYERS + 2];
    int nfc;
    cg_named_list params;
} dnn;

static cg_tensor *dnn_forward(dnn *d, cg_tensor *x) {
    for (int i = 0; i < d->nfc - 1; i++) x = cg_leaky_relu(cg_module_forward(d->fc[i], x), LRELU_SLOPE);
    return cg_module_forward(d->fc[d->nfc - 1], x);
}

/* The pooled rows without copying them: row r < n is reference row r, row r >= n is
 * generated row r − n; with standardisation, (x − mean)·inv is applied while gathering. */
typedef struct {
    const float *ref, *gen;
    int64_t n;
    int dim;
    const double *mean, *inv; /* NULL: no scaling */
} feats;

static void gather_row(const feats *f, int64_t r, float *dst) {
    const float *src = r < f->n ? f->ref + r * f->dim : f->gen + (r - f->n) * f->dim;
    if (!f->mean) {
        memcpy(dst, src, (size_t)f->dim * sizeof(float));
        return;
    }
    for (int j = 0; j < f->dim; j++) dst[j] = (float)(((double)src[j] - f->mean[j]) * f->inv[j]);
}

/* Logits of rows idx[0..n) in chunks, without a tape. */
static cg_status predict(dnn *d, const feats *f, const int64_t *idx, int64_t n, int batch, float *buf,
                         double *logit) {
    bool prev = cg_set_grad_enabled(false);
    cg_status st = CG_OK;
    for (int64_t b = 0; b < n && st == CG_OK; b += batch) {
        int64_t nb = n - b < batch ? n - b : batch;
        for (int64_t i = 0; i < nb; i++) gather_row(f, idx[b + i], buf + i * f->dim);
        cg_tape_pos m = cg_tape_mark();
        cg_tensor *x = cg_op_adopt(cg_tensor_from_host(CG_CPU, CG_SHAPE(nb, f->dim), buf));
        cg_tensor *y = x ? dnn_forward(d, x) : NULL;
        float *h = y ? cg_tensor_host_copy(y) : NULL;
        if (!h) st = cg_last_status() ? cg_last_status() : CG_ERR_NOMEM;
        else
            for (int64_t i = 0; i < nb; i++) logit[b + i] = h[i];
        free(h);
        cg_tape_rewind(m);
    }
    cg_set_grad_enabled(prev);
    return st;
}

static double bce_logits(const double *z, const uint8_t *y, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += fmax(z[i], 0) - z[i] * y[i] + log1p(exp(-fabs(z[i])));
    return s / (double)n;
}

static double accuracy(const double *z, const uint8_t *y, int64_t n) {
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) ok += (z[i] > 0) == (y[i] != 0);
    return (double)ok / (double)n;
}

static void shuffle(int64_t *v, int64_t n, cg_rng *rng) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)cg_rng_below(rng, (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

cg_status cg_cls_run(const float *x_ref, int64_t n_ref, const float *x_gen, int64_t n_gen, int dim,
                     const cg_cls_cfg *cfg, cg_cls_result *res) {
    memset(res, 0, sizeof *res);
    res->auc = res->jsd = res->auc_cal = res->jsd_cal = res->accuracy = NAN;
    res->dim = dim;
    int64_t n = n_ref < n_gen ? n_ref : n_gen;
    if (n < CG_CLS_MIN_PER_CLASS)
        return cg_set_error(CG_ERR_INVALID, "classifier: %lld showers per sample, need at least %d", (long long)n,
                            CG_CLS_MIN_PER_CLASS);
    CG_ASSERT(dim > 0 && cfg->width > 0 && cfg->layers >= 0 && cfg->layers <= CLS_MAX_LAYERS && cfg->epochs > 0 &&
              cfg->batch > 0);
    double t0 = now_s();
    cg_rng rng = cg_rng_make(cfg->seed ? cfg->seed : 1);

    /* pooled rows: [0, n) reference (label 1), [n, 2n) generated (label 0) */
    int64_t N = 2 * n;
    uint8_t *y = malloc((size_t)N);
    int64_t *idx = malloc((size_t)N * sizeof(int64_t));
    double *z = malloc((size_t)N * sizeof(double)), *zs = malloc((size_t)N * sizeof(double));
    double *mean = cfg->standardize ? malloc((size_t)dim * sizeof(double)) : NULL;
    double *inv = cfg->standardize ? malloc((size_t)dim * sizeof(double)) : NULL;
    float *buf = malloc((size_t)cfg->batch * (size_t)dim * sizeof(float));
    float *tbuf = malloc((size_t)cfg->batch * sizeof(float));
    float *best = NULL;
    dnn d = {0};
    cg_optim *opt = NULL;
    cg_status st = CG_OK;
    if (!y || !idx || !z || !zs || !buf || !tbuf || (cfg->standardize && (!mean || !inv))) {
        st = cg_set_error(CG_ERR_NOMEM, "classifier: out of memory for a batch of %d × %d features", cfg->batch, dim);
        goto out;
    }
    for (int64_t i = 0; i < N; i++) y[i] = i < n;
    feats f = {x_ref, x_gen, n, dim, NULL, NULL};

    /* the split, per class as CaloChallenge's ttv_split: 60 % train, 20 % test, the rest
     * validation; idx holds [train | test | val], each merged over both classes */
    int64_t ntr = (int64_t)(0.6 * (double)n), nte = (int64_t)(0.2 * (double)n), nva = n - ntr - nte;
    int64_t *perm = malloc((size_t)n * sizeof(int64_t));
    if (!perm) {
        st = cg_set_error(CG_ERR_NOMEM, "classifier: out of memory");
        goto out;
    }
    /* one permutation for both classes: row i of each sample lands in the same split, so a
     * sample compared with itself trains on identical pairs with opposite labels and
     * validates on identical rows (AUC 0.5 exactly), instead of memorising showers that
     * reappear with the other label */
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    shuffle(perm, n, &rng);
    for (int c = 0; c < 2; c++)
        for (int64_t i = 0; i < n; i++) {
            int64_t j = perm[i] + c * n;
            if (i < ntr) idx[c * ntr + i] = j;
            else if (i < ntr + nte) idx[2 * ntr + c * nte + (i - ntr)] = j;
            else idx[2 * ntr + 2 * nte + c * nva + (i - ntr - nte)] = j;
        }
    free(perm);
    int64_t *tr = idx, *te = idx + 2 * ntr, *va = idx + 2 * ntr + 2 * nte;
    res->n_train = 2 * ntr;
    res->n_test = 2 * nte;
    res->n_val = 2 * nva;

    if (cfg->standardize) { /* statistics of the train split only */
        for (int j = 0; j < dim; j++) mean[j] = inv[j] = 0;
        for (int64_t i = 0; i < 2 * ntr; i++) {
            const float *row = tr[i] < n ? x_ref + tr[i] * dim : x_gen + (tr[i] - n) * dim;
            for (int j = 0; j < dim; j++) mean[j] += row[j];
        }
        for (int j = 0; j < dim; j++) mean[j] /= (double)(2 * ntr);
        for (int64_t i = 0; i < 2 * ntr; i++) {
            const float *row = tr[i] < n ? x_ref + tr[i] * dim : x_gen + (tr[i] - n) * dim;
            for (int j = 0; j < dim; j++) inv[j] += (row[j] - mean[j]) * (row[j] - mean[j]);
        }
        for (int j = 0; j < dim; j++) {
            double sd = sqrt(inv[j] / (double)(2 * ntr));
            inv[j] = sd > 1e-12 ? 1.0 / sd : 1.0;
        }
        f.mean = mean;
        f.inv = inv;
    }

    d.root = cg_module_new(NULL, "classifier");
    int in = dim;
    char name[16];
    for (int l = 0; l <= cfg->layers + 1 && d.root; l++) {
        int out = l == cfg->layers + 1 ? 1 : cfg->width;
        snprintf(name, sizeof name, "fc%d", l);
        d.fc[l] = cg_linear_new(d.root, name, in, out, true, CG_CPU, &rng);
        if (!d.fc[l]) {
            st = cg_last_status();
            goto out;
        }
        d.nfc++;
        in = out;
    }
    if (!d.root) {
        st = cg_last_status();
        goto out;
    }
    cg_module_collect(d.root, &d.params, false);
    res->nparams = cg_module_numel(d.root);
    opt = cg_optim_new(&(cg_optim_cfg){.kind = CG_OPT_ADAM, .lr = cfg->lr}, &d.params);
    best = malloc((size_t)res->nparams * sizeof(float));
    if (!opt || !best) {
        st = opt ? cg_set_error(CG_ERR_NOMEM, "classifier: out of memory") : cg_last_status();
        goto out;
    }

    double best_acc = -1;
    int64_t ntrain = 2 * ntr;
    for (int ep = 0; ep < cfg->epochs; ep++) {
        shuffle(tr, ntrain, &rng);
        for (int64_t b = 0; b < ntrain; b += cfg->batch) {
            int64_t nb = ntrain - b < cfg->batch ? ntrain - b : cfg->batch;
            for (int64_t i = 0; i < nb; i++) {
                gather_row(&f, tr[b + i], buf + i * dim);
                tbuf[i] = y[tr[b + i]];
            }
            cg_tensor *xt = cg_op_adopt(cg_tensor_from_host(CG_CPU, CG_SHAPE(nb, dim), buf));
            cg_tensor *yt = cg_op_adopt(cg_tensor_from_host(CG_CPU, CG_SHAPE(nb, 1), tbuf));
            cg_tensor *loss = xt && yt ? cg_bce_with_logits(dnn_forward(&d, xt), yt) : NULL;
            if (!loss) st = cg_last_status() ? cg_last_status() : CG_ERR_NOMEM;
            if (st == CG_OK) st = cg_backward(loss);
            if (st == CG_OK) st = cg_optim_step(opt);
            cg_optim_zero_grad(opt);
            cg_tape_reset();
            if (st != CG_OK) goto out;
        }
        st = predict(&d, &f, te, 2 * nte, cfg->batch, buf, z);
        if (st != CG_OK) goto out;
        int64_t ok = 0;
        for (int64_t i = 0; i < 2 * nte; i++) ok += (z[i] > 0) == (y[te[i]] != 0);
        double acc = (double)ok / (double)(2 * nte);
        if (acc > best_acc) { /* CaloChallenge keeps the epoch with the best test accuracy */
            best_acc = acc;
            res->best_epoch = ep + 1;
            int64_t off = 0;
            for (int p = 0; p < d.params.n; p++) {
                cg_tensor_to_host(d.params.v[p].t, best + off);
                off += cg_numel(d.params.v[p].t);
            }
        }
        res->epochs = ep + 1;
        if (acc == 1.0) break;
    }
    int64_t off = 0;
    for (int p = 0; p < d.params.n; p++) {
        cg_tensor_set_host(d.params.v[p].t, best + off);
        off += cg_numel(d.params.v[p].t);
    }

    /* test logits (for the calibration) into z[0..2·nte), validation into zs */
    st = predict(&d, &f, te, 2 * nte, cfg->batch, buf, z);
    if (st == CG_OK) st = predict(&d, &f, va, 2 * nva, cfg->batch, buf, zs);
    if (st != CG_OK) goto out;
    {
        int64_t nv = 2 * nva, nt = 2 * nte;
        uint8_t *yv = malloc((size_t)nv), *yt = malloc((size_t)nt);
        double *pv = malloc((size_t)nv * sizeof(double)), *pt = malloc((size_t)nt * sizeof(double));
        double *ytd = malloc((size_t)nt * sizeof(double)), *pc = malloc((size_t)nv * sizeof(double));
        if (!yv || !yt || !pv || !pt || !ytd || !pc) {
            st = cg_set_error(CG_ERR_NOMEM, "classifier: out of memory");
        } else {
            for (int64_t i = 0; i < nv; i++) {
                yv[i] = y[va[i]];
                pv[i] = 1.0 / (1.0 + exp(-zs[i]));
            }
            for (int64_t i = 0; i < nt; i++) {
                yt[i] = y[te[i]];
                ytd[i] = yt[i];
                pt[i] = 1.0 / (1.0 + exp(-z[i]));
            }
            res->auc = cg_auc(pv, yv, nv);
            res->jsd = (log(2.0) - bce_logits(zs, yv, nv)) / log(2.0);
            res->accuracy = accuracy(zs, yv, nv);
            st = cg_isotonic_fit_predict(pt, ytd, nt, 1e-6, 1 - 1e-6, pv, nv, pc);
            if (st == CG_OK) {
                double bce = 0;
                for (int64_t i = 0; i < nv; i++) bce -= yv[i] ? log(pc[i]) : log(1 - pc[i]);
                res->auc_cal = cg_auc(pc, yv, nv);
                res->jsd_cal = (log(2.0) - bce / (double)nv) / log(2.0);
            }
        }
        free(yv), free(yt), free(pv), free(pt), free(ytd), free(pc);
    }
out:
    res->seconds = now_s() - t0;
    cg_tape_reset();
    cg_optim_free(opt);
    cg_named_list_free(&d.params);
    cg_module_free(d.root);
    free(mean), free(inv), free(y), free(idx), free(z), free(zs), free(buf), free(tbuf), free(best);
    return st;
}
