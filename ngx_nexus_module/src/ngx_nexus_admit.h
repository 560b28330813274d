
/*
 * Copyright (C) Nexus authors
 *
 * The admission of a gateway call: its limits and its budget's
 * reservation, in one Redis round trip.
 */


#ifndef _NGX_NEXUS_ADMIT_H_INCLUDED_
#define _NGX_NEXUS_ADMIT_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_proxy.h"


/*
 * After the body is parsed and the candidates are known: NGX_OK to call
 * the provider now; NGX_AGAIN while Redis answers (the answer then starts
 * the proxy or refuses); NGX_DONE when the request was answered (and
 * finalized) here.
 */
ngx_int_t ngx_nexus_admit(ngx_http_request_t *r, ngx_nexus_proxy_t *px);

ngx_int_t ngx_nexus_admit_init(ngx_conf_t *cf);


#endif /* _NGX_NEXUS_ADMIT_H_INCLUDED_ */
