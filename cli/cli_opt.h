/*
 * Copyright (C) Nexus authors
 *
 * nexusctl option parsing: getopt_long with the tool's own messages.
 */

#ifndef CLI_OPT_H
#define CLI_OPT_H

#include <getopt.h>


#define CLI_OPT_HELP  'h'       /* -h or --help */
#define CLI_OPT_BAD   '?'       /* unknown option or missing value */


/*
 * Returns the next option's val (its value in optarg), -1 when the options
 * are done, CLI_OPT_HELP, or CLI_OPT_BAD after printing why. argv[0] is the
 * verb; opts need not list "help".
 */
int cli_getopt(int argc, char **argv, const struct option *opts);

/*
 * To call once cli_getopt returned -1: 0 if no arguments are left, -1
 * (with a message) if some are, since no verb takes operands.
 */
int cli_opt_end(int argc, char **argv);

/*
 * Handles a CLI_OPT_HELP or CLI_OPT_BAD from cli_getopt: prints the verb's
 * usage and returns the exit code (0 for help, 2 otherwise).
 */
int cli_opt_usage(const char *verb, int c);

/*
 * Reads the options of a verb whose options are strings and flags, then
 * checks that no operand is left: to[i] points at the variable of
 * opts[i], a const char * for an option with a value, an int (set to 1)
 * for a flag. Returns -1 when the verb goes on, else the exit code to
 * return (after --help, a bad option or an operand).
 */
int cli_opt_read(int argc, char **argv, const struct option *opts,
    void **to);

/*
 * An option's value that must be a decimal integer from 1 to max: digits
 * only, no sign, no spaces. 0 and *n set, or -1 after printing
 * `invalid <name> "<s>": an integer from 1 to <max>`.
 */
int cli_opt_count(const char *name, const char *s, unsigned long long max,
    unsigned long long *n);


#endif /* CLI_OPT_H */
