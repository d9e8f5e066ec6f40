/*
 * tools/cmd_evaluate.c — `calograd evaluate`: compare generated showers with reference
 * showers on the physics observables, the CaloChallenge metrics and a classifier test.
 *
 *   calograd evaluate --reference test.cvox --generated gen.cvox --out eval/
 *
 * Writes eval/metrics.json (keys in docs/metrics.md), the CSV files and eval/index.html
 * (models/eval/evaluate.h has the list), then prints a summary. Exit codes: 0 done (metrics
 * that could not be computed are null with a warning), 2 bad flags or inputs (a missing
 * or corrupted file, no events, different geometries or conditioning), 1 other failures.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#include "models/eval/evaluate.h"

/* option tables name only the fields they use */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* "10,20,50,100" -> increasing edges */
static int parse_edges(const char *s, double *e, int max, int *n) {
    *n = 0;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !isfinite(v) || *n > max) return -1;
        if (*n && !(v > e[*n - 1])) return -1;
        e[(*n)++] = v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return *n >= 2 ? 0 : -1;
}

int cmd_evaluate(int argc, char **argv) {
    cg_eval_opts o;
    cg_eval_defaults(&o);
    const char *ref = NULL, *gen = NULL, *out = NULL, *ebins = NULL;
    double threshold = NAN, lr = o.cls_lr;
    int64_t max_events = 0, seed = (int64_t)o.seed, cls_events = o.cls_max_per_class[0],
            vox_events = o.cls_max_per_class[1];
    int threads = 0, singles = o.n_single, width = o.cls_width[0], vox_width = o.cls_width[1],
        epochs = o.cls_epochs[0], vox_epochs = o.cls_epochs[1], layers = o.cls_layers, batch = o.cls_batch;
    bool no_cls = false, no_vox = false, quiet = false;
    cli_opt opts[] = {
        {"--reference", "FILE", "reference showers (.cvox), e.g. Geant4 or the simulator's test set", CLI_STR, &ref,
         .required = true},
        {"--generated", "FILE", "generated showers (.cvox) on the same geometry and conditioning", CLI_STR, &gen,
         .required = true},
        {"--out", "DIR", "output folder: metrics.json, CSV files, index.html (created if needed)", CLI_STR, &out,
         .required = true},
        {"--threshold", "E", "hit threshold in the files' energy unit (default: half a MIP when the geometry "
                             "gives its MIP, else 0)",
         CLI_FLOAT, &threshold},
        {"--max-events", "N", "use at most the first N showers of each file (default: all)", CLI_INT64,
         &max_events},
        {"--energy-bins", "E0,E1,..", "incident energy bin edges in GeV for the per-bin metrics (default: the "
                                      "files' test points, or about 5 round bins)",
         CLI_STR, &ebins},
        {"--singles", "N", "single showers shown per sample in the report (default 3)", CLI_INT, &singles},
        {"--no-classifier", NULL, "skip both classifier tests", CLI_FLAG, &no_cls},
        {"--no-voxel-classifier", NULL, "skip the classifier on voxels (the slower one)", CLI_FLAG, &no_vox},
        {"--cls-events", "N", "showers per sample for the high-level classifier (default 6000)", CLI_INT64,
         &cls_events},
        {"--cls-voxel-events", "N", "showers per sample for the voxel classifier (default 2000)", CLI_INT64,
         &vox_events},
        {"--cls-width", "W", "hidden units of the high-level classifier (default 128; CaloChallenge 512)", CLI_INT,
         &width},
        {"--cls-voxel-width", "W", "hidden units of the voxel classifier (default 32)", CLI_INT, &vox_width},
        {"--cls-layers", "L", "hidden W->W layers after the first (default 2, as CaloChallenge)", CLI_INT, &layers},
        {"--cls-epochs", "N", "epochs of the high-level classifier (default 20)", CLI_INT, &epochs},
        {"--cls-voxel-epochs", "N", "epochs of the voxel classifier (default 4)", CLI_INT, &vox_epochs},
        {"--cls-batch", "B", "classifier batch size (default 128)", CLI_INT, &batch},
        {"--cls-lr", "LR", "classifier Adam learning rate (default 1e-3)", CLI_FLOAT, &lr},
        {"--seed", "S", "seed of the classifiers' split, initialisation and subsets (default 1)", CLI_INT64, &seed},
        {"--threads", "N", "CPU threads (default: all cores)", CLI_INT, &threads},
        {"--quiet", NULL, "print only errors", CLI_FLAG, &quiet},
        {0}};
    int rc = cli_parse("evaluate",
                       "Compare generated with reference showers: per-shower observables (visible energy and its "
                       "ratio to the incident energy, hits, profiles, centre of gravity, widths, E1/E9, E9/E21, "
                       "sparsity, ...) and the cell energy spectrum, with CaloChallenge's separation power, the "
                       "Wasserstein-1 distance and the KS statistic, overall and per conditioning bin; classifiers "
                       "trained to tell the samples apart (AUC, JSD). Writes metrics.json, CSV files of every "
                       "histogram and an HTML report (index.html) into --out.",
                       opts, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    if (!isnan(threshold)) {
        if (!(threshold >= 0) || !isfinite(threshold)) return cli_fail("evaluate", "--threshold must be >= 0");
        o.has_threshold = true;
        o.threshold = threshold;
    }
    if (max_events < 0) return cli_fail("evaluate", "--max-events must be >= 0");
    if (singles < 0 || singles > 100) return cli_fail("evaluate", "--singles must be in 0..100");
    if (threads < 0) return cli_fail("evaluate", "--threads must be >= 0");
    if (seed < 0) return cli_fail("evaluate", "--seed must be >= 0");
    if (width < 1 || vox_width < 1 || width > 8192 || vox_width > 8192)
        return cli_fail("evaluate", "--cls-width and --cls-voxel-width must be in 1..8192");
    if (layers < 0 || layers > 8) return cli_fail("evaluate", "--cls-layers must be in 0..8");
    if (epochs < 1 || vox_epochs < 1) return cli_fail("evaluate", "the classifier epochs must be >= 1");
    if (batch < 1) return cli_fail("evaluate", "--cls-batch must be >= 1");
    if (!(lr > 0) || !isfinite(lr)) return cli_fail("evaluate", "--cls-lr must be > 0");
    if (cls_events < 1 || vox_events < 1) return cli_fail("evaluate", "the classifier event counts must be >= 1");
    if (ebins && parse_edges(ebins, o.energy_bins, CG_EVAL_MAX_EBINS, &o.n_energy_bins) != 0)
        return cli_fail("evaluate", "--energy-bins wants 2 to %d increasing numbers separated by commas, got '%s'",
                        CG_EVAL_MAX_EBINS + 1, ebins);
    if (ebins) o.n_energy_bins -= 1; /* edges -> bins */
    o.max_events = max_events;
    o.n_single = singles;
    o.threads = threads;
    o.seed = (uint64_t)seed;
    o.verbose = !quiet && cli_is_tty(); /* progress lines only on a terminal */
    o.classifier[0] = !no_cls;
    o.classifier[1] = !no_cls && !no_vox;
    o.cls_width[0] = width;
    o.cls_width[1] = vox_width;
    o.cls_layers = layers;
    o.cls_epochs[0] = epochs;
    o.cls_epochs[1] = vox_epochs;
    o.cls_batch = batch;
    o.cls_lr = lr;
    o.cls_max_per_class[0] = cls_events;
    o.cls_max_per_class[1] = vox_events;

    cg_eval_summary s;
    if (cg_evaluate_files(ref, gen, out, &o, &s) != CG_OK) return cli_fail_lib("evaluate", NULL);
    if (!quiet) cg_eval_summary_print(stdout, &s);
    return 0;
}
