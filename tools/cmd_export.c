/*
 * tools/cmd_export.c — `calograd export`: a .cvox file as HDF5 in the CaloChallenge or the
 * ILD layout (io/hdf5.h), float32 showers with gzip and the shuffle filter, chunked by
 * events, readable by the community's tools (h5py, the CaloChallenge evaluation).
 *
 *   calograd export photons.cvox --format calochallenge -o photons.hdf5
 *   calograd export photons.cvox --format ild -o photons_ild.hdf5      (group "30x30")
 *
 * The file appears under its name only when complete; `calograd import` reads it back
 * bit for bit (the .cvox header travels in a "calograd_header" attribute).
 */
#include <signal.h>
#include <stdio.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#ifdef CG_HAVE_HDF5
#include "io/hdf5.h"
#endif

/* option tables name only the fields they use */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#ifdef CG_HAVE_HDF5
static int on_progress(int64_t done, int64_t total, void *ctx) {
    (void)ctx;
    if (cli_is_tty()) fprintf(stderr, "\rexport: %lld / %lld events", (long long)done, (long long)total);
    if (cli_is_tty() && done == total) fprintf(stderr, "\n");
    return cli_interrupted;
}
#endif

int cmd_export(int argc, char **argv) {
    const char *out = NULL, *format = NULL, *group = NULL;
    int gzip = 4, chunk = 0;
    bool no_shuffle = false;
    cli_opt opts[] = {
        {"-o", "FILE", "output HDF5 file", CLI_STR, &out, .required = true},
        {"--format", "F", "calochallenge | ild", CLI_CHOICE, &format, .required = true,
         .choices = "calochallenge|ild"},
        {"--gzip", "L", "deflate level 0..9 (default 4; 0 = none)", CLI_INT, &gzip},
        {"--no-shuffle", NULL, "leave out HDF5's shuffle filter", CLI_FLAG, &no_shuffle},
        {"--chunk-events", "N", "events per HDF5 chunk (default: about 1 MiB per chunk)", CLI_INT, &chunk},
        {"--group", "G", "ild layout: group name (default <rows>x<cols>, e.g. 30x30)", CLI_STR, &group},
        {0}};
    const char *pos[1];
    int npos = 0;
    int rc = cli_parse_pos("export",
                           "Write the showers of a .cvox file as HDF5: the CaloChallenge layout (incident_energies in "
                           "MeV, showers (N, cells) in MeV) or the ILD layout (group with energy in GeV and layers "
                           "(N, layers, rows, cols)); other conditioning values become (N, 1) datasets.",
                           opts, argc, argv, pos, 1, &npos, "FILE.cvox");
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    if (npos != 1) return cli_fail("export", "give one .cvox file (see calograd export --help)");
    if (gzip < 0 || gzip > 9) return cli_fail("export", "--gzip %d: give a level 0..9", gzip);
    if (chunk < 0) return cli_fail("export", "--chunk-events must be >= 0");
#ifdef CG_HAVE_HDF5
    cg_h5_export_opts o = {0};
    o.layout = (cg_h5_layout)cg_h5_layout_parse(format);
    o.gzip = gzip;
    o.no_shuffle = no_shuffle;
    o.chunk_events = chunk;
    o.group = group;
    cli_catch_signals();
    signal(SIGXFSZ, SIG_IGN); /* a file size limit is reported as a write error, like a full disk */
    double t0 = cli_now();
    cg_status st = cg_h5_export(pos[0], out, &o, on_progress, NULL);
    if (st) {
        if (cli_interrupted) {
            fprintf(stderr, "calograd export: interrupted; %s was not written\n", out);
            return 130;
        }
        return cli_fail_lib("export", NULL);
    }
    long size = cli_file_size(out);
    printf("export: %s -> %s (%s layout, gzip %d%s): %.2f MB in %.1f s\n", pos[0], out, format, gzip,
           no_shuffle ? "" : " + shuffle", size / 1e6, cli_now() - t0);
    return 0;
#else
    (void)format, (void)group, (void)no_shuffle;
    return cli_fail("export", "this calograd was built without HDF5 (install libhdf5-dev and rebuild)");
#endif
}
