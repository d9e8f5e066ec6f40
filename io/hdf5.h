/*
 * io/hdf5.h — reading and writing the community's HDF5 shower files (built only when
 * libhdf5 is found: CG_HAVE_HDF5).
 *
 * Layouts (../shared/reference/models.md §3):
 *   calochallenge  /incident_energies (N,1) MeV, /showers (N, voxels) MeV, voxels in
 *                  (layer, alpha, r) order. The geometry comes from the voxel count (the
 *                  challenge's datasets 1-photons 368, 1-pions 533, 2: 6480, 3: 40500, with
 *                  their published bin edges), or from a "calograd_header" attribute written
 *                  by cg_h5_export; other counts become one flat layer of 1 × voxels.
 *   calogan        /energy (N,1) GeV, /layer_0 (N,3,96), /layer_1 (N,12,12), /layer_2
 *                  (N,12,6) MeV, optional /overflow (N,3) (kept as conditioning overflow_0..2).
 *   ild            a group (e.g. "30x30", "ecal") with energy (N,1) GeV and layers
 *                  (N, layers, rows, cols) MeV; any other (N,) or (N,1) dataset in the group
 *                  (theta, phi, ...) becomes a conditioning value of that name.
 *   clic           /ECAL (N, x, y, z) (or /HCAL with calorimeter "HCAL"), depth last, and
 *                  /target: (N,), (N,k) or (N,1,k); the energy is target[...,1] when k >= 2
 *                  (GeV), and target[...,0] is kept as "target0". The cells are transposed
 *                  into calograd's dense order (layer = z, row = y, col = x).
 * Every layout is detected from the names present (CG_H5_AUTO); a layout can be forced.
 * Values are converted to float32 (HDF5 converts float64 on reading); cell energies are
 * stored in the unit of the file ("MeV" unless told otherwise), never rescaled.
 *
 * Errors (missing or misshaped datasets, inconsistent event counts, unreadable files) name
 * the file, the dataset and the shapes found. HDF5's own error printing is switched off.
 */
#ifndef CG_IO_HDF5_H
#define CG_IO_HDF5_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "io/cvox.h"

typedef enum { CG_H5_AUTO = 0, CG_H5_CALOCHALLENGE, CG_H5_CALOGAN, CG_H5_ILD, CG_H5_CLIC } cg_h5_layout;

const char *cg_h5_layout_name(cg_h5_layout l);
/* "calochallenge", "calogan", "ild", "clic", "auto" -> layout; -1 if unknown. */
int cg_h5_layout_parse(const char *name);

typedef struct {
    cg_h5_layout layout;        /* CG_H5_AUTO: detect */
    const char *group;          /* ild: the group (default: the one holding energy and layers) */
    const char *calorimeter;    /* clic: "ECAL" (default) or "HCAL" */
    const char *energy_unit;    /* of the cell values: "MeV" (default) or "GeV" */
    const char *particle;       /* recorded in the .cvox header (default: from the file, or "unknown") */
} cg_h5_opts;

/* A streaming reader: the same role as cg_cvox_reader for an HDF5 file. */
typedef struct cg_h5_reader cg_h5_reader;
cg_h5_reader *cg_h5_open(const char *path, const cg_h5_opts *o);
const cg_cvox_info *cg_h5_info(const cg_h5_reader *r);
cg_h5_layout cg_h5_layout_of(const cg_h5_reader *r);
/* Events [first, first + n) as dense float32 (n × ncells, may be NULL) and conditioning
 * (n × ncond, may be NULL). */
cg_status cg_h5_read(cg_h5_reader *r, int64_t first, int64_t n, float *dense, float *cond);
void cg_h5_close(cg_h5_reader *r);

/* Convert one or more HDF5 files of the same layout and geometry into one .cvox file. */
cg_status cg_h5_import(const char *const *inputs, int ninputs, const char *out, const cg_h5_opts *o,
                       int events_per_chunk, int (*progress)(int64_t done, int64_t total, void *), void *ctx);

typedef struct {
    cg_h5_layout layout;        /* CG_H5_CALOCHALLENGE or CG_H5_ILD */
    int gzip;                   /* deflate level 0..9 (default 4; 0 = none) */
    bool no_shuffle;            /* leave out the shuffle filter */
    int chunk_events;           /* events per HDF5 chunk (0: about 1 MiB per chunk) */
    const char *group;          /* ild: the group name (default "<rows>x<cols>") */
} cg_h5_export_opts;

/* Write the events of a .cvox file as HDF5 (float32 showers, gzip, chunked by events),
 * to a temporary name renamed into place when complete. The .cvox header is kept in a
 * "calograd_header" attribute so that importing the file back is lossless. */
cg_status cg_h5_export(const char *in, const char *out, const cg_h5_export_opts *o,
                       int (*progress)(int64_t done, int64_t total, void *), void *ctx);

#endif
