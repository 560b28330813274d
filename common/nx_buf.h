/*
 * Copyright (C) Nexus authors
 *
 * A growable byte buffer (malloc), for the translators of common/ that
 * produce output of unknown length.  Reuse one buffer across events with
 * nx_buf_reset(): its memory is kept.
 */

#ifndef NX_BUF_H
#define NX_BUF_H

#include <stddef.h>

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} nx_buf_t;

#define NX_BUF_INIT  { NULL, 0, 0 }

/* 0, or -1 when memory is exhausted (the buffer is then unchanged) */
int nx_buf_append(nx_buf_t *b, const void *p, size_t n);
int nx_buf_append_str(nx_buf_t *b, const char *s);

/* JSON-escaped s[0..n) (nx_json_escape), without quotes */
int nx_buf_append_json(nx_buf_t *b, const char *s, size_t n);

void nx_buf_reset(nx_buf_t *b);
void nx_buf_free(nx_buf_t *b);

#endif /* NX_BUF_H */
