/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_breaker: the circuit breaker state machine, with the
 * clock driven by the tests.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "nx_breaker.h"


#define T0  1000000

static const nx_breaker_conf_t  conf = { 5, 2, 30000 };


static void
fail_n(nx_breaker_t *b, const nx_breaker_conf_t *c, uint64_t now, int n)
{
    while (n--) {
        assert_int_equal(nx_breaker_allow(b, c, now), 1);
        nx_breaker_record(b, c, now, NX_BREAKER_FAILURE);
    }
}


/* an open breaker, opened at T0 */
static void
opened(nx_breaker_t *b)
{
    nx_breaker_init(b, T0 - 10);
    fail_n(b, &conf, T0, 5);
    assert_int_equal(b->state, NX_BREAKER_OPEN);
}


static void
test_closed(void **state)
{
    int           i;
    nx_breaker_t  b;

    (void) state;

    memset(&b, 0xff, sizeof(b));
    nx_breaker_init(&b, T0);

    assert_int_equal(b.state, NX_BREAKER_CLOSED);
    assert_int_equal(b.failures, 0);
    assert_int_equal(b.opened, 0);
    assert_int_equal(b.changed_ms, T0);

    for (i = 0; i < 100; i++) {
        assert_int_equal(nx_breaker_allow(&b, &conf, T0 + i), 1);
        nx_breaker_record(&b, &conf, T0 + i, NX_BREAKER_SUCCESS);
    }

    assert_int_equal(nx_breaker_state(&b, &conf, T0 + 100),
                     NX_BREAKER_CLOSED);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 100), 0);
}


static void
test_opens_after_consecutive_failures(void **state)
{
    nx_breaker_t  b;

    (void) state;

    nx_breaker_init(&b, T0);

    fail_n(&b, &conf, T0, 4);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
    assert_int_equal(b.failures, 4);

    /* the fifth opens it */
    fail_n(&b, &conf, T0 + 5, 1);
    assert_int_equal(b.state, NX_BREAKER_OPEN);
    assert_int_equal(b.opened, 1);
    assert_int_equal(b.changed_ms, T0 + 5);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 6), 0);
}


static void
test_success_resets_the_count(void **state)
{
    nx_breaker_t  b;

    (void) state;

    nx_breaker_init(&b, T0);

    fail_n(&b, &conf, T0, 4);
    nx_breaker_record(&b, &conf, T0, NX_BREAKER_SUCCESS);
    assert_int_equal(b.failures, 0);

    fail_n(&b, &conf, T0, 4);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);

    fail_n(&b, &conf, T0, 1);
    assert_int_equal(b.state, NX_BREAKER_OPEN);
}


static void
test_neutral_in_closed(void **state)
{
    int           i;
    nx_breaker_t  b;

    (void) state;

    nx_breaker_init(&b, T0);

    /* 429s neither count as failures nor break a run of them */
    for (i = 0; i < 50; i++) {
        nx_breaker_record(&b, &conf, T0, NX_BREAKER_NEUTRAL);
    }
    assert_int_equal(b.failures, 0);

    fail_n(&b, &conf, T0, 4);
    nx_breaker_record(&b, &conf, T0, NX_BREAKER_NEUTRAL);
    assert_int_equal(b.failures, 4);
    fail_n(&b, &conf, T0, 1);
    assert_int_equal(b.state, NX_BREAKER_OPEN);
}


static void
test_open_window(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0), 0);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 29999), 0);

    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0), 30000);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 12000), 18000);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 29999), 1);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 30000), 0);

    assert_int_equal(nx_breaker_state(&b, &conf, T0 + 29999),
                     NX_BREAKER_OPEN);

    /* seen half-open once the window is over, without being changed */
    assert_int_equal(nx_breaker_state(&b, &conf, T0 + 30000),
                     NX_BREAKER_HALF_OPEN);
    assert_int_equal(b.state, NX_BREAKER_OPEN);
}


static void
test_late_outcomes_while_open(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    /* requests that went out before it opened report now */
    nx_breaker_record(&b, &conf, T0 + 10, NX_BREAKER_SUCCESS);
    nx_breaker_record(&b, &conf, T0 + 10, NX_BREAKER_SUCCESS);
    nx_breaker_record(&b, &conf, T0 + 20, NX_BREAKER_FAILURE);
    nx_breaker_record(&b, &conf, T0 + 20, NX_BREAKER_NEUTRAL);

    assert_int_equal(b.state, NX_BREAKER_OPEN);
    assert_int_equal(b.changed_ms, T0);
    assert_int_equal(b.opened, 1);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 20), 29980);
}


static void
test_half_open_one_probe(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30000), 1);
    assert_int_equal(b.state, NX_BREAKER_HALF_OPEN);
    assert_int_equal(b.probing, 1);

    /* the probe is out: nobody else goes */
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30001), 0);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 40000), 0);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 40000), 20000);
}


static void
test_half_open_closes_after_successes(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30000), 1);
    nx_breaker_record(&b, &conf, T0 + 30100, NX_BREAKER_SUCCESS);

    /* one success is not enough, but frees the probe's place */
    assert_int_equal(b.state, NX_BREAKER_HALF_OPEN);
    assert_int_equal(b.successes, 1);
    assert_int_equal(b.probing, 0);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 30100), 0);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30200), 1);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30201), 0);
    nx_breaker_record(&b, &conf, T0 + 30300, NX_BREAKER_SUCCESS);

    assert_int_equal(b.state, NX_BREAKER_CLOSED);
    assert_int_equal(b.failures, 0);
    assert_int_equal(b.successes, 0);
    assert_int_equal(b.changed_ms, T0 + 30300);
    assert_int_equal(b.opened, 1);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30301), 1);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30301), 1);

    /* and it takes five fresh failures to open again */
    fail_n(&b, &conf, T0 + 30400, 4);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
}


static void
test_half_open_failure_reopens(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30000), 1);
    nx_breaker_record(&b, &conf, T0 + 30050, NX_BREAKER_SUCCESS);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30100), 1);
    nx_breaker_record(&b, &conf, T0 + 30200, NX_BREAKER_FAILURE);

    /* a success before does not help: open again for a full window */
    assert_int_equal(b.state, NX_BREAKER_OPEN);
    assert_int_equal(b.opened, 2);
    assert_int_equal(b.successes, 0);
    assert_int_equal(b.probing, 0);
    assert_int_equal(b.changed_ms, T0 + 30200);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 60000), 0);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 + 60000), 200);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 60200), 1);
    assert_int_equal(b.state, NX_BREAKER_HALF_OPEN);
}


static void
test_lost_probe_expires(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30000), 1);

    /* the probe's request died without a word */
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 59999), 0);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 60000), 1);
    assert_int_equal(b.probe_ms, T0 + 60000);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 60001), 0);

    nx_breaker_record(&b, &conf, T0 + 60100, NX_BREAKER_SUCCESS);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 60101), 1);
    nx_breaker_record(&b, &conf, T0 + 60200, NX_BREAKER_SUCCESS);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
}


static void
test_neutral_frees_probe(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30000), 1);
    nx_breaker_record(&b, &conf, T0 + 30010, NX_BREAKER_SUCCESS);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30020), 1);

    /* a 429 or a client that left: no verdict, but the place is free */
    nx_breaker_record(&b, &conf, T0 + 30030, NX_BREAKER_NEUTRAL);
    assert_int_equal(b.state, NX_BREAKER_HALF_OPEN);
    assert_int_equal(b.successes, 1);
    assert_int_equal(b.probing, 0);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30040), 1);
    nx_breaker_record(&b, &conf, T0 + 30050, NX_BREAKER_SUCCESS);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
}


static void
test_reset(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    nx_breaker_reset(&b, T0 + 5);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
    assert_int_equal(b.failures, 0);
    assert_int_equal(b.probing, 0);
    assert_int_equal(b.changed_ms, T0 + 5);

    /* a counter for metrics: it never goes back */
    assert_int_equal(b.opened, 1);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 6), 1);

    /* from half-open with a probe out, too */
    opened(&b);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30000), 1);
    nx_breaker_reset(&b, T0 + 30001);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
    assert_int_equal(b.probing, 0);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30002), 1);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30002), 1);
}


static void
test_clock_backwards(void **state)
{
    nx_breaker_t  b;

    (void) state;

    opened(&b);

    /* another process's older reading: no time has passed */
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 - 500), 0);
    assert_int_equal(nx_breaker_retry_ms(&b, &conf, T0 - 500), 30000);
    assert_int_equal(nx_breaker_state(&b, &conf, T0 - 500),
                     NX_BREAKER_OPEN);

    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 30000), 1);
    assert_int_equal(nx_breaker_allow(&b, &conf, T0 + 29000), 0);
}


static void
test_other_thresholds(void **state)
{
    nx_breaker_t       b;
    nx_breaker_conf_t  one = { 1, 1, 1000 };
    nx_breaker_conf_t  zero = { 0, 0, 0 };

    (void) state;

    nx_breaker_init(&b, T0);
    fail_n(&b, &one, T0, 1);
    assert_int_equal(b.state, NX_BREAKER_OPEN);
    assert_int_equal(nx_breaker_allow(&b, &one, T0 + 999), 0);
    assert_int_equal(nx_breaker_allow(&b, &one, T0 + 1000), 1);
    nx_breaker_record(&b, &one, T0 + 1001, NX_BREAKER_SUCCESS);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);

    /* zeros behave as ones, never as "open at once, forever" */
    nx_breaker_init(&b, T0);
    nx_breaker_record(&b, &zero, T0, NX_BREAKER_SUCCESS);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
    fail_n(&b, &zero, T0, 1);
    assert_int_equal(b.state, NX_BREAKER_OPEN);
    assert_int_equal(nx_breaker_allow(&b, &zero, T0), 1);
    nx_breaker_record(&b, &zero, T0, NX_BREAKER_SUCCESS);
    assert_int_equal(b.state, NX_BREAKER_CLOSED);
}


static void
test_names(void **state)
{
    (void) state;

    assert_string_equal(nx_breaker_state_name(NX_BREAKER_CLOSED), "closed");
    assert_string_equal(nx_breaker_state_name(NX_BREAKER_OPEN), "open");
    assert_string_equal(nx_breaker_state_name(NX_BREAKER_HALF_OPEN),
                        "half_open");
    assert_string_equal(nx_breaker_state_name(7), "unknown");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed),
        cmocka_unit_test(test_opens_after_consecutive_failures),
        cmocka_unit_test(test_success_resets_the_count),
        cmocka_unit_test(test_neutral_in_closed),
        cmocka_unit_test(test_open_window),
        cmocka_unit_test(test_late_outcomes_while_open),
        cmocka_unit_test(test_half_open_one_probe),
        cmocka_unit_test(test_half_open_closes_after_successes),
        cmocka_unit_test(test_half_open_failure_reopens),
        cmocka_unit_test(test_lost_probe_expires),
        cmocka_unit_test(test_neutral_frees_probe),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_other_thresholds),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
