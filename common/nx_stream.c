/*
 * Copyright (C) Nexus authors
 *
 * Incremental framing of Server-Sent Events and NDJSON.
 *
 * Input is cut into lines; a line that arrives whole in one feed is
 * handled in place, and only the tail of a feed that ends mid-line is
 * copied into s->line.  For SSE a CR ends a line at once; s->cr remembers
 * it so that an LF at the start of the next feed is taken as the second
 * half of a CRLF and not as an empty line (which would dispatch).
 *
 * The limit s->max applies to the bytes of the line being read plus the
 * data and event fields gathered so far, as they grow, so the outcome
 * does not depend on how the input was split.  A max of 0 means no limit.
 */

#include <stdint.h>
#include <string.h>

#include "nx_stream.h"


static int nx_stream_over(const nx_stream_t *s, size_t more);
static int nx_stream_line(nx_stream_t *s, const char *p, size_t len,
    nx_stream_event_pt cb, void *ud);
static int nx_stream_sse_line(nx_stream_t *s, const char *p, size_t len,
    nx_stream_event_pt cb, void *ud);
static int nx_stream_fail(nx_stream_t *s, int rc);


void
nx_stream_init(nx_stream_t *s, int mode, size_t max)
{
    memset(s, 0, sizeof(nx_stream_t));

    s->mode = mode;
    s->max = max == 0 ? SIZE_MAX : max;
}


int
nx_stream_feed(nx_stream_t *s, const char *p, size_t n,
    nx_stream_event_pt cb, void *ud)
{
    int          rc, sse;
    size_t       i, j, len;
    const char  *line;

    if (s->failed) {
        return s->failed;
    }

    if (p == NULL) {
        return NX_STREAM_OK;
    }

    sse = (s->mode == NX_STREAM_SSE);
    i = 0;

    while (i < n) {

        if (s->cr) {
            s->cr = 0;

            if (p[i] == '\n') {
                i++;
                continue;
            }
        }

        for (j = i; j < n; j++) {
            if (p[j] == '\n' || (p[j] == '\r' && sse)) {
                break;
            }
        }

        if (nx_stream_over(s, j - i)) {
            return nx_stream_fail(s, NX_STREAM_TOO_LONG);
        }

        if (j == n) {
            if (nx_buf_append(&s->line, p + i, j - i) != 0) {
                return nx_stream_fail(s, NX_STREAM_NOMEM);
            }

            break;
        }

        if (s->line.len == 0) {
            line = p + i;
            len = j - i;

        } else {
            if (nx_buf_append(&s->line, p + i, j - i) != 0) {
                return nx_stream_fail(s, NX_STREAM_NOMEM);
            }

            line = s->line.data;
            len = s->line.len;
        }

        rc = nx_stream_line(s, line, len, cb, ud);

        nx_buf_reset(&s->line);

        if (rc != NX_STREAM_OK) {
            return nx_stream_fail(s, rc);
        }

        s->cr = (p[j] == '\r');
        i = j + 1;
    }

    return NX_STREAM_OK;
}


/*
 * A last NDJSON line without its LF is complete at the end of input; an
 * SSE event is not, and stays buffered (and counted by _pending) without
 * being dispatched.
 */

int
nx_stream_finish(nx_stream_t *s, nx_stream_event_pt cb, void *ud)
{
    int  rc;

    if (s->failed) {
        return s->failed;
    }

    if (s->mode == NX_STREAM_NDJSON && s->line.len > 0) {
        rc = nx_stream_line(s, s->line.data, s->line.len, cb, ud);

        nx_buf_reset(&s->line);

        if (rc != NX_STREAM_OK) {
            return nx_stream_fail(s, rc);
        }
    }

    s->cr = 0;

    return NX_STREAM_OK;
}


size_t
nx_stream_pending(const nx_stream_t *s)
{
    return s->line.len + s->data.len + s->event.len + (s->has_data ? 1 : 0);
}


void
nx_stream_free(nx_stream_t *s)
{
    nx_buf_free(&s->line);
    nx_buf_free(&s->data);
    nx_buf_free(&s->event);
}


/* would more bytes of the current line take the event beyond max? */

static int
nx_stream_over(const nx_stream_t *s, size_t more)
{
    size_t  used;

    used = s->line.len + s->data.len + s->event.len;

    return used > s->max || more > s->max - used;
}


static int
nx_stream_line(nx_stream_t *s, const char *p, size_t len,
    nx_stream_event_pt cb, void *ud)
{
    size_t  i;

    if (s->mode == NX_STREAM_SSE) {
        return nx_stream_sse_line(s, p, len, cb, ud);
    }

    if (len > 0 && p[len - 1] == '\r') {
        len--;
    }

    /* a line of blanks is as empty as an empty one */

    for (i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
            break;
        }
    }

    if (i == len) {
        return NX_STREAM_OK;
    }

    if (cb(ud, "", 0, p, len) != 0) {
        return NX_STREAM_ABORT;
    }

    return NX_STREAM_OK;
}


static int
nx_stream_sse_line(nx_stream_t *s, const char *p, size_t len,
    nx_stream_event_pt cb, void *ud)
{
    int          rc;
    size_t       flen, vlen;
    const char  *colon, *v;

    if (len == 0) {
        rc = NX_STREAM_OK;

        if (s->has_data
            && cb(ud, s->event.len ? s->event.data : "", s->event.len,
                  s->data.len ? s->data.data : "", s->data.len)
               != 0)
        {
            rc = NX_STREAM_ABORT;
        }

        nx_buf_reset(&s->data);
        nx_buf_reset(&s->event);
        s->has_data = 0;

        return rc;
    }

    if (p[0] == ':') {
        return NX_STREAM_OK;
    }

    colon = memchr(p, ':', len);

    if (colon != NULL) {
        flen = (size_t) (colon - p);
        v = colon + 1;
        vlen = len - flen - 1;

        if (vlen > 0 && v[0] == ' ') {
            v++;
            vlen--;
        }

    } else {
        flen = len;
        v = p + len;
        vlen = 0;
    }

    if (flen == 4 && memcmp(p, "data", 4) == 0) {
        if (s->has_data && nx_buf_append(&s->data, "\n", 1) != 0) {
            return NX_STREAM_NOMEM;
        }

        if (nx_buf_append(&s->data, v, vlen) != 0) {
            return NX_STREAM_NOMEM;
        }

        s->has_data = 1;

    } else if (flen == 5 && memcmp(p, "event", 5) == 0) {
        nx_buf_reset(&s->event);

        if (nx_buf_append(&s->event, v, vlen) != 0) {
            return NX_STREAM_NOMEM;
        }
    }

    /* "id", "retry" and unknown fields mean nothing to a proxy */

    return NX_STREAM_OK;
}


static int
nx_stream_fail(nx_stream_t *s, int rc)
{
    s->failed = rc;

    return rc;
}
