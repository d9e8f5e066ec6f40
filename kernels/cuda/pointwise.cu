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
    cg_pw_args p; /* the layer (core/backend.h), its pointers offset to this launch's samples */
    float *stats; /* (B, Co, ntiles, 2): tile mean, tile M2; or NULL */
    int64_t ntiles;

    struct Thread {
        int64_t k_begin, k_end;
        int64_t b, v;
        const float *xb;
        float g, be, x0; /* x0: the thread's voxel of an expanded (one-channel) x */
        bool valid;
    };

    __device__ bool begin(Thread &th, int m0, int j0, int z, int jl) const {
        th.k_begin = 0;
        th.k_end = p.Ci;
        th.b = z;
        th.v = (int64_t)j0 + jl;
        th.valid = th.v < p.V;
        th.xb = p.x + th.b * (p.x_scale ? 1 : p.Ci) * p.V;
        th.x0 = p.x_scale && th.valid ? th.xb[th.v] : 0.0f;
        th.g = p.gamma && th.valid ? p.gamma[th.v] : 1.0f;
        th.be = p.beta && th.valid ? p.beta[th.v] : 0.0f;
        return true;
    }
    __device__ bool a_kfast() const { return true; }
    __device__ bool b_jfast() const { return true; }
    __device__ float a(const Thread &th, int64_t m, int64_t k) const { return m < p.Co ? p.w[m * p.Ci + k] : 0.0f; }
    __device__ float b(const Thread &th, int64_t k, int jl) const {
        if (!th.valid) return 0.0f;
        float t = p.x_scale ? fmaf(p.x_scale[k], th.x0, p.x_shift ? p.x_shift[k] : 0.0f) : th.xb[k * p.V + th.v];
        if (p.x_mean) t = (t - p.x_mean[th.b * p.Ci + k]) * p.x_rstd[th.b * p.Ci + k] * th.g + th.be;
        if (p.act && t <= 0.0f) t *= p.slope;
        return t;
    }
    __device__ float bias_of(const Thread &th, int m) const {
        return (p.bias ? p.bias[m] : 0.0f) + (p.bias_b ? p.bias_b[th.b * p.Co + m] : 0.0f);
    }
    template <int BM, int BN>
    __device__ void epilogue(const Thread &th, const float *Cs, int ldc, int m0, int j0, int tid) const {
        if (p.proj) { /* the whole column is in the tile (m0 == 0, Co <= BM): y = Σ proj · a(z) */
            for (int ji = tid; ji < BN; ji += 256) {
                int64_t v = (int64_t)j0 + ji;
                if (v >= p.V) break;
                float s = 0.0f;
                for (int m = 0; m < p.Co; m++) {
                    float z = Cs[m * ldc + ji] + bias_of(th, m);
                    if (p.act && z <= 0.0f) z *= p.slope;
                    s = fmaf(p.proj[m], z, s);
                }
                p.y[th.b * p.V + v] = s;
            }
            return;
        }
        tile_foreach<BM, BN>(tid, [&](int mi, int ji) {
            int m = m0 + mi;
            if (m < p.Co && th.valid) p.y[(th.b * p.Co + m) * p.V + th.v] = Cs[mi * ldc + ji] + bias_of(th, m);
        });
        if (!stats) return;
        /* one warp per row: the tile's mean, then the centred sum of squares around it */
        int warp = tid / 32, lane = tid % 32;
        int nvalid = p.V - j0 < BN ? (int)(p.V - j0) : BN;
        for (int mi = warp; mi < BM; mi += 8) {
            int m = m0 + mi;
            if (m >= p.Co) break; /* uniform over the warp */
            float bm = bias_of(th, m), s = 0.0f;
            for (int ji = lane; ji < nvalid; ji += 32) s += Cs[mi * ldc + ji] + bm;
            float mean = warp_sum(s) / (float)nvalid, q = 0.0f;
            for (int ji = lane; ji < nvalid; ji += 32) {
                float d = Cs[mi * ldc + ji] + bm - mean;
                q += d * d;
            }
            q = warp_sum(q);
            if (lane == 0) {
                float *st = stats + ((th.b * p.Co + m) * ntiles + j0 / BN) * 2;
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
    op.p = *a;
    int bn = igemm_tile_n(Co);
    op.ntiles = ceil_div(V, bn);
    op.stats = a->y_mean ? (float *)ws_alloc((size_t)(B * Co * op.ntiles * 2) * sizeof(float)) : nullptr;
    for (int64_t b0 = 0; b0 < B; b0 += 65535) { /* samples on grid z, 65535 at a time */
        int64_t nb = B - b0 < 65535 ? B - b0 : 65535;
        PointwiseOp part = op;
        part.p.x = a->x + b0 * xc * V;
        part.p.y = a->y + b0 * yc * V;
        if (a->x_mean) {
            part.p.x_mean = a->x_mean + b0 * Ci;
            part.p.x_rstd = a->x_rstd + b0 * Ci;
        }
        if (a->bias_b) part.p.bias_b = a->bias_b + b0 * Co;
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
