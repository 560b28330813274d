
/*
 * Copyright (C) Nexus authors
 *
 * Prepaid credits: the admin endpoints that grant and show them, the
 * writer that moves the ledger from Redis into PostgreSQL, and the
 * reseeding of balances Redis lost.  Admission and deduction are the
 * budget reservation's (ngx_nexus_budget.c).
 */


#ifndef _NGX_NEXUS_CREDITS_H_INCLUDED_
#define _NGX_NEXUS_CREDITS_H_INCLUDED_


#include "ngx_nexus_module.h"


/* configuration time */
ngx_int_t ngx_nexus_credits_init(ngx_conf_t *cf);

/* process: the ledger writer, on one worker per node */
ngx_int_t ngx_nexus_credits_init_process(ngx_cycle_t *cycle);

/*
 * A tenant on credits has no balance in Redis (Redis lost its data): put
 * back, where missing, the balances the ledger in PostgreSQL ends with.
 * At most once a second per worker; asynchronous.
 */
void ngx_nexus_credits_reseed(void);

/*
 * GET /v1/admin/credits/{tenant} and POST /v1/admin/credits/{tenant}/grant;
 * rest is what follows "credits/".
 */
ngx_int_t ngx_nexus_credits_admin(ngx_http_request_t *r, ngx_str_t *rest);


#endif /* _NGX_NEXUS_CREDITS_H_INCLUDED_ */
