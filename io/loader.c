/*
 * io/loader.c — the minibatch loader and the data transforms (API and semantics in
 * io/loader.h).
 *
 * A producer thread runs epoch after epoch: it draws the epoch's plan (chunk order, then
 * windows of chunks within the memory budget, then an event order within each window),
 * decompresses a window's chunks, densifies events batch by batch into a ring of slots and
 * marks the end of each epoch with a special slot. The consumer (cg_loader_next, on the
 * caller's thread, which also owns any device context) turns a ready slot into tensors. A
 * batch that straddles two windows takes its first events from a small carry buffer, so
 * that every batch but an epoch's last has batch_size events.
 *
 * The plan depends only on (seed, epoch, options, file): nothing depends on timing or on
 * the thread count. An error in the producer (a corrupted chunk) travels through the ring
 * as an error slot, so the consumer reports it in order, on its own thread.
 */
#include "io/loader.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- transforms ---- */

cg_status cg_transform_check(const cg_transform *t, const cg_cvox_info *info) {
    if (!(t->threshold >= 0) || !isfinite(t->threshold))
        return cg_set_error(CG_ERR_INVALID, "transform: threshold %g must be >= 0", (double)t->threshold);
    if (t->ncalib != 0 && t->ncalib != info->geom.nlayers)
        return cg_set_error(CG_ERR_INVALID, "transform: %d calibration factors for a geometry of %d layers",
                            t->ncalib, info->geom.nlayers);
    for (int l = 0; l < t->ncalib; l++)
        if (!(t->calib[l] > 0) || !isfinite(t->calib[l]))
            return cg_set_error(CG_ERR_INVALID, "transform: calibration factor %g of layer %d must be > 0",
                                (double)t->calib[l], l);
    if (!isfinite(t->scale))
        return cg_set_error(CG_ERR_INVALID, "transform: scale %g is not finite", (double)t->scale);
    if (t->norm_energy && cg_cvox_cond_index(info, "energy") < 0 &&
        (cg_cvox_cond_index(info, "px") < 0 || cg_cvox_cond_index(info, "py") < 0 || cg_cvox_cond_index(info, "pz") < 0))
        return cg_set_error(CG_ERR_INVALID, "transform: normalising by the incident energy needs an 'energy' (or "
                            "px, py, pz) conditioning value, and the file has none");
    switch (t->kind) {
    case CG_XFORM_NONE: break;
    case CG_XFORM_LOG:
        if (!(t->eps > 0)) return cg_set_error(CG_ERR_INVALID, "transform log(x + eps): eps %g must be > 0", (double)t->eps);
        break;
    case CG_XFORM_POW:
        if (!(t->power > 0) || !isfinite(t->power))
            return cg_set_error(CG_ERR_INVALID, "transform x^p: p %g must be > 0", (double)t->power);
        break;
    case CG_XFORM_BOXCOX:
        if (!isfinite(t->power) || !(t->eps >= 0) || (t->power <= 0 && !(t->eps > 0)))
            return cg_set_error(CG_ERR_INVALID, "transform box-cox: lambda %g, eps %g (need eps > 0 when lambda <= 0)",
                                (double)t->power, (double)t->eps);
        break;
    default: return cg_set_error(CG_ERR_INVALID, "transform: unknown kind %d", (int)t->kind);
    }
    return CG_OK;
}

int cg_energy_from_cond(const cg_cvox_info *info, const float *cond, int64_t n, float *energy) {
    int ie = cg_cvox_cond_index(info, "energy");
    int ix = cg_cvox_cond_index(info, "px"), iy = cg_cvox_cond_index(info, "py"), iz = cg_cvox_cond_index(info, "pz");
    if (ie < 0 && (ix < 0 || iy < 0 || iz < 0)) return -1;
    for (int64_t e = 0; e < n; e++) {
        const float *c = cond + e * info->ncond;
        energy[e] = ie >= 0 ? c[ie] : sqrtf(c[ix] * c[ix] + c[iy] * c[iy] + c[iz] * c[iz]);
    }
    return 0;
}

static float fwd_point(const cg_transform *t, float v) {
    switch (t->kind) {
    case CG_XFORM_LOG: return logf(v + t->eps);
    case CG_XFORM_POW: return v >= 0 ? powf(v, t->power) : -powf(-v, t->power);
    case CG_XFORM_BOXCOX:
        return t->power == 0 ? logf(v + t->eps) : (powf(v + t->eps, t->power) - 1.0f) / t->power;
    default: return v;
    }
}

static float inv_point(const cg_transform *t, float y) {
    switch (t->kind) {
    case CG_XFORM_LOG: return fmaxf(expf(y) - t->eps, 0.0f);
    case CG_XFORM_POW: return y >= 0 ? powf(y, 1.0f / t->power) : -powf(-y, 1.0f / t->power);
    case CG_XFORM_BOXCOX: {
        if (t->power == 0) return fmaxf(expf(y) - t->eps, 0.0f);
        float b = t->power * y + 1.0f;
        return fmaxf((b > 0 ? powf(b, 1.0f / t->power) : 0.0f) - t->eps, 0.0f);
    }
    default: return y;
    }
}

/* One shower, in place; E in GeV (ignored unless norm_energy). */
static void apply_one(const cg_transform *t, const cg_geometry *g, float *x, float E) {
    const float scale = t->scale != 0 ? t->scale : 1.0f;
    const float norm = t->norm_energy && E > 0 ? 1.0f / E : 1.0f;
    for (int l = 0; l < g->nlayers; l++) {
        const float f = (t->ncalib ? t->calib[l] : 1.0f) * norm * scale;
        for (int64_t i = g->layer_offset[l]; i < g->layer_offset[l + 1]; i++) {
            float v = x[i];
            if (t->threshold > 0 && v < t->threshold) v = 0;
            x[i] = fwd_point(t, v * f);
        }
    }
}

static void invert_one(const cg_transform *t, const cg_geometry *g, float *x, float E) {
    const float scale = t->scale != 0 ? t->scale : 1.0f;
    const float norm = t->norm_energy && E > 0 ? E : 1.0f;
    for (int l = 0; l < g->nlayers; l++) {
        const float f = norm / ((t->ncalib ? t->calib[l] : 1.0f) * scale);
        for (int64_t i = g->layer_offset[l]; i < g->layer_offset[l + 1]; i++) {
            float v = inv_point(t, x[i]) * f;
            x[i] = t->threshold > 0 && v < t->threshold ? 0.0f : v;
        }
    }
}

void cg_transform_apply(const cg_transform *t, const cg_geometry *g, float *x, int64_t n, const float *energy) {
    for (int64_t e = 0; e < n; e++) apply_one(t, g, x + e * g->ncells, energy ? energy[e] : 0);
}

void cg_transform_invert(const cg_transform *t, const cg_geometry *g, float *x, int64_t n, const float *energy) {
    for (int64_t e = 0; e < n; e++) invert_one(t, g, x + e * g->ncells, energy ? energy[e] : 0);
}

cg_status cg_transform_invert_tensor(const cg_transform *t, const cg_geometry *g, cg_tensor *x, int64_t n,
                                     const float *energy) {
    if (!x || !cg_is_contiguous(x) || cg_numel(x) != n * g->ncells)
        return cg_set_error(CG_ERR_INVALID, "transform: expected a contiguous tensor of %lld x %lld values",
                            (long long)n, (long long)g->ncells);
    if (t->norm_energy && !energy)
        return cg_set_error(CG_ERR_INVALID, "transform: normalised by the incident energy, but no energies given");
    float *h = cg_tensor_host_copy(x);
    if (!h) return cg_last_status() ? cg_last_status() : cg_set_error(CG_ERR_NOMEM, "transform: out of memory");
    cg_transform_invert(t, g, h, n, energy);
    cg_status st = cg_tensor_set_host(x, h);
    free(h);
    return st;
}

/* -------------------------------------------------------------------- loader ---- */

typedef struct {
    int64_t chunk, lo, hi; /* events [lo, hi) of the chunk (relative to its first) */
    int64_t bytes;         /* memory the decompressed chunk takes */
} block;

typedef enum { SLOT_FREE = 0, SLOT_BATCH, SLOT_END, SLOT_ERROR } slot_kind;

typedef struct {
    slot_kind kind;
    int64_t n;
    float *x, *c;
    cg_status st;
    char err[1024];
} slot;

struct cg_loader {
    cg_loader_opts o;
    char cond_spec[512];
    cg_cvox_reader *r;
    cg_cvox_info info;
    int nsel, sel[CG_CVOX_MAX_COND];
    int64_t first, count, nbatches;
    block *blocks;
    int64_t nblocks, budget;
    /* the ring */
    slot *slots;
    int nslots, head, tail;
    pthread_t thread;
    int running;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t ready, freed;
    int64_t epoch;         /* the consumer's epoch */
    int64_t start_epoch;   /* where the producer started */
    int failed;
    cg_status fail_st;
    char fail_msg[1024];
    /* producer scratch */
    float *carry_x, *carry_c, *row_cond;
    int64_t ncarry;
};

void cg_loader_defaults(cg_loader_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch_size = 64;
    o->device = CG_CPU;
    o->transform.scale = 1.0f;
}

/* Wait for the slot at tail to be free; NULL when asked to stop. */
static slot *acquire(cg_loader *l) {
    pthread_mutex_lock(&l->mu);
    while (l->slots[l->tail].kind != SLOT_FREE && !atomic_load(&l->stop)) pthread_cond_wait(&l->freed, &l->mu);
    slot *s = atomic_load(&l->stop) ? NULL : &l->slots[l->tail];
    pthread_mutex_unlock(&l->mu);
    return s;
}

static void publish(cg_loader *l, slot *s, slot_kind kind) {
    pthread_mutex_lock(&l->mu);
    s->kind = kind;
    l->tail = (l->tail + 1) % l->nslots;
    pthread_cond_signal(&l->ready);
    pthread_mutex_unlock(&l->mu);
}

static void post_error(cg_loader *l) {
    slot *s = acquire(l);
    if (!s) return;
    s->st = cg_last_status() ? cg_last_status() : CG_ERR_IO;
    snprintf(s->err, sizeof s->err, "%s", cg_last_error());
    publish(l, s, SLOT_ERROR);
}

/* Densify event k of chunk c into x (ncells) and the selected conditioning into cx, then
 * transform x. */
static cg_status load_event(cg_loader *l, const cg_cvox_chunk *c, int64_t k, float *x, float *cx) {
    cg_status st = cg_cvox_chunk_event(c, k, x, l->row_cond);
    if (st) return st;
    for (int i = 0; i < l->nsel; i++) cx[i] = l->row_cond[l->sel[i]];
    float E = 0;
    if (l->o.transform.norm_energy) cg_energy_from_cond(&l->info, l->row_cond, 1, &E);
    apply_one(&l->o.transform, &l->info.geom, x, E);
    return CG_OK;
}

typedef struct { const cg_cvox_chunk *c; int64_t k; } event_ref;

/* One epoch. Returns 0 when done, -1 on stop or error (an error slot was posted). */
static int run_epoch(cg_loader *l, int64_t epoch, event_ref **prefs, int64_t *refs_cap, cg_cvox_chunk **loaded,
                     int64_t *order) {
    const int64_t B = l->o.batch_size, nc = l->info.geom.ncells;
    const int nsel = l->nsel;
    cg_rng rng = cg_rng_make(l->o.seed);
    rng.counter = (uint64_t)epoch << 40; /* each epoch its own part of the stream */
    for (int64_t i = 0; i < l->nblocks; i++) order[i] = i;
    if (l->o.shuffle)
        for (int64_t i = l->nblocks - 1; i > 0; i--) {
            int64_t j = (int64_t)cg_rng_below(&rng, (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    l->ncarry = 0;
    for (int64_t i = 0; i < l->nblocks;) {
        /* a window: at least one chunk, then as many as fit the budget */
        int64_t j = i, bytes = 0, m = 0, wn = 0;
        do {
            bytes += l->blocks[order[j]].bytes;
            wn += l->blocks[order[j]].hi - l->blocks[order[j]].lo;
            j++;
        } while (j < l->nblocks && bytes + l->blocks[order[j]].bytes <= l->budget);
        if (wn > *refs_cap) {
            event_ref *nr = realloc(*prefs, (size_t)wn * sizeof *nr);
            if (!nr) {
                cg_set_error(CG_ERR_NOMEM, "loader: out of memory for a window of %lld events", (long long)wn);
                post_error(l);
                return -1;
            }
            *prefs = nr;
            *refs_cap = wn;
        }
        event_ref *refs = *prefs;
        for (int64_t w = i; w < j; w++) {
            const block *b = &l->blocks[order[w]];
            loaded[w - i] = cg_cvox_chunk_load(l->r, b->chunk);
            if (!loaded[w - i]) {
                for (int64_t v = i; v < w; v++) cg_cvox_chunk_free(loaded[v - i]);
                post_error(l);
                return -1;
            }
            for (int64_t k = b->lo; k < b->hi; k++) refs[m++] = (event_ref){loaded[w - i], k};
        }
        if (l->o.shuffle)
            for (int64_t a = m - 1; a > 0; a--) {
                int64_t b = (int64_t)cg_rng_below(&rng, (uint64_t)(a + 1));
                event_ref t = refs[a];
                refs[a] = refs[b];
                refs[b] = t;
            }
        int64_t p = 0;
        cg_status st = CG_OK;
        while (!st && l->ncarry + (m - p) >= B) {
            slot *s = acquire(l);
            if (!s) { st = CG_ERR_INVALID; break; }
            memcpy(s->x, l->carry_x, (size_t)(l->ncarry * nc) * sizeof(float));
            if (nsel) memcpy(s->c, l->carry_c, (size_t)(l->ncarry * nsel) * sizeof(float));
            for (int64_t q = l->ncarry; q < B && !st; q++, p++)
                st = load_event(l, refs[p].c, refs[p].k, s->x + q * nc, s->c + q * nsel);
            if (st) break;
            l->ncarry = 0;
            s->n = B;
            publish(l, s, SLOT_BATCH);
        }
        for (; !st && p < m; p++, l->ncarry++) /* what is left waits for the next window */
            st = load_event(l, refs[p].c, refs[p].k, l->carry_x + l->ncarry * nc, l->carry_c + l->ncarry * nsel);
        for (int64_t v = i; v < j; v++) cg_cvox_chunk_free(loaded[v - i]);
        if (st) {
            if (!atomic_load(&l->stop)) post_error(l);
            return -1;
        }
        i = j;
    }
    if (l->ncarry > 0 && !l->o.drop_last) {
        slot *s = acquire(l);
        if (!s) return -1;
        memcpy(s->x, l->carry_x, (size_t)(l->ncarry * nc) * sizeof(float));
        if (nsel) memcpy(s->c, l->carry_c, (size_t)(l->ncarry * nsel) * sizeof(float));
        s->n = l->ncarry;
        publish(l, s, SLOT_BATCH);
    }
    slot *s = acquire(l);
    if (!s) return -1;
    s->n = 0;
    publish(l, s, SLOT_END);
    return 0;
}

static void *producer(void *arg) {
    cg_loader *l = arg;
    event_ref *refs = NULL; /* the events of the current window, grown as needed */
    int64_t refs_cap = 0;
    cg_cvox_chunk **loaded = malloc((size_t)(l->nblocks + 1) * sizeof *loaded);
    int64_t *order = malloc((size_t)(l->nblocks + 1) * sizeof *order);
    if (!loaded || !order) {
        cg_set_error(CG_ERR_NOMEM, "loader: out of memory planning %lld chunks", (long long)l->nblocks);
        post_error(l);
    } else {
        for (int64_t e = l->start_epoch; !atomic_load(&l->stop); e++)
            if (run_epoch(l, e, &refs, &refs_cap, loaded, order)) break;
    }
    free(refs);
    free(loaded);
    free(order);
    return NULL;
}

static cg_status start(cg_loader *l, int64_t epoch) {
    for (int i = 0; i < l->nslots; i++) l->slots[i].kind = SLOT_FREE;
    l->head = l->tail = 0;
    l->epoch = l->start_epoch = epoch;
    l->failed = 0;
    atomic_store(&l->stop, 0);
    if (pthread_create(&l->thread, NULL, producer, l) != 0)
        return cg_set_error(CG_ERR_NOMEM, "loader: cannot start its thread");
    l->running = 1;
    return CG_OK;
}

static void stop(cg_loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    atomic_store(&l->stop, 1);
    pthread_cond_broadcast(&l->freed);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

/* Select the conditioning values named in spec ("energy,theta"); NULL or "" = all. */
static cg_status select_cond(cg_loader *l, const char *spec, const char *path) {
    if (!spec || !*spec) {
        l->nsel = l->info.ncond;
        for (int i = 0; i < l->nsel; i++) l->sel[i] = i;
        return CG_OK;
    }
    snprintf(l->cond_spec, sizeof l->cond_spec, "%s", spec);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    l->nsel = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = cg_cvox_cond_index(&l->info, tok);
        if (k < 0) {
            char have[512] = "";
            for (int i = 0; i < l->info.ncond; i++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", l->info.cond_name[i]);
            return cg_set_error(CG_ERR_INVALID, "%s: no conditioning value '%s' (the file has: %s)", path, tok,
                                l->info.ncond ? have : "none");
        }
        if (l->nsel == CG_CVOX_MAX_COND) return cg_set_error(CG_ERR_INVALID, "loader: too many conditioning names");
        l->sel[l->nsel++] = k;
    }
    return CG_OK;
}

cg_loader *cg_loader_open(const char *path, const cg_loader_opts *o) {
    if (o->batch_size < 1) {
        cg_set_error(CG_ERR_INVALID, "loader: batch size %d must be >= 1", o->batch_size);
        return NULL;
    }
    if (!cg_device_available(o->device)) {
        cg_set_error(CG_ERR_DEVICE, "loader: device %s is not available", cg_device_name(o->device));
        return NULL;
    }
    cg_cvox_reader *r = cg_cvox_open(path);
    if (!r) return NULL;
    cg_loader *l = cg_xcalloc(1, sizeof *l);
    l->o = *o;
    l->r = r;
    l->info = *cg_cvox_info_of(r);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->ready, NULL);
    pthread_cond_init(&l->freed, NULL);
    const int64_t N = l->info.nevents, nc = l->info.geom.ncells, B = o->batch_size;
    cg_status st = CG_OK;
    l->first = o->first;
    l->count = o->count > 0 ? o->count : N - o->first;
    if (o->first < 0 || l->count < 1 || o->first > N - l->count)
        st = cg_set_error(CG_ERR_INVALID, "%s: event range first %lld, count %lld does not fit %lld events", path,
                          (long long)o->first, (long long)o->count, (long long)N);
    if (!st) st = select_cond(l, o->cond, path);
    if (!st && cg_transform_check(&o->transform, &l->info)) st = cg_set_error(cg_last_status(), "%s: %s", path,
                                                                               cg_last_error());
    if (!st) {
        l->o.cond = l->cond_spec[0] ? l->cond_spec : NULL;
        l->nbatches = o->drop_last ? l->count / B : (l->count + B - 1) / B;
        if (l->nbatches == 0)
            st = cg_set_error(CG_ERR_INVALID, "%s: %lld events make no batch of %lld with drop_last", path,
                              (long long)l->count, (long long)B);
    }
    /* the chunks overlapping the range, with their decompressed sizes */
    int64_t nch = st ? 0 : cg_cvox_nchunks(r);
    if (!st) l->blocks = cg_xcalloc((size_t)(nch ? nch : 1), sizeof *l->blocks);
    for (int64_t ch = 0; !st && ch < nch; ch++) {
        int64_t f, n;
        cg_cvox_chunk_span(r, ch, &f, &n);
        int64_t lo = f > l->first ? f : l->first, hi = f + n < l->first + l->count ? f + n : l->first + l->count;
        if (hi <= lo) continue;
        int64_t raw = cg_cvox_chunk_raw_size(r, ch);
        if (raw < 0) {
            st = cg_last_status();
            break;
        }
        l->blocks[l->nblocks++] = (block){ch, lo - f, hi - f, raw + 16 * n + 256};
    }
    if (!st) {
        l->budget = (o->memory_mb > 0 ? o->memory_mb : 256) << 20;
        l->nslots = (o->prefetch > 0 ? o->prefetch : 2) + 1;
        l->slots = cg_xcalloc((size_t)l->nslots, sizeof *l->slots);
        size_t xb = (size_t)(B * nc) * sizeof(float), cb = (size_t)(B * l->nsel + 1) * sizeof(float);
        for (int i = 0; !st && i < l->nslots; i++) {
            l->slots[i].x = malloc(xb);
            l->slots[i].c = malloc(cb);
            if (!l->slots[i].x || !l->slots[i].c) st = CG_ERR_NOMEM;
        }
        l->carry_x = malloc(xb);
        l->carry_c = malloc(cb);
        l->row_cond = malloc(sizeof(float) * (CG_CVOX_MAX_COND + 1));
        if (st || !l->carry_x || !l->carry_c || !l->row_cond)
            st = cg_set_error(CG_ERR_NOMEM, "%s: out of memory for %d batches of %lld x %lld floats", path,
                              l->nslots + 1, (long long)B, (long long)nc);
    }
    if (!st) st = start(l, 0);
    if (st) {
        cg_loader_close(l);
        return NULL;
    }
    return l;
}

int cg_loader_next(cg_loader *l, cg_tensor **x, cg_tensor **cond) {
    *x = NULL;
    if (cond) *cond = NULL;
    if (l->failed) {
        cg_set_error(l->fail_st, "%s", l->fail_msg);
        return -1;
    }
    pthread_mutex_lock(&l->mu);
    while (l->slots[l->head].kind == SLOT_FREE) pthread_cond_wait(&l->ready, &l->mu);
    slot *s = &l->slots[l->head];
    pthread_mutex_unlock(&l->mu);
    int rc = 1;
    if (s->kind == SLOT_ERROR) {
        l->failed = 1;
        l->fail_st = s->st;
        snprintf(l->fail_msg, sizeof l->fail_msg, "%s", s->err);
        cg_set_error(l->fail_st, "%s", l->fail_msg);
        return -1; /* the producer has stopped; the slot stays */
    }
    if (s->kind == SLOT_END) {
        rc = 0;
        l->epoch++;
    } else {
        const cg_geometry *g = &l->info.geom;
        const cg_layer *L = &g->layer[0];
        if (!l->o.flat && cg_geometry_is_grid(g))
            *x = cg_tensor_from_host(l->o.device, CG_SHAPE(s->n, 1, g->nlayers, L->rows, L->cols), s->x);
        else
            *x = cg_tensor_from_host(l->o.device, CG_SHAPE(s->n, g->ncells), s->x);
        if (*x && cond && l->nsel) {
            *cond = cg_tensor_from_host(l->o.device, CG_SHAPE(s->n, l->nsel), s->c);
            if (!*cond) {
                cg_tensor_free(*x);
                *x = NULL;
            }
        }
        if (!*x) rc = -1; /* out of device memory: the batch is lost, the error reported */
    }
    pthread_mutex_lock(&l->mu);
    s->kind = SLOT_FREE;
    l->head = (l->head + 1) % l->nslots;
    pthread_cond_signal(&l->freed);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

cg_status cg_loader_set_epoch(cg_loader *l, int64_t epoch) {
    if (epoch < 0) return cg_set_error(CG_ERR_INVALID, "loader: epoch %lld < 0", (long long)epoch);
    stop(l);
    return start(l, epoch);
}

int64_t cg_loader_epoch(const cg_loader *l) { return l->epoch; }
int64_t cg_loader_events(const cg_loader *l) { return l->count; }
int64_t cg_loader_batches(const cg_loader *l) { return l->nbatches; }
const cg_cvox_info *cg_loader_info(const cg_loader *l) { return &l->info; }
int cg_loader_ncond(const cg_loader *l) { return l->nsel; }

const char *cg_loader_cond_name(const cg_loader *l, int i) {
    CG_ASSERT(i >= 0 && i < l->nsel);
    return l->info.cond_name[l->sel[i]];
}

void cg_loader_close(cg_loader *l) {
    if (!l) return;
    stop(l);
    for (int i = 0; l->slots && i < l->nslots; i++) {
        free(l->slots[i].x);
        free(l->slots[i].c);
    }
    free(l->slots);
    free(l->carry_x);
    free(l->carry_c);
    free(l->row_cond);
    free(l->blocks);
    cg_cvox_close(l->r);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->ready);
    pthread_cond_destroy(&l->freed);
    free(l);
}
