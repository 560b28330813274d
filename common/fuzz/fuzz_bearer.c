/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_bearer_parse(): the first two bytes choose the
 * maximum token length, the rest is the header value.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_bearer.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
check(const char *buf, size_t len, size_t max)
{
    size_t           i, toklen;
    const char      *tok;
    nx_bearer_rc_t   rc;

    rc = nx_bearer_parse(buf, len, max, &tok, &toklen);

    switch (rc) {

    case NX_BEARER_OK:
        if (tok == NULL || toklen == 0 || toklen > max
            || tok < buf + 7 || tok + toklen > buf + len)
        {
            abort();
        }

        for (i = 0; i < toklen; i++) {
            if ((unsigned char) tok[i] < 0x21
                || (unsigned char) tok[i] > 0x7e)
            {
                abort();
            }
        }

        /* only blanks after the token */
        for (i = (size_t) (tok + toklen - buf); i < len; i++) {
            if (buf[i] != ' ' && buf[i] != '\t') {
                abort();
            }
        }

        break;

    case NX_BEARER_EMPTY:
        for (i = 0; i < len; i++) {
            if (buf[i] != ' ' && buf[i] != '\t') {
                abort();
            }
        }

        /* fall through */

    case NX_BEARER_NOT_BEARER:
    case NX_BEARER_MALFORMED:
        if (tok != NULL || toklen != 0) {
            abort();
        }

        break;

    default:
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char    *buf;
    size_t   max, len;

    if (size < 2) {
        check((const char *) data, size, 256);
        return 0;
    }

    max = (size_t) data[0] << 8 | data[1];
    len = size - 2;

    /* an exact copy, so that any over-read hits the redzone */
    buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data + 2, len);

    check(buf, len, max);
    check(buf, len, (size_t) -1);

    free(buf);

    return 0;
}
