/*
 * tools/commands.h — the subcommands of `calograd`, one file each (tools/cmd_<name>.c).
 * Each takes argv with argv[0] = the subcommand's name and returns the process exit code.
 */
#ifndef CG_COMMANDS_H
#define CG_COMMANDS_H

int cmd_op(int argc, char **argv);        /* cmd_op.c:       run one op on .npy arrays */
int cmd_simulate(int argc, char **argv);  /* cmd_simulate.c: parametrised shower simulator */
int cmd_info(int argc, char **argv);      /* cmd_info.c:     describe a .cvox file */
int cmd_import(int argc, char **argv);    /* cmd_import.c:   HDF5 -> .cvox */
int cmd_export(int argc, char **argv);    /* cmd_export.c:   .cvox -> HDF5 */
int cmd_evaluate(int argc, char **argv);  /* cmd_evaluate.c: physics metrics and HTML report */
int cmd_train(int argc, char **argv);     /* cmd_train.c:    train a model */
int cmd_generate(int argc, char **argv);  /* cmd_generate.c: sample showers from a checkpoint */
int cmd_demo(int argc, char **argv);      /* cmd_demo.c:     simulate -> train -> generate -> evaluate */
int cmd_devices(int argc, char **argv);   /* main.c:         list backends and devices */

#endif
