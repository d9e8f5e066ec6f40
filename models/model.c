/*
 * models/model.c — the list of model families and the optimizer options they share.
 * Adding a family: write models/<name>.c exporting a cg_model_family, declare it below and
 * add it to FAMILIES.
 */
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

extern const cg_model_family cg_vae_family;

static const cg_model_family *const FAMILIES[] = {&cg_vae_family};

const cg_model_family *cg_model_family_find(const char *name) {
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++)
        if (strcmp(FAMILIES[i]->name, name) == 0) return FAMILIES[i];
    return NULL;
}

int cg_model_families(const cg_model_family *const **out) {
    *out = FAMILIES;
    return (int)(sizeof FAMILIES / sizeof FAMILIES[0]);
}

static bool math_is_default(const char *spec) { return !spec || !*spec || strcmp(spec, "fp32") == 0; }

cg_status cg_math_spec_check_device(const char *spec, cg_device dev) {
    if (math_is_default(spec) || dev == CG_CUDA) return CG_OK;
    return cg_set_error(CG_ERR_INVALID, "math '%s' needs device cuda (the CPU computes in fp32 only)", spec);
}

cg_status cg_model_set_math(const cg_model_family *fam, cg_model *m, cg_device dev, const char *spec) {
    if (math_is_default(spec)) return CG_OK;
    if (cg_math_spec_check_device(spec, dev) != CG_OK) return cg_last_status();
    if (!fam->root) return cg_set_error(CG_ERR_INVALID, "model '%s' does not expose its modules: math must be fp32",
                                        fam->name);
    return cg_module_set_math_spec(fam->root(m), spec);
}

void cg_losses_add(cg_losses *l, const char *name, float value) {
    CG_ASSERT(l->n < CG_MAX_LOSSES);
    snprintf(l->name[l->n], sizeof l->name[0], "%s", name);
    l->value[l->n++] = value;
}

cg_status cg_losses_read(cg_losses *l, int n, const char *const *names, cg_tensor *const *values) {
    cg_tensor *flat[CG_MAX_LOSSES];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (values[i]) flat[k++] = cg_reshape(values[i], CG_SHAPE(1));
    float h[CG_MAX_LOSSES];
    cg_tensor *all = k ? cg_concat(k, flat, 0) : NULL;
    if (k && (!all || cg_tensor_to_host(all, h) != CG_OK)) return cg_last_status();
    for (int i = 0, j = 0; i < n; i++) cg_losses_add(l, names[i], values[i] ? h[j++] : NAN);
    return CG_OK;
}

const cg_cfg_spec cg_optim_options[] = {
    {"optimizer", CG_CFG_STR, "adam", "adam, adamw, sgd or rmsprop"},
    {"lr", CG_CFG_FLOAT, "1e-3", "learning rate"},
    {"beta1", CG_CFG_FLOAT, "0.9", "Adam beta1"},
    {"beta2", CG_CFG_FLOAT, "0.999", "Adam beta2"},
    {"momentum", CG_CFG_FLOAT, "0", "SGD / RMSprop momentum"},
    {"weight_decay", CG_CFG_FLOAT, "0", "weight decay (decoupled for adamw)"},
    {"clip_norm", CG_CFG_FLOAT, "0", "clip the global gradient norm to this (0 = off)"},
    {NULL, 0, NULL, NULL},
};

cg_optim_cfg cg_optim_cfg_from(const cg_config *cfg) {
    const char *o = cg_config_str(cfg, "optimizer");
    cg_optim_cfg c = {
        .kind = !strcmp(o, "sgd") ? CG_OPT_SGD : !strcmp(o, "rmsprop") ? CG_OPT_RMSPROP
                : !strcmp(o, "adamw") ? CG_OPT_ADAMW : CG_OPT_ADAM,
        .lr = (float)cg_config_float(cfg, "lr"),
        .beta1 = (float)cg_config_float(cfg, "beta1"),
        .beta2 = (float)cg_config_float(cfg, "beta2"),
        .momentum = (float)cg_config_float(cfg, "momentum"),
        .weight_decay = (float)cg_config_float(cfg, "weight_decay"),
        .clip_norm = (float)cg_config_float(cfg, "clip_norm"),
    };
    return c;
}
