/*
 * Copyright (C) Nexus authors
 *
 * Small JSON helpers: string escaping for output, and thin accessors over
 * yajl's tree API for input.
 */

#ifndef NX_JSON_H
#define NX_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

/*
 * Bytes needed to write src[0..len) as a JSON string body (without the
 * surrounding quotes). Control characters become \u00XX, '"' and '\\' are
 * escaped, invalid UTF-8 bytes become \ufffd.
 */
size_t nx_json_escape_len(const char *src, size_t len);

/* Writes the escaped form into dst (which has escape_len bytes); returns
 * the number of bytes written. */
size_t nx_json_escape(char *dst, const char *src, size_t len);

/*
 * Parses a JSON document of at most len bytes (need not be NUL-terminated):
 * RFC 8259 text, valid UTF-8, a value of any type at the top. Returns NULL
 * and fills errbuf on error ("what at byte N"). The tree is yajl's (yajl_val,
 * read with YAJL_IS_* and the accessors below) but lives in one
 * allocation area: the caller frees it with nx_json_free(), never with
 * yajl_tree_free(), and must not add to it. Nesting deeper than 32
 * levels is refused, as are NUL bytes, comments, and member names
 * containing \u0000; running out of memory says "out of memory". The error
 * message never quotes the document.
 */
yajl_val nx_json_parse(const char *buf, size_t len, char *errbuf,
    size_t errlen);

/*
 * Like nx_json_parse(), and also refuses "\u0000" in any string, so that
 * every string of the tree is exactly what the client sent (yajl's strings
 * are NUL-terminated). For bodies whose strings Nexus stores or acts on.
 */
yajl_val nx_json_parse_strict(const char *buf, size_t len, char *errbuf,
    size_t errlen);

/* Frees a tree of nx_json_parse*(); NULL is ignored. */
void nx_json_free(yajl_val v);

/*
 * The parser behind nx_json_parse() and nx_json_parse_strict()
 * (nx_json_tree.c): for nx_json.c only.
 */
yajl_val nx_json_tree_parse(const char *buf, size_t len, int strict,
    char *errbuf, size_t errlen);

/*
 * Length of the well-formed UTF-8 sequence at p[0..left) (Unicode 15,
 * table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF), or
 * 0 when there is none. left must be at least 1.
 */
size_t nx_utf8_len(const unsigned char *p, size_t left);

/* Object member lookup by name; NULL when v is not an object or the member
 * is absent. With duplicate names the last one wins. */
yajl_val nx_json_get(yajl_val v, const char *name);

/* Typed accessors: return 0 and set *out on success, -1 if v is NULL or of
 * another type (integers must be integral and fit int64; "2.0" and "1e3"
 * are integral). */
int nx_json_string(yajl_val v, const char **out);
int nx_json_int(yajl_val v, int64_t *out);
int nx_json_bool(yajl_val v, int *out);

#endif /* NX_JSON_H */
