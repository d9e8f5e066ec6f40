/*
 * tools/cmd_generate.c — `calograd generate`: showers from a trained checkpoint to .cvox.
 * Conditions are given as ranges or fixed values (--energy 10:100, --energy 50); those not
 * given are drawn from the training data's range. Any other condition the model knows can be
 * set with --cond name=A:B.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#include "models/train.h"

int cmd_generate(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *device = "cpu", *cond_kv = NULL, *like = NULL, *math = "fp32";
    int64_t events = 0;
    int batch = 256, seed = 1, threads = 0;
    double energy[2], theta[2], phi[2];
    cli_opt opts[] = {
        {"--checkpoint", "FILE", "a checkpoint written by calograd train (RUNDIR/model.ckpt)", CLI_STR, &ckpt, .required = true},
        {"--events", "N", "number of showers", CLI_INT64, &events, .required = true},
        {"-o", "FILE", "output .cvox file", CLI_STR, &out, .required = true},
        {"--energy", "A:B|E", "incident energy in GeV: a range (uniform) or a value", CLI_RANGE, energy},
        {"--theta", "A:B|T", "polar angle in degrees", CLI_RANGE, theta},
        {"--phi", "A:B|P", "azimuthal angle in degrees", CLI_RANGE, phi},
        {"--cond", "NAME=A:B", "any other condition of the model", CLI_STR, &cond_kv},
        {"--conditions-from", "FILE", "copy the conditions of the events of this .cvox file, in order", CLI_STR, &like},
        {"--batch", "B", "showers per batch", CLI_INT, &batch},
        {"--device", "DEV", "cpu or cuda", CLI_CHOICE, &device, .choices = "cpu|cuda"},
        {"--math", "SPEC", "GPU math mode: fp32 (default), tf32 or bf16, or per module (\"fp32,decoder:tf32\")",
         CLI_STR, &math},
        {"--seed", "S", "random seed", CLI_INT, &seed},
        {"--threads", "N", "CPU threads (default: all cores)", CLI_INT, &threads},
        {0}};
    int rc = cli_parse("generate", "Sample showers from a trained model.", opts, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    if (events < 1) return cli_fail("generate", "--events must be at least 1");
    if (batch < 1) return cli_fail("generate", "--batch must be at least 1");
    if (threads > 0) cg_threads_set(threads);
    cg_generate_opts go = {.events = events, .batch = batch, .seed = (uint64_t)seed,
                           .device = strcmp(device, "cuda") == 0 ? CG_CUDA : CG_CPU, .math = math};
    if (go.device == CG_CUDA && !cg_device_available(CG_CUDA))
        return cli_fail("generate", "--device cuda: no usable GPU (or calograd was built without CUDA)");
    const char *names[3] = {"energy", "theta", "phi"};
    double *ranges[3] = {energy, theta, phi};
    for (int i = 0; i < 3; i++)
        if (opts[3 + i].seen) {
            snprintf(go.set_name[go.nset], CG_CVOX_NAME_LEN, "%s", names[i]);
            go.set_lo[go.nset] = ranges[i][0];
            go.set_hi[go.nset++] = ranges[i][1];
        }
    if (cond_kv) {
        const char *eq = strchr(cond_kv, '=');
        double lo, hi;
        char *end;
        if (!eq || eq == cond_kv) return cli_fail("generate", "--cond needs NAME=A:B or NAME=V");
        lo = strtod(eq + 1, &end);
        hi = *end == ':' ? strtod(end + 1, &end) : lo;
        if (*end || end == eq + 1 || hi < lo) return cli_fail("generate", "--cond %s: not a value or range A:B", cond_kv);
        snprintf(go.set_name[go.nset], CG_CVOX_NAME_LEN, "%.*s", (int)(eq - cond_kv), cond_kv);
        go.set_lo[go.nset] = lo;
        go.set_hi[go.nset++] = hi;
    }
    if (like && go.nset) return cli_fail("generate", "--conditions-from cannot be combined with --energy/--theta/--phi/--cond");
    go.cond_from = like;
    cg_generate_result res;
    if (cg_generate(ckpt, out, &go, &res) != CG_OK) return cli_fail_lib("generate", NULL);
    printf("generated %lld showers in %.2f s: %.1f showers/s -> %s\n", (long long)res.events, res.seconds,
           res.showers_per_s, out);
    return 0;
}
