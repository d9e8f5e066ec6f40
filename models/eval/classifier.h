/*
 * models/eval/classifier.h — the classifier test: a small fully connected network, trained
 * with calograd's own autograd, tries to tell reference from generated showers.
 *
 * CaloChallenge's recipe (models.md §3.1, CC code/evaluate.py): a DNN Linear(in→W),
 * LeakyReLU, then `layers` × [Linear(W→W), LeakyReLU], then Linear(W→1); BCE on logits,
 * Adam; a fixed train/test/validation split of 60/20/20 % per class, the epoch with the
 * best test accuracy is kept, and the validation split gives the results: the ROC AUC and
 * the JSD-style score (ln 2 − BCE)/ln 2, before and after an isotonic-regression
 * calibration fitted on the test split (sklearn's IsotonicRegression with y in
 * [1e-6, 1 − 1e-6], out_of_bounds='clip'). The reference is label 1, as in CaloChallenge.
 * An AUC of 0.5 (JSD 0) means the network cannot tell the samples apart; 1 means it always
 * can.
 *
 * Differences from CaloChallenge, for a budget of about a minute on 2 cores: a smaller
 * width, fewer epochs, a smaller batch and a larger learning rate by default (the caller
 * chooses; models/eval/evaluate.h has the defaults), and at most max_per_class showers of
 * each sample. Both classes use the same number of showers (the smaller sample's).
 *
 * Deterministic for a seed (split, initialisation, batch order) and a thread count.
 */
#ifndef CG_EVAL_CLASSIFIER_H
#define CG_EVAL_CLASSIFIER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    int width;          /* hidden units */
    int layers;         /* hidden W→W layers after the input layer (CaloChallenge: 2) */
    int epochs;
    int batch;
    float lr;           /* Adam learning rate */
    bool standardize;   /* scale each feature to zero mean, unit variance on the train split */
    uint64_t seed;
} cg_cls_cfg;

typedef struct {
    double auc, jsd;            /* on the validation split, uncalibrated */
    double auc_cal, jsd_cal;    /* after isotonic calibration on the test split */
    double accuracy;            /* validation accuracy at probability 0.5 */
    int best_epoch, epochs;     /* 1-based epoch kept (best test accuracy) */
    int64_t n_train, n_test, n_val; /* showers in each split, both classes together */
    int64_t nparams;
    int dim;
    double seconds;
} cg_cls_result;

/* Minimum showers per class for the test to run (a split of 6/2/2 is already noisy). */
#define CG_CLS_MIN_PER_CLASS 50

/* Features: x_ref (n_ref × dim), x_gen (n_gen × dim), row-major. Uses the first
 * min(n_ref, n_gen) rows of each: pass rows in a random order. Returns CG_ERR_INVALID (with
 * a message) when a class has fewer than CG_CLS_MIN_PER_CLASS rows, CG_ERR_NOMEM or a
 * device/numeric error from training. */
cg_status cg_cls_run(const float *x_ref, int64_t n_ref, const float *x_gen, int64_t n_gen, int dim,
                     const cg_cls_cfg *cfg, cg_cls_result *res);

/* ROC AUC of scores against 0/1 labels (ties get average ranks, as sklearn); NaN when a
 * class is missing. */
double cg_auc(const double *score, const uint8_t *label, int64_t n);

/* Isotonic regression (increasing) of y on x, y clipped to [ymin, ymax], then evaluated at
 * q (clipped to the fitted x range, linear interpolation), as sklearn's
 * IsotonicRegression(out_of_bounds='clip').fit(x, y).predict(q). out has nq entries. */
cg_status cg_isotonic_fit_predict(const double *x, const double *y, int64_t n, double ymin, double ymax,
                                  const double *q, int64_t nq, double *out);

#endif
