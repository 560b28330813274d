
/*
 * Copyright (C) Nexus authors
 *
 * Cost governance: the pricing catalog and the tenants' cost settings
 * (monthly budget, hard-cap mode, unpriced models, credits), kept in the
 * shared zone and reloaded on NOTIFY; the dollars of the X-Cost-*
 * headers.  The reservation itself is the token budget's
 * (ngx_nexus_budget.c), in the same Redis round trip.
 */


#ifndef _NGX_NEXUS_COST_H_INCLUDED_
#define _NGX_NEXUS_COST_H_INCLUDED_


#include "ngx_nexus_module.h"

#include <nx_llm.h>
#include <nx_money.h>


/* nexus_cost_degrade_max_tokens: the output tokens left in degrade mode */
#define NGX_NEXUS_COST_DEGRADE_TOKENS   512


typedef struct {
    int64_t                     budget;     /* micro-dollars a month, 0 none */
    ngx_uint_t                  warn;       /* permille of the budget */
    ngx_str_t                   degrade_model;  /* in the request's pool */

    int64_t                     price[2];   /* the model's: input, output,
                                               nano-dollars per 1K */
    int64_t                     degrade_price[2];

    unsigned                    degrade:1;  /* hard cap: degrade, not block */
    unsigned                    unpriced:1; /* unpriced models allowed */
    unsigned                    credits:1;  /* runs on prepaid credits */
    unsigned                    priced:1;   /* the model has a price */
    unsigned                    degrade_priced:1;
} ngx_nexus_cost_t;


/* configuration time */
ngx_int_t ngx_nexus_cost_init(ngx_conf_t *cf);
ngx_uint_t ngx_nexus_cost_catalog_ready(ngx_http_request_t *r);
char *ngx_nexus_cost_init_main_conf(ngx_conf_t *cf,
    ngx_nexus_main_conf_t *nmcf);
char *ngx_nexus_cost_usd_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* process: on start, on NOTIFY 'c:...' and whenever a worker listens */
void ngx_nexus_cost_reload(ngx_cycle_t *cycle);

/*
 * The cost settings of a tenant and the prices of model and of the
 * tenant's degrade model, as of now.  NGX_OK: c is filled; NGX_DECLINED:
 * the tenant has neither a cost budget nor credits, costs do not concern
 * its requests; NGX_BUSY: the catalog was never loaded on this node, so
 * nobody can tell; NGX_ERROR: no memory.
 */
ngx_int_t ngx_nexus_cost_lookup(ngx_http_request_t *r, int64_t tenant_id,
    ngx_str_t *model, ngx_nexus_cost_t *c);

/* GET /v1/self-serve/costs/budget */
ngx_int_t ngx_nexus_cost_self_serve(ngx_http_request_t *r);


#endif /* _NGX_NEXUS_COST_H_INCLUDED_ */
