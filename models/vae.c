/*
 * models/vae.c — a conditional VAE for 3-D showers on a regular grid.
 *
 * Architecture (c = `channels`, every hidden activation leaky_relu 0.2):
 *   encoder  x' (B,1,D,H,W) -> conv k4 s2 p1 (c) -> conv k4 s2 p1 (2c) -> conv k3 s2 p1 (4c)
 *            -> flatten ‖ cond' -> linear (hidden) -> mu, logvar (latent)
 *   decoder  z ‖ cond' -> linear (hidden) -> linear (4c·d3·h3·w3) -> reshape
 *            -> conv_transpose k3 s2 p1 (2c) -> k4 s2 p1 (c) -> k4 s2 p1 (3 channels)
 * The transposed convolutions' output padding is chosen per axis to land exactly on the
 * encoder's sizes, so any grid works (30×30×30, 30×60×30, 25×25×25); an axis shorter than 4
 * cells keeps kernel 1 and stride 1 (the LHCb image is a single layer).
 *
 * The decoder's three output channels describe each cell as a zero-inflated log-normal:
 *   a hit probability p = sigmoid(logit), and for a hit an energy x = s·exp(m + σ·ε),
 *   ε ~ N(0, 1) truncated at ±3, σ = exp(clamp(log σ, -4, 0)).
 * (A cell's log-energy spread given the latent stays well below 1; a wider σ only lets rare
 * draws multiply a cell by thousands.) A generated cell never exceeds the largest single-cell
 * deposit of the fit sample (`x_max`, a buffer): a guard against a decoder extrapolating on
 * a rare latent point, which real showers never do.
 * Calorimeter showers light a few percent of their cells; a decoder that regresses every
 * cell's energy (MSE) smears a haze of tiny values over the empty ones, which a threshold then
 * removes together with much of the energy. Deciding "hit or not" separately keeps the
 * sparsity, the number of hits and the cell spectrum, and energies stay positive.
 *
 * Data transforms (fitted once on the training data, saved as buffers in checkpoints):
 *   x' = log(1 + x / s)          the encoder's input, s = x_scale (default half a MIP);
 *   cond' = (t(cond) - mean)/std t = log for the incident energy, identity otherwise.
 *
 * Loss per batch (sums over cells, means over the batch):
 *   hits   = Σ BCE(logit, [x > 0])
 *   energy = Σ_{hit cells} ((log(x/s) - m)² / (2σ²) + log σ)       Gaussian NLL in log space
 *   esum   = mean_B ((Σ p·s·exp(m + σ²/2) - Σx) / Σx)²              the expected total energy
 *   kl     = -½ Σ (1 + logvar - mu² - e^logvar) / B
 *   loss   = hits + energy + esum_weight·esum + β(step)·kl + etot,  β(step) = beta·min(1, step/kl_warmup)
 * KL annealing (β rising from 0: the warm-up of ../shared/seeds/003*) avoids the posterior
 * collapse of an early, strong KL term.
 *
 * Sampling the latent. A VAE's aggregate posterior rarely fills N(0, 1): with this
 * reconstruction scale some latent dimensions settle at means of ±2 with small spreads, and
 * a decoder fed prior samples then works where it never trained (a Gaussian fitted to the
 * posterior does not help: the posterior is curved, and its Gaussian reaches off the data).
 * So, as the BIB-AE samples its latent by kernel density estimation (../shared/seeds/000*:
 * "multi-dimensional KDE sampling"), generation draws from a bank of encoded training
 * points: the last `latent_bank` pairs (z, cond') seen in training, kept as a buffer (so
 * checkpoints carry it). For a requested condition, one of its `latent_neighbours` nearest
 * bank entries in cond' space is picked at random and z = z_i + h·ε, h = `latent_bandwidth`.
 * `latent_sampler = prior` uses N(0, 1) instead. Then hits and energies are sampled and the
 * seeds' half-MIP cut is applied (cells below gen_threshold set to 0).
 *
 * The total energy. The visible energy sum is what a calorimeter measures first, and it is
 * fragile in a decoder: a latent point slightly off the data makes every cell's energy
 * extrapolate together. So the model generates it explicitly, as the two-angle BIB-AE does
 * (a flow for the energy sum, then rescaling; models.md §1.9): an energy head, a small MLP of
 * the conditions, gives a Gaussian for t = log Σx (its mean and log-width),
 *   etot = Σ_showers ((t - μ_t)² / (2σ_t²) + log σ_t) / B          (its negative log-likelihood)
 * added to the loss; a generated shower's cells are rescaled to a total drawn from it
 * (`energy_head = false` turns this off: the decoder's own sum is kept).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"

static const cg_cfg_spec VAE_OPTIONS[] = {
    {"latent", CG_CFG_INT, "16", "latent dimensions"},
    {"channels", CG_CFG_INT, "8", "channels of the first convolution (then x2, x4)"},
    {"hidden", CG_CFG_INT, "256", "width of the fully connected layers"},
    {"beta", CG_CFG_FLOAT, "1.0", "final weight of the KL term"},
    {"kl_warmup", CG_CFG_INT, "500", "steps over which the KL weight rises linearly from 0 to beta"},
    {"esum_weight", CG_CFG_FLOAT, "1000.0", "weight of the relative total-energy term"},
    {"x_scale", CG_CFG_FLOAT, "0", "s in x' = log(1 + x/s), in the data's units; 0 = half a MIP (or fitted)"},
    {"gen_threshold", CG_CFG_FLOAT, "-1", "cells below this are zeroed in generated showers; -1 = half a MIP"},
    {"latent_sampler", CG_CFG_STR, "kde", "kde (a kernel density over encoded training points near the conditions) or prior"},
    {"latent_bank", CG_CFG_INT, "4096", "encoded training points the kde sampler keeps"},
    {"latent_neighbours", CG_CFG_INT, "16", "the kde sampler picks among this many nearest points in condition space"},
    {"latent_bandwidth", CG_CFG_FLOAT, "0.1", "the kde sampler's kernel width"},
    {"energy_head", CG_CFG_BOOL, "true", "generate the total energy with its own head and rescale the shower to it"},
    {NULL, 0, NULL, NULL},
};

struct cg_model {
    cg_module *root, *enc[3], *enc_fc, *fc_mu, *fc_lv, *dec_fc1, *dec_fc2, *dec[3], *norm, *lat;
    cg_module *eh1, *eh2; /* the energy head: cond' -> 32 -> (μ_t, log σ_t) */
    cg_optim *opt;
    int latent, ncond, energy_col;
    int64_t grid[3], low[3]; /* D, H, W and the lowest resolution d3, h3, w3 */
    int c3;
    float beta, esum_weight, gen_threshold, bandwidth;
    int bank, neighbours;
    bool kde_sampler, energy_head;
    bool fit_scale; /* x_scale comes from the data (no MIP known, none configured) */
    int64_t kl_warmup;
};

/* ---------------------------------------------------------------- build ---- */

/* One downsampling step per axis: k4 s2 p1 (or k3 s2 p1 for the last), or k1 s1 p0 when the
 * axis is too short to downsample. Returns the output size. */
static int64_t down(int64_t n, int last, int *k, int *s, int *p) {
    if (n < 4) { *k = 1; *s = 1; *p = 0; return n; }
    *k = last ? 3 : 4; *s = 2; *p = 1;
    return (n + 2 - *k) / 2 + 1;
}

static cg_model *vae_create(const cg_config *cfg, const cg_cvox_info *info, cg_device dev, cg_rng *rng) {
    const cg_geometry *g = &info->geom;
    if (!cg_geometry_is_grid(g) || g->layer[0].binning != CG_BIN_CARTESIAN) {
        cg_set_error(CG_ERR_INVALID, "the vae needs a regular Cartesian grid; geometry '%s' has per-layer shapes",
                     g->name);
        return NULL;
    }
    cg_model *m = cg_xcalloc(1, sizeof *m);
    m->latent = (int)cg_config_int(cfg, "latent");
    int c = (int)cg_config_int(cfg, "channels"), hidden = (int)cg_config_int(cfg, "hidden");
    m->beta = (float)cg_config_float(cfg, "beta");
    m->kl_warmup = cg_config_int(cfg, "kl_warmup");
    m->esum_weight = (float)cg_config_float(cfg, "esum_weight");
    m->gen_threshold = (float)cg_config_float(cfg, "gen_threshold");
    m->energy_head = cg_config_bool(cfg, "energy_head");
    m->bank = (int)cg_config_int(cfg, "latent_bank");
    m->neighbours = (int)cg_config_int(cfg, "latent_neighbours");
    m->bandwidth = (float)cg_config_float(cfg, "latent_bandwidth");
    const char *sampler = cg_config_str(cfg, "latent_sampler");
    m->kde_sampler = strcmp(sampler, "prior") != 0;
    if (m->kde_sampler && strcmp(sampler, "kde") != 0) {
        cg_set_error(CG_ERR_INVALID, "vae: latent_sampler must be kde or prior (got '%s')", sampler);
        free(m);
        return NULL;
    }
    if (m->bank < 1 || m->neighbours < 1 || !(m->bandwidth >= 0)) {
        cg_set_error(CG_ERR_INVALID, "vae: latent_bank and latent_neighbours must be >= 1, latent_bandwidth >= 0");
        free(m);
        return NULL;
    }
    if (m->gen_threshold < 0) m->gen_threshold = g->mip_mev > 0 ? 0.5f * g->mip_mev / g->to_mev : 0.0f;
    m->ncond = info->ncond;
    m->energy_col = cg_cvox_cond_index(info, "energy");
    if (m->latent < 1 || c < 1 || hidden < 1) {
        free(m);
        cg_set_error(CG_ERR_INVALID, "vae: latent, channels and hidden must be positive");
        return NULL;
    }
    m->grid[0] = g->nlayers;
    m->grid[1] = g->layer[0].rows;
    m->grid[2] = g->layer[0].cols;

    m->root = cg_module_new(NULL, "");
    cg_module *enc = cg_module_new(m->root, "encoder"), *dec = cg_module_new(m->root, "decoder");
    m->norm = cg_module_new(m->root, "norm");
    m->lat = cg_module_new(m->root, "latent_fit");
    int ch[4] = {1, c, 2 * c, 4 * c};
    m->c3 = ch[3];
    int64_t size[4][3];
    int k[3][3], s[3][3], p[3][3];
    for (int d = 0; d < 3; d++) size[0][d] = m->grid[d];
    for (int l = 0; l < 3; l++)
        for (int d = 0; d < 3; d++) size[l + 1][d] = down(size[l][d], l == 2, &k[l][d], &s[l][d], &p[l][d]);
    for (int d = 0; d < 3; d++) m->low[d] = size[3][d];
    int64_t flat = ch[3] * m->low[0] * m->low[1] * m->low[2];
    char name[16];
    bool ok = true;
    for (int l = 0; l < 3 && ok; l++) {
        cg_conv_opts o = cg_conv_opts_make(1, 0, 0), ot = o;
        for (int d = 0; d < 3; d++) {
            o.stride[d] = ot.stride[d] = s[l][d];
            o.pad[d] = ot.pad[d] = p[l][d];
            /* the transposed conv from size[l+1] back to size[l]: (n-1)s - 2p + k + op */
            ot.output_pad[d] = (int)(size[l][d] - ((size[l + 1][d] - 1) * s[l][d] - 2 * p[l][d] + k[l][d]));
        }
        snprintf(name, sizeof name, "conv%d", l + 1);
        m->enc[l] = cg_conv3d_new(enc, name, ch[l], ch[l + 1], k[l], o, true, dev, rng);
        snprintf(name, sizeof name, "deconv%d", l + 1);
        m->dec[l] = cg_conv_transpose3d_new(dec, name, ch[l + 1], l == 0 ? 3 : ch[l], k[l], ot, true, dev, rng);
        ok = m->enc[l] && m->dec[l];
    }
    ok = ok && (m->enc_fc = cg_linear_new(enc, "fc", (int)flat + m->ncond, hidden, true, dev, rng)) &&
         (m->fc_mu = cg_linear_new(enc, "fc_mu", hidden, m->latent, true, dev, rng)) &&
         (m->fc_lv = cg_linear_new(enc, "fc_logvar", hidden, m->latent, true, dev, rng)) &&
         (m->dec_fc1 = cg_linear_new(dec, "fc1", m->latent + m->ncond, hidden, true, dev, rng)) &&
         (m->dec_fc2 = cg_linear_new(dec, "fc2", hidden, (int)flat, true, dev, rng));
    cg_module *eh = cg_module_new(m->root, "energy_head");
    ok = ok && (m->eh1 = cg_linear_new(eh, "fc1", m->ncond > 0 ? m->ncond : 1, 32, true, dev, rng)) &&
         (m->eh2 = cg_linear_new(eh, "fc2", 32, 2, true, dev, rng));
    int64_t nc = m->ncond > 0 ? m->ncond : 1;
    float scale = (float)cg_config_float(cfg, "x_scale");
    if (scale <= 0 && g->mip_mev > 0) scale = 0.5f * g->mip_mev / g->to_mev;
    m->fit_scale = scale <= 0;
    ok = ok && cg_module_add(m->norm, "cond_mean", cg_tensor_zeros(dev, 1, &nc), true) == CG_OK &&
         cg_module_add(m->norm, "cond_std", cg_tensor_full(dev, 1, &nc, 1.0f), true) == CG_OK &&
         cg_module_add(m->norm, "x_scale", cg_tensor_full(dev, CG_SHAPE(1), m->fit_scale ? 1.0f : scale), true) ==
             CG_OK &&
         cg_module_add(m->norm, "x_max", cg_tensor_full(dev, CG_SHAPE(1), INFINITY), true) == CG_OK;
    int64_t J = m->latent + m->ncond; /* a bank row: (z, cond') */
    ok = ok && cg_module_add(m->lat, "bank", cg_tensor_zeros(dev, CG_SHAPE(m->bank, J)), true) == CG_OK &&
         cg_module_add(m->lat, "count", cg_tensor_zeros(CG_CPU, CG_SHAPE(1)), true) == CG_OK;
    if (ok) {
        cg_named_list params = {0};
        cg_module_collect(m->root, &params, false);
        cg_optim_cfg oc = cg_optim_cfg_from(cfg);
        m->opt = cg_optim_new(&oc, &params);
        cg_named_list_free(&params);
        ok = m->opt != NULL;
    }
    if (!ok) {
        cg_module_free(m->root);
        free(m);
        return NULL;
    }
    return m;
}

static void vae_destroy(cg_model *m) {
    if (!m) return;
    cg_optim_free(m->opt);
    cg_module_free(m->root);
    free(m);
}

static void vae_collect(cg_model *m, cg_named_list *out) {
    cg_module_collect(m->root, out, true);
    cg_optim_collect_state(m->opt, out);
}

static void vae_set_lr(cg_model *m, float lr) { cg_optim_set_lr(m->opt, lr); }

/* ------------------------------------------------------------- transforms ---- */

/* cond (B, ncond) raw -> normalised, with log on the energy column */
static cg_tensor *transform_cond(cg_model *m, cg_tensor *cond) {
    if (m->ncond == 0) return NULL;
    cg_tensor *t = cond;
    if (m->energy_col >= 0) {
        int e = m->energy_col;
        cg_tensor *parts[3];
        int k = 0;
        if (e > 0) parts[k++] = cg_slice(cond, 1, 0, e);
        parts[k++] = cg_log(cg_clamp(cg_slice(cond, 1, e, e + 1), 1e-12f, INFINITY));
        if (e + 1 < m->ncond) parts[k++] = cg_slice(cond, 1, e + 1, m->ncond);
        t = k > 1 ? cg_concat(k, parts, 1) : parts[0];
    }
    return cg_div(cg_sub(t, cg_module_param(m->norm, "cond_mean")), cg_module_param(m->norm, "cond_std"));
}

static cg_status vae_fit(cg_model *m, cg_tensor *x, cg_tensor *cond) {
    bool prev = cg_set_grad_enabled(false);
    cg_tape_pos mark = cg_tape_mark();
    cg_status st = CG_OK;
    if (m->ncond > 0) {
        /* mean and std of the transformed conditions (identity normalisation first) */
        cg_tensor *mean = cg_module_param(m->norm, "cond_mean"), *sd = cg_module_param(m->norm, "cond_std");
        cg_backend_of(mean)->fill(cg_data(mean), 0.0f, m->ncond);
        cg_backend_of(sd)->fill(cg_data(sd), 1.0f, m->ncond);
        cg_tensor *t = transform_cond(m, cond);
        float *mh = cg_tensor_host_copy(cg_mean(t, CG_AXIS(0), false));
        float *vh = cg_tensor_host_copy(cg_var(t, CG_AXIS(0), false, 0));
        if (!mh || !vh) st = cg_last_status();
        for (int i = 0; st == CG_OK && i < m->ncond; i++) vh[i] = vh[i] > 1e-12f ? sqrtf(vh[i]) : 1.0f;
        if (st == CG_OK) {
            cg_tensor_set_host(mean, mh);
            cg_tensor_set_host(sd, vh);
        }
        free(mh);
        free(vh);
    }
    if (st == CG_OK && m->fit_scale) {
        /* a tenth of the mean non-zero cell energy: small deposits stay resolved in log space */
        double sum = cg_item(cg_sum_all(x)), hits = cg_item(cg_sum_all(cg_step(x, 0.0f)));
        float s = hits > 0 && sum > 0 ? (float)(0.1 * sum / hits) : 1.0f;
        cg_tensor *xs = cg_module_param(m->norm, "x_scale");
        cg_tensor_set_host(xs, &s);
    }
    if (st == CG_OK) { /* the largest single-cell deposit: the generation guard */
        float *hx = cg_tensor_host_copy(x), xmax = 0;
        for (int64_t i = 0; hx && i < cg_numel(x); i++) xmax = fmaxf(xmax, hx[i]);
        free(hx);
        st = cg_tensor_set_host(cg_module_param(m->norm, "x_max"), &xmax);
    }
    if (st == CG_OK) {
        /* start the energy head at the data: its outputs' biases at the mean and log-width of
         * t = log Σ(x/s), its output weights at zero (so it starts with what fit saw) */
        unsigned cells = 0;
        for (int i = 1; i < x->ndim; i++) cells |= 1u << i;
        cg_tensor *t = cg_log(cg_add_scalar(cg_sum(cg_div(x, cg_module_param(m->norm, "x_scale")), cells, false), 1e-6f));
        float b[2] = {cg_item(cg_mean_all(t)), 0.5f * logf(fmaxf(cg_item(cg_var(t, CG_AXIS(0), false, 0)), 1e-8f))};
        cg_tensor *w2 = cg_module_param(m->eh2, "weight"), *b2 = cg_module_param(m->eh2, "bias");
        cg_backend_of(w2)->fill(cg_data(w2), 0.0f, cg_numel(w2));
        st = cg_tensor_set_host(b2, b);
    }
    cg_tape_rewind(mark);
    cg_set_grad_enabled(prev);
    return st;
}

/* ------------------------------------------------------------ the network ---- */

static cg_tensor *lrelu(cg_tensor *t) { return cg_leaky_relu(t, 0.2f); }

static cg_tensor *encode(cg_model *m, cg_tensor *xt, cg_tensor *c, cg_tensor **logvar) {
    cg_tensor *h = xt;
    for (int l = 0; l < 3; l++) h = lrelu(cg_module_forward(m->enc[l], h));
    h = cg_flatten(h, 1);
    if (c) h = cg_concat(2, (cg_tensor *[]){h, c}, 1);
    h = lrelu(cg_module_forward(m->enc_fc, h));
    *logvar = cg_module_forward(m->fc_lv, h);
    return cg_module_forward(m->fc_mu, h);
}

/* z (B, latent) -> the three output channels (B, 3, D, H, W) */
static cg_tensor *decode(cg_model *m, cg_tensor *z, cg_tensor *c) {
    cg_tensor *h = c ? cg_concat(2, (cg_tensor *[]){z, c}, 1) : z;
    h = lrelu(cg_module_forward(m->dec_fc1, h));
    h = lrelu(cg_module_forward(m->dec_fc2, h));
    if (!h) return NULL;
    h = cg_reshape(h, CG_SHAPE(h->shape[0], m->c3, m->low[0], m->low[1], m->low[2]));
    for (int l = 2; l >= 0; l--) {
        h = cg_module_forward(m->dec[l], h);
        if (l > 0) h = lrelu(h);
    }
    return h;
}

/* The decoder's channels: hit logit, log-energy mean m, log σ (clamped). */
static void heads(cg_tensor *out, cg_tensor **logit, cg_tensor **mean, cg_tensor **log_sigma) {
    *logit = cg_slice(out, 1, 0, 1);
    *mean = cg_slice(out, 1, 1, 2);
    *log_sigma = cg_clamp(cg_slice(out, 1, 2, 3), -4.0f, 0.0f);
}

/* Append the batch's (z, cond') rows to the bank, a ring buffer; `count` (on the CPU) is the
 * number of rows ever written. */
static cg_status bank_latent(cg_model *m, cg_tensor *z, cg_tensor *c) {
    bool prev = cg_set_grad_enabled(false);
    cg_tape_pos mark = cg_tape_mark();
    cg_tensor *j = cg_contiguous(c ? cg_concat(2, (cg_tensor *[]){cg_detach(z), c}, 1) : cg_detach(z));
    cg_tensor *bank = cg_module_param(m->lat, "bank");
    float *count = cg_data(cg_module_param(m->lat, "count"));
    int64_t J = bank->shape[1], B = j->shape[0], K = bank->shape[0];
    const cg_backend *be = cg_backend_of(bank);
    for (int64_t i = 0; i < B && i < K; i++) { /* row by row: the ring may wrap */
        int64_t at = ((int64_t)*count + i) % K;
        be->copy(cg_data(bank) + at * J, cg_data(j) + (B - (B < K ? B : K) + i) * J, (size_t)J * sizeof(float));
    }
    *count += (float)B;
    cg_tape_rewind(mark);
    cg_set_grad_enabled(prev);
    return CG_OK;
}

/* z for normalised conditions c' (B, nc): a kde draw from the bank near each condition. */
static cg_tensor *sample_latent(cg_model *m, cg_tensor *c, int64_t B, cg_rng *rng, cg_device dev) {
    int L = m->latent, nc = c ? m->ncond : 0, J = L + m->ncond;
    float count = cg_item(cg_module_param(m->lat, "count"));
    int64_t K = count < (float)m->bank ? (int64_t)count : m->bank;
    if (K < 1) {
        cg_set_error(CG_ERR_INVALID, "vae: the latent bank is empty (the model was never trained)");
        return NULL;
    }
    float *bank = cg_tensor_host_copy(cg_module_param(m->lat, "bank"));
    float *hc = nc ? cg_tensor_host_copy(c) : NULL;
    float *z = cg_xmalloc((size_t)(B * L) * sizeof(float));
    int k = m->neighbours < K ? m->neighbours : (int)K;
    int64_t *best = cg_xmalloc((size_t)k * sizeof(int64_t));
    double *bd = cg_xmalloc((size_t)k * sizeof(double));
    for (int64_t b = 0; bank && b < B; b++) {
        /* the k nearest bank rows in cond' space (all rows when there are no conditions) */
        int nb = 0;
        for (int64_t r = 0; r < K; r++) {
            double d = 0;
            for (int q = 0; q < nc; q++) {
                double t = bank[r * J + L + q] - hc[b * nc + q];
                d += t * t;
            }
            if (nb < k) { best[nb] = r; bd[nb++] = d; continue; }
            int worst = 0;
            for (int q = 1; q < k; q++) worst = bd[q] > bd[worst] ? q : worst;
            if (d < bd[worst]) { best[worst] = r; bd[worst] = d; }
        }
        int64_t pick = best[cg_rng_below(rng, (uint64_t)nb)];
        for (int q = 0; q < L; q++) z[b * L + q] = bank[pick * J + q] + m->bandwidth * (float)cg_rng_normal(rng);
    }
    cg_tensor *out = bank ? cg_op_adopt(cg_tensor_from_host(dev, CG_SHAPE(B, L), z)) : NULL;
    free(bank); free(hc); free(z); free(best); free(bd);
    return out;
}

/* The energy head: (μ_t, log σ_t) of t = log Σx, each (B, 1), for normalised conditions c
 * (NULL when the data has none: a constant input). */
static void energy_dist(cg_model *m, cg_tensor *c, int64_t B, cg_device dev, cg_tensor **mu_t, cg_tensor **ls_t) {
    cg_tensor *in = c ? c : cg_full(dev, CG_SHAPE(B, 1), 1.0f);
    cg_tensor *o = cg_module_forward(m->eh2, cg_tanh(cg_module_forward(m->eh1, in)));
    *mu_t = cg_slice(o, 1, 0, 1);
    *ls_t = cg_clamp(cg_slice(o, 1, 1, 2), -6.0f, 2.0f);
}

static cg_status vae_train_step(cg_model *m, cg_tensor *x, cg_tensor *cond, int64_t step, cg_rng *rng,
                                cg_losses *out) {
    int64_t B = x->shape[0];
    float inv_b = 1.0f / (float)B;
    cg_tensor *s = cg_module_param(m->norm, "x_scale");
    cg_tensor *c = transform_cond(m, cond);
    cg_tensor *xs = cg_div(x, s);
    cg_tensor *xt = cg_log(cg_add_scalar(xs, 1.0f));
    cg_tensor *logvar, *mu = encode(m, xt, c, &logvar);
    cg_tensor *z = cg_add(mu, cg_mul(cg_randn_like(mu, rng), cg_exp(cg_scale(logvar, 0.5f))));
    cg_tensor *logit, *mean, *lsig;
    heads(decode(m, z, c), &logit, &mean, &lsig);
    cg_tensor *hit = cg_step(x, 0.0f);
    cg_tensor *hits = cg_scale(cg_sum_all(cg_sub(cg_softplus(logit), cg_mul(logit, hit))), inv_b);
    /* log(x/s) on hit cells; empty cells contribute nothing (the mask is 0 there) */
    cg_tensor *lx = cg_log(cg_add(xs, cg_affine(hit, -1.0f, 1.0f)));
    cg_tensor *nll = cg_add(cg_scale(cg_square(cg_mul(cg_sub(lx, mean), cg_exp(cg_neg(lsig)))), 0.5f), lsig);
    cg_tensor *energy = cg_scale(cg_sum_all(cg_mul(nll, hit)), inv_b);
    unsigned vox = CG_AXIS(1) | CG_AXIS(2) | CG_AXIS(3) | CG_AXIS(4);
    cg_tensor *expect = cg_mul(cg_sigmoid(logit), cg_exp(cg_add(mean, cg_scale(cg_exp(cg_scale(lsig, 2.0f)), 0.5f))));
    cg_tensor *e_true = cg_sum(xs, vox, false), *e_hat = cg_sum(expect, vox, false);
    cg_tensor *esum = cg_mean_all(cg_square(cg_div(cg_sub(e_hat, e_true), cg_add_scalar(e_true, 1e-6f))));
    cg_tensor *kl = cg_gaussian_kl(mu, logvar);
    float beta = m->kl_warmup > 0 ? m->beta * fminf(1.0f, (float)step / (float)m->kl_warmup) : m->beta;
    cg_tensor *loss = cg_add(cg_add(hits, energy), cg_add(cg_scale(esum, m->esum_weight), cg_scale(kl, beta)));
    cg_tensor *etot = NULL;
    if (m->energy_head) { /* Gaussian NLL of t = log Σx (in units of s) */
        cg_tensor *mu_t, *ls_t;
        energy_dist(m, c, B, x->device, &mu_t, &ls_t);
        cg_tensor *t = cg_reshape(cg_log(cg_add_scalar(e_true, 1e-6f)), CG_SHAPE(B, 1));
        cg_tensor *z2 = cg_square(cg_mul(cg_sub(t, mu_t), cg_exp(cg_neg(ls_t))));
        etot = cg_scale(cg_sum_all(cg_add(cg_scale(z2, 0.5f), ls_t)), inv_b);
        loss = cg_add(loss, etot);
    }
    if (!loss) return cg_last_status();
    const char *names[6] = {"loss", "hits", "energy", "esum", "kl", "etot"};
    cg_tensor *values[6] = {loss, hits, energy, esum, kl, etot};
    cg_status st = cg_losses_read(out, etot ? 6 : 5, names, values);
    if (st != CG_OK) return st;
    cg_losses_add(out, "beta", beta);
    if (!isfinite(out->value[0])) return CG_OK; /* the trainer reports it and stops */
    st = cg_backward(loss);
    if (st == CG_OK) st = cg_optim_step(m->opt);
    cg_optim_zero_grad(m->opt);
    if (st == CG_OK) st = bank_latent(m, z, c);
    return st;
}

static cg_tensor *vae_generate(cg_model *m, cg_tensor *cond, cg_rng *rng) {
    int64_t B = cond->shape[0];
    bool prev = cg_set_grad_enabled(false);
    cg_tensor *c = transform_cond(m, cond);
    cg_tensor *z = m->kde_sampler ? sample_latent(m, c, B, rng, cond->device)
                                     : cg_op_adopt(cg_tensor_randn(cond->device, CG_SHAPE(B, m->latent), rng, 0.0f, 1.0f));
    cg_tensor *logit, *mean, *lsig;
    heads(decode(m, z, c), &logit, &mean, &lsig);
    /* a hit where u < p (u uniform), with energy s·exp(m + σ·ε) */
    cg_tensor *hit = cg_step(cg_sub(cg_sigmoid(logit), cg_rand_like(logit, rng, 0.0f, 1.0f)), 0.0f);
    cg_tensor *eps = cg_clamp(cg_randn_like(mean, rng), -3.0f, 3.0f);
    cg_tensor *e = cg_exp(cg_add(mean, cg_mul(eps, cg_exp(lsig))));
    cg_tensor *x = cg_mul(cg_mul(e, hit), cg_module_param(m->norm, "x_scale"));
    float xmax = cg_item(cg_module_param(m->norm, "x_max"));
    if (x && isfinite(xmax) && xmax > 0) x = cg_clamp(x, 0.0f, xmax);
    if (x && m->gen_threshold > 0) x = cg_mul(x, cg_step(x, m->gen_threshold)); /* the half-MIP cut */
    if (x && m->energy_head) { /* rescale to a total drawn from the energy head */
        cg_tensor *mu_t, *ls_t;
        energy_dist(m, c, B, cond->device, &mu_t, &ls_t);
        cg_tensor *tot = cg_exp(cg_add(mu_t, cg_mul(cg_clamp(cg_randn_like(mu_t, rng), -3.0f, 3.0f), cg_exp(ls_t))));
        tot = cg_mul(tot, cg_module_param(m->norm, "x_scale")); /* t was in units of s */
        unsigned vox = CG_AXIS(1) | CG_AXIS(2) | CG_AXIS(3) | CG_AXIS(4);
        cg_tensor *sum = cg_reshape(cg_sum(x, vox, false), CG_SHAPE(B, 1));
        cg_tensor *f = cg_div(tot, cg_clamp(sum, 1e-30f, INFINITY)); /* an empty shower stays empty */
        x = cg_mul(x, cg_reshape(f, CG_SHAPE(B, 1, 1, 1, 1)));
    }
    cg_set_grad_enabled(prev);
    return x ? cg_reshape(x, CG_SHAPE(B, -1)) : NULL;
}

static cg_module *vae_root(cg_model *m) { return m->root; }

const cg_model_family cg_vae_family = {
    .name = "vae",
    .summary = "conditional VAE: 3-D conv encoder, transposed-conv decoder, KL annealing",
    .options = VAE_OPTIONS,
    .create = vae_create,
    .fit = vae_fit,
    .collect = vae_collect,
    .train_step = vae_train_step,
    .set_lr = vae_set_lr,
    .generate = vae_generate,
    .destroy = vae_destroy,
    .root = vae_root,
};
