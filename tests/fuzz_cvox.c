/*
 * tests/fuzz_cvox.c — a libFuzzer target for the .cvox reader (io/cvox.c). Build and run
 * with tests/fuzz_cvox.sh (clang -fsanitize=fuzzer,address,undefined).
 *
 * CRC32s stop almost every random mutation at the first check, so the first input byte
 * picks how deep the fuzzer goes:
 *   mode 0: the rest is a file, read as it is (the structural and CRC checks);
 *   mode 1: the rest is a file whose CRCs are recomputed first (header, chunk headers,
 *           payloads, index, trailer), so mutations reach the lengths, offsets, index
 *           entries and zlib streams behind them;
 *   mode 2: the rest describes a small geometry and an uncompressed chunk payload, which is
 *           wrapped into a valid file (compressed, CRCs, index, trailer), so mutations reach
 *           the payload layout checks and the event decoder.
 * Every file is opened (normally and with salvage) and all its events decoded densely
 * through cg_cvox_read and the chunk API. Errors are expected; crashes, sanitizer reports,
 * hangs and out-of-bounds reads are the findings.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "io/cvox.h"

static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t crc(const uint8_t *p, size_t n) { return (uint32_t)crc32(crc32(0, Z_NULL, 0), p, (uInt)n); }

/* Recompute every CRC the file claims to have, following its own (possibly bogus) lengths. */
static void fix_crcs(uint8_t *d, size_t n) {
    if (n < 20) return;
    uint64_t hlen = get32(d + 12);
    if (16 + hlen + 4 > n) return;
    put32(d + 16 + hlen, crc(d, 16 + hlen));
    uint64_t off = 16 + hlen + 4;
    while (off + 32 <= n && memcmp(d + off, "CVCH", 4) == 0) {
        uint64_t comp = get32(d + off + 20);
        if (off + 32 + comp <= n) put32(d + off + 24, crc(d + off + 32, comp));
        put32(d + off + 28, crc(d + off, 28));
        off += 32 + comp;
    }
    if (n < 24) return;
    uint8_t *t = d + n - 24;
    uint64_t ioff = get64(t);
    if (n >= 52 && ioff <= n - 52) put32(d + n - 28, crc(d + ioff, n - 24 - 4 - ioff));
    put32(t + 16, crc(t, 16));
}

/* Mode 2: a file around a fuzzed raw payload. */
static uint8_t *wrap_payload(const uint8_t *d, size_t n, size_t *out_n) {
    if (n < 5) return NULL;
    cg_cvox_info info;
    memset(&info, 0, sizeof info);
    if (cg_geometry_grid(&info.geom, "fuzz", 1 + d[0] % 4, 1 + d[1] % 9, 1 + d[2] % 9, 5, 5, 4) != CG_OK) return NULL;
    info.ncond = d[3] % 4;
    for (int i = 0; i < info.ncond; i++) snprintf(info.cond_name[i], CG_CVOX_NAME_LEN, "c%d", i);
    uint32_t nev = 1 + d[4] % 16;
    const uint8_t *raw = d + 5;
    size_t raw_n = n - 5;
    size_t hlen = cg_cvox_info_encode(&info, 0, NULL, 0);
    uLongf comp_n = compressBound(raw_n);
    size_t total = 16 + hlen + 4 + 32 + comp_n + 24 + 24 + 4 + 24;
    uint8_t *f = calloc(1, total);
    static const uint8_t magic[8] = {0x89, 'C', 'V', 'O', 'X', '\r', '\n', 0x1a};
    memcpy(f, magic, 8);
    f[8] = 1;
    put32(f + 12, (uint32_t)hlen);
    cg_cvox_info_encode(&info, 0, f + 16, hlen);
    put32(f + 16 + hlen, crc(f, 16 + hlen));
    uint8_t *ch = f + 16 + hlen + 4;
    compress2(ch + 32, &comp_n, raw, raw_n, 1);
    memcpy(ch, "CVCH", 4);
    put32(ch + 4, nev);
    put64(ch + 8, 0);
    put32(ch + 16, (uint32_t)raw_n);
    put32(ch + 20, (uint32_t)comp_n);
    put32(ch + 24, crc(ch + 32, comp_n));
    put32(ch + 28, crc(ch, 28));
    uint64_t coff = (uint64_t)(ch - f), ioff = coff + 32 + comp_n;
    uint8_t *ix = f + ioff;
    memcpy(ix, "CVIX", 4);
    put64(ix + 8, 1);
    put64(ix + 16, nev);
    put64(ix + 24, coff);
    put64(ix + 32, 0);
    put32(ix + 40, nev);
    put32(ix + 44, (uint32_t)(32 + comp_n));
    put32(ix + 48, crc(ix, 48));
    uint8_t *t = ix + 52;
    put64(t, ioff);
    put64(t + 8, nev);
    put32(t + 16, crc(t, 16));
    memcpy(t + 20, "CVND", 4);
    *out_n = (size_t)(t + 24 - f);
    return f;
}

static void read_everything(cg_cvox_reader *r) {
    const cg_cvox_info *info = cg_cvox_info_of(r);
    if (info->geom.ncells > (1 << 20)) return; /* a 4 MB event is enough to find bugs */
    float *x = malloc((size_t)info->geom.ncells * sizeof(float)), c[CG_CVOX_MAX_COND];
    for (int64_t e = 0; e < info->nevents && e < 4096; e++)
        if (cg_cvox_read(r, e, 1, x, c) != CG_OK) break;
    for (int64_t ch = 0; ch < cg_cvox_nchunks(r) && ch < 64; ch++) {
        cg_cvox_chunk_raw_size(r, ch);
        cg_cvox_chunk *k = cg_cvox_chunk_load(r, ch);
        if (!k) continue;
        int64_t first, n;
        cg_cvox_chunk_span(r, ch, &first, &n);
        for (int64_t i = 0; i < n; i++) {
            cg_cvox_chunk_nhits(k, i);
            cg_cvox_chunk_event(k, i, x, c);
        }
        cg_cvox_chunk_free(k);
    }
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 3;
    size_t n = size - 1;
    uint8_t *buf = NULL;
    if (mode == 2) {
        buf = wrap_payload(data + 1, n, &n);
        if (!buf) return 0;
    } else {
        buf = malloc(n ? n : 1);
        memcpy(buf, data + 1, n);
        if (mode == 1) fix_crcs(buf, n);
    }
    int fd = memfd_create("cvox", 0);
    if (fd < 0) {
        free(buf);
        return 0;
    }
    if (write(fd, buf, n) == (ssize_t)n) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        cg_cvox_reader *r = cg_cvox_open(path);
        if (r) {
            read_everything(r);
            cg_cvox_close(r);
        }
        int64_t dropped;
        r = cg_cvox_open_salvage(path, &dropped);
        if (r) {
            read_everything(r);
            cg_cvox_close(r);
        }
    }
    close(fd);
    free(buf);
    return 0;
}
