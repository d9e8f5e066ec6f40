/*
 * kernels/cuda/runtime.cu — the CUDA device: discovery, the caching allocator, streams, the
 * memory entries of the table, and the table itself.
 *
 * Discovery. cg_cuda_backend() looks for a GPU once. No driver, no device, or a device
 * older than compute capability 8.0 (the kernels use sm_80 tensor-core instructions) all
 * give NULL and a reason (cg_cuda_unavailable_reason), never an abort: a CUDA build runs
 * on machines without a GPU. CG_CUDA_DEVICE=n picks a GPU other than 0.
 *
 * The caching allocator (after PyTorch's). cudaMalloc and cudaFree synchronise the device
 * and cost tens of microseconds, so a freed block is kept and handed to the next request
 * of about its size (within +25%) on the same stream. Sizes are rounded (512 B steps up
 * to 1 MiB, 1 MiB steps above) so that a training step, which asks for the same sizes
 * every iteration, is served from the cache once warm: cudaMalloc is called only while
 * the cache grows, and the counters in cg_cuda_mem_stats prove it (tests/test_cuda.c).
 * When cudaMalloc fails, the cache is emptied and the call retried once; if it fails
 * again, alloc returns NULL and the caller reports an out-of-memory error.
 * Blocks are not split or merged: simple, and enough for the fixed-shape loops here.
 * TODO: block splitting would cut the memory held by varying-shape workloads.
 *
 * Memory entries. upload and download are synchronous for the host (the host buffer may be
 * reused as soon as they return); copy, fill and all kernels are asynchronous on the
 * thread's stream; sync waits for that stream and reports any pending device error.
 */
#include <mutex>
#include <map>
#include <unordered_map>

#include "kernels/cuda/kernels.cuh"

namespace CG_CUDA_NS {

/* --------------------------------------------------------------- errors ---- */

static const char *hint_for(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation:
        return "the GPU is out of memory: use a smaller batch, or free tensors you no longer need";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
        return "no usable GPU or driver: check nvidia-smi, or run on the CPU";
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidValue:
        return "a kernel or runtime call got bad arguments: a calograd bug, please report it with the shapes";
#ifndef CG_CUDA_EMU
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
        return "a kernel accessed memory out of bounds (a calograd bug): rerun under compute-sanitizer to find it";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
        return "this build has no code for this GPU: rebuild with a matching -gencode (kernels/cuda/meson.build)";
#endif
    default:
        return "check the GPU with nvidia-smi; CUDA_LAUNCH_BLOCKING=1 makes the failing call report itself";
    }
}

void cuda_fail(const char *file, int line, const char *expr, cudaError_t e) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s; %s", cudaGetErrorName(e), cudaGetErrorString(e), hint_for(e));
    cg_fatal(file, line, expr, msg);
}

/* --------------------------------------------------------------- device ---- */

namespace {

struct Device {
    bool ok;
    int id;
    cudaDeviceProp prop;
    cudaStream_t stream; /* the default compute stream */
    char reason[320];
};
Device g_dev;
std::once_flag g_dev_once;

/* ----------------------------------------------------------- allocator ---- */

struct Block {
    void *ptr;
    size_t size;
    cudaStream_t stream;
};

struct Pool {
    std::mutex mu;
    std::multimap<size_t, Block> cached; /* by size */
    std::unordered_map<void *, Block> used;
    cg_cuda_mem_stats st;
};
/* Never destroyed: tensors freed from atexit handlers still find it. */
Pool &pool() {
    static Pool *p = new Pool();
    return *p;
}

size_t round_size(size_t b) {
    const size_t small = 512, big = (size_t)1 << 20;
    if (b <= big) return b < small ? small : (b + small - 1) / small * small;
    return (b + big - 1) / big * big;
}

/* Return every cached block to the driver (caller holds the lock). */
void release_cached(Pool &p) {
    if (p.cached.empty()) return;
    CUDA_CHECK(cudaDeviceSynchronize());
    for (auto &kv : p.cached) {
        CUDA_CHECK(cudaFree(kv.second.ptr));
        p.st.free_calls++;
        p.st.bytes_cached -= kv.second.size;
    }
    p.cached.clear();
}

void *dev_alloc(size_t bytes) {
    Pool &p = pool();
    size_t s = round_size(bytes);
    cudaStream_t stream = cur_stream();
    std::lock_guard<std::mutex> lk(p.mu);
    p.st.requests++;
    for (auto it = p.cached.lower_bound(s); it != p.cached.end() && it->first <= s + s / 4; ++it) {
        if (it->second.stream != stream) continue;
        Block b = it->second;
        p.cached.erase(it);
        p.used[b.ptr] = b;
        p.st.bytes_cached -= b.size;
        p.st.bytes_in_use += b.size;
        return b.ptr;
    }
    void *ptr = nullptr;
    cudaError_t e = cudaMalloc(&ptr, s);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear it: out of memory is not sticky */
        release_cached(p);
        e = cudaMalloc(&ptr, s);
    }
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return nullptr;
    }
    CUDA_CHECK(e);
    p.st.malloc_calls++;
    p.used[ptr] = Block{ptr, s, stream};
    p.st.bytes_in_use += s;
    size_t total = p.st.bytes_in_use + p.st.bytes_cached;
    if (total > p.st.bytes_peak) p.st.bytes_peak = total;
    return ptr;
}

void dev_free(void *ptr) {
    if (!ptr) return;
    Pool &p = pool();
    std::lock_guard<std::mutex> lk(p.mu);
    auto it = p.used.find(ptr);
    CG_ASSERT_MSG(it != p.used.end(), "cuda free of a pointer the allocator did not hand out (double free?)");
    Block b = it->second;
    p.used.erase(it);
    p.cached.emplace(b.size, b);
    p.st.bytes_in_use -= b.size;
    p.st.bytes_cached += b.size;
}

/* ------------------------------------------------------- memory entries ---- */

void upload(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cur_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
}
void download(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cur_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
}
void sync() { CUDA_CHECK(cudaStreamSynchronize(cur_stream())); }

cg_backend g_table;

void init_device() {
    Device &d = g_dev;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(d.reason, sizeof d.reason, "no CUDA device (cudaGetDeviceCount: %s)",
                 e != cudaSuccess ? cudaGetErrorName(e) : "0 devices");
        (void)cudaGetLastError();
        return;
    }
    const char *env = getenv("CG_CUDA_DEVICE");
    d.id = env ? atoi(env) : 0;
    if (d.id < 0 || d.id >= n) {
        snprintf(d.reason, sizeof d.reason, "CG_CUDA_DEVICE=%d but %d device(s) present", d.id, n);
        return;
    }
    if ((e = cudaSetDevice(d.id)) != cudaSuccess || (e = cudaGetDeviceProperties(&d.prop, d.id)) != cudaSuccess) {
        snprintf(d.reason, sizeof d.reason, "cannot open CUDA device %d: %s", d.id, cudaGetErrorName(e));
        (void)cudaGetLastError();
        return;
    }
    if (d.prop.major < 8) {
        snprintf(d.reason, sizeof d.reason, "%.200s has compute capability %d.%d; calograd's kernels need 8.0 or newer",
                 d.prop.name, d.prop.major, d.prop.minor);
        return;
    }
    if ((e = cudaStreamCreateWithFlags(&d.stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(d.reason, sizeof d.reason, "cannot create a CUDA stream: %s", cudaGetErrorName(e));
        (void)cudaGetLastError();
        return;
    }
    cg_backend &t = g_table;
    t.name = "cuda";
    t.device = CG_CUDA;
    t.alloc = dev_alloc;
    t.free = dev_free;
    t.upload = upload;
    t.download = download;
    t.copy = copy_bytes;
    t.sync = sync;
    t.fill = fill;
    t.rand_uniform = rand_uniform;
    t.rand_normal = rand_normal;
    t.unary = unary;
    t.binary = binary;
    t.copy_strided = copy_strided;
    t.reduce_sum = reduce_sum;
    t.gemm = gemm;
    t.conv_fwd = conv_fwd;
    t.conv_bwd_data = conv_bwd_data;
    t.conv_bwd_weight = conv_bwd_weight;
    t.layernorm_fwd = layernorm_fwd;
    t.layernorm_bwd = layernorm_bwd;
    t.sort_rows = sort_rows;
    t.gather_rows = gather_rows;
    t.scatter_rows = scatter_rows;
    t.pointwise_layer = pointwise_layer;
    t.sgd_step = sgd_step;
    t.adam_step = adam_step;
    t.rmsprop_step = rmsprop_step;
    d.ok = true;
}

std::mutex g_smem_mu;
std::unordered_map<const void *, int> g_smem_raised;

} /* namespace */

/* ------------------------------------------------------ internal API ---- */

thread_local cudaStream_t t_stream = nullptr;
thread_local cg_cuda_stream *t_stream_obj = nullptr;

cudaStream_t cur_stream() { return t_stream ? t_stream : g_dev.stream; }
int sm_count() { return g_dev.ok ? g_dev.prop.multiProcessorCount : 1; }

void allow_smem(const void *kernel, int bytes) {
    if (bytes <= 48 * 1024) return;
    std::lock_guard<std::mutex> lk(g_smem_mu);
    int &have = g_smem_raised[kernel];
    if (have >= bytes) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    have = bytes;
}

void *ws_alloc(size_t bytes) {
    void *p = dev_alloc(bytes ? bytes : 4);
    if (!p) {
        char hint[160];
        snprintf(hint, sizeof hint, "out of GPU memory for a %.1f MiB kernel workspace: use a smaller batch",
                 (double)bytes / (1 << 20));
        cg_fatal(__FILE__, __LINE__, "ws_alloc", hint);
    }
    return p;
}
void ws_free(void *p) { dev_free(p); }

void copy_bytes(void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cur_stream()));
}

} /* namespace CG_CUDA_NS */

/* ------------------------------------------------------------- C API ---- */

using namespace CG_CUDA_NS;

struct cg_cuda_stream {
    cudaStream_t s;
};

struct cg_cuda_timer {
    cudaEvent_t a, b;
};

extern "C" {

const cg_backend *cg_cuda_backend(void) {
    std::call_once(g_dev_once, init_device);
    return g_dev.ok ? &g_table : nullptr;
}

const char *cg_cuda_unavailable_reason(void) { return g_dev.ok ? "" : g_dev.reason; }

const char *cg_cuda_device_name(void) { return cg_cuda_backend() ? g_dev.prop.name : ""; }

int cg_cuda_sm_count(void) { return cg_cuda_backend() ? g_dev.prop.multiProcessorCount : 0; }

void cg_cuda_mem_stats_get(cg_cuda_mem_stats *out) {
    Pool &p = pool();
    std::lock_guard<std::mutex> lk(p.mu);
    *out = p.st;
}

void cg_cuda_empty_cache(void) {
    if (!cg_cuda_backend()) return;
    Pool &p = pool();
    std::lock_guard<std::mutex> lk(p.mu);
    release_cached(p);
}

cg_cuda_stream *cg_cuda_stream_new(void) {
    if (!cg_cuda_backend()) return nullptr;
    cg_cuda_stream *s = new cg_cuda_stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking));
    return s;
}

void cg_cuda_stream_free(cg_cuda_stream *s) {
    if (!s) return;
    CUDA_CHECK(cudaStreamSynchronize(s->s));
    if (t_stream_obj == s) {
        t_stream_obj = nullptr;
        t_stream = nullptr;
    }
    {
        /* The stream's work is complete: its blocks may go to the default stream. */
        Pool &p = pool();
        std::lock_guard<std::mutex> lk(p.mu);
        for (auto &kv : p.cached)
            if (kv.second.stream == s->s) kv.second.stream = g_dev.stream;
        for (auto &kv : p.used)
            if (kv.second.stream == s->s) kv.second.stream = g_dev.stream;
    }
    CUDA_CHECK(cudaStreamDestroy(s->s));
    delete s;
}

cg_cuda_stream *cg_cuda_set_stream(cg_cuda_stream *s) {
    cg_cuda_stream *prev = t_stream_obj;
    t_stream_obj = s;
    t_stream = s ? s->s : nullptr;
    return prev;
}

void *cg_cuda_stream_handle(cg_cuda_stream *s) { return s ? (void *)s->s : (void *)g_dev.stream; }

cg_cuda_timer *cg_cuda_timer_new(void) {
    if (!cg_cuda_backend()) return nullptr;
    cg_cuda_timer *t = new cg_cuda_timer;
    CUDA_CHECK(cudaEventCreateWithFlags(&t->a, cudaEventDefault));
    CUDA_CHECK(cudaEventCreateWithFlags(&t->b, cudaEventDefault));
    return t;
}

void cg_cuda_timer_free(cg_cuda_timer *t) {
    if (!t) return;
    CUDA_CHECK(cudaEventDestroy(t->a));
    CUDA_CHECK(cudaEventDestroy(t->b));
    delete t;
}

void cg_cuda_timer_start(cg_cuda_timer *t) { CUDA_CHECK(cudaEventRecord(t->a, cur_stream())); }

float cg_cuda_timer_stop(cg_cuda_timer *t) {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventRecord(t->b, cur_stream()));
    CUDA_CHECK(cudaEventSynchronize(t->b));
    CUDA_CHECK(cudaEventElapsedTime(&ms, t->a, t->b));
    return ms;
}

} /* extern "C" */
