
/*
 * Copyright (C) Nexus authors
 *
 * API key authentication, in the ACCESS phase.
 *
 * The presented key is checked for shape first (a malformed key never
 * costs a lookup), hashed with the pepper, then looked up in the shared
 * zone; on a miss the request is suspended while PostgreSQL answers by
 * prefix, and the stored hash is compared in constant time.  A dependency
 * that cannot answer denies (503), it never allows.
 *
 * Every refusal is audited as auth.access.failure (aggregated, see
 * ngx_nexus_audit_agg.c), in the chain of the key's tenant when its
 * prefix is known (from the cache, the negative entries included, or the
 * lookup that was made anyway), else the platform's; a key found in
 * PostgreSQL, once per node and cache lifetime, as auth.access.success.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_audit.h"

#include <nx_bearer.h>
#include <nx_name.h>
#include <nx_pii.h>


static ngx_int_t ngx_nexus_auth_start(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);
static ngx_int_t ngx_nexus_auth_lookup(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);
static void ngx_nexus_auth_pg_handler(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
static ngx_int_t ngx_nexus_auth_row(PGresult *res,
    ngx_nexus_key_data_t *kd, u_char *hash);
static ngx_int_t ngx_nexus_auth_unhex(u_char *dst, u_char *src, size_t n);
static ngx_int_t ngx_nexus_auth_numbers(u_char *p, size_t len, int64_t *v,
    ngx_uint_t n);
static ngx_int_t ngx_nexus_auth_limits(ngx_nexus_key_data_t *kd, u_char *p,
    size_t len);
static ngx_int_t ngx_nexus_auth_budget(ngx_nexus_key_data_t *kd, u_char *p,
    size_t len);
static ngx_int_t ngx_nexus_auth_guard(ngx_nexus_key_data_t *kd, u_char *p,
    size_t len);
static ngx_int_t ngx_nexus_auth_quota(ngx_nexus_key_data_t *kd, u_char *p,
    size_t len);
static void ngx_nexus_auth_decide(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx, ngx_nexus_key_data_t *kd);
static void ngx_nexus_auth_set(ngx_nexus_ctx_t *ctx, ngx_int_t status,
    const char *code, const char *message);
static void ngx_nexus_auth_reject(ngx_nexus_ctx_t *ctx, const char *reason,
    int64_t tenant_id);
static ngx_int_t ngx_nexus_auth_finish(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);

static ngx_int_t ngx_nexus_auth_forbidden(ngx_http_request_t *r,
    const char *message, const char *details);
static ngx_int_t ngx_nexus_auth_forbidden_role(ngx_http_request_t *r,
    ngx_uint_t role);



static ngx_uint_t  ngx_nexus_auth_stmt;


static const char  ngx_nexus_auth_sql[] =
    "SELECT k.id, encode(k.key_hash, 'hex'), k.status, k.role,"
    " array_to_string(k.scopes, ','),"
    " COALESCE(floor(extract(epoch FROM k.expires_at) * 1000)::bigint, 0),"
    " t.id, t.name, t.status, t.platform,"
    " nexus_rate_limits_text(k.rate_limits, t.rate_limits),"
    " nexus_quota_text(t.quota),"
    " nexus_models_text(k.allowed_models, t.allow_all_models,"
    " t.allowed_models),"
    " nexus_budget_text(k.token_budget, k.tpm, t.tpm),"
    " nexus_features_text(t.id),"
    " nexus_guardrails_text(t.guardrails)"
    " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
    " WHERE k.prefix = $1";


ngx_int_t
ngx_nexus_auth_init_statements(ngx_conf_t *cf)
{
    return ngx_nexus_pg_statement(cf, "nexus_key_lookup", ngx_nexus_auth_sql,
                                  1, &ngx_nexus_auth_stmt);
}


ngx_int_t
ngx_nexus_access_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (r != r->main) {
        return NGX_DECLINED;
    }

    /*
     * a killed feature is refused before anything else is looked at;
     * health checks, error pages and metrics are never a feature
     */
    if (nlcf->kill_switch.len
        && nlcf->handler != NGX_NEXUS_HANDLER_LIVE
        && nlcf->handler != NGX_NEXUS_HANDLER_READY
        && nlcf->handler != NGX_NEXUS_HANDLER_ERROR
        && nlcf->handler != NGX_NEXUS_HANDLER_METRICS)
    {
        rc = ngx_nexus_kill_check(r);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (nlcf->auth != 1) {
        return NGX_DECLINED;
    }

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ctx->auth_state) {

    case NGX_NEXUS_AUTH_WAITING:
        return NGX_AGAIN;

    case NGX_NEXUS_AUTH_DONE:
        return ngx_nexus_auth_finish(r, ctx);

    default:
        break;
    }

    if (ctx->authenticated) {
        /* an internal redirect into another nexus location */
        ctx->auth_status = NGX_OK;
        return ngx_nexus_auth_finish(r, ctx);
    }

    return ngx_nexus_auth_start(r, ctx);
}


static ngx_int_t
ngx_nexus_auth_start(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    size_t                  toklen;
    ngx_uint_t              found;
    const char             *tok;
    nx_bearer_rc_t          brc;
    ngx_table_elt_t        *h;
    ngx_nexus_key_data_t    kd;
    ngx_nexus_main_conf_t  *nmcf;
    char                    prefix[NX_KEY_PREFIX_LEN + 1];

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    ctx->auth_state = NGX_NEXUS_AUTH_DONE;

    h = r->headers_in.authorization;

    if (h == NULL) {
        ngx_nexus_auth_reject(ctx, "missing", 0);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_MISSING",
                           "an API key is required: "
                           "Authorization: Bearer <key>");
        return ngx_nexus_auth_finish(r, ctx);
    }

    brc = nx_bearer_parse((const char *) h->value.data, h->value.len,
                          NGX_NEXUS_TOKEN_MAX, &tok, &toklen);

    switch (brc) {

    case NX_BEARER_OK:
        break;

    case NX_BEARER_EMPTY:
        ngx_nexus_auth_reject(ctx, "missing", 0);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_MISSING",
                           "the Authorization header is empty");
        return ngx_nexus_auth_finish(r, ctx);

    case NX_BEARER_NOT_BEARER:
        ngx_nexus_auth_reject(ctx, "malformed_header", 0);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_INVALID",
                           "the Authorization scheme must be Bearer");
        return ngx_nexus_auth_finish(r, ctx);

    default:
        ngx_nexus_auth_reject(ctx, "malformed_key", 0);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_INVALID",
                           "the API key is malformed");
        return ngx_nexus_auth_finish(r, ctx);
    }

    if (nx_key_parse(tok, toklen, prefix) != 0) {
        ngx_nexus_auth_reject(ctx, "malformed_key", 0);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_INVALID",
                           "the API key is malformed");
        return ngx_nexus_auth_finish(r, ctx);
    }

    /* well formed: the prefix, never the secret, may name it from here */
    ngx_memcpy(ctx->key_prefix, prefix, NX_KEY_PREFIX_LEN);

    if (nx_key_hasher_run(nmcf->key_hasher, tok, toklen, ctx->key_hash)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    found = ngx_nexus_keycache_lookup(nmcf->shm_zone, ctx->key_hash, &kd);

    if (found == NGX_NEXUS_KEY_FOUND) {
        ngx_nexus_auth_decide(r, ctx, &kd);
        return ngx_nexus_auth_finish(r, ctx);
    }

    if (found == NGX_NEXUS_KEY_UNKNOWN) {
        /* a negative entry remembers the tenant of a known prefix */
        ngx_nexus_auth_reject(ctx, kd.tenant_id ? "wrong_secret"
                                                : "unknown_key",
                              kd.tenant_id);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_INVALID",
                           "the API key is not valid");
        return ngx_nexus_auth_finish(r, ctx);
    }

    return ngx_nexus_auth_lookup(r, ctx);
}


static ngx_int_t
ngx_nexus_auth_lookup(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    /* anything evicted after this point must not be cached by us */
    ctx->auth_epoch = ngx_nexus_keycache_epoch(nmcf->shm_zone);

    q = ngx_nexus_pg_query(ngx_nexus_auth_stmt, NX_KEY_PREFIX_LEN + 1);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, ctx->key_prefix, NX_KEY_PREFIX_LEN);

    q->handler = ngx_nexus_auth_pg_handler;
    q->data = r;

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        ngx_nexus_auth_set(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                           "DEPENDENCY_UNAVAILABLE",
                           "the key store is unavailable, try again");
        return ngx_nexus_auth_finish(r, ctx);
    }

    ctx->pgq = q;
    ctx->auth_state = NGX_NEXUS_AUTH_WAITING;

    ngx_nexus_wait(r);

    return NGX_AGAIN;
}


static void
ngx_nexus_auth_pg_handler(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    ngx_http_request_t     *r;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_key_data_t    kd;
    ngx_nexus_main_conf_t  *nmcf;
    u_char                  hash[NX_HASH_LEN];

    r = q->data;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    ctx->pgq = NULL;
    ctx->auth_state = NGX_NEXUS_AUTH_DONE;

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "nexus key lookup failed: %s",
                          PQresultErrorMessage(res));
        }

        ngx_nexus_auth_set(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                           "DEPENDENCY_UNAVAILABLE",
                           "the key store is unavailable, try again");
        goto resume;
    }

    if (PQntuples(res) != 1) {
        ngx_nexus_keycache_insert_unknown(nmcf->shm_zone, ctx->key_hash, 0,
                                          nmcf->key_negative_ttl,
                                          ctx->auth_epoch);
        ngx_nexus_auth_reject(ctx, "unknown_key", 0);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_INVALID",
                           "the API key is not valid");
        goto resume;
    }

    if (ngx_nexus_auth_row(res, &kd, hash) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus key lookup returned an unexpected row");
        ngx_nexus_auth_set(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                           "DEPENDENCY_UNAVAILABLE",
                           "the key store is unavailable, try again");
        goto resume;
    }

    ngx_memcpy(kd.prefix, ctx->key_prefix, NX_KEY_PREFIX_LEN);

    if (!nx_ct_equal(hash, ctx->key_hash, NX_HASH_LEN)) {
        /* the right prefix with the wrong secret */
        ngx_nexus_keycache_insert_unknown(nmcf->shm_zone, ctx->key_hash,
                                          kd.tenant_id,
                                          nmcf->key_negative_ttl,
                                          ctx->auth_epoch);
        ngx_nexus_auth_reject(ctx, "wrong_secret", kd.tenant_id);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_INVALID",
                           "the API key is not valid");
        goto resume;
    }

    ngx_nexus_keycache_insert(nmcf->shm_zone, ctx->key_hash, &kd,
                              nmcf->key_cache_ttl, ctx->auth_epoch);

    ngx_nexus_auth_decide(r, ctx, &kd);

    if (ctx->auth_status == NGX_OK) {
        /* checked against PostgreSQL, not the cache: once per lifetime */
        ngx_nexus_audit_auth_success(r, ctx->principal.tenant_id,
                                     ctx->principal.role);
    }

resume:

    ngx_nexus_resume(r);
}


static ngx_int_t
ngx_nexus_auth_row(PGresult *res, ngx_nexus_key_data_t *kd, u_char *hash)
{
    int        len;
    char      *v;
    ngx_int_t  n;

    if (PQnfields(res) != 16) {
        return NGX_ERROR;
    }

    ngx_memzero(kd, sizeof(ngx_nexus_key_data_t));

    kd->key_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                           PQgetlength(res, 0, 0));

    if (PQgetlength(res, 0, 1) != 2 * NX_HASH_LEN
        || ngx_nexus_auth_unhex(hash, (u_char *) PQgetvalue(res, 0, 1),
                                NX_HASH_LEN)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    kd->revoked = (ngx_strcmp(PQgetvalue(res, 0, 2), "active") != 0);

    n = nx_role_parse(PQgetvalue(res, 0, 3), PQgetlength(res, 0, 3));
    if (n < 0) {
        return NGX_ERROR;
    }
    kd->role = (u_char) n;

    len = PQgetlength(res, 0, 4);
    if (len > NGX_NEXUS_SCOPES_MAX) {
        return NGX_ERROR;
    }
    ngx_memcpy(kd->scopes, PQgetvalue(res, 0, 4), len);
    kd->scopes_len = (u_char) len;

    v = PQgetvalue(res, 0, 5);
    kd->expires_at = (v[0] == '-') ? 1 : ngx_atoof((u_char *) v,
                                                   PQgetlength(res, 0, 5));

    kd->tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 6),
                              PQgetlength(res, 0, 6));

    len = PQgetlength(res, 0, 7);
    if (len == 0 || len > NGX_NEXUS_TENANT_MAX) {
        return NGX_ERROR;
    }
    ngx_memcpy(kd->tenant, PQgetvalue(res, 0, 7), len);
    kd->tenant_len = (u_char) len;

    kd->tenant_suspended = (ngx_strcmp(PQgetvalue(res, 0, 8), "active") != 0);
    kd->platform = (PQgetvalue(res, 0, 9)[0] == 't');

    if (ngx_nexus_auth_limits(kd, (u_char *) PQgetvalue(res, 0, 10),
                              PQgetlength(res, 0, 10))
        != NGX_OK
        || ngx_nexus_auth_quota(kd, (u_char *) PQgetvalue(res, 0, 11),
                                PQgetlength(res, 0, 11))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    len = PQgetlength(res, 0, 12);
    if (len > NGX_NEXUS_MODELS_MAX) {
        return NGX_ERROR;
    }
    ngx_memcpy(kd->models, PQgetvalue(res, 0, 12), len);
    kd->models_len = (uint16_t) len;

    if (ngx_nexus_auth_budget(kd, (u_char *) PQgetvalue(res, 0, 13),
                              PQgetlength(res, 0, 13))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* bounded by the catalog (features_bound in 0011_plans.sql) */
    len = PQgetlength(res, 0, 14);
    if (len > NGX_NEXUS_FEATURES_MAX) {
        return NGX_ERROR;
    }
    ngx_memcpy(kd->features, PQgetvalue(res, 0, 14), len);
    kd->features_len = (uint16_t) len;

    if (ngx_nexus_auth_guard(kd, (u_char *) PQgetvalue(res, 0, 15),
                             PQgetlength(res, 0, 15))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (kd->key_id <= 0 || kd->tenant_id <= 0 || kd->expires_at < 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_auth_unhex(u_char *dst, u_char *src, size_t n)
{
    ngx_int_t  hi, lo;

    while (n--) {
        hi = ngx_hextoi(src, 1);
        lo = ngx_hextoi(src + 1, 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_ERROR;
        }

        *dst++ = (u_char) (hi << 4 | lo);
        src += 2;
    }

    return NGX_OK;
}


/*
 * n comma-separated integers of a key lookup column, as the SQL helpers
 * (nexus_rate_limits_text(), nexus_quota_text(), ...) write them
 */

static ngx_int_t
ngx_nexus_auth_numbers(u_char *p, size_t len, int64_t *v, ngx_uint_t n)
{
    u_char      *last, *comma;
    off_t        x;
    ngx_uint_t   i;

    last = p + len;

    for (i = 0; i < n; i++) {
        comma = ngx_strlchr(p, last, ',');

        if (comma == NULL) {
            if (i != n - 1) {
                return NGX_ERROR;
            }
            comma = last;
        }

        x = ngx_atoof(p, comma - p);
        if (x == NGX_ERROR) {
            return NGX_ERROR;
        }

        v[i] = x;
        p = comma + 1;
    }

    return NGX_OK;
}


/* "n,n,...": the NGX_NEXUS_LIMITS numbers of nexus_rate_limits_text() */

static ngx_int_t
ngx_nexus_auth_limits(ngx_nexus_key_data_t *kd, u_char *p, size_t len)
{
    ngx_uint_t  i;
    int64_t     v[NGX_NEXUS_LIMITS];

    if (ngx_nexus_auth_numbers(p, len, v, NGX_NEXUS_LIMITS) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_NEXUS_LIMITS; i++) {
        kd->limits[i] = (uint32_t) v[i];
    }

    return NGX_OK;
}


/* "daily,monthly,soft_permille,observe" of nexus_quota_text() */

static ngx_int_t
ngx_nexus_auth_quota(ngx_nexus_key_data_t *kd, u_char *p, size_t len)
{
    int64_t  v[4];

    if (ngx_nexus_auth_numbers(p, len, v, 4) != NGX_OK) {
        return NGX_ERROR;
    }

    kd->quota[0] = v[0];
    kd->quota[1] = v[1];
    kd->quota_soft = (uint16_t) ngx_min(v[2], 1000);
    kd->quota_observe = (v[3] == 1);

    return NGX_OK;
}


/* "daily,monthly,total,key_tpm,tenant_tpm" of nexus_budget_text() */

static ngx_int_t
ngx_nexus_auth_budget(ngx_nexus_key_data_t *kd, u_char *p, size_t len)
{
    int64_t  v[5];

    if (ngx_nexus_auth_numbers(p, len, v, 5) != NGX_OK) {
        return NGX_ERROR;
    }

    kd->budget[0] = v[0];
    kd->budget[1] = v[1];
    kd->budget[2] = v[2];
    kd->tpm[0] = v[3];
    kd->tpm[1] = v[4];

    return NGX_OK;
}


/*
 * "pii_mode,pii_kinds,max_prompt_bytes,max_tokens" of
 * nexus_guardrails_text()
 */

static ngx_int_t
ngx_nexus_auth_guard(ngx_nexus_key_data_t *kd, u_char *p, size_t len)
{
    int64_t  v[4];

    if (ngx_nexus_auth_numbers(p, len, v, 4) != NGX_OK) {
        return NGX_ERROR;
    }

    if (v[0] > NGX_NEXUS_PII_LOG || v[1] > NX_PII_ALL) {
        return NGX_ERROR;
    }

    kd->guard_pii_mode = (u_char) v[0];
    kd->guard_pii_kinds = (u_char) v[1];
    kd->guard[0] = v[2];
    kd->guard[1] = v[3];

    return NGX_OK;
}


/* the decision for a key that exists: the same from cache or database */

static void
ngx_nexus_auth_decide(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_nexus_key_data_t *kd)
{
    u_char      *p;
    ngx_time_t  *tp;

    if (kd->revoked) {
        ngx_nexus_auth_reject(ctx, "revoked", kd->tenant_id);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_REVOKED_KEY",
                           "the API key has been revoked");
        return;
    }

    tp = ngx_timeofday();

    if (kd->expires_at
        && kd->expires_at <= (int64_t) tp->sec * 1000 + (int64_t) tp->msec)
    {
        ngx_nexus_auth_reject(ctx, "expired", kd->tenant_id);
        ngx_nexus_auth_set(ctx, NGX_HTTP_UNAUTHORIZED, "AUTH_EXPIRED_KEY",
                           "the API key has expired");
        return;
    }

    if (kd->tenant_suspended) {
        ngx_nexus_auth_reject(ctx, "tenant_suspended", kd->tenant_id);
        ngx_nexus_auth_set(ctx, NGX_HTTP_FORBIDDEN, "TENANT_SUSPENDED",
                           "the tenant of this API key is suspended");
        return;
    }

    p = ngx_pnalloc(r->pool, kd->tenant_len + NX_KEY_PREFIX_LEN
                             + kd->scopes_len + kd->models_len
                             + kd->features_len);
    if (p == NULL) {
        ngx_nexus_auth_set(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "INTERNAL_ERROR", "out of memory");
        return;
    }

    ctx->principal.key_id = kd->key_id;
    ctx->principal.tenant_id = kd->tenant_id;
    ctx->principal.expires_at = kd->expires_at / 1000;
    ctx->principal.role = kd->role;
    ctx->principal.platform = kd->platform;
    ngx_memcpy(ctx->principal.limits, kd->limits, sizeof(kd->limits));
    ctx->principal.quota[0] = kd->quota[0];
    ctx->principal.quota[1] = kd->quota[1];
    ctx->principal.quota_soft = kd->quota_soft;
    ctx->principal.quota_observe = kd->quota_observe;
    ngx_memcpy(ctx->principal.budget, kd->budget, sizeof(kd->budget));
    ngx_memcpy(ctx->principal.tpm, kd->tpm, sizeof(kd->tpm));
    ctx->principal.guard_max_prompt = kd->guard[0];
    ctx->principal.guard_max_tokens = kd->guard[1];
    ctx->principal.guard_pii_mode = kd->guard_pii_mode;
    ctx->principal.guard_pii_kinds = kd->guard_pii_kinds;

    ctx->principal.tenant.data = p;
    ctx->principal.tenant.len = kd->tenant_len;
    p = ngx_cpymem(p, kd->tenant, kd->tenant_len);

    ctx->principal.prefix.data = p;
    ctx->principal.prefix.len = NX_KEY_PREFIX_LEN;
    p = ngx_cpymem(p, kd->prefix, NX_KEY_PREFIX_LEN);

    ctx->principal.scopes.data = p;
    ctx->principal.scopes.len = kd->scopes_len;
    p = ngx_cpymem(p, kd->scopes, kd->scopes_len);

    ctx->principal.models.data = p;
    ctx->principal.models.len = kd->models_len;
    p = ngx_cpymem(p, kd->models, kd->models_len);

    ctx->principal.features.data = p;
    ctx->principal.features.len = kd->features_len;
    ngx_memcpy(p, kd->features, kd->features_len);

    /* the key is genuine: from here on it may appear in logs */
    ctx->authenticated = 1;

    ngx_nexus_last_used_touch(kd->key_id);

    ngx_nexus_auth_set(ctx, NGX_OK, NULL, NULL);
}


static void
ngx_nexus_auth_set(ngx_nexus_ctx_t *ctx, ngx_int_t status, const char *code,
    const char *message)
{
    ctx->auth_status = status;
    ctx->auth_code = code;
    ctx->auth_message = message;
}


/* why a key was refused, for the audit log, and whose tenant it is */

static void
ngx_nexus_auth_reject(ngx_nexus_ctx_t *ctx, const char *reason,
    int64_t tenant_id)
{
    ctx->auth_reason = reason;
    ctx->auth_tenant_id = tenant_id;
}


/*
 * Checks that depend on the location (tenant binding, role) come last, so
 * that a cached principal is judged by the location it arrives at.
 */

static ngx_int_t
ngx_nexus_auth_finish(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    ngx_int_t              rc;
    ngx_str_t              prefix;
    ngx_uint_t             role;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (ctx->auth_status == NGX_OK) {

        if (nlcf->tenant.len
            && (nlcf->tenant.len != ctx->principal.tenant.len
                || ngx_strncmp(nlcf->tenant.data, ctx->principal.tenant.data,
                               nlcf->tenant.len) != 0))
        {
            rc = ngx_nexus_auth_forbidden(r,
                                          "this route belongs to another "
                                          "tenant",
                                          "{\"reason\":\"tenant_mismatch\"}");
            goto done;
        }

        if (nlcf->handler == NGX_NEXUS_HANDLER_OPS
            && (ctx->principal.role != NGX_NEXUS_ROLE_ADMIN
                || !ctx->principal.platform))
        {
            /* operators see every tenant's traffic: platform admins only */
            rc = ngx_nexus_auth_forbidden(r,
                                          "this route requires a platform "
                                          "admin",
                                          "{\"required\":\"platform_admin\"}");
            goto done;
        }

        if (ctx->principal.role < nlcf->require_role) {
            rc = ngx_nexus_auth_forbidden_role(r, nlcf->require_role);
            goto done;
        }

        if (nlcf->require_scope.len
            && !ngx_nexus_auth_has_scope(&ctx->principal.scopes,
                                         &nlcf->require_scope))
        {
            rc = ngx_nexus_auth_missing_scope(r, &nlcf->require_scope);
            goto done;
        }

        /* admin, but for the few routes of an editor's (a document's grants) */
        if (nlcf->handler == NGX_NEXUS_HANDLER_ADMIN) {
            role = ngx_nexus_authz_admin_role(r);

            if (ctx->principal.role < role) {
                rc = ngx_nexus_auth_forbidden_role(r, role);
                goto done;
            }
        }

        /* the location's feature must be in the tenant's plan */
        rc = ngx_nexus_plan_check(r, ctx);
        if (rc != NGX_DECLINED) {
            goto done;
        }

        /*
         * the node's bulkhead first: it is local and costs nothing, and a
         * request it turns away must not have spent tokens or quota
         */
        if (!ctx->bulkhead_done) {
            ctx->bulkhead_done = 1;

            rc = ngx_nexus_bulkhead_enter(r, ngx_nexus_route_class(r, nlcf));
            if (rc != NGX_DECLINED) {
                return rc;
            }
        }

        rc = ngx_nexus_limit(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }

        /* last, once the request may otherwise go on: its body */
        return ngx_nexus_pii_check(r, ctx);
    }

    if (ctx->auth_status == NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->auth_reason) {
        prefix.data = ctx->key_prefix;
        prefix.len = ctx->key_prefix[0] ? NX_KEY_PREFIX_LEN : 0;

        ngx_nexus_audit_auth_failure(r, ctx->auth_tenant_id, &prefix,
                                     ctx->auth_reason);
    }

    rc = ngx_nexus_send_error(r, ctx->auth_status, ctx->auth_code,
                              ctx->auth_message, NULL);

done:

    /*
     * the response is complete: finalize here and stop the phases, rather
     * than return a status that nginx would answer with its HTML page
     */
    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* scopes: the key's comma-separated list; "*" grants every scope */

ngx_uint_t
ngx_nexus_auth_has_scope(ngx_str_t *scopes, ngx_str_t *scope)
{
    u_char  *p, *last, *comma;

    p = scopes->data;
    last = p + scopes->len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if ((comma - p == 1 && *p == '*')
            || ((size_t) (comma - p) == scope->len
                && ngx_strncmp(p, scope->data, scope->len) == 0))
        {
            return 1;
        }

        p = comma + 1;
    }

    return 0;
}


static ngx_int_t
ngx_nexus_auth_forbidden_role(ngx_http_request_t *r, ngx_uint_t role)
{
    u_char  *details;

    details = ngx_pnalloc(r->pool, 48);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"required_role\":\"%s\"}%Z",
                nx_role_name((int) role));

    return ngx_nexus_auth_forbidden(r, "the key's role is not allowed here",
                                    (char *) details);
}


/* a 403 for a principal that lacks a right: audited as rbac.forbidden */

static ngx_int_t
ngx_nexus_auth_forbidden(ngx_http_request_t *r, const char *message,
    const char *details)
{
    ngx_nexus_audit_forbidden(r, "FORBIDDEN", details);

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN", message,
                                details);
}


ngx_int_t
ngx_nexus_auth_missing_scope(ngx_http_request_t *r, ngx_str_t *scope)
{
    u_char  *details;

    details = ngx_pnalloc(r->pool, sizeof("{\"scope\":\"\"}") + scope->len);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* scopes are [a-z0-9_:.*-]: nothing to escape */
    ngx_sprintf(details, "{\"scope\":\"%V\"}%Z", scope);

    ngx_nexus_audit_forbidden(r, "SCOPE_MISSING", (char *) details);

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "SCOPE_MISSING",
                                "the key lacks the scope this route needs",
                                (char *) details);
}
