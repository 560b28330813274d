/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_budget: the token budget and cost budget bodies of
 * the admin endpoints, the values nexusctl takes, price lists and the
 * time of a price version.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_budget.h"
#include "nx_json.h"


static yajl_val
parse(const char *s)
{
    char      err[128];
    yajl_val  v;

    v = nx_json_parse(s, strlen(s), err, sizeof(err));
    assert_non_null(v);

    return v;
}


/* the text a token budget body writes: "json drop", or "error: field" */

static const char *
tokens(const char *body, int replace)
{
    int                 rc;
    char                json[NX_BUDGET_JSON_LEN], drop[NX_BUDGET_DROP_LEN];
    yajl_val            v;
    const char         *field;
    nx_token_budget_t   b;
    static char         out[256];

    v = (body != NULL) ? parse(body) : NULL;

    rc = nx_token_budget_json(v, replace, &b, &field);

    if (rc != 0) {
        snprintf(out, sizeof(out), "error: %s", field ? field : "(none)");

    } else {
        nx_token_budget_text(&b, json, drop);
        snprintf(out, sizeof(out), "%s %s", json, drop);
    }

    nx_json_free(v);

    return out;
}


static void
test_token_budget(void **state)
{
    (void) state;

    assert_string_equal(tokens("{\"daily\":1000,\"total\":5}", 0),
                        "{\"daily\": 1000, \"total\": 5} {}");
    assert_string_equal(tokens("{\"monthly\":null}", 0), "{} {monthly}");
    assert_string_equal(tokens("{\"daily\":999999999999}", 0),
                        "{\"daily\": 999999999999} {}");

    /* PUT replaces: what is left out is removed */
    assert_string_equal(tokens("{\"daily\":10}", 1),
                        "{\"daily\": 10} {monthly,total}");
    assert_string_equal(tokens("{}", 1), "{} {daily,monthly,total}");
    assert_string_equal(tokens("{\"total\":null,\"daily\":7}", 1),
                        "{\"daily\": 7} {monthly,total}");

    /* the last of a member given twice wins */
    assert_string_equal(tokens("{\"daily\":1,\"daily\":null}", 0),
                        "{} {daily}");
    assert_string_equal(tokens("{\"daily\":null,\"daily\":2}", 0),
                        "{\"daily\": 2} {}");

    /* integral numbers are integers */
    assert_string_equal(tokens("{\"daily\":2.0}", 0),
                        "{\"daily\": 2} {}");
}


static void
test_token_budget_bad(void **state)
{
    (void) state;

    assert_string_equal(tokens(NULL, 0), "error: (none)");
    assert_string_equal(tokens(NULL, 1), "error: (none)");
    assert_string_equal(tokens("{}", 0), "error: (none)");
    assert_string_equal(tokens("{\"daily\":0}", 0), "error: daily");
    assert_string_equal(tokens("{\"daily\":-1}", 1), "error: daily");
    assert_string_equal(tokens("{\"monthly\":1000000000000}", 0),
                        "error: monthly");
    assert_string_equal(tokens("{\"total\":1.5}", 0), "error: total");
    assert_string_equal(tokens("{\"total\":\"5\"}", 0), "error: total");
    assert_string_equal(tokens("{\"daily\":5,\"weekly\":5}", 0),
                        "error: weekly");
    assert_string_equal(tokens("[1]", 1), "error: (none)");
}


/* the parameters a cost budget body gives, "|"-separated, "-" for NULL */

static const char *
costs(const char *body)
{
    int                      i, rc;
    size_t                   n;
    yajl_val                 v;
    const char              *field;
    nx_cost_budget_t         b;
    nx_cost_budget_params_t  p;
    static char              out[512];

    v = (body != NULL) ? parse(body) : NULL;

    rc = nx_cost_budget_json(v, &b, &field);

    if (rc != 0) {
        snprintf(out, sizeof(out), "error: %s", field ? field : "(none)");

    } else {
        nx_cost_budget_params(&b, &p);

        n = 0;

        for (i = 0; i < 5; i++) {
            n += snprintf(out + n, sizeof(out) - n, "%s%s", i ? "|" : "",
                          p.values[i] ? p.values[i] : "-");
        }
    }

    nx_json_free(v);

    return out;
}


static void
test_cost_budget(void **state)
{
    (void) state;

    assert_string_equal(costs("{\"monthly_budget_usd\":500,"
                              "\"warn_ratio\":0.8,\"enforce_hard_cap\":true,"
                              "\"hard_cap_mode\":\"degrade\","
                              "\"degrade_model\":\"gpt-4o-mini\"}"),
                        "500000000|0.80|degrade|gpt-4o-mini|-");
    assert_string_equal(costs("{\"monthly_budget_usd\":\"12.345678\"}"),
                        "12345678|-|-|-|-");
    assert_string_equal(costs("{\"monthly_budget_usd\":null}"),
                        "0|-|-|-|-");
    assert_string_equal(costs("{\"degrade_model\":null,"
                              "\"allow_unpriced\":false}"),
                        "-|-|-||f");
    assert_string_equal(costs("{\"warn_ratio\":\"1\"}"), "-|1.00|-|-|-");
    assert_string_equal(costs("{\"warn_ratio\":0.125,"
                              "\"hard_cap_mode\":\"block\","
                              "\"allow_unpriced\":true}"),
                        "-|0.125|block|-|t");
    assert_string_equal(costs("{\"monthly_budget_usd\":1000000000}"),
                        "1000000000000000|-|-|-|-");
}


static void
test_cost_budget_bad(void **state)
{
    (void) state;

    assert_string_equal(costs(NULL), "error: (none)");
    assert_string_equal(costs("{}"), "error: (none)");
    assert_string_equal(costs("{\"monthly_budget_usd\":0}"),
                        "error: monthly_budget_usd");
    assert_string_equal(costs("{\"monthly_budget_usd\":-5}"),
                        "error: monthly_budget_usd");
    assert_string_equal(costs("{\"monthly_budget_usd\":1000000000.01}"),
                        "error: monthly_budget_usd");
    assert_string_equal(costs("{\"monthly_budget_usd\":1.0000001}"),
                        "error: monthly_budget_usd");
    assert_string_equal(costs("{\"monthly_budget_usd\":5e2}"),
                        "error: monthly_budget_usd");
    assert_string_equal(costs("{\"monthly_budget_usd\":true}"),
                        "error: monthly_budget_usd");
    assert_string_equal(costs("{\"warn_ratio\":0}"), "error: warn_ratio");
    assert_string_equal(costs("{\"warn_ratio\":1.001}"), "error: warn_ratio");
    assert_string_equal(costs("{\"warn_ratio\":0.0005}"),
                        "error: warn_ratio");
    assert_string_equal(costs("{\"warn_ratio\":null}"), "error: warn_ratio");
    assert_string_equal(costs("{\"hard_cap_mode\":\"warn\"}"),
                        "error: hard_cap_mode");
    assert_string_equal(costs("{\"hard_cap_mode\":null}"),
                        "error: hard_cap_mode");
    assert_string_equal(costs("{\"degrade_model\":\"a b\"}"),
                        "error: degrade_model");
    assert_string_equal(costs("{\"degrade_model\":\"\"}"),
                        "error: degrade_model");
    assert_string_equal(costs("{\"allow_unpriced\":\"yes\"}"),
                        "error: allow_unpriced");
    assert_string_equal(costs("{\"enforce_hard_cap\":false}"),
                        "error: enforce_hard_cap");
    assert_string_equal(costs("{\"warn_ratio\":0.5,\"credits\":true}"),
                        "error: credits");
}


static void
test_values(void **state)
{
    int      w;
    int64_t  v;
    char     model[NX_BUDGET_MODEL_MAX + 2];

    (void) state;

    assert_int_equal(nx_budget_tokens_valid(1), 0);
    assert_int_equal(nx_budget_tokens_valid(NX_BUDGET_TOKENS_MAX), 0);
    assert_int_equal(nx_budget_tokens_valid(0), -1);
    assert_int_equal(nx_budget_tokens_valid(NX_BUDGET_TOKENS_MAX + 1), -1);

    assert_int_equal(nx_cost_budget_usd("0.000001", 8, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(nx_cost_budget_usd("0.0000001", 9, &v), -1);
    assert_int_equal(nx_cost_budget_usd("0", 1, &v), -1);

    assert_int_equal(nx_cost_warn_ratio("0.001", 5, &w), 0);
    assert_int_equal(w, 1);
    assert_int_equal(nx_cost_warn_ratio("1.000", 5, &w), 0);
    assert_int_equal(w, 1000);

    assert_int_equal(nx_cost_mode("block", 5), 0);
    assert_int_equal(nx_cost_mode("degrade", 7), 1);
    assert_int_equal(nx_cost_mode("Block", 5), -1);
    assert_int_equal(nx_cost_mode("degraded", 8), -1);

    memset(model, 'm', sizeof(model));
    assert_int_equal(nx_budget_model_valid(model, NX_BUDGET_MODEL_MAX), 0);
    assert_int_equal(nx_budget_model_valid(model, NX_BUDGET_MODEL_MAX + 1),
                     -1);
    assert_int_equal(nx_budget_model_valid("Org/M-1.5:v2@eu", 15), 0);
    assert_int_equal(nx_budget_model_valid("a,b", 3), -1);
    assert_int_equal(nx_budget_model_valid("a\tb", 3), -1);
    assert_int_equal(nx_budget_model_valid("a\x7f", 2), -1);
    assert_int_equal(nx_budget_model_valid("", 0), -1);

    assert_int_equal(nx_price_valid("0", 1, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(nx_price_valid("0.0000375", 9, &v), 0);
    assert_int_equal(v, 37500);
    assert_int_equal(nx_price_valid("10", 2, &v), 0);
    assert_int_equal(nx_price_valid("10.000000001", 12, &v), -1);
    assert_int_equal(nx_price_valid("-1", 2, &v), -1);
    assert_int_equal(nx_price_valid("0.0000000001", 12, &v), -1);
}


static void
test_price_time(void **state)
{
    int64_t  us;

    (void) state;

    assert_int_equal(nx_price_time("2027-01-01T00:00:00Z", 20, &us), 0);
    assert_int_equal(us, 1798761600LL * 1000000);
    assert_int_equal(nx_price_time("2027-01-01", 10, &us), 0);
    assert_int_equal(us, 1798761600LL * 1000000);
    assert_int_equal(nx_price_time("2027-01-01T02:00:00+02:00", 25, &us), 0);
    assert_int_equal(us, 1798761600LL * 1000000);
    assert_int_equal(nx_price_time("2027-01-01T00:00:00.123456Z", 27, &us),
                     0);
    assert_int_equal(us, 1798761600LL * 1000000 + 123456);

    assert_int_equal(nx_price_time("2027-01-01T00:00:00", 19, &us), -1);
    assert_int_equal(nx_price_time("2027-13-01", 10, &us), -1);
    assert_int_equal(nx_price_time("tomorrow", 8, &us), -1);
    assert_int_equal(nx_price_time(NULL, 0, &us), -1);

    /* the past, beyond the grace, needs allow_past */
    assert_int_equal(nx_price_time_allowed(1000, 1000, 0), 0);
    assert_int_equal(nx_price_time_allowed(5000000000LL, 1000, 0), 0);
    assert_int_equal(nx_price_time_allowed(1000 - NX_BUDGET_PAST_GRACE_US,
                                           1000, 0), 0);
    assert_int_equal(nx_price_time_allowed(999 - NX_BUDGET_PAST_GRACE_US,
                                           1000, 0), -1);
    assert_int_equal(nx_price_time_allowed(0, 1798761600LL * 1000000, 1),
                     0);
}


/* the JSON of a price list, or "error N at I" */

static const char *
prices(const char *body)
{
    int          rc;
    char        *json;
    size_t       len, bad;
    yajl_val     v;
    static char  out[1024];

    v = parse(body);

    rc = nx_prices_json(v, &json, &len, &bad);

    if (rc != NX_PRICES_OK) {
        assert_null(json);
        snprintf(out, sizeof(out), "error %d at %zu", rc, bad);

    } else {
        assert_int_equal(len, strlen(json));
        snprintf(out, sizeof(out), "%s", json);
        free(json);
    }

    nx_json_free(v);

    return out;
}


static void
test_prices(void **state)
{
    (void) state;

    assert_string_equal(prices("{\"gpt-4o\":{\"input\":\"0.0025\","
                               "\"output\":0.01},"
                               "\"llama3\":{\"input\":0,\"output\":\"0\","
                               "\"note\":\"local\"}}"),
                        "[{\"model\":\"gpt-4o\",\"input\":2500000,"
                        "\"output\":10000000},"
                        "{\"model\":\"llama3\",\"input\":0,\"output\":0}]");

    /* a name that needs escaping in JSON */
    assert_string_equal(prices("{\"a\\\"b\":{\"input\":1,\"output\":2}}"),
                        "[{\"model\":\"a\\\"b\",\"input\":1000000000,"
                        "\"output\":2000000000}]");

    assert_string_equal(prices("{}"), "error 1 at 0");
    assert_string_equal(prices("[]"), "error 1 at 0");
    assert_string_equal(prices("{\"m\":{\"input\":1,\"output\":1},"
                               "\"a b\":{\"input\":1,\"output\":1}}"),
                        "error 2 at 1");
    assert_string_equal(prices("{\"m\":{\"input\":-1,\"output\":1}}"),
                        "error 3 at 0");
    assert_string_equal(prices("{\"m\":{\"input\":1}}"), "error 4 at 0");
    assert_string_equal(prices("{\"m\":{\"input\":1,\"output\":11}}"),
                        "error 4 at 0");
    assert_string_equal(prices("{\"m\":{\"input\":1,\"output\":1e-3}}"),
                        "error 4 at 0");
    assert_string_equal(prices("{\"m\":1}"), "error 3 at 0");
    assert_string_equal(prices("{\"x\":{\"input\":1,\"output\":1},"
                               "\"m\":{\"input\":1,\"output\":1},"
                               "\"m\":{\"input\":2,\"output\":2}}"),
                        "error 5 at 1");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_budget),
        cmocka_unit_test(test_token_budget_bad),
        cmocka_unit_test(test_cost_budget),
        cmocka_unit_test(test_cost_budget_bad),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_price_time),
        cmocka_unit_test(test_prices),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
