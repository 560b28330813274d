
/*
 * Copyright (C) Nexus authors
 *
 * Reading a JSON request body.
 */


#ifndef _NGX_NEXUS_BODY_H_INCLUDED_
#define _NGX_NEXUS_BODY_H_INCLUDED_


#include "ngx_nexus_module.h"

#include <yajl/yajl_tree.h>


#define NGX_NEXUS_BODY_MAX          65536


/*
 * Reads and parses the body, then calls handler; errors are answered
 * here.  Returns what a content handler returns.  The handler finalizes
 * the request.
 */
ngx_int_t ngx_nexus_read_json(ngx_http_request_t *r,
    ngx_nexus_body_pt handler);
ngx_int_t ngx_nexus_body_collect(ngx_http_request_t *r, ngx_str_t *body,
    size_t max);


#endif /* _NGX_NEXUS_BODY_H_INCLUDED_ */
