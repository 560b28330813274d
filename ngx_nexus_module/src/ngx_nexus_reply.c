
/*
 * Copyright (C) Nexus authors
 *
 * JSON responses in the Nexus envelope.  Every error a client can cause is
 * answered here with a stable code and the request id, never with nginx's
 * HTML error pages.
 */


#include "ngx_nexus_reply.h"

#include <nx_json.h>


ngx_int_t
ngx_nexus_send_json(ngx_http_request_t *r, ngx_uint_t status, u_char *json,
    size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    /* a body the client sent but nobody read must not become a request */
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    if (ngx_nexus_add_header(r, "Cache-Control", "no-store") != NGX_OK) {
        return NGX_ERROR;
    }

    if (r->method == NGX_HTTP_HEAD || len == 0) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = json;
    b->last = json + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_nexus_meta(ngx_http_request_t *r, u_char *p, ngx_str_t *id)
{
    p = ngx_cpymem(p, "\"meta\":{\"request_id\":\"",
                   sizeof("\"meta\":{\"request_id\":\"") - 1);
    p = ngx_cpymem(p, id->data, id->len);
    p = ngx_cpymem(p, "\",\"api_version\":\"v1\"}}",
                   sizeof("\",\"api_version\":\"v1\"}}") - 1);
    return p;
}


#define NGX_NEXUS_META_LEN                                                    \
    (sizeof("\"meta\":{\"request_id\":\"\",\"api_version\":\"v1\"}}") - 1)


ngx_int_t
ngx_nexus_send_data(ngx_http_request_t *r, ngx_uint_t status, u_char *data,
    size_t len)
{
    u_char     *json, *p;
    ngx_str_t   id;

    if (ngx_nexus_request_id(r, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    json = ngx_pnalloc(r->pool, sizeof("{\"data\":,") - 1 + len
                                + NGX_NEXUS_META_LEN + id.len);
    if (json == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(json, "{\"data\":", sizeof("{\"data\":") - 1);
    p = ngx_cpymem(p, data, len);
    *p++ = ',';
    p = ngx_nexus_meta(r, p, &id);

    return ngx_nexus_send_json(r, status, json, p - json);
}


ngx_int_t
ngx_nexus_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *details)
{
    u_char     *json, *p;
    size_t      len;
    ngx_str_t   id, msg, emsg;

    if (ngx_nexus_request_id(r, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    msg.data = (u_char *) message;
    msg.len = ngx_strlen(message);

    if (ngx_nexus_json_escape(r->pool, &msg, &emsg) != NGX_OK) {
        return NGX_ERROR;
    }

    if (details == NULL) {
        details = "{}";
    }

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\","
                 "\"details\":},") - 1
          + ngx_strlen(code) + emsg.len + ngx_strlen(details)
          + NGX_NEXUS_META_LEN + id.len;

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(json, "{\"error\":{\"code\":\"%s\",\"message\":\"%V\","
                    "\"details\":%s},", code, &emsg, details);
    p = ngx_nexus_meta(r, p, &id);

    if (status == NGX_HTTP_UNAUTHORIZED) {
        if (ngx_nexus_add_header(r, "WWW-Authenticate",
                                 ngx_strcmp(code, "AUTH_MISSING") == 0
                                 ? "Bearer realm=\"nexus\""
                                 : "Bearer realm=\"nexus\", "
                                   "error=\"invalid_token\"")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        if (ngx_nexus_add_header(r, "Retry-After", "1") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_nexus_send_json(r, status, json, p - json);
}


ngx_int_t
ngx_nexus_json_escape(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    size_t  len;

    len = nx_json_escape_len((const char *) src->data, src->len);

    if (len == src->len) {
        *dst = *src;
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(pool, len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    dst->len = nx_json_escape((char *) dst->data, (const char *) src->data,
                              src->len);

    return NGX_OK;
}


ngx_int_t
ngx_nexus_add_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
    h->lowcase_key = NULL;

    if (ngx_strcmp(name, "WWW-Authenticate") == 0) {
        r->headers_out.www_authenticate = h;
    }

    return NGX_OK;
}
