/*
 * tools/cmd_simulate.c — `calograd simulate`: showers from the built-in parametrised
 * simulator (io/simulate.h) into a .cvox file.
 *
 *   calograd simulate --geometry ild --particle photon --energy 10:100 --theta 30:90 \
 *       --events 100000 --seed 1 -o photons.cvox
 *
 * The file appears only when complete (Ctrl-C or an error leaves nothing behind). The
 * same options and seed give the same file, whatever --threads says.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#include "io/simulate.h"

/* option tables name only the fields they use */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static int on_progress(int64_t done, int64_t total, void *ctx) {
    double t0 = *(double *)ctx;
    if (cli_is_tty()) {
        double dt = cli_now() - t0;
        fprintf(stderr, "\rsimulate: %lld / %lld events (%.0f events/s)", (long long)done, (long long)total,
                dt > 0 ? (double)done / dt : 0.0);
        if (done == total) fprintf(stderr, "\n");
    }
    return cli_interrupted;
}

int cmd_simulate(int argc, char **argv) {
    cg_sim_opts o;
    cg_sim_defaults(&o);
    const char *out = NULL;
    int64_t events = 10000, seed = 1;
    int grid[3] = {30, 30, 30}, threads = 0;
    bool log_energy = false;
    cli_opt opts[] = {
        {"-o", "FILE", "output .cvox file", CLI_STR, &out, .required = true},
        {"--geometry", "NAME", "ild | ild-wide | clic | lhcb | custom (default ild)", CLI_CHOICE, &o.geometry,
         .choices = "ild|ild-wide|clic|lhcb|custom"},
        {"--particle", "P", "photon | electron (default photon)", CLI_CHOICE, &o.particle,
         .choices = "photon|electron"},
        {"--events", "N", "number of showers (default 10000)", CLI_INT64, &events},
        {"--energy", "A:B", "incident energy range in GeV (lhcb: momentum), uniform (default 10:100)", CLI_RANGE,
         o.energy},
        {"--log-energy", NULL, "draw the energy log-uniformly in the range", CLI_FLAG, &log_energy},
        {"--theta", "A:B", "polar angle range in degrees, 90 = normal incidence (default 90; ild-wide 30:90)",
         CLI_RANGE, o.theta},
        {"--phi", "A:B", "azimuth range in degrees, 90 = no sideways tilt (default 90)", CLI_RANGE, o.phi},
        {"--x0", "A:B", "entry point x on the front face, mm (default: centre the shower)", CLI_RANGE, o.x0},
        {"--y0", "A:B", "entry point y on the front face, mm (default: centre the shower)", CLI_RANGE, o.y0},
        {"--grid", "D,H,W", "custom geometry: layers, rows, cols (default 30,30,30)", CLI_INT3, grid},
        {"--cell", "MM", "custom geometry: cell size in mm (default 5)", CLI_FLOAT, &o.cell_mm},
        {"--layer-x0", "X0", "custom geometry: tungsten per layer in radiation lengths (default 0.6)", CLI_FLOAT,
         &o.layer_x0},
        {"--threshold", "MIP", "zero the cells below this many MIPs (default 0.5)", CLI_FLOAT, &o.threshold_mip},
        {"--noise", "MIP", "Gaussian noise per hit cell in MIPs (default 0.1)", CLI_FLOAT, &o.noise_mip},
        {"--seed", "S", "random seed (default 1); the same seed gives the same file", CLI_INT64, &seed},
        {"--threads", "N", "CPU threads (default: all cores)", CLI_INT, &threads},
        {0}};
    int rc = cli_parse("simulate",
                       "Simulate electromagnetic showers with the built-in GFlash-style parametrised simulator "
                       "(longitudinal gamma profiles with correlated fluctuations, core+tail radial profile, "
                       "energy spots with Landau fluctuations in a sampling calorimeter, noise and a 0.5 MIP "
                       "threshold) and write them to a .cvox file. Cell energies in MeV; conditioning: energy "
                       "(GeV), plus theta/phi (deg) and x0/y0 (mm) when they vary; lhcb: px, py, pz, x0, y0.",
                       opts, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    if (events < 0 || events > (INT64_C(1) << 40)) return cli_fail("simulate", "--events %lld is out of range",
                                                                   (long long)events);
    if (seed < 0) return cli_fail("simulate", "--seed must be >= 0");
    if (threads < 0) return cli_fail("simulate", "--threads must be >= 0");
    if (threads) cg_threads_set(threads);
    o.grid[0] = grid[0], o.grid[1] = grid[1], o.grid[2] = grid[2];
    o.log_energy = log_energy;
    o.seed = (uint64_t)seed;
    cg_sim *sim = cg_sim_new(&o);
    if (!sim) return cli_fail_lib("simulate", NULL);
    cli_catch_signals();
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is reported as a write error, like a full disk */
    double t0 = cli_now();
    cg_status st = cg_sim_write(sim, events, out, on_progress, &t0);
    double dt = cli_now() - t0;
    const cg_cvox_info *info = cg_sim_info(sim);
    if (st) {
        cg_sim_free(sim);
        if (cli_interrupted) {
            fprintf(stderr, "calograd simulate: interrupted; %s was not written\n", out);
            return 130;
        }
        return cli_fail_lib("simulate", NULL);
    }
    long size = cli_file_size(out);
    printf("simulate: %lld %s showers on '%s' (%lld cells) -> %s: %.1f MB in %.1f s (%.0f events/s, %d threads)\n",
           (long long)events, info->particle, info->geom.name, (long long)info->geom.ncells, out, size / 1e6, dt,
           dt > 0 ? (double)events / dt : 0.0, cg_threads_get());
    cg_sim_free(sim);
    return 0;
}
