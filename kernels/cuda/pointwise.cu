/*
 * kernels/cuda/pointwise.cu — the fused per-voxel (kernel-size-1) layer of core/backend.h
 * (pointwise_layer): the BIB-AE post-processor's building block, two thirds of that
 * model's arithmetic (../shared/reference/models.md §1.5, §1.10).
 *
 * One implicit product per sample (grid z = b): y[b] (Co x V) = w (Co x Ci) · a(n(x[b]))
 * (Ci x V), where the B loader normalises and activates each input element as it fetches
 * it (the layer norm's statistics x_mean/x_rstd are per (b, ci): the same for a whole warp;
 * gamma/beta are per voxel: read once per thread), so the normalised activations never
 * exist in memory. The epilogue adds the two biases, writes y, and, when asked, reduces
 * each row of the tile to its mean and centred sum of squares (M2); a last kernel merges
 * the tiles' (count, mean, M2) in tile order with Chan's formula, in double, into y's mean
 * and rstd: the next layer's input statistics, without another pass over y. No atomics:
 * deterministic.
 *
 * The two fusions of cg_pw_args: an expanded one-channel input (x_scale: the 1 -> Ci layer
 * before this one) is read once per thread in begin() and expanded in the B loader with
 * one fmaf per element, so the layer reads one channel instead of Ci; a projection (proj:
 * the Co -> 1 layer after this one) is applied by the epilogue to the tile's columns in
 * shared memory, which hold all Co rows when Co <= 128 (one tile high): the Co-channel
 * output is never written. Taller layers (Co > 128) run the two layers unfused.
 */
#include <math.h>

#include "kernels/cuda/igemm.cuh"
#include "kernels/cuda/kernels.cuh"

namespace CG_CUDA_NS {

namespace {

struct PointwiseOp {
    const float *x, *xs, *xt, *xm, *xr, *gamma, *beta, *w, *bias, *bias_b, *proj;
    float *y;
    float *stats; /* (B, Co, ntiles, 2): tile mean, tile M2; or NULL */
    int64_t V, ntiles;
    int Ci, Co, act;
    float slope;

    struct Thread {
        int64_t k_begin, k_end;
        int64_t b, v;
        const float *xb;
        float g, be, x0; /* x0: the thread's voxel of an expanded (one-channel) x */
        bool valid;
    };

    __device__ bool begin(Thread &th, int m0, int j0, int z, int jl) const {
        th.k_begin = 0;
        th.k_end = Ci;
        th.b = z;
        th.v = (int64_t)j0 + jl;
        th.valid = th.v < V;
        th.xb = x + th.b * (xs ? 1 : Ci) * V;
        th.x0 = xs && th.valid ? th.xb[th.v] : 0.0f;
        th.g = gamma && th.valid ? gamma[th.v] : 1.0f;
        th.be = beta && th.valid ? beta[th.v] : 0.0f;
        return true;
    }
    __device__ bool a_kfast() const { return true; }
    __device__ bool b_jfast() const { return true; }
    __device__ float a(const Thread &th, int64_t m, int64_t k) const { return m < Co ? w[m * Ci + k] : 0.0f; }
    __device__ float b(const Thread &th, int64_t k, int jl) const {
        if (!th.valid) return 0.0f;
        float t = xs ? fmaf(xs[k], th.x0, xt ? xt[k] : 0.0f) : th.xb[k * V + th.v];
        if (xm) t = (t - xm[th.b * Ci + k]) * xr[th.b * Ci + k] * th.g + th.be;
        if (act && t <= 0.0f) t *= slope;
        return t;
    }
    __device__ float bias_of(const Thread &th, int m) const {
        return (bias ? bias[m] : 0.0f) + (bias_b ? bias_b[th.b * Co + m] : 0.0f);
    }
    template <int BM, int BN>
    __device__ void epilogue(const Thread &th, const float *Cs, int ldc, int m0, int j0, int tid) const {
        if (proj) { /* the whole column is in the tile (m0 == 0, Co <= BM): y = Σ proj · a(z) */
            for (int ji = tid; ji < BN; ji += 256) {
                int64_t v = (int64_t)j0 + ji;
                if (v >= V) break;
                float s = 0.0f;
                for (int m = 0; m < Co; m++) {
                    float z = Cs[m * ldc + ji] + bias_of(th, m);
                    if (act && z <= 0.0f) z *= slope;
                    s = fmaf(proj[m], z, s);
                }
                y[th.b * V + v] = s;
            }
            return;
        }
        tile_foreach<BM, BN>(tid, [&](int mi, int ji) {
            int m = m0 + mi;
            if (m < Co && th.valid) y[(th.b * Co + m) * V + th.v] = Cs[mi * ldc + ji] + bias_of(th, m);
        });
        if (!stats) return;
        /* one warp per row: the tile's mean, then the centred sum of squares around it */
        int warp = tid / 32, lane = tid % 32;
        int nvalid = V - j0 < BN ? (int)(V - j0) : BN;
        for (int mi = warp; mi < BM; mi += 8) {
            int m = m0 + mi;
            if (m >= Co) break; /* uniform over the warp */
            float bm = bias_of(th, m), s = 0.0f;
            for (int ji = lane; ji < nvalid; ji += 32) s += Cs[mi * ldc + ji] + bm;
            float mean = warp_sum(s) / (float)nvalid, q = 0.0f;
            for (int ji = lane; ji < nvalid; ji += 32) {
                float d = Cs[mi * ldc + ji] + bm - mean;
                q += d * d;
            }
            q = warp_sum(q);
            if (lane == 0) {
                float *st = stats + ((th.b * Co + m) * ntiles + j0 / BN) * 2;
                st[0] = mean;
                st[1] = q;
            }
        }
    }
};

/* Merge the tiles' (count, mean, M2) of each (b, co) in tile order (Chan et al.). */
__global__ void pointwise_stats_kernel(float *y_mean, float *y_rstd, const float *stats, int64_t rows, int64_t ntiles,
                                       int64_t V, int bn, float eps) {
    for (int64_t r = gtid(); r < rows; r += gstride()) {
        double n = 0.0, mean = 0.0, m2 = 0.0;
        for (int64_t t = 0; t < ntiles; t++) {
            double nb = (double)(V - t * bn < bn ? V - t * bn : bn);
            double mb = stats[(r * ntiles + t) * 2], qb = stats[(r * ntiles + t) * 2 + 1];
            double delta = mb - mean, tot = n + nb;
            mean += delta * nb / tot;
            m2 += qb + delta * delta * n * nb / tot;
            n = tot;
        }
        y_mean[r] = (float)mean;
        y_rstd[r] = (float)(1.0 / sqrt(m2 / (double)V + (double)eps));
    }
}

} /* namespace */

void pointwise_layer(const cg_pw_args *a) {
    const int64_t B = a->B, V = a->V;
    const int Ci = a->Ci, Co = a->Co;
    if (B <= 0 || Co <= 0) return;
    if (V <= 0) { /* no voxels: statistics of nothing, as the reference (NaN mean) */
        if (a->y_mean) {
            fill(a->y_mean, NAN, B * Co);
            fill(a->y_rstd, NAN, B * Co);
        }
        return;
    }
    if (a->proj && igemm_tile_m(Co) < Co) { /* the column does not fit one tile: two layers */
        cg_pw_args first = *a, second = {};
        first.proj = nullptr;
        first.y = (float *)ws_alloc((size_t)(B * Co * V) * sizeof(float));
        pointwise_layer(&first);
        second.y = a->y;
        second.x = first.y;
        second.act = a->act;
        second.slope = a->slope;
        second.w = a->proj;
        second.B = B;
        second.Ci = Co;
        second.Co = 1;
        second.V = V;
        pointwise_layer(&second);
        ws_free(first.y);
        return;
    }
    const int xc = a->x_scale ? 1 : Ci, yc = a->proj ? 1 : Co; /* channels x holds, y gets */
    PointwiseOp op = {};
    op.x = a->x;
    op.xs = a->x_scale;
    op.xt = a->x_shift;
    op.xm = a->x_mean;
    op.xr = a->x_rstd;
    op.gamma = a->gamma;
    op.beta = a->beta;
    op.w = a->w;
    op.bias = a->bias;
    op.bias_b = a->bias_b;
    op.proj = a->proj;
    op.y = a->y;
    op.V = V;
    op.Ci = Ci;
    op.Co = Co;
    op.act = a->act;
    op.slope = a->slope;
    int bn = igemm_tile_n(Co);
    op.ntiles = ceil_div(V, bn);
    op.stats = a->y_mean ? (float *)ws_alloc((size_t)(B * Co * op.ntiles * 2) * sizeof(float)) : nullptr;
    for (int64_t b0 = 0; b0 < B; b0 += 65535) { /* samples on grid z, 65535 at a time */
        int64_t nb = B - b0 < 65535 ? B - b0 : 65535;
        PointwiseOp part = op;
        part.x = a->x + b0 * xc * V;
        part.y = a->y + b0 * yc * V;
        if (a->x_mean) {
            part.xm = a->x_mean + b0 * Ci;
            part.xr = a->x_rstd + b0 * Ci;
        }
        if (a->bias_b) part.bias_b = a->bias_b + b0 * Co;
        if (op.stats) part.stats = op.stats + b0 * Co * op.ntiles * 2;
        igemm_launch(part, Co, V, (unsigned)nb);
    }
    if (a->y_mean) {
        CG_LAUNCH(pointwise_stats_kernel, grid_for(B * Co), kThreads, 0, a->y_mean, a->y_rstd, op.stats, B * Co,
                  op.ntiles, V, bn, a->eps);
        ws_free(op.stats);
    }
}

} /* namespace CG_CUDA_NS */
