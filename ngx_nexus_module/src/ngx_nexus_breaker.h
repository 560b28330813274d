
/*
 * Copyright (C) Nexus authors
 *
 * Circuit breakers of the providers (ngx_nexus_breaker.c): what the rest
 * of the module needs besides the allow/record pair of
 * ngx_nexus_provider.h.
 */


#ifndef _NGX_NEXUS_BREAKER_H_INCLUDED_
#define _NGX_NEXUS_BREAKER_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_provider.h"


char *ngx_nexus_breaker_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* /v1/ops/circuit-breakers...; rest is what follows "circuit-breakers" */
ngx_int_t ngx_nexus_breaker_ops(ngx_http_request_t *r, ngx_str_t *rest);

/* a copy of the provider's breaker and its state as seen now */
ngx_int_t ngx_nexus_breaker_view(ngx_nexus_provider_t *p, nx_breaker_t *b,
    uint32_t *state);


#endif /* _NGX_NEXUS_BREAKER_H_INCLUDED_ */
