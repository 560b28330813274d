
/*
 * Copyright (C) Nexus authors
 *
 * Usage events: the per-worker batch writer behind ngx_nexus_usage_emit()
 * (declared with its event in ngx_nexus_provider.h), and the admin
 * endpoint that reads them back.
 */


#ifndef _NGX_NEXUS_USAGE_H_INCLUDED_
#define _NGX_NEXUS_USAGE_H_INCLUDED_


#include "ngx_nexus_module.h"


/* configuration time */
char *ngx_nexus_usage_init_main_conf(ngx_conf_t *cf,
    ngx_nexus_main_conf_t *nmcf);
ngx_int_t ngx_nexus_usage_init_statements(ngx_conf_t *cf);

/* process */
ngx_int_t ngx_nexus_usage_init_process(ngx_cycle_t *cycle);
void ngx_nexus_usage_exit_process(ngx_cycle_t *cycle);

/*
 * Events this worker has given up on since it started: dropped because
 * its queue was full (PostgreSQL unavailable for longer than the queue
 * lasts), refused by PostgreSQL, or still unwritten when it had to exit.
 * Monotonic; a node-wide total is the sum over the workers.
 */
ngx_uint_t ngx_nexus_usage_dropped(void);

/* events waiting in this worker's memory, in flight included */
ngx_uint_t ngx_nexus_usage_queued(void);

/* GET /v1/admin/usage/{tenant} (ngx_nexus_usage_admin.c) */
ngx_int_t ngx_nexus_usage_admin_init_statements(ngx_conf_t *cf);
ngx_int_t ngx_nexus_usage_admin(ngx_http_request_t *r, ngx_str_t *tenant);
/* GET /v1/self-serve/usage/summary: the caller's own tenant's */
ngx_int_t ngx_nexus_usage_self_serve(ngx_http_request_t *r);


#endif /* _NGX_NEXUS_USAGE_H_INCLUDED_ */
