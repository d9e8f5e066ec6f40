/*
 * io/simulate.h — a parametrised electromagnetic shower simulator, calograd's default data
 * source (`calograd simulate`, `calograd demo`).
 *
 * The physics, in the spirit of GFlash (Grindhammer & Peters, hep-ex/0001020):
 *  - longitudinal profile: a gamma distribution in depth t (radiation lengths X0),
 *    dE/dt = E·(βt)^(α−1)·β·e^(−βt)/Γ(α), whose parameters T = (α−1)/β (the depth of the
 *    maximum) and α fluctuate from shower to shower as correlated log-normals, with means,
 *    widths and correlation growing with ln(E/Ec) as in GFlash's fits for homogeneous media;
 *    a photon first converts after an exponential depth of mean 9/7 X0;
 *  - radial profile: core + tail, f(r) = p·2rRc²/(r²+Rc²)² + (1−p)·2rRt²/(r²+Rt²)², with
 *    Rc, Rt, p depending on the relative depth t/T and on E (GFlash's parametrisation), in
 *    units of the Molière radius;
 *  - a sampling calorimeter: each sensitive layer sees the energy deposited in the absorber
 *    before it times its sampling fraction, as SPOTS: charged-particle crossings of the
 *    sensor, each depositing a Landau-like (Moyal) energy around the MIP value. The number of
 *    spots per layer is Poisson with a gamma-distributed mean (sampling fluctuations, tuned
 *    to a stochastic term a/√E), placed by the radial profile around the shower axis;
 *  - the polar angle θ (90° = normal incidence) and azimuth φ tilt the axis (it moves along
 *    the rows, y, as θ decreases from 90°; along the cols, x, as φ moves away from 90°), and
 *    the path through each layer lengthens by 1/cos(incidence);
 *  - electronic noise (Gaussian, added to every cell that received energy) and a threshold
 *    (0.5 MIP by default: cells below it are set to 0).
 * So the cell spectrum shows a MIP peak, the energy sum is linear in E with a resolution of
 * about a/√E, and the depth of the shower maximum grows like ln E (tests/test_simulate.c).
 *
 * Geometries (cg_sim_opts.geometry):
 *   ild       Si-W ECAL of ILD: 30 layers (20 × 2.1 mm W = 0.6 X0, then 10 × 4.2 mm),
 *             5×5 mm² cells, 30×30×30 grid, cell energies in MeV, MIP ≈ 0.2 MeV
 *   ild-wide  the same calorimeter on 30 layers × 60 rows (y, the tilt direction) × 30 cols,
 *             for polar angles down to 30° (default θ range 30:90)
 *   clic      CLIC-like Si-W ECAL, 25 layers of 0.92 X0, 5.1 mm cells, 25×25×25
 *   lhcb      LHCb-like Shashlik ECAL (66 × 2 mm Pb / 4 mm scintillator), a 30×30 image of
 *             20.2 mm cells summed over the depth; conditioned on px, py, pz (GeV) and the
 *             entry point x0, y0 (mm) instead of energy/angles
 *   custom    a regular grid of opts.grid = {layers, rows, cols} cells of cell_mm, each layer
 *             with layer_x0 radiation lengths of tungsten (ILD-like sampling)
 *
 * Conditioning stored per event (names and units of io/cvox.h): "energy" (GeV) always; then
 * "theta", "phi" (deg) and "x0", "y0" (mm) for those whose range is not a single value. lhcb
 * stores "px", "py", "pz", "x0", "y0". By default the entry point is chosen so that the
 * shower axis crosses the centre of the middle cell at a reference depth (about 7 X0),
 * whatever the angle; giving x0/y0 ranges sets the entry point on the front face instead.
 *
 * Determinism: event i is a pure function of (options, seed, i): it draws from its own
 * Philox stream (key = seed, counters from i·2^32), so results do not depend on the thread
 * count or on which events are simulated together.
 *
 * Limits: no hadrons; noise only on cells that received energy (pure-noise hits above a
 * 0.5 MIP threshold would be a 5σ fluctuation of 0.1 MIP noise: ~0.01 per event, ignored);
 * parameters are GFlash's homogeneous-medium fits with effective material constants, not a
 * tuned description of any real detector.
 */
#ifndef CG_IO_SIMULATE_H
#define CG_IO_SIMULATE_H

#include <stdint.h>

#include "core/error.h"
#include "io/cvox.h"

typedef struct {
    const char *geometry;   /* "ild" (default), "ild-wide", "clic", "lhcb", "custom" */
    int grid[3];            /* custom: layers, rows, cols */
    double cell_mm;         /* custom: cell size (default 5) */
    double layer_x0;        /* custom: tungsten per layer in X0 (default 0.6) */
    const char *particle;   /* "photon" (default) or "electron" */
    double energy[2];       /* GeV (lhcb: |p|), drawn uniformly in [lo, hi] */
    int log_energy;         /* draw log(E) uniformly instead */
    double theta[2];        /* deg; NAN = the geometry's default (90, ild-wide 30:90) */
    double phi[2];          /* deg; NAN = 90 */
    double x0[2], y0[2];    /* mm, entry point on the front face; NAN = auto-centred */
    double threshold_mip;   /* cells below this many MIPs are zeroed (default 0.5) */
    double noise_mip;       /* Gaussian noise per hit cell, in MIPs (default 0.1) */
    uint64_t seed;
} cg_sim_opts;

typedef struct cg_sim cg_sim;

/* Fill o with the defaults above. */
void cg_sim_defaults(cg_sim_opts *o);
/* Check the options and build the detector; NULL + cg_last_error() for bad ones. */
cg_sim *cg_sim_new(const cg_sim_opts *o);
void cg_sim_free(cg_sim *s);
/* Geometry, particle, conditioning names/units and provenance of the events (nevents 0). */
const cg_cvox_info *cg_sim_info(const cg_sim *s);
/* Events [first, first + n) into dense (n × ncells, MeV) and cond (n × ncond); either may be
 * NULL. Multithreaded (cg_parallel_for); the result does not depend on the thread count. */
void cg_sim_run(const cg_sim *s, int64_t first, int64_t n, float *dense, float *cond);
/* Per output layer: the depth of its sensor in X0 at normal incidence, and its calibration
 * factor (sampling fraction of layer 0 / its own: 1 for ILD's thin layers, 2 for the thick
 * ones), so that Σ calib_l·E_l is proportional to the deposited energy. Returns nlayers. */
int cg_sim_layers(const cg_sim *s, double *depth_x0, double *calib);
/* Simulate n events into a .cvox file, in blocks; progress(done, total, ctx) after each
 * block when given; it may return nonzero to stop (the file is then not created). */
cg_status cg_sim_write(const cg_sim *s, int64_t n, const char *path, int (*progress)(int64_t, int64_t, void *),
                       void *ctx);

#endif
