/*
 * tools/cmd_demo.c — `calograd demo`: the whole path in one command.
 *
 *   1. simulate  a training set and an independent test set of ILD-like photon showers
 *                (io/simulate.h; different seeds);
 *   2. train     the conditional VAE on the training set (models/train.h), within a time
 *                budget so that the whole demo ends in about 15 minutes on 2 cores;
 *   3. generate  as many showers as the test set, with the test set's conditions;
 *   4. evaluate  generated against test showers: metrics.json and an HTML report
 *                (models/eval/), and print where the report is.
 *
 * Defaults suit a laptop-class 2-core machine; --events, --epochs, --time-limit,
 * --channels/--latent/--hidden make it bigger on bigger machines. Everything lands in
 * --out DIR (default demo-out/); an existing run there is reused only with --resume.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#include "io/simulate.h"
#include "models/eval/evaluate.h"
#include "models/train.h"

static int progress(int64_t done, int64_t total, void *ctx) {
    (void)ctx;
    if (cli_is_tty()) fprintf(stderr, "\r\033[K  simulated %lld / %lld", (long long)done, (long long)total);
    return cli_interrupted;
}

static int simulate(const char *path, const char *geometry, double theta_lo, double theta_hi, int64_t n,
                    uint64_t seed) {
    cg_sim_opts so;
    cg_sim_defaults(&so);
    so.geometry = geometry;
    so.energy[0] = 10;
    so.energy[1] = 100;
    so.theta[0] = theta_lo;
    so.theta[1] = theta_hi;
    so.seed = seed;
    cg_sim *s = cg_sim_new(&so);
    if (!s) return cli_fail_lib("demo", "simulate");
    cg_status st = cg_sim_write(s, n, path, progress, NULL);
    if (cli_is_tty()) fprintf(stderr, "\r\033[K");
    cg_sim_free(s);
    return st == CG_OK ? 0 : cli_fail_lib("demo", "simulate");
}

int cmd_demo(int argc, char **argv) {
    const char *out = "demo-out", *geometry = "ild", *device = "cpu";
    int64_t events = 20000, test_events = 4000;
    int epochs = 30, batch = 64, seed = 1, threads = 0, channels = 8, latent = 16, hidden = 256;
    double time_limit = 480, theta[2] = {60, 90};
    bool resume = false;
    cli_opt opts[] = {
        {"--out", "DIR", "where everything goes (default demo-out)", CLI_STR, &out},
        {"--events", "N", "training showers to simulate (default 20000)", CLI_INT64, &events},
        {"--test-events", "N", "test showers: the reference the model is compared with (default 4000)", CLI_INT64,
         &test_events},
        {"--geometry", "NAME", "ild (default), ild-wide or clic", CLI_CHOICE, &geometry, .choices = "ild|ild-wide|clic"},
        {"--theta", "A:B", "polar angle range in degrees (default 60:90)", CLI_RANGE, theta},
        {"--epochs", "N", "at most this many epochs (default 30)", CLI_INT, &epochs},
        {"--time-limit", "S", "training time budget in seconds (default 480; 0 = none)", CLI_FLOAT, &time_limit},
        {"--batch", "B", "showers per step (default 64)", CLI_INT, &batch},
        {"--channels", "C", "VAE size: first conv channels (default 8)", CLI_INT, &channels},
        {"--latent", "L", "VAE latent dimensions (default 16)", CLI_INT, &latent},
        {"--hidden", "H", "VAE fully connected width (default 256)", CLI_INT, &hidden},
        {"--device", "DEV", "cpu or cuda", CLI_CHOICE, &device, .choices = "cpu|cuda"},
        {"--seed", "S", "random seed", CLI_INT, &seed},
        {"--threads", "N", "CPU threads (default: all cores)", CLI_INT, &threads},
        {"--resume", NULL, "continue an interrupted demo in DIR (training resumes from its checkpoint)", CLI_FLAG,
         &resume},
        {0}};
    int rc = cli_parse("demo", "Simulate showers, train a conditional VAE, generate showers with it and compare them "
                               "with the simulation in an HTML report.", opts, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    if (events < batch || test_events < 100)
        return cli_fail("demo", "need at least one batch of training events and 100 test events");
    if (threads > 0) cg_threads_set(threads);
    if (strcmp(device, "cuda") == 0 && !cg_device_available(CG_CUDA))
        return cli_fail("demo", "--device cuda: no usable GPU (or calograd was built without CUDA)");
    if (mkdir(out, 0777) != 0 && errno != EEXIST) return cli_fail("demo", "cannot create %s: %s", out, strerror(errno));
    cli_catch_signals();
    double t0 = cli_now();
    char train_path[1100], test_path[1100], run_dir[1100], gen_path[1100], report[1100], ckpt[1200];
    snprintf(train_path, sizeof train_path, "%s/train.cvox", out);
    snprintf(test_path, sizeof test_path, "%s/test.cvox", out);
    snprintf(run_dir, sizeof run_dir, "%s/run", out);
    snprintf(gen_path, sizeof gen_path, "%s/generated.cvox", out);
    snprintf(report, sizeof report, "%s/report", out);

    /* 1. data: reused when present (a demo resumed after Ctrl-C) */
    printf("[1/4] simulating %lld training and %lld test showers (%s, photons, 10-100 GeV, theta %g-%g deg)\n",
           (long long)events, (long long)test_events, geometry, theta[0], theta[1]);
    fflush(stdout);
    if (!(resume && access(train_path, R_OK) == 0) && simulate(train_path, geometry, theta[0], theta[1], events, (uint64_t)seed))
        return 2;
    if (!(resume && access(test_path, R_OK) == 0) &&
        simulate(test_path, geometry, theta[0], theta[1], test_events, (uint64_t)seed + 1000003))
        return 2;
    printf("      %.0f s\n", cli_now() - t0);

    /* 2. training */
    printf("[2/4] training the VAE (at most %d epochs%s)\n", epochs, time_limit > 0 ? ", time-limited" : "");
    fflush(stdout);
    double t1 = cli_now();
    cg_config cfg = {0};
    char buf[64];
#define SET(key, fmt, v) (snprintf(buf, sizeof buf, fmt, v), cg_config_set(&cfg, key, buf, "flag"))
    cg_config_set(&cfg, "model", "vae", "flag");
    cg_config_set(&cfg, "data", train_path, "flag");
    cg_config_set(&cfg, "out", run_dir, "flag");
    cg_config_set(&cfg, "device", device, "flag");
    SET("epochs", "%d", epochs);
    SET("batch", "%d", batch);
    SET("seed", "%d", seed);
    SET("holdout", "%g", 0.0);
    SET("time_limit", "%g", time_limit);
    SET("channels", "%d", channels);
    SET("latent", "%d", latent);
    SET("hidden", "%d", hidden);
#undef SET
    cg_train_opts to = {.resume = resume && access(run_dir, F_OK) == 0, .stop = &cli_interrupted, .log = stderr,
                        .progress_bar = cli_is_tty()};
    char ckp[1200];
    snprintf(ckp, sizeof ckp, "%s/model.ckpt", run_dir);
    if (to.resume && access(ckp, R_OK) != 0) to.resume = false;
    cg_train_result tr;
    cg_status st = cg_train(&cfg, &to, &tr);
    cg_config_free(&cfg);
    if (st != CG_OK) return cli_fail_lib("demo", "training");
    if (tr.interrupted) {
        fprintf(stderr, "calograd demo: interrupted; continue with: calograd demo --out %s --resume\n", out);
        return 130;
    }
    printf("      %lld steps, %.0f showers/s, %.0f s%s\n", (long long)tr.steps, tr.showers_per_s, cli_now() - t1,
           tr.time_limited ? " (time budget reached)" : "");

    /* 3. generation with the test set's conditions */
    printf("[3/4] generating %lld showers with the test set's conditions\n", (long long)test_events);
    fflush(stdout);
    snprintf(ckpt, sizeof ckpt, "%s", tr.checkpoint);
    cg_generate_opts go = {.events = test_events, .batch = 256, .seed = (uint64_t)seed + 7,
                           .device = strcmp(device, "cuda") == 0 ? CG_CUDA : CG_CPU, .cond_from = test_path};
    cg_generate_result gr;
    if (cg_generate(ckpt, gen_path, &go, &gr) != CG_OK) return cli_fail_lib("demo", "generation");
    printf("      %.0f showers/s\n", gr.showers_per_s);

    /* 4. evaluation (models/eval/evaluate.h): metrics.json and index.html in `report` */
    printf("[4/4] evaluating generated against test showers\n");
    fflush(stdout);
    cg_eval_opts eo;
    cg_eval_defaults(&eo);
    eo.seed = (uint64_t)seed;
    cg_eval_summary es;
    if (cg_evaluate_files(test_path, gen_path, report, &eo, &es) != CG_OK) return cli_fail_lib("demo", "evaluation");
    cg_eval_summary_print(stdout, &es);
    printf("done in %.0f s: open %s\n", cli_now() - t0, es.report_path);
    return 0;
}
