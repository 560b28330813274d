
/*
 * Copyright (C) Nexus authors
 *
 * nexus_health live | ready.
 *
 * "live" answers from the worker alone.  "ready" asks this worker's own
 * pools: a prepared SELECT on PostgreSQL, and on Redis a PING pipelined
 * with a small script sent as EVALSHA (so that a flushed script cache is
 * noticed and healed here, not on a request that matters).  For
 * /v1/ops/health that script is the one that reads the worker daemons'
 * heartbeats (ngx_nexus_workers.c): a stale one makes the status
 * "degraded", still 200.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_cost.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_workers.h"


#define NGX_NEXUS_DEP_UNKNOWN       0
#define NGX_NEXUS_DEP_UP            1
#define NGX_NEXUS_DEP_DOWN          2
#define NGX_NEXUS_DEP_NONE          3


typedef struct {
    ngx_uint_t                  pg;
    ngx_uint_t                  redis;
    ngx_nexus_redis_cmd_t      *workers_cmd;
    ngx_str_t                   workers;    /* JSON, or empty */
    ngx_uint_t                  stale;
} ngx_nexus_ready_t;


static void ngx_nexus_ready_pg(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_ready_redis(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_ready_send(ngx_http_request_t *r);
static void ngx_nexus_ready_done(ngx_http_request_t *r);


static ngx_uint_t                ngx_nexus_ready_stmt;
static ngx_nexus_redis_script_t  ngx_nexus_ready_script;

static const char *ngx_nexus_dep_names[] = {
    "unknown", "up", "down", "not_configured"
};


ngx_int_t
ngx_nexus_health_init(ngx_conf_t *cf)
{
    if (ngx_nexus_pg_statement(cf, "nexus_ready", "SELECT 1", 0,
                               &ngx_nexus_ready_stmt)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_redis_script(cf, &ngx_nexus_ready_script,
                                  "return redis.call('PING')");
}


ngx_int_t
ngx_nexus_health_handler(ngx_http_request_t *r)
{
    ngx_nexus_loc_conf_t  *nlcf;

    static u_char  live[] = "{\"status\":\"ok\"}";

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (nlcf->handler == NGX_NEXUS_HANDLER_LIVE) {
        return ngx_nexus_send_json(r, NGX_HTTP_OK, live, sizeof(live) - 1);
    }

    return ngx_nexus_health_ready(r);
}


ngx_int_t
ngx_nexus_health_ready(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_ready_t      *rd;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rd = ngx_pcalloc(r->pool, sizeof(ngx_nexus_ready_t));
    if (rd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->handler_ctx = rd;

    rd->pg = nmcf->pg ? NGX_NEXUS_DEP_UNKNOWN : NGX_NEXUS_DEP_NONE;
    rd->redis = nmcf->redis ? NGX_NEXUS_DEP_UNKNOWN : NGX_NEXUS_DEP_NONE;

    if (ngx_nexus_ready_send(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->pending == 0) {
        ngx_nexus_ready_done(r);
        return NGX_DONE;
    }

    ngx_nexus_wait(r);

    return NGX_DONE;
}


static ngx_int_t
ngx_nexus_ready_send(ngx_http_request_t *r)
{
    const char             *argv[1];
    size_t                  argvlen[1];
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_ready_t      *rd;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_loc_conf_t   *nlcf;
    ngx_nexus_redis_cmd_t  *cmds[2];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    rd = ctx->handler_ctx;
    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    /* one reference for the request's own completion */
    r->main->count++;

    if (rd->pg == NGX_NEXUS_DEP_UNKNOWN) {
        q = ngx_nexus_pg_query(ngx_nexus_ready_stmt, 0);
        if (q == NULL) {
            return NGX_ERROR;
        }

        q->handler = ngx_nexus_ready_pg;
        q->data = r;

        if (ngx_nexus_pg_send(q) == NGX_OK) {
            ctx->pgq = q;
            ctx->pending++;

        } else {
            rd->pg = NGX_NEXUS_DEP_DOWN;
        }
    }

    if (rd->redis == NGX_NEXUS_DEP_UNKNOWN) {
        argv[0] = "PING";
        argvlen[0] = 4;

        cmds[0] = ngx_nexus_redis_command(1, argv, argvlen);

        if (nlcf->handler == NGX_NEXUS_HANDLER_OPS) {
            cmds[1] = ngx_nexus_workers_command();
            rd->workers_cmd = cmds[1];

        } else {
            cmds[1] = ngx_nexus_redis_eval(&ngx_nexus_ready_script, 0, 0,
                                           NULL, NULL);
        }

        if (cmds[0] == NULL || cmds[1] == NULL) {
            if (cmds[0]) {
                ngx_nexus_redis_free(cmds[0]);
            }
            if (cmds[1]) {
                ngx_nexus_redis_free(cmds[1]);
            }
            return NGX_ERROR;
        }

        cmds[0]->handler = ngx_nexus_ready_redis;
        cmds[0]->data = r;
        cmds[1]->handler = ngx_nexus_ready_redis;
        cmds[1]->data = r;

        if (ngx_nexus_redis_send(cmds, 2) == NGX_OK) {
            ctx->rcmd[0] = cmds[0];
            ctx->rcmd[1] = cmds[1];
            ctx->pending += 2;

        } else {
            rd->redis = NGX_NEXUS_DEP_DOWN;
        }
    }

    return NGX_OK;
}


static void
ngx_nexus_ready_pg(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    ngx_http_request_t  *r;
    ngx_nexus_ctx_t     *ctx;
    ngx_nexus_ready_t   *rd;

    r = q->data;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    rd = ctx->handler_ctx;

    ctx->pgq = NULL;
    rd->pg = (rc == NGX_OK) ? NGX_NEXUS_DEP_UP : NGX_NEXUS_DEP_DOWN;

    if (--ctx->pending == 0) {
        ngx_nexus_ready_done(r);
    }
}


static void
ngx_nexus_ready_redis(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_uint_t           i;
    ngx_http_request_t  *r;
    ngx_nexus_ctx_t     *ctx;
    ngx_nexus_ready_t   *rd;

    r = cmd->data;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    rd = ctx->handler_ctx;

    for (i = 0; i < 2; i++) {
        if (ctx->rcmd[i] == cmd) {
            ctx->rcmd[i] = NULL;
        }
    }

    if (rc != NGX_OK || reply->type == REDIS_REPLY_ERROR) {
        rd->redis = NGX_NEXUS_DEP_DOWN;

    } else if (rd->redis == NGX_NEXUS_DEP_UNKNOWN) {
        rd->redis = NGX_NEXUS_DEP_UP;
    }

    if (cmd == rd->workers_cmd && rc == NGX_OK
        && reply->type != REDIS_REPLY_ERROR
        && ngx_nexus_workers_render(r->pool, reply, &rd->workers,
                                    &rd->stale)
           != NGX_OK)
    {
        ngx_str_null(&rd->workers);
    }

    if (--ctx->pending == 0) {
        ngx_nexus_ready_done(r);
    }
}


static void
ngx_nexus_ready_done(ngx_http_request_t *r)
{
    u_char                *p, *json, *body;
    ngx_int_t              rc;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_ready_t     *rd;
    ngx_uint_t             catalog;
    ngx_nexus_loc_conf_t  *nlcf;
    u_char                 msg[80];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    rd = ctx->handler_ctx;

    r->read_event_handler = ngx_http_block_reading;

    json = ngx_pnalloc(r->pool, 256 + rd->workers.len);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(json, "{\"postgres\":\"%s\",\"redis\":\"%s\"}",
                    ngx_nexus_dep_names[rd->pg],
                    ngx_nexus_dep_names[rd->redis]);

    catalog = ngx_nexus_cost_catalog_ready(r);

    if (rd->pg != NGX_NEXUS_DEP_DOWN && rd->redis != NGX_NEXUS_DEP_DOWN
        && catalog)
    {
        body = json + 128;
        p = ngx_sprintf(body, "{\"status\":\"%s\",\"checks\":%*s",
                        rd->stale ? "degraded" : "ready", p - json, json);

        if (rd->workers.len) {
            p = ngx_sprintf(p, ",\"workers\":%V", &rd->workers);
        }

        *p++ = '}';

        nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

        /* /readyz answers load balancers; the ops API speaks the envelope */
        rc = (nlcf->handler == NGX_NEXUS_HANDLER_OPS)
             ? ngx_nexus_send_data(r, NGX_HTTP_OK, body, p - body)
             : ngx_nexus_send_json(r, NGX_HTTP_OK, body, p - body);

        ngx_http_finalize_request(r, rc);
        return;
    }

    *p = '\0';

    /* a node that has not loaded the pricing catalog yet takes no calls */
    ngx_sprintf(msg, "not ready:%s%s%s%Z",
                rd->pg == NGX_NEXUS_DEP_DOWN ? " postgres" : "",
                rd->redis == NGX_NEXUS_DEP_DOWN ? " redis" : "",
                catalog ? "" : " pricing catalog not loaded yet");

    p = ngx_pnalloc(r->pool, 160);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_sprintf(p, "{\"checks\":%s}%Z", json);

    rc = ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                              "DEPENDENCY_UNAVAILABLE", (char *) msg,
                              (char *) p);

    ngx_http_finalize_request(r, rc);
}
