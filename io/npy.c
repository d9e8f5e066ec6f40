/*
 * io/npy.c — .npy reader and writer (see npy.h).
 *
 * The format (numpy/lib/format.py): the magic "\x93NUMPY", a major and a minor version
 * byte, the header length (uint16 little-endian in 1.0, uint32 in 2.0 and 3.0), then the
 * header, a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ended by '\n', then the raw data. The reader parses that literal
 * by hand: three keys, each exactly once, in any order; strings in either quote style;
 * shape a tuple of non-negative integers ("3L" from Python 2 writers is accepted).
 * Every number in the header is checked against the file's size before it is used.
 */
#include "io/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io/npy.c reads and writes little-endian data in place: port it before using a big-endian host"
#endif

static const char MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* ------------------------------------------------------ header parsing ---- */

typedef struct {
    const char *p, *end;
} scan;

static void skip_ws(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static bool eat(scan *s, char c) {
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* A quoted string ('...' or "...") of printable ASCII without escapes: none of the values
 * we accept needs more, and what goes into an error message stays readable. */
static bool parse_str(scan *s, char *out, size_t n) {
    skip_ws(s);
    if (s->p >= s->end || (*s->p != '\'' && *s->p != '"')) return false;
    char q = *s->p++;
    size_t k = 0;
    while (s->p < s->end && *s->p != q) {
        unsigned char ch = (unsigned char)*s->p;
        if (ch == '\\' || ch < 0x20 || ch > 0x7e || k + 1 >= n) return false; /* printable ASCII only */
        out[k++] = *s->p++;
    }
    if (s->p >= s->end) return false;
    s->p++;
    out[k] = 0;
    return true;
}

static bool parse_word(scan *s, const char *w) {
    skip_ws(s);
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return false;
    s->p += n;
    return true;
}

/* A non-negative decimal integer (optionally with Python 2's 'L'), at most 2^62. */
static bool parse_dim(scan *s, int64_t *v) {
    skip_ws(s);
    int64_t x = 0;
    const char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        if (x > ((int64_t)1 << 62) / 10) return false;
        x = x * 10 + (*s->p++ - '0');
    }
    if (s->p == start) return false;
    if (s->p < s->end && (*s->p == 'L' || *s->p == 'l')) s->p++;
    *v = x;
    return true;
}

/* "(a, b, c)" with an optional trailing comma; "()" is rank 0. Up to 32 axes are parsed
 * so that a rank too large for calograd gets its own message. */
#define NPY_MAX_PARSE_DIMS 32
static bool parse_shape(scan *s, int *ndim, int64_t *shape) {
    if (!eat(s, '(')) return false;
    int n = 0;
    if (eat(s, ')')) {
        *ndim = 0;
        return true;
    }
    for (;;) {
        if (n >= NPY_MAX_PARSE_DIMS || !parse_dim(s, &shape[n])) return false;
        n++;
        bool comma = eat(s, ',');
        if (eat(s, ')')) break;
        if (!comma) return false;
    }
    *ndim = n;
    return true;
}

typedef struct {
    char descr[64];
    bool fortran;
    int ndim;
    int64_t shape[NPY_MAX_PARSE_DIMS];
} npy_header;

/* Parse the dict literal; on failure `why` says what was wrong. */
static bool parse_header(const char *text, size_t len, npy_header *h, const char **why) {
    scan s = {text, text + len};
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    *why = "the header is not a Python dict";
    if (!eat(&s, '{')) return false;
    for (;;) {
        if (eat(&s, '}')) break;
        char key[32];
        if (!parse_str(&s, key, sizeof key) || !eat(&s, ':')) {
            *why = "the header is not a dict of quoted keys";
            return false;
        }
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            seen_descr = true;
            skip_ws(&s);
            if (s.p < s.end && (*s.p == '[' || *s.p == '(')) {
                *why = "a structured dtype is not supported (float32 '<f4' or float64 '<f8' only)";
                return false;
            }
            if (!parse_str(&s, h->descr, sizeof h->descr)) {
                *why = "the header's 'descr' is not a string";
                return false;
            }
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
            seen_fortran = true;
            if (parse_word(&s, "True")) h->fortran = true;
            else if (parse_word(&s, "False")) h->fortran = false;
            else {
                *why = "the header's 'fortran_order' is not True or False";
                return false;
            }
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            seen_shape = true;
            if (!parse_shape(&s, &h->ndim, h->shape)) {
                *why = "the header's 'shape' is not a tuple of non-negative integers";
                return false;
            }
        } else {
            *why = "the header has an unknown or repeated key";
            return false;
        }
        if (!eat(&s, ',')) {
            if (eat(&s, '}')) break;
            *why = "the header dict is malformed";
            return false;
        }
    }
    skip_ws(&s);
    while (s.p < s.end && *s.p == 0) s.p++; /* some writers pad with NULs */
    if (s.p != s.end) {
        *why = "unexpected text after the header dict";
        return false;
    }
    if (!seen_descr || !seen_fortran || !seen_shape) {
        *why = "the header lacks one of 'descr', 'fortran_order', 'shape'";
        return false;
    }
    return true;
}

/* ------------------------------------------------------------- reading ---- */

/* Fail with "<path>: <message>" and release what was opened. */
#define FAIL(...)                                             \
    do {                                                      \
        char msg_[512];                                       \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);             \
        cg_set_error(CG_ERR_IO, "%s: %s", path, msg_);        \
        goto fail;                                            \
    } while (0)

cg_tensor *cg_npy_load(const char *path, cg_device dev) {
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    double *chunk = NULL;
    cg_tensor *t = NULL;
    if (!f) {
        cg_set_error(CG_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) FAIL("cannot stat (%s)", strerror(errno));
    if (!S_ISREG(st.st_mode)) FAIL("not a regular file");
    int64_t size = (int64_t)st.st_size;

    unsigned char pre[12];
    size_t got = fread(pre, 1, sizeof pre < (size_t)size ? sizeof pre : (size_t)size, f);
    if (got < sizeof MAGIC || memcmp(pre, MAGIC, sizeof MAGIC) != 0)
        FAIL("not a .npy file (it does not start with the magic \\x93NUMPY)");
    if (got < 8) FAIL("truncated header (%lld bytes in the file)", (long long)size);
    int major = pre[6], minor = pre[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        FAIL("unsupported .npy format version %d.%d (1.0, 2.0 and 3.0 are read)", major, minor);
    int64_t start = major == 1 ? 10 : 12, hlen;
    if ((int64_t)got < start) FAIL("truncated header (%lld bytes in the file)", (long long)size);
    hlen = major == 1 ? (int64_t)(pre[8] | pre[9] << 8)
                      : (int64_t)((uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 |
                                  (uint32_t)pre[11] << 24);
    if (start + hlen > size)
        FAIL("truncated header (it says %lld bytes, the file has %lld after the preamble)", (long long)hlen,
             (long long)(size - start));

    text = malloc((size_t)hlen + 1);
    if (!text) FAIL("out of memory reading a %lld-byte header", (long long)hlen);
    if (fseek(f, (long)start, SEEK_SET) != 0 || fread(text, 1, (size_t)hlen, f) != (size_t)hlen)
        FAIL("read error in the header");
    text[hlen] = 0;
    npy_header h;
    memset(&h, 0, sizeof h);
    const char *why;
    if (!parse_header(text, (size_t)hlen, &h, &why)) FAIL("%s", why);

    int item;
    if (strcmp(h.descr, "<f4") == 0) item = 4;
    else if (strcmp(h.descr, "<f8") == 0) item = 8;
    else if (h.descr[0] == '>' && (strcmp(h.descr + 1, "f4") == 0 || strcmp(h.descr + 1, "f8") == 0))
        FAIL("big-endian dtype '%s' is not supported (save it as '<f4' or '<f8')", h.descr);
    else
        FAIL("dtype '%s' is not supported (float32 '<f4' or float64 '<f8' only)", h.descr);
    if (h.fortran) FAIL("Fortran-order arrays are not supported (save a C-order array: np.ascontiguousarray)");
    if (h.ndim > CG_MAX_DIMS) FAIL("rank %d is more than the %d axes calograd tensors have", h.ndim, CG_MAX_DIMS);

    /* the shape must account for exactly the bytes after the header */
    int64_t avail = size - start - hlen, numel = 1;
    bool too_big = false, empty = false;
    for (int i = 0; i < h.ndim; i++) empty |= h.shape[i] == 0;
    for (int i = 0; i < h.ndim && !empty; i++) {
        if (numel > INT64_MAX / 8 / h.shape[i]) too_big = true;
        else numel *= h.shape[i];
    }
    if (empty) numel = 0;
    char sh[160];
    cg_shape_str(h.ndim, h.shape, sh, sizeof sh);
    if (too_big) FAIL("shape %s is impossibly large (the file has %lld bytes of data)", sh, (long long)avail);
    if (numel * item > avail)
        FAIL("truncated data: shape %s of '%s' needs %lld bytes, the file has %lld after its header", sh, h.descr,
             (long long)(numel * item), (long long)avail);
    if (numel * item < avail)
        FAIL("%lld bytes of trailing data after the array (shape %s of '%s' takes %lld)",
             (long long)(avail - numel * item), sh, h.descr, (long long)(numel * item));

    t = cg_tensor_new(CG_CPU, h.ndim, h.shape);
    if (!t) {
        char why_mem[256];
        snprintf(why_mem, sizeof why_mem, "%s", cg_last_error()); /* copy: the buffer is reused */
        cg_set_error(CG_ERR_NOMEM, "%s: %s for an array of shape %s", path, why_mem, sh);
        goto fail;
    }
    float *dst = cg_data(t);
    if (item == 4) {
        if ((int64_t)fread(dst, 4, (size_t)numel, f) != numel) FAIL("read error in the data");
    } else {
        enum { CHUNK = 8192 };
        chunk = malloc(CHUNK * sizeof *chunk);
        if (!chunk) FAIL("out of memory");
        for (int64_t i = 0; i < numel; i += CHUNK) {
            size_t n = (size_t)(numel - i < CHUNK ? numel - i : CHUNK);
            if (fread(chunk, 8, n, f) != n) FAIL("read error in the data");
            for (size_t k = 0; k < n; k++) dst[i + (int64_t)k] = (float)chunk[k];
        }
    }
    free(chunk);
    free(text);
    fclose(f);
    if (dev != CG_CPU && cg_tensor_move_(t, dev) != CG_OK) {
        cg_tensor_free(t);
        return NULL;
    }
    return t;

fail:
    cg_tensor_free(t);
    free(chunk);
    free(text);
    fclose(f);
    return NULL;
}

/* ------------------------------------------------------------- writing ---- */

cg_status cg_npy_write(const char *path, int ndim, const int64_t *shape, const float *data) {
    CG_ASSERT(ndim >= 0 && ndim <= CG_MAX_DIMS);
    /* header: the dict, then spaces and '\n' so that the data starts at a multiple of 64 */
    char dims[160] = "", hdr[256];
    size_t k = 0;
    for (int i = 0; i < ndim; i++)
        k += (size_t)snprintf(dims + k, sizeof dims - k, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
    if (ndim > 1) dims[k - 1] = 0; /* "(2, 3)" but "(3,)" */
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    int total = 10 + n + 1, pad = (64 - total % 64) % 64;
    memset(hdr + n, ' ', (size_t)pad);
    hdr[n + pad] = '\n';
    uint16_t hlen = (uint16_t)(n + pad + 1);
    unsigned char pre[10];
    memcpy(pre, MAGIC, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);

    /* temporary name in the same folder, so that rename() is atomic */
    size_t lp = strlen(path) + 32;
    char *tmp = cg_xmalloc(lp);
    snprintf(tmp, lp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cg_status st = cg_set_error(CG_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
        free(tmp);
        return st;
    }
    size_t numel = (size_t)cg_shape_numel(ndim, shape);
    errno = 0;
    bool ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(hdr, 1, hlen, f) == hlen &&
              fwrite(data, sizeof(float), numel, f) == numel && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        int err = errno ? errno : EIO;
        remove(tmp);
        free(tmp);
        return cg_set_error(CG_ERR_IO, "%s: write failed (%s)", path, strerror(err));
    }
    free(tmp);
    return CG_OK;
}

cg_status cg_npy_save(const char *path, const cg_tensor *t) {
    float *host = cg_tensor_host_copy(t);
    if (!host) return cg_last_status();
    cg_status st = cg_npy_write(path, t->ndim, t->shape, host);
    free(host);
    return st;
}
