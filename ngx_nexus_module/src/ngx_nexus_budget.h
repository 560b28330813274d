
/*
 * Copyright (C) Nexus authors
 *
 * Token budgets (per key: daily, monthly, total) and tokens per minute
 * (per key and per tenant) for the gateway's calls: the worst case is
 * reserved before a provider is called, the actual tokens settled once
 * the answer is over, both in Redis.
 */


#ifndef _NGX_NEXUS_BUDGET_H_INCLUDED_
#define _NGX_NEXUS_BUDGET_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_proxy.h"


/* what a completion may cost when neither the client nor a directive
 * says: nexus_token_ceiling's default */
#define NGX_NEXUS_TOKEN_CEILING     4096


ngx_int_t ngx_nexus_budget_init(ngx_conf_t *cf);
char *ngx_nexus_budget_init_main_conf(ngx_conf_t *cf,
    ngx_nexus_main_conf_t *nmcf);
char *ngx_nexus_budget_ceiling_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_nexus_budget_tpm_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * After the body is parsed and the candidates are known: NGX_OK to call
 * the provider now; NGX_AGAIN while Redis answers (the answer then starts
 * the proxy or refuses); NGX_DONE when the request was answered (and
 * finalized) here.
 */
ngx_int_t ngx_nexus_budget_reserve(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);

/* X-Budget-* and X-RateLimit-*-Tokens on a proxied answer */
ngx_int_t ngx_nexus_budget_headers(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);

/* once, when the request ends: the tokens it actually used */
void ngx_nexus_budget_settle(ngx_nexus_proxy_t *px, int64_t prompt,
    int64_t completion);


#endif /* _NGX_NEXUS_BUDGET_H_INCLUDED_ */
