/*
 * Copyright (C) Nexus authors
 *
 * Request ids: validation of a client-supplied X-Request-Id and
 * formatting of a generated one.
 */

#include "nx_reqid.h"


int
nx_reqid_valid(const char *buf, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (buf == NULL || len == 0 || len > NX_REQID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) buf[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9')
            || c == '.' || c == '_' || c == ':' || c == '-')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


void
nx_reqid_format(const uint8_t rnd[12], char out[NX_REQID_GEN_LEN])
{
    size_t  i;

    static const char  hex[] = "0123456789abcdef";

    out[0] = 'r';
    out[1] = 'e';
    out[2] = 'q';
    out[3] = '_';

    for (i = 0; i < 12; i++) {
        out[4 + 2 * i] = hex[rnd[i] >> 4];
        out[5 + 2 * i] = hex[rnd[i] & 0x0f];
    }
}
