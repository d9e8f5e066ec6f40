/*
 * tools/main.c — the `calograd` command: a table of subcommands (tools/commands.h).
 *   calograd --help             list the subcommands
 *   calograd <cmd> --help       one subcommand's options
 */
#include <stdio.h>
#include <string.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} COMMANDS[] = {
    {"demo", cmd_demo, "simulate, train a VAE, generate and evaluate: the whole path in one command"},
    {"simulate", cmd_simulate, "generate showers with the built-in parametrised simulator (.cvox)"},
    {"train", cmd_train, "train a model on a .cvox file"},
    {"generate", cmd_generate, "sample showers from a trained checkpoint (.cvox)"},
    {"evaluate", cmd_evaluate, "compare generated with reference showers: metrics.json and an HTML report"},
    {"info", cmd_info, "describe a .cvox file: geometry, events, conditioning, occupancy"},
    {"import", cmd_import, "convert HDF5 (CaloChallenge, CaloGAN, ILD, CLIC layouts) to .cvox"},
    {"export", cmd_export, "convert .cvox to HDF5 (CaloChallenge or ILD layout)"},
    {"op", cmd_op, "run one op (conv3d, linear, a loss, ...) on .npy arrays and write .npy results"},
    {"devices", cmd_devices, "list the kernel backends and devices found"},
};
#define NCOMMANDS (int)(sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "calograd %s — generative models of calorimeter showers\n\n"
               "usage: calograd <command> [options]     (calograd <command> --help for its options)\n\n"
               "commands:\n", CG_VERSION);
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nenvironment: CG_THREADS=N (CPU threads), CG_KERNELS=ref (force the reference kernels)\n");
}

int cmd_devices(int argc, char **argv) {
    cli_opt opts[] = {{0}};
    int rc = cli_parse("devices", "List the kernel backends and devices this build can use.", opts, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    const cg_backend *be[8];
    int n = cg_backend_list(be, 8);
    printf("backends:");
    for (int i = 0; i < n; i++) printf(" %s", be[i]->name);
    printf("\ncpu kernels in use: %s (%d threads)\n", cg_backend_get(CG_CPU)->name, cg_threads_get());
    printf("cuda: %s\n", cg_device_available(CG_CUDA) ? "available" : "not available");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("calograd %s\n", CG_VERSION);
        return 0;
    }
    for (int i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) {
            int rc = COMMANDS[i].fn(argc - 1, argv + 1);
            cg_tape_reset();
            return rc;
        }
    fprintf(stderr, "calograd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
