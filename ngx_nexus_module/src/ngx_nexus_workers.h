
/*
 * Copyright (C) Nexus authors
 *
 * The worker daemons' heartbeats, read from Redis for /v1/ops/health.
 */


#ifndef _NGX_NEXUS_WORKERS_H_INCLUDED_
#define _NGX_NEXUS_WORKERS_H_INCLUDED_


#include "ngx_nexus_redis.h"


/* the script that returns every role's heartbeat age and interval */
ngx_nexus_redis_cmd_t *ngx_nexus_workers_command(void);

/* its reply as {"<role>":{"status":...,"stale":...},...} */
ngx_int_t ngx_nexus_workers_render(ngx_pool_t *pool, redisReply *reply,
    ngx_str_t *out, ngx_uint_t *stale);


#endif /* _NGX_NEXUS_WORKERS_H_INCLUDED_ */
