/*
 * Copyright (C) Nexus authors
 *
 * What an operator may write for budgets and prices (see nx_budget.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_budget.h"
#include "nx_json.h"
#include "nx_money.h"
#include "nx_tz.h"


static const char *nx_budget_decimal(yajl_val v);
static int nx_budget_model_cmp(const void *a, const void *b);


const char  *const nx_budget_periods[NX_BUDGET_NPERIODS] = {
    "daily", "monthly", "total"
};


int
nx_budget_tokens_valid(int64_t n)
{
    return (n >= 1 && n <= NX_BUDGET_TOKENS_MAX) ? 0 : -1;
}


int
nx_token_budget_json(yajl_val v, int replace, nx_token_budget_t *b,
    const char **field)
{
    int          i;
    size_t       k;
    int64_t      n;
    yajl_val     f;
    const char  *name;

    memset(b, 0, sizeof(nx_token_budget_t));
    *field = NULL;

    if (v == NULL || !YAJL_IS_OBJECT(v)
        || (v->u.object.len == 0 && !replace))
    {
        return -1;
    }

    for (k = 0; k < v->u.object.len; k++) {
        name = v->u.object.keys[k];
        f = v->u.object.values[k];
        *field = name;

        for (i = 0; i < NX_BUDGET_NPERIODS; i++) {
            if (strcmp(name, nx_budget_periods[i]) == 0) {
                break;
            }
        }

        if (i == NX_BUDGET_NPERIODS) {
            return -1;
        }

        if (YAJL_IS_NULL(f)) {
            b->set &= ~(1u << i);
            b->drop |= 1u << i;
            continue;
        }

        if (nx_json_int(f, &n) != 0 || nx_budget_tokens_valid(n) != 0) {
            return -1;
        }

        b->tokens[i] = n;
        b->set |= 1u << i;
        b->drop &= ~(1u << i);
    }

    if (replace) {
        b->drop = NX_BUDGET_ALL & ~b->set;
    }

    *field = NULL;

    return 0;
}


void
nx_token_budget_text(const nx_token_budget_t *b, char *json, char *drop)
{
    int          i;
    size_t       n, d;
    const char  *sep, *dsep;

    /* validated numbers and our own names: nothing to escape */

    n = 0;
    d = 0;
    json[n++] = '{';
    drop[d++] = '{';
    sep = "";
    dsep = "";

    for (i = 0; i < NX_BUDGET_NPERIODS; i++) {

        if (b->set & (1u << i)) {
            n += (size_t) snprintf(json + n, NX_BUDGET_JSON_LEN - n,
                                   "%s\"%s\": %lld", sep,
                                   nx_budget_periods[i],
                                   (long long) b->tokens[i]);
            sep = ", ";
        }

        if (b->drop & (1u << i)) {
            d += (size_t) snprintf(drop + d, NX_BUDGET_DROP_LEN - d, "%s%s",
                                   dsep, nx_budget_periods[i]);
            dsep = ",";
        }
    }

    snprintf(json + n, NX_BUDGET_JSON_LEN - n, "}");
    snprintf(drop + d, NX_BUDGET_DROP_LEN - d, "}");
}


int
nx_cost_budget_usd(const char *s, size_t len, int64_t *musd)
{
    int64_t  v;

    if (nx_money_parse(s, len, NX_MONEY_MICRO, NX_BUDGET_USD_MAX, &v) != 0
        || v == 0)
    {
        return -1;
    }

    *musd = v;

    return 0;
}


int
nx_cost_warn_ratio(const char *s, size_t len, int *permille)
{
    int64_t  v;

    if (nx_money_parse(s, len, 3, 1000, &v) != 0 || v == 0) {
        return -1;
    }

    *permille = (int) v;

    return 0;
}


int
nx_cost_mode(const char *s, size_t len)
{
    if (len == 5 && memcmp(s, "block", 5) == 0) {
        return 0;
    }

    if (len == 7 && memcmp(s, "degrade", 7) == 0) {
        return 1;
    }

    return -1;
}


int
nx_budget_model_valid(const char *s, size_t len)
{
    size_t  i;

    if (s == NULL || len == 0 || len > NX_BUDGET_MODEL_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] <= ' ' || s[i] == ',' || s[i] == 0x7f) {
            return -1;
        }
    }

    return 0;
}


int
nx_cost_budget_json(yajl_val v, nx_cost_budget_t *b, const char **field)
{
    int          on;
    size_t       k;
    yajl_val     f;
    const char  *name, *s;

    memset(b, 0, sizeof(nx_cost_budget_t));
    *field = NULL;

    if (v == NULL || !YAJL_IS_OBJECT(v) || v->u.object.len == 0) {
        return -1;
    }

    for (k = 0; k < v->u.object.len; k++) {
        name = v->u.object.keys[k];
        f = v->u.object.values[k];
        *field = name;

        if (strcmp(name, "monthly_budget_usd") == 0) {
            b->set |= NX_COST_MONTHLY;
            b->monthly = 0;

            if (YAJL_IS_NULL(f)) {
                continue;
            }

            s = nx_budget_decimal(f);

            if (s == NULL
                || nx_cost_budget_usd(s, strlen(s), &b->monthly) != 0)
            {
                return -1;
            }

        } else if (strcmp(name, "warn_ratio") == 0) {
            s = nx_budget_decimal(f);

            if (s == NULL || nx_cost_warn_ratio(s, strlen(s), &b->warn) != 0)
            {
                return -1;
            }

            b->set |= NX_COST_WARN;

        } else if (strcmp(name, "hard_cap_mode") == 0) {
            if (nx_json_string(f, &s) != 0
                || (b->degrade = nx_cost_mode(s, strlen(s))) < 0)
            {
                return -1;
            }

            b->set |= NX_COST_MODE;

        } else if (strcmp(name, "degrade_model") == 0) {
            b->set |= NX_COST_DEGRADE;
            b->degrade_model = "";

            if (YAJL_IS_NULL(f)) {
                continue;
            }

            if (nx_json_string(f, &s) != 0
                || nx_budget_model_valid(s, strlen(s)) != 0)
            {
                return -1;
            }

            b->degrade_model = s;

        } else if (strcmp(name, "allow_unpriced") == 0) {
            if (nx_json_bool(f, &b->allow_unpriced) != 0) {
                return -1;
            }

            b->set |= NX_COST_UNPRICED;

        } else if (strcmp(name, "enforce_hard_cap") == 0) {
            /* the reference's switch: the gateway always enforces */
            if (nx_json_bool(f, &on) != 0 || !on) {
                return -1;
            }

        } else {
            return -1;
        }
    }

    *field = NULL;

    return 0;
}


void
nx_cost_budget_params(const nx_cost_budget_t *b, nx_cost_budget_params_t *p)
{
    memset(p, 0, sizeof(nx_cost_budget_params_t));

    if (b->set & NX_COST_MONTHLY) {
        snprintf(p->monthly, sizeof(p->monthly), "%lld",
                 (long long) b->monthly);
        p->values[0] = p->monthly;
    }

    if (b->set & NX_COST_WARN) {
        /* written from the parsed value, never copied */
        nx_money_format(p->warn, b->warn, 3);
        p->values[1] = p->warn;
    }

    if (b->set & NX_COST_MODE) {
        p->values[2] = b->degrade ? "degrade" : "block";
    }

    if (b->set & NX_COST_DEGRADE) {
        p->values[3] = b->degrade_model;
    }

    if (b->set & NX_COST_UNPRICED) {
        p->values[4] = b->allow_unpriced ? "t" : "f";
    }
}


int
nx_price_valid(const char *s, size_t len, int64_t *nusd)
{
    return nx_money_parse(s, len, NX_MONEY_NANO, NX_MONEY_PRICE_MAX, nusd);
}


int
nx_price_time(const char *s, size_t len, int64_t *us)
{
    double  t;

    if (s == NULL || nx_tz_parse_timestamp(s, len, &t) != 0) {
        return -1;
    }

    /* a fraction finer than a microsecond is rounded, as PostgreSQL does */
    *us = (int64_t) (t * 1000000.0 + (t < 0 ? -0.5 : 0.5));

    return 0;
}


int
nx_price_time_allowed(int64_t from_us, int64_t now_us, int allow_past)
{
    if (allow_past || from_us >= now_us - NX_BUDGET_PAST_GRACE_US) {
        return 0;
    }

    return -1;
}


int
nx_prices_json(yajl_val prices, char **json, size_t *len, size_t *bad)
{
    int           k, rc;
    char         *p, *end;
    size_t        i, size;
    int64_t       v[2];
    yajl_val      e;
    const char   *model, *s, **names;
    const char   *sides[2] = { "input", "output" };

    *json = NULL;
    *len = 0;
    *bad = 0;

    if (prices == NULL || !YAJL_IS_OBJECT(prices)
        || prices->u.object.len == 0)
    {
        return NX_PRICES_EMPTY;
    }

    size = 2;

    for (i = 0; i < prices->u.object.len; i++) {
        model = prices->u.object.keys[i];
        *bad = i;

        if (nx_budget_model_valid(model, strlen(model)) != 0) {
            return NX_PRICES_MODEL;
        }

        size += nx_json_escape_len(model, strlen(model)) + 80;
    }

    /* a model twice would be priced twice at the same time */

    names = malloc(prices->u.object.len * sizeof(char *));
    if (names == NULL) {
        return NX_PRICES_NOMEM;
    }

    memcpy(names, prices->u.object.keys,
           prices->u.object.len * sizeof(char *));
    qsort(names, prices->u.object.len, sizeof(char *), nx_budget_model_cmp);

    rc = NX_PRICES_OK;

    for (i = 1; i < prices->u.object.len; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            rc = NX_PRICES_DUPLICATE;
            model = names[i];
            break;
        }
    }

    free(names);

    if (rc != NX_PRICES_OK) {
        for (i = 0; strcmp(prices->u.object.keys[i], model) != 0; i++) {
            /* void */
        }

        *bad = i;
        return rc;
    }

    *json = malloc(size);
    if (*json == NULL) {
        return NX_PRICES_NOMEM;
    }

    p = *json;
    end = p + size;
    *p++ = '[';

    for (i = 0; i < prices->u.object.len; i++) {
        model = prices->u.object.keys[i];
        e = prices->u.object.values[i];
        *bad = i;

        for (k = 0; k < 2; k++) {
            s = nx_budget_decimal(nx_json_get(e, sides[k]));

            if (s == NULL || nx_price_valid(s, strlen(s), &v[k]) != 0) {
                free(*json);
                *json = NULL;
                return k ? NX_PRICES_OUTPUT : NX_PRICES_INPUT;
            }
        }

        p += snprintf(p, end - p, "%s{\"model\":\"", i ? "," : "");
        p += nx_json_escape(p, model, strlen(model));
        p += snprintf(p, end - p, "\",\"input\":%lld,\"output\":%lld}",
                      (long long) v[0], (long long) v[1]);
    }

    *p++ = ']';
    *p = '\0';
    *len = p - *json;

    return NX_PRICES_OK;
}


/* the text of a decimal: a JSON number as the client wrote it, or a string */

static const char *
nx_budget_decimal(yajl_val v)
{
    const char  *s;

    if (YAJL_IS_NUMBER(v) && v->u.number.r != NULL) {
        return v->u.number.r;
    }

    return (nx_json_string(v, &s) == 0) ? s : NULL;
}


static int
nx_budget_model_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}
