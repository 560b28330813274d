
/*
 * Copyright (C) Nexus authors
 *
 * nexus_admin: tenants and API keys over HTTP.
 *
 *   GET  /v1/admin/tenants
 *   POST /v1/admin/tenants                  platform admins only
 *   GET  /v1/admin/api-keys[?tenant=T]
 *   POST /v1/admin/api-keys
 *   POST /v1/admin/api-keys/{id}/revoke
 *   GET  /v1/admin/usage/{tenant}            (ngx_nexus_usage_admin.c)
 *   GET  /v1/admin/credits/{tenant}          (ngx_nexus_credits.c)
 *   POST /v1/admin/credits/{tenant}/grant    platform admins only
 *   /v1/admin/authz/...                      (ngx_nexus_authz.c)
 *   /v1/admin/plans...                       (ngx_nexus_plan.c)
 *   /v1/admin/costs/...                      (ngx_nexus_budget_admin.c)
 *   /v1/admin/api-keys/{id}/budget           (ngx_nexus_budget_admin.c)
 *
 * The access phase already required the admin role.  A tenant's admin
 * sees and changes its own tenant only; a platform admin (an admin key of
 * a platform tenant) sees every tenant.  PostgreSQL renders the JSON rows
 * (json_build_object), so values are always correctly escaped.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_usage.h"
#include "ngx_nexus_audit.h"
#include "ngx_nexus_credits.h"
#include "ngx_nexus_abac.h"
#include "ngx_nexus_idempotency.h"

#include <nx_json.h>
#include <nx_name.h>
#include <nx_duration.h>
#include <nx_plan.h>


#define NGX_NEXUS_ADMIN_LIST_TENANTS    0
#define NGX_NEXUS_ADMIN_CREATE_TENANT   1
#define NGX_NEXUS_ADMIN_LIST_KEYS       2
#define NGX_NEXUS_ADMIN_CREATE_KEY      3
#define NGX_NEXUS_ADMIN_REVOKE_KEY      4
#define NGX_NEXUS_ADMIN_LIST_KILLS      5
#define NGX_NEXUS_ADMIN_SET_KILLS       6
#define NGX_NEXUS_ADMIN_GET_QUOTA       7
#define NGX_NEXUS_ADMIN_SET_QUOTA       8
#define NGX_NEXUS_ADMIN_NOPS            9

/* a body larger than this is not copied into an audit event */
#define NGX_NEXUS_ADMIN_AUDIT_BODY      4096


typedef struct {
    ngx_uint_t                  op;
    u_char                      key[NX_KEY_LEN];
    ngx_str_t                   tenant;     /* quotas/{tenant} */
    ngx_str_t                   json;       /* the quota, while Redis runs */
    ngx_str_t                   target;     /* for the audit log */
} ngx_nexus_admin_ctx_t;


static void ngx_nexus_admin_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static ngx_int_t ngx_nexus_admin_list_tenants(ngx_http_request_t *r);
static void ngx_nexus_admin_create_tenant(ngx_http_request_t *r,
    yajl_val v);
static ngx_int_t ngx_nexus_admin_list_keys(ngx_http_request_t *r);
static void ngx_nexus_admin_create_key(ngx_http_request_t *r, yajl_val v);
static ngx_int_t ngx_nexus_admin_revoke_key(ngx_http_request_t *r,
    ngx_str_t *id);
static ngx_int_t ngx_nexus_admin_scopes(ngx_http_request_t *r, yajl_val v,
    ngx_str_t *out);
static void ngx_nexus_admin_invalid(ngx_http_request_t *r,
    const char *message);
static ngx_int_t ngx_nexus_admin_kills(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_admin_kill_name(const char *name);
static ngx_int_t ngx_nexus_admin_quota(ngx_http_request_t *r,
    ngx_str_t *tenant);
static void ngx_nexus_admin_set_quota(ngx_http_request_t *r, yajl_val v);
static void ngx_nexus_admin_quota_usage(ngx_http_request_t *r,
    PGresult *res);
static void ngx_nexus_admin_usage_reply(ngx_http_request_t *r,
    redisReply *reply, ngx_int_t rc);
static void ngx_nexus_admin_set_kills(ngx_http_request_t *r, yajl_val v);
static void ngx_nexus_admin_audit(ngx_http_request_t *r,
    ngx_nexus_admin_ctx_t *actx, PGresult *res, const char *code);


static ngx_uint_t  ngx_nexus_admin_stmts[NGX_NEXUS_ADMIN_NOPS];


/* the audit events of the writes, by op */

static const char  *ngx_nexus_admin_events[NGX_NEXUS_ADMIN_NOPS] = {
    NULL,
    "admin.tenant.created",
    NULL,
    "auth.api_key.created",
    "auth.api_key.revoked",
    NULL,
    "admin.kill_switch.updated",
    NULL,
    "admin.quota.updated"
};


#define NGX_NEXUS_TENANT_JSON                                                 \
    "json_build_object('id', t.id, 'name', t.name, 'status', t.status,"      \
    " 'platform', t.platform, 'created_at', t.created_at)"

#define NGX_NEXUS_KEY_JSON                                                    \
    "json_build_object('id', k.id, 'tenant', t.name, 'name', k.name,"        \
    " 'prefix', k.prefix, 'role', k.role, 'scopes', k.scopes,"               \
    " 'status', k.status, 'expires_at', k.expires_at,"                       \
    " 'last_used_at', k.last_used_at, 'created_at', k.created_at,"           \
    " 'revoked_at', k.revoked_at)"


#define NGX_NEXUS_KILL_JSON                                                   \
    "json_build_object('name', k.name, 'enabled', k.enabled,"                \
    " 'updated_at', k.updated_at, 'updated_by', k.updated_by)"


static const ngx_nexus_pg_sql_t  ngx_nexus_admin_sql[NGX_NEXUS_ADMIN_NOPS] = {

    { "nexus_admin_list_tenants",
      "SELECT coalesce(json_agg(" NGX_NEXUS_TENANT_JSON " ORDER BY t.id),"
      " '[]')::text FROM (SELECT * FROM tenants"
      " WHERE $1::bigint = 0 OR id = $1::bigint ORDER BY id LIMIT 1000) t",
      1 },

    { "nexus_admin_create_tenant",
      "INSERT INTO tenants AS t (name, platform) VALUES ($1, $2::boolean)"
      " RETURNING " NGX_NEXUS_TENANT_JSON "::text, t.id",
      2 },

    { "nexus_admin_list_keys",
      "SELECT coalesce(json_agg(" NGX_NEXUS_KEY_JSON " ORDER BY k.id),"
      " '[]')::text FROM (SELECT k.* FROM api_keys k"
      " JOIN tenants t ON t.id = k.tenant_id"
      " WHERE ($1::bigint = 0 OR k.tenant_id = $1::bigint)"
      " AND ($2::text = '' OR t.name = $2::text)"
      " ORDER BY k.id LIMIT 1000) k JOIN tenants t ON t.id = k.tenant_id",
      2 },

    { "nexus_admin_create_key",
      "INSERT INTO api_keys AS k (tenant_id, name, prefix, key_hash, role,"
      " scopes, expires_at)"
      " SELECT t.id, $3, $4, decode($5, 'hex'), $6,"
      " string_to_array($7, ',')::text[],"
      " CASE WHEN $8::bigint = 0 THEN NULL"
      " ELSE now() + make_interval(secs => $8::bigint) END"
      " FROM tenants t WHERE ($1::bigint = 0 OR t.id = $1::bigint)"
      " AND t.name = $2"
      " RETURNING (SELECT " NGX_NEXUS_KEY_JSON "::text"
      " FROM tenants t WHERE t.id = k.tenant_id), k.tenant_id",
      8 },

    { "nexus_admin_revoke_key",
      "UPDATE api_keys AS k SET status = 'revoked',"
      " revoked_at = coalesce(k.revoked_at, now())"
      " FROM tenants t WHERE t.id = k.tenant_id AND k.id = $1::bigint"
      " AND ($2::bigint = 0 OR k.tenant_id = $2::bigint)"
      " RETURNING " NGX_NEXUS_KEY_JSON "::text, k.tenant_id",
      2 },

    { "nexus_admin_list_kills",
      "SELECT coalesce(json_agg(" NGX_NEXUS_KILL_JSON " ORDER BY k.name),"
      " '[]')::text FROM kill_switches k",
      0 },

    { "nexus_admin_set_kills",
      "WITH up AS (INSERT INTO kill_switches AS k (name, enabled, updated_by)"
      " SELECT key, value::boolean, $2 FROM jsonb_each_text($1::jsonb)"
      " ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled,"
      " updated_at = now(), updated_by = EXCLUDED.updated_by"
      " RETURNING k.*)"
      " SELECT coalesce(json_agg(" NGX_NEXUS_KILL_JSON " ORDER BY k.name),"
      " '[]')::text FROM up k",
      2 },

    { "nexus_admin_get_quota",
      "SELECT json_build_object('tenant', t.name, 'quota', t.quota)::text,"
      " t.id FROM tenants t WHERE t.name = $1"
      " AND ($2::bigint = 0 OR t.id = $2::bigint)",
      2 },

    { "nexus_admin_set_quota",
      "UPDATE tenants AS t SET quota = jsonb_strip_nulls(t.quota || $2::jsonb)"
      " WHERE t.name = $1"
      " RETURNING json_build_object('tenant', t.name, 'quota', t.quota)::text,"
      " t.id",
      2 },
};


/* today's and this month's quota counters of a tenant (ARGV: tenant id) */

static const char  ngx_nexus_admin_usage_lua[] =
    NGX_NEXUS_LUA_CALENDAR
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local day = math.floor(now / 86400000)\n"
    "local y, m = civil(day)\n"
    "local mon = string.format('%04d-%02d', y, m)\n"
    "local d = string.format('%s-%02d', mon, day - days(y, m) + 1)\n"
    "local q = 'nx:q:' .. ARGV[1]\n"
    "return {d, tonumber(redis.call('GET', q .. ':d:' .. day) or '0'),"
    " mon, tonumber(redis.call('GET', q .. ':m:' .. mon) or '0')}\n";

static ngx_nexus_redis_script_t  ngx_nexus_admin_usage_script;


ngx_int_t
ngx_nexus_admin_init_statements(ngx_conf_t *cf)
{
    if (ngx_nexus_redis_script(cf, &ngx_nexus_admin_usage_script,
                               ngx_nexus_admin_usage_lua)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_pg_statements(cf, ngx_nexus_admin_sql,
                                   NGX_NEXUS_ADMIN_NOPS, ngx_nexus_admin_stmts);
}


ngx_int_t
ngx_nexus_admin_handler(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_int_t   rc;
    ngx_str_t   rest, id;

    /* every write with an Idempotency-Key runs once (a retry replays) */
    rc = ngx_nexus_idempotency(r, ngx_nexus_admin_handler);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_nexus_route(r, &rest) != NGX_OK
        || rest.len < 6 || ngx_strncmp(rest.data, "admin/", 6) != 0)
    {
        return ngx_nexus_not_found(r);
    }

    rest.data += 6;
    rest.len -= 6;

    if (rest.len >= 13 && ngx_strncmp(rest.data, "notifications", 13) == 0) {
        return ngx_nexus_notify_admin(r, &rest);
    }

    if (rest.len >= 6 && ngx_strncmp(rest.data, "authz/", 6) == 0) {
        return ngx_nexus_authz_admin(r, &rest);
    }

    if (rest.len >= 5 && ngx_strncmp(rest.data, "plans", 5) == 0) {
        return ngx_nexus_plan_admin(r, &rest);
    }

    if (rest.len >= 6 && ngx_strncmp(rest.data, "costs/", 6) == 0) {
        return ngx_nexus_budget_admin_costs(r, &rest);
    }

    if (rest.len == 7 && ngx_strncmp(rest.data, "tenants", 7) == 0) {

        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            return ngx_nexus_admin_list_tenants(r);
        }

        if (r->method == NGX_HTTP_POST) {
            return ngx_nexus_read_json(r, ngx_nexus_admin_create_tenant);
        }

        return ngx_nexus_method_not_allowed(r, "GET, HEAD, POST");
    }

    if (rest.len == 8 && ngx_strncmp(rest.data, "api-keys", 8) == 0) {

        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            return ngx_nexus_admin_list_keys(r);
        }

        if (r->method == NGX_HTTP_POST) {
            return ngx_nexus_read_json(r, ngx_nexus_admin_create_key);
        }

        return ngx_nexus_method_not_allowed(r, "GET, HEAD, POST");
    }

    if (rest.len == 21 && ngx_strncmp(rest.data, "rollouts/killswitches", 21)
                          == 0)
    {
        return ngx_nexus_admin_kills(r);
    }

    if (rest.len > 7 && ngx_strncmp(rest.data, "quotas/", 7) == 0) {
        id.data = rest.data + 7;
        id.len = rest.len - 7;

        if (nx_tenant_name_valid((char *) id.data, id.len) != 0) {
            return ngx_nexus_not_found(r);
        }

        return ngx_nexus_admin_quota(r, &id);
    }

    if (rest.len > 8 && ngx_strncmp(rest.data, "credits/", 8) == 0) {
        id.data = rest.data + 8;
        id.len = rest.len - 8;

        return ngx_nexus_credits_admin(r, &id);
    }

    if (rest.len > 6 && ngx_strncmp(rest.data, "usage/", 6) == 0) {
        id.data = rest.data + 6;
        id.len = rest.len - 6;

        if (nx_tenant_name_valid((char *) id.data, id.len) != 0) {
            return ngx_nexus_not_found(r);
        }

        return ngx_nexus_usage_admin(r, &id);
    }

    /* api-keys/{id}/revoke and api-keys/{id}/budget */

    if (rest.len > 9 && ngx_strncmp(rest.data, "api-keys/", 9) == 0) {
        id.data = rest.data + 9;

        for (p = id.data; p < rest.data + rest.len && *p >= '0' && *p <= '9';
             p++)
        {
            /* void */
        }

        id.len = p - id.data;
        last = rest.data + rest.len;

        if (id.len == 0 || id.len > 18) {
            return ngx_nexus_not_found(r);
        }

        if (last - p == 7 && ngx_strncmp(p, "/revoke", 7) == 0) {
            if (r->method != NGX_HTTP_POST) {
                return ngx_nexus_method_not_allowed(r, "POST");
            }

            return ngx_nexus_admin_revoke_key(r, &id);
        }

        if (last - p == 7 && ngx_strncmp(p, "/budget", 7) == 0) {
            return ngx_nexus_budget_admin_key(r, &id);
        }
    }

    return ngx_nexus_not_found(r);
}


/* the tenant a request is confined to: 0 for a platform admin */

int64_t
ngx_nexus_admin_scope(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    return ctx->principal.platform ? 0 : ctx->principal.tenant_id;
}


static ngx_nexus_pg_query_t *
ngx_nexus_admin_prepare(ngx_http_request_t *r, ngx_uint_t op, size_t size)
{
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_admin_ctx_t  *actx;

    actx = ngx_nexus_handler_ctx(r, sizeof(ngx_nexus_admin_ctx_t));
    if (actx == NULL) {
        return NULL;
    }

    actx->op = op;

    q = ngx_nexus_pg_query(ngx_nexus_admin_stmts[op], size);
    if (q == NULL) {
        return NULL;
    }

    q->handler = ngx_nexus_admin_done;
    q->data = r;

    return q;
}


static ngx_int_t
ngx_nexus_admin_list_tenants(ngx_http_request_t *r)
{
    ngx_nexus_pg_query_t  *q;

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_LIST_TENANTS, 32);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_admin_create_tenant(ngx_http_request_t *r, yajl_val v)
{
    int                    platform;
    ngx_int_t              rc;
    const char             *name;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_admin_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (!ctx->principal.platform) {
        ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                  "{\"required\":\"platform_admin\"}");
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                 "only a platform admin can create tenants",
                                 "{\"required\":\"platform_admin\"}"));
        return;
    }

    if (nx_json_string(nx_json_get(v, "name"), &name) != 0
        || nx_tenant_name_valid(name, ngx_strlen(name)) != 0)
    {
        ngx_nexus_admin_invalid(r, "\"name\" must be 1-63 characters of "
                                   "[a-z0-9_-], starting with [a-z0-9]");
        return;
    }

    platform = 0;

    if (nx_json_get(v, "platform") != NULL
        && nx_json_bool(nx_json_get(v, "platform"), &platform) != 0)
    {
        ngx_nexus_admin_invalid(r, "\"platform\" must be a boolean");
        return;
    }

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_CREATE_TENANT, 80);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, (u_char *) name, ngx_strlen(name));
    (void) ngx_nexus_pg_param(q, (u_char *) (platform ? "t" : "f"), 1);

    actx = ctx->handler_ctx;
    actx->target.data = (u_char *) name;
    actx->target.len = ngx_strlen(name);

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_admin_list_keys(ngx_http_request_t *r)
{
    ngx_str_t              tenant;
    ngx_nexus_pg_query_t  *q;

    ngx_str_null(&tenant);

    if (ngx_http_arg(r, (u_char *) "tenant", 6, &tenant) == NGX_OK
        && nx_tenant_name_valid((char *) tenant.data, tenant.len) != 0)
    {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR",
                                    "\"tenant\" is not a valid tenant name",
                                    NULL);
    }

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_LIST_KEYS,
                                32 + tenant.len);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));
    (void) ngx_nexus_pg_param(q, tenant.data, tenant.len);

    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_admin_create_key(ngx_http_request_t *r, yajl_val v)
{
    int                     role;
    int64_t                 expires;
    ngx_int_t               rc;
    nx_key_t                key;
    ngx_str_t               scopes;
    yajl_val                f;
    const char             *name, *tenant, *s;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_admin_ctx_t  *actx;
    ngx_nexus_main_conf_t  *nmcf;
    u_char                  hex[2 * NX_HASH_LEN];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (v == NULL) {
        ngx_nexus_admin_invalid(r, "a JSON body with \"name\" is required");
        return;
    }

    if (nx_json_string(nx_json_get(v, "name"), &name) != 0
        || nx_key_name_valid(name, ngx_strlen(name)) != 0)
    {
        ngx_nexus_admin_invalid(r, "\"name\" must be 1-128 printable "
                                   "ASCII characters");
        return;
    }

    role = NGX_NEXUS_ROLE_READER;
    f = nx_json_get(v, "role");

    if (f != NULL
        && (nx_json_string(f, &s) != 0
            || (role = nx_role_parse(s, ngx_strlen(s))) < 0))
    {
        ngx_nexus_admin_invalid(r, "\"role\" must be \"reader\", "
                                   "\"editor\" or \"admin\"");
        return;
    }

    if (ngx_nexus_admin_scopes(r, nx_json_get(v, "scopes"), &scopes)
        != NGX_OK)
    {
        ngx_nexus_admin_invalid(r, "\"scopes\" must be an array of at most "
                                   "32 scopes of [a-z0-9_:.*-]");
        return;
    }

    expires = 0;
    f = nx_json_get(v, "expires_in");

    if (f != NULL
        && (nx_json_string(f, &s) != 0
            || nx_duration_parse(s, ngx_strlen(s), &expires) != 0))
    {
        ngx_nexus_admin_invalid(r, "\"expires_in\" must be a duration "
                                   "such as \"30d\", \"12h\" or \"90m\"");
        return;
    }

    tenant = (const char *) ctx->principal.tenant.data;
    rc = ctx->principal.tenant.len;
    f = nx_json_get(v, "tenant");

    if (f != NULL) {
        if (nx_json_string(f, &tenant) != 0
            || nx_tenant_name_valid(tenant, ngx_strlen(tenant)) != 0)
        {
            ngx_nexus_admin_invalid(r, "\"tenant\" is not a valid name");
            return;
        }

        rc = ngx_strlen(tenant);
    }

    if (nx_key_generate(nmcf->pepper, nmcf->pepper_len, &key) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "nexus: no randomness for a new API key");
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_CREATE_KEY,
                                512 + scopes.len);
    if (q == NULL) {
        ngx_explicit_memzero(&key, sizeof(nx_key_t));
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_hex_dump(hex, key.hash, NX_HASH_LEN);

    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));
    (void) ngx_nexus_pg_param(q, (u_char *) tenant, rc);
    (void) ngx_nexus_pg_param(q, (u_char *) name, ngx_strlen(name));
    (void) ngx_nexus_pg_param(q, (u_char *) key.prefix, NX_KEY_PREFIX_LEN);
    (void) ngx_nexus_pg_param(q, hex, sizeof(hex));
    s = nx_role_name(role);
    (void) ngx_nexus_pg_param(q, (u_char *) s, ngx_strlen(s));
    (void) ngx_nexus_pg_param(q, scopes.data, scopes.len);
    (void) ngx_nexus_pg_param_int(q, expires);

    /* the key itself is kept only to be shown once, in the response */
    actx = ctx->handler_ctx;
    actx->target.data = (u_char *) tenant;
    actx->target.len = rc;
    ngx_memcpy(actx->key, key.key, NX_KEY_LEN);
    ngx_explicit_memzero(&key, sizeof(nx_key_t));

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_admin_scopes(ngx_http_request_t *r, yajl_val v, ngx_str_t *out)
{
    u_char      *p;
    size_t       i, len;
    const char  *s;

    if (v == NULL) {
        ngx_str_set(out, "chat,embeddings");
        return NGX_OK;
    }

    if (!YAJL_IS_ARRAY(v) || v->u.array.len > 32) {
        return NGX_ERROR;
    }

    len = 0;

    for (i = 0; i < v->u.array.len; i++) {
        /* one scope per element: a comma would smuggle in another */
        if (nx_json_string(v->u.array.values[i], &s) != 0
            || s[0] == '\0' || ngx_strchr(s, ',') != NULL
            || nx_scopes_valid(s, ngx_strlen(s)) != 0)
        {
            return NGX_ERROR;
        }
        len += ngx_strlen(s) + 1;
    }

    if (len > NGX_NEXUS_SCOPES_MAX + 1) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (i = 0; i < v->u.array.len; i++) {
        (void) nx_json_string(v->u.array.values[i], &s);
        if (i) {
            *p++ = ',';
        }
        p = ngx_cpymem(p, s, ngx_strlen(s));
    }

    out->len = p - out->data;

    if (out->len && nx_scopes_valid((char *) out->data, out->len) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_admin_revoke_key(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_admin_ctx_t  *actx;

    if (id->len == 0 || id->len > 18) {
        return ngx_nexus_not_found(r);
    }

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_REVOKE_KEY, 64);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, id->data, id->len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;
    actx->target = *id;

    /* a body, if any, is not needed */
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        ngx_nexus_pg_free(q);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_admin_done(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    u_char                 *json, *buf, *p;
    size_t                  len;
    ngx_uint_t              status;
    const char             *state, *code;
    ngx_http_request_t     *r;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_admin_ctx_t  *actx;

    r = q->data;
    ctx = ngx_nexus_pg_answered(r);
    actx = ctx->handler_ctx;

    /* what the audit log says went wrong, if anything */
    code = "INTERNAL_ERROR";

    if (rc == NGX_DECLINED) {
        code = "DEPENDENCY_UNAVAILABLE";
        rc = ngx_nexus_pg_unavailable(r);
        goto done;
    }

    if (rc == NGX_OK && actx->op == NGX_NEXUS_ADMIN_GET_QUOTA) {
        /* the quota's configuration; its usage comes from Redis */
        ngx_nexus_admin_quota_usage(r, res);
        return;
    }

    if (rc == NGX_ERROR) {
        state = ngx_nexus_pg_sqlstate(res);

        if (ngx_strcmp(state, "23514") == 0) {
            /* a CHECK constraint: what was sent is not acceptable */
            code = "VALIDATION_ERROR";
            rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR",
                                      "the values are out of range", NULL);
            goto done;
        }

        if (ngx_strcmp(state, "23505") == 0
            && actx->op == NGX_NEXUS_ADMIN_CREATE_TENANT)
        {
            code = "TENANT_EXISTS";
            rc = ngx_nexus_send_error(r, NGX_HTTP_CONFLICT, "TENANT_EXISTS",
                                      "a tenant with this name exists",
                                      NULL);
            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus admin query failed: %s",
                      PQresultErrorMessage(res));

        rc = ngx_nexus_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "INTERNAL_ERROR",
                                  "the request could not be completed",
                                  NULL);
        goto done;
    }

    /* a write's row comes with the id of the tenant it concerns */
    if (PQntuples(res) != 1 || PQnfields(res) < 1
        || PQgetisnull(res, 0, 0))
    {
        switch (actx->op) {

        case NGX_NEXUS_ADMIN_CREATE_KEY:
        case NGX_NEXUS_ADMIN_SET_QUOTA:
            code = "TENANT_NOT_FOUND";
            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "TENANT_NOT_FOUND",
                                      "no such tenant", NULL);
            break;

        default:
            code = "KEY_NOT_FOUND";
            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "KEY_NOT_FOUND", "no such API key",
                                      NULL);
            break;
        }

        goto done;
    }

    json = (u_char *) PQgetvalue(res, 0, 0);
    len = PQgetlength(res, 0, 0);
    status = NGX_HTTP_OK;

    if (actx->op == NGX_NEXUS_ADMIN_CREATE_TENANT
        || actx->op == NGX_NEXUS_ADMIN_CREATE_KEY)
    {
        status = NGX_HTTP_CREATED;
    }

    /* the result is freed after this handler: copy it */

    buf = ngx_pnalloc(r->pool, len + sizeof("{\"key\":\"\",") + NX_KEY_LEN);
    if (buf == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    p = buf;

    if (actx->op == NGX_NEXUS_ADMIN_CREATE_KEY && json[0] == '{') {
        /* the only time the whole key is ever shown */
        p = ngx_cpymem(p, "{\"key\":\"", sizeof("{\"key\":\"") - 1);
        p = ngx_cpymem(p, actx->key, NX_KEY_LEN);
        p = ngx_cpymem(p, "\",", 2);
        p = ngx_cpymem(p, json + 1, len - 1);

        ngx_explicit_memzero(actx->key, NX_KEY_LEN);

    } else {
        p = ngx_cpymem(p, json, len);
    }

    rc = ngx_nexus_send_data(r, status, buf, p - buf);
    code = NULL;

done:

    ngx_nexus_admin_audit(r, actx, res, code);
    ngx_http_finalize_request(r, rc);
}


/*
 * The audit event of a write: the row as the response shows it, in the
 * chain of the tenant it concerns, or the error code and what the write
 * was about, in the chain of the admin's own tenant; with the request's
 * JSON body, which the audit log redacts (a client may well send a
 * "password" nobody asked for).
 */

static void
ngx_nexus_admin_audit(ngx_http_request_t *r, ngx_nexus_admin_ctx_t *actx,
    PGresult *res, const char *code)
{
    u_char           *members, *p;
    size_t            len;
    int64_t           tenant_id;
    ngx_str_t         body;
    const char       *type;
    ngx_nexus_ctx_t  *ctx;

    type = ngx_nexus_admin_events[actx->op];

    if (type == NULL) {
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    tenant_id = ctx->principal.tenant_id;

    /* a JSON object, checked when it was read; a large one is left out */
    if (ngx_nexus_body_collect(r, &body, NGX_NEXUS_ADMIN_AUDIT_BODY)
        != NGX_OK)
    {
        ngx_str_set(&body, "\"[TOO_LARGE]\"");
    }

    if (code == NULL) {
        if (PQnfields(res) > 1 && !PQgetisnull(res, 0, 1)) {
            tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                  PQgetlength(res, 0, 1));
        }

        len = PQgetlength(res, 0, 0);

        members = ngx_pnalloc(r->pool, sizeof("\"result\":,\"request\":")
                                       + len + body.len);
        if (members == NULL) {
            return;
        }

        /* the key itself is not in the row: it was spliced in above */
        p = ngx_sprintf(members, "\"result\":%*s", len,
                        PQgetvalue(res, 0, 0));

    } else {
        members = ngx_pnalloc(r->pool, sizeof("\"code\":\"\",\"target\":\"\","
                                              "\"request\":")
                                       + ngx_strlen(code) + actx->target.len
                                       + body.len);
        if (members == NULL) {
            return;
        }

        /* targets are validated tenant names and key ids */
        p = ngx_sprintf(members, "\"code\":\"%s\",\"target\":\"%V\"", code,
                        &actx->target);
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


static void
ngx_nexus_admin_invalid(ngx_http_request_t *r, const char *message)
{
    ngx_http_finalize_request(r,
        ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                             message, NULL));
}


/*
 * GET|PATCH /v1/admin/rollouts/killswitches: fleet-wide, so platform
 * admins only.  PATCH {"kill_switches": {"kill.run": true, ...}}.
 */

static ngx_int_t
ngx_nexus_admin_kills(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    /* who may ask comes before how: nothing here for a tenant's admin */
    if (!ctx->principal.platform) {
        ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                  "{\"required\":\"platform_admin\"}");
        return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                    "kill switches are for platform admins",
                                    "{\"required\":\"platform_admin\"}");
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PATCH))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD, PATCH");
    }

    if (r->method == NGX_HTTP_PATCH) {
        return ngx_nexus_read_json(r, ngx_nexus_admin_set_kills);
    }

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_LIST_KILLS, 0);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_admin_set_kills(ngx_http_request_t *r, yajl_val v)
{
    u_char                *p, *json;
    size_t                 i, len;
    ngx_int_t              rc;
    yajl_val               o, e;
    const char            *name;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_pg_query_t  *q;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    o = nx_json_get(v, "kill_switches");

    if (o == NULL || !YAJL_IS_OBJECT(o) || o->u.object.len == 0
        || o->u.object.len > 64)
    {
        ngx_nexus_admin_invalid(r, "\"kill_switches\" must be an object of "
                                   "1-64 switches");
        return;
    }

    /* names are checked here, so the JSON rebuilt below needs no escaping */

    len = 2;

    for (i = 0; i < o->u.object.len; i++) {
        name = o->u.object.keys[i];
        e = o->u.object.values[i];

        if (ngx_nexus_admin_kill_name(name) != NGX_OK
            || !(YAJL_IS_TRUE(e) || YAJL_IS_FALSE(e)))
        {
            ngx_nexus_admin_invalid(r, "each switch must be named "
                                       "kill.<feature> (1-32 of [a-z0-9_], "
                                       "dots between them) and set to "
                                       "true or false");
            return;
        }

        len += ngx_strlen(name) + sizeof("\"\":false,") - 1;
    }

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = json;
    *p++ = '{';

    for (i = 0; i < o->u.object.len; i++) {
        p = ngx_sprintf(p, "%s\"%s\":%s", i ? "," : "",
                        o->u.object.keys[i],
                        YAJL_IS_TRUE(o->u.object.values[i]) ? "true"
                                                            : "false");
    }

    *p++ = '}';

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_SET_KILLS,
                                (p - json) + ctx->principal.prefix.len + 2);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, json, p - json);
    (void) ngx_nexus_pg_param(q, ctx->principal.prefix.data,
                              ctx->principal.prefix.len);

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_admin_kill_name(const char *name)
{
    /* kill.<feature>, the feature named as nexus_feature names it */
    if (ngx_strncmp(name, "kill.", 5) != 0
        || nx_feature_name_valid(name + 5, ngx_strlen(name + 5)) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * GET|PATCH /v1/admin/quotas/{tenant}.  A tenant's admin reads its own;
 * only a platform admin changes one (a tenant must not raise its cap).
 * PATCH {"daily": N, "monthly": N, "soft_ratio": R, "mode": "enforce"},
 * any subset; null removes a field.
 */

static ngx_int_t
ngx_nexus_admin_quota(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_admin_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (r->method == NGX_HTTP_PATCH) {
        if (!ctx->principal.platform) {
            ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                      "{\"required\":"
                                      "\"platform_admin\"}");
            return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                        "only a platform admin can change "
                                        "a quota",
                                        "{\"required\":\"platform_admin\"}");
        }

        actx = ngx_nexus_handler_ctx(r, sizeof(ngx_nexus_admin_ctx_t));
        if (actx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        actx->tenant = *tenant;

        return ngx_nexus_read_json(r, ngx_nexus_admin_set_quota);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD, PATCH");
    }

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_GET_QUOTA,
                                tenant->len + 32);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, tenant->data, tenant->len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_admin_set_quota(ngx_http_request_t *r, yajl_val v)
{
    u_char                 *json, *p;
    size_t                  i;
    int64_t                 n;
    ngx_int_t               rc;
    ngx_str_t               tenant;
    yajl_val                f;
    const char             *name, *s;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_admin_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;
    tenant = actx->tenant;

    if (v == NULL || v->u.object.len == 0) {
        ngx_nexus_admin_invalid(r, "a JSON object with daily, monthly, "
                                   "soft_ratio or mode is required");
        return;
    }

    json = ngx_pnalloc(r->pool, 256);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* rebuilt from checked values only; the database checks them again */

    p = json;
    *p++ = '{';

    for (i = 0; i < v->u.object.len; i++) {
        name = v->u.object.keys[i];
        f = v->u.object.values[i];

        p = ngx_sprintf(p, "%s\"", i ? "," : "");

        if (ngx_strcmp(name, "daily") == 0
            || ngx_strcmp(name, "monthly") == 0)
        {
            p = ngx_sprintf(p, "%s\":", name);

            if (YAJL_IS_NULL(f)) {
                p = ngx_cpymem(p, "null", 4);
                continue;
            }

            if (nx_json_int(f, &n) != 0 || n <= 0 || n > 999999999999LL) {
                goto invalid;
            }

            p = ngx_sprintf(p, "%L", n);
            continue;
        }

        if (ngx_strcmp(name, "soft_ratio") == 0) {
            p = ngx_cpymem(p, "soft_ratio\":", 12);

            if (YAJL_IS_NULL(f)) {
                p = ngx_cpymem(p, "null", 4);
                continue;
            }

            if (!YAJL_IS_NUMBER(f) || !YAJL_IS_DOUBLE(f)
                || f->u.number.d <= 0 || f->u.number.d > 1)
            {
                goto invalid;
            }

            p = ngx_sprintf(p, "%.3f", f->u.number.d);
            continue;
        }

        if (ngx_strcmp(name, "mode") == 0) {
            p = ngx_cpymem(p, "mode\":", 6);

            if (YAJL_IS_NULL(f)) {
                p = ngx_cpymem(p, "null", 4);
                continue;
            }

            if (nx_json_string(f, &s) != 0
                || (ngx_strcmp(s, "enforce") != 0
                    && ngx_strcmp(s, "observe") != 0))
            {
                goto invalid;
            }

            p = ngx_sprintf(p, "\"%s\"", s);
            continue;
        }

        goto invalid;
    }

    *p++ = '}';

    q = ngx_nexus_admin_prepare(r, NGX_NEXUS_ADMIN_SET_QUOTA,
                                tenant.len + (p - json) + 2);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, tenant.data, tenant.len);
    (void) ngx_nexus_pg_param(q, json, p - json);

    actx = ctx->handler_ctx;
    actx->target = tenant;

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    return;

invalid:

    ngx_nexus_admin_invalid(r, "daily and monthly must be integers of "
                               "1..999999999999, soft_ratio a number in "
                               "(0, 1], mode \"enforce\" or \"observe\"");
}


static void
ngx_nexus_admin_quota_usage(ngx_http_request_t *r, PGresult *res)
{
    u_char                 *p;
    size_t                  len;
    const char             *argv[1];
    size_t                  argvlen[1];
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_redis_cmd_t  *cmd;
    ngx_nexus_admin_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;

    if (PQntuples(res) != 1 || PQnfields(res) != 2) {
        /* a tenant admin asking for another tenant learns nothing more */
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "TENANT_NOT_FOUND",
                                 "no such tenant", NULL));
        return;
    }

    len = PQgetlength(res, 0, 0);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(p, PQgetvalue(res, 0, 0), len);
    actx->json.data = p;
    actx->json.len = len;

    if (ngx_nexus_redis_configured()) {
        argv[0] = PQgetvalue(res, 0, 1);
        argvlen[0] = PQgetlength(res, 0, 1);

        cmd = ngx_nexus_redis_eval(&ngx_nexus_admin_usage_script, 0, 1, argv,
                                   argvlen);

        ngx_nexus_redis_ask(r, cmd, ngx_nexus_admin_usage_reply);
        return;
    }

    /* usage unknown: answer with the configuration alone */
    ngx_nexus_admin_usage_reply(r, NULL, NGX_DECLINED);
}



static void
ngx_nexus_admin_usage_reply(ngx_http_request_t *r, redisReply *reply,
    ngx_int_t rc)
{
    u_char                 *buf, *p;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_admin_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;
    r->read_event_handler = ngx_http_block_reading;

    buf = ngx_pnalloc(r->pool, actx->json.len + 160);
    if (buf == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* {"tenant":...,"quota":{...}} + ,"usage":... */
    p = ngx_cpymem(buf, actx->json.data, actx->json.len - 1);

    if (rc == NGX_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 4
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[1]->type == REDIS_REPLY_INTEGER
        && reply->element[2]->type == REDIS_REPLY_STRING
        && reply->element[3]->type == REDIS_REPLY_INTEGER
        && reply->element[0]->len <= 10 && reply->element[2]->len <= 7)
    {
        p = ngx_sprintf(p, ",\"usage\":{\"day\":{\"period\":\"%*s\","
                        "\"used\":%L},\"month\":{\"period\":\"%*s\","
                        "\"used\":%L}}}",
                        reply->element[0]->len, reply->element[0]->str,
                        (int64_t) reply->element[1]->integer,
                        reply->element[2]->len, reply->element[2]->str,
                        (int64_t) reply->element[3]->integer);

    } else {
        p = ngx_cpymem(p, ",\"usage\":null}", 14);
    }

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_OK, buf, p - buf));
}
