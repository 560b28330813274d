/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_money_parse(): whatever parses prints back to
 * the same value, and nothing beyond max is ever accepted.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_money.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int      scale;
    char    *buf, out[NX_MONEY_LEN];
    size_t   len;
    int64_t  v, w, max;

    if (size < 1) {
        return 0;
    }

    /* the first byte picks the scale and the bound */
    scale = data[0] % 10;
    max = (data[0] & 0x80) ? NX_MONEY_PRICE_MAX : INT64_MAX;

    buf = malloc(size);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data + 1, size - 1);

    if (nx_money_parse(buf, size - 1, scale, max, &v) == 0) {
        if (v < 0 || v > max) {
            abort();
        }

        len = nx_money_format(out, v, scale);

        if (len != strlen(out)
            || nx_money_parse(out, len, scale, INT64_MAX, &w) != 0
            || w != v)
        {
            abort();
        }
    }

    free(buf);

    return 0;
}
