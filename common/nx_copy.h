/*
 * Copyright (C) Nexus authors
 *
 * PostgreSQL's COPY text format: one field of a row, escaped.
 */

#ifndef NX_COPY_H
#define NX_COPY_H

#include <stddef.h>

/* the most bytes nx_copy_escape() writes for len bytes of input */
#define NX_COPY_ESCAPED_MAX(len)  (3 * (len))

/*
 * Writes src[0..len) into dst as a field of COPY's text format: backslash,
 * tab, newline and carriage return escaped; a byte that is not part of
 * well-formed UTF-8, and NUL (which a text value cannot hold), become
 * U+FFFD, so that PostgreSQL never refuses the row for its encoding.
 * Returns the bytes written (at most NX_COPY_ESCAPED_MAX(len)).
 */
size_t nx_copy_escape(char *dst, const char *src, size_t len);

#endif /* NX_COPY_H */
