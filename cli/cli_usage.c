/*
 * Copyright (C) Nexus authors
 *
 * nexusctl show-usage: a tenant's usage in the current UTC day or month,
 * from the usage_events the gateway writes, in total and by model.
 *
 * One statement (common/nx_usage.h) renders the summary as JSON, the
 * document GET /v1/admin/usage/{tenant} returns: --json prints it as it
 * is, and the text form is printed from it, so the two never disagree.
 */

#include <stdio.h>
#include <string.h>

#include <nx_json.h>
#include <nx_usage.h>

#include "nexusctl.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


#define CLI_USAGE_NCOLS  6


static int cli_usage_print(const char *doc, size_t len);
static const char *cli_usage_number(yajl_val v, const char *name);
static const char *cli_usage_model(yajl_val m);


static const struct option  cli_show_usage_opts[] = {
    { "tenant",     required_argument,  NULL,  't' },
    { "period",     required_argument,  NULL,  'p' },
    { "json",       no_argument,        NULL,  'j' },
    { NULL,         0,                  NULL,  0 }
};


/* the table's columns: the model, then these members of each model */
static const char  *cli_usage_cols[CLI_USAGE_NCOLS] = {
    "model", "requests", "prompt_tokens", "completion_tokens",
    "total_tokens", "estimated"
};


int
cli_show_usage(int argc, char **argv)
{
    int           rc, json;
    PGconn       *conn;
    PGresult     *res;
    const char   *tenant, *period, *values[3];
    cli_tenant_t  t;

    tenant = NULL;
    period = "day";
    json = 0;

    rc = cli_opt_read(argc, argv, cli_show_usage_opts,
                      (void *[]) { &tenant, &period, &json });
    if (rc != -1) {
        return rc;
    }

    if (cli_tenant_required(argv[0], tenant) != 0) {
        return CLI_USAGE;
    }

    if (strcmp(period, "day") != 0 && strcmp(period, "month") != 0) {
        cli_error("invalid period \"%s\": day or month", cli_quote(period));
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = cli_tenant_find(conn, tenant, &t);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    values[0] = tenant;
    values[1] = "0";
    values[2] = period;

    res = cli_db_exec(conn, NX_USAGE_SQL, 3, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot show usage");

    } else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        /* deleted since it was found */
        cli_error("tenant \"%s\" not found", tenant);
        rc = CLI_FAILED;

    } else if (json) {
        printf("%s\n", PQgetvalue(res, 0, 0));
        rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;

    } else {
        rc = cli_usage_print(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0));
    }

    PQclear(res);
    cli_db_close(conn);

    return rc;
}


/*
 * usage of tenant acme, day 2026-11-22 (UTC): requests=3 ...
 * model   requests  prompt_tokens  ...
 * gpt-4o  3         12             ...
 *
 * Model names come from clients: they are printed through cli_quote().
 */

static int
cli_usage_print(const char *doc, size_t len)
{
    int          i, j, n;
    char         err[128];
    size_t       w, width[CLI_USAGE_NCOLS];
    yajl_val     v, models, m;
    const char  *tenant, *period, *start, *s;

    v = nx_json_parse(doc, len, err, sizeof(err));
    if (v == NULL) {
        cli_error("cannot read the usage summary: %s", err);
        return CLI_FAILED;
    }

    models = nx_json_get(v, "models");

    if (nx_json_string(nx_json_get(v, "tenant"), &tenant) != 0
        || nx_json_string(nx_json_get(v, "period"), &period) != 0
        || nx_json_string(nx_json_get(v, "start"), &start) != 0
        || strlen(start) < 10
        || !YAJL_IS_ARRAY(models))
    {
        nx_json_free(v);
        cli_error("cannot read the usage summary");
        return CLI_FAILED;
    }

    /* "2026-11-22T00:00:00Z": the day, or its first 7 for the month */
    n = (strcmp(period, "month") == 0) ? 7 : 10;

    printf("usage of tenant %s, %s %.*s (UTC):", tenant, period, n, start);

    for (j = 1; j < CLI_USAGE_NCOLS; j++) {
        printf(" %s=%s", cli_usage_cols[j],
               cli_usage_number(v, cli_usage_cols[j]));
    }

    printf("\n");

    if (models->u.array.len == 0) {
        goto done;
    }

    for (j = 0; j < CLI_USAGE_NCOLS; j++) {
        width[j] = strlen(cli_usage_cols[j]);
    }

    for (i = 0; i < (int) models->u.array.len; i++) {
        m = models->u.array.values[i];

        for (j = 0; j < CLI_USAGE_NCOLS; j++) {
            s = j ? cli_usage_number(m, cli_usage_cols[j])
                  : cli_usage_model(m);

            w = strlen(s);
            if (w > width[j]) {
                width[j] = w;
            }
        }
    }

    /* row -1 is the header */

    for (i = -1; i < (int) models->u.array.len; i++) {
        m = (i < 0) ? NULL : models->u.array.values[i];

        for (j = 0; j < CLI_USAGE_NCOLS; j++) {

            if (m == NULL) {
                s = cli_usage_cols[j];

            } else {
                s = j ? cli_usage_number(m, cli_usage_cols[j])
                      : cli_usage_model(m);
            }

            if (j == CLI_USAGE_NCOLS - 1) {
                printf("%s\n", s);

            } else {
                printf("%-*s  ", (int) width[j], s);
            }
        }
    }

done:

    nx_json_free(v);

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}


/* a number member as PostgreSQL wrote it, or "0" */

static const char *
cli_usage_number(yajl_val v, const char *name)
{
    yajl_val  n;

    n = nx_json_get(v, name);

    return YAJL_IS_NUMBER(n) ? YAJL_GET_NUMBER(n) : "0";
}


/* "-" for requests that named no model */

static const char *
cli_usage_model(yajl_val m)
{
    const char  *s;

    if (nx_json_string(nx_json_get(m, "model"), &s) != 0) {
        return "-";
    }

    return cli_quote(s);
}
