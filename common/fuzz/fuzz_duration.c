/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_duration_parse(), checked against a naive
 * reference that works in long double.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_duration.h"


#define LIMIT  (100LL * 365 * 86400)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           rc, expect;
    char         *buf;
    size_t        i;
    int64_t       secs;
    long double   n, unit;

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data, size);

    secs = -7;
    rc = nx_duration_parse(buf, size, &secs);

    /* reference */
    expect = -1;
    n = 0;
    unit = 0;

    if (size >= 2) {
        switch (buf[size - 1]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 604800; break;
        default: break;
        }

        for (i = 0; unit != 0 && i < size - 1; i++) {
            if (buf[i] < '0' || buf[i] > '9') {
                unit = 0;
                break;
            }

            n = n * 10 + (buf[i] - '0');
            if (n > 1e30L) {
                n = 1e30L;
            }
        }

        if (unit != 0 && n > 0 && n * unit <= (long double) LIMIT) {
            expect = 0;
        }
    }

    if (rc != expect) {
        abort();
    }

    if (rc == 0) {
        if (secs < 1 || secs > LIMIT || (long double) secs != n * unit) {
            abort();
        }

    } else if (secs != -7) {
        abort();
    }

    free(buf);

    return 0;
}
