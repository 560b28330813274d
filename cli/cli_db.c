/*
 * Copyright (C) Nexus authors
 *
 * nexusctl database access: connecting, running parameterized statements,
 * transactions and turning PostgreSQL errors into messages and exit codes.
 *
 * nexusctl is a short-lived process, so it uses libpq's blocking calls.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexusctl.h"
#include "cli_db.h"
#include "cli_out.h"


#define CLI_DB_URL_ENV          "NEXUS_DATABASE_URL"
#define CLI_DB_CONNECT_TIMEOUT  "10"
#define CLI_DB_MESSAGE_MAX      1024


static int cli_db_is_conninfo(const char *s);
static void cli_db_notice(void *arg, const PGresult *res);
static const char *cli_db_flatten(const char *msg);


PGconn *
cli_db_connect(int *rc)
{
    char        *err;
    PGconn      *conn;
    const char  *url, *timeout;
    const char  *keys[5], *values[5];
    PQconninfoOption  *opts;

    url = getenv(CLI_DB_URL_ENV);

    if (url == NULL || url[0] == '\0') {
        cli_error(CLI_DB_URL_ENV " is not set");
        *rc = CLI_USAGE;
        return NULL;
    }

    /*
     * libpq quotes the offending part of a malformed connection string in
     * its error, which could expose a password: check the syntax first and
     * say only that it is wrong. A string that is neither a URI nor
     * key=value pairs is a bare database name, as for psql.
     */

    if (cli_db_is_conninfo(url)) {
        err = NULL;
        opts = PQconninfoParse(url, &err);

        if (opts == NULL) {
            if (err != NULL) {
                PQfreemem(err);
            }

            cli_error(CLI_DB_URL_ENV " is not a valid libpq connection "
                      "string or URI");
            *rc = CLI_USAGE;
            return NULL;
        }

        PQconninfoFree(opts);
    }

    timeout = getenv("PGCONNECT_TIMEOUT");
    if (timeout == NULL || timeout[0] == '\0') {
        timeout = CLI_DB_CONNECT_TIMEOUT;
    }

    /* defaults first: what the URL sets overrides them */

    keys[0] = "connect_timeout";
    values[0] = timeout;
    keys[1] = "fallback_application_name";
    values[1] = "nexusctl";
    keys[2] = "client_encoding";
    values[2] = "UTF8";
    keys[3] = "dbname";
    values[3] = url;
    keys[4] = NULL;
    values[4] = NULL;

    conn = PQconnectdbParams(keys, values, 1);

    if (conn == NULL) {
        cli_error("cannot connect to PostgreSQL: out of memory");
        *rc = CLI_UNREACHABLE;
        return NULL;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        cli_error("cannot connect to PostgreSQL: %s",
                  cli_db_flatten(PQerrorMessage(conn)));
        PQfinish(conn);
        *rc = CLI_UNREACHABLE;
        return NULL;
    }

    PQsetNoticeReceiver(conn, cli_db_notice, NULL);

    *rc = CLI_OK;

    return conn;
}


void
cli_db_close(PGconn *conn)
{
    if (conn != NULL) {
        PQfinish(conn);
    }
}


/* the test libpq itself applies to a dbname when expand_dbname is set */

static int
cli_db_is_conninfo(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0
           || strncmp(s, "postgres://", 11) == 0
           || strchr(s, '=') != NULL;
}


/*
 * Server messages below WARNING (e.g. "relation already exists, skipping")
 * are noise for an operator; warnings are shown in the tool's own format.
 */

static void
cli_db_notice(void *arg, const PGresult *res)
{
    const char  *sev, *msg;

    (void) arg;

    sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    if (sev == NULL || msg == NULL
        || strcmp(sev, "NOTICE") == 0
        || strcmp(sev, "INFO") == 0
        || strcmp(sev, "LOG") == 0
        || strcmp(sev, "DEBUG") == 0)
    {
        return;
    }

    cli_warn("%s", msg);
}


PGresult *
cli_db_exec(PGconn *conn, const char *sql, int n, const char *const *values)
{
    return PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
}


int
cli_db_ok(const PGresult *res)
{
    ExecStatusType  st;

    if (res == NULL) {
        return 0;
    }

    st = PQresultStatus(res);

    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}


int
cli_db_state(const PGresult *res, const char *sqlstate)
{
    const char  *st;

    if (res == NULL) {
        return 0;
    }

    st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return st != NULL && strcmp(st, sqlstate) == 0;
}


const char *
cli_db_message(PGconn *conn, const PGresult *res)
{
    const char  *msg;

    msg = NULL;

    if (res != NULL) {
        msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    }

    if (msg == NULL) {
        msg = cli_db_flatten(PQerrorMessage(conn));
    }

    if (msg[0] == '\0') {
        msg = "unknown error";
    }

    return msg;
}


const char *
cli_db_value(const PGresult *res, int col, const char *none)
{
    return PQgetisnull(res, 0, col) ? none : PQgetvalue(res, 0, col);
}


int
cli_db_show(const char *sql, const char *subject, const char *kind,
    const char *what, cli_db_print_pt print)
{
    int      rc;
    char     msg[64];
    PGconn  *conn;

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    (void) snprintf(msg, sizeof(msg), "cannot show %s", what);

    rc = cli_db_row(conn, sql, 1, &subject, kind, msg, print);

    cli_db_close(conn);

    return rc;
}


int
cli_db_row(PGconn *conn, const char *sql, int n, const char *const *values,
    const char *kind, const char *what, cli_db_print_pt print)
{
    int        rc;
    PGresult  *res;

    res = cli_db_exec(conn, sql, n, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, what);

    } else if (PQntuples(res) == 0) {
        cli_error("%s \"%s\" not found", kind, values[0]);
        rc = CLI_FAILED;

    } else {
        print(values[0], res);
        rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
    }

    PQclear(res);

    return rc;
}


int
cli_db_fail(PGconn *conn, const PGresult *res, const char *what)
{
    if (PQstatus(conn) == CONNECTION_BAD) {
        cli_error("lost connection to PostgreSQL: %s",
                  cli_db_flatten(PQerrorMessage(conn)));
        return CLI_UNREACHABLE;
    }

    cli_error("%s: %s", what, cli_db_message(conn, res));

    return CLI_FAILED;
}


int
cli_db_begin(PGconn *conn)
{
    int        rc;
    PGresult  *res;

    res = cli_db_exec(conn, "BEGIN", 0, NULL);

    rc = cli_db_ok(res) ? CLI_OK : cli_db_fail(conn, res, "BEGIN");

    PQclear(res);

    return rc;
}


int
cli_db_commit(PGconn *conn)
{
    int        rc;
    PGresult  *res;

    res = cli_db_exec(conn, "COMMIT", 0, NULL);

    rc = cli_db_ok(res) ? CLI_OK : cli_db_fail(conn, res, "COMMIT");

    PQclear(res);

    return rc;
}


void
cli_db_rollback(PGconn *conn)
{
    if (PQstatus(conn) != CONNECTION_OK
        || PQtransactionStatus(conn) == PQTRANS_IDLE)
    {
        return;
    }

    PQclear(cli_db_exec(conn, "ROLLBACK", 0, NULL));
}


/*
 * libpq's own messages end in a newline and may span lines ("...failed:
 * Connection refused\n\tIs the server running..."): make them one line.
 */

static const char *
cli_db_flatten(const char *msg)
{
    size_t       n;
    const char  *p;

    static char  buf[CLI_DB_MESSAGE_MAX];

    n = 0;

    for (p = msg; *p != '\0' && n < sizeof(buf) - 1; p++) {

        if (*p == '\n' || *p == '\t' || *p == '\r') {
            if (n > 0 && buf[n - 1] != ' ') {
                buf[n++] = ' ';
            }

            continue;
        }

        buf[n++] = *p;
    }

    while (n > 0 && buf[n - 1] == ' ') {
        n--;
    }

    buf[n] = '\0';

    return buf;
}
