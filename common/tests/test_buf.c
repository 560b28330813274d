/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_buf: growth, reuse after reset, JSON escaping, and the
 * edge cases of empty and NULL input.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "nx_buf.h"


static void
test_append(void **state)
{
    nx_buf_t  b = NX_BUF_INIT;

    (void) state;

    assert_int_equal(nx_buf_append(&b, "abc", 3), 0);
    assert_int_equal(nx_buf_append_str(&b, "def"), 0);
    assert_int_equal(b.len, 6);
    assert_true(b.cap >= 6);
    assert_memory_equal(b.data, "abcdef", 6);

    nx_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}


static void
test_empty(void **state)
{
    nx_buf_t  b = NX_BUF_INIT;

    (void) state;

    assert_int_equal(nx_buf_append(&b, NULL, 0), 0);
    assert_int_equal(nx_buf_append(&b, "", 0), 0);
    assert_int_equal(nx_buf_append_str(&b, ""), 0);
    assert_int_equal(nx_buf_append_json(&b, NULL, 0), 0);
    assert_int_equal(b.len, 0);

    assert_int_equal(nx_buf_append(&b, NULL, 1), -1);
    assert_int_equal(nx_buf_append_str(&b, NULL), -1);
    assert_int_equal(nx_buf_append_json(&b, NULL, 1), -1);
    assert_int_equal(b.len, 0);

    /* freeing a buffer that never grew, twice */
    nx_buf_free(&b);
    nx_buf_free(&b);
}


static void
test_growth(void **state)
{
    size_t    i;
    nx_buf_t  b = NX_BUF_INIT;
    char      c;

    (void) state;

    for (i = 0; i < 100000; i++) {
        c = (char) ('a' + i % 26);
        assert_int_equal(nx_buf_append(&b, &c, 1), 0);
    }

    assert_int_equal(b.len, 100000);
    assert_true(b.cap >= b.len);

    for (i = 0; i < 100000; i++) {
        assert_int_equal(b.data[i], (char) ('a' + i % 26));
    }

    nx_buf_free(&b);
}


static void
test_reset_keeps_memory(void **state)
{
    char      *p;
    size_t     cap;
    nx_buf_t   b = NX_BUF_INIT;

    (void) state;

    assert_int_equal(nx_buf_append_str(&b, "hello, world"), 0);
    p = b.data;
    cap = b.cap;

    nx_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, p);
    assert_int_equal(b.cap, cap);

    assert_int_equal(nx_buf_append_str(&b, "again"), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "again", 5);

    nx_buf_free(&b);
}


static void
test_json(void **state)
{
    nx_buf_t     b = NX_BUF_INIT;
    const char  *expect = "\"a\\\"b\\\\c\\u000a\\u0001\\ufffd\xc3\xa9\"";

    (void) state;

    assert_int_equal(nx_buf_append_str(&b, "\""), 0);
    assert_int_equal(nx_buf_append_json(&b, "a\"b\\c\n\x01", 7), 0);
    assert_int_equal(nx_buf_append_json(&b, "\xff", 1), 0);
    assert_int_equal(nx_buf_append_json(&b, "\xc3\xa9", 2), 0);
    assert_int_equal(nx_buf_append_str(&b, "\""), 0);

    assert_int_equal(b.len, strlen(expect));
    assert_memory_equal(b.data, expect, b.len);

    nx_buf_free(&b);
}


static void
test_binary(void **state)
{
    nx_buf_t  b = NX_BUF_INIT;

    (void) state;

    assert_int_equal(nx_buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 3);

    nx_buf_free(&b);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_reset_keeps_memory),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_binary),
    };

    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
