/*
 * autograd/tape.h — the tape: eager ops record themselves; gradients run it backwards.
 *
 * How it works (the whole engine is autograd/tape.c, about 400 lines):
 *  - Every op (autograd/ops.h) computes its result at once, like PyTorch's eager mode. If
 *    grad mode is on and an input requires a gradient, the op also appends a node to the
 *    tape: its inputs, what it saved, and a backward function.
 *  - The tape is in creation order, which is a topological order. A backward sweep walks
 *    it from the end; each node turns the gradient of its output into gradients of its
 *    inputs. No graph search, no sorting.
 *  - Backward functions are written with the same differentiable ops (conv's backward is a
 *    conv_transpose, exp's is a mul by exp, ...). With create_graph, the sweep runs in grad
 *    mode, so the gradient computation is itself recorded on the tape and can be
 *    differentiated again: gradients of gradients (WGAN-GP's penalty) need no special case.
 *    Without create_graph, a node may use a fused kernel for the same formula (layer norm
 *    does); tests check both paths agree.
 *
 * Memory: the tape owns every temporary (op result) and node. cg_tape_reset() frees them
 * all; cg_tape_mark()/cg_tape_rewind() free what came after a mark (stack discipline), for
 * loops inside a step. Owned tensors (parameters, data) are never freed by the tape.
 * The tape and grad mode are per thread.
 */
#ifndef CG_TAPE_H
#define CG_TAPE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tensor.h"

typedef struct cg_node cg_node;

/* Compute the gradients of a node's inputs from the gradient of its output. gin[j] is
 * wanted when n->needs[j]; leave it NULL otherwise (or when the gradient is zero). */
typedef void (*cg_backward_fn)(cg_node *n, cg_tensor *gout, cg_tensor **gin);

#define CG_NODE_ARGS_BYTES 256
#ifdef __cplusplus
#define CG_ALIGNAS(n) alignas(n)
#else
#define CG_ALIGNAS(n) _Alignas(n)
#endif

struct cg_node {
    const char *op;             /* op name, for error messages and debugging */
    cg_backward_fn backward;
    cg_tensor *out;             /* the output (owned by the tape, not by the node) */
    int nin;
    cg_tensor **in;             /* inputs (the node holds a reference) */
    bool *needs;                /* set by the sweep: which input gradients to compute */
    cg_tensor *saved[4];        /* extra tensors kept for backward (references held) */
    cg_storage *saved_idx;      /* an int32 buffer kept for backward (sort's permutation) */
    bool create_graph;          /* set by the sweep: the backward is being recorded */
    unsigned char math;         /* the math mode the op ran in: its backward runs in it too */
    CG_ALIGNAS(16) unsigned char args[CG_NODE_ARGS_BYTES]; /* op parameters (see CG_ARGS) */
};

/* Typed access to a node's parameter block: CG_ARGS(n, cg_conv_desc)->stride[0]. */
#define CG_ARGS(node, type) \
    ((type *)((node)->args + 0 * sizeof(char[sizeof(type) <= CG_NODE_ARGS_BYTES ? 1 : -1])))

/* ---- grad mode ---- */
bool cg_grad_enabled(void);
bool cg_set_grad_enabled(bool on); /* returns the previous mode */
/* Mark an owned tensor as a leaf whose gradient cg_backward() accumulates in ->grad. */
void cg_set_requires_grad(cg_tensor *t, bool on);

/* ---- tape memory ---- */
typedef struct { size_t temps, nodes; } cg_tape_pos;
cg_tape_pos cg_tape_mark(void);
void cg_tape_rewind(cg_tape_pos m);
void cg_tape_reset(void);
size_t cg_tape_nodes(void);
size_t cg_tape_temps(void);

/* ---- gradients ---- */
/* Accumulate d(sum of out · grad_out)/d(leaf) into leaf->grad for every leaf with
 * requires_grad that out depends on. grad_out NULL means ones (the usual scalar loss).
 * Can be called again on the same tape: gradients add up. */
cg_status cg_backward(cg_tensor *out);
cg_status cg_backward_with(cg_tensor *out, cg_tensor *grad_out);

/* Gradients of Σ_k <outs[k], gouts[k]> with respect to ins[] (leaves or intermediates),
 * returned in result[] as tape temporaries; leaf ->grad fields are not touched. gouts NULL
 * (or an entry NULL) means ones. With create_graph the results are differentiable. An
 * input the outputs do not depend on gets a zero tensor. */
cg_status cg_grad(int nout, cg_tensor *const *outs, cg_tensor *const *gouts, int nin,
                  cg_tensor *const *ins, cg_tensor **result, bool create_graph);

/* ---- for op authors (autograd/ops.h's implementations) ---- */
/* A new uninitialised temporary owned by the tape; NULL (error set) when allocation fails. */
cg_tensor *cg_op_new(cg_device dev, int ndim, const int64_t *shape);
/* Hand an owned tensor to the tape (it becomes a temporary). Returns t. */
cg_tensor *cg_op_adopt(cg_tensor *t);
/* Record `out` as produced from in[0..nin) when grad mode is on and any input requires a
 * gradient; returns the node (fill in args/saved) or NULL when nothing was recorded. */
cg_node *cg_op_record(const char *op, cg_backward_fn backward, cg_tensor *out, int nin,
                      cg_tensor *const *in);
void cg_node_save(cg_node *n, int slot, cg_tensor *t);

/* True when any of the pointers is NULL: ops return NULL when an input is NULL, so that
 * an error early in a chain of ops surfaces once, at the end (cg_last_error() names it). */
bool cg_any_null(int n, cg_tensor *const *t);

#endif
