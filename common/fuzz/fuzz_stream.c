/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_stream.  The first byte chooses the mode (SSE
 * or NDJSON) and the limit; the rest is the stream.  It is fed whole, one
 * byte at a time, and in pieces cut where a generator seeded by the input
 * says: every way must give the same events and the same result, and no
 * event may exceed the limit.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_stream.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    nx_buf_t  out;
    size_t    max;
    size_t    count;
    size_t    limit;        /* events possible for the input length */
} fuzz_collect_t;


static int
collect(void *ud, const char *event, size_t event_len, const char *data,
    size_t len)
{
    fuzz_collect_t  *c;
    uint32_t         n;

    c = ud;

    if (event == NULL || data == NULL || event_len + len > c->max
        || ++c->count > c->limit)
    {
        abort();
    }

    /* lengths first, so that different events never look the same */

    n = (uint32_t) event_len;
    if (nx_buf_append(&c->out, &n, sizeof(n)) != 0
        || nx_buf_append(&c->out, event, event_len) != 0)
    {
        abort();
    }

    n = (uint32_t) len;
    if (nx_buf_append(&c->out, &n, sizeof(n)) != 0
        || nx_buf_append(&c->out, data, len) != 0)
    {
        abort();
    }

    return 0;
}


/* feeds p[0..n) in pieces: step 0 whole, 1 bytes, else generated sizes */

static int
run(int mode, size_t max, const char *p, size_t n, uint32_t seed,
    int step, fuzz_collect_t *c)
{
    int          rc;
    size_t       i, k;
    nx_stream_t  s;

    nx_stream_init(&s, mode, max);

    c->max = max == 0 ? SIZE_MAX : max;
    c->limit = n;
    c->count = 0;

    rc = NX_STREAM_OK;

    for (i = 0; i < n; i += k) {
        if (step == 0) {
            k = n;

        } else if (step == 1) {
            k = 1;

        } else {
            seed = seed * 1103515245 + 12345;
            k = (seed >> 16) % 9;     /* empty feeds too */
        }

        if (k > n - i) {
            k = n - i;
        }

        rc = nx_stream_feed(&s, p + i, k, collect, c);
        if (rc != NX_STREAM_OK) {
            break;
        }
    }

    if (rc == NX_STREAM_OK) {
        rc = nx_stream_finish(&s, collect, c);
    }

    if (rc == NX_STREAM_OK && mode == NX_STREAM_NDJSON
        && nx_stream_pending(&s) != 0)
    {
        abort();
    }

    nx_stream_free(&s);

    return rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             mode, rc0, rc, step;
    size_t          max, n, i;
    uint32_t        seed;
    const char     *p;
    fuzz_collect_t  c0, c;

    if (size == 0) {
        return 0;
    }

    mode = data[0] & 1 ? NX_STREAM_NDJSON : NX_STREAM_SSE;
    max = (size_t) (data[0] >> 1) * 3;      /* 0: no limit */
    p = (const char *) data + 1;
    n = size - 1;

    seed = 2166136261u;
    for (i = 0; i < size; i++) {
        seed = (seed ^ data[i]) * 16777619u;
    }

    memset(&c0, 0, sizeof(c0));
    rc0 = run(mode, max, p, n, seed, 0, &c0);

    if (rc0 != NX_STREAM_OK && rc0 != NX_STREAM_TOO_LONG) {
        abort();
    }

    for (step = 1; step <= 3; step++) {
        memset(&c, 0, sizeof(c));
        rc = run(mode, max, p, n, seed + (uint32_t) step, step, &c);

        if (rc != rc0 || c.out.len != c0.out.len
            || (c.out.len != 0
                && memcmp(c.out.data, c0.out.data, c.out.len) != 0))
        {
            abort();
        }

        nx_buf_free(&c.out);
    }

    nx_buf_free(&c0.out);

    return 0;
}
