/* models/config.c — key = value configurations with typed, checked options (see config.h). */
#include "models/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cg_cfg_entry *find(const cg_config *c, const char *key) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->v[i].key, key) == 0) return &c->v[i];
    return NULL;
}

void cg_config_set(cg_config *c, const char *key, const char *value, const char *origin) {
    cg_cfg_entry *e = find(c, key);
    if (!e) {
        if (c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 32;
            c->v = cg_xrealloc(c->v, (size_t)c->cap * sizeof *c->v);
        }
        e = &c->v[c->n++];
        snprintf(e->key, sizeof e->key, "%s", key);
    }
    snprintf(e->value, sizeof e->value, "%s", value);
    snprintf(e->origin, sizeof e->origin, "%s", origin);
}

const char *cg_config_get(const cg_config *c, const char *key) {
    cg_cfg_entry *e = find(c, key);
    return e ? e->value : NULL;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static cg_status load_lines(cg_config *c, const char *text, const char *name, bool keep_flags, bool is_file) {
    int lineno = 0;
    const char *p = text;
    cg_config seen = {0}; /* keys this text sets: a repeat is an error */
    cg_status st = CG_OK;
    while (*p && st == CG_OK) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[1024];
        lineno++;
        if (len >= sizeof line) {
            st = cg_set_error(CG_ERR_INVALID, "%s line %d: line too long", name, lineno);
            break;
        }
        memcpy(line, p, len);
        line[len] = 0;
        p = nl ? nl + 1 : p + len;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            st = cg_set_error(CG_ERR_INVALID, "%s line %d: expected 'key = value', got '%s'", name, lineno, s);
            break;
        }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        if (!*k || strlen(k) >= sizeof c->v[0].key) {
            st = cg_set_error(CG_ERR_INVALID, "%s line %d: bad key '%s'", name, lineno, k);
            break;
        }
        if (find(&seen, k)) {
            st = cg_set_error(CG_ERR_INVALID, "%s line %d: '%s' is set twice", name, lineno, k);
            break;
        }
        cg_config_set(&seen, k, v, "");
        cg_cfg_entry *prev = find(c, k);
        if (keep_flags && prev && strcmp(prev->origin, "flag") == 0) continue;
        char origin[64];
        if (is_file) snprintf(origin, sizeof origin, "config:%.40s:%d", name, lineno);
        else snprintf(origin, sizeof origin, "%.60s", name);
        cg_config_set(c, k, v, origin);
    }
    cg_config_free(&seen);
    return st;
}

cg_status cg_config_load_file(cg_config *c, const char *path, bool keep_flags) {
    FILE *f = fopen(path, "rb");
    if (!f) return cg_set_error(CG_ERR_IO, "cannot open config file %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > (1u << 24)) {
                free(buf);
                fclose(f);
                return cg_set_error(CG_ERR_IO, "config file %s is too large", path);
            }
            buf = cg_xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return cg_set_error(CG_ERR_IO, "cannot read config file %s", path);
    }
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        free(buf);
        return cg_set_error(CG_ERR_IO, "config file %s is not a text file", path);
    }
    cg_status st = load_lines(c, buf, path, keep_flags, true);
    free(buf);
    return st;
}

cg_status cg_config_load_text(cg_config *c, const char *text, const char *origin) {
    return load_lines(c, text, origin, false, false);
}

static bool parses(cg_cfg_type t, const char *v) {
    char *end;
    errno = 0;
    switch (t) {
    case CG_CFG_INT: {
        long long x = strtoll(v, &end, 10);
        (void)x;
        return !errno && end != v && *end == 0;
    }
    case CG_CFG_FLOAT: {
        double x = strtod(v, &end);
        return !errno && end != v && *end == 0 && isfinite(x);
    }
    case CG_CFG_BOOL:
        return !strcmp(v, "true") || !strcmp(v, "false") || !strcmp(v, "1") || !strcmp(v, "0") ||
               !strcmp(v, "yes") || !strcmp(v, "no");
    default: return true;
    }
}

static const char *type_name(cg_cfg_type t) {
    switch (t) {
    case CG_CFG_INT: return "an integer";
    case CG_CFG_FLOAT: return "a number";
    case CG_CFG_BOOL: return "true or false";
    default: return "text";
    }
}

cg_status cg_config_resolve(cg_config *c, const cg_cfg_spec *const *tables, int ntables) {
    for (int i = 0; i < c->n; i++) {
        const cg_cfg_spec *spec = NULL;
        for (int t = 0; t < ntables && !spec; t++)
            for (const cg_cfg_spec *s = tables[t]; s->key && !spec; s++)
                if (strcmp(s->key, c->v[i].key) == 0) spec = s;
        if (!spec)
            return cg_set_error(CG_ERR_INVALID, "unknown option '%s' (from %s); see calograd train --help", c->v[i].key,
                                c->v[i].origin);
        if (!parses(spec->type, c->v[i].value))
            return cg_set_error(CG_ERR_INVALID, "option '%s' (from %s): '%s' is not %s", c->v[i].key, c->v[i].origin,
                                c->v[i].value, type_name(spec->type));
    }
    for (int t = 0; t < ntables; t++)
        for (const cg_cfg_spec *s = tables[t]; s->key; s++) {
            if (find(c, s->key)) continue;
            if (!s->def) return cg_set_error(CG_ERR_INVALID, "option '%s' is required (%s)", s->key, s->help);
            cg_config_set(c, s->key, s->def, "default");
        }
    return CG_OK;
}

int64_t cg_config_int(const cg_config *c, const char *key) {
    const char *v = cg_config_get(c, key);
    CG_ASSERT_MSG(v, key);
    return strtoll(v, NULL, 10);
}

double cg_config_float(const cg_config *c, const char *key) {
    const char *v = cg_config_get(c, key);
    CG_ASSERT_MSG(v, key);
    return strtod(v, NULL);
}

bool cg_config_bool(const cg_config *c, const char *key) {
    const char *v = cg_config_get(c, key);
    CG_ASSERT_MSG(v, key);
    return !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes");
}

const char *cg_config_str(const cg_config *c, const char *key) {
    const char *v = cg_config_get(c, key);
    CG_ASSERT_MSG(v, key);
    return v;
}

static int by_key(const void *a, const void *b) {
    return strcmp(((const cg_cfg_entry *)a)->key, ((const cg_cfg_entry *)b)->key);
}

char *cg_config_text(const cg_config *c) {
    cg_cfg_entry *sorted = cg_xmalloc((size_t)(c->n ? c->n : 1) * sizeof *sorted);
    memcpy(sorted, c->v, (size_t)c->n * sizeof *sorted);
    qsort(sorted, (size_t)c->n, sizeof *sorted, by_key);
    size_t cap = 64 + (size_t)c->n * (sizeof sorted->key + sizeof sorted->value + 4), len = 0;
    char *out = cg_xmalloc(cap);
    out[0] = 0;
    for (int i = 0; i < c->n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s = %s\n", sorted[i].key, sorted[i].value);
    free(sorted);
    return out;
}

void cg_config_print_help(const cg_cfg_spec *spec, const char *indent) {
    for (const cg_cfg_spec *s = spec; s->key; s++)
        printf("%s%-22s %s (default %s)\n", indent, s->key, s->help, s->def ? s->def : "required");
}

void cg_config_free(cg_config *c) {
    free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
}
