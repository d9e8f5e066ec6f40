/*
 * models/config.h — run configuration as "key = value" lines, with typed option tables.
 *
 * Every option of `calograd train` (and of a model family) is a key: it can come from a
 * --config file, from a command-line flag (which wins), or from its default. The resolved
 * configuration is written to RUNDIR/config and into checkpoints, so a run can be repeated
 * or resumed exactly.
 *
 * File syntax: one "key = value" per line; blank lines and lines starting with '#' are
 * ignored; whitespace around key and value is trimmed. An unknown key, a value that does not
 * parse, or a repeated key is an error naming the file and the line — a typo never silently
 * falls back to a default.
 */
#ifndef CG_MODELS_CONFIG_H
#define CG_MODELS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef enum { CG_CFG_INT, CG_CFG_FLOAT, CG_CFG_STR, CG_CFG_BOOL } cg_cfg_type;

/* One known option: its key, type, default (as text; NULL = required) and a help line. */
typedef struct {
    const char *key;
    cg_cfg_type type;
    const char *def;
    const char *help;
} cg_cfg_spec;

typedef struct {
    char key[48];
    char value[512];
    char origin[64]; /* "default", "flag", "config:PATH:LINE", "checkpoint" */
} cg_cfg_entry;

typedef struct {
    cg_cfg_entry *v;
    int n, cap;
} cg_config;

/* Set (or replace) a value; origin says where it came from. */
void cg_config_set(cg_config *c, const char *key, const char *value, const char *origin);
/* Read a file of key = value lines. Keys already set by a flag keep their flag value. */
cg_status cg_config_load_file(cg_config *c, const char *path, bool keep_flags);
/* Parse a text of key = value lines (a checkpoint's metadata). */
cg_status cg_config_load_text(cg_config *c, const char *text, const char *origin);
/* Fill in defaults from the spec tables and check every key is known (in one of the NULL-
 * terminated tables) and every value parses as its type. */
cg_status cg_config_resolve(cg_config *c, const cg_cfg_spec *const *tables, int ntables);
const char *cg_config_get(const cg_config *c, const char *key); /* NULL when unset */
/* Typed getters for resolved configurations (the value was checked by resolve). */
int64_t cg_config_int(const cg_config *c, const char *key);
double cg_config_float(const cg_config *c, const char *key);
bool cg_config_bool(const cg_config *c, const char *key);
const char *cg_config_str(const cg_config *c, const char *key);
/* "key = value\n" lines, sorted by key; malloc'ed. */
char *cg_config_text(const cg_config *c);
/* Help lines for a table, for --help texts. */
void cg_config_print_help(const cg_cfg_spec *spec, const char *indent);
void cg_config_free(cg_config *c);

#endif
