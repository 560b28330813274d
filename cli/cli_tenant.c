/*
 * Copyright (C) Nexus authors
 *
 * nexusctl tenants: create-tenant and list-tenants.
 */

#include <stdio.h>
#include <string.h>

#include <nx_name.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


static const struct option  cli_create_tenant_opts[] = {
    { "name",               required_argument,  NULL,  'n' },
    { "platform",           no_argument,        NULL,  'p' },
    { "allow-all-models",   no_argument,        NULL,  'a' },
    { NULL,                 0,                  NULL,  0 }
};

static const struct option  cli_list_tenants_opts[] = {
    { NULL,         0,                  NULL,  0 }
};


/* the tenant as POST /v1/admin/tenants records it */

static const cli_audit_event_t  cli_tenant_created = {
    "admin.tenant.created",
    "SELECT t.id, json_build_object('id', t.id, 'name', t.name,"
    " 'status', t.status, 'platform', t.platform,"
    " 'allow_all_models', t.allow_all_models, 'created_at', t.created_at)"
    " FROM tenants t WHERE t.name = $1"
};


int
cli_create_tenant(int argc, char **argv)
{
    int          rc, platform, all_models;
    PGconn      *conn;
    PGresult    *res;
    const char  *name, *values[3];

    name = NULL;
    platform = 0;
    all_models = 0;

    rc = cli_opt_read(argc, argv, cli_create_tenant_opts,
                      (void *[]) { &name, &platform, &all_models });
    if (rc != -1) {
        return rc;
    }

    if (name == NULL) {
        cli_error("%s: --name is required", argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    if (cli_tenant_name_check(name) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    values[0] = name;
    values[1] = platform ? "true" : "false";
    /* without --allow-all-models the tenant uses no model until given some */
    values[2] = all_models ? "true" : "false";

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    res = cli_db_exec(conn,
              "INSERT INTO tenants (name, platform, allow_all_models) "
              "VALUES ($1, $2, $3) RETURNING id, name",
              3, values);

    if (cli_db_ok(res)) {
        rc = cli_audit_commit(conn, &cli_tenant_created, 1, values);

        if (rc == CLI_OK) {
            printf("tenant %s %s\n", PQgetvalue(res, 0, 0),
                   PQgetvalue(res, 0, 1));
            rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
        }

    } else if (cli_db_state(res, CLI_DB_UNIQUE_VIOLATION)) {
        cli_error("tenant \"%s\" already exists", name);
        rc = CLI_FAILED;

    } else {
        rc = cli_db_fail(conn, res, "cannot create tenant");
    }

    PQclear(res);
    cli_db_rollback(conn);
    cli_db_close(conn);

    return rc;
}


int
cli_list_tenants(int argc, char **argv)
{
    int        c, rc;
    PGconn    *conn;
    PGresult  *res;

    c = cli_getopt(argc, argv, cli_list_tenants_opts);
    if (c != -1) {
        return cli_opt_usage(argv[0], c);
    }

    if (cli_opt_end(argc, argv) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    res = cli_db_exec(conn,
              "SELECT id, name, status,"
              " CASE WHEN platform THEN 'yes' ELSE 'no' END AS platform, "
              CLI_DB_TS("created_at") " AS created_at "
              "FROM tenants ORDER BY id",
              0, NULL);

    if (cli_db_ok(res)) {
        rc = (cli_table_print(res) == 0 && cli_flush() == 0)
             ? CLI_OK : CLI_FAILED;

    } else {
        rc = cli_db_fail(conn, res, "cannot list tenants");
    }

    PQclear(res);
    cli_db_close(conn);

    return rc;
}


int
cli_tenant_name_check(const char *name)
{
    if (nx_tenant_name_valid(name, strlen(name)) != 0) {
        cli_error("invalid tenant name \"%s\": 1 to 63 of a-z 0-9 _ -, "
                  "starting with a letter or digit", cli_quote(name));
        return -1;
    }

    return 0;
}


int
cli_tenant_required(const char *verb, const char *name)
{
    if (name == NULL) {
        cli_error("%s: --tenant is required", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    return cli_tenant_name_check(name);
}


int
cli_tenant_clear(PGconn *conn, const char *sql, const char *name,
    const char *what, const cli_audit_event_t *ev)
{
    int            rc, cleared;
    char           msg[64];
    PGresult      *res;
    const char    *values[1];
    cli_tenant_t   t;

    values[0] = name;

    (void) snprintf(msg, sizeof(msg), "cannot clear %s", what);

    rc = cli_audit_exec(conn, sql, 1, values, msg, ev, &res);
    if (rc != CLI_OK) {
        return rc;
    }

    cleared = (res != NULL);
    PQclear(res);

    /* nothing to clear, or no such tenant */
    if (!cleared) {
        rc = cli_tenant_find(conn, name, &t);
        if (rc != CLI_OK) {
            return rc;
        }
    }

    printf("%s of tenant %s: %s\n", what, name, cleared ? "cleared" : "none");

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}


int
cli_tenant_find(PGconn *conn, const char *name, cli_tenant_t *t)
{
    int          rc;
    PGresult    *res;
    const char  *values[1];

    if (cli_tenant_name_check(name) != 0) {
        return CLI_USAGE;
    }

    values[0] = name;

    res = cli_db_exec(conn,
              "SELECT id, status = 'active' FROM tenants WHERE name = $1",
              1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot look up tenant");

    } else if (PQntuples(res) == 0) {
        cli_error("tenant \"%s\" not found", name);
        rc = CLI_FAILED;

    } else {
        snprintf(t->id, sizeof(t->id), "%s", PQgetvalue(res, 0, 0));
        t->active = (PQgetvalue(res, 0, 1)[0] == 't');
        rc = CLI_OK;
    }

    PQclear(res);

    return rc;
}
