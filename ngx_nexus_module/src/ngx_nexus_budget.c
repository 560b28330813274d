
/*
 * Copyright (C) Nexus authors
 *
 * Token budgets and tokens per minute, exact across a fleet.
 *
 * A gateway call first reserves its worst case: the prompt estimate plus
 * max_tokens, or plus the model's ceiling (nexus_token_ceiling) when the
 * client set none; an embedding costs its prompt only.  One Lua script,
 * in one Redis round trip, checks the key's daily, monthly and total
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
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_budget.h"


#define NGX_NEXUS_BUDGET_OK         0
#define NGX_NEXUS_BUDGET_OVER       1
#define NGX_NEXUS_BUDGET_TPM        2

/* a total budget never resets: a client may come back in a day */
#define NGX_NEXUS_BUDGET_TOTAL_RETRY    86400000


typedef struct {
    ngx_str_t                   model;
    int64_t                     tokens;
} ngx_nexus_ceiling_t;


typedef struct {
    ngx_http_request_t         *request;    /* NULL once orphaned */
    ngx_nexus_proxy_t          *proxy;
    ngx_nexus_redis_cmd_t      *cmd;        /* the reservation in flight */
    ngx_event_t                 renew;
    ngx_msec_t                  ttl;

    /* keys[], id and base point into strs */
    u_char                     *strs;
    size_t                      strs_len;
    ngx_str_t                   keys[4];
    ngx_str_t                   id;
    ngx_str_t                   base;

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

    ngx_nexus_principal_t      *principal;  /* without Redis */

    unsigned                    sent:1;     /* may exist in Redis */
    unsigned                    held:1;     /* reserved */
    unsigned                    local:1;    /* TPM in the shared zone */
    unsigned                    degraded:1;
    unsigned                    settled:1;
} ngx_nexus_budget_t;


static int64_t ngx_nexus_budget_want(ngx_nexus_proxy_t *px,
    ngx_nexus_main_conf_t *nmcf);
static ngx_int_t ngx_nexus_budget_strings(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, ngx_nexus_principal_t *pr);
static void ngx_nexus_budget_reserved(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_budget_parse(ngx_nexus_budget_t *b,
    redisReply *reply);
static ngx_int_t ngx_nexus_budget_decide(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, ngx_int_t status);
static ngx_int_t ngx_nexus_budget_local(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_exceeded(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_tpm_limited(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_unavailable(ngx_http_request_t *r,
    ngx_nexus_budget_t *b);
static int64_t ngx_nexus_budget_remaining(ngx_nexus_budget_t *b);
static ngx_int_t ngx_nexus_budget_period_headers(ngx_http_request_t *r,
    ngx_nexus_budget_t *b, int64_t remaining);
static ngx_int_t ngx_nexus_budget_header(ngx_http_request_t *r,
    const char *name, int64_t value);
static ngx_int_t ngx_nexus_budget_set_header(ngx_http_request_t *r,
    const char *name, const char *value);
static void ngx_nexus_budget_renew(ngx_event_t *ev);
static void ngx_nexus_budget_orphan(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static void ngx_nexus_budget_send_settle(ngx_nexus_budget_t *b,
    int64_t tokens);
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


/*
 * Lua shared by the scripts.  Keys of a key's budget, under base
 * ("nx:tb:<key id>"): base:d:<day number> and base:m:<YYYY-MM> (hashes
 * of "used" and "res", the tokens settled and held, expiring a day after
 * their period), base:t (the same for the key's life).  KEYS[1] is the
 * sorted set of reservations by expiry, KEYS[2] the hash of reservation
 * records "tokens:day:month:counted", KEYS[3] and KEYS[4] the key's and
 * the tenant's TPM buckets (tokens "tk" at time "ts", refilled at the
 * rate of a minute, debt allowed).
 */

#define NGX_NEXUS_BUDGET_LUA_COMMON                                           \
    "local t = redis.call('TIME')\n"                                          \
    "local now = tonumber(t[1]) * 1000"                                       \
    " + math.floor(tonumber(t[2]) / 1000)\n"                                  \
    NGX_NEXUS_LUA_CALENDAR                                                    \
    "local day = math.floor(now / 86400000)\n"                                \
    "local y, m = civil(day)\n"                                               \
    "local mon = string.format('%04d-%02d', y, m)\n"                          \
    "local ny, nm = y, m + 1\n"                                               \
    "if nm > 12 then ny, nm = y + 1, 1 end\n"                                 \
    "local dend = (day + 1) * 86400000\n"                                     \
    "local mend = days(ny, nm) * 86400000\n"                                  \
    "local function add(k, f, n)\n"                                           \
    "  if n ~= 0 and redis.call('EXISTS', k) == 1 then\n"                     \
    "    redis.call('HINCRBY', k, f, n)\n"                                    \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "local function release(rid, used)\n"                                     \
    "  local rec = redis.call('HGET', KEYS[2], rid)\n"                        \
    "  redis.call('ZREM', KEYS[1], rid)\n"                                    \
    "  if not rec then return nil end\n"                                      \
    "  redis.call('HDEL', KEYS[2], rid)\n"                                    \
    "  local n, d, mo, c = string.match(rec,"                                 \
    " '^(%d+):(%d+):([%d-]+):(%d)$')\n"                                       \
    "  if not n then return nil end\n"                                        \
    "  n = tonumber(n)\n"                                                     \
    "  if c == '1' then\n"                                                    \
    "    for _, k in ipairs({base .. ':d:' .. d, base .. ':m:' .. mo,"        \
    " base .. ':t'}) do\n"                                                    \
    "      add(k, 'res', -n)\n"                                               \
    "      add(k, 'used', used)\n"                                            \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  return n\n"                                                            \
    "end\n"                                                                   \
    "local function level(key, tpm)\n"                                        \
    "  local v = redis.call('HMGET', key, 'tk', 'ts')\n"                      \
    "  local tk, ts = tonumber(v[1]), tonumber(v[2])\n"                       \
    "  if tk == nil or ts == nil then return tpm end\n"                       \
    "  if now > ts then\n"                                                    \
    "    tk = math.min(tpm, tk + (now - ts) * tpm / 60000)\n"                 \
    "  end\n"                                                                 \
    "  return tk\n"                                                           \
    "end\n"                                                                   \
    "local function store(key, tk, tpm)\n"                                    \
    "  redis.call('HSET', key, 'tk', tostring(tk), 'ts', now)\n"              \
    "  redis.call('PEXPIRE', key,"                                            \
    " math.ceil((tpm - tk) * 60000 / tpm) + 1000)\n"                          \
    "end\n"


static ngx_nexus_redis_script_t  ngx_nexus_budget_reserve_script;
static ngx_nexus_redis_script_t  ngx_nexus_budget_settle_script;
static ngx_nexus_redis_script_t  ngx_nexus_budget_renew_script;


/*
 * ARGV: 1 reservation id, 2 tokens wanted, 3 ttl (ms), 4-6 the daily,
 * monthly and total budgets (0: none), 7-8 the key's and the tenant's
 * TPM (0: none), 9 base.  Returns 11 integers: allowed (1/0), refused
 * by (0, 1 budget, 2 TPM), the binding period (0 none, 1 day, 2 month,
 * 3 total), its limit, used, reserved (this reservation included when
 * allowed), ms until it resets (0 for total), the binding TPM bucket
 * (0 none, 1 key, 2 tenant), its limit, its tokens left, and the ms to
 * wait for enough of them when refused.
 */

static const char  ngx_nexus_budget_reserve_lua[] =
    "local base = ARGV[9]\n"
    NGX_NEXUS_BUDGET_LUA_COMMON
    "local id, want, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local lim = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}\n"
    "local ktpm, ttpm = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,"
    " 'LIMIT', 0, 100)) do\n"
    "  release(rid, 0)\n"
    "end\n"
    "local pk = {base .. ':d:' .. day, base .. ':m:' .. mon, base .. ':t'}\n"
    "local reset = {dend - now, mend - now, 0}\n"
    "local counted = lim[1] > 0 or lim[2] > 0 or lim[3] > 0\n"
    "local bp, bl, bu, br, brem, bt = 0, 0, 0, 0, 0, 0\n"
    "for i = 1, 3 do\n"
    "  if lim[i] > 0 then\n"
    "    local v = redis.call('HMGET', pk[i], 'used', 'res')\n"
    "    local u, r = tonumber(v[1]) or 0, tonumber(v[2]) or 0\n"
    "    if bp == 0 or lim[i] - u - r < brem then\n"
    "      bp, bl, bu, br, brem, bt = i, lim[i], u, r, lim[i] - u - r,"
    " reset[i]\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if bp > 0 and brem < want then\n"
    "  return {0, 1, bp, bl, bu, br, bt, 0, 0, 0, 0}\n"
    "end\n"
    "local kt, tt = 0, 0\n"
    "if ktpm > 0 then kt = level(KEYS[3], ktpm) end\n"
    "if ttpm > 0 then tt = level(KEYS[4], ttpm) end\n"
    "if ktpm > 0 and kt < math.min(want, ktpm) then\n"
    "  return {0, 2, bp, bl, bu, br, bt, 1, ktpm, math.floor(kt),"
    " math.ceil((math.min(want, ktpm) - kt) * 60000 / ktpm)}\n"
    "end\n"
    "if ttpm > 0 and tt < math.min(want, ttpm) then\n"
    "  return {0, 2, bp, bl, bu, br, bt, 2, ttpm, math.floor(tt),"
    " math.ceil((math.min(want, ttpm) - tt) * 60000 / ttpm)}\n"
    "end\n"
    "if counted then\n"
    "  for i = 1, 3 do redis.call('HINCRBY', pk[i], 'res', want) end\n"
    "  redis.call('PEXPIRE', pk[1], dend - now + 86400000)\n"
    "  redis.call('PEXPIRE', pk[2], mend - now + 86400000)\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], now + ttl, id)\n"
    "redis.call('HSET', KEYS[2], id, string.format('%d:%d:%s:%d', want,"
    " day, mon, counted and 1 or 0))\n"
    "local ts, tl, tr = 0, 0, 0\n"
    "if ktpm > 0 then\n"
    "  kt = kt - want\n"
    "  store(KEYS[3], kt, ktpm)\n"
    "  ts, tl, tr = 1, ktpm, kt\n"
    "end\n"
    "if ttpm > 0 then\n"
    "  tt = tt - want\n"
    "  store(KEYS[4], tt, ttpm)\n"
    "  if ts == 0 or tt < tr then ts, tl, tr = 2, ttpm, tt end\n"
    "end\n"
    "if bp > 0 then br = br + want end\n"
    "return {1, 0, bp, bl, bu, br, bt, ts, tl, math.floor(math.max(tr, 0)),"
    " 0}\n";


/*
 * ARGV: 1 reservation id, 2 tokens used, 3-4 the key's and the tenant's
 * TPM (0: none), 5 base, 6 "1" when the key has a budget now.  A
 * reservation that is gone (expired, or never made: Redis was down) is
 * settled as if there had been none: its tokens are counted and charged.
 */

static const char  ngx_nexus_budget_settle_lua[] =
    "local base = ARGV[5]\n"
    NGX_NEXUS_BUDGET_LUA_COMMON
    "local id, used = ARGV[1], tonumber(ARGV[2])\n"
    "local ktpm, ttpm = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local n = release(id, used)\n"
    "local back\n"
    "if n then\n"
    "  back = n - used\n"
    "else\n"
    "  if used <= 0 then return 0 end\n"
    "  back = -used\n"
    "  if ARGV[6] == '1' then\n"
    "    local pk = {base .. ':d:' .. day, base .. ':m:' .. mon,"
    " base .. ':t'}\n"
    "    for i = 1, 3 do redis.call('HINCRBY', pk[i], 'used', used) end\n"
    "    redis.call('PEXPIRE', pk[1], dend - now + 86400000)\n"
    "    redis.call('PEXPIRE', pk[2], mend - now + 86400000)\n"
    "  end\n"
    "end\n"
    "if back ~= 0 and ktpm > 0 then\n"
    "  store(KEYS[3], math.min(ktpm, level(KEYS[3], ktpm) + back), ktpm)\n"
    "end\n"
    "if back ~= 0 and ttpm > 0 then\n"
    "  store(KEYS[4], math.min(ttpm, level(KEYS[4], ttpm) + back), ttpm)\n"
    "end\n"
    "return n and 1 or 0\n";


/* KEYS: reservations; ARGV: reservation id, ttl */

static const char  ngx_nexus_budget_renew_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]),"
    " ARGV[1])\n";


ngx_int_t
ngx_nexus_budget_init(ngx_conf_t *cf)
{
    if (ngx_nexus_redis_script(cf, &ngx_nexus_budget_reserve_script,
                               ngx_nexus_budget_reserve_lua)
        != NGX_OK
        || ngx_nexus_redis_script(cf, &ngx_nexus_budget_settle_script,
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
ngx_nexus_budget_reserve(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    u_char                  *p;
    int64_t                  tpm[2];
    ngx_uint_t               i;
    const char              *argv[13];
    size_t                   argvlen[13];
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_budget_t      *b;
    ngx_nexus_loc_conf_t    *nlcf;
    ngx_nexus_main_conf_t   *nmcf;
    ngx_nexus_principal_t   *pr;
    ngx_nexus_redis_cmd_t   *cmd;
    u_char                   args[7][NGX_INT64_LEN];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    pr = &ctx->principal;

    /* a key's or tenant's own TPM, else the location's */
    for (i = 0; i < 2; i++) {
        tpm[i] = pr->tpm[i] ? pr->tpm[i] : ngx_max(nlcf->tpm[i], 0);
    }

    if (pr->budget[0] == 0 && pr->budget[1] == 0 && pr->budget[2] == 0
        && tpm[0] == 0 && tpm[1] == 0)
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
    b->want = ngx_nexus_budget_want(px, nmcf);
    ngx_memcpy(b->limits, pr->budget, sizeof(b->limits));
    ngx_memcpy(b->tpm, tpm, sizeof(b->tpm));

    if (ngx_nexus_budget_strings(r, b, pr) != NGX_OK) {
        goto failed;
    }

    px->budget = b;

    if (!ngx_nexus_redis_configured()) {
        b->principal = pr;
        return ngx_nexus_budget_local(r, b);
    }

    for (i = 0; i < 4; i++) {
        argv[i] = (const char *) b->keys[i].data;
        argvlen[i] = b->keys[i].len;
    }

    argv[4] = (const char *) b->id.data;
    argvlen[4] = b->id.len;

    p = ngx_sprintf(args[0], "%L", b->want);
    argv[5] = (const char *) args[0];
    argvlen[5] = p - args[0];

    p = ngx_sprintf(args[1], "%M", b->ttl);
    argv[6] = (const char *) args[1];
    argvlen[6] = p - args[1];

    for (i = 0; i < 3; i++) {
        p = ngx_sprintf(args[2 + i], "%L", b->limits[i]);
        argv[7 + i] = (const char *) args[2 + i];
        argvlen[7 + i] = p - args[2 + i];
    }

    for (i = 0; i < 2; i++) {
        p = ngx_sprintf(args[5 + i], "%L", b->tpm[i]);
        argv[10 + i] = (const char *) args[5 + i];
        argvlen[10 + i] = p - args[5 + i];
    }

    argv[12] = (const char *) b->base.data;
    argvlen[12] = b->base.len;

    cmd = ngx_nexus_redis_eval(&ngx_nexus_budget_reserve_script, 4, 13, argv,
                               argvlen);
    if (cmd == NULL) {
        goto failed;
    }

    cmd->handler = ngx_nexus_budget_reserved;
    cmd->data = b;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        return ngx_nexus_budget_decide(r, b, NGX_DECLINED);
    }

    /* from here the reservation may exist, whatever becomes of us */
    b->cmd = cmd;
    b->sent = 1;

    ngx_nexus_wait(r);

    return NGX_AGAIN;

failed:

    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);

    return NGX_DONE;
}


/* the worst case of a call: its prompt and the most it may answer */

static int64_t
ngx_nexus_budget_want(ngx_nexus_proxy_t *px, ngx_nexus_main_conf_t *nmcf)
{
    int64_t               out;
    ngx_uint_t            i;
    ngx_nexus_ceiling_t  *c;

    if (px->kind == NX_LLM_EMBEDDINGS) {
        return px->req.prompt_estimate;
    }

    out = px->req.max_tokens;

    if (out <= 0) {
        out = nmcf->token_ceiling;

        if (nmcf->token_ceilings) {
            c = nmcf->token_ceilings->elts;

            for (i = 0; i < nmcf->token_ceilings->nelts; i++) {
                if (c[i].model.len == px->model.len
                    && ngx_strncmp(c[i].model.data, px->model.data,
                                   px->model.len)
                       == 0)
                {
                    out = c[i].tokens;
                    break;
                }
            }
        }
    }

    return px->req.prompt_estimate + out;
}


static ngx_int_t
ngx_nexus_budget_strings(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    ngx_nexus_principal_t *pr)
{
    u_char  *p, *start;

    b->strs_len = 6 * (sizeof("nx:tb::rv") + NGX_INT64_LEN) + 64;

    p = ngx_pnalloc(r->pool, b->strs_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    b->strs = p;

    start = p;
    p = ngx_sprintf(p, "nx:tb:%L", pr->key_id);
    b->base.data = start;
    b->base.len = p - start;

    start = p;
    p = ngx_sprintf(p, "nx:tb:%L:r", pr->key_id);
    b->keys[0].data = start;
    b->keys[0].len = p - start;

    start = p;
    p = ngx_sprintf(p, "nx:tb:%L:rv", pr->key_id);
    b->keys[1].data = start;
    b->keys[1].len = p - start;

    start = p;
    p = ngx_sprintf(p, "nx:tpm:k:%L", pr->key_id);
    b->keys[2].data = start;
    b->keys[2].len = p - start;

    start = p;
    p = ngx_sprintf(p, "nx:tpm:t:%L", pr->tenant_id);
    b->keys[3].data = start;
    b->keys[3].len = p - start;

    /* unique across the fleet without trusting anything the client sent */
    start = p;
    p = ngx_sprintf(p, "%P:%uA:%08xD%08xD", ngx_pid, r->connection->number,
                    (uint32_t) ngx_random(), (uint32_t) ngx_random());
    b->id.data = start;
    b->id.len = p - start;

    return NGX_OK;
}


static void
ngx_nexus_budget_reserved(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_int_t            status;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_nexus_budget_t  *b;

    b = cmd->data;
    r = b->request;
    c = r->connection;

    b->cmd = NULL;

    status = NGX_DECLINED;

    if (rc == NGX_OK) {
        status = ngx_nexus_budget_parse(b, reply);

        if (status == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "nexus token budget script failed: %*s",
                          reply->type == REDIS_REPLY_ERROR ? reply->len : 0,
                          reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        }
    }

    r->read_event_handler = ngx_http_block_reading;

    if (ngx_nexus_budget_decide(r, b, status) == NGX_OK) {
        ngx_nexus_proxy_start(r, b->proxy);
    }

    ngx_http_run_posted_requests(c);
}


/* NGX_OK: reserved; NGX_HTTP_TOO_MANY_REQUESTS: refused; else NGX_DECLINED */

static ngx_int_t
ngx_nexus_budget_parse(ngx_nexus_budget_t *b, redisReply *reply)
{
    size_t        i;
    redisReply  **e;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 11) {
        return NGX_DECLINED;
    }

    e = reply->element;

    for (i = 0; i < 11; i++) {
        if (e[i]->type != REDIS_REPLY_INTEGER) {
            return NGX_DECLINED;
        }
    }

    if (e[2]->integer < 0 || e[2]->integer > 3
        || e[7]->integer < 0 || e[7]->integer > 2)
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

    if (e[0]->integer == 1) {
        return NGX_OK;
    }

    if (b->refused != NGX_NEXUS_BUDGET_OVER
        && b->refused != NGX_NEXUS_BUDGET_TPM)
    {
        return NGX_DECLINED;
    }

    return NGX_HTTP_TOO_MANY_REQUESTS;
}


/* NGX_OK to call the provider, or NGX_DONE when answered here */

static ngx_int_t
ngx_nexus_budget_decide(ngx_http_request_t *r, ngx_nexus_budget_t *b,
    ngx_int_t status)
{
    ngx_int_t  rc;

    switch (status) {

    case NGX_OK:
        b->held = 1;

        /* renewed while the request lives; expires if its node dies */
        b->renew.handler = ngx_nexus_budget_renew;
        b->renew.data = b;
        b->renew.log = ngx_cycle->log;
        b->renew.cancelable = 1;

        ngx_add_timer(&b->renew, ngx_max(b->ttl / 3, 1));

        return NGX_OK;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        /* refused: nothing was written */
        b->sent = 0;

        rc = (b->refused == NGX_NEXUS_BUDGET_OVER)
             ? ngx_nexus_budget_exceeded(r, b)
             : ngx_nexus_budget_tpm_limited(r, b);
        break;

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
 * one node (nexus_fail_mode decides), but tokens per minute are checked in
 * the shared zone, like the rate limits.
 */

static ngx_int_t
ngx_nexus_budget_local(ngx_http_request_t *r, ngx_nexus_budget_t *b)
{
    ngx_int_t                  rc;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_limit_result_t   res;

    if (b->limits[0] || b->limits[1] || b->limits[2]) {
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

    px->sent_own = 1;
    px->error_code = "BUDGET_EXCEEDED";

    return ngx_nexus_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                "BUDGET_EXCEEDED",
                                "the key's token budget cannot cover this "
                                "request", (char *) details);
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

    px->sent_own = 1;
    px->error_code = "RATE_LIMITED";

    return ngx_nexus_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS, "RATE_LIMITED",
                                "token rate limit exceeded",
                                (char *) details);
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
                      "nexus token budgets unavailable, %s "
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
    int64_t              remaining;
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

    return NGX_OK;
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
    const char             *argv[3];
    size_t                  argvlen[3];
    ngx_nexus_budget_t     *b;
    ngx_nexus_redis_cmd_t  *cmd;

    b = ev->data;

    argv[0] = (const char *) b->keys[0].data;
    argvlen[0] = b->keys[0].len;
    argv[1] = (const char *) b->id.data;
    argvlen[1] = b->id.len;
    argv[2] = (const char *) ttl;
    argvlen[2] = ngx_sprintf(ttl, "%M", b->ttl) - ttl;

    /* fire and forget: a lost renewal only shortens the reservation */
    cmd = ngx_nexus_redis_eval(&ngx_nexus_budget_renew_script, 1, 3, argv,
                               argvlen);
    if (cmd) {
        (void) ngx_nexus_redis_send(&cmd, 1);
    }

    ngx_add_timer(ev, ngx_max(b->ttl / 3, 1));
}


/* from the proxy's accounting, in the request's pool cleanup */

void
ngx_nexus_budget_settle(ngx_nexus_proxy_t *px, int64_t tokens)
{
    u_char                 *p;
    ngx_uint_t              i;
    ngx_nexus_budget_t     *b, *o;
    ngx_nexus_main_conf_t  *nmcf;

    b = px->budget;

    if (b == NULL || b->settled) {
        return;
    }

    b->settled = 1;

    if (b->renew.timer_set) {
        ngx_del_timer(&b->renew);
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

        o = ngx_alloc(sizeof(ngx_nexus_budget_t) + b->strs_len,
                      ngx_cycle->log);
        if (o == NULL) {
            ngx_nexus_redis_cancel(b->cmd);
            return;
        }

        ngx_memcpy(o, b, sizeof(ngx_nexus_budget_t));

        p = (u_char *) (o + 1);
        ngx_memcpy(p, b->strs, b->strs_len);

        o->strs = p;
        o->request = NULL;
        o->proxy = NULL;
        o->cmd = NULL;
        o->id.data = p + (b->id.data - b->strs);
        o->base.data = p + (b->base.data - b->strs);

        for (i = 0; i < 4; i++) {
            o->keys[i].data = p + (b->keys[i].data - b->strs);
        }

        b->cmd->handler = ngx_nexus_budget_orphan;
        b->cmd->data = o;
        b->cmd = NULL;

        return;
    }

    if ((!b->sent && tokens <= 0) || !ngx_nexus_redis_configured()) {
        return;
    }

    ngx_nexus_budget_send_settle(b, tokens);
}


static void
ngx_nexus_budget_orphan(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_nexus_budget_t  *o;

    o = cmd->data;

    /* unless cleanly refused, it may hold a reservation: give it back */
    if (rc != NGX_OK
        || ngx_nexus_budget_parse(o, reply) != NGX_HTTP_TOO_MANY_REQUESTS)
    {
        ngx_nexus_budget_send_settle(o, 0);
    }

    ngx_free(o);
}


static void
ngx_nexus_budget_send_settle(ngx_nexus_budget_t *b, int64_t tokens)
{
    u_char                 *p;
    ngx_uint_t              i;
    const char             *argv[10];
    size_t                  argvlen[10];
    ngx_nexus_redis_cmd_t  *cmd;
    u_char                  args[3][NGX_INT64_LEN];

    for (i = 0; i < 4; i++) {
        argv[i] = (const char *) b->keys[i].data;
        argvlen[i] = b->keys[i].len;
    }

    argv[4] = (const char *) b->id.data;
    argvlen[4] = b->id.len;

    p = ngx_sprintf(args[0], "%L", ngx_max(tokens, 0));
    argv[5] = (const char *) args[0];
    argvlen[5] = p - args[0];

    for (i = 0; i < 2; i++) {
        p = ngx_sprintf(args[1 + i], "%L", b->tpm[i]);
        argv[6 + i] = (const char *) args[1 + i];
        argvlen[6 + i] = p - args[1 + i];
    }

    argv[8] = (const char *) b->base.data;
    argvlen[8] = b->base.len;

    argv[9] = (b->limits[0] || b->limits[1] || b->limits[2]) ? "1" : "0";
    argvlen[9] = 1;

    cmd = ngx_nexus_redis_eval(&ngx_nexus_budget_settle_script, 4, 10, argv,
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
                      "not counted; the reservation expires by itself",
                      tokens);
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
