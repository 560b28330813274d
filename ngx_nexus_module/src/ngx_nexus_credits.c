
/*
 * Copyright (C) Nexus authors
 *
 * Prepaid credits.
 *
 * A tenant's balance lives in Redis, nx:cr:<tenant id>, a hash of "bal"
 * (micro-dollars) and "res" (what calls in flight hold of it): Redis is
 * what every node admits requests against, in the budget reservation's
 * Lua script, and what the settlement deducts from.  Every change of a
 * balance - a deduction there, a grant here - appends an entry to the
 * stream nx:cr:ledger in the same script, with the balance before and
 * after.  So the ledger cannot miss a change, nor hold one that did not
 * happen, and the per-request deductions cost no round trip of their own.
 *
 * One worker per node moves the stream into credit_transactions every
 * nexus_credit_flush: it reads the oldest entries, inserts them (the
 * entry id is the row's unique key, so an insert repeated by another
 * node, or after a failure, changes nothing), then trims them from the
 * stream.  Nothing is held in a worker's memory: a reload, a crash or a
 * node gone loses no entry.  Per tenant, the rows ordered by entry id
 * chain (each balance_before is the previous balance_after) and the last
 * balance_after is Redis's balance once the stream is drained.
 *
 * A grant (POST /v1/admin/credits/{tenant}/grant, platform admins only)
 * checks nexus_credit_grant_max, then, in Redis and atomically with the
 * grant, nexus_credit_grant_daily over the admin key's grants of the last
 * 24 hours.  It marks the tenant as running on credits in PostgreSQL
 * first (tenant_costs.credits, which every worker reloads), and brings
 * the balance the ledger ends with: Redis takes it only if it has no
 * balance for the tenant, which happens after Redis lost its data.
 * Requests that find no balance in Redis have nexus_fail_mode decide and
 * have the worker reseed the balances of every tenant on credits from
 * the ledger the same way.
 *
 * A grant with an Idempotency-Key is remembered with the key's record, in
 * the script that makes it, for nexus_idempotency_ttl.  The key's record
 * already answers a retry with the first answer, but not when the first
 * answer was a 5xx (Redis's reply came too late, say): the key is then
 * released, and the retry runs again.  It finds the grant remembered and
 * is answered with it, Idempotent-Replayed, instead of granting twice.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"
#include "ngx_nexus_audit.h"
#include "ngx_nexus_credits.h"
#include "ngx_nexus_idempotency.h"

#include <nx_buf.h>
#include <nx_json.h>
#include <nx_money.h>
#include <nx_name.h>


#define NGX_NEXUS_CREDITS_LEDGER    "nx:cr:ledger"

/* entries moved into PostgreSQL at a time */
#define NGX_NEXUS_CREDITS_BATCH     500
#define NGX_NEXUS_CREDITS_BATCH_S   "500"

/* the shortest reason a grant may give, as in the reference */
#define NGX_NEXUS_CREDITS_REASON_MIN    10
#define NGX_NEXUS_CREDITS_REASON_MAX    500

#define NGX_NEXUS_CREDITS_LIST_MAX      1000
#define NGX_NEXUS_CREDITS_LIST_DEFAULT  50

/* a ledger entry's fields, in the order of the JSON the INSERT reads */
#define NGX_NEXUS_CREDITS_FIELDS    9

#define NGX_NEXUS_CREDITS_GET       0
#define NGX_NEXUS_CREDITS_GRANT     1


typedef struct {
    ngx_uint_t                  op;
    ngx_str_t                   tenant;
    int64_t                     tenant_id;
    int64_t                     amount;     /* micro-dollars */
    ngx_str_t                   reason;
    ngx_str_t                   json;       /* PostgreSQL's part */
    unsigned                    enabled:1;  /* the tenant is on credits */
} ngx_nexus_credits_ctx_t;


static ngx_int_t ngx_nexus_credits_get(ngx_http_request_t *r,
    ngx_str_t *tenant);
static void ngx_nexus_credits_got(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_credits_reply(ngx_http_request_t *r,
    redisReply *reply, ngx_int_t rc);
static void ngx_nexus_credits_grant_body(ngx_http_request_t *r,
    yajl_val v);
static void ngx_nexus_credits_enabled(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
static void ngx_nexus_credits_granted(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_credits_grant_limit(ngx_http_request_t *r,
    const char *scope, int64_t limit, int64_t amount, int64_t granted);
static void ngx_nexus_credits_timer(ngx_event_t *ev);
static void ngx_nexus_credits_read(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_credits_entry(nx_buf_t *json, redisReply *e,
    ngx_uint_t first);
static void ngx_nexus_credits_written(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
static void ngx_nexus_credits_trimmed(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static void ngx_nexus_credits_arm(ngx_msec_t delay);
static void ngx_nexus_credits_seeds(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);


static ngx_uint_t  ngx_nexus_credits_get_stmt;
static ngx_uint_t  ngx_nexus_credits_enable_stmt;
static ngx_uint_t  ngx_nexus_credits_insert_stmt;
static ngx_uint_t  ngx_nexus_credits_seeds_stmt;

static ngx_nexus_redis_script_t  ngx_nexus_credits_grant_script;

static ngx_event_t   ngx_nexus_credits_ev;
static ngx_msec_t    ngx_nexus_credits_interval;
static u_char        ngx_nexus_credits_last[64];    /* id written last */
static size_t        ngx_nexus_credits_last_len;
static ngx_uint_t    ngx_nexus_credits_full;        /* a whole batch */
static time_t        ngx_nexus_credits_reseeded;
static time_t        ngx_nexus_credits_complained;

/* timers log their connection's fd at debug level: give them one */
static ngx_connection_t  ngx_nexus_credits_conn = { .fd = (ngx_socket_t) -1 };


static const char  ngx_nexus_credits_get_sql[] =
    "SELECT t.id, coalesce(c.credits, false),"
    " coalesce((SELECT json_agg(json_build_object("
    "'id', x.entry_ms || '-' || x.entry_seq, 'type', x.transaction_type,"
    " 'amount_usd', round(x.amount_musd / 1000000.0, 6),"
    " 'amount_musd', x.amount_musd,"
    " 'balance_before_musd', x.balance_before_musd,"
    " 'balance_after_musd', x.balance_after_musd,"
    " 'request_id', x.request_id, 'model', x.model,"
    " 'created_by', x.created_by, 'description', x.description,"
    " 'created_at', x.created_at)"
    " ORDER BY x.entry_ms DESC, x.entry_seq DESC)"
    " FROM (SELECT * FROM credit_transactions WHERE tenant_id = t.id"
    " ORDER BY entry_ms DESC, entry_seq DESC LIMIT $3::int) x), '[]')::text,"
    " json_build_object('tenant', t.name)::text"
    " FROM tenants t LEFT JOIN tenant_costs c ON c.tenant_id = t.id"
    " WHERE t.name = $1 AND ($2::bigint = 0 OR t.id = $2::bigint)";

/* the tenant on credits from now on; the balance its ledger ends with */

static const char  ngx_nexus_credits_enable_sql[] =
    "WITH t AS (SELECT id FROM tenants WHERE name = $1),"
    " up AS (INSERT INTO tenant_costs AS c (tenant_id, credits)"
    " SELECT id, true FROM t ON CONFLICT (tenant_id) DO UPDATE"
    " SET credits = true, updated_at = now() WHERE NOT c.credits"
    " RETURNING 1)"
    " SELECT t.id, coalesce((SELECT x.balance_after_musd"
    " FROM credit_transactions x WHERE x.tenant_id = t.id"
    " ORDER BY x.entry_ms DESC, x.entry_seq DESC LIMIT 1), 0),"
    " (SELECT count(*) FROM up) FROM t";

static const char  ngx_nexus_credits_insert_sql[] =
    "INSERT INTO credit_transactions (entry_ms, entry_seq, tenant_id,"
    " transaction_type, amount_musd, balance_before_musd,"
    " balance_after_musd, request_id, model, created_by, description,"
    " created_at)"
    " SELECT split_part(x.id, '-', 1)::bigint,"
    " split_part(x.id, '-', 2)::bigint, x.t, x.k, x.a, x.b, x.f,"
    " nullif(x.r, ''), nullif(x.m, ''), nullif(x.by, ''),"
    " nullif(x.why, ''),"
    " timestamptz 'epoch' + split_part(x.id, '-', 1)::bigint"
    " * interval '1 millisecond'"
    " FROM json_to_recordset($1::json) AS x (id text, t bigint, k text,"
    " a bigint, b bigint, f bigint, r text, m text, by text, why text)"
    " WHERE EXISTS (SELECT 1 FROM tenants WHERE id = x.t)"
    " ON CONFLICT (entry_ms, entry_seq) DO NOTHING";

static const char  ngx_nexus_credits_seeds_sql[] =
    "SELECT c.tenant_id, coalesce((SELECT x.balance_after_musd"
    " FROM credit_transactions x WHERE x.tenant_id = c.tenant_id"
    " ORDER BY x.entry_ms DESC, x.entry_seq DESC LIMIT 1), 0)"
    " FROM tenant_costs c WHERE c.credits LIMIT 100000";


/*
 * KEYS: the tenant's balance, the ledger, the admin key's grants of the
 * last day (a sorted set of "<entry id>:<micro-dollars>" by time), and,
 * for a request with an Idempotency-Key, the grant it made (a hash: f the
 * request's hash, d b a id as returned).  ARGV: 1 micro-dollars, 2 the
 * daily cap, 3 tenant id, 4 the balance the ledger ends with (taken only
 * when Redis has none), 5 request id, 6 granted by, 7 the reason, 8 the
 * request's hash, 9 how long the grant is remembered (ms).  Returns {1,
 * granted today, before, after, entry id}; {2, ...} the same, of the
 * grant this key already made; {3} when the key made one for another
 * request; {0, granted today} over the cap.
 */

static const char  ngx_nexus_credits_grant_lua[] =
    "if KEYS[4] then\n"
    "  local m = redis.call('HMGET', KEYS[4], 'f', 'd', 'b', 'a', 'id')\n"
    "  if m[1] then\n"
    "    if m[1] ~= ARGV[8] then return {3} end\n"
    "    return {2, tonumber(m[2]), tonumber(m[3]), tonumber(m[4]), m[5]}\n"
    "  end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local amount, cap = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 86400000)\n"
    "local sum = 0\n"
    "for _, g in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do\n"
    "  sum = sum + (tonumber(string.match(g, ':(%d+)$')) or 0)\n"
    "end\n"
    "if sum + amount > cap then return {0, sum} end\n"
    "redis.call('HSETNX', KEYS[1], 'bal', ARGV[4])\n"
    "local b = redis.call('HGET', KEYS[1], 'bal')\n"
    "local a = redis.call('HINCRBY', KEYS[1], 'bal', amount)\n"
    "local id = redis.call('XADD', KEYS[2], '*', 't', ARGV[3],"
    " 'k', 'admin_credit', 'a', ARGV[1], 'b', b, 'f', string.format('%d', a),"
    " 'r', ARGV[5], 'by', ARGV[6], 'why', ARGV[7])\n"
    "redis.call('ZADD', KEYS[3], now, id .. ':' .. ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[3], 86400000)\n"
    "if KEYS[4] then\n"
    "  redis.call('HSET', KEYS[4], 'f', ARGV[8],"
    " 'd', string.format('%d', sum + amount), 'b', b,"
    " 'a', string.format('%d', a), 'id', id)\n"
    "  redis.call('PEXPIRE', KEYS[4], ARGV[9])\n"
    "end\n"
    "return {1, sum + amount, tonumber(b), a, id}\n";


ngx_int_t
ngx_nexus_credits_init(ngx_conf_t *cf)
{
    if (ngx_nexus_pg_statement(cf, "nexus_credits_get",
                               ngx_nexus_credits_get_sql, 3,
                               &ngx_nexus_credits_get_stmt)
        != NGX_OK
        || ngx_nexus_pg_statement(cf, "nexus_credits_enable",
                                  ngx_nexus_credits_enable_sql, 1,
                                  &ngx_nexus_credits_enable_stmt)
           != NGX_OK
        || ngx_nexus_pg_statement(cf, "nexus_credits_insert",
                                  ngx_nexus_credits_insert_sql, 1,
                                  &ngx_nexus_credits_insert_stmt)
           != NGX_OK
        || ngx_nexus_pg_statement(cf, "nexus_credits_seeds",
                                  ngx_nexus_credits_seeds_sql, 0,
                                  &ngx_nexus_credits_seeds_stmt)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_redis_script(cf, &ngx_nexus_credits_grant_script,
                                  ngx_nexus_credits_grant_lua);
}


/* the ledger writer: one worker per node, while both stores exist */

ngx_int_t
ngx_nexus_credits_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    ngx_nexus_credits_last_len = 0;
    ngx_nexus_credits_full = 0;

    if (nmcf->pg == NULL || nmcf->redis == NULL || !nmcf->used
        || ngx_worker != 0)
    {
        return NGX_OK;
    }

    ngx_nexus_credits_interval = nmcf->credit_flush;

    ngx_memzero(&ngx_nexus_credits_ev, sizeof(ngx_event_t));
    ngx_nexus_credits_ev.handler = ngx_nexus_credits_timer;
    ngx_nexus_credits_ev.log = cycle->log;
    ngx_nexus_credits_ev.data = &ngx_nexus_credits_conn;

    /* the stream is in Redis: an exiting worker need not wait for it */
    ngx_nexus_credits_ev.cancelable = 1;

    ngx_nexus_credits_arm(ngx_nexus_credits_interval);

    return NGX_OK;
}


static void
ngx_nexus_credits_arm(ngx_msec_t delay)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (!ngx_nexus_credits_ev.timer_set) {
        ngx_add_timer(&ngx_nexus_credits_ev, ngx_max(delay, 1));
    }
}


static void
ngx_nexus_credits_timer(ngx_event_t *ev)
{
    const char             *argv[6];
    size_t                  argvlen[6];
    ngx_nexus_redis_cmd_t  *cmd;

    argv[0] = "XRANGE";
    argv[1] = NGX_NEXUS_CREDITS_LEDGER;
    argv[2] = "-";
    argv[3] = "+";
    argv[4] = "COUNT";
    argv[5] = NGX_NEXUS_CREDITS_BATCH_S;

    argvlen[0] = 6;
    argvlen[1] = sizeof(NGX_NEXUS_CREDITS_LEDGER) - 1;
    argvlen[2] = 1;
    argvlen[3] = 1;
    argvlen[4] = 5;
    argvlen[5] = sizeof(NGX_NEXUS_CREDITS_BATCH_S) - 1;

    cmd = ngx_nexus_redis_command(6, argv, argvlen);
    if (cmd == NULL) {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
        return;
    }

    cmd->handler = ngx_nexus_credits_read;
    cmd->data = NULL;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
    }
}


static void
ngx_nexus_credits_read(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    size_t                 i;
    nx_buf_t               json = NX_BUF_INIT;
    ngx_uint_t             n;
    redisReply            *e, *id;
    ngx_nexus_pg_query_t  *q;

    if (rc != NGX_OK || reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0)
    {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
        return;
    }

    if (nx_buf_append(&json, "[", 1) != 0) {
        goto failed;
    }

    n = 0;
    id = NULL;

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[0]->type != REDIS_REPLY_STRING
            || e->element[0]->len >= sizeof(ngx_nexus_credits_last))
        {
            continue;
        }

        id = e->element[0];

        switch (ngx_nexus_credits_entry(&json, e, n == 0)) {

        case NGX_OK:
            n++;
            break;

        case NGX_DECLINED:
            /* only our scripts write there: never seen, but never stuck */
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "nexus credits: malformed ledger entry %*s "
                          "skipped", id->len, id->str);
            break;

        default:
            goto failed;
        }
    }

    if (id == NULL || nx_buf_append(&json, "]", 1) != 0) {
        goto failed;
    }

    /* trimmed up to here once PostgreSQL has them */
    ngx_memcpy(ngx_nexus_credits_last, id->str, id->len);
    ngx_nexus_credits_last_len = id->len;
    ngx_nexus_credits_full = (reply->elements >= NGX_NEXUS_CREDITS_BATCH);

    q = ngx_nexus_pg_query(ngx_nexus_credits_insert_stmt, json.len + 1);
    if (q == NULL) {
        goto failed;
    }

    (void) ngx_nexus_pg_param(q, (u_char *) json.data, json.len);
    nx_buf_free(&json);

    q->handler = ngx_nexus_credits_written;
    q->data = NULL;

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
    }

    return;

failed:

    nx_buf_free(&json);
    ngx_nexus_credits_arm(ngx_nexus_credits_interval);
}


/*
 * One entry [id, [field, value, ...]] as a JSON object of strings, after
 * checking it is what the scripts write: known fields, integers where
 * integers go, after = before + amount.  NGX_DECLINED when it is not.
 */

static ngx_int_t
ngx_nexus_credits_entry(nx_buf_t *json, redisReply *e, ngx_uint_t first)
{
    size_t         i, k, len;
    int64_t        v[3];
    ngx_str_t      val[NGX_NEXUS_CREDITS_FIELDS];
    redisReply    *f, *name, *value;
    u_char        *p;

    static const char  *names[NGX_NEXUS_CREDITS_FIELDS] = {
        "t", "k", "a", "b", "f", "r", "m", "by", "why"
    };

    f = e->element[1];

    if (f->type != REDIS_REPLY_ARRAY || f->elements % 2) {
        return NGX_DECLINED;
    }

    ngx_memzero(val, sizeof(val));

    for (i = 0; i < f->elements; i += 2) {
        name = f->element[i];
        value = f->element[i + 1];

        if (name->type != REDIS_REPLY_STRING
            || value->type != REDIS_REPLY_STRING)
        {
            return NGX_DECLINED;
        }

        for (k = 0; k < NGX_NEXUS_CREDITS_FIELDS; k++) {
            if (ngx_strlen(names[k]) == name->len
                && ngx_strncmp(names[k], name->str, name->len) == 0)
            {
                val[k].data = (u_char *) value->str;
                val[k].len = value->len;
                break;
            }
        }
    }

    /* t, a, b, f: integers (a and b may be negative) */
    for (k = 0; k < 5; k++) {
        if (k == 1) {
            continue;
        }

        p = val[k].data;
        len = val[k].len;

        if (len > 0 && *p == '-' && k != 0) {
            p++;
            len--;
        }

        if (len == 0 || len > 18) {
            return NGX_DECLINED;
        }

        for (i = 0; i < len; i++) {
            if (p[i] < '0' || p[i] > '9') {
                return NGX_DECLINED;
            }
        }

        if (k >= 2) {
            v[k - 2] = ngx_atoof(p, len);

            if (val[k].data[0] == '-') {
                v[k - 2] = -v[k - 2];
            }
        }
    }

    if (v[1] + v[0] != v[2]
        || !((val[1].len == 9
              && ngx_strncmp(val[1].data, "api_usage", 9) == 0)
             || (val[1].len == 12
                 && ngx_strncmp(val[1].data, "admin_credit", 12) == 0)))
    {
        return NGX_DECLINED;
    }

    if (nx_buf_append_str(json, first ? "{\"id\":\"" : ",{\"id\":\"") != 0
        || nx_buf_append(json, e->element[0]->str, e->element[0]->len) != 0)
    {
        return NGX_ERROR;
    }

    for (k = 0; k < NGX_NEXUS_CREDITS_FIELDS; k++) {
        if (nx_buf_append_str(json, "\",\"") != 0
            || nx_buf_append_str(json, names[k]) != 0
            || nx_buf_append_str(json, "\":\"") != 0
            || nx_buf_append_json(json, (char *) val[k].data, val[k].len)
               != 0)
        {
            return NGX_ERROR;
        }
    }

    if (nx_buf_append(json, "\"}", 2) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_nexus_credits_written(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    u_char                 *p, minid[80];
    int64_t                 seq;
    const char             *argv[5];
    size_t                  argvlen[5];
    ngx_nexus_redis_cmd_t  *cmd;

    if (rc != NGX_OK) {
        /* kept in the stream: the next tick tries again */
        if (ngx_time() - ngx_nexus_credits_complained >= 10) {
            ngx_nexus_credits_complained = ngx_time();
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "nexus credits: ledger not written to PostgreSQL"
                          "%s%s; kept in Redis", res ? ": " : "",
                          res ? PQresultErrorMessage(res) : "");
        }

        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
        return;
    }

    /* XTRIM MINID keeps ids from "ms-(seq+1)": all read are dropped */
    p = ngx_strlchr(ngx_nexus_credits_last,
                    ngx_nexus_credits_last + ngx_nexus_credits_last_len, '-');
    if (p == NULL) {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
        return;
    }

    seq = ngx_atoof(p + 1, ngx_nexus_credits_last + ngx_nexus_credits_last_len
                           - p - 1);
    if (seq < 0) {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
        return;
    }

    p = ngx_sprintf(minid, "%*s-%L", p - ngx_nexus_credits_last,
                    ngx_nexus_credits_last, seq + 1);

    argv[0] = "XTRIM";
    argv[1] = NGX_NEXUS_CREDITS_LEDGER;
    argv[2] = "MINID";
    argv[3] = "=";
    argv[4] = (const char *) minid;

    argvlen[0] = 5;
    argvlen[1] = sizeof(NGX_NEXUS_CREDITS_LEDGER) - 1;
    argvlen[2] = 5;
    argvlen[3] = 1;
    argvlen[4] = p - minid;

    cmd = ngx_nexus_redis_command(5, argv, argvlen);
    if (cmd == NULL) {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
        return;
    }

    cmd->handler = ngx_nexus_credits_trimmed;
    cmd->data = NULL;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        ngx_nexus_credits_arm(ngx_nexus_credits_interval);
    }
}


static void
ngx_nexus_credits_trimmed(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    /* a whole batch: more may wait */
    ngx_nexus_credits_arm((rc == NGX_OK && ngx_nexus_credits_full)
                          ? 1 : ngx_nexus_credits_interval);
}


void
ngx_nexus_credits_reseed(void)
{
    ngx_nexus_pg_query_t  *q;

    if (ngx_time() == ngx_nexus_credits_reseeded) {
        return;
    }

    ngx_nexus_credits_reseeded = ngx_time();

    q = ngx_nexus_pg_query(ngx_nexus_credits_seeds_stmt, 0);
    if (q == NULL) {
        return;
    }

    q->handler = ngx_nexus_credits_seeds;
    q->data = NULL;

    if (ngx_nexus_pg_send(q) == NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus credits: a balance is missing in Redis, "
                      "reseeding from the ledger");
    }
}


static void
ngx_nexus_credits_seeds(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    int                     i, n;
    u_char                  key[NGX_INT64_LEN + 8];
    const char             *argv[4];
    size_t                  argvlen[4];
    ngx_nexus_redis_cmd_t  *cmd;

    if (rc != NGX_OK || PQnfields(res) != 2) {
        return;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        argv[0] = "HSETNX";
        argvlen[0] = 6;

        argvlen[1] = ngx_sprintf(key, "nx:cr:%*s", PQgetlength(res, i, 0),
                                 PQgetvalue(res, i, 0))
                     - key;
        argv[1] = (const char *) key;

        argv[2] = "bal";
        argvlen[2] = 3;

        argv[3] = PQgetvalue(res, i, 1);
        argvlen[3] = PQgetlength(res, i, 1);

        /* the command is formatted at once: key can be reused */
        cmd = ngx_nexus_redis_command(4, argv, argvlen);
        if (cmd == NULL) {
            return;
        }

        if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
            return;
        }
    }
}


/* admin: rest is "{tenant}" or "{tenant}/grant" */

ngx_int_t
ngx_nexus_credits_admin(ngx_http_request_t *r, ngx_str_t *rest)
{
    ngx_str_t                 tenant;
    ngx_uint_t                grant;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_credits_ctx_t  *cctx;

    tenant = *rest;
    grant = 0;

    if (tenant.len > 6
        && ngx_strncmp(tenant.data + tenant.len - 6, "/grant", 6) == 0)
    {
        tenant.len -= 6;
        grant = 1;
    }

    if (nx_tenant_name_valid((char *) tenant.data, tenant.len) != 0) {
        return ngx_nexus_not_found(r);
    }

    if (!grant) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        return ngx_nexus_credits_get(r, &tenant);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_nexus_method_not_allowed(r, "POST");
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    /* a tenant must not grant itself credits */
    if (!ctx->principal.platform) {
        ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                  "{\"required\":\"platform_admin\"}");
        return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                    "only a platform admin can grant "
                                    "credits",
                                    "{\"required\":\"platform_admin\"}");
    }

    if (!ngx_nexus_redis_configured()) {
        return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "DEPENDENCY_UNAVAILABLE",
                                    "credits need nexus_redis", NULL);
    }

    cctx = ngx_nexus_handler_ctx(r, sizeof(ngx_nexus_credits_ctx_t));
    if (cctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cctx->op = NGX_NEXUS_CREDITS_GRANT;
    cctx->tenant = tenant;

    return ngx_nexus_read_json(r, ngx_nexus_credits_grant_body);
}


/* GET: the ledger's last rows from PostgreSQL, the balance from Redis */

static ngx_int_t
ngx_nexus_credits_get(ngx_http_request_t *r, ngx_str_t *tenant)
{
    u_char                    buf[NGX_INT64_LEN];
    ngx_int_t                 n;
    ngx_str_t                 limit;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_pg_query_t     *q;
    ngx_nexus_credits_ctx_t  *cctx;

    n = NGX_NEXUS_CREDITS_LIST_DEFAULT;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &limit) == NGX_OK) {
        n = ngx_atoi(limit.data, limit.len);

        if (n < 1 || n > NGX_NEXUS_CREDITS_LIST_MAX) {
            return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "VALIDATION_ERROR",
                                        "limit must be an integer of "
                                        "1..1000", "{\"param\":\"limit\"}");
        }
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    cctx = ngx_nexus_handler_ctx(r, sizeof(ngx_nexus_credits_ctx_t));
    if (cctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cctx->op = NGX_NEXUS_CREDITS_GET;
    cctx->tenant = *tenant;

    q = ngx_nexus_pg_query(ngx_nexus_credits_get_stmt,
                           tenant->len + 2 * NGX_INT64_LEN + 3);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, tenant->data, tenant->len);

    /* a tenant admin asking for another tenant finds no such tenant */
    (void) ngx_nexus_pg_param_int(q, ctx->principal.platform
                                     ? 0 : ctx->principal.tenant_id);
    (void) ngx_nexus_pg_param(q, buf, ngx_sprintf(buf, "%i", n) - buf);

    q->handler = ngx_nexus_credits_got;
    q->data = r;

    /* the request stays alive until the answer */
    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_credits_got(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    u_char                   *p;
    size_t                    len, tlen;
    const char               *argv[4];
    size_t                    argvlen[4];
    ngx_http_request_t       *r;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_redis_cmd_t    *cmd;
    ngx_nexus_credits_ctx_t  *cctx;
    u_char                    key[NGX_INT64_LEN + 8];

    r = q->data;
    ctx = ngx_nexus_pg_answered(r);
    cctx = ctx->handler_ctx;

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_nexus_pg_failed(r, res, rc, "credits"));
        return;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "TENANT_NOT_FOUND",
                                 "no such tenant", NULL));
        return;
    }

    cctx->tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                                PQgetlength(res, 0, 0));
    cctx->enabled = (PQgetvalue(res, 0, 1)[0] == 't');

    /* {"tenant":"..."} less its brace, then the transactions */
    tlen = PQgetlength(res, 0, 3);
    len = PQgetlength(res, 0, 2);

    p = ngx_pnalloc(r->pool, tlen + len + sizeof(",\"transactions\":"));
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cctx->json.data = p;
    p = ngx_cpymem(p, PQgetvalue(res, 0, 3), tlen - 1);
    p = ngx_cpymem(p, ",\"transactions\":", sizeof(",\"transactions\":") - 1);
    p = ngx_cpymem(p, PQgetvalue(res, 0, 2), len);
    cctx->json.len = p - cctx->json.data;

    if (ngx_nexus_redis_configured()) {
        argv[0] = "HMGET";
        argvlen[0] = 5;
        argv[1] = (const char *) key;
        argvlen[1] = ngx_sprintf(key, "nx:cr:%L", cctx->tenant_id) - key;
        argv[2] = "bal";
        argvlen[2] = 3;
        argv[3] = "res";
        argvlen[3] = 3;

        cmd = ngx_nexus_redis_command(4, argv, argvlen);

        ngx_nexus_redis_ask(r, cmd, ngx_nexus_credits_reply);
        return;
    }

    ngx_nexus_credits_reply(r, NULL, NGX_DECLINED);
}



/* reply NULL: Redis could not be asked */

static void
ngx_nexus_credits_reply(ngx_http_request_t *r, redisReply *reply,
    ngx_int_t rc)
{
    u_char                   *buf, *p;
    int64_t                   bal, held;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_credits_ctx_t  *cctx;
    u_char                    b[NX_MONEY_LEN], h[NX_MONEY_LEN];
    u_char                    a[NX_MONEY_LEN];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    cctx = ctx->handler_ctx;
    r->read_event_handler = ngx_http_block_reading;

    buf = ngx_pnalloc(r->pool, cctx->json.len + 256 + 3 * NX_MONEY_LEN);
    if (buf == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(buf, cctx->json.data, cctx->json.len);
    p = ngx_sprintf(p, ",\"credits\":%s", cctx->enabled ? "true" : "false");

    if (rc == NGX_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_STRING)
    {
        bal = ngx_atoof((u_char *) reply->element[0]->str
                        + (reply->element[0]->str[0] == '-'),
                        reply->element[0]->len
                        - (reply->element[0]->str[0] == '-'));
        if (reply->element[0]->str[0] == '-') {
            bal = -bal;
        }

        held = 0;

        if (reply->element[1]->type == REDIS_REPLY_STRING) {
            held = ngx_atoof((u_char *) reply->element[1]->str,
                             reply->element[1]->len);
            held = ngx_max(held, 0);
        }

        nx_money_format((char *) b, bal, NX_MONEY_MICRO);
        nx_money_format((char *) h, held, NX_MONEY_MICRO);
        nx_money_format((char *) a, bal - held, NX_MONEY_MICRO);

        p = ngx_sprintf(p, ",\"balance_usd\":%s,\"balance_musd\":%L,"
                        "\"reserved_usd\":%s,\"available_usd\":%s}",
                        b, bal, h, a);

    } else if (rc == NGX_OK && reply->type == REDIS_REPLY_ARRAY) {
        /* never granted, or Redis lost it: the ledger's is restored */
        p = ngx_cpymem(p, ",\"balance_usd\":null}", 20);

    } else {
        p = ngx_cpymem(p, ",\"balance_usd\":null,\"balance_unavailable\":"
                          "true}", 46);
    }

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_OK, buf, p - buf));
}


static void
ngx_nexus_credits_grant_body(ngx_http_request_t *r, yajl_val v)
{
    int64_t                   amount;
    ngx_int_t                 rc;
    yajl_val                  f;
    const char               *s, *reason;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_pg_query_t     *q;
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_credits_ctx_t  *cctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    cctx = ctx->handler_ctx;
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    f = nx_json_get(v, "amount_usd");
    s = NULL;

    if (YAJL_IS_NUMBER(f) && f->u.number.r != NULL) {
        s = f->u.number.r;

    } else if (nx_json_string(f, &s) != 0) {
        s = NULL;
    }

    if (s == NULL
        || nx_money_parse(s, ngx_strlen(s), NX_MONEY_MICRO, INT64_MAX / 4,
                          &amount)
           != 0
        || amount <= 0)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                 "\"amount_usd\" must be dollars above 0, "
                                 "with at most 6 decimals",
                                 "{\"param\":\"amount_usd\"}"));
        return;
    }

    if (nx_json_string(nx_json_get(v, "reason"), &reason) != 0
        || ngx_strlen(reason) < NGX_NEXUS_CREDITS_REASON_MIN
        || ngx_strlen(reason) > NGX_NEXUS_CREDITS_REASON_MAX)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                 "\"reason\" must say why, in 10 to 500 "
                                 "characters", "{\"param\":\"reason\"}"));
        return;
    }

    if (amount > nmcf->credit_grant_max) {
        ngx_http_finalize_request(r,
            ngx_nexus_credits_grant_limit(r, "per_grant",
                                          nmcf->credit_grant_max, amount,
                                          -1));
        return;
    }

    cctx->amount = amount;

    /* the tree is freed after this handler */
    cctx->reason.len = ngx_strlen(reason);
    cctx->reason.data = ngx_pnalloc(r->pool, cctx->reason.len);
    if (cctx->reason.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(cctx->reason.data, reason, cctx->reason.len);

    q = ngx_nexus_pg_query(ngx_nexus_credits_enable_stmt,
                           cctx->tenant.len + 1);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, cctx->tenant.data, cctx->tenant.len);

    q->handler = ngx_nexus_credits_enabled;
    q->data = r;

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        rc = ngx_nexus_pg_unavailable(r);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ctx->pgq = q;
    ngx_nexus_wait(r);
}


static void
ngx_nexus_credits_enabled(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    u_char                    args[4][NGX_INT64_LEN];
    u_char                    keys[2][NGX_INT64_LEN + 16];
    u_char                    by[NX_KEY_PREFIX_LEN + 8];
    u_char                   *mark;
    size_t                    n, k;
    ngx_str_t                 rid, record, hash;
    const char               *argv[13];
    size_t                    argvlen[13];
    ngx_http_request_t       *r;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_redis_cmd_t    *cmd;
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_credits_ctx_t  *cctx;

    r = q->data;
    ctx = ngx_nexus_pg_answered(r);
    cctx = ctx->handler_ctx;
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_nexus_pg_failed(r, res, rc, "credits"));
        return;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 3) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "TENANT_NOT_FOUND",
                                 "no such tenant", NULL));
        return;
    }

    cctx->tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                                PQgetlength(res, 0, 0));

    if (ngx_nexus_request_id(r, &rid) != NGX_OK) {
        ngx_str_null(&rid);
    }

    n = 0;

    argv[n] = (const char *) keys[0];
    argvlen[n++] = ngx_sprintf(keys[0], "nx:cr:%L", cctx->tenant_id)
                   - keys[0];
    argv[n] = NGX_NEXUS_CREDITS_LEDGER;
    argvlen[n++] = sizeof(NGX_NEXUS_CREDITS_LEDGER) - 1;
    argv[n] = (const char *) keys[1];
    argvlen[n++] = ngx_sprintf(keys[1], "nx:cr:grants:%L",
                               ctx->principal.key_id)
                   - keys[1];

    /*
     * With an Idempotency-Key the grant is remembered with the key: a
     * retry the key's record lets through again (the first answer was a
     * 5xx, say Redis's reply came too late) finds it, and grants nothing.
     */

    ngx_str_set(&hash, "");

    if (ngx_nexus_idempotency_record(r, &record, &hash) == NGX_OK) {
        mark = ngx_pnalloc(r->pool, record.len + sizeof(":grant") - 1);
        if (mark == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        argv[n] = (const char *) mark;
        argvlen[n++] = ngx_sprintf(mark, "%V:grant", &record) - mark;
    }

    k = n;

    argv[n] = (const char *) args[0];
    argvlen[n++] = ngx_sprintf(args[0], "%L", cctx->amount) - args[0];
    argv[n] = (const char *) args[1];
    argvlen[n++] = ngx_sprintf(args[1], "%L", nmcf->credit_grant_daily)
                   - args[1];
    argv[n] = (const char *) args[2];
    argvlen[n++] = ngx_sprintf(args[2], "%L", cctx->tenant_id) - args[2];

    /* the ledger's balance, a plain integer from PostgreSQL */
    argv[n] = PQgetvalue(res, 0, 1);
    argvlen[n++] = PQgetlength(res, 0, 1);

    argv[n] = (const char *) rid.data;
    argvlen[n++] = rid.len;
    argv[n] = (const char *) by;
    argvlen[n++] = ngx_sprintf(by, "key:%V", &ctx->principal.prefix) - by;
    argv[n] = (const char *) cctx->reason.data;
    argvlen[n++] = cctx->reason.len;
    argv[n] = (const char *) hash.data;
    argvlen[n++] = hash.len;
    argv[n] = (const char *) args[3];
    argvlen[n++] = ngx_sprintf(args[3], "%M", nmcf->idempotency_ttl)
                   - args[3];

    cmd = ngx_nexus_redis_eval(&ngx_nexus_credits_grant_script, k, n, argv,
                               argvlen);
    if (cmd == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cmd->handler = ngx_nexus_credits_granted;
    cmd->data = r;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "DEPENDENCY_UNAVAILABLE",
                                 "Redis is unavailable, nothing was "
                                 "granted; try again", NULL));
        return;
    }

    ctx->rcmd[0] = cmd;
    ngx_nexus_wait(r);
}


static void
ngx_nexus_credits_granted(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    u_char                   *buf, *p, *members, *end;
    size_t                    len;
    int64_t                   today, before, after;
    ngx_str_t                 reason, tenant;
    redisReply              **e;
    ngx_http_request_t       *r;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_credits_ctx_t  *cctx;
    u_char                    amount[NX_MONEY_LEN], b[NX_MONEY_LEN];
    u_char                    a[NX_MONEY_LEN], d[NX_MONEY_LEN];
    u_char                    cap[NX_MONEY_LEN];

    r = cmd->data;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    cctx = ctx->handler_ctx;
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    ctx->rcmd[0] = NULL;
    r->read_event_handler = ngx_http_block_reading;

    if (rc != NGX_OK) {
        /* it may or may not have been granted: the ledger will say */
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "DEPENDENCY_UNAVAILABLE",
                                 "Redis did not answer in time, the grant "
                                 "may have been made: retry with the same "
                                 "Idempotency-Key, or check the tenant's "
                                 "transactions before trying again", NULL));
        return;
    }

    e = reply->element;

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1
        && e[0]->type == REDIS_REPLY_INTEGER && e[0]->integer == 3)
    {
        /* this key granted for another body, whose answer was lost */
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_CONFLICT,
                                 "IDEMPOTENCY_KEY_CONFLICT",
                                 "this Idempotency-Key made another grant",
                                 "{\"header\":\"Idempotency-Key\"}"));
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || e[0]->type != REDIS_REPLY_INTEGER
        || e[1]->type != REDIS_REPLY_INTEGER
        || (e[0]->integer != 0
            && (reply->elements != 5
                || e[2]->type != REDIS_REPLY_INTEGER
                || e[3]->type != REDIS_REPLY_INTEGER
                || e[4]->type != REDIS_REPLY_STRING
                || e[4]->len > 40)))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus credits: grant script failed: %*s",
                      reply->type == REDIS_REPLY_ERROR ? reply->len : 0,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    today = e[1]->integer;

    if (e[0]->integer == 0) {
        ngx_http_finalize_request(r,
            ngx_nexus_credits_grant_limit(r, "daily",
                                          nmcf->credit_grant_daily,
                                          cctx->amount, today));
        return;
    }

    before = e[2]->integer;
    after = e[3]->integer;

    if (ngx_nexus_json_escape(r->pool, &cctx->reason, &reason) != NGX_OK
        || ngx_nexus_json_escape(r->pool, &cctx->tenant, &tenant) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    nx_money_format((char *) amount, cctx->amount, NX_MONEY_MICRO);
    nx_money_format((char *) b, before, NX_MONEY_MICRO);
    nx_money_format((char *) a, after, NX_MONEY_MICRO);
    nx_money_format((char *) d, today, NX_MONEY_MICRO);
    nx_money_format((char *) cap, nmcf->credit_grant_daily, NX_MONEY_MICRO);

    len = 400 + tenant.len + reason.len + ctx->principal.prefix.len
          + 6 * NX_MONEY_LEN;

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the members, shared by the answer and the audit event */
    members = buf;
    p = ngx_sprintf(buf, "\"tenant\":\"%V\",\"transaction_id\":\"%*s\","
                    "\"type\":\"admin_credit\",\"amount_usd\":%s,"
                    "\"balance_before_usd\":%s,\"balance_after_usd\":%s,"
                    "\"granted_by\":\"key:%V\",\"reason\":\"%V\","
                    "\"granted_today_usd\":%s,\"daily_limit_usd\":%s",
                    &tenant, e[4]->len, e[4]->str, amount, b, a,
                    &ctx->principal.prefix, &reason, d, cap);
    end = p;

    /*
     * A grant found made earlier with this Idempotency-Key is answered as
     * it was; its event says so (the first one may have been lost with
     * the first answer).
     */
    p = ngx_cpymem(p, ",\"replayed\":true", e[0]->integer == 2 ? 16 : 0);
    *p++ = '\0';

    if (e[0]->integer == 2
        && ngx_nexus_add_header(r, "Idempotent-Replayed", "true") != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_nexus_audit_request(r, cctx->tenant_id, "admin.credits.granted",
                            NGX_NEXUS_AUDIT_SUCCESS, (char *) members);

    p = ngx_pnalloc(r->pool, len + 2);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    len = ngx_sprintf(p, "{%*s}", end - members, members) - p;

    ngx_http_finalize_request(r, ngx_nexus_send_data(r, NGX_HTTP_OK, p, len));
}


/* 400 GRANT_LIMIT_EXCEEDED, the reference's 400 for either cap */

static ngx_int_t
ngx_nexus_credits_grant_limit(ngx_http_request_t *r, const char *scope,
    int64_t limit, int64_t amount, int64_t granted)
{
    u_char  *details, *p;
    u_char   l[NX_MONEY_LEN], a[NX_MONEY_LEN], g[NX_MONEY_LEN];

    nx_money_format((char *) l, limit, NX_MONEY_MICRO);
    nx_money_format((char *) a, amount, NX_MONEY_MICRO);

    details = ngx_pnalloc(r->pool, 160 + 3 * NX_MONEY_LEN);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(details, "{\"scope\":\"%s\",\"limit_usd\":%s,"
                    "\"requested_usd\":%s", scope, l, a);

    if (granted >= 0) {
        nx_money_format((char *) g, granted, NX_MONEY_MICRO);
        p = ngx_sprintf(p, ",\"granted_today_usd\":%s", g);
    }

    *p++ = '}';
    *p = '\0';

    return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                "GRANT_LIMIT_EXCEEDED",
                                granted >= 0
                                ? "this grant would exceed the daily limit "
                                  "of grants of this admin key"
                                : "this grant exceeds the limit of a single "
                                  "grant", (char *) details);
}
