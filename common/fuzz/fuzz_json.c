/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_json: the input is parsed as a document (the
 * tree is walked with the accessors and must be at most 32 deep, and must
 * be the tree yajl_tree_parse() builds of the same text, unless a
 * surrogate escape is in it, which yajl decodes its own way), and is
 * escaped as a string body that must parse back, byte for byte when the
 * input is valid UTF-8 without NUL.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "fuzz_utf8.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static size_t
walk(yajl_val v, size_t depth)
{
    int          b;
    size_t       i, d, max;
    int64_t      n;
    const char  *s;

    if (v == NULL) {
        abort();
    }

    max = depth;

    (void) nx_json_string(v, &s);
    (void) nx_json_int(v, &n);
    (void) nx_json_bool(v, &b);

    if (YAJL_IS_STRING(v) && nx_json_string(v, &s) != 0) {
        abort();
    }

    if ((YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) && nx_json_bool(v, &b) != 0) {
        abort();
    }

    if (YAJL_IS_OBJECT(v)) {
        for (i = 0; i < v->u.object.len; i++) {
            if (nx_json_get(v, v->u.object.keys[i]) == NULL) {
                abort();
            }

            d = walk(v->u.object.values[i], depth + 1);
            max = d > max ? d : max;
        }

        max = depth + 1 > max ? depth + 1 : max;

    } else if (YAJL_IS_ARRAY(v)) {
        if (nx_json_get(v, "x") != NULL) {
            abort();
        }

        for (i = 0; i < v->u.array.len; i++) {
            d = walk(v->u.array.values[i], depth + 1);
            max = d > max ? d : max;
        }

        max = depth + 1 > max ? depth + 1 : max;
    }

    return max;
}


/* nx_json's area-built tree and yajl's own must be the same */

static void
same(yajl_val a, yajl_val b)
{
    size_t  i;

    if (a == NULL || b == NULL || a->type != b->type) {
        abort();
    }

    switch (a->type) {

    case yajl_t_string:
        if (strcmp(a->u.string, b->u.string) != 0) {
            abort();
        }

        break;

    case yajl_t_number:
        if (strcmp(a->u.number.r, b->u.number.r) != 0
            || a->u.number.flags != b->u.number.flags
            || ((a->u.number.flags & YAJL_NUMBER_INT_VALID)
                && a->u.number.i != b->u.number.i)
            || ((a->u.number.flags & YAJL_NUMBER_DOUBLE_VALID)
                && memcmp(&a->u.number.d, &b->u.number.d, sizeof(double))))
        {
            abort();
        }

        break;

    case yajl_t_object:
        if (a->u.object.len != b->u.object.len) {
            abort();
        }

        for (i = 0; i < a->u.object.len; i++) {
            if (strcmp(a->u.object.keys[i], b->u.object.keys[i]) != 0) {
                abort();
            }

            same(a->u.object.values[i], b->u.object.values[i]);
        }

        break;

    case yajl_t_array:
        if (a->u.array.len != b->u.array.len) {
            abort();
        }

        for (i = 0; i < a->u.array.len; i++) {
            same(a->u.array.values[i], b->u.array.values[i]);
        }

        break;

    default:
        break;
    }
}


/* "\\u" then a D and 8-F: a surrogate escape, paired or not */

static int
lone_surrogate_possible(const uint8_t *p, size_t n)
{
    size_t  i;

    for (i = 0; i + 3 < n; i++) {
        if (p[i] == '\\' && p[i + 1] == 'u' && (p[i + 2] | 0x20) == 'd'
            && ((p[i + 3] >= '8' && p[i + 3] <= '9')
                || ((p[i + 3] | 0x20) >= 'a' && (p[i + 3] | 0x20) <= 'f')))
        {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char         *esc, *doc, err[128];
    size_t        n, w, i;
    yajl_val      v, ref;
    const char   *s;

    /* as a document */

    memset(err, 'x', sizeof(err));
    v = nx_json_parse((const char *) data, size, err, sizeof(err));

    if (v == NULL) {
        if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0'
            || strchr(err, '\n') != NULL)
        {
            abort();
        }

    } else {
        if (walk(v, 0) > 32) {
            abort();
        }

        doc = malloc(size + 1);
        if (doc == NULL) {
            abort();
        }

        memcpy(doc, data, size);
        doc[size] = '\0';

        /* yajl decodes a surrogate without its pair its own way */
        if (!lone_surrogate_possible(data, size)) {
            ref = yajl_tree_parse(doc, NULL, 0);
            same(v, ref);
            yajl_tree_free(ref);
        }
        free(doc);

        nx_json_free(v);
    }

    /* as a string to escape */

    n = nx_json_escape_len((const char *) data, size);
    esc = malloc(n + 1);
    doc = malloc(n + 2);
    if (esc == NULL || doc == NULL) {
        abort();
    }

    w = nx_json_escape(esc, (const char *) data, size);
    if (w != n || n < size) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if ((unsigned char) esc[i] < 0x20) {
            abort();
        }

        if (esc[i] == '"' && (i == 0 || esc[i - 1] != '\\')) {
            abort();
        }
    }

    doc[0] = '"';
    memcpy(doc + 1, esc, n);
    doc[n + 1] = '"';

    v = nx_json_parse(doc, n + 2, err, sizeof(err));
    if (v == NULL || nx_json_string(v, &s) != 0) {
        abort();
    }

    if (memchr(data, '\0', size) == NULL && fuzz_utf8_valid(data, size)
        && (strlen(s) != size || memcmp(s, data, size) != 0))
    {
        abort();
    }

    nx_json_free(v);
    free(doc);
    free(esc);

    return 0;
}
