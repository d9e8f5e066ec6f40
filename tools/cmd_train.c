/*
 * tools/cmd_train.c — `calograd train`: flags and a config file become one configuration
 * (models/config.h), then models/train.c runs it. Flags win over the config file; model
 * options without a flag of their own are set with --set key=value (repeatable) or in the
 * file. Ctrl-C saves a checkpoint and exits; --resume continues it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#include "models/train.h"

static void print_options(void) {
    printf("\nconfiguration keys (in a --config file as key = value, or --set key=value):\n  trainer:\n");
    cg_config_print_help(cg_train_options, "    ");
    printf("  optimizer:\n");
    cg_config_print_help(cg_optim_options, "    ");
    const cg_model_family *const *fams;
    int nf = cg_model_families(&fams);
    for (int i = 0; i < nf; i++) {
        printf("  model %s — %s:\n", fams[i]->name, fams[i]->summary);
        cg_config_print_help(fams[i]->options, "    ");
    }
}

int cmd_train(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *out = NULL, *device = NULL, *config = NULL, *math = NULL;
    int epochs = 0, batch = 0, seed = 0, threads = 0;
    int64_t max_steps = 0;
    double lr = 0;
    bool resume = false;
    /* --set key=value may repeat: take them out before the common parser sees argv */
    cg_config cfg = {0};
    char **args = cg_xmalloc((size_t)(argc + 1) * sizeof(char *));
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 || strncmp(argv[i], "--set=", 6) == 0) {
            const char *kv = argv[i][5] == '=' ? argv[i] + 6 : (i + 1 < argc ? argv[++i] : NULL);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!eq || eq == kv) {
                free(args);
                cg_config_free(&cfg);
                return cli_fail("train", "--set needs key=value (got '%s')", kv ? kv : "");
            }
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            cg_config_set(&cfg, key, eq + 1, "flag");
            continue;
        }
        args[nargs++] = argv[i];
    }
    args[nargs] = NULL;
    cli_opt opts[] = {
        {"--model", "NAME", "model family (see below)", CLI_STR, &model},
        {"--data", "FILE", "training data (.cvox)", CLI_STR, &data},
        {"--out", "RUNDIR", "run directory: config, log.csv, model.ckpt", CLI_STR, &out},
        {"--epochs", "N", "passes over the training data", CLI_INT, &epochs},
        {"--batch", "B", "showers per step", CLI_INT, &batch},
        {"--lr", "X", "learning rate", CLI_FLOAT, &lr},
        {"--device", "DEV", "cpu or cuda", CLI_CHOICE, &device, .choices = "cpu|cuda"},
        {"--math", "SPEC", "GPU math mode: fp32 (default), tf32 or bf16, or per module (\"fp32,decoder:tf32\")",
         CLI_STR, &math},
        {"--seed", "S", "random seed (data order, noise, initialisation)", CLI_INT, &seed},
        {"--threads", "N", "CPU threads (default: all cores)", CLI_INT, &threads},
        {"--max-steps", "N", "stop after N steps in total (0: no limit)", CLI_INT64, &max_steps},
        {"--config", "FILE", "a file of key = value lines (every option can be set there)", CLI_STR, &config},
        {"--set", "KEY=VALUE", "set any configuration key (repeatable)", CLI_STR, NULL},
        {"--resume", NULL, "continue the run in RUNDIR from its checkpoint", CLI_FLAG, &resume},
        {0}};
    int rc = cli_parse("train", "Train a model on a .cvox file.", opts, nargs, args);
    free(args);
    if (rc == CLI_HELP) {
        print_options();
        cg_config_free(&cfg);
        return 0;
    }
    if (rc != CLI_OK) {
        cg_config_free(&cfg);
        return 2;
    }
    char buf[64];
#define FLAG(opt_index, key, fmt, val)                                       \
    if (opts[opt_index].seen) {                                              \
        snprintf(buf, sizeof buf, fmt, val);                                 \
        cg_config_set(&cfg, key, buf, "flag");                               \
    }
    if (model) cg_config_set(&cfg, "model", model, "flag");
    if (data) cg_config_set(&cfg, "data", data, "flag");
    if (out) cg_config_set(&cfg, "out", out, "flag");
    FLAG(3, "epochs", "%d", epochs)
    FLAG(4, "batch", "%d", batch)
    FLAG(5, "lr", "%.9g", lr)
    if (device) cg_config_set(&cfg, "device", device, "flag");
    if (math) cg_config_set(&cfg, "math", math, "flag");
    FLAG(8, "seed", "%d", seed)
    FLAG(9, "threads", "%d", threads)
    FLAG(10, "max_steps", "%lld", (long long)max_steps)
#undef FLAG
    if (config && cg_config_load_file(&cfg, config, true) != CG_OK) {
        cg_config_free(&cfg);
        return cli_fail_lib("train", NULL);
    }
    cli_catch_signals();
    cg_train_opts to = {.resume = resume, .stop = &cli_interrupted, .log = stderr, .progress_bar = cli_is_tty()};
    cg_train_result res;
    cg_status st = cg_train(&cfg, &to, &res);
    cg_config_free(&cfg);
    if (st != CG_OK) return cli_fail_lib("train", NULL);
    if (res.interrupted) {
        fprintf(stderr, "calograd train: interrupted at step %lld; checkpoint saved to %s (continue with --resume)\n",
                (long long)res.steps, res.checkpoint);
        return 130;
    }
    printf("trained %lld steps (%lld epochs) in %.1f s, %.0f showers/s; final loss %.6g\ncheckpoint: %s\n",
           (long long)res.steps, (long long)res.epoch, res.seconds, res.showers_per_s, (double)res.final_loss,
           res.checkpoint);
    return 0;
}
