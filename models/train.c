/*
 * models/train.c — the training loop every model family shares (see train.h).
 *
 * One run: resolve the configuration; open the data; build the model (fresh, fitted to a
 * sample of the data) or rebuild it from RUNDIR/model.ckpt (--resume); then for every epoch
 * and batch call the family's train_step, log, and checkpoint. Reproducibility: the data
 * order depends only on (seed, epoch), the model's noise comes from one Philox stream whose
 * position is saved, and the kernels are deterministic for a given thread count; so a run
 * resumed from step k repeats exactly the losses of an uninterrupted run after step k.
 */
#include "models/train.h"

#include "core/threads.h"
#include "io/loader.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const cg_cfg_spec cg_train_options[] = {
    {"model", CG_CFG_STR, "vae", "model family"},
    {"data", CG_CFG_STR, NULL, "training data (.cvox)"},
    {"out", CG_CFG_STR, NULL, "run directory"},
    {"epochs", CG_CFG_INT, "10", "passes over the training events"},
    {"batch", CG_CFG_INT, "64", "showers per step"},
    {"seed", CG_CFG_INT, "1", "random seed: initialisation, data order, sampling noise"},
    {"device", CG_CFG_STR, "cpu", "cpu or cuda"},
    {"threads", CG_CFG_INT, "0", "CPU threads (0: all cores)"},
    {"math", CG_CFG_STR, "fp32", "GPU math mode: fp32, tf32 or bf16 for the whole model, and/or module:mode pairs "
                                 "(\"fp32,decoder:tf32\"); device cuda only"},
    {"holdout", CG_CFG_FLOAT, "0.2", "fraction of the file's events kept out of training (the last ones)"},
    {"max_events", CG_CFG_INT, "0", "use at most this many training events (0: all)"},
    {"max_steps", CG_CFG_INT, "0", "stop after this many steps in total (0: no limit)"},
    {"time_limit", CG_CFG_FLOAT, "0", "stop (with a checkpoint) after this many seconds of training (0: none)"},
    {"checkpoint_every", CG_CFG_INT, "500", "steps between checkpoints"},
    {"log_every", CG_CFG_INT, "50", "steps between log lines when not on a terminal"},
    {"lr_schedule", CG_CFG_STR, "constant", "constant, step or exponential (per epoch)"},
    {"lr_gamma", CG_CFG_FLOAT, "0.95", "decay factor of the step/exponential schedule"},
    {"lr_step", CG_CFG_INT, "1", "epochs per decay of the step schedule"},
    {"fit_events", CG_CFG_INT, "1000", "events used to fit the model's normalisations"},
    {NULL, 0, NULL, NULL},
};

/* Options that may differ from the checkpoint's on --resume: run length and runtime only. */
static const char *const RESUME_MAY_CHANGE[] = {"epochs", "max_steps", "time_limit", "threads", "device", "math",
                                                "checkpoint_every", "log_every", NULL};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ batches ---- */

/* The training events: the first n of the file (the holdout is the rest), streamed by the
 * loader (io/loader.h: shuffled per epoch from (seed, epoch), decoded in the background). */
typedef struct {
    cg_loader *l;
    cg_cvox_reader *r; /* for the fit sample and the conditioning ranges */
    const cg_cvox_info *info;
    int64_t n, nb;     /* training events, batches per epoch (the last partial one dropped) */
} source;

static cg_status source_open(source *s, const char *path, double holdout, int64_t max_events, int batch,
                             uint64_t seed, cg_device dev) {
    memset(s, 0, sizeof *s);
    s->r = cg_cvox_open(path);
    if (!s->r) return cg_last_status();
    s->info = cg_cvox_info_of(s->r);
    int64_t total = s->info->nevents;
    s->n = total - (int64_t)floor(holdout * (double)total);
    if (max_events > 0 && s->n > max_events) s->n = max_events;
    if (s->n < batch)
        return cg_set_error(CG_ERR_INVALID, "%s: %lld training events (after the %.0f%% holdout) are fewer than one "
                            "batch of %d", path, (long long)s->n, 100 * holdout, batch);
    cg_loader_opts o;
    cg_loader_defaults(&o);
    o.batch_size = batch;
    o.shuffle = true;
    o.seed = seed;
    o.drop_last = true;
    o.first = 0;
    o.count = s->n;
    o.device = dev;
    s->l = cg_loader_open(path, &o);
    if (!s->l) return cg_last_status();
    s->nb = cg_loader_batches(s->l);
    return CG_OK;
}

/* Start epoch `epoch` at batch `skip` (a resumed run skips what it did): the order depends
 * only on (seed, epoch), so the batches after the skip are the uninterrupted run's. */
static cg_status source_epoch(source *s, int64_t epoch, int64_t skip) {
    cg_status st = cg_loader_set_epoch(s->l, epoch);
    for (int64_t i = 0; st == CG_OK && i < skip; i++) {
        cg_tensor *x = NULL, *c = NULL;
        if (cg_loader_next(s->l, &x, &c) != 1) st = cg_set_error(CG_ERR_IO, "cannot skip to batch %lld", (long long)skip);
        cg_tensor_free(x);
        cg_tensor_free(c);
    }
    return st;
}

/* The next batch as tape temporaries; cond is NULL when the file has no conditioning. */
static cg_status source_next(source *s, cg_tensor **x, cg_tensor **cond) {
    int r = cg_loader_next(s->l, x, cond);
    if (r != 1) return r == 0 ? cg_set_error(CG_ERR_IO, "the loader ended an epoch early") : cg_last_status();
    cg_op_adopt(*x);
    if (*cond) cg_op_adopt(*cond);
    return CG_OK;
}

static void source_close(source *s) {
    if (s->l) cg_loader_close(s->l);
    if (s->r) cg_cvox_close(s->r);
}

/* --------------------------------------------------------- checkpoints ---- */

/* Conditioning ranges of the training events (for generation defaults). */
static cg_status cond_ranges(const source *s, double *lo, double *hi) {
    int nk = s->info->ncond;
    if (nk == 0) return CG_OK;
    float *c = malloc((size_t)(s->n * nk) * sizeof(float));
    if (!c) return cg_set_error(CG_ERR_NOMEM, "out of memory reading the conditioning values");
    cg_status st = cg_cvox_read(s->r, 0, s->n, NULL, c);
    for (int k = 0; st == CG_OK && k < nk; k++) {
        lo[k] = INFINITY;
        hi[k] = -INFINITY;
        for (int64_t i = 0; i < s->n; i++) {
            lo[k] = fmin(lo[k], c[i * nk + k]);
            hi[k] = fmax(hi[k], c[i * nk + k]);
        }
    }
    free(c);
    return st;
}

typedef struct {
    const cg_model_family *fam;
    cg_model *model;
    const cg_config *cfg;
    const cg_cvox_info *info;
    double lo[CG_CVOX_MAX_COND], hi[CG_CVOX_MAX_COND];
    char path[1100];
} ckpt_ctx;

/* The position is the global step: every epoch has exactly nb steps (the last partial batch
 * is dropped), so epoch = step / nb and batch = step % nb. */
static cg_status save_checkpoint(const ckpt_ctx *c, int64_t step, int64_t nb, uint64_t rng_counter) {
    int64_t epoch = step / nb, batch = step % nb;
    char *cfgtext = cg_config_text(c->cfg);
    size_t hexcap = 2 * 65536 + 1;
    uint8_t *bytes = cg_xmalloc(65536);
    size_t nbytes = cg_cvox_info_encode(c->info, 0, bytes, 65536);
    char *hex = cg_xmalloc(hexcap);
    for (size_t i = 0; i < nbytes && i < 65536; i++) snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
    hex[2 * (nbytes < 65536 ? nbytes : 65536)] = 0;
    size_t cap = strlen(cfgtext) + strlen(hex) + 4096;
    char *meta = cg_xmalloc(cap);
    int len = snprintf(meta, cap, "%sstate.step = %lld\nstate.epoch = %lld\nstate.batch = %lld\nstate.rng_counter = %llu\n"
                       "data.info = %s\ndata.cond_lo = ", cfgtext, (long long)step, (long long)epoch, (long long)batch,
                       (unsigned long long)rng_counter, hex);
    for (int k = 0; k < c->info->ncond; k++) len += snprintf(meta + len, cap - (size_t)len, "%s%.9g", k ? "," : "", c->lo[k]);
    len += snprintf(meta + len, cap - (size_t)len, "\ndata.cond_hi = ");
    for (int k = 0; k < c->info->ncond; k++) len += snprintf(meta + len, cap - (size_t)len, "%s%.9g", k ? "," : "", c->hi[k]);
    snprintf(meta + len, cap - (size_t)len, "\n");
    cg_named_list tensors = {0};
    c->fam->collect(c->model, &tensors);
    cg_status st = cg_checkpoint_save(c->path, c->fam->name, meta, &tensors);
    cg_named_list_free(&tensors);
    free(cfgtext);
    free(bytes);
    free(hex);
    free(meta);
    return st;
}

/* ----------------------------------------------------------- log.csv ---- */

/* Keep the rows of an existing log whose step is <= last_step (a resumed run repeats the
 * steps after its checkpoint), rewritten crash-safely. */
static cg_status trim_log(const char *path, int64_t last_step) {
    FILE *f = fopen(path, "r");
    if (!f) return CG_OK;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return cg_set_error(CG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    char line[4096];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        if (first || strtoll(line, NULL, 10) <= last_step) fputs(line, o);
        first = 0;
    }
    fclose(f);
    int bad = ferror(o) | (fclose(o) != 0);
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return cg_set_error(CG_ERR_IO, "cannot rewrite %s", path);
    }
    return CG_OK;
}

static cg_status write_text(const char *path, const char *text) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return cg_set_error(CG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fputs(text, f);
    int bad = ferror(f) | (fclose(f) != 0);
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return cg_set_error(CG_ERR_IO, "cannot write %s", path);
    }
    return CG_OK;
}

/* ------------------------------------------------------------- the run ---- */

/* The family's fit (its data normalisations) on the first nfit training events. */
static cg_status fit_on_sample(const cg_model_family *fam, cg_model *model, const source *src, cg_device dev,
                               int64_t nfit) {
    int64_t n = nfit > 0 && nfit < src->n ? nfit : src->n, nc = src->info->geom.ncells, nk = src->info->ncond;
    const cg_geometry *g = &src->info->geom;
    float *hx = malloc((size_t)(n * nc) * sizeof(float)), *hc = malloc((size_t)(n * (nk ? nk : 1)) * sizeof(float));
    cg_status st = hx && hc ? cg_cvox_read(src->r, 0, n, hx, nk ? hc : NULL)
                            : cg_set_error(CG_ERR_NOMEM, "out of memory for the %lld fit events", (long long)n);
    if (st == CG_OK) {
        cg_tape_pos mark = cg_tape_mark();
        cg_tensor *x = cg_geometry_is_grid(g)
                           ? cg_op_adopt(cg_tensor_from_host(dev, CG_SHAPE(n, 1, g->nlayers, g->layer[0].rows,
                                                                           g->layer[0].cols), hx))
                           : cg_op_adopt(cg_tensor_from_host(dev, CG_SHAPE(n, nc), hx));
        cg_tensor *c = nk ? cg_op_adopt(cg_tensor_from_host(dev, CG_SHAPE(n, nk), hc)) : NULL;
        st = x && (c || !nk) ? fam->fit(model, x, c) : cg_last_status();
        cg_tape_rewind(mark);
    }
    free(hx);
    free(hc);
    return st;
}

/* One row of log.csv (and its header before the first). */
static void log_row(FILE *lf, bool *header, int64_t step, int64_t epoch, const cg_losses *l, float lr, double rate,
                    double seconds) {
    if (*header) {
        fprintf(lf, "step,epoch");
        for (int i = 0; i < l->n; i++) fprintf(lf, ",%s", l->name[i]);
        fprintf(lf, ",lr,showers_per_s,seconds\n");
        *header = false;
    }
    fprintf(lf, "%lld,%lld", (long long)step, (long long)epoch);
    for (int i = 0; i < l->n; i++) fprintf(lf, ",%.9g", (double)l->value[i]);
    fprintf(lf, ",%.6g,%.1f,%.2f\n", (double)lr, rate, seconds);
}

/* The same geometry, particle and conditioning as the checkpoint's data description. */
static bool same_data(const cg_cvox_info *a, const cg_cvox_info *b) {
    size_t na = cg_cvox_info_encode(a, 0, NULL, 0), nb = cg_cvox_info_encode(b, 0, NULL, 0);
    if (na != nb) return false;
    uint8_t *ba = cg_xmalloc(na ? na : 1), *bb = cg_xmalloc(nb ? nb : 1);
    cg_cvox_info_encode(a, 0, ba, na);
    cg_cvox_info_encode(b, 0, bb, nb);
    bool same = memcmp(ba, bb, na) == 0;
    free(ba);
    free(bb);
    return same;
}

static cg_status resolve(cg_config *cfg, const cg_model_family **fam) {
    const char *name = cg_config_get(cfg, "model");
    *fam = cg_model_family_find(name ? name : "vae");
    if (!*fam) return cg_set_error(CG_ERR_INVALID, "unknown model '%s' (see calograd train --help)", name);
    const cg_cfg_spec *tables[3] = {cg_train_options, cg_optim_options, (*fam)->options};
    return cg_config_resolve(cfg, tables, 3);
}

/* On resume: the checkpoint's configuration, with only the options that may change taken
 * from what the user set now; anything else that differs is an error. */
static cg_status merge_resume(cg_config *cfg, const cg_config *saved) {
    for (int i = 0; i < cfg->n; i++) {
        const char *k = cfg->v[i].key, *v = cfg->v[i].value, *old = cg_config_get(saved, k);
        bool may = false;
        for (int j = 0; RESUME_MAY_CHANGE[j]; j++) may |= strcmp(RESUME_MAY_CHANGE[j], k) == 0;
        if (may || strcmp(k, "out") == 0) continue;
        if (old && strcmp(old, v) != 0)
            return cg_set_error(CG_ERR_INVALID, "--resume: '%s' was '%s' in the checkpoint and is '%s' now (only "
                                "epochs, max_steps, threads, device, math, checkpoint_every and log_every may change)", k,
                                old, v);
    }
    cg_config merged = {0};
    for (int i = 0; i < saved->n; i++) /* limits belong to one invocation, not to the run */
        if (strcmp(saved->v[i].key, "max_steps") != 0 && strcmp(saved->v[i].key, "time_limit") != 0)
            cg_config_set(&merged, saved->v[i].key, saved->v[i].value, "checkpoint");
    for (int i = 0; i < cfg->n; i++) cg_config_set(&merged, cfg->v[i].key, cfg->v[i].value, cfg->v[i].origin);
    cg_config_free(cfg);
    *cfg = merged;
    return CG_OK;
}

static void print_progress(const cg_train_opts *o, FILE *log, bool bar, int64_t step, int64_t epoch, int64_t epochs,
                           int64_t b, int64_t nb, const cg_losses *l, double rate, double eta) {
    char losses[256] = "";
    for (int i = 0; i < l->n; i++)
        snprintf(losses + strlen(losses), sizeof losses - strlen(losses), " %s %.4g", l->name[i], (double)l->value[i]);
    if (bar) {
        int width = 20, fill = nb ? (int)(width * b / nb) : width;
        char bars[32];
        for (int i = 0; i < width; i++) bars[i] = i < fill ? '#' : '.';
        bars[width] = 0;
        fprintf(log, "\r\033[Kepoch %lld/%lld [%s] step %lld%s | %.0f showers/s | ETA %d:%02d", (long long)epoch + 1,
                (long long)epochs, bars, (long long)step, losses, rate, (int)(eta / 60), (int)eta % 60);
    } else {
        fprintf(log, "epoch %lld/%lld batch %lld/%lld step %lld%s | %.0f showers/s | ETA %.0f s\n", (long long)epoch + 1,
                (long long)epochs, (long long)b, (long long)nb, (long long)step, losses, rate, eta);
    }
    fflush(log);
    (void)o;
}

cg_status cg_train(cg_config *cfg, const cg_train_opts *o, cg_train_result *res) {
    memset(res, 0, sizeof *res);
    FILE *log = o->log ? o->log : stderr;
    const cg_model_family *fam = NULL;
    const char *out_cfg = cg_config_get(cfg, "out");
    if (!out_cfg) return cg_set_error(CG_ERR_INVALID, "no run directory: give --out RUNDIR");
    char out[1000]; /* a copy: on resume cfg is rebuilt */
    snprintf(out, sizeof out, "%s", out_cfg);
    char ckpath[1100], logpath[1100], cfgpath[1100];
    snprintf(ckpath, sizeof ckpath, "%s/model.ckpt", out);
    snprintf(logpath, sizeof logpath, "%s/log.csv", out);
    snprintf(cfgpath, sizeof cfgpath, "%s/config", out);

    cg_loaded_model lm = {0};
    cg_status st;
    if (o->resume) {
        if (access(ckpath, R_OK) != 0)
            return cg_set_error(CG_ERR_IO, "--resume: no checkpoint %s to continue from", ckpath);
        const char *dev = cg_config_get(cfg, "device");
        st = cg_model_load(ckpath, dev && strcmp(dev, "cuda") == 0 ? CG_CUDA : CG_CPU, &lm);
        if (st != CG_OK) return st;
        st = merge_resume(cfg, &lm.cfg);
        if (st == CG_OK) st = resolve(cfg, &fam);
        if (st == CG_OK && fam != lm.family) st = cg_set_error(CG_ERR_INVALID, "--resume: model mismatch");
    } else {
        st = resolve(cfg, &fam);
    }
    if (st != CG_OK) goto early;

    int64_t epochs = cg_config_int(cfg, "epochs"), batch = cg_config_int(cfg, "batch");
    int64_t max_steps = cg_config_int(cfg, "max_steps"), ck_every = cg_config_int(cfg, "checkpoint_every");
    int64_t log_every = cg_config_int(cfg, "log_every");
    double time_limit = cg_config_float(cfg, "time_limit");
    uint64_t seed = (uint64_t)cg_config_int(cfg, "seed");
    cg_device dev = strcmp(cg_config_str(cfg, "device"), "cuda") == 0 ? CG_CUDA : CG_CPU;
    if (strcmp(cg_config_str(cfg, "device"), "cpu") != 0 && dev != CG_CUDA)
        st = cg_set_error(CG_ERR_INVALID, "device must be cpu or cuda (got '%s')", cg_config_str(cfg, "device"));
    else if (dev == CG_CUDA && !cg_device_available(CG_CUDA))
        st = cg_set_error(CG_ERR_INVALID, "device cuda: no usable GPU (or calograd was built without CUDA)");
    else if (epochs < 1 || batch < 1 || ck_every < 1 || log_every < 1)
        st = cg_set_error(CG_ERR_INVALID, "epochs, batch, checkpoint_every and log_every must be at least 1");
    else if (cg_math_spec_check_device(cg_config_str(cfg, "math"), dev) != CG_OK)
        st = cg_last_status();
    double holdout = cg_config_float(cfg, "holdout");
    if (st == CG_OK && !(holdout >= 0 && holdout < 1)) st = cg_set_error(CG_ERR_INVALID, "holdout must be in [0, 1)");
    if (st != CG_OK) goto early;
    if (cg_config_int(cfg, "threads") > 0) cg_threads_set((int)cg_config_int(cfg, "threads"));
    cg_lr_schedule sched = {CG_LR_CONSTANT, (float)cg_config_float(cfg, "lr_gamma"), (int)cg_config_int(cfg, "lr_step")};
    const char *sk = cg_config_str(cfg, "lr_schedule");
    if (!strcmp(sk, "step")) sched.kind = CG_LR_STEP;
    else if (!strcmp(sk, "exponential")) sched.kind = CG_LR_EXPONENTIAL;
    else if (strcmp(sk, "constant") != 0) {
        st = cg_set_error(CG_ERR_INVALID, "lr_schedule must be constant, step or exponential (got '%s')", sk);
        goto early;
    }

    source src;
    st = source_open(&src, cg_config_str(cfg, "data"), holdout, cg_config_int(cfg, "max_events"), (int)batch, seed,
                     dev);
    if (st != CG_OK) {
        source_close(&src);
        goto early;
    }
    if (o->resume && !same_data(src.info, &lm.info))
        st = cg_set_error(CG_ERR_INVALID, "--resume: %s does not hold the data the checkpoint was trained on",
                          cg_config_str(cfg, "data"));
    if (st == CG_OK && mkdir(out, 0777) != 0 && errno != EEXIST)
        st = cg_set_error(CG_ERR_IO, "cannot create run directory %s: %s", out, strerror(errno));

    ckpt_ctx ck = {.fam = fam, .cfg = cfg, .info = src.info};
    snprintf(ck.path, sizeof ck.path, "%s", ckpath);
    if (st == CG_OK) st = cond_ranges(&src, ck.lo, ck.hi);
    cg_rng rng = cg_rng_make(seed);
    int64_t step = 0, nb = src.nb;
    if (st == CG_OK && o->resume) {
        ck.model = lm.model;
        lm.model = NULL;
        st = cg_model_set_math(fam, ck.model, dev, cg_config_str(cfg, "math"));
        step = lm.step;
        rng.counter = lm.rng_counter;
        st = trim_log(logpath, step);
    } else if (st == CG_OK) {
        ck.model = fam->create(cfg, src.info, dev, &rng);
        if (!ck.model) st = cg_last_status();
        if (st == CG_OK) st = cg_model_set_math(fam, ck.model, dev, cg_config_str(cfg, "math"));
        if (st == CG_OK && fam->fit) st = fit_on_sample(fam, ck.model, &src, dev, cg_config_int(cfg, "fit_events"));
        FILE *lf = st == CG_OK ? fopen(logpath, "w") : NULL;
        if (st == CG_OK && !lf) st = cg_set_error(CG_ERR_IO, "cannot write %s: %s", logpath, strerror(errno));
        if (lf) fclose(lf);
    }
    char *cfgtext = st == CG_OK ? cg_config_text(cfg) : NULL;
    if (st == CG_OK) st = write_text(cfgpath, cfgtext);
    free(cfgtext);

    FILE *lf = st == CG_OK ? fopen(logpath, "a") : NULL;
    if (st == CG_OK && !lf) st = cg_set_error(CG_ERR_IO, "cannot append to %s: %s", logpath, strerror(errno));
    bool header = lf && ftell(lf) == 0;
    int64_t epoch0 = step / nb, batch0 = step % nb, last_ck = step;
    double t0 = now_s(), t_log = 0, seen = 0;
    cg_losses l = {0};
    float lr0 = (float)cg_config_float(cfg, "lr");
    for (int64_t epoch = epoch0; st == CG_OK && epoch < epochs; epoch++) {
        int64_t b = epoch == epoch0 ? batch0 : 0;
        st = source_epoch(&src, epoch, b); /* a resumed run skips the batches already done */
        float lr = cg_lr_at(&sched, lr0, (int)epoch);
        fam->set_lr(ck.model, lr);
        for (; st == CG_OK && b < nb; b++) {
            if ((max_steps > 0 && step >= max_steps) || (o->stop && *o->stop)) break;
            if (time_limit > 0 && now_s() - t0 >= time_limit) {
                res->time_limited = true;
                break;
            }
            cg_tensor *x = NULL, *c = NULL;
            st = source_next(&src, &x, &c);
            if (st != CG_OK) break;
            memset(&l, 0, sizeof l);
            st = fam->train_step(ck.model, x, c, step, &rng, &l);
            cg_tape_reset();
            if (st != CG_OK) break;
            bool finite = true;
            for (int i = 0; i < l.n; i++) finite &= isfinite(l.value[i]) != 0;
            if (!finite) {
                st = cg_set_error(CG_ERR_NUMERIC, "the loss became %s at step %lld (epoch %lld, batch %lld); the last "
                                  "good checkpoint is %s (step %lld)", isnan(l.value[0]) ? "NaN" : "infinite",
                                  (long long)step, (long long)epoch + 1, (long long)b,
                                  last_ck > 0 || o->resume ? ckpath : "none yet", (long long)last_ck);
                break;
            }
            step++;
            seen += (double)batch;
            double el = now_s() - t0, rate = seen / (el > 0 ? el : 1e-9);
            log_row(lf, &header, step, epoch + 1, &l, lr, rate, el);
            int64_t total = epochs * nb, remaining = total - (epoch * nb + b + 1);
            if (max_steps > 0 && max_steps - step < remaining) remaining = max_steps - step;
            double eta = remaining * (double)batch / (rate > 0 ? rate : 1);
            if ((o->progress_bar && el - t_log > 0.2) || (!o->progress_bar && step % log_every == 0)) {
                print_progress(o, log, o->progress_bar, step, epoch, epochs, b + 1, nb, &l, rate, eta);
                t_log = el;
            }
            if (step % ck_every == 0 || (o->stop && *o->stop)) {
                fflush(lf);
                st = save_checkpoint(&ck, step, nb, rng.counter);
                last_ck = step;
            }
        }
        if ((max_steps > 0 && step >= max_steps) || (o->stop && *o->stop) || res->time_limited) break;
    }
    if (o->progress_bar) fprintf(log, "\n");
    if (lf) fclose(lf);
    /* the final checkpoint (unless training failed: then the last good one stays) */
    if (st == CG_OK && last_ck != step) st = save_checkpoint(&ck, step, nb, rng.counter);
    res->steps = step;
    res->epoch = step / nb;
    res->interrupted = o->stop && *o->stop;
    res->seconds = now_s() - t0;
    res->showers_per_s = res->seconds > 0 ? seen / res->seconds : 0;
    res->final_loss = l.n ? l.value[0] : NAN;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", ckpath);
    snprintf(res->run_dir, sizeof res->run_dir, "%s", out);
    if (ck.model) fam->destroy(ck.model);
    source_close(&src);
early:
    if (lm.model) lm.family->destroy(lm.model);
    cg_config_free(&lm.cfg);
    return st;
}
