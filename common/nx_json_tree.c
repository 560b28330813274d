/*
 * Copyright (C) Nexus authors
 *
 * A yajl tree built in one allocation area.
 *
 * yajl_tree_parse() allocates every value, string and member array on its
 * own, and frees them one by one: a gateway call's request and answer made
 * about a hundred small malloc()s and free()s each, and glibc then spent
 * more time merging the freed chunks (malloc_consolidate, on nginx's next
 * request pool) than yajl spent parsing. Here yajl's parser is driven with
 * callbacks that build the same yajl_val tree (the same types, flags and
 * member order, so yajl's accessors and YAJL_IS_* work unchanged) in
 * chunks taken from one area, which the parser's own state uses too. A
 * parse costs one malloc() when the area's first chunk, sized from the
 * input, is enough, and nx_json_free() gives the whole tree back at once.
 *
 * The root value sits in the area's header, so nx_json_free() finds the
 * area from the root. A tree is read-only: nothing may be added to it.
 */

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "nx_json.h"


#define NX_JSON_ALIGN       16
#define NX_JSON_CHUNK_MIN   1024
/* the parser's own state: its handle, lexer and buffers (yajl 2.1) */
#define NX_JSON_PARSER_SIZE 3072
/* as deep as nx_json_parse() lets a document be, and one more */
#define NX_JSON_STACK       33

#define nx_json_align(n)                                                     \
    (((n) + NX_JSON_ALIGN - 1) & ~((size_t) NX_JSON_ALIGN - 1))


typedef struct nx_json_chunk_s  nx_json_chunk_t;

struct nx_json_chunk_s {
    nx_json_chunk_t     *next;
    char                *pos;
    char                *end;
};


typedef struct {
    nx_json_chunk_t      first;     /* the rest of this allocation */
    nx_json_chunk_t     *current;
    size_t               next_size;
    int                  root_used;
    int                  oom;       /* a chunk could not be had */
    struct yajl_val_s    root;
} nx_json_area_t;


typedef struct {
    yajl_val             value;     /* the object or array being filled */
    size_t               cap;
    char                *key;       /* an object's member name, waiting */
} nx_json_frame_t;


typedef struct {
    nx_json_area_t      *area;
    yajl_val             root;
    size_t               depth;
    nx_json_frame_t      stack[NX_JSON_STACK];
} nx_json_builder_t;


static void *nx_json_alloc(nx_json_area_t *a, size_t size);
static nx_json_area_t *nx_json_area_new(size_t size);
static void nx_json_free_area(nx_json_area_t *a);
static void nx_json_tree_oom(char *errbuf, size_t errlen);
static int nx_json_open(nx_json_builder_t *b, yajl_type type);
static yajl_val nx_json_value(nx_json_builder_t *b, yajl_type type);
static char *nx_json_strdup(nx_json_area_t *a, const char *s, size_t len);
static int nx_json_add(nx_json_builder_t *b, yajl_val v);
static long long nx_json_yajl_integer(const char *s, size_t len);

static int nx_json_on_null(void *ctx);
static int nx_json_on_boolean(void *ctx, int boolean);
static int nx_json_on_number(void *ctx, const char *s, size_t len);
static int nx_json_on_string(void *ctx, const unsigned char *s, size_t len);
static int nx_json_on_start_map(void *ctx);
static int nx_json_on_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int nx_json_on_end(void *ctx);
static int nx_json_on_start_array(void *ctx);

static void *nx_json_yajl_malloc(void *ctx, size_t size);
static void *nx_json_yajl_realloc(void *ctx, void *ptr, size_t size);
static void nx_json_yajl_free(void *ctx, void *ptr);


static const yajl_callbacks  nx_json_callbacks = {
    nx_json_on_null,
    nx_json_on_boolean,
    NULL,                       /* integers and doubles: as numbers */
    NULL,
    nx_json_on_number,
    nx_json_on_string,
    nx_json_on_start_map,
    nx_json_on_map_key,
    nx_json_on_end,
    nx_json_on_start_array,
    nx_json_on_end
};


yajl_val
nx_json_tree_parse(const char *buf, size_t len, char *errbuf, size_t errlen)
{
    size_t              n;
    yajl_handle         h;
    yajl_status         st;
    unsigned char      *msg;
    nx_json_builder_t   b;
    yajl_alloc_funcs    afs;

    if (len > (SIZE_MAX - NX_JSON_PARSER_SIZE) / 4) {
        return NULL;
    }

    /* values, strings and member arrays fit in about twice the text */
    b.area = nx_json_area_new(NX_JSON_PARSER_SIZE + 2 * len);
    if (b.area == NULL) {
        nx_json_tree_oom(errbuf, errlen);
        return NULL;
    }

    b.root = NULL;
    b.depth = 0;

    afs.malloc = nx_json_yajl_malloc;
    afs.realloc = nx_json_yajl_realloc;
    afs.free = nx_json_yajl_free;
    afs.ctx = b.area;

    h = yajl_alloc(&nx_json_callbacks, &afs, &b);
    if (h == NULL) {
        nx_json_free_area(b.area);
        nx_json_tree_oom(errbuf, errlen);
        return NULL;
    }

    /* as yajl_tree_parse(); nx_json_parse() has refused comments already */
    (void) yajl_config(h, yajl_allow_comments, 1);

    st = yajl_parse(h, (const unsigned char *) buf, len);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    if (st != yajl_status_ok || b.root == NULL || b.depth != 0) {
        if (b.area->oom) {
            nx_json_tree_oom(errbuf, errlen);

        } else if (errbuf != NULL && errlen > 0) {
            msg = yajl_get_error(h, 1, (const unsigned char *) buf, len);

            if (msg != NULL) {
                n = strlen((char *) msg);
                n = n < errlen - 1 ? n : errlen - 1;
                memcpy(errbuf, msg, n);
                errbuf[n] = '\0';
                yajl_free_error(h, msg);
            }
        }

        yajl_free(h);
        nx_json_free_area(b.area);
        return NULL;
    }

    yajl_free(h);

    return b.root;
}


void
nx_json_free(yajl_val v)
{
    if (v == NULL) {
        return;
    }

    nx_json_free_area((nx_json_area_t *)
                      ((char *) v - offsetof(nx_json_area_t, root)));
}


static void
nx_json_free_area(nx_json_area_t *a)
{
    nx_json_chunk_t  *c, *next;

    for (c = a->first.next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }

    free(a);
}


/* not the client's mistake: said apart from a syntax error */

static void
nx_json_tree_oom(char *errbuf, size_t errlen)
{
    if (errbuf != NULL && errlen > 0) {
        (void) strncpy(errbuf, "out of memory", errlen - 1);
        errbuf[errlen - 1] = '\0';
    }
}


static nx_json_area_t *
nx_json_area_new(size_t size)
{
    nx_json_area_t  *a;

    size = nx_json_align(size);

    a = malloc(nx_json_align(sizeof(nx_json_area_t)) + size);
    if (a == NULL) {
        return NULL;
    }

    a->first.next = NULL;
    a->first.pos = (char *) a + nx_json_align(sizeof(nx_json_area_t));
    a->first.end = a->first.pos + size;
    a->current = &a->first;
    a->next_size = size < NX_JSON_CHUNK_MIN ? NX_JSON_CHUNK_MIN : size;
    a->root_used = 0;
    a->oom = 0;

    return a;
}


static void *
nx_json_alloc(nx_json_area_t *a, size_t size)
{
    char             *p;
    size_t            csize;
    nx_json_chunk_t  *c;

    size = nx_json_align(size);

    if (size <= (size_t) (a->current->end - a->current->pos)) {
        p = a->current->pos;
        a->current->pos += size;
        return p;
    }

    /* the chunks double, so a large document takes few of them */
    csize = a->next_size;
    while (csize < size) {
        if (csize > SIZE_MAX / 2) {
            a->oom = 1;
            return NULL;
        }

        csize *= 2;
    }

    c = malloc(nx_json_align(sizeof(nx_json_chunk_t)) + csize);
    if (c == NULL) {
        a->oom = 1;
        return NULL;
    }

    c->pos = (char *) c + nx_json_align(sizeof(nx_json_chunk_t));
    c->end = c->pos + csize;
    c->next = a->first.next;
    a->first.next = c;
    a->current = c;

    if (a->next_size <= SIZE_MAX / 2) {
        a->next_size = csize * 2;
    }

    p = c->pos;
    c->pos += size;

    return p;
}


/* the first value yajl reports is the document's: it takes the root slot */

static yajl_val
nx_json_value(nx_json_builder_t *b, yajl_type type)
{
    yajl_val  v;

    if (!b->area->root_used) {
        b->area->root_used = 1;
        v = &b->area->root;

    } else {
        v = nx_json_alloc(b->area, sizeof(struct yajl_val_s));
        if (v == NULL) {
            return NULL;
        }
    }

    memset(v, 0, sizeof(struct yajl_val_s));
    v->type = type;

    return v;
}


static char *
nx_json_strdup(nx_json_area_t *a, const char *s, size_t len)
{
    char  *p;

    if (len == SIZE_MAX) {
        return NULL;
    }

    p = nx_json_alloc(a, len + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, len);
    p[len] = '\0';

    return p;
}


/* Appends v to the open object or array, or makes it the document. */

static int
nx_json_add(nx_json_builder_t *b, yajl_val v)
{
    size_t            cap;
    void             *keys, *values;
    nx_json_frame_t  *f;

    if (v == NULL) {
        return 0;
    }

    if (b->depth == 0) {
        if (b->root != NULL) {
            return 0;
        }

        b->root = v;
        return 1;
    }

    f = &b->stack[b->depth - 1];

    if (YAJL_IS_OBJECT(f->value)) {
        if (f->key == NULL) {
            return 0;
        }

        if (f->value->u.object.len == f->cap) {
            cap = f->cap ? f->cap * 2 : 8;

            keys = nx_json_alloc(b->area, cap * sizeof(char *));
            values = nx_json_alloc(b->area, cap * sizeof(yajl_val));
            if (keys == NULL || values == NULL) {
                return 0;
            }

            if (f->cap) {
                memcpy(keys, f->value->u.object.keys, f->cap * sizeof(char *));
                memcpy(values, f->value->u.object.values,
                       f->cap * sizeof(yajl_val));
            }

            f->value->u.object.keys = keys;
            f->value->u.object.values = values;
            f->cap = cap;
        }

        f->value->u.object.keys[f->value->u.object.len] = f->key;
        f->value->u.object.values[f->value->u.object.len] = v;
        f->value->u.object.len++;
        f->key = NULL;

        return 1;
    }

    if (f->value->u.array.len == f->cap) {
        cap = f->cap ? f->cap * 2 : 8;

        values = nx_json_alloc(b->area, cap * sizeof(yajl_val));
        if (values == NULL) {
            return 0;
        }

        if (f->cap) {
            memcpy(values, f->value->u.array.values,
                   f->cap * sizeof(yajl_val));
        }

        f->value->u.array.values = values;
        f->cap = cap;
    }

    f->value->u.array.values[f->value->u.array.len++] = v;

    return 1;
}


static int
nx_json_open(nx_json_builder_t *b, yajl_type type)
{
    yajl_val          v;
    nx_json_frame_t  *f;

    if (b->depth == NX_JSON_STACK) {
        return 0;
    }

    v = nx_json_value(b, type);

    if (!nx_json_add(b, v)) {
        return 0;
    }

    f = &b->stack[b->depth++];
    f->value = v;
    f->cap = 0;
    f->key = NULL;

    return 1;
}


static int
nx_json_on_null(void *ctx)
{
    nx_json_builder_t  *b = ctx;

    return nx_json_add(b, nx_json_value(b, yajl_t_null));
}


static int
nx_json_on_boolean(void *ctx, int boolean)
{
    nx_json_builder_t  *b = ctx;

    return nx_json_add(b, nx_json_value(b, boolean ? yajl_t_true
                                                    : yajl_t_false));
}


/* the flags, i and d as yajl_tree_parse() sets them */

static int
nx_json_on_number(void *ctx, const char *s, size_t len)
{
    nx_json_builder_t  *b = ctx;

    char      *end;
    yajl_val   v;

    v = nx_json_value(b, yajl_t_number);
    if (v == NULL) {
        return 0;
    }

    v->u.number.r = nx_json_strdup(b->area, s, len);
    if (v->u.number.r == NULL) {
        return 0;
    }

    errno = 0;
    v->u.number.i = nx_json_yajl_integer(v->u.number.r, len);
    if (errno == 0) {
        v->u.number.flags |= YAJL_NUMBER_INT_VALID;
    }

    end = NULL;
    errno = 0;
    v->u.number.d = strtod(v->u.number.r, &end);
    if (errno == 0 && end != NULL && *end == '\0') {
        v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    }

    return nx_json_add(b, v);
}


static int
nx_json_on_string(void *ctx, const unsigned char *s, size_t len)
{
    nx_json_builder_t  *b = ctx;

    yajl_val  v;

    v = nx_json_value(b, yajl_t_string);
    if (v == NULL) {
        return 0;
    }

    v->u.string = nx_json_strdup(b->area, (const char *) s, len);
    if (v->u.string == NULL) {
        return 0;
    }

    return nx_json_add(b, v);
}


static int
nx_json_on_start_map(void *ctx)
{
    return nx_json_open(ctx, yajl_t_object);
}


static int
nx_json_on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    nx_json_builder_t  *b = ctx;

    nx_json_frame_t  *f;

    if (b->depth == 0) {
        return 0;
    }

    f = &b->stack[b->depth - 1];

    if (!YAJL_IS_OBJECT(f->value) || f->key != NULL) {
        return 0;
    }

    f->key = nx_json_strdup(b->area, (const char *) s, len);

    return f->key != NULL;
}


static int
nx_json_on_end(void *ctx)
{
    nx_json_builder_t  *b = ctx;

    if (b->depth == 0) {
        return 0;
    }

    b->depth--;

    return 1;
}


static int
nx_json_on_start_array(void *ctx)
{
    return nx_json_open(ctx, yajl_t_array);
}


/*
 * What yajl_parse_integer() of yajl 2.1 (not exported) answers: ERANGE in
 * errno for anything but an optionally signed run of digits whose
 * magnitude fits a long long (so LLONG_MIN too is ERANGE, as in yajl),
 * without yajl's signed overflow on the way.
 */

static long long
nx_json_yajl_integer(const char *s, size_t len)
{
    int          d;
    long long    ret, sign;
    const char  *p, *end;

    ret = 0;
    sign = 1;
    p = s;
    end = s + len;

    if (p < end && *p == '-') {
        p++;
        sign = -1;
    }

    if (p < end && *p == '+') {
        p++;
    }

    for ( /* void */ ; p < end; p++) {
        d = *p - '0';

        if (d < 0 || d > 9 || ret > (LLONG_MAX - d) / 10) {
            errno = ERANGE;
            return sign == 1 ? LLONG_MAX : LLONG_MIN;
        }

        ret = ret * 10 + d;
    }

    return sign * ret;
}


/*
 * The parser's allocations come from the area too. A block keeps its size
 * in front of it, for realloc(); free() gives nothing back before the
 * tree is freed, and the parser frees its state when the parse ends.
 */

static void *
nx_json_yajl_malloc(void *ctx, size_t size)
{
    size_t  *p;

    if (size > SIZE_MAX - NX_JSON_ALIGN) {
        return NULL;
    }

    p = nx_json_alloc(ctx, NX_JSON_ALIGN + size);
    if (p == NULL) {
        return NULL;
    }

    *p = size;

    return (char *) p + NX_JSON_ALIGN;
}


static void *
nx_json_yajl_realloc(void *ctx, void *ptr, size_t size)
{
    void    *p;
    size_t   old;

    if (ptr == NULL) {
        return nx_json_yajl_malloc(ctx, size);
    }

    old = *(size_t *) ((char *) ptr - NX_JSON_ALIGN);

    if (size <= old) {
        return ptr;
    }

    p = nx_json_yajl_malloc(ctx, size);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, ptr, old);

    return p;
}


static void
nx_json_yajl_free(void *ctx, void *ptr)
{
    (void) ctx;
    (void) ptr;
}
