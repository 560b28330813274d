/*
 * Copyright (C) Nexus authors
 *
 * The rules of what an operator may write for budgets and prices, shared
 * by nexusctl (set-budget, set-cost-budget, set-price, import-prices)
 * and the module's admin endpoints (/v1/admin/api-keys/{id}/budget,
 * /v1/admin/costs/budget, /v1/admin/costs/pricing/catalog), so that both
 * accept exactly the same values and write them with the same SQL.  The
 * tables' CHECK constraints (migrations 0009 and 0013) hold the same
 * rules once more.
 *
 * Amounts are parsed from their decimal text, never through a float
 * (nx_money.h): a JSON number is read from the text the client sent.
 *
 * Functions that check a value return 0 when it is valid and -1 otherwise.
 */

#ifndef NX_BUDGET_H
#define NX_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>


/* tokens of one period of a key's budget: what nexus_token_budget_valid()
 * accepts */
#define NX_BUDGET_TOKENS_MAX        999999999999LL

#define NX_BUDGET_NPERIODS          3       /* daily, monthly, total */
#define NX_BUDGET_ALL               0x7

/* {"daily": N, "monthly": N, "total": N} and {daily,monthly,total} */
#define NX_BUDGET_JSON_LEN          128
#define NX_BUDGET_DROP_LEN          32

/* a tenant's monthly budget: above 0, at most $1e9, in micro-dollars */
#define NX_BUDGET_USD_MAX           1000000000000000LL

/* a model's name in model_prices and tenant_costs */
#define NX_BUDGET_MODEL_MAX         128

/* what a price version may be back-dated by without allow_past: the
 * clocks of a client and of the gateway are not the same */
#define NX_BUDGET_PAST_GRACE_US     60000000LL

/* what nx_cost_budget_t.set says was given */
#define NX_COST_MONTHLY             0x01
#define NX_COST_WARN                0x02
#define NX_COST_MODE                0x04
#define NX_COST_DEGRADE             0x08
#define NX_COST_UNPRICED            0x10

/* nx_prices_json() */
#define NX_PRICES_OK                0
#define NX_PRICES_EMPTY             1       /* not an object of models */
#define NX_PRICES_MODEL             2       /* an invalid model name */
#define NX_PRICES_INPUT             3       /* its input price */
#define NX_PRICES_OUTPUT            4       /* its output price */
#define NX_PRICES_DUPLICATE         5       /* a model given twice */
#define NX_PRICES_NOMEM             6


extern const char  *const nx_budget_periods[NX_BUDGET_NPERIODS];


/* A write of a key's token budget: the periods given, those removed. */
typedef struct {
    int64_t      tokens[NX_BUDGET_NPERIODS];
    unsigned     set;           /* bit i: nx_budget_periods[i] is given */
    unsigned     drop;          /* bit i: it is removed */
} nx_token_budget_t;

/*
 * A write of a tenant's cost settings: what was given (NX_COST_*) and its
 * value.  monthly 0 removes the budget; degrade_model "" removes the
 * degrade model.
 */
typedef struct {
    unsigned     set;
    int64_t      monthly;       /* micro-dollars */
    int          warn;          /* permille, 1..1000 */
    int          degrade;       /* the mode: 0 block, 1 degrade */
    const char  *degrade_model;
    int          allow_unpriced;
} nx_cost_budget_t;

/* Its parameters for NX_COST_BUDGET_UPSERT, as text. */
typedef struct {
    char         monthly[24];
    char         warn[24];     /* NX_MONEY_LEN */
    const char  *values[5];     /* $2..$6, NULL where not given */
} nx_cost_budget_params_t;


/* The tokens of a period: 1..NX_BUDGET_TOKENS_MAX (a JSON integer). */
int nx_budget_tokens_valid(int64_t n);

/*
 * The members of a request body {"daily": N, "monthly": N, "total": N},
 * null removing a period.  With replace (PUT) the periods left out are
 * removed too, and {} removes them all; otherwise (PATCH) they are kept
 * and at least one member is needed.  Any other member is refused.  On
 * error *field is the member at fault, NULL for an empty or absent body.
 */
int nx_token_budget_json(yajl_val v, int replace, nx_token_budget_t *b,
    const char **field);

/*
 * What a write merges into api_keys.token_budget: json (the periods
 * given, NX_BUDGET_JSON_LEN bytes) and drop (a text[] of the periods to
 * remove, NX_BUDGET_DROP_LEN bytes), as in
 *     token_budget = (token_budget - <drop>::text[]) || <json>::jsonb
 */
void nx_token_budget_text(const nx_token_budget_t *b, char *json,
    char *drop);

/* A monthly budget: dollars above 0, at most 1e9, at most 6 decimals. */
int nx_cost_budget_usd(const char *s, size_t len, int64_t *musd);

/* A warn ratio: above 0, at most 1, at most 3 decimals, in permille. */
int nx_cost_warn_ratio(const char *s, size_t len, int *permille);

/* "block" (0) or "degrade" (1); -1 for anything else. */
int nx_cost_mode(const char *s, size_t len);

/* A model of the catalog: 1..128 bytes, no control byte, space or ','. */
int nx_budget_model_valid(const char *s, size_t len);

/*
 * The members of a request body that changes a tenant's cost settings:
 * monthly_budget_usd (a number or a decimal string, null to remove),
 * warn_ratio, hard_cap_mode, degrade_model (null to remove),
 * allow_unpriced, and enforce_hard_cap, the reference's, which may only
 * be true (the cap is always enforced).  At least one is needed, and any
 * other member is refused.  On error *field is the member at fault, NULL
 * for an empty or absent body.
 */
int nx_cost_budget_json(yajl_val v, nx_cost_budget_t *b, const char **field);

void nx_cost_budget_params(const nx_cost_budget_t *b,
    nx_cost_budget_params_t *p);

/* A price: dollars per 1K tokens, 0..10, at most 9 decimals, in nano. */
int nx_price_valid(const char *s, size_t len, int64_t *nusd);

/*
 * A price version's time, RFC 3339 ("2027-01-01T00:00:00Z", an offset, a
 * fraction, or a plain date for its UTC midnight), in microseconds since
 * the epoch.
 */
int nx_price_time(const char *s, size_t len, int64_t *us);

/*
 * Whether a version may start at from_us when it is now_us: not in the
 * past (by more than NX_BUDGET_PAST_GRACE_US) unless allow_past, since a
 * back-dated price rewrites what "current" meant.
 */
int nx_price_time_allowed(int64_t from_us, int64_t now_us, int allow_past);

/*
 * A price list, {"<model>": {"input": X, "output": Y}, ...} with prices
 * as JSON numbers or decimal strings, as the JSON that NX_PRICES_INSERT
 * reads: [{"model": "...", "input": N, "output": N}, ...] in
 * nano-dollars.  Returns NX_PRICES_OK with *json (malloc'ed, NUL
 * terminated, the caller frees it) and *len, or an NX_PRICES_* error
 * with *bad the index of the model at fault.
 */
int nx_prices_json(yajl_val prices, char **json, size_t *len, size_t *bad);


/*
 * Upserts a tenant's cost settings.  $1 the tenant's name, $2..$6 those of
 * nx_cost_budget_params() ($2 micro-dollars, 0 removing the budget; $3
 * warn ratio; $4 mode; $5 degrade model, '' removing it; $6 allow
 * unpriced; NULL keeps what is stored, or the default of a new row), $7
 * the only tenant id the caller may change, 0 for any.  RETURNING c.*: a
 * tenant out of scope or unknown returns no row.  A CHECK violation
 * (23514) is a degrade mode without a degrade model.  The table's trigger
 * NOTIFYs every node.
 */
#define NX_COST_BUDGET_UPSERT                                                \
    "INSERT INTO tenant_costs AS c (tenant_id, monthly_budget_musd,"         \
    " warn_ratio, hard_cap_mode, degrade_model, allow_unpriced)"             \
    " SELECT t.id, nullif($2::bigint, 0), coalesce($3::numeric, 0.8),"       \
    " coalesce($4, 'block'), nullif($5, ''), coalesce($6::boolean, false)"   \
    " FROM tenants t WHERE t.name = $1"                                      \
    " AND ($7::bigint = 0 OR t.id = $7::bigint)"                             \
    " ON CONFLICT (tenant_id) DO UPDATE SET"                                 \
    " monthly_budget_musd = CASE WHEN $2 IS NULL THEN c.monthly_budget_musd" \
    " ELSE nullif($2::bigint, 0) END,"                                       \
    " warn_ratio = coalesce($3::numeric, c.warn_ratio),"                     \
    " hard_cap_mode = coalesce($4, c.hard_cap_mode),"                        \
    " degrade_model = CASE WHEN $5 IS NULL THEN c.degrade_model"             \
    " ELSE nullif($5, '') END,"                                              \
    " allow_unpriced = coalesce($6::boolean, c.allow_unpriced),"             \
    " updated_at = now()"                                                    \
    " RETURNING c.*"

/*
 * Adds price versions: $1 the JSON of nx_prices_json(), $2 their time in
 * microseconds since the epoch (NULL: now), $3 who writes them.  CTEs for
 * the statement to select from: f.at (the time), x (the list: model,
 * input, output), clash (the first model that has a version at that time
 * with other prices: then nothing is written) and ins (the models added;
 * a version present with the same prices is kept as it is).  The table's
 * trigger NOTIFYs every node.
 */
#define NX_PRICES_INSERT                                                     \
    "WITH f AS (SELECT coalesce(timestamptz 'epoch'"                         \
    " + $2::bigint * interval '1 microsecond', now()) AS at),"               \
    " x AS (SELECT * FROM json_to_recordset($1::json)"                       \
    " AS x (model text, input bigint, output bigint)),"                      \
    " clash AS (SELECT x.model FROM x, f, model_prices p"                    \
    " WHERE p.model = x.model AND p.effective_from = f.at"                   \
    " AND (p.input_nusd_per_1k <> x.input"                                   \
    " OR p.output_nusd_per_1k <> x.output)"                                  \
    " ORDER BY x.model COLLATE \"C\" LIMIT 1),"                              \
    " ins AS (INSERT INTO model_prices AS p (model, input_nusd_per_1k,"      \
    " output_nusd_per_1k, effective_from, created_by)"                       \
    " SELECT x.model, x.input, x.output, f.at, $3 FROM x, f"                 \
    " WHERE NOT EXISTS (SELECT 1 FROM clash)"                                \
    " ON CONFLICT (model, effective_from) DO NOTHING RETURNING p.model)"

/*
 * The status of a version p of model_prices: 'scheduled' (in the future),
 * 'current' (the model's latest that is not) or 'past'.
 */
#define NX_PRICE_STATUS                                                      \
    "CASE WHEN p.effective_from > now() THEN 'scheduled'"                    \
    " WHEN p.effective_from = (SELECT max(q.effective_from)"                 \
    " FROM model_prices q WHERE q.model = p.model"                           \
    " AND q.effective_from <= now()) THEN 'current' ELSE 'past' END"


#endif /* NX_BUDGET_H */
