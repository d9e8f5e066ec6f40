/* core/tensor.c — storage, tensor headers, views and host transfers (see tensor.h). */
#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- storage ---- */

static cg_storage *storage_new(cg_device dev, size_t bytes) {
    const cg_backend *be = cg_backend_get(dev);
    if (!be) {
        cg_set_error(CG_ERR_DEVICE, "device %s is not available (%s)", cg_device_name(dev),
                     dev == CG_CUDA ? "built without CUDA, or no GPU found" : "no backend");
        return NULL;
    }
    void *p = be->alloc(bytes ? bytes : sizeof(float));
    if (!p) {
        cg_set_error(CG_ERR_NOMEM, "out of %s memory allocating %.1f MiB",
                     cg_device_name(dev), (double)bytes / (1024.0 * 1024.0));
        return NULL;
    }
    cg_storage *s = cg_xmalloc(sizeof *s);
    s->data = p;
    s->bytes = bytes;
    s->device = dev;
    s->refcount = 1;
    return s;
}

static void storage_release(cg_storage *s) {
    if (!s) return;
    CG_ASSERT(s->refcount > 0);
    if (--s->refcount == 0) {
        cg_backend_get(s->device)->free(s->data);
        free(s);
    }
}

/* ------------------------------------------------------------------ shape ---- */

int64_t cg_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int64_t cg_numel(const cg_tensor *t) { return cg_shape_numel(t->ndim, t->shape); }

void cg_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i];
    }
}

bool cg_is_contiguous(const cg_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool cg_same_shape(const cg_tensor *a, const cg_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

char *cg_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

static cg_status check_shape(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > CG_MAX_DIMS)
        return cg_set_error(CG_ERR_INVALID, "tensor rank %d is outside 0..%d", ndim, CG_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return cg_set_error(CG_ERR_INVALID, "negative size %lld in dimension %d",
                                (long long)shape[i], i);
        if (shape[i] > 0 && n > INT64_MAX / 4 / shape[i])
            return cg_set_error(CG_ERR_INVALID, "tensor of that shape is too large");
        n *= shape[i];
    }
    return CG_OK;
}

/* ---------------------------------------------------------------- tensors ---- */

static cg_tensor *header(int ndim, const int64_t *shape, cg_storage *s, cg_device dev) {
    cg_tensor *t = cg_xcalloc(1, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    cg_contiguous_strides(ndim, shape, t->stride);
    t->storage = s;
    t->device = dev;
    t->refcount = 1;
    return t;
}

cg_tensor *cg_tensor_new(cg_device dev, int ndim, const int64_t *shape) {
    if (check_shape(ndim, shape) != CG_OK) return NULL;
    cg_storage *s = storage_new(dev, (size_t)cg_shape_numel(ndim, shape) * sizeof(float));
    if (!s) return NULL;
    return header(ndim, shape, s, dev);
}

cg_tensor *cg_tensor_full(cg_device dev, int ndim, const int64_t *shape, float value) {
    cg_tensor *t = cg_tensor_new(dev, ndim, shape);
    if (t) cg_backend_of(t)->fill(cg_data(t), value, cg_numel(t));
    return t;
}

cg_tensor *cg_tensor_zeros(cg_device dev, int ndim, const int64_t *shape) {
    return cg_tensor_full(dev, ndim, shape, 0.0f);
}

cg_tensor *cg_tensor_from_host(cg_device dev, int ndim, const int64_t *shape, const float *data) {
    cg_tensor *t = cg_tensor_new(dev, ndim, shape);
    if (t) cg_backend_of(t)->upload(cg_data(t), data, (size_t)cg_numel(t) * sizeof(float));
    return t;
}

cg_tensor *cg_tensor_rand(cg_device dev, int ndim, const int64_t *shape, cg_rng *rng, float lo, float hi) {
    cg_tensor *t = cg_tensor_new(dev, ndim, shape);
    if (!t) return NULL;
    int64_t n = cg_numel(t);
    cg_backend_of(t)->rand_uniform(cg_data(t), n, rng->seed, cg_rng_take(rng, n), lo, hi);
    return t;
}

cg_tensor *cg_tensor_randn(cg_device dev, int ndim, const int64_t *shape, cg_rng *rng, float mean, float std) {
    cg_tensor *t = cg_tensor_new(dev, ndim, shape);
    if (!t) return NULL;
    int64_t n = cg_numel(t);
    cg_backend_of(t)->rand_normal(cg_data(t), n, rng->seed, cg_rng_take(rng, n), mean, std);
    return t;
}

cg_tensor *cg_tensor_view_new(const cg_tensor *t, int ndim, const int64_t *shape,
                              const int64_t *stride, int64_t offset) {
    cg_tensor *v = cg_xcalloc(1, sizeof *v);
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->stride[i] = stride[i];
    }
    v->offset = offset;
    v->storage = t->storage;
    v->storage->refcount++;
    v->device = t->device;
    v->refcount = 1;
    return v;
}

/* Copy src (any strides, any device) into the contiguous buffer dst on device `dev`. */
static void copy_into(float *dst, cg_device dev, const cg_tensor *src) {
    int64_t n = cg_numel(src);
    if (n == 0) return;
    if (cg_is_contiguous(src)) {
        const cg_backend *sb = cg_backend_of(src);
        if (src->device == dev) sb->copy(dst, cg_data(src), (size_t)n * sizeof(float));
        else if (dev == CG_CPU) sb->download(dst, cg_data(src), (size_t)n * sizeof(float));
        else cg_backend_get(dev)->upload(dst, cg_data(src), (size_t)n * sizeof(float));
        return;
    }
    /* Strided: make it contiguous on its own device first, then move. */
    cg_tensor *c = cg_tensor_new(src->device, src->ndim, src->shape);
    CG_ASSERT_MSG(c, cg_last_error());
    cg_strided_desc d = {.ndim = src->ndim};
    for (int i = 0; i < src->ndim; i++) {
        d.shape[i] = src->shape[i];
        d.sdst[i] = c->stride[i];
        d.ssrc[i] = src->stride[i];
    }
    cg_backend_of(src)->copy_strided(cg_data(c), cg_data(src), &d);
    copy_into(dst, dev, c);
    cg_tensor_free(c);
}

cg_tensor *cg_tensor_clone(const cg_tensor *t, cg_device dev) {
    cg_tensor *c = cg_tensor_new(dev, t->ndim, t->shape);
    if (c) copy_into(cg_data(c), dev, t);
    return c;
}

cg_tensor *cg_tensor_retain(cg_tensor *t) {
    if (t) t->refcount++;
    return t;
}

void cg_tensor_free(cg_tensor *t) {
    if (!t) return;
    CG_ASSERT(t->refcount > 0);
    if (--t->refcount > 0) return;
    cg_tensor_free(t->grad);
    cg_tensor_free(t->bw_grad);
    storage_release(t->storage);
    free(t);
}

cg_status cg_tensor_move_(cg_tensor *t, cg_device dev) {
    if (t->device == dev) return CG_OK;
    cg_tensor *c = cg_tensor_clone(t, dev);
    if (!c) return cg_last_status();
    if (t->grad && cg_tensor_move_(t->grad, dev) != CG_OK) {
        cg_tensor_free(c);
        return cg_last_status();
    }
    storage_release(t->storage);
    t->storage = c->storage;
    c->storage->refcount++;
    t->device = dev;
    t->offset = 0;
    cg_contiguous_strides(t->ndim, t->shape, t->stride);
    cg_tensor_free(c);
    return CG_OK;
}

/* ------------------------------------------------------------ data access ---- */

float *cg_data(const cg_tensor *t) { return (float *)t->storage->data + t->offset; }

const cg_backend *cg_backend_of(const cg_tensor *t) { return cg_backend_get(t->device); }

cg_status cg_tensor_to_host(const cg_tensor *t, float *dst) {
    copy_into(dst, CG_CPU, t);
    return CG_OK;
}

cg_status cg_tensor_set_host(cg_tensor *t, const float *src) {
    if (!cg_is_contiguous(t))
        return cg_set_error(CG_ERR_INVALID, "cg_tensor_set_host needs a contiguous tensor");
    cg_backend_of(t)->upload(cg_data(t), src, (size_t)cg_numel(t) * sizeof(float));
    return CG_OK;
}

float cg_item(const cg_tensor *t) {
    CG_ASSERT_MSG(cg_numel(t) == 1, "cg_item needs a one-element tensor");
    float v;
    cg_tensor_to_host(t, &v);
    return v;
}

float *cg_tensor_host_copy(const cg_tensor *t) {
    int64_t n = cg_numel(t);
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!h) {
        cg_set_error(CG_ERR_NOMEM, "out of host memory copying a tensor");
        return NULL;
    }
    cg_tensor_to_host(t, h);
    return h;
}

void cg_tensor_print(const cg_tensor *t, const char *label) {
    char buf[96];
    float *h = cg_tensor_host_copy(t);
    if (!h) return;
    int64_t n = cg_numel(t);
    printf("%s %s on %s:", label ? label : "tensor", CG_SHAPE_STR(t, buf), cg_device_name(t->device));
    for (int64_t i = 0; i < n && i < 8; i++) printf(" %.6g", (double)h[i]);
    printf("%s\n", n > 8 ? " ..." : "");
    free(h);
}
