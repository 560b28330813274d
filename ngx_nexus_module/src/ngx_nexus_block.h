
/*
 * Copyright (C) Nexus authors
 *
 * Admission blocks: a worker takes many requests' worth of a key's limits
 * and token budget from Redis at once, and admits from it locally.
 */


#ifndef _NGX_NEXUS_BLOCK_H_INCLUDED_
#define _NGX_NEXUS_BLOCK_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_budget.h"


ngx_int_t ngx_nexus_block_init(ngx_conf_t *cf);
char *ngx_nexus_block_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/*
 * A gateway call's admission, its KEYS and ARGV built (limits: the limits
 * are in them; reserve: so is a reservation), before it is sent.  NGX_OK:
 * admitted from a block, its headers added: call the provider; NGX_DONE:
 * answered (and finalized) here; NGX_DECLINED: not, and *take, when not
 * NULL, is a block to ask for, to send with the request's own admission
 * (if that send fails, ngx_nexus_block_unsent() with the take's data).
 */
ngx_int_t ngx_nexus_block_admit(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_uint_t limits, ngx_uint_t reserve, const char **argv,
    size_t *argvlen, ngx_nexus_redis_cmd_t **take);
void ngx_nexus_block_unsent(ngx_nexus_block_t *blk);

/* once, when a request the block admitted ends: the tokens it used */
void ngx_nexus_block_settle(ngx_nexus_block_t *blk, int64_t tokens);


#endif /* _NGX_NEXUS_BLOCK_H_INCLUDED_ */
