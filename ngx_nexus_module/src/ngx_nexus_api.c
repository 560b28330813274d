
/*
 * Copyright (C) Nexus authors
 *
 * nexus_api and nexus_ops: the tenant-facing and operator-facing API
 * families.  Routes are matched on the part of the URI after "/v1/", so
 * the same handler serves /v1/... and a tenant's own /acme/v1/....
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_breaker.h"
#include "ngx_nexus_audit.h"
#include "ngx_nexus_abac.h"
#include "ngx_nexus_usage.h"
#include "ngx_nexus_cost.h"

#include <nx_name.h>


static ngx_int_t ngx_nexus_api_me(ngx_http_request_t *r);
static void ngx_nexus_ops_viewed(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_api_native(ngx_http_request_t *r,
    ngx_str_t *rest);


ngx_int_t
ngx_nexus_route(ngx_http_request_t *r, ngx_str_t *rest)
{
    u_char  *p, *last;

    p = r->uri.data;
    last = r->uri.data + r->uri.len;

    while (last - p >= 4) {
        if (ngx_strncmp(p, "/v1/", 4) == 0) {
            rest->data = p + 4;
            rest->len = last - p - 4;
            return NGX_OK;
        }

        p++;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_nexus_not_found(ngx_http_request_t *r)
{
    return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND",
                                "no such endpoint", NULL);
}


ngx_int_t
ngx_nexus_method_not_allowed(ngx_http_request_t *r, const char *allow)
{
    if (ngx_nexus_add_header(r, "Allow", allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                "METHOD_NOT_ALLOWED",
                                "this method is not allowed here", NULL);
}


/* Ollama's native API: /api/... (or /acme/api/...) */

static ngx_int_t
ngx_nexus_api_native(ngx_http_request_t *r, ngx_str_t *rest)
{
    u_char  *p;

    p = ngx_strlcasestrn(r->uri.data, r->uri.data + r->uri.len,
                         (u_char *) "/api/", 5 - 1);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    rest->data = p + 5;
    rest->len = r->uri.data + r->uri.len - rest->data;

    return NGX_OK;
}


/*
 * Whether the request is one of the gateway's calls, a POST to chat
 * completions or embeddings, or to Ollama's chat or generate: its limits
 * are taken with its budget's reservation once its body is read
 * (ngx_nexus_admit.c).  A call this would miss is limited in the access
 * phase, as any other request.
 */

ngx_uint_t
ngx_nexus_api_gateway_call(ngx_http_request_t *r)
{
    ngx_str_t              rest;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (r->method != NGX_HTTP_POST || nlcf->handler != NGX_NEXUS_HANDLER_API)
    {
        return 0;
    }

    if (ngx_nexus_route(r, &rest) == NGX_OK) {
        return (rest.len == sizeof("chat/completions") - 1
                && ngx_strncmp(rest.data, "chat/completions", rest.len) == 0)
               || (rest.len == sizeof("embeddings") - 1
                   && ngx_strncmp(rest.data, "embeddings", rest.len) == 0);
    }

    if (ngx_nexus_api_native(r, &rest) == NGX_OK) {
        return (rest.len == 4 && ngx_strncmp(rest.data, "chat", 4) == 0)
               || (rest.len == 8
                   && ngx_strncmp(rest.data, "generate", 8) == 0);
    }

    return 0;
}


ngx_int_t
ngx_nexus_api_handler(ngx_http_request_t *r)
{
    ngx_int_t   rc;
    ngx_str_t   rest;

    if (ngx_nexus_route(r, &rest) != NGX_OK) {

        if (ngx_nexus_api_native(r, &rest) != NGX_OK) {
            return ngx_nexus_not_found(r);
        }

        return ngx_nexus_gateway_handler(r, &rest, 1);
    }

    rc = ngx_nexus_gateway_handler(r, &rest, 0);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (rest.len == sizeof("self-serve/plan") - 1
        && ngx_strncmp(rest.data, "self-serve/plan", rest.len) == 0)
    {
        return ngx_nexus_plan_self_serve(r);
    }

    if (rest.len == sizeof("self-serve/usage/summary") - 1
        && ngx_strncmp(rest.data, "self-serve/usage/summary", rest.len) == 0)
    {
        return ngx_nexus_usage_self_serve(r);
    }

    if (rest.len == sizeof("self-serve/costs/budget") - 1
        && ngx_strncmp(rest.data, "self-serve/costs/budget", rest.len) == 0)
    {
        return ngx_nexus_cost_self_serve(r);
    }

    if (rest.len == 2 && ngx_strncmp(rest.data, "me", 2) == 0) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        return ngx_nexus_api_me(r);
    }

    if (rest.len == 12 && ngx_strncmp(rest.data, "audit/events", 12) == 0) {
        return ngx_nexus_audit_api(r);
    }

    rc = ngx_nexus_authz_hook(r, &rest);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_nexus_not_found(r);
}


/* GET /v1/me: what the presented key is, never what it contains */

static ngx_int_t
ngx_nexus_api_me(ngx_http_request_t *r)
{
    u_char                 *json, *p;
    size_t                  len;
    const char             *role;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_principal_t  *pr;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pr = &ctx->principal;

    role = nx_role_name((int) pr->role);

    len = sizeof("{\"tenant\":\"\",\"tenant_id\":,\"key_id\":,"
                 "\"key_prefix\":\"\",\"role\":\"\",\"scopes\":[],"
                 "\"platform\":false,\"expires_at\":}") - 1
          + pr->tenant.len + 2 * NGX_INT64_LEN + pr->prefix.len
          + ngx_strlen(role) + 3 * pr->scopes.len + NGX_INT64_LEN + 8;

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* tenant names, prefixes and scopes are validated: no escaping */
    p = ngx_sprintf(json, "{\"tenant\":\"%V\",\"tenant_id\":%L,"
                    "\"key_id\":%L,\"key_prefix\":\"%V\",\"role\":\"%s\","
                    "\"scopes\":[",
                    &pr->tenant, pr->tenant_id, pr->key_id, &pr->prefix,
                    role);

    if (pr->scopes.len) {
        *p++ = '"';
        for (len = 0; len < pr->scopes.len; len++) {
            if (pr->scopes.data[len] == ',') {
                p = ngx_cpymem(p, "\",\"", 3);
            } else {
                *p++ = pr->scopes.data[len];
            }
        }
        *p++ = '"';
    }

    p = ngx_sprintf(p, "],\"platform\":%s,\"expires_at\":",
                    pr->platform ? "true" : "false");

    if (pr->expires_at) {
        p = ngx_sprintf(p, "%L}", pr->expires_at);
    } else {
        p = ngx_cpymem(p, "null}", 5);
    }

    return ngx_nexus_send_data(r, NGX_HTTP_OK, json, p - json);
}


ngx_int_t
ngx_nexus_ops_handler(ngx_http_request_t *r)
{
    ngx_str_t  rest;

    if (ngx_nexus_route(r, &rest) != NGX_OK) {
        return ngx_nexus_not_found(r);
    }

    if (rest.len == sizeof("ops/health") - 1
        && ngx_strncmp(rest.data, "ops/health", rest.len) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        ngx_nexus_ops_viewed(r);

        return ngx_nexus_health_ready(r);
    }

    if (rest.len >= sizeof("ops/circuit-breakers") - 1
        && ngx_strncmp(rest.data, "ops/circuit-breakers",
                       sizeof("ops/circuit-breakers") - 1) == 0)
    {
        rest.data += sizeof("ops/circuit-breakers") - 1;
        rest.len -= sizeof("ops/circuit-breakers") - 1;

        if (rest.len == 0 || rest.data[0] == '/') {
            ngx_nexus_ops_viewed(r);
            return ngx_nexus_breaker_ops(r, &rest);
        }

        return ngx_nexus_not_found(r);
    }

    if (rest.len == sizeof("ops/notifications") - 1
        && ngx_strncmp(rest.data, "ops/notifications", rest.len) == 0)
    {
        ngx_nexus_ops_viewed(r);
        return ngx_nexus_notify_ops(r);
    }

    return ngx_nexus_not_found(r);
}


/*
 * ops.viewed: a read of an operator route, by a platform admin (the access
 * phase let nobody else in).  The writes have their own events.
 */

static void
ngx_nexus_ops_viewed(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    ngx_nexus_audit_request(r, (ctx && ctx->authenticated)
                               ? ctx->principal.tenant_id : 0,
                            "ops.viewed", NGX_NEXUS_AUDIT_SUCCESS, NULL);
}


/*
 * nexus_error: the JSON answer for errors nginx itself raises before any
 * Nexus handler runs (a duplicate Authorization header, a header line too
 * long, a body over client_max_body_size), wired with error_page to a
 * named location.
 */

ngx_int_t
ngx_nexus_error_handler(ngx_http_request_t *r)
{
    u_char                *code;
    const char            *message;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    switch (nlcf->error_status) {
    case NGX_HTTP_BAD_REQUEST:
        message = "the request is malformed";
        break;
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        message = "the request body is too large";
        break;
    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        message = "the request URI is too long";
        break;
    case 431:
    case 494:
        message = "the request headers are too large";
        break;
    default:
        message = "the request cannot be served";
        break;
    }

    code = ngx_pnalloc(r->pool, nlcf->error_code.len + 1);
    if (code == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_cpystrn(code, nlcf->error_code.data, nlcf->error_code.len + 1);

    if (nlcf->error_message.len) {
        message = (const char *) nlcf->error_message.data;
    }

    /* whatever nginx rejected, the connection is not to be trusted */
    r->keepalive = 0;

    return ngx_nexus_send_error(r, nlcf->error_status, (char *) code,
                                message, NULL);
}
