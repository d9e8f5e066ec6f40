/*
 * io/geometry.h — how the cells of a calorimeter shower are laid out.
 *
 * One description covers every dataset calograd reads: a shower is a list of LAYERS along
 * the depth (the particle's direction, z), each a 2-D array of rows × cols cells. A regular
 * grid (ILD 30×30×30, CLIC 25×25×25) is the case where every layer has the same shape; the
 * LHCb image is one layer of 30×30; CaloGAN has three layers 3×96, 12×12, 12×6; the
 * CaloChallenge binning has per-layer (alpha, r) bins.
 *
 * Dense order (every dense array in calograd, on disk and in memory): layer by layer, and
 * within a layer row-major (row, col). For a regular grid that is a C array
 * [nlayers][rows][cols], i.e. the tensor layout NCDHW with C = 1, D = layers (z),
 * H = rows (y), W = cols (x). The cell of layer l, row r, col c has the flat index
 * layer_offset[l] + r·cols_l + c.
 *
 * Cell positions. A CARTESIAN layer has cells of cell_w × cell_h mm (along cols = x and
 * rows = y), centred on the axis: x = (c + 0.5 - cols/2)·cell_w. A POLAR layer (the
 * CaloChallenge) has rows = n_alpha angular bins over [-π, π) and cols = n_r radial bins
 * with edges r_edges[0..n_r] in mm. Each layer sits at depth z_mm (its centre) with
 * thickness depth_mm.
 *
 * Energies are stored in `energy_unit` (usually "MeV"); to_mev converts.
 */
#ifndef CG_IO_GEOMETRY_H
#define CG_IO_GEOMETRY_H

#include <stdint.h>

#include "core/error.h"

#define CG_GEOM_MAX_LAYERS 256
#define CG_GEOM_MAX_RBINS 64

typedef enum { CG_BIN_CARTESIAN = 0, CG_BIN_POLAR = 1 } cg_binning;

typedef struct {
    int rows, cols;         /* cells in this layer: rows × cols */
    cg_binning binning;
    float cell_w, cell_h;   /* CARTESIAN: cell size along cols (x) and rows (y), mm */
    float r_edges[CG_GEOM_MAX_RBINS + 1]; /* POLAR: cols + 1 radial edges, mm */
    float z_mm, depth_mm;   /* centre depth and thickness of the layer, mm */
} cg_layer;

typedef struct {
    char name[32];          /* "ild", "ild-wide", "clic", "lhcb", "calogan", "custom", ... */
    int nlayers;
    cg_layer layer[CG_GEOM_MAX_LAYERS];
    int64_t layer_offset[CG_GEOM_MAX_LAYERS + 1]; /* flat index of each layer's first cell */
    int64_t ncells;         /* = layer_offset[nlayers] */
    char energy_unit[8];    /* "MeV" or "GeV" */
    float to_mev;           /* multiply stored energies by this to get MeV */
    float mip_mev;          /* the most probable deposit of a MIP in one cell (0 = unknown) */
} cg_geometry;

/* A regular grid of nlayers × rows × cols Cartesian cells of cell_w × cell_h mm, layers
 * `pitch_mm` apart. Fills offsets and ncells. */
cg_status cg_geometry_grid(cg_geometry *g, const char *name, int nlayers, int rows, int cols, float cell_w,
                           float cell_h, float pitch_mm);
/* Recompute layer_offset/ncells from the layers' shapes and check them (sizes > 0, at most
 * CG_GEOM_MAX_LAYERS layers, r edges increasing). Returns an error for impossible ones. */
cg_status cg_geometry_finish(cg_geometry *g);
/* True when all layers have the same shape and binning (the grid case). */
int cg_geometry_is_grid(const cg_geometry *g);
/* Centre of a cell in mm (x, y) within its layer; for POLAR cells the centre of the bin in
 * Cartesian coordinates (r_mid·cos α_mid, r_mid·sin α_mid). */
void cg_geometry_cell_xy(const cg_geometry *g, int layer, int row, int col, float *x, float *y);

#endif
