/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_name: tenant names, key names, roles and scope lists.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_name.h"


#define TENANT(s)  nx_tenant_name_valid(s, sizeof(s) - 1)
#define KNAME(s)   nx_key_name_valid(s, sizeof(s) - 1)
#define ROLE(s)    nx_role_parse(s, sizeof(s) - 1)
#define SCOPES(s)  nx_scopes_valid(s, sizeof(s) - 1)


static void
test_tenant_valid(void **state)
{
    (void) state;

    assert_int_equal(TENANT("acme"), 0);
    assert_int_equal(TENANT("a"), 0);
    assert_int_equal(TENANT("0"), 0);
    assert_int_equal(TENANT("0abc"), 0);
    assert_int_equal(TENANT("acme-corp_eu"), 0);
    assert_int_equal(TENANT("a-"), 0);
    assert_int_equal(TENANT("a_"), 0);
    assert_int_equal(TENANT("abcdefghijklmnopqrstuvwxyz0123456789-_"), 0);
}


static void
test_tenant_invalid(void **state)
{
    (void) state;

    assert_int_equal(TENANT(""), -1);
    assert_int_equal(nx_tenant_name_valid(NULL, 0), -1);
    assert_int_equal(nx_tenant_name_valid(NULL, 3), -1);
    assert_int_equal(TENANT("-acme"), -1);
    assert_int_equal(TENANT("_acme"), -1);
    assert_int_equal(TENANT("-"), -1);
    assert_int_equal(TENANT("Acme"), -1);
    assert_int_equal(TENANT("acmE"), -1);
    assert_int_equal(TENANT("ac me"), -1);
    assert_int_equal(TENANT("acme "), -1);
    assert_int_equal(TENANT("ac\tme"), -1);
    assert_int_equal(TENANT("a.b"), -1);
    assert_int_equal(TENANT("a/b"), -1);
    assert_int_equal(TENANT("a:b"), -1);
    assert_int_equal(TENANT("ac\0me"), -1);
    assert_int_equal(TENANT("acme\0"), -1);
    assert_int_equal(TENANT("caf\xc3\xa9"), -1);
    assert_int_equal(TENANT("\xff"), -1);
}


static void
test_tenant_length(void **state)
{
    char  buf[65];

    (void) state;

    memset(buf, 'a', sizeof(buf));

    assert_int_equal(nx_tenant_name_valid(buf, 1), 0);
    assert_int_equal(nx_tenant_name_valid(buf, 62), 0);
    assert_int_equal(nx_tenant_name_valid(buf, 63), 0);
    assert_int_equal(nx_tenant_name_valid(buf, 64), -1);
    assert_int_equal(nx_tenant_name_valid(buf, 65), -1);

    /* only len bytes count */
    assert_int_equal(nx_tenant_name_valid("acme!!", 4), 0);
}


static void
test_tenant_every_byte(void **state)
{
    int   c, expect_first, expect_rest;
    char  buf[2];

    (void) state;

    for (c = 0; c < 256; c++) {
        expect_first = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        expect_rest = expect_first || c == '-' || c == '_';

        buf[0] = (char) c;
        assert_int_equal(nx_tenant_name_valid(buf, 1),
                         expect_first ? 0 : -1);

        buf[0] = 'a';
        buf[1] = (char) c;
        assert_int_equal(nx_tenant_name_valid(buf, 2), expect_rest ? 0 : -1);
    }
}


static void
test_key_name(void **state)
{
    int   c;
    char  buf[130];

    (void) state;

    assert_int_equal(KNAME("ci-bot"), 0);
    assert_int_equal(KNAME("CI bot (prod) #2"), 0);
    assert_int_equal(KNAME(" "), 0);
    assert_int_equal(KNAME("~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./"), 0);

    assert_int_equal(KNAME(""), -1);
    assert_int_equal(nx_key_name_valid(NULL, 0), -1);
    assert_int_equal(KNAME("a\tb"), -1);
    assert_int_equal(KNAME("a\nb"), -1);
    assert_int_equal(KNAME("a\0b"), -1);
    assert_int_equal(KNAME("a\x7f"), -1);
    assert_int_equal(KNAME("caf\xc3\xa9"), -1);
    assert_int_equal(KNAME("\x80"), -1);

    memset(buf, 'k', sizeof(buf));
    assert_int_equal(nx_key_name_valid(buf, 127), 0);
    assert_int_equal(nx_key_name_valid(buf, 128), 0);
    assert_int_equal(nx_key_name_valid(buf, 129), -1);
    assert_int_equal(nx_key_name_valid(buf, 130), -1);

    for (c = 0; c < 256; c++) {
        buf[0] = (char) c;
        assert_int_equal(nx_key_name_valid(buf, 1),
                         (c >= 0x20 && c <= 0x7e) ? 0 : -1);
    }
}


static void
test_roles(void **state)
{
    int          i;
    const char  *name;

    (void) state;

    assert_int_equal(ROLE("reader"), 0);
    assert_int_equal(ROLE("editor"), 1);
    assert_int_equal(ROLE("admin"), 2);

    assert_string_equal(nx_role_name(0), "reader");
    assert_string_equal(nx_role_name(1), "editor");
    assert_string_equal(nx_role_name(2), "admin");

    for (i = 0; i < 3; i++) {
        name = nx_role_name(i);
        assert_non_null(name);
        assert_int_equal(nx_role_parse(name, strlen(name)), i);
    }

    assert_null(nx_role_name(-1));
    assert_null(nx_role_name(3));
    assert_null(nx_role_name(1000));
}


static void
test_roles_invalid(void **state)
{
    (void) state;

    assert_int_equal(ROLE(""), -1);
    assert_int_equal(nx_role_parse(NULL, 0), -1);
    assert_int_equal(ROLE("Admin"), -1);
    assert_int_equal(ROLE("ADMIN"), -1);
    assert_int_equal(ROLE("admins"), -1);
    assert_int_equal(ROLE("admi"), -1);
    assert_int_equal(ROLE(" admin"), -1);
    assert_int_equal(ROLE("admin "), -1);
    assert_int_equal(ROLE("admin\0"), -1);
    assert_int_equal(ROLE("read"), -1);
    assert_int_equal(ROLE("owner"), -1);
    assert_int_equal(ROLE("root"), -1);
    assert_int_equal(ROLE("\xc3\xa4" "dmin"), -1);

    /* only len bytes count */
    assert_int_equal(nx_role_parse("adminx", 5), 2);
    assert_int_equal(nx_role_parse("editor", 5), -1);
}


static void
test_scopes_valid(void **state)
{
    (void) state;

    assert_int_equal(SCOPES(""), 0);
    assert_int_equal(nx_scopes_valid(NULL, 0), 0);
    assert_int_equal(SCOPES("chat"), 0);
    assert_int_equal(SCOPES("chat,embeddings"), 0);
    assert_int_equal(SCOPES("completions:write"), 0);
    assert_int_equal(SCOPES("*"), 0);
    assert_int_equal(SCOPES("models.*,a_b-c:d.e"), 0);
    assert_int_equal(SCOPES("a,b,c,d"), 0);
}


static void
test_scopes_invalid(void **state)
{
    (void) state;

    assert_int_equal(nx_scopes_valid(NULL, 1), -1);
    assert_int_equal(SCOPES(","), -1);
    assert_int_equal(SCOPES(",chat"), -1);
    assert_int_equal(SCOPES("chat,"), -1);
    assert_int_equal(SCOPES("chat,,embeddings"), -1);
    assert_int_equal(SCOPES("chat, embeddings"), -1);
    assert_int_equal(SCOPES(" chat"), -1);
    assert_int_equal(SCOPES("chat\t"), -1);
    assert_int_equal(SCOPES("Chat"), -1);
    assert_int_equal(SCOPES("chat;x"), -1);
    assert_int_equal(SCOPES("chat/x"), -1);
    assert_int_equal(SCOPES("ch\0at"), -1);
    assert_int_equal(SCOPES("chat\0"), -1);
    assert_int_equal(SCOPES("caf\xc3\xa9"), -1);
    assert_int_equal(SCOPES("\x80"), -1);
}


static void
test_scopes_count(void **state)
{
    int     i;
    char    buf[33 * 4];
    size_t  n;

    (void) state;

    /* "s0,s1,...": 32 entries valid, 33 not */

    n = 0;
    for (i = 0; i < 33; i++) {
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%ss%d",
                               i ? "," : "", i);

        if (i == 31) {
            assert_int_equal(nx_scopes_valid(buf, n), 0);
        }
    }

    assert_int_equal(nx_scopes_valid(buf, n), -1);

    /* 32 one-letter scopes: 63 bytes; 33: 65 */
    memset(buf, 0, sizeof(buf));
    for (i = 0; i < 33; i++) {
        buf[2 * i] = 'a';
        buf[2 * i + 1] = ',';
    }

    assert_int_equal(nx_scopes_valid(buf, 63), 0);
    assert_int_equal(nx_scopes_valid(buf, 65), -1);
    assert_int_equal(nx_scopes_valid(buf, 64), -1);
}


static void
test_scopes_length(void **state)
{
    char  buf[140];

    (void) state;

    memset(buf, 'x', sizeof(buf));

    assert_int_equal(nx_scopes_valid(buf, 64), 0);
    assert_int_equal(nx_scopes_valid(buf, 65), -1);

    /* the limit is per scope, not per list */
    buf[64] = ',';
    assert_int_equal(nx_scopes_valid(buf, 129), 0);
    assert_int_equal(nx_scopes_valid(buf, 130), -1);
}


static void
test_scopes_every_byte(void **state)
{
    int   c, expect;
    char  buf[3];

    (void) state;

    for (c = 0; c < 256; c++) {
        expect = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                 || c == '_' || c == ':' || c == '.' || c == '*' || c == '-';

        buf[0] = 'a';
        buf[1] = (char) c;
        buf[2] = 'b';

        if (c == ',') {
            assert_int_equal(nx_scopes_valid(buf, 3), 0);
            continue;
        }

        assert_int_equal(nx_scopes_valid(buf, 3), expect ? 0 : -1);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tenant_valid),
        cmocka_unit_test(test_tenant_invalid),
        cmocka_unit_test(test_tenant_length),
        cmocka_unit_test(test_tenant_every_byte),
        cmocka_unit_test(test_key_name),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_roles_invalid),
        cmocka_unit_test(test_scopes_valid),
        cmocka_unit_test(test_scopes_invalid),
        cmocka_unit_test(test_scopes_count),
        cmocka_unit_test(test_scopes_length),
        cmocka_unit_test(test_scopes_every_byte),
    };

    return cmocka_run_group_tests_name("name", tests, NULL, NULL);
}
