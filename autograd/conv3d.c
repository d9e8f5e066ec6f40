/*
 * autograd/conv3d.c — how convolutions are differentiated.
 *
 * Three primitives, each the others' adjoint, form a family closed under differentiation:
 *
 *   y  = conv(x, w)              (cg_conv3d)
 *   dx = bwd_data(dy, w)         (cg_conv3d_bwd_data; this IS conv_transpose3d)
 *   dw = bwd_weight(x, dy)       (cg_conv3d_bwd_weight)
 *
 *   d conv       / (x, w)  = bwd_data(g, w),    bwd_weight(x, g)
 *   d bwd_data   / (dy, w) = conv(g, w),        bwd_weight(g, dy)
 *   d bwd_weight / (x, dy) = bwd_data(dy, g),   conv(x, g)
 *
 * So gradients of any order (WGAN-GP's penalty through a conv critic) use only the three
 * kernels of the backend table. conv_transpose3d(x, w) is bwd_data with x in the role of dy;
 * 2-D convolutions are 3-D ones with depth 1; average pooling and nearest upsampling are a
 * conv and a conv_transpose with a fixed kernel applied to each channel separately.
 *
 * Kernel-size-1 layers need nothing special here: the kernels see k = 1, stride 1, pad 0
 * and take their matrix-product path.
 */
#include <string.h>

#include "autograd/ops.h"

typedef struct {
    cg_conv_opts o;
    int64_t shape[CG_MAX_DIMS]; /* in_shape (bwd_data) or w_shape (bwd_weight) */
} conv_args;

cg_conv_opts cg_conv_opts_make(int stride, int pad, int output_pad) {
    cg_conv_opts o;
    for (int i = 0; i < 3; i++) {
        o.stride[i] = stride;
        o.pad[i] = pad;
        o.output_pad[i] = output_pad;
    }
    return o;
}

/* Fill a kernel descriptor from the conv input shape x (N, Ci, D, H, W), the weight shape
 * (Co, Ci, kD, kH, kW) and the options. Checks everything a user can get wrong. */
static cg_status make_desc(const char *op, const int64_t *x, const int64_t *w, cg_conv_opts o,
                           cg_conv_desc *c) {
    char s1[96], s2[96];
    if (x[1] != w[1])
        return cg_set_error(CG_ERR_INVALID, "%s: input %s has %lld channels but the weight %s expects %lld",
                            op, cg_shape_str(5, x, s1, sizeof s1), (long long)x[1],
                            cg_shape_str(5, w, s2, sizeof s2), (long long)w[1]);
    c->N = x[0];
    c->Ci = (int)x[1];
    c->Co = (int)w[0];
    for (int d = 0; d < 3; d++) {
        if (o.stride[d] < 1 || o.pad[d] < 0 || w[2 + d] < 1)
            return cg_set_error(CG_ERR_INVALID, "%s: stride must be >= 1, padding >= 0, kernel >= 1 (axis %d)",
                                op, d);
        c->in[d] = (int)x[2 + d];
        c->k[d] = (int)w[2 + d];
        c->stride[d] = o.stride[d];
        c->pad[d] = o.pad[d];
        int64_t span = x[2 + d] + 2 * (int64_t)o.pad[d] - w[2 + d];
        if (span < 0)
            return cg_set_error(CG_ERR_INVALID,
                                "%s: kernel size %lld is larger than the padded input (%lld) on axis %d",
                                op, (long long)w[2 + d], (long long)(x[2 + d] + 2 * o.pad[d]), d);
        c->out[d] = (int)(span / o.stride[d] + 1);
    }
    return CG_OK;
}

static bool check5(const char *op, const char *what, const cg_tensor *t) {
    if (t->ndim == 5) return true;
    char s[96];
    cg_set_error(CG_ERR_INVALID, "%s: %s must have 5 axes (N, C, D, H, W), got %s", op, what, CG_SHAPE_STR(t, s));
    return false;
}

static bool same_device(const char *op, cg_tensor *a, cg_tensor *b) {
    if (!b || a->device == b->device) return true;
    cg_set_error(CG_ERR_INVALID, "%s: tensors on different devices (%s and %s)", op,
                 cg_device_name(a->device), cg_device_name(b->device));
    return false;
}

/* Whether a gradient dy has the shape of the conv output that c describes. */
static bool matches_output(const char *op, const cg_tensor *dy, const cg_conv_desc *c) {
    if (dy->shape[0] == c->N && dy->shape[1] == c->Co && dy->shape[2] == c->out[0] && dy->shape[3] == c->out[1] &&
        dy->shape[4] == c->out[2])
        return true;
    char s1[96];
    cg_set_error(CG_ERR_INVALID, "%s: gradient %s does not match the conv output (%lld, %d, %d, %d, %d)", op,
                 CG_SHAPE_STR(dy, s1), (long long)c->N, c->Co, c->out[0], c->out[1], c->out[2]);
    return false;
}

/* ------------------------------------------------------------ conv3d ---- */

static void bw_conv(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    cg_conv_opts o = CG_ARGS(n, conv_args)->o;
    cg_tensor *x = n->in[0], *w = n->in[1];
    if (n->needs[0]) gi[0] = cg_conv3d_bwd_data(g, w, x->shape, o);
    if (n->needs[1]) gi[1] = cg_conv3d_bwd_weight(x, g, w->shape, o);
    if (n->nin > 2 && n->needs[2]) gi[2] = cg_sum(g, CG_AXIS(0) | CG_AXIS(2) | CG_AXIS(3) | CG_AXIS(4), false);
}

cg_tensor *cg_conv3d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o) {
    if (!x || !w) return NULL;
    const char *op = "conv3d";
    if (!check5(op, "input", x) || !check5(op, "weight", w) || !same_device(op, x, w) ||
        !same_device(op, x, bias))
        return NULL;
    cg_conv_desc c;
    if (make_desc(op, x->shape, w->shape, o, &c) != CG_OK) return NULL;
    if (bias && (bias->ndim != 1 || bias->shape[0] != c.Co)) {
        char s[96];
        cg_set_error(CG_ERR_INVALID, "conv3d: bias %s should have shape (%d)", CG_SHAPE_STR(bias, s), c.Co);
        return NULL;
    }
    x = cg_contiguous(x);
    w = cg_contiguous(w);
    if (bias) bias = cg_contiguous(bias);
    cg_tensor *out = cg_op_new(x->device, 5, (int64_t[]){c.N, c.Co, c.out[0], c.out[1], c.out[2]});
    if (!out) return NULL;
    cg_backend_of(x)->conv_fwd(cg_data(out), cg_data(x), cg_data(w), bias ? cg_data(bias) : NULL, &c);
    cg_tensor *in[3] = {x, w, bias};
    cg_node *n = cg_op_record(op, bw_conv, out, bias ? 3 : 2, in);
    if (n) CG_ARGS(n, conv_args)->o = o;
    return out;
}

/* --------------------------------------------------- conv3d_bwd_data ---- */

static void bw_bwd_data(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    conv_args *a = CG_ARGS(n, conv_args);
    cg_tensor *dy = n->in[0], *w = n->in[1];
    if (n->needs[0]) gi[0] = cg_conv3d(g, w, NULL, a->o);
    if (n->needs[1]) gi[1] = cg_conv3d_bwd_weight(g, dy, w->shape, a->o);
}

cg_tensor *cg_conv3d_bwd_data(cg_tensor *dy, cg_tensor *w, const int64_t *in_shape, cg_conv_opts o) {
    if (!dy || !w) return NULL;
    const char *op = "conv3d_bwd_data";
    if (!check5(op, "gradient", dy) || !check5(op, "weight", w) || !same_device(op, dy, w)) return NULL;
    cg_conv_desc c;
    if (make_desc(op, in_shape, w->shape, o, &c) != CG_OK) return NULL;
    if (!matches_output(op, dy, &c)) return NULL;
    dy = cg_contiguous(dy);
    w = cg_contiguous(w);
    cg_tensor *out = cg_op_new(dy->device, 5, in_shape);
    if (!out) return NULL;
    cg_backend_of(dy)->conv_bwd_data(cg_data(out), cg_data(dy), cg_data(w), &c);
    cg_tensor *in[2] = {dy, w};
    cg_node *n = cg_op_record(op, bw_bwd_data, out, 2, in);
    if (n) {
        CG_ARGS(n, conv_args)->o = o;
        memcpy(CG_ARGS(n, conv_args)->shape, in_shape, 5 * sizeof(int64_t));
    }
    return out;
}

/* ------------------------------------------------- conv3d_bwd_weight ---- */

static void bw_bwd_weight(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    conv_args *a = CG_ARGS(n, conv_args);
    cg_tensor *x = n->in[0], *dy = n->in[1];
    if (n->needs[0]) gi[0] = cg_conv3d_bwd_data(dy, g, x->shape, a->o);
    if (n->needs[1]) gi[1] = cg_conv3d(x, g, NULL, a->o);
}

cg_tensor *cg_conv3d_bwd_weight(cg_tensor *x, cg_tensor *dy, const int64_t *w_shape, cg_conv_opts o) {
    if (!x || !dy) return NULL;
    const char *op = "conv3d_bwd_weight";
    if (!check5(op, "input", x) || !check5(op, "gradient", dy) || !same_device(op, x, dy)) return NULL;
    cg_conv_desc c;
    if (make_desc(op, x->shape, w_shape, o, &c) != CG_OK) return NULL;
    if (!matches_output(op, dy, &c)) return NULL;
    x = cg_contiguous(x);
    dy = cg_contiguous(dy);
    cg_tensor *out = cg_op_new(x->device, 5, w_shape);
    if (!out) return NULL;
    cg_backend_of(x)->conv_bwd_weight(cg_data(out), cg_data(x), cg_data(dy), &c);
    cg_tensor *in[2] = {x, dy};
    cg_node *n = cg_op_record(op, bw_bwd_weight, out, 2, in);
    if (n) {
        CG_ARGS(n, conv_args)->o = o;
        memcpy(CG_ARGS(n, conv_args)->shape, w_shape, 5 * sizeof(int64_t));
    }
    return out;
}

/* --------------------------------------------------- conv_transpose3d ---- */

cg_tensor *cg_conv_transpose3d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o) {
    if (!x || !w) return NULL;
    const char *op = "conv_transpose3d";
    if (!check5(op, "input", x) || !check5(op, "weight", w)) return NULL;
    if (x->shape[1] != w->shape[0]) {
        char s1[96], s2[96];
        cg_set_error(CG_ERR_INVALID, "%s: input %s has %lld channels but the weight %s (Ci, Co, k...) expects %lld",
                     op, CG_SHAPE_STR(x, s1), (long long)x->shape[1], CG_SHAPE_STR(w, s2),
                     (long long)w->shape[0]);
        return NULL;
    }
    int64_t out_shape[5] = {x->shape[0], w->shape[1], 0, 0, 0};
    for (int d = 0; d < 3; d++) {
        if (o.stride[d] < 1 || o.pad[d] < 0 || o.output_pad[d] < 0 ||
            (o.output_pad[d] >= o.stride[d])) {
            cg_set_error(CG_ERR_INVALID, "%s: need stride >= 1, padding >= 0 and 0 <= output_padding < stride "
                         "(axis %d: stride %d, padding %d, output_padding %d)", op, d, o.stride[d], o.pad[d],
                         o.output_pad[d]);
            return NULL;
        }
        out_shape[2 + d] = (x->shape[2 + d] - 1) * o.stride[d] - 2 * (int64_t)o.pad[d] + w->shape[2 + d] +
                           o.output_pad[d];
        if (out_shape[2 + d] < 1) {
            cg_set_error(CG_ERR_INVALID, "%s: padding %d leaves no output on axis %d", op, o.pad[d], d);
            return NULL;
        }
    }
    cg_tensor *y = cg_conv3d_bwd_data(x, w, out_shape, o);
    if (bias) {
        if (bias->ndim != 1 || bias->shape[0] != out_shape[1]) {
            char s[96];
            cg_set_error(CG_ERR_INVALID, "%s: bias %s should have shape (%lld)", op, CG_SHAPE_STR(bias, s),
                         (long long)out_shape[1]);
            return NULL;
        }
        y = cg_add(y, cg_reshape(bias, 5, (int64_t[]){1, out_shape[1], 1, 1, 1}));
    }
    return y;
}

/* ----------------------------------------------------------- 2-D forms ---- */

static cg_tensor *unsqueeze_depth(cg_tensor *t, const char *op, const char *what) {
    if (!t) return NULL;
    if (t->ndim != 4) {
        char s[96];
        cg_set_error(CG_ERR_INVALID, "%s: %s must have 4 axes, got %s", op, what, CG_SHAPE_STR(t, s));
        return NULL;
    }
    return cg_reshape(t, 5, (int64_t[]){t->shape[0], t->shape[1], 1, t->shape[2], t->shape[3]});
}

static cg_tensor *squeeze_depth(cg_tensor *t) {
    if (!t) return NULL;
    return cg_reshape(t, 4, (int64_t[]){t->shape[0], t->shape[1], t->shape[3], t->shape[4]});
}

static cg_conv_opts flat_depth(cg_conv_opts o) {
    o.stride[0] = 1;
    o.pad[0] = 0;
    o.output_pad[0] = 0;
    return o;
}

cg_tensor *cg_conv2d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o) {
    cg_tensor *x5 = unsqueeze_depth(x, "conv2d", "input"), *w5 = unsqueeze_depth(w, "conv2d", "weight");
    return squeeze_depth(cg_conv3d(x5, w5, bias, flat_depth(o)));
}

cg_tensor *cg_conv_transpose2d(cg_tensor *x, cg_tensor *w, cg_tensor *bias, cg_conv_opts o) {
    cg_tensor *x5 = unsqueeze_depth(x, "conv_transpose2d", "input");
    cg_tensor *w5 = unsqueeze_depth(w, "conv_transpose2d", "weight");
    return squeeze_depth(cg_conv_transpose3d(x5, w5, bias, flat_depth(o)));
}

/* -------------------------------------------------- pooling / upsampling ---- */

/* Apply a fixed k×k×k kernel to every channel separately: fold channels into the batch. */
static cg_tensor *per_channel(cg_tensor *x, int k, float value, bool transpose) {
    if (!x) return NULL;
    if (!check5(transpose ? "upsample_nearest3d" : "avg_pool3d", "input", x)) return NULL;
    if (k < 1) {
        cg_set_error(CG_ERR_INVALID, "pooling/upsampling factor must be >= 1 (got %d)", k);
        return NULL;
    }
    int64_t N = x->shape[0], C = x->shape[1];
    cg_tensor *xf = cg_reshape(x, 5, (int64_t[]){N * C, 1, x->shape[2], x->shape[3], x->shape[4]});
    cg_tensor *w = cg_full(x->device, 5, (int64_t[]){1, 1, k, k, k}, value);
    cg_conv_opts o = cg_conv_opts_make(k, 0, 0);
    cg_tensor *y = transpose ? cg_conv_transpose3d(xf, w, NULL, o) : cg_conv3d(xf, w, NULL, o);
    if (!y) return NULL;
    return cg_reshape(y, 5, (int64_t[]){N, C, y->shape[2], y->shape[3], y->shape[4]});
}

cg_tensor *cg_avg_pool3d(cg_tensor *x, int k) {
    return per_channel(x, k, 1.0f / ((float)k * (float)k * (float)k), false);
}

cg_tensor *cg_upsample_nearest3d(cg_tensor *x, int k) { return per_channel(x, k, 1.0f, true); }
