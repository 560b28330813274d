
/*
 * Copyright (C) Nexus authors
 *
 * Rate limits: the decision shared by the Redis and the local paths.
 */


#ifndef _NGX_NEXUS_LIMIT_H_INCLUDED_
#define _NGX_NEXUS_LIMIT_H_INCLUDED_


#include "ngx_nexus_module.h"


/*
 * Lua: civil(day number) -> year, month and days(year, month) -> the day
 * number of the month's first day (proleptic Gregorian, UTC), shared by
 * the scripts that count quotas and the one that reads them.
 */
#define NGX_NEXUS_LUA_CALENDAR                                                \
    "local function civil(z)\n"                                               \
    "  z = z + 719468\n"                                                      \
    "  local era = math.floor(z / 146097)\n"                                  \
    "  local doe = z - era * 146097\n"                                        \
    "  local yoe = math.floor((doe - math.floor(doe / 1460)"                  \
    " + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)\n"         \
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4)"                    \
    " - math.floor(yoe / 100))\n"                                             \
    "  local mp = math.floor((5 * doy + 2) / 153)\n"                          \
    "  local m = mp < 10 and mp + 3 or mp - 9\n"                              \
    "  local y = yoe + era * 400\n"                                           \
    "  if m <= 2 then y = y + 1 end\n"                                        \
    "  return y, m\n"                                                         \
    "end\n"                                                                   \
    "local function days(y, m)\n"                                             \
    "  if m <= 2 then y = y - 1 end\n"                                        \
    "  local era = math.floor(y / 400)\n"                                     \
    "  local yoe = y - era * 400\n"                                           \
    "  local mp = m > 2 and m - 3 or m + 9\n"                                 \
    "  local doy = math.floor((153 * mp + 2) / 5)\n"                          \
    "  return era * 146097 + yoe * 365 + math.floor(yoe / 4)"                 \
    " - math.floor(yoe / 100) + doy - 719468\n"                               \
    "end\n"


/*
 * Lua: clock() reads Redis's clock, once per script however often it is
 * called, so that a script that may not need it does not pay for it:
 * now (ms since the epoch), day (the day number), mon ("YYYY-MM"), and the
 * ms at which the day and the month end (UTC).  After the calendar.
 */
#define NGX_NEXUS_LUA_CLOCK                                                   \
    "local now, day, mon, dend, mend\n"                                       \
    "local function clock()\n"                                                \
    "  if now then return end\n"                                              \
    "  local t = redis.call('TIME')\n"                                        \
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"     \
    "  day = math.floor(now / 86400000)\n"                                    \
    "  local y, m = civil(day)\n"                                             \
    "  mon = string.format('%04d-%02d', y, m)\n"                              \
    "  if m == 12 then y, m = y + 1, 1 else m = m + 1 end\n"                  \
    "  dend = (day + 1) * 86400000\n"                                         \
    "  mend = days(y, m) * 86400000\n"                                        \
    "end\n"


/*
 * Lua: bucket() writes a token bucket back, tokens tk at now, into a hash
 * that must live need ms more (until it would be full again) and never
 * needs more than full: its expiry is moved only when the one it has
 * (kept as "ex", ms of Redis's clock) is too early, and then as far as
 * full, so that most writes need no PEXPIREAT.  ex is what the bucket's
 * read found (0: none).  After the clock.
 */
#define NGX_NEXUS_LUA_BUCKET                                                  \
    "local function bucket(key, tk, ex, need, full)\n"                        \
    "  if ex >= now + need then\n"                                            \
    "    redis.call('HSET', key, 'tk', tostring(tk), 'ts', now)\n"            \
    "    return\n"                                                            \
    "  end\n"                                                                 \
    "  ex = now + math.max(need, full)\n"                                     \
    "  redis.call('HSET', key, 'tk', tostring(tk), 'ts', now, 'ex', ex)\n"    \
    "  redis.call('PEXPIREAT', key, ex)\n"                                    \
    "end\n"


/*
 * Lua: the request limits of one request - the key's and the tenant's
 * token buckets, their in-flight leases and the tenant's daily and
 * monthly quota (UTC periods) - as three closures, so that a script can
 * check them, check something else, and only then take them all:
 * lcheck() reads and returns whether everything allows (a refusal of the
 * hard cap fires its event); lcommit() takes a token from both buckets, a
 * lease in both sets and the quota's units, and fires the quota's other
 * events; lreply() is the answer (below).  After the clock, once clock()
 * ran, and after NGX_NEXUS_LUA_BUCKET.  The script sets lk and la, where
 * the limits' KEYS and ARGV begin.
 *
 * KEYS: key bucket, tenant bucket, key leases, tenant leases.
 * ARGV: 1-4 key rps, key burst, tenant rps, tenant burst (rps 0: none);
 * 5-6 key and tenant in-flight caps (0: none); 7 lease id; 8 lease ttl;
 * 9 tenant id; 10-11 daily and monthly quota (0: none); 12 soft cap in
 * permille; 13 "1" to observe rather than enforce; 14 units.
 *
 * The answer: allowed (1/0), the refusing scope ("api_key", "tenant" or
 * ""), the ms to wait, the tokens left in the emptier bucket, the kind of
 * refusal ("rate", "concurrency", "quota" or ""), the binding quota
 * period ("day", "month" or "": taken or refused by its quota only), its
 * limit, used and remaining, 1 when a soft cap is reached, and last the
 * quota events this call fired (each at most once per period and tenant),
 * for the audit log: "<type> <period> <limit> <used>", joined with ",".
 */
#define NGX_NEXUS_LUA_LIMITS                                                  \
    "local lcheck, lcommit, lreply\n"                                         \
    "do\n"                                                                    \
    "local kr, kb = tonumber(ARGV[la + 1]), tonumber(ARGV[la + 2])\n"         \
    "local tr, tb = tonumber(ARGV[la + 3]), tonumber(ARGV[la + 4])\n"         \
    "local km, tm = tonumber(ARGV[la + 5]), tonumber(ARGV[la + 6])\n"         \
    "local lease, lttl = ARGV[la + 7], tonumber(ARGV[la + 8])\n"              \
    "local tid = ARGV[la + 9]\n"                                              \
    "local qd, qm = tonumber(ARGV[la + 10]), tonumber(ARGV[la + 11])\n"       \
    "local soft, observe = tonumber(ARGV[la + 12]), ARGV[la + 13] == '1'\n"   \
    "local units = tonumber(ARGV[la + 14])\n"                                 \
    "local ktk, ttk, kex, tex = 0, 0, 0, 0\n"                                 \
    "local khd, khx, thd, thx = 0, 0, 0, 0\n"                                 \
    "local scope, kind, wait = '', '', 0\n"                                   \
    "local qp, ql, qu, qr, warn = '', 0, 0, 0, 0\n"                           \
    "local dk, mk, du, mu, dnew, mnew\n"                                      \
    "local over, olim, oused, oend, oid = '', 0, 0, 0, ''\n"                  \
    "local fired = {}\n"                                                      \
    "local function level(key, rate, burst)\n"                                \
    "  local v = redis.call('HMGET', key, 'tk', 'ts', 'ex', 'hd', 'hx')\n"    \
    "  local tk, ts = tonumber(v[1]), tonumber(v[2])\n"                       \
    "  if tk == nil or ts == nil then return burst, 0, 0, 0 end\n"            \
    "  local hd, hx = tonumber(v[4]) or 0, tonumber(v[5]) or 0\n"             \
    "  if now > hx then hd = 0 end\n"                                         \
    "  if now > ts then\n"                                                    \
    "    tk = math.min(burst - hd, tk + (now - ts) * rate / 1000)\n"          \
    "  end\n"                                                                 \
    "  return tk, tonumber(v[3]) or 0, hd, hx\n"                              \
    "end\n"                                                                   \
    "local function store(key, tk, ex, rate, burst)\n"                        \
    "  bucket(key, tk, ex, math.ceil((burst - tk) * 1000 / rate) + 1000,"     \
    " math.ceil(burst * 1000 / rate) + 1000)\n"                               \
    "end\n"                                                                   \
    "local function keep(key, tk, ex, hd, hx, rate, burst)\n"                 \
    "  local u = now + nhold\n"                                               \
    "  local e = math.max(ex, u,"                                             \
    " now + math.ceil((burst - tk) * 1000 / rate) + 1000)\n"                  \
    "  redis.call('HSET', key, 'tk', tostring(tk), 'ts', now, 'hd', hd + nb," \
    " 'hx', math.max(hx, u), 'ex', e)\n"                                      \
    "  if e ~= ex then redis.call('PEXPIREAT', key, e) end\n"                 \
    "end\n"                                                                   \
    "local function event(ty, p, pid, lim, used, ttl)\n"                      \
    "  local once = 'nx:q:' .. tid .. ':ev:' .. ty .. ':' .. pid\n"           \
    "  if redis.call('SET', once, '1', 'NX', 'PX', ttl) then\n"               \
    "    redis.call('XADD', 'nx:events', 'MAXLEN', '~', 100000, '*',"         \
    " 'type', ty, 'tenant_id', tid, 'period', p, 'limit', lim,"               \
    " 'used', used, 'ts', now)\n"                                             \
    "    fired[#fired + 1] = string.format('%s %s %d %d', ty, p, lim, used)\n"\
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "local function crosses(q, u)\n"                                          \
    "  return q > 0 and u * 1000 < q * soft"                                  \
    " and (u + units * nf) * 1000 >= q * soft\n"                              \
    "end\n"                                                                   \
    "lcheck = function()\n"                                                   \
    "  if kr > 0 then\n"                                                      \
    "    ktk, kex, khd, khx = level(KEYS[lk + 1], kr, kb)\n"                  \
    "    ttk, tex, thd, thx = level(KEYS[lk + 2], tr, tb)\n"                  \
    "    if ktk < nf then\n"                                                  \
    "      scope, kind = 'api_key', 'rate'\n"                                 \
    "      wait = math.ceil((1 - ktk) * 1000 / kr)\n"                         \
    "    elseif ttk < nf then\n"                                              \
    "      scope, kind = 'tenant', 'rate'\n"                                  \
    "      wait = math.ceil((1 - ttk) * 1000 / tr)\n"                         \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  if scope == '' and (km > 0 or tm > 0) then\n"                          \
    "    redis.call('ZREMRANGEBYSCORE', KEYS[lk + 3], '-inf', now)\n"         \
    "    redis.call('ZREMRANGEBYSCORE', KEYS[lk + 4], '-inf', now)\n"         \
    "    if km > 0 and redis.call('ZCARD', KEYS[lk + 3]) >= km then\n"        \
    "      scope, kind, wait = 'api_key', 'concurrency', 1000\n"              \
    "    elseif tm > 0 and redis.call('ZCARD', KEYS[lk + 4]) >= tm then\n"    \
    "      scope, kind, wait = 'tenant', 'concurrency', 1000\n"               \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  if scope == '' and (qd > 0 or qm > 0) then\n"                          \
    "    dk = 'nx:q:' .. tid .. ':d:' .. day\n"                               \
    "    mk = 'nx:q:' .. tid .. ':m:' .. mon\n"                               \
    "    local v = redis.call('MGET', dk, mk)\n"                              \
    "    dnew, mnew = not v[1], not v[2]\n"                                   \
    "    du, mu = tonumber(v[1] or '0'), tonumber(v[2] or '0')\n"             \
    "    if qd > 0 and du + units * nf > qd then\n"                           \
    "      over, olim, oused, oend, oid = 'day', qd, du, dend, day\n"         \
    "    elseif qm > 0 and mu + units * nf > qm then\n"                       \
    "      over, olim, oused, oend, oid = 'month', qm, mu, mend, mon\n"       \
    "    end\n"                                                               \
    "    if nb > 1 and (over ~= '' or crosses(qd, du) or crosses(qm, mu))"    \
    " then\n"                                                                 \
    "      return false\n"                                                    \
    "    end\n"                                                               \
    "    if over ~= '' and not observe then\n"                                \
    "      scope, kind, wait = 'tenant', 'quota', oend - now\n"               \
    "      qp, ql, qu, qr = over, olim, oused, math.max(0, olim - oused)\n"   \
    "      event('quota.hard_cap_blocked', over, oid, olim, oused,"           \
    " oend - now + 60000)\n"                                                  \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  return scope == ''\n"                                                  \
    "end\n"                                                                   \
    "lcommit = function()\n"                                                  \
    "  if qd > 0 or qm > 0 then\n"                                            \
    "    du = redis.call('INCRBY', dk, units * nb)\n"                         \
    "    if dnew then\n"                                                      \
    "      redis.call('PEXPIRE', dk, dend - now + 86400000)\n"                \
    "    end\n"                                                               \
    "    mu = redis.call('INCRBY', mk, units * nb)\n"                         \
    "    if mnew then\n"                                                      \
    "      redis.call('PEXPIRE', mk, mend - now + 86400000)\n"                \
    "    end\n"                                                               \
    "    if over ~= '' then\n"                                                \
    "      event('quota.overage', over, oid, olim, oused + units,"            \
    " oend - now + 60000)\n"                                                  \
    "    end\n"                                                               \
    "    local dr = qd > 0 and qd - du or nil\n"                              \
    "    local mr = qm > 0 and qm - mu or nil\n"                              \
    "    if dr and (not mr or dr <= mr) then\n"                               \
    "      qp, ql, qu, qr = 'day', qd, du, math.max(0, dr)\n"                 \
    "    else\n"                                                              \
    "      qp, ql, qu, qr = 'month', qm, mu, math.max(0, mr)\n"               \
    "    end\n"                                                               \
    "    if qd > 0 and du * 1000 >= qd * soft then\n"                         \
    "      warn = 1\n"                                                        \
    "      event('quota.soft_cap_reached', 'day', day, qd, du,"               \
    " dend - now + 60000)\n"                                                  \
    "    end\n"                                                               \
    "    if qm > 0 and mu * 1000 >= qm * soft then\n"                         \
    "      warn = 1\n"                                                        \
    "      event('quota.soft_cap_reached', 'month', mon, qm, mu,"             \
    " mend - now + 60000)\n"                                                  \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  if km > 0 or tm > 0 then\n"                                            \
    "    for i = 3, 4 do\n"                                                   \
    "      redis.call('ZADD', KEYS[lk + i], now + lttl, lease)\n"             \
    "      redis.call('PEXPIRE', KEYS[lk + i], lttl + 1000)\n"                \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  if kr > 0 then\n"                                                      \
    "    ktk, ttk = ktk - nb, ttk - nb\n"                                     \
    "    if nb > 1 then\n"                                                    \
    "      keep(KEYS[lk + 1], ktk, kex, khd, khx, kr, kb)\n"                  \
    "      keep(KEYS[lk + 2], ttk, tex, thd, thx, tr, tb)\n"                  \
    "    else\n"                                                              \
    "      store(KEYS[lk + 1], ktk, kex, kr, kb)\n"                           \
    "      store(KEYS[lk + 2], ttk, tex, tr, tb)\n"                           \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "lreply = function()\n"                                                   \
    "  return {scope == '' and 1 or 0, scope, wait,"                          \
    " math.floor(math.min(ktk, ttk)), kind, qp, ql, qu, qr, warn,"            \
    " table.concat(fired, ',')}\n"                                            \
    "end\n"                                                                   \
    "end\n"


/* the limits script's KEYS, and its KEYS and ARGV together */
#define NGX_NEXUS_LIMIT_NKEYS       4
#define NGX_NEXUS_LIMIT_NARGV       18


/* one request's KEYS and ARGV for NGX_NEXUS_LUA_LIMITS, and their room */
typedef struct {
    const char                 *argv[NGX_NEXUS_LIMIT_NARGV];
    size_t                      argvlen[NGX_NEXUS_LIMIT_NARGV];
    u_char                      keys[NGX_NEXUS_LIMIT_NKEYS][64];
    u_char                      args[11][NGX_INT64_LEN];
} ngx_nexus_limit_call_t;


typedef struct {
    unsigned                    allowed:1;
    unsigned                    tenant_scope:1;
    int64_t                     retry_ms;
    int64_t                     remaining;
} ngx_nexus_limit_result_t;


/* the limits' part of a script's answer */
typedef struct {
    unsigned                    allowed:1;
    unsigned                    tenant_scope:1;
    unsigned                    concurrency:1;
    unsigned                    quota:1;
    unsigned                    quota_warn:1;
    int64_t                     retry_ms;
    int64_t                     remaining;
    ngx_uint_t                  quota_period;   /* 0 none, 1 day, 2 month */
    int64_t                     quota_limit;
    int64_t                     quota_used;
    int64_t                     quota_remaining;
    ngx_str_t                   fired;          /* the events, or empty */
} ngx_nexus_limit_reply_t;


/*
 * The two buckets in the shared zone (no nexus_redis): rates[] is key rps,
 * key burst, tenant rps, tenant burst.  NGX_ERROR when the zone has no
 * room even after reclaiming idle buckets.
 */
ngx_int_t ngx_nexus_limit_local(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, const char *cls, ngx_uint_t *rates,
    ngx_nexus_limit_result_t *res);


/*
 * Tokens per minute in the shared zone (no nexus_redis): tpm[] is the
 * key's and the tenant's (0: none).  The first takes a worst case from
 * both buckets or neither (NGX_ERROR: no room in the zone); the second
 * gives back what was not used (a negative back charges an excess).
 */
ngx_int_t ngx_nexus_limit_local_tokens(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, int64_t *tpm, int64_t want,
    ngx_nexus_limit_result_t *res);
void ngx_nexus_limit_local_tokens_settle(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, int64_t *tpm, int64_t back);


/*
 * The request's limits in Redis, for a script that runs
 * NGX_NEXUS_LUA_LIMITS: lc gets its KEYS and ARGV (the lease, if any, is
 * made).  rates_only: the rate buckets only, no lease and no quota.
 * NGX_OK, or NGX_DECLINED when no limit concerns the request (the
 * arguments then check nothing), or NGX_ERROR.
 */
ngx_int_t ngx_nexus_limit_prepare(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx, ngx_nexus_limit_call_t *lc, ngx_uint_t rates_only);

/* a gateway call refused before its admission: its rate tokens, taken */
void ngx_nexus_limit_charge(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx);

/* once the script is sent: its lease may exist from now on */
void ngx_nexus_limit_sent(ngx_nexus_ctx_t *ctx);

/*
 * The script's answer to the limits (NULL: none came, as when Redis is
 * down); taken: whether it took what the limits allowed (it does not when
 * something checked after them refused).
 */
void ngx_nexus_limit_answer(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx,
    struct redisReply *reply, ngx_uint_t taken);

/* a request bucket's key: the key's (tenant 0) or the tenant's */
u_char *ngx_nexus_limit_bucket(u_char *buf, ngx_uint_t tenant, int64_t id,
    ngx_uint_t cls);

/*
 * The request's limits as numbers, for a block's shape: v[0-11] are the
 * key's and the tenant's ids, the route class, the key's rps and burst
 * and the tenant's (0: rate limits off), the daily and monthly quota (0:
 * none), its soft cap (permille), observe, and a request's quota units.
 * NGX_DECLINED: no limit concerns the request; NGX_BUSY: it has in-flight
 * caps, which a block cannot hold.
 */
#define NGX_NEXUS_LIMIT_IDENTITY    12

ngx_int_t ngx_nexus_limit_identity(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx, int64_t *v);

/* NGX_OK, or NGX_DECLINED when the reply is not lreply()'s */
ngx_int_t ngx_nexus_limit_parse(struct redisReply *reply,
    ngx_nexus_limit_reply_t *lr);

/* a request admitted from a block: as ngx_nexus_limit_decide() */
ngx_int_t ngx_nexus_limit_member(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx, ngx_nexus_limit_reply_t *lr);

/* the error code ngx_nexus_limit_decide() is about to answer, or NULL */
const char *ngx_nexus_limit_refusal(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);

/*
 * NGX_OK to go on (headers added), NGX_DONE when the request was refused
 * and finalized, or an HTTP status to finalize it with.
 */
ngx_int_t ngx_nexus_limit_decide(ngx_http_request_t *r,
    ngx_nexus_ctx_t *ctx);


#endif /* _NGX_NEXUS_LIMIT_H_INCLUDED_ */
