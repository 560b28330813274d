/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_budget: a JSON body given to the token budget,
 * cost budget and price list readers.  Whatever they accept writes text
 * within its bounds, and every value stays within its rules.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_budget.h"
#include "nx_json.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                      i, replace;
    char                    *json, err[128];
    char                     tokens[NX_BUDGET_JSON_LEN];
    char                     drop[NX_BUDGET_DROP_LEN];
    size_t                   len, bad;
    yajl_val                 v;
    const char              *field;
    nx_token_budget_t        t;
    nx_cost_budget_t         c;
    nx_cost_budget_params_t  p;

    if (size < 1) {
        return 0;
    }

    replace = data[0] & 1;

    v = nx_json_parse((const char *) data + 1, size - 1, err, sizeof(err));
    if (v == NULL) {
        return 0;
    }

    if (nx_token_budget_json(v, replace, &t, &field) == 0) {
        for (i = 0; i < NX_BUDGET_NPERIODS; i++) {
            if ((t.set & (1u << i))
                && nx_budget_tokens_valid(t.tokens[i]) != 0)
            {
                abort();
            }
        }

        if ((t.set & t.drop) != 0 || ((t.set | t.drop) & ~NX_BUDGET_ALL)) {
            abort();
        }

        nx_token_budget_text(&t, tokens, drop);

        if (strlen(tokens) >= sizeof(tokens) - 1
            || strlen(drop) >= sizeof(drop) - 1)
        {
            abort();
        }
    }

    if (nx_cost_budget_json(v, &c, &field) == 0) {
        if (((c.set & NX_COST_MONTHLY)
             && (c.monthly < 0 || c.monthly > NX_BUDGET_USD_MAX))
            || ((c.set & NX_COST_WARN) && (c.warn < 1 || c.warn > 1000)))
        {
            abort();
        }

        nx_cost_budget_params(&c, &p);
    }

    if (nx_prices_json(nx_json_get(v, "prices"), &json, &len, &bad)
        == NX_PRICES_OK)
    {
        if (strlen(json) != len) {
            abort();
        }

        free(json);
    }

    nx_json_free(v);

    return 0;
}
