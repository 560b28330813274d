/*
 * Copyright (C) Nexus authors
 *
 * Incremental framing of upstream streams: Server-Sent Events (the WHATWG
 * rules: LF, CRLF or CR line ends; "event:" and "data:" fields, several
 * data lines joined with LF; ":" comments and other fields ignored; an
 * empty line dispatches) and NDJSON (one event per non-empty line).  Bytes
 * arrive in arbitrary pieces; an event is dispatched as soon as its last
 * line is complete.
 */

#ifndef NX_STREAM_H
#define NX_STREAM_H

#include <stddef.h>
#include "nx_buf.h"

#define NX_STREAM_SSE       0
#define NX_STREAM_NDJSON    1

#define NX_STREAM_OK        0
#define NX_STREAM_ABORT    -1   /* the callback returned non-zero */
#define NX_STREAM_TOO_LONG -2   /* an event exceeds max bytes */
#define NX_STREAM_NOMEM    -3

/*
 * One event.  SSE: event is the "event:" field ("" when absent), data the
 * joined data lines (an event with no data line is not dispatched).
 * NDJSON: event is "", data the line without its line end.  Neither is
 * NUL-terminated.  Return 0 to go on.
 */
typedef int (*nx_stream_event_pt)(void *ud, const char *event,
    size_t event_len, const char *data, size_t len);

typedef struct {
    int        mode;
    size_t     max;         /* bytes of one event, fields included */
    nx_buf_t   line;        /* the incomplete line */
    nx_buf_t   data;        /* SSE: data of the event being built */
    nx_buf_t   event;       /* SSE: its event field */
    int        cr;          /* the last byte seen was CR */
    int        has_data;
    int        failed;      /* once set, feed returns it again */
} nx_stream_t;

void nx_stream_init(nx_stream_t *s, int mode, size_t max);

/* Feeds p[0..n); returns NX_STREAM_OK or an error (sticky). */
int nx_stream_feed(nx_stream_t *s, const char *p, size_t n,
    nx_stream_event_pt cb, void *ud);

/*
 * End of input.  NDJSON dispatches a last line without a line end; SSE
 * discards an event that was not terminated by an empty line (as a
 * browser does).  Returns NX_STREAM_OK, or an error.
 */
int nx_stream_finish(nx_stream_t *s, nx_stream_event_pt cb, void *ud);

/* Bytes buffered in an incomplete line or event: not 0 at the end of a
 * stream means the upstream stopped mid-event. */
size_t nx_stream_pending(const nx_stream_t *s);

void nx_stream_free(nx_stream_t *s);

#endif /* NX_STREAM_H */
