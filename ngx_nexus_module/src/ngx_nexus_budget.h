
/*
 * Copyright (C) Nexus authors
 *
 * Token budgets (per key: daily, monthly, total) and tokens per minute
 * (per key and per tenant) for the gateway's calls: the worst case is
 * reserved before a provider is called, the actual tokens settled once
 * the answer is over, both in Redis.
 */


#ifndef _NGX_NEXUS_BUDGET_H_INCLUDED_
#define _NGX_NEXUS_BUDGET_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_redis.h"


/* what a completion may cost when neither the client nor a directive
 * says: nexus_token_ceiling's default */
#define NGX_NEXUS_TOKEN_CEILING     4096


/* a token budget warns at 80%: the keys have no setting of their own */
#define NGX_NEXUS_BUDGET_WARN       "800"

/* a month's spend is kept a month after it ends, for reports */
#define NGX_NEXUS_LUA_BUDGET_MONTH_TTL  "(mend - now + 32 * 86400000)"


/*
 * Lua shared by the budget's scripts, after the clock (clock() is called
 * before level() and store()) and NGX_NEXUS_LUA_BUCKET; the script sets
 * base and cbase first.
 * Keys of a key's budget, under base ("nx:tb:<key id>"): base:d:<day
 * number> and base:m:<YYYY-MM> (hashes of "used" and "res", the tokens
 * settled and held, expiring a day after their period), base:t (the same
 * for the key's life).  KEYS[1] is the sorted set of reservations by
 * expiry, KEYS[2] the hash of reservation records
 * "tokens:day:month:counted", KEYS[3] and KEYS[4] the key's and the
 * tenant's TPM buckets (tokens "tk" at time "ts", refilled at the rate of
 * a minute, debt allowed; "ex" their expiry, see NGX_NEXUS_LUA_BUCKET).
 *
 * Costs, for a tenant with a cost budget or credits, under cbase
 * ("nx:cost:<tenant id>"; empty when costs do not concern the request):
 * cbase:m:<YYYY-MM> (a hash of "used" and "res", the micro-dollars
 * settled and held this month), KEYS[5] and KEYS[6] the tenant's own
 * sorted set and hash of cost reservations, "micro-dollars:month:credits",
 * under the same ids as the token reservations, so that a stale one is
 * swept by any request of the tenant; KEYS[7] the tenant's credits (a
 * hash of "bal" and "res", micro-dollars; see ngx_nexus_credits.c).
 *
 * add() changes only the hashes that exist (one that expired or was
 * removed is not brought back without its expiry), asking Redis once
 * when they all do.
 */
#define NGX_NEXUS_LUA_BUDGET                                                  \
    "local function add(ks, f, n, g, u)\n"                                    \
    "  if n == 0 and (not g or u == 0) then return end\n"                     \
    "  local all = redis.call('EXISTS', unpack(ks)) == #ks\n"                 \
    "  for _, k in ipairs(ks) do\n"                                           \
    "    if all or redis.call('EXISTS', k) == 1 then\n"                       \
    "      if n ~= 0 then redis.call('HINCRBY', k, f, n) end\n"               \
    "      if g and u ~= 0 then redis.call('HINCRBY', k, g, u) end\n"         \
    "    end\n"                                                               \
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
    "    add({base .. ':d:' .. d, base .. ':m:' .. mo, base .. ':t'},"        \
    " 'res', -n, 'used', used)\n"                                             \
    "  end\n"                                                                 \
    "  return n\n"                                                            \
    "end\n"                                                                   \
    "local function crelease(rid)\n"                                          \
    "  local rec = redis.call('HGET', KEYS[6], rid)\n"                        \
    "  redis.call('ZREM', KEYS[5], rid)\n"                                    \
    "  if not rec then return nil end\n"                                      \
    "  redis.call('HDEL', KEYS[6], rid)\n"                                    \
    "  local c, mo, cr = string.match(rec, '^(%d+):([%d-]+):(%d)$')\n"        \
    "  if not c then return nil end\n"                                        \
    "  c = tonumber(c)\n"                                                     \
    "  add(cr == '1' and {cbase .. ':m:' .. mo, KEYS[7]}"                     \
    " or {cbase .. ':m:' .. mo}, 'res', -c)\n"                                \
    "  return c, mo, cr == '1'\n"                                             \
    "end\n"                                                                   \
    "local function level(key, tpm)\n"                                        \
    "  local v = redis.call('HMGET', key, 'tk', 'ts', 'ex')\n"                \
    "  local tk, ts = tonumber(v[1]), tonumber(v[2])\n"                       \
    "  if tk == nil or ts == nil then return tpm, 0 end\n"                    \
    "  if now > ts then\n"                                                    \
    "    tk = math.min(tpm, tk + (now - ts) * tpm / 60000)\n"                 \
    "  end\n"                                                                 \
    "  return tk, tonumber(v[3]) or 0\n"                                      \
    "end\n"                                                                   \
    "local function store(key, tk, ex, tpm)\n"                                \
    "  bucket(key, tk, ex, math.ceil((tpm - tk) * 60000 / tpm) + 1000,"       \
    " 61000)\n"                                                               \
    "end\n"


/*
 * Lua: a reservation, as three closures like the limits'
 * (NGX_NEXUS_LUA_LIMITS): bcheck() returns true when it can be made, else
 * false and what refuses it; bcommit() makes it; breply(ok, by) is the
 * answer.  After NGX_NEXUS_LUA_BUDGET, once clock() ran.  With an empty
 * reservation id there is none to make: bcheck() allows and bcommit()
 * does nothing.
 *
 * ARGV: 1 reservation id, 2 tokens wanted, 3 ttl (ms), 4-6 the daily,
 * monthly and total budgets (0: none), 7-8 the key's and the tenant's
 * TPM (0: none), 9 base; 10 cbase (empty: no costs), 11 the worst case
 * in micro-dollars, 12-13 the tokens and micro-dollars of the degraded
 * request (0: none can be made), 14 the monthly budget in micro-dollars
 * (0: none), 15 "1" when the tenant runs on credits, 16 the cost
 * budget's warn ratio in permille, 17-18 the tenant's and the key's ids.
 *
 * The cost comes first: a budget that cannot cover the worst case in
 * flight and settled either degrades the request (the tokens checked
 * against the token budgets are then the degraded request's) or refuses
 * it; credits that cannot cover it refuse it.
 *
 * The answer, 19 integers: allowed (1/0), refused by (0, 1 token budget,
 * 2 TPM, 3 cost budget, 4 credits, 5 no credit balance in Redis), the
 * binding period (0 none, 1 day, 2 month, 3 total), its limit, used,
 * reserved (this reservation included when allowed), ms until it resets
 * (0 for total), the binding TPM bucket (0 none, 1 key, 2 tenant), its
 * limit, its tokens left, the ms to wait for enough of them when
 * refused; then the cost: 0 none, 1 as asked, 3 degraded; the month's
 * spend settled and held (this reservation included when allowed), the
 * credit balance and what is held of it (the same), ms until the month
 * ends, the micro-dollars and the tokens reserved; and last, the budget
 * events this call fired, for the audit log, as the limits do:
 * "<type> <tokens|cost> <period> <limit> <used>", joined with ",".
 *
 * budget.warn fires when the settled tokens of a period (or the month's
 * settled spend) reach the warn ratio, budget.exhausted when a token
 * budget refuses a reservation or a cost budget is at its cap (blocked or
 * degraded); each at most once per key (tokens) or tenant (cost) and
 * period across the fleet, a total budget's once.
 */
#define NGX_NEXUS_LUA_BUDGET_RESERVE                                          \
    "local bcheck, bcommit, breply\n"                                         \
    "do\n"                                                                    \
    "local id, want, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n"   \
    "local lim = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}\n" \
    "local ktpm, ttpm = tonumber(ARGV[7]), tonumber(ARGV[8])\n"               \
    "local bp, bl, bu, br, brem, bt = 0, 0, 0, 0, 0, 0\n"                     \
    "local ts, tl, tr, tw = 0, 0, 0, 0\n"                                     \
    "local cost, cst, mu, mr, cb, cr = 0, 0, 0, 0, 0, 0\n"                    \
    "local credits = ARGV[15] == '1'\n"                                       \
    "local tid, kid = ARGV[17], ARGV[18]\n"                                   \
    "local kt, tt, kx, tx = 0, 0, 0, 0\n"                                     \
    "local mk, mnew = cbase .. ':m:' .. mon, false\n"                         \
    "local pk = {base .. ':d:' .. day, base .. ':m:' .. mon, base .. ':t'}\n" \
    "local pnew = {true, true, true}\n"                                       \
    "local counted = lim[1] > 0 or lim[2] > 0 or lim[3] > 0\n"                \
    "local fired = {}\n"                                                      \
    "local function event(ty, what, p, pid, l, u, ttl)\n"                     \
    "  local once = (what == 'cost' and cbase or base) .. ':ev:' .. ty"       \
    " .. ':' .. pid\n"                                                        \
    "  local new\n"                                                           \
    "  if ttl > 0 then\n"                                                     \
    "    new = redis.call('SET', once, '1', 'NX', 'PX', ttl)\n"               \
    "  else\n"                                                                \
    "    new = redis.call('SET', once, '1', 'NX')\n"                          \
    "  end\n"                                                                 \
    "  if new then\n"                                                         \
    "    local f = {'type', ty, 'tenant_id', tid, 'budget', what,"            \
    " 'period', p, 'limit', l, 'used', u, 'ts', now}\n"                       \
    "    if what == 'tokens' then\n"                                          \
    "      f[#f + 1], f[#f + 2] = 'key_id', kid\n"                            \
    "    end\n"                                                               \
    "    redis.call('XADD', 'nx:events', 'MAXLEN', '~', 100000, '*',"         \
    " unpack(f))\n"                                                           \
    "    fired[#fired + 1] = string.format('%s %s %s %d %d', ty, what, p,"    \
    " l, u)\n"                                                                \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "bcheck = function()\n"                                                   \
    "  if id == '' then return true end\n"                                    \
    "  if nb > 1 and (cbase ~= '' or ktpm > 0 or ttpm > 0) then\n"            \
    "    return false, 0\n"                                                   \
    "  end\n"                                                                 \
    "  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf',"     \
    " now, 'LIMIT', 0, 100)) do\n"                                            \
    "    release(rid, 0)\n"                                                   \
    "  end\n"                                                                 \
    "  if cbase ~= '' then\n"                                                 \
    "    for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf',"   \
    " now, 'LIMIT', 0, 100)) do\n"                                            \
    "      crelease(rid)\n"                                                   \
    "    end\n"                                                               \
    "    local v = redis.call('HMGET', mk, 'used', 'res')\n"                  \
    "    mnew = not v[1] and not v[2]\n"                                      \
    "    mu, mr = tonumber(v[1]) or 0, tonumber(v[2]) or 0\n"                 \
    "    cost, cst = tonumber(ARGV[11]), 1\n"                                 \
    "    local budget = tonumber(ARGV[14])\n"                                 \
    "    if budget > 0 and mu * 1000 >= budget * tonumber(ARGV[16]) then\n"   \
    "      event('budget.warn', 'cost', 'month', mon, budget, mu,"            \
    " mend - now + 60000)\n"                                                  \
    "    end\n"                                                               \
    "    if budget > 0 and mu + mr + cost > budget then\n"                    \
    "      event('budget.exhausted', 'cost', 'month', mon, budget, mu,"       \
    " mend - now + 60000)\n"                                                  \
    "      if tonumber(ARGV[12]) <= 0 then return false, 3 end\n"             \
    "      want, cost, cst = tonumber(ARGV[12]), tonumber(ARGV[13]), 3\n"     \
    "    end\n"                                                               \
    "    if credits then\n"                                                   \
    "      local c = redis.call('HMGET', KEYS[7], 'bal', 'res')\n"            \
    "      if not c[1] then return false, 5 end\n"                            \
    "      cb, cr = tonumber(c[1]), tonumber(c[2]) or 0\n"                    \
    "      if cb - cr < cost then return false, 4 end\n"                      \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  local reset = {dend - now, mend - now, 0}\n"                           \
    "  local pn, pid = {'day', 'month', 'total'}, {day, mon, 't'}\n"          \
    "  for i = 1, 3 do\n"                                                     \
    "    if lim[i] > 0 then\n"                                                \
    "      local v = redis.call('HMGET', pk[i], 'used', 'res')\n"             \
    "      pnew[i] = not v[1] and not v[2]\n"                                 \
    "      local u, r = tonumber(v[1]) or 0, tonumber(v[2]) or 0\n"           \
    "      if u * 1000 >= lim[i] * " NGX_NEXUS_BUDGET_WARN " then\n"          \
    "        event('budget.warn', 'tokens', pn[i], pid[i], lim[i], u,"        \
    " reset[i] > 0 and reset[i] + 60000 or 0)\n"                              \
    "      end\n"                                                             \
    "      if bp == 0 or lim[i] - u - r < brem then\n"                        \
    "        bp, bl, bu, br, brem, bt = i, lim[i], u, r, lim[i] - u - r,"     \
    " reset[i]\n"                                                             \
    "      end\n"                                                             \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  if bp > 0 and brem < want * nf then\n"                                 \
    "    if nf > 1 then return false, 1 end\n"                                \
    "    event('budget.exhausted', 'tokens', pn[bp], pid[bp], bl, bu,"        \
    " bt > 0 and bt + 60000 or 0)\n"                                          \
    "    return false, 1\n"                                                   \
    "  end\n"                                                                 \
    "  if ktpm > 0 then kt, kx = level(KEYS[3], ktpm) end\n"                  \
    "  if ttpm > 0 then tt, tx = level(KEYS[4], ttpm) end\n"                  \
    "  if ktpm > 0 and kt < math.min(want, ktpm) then\n"                      \
    "    ts, tl, tr = 1, ktpm, math.floor(kt)\n"                              \
    "    tw = math.ceil((math.min(want, ktpm) - kt) * 60000 / ktpm)\n"        \
    "    return false, 2\n"                                                   \
    "  end\n"                                                                 \
    "  if ttpm > 0 and tt < math.min(want, ttpm) then\n"                      \
    "    ts, tl, tr = 2, ttpm, math.floor(tt)\n"                              \
    "    tw = math.ceil((math.min(want, ttpm) - tt) * 60000 / ttpm)\n"        \
    "    return false, 2\n"                                                   \
    "  end\n"                                                                 \
    "  return true\n"                                                         \
    "end\n"                                                                   \
    "bcommit = function()\n"                                                  \
    "  if id == '' then return end\n"                                         \
    "  if counted then\n"                                                     \
    "    for i = 1, 3 do\n"                                                   \
    "      redis.call('HINCRBY', pk[i], 'res', want * nb)\n"                  \
    "    end\n"                                                               \
    "    if pnew[1] then\n"                                                   \
    "      redis.call('PEXPIRE', pk[1], dend - now + 86400000)\n"             \
    "    end\n"                                                               \
    "    if pnew[2] then\n"                                                   \
    "      redis.call('PEXPIRE', pk[2], mend - now + 86400000)\n"             \
    "    end\n"                                                               \
    "  end\n"                                                                 \
    "  redis.call('ZADD', KEYS[1], now + ttl, id)\n"                          \
    "  redis.call('HSET', KEYS[2], id, string.format('%d:%d:%s:%d',"          \
    " want * nb,"                                                             \
    " day, mon, counted and 1 or 0))\n"                                       \
    "  if cbase ~= '' then\n"                                                 \
    "    redis.call('HINCRBY', mk, 'res', cost)\n"                            \
    "    if mnew then\n"                                                      \
    "      redis.call('PEXPIRE', mk, " NGX_NEXUS_LUA_BUDGET_MONTH_TTL ")\n"   \
    "    end\n"                                                               \
    "    mr = mr + cost\n"                                                    \
    "    if credits then\n"                                                   \
    "      redis.call('HINCRBY', KEYS[7], 'res', cost)\n"                     \
    "      cr = cr + cost\n"                                                  \
    "    end\n"                                                               \
    "    redis.call('ZADD', KEYS[5], now + ttl, id)\n"                        \
    "    redis.call('HSET', KEYS[6], id, string.format('%d:%s:%d', cost,"     \
    " mon, credits and 1 or 0))\n"                                            \
    "  end\n"                                                                 \
    "  if ktpm > 0 then\n"                                                    \
    "    kt = kt - want\n"                                                    \
    "    store(KEYS[3], kt, kx, ktpm)\n"                                      \
    "    ts, tl, tr = 1, ktpm, kt\n"                                          \
    "  end\n"                                                                 \
    "  if ttpm > 0 then\n"                                                    \
    "    tt = tt - want\n"                                                    \
    "    store(KEYS[4], tt, tx, ttpm)\n"                                      \
    "    if ts == 0 or tt < tr then ts, tl, tr = 2, ttpm, tt end\n"           \
    "  end\n"                                                                 \
    "  tr = math.floor(math.max(tr, 0))\n"                                    \
    "  if bp > 0 then br = br + want * nb end\n"                              \
    "end\n"                                                                   \
    "breply = function(ok, by)\n"                                             \
    "  return {ok, by, bp, bl, bu, br, bt, ts, tl, tr, tw, cst, mu, mr, cb,"  \
    " cr, mend - now, cost, want, table.concat(fired, ',')}\n"                \
    "end\n"                                                                   \
    "end\n"


typedef struct ngx_nexus_budget_s  ngx_nexus_budget_t;
typedef struct ngx_nexus_block_s   ngx_nexus_block_t;


/* a request's share of a block's reservation (ngx_nexus_block.c) */
typedef struct {
    ngx_uint_t                  period;     /* 0 none, 1 day, 2 month,
                                               3 total */
    int64_t                     limit;
    int64_t                     used;
    int64_t                     reserved;
    int64_t                     reset_ms;
    int64_t                     want;       /* a request's worst case */
} ngx_nexus_budget_share_t;


/* room for a block's reservation id */
#define NGX_NEXUS_BUDGET_BLOCK_ID   64


/* the reservation's KEYS, and its KEYS and ARGV together */
#define NGX_NEXUS_BUDGET_NKEYS      7
#define NGX_NEXUS_BUDGET_NARGV      25


/* one request's KEYS and ARGV for NGX_NEXUS_LUA_BUDGET_RESERVE */
typedef struct {
    const char                 *argv[NGX_NEXUS_BUDGET_NARGV];
    size_t                      argvlen[NGX_NEXUS_BUDGET_NARGV];
    u_char                      args[14][NGX_INT64_LEN];
} ngx_nexus_budget_call_t;


ngx_int_t ngx_nexus_budget_init(ngx_conf_t *cf);
char *ngx_nexus_budget_init_main_conf(ngx_conf_t *cf,
    ngx_nexus_main_conf_t *nmcf);
char *ngx_nexus_budget_ceiling_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_nexus_budget_tpm_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * After the body is parsed and the candidates are known: what the call may
 * cost, in px->budget (NULL when nothing is counted).  NGX_OK, or NGX_DONE
 * when the request was answered (and finalized) here.
 */
ngx_int_t ngx_nexus_budget_prepare(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);

/*
 * The reservation's KEYS and ARGV for a script in Redis: NGX_OK, or
 * NGX_DECLINED when none can be made there (bc then asks for none, and
 * ngx_nexus_budget_alone() decides).
 */
ngx_int_t ngx_nexus_budget_call(ngx_nexus_proxy_t *px,
    ngx_nexus_budget_call_t *bc);

/* the script with the reservation is sent: it may exist from now on */
void ngx_nexus_budget_sent(ngx_nexus_proxy_t *px,
    ngx_nexus_redis_cmd_t *cmd);

/* whether the reservation waits on Redis's answer */
ngx_uint_t ngx_nexus_budget_waiting(ngx_nexus_proxy_t *px);

/*
 * The admission script's answer ({limits, reservation}; NULL: none came):
 * NGX_OK reserved, NGX_HTTP_TOO_MANY_REQUESTS or NGX_BUSY refused (nothing
 * taken), NGX_DONE not tried (the limits refused), else NGX_DECLINED.
 */
ngx_int_t ngx_nexus_budget_answer(ngx_nexus_proxy_t *px,
    struct redisReply *reply);

/* NGX_OK to call the provider, or NGX_DONE when answered here */
ngx_int_t ngx_nexus_budget_decide(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, ngx_int_t status);

/* the same without Redis's answer: costs unknown yet, or no nexus_redis */
ngx_int_t ngx_nexus_budget_alone(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);

/* X-Budget-* and X-RateLimit-*-Tokens on a proxied answer */
ngx_int_t ngx_nexus_budget_headers(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);

/* once, when the request ends: the tokens it actually used */
void ngx_nexus_budget_settle(ngx_nexus_proxy_t *px, int64_t prompt,
    int64_t completion);


/*
 * Blocks (ngx_nexus_block.c).  Whether the request's reservation can be a
 * share of a block's: NGX_OK, with its daily, monthly and total budgets
 * in v[0-2]; NGX_DECLINED, it has none; NGX_BUSY, it counts costs or
 * TPM, which a block does not hold.  And its worst case.
 */
ngx_int_t ngx_nexus_budget_identity(ngx_nexus_proxy_t *px, int64_t *v);
int64_t ngx_nexus_budget_want(ngx_nexus_proxy_t *px);

/* a block's own reservation, a copy of the request's under a new id */
ngx_nexus_budget_t *ngx_nexus_budget_detach(ngx_nexus_proxy_t *px,
    ngx_str_t *id);
ngx_int_t ngx_nexus_budget_block_answer(ngx_nexus_budget_t *o,
    struct redisReply *reply, ngx_nexus_budget_share_t *share,
    ngx_str_t *fired);
void ngx_nexus_budget_hold(ngx_nexus_budget_t *o);
void ngx_nexus_budget_end(ngx_nexus_budget_t *o, int64_t tokens,
    ngx_uint_t settle);

/* a request the block admits; fired: the take's events, audited here */
void ngx_nexus_budget_member(ngx_nexus_proxy_t *px, ngx_nexus_block_t *block,
    ngx_nexus_budget_share_t *share, ngx_str_t *fired);


#endif /* _NGX_NEXUS_BUDGET_H_INCLUDED_ */
