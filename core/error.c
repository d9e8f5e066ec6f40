/* core/error.c — the thread-local last-error message and the abort path. */
#include "core/error.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char g_msg[1024];
static _Thread_local cg_status g_code;

cg_status cg_set_error(cg_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    g_code = code;
    return code;
}

const char *cg_last_error(void) { return g_msg; }
cg_status cg_last_status(void) { return g_code; }

void cg_clear_error(void) {
    g_msg[0] = '\0';
    g_code = CG_OK;
}

void cg_fatal(const char *file, int line, const char *expr, const char *hint) {
    fflush(stdout);
    fprintf(stderr, "calograd: internal error at %s:%d: %s failed", file, line, expr);
    if (hint && *hint) fprintf(stderr, " (%s)", hint);
    fprintf(stderr, "\n");
    abort();
}

void *cg_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) cg_fatal(__FILE__, __LINE__, "malloc", "out of host memory");
    return p;
}

void *cg_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) cg_fatal(__FILE__, __LINE__, "calloc", "out of host memory");
    return p;
}

void *cg_xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) cg_fatal(__FILE__, __LINE__, "realloc", "out of host memory");
    return q;
}
