/*
 * autograd/elementwise.c — elementwise ops with broadcasting, and their derivatives.
 *
 * Gradient convention: backward functions return new tensors (=); the engine adds them up.
 * Every derivative is written with differentiable ops, so it can be differentiated again:
 * exp's backward is g·exp(x) using the recorded output, relu's is g·step(x) where step is
 * piecewise constant (its own derivative is zero, which is the right answer almost
 * everywhere).
 *
 * Broadcasting follows NumPy: shapes align at the trailing axis; a size-1 (or missing)
 * axis stretches. The binary kernel reads inputs through strides (0 on broadcast axes), so
 * nothing is materialised; the backward sums the gradient back down (cg_sum_to).
 */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"

typedef struct { float p0, p1; } uargs;

/* ------------------------------------------------------------ unary ops ---- */

static cg_tensor *unary(const char *name, cg_unary_op op, cg_tensor *x, float p0, float p1,
                        cg_backward_fn bw) {
    if (!x) return NULL;
    x = cg_contiguous(x);
    if (!x) return NULL;
    cg_tensor *out = cg_op_new(x->device, x->ndim, x->shape);
    if (!out) return NULL;
    cg_backend_of(x)->unary(op, cg_data(out), cg_data(x), cg_numel(x), p0, p1);
    cg_node *n = bw ? cg_op_record(name, bw, out, 1, &x) : NULL;
    if (n) *CG_ARGS(n, uargs) = (uargs){p0, p1};
    return out;
}

#define X (n->in[0])
#define Y (n->out)
#define P0 (CG_ARGS(n, uargs)->p0)

static void bw_neg(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_neg(g); }
static void bw_affine(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_scale(g, P0); }
static void bw_square(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_mul(g, cg_scale(X, 2.0f)); }
static void bw_recip(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_neg(cg_mul(g, cg_square(Y))); }
static void bw_exp(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_mul(g, Y); }
static void bw_log(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_div(g, X); }
static void bw_sqrt(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_div(cg_scale(g, 0.5f), Y); }
static void bw_rsqrt(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_mul(g, cg_scale(cg_pow(Y, 3.0f), -0.5f)); /* d x^-1/2 = -1/2 x^-3/2 */
}
static void bw_pow(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_mul(g, cg_scale(cg_pow(X, P0 - 1.0f), P0));
}
static void bw_abs(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_mul(g, cg_sign(X)); }
static void bw_clamp(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    uargs *a = CG_ARGS(n, uargs);
    gi[0] = cg_mul(g, cg_unary(CG_U_CLAMP_MASK, X, a->p0, a->p1));
}
static void bw_relu(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_mul(g, cg_step(X, 0.0f)); }
static void bw_leaky(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_mul(g, cg_unary(CG_U_LEAKY_STEP, X, P0, 0.0f));
}
static void bw_elu(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    /* d elu = 1 for x > 0, alpha·exp(x) = y + alpha otherwise */
    cg_tensor *m = cg_step(X, 0.0f);
    cg_tensor *neg = cg_mul(cg_affine(m, -1.0f, 1.0f), cg_add_scalar(Y, P0));
    gi[0] = cg_mul(g, cg_add(m, neg));
}
static void bw_sigmoid(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_mul(g, cg_mul(Y, cg_affine(Y, -1.0f, 1.0f)));
}
static void bw_tanh(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_mul(g, cg_affine(cg_square(Y), -1.0f, 1.0f));
}
static void bw_softplus(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_mul(g, cg_sigmoid(X)); }
static void bw_softsign(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_mul(g, cg_square(cg_recip(cg_add_scalar(cg_abs(X), 1.0f))));
}

cg_tensor *cg_neg(cg_tensor *x) { return unary("neg", CG_U_NEG, x, 0, 0, bw_neg); }
cg_tensor *cg_affine(cg_tensor *x, float s, float c) { return unary("affine", CG_U_AFFINE, x, s, c, bw_affine); }
cg_tensor *cg_scale(cg_tensor *x, float s) { return cg_affine(x, s, 0.0f); }
cg_tensor *cg_add_scalar(cg_tensor *x, float c) { return cg_affine(x, 1.0f, c); }
cg_tensor *cg_square(cg_tensor *x) { return unary("square", CG_U_SQUARE, x, 0, 0, bw_square); }
cg_tensor *cg_recip(cg_tensor *x) { return unary("recip", CG_U_RECIP, x, 0, 0, bw_recip); }
cg_tensor *cg_exp(cg_tensor *x) { return unary("exp", CG_U_EXP, x, 0, 0, bw_exp); }
cg_tensor *cg_log(cg_tensor *x) { return unary("log", CG_U_LOG, x, 0, 0, bw_log); }
cg_tensor *cg_sqrt(cg_tensor *x) { return unary("sqrt", CG_U_SQRT, x, 0, 0, bw_sqrt); }
cg_tensor *cg_rsqrt(cg_tensor *x) { return unary("rsqrt", CG_U_RSQRT, x, 0, 0, bw_rsqrt); }
cg_tensor *cg_pow(cg_tensor *x, float p) { return unary("pow", CG_U_POW, x, p, 0, bw_pow); }
cg_tensor *cg_abs(cg_tensor *x) { return unary("abs", CG_U_ABS, x, 0, 0, bw_abs); }
cg_tensor *cg_clamp(cg_tensor *x, float lo, float hi) { return unary("clamp", CG_U_CLAMP, x, lo, hi, bw_clamp); }
cg_tensor *cg_relu(cg_tensor *x) { return unary("relu", CG_U_RELU, x, 0, 0, bw_relu); }
cg_tensor *cg_leaky_relu(cg_tensor *x, float s) { return unary("leaky_relu", CG_U_LEAKY_RELU, x, s, 0, bw_leaky); }
cg_tensor *cg_elu(cg_tensor *x, float a) { return unary("elu", CG_U_ELU, x, a, 0, bw_elu); }
cg_tensor *cg_sigmoid(cg_tensor *x) { return unary("sigmoid", CG_U_SIGMOID, x, 0, 0, bw_sigmoid); }
cg_tensor *cg_tanh(cg_tensor *x) { return unary("tanh", CG_U_TANH, x, 0, 0, bw_tanh); }
cg_tensor *cg_softplus(cg_tensor *x) { return unary("softplus", CG_U_SOFTPLUS, x, 0, 0, bw_softplus); }
cg_tensor *cg_softsign(cg_tensor *x) { return unary("softsign", CG_U_SOFTSIGN, x, 0, 0, bw_softsign); }
cg_tensor *cg_sign(cg_tensor *x) { return unary("sign", CG_U_SIGN, x, 0, 0, NULL); }
cg_tensor *cg_step(cg_tensor *x, float t) { return unary("step", CG_U_STEP, x, t, 0, NULL); }

cg_tensor *cg_unary(cg_unary_op op, cg_tensor *x, float p0, float p1) {
    switch (op) {
    case CG_U_COPY: return cg_affine(x, 1.0f, 0.0f);
    case CG_U_NEG: return cg_neg(x);
    case CG_U_AFFINE: return cg_affine(x, p0, p1);
    case CG_U_SQUARE: return cg_square(x);
    case CG_U_RECIP: return cg_recip(x);
    case CG_U_EXP: return cg_exp(x);
    case CG_U_LOG: return cg_log(x);
    case CG_U_SQRT: return cg_sqrt(x);
    case CG_U_RSQRT: return cg_rsqrt(x);
    case CG_U_POW: return cg_pow(x, p0);
    case CG_U_ABS: return cg_abs(x);
    case CG_U_CLAMP: return cg_clamp(x, p0, p1);
    case CG_U_RELU: return cg_relu(x);
    case CG_U_LEAKY_RELU: return cg_leaky_relu(x, p0);
    case CG_U_ELU: return cg_elu(x, p0);
    case CG_U_SIGMOID: return cg_sigmoid(x);
    case CG_U_TANH: return cg_tanh(x);
    case CG_U_SOFTPLUS: return cg_softplus(x);
    case CG_U_SOFTSIGN: return cg_softsign(x);
    default: return unary("unary", op, x, p0, p1, NULL); /* piecewise-constant: no gradient */
    }
}

/* ----------------------------------------------------------- binary ops ---- */

/* The broadcast shape of a and b, or an error naming both shapes. */
static cg_status broadcast_shape(const cg_tensor *a, const cg_tensor *b, const char *op, int *ndim,
                                 int64_t *shape) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char s1[96], s2[96];
            return cg_set_error(CG_ERR_INVALID, "%s: shapes %s and %s cannot be broadcast together",
                                op, CG_SHAPE_STR(a, s1), CG_SHAPE_STR(b, s2));
        }
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = nd;
    return CG_OK;
}

/* Strides that read t as if it had the broadcast shape (0 on stretched axes). */
static void bcast_strides(const cg_tensor *t, int nd, const int64_t *shape, int64_t *s) {
    for (int i = 0; i < nd; i++) {
        int it = i - (nd - t->ndim);
        s[i] = (it >= 0 && t->shape[it] == shape[i]) ? t->stride[it] : 0;
    }
}

static void bw_add(cg_node *n, cg_tensor *g, cg_tensor **gi);
static void bw_sub(cg_node *n, cg_tensor *g, cg_tensor **gi);
static void bw_mul(cg_node *n, cg_tensor *g, cg_tensor **gi);
static void bw_div(cg_node *n, cg_tensor *g, cg_tensor **gi);

static cg_tensor *binary(const char *name, cg_binary_op op, cg_tensor *a, cg_tensor *b, cg_backward_fn bw) {
    if (!a || !b) return NULL;
    if (a->device != b->device) {
        cg_set_error(CG_ERR_INVALID, "%s: operands are on different devices (%s and %s)", name,
                     cg_device_name(a->device), cg_device_name(b->device));
        return NULL;
    }
    cg_bcast_desc d;
    if (broadcast_shape(a, b, name, &d.ndim, d.shape) != CG_OK) return NULL;
    bcast_strides(a, d.ndim, d.shape, d.sa);
    bcast_strides(b, d.ndim, d.shape, d.sb);
    cg_tensor *out = cg_op_new(a->device, d.ndim, d.shape);
    if (!out) return NULL;
    cg_backend_of(a)->binary(op, cg_data(out), cg_data(a), cg_data(b), &d);
    cg_tensor *in[2] = {a, b};
    cg_op_record(name, bw, out, 2, in);
    return out;
}

#define A (n->in[0])
#define B (n->in[1])
#define TO(t, like) cg_sum_to((t), (like)->ndim, (like)->shape)

static void bw_add(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    if (n->needs[0]) gi[0] = TO(g, A);
    if (n->needs[1]) gi[1] = TO(g, B);
}
static void bw_sub(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    if (n->needs[0]) gi[0] = TO(g, A);
    if (n->needs[1]) gi[1] = TO(cg_neg(g), B);
}
static void bw_mul(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    if (n->needs[0]) gi[0] = TO(cg_mul(g, B), A);
    if (n->needs[1]) gi[1] = TO(cg_mul(g, A), B);
}
static void bw_div(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    if (n->needs[0]) gi[0] = TO(cg_div(g, B), A);
    if (n->needs[1]) gi[1] = TO(cg_neg(cg_div(cg_mul(g, A), cg_square(B))), B);
}

cg_tensor *cg_add(cg_tensor *a, cg_tensor *b) { return binary("add", CG_B_ADD, a, b, bw_add); }
cg_tensor *cg_sub(cg_tensor *a, cg_tensor *b) { return binary("sub", CG_B_SUB, a, b, bw_sub); }
cg_tensor *cg_mul(cg_tensor *a, cg_tensor *b) { return binary("mul", CG_B_MUL, a, b, bw_mul); }
cg_tensor *cg_div(cg_tensor *a, cg_tensor *b) { return binary("div", CG_B_DIV, a, b, bw_div); }

/* ------------------------------------------------- constants and random ---- */

cg_tensor *cg_full(cg_device dev, int ndim, const int64_t *shape, float value) {
    return cg_op_adopt(cg_tensor_full(dev, ndim, shape, value));
}

cg_tensor *cg_full_like(cg_tensor *x, float value) {
    return x ? cg_full(x->device, x->ndim, x->shape, value) : NULL;
}

cg_tensor *cg_rand_like(cg_tensor *x, cg_rng *rng, float lo, float hi) {
    return x ? cg_op_adopt(cg_tensor_rand(x->device, x->ndim, x->shape, rng, lo, hi)) : NULL;
}

cg_tensor *cg_randn_like(cg_tensor *x, cg_rng *rng) {
    return x ? cg_op_adopt(cg_tensor_randn(x->device, x->ndim, x->shape, rng, 0.0f, 1.0f)) : NULL;
}

cg_tensor *cg_dropout(cg_tensor *x, float p, bool training, cg_rng *rng) {
    if (!x) return NULL;
    if (!training || p <= 0.0f) return x;
    if (p >= 1.0f) return cg_mul(x, cg_full_like(x, 0.0f));
    /* keep where u > p (u uniform in (0,1]), scaled by 1/(1-p): the mask is a constant */
    cg_tensor *mask = cg_scale(cg_step(cg_rand_like(x, rng, 0.0f, 1.0f), p), 1.0f / (1.0f - p));
    return cg_mul(x, mask);
}
