/*
 * kernels/cpu/avx2_tile.h — the two register-tile microkernels every AVX2 product-shaped
 * kernel (convolutions, the per-voxel layer, GEMM) is built on.
 *
 * Broadcast tile (R rows × M lines × V vectors of 8 positions, R·M·V <= 12):
 *     y[r][m][p] = bias[r] + Σ_j wp[j·wps + r] · x[off[j] + m·xrs + p]      (+ beta·y)
 *   per k-step j: R weight broadcasts, M·V unaligned input loads, R·M·V FMAs. Positions p
 *   run along contiguous memory, so a convolution's output row or a matrix row is written
 *   straight from the accumulators (the last vector of a line masked to `nw` positions).
 *
 * Dot tile (R rows × C columns, R·C <= 12, R, C <= 6):
 *     s[r][c] = Σ_lines Σ_p a[r·acs + line·ars + p] · b[off[c] + line·brs + p]
 *   both operands contiguous along p; the sums are reduced across lanes at the end and
 *   either added in double to `outd` or written as alpha·s + beta·outf to `outf`. For
 *   backward-weight (positions of a conv) and for A·Bᵀ products (rows of both).
 *
 * Accumulation is fp32 within a tile; each tile's order is fixed, so results are
 * deterministic.
 */
#ifndef CG_KERNELS_CPU_AVX2_TILE_H
#define CG_KERNELS_CPU_AVX2_TILE_H

#include <stdint.h>

#define CG_TILE_MAXR 6   /* rows of a tile */
#define CG_TILE_MAXM 6   /* lines of a broadcast tile */
#define CG_TILE_MAXV 4   /* vectors per line of a broadcast tile */
#define CG_TILE_MAXC 6   /* columns of a dot tile */
#define CG_TILE_MAXACC 12

typedef struct {
    const float *x;        /* input at the tile's first position */
    const int32_t *off;    /* (K) offset of each k-step's input */
    const float *wp;       /* weights: k-step j, row r at wp[j·wps + r] */
    int64_t K, wps, xrs;   /* xrs: input stride between the tile's lines */
    float *y;              /* output of row 0, line 0, position 0 */
    int64_t ycs, yrs, yws; /* output strides: row, line, position */
    int nw;                /* positions written per line (1 .. 8V) */
    const float *bias;     /* R values, or NULL */
    float beta;            /* y = acc + beta·y when nonzero (yws == 1 only) */
    int stream;            /* non-temporal stores for whole aligned vectors (beta == 0, yws == 1);
                              the caller issues _mm_sfence() before the results are shared */
    const int32_t *runs;   /* if set: only the k-steps of nruns runs (first, count) */
    int nruns;
} cg_bcast_tile;

typedef struct {
    const float *a;        /* row 0 at the first position */
    const float *b;        /* the columns' base; column c at b + off[c] */
    const int32_t *off;    /* (C) */
    int64_t acs, ars, brs; /* a's row stride, both operands' line strides */
    int64_t nlines, nvec;  /* nlines lines of nvec vectors */
    int tail;              /* 1..7: the last vector of each line has only `tail` lanes */
    double *outd;          /* if set: outd[r·ocs + c] += s */
    float *outf;           /* else: outf[r·ocs + c] = alpha·s + beta·outf (not read if beta == 0) */
    int64_t ocs;
    float alpha, beta;
} cg_dot_tile;

void cg_avx2_bcast_tile(int R, int M, int V, const cg_bcast_tile *t);
void cg_avx2_dot_tile(int R, int C, const cg_dot_tile *t);

/* Estimated cycles of one broadcast tile of K k-steps, and of one dot tile of `steps`
 * vector steps (for choosing tile shapes): the FMA count over the shape's measured
 * efficiency, plus the cost of starting the tile and storing it. */
double cg_avx2_bcast_cost(int R, int M, int V, int64_t K);
double cg_avx2_dot_cost(int R, int C, int64_t steps);

#endif
