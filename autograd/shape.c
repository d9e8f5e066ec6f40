/*
 * autograd/shape.c — views and copies: reshape, permute, slice, expand, concat, pad,
 * contiguous, detach, to(device).
 *
 * Views share storage (no copy): permute, slice and expand only change shape, strides and
 * offset; reshape is a view when the input is contiguous. The pairs of adjoint ops:
 * reshape/reshape, permute/inverse permute, slice/pad_into, expand/sum_to, concat/slices.
 */
#include <string.h>

#include "autograd/ops.h"

typedef struct {
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t offset[CG_MAX_DIMS];
    int perm[CG_MAX_DIMS];
    int axis;
    int device;
} shape_args;

/* A view of x on the tape (sharing its storage). */
static cg_tensor *view(cg_tensor *x, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
    return cg_op_adopt(cg_tensor_view_new(x, ndim, shape, stride, offset));
}

static int norm_axis(int axis, int ndim) { return axis < 0 ? axis + ndim : axis; }

/* ------------------------------------------------------------- contiguous ---- */

static void bw_identity(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = g; }

cg_tensor *cg_contiguous(cg_tensor *x) {
    if (!x) return NULL;
    if (cg_is_contiguous(x)) return x;
    cg_tensor *out = cg_op_new(x->device, x->ndim, x->shape);
    if (!out) return NULL;
    cg_strided_desc d = {.ndim = x->ndim};
    for (int i = 0; i < x->ndim; i++) {
        d.shape[i] = x->shape[i];
        d.sdst[i] = out->stride[i];
        d.ssrc[i] = x->stride[i];
    }
    cg_backend_of(x)->copy_strided(cg_data(out), cg_data(x), &d);
    cg_op_record("contiguous", bw_identity, out, 1, &x);
    return out;
}

cg_tensor *cg_detach(cg_tensor *x) {
    if (!x) return NULL;
    return view(x, x->ndim, x->shape, x->stride, x->offset);
}

/* ---------------------------------------------------------------- reshape ---- */

static void bw_reshape(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_reshape(g, n->in[0]->ndim, n->in[0]->shape);
}

cg_tensor *cg_reshape(cg_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    if (ndim < 0 || ndim > CG_MAX_DIMS) {
        cg_set_error(CG_ERR_INVALID, "reshape: rank %d is outside 0..%d", ndim, CG_MAX_DIMS);
        return NULL;
    }
    int64_t sh[CG_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (sh[i] == -1 && infer < 0) infer = i;
        else if (sh[i] < 0) {
            cg_set_error(CG_ERR_INVALID, "reshape: bad size %lld at axis %d", (long long)sh[i], i);
            return NULL;
        } else known *= sh[i];
    }
    int64_t n = cg_numel(x);
    if (infer >= 0) sh[infer] = known ? n / known : 0;
    if (cg_shape_numel(ndim, sh) != n) {
        char a[96], b[96];
        cg_set_error(CG_ERR_INVALID, "reshape: cannot view %s (%lld elements) as %s", CG_SHAPE_STR(x, a),
                     (long long)n, cg_shape_str(ndim, sh, b, sizeof b));
        return NULL;
    }
    bool same = ndim == x->ndim;
    for (int i = 0; same && i < ndim; i++) same = sh[i] == x->shape[i];
    if (same) return x;
    cg_tensor *c = cg_contiguous(x);
    if (!c) return NULL;
    int64_t st[CG_MAX_DIMS];
    cg_contiguous_strides(ndim, sh, st);
    cg_tensor *out = view(c, ndim, sh, st, c->offset);
    cg_op_record("reshape", bw_reshape, out, 1, &c);
    return out;
}

cg_tensor *cg_flatten(cg_tensor *x, int start) {
    if (!x) return NULL;
    start = norm_axis(start, x->ndim);
    if (start < 0 || start >= x->ndim) {
        cg_set_error(CG_ERR_INVALID, "flatten: start axis %d outside rank %d", start, x->ndim);
        return NULL;
    }
    int64_t sh[CG_MAX_DIMS];
    for (int i = 0; i < start; i++) sh[i] = x->shape[i];
    sh[start] = -1;
    return cg_reshape(x, start + 1, sh);
}

/* ---------------------------------------------------------------- permute ---- */

static void bw_permute(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    shape_args *a = CG_ARGS(n, shape_args);
    int inv[CG_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) inv[a->perm[i]] = i;
    gi[0] = cg_permute(g, inv);
}

cg_tensor *cg_permute(cg_tensor *x, const int *perm) {
    if (!x) return NULL;
    int seen[CG_MAX_DIMS] = {0};
    int64_t sh[CG_MAX_DIMS], st[CG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        int p = perm[i];
        if (p < 0 || p >= x->ndim || seen[p]++) {
            cg_set_error(CG_ERR_INVALID, "permute: not a permutation of %d axes", x->ndim);
            return NULL;
        }
        sh[i] = x->shape[p];
        st[i] = x->stride[p];
    }
    cg_tensor *out = view(x, x->ndim, sh, st, x->offset);
    cg_node *n = cg_op_record("permute", bw_permute, out, 1, &x);
    if (n) {
        shape_args *a = CG_ARGS(n, shape_args);
        a->ndim = x->ndim;
        memcpy(a->perm, perm, (size_t)x->ndim * sizeof(int));
    }
    return out;
}

cg_tensor *cg_transpose(cg_tensor *x, int a, int b) {
    if (!x) return NULL;
    a = norm_axis(a, x->ndim);
    b = norm_axis(b, x->ndim);
    if (a < 0 || b < 0 || a >= x->ndim || b >= x->ndim) {
        cg_set_error(CG_ERR_INVALID, "transpose: axes %d, %d outside rank %d", a, b, x->ndim);
        return NULL;
    }
    int perm[CG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return cg_permute(x, perm);
}

/* ------------------------------------------------------------ slice / pad ---- */

static void bw_slice(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    shape_args *a = CG_ARGS(n, shape_args);
    gi[0] = cg_pad_into(g, n->in[0]->ndim, n->in[0]->shape, a->offset);
}

cg_tensor *cg_slice(cg_tensor *x, int axis, int64_t start, int64_t end) {
    if (!x) return NULL;
    axis = norm_axis(axis, x->ndim);
    if (axis < 0 || axis >= x->ndim || start < 0 || end > x->shape[axis] || start > end) {
        char s[96];
        cg_set_error(CG_ERR_INVALID, "slice [%lld, %lld) on axis %d is outside a tensor of shape %s",
                     (long long)start, (long long)end, axis, CG_SHAPE_STR(x, s));
        return NULL;
    }
    int64_t sh[CG_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[axis] = end - start;
    cg_tensor *out = view(x, x->ndim, sh, x->stride, x->offset + start * x->stride[axis]);
    cg_node *n = cg_op_record("slice", bw_slice, out, 1, &x);
    if (n) {
        shape_args *a = CG_ARGS(n, shape_args);
        memset(a->offset, 0, sizeof a->offset);
        a->offset[axis] = start;
    }
    return out;
}

static void bw_pad(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    shape_args *a = CG_ARGS(n, shape_args);
    cg_tensor *r = g;
    for (int i = 0; i < g->ndim && r; i++)
        if (n->in[0]->shape[i] != g->shape[i])
            r = cg_slice(r, i, a->offset[i], a->offset[i] + n->in[0]->shape[i]);
    gi[0] = r;
}

/* Copy src into the region of dst (contiguous) that starts at `offset`. */
static void copy_region(cg_tensor *dst, const cg_tensor *src, const int64_t *offset) {
    cg_strided_desc d = {.ndim = src->ndim};
    int64_t base = 0;
    for (int i = 0; i < src->ndim; i++) {
        d.shape[i] = src->shape[i];
        d.sdst[i] = dst->stride[i];
        d.ssrc[i] = src->stride[i];
        base += offset[i] * dst->stride[i];
    }
    if (cg_numel(src) > 0) cg_backend_of(dst)->copy_strided(cg_data(dst) + base, cg_data(src), &d);
}

cg_tensor *cg_pad_into(cg_tensor *x, int ndim, const int64_t *shape, const int64_t *offset) {
    if (!x) return NULL;
    bool ok = ndim == x->ndim;
    for (int i = 0; ok && i < ndim; i++) ok = offset[i] >= 0 && offset[i] + x->shape[i] <= shape[i];
    if (!ok) {
        char a[96], b[96];
        cg_set_error(CG_ERR_INVALID, "pad_into: %s does not fit into %s at the given offset",
                     CG_SHAPE_STR(x, a), cg_shape_str(ndim, shape, b, sizeof b));
        return NULL;
    }
    cg_tensor *out = cg_op_adopt(cg_tensor_zeros(x->device, ndim, shape));
    if (!out) return NULL;
    copy_region(out, x, offset);
    cg_node *n = cg_op_record("pad_into", bw_pad, out, 1, &x);
    if (n) memcpy(CG_ARGS(n, shape_args)->offset, offset, (size_t)ndim * sizeof(int64_t));
    return out;
}

/* ----------------------------------------------------------------- concat ---- */

static void bw_concat(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    int axis = CG_ARGS(n, shape_args)->axis;
    int64_t start = 0;
    for (int j = 0; j < n->nin; j++) {
        int64_t len = n->in[j]->shape[axis];
        if (n->needs[j]) gi[j] = cg_slice(g, axis, start, start + len);
        start += len;
    }
}

cg_tensor *cg_concat(int k, cg_tensor *const *xs, int axis) {
    if (k <= 0 || cg_any_null(k, xs)) return NULL;
    cg_tensor *x0 = xs[0];
    axis = norm_axis(axis, x0->ndim);
    if (axis < 0 || axis >= x0->ndim) {
        cg_set_error(CG_ERR_INVALID, "concat: axis %d outside rank %d", axis, x0->ndim);
        return NULL;
    }
    int64_t sh[CG_MAX_DIMS];
    memcpy(sh, x0->shape, sizeof sh);
    sh[axis] = 0;
    for (int j = 0; j < k; j++) {
        bool ok = xs[j]->ndim == x0->ndim && xs[j]->device == x0->device;
        for (int i = 0; ok && i < x0->ndim; i++) ok = i == axis || xs[j]->shape[i] == x0->shape[i];
        if (!ok) {
            char a[96], b[96];
            cg_set_error(CG_ERR_INVALID, "concat: input %d of shape %s does not match %s except on axis %d",
                         j, CG_SHAPE_STR(xs[j], a), CG_SHAPE_STR(x0, b), axis);
            return NULL;
        }
        sh[axis] += xs[j]->shape[axis];
    }
    cg_tensor *out = cg_op_new(x0->device, x0->ndim, sh);
    if (!out) return NULL;
    int64_t off[CG_MAX_DIMS] = {0};
    for (int j = 0; j < k; j++) {
        copy_region(out, xs[j], off);
        off[axis] += xs[j]->shape[axis];
    }
    cg_node *n = cg_op_record("concat", bw_concat, out, k, xs);
    if (n) CG_ARGS(n, shape_args)->axis = axis;
    return out;
}

/* ----------------------------------------------------------------- expand ---- */

static void bw_expand(cg_node *n, cg_tensor *g, cg_tensor **gi) {
    gi[0] = cg_sum_to(g, n->in[0]->ndim, n->in[0]->shape);
}

cg_tensor *cg_expand(cg_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    int lead = ndim - x->ndim;
    int64_t st[CG_MAX_DIMS];
    bool ok = lead >= 0 && ndim <= CG_MAX_DIMS;
    for (int i = 0; ok && i < ndim; i++) {
        if (i < lead) { st[i] = 0; continue; }
        int64_t s = x->shape[i - lead];
        if (s == shape[i]) st[i] = x->stride[i - lead];
        else if (s == 1) st[i] = 0;
        else ok = false;
    }
    if (!ok) {
        char a[96], b[96];
        cg_set_error(CG_ERR_INVALID, "expand: %s cannot be broadcast to %s", CG_SHAPE_STR(x, a),
                     cg_shape_str(ndim, shape, b, sizeof b));
        return NULL;
    }
    bool same = lead == 0;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == x->shape[i];
    if (same) return x;
    cg_tensor *out = view(x, ndim, shape, st, x->offset);
    cg_op_record("expand", bw_expand, out, 1, &x);
    return out;
}

/* --------------------------------------------------------------------- to ---- */

static void bw_to(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = cg_to(g, n->in[0]->device); }

cg_tensor *cg_to(cg_tensor *x, cg_device dev) {
    if (!x) return NULL;
    if (x->device == dev) return x;
    cg_tensor *out = cg_op_adopt(cg_tensor_clone(x, dev));
    if (!out) return NULL;
    cg_op_record("to", bw_to, out, 1, &x);
    return out;
}
