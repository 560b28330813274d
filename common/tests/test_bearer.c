/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_bearer: parsing of the Authorization header value.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nx_bearer.h"


#define MAX  256


/* parses s[0..len) and, on success, checks the token is expect */

static nx_bearer_rc_t
parse(const char *s, size_t len, size_t max, const char *expect)
{
    size_t          toklen;
    const char     *tok;
    nx_bearer_rc_t  rc;

    tok = (const char *) 1;
    toklen = 12345;

    rc = nx_bearer_parse(s, len, max, &tok, &toklen);

    if (rc == NX_BEARER_OK) {
        assert_non_null(expect);
        assert_true(tok >= s && tok + toklen <= s + len);
        assert_int_equal(toklen, strlen(expect));
        assert_memory_equal(tok, expect, toklen);

    } else {
        assert_null(tok);
        assert_int_equal(toklen, 0);
    }

    return rc;
}


#define P(s, expect)  parse(s, sizeof(s) - 1, MAX, expect)


static void
test_ok(void **state)
{
    (void) state;

    assert_int_equal(P("Bearer abc", "abc"), NX_BEARER_OK);
    assert_int_equal(P("Bearer nx_0123456789ab_ff", "nx_0123456789ab_ff"),
                     NX_BEARER_OK);
    assert_int_equal(P("Bearer a", "a"), NX_BEARER_OK);

    /* every visible ASCII byte is a token byte here */
    assert_int_equal(P("Bearer !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
                       "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), NX_BEARER_OK);
    assert_int_equal(P("Bearer abc==", "abc=="), NX_BEARER_OK);
}


static void
test_scheme_case(void **state)
{
    (void) state;

    assert_int_equal(P("bearer abc", "abc"), NX_BEARER_OK);
    assert_int_equal(P("BEARER abc", "abc"), NX_BEARER_OK);
    assert_int_equal(P("bEaReR abc", "abc"), NX_BEARER_OK);
    assert_int_equal(P("BeArEr abc", "abc"), NX_BEARER_OK);
}


static void
test_blanks(void **state)
{
    (void) state;

    assert_int_equal(P("Bearer\tabc", "abc"), NX_BEARER_OK);
    assert_int_equal(P("Bearer  \t \tabc", "abc"), NX_BEARER_OK);
    assert_int_equal(P("Bearer abc ", "abc"), NX_BEARER_OK);
    assert_int_equal(P("Bearer abc\t \t", "abc"), NX_BEARER_OK);
    assert_int_equal(P("  Bearer abc", "abc"), NX_BEARER_OK);
    assert_int_equal(P("\tBearer\tabc\t", "abc"), NX_BEARER_OK);
}


static void
test_empty(void **state)
{
    (void) state;

    assert_int_equal(P("", NULL), NX_BEARER_EMPTY);
    assert_int_equal(P(" ", NULL), NX_BEARER_EMPTY);
    assert_int_equal(P("\t", NULL), NX_BEARER_EMPTY);
    assert_int_equal(P(" \t  \t", NULL), NX_BEARER_EMPTY);
    assert_int_equal(parse(NULL, 0, MAX, NULL), NX_BEARER_EMPTY);
}


static void
test_not_bearer(void **state)
{
    (void) state;

    assert_int_equal(P("Basic dXNlcjpwYXNz", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("Digest username=x", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("Bearerabc", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("Bearer-x abc", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("Bear", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("B", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("Beare abc", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("nx_0123456789ab_ff", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("Bearar abc", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("\xc3\xa9" "earer abc", NULL), NX_BEARER_NOT_BEARER);
    assert_int_equal(P("\0earer abc", NULL), NX_BEARER_NOT_BEARER);
}


static void
test_no_token(void **state)
{
    (void) state;

    assert_int_equal(P("Bearer", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("bearer", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer ", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer \t  ", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P(" Bearer\t", NULL), NX_BEARER_MALFORMED);
}


static void
test_bad_bytes(void **state)
{
    (void) state;

    assert_int_equal(P("Bearer ab\0c", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer abc\0", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer \0abc", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer\0abc", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer ab\x01", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer ab\x7f", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer ab\x80", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer ab\xff", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer \xc3\xa9t\xc3\xa9", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer abc\r\n", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer ab\ncd", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer\x0b" "abc", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer:abc", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer\xa0" "abc", NULL), NX_BEARER_MALFORMED);
}


static void
test_every_high_byte(void **state)
{
    int   c;
    char  buf[16];

    (void) state;

    for (c = 0x80; c <= 0xff; c++) {
        memcpy(buf, "Bearer ab", 9);
        buf[9] = (char) c;
        buf[10] = 'c';
        assert_int_equal(parse(buf, 11, MAX, NULL), NX_BEARER_MALFORMED);
    }

    for (c = 0x00; c < 0x20; c++) {
        if (c == '\t') {
            continue;
        }

        memcpy(buf, "Bearer ab", 9);
        buf[9] = (char) c;
        buf[10] = 'c';
        assert_int_equal(parse(buf, 11, MAX, NULL), NX_BEARER_MALFORMED);
    }
}


static void
test_embedded_blank(void **state)
{
    (void) state;

    assert_int_equal(P("Bearer abc def", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer abc\tdef", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer abc  def  ", NULL), NX_BEARER_MALFORMED);
    assert_int_equal(P("Bearer Bearer abc", NULL), NX_BEARER_MALFORMED);
}


static void
test_max_length(void **state)
{
    char  buf[7 + 33], k32[33], k31[32];

    (void) state;

    memcpy(buf, "Bearer ", 7);
    memset(buf + 7, 'k', 33);
    memset(k32, 'k', 32);
    k32[32] = '\0';
    memset(k31, 'k', 31);
    k31[31] = '\0';

    /* exactly max, max - 1, max + 1 */
    assert_int_equal(parse(buf, 7 + 32, 32, k32), NX_BEARER_OK);
    assert_int_equal(parse(buf, 7 + 31, 32, k31), NX_BEARER_OK);
    assert_int_equal(parse(buf, 7 + 33, 32, NULL), NX_BEARER_MALFORMED);

    /* trailing blanks do not count, but do not rescue max + 1 either */
    assert_int_equal(parse("Bearer abcd  ", 13, 4, "abcd"), NX_BEARER_OK);
    assert_int_equal(parse("Bearer abcd  ", 13, 3, NULL),
                     NX_BEARER_MALFORMED);

    /* max 0 refuses every token */
    assert_int_equal(parse("Bearer a", 8, 0, NULL), NX_BEARER_MALFORMED);
}


static void
test_10k_token(void **state)
{
    char            *buf;
    size_t           toklen, n;
    const char      *tok;
    nx_bearer_rc_t   rc;

    (void) state;

    n = 10 * 1024;
    buf = malloc(7 + n);
    assert_non_null(buf);
    memcpy(buf, "Bearer ", 7);
    memset(buf + 7, 'T', n);

    rc = nx_bearer_parse(buf, 7 + n, 16 * 1024, &tok, &toklen);
    assert_int_equal(rc, NX_BEARER_OK);
    assert_ptr_equal(tok, buf + 7);
    assert_int_equal(toklen, n);

    rc = nx_bearer_parse(buf, 7 + n, n, &tok, &toklen);
    assert_int_equal(rc, NX_BEARER_OK);

    rc = nx_bearer_parse(buf, 7 + n, n - 1, &tok, &toklen);
    assert_int_equal(rc, NX_BEARER_MALFORMED);

    rc = nx_bearer_parse(buf, 7 + n, 256, &tok, &toklen);
    assert_int_equal(rc, NX_BEARER_MALFORMED);

    free(buf);
}


static void
test_len_respected(void **state)
{
    size_t       toklen;
    const char  *tok;
    char        *buf;

    (void) state;

    /* bytes beyond len are never looked at */
    assert_int_equal(parse("Bearer abc def", 10, MAX, "abc"), NX_BEARER_OK);
    assert_int_equal(parse("Bearer abc\0def", 10, MAX, "abc"), NX_BEARER_OK);
    assert_int_equal(parse("Bearer abc", 6, MAX, NULL), NX_BEARER_MALFORMED);
    assert_int_equal(parse("Bearer abc", 5, MAX, NULL),
                     NX_BEARER_NOT_BEARER);

    /* an exactly sized heap buffer (ASan would see an over-read) */
    buf = malloc(10);
    assert_non_null(buf);
    memcpy(buf, "Bearer xyz", 10);
    assert_int_equal(nx_bearer_parse(buf, 10, MAX, &tok, &toklen),
                     NX_BEARER_OK);
    assert_int_equal(toklen, 3);
    free(buf);
}


static void
test_null_outputs(void **state)
{
    (void) state;

    assert_int_equal(nx_bearer_parse("Bearer abc", 10, MAX, NULL, NULL),
                     NX_BEARER_OK);
    assert_int_equal(nx_bearer_parse("Basic abc", 9, MAX, NULL, NULL),
                     NX_BEARER_NOT_BEARER);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok),
        cmocka_unit_test(test_scheme_case),
        cmocka_unit_test(test_blanks),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_not_bearer),
        cmocka_unit_test(test_no_token),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_every_high_byte),
        cmocka_unit_test(test_embedded_blank),
        cmocka_unit_test(test_max_length),
        cmocka_unit_test(test_10k_token),
        cmocka_unit_test(test_len_respected),
        cmocka_unit_test(test_null_outputs),
    };

    return cmocka_run_group_tests_name("bearer", tests, NULL, NULL);
}
