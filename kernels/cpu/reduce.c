/*
 * kernels/cpu/reduce.c — reference sum over a set of axes.
 * Reference kernel: never optimised; accumulates in double.
 */
#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/ref.h"

void cg_ref_reduce_sum(float *out, const float *x, int ndim, const int64_t *shape, unsigned axes) {
    /* Output strides: the shape with reduced axes set to 1, contiguous; a reduced axis
     * contributes nothing to the output offset. */
    int64_t ostride[CG_MAX_DIMS], n_out = 1, n_in = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        int reduced = (axes >> i) & 1u;
        ostride[i] = reduced ? 0 : n_out;
        n_out *= reduced ? 1 : shape[i];
        n_in *= shape[i];
    }
    double *acc = cg_xcalloc((size_t)n_out, sizeof(double));
    int64_t idx[CG_MAX_DIMS] = {0};
    int64_t o = 0; /* output offset of the current input element */
    for (int64_t i = 0; i < n_in; i++) {
        acc[o] += x[i];
        /* advance the multi-index (last axis fastest) and the output offset with it */
        for (int d = ndim - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) { o += ostride[d]; break; }
            o -= ostride[d] * (shape[d] - 1);
            idx[d] = 0;
        }
    }
    for (int64_t i = 0; i < n_out; i++) out[i] = (float)acc[i];
    free(acc);
}
