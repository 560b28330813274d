
/*
 * Copyright (C) Nexus authors
 *
 * The worker daemons' heartbeats, for /v1/ops/health.
 *
 * Each daemon (nexus-<role>) writes the hash nx:hb:<role> (ts, interval,
 * with a TTL) and adds its role to the set nx:hb:roles.  One script, sent
 * through the worker's Redis pool like any other command, returns every
 * known role with its heartbeat's age measured on Redis's clock (the same
 * clock the daemons stamp with) and its interval.  A role whose age is
 * over three intervals, or whose key expired, is stale.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_workers.h"


#define NGX_NEXUS_WORKERS_MAX       32
#define NGX_NEXUS_WORKERS_STALE     3


static ngx_nexus_redis_script_t  ngx_nexus_workers_script;

static const char  ngx_nexus_workers_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local roles = redis.call('SMEMBERS', KEYS[1])\n"
    "table.sort(roles)\n"
    "local out = {}\n"
    "for i, role in ipairs(roles) do\n"
    "  if i > 32 then break end\n"
    "  local v = redis.call('HMGET', 'nx:hb:' .. role, 'ts', 'interval')\n"
    "  out[#out + 1] = role\n"
    "  out[#out + 1] = v[1] and (now - tonumber(v[1])) or -1\n"
    "  out[#out + 1] = tonumber(v[2]) or 0\n"
    "end\n"
    "return out\n";


ngx_int_t
ngx_nexus_workers_init(ngx_conf_t *cf)
{
    return ngx_nexus_redis_script(cf, &ngx_nexus_workers_script,
                                  ngx_nexus_workers_lua);
}


ngx_nexus_redis_cmd_t *
ngx_nexus_workers_command(void)
{
    const char  *argv[1];
    size_t       argvlen[1];

    argv[0] = "nx:hb:roles";
    argvlen[0] = sizeof("nx:hb:roles") - 1;

    return ngx_nexus_redis_eval(&ngx_nexus_workers_script, 1, 1, argv,
                                argvlen);
}


/*
 * {"notify":{"status":"ok","heartbeat_age_s":1.204,"interval_s":5,
 *  "stale":false},...} into out; *stale is set when any role is stale.
 */

ngx_int_t
ngx_nexus_workers_render(ngx_pool_t *pool, redisReply *reply, ngx_str_t *out,
    ngx_uint_t *stale)
{
    u_char       *p;
    size_t        i, k, n;
    int64_t       age, interval, limit;
    ngx_uint_t    is_stale;
    redisReply  **e;

    *stale = 0;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 3 != 0) {
        return NGX_ERROR;
    }

    n = reply->elements / 3;

    if (n > NGX_NEXUS_WORKERS_MAX) {
        n = NGX_NEXUS_WORKERS_MAX;
    }

    out->data = ngx_pnalloc(pool, 2 + n * 160);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        e = &reply->element[3 * i];

        if (e[0]->type != REDIS_REPLY_STRING || e[0]->len == 0
            || e[0]->len > 32 || e[1]->type != REDIS_REPLY_INTEGER
            || e[2]->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }

        /* role names go into JSON unescaped: [a-z0-9_-] only */
        for (k = 0; k < e[0]->len; k++) {
            u_char  c = (u_char) e[0]->str[k];

            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                  || c == '_' || c == '-'))
            {
                break;
            }
        }

        if (k < e[0]->len) {
            continue;
        }

        age = e[1]->integer;
        interval = e[2]->integer > 0 ? e[2]->integer : 5000;
        limit = NGX_NEXUS_WORKERS_STALE * interval;

        if (p - out->data > 1) {
            *p++ = ',';
        }

        if (age < 0) {
            *stale = 1;
            p = ngx_sprintf(p, "\"%*s\":{\"status\":\"missing\","
                            "\"heartbeat_age_s\":null,\"interval_s\":%.3f,"
                            "\"stale\":true}",
                            e[0]->len, e[0]->str, (double) interval / 1000);
            continue;
        }

        is_stale = age > limit;

        if (is_stale) {
            *stale = 1;
        }

        p = ngx_sprintf(p, "\"%*s\":{\"status\":\"%s\","
                        "\"heartbeat_age_s\":%.3f,\"interval_s\":%.3f,"
                        "\"stale\":%s}",
                        e[0]->len, e[0]->str, is_stale ? "stale" : "ok",
                        (double) age / 1000, (double) interval / 1000,
                        is_stale ? "true" : "false");
    }

    *p++ = '}';
    out->len = p - out->data;

    return NGX_OK;
}
