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

/* ---- additions to the contract above (io/cvox.c) ---- */

/* Open a file whose writer did not finish (no valid index at the end, e.g. the
 * "<name>.partial.<pid>" a crashed writer leaves): scan the chunks from the start and keep
 * every complete chunk whose CRCs check; stop at the first that does not. A complete file
 * opens as with cg_cvox_open. *dropped_bytes (may be NULL) gets the bytes ignored. */
cg_cvox_reader *cg_cvox_open_salvage(const char *path, int64_t *dropped_bytes);
/* Size of the open file in bytes. */
int64_t cg_cvox_file_size(const cg_cvox_reader *r);

/* Chunk-level access, for streaming readers (io/loader.c) and tools. A loaded chunk holds
 * one chunk's decompressed (still sparse) events; it does not depend on the reader once
 * loaded, and cg_cvox_chunk_event may run on several threads at once. */
typedef struct cg_cvox_chunk cg_cvox_chunk;
int64_t cg_cvox_nchunks(const cg_cvox_reader *r);
/* Events [*first, *first + *n) are in chunk `chunk`. */
void cg_cvox_chunk_span(const cg_cvox_reader *r, int64_t chunk, int64_t *first, int64_t *n);
/* Bytes the chunk's payload takes once decompressed (reads and checks its header only);
 * -1 + cg_last_error() when the header is unreadable. For memory budgets. */
int64_t cg_cvox_chunk_raw_size(cg_cvox_reader *r, int64_t chunk);
cg_cvox_chunk *cg_cvox_chunk_load(cg_cvox_reader *r, int64_t chunk);
/* Event k of the chunk (0 <= k < its count) as dense float32 (ncells; may be NULL) and its
 * conditioning values (ncond; may be NULL). Fails on corrupted index data. */
cg_status cg_cvox_chunk_event(const cg_cvox_chunk *c, int64_t k, float *dense, float *cond);
/* Number of non-zero cells stored for event k of the chunk. */
int64_t cg_cvox_chunk_nhits(const cg_cvox_chunk *c, int64_t k);
/* Bytes of memory the chunk holds (for memory budgets). */
size_t cg_cvox_chunk_bytes(const cg_cvox_chunk *c);
void cg_cvox_chunk_free(cg_cvox_chunk *c);

/* zlib level of a writer's chunks, 1 (fast) .. 9 (small); the default is CG_CVOX_LEVEL. */
#define CG_CVOX_LEVEL 6
void cg_cvox_set_level(cg_cvox_writer *w, int level);

/* The header block (FORMAT.md §2) as bytes, to carry a .cvox description inside another
 * file (the HDF5 export). encode returns the bytes needed and writes them when cap allows;
 * decode checks every length and reports problems naming `what`. */
size_t cg_cvox_info_encode(const cg_cvox_info *info, int events_per_chunk, uint8_t *buf, size_t cap);
cg_status cg_cvox_info_decode(cg_cvox_info *info, const uint8_t *buf, size_t len, const char *what);

#endif
