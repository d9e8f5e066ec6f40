/*
 * models/model.h — a model family: a module tree plus a training recipe.
 *
 * `calograd train --model NAME` and `calograd generate` know nothing about any particular
 * model: they look the family up by name and call these functions. Adding a model (the
 * BIB-AE, a WGAN-GP, ...) is writing one file that fills a cg_model_family and adding it to
 * the list in models/model.c:
 *
 *  - options:    the family's configuration keys (models/config.h), with defaults;
 *  - create:     build the module tree (and its optimizers) for a dataset's geometry and
 *                conditioning, initialised from rng;
 *  - fit:        once, before training from scratch: set data-dependent constants
 *                (normalisations) from a sample of the training set; they must be saved as
 *                buffers so that a checkpoint carries them;
 *  - collect:    every tensor a checkpoint must hold (parameters, buffers, optimizer state);
 *  - train_step: one optimisation step on a batch; returns the named losses;
 *  - generate:   showers for given conditions;
 *  - root:       the module tree (the trainer applies the `math` option to it).
 *
 * Tensors: a batch of showers is (B, 1, D, H, W) on regular grids, raw energies in the
 * file's units; conditions are (B, ncond) raw values in the order of the file's
 * conditioning names (energy in GeV, angles in degrees, ...).
 */
#ifndef CG_MODELS_MODEL_H
#define CG_MODELS_MODEL_H

#include "io/cvox.h"
#include "models/config.h"
#include "models/module.h"
#include "models/optim.h"

#define CG_MAX_LOSSES 8

typedef struct {
    int n;
    char name[CG_MAX_LOSSES][16];
    float value[CG_MAX_LOSSES];
} cg_losses;

void cg_losses_add(cg_losses *l, const char *name, float value);
/* Read n one-element loss tensors into l in one transfer (one device sync, not n); a NULL
 * tensor reads as NaN, which the trainer reports. */
cg_status cg_losses_read(cg_losses *l, int n, const char *const *names, cg_tensor *const *values);

typedef struct cg_model cg_model; /* each family defines its own struct */

typedef struct {
    const char *name;
    const char *summary;
    const cg_cfg_spec *options;
    cg_model *(*create)(const cg_config *cfg, const cg_cvox_info *info, cg_device dev, cg_rng *rng);
    cg_status (*fit)(cg_model *m, cg_tensor *x, cg_tensor *cond);
    void (*collect)(cg_model *m, cg_named_list *out);
    cg_status (*train_step)(cg_model *m, cg_tensor *x, cg_tensor *cond, int64_t step, cg_rng *rng, cg_losses *out);
    void (*set_lr)(cg_model *m, float lr);
    /* showers (B, ncells) for cond (B, ncond); a tape temporary */
    cg_tensor *(*generate)(cg_model *m, cg_tensor *cond, cg_rng *rng);
    void (*destroy)(cg_model *m);
    cg_module *(*root)(cg_model *m);
} cg_model_family;

/* Apply a math spec (cg_module_set_math_spec: "tf32", "decoder:tf32,...") to a model on
 * device dev: on the CPU only "fp32" is accepted (it has no other mode), which
 * cg_math_spec_check_device checks alone (before there is a model). */
cg_status cg_model_set_math(const cg_model_family *fam, cg_model *m, cg_device dev, const char *spec);
cg_status cg_math_spec_check_device(const char *spec, cg_device dev);

const cg_model_family *cg_model_family_find(const char *name);
/* The registered families, for --help. */
int cg_model_families(const cg_model_family *const **out);

/* Options every family's optimizer reads (optimizer, lr, betas, weight decay, clipping):
 * the trainer's table, and the cg_optim_cfg they describe. */
extern const cg_cfg_spec cg_optim_options[];
cg_optim_cfg cg_optim_cfg_from(const cg_config *cfg);

#endif
