/* models/module.c — the module tree, PyTorch's default initialisations, named parameters. */
#include "models/module.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- named lists ---- */

void cg_named_list_add(cg_named_list *l, const char *name, cg_tensor *t, bool buffer) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->v = cg_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    cg_named *e = &l->v[l->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->t = t;
    e->buffer = buffer;
}

void cg_named_list_free(cg_named_list *l) {
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

cg_tensor *cg_named_list_find(const cg_named_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0) return l->v[i].t;
    return NULL;
}

/* ------------------------------------------------------------- building ---- */

cg_module *cg_module_new(cg_module *parent, const char *name) {
    cg_module *m = cg_xcalloc(1, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name ? name : "");
    m->kind = CG_MOD_CONTAINER;
    m->training = true;
    m->math = -1;
    m->parent = parent;
    if (parent) {
        if (parent->nchildren == parent->cap_children) {
            parent->cap_children = parent->cap_children ? 2 * parent->cap_children : 8;
            parent->children = cg_xrealloc(parent->children, (size_t)parent->cap_children * sizeof(cg_module *));
        }
        parent->children[parent->nchildren++] = m;
    }
    return m;
}

/* Detach m from its parent and free it (a constructor that failed half-way). */
static cg_module *fail(cg_module *m) {
    if (m->parent) m->parent->nchildren--;
    m->parent = NULL;
    cg_module_free(m);
    return NULL;
}

static bool add_param(cg_module *m, const char *name, cg_tensor *t, bool requires_grad, bool buffer) {
    if (!t) return false;
    CG_ASSERT(m->nparams < CG_MODULE_MAX_PARAMS);
    snprintf(m->pname[m->nparams], sizeof m->pname[0], "%s", name);
    cg_set_requires_grad(t, requires_grad);
    m->params[m->nparams] = t;
    m->is_buffer[m->nparams] = buffer;
    m->nparams++;
    return true;
}

/* U(-bound, bound), bound = 1/sqrt(fan_in): PyTorch's default for Linear and Conv. */
static cg_tensor *uniform_init(cg_device dev, int ndim, const int64_t *shape, int64_t fan_in, cg_rng *rng) {
    float bound = fan_in > 0 ? 1.0f / sqrtf((float)fan_in) : 0.0f;
    return cg_tensor_rand(dev, ndim, shape, rng, -bound, bound);
}

static bool positive(const char *what, int v) {
    if (v > 0) return true;
    cg_set_error(CG_ERR_INVALID, "%s must be positive (got %d)", what, v);
    return false;
}

cg_module *cg_linear_new(cg_module *parent, const char *name, int in, int out, bool bias, cg_device dev,
                         cg_rng *rng) {
    if (!positive("linear in_features", in) || !positive("linear out_features", out)) return NULL;
    cg_module *m = cg_module_new(parent, name);
    m->kind = CG_MOD_LINEAR;
    m->in = in;
    m->out = out;
    if (!add_param(m, "weight", uniform_init(dev, CG_SHAPE(out, in), in, rng), true, false)) return fail(m);
    if (bias && !add_param(m, "bias", uniform_init(dev, CG_SHAPE(out), in, rng), true, false)) return fail(m);
    return m;
}

static cg_module *conv_new(cg_module *parent, const char *name, int in, int out, const int k[3], cg_conv_opts o,
                           bool bias, cg_device dev, cg_rng *rng, bool transpose) {
    if (!positive("conv in_channels", in) || !positive("conv out_channels", out) || !positive("kernel size", k[0]) ||
        !positive("kernel size", k[1]) || !positive("kernel size", k[2]))
        return NULL;
    cg_module *m = cg_module_new(parent, name);
    m->kind = transpose ? CG_MOD_CONV_TRANSPOSE3D : CG_MOD_CONV3D;
    m->in = in;
    m->out = out;
    memcpy(m->k, k, sizeof m->k);
    m->opts = o;
    int64_t ksz = (int64_t)k[0] * k[1] * k[2];
    int64_t fan_in = (transpose ? out : in) * ksz; /* PyTorch: weight.size(1) · receptive field */
    int64_t wshape[5] = {transpose ? in : out, transpose ? out : in, k[0], k[1], k[2]};
    if (!add_param(m, "weight", uniform_init(dev, 5, wshape, fan_in, rng), true, false)) return fail(m);
    if (bias && !add_param(m, "bias", uniform_init(dev, CG_SHAPE(out), fan_in, rng), true, false)) return fail(m);
    return m;
}

cg_module *cg_conv3d_new(cg_module *parent, const char *name, int in, int out, const int k[3], cg_conv_opts o,
                         bool bias, cg_device dev, cg_rng *rng) {
    return conv_new(parent, name, in, out, k, o, bias, dev, rng, false);
}

cg_module *cg_conv_transpose3d_new(cg_module *parent, const char *name, int in, int out, const int k[3],
                                   cg_conv_opts o, bool bias, cg_device dev, cg_rng *rng) {
    return conv_new(parent, name, in, out, k, o, bias, dev, rng, true);
}

cg_module *cg_layer_norm_new(cg_module *parent, const char *name, int naxes, const int64_t *shape, bool affine,
                             float eps, cg_device dev) {
    if (naxes < 1 || naxes > CG_MAX_DIMS) {
        cg_set_error(CG_ERR_INVALID, "layer norm over %d axes (need 1..%d)", naxes, CG_MAX_DIMS);
        return NULL;
    }
    cg_module *m = cg_module_new(parent, name);
    m->kind = CG_MOD_LAYER_NORM;
    m->naxes = naxes;
    m->eps = eps;
    if (affine && (!add_param(m, "weight", cg_tensor_full(dev, naxes, shape, 1.0f), true, false) ||
                   !add_param(m, "bias", cg_tensor_zeros(dev, naxes, shape), true, false)))
        return fail(m);
    return m;
}

cg_module *cg_batch_norm_new(cg_module *parent, const char *name, int channels, float momentum, float eps,
                             cg_device dev) {
    if (!positive("batch norm channels", channels)) return NULL;
    cg_module *m = cg_module_new(parent, name);
    m->kind = CG_MOD_BATCH_NORM;
    m->in = m->out = channels;
    m->momentum = momentum;
    m->eps = eps;
    if (!add_param(m, "weight", cg_tensor_full(dev, CG_SHAPE(channels), 1.0f), true, false) ||
        !add_param(m, "bias", cg_tensor_zeros(dev, CG_SHAPE(channels)), true, false) ||
        !add_param(m, "running_mean", cg_tensor_zeros(dev, CG_SHAPE(channels)), false, true) ||
        !add_param(m, "running_var", cg_tensor_full(dev, CG_SHAPE(channels), 1.0f), false, true))
        return fail(m);
    return m;
}

cg_status cg_module_add(cg_module *m, const char *name, cg_tensor *t, bool buffer) {
    if (!t) return cg_last_status();
    if (m->nparams >= CG_MODULE_MAX_PARAMS) {
        cg_tensor_free(t);
        return cg_set_error(CG_ERR_INVALID, "module '%s' already holds %d tensors", m->name, CG_MODULE_MAX_PARAMS);
    }
    add_param(m, name, t, !buffer, buffer);
    return CG_OK;
}

/* -------------------------------------------------------------- using ---- */

cg_tensor *cg_module_param(const cg_module *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->pname[i], name) == 0) return m->params[i];
    return NULL;
}

static cg_tensor *layer_forward(cg_module *m, cg_tensor *x) {
    cg_tensor *w = cg_module_param(m, "weight"), *b = cg_module_param(m, "bias");
    switch (m->kind) {
    case CG_MOD_LINEAR: return cg_linear(x, w, b);
    case CG_MOD_CONV3D: return cg_conv3d(x, w, b, m->opts);
    case CG_MOD_CONV_TRANSPOSE3D: return cg_conv_transpose3d(x, w, b, m->opts);
    case CG_MOD_LAYER_NORM: return cg_layer_norm(x, m->naxes, w, b, m->eps);
    case CG_MOD_BATCH_NORM:
        return cg_batch_norm(x, w, b, cg_module_param(m, "running_mean"), cg_module_param(m, "running_var"),
                             m->training, m->momentum, m->eps);
    default:
        cg_set_error(CG_ERR_INVALID, "module '%s' is a container and has no forward of its own", m->name);
        return NULL;
    }
}

cg_tensor *cg_module_forward(cg_module *m, cg_tensor *x) {
    if (!x) return NULL;
    cg_math_mode prev = cg_set_math_mode(cg_module_math_mode(m));
    cg_tensor *y = layer_forward(m, x);
    cg_set_math_mode(prev);
    return y;
}

void cg_module_set_math_mode(cg_module *m, int mode) {
    CG_ASSERT(mode >= -1 && mode <= CG_MATH_BF16);
    m->math = (signed char)mode;
}

cg_math_mode cg_module_math_mode(const cg_module *m) {
    for (; m; m = m->parent)
        if (m->math >= 0) return (cg_math_mode)m->math;
    return cg_get_math_mode();
}

cg_status cg_module_set_math_spec(cg_module *root, const char *spec) {
    char tmp[512];
    if (!spec || strlen(spec) >= sizeof tmp) return cg_set_error(CG_ERR_INVALID, "math: spec missing or too long");
    /* validate everything first: a bad spec changes nothing */
    for (int pass = 0; pass < 2; pass++) {
        char *save = NULL;
        snprintf(tmp, sizeof tmp, "%s", spec); /* strtok_r cuts it up */
        for (char *item = strtok_r(tmp, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *colon = strrchr(item, ':');
            const char *path = colon ? item : "", *mode_s = colon ? colon + 1 : item;
            if (colon) *colon = 0;
            int mode = cg_math_mode_parse(mode_s);
            if (mode < 0)
                return cg_set_error(CG_ERR_INVALID, "math: unknown mode '%s' (fp32, tf32 or bf16)", mode_s);
            cg_module *m = cg_module_find(root, path);
            if (!m) return cg_set_error(CG_ERR_INVALID, "math: no module '%s' in this model", path);
            if (pass) cg_module_set_math_mode(m, mode);
        }
    }
    return CG_OK;
}

cg_module *cg_module_find(cg_module *root, const char *path) {
    if (!root || !path || !*path) return root;
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    for (int i = 0; i < root->nchildren; i++) {
        cg_module *c = root->children[i];
        if (strlen(c->name) == len && strncmp(c->name, path, len) == 0) return dot ? cg_module_find(c, dot + 1) : c;
    }
    return NULL;
}

static void collect(cg_module *m, const char *prefix, cg_named_list *out, bool buffers) {
    char name[160];
    for (int i = 0; i < m->nparams; i++) {
        if (m->is_buffer[i] && !buffers) continue;
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", m->pname[i]);
        cg_named_list_add(out, name, m->params[i], m->is_buffer[i]);
    }
    for (int i = 0; i < m->nchildren; i++) {
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", m->children[i]->name);
        collect(m->children[i], name, out, buffers);
    }
}

void cg_module_collect(cg_module *root, cg_named_list *out, bool include_buffers) {
    collect(root, "", out, include_buffers);
}

int64_t cg_module_numel(cg_module *root) {
    int64_t n = 0;
    for (int i = 0; i < root->nparams; i++)
        if (!root->is_buffer[i]) n += cg_numel(root->params[i]);
    for (int i = 0; i < root->nchildren; i++) n += cg_module_numel(root->children[i]);
    return n;
}

void cg_module_set_training(cg_module *root, bool training) {
    root->training = training;
    for (int i = 0; i < root->nchildren; i++) cg_module_set_training(root->children[i], training);
}

void cg_module_zero_grad(cg_module *root) {
    for (int i = 0; i < root->nparams; i++) {
        cg_tensor_free(root->params[i]->grad);
        root->params[i]->grad = NULL;
    }
    for (int i = 0; i < root->nchildren; i++) cg_module_zero_grad(root->children[i]);
}

cg_status cg_module_to(cg_module *root, cg_device dev) {
    for (int i = 0; i < root->nparams; i++)
        if (cg_tensor_move_(root->params[i], dev) != CG_OK) return cg_last_status();
    for (int i = 0; i < root->nchildren; i++)
        if (cg_module_to(root->children[i], dev) != CG_OK) return cg_last_status();
    return CG_OK;
}

void cg_module_free(cg_module *root) {
    if (!root) return;
    for (int i = 0; i < root->nchildren; i++) cg_module_free(root->children[i]);
    for (int i = 0; i < root->nparams; i++) cg_tensor_free(root->params[i]);
    free(root->children);
    free(root);
}
