/*
 * kernels/cpu/avx2_optim.c — SGD, Adam(W) and RMSprop updates with AVX2 on the thread pool.
 *
 * The formulas are the reference's (kernels/cpu/optim.c, PyTorch's), operation for
 * operation in the same order and without FMA contraction, so the updated parameters and
 * states are bit-identical to the reference's. Tails of fewer than 8 elements run the
 * same expressions in scalar code.
 */
#include <math.h>

#include "core/threads.h"
#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx2_util.h"

#define GRAIN 8192

typedef struct {
    float *p, *s1, *s2;   /* parameters and up to two state buffers */
    const float *g;
    float gs;             /* the gradient scale (*gscale, or 1) */
    float lr, a, b, c, d; /* per-optimizer constants, see each task */
    int f1, f2;           /* flags */
} opt_job;

/* SGD: a = momentum, b = dampening, c = weight decay; f1 = nesterov, f2 = first step. */
static void sgd_task(void *ctx, int64_t b0, int64_t e0, int worker) {
    const opt_job *J = ctx;
    const __m256 s = _mm256_set1_ps(J->gs), mom = _mm256_set1_ps(J->a), damp1 = _mm256_set1_ps(1.0f - J->b),
                 wd = _mm256_set1_ps(J->c), lr = _mm256_set1_ps(J->lr);
    int64_t i = b0;
    for (; i + 8 <= e0; i += 8) {
        __m256 p = _mm256_loadu_ps(J->p + i);
        __m256 d = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(J->g + i), s), _mm256_mul_ps(wd, p));
        if (J->a != 0.0f) {
            __m256 buf = J->f2 ? d
                               : _mm256_add_ps(_mm256_mul_ps(mom, _mm256_loadu_ps(J->s1 + i)), _mm256_mul_ps(damp1, d));
            _mm256_storeu_ps(J->s1 + i, buf);
            d = J->f1 ? _mm256_add_ps(d, _mm256_mul_ps(mom, buf)) : buf;
        }
        _mm256_storeu_ps(J->p + i, _mm256_sub_ps(p, _mm256_mul_ps(lr, d)));
    }
    for (; i < e0; i++) {
        float d = J->g[i] * J->gs + J->c * J->p[i];
        if (J->a != 0.0f) {
            J->s1[i] = J->f2 ? d : J->a * J->s1[i] + (1.0f - J->b) * d;
            d = J->f1 ? d + J->a * J->s1[i] : J->s1[i];
        }
        J->p[i] -= J->lr * d;
    }
}

void cg_avx2_sgd_step(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr, float momentum,
                      float dampening, float weight_decay, int nesterov, int first) {
    opt_job J = {.p = p, .s1 = buf, .g = g, .gs = gscale ? *gscale : 1.0f, .lr = lr, .a = momentum, .b = dampening,
                 .c = weight_decay, .f1 = nesterov, .f2 = first};
    cg_parallel_for(n, GRAIN, sgd_task, &J);
}

/* Adam: s1 = m, s2 = v; a = beta1, b = beta2, c = eps, d = weight decay; f1 = decoupled;
 * lr here is the step size lr / (1 - beta1^t), and `bc2` the square root of 1 - beta2^t. */
typedef struct {
    opt_job o;
    float lr_raw, bc2;
} adam_job;

static void adam_task(void *ctx, int64_t b0, int64_t e0, int worker) {
    const adam_job *A = ctx;
    const opt_job *J = &A->o;
    const __m256 s = _mm256_set1_ps(J->gs), b1 = _mm256_set1_ps(J->a), b2 = _mm256_set1_ps(J->b),
                 omb1 = _mm256_set1_ps(1.0f - J->a), omb2 = _mm256_set1_ps(1.0f - J->b), eps = _mm256_set1_ps(J->c),
                 wd = _mm256_set1_ps(J->d), decay = _mm256_set1_ps(1.0f - A->lr_raw * J->d),
                 step = _mm256_set1_ps(J->lr), bc2 = _mm256_set1_ps(A->bc2);
    int64_t i = b0;
    for (; i + 8 <= e0; i += 8) {
        __m256 p = _mm256_loadu_ps(J->p + i);
        __m256 d = _mm256_mul_ps(_mm256_loadu_ps(J->g + i), s);
        if (J->f1) p = _mm256_mul_ps(p, decay);
        else d = _mm256_add_ps(d, _mm256_mul_ps(wd, p));
        __m256 m = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(J->s1 + i)), _mm256_mul_ps(omb1, d));
        __m256 v = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(J->s2 + i)), _mm256_mul_ps(_mm256_mul_ps(omb2, d), d));
        _mm256_storeu_ps(J->s1 + i, m);
        _mm256_storeu_ps(J->s2 + i, v);
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), bc2), eps);
        _mm256_storeu_ps(J->p + i, _mm256_sub_ps(p, _mm256_div_ps(_mm256_mul_ps(step, m), den)));
    }
    for (; i < e0; i++) {
        float d = J->g[i] * J->gs;
        if (J->f1) J->p[i] *= 1.0f - A->lr_raw * J->d;
        else d += J->d * J->p[i];
        J->s1[i] = J->a * J->s1[i] + (1.0f - J->a) * d;
        J->s2[i] = J->b * J->s2[i] + (1.0f - J->b) * d * d;
        J->p[i] -= J->lr * J->s1[i] / (sqrtf(J->s2[i]) / A->bc2 + J->c);
    }
}

void cg_avx2_adam_step(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, int decoupled, int64_t step) {
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    adam_job A = {.o = {.p = p, .s1 = m, .s2 = v, .g = g, .gs = gscale ? *gscale : 1.0f, .lr = (float)(lr / bc1),
                        .a = beta1, .b = beta2, .c = eps, .d = weight_decay, .f1 = decoupled},
                  .lr_raw = lr,
                  .bc2 = (float)sqrt(bc2)};
    cg_parallel_for(n, GRAIN, adam_task, &A);
}

/* RMSprop: s1 = square average, s2 = momentum buffer; a = alpha, b = eps, c = weight decay,
 * d = momentum. */
static void rmsprop_task(void *ctx, int64_t b0, int64_t e0, int worker) {
    const opt_job *J = ctx;
    const __m256 s = _mm256_set1_ps(J->gs), al = _mm256_set1_ps(J->a), oma = _mm256_set1_ps(1.0f - J->a),
                 eps = _mm256_set1_ps(J->b), wd = _mm256_set1_ps(J->c), mom = _mm256_set1_ps(J->d),
                 lr = _mm256_set1_ps(J->lr);
    int64_t i = b0;
    for (; i + 8 <= e0; i += 8) {
        __m256 p = _mm256_loadu_ps(J->p + i);
        __m256 d = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(J->g + i), s), _mm256_mul_ps(wd, p));
        __m256 sq = _mm256_add_ps(_mm256_mul_ps(al, _mm256_loadu_ps(J->s1 + i)), _mm256_mul_ps(_mm256_mul_ps(oma, d), d));
        _mm256_storeu_ps(J->s1 + i, sq);
        __m256 st = _mm256_div_ps(d, _mm256_add_ps(_mm256_sqrt_ps(sq), eps));
        if (J->d > 0.0f) {
            st = _mm256_add_ps(_mm256_mul_ps(mom, _mm256_loadu_ps(J->s2 + i)), st);
            _mm256_storeu_ps(J->s2 + i, st);
        }
        _mm256_storeu_ps(J->p + i, _mm256_sub_ps(p, _mm256_mul_ps(lr, st)));
    }
    for (; i < e0; i++) {
        float d = J->g[i] * J->gs + J->c * J->p[i];
        J->s1[i] = J->a * J->s1[i] + (1.0f - J->a) * d * d;
        float st = d / (sqrtf(J->s1[i]) + J->b);
        if (J->d > 0.0f) {
            J->s2[i] = J->d * J->s2[i] + st;
            st = J->s2[i];
        }
        J->p[i] -= J->lr * st;
    }
}

void cg_avx2_rmsprop_step(float *p, float *sq, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                          float alpha, float eps, float weight_decay, float momentum) {
    opt_job J = {.p = p, .s1 = sq, .s2 = buf, .g = g, .gs = gscale ? *gscale : 1.0f, .lr = lr, .a = alpha, .b = eps,
                 .c = weight_decay, .d = momentum};
    cg_parallel_for(n, GRAIN, rmsprop_task, &J);
}
