/*
 * Copyright (C) Nexus authors
 *
 * nexusctl model policy: set-models and show-models.
 *
 * A tenant's models live in two columns of tenants: allow_all_models
 * (every model its providers discovered) and allowed_models (a text[] of
 * names, used when allow_all_models is off). A key's allowed_models in
 * api_keys narrows its tenant's set; NULL inherits it. The names are
 * checked here before the database sees them; the columns' CHECK
 * constraints (nexus_models_valid) hold the same rules. An UPDATE of
 * either column fires the trigger that NOTIFYs every nginx worker, so a
 * change needs no reload.
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


/* what nexus_models_valid() accepts */
#define CLI_MODELS_NAME_MAX   128
#define CLI_MODELS_MAX        64
#define CLI_MODELS_LIST_MAX   2000


/*
 * $1 is the tenant name or the key prefix. The list travels as one
 * string of names joined with "," that this file wrote from validated
 * names (which hold no ","), and string_to_array() makes it the text[]:
 * "" is the empty list, NULL (--inherit) stays NULL. Every statement
 * returns the columns that cli_models_print() reads, the effective set
 * computed by the same function as the gateway's key lookup.
 */

#define CLI_MODELS_TENANT_COLS                                               \
    "name, allow_all_models, array_to_string(allowed_models, ','), "        \
    "nexus_models_text(NULL, allow_all_models, allowed_models)"

#define CLI_MODELS_KEY_COLS                                                  \
    "t.name, k.allowed_models IS NULL, "                                    \
    "array_to_string(k.allowed_models, ','), "                              \
    "nexus_models_text(k.allowed_models, t.allow_all_models, "              \
    "t.allowed_models)"

/* $2 the list or NULL to keep it, $3 "true", "false" or NULL to keep it */

static const char  cli_models_tenant_set_sql[] =
    "UPDATE tenants SET "
    "allowed_models = CASE WHEN $2::text IS NULL THEN allowed_models"
    " ELSE string_to_array($2::text, ',') END, "
    "allow_all_models = COALESCE($3::boolean, allow_all_models) "
    "WHERE name = $1 RETURNING " CLI_MODELS_TENANT_COLS;

static const char  cli_models_tenant_show_sql[] =
    "SELECT " CLI_MODELS_TENANT_COLS " FROM tenants WHERE name = $1";

/* $2 the list, or NULL to inherit */

static const char  cli_models_key_set_sql[] =
    "UPDATE api_keys k SET allowed_models = string_to_array($2::text, ',') "
    "FROM tenants t "
    "WHERE k.prefix = $1 AND t.id = k.tenant_id "
    "RETURNING " CLI_MODELS_KEY_COLS;

static const char  cli_models_key_show_sql[] =
    "SELECT " CLI_MODELS_KEY_COLS " FROM api_keys k "
    "JOIN tenants t ON t.id = k.tenant_id WHERE k.prefix = $1";

static const cli_audit_event_t  cli_models_tenant_event = {
    "admin.models.updated",
    CLI_AUDIT_TENANT("'allow_all_models', t.allow_all_models,"
                     " 'allowed_models', t.allowed_models")
};

static const cli_audit_event_t  cli_models_key_event = {
    "admin.models.updated", CLI_AUDIT_KEY("'allowed_models', k.allowed_models")
};


typedef struct {
    const char  *tenant;
    const char  *prefix_arg;
    const char  *models_arg;
    int          allow_all;
    int          no_allow_all;
    int          inherit;

    const char  *subject;       /* $1 */
    char         prefix[NX_KEY_PREFIX_LEN + 1];
    char         models[CLI_MODELS_LIST_MAX + 1];
} cli_models_args_t;


static int cli_models_target(const char *verb, cli_models_args_t *a);
static int cli_models_set_check(const char *verb, cli_models_args_t *a);
static int cli_models_list(const char *arg, char *list);
static int cli_models_name_valid(const char *s, size_t len);
static int cli_models_run(PGconn *conn, const cli_models_args_t *a,
    const char *sql, int n, const char *const *values, const char *what,
    const cli_audit_event_t *ev);
static void cli_models_print(const cli_models_args_t *a,
    const PGresult *res);
static const char *cli_models_value(const PGresult *res, int col);


static const struct option  cli_set_models_opts[] = {
    { "tenant",         required_argument,  NULL,  't' },
    { "prefix",         required_argument,  NULL,  'p' },
    { "models",         required_argument,  NULL,  'm' },
    { "allow-all",      no_argument,        NULL,  'a' },
    { "no-allow-all",   no_argument,        NULL,  'A' },
    { "inherit",        no_argument,        NULL,  'i' },
    { NULL,             0,                  NULL,  0 }
};

static const struct option  cli_show_models_opts[] = {
    { "tenant",         required_argument,  NULL,  't' },
    { "prefix",         required_argument,  NULL,  'p' },
    { NULL,             0,                  NULL,  0 }
};


int
cli_set_models(int argc, char **argv)
{
    int                rc;
    PGconn            *conn;
    const char        *values[3];
    cli_models_args_t  a;

    memset(&a, 0, sizeof(cli_models_args_t));

    rc = cli_opt_read(argc, argv, cli_set_models_opts,
                      (void *[]) { &a.tenant, &a.prefix_arg, &a.models_arg,
                                   &a.allow_all, &a.no_allow_all,
                                   &a.inherit });
    if (rc != -1) {
        return rc;
    }

    if (cli_models_target(argv[0], &a) != 0
        || cli_models_set_check(argv[0], &a) != 0)
    {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    values[0] = a.subject;
    values[1] = (a.models_arg != NULL) ? a.models : NULL;

    if (a.tenant != NULL) {

        if (a.allow_all) {
            values[2] = "true";

        } else if (a.no_allow_all) {
            values[2] = "false";

        } else {
            values[2] = NULL;
        }

        rc = cli_models_run(conn, &a, cli_models_tenant_set_sql, 3, values,
                            "cannot set models", &cli_models_tenant_event);

    } else {
        rc = cli_models_run(conn, &a, cli_models_key_set_sql, 2, values,
                            "cannot set models", &cli_models_key_event);
    }

    cli_db_close(conn);

    return rc;
}


/* Exactly one of --tenant and --prefix, and a valid one. */

static int
cli_models_target(const char *verb, cli_models_args_t *a)
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

        a->subject = a->tenant;

    } else {

        if (cli_key_prefix_check(a->prefix_arg, a->prefix) != 0) {
            return -1;
        }

        a->subject = a->prefix;
    }

    return 0;
}


/*
 * A tenant takes --models, --allow-all and --no-allow-all; a key takes
 * --models or --inherit: a key has no allow-all of its own, it can only
 * narrow its tenant's set.
 */

static int
cli_models_set_check(const char *verb, cli_models_args_t *a)
{
    const char  *flag;

    if (a->tenant != NULL) {

        if (a->inherit) {
            cli_error("%s: --inherit needs --prefix", verb);
            cli_verb_usage(verb, stderr);
            return -1;
        }

        if (a->allow_all && a->no_allow_all) {
            cli_error("%s: --allow-all cannot be combined with "
                      "--no-allow-all", verb);
            cli_verb_usage(verb, stderr);
            return -1;
        }

        if (a->models_arg == NULL && !a->allow_all && !a->no_allow_all) {
            cli_error("%s: --models, --allow-all or --no-allow-all is "
                      "required with --tenant", verb);
            cli_verb_usage(verb, stderr);
            return -1;
        }

    } else {

        if (a->allow_all || a->no_allow_all) {
            flag = a->allow_all ? "--allow-all" : "--no-allow-all";

            cli_error("%s: %s needs --tenant", verb, flag);
            cli_verb_usage(verb, stderr);
            return -1;
        }

        if (a->models_arg != NULL && a->inherit) {
            cli_error("%s: --models cannot be combined with --inherit",
                      verb);
            cli_verb_usage(verb, stderr);
            return -1;
        }

        if (a->models_arg == NULL && !a->inherit) {
            cli_error("%s: --models or --inherit is required with --prefix",
                      verb);
            cli_verb_usage(verb, stderr);
            return -1;
        }
    }

    if (a->models_arg != NULL
        && cli_models_list(a->models_arg, a->models) != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * "a,b,c" to the list to store: each name valid, a repeated name kept
 * once (at its first place), at most CLI_MODELS_MAX names and
 * CLI_MODELS_LIST_MAX characters joined, as nexus_models_valid() counts
 * them in the stored array. "" is the empty list; an empty name ("a,,b",
 * "a,") is invalid. list holds CLI_MODELS_LIST_MAX + 1 bytes.
 */

static int
cli_models_list(const char *arg, char *list)
{
    char         name[CLI_MODELS_NAME_MAX + 2];
    size_t       len, n, i, used, shown, lens[CLI_MODELS_MAX];
    const char  *p, *end, *names[CLI_MODELS_MAX];

    list[0] = '\0';

    if (arg[0] == '\0') {
        return 0;
    }

    n = 0;
    used = 0;

    for (p = arg; /* void */ ; p = end + 1) {

        end = strchr(p, ',');
        len = (end != NULL) ? (size_t) (end - p) : strlen(p);

        if (cli_models_name_valid(p, len) != 0) {

            /* cli_quote() shows 64 characters at most anyway */
            shown = (len < sizeof(name) - 1) ? len : sizeof(name) - 1;
            memcpy(name, p, shown);
            name[shown] = '\0';

            cli_error("invalid model name \"%s\": 1 to %d of A-Z a-z 0-9 "
                      ". _ : / @ + -", cli_quote(name), CLI_MODELS_NAME_MAX);
            return -1;
        }

        for (i = 0; i < n; i++) {
            if (lens[i] == len && memcmp(names[i], p, len) == 0) {
                break;
            }
        }

        if (i == n) {

            if (n == CLI_MODELS_MAX) {
                cli_error("too many models: at most %d different names",
                          CLI_MODELS_MAX);
                return -1;
            }

            if (used + (n > 0) + len > CLI_MODELS_LIST_MAX) {
                cli_error("models list too long: at most %d characters, "
                          "commas included", CLI_MODELS_LIST_MAX);
                return -1;
            }

            if (n > 0) {
                list[used++] = ',';
            }

            memcpy(list + used, p, len);
            used += len;
            list[used] = '\0';

            names[n] = p;
            lens[n] = len;
            n++;
        }

        if (end == NULL) {
            return 0;
        }
    }
}


/* The rule of nexus_models_valid(): ^[A-Za-z0-9._:/@+-]{1,128}$ */

static int
cli_models_name_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > CLI_MODELS_NAME_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {

        if ((s[i] >= 'a' && s[i] <= 'z')
            || (s[i] >= 'A' && s[i] <= 'Z')
            || (s[i] >= '0' && s[i] <= '9'))
        {
            continue;
        }

        if (strchr("._:/@+-", s[i]) == NULL) {
            return -1;
        }
    }

    return 0;
}


/*
 * Runs a statement that returns one row to print, or none if not found;
 * a write with its audit event ev, a read with ev NULL.
 */

static int
cli_models_run(PGconn *conn, const cli_models_args_t *a, const char *sql,
    int n, const char *const *values, const char *what,
    const cli_audit_event_t *ev)
{
    int        rc;
    PGresult  *res;

    if (ev != NULL) {
        rc = cli_audit_exec(conn, sql, n, values, what, ev, &res);

        if (rc != CLI_OK) {
            return rc;
        }

    } else {
        res = cli_db_exec(conn, sql, n, values);
    }

    if (ev == NULL && !cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, what);

    } else if (res == NULL || PQntuples(res) == 0) {

        /* the messages of create-key and revoke-key */

        if (a->tenant != NULL) {
            cli_error("tenant \"%s\" not found", a->subject);

        } else {
            cli_error("key %s not found", a->subject);
        }

        rc = CLI_FAILED;

    } else {
        cli_models_print(a, res);
        rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
    }

    PQclear(res);

    return rc;
}


/*
 * One row of CLI_MODELS_TENANT_COLS or CLI_MODELS_KEY_COLS. The words
 * that are not lists are in parentheses, "*" alone is every discovered
 * model: neither can be a model name. A valid tenant name or prefix
 * needs no quoting, nor do the names the CHECK constraint let in.
 */

static void
cli_models_print(const cli_models_args_t *a, const PGresult *res)
{
    if (a->tenant != NULL) {
        printf("models of tenant %s: allow_all=%s models=%s effective=%s\n",
               PQgetvalue(res, 0, 0),
               (PQgetvalue(res, 0, 1)[0] == 't') ? "yes" : "no",
               cli_models_value(res, 2), cli_models_value(res, 3));
        return;
    }

    printf("models of key %s (tenant %s): models=%s effective=%s\n",
           a->prefix, PQgetvalue(res, 0, 0),
           (PQgetvalue(res, 0, 1)[0] == 't')
               ? "(inherits)" : cli_models_value(res, 2),
           cli_models_value(res, 3));
}


static const char *
cli_models_value(const PGresult *res, int col)
{
    const char  *v;

    v = PQgetvalue(res, 0, col);

    return (v[0] == '\0') ? "(none)" : v;
}


int
cli_show_models(int argc, char **argv)
{
    int                rc;
    PGconn            *conn;
    const char        *values[1];
    cli_models_args_t  a;

    memset(&a, 0, sizeof(cli_models_args_t));

    rc = cli_opt_read(argc, argv, cli_show_models_opts,
                      (void *[]) { &a.tenant, &a.prefix_arg });
    if (rc != -1) {
        return rc;
    }

    if (cli_models_target(argv[0], &a) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    values[0] = a.subject;

    rc = cli_models_run(conn, &a,
                        (a.tenant != NULL) ? cli_models_tenant_show_sql
                                           : cli_models_key_show_sql,
                        1, values, "cannot show models", NULL);

    cli_db_close(conn);

    return rc;
}
