/*
 * core/backend.c — which kernel table serves which device.
 *
 * The CPU tables come from kernels/cpu/backend_cpu.c. The CUDA table comes from
 * kernels/cuda/ and exists only in builds with CUDA (CG_HAVE_CUDA); it reports NULL when no
 * GPU is present, so a CUDA build still runs everywhere. This is the single place where
 * the build's CUDA choice shows up in C code.
 */
#include "core/backend.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

/* kernels/cpu/backend_cpu.c */
const cg_backend *cg_cpu_ref_backend(void);
const cg_backend *cg_cpu_dispatch_backend(void);
const cg_backend *cg_cpu_avx2_backend(void); /* NULL when the CPU lacks AVX2+FMA */
#ifdef CG_HAVE_CUDA
/* kernels/cuda/backend_cuda.cu: NULL when no GPU is usable */
const cg_backend *cg_cuda_backend(void);
#endif

static const cg_backend *g_cuda, *g_cuda_override;
static pthread_once_t g_cuda_once = PTHREAD_ONCE_INIT;
static void probe_cuda(void) {
#ifdef CG_HAVE_CUDA
    g_cuda = cg_cuda_backend();
#endif
}

const cg_backend *cg_backend_get(cg_device dev) {
    switch (dev) {
    case CG_CPU: return cg_cpu_dispatch_backend();
    case CG_CUDA:
        if (g_cuda_override) return g_cuda_override;
        pthread_once(&g_cuda_once, probe_cuda);
        return g_cuda;
    default: return NULL;
    }
}

const cg_backend *cg_backend_cpu_ref(void) { return cg_cpu_ref_backend(); }

int cg_backend_list(const cg_backend **out, int max) {
    int n = 0;
    if (n < max) out[n++] = cg_cpu_ref_backend();
    const cg_backend *avx2 = cg_cpu_avx2_backend();
    if (avx2 && n < max) out[n++] = avx2;
    const cg_backend *cuda = cg_backend_get(CG_CUDA);
    if (cuda && n < max) out[n++] = cuda;
    return n;
}

int cg_device_available(cg_device dev) { return cg_backend_get(dev) != NULL; }

const char *cg_device_name(cg_device dev) {
    switch (dev) {
    case CG_CPU: return "cpu";
    case CG_CUDA: return "cuda";
    default: return "unknown";
    }
}

void cg_backend_override_cuda(const cg_backend *table) { g_cuda_override = table; }

static _Thread_local cg_math_mode g_math = CG_MATH_FP32;
cg_math_mode cg_get_math_mode(void) { return g_math; }
cg_math_mode cg_set_math_mode(cg_math_mode m) {
    cg_math_mode prev = g_math;
    g_math = m;
    return prev;
}

static const char *const MATH_NAMES[] = {"fp32", "tf32", "bf16"};
const char *cg_math_mode_name(cg_math_mode m) {
    return (unsigned)m < sizeof MATH_NAMES / sizeof MATH_NAMES[0] ? MATH_NAMES[m] : "unknown";
}
int cg_math_mode_parse(const char *s) {
    for (int i = 0; s && i < (int)(sizeof MATH_NAMES / sizeof MATH_NAMES[0]); i++)
        if (strcmp(s, MATH_NAMES[i]) == 0) return i;
    return -1;
}
