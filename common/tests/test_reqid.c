/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_reqid: validation of incoming X-Request-Id values and
 * formatting of generated ones.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "nx_reqid.h"


#define V(s)  nx_reqid_valid(s, sizeof(s) - 1)


static void
test_valid(void **state)
{
    (void) state;

    assert_int_equal(V("a"), 1);
    assert_int_equal(V("Z"), 1);
    assert_int_equal(V("0"), 1);
    assert_int_equal(V("req_0123456789abcdef01234567"), 1);
    assert_int_equal(V("550e8400-e29b-41d4-a716-446655440000"), 1);
    assert_int_equal(V("trace.span:42_x-y"), 1);
    assert_int_equal(V("..."), 1);
    assert_int_equal(V("-"), 1);
    assert_int_equal(V(":"), 1);
    assert_int_equal(V("_"), 1);
    assert_int_equal(V("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789._:-"), 1);
}


static void
test_invalid(void **state)
{
    (void) state;

    assert_int_equal(V(""), 0);
    assert_int_equal(nx_reqid_valid(NULL, 0), 0);
    assert_int_equal(nx_reqid_valid(NULL, 5), 0);
    assert_int_equal(V(" "), 0);
    assert_int_equal(V("a b"), 0);
    assert_int_equal(V("a\tb"), 0);
    assert_int_equal(V("abc\n"), 0);
    assert_int_equal(V("abc\r\nX-Evil: 1"), 0);
    assert_int_equal(V("a/b"), 0);
    assert_int_equal(V("a+b"), 0);
    assert_int_equal(V("a=b"), 0);
    assert_int_equal(V("\"a\""), 0);
    assert_int_equal(V("a\\b"), 0);
    assert_int_equal(V("<script>"), 0);
    assert_int_equal(V("ab\0c"), 0);
    assert_int_equal(V("abc\0"), 0);
    assert_int_equal(V("\x7f"), 0);
    assert_int_equal(V("caf\xc3\xa9"), 0);
}


static void
test_every_byte(void **state)
{
    int   c, expect;
    char  buf[3];

    (void) state;

    for (c = 0; c < 256; c++) {
        expect = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9')
                 || c == '.' || c == '_' || c == ':' || c == '-';

        buf[0] = 'x';
        buf[1] = (char) c;
        buf[2] = 'y';

        assert_int_equal(nx_reqid_valid(buf, 3), expect);
        assert_int_equal(nx_reqid_valid(buf + 1, 1), expect);
    }
}


static void
test_length(void **state)
{
    char  buf[NX_REQID_MAX + 1];

    (void) state;

    memset(buf, 'r', sizeof(buf));

    assert_int_equal(nx_reqid_valid(buf, 1), 1);
    assert_int_equal(nx_reqid_valid(buf, NX_REQID_MAX - 1), 1);
    assert_int_equal(nx_reqid_valid(buf, NX_REQID_MAX), 1);
    assert_int_equal(nx_reqid_valid(buf, NX_REQID_MAX + 1), 0);
    assert_int_equal(nx_reqid_valid(buf, 10000), 0);
}


static void
test_len_respected(void **state)
{
    char  *buf;

    (void) state;

    assert_int_equal(nx_reqid_valid("abc def", 3), 1);
    assert_int_equal(nx_reqid_valid("abc\0", 3), 1);

    buf = malloc(NX_REQID_MAX);
    assert_non_null(buf);
    memset(buf, 'q', NX_REQID_MAX);
    assert_int_equal(nx_reqid_valid(buf, NX_REQID_MAX), 1);
    free(buf);
}


static void
test_format(void **state)
{
    char     out[NX_REQID_GEN_LEN + 1];
    size_t   i;
    uint8_t  rnd[12];

    (void) state;

    for (i = 0; i < 12; i++) {
        rnd[i] = (uint8_t) i;
    }

    memset(out, '#', sizeof(out));
    nx_reqid_format(rnd, out);

    /* exactly NX_REQID_GEN_LEN bytes, no NUL */
    assert_int_equal(out[NX_REQID_GEN_LEN], '#');
    assert_memory_equal(out, "req_000102030405060708090a0b", NX_REQID_GEN_LEN);
    assert_int_equal(nx_reqid_valid(out, NX_REQID_GEN_LEN), 1);

    memset(rnd, 0xff, sizeof(rnd));
    nx_reqid_format(rnd, out);
    assert_memory_equal(out, "req_ffffffffffffffffffffffff", NX_REQID_GEN_LEN);

    memset(rnd, 0, sizeof(rnd));
    nx_reqid_format(rnd, out);
    assert_memory_equal(out, "req_000000000000000000000000", NX_REQID_GEN_LEN);

    for (i = 0; i < 12; i++) {
        rnd[i] = (uint8_t) (0xa0 + i * 0x11);
    }

    nx_reqid_format(rnd, out);
    assert_memory_equal(out, "req_a0b1c2d3e4f5061728394a5b", NX_REQID_GEN_LEN);
}


static void
test_format_always_valid(void **state)
{
    int      n;
    char     out[NX_REQID_GEN_LEN];
    size_t   i;
    uint8_t  rnd[12];

    (void) state;

    srand(42);

    for (n = 0; n < 1000; n++) {
        for (i = 0; i < 12; i++) {
            rnd[i] = (uint8_t) rand();
        }

        nx_reqid_format(rnd, out);
        assert_int_equal(nx_reqid_valid(out, sizeof(out)), 1);

        for (i = 4; i < NX_REQID_GEN_LEN; i++) {
            assert_true((out[i] >= '0' && out[i] <= '9')
                        || (out[i] >= 'a' && out[i] <= 'f'));
        }
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_length),
        cmocka_unit_test(test_len_respected),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_always_valid),
    };

    return cmocka_run_group_tests_name("reqid", tests, NULL, NULL);
}
