/*
 * io/loader.h — minibatches of showers from a .cvox file, as calograd tensors.
 *
 *   cg_loader_opts o;
 *   cg_loader_defaults(&o);
 *   o.batch_size = 64; o.shuffle = true; o.seed = 1;
 *   o.transform.kind = CG_XFORM_LOG; o.transform.eps = 1e-3f;   (optional)
 *   cg_loader *L = cg_loader_open("photons.cvox", &o);
 *   for (int epoch = 0; epoch < 10; epoch++) {
 *       cg_tensor *x, *c;
 *       while (cg_loader_next(L, &x, &c) == 1) {    (x: (B,1,D,H,W), c: (B, ncond))
 *           ... train ...
 *           cg_tensor_free(x); cg_tensor_free(c);
 *       }
 *   }
 *   cg_loader_close(L);
 *
 * Shapes. Showers come as (B, 1, D, H, W) when the geometry is a regular grid (D = layers,
 * H = rows, W = cols; io/geometry.h), or (B, ncells) otherwise or when opts.flat is set.
 * Conditioning comes as (B, ncond): the file's values (unit as in the file, e.g. energy in
 * GeV), all of them in file order, or those named in opts.cond in that order; *cond is set
 * to NULL when there are none. Both are new tensors on opts.device owned by the caller
 * (cg_tensor_free). The last batch of an epoch is smaller unless drop_last.
 *
 * Order. Without shuffle, events come in file order. With shuffle, each epoch e has its own
 * order drawn from (seed, e): the chunks of the event range are visited in a random order,
 * grouped into windows that fit the memory budget, and the events of a window are shuffled
 * together. When the whole range fits the budget (the usual case: the budget holds
 * decompressed but still sparse events, ~3.5 kB for an ILD shower, so the default 256 MB hold
 * ~75k showers) this is a full shuffle; for larger files it is a windowed shuffle, as
 * streaming loaders do. The same seed and options give the same batches whatever the
 * thread count.
 *
 * Memory and threads. One background thread reads, decompresses and densifies batches
 * ahead of use (opts.prefetch of them); memory is bounded by the window budget plus
 * prefetch + 1 dense batches, whatever the file size, so files larger than RAM stream.
 * The loader never uses the thread pool (it would compete with training).
 *
 * Transforms (cg_transform), applied to every cell value x in this order:
 *   1. threshold: x < threshold → 0 (in the file's unit, e.g. 0.1 MeV, the seeds' 0.5 MIP);
 *   2. per-layer calibration: x ·= calib[layer] (e.g. 2.03 for ILD layers ≥ 20);
 *   3. normalisation by the incident energy: x /= E (E in GeV: the "energy" conditioning
 *      value, or |p| from px, py, pz);
 *   4. scale: x ·= scale;
 *   5. a pointwise map: log(x + eps), x^p (sign kept), or Box–Cox ((x + eps)^λ − 1)/λ
 *      (λ = 0: log(x + eps)).
 * cg_transform_invert undoes 5 → 2 and then applies the threshold again, which is what a
 * generative model's output needs before it is compared with real showers.
 */
#ifndef CG_IO_LOADER_H
#define CG_IO_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "io/cvox.h"

typedef enum { CG_XFORM_NONE = 0, CG_XFORM_LOG, CG_XFORM_POW, CG_XFORM_BOXCOX } cg_xform_kind;

typedef struct {
    float threshold;                     /* 0 = none */
    int ncalib;                          /* 0 = no calibration, else = nlayers */
    float calib[CG_GEOM_MAX_LAYERS];
    bool norm_energy;
    float scale;                         /* 0 is taken as 1 */
    cg_xform_kind kind;
    float eps;                           /* LOG, BOXCOX */
    float power;                         /* POW: p; BOXCOX: λ */
} cg_transform;

/* Check a transform against a file's description (calibration length, an energy to
 * normalise by, parameters that make sense). */
cg_status cg_transform_check(const cg_transform *t, const cg_cvox_info *info);
/* In place on n showers x (n × ncells, dense order); energy: n incident energies in GeV
 * (needed only with norm_energy). */
void cg_transform_apply(const cg_transform *t, const cg_geometry *g, float *x, int64_t n, const float *energy);
void cg_transform_invert(const cg_transform *t, const cg_geometry *g, float *x, int64_t n, const float *energy);
/* The same on a tensor of n showers on any device (copied through the host), in place;
 * x must be contiguous with n·ncells elements. */
cg_status cg_transform_invert_tensor(const cg_transform *t, const cg_geometry *g, cg_tensor *x, int64_t n,
                                     const float *energy);
/* The incident energies (GeV) of n events from their conditioning rows (n × ncond, the
 * file's order): the "energy" value, or |p|. Returns -1 when the file has neither. */
int cg_energy_from_cond(const cg_cvox_info *info, const float *cond, int64_t n, float *energy);

typedef struct {
    int batch_size;          /* > 0 (default 64) */
    bool shuffle;            /* default false */
    uint64_t seed;
    bool drop_last;          /* drop the last, smaller batch of each epoch */
    int64_t first, count;    /* event range [first, first + count); count <= 0: to the end */
    cg_device device;        /* CG_CPU (default) or CG_CUDA */
    bool flat;               /* (B, ncells) even on a regular grid */
    const char *cond;        /* "energy,theta": the conditioning values to return; NULL = all */
    cg_transform transform;
    int64_t memory_mb;       /* budget for the shuffle window (decompressed sparse events); 0 = 256 */
    int prefetch;            /* batches prepared ahead; 0 = 2 */
} cg_loader_opts;

typedef struct cg_loader cg_loader;

void cg_loader_defaults(cg_loader_opts *o);
cg_loader *cg_loader_open(const char *path, const cg_loader_opts *o);
/* The next batch of the current epoch: returns 1 and sets *x and *cond (owned by the
 * caller; cond may be NULL, see above); 0 at the end of the epoch (the next call starts
 * the next epoch); -1 on an error (a corrupted chunk, out of memory; cg_last_error()). */
int cg_loader_next(cg_loader *l, cg_tensor **x, cg_tensor **cond);
/* Restart at the beginning of epoch `epoch` (for resuming; epochs count from 0). */
cg_status cg_loader_set_epoch(cg_loader *l, int64_t epoch);
int64_t cg_loader_epoch(const cg_loader *l);
int64_t cg_loader_events(const cg_loader *l);   /* events per epoch (the range) */
int64_t cg_loader_batches(const cg_loader *l);  /* batches per epoch */
const cg_cvox_info *cg_loader_info(const cg_loader *l);
int cg_loader_ncond(const cg_loader *l);
const char *cg_loader_cond_name(const cg_loader *l, int i);
void cg_loader_close(cg_loader *l);

#endif
