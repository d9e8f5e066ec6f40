/*
 * kernels/cuda/cuda.h — the CUDA backend's C API beyond the kernel table: device facts, the
 * caching allocator's counters, and streams. For tests, benchmarks and tools; models never
 * need it (they use cg_to / cg_tensor_move_ and the table).
 *
 * Every function is safe to call when no GPU is present: it then reports zeros, NULL or
 * does nothing. In the CPU emulator build (kernels/cuda/emu/) every name below gets an
 * "_emu" suffix, so the emulated backend links next to the real one.
 *
 * Streams. Each host thread issues its work to one stream: the backend's default compute
 * stream unless cg_cuda_set_stream() picked another. The allocator hands a freed block
 * only to later work on the stream it was allocated on, so stream order alone makes reuse
 * safe; blocks of another stream are reused only after cg_cuda_empty_cache().
 */
#ifndef CG_KERNELS_CUDA_H
#define CG_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

#ifdef CG_CUDA_EMU
#define cg_cuda_backend cg_cuda_backend_emu
#define cg_cuda_unavailable_reason cg_cuda_unavailable_reason_emu
#define cg_cuda_device_name cg_cuda_device_name_emu
#define cg_cuda_sm_count cg_cuda_sm_count_emu
#define cg_cuda_mem_stats_get cg_cuda_mem_stats_get_emu
#define cg_cuda_empty_cache cg_cuda_empty_cache_emu
#define cg_cuda_stream_new cg_cuda_stream_new_emu
#define cg_cuda_stream_free cg_cuda_stream_free_emu
#define cg_cuda_set_stream cg_cuda_set_stream_emu
#define cg_cuda_stream_handle cg_cuda_stream_handle_emu
#define cg_cuda_curand_reference cg_cuda_curand_reference_emu
#define cg_cuda_timer_new cg_cuda_timer_new_emu
#define cg_cuda_timer_free cg_cuda_timer_free_emu
#define cg_cuda_timer_start cg_cuda_timer_start_emu
#define cg_cuda_timer_stop cg_cuda_timer_stop_emu
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The kernel table, or NULL when no usable GPU is present (see the reason below). */
const cg_backend *cg_cuda_backend(void);
/* Why cg_cuda_backend() is NULL ("" when it is not, or before the first call). */
const char *cg_cuda_unavailable_reason(void);

/* The GPU's name and multiprocessor count ("", 0 without one). */
const char *cg_cuda_device_name(void);
int cg_cuda_sm_count(void);

typedef struct {
    uint64_t malloc_calls;    /* cudaMalloc calls so far: flat once a training loop is warm */
    uint64_t free_calls;      /* cudaFree calls so far (cache trims) */
    uint64_t requests;        /* allocations the backend served (cached or not) */
    size_t bytes_in_use;      /* handed out and not yet freed */
    size_t bytes_cached;      /* freed, kept for reuse */
    size_t bytes_peak;        /* peak of in_use + cached */
} cg_cuda_mem_stats;

void cg_cuda_mem_stats_get(cg_cuda_mem_stats *out);
/* Wait for the GPU, then return every cached block to the driver. */
void cg_cuda_empty_cache(void);

/* Streams: new ones are non-blocking with respect to the legacy default stream. */
typedef struct cg_cuda_stream cg_cuda_stream;
cg_cuda_stream *cg_cuda_stream_new(void);     /* NULL without a GPU */
void cg_cuda_stream_free(cg_cuda_stream *s);  /* synchronises it first */
/* Make s this thread's stream (NULL: the default compute stream); returns the previous
 * one. The table's sync entry waits for this thread's stream. */
cg_cuda_stream *cg_cuda_set_stream(cg_cuda_stream *s);
/* The cudaStream_t behind s (NULL: the default compute stream), for events in benches. */
void *cg_cuda_stream_handle(cg_cuda_stream *s);

/* GPU time on this thread's stream, between two CUDA events (benchmarks). */
typedef struct cg_cuda_timer cg_cuda_timer;
cg_cuda_timer *cg_cuda_timer_new(void);            /* NULL without a GPU */
void cg_cuda_timer_free(cg_cuda_timer *t);
void cg_cuda_timer_start(cg_cuda_timer *t);        /* records the start event */
float cg_cuda_timer_stop(cg_cuda_timer *t);        /* records the end, waits: ms between */

/* Test hook: fill the device buffer out with n uniform floats drawn the documented way
 * with cuRAND's stateful device API (curand_init(seed, 0, 4*counter) then curand()),
 * one thread per element. rand_uniform must give the same bits. */
void cg_cuda_curand_reference(float *out, int64_t n, uint64_t seed, uint64_t counter);

#ifdef __cplusplus
}
#endif

#endif
