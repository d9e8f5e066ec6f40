/*
 * autograd/ops.h — every differentiable op.
 *
 * All ops are eager: they compute at once on the inputs' device and return a temporary
 * owned by the tape (see autograd/tape.h), recording a node when a gradient is needed.
 * Each op's backward is written with these same ops, so gradients of gradients work.
 *
 * Errors: an op given shapes that do not fit returns NULL and sets cg_last_error(); an op
 * given a NULL input returns NULL and keeps the first error. So a chain of ops can be
 * checked once at its end.
 *
 * Axes are given as a bit mask (bit i = axis i; CG_AXIS(i)); negative axis numbers in the
 * int-taking ops count from the end, as in PyTorch.
 *
 * File map: elementwise.c, reduce.c, shape.c, matmul.c, conv3d.c, pointwise.c, norm.c, sort.c,
 * loss.c.
 */
#ifndef CG_OPS_H
#define CG_OPS_H

#include "autograd/tape.h"
#include "core/tensor.h"

#define CG_AXIS(i) (1u << (i))

/* ------------------------------------------------ elementwise.c ---- */
/* Binary ops broadcast like NumPy/PyTorch (trailing axes aligned, size-1 axes stretch). */
cg_tensor *cg_add(cg_tensor *a, cg_tensor *b);
cg_tensor *cg_sub(cg_tensor *a, cg_tensor *b);
cg_tensor *cg_mul(cg_tensor *a, cg_tensor *b);
cg_tensor *cg_div(cg_tensor *a, cg_tensor *b);
cg_tensor *cg_neg(cg_tensor *x);
cg_tensor *cg_scale(cg_tensor *x, float s);            /* s·x */
cg_tensor *cg_add_scalar(cg_tensor *x, float c);       /* x + c */
cg_tensor *cg_affine(cg_tensor *x, float s, float c);  /* s·x + c */
cg_tensor *cg_square(cg_tensor *x);
cg_tensor *cg_recip(cg_tensor *x);
cg_tensor *cg_exp(cg_tensor *x);
cg_tensor *cg_log(cg_tensor *x);
cg_tensor *cg_sqrt(cg_tensor *x);
cg_tensor *cg_rsqrt(cg_tensor *x);
cg_tensor *cg_pow(cg_tensor *x, float p);              /* x^p, elementwise */
cg_tensor *cg_abs(cg_tensor *x);
cg_tensor *cg_clamp(cg_tensor *x, float lo, float hi);
cg_tensor *cg_relu(cg_tensor *x);
cg_tensor *cg_leaky_relu(cg_tensor *x, float slope);
cg_tensor *cg_elu(cg_tensor *x, float alpha);
cg_tensor *cg_sigmoid(cg_tensor *x);
cg_tensor *cg_tanh(cg_tensor *x);
cg_tensor *cg_softplus(cg_tensor *x);
cg_tensor *cg_softsign(cg_tensor *x);
/* Non-differentiable helpers (their gradient is zero): */
cg_tensor *cg_sign(cg_tensor *x);
cg_tensor *cg_step(cg_tensor *x, float threshold);     /* 1 where x > threshold, else 0 */
cg_tensor *cg_unary(cg_unary_op op, cg_tensor *x, float p0, float p1); /* any table op, no grad
                                                          unless it is one of the above */
/* Constants and random tensors on the tape (no gradient). */
cg_tensor *cg_full(cg_device dev, int ndim, const int64_t *shape, float value);
cg_tensor *cg_full_like(cg_tensor *x, float value);
cg_tensor *cg_rand_like(cg_tensor *x, cg_rng *rng, float lo, float hi);
cg_tensor *cg_randn_like(cg_tensor *x, cg_rng *rng);
/* Inverted dropout: zero with probability p, scale survivors by 1/(1-p). Identity when
 * !training or p == 0. */
cg_tensor *cg_dropout(cg_tensor *x, float p, bool training, cg_rng *rng);

/* ---------------------------------------------------- reduce.c ---- */
cg_tensor *cg_sum(cg_tensor *x, unsigned axes, bool keepdim);
cg_tensor *cg_sum_all(cg_tensor *x);                   /* shape () */
cg_tensor *cg_mean(cg_tensor *x, unsigned axes, bool keepdim);
cg_tensor *cg_mean_all(cg_tensor *x);
/* Variance; correction 0 is the biased (population) variance, 1 the unbiased one. */
cg_tensor *cg_var(cg_tensor *x, unsigned axes, bool keepdim, int correction);
/* p-norm (Σ|x|^p)^(1/p) over axes; p = 2 uses sqrt(Σx²) with a tiny guard at 0 so that
 * its gradient is finite (as WGAN-GP implementations do). */
cg_tensor *cg_norm(cg_tensor *x, float p, unsigned axes, bool keepdim);
/* Sum x down to `shape` (the inverse of broadcasting): used by broadcasting backward. */
cg_tensor *cg_sum_to(cg_tensor *x, int ndim, const int64_t *shape);

/* ----------------------------------------------------- shape.c ---- */
cg_tensor *cg_reshape(cg_tensor *x, int ndim, const int64_t *shape); /* one entry may be -1 */
cg_tensor *cg_flatten(cg_tensor *x, int start_axis);   /* (N, C, D, H, W) -> (N, C·D·H·W) */
cg_tensor *cg_permute(cg_tensor *x, const int *perm);
cg_tensor *cg_transpose(cg_tensor *x, int a, int b);
cg_tensor *cg_slice(cg_tensor *x, int axis, int64_t start, int64_t end); /* [start, end) */
cg_tensor *cg_concat(int n, cg_tensor *const *xs, int axis);
cg_tensor *cg_expand(cg_tensor *x, int ndim, const int64_t *shape);      /* broadcast view */
cg_tensor *cg_contiguous(cg_tensor *x);
cg_tensor *cg_detach(cg_tensor *x);                    /* same data, no gradient */
/* Zero-pad x into a tensor of `shape`, placing it at `offset` (the backward of slicing). */
cg_tensor *cg_pad_into(cg_tensor *x, int ndim, const int64_t *shape, const int64_t *offset);
/* A differentiable copy to another device. */
cg_tensor *cg_to(cg_tensor *x, cg_device dev);

/* ---------------------------------------------------- matmul.c ---- */
/* (..., M, K) · (..., K, N) -> (..., M, N); batch axes broadcast; 1-D operands are not
 * promoted (use reshape). */
cg_tensor *cg_matmul(cg_tensor *a, cg_tensor *b);
/* x (..., in) · Wᵀ + b with W (out, in) and b (out) or NULL, as torch.nn.functional.linear. */
cg_tensor *cg_linear(cg_tensor *x, cg_tensor *w, cg_tensor *b);

/* ---------------------------------------------------- conv3d.c ---- */
/* Per-axis stride, padding and output padding (d, h, w). Kernel-size-1 layers take a
 * matrix-product fast path inside the kernels. */
typedef struct { int stride[3], pad[3], output_pad[3]; } cg_conv_opts;
cg_conv_opts cg_conv_opts_make(int stride, int pad, int output_pad);
/* x (N, Ci, D, H, W), w (Co, Ci, kD, kH, kW), bias (Co) or NULL. */
cg_tensor *cg_conv3d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o);
/* x (N, Ci, D, H, W), w (Ci, Co, kD, kH, kW) (PyTorch's ConvTranspose3d layout). */
cg_tensor *cg_conv_transpose3d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o);
/* 2-D versions: x (N, C, H, W), w (Co, Ci, kH, kW) / (Ci, Co, kH, kW); stride/pad/output_pad
 * use entries [1] and [2] of the opts (entry [0] is ignored). */
cg_tensor *cg_conv2d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o);
cg_tensor *cg_conv_transpose2d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o);
/* The two other members of the conv family, differentiable too (they are conv3d's
 * backward): dx from dy and w, and dw from x and dy. `in_shape`/`w_shape` are 5-D. */
cg_tensor *cg_conv3d_bwd_data(cg_tensor *dy, cg_tensor *w, const int64_t *in_shape, cg_conv_opts o);
cg_tensor *cg_conv3d_bwd_weight(cg_tensor *x, cg_tensor *dy, const int64_t *w_shape, cg_conv_opts o);
/* 3DGAN-style pooling and upsampling, as convolutions with fixed kernels (kernel = stride
 * = k per axis, no padding). */
cg_tensor *cg_avg_pool3d(cg_tensor *x, int k);
cg_tensor *cg_upsample_nearest3d(cg_tensor *x, int k);

/* ------------------------------------------------- pointwise.c ---- */
/* One fused kernel-size-1 layer for inference (no gradient): y = w·a(n(u)) + bias + bias_b,
 * where u is x, n the layer norm of u over its voxels with statistics x_mean/x_rstd (B, Ci)
 * and per-voxel gamma/beta (no norm when x_mean is NULL), and a is leaky_relu(slope) when
 * act. x (B, Ci, ...voxels), w (Co, Ci[, 1, 1, 1]), bias (Co), bias_b (B, Co). y has x's
 * shape with Co channels; when y_stats is given, y_stats[0] and [1] receive y's mean and
 * rstd per (B, Co), with eps. Two fusions with the layers around it:
 *   x_scale, x_shift (Ci): x has one channel and u = x_scale·x + x_shift (the 1 -> Ci
 *     kernel-size-1 layer before this one; cg_pointwise_expand_stats gives u's statistics);
 *   proj (Co): the Co -> 1 layer after this one (weight proj, activation a, no bias) is
 *     applied too and y is its (B, 1, ...) output (no y_stats then).
 * Every field of o may be NULL/0; o itself may be NULL. See core/backend.h (cg_pw_args). */
typedef struct {
    cg_tensor *x_scale, *x_shift, *x_mean, *x_rstd, *gamma, *beta;
    int act;
    float slope;
    cg_tensor *bias, *bias_b, *proj;
    float eps;
} cg_pw_opts;
cg_tensor *cg_pointwise_layer(cg_tensor *x, cg_tensor *w, const cg_pw_opts *o, cg_tensor **y_stats);
/* The statistics (B, Ci) of the expanded input x_scale·x + x_shift of a one-channel x
 * (B, 1, ...), from x's mean and variance: rstd = 1/sqrt(x_scale²·var(x) + eps). 0 or -1. */
int cg_pointwise_expand_stats(cg_tensor *x, cg_tensor *x_scale, cg_tensor *x_shift, float eps, cg_tensor **mean,
                              cg_tensor **rstd);

/* ------------------------------------------------------ norm.c ---- */
/* Layer norm over the last `naxes` axes, with an optional gain and bias shaped like those
 * axes (the BIB-AE normalises (D, H, W) per sample and channel with gain/bias (D, H, W)). */
cg_tensor *cg_layer_norm(cg_tensor *x, int naxes, cg_tensor *gamma, cg_tensor *beta, float eps);
/* cg_leaky_relu(cg_layer_norm(x, ...), slope) in one kernel each way (the same values and
 * gradients, gradients of gradients included; two passes over x's size fewer each way). */
cg_tensor *cg_layer_norm_leaky(cg_tensor *x, int naxes, cg_tensor *gamma, cg_tensor *beta, float eps, float slope);
/* Batch norm over all axes but axis 1 (channels). In training it uses the batch statistics
 * and updates running_mean/running_var (owned tensors of shape (C), may be NULL) with
 * `momentum` and the unbiased variance, as PyTorch; in evaluation it uses them. */
cg_tensor *cg_batch_norm(cg_tensor *x, cg_tensor *gamma, cg_tensor *beta, cg_tensor *running_mean,
                         cg_tensor *running_var, bool training, float momentum, float eps);

/* ------------------------------------------------------ sort.c ---- */
/* Sort along an axis; the gradient flows back through the permutation. */
cg_tensor *cg_sort(cg_tensor *x, int axis, bool descending);

/* ------------------------------------------------------ loss.c ---- */
cg_tensor *cg_mse_loss(cg_tensor *pred, cg_tensor *target);  /* mean((pred-target)^2) */
cg_tensor *cg_l1_loss(cg_tensor *pred, cg_tensor *target);   /* mean|pred-target| */
/* mean(softplus(x) - x·y): binary cross-entropy on logits, numerically stable. */
cg_tensor *cg_bce_with_logits(cg_tensor *logits, cg_tensor *target);
/* -0.5 · Σ(1 + logvar - mu² - exp(logvar)) / B, with B = size of axis 0 (BIB-AE's KLD). */
cg_tensor *cg_gaussian_kl(cg_tensor *mu, cg_tensor *logvar);
/* Multi-bandwidth Gaussian-kernel MMD between samples x (B, D) and y (B', D):
 * Σ_a [mean K_a(x,x) + mean K_a(y,y) - 2 mean K_a(x,y)], K_a(u,v) = exp(-a·|u-v|²),
 * diagonals included (the biased estimator, as the BIB-AE's latent MMD). */
cg_tensor *cg_mmd(cg_tensor *x, cg_tensor *y, int nalpha, const float *alphas);
/* The BIB-AE post-processor's sorted-kernel MMD (../shared/reference/models.md §1.7):
 * both inputs (B, ...) are flattened per shower and sorted in descending order; windows of
 * `kernel` ranks every `stride` ranks up to `cutoff` compare real and generated values at
 * the same ranks with a Gaussian kernel exp(-alpha·(u-v)²); the result is averaged over
 * windows and batch. */
cg_tensor *cg_mmd_sorted_kernel(cg_tensor *recon, cg_tensor *real, int kernel, int stride,
                                int cutoff, float alpha);
/* Soft sparsity of de Oliveira et al. (eq. 5, as printed), per sample: the mean over the
 * cells of (|x|^a + |x|^-b) / (|x|^a + |x|^-b + 1), shape (B). |x| is floored at eps, so
 * pick eps with eps^-(b+1) finite in float32 (1e-6 for b <= 5). As printed the |x|^-b term
 * sends empty cells to 1; the CaloGAN variant below is 0 there. */
cg_tensor *cg_soft_sparsity(cg_tensor *x, float a, float b, float eps);
/* CaloGAN code's variant (models.md §2.4): per sample, the mean over cells of
 * softsign(|x|^5 + |x|^(1/5))^(1/5); 0 at empty cells, towards 1 for large |x|. */
cg_tensor *cg_soft_sparsity_calogan(cg_tensor *x);

#endif
