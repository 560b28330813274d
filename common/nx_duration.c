/*
 * Copyright (C) Nexus authors
 *
 * Parsing of durations such as "30d" (one integer, one lowercase unit of
 * s m h d w) into seconds, bounded by 100 years of 365 days.
 */

#include "nx_duration.h"


#define NX_DURATION_MAX  (100LL * 365 * 86400)


int
nx_duration_parse(const char *buf, size_t len, int64_t *secs)
{
    size_t   i;
    int64_t  n, unit;

    if (buf == NULL || secs == NULL || len < 2) {
        return -1;
    }

    switch (buf[len - 1]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = 7 * 86400;
        break;
    default:
        return -1;
    }

    n = 0;

    for (i = 0; i < len - 1; i++) {
        if (buf[i] < '0' || buf[i] > '9') {
            return -1;
        }

        n = n * 10 + (buf[i] - '0');

        /* stops long before int64 could overflow */
        if (n > NX_DURATION_MAX) {
            return -1;
        }
    }

    if (n == 0 || n > NX_DURATION_MAX / unit) {
        return -1;
    }

    *secs = n * unit;

    return 0;
}
