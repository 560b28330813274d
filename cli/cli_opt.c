/*
 * Copyright (C) Nexus authors
 *
 * nexusctl option parsing: getopt_long with the tool's own messages.
 * Every verb takes long options only ("--name acme" or "--name=acme"),
 * plus -h / --help and --audit-key-file FILE (the key for the audit
 * events of its writes, see cli_audit.h).
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_opt.h"
#include "cli_out.h"


#define CLI_OPT_MAX         16

/* not a character: no verb's option can have it */
#define CLI_OPT_AUDIT_KEY   0x100


int
cli_getopt(int argc, char **argv, const struct option *opts)
{
    int             c, n;
    struct option   all[CLI_OPT_MAX + 3];
    const char     *arg;

    for (n = 0; opts[n].name != NULL; n++) {
        if (n == CLI_OPT_MAX) {
            break;
        }

        all[n] = opts[n];
    }

    all[n].name = "help";
    all[n].has_arg = no_argument;
    all[n].flag = NULL;
    all[n].val = CLI_OPT_HELP;

    all[n + 1].name = "audit-key-file";
    all[n + 1].has_arg = required_argument;
    all[n + 1].flag = NULL;
    all[n + 1].val = CLI_OPT_AUDIT_KEY;

    memset(&all[n + 2], 0, sizeof(struct option));

    /*
     * '+': stop at the first operand rather than permute, so that a stray
     * operand is reported by cli_opt_end(); ':': report a missing value
     * apart from an unknown option.
     */
    opterr = 0;

    do {
        c = getopt_long(argc, argv, "+:h", all, NULL);

        if (c == CLI_OPT_AUDIT_KEY) {
            cli_audit_key_path = optarg;
        }

    } while (c == CLI_OPT_AUDIT_KEY);

    switch (c) {

    case ':':
        cli_error("%s: option \"%s\" needs a value", argv[0],
                  cli_quote(argv[optind - 1]));
        return CLI_OPT_BAD;

    case '?':
        /* an unknown option, or a value given to a flag (--platform=x) */
        arg = argv[optind - 1];

        if (strncmp(arg, "--", 2) != 0 && optopt > 0x20 && optopt < 0x7f) {
            cli_error("%s: invalid option \"-%c\"", argv[0], optopt);

        } else {
            cli_error("%s: invalid option \"%s\"", argv[0], cli_quote(arg));
        }

        return CLI_OPT_BAD;

    default:
        return c;
    }
}


int
cli_opt_end(int argc, char **argv)
{
    if (optind < argc) {
        cli_error("%s: unexpected argument \"%s\"", argv[0],
                  cli_quote(argv[optind]));
        cli_verb_usage(argv[0], stderr);
        return -1;
    }

    return 0;
}


int
cli_opt_usage(const char *verb, int c)
{
    if (c == CLI_OPT_HELP) {
        cli_verb_usage(verb, stdout);
        return CLI_OK;
    }

    cli_verb_usage(verb, stderr);
    return CLI_USAGE;
}


int
cli_opt_count(const char *name, const char *s, unsigned long long max,
    unsigned long long *n)
{
    size_t              i;
    unsigned long long  v;

    v = 0;

    for (i = 0; s[i] != '\0'; i++) {

        if (s[i] < '0' || s[i] > '9') {
            goto invalid;
        }

        v = v * 10 + (unsigned long long) (s[i] - '0');

        /* max is far below ULLONG_MAX / 10: this stops any overflow */
        if (v > max) {
            goto invalid;
        }
    }

    if (v == 0) {
        goto invalid;
    }

    *n = v;

    return 0;

invalid:

    cli_error("invalid %s \"%s\": an integer from 1 to %llu", name,
              cli_quote(s), max);
    return -1;
}


/*
 * The loop every verb whose options are strings and flags would write:
 * to[i] is where opts[i] goes, a const char * that gets the value for an
 * option with a value, an int set to 1 for a flag; an option not given
 * leaves its place as it was, one given twice keeps the last value.
 */

int
cli_opt_read(int argc, char **argv, const struct option *opts, void **to)
{
    int  c, i;

    while ((c = cli_getopt(argc, argv, opts)) != -1) {

        for (i = 0; opts[i].name != NULL; i++) {
            if (opts[i].val == c) {
                break;
            }
        }

        if (opts[i].name == NULL) {
            return cli_opt_usage(argv[0], c);
        }

        if (opts[i].has_arg == no_argument) {
            *(int *) to[i] = 1;

        } else {
            *(const char **) to[i] = optarg;
        }
    }

    return cli_opt_end(argc, argv) == 0 ? -1 : CLI_USAGE;
}
