
/*
 * Copyright (C) Nexus authors
 *
 * Idempotency keys for write endpoints: a request that carries
 * Idempotency-Key runs once per tenant, method, path and key; a retry
 * with the same body gets the first response again.
 */


#ifndef _NGX_NEXUS_IDEMPOTENCY_H_INCLUDED_
#define _NGX_NEXUS_IDEMPOTENCY_H_INCLUDED_


#include "ngx_nexus_module.h"


ngx_int_t ngx_nexus_idempotency_init(ngx_conf_t *cf);

/*
 * Called first by a content handler of write endpoints.  NGX_DECLINED:
 * the handler goes on (no key, not a write, or the key is now ours).
 * Anything else is what the handler returns: the request was answered,
 * or waits while the key is looked up, after which handler runs again.
 */
ngx_int_t ngx_nexus_idempotency(ngx_http_request_t *r,
    ngx_http_handler_pt handler);

/*
 * For a handler whose effect must not happen twice even when the key is
 * released (a 5xx answer is not stored, so its retry runs again): the
 * name of the key's Redis record, unique to the caller's tenant, method,
 * path and key, and the hash of the request's query and body.  NGX_OK
 * while r holds its key, NGX_DECLINED without one.
 */
ngx_int_t ngx_nexus_idempotency_record(ngx_http_request_t *r,
    ngx_str_t *record, ngx_str_t *hash);


#endif /* _NGX_NEXUS_IDEMPOTENCY_H_INCLUDED_ */
