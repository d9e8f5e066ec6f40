/*
 * tools/cmd_op.c — `calograd op NAME`: run one differentiable op on .npy arrays and write
 * its output and gradients as .npy, so that any kernel can be checked against any other
 * framework (tests/test_op_cli.py does it against a NumPy reference).
 *
 *   calograd op conv3d --input x.npy --weight w.npy [--bias b.npy] --stride S --padding P
 *                      --grad-output g.npy --out DIR
 *
 * What runs is the autograd op itself (cg_conv3d, cg_linear, ...; autograd/ops.h), and the
 * gradients come from cg_grad(output, grad_output, inputs): the path a model takes, not a
 * separate one. A gradient written as DIR/grad_X.npy is d(Σ output·grad_output)/dX.
 *
 * Conventions:
 *  - Every check happens before anything is written: a failing command leaves DIR as it
 *    was. Files appear via temporary names
 *    (io/npy.c). Names among output/grad_*.npy that this run does not produce are removed
 *    from DIR, so that a stale gradient from an earlier run is never mistaken for a new one.
 *  - Options that the chosen op does not use are errors, not silently ignored.
 *  - User errors (a bad file, shapes that do not fit, a missing option) print one line and
 *    exit 2; the op's own shape checks name the problem (autograd/ files).
 *
 * Limits: --bench times with a wall clock around a device sync (not CUDA events); FLOP
 * counts exist for the conv family and linear only (2·MACs per pass).
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
#include "io/npy.h"

static const char *CMD = "op";

typedef enum { CONV3D, CONVT3D, CONV2D, CONVT2D, LINEAR, LAYER_NORM, MMD_SORTED, SPARSITY } op_kind;

/* Per op: the options it takes besides the common ones (--input --grad-output --out --device
 * --bench), space-delimited; which arrays it requires; whether it is a loss. */
static const struct {
    const char *name;
    op_kind kind;
    const char *options;
    bool needs_weight, needs_target, loss;
} OPS[] = {
    {"conv3d", CONV3D, " --weight --bias --stride --padding ", true, false, false},
    {"conv_transpose3d", CONVT3D, " --weight --bias --stride --padding --output-padding ", true, false, false},
    {"conv2d", CONV2D, " --weight --bias --stride --padding ", true, false, false},
    {"conv_transpose2d", CONVT2D, " --weight --bias --stride --padding --output-padding ", true, false, false},
    {"linear", LINEAR, " --weight --bias ", true, false, false},
    {"layer_norm", LAYER_NORM, " --weight --bias --normalized-axes --eps ", false, false, false},
    {"mmd_sorted_kernel", MMD_SORTED, " --target --kernel --stride --cutoff --alpha ", false, true, true},
    {"soft_sparsity", SPARSITY, " --alpha --beta --eps --variant ", false, false, true},
};
#define NOPS (int)(sizeof OPS / sizeof OPS[0])
static const char *COMMON = " --input --grad-output --out --device --math --bench ";

/* The arrays an op can take; each but grad-output may get a gradient file. */
enum { A_INPUT, A_WEIGHT, A_BIAS, A_TARGET, NARR };
static const char *ARR_FLAG[NARR] = {"--input", "--weight", "--bias", "--target"};
static const char *GRAD_FILE[NARR] = {"grad_input", "grad_weight", "grad_bias", "grad_target"};

typedef struct {
    op_kind kind;
    const char *name;
    cg_tensor *arr[NARR];      /* owned; NULL when not given */
    cg_conv_opts conv;
    int naxes;                 /* layer_norm */
    float eps, alpha, beta;    /* layer_norm, losses */
    int kernel, stride, cutoff;/* mmd_sorted_kernel */
    bool calogan;              /* soft_sparsity --variant calogan */
} op_ctx;

/* ------------------------------------------------------------ the op ---- */

static cg_tensor *run_op(const op_ctx *c) {
    cg_tensor *x = c->arr[A_INPUT], *w = c->arr[A_WEIGHT], *b = c->arr[A_BIAS];
    switch (c->kind) {
    case CONV3D: return cg_conv3d(x, w, b, c->conv);
    case CONVT3D: return cg_conv_transpose3d(x, w, b, c->conv);
    case CONV2D: return cg_conv2d(x, w, b, c->conv);
    case CONVT2D: return cg_conv_transpose2d(x, w, b, c->conv);
    case LINEAR: return cg_linear(x, w, b);
    case LAYER_NORM: return cg_layer_norm(x, c->naxes, w, b, c->eps);
    case MMD_SORTED: return cg_mmd_sorted_kernel(x, c->arr[A_TARGET], c->kernel, c->stride, c->cutoff, c->alpha);
    case SPARSITY: return c->calogan ? cg_soft_sparsity_calogan(x) : cg_soft_sparsity(x, c->alpha, c->beta, c->eps);
    }
    return NULL;
}

/* Floating-point operations of one pass (0 = forward, else the gradient of array `a`),
 * counted as 2·MACs for the conv family and linear; 0 where no such count is kept. */
static double pass_flops(const op_ctx *c, const cg_tensor *out, int a) {
    if (a == A_BIAS) return 0;
    const cg_tensor *x = c->arr[A_INPUT], *w = c->arr[A_WEIGHT];
    switch (c->kind) {
    case CONV3D: case CONV2D: /* every output element: Ci·k³ MACs */
        return 2.0 * (double)cg_numel(out) * (double)(cg_numel(w) / w->shape[0]);
    case CONVT3D: case CONVT2D: /* every input element meets Co·k³ weights */
        return 2.0 * (double)cg_numel(x) * (double)(cg_numel(w) / w->shape[0]);
    case LINEAR: return 2.0 * (double)cg_numel(out) * (double)w->shape[1];
    default: return 0;
    }
}

/* ------------------------------------------------------------ helpers ---- */

/* "S" or one value per spatial axis ("D,H,W" for 3-D ops, "H,W" for 2-D ones; commas or
 * spaces between them, optionally in () or []) into v[0..2]; 2-D ops fill v[1], v[2] (the
 * entries cg_conv2d reads) and v[0] = dflt. */
static bool parse_axes(const char *flag, const char *s, int nsp, int lo, int dflt, int v[3]) {
    v[0] = v[1] = v[2] = dflt;
    if (!s) return true;
    long vals[3];
    int n = 0;
    const char *p = s, *stop = s + strlen(s);
    while (*p == ' ') p++;
    if ((*p == '(' || *p == '[') && stop > p + 1 && stop[-1] == (*p == '(' ? ')' : ']')) {
        p++;
        stop--;
    }
    while (p < stop) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || end > stop || errno || n == 3 || x < lo || x > 1000000) goto bad;
        vals[n++] = x;
        p = end;
        bool sep = false;
        while (p < stop && *p == ' ') p++, sep = true;
        if (p < stop && *p == ',') {
            p++;
            while (p < stop && *p == ' ') p++;
            if (p == stop) goto bad; /* a trailing comma */
        } else if (p < stop && !sep) {
            goto bad;
        }
    }
    if (n != 1 && n != nsp) goto bad;
    for (int i = 0; i < nsp; i++) v[3 - nsp + i] = (int)vals[n == 1 ? 0 : i];
    return true;
bad:
    if (nsp == 1) cli_fail(CMD, "option %s: '%s' is not an integer >= %d", flag, s, lo);
    else
        cli_fail(CMD, "option %s: '%s' is not one integer >= %d or %d of them separated by commas (%s)", flag, s,
                 lo, nsp, nsp == 3 ? "d,h,w" : "h,w");
    return false;
}

static bool is_int_word(const char *a) {
    char *end;
    if (!*a) return false;
    (void)strtol(a, &end, 10);
    return *end == 0;
}

/* Friendlier spellings, rewritten before parsing: "--grad_output" for "--grad-output", and
 * "--stride 2 1 1" (separate words) for "--stride 2,1,1". Returns a new argv (free it and
 * *pool after the last use of any option value). */
static char **normalise_argv(int argc, char **argv, int *nargc, char **pool) {
    size_t total = 0;
    for (int i = 0; i < argc; i++) total += strlen(argv[i]) + 1;
    char **out = cg_xmalloc((size_t)(argc + 1) * sizeof *out), *buf = cg_xmalloc(total + 1), *q = buf;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i == 0 || strncmp(a, "--", 2) != 0) {
            out[n++] = argv[i];
            continue;
        }
        out[n++] = q;
        const char *eq = strchr(a, '=');
        for (const char *c = a; *c; c++) *q++ = (c >= a + 2 && (!eq || c < eq) && *c == '_') ? '-' : *c;
        *q++ = 0;
        bool axes = !eq && (strcmp(out[n - 1], "--stride") == 0 || strcmp(out[n - 1], "--padding") == 0 ||
                            strcmp(out[n - 1], "--output-padding") == 0);
        if (axes && i + 1 < argc && is_int_word(argv[i + 1])) {
            out[n++] = q;
            int k = 0;
            while (k < 3 && i + 1 < argc && is_int_word(argv[i + 1])) {
                if (k++) *q++ = ',';
                size_t l = strlen(argv[++i]);
                memcpy(q, argv[i], l);
                q += l;
            }
            *q++ = 0;
        }
    }
    out[n] = NULL;
    *nargc = n;
    *pool = buf;
    return out;
}

/* mkdir -p */
static bool make_dirs(const char *dir) {
    char buf[4096];
    if (strlen(dir) >= sizeof buf) {
        cg_set_error(CG_ERR_IO, "%s: path too long", dir);
        return false;
    }
    strcpy(buf, dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char keep = *p;
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                cg_set_error(CG_ERR_IO, "%s: cannot create the folder (%s)", buf, strerror(errno));
                return false;
            }
            *p = keep;
            if (!keep) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cg_set_error(CG_ERR_IO, "%s: not a folder", dir);
        return false;
    }
    return true;
}

static bool opt_seen(const cli_opt *opts, const char *name) {
    for (const cli_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o->seen;
    return false;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------- --bench ---- */

/* Time the forward pass and the gradient of each array separately (cg_grad with that one
 * input, so only its backward kernels run): median of n runs after one warm-up. */
static int bench(const op_ctx *c, cg_tensor *out, cg_tensor *gout, int n) {
    char s1[96];
    const cg_backend *be = cg_backend_of(out);
    printf("calograd op %s: input %s, %s kernels, %d threads, median of %d runs after a warm-up\n", c->name,
           CG_SHAPE_STR(c->arr[A_INPUT], s1), be->name, cg_threads_get(), n);
    printf("%-14s %12s %12s %10s\n", "pass", "median ms", "GFLOP", "GFLOP/s");
    double *t = cg_xmalloc((size_t)n * sizeof *t);
    for (int p = -1; p < NARR; p++) {
        if (p >= 0 && (!c->arr[p] || !c->arr[p]->requires_grad)) continue;
        for (int r = -1; r < n; r++) {
            cg_tape_pos mark = cg_tape_mark();
            be->sync();
            double t0 = cli_now();
            cg_tensor *res = NULL;
            if (p < 0) {
                bool was = cg_set_grad_enabled(false);
                res = run_op(c);
                cg_set_grad_enabled(was);
            } else if (cg_grad(1, &out, &gout, 1, &c->arr[p], &res, false) != CG_OK) {
                res = NULL;
            }
            be->sync();
            if (r >= 0) t[r] = cli_now() - t0;
            cg_tape_rewind(mark);
            if (!res) {
                free(t);
                return cli_fail_lib(CMD, "--bench");
            }
        }
        qsort(t, (size_t)n, sizeof *t, cmp_double);
        double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
        double fl = pass_flops(c, out, p);
        if (fl > 0)
            printf("%-14s %12.4f %12.5f %10.3f\n", p < 0 ? "forward" : GRAD_FILE[p], 1e3 * med, 1e-9 * fl,
                   1e-9 * fl / med);
        else
            printf("%-14s %12.4f %12s %10s\n", p < 0 ? "forward" : GRAD_FILE[p], 1e3 * med, "-", "-");
    }
    free(t);
    return 0;
}

/* -------------------------------------------------------------- output ---- */

/* Write DIR/output.npy and the gradients; on failure remove what this run wrote. */
static int write_results(const char *dir, cg_tensor *out, cg_tensor *const *grads) {
    if (!make_dirs(dir)) return cli_fail_lib(CMD, "--out");
    const char *names[NARR + 1] = {"output", GRAD_FILE[0], GRAD_FILE[1], GRAD_FILE[2], GRAD_FILE[3]};
    cg_tensor *vals[NARR + 1] = {out, grads[0], grads[1], grads[2], grads[3]};
    char paths[NARR + 1][4200];
    for (int i = 0; i <= NARR; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s.npy", dir, names[i]);
        if (!vals[i]) continue;
        if (cg_npy_save(paths[i], vals[i]) != CG_OK) {
            for (int j = 0; j < i; j++)
                if (vals[j]) remove(paths[j]);
            return cli_fail_lib(CMD, NULL);
        }
    }
    for (int i = 0; i <= NARR; i++) {
        char s[96];
        if (vals[i]) printf("wrote %s %s\n", paths[i], CG_SHAPE_STR(vals[i], s));
        else if (remove(paths[i]) == 0) printf("removed stale %s\n", paths[i]);
    }
    return 0;
}

/* ---------------------------------------------------------------- main ---- */

static const char *SUMMARY =
    "Run one op on .npy arrays (float32 or float64, C order) and write the results as float32 .npy\n"
    "files into DIR: output.npy and, with --grad-output G, the gradients of sum(output * G) with\n"
    "respect to each array: grad_input.npy, grad_weight.npy, grad_bias.npy, grad_target.npy.\n"
    "Losses always write their gradients (for G = ones when --grad-output is not given).\n"
    "\n"
    "ops (NAME: arrays; options):\n"
    "  conv3d             input (N,Ci,D,H,W), weight (Co,Ci,kD,kH,kW), [bias (Co)]; --stride --padding\n"
    "  conv_transpose3d   input (N,Ci,D,H,W), weight (Ci,Co,kD,kH,kW), [bias (Co)];\n"
    "                     --stride --padding --output-padding (each < stride)\n"
    "  conv2d             input (N,Ci,H,W), weight (Co,Ci,kH,kW), [bias (Co)]; --stride --padding\n"
    "  conv_transpose2d   input (N,Ci,H,W), weight (Ci,Co,kH,kW), [bias (Co)]; as conv_transpose3d\n"
    "                     (stride, padding, output padding: one integer, or one per axis: d,h,w / h,w)\n"
    "  linear             input (...,in), weight (out,in), [bias (out)]: x·Wᵀ + b\n"
    "  layer_norm         input (..., normalised axes), [weight], [bias] shaped like the normalised\n"
    "                     axes; --normalized-axes K (default: the weight's or bias's rank) --eps (1e-5)\n"
    "  mmd_sorted_kernel  input = generated (B,...), --target real (B,...); --kernel 100 --stride 25\n"
    "                     --cutoff 2000 --alpha 200 (BIB-AE defaults); output shape ()\n"
    "  soft_sparsity      input (B,...); --alpha 5 --beta 5 --eps 1e-6 (eq. 5 of arXiv 1711.08813),\n"
    "                     or --variant calogan (the CaloGAN code's form); output (B)\n"
    "\n"
    "--bench N also times the forward pass and each gradient separately (median of N runs after a\n"
    "warm-up; GFLOP/s for the conv family and linear, FLOP = 2·MAC). With --bench, --out is optional.\n"
    "Exit codes: 0 done, 2 bad input (file, shape, option), 1 device failure.\n"
    "\n"
    "example: calograd op conv3d --input x.npy --weight w.npy --stride 2 --padding 1,0,1 \\\n"
    "             --grad-output g.npy --out res/";

static int op_main(int argc, char **argv) {
    const char *input = NULL, *weight = NULL, *bias = NULL, *target = NULL, *gout_path = NULL, *out_dir = NULL;
    const char *stride_s = NULL, *pad_s = NULL, *opad_s = NULL, *variant = "eq5", *device = "cpu", *math = "fp32";
    int naxes = 0, kernel = 100, cutoff = 2000, nbench = 0;
    double eps = NAN, alpha = NAN, beta = NAN;
    cli_opt opts[] = {
        {"--input", "FILE", "the op's (first) input array", CLI_STR, .dst = &input, .required = true},
        {"--weight", "FILE", "weight array (conv, linear; layer_norm: gain)", CLI_STR, .dst = &weight},
        {"--bias", "FILE", "bias array", CLI_STR, .dst = &bias},
        {"--target", "FILE", "the real showers (mmd_sorted_kernel)", CLI_STR, .dst = &target},
        {"--grad-output", "FILE", "gradient of the output: write the input gradients too", CLI_STR, .dst = &gout_path},
        {"--out", "DIR", "folder for the results (created if missing)", CLI_STR, .dst = &out_dir},
        {"--stride", "S", "conv: stride (1); mmd_sorted_kernel: window stride (25)", CLI_STR, .dst = &stride_s},
        {"--padding", "P", "conv: zero padding (0)", CLI_STR, .dst = &pad_s},
        {"--output-padding", "P", "conv_transpose: extra output size (0)", CLI_STR, .dst = &opad_s},
        {"--normalized-axes", "K", "layer_norm: normalise the last K axes", CLI_INT, .dst = &naxes},
        {"--eps", "E", "layer_norm (1e-5), soft_sparsity (1e-6)", CLI_FLOAT, .dst = &eps},
        {"--kernel", "K", "mmd_sorted_kernel: window size (100)", CLI_INT, .dst = &kernel},
        {"--cutoff", "C", "mmd_sorted_kernel: windows start below rank C (2000)", CLI_INT, .dst = &cutoff},
        {"--alpha", "A", "mmd_sorted_kernel: kernel width (200); soft_sparsity: a (5)", CLI_FLOAT, .dst = &alpha},
        {"--beta", "B", "soft_sparsity: b (5)", CLI_FLOAT, .dst = &beta},
        {"--variant", "V", "soft_sparsity: eq5 (default) or calogan", CLI_CHOICE, .dst = &variant, .choices = "eq5|calogan"},
        {"--device", "DEV", "cpu (default) or cuda", CLI_CHOICE, .dst = &device, .choices = "cpu|cuda"},
        {"--math", "MODE", "cuda: fp32 (default), tf32 or bf16 (tensor cores, fp32 accumulation)", CLI_CHOICE,
         .dst = &math, .choices = "fp32|tf32|bf16"},
        {"--bench", "N", "time N runs of each pass and print the medians", CLI_INT, .dst = &nbench},
        {0}};
    const char *pos[1];
    int npos = 0;
    int rc = cli_parse_pos(CMD, SUMMARY, opts, argc, argv, pos, 1, &npos, "NAME");
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;

    /* ---- which op, and do the options fit it ---- */
    char names[256] = "";
    for (int i = 0; i < NOPS; i++) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", OPS[i].name);
    if (npos == 0) return cli_fail(CMD, "missing the op name, one of: %s (see calograd op --help)", names);
    int oi = -1;
    for (int i = 0; i < NOPS; i++)
        if (strcmp(pos[0], OPS[i].name) == 0) oi = i;
    if (oi < 0) return cli_fail(CMD, "unknown op '%s' (one of: %s)", pos[0], names);
    op_ctx c = {.kind = OPS[oi].kind, .name = OPS[oi].name};
    for (cli_opt *o = opts; o->name; o++) {
        char key[40];
        snprintf(key, sizeof key, " %s ", o->name);
        if (o->seen && !strstr(COMMON, key) && !strstr(OPS[oi].options, key))
            return cli_fail(CMD, "option %s does not apply to %s (see calograd op --help)", o->name, c.name);
    }
    if (OPS[oi].needs_weight && !weight) return cli_fail(CMD, "%s needs --weight FILE", c.name);
    if (OPS[oi].needs_target && !target) return cli_fail(CMD, "%s needs --target FILE", c.name);
    if (!out_dir && nbench == 0) return cli_fail(CMD, "missing required option --out DIR (see calograd op --help)");
    if (nbench < 0) return cli_fail(CMD, "option --bench: %d is not a number of runs >= 1", nbench);
    if (c.kind == SPARSITY && strcmp(variant, "calogan") == 0) {
        if (!isnan(alpha) || !isnan(beta) || !isnan(eps))
            return cli_fail(CMD, "soft_sparsity --variant calogan has no --alpha, --beta or --eps");
        c.calogan = true;
    }
    cg_device dev = strcmp(device, "cuda") == 0 ? CG_CUDA : CG_CPU;
    if (dev == CG_CUDA && !cg_device_available(CG_CUDA))
        return cli_fail(CMD, "--device cuda: no CUDA device available (this build has no CUDA backend, or no GPU "
                             "was found); use --device cpu");
    if (dev != CG_CUDA && strcmp(math, "fp32") != 0)
        return cli_fail(CMD, "--math %s needs --device cuda (the CPU computes in fp32 only)", math);
    cg_set_math_mode((cg_math_mode)cg_math_mode_parse(math));

    /* ---- numeric options ---- */
    bool two_d = c.kind == CONV2D || c.kind == CONVT2D;
    if (c.kind == MMD_SORTED) {
        int s3[3];
        if (!parse_axes("--stride", stride_s, 1, 1, 25, s3)) return 2;
        c.stride = s3[2];
        c.kernel = kernel;
        c.cutoff = cutoff;
        c.alpha = isnan(alpha) ? 200.0f : (float)alpha;
        if (kernel < 1 || cutoff < 1) return cli_fail(CMD, "mmd_sorted_kernel: --kernel and --cutoff must be >= 1");
    } else if (c.kind == CONV3D || c.kind == CONVT3D || two_d) {
        int nsp = two_d ? 2 : 3;
        if (!parse_axes("--stride", stride_s, nsp, 1, 1, c.conv.stride) ||
            !parse_axes("--padding", pad_s, nsp, 0, 0, c.conv.pad) ||
            !parse_axes("--output-padding", opad_s, nsp, 0, 0, c.conv.output_pad))
            return 2;
    }
    if (c.kind == LAYER_NORM) {
        c.eps = isnan(eps) ? 1e-5f : (float)eps;
        if (opt_seen(opts, "--normalized-axes") && naxes < 1)
            return cli_fail(CMD, "option --normalized-axes: %d is not a number of axes >= 1", naxes);
    }
    if (c.kind == SPARSITY && !c.calogan) {
        c.alpha = isnan(alpha) ? 5.0f : (float)alpha;
        c.beta = isnan(beta) ? 5.0f : (float)beta;
        c.eps = isnan(eps) ? 1e-6f : (float)eps;
    }
    if ((c.kind == LAYER_NORM || (c.kind == SPARSITY && !c.calogan)) && !(c.eps > 0))
        return cli_fail(CMD, "option --eps: must be > 0");

    /* ---- arrays ---- */
    const char *paths[NARR] = {input, weight, bias, target};
    cg_tensor *gout = NULL, *out = NULL, *grads[NARR] = {0};
    int status = 2;
    for (int a = 0; a < NARR; a++) {
        if (!paths[a]) continue;
        c.arr[a] = cg_npy_load(paths[a], dev);
        if (!c.arr[a]) {
            status = cli_fail_lib(CMD, ARR_FLAG[a]);
            goto done;
        }
        if (cg_numel(c.arr[a]) == 0) {
            char s[96];
            status = cli_fail(CMD, "%s %s: the array %s is empty", ARR_FLAG[a], paths[a], CG_SHAPE_STR(c.arr[a], s));
            goto done;
        }
        cg_set_requires_grad(c.arr[a], true);
    }
    if (c.kind == LAYER_NORM && naxes == 0) {
        if (c.arr[A_WEIGHT]) naxes = c.arr[A_WEIGHT]->ndim;
        else if (c.arr[A_BIAS]) naxes = c.arr[A_BIAS]->ndim;
        else {
            status = cli_fail(CMD, "layer_norm needs --normalized-axes K, or a --weight or --bias whose shape "
                                   "gives the normalised axes");
            goto done;
        }
    }
    c.naxes = naxes;

    /* ---- run ---- */
    out = run_op(&c);
    if (!out) {
        status = cli_fail_lib(CMD, NULL);
        goto done;
    }
    if (gout_path) {
        gout = cg_npy_load(gout_path, dev);
        if (!gout) {
            status = cli_fail_lib(CMD, "--grad-output");
            goto done;
        }
        if (!cg_same_shape(gout, out)) {
            char s1[96], s2[96];
            status = cli_fail(CMD, "--grad-output %s has shape %s but the output of %s has shape %s", gout_path,
                              CG_SHAPE_STR(gout, s1), c.name, CG_SHAPE_STR(out, s2));
            goto done;
        }
    }
    cg_tensor *g = gout ? gout : cg_full(out->device, out->ndim, out->shape, 1.0f);
    bool want_grads = gout || OPS[oi].loss;
    if (want_grads) {
        cg_tensor *ins[NARR];
        int idx[NARR], nin = 0;
        for (int a = 0; a < NARR; a++)
            if (c.arr[a]) {
                idx[nin] = a;
                ins[nin++] = c.arr[a];
            }
        cg_tensor *res[NARR] = {0};
        if (cg_grad(1, &out, &g, nin, ins, res, false) != CG_OK) {
            status = cli_fail_lib(CMD, "gradient");
            goto done;
        }
        for (int i = 0; i < nin; i++) grads[idx[i]] = res[i];
    }
    if (nbench > 0 && (status = bench(&c, out, g, nbench)) != 0) goto done;
    status = out_dir ? write_results(out_dir, out, grads) : 0;

done:
    for (int a = 0; a < NARR; a++) cg_tensor_free(c.arr[a]);
    cg_tensor_free(gout);
    return status;
}

int cmd_op(int argc, char **argv) {
    int nargc;
    char *pool;
    char **args = normalise_argv(argc, argv, &nargc, &pool);
    int rc = op_main(nargc, args);
    free(args);
    free(pool);
    return rc;
}
