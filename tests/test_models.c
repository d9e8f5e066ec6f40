/*
 * tests/test_models.c — modules (PyTorch initialisation ranges, dotted parameter names),
 * optimizers against hand-computed PyTorch updates, gradient clipping, learning-rate
 * schedules, and checkpoints (round trip, optimizer state, corruption, truncation,
 * mismatched models, crash safety of the write).
 */
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "test_tmpdir.h"

static void minmax(const cg_tensor *t, float *lo, float *hi) {
    float *h = cg_tensor_host_copy(t);
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < cg_numel(t); i++) {
        *lo = fminf(*lo, h[i]);
        *hi = fmaxf(*hi, h[i]);
    }
    free(h);
}

static void test_module_tree_and_init(void) {
    cg_rng rng = cg_rng_make(test_seed());
    cg_module *root = cg_module_new(NULL, "net");
    cg_module *enc = cg_module_new(root, "encoder");
    cg_module *c1 = cg_conv3d_new(enc, "conv1", 2, 8, (int[]){4, 4, 4}, cg_conv_opts_make(2, 1, 0), false, CG_CPU, &rng);
    cg_module *ln = cg_layer_norm_new(enc, "ln1", 3, (int64_t[]){5, 5, 5}, true, 1e-5f, CG_CPU);
    cg_module *ct = cg_conv_transpose3d_new(root, "deconv", 8, 4, (int[]){3, 3, 3}, cg_conv_opts_make(2, 1, 1), true,
                                            CG_CPU, &rng);
    cg_module *fc = cg_linear_new(root, "fc", 300, 7, true, CG_CPU, &rng);
    cg_module *bn = cg_batch_norm_new(root, "bn", 4, 0.1f, 1e-5f, CG_CPU);
    CHECK(c1 && ln && ct && fc && bn);
    cg_named_list all = {0}, params = {0};
    cg_module_collect(root, &all, true);
    cg_module_collect(root, &params, false);
    const char *want[] = {"encoder.conv1.weight", "encoder.ln1.weight", "encoder.ln1.bias", "deconv.weight",
                          "deconv.bias", "fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean",
                          "bn.running_var"};
    CHECK(all.n == 11 && params.n == 9);
    for (int i = 0; i < 11 && i < all.n; i++) CHECK_MSG(strcmp(all.v[i].name, want[i]) == 0, "%s", all.v[i].name);
    CHECK(cg_module_find(root, "encoder.ln1") == ln && cg_module_find(root, "encoder.nope") == NULL);
    /* PyTorch bounds: 1/sqrt(fan_in); conv fan_in = Ci·k³ = 128; convT fan_in = Co·k³ = 108 */
    float lo, hi;
    minmax(cg_module_param(c1, "weight"), &lo, &hi);
    CHECK(lo >= -1 / sqrtf(128) && hi <= 1 / sqrtf(128) && hi - lo > 1.5f / sqrtf(128));
    minmax(cg_module_param(ct, "weight"), &lo, &hi);
    CHECK(cg_module_param(ct, "weight")->shape[0] == 8 && cg_module_param(ct, "weight")->shape[1] == 4);
    CHECK(lo >= -1 / sqrtf(108) && hi <= 1 / sqrtf(108) && hi - lo > 1.5f / sqrtf(108));
    minmax(cg_module_param(fc, "bias"), &lo, &hi);
    CHECK(lo >= -1 / sqrtf(300) && hi <= 1 / sqrtf(300));
    minmax(cg_module_param(ln, "weight"), &lo, &hi);
    CHECK(lo == 1 && hi == 1);
    CHECK(cg_module_numel(root) == 8 * 2 * 64 + 2 * 125 + 8 * 4 * 27 + 4 + 300 * 7 + 7 + 8);
    /* forward through the layers */
    cg_tensor *x = t_rand(CG_CPU, CG_SHAPE(3, 2, 10, 10, 10), -1, 1, 0); /* k4 s2 p1: 10 -> 5 */
    cg_tensor *h = cg_module_forward(ln, cg_module_forward(c1, x));
    CHECK(h && h->shape[1] == 8 && h->shape[2] == 5);
    CHECK(cg_module_forward(ln, x) == NULL); /* (10,10,10) is not (5,5,5): a clear error */
    CHECK(cg_module_forward(root, x) == NULL && strstr(cg_last_error(), "container"));
    CHECK(cg_linear_new(root, "bad", 0, 3, true, CG_CPU, &rng) == NULL);
    cg_tensor_free(x);
    cg_named_list_free(&all);
    cg_named_list_free(&params);
    cg_module_free(root);
}

/* One parameter, fixed gradients: the updates PyTorch makes, computed by hand. */
static void run_steps(cg_optim_cfg cfg, const float *g_seq, int steps, float p0, double *want_out) {
    cg_tensor *p = cg_tensor_full(CG_CPU, CG_SHAPE(1), p0);
    cg_set_requires_grad(p, true);
    cg_named_list l = {0};
    cg_named_list_add(&l, "p", p, false);
    cg_optim *o = cg_optim_new(&cfg, &l);
    for (int s = 0; s < steps; s++) {
        p->grad = cg_tensor_full(CG_CPU, CG_SHAPE(1), g_seq[s]);
        cg_optim_step(o);
        cg_optim_zero_grad(o);
    }
    *want_out = cg_item(p);
    cg_optim_free(o);
    cg_named_list_free(&l);
    cg_tensor_free(p);
}

static void test_optimizers_match_pytorch(void) {
    float g[4] = {0.5f, -1.0f, 2.0f, 0.25f};
    double got, p;
    /* SGD momentum 0.9, dampening 0, wd 0.1, nesterov off */
    {
        double v = 0, x = 1.0;
        for (int s = 0; s < 4; s++) {
            double d = g[s] + 0.1 * x;
            v = s == 0 ? d : 0.9 * v + d;
            x -= 0.1 * v;
        }
        run_steps((cg_optim_cfg){.kind = CG_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f}, g, 4, 1.0f, &got);
        CHECK_NEAR(got, x, 1e-6);
    }
    /* Adam β = (0.5, 0.9) as the BIB-AE, eps 1e-8, wd 0 */
    {
        double m = 0, v = 0, x = 1.0;
        for (int s = 1; s <= 4; s++) {
            m = 0.5 * m + 0.5 * g[s - 1];
            v = 0.9 * v + 0.1 * g[s - 1] * g[s - 1];
            double mh = m / (1 - pow(0.5, s)), vh = v / (1 - pow(0.9, s));
            x -= 1e-2 * mh / (sqrt(vh) + 1e-8);
        }
        run_steps((cg_optim_cfg){.kind = CG_OPT_ADAM, .lr = 1e-2f, .beta1 = 0.5f, .beta2 = 0.9f}, g, 4, 1.0f, &got);
        CHECK_NEAR(got, x, 1e-6);
    }
    /* AdamW: decoupled decay 0.1 */
    {
        double m = 0, v = 0, x = 1.0;
        for (int s = 1; s <= 4; s++) {
            x *= 1 - 1e-2 * 0.1;
            m = 0.9 * m + 0.1 * g[s - 1];
            v = 0.999 * v + 0.001 * g[s - 1] * g[s - 1];
            x -= 1e-2 * (m / (1 - pow(0.9, s))) / (sqrt(v / (1 - pow(0.999, s))) + 1e-8);
        }
        run_steps((cg_optim_cfg){.kind = CG_OPT_ADAMW, .lr = 1e-2f, .weight_decay = 0.1f}, g, 4, 1.0f, &got);
        CHECK_NEAR(got, x, 1e-6);
    }
    /* RMSprop alpha 0.99, momentum 0.5 */
    {
        double sq = 0, b = 0, x = 1.0;
        for (int s = 0; s < 4; s++) {
            sq = 0.99 * sq + 0.01 * g[s] * g[s];
            b = 0.5 * b + g[s] / (sqrt(sq) + 1e-8);
            x -= 1e-3 * b;
        }
        run_steps((cg_optim_cfg){.kind = CG_OPT_RMSPROP, .lr = 1e-3f, .momentum = 0.5f}, g, 4, 1.0f, &got);
        CHECK_NEAR(got, x, 1e-6);
    }
    (void)p;
    /* a bad configuration is refused */
    cg_named_list l = {0};
    CHECK(cg_optim_new(&(cg_optim_cfg){.kind = CG_OPT_ADAM, .lr = -1}, &l) == NULL);
}

static void test_clipping_and_schedules(void) {
    /* two parameters with gradients (3, 4) and (12): global norm 13; clip to 1.3 -> ×0.1 */
    cg_tensor *a = cg_tensor_zeros(CG_CPU, CG_SHAPE(2)), *b = cg_tensor_zeros(CG_CPU, CG_SHAPE(1));
    cg_set_requires_grad(a, true);
    cg_set_requires_grad(b, true);
    cg_named_list l = {0};
    cg_named_list_add(&l, "a", a, false);
    cg_named_list_add(&l, "b", b, false);
    cg_optim *o = cg_optim_new(&(cg_optim_cfg){.kind = CG_OPT_SGD, .lr = 1.0f, .clip_norm = 1.3f}, &l);
    a->grad = cg_tensor_from_host(CG_CPU, CG_SHAPE(2), (float[]){3, 4});
    b->grad = cg_tensor_from_host(CG_CPU, CG_SHAPE(1), (float[]){12});
    CHECK_NEAR(cg_optim_grad_norm(o), 13.0, 1e-5);
    cg_optim_step(o);
    float ha[2];
    cg_tensor_to_host(a, ha);
    CHECK_NEAR(ha[0], -0.3, 1e-5);
    CHECK_NEAR(ha[1], -0.4, 1e-5);
    CHECK_NEAR(cg_item(b), -1.2, 1e-5);
    cg_optim_free(o);
    cg_named_list_free(&l);
    cg_tensor_free(a);
    cg_tensor_free(b);
    cg_lr_schedule st = {CG_LR_STEP, 0.5f, 3}, ex = {CG_LR_EXPONENTIAL, 0.95f, 0};
    CHECK_NEAR(cg_lr_at(&st, 1.0f, 2), 1.0, 1e-7);
    CHECK_NEAR(cg_lr_at(&st, 1.0f, 7), 0.25, 1e-7);
    CHECK_NEAR(cg_lr_at(&ex, 2.0f, 3), 2.0 * pow(0.95, 3), 1e-6);
}

/* A step of training moves a real model: loss goes down with Adam on a tiny regression. */
static void test_training_reduces_loss(void) {
    cg_rng rng = cg_rng_make(test_seed() + 1);
    cg_module *root = cg_module_new(NULL, "mlp");
    cg_module *l1 = cg_linear_new(root, "l1", 4, 16, true, CG_CPU, &rng), *l2 = cg_linear_new(root, "l2", 16, 1, true, CG_CPU, &rng);
    cg_named_list params = {0};
    cg_module_collect(root, &params, false);
    cg_optim *o = cg_optim_new(&(cg_optim_cfg){.kind = CG_OPT_ADAM, .lr = 1e-2f}, &params);
    cg_tensor *x = t_rand(CG_CPU, CG_SHAPE(64, 4), -1, 1, 0);
    float first = 0, last = 0;
    for (int it = 0; it < 200; it++) {
        cg_tensor *target = cg_sum(cg_square(x), CG_AXIS(1), true);
        cg_tensor *y = cg_module_forward(l2, cg_tanh(cg_module_forward(l1, x)));
        cg_tensor *loss = cg_mse_loss(y, target);
        if (it == 0) first = cg_item(loss);
        last = cg_item(loss);
        CHECK(cg_backward(loss) == CG_OK);
        cg_optim_step(o);
        cg_optim_zero_grad(o);
        cg_tape_reset();
    }
    CHECK_MSG(last < 0.2f * first, "loss %g -> %g", first, last);
    cg_optim_free(o);
    cg_named_list_free(&params);
    cg_tensor_free(x);
    cg_module_free(root);
}


static void test_checkpoint_round_trip_and_errors(void) {
    cg_rng rng = cg_rng_make(test_seed() + 2);
    cg_module *root = cg_module_new(NULL, "m");
    cg_conv3d_new(root, "conv", 3, 5, (int[]){3, 1, 2}, cg_conv_opts_make(1, 0, 0), true, CG_CPU, &rng);
    cg_batch_norm_new(root, "bn", 5, 0.1f, 1e-5f, CG_CPU);
    cg_linear_new(root, "fc", 7, 2, false, CG_CPU, &rng);
    cg_named_list l = {0};
    cg_module_collect(root, &l, true);
    cg_optim *o = cg_optim_new(&(cg_optim_cfg){.kind = CG_OPT_ADAM, .lr = 1e-3f}, &l);
    for (int i = 0; i < l.n; i++)
        if (l.v[i].t->requires_grad) l.v[i].t->grad = cg_tensor_rand(CG_CPU, l.v[i].t->ndim, l.v[i].t->shape, &rng, -1, 1);
    cg_optim_step(o);
    cg_named_list all = {0};
    for (int i = 0; i < l.n; i++) cg_named_list_add(&all, l.v[i].name, l.v[i].t, l.v[i].buffer);
    cg_optim_collect_state(o, &all);
    CHECK(all.n == l.n + 1 + 2 * 5); /* steps + exp_avg, exp_avg_sq of conv.w, conv.b, bn.w, bn.b, fc.w */
    char path[512];
    snprintf(path, sizeof path, "%s", tpath("a.ckpt"));
    CHECK(cg_checkpoint_save(path, "test-model", "step = 1\nlr = 0.001\n", &all) == CG_OK);
    /* no temporary file is left behind */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);
    /* restore into fresh tensors of the same shapes */
    cg_checkpoint *c = cg_checkpoint_load(path);
    CHECK(c && strcmp(cg_checkpoint_kind(c), "test-model") == 0 && cg_checkpoint_count(c) == all.n);
    CHECK(c && strcmp(cg_checkpoint_get(c, "lr"), "0.001") == 0 && cg_checkpoint_get(c, "nope") == NULL);
    cg_named_list fresh = {0};
    cg_tensor *owned[64];
    for (int i = 0; i < all.n; i++) {
        owned[i] = cg_tensor_zeros(CG_CPU, all.v[i].t->ndim, all.v[i].t->shape);
        cg_named_list_add(&fresh, all.v[i].name, owned[i], false);
    }
    CHECK(c && cg_checkpoint_restore(c, &fresh, true) == CG_OK);
    for (int i = 0; i < all.n; i++) {
        float *a = cg_tensor_host_copy(all.v[i].t), *b = cg_tensor_host_copy(owned[i]);
        CHECK(memcmp(a, b, (size_t)cg_numel(owned[i]) * sizeof(float)) == 0);
        free(a);
        free(b);
    }
    /* a mismatched model: a different shape, a missing tensor, an extra tensor */
    cg_tensor *wrong = cg_tensor_zeros(CG_CPU, CG_SHAPE(2, 8));
    cg_tensor *save = fresh.v[fresh.n - 1].t;
    int fc_idx = -1;
    for (int i = 0; i < fresh.n; i++)
        if (strcmp(fresh.v[i].name, "fc.weight") == 0) fc_idx = i;
    save = fresh.v[fc_idx].t;
    fresh.v[fc_idx].t = wrong;
    CHECK(cg_checkpoint_restore(c, &fresh, true) != CG_OK && strstr(cg_last_error(), "fc.weight") &&
          strstr(cg_last_error(), "(2, 7)"));
    fresh.v[fc_idx].t = save;
    snprintf(fresh.v[0].name, sizeof fresh.v[0].name, "other.weight");
    CHECK(cg_checkpoint_restore(c, &fresh, true) != CG_OK && strstr(cg_last_error(), "another model"));
    cg_checkpoint_free(c);
    /* corruption: flip one byte anywhere past the magic -> an error, never silent data */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *img = malloc((size_t)size);
    CHECK(fread(img, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    char bad[512];
    snprintf(bad, sizeof bad, "%s", tpath("bad.ckpt"));
    for (int trial = 0; trial < 40; trial++) {
        long at = 8 + (long)cg_rng_below(test_rng(), (uint64_t)(size - 8));
        img[at] ^= (unsigned char)(1u << cg_rng_below(test_rng(), 8));
        f = fopen(bad, "wb");
        fwrite(img, 1, (size_t)size, f);
        fclose(f);
        cg_checkpoint *cb = cg_checkpoint_load(bad);
        CHECK_MSG(cb == NULL, "flipped byte at %ld not detected", at);
        cg_checkpoint_free(cb);
        img[at] ^= (unsigned char)0; /* restore below */
        f = fopen(path, "rb");
        CHECK(fread(img, 1, (size_t)size, f) == (size_t)size);
        fclose(f);
    }
    /* truncation at every length: an error naming truncation or corruption */
    for (long cut = 0; cut < size; cut += 1 + size / 97) {
        f = fopen(bad, "wb");
        fwrite(img, 1, (size_t)cut, f);
        fclose(f);
        cg_checkpoint *cb = cg_checkpoint_load(bad);
        CHECK_MSG(cb == NULL, "truncated at %ld not detected", cut);
        cg_checkpoint_free(cb);
    }
    CHECK(cg_checkpoint_load(tpath("missing.ckpt")) == NULL && strstr(cg_last_error(), "cannot open"));
    /* writing where it cannot: an error, and the old checkpoint survives untouched */
    CHECK(cg_checkpoint_save("/nonexistent-dir/x.ckpt", "k", "", &all) != CG_OK);
    /* a full disk, emulated with a file-size limit (writes then fail with EFBIG, as they
     * fail with ENOSPC on a full disk): the save fails with a message, leaves no temporary,
     * and the previous checkpoint is intact */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {512, 512}; /* the checkpoint here is a few kB */
        setrlimit(RLIMIT_FSIZE, &rl);
        cg_status st = cg_checkpoint_save(path, "k", "", &all);
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        _exit(st != CG_OK && strstr(cg_last_error(), "cannot write") && access(tmp, F_OK) != 0 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a failed write was not reported cleanly");
    cg_checkpoint *again = cg_checkpoint_load(path);
    CHECK(again != NULL);
    cg_checkpoint_free(again);
    free(img);
    for (int i = 0; i < all.n; i++) cg_tensor_free(owned[i]);
    cg_tensor_free(wrong);
    cg_named_list_free(&fresh);
    cg_named_list_free(&all);
    cg_named_list_free(&l);
    cg_optim_free(o);
    cg_module_free(root);
}

int main(void) {
    if (tmpdir_make("models")) return 1;
    TEST_RUN(test_module_tree_and_init);
    TEST_RUN(test_optimizers_match_pytorch);
    TEST_RUN(test_clipping_and_schedules);
    TEST_RUN(test_training_reduces_loss);
    TEST_RUN(test_checkpoint_round_trip_and_errors);
    tmpdir_remove();
    return test_summary();
}
