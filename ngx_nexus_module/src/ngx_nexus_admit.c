
/*
 * Copyright (C) Nexus authors
 *
 * The admission of a gateway call, in one Redis round trip before the
 * provider is called.
 *
 * A call of the gateway's is not limited in the access phase (see
 * ngx_nexus_limit()): once its body is read and its model known, one Lua
 * script checks everything it may consume - the key's and the tenant's
 * request buckets, their in-flight leases and the tenant's quota
 * (NGX_NEXUS_LUA_LIMITS), then the key's token budgets, the TPM buckets,
 * the tenant's cost budget and credits (NGX_NEXUS_LUA_BUDGET_RESERVE) -
 * and takes all of it, or nothing: a call that a budget refuses has
 * spent no request token, no quota unit and no lease.  The limits decide
 * first, as if they had run in the access phase (their headers, codes
 * and audit events are theirs), then the reservation.
 *
 * When Redis cannot answer, each decides by nexus_fail_mode as alone.
 * Without nexus_redis the limits ran in the access phase (the shared
 * zone) and the reservation is the budget's own (ngx_nexus_budget.c).
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_budget.h"
#include "ngx_nexus_admit.h"
#include "ngx_nexus_block.h"


/* the script, its sha1, its key count and its arguments must fit a command */
typedef char  ngx_nexus_admit_fits[
    NGX_NEXUS_ADMIT_NARGV + 3 <= NGX_NEXUS_REDIS_MAX_ARGS ? 1 : -1];


static void ngx_nexus_admit_handler(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_admit_decide(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, redisReply *reply, ngx_uint_t limits,
    ngx_uint_t reserve);


ngx_nexus_redis_script_t  ngx_nexus_admit_script;

/*
 * KEYS: the reservation's 7, then the limits' 4; ARGV: the reservation's
 * 18, then the limits' 14, then nb, nf and nhold.  The answer: {the
 * limits' answer, the reservation's}, the latter 0 when the limits
 * refused.
 *
 * A block (ngx_nexus_block.c) takes nb requests' worth of everything at
 * once, if nf requests' worth would fit; it fires no refusal's event, and
 * is refused rather than cross a quota's soft cap.  The bucket tokens it
 * takes stay counted in their buckets as held ("hd") for nhold ms at
 * most, so that a bucket does not refill them while the block spends
 * them: a key is never let through more than its bucket allows, blocks
 * or not.  Its answer, when
 * taken, has two more parts: the day number and the month ("YYYY-MM")
 * its quota units were counted in, for giving back the unused ones.
 */

static const char  ngx_nexus_admit_lua[] =
    "local lk, la = 7, 18\n"
    "local base, cbase = ARGV[9], ARGV[10]\n"
    "local nb, nf = tonumber(ARGV[33]), tonumber(ARGV[34])\n"
    "local nhold = tonumber(ARGV[35])\n"
    NGX_NEXUS_LUA_CALENDAR
    NGX_NEXUS_LUA_CLOCK
    "clock()\n"
    NGX_NEXUS_LUA_BUCKET
    NGX_NEXUS_LUA_BUDGET
    NGX_NEXUS_LUA_LIMITS
    NGX_NEXUS_LUA_BUDGET_RESERVE
    "if not lcheck() then return {lreply(), 0} end\n"
    "local ok, by = bcheck()\n"
    "if not ok then return {lreply(), breply(0, by)} end\n"
    "lcommit()\n"
    "bcommit()\n"
    "if nb > 1 then return {lreply(), breply(1, 0), day, mon} end\n"
    "return {lreply(), breply(1, 0)}\n";


ngx_int_t
ngx_nexus_admit_init(ngx_conf_t *cf)
{
    return ngx_nexus_redis_script(cf, &ngx_nexus_admit_script,
                                  ngx_nexus_admit_lua);
}


ngx_int_t
ngx_nexus_admit(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_int_t                  rc;
    ngx_uint_t                 n, deferred;
    const char               **argv;
    size_t                    *argvlen;
    ngx_nexus_ctx_t           *ctx;
    ngx_nexus_block_t         *blk;
    ngx_nexus_redis_cmd_t     *cmd, *cmds[2];
    ngx_nexus_admit_args_t     aa;
    ngx_nexus_block_shape_t   *shape;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    rc = ngx_nexus_budget_prepare(r, px);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!ngx_nexus_redis_configured()) {
        /* the limits were the shared zone's, in the access phase */
        return ngx_nexus_budget_alone(r, px);
    }

    deferred = (ctx->limit_state == NGX_NEXUS_LIMIT_DEFERRED);

    /* from a block taken earlier, without a round trip, if it can be */
    rc = ngx_nexus_block_admit(r, px, deferred, &shape);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_nexus_admit_args(r, px, deferred, &aa) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    if (aa.limits == NGX_DECLINED && aa.reserve == NGX_DECLINED) {
        return ngx_nexus_budget_alone(r, px);
    }

    if (aa.limits == NGX_DECLINED) {
        /* no limit concerns the request: its arguments check nothing */
        ctx->limit_state = NGX_NEXUS_LIMIT_PASSED;
    }

    argv = aa.argv;
    argvlen = aa.argvlen;

    /* a block asked for goes right after the request's own admission */
    cmds[1] = shape ? ngx_nexus_block_ask(shape, px, argv, argvlen) : NULL;

    cmd = ngx_nexus_redis_eval(&ngx_nexus_admit_script, NGX_NEXUS_ADMIT_NKEYS,
                               NGX_NEXUS_ADMIT_NARGV, argv, argvlen);
    if (cmd == NULL) {
        if (cmds[1]) {
            blk = cmds[1]->data;
            ngx_nexus_redis_free(cmds[1]);
            ngx_nexus_block_unsent(blk);
        }

        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    cmd->handler = ngx_nexus_admit_handler;
    cmd->data = r;

    cmds[0] = cmd;
    n = 1;
    blk = NULL;

    if (cmds[1]) {
        blk = cmds[1]->data;
        n = 2;
    }

    if (ngx_nexus_redis_send(cmds, n) != NGX_OK) {
        if (blk) {
            ngx_nexus_block_unsent(blk);
        }

        return ngx_nexus_admit_decide(r, px, NULL, aa.limits == NGX_OK,
                                      aa.reserve == NGX_OK);
    }

    if (aa.limits == NGX_OK) {
        ngx_nexus_limit_sent(ctx);
    }

    if (aa.reserve == NGX_OK) {
        /*
         * the reservation's to settle, even if the request goes away
         * before the answer (its cleanup then hands the answer over)
         */
        ngx_nexus_budget_sent(px, cmd);

    } else {
        ctx->rcmd[0] = cmd;
    }

    if (aa.limits == NGX_OK) {
        ctx->limit_state = NGX_NEXUS_AUTH_WAITING;
    }

    ngx_nexus_wait(r);

    return NGX_AGAIN;
}


/*
 * The admission script's KEYS and ARGV for the request, for one request
 * (nb, nf and nhold 1, 1 and 0); limits: whether its limits are in them
 * (else they are sent empty, and check nothing).  NGX_OK or NGX_ERROR.
 */

ngx_int_t
ngx_nexus_admit_args(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_uint_t limits, ngx_nexus_admit_args_t *aa)
{
    ngx_uint_t        i, k, a;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    aa->limits = NGX_DECLINED;

    if (limits) {
        aa->limits = ngx_nexus_limit_prepare(r, ctx, &aa->lc, 0);

        if (aa->limits == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    aa->reserve = ngx_nexus_budget_call(px, &aa->bc);

    if (aa->reserve == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* KEYS: the reservation's, the limits'; then ARGV in the same order */
    k = 0;
    a = NGX_NEXUS_ADMIT_NKEYS;

    for (i = 0; i < NGX_NEXUS_BUDGET_NARGV; i++) {
        if (i < NGX_NEXUS_BUDGET_NKEYS) {
            aa->argv[k] = aa->bc.argv[i];
            aa->argvlen[k++] = aa->bc.argvlen[i];

        } else {
            aa->argv[a] = aa->bc.argv[i];
            aa->argvlen[a++] = aa->bc.argvlen[i];
        }
    }

    for (i = 0; i < NGX_NEXUS_LIMIT_NARGV; i++) {
        if (i < NGX_NEXUS_LIMIT_NKEYS) {
            aa->argv[k] = aa->limits == NGX_OK ? aa->lc.argv[i] : "";
            aa->argvlen[k++] = aa->limits == NGX_OK ? aa->lc.argvlen[i] : 0;

        } else {
            aa->argv[a] = aa->limits == NGX_OK ? aa->lc.argv[i] : "0";
            aa->argvlen[a++] = aa->limits == NGX_OK ? aa->lc.argvlen[i] : 1;
        }
    }

    for (i = NGX_NEXUS_ADMIT_NB; i < NGX_NEXUS_ADMIT_NARGV; i++) {
        aa->argv[i] = (i < NGX_NEXUS_ADMIT_NB + 2) ? "1" : "0";
        aa->argvlen[i] = 1;
    }

    return NGX_OK;
}


static void
ngx_nexus_admit_handler(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_nexus_ctx_t     *ctx;
    ngx_nexus_proxy_t   *px;
    ngx_http_request_t  *r;

    r = cmd->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    px = ngx_nexus_proxy_get(r);

    ctx->rcmd[0] = NULL;
    r->read_event_handler = ngx_http_block_reading;

    if (ngx_nexus_admit_decide(r, px, rc == NGX_OK ? reply : NULL,
                               ctx->limit_state == NGX_NEXUS_AUTH_WAITING,
                               ngx_nexus_budget_waiting(px))
        == NGX_OK)
    {
        ngx_nexus_proxy_start(r, px);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * The limits first, as in the access phase, then the reservation (when it
 * was not in the script: the budget's own decision).  NGX_OK to call the
 * provider, or NGX_DONE when the request was answered.
 */

static ngx_int_t
ngx_nexus_admit_decide(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    redisReply *reply, ngx_uint_t limits, ngx_uint_t reserve)
{
    ngx_int_t         rc, status;
    const char       *code;
    redisReply       *part;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    status = reserve ? ngx_nexus_budget_answer(px, reply) : NGX_DECLINED;

    if (limits) {
        part = reply;

        if (reply && reply->type == REDIS_REPLY_ARRAY
            && reply->elements == 2)
        {
            part = reply->element[0];
        }

        /* what the limits allowed is taken unless the reservation refused */
        ngx_nexus_limit_answer(r, ctx, part,
                               !reserve || status == NGX_OK
                               || status == NGX_DECLINED);

        /* a refusal is the call's own answer, and its usage event's code */
        code = ngx_nexus_limit_refusal(r, ctx);

        if (code) {
            px->sent_own = 1;
            px->error_code = code;
        }

        rc = ngx_nexus_limit_decide(r, ctx);

        if (rc != NGX_OK) {
            if (rc != NGX_DONE) {
                ngx_http_finalize_request(r, rc);
            }

            return NGX_DONE;
        }
    }

    if (!reserve) {
        return ngx_nexus_budget_alone(r, px);
    }

    return ngx_nexus_budget_decide(r, px, status);
}
