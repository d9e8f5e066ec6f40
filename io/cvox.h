/*
 * io/cvox.h — the .cvox compressed voxel format: API (the byte layout is in io/FORMAT.md).
 *
 * A .cvox file holds N showers on one geometry (io/geometry.h), each stored sparsely
 * (non-zero cells as index deltas and values), zlib-compressed in chunks of many events,
 * with an index for random access, per-event conditioning values with names and units,
 * and a CRC32 per chunk. Float32 values come back bit for bit.
 *
 * Reading gives dense float32 arrays in the geometry's dense order (layer, row, col) plus
 * the conditioning values, for any range of events. Writing streams events in; the file
 * appears under its final name only when cg_cvox_finish() succeeds (it is written to a
 * temporary name and renamed), so a crash never leaves a file that looks complete.
 *
 * Every function that can fail because of the file (missing, truncated, corrupted, wrong
 * magic/version, impossible geometry, disk full) returns NULL or a status and leaves a
 * message naming the file and the problem (and the chunk or offset) in cg_last_error().
 */
#ifndef CG_IO_CVOX_H
#define CG_IO_CVOX_H

#include <stdint.h>

#include "core/error.h"
#include "io/geometry.h"

#define CG_CVOX_MAX_COND 16
#define CG_CVOX_NAME_LEN 24

/* Well-known conditioning names (use them so that tools find the values):
 *   "energy" (incident energy, GeV), "theta" (polar angle, deg), "phi" (azimuth, deg),
 *   "x0", "y0" (entry point, mm), "px", "py", "pz" (momentum, GeV), "pdg" (particle id). */
typedef struct {
    cg_geometry geom;
    char particle[CG_CVOX_NAME_LEN];   /* "photon", "electron", "pion", "mixed", ... */
    char source[128];                  /* provenance: "calograd simulate --geometry ild ...", ... */
    int64_t nevents;                   /* filled by the reader */
    int ncond;
    char cond_name[CG_CVOX_MAX_COND][CG_CVOX_NAME_LEN];
    char cond_unit[CG_CVOX_MAX_COND][CG_CVOX_NAME_LEN];
} cg_cvox_info;

typedef struct cg_cvox_reader cg_cvox_reader;
typedef struct cg_cvox_writer cg_cvox_writer;

/* ---- reading ---- */
cg_cvox_reader *cg_cvox_open(const char *path);
const cg_cvox_info *cg_cvox_info_of(const cg_cvox_reader *r);
/* Index of a conditioning value by name, or -1. */
int cg_cvox_cond_index(const cg_cvox_info *info, const char *name);
/* Events [first, first + n) as dense float32: dense has n × geom.ncells entries (may be
 * NULL), cond n × ncond (may be NULL). Thread-safe for distinct readers only. */
cg_status cg_cvox_read(cg_cvox_reader *r, int64_t first, int64_t n, float *dense, float *cond);
void cg_cvox_close(cg_cvox_reader *r);

/* ---- writing ---- */
/* events_per_chunk 0 = the default. info->nevents is ignored (counted while writing). */
cg_cvox_writer *cg_cvox_create(const char *path, const cg_cvox_info *info, int events_per_chunk);
/* Append n events: dense n × ncells, cond n × ncond (NULL when ncond == 0). */
cg_status cg_cvox_write(cg_cvox_writer *w, int64_t n, const float *dense, const float *cond);
/* Flush, write the index, fsync, rename into place; frees w in every case. */
cg_status cg_cvox_finish(cg_cvox_writer *w);
/* Discard: remove the temporary file; frees w. */
void cg_cvox_abort(cg_cvox_writer *w);

#endif
