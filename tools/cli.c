/* tools/cli.c — option parsing and small helpers shared by the subcommands (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calograd.h"

volatile int cli_interrupted;

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "calograd %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 2;
}

int cli_fail_lib(const char *cmd, const char *what) {
    cg_status st = cg_last_status();
    fflush(stdout);
    fprintf(stderr, "calograd %s: %s%s%s\n", cmd, what ? what : "", what && *what ? ": " : "",
            cg_last_error()[0] ? cg_last_error() : "failed");
    return (st == CG_ERR_DEVICE || st == CG_ERR_NUMERIC) ? 1 : 2;
}

bool cli_is_tty(void) { return isatty(2); }

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long cli_file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    long size = 0;
    if (f) {
        if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
        fclose(f);
    }
    return size < 0 ? 0 : size;
}

static void on_signal(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ------------------------------------------------------------- parsing ---- */

static bool parse_int64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_value(cli_opt *o, const char *v) {
    int64_t i;
    switch (o->type) {
    case CLI_STR: *(const char **)o->dst = v; return true;
    case CLI_INT:
        if (!parse_int64(v, &i) || i < -2147483647 || i > 2147483647) return false;
        *(int *)o->dst = (int)i;
        return true;
    case CLI_INT64: return parse_int64(v, (int64_t *)o->dst);
    case CLI_FLOAT: return parse_double(v, (double *)o->dst);
    case CLI_INT3: {
        int *d = o->dst;
        char buf[128];
        if (strlen(v) >= sizeof buf) return false;
        strcpy(buf, v);
        char *parts[4];
        int n = 0;
        for (char *tok = strtok(buf, ","); tok && n < 4; tok = strtok(NULL, ",")) parts[n++] = tok;
        if (n != 1 && n != 3) return false;
        for (int k = 0; k < 3; k++) {
            if (!parse_int64(parts[n == 1 ? 0 : k], &i) || i < -1000000 || i > 1000000) return false;
            d[k] = (int)i;
        }
        return true;
    }
    case CLI_RANGE: {
        double *r = o->dst;
        const char *colon = strchr(v, ':');
        if (!colon) {
            if (!parse_double(v, &r[0])) return false;
            r[1] = r[0];
            return true;
        }
        char a[64], b[64];
        size_t la = (size_t)(colon - v);
        if (la == 0 || la >= sizeof a || strlen(colon + 1) >= sizeof b) return false;
        memcpy(a, v, la);
        a[la] = 0;
        strcpy(b, colon + 1);
        return parse_double(a, &r[0]) && parse_double(b, &r[1]) && r[0] <= r[1];
    }
    case CLI_CHOICE: {
        size_t lv = strlen(v);
        for (const char *c = o->choices; c && *c;) {
            const char *bar = strchr(c, '|');
            size_t lc = bar ? (size_t)(bar - c) : strlen(c);
            if (lc == lv && strncmp(c, v, lv) == 0) {
                *(const char **)o->dst = v;
                return true;
            }
            c = bar ? bar + 1 : c + lc;
        }
        return false;
    }
    case CLI_FLAG: return true;
    }
    return false;
}

static const char *type_hint(const cli_opt *o) {
    switch (o->type) {
    case CLI_INT:
    case CLI_INT64: return "an integer";
    case CLI_FLOAT: return "a number";
    case CLI_INT3: return "one integer or three separated by commas (d,h,w)";
    case CLI_RANGE: return "a number or a range A:B with A <= B";
    case CLI_CHOICE: return o->choices;
    default: return "a value";
    }
}

static void print_help(const char *cmd, const char *summary, const cli_opt *opts, const char *pos_usage) {
    printf("usage: calograd %s%s%s [options]\n\n%s\n\noptions:\n", cmd, pos_usage ? " " : "",
           pos_usage ? pos_usage : "", summary);
    for (const cli_opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-24s %s%s\n", left, o->help ? o->help : "", o->required ? " (required)" : "");
    }
    printf("  %-24s %s\n", "-h, --help", "show this help");
}

int cli_parse_pos(const char *cmd, const char *summary, cli_opt *opts, int argc, char **argv,
                  const char **pos, int max_pos, int *npos, const char *pos_usage) {
    int np = 0;
    for (cli_opt *o = opts; o->name; o++) o->seen = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help(cmd, summary, opts, pos_usage);
            return CLI_HELP;
        }
        if (a[0] != '-' || a[1] == 0 || (a[1] >= '0' && a[1] <= '9')) { /* positional */
            if (np >= max_pos) {
                cli_fail(cmd, "unexpected argument '%s' (see calograd %s --help)", a, cmd);
                return CLI_ERROR;
            }
            pos[np++] = a;
            continue;
        }
        /* --name=value or --name value */
        char name[64];
        const char *eq = strchr(a, '=');
        size_t ln = eq ? (size_t)(eq - a) : strlen(a);
        if (ln >= sizeof name) ln = sizeof name - 1;
        memcpy(name, a, ln);
        name[ln] = 0;
        cli_opt *o = NULL;
        for (cli_opt *p = opts; p->name; p++)
            if (strcmp(p->name, name) == 0) o = p;
        if (!o) {
            cli_fail(cmd, "unknown option '%s' (see calograd %s --help)", name, cmd);
            return CLI_ERROR;
        }
        if (o->type == CLI_FLAG) {
            if (eq) {
                cli_fail(cmd, "option %s takes no value", name);
                return CLI_ERROR;
            }
            *(bool *)o->dst = true;
            o->seen = true;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            cli_fail(cmd, "option %s needs a value (%s)", name, type_hint(o));
            return CLI_ERROR;
        }
        if (!parse_value(o, v)) {
            cli_fail(cmd, "option %s: '%s' is not %s", name, v, type_hint(o));
            return CLI_ERROR;
        }
        o->seen = true;
    }
    for (cli_opt *o = opts; o->name; o++)
        if (o->required && !o->seen) {
            cli_fail(cmd, "missing required option %s%s%s (see calograd %s --help)", o->name,
                     o->metavar ? " " : "", o->metavar ? o->metavar : "", cmd);
            return CLI_ERROR;
        }
    if (npos) *npos = np;
    return CLI_OK;
}

int cli_parse(const char *cmd, const char *summary, cli_opt *opts, int argc, char **argv) {
    return cli_parse_pos(cmd, summary, opts, argc, argv, NULL, 0, NULL, NULL);
}
