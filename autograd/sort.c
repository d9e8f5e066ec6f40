/*
 * autograd/sort.c — sorting with a gradient.
 *
 * sort(x) = gather(x, perm), where perm is the sorting permutation (saved, an int32 buffer
 * on the device). Gradients flow through the permutation: gather's backward is a scatter
 * and scatter's backward a gather, both with the same permutation, so every order works.
 * The sorted-kernel MMD of the BIB-AE post-processor is built on this.
 */
#include <stdlib.h>

#include "autograd/ops.h"

static cg_tensor *permute_rows(cg_tensor *x, cg_storage *idx, bool scatter);

static void bw_gather(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = permute_rows(g, n->saved_idx, true); }
static void bw_scatter(cg_node *n, cg_tensor *g, cg_tensor **gi) { gi[0] = permute_rows(g, n->saved_idx, false); }

/* x (rows, cols) contiguous -> gathered or scattered through idx (rows, cols). */
static cg_tensor *permute_rows(cg_tensor *x, cg_storage *idx, bool scatter) {
    if (!x) return NULL;
    x = cg_contiguous(x);
    cg_tensor *out = cg_op_new(x->device, x->ndim, x->shape);
    if (!out) return NULL;
    int64_t rows = x->shape[0], cols = x->shape[1];
    const cg_backend *be = cg_backend_of(x);
    if (scatter) be->scatter_rows(cg_data(out), cg_data(x), idx->data, rows, cols);
    else be->gather_rows(cg_data(out), cg_data(x), idx->data, rows, cols);
    cg_node *n = cg_op_record(scatter ? "scatter" : "gather", scatter ? bw_scatter : bw_gather, out, 1, &x);
    if (n) {
        n->saved_idx = idx;
        idx->refcount++;
    }
    return out;
}

cg_tensor *cg_sort(cg_tensor *x, int axis, bool descending) {
    if (!x) return NULL;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) {
        cg_set_error(CG_ERR_INVALID, "sort: axis outside rank %d", x->ndim);
        return NULL;
    }
    if (x->shape[axis] > INT32_MAX) {
        cg_set_error(CG_ERR_INVALID, "sort: axis of length %lld is too long", (long long)x->shape[axis]);
        return NULL;
    }
    /* move the axis last, view as (rows, cols) */
    int perm[CG_MAX_DIMS], inv[CG_MAX_DIMS], k = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != axis) perm[k++] = i;
    perm[k] = axis;
    for (int i = 0; i < x->ndim; i++) inv[perm[i]] = i;
    cg_tensor *xp = cg_contiguous(cg_permute(x, perm));
    if (!xp) return NULL;
    int64_t cols = x->shape[axis], rows = cols ? cg_numel(x) / cols : 0;
    cg_tensor *x2 = cg_reshape(xp, 2, (int64_t[]){rows, cols});
    if (!x2) return NULL;

    const cg_backend *be = cg_backend_of(x);
    cg_storage *idx = cg_xcalloc(1, sizeof *idx);
    idx->bytes = (size_t)((rows * cols) > 0 ? rows * cols : 1) * sizeof(int32_t);
    idx->data = be->alloc(idx->bytes);
    idx->device = x->device;
    idx->refcount = 1;
    if (!idx->data) {
        free(idx);
        cg_set_error(CG_ERR_NOMEM, "sort: out of %s memory", cg_device_name(x->device));
        return NULL;
    }
    be->sort_rows(NULL, idx->data, cg_data(x2), rows, cols, descending);
    cg_tensor *sorted = permute_rows(x2, idx, false);
    /* permute_rows took its own reference when it recorded a node; drop ours */
    if (--idx->refcount == 0) {
        be->free(idx->data);
        free(idx);
    }
    if (!sorted) return NULL;
    cg_tensor *back = cg_reshape(sorted, xp->ndim, xp->shape);
    return cg_permute(back, inv);
}
