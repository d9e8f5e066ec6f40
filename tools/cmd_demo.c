/* tools/cmd_demo.c — `calograd demo`. TODO: not implemented yet (tracked in its issue). */
#include "cli.h"
#include "commands.h"

int cmd_demo(int argc, char **argv) {
    cli_opt opts[] = {{0}};
    int rc = cli_parse("demo", "Not implemented yet.", opts, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP ? 0 : 2;
    return cli_fail("demo", "not implemented yet");
}
