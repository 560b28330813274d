/*
 * Copyright (C) Nexus authors
 *
 * nexusctl rate limits: set-limits and show-limits.
 *
 * The overrides live in the rate_limits column of tenants (the tenant's
 * bucket) and of api_keys (the key's own bucket), as a jsonb object by
 * route class: {"read": {"rps": 5, "burst": 20}, "run": {"rps": 1}}. The
 * values are checked here before the database sees them; the column's
 * CHECK constraint (nexus_rate_limits_valid) holds the same rules. An
 * UPDATE of the column fires the trigger that NOTIFYs every nginx worker,
 * so a change needs no reload.
 */

#include <stdio.h>
#include <string.h>

#include <nx_key.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_key.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


/* what nexus_rate_limits_valid() accepts */
#define CLI_LIMITS_RPS_MAX    999999
#define CLI_LIMITS_BURST_MAX  9999999

#define CLI_LIMITS_NCLASSES   4


/*
 * The statements for one table; $1 is the tenant name or the key prefix.
 * Clearing updates only a row that has something to clear, so that a
 * no-op fires no NOTIFY; 0 rows then means "nothing to clear" or "not
 * found", which exists_sql tells apart.
 */

typedef struct {
    const char  *what;          /* "tenant" or "key" */
    const char  *set_sql;       /* $2 class, $3 {"rps":N[,"burst":M]} */
    const char  *clear_sql;     /* $2 class */
    const char  *clear_all_sql;
    const char  *show_sql;      /* rps and burst of each class, or NULL */
    const char  *exists_sql;
    cli_audit_event_t  event;
} cli_limits_target_t;

typedef struct {
    const char                 *tenant;
    const char                 *prefix_arg;
    const char                 *class;
    const char                 *rps_arg;
    const char                 *burst_arg;
    int                         clear;

    const cli_limits_target_t  *target;
    const char                 *subject;    /* $1 */
    char                        prefix[NX_KEY_PREFIX_LEN + 1];
    char                        label[96];
    unsigned long long          rps;
    unsigned long long          burst;      /* 0: not given */
} cli_limits_args_t;


static int cli_limits_target(const char *verb, cli_limits_args_t *a);
static int cli_limits_set_check(const char *verb, cli_limits_args_t *a);
static int cli_limits_set(PGconn *conn, const cli_limits_args_t *a);
static int cli_limits_clear(PGconn *conn, const cli_limits_args_t *a);
static int cli_limits_write(PGconn *conn, const cli_limits_args_t *a,
    const char *sql, int n, const char *const *values, const char *what,
    int *changed);
static int cli_limits_exists(PGconn *conn, const cli_limits_args_t *a,
    const char *what);
static void cli_limits_not_found(const cli_limits_args_t *a);


/* the order of the classes in show_sql's columns */

static const char  *cli_limits_classes[CLI_LIMITS_NCLASSES] = {
    "run", "mutation", "read", "ops"
};


#define CLI_LIMITS_CLASS_COLS(c)                                             \
    "rate_limits #>> '{" c ",rps}', rate_limits #>> '{" c ",burst}'"

#define CLI_LIMITS_TARGET(what, table, col, audit)                           \
    {                                                                        \
        what,                                                                \
                                                                             \
        "UPDATE " table " SET rate_limits ="                                 \
        " jsonb_set(rate_limits, ARRAY[$2::text], $3::jsonb) "               \
        "WHERE " col " = $1 RETURNING 1",                                    \
                                                                             \
        "UPDATE " table " SET rate_limits = rate_limits - $2::text "         \
        "WHERE " col " = $1 AND rate_limits ? $2::text RETURNING 1",         \
                                                                             \
        "UPDATE " table " SET rate_limits = '{}' "                           \
        "WHERE " col " = $1 AND rate_limits <> '{}' RETURNING 1",            \
                                                                             \
        "SELECT " CLI_LIMITS_CLASS_COLS("run") ", "                          \
        CLI_LIMITS_CLASS_COLS("mutation") ", "                               \
        CLI_LIMITS_CLASS_COLS("read") ", "                                   \
        CLI_LIMITS_CLASS_COLS("ops") " "                                     \
        "FROM " table " WHERE " col " = $1",                                 \
                                                                             \
        "SELECT 1 FROM " table " WHERE " col " = $1",                        \
                                                                             \
        { "admin.rate_limits.updated", audit }                               \
    }

static const cli_limits_target_t  cli_limits_tenant =
    CLI_LIMITS_TARGET("tenant", "tenants", "name",
                      CLI_AUDIT_TENANT("'rate_limits', t.rate_limits"));

static const cli_limits_target_t  cli_limits_key =
    CLI_LIMITS_TARGET("key", "api_keys", "prefix",
                      CLI_AUDIT_KEY("'rate_limits', k.rate_limits"));


static const struct option  cli_set_limits_opts[] = {
    { "tenant",       required_argument,  NULL,  't' },
    { "prefix",       required_argument,  NULL,  'p' },
    { "class",        required_argument,  NULL,  'c' },
    { "rps",          required_argument,  NULL,  'r' },
    { "burst",        required_argument,  NULL,  'b' },
    { "clear",        no_argument,        NULL,  'x' },
    { NULL,           0,                  NULL,  0 }
};

static const struct option  cli_show_limits_opts[] = {
    { "tenant",       required_argument,  NULL,  't' },
    { "prefix",       required_argument,  NULL,  'p' },
    { NULL,           0,                  NULL,  0 }
};


int
cli_set_limits(int argc, char **argv)
{
    int                rc;
    PGconn            *conn;
    cli_limits_args_t  a;

    memset(&a, 0, sizeof(cli_limits_args_t));

    rc = cli_opt_read(argc, argv, cli_set_limits_opts,
                      (void *[]) { &a.tenant, &a.prefix_arg, &a.class,
                                   &a.rps_arg, &a.burst_arg, &a.clear });
    if (rc != -1) {
        return rc;
    }

    if (cli_limits_target(argv[0], &a) != 0
        || cli_limits_set_check(argv[0], &a) != 0)
    {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = a.clear ? cli_limits_clear(conn, &a) : cli_limits_set(conn, &a);

    cli_db_close(conn);

    return rc;
}


/* Exactly one of --tenant and --prefix, and a valid one. */

static int
cli_limits_target(const char *verb, cli_limits_args_t *a)
{
    if ((a->tenant == NULL) == (a->prefix_arg == NULL)) {
        cli_error("%s: exactly one of --tenant and --prefix is required",
                  verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->tenant != NULL) {

        if (cli_tenant_name_check(a->tenant) != 0) {
            return -1;
        }

        a->target = &cli_limits_tenant;
        a->subject = a->tenant;

    } else {

        if (cli_key_prefix_check(a->prefix_arg, a->prefix) != 0) {
            return -1;
        }

        a->target = &cli_limits_key;
        a->subject = a->prefix;
    }

    /* a valid tenant name or prefix needs no quoting */
    snprintf(a->label, sizeof(a->label), "%s %s", a->target->what,
             a->subject);

    return 0;
}


static int
cli_limits_set_check(const char *verb, cli_limits_args_t *a)
{
    int  i;

    if (a->clear) {
        if (a->rps_arg != NULL || a->burst_arg != NULL) {
            cli_error("%s: --clear cannot be combined with --rps or --burst",
                      verb);
            cli_verb_usage(verb, stderr);
            return -1;
        }

    } else if (a->rps_arg == NULL) {

        if (a->burst_arg != NULL) {
            cli_error("%s: --burst needs --rps", verb);

        } else {
            cli_error("%s: --rps or --clear is required", verb);
        }

        cli_verb_usage(verb, stderr);
        return -1;

    } else if (a->class == NULL) {
        cli_error("%s: --class is required with --rps", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->class != NULL) {

        for (i = 0; i < CLI_LIMITS_NCLASSES; i++) {
            if (strcmp(a->class, cli_limits_classes[i]) == 0) {
                break;
            }
        }

        if (i == CLI_LIMITS_NCLASSES) {
            cli_error("invalid class \"%s\": run, mutation, read or ops",
                      cli_quote(a->class));
            return -1;
        }

        /* from here on, the class is one of ours */
        a->class = cli_limits_classes[i];
    }

    if (a->rps_arg != NULL
        && cli_opt_count("rps", a->rps_arg, CLI_LIMITS_RPS_MAX, &a->rps)
           != 0)
    {
        return -1;
    }

    if (a->burst_arg != NULL
        && cli_opt_count("burst", a->burst_arg, CLI_LIMITS_BURST_MAX,
                             &a->burst)
           != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * The class's object is replaced as a whole: a burst not given is left
 * out, and the module then uses the rps as the burst.
 */

static int
cli_limits_set(PGconn *conn, const cli_limits_args_t *a)
{
    int          rc, changed;
    char         json[64];
    const char  *values[3];

    /* numbers only: nothing from the command line is spliced in */

    if (a->burst != 0) {
        snprintf(json, sizeof(json), "{\"rps\": %llu, \"burst\": %llu}",
                 a->rps, a->burst);

    } else {
        snprintf(json, sizeof(json), "{\"rps\": %llu}", a->rps);
    }

    values[0] = a->subject;
    values[1] = a->class;
    values[2] = json;

    rc = cli_limits_write(conn, a, a->target->set_sql, 3, values,
                          "cannot set limits", &changed);

    if (rc != CLI_OK) {
        return rc;
    }

    if (!changed) {
        cli_limits_not_found(a);
        return CLI_FAILED;
    }

    printf("limits of %s, class %s: rps=%llu burst=%llu\n", a->label,
           a->class, a->rps, a->burst != 0 ? a->burst : a->rps);

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}


static int
cli_limits_clear(PGconn *conn, const cli_limits_args_t *a)
{
    int          rc, changed;
    const char  *values[2];

    values[0] = a->subject;
    values[1] = a->class;

    if (a->class != NULL) {
        rc = cli_limits_write(conn, a, a->target->clear_sql, 2, values,
                              "cannot clear limits", &changed);

    } else {
        rc = cli_limits_write(conn, a, a->target->clear_all_sql, 1, values,
                              "cannot clear limits", &changed);
    }

    if (rc != CLI_OK) {
        return rc;
    }

    if (!changed) {
        rc = cli_limits_exists(conn, a, "cannot clear limits");
        if (rc != CLI_OK) {
            return rc;
        }

        if (a->class != NULL) {
            printf("limits of %s, class %s: no override\n", a->label,
                   a->class);

        } else {
            printf("limits of %s: no overrides\n", a->label);
        }

    } else {
        if (a->class != NULL) {
            printf("limits of %s, class %s: cleared\n", a->label, a->class);

        } else {
            printf("limits of %s: cleared\n", a->label);
        }
    }

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}


/* a write of a row or of none, audited: *changed tells which */

static int
cli_limits_write(PGconn *conn, const cli_limits_args_t *a, const char *sql,
    int n, const char *const *values, const char *what, int *changed)
{
    int        rc;
    PGresult  *res;

    rc = cli_audit_exec(conn, sql, n, values, what, &a->target->event, &res);

    *changed = (res != NULL);
    PQclear(res);

    return rc;
}


static int
cli_limits_exists(PGconn *conn, const cli_limits_args_t *a, const char *what)
{
    int          rc;
    PGresult    *res;
    const char  *values[1];

    values[0] = a->subject;

    res = cli_db_exec(conn, a->target->exists_sql, 1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, what);

    } else if (PQntuples(res) == 0) {
        cli_limits_not_found(a);
        rc = CLI_FAILED;

    } else {
        rc = CLI_OK;
    }

    PQclear(res);

    return rc;
}


/* the messages of create-key and revoke-key */

static void
cli_limits_not_found(const cli_limits_args_t *a)
{
    if (a->target == &cli_limits_tenant) {
        cli_error("tenant \"%s\" not found", a->subject);

    } else {
        cli_error("key %s not found", a->subject);
    }
}


int
cli_show_limits(int argc, char **argv)
{
    int                rc, i, n;
    PGconn            *conn;
    PGresult          *res;
    const char        *values[1];
    cli_limits_args_t  a;

    memset(&a, 0, sizeof(cli_limits_args_t));

    rc = cli_opt_read(argc, argv, cli_show_limits_opts,
                      (void *[]) { &a.tenant, &a.prefix_arg });
    if (rc != -1) {
        return rc;
    }

    if (cli_limits_target(argv[0], &a) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    values[0] = a.subject;

    res = cli_db_exec(conn, a.target->show_sql, 1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot show limits");
        goto done;
    }

    if (PQntuples(res) == 0) {
        cli_limits_not_found(&a);
        rc = CLI_FAILED;
        goto done;
    }

    n = 0;

    for (i = 0; i < CLI_LIMITS_NCLASSES; i++) {

        if (PQgetisnull(res, 0, 2 * i)) {
            continue;
        }

        /* a burst left out is the rps, as the module reads it */

        printf("limits of %s, class %s: rps=%s burst=%s\n", a.label,
               cli_limits_classes[i], PQgetvalue(res, 0, 2 * i),
               PQgetvalue(res, 0, PQgetisnull(res, 0, 2 * i + 1)
                                  ? 2 * i : 2 * i + 1));
        n++;
    }

    if (n == 0) {
        printf("limits of %s: no overrides\n", a.label);
    }

    rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;

done:

    PQclear(res);
    cli_db_close(conn);

    return rc;
}
