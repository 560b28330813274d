
/*
 * Copyright (C) Nexus authors
 *
 * Reading a JSON request body: bounded in size, gathered from memory (or,
 * when nginx spilled it, from a temporary file no larger than that bound),
 * parsed with yajl, and freed with the request.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"

#include <nx_json.h>


static void ngx_nexus_body_read(ngx_http_request_t *r);
static void ngx_nexus_body_free(void *data);


ngx_int_t
ngx_nexus_read_json(ngx_http_request_t *r, ngx_nexus_body_pt handler)
{
    ngx_int_t         rc;
    ngx_nexus_ctx_t  *ctx;

    if (r->headers_in.content_length_n > NGX_NEXUS_BODY_MAX) {
        return ngx_nexus_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "PAYLOAD_TOO_LARGE",
                                    "the request body is too large", NULL);
    }

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->body_handler = handler;

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_nexus_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_nexus_body_read(ngx_http_request_t *r)
{
    char                 err[128];
    yajl_val             v;
    ngx_str_t            body;
    ngx_nexus_ctx_t     *ctx;
    ngx_pool_cleanup_t  *cln;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ngx_nexus_body_collect(r, &body, NGX_NEXUS_BODY_MAX) != NGX_OK) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                 "PAYLOAD_TOO_LARGE",
                                 "the request body is too large", NULL));
        return;
    }

    if (body.len == 0) {
        v = NULL;

    } else {
        /* strict: no string of ours may be cut short by a "\u0000" */
        v = nx_json_parse_strict((const char *) body.data, body.len, err,
                                 sizeof(err));
        if (v == NULL) {
            ngx_http_finalize_request(r,
                ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "INVALID_JSON",
                                     "the request body is not valid JSON",
                                     NULL));
            return;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            nx_json_free(v);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        cln->handler = ngx_nexus_body_free;
        cln->data = v;
    }

    if (v != NULL && !YAJL_IS_OBJECT(v)) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "INVALID_JSON",
                                 "the request body must be a JSON object",
                                 NULL));
        return;
    }

    ctx->body_handler(r, v);
}


/*
 * A copy of the whole request body in memory, at most max bytes; a body
 * nginx spilled to a temporary file is read back (bounded by max).
 */

ngx_int_t
ngx_nexus_body_collect(ngx_http_request_t *r, ngx_str_t *body, size_t max)
{
    u_char       *p;
    off_t         size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    if (size > (off_t) max) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* bounded by max above */
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }
            p += n;
            continue;
        }

        if (b->last > b->pos) {
            /* an empty buffer (a last_buf marker) may have no memory */
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    body->len = p - body->data;

    return NGX_OK;
}


static void
ngx_nexus_body_free(void *data)
{
    nx_json_free(data);
}
