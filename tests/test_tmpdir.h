/*
 * tests/test_tmpdir.h — a scratch directory for tests that write files: made under
 * $TMPDIR (or /tmp) at the start, removed with everything in it at the end. tpath(name)
 * names a file in it (eight rotating buffers, so one call can take several paths);
 * tfile_read(path, &n) reads a file back whole.
 */
#ifndef CG_TEST_TMPDIR_H
#define CG_TEST_TMPDIR_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_dir[256];

/* mkdtemp "<TMPDIR>/cg_test_<name>_XXXXXX" into g_dir; 0 on success. */
static inline int tmpdir_make(const char *name) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/cg_test_%s_XXXXXX", tmp ? tmp : "/tmp", name);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    return 0;
}

static inline void tmpdir_remove(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

static inline const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* Files a writer left behind under a temporary name (NAME.partial.PID). */
static inline int partial_files_left(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".partial.")) n++;
    if (d) closedir(d);
    return n;
}

/* The whole file, NUL-terminated (so text can be searched), in a malloc'd buffer; its size
 * in *n when n is not NULL. NULL when it cannot be opened. */
static inline char *tfile_read(const char *path, int64_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)(size > 0 ? size : 0) + 1);
    size_t got = s ? fread(s, 1, (size_t)(size > 0 ? size : 0), f) : 0;
    fclose(f);
    if (!s) return NULL;
    s[got] = 0;
    if (n) *n = (int64_t)got;
    return s;
}

#endif
