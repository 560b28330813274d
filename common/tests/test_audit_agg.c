/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_audit_agg: the first event of a key at once, the
 * others of its second counted and handed out once the second is over,
 * one event a second for a key hit without pause, a key forgotten after a
 * second without hits, the fold beyond NX_AUDIT_AGG_KEYS keys, and every
 * hit accounted for in a flood.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_audit_agg.h"


#define T   INT64_C(1700000000)


static nx_audit_agg_t  agg;


static nx_audit_agg_rc_t
hit(int64_t tenant, const char *actor, const char *kind, int64_t now,
    size_t *slot)
{
    int     folded;
    size_t  s;

    return nx_audit_agg_hit(&agg, tenant, actor, strlen(actor), kind,
                            strlen(kind), now, slot ? slot : &s, &folded);
}


static int
reset(void **state)
{
    (void) state;

    memset(&agg, 0, sizeof(agg));

    return 0;
}


static void
test_first_then_count(void **state)
{
    size_t    a, b, slot;
    uint64_t  count;

    (void) state;

    assert_int_equal(hit(3, "aaaaaaaaaaaa", "wrong_secret", T, &a),
                     NX_AUDIT_AGG_WRITE);
    assert_int_equal(hit(3, "aaaaaaaaaaaa", "wrong_secret", T, &b),
                     NX_AUDIT_AGG_FIRST);
    assert_int_equal(a, b);
    assert_int_equal(hit(3, "aaaaaaaaaaaa", "wrong_secret", T, NULL),
                     NX_AUDIT_AGG_COUNTED);

    /* another reason, another tenant, another actor: other keys */
    assert_int_equal(hit(3, "aaaaaaaaaaaa", "revoked", T, NULL),
                     NX_AUDIT_AGG_WRITE);
    assert_int_equal(hit(4, "aaaaaaaaaaaa", "wrong_secret", T, NULL),
                     NX_AUDIT_AGG_WRITE);
    assert_int_equal(hit(3, "bbbbbbbbbbbb", "wrong_secret", T, NULL),
                     NX_AUDIT_AGG_WRITE);

    assert_true(nx_audit_agg_pending(&agg));

    /* nothing is due within the second */
    assert_int_equal(nx_audit_agg_due(&agg, T, &slot, &count), 0);

    assert_int_equal(nx_audit_agg_due(&agg, T + 1, &slot, &count), 1);
    assert_int_equal(slot, a);
    assert_int_equal(count, 2);
    assert_int_equal(agg.slot[slot].tenant_id, 3);
    assert_memory_equal(agg.slot[slot].actor, "aaaaaaaaaaaa", 12);
    assert_int_equal(agg.slot[slot].kind_len, strlen("wrong_secret"));
    assert_int_equal(nx_audit_agg_due(&agg, T + 1, &slot, &count), 0);

    assert_false(nx_audit_agg_pending(&agg));
}


static void
test_one_a_second(void **state)
{
    int       s;
    size_t    slot;
    uint64_t  count, total, events;

    (void) state;

    total = 0;
    events = 0;

    /* ten seconds of a hundred hits a second */
    for (s = 0; s < 10; s++) {
        int  i;

        for (i = 0; i < 100; i++) {
            switch (hit(3, "aaaaaaaaaaaa", "x", T + s, NULL)) {
            case NX_AUDIT_AGG_WRITE:
                total++;
                events++;
                break;
            case NX_AUDIT_AGG_LOST:
                fail();
                break;
            default:
                break;
            }
        }

        while (nx_audit_agg_due(&agg, T + s + 1, &slot, &count)) {
            total += count;
            events++;
        }
    }

    assert_int_equal(total, 1000);
    assert_int_equal(events, 11);
}


static void
test_forgotten(void **state)
{
    size_t    slot;
    uint64_t  count;

    (void) state;

    assert_int_equal(hit(3, "a", "x", T, NULL), NX_AUDIT_AGG_WRITE);
    assert_int_equal(hit(3, "a", "x", T, NULL), NX_AUDIT_AGG_FIRST);
    assert_int_equal(nx_audit_agg_due(&agg, T + 1, &slot, &count), 1);
    assert_int_equal(count, 1);

    /* a whole second without a hit: the slot is freed, written at once */
    assert_int_equal(nx_audit_agg_due(&agg, T + 2, &slot, &count), 0);
    assert_int_equal(agg.slot[slot].used, 0);
    assert_int_equal(hit(3, "a", "x", T + 2, NULL), NX_AUDIT_AGG_WRITE);

    /* without a due() in between: a hit after a quiet second is first */
    assert_int_equal(hit(3, "a", "x", T + 4, NULL), NX_AUDIT_AGG_WRITE);

    /* a late timer: hits counted in a second that is over still count */
    assert_int_equal(hit(3, "a", "x", T + 4, NULL), NX_AUDIT_AGG_FIRST);
    assert_int_equal(hit(3, "a", "x", T + 5, NULL), NX_AUDIT_AGG_COUNTED);
    assert_int_equal(nx_audit_agg_due(&agg, T + 5, &slot, &count), 1);
    assert_int_equal(count, 2);
}


static void
test_fold(void **state)
{
    int       i, folded;
    char      actor[16];
    size_t    slot, fold = 0;
    uint64_t  count, total, events;

    (void) state;

    total = 0;
    events = 0;

    /* 200 distinct actors in one second */
    for (i = 0; i < 200; i++) {
        snprintf(actor, sizeof(actor), "%012x", i);

        switch (nx_audit_agg_hit(&agg, 3, actor, 12, "unknown_key", 11, T,
                                 &slot, &folded))
        {
        case NX_AUDIT_AGG_WRITE:
            total++;
            events++;
            assert_int_equal(folded, i >= NX_AUDIT_AGG_KEYS);
            break;
        case NX_AUDIT_AGG_LOST:
            fail();
            break;
        default:
            assert_int_equal(folded, 1);
            break;
        }

        if (i >= NX_AUDIT_AGG_KEYS) {
            assert_int_equal(agg.slot[slot].tenant_id, 0);
            assert_int_equal(agg.slot[slot].actor_len, 0);
            assert_int_equal(agg.slot[slot].folded, 1);
            fold = slot;
        }
    }

    assert_int_equal(events, NX_AUDIT_AGG_KEYS + 1);

    while (nx_audit_agg_due(&agg, T + 1, &slot, &count)) {
        assert_int_equal(slot, fold);
        total += count;
        events++;
    }

    assert_int_equal(total, 200);
    assert_int_equal(events, NX_AUDIT_AGG_KEYS + 2);

    /* the second after: the 32 own keys were freed, room again */
    assert_int_equal(hit(3, "ffffffffffff", "unknown_key", T + 2, NULL),
                     NX_AUDIT_AGG_WRITE);
    assert_int_equal(agg.slot[0].tenant_id, 3);
}


static void
test_lost(void **state)
{
    int     i;
    char    kind[16];
    size_t  slot;

    (void) state;

    /* the fold takes every slot left; then there is no room */
    for (i = 0; i < NX_AUDIT_AGG_SLOTS; i++) {
        snprintf(kind, sizeof(kind), "k%d", i);
        assert_int_equal(hit(0, "", kind, T, &slot), NX_AUDIT_AGG_WRITE);
    }

    assert_int_equal(hit(0, "", "one more", T, NULL), NX_AUDIT_AGG_LOST);
    assert_int_equal(hit(5, "abc", "one more", T, NULL), NX_AUDIT_AGG_LOST);
    assert_int_equal(agg.lost, 2);

    /* known keys are still counted */
    assert_int_equal(hit(0, "", "k7", T, NULL), NX_AUDIT_AGG_FIRST);
}


static void
test_long_strings(void **state)
{
    char    long_actor[200];
    size_t  a, b;

    (void) state;

    memset(long_actor, 'x', sizeof(long_actor));

    assert_int_equal(nx_audit_agg_hit(&agg, 1, long_actor, 200, "k", 1, T,
                                      &a, &(int) { 0 }),
                     NX_AUDIT_AGG_WRITE);
    assert_int_equal(agg.slot[a].actor_len, NX_AUDIT_AGG_STR);

    /* cut the same way: the same key */
    assert_int_equal(nx_audit_agg_hit(&agg, 1, long_actor, 199, "k", 1, T,
                                      &b, &(int) { 0 }),
                     NX_AUDIT_AGG_FIRST);
    assert_int_equal(a, b);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_setup(test_first_then_count, reset),
        cmocka_unit_test_setup(test_one_a_second, reset),
        cmocka_unit_test_setup(test_forgotten, reset),
        cmocka_unit_test_setup(test_fold, reset),
        cmocka_unit_test_setup(test_lost, reset),
        cmocka_unit_test_setup(test_long_strings, reset),
    };

    return cmocka_run_group_tests_name("audit_agg", tests, NULL, NULL);
}
