/* models/checkpoint.c — save, load and verify checkpoints (layout in checkpoint.h). */
#include "models/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "CGCKPT\r\n"
#define VERSION 1u
#define END "CGND"

uint32_t cg_crc32(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n > 0) { /* zlib takes uInt lengths */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

/* ---------------------------------------------------------------- saving ---- */

typedef struct {
    FILE *f;
    const char *path;
    int failed;
    uint32_t crc;
} wr;

static void put(wr *w, const void *p, size_t n) {
    if (w->failed) return;
    if (fwrite(p, 1, n, w->f) != n) w->failed = errno ? errno : EIO;
    w->crc = cg_crc32(w->crc, p, n);
}
static void put_u8(wr *w, uint8_t v) { put(w, &v, 1); }
static void put_u16(wr *w, uint16_t v) { uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; put(w, b, 2); }
static void put_u32(wr *w, uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 4);
}
static void put_i64(wr *w, int64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)v >> (8 * i));
    put(w, b, 8);
}

cg_status cg_checkpoint_save(const char *path, const char *kind, const char *meta, const cg_named_list *tensors) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return cg_set_error(CG_ERR_INVALID, "checkpoint path too long: %s", path);
    size_t lk = strlen(kind), lm = meta ? strlen(meta) : 0;
    if (lk > 65535) return cg_set_error(CG_ERR_INVALID, "checkpoint kind too long");
    wr w = {.f = fopen(tmp, "wb"), .path = tmp};
    if (!w.f) return cg_set_error(CG_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    errno = 0;
    fwrite(MAGIC, 1, 8, w.f);
    w.crc = 0;
    put_u32(&w, VERSION);
    put_u16(&w, (uint16_t)lk);
    put(&w, kind, lk);
    put_u32(&w, (uint32_t)lm);
    put(&w, meta, lm);
    put_u32(&w, w.crc);
    put_u32(&w, (uint32_t)tensors->n);
    float *buf = NULL;
    size_t bufn = 0;
    for (int i = 0; i < tensors->n && !w.failed; i++) {
        const cg_tensor *t = tensors->v[i].t;
        size_t ln = strlen(tensors->v[i].name);
        int64_t n = cg_numel(t);
        if ((size_t)n > bufn) {
            free(buf);
            bufn = (size_t)n;
            buf = malloc(bufn * sizeof(float));
            if (!buf) { w.failed = ENOMEM; break; }
        }
        cg_tensor_to_host(t, buf);
        w.crc = 0;
        put_u16(&w, (uint16_t)ln);
        put(&w, tensors->v[i].name, ln);
        put_u8(&w, (uint8_t)t->ndim);
        put_u8(&w, 0);
        for (int d = 0; d < t->ndim; d++) put_i64(&w, t->shape[d]);
        put(&w, buf, (size_t)n * sizeof(float)); /* float32, little-endian host */
        put_u32(&w, w.crc);
    }
    free(buf);
    put(&w, END, 4);
    if (!w.failed && fflush(w.f) != 0) w.failed = errno ? errno : EIO;
    if (!w.failed && fsync(fileno(w.f)) != 0) w.failed = errno ? errno : EIO;
    if (fclose(w.f) != 0 && !w.failed) w.failed = errno ? errno : EIO;
    if (w.failed) {
        remove(tmp);
        return cg_set_error(w.failed == ENOMEM ? CG_ERR_NOMEM : CG_ERR_IO, "cannot write checkpoint %s: %s%s", path,
                            strerror(w.failed), w.failed == ENOSPC ? " (the disk is full)" : "");
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return cg_set_error(CG_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return CG_OK;
}

/* ---------------------------------------------------------------- loading ---- */

typedef struct {
    char *name;
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    const float *data; /* into the file image (4-byte aligned copy below) */
} entry;

struct cg_checkpoint {
    char path[1024];
    unsigned char *image; /* the whole file */
    size_t size;
    char *kind, *meta;
    char **meta_keys, **meta_vals;
    int nmeta;
    entry *e;
    int n;
};

typedef struct {
    const unsigned char *p;
    size_t pos, size;
    const char *path;
    int bad;
} rd;

static bool need(rd *r, size_t n, const char *what) {
    if (r->bad) return false;
    if (n > r->size - r->pos) {
        cg_set_error(CG_ERR_IO, "checkpoint %s is truncated or corrupted: %s at offset %zu needs %zu bytes, %zu left",
                     r->path, what, r->pos, n, r->size - r->pos);
        r->bad = 1;
        return false;
    }
    return true;
}
static uint64_t get_le(rd *r, int bytes, const char *what) {
    if (!need(r, (size_t)bytes, what)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += (size_t)bytes;
    return v;
}

void cg_checkpoint_free(cg_checkpoint *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->e[i].name);
    for (int i = 0; i < c->nmeta; i++) {
        free(c->meta_keys[i]);
        free(c->meta_vals[i]);
    }
    free(c->meta_keys);
    free(c->meta_vals);
    free(c->e);
    free(c->kind);
    free(c->meta);
    free(c->image);
    free(c);
}

static char *dup_n(const unsigned char *p, size_t n) {
    char *s = cg_xmalloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static void parse_meta(cg_checkpoint *c) {
    for (char *line = c->meta; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char *eq = memchr(line, '=', len);
        if (eq) {
            char *k0 = line, *k1 = eq, *v0 = eq + 1, *v1 = line + len;
            while (k0 < k1 && (*k0 == ' ' || *k0 == '\t')) k0++;
            while (k1 > k0 && (k1[-1] == ' ' || k1[-1] == '\t')) k1--;
            while (v0 < v1 && (*v0 == ' ' || *v0 == '\t')) v0++;
            while (v1 > v0 && (v1[-1] == ' ' || v1[-1] == '\t' || v1[-1] == '\r')) v1--;
            c->meta_keys = cg_xrealloc(c->meta_keys, (size_t)(c->nmeta + 1) * sizeof(char *));
            c->meta_vals = cg_xrealloc(c->meta_vals, (size_t)(c->nmeta + 1) * sizeof(char *));
            c->meta_keys[c->nmeta] = dup_n((const unsigned char *)k0, (size_t)(k1 - k0));
            c->meta_vals[c->nmeta] = dup_n((const unsigned char *)v0, (size_t)(v1 - v0));
            c->nmeta++;
        }
        line = nl ? nl + 1 : NULL;
    }
}

cg_checkpoint *cg_checkpoint_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cg_set_error(CG_ERR_IO, "cannot open checkpoint %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        cg_set_error(CG_ERR_IO, "checkpoint %s is not a regular file", path);
        return NULL;
    }
    cg_checkpoint *c = cg_xcalloc(1, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    c->size = (size_t)st.st_size;
    c->image = malloc(c->size ? c->size : 1);
    if (!c->image) {
        fclose(f);
        cg_checkpoint_free(c);
        cg_set_error(CG_ERR_NOMEM, "out of memory reading checkpoint %s (%zu bytes)", path, (size_t)st.st_size);
        return NULL;
    }
    size_t got = fread(c->image, 1, c->size, f);
    fclose(f);
    rd r = {c->image, 0, got, path, 0};
    if (got < 8 || memcmp(c->image, MAGIC, 8) != 0) {
        cg_set_error(CG_ERR_IO, "%s is not a calograd checkpoint (bad magic number)", path);
        goto fail;
    }
    r.pos = 8;
    uint32_t version = (uint32_t)get_le(&r, 4, "version");
    if (!r.bad && version != VERSION) {
        cg_set_error(CG_ERR_IO, "checkpoint %s has version %u; this calograd reads version %u", path, version, VERSION);
        goto fail;
    }
    size_t lk = (size_t)get_le(&r, 2, "kind length");
    if (!need(&r, lk, "kind")) goto fail;
    c->kind = dup_n(r.p + r.pos, lk);
    r.pos += lk;
    size_t lm = (size_t)get_le(&r, 4, "metadata length");
    if (!need(&r, lm, "metadata")) goto fail;
    c->meta = dup_n(r.p + r.pos, lm);
    r.pos += lm;
    uint32_t hcrc = cg_crc32(0, r.p + 8, r.pos - 8);
    if ((uint32_t)get_le(&r, 4, "header checksum") != hcrc && !r.bad) {
        cg_set_error(CG_ERR_IO, "checkpoint %s is corrupted: header checksum mismatch", path);
        goto fail;
    }
    uint32_t count = (uint32_t)get_le(&r, 4, "tensor count");
    if (r.bad) goto fail;
    if (count > (r.size - r.pos) / 8) { /* every tensor takes at least 8 bytes */
        cg_set_error(CG_ERR_IO, "checkpoint %s is corrupted: %u tensors cannot fit in %zu bytes", path, count,
                     r.size - r.pos);
        goto fail;
    }
    c->e = cg_xcalloc(count ? count : 1, sizeof *c->e);
    for (uint32_t i = 0; i < count; i++) {
        size_t start = r.pos;
        size_t ln = (size_t)get_le(&r, 2, "tensor name length");
        if (!need(&r, ln, "tensor name")) goto fail;
        entry *e = &c->e[c->n++];
        e->name = dup_n(r.p + r.pos, ln);
        r.pos += ln;
        e->ndim = (int)get_le(&r, 1, "rank");
        int dtype = (int)get_le(&r, 1, "dtype");
        if (r.bad) goto fail;
        if (e->ndim > CG_MAX_DIMS || dtype != 0) {
            cg_set_error(CG_ERR_IO, "checkpoint %s is corrupted: tensor '%s' has rank %d / dtype %d", path, e->name,
                         e->ndim, dtype);
            goto fail;
        }
        uint64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            int64_t s = (int64_t)get_le(&r, 8, "shape");
            if (r.bad) goto fail;
            if (s < 0 || (s > 0 && numel > (uint64_t)INT64_MAX / 4 / (uint64_t)s)) {
                cg_set_error(CG_ERR_IO, "checkpoint %s is corrupted: tensor '%s' has an impossible shape", path, e->name);
                goto fail;
            }
            e->shape[d] = s;
            numel *= (uint64_t)s;
        }
        if (!need(&r, numel * 4, "tensor data")) goto fail;
        e->data = (const float *)(r.p + r.pos); /* read through memcpy in restore: may be unaligned */
        r.pos += numel * 4;
        uint32_t want = cg_crc32(0, r.p + start, r.pos - start);
        uint32_t crc = (uint32_t)get_le(&r, 4, "tensor checksum");
        if (r.bad) goto fail;
        if (crc != want) {
            cg_set_error(CG_ERR_IO, "checkpoint %s is corrupted: checksum mismatch in tensor '%s' (offset %zu)", path,
                         e->name, start);
            goto fail;
        }
    }
    if (!need(&r, 4, "end marker")) goto fail;
    if (memcmp(r.p + r.pos, END, 4) != 0) {
        cg_set_error(CG_ERR_IO, "checkpoint %s is corrupted: no end marker at offset %zu", path, r.pos);
        goto fail;
    }
    parse_meta(c);
    return c;
fail:
    cg_checkpoint_free(c);
    return NULL;
}

const char *cg_checkpoint_kind(const cg_checkpoint *c) { return c->kind; }
const char *cg_checkpoint_meta(const cg_checkpoint *c) { return c->meta; }
int cg_checkpoint_count(const cg_checkpoint *c) { return c->n; }
const char *cg_checkpoint_name(const cg_checkpoint *c, int i) { return i >= 0 && i < c->n ? c->e[i].name : NULL; }

const char *cg_checkpoint_get(const cg_checkpoint *c, const char *key) {
    for (int i = 0; i < c->nmeta; i++)
        if (strcmp(c->meta_keys[i], key) == 0) return c->meta_vals[i];
    return NULL;
}

cg_status cg_checkpoint_restore(const cg_checkpoint *c, const cg_named_list *into, bool strict) {
    char s1[96], s2[96];
    for (int i = 0; i < into->n; i++) {
        const entry *e = NULL;
        for (int j = 0; j < c->n && !e; j++)
            if (strcmp(c->e[j].name, into->v[i].name) == 0) e = &c->e[j];
        if (!e)
            return cg_set_error(CG_ERR_INVALID, "checkpoint %s (%s) has no tensor '%s': it was saved by another model "
                                "or configuration", c->path, c->kind, into->v[i].name);
        cg_tensor *t = into->v[i].t;
        bool same = e->ndim == t->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same)
            return cg_set_error(CG_ERR_INVALID, "checkpoint %s: tensor '%s' has shape %s, the model expects %s",
                                c->path, e->name, cg_shape_str(e->ndim, e->shape, s1, sizeof s1), CG_SHAPE_STR(t, s2));
    }
    if (strict)
        for (int j = 0; j < c->n; j++)
            if (!cg_named_list_find(into, c->e[j].name))
                return cg_set_error(CG_ERR_INVALID, "checkpoint %s has a tensor '%s' this model does not have: it was "
                                    "saved by another model or configuration", c->path, c->e[j].name);
    for (int i = 0; i < into->n; i++) {
        const entry *e = NULL;
        for (int j = 0; j < c->n && !e; j++)
            if (strcmp(c->e[j].name, into->v[i].name) == 0) e = &c->e[j];
        cg_tensor *t = into->v[i].t;
        int64_t n = cg_numel(t);
        float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!h) return cg_set_error(CG_ERR_NOMEM, "out of memory restoring '%s'", e->name);
        memcpy(h, e->data, (size_t)n * sizeof(float));
        cg_status st = cg_is_contiguous(t) ? cg_tensor_set_host(t, h)
                                           : cg_set_error(CG_ERR_INVALID, "restore into a non-contiguous tensor");
        free(h);
        if (st != CG_OK) return st;
    }
    return CG_OK;
}
