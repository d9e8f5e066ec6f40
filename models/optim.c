/* models/optim.c — optimizer state and steps through the backend's update kernels. */
#include "models/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[160];
    cg_tensor *p;        /* borrowed */
    cg_tensor *s1, *s2;  /* state (owned): Adam m, v; SGD momentum; RMSprop square_avg, momentum */
} slot;

struct cg_optim {
    cg_optim_cfg cfg;
    char name[64];
    slot *slots;
    int n;
    cg_tensor *steps;    /* (n) on the CPU: steps each parameter has taken (exact below 2^24) */
};

static cg_tensor *zeros_like(const cg_tensor *t) { return cg_tensor_zeros(t->device, t->ndim, t->shape); }

cg_optim *cg_optim_new(const cg_optim_cfg *cfg, const cg_named_list *params) {
    cg_optim_cfg c = *cfg;
    if (!(c.lr >= 0) || !(c.weight_decay >= 0) || !(c.momentum >= 0) || c.kind < CG_OPT_SGD || c.kind > CG_OPT_RMSPROP) {
        cg_set_error(CG_ERR_INVALID, "optimizer: learning rate, weight decay and momentum must be >= 0");
        return NULL;
    }
    if (c.beta1 == 0 && c.beta2 == 0) { c.beta1 = 0.9f; c.beta2 = 0.999f; }
    if (c.eps == 0) c.eps = 1e-8f;
    if (c.alpha == 0) c.alpha = 0.99f;
    if (c.beta1 < 0 || c.beta1 >= 1 || c.beta2 < 0 || c.beta2 >= 1) {
        cg_set_error(CG_ERR_INVALID, "optimizer: betas must be in [0, 1)");
        return NULL;
    }
    cg_optim *o = cg_xcalloc(1, sizeof *o);
    o->cfg = c;
    snprintf(o->name, sizeof o->name, "%s", c.name ? c.name : "optim");
    o->cfg.name = o->name;
    o->slots = cg_xcalloc((size_t)(params->n ? params->n : 1), sizeof *o->slots);
    for (int i = 0; i < params->n; i++) {
        cg_tensor *p = params->v[i].t;
        if (!p->requires_grad) continue;
        slot *s = &o->slots[o->n++];
        snprintf(s->name, sizeof s->name, "%s", params->v[i].name);
        s->p = p;
        bool two = c.kind == CG_OPT_ADAM || c.kind == CG_OPT_ADAMW || (c.kind == CG_OPT_RMSPROP && c.momentum > 0);
        bool one = c.kind != CG_OPT_SGD || c.momentum > 0;
        if ((one && !(s->s1 = zeros_like(p))) || (two && !(s->s2 = zeros_like(p)))) {
            cg_optim_free(o);
            return NULL;
        }
    }
    int64_t n = o->n ? o->n : 1;
    o->steps = cg_tensor_zeros(CG_CPU, 1, &n);
    if (!o->steps) {
        cg_optim_free(o);
        return NULL;
    }
    return o;
}

/* The clip factor min(1, max_norm / (norm + 1e-6)) as a one-element tensor on the device,
 * computed from the gradients without leaving the device (torch.nn.utils.clip_grad_norm_). */
static cg_tensor *clip_factor(cg_optim *o, cg_device dev) {
    cg_tensor *total = NULL;
    for (int i = 0; i < o->n; i++) {
        cg_tensor *g = o->slots[i].p->grad;
        if (!g) continue;
        cg_tensor *s = cg_sum_all(cg_square(g));
        if (g->device != dev) s = cg_to(s, dev);
        total = total ? cg_add(total, s) : s;
    }
    if (!total) return NULL;
    cg_tensor *norm = cg_add_scalar(cg_sqrt(total), 1e-6f);
    return cg_clamp(cg_scale(cg_recip(norm), o->cfg.clip_norm), 0.0f, 1.0f);
}

cg_status cg_optim_step(cg_optim *o) {
    const cg_optim_cfg *c = &o->cfg;
    bool prev = cg_set_grad_enabled(false);
    cg_tape_pos mark = cg_tape_mark();
    float *steps = cg_data(o->steps);
    cg_tensor *factor = NULL;
    if (c->clip_norm > 0 && o->n > 0) factor = clip_factor(o, o->slots[0].p->device);
    for (int i = 0; i < o->n; i++) {
        slot *s = &o->slots[i];
        cg_tensor *p = s->p, *g = p->grad;
        if (!g) continue; /* not reached by the loss: no update, as PyTorch */
        int64_t t = (int64_t)steps[i] + 1;
        steps[i] = (float)t;
        const cg_backend *be = cg_backend_of(p);
        CG_ASSERT(cg_is_contiguous(p) && cg_is_contiguous(g) && g->device == p->device);
        const float *gs = factor && factor->device == p->device ? cg_data(factor) : NULL;
        int64_t n = cg_numel(p);
        switch (c->kind) {
        case CG_OPT_SGD:
            be->sgd_step(cg_data(p), s->s1 ? cg_data(s->s1) : NULL, cg_data(g), gs, n, c->lr, c->momentum,
                         c->dampening, c->weight_decay, c->nesterov, t == 1);
            break;
        case CG_OPT_ADAM:
        case CG_OPT_ADAMW:
            be->adam_step(cg_data(p), cg_data(s->s1), cg_data(s->s2), cg_data(g), gs, n, c->lr, c->beta1, c->beta2,
                          c->eps, c->weight_decay, c->kind == CG_OPT_ADAMW, t);
            break;
        case CG_OPT_RMSPROP:
            be->rmsprop_step(cg_data(p), cg_data(s->s1), s->s2 ? cg_data(s->s2) : NULL, cg_data(g), gs, n, c->lr,
                             c->alpha, c->eps, c->weight_decay, c->momentum);
            break;
        }
    }
    cg_tape_rewind(mark);
    cg_set_grad_enabled(prev);
    return CG_OK;
}

void cg_optim_zero_grad(cg_optim *o) {
    for (int i = 0; i < o->n; i++) {
        cg_tensor_free(o->slots[i].p->grad);
        o->slots[i].p->grad = NULL;
    }
}

void cg_optim_set_lr(cg_optim *o, float lr) { o->cfg.lr = lr; }
float cg_optim_lr(const cg_optim *o) { return o->cfg.lr; }
int64_t cg_optim_steps(const cg_optim *o) {
    const float *s = cg_data(o->steps);
    int64_t m = 0;
    for (int i = 0; i < o->n; i++) m = (int64_t)s[i] > m ? (int64_t)s[i] : m;
    return m;
}

void cg_optim_set_steps(cg_optim *o, int64_t steps) {
    float *s = cg_data(o->steps);
    for (int i = 0; i < o->n; i++) s[i] = (float)steps;
}

float cg_optim_grad_norm(cg_optim *o) {
    bool prev = cg_set_grad_enabled(false);
    cg_tape_pos mark = cg_tape_mark();
    double total = 0;
    for (int i = 0; i < o->n; i++)
        if (o->slots[i].p->grad) total += cg_item(cg_sum_all(cg_square(o->slots[i].p->grad)));
    cg_tape_rewind(mark);
    cg_set_grad_enabled(prev);
    return (float)sqrt(total);
}

void cg_optim_collect_state(cg_optim *o, cg_named_list *out) {
    const char *n1, *n2;
    switch (o->cfg.kind) {
    case CG_OPT_SGD: n1 = "momentum_buffer"; n2 = NULL; break;
    case CG_OPT_RMSPROP: n1 = "square_avg"; n2 = "momentum_buffer"; break;
    default: n1 = "exp_avg"; n2 = "exp_avg_sq"; break;
    }
    char name[300]; /* names longer than a cg_named holds are cut there */
    snprintf(name, sizeof name, "%s.steps", o->name);
    cg_named_list_add(out, name, o->steps, true);
    for (int i = 0; i < o->n; i++) {
        if (o->slots[i].s1) {
            snprintf(name, sizeof name, "%s.%s.%s", o->name, o->slots[i].name, n1);
            cg_named_list_add(out, name, o->slots[i].s1, true);
        }
        if (o->slots[i].s2 && n2) {
            snprintf(name, sizeof name, "%s.%s.%s", o->name, o->slots[i].name, n2);
            cg_named_list_add(out, name, o->slots[i].s2, true);
        }
    }
}

void cg_optim_free(cg_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        cg_tensor_free(o->slots[i].s1);
        cg_tensor_free(o->slots[i].s2);
    }
    cg_tensor_free(o->steps);
    free(o->slots);
    free(o);
}

float cg_lr_at(const cg_lr_schedule *s, float lr0, int epoch) {
    switch (s->kind) {
    case CG_LR_STEP: return lr0 * powf(s->gamma, (float)(s->step_size > 0 ? epoch / s->step_size : 0));
    case CG_LR_EXPONENTIAL: return lr0 * powf(s->gamma, (float)epoch);
    default: return lr0;
    }
}
