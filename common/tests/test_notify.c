/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_notify: signatures against Node's crypto module, the
 * retry schedule, stream entries parsed into events, route matching and
 * the canonical payload.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nx_notify.h"


#define JOB_ID  "5f0c8d1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f"


static nx_notify_field_t  fields[NX_NOTIFY_FIELDS_MAX + 8];
static size_t             nfields;


static void
field(const char *name, const char *value)
{
    fields[nfields].name = name;
    fields[nfields].name_len = strlen(name);
    fields[nfields].value = value;
    fields[nfields].value_len = strlen(value);
    nfields++;
}


static yajl_val
json(const char *s)
{
    char      err[128];
    yajl_val  v;

    v = nx_json_parse(s, strlen(s), err, sizeof(err));
    assert_non_null(v);

    return v;
}


static void
test_sign(void **state)
{
    char  sig[NX_NOTIFY_SIG_LEN + 1];

    static const uint8_t  secret[] = "whsec_test";
    static const char     body[] = "{\"a\":1}";

    (void) state;

    assert_int_equal(nx_notify_sign(secret, sizeof(secret) - 1, JOB_ID,
                                    1700000000, body, sizeof(body) - 1, sig),
                     0);
    assert_string_equal(sig, "sha256=a214393895107e24b9b3f646436da354a609a31"
                             "a55f0fe547fafa6fc35d897d5");

    assert_true(nx_notify_verify(secret, sizeof(secret) - 1, JOB_ID,
                                 1700000000, body, sizeof(body) - 1, sig,
                                 strlen(sig)));

    /* a tampered body, another secret, another time, another id */
    assert_false(nx_notify_verify(secret, sizeof(secret) - 1, JOB_ID,
                                  1700000000, "{\"a\":2}", 7, sig,
                                  strlen(sig)));
    assert_false(nx_notify_verify((const uint8_t *) "whsec_tesT", 10, JOB_ID,
                                  1700000000, body, sizeof(body) - 1, sig,
                                  strlen(sig)));
    assert_false(nx_notify_verify(secret, sizeof(secret) - 1, JOB_ID,
                                  1700000001, body, sizeof(body) - 1, sig,
                                  strlen(sig)));
    assert_false(nx_notify_verify(secret, sizeof(secret) - 1, "other",
                                  1700000000, body, sizeof(body) - 1, sig,
                                  strlen(sig)));
    assert_false(nx_notify_verify(secret, sizeof(secret) - 1, JOB_ID,
                                  1700000000, body, sizeof(body) - 1, sig,
                                  strlen(sig) - 1));
    assert_false(nx_notify_verify(secret, sizeof(secret) - 1, JOB_ID,
                                  1700000000, body, sizeof(body) - 1, NULL,
                                  0));

    /* an empty body signs too */
    assert_int_equal(nx_notify_sign(secret, 3, "x", 0, NULL, 0, sig), 0);
    assert_int_equal(strlen(sig), NX_NOTIFY_SIG_LEN);
}


static void
test_backoff(void **state)
{
    int      n;
    int64_t  d, raw;

    /* from Node: see the comment of nx_notify_backoff() */
    static const struct {
        int      attempt;
        int64_t  delay;
    } want[] = {
        { 1, 428 }, { 2, 783 }, { 3, 1970 }, { 4, 3635 }, { 5, 6784 },
        { 6, 12009 }, { 10, 11280 }, { 60, 12910 },
    };

    (void) state;

    for (n = 0; n < (int) (sizeof(want) / sizeof(want[0])); n++) {
        assert_int_equal(nx_notify_backoff("job-1", want[n].attempt, 500,
                                           15000), want[n].delay);
    }

    /* within (3/4 raw, raw], deterministic, capped */
    for (n = 1; n < 80; n++) {
        raw = 100;
        for (d = 1; d < n && raw < 60000; d++) {
            raw *= 2;
        }
        if (raw > 60000) {
            raw = 60000;
        }

        d = nx_notify_backoff(JOB_ID, n, 100, 60000);
        assert_true(d > raw - raw / 4 - 1 && d <= raw);
        assert_int_equal(d, nx_notify_backoff(JOB_ID, n, 100, 60000));
    }

    assert_true(nx_notify_backoff(JOB_ID, 1000000, 1, INT64_MAX) > 0);
    assert_true(nx_notify_backoff(NULL, 0, 0, 0) >= 0);
    assert_int_not_equal(nx_notify_backoff("a", 9, 1000, 100000000),
                         nx_notify_backoff("b", 9, 1000, 100000000));
}


static void
test_event_parse(void **state)
{
    char               err[256];
    nx_notify_event_t  ev;

    (void) state;

    /* a quota event as the module writes it */
    nfields = 0;
    field("type", "quota.soft_cap_reached");
    field("tenant_id", "12");
    field("period", "day");
    field("limit", "5");
    field("used", "3");
    field("ts", "1700000000123");

    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), 0);
    assert_string_equal(ev.type, "quota.soft_cap_reached");
    assert_string_equal(ev.severity, "info");
    assert_int_equal(ev.tenant_id, 12);
    assert_int_equal(ev.ts_ms, 1700000000123LL);
    assert_int_equal(ev.nextra, 3);
    assert_null(ev.data);
    nx_notify_event_free(&ev);

    nfields = 0;
    field("type", "breaker.opened");
    field("severity", "critical");
    field("source", "gateway");
    field("category", "resilience");
    field("payload", "{\"provider\":\"openai\",\"failures\":5}");

    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), 0);
    assert_string_equal(ev.severity, "critical");
    assert_string_equal(ev.source, "gateway");
    assert_string_equal(ev.category, "resilience");
    assert_non_null(ev.data);
    assert_int_equal(ev.tenant_id, 0);
    nx_notify_event_free(&ev);

    /* refusals, with a message that quotes nothing */
    nfields = 0;
    field("tenant_id", "1");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);
    assert_string_equal(err, "\"type\" is missing");

    nfields = 0;
    field("type", "Bad Type");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);
    assert_null(strstr(err, "Bad Type"));

    nfields = 0;
    field("type", "a.b");
    field("tenant_id", "-1");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);

    nfields = 0;
    field("type", "a.b");
    field("tenant_id", "007");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);

    nfields = 0;
    field("type", "a.b");
    field("payload", "[1,2]");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);
    assert_null(ev.data);

    nfields = 0;
    field("type", "a.b");
    field("payload", "{\"a\":1}");
    field("payload", "{\"a\":2}");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);

    nfields = 0;
    field("type", "a.b");
    field("severity", "HIGH");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);

    nfields = 0;
    field("type", "a.b");
    field("bad name", "x");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);

    nfields = 0;
    field("type", "a.b");
    while (nfields < NX_NOTIFY_FIELDS_MAX + 2) {
        field("f", "x");
    }
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), -1);
}


static void
test_payload(void **state)
{
    char              *p, err[256];
    size_t             len;
    nx_notify_event_t  ev;

    (void) state;

    nfields = 0;
    field("used", "3");
    field("type", "quota.soft_cap_reached");
    field("tenant_id", "12");
    field("period", "day");
    field("limit", "5");
    field("big", "1234567890123456789");
    field("neg", "-4");
    field("ts", "1700000000123");
    field("payload", "{\"z\":[1,{\"b\":true,\"a\":null}],\"period\":\"month\","
                     "\"u\":\"caf\\u00e9 \\\"q\\\"\"}");

    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), 0);
    ev.id = "1700000000123-0";

    p = nx_notify_payload(&ev, "acme", &len);
    assert_non_null(p);
    assert_int_equal(len, strlen(p));

    /* keys in byte order; payload over fields; digits as numbers */
    assert_string_equal(p,
        "{\"data\":{\"big\":\"1234567890123456789\",\"limit\":5,\"neg\":-4,"
        "\"period\":\"month\",\"u\":\"caf\xc3\xa9 \\\"q\\\"\",\"used\":3,"
        "\"z\":[1,{\"a\":null,\"b\":true}]},"
        "\"event_id\":\"1700000000123-0\","
        "\"event_type\":\"quota.soft_cap_reached\","
        "\"occurred_at\":\"2023-11-14T22:13:20.123Z\","
        "\"severity\":\"info\",\"tenant\":\"acme\",\"tenant_id\":12}");

    free(p);
    nx_notify_event_free(&ev);

    /* no tenant, no time, source and category */
    nfields = 0;
    field("type", "system.test");
    field("source", "ops");
    field("category", "x");

    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), 0);

    p = nx_notify_payload(&ev, NULL, NULL);
    assert_string_equal(p, "{\"category\":\"x\",\"data\":{},"
                           "\"event_type\":\"system.test\","
                           "\"severity\":\"info\",\"source\":\"ops\"}");
    free(p);
    nx_notify_event_free(&ev);
}


static void
test_canonical(void **state)
{
    char      *s;
    size_t     len;
    yajl_val   v;

    (void) state;

    v = json("{ \"b\" : 1, \"a\" : [ 2.5, -0, 1e2, \"x\\n\" ], \"b\": 2,"
             " \"\" : {}, \"A\": [] }");
    s = nx_json_canonical(v, &len);
    assert_string_equal(s, "{\"\":{},\"A\":[],\"a\":[2.5,0,100,\"x\\u000a\"],"
                           "\"b\":2}");
    assert_int_equal(len, strlen(s));
    free(s);
    nx_json_free(v);

    /* the same document, however written, gives the same bytes */
    v = json("{\"x\":{\"k2\":false,\"k1\":\"\\u0041\"}}");
    s = nx_json_canonical(v, NULL);
    assert_string_equal(s, "{\"x\":{\"k1\":\"A\",\"k2\":false}}");
    free(s);
    nx_json_free(v);

    v = json("123456789012345678901234567890");
    s = nx_json_canonical(v, NULL);
    assert_non_null(s);
    free(s);
    nx_json_free(v);

    s = nx_json_canonical(NULL, NULL);
    assert_string_equal(s, "null");
    free(s);
}


static void
test_match(void **state)
{
    char               err[256];
    yajl_val           m;
    nx_notify_event_t  ev;

    (void) state;

    nfields = 0;
    field("type", "incident.opened");
    field("severity", "high");
    field("source", "alerts");
    assert_int_equal(nx_notify_event_parse(fields, nfields, &ev, err,
                                           sizeof(err)), 0);

#define MATCH(s, want)                                                       \
    m = json(s);                                                             \
    assert_int_equal(nx_notify_match_check(m, err, sizeof(err)), 0);        \
    assert_int_equal(nx_notify_match(m, &ev), want);                         \
    nx_json_free(m)

    MATCH("{}", 1);
    MATCH("{\"event_type\":\"*\"}", 1);
    MATCH("{\"event_type\":\"incident.opened\"}", 1);
    MATCH("{\"event_type\":[\"a.b\",\"incident.opened\"]}", 1);
    MATCH("{\"event_type\":[\"a.b\"]}", 0);
    MATCH("{\"event_type\":\"incident.*\"}", 1);
    MATCH("{\"event_type\":\"incident.opened.*\"}", 0);
    MATCH("{\"event_type\":\"inc*\"}", 0);
    MATCH("{\"event_type\":\"*\",\"severity\":[\"high\",\"critical\"]}", 1);
    MATCH("{\"event_type\":\"*\",\"severity\":[\"critical\"]}", 0);
    MATCH("{\"source\":\"alerts\"}", 1);
    MATCH("{\"source\":\"other\"}", 0);
    MATCH("{\"category\":\"*\"}", 0);      /* the event has no category */

#undef MATCH

    nx_notify_event_free(&ev);

#define BAD(s)                                                               \
    m = json(s);                                                             \
    assert_int_equal(nx_notify_match_check(m, err, sizeof(err)), -1);       \
    nx_json_free(m)

    BAD("[]");
    BAD("{\"event\":\"x\"}");
    BAD("{\"event_type\":1}");
    BAD("{\"event_type\":[]}");
    BAD("{\"event_type\":[1]}");
    BAD("{\"event_type\":\"\"}");
    BAD("{\"severity\":{\"a\":1}}");

#undef BAD

    assert_int_equal(nx_notify_match_check(NULL, err, sizeof(err)), -1);
    assert_int_equal(nx_notify_match(NULL, &ev), 0);
}


static void
test_type_valid(void **state)
{
    (void) state;

    assert_int_equal(nx_notify_type_valid("quota.hard_cap_blocked", 22), 0);
    assert_int_equal(nx_notify_type_valid("a", 1), 0);
    assert_int_equal(nx_notify_type_valid("", 0), -1);
    assert_int_equal(nx_notify_type_valid(".a", 2), -1);
    assert_int_equal(nx_notify_type_valid("a b", 3), -1);
    assert_int_equal(nx_notify_type_valid("A", 1), -1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_event_parse),
        cmocka_unit_test(test_payload),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_type_valid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
