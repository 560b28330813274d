
/*
 * Copyright (C) Nexus authors
 *
 * JSON responses: the Nexus envelope
 *   {"data":...,"meta":{"request_id":"...","api_version":"v1"}}
 *   {"error":{"code","message","details"},"meta":{...}}
 * and the response headers that go with errors.
 */


#ifndef _NGX_NEXUS_REPLY_H_INCLUDED_
#define _NGX_NEXUS_REPLY_H_INCLUDED_


#include "ngx_nexus_module.h"


/* send a complete JSON document as the response */
ngx_int_t ngx_nexus_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len);

/* {"data":<data>,"meta":...}; data is JSON text */
ngx_int_t ngx_nexus_send_data(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len);

/*
 * {"error":{"code":code,"message":message,"details":<details>},"meta":...}
 * details is JSON text or NULL (then {}).  401 adds WWW-Authenticate:
 * Bearer, 503 adds Retry-After.
 */
ngx_int_t ngx_nexus_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *details);

ngx_int_t ngx_nexus_add_header(ngx_http_request_t *r, const char *name,
    const char *value);

/* JSON-escape src into a new string from r->pool (without quotes) */
ngx_int_t ngx_nexus_json_escape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);


#endif /* _NGX_NEXUS_REPLY_H_INCLUDED_ */
