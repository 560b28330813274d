/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_money: fixed-point parsing and printing of amounts
 * and prices, and the cost of a request rounded up to a micro-dollar.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_money.h"


static int64_t
ok(const char *s, int scale)
{
    int64_t  v;

    v = -12345;
    assert_int_equal(nx_money_parse(s, strlen(s), scale, INT64_MAX, &v), 0);

    return v;
}


static void
bad(const char *s, int scale, int64_t max)
{
    int64_t  v;

    v = -12345;
    assert_int_equal(nx_money_parse(s, strlen(s), scale, max, &v), -1);
    assert_int_equal(v, -12345);
}


static const char *
fmt(int64_t v, int scale)
{
    size_t       len;
    static char  buf[NX_MONEY_LEN];

    len = nx_money_format(buf, v, scale);
    assert_int_equal(len, strlen(buf));

    return buf;
}


static void
test_parse(void **state)
{
    (void) state;

    assert_int_equal(ok("12", NX_MONEY_MICRO), 12000000);
    assert_int_equal(ok("0", NX_MONEY_MICRO), 0);
    assert_int_equal(ok("0.5", NX_MONEY_MICRO), 500000);
    assert_int_equal(ok("500.000001", NX_MONEY_MICRO), 500000001);
    assert_int_equal(ok("0.0000375", NX_MONEY_NANO), 37500);
    assert_int_equal(ok("0.00015", NX_MONEY_NANO), 150000);
    assert_int_equal(ok("10", NX_MONEY_NANO), NX_MONEY_PRICE_MAX);
    assert_int_equal(ok("007.10", NX_MONEY_MICRO), 7100000);
}


static void
test_parse_bad(void **state)
{
    (void) state;

    bad("", NX_MONEY_MICRO, INT64_MAX);
    bad(".5", NX_MONEY_MICRO, INT64_MAX);
    bad("5.", NX_MONEY_MICRO, INT64_MAX);
    bad("-1", NX_MONEY_MICRO, INT64_MAX);
    bad("+1", NX_MONEY_MICRO, INT64_MAX);
    bad("1e3", NX_MONEY_MICRO, INT64_MAX);
    bad("1.2.3", NX_MONEY_MICRO, INT64_MAX);
    bad("1 ", NX_MONEY_MICRO, INT64_MAX);
    bad("0.0000001", NX_MONEY_MICRO, INT64_MAX);
    bad("10.000000001", NX_MONEY_NANO, NX_MONEY_PRICE_MAX);
    bad("99999999999999999999", NX_MONEY_MICRO, INT64_MAX);
    bad("9223372036854.775808", NX_MONEY_MICRO, INT64_MAX);
    bad("1000", NX_MONEY_MICRO, 999999999);
}


static void
test_format(void **state)
{
    (void) state;

    assert_string_equal(fmt(12500000, NX_MONEY_MICRO), "12.50");
    assert_string_equal(fmt(0, NX_MONEY_MICRO), "0.00");
    assert_string_equal(fmt(1, NX_MONEY_MICRO), "0.000001");
    assert_string_equal(fmt(500000001, NX_MONEY_MICRO), "500.000001");
    assert_string_equal(fmt(-2500000, NX_MONEY_MICRO), "-2.50");
    assert_string_equal(fmt(150000, NX_MONEY_NANO), "0.00015");
    assert_string_equal(fmt(37500, NX_MONEY_NANO), "0.0000375");
    assert_string_equal(fmt(INT64_MIN, NX_MONEY_MICRO),
                        "-9223372036854.775808");
    assert_string_equal(fmt(INT64_MAX, NX_MONEY_MICRO),
                        "9223372036854.775807");
    assert_string_equal(fmt(42, 0), "42");
}


static void
test_round_trip(void **state)
{
    int      i;
    char     buf[NX_MONEY_LEN];
    int64_t  v, w;

    (void) state;

    for (i = 0; i < 2000; i++) {
        v = (int64_t) rand() * (i % 7 + 1);
        nx_money_format(buf, v, NX_MONEY_MICRO);
        assert_int_equal(nx_money_parse(buf, strlen(buf), NX_MONEY_MICRO,
                                        INT64_MAX, &w), 0);
        assert_int_equal(w, v);
    }
}


static void
test_cost(void **state)
{
    (void) state;

    /* 1000 tokens in at $0.0025/1K, 1000 out at $0.01/1K: $0.0125 */
    assert_int_equal(nx_money_cost(1000, 1000, 2500000, 10000000), 12500);

    /* 10 tokens at $0.00015/1K is 1.5 micro-dollars: charged 2 */
    assert_int_equal(nx_money_cost(10, 0, 150000, 0), 2);
    assert_int_equal(nx_money_cost(0, 0, 150000, 600000), 0);
    assert_int_equal(nx_money_cost(1, 0, 1, 0), 1);

    /* clamped: negative counts and prices are nothing */
    assert_int_equal(nx_money_cost(-5, -5, 2500000, 2500000), 0);
    assert_int_equal(nx_money_cost(5, 5, -1, -1), 0);

    /* the worst case stays within 64 bits */
    assert_int_equal(nx_money_cost(INT64_MAX, INT64_MAX, INT64_MAX,
                                   INT64_MAX),
                     2 * NX_MONEY_TOKENS_MAX / 1000
                     * (NX_MONEY_PRICE_MAX / 1000));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_cost),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
