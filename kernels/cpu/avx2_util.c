/*
 * kernels/cpu/avx2_util.c — the scratch-buffer cache of avx2_util.h.
 *
 * A few slots, each holding one buffer; a caller takes the smallest free buffer that is
 * large enough, else grows a free one, else allocates an uncached buffer that put() frees.
 * Buffers stay allocated (and reachable) for the life of the process, so steady-state
 * training steps allocate nothing.
 */
#include <pthread.h>
#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/avx2_util.h"

#define SLOTS 8

static struct {
    void *p;
    size_t size;
    int busy;
} g_slot[SLOTS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void *alloc64(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    CG_ASSERT_MSG(p != NULL, "out of memory for an AVX2 kernel's scratch buffer");
    return p;
}

void *cg_avx2_scratch_get(size_t bytes) {
    if (bytes == 0) bytes = 64;
    pthread_mutex_lock(&g_mu);
    int best = -1, any = -1;
    for (int i = 0; i < SLOTS; i++) {
        if (g_slot[i].busy) continue;
        if (g_slot[i].size >= bytes && (best < 0 || g_slot[i].size < g_slot[best].size)) best = i;
        if (any < 0 || g_slot[i].size > g_slot[any].size) any = i;
    }
    void *p = NULL;
    if (best >= 0) {
        g_slot[best].busy = 1;
        p = g_slot[best].p;
    } else if (any >= 0) {
        free(g_slot[any].p);
        g_slot[any].p = alloc64(bytes);
        g_slot[any].size = bytes;
        g_slot[any].busy = 1;
        p = g_slot[any].p;
    }
    pthread_mutex_unlock(&g_mu);
    return p ? p : alloc64(bytes);
}

void cg_avx2_scratch_put(void *p) {
    if (!p) return;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < SLOTS; i++)
        if (g_slot[i].p == p) {
            g_slot[i].busy = 0;
            pthread_mutex_unlock(&g_mu);
            return;
        }
    pthread_mutex_unlock(&g_mu);
    free(p); /* an uncached buffer */
}
