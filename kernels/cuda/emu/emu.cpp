/*
 * kernels/cuda/emu/emu.cpp — the CPU emulator's scheduler, warp collectives, tensor-core
 * instructions and runtime API (see cuda_emu.h for what it does and does not model).
 *
 * One block at a time; its threads are fibers with their own stacks. A fiber runs until it
 * reaches a barrier (__syncthreads or a warp-collective operation), then yields; the
 * scheduler resumes the fibers round-robin until all have finished. A round in which no
 * fiber moves is a deadlock (a barrier that not every thread reaches) and aborts with a
 * message, as does any launch the real hardware would refuse.
 *
 * Fibers are made once and live across blocks and launches: a fiber that finishes its
 * thread parks and, resumed for the next block, runs that block's thread of the same index.
 * On x86-64 a switch is cg_emu_switch below (push the registers a call preserves and the
 * floating-point control words, change stacks, pop); elsewhere it is swapcontext, which
 * also saves and restores the signal mask with two system calls per switch. With
 * swapcontext (and a fresh ucontext per thread) about half of the emulator's time went into
 * switching; the hand-made switch made the emulated op-consistency test 3.6x faster. Define
 * CG_EMU_UCONTEXT to use swapcontext on x86-64 too (a system that enables user-space shadow
 * stacks needs it: the hand-made switch does not maintain them). Under ASan every switch
 * tells the sanitizer which stack runs next.
 */
#include "kernels/cuda/emu/cuda_emu.h"

#include <chrono>
#include <map>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
extern "C" void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
#else
#define EMU_ASAN 0
#endif

#if defined(__x86_64__) && !defined(CG_EMU_UCONTEXT)
#define EMU_FAST 1
/* cg_emu_switch(&save, load): push what the System V ABI says a call preserves (rbp, rbx,
 * r12-r15, the SSE and x87 control words), store the stack pointer in *save, load `load`
 * as the stack pointer and pop the same from it: the call returns in the other context. */
extern "C" void cg_emu_switch(void **save, void *load);
__asm__(".text\n"
        ".p2align 4\n"
        ".hidden cg_emu_switch\n"
        ".globl cg_emu_switch\n"
        ".type cg_emu_switch, @function\n"
        "cg_emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size cg_emu_switch, .-cg_emu_switch\n");
#else
#define EMU_FAST 0
#include <ucontext.h>
#endif

namespace cg_emu {

State g;

namespace {

const size_t kStack = 256 * 1024;
const int kMaxThreads = 1024;

/* A parked context: a stack pointer (x86-64) or a ucontext. */
#if EMU_FAST
typedef void *Ctx;
inline void switch_ctx(Ctx &save, Ctx &load) { cg_emu_switch(&save, load); }
#else
typedef ucontext_t Ctx;
inline void switch_ctx(Ctx &save, Ctx &load) { swapcontext(&save, &load); }
#endif

/* Plain arrays, never destroyed: the stacks stay reachable until exit (LeakSanitizer). */
Fiber g_fibers[kMaxThreads];
char *g_stacks[kMaxThreads];
Ctx g_ctx[kMaxThreads], g_sched;
const std::function<void()> *g_body;
std::map<const void *, int> g_max_smem;
std::vector<unsigned char> g_smem;
std::mutex g_launch_mu; /* one launch at a time, whatever the host thread */
#if EMU_ASAN
const void *g_sched_bottom;
size_t g_sched_size;
#endif

/* The two switches, with ASan told which stack runs next. */
void to_fiber(int i) {
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, g_stacks[i], kStack);
#endif
    switch_ctx(g_sched, g_ctx[i]);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

void to_scheduler(int i) {
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, g_sched_bottom, g_sched_size);
#endif
    switch_ctx(g_ctx[i], g_sched);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, &g_sched_bottom, &g_sched_size);
#endif
}

/* The current thread has run to its end. */
void thread_done() {
    Fiber *f = g.cur;
    f->done = true;
    g.live--;
    g.warp_live[f->warp]--;
    g.progress = true;
    /* threads that exited no longer hold back a block barrier (as on the hardware) */
    if (g.bar_arrived > 0 && g.bar_arrived == g.live) {
        g.bar_arrived = 0;
        g.bar_gen++;
    }
}

/* A fiber's life: run a thread, park, and when resumed (for the thread of the same index
 * in the next block, of this launch or a later one) run again. Fibers are made once. */
[[noreturn]] void fiber_main() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
    for (;;) {
        (*g_body)();
        thread_done();
        to_scheduler(g.cur->linear);
    }
}

/* Fiber i, whose first resumption enters fiber_main. On x86-64 its stack is laid out as
 * cg_emu_switch leaves a parked one: (from the top) a null return address for fiber_main,
 * fiber_main's address for the switch's ret, six zeroed registers, the default control
 * words (MXCSR 0x1f80: exceptions masked, round to nearest; x87 0x037f). */
void make_fiber(int i) {
    char *stack = (char *)malloc(kStack);
    if (!stack) fail("out of host memory for fiber stacks");
    g_stacks[i] = stack;
#if EMU_FAST
    uint64_t *sp = (uint64_t *)(((uintptr_t)stack + kStack) & ~(uintptr_t)15);
    *--sp = 0;
    *--sp = (uint64_t)(uintptr_t)&fiber_main;
    for (int r = 0; r < 6; r++) *--sp = 0;
    *--sp = 0x1f80u | ((uint64_t)0x037fu << 32);
    g_ctx[i] = sp;
#else
    getcontext(&g_ctx[i]);
    g_ctx[i].uc_stack.ss_sp = stack;
    g_ctx[i].uc_stack.ss_size = kStack;
    g_ctx[i].uc_link = nullptr; /* fiber_main never returns */
    makecontext(&g_ctx[i], fiber_main, 0);
#endif
}

void run_block(int n, bool reverse) {
    g.live = n;
    g.bar_arrived = 0;
    for (int w = 0; w < 32; w++) {
        g.warp_live[w] = 0;
        g.warp_arrived[w] = 0;
    }
    unsigned bx = g.block.x, by = g.block.y;
    for (int i = 0; i < n; i++) {
        Fiber &f = g_fibers[i];
        f.tid = {i % bx, (i / bx) % by, i / (bx * by)};
        f.linear = i;
        f.warp = i / 32;
        f.lane = i % 32;
        f.done = false;
        g.warp_live[f.warp]++;
        if (!g_stacks[i]) make_fiber(i);
    }
    while (g.live > 0) {
        g.progress = false;
        for (int k = 0; k < n; k++) {
            int i = reverse ? n - 1 - k : k;
            if (g_fibers[i].done) continue;
            g.cur = &g_fibers[i];
            to_fiber(i);
        }
        if (!g.progress && g.live > 0)
            fail("deadlock: a __syncthreads or warp-collective operation is not reached by every thread");
    }
    g.cur = nullptr;
}

} /* namespace */

void fail(const char *what) {
    fflush(stdout);
    fprintf(stderr, "calograd CUDA emulator: %s (block %u,%u,%u of grid %u,%u,%u; block size %u,%u,%u)\n", what,
            g.bidx.x, g.bidx.y, g.bidx.z, g.grid.x, g.grid.y, g.grid.z, g.block.x, g.block.y, g.block.z);
    abort();
}

void yield() { to_scheduler(g.cur->linear); }

void syncthreads() {
    if (!g.cur) fail("__syncthreads outside a kernel");
    unsigned gen = g.bar_gen;
    g.progress = true;
    if (++g.bar_arrived == g.live) {
        g.bar_arrived = 0;
        g.bar_gen++;
        return;
    }
    while (g.bar_gen == gen) yield();
}

void warp_barrier() {
    if (!g.cur) fail("warp operation outside a kernel");
    int w = g.cur->warp;
    if (g.warp_live[w] != 32) fail("warp-collective operation in a warp without 32 live lanes");
    unsigned gen = g.warp_gen[w];
    g.progress = true;
    if (++g.warp_arrived[w] == 32) {
        g.warp_arrived[w] = 0;
        g.warp_gen[w]++;
        return;
    }
    while (g.warp_gen[w] == gen) yield();
}

void set_max_dyn_smem(const void *kernel, int bytes) {
    std::lock_guard<std::mutex> lk(g_launch_mu);
    g_max_smem[kernel] = bytes;
}

void launch(const void *kernel, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    std::lock_guard<std::mutex> lk(g_launch_mu);
    long nthreads = (long)block.x * block.y * block.z;
    g.grid = grid;
    g.block = block;
    g.bidx = {0, 0, 0};
    if (grid.x < 1 || grid.y < 1 || grid.z < 1) fail("launch with an empty grid (invalid configuration)");
    if (grid.y > 65535 || grid.z > 65535) fail("grid y or z above 65535 (invalid configuration)");
    if (grid.x > 2147483647u) fail("grid x above 2^31-1 (invalid configuration)");
    if (nthreads < 1 || nthreads > kMaxThreads || block.z > 64)
        fail("block with no threads or more than 1024 (invalid configuration)");
    if (smem > 48 * 1024) {
        auto it = g_max_smem.find(kernel);
        if (it == g_max_smem.end() || (size_t)it->second < smem)
            fail("dynamic shared memory above 48 KB without cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
    }
    if (smem > 227 * 1024) fail("dynamic shared memory above the 227 KB a block can have");
    g_smem.assign(smem ? smem : 16, 0xff); /* poison: unwritten shared memory reads as NaN */
    g.dyn_smem = g_smem.data();
    g.dyn_smem_bytes = smem;
    g_body = &body;
    unsigned long nb = 0;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++, nb++) {
                g.bidx = {x, y, z};
                memset(g_smem.data(), 0xff, g_smem.size());
                run_block((int)nthreads, nb & 1);
            }
    g_body = nullptr;
}

/* ---------------------------------------------------------- tensor cores ---- */

namespace {
struct Frags { uint32_t w[32]; };
float tf32_val(uint32_t u) { return __uint_as_float(u & 0xffffe000u); }
float bf16_val(uint32_t word, int high) { return __uint_as_float((high ? word >> 16 : word & 0xffffu) << 16); }

/* Every lane's fragments: af (MI·4 words) then bf (NI·2 words). */
void gather_frags(const uint32_t *af, const uint32_t *bf, int MI, int NI, Frags (&all)[32]) {
    if (MI * 4 + NI * 2 > 32) fail("mma tile too large for the emulator's exchange buffer");
    Frags mine;
    memcpy(mine.w, af, (size_t)MI * 4 * sizeof(uint32_t));
    memcpy(mine.w + MI * 4, bf, (size_t)NI * 2 * sizeof(uint32_t));
    gather(mine, all);
}
} /* namespace */

/* mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, lane = 4·group + t:
 * A (16x8): a0 (group, t), a1 (group+8, t), a2 (group, t+4), a3 (group+8, t+4);
 * B (8x8):  b0 (t, group), b1 (t+4, group);  C/D: (group + 8·(q/2), 2t + q%2). */
void mma_tile_tf32(float *acc, const uint32_t *af, const uint32_t *bf, int MI, int NI) {
    Frags all[32]; /* on the fiber stack: every lane has its own copy */
    gather_frags(af, bf, MI, NI, all);
    int lane = g.cur->lane, grp = lane / 4, t = lane % 4;
    for (int mi = 0; mi < MI; mi++)
        for (int ni = 0; ni < NI; ni++)
            for (int q = 0; q < 4; q++) {
                int row = grp + 8 * (q >> 1), col = 2 * t + (q & 1);
                float s = acc[(mi * NI + ni) * 4 + q];
                for (int k = 0; k < 8; k++) {
                    float av = tf32_val(all[(row % 8) * 4 + k % 4].w[mi * 4 + row / 8 + 2 * (k / 4)]);
                    float bv = tf32_val(all[col * 4 + k % 4].w[MI * 4 + ni * 2 + k / 4]);
                    s += av * bv;
                }
                acc[(mi * NI + ni) * 4 + q] = s;
            }
}

/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: a register holds two bf16 of
 * consecutive k, the lower k in the low half. A (16x16): a0 (group, 2t..2t+1),
 * a1 (group+8, 2t..), a2 (group, 2t+8..), a3 (group+8, 2t+8..); B (16x8): b0 (2t..2t+1,
 * group), b1 (2t+8.., group); C/D as for tf32. */
void mma_tile_bf16(float *acc, const uint32_t *af, const uint32_t *bf, int MI, int NI) {
    Frags all[32]; /* on the fiber stack: every lane has its own copy */
    gather_frags(af, bf, MI, NI, all);
    int lane = g.cur->lane, grp = lane / 4, t = lane % 4;
    for (int mi = 0; mi < MI; mi++)
        for (int ni = 0; ni < NI; ni++)
            for (int q = 0; q < 4; q++) {
                int row = grp + 8 * (q >> 1), col = 2 * t + (q & 1);
                float s = acc[(mi * NI + ni) * 4 + q];
                for (int k = 0; k < 16; k++) {
                    float av = bf16_val(all[(row % 8) * 4 + (k % 8) / 2].w[mi * 4 + row / 8 + 2 * (k / 8)], k % 2);
                    float bv = bf16_val(all[col * 4 + (k % 8) / 2].w[MI * 4 + ni * 2 + k / 8], k % 2);
                    s += av * bv;
                }
                acc[(mi * NI + ni) * 4 + q] = s;
            }
}

} /* namespace cg_emu */

/* ------------------------------------------------------------ runtime API ---- */

namespace {
thread_local cudaError_t t_last = cudaSuccess;
std::mutex g_mem_mu;
std::map<void *, size_t> g_allocs;
size_t g_in_use;

cudaError_t ret(cudaError_t e) {
    if (e != cudaSuccess) t_last = e;
    return e;
}
size_t mem_limit() {
    const char *e = getenv("CG_EMU_MEM_LIMIT");
    return e ? (size_t)strtoull(e, nullptr, 0) : (size_t)16 << 30;
}
double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}
} /* namespace */

struct cg_emu_stream { int unused; };
struct cg_emu_event { double t; };

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    default: return "cudaErrorUnknown";
    }
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "emulated CUDA error";
    }
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last; }
cudaError_t cudaGetDeviceCount(int *n) {
    const char *e = getenv("CG_EMU_NO_DEVICE");
    if (e && *e == '1') {
        *n = 0;
        return ret(cudaErrorNoDevice);
    }
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : ret(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return ret(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "calograd CUDA emulator (CPU)");
    p->totalGlobalMem = mem_limit();
    p->sharedMemPerBlock = 48 * 1024;
    p->sharedMemPerBlockOptin = 227 * 1024;
    p->multiProcessorCount = 132;
    p->major = 9;
    p->minor = 0;
    p->l2CacheSize = 50 << 20;
    p->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t bytes) {
    std::lock_guard<std::mutex> lk(g_mem_mu);
    *p = nullptr;
    if (bytes == 0) bytes = 1;
    if (g_in_use + bytes > mem_limit()) return ret(cudaErrorMemoryAllocation);
    void *q = aligned_alloc(256, (bytes + 255) & ~(size_t)255);
    if (!q) return ret(cudaErrorMemoryAllocation);
    memset(q, 0xff, bytes); /* poison: fresh device memory reads as NaN */
    g_allocs[q] = bytes;
    g_in_use += bytes;
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> lk(g_mem_mu);
    auto it = g_allocs.find(p);
    if (it == g_allocs.end()) return ret(cudaErrorInvalidValue);
    g_in_use -= it->second;
    g_allocs.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    std::lock_guard<std::mutex> lk(g_mem_mu);
    *total_b = mem_limit();
    *free_b = *total_b - g_in_use;
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t s) {
    (void)k; (void)s;
    if (bytes) memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind k) {
    return cudaMemcpyAsync(dst, src, bytes, k, nullptr);
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s) {
    (void)s;
    if (bytes) memset(dst, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = new cg_emu_stream();
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)s; (void)e; (void)flags;
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    *e = new cg_emu_event();
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    e->t = now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    (void)e;
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(b->t - a->t);
    return cudaSuccess;
}
