/*
 * io/hdf5.c — HDF5 import/export for the CaloChallenge, CaloGAN, ILD and CLIC layouts
 * (API and layouts in io/hdf5.h). Built only when libhdf5 is found.
 *
 * Reading: cg_h5_open detects the layout, checks every dataset's rank, shape and event
 * count, and builds the calograd description (geometry, conditioning names); cg_h5_read
 * then reads hyperslabs of events, converting to float32 (HDF5 converts float64) and, for
 * CLIC, transposing (x, y, z) into calograd's (layer, row, col). Energies are read as
 * doubles so that MeV -> GeV conversions are exact when the file was written by us.
 *
 * Writing: cg_h5_export streams a .cvox file into float32 datasets, chunked by events,
 * with the shuffle and deflate filters, into "<out>.partial.<pid>", renamed when complete.
 */
#include "io/hdf5.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/loader.h"

#define ATTR_HEADER "calograd_header"

const char *cg_h5_layout_name(cg_h5_layout l) {
    static const char *n[] = {"auto", "calochallenge", "calogan", "ild", "clic"};
    return l >= 0 && l <= CG_H5_CLIC ? n[l] : "?";
}

int cg_h5_layout_parse(const char *name) {
    for (int l = 0; l <= CG_H5_CLIC; l++)
        if (strcmp(name, cg_h5_layout_name((cg_h5_layout)l)) == 0) return l;
    return -1;
}

static void quiet_hdf5(void) {
    static int done;
    if (!done) {
        /* no clean-up at exit: after a write error (disk full) libhdf5 1.10 crashes closing
         * the file there; the OS reclaims everything anyway (fails harmlessly when the
         * library was already in use) */
        H5dont_atexit();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* we report errors ourselves */
        done = 1;
    }
}

/* ------------------------------------------------------------- geometries ---- */

/* Published CaloChallenge binnings (the challenge's binning_dataset_*.xml): per layer the
 * number of angular bins and the radial edges in mm. Layers without bins are left out; for
 * dataset 1 the original layer number is kept in z_mm (the files give no depths). */
typedef struct { int id, nalpha, nedges; float edges[20]; } cc_layer;

static const cc_layer CC_DS1_PHOTONS[] = {
    {0, 1, 9, {0, 5, 10, 30, 50, 100, 200, 400, 600}},
    {1, 10, 17, {0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200}},
    {2, 10, 20, {0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400}},
    {3, 1, 6, {0, 50, 100, 200, 400, 600}},
    {12, 1, 6, {0, 100, 200, 400, 1000, 2000}},
};
static const cc_layer CC_DS1_PIONS[] = {
    {0, 1, 9, {0, 5, 10, 30, 50, 100, 200, 400, 600}},
    {1, 10, 11, {0, 1, 4, 7, 10, 15, 30, 50, 90, 150, 200}},
    {2, 10, 11, {0, 5, 10, 20, 30, 50, 80, 130, 200, 300, 400}},
    {3, 1, 6, {0, 50, 100, 200, 400, 600}},
    {12, 10, 16, {0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 1000, 2000}},
    {13, 10, 17, {0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 600, 1000, 2000}},
    {14, 1, 11, {0, 50, 100, 150, 200, 250, 300, 400, 600, 1000, 2000}},
};

static cg_status cc_table(cg_geometry *g, const char *name, const cc_layer *t, int n) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->nlayers = n;
    for (int l = 0; l < n; l++) {
        cg_layer *L = &g->layer[l];
        L->binning = CG_BIN_POLAR;
        L->rows = t[l].nalpha;
        L->cols = t[l].nedges - 1;
        for (int k = 0; k < t[l].nedges; k++) L->r_edges[k] = t[l].edges[k];
        L->z_mm = (float)t[l].id;
        L->depth_mm = 1;
    }
    return cg_geometry_finish(g);
}

/* Datasets 2 and 3: 45 layers of Si-W (3.4 mm, 0.8 X0 per layer), 9 or 18 radial bins of
 * 4.65 or 2.325 mm, 16 or 50 angular bins. */
static cg_status cc_uniform(cg_geometry *g, const char *name, int nalpha, int nr, float dr) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->nlayers = 45;
    for (int l = 0; l < 45; l++) {
        cg_layer *L = &g->layer[l];
        L->binning = CG_BIN_POLAR;
        L->rows = nalpha;
        L->cols = nr;
        for (int k = 0; k <= nr; k++) L->r_edges[k] = dr * (float)k;
        L->z_mm = 3.4f * ((float)l + 0.5f);
        L->depth_mm = 3.4f;
    }
    return cg_geometry_finish(g);
}

static cg_status calochallenge_geometry(cg_geometry *g, int64_t voxels) {
    switch (voxels) {
    case 368: return cc_table(g, "calochallenge-ds1-photons", CC_DS1_PHOTONS, 5);
    case 533: return cc_table(g, "calochallenge-ds1-pions", CC_DS1_PIONS, 7);
    case 6480: return cc_uniform(g, "calochallenge-ds2", 16, 9, 4.65f);
    case 40500: return cc_uniform(g, "calochallenge-ds3", 50, 18, 2.325f);
    default: {
        /* unknown binning: one flat layer, usable with flat tensors */
        char name[32];
        snprintf(name, sizeof name, "flat-%lld", (long long)voxels);
        return cg_geometry_grid(g, name, 1, 1, (int)voxels, 1, 1, 1);
    }
    }
}

/* -------------------------------------------------------------- the reader ---- */

enum { SRC_DATASET, SRC_ENERGY, SRC_TARGET0, SRC_OVERFLOW };

struct cg_h5_reader {
    char path[512];
    hid_t file, group;
    cg_h5_layout layout;
    cg_cvox_info info;
    hid_t main[3];                  /* shower datasets (CaloGAN: 3) */
    int nmain;
    hid_t energy;                   /* incident_energies / energy / target */
    int energy_rank;
    hsize_t energy_dims[3];
    int cond_src[CG_CVOX_MAX_COND];
    hid_t cond_ds[CG_CVOX_MAX_COND];
    hid_t overflow;
    int clic_xyz[3];                /* CLIC: x, y, z sizes */
    float *tmp;
    double *dtmp;
    size_t tmp_cap, dtmp_cap;
};

static int has_link(hid_t loc, const char *name) { return H5Lexists(loc, name, H5P_DEFAULT) > 0; }

/* Open a dataset and check that it is numeric with rank in [rmin, rmax] and first
 * dimension n (n < 0: any; it is then returned). */
static hid_t open_ds(cg_h5_reader *r, hid_t loc, const char *name, int rmin, int rmax, int64_t *n, int *rank,
                     hsize_t *dims) {
    if (!has_link(loc, name)) {
        cg_set_error(CG_ERR_IO, "%s: dataset '%s' is missing (%s layout)", r->path, name, cg_h5_layout_name(r->layout));
        return -1;
    }
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) {
        cg_set_error(CG_ERR_IO, "%s: '%s' is not a readable dataset", r->path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    int rk = H5Sget_simple_extent_ndims(sp);
    hsize_t d[8] = {0};
    if (rk >= 0 && rk <= 8) H5Sget_simple_extent_dims(sp, d, NULL);
    H5T_class_t cls = H5Tget_class(ty);
    H5Sclose(sp);
    H5Tclose(ty);
    char shape[128] = "(";
    for (int i = 0; i < rk && i < 8; i++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    strcat(shape, ")");
    const char *bad = NULL;
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) bad = "is not numeric";
    else if (rk < rmin || rk > rmax) bad = "has the wrong number of dimensions";
    if (bad || (*n >= 0 && (int64_t)d[0] != *n)) {
        if (bad) cg_set_error(CG_ERR_IO, "%s: dataset '%s' %s: shape %s", r->path, name, bad, shape);
        else cg_set_error(CG_ERR_IO, "%s: dataset '%s' has %llu events, expected %lld (shape %s)", r->path, name,
                          (unsigned long long)d[0], (long long)*n, shape);
        H5Dclose(ds);
        return -1;
    }
    if (*n < 0) *n = (int64_t)d[0];
    if (rank) *rank = rk;
    if (dims)
        for (int i = 0; i < rk; i++) dims[i] = d[i];
    return ds;
}

static int add_cond(cg_h5_reader *r, const char *name, const char *unit, int src, hid_t ds) {
    cg_cvox_info *in = &r->info;
    if (in->ncond == CG_CVOX_MAX_COND) {
        cg_set_error(CG_ERR_IO, "%s: more than %d conditioning datasets", r->path, CG_CVOX_MAX_COND);
        return -1;
    }
    snprintf(in->cond_name[in->ncond], CG_CVOX_NAME_LEN, "%s", name);
    snprintf(in->cond_unit[in->ncond], CG_CVOX_NAME_LEN, "%s", unit);
    r->cond_src[in->ncond] = src;
    r->cond_ds[in->ncond] = ds;
    in->ncond++;
    return 0;
}

/* Datasets of loc other than `skip` with N events and shape (N,) or (N,1): conditioning. */
typedef struct { cg_h5_reader *r; hid_t loc; const char *const *skip; int failed; } extra_ctx;

static herr_t extra_cb(hid_t loc, const char *name, const H5L_info_t *info, void *vctx) {
    extra_ctx *c = vctx;
    (void)info;
    for (const char *const *s = c->skip; *s; s++)
        if (strcmp(*s, name) == 0) return 0;
    hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
    if (obj < 0) return 0;
    int is_ds = H5Iget_type(obj) == H5I_DATASET;
    H5Oclose(obj);
    if (!is_ds) return 0;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    int rk = H5Sget_simple_extent_ndims(sp);
    hsize_t d[4] = {0};
    if (rk >= 1 && rk <= 2) H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp);
    if ((rk == 1 || (rk == 2 && d[1] == 1)) && (int64_t)d[0] == c->r->info.nevents &&
        strlen(name) < CG_CVOX_NAME_LEN) {
        if (add_cond(c->r, name, "", SRC_DATASET, ds)) {
            c->failed = 1;
            H5Dclose(ds);
            return 1;
        }
    } else {
        H5Dclose(ds);
    }
    return 0;
}

static int add_extra_conds(cg_h5_reader *r, hid_t loc, const char *const *skip) {
    extra_ctx c = {r, loc, skip, 0};
    hsize_t idx = 0;
    H5Literate(loc, H5_INDEX_NAME, H5_ITER_INC, &idx, extra_cb, &c);
    return c.failed ? -1 : 0;
}

/* The .cvox header we leave in exported files, if present on loc. */
static int read_header_attr(cg_h5_reader *r, hid_t loc, cg_cvox_info *info) {
    if (H5Aexists(loc, ATTR_HEADER) <= 0) return 0;
    hid_t a = H5Aopen(loc, ATTR_HEADER, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    int rc = -1;
    if (n > 0 && n < (1 << 20)) {
        uint8_t *buf = malloc((size_t)n);
        char what[600];
        snprintf(what, sizeof what, "%s: attribute %s", r->path, ATTR_HEADER);
        if (buf && H5Aread(a, H5T_NATIVE_UINT8, buf) >= 0 && cg_cvox_info_decode(info, buf, (size_t)n, what) == CG_OK)
            rc = 1;
        free(buf);
    } else {
        cg_set_error(CG_ERR_IO, "%s: attribute %s has an impossible size", r->path, ATTR_HEADER);
    }
    H5Aclose(a);
    return rc;
}

/* Find the ILD group: the first group at the root holding "energy" and "layers". */
typedef struct { char name[256]; } find_ctx;
static herr_t find_group_cb(hid_t loc, const char *name, const H5L_info_t *info, void *vctx) {
    (void)info;
    find_ctx *c = vctx;
    hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
    if (obj < 0) return 0;
    int ok = H5Iget_type(obj) == H5I_GROUP && has_link(obj, "energy") && has_link(obj, "layers");
    H5Oclose(obj);
    if (ok) {
        snprintf(c->name, sizeof c->name, "%s", name);
        return 1;
    }
    return 0;
}

static cg_h5_layout detect(hid_t f, char *group, size_t cap) {
    if (has_link(f, "showers") && has_link(f, "incident_energies")) return CG_H5_CALOCHALLENGE;
    if (has_link(f, "layer_0") && has_link(f, "energy")) return CG_H5_CALOGAN;
    if ((has_link(f, "ECAL") || has_link(f, "HCAL")) && has_link(f, "target")) return CG_H5_CLIC;
    if (has_link(f, "energy") && has_link(f, "layers")) {
        snprintf(group, cap, "/");
        return CG_H5_ILD;
    }
    find_ctx c = {""};
    hsize_t idx = 0;
    H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, &idx, find_group_cb, &c);
    if (c.name[0]) {
        snprintf(group, cap, "%s", c.name);
        return CG_H5_ILD;
    }
    return CG_H5_AUTO;
}

static herr_t list_cb(hid_t loc, const char *name, const H5L_info_t *info, void *vctx) {
    (void)loc, (void)info;
    char *s = vctx;
    if (strlen(s) + strlen(name) + 3 < 200) snprintf(s + strlen(s), 200 - strlen(s), "%s%s", *s ? ", " : "", name);
    return 0;
}

static cg_status open_calochallenge(cg_h5_reader *r) {
    int64_t n = -1;
    int rk;
    hsize_t d[4];
    r->main[0] = open_ds(r, r->file, "showers", 2, 2, &n, &rk, d);
    if (r->main[0] < 0) return CG_ERR_IO;
    r->nmain = 1;
    r->info.nevents = n;
    r->energy = open_ds(r, r->file, "incident_energies", 1, 2, &n, &r->energy_rank, r->energy_dims);
    if (r->energy < 0) return CG_ERR_IO;
    if (r->energy_rank == 2 && r->energy_dims[1] != 1)
        return cg_set_error(CG_ERR_IO, "%s: dataset 'incident_energies' should be (N, 1), found (%llu, %llu)", r->path,
                            (unsigned long long)r->energy_dims[0], (unsigned long long)r->energy_dims[1]);
    cg_cvox_info hdr;
    int has = read_header_attr(r, r->file, &hdr);
    if (has < 0) return CG_ERR_IO;
    if (has) { /* written by calograd: geometry and conditioning as they were */
        if (hdr.geom.ncells != (int64_t)d[1])
            return cg_set_error(CG_ERR_IO, "%s: 'showers' has %llu voxels but its %s attribute describes %lld", r->path,
                                (unsigned long long)d[1], ATTR_HEADER, (long long)hdr.geom.ncells);
        r->info.geom = hdr.geom;
        snprintf(r->info.particle, sizeof r->info.particle, "%s", hdr.particle);
        for (int i = 0; i < hdr.ncond; i++) {
            if (strcmp(hdr.cond_name[i], "energy") == 0) {
                if (add_cond(r, "energy", "GeV", SRC_ENERGY, -1)) return CG_ERR_IO;
                continue;
            }
            int64_t m = n;
            hid_t ds = open_ds(r, r->file, hdr.cond_name[i], 1, 2, &m, NULL, NULL);
            if (ds < 0 || add_cond(r, hdr.cond_name[i], hdr.cond_unit[i], SRC_DATASET, ds)) return CG_ERR_IO;
        }
        return CG_OK;
    }
    if (calochallenge_geometry(&r->info.geom, (int64_t)d[1])) return cg_last_status();
    if (add_cond(r, "energy", "GeV", SRC_ENERGY, -1)) return CG_ERR_IO;
    static const char *const skip[] = {"showers", "incident_energies", NULL};
    return add_extra_conds(r, r->file, skip) ? CG_ERR_IO : CG_OK;
}

static cg_status open_calogan(cg_h5_reader *r) {
    static const int shape[3][2] = {{3, 96}, {12, 12}, {12, 6}};
    static const float cell[3][2] = {{5, 160}, {40, 40}, {80, 40}}, zc[3] = {45, 263.5f, 460}, dz[3] = {90, 347, 43};
    int64_t n = -1;
    cg_geometry *g = &r->info.geom;
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "calogan");
    g->nlayers = 3;
    for (int l = 0; l < 3; l++) {
        char name[16];
        int rk;
        hsize_t d[4];
        snprintf(name, sizeof name, "layer_%d", l);
        r->main[l] = open_ds(r, r->file, name, 3, 3, &n, &rk, d);
        if (r->main[l] < 0) return CG_ERR_IO;
        r->nmain = l + 1;
        if ((int)d[1] != shape[l][0] || (int)d[2] != shape[l][1])
            return cg_set_error(CG_ERR_IO, "%s: dataset '%s' should be (N, %d, %d), found (%llu, %llu, %llu)", r->path,
                                name, shape[l][0], shape[l][1], (unsigned long long)d[0], (unsigned long long)d[1],
                                (unsigned long long)d[2]);
        cg_layer *L = &g->layer[l];
        L->rows = shape[l][0];
        L->cols = shape[l][1];
        L->cell_w = cell[l][0];
        L->cell_h = cell[l][1];
        L->z_mm = zc[l];
        L->depth_mm = dz[l];
    }
    if (cg_geometry_finish(g)) return cg_last_status();
    r->info.nevents = n;
    r->energy = open_ds(r, r->file, "energy", 1, 2, &n, &r->energy_rank, r->energy_dims);
    if (r->energy < 0) return CG_ERR_IO;
    if (add_cond(r, "energy", "GeV", SRC_ENERGY, -1)) return CG_ERR_IO;
    r->overflow = -1;
    if (has_link(r->file, "overflow")) {
        int rk;
        hsize_t d[4];
        r->overflow = open_ds(r, r->file, "overflow", 2, 2, &n, &rk, d);
        if (r->overflow < 0) return CG_ERR_IO;
        if (d[1] != 3) return cg_set_error(CG_ERR_IO, "%s: dataset 'overflow' should be (N, 3)", r->path);
        for (int k = 0; k < 3; k++) {
            char name[16];
            snprintf(name, sizeof name, "overflow_%d", k);
            if (add_cond(r, name, "MeV", SRC_OVERFLOW + k, -1)) return CG_ERR_IO;
        }
    }
    return CG_OK;
}

static cg_status open_ild(cg_h5_reader *r, const char *group) {
    r->group = strcmp(group, "/") == 0 ? H5Gopen2(r->file, "/", H5P_DEFAULT) : H5Gopen2(r->file, group, H5P_DEFAULT);
    if (r->group < 0) return cg_set_error(CG_ERR_IO, "%s: group '%s' is missing", r->path, group);
    int64_t n = -1;
    int rk;
    hsize_t d[4];
    r->main[0] = open_ds(r, r->group, "layers", 4, 4, &n, &rk, d);
    if (r->main[0] < 0) return CG_ERR_IO;
    r->nmain = 1;
    r->info.nevents = n;
    r->energy = open_ds(r, r->group, "energy", 1, 2, &n, &r->energy_rank, r->energy_dims);
    if (r->energy < 0) return CG_ERR_IO;
    cg_cvox_info hdr;
    int has = read_header_attr(r, r->group, &hdr);
    if (has < 0) return CG_ERR_IO;
    if (has && hdr.geom.ncells == (int64_t)(d[1] * d[2] * d[3])) {
        r->info.geom = hdr.geom;
        snprintf(r->info.particle, sizeof r->info.particle, "%s", hdr.particle);
        for (int i = 0; i < hdr.ncond; i++) {
            if (strcmp(hdr.cond_name[i], "energy") == 0) {
                if (add_cond(r, "energy", hdr.cond_unit[i], SRC_ENERGY, -1)) return CG_ERR_IO;
                continue;
            }
            int64_t m = n;
            hid_t ds = open_ds(r, r->group, hdr.cond_name[i], 1, 2, &m, NULL, NULL);
            if (ds < 0 || add_cond(r, hdr.cond_name[i], hdr.cond_unit[i], SRC_DATASET, ds)) return CG_ERR_IO;
        }
        return CG_OK;
    }
    if (d[1] > CG_GEOM_MAX_LAYERS || d[2] > 100000 || d[3] > 100000)
        return cg_set_error(CG_ERR_IO, "%s: dataset 'layers' has an impossible shape (%llu, %llu, %llu, %llu)", r->path,
                            (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2],
                            (unsigned long long)d[3]);
    char name[32];
    snprintf(name, sizeof name, "%s", strcmp(group, "/") == 0 ? "ild" : group);
    if (cg_geometry_grid(&r->info.geom, name, (int)d[1], (int)d[2], (int)d[3], 5, 5, 4)) return cg_last_status();
    if (add_cond(r, "energy", "GeV", SRC_ENERGY, -1)) return CG_ERR_IO;
    static const char *const skip[] = {"layers", "energy", NULL};
    return add_extra_conds(r, r->group, skip) ? CG_ERR_IO : CG_OK;
}

static cg_status open_clic(cg_h5_reader *r, const char *calo) {
    int64_t n = -1;
    int rk;
    hsize_t d[4];
    r->main[0] = open_ds(r, r->file, calo, 4, 4, &n, &rk, d);
    if (r->main[0] < 0) return CG_ERR_IO;
    r->nmain = 1;
    r->info.nevents = n;
    if (d[3] > CG_GEOM_MAX_LAYERS)
        return cg_set_error(CG_ERR_IO, "%s: dataset '%s' has %llu layers (depth, the last axis; at most %d)", r->path,
                            calo, (unsigned long long)d[3], CG_GEOM_MAX_LAYERS);
    r->clic_xyz[0] = (int)d[1], r->clic_xyz[1] = (int)d[2], r->clic_xyz[2] = (int)d[3];
    r->energy = open_ds(r, r->file, "target", 1, 3, &n, &r->energy_rank, r->energy_dims);
    if (r->energy < 0) return CG_ERR_IO;
    int k = r->energy_rank == 1 ? 1 : (int)r->energy_dims[r->energy_rank - 1];
    if (r->energy_rank == 3 && r->energy_dims[1] != 1)
        return cg_set_error(CG_ERR_IO, "%s: dataset 'target' should be (N,), (N, k) or (N, 1, k), found (%llu, %llu, %llu)",
                            r->path, (unsigned long long)r->energy_dims[0], (unsigned long long)r->energy_dims[1],
                            (unsigned long long)r->energy_dims[2]);
    int hcal = strcmp(calo, "HCAL") == 0;
    /* nominal cell sizes: 5.1 mm ECAL cells, 3 cm HCAL cells (the files do not say) */
    char name[32];
    snprintf(name, sizeof name, "clic-%s", hcal ? "hcal" : "ecal");
    float cell = hcal ? 30.0f : 5.1f;
    if (cg_geometry_grid(&r->info.geom, name, (int)d[3], (int)d[2], (int)d[1], cell, cell, hcal ? 26.5f : 5.1f))
        return cg_last_status();
    if (add_cond(r, "energy", "GeV", SRC_ENERGY, -1)) return CG_ERR_IO;
    if (k >= 2 && add_cond(r, "target0", "", SRC_TARGET0, -1)) return CG_ERR_IO;
    return CG_OK;
}

cg_h5_reader *cg_h5_open(const char *path, const cg_h5_opts *o) {
    quiet_hdf5();
    cg_h5_reader *r = cg_xcalloc(1, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->group = r->energy = r->overflow = -1;
    for (int i = 0; i < 3; i++) r->main[i] = -1;
    for (int i = 0; i < CG_CVOX_MAX_COND; i++) r->cond_ds[i] = -1;
    cg_status st = CG_OK;
    FILE *probe = fopen(path, "rb");
    if (!probe) st = cg_set_error(CG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else fclose(probe);
    if (!st && H5Fis_hdf5(path) <= 0) st = cg_set_error(CG_ERR_IO, "%s: not an HDF5 file", path);
    if (!st) {
        r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (r->file < 0) st = cg_set_error(CG_ERR_IO, "%s: HDF5 cannot open it (truncated or corrupted?)", path);
    } else {
        r->file = -1;
    }
    char group[256] = "";
    if (!st) {
        cg_h5_layout found = detect(r->file, group, sizeof group);
        r->layout = o && o->layout ? o->layout : found;
        if (o && o->group) snprintf(group, sizeof group, "%s", o->group);
        if (r->layout == CG_H5_ILD && !group[0]) snprintf(group, sizeof group, "/");
        if (r->layout == CG_H5_AUTO) {
            char names[200] = "";
            hsize_t idx = 0;
            H5Literate(r->file, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, names);
            st = cg_set_error(CG_ERR_IO,
                              "%s: no known layout: expected CaloChallenge (incident_energies, showers), CaloGAN "
                              "(energy, layer_0..2), ILD (a group with energy and layers) or CLIC (ECAL, target); the "
                              "file has: %s",
                              path, names[0] ? names : "nothing");
        }
    }
    if (!st) {
        switch (r->layout) {
        case CG_H5_CALOCHALLENGE: st = open_calochallenge(r); break;
        case CG_H5_CALOGAN: st = open_calogan(r); break;
        case CG_H5_ILD: st = open_ild(r, group); break;
        case CG_H5_CLIC: {
            const char *calo = o && o->calorimeter ? o->calorimeter : "ECAL";
            if (strcmp(calo, "ECAL") && strcmp(calo, "HCAL"))
                st = cg_set_error(CG_ERR_INVALID, "calorimeter '%s': ECAL or HCAL", calo);
            else st = open_clic(r, calo);
            break;
        }
        default: st = cg_set_error(CG_ERR_INVALID, "unknown layout %d", (int)r->layout);
        }
    }
    if (!st) {
        cg_geometry *g = &r->info.geom;
        const char *unit = o && o->energy_unit ? o->energy_unit : NULL;
        if (unit && strcmp(unit, "GeV") == 0) {
            snprintf(g->energy_unit, sizeof g->energy_unit, "GeV");
            g->to_mev = 1000;
        } else if (unit && strcmp(unit, "MeV") != 0) {
            st = cg_set_error(CG_ERR_INVALID, "energy unit '%s': MeV or GeV", unit);
        }
        if (o && o->particle) snprintf(r->info.particle, sizeof r->info.particle, "%s", o->particle);
        if (!r->info.particle[0]) snprintf(r->info.particle, sizeof r->info.particle, "unknown");
        snprintf(r->info.source, sizeof r->info.source, "calograd import (%s layout%s%s)",
                 cg_h5_layout_name(r->layout), r->layout == CG_H5_ILD ? ", group " : "",
                 r->layout == CG_H5_ILD ? group : "");
    }
    if (st) {
        cg_h5_close(r);
        return NULL;
    }
    return r;
}

const cg_cvox_info *cg_h5_info(const cg_h5_reader *r) { return &r->info; }
cg_h5_layout cg_h5_layout_of(const cg_h5_reader *r) { return r->layout; }

void cg_h5_close(cg_h5_reader *r) {
    if (!r) return;
    for (int i = 0; i < 3; i++)
        if (r->main[i] >= 0) H5Dclose(r->main[i]);
    for (int i = 0; i < CG_CVOX_MAX_COND; i++)
        if (r->cond_ds[i] >= 0) H5Dclose(r->cond_ds[i]);
    if (r->energy >= 0) H5Dclose(r->energy);
    if (r->overflow >= 0) H5Dclose(r->overflow);
    if (r->group >= 0) H5Gclose(r->group);
    if (r->file >= 0) H5Fclose(r->file);
    free(r->tmp);
    free(r->dtmp);
    free(r);
}

/* Select events [first, first + n) (all other dimensions) of a dataset: *fs is the file
 * space with the selection, *ms a matching memory space; the caller closes both. */
static herr_t select_rows(hid_t ds, int64_t first, int64_t n, hid_t *fs, hid_t *ms) {
    *fs = H5Dget_space(ds);
    int rk = H5Sget_simple_extent_ndims(*fs);
    hsize_t d[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
    H5Sget_simple_extent_dims(*fs, d, NULL);
    for (int i = 0; i < rk; i++) count[i] = d[i];
    start[0] = (hsize_t)first;
    count[0] = (hsize_t)n;
    herr_t e = H5Sselect_hyperslab(*fs, H5S_SELECT_SET, start, NULL, count, NULL);
    *ms = H5Screate_simple(rk, count, NULL);
    return e;
}

/* Read events [first, first + n) of a dataset (all its other dimensions) as `type`. */
static cg_status read_rows(cg_h5_reader *r, hid_t ds, const char *what, int64_t first, int64_t n, hid_t type,
                           void *dst) {
    if (n == 0) return CG_OK;
    hid_t fs, ms;
    herr_t e = select_rows(ds, first, n, &fs, &ms);
    if (e >= 0) e = H5Dread(ds, type, ms, fs, H5P_DEFAULT, dst);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return cg_set_error(CG_ERR_IO, "%s: reading events %lld..%lld of '%s' failed (corrupted or truncated file?)",
                            r->path, (long long)first, (long long)(first + n - 1), what);
    return CG_OK;
}

static void *scratch(void **p, size_t *cap, size_t bytes) {
    if (bytes > *cap) {
        free(*p);
        *p = malloc(bytes);
        *cap = *p ? bytes : 0;
    }
    return *p;
}

cg_status cg_h5_read(cg_h5_reader *r, int64_t first, int64_t n, float *dense, float *cond) {
    const int64_t N = r->info.nevents, nc = r->info.geom.ncells;
    if (first < 0 || n < 0 || first > N - n)
        return cg_set_error(CG_ERR_INVALID, "%s: events %lld..%lld requested, the file has %lld", r->path,
                            (long long)first, (long long)(first + n - 1), (long long)N);
    if (n == 0) return CG_OK;
    cg_status st = CG_OK;
    if (dense) {
        if (r->layout == CG_H5_CALOCHALLENGE || r->layout == CG_H5_ILD) {
            st = read_rows(r, r->main[0], r->layout == CG_H5_ILD ? "layers" : "showers", first, n, H5T_NATIVE_FLOAT,
                           dense);
        } else if (r->layout == CG_H5_CALOGAN) {
            const cg_geometry *g = &r->info.geom;
            for (int l = 0; l < 3 && !st; l++) {
                int64_t sz = g->layer_offset[l + 1] - g->layer_offset[l];
                float *t = scratch((void **)&r->tmp, &r->tmp_cap, (size_t)(n * sz) * sizeof(float));
                if (!t) return cg_set_error(CG_ERR_NOMEM, "%s: out of memory reading %lld events", r->path, (long long)n);
                char name[16];
                snprintf(name, sizeof name, "layer_%d", l);
                st = read_rows(r, r->main[l], name, first, n, H5T_NATIVE_FLOAT, t);
                for (int64_t e = 0; !st && e < n; e++)
                    memcpy(dense + e * nc + g->layer_offset[l], t + e * sz, (size_t)sz * sizeof(float));
            }
        } else { /* CLIC: (x, y, z) -> (z, y, x) */
            const int X = r->clic_xyz[0], Y = r->clic_xyz[1], Z = r->clic_xyz[2];
            float *t = scratch((void **)&r->tmp, &r->tmp_cap, (size_t)(n * nc) * sizeof(float));
            if (!t) return cg_set_error(CG_ERR_NOMEM, "%s: out of memory reading %lld events", r->path, (long long)n);
            st = read_rows(r, r->main[0], "ECAL/HCAL", first, n, H5T_NATIVE_FLOAT, t);
            for (int64_t e = 0; !st && e < n; e++)
                for (int x = 0; x < X; x++)
                    for (int y = 0; y < Y; y++)
                        for (int z = 0; z < Z; z++)
                            dense[e * nc + ((int64_t)z * Y + y) * X + x] = t[e * nc + ((int64_t)x * Y + y) * Z + z];
        }
        if (st) return st;
    }
    if (!cond || r->info.ncond == 0) return CG_OK;
    /* the energy dataset, as doubles */
    size_t per = 1;
    for (int i = 1; i < r->energy_rank; i++) per *= (size_t)r->energy_dims[i];
    double *ev = scratch((void **)&r->dtmp, &r->dtmp_cap, (size_t)n * per * sizeof(double));
    if (!ev) return cg_set_error(CG_ERR_NOMEM, "%s: out of memory reading %lld events", r->path, (long long)n);
    st = read_rows(r, r->energy, r->layout == CG_H5_CLIC ? "target" : r->layout == CG_H5_CALOCHALLENGE ? "incident_energies" : "energy",
                   first, n, H5T_NATIVE_DOUBLE, ev);
    const int nq = r->info.ncond;
    for (int q = 0; !st && q < nq; q++) {
        int src = r->cond_src[q];
        if (src == SRC_ENERGY || src == SRC_TARGET0) {
            for (int64_t e = 0; e < n; e++) {
                double v = ev[e * per + (r->layout == CG_H5_CLIC && per >= 2 && src == SRC_ENERGY ? 1 : 0)];
                if (r->layout == CG_H5_CALOCHALLENGE) v /= 1000.0; /* MeV -> GeV */
                cond[e * nq + q] = (float)v;
            }
        } else if (src >= SRC_OVERFLOW) {
            float *t = scratch((void **)&r->tmp, &r->tmp_cap, (size_t)(n * 3) * sizeof(float));
            if (!t) return cg_set_error(CG_ERR_NOMEM, "%s: out of memory", r->path);
            st = read_rows(r, r->overflow, "overflow", first, n, H5T_NATIVE_FLOAT, t);
            for (int64_t e = 0; !st && e < n; e++) cond[e * nq + q] = t[e * 3 + (src - SRC_OVERFLOW)];
        } else {
            float *t = scratch((void **)&r->tmp, &r->tmp_cap, (size_t)n * sizeof(float));
            if (!t) return cg_set_error(CG_ERR_NOMEM, "%s: out of memory", r->path);
            st = read_rows(r, r->cond_ds[q], r->info.cond_name[q], first, n, H5T_NATIVE_FLOAT, t);
            for (int64_t e = 0; !st && e < n; e++) cond[e * nq + q] = t[e];
        }
    }
    return st;
}

/* ---------------------------------------------------------------- import ---- */

static int same_description(const cg_cvox_info *a, const cg_cvox_info *b) {
    if (a->geom.nlayers != b->geom.nlayers || a->geom.ncells != b->geom.ncells || a->ncond != b->ncond) return 0;
    for (int l = 0; l < a->geom.nlayers; l++)
        if (a->geom.layer[l].rows != b->geom.layer[l].rows || a->geom.layer[l].cols != b->geom.layer[l].cols) return 0;
    for (int q = 0; q < a->ncond; q++)
        if (strcmp(a->cond_name[q], b->cond_name[q])) return 0;
    return 1;
}

cg_status cg_h5_import(const char *const *inputs, int ninputs, const char *out, const cg_h5_opts *o,
                       int events_per_chunk, int (*progress)(int64_t, int64_t, void *), void *ctx) {
    if (ninputs < 1) return cg_set_error(CG_ERR_INVALID, "import: no input files");
    cg_h5_reader **rd = cg_xcalloc((size_t)ninputs, sizeof *rd);
    cg_status st = CG_OK;
    int64_t total = 0;
    cg_h5_opts oo = o ? *o : (cg_h5_opts){0};
    for (int i = 0; i < ninputs && !st; i++) {
        rd[i] = cg_h5_open(inputs[i], &oo);
        if (!rd[i]) {
            st = cg_last_status();
            break;
        }
        if (i == 0) oo.layout = rd[0]->layout; /* the others must have the same layout */
        else if (!same_description(&rd[0]->info, &rd[i]->info))
            st = cg_set_error(CG_ERR_INVALID, "%s: its geometry or conditioning differs from %s's (%lld vs %lld cells, "
                              "%d vs %d conditioning values)",
                              inputs[i], inputs[0], (long long)rd[i]->info.geom.ncells,
                              (long long)rd[0]->info.geom.ncells, rd[i]->info.ncond, rd[0]->info.ncond);
        if (!st) total += rd[i]->info.nevents;
    }
    cg_cvox_writer *w = NULL;
    float *x = NULL, *c = NULL;
    int64_t block = 0;
    if (!st) {
        cg_cvox_info info = rd[0]->info;
        char src[512];
        snprintf(src, sizeof src, "calograd import %s%s (%s layout)", inputs[0], ninputs > 1 ? " ..." : "",
                 cg_h5_layout_name(rd[0]->layout));
        memcpy(info.source, src, sizeof info.source - 1);
        w = cg_cvox_create(out, &info, events_per_chunk);
        if (!w) st = cg_last_status();
        const int64_t nc = info.geom.ncells;
        block = (int64_t)(8u << 20) / (nc > 0 ? nc : 1);
        block = block < 1 ? 1 : block > 4096 ? 4096 : block;
        x = malloc((size_t)(block * nc) * sizeof(float));
        c = malloc((size_t)(block * info.ncond + 1) * sizeof(float));
        if (!st && (!x || !c)) st = cg_set_error(CG_ERR_NOMEM, "import: out of memory");
    }
    int64_t done = 0;
    for (int i = 0; i < ninputs && !st; i++)
        for (int64_t e = 0; e < rd[i]->info.nevents && !st; e += block) {
            int64_t k = rd[i]->info.nevents - e < block ? rd[i]->info.nevents - e : block;
            st = cg_h5_read(rd[i], e, k, x, c);
            if (!st) st = cg_cvox_write(w, k, x, c);
            done += k;
            if (!st && progress && progress(done, total, ctx)) st = cg_set_error(CG_ERR_INVALID, "%s: interrupted", out);
        }
    if (w) {
        if (st) cg_cvox_abort(w);
        else st = cg_cvox_finish(w);
    }
    free(x);
    free(c);
    for (int i = 0; i < ninputs; i++) cg_h5_close(rd[i]);
    free(rd);
    return st;
}

/* ---------------------------------------------------------------- export ---- */

/* Create a float dataset (N, dims...) chunked by `ce` events with the filters asked for. */
static hid_t make_ds(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims, int64_t ce,
                     const cg_h5_export_opts *o, int compress) {
    hsize_t maxd[5], chunk[5];
    for (int i = 0; i < rank; i++) maxd[i] = dims[i], chunk[i] = dims[i];
    maxd[0] = H5S_UNLIMITED;
    chunk[0] = (hsize_t)(ce > 0 ? ce : 1);
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    if (compress && !o->no_shuffle) H5Pset_shuffle(dcpl);
    if (compress && o->gzip > 0) H5Pset_deflate(dcpl, (unsigned)o->gzip);
    hid_t ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

static herr_t write_rows(hid_t ds, int64_t first, int64_t n, hid_t memtype, const void *src) {
    if (n == 0) return 0;
    hid_t fs, ms;
    herr_t e = select_rows(ds, first, n, &fs, &ms);
    if (e >= 0) e = H5Dwrite(ds, memtype, ms, fs, H5P_DEFAULT, src);
    H5Sclose(ms);
    H5Sclose(fs);
    return e;
}

cg_status cg_h5_export(const char *in, const char *out, const cg_h5_export_opts *o,
                       int (*progress)(int64_t, int64_t, void *), void *ctx) {
    quiet_hdf5();
    cg_h5_export_opts opt = *o;
    if (opt.layout != CG_H5_CALOCHALLENGE && opt.layout != CG_H5_ILD)
        return cg_set_error(CG_ERR_INVALID, "export: layout must be calochallenge or ild");
    if (opt.gzip < 0 || opt.gzip > 9) return cg_set_error(CG_ERR_INVALID, "export: gzip level %d (0..9)", opt.gzip);
    cg_cvox_reader *r = cg_cvox_open(in);
    if (!r) return cg_last_status();
    const cg_cvox_info *info = cg_cvox_info_of(r);
    const cg_geometry *g = &info->geom;
    const int64_t N = info->nevents, nc = g->ncells;
    const int nq = info->ncond;
    cg_status st = CG_OK;
    int ie = cg_cvox_cond_index(info, "energy");
    if (ie < 0 && (cg_cvox_cond_index(info, "px") < 0 || cg_cvox_cond_index(info, "pz") < 0))
        st = cg_set_error(CG_ERR_INVALID, "%s: no 'energy' (or px, py, pz) conditioning value to export as the incident "
                          "energy", in);
    int ild = opt.layout == CG_H5_ILD;
    if (!st && ild && !cg_geometry_is_grid(g))
        st = cg_set_error(CG_ERR_INVALID, "%s: the ILD layout needs a regular grid; geometry '%s' has layers of "
                          "different shapes (export as calochallenge)", in, g->name);
    for (int q = 0; !st && q < nq; q++)
        if (q != ie && (!strcmp(info->cond_name[q], "showers") || !strcmp(info->cond_name[q], "incident_energies") ||
                        !strcmp(info->cond_name[q], "layers") || !strcmp(info->cond_name[q], "energy")))
            st = cg_set_error(CG_ERR_INVALID, "%s: conditioning value '%s' clashes with a dataset name", in,
                              info->cond_name[q]);
    int64_t ce = opt.chunk_events > 0 ? opt.chunk_events : (int64_t)(1u << 20) / (4 * nc);
    if (ce < 1) ce = 1;
    if (ce > 1000) ce = 1000;
    struct stat sb;
    if (!st && stat(out, &sb) == 0 && !S_ISREG(sb.st_mode))
        st = cg_set_error(CG_ERR_INVALID, "%s: exists and is not a regular file; not replacing it", out);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.partial.%ld", out, (long)getpid());
    hid_t f = -1, loc = -1, ds_x = -1, ds_e = -1, ds_q[CG_CVOX_MAX_COND];
    for (int q = 0; q < CG_CVOX_MAX_COND; q++) ds_q[q] = -1;
    if (!st) {
        f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        if (f < 0) st = cg_set_error(CG_ERR_IO, "%s: cannot create %s (directory missing or not writable?)", out, tmp);
    }
    if (!st) {
        char group[64];
        snprintf(group, sizeof group, "%dx%d", g->layer[0].rows, g->layer[0].cols);
        loc = ild ? H5Gcreate2(f, opt.group ? opt.group : group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                  : H5Gopen2(f, "/", H5P_DEFAULT);
        if (loc < 0) st = cg_set_error(CG_ERR_INVALID, "%s: cannot create group '%s'", out, opt.group ? opt.group : group);
    }
    if (!st) {
        hsize_t dx[5] = {(hsize_t)N, (hsize_t)nc}, d1[2] = {(hsize_t)N, 1};
        if (ild) dx[1] = (hsize_t)g->nlayers, dx[2] = (hsize_t)g->layer[0].rows, dx[3] = (hsize_t)g->layer[0].cols;
        ds_x = make_ds(loc, ild ? "layers" : "showers", H5T_IEEE_F32LE, ild ? 4 : 2, dx, ce, &opt, 1);
        /* CaloChallenge's incident energies are MeV: float64 keeps GeV·1000 exact */
        ds_e = make_ds(loc, ild ? "energy" : "incident_energies", ild ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, 2, d1,
                       ce * 64, &opt, 0);
        for (int q = 0; q < nq; q++)
            if (q != ie) ds_q[q] = make_ds(loc, info->cond_name[q], H5T_IEEE_F32LE, 2, d1, ce * 64, &opt, 0);
        int bad = ds_x < 0 || ds_e < 0;
        for (int q = 0; q < nq; q++) bad |= q != ie && ds_q[q] < 0;
        if (bad) st = cg_set_error(CG_ERR_IO, "%s: cannot create the datasets", out);
    }
    if (!st) { /* the .cvox header, so that importing back is lossless */
        size_t hl = cg_cvox_info_encode(info, 0, NULL, 0);
        uint8_t *hb = cg_xmalloc(hl);
        cg_cvox_info_encode(info, 0, hb, hl);
        hsize_t ad = hl;
        hid_t sp = H5Screate_simple(1, &ad, NULL);
        hid_t a = H5Acreate2(loc, ATTR_HEADER, H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, H5T_NATIVE_UINT8, hb) < 0) st = cg_set_error(CG_ERR_IO, "%s: cannot write attributes", out);
        if (a >= 0) H5Aclose(a);
        H5Sclose(sp);
        free(hb);
    }
    int64_t block = ce * ((int64_t)(16u << 20) / (4 * nc * ce) > 1 ? (int64_t)(16u << 20) / (4 * nc * ce) : 1);
    float *x = NULL, *c = NULL, *col = NULL, *en = NULL;
    double *ed = NULL;
    if (!st) {
        x = malloc((size_t)(block * nc) * sizeof(float));
        c = malloc((size_t)(block * nq + 1) * sizeof(float));
        col = malloc((size_t)block * sizeof(float));
        en = malloc((size_t)block * sizeof(float));
        ed = malloc((size_t)block * sizeof(double));
        if (!x || !c || !col || !en || !ed) st = cg_set_error(CG_ERR_NOMEM, "export: out of memory");
    }
    for (int64_t e = 0; e < N && !st; e += block) {
        int64_t k = N - e < block ? N - e : block;
        st = cg_cvox_read(r, e, k, x, c);
        if (st) break;
        cg_energy_from_cond(info, c, k, en);
        for (int64_t i = 0; i < k; i++) ed[i] = ild ? en[i] : (double)en[i] * 1000.0;
        herr_t he = write_rows(ds_x, e, k, H5T_NATIVE_FLOAT, x);
        if (he >= 0) he = ild ? write_rows(ds_e, e, k, H5T_NATIVE_FLOAT, en) : write_rows(ds_e, e, k, H5T_NATIVE_DOUBLE, ed);
        for (int q = 0; q < nq && he >= 0; q++) {
            if (q == ie) continue;
            for (int64_t i = 0; i < k; i++) col[i] = c[i * nq + q];
            he = write_rows(ds_q[q], e, k, H5T_NATIVE_FLOAT, col);
        }
        if (he < 0)
            st = cg_set_error(CG_ERR_IO, "%s: writing events %lld..%lld failed (disk full?)", out, (long long)e,
                              (long long)(e + k - 1));
        if (!st && progress && progress(e + k, N, ctx)) st = cg_set_error(CG_ERR_INVALID, "%s: interrupted", out);
    }
    free(x);
    free(c);
    free(col);
    free(en);
    free(ed);
    if (ds_x >= 0) H5Dclose(ds_x);
    if (ds_e >= 0) H5Dclose(ds_e);
    for (int q = 0; q < CG_CVOX_MAX_COND; q++)
        if (ds_q[q] >= 0) H5Dclose(ds_q[q]);
    if (loc >= 0) H5Gclose(loc);
    /* After a failed write HDF5 1.10 cannot close the file cleanly (a second close, or its
     * own clean-up at exit, crashes inside the library): the handle is then left open until
     * the process ends, and quiet_hdf5() has turned HDF5's exit-time clean-up off. */
    if (f >= 0 && H5Fclose(f) < 0 && !st)
        st = cg_set_error(CG_ERR_IO, "%s: closing the HDF5 file failed (disk full?)", out);
    if (!st) {
        /* flush to disk before the rename makes it look complete */
        FILE *fp = fopen(tmp, "rb+");
        if (!fp || fflush(fp) != 0 || fsync(fileno(fp)) != 0)
            st = cg_set_error(CG_ERR_IO, "%s: fsync failed: %s", out, strerror(errno));
        if (fp) fclose(fp);
    }
    if (!st && rename(tmp, out) != 0)
        st = cg_set_error(CG_ERR_IO, "%s: cannot rename %s into place: %s", out, tmp, strerror(errno));
    if (st && f >= 0) unlink(tmp);
    cg_cvox_close(r);
    return st;
}
