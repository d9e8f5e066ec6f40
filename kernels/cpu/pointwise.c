/*
 * kernels/cpu/pointwise.c — reference fused per-voxel layer (see core/backend.h,
 * cg_pw_args): expand a one-channel input (x_scale/x_shift), normalise and activate it on
 * the fly, multiply by the (Co, Ci) weight, add the biases, and either project the result
 * to one channel (proj) or write it and optionally its layer-norm statistics.
 * Reference kernel: never optimised; accumulates in double.
 */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/ref.h"

void cg_ref_pointwise_layer(const cg_pw_args *A) {
    const int64_t B = A->B, V = A->V;
    const int Ci = A->Ci, Co = A->Co;
    double *a = cg_xmalloc((size_t)Ci * sizeof(double)); /* the activated input of one voxel */
    float *z = cg_xmalloc((size_t)(Co ? Co : 1) * sizeof(float)); /* the layer's output at that voxel */
    for (int64_t b = 0; b < B; b++) {
        for (int64_t v = 0; v < V; v++) {
            for (int ci = 0; ci < Ci; ci++) {
                double t;
                if (A->x_scale) /* the 1 -> Ci layer's output, rounded to float as it would be stored */
                    t = (float)((double)A->x_scale[ci] * A->x[b * V + v] + (A->x_shift ? A->x_shift[ci] : 0.0));
                else
                    t = A->x[(b * Ci + ci) * V + v];
                if (A->x_mean) {
                    t = (t - A->x_mean[b * Ci + ci]) * A->x_rstd[b * Ci + ci];
                    if (A->gamma) t *= A->gamma[v];
                    if (A->beta) t += A->beta[v];
                }
                if (A->act && t <= 0) t *= A->slope;
                a[ci] = t;
            }
            for (int co = 0; co < Co; co++) {
                double acc = (A->bias ? A->bias[co] : 0.0) + (A->bias_b ? A->bias_b[b * Co + co] : 0.0);
                for (int ci = 0; ci < Ci; ci++) acc += (double)A->w[(int64_t)co * Ci + ci] * a[ci];
                z[co] = (float)acc;
            }
            if (A->proj) {
                double acc = 0;
                for (int co = 0; co < Co; co++) acc += (double)A->proj[co] * (A->act && z[co] <= 0 ? z[co] * (double)A->slope : z[co]);
                A->y[b * V + v] = (float)acc;
            } else
                for (int co = 0; co < Co; co++) A->y[(b * Co + co) * V + v] = z[co];
        }
        if (A->y_mean)
            for (int co = 0; co < Co; co++) {
                const float *yr = A->y + (b * Co + co) * V;
                double s = 0, ss = 0;
                for (int64_t v = 0; v < V; v++) s += yr[v];
                double m = s / (double)V;
                for (int64_t v = 0; v < V; v++) ss += (yr[v] - m) * (yr[v] - m);
                A->y_mean[b * Co + co] = (float)m;
                A->y_rstd[b * Co + co] = (float)(1.0 / sqrt(ss / (double)V + A->eps));
            }
    }
    free(a);
    free(z);
}
