/*
 * core/tensor.h — float32 tensors of rank 0..5 on a device.
 *
 * Layout. A tensor is a view: shape, strides (in elements) and an offset into a storage.
 * Volumes are NCDHW. Views (reshape of contiguous data, permute, slice, expand) share the
 * storage; expand uses stride 0. Kernels want contiguous data; cg_contiguous() copies when
 * needed.
 *
 * Lifetime. Storage and tensors are reference counted.
 *  - Tensors you create with cg_tensor_new/zeros/full/from_host/rand* are OWNED by you:
 *    release them with cg_tensor_free() (a decref).
 *  - Tensors returned by ops (cg_add, cg_conv3d, ...) are TEMPORARIES owned by the tape
 *    (autograd/tape.h) and live until cg_tape_rewind()/cg_tape_reset() passes them. To keep
 *    one longer, cg_tensor_retain() it and free it yourself later.
 * So a training step is: run ops, backward, optimizer step, cg_tape_reset(); nothing to
 * free by hand, and LeakSanitizer stays quiet.
 *
 * Autograd fields. requires_grad marks a tensor whose gradient is wanted; `node` is the tape
 * entry that produced it (NULL for leaves); `grad` is where cg_backward() accumulates the
 * gradient of a leaf (owned by the tensor).
 */
#ifndef CG_TENSOR_H
#define CG_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"

typedef struct cg_storage {
    void *data;         /* device pointer (host pointer for CG_CPU) */
    size_t bytes;
    cg_device device;
    int refcount;
} cg_storage;

struct cg_node;

typedef struct cg_tensor {
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t stride[CG_MAX_DIMS];
    int64_t offset;
    cg_storage *storage;
    cg_device device;
    int refcount;

    bool requires_grad;
    struct cg_node *node;       /* producer on the tape, NULL for leaves and detached */
    struct cg_tensor *grad;     /* accumulated leaf gradient (owned), or NULL */
    struct cg_tensor *bw_grad;  /* scratch for the backward sweep (owned while set) */
    uint32_t bw_mark;           /* scratch: sweep generation that marked it relevant */
} cg_tensor;

/* Shape literal: cg_tensor_zeros(CG_CPU, CG_SHAPE(8, 1, 30, 30, 30)). */
#define CG_SHAPE(...) \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* ---- creation: the caller owns the result; NULL + cg_last_error() on failure ---- */
cg_tensor *cg_tensor_new(cg_device dev, int ndim, const int64_t *shape); /* uninitialised */
cg_tensor *cg_tensor_zeros(cg_device dev, int ndim, const int64_t *shape);
cg_tensor *cg_tensor_full(cg_device dev, int ndim, const int64_t *shape, float value);
cg_tensor *cg_tensor_from_host(cg_device dev, int ndim, const int64_t *shape, const float *data);
cg_tensor *cg_tensor_rand(cg_device dev, int ndim, const int64_t *shape, cg_rng *rng, float lo, float hi);
cg_tensor *cg_tensor_randn(cg_device dev, int ndim, const int64_t *shape, cg_rng *rng, float mean, float std);
/* A new owned contiguous copy (no autograd history), possibly on another device. */
cg_tensor *cg_tensor_clone(const cg_tensor *t, cg_device dev);
/* A new tensor header sharing t's storage (no autograd history); the caller owns it. */
cg_tensor *cg_tensor_view_new(const cg_tensor *t, int ndim, const int64_t *shape,
                              const int64_t *stride, int64_t offset);

cg_tensor *cg_tensor_retain(cg_tensor *t);
void cg_tensor_free(cg_tensor *t); /* decref; NULL is fine */

/* Move an owned tensor's data to another device in place (parameters, optimizer state). */
cg_status cg_tensor_move_(cg_tensor *t, cg_device dev);

/* ---- shape ---- */
int64_t cg_numel(const cg_tensor *t);
bool cg_is_contiguous(const cg_tensor *t);
bool cg_same_shape(const cg_tensor *a, const cg_tensor *b);
void cg_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
int64_t cg_shape_numel(int ndim, const int64_t *shape);
/* "(8, 1, 30, 30, 30)" into buf; returns buf. */
char *cg_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
#define CG_SHAPE_STR(t, buf) cg_shape_str((t)->ndim, (t)->shape, (buf), sizeof(buf))

/* ---- data access ---- */
float *cg_data(const cg_tensor *t);                 /* device pointer incl. offset */
const cg_backend *cg_backend_of(const cg_tensor *t);
cg_status cg_tensor_to_host(const cg_tensor *t, float *dst);    /* any layout -> contiguous */
cg_status cg_tensor_set_host(cg_tensor *t, const float *src);   /* t must be contiguous */
float cg_item(const cg_tensor *t);                  /* a one-element tensor's value */
/* A malloc'ed contiguous host copy; free() it. NULL on failure. */
float *cg_tensor_host_copy(const cg_tensor *t);
/* Print shape and the first few values, for debugging. */
void cg_tensor_print(const cg_tensor *t, const char *label);

#endif
