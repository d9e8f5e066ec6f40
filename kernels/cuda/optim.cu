/*
 * kernels/cuda/optim.cu — optimizer updates (SGD, Adam/AdamW, RMSprop), PyTorch's formulas
 * as kernels/cpu/optim.c writes them, one thread per parameter, in place.
 * `gscale` is a device pointer (or NULL): the clip factor computed on the GPU, read by each
 * thread, so gradient clipping needs no host round trip. Adam's bias corrections depend on
 * the step only and are computed on the host, in double, as the reference does.
 */
#include <math.h>

#include "kernels/cuda/kernels.cuh"

namespace CG_CUDA_NS {

namespace {

__global__ void sgd_kernel(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                           float momentum, float dampening, float weight_decay, int nesterov, int first) {
    float s = gscale ? *gscale : 1.0f;
    for (int64_t i = gtid(); i < n; i += gstride()) {
        float d = g[i] * s + weight_decay * p[i];
        if (momentum != 0.0f) {
            float b = first ? d : momentum * buf[i] + (1.0f - dampening) * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}

__global__ void adam_kernel(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n, float lr,
                            float beta1, float beta2, float eps, float weight_decay, int decoupled, float step_size,
                            float bc2_sqrt) {
    float s = gscale ? *gscale : 1.0f;
    for (int64_t i = gtid(); i < n; i += gstride()) {
        float d = g[i] * s, pi = p[i];
        if (decoupled) pi *= 1.0f - lr * weight_decay;
        else d += weight_decay * pi;
        float mi = beta1 * m[i] + (1.0f - beta1) * d;
        float vi = beta2 * v[i] + (1.0f - beta2) * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

__global__ void rmsprop_kernel(float *p, float *sq, float *buf, const float *g, const float *gscale, int64_t n,
                               float lr, float alpha, float eps, float weight_decay, float momentum) {
    float s = gscale ? *gscale : 1.0f;
    for (int64_t i = gtid(); i < n; i += gstride()) {
        float d = g[i] * s + weight_decay * p[i];
        float q = alpha * sq[i] + (1.0f - alpha) * d * d;
        sq[i] = q;
        float step = d / (sqrtf(q) + eps);
        if (momentum > 0.0f) {
            float b = momentum * buf[i] + step;
            buf[i] = b;
            step = b;
        }
        p[i] -= lr * step;
    }
}

} /* namespace */

void sgd_step(float *p, float *buf, const float *g, const float *gscale, int64_t n, float lr, float momentum,
              float dampening, float weight_decay, int nesterov, int first) {
    if (n <= 0) return;
    CG_LAUNCH(sgd_kernel, grid_for(n), kThreads, 0, p, buf, g, gscale, n, lr, momentum, dampening, weight_decay,
              nesterov, first);
}

void adam_step(float *p, float *m, float *v, const float *g, const float *gscale, int64_t n, float lr, float beta1,
               float beta2, float eps, float weight_decay, int decoupled, int64_t step) {
    if (n <= 0) return;
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    CG_LAUNCH(adam_kernel, grid_for(n), kThreads, 0, p, m, v, g, gscale, n, lr, beta1, beta2, eps, weight_decay,
              decoupled, step_size, bc2_sqrt);
}

void rmsprop_step(float *p, float *sq, float *buf, const float *g, const float *gscale, int64_t n, float lr,
                  float alpha, float eps, float weight_decay, float momentum) {
    if (n <= 0) return;
    CG_LAUNCH(rmsprop_kernel, grid_for(n), kThreads, 0, p, sq, buf, g, gscale, n, lr, alpha, eps, weight_decay,
              momentum);
}

} /* namespace CG_CUDA_NS */
