/*
 * Copyright (C) Nexus authors
 *
 * PostgreSQL's COPY text format, for the usage events the gateway writes
 * in batches (ngx_nexus_usage.c).
 */

#include <string.h>

#include "nx_copy.h"
#include "nx_json.h"


size_t
nx_copy_escape(char *dst, const char *src, size_t len)
{
    size_t                i, n, out;
    unsigned char         c;
    const unsigned char  *s;

    s = (const unsigned char *) src;
    out = 0;

    for (i = 0; i < len; /* void */) {
        c = s[i];

        if (c >= 0x80) {
            n = nx_utf8_len(s + i, len - i);

            if (n == 0) {
                memcpy(dst + out, "\xef\xbf\xbd", 3);
                out += 3;
                i++;
                continue;
            }

            memcpy(dst + out, s + i, n);
            out += n;
            i += n;
            continue;
        }

        switch (c) {

        case '\0':
            memcpy(dst + out, "\xef\xbf\xbd", 3);
            out += 3;
            break;

        case '\\':
            dst[out++] = '\\';
            dst[out++] = '\\';
            break;

        case '\t':
            dst[out++] = '\\';
            dst[out++] = 't';
            break;

        case '\n':
            dst[out++] = '\\';
            dst[out++] = 'n';
            break;

        case '\r':
            dst[out++] = '\\';
            dst[out++] = 'r';
            break;

        default:
            dst[out++] = (char) c;
        }

        i++;
    }

    return out;
}
