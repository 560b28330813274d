/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_copy: an escaped field stays within its bound,
 * is valid UTF-8 without NUL, tab, newline or carriage return, and reads
 * back (COPY's own unescaping) as the input with each byte that was not
 * well-formed UTF-8, and NUL, made U+FFFD.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_copy.h"
#include "nx_json.h"
#include "fuzz_utf8.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char    *out, *back, *want;
    size_t   n, i, j, w, k;

    out = malloc(NX_COPY_ESCAPED_MAX(size) + 1);
    back = malloc(NX_COPY_ESCAPED_MAX(size) + 1);
    want = malloc(NX_COPY_ESCAPED_MAX(size) + 1);
    if (out == NULL || back == NULL || want == NULL) {
        abort();
    }

    n = nx_copy_escape(out, (const char *) data, size);

    if (n > NX_COPY_ESCAPED_MAX(size)
        || !fuzz_utf8_valid((const uint8_t *) out, n))
    {
        abort();
    }

    /* COPY text's unescaping: what PostgreSQL stores */
    j = 0;

    for (i = 0; i < n; i++) {
        if (out[i] == '\0' || out[i] == '\t' || out[i] == '\n'
            || out[i] == '\r')
        {
            abort();
        }

        if (out[i] != '\\') {
            back[j++] = out[i];
            continue;
        }

        if (++i == n) {
            abort();
        }

        switch (out[i]) {
        case '\\': back[j++] = '\\'; break;
        case 't':  back[j++] = '\t'; break;
        case 'n':  back[j++] = '\n'; break;
        case 'r':  back[j++] = '\r'; break;
        default:   abort();
        }
    }

    /* the expected value, from the independent UTF-8 check */
    w = 0;

    for (i = 0; i < size; i += k) {
        if (data[i] < 0x80) {
            k = (data[i] != '\0');

        } else {
            /* one character: the length its lead byte says */
            k = (data[i] & 0xe0) == 0xc0 ? 2
                : (data[i] & 0xf0) == 0xe0 ? 3
                : (data[i] & 0xf8) == 0xf0 ? 4 : 0;

            if (k > size - i || !fuzz_utf8_valid(data + i, k)) {
                k = 0;
            }
        }

        if (k == 0) {
            memcpy(want + w, "\xef\xbf\xbd", 3);
            w += 3;
            k = 1;
            continue;
        }

        memcpy(want + w, data + i, k);
        w += k;
    }

    if (j != w || memcmp(back, want, w) != 0) {
        abort();
    }

    free(out);
    free(back);
    free(want);

    return 0;
}
