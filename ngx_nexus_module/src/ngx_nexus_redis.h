
/*
 * Copyright (C) Nexus authors
 *
 * Non-blocking Redis for nginx workers: nginx owns the sockets, hiredis is
 * used only to format commands and parse replies.  Commands are pipelined
 * on a per-worker pool; scripts go out as EVALSHA and fall back to EVAL
 * (which loads them) on NOSCRIPT.
 */


#ifndef _NGX_NEXUS_REDIS_H_INCLUDED_
#define _NGX_NEXUS_REDIS_H_INCLUDED_


#include "ngx_nexus_module.h"

#include <hiredis/hiredis.h>


#define NGX_NEXUS_REDIS_MAX_ARGS    64


/*
 * rc is NGX_OK with the reply (which may be a Redis error reply), or
 * NGX_DECLINED with reply == NULL when Redis could not answer in time.
 * The command and the reply are freed after the handler returns.
 */
typedef void (*ngx_nexus_redis_handler_pt)(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);


typedef struct {
    ngx_str_t                   body;
    u_char                      sha1[40];
} ngx_nexus_redis_script_t;


struct ngx_nexus_redis_cmd_s {
    ngx_nexus_redis_handler_pt  handler;
    void                       *data;

    /* private */
    ngx_queue_t                 queue;
    ngx_event_t                 timer;
    void                       *conn;
    char                       *buf;
    size_t                      len;
    size_t                      sent;
    ngx_nexus_redis_script_t   *script;
    int                         argc;
    char                      **argv;
    size_t                     *argvlen;
    unsigned                    internal:1;
};


char *ngx_nexus_redis_conf(ngx_conf_t *cf, ngx_nexus_redis_conf_t *rcf,
    ngx_str_t *value, ngx_uint_t n);
ngx_int_t ngx_nexus_redis_script(ngx_conf_t *cf,
    ngx_nexus_redis_script_t *script, const char *body);

ngx_int_t ngx_nexus_redis_init_process(ngx_cycle_t *cycle,
    ngx_nexus_redis_conf_t *rcf);
void ngx_nexus_redis_exit_process(ngx_cycle_t *cycle);

ngx_nexus_redis_cmd_t *ngx_nexus_redis_command(int argc, const char **argv,
    const size_t *argvlen);
/*
 * A request's one Redis question: sends cmd (NULL when it could not be
 * built) for r, which waits; reply(r, reply, rc) is called when Redis
 * answers, or at once with reply NULL and rc NGX_DECLINED when cmd is NULL
 * or cannot be sent.
 */
typedef void (*ngx_nexus_redis_reply_pt)(ngx_http_request_t *r,
    redisReply *reply, ngx_int_t rc);

void ngx_nexus_redis_ask(ngx_http_request_t *r, ngx_nexus_redis_cmd_t *cmd,
    ngx_nexus_redis_reply_pt reply);

ngx_nexus_redis_cmd_t *ngx_nexus_redis_eval(ngx_nexus_redis_script_t *s,
    int nkeys, int argc, const char **argv, const size_t *argvlen);
ngx_int_t ngx_nexus_redis_send(ngx_nexus_redis_cmd_t **cmds, ngx_uint_t n);
void ngx_nexus_redis_cancel(ngx_nexus_redis_cmd_t *cmd);
void ngx_nexus_redis_free(ngx_nexus_redis_cmd_t *cmd);

ngx_uint_t ngx_nexus_redis_configured(void);


#endif /* _NGX_NEXUS_REDIS_H_INCLUDED_ */
