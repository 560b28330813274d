
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

typedef struct ngx_nexus_block_shape_s  ngx_nexus_block_shape_t;


/*
 * A gateway call's admission, before its script is made (deferred: its
 * limits are to be checked there).  NGX_OK: admitted from a block, its
 * headers added: call the provider; NGX_DONE: answered (and finalized)
 * here; NGX_DECLINED: not, and *ask, when not NULL, is the shape of a
 * block to ask for with the request's own admission.
 */
ngx_int_t ngx_nexus_block_admit(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_uint_t deferred, ngx_nexus_block_shape_t **ask);

/*
 * The admission script for a block of the shape, from the request's KEYS
 * and ARGV, not sent yet (NULL: no memory); if it cannot be sent,
 * ngx_nexus_block_unsent() with its data.
 */
ngx_nexus_redis_cmd_t *ngx_nexus_block_ask(ngx_nexus_block_shape_t *shape,
    ngx_nexus_proxy_t *px, const char **argv, size_t *argvlen);
void ngx_nexus_block_unsent(ngx_nexus_block_t *blk);

/* once, when a request the block admitted ends: the tokens it used */
void ngx_nexus_block_settle(ngx_nexus_block_t *blk, int64_t tokens);


#endif /* _NGX_NEXUS_BLOCK_H_INCLUDED_ */
