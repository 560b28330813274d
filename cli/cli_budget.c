/*
 * Copyright (C) Nexus authors
 *
 * nexusctl token budgets and tokens per minute: set-budget, show-budget
 * and set-tpm.
 *
 * A key's token budget lives in the token_budget column of api_keys, a
 * jsonb object: {"daily": 100000, "monthly": 2000000, "total": 50000000},
 * every field optional; tokens per minute in the tpm column of api_keys
 * and of tenants (NULL: the location's nexus_tpm). The values are checked
 * here before the database sees them; the columns' CHECK constraints
 * (migration 0009) hold the same rules. An UPDATE of either column fires
 * a trigger that NOTIFYs every nginx worker, so a change needs no reload.
 * The live counters (tokens used, tokens held by calls in flight) are in
 * Redis, where the gateway keeps them.
 */

#include <stdio.h>
#include <string.h>

#include <nx_budget.h>
#include <nx_key.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_key.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


/* what nexus_token_budget_valid() and the tpm CHECKs accept */
#define CLI_BUDGET_MAX            ((unsigned long long) NX_BUDGET_TOKENS_MAX)


#define CLI_BUDGET_COLS                                                      \
    "token_budget ->> 'daily', token_budget ->> 'monthly', "                \
    "token_budget ->> 'total', tpm"

/*
 * $1 is the key prefix. Setting removes the fields of $2 (a text[] of our
 * own constants) and merges $3, the fields given; the new budget comes
 * back to be printed. Clearing updates only a row that has a budget, so
 * that a no-op fires no NOTIFY.
 */

static const char  cli_budget_set_sql[] =
    "UPDATE api_keys SET token_budget = (token_budget - $2::text[])"
    " || $3::jsonb WHERE prefix = $1 RETURNING " CLI_BUDGET_COLS;

static const char  cli_budget_clear_sql[] =
    "UPDATE api_keys SET token_budget = '{}' "
    "WHERE prefix = $1 AND token_budget <> '{}' RETURNING 1";

static const char  cli_budget_show_sql[] =
    "SELECT " CLI_BUDGET_COLS " FROM api_keys WHERE prefix = $1";

static const char  cli_budget_exists_sql[] =
    "SELECT 1 FROM api_keys WHERE prefix = $1";

/* $2: the tokens per minute, or NULL to clear */

static const char  cli_tpm_key_sql[] =
    "UPDATE api_keys SET tpm = $2::bigint WHERE prefix = $1 RETURNING tpm";

static const char  cli_tpm_tenant_sql[] =
    "UPDATE tenants SET tpm = $2::bigint WHERE name = $1 RETURNING tpm";

static const cli_audit_event_t  cli_budget_event = {
    "admin.token_budget.updated",
    CLI_AUDIT_KEY("'token_budget', k.token_budget")
};

/* as DELETE /v1/admin/api-keys/{id}/budget records it */
static const cli_audit_event_t  cli_budget_cleared = {
    "admin.token_budget.deleted",
    CLI_AUDIT_KEY("'token_budget', k.token_budget")
};

static const cli_audit_event_t  cli_tpm_key_event = {
    "admin.tpm.updated", CLI_AUDIT_KEY("'tpm', k.tpm")
};

static const cli_audit_event_t  cli_tpm_tenant_event = {
    "admin.tpm.updated", CLI_AUDIT_TENANT("'tpm', t.tpm")
};


typedef struct {
    const char          *prefix_arg;
    const char          *tenant;
    const char          *arg[NX_BUDGET_NPERIODS];
    int                  no[NX_BUDGET_NPERIODS];
    const char          *tpm_arg;
    int                  clear;

    char                 prefix[NX_KEY_PREFIX_LEN + 1];
    unsigned long long   n[NX_BUDGET_NPERIODS];
    unsigned long long   tpm;
} cli_budget_args_t;


static int cli_budget_prefix(const char *verb, cli_budget_args_t *a);
static int cli_budget_set_check(const char *verb, cli_budget_args_t *a);
static int cli_budget_set(PGconn *conn, const cli_budget_args_t *a);
static int cli_budget_clear(PGconn *conn, const cli_budget_args_t *a);
static void cli_budget_print(const char *prefix, const PGresult *res);
static void cli_budget_show_print(const char *prefix, const PGresult *res);


static const struct option  cli_set_budget_opts[] = {
    { "prefix",       required_argument,  NULL,  'p' },
    { "daily",        required_argument,  NULL,  'd' },
    { "monthly",      required_argument,  NULL,  'm' },
    { "total",        required_argument,  NULL,  't' },
    { "no-daily",     no_argument,        NULL,  'D' },
    { "no-monthly",   no_argument,        NULL,  'M' },
    { "no-total",     no_argument,        NULL,  'T' },
    { "clear",        no_argument,        NULL,  'x' },
    { NULL,           0,                  NULL,  0 }
};

static const struct option  cli_show_budget_opts[] = {
    { "prefix",       required_argument,  NULL,  'p' },
    { NULL,           0,                  NULL,  0 }
};

static const struct option  cli_set_tpm_opts[] = {
    { "prefix",       required_argument,  NULL,  'p' },
    { "tenant",       required_argument,  NULL,  'n' },
    { "tpm",          required_argument,  NULL,  'r' },
    { "clear",        no_argument,        NULL,  'x' },
    { NULL,           0,                  NULL,  0 }
};


int
cli_set_budget(int argc, char **argv)
{
    int                c, rc;
    PGconn            *conn;
    cli_budget_args_t  a;

    memset(&a, 0, sizeof(cli_budget_args_t));

    while ((c = cli_getopt(argc, argv, cli_set_budget_opts)) != -1) {

        switch (c) {

        case 'p':
            a.prefix_arg = optarg;
            break;

        case 'd':
            a.arg[0] = optarg;
            break;

        case 'm':
            a.arg[1] = optarg;
            break;

        case 't':
            a.arg[2] = optarg;
            break;

        case 'D':
            a.no[0] = 1;
            break;

        case 'M':
            a.no[1] = 1;
            break;

        case 'T':
            a.no[2] = 1;
            break;

        case 'x':
            a.clear = 1;
            break;

        default:
            return cli_opt_usage(argv[0], c);
        }
    }

    if (cli_opt_end(argc, argv) != 0) {
        return CLI_USAGE;
    }

    if (cli_budget_prefix(argv[0], &a) != 0
        || cli_budget_set_check(argv[0], &a) != 0)
    {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = a.clear ? cli_budget_clear(conn, &a) : cli_budget_set(conn, &a);

    cli_db_close(conn);

    return rc;
}


/* --prefix is required, and a valid one. */

static int
cli_budget_prefix(const char *verb, cli_budget_args_t *a)
{
    if (a->prefix_arg == NULL) {
        cli_error("%s: --prefix is required", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    return cli_key_prefix_check(a->prefix_arg, a->prefix);
}


static int
cli_budget_set_check(const char *verb, cli_budget_args_t *a)
{
    int   i, any;
    char  name[32];

    any = 0;

    for (i = 0; i < NX_BUDGET_NPERIODS; i++) {

        if (a->arg[i] == NULL && !a->no[i]) {
            continue;
        }

        any = 1;

        if (a->clear) {
            cli_error("%s: --clear cannot be combined with --%s%s", verb,
                      a->no[i] ? "no-" : "", nx_budget_periods[i]);
            cli_verb_usage(verb, stderr);
            return -1;
        }

        if (a->arg[i] != NULL && a->no[i]) {
            cli_error("%s: --%s cannot be combined with --no-%s", verb,
                      nx_budget_periods[i], nx_budget_periods[i]);
            cli_verb_usage(verb, stderr);
            return -1;
        }

        snprintf(name, sizeof(name), "%s budget", nx_budget_periods[i]);

        if (a->arg[i] != NULL
            && cli_opt_count(name, a->arg[i], CLI_BUDGET_MAX, &a->n[i]) != 0)
        {
            return -1;
        }
    }

    if (!any && !a->clear) {
        cli_error("%s: one of --daily, --monthly, --total, --no-daily, "
                  "--no-monthly, --no-total or --clear is required", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    return 0;
}


/* The periods given are merged into the budget; the others are kept. */

static int
cli_budget_set(PGconn *conn, const cli_budget_args_t *a)
{
    int                 i;
    char                json[NX_BUDGET_JSON_LEN], drop[NX_BUDGET_DROP_LEN];
    const char         *values[3];
    nx_token_budget_t   b;

    memset(&b, 0, sizeof(nx_token_budget_t));

    for (i = 0; i < NX_BUDGET_NPERIODS; i++) {

        if (a->arg[i] != NULL) {
            b.tokens[i] = (int64_t) a->n[i];
            b.set |= 1u << i;
        }

        if (a->no[i]) {
            b.drop |= 1u << i;
        }
    }

    /* what the admin API writes for the same change */
    nx_token_budget_text(&b, json, drop);

    values[0] = a->prefix;
    values[1] = drop;
    values[2] = json;

    return cli_audit_row(conn, cli_budget_set_sql, 3, values, "key",
                         "cannot set budget", cli_budget_print,
                         &cli_budget_event);
}


static int
cli_budget_clear(PGconn *conn, const cli_budget_args_t *a)
{
    int          rc, found;
    PGresult    *res;
    const char  *values[1];

    values[0] = a->prefix;

    rc = cli_audit_exec(conn, cli_budget_clear_sql, 1, values,
                        "cannot clear budget", &cli_budget_cleared, &res);
    if (rc != CLI_OK) {
        return rc;
    }

    found = (res != NULL);
    PQclear(res);

    if (found) {
        printf("budget of key %s: cleared\n", a->prefix);

    } else {

        /* nothing to clear, or no such key */

        res = cli_db_exec(conn, cli_budget_exists_sql, 1, values);

        if (!cli_db_ok(res)) {
            rc = cli_db_fail(conn, res, "cannot clear budget");
            PQclear(res);
            return rc;
        }

        found = (PQntuples(res) != 0);
        PQclear(res);

        if (!found) {
            cli_error("key \"%s\" not found", a->prefix);
            return CLI_FAILED;
        }

        printf("budget of key %s: none\n", a->prefix);
    }

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}


/*
 * One row of CLI_BUDGET_COLS. A budget with no period at all is "none",
 * a period that is not set is "none" too. A valid prefix needs no
 * quoting.
 */

static void
cli_budget_print(const char *prefix, const PGresult *res)
{
    if (PQgetisnull(res, 0, 0) && PQgetisnull(res, 0, 1)
        && PQgetisnull(res, 0, 2))
    {
        printf("budget of key %s: none\n", prefix);

    } else {
        printf("budget of key %s: daily=%s monthly=%s total=%s\n", prefix,
               cli_db_value(res, 0, "none"), cli_db_value(res, 1, "none"),
               cli_db_value(res, 2, "none"));
    }
}


/* show-budget: the budget, and the key's own tokens per minute */

static void
cli_budget_show_print(const char *prefix, const PGresult *res)
{
    cli_budget_print(prefix, res);
    printf("tpm of key %s: %s\n", prefix, cli_db_value(res, 3, "none"));
}


int
cli_show_budget(int argc, char **argv)
{
    int                rc;
    cli_budget_args_t  a;

    memset(&a, 0, sizeof(cli_budget_args_t));

    rc = cli_opt_read(argc, argv, cli_show_budget_opts,
                      (void *[]) { &a.prefix_arg });
    if (rc != -1) {
        return rc;
    }

    if (cli_budget_prefix(argv[0], &a) != 0) {
        return CLI_USAGE;
    }

    return cli_db_show(cli_budget_show_sql, a.prefix, "key", "budget",
                       cli_budget_show_print);
}


/* set-tpm (--tenant NAME | --prefix PREFIX) (--tpm N | --clear) */

int
cli_set_tpm(int argc, char **argv)
{
    int                       rc;
    char                      n[24];
    PGconn                   *conn;
    PGresult                 *res;
    const char               *values[2], *sql, *what;
    cli_budget_args_t         a;
    const cli_audit_event_t  *ev;

    memset(&a, 0, sizeof(cli_budget_args_t));

    rc = cli_opt_read(argc, argv, cli_set_tpm_opts,
                      (void *[]) { &a.prefix_arg, &a.tenant, &a.tpm_arg,
                                   &a.clear });
    if (rc != -1) {
        return rc;
    }

    if ((a.tenant == NULL) == (a.prefix_arg == NULL)) {
        cli_error("%s: exactly one of --tenant and --prefix is required",
                  argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    if ((a.tpm_arg == NULL) == !a.clear) {
        cli_error("%s: exactly one of --tpm and --clear is required",
                  argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    if (a.tenant != NULL) {
        if (cli_tenant_name_check(a.tenant) != 0) {
            return CLI_USAGE;
        }

        sql = cli_tpm_tenant_sql;
        ev = &cli_tpm_tenant_event;
        what = "tenant";
        values[0] = a.tenant;

    } else {
        if (cli_key_prefix_check(a.prefix_arg, a.prefix) != 0) {
            return CLI_USAGE;
        }

        sql = cli_tpm_key_sql;
        ev = &cli_tpm_key_event;
        what = "key";
        values[0] = a.prefix;
    }

    values[1] = NULL;

    if (a.tpm_arg != NULL) {
        if (cli_opt_count("tokens per minute", a.tpm_arg, CLI_BUDGET_MAX,
                          &a.tpm)
            != 0)
        {
            return CLI_USAGE;
        }

        snprintf(n, sizeof(n), "%llu", a.tpm);
        values[1] = n;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = cli_audit_exec(conn, sql, 2, values, "cannot set tokens per minute",
                        ev, &res);

    if (rc == CLI_OK && res == NULL) {
        cli_error("%s \"%s\" not found", what, values[0]);
        rc = CLI_FAILED;

    } else if (rc == CLI_OK) {
        printf("tpm of %s %s: %s\n", what, values[0],
               cli_db_value(res, 0, "none"));
        rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
    }

    PQclear(res);
    cli_db_close(conn);

    return rc;
}
