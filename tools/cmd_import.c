/*
 * tools/cmd_import.c — `calograd import`: HDF5 files (CaloChallenge, CaloGAN, ILD, CLIC
 * layouts; io/hdf5.h) into one .cvox file.
 *
 *   calograd import dataset_2_1.hdf5 -o ds2.cvox
 *   calograd import clic/test_data_1.h5 clic/test_data_2.h5 -o clic.cvox            (ECAL)
 *   calograd import clic/test_data_1.h5 --calorimeter hcal -o hcal.cvox
 *
 * The layout is detected from the dataset names; --format forces one. Every problem with an
 * input (missing or misshaped datasets, different geometries across files) is reported
 * with the file and dataset, exit code 2, and no output file is left behind.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#ifdef CG_HAVE_HDF5
#include "io/hdf5.h"
#endif

/* option tables name only the fields they use */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MAX_INPUTS 4096

#ifdef CG_HAVE_HDF5
static int on_progress(int64_t done, int64_t total, void *ctx) {
    (void)ctx;
    if (cli_is_tty()) fprintf(stderr, "\rimport: %lld / %lld events", (long long)done, (long long)total);
    if (cli_is_tty() && done == total) fprintf(stderr, "\n");
    return cli_interrupted;
}
#endif

int cmd_import(int argc, char **argv) {
    const char *out = NULL, *format = "auto", *group = NULL, *calo = "ecal", *unit = "MeV", *particle = NULL;
    int epc = 0;
    cli_opt opts[] = {
        {"-o", "FILE", "output .cvox file", CLI_STR, &out, .required = true},
        {"--format", "F", "auto | calochallenge | calogan | ild | clic (default auto: detect)", CLI_CHOICE, &format,
         .choices = "auto|calochallenge|calogan|ild|clic"},
        {"--group", "G", "ild layout: the group holding energy and layers (default: found)", CLI_STR, &group},
        {"--calorimeter", "C", "clic layout: ecal (default) or hcal", CLI_CHOICE, &calo, .choices = "ecal|hcal|ECAL|HCAL"},
        {"--energy-unit", "U", "unit of the cell values in the file: MeV (default) or GeV", CLI_CHOICE, &unit,
         .choices = "MeV|GeV"},
        {"--particle", "P", "particle name to record (default: from the file, else unknown)", CLI_STR, &particle},
        {"--events-per-chunk", "N", "events per .cvox chunk (default 256)", CLI_INT, &epc},
        {0}};
    const char *pos[MAX_INPUTS];
    int npos = 0;
    int rc = cli_parse_pos("import",
                           "Convert HDF5 shower files to one .cvox file. Layouts: CaloChallenge (incident_energies, "
                           "showers), CaloGAN (energy, layer_0..2), ILD/BIB-AE (a group with energy, layers), "
                           "CLIC/3DGAN (ECAL or HCAL, target). Several inputs of the same layout and geometry are "
                           "concatenated in the order given.",
                           opts, argc, argv, pos, MAX_INPUTS, &npos, "FILE.h5 [FILE.h5 ...]");
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    if (npos < 1) return cli_fail("import", "give at least one HDF5 file (see calograd import --help)");
    if (epc < 0) return cli_fail("import", "--events-per-chunk must be >= 0");
#ifdef CG_HAVE_HDF5
    cg_h5_opts o = {0};
    o.layout = (cg_h5_layout)cg_h5_layout_parse(format);
    o.group = group;
    o.calorimeter = (calo[0] == 'h' || calo[0] == 'H') ? "HCAL" : "ECAL";
    o.energy_unit = unit;
    o.particle = particle;
    cli_catch_signals();
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is reported as a write error, like a full disk */
    double t0 = cli_now();
    cg_status st = cg_h5_import(pos, npos, out, &o, epc, on_progress, NULL);
    if (st) {
        if (cli_interrupted) {
            fprintf(stderr, "calograd import: interrupted; %s was not written\n", out);
            return 130;
        }
        return cli_fail_lib("import", NULL);
    }
    cg_cvox_reader *r = cg_cvox_open(out);
    if (!r) return cli_fail_lib("import", NULL);
    const cg_cvox_info *info = cg_cvox_info_of(r);
    printf("import: %d file%s -> %s: %lld events on '%s' (%lld cells), %d conditioning value%s, %.2f MB in %.1f s\n",
           npos, npos > 1 ? "s" : "", out, (long long)info->nevents, info->geom.name, (long long)info->geom.ncells,
           info->ncond, info->ncond == 1 ? "" : "s", (double)cg_cvox_file_size(r) / 1e6, cli_now() - t0);
    cg_cvox_close(r);
    return 0;
#else
    (void)format, (void)group, (void)calo, (void)unit, (void)particle;
    return cli_fail("import", "this calograd was built without HDF5 (install libhdf5-dev and rebuild)");
#endif
}
