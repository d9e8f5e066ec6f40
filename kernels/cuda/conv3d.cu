/*
 * kernels/cuda/conv3d.cu — 3-D convolution forward, backward-data (= conv_transpose3d) and
 * backward-weight as implicit matrix products on the igemm engine. Shapes and semantics:
 * core/backend.h (cg_conv_desc); x (N, Ci, D, H, W), w (Co, Ci, kD, kH, kW),
 * y (N, Co, oD, oH, oW). Kernel-size-1 layers need no special case: their table is the
 * identity and the product is a plain one.
 *
 * Forward: y[n][co][o] = Σ_{ci, tap} w[co][ci][tap] · x[n][ci][o·s - p + tap]:
 *   M = Co, K = Ci·k³ (ci, tap), N = N·oD·oH·oW (n, o). A is the weight; B is gathered
 *   from x: each thread decodes its column (n, o) once, and a table built on the device
 *   gives, per k = (ci, tap), the offset into x and the tap's (kd, kh, kw) for the bounds
 *   test. So a B element costs a table entry (the same for the whole warp), three
 *   compares and one load.
 * Backward-data: dx[n][ci][i] = Σ_{co, tap: i + p - tap = o·s} dy[n][co][o] · w[co][ci][tap].
 *   For stride s only the taps with tap ≡ (i + p) mod s meet an output, so the input
 *   positions split into s³ classes (r = (i + p) mod s per axis); within a class the taps
 *   are r, r + s, ... and o = (i + p - r)/s - t. Each class is a dense product (M = Ci,
 *   K = Co·taps, N = its positions), all classes in one launch (grid z), with no multiply
 *   by a zero: a k4 s2 transposed conv costs 8 taps per output, not 64.
 * Backward-weight: dw[co][ci][tap] = Σ_{n, o} dy[n][co][o] · x[n][ci][o·s - p + tap]:
 *   M = Co, N = Ci·k³, K = N·oD·oH·oW, split into slices over (n, o) (a workspace row
 *   table holds each (n, o)'s offsets), partials added in slice order: deterministic.
 *
 * Limits: one sample of x, dy or the weight must have fewer than 2^31 elements (tables
 * hold 32-bit offsets; batch offsets are 64-bit); strides and kernels up to 127.
 */
#include "kernels/cuda/igemm.cuh"
#include "kernels/cuda/kernels.cuh"

namespace CG_CUDA_NS {

namespace {

/* The geometry of a forward conv or of a backward-data pass, as the product sees it:
 * the "source" tensor B is gathered from (x, or dy) and the "destination" written. */
struct Geom {
    int64_t nb;
    int cs, cd;     /* source channels (K side), destination channels (M) */
    int sd[3];      /* source spatial size */
    int dd[3];      /* destination spatial size */
    int k[3], st[3], pad[3];
    int bwd;        /* 0: forward (x -> y), 1: backward-data (dy -> dx) */
    int cls[3];     /* classes per axis: stride (bwd) or 1 (fwd) */
    int tmax[3];    /* taps per axis in the largest class */
    int64_t kmax;   /* table entries per class: cs · Π tmax */
};

/* One class's geometry (bwd: the positions i with (i + pad) % st == r per axis). */
struct Class {
    int cnt[3];   /* destination positions per axis */
    int first[3]; /* first destination position */
    int q0[3];    /* bwd: source position (o) of the first destination position at tap 0 */
    int taps[3];
};

__device__ __host__ __forceinline__ Class class_of(const Geom &g, int z) {
    Class c;
    int r[3] = {z / (g.cls[1] * g.cls[2]), (z / g.cls[2]) % g.cls[1], z % g.cls[2]};
    for (int a = 0; a < 3; a++) {
        if (!g.bwd) {
            c.cnt[a] = g.dd[a];
            c.first[a] = 0;
            c.q0[a] = 0;
            c.taps[a] = g.k[a];
            continue;
        }
        int s = g.st[a];
        int f = ((r[a] - g.pad[a]) % s + s) % s;
        c.first[a] = f;
        c.cnt[a] = f < g.dd[a] ? (g.dd[a] - f + s - 1) / s : 0;
        c.q0[a] = (f + g.pad[a] - r[a]) / s;
        c.taps[a] = r[a] < g.k[a] ? (g.k[a] - r[a] + s - 1) / s : 0;
    }
    return c;
}

__device__ __forceinline__ int unpack_tap(int packed, int axis) { return (int)(signed char)((packed >> (8 * axis)) & 0xff); }

/* Table entry e of class z: {offset in the source sample, offset in the weight past the
 * destination channel's row, taps packed as three signed bytes, 0}. */
__global__ void conv_table_kernel(int4 *tab, Geom g) {
    int z = blockIdx.y;
    Class c = class_of(g, z);
    int64_t nt = (int64_t)c.taps[0] * c.taps[1] * c.taps[2];
    int64_t kcls = g.cs * nt;
    for (int64_t e = gtid(); e < kcls; e += gstride()) {
        int ch = (int)(e / nt), t = (int)(e % nt);
        int t0 = t / (c.taps[1] * c.taps[2]), t1 = (t / c.taps[2]) % c.taps[1], t2 = t % c.taps[2];
        int64_t sHW = (int64_t)g.sd[1] * g.sd[2], sDHW = sHW * g.sd[0];
        int k3 = g.k[0] * g.k[1] * g.k[2];
        int4 v;
        if (!g.bwd) { /* ch = ci, taps (kd, kh, kw) = (t0, t1, t2) */
            v.x = (int)(ch * sDHW + t0 * sHW + t1 * g.sd[2] + t2);
            v.y = (int)e;
            v.z = (t0 & 0xff) | ((t1 & 0xff) << 8) | ((t2 & 0xff) << 16);
        } else { /* ch = co, kernel taps r + st·t; the source (dy) position is q - t */
            int r[3] = {z / (g.cls[1] * g.cls[2]), (z / g.cls[2]) % g.cls[1], z % g.cls[2]};
            int kd = r[0] + g.st[0] * t0, kh = r[1] + g.st[1] * t1, kw = r[2] + g.st[2] * t2;
            v.x = (int)(ch * sDHW - t0 * sHW - t1 * g.sd[2] - t2);
            v.y = (int)((int64_t)ch * g.cd * k3 + (kd * g.k[1] + kh) * g.k[2] + kw);
            v.z = (-t0 & 0xff) | ((-t1 & 0xff) << 8) | ((-t2 & 0xff) << 16);
        }
        v.w = 0;
        tab[z * g.kmax + e] = v;
    }
}

struct ConvOp {
    Geom g;
    const float *src, *w, *bias;
    float *dst;
    const int4 *tab;
    int64_t a_rs; /* weight elements between destination channels */

    struct Thread {
        int64_t k_begin, k_end;
        const int4 *tab;
        int64_t colbase;
        int c[3], z;
        bool valid;
    };

    /* Column j of class z: the source offset and coordinates of tap 0 (colbase, c) and
     * the destination offset of channel 0 (returned). */
    __device__ int64_t column(int z, int64_t j, int64_t *colbase, int *c) const {
        Class cl = class_of(g, z);
        int64_t per = (int64_t)cl.cnt[0] * cl.cnt[1] * cl.cnt[2];
        int64_t n = j / per, p = j % per;
        int pos[3] = {(int)(p / ((int64_t)cl.cnt[1] * cl.cnt[2])), (int)((p / cl.cnt[2]) % cl.cnt[1]),
                      (int)(p % cl.cnt[2])};
        int64_t sHW = (int64_t)g.sd[1] * g.sd[2], dHW = (int64_t)g.dd[1] * g.dd[2];
        int dpos[3];
        for (int a = 0; a < 3; a++) {
            c[a] = g.bwd ? cl.q0[a] + pos[a] : pos[a] * g.st[a] - g.pad[a];
            dpos[a] = g.bwd ? cl.first[a] + g.st[a] * pos[a] : pos[a];
        }
        *colbase = n * g.cs * sHW * g.sd[0] + c[0] * sHW + (int64_t)c[1] * g.sd[2] + c[2];
        return n * g.cd * dHW * g.dd[0] + dpos[0] * dHW + (int64_t)dpos[1] * g.dd[2] + dpos[2];
    }

    __device__ bool begin(Thread &th, int m0, int j0, int z, int jl) const {
        Class cl = class_of(g, z);
        int64_t ncol = g.nb * cl.cnt[0] * cl.cnt[1] * cl.cnt[2];
        if (j0 >= ncol) return false; /* this class has fewer columns than the grid */
        th.k_begin = 0;
        th.k_end = (int64_t)g.cs * cl.taps[0] * cl.taps[1] * cl.taps[2];
        th.tab = tab + z * g.kmax;
        th.z = z;
        int64_t j = (int64_t)j0 + jl;
        th.valid = j < ncol;
        th.colbase = 0;
        th.c[0] = th.c[1] = th.c[2] = 0;
        if (th.valid) column(z, j, &th.colbase, th.c);
        return true;
    }
    __device__ bool a_kfast() const { return true; }
    __device__ bool b_jfast() const { return true; }
    __device__ float a(const Thread &th, int64_t m, int64_t k) const {
        return m < g.cd ? w[m * a_rs + th.tab[k].y] : 0.0f;
    }
    __device__ float b(const Thread &th, int64_t k, int jl) const {
        if (!th.valid) return 0.0f;
        int4 t = th.tab[k];
        int cd = th.c[0] + unpack_tap(t.z, 0), ch = th.c[1] + unpack_tap(t.z, 1), cw = th.c[2] + unpack_tap(t.z, 2);
        if ((unsigned)cd >= (unsigned)g.sd[0] || (unsigned)ch >= (unsigned)g.sd[1] || (unsigned)cw >= (unsigned)g.sd[2])
            return 0.0f;
        return src[th.colbase + t.x];
    }
    template <int BM, int BN>
    __device__ void epilogue(const Thread &th, const float *Cs, int ldc, int m0, int j0, int tid) const {
        if (!th.valid) return; /* no barriers below: a thread may leave */
        int64_t dDHW = (int64_t)g.dd[0] * g.dd[1] * g.dd[2], colbase;
        int c[3];
        int64_t outbase = column(th.z, (int64_t)j0 + tid % BN, &colbase, c);
        tile_foreach<BM, BN>(tid, [&](int mi, int ji) {
            int m = m0 + mi;
            if (m >= g.cd) return;
            float v = Cs[mi * ldc + ji];
            if (bias) v += bias[m];
            dst[outbase + m * dDHW] = v;
        });
    }
};

/* The row table of backward-weight: per (n, o), offsets into x and dy and the input
 * coordinates of tap 0. */
struct RowEnt {
    long long xb, yb;
    short c[4];
};

__global__ void conv_rowtab_kernel(RowEnt *rt, cg_conv_desc d) {
    int64_t P = (int64_t)d.out[0] * d.out[1] * d.out[2], R = d.N * P;
    int64_t iHW = (int64_t)d.in[1] * d.in[2], iDHW = iHW * d.in[0];
    for (int64_t r = gtid(); r < R; r += gstride()) {
        int64_t n = r / P, o = r % P;
        int od = (int)(o / ((int64_t)d.out[1] * d.out[2])), oh = (int)((o / d.out[2]) % d.out[1]),
            ow = (int)(o % d.out[2]);
        int c0 = od * d.stride[0] - d.pad[0], c1 = oh * d.stride[1] - d.pad[1], c2 = ow * d.stride[2] - d.pad[2];
        RowEnt e;
        e.xb = n * d.Ci * iDHW + c0 * iHW + (int64_t)c1 * d.in[2] + c2;
        e.yb = n * d.Co * P + o;
        e.c[0] = (short)c0;
        e.c[1] = (short)c1;
        e.c[2] = (short)c2;
        e.c[3] = 0;
        rt[r] = e;
    }
}

struct ConvWeightOp {
    cg_conv_desc d;
    const float *x, *dy;
    float *dw;      /* when splits == 1 */
    float *partial; /* (splits, Co, Ci·k³) otherwise */
    const RowEnt *rt;
    int64_t P, R, ncol, chunk;
    int splits;

    struct Thread {
        int64_t k_begin, k_end, slice;
        int64_t coloff;
        int t[3];
        bool valid;
    };

    __device__ bool begin(Thread &th, int m0, int j0, int z, int jl) const {
        th.slice = z;
        th.k_begin = (int64_t)z * chunk;
        th.k_end = th.k_begin + chunk < R ? th.k_begin + chunk : R;
        int64_t j = (int64_t)j0 + jl;
        th.valid = j < ncol;
        th.coloff = 0;
        th.t[0] = th.t[1] = th.t[2] = 0;
        if (th.valid) {
            int k3 = d.k[0] * d.k[1] * d.k[2];
            int ci = (int)(j / k3), kp = (int)(j % k3);
            th.t[0] = kp / (d.k[1] * d.k[2]);
            th.t[1] = (kp / d.k[2]) % d.k[1];
            th.t[2] = kp % d.k[2];
            int64_t iHW = (int64_t)d.in[1] * d.in[2];
            th.coloff = ci * iHW * d.in[0] + th.t[0] * iHW + (int64_t)th.t[1] * d.in[2] + th.t[2];
        }
        return true;
    }
    __device__ bool a_kfast() const { return true; }
    __device__ bool b_jfast() const { return true; }
    __device__ float a(const Thread &th, int64_t m, int64_t r) const {
        return m < d.Co ? dy[rt[r].yb + m * P] : 0.0f;
    }
    __device__ float b(const Thread &th, int64_t r, int jl) const {
        if (!th.valid) return 0.0f;
        const RowEnt &e = rt[r];
        int c0 = e.c[0] + th.t[0], c1 = e.c[1] + th.t[1], c2 = e.c[2] + th.t[2];
        if ((unsigned)c0 >= (unsigned)d.in[0] || (unsigned)c1 >= (unsigned)d.in[1] || (unsigned)c2 >= (unsigned)d.in[2])
            return 0.0f;
        return x[e.xb + th.coloff];
    }
    template <int BM, int BN>
    __device__ void epilogue(const Thread &th, const float *Cs, int ldc, int m0, int j0, int tid) const {
        if (!th.valid) return;
        float *out = splits > 1 ? partial + th.slice * d.Co * ncol : dw;
        tile_foreach<BM, BN>(tid, [&](int mi, int ji) {
            int m = m0 + mi;
            if (m < d.Co) out[m * ncol + j0 + ji] = Cs[mi * ldc + ji];
        });
    }
};

__global__ void splits_sum_kernel(float *out, const float *partial, int64_t n, int splits) {
    for (int64_t i = gtid(); i < n; i += gstride()) {
        double s = 0.0;
        for (int k = 0; k < splits; k++) s += partial[k * n + i];
        out[i] = (float)s;
    }
}

void check_int32(int64_t v, const char *what) {
    if (v >= ((int64_t)1 << 31)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s has %lld elements; the CUDA conv kernels need fewer than 2^31 per sample", what,
                 (long long)v);
        cg_fatal(__FILE__, __LINE__, "conv size", msg);
    }
}

/* Forward (bwd = 0) or backward-data (bwd = 1) on the implicit product. */
void conv_run(float *dst, const float *src, const float *w, const float *bias, const cg_conv_desc *c, int bwd) {
    Geom g = {};
    g.nb = c->N;
    g.cs = bwd ? c->Co : c->Ci;
    g.cd = bwd ? c->Ci : c->Co;
    for (int a = 0; a < 3; a++) {
        g.sd[a] = bwd ? c->out[a] : c->in[a];
        g.dd[a] = bwd ? c->in[a] : c->out[a];
        g.k[a] = c->k[a];
        g.st[a] = c->stride[a];
        g.pad[a] = c->pad[a];
        g.cls[a] = bwd ? c->stride[a] : 1;
        g.tmax[a] = bwd ? (c->k[a] + c->stride[a] - 1) / c->stride[a] : c->k[a];
        CG_ASSERT_MSG(c->k[a] < 128 && c->stride[a] < 128, "conv kernel or stride of 128 or more");
    }
    g.bwd = bwd;
    int64_t sp = (int64_t)g.sd[0] * g.sd[1] * g.sd[2], dp = (int64_t)g.dd[0] * g.dd[1] * g.dd[2];
    int64_t k3 = (int64_t)c->k[0] * c->k[1] * c->k[2];
    if (g.nb <= 0 || g.cd <= 0 || dp <= 0) return;
    check_int32(g.cs * sp, bwd ? "one sample of dy" : "one sample of x");
    check_int32((int64_t)c->Co * c->Ci * k3, "the weight");
    g.kmax = (int64_t)g.cs * g.tmax[0] * g.tmax[1] * g.tmax[2];
    int classes = g.cls[0] * g.cls[1] * g.cls[2];
    CG_ASSERT(classes <= 65535);
    int4 *tab = (int4 *)ws_alloc((size_t)(classes * g.kmax) * sizeof(int4));
    if (g.kmax > 0)
        CG_LAUNCH(conv_table_kernel, dim3(grid_for(g.kmax), (unsigned)classes), kThreads, 0, tab, g);
    ConvOp op = {};
    op.g = g;
    op.src = src;
    op.w = w;
    op.bias = bias;
    op.dst = dst;
    op.tab = tab;
    op.a_rs = bwd ? k3 : (int64_t)c->Ci * k3;
    /* columns: the largest class (the first: r = 0 has the most positions) */
    int64_t maxcol = 0;
    for (int z = 0; z < classes; z++) {
        Class cl = class_of(g, z);
        int64_t ncol = g.nb * cl.cnt[0] * cl.cnt[1] * cl.cnt[2];
        if (ncol > maxcol) maxcol = ncol;
    }
    if (maxcol > 0) igemm_launch(op, g.cd, maxcol, (unsigned)classes);
    ws_free(tab);
}

/* Kernel size 1, stride 1, no padding: per sample a plain matrix product over the P voxels
 * (the post-processor's layers in training), with none of the implicit product's
 * per-element table lookups and bounds tests. */
bool is_k1(const cg_conv_desc *c) {
    for (int a = 0; a < 3; a++)
        if (c->k[a] != 1 || c->stride[a] != 1 || c->pad[a] != 0) return false;
    return c->N > 0 && c->Ci > 0 && c->Co > 0;
}

int64_t voxels(const int *e) { return (int64_t)e[0] * e[1] * e[2]; }

} /* namespace */

void conv_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c) {
    if (is_k1(c)) { /* y[n] = w · x[n] + bias: the per-voxel layer without norm or activation */
        cg_pw_args a = {};
        a.y = y;
        a.x = x;
        a.w = w;
        a.bias = bias;
        a.B = c->N;
        a.Ci = c->Ci;
        a.Co = c->Co;
        a.V = voxels(c->in);
        pointwise_layer(&a);
        return;
    }
    conv_run(y, x, w, bias, c, 0);
}

void conv_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c) {
    if (is_k1(c)) { /* dx[n] (Ci x P) = wᵀ (Ci x Co) · dy[n] (Co x P) */
        int64_t P = voxels(c->in);
        gemm(1, 0, c->Ci, P, c->Co, 1.0f, w, c->Ci, 0, dy, P, c->Co * P, 0.0f, dx, P, c->Ci * P, c->N);
        return;
    }
    conv_run(dx, dy, w, nullptr, c, 1);
}

void conv_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c) {
    if (is_k1(c) && voxels(c->in) > 0) {
        /* dw = Σ_n dy[n] (Co x P) · x[n]ᵀ (P x Ci): one product per sample, then their sum
         * over n in order (deterministic) */
        int64_t P = voxels(c->in), nw = (int64_t)c->Co * c->Ci;
        float *part = (float *)ws_alloc((size_t)(c->N * nw) * sizeof(float));
        gemm(0, 1, c->Co, c->Ci, P, 1.0f, dy, P, c->Co * P, x, P, c->Ci * P, 0.0f, part, c->Ci, nw, c->N);
        int64_t shape[2] = {c->N, nw};
        reduce_sum(dw, part, 2, shape, 1u);
        ws_free(part);
        return;
    }
    int64_t k3 = (int64_t)c->k[0] * c->k[1] * c->k[2];
    int64_t ncol = (int64_t)c->Ci * k3, nw = c->Co * ncol;
    if (nw <= 0) return;
    int64_t P = (int64_t)c->out[0] * c->out[1] * c->out[2], R = c->N * P;
    if (R <= 0) { /* no outputs: the gradient is zero */
        fill(dw, 0.0f, nw);
        return;
    }
    check_int32((int64_t)c->Ci * c->in[0] * c->in[1] * c->in[2], "one sample of x");
    for (int a = 0; a < 3; a++) CG_ASSERT_MSG(c->in[a] < 32768 && c->out[a] < 32768, "conv extent of 32768 or more");
    RowEnt *rt = (RowEnt *)ws_alloc((size_t)R * sizeof(RowEnt));
    CG_LAUNCH(conv_rowtab_kernel, grid_for(R), kThreads, 0, rt, *c);
    ConvWeightOp op = {};
    op.d = *c;
    op.x = x;
    op.dy = dy;
    op.dw = dw;
    op.rt = rt;
    op.P = P;
    op.R = R;
    op.ncol = ncol;
    int64_t splits = igemm_splits(c->Co, ncol, R, 1, 65535, igemm_tile_n_narrow(c->Co, ncol));
    op.chunk = igemm_chunk(R, splits);
    splits = ceil_div(R, op.chunk);
    op.splits = (int)splits;
    op.partial = splits > 1 ? (float *)ws_alloc((size_t)(splits * nw) * sizeof(float)) : nullptr;
    igemm_launch_narrow(op, c->Co, ncol, (unsigned)splits);
    if (splits > 1) {
        CG_LAUNCH(splits_sum_kernel, grid_for(nw), kThreads, 0, dw, op.partial, nw, (int)splits);
        ws_free(op.partial);
    }
    ws_free(rt);
}

} /* namespace CG_CUDA_NS */
