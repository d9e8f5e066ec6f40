/*
 * models/module.h — layers as a tree of named modules, like torch.nn.Module.
 *
 * A module owns its parameters (and buffers such as batch-norm running statistics) and its
 * children, each under a name. Walking the tree gives PyTorch-style dotted names
 * ("decoder.conv1.weight"), which the optimizers and checkpoints use. A model family
 * (models/vae.c, ...) builds its tree once and keeps pointers to the layers it calls.
 *
 *   cg_module *root = cg_module_new(NULL, "vae");
 *   cg_module *fc = cg_linear_new(root, "fc1", 512, 256, true, CG_CPU, &rng);
 *   y = cg_module_forward(fc, x);
 *   cg_named_list params = {0};
 *   cg_module_collect(root, &params, false);   // "fc1.weight", "fc1.bias"
 *   ...
 *   cg_named_list_free(&params);
 *   cg_module_free(root);                       // frees the whole tree and its tensors
 *
 * Initialisation follows PyTorch's defaults: Linear and Conv weights and biases uniform in
 * ±1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)); for ConvTranspose3d fan_in is
 * Co·k³ (PyTorch computes it from the weight's second axis); LayerNorm/BatchNorm gain 1,
 * bias 0, running mean 0, running variance 1.
 */
#ifndef CG_MODELS_MODULE_H
#define CG_MODELS_MODULE_H

#include "autograd/ops.h"

#define CG_MODULE_MAX_PARAMS 4

typedef enum {
    CG_MOD_CONTAINER,
    CG_MOD_LINEAR,
    CG_MOD_CONV3D,
    CG_MOD_CONV_TRANSPOSE3D,
    CG_MOD_LAYER_NORM,
    CG_MOD_BATCH_NORM,
} cg_module_kind;

typedef struct cg_module {
    char name[40];
    cg_module_kind kind;
    struct cg_module *parent;
    int nparams;
    char pname[CG_MODULE_MAX_PARAMS][16];
    cg_tensor *params[CG_MODULE_MAX_PARAMS];   /* owned; NULL for an absent bias */
    bool is_buffer[CG_MODULE_MAX_PARAMS];      /* running statistics: saved, not trained */
    int nchildren, cap_children;
    struct cg_module **children;
    bool training;
    signed char math;        /* cg_math_mode for this subtree, or -1: the parent's */
    /* layer configuration */
    int in, out;             /* Linear: features; Conv: channels */
    int k[3];
    cg_conv_opts opts;
    int naxes;               /* LayerNorm: normalised trailing axes */
    float eps, momentum;
} cg_module;

/* A flat list of named tensors (borrowed pointers into a module tree or elsewhere). */
typedef struct {
    char name[160];
    cg_tensor *t;
    bool buffer;
} cg_named;

typedef struct {
    cg_named *v;
    int n, cap;
} cg_named_list;

void cg_named_list_add(cg_named_list *l, const char *name, cg_tensor *t, bool buffer);
void cg_named_list_free(cg_named_list *l);
cg_tensor *cg_named_list_find(const cg_named_list *l, const char *name);

/* ---- building: each returns the new child (registered in parent, which may be NULL for a
 *      root), or NULL with an error (bad sizes, out of memory) ---- */
cg_module *cg_module_new(cg_module *parent, const char *name);
cg_module *cg_linear_new(cg_module *parent, const char *name, int in, int out, bool bias, cg_device dev,
                         cg_rng *rng);
/* k: kernel size per axis (d, h, w); weight (out, in, k...) */
cg_module *cg_conv3d_new(cg_module *parent, const char *name, int in, int out, const int k[3], cg_conv_opts o,
                         bool bias, cg_device dev, cg_rng *rng);
/* weight (in, out, k...) as PyTorch's ConvTranspose3d */
cg_module *cg_conv_transpose3d_new(cg_module *parent, const char *name, int in, int out, const int k[3],
                                   cg_conv_opts o, bool bias, cg_device dev, cg_rng *rng);
/* normalises the last `naxes` axes, whose sizes are `shape`; affine adds a per-element gain
 * and bias of that shape (the BIB-AE's LayerNorm([D, H, W])) */
cg_module *cg_layer_norm_new(cg_module *parent, const char *name, int naxes, const int64_t *shape, bool affine,
                             float eps, cg_device dev);
cg_module *cg_batch_norm_new(cg_module *parent, const char *name, int channels, float momentum, float eps,
                             cg_device dev);

/* Give a container an extra named tensor (owned from now on): a parameter when buffer is
 * false (it then requires a gradient), else a buffer such as a normalisation constant. */
cg_status cg_module_add(cg_module *m, const char *name, cg_tensor *t, bool buffer);

/* ---- math mode (GPU matrix kernels; the CPU computes in fp32 regardless) ---- */
/* Set the math mode of m's layers and of every descendant that sets none of its own; -1
 * makes m inherit again (the default: the parent's setting, and above the root the calling
 * thread's cg_get_math_mode()). cg_module_forward runs a layer in its mode, and the tape
 * runs that layer's backward in the same mode. A model family that calls ops directly
 * (not through cg_module_forward) wraps them:
 *     cg_math_mode prev = cg_set_math_mode(cg_module_math_mode(block)); ...; cg_set_math_mode(prev); */
void cg_module_set_math_mode(cg_module *m, int mode);
cg_math_mode cg_module_math_mode(const cg_module *m);
/* A spec as `calograd train --math` takes it: a mode for the whole tree ("tf32") and/or
 * comma-separated path:mode pairs by dotted path ("fp32,decoder:tf32,decoder.conv3:bf16");
 * applied left to right. An unknown path or mode is an error (CG_ERR_INVALID, naming it). */
cg_status cg_module_set_math_spec(cg_module *root, const char *spec);

/* ---- using ---- */
/* Run a layer module on x (containers have no forward of their own), in its math mode. */
cg_tensor *cg_module_forward(cg_module *m, cg_tensor *x);
/* A parameter of m by its short name ("weight"), or NULL. */
cg_tensor *cg_module_param(const cg_module *m, const char *name);
/* A descendant by dotted path ("decoder.conv1"), or NULL. */
cg_module *cg_module_find(cg_module *root, const char *path);
/* Append every parameter (and buffer, if asked) of the tree with its dotted name. */
void cg_module_collect(cg_module *root, cg_named_list *out, bool include_buffers);
int64_t cg_module_numel(cg_module *root);       /* trainable parameter count */
void cg_module_set_training(cg_module *root, bool training);
void cg_module_zero_grad(cg_module *root);      /* drop accumulated ->grad */
cg_status cg_module_to(cg_module *root, cg_device dev);
void cg_module_free(cg_module *root);

#endif
