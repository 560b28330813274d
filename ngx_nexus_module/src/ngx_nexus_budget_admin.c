
/*
 * Copyright (C) Nexus authors
 *
 * nexus_admin: budgets and prices over HTTP, as nexusctl sets them.
 *
 *   GET|HEAD          /v1/admin/costs/budget[?tenant=T]   a cost budget
 *   PUT|PATCH|DELETE  /v1/admin/costs/budget[?tenant=T]
 *   GET|HEAD          /v1/admin/costs/pricing/catalog[?model=M&all=true]
 *   POST              /v1/admin/costs/pricing/catalog     platform admins
 *   GET|HEAD          /v1/admin/api-keys/{id}/budget      a token budget
 *   PUT|PATCH|DELETE  /v1/admin/api-keys/{id}/budget
 *
 * The access phase required an admin key.  A tenant's admin sees and
 * changes its own tenant's cost budget and its own keys' token budgets;
 * another tenant's, or another tenant's key, is answered as one that
 * does not exist.  A platform admin sees and changes any.  Two things a
 * tenant must not decide for itself are a platform admin's: the pricing
 * catalog, which every tenant pays by, and allowing unpriced models,
 * which a tenant on credits would use for free.
 *
 * The values are checked, and written, as nexusctl checks and writes
 * them (common/nx_budget.h).  No node is told anything here: the tables'
 * triggers NOTIFY every node on commit, as for nexusctl's writes - a key
 * budget evicts the key from every node's cache (0009), a cost budget or
 * a price reloads every node's catalog (0013).
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"
#include "ngx_nexus_audit.h"

#include <nx_budget.h>
#include <nx_json.h>
#include <nx_key.h>
#include <nx_name.h>


#define NGX_NEXUS_BA_COST_GET       0
#define NGX_NEXUS_BA_COST_SET       1
#define NGX_NEXUS_BA_KEY_GET        2
#define NGX_NEXUS_BA_KEY_SET        3
#define NGX_NEXUS_BA_PRICES         4
#define NGX_NEXUS_BA_PRICES_ADD     5
#define NGX_NEXUS_BA_NOPS           6

/* a document larger than this is not copied into an audit event */
#define NGX_NEXUS_BA_AUDIT_MAX      8192

/* the versions a catalog read returns at most */
#define NGX_NEXUS_BA_PRICES_MAX     "10000"


typedef struct {
    ngx_uint_t                  op;
    ngx_str_t                   target;     /* tenant name, key id */
    unsigned                    deleting:1;
} ngx_nexus_budget_admin_ctx_t;


static ngx_nexus_budget_admin_ctx_t *ngx_nexus_budget_admin_ctx(
    ngx_http_request_t *r, ngx_uint_t op, ngx_str_t *target);
static ngx_nexus_pg_query_t *ngx_nexus_budget_admin_query(
    ngx_http_request_t *r, size_t size);
static ngx_int_t ngx_nexus_budget_admin_budget(ngx_http_request_t *r,
    ngx_uint_t op, ngx_str_t *target);
static ngx_int_t ngx_nexus_budget_admin_cost(ngx_http_request_t *r);
static void ngx_nexus_budget_admin_cost_set(ngx_http_request_t *r,
    yajl_val v);
static ngx_int_t ngx_nexus_budget_admin_cost_write(ngx_http_request_t *r,
    nx_cost_budget_t *b, ngx_uint_t content);
static void ngx_nexus_budget_admin_key_set(ngx_http_request_t *r,
    yajl_val v);
static ngx_int_t ngx_nexus_budget_admin_key_write(ngx_http_request_t *r,
    nx_token_budget_t *b, ngx_uint_t content);
static ngx_int_t ngx_nexus_budget_admin_prices(ngx_http_request_t *r);
static void ngx_nexus_budget_admin_prices_add(ngx_http_request_t *r,
    yajl_val v);
static const char *ngx_nexus_budget_admin_rule(const char *field,
    const char *const *rules, const char *none);
static ngx_int_t ngx_nexus_budget_admin_invalid(ngx_http_request_t *r,
    const char *message, const char *field, const char *model);
static ngx_int_t ngx_nexus_budget_admin_platform(ngx_http_request_t *r,
    const char *message, const char *details);
static void ngx_nexus_budget_admin_done(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
static void ngx_nexus_budget_admin_audit(ngx_http_request_t *r,
    PGresult *res, const char *code);


static ngx_uint_t  ngx_nexus_budget_admin_stmts[NGX_NEXUS_BA_NOPS];


/* the audit events of the writes, by op; DELETE's end in ".deleted" */

static const char  *ngx_nexus_budget_admin_events[NGX_NEXUS_BA_NOPS][2] = {
    { NULL, NULL },
    { "admin.cost_budget.updated", "admin.cost_budget.deleted" },
    { NULL, NULL },
    { "admin.token_budget.updated", "admin.token_budget.deleted" },
    { NULL, NULL },
    { "admin.pricing.updated", NULL }
};


/* what each member of a body must be, for VALIDATION_ERROR's message */

static const char  *const ngx_nexus_budget_admin_cost_rules[] = {
    "monthly_budget_usd",
    "\"monthly_budget_usd\" must be dollars above 0 and at most "
    "1000000000, with at most 6 decimals, or null",
    "warn_ratio",
    "\"warn_ratio\" must be a number above 0 and at most 1, with at most "
    "3 decimals",
    "hard_cap_mode", "\"hard_cap_mode\" must be \"block\" or \"degrade\"",
    "degrade_model",
    "\"degrade_model\" must be a model of 1-128 characters without spaces "
    "or commas, or null",
    "allow_unpriced", "\"allow_unpriced\" must be true or false",
    "enforce_hard_cap",
    "\"enforce_hard_cap\" can only be true: the cap is always enforced, "
    "as hard_cap_mode says",
    NULL
};

static const char  *const ngx_nexus_budget_admin_token_rules[] = {
    "daily", "\"daily\" must be an integer of 1..999999999999, or null",
    "monthly", "\"monthly\" must be an integer of 1..999999999999, or null",
    "total", "\"total\" must be an integer of 1..999999999999, or null",
    NULL
};


/* c: a row of tenant_costs or NULLs (a tenant without one: the defaults) */

#define NGX_NEXUS_BA_COST_JSON                                                \
    "json_build_object('tenant', t.name,"                                     \
    " 'monthly_budget_usd',"                                                  \
    " trim_scale(round(c.monthly_budget_musd / 1000000.0, 6)),"               \
    " 'warn_ratio', trim_scale(coalesce(c.warn_ratio, 0.8)),"                 \
    " 'hard_cap_mode', coalesce(c.hard_cap_mode, 'block'),"                   \
    " 'degrade_model', c.degrade_model,"                                      \
    " 'degrade_model_priced', CASE WHEN c.degrade_model IS NOT NULL"          \
    " THEN EXISTS (SELECT 1 FROM model_prices p"                              \
    " WHERE p.model = c.degrade_model AND p.effective_from <= now()) END,"    \
    " 'allow_unpriced', coalesce(c.allow_unpriced, false),"                   \
    " 'credits', coalesce(c.credits, false),"                                 \
    " 'updated_at', c.updated_at)"

#define NGX_NEXUS_BA_KEY_JSON                                                 \
    "json_build_object('key_id', k.id, 'tenant', t.name,"                     \
    " 'prefix', k.prefix, 'daily', k.token_budget -> 'daily',"                \
    " 'monthly', k.token_budget -> 'monthly',"                                \
    " 'total', k.token_budget -> 'total')"

#define NGX_NEXUS_BA_USD(col)                                                 \
    "trim_scale(round(" col " / 1000000000.0, 9))"


static const ngx_nexus_pg_sql_t
    ngx_nexus_budget_admin_sql[NGX_NEXUS_BA_NOPS] =
{
    /* $1 tenant, $2 the caller's scope (0: any tenant) */
    { "nexus_admin_cost_get",
      "SELECT " NGX_NEXUS_BA_COST_JSON "::text, t.id FROM tenants t"
      " LEFT JOIN tenant_costs c ON c.tenant_id = t.id"
      " WHERE t.name = $1 AND ($2::bigint = 0 OR t.id = $2::bigint)",
      2 },

    /* nexusctl set-cost-budget's upsert; $7 the caller's scope */
    { "nexus_admin_cost_set",
      "WITH up AS (" NX_COST_BUDGET_UPSERT ")"
      " SELECT " NGX_NEXUS_BA_COST_JSON "::text, t.id FROM up c"
      " JOIN tenants t ON t.id = c.tenant_id",
      7 },

    /* $1 key id, $2 the caller's scope */
    { "nexus_admin_key_budget_get",
      "SELECT " NGX_NEXUS_BA_KEY_JSON "::text, k.tenant_id FROM api_keys k"
      " JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1::bigint"
      " AND ($2::bigint = 0 OR k.tenant_id = $2::bigint)",
      2 },

    /* $3 the periods removed, $4 those set (nx_token_budget_text()) */
    { "nexus_admin_key_budget_set",
      "UPDATE api_keys AS k"
      " SET token_budget = (k.token_budget - $3::text[]) || $4::jsonb"
      " FROM tenants t WHERE t.id = k.tenant_id AND k.id = $1::bigint"
      " AND ($2::bigint = 0 OR k.tenant_id = $2::bigint)"
      " RETURNING " NGX_NEXUS_BA_KEY_JSON "::text, k.tenant_id",
      4 },

    /* $1 a model or '' for all, $2 past versions too; nexusctl's order */
    { "nexus_admin_prices",
      "SELECT coalesce(json_agg(json_build_object('model', v.model,"
      " 'input_usd_per_1k', " NGX_NEXUS_BA_USD("v.input_nusd_per_1k") ","
      " 'output_usd_per_1k', " NGX_NEXUS_BA_USD("v.output_nusd_per_1k") ","
      " 'effective_from', v.effective_from, 'status', v.status,"
      " 'created_at', v.created_at, 'created_by', v.created_by)"
      " ORDER BY v.model COLLATE \"C\", v.effective_from), '[]')::text"
      " FROM (SELECT v.* FROM (SELECT p.*, " NX_PRICE_STATUS " AS status"
      " FROM model_prices p WHERE $1 = '' OR p.model = $1) v"
      " WHERE $2::boolean OR v.status <> 'past'"
      " ORDER BY v.model COLLATE \"C\", v.effective_from"
      " LIMIT " NGX_NEXUS_BA_PRICES_MAX ") v",
      2 },

    /* nexusctl's statement for set-price and import-prices */
    { "nexus_admin_prices_add",
      NX_PRICES_INSERT
      " SELECT json_build_object('effective_from', f.at,"
      " 'added', (SELECT count(*) FROM ins),"
      " 'prices', (SELECT json_agg(json_build_object('model', x.model,"
      " 'input_usd_per_1k', " NGX_NEXUS_BA_USD("x.input") ","
      " 'output_usd_per_1k', " NGX_NEXUS_BA_USD("x.output") ","
      " 'added', EXISTS (SELECT 1 FROM ins WHERE ins.model = x.model))"
      " ORDER BY x.model COLLATE \"C\") FROM x))::text,"
      " (SELECT model FROM clash), (SELECT count(*) FROM ins) FROM f",
      3 },
};


ngx_int_t
ngx_nexus_budget_admin_init(ngx_conf_t *cf)
{
    return ngx_nexus_pg_statements(cf, ngx_nexus_budget_admin_sql,
                                   NGX_NEXUS_BA_NOPS,
                                   ngx_nexus_budget_admin_stmts);
}


/* rest: "costs/..." after /v1/admin/ */

ngx_int_t
ngx_nexus_budget_admin_costs(ngx_http_request_t *r, ngx_str_t *rest)
{
    if (rest->len == sizeof("costs/budget") - 1
        && ngx_strncmp(rest->data, "costs/budget", rest->len) == 0)
    {
        return ngx_nexus_budget_admin_cost(r);
    }

    if (rest->len == sizeof("costs/pricing/catalog") - 1
        && ngx_strncmp(rest->data, "costs/pricing/catalog", rest->len) == 0)
    {
        return ngx_nexus_budget_admin_prices(r);
    }

    return ngx_nexus_not_found(r);
}


/* api-keys/{id}/budget: id is 1-18 digits */

ngx_int_t
ngx_nexus_budget_admin_key(ngx_http_request_t *r, ngx_str_t *id)
{
    return ngx_nexus_budget_admin_budget(r, NGX_NEXUS_BA_KEY_SET, id);
}


/*
 * A budget, of a tenant (costs/budget) or of a key: GET reads it, PUT and
 * PATCH change it (the body's reader says how), DELETE removes it: the
 * periods of a token budget, the monthly budget of a tenant's cost
 * settings (nexusctl set-cost-budget --no-budget: the others stay).  op
 * is the write's; the read's is the one before.
 */

static ngx_int_t
ngx_nexus_budget_admin_budget(ngx_http_request_t *r, ngx_uint_t op,
    ngx_str_t *target)
{
    nx_cost_budget_t               cb;
    nx_token_budget_t              tb;
    ngx_nexus_pg_query_t          *q;
    ngx_nexus_budget_admin_ctx_t  *bctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PUT
                       |NGX_HTTP_PATCH|NGX_HTTP_DELETE)))
    {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD, PUT, PATCH, "
                                               "DELETE");
    }

    bctx = ngx_nexus_budget_admin_ctx(r, op, target);
    if (bctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method & (NGX_HTTP_PUT|NGX_HTTP_PATCH)) {
        return ngx_nexus_read_json(r, (op == NGX_NEXUS_BA_COST_SET)
                                      ? ngx_nexus_budget_admin_cost_set
                                      : ngx_nexus_budget_admin_key_set);
    }

    if (r->method == NGX_HTTP_DELETE) {
        /* a body, if any, is not needed */
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        bctx->deleting = 1;

        if (op == NGX_NEXUS_BA_COST_SET) {
            ngx_memzero(&cb, sizeof(nx_cost_budget_t));
            cb.set = NX_COST_MONTHLY;

            return ngx_nexus_budget_admin_cost_write(r, &cb, 1);
        }

        ngx_memzero(&tb, sizeof(nx_token_budget_t));
        tb.drop = NX_BUDGET_ALL;

        return ngx_nexus_budget_admin_key_write(r, &tb, 1);
    }

    bctx->op = op - 1;

    q = ngx_nexus_budget_admin_query(r, target->len + NGX_INT64_LEN + 2);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, target->data, target->len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    return ngx_nexus_pg_ask(r, q, 1);
}


/* this file's state of the request, in place of any earlier handler's */

static ngx_nexus_budget_admin_ctx_t *
ngx_nexus_budget_admin_ctx(ngx_http_request_t *r, ngx_uint_t op,
    ngx_str_t *target)
{
    ngx_nexus_budget_admin_ctx_t  *bctx;

    bctx = ngx_nexus_handler_ctx(r, sizeof(ngx_nexus_budget_admin_ctx_t));
    if (bctx == NULL) {
        return NULL;
    }

    bctx->op = op;
    bctx->target = *target;

    return bctx;
}


/* a query of the request's op, answered by ngx_nexus_budget_admin_done() */

static ngx_nexus_pg_query_t *
ngx_nexus_budget_admin_query(ngx_http_request_t *r, size_t size)
{
    ngx_nexus_ctx_t               *ctx;
    ngx_nexus_pg_query_t          *q;
    ngx_nexus_budget_admin_ctx_t  *bctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    bctx = ctx->handler_ctx;

    q = ngx_nexus_pg_query(ngx_nexus_budget_admin_stmts[bctx->op], size);
    if (q == NULL) {
        return NULL;
    }

    q->handler = ngx_nexus_budget_admin_done;
    q->data = r;

    return q;
}


/* costs/budget: the tenant of ?tenant=, by default the caller's own */

static ngx_int_t
ngx_nexus_budget_admin_cost(ngx_http_request_t *r)
{
    ngx_str_t         tenant;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ngx_http_arg(r, (u_char *) "tenant", 6, &tenant) != NGX_OK) {
        tenant = ctx->principal.tenant;

    } else if (nx_tenant_name_valid((char *) tenant.data, tenant.len) != 0) {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR",
                                    "\"tenant\" is not a valid tenant name",
                                    "{\"param\":\"tenant\"}");
    }

    return ngx_nexus_budget_admin_budget(r, NGX_NEXUS_BA_COST_SET, &tenant);
}


static void
ngx_nexus_budget_admin_cost_set(ngx_http_request_t *r, yajl_val v)
{
    ngx_int_t          rc;
    const char        *field;
    ngx_nexus_ctx_t   *ctx;
    nx_cost_budget_t   b;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (nx_cost_budget_json(v, &b, &field) != 0) {
        ngx_http_finalize_request(r,
            ngx_nexus_budget_admin_invalid(r,
                ngx_nexus_budget_admin_rule(field,
                    ngx_nexus_budget_admin_cost_rules,
                    "a JSON object with monthly_budget_usd, warn_ratio, "
                    "hard_cap_mode, degrade_model or allow_unpriced is "
                    "required"),
                field, NULL));
        return;
    }

    /* free use of unpriced models is the platform's to give */
    if ((b.set & NX_COST_UNPRICED) && b.allow_unpriced
        && !ctx->principal.platform)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_budget_admin_platform(r,
                "only a platform admin can allow unpriced models",
                "{\"required\":\"platform_admin\","
                "\"field\":\"allow_unpriced\"}"));
        return;
    }

    rc = ngx_nexus_budget_admin_cost_write(r, &b, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* content: called from the content handler, not from a body handler */

static ngx_int_t
ngx_nexus_budget_admin_cost_write(ngx_http_request_t *r, nx_cost_budget_t *b,
    ngx_uint_t content)
{
    ngx_uint_t                     i;
    ngx_nexus_ctx_t               *ctx;
    ngx_nexus_pg_query_t          *q;
    nx_cost_budget_params_t        p;
    ngx_nexus_budget_admin_ctx_t  *bctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    bctx = ctx->handler_ctx;

    nx_cost_budget_params(b, &p);

    q = ngx_nexus_budget_admin_query(r, bctx->target.len
                                        + NX_BUDGET_MODEL_MAX + 96);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, bctx->target.data, bctx->target.len);

    for (i = 0; i < 5; i++) {
        if (p.values[i] == NULL) {
            (void) ngx_nexus_pg_param_null(q);

        } else {
            (void) ngx_nexus_pg_param(q, (u_char *) p.values[i],
                                      ngx_strlen(p.values[i]));
        }
    }

    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    return ngx_nexus_pg_ask(r, q, content);
}


/* PUT replaces the key's budget, PATCH merges into it */

static void
ngx_nexus_budget_admin_key_set(ngx_http_request_t *r, yajl_val v)
{
    ngx_int_t           rc;
    const char         *field;
    nx_token_budget_t   b;

    if (nx_token_budget_json(v, r->method == NGX_HTTP_PUT, &b, &field) != 0)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_budget_admin_invalid(r,
                ngx_nexus_budget_admin_rule(field,
                    ngx_nexus_budget_admin_token_rules,
                    "a JSON object with daily, monthly or total is "
                    "required"),
                field, NULL));
        return;
    }

    rc = ngx_nexus_budget_admin_key_write(r, &b, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_budget_admin_key_write(ngx_http_request_t *r, nx_token_budget_t *b,
    ngx_uint_t content)
{
    ngx_nexus_ctx_t               *ctx;
    ngx_nexus_pg_query_t          *q;
    ngx_nexus_budget_admin_ctx_t  *bctx;
    char                           json[NX_BUDGET_JSON_LEN];
    char                           drop[NX_BUDGET_DROP_LEN];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    bctx = ctx->handler_ctx;

    nx_token_budget_text(b, json, drop);

    q = ngx_nexus_budget_admin_query(r, bctx->target.len + NGX_INT64_LEN
                                        + sizeof(json) + sizeof(drop) + 4);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, bctx->target.data, bctx->target.len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));
    (void) ngx_nexus_pg_param(q, (u_char *) drop, ngx_strlen(drop));
    (void) ngx_nexus_pg_param(q, (u_char *) json, ngx_strlen(json));

    return ngx_nexus_pg_ask(r, q, content);
}


/*
 * costs/pricing/catalog.  GET: the current and scheduled versions, by
 * model then time, ?all=true past ones too, ?model=M one model's.  POST:
 * a list of prices effective from one time, platform admins only.
 */

static ngx_int_t
ngx_nexus_budget_admin_prices(ngx_http_request_t *r)
{
    ngx_str_t                      model, all, target;
    ngx_nexus_ctx_t               *ctx;
    ngx_nexus_pg_query_t          *q;
    ngx_nexus_budget_admin_ctx_t  *bctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD, POST");
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ngx_str_set(&target, "pricing");

    if (r->method == NGX_HTTP_POST) {
        if (!ctx->principal.platform) {
            return ngx_nexus_budget_admin_platform(r,
                       "only a platform admin can change the pricing "
                       "catalog", "{\"required\":\"platform_admin\"}");
        }

        if (ngx_nexus_budget_admin_ctx(r, NGX_NEXUS_BA_PRICES_ADD, &target)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_nexus_read_json(r, ngx_nexus_budget_admin_prices_add);
    }

    ngx_str_null(&model);

    if (ngx_http_arg(r, (u_char *) "model", 5, &model) == NGX_OK
        && nx_budget_model_valid((char *) model.data, model.len) != 0)
    {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR",
                                    "\"model\" must be 1-128 characters "
                                    "without spaces or commas",
                                    "{\"param\":\"model\"}");
    }

    ngx_str_set(&all, "false");

    if (ngx_http_arg(r, (u_char *) "all", 3, &all) == NGX_OK
        && !(all.len == 4 && ngx_strncmp(all.data, "true", 4) == 0)
        && !(all.len == 5 && ngx_strncmp(all.data, "false", 5) == 0))
    {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR",
                                    "\"all\" must be true or false",
                                    "{\"param\":\"all\"}");
    }

    bctx = ngx_nexus_budget_admin_ctx(r, NGX_NEXUS_BA_PRICES, &target);
    if (bctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = ngx_nexus_budget_admin_query(r, model.len + all.len + 2);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, model.data, model.len);
    (void) ngx_nexus_pg_param(q, all.data, all.len);

    return ngx_nexus_pg_ask(r, q, 1);
}


/*
 * POST {"effective_from": "2027-01-01T00:00:00Z", "allow_past": false,
 *       "prices": {"gpt-4o": {"input": "0.0025", "output": "0.01"}}}
 * as nexusctl import-prices reads a price list: other members are
 * ignored; without effective_from, now.
 */

static void
ngx_nexus_budget_admin_prices_add(ngx_http_request_t *r, yajl_val v)
{
    int                     past;
    char                   *json;
    u_char                  us[NGX_INT64_LEN];
    u_char                  by[NX_KEY_PREFIX_LEN + 8];
    size_t                  len, bad, n;
    int64_t                 from;
    ngx_int_t               rc;
    yajl_val                f, prices;
    ngx_time_t             *tp;
    const char             *s, *model, *message;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    past = 0;
    f = nx_json_get(v, "allow_past");

    if (f != NULL && nx_json_bool(f, &past) != 0) {
        ngx_http_finalize_request(r,
            ngx_nexus_budget_admin_invalid(r, "\"allow_past\" must be a "
                                              "boolean", "allow_past",
                                           NULL));
        return;
    }

    n = 0;
    f = nx_json_get(v, "effective_from");

    if (f != NULL) {
        if (nx_json_string(f, &s) != 0
            || nx_price_time(s, ngx_strlen(s), &from) != 0)
        {
            ngx_http_finalize_request(r,
                ngx_nexus_budget_admin_invalid(r,
                    "\"effective_from\" must be an RFC 3339 time such as "
                    "\"2027-01-01T00:00:00Z\"", "effective_from", NULL));
            return;
        }

        tp = ngx_timeofday();

        if (nx_price_time_allowed(from, (int64_t) tp->sec * 1000000
                                        + (int64_t) tp->msec * 1000, past)
            != 0)
        {
            ngx_http_finalize_request(r,
                ngx_nexus_budget_admin_invalid(r,
                    "\"effective_from\" is in the past: a back-dated "
                    "version changes what was the current price; send "
                    "\"allow_past\": true to write it anyway",
                    "effective_from", NULL));
            return;
        }

        n = ngx_sprintf(us, "%L", from) - us;
    }

    prices = nx_json_get(v, "prices");

    switch (nx_prices_json(prices, &json, &len, &bad)) {

    case NX_PRICES_OK:
        break;

    case NX_PRICES_NOMEM:
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;

    case NX_PRICES_EMPTY:
        ngx_http_finalize_request(r,
            ngx_nexus_budget_admin_invalid(r,
                "\"prices\" must be an object of models, each "
                "{\"input\": USD, \"output\": USD} per 1K tokens",
                "prices", NULL));
        return;

    default:
        model = prices->u.object.keys[bad];
        message = "a model must be 1-128 characters without spaces or "
                  "commas, listed once, and its \"input\" and \"output\" "
                  "dollars per 1K tokens, from 0 to 10, with at most 9 "
                  "decimals";

        ngx_http_finalize_request(r,
            ngx_nexus_budget_admin_invalid(r, message, "prices", model));
        return;
    }

    q = ngx_nexus_budget_admin_query(r, len + n + ctx->principal.prefix.len
                                        + 8);
    if (q == NULL) {
        ngx_free(json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, (u_char *) json, len);
    ngx_free(json);

    if (n) {
        (void) ngx_nexus_pg_param(q, us, n);

    } else {
        (void) ngx_nexus_pg_param_null(q);
    }

    /* who wrote a version, as the credit ledger names an admin */
    (void) ngx_nexus_pg_param(q, by, ngx_sprintf(by, "key:%V",
                                                 &ctx->principal.prefix)
                                     - by);

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* what a member must be, of rules (NULL-terminated); none: no member */

static const char *
ngx_nexus_budget_admin_rule(const char *field, const char *const *rules,
    const char *none)
{
    if (field == NULL) {
        return none;
    }

    for ( /* void */ ; rules[0] != NULL; rules += 2) {
        if (ngx_strcmp(field, rules[0]) == 0) {
            return rules[1];
        }
    }

    return "an unknown member: nothing was written";
}


/*
 * 400 VALIDATION_ERROR with the member at fault; for a price list, the
 * model too.  Both come from the client: escaped.
 */

static ngx_int_t
ngx_nexus_budget_admin_invalid(ngx_http_request_t *r, const char *message,
    const char *field, const char *model)
{
    u_char     *details, *p;
    ngx_str_t   src, f, m;

    ngx_str_null(&f);
    ngx_str_null(&m);

    if (field != NULL) {
        src.data = (u_char *) field;
        src.len = ngx_strlen(field);

        if (ngx_nexus_json_escape(r->pool, &src, &f) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (model != NULL) {
        src.data = (u_char *) model;
        src.len = ngx_strlen(model);

        if (ngx_nexus_json_escape(r->pool, &src, &m) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    details = ngx_pnalloc(r->pool, sizeof("{\"field\":\"\",\"model\":\"\"}")
                                   + f.len + m.len);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(details, "{", 1);

    if (field != NULL) {
        p = ngx_sprintf(p, "\"field\":\"%V\"", &f);
    }

    if (model != NULL) {
        p = ngx_sprintf(p, ",\"model\":\"%V\"", &m);
    }

    *p++ = '}';
    *p = '\0';

    ngx_nexus_budget_admin_audit(r, NULL, "VALIDATION_ERROR");

    return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                message, (char *) details);
}


/* 403 FORBIDDEN for a tenant admin */

static ngx_int_t
ngx_nexus_budget_admin_platform(ngx_http_request_t *r, const char *message,
    const char *details)
{
    ngx_nexus_audit_forbidden(r, "FORBIDDEN", details);

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN", message,
                                details);
}


static void
ngx_nexus_budget_admin_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    u_char                        *buf;
    ngx_str_t                      src, model;
    ngx_uint_t                     status;
    const char                    *code;
    ngx_http_request_t            *r;
    ngx_nexus_ctx_t               *ctx;
    ngx_nexus_budget_admin_ctx_t  *bctx;

    r = q->data;
    ctx = ngx_nexus_pg_answered(r);
    bctx = ctx->handler_ctx;

    /* what the audit log says went wrong, if anything */
    code = (rc == NGX_DECLINED) ? "DEPENDENCY_UNAVAILABLE" : "INTERNAL_ERROR";

    if (rc == NGX_ERROR && bctx->op == NGX_NEXUS_BA_COST_SET
        && ngx_strcmp(ngx_nexus_pg_sqlstate(res), "23514") == 0)
    {
        /* the values were checked: the mode wants a degrade model */
        code = "VALIDATION_ERROR";
        rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                  "VALIDATION_ERROR",
                                  "hard_cap_mode \"degrade\" needs a "
                                  "degrade_model",
                                  "{\"field\":\"degrade_model\"}");
        goto done;
    }

    if (rc != NGX_OK) {
        rc = ngx_nexus_pg_failed(r, res, rc, "budget admin");
        goto done;
    }

    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        /* a tenant admin asking for another tenant learns nothing more */

        if (bctx->op == NGX_NEXUS_BA_KEY_GET
            || bctx->op == NGX_NEXUS_BA_KEY_SET)
        {
            code = "KEY_NOT_FOUND";
            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "KEY_NOT_FOUND",
                                      "no such API key", NULL);

        } else {
            code = "TENANT_NOT_FOUND";
            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "TENANT_NOT_FOUND", "no such tenant",
                                      NULL);
        }

        goto done;
    }

    status = NGX_HTTP_OK;

    if (bctx->op == NGX_NEXUS_BA_PRICES_ADD) {

        if (!PQgetisnull(res, 0, 1)) {
            /* that version exists with other prices: nothing written */
            src.data = (u_char *) PQgetvalue(res, 0, 1);
            src.len = PQgetlength(res, 0, 1);

            if (ngx_nexus_json_escape(r->pool, &src, &model) != NGX_OK) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto done;
            }

            buf = ngx_pnalloc(r->pool, model.len + sizeof("{\"model\":\"\"}"));
            if (buf == NULL) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto done;
            }

            *ngx_sprintf(buf, "{\"model\":\"%V\"}", &model) = '\0';

            code = "PRICE_VERSION_EXISTS";
            rc = ngx_nexus_send_error(r, NGX_HTTP_CONFLICT,
                                      "PRICE_VERSION_EXISTS",
                                      "a model has a version effective at "
                                      "that time with other prices: "
                                      "nothing was written",
                                      (char *) buf);
            goto done;
        }

        /* something added: created */
        if (PQgetlength(res, 0, 2) != 1 || PQgetvalue(res, 0, 2)[0] != '0') {
            status = NGX_HTTP_CREATED;
        }
    }

    rc = ngx_nexus_pg_reply(r, status, res);
    code = NULL;

done:

    ngx_nexus_budget_admin_audit(r, res, code);
    ngx_http_finalize_request(r, rc);
}


/*
 * The audit event of a write: on success the document written, in the
 * chain of the tenant it concerns (the admin's own for the catalog); on
 * failure the error code and the target, in the admin's chain.  With the
 * request's body, which the audit log redacts.
 */

static void
ngx_nexus_budget_admin_audit(ngx_http_request_t *r, PGresult *res,
    const char *code)
{
    u_char                        *members, *p;
    size_t                         len;
    int64_t                        tenant_id;
    ngx_str_t                      body;
    const char                    *type;
    ngx_nexus_ctx_t               *ctx;
    ngx_nexus_budget_admin_ctx_t  *bctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    bctx = ctx->handler_ctx;

    type = ngx_nexus_budget_admin_events[bctx->op][bctx->deleting];

    if (type == NULL) {
        return;
    }

    tenant_id = ctx->principal.tenant_id;

    if (ngx_nexus_body_collect(r, &body, NGX_NEXUS_BA_AUDIT_MAX) != NGX_OK) {
        ngx_str_set(&body, "\"[TOO_LARGE]\"");
    }

    len = 0;

    if (code == NULL) {
        if (bctx->op != NGX_NEXUS_BA_PRICES_ADD) {
            tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                  PQgetlength(res, 0, 1));
        }

        len = PQgetlength(res, 0, 0);
    }

    members = ngx_pnalloc(r->pool,
                          sizeof("\"code\":\"\",\"target\":\"\","
                                 "\"result\":\"[TOO_LARGE]\",\"request\":")
                          + (code ? ngx_strlen(code) : 0) + bctx->target.len
                          + ngx_min(len, NGX_NEXUS_BA_AUDIT_MAX) + body.len);
    if (members == NULL) {
        return;
    }

    if (code == NULL) {
        p = (len <= NGX_NEXUS_BA_AUDIT_MAX)
            ? ngx_sprintf(members, "\"result\":%*s", len,
                          PQgetvalue(res, 0, 0))
            : ngx_sprintf(members, "\"result\":\"[TOO_LARGE]\"");

    } else {
        /* targets are validated tenant names and key ids */
        p = ngx_sprintf(members, "\"code\":\"%s\",\"target\":\"%V\"", code,
                        &bctx->target);
    }

    if (body.len) {
        p = ngx_sprintf(p, ",\"request\":%V", &body);
    }

    *p = '\0';

    ngx_nexus_audit_request(r, tenant_id, type,
                            code ? NGX_NEXUS_AUDIT_FAILURE
                                 : NGX_NEXUS_AUDIT_SUCCESS,
                            (char *) members);
}
