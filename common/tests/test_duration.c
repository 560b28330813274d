/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_duration: "30d"-style durations in seconds, bounded
 * by 100 years of 365 days.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_duration.h"


#define LIMIT  (100LL * 365 * 86400)


static int64_t
ok(const char *s)
{
    int64_t  secs;

    secs = -12345;
    assert_int_equal(nx_duration_parse(s, strlen(s), &secs), 0);
    assert_true(secs > 0);

    return secs;
}


static void
bad(const char *s, size_t len)
{
    int64_t  secs;

    secs = -12345;
    assert_int_equal(nx_duration_parse(s, len, &secs), -1);
    assert_int_equal(secs, -12345);
}


#define BAD(s)  bad(s, sizeof(s) - 1)


static void
test_units(void **state)
{
    (void) state;

    assert_int_equal(ok("45s"), 45);
    assert_int_equal(ok("90m"), 5400);
    assert_int_equal(ok("12h"), 43200);
    assert_int_equal(ok("30d"), 2592000);
    assert_int_equal(ok("2w"), 1209600);
    assert_int_equal(ok("1s"), 1);
    assert_int_equal(ok("1m"), 60);
    assert_int_equal(ok("1h"), 3600);
    assert_int_equal(ok("1d"), 86400);
    assert_int_equal(ok("1w"), 604800);
}


static void
test_leading_zeros(void **state)
{
    (void) state;

    assert_int_equal(ok("07s"), 7);
    assert_int_equal(ok("0001d"), 86400);
    assert_int_equal(ok("00000000000000000000000000000000000001s"), 1);
}


static void
test_zero(void **state)
{
    (void) state;

    BAD("0s");
    BAD("0d");
    BAD("00w");
    BAD("000000000000000000000000000m");
}


static void
test_malformed(void **state)
{
    (void) state;

    BAD("");
    bad(NULL, 0);
    bad(NULL, 3);
    BAD("s");
    BAD("d");
    BAD("30");
    BAD("5");
    BAD("-1d");
    BAD("+1d");
    BAD("1.5h");
    BAD("1e3s");
    BAD("0x10s");
    BAD(" 1d");
    BAD("1d ");
    BAD("1 d");
    BAD("\t1d");
    BAD("1h30m");
    BAD("1dd");
    BAD("d1");
    BAD("1x");
    BAD("1y");
    BAD("1ms");
    BAD("1D");
    BAD("1H");
    BAD("1S");
    BAD("1\0d");
    BAD("1d\0");
    BAD("\0" "1d");
    BAD("1\xc3\xa9");
    BAD("\xff" "1d");
    BAD("1\x80");
    BAD("\xd9\xa1" "d");
}


static void
test_limit(void **state)
{
    (void) state;

    assert_int_equal(ok("36500d"), LIMIT);
    assert_int_equal(ok("3153600000s"), LIMIT);
    assert_int_equal(ok("52560000m"), LIMIT);
    assert_int_equal(ok("876000h"), LIMIT);
    assert_int_equal(ok("5214w"), 5214LL * 7 * 86400);

    BAD("36501d");
    BAD("3153600001s");
    BAD("52560001m");
    BAD("876001h");
    BAD("5215w");
}


static void
test_overflow(void **state)
{
    char  buf[512];

    (void) state;

    BAD("99999999999999999999d");
    BAD("99999999999999999999s");
    BAD("9223372036854775807s");
    BAD("9223372036854775808s");
    BAD("18446744073709551616s");
    BAD("9223372036854775807w");
    BAD("1537228672809129302w");
    BAD("106751991167300d");

    memset(buf, '9', sizeof(buf) - 1);
    buf[sizeof(buf) - 2] = 'h';
    bad(buf, sizeof(buf) - 1);
}


static void
test_len_respected(void **state)
{
    int64_t   secs;
    char     *buf;

    (void) state;

    assert_int_equal(nx_duration_parse("30dX", 3, &secs), 0);
    assert_int_equal(secs, 30 * 86400);

    assert_int_equal(nx_duration_parse("30d5", 3, &secs), 0);
    assert_int_equal(nx_duration_parse("30d", 2, &secs), -1);
    assert_int_equal(nx_duration_parse("12h", 0, &secs), -1);
    assert_int_equal(nx_duration_parse("12h", 1, &secs), -1);

    buf = malloc(3);
    assert_non_null(buf);
    memcpy(buf, "12h", 3);
    assert_int_equal(nx_duration_parse(buf, 3, &secs), 0);
    assert_int_equal(secs, 43200);
    free(buf);

    assert_int_equal(nx_duration_parse("12h", 3, NULL), -1);
}


static void
test_every_unit_byte(void **state)
{
    int       c;
    char      buf[3];
    int64_t   secs;

    (void) state;

    for (c = 0; c < 256; c++) {
        buf[0] = '4';
        buf[1] = '2';
        buf[2] = (char) c;

        if (c == 's' || c == 'm' || c == 'h' || c == 'd' || c == 'w') {
            assert_int_equal(nx_duration_parse(buf, 3, &secs), 0);
        } else {
            assert_int_equal(nx_duration_parse(buf, 3, &secs), -1);
        }
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_leading_zeros),
        cmocka_unit_test(test_zero),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_len_respected),
        cmocka_unit_test(test_every_unit_byte),
    };

    return cmocka_run_group_tests_name("duration", tests, NULL, NULL);
}
