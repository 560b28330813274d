/*
 * Copyright (C) Nexus authors
 *
 * Model discovery: which models each provider lists, per node.
 */


#ifndef _NGX_NEXUS_DISCOVERY_H_INCLUDED_
#define _NGX_NEXUS_DISCOVERY_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_provider.h"


char *ngx_nexus_discovery_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_nexus_discovery_init_process(ngx_cycle_t *cycle);
ngx_uint_t ngx_nexus_discovery_has(ngx_nexus_provider_t *p, u_char *model,
    size_t len);
ngx_int_t ngx_nexus_discovery_names(ngx_pool_t *pool, ngx_array_t *out);


#endif /* _NGX_NEXUS_DISCOVERY_H_INCLUDED_ */
