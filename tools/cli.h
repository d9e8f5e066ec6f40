/*
 * tools/cli.h — the option parser and helpers every `calograd <cmd>` shares.
 *
 * A command declares its options as a table and calls cli_parse(). Every command then
 * behaves the same way: `--help` prints usage and exits 0; an unknown flag, a missing
 * value, a value that does not parse or a missing required option prints one line
 * "calograd <cmd>: <problem>" plus a hint to run --help, and the command exits 2.
 *
 *   static int cmd_example(int argc, char **argv) {
 *       const char *out = NULL; int events = 100; bool verbose = false;
 *       cli_opt opts[] = {
 *           {"-o", "FILE", "output file", CLI_STR, &out, .required = true},
 *           {"--events", "N", "number of events", CLI_INT, &events},
 *           {"--verbose", NULL, "say more", CLI_FLAG, &verbose},
 *           {0}};
 *       int rc = cli_parse("example", "Make an example.", opts, argc, argv);
 *       if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
 *       ...
 *   }
 *
 * Exit codes of the calograd command: 0 success, 2 usage and input errors (bad flag, bad
 * file, shapes that do not fit, incompatible data), 1 other failures (device errors,
 * numerical failure in training, internal errors), 130 interrupted.
 */
#ifndef CG_CLI_H
#define CG_CLI_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    CLI_STR,    /* const char *        any string */
    CLI_INT,    /* int                 decimal integer */
    CLI_INT64,  /* int64_t             decimal integer */
    CLI_FLOAT,  /* double              number */
    CLI_FLAG,   /* bool                no value; present = true */
    CLI_INT3,   /* int[3]              "S" or "D,H,W" (one integer or three) */
    CLI_RANGE,  /* double[2]           "A:B" or "A" (then both ends are A) */
    CLI_CHOICE, /* const char *        one of .choices ("cpu|cuda") */
} cli_type;

typedef struct {
    const char *name;    /* "--stride" or "-o" */
    const char *metavar; /* shown in help: "S", "FILE"; NULL for flags */
    const char *help;
    cli_type type;
    void *dst;
    bool required;
    const char *choices; /* for CLI_CHOICE: "cpu|cuda" */
    bool seen;           /* set by cli_parse */
} cli_opt;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_ERROR = 2 };

/* Parse argv[1..] (argv[0] is the command name). Positional arguments are collected into
 * pos (at most max_pos; NULL when the command takes none). Returns CLI_OK, CLI_HELP (help
 * printed) or CLI_ERROR (message printed). */
int cli_parse_pos(const char *cmd, const char *summary, cli_opt *opts, int argc, char **argv,
                  const char **pos, int max_pos, int *npos, const char *pos_usage);
int cli_parse(const char *cmd, const char *summary, cli_opt *opts, int argc, char **argv);

/* Print "calograd <cmd>: <message>" to stderr and return 2 (for `return cli_fail(...)`). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the library's last error for a failed call and return the exit code matching
 * its status (2 for invalid input and I/O problems, 1 for device or numeric failures). */
int cli_fail_lib(const char *cmd, const char *what);

/* Whether stderr is a terminal (progress bars) */
bool cli_is_tty(void);
/* Seconds since an arbitrary start, monotonic. */
double cli_now(void);
/* A file's size in bytes (for the summary line after writing it); 0 when it cannot be read. */
long cli_file_size(const char *path);

/* Set by SIGINT/SIGTERM once cli_catch_signals() was called: long loops check it. */
extern volatile int cli_interrupted;
void cli_catch_signals(void);

#endif
