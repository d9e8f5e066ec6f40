/*
 * core/backend.h — the table of kernels a device provides (after ggml's ggml_backend_i).
 *
 * Every tensor lives on a device (cg_device). Each device has one cg_backend: a small
 * struct of function pointers for memory and for the raw kernels the autograd ops call.
 * Kernels know nothing of tensors or autograd: they take flat float buffers (device
 * pointers), sizes and small descriptors, and follow llm.c's argument order: outputs
 * first, then saved buffers, inputs, weights, then sizes.
 *
 * Conventions every backend follows:
 *  - Buffers are contiguous row-major unless a descriptor gives strides (in elements).
 *  - Kernels WRITE their outputs (=). Accumulation (+=) of gradients is the autograd
 *    engine's job, so that a kernel's result never depends on what the buffer held.
 *  - Kernels never fail for valid sizes; size checks happen in the autograd layer, which
 *    reports user errors. A device failure (a CUDA error) aborts with a report.
 *  - fp32 in, fp32 out, fp32 accumulation, unless cg_math_mode() asks for tensor cores.
 *
 * The CPU has two tables: "cpu-ref", the plain C reference kernels of kernels/cpu/ (never
 * optimised: the oracle), and "cpu", the dispatch table, which starts as a copy of the
 * reference and takes the AVX2 kernels where the processor has AVX2+FMA (cpuid), unless
 * CG_KERNELS=ref is set. CUDA has one table, present when built with CUDA and a GPU is
 * found. tests/test_backend_ops.c runs every kernel of every present table against
 * cpu-ref.
 */
#ifndef CG_BACKEND_H
#define CG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#define CG_MAX_DIMS 5

typedef enum { CG_CPU = 0, CG_CUDA = 1, CG_NUM_DEVICES = 2 } cg_device;

/* Unary elementwise ops: out[i] = f(x[i]; p0, p1). The *_STEP/MASK ops are the piecewise
 * constant factors that derivatives are built from (their own derivative is zero). */
typedef enum {
    CG_U_COPY,        /* x */
    CG_U_NEG,         /* -x */
    CG_U_AFFINE,      /* p0*x + p1 */
    CG_U_SQUARE,      /* x*x */
    CG_U_RECIP,       /* 1/x */
    CG_U_EXP,
    CG_U_LOG,
    CG_U_SQRT,
    CG_U_RSQRT,       /* 1/sqrt(x) */
    CG_U_POW,         /* x^p0 (powf) */
    CG_U_ABS,
    CG_U_SIGN,        /* -1, 0, 1 */
    CG_U_CLAMP,       /* min(max(x, p0), p1) */
    CG_U_CLAMP_MASK,  /* 1 where p0 <= x <= p1, else 0 (PyTorch's clamp gradient) */
    CG_U_RELU,        /* max(x, 0) */
    CG_U_STEP,        /* x > p0 ? 1 : 0 */
    CG_U_LEAKY_RELU,  /* x > 0 ? x : p0*x */
    CG_U_LEAKY_STEP,  /* x > 0 ? 1 : p0 */
    CG_U_ELU,         /* x > 0 ? x : p0*(exp(x)-1) */
    CG_U_SIGMOID,
    CG_U_TANH,
    CG_U_SOFTPLUS,    /* log(1+exp(x)), computed stably */
    CG_U_SOFTSIGN,    /* x/(1+|x|) */
    CG_U_NUM
} cg_unary_op;

typedef enum { CG_B_ADD, CG_B_SUB, CG_B_MUL, CG_B_DIV, CG_B_NUM } cg_binary_op;

/* out (contiguous, `shape`) = a op b, where a and b are read through their own strides
 * (a stride of 0 broadcasts). Pointers already include the tensors' offsets. */
typedef struct {
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t sa[CG_MAX_DIMS], sb[CG_MAX_DIMS];
} cg_bcast_desc;

/* dst[idx·sdst] = src[idx·ssrc] for every index of `shape`. */
typedef struct {
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t sdst[CG_MAX_DIMS], ssrc[CG_MAX_DIMS];
} cg_strided_desc;

/* A 3-D convolution, PyTorch semantics (cross-correlation, zero padding, no groups, no
 * dilation). x: (N, Ci, in[0..2]), w: (Co, Ci, k[0..2]), y: (N, Co, out[0..2]) with
 * out[d] = (in[d] + 2*pad[d] - k[d]) / stride[d] + 1.
 * conv_transpose3d is conv_bwd_data with the roles swapped; 2-D convolutions are 3-D ones
 * with depth 1 and a kernel depth of 1. */
typedef struct {
    int64_t N;
    int Ci, Co;
    int in[3], out[3];
    int k[3], stride[3], pad[3];
} cg_conv_desc;

/* The fused per-voxel (kernel-size-1) layer: the post-processor's building block, for
 * inference (no backward). x (B, Ci, V), w (Co, Ci), y (B, Co, V):
 *     y[b][co][v] = bias[co] + bias_b[b][co] + Σ_ci w[co][ci] · a(n(u[b][ci][v]))
 *   u = x, or with x_scale set, x has ONE channel and u is a 1 -> Ci kernel-size-1 layer of
 *     it computed as it is read: u[b][ci][v] = x_scale[ci]·x[b][0][v] + x_shift[ci] (one
 *     rounding, as that layer's own output), so the Ci-channel u never exists in memory;
 *   n = layer norm of u over v when x_mean != NULL, with u's statistics (B, Ci):
 *         n(u) = (u - x_mean[b][ci]) · x_rstd[b][ci] · gamma[v] + beta[v]
 *       (gamma, beta may be NULL: 1 and 0); otherwise n(u) = u;
 *   a = leaky_relu(slope) when act != 0, else the identity.
 * bias (Co), bias_b (B, Co), x_shift may be NULL (zeros). When y_mean != NULL the kernel
 * also writes, per (b, co), y's mean over v and rstd = 1/sqrt(var + eps) (biased variance):
 * the next layer's x_mean/x_rstd, so a stack conv(k1) -> LN -> LReLU -> conv(k1) -> ...
 * never materialises the normalised activations.
 * With proj (Co) set, the layer is followed by a Co -> 1 layer with weight proj, the same
 * activation, no norm and no bias, and only that layer's output is written: y is (B, 1, V),
 *     y[b][0][v] = Σ_co proj[co] · a(z[b][co][v])   (z: the y defined above),
 * so the Co-channel z never exists in memory either (y_mean must be NULL then). */
typedef struct {
    float *y, *y_mean, *y_rstd;
    const float *x, *x_scale, *x_shift, *x_mean, *x_rstd, *gamma, *beta;
    int act;
    float slope;
    const float *w, *bias, *bias_b, *proj;
    int64_t B;
    int Ci, Co;
    int64_t V;
    float eps;
} cg_pw_args;

/* Math modes for the GPU's matrix kernels: fp32 by default; TF32 and BF16 use tensor cores
 * with fp32 accumulation. The CPU ignores it. Set per thread with cg_set_math_mode(), per
 * module with cg_module_set_math_mode() (models/module.h). */
typedef enum { CG_MATH_FP32 = 0, CG_MATH_TF32 = 1, CG_MATH_BF16 = 2 } cg_math_mode;

typedef struct cg_backend {
    const char *name;   /* "cpu-ref", "cpu-avx2", "cuda" */
    cg_device device;

    /* ---- memory: alloc returns NULL when out of memory (the caller reports it) ---- */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*sync)(void);

    /* ---- fills and random numbers (the Philox stream of core/rng.h) ---- */
    void (*fill)(float *out, float value, int64_t n);
    void (*rand_uniform)(float *out, int64_t n, uint64_t seed, uint64_t counter, float lo, float hi);
    void (*rand_normal)(float *out, int64_t n, uint64_t seed, uint64_t counter, float mean, float std);

    /* ---- elementwise ---- */
    void (*unary)(cg_unary_op op, float *out, const float *x, int64_t n, float p0, float p1);
    void (*binary)(cg_binary_op op, float *out, const float *a, const float *b, const cg_bcast_desc *d);
    void (*copy_strided)(float *dst, const float *src, const cg_strided_desc *d);

    /* ---- reductions: out has the shape of x with the axes in `axes` (bit i = axis i)
     *      reduced to 1; x is contiguous of rank ndim ---- */
    void (*reduce_sum)(float *out, const float *x, int ndim, const int64_t *shape, unsigned axes);

    /* ---- matrix product, row-major, batched:
     *      C[b] = alpha * op(A[b]) · op(B[b]) + beta * C[b], op(A) is M×K, op(B) is K×N;
     *      ta/tb mean A is stored K×M / B is stored N×K; lda/ldb/ldc are row strides;
     *      sA/sB/sC are batch strides (0 broadcasts). With beta == 0, C is not read. ---- */
    void (*gemm)(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, int64_t sA,
                 const float *B, int64_t ldb, int64_t sB,
                 float beta, float *C, int64_t ldc, int64_t sC, int64_t batch);

    /* ---- 3-D convolution family (see cg_conv_desc); bias may be NULL ---- */
    void (*conv_fwd)(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c);
    void (*conv_bwd_data)(float *dx, const float *dy, const float *w, const cg_conv_desc *c);
    void (*conv_bwd_weight)(float *dw, const float *x, const float *dy, const cg_conv_desc *c);

    /* ---- layer norm over the last `cols` elements of each of `rows` rows;
     *      gamma, beta (length cols) may be NULL; mean, rstd have length rows.
     *      act != 0: a leaky ReLU(slope) follows the norm in the same pass, y = a(n) with
     *      n = LN(x) rounded to float and a(n) = n > 0 ? n : slope·n; bwd then takes dy as
     *      the gradient of a(n), recomputes n from x, mean, rstd, gamma and beta exactly as
     *      fwd computed it, and uses dy·a'(n) (a'(n) = n > 0 ? 1 : slope).
     *      bwd: dgamma, dbeta may be NULL (not wanted); they are written, not added. ---- */
    void (*layernorm_fwd)(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int64_t rows, int64_t cols, float eps, int act, float slope);
    void (*layernorm_bwd)(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                          const float *mean, const float *rstd, const float *gamma, const float *beta,
                          int64_t rows, int64_t cols, int act, float slope);

    /* ---- sorting along rows: vals/idx (rows × cols) get each row of x sorted (ties keep
     *      their index order, so every backend returns the same permutation; either output
     *      may be NULL);
     *      gather: out[r][j] = x[r][idx[r][j]]; scatter: out[r][idx[r][j]] = g[r][j] ---- */
    void (*sort_rows)(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t cols, int descending);
    void (*gather_rows)(float *out, const float *x, const int32_t *idx, int64_t rows, int64_t cols);
    void (*scatter_rows)(float *out, const float *g, const int32_t *idx, int64_t rows, int64_t cols);

    /* ---- fused per-voxel (kernel-size-1) layer for inference: see cg_pw_args ---- */
    void (*pointwise_layer)(const cg_pw_args *a);

    /* ---- optimizer updates, PyTorch semantics, in place on p and the state buffers.
     *      gscale: NULL, or a device pointer to one float that multiplies g (clipping). ---- */
    void (*sgd_step)(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                     float momentum, float dampening, float weight_decay, int nesterov, int first);
    void (*adam_step)(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n,
                      float lr, float beta1, float beta2, float eps, float weight_decay,
                      int decoupled, int64_t step);
    void (*rmsprop_step)(float *p, float *sq, float *buf, const float *g, const float *gscale,
                         int64_t n, float lr, float alpha, float eps, float weight_decay,
                         float momentum);
} cg_backend;

/* The active table for a device (CPU: the dispatch table), or NULL when absent. */
const cg_backend *cg_backend_get(cg_device dev);
/* Every table present in this process, the CPU reference first; for tests and benches. */
int cg_backend_list(const cg_backend **out, int max);
/* The CPU reference table (kernels/cpu/, the oracle). */
const cg_backend *cg_backend_cpu_ref(void);
/* Whether a device is usable (CUDA: built with CUDA and a GPU present). */
int cg_device_available(cg_device dev);
const char *cg_device_name(cg_device dev);

/* The calling thread's math mode (like grad mode, per thread; a new thread starts in fp32).
 * The backend reads it at each launch. An op on the tape remembers the mode it ran in and
 * its backward runs in the same mode (as torch.autocast), whatever the mode is then.
 * cg_set_math_mode returns the previous mode, for save/restore. */
cg_math_mode cg_get_math_mode(void);
cg_math_mode cg_set_math_mode(cg_math_mode m);
/* "fp32", "tf32", "bf16"; cg_math_mode_parse returns -1 for anything else. */
const char *cg_math_mode_name(cg_math_mode m);
int cg_math_mode_parse(const char *s);

/* Tests only: serve `table` as the CUDA device (kernels/cuda/emu/, the CPU emulator of the
 * CUDA kernels, so that CI runs them without a GPU), or the real one again with NULL.
 * Call it before any CUDA tensor exists. */
void cg_backend_override_cuda(const cg_backend *table);

#endif
