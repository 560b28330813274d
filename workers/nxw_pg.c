/*
 * Copyright (C) Nexus authors
 *
 * PostgreSQL for the workers: one libpq connection, its statements
 * prepared on every (re)connect, reconnects spaced by an exponential
 * backoff, and transactions retried while their failure is transient (a
 * lost connection, a serialization failure, a deadlock, a server that is
 * shutting down or starting).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nxw.h"


#define NXW_PG_BACKOFF_MIN   100
#define NXW_PG_BACKOFF_MAX   5000


static void nxw_pg_failed(nxw_pg_t *pg, const char *what, const char *err);


void
nxw_pg_init(nxw_pg_t *pg, const char *url, const char *role,
    const nxw_stmt_t *stmts, size_t nstmts)
{
    memset(pg, 0, sizeof(*pg));

    pg->url = (char *) url;
    pg->role = role;
    pg->stmts = stmts;
    pg->nstmts = nstmts;
    pg->backoff_ms = NXW_PG_BACKOFF_MIN;
}


int
nxw_pg_ready(nxw_pg_t *pg)
{
    char         app[64];
    size_t       i;
    PGresult    *res;
    nxw_log_t   *l;
    const char  *keys[4], *values[4];

    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK) {
        return 0;
    }

    if (pg->conn != NULL) {
        nxw_pg_failed(pg, "connection", PQerrorMessage(pg->conn));
        return -1;
    }

    if (nxw_mono_ms() < pg->retry_at) {
        return -1;
    }

    (void) snprintf(app, sizeof(app), "nexus-%s", pg->role);

    /* the URL first: the keys after it override what it says */
    keys[0] = "dbname";
    values[0] = pg->url;
    keys[1] = "connect_timeout";
    values[1] = "5";
    keys[2] = "application_name";
    values[2] = app;
    keys[3] = NULL;
    values[3] = NULL;

    pg->conn = PQconnectdbParams(keys, values, 1);

    if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
        nxw_pg_failed(pg, "connect",
                      pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return -1;
    }

    for (i = 0; i < pg->nstmts; i++) {
        res = PQprepare(pg->conn, pg->stmts[i].name, pg->stmts[i].sql,
                        pg->stmts[i].nparams, NULL);

        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* a schema that is not migrated: said loudly, retried */
            l = nxw_log(NXW_LOG_ERROR, "cannot prepare a statement "
                        "(are the migrations applied?)");
            nxw_log_str(l, "statement", pg->stmts[i].name);
            nxw_log_str(l, "error", res ? PQresultErrorMessage(res)
                                        : PQerrorMessage(pg->conn));
            nxw_log_end(l);
            PQclear(res);

            pg->down = 1;
            nxw_pg_failed(pg, "prepare", NULL);
            return -1;
        }

        PQclear(res);
    }

    pg->backoff_ms = NXW_PG_BACKOFF_MIN;

    if (pg->down) {
        pg->down = 0;
        nxw_log_msg(NXW_LOG_INFO, "PostgreSQL is back", NULL);
    }

    return 0;
}


PGresult *
nxw_pg_exec(nxw_pg_t *pg, const char *stmt, int n, const char *const *values)
{
    PGresult  *res;

    if (nxw_pg_ready(pg) != 0) {
        return NULL;
    }

    res = PQexecPrepared(pg->conn, stmt, n, values, NULL, NULL, 0);

    if (res == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
        PQclear(res);
        nxw_pg_failed(pg, stmt, PQerrorMessage(pg->conn));
        return NULL;
    }

    return res;
}


int
nxw_pg_command(nxw_pg_t *pg, const char *sql)
{
    int        rc;
    PGresult  *res;

    if (nxw_pg_ready(pg) != 0) {
        return -1;
    }

    res = PQexec(pg->conn, sql);

    if (res == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
        PQclear(res);
        nxw_pg_failed(pg, sql, PQerrorMessage(pg->conn));
        return -1;
    }

    rc = (PQresultStatus(res) == PGRES_COMMAND_OK) ? 0 : -1;
    PQclear(res);

    return rc;
}


int
nxw_pg_transient(nxw_pg_t *pg, PGresult *res)
{
    const char  *state;

    if (res == NULL || pg->conn == NULL
        || PQstatus(pg->conn) != CONNECTION_OK)
    {
        return 1;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state == NULL) {
        return 1;
    }

    return strncmp(state, "08", 2) == 0         /* connection exception */
           || strcmp(state, "40001") == 0       /* serialization failure */
           || strcmp(state, "40P01") == 0       /* deadlock */
           || strcmp(state, "55P03") == 0       /* lock not available */
           || strcmp(state, "53300") == 0       /* too many connections */
           || strncmp(state, "57P0", 4) == 0;   /* shutdown, starting */
}


int
nxw_pg_transaction(nxw_pg_t *pg, int (*fn)(nxw_pg_t *pg, void *arg),
    void *arg, int tries)
{
    int      rc, i;
    int64_t  delay;

    delay = 50;

    for (i = 0; i < tries; i++) {
        if (i > 0) {
            nxw_sleep_ms(delay);
            delay *= 2;
        }

        if (nxw_pg_ready(pg) != 0) {
            continue;
        }

        if (nxw_pg_command(pg, "BEGIN") != 0) {
            continue;
        }

        rc = fn(pg, arg);

        if (rc == 0 && nxw_pg_command(pg, "COMMIT") == 0) {
            return 0;
        }

        if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK) {
            (void) nxw_pg_command(pg, "ROLLBACK");
        }

        if (rc == -2) {
            return -2;
        }

        if (nxw_stop) {
            break;
        }
    }

    return -1;
}


void
nxw_pg_close(nxw_pg_t *pg)
{
    if (pg->conn != NULL) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
}


static void
nxw_pg_failed(nxw_pg_t *pg, const char *what, const char *err)
{
    size_t      n;
    char        msg[512];
    nxw_log_t  *l;

    if (!pg->down) {
        /* libpq's messages name hosts and users, never passwords */
        (void) snprintf(msg, sizeof(msg), "%s", err ? err : "");
        n = strlen(msg);

        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) {
            msg[--n] = '\0';
        }

        l = nxw_log(NXW_LOG_ERROR, "PostgreSQL is unavailable");
        nxw_log_str(l, "during", what);
        nxw_log_str(l, "error", msg);
        nxw_log_end(l);
        pg->down = 1;
    }

    nxw_pg_close(pg);

    pg->retry_at = nxw_mono_ms() + pg->backoff_ms;
    pg->backoff_ms *= 2;

    if (pg->backoff_ms > NXW_PG_BACKOFF_MAX) {
        pg->backoff_ms = NXW_PG_BACKOFF_MAX;
    }
}
