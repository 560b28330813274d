/*
 * Copyright (C) Nexus authors
 *
 * Parsing of the Authorization header value into a bearer token. The
 * token is only checked to be visible ASCII here; whether it is a
 * well-formed Nexus key is nx_key_parse()'s business.
 */

#include "nx_bearer.h"


#define nx_bearer_blank(c)    ((c) == ' ' || (c) == '\t')
#define nx_bearer_visible(c)  ((c) >= 0x21 && (c) <= 0x7e)


static int nx_bearer_tchar(unsigned char c);


nx_bearer_rc_t
nx_bearer_parse(const char *buf, size_t len, size_t max, const char **tok,
    size_t *toklen)
{
    size_t                i, k, start, end;
    const unsigned char  *p;

    static const char  scheme[] = "bearer";

    if (tok != NULL) {
        *tok = NULL;
    }

    if (toklen != NULL) {
        *toklen = 0;
    }

    if (buf == NULL || len == 0) {
        return NX_BEARER_EMPTY;
    }

    p = (const unsigned char *) buf;

    /* leading OWS is not part of a field value */

    for (i = 0; i < len && nx_bearer_blank(p[i]); i++) {
        /* void */
    }

    if (i == len) {
        return NX_BEARER_EMPTY;
    }

    if (len - i < sizeof(scheme) - 1) {
        return NX_BEARER_NOT_BEARER;
    }

    for (k = 0; k < sizeof(scheme) - 1; k++) {
        /* all letters, so setting 0x20 folds exactly ASCII case */
        if ((p[i + k] | 0x20) != (unsigned char) scheme[k]) {
            return NX_BEARER_NOT_BEARER;
        }
    }

    i += sizeof(scheme) - 1;

    if (i == len) {
        return NX_BEARER_MALFORMED;
    }

    if (!nx_bearer_blank(p[i])) {
        /* "Bearerx ..." is another scheme; "Bearer\0..." is garbage */
        return nx_bearer_tchar(p[i]) ? NX_BEARER_NOT_BEARER
                                     : NX_BEARER_MALFORMED;
    }

    while (i < len && nx_bearer_blank(p[i])) {
        i++;
    }

    if (i == len) {
        return NX_BEARER_MALFORMED;
    }

    start = i;

    while (i < len && nx_bearer_visible(p[i])) {
        i++;
    }

    end = i;

    while (i < len && nx_bearer_blank(p[i])) {
        i++;
    }

    if (i != len) {
        /* a second word, NUL, CTL or non-ASCII byte */
        return NX_BEARER_MALFORMED;
    }

    if (end - start > max) {
        return NX_BEARER_MALFORMED;
    }

    if (tok != NULL) {
        *tok = buf + start;
    }

    if (toklen != NULL) {
        *toklen = end - start;
    }

    return NX_BEARER_OK;
}


/* RFC 9110 tchar: what may follow "Bearer" in another scheme's name */

static int
nx_bearer_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
        || (c >= 'A' && c <= 'Z'))
    {
        return 1;
    }

    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}
