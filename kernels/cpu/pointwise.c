/*
 * kernels/cpu/pointwise.c — reference fused per-voxel layer (see core/backend.h,
 * pointwise_layer): normalise and activate the input on the fly, multiply by the (Co, Ci)
 * weight, add the biases, and optionally return the output's layer-norm statistics.
 * Reference kernel: never optimised; accumulates in double.
 */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/ref.h"

void cg_ref_pointwise_layer(float *y, float *y_mean, float *y_rstd, const float *x, const float *x_mean,
                            const float *x_rstd, const float *gamma, const float *beta, int act, float slope,
                            const float *w, const float *bias, const float *bias_b, int64_t B, int Ci, int Co,
                            int64_t V, float eps) {
    double *a = cg_xmalloc((size_t)Ci * sizeof(double)); /* the activated input of one voxel */
    for (int64_t b = 0; b < B; b++) {
        for (int64_t v = 0; v < V; v++) {
            for (int ci = 0; ci < Ci; ci++) {
                double t = x[(b * Ci + ci) * V + v];
                if (x_mean) {
                    t = (t - x_mean[b * Ci + ci]) * x_rstd[b * Ci + ci];
                    if (gamma) t *= gamma[v];
                    if (beta) t += beta[v];
                }
                if (act && t <= 0) t *= slope;
                a[ci] = t;
            }
            for (int co = 0; co < Co; co++) {
                double acc = (bias ? bias[co] : 0.0) + (bias_b ? bias_b[b * Co + co] : 0.0);
                for (int ci = 0; ci < Ci; ci++) acc += (double)w[(int64_t)co * Ci + ci] * a[ci];
                y[(b * Co + co) * V + v] = (float)acc;
            }
        }
        if (y_mean)
            for (int co = 0; co < Co; co++) {
                const float *yr = y + (b * Co + co) * V;
                double s = 0, ss = 0;
                for (int64_t v = 0; v < V; v++) s += yr[v];
                double m = s / (double)V;
                for (int64_t v = 0; v < V; v++) ss += (yr[v] - m) * (yr[v] - m);
                y_mean[b * Co + co] = (float)m;
                y_rstd[b * Co + co] = (float)(1.0 / sqrt(ss / (double)V + eps));
            }
    }
    free(a);
}
