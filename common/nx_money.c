/*
 * Copyright (C) Nexus authors
 *
 * Fixed-point money: parsing, printing and the cost of a request.
 */

#include "nx_money.h"


static int64_t nx_money_clamp(int64_t v, int64_t max);


int
nx_money_parse(const char *s, size_t len, int scale, int64_t max,
    int64_t *out)
{
    int      decimals, point;
    size_t   i;
    int64_t  v;

    if (s == NULL || out == NULL || len == 0 || scale < 0 || scale > 18
        || s[0] < '0' || s[0] > '9')
    {
        return -1;
    }

    v = 0;
    decimals = 0;
    point = 0;

    for (i = 0; i < len; i++) {

        if (s[i] == '.') {
            if (point || i + 1 == len) {
                return -1;
            }

            point = 1;
            continue;
        }

        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        if (point && ++decimals > scale) {
            return -1;
        }

        if (v > (INT64_MAX - (s[i] - '0')) / 10) {
            return -1;
        }

        v = v * 10 + (s[i] - '0');
    }

    for ( /* void */ ; decimals < scale; decimals++) {
        if (v > INT64_MAX / 10) {
            return -1;
        }

        v *= 10;
    }

    if (v > max) {
        return -1;
    }

    *out = v;

    return 0;
}


size_t
nx_money_format(char *buf, int64_t v, int scale)
{
    int       i, keep;
    char      tmp[NX_MONEY_LEN];
    size_t    n, len;
    uint64_t  u;

    if (scale < 0 || scale > 18) {
        buf[0] = '\0';
        return 0;
    }

    len = 0;

    if (v < 0) {
        buf[len++] = '-';
        u = (uint64_t) 0 - (uint64_t) v;

    } else {
        u = (uint64_t) v;
    }

    /* the digits, least significant first, at least scale + 1 of them */
    n = 0;

    do {
        tmp[n++] = (char) ('0' + u % 10);
        u /= 10;
    } while (u || n < (size_t) scale + 1);

    for (i = (int) n - 1; i >= scale; i--) {
        buf[len++] = tmp[i];
    }

    /* decimals: all that are not trailing zeros, and at least two */
    keep = scale;

    while (keep > 2 && tmp[scale - keep] == '0') {
        keep--;
    }

    if (keep > 0) {
        buf[len++] = '.';

        for (i = scale - 1; i >= scale - keep; i--) {
            buf[len++] = tmp[i];
        }
    }

    buf[len] = '\0';

    return len;
}


int64_t
nx_money_cost(int64_t prompt, int64_t completion, int64_t in_price,
    int64_t out_price)
{
    int64_t  nano_k;

    /* tokens x nano-dollars per 1K: at most 2 x 10^8 x 10^10 < 2^63 */
    nano_k = nx_money_clamp(prompt, NX_MONEY_TOKENS_MAX)
             * nx_money_clamp(in_price, NX_MONEY_PRICE_MAX)
             + nx_money_clamp(completion, NX_MONEY_TOKENS_MAX)
               * nx_money_clamp(out_price, NX_MONEY_PRICE_MAX);

    /* nano-dollars x 1K tokens to micro-dollars: / 1000 / 1000, up */
    return (nano_k + 999999) / 1000000;
}


static int64_t
nx_money_clamp(int64_t v, int64_t max)
{
    return v < 0 ? 0 : (v > max ? max : v);
}
