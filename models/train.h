/*
 * models/train.h — training and generation, for any model family (models/model.h).
 *
 * cg_train runs `calograd train`: it reads a .cvox file through the loader, calls the
 * family's train_step for every batch, and writes into the run directory:
 *   RUNDIR/config      the resolved configuration (every option, key = value)
 *   RUNDIR/log.csv     step, epoch, the family's losses, learning rate, showers/s, seconds
 *   RUNDIR/model.ckpt  the latest checkpoint (every checkpoint_every steps, at the end, and
 *                      when interrupted), written crash-safely (models/checkpoint.h)
 * A checkpoint carries the configuration, the training position (step, epoch, batch, RNG
 * counter), the data description (geometry, conditioning names and ranges) and every tensor
 * of the model and its optimizers, so that --resume continues exactly: with the same seed
 * and thread count the resumed run's losses equal the uninterrupted run's.
 *
 * A loss that becomes NaN or infinite stops training with CG_ERR_NUMERIC and a message
 * naming the step and the last good checkpoint (which is never overwritten by a bad state).
 *
 * cg_generate runs `calograd generate`: it rebuilds the model from a checkpoint and writes
 * showers for sampled or fixed conditions to a .cvox file with the same geometry and
 * conditioning names as the training data.
 */
#ifndef CG_MODELS_TRAIN_H
#define CG_MODELS_TRAIN_H

#include <stdio.h>

#include "models/checkpoint.h"
#include "models/model.h"

/* The trainer's own options (data, out, epochs, batch, ...). */
extern const cg_cfg_spec cg_train_options[];

typedef struct {
    bool resume;               /* continue from RUNDIR/model.ckpt */
    volatile int *stop;        /* set asynchronously (Ctrl-C): checkpoint and return */
    FILE *log;                 /* progress output (stderr when NULL) */
    bool progress_bar;         /* a live bar (a terminal) instead of log lines */
} cg_train_opts;

typedef struct {
    int64_t steps;             /* global steps done */
    int64_t epoch;             /* epochs completed */
    bool interrupted;
    bool time_limited;         /* stopped by time_limit */
    double seconds, showers_per_s;
    float final_loss;
    char checkpoint[1100];
    char run_dir[1024];
} cg_train_result;

/* cfg holds what the user set (flags, a config file); cg_train adds the defaults, checks it,
 * and on resume merges it with the checkpoint's configuration (only run-length and runtime
 * options may change on resume). */
cg_status cg_train(cg_config *cfg, const cg_train_opts *o, cg_train_result *res);

typedef struct {
    int64_t events;
    int batch;
    uint64_t seed;
    cg_device device;
    const char *math;          /* math spec (cg_module_set_math_spec); NULL: fp32 */
    int nset;                  /* conditions given: name and range (lo == hi: fixed) */
    char set_name[CG_CVOX_MAX_COND][CG_CVOX_NAME_LEN];
    double set_lo[CG_CVOX_MAX_COND], set_hi[CG_CVOX_MAX_COND];
    /* or: take the conditions of the events of this .cvox file, in order (it must have the
     * model's conditioning names); `events` must not exceed its count */
    const char *cond_from;
    FILE *log;
} cg_generate_opts;

typedef struct {
    int64_t events;
    double seconds, showers_per_s;
} cg_generate_result;

/* Conditions not given are drawn uniformly from the training data's range (unless
 * cond_from names a file to copy them from). */
cg_status cg_generate(const char *checkpoint, const char *out_path, const cg_generate_opts *o,
                      cg_generate_result *res);

/* A model rebuilt from a checkpoint (family, configuration, data description, tensors),
 * ready to generate or to resume. The caller frees cfg (cg_config_free) and the model
 * (family->destroy). */
typedef struct {
    const cg_model_family *family;
    cg_model *model;
    cg_config cfg;
    cg_cvox_info info;
    double cond_lo[CG_CVOX_MAX_COND], cond_hi[CG_CVOX_MAX_COND];
    int64_t step, epoch, batch;
    uint64_t rng_counter;
} cg_loaded_model;
cg_status cg_model_load(const char *checkpoint, cg_device dev, cg_loaded_model *out);

#endif
