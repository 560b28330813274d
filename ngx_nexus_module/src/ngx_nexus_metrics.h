
/*
 * Copyright (C) Nexus authors
 *
 * Prometheus metrics (ngx_nexus_metrics.c): the nexus_metrics directive
 * and its handler.  The counters are fed through ngx_nexus_metrics_request
 * and ngx_nexus_metrics_attempt of ngx_nexus_provider.h.
 */


#ifndef _NGX_NEXUS_METRICS_H_INCLUDED_
#define _NGX_NEXUS_METRICS_H_INCLUDED_


#include "ngx_nexus_module.h"


char *ngx_nexus_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_nexus_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_NEXUS_METRICS_H_INCLUDED_ */
