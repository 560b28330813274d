/*
 * Copyright (C) Nexus authors
 *
 * nexusctl pricing and cost budgets: set-price, show-prices,
 * import-prices, set-cost-budget, show-cost-budget and show-credits.
 *
 * Prices are versions: set-price adds one, effective now or from
 * --effective-from (not in the past without --allow-past), and never
 * changes an existing one; a model's price is its latest version that is
 * not in the future.  Prices are given in dollars per 1K tokens and stored
 * in nano-dollars, budgets in dollars and stored in micro-dollars
 * (common/nx_money.h): the decimals are parsed exactly, never through a
 * float.  import-prices loads a price list such as config/pricing.json,
 * keeping versions already present.  The values are checked, and written,
 * as the admin API checks and writes them (common/nx_budget.h).
 *
 * A tenant's cost budget is a row of tenant_costs (migration 0013); every
 * write fires a NOTIFY on which each nginx worker reloads it, as it does
 * for the catalog.  The live counters (the month's spend, the credit
 * balance) are in Redis, where the gateway keeps them: show-credits reads
 * the ledger PostgreSQL has, which trails Redis by a second or so.
 * Credits are granted through the admin API, which changes the balance
 * in Redis (POST /v1/admin/credits/{tenant}/grant; nexusctl grant-credits
 * calls it, cli_credits.c).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <nx_budget.h>
#include <nx_json.h>
#include <nx_money.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


/* a price list larger than this is a mistake */
#define CLI_COST_FILE_MAX         (1024 * 1024)

#define CLI_COST_SQLSTATE_CHECK   "23514"


#define CLI_COST_USD(col)                                                    \
    "trim_scale(round(" col " / 1000000000.0, 9))"

#define CLI_COST_PRICE_COLS                                                  \
    "p.model, " CLI_COST_USD("p.input_nusd_per_1k") " AS input_usd_per_1k, " \
    CLI_COST_USD("p.output_nusd_per_1k") " AS output_usd_per_1k, "          \
    CLI_DB_TS("p.effective_from") " AS effective_from, "                    \
    NX_PRICE_STATUS " AS status"

/* $1: the model, or NULL for all; $2: 't' for past versions too */

static const char  cli_cost_show_prices_sql[] =
    "SELECT * FROM (SELECT " CLI_COST_PRICE_COLS " FROM model_prices p"
    " WHERE $1::text IS NULL OR p.model = $1) v"
    " WHERE $2::boolean OR v.status <> 'past'"
    " ORDER BY v.model COLLATE \"C\", v.effective_from";

/*
 * set-price and import-prices add versions with the admin API's statement
 * (common/nx_budget.h): the time, the first model whose version at that
 * time has other prices, the versions added.
 */

static const char  cli_cost_add_prices_sql[] =
    NX_PRICES_INSERT
    " SELECT " CLI_DB_TS("f.at") ", (SELECT model FROM clash),"
    " (SELECT count(*) FROM ins) FROM f";

#define CLI_COST_BUDGET_COLS                                                 \
    "t.name, CASE WHEN c.monthly_budget_musd IS NULL THEN 'none' ELSE "     \
    "trim_scale(round(c.monthly_budget_musd / 1000000.0, 6))::text END, "   \
    "trim_scale(c.warn_ratio)::text, c.hard_cap_mode, "                     \
    "coalesce(c.degrade_model, 'none'), c.allow_unpriced, c.credits"

/* the admin API's upsert (common/nx_budget.h), for any tenant */

static const char  cli_cost_set_budget_sql[] =
    "WITH up AS (" NX_COST_BUDGET_UPSERT ")"
    " SELECT " CLI_COST_BUDGET_COLS " FROM up c"
    " JOIN tenants t ON t.id = c.tenant_id";

static const char  cli_cost_show_budget_sql[] =
    "SELECT " CLI_COST_BUDGET_COLS " FROM tenants t"
    " LEFT JOIN tenant_costs c ON c.tenant_id = t.id WHERE t.name = $1";

/* a degrade model without a price today cannot be degraded to */

static const char  cli_cost_priced_sql[] =
    "SELECT 1 FROM model_prices WHERE model = $1 AND effective_from <= now()";

static const char  cli_cost_credits_sql[] =
    "SELECT coalesce((SELECT credits FROM tenant_costs"
    " WHERE tenant_id = $1::bigint), false),"
    " (SELECT trim_scale(round(balance_after_musd / 1000000.0, 6))::text"
    " FROM credit_transactions WHERE tenant_id = $1::bigint"
    " ORDER BY entry_ms DESC, entry_seq DESC LIMIT 1)";

/*
 * The audit events.  The price list is the platform's (chain 0): $1 the
 * time of the versions, $2 how many were added, $3 the list given.
 */

static const cli_audit_event_t  cli_cost_price_event = {
    "admin.pricing.updated",
    "SELECT 0, json_build_object('effective_from', $1::timestamptz,"
    " 'added', $2::bigint, 'prices', $3::json)"
};

static const cli_audit_event_t  cli_cost_budget_event = {
    "admin.cost_budget.updated",
    "SELECT t.id, json_build_object('tenant', t.name,"
    " 'monthly_budget_musd', c.monthly_budget_musd,"
    " 'warn_ratio', c.warn_ratio, 'hard_cap_mode', c.hard_cap_mode,"
    " 'degrade_model', c.degrade_model,"
    " 'allow_unpriced', c.allow_unpriced)"
    " FROM tenants t JOIN tenant_costs c ON c.tenant_id = t.id"
    " WHERE t.name = $1"
};

static const char  cli_cost_ledger_sql[] =
    "SELECT entry_ms || '-' || entry_seq AS id, transaction_type AS type,"
    " trim_scale(round(amount_musd / 1000000.0, 6)) AS amount_usd,"
    " trim_scale(round(balance_before_musd / 1000000.0, 6)) AS before_usd,"
    " trim_scale(round(balance_after_musd / 1000000.0, 6)) AS after_usd,"
    " " CLI_DB_TS("created_at") " AS created_at,"
    " coalesce(created_by, request_id) AS by_or_request"
    " FROM (SELECT * FROM credit_transactions WHERE tenant_id = $1::bigint"
    " ORDER BY entry_ms DESC, entry_seq DESC LIMIT $2::int) c"
    " ORDER BY entry_ms, entry_seq";


typedef struct {
    const char        *tenant;
    const char        *monthly_arg;
    const char        *ratio_arg;
    const char        *mode_arg;
    const char        *degrade_arg;
    int                no_budget;
    int                allow_unpriced;  /* -1 not given, 0, 1 */

    nx_cost_budget_t   b;               /* what the admin API would get */
} cli_cost_budget_args_t;


static int cli_cost_model_check(const char *model);
static int cli_cost_price(const char *name, const char *s, int64_t *v);
static int cli_cost_time(const char *ts, char *us);
static int64_t cli_cost_now(void);
static int cli_cost_add(const char *json, const char *from_us,
    const char *by, PGresult **res);
static int cli_cost_import_json(yajl_val prices, char **json);
static char *cli_cost_read(const char *path, size_t *len);
static int cli_cost_budget_check(const char *verb, cli_cost_budget_args_t *a);
static void cli_cost_budget_print(const char *tenant, const PGresult *res);


static const struct option  cli_set_price_opts[] = {
    { "model",            required_argument,  NULL,  'm' },
    { "input",            required_argument,  NULL,  'i' },
    { "output",           required_argument,  NULL,  'o' },
    { "effective-from",   required_argument,  NULL,  'e' },
    { "allow-past",       no_argument,        NULL,  'P' },
    { NULL,               0,                  NULL,  0 }
};

static const struct option  cli_show_prices_opts[] = {
    { "model",            required_argument,  NULL,  'm' },
    { "all",              no_argument,        NULL,  'a' },
    { NULL,               0,                  NULL,  0 }
};

static const struct option  cli_import_prices_opts[] = {
    { "file",             required_argument,  NULL,  'f' },
    { NULL,               0,                  NULL,  0 }
};

static const struct option  cli_set_cost_budget_opts[] = {
    { "tenant",           required_argument,  NULL,  'n' },
    { "monthly-usd",      required_argument,  NULL,  'u' },
    { "no-budget",        no_argument,        NULL,  'U' },
    { "warn-ratio",       required_argument,  NULL,  'w' },
    { "mode",             required_argument,  NULL,  'm' },
    { "degrade-model",    required_argument,  NULL,  'd' },
    { "allow-unpriced",   no_argument,        NULL,  'a' },
    { "no-allow-unpriced", no_argument,       NULL,  'A' },
    { NULL,               0,                  NULL,  0 }
};

static const struct option  cli_tenant_opts[] = {
    { "tenant",           required_argument,  NULL,  'n' },
    { "limit",            required_argument,  NULL,  'l' },
    { NULL,               0,                  NULL,  0 }
};


/*
 * set-price --model M --input X --output Y [--effective-from TS]
 *     [--allow-past]
 */

int
cli_set_price(int argc, char **argv)
{
    int          rc, past;
    char        *json, in[NX_MONEY_LEN], out[NX_MONEY_LEN], us[24];
    size_t       n, len;
    int64_t      vin, vout;
    PGresult    *res;
    const char  *model, *in_arg, *out_arg, *from;

    model = NULL;
    in_arg = NULL;
    out_arg = NULL;
    from = NULL;
    past = 0;

    rc = cli_opt_read(argc, argv, cli_set_price_opts,
                      (void *[]) { &model, &in_arg, &out_arg, &from, &past });
    if (rc != -1) {
        return rc;
    }

    if (model == NULL || in_arg == NULL || out_arg == NULL) {
        cli_error("%s: --model, --input and --output are required", argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    if (cli_cost_model_check(model) != 0
        || cli_cost_price("input price", in_arg, &vin) != 0
        || cli_cost_price("output price", out_arg, &vout) != 0
        || (from != NULL && cli_cost_time(from, us) != 0))
    {
        return CLI_USAGE;
    }

    if (from != NULL && !past
        && nx_price_time_allowed(strtoll(us, NULL, 10), cli_cost_now(), 0)
           != 0)
    {
        cli_error("%s: --effective-from \"%s\" is in the past: a version "
                  "back-dated changes what was the current price; give "
                  "--allow-past to write it anyway", argv[0],
                  cli_quote(from));
        return CLI_USAGE;
    }

    /* a list of one, as import-prices and the admin API write them */

    len = nx_json_escape_len(model, strlen(model)) + 96;

    json = malloc(len);
    if (json == NULL) {
        cli_error("out of memory");
        return CLI_FAILED;
    }

    n = (size_t) snprintf(json, len, "[{\"model\":\"");
    n += nx_json_escape(json + n, model, strlen(model));
    snprintf(json + n, len - n, "\",\"input\":%lld,\"output\":%lld}]",
             (long long) vin, (long long) vout);

    rc = cli_cost_add(json, from ? us : NULL, "nexusctl", &res);
    free(json);

    if (rc != CLI_OK) {
        return rc;
    }

    if (!PQgetisnull(res, 0, 1) || strcmp(PQgetvalue(res, 0, 2), "0") == 0) {
        cli_error("model \"%s\" has a price effective at that time "
                  "already", cli_quote(model));
        rc = CLI_FAILED;

    } else {
        nx_money_format(in, vin, NX_MONEY_NANO);
        nx_money_format(out, vout, NX_MONEY_NANO);

        printf("price of %s from %s: input $%s, output $%s per 1K tokens\n",
               model, PQgetvalue(res, 0, 0), in, out);
        rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
    }

    PQclear(res);

    return rc;
}


/* show-prices [--model M] [--all] */

int
cli_show_prices(int argc, char **argv)
{
    int          rc, all;
    PGconn      *conn;
    PGresult    *res;
    const char  *model, *values[2];

    model = NULL;
    all = 0;

    rc = cli_opt_read(argc, argv, cli_show_prices_opts,
                      (void *[]) { &model, &all });
    if (rc != -1) {
        return rc;
    }

    if (model != NULL && cli_cost_model_check(model) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    values[0] = model;
    values[1] = all ? "t" : "f";

    res = cli_db_exec(conn, cli_cost_show_prices_sql, 2, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot show prices");

    } else if (PQntuples(res) == 0 && model != NULL) {
        cli_error("model \"%s\" has no price", cli_quote(model));
        rc = CLI_FAILED;

    } else {
        rc = (cli_table_print(res) == 0 && cli_flush() == 0)
             ? CLI_OK : CLI_FAILED;
    }

    PQclear(res);
    cli_db_close(conn);

    return rc;
}


/*
 * import-prices --file F.  The file:
 *   {"effective_from": "2025-01-01T00:00:00Z",
 *    "prices": {"gpt-4o": {"input": 0.0025, "output": 0.01}, ...}}
 * prices in dollars per 1K tokens, as JSON numbers or strings; any other
 * member (a note, a version) is ignored.
 */

int
cli_import_prices(int argc, char **argv)
{
    int          rc;
    char        *buf, *json, err[128], n[24], us[24];
    size_t       len;
    yajl_val     root, prices;
    PGresult    *res;
    const char  *path, *from;

    path = NULL;

    rc = cli_opt_read(argc, argv, cli_import_prices_opts,
                      (void *[]) { &path });
    if (rc != -1) {
        return rc;
    }

    if (path == NULL) {
        cli_error("%s: --file is required", argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    buf = cli_cost_read(path, &len);
    if (buf == NULL) {
        return CLI_FAILED;
    }

    root = nx_json_parse(buf, len, err, sizeof(err));
    free(buf);

    if (root == NULL) {
        cli_error("%s: not JSON: %s", cli_quote(path), err);
        return CLI_FAILED;
    }

    prices = nx_json_get(root, "prices");

    if (nx_json_string(nx_json_get(root, "effective_from"), &from) != 0
        || !YAJL_IS_OBJECT(prices) || prices->u.object.len == 0)
    {
        cli_error("%s: \"effective_from\" (a time) and \"prices\" (an object "
                  "of models) are required", cli_quote(path));
        nx_json_free(root);
        return CLI_FAILED;
    }

    /* a price list is dated when it was published: the past is its own */

    if (cli_cost_time(from, us) != 0) {
        nx_json_free(root);
        return CLI_USAGE;
    }

    if (cli_cost_import_json(prices, &json) != 0) {
        nx_json_free(root);
        return CLI_FAILED;
    }

    rc = cli_cost_add(json, us, "nexusctl import", &res);
    free(json);

    if (rc != CLI_OK) {
        nx_json_free(root);
        return rc;
    }

    if (!PQgetisnull(res, 0, 1)) {
        cli_error("model \"%s\" has a price effective at that time already, "
                  "with other prices: nothing imported",
                  cli_quote(PQgetvalue(res, 0, 1)));
        rc = CLI_FAILED;

    } else {
        snprintf(n, sizeof(n), "%zu", prices->u.object.len);
        printf("imported %s of %s prices effective from %s from %s\n",
               PQgetvalue(res, 0, 2), n, cli_quote(from), cli_quote(path));
        rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
    }

    PQclear(res);
    nx_json_free(root);

    return rc;
}


/*
 * The list as NX_PRICES_INSERT reads it (common/nx_budget.h), or a
 * message about what is wrong in it.
 */

static int
cli_cost_import_json(yajl_val prices, char **json)
{
    int          rc;
    size_t       len, bad;
    const char  *model;

    rc = nx_prices_json(prices, json, &len, &bad);

    if (rc == NX_PRICES_OK) {
        return 0;
    }

    model = prices->u.object.keys[bad];

    switch (rc) {

    case NX_PRICES_MODEL:
        (void) cli_cost_model_check(model);
        break;

    case NX_PRICES_INPUT:
    case NX_PRICES_OUTPUT:
        cli_error("model \"%s\": \"%s\" is required, in dollars per 1K "
                  "tokens, from 0 to 10, with at most 9 decimals",
                  cli_quote(model),
                  (rc == NX_PRICES_INPUT) ? "input" : "output");
        break;

    case NX_PRICES_DUPLICATE:
        cli_error("model \"%s\" is listed twice", cli_quote(model));
        break;

    default:
        cli_error("out of memory");
        break;
    }

    return -1;
}


static char *
cli_cost_read(const char *path, size_t *len)
{
    char        *buf;
    FILE        *f;
    size_t       n;
    struct stat  st;

    f = fopen(path, "r");
    if (f == NULL) {
        cli_error("cannot open %s", cli_quote(path));
        return NULL;
    }

    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)
        || st.st_size > CLI_COST_FILE_MAX)
    {
        cli_error("%s: not a regular file of at most 1 MB", cli_quote(path));
        fclose(f);
        return NULL;
    }

    buf = malloc(st.st_size + 1);
    if (buf == NULL) {
        cli_error("out of memory");
        fclose(f);
        return NULL;
    }

    n = fread(buf, 1, st.st_size, f);
    fclose(f);

    if (n != (size_t) st.st_size) {
        cli_error("cannot read %s", cli_quote(path));
        free(buf);
        return NULL;
    }

    *len = n;

    return buf;
}


/*
 * set-cost-budget --tenant T [--monthly-usd N | --no-budget]
 *     [--warn-ratio R] [--mode block|degrade] [--degrade-model M]
 *     [--allow-unpriced | --no-allow-unpriced]
 */

int
cli_set_cost_budget(int argc, char **argv)
{
    int                      c, rc;
    PGconn                  *conn;
    PGresult                *res;
    const char              *values[7];
    cli_cost_budget_args_t   a;
    nx_cost_budget_params_t  p;
    char                     model[256];

    memset(&a, 0, sizeof(cli_cost_budget_args_t));
    a.allow_unpriced = -1;

    while ((c = cli_getopt(argc, argv, cli_set_cost_budget_opts)) != -1) {

        switch (c) {

        case 'n':
            a.tenant = optarg;
            break;

        case 'u':
            a.monthly_arg = optarg;
            break;

        case 'U':
            a.no_budget = 1;
            break;

        case 'w':
            a.ratio_arg = optarg;
            break;

        case 'm':
            a.mode_arg = optarg;
            break;

        case 'd':
            a.degrade_arg = optarg;
            break;

        case 'a':
        case 'A':
            if (a.allow_unpriced != -1) {
                cli_error("%s: --allow-unpriced and --no-allow-unpriced "
                          "exclude each other", argv[0]);
                return CLI_USAGE;
            }

            a.allow_unpriced = (c == 'a');
            break;

        default:
            return cli_opt_usage(argv[0], c);
        }
    }

    if (cli_opt_end(argc, argv) != 0
        || cli_cost_budget_check(argv[0], &a) != 0)
    {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    nx_cost_budget_params(&a.b, &p);

    values[0] = a.tenant;
    memcpy(&values[1], p.values, sizeof(p.values));
    values[6] = "0";

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    res = cli_db_exec(conn, cli_cost_set_budget_sql, 7, values);

    if (!cli_db_ok(res)) {
        if (cli_db_state(res, CLI_COST_SQLSTATE_CHECK)) {
            cli_error("mode degrade needs a --degrade-model");
            rc = CLI_FAILED;

        } else {
            rc = cli_db_fail(conn, res, "cannot set cost budget");
        }

    } else if (PQntuples(res) == 0) {
        cli_error("tenant \"%s\" not found", a.tenant);
        rc = CLI_FAILED;

    } else {
        rc = cli_audit_commit(conn, &cli_cost_budget_event, 1, values);
    }

    if (rc != CLI_OK) {
        PQclear(res);
        cli_db_rollback(conn);
        cli_db_close(conn);
        return rc;
    }

    cli_cost_budget_print(a.tenant, res);

    /* a degrade model the gateway cannot price: it will block instead */
    if (strcmp(PQgetvalue(res, 0, 3), "degrade") == 0
        && PQgetvalue(res, 0, 5)[0] != 't')
    {
        /* the model's name outlives the result it came in */
        (void) snprintf(model, sizeof(model), "%s", PQgetvalue(res, 0, 4));
        values[0] = model;

        PQclear(res);
        res = cli_db_exec(conn, cli_cost_priced_sql, 1, values);

        if (cli_db_ok(res) && PQntuples(res) == 0) {
            cli_warn("the degrade model has no price yet: requests at the "
                     "cap are blocked until it has one");
        }
    }

    PQclear(res);
    cli_db_close(conn);

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}


/* The options as the admin API's body would give them (nx_budget.h). */

static int
cli_cost_budget_check(const char *verb, cli_cost_budget_args_t *a)
{
    nx_cost_budget_t  *b;

    b = &a->b;

    if (cli_tenant_required(verb, a->tenant) != 0) {
        return -1;
    }

    if (a->monthly_arg != NULL && a->no_budget) {
        cli_error("%s: --monthly-usd cannot be combined with --no-budget",
                  verb);
        return -1;
    }

    if (a->monthly_arg == NULL && !a->no_budget && a->ratio_arg == NULL
        && a->mode_arg == NULL && a->degrade_arg == NULL
        && a->allow_unpriced == -1)
    {
        cli_error("%s: one of --monthly-usd, --no-budget, --warn-ratio, "
                  "--mode, --degrade-model, --allow-unpriced or "
                  "--no-allow-unpriced is required", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->no_budget) {
        b->set |= NX_COST_MONTHLY;
    }

    if (a->monthly_arg != NULL) {
        if (nx_cost_budget_usd(a->monthly_arg, strlen(a->monthly_arg),
                               &b->monthly)
            != 0)
        {
            cli_error("invalid monthly budget \"%s\": dollars above 0 and at "
                      "most 1000000000, with at most 6 decimals",
                      cli_quote(a->monthly_arg));
            return -1;
        }

        b->set |= NX_COST_MONTHLY;
    }

    if (a->ratio_arg != NULL) {
        if (nx_cost_warn_ratio(a->ratio_arg, strlen(a->ratio_arg), &b->warn)
            != 0)
        {
            cli_error("invalid warn ratio \"%s\": a number above 0 and at "
                      "most 1, with at most 3 decimals",
                      cli_quote(a->ratio_arg));
            return -1;
        }

        b->set |= NX_COST_WARN;
    }

    if (a->mode_arg != NULL) {
        b->degrade = nx_cost_mode(a->mode_arg, strlen(a->mode_arg));

        if (b->degrade < 0) {
            cli_error("invalid mode \"%s\": block or degrade",
                      cli_quote(a->mode_arg));
            return -1;
        }

        b->set |= NX_COST_MODE;
    }

    if (a->degrade_arg != NULL) {
        /* an empty model removes it */
        if (a->degrade_arg[0] != '\0'
            && cli_cost_model_check(a->degrade_arg) != 0)
        {
            return -1;
        }

        b->degrade_model = a->degrade_arg;
        b->set |= NX_COST_DEGRADE;
    }

    if (a->allow_unpriced != -1) {
        b->allow_unpriced = a->allow_unpriced;
        b->set |= NX_COST_UNPRICED;
    }

    return 0;
}


/* show-cost-budget --tenant T */

int
cli_show_cost_budget(int argc, char **argv)
{
    int          c;
    const char  *tenant;

    tenant = NULL;

    while ((c = cli_getopt(argc, argv, cli_tenant_opts)) != -1) {

        switch (c) {

        case 'n':
            tenant = optarg;
            break;

        default:
            return cli_opt_usage(argv[0], c);
        }
    }

    if (cli_opt_end(argc, argv) != 0) {
        return CLI_USAGE;
    }

    if (cli_tenant_required(argv[0], tenant) != 0) {
        return CLI_USAGE;
    }

    return cli_db_show(cli_cost_show_budget_sql, tenant, "tenant",
                       "cost budget", cli_cost_budget_print);
}


/* One row of CLI_COST_BUDGET_COLS; a tenant without a row has defaults. */

static void
cli_cost_budget_print(const char *tenant, const PGresult *res)
{
    (void) tenant;      /* the row names its tenant */

    if (PQgetisnull(res, 0, 2)) {
        printf("cost budget of tenant %s: none\n", PQgetvalue(res, 0, 0));
        return;
    }

    printf("cost budget of tenant %s: monthly_usd=%s warn_ratio=%s mode=%s "
           "degrade_model=%s allow_unpriced=%s credits=%s\n",
           PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
           PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
           PQgetvalue(res, 0, 4),
           PQgetvalue(res, 0, 5)[0] == 't' ? "yes" : "no",
           PQgetvalue(res, 0, 6)[0] == 't' ? "yes" : "no");
}


/* show-credits --tenant T [--limit N]: the ledger PostgreSQL has */

int
cli_show_credits(int argc, char **argv)
{
    int                  rc;
    char                 limit[24];
    PGconn              *conn;
    PGresult            *res;
    const char          *tenant, *limit_arg, *values[2];
    cli_tenant_t         t;
    unsigned long long   n;

    tenant = NULL;
    limit_arg = NULL;
    n = 20;

    rc = cli_opt_read(argc, argv, cli_tenant_opts,
                      (void *[]) { &tenant, &limit_arg });
    if (rc != -1) {
        return rc;
    }

    if (tenant == NULL) {
        cli_error("%s: --tenant is required", argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    if (limit_arg != NULL && cli_opt_count("limit", limit_arg, 1000, &n) != 0)
    {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = cli_tenant_find(conn, tenant, &t);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    values[0] = t.id;

    res = cli_db_exec(conn, cli_cost_credits_sql, 1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot show credits");
        PQclear(res);
        cli_db_close(conn);
        return rc;
    }

    printf("credits of tenant %s: %s, ledger balance $%s\n", tenant,
           PQgetvalue(res, 0, 0)[0] == 't' ? "on" : "off",
           PQgetisnull(res, 0, 1) ? "0.00" : PQgetvalue(res, 0, 1));

    PQclear(res);

    snprintf(limit, sizeof(limit), "%llu", n);
    values[1] = limit;

    res = cli_db_exec(conn, cli_cost_ledger_sql, 2, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot show credits");

    } else {
        rc = (cli_table_print(res) == 0 && cli_flush() == 0)
             ? CLI_OK : CLI_FAILED;
    }

    PQclear(res);
    cli_db_close(conn);

    return rc;
}


/* what model_prices and tenant_costs accept: 1-128 bytes, no space, ',' */

static int
cli_cost_model_check(const char *model)
{
    if (nx_budget_model_valid(model, strlen(model)) != 0) {
        cli_error("invalid model \"%s\": 1-128 characters, no spaces or "
                  "commas", cli_quote(model));
        return -1;
    }

    return 0;
}


static int
cli_cost_price(const char *name, const char *s, int64_t *v)
{
    if (nx_price_valid(s, strlen(s), v) != 0) {
        cli_error("invalid %s \"%s\": dollars per 1K tokens, from 0 to 10, "
                  "with at most 9 decimals", name, cli_quote(s));
        return -1;
    }

    return 0;
}


/* a version's time, checked as the admin API checks it, in microseconds */

static int
cli_cost_time(const char *ts, char *us)
{
    int64_t  v;

    if (nx_price_time(ts, strlen(ts), &v) != 0) {
        cli_error("invalid time \"%s\": for example 2025-07-01T00:00:00Z",
                  cli_quote(ts));
        return -1;
    }

    snprintf(us, 24, "%lld", (long long) v);

    return 0;
}


static int64_t
cli_cost_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


/*
 * Runs cli_cost_add_prices_sql: *res has one row (the time, the model that
 * clashed or NULL, the versions added) when CLI_OK is returned.  Versions
 * added are audited in the same transaction.
 */

static int
cli_cost_add(const char *json, const char *from_us, const char *by,
    PGresult **res)
{
    int          rc;
    PGconn      *conn;
    const char  *values[3];

    *res = NULL;

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    values[0] = json;
    values[1] = from_us;
    values[2] = by;

    *res = cli_db_exec(conn, cli_cost_add_prices_sql, 3, values);

    if (!cli_db_ok(*res)) {
        rc = cli_db_fail(conn, *res, "cannot add prices");

    } else if (PQgetisnull(*res, 0, 1)
               && strcmp(PQgetvalue(*res, 0, 2), "0") != 0)
    {
        /* the time, the versions added, the list */
        values[0] = PQgetvalue(*res, 0, 0);
        values[1] = PQgetvalue(*res, 0, 2);
        values[2] = json;

        rc = cli_audit_commit(conn, &cli_cost_price_event, 3, values);
    }

    if (rc != CLI_OK) {
        PQclear(*res);
        *res = NULL;
    }

    cli_db_rollback(conn);
    cli_db_close(conn);

    return rc;
}
