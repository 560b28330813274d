/*
 * Copyright (C) Nexus authors
 *
 * Parsing of the Authorization request header value.
 */

#ifndef NX_BEARER_H
#define NX_BEARER_H

#include <stddef.h>

typedef enum {
    NX_BEARER_OK = 0,
    NX_BEARER_EMPTY,        /* header present but empty or only blanks */
    NX_BEARER_NOT_BEARER,   /* another scheme (Basic, ...) */
    NX_BEARER_MALFORMED     /* "Bearer" with no token, NUL, CTL or non-ASCII,
                               embedded blanks, or token longer than max */
} nx_bearer_rc_t;

/*
 * Parses "Bearer <token>" (scheme case-insensitive, one or more spaces or
 * tabs, optional trailing blanks). On NX_BEARER_OK sets *tok / *toklen to
 * the token inside buf. Tokens longer than max are NX_BEARER_MALFORMED.
 * Never reads past len.
 */
nx_bearer_rc_t nx_bearer_parse(const char *buf, size_t len, size_t max,
    const char **tok, size_t *toklen);

#endif /* NX_BEARER_H */
