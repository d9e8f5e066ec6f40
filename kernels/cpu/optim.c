/*
 * kernels/cpu/optim.c — reference optimizer updates, PyTorch's formulas (torch.optim).
 * Reference kernels: never optimised. `gscale` (may be NULL) multiplies every gradient;
 * gradient clipping passes the clip factor through it without a host round trip.
 */
#include <math.h>

#include "kernels/cpu/ref.h"

void cg_ref_sgd_step(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                     float momentum, float dampening, float weight_decay, int nesterov, int first) {
    float s = gscale ? *gscale : 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] * s + weight_decay * p[i];
        if (momentum != 0.0f) {
            buf[i] = first ? d : momentum * buf[i] + (1.0f - dampening) * d;
            d = nesterov ? d + momentum * buf[i] : buf[i];
        }
        p[i] -= lr * d;
    }
}

void cg_ref_adam_step(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n,
                      float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                      int64_t step) {
    float s = gscale ? *gscale : 1.0f;
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] * s;
        if (decoupled) p[i] *= 1.0f - lr * weight_decay; /* AdamW */
        else d += weight_decay * p[i];                    /* Adam's L2 penalty */
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

void cg_ref_rmsprop_step(float *p, float *sq, float *buf, const float *g, const float *gscale, int64_t n,
                         float lr, float alpha, float eps, float weight_decay, float momentum) {
    float s = gscale ? *gscale : 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] * s + weight_decay * p[i];
        sq[i] = alpha * sq[i] + (1.0f - alpha) * d * d;
        float step = d / (sqrtf(sq[i]) + eps);
        if (momentum > 0.0f) {
            buf[i] = momentum * buf[i] + step;
            step = buf[i];
        }
        p[i] -= lr * step;
    }
}
