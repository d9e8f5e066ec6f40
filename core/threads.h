/*
 * core/threads.h — one small thread pool for the whole library.
 *
 * cg_parallel_for(n, grain, fn, ctx) splits [0, n) into chunks of at least `grain` items
 * and runs fn(ctx, begin, end, worker) on the pool; the calling thread works too.
 *
 * Oversubscription rules (the pool never multiplies threads):
 *  - a call made from inside a pool task runs serially on that thread;
 *  - a call made while another thread is using the pool runs serially on the caller;
 *  - the size is all online cores by default, or CG_THREADS=N from the environment, or
 *    cg_threads_set(N) (the CLI's --threads N). A program that runs its own threads
 *    should call cg_threads_set(1) or export CG_THREADS=1.
 * `worker` is in [0, cg_threads_get()) and is unique among concurrently running chunks, so
 * it can index per-thread scratch space.
 */
#ifndef CG_THREADS_H
#define CG_THREADS_H

#include <stdint.h>

typedef void (*cg_range_fn)(void *ctx, int64_t begin, int64_t end, int worker);

int cg_threads_get(void);
/* n <= 0 means all online cores. Takes effect at the next parallel call. */
void cg_threads_set(int n);
int cg_cpu_count(void);

void cg_parallel_for(int64_t n, int64_t grain, cg_range_fn fn, void *ctx);

/* Stop the pool's threads (the pool restarts on the next call). Called at exit. */
void cg_threads_shutdown(void);

#endif
