/*
 * tools/cmd_info.c — `calograd info FILE`: what a .cvox file holds.
 *
 *   calograd info photons.cvox              header, geometry, events, conditioning ranges,
 *                                           occupancy, energy sums, compression ratio
 *   calograd info photons.cvox --event 17   one event: its conditioning and non-zero cells
 *   calograd info photons.cvox --json       the same for machines
 *   calograd info broken.cvox --salvage     read an unfinished file up to its last complete chunk
 *
 * The summary decodes every event (a full pass over the file); the header alone is printed
 * with --header.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calograd.h"
#include "cli.h"
#include "commands.h"
#include "io/cvox.h"

/* option tables name only the fields they use */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* A float for JSON: NaN and infinities are not JSON numbers. */
static void json_num(double v) {
    if (isfinite(v)) printf("%.9g", v);
    else printf("null");
}

static void print_geometry_text(const cg_geometry *g) {
    const cg_layer *L = &g->layer[0];
    if (cg_geometry_is_grid(g) && L->binning == CG_BIN_CARTESIAN)
        printf("geometry     %s: %d layers x %d rows x %d cols = %lld cells, %g x %g mm cells\n", g->name, g->nlayers,
               L->rows, L->cols, (long long)g->ncells, (double)L->cell_w, (double)L->cell_h);
    else
        printf("geometry     %s: %d layers, %lld cells\n", g->name, g->nlayers, (long long)g->ncells);
    if (!cg_geometry_is_grid(g) || L->binning == CG_BIN_POLAR)
        for (int l = 0; l < g->nlayers; l++) {
            const cg_layer *M = &g->layer[l];
            printf("  layer %-3d  %d x %d %s", l, M->rows, M->cols, M->binning == CG_BIN_POLAR ? "(alpha x r)" : "");
            if (M->binning == CG_BIN_POLAR) printf(", r edges %g..%g mm", (double)M->r_edges[0], (double)M->r_edges[M->cols]);
            else printf(", %g x %g mm cells", (double)M->cell_w, (double)M->cell_h);
            printf(", z %g mm\n", (double)M->z_mm);
        }
    printf("cell energy  %s", g->energy_unit);
    if (g->to_mev != 1.0f) printf(" (x %g = MeV)", (double)g->to_mev);
    if (g->mip_mev > 0) printf(", MIP %g MeV", (double)g->mip_mev);
    printf("\n");
}

static void print_geometry_json(const cg_geometry *g) {
    printf("\"geometry\": {\"name\": ");
    json_str(g->name);
    printf(", \"ncells\": %lld, \"energy_unit\": ", (long long)g->ncells);
    json_str(g->energy_unit);
    printf(", \"to_mev\": %g, \"mip_mev\": %g, \"grid\": %s, \"layers\": [", (double)g->to_mev, (double)g->mip_mev,
           cg_geometry_is_grid(g) ? "true" : "false");
    for (int l = 0; l < g->nlayers; l++) {
        const cg_layer *L = &g->layer[l];
        printf("%s{\"rows\": %d, \"cols\": %d, \"binning\": \"%s\", \"z_mm\": %g, \"depth_mm\": %g", l ? ", " : "",
               L->rows, L->cols, L->binning == CG_BIN_POLAR ? "polar" : "cartesian", (double)L->z_mm,
               (double)L->depth_mm);
        if (L->binning == CG_BIN_POLAR) {
            printf(", \"r_edges\": [");
            for (int k = 0; k <= L->cols; k++) printf("%s%g", k ? ", " : "", (double)L->r_edges[k]);
            printf("]");
        } else {
            printf(", \"cell_w\": %g, \"cell_h\": %g", (double)L->cell_w, (double)L->cell_h);
        }
        printf("}");
    }
    printf("]}");
}

/* The cell (layer, row, col) of a dense index. */
static void cell_of(const cg_geometry *g, int64_t i, int *l, int *r, int *c) {
    int k = 0;
    while (k + 1 < g->nlayers && g->layer_offset[k + 1] <= i) k++;
    int64_t j = i - g->layer_offset[k];
    *l = k;
    *r = (int)(j / g->layer[k].cols);
    *c = (int)(j % g->layer[k].cols);
}

static int dump_event(cg_cvox_reader *rd, int64_t ev, bool json) {
    const cg_cvox_info *info = cg_cvox_info_of(rd);
    const cg_geometry *g = &info->geom;
    if (ev < 0 || ev >= info->nevents)
        return cli_fail("info", "--event %lld: the file has %lld events (0..%lld)", (long long)ev,
                        (long long)info->nevents, (long long)info->nevents - 1);
    float *x = malloc((size_t)g->ncells * sizeof(float)), cond[CG_CVOX_MAX_COND];
    if (!x) return cli_fail("info", "out of memory for one event of %lld cells", (long long)g->ncells);
    if (cg_cvox_read(rd, ev, 1, x, cond)) {
        free(x);
        return cli_fail_lib("info", NULL);
    }
    double sum = 0;
    int64_t nz = 0;
    for (int64_t i = 0; i < g->ncells; i++)
        if (x[i] != 0) sum += x[i], nz++;
    if (json) {
        printf("{\"event\": %lld, \"cond\": {", (long long)ev);
        for (int k = 0; k < info->ncond; k++) {
            printf("%s", k ? ", " : "");
            json_str(info->cond_name[k]);
            printf(": ");
            json_num(cond[k]);
        }
        printf("}, \"energy_sum\": ");
        json_num(sum);
        printf(", \"cells\": [");
        int first = 1;
        for (int64_t i = 0; i < g->ncells; i++) {
            if (x[i] == 0) continue;
            int l, r, c;
            cell_of(g, i, &l, &r, &c);
            printf("%s[%d, %d, %d, ", first ? "" : ", ", l, r, c);
            json_num(x[i]);
            printf("]");
            first = 0;
        }
        printf("]}\n");
    } else {
        printf("event %lld:", (long long)ev);
        for (int k = 0; k < info->ncond; k++) printf(" %s = %g %s", info->cond_name[k], (double)cond[k], info->cond_unit[k]);
        printf("\n%lld non-zero cells, sum %.6g %s\n%6s %5s %5s  %s\n", (long long)nz, sum, g->energy_unit, "layer",
               "row", "col", "energy");
        for (int64_t i = 0; i < g->ncells; i++) {
            if (x[i] == 0) continue;
            int l, r, c;
            cell_of(g, i, &l, &r, &c);
            printf("%6d %5d %5d  %.9g\n", l, r, c, (double)x[i]);
        }
    }
    free(x);
    return 0;
}

typedef struct { double min, max, sum; } stat;
static void stat_add(stat *s, double v) {
    if (v < s->min) s->min = v;
    if (v > s->max) s->max = v;
    s->sum += v;
}

int cmd_info(int argc, char **argv) {
    int64_t event = -1;
    bool json = false, salvage = false, header_only = false;
    cli_opt opts[] = {
        {"--event", "N", "print event N: its conditioning values and non-zero cells", CLI_INT64, &event},
        {"--json", NULL, "machine-readable output (JSON)", CLI_FLAG, &json},
        {"--header", NULL, "only the header and index (no pass over the events)", CLI_FLAG, &header_only},
        {"--salvage", NULL, "read a file whose writer did not finish, up to its last complete chunk", CLI_FLAG,
         &salvage},
        {0}};
    const char *pos[1];
    int npos = 0;
    int rc = cli_parse_pos("info",
                           "Describe a .cvox file: header, geometry, number of events, conditioning ranges, "
                           "occupancy, energy sums and compression ratio; or dump one event.",
                           opts, argc, argv, pos, 1, &npos, "FILE");
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    if (npos != 1) return cli_fail("info", "give one .cvox file (see calograd info --help)");
    int64_t dropped = 0;
    cg_cvox_reader *rd = salvage ? cg_cvox_open_salvage(pos[0], &dropped) : cg_cvox_open(pos[0]);
    if (!rd) return cli_fail_lib("info", NULL);
    if (opts[0].seen) {
        rc = dump_event(rd, event, json);
        cg_cvox_close(rd);
        return rc;
    }
    const cg_cvox_info *info = cg_cvox_info_of(rd);
    const cg_geometry *g = &info->geom;
    int64_t N = info->nevents, nch = cg_cvox_nchunks(rd), size = cg_cvox_file_size(rd);
    stat cond[CG_CVOX_MAX_COND], hits = {INFINITY, -INFINITY, 0}, esum = {INFINITY, -INFINITY, 0};
    for (int k = 0; k < CG_CVOX_MAX_COND; k++) cond[k] = (stat){INFINITY, -INFINITY, 0};
    int64_t scanned = 0;
    if (!header_only) {
        float *x = malloc((size_t)g->ncells * sizeof(float)), cv[CG_CVOX_MAX_COND];
        if (!x) {
            cg_cvox_close(rd);
            return cli_fail("info", "out of memory for one event of %lld cells", (long long)g->ncells);
        }
        for (int64_t ch = 0; ch < nch; ch++) {
            cg_cvox_chunk *c = cg_cvox_chunk_load(rd, ch);
            if (!c) {
                free(x);
                cg_cvox_close(rd);
                return cli_fail_lib("info", NULL);
            }
            int64_t first, n;
            cg_cvox_chunk_span(rd, ch, &first, &n);
            for (int64_t k = 0; k < n; k++) {
                if (cg_cvox_chunk_event(c, k, x, cv)) {
                    cg_cvox_chunk_free(c);
                    free(x);
                    cg_cvox_close(rd);
                    return cli_fail_lib("info", NULL);
                }
                double s = 0;
                for (int64_t i = 0; i < g->ncells; i++) s += x[i];
                stat_add(&esum, s);
                stat_add(&hits, (double)cg_cvox_chunk_nhits(c, k));
                for (int q = 0; q < info->ncond; q++) stat_add(&cond[q], cv[q]);
                scanned++;
            }
            cg_cvox_chunk_free(c);
        }
        free(x);
    }
    double dense_bytes = (double)N * (double)g->ncells * 4.0;
    double ratio = size > 0 ? dense_bytes / (double)size : 0;
    double bph = hits.sum > 0 ? (double)size / hits.sum : 0;
    if (json) {
        printf("{\"file\": ");
        json_str(pos[0]);
        printf(", \"bytes\": %lld, \"particle\": ", (long long)size);
        json_str(info->particle);
        printf(", \"source\": ");
        json_str(info->source);
        printf(", \"events\": %lld, \"chunks\": %lld, ", (long long)N, (long long)nch);
        if (salvage) printf("\"salvaged_dropped_bytes\": %lld, ", (long long)dropped);
        print_geometry_json(g);
        printf(", \"conditioning\": [");
        for (int q = 0; q < info->ncond; q++) {
            printf("%s{\"name\": ", q ? ", " : "");
            json_str(info->cond_name[q]);
            printf(", \"unit\": ");
            json_str(info->cond_unit[q]);
            if (scanned) {
                printf(", \"min\": ");
                json_num(cond[q].min);
                printf(", \"mean\": ");
                json_num(cond[q].sum / scanned);
                printf(", \"max\": ");
                json_num(cond[q].max);
            }
            printf("}");
        }
        printf("]");
        if (scanned) {
            printf(", \"hits_per_event\": {\"min\": %.0f, \"mean\": %.3f, \"max\": %.0f}, \"occupancy\": %.6g",
                   hits.min, hits.sum / scanned, hits.max, hits.sum / scanned / (double)g->ncells);
            printf(", \"energy_sum\": {\"min\": ");
            json_num(esum.min);
            printf(", \"mean\": ");
            json_num(esum.sum / scanned);
            printf(", \"max\": ");
            json_num(esum.max);
            printf("}, \"compression_ratio\": %.3f, \"bytes_per_hit\": %.3f", ratio, bph);
        }
        printf("}\n");
    } else {
        printf("file         %s (%.2f MB, .cvox 1.x)\n", pos[0], (double)size / 1e6);
        if (salvage && dropped) printf("salvaged     %lld bytes after the last complete chunk ignored\n", (long long)dropped);
        printf("particle     %s\nsource       %s\n", info->particle[0] ? info->particle : "-",
               info->source[0] ? info->source : "-");
        print_geometry_text(g);
        printf("events       %lld in %lld chunks\n", (long long)N, (long long)nch);
        if (info->ncond) printf("conditioning\n");
        for (int q = 0; q < info->ncond; q++) {
            printf("  %-10s [%s]", info->cond_name[q], info->cond_unit[q]);
            if (scanned) printf("  min %-10.6g mean %-10.6g max %.6g", cond[q].min, cond[q].sum / scanned, cond[q].max);
            printf("\n");
        }
        if (scanned) {
            printf("occupancy    %.1f non-zero cells per event (%.3g%%), min %.0f, max %.0f\n", hits.sum / scanned,
                   100.0 * hits.sum / scanned / (double)g->ncells, hits.min, hits.max);
            printf("energy sum   mean %.6g %s, min %.6g, max %.6g\n", esum.sum / scanned, g->energy_unit, esum.min,
                   esum.max);
            printf("compression  %.1fx against dense float32 (%.2f MB); %.2f bytes per non-zero cell\n", ratio,
                   dense_bytes / 1e6, bph);
        }
    }
    cg_cvox_close(rd);
    return 0;
}
