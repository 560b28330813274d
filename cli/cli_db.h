/*
 * Copyright (C) Nexus authors
 *
 * nexusctl database access: connecting, running parameterized statements,
 * transactions and turning PostgreSQL errors into messages and exit codes.
 */

#ifndef CLI_DB_H
#define CLI_DB_H

#include <libpq-fe.h>


/* SQLSTATEs nexusctl reacts to */
#define CLI_DB_UNIQUE_VIOLATION       "23505"
#define CLI_DB_FOREIGN_KEY_VIOLATION  "23503"

/* bytea, for binary parameters */
#define CLI_DB_BYTEA_OID              17

/* a timestamptz column as "2024-05-01T12:00:00Z" whatever the TimeZone */
#define CLI_DB_TS(col)                                                       \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


/*
 * Connects to NEXUS_DATABASE_URL. Returns the connection, or NULL after
 * printing why and setting *rc to CLI_USAGE (variable missing or not a
 * valid connection string) or CLI_UNREACHABLE (connection failed). The
 * connection string is never printed: it may hold a password.
 */
PGconn *cli_db_connect(int *rc);

void cli_db_close(PGconn *conn);

/*
 * Runs one statement with n text parameters (NULL pointers are SQL NULL)
 * and returns its result, which may be NULL; the caller checks it with
 * cli_db_ok() and frees it with PQclear().
 */
PGresult *cli_db_exec(PGconn *conn, const char *sql, int n,
    const char *const *values);

/* 1 if res is a successful command or query result, 0 otherwise. */
int cli_db_ok(const PGresult *res);

/* 1 if res failed with the given SQLSTATE, 0 otherwise. */
int cli_db_state(const PGresult *res, const char *sqlstate);

/* The primary error message of res, or of conn if res has none. */
const char *cli_db_message(PGconn *conn, const PGresult *res);

/*
 * Reports a failed statement as "nexusctl: <what>: <message>" and returns
 * the exit code: CLI_UNREACHABLE if the connection was lost, CLI_FAILED
 * otherwise. Only the primary message is printed: details may quote row
 * values, such as a key hash.
 */
int cli_db_fail(PGconn *conn, const PGresult *res, const char *what);

/* Column col of the first row of res, or none when it is NULL. */
const char *cli_db_value(const PGresult *res, int col, const char *none);

/*
 * A show verb: connects, runs sql with subject as its one parameter and
 * prints the first row with print(subject, res).  No row is
 * "<kind> \"<subject>\" not found"; a failed query is reported as
 * "cannot show <what>".  Returns the exit code.
 */
typedef void (*cli_db_print_pt)(const char *subject, const PGresult *res);

int cli_db_show(const char *sql, const char *subject, const char *kind,
    const char *what, cli_db_print_pt print);

/*
 * The same on an open connection, with n parameters, the first being the
 * subject; a failed query is reported as what ("cannot set quota").
 */
int cli_db_row(PGconn *conn, const char *sql, int n,
    const char *const *values, const char *kind, const char *what,
    cli_db_print_pt print);

/*
 * BEGIN, COMMIT and ROLLBACK. begin and commit return CLI_OK or report
 * the failure and return its exit code; rollback is best effort.
 */
int cli_db_begin(PGconn *conn);
int cli_db_commit(PGconn *conn);
void cli_db_rollback(PGconn *conn);


#endif /* CLI_DB_H */
