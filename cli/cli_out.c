/*
 * Copyright (C) Nexus authors
 *
 * nexusctl output: messages on stderr and result tables on stdout.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_out.h"


#define CLI_QUOTE_MAX  64


static void cli_vmessage(const char *tag, const char *fmt, va_list args);


void
cli_error(const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    cli_vmessage("", fmt, args);
    va_end(args);
}


void
cli_warn(const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    cli_vmessage("warning: ", fmt, args);
    va_end(args);
}


static void
cli_vmessage(const char *tag, const char *fmt, va_list args)
{
    /* what went to stdout so far must come before the message */
    fflush(stdout);

    fprintf(stderr, "nexusctl: %s", tag);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
}


const char *
cli_quote(const char *s)
{
    size_t         n;
    unsigned char  c;
    char          *buf, *p;

    static char    bufs[2][CLI_QUOTE_MAX * 4 + 4];
    static int     which;

    buf = bufs[which];
    which ^= 1;

    p = buf;

    for (n = 0; s[n] != '\0'; n++) {

        if (n == CLI_QUOTE_MAX) {
            memcpy(p, "...", 3);
            p += 3;
            break;
        }

        c = (unsigned char) s[n];

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char) c;

        } else if (c < 0x20 || c > 0x7e) {
            p += sprintf(p, "\\x%02x", c);

        } else {
            *p++ = (char) c;
        }
    }

    *p = '\0';

    return buf;
}


int
cli_table_print(const PGresult *res)
{
    int          row, col, nrows, ncols, last;
    size_t      *width, len;
    const char  *v;

    nrows = PQntuples(res);
    ncols = PQnfields(res);

    if (ncols == 0) {
        return 0;
    }

    width = calloc(ncols, sizeof(size_t));
    if (width == NULL) {
        cli_error("out of memory");
        return -1;
    }

    for (col = 0; col < ncols; col++) {
        width[col] = strlen(PQfname(res, col));

        for (row = 0; row < nrows; row++) {
            len = PQgetisnull(res, row, col)
                  ? 1 : (size_t) PQgetlength(res, row, col);

            if (len > width[col]) {
                width[col] = len;
            }
        }
    }

    last = ncols - 1;

    /* row -1 is the header */

    for (row = -1; row < nrows; row++) {

        for (col = 0; col < ncols; col++) {

            if (row < 0) {
                v = PQfname(res, col);

            } else if (PQgetisnull(res, row, col)) {
                v = "-";

            } else {
                v = PQgetvalue(res, row, col);
            }

            if (col == last) {
                printf("%s\n", v);

            } else {
                printf("%-*s  ", (int) width[col], v);
            }
        }
    }

    free(width);

    return 0;
}


int
cli_flush(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("cannot write to standard output: %s", strerror(errno));
        return -1;
    }

    return 0;
}
