/*
 * Copyright (C) Nexus authors
 *
 * The JSON parser: a yajl tree built in one allocation area.
 *
 * The tree is yajl's (the same types, number flags and member order, so
 * yajl's accessors and YAJL_IS_* work unchanged), but the parser is our
 * own. yajl's lexer, driven through callbacks, and the scan that had to
 * run before it (yajl has no depth limit and nothing against NUL bytes)
 * were a fifth of a gateway call's CPU; this parser reads the text once,
 * with a fast path over plain ASCII in strings.
 *
 * It accepts exactly RFC 8259 JSON text with a value of any type at the
 * top, and refuses, with a message that never quotes the text:
 *   - anything else (comments, trailing commas, single quotes, leading
 *     zeros, trailing text after the value);
 *   - NUL bytes and raw control characters, invalid UTF-8 (overlong forms,
 *     encoded surrogates, anything above U+10FFFF);
 *   - nesting deeper than NX_JSON_MAX_DEPTH;
 *   - "\u0000" in a member name (a C string would end early and could
 *     shadow a shorter name), and in strict mode in any string.
 * An escaped surrogate without its pair becomes U+FFFD.
 *
 * Every value, string and member array comes from one area whose first
 * chunk, sized from the input, is usually enough: a parse costs one
 * malloc(), and nx_json_free() gives the whole tree back at once. The
 * root value sits in the area's header, so nx_json_free() finds the area
 * from the root. A tree is read-only: nothing may be added to it.
 *
 * While a container is open its values wait on one stack shared by all
 * levels, and go into an array of their exact size when it closes.
 */

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"


#define NX_JSON_ALIGN       16
#define NX_JSON_CHUNK_MIN   1024
#define NX_JSON_MAX_DEPTH   32
/* a document this long or shorter gets a first chunk of four times it */
#define NX_JSON_SMALL       4096
/* values waiting in open containers, before the stack goes to the heap */
#define NX_JSON_PENDING     128

#define nx_json_align(n)                                                     \
    (((n) + NX_JSON_ALIGN - 1) & ~((size_t) NX_JSON_ALIGN - 1))

#define nx_json_ws(c)                                                        \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')


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
    struct yajl_val_s    root;
} nx_json_area_t;


/* a value waiting for its container to close, with its member name */
typedef struct {
    char                *key;
    yajl_val             value;
} nx_json_pending_t;


typedef struct {
    const unsigned char *start;
    const unsigned char *p;
    const unsigned char *end;
    nx_json_area_t      *area;
    int                  strict;
    int                  oom;
    const char          *error;     /* a constant; NULL while all is well */
    size_t               depth;
    size_t               npending;
    size_t               cap;
    nx_json_pending_t   *pending;
    nx_json_pending_t    local[NX_JSON_PENDING];
} nx_json_parser_t;


static nx_json_area_t *nx_json_area_new(size_t size);
static void *nx_json_alloc(nx_json_area_t *a, size_t size);
static void nx_json_free_area(nx_json_area_t *a);
static yajl_val nx_json_value(nx_json_parser_t *ps, yajl_type type);
static yajl_val nx_json_fail(nx_json_parser_t *ps, const char *msg);
static yajl_val nx_json_oom(nx_json_parser_t *ps);
static yajl_val nx_json_parse_value(nx_json_parser_t *ps);
static yajl_val nx_json_parse_container(nx_json_parser_t *ps, int object);
static int nx_json_push(nx_json_parser_t *ps, char *key, yajl_val v);
static char *nx_json_parse_string(nx_json_parser_t *ps, int is_key);
static void nx_json_decode(const unsigned char *p, const unsigned char *end,
    char *out, size_t *len);
static int nx_json_special8(const unsigned char *p);
static unsigned nx_json_hex4(const unsigned char *p);
static yajl_val nx_json_parse_number(nx_json_parser_t *ps);
static const unsigned char *nx_json_digits(const unsigned char *p,
    const unsigned char *end);
static yajl_val nx_json_parse_literal(nx_json_parser_t *ps, const char *word,
    size_t n, yajl_type type);
static long long nx_json_yajl_integer(const char *s, size_t len);
static void nx_json_parse_error(char *errbuf, size_t errlen, const char *msg,
    size_t at);


yajl_val
nx_json_tree_parse(const char *buf, size_t len, int strict, char *errbuf,
    size_t errlen)
{
    yajl_val          v;
    nx_json_parser_t  ps;

    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }

    if (buf == NULL && len != 0) {
        nx_json_parse_error(errbuf, errlen, "no input", (size_t) -1);
        return NULL;
    }

    if (len > (SIZE_MAX - NX_JSON_CHUNK_MIN) / 4) {
        nx_json_parse_error(errbuf, errlen, "out of memory", (size_t) -1);
        return NULL;
    }

    /*
     * A small document is mostly structure: a 32-byte value for every few
     * bytes of text, so its first chunk is made four times the text, and
     * one malloc() is enough. A large one is mostly strings, twice is
     * ample; beyond the first chunk the area grows by doubling.
     */
    ps.area = nx_json_area_new(NX_JSON_CHUNK_MIN
                               + (len <= NX_JSON_SMALL ? 4 * len : 2 * len));
    if (ps.area == NULL) {
        nx_json_parse_error(errbuf, errlen, "out of memory", (size_t) -1);
        return NULL;
    }

    ps.start = (const unsigned char *) buf;
    ps.p = ps.start;
    ps.end = ps.start + len;
    ps.strict = strict;
    ps.oom = 0;
    ps.error = NULL;
    ps.depth = 0;
    ps.npending = 0;
    ps.cap = NX_JSON_PENDING;
    ps.pending = ps.local;

    while (ps.p < ps.end && nx_json_ws(*ps.p)) {
        ps.p++;
    }

    v = nx_json_parse_value(&ps);

    if (v != NULL) {
        while (ps.p < ps.end && nx_json_ws(*ps.p)) {
            ps.p++;
        }

        if (ps.p < ps.end) {
            v = nx_json_fail(&ps, *ps.p == '\0' ? "NUL byte in JSON text"
                                                 : "text after the value");
        }
    }

    if (ps.pending != ps.local) {
        free(ps.pending);
    }

    if (v == NULL) {
        nx_json_parse_error(errbuf, errlen, ps.oom ? "out of memory"
                                                   : ps.error,
                            ps.oom ? (size_t) -1
                                   : (size_t) (ps.p - ps.start));
        nx_json_free_area(ps.area);
        return NULL;
    }

    return v;
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
            return NULL;
        }

        csize *= 2;
    }

    c = malloc(nx_json_align(sizeof(nx_json_chunk_t)) + csize);
    if (c == NULL) {
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



static yajl_val
nx_json_parse_value(nx_json_parser_t *ps)
{
    if (ps->p == ps->end) {
        return nx_json_fail(ps, "unexpected end of text");
    }

    switch (*ps->p) {

    case '{':
        return nx_json_parse_container(ps, 1);

    case '[':
        return nx_json_parse_container(ps, 0);

    case '"':
        {
        yajl_val  v;
        char     *s;

        s = nx_json_parse_string(ps, 0);
        if (s == NULL) {
            return NULL;
        }

        v = nx_json_value(ps, yajl_t_string);
        if (v != NULL) {
            v->u.string = s;
        }

        return v;
        }

    case 't':
        return nx_json_parse_literal(ps, "true", 4, yajl_t_true);

    case 'f':
        return nx_json_parse_literal(ps, "false", 5, yajl_t_false);

    case 'n':
        return nx_json_parse_literal(ps, "null", 4, yajl_t_null);

    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return nx_json_parse_number(ps);

    case '/':
        return nx_json_fail(ps, "comments are not allowed in JSON");

    case '\0':
        return nx_json_fail(ps, "NUL byte in JSON text");

    default:
        return nx_json_fail(ps, "unexpected character");
    }
}


static yajl_val
nx_json_parse_container(nx_json_parser_t *ps, int object)
{
    char               *key;
    size_t              base, n, i;
    yajl_val            v, item;
    unsigned char       close;
    nx_json_pending_t  *pd;

    if (++ps->depth > NX_JSON_MAX_DEPTH) {
        return nx_json_fail(ps, "JSON nested deeper than 32 levels");
    }

    /* the container is made first: the document's root is the first */
    v = nx_json_value(ps, object ? yajl_t_object : yajl_t_array);
    if (v == NULL) {
        return NULL;
    }

    close = object ? '}' : ']';
    base = ps->npending;
    ps->p++;

    for ( ;; ) {
        while (ps->p < ps->end && nx_json_ws(*ps->p)) {
            ps->p++;
        }

        if (ps->p < ps->end && *ps->p == close && ps->npending == base) {
            ps->p++;
            break;
        }

        key = NULL;

        if (object) {
            if (ps->p == ps->end || *ps->p != '"') {
                return nx_json_fail(ps, ps->p == ps->end
                                        ? "unexpected end of text"
                                        : "expected a member name");
            }

            key = nx_json_parse_string(ps, 1);
            if (key == NULL) {
                return NULL;
            }

            while (ps->p < ps->end && nx_json_ws(*ps->p)) {
                ps->p++;
            }

            if (ps->p == ps->end || *ps->p != ':') {
                return nx_json_fail(ps, ps->p == ps->end
                                        ? "unexpected end of text"
                                        : "expected ':'");
            }

            ps->p++;

            while (ps->p < ps->end && nx_json_ws(*ps->p)) {
                ps->p++;
            }
        }

        item = nx_json_parse_value(ps);
        if (item == NULL || nx_json_push(ps, key, item) != 0) {
            return NULL;
        }

        while (ps->p < ps->end && nx_json_ws(*ps->p)) {
            ps->p++;
        }

        if (ps->p == ps->end) {
            return nx_json_fail(ps, "unexpected end of text");
        }

        if (*ps->p == close) {
            ps->p++;
            break;
        }

        if (*ps->p != ',') {
            return nx_json_fail(ps, object ? "expected ',' or '}'"
                                           : "expected ',' or ']'");
        }

        ps->p++;

        while (ps->p < ps->end && nx_json_ws(*ps->p)) {
            ps->p++;
        }

        if (ps->p < ps->end && *ps->p == close) {
            return nx_json_fail(ps, "trailing comma");
        }
    }

    n = ps->npending - base;
    pd = ps->pending + base;

    if (n > 0) {
        if (object) {
            v->u.object.keys = nx_json_alloc(ps->area, n * sizeof(char *));
            v->u.object.values = nx_json_alloc(ps->area,
                                               n * sizeof(yajl_val));
            if (v->u.object.keys == NULL || v->u.object.values == NULL) {
                return nx_json_oom(ps);
            }

            for (i = 0; i < n; i++) {
                v->u.object.keys[i] = pd[i].key;
                v->u.object.values[i] = pd[i].value;
            }

            v->u.object.len = n;

        } else {
            v->u.array.values = nx_json_alloc(ps->area, n * sizeof(yajl_val));
            if (v->u.array.values == NULL) {
                return nx_json_oom(ps);
            }

            for (i = 0; i < n; i++) {
                v->u.array.values[i] = pd[i].value;
            }

            v->u.array.len = n;
        }
    }

    ps->npending = base;
    ps->depth--;

    return v;
}


static int
nx_json_push(nx_json_parser_t *ps, char *key, yajl_val v)
{
    size_t              cap;
    nx_json_pending_t  *pd;

    if (ps->npending == ps->cap) {
        if (ps->cap > SIZE_MAX / 2 / sizeof(nx_json_pending_t)) {
            (void) nx_json_oom(ps);
            return -1;
        }

        cap = ps->cap * 2;

        pd = malloc(cap * sizeof(nx_json_pending_t));
        if (pd == NULL) {
            (void) nx_json_oom(ps);
            return -1;
        }

        memcpy(pd, ps->pending, ps->npending * sizeof(nx_json_pending_t));

        if (ps->pending != ps->local) {
            free(ps->pending);
        }

        ps->pending = pd;
        ps->cap = cap;
    }

    ps->pending[ps->npending].key = key;
    ps->pending[ps->npending].value = v;
    ps->npending++;

    return 0;
}


/*
 * The string at ps->p (its opening quote), checked whole before anything
 * is copied: the copy is then a memcpy(), or a decoding that cannot fail.
 */

static char *
nx_json_parse_string(nx_json_parser_t *ps, int is_key)
{
    int                   escaped;
    char                 *s;
    size_t                n;
    unsigned              cp, lo;
    const unsigned char  *p, *end, *from;
    unsigned char         c;

    p = ps->p + 1;
    end = ps->end;
    from = p;
    escaped = 0;

    for ( ;; ) {

        /* the common case: printable ASCII, eight bytes at a time */
        while (end - p >= 8 && !nx_json_special8(p)) {
            p += 8;
        }

        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"'
               && *p != '\\')
        {
            p++;
        }

        if (p == end) {
            ps->p = p;
            (void) nx_json_fail(ps, "unexpected end of text in a string");
            return NULL;
        }

        c = *p;

        if (c == '"') {
            break;
        }

        if (c >= 0x80) {
            n = nx_utf8_len(p, (size_t) (end - p));
            if (n == 0) {
                ps->p = p;
                (void) nx_json_fail(ps, "invalid UTF-8 in a string");
                return NULL;
            }

            p += n;
            continue;
        }

        if (c < 0x20) {
            ps->p = p;
            (void) nx_json_fail(ps, c == '\0'
                                    ? "NUL byte in JSON text"
                                    : "control character in a string");
            return NULL;
        }

        /* a backslash */

        escaped = 1;

        if (end - p < 2) {
            ps->p = end;
            (void) nx_json_fail(ps, "unexpected end of text in a string");
            return NULL;
        }

        switch (p[1]) {

        case '"': case '\\': case '/': case 'b':
        case 'f': case 'n': case 'r': case 't':
            p += 2;
            continue;

        case 'u':
            break;

        default:
            ps->p = p;
            (void) nx_json_fail(ps, "invalid escape in a string");
            return NULL;
        }

        if (end - p < 6 || (cp = nx_json_hex4(p + 2)) > 0xffff) {
            ps->p = p;
            (void) nx_json_fail(ps, "invalid \\u escape in a string");
            return NULL;
        }

        if (cp == 0 && (is_key || ps->strict)) {
            ps->p = p;
            (void) nx_json_fail(ps, is_key
                                    ? "member name contains \\u0000"
                                    : "string contains \\u0000");
            return NULL;
        }

        p += 6;

        /* a pair's second half is checked as one with its first */
        if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 && p[0] == '\\'
            && p[1] == 'u')
        {
            lo = nx_json_hex4(p + 2);

            if (lo >= 0xdc00 && lo <= 0xdfff) {
                p += 6;
            }
        }
    }

    ps->p = p + 1;

    n = (size_t) (p - from);

    /* decoded, a string is never longer than its text */
    s = nx_json_alloc(ps->area, n + 1);
    if (s == NULL) {
        (void) nx_json_oom(ps);
        return NULL;
    }

    if (!escaped) {
        memcpy(s, from, n);

    } else {
        nx_json_decode(from, p, s, &n);
    }

    s[n] = '\0';

    return s;
}


/* a checked string's text, escapes replaced; *len gets the bytes written */

static void
nx_json_decode(const unsigned char *p, const unsigned char *end, char *out,
    size_t *len)
{
    char      *o;
    unsigned   cp, lo;

    o = out;

    while (p < end) {
        if (*p != '\\') {
            *o++ = (char) *p++;
            continue;
        }

        switch (p[1]) {
        case 'b': *o++ = '\b'; p += 2; continue;
        case 'f': *o++ = '\f'; p += 2; continue;
        case 'n': *o++ = '\n'; p += 2; continue;
        case 'r': *o++ = '\r'; p += 2; continue;
        case 't': *o++ = '\t'; p += 2; continue;
        case 'u': break;
        default: *o++ = (char) p[1]; p += 2; continue;
        }

        cp = nx_json_hex4(p + 2);
        p += 6;

        if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 && p[0] == '\\'
            && p[1] == 'u' && (lo = nx_json_hex4(p + 2)) >= 0xdc00
            && lo <= 0xdfff)
        {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;

        } else if (cp >= 0xd800 && cp <= 0xdfff) {
            cp = 0xfffd;
        }

        if (cp < 0x80) {
            *o++ = (char) cp;

        } else if (cp < 0x800) {
            *o++ = (char) (0xc0 | (cp >> 6));
            *o++ = (char) (0x80 | (cp & 0x3f));

        } else if (cp < 0x10000) {
            *o++ = (char) (0xe0 | (cp >> 12));
            *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char) (0x80 | (cp & 0x3f));

        } else {
            *o++ = (char) (0xf0 | (cp >> 18));
            *o++ = (char) (0x80 | ((cp >> 12) & 0x3f));
            *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char) (0x80 | (cp & 0x3f));
        }
    }

    *len = (size_t) (o - out);
}


/*
 * Whether one of the eight bytes at p ends the fast path: a quote, a
 * backslash, a control character or a byte of a multibyte character.
 * (x - 0x01..) & ~x & 0x80.. is not zero exactly when a byte of x is zero,
 * and with 0x20.. in place of 0x01.. when a byte is below 0x20.
 */

static int
nx_json_special8(const unsigned char *p)
{
    uint64_t  w, q, b;

    memcpy(&w, p, 8);

    q = w ^ 0x2222222222222222ULL;
    b = w ^ 0x5c5c5c5c5c5c5c5cULL;

    return ((((w - 0x2020202020202020ULL) & ~w)
            | ((q - 0x0101010101010101ULL) & ~q)
            | ((b - 0x0101010101010101ULL) & ~b)
            | w)
           & 0x8080808080808080ULL) != 0;
}


/* four hex digits, or a value above 0xffff when they are not */

static unsigned
nx_json_hex4(const unsigned char *p)
{
    unsigned  v, d, i;

    v = 0;

    for (i = 0; i < 4; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            d = p[i] - '0';

        } else if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f') {
            d = (p[i] | 0x20) - 'a' + 10;

        } else {
            return 0x10000;
        }

        v = v << 4 | d;
    }

    return v;
}


/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, flagged as yajl does */

static yajl_val
nx_json_parse_number(nx_json_parser_t *ps)
{
    char                 *r, *e;
    size_t                n;
    yajl_val              v;
    const unsigned char  *p, *q, *end, *from;

    p = ps->p;
    end = ps->end;
    from = p;

    if (*p == '-') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        ps->p = p;
        return nx_json_fail(ps, "invalid number");
    }

    if (*p == '0') {
        p++;

        if (p < end && *p >= '0' && *p <= '9') {
            ps->p = p;
            return nx_json_fail(ps, "invalid number (leading zero)");
        }

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && *p == '.') {
        p++;

        q = nx_json_digits(p, end);
        if (q == NULL) {
            ps->p = p;
            return nx_json_fail(ps, "invalid number");
        }

        p = q;
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        q = nx_json_digits(p, end);
        if (q == NULL) {
            ps->p = p;
            return nx_json_fail(ps, "invalid number");
        }

        p = q;
    }

    n = (size_t) (p - from);
    ps->p = p;

    v = nx_json_value(ps, yajl_t_number);
    r = nx_json_alloc(ps->area, n + 1);
    if (v == NULL || r == NULL) {
        return nx_json_oom(ps);
    }

    memcpy(r, from, n);
    r[n] = '\0';
    v->u.number.r = r;

    /* i is set, and clamped, even when it is not valid, as yajl does */
    errno = 0;
    v->u.number.i = nx_json_yajl_integer(r, n);

    if (errno == 0) {
        v->u.number.flags |= YAJL_NUMBER_INT_VALID;

        /* exact in a double, as strtod() would say; not -0 */
        if (v->u.number.i != 0 && v->u.number.i < (1LL << 53)
            && v->u.number.i > -(1LL << 53))
        {
            v->u.number.d = (double) v->u.number.i;
            v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
            return v;
        }
    }

    e = NULL;
    errno = 0;
    v->u.number.d = strtod(r, &e);
    if (errno == 0 && e != NULL && *e == '\0') {
        v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    }

    return v;
}


/* past one digit or more at p, or NULL when there is none */

static const unsigned char *
nx_json_digits(const unsigned char *p, const unsigned char *end)
{
    if (p == end || *p < '0' || *p > '9') {
        return NULL;
    }

    do {
        p++;
    } while (p < end && *p >= '0' && *p <= '9');

    return p;
}


static yajl_val
nx_json_parse_literal(nx_json_parser_t *ps, const char *word, size_t n,
    yajl_type type)
{
    if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        return nx_json_fail(ps, "unexpected character");
    }

    ps->p += n;

    return nx_json_value(ps, type);
}


/* the first value made is the document's: it takes the root slot */

static yajl_val
nx_json_value(nx_json_parser_t *ps, yajl_type type)
{
    yajl_val  v;

    if (!ps->area->root_used) {
        ps->area->root_used = 1;
        v = &ps->area->root;

    } else {
        v = nx_json_alloc(ps->area, sizeof(struct yajl_val_s));
        if (v == NULL) {
            return nx_json_oom(ps);
        }
    }

    memset(v, 0, sizeof(struct yajl_val_s));
    v->type = type;

    return v;
}


static yajl_val
nx_json_fail(nx_json_parser_t *ps, const char *msg)
{
    if (ps->error == NULL) {
        ps->error = msg;
    }

    return NULL;
}


static yajl_val
nx_json_oom(nx_json_parser_t *ps)
{
    ps->oom = 1;

    return NULL;
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




/* "msg at byte N", or msg alone for at (size_t) -1; never the text */

static void
nx_json_parse_error(char *errbuf, size_t errlen, const char *msg, size_t at)
{
    if (errbuf == NULL || errlen == 0) {
        return;
    }

    if (msg == NULL) {
        msg = "invalid JSON";
    }

    if (at == (size_t) -1) {
        (void) snprintf(errbuf, errlen, "%s", msg);

    } else {
        (void) snprintf(errbuf, errlen, "%s at byte %zu", msg, at);
    }
}
