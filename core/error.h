/*
 * core/error.h — how calograd reports failure.
 *
 * Two kinds of failure, two mechanisms:
 *
 *  - Errors a user can cause (a bad file, a bad flag, shapes that do not fit, out of memory):
 *    the function returns a status (CG_OK == 0 on success) or NULL, and leaves a one-line
 *    message that cg_last_error() returns. The message names the problem and, where it
 *    helps, the fix. Set it with cg_set_error(). The CLI prints it and exits with code 2.
 *
 *  - Programmer errors (a NULL that can never be NULL, an index past an array): CG_ASSERT
 *    aborts with file:line and the failed expression. These are bugs, not user mistakes.
 *
 * The message buffer is thread-local, so worker threads do not overwrite each other.
 */
#ifndef CG_ERROR_H
#define CG_ERROR_H

#include <stdio.h>
#include <stdlib.h>

typedef enum {
    CG_OK = 0,
    CG_ERR_INVALID = 1,   /* bad argument, shape or flag */
    CG_ERR_IO = 2,        /* file missing, unreadable, truncated, corrupted, disk full */
    CG_ERR_NOMEM = 3,     /* allocation failed */
    CG_ERR_DEVICE = 4,    /* device missing or a device call failed */
    CG_ERR_NUMERIC = 5,   /* NaN or inf where a finite value is required */
} cg_status;

/* Record a printf-style message for the caller; returns `code` so a function can write
 * `return cg_set_error(CG_ERR_INVALID, "...")`. */
cg_status cg_set_error(cg_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last message set on this thread ("" when none). */
const char *cg_last_error(void);
/* The status code of the last error on this thread (CG_OK when none). */
cg_status cg_last_status(void);
/* Forget the last error. */
void cg_clear_error(void);

/* Abort with a report: used by the CHECK macros. Never returns. */
void cg_fatal(const char *file, int line, const char *expr, const char *hint)
    __attribute__((noreturn));

/* Programmer errors: abort with file:line and the failed expression. */
#define CG_ASSERT(cond) \
    do { if (!(cond)) cg_fatal(__FILE__, __LINE__, #cond, NULL); } while (0)
#define CG_ASSERT_MSG(cond, hint) \
    do { if (!(cond)) cg_fatal(__FILE__, __LINE__, #cond, (hint)); } while (0)

/* malloc/calloc that abort on failure, for small internal bookkeeping only. Large buffers
 * (tensor storage, file chunks) use plain malloc and report CG_ERR_NOMEM instead. */
void *cg_xmalloc(size_t bytes);
void *cg_xcalloc(size_t n, size_t size);
void *cg_xrealloc(void *p, size_t bytes);

#endif
