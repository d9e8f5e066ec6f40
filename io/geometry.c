/* io/geometry.c — layer offsets, checks and cell positions (see geometry.h). */
#include "io/geometry.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

cg_status cg_geometry_finish(cg_geometry *g) {
    if (g->nlayers < 1 || g->nlayers > CG_GEOM_MAX_LAYERS)
        return cg_set_error(CG_ERR_INVALID, "geometry '%s': %d layers (need 1..%d)", g->name, g->nlayers,
                            CG_GEOM_MAX_LAYERS);
    int64_t off = 0;
    for (int l = 0; l < g->nlayers; l++) {
        const cg_layer *L = &g->layer[l];
        if (L->rows < 1 || L->cols < 1 || L->rows > 100000 || L->cols > 100000)
            return cg_set_error(CG_ERR_INVALID, "geometry '%s': layer %d has an impossible shape %d x %d", g->name,
                                l, L->rows, L->cols);
        if (L->binning == CG_BIN_POLAR) {
            if (L->cols > CG_GEOM_MAX_RBINS)
                return cg_set_error(CG_ERR_INVALID, "geometry '%s': layer %d has %d radial bins (max %d)", g->name,
                                    l, L->cols, CG_GEOM_MAX_RBINS);
            for (int k = 0; k < L->cols; k++)
                if (!(L->r_edges[k + 1] > L->r_edges[k]) || L->r_edges[k] < 0)
                    return cg_set_error(CG_ERR_INVALID, "geometry '%s': layer %d radial edges are not increasing",
                                        g->name, l);
        } else if (L->binning != CG_BIN_CARTESIAN) {
            return cg_set_error(CG_ERR_INVALID, "geometry '%s': layer %d has an unknown binning %d", g->name, l,
                                (int)L->binning);
        } else if (!(L->cell_w > 0) || !(L->cell_h > 0)) {
            return cg_set_error(CG_ERR_INVALID, "geometry '%s': layer %d has non-positive cell sizes", g->name, l);
        }
        g->layer_offset[l] = off;
        off += (int64_t)L->rows * L->cols;
    }
    g->layer_offset[g->nlayers] = off;
    g->ncells = off;
    if (!(g->to_mev > 0)) g->to_mev = 1.0f;
    if (!g->energy_unit[0]) snprintf(g->energy_unit, sizeof g->energy_unit, "MeV");
    return CG_OK;
}

cg_status cg_geometry_grid(cg_geometry *g, const char *name, int nlayers, int rows, int cols, float cell_w,
                           float cell_h, float pitch_mm) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    if (nlayers < 1 || nlayers > CG_GEOM_MAX_LAYERS)
        return cg_set_error(CG_ERR_INVALID, "geometry '%s': %d layers (need 1..%d)", name, nlayers,
                            CG_GEOM_MAX_LAYERS);
    g->nlayers = nlayers;
    for (int l = 0; l < nlayers; l++) {
        cg_layer *L = &g->layer[l];
        L->rows = rows;
        L->cols = cols;
        L->binning = CG_BIN_CARTESIAN;
        L->cell_w = cell_w;
        L->cell_h = cell_h;
        L->depth_mm = pitch_mm;
        L->z_mm = (l + 0.5f) * pitch_mm;
    }
    snprintf(g->energy_unit, sizeof g->energy_unit, "MeV");
    g->to_mev = 1.0f;
    return cg_geometry_finish(g);
}

int cg_geometry_is_grid(const cg_geometry *g) {
    for (int l = 1; l < g->nlayers; l++)
        if (g->layer[l].rows != g->layer[0].rows || g->layer[l].cols != g->layer[0].cols ||
            g->layer[l].binning != g->layer[0].binning)
            return 0;
    return 1;
}

void cg_geometry_cell_xy(const cg_geometry *g, int layer, int row, int col, float *x, float *y) {
    const cg_layer *L = &g->layer[layer];
    if (L->binning == CG_BIN_POLAR) {
        float r = 0.5f * (L->r_edges[col] + L->r_edges[col + 1]);
        float a = -(float)M_PI + (row + 0.5f) * (2.0f * (float)M_PI / (float)L->rows);
        *x = r * cosf(a);
        *y = r * sinf(a);
    } else {
        *x = ((float)col + 0.5f - 0.5f * (float)L->cols) * L->cell_w;
        *y = ((float)row + 0.5f - 0.5f * (float)L->rows) * L->cell_h;
    }
}
