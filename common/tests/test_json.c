/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_json: escaping of arbitrary bytes, the guarded yajl
 * parser (depth, NUL, comments, unterminated input) and the accessors.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"


/* escapes src[0..len) into a NUL-terminated heap string */

static char *
escape(const char *src, size_t len)
{
    char    *dst;
    size_t   n, w;

    n = nx_json_escape_len(src, len);
    dst = malloc(n + 1);
    assert_non_null(dst);

    w = nx_json_escape(dst, src, len);
    assert_int_equal(w, n);
    dst[n] = '\0';

    return dst;
}


static void
expect_escape(const char *src, size_t len, const char *expect)
{
    char  *e;

    e = escape(src, len);
    assert_string_equal(e, expect);
    free(e);
}


#define ESC(s, expect)  expect_escape(s, sizeof(s) - 1, expect)


/* parses "<escaped>" and returns the tree (asserting success) */

static yajl_val
parse_quoted(const char *src, size_t len)
{
    char      *e, *doc, err[128];
    size_t     n;
    yajl_val   v;

    e = escape(src, len);
    n = strlen(e);
    doc = malloc(n + 2);
    assert_non_null(doc);
    doc[0] = '"';
    memcpy(doc + 1, e, n);
    doc[n + 1] = '"';

    v = nx_json_parse(doc, n + 2, err, sizeof(err));
    if (v == NULL) {
        print_error("parse of \"%s\" failed: %s\n", e, err);
    }

    assert_non_null(v);
    assert_true(YAJL_IS_STRING(v));

    free(doc);
    free(e);

    return v;
}


static yajl_val
parse_ok(const char *s)
{
    char      err[128];
    yajl_val  v;

    v = nx_json_parse(s, strlen(s), err, sizeof(err));
    if (v == NULL) {
        print_error("parse of %s failed: %s\n", s, err);
    }

    assert_non_null(v);

    return v;
}


static void
parse_bad(const char *s, size_t len)
{
    char      err[128];
    yajl_val  v;

    memset(err, 0, sizeof(err));
    v = nx_json_parse(s, len, err, sizeof(err));
    assert_null(v);
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n'));
}


#define BAD(s)  parse_bad(s, sizeof(s) - 1)
#define BAD_STR(s)  parse_bad(s, strlen(s))


static void
test_escape_plain(void **state)
{
    (void) state;

    ESC("", "");
    ESC("hello world", "hello world");
    ESC("/path/~!@#$%^&*()", "/path/~!@#$%^&*()");
    ESC("\x7f", "\x7f");
    assert_int_equal(nx_json_escape_len("", 0), 0);
}


static void
test_escape_specials(void **state)
{
    (void) state;

    ESC("\"", "\\\"");
    ESC("\\", "\\\\");
    ESC("a\"b\\c", "a\\\"b\\\\c");
    ESC("\n", "\\u000a");
    ESC("\r\n", "\\u000d\\u000a");
    ESC("\t", "\\u0009");
    ESC("\x1f", "\\u001f");
    ESC("\x01\x02", "\\u0001\\u0002");
    ESC("\b\f", "\\u0008\\u000c");
}


static void
test_escape_nul(void **state)
{
    (void) state;

    ESC("\0", "\\u0000");
    ESC("a\0b", "a\\u0000b");
    ESC("\0\0", "\\u0000\\u0000");
}


static void
test_escape_utf8_valid(void **state)
{
    (void) state;

    ESC("caf\xc3\xa9", "caf\xc3\xa9");                 /* U+00E9 */
    ESC("\xc2\x80", "\xc2\x80");                       /* U+0080 */
    ESC("\xdf\xbf", "\xdf\xbf");                       /* U+07FF */
    ESC("\xe0\xa0\x80", "\xe0\xa0\x80");               /* U+0800 */
    ESC("\xe2\x82\xac", "\xe2\x82\xac");               /* euro */
    ESC("\xed\x9f\xbf", "\xed\x9f\xbf");               /* U+D7FF */
    ESC("\xee\x80\x80", "\xee\x80\x80");               /* U+E000 */
    ESC("\xef\xbf\xbd", "\xef\xbf\xbd");               /* U+FFFD */
    ESC("\xf0\x90\x80\x80", "\xf0\x90\x80\x80");       /* U+10000 */
    ESC("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");       /* emoji */
    ESC("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");       /* U+10FFFF */
}


static void
test_escape_utf8_invalid(void **state)
{
    (void) state;

    ESC("\x80", "\\ufffd");
    ESC("\xbf", "\\ufffd");
    ESC("\xff", "\\ufffd");
    ESC("\xfe", "\\ufffd");
    ESC("a\xff" "b", "a\\ufffdb");

    /* overlong forms */
    ESC("\xc0\x80", "\\ufffd\\ufffd");
    ESC("\xc1\xbf", "\\ufffd\\ufffd");
    ESC("\xe0\x80\x80", "\\ufffd\\ufffd\\ufffd");
    ESC("\xe0\x9f\xbf", "\\ufffd\\ufffd\\ufffd");
    ESC("\xf0\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
    ESC("\xf0\x8f\xbf\xbf", "\\ufffd\\ufffd\\ufffd\\ufffd");

    /* surrogates */
    ESC("\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd");
    ESC("\xed\xbf\xbf", "\\ufffd\\ufffd\\ufffd");

    /* above U+10FFFF */
    ESC("\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");
    ESC("\xf5\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd");

    /* truncated, at the end and before ASCII */
    ESC("\xe2\x82", "\\ufffd\\ufffd");
    ESC("\xe2\x82" "a", "\\ufffd\\ufffda");
    ESC("\xf0\x9f\x98", "\\ufffd\\ufffd\\ufffd");
    ESC("\xc3", "\\ufffd");
    ESC("\xc3\"", "\\ufffd\\\"");

    /* a valid character right after an invalid byte survives */
    ESC("\xff\xc3\xa9", "\\ufffd\xc3\xa9");
}


static void
test_escape_len_respected(void **state)
{
    char  *src;

    (void) state;

    /* a truncated sequence at len is invalid even if the buffer goes on */
    expect_escape("\xc3\xa9", 1, "\\ufffd");
    expect_escape("\xe2\x82\xac", 2, "\\ufffd\\ufffd");
    expect_escape("ab\"", 2, "ab");

    src = malloc(2);
    assert_non_null(src);
    memcpy(src, "\xf0\x9f", 2);
    expect_escape(src, 2, "\\ufffd\\ufffd");
    free(src);
}


static void
test_escape_roundtrip_all_bytes(void **state)
{
    int         c;
    char        buf[256];
    yajl_val    v;
    const char  *s;

    (void) state;

    /* each byte alone */
    for (c = 0; c < 256; c++) {
        buf[0] = (char) c;
        v = parse_quoted(buf, 1);
        assert_int_equal(nx_json_string(v, &s), 0);

        if (c >= 0x01 && c < 0x80) {
            assert_int_equal(strlen(s), 1);
            assert_int_equal((unsigned char) s[0], c);

        } else if (c >= 0x80) {
            assert_string_equal(s, "\xef\xbf\xbd");
        }

        nx_json_free(v);
    }

    /* all of them in one string */
    for (c = 0; c < 256; c++) {
        buf[c] = (char) c;
    }

    v = parse_quoted(buf, 256);
    nx_json_free(v);
}


static void
test_escape_roundtrip_utf8(void **state)
{
    yajl_val     v;
    const char  *s;
    const char  *text = "na\xc3\xafve \"quoted\" \\ tab\there "
                        "\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";

    (void) state;

    v = parse_quoted(text, strlen(text));
    assert_int_equal(nx_json_string(v, &s), 0);
    assert_string_equal(s, text);
    nx_json_free(v);
}


static void
test_parse_object(void **state)
{
    int          b;
    int64_t      i;
    yajl_val     v, m;
    const char  *s;

    (void) state;

    v = parse_ok("{\"model\":\"gpt-4o\",\"max_tokens\":512,"
                 "\"stream\":true,\"echo\":false,\"x\":null,"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");

    assert_int_equal(nx_json_string(nx_json_get(v, "model"), &s), 0);
    assert_string_equal(s, "gpt-4o");

    assert_int_equal(nx_json_int(nx_json_get(v, "max_tokens"), &i), 0);
    assert_int_equal(i, 512);

    assert_int_equal(nx_json_bool(nx_json_get(v, "stream"), &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(nx_json_bool(nx_json_get(v, "echo"), &b), 0);
    assert_int_equal(b, 0);

    m = nx_json_get(v, "x");
    assert_non_null(m);
    assert_true(YAJL_IS_NULL(m));

    m = nx_json_get(v, "messages");
    assert_true(YAJL_IS_ARRAY(m));
    assert_int_equal(m->u.array.len, 1);
    assert_int_equal(nx_json_string(nx_json_get(m->u.array.values[0],
                                                "content"), &s), 0);
    assert_string_equal(s, "hi");

    assert_null(nx_json_get(v, "missing"));
    assert_null(nx_json_get(v, "Model"));
    assert_null(nx_json_get(v, ""));
    assert_null(nx_json_get(v, NULL));
    assert_null(nx_json_get(m, "model"));
    assert_null(nx_json_get(NULL, "model"));

    nx_json_free(v);
}


static void
test_accessor_types(void **state)
{
    int          b;
    int64_t      i;
    yajl_val     v;
    const char  *s;

    (void) state;

    v = parse_ok("{\"s\":\"1\",\"n\":1,\"t\":true,\"z\":null,\"a\":[],"
                 "\"o\":{}}");

    assert_int_equal(nx_json_string(nx_json_get(v, "n"), &s), -1);
    assert_int_equal(nx_json_string(nx_json_get(v, "t"), &s), -1);
    assert_int_equal(nx_json_string(nx_json_get(v, "z"), &s), -1);
    assert_int_equal(nx_json_string(nx_json_get(v, "a"), &s), -1);
    assert_int_equal(nx_json_string(NULL, &s), -1);

    assert_int_equal(nx_json_int(nx_json_get(v, "s"), &i), -1);
    assert_int_equal(nx_json_int(nx_json_get(v, "t"), &i), -1);
    assert_int_equal(nx_json_int(nx_json_get(v, "z"), &i), -1);
    assert_int_equal(nx_json_int(nx_json_get(v, "o"), &i), -1);
    assert_int_equal(nx_json_int(NULL, &i), -1);

    assert_int_equal(nx_json_bool(nx_json_get(v, "s"), &b), -1);
    assert_int_equal(nx_json_bool(nx_json_get(v, "n"), &b), -1);
    assert_int_equal(nx_json_bool(nx_json_get(v, "z"), &b), -1);
    assert_int_equal(nx_json_bool(NULL, &b), -1);

    nx_json_free(v);
}


static int
int_of(const char *doc, int64_t *out)
{
    int       rc;
    yajl_val  v;

    v = parse_ok(doc);
    rc = nx_json_int(v, out);
    nx_json_free(v);

    return rc;
}


static void
test_int(void **state)
{
    int64_t  i;

    (void) state;

    assert_int_equal(int_of("0", &i), 0);
    assert_int_equal(i, 0);
    assert_int_equal(int_of("-0", &i), 0);
    assert_int_equal(i, 0);
    assert_int_equal(int_of("42", &i), 0);
    assert_int_equal(i, 42);
    assert_int_equal(int_of("-42", &i), 0);
    assert_int_equal(i, -42);

    assert_int_equal(int_of("9223372036854775807", &i), 0);
    assert_true(i == INT64_MAX);
    assert_int_equal(int_of("-9223372036854775808", &i), 0);
    assert_true(i == INT64_MIN);

    assert_int_equal(int_of("9223372036854775808", &i), -1);
    assert_int_equal(int_of("-9223372036854775809", &i), -1);
    assert_int_equal(int_of("99999999999999999999", &i), -1);
    assert_int_equal(int_of("18446744073709551616", &i), -1);
}


static void
test_int_integral(void **state)
{
    int64_t  i;

    (void) state;

    /* integral values written as decimals or with exponents */
    assert_int_equal(int_of("1.0", &i), 0);
    assert_int_equal(i, 1);
    assert_int_equal(int_of("1e3", &i), 0);
    assert_int_equal(i, 1000);
    assert_int_equal(int_of("1E+2", &i), 0);
    assert_int_equal(i, 100);
    assert_int_equal(int_of("12.50e1", &i), 0);
    assert_int_equal(i, 125);
    assert_int_equal(int_of("100e-2", &i), 0);
    assert_int_equal(i, 1);
    assert_int_equal(int_of("-2.000", &i), 0);
    assert_int_equal(i, -2);
    assert_int_equal(int_of("0e999999999999999999999", &i), 0);
    assert_int_equal(i, 0);
    assert_int_equal(int_of("0.0", &i), 0);
    assert_int_equal(i, 0);
    assert_int_equal(int_of("9.223372036854775807e18", &i), 0);
    assert_true(i == INT64_MAX);

    /* fractions, out of range, huge exponents */
    assert_int_equal(int_of("1.5", &i), -1);
    assert_int_equal(int_of("0.1", &i), -1);
    assert_int_equal(int_of("1e-1", &i), -1);
    assert_int_equal(int_of("15e-1", &i), -1);
    assert_int_equal(int_of("1e19", &i), -1);
    assert_int_equal(int_of("1e18", &i), 0);
    assert_true(i == 1000000000000000000LL);
    assert_int_equal(int_of("9.223372036854775808e18", &i), -1);
    assert_int_equal(int_of("1e999999999999999999999", &i), -1);
    assert_int_equal(int_of("1e-999999999999999999999", &i), -1);
}


static void
test_duplicate_members(void **state)
{
    int64_t   i;
    yajl_val  v;

    (void) state;

    v = parse_ok("{\"a\":1,\"b\":2,\"a\":3}");
    assert_int_equal(nx_json_int(nx_json_get(v, "a"), &i), 0);
    assert_int_equal(i, 3);
    nx_json_free(v);
}


static void
nest(char *buf, size_t depth, const char *open, const char *close,
    size_t *len)
{
    size_t  i, n, o, c;

    o = strlen(open);
    c = strlen(close);
    n = 0;

    for (i = 0; i < depth; i++) {
        memcpy(buf + n, open, o);
        n += o;
    }

    buf[n++] = '1';

    for (i = 0; i < depth; i++) {
        memcpy(buf + n, close, c);
        n += c;
    }

    buf[n] = '\0';
    *len = n;
}


static void
test_depth(void **state)
{
    char      buf[1024], err[128];
    size_t    len;
    yajl_val  v;

    (void) state;

    nest(buf, 32, "[", "]", &len);
    v = nx_json_parse(buf, len, err, sizeof(err));
    assert_non_null(v);
    nx_json_free(v);

    nest(buf, 33, "[", "]", &len);
    v = nx_json_parse(buf, len, err, sizeof(err));
    assert_null(v);
    assert_non_null(strstr(err, "32"));

    nest(buf, 32, "{\"k\":", "}", &len);
    v = nx_json_parse(buf, len, err, sizeof(err));
    assert_non_null(v);
    nx_json_free(v);

    nest(buf, 33, "{\"k\":", "}", &len);
    assert_null(nx_json_parse(buf, len, err, sizeof(err)));

    nest(buf, 16, "{\"k\":[", "]}", &len);
    v = nx_json_parse(buf, len, err, sizeof(err));
    assert_non_null(v);
    nx_json_free(v);

    nest(buf, 17, "[{\"k\":", "}]", &len);
    assert_null(nx_json_parse(buf, len, err, sizeof(err)));

    /* siblings do not add up */
    v = parse_ok("[[[[1]]],[[[2]]],[[[3]]],{\"a\":{\"b\":{}}}]");
    nx_json_free(v);
}


static void
test_depth_huge(void **state)
{
    char      *buf;
    size_t     n;
    yajl_val   v;

    (void) state;

    /* far too deep, unbalanced, would exhaust a recursive free */
    n = 1000000;
    buf = malloc(n);
    assert_non_null(buf);
    memset(buf, '[', n);
    v = nx_json_parse(buf, n, NULL, 0);
    assert_null(v);

    memset(buf, '{', n);
    parse_bad(buf, n);

    free(buf);
}


static void
test_depth_strings(void **state)
{
    char      buf[256];
    size_t    n;
    yajl_val  v;

    (void) state;

    /* brackets inside strings are not nesting */
    n = (size_t) snprintf(buf, sizeof(buf), "[\"%s\"]",
                          "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{{{{{{{{");
    v = nx_json_parse(buf, n, NULL, 0);
    assert_non_null(v);
    nx_json_free(v);

    /* nor after an escaped quote */
    v = parse_ok("{\"a\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\":"
                 "\"\\\\\",\"b\":\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\"}");
    nx_json_free(v);
}


static void
test_not_terminated(void **state)
{
    char      *buf;
    int64_t    i;
    yajl_val   v;

    (void) state;

    /* exact-size heap buffer, no NUL after it */
    buf = malloc(7);
    assert_non_null(buf);
    memcpy(buf, "{\"a\":7}", 7);
    v = nx_json_parse(buf, 7, NULL, 0);
    assert_non_null(v);
    assert_int_equal(nx_json_int(nx_json_get(v, "a"), &i), 0);
    assert_int_equal(i, 7);
    nx_json_free(v);
    free(buf);

    /* bytes after len are ignored */
    v = nx_json_parse("[1,2]garbage", 5, NULL, 0);
    assert_non_null(v);
    nx_json_free(v);

    v = nx_json_parse("[1,2][[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 5, NULL, 0);
    assert_non_null(v);
    nx_json_free(v);
}


static void
test_invalid(void **state)
{
    (void) state;

    BAD("");
    BAD(" ");
    BAD("{");
    BAD("}");
    BAD("[1,2");
    BAD("[1,]");
    BAD("{\"a\":1,}");
    BAD("{\"a\"}");
    BAD("{a:1}");
    BAD("'a'");
    BAD("\"abc");
    BAD("tru");
    BAD("nul");
    BAD("[1] [2]");
    BAD("{} x");
    BAD("01");
    BAD("1.");
    BAD("-");
    BAD("NaN");
    BAD("\"\\x41\"");
    BAD("\"\\u12\"");
    BAD("\"\\ud800\\u\"");
    BAD("\"a\tb\"");
    parse_bad(NULL, 3);
}


static void
test_invalid_bytes(void **state)
{
    (void) state;

    /* NUL anywhere, even where yajl would have stopped reading */
    BAD("{}\0");
    BAD("{\"a\":\"b\0c\"}");
    BAD("\0{}");
    BAD("[1,\0 2]");

    /* invalid UTF-8 inside a string */
    BAD("[\"\xff\"]");
    BAD("[\"\xc3\"]");
    BAD("[\"a\x80\"]");

    /* non-ASCII outside strings */
    BAD("[1,\xc2\xa0" "2]");
}


static void
test_comments_refused(void **state)
{
    yajl_val  v;

    (void) state;

    BAD("/* c */ {}");
    BAD("{} // c");
    BAD("[1, /* [[[[ */ 2]");
    BAD("/* \" */ [1]");

    /* a slash inside a string is fine */
    v = parse_ok("{\"url\":\"http://x/y\",\"c\":\"/* no */\"}");
    nx_json_free(v);
}


static void
test_nul_in_member_name(void **state)
{
    const char  *s;
    yajl_val     v;

    (void) state;

    BAD("{\"model\\u0000x\":\"a\"}");
    BAD("{\"a\":1, \"model\\u0000\" \n : 2}");

    /* in a value it is kept (the C string ends there) */
    v = parse_ok("{\"model\":\"a\\u0000b\"}");
    assert_int_equal(nx_json_string(nx_json_get(v, "model"), &s), 0);
    assert_string_equal(s, "a");
    nx_json_free(v);

    v = parse_ok("[\"\\u0000\", \"x\"]");
    nx_json_free(v);

    /* an escaped backslash before u0000 is not \u0000 */
    v = parse_ok("{\"a\\\\u0000\":1}");
    assert_non_null(nx_json_get(v, "a\\u0000"));
    nx_json_free(v);
}


static void
test_strict_refuses_nul(void **state)
{
    char         err[128];
    const char  *s;
    yajl_val     v;

    (void) state;

#define STRICT(doc) nx_json_parse_strict(doc, strlen(doc), err, sizeof(err))

    assert_null(STRICT("{\"name\":\"nul123\\u0000EVIL\"}"));
    assert_non_null(strstr(err, "u0000"));
    assert_null(STRICT("[\"\\u0000\"]"));
    assert_null(STRICT("{\"model\\u0000x\":\"a\"}"));

    /* an escaped backslash before u0000 is text, and so is \u0001 */
    v = STRICT("{\"a\":\"x\\\\u0000\",\"b\":\"\\u0001\"}");
    assert_non_null(v);
    assert_int_equal(nx_json_string(nx_json_get(v, "a"), &s), 0);
    assert_string_equal(s, "x\\u0000");
    nx_json_free(v);

    /* everything else is as nx_json_parse() */
    v = STRICT("{\"a\":[1,2,{\"b\":true}]}");
    assert_non_null(v);
    nx_json_free(v);
    assert_null(STRICT("{\"a\":1 /* c */}"));

#undef STRICT
}


static void
test_error_buffer(void **state)
{
    char         err[8], big[512];
    yajl_val     v;
    const char  *doc = "{\"secret\":\"sk-live-123\" oops}";

    (void) state;

    memset(err, 'x', sizeof(err));
    v = nx_json_parse(doc, strlen(doc), err, sizeof(err));
    assert_null(v);
    assert_true(memchr(err, '\0', sizeof(err)) != NULL);

    /* the message never quotes the document */
    v = nx_json_parse(doc, strlen(doc), big, sizeof(big));
    assert_null(v);
    assert_true(strlen(big) > 0);
    assert_null(strstr(big, "sk-live"));
    assert_null(strchr(big, '\n'));

    v = nx_json_parse("[", 1, NULL, 0);
    assert_null(v);

    err[0] = 'x';
    v = nx_json_parse("[", 1, err, 1);
    assert_null(v);
    assert_int_equal(err[0], '\0');
}


static void
test_scalars_and_whitespace(void **state)
{
    int          b;
    int64_t      i;
    yajl_val     v;
    const char  *s;

    (void) state;

    v = parse_ok(" \t\r\n 17 \n");
    assert_int_equal(nx_json_int(v, &i), 0);
    assert_int_equal(i, 17);
    nx_json_free(v);

    v = parse_ok("\"str\"");
    assert_int_equal(nx_json_string(v, &s), 0);
    assert_string_equal(s, "str");
    nx_json_free(v);

    v = parse_ok("true");
    assert_int_equal(nx_json_bool(v, &b), 0);
    assert_int_equal(b, 1);
    nx_json_free(v);

    v = parse_ok("null");
    assert_true(YAJL_IS_NULL(v));
    nx_json_free(v);

    v = parse_ok("\"\\ud83d\\ude00 \\u00e9\"");
    assert_int_equal(nx_json_string(v, &s), 0);
    assert_string_equal(s, "\xf0\x9f\x98\x80 \xc3\xa9");
    nx_json_free(v);
}


/*
 * The area-built tree against yajl_tree_parse(), on a document that needs
 * more chunks than the first, members and elements past the arrays' first
 * sizes, and strings whose escapes go through yajl's decode buffer.
 */

static void
tree_same(yajl_val a, yajl_val b)
{
    size_t  i;

    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->type, b->type);

    if (YAJL_IS_STRING(a)) {
        assert_string_equal(a->u.string, b->u.string);

    } else if (YAJL_IS_NUMBER(a)) {
        assert_string_equal(a->u.number.r, b->u.number.r);
        assert_int_equal(a->u.number.flags, b->u.number.flags);
        assert_true(a->u.number.i == b->u.number.i);

    } else if (YAJL_IS_OBJECT(a)) {
        assert_int_equal(a->u.object.len, b->u.object.len);

        for (i = 0; i < a->u.object.len; i++) {
            assert_string_equal(a->u.object.keys[i], b->u.object.keys[i]);
            tree_same(a->u.object.values[i], b->u.object.values[i]);
        }

    } else if (YAJL_IS_ARRAY(a)) {
        assert_int_equal(a->u.array.len, b->u.array.len);

        for (i = 0; i < a->u.array.len; i++) {
            tree_same(a->u.array.values[i], b->u.array.values[i]);
        }
    }
}


static void
test_parse_tree_as_yajl(void **state)
{
    int       i;
    char     *doc, *p;
    yajl_val  v, ref;

    (void) state;

    doc = malloc(1 << 20);
    assert_non_null(doc);

    p = doc;
    p += sprintf(p, "{\"s\":\"a\\u00e9\\n\\\"b\",\"n\":[");

    for (i = 0; i < 5000; i++) {
        p += sprintf(p, "%s%d,-%d.5,1e%d,9223372036854775807%d,[],{}",
                     i ? "," : "", i, i, i % 400, i % 10);
    }

    p += sprintf(p, "],\"o\":{");

    for (i = 0; i < 300; i++) {
        p += sprintf(p, "%s\"k%d\":{\"v\":[true,false,null,\"x%d\"]}",
                     i ? "," : "", i, i);
    }

    p += sprintf(p, "},\"s\":\"dup\"}");

    v = nx_json_parse(doc, (size_t) (p - doc), NULL, 0);
    ref = yajl_tree_parse(doc, NULL, 0);

    tree_same(v, ref);
    assert_string_equal(nx_json_get(v, "s")->u.string, "dup");

    yajl_tree_free(ref);
    nx_json_free(v);

    /* a top-level scalar is the root itself */
    v = nx_json_parse("\"only\"", 6, NULL, 0);
    assert_true(YAJL_IS_STRING(v));
    assert_string_equal(v->u.string, "only");
    nx_json_free(v);

    v = nx_json_parse("17", 2, NULL, 0);
    assert_true(YAJL_IS_INTEGER(v));
    assert_int_equal(v->u.number.i, 17);
    nx_json_free(v);

    nx_json_free(NULL);
    free(doc);
}


/*
 * What the parser adds to yajl's grammar: UTF-8 that is not well formed
 * is refused, a surrogate without its pair becomes U+FFFD, and an error
 * says where, never what.
 */

static void
expect_parse_error(const char *s, const char *expect)
{
    char      err[128];
    yajl_val  v;

    v = nx_json_parse(s, strlen(s), err, sizeof(err));
    assert_null(v);
    assert_string_equal(err, expect);
}


static void
test_parse_rfc8259(void **state)
{
    int          i;
    yajl_val     v;
    const char  *s;

    (void) state;

    /* forms yajl let through */
    BAD("[\"\xc0\x80\"]");
    BAD("[\"\xed\xa0\x80\"]");
    BAD("[\"\xf4\x90\x80\x80\"]");
    BAD("[\"\xe0\x80\xaf\"]");

    v = parse_ok("[\"\\udc00\",\"\\ud800\",\"\\ud800\\u0041\","
                 "\"\\ud800\\ud800\\udc00\",\"\\ud83d\\ude00\"]");
    assert_int_equal(v->u.array.len, 5);
    assert_string_equal(v->u.array.values[0]->u.string, "\xef\xbf\xbd");
    assert_string_equal(v->u.array.values[1]->u.string, "\xef\xbf\xbd");
    assert_string_equal(v->u.array.values[2]->u.string, "\xef\xbf\xbd" "A");
    assert_string_equal(v->u.array.values[3]->u.string,
                        "\xef\xbf\xbd\xf0\x90\x80\x80");
    assert_string_equal(v->u.array.values[4]->u.string, "\xf0\x9f\x98\x80");
    nx_json_free(v);

    /* -0 is an integer 0 and the double -0.0, as strtod() says */
    v = parse_ok("[-0,0,-12,4503599627370497,1.5e3]");
    assert_int_equal(v->u.array.values[0]->u.number.i, 0);
    assert_true(1 / v->u.array.values[0]->u.number.d < 0);
    assert_true(1 / v->u.array.values[1]->u.number.d > 0);
    assert_true(v->u.array.values[2]->u.number.d == -12.0);
    assert_true(v->u.array.values[3]->u.number.d == 4503599627370497.0);
    assert_false(v->u.array.values[4]->u.number.flags
                 & YAJL_NUMBER_INT_VALID);
    assert_true(v->u.array.values[4]->u.number.d == 1500.0);
    nx_json_free(v);

    /* where it went wrong, never the text */
    expect_parse_error("{\"a\":1,}", "trailing comma at byte 7");
    expect_parse_error("[1 2]", "expected ',' or ']' at byte 3");
    expect_parse_error("{\"secret-value\" 1}", "expected ':' at byte 16");
    expect_parse_error("[\"secret\x01\"]",
                       "control character in a string at byte 8");
    expect_parse_error("[\"secret\\q\"]",
                       "invalid escape in a string at byte 8");
    expect_parse_error("[1] x", "text after the value at byte 4");
    expect_parse_error("[01]", "invalid number (leading zero) at byte 2");
    expect_parse_error("[\"abc",
                       "unexpected end of text in a string at byte 5");
    expect_parse_error("", "unexpected end of text at byte 0");

    /* what ends the fast path, at every place in an eight-byte block */
    for (i = 0; i < 20; i++) {
        char  doc[128], want[24];

        memset(want, 'a', i);
        want[i] = '\0';

        (void) snprintf(doc, sizeof(doc), "[\"%s\",\"bbbbbbbbbbbbbbbb\"]",
                        want);
        v = parse_ok(doc);
        assert_string_equal(v->u.array.values[0]->u.string, want);
        nx_json_free(v);

        (void) snprintf(doc, sizeof(doc), "[\"%s\\\\x\xc3\xa9yyyyyyyyyy\"]",
                        want);
        v = parse_ok(doc);
        assert_memory_equal(v->u.array.values[0]->u.string + i,
                            "\\x\xc3\xa9yyyyyyyyyy", 14);
        nx_json_free(v);

        (void) snprintf(doc, sizeof(doc), "[\"%s\x1fzzzzzzzzzz\"]", want);
        BAD_STR(doc);
    }

    /* a document wider than the values waiting on the stack */
    s = "[[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,"
        "26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,"
        "49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,"
        "72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,"
        "95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,"
        "113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,"
        "{\"a\":[1,2],\"b\":3}],\"z\"]";
    v = parse_ok(s);
    assert_int_equal(v->u.array.len, 2);
    assert_int_equal(v->u.array.values[0]->u.array.len, 130);
    assert_int_equal(v->u.array.values[0]->u.array.values[128]->u.number.i,
                     129);
    assert_int_equal(v->u.array.values[0]->u.array.values[129]
                     ->u.object.len, 2);
    assert_string_equal(v->u.array.values[1]->u.string, "z");
    nx_json_free(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_tree_as_yajl),
        cmocka_unit_test(test_escape_plain),
        cmocka_unit_test(test_escape_specials),
        cmocka_unit_test(test_escape_nul),
        cmocka_unit_test(test_escape_utf8_valid),
        cmocka_unit_test(test_escape_utf8_invalid),
        cmocka_unit_test(test_escape_len_respected),
        cmocka_unit_test(test_escape_roundtrip_all_bytes),
        cmocka_unit_test(test_escape_roundtrip_utf8),
        cmocka_unit_test(test_parse_object),
        cmocka_unit_test(test_accessor_types),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_int_integral),
        cmocka_unit_test(test_duplicate_members),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_depth_huge),
        cmocka_unit_test(test_depth_strings),
        cmocka_unit_test(test_not_terminated),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_invalid_bytes),
        cmocka_unit_test(test_comments_refused),
        cmocka_unit_test(test_nul_in_member_name),
        cmocka_unit_test(test_strict_refuses_nul),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_scalars_and_whitespace),
        cmocka_unit_test(test_parse_rfc8259),
    };

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
