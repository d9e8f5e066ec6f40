/*
 * models/eval/report.c — the HTML report (report.h): a small SVG plotter, a PNG encoder for
 * shower images and the page itself.
 *
 * Plot conventions (every comparison plot): the reference is a filled grey-blue step
 * histogram (or filled markers for profiles), the generated sample an orange line (or open
 * markers), as CaloChallenge's stepfilled/step pair; histograms show the fraction of
 * showers per bin (count / in-range count), which for uniform bins is the density up to
 * the bin width and for log bins is the natural "per log bin" view. The ratio panel shows
 * generated / reference with statistical errors; points beyond [0.5, 1.5] are drawn as
 * triangles on the panel's edge.
 *
 * Shower images use one colour scale per layer shared by both samples: log10 of the mean
 * energy over four decades below the layer's largest value; empty cells are light grey.
 */
#include "models/eval/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------ text buffer ---- */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
    int nplots; /* unique ids for the plots' clip paths */
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (b->n + len + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (len < 0) return;
    if ((size_t)len < sizeof tmp) {
        sb_put(b, tmp, (size_t)len);
        return;
    }
    char *big = malloc((size_t)len + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)len + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)len);
    free(big);
}

static void sb_esc(sbuf *b, const char *s) { /* HTML text */
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_put(b, "&lt;", 4); break;
        case '>': sb_put(b, "&gt;", 4); break;
        case '&': sb_put(b, "&amp;", 5); break;
        case '"': sb_put(b, "&quot;", 6); break;
        default: sb_put(b, s, 1);
        }
    }
}

static void sb_base64(sbuf *b, const uint8_t *p, size_t n) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        q[0] = T[v >> 18 & 63];
        q[1] = T[v >> 12 & 63];
        q[2] = i + 1 < n ? T[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? T[v & 63] : '=';
        sb_put(b, q, 4);
    }
}

/* --------------------------------------------------------------------- PNG ---- */

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

uint8_t *cg_png_encode(const uint8_t *rgba, int w, int h, size_t *len) {
    /* raw scanlines, each preceded by filter type 0 (none) */
    size_t raw_n = (size_t)h * ((size_t)w * 4 + 1);
    uint8_t *raw = malloc(raw_n);
    uLongf zn = compressBound((uLong)raw_n);
    uint8_t *out = malloc(8 + 25 + 12 + zn + 12);
    if (!raw || !out) {
        free(raw), free(out);
        return NULL;
    }
    for (int y = 0; y < h; y++) {
        uint8_t *row = raw + (size_t)y * ((size_t)w * 4 + 1);
        row[0] = 0;
        memcpy(row + 1, rgba + (size_t)y * w * 4, (size_t)w * 4);
    }
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    memcpy(out, sig, 8);
    uint8_t *p = out + 8;
    /* IHDR: width, height, bit depth 8, colour type 6 (RGBA), deflate, no filter set, no interlace */
    put32(p, 13);
    memcpy(p + 4, "IHDR", 4);
    put32(p + 8, (uint32_t)w);
    put32(p + 12, (uint32_t)h);
    p[16] = 8, p[17] = 6, p[18] = 0, p[19] = 0, p[20] = 0;
    put32(p + 21, (uint32_t)crc32(0, p + 4, 17));
    p += 25;
    if (compress2(p + 8, &zn, raw, (uLong)raw_n, 9) != Z_OK) {
        free(raw), free(out);
        return NULL;
    }
    put32(p, (uint32_t)zn);
    memcpy(p + 4, "IDAT", 4);
    put32(p + 8 + zn, (uint32_t)crc32(0, p + 4, (uInt)(zn + 4)));
    p += 12 + zn;
    put32(p, 0);
    memcpy(p + 4, "IEND", 4);
    put32(p + 8, (uint32_t)crc32(0, p + 4, 4));
    p += 12;
    *len = (size_t)(p - out);
    free(raw);
    return out;
}

void cg_colormap(double t, uint8_t rgb[3]) {
    /* viridis, sampled at nine points and interpolated linearly */
    static const uint8_t V[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},   {44, 113, 142}, {33, 144, 141},
                                    {39, 173, 129}, {92, 200, 99},  {170, 220, 50},  {253, 231, 37}};
    t = !(t > 0) ? 0 : t > 1 ? 1 : t; /* NaN -> 0 */
    double u = t * 8;
    int i = (int)u;
    if (i > 7) i = 7;
    double f = u - i;
    for (int k = 0; k < 3; k++) rgb[k] = (uint8_t)lrint(V[i][k] + f * (V[i + 1][k] - V[i][k]));
}

#define DECADES 4.0

static void color_of(double v, double vmax, uint8_t *px) {
    if (!(v > 0) || !(vmax > 0)) {
        px[0] = px[1] = px[2] = 238; /* empty */
        px[3] = 255;
        return;
    }
    cg_colormap(1 + log10(v / vmax) / DECADES, px);
    px[3] = 255;
}

/* An <img> of a w × h image given by value(ctx, x, y) (y = 0 is the top row), shown at
 * dw × dh CSS pixels without smoothing. */
static void sb_image(sbuf *b, int w, int h, double (*value)(const void *, int, int), const void *ctx, double vmax,
                     int dw, int dh, const char *title) {
    uint8_t *px = malloc((size_t)w * h * 4);
    if (!px) {
        b->oom = 1;
        return;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double v = value(ctx, x, y);
            if (isnan(v)) { /* outside a polar layer: transparent */
                memset(px + ((size_t)y * w + x) * 4, 0, 4);
                continue;
            }
            color_of(v, vmax, px + ((size_t)y * w + x) * 4);
        }
    size_t n = 0;
    uint8_t *png = cg_png_encode(px, w, h, &n);
    free(px);
    if (!png) {
        b->oom = 1;
        return;
    }
    sb_printf(b, "<img class=\"px\" width=\"%d\" height=\"%d\" title=\"", dw, dh);
    sb_esc(b, title);
    sb_printf(b, "\" src=\"data:image/png;base64,");
    sb_base64(b, png, n);
    sb_printf(b, "\">");
    free(png);
}

/* ------------------------------------------------------------------- plots ---- */

typedef struct {
    double lo, hi;   /* data range */
    double p0, p1;   /* pixel range */
    bool log;
} axis;

static double ax_map(const axis *a, double v) {
    double t;
    if (a->log) t = (log10(fmax(v, a->lo * 1e-3)) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    else t = (v - a->lo) / (a->hi - a->lo);
    return a->p0 + t * (a->p1 - a->p0);
}

static double nice_step(double x) {
    double p = pow(10.0, floor(log10(x))), m = x / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static void fmt_num(char *s, size_t n, double v) {
    if (v == 0) snprintf(s, n, "0");
    else if (fabs(v) >= 1e5 || fabs(v) < 1e-3) snprintf(s, n, "%.0e", v);
    else snprintf(s, n, "%.4g", v);
}

/* Tick marks and labels along an axis; vertical = y axis. */
static void svg_ticks(sbuf *b, const axis *a, bool vertical, double other, bool labels) {
    char s[32];
    double ticks[64];
    int nt = 0;
    if (a->log) {
        int k0 = (int)ceil(log10(a->lo) - 1e-9), k1 = (int)floor(log10(a->hi) + 1e-9);
        int step = k1 - k0 > 6 ? (k1 - k0 + 5) / 6 : 1;
        for (int k = k0; k <= k1 && nt < 60; k += step) ticks[nt++] = pow(10.0, k);
        if (k1 - k0 < 2) /* less than two decades: 2 and 5 too */
            for (int k = k0 - 1; k <= k1 && nt < 60; k++)
                for (int m = 2; m <= 5; m += 3) {
                    double v = m * pow(10.0, k);
                    if (v >= a->lo && v <= a->hi) ticks[nt++] = v;
                }
    } else {
        double st = nice_step((a->hi - a->lo) / 5);
        for (double v = ceil(a->lo / st - 1e-9) * st; v <= a->hi + 1e-9 * st && nt < 60; v += st)
            ticks[nt++] = fabs(v) < 1e-12 * st ? 0 : v;
    }
    for (int i = 0; i < nt; i++) {
        double p = ax_map(a, ticks[i]);
        if (vertical)
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"tk\"/>", other, p, other + 4, p);
        else
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"tk\"/>", p, other, p, other - 4);
        if (!labels) continue;
        fmt_num(s, sizeof s, ticks[i]);
        if (vertical)
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tl\" text-anchor=\"end\">%s</text>", other - 3, p + 3.5,
                      s);
        else
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tl\" text-anchor=\"middle\">%s</text>", p, other + 12, s);
    }
}

typedef struct {
    const char *title, *note, *xlabel, *ylabel;
    int n;
    const double *edges;     /* n + 1: a histogram; NULL: points at x */
    const double *x;
    const double *y[2];      /* reference, generated */
    const double *err[2];    /* point errors (NULL: none) */
    const int64_t *cnt[2];   /* histogram counts, for the ratio's errors */
    bool logx, logy;
    int w, h;
} plot;

#define COL_REF "#4a7fb0"
#define COL_GEN "#e6550d"

static void svg_plot(sbuf *b, const plot *p) {
    const double ml = 54, mr = 10, mt = 30, mb = 36, gap = 6;
    double W = p->w, H = p->h, pw = W - ml - mr, ph_all = H - mt - mb - gap;
    double ph = ph_all * 0.72, rh = ph_all - ph;
    double top = mt, bot = mt + ph, rtop = bot + gap, rbot = rtop + rh;
    /* x range */
    double xlo = INFINITY, xhi = -INFINITY;
    for (int i = 0; i < p->n; i++) {
        double a = p->edges ? p->edges[i] : p->x[i], c = p->edges ? p->edges[i + 1] : p->x[i];
        if (p->logx && !(a > 0)) continue;
        xlo = fmin(xlo, a);
        xhi = fmax(xhi, c);
    }
    if (!p->edges && isfinite(xlo)) { /* points: half a spacing of room on each side */
        double pad = p->n > 1 ? 0.5 * (xhi - xlo) / (p->n - 1) : 0.5;
        if (p->logx) {
            xlo /= 1.3;
            xhi *= 1.3;
        } else {
            xlo -= pad;
            xhi += pad;
        }
    }
    if (!isfinite(xlo) || !(xhi > xlo)) {
        xlo = isfinite(xlo) ? xlo - 1 : 0;
        xhi = xlo + 2;
    }
    /* y range */
    double ymax = 0, ymin = INFINITY;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < p->n; i++) {
            double v = p->y[k][i];
            if (!isfinite(v)) continue;
            ymax = fmax(ymax, v + (p->err[k] ? p->err[k][i] : 0));
            if (v > 0) ymin = fmin(ymin, v);
        }
    axis ax = {xlo, xhi, ml, ml + pw, p->logx}, ay;
    if (p->logy) {
        if (!(ymax > 0)) ymax = 1;
        if (!isfinite(ymin)) ymin = ymax / 10;
        ay = (axis){pow(10, floor(log10(ymin) - 0.2)), pow(10, ceil(log10(ymax) + 0.1)), bot, top, true};
    } else {
        ay = (axis){0, ymax > 0 ? ymax * 1.12 : 1, bot, top, false};
    }
    axis ar = {0.5, 1.5, rbot, rtop, false};

    sb_printf(b, "<svg class=\"plot\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">", p->w, p->h,
              p->w, p->h);
    sb_printf(b, "<text x=\"8\" y=\"13\" class=\"pt\">");
    sb_esc(b, p->title);
    sb_printf(b, "</text>");
    if (p->note) {
        sb_printf(b, "<text x=\"8\" y=\"25\" class=\"pn\">");
        sb_esc(b, p->note);
        sb_printf(b, "</text>");
    }
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"fr\"/>", ml, top, pw, ph);
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"fr\"/>", ml, rtop, pw, rh);
    int id = ++b->nplots;
    sb_printf(b, "<clipPath id=\"c%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>",
              id, ml, top, pw, ph);
    sb_printf(b, "<g clip-path=\"url(#c%d)\">", id);
    if (p->edges) {
        /* step histograms: the reference filled, the generated as a line */
        for (int k = 0; k < 2; k++) {
            sbuf d = {0};
            bool started = false;
            for (int i = 0; i < p->n; i++) {
                if (p->logx && !(p->edges[i] > 0)) continue;
                double x0 = ax_map(&ax, p->edges[i]), x1 = ax_map(&ax, p->edges[i + 1]);
                double v = p->y[k][i];
                double y = (p->logy && !(v > 0)) || !isfinite(v) ? bot + 2 : ax_map(&ay, v);
                if (!started) {
                    sb_printf(&d, "M%.1f %.1fL%.1f %.1f", x0, bot + 2, x0, y);
                    started = true;
                } else {
                    sb_printf(&d, "L%.1f %.1f", x0, y);
                }
                sb_printf(&d, "L%.1f %.1f", x1, y);
                if (i == p->n - 1) sb_printf(&d, "L%.1f %.1f", x1, bot + 2);
            }
            if (d.s)
                sb_printf(b, "<path d=\"%s\" class=\"%s\"/>", d.s, k ? "hg" : "hr");
            b->oom |= d.oom;
            free(d.s);
        }
    } else {
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < p->n; i++) {
                double v = p->y[k][i];
                if (!isfinite(v) || (p->logy && !(v > 0))) continue;
                double x = ax_map(&ax, p->x[i]) + (k ? 1.5 : -1.5), y = ax_map(&ay, v);
                if (p->err[k] && p->err[k][i] > 0) {
                    double lo = v - p->err[k][i], hi = v + p->err[k][i];
                    double ylo = p->logy && !(lo > 0) ? bot : ax_map(&ay, lo);
                    sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"e%c\"/>", x, ylo, x,
                              ax_map(&ay, hi), k ? 'g' : 'r');
                }
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.4\" class=\"%s\"/>", x, y, k ? "pg" : "pr");
            }
    }
    sb_printf(b, "</g>");
    /* ratio panel */
    sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"one\"/>", ml, ax_map(&ar, 1), ml + pw,
              ax_map(&ar, 1));
    for (int i = 0; i < p->n; i++) {
        double r0 = p->y[0][i], g0 = p->y[1][i];
        if (!(r0 > 0) || !isfinite(g0)) continue;
        double ratio = g0 / r0, err = 0;
        if (p->edges && p->cnt[0] && p->cnt[1]) {
            double cr = (double)p->cnt[0][i], cg = (double)p->cnt[1][i];
            err = cg > 0 ? ratio * sqrt(1 / cr + 1 / cg) : 0;
        } else if (p->err[0] && p->err[1] && g0 > 0) {
            err = ratio * hypot(p->err[0][i] / r0, p->err[1][i] / g0);
        }
        double xc;
        if (p->edges) {
            if (p->logx && !(p->edges[i] > 0)) continue;
            xc = 0.5 * (ax_map(&ax, p->edges[i]) + ax_map(&ax, p->edges[i + 1]));
        } else {
            xc = ax_map(&ax, p->x[i]);
        }
        if (ratio > 1.5 || ratio < 0.5) { /* off scale: a triangle on the edge */
            double y = ratio > 1.5 ? rtop + 1 : rbot - 1, s = ratio > 1.5 ? 1 : -1;
            sb_printf(b, "<path d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" class=\"tri\"/>", xc, y, xc - 3, y + 5 * s,
                      xc + 3, y + 5 * s);
            continue;
        }
        double y = ax_map(&ar, ratio);
        if (err > 0)
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"eg\"/>", xc,
                      ax_map(&ar, fmax(ratio - err, 0.5)), xc, ax_map(&ar, fmin(ratio + err, 1.5)));
        sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.8\" class=\"rp\"/>", xc, y);
    }
    /* axes */
    svg_ticks(b, &ax, false, bot, false);
    svg_ticks(b, &ax, false, rbot, true);
    svg_ticks(b, &ay, true, ml, true);
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tl\" text-anchor=\"end\">1.5</text>", ml - 3, rtop + 7);
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tl\" text-anchor=\"end\">1</text>", ml - 3, ax_map(&ar, 1) + 3.5);
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tl\" text-anchor=\"end\">0.5</text>", ml - 3, rbot);
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"al\" text-anchor=\"end\">", ml + pw, H - 4);
    sb_esc(b, p->xlabel);
    sb_printf(b, "</text><text transform=\"translate(11 %.1f) rotate(-90)\" class=\"al\" text-anchor=\"middle\">",
              top + ph / 2);
    sb_esc(b, p->ylabel);
    sb_printf(b, "</text><text transform=\"translate(11 %.1f) rotate(-90)\" class=\"al\" "
                 "text-anchor=\"middle\">gen/ref</text>",
              rtop + rh / 2);
    sb_printf(b, "</svg>");
}

/* A comparison plot of one observable's histograms. */
static void plot_obs(sbuf *b, const cg_eval_obs *o, int w, int h, bool logy) {
    const cg_dist *d = &o->d;
    char title[128], note[160], xl[96];
    snprintf(title, sizeof title, "%s", o->label);
    if (isfinite(d->sp)) {
        snprintf(note, sizeof note, "SP %.4f   W1 %.3g   KS %.4f", d->sp, d->w1, d->ks);
        int64_t in = d->n_ref - d->out_ref;
        double gout = d->n_gen ? (double)d->out_gen / (double)d->n_gen : 0;
        if (d->n_ref > 0 && in < 0.9 * (double)d->n_ref) /* CaloChallenge's log bins drop zeros */
            snprintf(title, sizeof title, "%s (%.2g%% of ref. in range)", o->label, 100.0 * in / (double)d->n_ref);
        else if (gout > 0.05)
            snprintf(title, sizeof title, "%s (%.2g%% of gen. outside)", o->label, 100.0 * gout);
    } else {
        snprintf(note, sizeof note, "%s", d->note[0] ? d->note : "no metrics");
    }
    snprintf(xl, sizeof xl, "%s%s%s%s", o->key, o->unit[0] ? " [" : "", o->unit, o->unit[0] ? "]" : "");
    sb_printf(b, "<figure id=\"h-%s\">", o->key);
    if (!d->nbins) {
        sb_printf(b, "<div class=\"nohist\" style=\"width:%dpx;height:%dpx\"><b>", w, h);
        sb_esc(b, o->label);
        sb_printf(b, "</b><br>");
        sb_esc(b, note);
        sb_printf(b, "</div></figure>");
        return;
    }
    double *y[2];
    for (int k = 0; k < 2; k++) {
        const int64_t *c = k ? d->count_gen : d->count_ref;
        int64_t tot = 0;
        for (int i = 0; i < d->nbins; i++) tot += c[i];
        y[k] = malloc((size_t)d->nbins * sizeof(double));
        if (!y[k]) {
            b->oom = 1;
            free(y[0]);
            return;
        }
        for (int i = 0; i < d->nbins; i++) y[k][i] = tot ? (double)c[i] / (double)tot : 0;
    }
    plot p = {title, note, xl, "fraction per bin", d->nbins, d->edges, NULL, {y[0], y[1]}, {NULL, NULL},
              {d->count_ref, d->count_gen}, o->logx && d->edges[0] > 0, logy, w, h};
    svg_plot(b, &p);
    sb_printf(b, "</figure>");
    free(y[0]);
    free(y[1]);
}

/* ---------------------------------------------------------- shower images ---- */

typedef struct {
    const cg_geometry *g;
    int layer;
    const double *e;     /* one shower (or mean shower), dense, MeV */
    int res;             /* polar raster size */
} layer_img;

static double layer_value(const void *vctx, int x, int y) {
    const layer_img *c = vctx;
    const cg_layer *L = &c->g->layer[c->layer];
    const double *e = c->e + c->g->layer_offset[c->layer];
    if (L->binning != CG_BIN_POLAR) return e[(int64_t)(L->rows - 1 - y) * L->cols + x]; /* +y up */
    /* polar: the pixel's (r, alpha) picks the bin; alpha bins cover [-pi, pi) */
    double rmax = L->r_edges[L->cols], h = 0.5 * c->res;
    double px = ((x + 0.5) - h) / h * rmax, py = (h - (y + 0.5)) / h * rmax, r = hypot(px, py);
    if (r >= rmax) return NAN;
    int k = 0;
    while (k < L->cols - 1 && r >= L->r_edges[k + 1]) k++;
    if (r < L->r_edges[0]) return NAN;
    int a = (int)floor((atan2(py, px) + M_PI) / (2 * M_PI) * L->rows);
    if (a >= L->rows) a = L->rows - 1;
    if (a < 0) a = 0;
    return e[(int64_t)a * L->cols + k];
}

/* display size within a box, keeping the layer's physical aspect */
static void layer_size(const cg_layer *L, int box, int *w, int *h) {
    double pw = L->binning == CG_BIN_POLAR ? 1 : L->cols * (double)L->cell_w;
    double ph = L->binning == CG_BIN_POLAR ? 1 : L->rows * (double)L->cell_h;
    double s = box / fmax(pw, ph);
    *w = (int)fmax(6, lrint(pw * s));
    *h = (int)fmax(6, lrint(ph * s));
}

static void sb_layer_image(sbuf *b, const cg_geometry *g, int l, const double *e, double vmax, int box,
                           const char *title) {
    const cg_layer *L = &g->layer[l];
    layer_img c = {g, l, e, 64};
    int dw, dh;
    layer_size(L, box, &dw, &dh);
    if (L->binning == CG_BIN_POLAR) sb_image(b, c.res, c.res, layer_value, &c, vmax, dw, dh, title);
    else sb_image(b, L->cols, L->rows, layer_value, &c, vmax, dw, dh, title);
}

static double layer_max(const cg_geometry *g, int l, const double *e) {
    double m = 0;
    for (int64_t i = g->layer_offset[l]; i < g->layer_offset[l + 1]; i++) m = fmax(m, e[i]);
    return m;
}

/* the 2-D projections of a regular Cartesian grid: front (x–y), top (x–z), side (y–z) */
typedef struct {
    const cg_geometry *g;
    const double *e;
    int view; /* 0: x right, y up; 1: z right, x up; 2: z right, y up */
} proj_img;

static double proj_value(const void *vctx, int x, int y) {
    const proj_img *c = vctx;
    const cg_layer *L0 = &c->g->layer[0];
    int nl = c->g->nlayers, R = L0->rows, C = L0->cols;
    double s = 0;
    if (c->view == 0) {
        for (int l = 0; l < nl; l++) s += c->e[(int64_t)l * R * C + (int64_t)(R - 1 - y) * C + x];
    } else if (c->view == 1) {
        for (int r = 0; r < R; r++) s += c->e[(int64_t)x * R * C + (int64_t)r * C + (C - 1 - y)];
    } else {
        for (int k = 0; k < C; k++) s += c->e[(int64_t)x * R * C + (int64_t)(R - 1 - y) * C + k];
    }
    return s;
}

static bool cartesian_grid(const cg_geometry *g) {
    return cg_geometry_is_grid(g) && g->layer[0].binning == CG_BIN_CARTESIAN;
}

static void sb_projections(sbuf *b, const cg_geometry *g, const double *e, const char *what) {
    const cg_layer *L = &g->layer[0];
    int R = L->rows, C = L->cols, nl = g->nlayers;
    double depth = g->layer[nl - 1].z_mm + 0.5 * g->layer[nl - 1].depth_mm - (g->layer[0].z_mm - 0.5 * L->depth_mm);
    if (!(depth > 0)) depth = nl * L->cell_w;
    double vmax = 0;
    for (int v = 0; v < 3; v++) {
        proj_img c = {g, e, v};
        int w = v ? nl : C, h = v == 1 ? C : R;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) vmax = fmax(vmax, proj_value(&c, x, y));
    }
    static const char *names[3] = {"front (x-y)", "top (z-x)", "side (z-y)"};
    for (int v = 0; v < 3; v++) {
        proj_img c = {g, e, v};
        int w = v ? nl : C, h = v == 1 ? C : R;
        double pw = v ? depth : C * (double)L->cell_w, ph = v == 1 ? C * (double)L->cell_w : R * (double)L->cell_h;
        double s = 110 / fmax(pw, ph);
        char title[160];
        snprintf(title, sizeof title, "%s: %s projection", what, names[v]);
        sb_printf(b, "<span class=\"proj\">");
        sb_image(b, w, h, proj_value, &c, vmax, (int)fmax(8, lrint(pw * s)), (int)fmax(8, lrint(ph * s)), title);
        sb_printf(b, "<br>%s</span>", names[v]);
    }
}

/* --------------------------------------------------------------------- page ---- */

static const char *sp_class(double sp) {
    if (!isfinite(sp)) return "na";
    return sp <= 0.05 ? "good" : sp <= 0.2 ? "fair" : "poor";
}

static const char *auc_class(double auc) {
    if (!isfinite(auc)) return "na";
    double d = fabs(auc - 0.5);
    return d <= 0.05 ? "good" : d <= 0.2 ? "fair" : "poor";
}

static void sb_num(sbuf *b, double v, const char *fmt) {
    if (isfinite(v)) sb_printf(b, fmt, v);
    else sb_printf(b, "&ndash;");
}

static const char *CSS =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;margin:0;"
    "background:#fafafa}main{max-width:1240px;margin:0 auto;padding:18px 24px 60px}"
    "h1{font-size:22px;margin:6px 0 2px}h2{font-size:17px;margin:30px 0 8px;border-bottom:1px solid #ddd;"
    "padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}.sub{color:#666;font-size:13px}"
    ".cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}.card{background:#fff;border:1px solid #e2e2e2;"
    "border-radius:6px;padding:10px 14px;min-width:150px}.card .v{font-size:22px;font-weight:600}"
    ".card .k{color:#666;font-size:12px}.good{color:#1a7f37}.fair{color:#b26b00}.poor{color:#c62828}.na{color:#999}"
    "table{border-collapse:collapse;background:#fff;font-size:13px}td,th{border:1px solid #e2e2e2;padding:3px 8px;"
    "text-align:right}th{background:#f2f2f2;font-weight:600}td.l,th.l{text-align:left}"
    "td.good{background:#e8f5e9}td.fair{background:#fff4e0}td.poor{background:#fdecea}"
    ".warn{background:#fff8e1;border:1px solid #f0d58a;border-radius:6px;padding:8px 14px;margin:10px 0}"
    ".warn li{margin:2px 0}.grid{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;background:#fff;"
    "border:1px solid #e8e8e8;border-radius:4px}.plot text{font-family:inherit}.pt{font-size:12px;font-weight:600}"
    ".pn{font-size:10.5px;fill:#555}.tl{font-size:9.5px;fill:#444}.al{font-size:10.5px;fill:#333}"
    ".lg{font-size:10px;fill:#333}.fr{fill:none;stroke:#999;stroke-width:.8}.tk{stroke:#999;stroke-width:.8}"
    ".hr{fill:" COL_REF ";fill-opacity:.28;stroke:" COL_REF ";stroke-width:1}.hg{fill:none;stroke:" COL_GEN
    ";stroke-width:1.6}.pr{fill:" COL_REF "}.pg{fill:#fff;stroke:" COL_GEN ";stroke-width:1.4}.er{stroke:" COL_REF
    "}.eg{stroke:" COL_GEN ";stroke-width:1}.rp{fill:" COL_GEN "}.tri{fill:" COL_GEN "}"
    ".one{stroke:#888;stroke-dasharray:3 2}.nohist{display:flex;flex-direction:column;justify-content:center;"
    "align-items:center;color:#777;font-size:12px;text-align:center}img.px{image-rendering:pixelated;"
    "image-rendering:crisp-edges;border:1px solid #ddd;background:#fff}.layers{display:flex;flex-wrap:wrap;gap:8px}"
    ".lay{background:#fff;border:1px solid #e8e8e8;border-radius:4px;padding:4px;text-align:center;font-size:11px;"
    "color:#555}.lay img{display:block;margin:2px auto}.proj{display:inline-block;text-align:center;font-size:11px;"
    "color:#555;margin-right:10px;vertical-align:top}.ev{display:inline-block;vertical-align:top;background:#fff;"
    "border:1px solid #e8e8e8;border-radius:4px;padding:6px 10px;margin:0 6px 6px 0}.cbar{display:inline-block;width:180px;height:10px;vertical-align:middle;"
    "border:1px solid #ccc}p.help{color:#555;font-size:13px;max-width:980px}code{background:#f0f0f0;padding:0 3px;"
    "border-radius:3px}a{color:#2c5d8f}";

/* One legend per section of plots (the plots carry none, to keep them uncluttered). */
static void html_legend(sbuf *b) {
    sb_printf(b, "<p class=\"sub\"><svg width=\"250\" height=\"12\" style=\"vertical-align:middle\">"
                 "<rect x=\"1\" y=\"2\" width=\"16\" height=\"8\" class=\"hr\"/>"
                 "<text x=\"22\" y=\"10\" class=\"lg\">reference</text>"
                 "<line x1=\"90\" y1=\"6\" x2=\"106\" y2=\"6\" class=\"hg\"/>"
                 "<text x=\"111\" y=\"10\" class=\"lg\">generated</text>"
                 "<circle cx=\"182\" cy=\"6\" r=\"2\" class=\"rp\"/>"
                 "<text x=\"188\" y=\"10\" class=\"lg\">gen / ref</text></svg> "
                 "Lower panels: generated / reference with statistical errors; triangles are off the scale.</p>");
}

static void html_colorbar(sbuf *b) {
    sb_printf(b, "<span class=\"sub\">colour: log10(E / E<sub>max</sub>) from &minus;%g to 0 "
                 "<span class=\"cbar\" style=\"background:linear-gradient(to right",
              DECADES);
    for (int i = 0; i <= 8; i++) {
        uint8_t c[3];
        cg_colormap(i / 8.0, c);
        sb_printf(b, ",#%02x%02x%02x", c[0], c[1], c[2]);
    }
    sb_printf(b, ")\"></span> empty: light grey</span>");
}

static void html_summary(sbuf *b, const cg_eval_results *r) {
    const cg_eval_obs *er = &r->scalar[CG_OBS_E_RATIO];
    sb_printf(b, "<div class=\"cards\">");
    sb_printf(b, "<div class=\"card\"><div class=\"k\">separation power of E<sub>vis</sub>/E<sub>inc</sub></div>"
                 "<div class=\"v %s\">",
              sp_class(er->d.sp));
    sb_num(b, er->d.sp, "%.4f");
    sb_printf(b, "</div><div class=\"k\">0 = identical, 1 = disjoint</div></div>");
    for (int k = 0; k < 2; k++) {
        double auc = r->cls_ran[k] ? r->cls[k].auc : NAN;
        sb_printf(b, "<div class=\"card\"><div class=\"k\">classifier AUC, %s</div><div class=\"v %s\">",
                  k ? "voxels" : "high-level features", auc_class(auc));
        sb_num(b, auc, "%.4f");
        sb_printf(b, "</div><div class=\"k\">");
        if (r->cls_ran[k]) sb_printf(b, "JSD %.4f &middot; 0.5 = indistinguishable", r->cls[k].jsd);
        else sb_esc(b, r->cls_note[k]);
        sb_printf(b, "</div></div>");
    }
    double spmax = -1;
    int imax = -1;
    for (int i = 0; i < CG_OBS_NSCALAR; i++)
        if (isfinite(r->scalar[i].d.sp) && r->scalar[i].d.sp > spmax) spmax = r->scalar[i].d.sp, imax = i;
    sb_printf(b, "<div class=\"card\"><div class=\"k\">largest separation power</div><div class=\"v %s\">",
              sp_class(imax >= 0 ? spmax : NAN));
    sb_num(b, imax >= 0 ? spmax : NAN, "%.4f");
    sb_printf(b, "</div><div class=\"k\">%s</div></div>", imax >= 0 ? r->scalar[imax].key : "&ndash;");
    sb_printf(b, "<div class=\"card\"><div class=\"k\">showers</div><div class=\"v\">%lld / %lld</div>"
                 "<div class=\"k\">reference / generated</div></div>",
              (long long)r->n[0], (long long)r->n[1]);
    sb_printf(b, "</div>");
    if (r->nwarnings) {
        sb_printf(b, "<div class=\"warn\"><b>%d warning%s</b><ul>", r->nwarnings, r->nwarnings > 1 ? "s" : "");
        for (int i = 0; i < r->nwarnings; i++) {
            sb_printf(b, "<li>");
            sb_esc(b, r->warnings[i]);
            sb_printf(b, "</li>");
        }
        sb_printf(b, "</ul></div>");
    }
}

static void html_obs_row(sbuf *b, const cg_eval_obs *o) {
    const cg_dist *d = &o->d;
    sb_printf(b, "<tr><td class=\"l\"><a href=\"#h-%s\">%s</a></td><td class=\"l\">", o->key, o->key);
    sb_esc(b, o->label);
    sb_printf(b, "</td><td class=\"l\">%s</td><td>", o->unit);
    sb_num(b, d->mean_ref, "%.5g");
    sb_printf(b, "</td><td>");
    sb_num(b, d->mean_gen, "%.5g");
    sb_printf(b, "</td><td class=\"%s\">", sp_class(d->sp));
    sb_num(b, d->sp, "%.4f");
    sb_printf(b, "</td><td>");
    sb_num(b, d->w1, "%.4g");
    sb_printf(b, "</td><td>");
    sb_num(b, d->ks, "%.4f");
    sb_printf(b, "</td><td class=\"l\">");
    sb_esc(b, d->note);
    sb_printf(b, "</td></tr>");
}

static void html_table(sbuf *b, const cg_eval_results *r) {
    sb_printf(b, "<table><tr><th class=\"l\">key</th><th class=\"l\">observable</th><th class=\"l\">unit</th>"
                 "<th>mean ref</th><th>mean gen</th><th>SP</th><th>W1</th><th>KS</th><th class=\"l\">note</th></tr>");
    for (int i = 0; i < CG_OBS_NSCALAR; i++) html_obs_row(b, &r->scalar[i]);
    html_obs_row(b, &r->cells);
    sb_printf(b, "</table>");
    sb_printf(b, "<p class=\"help\">SP: CaloChallenge's separation power on the histograms "
                 "(<span class=\"good\">&le; 0.05</span>, <span class=\"fair\">&le; 0.2</span>, "
                 "<span class=\"poor\">&gt; 0.2</span>); W1: Wasserstein-1 distance in the observable's unit; "
                 "KS: Kolmogorov&ndash;Smirnov statistic. The per-layer energies are in <code>metrics.json</code> "
                 "and below.</p>");
}

static void html_bins(sbuf *b, const cg_eval_results *r) {
    static const int keys[] = {CG_OBS_E_RATIO, CG_OBS_E_VIS, CG_OBS_N_HITS, CG_OBS_E_MAX, CG_OBS_COG_Z,
                               CG_OBS_WIDTH_Z, CG_OBS_R_MEAN, CG_OBS_COG_Y, CG_OBS_ANGLE_Y, CG_OBS_E1_E9};
    sb_printf(b, "<p class=\"sub\">Bins: ");
    sb_esc(b, r->bins_rule);
    sb_printf(b, ". Separation power per bin (all metrics in <code>metrics.json</code>).</p>");
    if (!r->nbins) return;
    sb_printf(b, "<table><tr><th class=\"l\">bin</th><th>ref</th><th>gen</th>");
    for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) sb_printf(b, "<th>%s</th>", cg_obs_scalar(keys[j])->key);
    sb_printf(b, "</tr>");
    for (int i = 0; i < r->nbins; i++) {
        const cg_eval_bin *B = &r->bins[i];
        sb_printf(b, "<tr><td class=\"l\">");
        sb_esc(b, B->label);
        sb_printf(b, "</td><td>%lld</td><td>%lld</td>", (long long)B->n_ref, (long long)B->n_gen);
        for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
            double sp = B->computed ? B->obs[keys[j]].d.sp : NAN;
            sb_printf(b, "<td class=\"%s\">", sp_class(sp));
            sb_num(b, sp, "%.3f");
            sb_printf(b, "</td>");
        }
        sb_printf(b, "</tr>");
    }
    sb_printf(b, "</table>");
}

static void html_profiles(sbuf *b, const cg_eval_results *r) {
    int nl = r->nlayers;
    double *x = malloc((size_t)(nl > r->nrad ? nl : r->nrad) * sizeof(double));
    if (!x) {
        b->oom = 1;
        return;
    }
    for (int l = 0; l < nl; l++) x[l] = l;
    plot p = {"longitudinal profile", "mean energy per layer and shower (error: its standard error)", "layer",
              "MeV per shower", nl, NULL, x, {r->long_mean[0], r->long_mean[1]}, {r->long_sem[0], r->long_sem[1]},
              {NULL, NULL}, false, true, 440, 320};
    sb_printf(b, "<figure>");
    svg_plot(b, &p);
    sb_printf(b, "</figure>");
    for (int k = 0; k < r->nrad; k++) x[k] = 0.5 * (r->rad_edges[k] + r->rad_edges[k + 1]);
    plot q = {"radial profile", "mean energy per radial bin and shower, around the shower axis", "r [mm]",
              "MeV per shower", r->nrad, NULL, x, {r->rad_mean[0], r->rad_mean[1]}, {r->rad_sem[0], r->rad_sem[1]},
              {NULL, NULL}, false, true, 440, 320};
    sb_printf(b, "<figure>");
    svg_plot(b, &q);
    sb_printf(b, "</figure>");
    free(x);
}

/* The energy response: the mean visible energy (linearity) and its relative spread
 * (resolution) per bin of incident energy, both samples — the first thing a physicist asks
 * of a calorimeter, and of a model of one. */
static void html_response(sbuf *b, const cg_eval_results *r) {
    int n = 0;
    for (int i = 0; i < r->nbins; i++) n += r->bins[i].computed && !r->bins[i].has_theta;
    if (n < 2) {
        sb_printf(b, "<p class=\"sub\">Needs at least two incident-energy bins with enough showers.</p>");
        return;
    }
    double *x = malloc((size_t)n * 5 * sizeof(double) * 2);
    if (!x) {
        b->oom = 1;
        return;
    }
    double *mean[2] = {x + n, x + 2 * n}, *sem[2] = {x + 3 * n, x + 4 * n};
    double *res[2] = {x + 5 * n, x + 6 * n}, *rerr[2] = {x + 7 * n, x + 8 * n};
    int k = 0;
    for (int i = 0; i < r->nbins; i++) {
        const cg_eval_bin *B = &r->bins[i];
        if (!B->computed || B->has_theta) continue;
        const cg_dist *d = &B->obs[CG_OBS_E_VIS].d;
        x[k] = 0.5 * (B->e_lo + B->e_hi);
        double m[2] = {d->mean_ref, d->mean_gen}, sd[2] = {d->std_ref, d->std_gen};
        int64_t cnt[2] = {d->n_ref, d->n_gen};
        for (int s = 0; s < 2; s++) {
            double nn = cnt[s] > 1 ? (double)cnt[s] : 2;
            mean[s][k] = m[s];
            sem[s][k] = sd[s] / sqrt(nn);
            res[s][k] = m[s] > 0 ? sd[s] / m[s] : NAN;
            rerr[s][k] = m[s] > 0 ? res[s][k] / sqrt(2 * (nn - 1)) : NAN; /* error of a Gaussian's σ/μ */
        }
        k++;
    }
    plot p = {"linearity", "mean visible energy per bin of incident energy (error: its standard error)",
              "E_inc [GeV]", "E_vis [MeV]", n, NULL, x, {mean[0], mean[1]}, {sem[0], sem[1]}, {NULL, NULL},
              false, false, 440, 320};
    plot q = {"resolution", "σ(E_vis) / ⟨E_vis⟩ per bin of incident energy", "E_inc [GeV]", "σ / mean", n, NULL, x,
              {res[0], res[1]}, {rerr[0], rerr[1]}, {NULL, NULL}, false, false, 440, 320};
    sb_printf(b, "<div class=\"grid\"><figure>");
    svg_plot(b, &p);
    sb_printf(b, "</figure><figure>");
    svg_plot(b, &q);
    sb_printf(b, "</figure></div>");
    free(x);
}

static void html_average_images(sbuf *b, const cg_eval_results *r) {
    const cg_geometry *g = &r->info.geom;
    sb_printf(b, "<p>");
    html_colorbar(b);
    sb_printf(b, " &middot; in each layer: reference above, generated below, one colour scale per layer</p>");
    sb_printf(b, "<div class=\"layers\">");
    for (int l = 0; l < g->nlayers; l++) {
        double vmax = fmax(layer_max(g, l, r->avg[0]), layer_max(g, l, r->avg[1]));
        char t[96];
        sb_printf(b, "<div class=\"lay\">layer %d", l);
        for (int k = 0; k < 2; k++) {
            snprintf(t, sizeof t, "layer %d, %s mean shower", l, k ? "generated" : "reference");
            sb_layer_image(b, g, l, r->avg[k], vmax, 64, t);
        }
        sb_printf(b, "</div>");
    }
    sb_printf(b, "</div>");
}

static void html_single_events(sbuf *b, const cg_eval_results *r) {
    const cg_geometry *g = &r->info.geom;
    int64_t nc = g->ncells;
    double *e = malloc((size_t)nc * sizeof(double));
    if (!e) {
        b->oom = 1;
        return;
    }
    bool grid = cartesian_grid(g);
    sb_printf(b, "<p class=\"sub\">The first %d showers of each file (after the threshold); %s. ", r->nsingle[0],
              grid ? "energies summed along the third axis" : "one image per layer");
    html_colorbar(b);
    sb_printf(b, " (per shower)</p>");
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < r->nsingle[k]; i++) {
            const float *x = r->single[k] + (int64_t)i * nc;
            double tot = 0;
            for (int64_t j = 0; j < nc; j++) {
                e[j] = cg_obs_is_hit(x[j], r->threshold) ? (double)x[j] * g->to_mev : 0;
                tot += e[j];
            }
            sb_printf(b, "<div class=\"ev\"><b>%s #%d</b> <span class=\"sub\">E<sub>vis</sub> = %.4g MeV",
                      k ? "generated" : "reference", i, tot);
            for (int c = 0; c < r->ncond; c++) {
                sb_printf(b, " &middot; %s = %.4g %s", r->info.cond_name[c],
                          r->single_cond[k] ? r->single_cond[k][i * r->ncond + c] : NAN, r->info.cond_unit[c]);
            }
            sb_printf(b, "</span><br>");
            char what[48];
            snprintf(what, sizeof what, "%s #%d", k ? "generated" : "reference", i);
            if (grid) {
                sb_projections(b, g, e, what);
            } else {
                sb_printf(b, "<div class=\"layers\">");
                for (int l = 0; l < g->nlayers; l++) {
                    char t[96];
                    snprintf(t, sizeof t, "%s, layer %d", what, l);
                    sb_printf(b, "<div class=\"lay\">%d", l);
                    sb_layer_image(b, g, l, e, layer_max(g, l, e), 48, t);
                    sb_printf(b, "</div>");
                }
                sb_printf(b, "</div>");
            }
            sb_printf(b, "</div>");
        }
    free(e);
}

static void html_classifiers(sbuf *b, const cg_eval_results *r) {
    sb_printf(b, "<table><tr><th class=\"l\">inputs</th><th>AUC</th><th>JSD</th><th>AUC cal.</th><th>JSD cal.</th>"
                 "<th>accuracy</th><th>train / test / val</th><th>epochs (best)</th><th>network</th><th>s</th>"
                 "<th class=\"l\">features / note</th></tr>");
    for (int k = 0; k < 2; k++) {
        const cg_cls_result *c = &r->cls[k];
        sb_printf(b, "<tr><td class=\"l\">%s</td>", k ? "voxels" : "high-level");
        if (!r->cls_ran[k]) {
            sb_printf(b, "<td colspan=\"9\">&ndash;</td><td class=\"l\">");
            sb_esc(b, r->cls_note[k]);
            sb_printf(b, "</td></tr>");
            continue;
        }
        sb_printf(b, "<td class=\"%s\">%.4f</td><td>%.4f</td><td>", auc_class(c->auc), c->auc, c->jsd);
        sb_num(b, c->auc_cal, "%.4f");
        sb_printf(b, "</td><td>");
        sb_num(b, c->jsd_cal, "%.4f");
        sb_printf(b, "</td><td>%.4f</td><td>%lld / %lld / %lld</td><td>%d (%d)</td><td>%d&rarr;%d&times;%d&rarr;1"
                     "</td><td>%.1f</td><td class=\"l\">",
                  c->accuracy, (long long)c->n_train, (long long)c->n_test, (long long)c->n_val, c->epochs,
                  c->best_epoch, c->dim, r->cls_cfg[k].width, r->cls_cfg[k].layers + 1, c->seconds);
        sb_esc(b, r->cls_features[k]);
        sb_printf(b, "</td></tr>");
    }
    sb_printf(b, "</table><p class=\"help\">A fully connected network (CaloChallenge's DNN at a reduced width) is "
                 "trained to tell reference (label 1) from generated (label 0) showers; 60/20/20 %% train/test/"
                 "validation split, the epoch with the best test accuracy is kept, numbers are on the validation "
                 "split. AUC 0.5 and JSD 0 mean the samples cannot be told apart; AUC 1 means they always can. "
                 "&ldquo;cal.&rdquo;: after isotonic calibration on the test split.</p>");
}

static cg_status write_file(const char *path, const char *s, size_t n) {
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return cg_set_error(CG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    size_t w = fwrite(s, 1, n, f);
    int err = errno, bad = w != n || ferror(f);
    if (fclose(f) != 0) bad = 1, err = errno;
    if (bad) {
        remove(tmp);
        return cg_set_error(CG_ERR_IO, "cannot write %s: %s", path, strerror(err ? err : EIO));
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        remove(tmp);
        return cg_set_error(CG_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(err));
    }
    return CG_OK;
}

cg_status cg_report_write_html(const cg_eval_results *r, const char *path) {
    sbuf b = {0};
    const cg_geometry *g = &r->info.geom;
    sb_printf(&b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>calograd evaluation</title>"
                  "<style>%s</style></head><body><main>",
              CSS);
    sb_printf(&b, "<h1>Shower evaluation: generated vs reference</h1><div class=\"sub\">reference <code>");
    sb_esc(&b, r->name[0]);
    sb_printf(&b, "</code> (%lld of %lld showers) &middot; generated <code>", (long long)r->n[0],
              (long long)r->n_file[0]);
    sb_esc(&b, r->name[1]);
    sb_printf(&b, "</code> (%lld of %lld)<br>geometry <b>", (long long)r->n[1], (long long)r->n_file[1]);
    sb_esc(&b, g->name);
    sb_printf(&b, "</b>: %d layers, %lld cells, energies in %s &middot; particle ", g->nlayers, (long long)g->ncells,
              g->energy_unit);
    sb_esc(&b, r->info.particle[0] ? r->info.particle : "?");
    sb_printf(&b, " &middot; hit threshold %.4g MeV (", r->threshold_mev);
    sb_esc(&b, r->threshold_source);
    sb_printf(&b, ")</div>");

    sb_printf(&b, "<h2 id=\"summary\">Summary</h2>");
    html_summary(&b, r);
    html_table(&b, r);

    sb_printf(&b, "<h2>Classifier test</h2>");
    html_classifiers(&b, r);

    sb_printf(&b, "<h2 id=\"observables\">Observables</h2>");
    html_legend(&b);
    sb_printf(&b, "<div class=\"grid\">");
    for (int i = 0; i < CG_OBS_NSCALAR; i++) plot_obs(&b, &r->scalar[i], 300, 250, false);
    sb_printf(&b, "</div>");

    if (r->has_energy) {
        sb_printf(&b, "<h2>Energy response</h2>");
        html_legend(&b);
        html_response(&b, r);
    }

    sb_printf(&b, "<h2>Profiles</h2>");
    html_legend(&b);
    sb_printf(&b, "<div class=\"grid\">");
    html_profiles(&b, r);
    sb_printf(&b, "</div>");

    sb_printf(&b, "<h2>Cell energy spectrum</h2>");
    html_legend(&b);
    sb_printf(&b, "<div class=\"grid\">");
    plot_obs(&b, &r->cells, 560, 340, true);
    sb_printf(&b, "</div><p class=\"help\">Energies of all hits (cells above the threshold), log bins as "
                  "CaloChallenge's voxel histogram; the peak near one MIP");
    if (g->mip_mev > 0) sb_printf(&b, " (%.3g MeV)", g->mip_mev);
    sb_printf(&b, " comes from single charged particles crossing a cell.</p>");

    sb_printf(&b, "<h2>Energy per layer</h2>");
    html_legend(&b);
    sb_printf(&b, "<div class=\"grid\">");
    for (int l = 0; l < r->nlayers; l++) plot_obs(&b, &r->layer[l], 250, 200, true);
    sb_printf(&b, "</div>");

    sb_printf(&b, "<h2>Average shower per layer</h2>");
    html_average_images(&b, r);

    sb_printf(&b, "<h2>Single showers</h2>");
    html_single_events(&b, r);

    sb_printf(&b, "<h2>Per conditioning bin</h2>");
    html_bins(&b, r);

    if (r->ncond) {
        sb_printf(&b, "<h2>Conditioning</h2><p class=\"sub\">The distributions the showers were made for; they "
                      "should agree.</p><div class=\"grid\">");
        for (int k = 0; k < r->ncond; k++) plot_obs(&b, &r->cond[k], 300, 250, false);
        sb_printf(&b, "</div>");
    }
    sb_printf(&b, "<p class=\"help\">Made by <code>calograd evaluate</code> in %.1f s. Every number is in "
                  "<code>metrics.json</code> (keys in docs/metrics.md); the histograms are in "
                  "<code>histograms/</code> and the per-shower observables in <code>observables_*.csv</code>, "
                  "so that all of it can be recomputed.</p></main></body></html>\n",
              r->seconds_total);
    if (b.oom) {
        free(b.s);
        return cg_set_error(CG_ERR_NOMEM, "report: out of memory while writing %s", path);
    }
    cg_status st = write_file(path, b.s, b.n);
    free(b.s);
    return st;
}
