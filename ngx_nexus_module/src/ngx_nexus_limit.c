
/*
 * Copyright (C) Nexus authors
 *
 * Rate limits: a token bucket per API key and one per tenant, for the
 * location's route class, checked together - both or neither - by one
 * Lua script in one Redis round trip, so the limit holds across every
 * node of a fleet, not per node.  The script reads Redis's clock, so
 * nodes with skewed clocks still share one timeline.
 *
 * Runs in the ACCESS phase right after authentication (the buckets are
 * the key's and its tenant's), except for a gateway call's, which run in
 * its admission with its budget's reservation (ngx_nexus_admit.c).  When Redis cannot answer within its
 * timeout, nexus_fail_mode decides: closed (503) or open (allowed, with
 * X-RateLimit-Status: degraded).  Without nexus_redis, a single node keeps
 * the same buckets in its shared zone (ngx_nexus_limit_shm.c).
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_audit.h"


static void ngx_nexus_limit_handler(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_limit_finish(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);
static ngx_uint_t ngx_nexus_limit_on(ngx_nexus_ctx_t *ctx,
    ngx_nexus_loc_conf_t *nlcf);
static ngx_uint_t ngx_nexus_limit_leases(ngx_nexus_loc_conf_t *nlcf);
static ngx_int_t ngx_nexus_limit_header(ngx_http_request_t *r,
    const char *name, int64_t value);
static ngx_int_t ngx_nexus_limit_busy(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx, ngx_nexus_loc_conf_t *nlcf);
static ngx_int_t ngx_nexus_limit_quota(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);
static ngx_int_t ngx_nexus_limit_quota_headers(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);
static ngx_nexus_lease_t *ngx_nexus_lease_create(ngx_http_request_t *r,
    u_char *kkey, size_t klen, u_char *tkey, size_t tlen);
static void ngx_nexus_lease_hold(ngx_nexus_lease_t *lease);
static void ngx_nexus_lease_renew(ngx_event_t *ev);
static void ngx_nexus_limit_rates(ngx_nexus_loc_conf_t *nlcf,
    ngx_uint_t cls, ngx_nexus_principal_t *pr, ngx_uint_t *rates);
static void ngx_nexus_limit_apply(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_nexus_limit_reply_t *lr);
static void ngx_nexus_limit_audit(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_str_t *fired);


/* the defaults of reference file 000, by route class */

static ngx_uint_t  ngx_nexus_limit_defaults[4][4] = {
    /* key rps, key burst, tenant rps, tenant burst */
    { 1, 5, 3, 15 },            /* run */
    { 2, 10, 5, 25 },           /* mutation */
    { 5, 20, 15, 60 },          /* read */
    { 2, 10, 4, 20 },           /* ops */
};

static const char  *ngx_nexus_limit_classes[] = {
    "run", "mutation", "read", "ops"
};


static ngx_nexus_redis_script_t  ngx_nexus_limit_script;
static ngx_nexus_redis_script_t  ngx_nexus_lease_script;

/* KEYS: key leases, tenant leases; ARGV: lease id, lease ttl */
static const char  ngx_nexus_lease_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ttl = tonumber(ARGV[2])\n"
    "for i = 1, 2 do\n"
    "  if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl, ARGV[1]) then\n"
    "    redis.call('PEXPIRE', KEYS[i], ttl + 1000)\n"
    "  end\n"
    "end\n"
    "return 1\n";
static time_t                    ngx_nexus_limit_warned;

/*
 * Everything a request may consume, checked first and taken only if all
 * of it allows (NGX_NEXUS_LUA_LIMITS), for the requests that are not the
 * gateway's calls: those take theirs with their budget's reservation
 * (ngx_nexus_admit.c).
 */

static const char  ngx_nexus_limit_lua[] =
    "local lk, la, nb, nf, nhold = 0, 0, 1, 1, 0\n"
    NGX_NEXUS_LUA_CALENDAR
    NGX_NEXUS_LUA_CLOCK
    "clock()\n"
    NGX_NEXUS_LUA_BUCKET
    NGX_NEXUS_LUA_LIMITS
    "if lcheck() then lcommit() end\n"
    "return lreply()\n";


ngx_int_t
ngx_nexus_limit_init(ngx_conf_t *cf)
{
    if (ngx_nexus_redis_script(cf, &ngx_nexus_lease_script,
                               ngx_nexus_lease_lua)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_redis_script(cf, &ngx_nexus_limit_script,
                                  ngx_nexus_limit_lua);
}


/* nexus_concurrency [key=N] [tenant=N]; */

char *
ngx_nexus_concurrency_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (nlcf->concurrency[0] != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    nlcf->concurrency[0] = 0;
    nlcf->concurrency[1] = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);
            if (n <= 0 || n > 1000000) {
                goto invalid;
            }
            nlcf->concurrency[0] = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tenant=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n <= 0 || n > 1000000) {
                goto invalid;
            }
            nlcf->concurrency[1] = n;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * nexus_rate_limits [key=RPS[:BURST]] [tenant=RPS[:BURST]];
 * rates[] is key rps, key burst, tenant rps, tenant burst (0: default).
 */

char *
ngx_nexus_limit_rates_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    u_char      *colon;
    ngx_int_t    rps, burst;
    ngx_str_t   *value, v;
    ngx_uint_t   i, off;

    if (nlcf->rates[0] != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < 4; i++) {
        nlcf->rates[i] = 0;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            if (nlcf->rates[0]) {
                goto invalid;
            }

            off = 0;
            v.data = value[i].data + 4;
            v.len = value[i].len - 4;

        } else if (ngx_strncmp(value[i].data, "tenant=", 7) == 0) {
            if (nlcf->rates[2]) {
                goto invalid;
            }

            off = 2;
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;

        } else {
            goto invalid;
        }

        colon = ngx_strlchr(v.data, v.data + v.len, ':');

        rps = ngx_atoi(v.data, colon ? (size_t) (colon - v.data) : v.len);
        burst = colon ? ngx_atoi(colon + 1, v.data + v.len - colon - 1)
                      : rps;

        /* the same ranges as the overrides stored in PostgreSQL */
        if (rps <= 0 || rps > 999999 || burst <= 0 || burst > 9999999) {
            goto invalid;
        }

        nlcf->rates[off] = rps;
        nlcf->rates[off + 1] = burst;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * Each bucket's rate and burst: the key's (or tenant's) own override from
 * PostgreSQL, else the location's nexus_rate_limits, else the default of
 * the route class.  A bucket's rate and burst come as a pair.
 */

static void
ngx_nexus_limit_rates(ngx_nexus_loc_conf_t *nlcf, ngx_uint_t cls,
    ngx_nexus_principal_t *pr, ngx_uint_t *rates)
{
    uint32_t    *own;
    ngx_uint_t   i;

    own = &pr->limits[cls * 4];

    for (i = 0; i < 4; i += 2) {

        if (own[i]) {
            rates[i] = own[i];
            rates[i + 1] = own[i + 1] ? own[i + 1] : own[i];

        } else if (nlcf->rates[i] && nlcf->rates[i] != NGX_CONF_UNSET_UINT) {
            rates[i] = nlcf->rates[i];
            rates[i + 1] = nlcf->rates[i + 1];

        } else {
            rates[i] = ngx_nexus_limit_defaults[cls][i];
            rates[i + 1] = ngx_nexus_limit_defaults[cls][i + 1];
        }
    }
}


/*
 * Called by the access handler once the key is accepted: NGX_OK to go on,
 * NGX_AGAIN while Redis answers, or NGX_DONE when a response was sent.
 */

ngx_int_t
ngx_nexus_limit(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    ngx_uint_t                 cls, rates[4];
    ngx_nexus_redis_cmd_t     *cmd;
    ngx_nexus_loc_conf_t      *nlcf;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_limit_call_t     lc;
    ngx_nexus_limit_result_t   res;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (!ngx_nexus_limit_on(ctx, nlcf)) {
        return NGX_OK;
    }

    switch (ctx->limit_state) {

    case NGX_NEXUS_LIMIT_PASSED:
    case NGX_NEXUS_LIMIT_DEFERRED:
        /* decided (and its headers added) on an earlier pass, or later */
        return NGX_OK;

    case NGX_NEXUS_AUTH_WAITING:
        return NGX_AGAIN;

    case NGX_NEXUS_AUTH_DONE:
        return ngx_nexus_limit_decide(r, ctx);

    default:
        break;
    }

    if (!ngx_nexus_redis_configured()) {
        /* rate limits only: in-flight caps require nexus_redis */
        ctx->limit_state = NGX_NEXUS_AUTH_DONE;

        cls = ngx_nexus_route_class(r, nlcf);
        ngx_nexus_limit_rates(nlcf, cls, &ctx->principal, rates);

        if (ngx_nexus_limit_local(nmcf->shm_zone, &ctx->principal,
                                  ngx_nexus_limit_classes[cls],
                                  rates, &res)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "nexus rate limits: no room in the zone");
            ctx->limit_status = NGX_DECLINED;
            return ngx_nexus_limit_decide(r, ctx);
        }

        ctx->limit_status = res.allowed ? NGX_OK : NGX_HTTP_TOO_MANY_REQUESTS;
        ctx->limit_tenant_scope = res.tenant_scope;
        ctx->limit_retry_ms = res.retry_ms;
        ctx->limit_remaining = res.remaining;

        return ngx_nexus_limit_decide(r, ctx);
    }

    if (ngx_nexus_api_gateway_call(r)) {
        /*
         * a call of the gateway's takes all of it in one round trip with
         * its budget's reservation, once its body is read
         */
        ctx->limit_state = NGX_NEXUS_LIMIT_DEFERRED;
        return NGX_OK;
    }

    if (ngx_nexus_limit_prepare(r, ctx, &lc, 0) == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cmd = ngx_nexus_redis_eval(&ngx_nexus_limit_script,
                               NGX_NEXUS_LIMIT_NKEYS, NGX_NEXUS_LIMIT_NARGV,
                               lc.argv, lc.argvlen);
    if (cmd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cmd->handler = ngx_nexus_limit_handler;
    cmd->data = r;

    ctx->limit_state = NGX_NEXUS_AUTH_DONE;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        ctx->limit_status = NGX_DECLINED;
        return ngx_nexus_limit_decide(r, ctx);
    }

    ctx->rcmd[0] = cmd;
    ctx->limit_state = NGX_NEXUS_AUTH_WAITING;

    ngx_nexus_limit_sent(ctx);

    ngx_nexus_wait(r);

    return NGX_AGAIN;
}


/*
 * A gateway call refused before its admission (its body too large or not
 * valid, its model forbidden, a guardrail or a policy said no) still
 * counts against its rate limits, as every other request does: from the
 * log phase, its tokens are taken without waiting for the answer, so a
 * key that floods invalid calls is limited on its next ones. It takes no
 * quota unit and holds no lease: it was never served.
 */

void
ngx_nexus_limit_charge(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    ngx_nexus_redis_cmd_t   *cmd;
    ngx_nexus_loc_conf_t    *nlcf;
    ngx_nexus_limit_call_t   lc;

    if (ctx->limit_state != NGX_NEXUS_LIMIT_DEFERRED) {
        return;
    }

    ctx->limit_state = NGX_NEXUS_LIMIT_PASSED;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (nlcf->rate_limit != 1
        || ngx_nexus_limit_prepare(r, ctx, &lc, 1) == NGX_ERROR)
    {
        return;
    }

    /* fire and forget: a lost charge only leaves a token unspent */
    cmd = ngx_nexus_redis_eval(&ngx_nexus_limit_script,
                               NGX_NEXUS_LIMIT_NKEYS, NGX_NEXUS_LIMIT_NARGV,
                               lc.argv, lc.argvlen);
    if (cmd) {
        (void) ngx_nexus_redis_send(&cmd, 1);
    }
}


/* whether any limit concerns the request: a rate, an in-flight cap, a quota */

static ngx_uint_t
ngx_nexus_limit_on(ngx_nexus_ctx_t *ctx, ngx_nexus_loc_conf_t *nlcf)
{
    /* quotas are counted in Redis: without it they are not enforced */
    return nlcf->rate_limit == 1
           || ngx_nexus_limit_leases(nlcf)
           || ((ctx->principal.quota[0] || ctx->principal.quota[1])
               && ngx_nexus_redis_configured());
}


static ngx_uint_t
ngx_nexus_limit_leases(ngx_nexus_loc_conf_t *nlcf)
{
    return (nlcf->concurrency[0] && nlcf->concurrency[0]
                                    != NGX_CONF_UNSET_UINT)
           || (nlcf->concurrency[1] && nlcf->concurrency[1]
                                       != NGX_CONF_UNSET_UINT);
}


ngx_int_t
ngx_nexus_limit_prepare(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_nexus_limit_call_t *lc, ngx_uint_t rates_only)
{
    u_char                 *p;
    ngx_uint_t              i, cls, leases, quota, rates[4];
    const char            **argv;
    size_t                 *argvlen;
    ngx_nexus_lease_t      *lease;
    ngx_nexus_loc_conf_t   *nlcf;
    ngx_nexus_main_conf_t  *nmcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    argv = lc->argv;
    argvlen = lc->argvlen;

    leases = !rates_only && ngx_nexus_limit_leases(nlcf);
    quota = !rates_only
            && (ctx->principal.quota[0] || ctx->principal.quota[1]);

    cls = ngx_nexus_route_class(r, nlcf);

    ngx_nexus_limit_rates(nlcf, cls, &ctx->principal, rates);

    p = ngx_nexus_limit_bucket(lc->keys[0], 0, ctx->principal.key_id, cls);
    argv[0] = (const char *) lc->keys[0];
    argvlen[0] = p - lc->keys[0];

    p = ngx_nexus_limit_bucket(lc->keys[1], 1, ctx->principal.tenant_id, cls);
    argv[1] = (const char *) lc->keys[1];
    argvlen[1] = p - lc->keys[1];

    p = ngx_sprintf(lc->keys[2], "nx:cc:k:%L", ctx->principal.key_id);
    argv[2] = (const char *) lc->keys[2];
    argvlen[2] = p - lc->keys[2];

    p = ngx_sprintf(lc->keys[3], "nx:cc:t:%L", ctx->principal.tenant_id);
    argv[3] = (const char *) lc->keys[3];
    argvlen[3] = p - lc->keys[3];

    for (i = 0; i < 4; i++) {
        p = ngx_sprintf(lc->args[i], "%ui",
                        nlcf->rate_limit == 1 ? rates[i] : 0);
        argv[4 + i] = (const char *) lc->args[i];
        argvlen[4 + i] = p - lc->args[i];
    }

    for (i = 0; i < 2; i++) {
        p = ngx_sprintf(lc->args[4 + i], "%ui",
                        leases && nlcf->concurrency[i] != NGX_CONF_UNSET_UINT
                        ? nlcf->concurrency[i] : 0);
        argv[8 + i] = (const char *) lc->args[4 + i];
        argvlen[8 + i] = p - lc->args[4 + i];
    }

    lease = NULL;

    if (leases) {
        lease = ngx_nexus_lease_create(r, lc->keys[2], argvlen[2],
                                       lc->keys[3], argvlen[3]);
        if (lease == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->lease = lease;

    argv[10] = lease ? (const char *) lease->id.data : "-";
    argvlen[10] = lease ? lease->id.len : 1;

    p = ngx_sprintf(lc->args[6], "%M", nmcf->lease_ttl);
    argv[11] = (const char *) lc->args[6];
    argvlen[11] = p - lc->args[6];

    /* a run costs 3 units of quota, anything else 1 */
    p = ngx_sprintf(lc->args[7], "%L", ctx->principal.tenant_id);
    argv[12] = (const char *) lc->args[7];
    argvlen[12] = p - lc->args[7];
    p = ngx_sprintf(lc->args[8], "%L", quota ? ctx->principal.quota[0] : 0);
    argv[13] = (const char *) lc->args[8];
    argvlen[13] = p - lc->args[8];
    p = ngx_sprintf(lc->args[9], "%L", quota ? ctx->principal.quota[1] : 0);
    argv[14] = (const char *) lc->args[9];
    argvlen[14] = p - lc->args[9];
    p = ngx_sprintf(lc->args[10], "%ui", ctx->principal.quota_soft);
    argv[15] = (const char *) lc->args[10];
    argvlen[15] = p - lc->args[10];
    argv[16] = ctx->principal.quota_observe ? "1" : "0";
    argvlen[16] = 1;
    argv[17] = (cls == NGX_NEXUS_CLASS_RUN) ? "3" : "1";
    argvlen[17] = 1;

    return ngx_nexus_limit_on(ctx, nlcf) ? NGX_OK : NGX_DECLINED;
}


/* a request bucket's key in Redis: the key's (tenant 0) or the tenant's */

u_char *
ngx_nexus_limit_bucket(u_char *buf, ngx_uint_t tenant, int64_t id,
    ngx_uint_t cls)
{
    return ngx_sprintf(buf, "nx:rl:%c:%L:%s", tenant ? 't' : 'k', id,
                       ngx_nexus_limit_classes[cls]);
}


/*
 * What the limits script would be sent for the request, as numbers, for
 * a block's shape (ngx_nexus_block.c); the same choices as
 * ngx_nexus_limit_prepare()'s.
 */

ngx_int_t
ngx_nexus_limit_identity(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    int64_t *v)
{
    ngx_uint_t              i, cls, quota, rates[4];
    ngx_nexus_loc_conf_t   *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (!ngx_nexus_limit_on(ctx, nlcf)) {
        return NGX_DECLINED;
    }

    if (ngx_nexus_limit_leases(nlcf)) {
        return NGX_BUSY;
    }

    cls = ngx_nexus_route_class(r, nlcf);
    ngx_nexus_limit_rates(nlcf, cls, &ctx->principal, rates);

    quota = (ctx->principal.quota[0] || ctx->principal.quota[1]);

    v[0] = ctx->principal.key_id;
    v[1] = ctx->principal.tenant_id;
    v[2] = cls;

    for (i = 0; i < 4; i++) {
        v[3 + i] = (nlcf->rate_limit == 1) ? (int64_t) rates[i] : 0;
    }

    v[7] = quota ? ctx->principal.quota[0] : 0;
    v[8] = quota ? ctx->principal.quota[1] : 0;
    v[9] = ctx->principal.quota_soft;
    v[10] = ctx->principal.quota_observe;
    v[11] = (cls == NGX_NEXUS_CLASS_RUN) ? 3 : 1;

    return NGX_OK;
}


/* from here the lease may exist in Redis, even if the request goes away
 * before the answer: the cleanup removes it then too */

void
ngx_nexus_limit_sent(ngx_nexus_ctx_t *ctx)
{
    if (ctx->lease) {
        ctx->lease->held = 1;
    }
}


static void
ngx_nexus_limit_handler(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_http_request_t  *r;
    ngx_nexus_ctx_t     *ctx;

    r = cmd->data;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    ctx->rcmd[0] = NULL;

    ngx_nexus_limit_answer(r, ctx, rc == NGX_OK ? reply : NULL, 1);

    ngx_nexus_resume(r);
}


/*
 * The limits' answer (NULL: none came): ctx->limit_* for the decision.
 * taken: whether the script took what the limits allowed; it did not when
 * something checked after them refused.
 */

void
ngx_nexus_limit_answer(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    redisReply *reply, ngx_uint_t taken)
{
    ngx_nexus_limit_reply_t  lr;

    ctx->limit_state = NGX_NEXUS_AUTH_DONE;
    ctx->limit_status = NGX_DECLINED;

    if (reply != NULL && ngx_nexus_limit_parse(reply, &lr) == NGX_OK) {
        ngx_nexus_limit_apply(r, ctx, &lr);

        if (ctx->lease) {
            if (ctx->limit_status == NGX_OK && taken) {
                /* ours now: keep it alive, give it back at the end */
                ngx_nexus_lease_hold(ctx->lease);

            } else {
                /* refused: nothing was written */
                ctx->lease->held = 0;
            }
        }

    } else if (reply != NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus rate limit script failed: %*s",
                      reply->type == REDIS_REPLY_ERROR ? reply->len : 0,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    }
}


/* the limits' part of a script's answer (NGX_NEXUS_LUA_LIMITS' lreply) */

ngx_int_t
ngx_nexus_limit_parse(redisReply *reply, ngx_nexus_limit_reply_t *lr)
{
    size_t       i;
    redisReply **e;

    /* integers and strings, in lreply()'s order */
    static const char  shape[] = "isiissiiiis";

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != sizeof(shape) - 1)
    {
        return NGX_DECLINED;
    }

    e = reply->element;

    for (i = 0; i < sizeof(shape) - 1; i++) {
        if (e[i]->type != (shape[i] == 'i' ? REDIS_REPLY_INTEGER
                                           : REDIS_REPLY_STRING))
        {
            return NGX_DECLINED;
        }
    }

    lr->allowed = (e[0]->integer != 0);
    lr->tenant_scope = (e[1]->len == 6
                        && ngx_strncmp(e[1]->str, "tenant", 6) == 0);
    lr->retry_ms = e[2]->integer;
    lr->remaining = e[3]->integer;
    lr->concurrency = (e[4]->len == 11);
    lr->quota = (e[4]->len == 5);

    /* quota: the binding period ("day", "month"), limit, used, left */
    lr->quota_period = e[5]->len == 3 ? 1 : e[5]->len == 5 ? 2 : 0;
    lr->quota_limit = e[6]->integer;
    lr->quota_used = e[7]->integer;
    lr->quota_remaining = e[8]->integer;
    lr->quota_warn = (e[9]->integer != 0);
    lr->fired.data = (u_char *) e[10]->str;
    lr->fired.len = e[10]->len;

    return NGX_OK;
}


static void
ngx_nexus_limit_apply(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_nexus_limit_reply_t *lr)
{
    ctx->limit_status = lr->allowed ? NGX_OK : NGX_HTTP_TOO_MANY_REQUESTS;
    ctx->limit_retry_ms = lr->retry_ms;
    ctx->limit_remaining = lr->remaining;
    ctx->limit_tenant_scope = lr->tenant_scope;
    ctx->limit_concurrency = lr->concurrency;
    ctx->limit_quota = lr->quota;
    ctx->quota_period = lr->quota_period;
    ctx->quota_limit = lr->quota_limit;
    ctx->quota_used = lr->quota_used;
    ctx->quota_remaining = lr->quota_remaining;
    ctx->quota_warn = lr->quota_warn;

    if (lr->fired.len) {
        ngx_nexus_limit_audit(r, ctx, &lr->fired);
    }
}


/*
 * A request a block admits (ngx_nexus_block.c): what the limits would
 * have answered it, decided as theirs.  As ngx_nexus_limit_decide().
 */

ngx_int_t
ngx_nexus_limit_member(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_nexus_limit_reply_t *lr)
{
    ctx->limit_state = NGX_NEXUS_AUTH_DONE;

    ngx_nexus_limit_apply(r, ctx, lr);

    return ngx_nexus_limit_decide(r, ctx);
}


/*
 * The error code the decision answers with, before it does (NULL: it lets
 * the request go on), for the gateway's usage event.
 */

const char *
ngx_nexus_limit_refusal(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (ctx->limit_status == NGX_DECLINED) {
        return nlcf->fail_mode == NGX_NEXUS_FAIL_OPEN
               ? NULL : "RATE_LIMIT_UNAVAILABLE";
    }

    if (ctx->limit_status == NGX_OK) {
        return NULL;
    }

    return ctx->limit_concurrency ? "CONCURRENCY_LIMITED"
           : ctx->limit_quota ? "QUOTA_EXCEEDED" : "RATE_LIMITED";
}


/* the access phase may pass here again (a body read later): decide once */

ngx_int_t
ngx_nexus_limit_decide(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_nexus_limit_finish(r, ctx);

    if (rc == NGX_OK) {
        ctx->limit_state = NGX_NEXUS_LIMIT_PASSED;
    }

    return rc;
}


static ngx_int_t
ngx_nexus_limit_finish(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    int64_t                retry;
    ngx_int_t              rc;
    ngx_uint_t             rates[4], limit, cls;
    const char            *scope, *cname;
    u_char                *details;
    ngx_nexus_loc_conf_t  *nlcf;
    u_char                 members[128];

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    cls = ngx_nexus_route_class(r, nlcf);
    cname = ngx_nexus_limit_classes[cls];

    ngx_nexus_limit_rates(nlcf, cls, &ctx->principal, rates);

    if (ctx->limit_status == NGX_DECLINED) {

        if (nlcf->fail_mode == NGX_NEXUS_FAIL_OPEN) {

            /* once a second per worker: an outage must not flood the log */
            if (ngx_time() != ngx_nexus_limit_warned) {
                ngx_nexus_limit_warned = ngx_time();
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "nexus rate limits unavailable, allowing "
                              "(nexus_fail_mode open)");
            }

            /* nor the audit log, which counts the requests let through */
            ngx_sprintf(members, "\"route_class\":\"%s\","
                        "\"fail_mode\":\"open\",\"decision\":"
                        "\"allowed\"%Z", cname);

            ngx_nexus_audit_aggregate(r, NGX_NEXUS_AUDIT_AGG_DEGRADED,
                                      ctx->principal.tenant_id,
                                      &ctx->principal.prefix, cname,
                                      (char *) members);

            if (ngx_nexus_add_header(r, "X-RateLimit-Status", "degraded")
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return NGX_OK;
        }

        rc = ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "RATE_LIMIT_UNAVAILABLE",
                                  "rate limits cannot be checked, try again",
                                  NULL);
        goto done;
    }

    limit = ctx->limit_tenant_scope ? rates[3] : rates[1];

    if (ctx->limit_status != NGX_OK && ctx->limit_concurrency) {
        return ngx_nexus_limit_busy(r, ctx, nlcf);
    }

    if (ctx->limit_status != NGX_OK && ctx->limit_quota) {
        return ngx_nexus_limit_quota(r, ctx);
    }

    if (ctx->limit_status == NGX_OK && ctx->quota_period
        && ngx_nexus_limit_quota_headers(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->limit_status == NGX_OK && nlcf->rate_limit != 1) {
        return NGX_OK;
    }

    if (ctx->limit_status == NGX_OK) {
        if (ngx_nexus_limit_header(r, "X-RateLimit-Limit", rates[1])
               != NGX_OK
            || ngx_nexus_limit_header(r, "X-RateLimit-Remaining",
                                      ctx->limit_remaining)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_OK;
    }

    scope = ctx->limit_tenant_scope ? "tenant" : "api_key";
    retry = ngx_max(ctx->limit_retry_ms, 1);

    details = ngx_pnalloc(r->pool, 128);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"scope\":\"%s\",\"route_class\":\"%s\","
                "\"retry_after_ms\":%L}%Z", scope, cname, retry);

    if (ngx_nexus_add_header(r, "X-RateLimit-Scope", scope) != NGX_OK
        || ngx_nexus_add_header(r, "X-RateLimit-Route-Class", cname) != NGX_OK
        || ngx_nexus_limit_header(r, "X-RateLimit-Retry-After-Ms", retry)
           != NGX_OK
        || ngx_nexus_limit_header(r, "Retry-After", (retry + 999) / 1000)
           != NGX_OK
        || ngx_nexus_limit_header(r, "X-RateLimit-Limit", limit) != NGX_OK
        || ngx_nexus_limit_header(r, "X-RateLimit-Remaining", 0) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_nexus_audit_throttled(r, "requests", scope, cname);

    rc = ngx_nexus_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS, "RATE_LIMITED",
                              "rate limit exceeded", (char *) details);

done:

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_nexus_limit_header(ngx_http_request_t *r, const char *name,
    int64_t value)
{
    u_char  *p, *last;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, "%L", value);
    *last = '\0';

    return ngx_nexus_add_header(r, name, (const char *) p);
}


/* 429 CONCURRENCY_LIMITED: too many requests of this key or tenant open */

static ngx_int_t
ngx_nexus_limit_busy(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_nexus_loc_conf_t *nlcf)
{
    u_char      *details;
    ngx_int_t    rc;
    ngx_uint_t   limit;
    const char  *scope;

    scope = ctx->limit_tenant_scope ? "tenant" : "api_key";
    limit = nlcf->concurrency[ctx->limit_tenant_scope ? 1 : 0];

    details = ngx_pnalloc(r->pool, 64);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"scope\":\"%s\",\"limit\":%ui}%Z", scope,
                limit);

    if (ngx_nexus_add_header(r, "X-RateLimit-Scope", scope) != NGX_OK
        || ngx_nexus_limit_header(r, "X-Concurrency-Limit", limit) != NGX_OK
        || ngx_nexus_limit_header(r, "Retry-After", 1) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_nexus_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                              "CONCURRENCY_LIMITED",
                              "too many requests in flight", (char *) details);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * Concurrency leases.  A request that may run holds a lease in the key's
 * and the tenant's sorted sets, scored by its expiry.  While the request
 * lives, a timer renews it every third of nexus_lease_ttl; when the
 * request is freed (done, aborted, cut), its pool cleanup removes it.
 * A node that dies stops renewing, and its leases expire on their own.
 */

static ngx_nexus_lease_t *
ngx_nexus_lease_create(ngx_http_request_t *r, u_char *kkey, size_t klen,
    u_char *tkey, size_t tlen)
{
    u_char                 *p;
    ngx_nexus_lease_t      *lease;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    lease = ngx_pcalloc(r->pool, sizeof(ngx_nexus_lease_t));
    if (lease == NULL) {
        return NULL;
    }

    p = ngx_pnalloc(r->pool, klen + tlen + 64);
    if (p == NULL) {
        return NULL;
    }

    lease->keys[0].data = p;
    lease->keys[0].len = klen;
    p = ngx_cpymem(p, kkey, klen);

    lease->keys[1].data = p;
    lease->keys[1].len = tlen;
    p = ngx_cpymem(p, tkey, tlen);

    /* unique across the fleet without trusting anything the client sent */
    lease->id.data = p;
    p = ngx_sprintf(p, "%P:%uA:%08xD%08xD", ngx_pid, r->connection->number,
                    (uint32_t) ngx_random(), (uint32_t) ngx_random());
    lease->id.len = p - lease->id.data;

    lease->ttl = nmcf->lease_ttl;

    return lease;
}


static void
ngx_nexus_lease_hold(ngx_nexus_lease_t *lease)
{
    lease->renew.handler = ngx_nexus_lease_renew;
    lease->renew.data = lease;
    lease->renew.log = ngx_cycle->log;
    lease->renew.cancelable = 1;

    ngx_add_timer(&lease->renew, ngx_max(lease->ttl / 3, 1));
}


static void
ngx_nexus_lease_renew(ngx_event_t *ev)
{
    u_char                  ttl[NGX_INT_T_LEN];
    const char             *argv[4];
    size_t                  argvlen[4];
    ngx_nexus_lease_t      *lease;
    ngx_nexus_redis_cmd_t  *cmd;

    lease = ev->data;

    argv[0] = (const char *) lease->keys[0].data;
    argvlen[0] = lease->keys[0].len;
    argv[1] = (const char *) lease->keys[1].data;
    argvlen[1] = lease->keys[1].len;
    argv[2] = (const char *) lease->id.data;
    argvlen[2] = lease->id.len;
    argv[3] = (const char *) ttl;
    argvlen[3] = ngx_sprintf(ttl, "%M", lease->ttl) - ttl;

    /* fire and forget: a lost renewal only shortens the lease */
    cmd = ngx_nexus_redis_eval(&ngx_nexus_lease_script, 2, 4, argv, argvlen);
    if (cmd) {
        (void) ngx_nexus_redis_send(&cmd, 1);
    }

    ngx_add_timer(ev, ngx_max(lease->ttl / 3, 1));
}


/* from the request's pool cleanup */

void
ngx_nexus_lease_release(ngx_nexus_lease_t *lease)
{
    ngx_uint_t              i;
    const char             *argv[3];
    size_t                  argvlen[3];
    ngx_nexus_redis_cmd_t  *cmds[2];

    if (lease->renew.timer_set) {
        ngx_del_timer(&lease->renew);
    }

    if (!lease->held) {
        return;
    }

    lease->held = 0;

    argv[0] = "ZREM";
    argvlen[0] = 4;
    argv[2] = (const char *) lease->id.data;
    argvlen[2] = lease->id.len;

    for (i = 0; i < 2; i++) {
        argv[1] = (const char *) lease->keys[i].data;
        argvlen[1] = lease->keys[i].len;

        cmds[i] = ngx_nexus_redis_command(3, argv, argvlen);
        if (cmds[i] == NULL) {
            if (i) {
                ngx_nexus_redis_free(cmds[0]);
            }
            return;
        }
    }

    /* if Redis cannot take it now, the lease expires by itself */
    (void) ngx_nexus_redis_send(cmds, 2);
}


static const char  *ngx_nexus_quota_periods[] = { "", "day", "month" };


static ngx_int_t
ngx_nexus_limit_quota_headers(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    if (ngx_nexus_add_header(r, "X-Quota-Period",
                             ngx_nexus_quota_periods[ctx->quota_period])
           != NGX_OK
        || ngx_nexus_limit_header(r, "X-Quota-Limit", ctx->quota_limit)
           != NGX_OK
        || ngx_nexus_limit_header(r, "X-Quota-Used", ctx->quota_used)
           != NGX_OK
        || ngx_nexus_limit_header(r, "X-Quota-Remaining",
                                  ctx->quota_remaining)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->quota_warn
        && ngx_nexus_add_header(r, "X-Quota-Warning", "soft-cap-reached")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* 402 QUOTA_EXCEEDED: the tenant's cap for the period is used up */

static ngx_int_t
ngx_nexus_limit_quota(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    u_char     *details;
    int64_t     retry;
    ngx_int_t   rc;

    details = ngx_pnalloc(r->pool, 128 + 3 * NGX_INT64_LEN);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"period\":\"%s\",\"limit\":%L,\"used\":%L,"
                "\"remaining\":%L}%Z",
                ngx_nexus_quota_periods[ctx->quota_period], ctx->quota_limit,
                ctx->quota_used, ctx->quota_remaining);

    retry = (ngx_max(ctx->limit_retry_ms, 1) + 999) / 1000;

    if (ngx_nexus_limit_quota_headers(r, ctx) != NGX_OK
        || ngx_nexus_limit_header(r, "Retry-After", retry) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_nexus_send_error(r, 402, "QUOTA_EXCEEDED",
                              "the tenant's request quota is used up",
                              (char *) details);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * The quota events the limits script fired, once per tenant and period
 * across the fleet: quota.soft_cap_reached, quota.hard_cap_blocked and
 * quota.overage (quota.overage_observed in the audit log, as in reference
 * file 000's taxonomy).
 */

static void
ngx_nexus_limit_audit(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    ngx_str_t *fired)
{
    u_char      *p, *last;
    ngx_str_t    w[4];
    const char  *type, *outcome;
    u_char       members[160];

    p = fired->data;
    last = p + fired->len;

    /* "<type> <period> <limit> <used>": four words, written above */
    while (ngx_nexus_audit_fired(&p, last, w, 4)) {

        if (w[0].len == sizeof("quota.soft_cap_reached") - 1
            && ngx_strncmp(w[0].data, "quota.soft_cap_reached",
                           w[0].len) == 0)
        {
            type = "quota.soft_cap_reached";
            outcome = NGX_NEXUS_AUDIT_SUCCESS;

        } else if (w[0].len == sizeof("quota.hard_cap_blocked") - 1
                   && ngx_strncmp(w[0].data, "quota.hard_cap_blocked",
                                  w[0].len) == 0)
        {
            type = "quota.hard_cap_blocked";
            outcome = NGX_NEXUS_AUDIT_FAILURE;

        } else if (w[0].len == sizeof("quota.overage") - 1
                   && ngx_strncmp(w[0].data, "quota.overage", w[0].len) == 0)
        {
            type = "quota.overage_observed";
            outcome = NGX_NEXUS_AUDIT_SUCCESS;

        } else {
            continue;
        }

        if (w[1].len > 5 || w[2].len == 0 || w[2].len > 20
            || w[3].len == 0 || w[3].len > 20
            || ngx_atoof(w[2].data, w[2].len) == NGX_ERROR
            || ngx_atoof(w[3].data, w[3].len) == NGX_ERROR)
        {
            continue;
        }

        ngx_sprintf(members, "\"period\":\"%V\",\"limit\":%V,"
                    "\"used\":%V%Z", &w[1], &w[2], &w[3]);

        ngx_nexus_audit_request(r, ctx->principal.tenant_id, type, outcome,
                                (char *) members);
    }
}
