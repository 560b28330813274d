/*
 * Copyright (C) Nexus authors
 *
 * nexusctl output: messages on stderr and result tables on stdout.
 */

#ifndef CLI_OUT_H
#define CLI_OUT_H

#include <libpq-fe.h>


/* "nexusctl: <message>\n" on stderr. */
void cli_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* "nexusctl: warning: <message>\n" on stderr. */
void cli_warn(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/*
 * Makes an operator-supplied string safe to echo: bytes outside printable
 * ASCII, '"' and '\\' are escaped and the result is cut at 64 characters.
 * Returns one of two static buffers, so at most two calls may appear in
 * one printf.
 */
const char *cli_quote(const char *s);

/*
 * Prints a query result as a table: the column names as a header, then
 * one line per row, columns left-aligned and two spaces apart; NULL is
 * printed as "-". Returns 0, or -1 (with a message) if out of memory.
 */
int cli_table_print(const PGresult *res);

/* Flushes stdout; returns 0, or -1 (with a message) if writing failed. */
int cli_flush(void);


#endif /* CLI_OUT_H */
