/*
 * models/optim.h — optimizers (SGD with momentum, Adam, AdamW, RMSprop), gradient clipping
 * and learning-rate schedules, with PyTorch's formulas (torch.optim).
 *
 * An optimizer holds a list of named parameters (borrowed: the module tree owns them) and
 * its own state per parameter (momentum buffers, moment estimates), which it owns. A step
 * reads each parameter's ->grad (left by cg_backward) and updates the parameter in place
 * through the backend's fused update kernel, on the parameter's device. Clipping by the
 * global gradient norm is computed on the device too: no host round trip in a step.
 *
 *   cg_optim *opt = cg_optim_new(&(cg_optim_cfg){.kind = CG_ADAM, .lr = 1e-3f, .beta1 = 0.9f,
 *                                                 .beta2 = 0.999f, .eps = 1e-8f}, &params);
 *   loop: forward; cg_backward(loss); cg_optim_step(opt); cg_optim_zero_grad(opt); cg_tape_reset();
 *
 * State for checkpoints: cg_optim_collect_state() lists the state tensors under names
 * "<name>.<param>.<state>" (exp_avg, exp_avg_sq, momentum_buffer, square_avg) and
 * "<name>.steps", the per-parameter step counts (PyTorch's state['step'], which Adam's bias
 * correction uses), kept in a CPU tensor so that restoring a checkpoint restores them.
 */
#ifndef CG_MODELS_OPTIM_H
#define CG_MODELS_OPTIM_H

#include "models/module.h"

typedef enum { CG_OPT_SGD, CG_OPT_ADAM, CG_OPT_ADAMW, CG_OPT_RMSPROP } cg_optim_kind;

typedef struct {
    cg_optim_kind kind;
    const char *name;         /* prefix of its state's names in checkpoints ("optim" if NULL);
                                 give each optimizer of a model its own (a GAN has two) */
    float lr;
    float weight_decay;       /* L2 penalty (SGD, Adam, RMSprop) or decoupled decay (AdamW) */
    float momentum;           /* SGD, RMSprop */
    float dampening;          /* SGD */
    bool nesterov;            /* SGD */
    float beta1, beta2, eps;  /* Adam(W): defaults 0.9, 0.999, 1e-8 when 0 */
    float alpha;              /* RMSprop smoothing: default 0.99 when 0 (eps default 1e-8) */
    float clip_norm;          /* > 0: clip the global gradient norm to this before each step */
} cg_optim_cfg;

typedef struct cg_optim cg_optim;

/* Parameters whose tensor does not require a gradient (buffers) are ignored. Returns NULL
 * (error set) for a bad configuration or when state memory cannot be allocated. */
cg_optim *cg_optim_new(const cg_optim_cfg *cfg, const cg_named_list *params);
cg_status cg_optim_step(cg_optim *o);
void cg_optim_zero_grad(cg_optim *o);
void cg_optim_set_lr(cg_optim *o, float lr);
float cg_optim_lr(const cg_optim *o);
int64_t cg_optim_steps(const cg_optim *o);
void cg_optim_set_steps(cg_optim *o, int64_t steps);
/* The global L2 norm of all gradients, read back to the host (for logging). */
float cg_optim_grad_norm(cg_optim *o);
/* Append the state tensors (owned by the optimizer) with their names. */
void cg_optim_collect_state(cg_optim *o, cg_named_list *out);
void cg_optim_free(cg_optim *o);

/* Learning-rate schedules, per epoch: constant, step (lr·gamma^floor(epoch/step_size), as
 * torch StepLR) and exponential (lr·gamma^epoch, as torch ExponentialLR). */
typedef enum { CG_LR_CONSTANT, CG_LR_STEP, CG_LR_EXPONENTIAL } cg_lr_kind;
typedef struct {
    cg_lr_kind kind;
    float gamma;
    int step_size;
} cg_lr_schedule;
float cg_lr_at(const cg_lr_schedule *s, float lr0, int epoch);

#endif
