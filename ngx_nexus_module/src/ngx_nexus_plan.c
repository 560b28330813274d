
/*
 * Copyright (C) Nexus authors
 *
 * Plans and entitlements.
 *
 * A location names its feature (nexus_feature tts;); an authenticated
 * request there needs that feature among its tenant's effective features,
 * else 403 FEATURE_NOT_ENABLED.  The set arrives with the key lookup and
 * is cached with the key (nexus_features_text() of 0011_plans.sql), so
 * the check is a scan of a short list: no query, no lock.  A change of a
 * tenant's plan or overrides, or of the catalog, evicts the cached keys it
 * affects on every node (ngx_nexus_revoke.c).
 *
 *   GET               /v1/admin/plans                      the catalog
 *   GET               /v1/admin/plans/{tenant}             a tenant's plan
 *   PUT|PATCH         /v1/admin/plans/{tenant}             platform admins
 *   GET               /v1/admin/plans/{tenant}/overrides
 *   PUT|PATCH|DELETE  /v1/admin/plans/{tenant}/overrides   platform admins
 *   GET               /v1/self-serve/plan                  any key
 *
 * The access phase required an admin key for /v1/admin/.  A tenant's
 * admin reads its own tenant only; only a platform admin changes a plan
 * or an override (a tenant must not upgrade itself).  PostgreSQL renders
 * the JSON documents.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"
#include "ngx_nexus_audit.h"

#include <nx_json.h>
#include <nx_name.h>
#include <nx_plan.h>


#define NGX_NEXUS_PLAN_CATALOG          0
#define NGX_NEXUS_PLAN_GET              1
#define NGX_NEXUS_PLAN_ASSIGN           2
#define NGX_NEXUS_PLAN_OVERRIDES        3
#define NGX_NEXUS_PLAN_OVERRIDE_SET     4
#define NGX_NEXUS_PLAN_OVERRIDE_DELETE  5
#define NGX_NEXUS_PLAN_SELF             6
#define NGX_NEXUS_PLAN_NOPS             7

/* the request body in an audit event, at most */
#define NGX_NEXUS_PLAN_AUDIT_BODY       4096


typedef struct {
    ngx_uint_t                  op;
    ngx_str_t                   tenant;
    ngx_str_t                   feature;    /* DELETE ?feature_key= */
} ngx_nexus_plan_ctx_t;


static ngx_int_t ngx_nexus_plan_ctx(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_plan_tenant(ngx_http_request_t *r,
    ngx_str_t *tenant, ngx_uint_t overrides);
static ngx_int_t ngx_nexus_plan_platform_only(ngx_http_request_t *r);
static ngx_nexus_pg_query_t *ngx_nexus_plan_query(ngx_http_request_t *r,
    ngx_uint_t op, ngx_str_t *tenant, size_t size);
static void ngx_nexus_plan_assign(ngx_http_request_t *r, yajl_val v);
static void ngx_nexus_plan_override_set(ngx_http_request_t *r, yajl_val v);
static ngx_int_t ngx_nexus_plan_override_delete(ngx_http_request_t *r,
    ngx_str_t *tenant);
static void ngx_nexus_plan_invalid(ngx_http_request_t *r,
    const char *message);
static void ngx_nexus_plan_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_plan_audit(ngx_http_request_t *r, PGresult *res,
    const char *code);


static ngx_uint_t  ngx_nexus_plan_stmts[NGX_NEXUS_PLAN_NOPS];


/*
 * $1 tenant name, $2 scope (0: any tenant): no row for another tenant.
 * The writes return the tenant's id second, for the audit event's chain.
 */

#define NGX_NEXUS_PLAN_TENANT                                                 \
    " FROM tenants t WHERE t.name = $1"                                       \
    " AND ($2::bigint = 0 OR t.id = $2::bigint)"


static const ngx_nexus_pg_sql_t  ngx_nexus_plan_sql[NGX_NEXUS_PLAN_NOPS] = {

    { "nexus_plan_catalog",
      "SELECT nexus_plans_json()::text",
      0 },

    { "nexus_plan_get",
      "SELECT nexus_plan_json(t.id)::text" NGX_NEXUS_PLAN_TENANT,
      2 },

    /* $3 the plan, "" for the default plan; $4 who */
    { "nexus_plan_assign",
      "SELECT j::text, (SELECT id FROM tenants WHERE name = $1)"
      " FROM nexus_plan_assign($1, $2::bigint, nullif($3, ''), $4) j",
      4 },

    { "nexus_plan_overrides",
      "SELECT (nexus_plan_json(t.id) -> 'overrides')::text"
      NGX_NEXUS_PLAN_TENANT,
      2 },

    /*
     * $3 the feature key, $4 enabled, $5 the request body: its config_json
     * (an object, checked here) is taken from it as it was sent; without
     * one an override keeps its config; $6 who
     */
    { "nexus_plan_override_set",
      "SELECT j::text, (SELECT id FROM tenants WHERE name = $1)"
      " FROM nexus_plan_override($1, $2::bigint, $3, $4::boolean,"
      " $5::jsonb -> 'config_json', $6) j",
      6 },

    /* $3 the feature key, "" for every override of the tenant */
    { "nexus_plan_override_delete",
      "SELECT j::text, (SELECT id FROM tenants WHERE name = $1)"
      " FROM nexus_plan_override_delete($1, $2::bigint, nullif($3, '')) j",
      3 },

    /* who set an override (a platform key's prefix) is not for everyone */
    { "nexus_plan_self",
      "SELECT (nexus_plan_json($1::bigint)::jsonb - 'overrides')::text",
      1 },
};


ngx_int_t
ngx_nexus_plan_init_statements(ngx_conf_t *cf)
{
    if (ngx_nexus_pg_statements(cf, ngx_nexus_plan_sql, NGX_NEXUS_PLAN_NOPS,
                                ngx_nexus_plan_stmts)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NGX_DECLINED when the request may go on: the location names no feature,
 * its entitlement check is off, or the tenant has the feature.  Otherwise
 * the rc of the 403 sent.
 */

ngx_int_t
ngx_nexus_plan_check(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    u_char                *details;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (nlcf->feature.len == 0 || nlcf->entitlement != 1) {
        return NGX_DECLINED;
    }

    if (nx_feature_in((char *) ctx->principal.features.data,
                      ctx->principal.features.len,
                      (char *) nlcf->feature.data, nlcf->feature.len))
    {
        return NGX_DECLINED;
    }

    details = ngx_pnalloc(r->pool, sizeof("{\"feature_key\":\"feature.\"}")
                                   + nlcf->feature.len);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* feature names are [a-z0-9_.]: nothing to escape */
    ngx_sprintf(details, "{\"feature_key\":\"feature.%V\"}%Z",
                &nlcf->feature);

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FEATURE_NOT_ENABLED",
                                "Feature not enabled for tenant plan",
                                (char *) details);
}


/* rest: what follows /v1/admin/, starting with "plans" */

ngx_int_t
ngx_nexus_plan_admin(ngx_http_request_t *r, ngx_str_t *rest)
{
    u_char                *p, *last;
    ngx_str_t              tenant;
    ngx_nexus_pg_query_t  *q;

    if (ngx_nexus_plan_ctx(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rest->len == 5) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        q = ngx_nexus_plan_query(r, NGX_NEXUS_PLAN_CATALOG, NULL, 0);
        if (q == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_nexus_pg_ask(r, q, 1);
    }

    if (rest->data[5] != '/') {
        return ngx_nexus_not_found(r);
    }

    /* plans/{tenant} or plans/{tenant}/overrides */

    tenant.data = rest->data + 6;
    last = rest->data + rest->len;

    p = ngx_strlchr(tenant.data, last, '/');
    tenant.len = (p ? p : last) - tenant.data;

    if (nx_tenant_name_valid((char *) tenant.data, tenant.len) != 0) {
        return ngx_nexus_not_found(r);
    }

    if (p == NULL) {
        return ngx_nexus_plan_tenant(r, &tenant, 0);
    }

    if ((size_t) (last - p) == sizeof("/overrides") - 1
        && ngx_strncmp(p, "/overrides", sizeof("/overrides") - 1) == 0)
    {
        return ngx_nexus_plan_tenant(r, &tenant, 1);
    }

    return ngx_nexus_not_found(r);
}


static ngx_int_t
ngx_nexus_plan_tenant(ngx_http_request_t *r, ngx_str_t *tenant,
    ngx_uint_t overrides)
{
    ngx_int_t              rc;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;
    ngx_nexus_plan_ctx_t  *pctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pctx = ctx->handler_ctx;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        q = ngx_nexus_plan_query(r, overrides ? NGX_NEXUS_PLAN_OVERRIDES
                                              : NGX_NEXUS_PLAN_GET,
                                 tenant, 0);
        if (q == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_nexus_pg_ask(r, q, 1);
    }

    if (!(r->method & (NGX_HTTP_PUT|NGX_HTTP_PATCH))
        && !(overrides && r->method == NGX_HTTP_DELETE))
    {
        return ngx_nexus_method_not_allowed(r, overrides
                                               ? "GET, HEAD, PUT, PATCH, "
                                                 "DELETE"
                                               : "GET, HEAD, PUT, PATCH");
    }

    rc = ngx_nexus_plan_platform_only(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (r->method == NGX_HTTP_DELETE) {
        return ngx_nexus_plan_override_delete(r, tenant);
    }

    pctx->op = overrides ? NGX_NEXUS_PLAN_OVERRIDE_SET
                         : NGX_NEXUS_PLAN_ASSIGN;
    pctx->tenant = *tenant;

    return ngx_nexus_read_json(r, overrides ? ngx_nexus_plan_override_set
                                            : ngx_nexus_plan_assign);
}


/* this file's state of the request, in place of any earlier handler's */

static ngx_int_t
ngx_nexus_plan_ctx(ngx_http_request_t *r)
{
    return ngx_nexus_handler_ctx(r, sizeof(ngx_nexus_plan_ctx_t)) != NULL
           ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_nexus_plan_platform_only(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx->principal.platform) {
        return NGX_DECLINED;
    }

    ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                              "{\"required\":\"platform_admin\"}");

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                "only a platform admin can change a plan",
                                "{\"required\":\"platform_admin\"}");
}


/* GET /v1/self-serve/plan: the caller's own tenant, whatever its role */

ngx_int_t
ngx_nexus_plan_self_serve(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ngx_nexus_plan_ctx(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = ngx_nexus_plan_query(r, NGX_NEXUS_PLAN_SELF, NULL, 0);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param_int(q, ctx->principal.tenant_id);

    return ngx_nexus_pg_ask(r, q, 1);
}


/*
 * A query for op; with a tenant, its first two parameters are the tenant
 * name and the caller's scope (0 for a platform admin).  size: room for
 * the other parameters.
 */

static ngx_nexus_pg_query_t *
ngx_nexus_plan_query(ngx_http_request_t *r, ngx_uint_t op, ngx_str_t *tenant,
    size_t size)
{
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;
    ngx_nexus_plan_ctx_t  *pctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pctx = ctx->handler_ctx;

    pctx->op = op;

    q = ngx_nexus_pg_query(ngx_nexus_plan_stmts[op],
                           size + NGX_INT64_LEN + 2
                           + (tenant ? tenant->len : 0));
    if (q == NULL) {
        return NULL;
    }

    q->handler = ngx_nexus_plan_done;
    q->data = r;

    if (tenant) {
        pctx->tenant = *tenant;

        (void) ngx_nexus_pg_param(q, tenant->data, tenant->len);
        (void) ngx_nexus_pg_param_int(q, ctx->principal.platform
                                           ? 0 : ctx->principal.tenant_id);
    }

    return q;
}


/* PUT|PATCH /v1/admin/plans/{tenant} {"plan_id": "pro" | null} */

static void
ngx_nexus_plan_assign(ngx_http_request_t *r, yajl_val v)
{
    size_t                 len;
    ngx_int_t              rc;
    yajl_val               f;
    const char            *plan;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;
    ngx_nexus_plan_ctx_t  *pctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pctx = ctx->handler_ctx;

    f = (v != NULL) ? nx_json_get(v, "plan_id") : NULL;

    if (f == NULL) {
        ngx_nexus_plan_invalid(r, "\"plan_id\" is required: a plan of the "
                                  "catalog, or null for the default plan");
        return;
    }

    if (YAJL_IS_NULL(f)) {
        plan = "";
        len = 0;

    } else if (nx_json_string(f, &plan) != 0
               || nx_plan_id_valid(plan, ngx_strlen(plan)) != 0)
    {
        ngx_nexus_plan_invalid(r, "\"plan_id\" must be a plan id (1-32 of "
                                  "[a-z0-9_-]) or null");
        return;

    } else {
        len = ngx_strlen(plan);
    }

    q = ngx_nexus_plan_query(r, NGX_NEXUS_PLAN_ASSIGN, &pctx->tenant,
                             len + ctx->principal.prefix.len + 2);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, (u_char *) plan, len);
    (void) ngx_nexus_pg_param(q, ctx->principal.prefix.data,
                              ctx->principal.prefix.len);

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * PUT|PATCH /v1/admin/plans/{tenant}/overrides
 * {"feature_key": "feature.tts", "enabled": true, "config_json": {...}}
 */

static void
ngx_nexus_plan_override_set(ngx_http_request_t *r, yajl_val v)
{
    int                    enabled;
    ngx_int_t              rc;
    ngx_str_t              body;
    yajl_val               f;
    const char            *key;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;
    ngx_nexus_plan_ctx_t  *pctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pctx = ctx->handler_ctx;

    if (v == NULL
        || nx_json_string(nx_json_get(v, "feature_key"), &key) != 0
        || nx_feature_key_valid(key, ngx_strlen(key), NULL) != 0)
    {
        ngx_nexus_plan_invalid(r, "\"feature_key\" must be a feature key "
                                  "such as \"feature.tts\"");
        return;
    }

    if (nx_json_bool(nx_json_get(v, "enabled"), &enabled) != 0) {
        ngx_nexus_plan_invalid(r, "\"enabled\" must be true or false");
        return;
    }

    f = nx_json_get(v, "config_json");

    if (f != NULL && !YAJL_IS_OBJECT(f)) {
        ngx_nexus_plan_invalid(r, "\"config_json\" must be an object");
        return;
    }

    /* the body as sent, for PostgreSQL to take config_json from */
    if (ngx_nexus_body_collect(r, &body, NGX_NEXUS_BODY_MAX) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    q = ngx_nexus_plan_query(r, NGX_NEXUS_PLAN_OVERRIDE_SET, &pctx->tenant,
                             ngx_strlen(key) + body.len
                             + ctx->principal.prefix.len + 16);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, (u_char *) key, ngx_strlen(key));
    (void) ngx_nexus_pg_param(q, (u_char *) (enabled ? "t" : "f"), 1);
    (void) ngx_nexus_pg_param(q, body.data, body.len);
    (void) ngx_nexus_pg_param(q, ctx->principal.prefix.data,
                              ctx->principal.prefix.len);

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * DELETE /v1/admin/plans/{tenant}/overrides[?feature_key=feature.tts]:
 * one override, or all of them
 */

static ngx_int_t
ngx_nexus_plan_override_delete(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_str_t              key;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;
    ngx_nexus_plan_ctx_t  *pctx;

    ngx_str_null(&key);

    if (ngx_http_arg(r, (u_char *) "feature_key", 11, &key) == NGX_OK
        && nx_feature_key_valid((char *) key.data, key.len, NULL) != 0)
    {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR",
                                    "\"feature_key\" must be a feature key "
                                    "such as \"feature.tts\"",
                                    "{\"param\":\"feature_key\"}");
    }

    q = ngx_nexus_plan_query(r, NGX_NEXUS_PLAN_OVERRIDE_DELETE, tenant,
                             key.len + 1);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pctx = ctx->handler_ctx;
    pctx->feature = key;

    (void) ngx_nexus_pg_param(q, key.data, key.len);

    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_plan_invalid(ngx_http_request_t *r, const char *message)
{
    ngx_http_finalize_request(r,
        ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                             message, NULL));
}


static void
ngx_nexus_plan_done(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    u_char                *buf;
    size_t                 len;
    const char            *state;
    ngx_http_request_t    *r;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_plan_ctx_t  *pctx;

    r = q->data;
    ctx = ngx_nexus_pg_answered(r);
    pctx = ctx->handler_ctx;

    if (rc == NGX_DECLINED) {
        rc = ngx_nexus_pg_unavailable(r);
        goto done;
    }

    if (rc == NGX_ERROR) {
        state = ngx_nexus_pg_sqlstate(res);

        if (ngx_strcmp(state, "23503") == 0) {
            /* the plan or the feature is not in the catalog */
            ngx_nexus_plan_audit(r, NULL, "VALIDATION_ERROR");

            rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR",
                                      pctx->op == NGX_NEXUS_PLAN_ASSIGN
                                      ? "no such plan in the catalog"
                                      : "no such feature in the catalog",
                                      pctx->op == NGX_NEXUS_PLAN_ASSIGN
                                      ? "{\"field\":\"plan_id\"}"
                                      : "{\"field\":\"feature_key\"}");
            goto done;
        }

        if (ngx_strcmp(state, "23514") == 0) {
            rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR",
                                      "the values are out of range", NULL);
            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus plan query failed: %s",
                      PQresultErrorMessage(res));

        rc = ngx_nexus_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "INTERNAL_ERROR",
                                  "the request could not be completed",
                                  NULL);
        goto done;
    }

    if (PQntuples(res) != 1 || PQnfields(res) < 1
        || PQgetisnull(res, 0, 0))
    {
        /* a tenant admin asking for another tenant learns nothing more */
        rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "TENANT_NOT_FOUND",
                                  "no such tenant", NULL);
        ngx_nexus_plan_audit(r, NULL, "TENANT_NOT_FOUND");
        goto done;
    }

    /* the result is freed after this handler: copy it */

    len = PQgetlength(res, 0, 0);

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_memcpy(buf, PQgetvalue(res, 0, 0), len);

    rc = ngx_nexus_send_data(r, NGX_HTTP_OK, buf, len);

    ngx_nexus_plan_audit(r, res, NULL);

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * The audit event of a write, or of the self-serve view: on success in
 * the chain of the tenant concerned, with the request's body (which the
 * audit log redacts); on failure in the admin's own chain, with the code.
 */

static void
ngx_nexus_plan_audit(ngx_http_request_t *r, PGresult *res, const char *code)
{
    u_char                *members, *p;
    int64_t                tenant_id;
    ngx_str_t              body;
    const char            *type;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_plan_ctx_t  *pctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pctx = ctx->handler_ctx;
    tenant_id = ctx->principal.tenant_id;

    switch (pctx->op) {

    case NGX_NEXUS_PLAN_ASSIGN:
        type = "admin.plan.updated";
        break;

    case NGX_NEXUS_PLAN_OVERRIDE_SET:
        type = "admin.plan_override.updated";
        break;

    case NGX_NEXUS_PLAN_OVERRIDE_DELETE:
        type = "admin.plan_override.deleted";
        break;

    case NGX_NEXUS_PLAN_SELF:
        if (code == NULL) {
            ngx_nexus_audit_request(r, tenant_id, "selfserve.plan.viewed",
                                    NGX_NEXUS_AUDIT_SUCCESS, NULL);
        }
        return;

    default:
        return;
    }

    if (code == NULL && res != NULL && PQnfields(res) > 1
        && !PQgetisnull(res, 0, 1))
    {
        tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                              PQgetlength(res, 0, 1));
    }

    /* a JSON object, checked when it was read; a large one is left out */
    if (ngx_nexus_body_collect(r, &body, NGX_NEXUS_PLAN_AUDIT_BODY)
        != NGX_OK)
    {
        ngx_str_set(&body, "\"[TOO_LARGE]\"");
    }

    members = ngx_pnalloc(r->pool,
                          sizeof("\"code\":\"\",\"tenant\":\"\","
                                 "\"feature_key\":\"\",\"request\":")
                          + (code ? ngx_strlen(code) : 0) + pctx->tenant.len
                          + pctx->feature.len + body.len);
    if (members == NULL) {
        return;
    }

    p = members;

    if (code) {
        p = ngx_sprintf(p, "\"code\":\"%s\",", code);
    }

    /* tenant names and feature keys are validated: nothing to escape */
    p = ngx_sprintf(p, "\"tenant\":\"%V\"", &pctx->tenant);

    if (pctx->feature.len) {
        p = ngx_sprintf(p, ",\"feature_key\":\"%V\"", &pctx->feature);
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
