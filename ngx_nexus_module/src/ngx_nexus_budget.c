
/*
 * Copyright (C) Nexus authors
 *
 * Token budgets and tokens per minute, exact across a fleet.
 *
 * A gateway call first reserves its worst case: the prompt estimate plus
 * max_tokens, or plus the model's ceiling (nexus_token_ceiling) when the
 * client set none; an embedding costs its prompt only.  One Lua script,
 * in one Redis round trip - the call's admission, with its request limits
 * (ngx_nexus_admit.c) - checks the key's daily, monthly and total
 * budgets (settled tokens plus the reservations in flight) and the key's
 * and the tenant's tokens-per-minute buckets, and takes all of it or
 * nothing.  When the answer is over - complete, cut, or its client gone -
 * the proxy's cleanup settles it, exactly once, with the tokens actually
 * used: the reservation is released, the tokens are counted, and the
 * buckets get back what was not used (or are charged the excess).
 *
 * A reservation is a member of a sorted set scored by its expiry, renewed
 * every third of nexus_budget_ttl while its request lives.  Every
 * reservation first sweeps the expired ones, so a node that dies holds
 * budget for one ttl at most.  No reservation is taken that a budget
 * cannot cover, so the settled tokens never exceed a budget as long as
 * no answer uses more than it reserved.
 *
 * When Redis cannot answer, nexus_fail_mode decides, as for rate limits:
 * closed (503 RATE_LIMIT_UNAVAILABLE) or open (allowed without a
 * reservation, with X-RateLimit-Status: degraded).  Without nexus_redis,
 * tokens per minute are checked in the shared zone, per node, like the
 * rate limits (ngx_nexus_limit_shm.c); budgets, the fleet's, cannot be.
 *
 * The same reservation carries a request's cost when its tenant has a
 * cost budget or runs on credits (ngx_nexus_cost.c): the worst case in
 * micro-dollars at the model's price, held against the month's budget and
 * the credit balance, and the actual cost settled with the tokens.  At the
 * budget's hard cap the tenant's mode decides: block (429 BUDGET_EXCEEDED,
 * X-Cost-Status: capped), or degrade, where the script reserves the
 * degraded request instead - the tenant's degrade model, its output
 * capped - which the gateway then sends (ngx_nexus_gateway_retarget()).
 * Credits that cannot cover the worst case refuse the request with 402
 * INSUFFICIENT_CREDITS.  A model without a price is refused before any of
 * it (403 MODEL_NOT_PRICED) unless the tenant allows unpriced models,
 * which then cost nothing.  Still one round trip to reserve and one to
 * settle.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_budget.h"
#include "ngx_nexus_cost.h"
#include "ngx_nexus_credits.h"
#include "ngx_nexus_audit.h"
#include "ngx_nexus_block.h"


#define NGX_NEXUS_BUDGET_OK         0
#define NGX_NEXUS_BUDGET_OVER       1
#define NGX_NEXUS_BUDGET_TPM        2
#define NGX_NEXUS_BUDGET_COST       3
#define NGX_NEXUS_BUDGET_CREDITS    4
#define NGX_NEXUS_BUDGET_NO_BALANCE 5

/* what the reservation did about the cost */
#define NGX_NEXUS_COST_NONE         0
#define NGX_NEXUS_COST_ASKED        1
#define NGX_NEXUS_COST_DEGRADED     3

#define NGX_NEXUS_HTTP_PAYMENT_REQUIRED  402

#define NGX_NEXUS_BUDGET_REPLY      20

/* the stream of credit changes, drained into credit_transactions */
#define NGX_NEXUS_CREDIT_LEDGER     "nx:cr:ledger"

/* a total budget never resets: a client may come back in a day */
#define NGX_NEXUS_BUDGET_TOTAL_RETRY    86400000


typedef struct {
    ngx_str_t                   model;
    int64_t                     tokens;
} ngx_nexus_ceiling_t;


struct ngx_nexus_budget_s {
    ngx_http_request_t         *request;    /* NULL once orphaned */
    ngx_nexus_proxy_t          *proxy;
    ngx_nexus_redis_cmd_t      *cmd;        /* the reservation in flight */
    ngx_event_t                 renew;
    ngx_msec_t                  ttl;

    /* keys[], id, base, cbase, rid and model point into strs */
    u_char                     *strs;
    size_t                      strs_len;
    ngx_str_t                   keys[NGX_NEXUS_BUDGET_NKEYS];
    ngx_str_t                   id;
    ngx_str_t                   base;
    ngx_str_t                   cbase;      /* empty: costs not counted */
    ngx_str_t                   rid;        /* the request id, and */
    ngx_str_t                   model;      /* model, for the ledger */
    int64_t                     tenant_id;

    int64_t                     want;
    int64_t                     limits[3];  /* daily, monthly, total */
    int64_t                     tpm[2];     /* key, tenant */

    /* the answer: the binding period and the binding TPM bucket */
    ngx_uint_t                  refused;    /* NGX_NEXUS_BUDGET_* */
    ngx_uint_t                  period;     /* 1 day, 2 month, 3 total */
    int64_t                     limit;
    int64_t                     used;
    int64_t                     reserved;
    int64_t                     reset_ms;
    ngx_uint_t                  tpm_scope;  /* 1 key, 2 tenant */
    int64_t                     tpm_limit;
    int64_t                     tpm_remaining;
    int64_t                     tpm_wait_ms;

    ngx_nexus_principal_t      *principal;  /* while the request lives */

    /* costs: the tenant's settings, the worst cases, and the prices */
    ngx_nexus_cost_t            cost;
    int64_t                     cost_want;  /* micro-dollars */
    int64_t                     alt_want;   /* degraded: tokens, 0 none */
    int64_t                     alt_cost;
    int64_t                     alt_max;    /* its max_tokens, -1 as asked */
    int64_t                     price[2];   /* of the model sent */

    /* and what Redis said of them */
    ngx_uint_t                  cost_state; /* NGX_NEXUS_COST_* */
    int64_t                     spend;      /* the month's, settled */
    int64_t                     spend_held; /* held by calls in flight,
                                               this one too */
    int64_t                     balance;    /* credits */
    int64_t                     balance_held;
    int64_t                     month_ms;   /* until the month ends */
    int64_t                     cost_held;  /* this reservation's */

    unsigned                    governed:1; /* costs are counted */
    unsigned                    unknown:1;  /* no catalog: cannot tell */
    unsigned                    sent:1;     /* may exist in Redis */
    unsigned                    held:1;     /* reserved */
    unsigned                    local:1;    /* TPM in the shared zone */
    unsigned                    degraded:1;
    unsigned                    settled:1;

    ngx_nexus_block_t          *block;      /* a share of a block's */
};


static int64_t ngx_nexus_budget_out(ngx_nexus_proxy_t *px,
    ngx_nexus_main_conf_t *nmcf, ngx_str_t *model);
static void ngx_nexus_budget_costs(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, ngx_nexus_principal_t *pr,
    ngx_nexus_main_conf_t *nmcf);
static ngx_int_t ngx_nexus_budget_unpriced(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_budget_strings(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, ngx_nexus_principal_t *pr);
static u_char *ngx_nexus_budget_name(u_char *p, u_char *last,
    ngx_str_t *s, const char *fmt, ...);
static ngx_int_t ngx_nexus_budget_parse(ngx_nexus_budget_t *b,
    redisReply *reply);
static void ngx_nexus_budget_audit(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, ngx_str_t *fired);
static ngx_int_t ngx_nexus_budget_local(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_exceeded(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_tpm_limited(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_refuse(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, ngx_uint_t status, const char *code,
    const char *message, u_char *details);
static ngx_int_t ngx_nexus_budget_capped(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, const char *why);
static ngx_int_t ngx_nexus_budget_no_credits(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_cost_headers(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, const char *status, int64_t actual);
static ngx_int_t ngx_nexus_budget_usd_header(ngx_http_request_t *r,
    const char *name, int64_t musd);
static ngx_int_t ngx_nexus_budget_unavailable(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static int64_t ngx_nexus_budget_remaining(ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_period_headers(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, int64_t remaining);
static ngx_int_t ngx_nexus_budget_header(ngx_http_request_t *r,
    const char *name, int64_t value);
static ngx_int_t ngx_nexus_budget_set_header(ngx_http_request_t *r,
    const char *name, const char *value);
static ngx_nexus_budget_t *ngx_nexus_budget_copy(ngx_nexus_budget_t *b,
    size_t extra);
static void ngx_nexus_budget_renew(ngx_event_t *ev);
static void ngx_nexus_budget_orphan(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static void ngx_nexus_budget_send_settle(ngx_nexus_budget_t *b,
    int64_t tokens, int64_t cost);
static void ngx_nexus_budget_settled(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);


static const char  *ngx_nexus_budget_periods[] = {
    "", "day", "month", "total"
};

static const char  *ngx_nexus_budget_classes[] = {
    "run", "mutation", "read", "ops"
};

static time_t  ngx_nexus_budget_warned;
static time_t  ngx_nexus_budget_lost;


static ngx_nexus_redis_script_t  ngx_nexus_budget_settle_script;
static ngx_nexus_redis_script_t  ngx_nexus_budget_renew_script;


/*
 * ARGV: 1 reservation id, 2 tokens used, 3-4 the key's and the tenant's
 * TPM (0: none), 5 base, 6 "1" when the key has a budget now; 7 cbase
 * (empty: no costs), 8 the micro-dollars the request cost, 9 "1" when
 * the tenant runs on credits, 10 the tenant's id, 11 the request id,
 * 12 the model; KEYS[8] is the credit ledger stream.  A reservation that
 * is gone (expired, or never made: Redis was down) is settled as if
 * there had been none: its tokens are counted and charged, its cost
 * spent and deducted.  A deduction is appended to the ledger with the
 * balance before and after, in the same script: the ledger cannot miss a
 * change of the balance, nor record one that did not happen.
 */

static const char  ngx_nexus_budget_settle_lua[] =
    "local base, cbase = ARGV[5], ARGV[7]\n"
    NGX_NEXUS_LUA_CALENDAR
    NGX_NEXUS_LUA_CLOCK
    NGX_NEXUS_LUA_BUCKET
    NGX_NEXUS_LUA_BUDGET
    "local id, used = ARGV[1], tonumber(ARGV[2])\n"
    "local ktpm, ttpm = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "if cbase ~= '' then\n"
    "  local c, mo, credits = crelease(id)\n"
    "  if not c then\n"
    "    clock()\n"
    "    mo, credits = mon, ARGV[9] == '1'\n"
    "  end\n"
    "  local cost = tonumber(ARGV[8])\n"
    "  if cost > 0 then\n"
    "    local mk = cbase .. ':m:' .. mo\n"
    "    if redis.call('HINCRBY', mk, 'used', cost) == cost or not c then\n"
    "      clock()\n"
    "      redis.call('PEXPIRE', mk, " NGX_NEXUS_LUA_BUDGET_MONTH_TTL ")\n"
    "    end\n"
    "    local b = credits and redis.call('HGET', KEYS[7], 'bal')\n"
    "    if b then\n"
    "      local a = redis.call('HINCRBY', KEYS[7], 'bal', -cost)\n"
    "      redis.call('XADD', KEYS[8], '*', 't', ARGV[10], 'k', 'api_usage',"
    " 'a', string.format('%d', -cost), 'b', b, 'f', string.format('%d', a),"
    " 'r', ARGV[11], 'm', ARGV[12])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local n = release(id, used)\n"
    "local back\n"
    "if n then\n"
    "  back = n - used\n"
    "else\n"
    "  if used <= 0 then return 0 end\n"
    "  back = -used\n"
    "  if ARGV[6] == '1' then\n"
    "    clock()\n"
    "    local pk = {base .. ':d:' .. day, base .. ':m:' .. mon,"
    " base .. ':t'}\n"
    "    for i = 1, 3 do redis.call('HINCRBY', pk[i], 'used', used) end\n"
    "    redis.call('PEXPIRE', pk[1], dend - now + 86400000)\n"
    "    redis.call('PEXPIRE', pk[2], mend - now + 86400000)\n"
    "  end\n"
    "end\n"
    "local function give(key, tpm)\n"
    "  clock()\n"
    "  local tk, ex = level(key, tpm)\n"
    "  store(key, math.min(tpm, tk + back), ex, tpm)\n"
    "end\n"
    "if back ~= 0 and ktpm > 0 then give(KEYS[3], ktpm) end\n"
    "if back ~= 0 and ttpm > 0 then give(KEYS[4], ttpm) end\n"
    "return n and 1 or 0\n";


/* KEYS: the key's and the tenant's reservations; ARGV: id, ttl */

static const char  ngx_nexus_budget_renew_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[2]), ARGV[1])\n"
    "return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]),"
    " ARGV[1])\n";


ngx_int_t
ngx_nexus_budget_init(ngx_conf_t *cf)
{
    if (ngx_nexus_redis_script(cf, &ngx_nexus_budget_settle_script,
                               ngx_nexus_budget_settle_lua)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_redis_script(cf, &ngx_nexus_budget_renew_script,
                                  ngx_nexus_budget_renew_lua);
}


char *
ngx_nexus_budget_init_main_conf(ngx_conf_t *cf, ngx_nexus_main_conf_t *nmcf)
{
    if (nmcf->token_ceiling == NGX_CONF_UNSET) {
        nmcf->token_ceiling = NGX_NEXUS_TOKEN_CEILING;
    }

    ngx_conf_init_msec_value(nmcf->budget_ttl, 60000);

    if (nmcf->budget_ttl < 300) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_budget_ttl\" must be at least 300ms");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* nexus_token_ceiling TOKENS [model=NAME]; */

char *
ngx_nexus_budget_ceiling_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_int_t             n;
    ngx_str_t            *value, model;
    ngx_uint_t            i;
    ngx_nexus_ceiling_t  *c;

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);
    if (n <= 0 || n > 99999999) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of tokens \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2) {
        if (nmcf->token_ceiling != NGX_CONF_UNSET) {
            return "is duplicate";
        }

        nmcf->token_ceiling = n;
        return NGX_CONF_OK;
    }

    if (value[2].len <= 6 || ngx_strncmp(value[2].data, "model=", 6) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    model.data = value[2].data + 6;
    model.len = value[2].len - 6;

    if (nmcf->token_ceilings == NULL) {
        nmcf->token_ceilings = ngx_array_create(cf->pool, 4,
                                                sizeof(ngx_nexus_ceiling_t));
        if (nmcf->token_ceilings == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    c = nmcf->token_ceilings->elts;

    for (i = 0; i < nmcf->token_ceilings->nelts; i++) {
        if (c[i].model.len == model.len
            && ngx_strncmp(c[i].model.data, model.data, model.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate ceiling for model \"%V\"", &model);
            return NGX_CONF_ERROR;
        }
    }

    c = ngx_array_push(nmcf->token_ceilings);
    if (c == NULL) {
        return NGX_CONF_ERROR;
    }

    c->model = model;
    c->tokens = n;

    return NGX_CONF_OK;
}


/* nexus_tpm [key=N] [tenant=N]; 0 (or a side not given): none here */

char *
ngx_nexus_budget_tpm_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    off_t        n;
    ngx_str_t   *value, v;
    ngx_uint_t   i, k, seen;

    if (nlcf->tpm[0] != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    nlcf->tpm[0] = 0;
    nlcf->tpm[1] = 0;
    seen = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            k = 0;
            v.data = value[i].data + 4;
            v.len = value[i].len - 4;

        } else if (ngx_strncmp(value[i].data, "tenant=", 7) == 0) {
            k = 1;
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;

        } else {
            goto invalid;
        }

        /* the range the database accepts for an override */
        n = ngx_atoof(v.data, v.len);
        if (n < 0 || n > 999999999999LL || (seen & (1 << k))) {
            goto invalid;
        }

        seen |= 1 << k;
        nlcf->tpm[k] = n;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_nexus_budget_prepare(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    int64_t                  tpm[2];
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_cost_t         cost;
    ngx_nexus_budget_t      *b;
    ngx_nexus_loc_conf_t    *nlcf;
    ngx_nexus_main_conf_t   *nmcf;
    ngx_nexus_principal_t   *pr;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    pr = &ctx->principal;

    /* a key's or tenant's own TPM, else the location's */
    for (i = 0; i < 2; i++) {
        tpm[i] = pr->tpm[i] ? pr->tpm[i] : ngx_max(nlcf->tpm[i], 0);
    }

    rc = ngx_nexus_cost_lookup(r, pr->tenant_id, &px->model, &cost);

    if (rc == NGX_ERROR) {
        goto failed;
    }

    if (rc == NGX_OK && !cost.priced && !cost.unpriced) {
        ngx_http_finalize_request(r, ngx_nexus_budget_unpriced(r, px));
        return NGX_DONE;
    }

    if (pr->budget[0] == 0 && pr->budget[1] == 0 && pr->budget[2] == 0
        && tpm[0] == 0 && tpm[1] == 0 && rc == NGX_DECLINED)
    {
        return NGX_OK;
    }

    b = ngx_pcalloc(r->pool, sizeof(ngx_nexus_budget_t));
    if (b == NULL) {
        goto failed;
    }

    b->request = r;
    b->proxy = px;
    b->ttl = nmcf->budget_ttl;
    b->tenant_id = pr->tenant_id;
    b->want = px->req.prompt_estimate
              + ngx_nexus_budget_out(px, nmcf, &px->model);
    ngx_memcpy(b->limits, pr->budget, sizeof(b->limits));
    ngx_memcpy(b->tpm, tpm, sizeof(b->tpm));

    if (rc == NGX_OK) {
        b->governed = 1;
        b->cost = cost;
        ngx_nexus_budget_costs(r, b, pr, nmcf);

    } else if (rc == NGX_BUSY) {
        b->unknown = 1;
    }

    /* its strings are written when Redis is sent them, if ever */
    b->principal = pr;
    px->budget = b;

    return NGX_OK;

failed:

    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);

    return NGX_DONE;
}


ngx_int_t
ngx_nexus_budget_alone(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_nexus_budget_t  *b;

    b = px->budget;

    if (b == NULL) {
        return NGX_OK;
    }

    if (b->unknown) {
        /* whether this request costs anything cannot be told yet */
        return ngx_nexus_budget_decide(r, px, NGX_DECLINED);
    }

    return ngx_nexus_budget_local(r, b);
}


ngx_int_t
ngx_nexus_budget_call(ngx_nexus_proxy_t *px, ngx_nexus_budget_call_t *bc)
{
    u_char               *p;
    ngx_uint_t            i;
    const char          **argv;
    size_t               *argvlen;
    ngx_nexus_budget_t   *b;

    b = px->budget;
    argv = bc->argv;
    argvlen = bc->argvlen;

    if (b && b->strs == NULL
        && ngx_nexus_budget_strings(b->request, b, b->principal) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (b == NULL || b->unknown) {
        /* an empty reservation id: none to make */
        for (i = 0; i < NGX_NEXUS_BUDGET_NARGV; i++) {
            argv[i] = (i < NGX_NEXUS_BUDGET_NKEYS + 1
                       || i == NGX_NEXUS_BUDGET_NKEYS + 8
                       || i == NGX_NEXUS_BUDGET_NKEYS + 9)
                      ? "" : "0";
            argvlen[i] = ngx_strlen(argv[i]);
        }

        return NGX_DECLINED;
    }

    for (i = 0; i < NGX_NEXUS_BUDGET_NKEYS; i++) {
        argv[i] = (const char *) b->keys[i].data;
        argvlen[i] = b->keys[i].len;
    }

    argv[7] = (const char *) b->id.data;
    argvlen[7] = b->id.len;

    p = ngx_sprintf(bc->args[0], "%L", b->want);
    argv[8] = (const char *) bc->args[0];
    argvlen[8] = p - bc->args[0];

    p = ngx_sprintf(bc->args[1], "%M", b->ttl);
    argv[9] = (const char *) bc->args[1];
    argvlen[9] = p - bc->args[1];

    for (i = 0; i < 3; i++) {
        p = ngx_sprintf(bc->args[2 + i], "%L", b->limits[i]);
        argv[10 + i] = (const char *) bc->args[2 + i];
        argvlen[10 + i] = p - bc->args[2 + i];
    }

    for (i = 0; i < 2; i++) {
        p = ngx_sprintf(bc->args[5 + i], "%L", b->tpm[i]);
        argv[13 + i] = (const char *) bc->args[5 + i];
        argvlen[13 + i] = p - bc->args[5 + i];
    }

    argv[15] = (const char *) b->base.data;
    argvlen[15] = b->base.len;

    argv[16] = (const char *) b->cbase.data;
    argvlen[16] = b->cbase.len;

    p = ngx_sprintf(bc->args[7], "%L", b->cost_want);
    argv[17] = (const char *) bc->args[7];
    argvlen[17] = p - bc->args[7];

    p = ngx_sprintf(bc->args[8], "%L", b->alt_want);
    argv[18] = (const char *) bc->args[8];
    argvlen[18] = p - bc->args[8];

    p = ngx_sprintf(bc->args[9], "%L", b->alt_cost);
    argv[19] = (const char *) bc->args[9];
    argvlen[19] = p - bc->args[9];

    p = ngx_sprintf(bc->args[10], "%L", b->cost.budget);
    argv[20] = (const char *) bc->args[10];
    argvlen[20] = p - bc->args[10];

    argv[21] = b->cost.credits ? "1" : "0";
    argvlen[21] = 1;

    p = ngx_sprintf(bc->args[11], "%ui", b->cost.warn);
    argv[22] = (const char *) bc->args[11];
    argvlen[22] = p - bc->args[11];

    p = ngx_sprintf(bc->args[12], "%L", b->principal->tenant_id);
    argv[23] = (const char *) bc->args[12];
    argvlen[23] = p - bc->args[12];

    p = ngx_sprintf(bc->args[13], "%L", b->principal->key_id);
    argv[24] = (const char *) bc->args[13];
    argvlen[24] = p - bc->args[13];

    return NGX_OK;
}


void
ngx_nexus_budget_sent(ngx_nexus_proxy_t *px, ngx_nexus_redis_cmd_t *cmd)
{
    ngx_nexus_budget_t  *b;

    b = px->budget;

    /* from here the reservation may exist, whatever becomes of us */
    b->cmd = cmd;
    b->sent = 1;
}


/* the most a call may answer: max_tokens, else the model's ceiling */

static int64_t
ngx_nexus_budget_out(ngx_nexus_proxy_t *px, ngx_nexus_main_conf_t *nmcf,
    ngx_str_t *model)
{
    int64_t               out;
    ngx_uint_t            i;
    ngx_nexus_ceiling_t  *c;

    if (px->kind == NX_LLM_EMBEDDINGS) {
        return 0;
    }

    out = px->req.max_tokens;

    if (out <= 0) {
        out = nmcf->token_ceiling;

        if (nmcf->token_ceilings) {
            c = nmcf->token_ceilings->elts;

            for (i = 0; i < nmcf->token_ceilings->nelts; i++) {
                if (c[i].model.len == model->len
                    && ngx_strncmp(c[i].model.data, model->data, model->len)
                       == 0)
                {
                    out = c[i].tokens;
                    break;
                }
            }
        }
    }

    return out;
}


/*
 * The worst case in dollars, at the model's price (an unpriced model the
 * tenant allows costs nothing); and the degraded request, when the tenant
 * degrades at its cap and the degrade model can be used: another model
 * than the one asked for, in the key's set, priced (or unpriced allowed),
 * for a request that is not an embedding.  Its output is capped at
 * nexus_cost_degrade_max_tokens where the gateway writes the upstream
 * body's limit itself (an OpenAI-shaped chat); a native Ollama request
 * keeps the client's.
 */

static void
ngx_nexus_budget_costs(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    ngx_nexus_principal_t *pr, ngx_nexus_main_conf_t *nmcf)
{
    int64_t             prompt, out;
    ngx_nexus_cost_t   *c;
    ngx_nexus_proxy_t  *px;

    c = &b->cost;
    px = b->proxy;
    prompt = px->req.prompt_estimate;

    if (c->priced) {
        b->price[0] = c->price[0];
        b->price[1] = c->price[1];
    }

    b->cost_want = nx_money_cost(prompt, b->want - prompt, b->price[0],
                                 b->price[1]);
    b->alt_max = -1;

    if (!c->degrade
        || px->kind == NX_LLM_EMBEDDINGS
        || (!c->degrade_priced && !c->unpriced)
        || (c->degrade_model.len == px->model.len
            && ngx_strncmp(c->degrade_model.data, px->model.data,
                           px->model.len) == 0)
        || !ngx_nexus_auth_has_scope(&pr->models, &c->degrade_model))
    {
        return;
    }

    out = ngx_nexus_budget_out(px, nmcf, &c->degrade_model);

    /* the cap is written into the upstream body: the worst case holds */
    if (px->kind == NX_LLM_CHAT) {
        out = ngx_min(out, nmcf->cost_degrade_tokens);
        b->alt_max = out;
    }

    b->alt_want = prompt + out;
    b->alt_cost = c->degrade_priced
                  ? nx_money_cost(prompt, out, c->degrade_price[0],
                                  c->degrade_price[1])
                  : 0;
}


/* 403 MODEL_NOT_PRICED: what a tenant pays for must have a price */

static ngx_int_t
ngx_nexus_budget_unpriced(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    u_char     *details;
    ngx_str_t   model;

    if (ngx_nexus_json_escape(r->pool, &px->model, &model) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    details = ngx_pnalloc(r->pool, sizeof("{\"model\":\"\"}") + model.len);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"model\":\"%V\"}%Z", &model);

    return ngx_nexus_budget_refuse(r, px, NGX_HTTP_FORBIDDEN,
                                   "MODEL_NOT_PRICED",
                                   "the model has no price in the catalog "
                                   "and this tenant pays for what it uses",
                                   details);
}


static ngx_int_t
ngx_nexus_budget_strings(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    ngx_nexus_principal_t *pr)
{
    u_char     *p, *last;
    ngx_str_t   rid;

    if (ngx_nexus_request_id(r, &rid) != NGX_OK) {
        ngx_str_null(&rid);
    }

    rid.len = ngx_min(rid.len, 128);

    b->strs_len = 12 * (sizeof("nx:cost::rv") + NGX_INT64_LEN) + 64
                  + rid.len + b->proxy->model.len;

    p = ngx_pnalloc(r->pool, b->strs_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    b->strs = p;
    last = p + b->strs_len;

    p = ngx_nexus_budget_name(p, last, &b->base, "nx:tb:%L", pr->key_id);
    p = ngx_nexus_budget_name(p, last, &b->keys[0], "nx:tb:%L:r",
                              pr->key_id);
    p = ngx_nexus_budget_name(p, last, &b->keys[1], "nx:tb:%L:rv",
                              pr->key_id);
    p = ngx_nexus_budget_name(p, last, &b->keys[2], "nx:tpm:k:%L",
                              pr->key_id);
    p = ngx_nexus_budget_name(p, last, &b->keys[3], "nx:tpm:t:%L",
                              pr->tenant_id);

    /* the tenant's costs; named (and unused) when they are not counted */
    p = ngx_nexus_budget_name(p, last, &b->keys[4], "nx:cost:%L:r",
                              pr->tenant_id);
    p = ngx_nexus_budget_name(p, last, &b->keys[5], "nx:cost:%L:rv",
                              pr->tenant_id);
    p = ngx_nexus_budget_name(p, last, &b->keys[6], "nx:cr:%L",
                              pr->tenant_id);
    p = ngx_nexus_budget_name(p, last, &b->cbase, "nx:cost:%L",
                              pr->tenant_id);

    if (!b->governed) {
        b->cbase.len = 0;
    }

    p = ngx_nexus_budget_name(p, last, &b->rid, "%V", &rid);
    p = ngx_nexus_budget_name(p, last, &b->model, "%V", &b->proxy->model);

    /* unique across the fleet without trusting anything the client sent */
    (void) ngx_nexus_budget_name(p, last, &b->id, "%P:%uA:%08xD%08xD",
                                 ngx_pid, r->connection->number,
                                 (uint32_t) ngx_random(),
                                 (uint32_t) ngx_random());

    return NGX_OK;
}


/* one of the request's strings, written at p and named by s */

static u_char *
ngx_nexus_budget_name(u_char *p, u_char *last, ngx_str_t *s,
    const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    s->data = p;
    p = ngx_vslprintf(p, last, fmt, args);
    s->len = p - s->data;
    va_end(args);

    return p;
}


ngx_uint_t
ngx_nexus_budget_waiting(ngx_nexus_proxy_t *px)
{
    ngx_nexus_budget_t  *b;

    b = px->budget;

    return b != NULL && b->cmd != NULL;
}


ngx_int_t
ngx_nexus_budget_answer(ngx_nexus_proxy_t *px, redisReply *reply)
{
    ngx_int_t            status;
    ngx_str_t            fired;
    ngx_http_request_t  *r;
    ngx_nexus_budget_t  *b;

    b = px->budget;
    r = b->request;

    b->cmd = NULL;

    if (reply == NULL) {
        return NGX_DECLINED;
    }

    status = ngx_nexus_budget_parse(b, reply);

    switch (status) {

    case NGX_DONE:
        /* the limits refused first: nothing was written */
        b->sent = 0;
        break;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus token budget script failed: %*s",
                      reply->type == REDIS_REPLY_ERROR ? reply->len : 0,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        break;

    default:
        /* the reservation's part, checked by the parse */
        reply = reply->element[1]->element[19];

        if (reply->len) {
            fired.data = (u_char *) reply->str;
            fired.len = reply->len;

            ngx_nexus_budget_audit(r, b, &fired);
        }
    }

    return status;
}


/*
 * The admission script's answer, {limits, reservation}.  NGX_OK: reserved;
 * NGX_HTTP_TOO_MANY_REQUESTS: refused (by a budget, a rate, or credits);
 * NGX_BUSY: the tenant's credit balance is not in Redis; NGX_DONE: not
 * tried, the limits refused; else NGX_DECLINED
 */

static ngx_int_t
ngx_nexus_budget_parse(ngx_nexus_budget_t *b, redisReply *reply)
{
    size_t        i;
    redisReply  **e;

    /* a block's answer has two more parts (ngx_nexus_block.c) */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        return NGX_DECLINED;
    }

    reply = reply->element[1];

    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        return NGX_DONE;
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != NGX_NEXUS_BUDGET_REPLY)
    {
        return NGX_DECLINED;
    }

    e = reply->element;

    for (i = 0; i < NGX_NEXUS_BUDGET_REPLY - 1; i++) {
        if (e[i]->type != REDIS_REPLY_INTEGER) {
            return NGX_DECLINED;
        }
    }

    if (e[19]->type != REDIS_REPLY_STRING) {
        return NGX_DECLINED;
    }

    if (e[2]->integer < 0 || e[2]->integer > 3
        || e[7]->integer < 0 || e[7]->integer > 2
        || e[11]->integer < 0 || e[11]->integer > 3)
    {
        return NGX_DECLINED;
    }

    b->refused = (ngx_uint_t) e[1]->integer;
    b->period = (ngx_uint_t) e[2]->integer;
    b->limit = e[3]->integer;
    b->used = e[4]->integer;
    b->reserved = e[5]->integer;
    b->reset_ms = e[6]->integer;
    b->tpm_scope = (ngx_uint_t) e[7]->integer;
    b->tpm_limit = e[8]->integer;
    b->tpm_remaining = ngx_max(e[9]->integer, 0);
    b->tpm_wait_ms = e[10]->integer;

    b->cost_state = (ngx_uint_t) e[11]->integer;
    b->spend = e[12]->integer;
    b->spend_held = e[13]->integer;
    b->balance = e[14]->integer;
    b->balance_held = e[15]->integer;
    b->month_ms = e[16]->integer;

    if (e[0]->integer == 1) {
        /* degraded: these are the degraded request's */
        b->cost_held = e[17]->integer;
        b->want = e[18]->integer;
        return NGX_OK;
    }

    switch (b->refused) {

    case NGX_NEXUS_BUDGET_OVER:
    case NGX_NEXUS_BUDGET_TPM:
    case NGX_NEXUS_BUDGET_COST:
    case NGX_NEXUS_BUDGET_CREDITS:
        return NGX_HTTP_TOO_MANY_REQUESTS;

    case NGX_NEXUS_BUDGET_NO_BALANCE:
        return NGX_BUSY;

    default:
        return NGX_DECLINED;
    }
}


/*
 * The budget events the reservation fired, once per key or tenant and
 * period across the fleet, as the quota events (ngx_nexus_limit.c): the
 * stream has them already, the audit log gets them here.
 */

static void
ngx_nexus_budget_audit(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    ngx_str_t *fired)
{
    u_char      *p, *last;
    ngx_str_t    w[5];
    const char  *type, *outcome;
    u_char       members[192];

    p = fired->data;
    last = p + fired->len;

    /* "<type> <tokens|cost> <period> <limit> <used>", written above */
    while (ngx_nexus_audit_fired(&p, last, w, 5)) {

        if (w[0].len == sizeof("budget.warn") - 1
            && ngx_strncmp(w[0].data, "budget.warn", w[0].len) == 0)
        {
            type = "budget.warn";
            outcome = NGX_NEXUS_AUDIT_SUCCESS;

        } else if (w[0].len == sizeof("budget.exhausted") - 1
                   && ngx_strncmp(w[0].data, "budget.exhausted", w[0].len)
                      == 0)
        {
            type = "budget.exhausted";
            outcome = NGX_NEXUS_AUDIT_FAILURE;

        } else {
            continue;
        }

        if (w[1].len > 6 || w[2].len > 5 || w[3].len == 0
            || w[3].len > 20 || w[4].len == 0 || w[4].len > 20
            || ngx_atoof(w[3].data, w[3].len) == NGX_ERROR
            || ngx_atoof(w[4].data, w[4].len) == NGX_ERROR)
        {
            continue;
        }

        ngx_sprintf(members, "\"budget\":\"%V\",\"period\":\"%V\","
                    "\"limit\":%V,\"used\":%V%Z", &w[1], &w[2], &w[3],
                    &w[4]);

        ngx_nexus_audit_request(r, b->tenant_id, type, outcome,
                                (char *) members);
    }
}


/* NGX_OK to call the provider, or NGX_DONE when answered here */

ngx_int_t
ngx_nexus_budget_decide(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_int_t status)
{
    ngx_int_t            rc;
    ngx_nexus_budget_t  *b;

    b = px->budget;

    switch (status) {

    case NGX_OK:
        b->held = 1;

        /* renewed while the request lives; expires if its node dies */
        b->renew.handler = ngx_nexus_budget_renew;
        b->renew.data = b;
        b->renew.log = ngx_cycle->log;
        b->renew.cancelable = 1;

        ngx_add_timer(&b->renew, ngx_max(b->ttl / 3, 1));

        if (b->cost_state != NGX_NEXUS_COST_DEGRADED) {
            return NGX_OK;
        }

        /* the budget is at its cap: the cheaper request is what was held */
        b->price[0] = b->cost.degrade_priced ? b->cost.degrade_price[0] : 0;
        b->price[1] = b->cost.degrade_priced ? b->cost.degrade_price[1] : 0;

        rc = ngx_nexus_gateway_retarget(r, b->proxy, &b->cost.degrade_model,
                                        b->alt_max);

        if (rc == NGX_OK) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            break;
        }

        /* no provider serves it: as if it could not be degraded */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "nexus cost budget: degrade model \"%V\" cannot serve "
                      "this request, refused", &b->cost.degrade_model);

        rc = ngx_nexus_budget_capped(r, b, "degrade_model_unavailable");
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        /* refused: nothing was written */
        b->sent = 0;

        switch (b->refused) {

        case NGX_NEXUS_BUDGET_OVER:
            rc = ngx_nexus_budget_exceeded(r, b);
            break;

        case NGX_NEXUS_BUDGET_COST:
            rc = ngx_nexus_budget_capped(r, b, NULL);
            break;

        case NGX_NEXUS_BUDGET_CREDITS:
            rc = ngx_nexus_budget_no_credits(r, b);
            break;

        default:
            rc = ngx_nexus_budget_tpm_limited(r, b);
            break;
        }

        break;

    case NGX_BUSY:
        /* Redis lost the balance (a restart without persistence) */
        b->sent = 0;
        ngx_nexus_credits_reseed();

        /* fall through */

    default:
        rc = ngx_nexus_budget_unavailable(r, b);

        if (rc == NGX_DECLINED) {
            /* nexus_fail_mode open */
            return NGX_OK;
        }

        break;
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * Without nexus_redis: a budget is the fleet's and cannot be counted on
 * one node, nor can costs and credits (nexus_fail_mode decides), but
 * tokens per minute are checked in the shared zone, like the rate limits.
 */

static ngx_int_t
ngx_nexus_budget_local(ngx_http_request_t *r, ngx_nexus_budget_t *b)
{
    ngx_int_t                  rc;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_limit_result_t   res;

    if (b->limits[0] || b->limits[1] || b->limits[2] || b->governed) {
        rc = ngx_nexus_budget_unavailable(r, b);

        if (rc != NGX_DECLINED) {
            goto done;
        }
    }

    if (b->tpm[0] == 0 && b->tpm[1] == 0) {
        return NGX_OK;
    }

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (ngx_nexus_limit_local_tokens(nmcf->shm_zone, b->principal, b->tpm,
                                     b->want, &res)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "nexus tokens per minute: no room in the zone");

        rc = ngx_nexus_budget_unavailable(r, b);

        if (rc == NGX_DECLINED) {
            return NGX_OK;
        }

        goto done;
    }

    b->tpm_scope = res.tenant_scope ? 2 : 1;
    b->tpm_limit = b->tpm[res.tenant_scope];
    b->tpm_remaining = res.remaining;

    if (res.allowed) {
        b->local = 1;
        b->held = 1;
        return NGX_OK;
    }

    b->refused = NGX_NEXUS_BUDGET_TPM;
    b->tpm_wait_ms = res.retry_ms;

    rc = ngx_nexus_budget_tpm_limited(r, b);

done:

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* 429 BUDGET_EXCEEDED: the binding period cannot cover the worst case */

static ngx_int_t
ngx_nexus_budget_exceeded(ngx_http_request_t *r, ngx_nexus_budget_t *b)
{
    u_char             *details;
    int64_t             remaining, retry;
    ngx_nexus_proxy_t  *px;

    px = b->proxy;
    remaining = ngx_max(b->limit - b->used - b->reserved, 0);

    if (b->limit - b->used >= b->want) {
        /* only calls in flight hold it: they give back what they do not
         * use as they end */
        retry = 1000;

    } else if (b->reset_ms > 0) {
        retry = b->reset_ms;

    } else {
        retry = NGX_NEXUS_BUDGET_TOTAL_RETRY;
    }

    details = ngx_pnalloc(r->pool, 160 + 5 * NGX_INT64_LEN);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"period\":\"%s\",\"limit\":%L,\"used\":%L,"
                "\"reserved\":%L,\"remaining\":%L,\"requested\":%L,"
                "\"retry_after_ms\":%L}%Z",
                ngx_nexus_budget_periods[b->period], b->limit, b->used,
                b->reserved, remaining, b->want, retry);

    if (ngx_nexus_budget_period_headers(r, b, remaining) != NGX_OK
        || ngx_nexus_budget_header(r, "Retry-After", (retry + 999) / 1000)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_budget_refuse(r, px, NGX_HTTP_TOO_MANY_REQUESTS,
                                   "BUDGET_EXCEEDED",
                                   "the key's token budget cannot cover "
                                   "this request", details);
}


/*
 * The call refused by its budget, TPM or credits: Nexus's own answer, and
 * the usage event's error code.
 */

static ngx_int_t
ngx_nexus_budget_refuse(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_uint_t status, const char *code, const char *message,
    u_char *details)
{
    px->sent_own = 1;
    px->error_code = code;

    return ngx_nexus_send_error(r, status, code, message, (char *) details);
}


/*
 * 429 BUDGET_EXCEEDED for the tenant's monthly cost budget: settled and
 * held spend leave less than the worst case of this request, and the
 * tenant blocks at its cap (or its degrade model cannot serve).
 */

static ngx_int_t
ngx_nexus_budget_capped(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    const char *why)
{
    u_char             *details, *p;
    int64_t             retry;
    ngx_nexus_proxy_t  *px;
    u_char              limit[NX_MONEY_LEN], spend[NX_MONEY_LEN];
    u_char              held[NX_MONEY_LEN], want[NX_MONEY_LEN];

    px = b->proxy;

    /* only calls in flight hold it when what is settled leaves room */
    retry = (b->spend + b->cost_want <= b->cost.budget)
            ? 1000 : ngx_max(b->month_ms, 1000);

    nx_money_format((char *) limit, b->cost.budget, NX_MONEY_MICRO);
    nx_money_format((char *) spend, b->spend, NX_MONEY_MICRO);
    nx_money_format((char *) held, b->spend_held, NX_MONEY_MICRO);
    nx_money_format((char *) want, b->cost_want, NX_MONEY_MICRO);

    details = ngx_pnalloc(r->pool, 256 + 4 * NX_MONEY_LEN);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(details, "{\"budget\":\"cost\",\"period\":\"month\","
                    "\"limit_usd\":%s,\"spend_usd\":%s,\"reserved_usd\":%s,"
                    "\"requested_usd\":%s,\"hard_cap_mode\":\"%s\","
                    "\"retry_after_ms\":%L",
                    limit, spend, held, want,
                    b->cost.degrade ? "degrade" : "block", retry);

    if (why) {
        p = ngx_sprintf(p, ",\"reason\":\"%s\"", why);
    }

    *p++ = '}';
    *p = '\0';

    if (ngx_nexus_budget_cost_headers(r, b, "capped", -1) != NGX_OK
        || ngx_nexus_budget_header(r, "Retry-After", (retry + 999) / 1000)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_budget_refuse(r, px, NGX_HTTP_TOO_MANY_REQUESTS,
                                   "BUDGET_EXCEEDED",
                                   "the tenant's monthly cost budget cannot "
                                   "cover this request", details);
}


/* 402 INSUFFICIENT_CREDITS: the balance cannot cover the worst case */

static ngx_int_t
ngx_nexus_budget_no_credits(ngx_http_request_t *r, ngx_nexus_budget_t *b)
{
    u_char             *details;
    int64_t             want;
    ngx_nexus_proxy_t  *px;
    u_char              balance[NX_MONEY_LEN], held[NX_MONEY_LEN];
    u_char              need[NX_MONEY_LEN];

    px = b->proxy;

    /* the degraded request's, if that is what was asked of the credits */
    want = (b->cost_state == NGX_NEXUS_COST_DEGRADED) ? b->alt_cost
                                                       : b->cost_want;

    nx_money_format((char *) balance, b->balance, NX_MONEY_MICRO);
    nx_money_format((char *) held, b->balance_held, NX_MONEY_MICRO);
    nx_money_format((char *) need, want, NX_MONEY_MICRO);

    details = ngx_pnalloc(r->pool, 128 + 3 * NX_MONEY_LEN);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"balance_usd\":%s,\"reserved_usd\":%s,"
                "\"requested_usd\":%s}%Z", balance, held, need);

    if (b->cost.budget
        && ngx_nexus_budget_cost_headers(r, b, NULL, -1) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_nexus_budget_usd_header(r, "X-Credits-Remaining-Usd",
                                    ngx_max(b->balance - b->balance_held, 0))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_budget_refuse(r, px, NGX_NEXUS_HTTP_PAYMENT_REQUIRED,
                                   "INSUFFICIENT_CREDITS",
                                   "the tenant's credit balance cannot "
                                   "cover this request", details);
}


/* 429 RATE_LIMITED by tokens per minute, with the headers of a rate limit */

static ngx_int_t
ngx_nexus_budget_tpm_limited(ngx_http_request_t *r, ngx_nexus_budget_t *b)
{
    u_char                *details;
    int64_t                retry;
    const char            *scope, *cname;
    ngx_nexus_proxy_t     *px;
    ngx_nexus_loc_conf_t  *nlcf;

    px = b->proxy;
    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    scope = (b->tpm_scope == 2) ? "tenant" : "api_key";
    cname = ngx_nexus_budget_classes[ngx_nexus_route_class(r, nlcf)];
    retry = ngx_max(b->tpm_wait_ms, 1);

    details = ngx_pnalloc(r->pool, 160 + 3 * NGX_INT64_LEN);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"scope\":\"%s\",\"route_class\":\"%s\","
                "\"retry_after_ms\":%L,\"unit\":\"tokens_per_minute\","
                "\"limit\":%L,\"requested\":%L}%Z",
                scope, cname, retry, b->tpm_limit, b->want);

    /* a request rate's X-RateLimit-* may be there already: replaced */
    if (ngx_nexus_budget_set_header(r, "X-RateLimit-Scope", scope) != NGX_OK
        || ngx_nexus_budget_set_header(r, "X-RateLimit-Route-Class", cname)
           != NGX_OK
        || ngx_nexus_budget_header(r, "X-RateLimit-Retry-After-Ms", retry)
           != NGX_OK
        || ngx_nexus_budget_header(r, "Retry-After", (retry + 999) / 1000)
           != NGX_OK
        || ngx_nexus_budget_header(r, "X-RateLimit-Limit", b->tpm_limit)
           != NGX_OK
        || ngx_nexus_budget_header(r, "X-RateLimit-Remaining",
                                   b->tpm_remaining)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (b->period
        && ngx_nexus_budget_period_headers(r, b,
                                           ngx_nexus_budget_remaining(b))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_nexus_audit_throttled(r, "tokens_per_minute", scope, cname);

    return ngx_nexus_budget_refuse(r, px, NGX_HTTP_TOO_MANY_REQUESTS,
                                   "RATE_LIMITED",
                                   "token rate limit exceeded", details);
}


/*
 * Redis could not answer (or is not configured): nexus_fail_mode.
 * NGX_DECLINED to go on without a reservation, else what the 503 returned.
 */

static ngx_int_t
ngx_nexus_budget_unavailable(ngx_http_request_t *r, ngx_nexus_budget_t *b)
{
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    /* once a second per worker: an outage must not flood the log */
    if (ngx_time() != ngx_nexus_budget_warned) {
        ngx_nexus_budget_warned = ngx_time();
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "nexus token budgets and costs unavailable, %s "
                      "(nexus_fail_mode %s)",
                      nlcf->fail_mode == NGX_NEXUS_FAIL_OPEN
                      ? "allowing" : "refusing",
                      nlcf->fail_mode == NGX_NEXUS_FAIL_OPEN
                      ? "open" : "closed");
    }

    if (nlcf->fail_mode == NGX_NEXUS_FAIL_OPEN) {
        b->degraded = 1;

        if (ngx_nexus_budget_set_header(r, "X-RateLimit-Status", "degraded")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_DECLINED;
    }

    b->proxy->sent_own = 1;
    b->proxy->error_code = "RATE_LIMIT_UNAVAILABLE";

    if (!b->limits[0] && !b->limits[1] && !b->limits[2]
        && (b->governed || b->unknown))
    {
        return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "RATE_LIMIT_UNAVAILABLE",
                                    "costs cannot be checked, try again",
                                    "{\"check\":\"cost_budget\"}");
    }

    return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "RATE_LIMIT_UNAVAILABLE",
                                "token budgets cannot be checked, try again",
                                "{\"check\":\"token_budget\"}");
}


/* what is left in the binding period, this request's reservation counted */

static int64_t
ngx_nexus_budget_remaining(ngx_nexus_budget_t *b)
{
    return ngx_max(b->limit - b->used - b->reserved, 0);
}


ngx_int_t
ngx_nexus_budget_headers(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    int64_t              remaining, actual;
    ngx_nexus_budget_t  *b;

    b = px->budget;

    if (b == NULL || !b->held) {
        return NGX_OK;
    }

    if (b->period) {
        remaining = b->limit - b->used - b->reserved;

        if (px->mode == NGX_NEXUS_PROXY_BODY && px->st.usage.present) {
            /* a whole answer: what it used is known already */
            remaining += b->want - px->st.usage.total;
        }

        remaining = ngx_min(ngx_max(remaining, 0), b->limit);

        if (ngx_nexus_budget_period_headers(r, b, remaining) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (b->tpm_scope
        && (ngx_nexus_budget_header(r, "X-RateLimit-Limit-Tokens",
                                    b->tpm_limit)
            != NGX_OK
            || ngx_nexus_budget_header(r, "X-RateLimit-Remaining-Tokens",
                                       b->tpm_remaining)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    if (!b->governed || b->cost_state == NGX_NEXUS_COST_NONE) {
        return NGX_OK;
    }

    /* a whole answer: what it cost is known already */
    actual = -1;

    if (px->mode == NGX_NEXUS_PROXY_BODY && px->st.usage.present) {
        actual = nx_money_cost(px->st.usage.prompt, px->st.usage.completion,
                               b->price[0], b->price[1]);
    }

    if (b->cost.budget
        && ngx_nexus_budget_cost_headers(r, b, NULL, actual) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (b->cost.credits) {
        remaining = b->balance - b->balance_held;

        if (actual >= 0) {
            remaining += b->cost_held - actual;
        }

        if (ngx_nexus_budget_usd_header(r, "X-Credits-Remaining-Usd",
                                        ngx_max(remaining, 0))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * X-Cost-Month-Budget-Usd, -Spend-Usd and -Remaining-Usd, X-Cost-Status
 * and X-Cost-Estimated.  The spend is what is settled this month, plus
 * this answer's cost when it is known (actual >= 0); the remaining is the
 * budget less the spend and what calls in flight hold, this one's
 * reservation included while its cost is not known.  status NULL: ok,
 * warn once the spend reaches the warn ratio, degraded for a degraded
 * request.
 */

static ngx_int_t
ngx_nexus_budget_cost_headers(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    const char *status, int64_t actual)
{
    int64_t  spend, remaining;

    spend = b->spend;
    remaining = b->cost.budget - b->spend - b->spend_held;

    if (actual >= 0) {
        spend += actual;
        remaining += b->cost_held - actual;
    }

    if (status == NULL) {
        if (b->cost_state == NGX_NEXUS_COST_DEGRADED) {
            status = "degraded";

        } else if (spend * 1000 >= b->cost.budget * (int64_t) b->cost.warn) {
            status = "warn";

        } else {
            status = "ok";
        }
    }

    if (ngx_nexus_budget_usd_header(r, "X-Cost-Month-Budget-Usd",
                                    b->cost.budget)
        != NGX_OK
        || ngx_nexus_budget_usd_header(r, "X-Cost-Month-Spend-Usd", spend)
           != NGX_OK
        || ngx_nexus_budget_usd_header(r, "X-Cost-Month-Remaining-Usd",
                                       ngx_max(remaining, 0))
           != NGX_OK
        || ngx_nexus_budget_set_header(r, "X-Cost-Status", status) != NGX_OK
        || ngx_nexus_budget_set_header(r, "X-Cost-Estimated",
                                       actual >= 0 ? "false" : "true")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_budget_usd_header(ngx_http_request_t *r, const char *name,
    int64_t musd)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NX_MONEY_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    nx_money_format((char *) p, musd, NX_MONEY_MICRO);

    return ngx_nexus_budget_set_header(r, name, (const char *) p);
}


static ngx_int_t
ngx_nexus_budget_period_headers(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    int64_t remaining)
{
    if (ngx_nexus_budget_set_header(r, "X-Budget-Period",
                                    ngx_nexus_budget_periods[b->period])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_budget_header(r, "X-Budget-Tokens-Remaining", remaining);
}


static ngx_int_t
ngx_nexus_budget_header(ngx_http_request_t *r, const char *name,
    int64_t value)
{
    u_char  *p, *last;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, "%L", value);
    *last = '\0';

    return ngx_nexus_budget_set_header(r, name, (const char *) p);
}


/* a header that replaces any of the same name added before */

static ngx_int_t
ngx_nexus_budget_set_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0 && h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            h[i].hash = 0;
        }
    }

    return ngx_nexus_add_header(r, name, value);
}


static void
ngx_nexus_budget_renew(ngx_event_t *ev)
{
    u_char                  ttl[NGX_INT_T_LEN];
    const char             *argv[4];
    size_t                  argvlen[4];
    ngx_nexus_budget_t     *b;
    ngx_nexus_redis_cmd_t  *cmd;

    b = ev->data;

    argv[0] = (const char *) b->keys[0].data;
    argvlen[0] = b->keys[0].len;
    argv[1] = (const char *) b->keys[4].data;
    argvlen[1] = b->keys[4].len;
    argv[2] = (const char *) b->id.data;
    argvlen[2] = b->id.len;
    argv[3] = (const char *) ttl;
    argvlen[3] = ngx_sprintf(ttl, "%M", b->ttl) - ttl;

    /* fire and forget: a lost renewal only shortens the reservation */
    cmd = ngx_nexus_redis_eval(&ngx_nexus_budget_renew_script, 2, 4, argv,
                               argvlen);
    if (cmd) {
        (void) ngx_nexus_redis_send(&cmd, 1);
    }

    ngx_add_timer(ev, ngx_max(b->ttl / 3, 1));
}


/* from the proxy's accounting, in the request's pool cleanup */

void
ngx_nexus_budget_settle(ngx_nexus_proxy_t *px, int64_t prompt,
    int64_t completion)
{
    int64_t                 tokens;
    ngx_nexus_budget_t     *b, *o;
    ngx_nexus_main_conf_t  *nmcf;

    b = px->budget;

    if (b == NULL || b->settled) {
        return;
    }

    b->settled = 1;
    tokens = prompt + completion;

    if (b->renew.timer_set) {
        ngx_del_timer(&b->renew);
    }

    if (b->block) {
        ngx_nexus_block_settle(b->block, tokens);
        return;
    }

    if (b->local) {
        nmcf = ngx_http_get_module_main_conf(b->request, ngx_nexus_module);
        ngx_nexus_limit_local_tokens_settle(nmcf->shm_zone, b->principal,
                                            b->tpm, b->want - tokens);
        return;
    }

    if (b->cmd) {
        /*
         * the request ends before Redis answered the reservation (its
         * client left): the answer settles it, from a copy that does not
         * live in the request's pool
         */

        o = ngx_nexus_budget_copy(b, 0);
        if (o == NULL) {
            ngx_nexus_redis_cancel(b->cmd);
            return;
        }

        b->cmd->handler = ngx_nexus_budget_orphan;
        b->cmd->data = o;
        b->cmd = NULL;

        return;
    }

    if ((!b->sent && tokens <= 0) || !ngx_nexus_redis_configured()
        || b->strs == NULL)
    {
        /* nothing was held; or Redis was never asked, nor will be */
        return;
    }

    ngx_nexus_budget_send_settle(b, tokens,
                                 b->governed
                                 ? nx_money_cost(prompt, completion,
                                                 b->price[0], b->price[1])
                                 : 0);
}


/*
 * A copy of a reservation that outlives its request, in one allocation
 * with its strings: for a settlement once the request is gone, or for a
 * block's reservation (ngx_nexus_block.c).
 */

static ngx_nexus_budget_t *
ngx_nexus_budget_copy(ngx_nexus_budget_t *b, size_t extra)
{
    u_char              *p;
    ngx_uint_t           i;
    ngx_nexus_budget_t  *o;

    o = ngx_alloc(sizeof(ngx_nexus_budget_t) + b->strs_len + extra,
                  ngx_cycle->log);
    if (o == NULL) {
        return NULL;
    }

    ngx_memcpy(o, b, sizeof(ngx_nexus_budget_t));

    p = (u_char *) (o + 1);
    ngx_memcpy(p, b->strs, b->strs_len);

    o->strs = p;
    o->request = NULL;
    o->proxy = NULL;
    o->principal = NULL;
    o->cmd = NULL;
    o->block = NULL;
    ngx_memzero(&o->renew, sizeof(ngx_event_t));
    o->id.data = p + (b->id.data - b->strs);
    o->base.data = p + (b->base.data - b->strs);
    o->cbase.data = p + (b->cbase.data - b->strs);
    o->rid.data = p + (b->rid.data - b->strs);
    o->model.data = p + (b->model.data - b->strs);

    /* the settings' strings stay behind: a settlement needs none */
    ngx_str_null(&o->cost.degrade_model);

    for (i = 0; i < NGX_NEXUS_BUDGET_NKEYS; i++) {
        o->keys[i].data = p + (b->keys[i].data - b->strs);
    }

    return o;
}


static void
ngx_nexus_budget_orphan(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_int_t            status;
    ngx_nexus_budget_t  *o;

    o = cmd->data;

    /* unless cleanly refused, it may hold a reservation: give it back */
    status = (rc == NGX_OK) ? ngx_nexus_budget_parse(o, reply) : NGX_DECLINED;

    if (status != NGX_HTTP_TOO_MANY_REQUESTS && status != NGX_DONE) {
        ngx_nexus_budget_send_settle(o, 0, 0);
    }

    ngx_free(o);
}


static void
ngx_nexus_budget_send_settle(ngx_nexus_budget_t *b, int64_t tokens,
    int64_t cost)
{
    u_char                 *p;
    ngx_uint_t              i;
    const char             *argv[20];
    size_t                  argvlen[20];
    ngx_nexus_redis_cmd_t  *cmd;
    u_char                  args[5][NGX_INT64_LEN];

    for (i = 0; i < NGX_NEXUS_BUDGET_NKEYS; i++) {
        argv[i] = (const char *) b->keys[i].data;
        argvlen[i] = b->keys[i].len;
    }

    argv[7] = NGX_NEXUS_CREDIT_LEDGER;
    argvlen[7] = sizeof(NGX_NEXUS_CREDIT_LEDGER) - 1;

    argv[8] = (const char *) b->id.data;
    argvlen[8] = b->id.len;

    p = ngx_sprintf(args[0], "%L", ngx_max(tokens, 0));
    argv[9] = (const char *) args[0];
    argvlen[9] = p - args[0];

    for (i = 0; i < 2; i++) {
        p = ngx_sprintf(args[1 + i], "%L", b->tpm[i]);
        argv[10 + i] = (const char *) args[1 + i];
        argvlen[10 + i] = p - args[1 + i];
    }

    argv[12] = (const char *) b->base.data;
    argvlen[12] = b->base.len;

    argv[13] = (b->limits[0] || b->limits[1] || b->limits[2]) ? "1" : "0";
    argvlen[13] = 1;

    argv[14] = (const char *) b->cbase.data;
    argvlen[14] = b->cbase.len;

    p = ngx_sprintf(args[3], "%L", ngx_max(cost, 0));
    argv[15] = (const char *) args[3];
    argvlen[15] = p - args[3];

    argv[16] = b->cost.credits ? "1" : "0";
    argvlen[16] = 1;

    p = ngx_sprintf(args[4], "%L", b->tenant_id);
    argv[17] = (const char *) args[4];
    argvlen[17] = p - args[4];

    argv[18] = (const char *) b->rid.data;
    argvlen[18] = b->rid.len;

    argv[19] = (const char *) b->model.data;
    argvlen[19] = b->model.len;

    cmd = ngx_nexus_redis_eval(&ngx_nexus_budget_settle_script,
                               NGX_NEXUS_BUDGET_NKEYS + 1, 20, argv,
                               argvlen);
    if (cmd == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nexus token budget: no memory to settle %V",
                      &b->id);
        return;
    }

    /* not bound to the request: it may be gone when Redis answers */
    cmd->handler = ngx_nexus_budget_settled;
    cmd->data = NULL;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK
        && ngx_time() != ngx_nexus_budget_lost)
    {
        /* once a second per worker, as above */
        ngx_nexus_budget_lost = ngx_time();
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus token budget: Redis unavailable, %L tokens "
                      "(%L micro-dollars) not counted; the reservation "
                      "expires by itself", tokens, cost);
    }
}


static void
ngx_nexus_budget_settled(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus token budget: no answer to a settlement, "
                      "its tokens may not be counted");
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nexus token budget settlement failed: %*s",
                      reply->len, reply->str);
    }
}


/*
 * A block's reservation (ngx_nexus_block.c): the tokens of many requests
 * of one key, held under an id of its own, shared by the requests the
 * block admits and settled once, with the tokens they used, after the
 * last of them.  Only tokens: a reservation with costs or TPM is each
 * request's own.
 */

ngx_int_t
ngx_nexus_budget_identity(ngx_nexus_proxy_t *px, int64_t *v)
{
    ngx_nexus_budget_t  *b;

    b = px->budget;

    if (b == NULL) {
        return NGX_DECLINED;
    }

    if (b->governed || b->unknown || b->tpm[0] || b->tpm[1]) {
        return NGX_BUSY;
    }

    v[0] = b->limits[0];
    v[1] = b->limits[1];
    v[2] = b->limits[2];

    return NGX_OK;
}


int64_t
ngx_nexus_budget_want(ngx_nexus_proxy_t *px)
{
    ngx_nexus_budget_t  *b;

    b = px->budget;

    return b ? b->want : 0;
}


/* a copy of the request's reservation under a new id, for a block */

ngx_nexus_budget_t *
ngx_nexus_budget_detach(ngx_nexus_proxy_t *px, ngx_str_t *id)
{
    u_char              *p;
    ngx_nexus_budget_t  *b, *o;

    static ngx_uint_t  seq;

    b = px->budget;

    o = ngx_nexus_budget_copy(b, NGX_NEXUS_BUDGET_BLOCK_ID);
    if (o == NULL) {
        return NULL;
    }

    p = (u_char *) (o + 1) + b->strs_len;

    o->id.data = p;
    o->id.len = ngx_snprintf(p, NGX_NEXUS_BUDGET_BLOCK_ID,
                             "blk:%P:%uA:%08xD", ngx_pid, ++seq,
                             (uint32_t) ngx_random())
                - p;
    o->rid.len = 0;

    *id = o->id;

    return o;
}


/* the block's reservation was made: renewed while the block lives */

void
ngx_nexus_budget_hold(ngx_nexus_budget_t *o)
{
    o->renew.handler = ngx_nexus_budget_renew;
    o->renew.data = o;
    o->renew.log = ngx_cycle->log;
    o->renew.cancelable = 1;

    ngx_add_timer(&o->renew, ngx_max(o->ttl / 3, 1));
}


/*
 * The block is over: its reservation is released, and the tokens its
 * requests used are counted (settle), or it is only forgotten (it was
 * never made).
 */

void
ngx_nexus_budget_end(ngx_nexus_budget_t *o, int64_t tokens,
    ngx_uint_t settle)
{
    if (o->renew.timer_set) {
        ngx_del_timer(&o->renew);
    }

    if (settle) {
        ngx_nexus_budget_send_settle(o, tokens, 0);
    }

    ngx_free(o);
}


/*
 * The take's answer, {limits, reservation, ...}: NGX_OK when the block's
 * reservation was made (share gets its binding period, with the block's
 * tokens in what is reserved, and fired the events it fired), else
 * NGX_DECLINED.
 */

ngx_int_t
ngx_nexus_budget_block_answer(ngx_nexus_budget_t *o, redisReply *reply,
    ngx_nexus_budget_share_t *share, ngx_str_t *fired)
{
    if (ngx_nexus_budget_parse(o, reply) != NGX_OK) {
        return NGX_DECLINED;
    }

    share->period = o->period;
    share->limit = o->limit;
    share->used = o->used;
    share->reserved = o->reserved;
    share->reset_ms = o->reset_ms;
    share->want = o->want;

    reply = reply->element[1]->element[19];
    fired->data = (u_char *) reply->str;
    fired->len = reply->len;

    return NGX_OK;
}


/* a request the block admits: its reservation is a share of the block's */

void
ngx_nexus_budget_member(ngx_nexus_proxy_t *px, ngx_nexus_block_t *block,
    ngx_nexus_budget_share_t *share, ngx_str_t *fired)
{
    ngx_nexus_budget_t  *b;

    b = px->budget;

    b->block = block;
    b->held = 1;
    b->period = share->period;
    b->limit = share->limit;
    b->used = share->used;
    b->reserved = share->reserved;
    b->reset_ms = share->reset_ms;

    if (fired && fired->len) {
        ngx_nexus_budget_audit(b->request, b, fired);
    }
}
