/*
 * kernels/cpu/sort.c — reference row sort with indices, and the gather/scatter pair that
 * carries gradients through the permutation. Reference kernels: never optimised.
 *
 * Order: by value (ascending or descending), ties by original index ascending, NaN after
 * every number in either direction. Every backend must return this exact permutation.
 */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/ref.h"

typedef struct { float v; int32_t i; } item;

static int cmp_key(const item *a, const item *b, int desc) {
    int an = isnan(a->v), bn = isnan(b->v);
    if (an != bn) return an ? 1 : -1;
    if (!an && a->v != b->v) return (desc ? a->v > b->v : a->v < b->v) ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}
static int cmp_asc(const void *a, const void *b) { return cmp_key(a, b, 0); }
static int cmp_desc(const void *a, const void *b) { return cmp_key(a, b, 1); }

void cg_ref_sort_rows(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t cols, int descending) {
    item *buf = cg_xmalloc((size_t)cols * sizeof *buf);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) buf[j] = (item){x[r * cols + j], (int32_t)j};
        qsort(buf, (size_t)cols, sizeof *buf, descending ? cmp_desc : cmp_asc);
        for (int64_t j = 0; j < cols; j++) {
            if (vals) vals[r * cols + j] = buf[j].v;
            if (idx) idx[r * cols + j] = buf[j].i;
        }
    }
    free(buf);
}

void cg_ref_gather_rows(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) out[r * cols + j] = x[r * cols + idx[r * cols + j]];
}

void cg_ref_scatter_rows(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) out[r * cols + idx[r * cols + j]] = g[r * cols + j];
}
