/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_plan: feature names and keys, plan ids, feature lists
 * and Idempotency-Key values.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "nx_plan.h"


#define FNAME(s)   nx_feature_name_valid(s, sizeof(s) - 1)
#define FKEY(s)    nx_feature_key_valid(s, sizeof(s) - 1, NULL)
#define PLAN(s)    nx_plan_id_valid(s, sizeof(s) - 1)
#define IN(l, s)   nx_feature_in(l, sizeof(l) - 1, s, sizeof(s) - 1)
#define IDEM(s)    nx_idempotency_key_valid(s, sizeof(s) - 1)


static void
test_feature_names(void **state)
{
    (void) state;

    assert_int_equal(FNAME("tts"), 0);
    assert_int_equal(FNAME("chat"), 0);
    assert_int_equal(FNAME("identity.sso"), 0);
    assert_int_equal(FNAME("retrieval.gcp_vertex"), 0);
    assert_int_equal(FNAME("a.b.c"), 0);
    assert_int_equal(FNAME("_x"), 0);
    assert_int_equal(FNAME("0"), 0);
    assert_int_equal(FNAME("abcdefghijklmnopqrstuvwxyz012345"), 0);

    assert_int_equal(FNAME(""), -1);
    assert_int_equal(nx_feature_name_valid(NULL, 3), -1);
    assert_int_equal(FNAME("abcdefghijklmnopqrstuvwxyz0123456"), -1);
    assert_int_equal(FNAME(".tts"), -1);
    assert_int_equal(FNAME("tts."), -1);
    assert_int_equal(FNAME("a..b"), -1);
    assert_int_equal(FNAME("."), -1);
    assert_int_equal(FNAME("TTS"), -1);
    assert_int_equal(FNAME("t-s"), -1);
    assert_int_equal(FNAME("t s"), -1);
    assert_int_equal(FNAME("a,b"), -1);
    assert_int_equal(FNAME("a*"), -1);
}


static void
test_feature_every_byte(void **state)
{
    int   c, expect;
    char  buf[3];

    (void) state;

    for (c = 0; c < 256; c++) {
        buf[0] = 'a';
        buf[1] = (char) c;
        buf[2] = 'b';

        expect = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                 || c == '_' || c == '.';

        assert_int_equal(nx_feature_name_valid(buf, 3), expect ? 0 : -1);
    }
}


static void
test_feature_keys(void **state)
{
    const char  *name;

    (void) state;

    assert_int_equal(FKEY("feature.tts"), 0);
    assert_int_equal(FKEY("feature.identity.sso"), 0);
    assert_int_equal(FKEY("feature.abcdefghijklmnopqrstuvwxyz012345"), 0);

    assert_int_equal(FKEY("feature."), -1);
    assert_int_equal(FKEY("feature"), -1);
    assert_int_equal(FKEY("tts"), -1);
    assert_int_equal(FKEY("Feature.tts"), -1);
    assert_int_equal(FKEY("feature..tts"), -1);
    assert_int_equal(FKEY("feature.abcdefghijklmnopqrstuvwxyz0123456"), -1);
    assert_int_equal(nx_feature_key_valid(NULL, 0, NULL), -1);

    name = NULL;
    assert_int_equal(nx_feature_key_valid("feature.tts", 11, &name), 0);
    assert_non_null(name);
    assert_string_equal(name, "tts");
}


static void
test_plan_ids(void **state)
{
    (void) state;

    assert_int_equal(PLAN("free"), 0);
    assert_int_equal(PLAN("pro"), 0);
    assert_int_equal(PLAN("enterprise"), 0);
    assert_int_equal(PLAN("team-2024_b"), 0);
    assert_int_equal(PLAN("0"), 0);
    assert_int_equal(PLAN("abcdefghijklmnopqrstuvwxyz012345"), 0);

    assert_int_equal(PLAN(""), -1);
    assert_int_equal(PLAN("abcdefghijklmnopqrstuvwxyz0123456"), -1);
    assert_int_equal(PLAN("-pro"), -1);
    assert_int_equal(PLAN("Pro"), -1);
    assert_int_equal(PLAN("p.ro"), -1);
    assert_int_equal(PLAN("p ro"), -1);
    assert_int_equal(nx_plan_id_valid(NULL, 2), -1);
}


static void
test_feature_in(void **state)
{
    (void) state;

    assert_int_equal(IN("chat,embeddings,tts", "chat"), 1);
    assert_int_equal(IN("chat,embeddings,tts", "embeddings"), 1);
    assert_int_equal(IN("chat,embeddings,tts", "tts"), 1);
    assert_int_equal(IN("tts", "tts"), 1);
    assert_int_equal(IN("identity.sso,tts", "identity.sso"), 1);

    /* whole names only */
    assert_int_equal(IN("chat,embeddings,tts", "ts"), 0);
    assert_int_equal(IN("chat,embeddings,tts", "chat,"), 0);
    assert_int_equal(IN("chat,embeddings,tts", "embed"), 0);
    assert_int_equal(IN("identity.sso", "identity"), 0);
    assert_int_equal(IN("tts2", "tts"), 0);
    assert_int_equal(IN("", "tts"), 0);
    assert_int_equal(IN("tts", ""), 0);
    assert_int_equal(nx_feature_in("", 0, "", 0), 0);
    assert_int_equal(IN(",,", ""), 0);
}


static void
test_idempotency_keys(void **state)
{
    int   c;
    char  buf[NX_IDEMPOTENCY_KEY_MAX + 1];

    (void) state;

    assert_int_equal(IDEM("a"), 0);
    assert_int_equal(IDEM("op-1"), 0);
    assert_int_equal(IDEM("3f2b8c1e-2d4a-4e5f-9a0b-1c2d3e4f5a6b"), 0);
    assert_int_equal(IDEM("with space ~!@#$%^&*()"), 0);

    assert_int_equal(IDEM(""), -1);
    assert_int_equal(nx_idempotency_key_valid(NULL, 1), -1);
    assert_int_equal(IDEM("tab\there"), -1);
    assert_int_equal(IDEM("caf\xc3\xa9"), -1);
    assert_int_equal(IDEM("del\x7f"), -1);

    memset(buf, 'k', sizeof(buf));
    assert_int_equal(nx_idempotency_key_valid(buf, NX_IDEMPOTENCY_KEY_MAX), 0);
    assert_int_equal(nx_idempotency_key_valid(buf, NX_IDEMPOTENCY_KEY_MAX + 1),
                     -1);

    for (c = 0; c < 256; c++) {
        buf[0] = (char) c;
        assert_int_equal(nx_idempotency_key_valid(buf, 1),
                         (c >= 0x20 && c <= 0x7e) ? 0 : -1);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature_names),
        cmocka_unit_test(test_feature_every_byte),
        cmocka_unit_test(test_feature_keys),
        cmocka_unit_test(test_plan_ids),
        cmocka_unit_test(test_feature_in),
        cmocka_unit_test(test_idempotency_keys),
    };

    return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
