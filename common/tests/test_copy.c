/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_copy.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "nx_copy.h"


static void
check(const char *in, size_t len, const char *want)
{
    char    out[256];
    size_t  n;

    n = nx_copy_escape(out, in, len);

    assert_true(n <= NX_COPY_ESCAPED_MAX(len));
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}


static void
test_plain(void **state)
{
    (void) state;

    check("", 0, "");
    check("mock-small", 10, "mock-small");
    check("caf\xc3\xa9", 5, "caf\xc3\xa9");
}


static void
test_specials(void **state)
{
    (void) state;

    check("a\\b", 3, "a\\\\b");
    check("a\tb\nc\rd", 7, "a\\tb\\nc\\rd");
    /* the COPY end marker and NULL marker lose their meaning */
    check("\\.", 2, "\\\\.");
    check("\\N", 2, "\\\\N");
}


static void
test_invalid(void **state)
{
    (void) state;

    check("a\0b", 3, "a\xef\xbf\xbd" "b");
    check("\xff", 1, "\xef\xbf\xbd");
    check("\xc3", 1, "\xef\xbf\xbd");
    check("\xe2\x82", 2, "\xef\xbf\xbd\xef\xbf\xbd");
    check("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_specials),
        cmocka_unit_test(test_invalid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
