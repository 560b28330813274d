
/*
 * Copyright (C) Nexus authors
 *
 * Rate limits: the decision shared by the Redis and the local paths.
 */


#ifndef _NGX_NEXUS_LIMIT_H_INCLUDED_
#define _NGX_NEXUS_LIMIT_H_INCLUDED_


#include "ngx_nexus_module.h"


typedef struct {
    unsigned                    allowed:1;
    unsigned                    tenant_scope:1;
    int64_t                     retry_ms;
    int64_t                     remaining;
} ngx_nexus_limit_result_t;


/*
 * The two buckets in the shared zone (no nexus_redis): rates[] is key rps,
 * key burst, tenant rps, tenant burst.  NGX_ERROR when the zone has no
 * room even after reclaiming idle buckets.
 */
ngx_int_t ngx_nexus_limit_local(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, const char *cls, ngx_uint_t *rates,
    ngx_nexus_limit_result_t *res);


#endif /* _NGX_NEXUS_LIMIT_H_INCLUDED_ */
