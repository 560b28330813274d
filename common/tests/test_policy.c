/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_policy: every operator true and false, type mismatches,
 * nesting, regex limits, time windows in fixed and IANA zones across DST,
 * the decision order (deny first, priority, wildcards, default), error
 * messages with the exact path of the offending node, and contexts built
 * from JSON, from attribute arrays and from a lookup callback.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nx_policy.h"


#define BERLIN  "/usr/share/zoneinfo/Europe/Berlin"


static nx_policy_t *
compile_set(const char *json, const nx_policy_opts_t *opts)
{
    char          err[512];
    nx_policy_t  *p;

    p = nx_policy_compile(json, strlen(json), opts, err, sizeof(err));
    if (p == NULL) {
        fail_msg("compile of %s failed: %s", json, err);
    }

    return p;
}


static nx_policy_doc_t *
parse_ctx(const char *json)
{
    char              err[256];
    nx_policy_doc_t  *doc;

    doc = nx_policy_doc_parse(json, strlen(json), err, sizeof(err));
    if (doc == NULL) {
        fail_msg("context %s: %s", json, err);
    }

    return doc;
}


/* compiles a condition, evaluates it in the JSON context ctx */

static int
eval_opts(const char *cond, const char *ctx, const nx_policy_opts_t *opts)
{
    int               r;
    char              err[512];
    nx_policy_t      *p;
    nx_policy_doc_t  *doc;

    p = nx_policy_compile_condition(cond, strlen(cond), opts, err,
                                    sizeof(err));
    if (p == NULL) {
        fail_msg("compile of %s failed: %s", cond, err);
    }

    doc = parse_ctx(ctx);

    r = nx_policy_eval(p, nx_policy_doc_ctx(doc));

    nx_policy_doc_free(doc);
    nx_policy_free(p);

    return r;
}


static int
eval(const char *cond, const char *ctx)
{
    return eval_opts(cond, ctx, NULL);
}


#define T(c, x)  do {                                                         \
        if (eval(c, x) != 1) fail_msg("expected true: %s in %s", c, x);     \
    } while (0)

#define F(c, x)  do {                                                         \
        if (eval(c, x) != 0) fail_msg("expected false: %s in %s", c, x);    \
    } while (0)


/* expect ends with '*': a prefix of the message */

static void
expect_error(const char *err, const char *expect, const char *doc)
{
    size_t  n;

    n = strlen(expect);

    if (n > 0 && expect[n - 1] == '*') {
        if (strncmp(err, expect, n - 1) == 0) {
            return;
        }

    } else if (strcmp(err, expect) == 0) {
        return;
    }

    fail_msg("%s\n  error:    %s\n  expected: %s", doc, err, expect);
}


static void
cond_err_opts(const char *cond, const nx_policy_opts_t *opts,
    const char *expect)
{
    char          err[512];
    nx_policy_t  *p;

    memset(err, 'x', sizeof(err));

    p = nx_policy_compile_condition(cond, strlen(cond), opts, err,
                                    sizeof(err));
    if (p != NULL) {
        nx_policy_free(p);
        fail_msg("compile of %s succeeded", cond);
    }

    expect_error(err, expect, cond);
}


static void
cond_err(const char *cond, const char *expect)
{
    cond_err_opts(cond, NULL, expect);
}


static void
set_err_opts(const char *set, const nx_policy_opts_t *opts,
    const char *expect)
{
    char          err[512];
    nx_policy_t  *p;

    memset(err, 'x', sizeof(err));

    p = nx_policy_compile(set, strlen(set), opts, err, sizeof(err));
    if (p != NULL) {
        nx_policy_free(p);
        fail_msg("compile of %s succeeded", set);
    }

    expect_error(err, expect, set);
}


static void
set_err(const char *set, const char *expect)
{
    set_err_opts(set, NULL, expect);
}


static void
expect_decision(const nx_policy_t *p, const char *rtype, const char *action,
    const char *ctx, nx_policy_effect_t effect, const char *rule_id)
{
    int                    rc;
    nx_policy_doc_t       *doc;
    nx_policy_decision_t   d;

    doc = parse_ctx(ctx);

    rc = nx_policy_decide(p, rtype, strlen(rtype), action, strlen(action),
                          nx_policy_doc_ctx(doc), &d);

    nx_policy_doc_free(doc);

    if (rc != 0) {
        fail_msg("%s/%s in %s: rc %d (%s)", rtype, action, ctx, rc,
                 d.error != NULL ? d.error : "-");
    }

    assert_null(d.error);

    if (d.effect != effect) {
        fail_msg("%s/%s in %s: effect %d, expected %d (rule %s)", rtype,
                 action, ctx, d.effect, effect,
                 d.rule_id != NULL ? d.rule_id : "default");
    }

    if (rule_id == NULL) {
        if (d.rule_id != NULL) {
            fail_msg("%s/%s in %s: rule %s, expected the default", rtype,
                     action, ctx, d.rule_id);
        }

        assert_true(d.rule == NX_POLICY_NO_RULE);

    } else {
        if (d.rule_id == NULL || strcmp(d.rule_id, rule_id) != 0) {
            fail_msg("%s/%s in %s: rule %s, expected %s", rtype, action, ctx,
                     d.rule_id != NULL ? d.rule_id : "default", rule_id);
        }
    }
}


static int
have_berlin(void)
{
    if (access(BERLIN, R_OK) != 0) {
        print_message("skipping IANA cases: no " BERLIN "\n");
        return 0;
    }

    return 1;
}


static void
test_eq(void **state)
{
    (void) state;

    T("{\"eq\": [{\"var\": \"principal.role\"}, \"admin\"]}",
      "{\"principal\": {\"role\": \"admin\"}}");
    F("{\"eq\": [{\"var\": \"principal.role\"}, \"admin\"]}",
      "{\"principal\": {\"role\": \"reader\"}}");
    F("{\"eq\": [{\"var\": \"principal.role\"}, \"admin\"]}",
      "{\"principal\": {\"role\": \"admin2\"}}");
    T("{\"eq\": [\"admin\", {\"var\": \"principal.role\"}]}",
      "{\"principal\": {\"role\": \"admin\"}}");

    /* numbers compare as numbers */
    T("{\"eq\": [{\"var\": \"n\"}, 1]}", "{\"n\": 1.0}");
    T("{\"eq\": [{\"var\": \"n\"}, 100]}", "{\"n\": 1e2}");
    F("{\"eq\": [{\"var\": \"n\"}, 1]}", "{\"n\": 1.5}");

    /* booleans, null, arrays */
    T("{\"eq\": [{\"var\": \"b\"}, true]}", "{\"b\": true}");
    F("{\"eq\": [{\"var\": \"b\"}, true]}", "{\"b\": false}");
    T("{\"eq\": [{\"var\": \"z\"}, null]}", "{\"z\": null}");
    T("{\"eq\": [{\"var\": \"a\"}, [1, \"x\", null]]}",
      "{\"a\": [1, \"x\", null]}");
    F("{\"eq\": [{\"var\": \"a\"}, [1, \"x\"]]}", "{\"a\": [1, \"x\", 2]}");
    F("{\"eq\": [{\"var\": \"a\"}, [1, \"x\"]]}", "{\"a\": [1, \"y\"]}");
    T("{\"eq\": [{\"var\": \"a\"}, []]}", "{\"a\": []}");

    /* two variables */
    T("{\"eq\": [{\"var\": \"principal.tenant\"}, "
      "{\"var\": \"resource.tenant\"}]}",
      "{\"principal\": {\"tenant\": \"t1\"}, \"resource\": {\"tenant\": "
      "\"t1\"}}");
    F("{\"eq\": [{\"var\": \"principal.tenant\"}, "
      "{\"var\": \"resource.tenant\"}]}",
      "{\"principal\": {\"tenant\": \"t1\"}, \"resource\": {\"tenant\": "
      "\"t2\"}}");

    /* no conversions */
    F("{\"eq\": [{\"var\": \"n\"}, \"1\"]}", "{\"n\": 1}");
    F("{\"eq\": [{\"var\": \"b\"}, 1]}", "{\"b\": true}");
    F("{\"eq\": [{\"var\": \"z\"}, false]}", "{\"z\": null}");
    F("{\"eq\": [{\"var\": \"s\"}, \"\"]}", "{\"s\": null}");
    F("{\"eq\": [{\"var\": \"s\"}, [\"a\"]]}", "{\"s\": \"a\"}");

    /* a missing variable is null */
    T("{\"eq\": [{\"var\": \"missing\"}, null]}", "{}");
    F("{\"eq\": [{\"var\": \"missing\"}, \"x\"]}", "{}");
    T("{\"eq\": [{\"var\": \"a.b\"}, {\"var\": \"c.d\"}]}", "{}");

    /* a variable names a leaf: an object is no value, so it is missing */
    T("{\"eq\": [{\"var\": \"principal\"}, null]}",
      "{\"principal\": {\"role\": \"x\"}}");

    /* literals on both sides */
    T("{\"eq\": [\"a\", \"a\"]}", "{}");
    F("{\"eq\": [1, 2]}", "{}");

    /* strings are compared bytewise, UTF-8 included */
    T("{\"eq\": [{\"var\": \"s\"}, \"caf\\u00e9\"]}",
      "{\"s\": \"caf\xc3\xa9\"}");
    F("{\"eq\": [{\"var\": \"s\"}, \"Admin\"]}", "{\"s\": \"admin\"}");
}


static void
test_ne(void **state)
{
    (void) state;

    T("{\"ne\": [{\"var\": \"r\"}, \"admin\"]}", "{\"r\": \"reader\"}");
    F("{\"ne\": [{\"var\": \"r\"}, \"admin\"]}", "{\"r\": \"admin\"}");
    T("{\"ne\": [{\"var\": \"r\"}, \"1\"]}", "{\"r\": 1}");
    T("{\"ne\": [{\"var\": \"missing\"}, \"admin\"]}", "{}");
    F("{\"ne\": [{\"var\": \"missing\"}, null]}", "{}");
    F("{\"ne\": [{\"var\": \"n\"}, 2]}", "{\"n\": 2.0}");
}


static void
test_in(void **state)
{
    (void) state;

    T("{\"in\": [{\"var\": \"resource.type\"}, [\"document\", \"corpus\"]]}",
      "{\"resource\": {\"type\": \"corpus\"}}");
    F("{\"in\": [{\"var\": \"resource.type\"}, [\"document\", \"corpus\"]]}",
      "{\"resource\": {\"type\": \"model\"}}");
    F("{\"in\": [{\"var\": \"resource.type\"}, []]}",
      "{\"resource\": {\"type\": \"model\"}}");
    T("{\"in\": [{\"var\": \"n\"}, [1, 2, 3]]}", "{\"n\": 2}");
    F("{\"in\": [{\"var\": \"n\"}, [1, 2, 3]]}", "{\"n\": \"2\"}");
    T("{\"in\": [{\"var\": \"n\"}, [1, null]]}", "{}");
    F("{\"in\": [{\"var\": \"n\"}, [1, 2]]}", "{}");

    /* the array may be a variable; a non-array is never a container */
    T("{\"in\": [\"editors\", {\"var\": \"principal.groups\"}]}",
      "{\"principal\": {\"groups\": [\"readers\", \"editors\"]}}");
    F("{\"in\": [\"admins\", {\"var\": \"principal.groups\"}]}",
      "{\"principal\": {\"groups\": [\"readers\", \"editors\"]}}");
    F("{\"in\": [\"editors\", {\"var\": \"principal.groups\"}]}",
      "{\"principal\": {\"groups\": \"editors\"}}");
    F("{\"in\": [\"editors\", {\"var\": \"principal.groups\"}]}", "{}");
}


static void
test_contains(void **state)
{
    (void) state;

    T("{\"contains\": [{\"var\": \"s\"}, \"needle\"]}",
      "{\"s\": \"haystack with a needle in it\"}");
    T("{\"contains\": [{\"var\": \"s\"}, \"needle\"]}", "{\"s\": \"needle\"}");
    F("{\"contains\": [{\"var\": \"s\"}, \"needle\"]}",
      "{\"s\": \"haystack\"}");
    F("{\"contains\": [{\"var\": \"s\"}, \"needle\"]}", "{\"s\": \"needl\"}");
    T("{\"contains\": [{\"var\": \"s\"}, \"\"]}", "{\"s\": \"\"}");
    T("{\"contains\": [{\"var\": \"s\"}, {\"var\": \"t\"}]}",
      "{\"s\": \"abcdef\", \"t\": \"cde\"}");

    /* arrays contain values */
    T("{\"contains\": [{\"var\": \"scopes\"}, \"chat\"]}",
      "{\"scopes\": [\"embed\", \"chat\"]}");
    F("{\"contains\": [{\"var\": \"scopes\"}, \"chat\"]}",
      "{\"scopes\": [\"embed\", \"chatty\"]}");
    T("{\"contains\": [[1, 2, 3], {\"var\": \"n\"}]}", "{\"n\": 3}");

    /* mismatches */
    F("{\"contains\": [{\"var\": \"s\"}, \"1\"]}", "{\"s\": 12}");
    F("{\"contains\": [{\"var\": \"s\"}, {\"var\": \"t\"}]}",
      "{\"s\": \"a1\", \"t\": 1}");
    F("{\"contains\": [{\"var\": \"s\"}, \"x\"]}", "{}");
    F("{\"contains\": [{\"var\": \"s\"}, \"x\"]}", "{\"s\": true}");
}


static void
test_starts_with(void **state)
{
    (void) state;

    T("{\"starts_with\": [{\"var\": \"m\"}, \"gpt-4\"]}",
      "{\"m\": \"gpt-4o-mini\"}");
    T("{\"starts_with\": [{\"var\": \"m\"}, \"gpt-4\"]}", "{\"m\": \"gpt-4\"}");
    F("{\"starts_with\": [{\"var\": \"m\"}, \"gpt-4\"]}", "{\"m\": \"gpt-3\"}");
    F("{\"starts_with\": [{\"var\": \"m\"}, \"gpt-4\"]}", "{\"m\": \"gpt\"}");
    F("{\"starts_with\": [{\"var\": \"m\"}, \"gpt-4\"]}",
      "{\"m\": \"x-gpt-4\"}");
    T("{\"starts_with\": [{\"var\": \"m\"}, \"\"]}", "{\"m\": \"any\"}");
    F("{\"starts_with\": [{\"var\": \"m\"}, \"1\"]}", "{\"m\": 12}");
    F("{\"starts_with\": [{\"var\": \"m\"}, \"a\"]}", "{}");
    F("{\"starts_with\": [{\"var\": \"m\"}, \"a\"]}", "{\"m\": [\"a\"]}");
}


static void
test_order(void **state)
{
    (void) state;

    T("{\"gt\": [{\"var\": \"n\"}, 10]}", "{\"n\": 11}");
    F("{\"gt\": [{\"var\": \"n\"}, 10]}", "{\"n\": 10}");
    T("{\"gte\": [{\"var\": \"n\"}, 10]}", "{\"n\": 10}");
    F("{\"gte\": [{\"var\": \"n\"}, 10]}", "{\"n\": 9.999}");
    T("{\"lt\": [{\"var\": \"n\"}, -1.5]}", "{\"n\": -2}");
    F("{\"lt\": [{\"var\": \"n\"}, -1.5]}", "{\"n\": -1.5}");
    T("{\"lte\": [{\"var\": \"n\"}, -1.5]}", "{\"n\": -1.5}");
    F("{\"lte\": [{\"var\": \"n\"}, -1.5]}", "{\"n\": 0}");
    T("{\"lt\": [{\"var\": \"a\"}, {\"var\": \"b\"}]}",
      "{\"a\": 1, \"b\": 2}");
    T("{\"gt\": [1e3, 999]}", "{}");

    /* null, booleans, plain strings and arrays are not ordered */
    F("{\"gt\": [{\"var\": \"n\"}, 0]}", "{}");
    F("{\"lt\": [{\"var\": \"n\"}, 0]}", "{}");
    F("{\"gte\": [{\"var\": \"n\"}, 0]}", "{\"n\": null}");
    F("{\"lte\": [{\"var\": \"n\"}, 1]}", "{\"n\": true}");
    F("{\"gt\": [{\"var\": \"n\"}, 0]}", "{\"n\": \"5\"}");
    F("{\"lt\": [{\"var\": \"n\"}, 0]}", "{\"n\": [1]}");
    F("{\"lt\": [{\"var\": \"a\"}, {\"var\": \"b\"}]}",
      "{\"a\": \"apple\", \"b\": \"banana\"}");

    /* RFC 3339 timestamps compare as times */
    T("{\"gt\": [{\"var\": \"t\"}, \"2025-01-01T00:00:00Z\"]}",
      "{\"t\": \"2025-06-01T12:00:00Z\"}");
    F("{\"gt\": [{\"var\": \"t\"}, \"2025-01-01T00:00:00Z\"]}",
      "{\"t\": \"2024-12-31T23:59:59Z\"}");
    T("{\"lt\": [{\"var\": \"t\"}, \"2025-01-01\"]}",
      "{\"t\": \"2024-12-31T23:59:59.999Z\"}");
    F("{\"lt\": [{\"var\": \"t\"}, \"2025-01-01\"]}",
      "{\"t\": \"2025-01-01T00:00:00Z\"}");
    T("{\"lte\": [{\"var\": \"t\"}, \"2025-01-01\"]}",
      "{\"t\": \"2025-01-01T00:00:00Z\"}");

    /* offsets are honoured: 01:00+02:00 is 23:00Z the day before */
    T("{\"lt\": [{\"var\": \"t\"}, \"2025-01-01T00:00:00Z\"]}",
      "{\"t\": \"2025-01-01T01:00:00+02:00\"}");
    T("{\"gt\": [{\"var\": \"t\"}, \"2025-01-01T00:00:00Z\"]}",
      "{\"t\": \"2024-12-31T20:00:00-05:00\"}");
    T("{\"eq\": [1, 1]}", "{}");

    /* and against epoch seconds: 2025-01-01T00:00:00Z is 1735689600 */
    T("{\"gte\": [{\"var\": \"request.time\"}, \"2025-01-01T00:00:00Z\"]}",
      "{\"request\": {\"time\": 1735689600}}");
    F("{\"gt\": [{\"var\": \"request.time\"}, \"2025-01-01T00:00:00Z\"]}",
      "{\"request\": {\"time\": 1735689600}}");
    T("{\"lt\": [{\"var\": \"request.time\"}, \"2025-01-01T00:00:00.5Z\"]}",
      "{\"request\": {\"time\": 1735689600}}");
    T("{\"gt\": [{\"var\": \"t\"}, 1735689599]}",
      "{\"t\": \"2025-01-01T00:00:00Z\"}");

    /* timestamps without an offset, or invalid, are no times */
    F("{\"gt\": [{\"var\": \"t\"}, 0]}", "{\"t\": \"2025-01-01T00:00:00\"}");
    F("{\"gt\": [{\"var\": \"t\"}, 0]}", "{\"t\": \"2025-02-30\"}");
    F("{\"gt\": [{\"var\": \"t\"}, 0]}", "{\"t\": \"2025-01-01T25:00:00Z\"}");
}


static void
test_logic(void **state)
{
    (void) state;

    T("{\"all\": [{\"eq\": [{\"var\": \"principal.role\"}, \"admin\"]}, "
      "{\"in\": [{\"var\": \"resource.type\"}, [\"document\", "
      "\"corpus\"]]}]}",
      "{\"principal\": {\"role\": \"admin\"}, \"resource\": {\"type\": "
      "\"document\"}}");
    F("{\"all\": [{\"eq\": [{\"var\": \"principal.role\"}, \"admin\"]}, "
      "{\"in\": [{\"var\": \"resource.type\"}, [\"document\", "
      "\"corpus\"]]}]}",
      "{\"principal\": {\"role\": \"admin\"}, \"resource\": {\"type\": "
      "\"model\"}}");

    T("{\"any\": [{\"eq\": [{\"var\": \"r\"}, \"a\"]}, "
      "{\"eq\": [{\"var\": \"r\"}, \"b\"]}]}", "{\"r\": \"b\"}");
    F("{\"any\": [{\"eq\": [{\"var\": \"r\"}, \"a\"]}, "
      "{\"eq\": [{\"var\": \"r\"}, \"b\"]}]}", "{\"r\": \"c\"}");

    T("{\"not\": {\"eq\": [{\"var\": \"r\"}, \"a\"]}}", "{\"r\": \"b\"}");
    F("{\"not\": {\"eq\": [{\"var\": \"r\"}, \"a\"]}}", "{\"r\": \"a\"}");
    T("{\"not\": [{\"eq\": [{\"var\": \"r\"}, \"a\"]}]}", "{\"r\": \"b\"}");
    T("{\"not\": {\"not\": {\"eq\": [{\"var\": \"r\"}, \"a\"]}}}",
      "{\"r\": \"a\"}");

    /* empty lists and constants */
    T("{\"all\": []}", "{}");
    F("{\"any\": []}", "{}");
    T("true", "{}");
    F("false", "{}");
    T("{\"not\": false}", "{}");
    T("{\"all\": [true, {\"any\": [false, true]}]}", "{}");

    /* nesting */
    T("{\"any\": [{\"all\": [{\"eq\": [{\"var\": \"a\"}, 1]}, "
      "{\"not\": {\"eq\": [{\"var\": \"b\"}, 2]}}]}, "
      "{\"all\": [{\"eq\": [{\"var\": \"a\"}, 3]}, "
      "{\"any\": [{\"gt\": [{\"var\": \"c\"}, 10]}, "
      "{\"starts_with\": [{\"var\": \"d\"}, \"x\"]}]}]}]}",
      "{\"a\": 3, \"b\": 2, \"c\": 5, \"d\": \"xyz\"}");
    F("{\"any\": [{\"all\": [{\"eq\": [{\"var\": \"a\"}, 1]}, "
      "{\"not\": {\"eq\": [{\"var\": \"b\"}, 2]}}]}, "
      "{\"all\": [{\"eq\": [{\"var\": \"a\"}, 3]}, "
      "{\"any\": [{\"gt\": [{\"var\": \"c\"}, 10]}, "
      "{\"starts_with\": [{\"var\": \"d\"}, \"x\"]}]}]}]}",
      "{\"a\": 3, \"b\": 2, \"c\": 5, \"d\": \"yz\"}");
    T("{\"any\": [{\"all\": [{\"eq\": [{\"var\": \"a\"}, 1]}, "
      "{\"not\": {\"eq\": [{\"var\": \"b\"}, 2]}}]}, false]}",
      "{\"a\": 1, \"b\": 3}");
}


static void
test_regex(void **state)
{
    (void) state;

    T("{\"regex\": [{\"var\": \"e\"}, \"@example\\\\.com$\"]}",
      "{\"e\": \"alice@example.com\"}");
    F("{\"regex\": [{\"var\": \"e\"}, \"@example\\\\.com$\"]}",
      "{\"e\": \"alice@example.com.evil\"}");
    F("{\"regex\": [{\"var\": \"e\"}, \"@example\\\\.com$\"]}",
      "{\"e\": \"alice@exampleXcom\"}");

    /* unanchored unless anchored */
    T("{\"regex\": [{\"var\": \"m\"}, \"4o\"]}", "{\"m\": \"gpt-4o-mini\"}");
    F("{\"regex\": [{\"var\": \"m\"}, \"^4o\"]}", "{\"m\": \"gpt-4o-mini\"}");
    T("{\"regex\": [{\"var\": \"m\"}, \"(?i)^GPT-\"]}", "{\"m\": \"gpt-4\"}");
    T("{\"regex\": [{\"var\": \"m\"}, \"\"]}", "{\"m\": \"\"}");

    /* UTF-8 aware, and invalid UTF-8 subjects are matched, not errors */
    T("{\"regex\": [{\"var\": \"s\"}, \"^caf.$\"]}",
      "{\"s\": \"caf\xc3\xa9\"}");
    T("{\"regex\": [\"ab\\u00ffc\", \"b.c\"]}", "{}");

    /* only strings match */
    F("{\"regex\": [{\"var\": \"n\"}, \"1\"]}", "{\"n\": 1}");
    F("{\"regex\": [{\"var\": \"n\"}, \".*\"]}", "{}");
    F("{\"regex\": [{\"var\": \"n\"}, \".*\"]}", "{\"n\": [\"a\"]}");
}


static void
test_regex_invalid_subject(void **state)
{
    int                 r;
    char                err[256];
    nx_policy_t        *p;
    nx_policy_ctx_t     ctx;
    nx_policy_attr_t    attr;
    static const char   cond[] = "{\"regex\": [{\"var\": \"s\"}, \"^a.c$\"]}";

    (void) state;

    p = nx_policy_compile_condition(cond, sizeof(cond) - 1, NULL, err,
                                    sizeof(err));
    assert_non_null(p);

    memset(&attr, 0, sizeof(attr));
    attr.name = "s";
    attr.len = 1;
    attr.value.type = NX_POLICY_STRING;
    attr.value.u.str.data = "a\xff" "c";
    attr.value.u.str.len = 3;

    memset(&ctx, 0, sizeof(ctx));
    ctx.attrs = &attr;
    ctx.nattrs = 1;

    /* an invalid byte is no character: "." does not match it */
    r = nx_policy_eval(p, &ctx);
    assert_int_equal(r, 0);

    attr.value.u.str.data = "abc";
    assert_int_equal(nx_policy_eval(p, &ctx), 1);

    /* not NUL-terminated: only len bytes count */
    attr.value.u.str.data = "abcd";
    assert_int_equal(nx_policy_eval(p, &ctx), 1);

    nx_policy_free(p);
}


static void
test_regex_limit(void **state)
{
    int                    rc;
    char                   err[256], subject[64];
    nx_policy_t           *p;
    nx_policy_ctx_t        ctx;
    nx_policy_attr_t       attr;
    nx_policy_opts_t       opts;
    nx_policy_decision_t   d;
    static const char      set[] =
        "[{\"id\": \"allow-all\", \"effect\": \"allow\", \"priority\": 1,"
        "  \"resource_type\": \"document\", \"action\": \"read\"},"
        " {\"id\": \"deny-evil\", \"effect\": \"deny\","
        "  \"resource_type\": \"document\", \"action\": \"read\","
        "  \"condition\": {\"not\": {\"regex\": [{\"var\": \"s\"},"
        "                                   \"^(a+)+$\"]}}}]";
    static const char     *nested = "{\"regex\": [{\"var\": \"s\"}, "
                                    "\"^(a+)+$\"]}";
    static const char     *star = "{\"regex\": [{\"var\": \"s\"}, "
                                  "\"^(a|b)*$\"]}";

    (void) state;

    /* catastrophic backtracking: 2^30 paths */
    memset(subject, 'a', 30);
    subject[30] = 'b';

    memset(&attr, 0, sizeof(attr));
    attr.name = "s";
    attr.len = 1;
    attr.value.type = NX_POLICY_STRING;
    attr.value.u.str.data = subject;
    attr.value.u.str.len = 31;

    memset(&ctx, 0, sizeof(ctx));
    ctx.attrs = &attr;
    ctx.nattrs = 1;

    memset(&opts, 0, sizeof(opts));
    opts.default_allow = 1;

    p = nx_policy_compile(set, sizeof(set) - 1, &opts, err, sizeof(err));
    assert_non_null(p);

    /* fails closed even though the failing rule is a "not" in a deny */
    rc = nx_policy_decide(p, "document", 8, "read", 4, &ctx, &d);
    assert_int_equal(rc, -1);
    assert_int_equal(d.effect, NX_POLICY_DENY);
    assert_string_equal(d.rule_id, "deny-evil");
    assert_int_equal(d.rule, 1);
    assert_string_equal(d.error, "regex match limit exceeded");

    /* a short subject stays within the limit; the set is reusable */
    attr.value.u.str.len = 5;
    memset(subject, 'a', 5);

    rc = nx_policy_decide(p, "document", 8, "read", 4, &ctx, &d);
    assert_int_equal(rc, 0);
    assert_int_equal(d.effect, NX_POLICY_ALLOW);
    assert_string_equal(d.rule_id, "allow-all");

    attr.value.u.str.len = 31;
    rc = nx_policy_decide(p, "document", 8, "read", 4, &ctx, &d);
    assert_int_equal(rc, -1);

    nx_policy_free(p);

    /* the same with a single condition */
    p = nx_policy_compile_condition(nested, strlen(nested), NULL, err,
                                    sizeof(err));
    assert_non_null(p);
    assert_int_equal(nx_policy_eval(p, &ctx), -1);
    nx_policy_free(p);

    /* a linear match, within the default limit but not within 10 steps */
    memset(&opts, 0, sizeof(opts));
    opts.match_limit = 10;
    p = nx_policy_compile_condition(star, strlen(star), &opts, err,
                                    sizeof(err));
    assert_non_null(p);
    assert_int_equal(nx_policy_eval(p, &ctx), -1);
    nx_policy_free(p);

    opts.match_limit = 0;
    p = nx_policy_compile_condition(star, strlen(star), &opts, err,
                                    sizeof(err));
    assert_non_null(p);
    assert_int_equal(nx_policy_eval(p, &ctx), 1);
    nx_policy_free(p);
}


/* deep backtracking grows PCRE2's frame vector inside the reserved heap */

static void
test_regex_heap(void **state)
{
    int                i;
    char               err[256], *subject;
    nx_policy_t       *p;
    nx_policy_ctx_t    ctx;
    nx_policy_attr_t   attr;
    nx_policy_opts_t   opts;
    static const char  cond[] =
        "{\"regex\": [{\"var\": \"s\"}, \"^(?:(a)|b)*$\"]}";

    (void) state;

    subject = malloc(100000);
    assert_non_null(subject);
    memset(subject, 'a', 100000);

    memset(&attr, 0, sizeof(attr));
    attr.name = "s";
    attr.len = 1;
    attr.value.type = NX_POLICY_STRING;
    attr.value.u.str.data = subject;

    memset(&ctx, 0, sizeof(ctx));
    ctx.attrs = &attr;
    ctx.nattrs = 1;

    memset(&opts, 0, sizeof(opts));
    opts.match_limit = 10000000;

    p = nx_policy_compile_condition(cond, sizeof(cond) - 1, &opts, err,
                                    sizeof(err));
    assert_non_null(p);

    /* a few frames: fits in the first vector */
    attr.value.u.str.len = 10;
    assert_int_equal(nx_policy_eval(p, &ctx), 1);

    /* grows (twice the vector, then the limit) and fits */
    attr.value.u.str.len = 300;
    assert_int_equal(nx_policy_eval(p, &ctx), 1);

    /* a frame or two per repetition: 100000 of them exceed 256 KiB */
    attr.value.u.str.len = 100000;
    assert_int_equal(nx_policy_eval(p, &ctx), -1);

    /* and the reserved blocks are reused, again and again */
    for (i = 0; i < 100; i++) {
        attr.value.u.str.len = (i % 2) ? 300 : 100000;
        assert_int_equal(nx_policy_eval(p, &ctx), (i % 2) ? 1 : -1);
    }

    nx_policy_free(p);

    /* a bigger heap lets a longer one through */
    attr.value.u.str.len = 10000;

    opts.heap_kib = 8 * 1024;
    p = nx_policy_compile_condition(cond, sizeof(cond) - 1, &opts, err,
                                    sizeof(err));
    assert_non_null(p);
    assert_int_equal(nx_policy_eval(p, &ctx), 1);
    nx_policy_free(p);

    free(subject);
}


static void
test_regex_errors(void **state)
{
    (void) state;

    cond_err("{\"regex\": [{\"var\": \"s\"}, \"(unclosed\"]}",
             "condition.regex: invalid pattern: missing closing "
             "parenthesis at offset 9");
    cond_err("{\"all\": [true, {\"regex\": [{\"var\": \"s\"}, \"a{2,1}\"]}]}",
             "condition.all[1].regex: invalid pattern: *");
    cond_err("{\"regex\": [{\"var\": \"s\"}, \"\\\\C\"]}",
             "condition.regex: invalid pattern: *");
    cond_err("{\"regex\": [{\"var\": \"s\"}, 1]}",
             "condition.regex[1]: expected a pattern string");
    cond_err("{\"regex\": [{\"var\": \"s\"}, {\"var\": \"p\"}]}",
             "condition.regex[1]: expected a pattern string");
    cond_err("{\"regex\": [1, \"a\"]}",
             "condition.regex[0]: expected a string or a variable");
    cond_err("{\"regex\": [{\"var\": \"s\"}]}",
             "condition.regex: expected an array of an operand and a "
             "pattern");
    cond_err("{\"regex\": \"a\"}",
             "condition.regex: expected an array of an operand and a "
             "pattern");

    set_err("[{\"id\": \"a\", \"effect\": \"allow\", \"resource_type\": \"d\","
            " \"action\": \"r\"},"
            " {\"id\": \"b\", \"effect\": \"allow\", \"resource_type\": \"d\","
            " \"action\": \"r\"},"
            " {\"id\": \"c\", \"effect\": \"deny\", \"resource_type\": \"d\","
            " \"action\": \"r\", \"condition\": {\"all\": ["
            "   {\"eq\": [{\"var\": \"x\"}, 1]},"
            "   {\"regex\": [{\"var\": \"y\"}, \"x[a-z\"]}]}}]",
            "rules[2].condition.all[1].regex: invalid pattern: missing "
            "terminating ] for character class at offset 5");
}


/* request.time in the context, by default */

static int
at(const char *cond, double t)
{
    char  ctx[128];

    (void) snprintf(ctx, sizeof(ctx), "{\"request\": {\"time\": %.3f}}", t);

    return eval(cond, ctx);
}


#define AT_T(c, t)  do {                                                      \
        if (at(c, t) != 1) fail_msg("expected true at %.3f: %s",             \
                                    (double) (t), c);                        \
    } while (0)

#define AT_F(c, t)  do {                                                      \
        if (at(c, t) != 0) fail_msg("expected false at %.3f: %s",            \
                                    (double) (t), c);                        \
    } while (0)


static void
test_time_between_utc(void **state)
{
    const char  *office = "{\"time_between\": [\"09:00\", \"17:30\"]}";
    const char  *night = "{\"time_between\": [\"22:00\", \"06:00\", \"UTC\"]}";

    (void) state;

    /* 2024-06-15T09:00:00Z is 1718442000 */
    AT_T(office, 1718442000);
    AT_F(office, 1718442000 - 1);
    AT_T(office, 1718472600 - 1);          /* 17:29:59 */
    AT_F(office, 1718472600);              /* 17:30:00: the end is out */
    AT_T(office, 1718442000 + 0.5);
    AT_F(office, 1718442000 - 0.5);        /* 08:59:59.5 */

    /* across midnight */
    AT_T(night, 1718494200);               /* 23:30 */
    AT_T(night, 1718517599);               /* 05:59:59 the next day */
    AT_F(night, 1718517599 + 1);           /* 06:00 */
    AT_T(night, 1718442000 - 9 * 3600);    /* 00:00 */
    AT_F(night, 1718442000);               /* 09:00 */
    AT_F(night, 1718442000 + 13 * 3600 - 1);  /* 21:59:59 */
    AT_T(night, 1718442000 + 13 * 3600);      /* 22:00 */

    /* seconds, and a day's end */
    AT_T("{\"time_between\": [\"09:00:30\", \"09:00:31\"]}", 1718442030);
    AT_F("{\"time_between\": [\"09:00:30\", \"09:00:31\"]}", 1718442031);
    AT_T("{\"time_between\": [\"23:00\", \"24:00\"]}", 1718442000 - 9 * 3600
                                                       - 1);
    AT_F("{\"time_between\": [\"23:00\", \"24:00\"]}", 1718442000 - 9 * 3600);
    AT_T("{\"time_between\": [\"00:00\", \"24:00\"]}", 1718442000);

    /* before 1970, the modulo must stay positive: 1969-12-31T23:00Z */
    AT_T("{\"time_between\": [\"22:30\", \"23:30\"]}", -3600);
    AT_F("{\"time_between\": [\"00:30\", \"23:30\"]}", -1);

    /* no time, or no usable one: false */
    F(office, "{}");
    F(office, "{\"request\": {\"time\": \"noon\"}}");
    F(office, "{\"request\": {\"time\": 1e300}}");
    F(office, "{\"request\": {\"time\": true}}");

    /* an RFC 3339 string works as a time */
    T(office, "{\"request\": {\"time\": \"2024-06-15T12:00:00Z\"}}");
    T(office, "{\"request\": {\"time\": \"2024-06-15T19:00:00+02:00\"}}");
    F(office, "{\"request\": {\"time\": \"2024-06-15T12:00:00-08:00\"}}");

    /* the time operand first, and NexusRAG's object form */
    T("{\"time_between\": [{\"var\": \"t\"}, \"09:00\", \"17:30\"]}",
      "{\"t\": 1718442000}");
    F("{\"time_between\": [{\"var\": \"t\"}, \"09:00\", \"17:30\"]}",
      "{\"request\": {\"time\": 1718442000}}");
    T("{\"time_between\": [{\"var\": \"request.time\"}, "
      "{\"start\": \"09:00\", \"end\": \"18:00\"}]}",
      "{\"request\": {\"time\": 1718442000}}");
    T("{\"time_between\": [{\"start\": \"09:00\", \"end\": \"18:00\", "
      "\"tz\": \"UTC\"}]}", "{\"request\": {\"time\": 1718442000}}");
    T("{\"time_between\": [1718442000, \"09:00\", \"17:30\"]}", "{}");
    F("{\"time_between\": [1718441999, \"09:00\", \"17:30\"]}", "{}");
}


static void
test_time_between_offset(void **state)
{
    nx_policy_opts_t  opts;

    (void) state;

    /* 09:00Z is 11:00 at +02:00 and 03:30 at -05:30 */
    AT_T("{\"time_between\": [\"11:00\", \"11:01\", \"+02:00\"]}",
         1718442000);
    AT_F("{\"time_between\": [\"09:00\", \"09:01\", \"+02:00\"]}",
         1718442000);
    AT_T("{\"time_between\": [\"03:30\", \"03:31\", \"-05:30\"]}",
         1718442000);
    AT_T("{\"time_between\": [\"03:30\", \"03:31\", \"-0530\"]}",
         1718442000);
    AT_T("{\"time_between\": [\"11:00\", \"11:01\", \"+02\"]}", 1718442000);
    AT_T("{\"time_between\": [\"11:00\", \"11:01\", \"UTC+02:00\"]}",
         1718442000);
    AT_T("{\"time_between\": [\"09:00\", \"09:01\", \"Z\"]}", 1718442000);

    /* the window spans midnight only in local time: 23:00Z is 01:00 */
    AT_T("{\"time_between\": [\"00:30\", \"01:30\", \"+02:00\"]}",
         1718442000 + 14 * 3600);
    AT_T("{\"time_between\": [\"22:00\", \"02:00\", \"+02:00\"]}",
         1718442000 + 14 * 3600);
    AT_F("{\"time_between\": [\"22:00\", \"02:00\", \"+02:00\"]}",
         1718442000);

    /* another time variable */
    memset(&opts, 0, sizeof(opts));
    opts.time_var = "env.now";

    assert_int_equal(eval_opts("{\"time_between\": [\"09:00\", \"10:00\"]}",
                               "{\"env\": {\"now\": 1718442000}}", &opts), 1);
    assert_int_equal(eval_opts("{\"time_between\": [\"09:00\", \"10:00\"]}",
                               "{\"request\": {\"time\": 1718442000}}",
                               &opts), 0);

    opts.time_var = "bad..path";
    cond_err_opts("true", &opts,
                  "condition: invalid time variable in the options");
}


static void
test_time_between_berlin(void **state)
{
    const char  *morning, *night, *hole;

    (void) state;

    if (!have_berlin()) {
        skip();
    }

    morning = "{\"time_between\": [\"08:00\", \"09:00\", \"Europe/Berlin\"]}";
    night = "{\"time_between\": [\"02:00\", \"03:00\", \"Europe/Berlin\"]}";
    hole = "{\"time_between\": [{\"var\": \"request.time\"}, "
           "{\"start\": \"22:00\", \"end\": \"06:00\", "
           "\"tz\": \"Europe/Berlin\"}]}";

    /* spring 2025: CET (+1) until 2025-03-30T01:00Z, then CEST (+2) */
    AT_T(morning, 1743233400);        /* 03-29 07:30Z = 08:30 CET */
    AT_F(morning, 1743406200);        /* 03-31 07:30Z = 09:30 CEST */
    AT_T(morning, 1743402600);        /* 03-31 06:30Z = 08:30 CEST */

    /* 02:00-03:00 local does not exist on the day of the change */
    AT_T(night, 1743211800);          /* 03-29 01:30Z = 02:30 CET */
    AT_F(night, 1743296399);          /* 03-30 00:59:59Z = 01:59:59 CET */
    AT_F(night, 1743296400);          /* 03-30 01:00Z = 03:00 CEST */
    AT_F(night, 1743296400 + 1800);

    /* autumn 2025: back to CET at 2025-10-26T01:00Z */
    AT_T(morning, 1761373800);        /* 10-25 06:30Z = 08:30 CEST */
    AT_F(morning, 1761546600);        /* 10-27 06:30Z = 07:30 CET */
    AT_T(morning, 1761550200);        /* 10-27 07:30Z = 08:30 CET */

    /* 02:00-03:00 happens twice: 00:00Z-01:00Z CEST, 01:00Z-02:00Z CET */
    AT_F(night, 1761440400 - 3600 - 1);   /* 01:59:59 CEST */
    AT_T(night, 1761440400 - 3600);       /* 02:00 CEST */
    AT_T(night, 1761440399);              /* 02:59:59 CEST */
    AT_T(night, 1761440400);              /* 02:00 CET */
    AT_T(night, 1761440400 + 3599);       /* 02:59:59 CET */
    AT_F(night, 1761440400 + 3600);       /* 03:00 CET */

    /* across midnight, in the object form */
    AT_T(hole, 1743233400 - 7 * 3600);    /* 03-29 00:30Z = 01:30 CET */
    AT_F(hole, 1743233400);

    /* after the last transition of the file: the footer rule */
    AT_T("{\"time_between\": [\"09:00\", \"10:00\", \"Europe/Berlin\"]}",
         5695947000);                     /* 2150-07-01 07:30Z, CEST */
    AT_T("{\"time_between\": [\"08:00\", \"09:00\", \"Europe/Berlin\"]}",
         5681518200);                     /* 2150-01-15 07:30Z, CET */

    /* New York is UTC-4 in June: 09:00Z is 05:00 */
    AT_T("{\"time_between\": [\"05:00\", \"05:01\", \"America/New_York\"]}",
         1718442000);

    /* one zone named twice is loaded once, and both conditions work */
    AT_T("{\"all\": [" "{\"time_between\": [\"08:00\", \"09:00\", "
         "\"Europe/Berlin\"]}, {\"time_between\": [\"08:30\", \"08:31\", "
         "\"Europe/Berlin\"]}]}", 1743233400);
}


static void
test_time_between_errors(void **state)
{
    nx_policy_opts_t  opts;

    (void) state;

    cond_err("{\"time_between\": [\"09:00\"]}",
             "condition.time_between: expected [start, end, zone]");
    cond_err("{\"time_between\": []}",
             "condition.time_between: expected [start, end, zone]");
    cond_err("{\"time_between\": \"09:00-10:00\"}",
             "condition.time_between: expected [start, end, zone]");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"UTC\", \"x\"]}",
             "condition.time_between: expected [start, end, zone]");
    cond_err("{\"time_between\": [\"9:00\", \"10:00\"]}",
             "condition.time_between[0]: expected a time \"HH:MM\" or "
             "\"HH:MM:SS\"");
    cond_err("{\"time_between\": [\"24:00\", \"10:00\"]}",
             "condition.time_between[0]: expected a time \"HH:MM\" or "
             "\"HH:MM:SS\"");
    cond_err("{\"time_between\": [\"09:00\", \"24:01\"]}",
             "condition.time_between[1]: expected a time \"HH:MM\" or "
             "\"HH:MM:SS\" (or \"24:00\")");
    cond_err("{\"time_between\": [\"09:60\", \"10:00\"]}",
             "condition.time_between[0]: expected a time \"HH:MM\" or "
             "\"HH:MM:SS\"");
    cond_err("{\"time_between\": [\"09:00\", 10]}",
             "condition.time_between[1]: expected a time \"HH:MM\" or "
             "\"HH:MM:SS\" (or \"24:00\")");
    cond_err("{\"time_between\": [\"09:00\", \"09:00\"]}",
             "condition.time_between: empty window: start equals end");
    cond_err("{\"time_between\": [{\"var\": \"t\"}, \"09:00\", \"10:00\", "
             "\"Mars/Olympus\"]}",
             "condition.time_between[3]: time zone \"Mars/Olympus\": "
             "unknown time zone");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"Europe\"]}",
             "condition.time_between[2]: time zone \"Europe\": unknown time "
             "zone");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"../etc/passwd\"]}",
             "condition.time_between[2]: invalid time zone name");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"/etc/localtime\"]}",
             "condition.time_between[2]: invalid time zone name");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"Europe/../UTC\"]}",
             "condition.time_between[2]: invalid time zone name");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"Europe//Berlin\"]}",
             "condition.time_between[2]: invalid time zone name");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"Europe/Berlin \"]}",
             "condition.time_between[2]: invalid time zone name");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"+19:00\"]}",
             "condition.time_between[2]: invalid time zone name");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", \"\"]}",
             "condition.time_between[2]: invalid time zone name");
    cond_err("{\"time_between\": [\"09:00\", \"10:00\", 2]}",
             "condition.time_between[2]: expected a time zone name");
    cond_err("{\"time_between\": [{\"var\": \"t\"}, {\"start\": \"09:00\"}]}",
             "condition.time_between[1]: missing \"start\" or \"end\"");
    cond_err("{\"time_between\": [{\"var\": \"t\"}, {\"start\": \"09:00\", "
             "\"end\": \"10:00\", \"zone\": \"UTC\"}]}",
             "condition.time_between[1]: expected only \"start\", \"end\" "
             "and \"tz\"");
    cond_err("{\"time_between\": [{\"var\": \"t\"}, {\"start\": \"09:00\", "
             "\"end\": \"1000\"}]}",
             "condition.time_between[1].end: expected a time \"HH:MM\" or "
             "\"HH:MM:SS\" (or \"24:00\")");
    cond_err("{\"time_between\": [{\"var\": \"t\"}, {\"start\": \"09:00\", "
             "\"end\": \"10:00\", \"tz\": \"Nowhere\"}]}",
             "condition.time_between[1].tz: time zone \"Nowhere\": unknown "
             "time zone");
    cond_err("{\"time_between\": [{\"var\": \"t\", \"x\": 1}, \"09:00\", "
             "\"10:00\"]}",
             "condition.time_between[0]: expected a literal or "
             "{\"var\": ...}");

    /* without tzdata, an IANA name cannot compile */
    memset(&opts, 0, sizeof(opts));
    opts.tzdir = "/nonexistent";
    cond_err_opts("{\"time_between\": [\"09:00\", \"10:00\", "
                  "\"Europe/Berlin\"]}", &opts,
                  "condition.time_between[2]: time zone \"Europe/Berlin\": "
                  "unknown time zone");

    /* fixed offsets need no tzdata */
    assert_int_equal(eval_opts("{\"time_between\": [\"11:00\", \"11:01\", "
                               "\"+02:00\"]}",
                               "{\"request\": {\"time\": 1718442000}}",
                               &opts), 1);
}


/* a set of rules for the decision tests */

static const char  docset[] =
    "[{\"id\": \"deny-high\", \"effect\": \"deny\", \"priority\": 1,"
    "  \"resource_type\": \"document\", \"action\": \"read\","
    "  \"condition\": {\"eq\": [{\"var\": \"resource.labels.sensitivity\"},"
    "                           \"high\"]}},"
    " {\"id\": \"allow-readers\", \"effect\": \"allow\", \"priority\": 10,"
    "  \"resource_type\": \"document\", \"action\": \"read\","
    "  \"condition\": {\"in\": [{\"var\": \"principal.role\"},"
    "                           [\"reader\", \"editor\", \"admin\"]]}},"
    " {\"id\": \"allow-admin\", \"effect\": \"allow\", \"priority\": 100,"
    "  \"resource_type\": \"document\", \"action\": \"read\","
    "  \"condition\": {\"eq\": [{\"var\": \"principal.role\"}, \"admin\"]}},"
    " {\"id\": \"allow-editors\", \"effect\": \"allow\", \"priority\": 100,"
    "  \"resource_type\": \"document\", \"action\": \"write\","
    "  \"condition\": {\"eq\": [{\"var\": \"principal.role\"}, \"editor\"]}},"
    " {\"id\": \"deny-suspended\", \"effect\": \"deny\","
    "  \"resource_type\": \"*\", \"action\": \"*\","
    "  \"condition\": {\"eq\": [{\"var\": \"principal.suspended\"}, true]}},"
    " {\"id\": \"allow-ops\", \"effect\": \"allow\", \"priority\": 5,"
    "  \"resource_type\": \"corpus\", \"action\": \"*\","
    "  \"condition\": {\"eq\": [{\"var\": \"principal.role\"}, \"ops\"]}}]";


static void
test_decide_deny_first(void **state)
{
    nx_policy_t  *p;

    (void) state;

    p = compile_set(docset, NULL);
    assert_int_equal(nx_policy_rules(p), 4);  /* wildcards are inert */

    /* the deny rule has the lowest priority and still wins */
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"admin\"}, \"resource\": "
                    "{\"labels\": {\"sensitivity\": \"high\"}}}",
                    NX_POLICY_DENY, "deny-high");
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"admin\"}, \"resource\": "
                    "{\"labels\": {\"sensitivity\": \"low\"}}}",
                    NX_POLICY_ALLOW, "allow-admin");
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"reader\"}}",
                    NX_POLICY_ALLOW, "allow-readers");
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"guest\"}}",
                    NX_POLICY_DENY, NULL);

    /* resource type and action must both match */
    expect_decision(p, "document", "write",
                    "{\"principal\": {\"role\": \"reader\"}}",
                    NX_POLICY_DENY, NULL);
    expect_decision(p, "document", "write",
                    "{\"principal\": {\"role\": \"editor\"}, \"resource\": "
                    "{\"labels\": {\"sensitivity\": \"high\"}}}",
                    NX_POLICY_ALLOW, "allow-editors");
    expect_decision(p, "corpus", "read",
                    "{\"principal\": {\"role\": \"admin\"}}",
                    NX_POLICY_DENY, NULL);
    expect_decision(p, "Document", "read",
                    "{\"principal\": {\"role\": \"admin\"}}",
                    NX_POLICY_DENY, NULL);
    expect_decision(p, "document", "rea",
                    "{\"principal\": {\"role\": \"admin\"}}",
                    NX_POLICY_DENY, NULL);
    expect_decision(p, "", "",
                    "{\"principal\": {\"role\": \"admin\"}}",
                    NX_POLICY_DENY, NULL);

    /* without wildcards, "*" is not honoured, nor requested literally */
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"reader\", "
                    "\"suspended\": true}}",
                    NX_POLICY_ALLOW, "allow-readers");
    expect_decision(p, "*", "*",
                    "{\"principal\": {\"suspended\": true, "
                    "\"role\": \"ops\"}}",
                    NX_POLICY_DENY, NULL);

    nx_policy_free(p);
}


static void
test_decide_wildcards(void **state)
{
    nx_policy_t       *p;
    nx_policy_opts_t   opts;

    (void) state;

    memset(&opts, 0, sizeof(opts));
    opts.wildcards = 1;

    p = compile_set(docset, &opts);
    assert_int_equal(nx_policy_rules(p), 6);

    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"reader\", "
                    "\"suspended\": true}}",
                    NX_POLICY_DENY, "deny-suspended");
    expect_decision(p, "model", "invoke",
                    "{\"principal\": {\"suspended\": true}}",
                    NX_POLICY_DENY, "deny-suspended");
    expect_decision(p, "corpus", "delete",
                    "{\"principal\": {\"role\": \"ops\"}}",
                    NX_POLICY_ALLOW, "allow-ops");
    expect_decision(p, "corpus", "read",
                    "{\"principal\": {\"role\": \"ops\", "
                    "\"suspended\": true}}",
                    NX_POLICY_DENY, "deny-suspended");
    expect_decision(p, "document", "delete",
                    "{\"principal\": {\"role\": \"ops\"}}",
                    NX_POLICY_DENY, NULL);

    /* two deny rules hold: the one of higher priority is reported */
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"suspended\": true}, \"resource\": "
                    "{\"labels\": {\"sensitivity\": \"high\"}}}",
                    NX_POLICY_DENY, "deny-high");

    nx_policy_free(p);
}


static void
test_decide_priority(void **state)
{
    nx_policy_t  *p;

    (void) state;

    p = compile_set(
        "[{\"id\": \"low\", \"effect\": \"allow\", \"priority\": -5,"
        "  \"resource_type\": \"m\", \"action\": \"a\"},"
        " {\"id\": \"mid-b\", \"effect\": \"allow\", \"priority\": 50,"
        "  \"resource_type\": \"m\", \"action\": \"a\","
        "  \"condition\": {\"gte\": [{\"var\": \"level\"}, 1]}},"
        " {\"id\": \"mid-a\", \"effect\": \"allow\", \"priority\": 50,"
        "  \"resource_type\": \"m\", \"action\": \"a\","
        "  \"condition\": {\"gte\": [{\"var\": \"level\"}, 2]}},"
        " {\"id\": \"top\", \"effect\": \"allow\", \"priority\": 9000,"
        "  \"resource_type\": \"m\", \"action\": \"a\","
        "  \"condition\": {\"gte\": [{\"var\": \"level\"}, 3]}},"
        " {\"id\": \"default-prio\", \"effect\": \"allow\","
        "  \"resource_type\": \"m\", \"action\": \"b\"}]", NULL);

    expect_decision(p, "m", "a", "{\"level\": 3}", NX_POLICY_ALLOW, "top");

    /* equal priority: by id, so "mid-a" before "mid-b" */
    expect_decision(p, "m", "a", "{\"level\": 2}", NX_POLICY_ALLOW, "mid-a");
    expect_decision(p, "m", "a", "{\"level\": 1}", NX_POLICY_ALLOW, "mid-b");
    expect_decision(p, "m", "a", "{}", NX_POLICY_ALLOW, "low");
    expect_decision(p, "m", "b", "{}", NX_POLICY_ALLOW, "default-prio");

    nx_policy_free(p);
}


static void
test_decide_default(void **state)
{
    nx_policy_t           *p;
    nx_policy_opts_t       opts;
    nx_policy_decision_t   d;
    static const char      set[] =
        "[{\"id\": \"deny-guests\", \"effect\": \"deny\","
        "  \"resource_type\": \"document\", \"action\": \"read\","
        "  \"condition\": {\"eq\": [{\"var\": \"principal.role\"},"
        "                           \"guest\"]}}]";

    (void) state;

    p = compile_set(set, NULL);
    expect_decision(p, "document", "read", "{}", NX_POLICY_DENY, NULL);
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"guest\"}}",
                    NX_POLICY_DENY, "deny-guests");
    nx_policy_free(p);

    memset(&opts, 0, sizeof(opts));
    opts.default_allow = 1;

    p = compile_set(set, &opts);
    expect_decision(p, "document", "read", "{}", NX_POLICY_ALLOW, NULL);
    expect_decision(p, "document", "read",
                    "{\"principal\": {\"role\": \"guest\"}}",
                    NX_POLICY_DENY, "deny-guests");
    expect_decision(p, "other", "read",
                    "{\"principal\": {\"role\": \"guest\"}}",
                    NX_POLICY_ALLOW, NULL);

    /* a NULL context: every variable is missing */
    assert_int_equal(nx_policy_decide(p, "document", 8, "read", 4, NULL, &d),
                     0);
    assert_int_equal(d.effect, NX_POLICY_ALLOW);
    assert_null(d.rule_id);
    nx_policy_free(p);

    /* an empty set */
    p = compile_set("[]", NULL);
    assert_int_equal(nx_policy_rules(p), 0);
    expect_decision(p, "document", "read", "{}", NX_POLICY_DENY, NULL);
    nx_policy_free(p);

    p = compile_set("[]", &opts);
    expect_decision(p, "document", "read", "{}", NX_POLICY_ALLOW, NULL);
    nx_policy_free(p);

    /* a rule without condition always holds */
    p = compile_set("[{\"id\": \"r\", \"effect\": \"allow\", "
                    "\"resource_type\": \"d\", \"action\": \"a\", "
                    "\"description\": \"anyone may a d\"}]", NULL);
    expect_decision(p, "d", "a", "{}", NX_POLICY_ALLOW, "r");
    assert_int_equal(nx_policy_decide(p, "d", 1, "a", 1, NULL, &d), 0);
    assert_int_equal(d.rule, 0);
    nx_policy_free(p);
}


static void
test_decide_arguments(void **state)
{
    nx_policy_t           *p, *c;
    nx_policy_decision_t   d;

    (void) state;

    p = compile_set(docset, NULL);
    c = nx_policy_compile_condition("true", 4, NULL, NULL, 0);
    assert_non_null(c);

    assert_int_equal(nx_policy_decide(NULL, "d", 1, "a", 1, NULL, &d), -1);
    assert_int_equal(d.effect, NX_POLICY_DENY);
    assert_string_equal(d.error, "invalid arguments");

    assert_int_equal(nx_policy_decide(p, NULL, 1, "a", 1, NULL, &d), -1);
    assert_int_equal(nx_policy_decide(p, "d", 1, NULL, 1, NULL, &d), -1);
    assert_int_equal(nx_policy_decide(p, "d", 1, "a", 1, NULL, NULL), -1);
    assert_int_equal(nx_policy_decide(p, NULL, 0, NULL, 0, NULL, &d), 0);

    /* a condition is not a rule set, nor the other way round */
    assert_int_equal(nx_policy_decide(c, "d", 1, "a", 1, NULL, &d), -1);
    assert_int_equal(nx_policy_eval(p, NULL), -1);
    assert_int_equal(nx_policy_eval(NULL, NULL), -1);
    assert_int_equal(nx_policy_eval(c, NULL), 1);
    assert_int_equal(nx_policy_rules(c), 0);
    assert_int_equal(nx_policy_rules(NULL), 0);

    nx_policy_free(c);
    nx_policy_free(p);
    nx_policy_free(NULL);
}


static void
test_set_errors(void **state)
{
    nx_policy_opts_t  opts;

    (void) state;

    set_err("", "rules: invalid JSON: *");
    set_err("[", "rules: invalid JSON: *");
    set_err("[] x", "rules: invalid JSON: *");
    set_err("[\"a\\u0000b\"]", "rules: invalid JSON: string contains "
            "\\u0000 at byte 3");
    set_err("{}", "rules: expected an array of rules");
    set_err("[1]", "rules[0]: expected a rule object");
    set_err("[{\"effect\": \"allow\", \"resource_type\": \"d\", "
            "\"action\": \"a\"}]", "rules[0]: missing \"id\"");
    set_err("[{\"id\": \"r\", \"resource_type\": \"d\", \"action\": \"a\"}]",
            "rules[0]: missing \"effect\"");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"action\": \"a\"}]",
            "rules[0]: missing \"resource_type\"");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\"}]", "rules[0]: missing \"action\"");
    set_err("[{\"id\": \"r\", \"effect\": \"permit\", \"resource_type\": "
            "\"d\", \"action\": \"a\"}]",
            "rules[0].effect: expected \"allow\" or \"deny\"");
    set_err("[{\"id\": \"r\", \"effect\": true, \"resource_type\": "
            "\"d\", \"action\": \"a\"}]",
            "rules[0].effect: expected \"allow\" or \"deny\"");
    set_err("[{\"id\": \"\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\"}]",
            "rules[0].id: expected a string of 1 to 128 visible ASCII "
            "characters other than '\"' and '\\'");
    set_err("[{\"id\": \"a b\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\"}]",
            "rules[0].id: expected a string of 1 to 128 visible ASCII "
            "characters other than '\"' and '\\'");
    set_err("[{\"id\": 7, \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\"}]",
            "rules[0].id: expected a string of 1 to 128 visible ASCII "
            "characters other than '\"' and '\\'");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"\", \"action\": \"a\"}]",
            "rules[0].resource_type: expected a string of 1 to 128 visible "
            "ASCII characters other than '\"' and '\\'");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": [\"a\"]}]",
            "rules[0].action: expected a string of 1 to 128 visible "
            "ASCII characters other than '\"' and '\\'");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\", \"priority\": 1.5}]",
            "rules[0].priority: expected an integer");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\", \"priority\": \"1\"}]",
            "rules[0].priority: expected an integer");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\", \"description\": 1}]",
            "rules[0].description: expected a string");

    /* a misspelt member must not make an unconditional rule */
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\", \"conditon\": false}]",
            "rules[0]: unknown member \"conditon\"");
    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\", \"x\\ny\": false}]",
            "rules[0]: unknown member");

    set_err("[{\"id\": \"r1\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\"},"
            " {\"id\": \"r2\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\"},"
            " {\"id\": \"r1\", \"effect\": \"deny\", \"resource_type\": "
            "\"e\", \"action\": \"b\"}]",
            "rules[2].id: duplicate id \"r1\" (also rules[0])");

    /* ids must be unique even among rules that can never apply */
    set_err("[{\"id\": \"w\", \"effect\": \"allow\", \"resource_type\": "
            "\"*\", \"action\": \"a\"},"
            " {\"id\": \"w\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\"}]",
            "rules[1].id: duplicate id \"w\" (also rules[0])");

    set_err("[{\"id\": \"r\", \"effect\": \"allow\", \"resource_type\": "
            "\"d\", \"action\": \"a\", \"condition\": {\"eq\": [1]}}]",
            "rules[0].condition.eq: expected an array of two operands");

    memset(&opts, 0, sizeof(opts));
    opts.wildcards = 1;
    set_err_opts("[{\"id\": \"r\", \"effect\": \"allow\", "
                 "\"resource_type\": \"*\", \"action\": \"*\", "
                 "\"condition\": {\"any\": [true, {\"gt\": "
                 "[{\"var\": \"a\"}, \"soon\"]}]}}]", &opts,
                 "rules[0].condition.any[1].gt[1]: expected a number, an "
                 "RFC 3339 timestamp or a variable");
}


static void
test_condition_errors(void **state)
{
    (void) state;

    cond_err("", "condition: invalid JSON: *");
    cond_err("1", "condition: expected a condition object");
    cond_err("\"eq\"", "condition: expected a condition object");
    cond_err("null", "condition: expected a condition object");
    cond_err("[]", "condition: expected a condition object");
    cond_err("{}", "condition: expected one operator, found 0 members");
    cond_err("{\"eq\": [1, 1], \"ne\": [1, 2]}",
             "condition: expected one operator, found 2 members");
    cond_err("{\"equals\": [1, 1]}", "condition: unknown operator \"equals\"");
    cond_err("{\"EQ\": [1, 1]}", "condition: unknown operator \"EQ\"");
    cond_err("{\"all\": {\"eq\": [1, 1]}}",
             "condition.all: expected an array of conditions");
    cond_err("{\"any\": [true, 1]}",
             "condition.any[1]: expected a condition object");
    cond_err("{\"all\": [true, {\"any\": [false, {\"not\": "
             "{\"eq\": [{\"var\": \"a\"}]}}]}]}",
             "condition.all[1].any[1].not.eq: expected an array of two "
             "operands");
    cond_err("{\"not\": [true, false]}",
             "condition.not: expected a condition or an array of one");
    cond_err("{\"not\": [{\"foo\": 1}]}",
             "condition.not[0]: unknown operator \"foo\"");
    cond_err("{\"not\": 1}", "condition.not: expected a condition object");

    /* operands */
    cond_err("{\"eq\": [{\"var\": \"a\"}, {\"x\": 1}]}",
             "condition.eq[1]: expected a literal or {\"var\": ...}");
    cond_err("{\"eq\": [{\"var\": \"a\", \"b\": 1}, 1]}",
             "condition.eq[0]: expected a literal or {\"var\": ...}");
    cond_err("{\"eq\": [{\"var\": 1}, 1]}",
             "condition.eq[0].var: expected a path such as "
             "\"principal.role\" (segments of [A-Za-z0-9_-] joined by '.', "
             "at most 128 bytes)");
    cond_err("{\"eq\": [{\"var\": \"a..b\"}, 1]}",
             "condition.eq[0].var: expected a path such as *");
    cond_err("{\"eq\": [{\"var\": \".a\"}, 1]}",
             "condition.eq[0].var: expected a path such as *");
    cond_err("{\"eq\": [{\"var\": \"a.\"}, 1]}",
             "condition.eq[0].var: expected a path such as *");
    cond_err("{\"eq\": [{\"var\": \"\"}, 1]}",
             "condition.eq[0].var: expected a path such as *");
    cond_err("{\"eq\": [{\"var\": \"a b\"}, 1]}",
             "condition.eq[0].var: expected a path such as *");
    cond_err("{\"eq\": [{\"var\": \"a\"}, [1, [2]]]}",
             "condition.eq[1][1]: expected a string, a number, true, false "
             "or null");
    cond_err("{\"eq\": [{\"var\": \"a\"}, [{\"var\": \"b\"}]]}",
             "condition.eq[1][0]: expected a string, a number, true, false "
             "or null");
    cond_err("{\"eq\": [{\"var\": \"a\"}, 1e400]}",
             "condition.eq[1]: number out of range");
    cond_err("{\"eq\": [1, 2, 3]}",
             "condition.eq: expected an array of two operands");

    /* literals that can never satisfy their operator */
    cond_err("{\"in\": [{\"var\": \"a\"}, \"abc\"]}",
             "condition.in[1]: expected an array or a variable");
    cond_err("{\"contains\": [5, {\"var\": \"a\"}]}",
             "condition.contains[0]: expected a string, an array or a "
             "variable");
    cond_err("{\"contains\": [\"abc\", 5]}",
             "condition.contains[1]: expected a string or a variable");
    cond_err("{\"starts_with\": [{\"var\": \"a\"}, 5]}",
             "condition.starts_with[1]: expected a string or a variable");
    cond_err("{\"starts_with\": [null, \"a\"]}",
             "condition.starts_with[0]: expected a string or a variable");
    cond_err("{\"gt\": [{\"var\": \"a\"}, \"ten\"]}",
             "condition.gt[1]: expected a number, an RFC 3339 timestamp or "
             "a variable");
    cond_err("{\"lte\": [true, {\"var\": \"a\"}]}",
             "condition.lte[0]: expected a number, an RFC 3339 timestamp or "
             "a variable");
    cond_err("{\"lt\": [{\"var\": \"a\"}, \"2025-01-01T00:00:00\"]}",
             "condition.lt[1]: expected a number, an RFC 3339 timestamp or "
             "a variable");

    /* deeper than the JSON parser allows */
    cond_err("{\"not\": {\"not\": {\"not\": {\"not\": {\"not\": {\"not\": "
             "{\"not\": {\"not\": {\"not\": {\"not\": {\"not\": {\"not\": "
             "{\"not\": {\"not\": {\"not\": {\"not\": {\"not\": {\"not\": "
             "{\"not\": {\"not\": {\"not\": {\"not\": {\"not\": {\"not\": "
             "{\"not\": {\"not\": {\"not\": {\"not\": {\"not\": {\"not\": "
             "{\"not\": {\"not\": {\"not\": true}}}}}}}}}}}}}}}}}}}}}}}}}}}}"
             "}}}}}",
             "condition: invalid JSON: JSON nested deeper than 32 levels "
             "at byte 256");
}


static void
test_error_buffer(void **state)
{
    char          err[16];
    nx_policy_t  *p;

    (void) state;

    /* truncated, terminated, and NULL is fine */
    memset(err, 'x', sizeof(err));
    p = nx_policy_compile("{}", 2, NULL, err, sizeof(err));
    assert_null(p);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_memory_equal(err, "rules: expected", 15);

    assert_null(nx_policy_compile("{}", 2, NULL, NULL, 0));
    assert_null(nx_policy_compile(NULL, 5, NULL, err, sizeof(err)));
    assert_null(nx_policy_compile_condition("{\"x\": 1}", 8, NULL, err, 1));
    assert_int_equal(err[0], '\0');

    /* the length is respected: the rest of the buffer is not read */
    p = nx_policy_compile_condition("truex", 4, NULL, err, sizeof(err));
    assert_non_null(p);
    nx_policy_free(p);
}


static void
test_vars(void **state)
{
    nx_policy_t        *p;
    static const char  *tb = "{\"time_between\": [\"01:00\", \"02:00\"]}";

    (void) state;

    p = compile_set(docset, NULL);

    assert_string_equal(nx_policy_var(p, 0), "resource.labels.sensitivity");
    assert_string_equal(nx_policy_var(p, 1), "principal.role");
    assert_string_equal(nx_policy_var(p, 2), "principal.suspended");
    assert_null(nx_policy_var(p, 3));
    assert_null(nx_policy_var(NULL, 0));

    nx_policy_free(p);

    /* time_between reads request.time unless told otherwise */
    p = nx_policy_compile_condition(tb, strlen(tb), NULL, NULL, 0);
    assert_non_null(p);
    assert_string_equal(nx_policy_var(p, 0), "request.time");
    assert_null(nx_policy_var(p, 1));
    nx_policy_free(p);
}


/* contexts built directly, as the module does */

static const nx_policy_value_t *
lookup(void *data, const char *name, size_t len)
{
    static nx_policy_value_t  tier;
    int                      *calls;

    calls = data;
    (*calls)++;

    if (len == 11 && memcmp(name, "tenant.tier", 11) == 0) {
        tier.type = NX_POLICY_STRING;
        tier.u.str.data = "gold";
        tier.u.str.len = 4;
        return &tier;
    }

    return NULL;
}


static void
test_ctx_attrs(void **state)
{
    int                  calls;
    char                 err[256];
    nx_policy_t         *p;
    nx_policy_ctx_t      ctx;
    nx_policy_attr_t     attrs[4];
    nx_policy_value_t    groups[2];
    static const char    cond[] =
        "{\"all\": [{\"eq\": [{\"var\": \"principal.role\"}, \"admin\"]},"
        "          {\"in\": [\"ops\", {\"var\": \"principal.groups\"}]},"
        "          {\"eq\": [{\"var\": \"tenant.tier\"}, \"gold\"]},"
        "          {\"eq\": [{\"var\": \"tenant.tier\"}, \"gold\"]},"
        "          {\"eq\": [{\"var\": \"principal.mfa\"}, true]},"
        "          {\"eq\": [{\"var\": \"nothing\"}, null]}]}";

    (void) state;

    p = nx_policy_compile_condition(cond, sizeof(cond) - 1, NULL, err,
                                    sizeof(err));
    assert_non_null(p);

    memset(attrs, 0, sizeof(attrs));
    memset(groups, 0, sizeof(groups));

    /* not NUL-terminated names and strings: lengths count */
    attrs[0].name = "principal.rolex";
    attrs[0].len = 14;
    attrs[0].value.type = NX_POLICY_STRING;
    attrs[0].value.u.str.data = "administrator";
    attrs[0].value.u.str.len = 5;

    groups[0].type = NX_POLICY_STRING;
    groups[0].u.str.data = "dev";
    groups[0].u.str.len = 3;
    groups[1].type = NX_POLICY_STRING;
    groups[1].u.str.data = "ops";
    groups[1].u.str.len = 3;

    attrs[1].name = "principal.groups";
    attrs[1].len = 16;
    attrs[1].value.type = NX_POLICY_ARRAY;
    attrs[1].value.u.arr.items = groups;
    attrs[1].value.u.arr.n = 2;

    attrs[2].name = "principal.mfa";
    attrs[2].len = 13;
    attrs[2].value.type = NX_POLICY_BOOL;
    attrs[2].value.u.boolean = 7;

    /* a duplicate: the first wins */
    attrs[3].name = "principal.mfa";
    attrs[3].len = 13;
    attrs[3].value.type = NX_POLICY_BOOL;
    attrs[3].value.u.boolean = 0;

    calls = 0;

    ctx.attrs = attrs;
    ctx.nattrs = 4;
    ctx.lookup = lookup;
    ctx.data = &calls;

    assert_int_equal(nx_policy_eval(p, &ctx), 1);

    /* tenant.tier and nothing: one call each, whatever the references */
    assert_int_equal(calls, 2);

    groups[1].u.str.data = "opz";
    assert_int_equal(nx_policy_eval(p, &ctx), 0);

    groups[1].u.str.data = "ops";
    ctx.lookup = NULL;
    assert_int_equal(nx_policy_eval(p, &ctx), 0);

    nx_policy_free(p);
}


/* more variables than the decision's cache holds */

static void
test_many_vars(void **state)
{
    int                i;
    char              *cond, *ctx;
    size_t             n, m;

    (void) state;

    cond = malloc(16384);
    ctx = malloc(16384);
    assert_non_null(cond);
    assert_non_null(ctx);

    n = (size_t) snprintf(cond, 16384, "{\"all\": [");
    m = (size_t) snprintf(ctx, 16384, "{");

    for (i = 0; i < 100; i++) {
        n += (size_t) snprintf(cond + n, 16384 - n,
                               "%s{\"eq\": [{\"var\": \"v%d\"}, %d]}, "
                               "{\"eq\": [{\"var\": \"v%d\"}, %d]}",
                               i ? ", " : "", i, i, i, i);
        m += (size_t) snprintf(ctx + m, 16384 - m, "%s\"v%d\": %d",
                               i ? ", " : "", i, i);
    }

    (void) snprintf(cond + n, 16384 - n, "]}");
    (void) snprintf(ctx + m, 16384 - m, "}");

    T(cond, ctx);

    /* the last variable, beyond the cache, is really looked up */
    ctx[m - 1] = '8';
    F(cond, ctx);

    free(cond);
    free(ctx);
}


/* the reference's spelling: "name" and "condition_json" */

static void
test_reference_spelling(void **state)
{
    char                   err[256];
    nx_policy_t           *p;
    nx_policy_doc_t       *doc;
    nx_policy_decision_t   d;
    static const char      set[] =
        "[{\"name\": \"deny-high-sensitivity\", \"effect\": \"deny\","
        " \"resource_type\": \"document\", \"action\": \"read\","
        " \"priority\": 200, \"condition_json\":"
        " {\"eq\": [{\"var\": \"resource.labels.sensitivity\"},"
        " \"high\"]}},"
        " {\"name\": \"allow-read\", \"effect\": \"allow\","
        " \"resource_type\": \"document\", \"action\": \"read\"}]";

    (void) state;

    p = nx_policy_compile(set, sizeof(set) - 1, NULL, err, sizeof(err));
    assert_non_null(p);

    doc = parse_ctx("{\"resource\": {\"labels\": {\"sensitivity\":"
                    " \"high\"}}}");
    assert_int_equal(nx_policy_decide(p, "document", 8, "read", 4,
                                      nx_policy_doc_ctx(doc), &d), 0);
    assert_int_equal(d.effect, NX_POLICY_DENY);
    assert_string_equal(d.rule_id, "deny-high-sensitivity");
    nx_policy_doc_free(doc);

    doc = parse_ctx("{\"resource\": {\"labels\": {\"sensitivity\":"
                    " \"low\"}}}");
    assert_int_equal(nx_policy_decide(p, "document", 8, "read", 4,
                                      nx_policy_doc_ctx(doc), &d), 0);
    assert_int_equal(d.effect, NX_POLICY_ALLOW);
    nx_policy_doc_free(doc);

    nx_policy_free(p);

    set_err("[{\"id\": \"a\", \"name\": \"b\", \"effect\": \"allow\","
            " \"resource_type\": \"d\", \"action\": \"r\"}]",
            "rules[0]: both \"id\" and \"name\"");
    set_err("[{\"id\": \"a\", \"effect\": \"allow\","
            " \"resource_type\": \"d\", \"action\": \"r\","
            " \"condition\": true, \"condition_json\": true}]",
            "rules[0]: both \"condition\" and \"condition_json\"");
    (void) err;
}


static void
test_doc(void **state)
{
    char                     err[128];
    nx_policy_doc_t         *doc;
    const nx_policy_ctx_t   *ctx;

    (void) state;

    doc = parse_ctx("{\"principal\": {\"role\": \"editor\", \"groups\": "
                    "[\"a\", [1, 2], []], \"age\": 42.5, \"ok\": false, "
                    "\"nil\": null, \"empty\": {}}, \"top\": \"t\"}");
    ctx = nx_policy_doc_ctx(doc);

    /* last member first */
    assert_int_equal(ctx->nattrs, 6);
    assert_string_equal(ctx->attrs[0].name, "top");
    assert_string_equal(ctx->attrs[1].name, "principal.nil");
    assert_int_equal(ctx->attrs[1].value.type, NX_POLICY_NULL);
    assert_string_equal(ctx->attrs[2].name, "principal.ok");
    assert_int_equal(ctx->attrs[2].value.type, NX_POLICY_BOOL);
    assert_string_equal(ctx->attrs[3].name, "principal.age");
    assert_true(ctx->attrs[3].value.u.number == 42.5);
    assert_string_equal(ctx->attrs[4].name, "principal.groups");
    assert_int_equal(ctx->attrs[4].value.u.arr.n, 3);
    assert_int_equal(ctx->attrs[4].value.u.arr.items[1].u.arr.n, 2);
    assert_int_equal(ctx->attrs[4].value.u.arr.items[2].type,
                     NX_POLICY_ARRAY);
    assert_string_equal(ctx->attrs[5].name, "principal.role");
    assert_int_equal(ctx->attrs[5].len, 14);
    assert_int_equal(ctx->attrs[5].value.u.str.len, 6);

    nx_policy_doc_free(doc);

    /* duplicate members: the last one wins, as nx_json_get() does */
    T("{\"eq\": [{\"var\": \"a\"}, 2]}", "{\"a\": 1, \"a\": 2}");
    T("{\"in\": [[1, 2], {\"var\": \"a\"}]}", "{\"a\": [[1, 2], [3]]}");

    assert_null(nx_policy_doc_parse("[]", 2, err, sizeof(err)));
    assert_string_equal(err, "expected an object");
    assert_null(nx_policy_doc_parse("{\"a\": [{\"b\": 1}]}", 17, err,
                                    sizeof(err)));
    assert_string_equal(err, "objects inside arrays are not supported");
    assert_null(nx_policy_doc_parse("{\"a\": 1e999}", 12, err, sizeof(err)));
    assert_string_equal(err, "number out of range");
    assert_null(nx_policy_doc_parse("{\"a\": ", 6, err, sizeof(err)));
    assert_true(strlen(err) > 0);

    doc = parse_ctx("{\"a_long_member_name\": {}, \"b\": 1}");
    assert_int_equal(nx_policy_doc_ctx(doc)->nattrs, 1);
    nx_policy_doc_free(doc);

    doc = parse_ctx("{}");
    assert_int_equal(nx_policy_doc_ctx(doc)->nattrs, 0);
    nx_policy_doc_free(doc);

    assert_null(nx_policy_doc_ctx(NULL));
    nx_policy_doc_free(NULL);
}


/* ten rules, many decisions: results must never drift */

static void
test_ten_rules(void **state)
{
    int                    i, k;
    char                   role[16];
    nx_policy_t           *p;
    nx_policy_ctx_t        ctx;
    nx_policy_attr_t       attrs[6];
    nx_policy_opts_t       opts;
    nx_policy_decision_t   d;
    static const char     *roles[] = { "admin", "editor", "reader", "guest" };
    static const char      set[] =
        "["
        "{\"id\": \"r01\", \"effect\": \"deny\", \"priority\": 100,"
        " \"resource_type\": \"document\", \"action\": \"*\","
        " \"condition\": {\"eq\": [{\"var\": \"resource.sensitivity\"},"
        "                          \"secret\"]}},"
        "{\"id\": \"r02\", \"effect\": \"deny\", \"priority\": 90,"
        " \"resource_type\": \"*\", \"action\": \"*\","
        " \"condition\": {\"ne\": [{\"var\": \"principal.tenant\"},"
        "                          {\"var\": \"resource.tenant\"}]}},"
        "{\"id\": \"r03\", \"effect\": \"deny\", \"priority\": 80,"
        " \"resource_type\": \"document\", \"action\": \"delete\","
        " \"condition\": {\"not\": {\"time_between\": [\"08:00\", \"18:00\","
        "                                          \"+01:00\"]}}},"
        "{\"id\": \"r04\", \"effect\": \"allow\", \"priority\": 70,"
        " \"resource_type\": \"document\", \"action\": \"*\","
        " \"condition\": {\"eq\": [{\"var\": \"principal.role\"},"
        "                          \"admin\"]}},"
        "{\"id\": \"r05\", \"effect\": \"allow\", \"priority\": 60,"
        " \"resource_type\": \"document\", \"action\": \"write\","
        " \"condition\": {\"all\": [{\"eq\": [{\"var\": \"principal.role\"},"
        "                                   \"editor\"]},"
        "                         {\"regex\": [{\"var\": \"principal.email\"},"
        "                                      \"@corp\\\\.example$\"]}]}},"
        "{\"id\": \"r06\", \"effect\": \"allow\", \"priority\": 50,"
        " \"resource_type\": \"document\", \"action\": \"read\","
        " \"condition\": {\"in\": [{\"var\": \"principal.role\"},"
        "                          [\"reader\", \"editor\"]]}},"
        "{\"id\": \"r07\", \"effect\": \"allow\", \"priority\": 40,"
        " \"resource_type\": \"corpus\", \"action\": \"read\","
        " \"condition\": {\"starts_with\": [{\"var\": \"principal.email\"},"
        "                                   \"svc-\"]}},"
        "{\"id\": \"r08\", \"effect\": \"allow\", \"priority\": 30,"
        " \"resource_type\": \"model\", \"action\": \"invoke\","
        " \"condition\": {\"lt\": [{\"var\": \"request.tokens\"}, 4096]}},"
        "{\"id\": \"r09\", \"effect\": \"allow\", \"priority\": 20,"
        " \"resource_type\": \"model\", \"action\": \"invoke\","
        " \"condition\": {\"contains\": [{\"var\": \"principal.email\"},"
        "                                \"@corp\"]}},"
        "{\"id\": \"r10\", \"effect\": \"allow\", \"priority\": 10,"
        " \"resource_type\": \"document\", \"action\": \"read\","
        " \"condition\": {\"gte\": [{\"var\": \"request.time\"},"
        "                           \"2020-01-01T00:00:00Z\"]}}"
        "]";

    (void) state;

    memset(&opts, 0, sizeof(opts));
    opts.wildcards = 1;

    p = compile_set(set, &opts);
    assert_int_equal(nx_policy_rules(p), 10);

    memset(attrs, 0, sizeof(attrs));

    attrs[0].name = "principal.role";
    attrs[0].value.type = NX_POLICY_STRING;
    attrs[1].name = "principal.tenant";
    attrs[1].value.type = NX_POLICY_STRING;
    attrs[1].value.u.str.data = "acme";
    attrs[1].value.u.str.len = 4;
    attrs[2].name = "resource.tenant";
    attrs[2].value.type = NX_POLICY_STRING;
    attrs[2].value.u.str.data = "acme";
    attrs[2].value.u.str.len = 4;
    attrs[3].name = "principal.email";
    attrs[3].value.type = NX_POLICY_STRING;
    attrs[3].value.u.str.data = "ann@corp.example";
    attrs[3].value.u.str.len = 16;
    attrs[4].name = "request.time";
    attrs[4].value.type = NX_POLICY_NUMBER;
    attrs[5].name = "resource.sensitivity";
    attrs[5].value.type = NX_POLICY_STRING;
    attrs[5].value.u.str.data = "public";
    attrs[5].value.u.str.len = 6;

    for (i = 0; i < 6; i++) {
        attrs[i].len = strlen(attrs[i].name);
    }

    memset(&ctx, 0, sizeof(ctx));
    ctx.attrs = attrs;
    ctx.nattrs = 6;

    for (i = 0; i < 200000; i++) {
        k = i % 4;
        (void) snprintf(role, sizeof(role), "%s", roles[k]);
        attrs[0].value.u.str.data = role;
        attrs[0].value.u.str.len = strlen(role);

        /* 2024-06-15: 09:00Z is 10:00 at +01:00, 20:00Z is 21:00 */
        attrs[4].value.u.number = (i % 2) ? 1718442000 : 1718481600;

        assert_int_equal(nx_policy_decide(p, "document", 8, "read", 4, &ctx,
                                          &d), 0);

        switch (k) {
        case 0:
            assert_int_equal(d.effect, NX_POLICY_ALLOW);
            assert_string_equal(d.rule_id, "r04");
            break;
        case 1:
        case 2:
            assert_int_equal(d.effect, NX_POLICY_ALLOW);
            assert_string_equal(d.rule_id, "r06");
            break;
        default:
            assert_int_equal(d.effect, NX_POLICY_ALLOW);
            assert_string_equal(d.rule_id, "r10");
            break;
        }

        assert_int_equal(nx_policy_decide(p, "document", 8, "delete", 6,
                                          &ctx, &d), 0);

        if (i % 2) {
            assert_int_equal(d.effect,
                             k == 0 ? NX_POLICY_ALLOW : NX_POLICY_DENY);

        } else {
            assert_int_equal(d.effect, NX_POLICY_DENY);
            assert_string_equal(d.rule_id, "r03");
        }

        assert_int_equal(nx_policy_decide(p, "document", 8, "write", 5,
                                          &ctx, &d), 0);
        assert_int_equal(d.effect,
                         k <= 1 ? NX_POLICY_ALLOW : NX_POLICY_DENY);
    }

    /* another tenant's document: r02, whatever the role */
    attrs[2].value.u.str.data = "umbrella";
    attrs[2].value.u.str.len = 8;
    assert_int_equal(nx_policy_decide(p, "document", 8, "read", 4, &ctx, &d),
                     0);
    assert_int_equal(d.effect, NX_POLICY_DENY);
    assert_string_equal(d.rule_id, "r02");
    assert_int_equal(d.rule, 1);

    /* a secret: r01 first, by priority */
    attrs[5].value.u.str.data = "secret";
    attrs[5].value.u.str.len = 6;
    assert_int_equal(nx_policy_decide(p, "document", 8, "read", 4, &ctx, &d),
                     0);
    assert_string_equal(d.rule_id, "r01");

    attrs[2].value.u.str.data = "acme";
    attrs[2].value.u.str.len = 4;
    assert_int_equal(nx_policy_decide(p, "model", 5, "invoke", 6, &ctx, &d),
                     0);
    assert_string_equal(d.rule_id, "r09");

    nx_policy_free(p);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eq),
        cmocka_unit_test(test_ne),
        cmocka_unit_test(test_in),
        cmocka_unit_test(test_contains),
        cmocka_unit_test(test_starts_with),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_logic),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_regex_invalid_subject),
        cmocka_unit_test(test_regex_limit),
        cmocka_unit_test(test_regex_heap),
        cmocka_unit_test(test_regex_errors),
        cmocka_unit_test(test_time_between_utc),
        cmocka_unit_test(test_time_between_offset),
        cmocka_unit_test(test_time_between_berlin),
        cmocka_unit_test(test_time_between_errors),
        cmocka_unit_test(test_decide_deny_first),
        cmocka_unit_test(test_decide_wildcards),
        cmocka_unit_test(test_decide_priority),
        cmocka_unit_test(test_decide_default),
        cmocka_unit_test(test_decide_arguments),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_condition_errors),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_vars),
        cmocka_unit_test(test_ctx_attrs),
        cmocka_unit_test(test_many_vars),
        cmocka_unit_test(test_doc),
        cmocka_unit_test(test_reference_spelling),
        cmocka_unit_test(test_ten_rules),
    };

    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
