/*
 * Copyright (C) Nexus authors
 *
 * A growable byte buffer.  Capacity doubles from NX_BUF_MIN, so appending
 * n bytes one at a time costs O(n); a failed growth leaves the buffer as
 * it was, so a caller may give up without losing what it had.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_buf.h"
#include "nx_json.h"


#define NX_BUF_MIN  256


static int nx_buf_reserve(nx_buf_t *b, size_t n);


int
nx_buf_append(nx_buf_t *b, const void *p, size_t n)
{
    if (n == 0) {
        return 0;
    }

    if (p == NULL || nx_buf_reserve(b, n) != 0) {
        return -1;
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;

    return 0;
}


int
nx_buf_append_str(nx_buf_t *b, const char *s)
{
    if (s == NULL) {
        return -1;
    }

    return nx_buf_append(b, s, strlen(s));
}


int
nx_buf_append_json(nx_buf_t *b, const char *s, size_t n)
{
    size_t  e;

    if (n == 0) {
        return 0;
    }

    if (s == NULL) {
        return -1;
    }

    e = nx_json_escape_len(s, n);

    if (nx_buf_reserve(b, e) != 0) {
        return -1;
    }

    b->len += nx_json_escape(b->data + b->len, s, n);

    return 0;
}


void
nx_buf_reset(nx_buf_t *b)
{
    b->len = 0;
}


void
nx_buf_free(nx_buf_t *b)
{
    free(b->data);

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


/* room for n more bytes */

static int
nx_buf_reserve(nx_buf_t *b, size_t n)
{
    char    *p;
    size_t   cap;

    if (b->cap - b->len >= n && b->data != NULL) {
        return 0;
    }

    if (n > SIZE_MAX / 2 - b->len) {
        return -1;
    }

    cap = b->cap < NX_BUF_MIN ? NX_BUF_MIN : b->cap;

    while (cap - b->len < n) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }

    b->data = p;
    b->cap = cap;

    return 0;
}
