/*
 * io/cvox.c — reading and writing .cvox files (API in io/cvox.h, bytes in io/FORMAT.md).
 *
 * Layout in one breath: a preamble (magic, version, header length), the header (particle,
 * provenance, conditioning names/units, geometry) and its CRC32; then chunks, each a small
 * self-describing header plus a zlib stream of many events stored sparsely; then an index
 * of the chunks; then a fixed-size trailer pointing at the index. Little-endian throughout.
 *
 * Inside a chunk (uncompressed), the events are stored column by column so that zlib sees
 * similar bytes together: all conditioning values, all hit counts, all index deltas
 * (LEB128 varints), then the hit values split into four byte planes (byte 0 of every value,
 * then byte 1, ...). The planes cost nothing to undo and let zlib squeeze the sign/exponent
 * bytes, which repeat, apart from the mantissa bytes, which do not.
 *
 * Trust nothing on disk: every length and offset is checked against the file size and
 * against each other before it is used, the header, every chunk header, every chunk payload
 * and the index carry CRC32s, and the index data of an event is checked as it is decoded
 * (indices strictly increasing and inside the geometry). A failure names the file, the
 * chunk and the offset.
 *
 * Writing goes to "<path>.partial.<pid>", which is renamed to <path> only after the index
 * and trailer are written and fsync'ed: a crash leaves a file with a name that does not look
 * complete, readable up to its last complete chunk with cg_cvox_open_salvage().
 *
 * Limits: a little-endian host (checked at compile time); at most 2^26 cells per event (so
 * that a chunk's sizes fit in 32 bits); a value whose 32 bits are all zero (+0.0) is not
 * stored, every other bit pattern (-0.0, NaN, denormals) is.
 */
#include "io/cvox.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io/cvox.c assumes a little-endian host"
#endif

#define CVOX_MAJOR 1
#define CVOX_MINOR 0
#define PREAMBLE_LEN 16
#define CHUNK_HDR_LEN 32
#define INDEX_HDR_LEN 24
#define INDEX_ENTRY_LEN 24
#define TRAILER_LEN 24
#define MAX_HEADER_LEN (1u << 20)
#define MAX_CELLS (INT64_C(1) << 26)
#define DEFAULT_EVENTS_PER_CHUNK 256
#define FLUSH_RAW_BYTES (64u << 20) /* flush a chunk early once its raw payload is this big */

static const uint8_t MAGIC[8] = {0x89, 'C', 'V', 'O', 'X', '\r', '\n', 0x1a};
static const uint8_t CHUNK_MAGIC[4] = {'C', 'V', 'C', 'H'};
static const uint8_t INDEX_MAGIC[4] = {'C', 'V', 'I', 'X'};
static const uint8_t TRAILER_MAGIC[4] = {'C', 'V', 'N', 'D'};

/* ------------------------------------------------------------ little-endian bytes ---- */

static void put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put_f32(uint8_t *p, float v) { memcpy(p, &v, 4); }
static uint16_t get_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static float get_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }

static uint32_t crc(const uint8_t *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* zlib's crc32 takes a uInt length */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* A growable byte buffer (the writer's per-chunk columns). Aborts when out of memory:
 * chunks are bounded (FLUSH_RAW_BYTES), so this is bookkeeping, not a user-sized buffer. */
typedef struct { uint8_t *p; size_t n, cap; } bytes;

static uint8_t *bytes_grow(bytes *b, size_t more) {
    if (b->n + more > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + more) cap *= 2;
        b->p = cg_xrealloc(b->p, cap);
        b->cap = cap;
    }
    uint8_t *q = b->p + b->n;
    b->n += more;
    return q;
}

/* ------------------------------------------------------------------- the header ---- */

/* A cursor over a byte range: every read checks the remaining length first. */
typedef struct { const uint8_t *p; size_t n, off; int bad; } cursor;

static const uint8_t *take(cursor *c, size_t k) {
    if (c->bad || c->n - c->off < k) { c->bad = 1; return NULL; }
    const uint8_t *q = c->p + c->off;
    c->off += k;
    return q;
}
static uint32_t take_u32(cursor *c) { const uint8_t *q = take(c, 4); return q ? get_u32(q) : 0; }
static float take_f32(cursor *c) { const uint8_t *q = take(c, 4); return q ? get_f32(q) : 0; }
static void take_str(cursor *c, char *dst, size_t field) {
    const uint8_t *q = take(c, field);
    if (!q) { dst[0] = 0; return; }
    memcpy(dst, q, field);
    dst[field - 1] = 0;
}

/* Writes into buf only while within cap; returns the size needed either way. */
typedef struct { uint8_t *p; size_t cap, n; } sink;

static void emit(sink *s, const void *src, size_t k) {
    if (s->p && s->n + k <= s->cap) memcpy(s->p + s->n, src, k);
    s->n += k;
}
static void emit_u32(sink *s, uint32_t v) { uint8_t b[4]; put_u32(b, v); emit(s, b, 4); }
static void emit_f32(sink *s, float v) { uint8_t b[4]; put_f32(b, v); emit(s, b, 4); }
static void emit_str(sink *s, const char *str, size_t field) {
    char tmp[256] = {0};
    CG_ASSERT(field <= sizeof tmp);
    snprintf(tmp, field, "%s", str);
    emit(s, tmp, field);
}

size_t cg_cvox_info_encode(const cg_cvox_info *info, int events_per_chunk, uint8_t *buf, size_t cap) {
    sink s = {buf, cap, 0};
    const cg_geometry *g = &info->geom;
    emit_u32(&s, 0); /* flags */
    emit_u32(&s, (uint32_t)events_per_chunk);
    emit_str(&s, info->particle, CG_CVOX_NAME_LEN);
    emit_str(&s, info->source, sizeof info->source);
    emit_u32(&s, (uint32_t)info->ncond);
    for (int i = 0; i < info->ncond; i++) {
        emit_str(&s, info->cond_name[i], CG_CVOX_NAME_LEN);
        emit_str(&s, info->cond_unit[i], CG_CVOX_NAME_LEN);
    }
    emit_str(&s, g->name, sizeof g->name);
    emit_str(&s, g->energy_unit, sizeof g->energy_unit);
    emit_f32(&s, g->to_mev);
    emit_f32(&s, g->mip_mev);
    emit_u32(&s, (uint32_t)g->nlayers);
    for (int l = 0; l < g->nlayers; l++) {
        const cg_layer *L = &g->layer[l];
        emit_u32(&s, (uint32_t)L->rows);
        emit_u32(&s, (uint32_t)L->cols);
        emit_u32(&s, (uint32_t)L->binning);
        emit_f32(&s, L->cell_w);
        emit_f32(&s, L->cell_h);
        emit_f32(&s, L->z_mm);
        emit_f32(&s, L->depth_mm);
        if (L->binning == CG_BIN_POLAR)
            for (int k = 0; k <= L->cols; k++) emit_f32(&s, L->r_edges[k]);
    }
    return s.n;
}

cg_status cg_cvox_info_decode(cg_cvox_info *info, const uint8_t *buf, size_t len, const char *what) {
    cursor c = {buf, len, 0, 0};
    memset(info, 0, sizeof *info);
    uint32_t flags = take_u32(&c);
    (void)take_u32(&c); /* events_per_chunk: informative */
    if (!c.bad && flags != 0)
        return cg_set_error(CG_ERR_IO, "%s: header flags 0x%x are not understood by this version", what, flags);
    take_str(&c, info->particle, CG_CVOX_NAME_LEN);
    take_str(&c, info->source, sizeof info->source);
    uint32_t ncond = take_u32(&c);
    if (!c.bad && ncond > CG_CVOX_MAX_COND)
        return cg_set_error(CG_ERR_IO, "%s: header: %u conditioning values (at most %d)", what, ncond,
                            CG_CVOX_MAX_COND);
    info->ncond = (int)ncond;
    for (uint32_t i = 0; i < ncond && !c.bad; i++) {
        take_str(&c, info->cond_name[i], CG_CVOX_NAME_LEN);
        take_str(&c, info->cond_unit[i], CG_CVOX_NAME_LEN);
    }
    cg_geometry *g = &info->geom;
    take_str(&c, g->name, sizeof g->name);
    take_str(&c, g->energy_unit, sizeof g->energy_unit);
    g->to_mev = take_f32(&c);
    g->mip_mev = take_f32(&c);
    uint32_t nl = take_u32(&c);
    if (!c.bad && (nl < 1 || nl > CG_GEOM_MAX_LAYERS))
        return cg_set_error(CG_ERR_IO, "%s: impossible geometry: %u layers (need 1..%d)", what, nl,
                            CG_GEOM_MAX_LAYERS);
    g->nlayers = (int)nl;
    for (uint32_t l = 0; l < nl && !c.bad; l++) {
        cg_layer *L = &g->layer[l];
        uint32_t rows = take_u32(&c), cols = take_u32(&c), bin = take_u32(&c);
        if (rows > 100000 || cols > 100000 || bin > CG_BIN_POLAR)
            return cg_set_error(CG_ERR_IO, "%s: impossible geometry: layer %u is %u x %u with binning %u", what, l,
                                rows, cols, bin);
        L->rows = (int)rows;
        L->cols = (int)cols;
        L->binning = (cg_binning)bin;
        L->cell_w = take_f32(&c);
        L->cell_h = take_f32(&c);
        L->z_mm = take_f32(&c);
        L->depth_mm = take_f32(&c);
        if (L->binning == CG_BIN_POLAR) {
            if (cols > CG_GEOM_MAX_RBINS)
                return cg_set_error(CG_ERR_IO, "%s: impossible geometry: layer %u has %u radial bins (max %d)", what,
                                    l, cols, CG_GEOM_MAX_RBINS);
            for (uint32_t k = 0; k <= cols; k++) L->r_edges[k] = take_f32(&c);
        }
    }
    if (c.bad) return cg_set_error(CG_ERR_IO, "%s: header is shorter (%zu bytes) than its fields need", what, len);
    if (c.off != len)
        return cg_set_error(CG_ERR_IO, "%s: header has %zu bytes after its last field", what, len - c.off);
    if (!(g->to_mev > 0) || !(g->to_mev < 1e30f))
        return cg_set_error(CG_ERR_IO, "%s: impossible geometry: energy scale to_mev = %g", what, (double)g->to_mev);
    if (cg_geometry_finish(g) != CG_OK)
        return cg_set_error(CG_ERR_IO, "%s: impossible geometry: %s", what, cg_last_error());
    if (g->ncells > MAX_CELLS)
        return cg_set_error(CG_ERR_IO, "%s: geometry has %lld cells (the format allows %lld)", what,
                            (long long)g->ncells, (long long)MAX_CELLS);
    return CG_OK;
}

/* --------------------------------------------------------------------- reading ---- */

typedef struct {
    uint64_t offset;     /* of the chunk header */
    int64_t first;       /* first event */
    uint32_t n;          /* events */
    uint32_t len;        /* chunk header + payload bytes */
} chunk_entry;

struct cg_cvox_chunk {
    char path[512];
    int64_t index, first, n;
    int64_t ncells;
    int ncond;
    uint8_t *raw;        /* the decompressed payload */
    size_t raw_len;
    const uint8_t *cond, *nhits, *nbytes, *deltas, *planes;
    int64_t *hit_off;    /* n + 1 prefix sums of nhits */
    int64_t *delta_off;  /* n + 1 prefix sums of nbytes */
    int64_t total_hits;
};

struct cg_cvox_reader {
    char path[512];
    int fd;
    int64_t size;
    cg_cvox_info info;
    int64_t nchunks;
    chunk_entry *chunks;
    uint64_t data_start; /* first chunk offset */
    cg_cvox_chunk *cache; /* the chunk cg_cvox_read used last */
    uint8_t *comp;       /* scratch for compressed payloads */
    size_t comp_cap;
};

/* Read exactly n bytes at off; the caller has checked off + n <= size. */
static cg_status read_at(cg_cvox_reader *r, void *dst, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(r->fd, (uint8_t *)dst + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            return cg_set_error(CG_ERR_IO, "%s: read error at offset %llu: %s", r->path,
                                (unsigned long long)(off + got), strerror(errno));
        if (k == 0)
            return cg_set_error(CG_ERR_IO, "%s: truncated: file ends at offset %llu, expected %zu more bytes",
                                r->path, (unsigned long long)(off + got), n - got);
        got += (size_t)k;
    }
    return CG_OK;
}

static cg_status read_header(cg_cvox_reader *r) {
    uint8_t pre[PREAMBLE_LEN];
    if (r->size < PREAMBLE_LEN + 4)
        return cg_set_error(CG_ERR_IO, "%s: not a .cvox file: only %lld bytes", r->path, (long long)r->size);
    if (read_at(r, pre, PREAMBLE_LEN, 0)) return CG_ERR_IO;
    if (memcmp(pre, MAGIC, 8) != 0)
        return cg_set_error(CG_ERR_IO, "%s: not a .cvox file (wrong magic number at offset 0)", r->path);
    unsigned major = get_u16(pre + 8), minor = get_u16(pre + 10);
    if (major != CVOX_MAJOR)
        return cg_set_error(CG_ERR_IO, "%s: .cvox version %u.%u is not supported (this calograd reads %d.x)",
                            r->path, major, minor, CVOX_MAJOR);
    uint32_t hlen = get_u32(pre + 12);
    if (hlen > MAX_HEADER_LEN)
        return cg_set_error(CG_ERR_IO, "%s: header length %u at offset 12 is impossible (at most %u)", r->path, hlen,
                            MAX_HEADER_LEN);
    if ((uint64_t)PREAMBLE_LEN + hlen + 4 > (uint64_t)r->size)
        return cg_set_error(CG_ERR_IO, "%s: truncated inside the header: it needs %u bytes, the file has %lld",
                            r->path, PREAMBLE_LEN + hlen + 4, (long long)r->size);
    uint8_t *h = cg_xmalloc(PREAMBLE_LEN + hlen + 4);
    cg_status st = read_at(r, h, PREAMBLE_LEN + hlen + 4, 0);
    if (!st && crc(h, PREAMBLE_LEN + hlen) != get_u32(h + PREAMBLE_LEN + hlen))
        st = cg_set_error(CG_ERR_IO, "%s: header CRC mismatch (bytes 0..%u are corrupted)", r->path,
                          PREAMBLE_LEN + hlen + 3);
    if (!st) {
        char what[600];
        snprintf(what, sizeof what, "%s", r->path);
        st = cg_cvox_info_decode(&r->info, h + PREAMBLE_LEN, hlen, what);
    }
    free(h);
    r->data_start = PREAMBLE_LEN + (uint64_t)hlen + 4;
    return st;
}

/* Check the index against the file and against itself. */
static cg_status check_index(cg_cvox_reader *r, uint64_t index_off) {
    int64_t expect_first = 0;
    uint64_t prev_end = r->data_start;
    for (int64_t i = 0; i < r->nchunks; i++) {
        chunk_entry *e = &r->chunks[i];
        if (e->offset < prev_end || e->len < CHUNK_HDR_LEN || e->offset + e->len > index_off)
            return cg_set_error(CG_ERR_IO,
                                "%s: index entry %lld: chunk at offset %llu (%u bytes) lies outside the data "
                                "(%llu..%llu) or overlaps the previous chunk",
                                r->path, (long long)i, (unsigned long long)e->offset, e->len,
                                (unsigned long long)prev_end, (unsigned long long)index_off);
        if (e->n == 0 || e->first != expect_first)
            return cg_set_error(CG_ERR_IO, "%s: index entry %lld: chunk starts at event %lld with %u events, expected "
                                "event %lld",
                                r->path, (long long)i, (long long)e->first, e->n, (long long)expect_first);
        expect_first += e->n;
        prev_end = e->offset + e->len;
    }
    if (expect_first != r->info.nevents)
        return cg_set_error(CG_ERR_IO, "%s: index lists %lld events, trailer says %lld", r->path,
                            (long long)expect_first, (long long)r->info.nevents);
    return CG_OK;
}

/* Read the trailer and the index. Returns CG_OK, or an error whose message says why. */
static cg_status read_index(cg_cvox_reader *r) {
    uint64_t min_size = r->data_start + INDEX_HDR_LEN + 4 + TRAILER_LEN;
    if ((uint64_t)r->size < min_size)
        return cg_set_error(CG_ERR_IO, "%s: incomplete: %lld bytes, too short for an index and a trailer "
                            "(was writing interrupted? try cg_cvox_open_salvage / `calograd info --salvage`)",
                            r->path, (long long)r->size);
    uint8_t t[TRAILER_LEN];
    uint64_t toff = (uint64_t)r->size - TRAILER_LEN;
    if (read_at(r, t, TRAILER_LEN, toff)) return CG_ERR_IO;
    if (memcmp(t + 20, TRAILER_MAGIC, 4) != 0 || crc(t, 16) != get_u32(t + 16))
        return cg_set_error(CG_ERR_IO, "%s: incomplete or truncated: no valid trailer at offset %llu (was writing "
                            "interrupted? `calograd info --salvage` reads the complete chunks)",
                            r->path, (unsigned long long)toff);
    uint64_t ioff = get_u64(t), nev = get_u64(t + 8);
    if (ioff < r->data_start || ioff + INDEX_HDR_LEN + 4 > toff)
        return cg_set_error(CG_ERR_IO, "%s: trailer at offset %llu points to an index at offset %llu outside the "
                            "data",
                            r->path, (unsigned long long)toff, (unsigned long long)ioff);
    uint64_t ilen = toff - ioff;
    if ((ilen - INDEX_HDR_LEN - 4) % INDEX_ENTRY_LEN != 0)
        return cg_set_error(CG_ERR_IO, "%s: index at offset %llu has an impossible length %llu", r->path,
                            (unsigned long long)ioff, (unsigned long long)ilen);
    uint8_t *ix = malloc(ilen);
    if (!ix) return cg_set_error(CG_ERR_NOMEM, "%s: out of memory reading an index of %llu bytes", r->path,
                                 (unsigned long long)ilen);
    cg_status st = read_at(r, ix, ilen, ioff);
    if (!st && (memcmp(ix, INDEX_MAGIC, 4) != 0 || crc(ix, ilen - 4) != get_u32(ix + ilen - 4)))
        st = cg_set_error(CG_ERR_IO, "%s: index at offset %llu is corrupted (magic or CRC mismatch)", r->path,
                          (unsigned long long)ioff);
    uint64_t nch = st ? 0 : get_u64(ix + 8);
    if (!st && (nch != (ilen - INDEX_HDR_LEN - 4) / INDEX_ENTRY_LEN || get_u64(ix + 16) != nev ||
                nev > (uint64_t)INT64_MAX / 2))
        st = cg_set_error(CG_ERR_IO, "%s: index at offset %llu disagrees with its length or with the trailer",
                          r->path, (unsigned long long)ioff);
    if (!st) {
        r->nchunks = (int64_t)nch;
        r->info.nevents = (int64_t)nev;
        r->chunks = cg_xcalloc(nch ? nch : 1, sizeof *r->chunks);
        for (uint64_t i = 0; i < nch; i++) {
            const uint8_t *e = ix + INDEX_HDR_LEN + i * INDEX_ENTRY_LEN;
            r->chunks[i].offset = get_u64(e);
            r->chunks[i].first = (int64_t)(get_u64(e + 8) & (UINT64_MAX >> 1));
            r->chunks[i].n = get_u32(e + 16);
            r->chunks[i].len = get_u32(e + 20);
        }
        st = check_index(r, ioff);
    }
    free(ix);
    return st;
}

/* Parse and check a chunk header read from `off`; fills e. */
static cg_status parse_chunk_header(const cg_cvox_reader *r, const uint8_t *h, uint64_t off, chunk_entry *e,
                                    uint32_t *raw_len, uint32_t *comp_len, uint32_t *payload_crc) {
    if (memcmp(h, CHUNK_MAGIC, 4) != 0 || crc(h, 28) != get_u32(h + 28))
        return cg_set_error(CG_ERR_IO, "%s: chunk header at offset %llu is corrupted (magic or CRC mismatch)",
                            r->path, (unsigned long long)off);
    e->offset = off;
    e->n = get_u32(h + 4);
    e->first = (int64_t)(get_u64(h + 8) & (UINT64_MAX >> 1));
    *raw_len = get_u32(h + 16);
    *comp_len = get_u32(h + 20);
    *payload_crc = get_u32(h + 24);
    if ((uint64_t)*comp_len + CHUNK_HDR_LEN > UINT32_MAX)
        return cg_set_error(CG_ERR_IO, "%s: chunk at offset %llu: impossible length", r->path,
                            (unsigned long long)off);
    e->len = CHUNK_HDR_LEN + *comp_len;
    return CG_OK;
}

static cg_cvox_reader *reader_new(const char *path) {
    cg_cvox_reader *r = cg_xcalloc(1, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        cg_set_error(CG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    struct stat sb;
    if (fstat(r->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        cg_set_error(CG_ERR_IO, "%s: not a regular file", path);
        close(r->fd);
        free(r);
        return NULL;
    }
    r->size = (int64_t)sb.st_size;
    return r;
}

cg_cvox_reader *cg_cvox_open(const char *path) {
    cg_cvox_reader *r = reader_new(path);
    if (!r) return NULL;
    if (read_header(r) || read_index(r)) {
        cg_cvox_close(r);
        return NULL;
    }
    return r;
}

cg_cvox_reader *cg_cvox_open_salvage(const char *path, int64_t *dropped_bytes) {
    cg_cvox_reader *r = reader_new(path);
    if (!r) return NULL;
    if (read_header(r)) {
        cg_cvox_close(r);
        return NULL;
    }
    if (read_index(r) == CG_OK) {
        if (dropped_bytes) *dropped_bytes = 0;
        return r;
    }
    /* No usable index: walk the chunks from the start, checking each one fully. */
    free(r->chunks);
    r->chunks = NULL;
    int64_t cap = 0, n = 0, events = 0;
    uint64_t off = r->data_start;
    uint8_t h[CHUNK_HDR_LEN];
    while (off + CHUNK_HDR_LEN <= (uint64_t)r->size) {
        chunk_entry e = {0};
        uint32_t raw_len = 0, comp_len = 0, pcrc = 0;
        if (read_at(r, h, CHUNK_HDR_LEN, off) || parse_chunk_header(r, h, off, &e, &raw_len, &comp_len, &pcrc))
            break;
        if (e.n == 0 || e.first != events || off + e.len > (uint64_t)r->size) break;
        uint8_t *pl = malloc(comp_len ? comp_len : 1);
        if (!pl) break;
        int ok = read_at(r, pl, comp_len, off + CHUNK_HDR_LEN) == CG_OK && crc(pl, comp_len) == pcrc;
        free(pl);
        if (!ok) break;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            r->chunks = cg_xrealloc(r->chunks, (size_t)cap * sizeof *r->chunks);
        }
        r->chunks[n++] = e;
        events += e.n;
        off += e.len;
    }
    r->nchunks = n;
    r->info.nevents = events;
    if (dropped_bytes) *dropped_bytes = r->size - (int64_t)off;
    cg_clear_error();
    return r;
}

const cg_cvox_info *cg_cvox_info_of(const cg_cvox_reader *r) { return &r->info; }
int64_t cg_cvox_file_size(const cg_cvox_reader *r) { return r->size; }
int64_t cg_cvox_nchunks(const cg_cvox_reader *r) { return r->nchunks; }

void cg_cvox_chunk_span(const cg_cvox_reader *r, int64_t chunk, int64_t *first, int64_t *n) {
    CG_ASSERT(chunk >= 0 && chunk < r->nchunks);
    *first = r->chunks[chunk].first;
    *n = r->chunks[chunk].n;
}

int cg_cvox_cond_index(const cg_cvox_info *info, const char *name) {
    for (int i = 0; i < info->ncond; i++)
        if (strcmp(info->cond_name[i], name) == 0) return i;
    return -1;
}

void cg_cvox_chunk_free(cg_cvox_chunk *c) {
    if (!c) return;
    free(c->raw);
    free(c->hit_off);
    free(c->delta_off);
    free(c);
}

size_t cg_cvox_chunk_bytes(const cg_cvox_chunk *c) {
    return sizeof *c + c->raw_len + 2 * (size_t)(c->n + 1) * sizeof(int64_t);
}

/* Split the raw payload into its columns and check that their sizes add up exactly. */
static cg_status chunk_layout(cg_cvox_chunk *c) {
    uint64_t n = (uint64_t)c->n, pos = 0;
    uint64_t fixed = 4 * n * (uint64_t)c->ncond + 8 * n;
    if (fixed > c->raw_len) goto bad;
    c->cond = c->raw;
    pos = 4 * n * (uint64_t)c->ncond;
    c->nhits = c->raw + pos;
    c->nbytes = c->nhits + 4 * n;
    pos += 8 * n;
    c->hit_off = malloc((n + 1) * sizeof(int64_t));
    c->delta_off = malloc((n + 1) * sizeof(int64_t));
    if (!c->hit_off || !c->delta_off)
        return cg_set_error(CG_ERR_NOMEM, "%s: out of memory decoding chunk %lld", c->path, (long long)c->index);
    c->hit_off[0] = c->delta_off[0] = 0;
    for (uint64_t k = 0; k < n; k++) {
        uint32_t h = get_u32(c->nhits + 4 * k), b = get_u32(c->nbytes + 4 * k);
        /* every hit needs at least one varint byte and at most 10 */
        if (h > (uint64_t)c->ncells || b < h || (uint64_t)b > 10 * (uint64_t)h)
            return cg_set_error(CG_ERR_IO, "%s: chunk %lld, event %lld: corrupted: %u hits in %u index bytes "
                                "(geometry has %lld cells)",
                                c->path, (long long)c->index, (long long)(c->first + (int64_t)k), h, b,
                                (long long)c->ncells);
        c->hit_off[k + 1] = c->hit_off[k] + h;
        c->delta_off[k + 1] = c->delta_off[k] + b;
    }
    c->total_hits = c->hit_off[n];
    c->deltas = c->raw + pos;
    pos += (uint64_t)c->delta_off[n];
    c->planes = c->raw + pos;
    pos += 4 * (uint64_t)c->total_hits;
    if (pos != c->raw_len) goto bad;
    return CG_OK;
bad:
    return cg_set_error(CG_ERR_IO, "%s: chunk %lld: corrupted: its %zu payload bytes do not match its event counts",
                        c->path, (long long)c->index, c->raw_len);
}

int64_t cg_cvox_chunk_raw_size(cg_cvox_reader *r, int64_t chunk) {
    CG_ASSERT(chunk >= 0 && chunk < r->nchunks);
    uint8_t h[CHUNK_HDR_LEN];
    chunk_entry got = {0};
    uint32_t raw_len = 0, comp_len = 0, pcrc = 0;
    if (read_at(r, h, CHUNK_HDR_LEN, r->chunks[chunk].offset) ||
        parse_chunk_header(r, h, r->chunks[chunk].offset, &got, &raw_len, &comp_len, &pcrc))
        return -1;
    return raw_len;
}

cg_cvox_chunk *cg_cvox_chunk_load(cg_cvox_reader *r, int64_t chunk) {
    CG_ASSERT(chunk >= 0 && chunk < r->nchunks);
    const chunk_entry *e = &r->chunks[chunk];
    uint8_t h[CHUNK_HDR_LEN];
    chunk_entry got = {0};
    uint32_t raw_len = 0, comp_len = 0, pcrc = 0;
    if (read_at(r, h, CHUNK_HDR_LEN, e->offset) ||
        parse_chunk_header(r, h, e->offset, &got, &raw_len, &comp_len, &pcrc))
        return NULL;
    if (got.n != e->n || got.first != e->first || got.len != e->len) {
        cg_set_error(CG_ERR_IO, "%s: chunk %lld at offset %llu disagrees with the index (events %u/%u, first "
                     "%lld/%lld, bytes %u/%u)",
                     r->path, (long long)chunk, (unsigned long long)e->offset, got.n, e->n, (long long)got.first,
                     (long long)e->first, got.len, e->len);
        return NULL;
    }
    /* the largest raw payload a chunk of n events can have: 8 + 4·ncond + 9 bytes per cell
     * per event (a varint of at most 5 bytes for indices < 2^26, plus 4 value bytes) */
    uint64_t max_raw = (uint64_t)e->n * (8 + 4 * (uint64_t)r->info.ncond + 9 * (uint64_t)r->info.geom.ncells);
    /* DEFLATE expands at most 1032:1: a bigger claim is corruption, not a reason to allocate */
    if (raw_len > max_raw || (uint64_t)raw_len > 1032 * (uint64_t)comp_len + 64) {
        cg_set_error(CG_ERR_IO, "%s: chunk %lld at offset %llu: impossible payload size %u for %u events and %u compressed "
                     "bytes", r->path, (long long)chunk, (unsigned long long)e->offset, raw_len, e->n, comp_len);
        return NULL;
    }
    if (r->comp_cap < comp_len) {
        free(r->comp);
        r->comp = malloc(comp_len);
        r->comp_cap = r->comp ? comp_len : 0;
        if (!r->comp) {
            cg_set_error(CG_ERR_NOMEM, "%s: out of memory reading chunk %lld (%u bytes)", r->path, (long long)chunk,
                         comp_len);
            return NULL;
        }
    }
    if (read_at(r, r->comp, comp_len, e->offset + CHUNK_HDR_LEN)) return NULL;
    if (crc(r->comp, comp_len) != pcrc) {
        cg_set_error(CG_ERR_IO, "%s: chunk %lld at offset %llu: CRC mismatch (the data is corrupted)", r->path,
                     (long long)chunk, (unsigned long long)e->offset);
        return NULL;
    }
    cg_cvox_chunk *c = cg_xcalloc(1, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", r->path);
    c->index = chunk;
    c->first = e->first;
    c->n = e->n;
    c->ncells = r->info.geom.ncells;
    c->ncond = r->info.ncond;
    c->raw_len = raw_len;
    c->raw = malloc(raw_len ? raw_len : 1);
    if (!c->raw) {
        cg_set_error(CG_ERR_NOMEM, "%s: out of memory decompressing chunk %lld (%u bytes)", r->path,
                     (long long)chunk, raw_len);
        cg_cvox_chunk_free(c);
        return NULL;
    }
    uLongf out = raw_len;
    int zr = uncompress(c->raw, &out, r->comp, comp_len);
    if (zr != Z_OK || out != raw_len) {
        cg_set_error(CG_ERR_IO, "%s: chunk %lld at offset %llu: zlib stream is corrupted (%s)", r->path,
                     (long long)chunk, (unsigned long long)e->offset,
                     zr == Z_OK ? "wrong length" : zr == Z_BUF_ERROR ? "longer than announced" : zError(zr));
        cg_cvox_chunk_free(c);
        return NULL;
    }
    if (chunk_layout(c)) {
        cg_cvox_chunk_free(c);
        return NULL;
    }
    return c;
}

int64_t cg_cvox_chunk_nhits(const cg_cvox_chunk *c, int64_t k) {
    CG_ASSERT(k >= 0 && k < c->n);
    return c->hit_off[k + 1] - c->hit_off[k];
}

cg_status cg_cvox_chunk_event(const cg_cvox_chunk *c, int64_t k, float *dense, float *cond) {
    CG_ASSERT(k >= 0 && k < c->n);
    if (cond && c->ncond) memcpy(cond, c->cond + 4 * (size_t)k * (size_t)c->ncond, 4 * (size_t)c->ncond);
    if (!dense) return CG_OK;
    memset(dense, 0, (size_t)c->ncells * sizeof(float));
    const uint8_t *p = c->deltas + c->delta_off[k], *end = c->deltas + c->delta_off[k + 1];
    const int64_t h0 = c->hit_off[k], nh = c->hit_off[k + 1] - h0, H = c->total_hits;
    const uint8_t *b0 = c->planes + h0, *b1 = b0 + H, *b2 = b1 + H, *b3 = b2 + H;
    int64_t idx = -1;
    for (int64_t j = 0; j < nh; j++) {
        /* LEB128: the common one-byte case first */
        uint64_t v;
        if (p < end && *p < 0x80) {
            v = *p++;
        } else {
            v = 0;
            int shift = 0;
            for (;;) {
                if (p >= end || shift > 35) goto bad;
                uint8_t b = *p++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) break;
                shift += 7;
            }
        }
        if (v >= (uint64_t)(c->ncells - 1 - idx)) goto bad;
        idx += (int64_t)v + 1;
        uint32_t bits = (uint32_t)b0[j] | (uint32_t)b1[j] << 8 | (uint32_t)b2[j] << 16 | (uint32_t)b3[j] << 24;
        memcpy(dense + idx, &bits, 4);
    }
    if (p != end) goto bad;
    return CG_OK;
bad:
    return cg_set_error(CG_ERR_IO, "%s: chunk %lld, event %lld: corrupted cell index data", c->path,
                        (long long)c->index, (long long)(c->first + k));
}

/* The chunk holding event ev (binary search on first events). */
static int64_t find_chunk(const cg_cvox_reader *r, int64_t ev) {
    int64_t lo = 0, hi = r->nchunks - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (r->chunks[mid].first <= ev) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

cg_status cg_cvox_read(cg_cvox_reader *r, int64_t first, int64_t n, float *dense, float *cond) {
    if (first < 0 || n < 0 || first > r->info.nevents - n)
        return cg_set_error(CG_ERR_INVALID, "%s: events %lld..%lld requested, the file has %lld", r->path,
                            (long long)first, (long long)(first + n - 1), (long long)r->info.nevents);
    const int64_t ncells = r->info.geom.ncells;
    const int ncond = r->info.ncond;
    int64_t done = 0;
    while (done < n) {
        int64_t ev = first + done;
        if (!r->cache || ev < r->cache->first || ev >= r->cache->first + r->cache->n) {
            cg_cvox_chunk_free(r->cache);
            r->cache = cg_cvox_chunk_load(r, find_chunk(r, ev));
            if (!r->cache) return cg_last_status();
        }
        const cg_cvox_chunk *c = r->cache;
        for (int64_t k = ev - c->first; k < c->n && done < n; k++, done++) {
            cg_status st = cg_cvox_chunk_event(c, k, dense ? dense + done * ncells : NULL,
                                               cond ? cond + done * ncond : NULL);
            if (st) return st;
        }
    }
    return CG_OK;
}

void cg_cvox_close(cg_cvox_reader *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    cg_cvox_chunk_free(r->cache);
    free(r->chunks);
    free(r->comp);
    free(r);
}

/* --------------------------------------------------------------------- writing ---- */

struct cg_cvox_writer {
    char path[512], tmp[600];
    int fd;
    uint64_t pos;          /* bytes written so far */
    cg_cvox_info info;
    int events_per_chunk, level;
    int64_t nevents;
    /* the chunk being filled */
    int64_t chunk_n;
    bytes cond, nhits, nbytes, deltas;
    bytes values;          /* u32 bit patterns, interleaved; split into planes on flush */
    bytes raw, comp;       /* scratch for flushing */
    /* the index */
    chunk_entry *chunks;
    int64_t nchunks, chunks_cap;
    cg_status failed;      /* sticky: after a failure, write/finish only report it */
    char fail_msg[1024];   /* ... with this message */
};

/* Record a failure: the status is sticky and its message is kept for later calls. */
static cg_status writer_fail(cg_cvox_writer *w, cg_status st) {
    w->failed = st;
    snprintf(w->fail_msg, sizeof w->fail_msg, "%s", cg_last_error());
    return st;
}

static cg_status write_all(cg_cvox_writer *w, const void *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(w->fd, (const uint8_t *)p + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            return writer_fail(w, cg_set_error(CG_ERR_IO, "%s: write failed at offset %llu: %s%s", w->path,
                                               (unsigned long long)(w->pos + done), strerror(errno),
                                               errno == ENOSPC || errno == EFBIG ? " (disk full?)" : ""));
        done += (size_t)k;
    }
    w->pos += n;
    return CG_OK;
}

cg_cvox_writer *cg_cvox_create(const char *path, const cg_cvox_info *info, int events_per_chunk) {
    cg_geometry g = info->geom;
    if (cg_geometry_finish(&g) != CG_OK) {
        cg_set_error(CG_ERR_INVALID, "%s: %s", path, cg_last_error());
        return NULL;
    }
    if (g.ncells > MAX_CELLS) {
        cg_set_error(CG_ERR_INVALID, "%s: geometry has %lld cells; .cvox stores at most %lld per event", path,
                     (long long)g.ncells, (long long)MAX_CELLS);
        return NULL;
    }
    if (info->ncond < 0 || info->ncond > CG_CVOX_MAX_COND) {
        cg_set_error(CG_ERR_INVALID, "%s: %d conditioning values (at most %d)", path, info->ncond, CG_CVOX_MAX_COND);
        return NULL;
    }
    if (events_per_chunk < 0) {
        cg_set_error(CG_ERR_INVALID, "%s: events per chunk %d < 0", path, events_per_chunk);
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) { /* never rename over /dev/null, a directory, ... */
        cg_set_error(CG_ERR_INVALID, "%s: exists and is not a regular file; not replacing it", path);
        return NULL;
    }
    cg_cvox_writer *w = cg_xcalloc(1, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.partial.%ld", path, (long)getpid());
    w->info = *info;
    w->info.geom = g;
    w->info.nevents = 0;
    w->events_per_chunk = events_per_chunk ? events_per_chunk : DEFAULT_EVENTS_PER_CHUNK;
    w->level = CG_CVOX_LEVEL;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        cg_set_error(CG_ERR_IO, "%s: cannot create %s: %s", path, w->tmp, strerror(errno));
        free(w);
        return NULL;
    }
    size_t hlen = cg_cvox_info_encode(&w->info, w->events_per_chunk, NULL, 0);
    uint8_t *h = cg_xmalloc(PREAMBLE_LEN + hlen + 4);
    memcpy(h, MAGIC, 8);
    put_u16(h + 8, CVOX_MAJOR);
    put_u16(h + 10, CVOX_MINOR);
    put_u32(h + 12, (uint32_t)hlen);
    cg_cvox_info_encode(&w->info, w->events_per_chunk, h + PREAMBLE_LEN, hlen);
    put_u32(h + PREAMBLE_LEN + hlen, crc(h, PREAMBLE_LEN + hlen));
    cg_status st = write_all(w, h, PREAMBLE_LEN + hlen + 4);
    free(h);
    if (st) {
        cg_cvox_abort(w);
        return NULL;
    }
    return w;
}

void cg_cvox_set_level(cg_cvox_writer *w, int level) { w->level = level < 1 ? 1 : level > 9 ? 9 : level; }

/* Compress the buffered events into one chunk and append it. */
static cg_status flush_chunk(cg_cvox_writer *w) {
    if (w->chunk_n == 0) return CG_OK;
    size_t H = w->values.n / 4;
    w->raw.n = 0;
    uint8_t *p = bytes_grow(&w->raw, w->cond.n + w->nhits.n + w->nbytes.n + w->deltas.n + w->values.n);
    const bytes *cols[4] = {&w->cond, &w->nhits, &w->nbytes, &w->deltas};
    for (int k = 0; k < 4; k++)
        if (cols[k]->n) {
            memcpy(p, cols[k]->p, cols[k]->n);
            p += cols[k]->n;
        }
    for (int b = 0; b < 4; b++) /* byte planes */
        for (size_t j = 0; j < H; j++) *p++ = w->values.p[4 * j + b];
    uLongf comp_len = compressBound(w->raw.n);
    w->comp.n = 0;
    bytes_grow(&w->comp, CHUNK_HDR_LEN + comp_len);
    int zr = compress2(w->comp.p + CHUNK_HDR_LEN, &comp_len, w->raw.p, w->raw.n, w->level);
    if (zr != Z_OK || comp_len + CHUNK_HDR_LEN > UINT32_MAX)
        return writer_fail(w, cg_set_error(CG_ERR_IO, "%s: zlib failed compressing chunk %lld (%s)", w->path,
                                           (long long)w->nchunks, zError(zr)));
    uint8_t *h = w->comp.p;
    memcpy(h, CHUNK_MAGIC, 4);
    put_u32(h + 4, (uint32_t)w->chunk_n);
    put_u64(h + 8, (uint64_t)(w->nevents - w->chunk_n));
    put_u32(h + 16, (uint32_t)w->raw.n);
    put_u32(h + 20, (uint32_t)comp_len);
    put_u32(h + 24, crc(h + CHUNK_HDR_LEN, comp_len));
    put_u32(h + 28, crc(h, 28));
    chunk_entry e = {w->pos, w->nevents - w->chunk_n, (uint32_t)w->chunk_n, (uint32_t)(CHUNK_HDR_LEN + comp_len)};
    if (write_all(w, h, CHUNK_HDR_LEN + comp_len)) return w->failed;
    if (w->nchunks == w->chunks_cap) {
        w->chunks_cap = w->chunks_cap ? 2 * w->chunks_cap : 64;
        w->chunks = cg_xrealloc(w->chunks, (size_t)w->chunks_cap * sizeof *w->chunks);
    }
    w->chunks[w->nchunks++] = e;
    w->chunk_n = 0;
    w->cond.n = w->nhits.n = w->nbytes.n = w->deltas.n = w->values.n = 0;
    return CG_OK;
}

cg_status cg_cvox_write(cg_cvox_writer *w, int64_t n, const float *dense, const float *cond) {
    if (w->failed) return cg_set_error(w->failed, "%s", w->fail_msg); /* an earlier write failed */
    if (n < 0) return cg_set_error(CG_ERR_INVALID, "%s: cannot write %lld events", w->path, (long long)n);
    if (n > 0 && (!dense || (w->info.ncond > 0 && !cond)))
        return cg_set_error(CG_ERR_INVALID, "%s: cg_cvox_write needs the showers%s", w->path,
                            w->info.ncond ? " and their conditioning values" : "");
    const int64_t ncells = w->info.geom.ncells;
    const uint32_t *bits = (const uint32_t *)(const void *)dense;
    for (int64_t e = 0; e < n; e++) {
        const uint32_t *ev = bits + e * ncells;
        if (w->info.ncond)
            memcpy(bytes_grow(&w->cond, 4 * (size_t)w->info.ncond), cond + e * w->info.ncond,
                   4 * (size_t)w->info.ncond);
        size_t d0 = w->deltas.n;
        uint32_t nh = 0;
        int64_t prev = -1;
        for (int64_t i = 0; i < ncells; i++) {
            if (!ev[i]) continue;
            uint64_t v = (uint64_t)(i - prev - 1);
            uint8_t *q = bytes_grow(&w->deltas, v < 0x80 ? 1 : 5);
            if (v < 0x80) {
                *q = (uint8_t)v;
            } else {
                int k = 0;
                do {
                    q[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
                    v >>= 7;
                } while (v);
                w->deltas.n -= (size_t)(5 - k);
            }
            memcpy(bytes_grow(&w->values, 4), &ev[i], 4);
            prev = i;
            nh++;
        }
        put_u32(bytes_grow(&w->nhits, 4), nh);
        put_u32(bytes_grow(&w->nbytes, 4), (uint32_t)(w->deltas.n - d0));
        w->chunk_n++;
        w->nevents++;
        size_t raw = w->cond.n + w->nhits.n + w->nbytes.n + w->deltas.n + w->values.n;
        if (w->chunk_n >= w->events_per_chunk || raw >= FLUSH_RAW_BYTES)
            if (flush_chunk(w)) return w->failed;
    }
    return CG_OK;
}

static void writer_free(cg_cvox_writer *w) {
    free(w->cond.p);
    free(w->nhits.p);
    free(w->nbytes.p);
    free(w->deltas.p);
    free(w->values.p);
    free(w->raw.p);
    free(w->comp.p);
    free(w->chunks);
    free(w);
}

void cg_cvox_abort(cg_cvox_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    unlink(w->tmp);
    writer_free(w);
}

/* fsync the directory holding path, so that the rename itself is durable. */
static void sync_dir(const char *path) {
    char buf[600];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

cg_status cg_cvox_finish(cg_cvox_writer *w) {
    cg_status st = w->failed;
    if (st) cg_set_error(st, "%s", w->fail_msg);
    if (!st) st = flush_chunk(w);
    if (!st) {
        uint64_t ioff = w->pos;
        size_t ilen = INDEX_HDR_LEN + (size_t)w->nchunks * INDEX_ENTRY_LEN + 4;
        uint8_t *ix = cg_xcalloc(1, ilen + TRAILER_LEN);
        memcpy(ix, INDEX_MAGIC, 4);
        put_u64(ix + 8, (uint64_t)w->nchunks);
        put_u64(ix + 16, (uint64_t)w->nevents);
        for (int64_t i = 0; i < w->nchunks; i++) {
            uint8_t *e = ix + INDEX_HDR_LEN + i * INDEX_ENTRY_LEN;
            put_u64(e, w->chunks[i].offset);
            put_u64(e + 8, (uint64_t)w->chunks[i].first);
            put_u32(e + 16, w->chunks[i].n);
            put_u32(e + 20, w->chunks[i].len);
        }
        put_u32(ix + ilen - 4, crc(ix, ilen - 4));
        uint8_t *t = ix + ilen;
        put_u64(t, ioff);
        put_u64(t + 8, (uint64_t)w->nevents);
        put_u32(t + 16, crc(t, 16));
        memcpy(t + 20, TRAILER_MAGIC, 4);
        st = write_all(w, ix, ilen + TRAILER_LEN);
        free(ix);
    }
    if (!st && fsync(w->fd) != 0)
        st = cg_set_error(CG_ERR_IO, "%s: fsync failed: %s%s", w->path, strerror(errno),
                          errno == ENOSPC ? " (disk full?)" : "");
    if (!st) {
        int rc = close(w->fd);
        w->fd = -1;
        if (rc != 0)
            st = cg_set_error(CG_ERR_IO, "%s: close failed: %s%s", w->path, strerror(errno),
                              errno == ENOSPC ? " (disk full?)" : "");
    }
    if (!st && rename(w->tmp, w->path) != 0)
        st = cg_set_error(CG_ERR_IO, "%s: cannot rename %s into place: %s", w->path, w->tmp, strerror(errno));
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", cg_last_error());
        cg_cvox_abort(w); /* removes the temporary file */
        return cg_set_error(st, "%s", msg);
    }
    sync_dir(w->path);
    writer_free(w);
    return CG_OK;
}
