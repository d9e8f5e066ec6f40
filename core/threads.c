/*
 * core/threads.c — a fixed pool of pthreads with one job slot.
 *
 * A job is (fn, ctx, n, chunk). Workers and the caller take chunks from an atomic counter
 * until none is left; the caller then waits for the last chunk to finish. Only one job runs
 * at a time; a second caller finds the pool busy (trylock) and runs its work serially.
 *
 * Waking a sleeping thread costs tens of microseconds, as much as a small kernel's whole
 * work, and kernels call the pool several times in a row. So a worker that finishes a job
 * spins for up to SPIN_US microseconds watching for the next one before it sleeps on the
 * condition variable, and the caller spins as long for the last chunk before it sleeps.
 */
#include "core/threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

#define MAX_THREADS 256
#define SPIN_US 50.0 /* spin this long for the next job (workers) or the last chunk (caller) */

static struct {
    pthread_mutex_t busy;      /* held by the thread that owns the current job */
    pthread_mutex_t mu;        /* guards the fields below */
    pthread_cond_t wake, done;
    pthread_t tid[MAX_THREADS];
    int nworkers;              /* threads started (not counting callers) */
    int want;                  /* requested size, 0 = default */
    atomic_ullong generation;  /* bumped for every job (after the job fields are set) */
    atomic_int stop;
    uint64_t start_gen;        /* the generation when the workers were started */
    int sleepers;              /* workers waiting on `wake` (guarded by mu) */
    int caller_waiting;        /* the caller waits on `done` (guarded by mu) */
    /* the job */
    cg_range_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next;         /* next chunk index */
    atomic_int active;         /* workers still inside the job */
} P = {.busy = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static _Thread_local int t_in_pool; /* set inside pool tasks: nested calls run serially */

int cg_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > MAX_THREADS ? MAX_THREADS : n) : 1;
}

int cg_threads_get(void) {
    int want = P.want;
    if (want <= 0) {
        const char *env = getenv("CG_THREADS");
        int e = env ? atoi(env) : 0;
        want = e > 0 ? e : cg_cpu_count();
    }
    return want > MAX_THREADS ? MAX_THREADS : want;
}

void cg_threads_set(int n) { P.want = n; }

static void run_chunks(int worker) {
    int64_t nchunks = (P.n + P.chunk - 1) / P.chunk;
    for (;;) {
        int64_t c = atomic_fetch_add(&P.next, 1);
        if (c >= nchunks) break;
        int64_t b = c * P.chunk, e = b + P.chunk < P.n ? b + P.chunk : P.n;
        P.fn(P.ctx, b, e, worker);
    }
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e6 * (double)t.tv_sec + 1e-3 * (double)t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin for up to SPIN_US until *gen != seen (or stop); returns whether that happened. */
static int spin_for_job(uint64_t seen) {
    double t0 = 0;
    for (int i = 0;; i++) {
        if (atomic_load(&P.stop) || atomic_load(&P.generation) != seen) return 1;
        if ((i & 63) == 63) {
            double t = now_us();
            if (t0 == 0) t0 = t;
            else if (t - t0 > SPIN_US) return 0;
        }
        cpu_relax();
    }
}

/* Spin for up to SPIN_US until no worker is inside the job; returns whether none is. */
static int spin_for_done(void) {
    double t0 = 0;
    for (int i = 0;; i++) {
        if (atomic_load(&P.active) == 0) return 1;
        if ((i & 63) == 63) {
            double t = now_us();
            if (t0 == 0) t0 = t;
            else if (t - t0 > SPIN_US) return 0;
        }
        cpu_relax();
    }
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg; /* workers are 1..nworkers; the caller is 0 */
    uint64_t seen = P.start_gen;  /* jobs before this worker existed are not its own */
    t_in_pool = 1;
    for (;;) {
        /* the next job: spin a little, then sleep */
        if (!spin_for_job(seen)) {
            pthread_mutex_lock(&P.mu);
            while (!atomic_load(&P.stop) && atomic_load(&P.generation) == seen) {
                P.sleepers++;
                pthread_cond_wait(&P.wake, &P.mu);
                P.sleepers--;
            }
            pthread_mutex_unlock(&P.mu);
        }
        if (atomic_load(&P.stop)) break;
        seen = atomic_load(&P.generation);
        run_chunks(id);
        if (atomic_fetch_sub(&P.active, 1) == 1) {
            pthread_mutex_lock(&P.mu);
            if (P.caller_waiting) pthread_cond_signal(&P.done);
            pthread_mutex_unlock(&P.mu);
        }
    }
    return NULL;
}

static void ensure_workers(int nthreads) {
    /* Restart the pool when the requested size changed. */
    if (P.nworkers == nthreads - 1) return;
    cg_threads_shutdown();
    P.start_gen = atomic_load(&P.generation); /* read by the workers after pthread_create */
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&P.tid[i - 1], NULL, worker_main, (void *)(intptr_t)i) != 0) break;
        P.nworkers++;
    }
}

void cg_threads_shutdown(void) {
    pthread_mutex_lock(&P.mu);
    atomic_store(&P.stop, 1);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < P.nworkers; i++) pthread_join(P.tid[i], NULL);
    P.nworkers = 0;
    atomic_store(&P.stop, 0);
}

static void at_exit_shutdown(void) {
    if (pthread_mutex_trylock(&P.busy) == 0) {
        cg_threads_shutdown();
        pthread_mutex_unlock(&P.busy);
    }
}

void cg_parallel_for(int64_t n, int64_t grain, cg_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int nt = cg_threads_get();
    if (nt <= 1 || n <= grain || t_in_pool || pthread_mutex_trylock(&P.busy) != 0) {
        fn(ctx, 0, n, 0);
        return;
    }
    static int registered;
    if (!registered) { registered = 1; atexit(at_exit_shutdown); }
    ensure_workers(nt);
    /* About 4 chunks per thread balances uneven chunks without much overhead. */
    int64_t chunk = (n + 4 * (int64_t)nt - 1) / (4 * (int64_t)nt);
    if (chunk < grain) chunk = grain;

    /* Publish the job (the atomic increment orders the fields before it), then wake the
     * workers that went to sleep; one checking `generation` under mu either sees the new
     * value or is counted in `sleepers` by the time the caller takes mu. */
    P.fn = fn; P.ctx = ctx; P.n = n; P.chunk = chunk;
    atomic_store(&P.next, 0);
    atomic_store(&P.active, P.nworkers);
    atomic_fetch_add(&P.generation, 1);
    pthread_mutex_lock(&P.mu);
    if (P.sleepers) pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);

    t_in_pool = 1;
    run_chunks(0);
    t_in_pool = 0;

    if (!spin_for_done()) {
        pthread_mutex_lock(&P.mu);
        P.caller_waiting = 1;
        while (atomic_load(&P.active) > 0) pthread_cond_wait(&P.done, &P.mu);
        P.caller_waiting = 0;
        pthread_mutex_unlock(&P.mu);
    }
    pthread_mutex_unlock(&P.busy);
}
