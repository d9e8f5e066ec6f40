/*
 * tests/test_train.c — the trainer and generator with a small VAE on synthetic showers:
 * training writes config, log.csv and a checkpoint and lowers the loss; an interrupted and
 * resumed run reproduces the uninterrupted run's losses exactly; generation writes showers
 * with the training data's geometry and conditions; bad configurations and foreign or
 * corrupted checkpoints give clear errors.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "test_tmpdir.h"
#include "models/train.h"

static char data_path[512];

/* Synthetic "showers" on an 8x8x8 grid: a longitudinal bump whose depth grows with log E
 * and a Gaussian transverse spot, total energy proportional to E with 10% fluctuations. */
static void write_data(const char *path, int64_t n) {
    cg_cvox_info info = {0};
    cg_geometry_grid(&info.geom, "toy8", 8, 8, 8, 5.0f, 5.0f, 5.0f);
    info.geom.mip_mev = 0.2f;
    snprintf(info.particle, sizeof info.particle, "photon");
    snprintf(info.source, sizeof info.source, "tests/test_train.c");
    info.ncond = 2;
    snprintf(info.cond_name[0], CG_CVOX_NAME_LEN, "energy");
    snprintf(info.cond_unit[0], CG_CVOX_NAME_LEN, "GeV");
    snprintf(info.cond_name[1], CG_CVOX_NAME_LEN, "theta");
    snprintf(info.cond_unit[1], CG_CVOX_NAME_LEN, "deg");
    cg_cvox_writer *w = cg_cvox_create(path, &info, 64);
    CHECK(w != NULL);
    cg_rng r = cg_rng_make(12345);
    float *x = malloc(512 * sizeof(float)), cond[2];
    for (int64_t e = 0; e < n; e++) {
        float E = 10.0f + 90.0f * (float)cg_rng_uniform(&r), th = 60.0f + 30.0f * (float)cg_rng_uniform(&r);
        float tmax = 1.0f + 1.2f * logf(E / 10.0f), scale = E * 15.0f * (1.0f + 0.1f * (float)cg_rng_normal(&r));
        float shift = (th - 75.0f) / 15.0f, sum = 0;
        for (int z = 0; z < 8; z++)
            for (int y = 0; y < 8; y++)
                for (int xx = 0; xx < 8; xx++) {
                    float lz = expf(-0.5f * (z - tmax) * (z - tmax) / 2.0f);
                    float r2 = (xx - 3.5f) * (xx - 3.5f) + (y - 3.5f - shift * z / 8) * (y - 3.5f - shift * z / 8);
                    float v = lz * expf(-r2 / 1.5f);
                    x[(z * 8 + y) * 8 + xx] = v;
                    sum += v;
                }
        for (int i = 0; i < 512; i++) {
            x[i] *= scale / sum;
            if (x[i] < 0.1f) x[i] = 0; /* a half-MIP threshold */
        }
        cond[0] = E;
        cond[1] = th;
        CHECK(cg_cvox_write(w, 1, x, cond) == CG_OK);
    }
    free(x);
    CHECK(cg_cvox_finish(w) == CG_OK);
}

static cg_status run(const char *out, const char *extra, bool resume) {
    cg_config cfg = {0};
    cg_config_set(&cfg, "data", data_path, "flag");
    cg_config_set(&cfg, "out", out, "flag");
    cg_config_set(&cfg, "batch", "16", "flag");
    cg_config_set(&cfg, "epochs", "3", "flag");
    cg_config_set(&cfg, "channels", "4", "flag");
    cg_config_set(&cfg, "hidden", "32", "flag");
    cg_config_set(&cfg, "latent", "4", "flag");
    cg_config_set(&cfg, "kl_warmup", "20", "flag");
    cg_config_set(&cfg, "checkpoint_every", "7", "flag");
    cg_config_set(&cfg, "threads", "1", "flag");
    if (extra) {
        char key[64], val[64];
        if (sscanf(extra, "%63[^=]=%63s", key, val) == 2) cg_config_set(&cfg, key, val, "flag");
    }
    FILE *null = fopen("/dev/null", "w");
    cg_train_opts o = {.resume = resume, .log = null};
    cg_train_result res;
    cg_status st = cg_train(&cfg, &o, &res);
    fclose(null);
    cg_config_free(&cfg);
    return st;
}

/* The loss column of log.csv, by step. */
static int read_losses(const char *out, double *loss, int max) {
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/log.csv", out);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    CHECK(fgets(line, sizeof line, f) && strncmp(line, "step,epoch,loss", 15) == 0);
    while (fgets(line, sizeof line, f) && n < max) {
        long long step, epoch;
        double l;
        if (sscanf(line, "%lld,%lld,%lf", &step, &epoch, &l) == 3) {
            CHECK(step == n + 1);
            loss[n++] = l;
        }
    }
    fclose(f);
    return n;
}

static void test_train_resume_generate(void) {
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/run_a", g_dir);
    snprintf(b, sizeof b, "%s/run_b", g_dir);
    CHECK(run(a, NULL, false) == CG_OK);
    double la[200], lb[200];
    int na = read_losses(a, la, 200);
    /* 160 events, holdout 20% -> 128 training events -> 8 batches of 16 per epoch, 3 epochs */
    CHECK_MSG(na == 24, "%d steps logged", na);
    CHECK_MSG(la[na - 1] < la[0], "loss %g -> %g", la[0], la[na - 1]);
    char p[600];
    snprintf(p, sizeof p, "%s/config", a);
    CHECK(access(p, R_OK) == 0);
    /* interrupted at step 11 (not a checkpoint boundary: the last checkpoint is at 11 because
     * a run that stops saves one), then resumed: the same losses, bit for bit in the log */
    CHECK(run(b, "max_steps=11", false) == CG_OK);
    CHECK(read_losses(b, lb, 200) == 11);
    CHECK(run(b, NULL, true) == CG_OK);
    int nb = read_losses(b, lb, 200);
    CHECK_MSG(nb == na, "resumed run logged %d steps, uninterrupted %d", nb, na);
    for (int i = 0; i < na && i < nb; i++) CHECK_MSG(la[i] == lb[i], "step %d: %.9g vs %.9g", i + 1, la[i], lb[i]);
    /* resuming with a changed model option is refused */
    CHECK(run(b, "latent=5", true) != CG_OK && strstr(cg_last_error(), "latent"));
    /* generation: events with the training geometry and conditions in range */
    char ck[600], gen[600];
    snprintf(ck, sizeof ck, "%s/model.ckpt", a);
    snprintf(gen, sizeof gen, "%s/gen.cvox", g_dir);
    cg_generate_opts go = {.events = 50, .batch = 16, .seed = 3, .device = CG_CPU, .nset = 1};
    snprintf(go.set_name[0], CG_CVOX_NAME_LEN, "energy");
    go.set_lo[0] = 40;
    go.set_hi[0] = 40;
    cg_generate_result gr;
    CHECK(cg_generate(ck, gen, &go, &gr) == CG_OK && gr.events == 50);
    cg_cvox_reader *r = cg_cvox_open(gen);
    CHECK(r != NULL);
    if (r) {
        const cg_cvox_info *info = cg_cvox_info_of(r);
        CHECK(info->nevents == 50 && info->geom.ncells == 512 && info->ncond == 2);
        float *x = malloc(50 * 512 * sizeof(float)), cond[100];
        CHECK(cg_cvox_read(r, 0, 50, x, cond) == CG_OK);
        double sum = 0;
        for (int i = 0; i < 50 * 512; i++) {
            CHECK(x[i] >= 0 && isfinite(x[i]));
            sum += x[i];
        }
        for (int i = 0; i < 50; i++) {
            CHECK(cond[2 * i] == 40.0f);
            CHECK(cond[2 * i + 1] >= 60.0f && cond[2 * i + 1] <= 90.0f);
        }
        CHECK(sum > 0);
        free(x);
        cg_cvox_close(r);
    }
    /* a condition the model does not know */
    snprintf(go.set_name[0], CG_CVOX_NAME_LEN, "px");
    CHECK(cg_generate(ck, gen, &go, &gr) != CG_OK && strstr(cg_last_error(), "'px'"));
}

static void test_bad_configs(void) {
    char out[512];
    snprintf(out, sizeof out, "%s/run_bad", g_dir);
    CHECK(run(out, "latnet=3", false) != CG_OK && strstr(cg_last_error(), "unknown option 'latnet'"));
    CHECK(run(out, "batch=x", false) != CG_OK && strstr(cg_last_error(), "not an integer"));
    CHECK(run(out, "model=gan9", false) != CG_OK && strstr(cg_last_error(), "unknown model"));
    CHECK(run(out, "batch=1000", false) != CG_OK && strstr(cg_last_error(), "fewer than one batch"));
    CHECK(run(out, "data=/nonexistent.cvox", false) != CG_OK);
    CHECK(run(out, NULL, true) != CG_OK && strstr(cg_last_error(), "no checkpoint"));
    /* a checkpoint of another kind is refused by name */
    char ck[600];
    snprintf(ck, sizeof ck, "%s/other.ckpt", g_dir);
    cg_named_list none = {0};
    CHECK(cg_checkpoint_save(ck, "bibae", "", &none) == CG_OK);
    cg_generate_opts go = {.events = 1, .batch = 1, .device = CG_CPU};
    cg_generate_result gr;
    char gen[600];
    snprintf(gen, sizeof gen, "%s/g2.cvox", g_dir);
    CHECK(cg_generate(ck, gen, &go, &gr) != CG_OK && strstr(cg_last_error(), "'bibae'"));
    CHECK(access(gen, F_OK) != 0);
}

int main(void) {
    if (tmpdir_make("train")) return 1;
    snprintf(data_path, sizeof data_path, "%s/toy.cvox", g_dir);
    write_data(data_path, 160);
    TEST_RUN(test_train_resume_generate);
    TEST_RUN(test_bad_configs);
    tmpdir_remove();
    return test_summary();
}
