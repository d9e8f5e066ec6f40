/*
 * models/generate.c — rebuild a model from a checkpoint, and generate showers with it.
 *
 * The checkpoint's metadata (models/train.c writes it) holds the family's configuration,
 * the training position and the data description: the .cvox header of the training file
 * (hex, io/cvox.h cg_cvox_info_encode) and the range of every conditioning value. So a
 * generated file has the training data's geometry and conditioning names, and the
 * conditions a user does not set are drawn from the training ranges.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/train.h"

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Parse "a,b,c" into up to n doubles; returns the count or -1. */
static int parse_list(const char *s, double *out, int n) {
    int k = 0;
    while (s && *s && k < n) {
        char *end;
        out[k++] = strtod(s, &end);
        if (end == s) return -1;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return k;
}

cg_status cg_model_load(const char *path, cg_device dev, cg_loaded_model *out) {
    memset(out, 0, sizeof *out);
    cg_checkpoint *ck = cg_checkpoint_load(path);
    if (!ck) return cg_last_status();
    cg_status st = CG_OK;
    const char *kind = cg_checkpoint_kind(ck);
    out->family = cg_model_family_find(kind);
    if (!out->family) {
        st = cg_set_error(CG_ERR_INVALID, "checkpoint %s holds a '%s' model, which this calograd does not know", path,
                          kind);
        goto done;
    }
    /* the configuration: every metadata line but the state.* and data.* ones */
    const char *meta = cg_checkpoint_meta(ck);
    char *cfgtext = cg_xmalloc(strlen(meta) + 1);
    size_t len = 0;
    for (const char *p = meta; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p + 1) : strlen(p);
        if (strncmp(p, "state.", 6) != 0 && strncmp(p, "data.", 5) != 0) {
            memcpy(cfgtext + len, p, l);
            len += l;
        }
        p += l;
    }
    cfgtext[len] = 0;
    st = cg_config_load_text(&out->cfg, cfgtext, "checkpoint");
    free(cfgtext);
    const cg_cfg_spec *tables[3] = {cg_train_options, cg_optim_options, out->family->options};
    if (st == CG_OK) st = cg_config_resolve(&out->cfg, tables, 3);
    /* the data description */
    const char *hex = cg_checkpoint_get(ck, "data.info");
    if (st == CG_OK && !hex)
        st = cg_set_error(CG_ERR_INVALID, "checkpoint %s has no data description (data.info)", path);
    if (st == CG_OK) {
        size_t n = strlen(hex) / 2;
        uint8_t *bytes = cg_xmalloc(n ? n : 1);
        for (size_t i = 0; i < n && st == CG_OK; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) st = cg_set_error(CG_ERR_INVALID, "checkpoint %s: corrupted data.info", path);
            bytes[i] = (uint8_t)(hi * 16 + lo);
        }
        if (st == CG_OK) st = cg_cvox_info_decode(&out->info, bytes, n, path);
        free(bytes);
    }
    if (st == CG_OK && out->info.ncond > 0 &&
        (parse_list(cg_checkpoint_get(ck, "data.cond_lo"), out->cond_lo, out->info.ncond) != out->info.ncond ||
         parse_list(cg_checkpoint_get(ck, "data.cond_hi"), out->cond_hi, out->info.ncond) != out->info.ncond))
        st = cg_set_error(CG_ERR_INVALID, "checkpoint %s: bad conditioning ranges (data.cond_lo/hi)", path);
    if (st == CG_OK) {
        const char *v;
        out->step = (v = cg_checkpoint_get(ck, "state.step")) ? strtoll(v, NULL, 10) : 0;
        out->epoch = (v = cg_checkpoint_get(ck, "state.epoch")) ? strtoll(v, NULL, 10) : 0;
        out->batch = (v = cg_checkpoint_get(ck, "state.batch")) ? strtoll(v, NULL, 10) : 0;
        out->rng_counter = (v = cg_checkpoint_get(ck, "state.rng_counter")) ? strtoull(v, NULL, 10) : 0;
        cg_rng rng = cg_rng_make(0); /* the weights come from the checkpoint */
        out->model = out->family->create(&out->cfg, &out->info, dev, &rng);
        if (!out->model) st = cg_last_status();
    }
    if (st == CG_OK) {
        cg_named_list tensors = {0};
        out->family->collect(out->model, &tensors);
        st = cg_checkpoint_restore(ck, &tensors, true);
        cg_named_list_free(&tensors);
    }
done:
    cg_checkpoint_free(ck);
    if (st != CG_OK) {
        if (out->model) out->family->destroy(out->model);
        cg_config_free(&out->cfg);
        out->model = NULL;
    }
    return st;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cg_status cg_generate(const char *checkpoint, const char *out_path, const cg_generate_opts *o,
                      cg_generate_result *res) {
    cg_loaded_model lm;
    cg_status st = cg_model_load(checkpoint, o->device, &lm);
    if (st != CG_OK) return st;
    st = cg_model_set_math(lm.family, lm.model, o->device, o->math);
    const cg_cvox_info *info = &lm.info;
    int nc = info->ncond;
    double lo[CG_CVOX_MAX_COND], hi[CG_CVOX_MAX_COND];
    for (int k = 0; k < nc; k++) {
        lo[k] = lm.cond_lo[k];
        hi[k] = lm.cond_hi[k];
    }
    for (int i = 0; i < o->nset && st == CG_OK; i++) {
        int k = cg_cvox_cond_index(info, o->set_name[i]);
        if (k < 0) {
            char names[512] = "";
            for (int j = 0; j < nc; j++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", j ? ", " : "", info->cond_name[j]);
            st = cg_set_error(CG_ERR_INVALID, "the model was not trained with a condition '%s' (it has: %s)",
                              o->set_name[i], nc ? names : "none");
        } else {
            lo[k] = o->set_lo[i];
            hi[k] = o->set_hi[i];
        }
    }
    /* conditions copied from another file's events: matched by name */
    cg_cvox_reader *cr = NULL;
    int cmap[CG_CVOX_MAX_COND];
    float *cbuf = NULL;
    if (st == CG_OK && o->cond_from) {
        cr = cg_cvox_open(o->cond_from);
        if (!cr) st = cg_last_status();
        const cg_cvox_info *ci = cr ? cg_cvox_info_of(cr) : NULL;
        for (int k = 0; st == CG_OK && k < nc; k++) {
            cmap[k] = cg_cvox_cond_index(ci, info->cond_name[k]);
            if (cmap[k] < 0)
                st = cg_set_error(CG_ERR_INVALID, "%s has no condition '%s', which the model needs", o->cond_from,
                                  info->cond_name[k]);
        }
        if (st == CG_OK && ci->nevents < o->events)
            st = cg_set_error(CG_ERR_INVALID, "%s has %lld events, fewer than the %lld asked for", o->cond_from,
                              (long long)ci->nevents, (long long)o->events);
        if (st == CG_OK) cbuf = cg_xmalloc((size_t)(o->batch > 0 ? o->batch : 256) * (size_t)(ci->ncond ? ci->ncond : 1) *
                                           sizeof(float));
    }
    cg_cvox_info winfo = *info;
    snprintf(winfo.source, sizeof winfo.source, "calograd generate --checkpoint %.60s (%s)", checkpoint,
             lm.family->name);
    cg_cvox_writer *w = st == CG_OK ? cg_cvox_create(out_path, &winfo, 0) : NULL;
    if (st == CG_OK && !w) st = cg_last_status();
    cg_rng rng = cg_rng_make(o->seed);
    int batch = o->batch > 0 ? o->batch : 256;
    float *cond = cg_xmalloc((size_t)batch * (size_t)(nc ? nc : 1) * sizeof(float));
    double t0 = now_s();
    int64_t done = 0;
    while (st == CG_OK && done < o->events) {
        int64_t b = o->events - done < batch ? o->events - done : batch;
        if (cr) {
            int cn = cg_cvox_info_of(cr)->ncond;
            st = cg_cvox_read(cr, done, b, NULL, cbuf);
            for (int64_t i = 0; st == CG_OK && i < b; i++)
                for (int k = 0; k < nc; k++) cond[i * nc + k] = cbuf[i * cn + cmap[k]];
            if (st != CG_OK) break;
        } else {
            for (int64_t i = 0; i < b; i++)
                for (int k = 0; k < nc; k++)
                    cond[i * nc + k] = (float)(lo[k] + (hi[k] - lo[k]) * cg_rng_uniform(&rng));
        }
        cg_tape_pos mark = cg_tape_mark();
        cg_tensor *c = cg_op_adopt(cg_tensor_from_host(o->device, CG_SHAPE(b, nc ? nc : 1), cond));
        cg_tensor *x = c ? lm.family->generate(lm.model, c, &rng) : NULL;
        float *h = x ? cg_tensor_host_copy(x) : NULL;
        if (!h) st = cg_last_status();
        else st = cg_cvox_write(w, b, h, nc ? cond : NULL);
        free(h);
        cg_tape_rewind(mark);
        done += b;
    }
    double secs = now_s() - t0;
    free(cond);
    free(cbuf);
    if (cr) cg_cvox_close(cr);
    if (w) {
        if (st == CG_OK) st = cg_cvox_finish(w);
        else cg_cvox_abort(w);
    }
    if (res) {
        res->events = done;
        res->seconds = secs;
        res->showers_per_s = secs > 0 ? (double)done / secs : 0;
    }
    lm.family->destroy(lm.model);
    cg_config_free(&lm.cfg);
    return st;
}
