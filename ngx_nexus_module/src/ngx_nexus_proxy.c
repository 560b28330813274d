/*
 * Copyright (C) Nexus authors
 *
 * The gateway's proxy, on nginx's upstream machinery.
 *
 * Every provider is an nginx upstream block; a request goes to a list of
 * candidate providers in turn.  The upstream this module hands to nginx
 * is a "meta" upstream whose balancer picks the next candidate whose
 * circuit breaker lets it through, then asks that provider's own balancer
 * (round robin, keepalive, ...) for a server, and builds the request body
 * for that provider's type.  nginx does the rest: connecting, timeouts,
 * retrying on connect errors, timeouts and 5xx/429 while nothing has been
 * sent to the client, keepalive and TLS.
 *
 * The answer is parsed here: status line, headers, chunked or sized body.
 * A 2xx stream is translated event by event and flushed as it arrives.
 * Anything else (a whole JSON body, or a provider's error) is held: the
 * header filter keeps the response header back until the body is
 * complete, so the client gets one translated answer with its length, or
 * a clean error instead of half a body.  Errors nginx itself raises for a
 * gateway request (no provider reachable, timeouts, a body too large) are
 * rewritten into OpenAI's error shape by the same filters.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_nexus_module.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_budget.h"


#define NGX_NEXUS_PROXY_EVENT_MAX   (1024 * 1024)


static ngx_int_t ngx_nexus_proxy_peer_init(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_nexus_proxy_peer_get(ngx_peer_connection_t *pc,
    void *data);
static void ngx_nexus_proxy_peer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static ngx_uint_t ngx_nexus_proxy_outcome(ngx_nexus_proxy_t *px,
    ngx_peer_connection_t *pc, ngx_uint_t state);
static ngx_uint_t ngx_nexus_proxy_tries(ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_proxy_build(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, ngx_nexus_candidate_t *c);

static ngx_int_t ngx_nexus_proxy_create_request(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_proxy_reinit_request(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_proxy_process_status_line(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_proxy_process_header(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_proxy_decide(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static void ngx_nexus_proxy_abort_request(ngx_http_request_t *r);
static void ngx_nexus_proxy_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_nexus_proxy_filter_init(void *data);
static ngx_int_t ngx_nexus_proxy_filter(void *data, ssize_t bytes);
static ngx_int_t ngx_nexus_proxy_feed(ngx_nexus_proxy_t *px, u_char *p,
    size_t n);
static int ngx_nexus_proxy_event(void *ud, const char *event,
    size_t event_len, const char *data, size_t len);
static ngx_int_t ngx_nexus_proxy_emit(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_proxy_release(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_proxy_final_body(ngx_nexus_proxy_t *px,
    ngx_uint_t *status);
static ngx_int_t ngx_nexus_proxy_replace(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_proxy_headers(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_proxy_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_proxy_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_nexus_proxy_cleanup(void *data);
static void ngx_nexus_proxy_account(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_buf_t *ngx_nexus_proxy_buf(ngx_http_request_t *r, u_char *p,
    size_t len);
static void ngx_nexus_proxy_json_header(ngx_http_request_t *r,
    ngx_uint_t status, size_t len);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_http_upstream_srv_conf_t      ngx_nexus_proxy_meta;


ngx_int_t
ngx_nexus_proxy_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_nexus_proxy_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_nexus_proxy_body_filter;

    return NGX_OK;
}


/* the upstream every provider's conf names: its balancer is ours */

ngx_http_upstream_srv_conf_t *
ngx_nexus_proxy_upstream(void)
{
    if (ngx_nexus_proxy_meta.peer.init == NULL) {
        ngx_str_set(&ngx_nexus_proxy_meta.host, "nexus");
        ngx_nexus_proxy_meta.peer.init = ngx_nexus_proxy_peer_init;
    }

    return &ngx_nexus_proxy_meta;
}


ngx_nexus_proxy_t *
ngx_nexus_proxy_create(ngx_http_request_t *r, ngx_uint_t kind,
    const char *endpoint)
{
    ngx_nexus_ctx_t     *ctx;
    ngx_nexus_proxy_t   *px;
    ngx_pool_cleanup_t  *cln;

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NULL;
    }

    px = ngx_pcalloc(r->pool, sizeof(ngx_nexus_proxy_t));
    if (px == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_nexus_proxy_cleanup;
    cln->data = px;

    px->request = r;
    px->kind = kind;
    px->endpoint.data = (u_char *) endpoint;
    px->endpoint.len = ngx_strlen(endpoint);
    px->start = ngx_current_msec;
    px->created = ngx_time();
    px->length = -1;
    px->outcome = "ok";

    ctx->proxy = px;

    return px;
}


ngx_nexus_proxy_t *
ngx_nexus_proxy_get(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_nexus_module);

    return ctx ? ctx->proxy : NULL;
}


void
ngx_nexus_proxy_start(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_str_t                   rid;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_http_upstream_t        *u;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (ngx_http_upstream_create(r) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    u = r->upstream;

    ngx_str_set(&u->schema, "http://");
    u->output.tag = (ngx_buf_tag_t) &ngx_nexus_module;

    /* the first candidate's conf until the balancer picks one */
    u->conf = &px->cands[0].provider->conf;

    u->create_request = ngx_nexus_proxy_create_request;
    u->reinit_request = ngx_nexus_proxy_reinit_request;
    u->process_header = ngx_nexus_proxy_process_status_line;
    u->abort_request = ngx_nexus_proxy_abort_request;
    u->finalize_request = ngx_nexus_proxy_finalize_request;

    u->input_filter_init = ngx_nexus_proxy_filter_init;
    u->input_filter = ngx_nexus_proxy_filter;
    u->input_filter_ctx = px;

    u->buffering = 0;

    px->max_attempts = ngx_min(nmcf->max_attempts, px->ncands);
    px->started = 1;

    /* an id where the provider gives none (Ollama) */
    ngx_memcpy(px->id, "chatcmpl-", 9);

    if (ngx_nexus_request_id(r, &rid) == NGX_OK) {
        ngx_memcpy(px->id + 9, rid.data,
                   ngx_min(rid.len, sizeof(px->id) - 10));
    }

    ngx_http_upstream_init(r);
}


/* the meta balancer */

static ngx_int_t
ngx_nexus_proxy_peer_init(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_nexus_proxy_t  *px;

    px = ngx_nexus_proxy_get(r);
    if (px == NULL || px->ncands == 0) {
        return NGX_ERROR;
    }

    r->upstream->peer.get = ngx_nexus_proxy_peer_get;
    r->upstream->peer.free = ngx_nexus_proxy_peer_free;
    r->upstream->peer.data = px;
    r->upstream->peer.tries = px->max_attempts;

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_proxy_peer_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_nexus_proxy_t *px = data;

    ngx_int_t                      rc;
    ngx_msec_t                     retry;
    ngx_http_request_t            *r;
    ngx_http_upstream_t           *u;
    ngx_nexus_candidate_t         *c;
    ngx_http_upstream_srv_conf_t  *uscf;

    r = px->request;
    u = r->upstream;

    for ( ;; ) {

        if (px->next >= px->ncands || px->attempts >= px->max_attempts) {
            pc->tries = 0;
            return NGX_BUSY;
        }

        c = &px->cands[px->next++];

        if (ngx_nexus_breaker_allow(c->provider, &retry) != NGX_OK) {
            ngx_nexus_metrics_attempt(c->provider, NGX_NEXUS_ATTEMPT_OPEN);

            if (px->retry_ms == 0 || retry < px->retry_ms) {
                px->retry_ms = retry ? retry : 1;
            }

            continue;
        }

        px->cur = c;
        px->attempts++;
        px->att_status = 0;
        px->ours = 0;

        u->conf = &c->provider->conf;
#if (NGX_HTTP_SSL)
        u->ssl = c->provider->tls;
        u->ssl_name = c->provider->host;
#endif

        if (ngx_nexus_proxy_build(r, px, c) != NGX_OK) {
            return NGX_ERROR;
        }

        /*
         * the provider's own balancer: round robin, keepalive, ...;
         * round robin reuses a peer.data it finds, so it must find none
         */
        uscf = c->provider->upstream;
        pc->data = NULL;

        if (uscf->peer.init(r, uscf) != NGX_OK) {
            return NGX_ERROR;
        }

        px->inner_data = pc->data;
        px->inner_get = pc->get;
        px->inner_free = pc->free;

        pc->data = px;
        pc->get = ngx_nexus_proxy_peer_get;
        pc->free = ngx_nexus_proxy_peer_free;

        rc = px->inner_get(pc, px->inner_data);

        if (rc == NGX_BUSY) {
            /* every server of this provider is down: try the next one */
            ngx_nexus_breaker_record(c->provider, NGX_NEXUS_ATTEMPT_ERROR);
            ngx_nexus_metrics_attempt(c->provider, NGX_NEXUS_ATTEMPT_ERROR);
            px->cur = NULL;
            continue;
        }

        pc->tries = 1 + ngx_nexus_proxy_tries(px);

        px->retry_ms = 0;

        return rc;
    }
}


static void
ngx_nexus_proxy_peer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_nexus_proxy_t *px = data;

    ngx_uint_t  outcome;

    if (px->cur == NULL) {
        return;
    }

    outcome = ngx_nexus_proxy_outcome(px, pc, state);

    /* a busy provider is not a broken server */
    if (outcome == NGX_NEXUS_ATTEMPT_HTTP_429
        || outcome == NGX_NEXUS_ATTEMPT_HTTP_4XX)
    {
        state = NGX_PEER_NEXT;
    }

    px->inner_free(pc, px->inner_data, state);

    ngx_nexus_breaker_record(px->cur->provider, outcome);
    ngx_nexus_metrics_attempt(px->cur->provider, outcome);

    pc->tries = ngx_nexus_proxy_tries(px);
}


static ngx_uint_t
ngx_nexus_proxy_outcome(ngx_nexus_proxy_t *px, ngx_peer_connection_t *pc,
    ngx_uint_t state)
{
    ngx_connection_t  *c;

    if (px->att_status >= 500) {
        return NGX_NEXUS_ATTEMPT_HTTP_5XX;
    }

    if (px->att_status == 429) {
        return NGX_NEXUS_ATTEMPT_HTTP_429;
    }

    if (px->att_status >= 400) {
        return NGX_NEXUS_ATTEMPT_HTTP_4XX;
    }

    c = pc->connection;

    if (c && (c->read->timedout || c->write->timedout)) {
        return NGX_NEXUS_ATTEMPT_TIMEOUT;
    }

    if (state & NGX_PEER_FAILED) {
        return NGX_NEXUS_ATTEMPT_ERROR;
    }

    if (px->att_status == 0 || px->client_closed) {
        return px->client_closed ? NGX_NEXUS_ATTEMPT_ABORTED
                                 : NGX_NEXUS_ATTEMPT_ERROR;
    }

    return NGX_NEXUS_ATTEMPT_OK;
}


/* attempts left after the current one */

static ngx_uint_t
ngx_nexus_proxy_tries(ngx_nexus_proxy_t *px)
{
    return ngx_min(px->max_attempts - px->attempts, px->ncands - px->next);
}


/* the whole HTTP/1.1 request for one candidate, in one buffer */

static ngx_int_t
ngx_nexus_proxy_build(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_nexus_candidate_t *c)
{
    size_t                 len;
    ngx_buf_t             *b;
    ngx_str_t              rid;
    const char            *path, *accept;
    ngx_chain_t           *cl;
    ngx_nexus_provider_t  *p;

    p = c->provider;

    path = nx_llm_upstream_path(p->type, px->kind);
    if (path == NULL) {
        return NGX_ERROR;
    }

    if (ngx_nexus_request_id(r, &rid) != NGX_OK) {
        ngx_str_null(&rid);
    }

    accept = px->req.stream ? (p->type == NX_LLM_OLLAMA
                               ? "application/x-ndjson"
                               : "text/event-stream")
                            : "application/json";

    len = sizeof("POST  HTTP/1.1\r\nHost: \r\n"
                 "Content-Type: application/json\r\n"
                 "Content-Length: \r\nAccept: \r\n"
                 "User-Agent: nexus\r\nX-Request-Id: \r\n\r\n")
          + ngx_strlen(path) + p->host.len + NGX_SIZE_T_LEN
          + ngx_strlen(accept) + rid.len + c->body.len
          + sizeof("anthropic-version: 2023-06-01\r\n");

    if (p->azure_version.len) {
        /* /openai/deployments/{deployment}/{what}?api-version=... */
        len += sizeof("/openai/deployments/?api-version=") + c->served.len
               + p->azure_version.len;
    }

    if (p->key.len) {
        len += sizeof("Authorization: Bearer \r\n") + p->key.len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (p->azure_version.len) {
        b->last = ngx_sprintf(b->last, "POST /openai/deployments/%V%s"
                              "?api-version=%V HTTP/1.1\r\n",
                              &c->served, path + sizeof("/v1") - 1,
                              &p->azure_version);
    } else {
        b->last = ngx_cpymem(b->last, "POST ", sizeof("POST ") - 1);
        b->last = ngx_cpymem(b->last, path, ngx_strlen(path));
        b->last = ngx_cpymem(b->last, " HTTP/1.1\r\n",
                             sizeof(" HTTP/1.1\r\n") - 1);
    }

    /* copied rather than formatted: this runs on every attempt */
    b->last = ngx_cpymem(b->last, "Host: ", sizeof("Host: ") - 1);
    b->last = ngx_cpymem(b->last, p->host.data, p->host.len);
    b->last = ngx_cpymem(b->last, "\r\nContent-Type: application/json\r\n"
                         "Content-Length: ",
                         sizeof("\r\nContent-Type: application/json\r\n"
                                "Content-Length: ") - 1);
    b->last = ngx_sprintf(b->last, "%uz", c->body.len);
    b->last = ngx_cpymem(b->last, "\r\nAccept: ", sizeof("\r\nAccept: ") - 1);
    b->last = ngx_cpymem(b->last, accept, ngx_strlen(accept));
    b->last = ngx_cpymem(b->last, "\r\nUser-Agent: nexus\r\n",
                         sizeof("\r\nUser-Agent: nexus\r\n") - 1);

    if (rid.len) {
        b->last = ngx_cpymem(b->last, "X-Request-Id: ",
                             sizeof("X-Request-Id: ") - 1);
        b->last = ngx_cpymem(b->last, rid.data, rid.len);
        *b->last++ = '\r';
        *b->last++ = '\n';
    }

    if (p->type == NX_LLM_ANTHROPIC) {
        b->last = ngx_cpymem(b->last, "anthropic-version: 2023-06-01\r\n",
                             sizeof("anthropic-version: 2023-06-01\r\n") - 1);
    }

    if (p->key.len) {
        if (p->type == NX_LLM_ANTHROPIC) {
            b->last = ngx_sprintf(b->last, "x-api-key: %V\r\n", &p->key);

        } else if (p->azure_version.len) {
            b->last = ngx_sprintf(b->last, "api-key: %V\r\n", &p->key);

        } else {
            b->last = ngx_sprintf(b->last, "Authorization: Bearer %V\r\n",
                                  &p->key);
        }
    }

    *b->last++ = '\r';
    *b->last++ = '\n';

    b->last = ngx_cpymem(b->last, c->body.data, c->body.len);

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    r->upstream->request_bufs = cl;

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_proxy_create_request(ngx_http_request_t *r)
{
    /* built per attempt by the balancer: the body depends on the provider */
    r->upstream->request_bufs = NULL;

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_proxy_reinit_request(ngx_http_request_t *r)
{
    ngx_nexus_proxy_t  *px;

    px = ngx_nexus_proxy_get(r);
    if (px == NULL) {
        return NGX_ERROR;
    }

    r->state = 0;
    ngx_memzero(&px->status, sizeof(ngx_http_status_t));
    ngx_memzero(&px->chunked, sizeof(ngx_http_chunked_t));

    px->mode = NGX_NEXUS_PROXY_NONE;
    px->length = -1;
    px->chunked_body = 0;
    px->conn_close = 0;
    px->ended = 0;

    r->upstream->process_header = ngx_nexus_proxy_process_status_line;

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_proxy_process_status_line(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_nexus_proxy_t    *px;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    px = ngx_nexus_proxy_get(r);
    if (px == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_parse_status_line(r, &u->buffer, &px->status);

    if (rc == NGX_AGAIN) {
        return rc;
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "provider \"%V\" sent no valid HTTP/1.x status line",
                      &px->cur->provider->name);
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    if (u->state && u->state->status == 0) {
        u->state->status = px->status.code;
    }

    u->headers_in.status_n = px->status.code;
    px->att_status = px->status.code;

    u->process_header = ngx_nexus_proxy_process_header;

    return ngx_nexus_proxy_process_header(r);
}


static ngx_int_t
ngx_nexus_proxy_process_header(ngx_http_request_t *r)
{
    size_t                name_len, value_len;
    u_char               *name, *value;
    ngx_int_t             rc;
    ngx_nexus_proxy_t    *px;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    px = ngx_nexus_proxy_get(r);
    if (px == NULL) {
        return NGX_ERROR;
    }

    for ( ;; ) {

        rc = ngx_http_parse_header_line(r, &u->buffer, 1);

        if (rc == NGX_OK) {
            name = r->header_name_start;
            name_len = r->header_name_end - r->header_name_start;
            value = r->header_start;
            value_len = r->header_end - r->header_start;

            if (name_len == sizeof("Content-Length") - 1
                && ngx_strncasecmp(name, (u_char *) "Content-Length",
                                   name_len) == 0)
            {
                px->length = ngx_atoof(value, value_len);

                if (px->length == NGX_ERROR) {
                    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
                }

            } else if (name_len == sizeof("Transfer-Encoding") - 1
                       && ngx_strncasecmp(name,
                                          (u_char *) "Transfer-Encoding",
                                          name_len) == 0)
            {
                if (value_len == 7
                    && ngx_strncasecmp(value, (u_char *) "chunked", 7) == 0)
                {
                    px->chunked_body = 1;

                } else {
                    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
                }

            } else if (name_len == sizeof("Connection") - 1
                       && ngx_strncasecmp(name, (u_char *) "Connection",
                                          name_len) == 0)
            {
                if (ngx_strlcasestrn(value, value + value_len,
                                     (u_char *) "close", 5 - 1)
                    != NULL)
                {
                    px->conn_close = 1;
                }
            }

            continue;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            break;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        /* NGX_HTTP_PARSE_INVALID_HEADER */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "provider \"%V\" sent an invalid header",
                      &px->cur->provider->name);

        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    if (px->chunked_body) {
        px->length = -1;
    }

    return ngx_nexus_proxy_decide(r, px);
}


static ngx_int_t
ngx_nexus_proxy_decide(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_uint_t            code;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    code = px->status.code;

    /*
     * nginx retries 500, 502, 503, 504 and 429 itself; a 408 and the
     * other 5xx are sent back to it as a broken answer while another
     * candidate is left
     */
    if ((code == 408 || (code >= 500 && code != 500 && code != 502
                         && code != 503 && code != 504))
        && u->peer.tries > 1)
    {
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    u->headers_in.content_length_n = -1;
    px->ours = 1;

    if (code >= 200 && code < 300) {
        px->mode = px->req.stream ? NGX_NEXUS_PROXY_STREAM
                                  : NGX_NEXUS_PROXY_BODY;

        u->headers_in.status_n = NGX_HTTP_OK;

    } else {
        px->mode = NGX_NEXUS_PROXY_ERROR;
    }

    return NGX_OK;
}


static void
ngx_nexus_proxy_abort_request(ngx_http_request_t *r)
{
    return;
}


static ngx_int_t
ngx_nexus_proxy_filter_init(void *data)
{
    ngx_nexus_proxy_t *px = data;

    ngx_http_request_t   *r;
    ngx_http_upstream_t  *u;

    r = px->request;
    u = r->upstream;

    if (px->mode == NGX_NEXUS_PROXY_STREAM) {
        nx_stream_free(&px->framer);
        nx_stream_init(&px->framer,
                       px->cur->provider->type == NX_LLM_OLLAMA
                       ? NX_STREAM_NDJSON : NX_STREAM_SSE,
                       NGX_NEXUS_PROXY_EVENT_MAX);

        nx_llm_stream_init(&px->st, px->cur->provider->type,
                           px->kind, (const char *) px->req.model,
                           (const char *) px->id, px->created,
                           px->req.include_usage);
    }

    nx_buf_reset(&px->body);

    /* the end of the body is ours to find: u->length 0 says it is there */
    if (px->length == 0 || r->method == NGX_HTTP_HEAD
        || px->status.code == 204 || px->status.code == 304)
    {
        px->ended = 1;
        u->length = 0;
        u->keepalive = !px->conn_close;

    } else {
        u->length = -1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_proxy_filter(void *data, ssize_t bytes)
{
    ngx_nexus_proxy_t *px = data;

    size_t                n;
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_http_request_t   *r;
    ngx_http_upstream_t  *u;

    r = px->request;
    u = r->upstream;
    b = &u->buffer;

    b->pos = b->last;
    b->last += bytes;

    if (px->ended) {
        /* bytes after the end: the connection is not reusable */
        u->keepalive = 0;
        b->pos = b->last;
        return NGX_OK;
    }

    if (px->chunked_body) {

        for ( ;; ) {
            rc = ngx_http_parse_chunked(r, b, &px->chunked);

            if (rc == NGX_OK) {
                n = ngx_min((off_t) (b->last - b->pos), px->chunked.size);

                if (ngx_nexus_proxy_feed(px, b->pos, n) != NGX_OK) {
                    return NGX_ERROR;
                }

                b->pos += n;
                px->chunked.size -= n;
                continue;
            }

            if (rc == NGX_DONE) {
                px->ended = 1;
                break;
            }

            if (rc == NGX_AGAIN) {
                break;
            }

            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "provider \"%V\" sent an invalid chunked body",
                          &px->cur->provider->name);
            px->broken = 1;
            px->ended = 1;
            px->conn_close = 1;
            b->pos = b->last;
            break;
        }

    } else {
        n = b->last - b->pos;

        if (px->length >= 0 && (off_t) n >= px->length) {
            n = (size_t) px->length;
            px->ended = 1;
        }

        if (ngx_nexus_proxy_feed(px, b->pos, n) != NGX_OK) {
            return NGX_ERROR;
        }

        if (px->length > 0) {
            px->length -= n;
        }

        b->pos = b->last;
    }

    if (px->ended) {
        u->length = 0;
        u->keepalive = !px->conn_close && !px->broken;
    }

    return ngx_nexus_proxy_emit(r, px);
}


static ngx_int_t
ngx_nexus_proxy_feed(ngx_nexus_proxy_t *px, u_char *p, size_t n)
{
    int  rc;

    if (n == 0 || px->broken) {
        return NGX_OK;
    }

    if (px->mode != NGX_NEXUS_PROXY_STREAM) {
        if (px->body.len + n > NGX_NEXUS_PROXY_BODY_MAX) {
            ngx_log_error(NGX_LOG_ERR, px->request->connection->log, 0,
                          "provider \"%V\" sent an answer over %d bytes",
                          &px->cur->provider->name, NGX_NEXUS_PROXY_BODY_MAX);
            px->broken = 1;
            return NGX_OK;
        }

        return nx_buf_append(&px->body, p, n) == 0 ? NGX_OK : NGX_ERROR;
    }

    rc = nx_stream_feed(&px->framer, (const char *) p, n,
                        ngx_nexus_proxy_event, px);

    if (rc == NX_STREAM_NOMEM) {
        return NGX_ERROR;
    }

    if (rc != NX_STREAM_OK) {
        ngx_log_error(NGX_LOG_ERR, px->request->connection->log, 0,
                      "provider \"%V\" sent a malformed stream",
                      &px->cur->provider->name);
        px->broken = 1;
    }

    return NGX_OK;
}


static int
ngx_nexus_proxy_event(void *ud, const char *event, size_t event_len,
    const char *data, size_t len)
{
    ngx_nexus_proxy_t *px = ud;

    if (px->st.done) {
        /* nothing may follow the end of a stream */
        return 0;
    }

    if (nx_llm_stream_event(&px->st, event, event_len, data, len, &px->out)
        != 0)
    {
        return -1;
    }

    return 0;
}


/* what the stream produced so far, to the client, flushed */

static ngx_int_t
ngx_nexus_proxy_emit(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_buf_t            *b;
    ngx_chain_t          *cl, **ll;
    ngx_http_upstream_t  *u;

    if (px->out.len == 0) {
        return NGX_OK;
    }

    u = r->upstream;

    for (cl = u->out_bufs, ll = &u->out_bufs; cl; cl = cl->next) {
        ll = &cl->next;
    }

    cl = ngx_chain_get_free_buf(r->pool, &u->free_bufs);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;

    /* reuse a buffer the client has taken, when it is large enough */
    if (b->start == NULL || (size_t) (b->end - b->start) < px->out.len) {
        b->start = ngx_palloc(r->pool, ngx_max(px->out.len, 4096));
        if (b->start == NULL) {
            return NGX_ERROR;
        }

        b->end = b->start + ngx_max(px->out.len, 4096);
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->pos, px->out.data, px->out.len);
    b->temporary = 1;
    b->flush = 1;
    b->tag = u->output.tag;

    *ll = cl;

    if (!px->has_ttft) {
        px->has_ttft = 1;
        px->ttft = ngx_current_msec - px->start;
    }

    nx_buf_reset(&px->out);

    return NGX_OK;
}


static void
ngx_nexus_proxy_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_buf_t            *b;
    ngx_chain_t           cl;
    ngx_nexus_proxy_t    *px;

    px = ngx_nexus_proxy_get(r);
    if (px == NULL) {
        return;
    }

    if (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST || r->connection->error) {
        px->client_closed = 1;
        px->outcome = "client_closed";
        return;
    }

    if (!px->ours) {
        /* no answer to pass on: the header filter writes the error */
        return;
    }

    if (px->mode == NGX_NEXUS_PROXY_STREAM) {

        if (!px->broken) {
            (void) nx_stream_finish(&px->framer, ngx_nexus_proxy_event, px);
        }

        if (px->st.done) {
            return;
        }

        /* never a clean-looking end to a stream that was cut */
        px->outcome = "upstream_truncated";
        px->error_code = px->broken ? "upstream_malformed"
                                    : "upstream_truncated";

        if (nx_llm_stream_error(&px->st, px->error_code,
                                px->broken
                                ? "the provider sent a malformed stream"
                                : "the provider ended the stream early",
                                &px->out)
            != 0)
        {
            return;
        }

        b = ngx_nexus_proxy_buf(r, (u_char *) px->out.data, px->out.len);
        nx_buf_reset(&px->out);

        if (b == NULL) {
            return;
        }

        cl.buf = b;
        cl.next = NULL;

        (void) ngx_http_output_filter(r, &cl);

        return;
    }

    if (px->held && !px->released) {
        (void) ngx_nexus_proxy_release(r, px);
    }
}


/* the held answer, complete: its header, then the translated body */

static ngx_int_t
ngx_nexus_proxy_release(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_uint_t   status;
    ngx_chain_t  cl;

    if (ngx_nexus_proxy_final_body(px, &status) != NGX_OK) {
        return NGX_ERROR;
    }

    px->released = 1;

    ngx_nexus_proxy_json_header(r, status, px->out.len);

    if (ngx_nexus_proxy_headers(r, px) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        nx_buf_reset(&px->out);
        return rc;
    }

    b = ngx_nexus_proxy_buf(r, (u_char *) px->out.data, px->out.len);
    nx_buf_reset(&px->out);

    if (b == NULL) {
        return NGX_ERROR;
    }

    cl.buf = b;
    cl.next = NULL;

    return ngx_http_output_filter(r, &cl);
}


/* px->out: the client's body for a held answer; *status its status */

static ngx_int_t
ngx_nexus_proxy_final_body(ngx_nexus_proxy_t *px, ngx_uint_t *status)
{
    ngx_uint_t       type;
    nx_llm_usage_t   usage;
    nx_llm_stream_t  st;

    type = px->cur->provider->type;

    nx_buf_reset(&px->out);

    if (px->mode == NGX_NEXUS_PROXY_ERROR) {
        *status = px->status.code;
        px->outcome = "error";
        px->error_code = "upstream_error";

        return nx_llm_translate_error(type, px->status.code, px->body.data,
                                      px->body.len, &px->out)
               == 0 ? NGX_OK : NGX_ERROR;
    }

    if (!px->ended || px->broken) {
        goto bad;
    }

    if (px->kind == NX_LLM_OLLAMA_CHAT || px->kind == NX_LLM_OLLAMA_GENERATE) {

        /* the native answer is one object, like a stream's last line */
        nx_llm_stream_init(&st, type, px->kind, (const char *) px->req.model,
                           "", px->created, 0);

        if (nx_llm_stream_event(&st, "", 0, px->body.data, px->body.len,
                                &px->out)
            != 0)
        {
            goto bad;
        }

        px->st.usage = st.usage;
        *status = NGX_HTTP_OK;
        return NGX_OK;
    }

    ngx_memzero(&usage, sizeof(nx_llm_usage_t));

    if (nx_llm_translate_response(type, px->kind, px->body.data,
                                  px->body.len, (const char *) px->req.model,
                                  (const char *) px->id, px->created,
                                  &px->out, &usage)
        != 0)
    {
        goto bad;
    }

    px->st.usage = usage;
    *status = NGX_HTTP_OK;

    return NGX_OK;

bad:

    nx_buf_reset(&px->out);

    *status = NGX_HTTP_BAD_GATEWAY;
    px->outcome = "upstream_truncated";
    px->error_code = px->broken ? "upstream_malformed" : "upstream_truncated";

    return nx_buf_append_str(&px->out,
                             "{\"error\":{\"message\":\"the provider sent an "
                             "incomplete or malformed answer\",\"type\":"
                             "\"upstream_error\",\"param\":null,\"code\":"
                             "\"upstream_error\"}}")
           == 0 ? NGX_OK : NGX_ERROR;
}


/*
 * x-nexus-provider, x-nexus-attempt and x-nexus-latency-ms; and the token
 * budget's headers
 */

static ngx_int_t
ngx_nexus_proxy_headers(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    u_char  *p;

    if (px->cur
        && ngx_nexus_add_header(r, "x-nexus-provider",
                                (char *) px->cur->provider->name.data)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, 2 * NGX_INT_T_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf(p, "%ui%Z%M%Z", px->attempts,
                       ngx_current_msec - px->start);

    if (ngx_nexus_add_header(r, "x-nexus-attempt", (char *) p) != NGX_OK
        || ngx_nexus_add_header(r, "x-nexus-latency-ms",
                                (char *) p + ngx_strlen(p) + 1)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_budget_headers(r, px);
}


/*
 * An error nginx raised for a gateway request, instead of an answer from
 * a provider: no provider could be reached, every breaker is open, a
 * timeout, a body too large.  The client gets OpenAI's error shape.
 */

static ngx_int_t
ngx_nexus_proxy_replace(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    u_char      *p;
    ngx_uint_t   status;
    const char  *code, *type, *message;

    status = r->headers_out.status;
    type = "upstream_error";

    switch (status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "request_too_large";
        type = "invalid_request_error";
        message = "the request body is too large";
        break;

    case NGX_HTTP_BAD_REQUEST:
        code = "invalid_request";
        type = "invalid_request_error";
        message = "the request is malformed";
        break;

    case NGX_HTTP_GATEWAY_TIME_OUT:
        code = "upstream_timeout";
        message = "the provider did not answer in time";
        break;

    default:
        if (px->started && px->attempts == 0 && px->retry_ms) {
            status = NGX_HTTP_SERVICE_UNAVAILABLE;
            code = "UPSTREAM_UNAVAILABLE";
            message = "every provider for this model is unavailable";
            break;
        }

        if (status >= 500) {
            status = NGX_HTTP_BAD_GATEWAY;
            code = "upstream_error";
            message = "no provider could answer";
            break;
        }

        code = "request_error";
        type = "invalid_request_error";
        message = "the request cannot be served";
        break;
    }

    px->error_code = code;
    px->outcome = "error";

    if (ngx_nexus_proxy_error_json(r->pool, message, type, code, &px->reply)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    px->replace = 1;

    ngx_nexus_proxy_json_header(r, status, px->reply.len);

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_sprintf(p, "%M%Z", (px->retry_ms + 999) / 1000);

        if (ngx_nexus_add_header(r, "Retry-After", (char *) p) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_nexus_proxy_headers(r, px);
}


static ngx_int_t
ngx_nexus_proxy_header_filter(ngx_http_request_t *r)
{
    ngx_nexus_proxy_t  *px;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    px = ngx_nexus_proxy_get(r);

    if (px == NULL || px->released || px->sent_own) {
        return ngx_http_next_header_filter(r);
    }

    if (!px->ours || px->mode == NGX_NEXUS_PROXY_NONE) {
        if (ngx_nexus_proxy_replace(r, px) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (px->mode == NGX_NEXUS_PROXY_STREAM) {
        if (px->kind == NX_LLM_OLLAMA_CHAT
            || px->kind == NX_LLM_OLLAMA_GENERATE)
        {
            ngx_str_set(&r->headers_out.content_type,
                        "application/x-ndjson");
        } else {
            ngx_str_set(&r->headers_out.content_type, "text/event-stream");
        }

        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;
        r->headers_out.content_length_n = -1;

        if (ngx_nexus_add_header(r, "Cache-Control", "no-cache") != NGX_OK
            || ngx_nexus_proxy_headers(r, px) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    /* a whole body or an error: held until it is complete */
    px->held = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_proxy_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t          *b;
    ngx_uint_t          last;
    ngx_chain_t        *cl, out;
    ngx_nexus_proxy_t  *px;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    px = ngx_nexus_proxy_get(r);

    if (px == NULL || px->sent_own) {
        return ngx_http_next_body_filter(r, in);
    }

    if (px->replace || (px->held && !px->released)) {

        /* nginx's own body, or the held one, is not what the client gets */
        last = 0;

        for (cl = in; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                last = 1;
            }

            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;
        }

        if (!px->replace || !last || px->reply.len == 0) {
            return NGX_OK;
        }

        b = ngx_nexus_proxy_buf(r, px->reply.data, px->reply.len);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last_buf = 1;
        px->reply.len = 0;

        out.buf = b;
        out.next = NULL;

        px->bytes_out += ngx_buf_size(b);

        return ngx_http_next_body_filter(r, &out);
    }

    for (cl = in; cl; cl = cl->next) {
        px->bytes_out += ngx_buf_size(cl->buf);
    }

    return ngx_http_next_body_filter(r, in);
}


/* the response header of a JSON answer of len bytes */

static void
ngx_nexus_proxy_json_header(ngx_http_request_t *r, ngx_uint_t status,
    size_t len)
{
    r->headers_out.status = status;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;
}


/* OpenAI's error shape; message, type and code need no escaping */

ngx_int_t
ngx_nexus_proxy_error_json(ngx_pool_t *pool, const char *message,
    const char *type, const char *code, ngx_str_t *out)
{
    u_char  *p;
    size_t   len;

    len = sizeof("{\"error\":{\"message\":\"\",\"type\":\"\",\"param\":null,"
                 "\"code\":\"\"}}") - 1
          + ngx_strlen(message) + ngx_strlen(type) + ngx_strlen(code);

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->data, "{\"error\":{\"message\":\"%s\",\"type\":"
                    "\"%s\",\"param\":null,\"code\":\"%s\"}}",
                    message, type, code);

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_buf_t *
ngx_nexus_proxy_buf(ngx_http_request_t *r, u_char *p, size_t len)
{
    ngx_buf_t  *b;

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        return NULL;
    }

    b->last = ngx_cpymem(b->pos, p, len);
    b->flush = 1;

    return b;
}


ngx_int_t
ngx_nexus_proxy_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len)
{
    ngx_int_t           rc;
    ngx_buf_t          *b;
    ngx_chain_t         out;
    ngx_nexus_proxy_t  *px;

    px = ngx_nexus_proxy_get(r);
    if (px) {
        px->sent_own = 1;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_nexus_proxy_buf(r, json, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* the end of the request: its usage event and metrics, exactly once */

static void
ngx_nexus_proxy_cleanup(void *data)
{
    ngx_nexus_proxy_t *px = data;

    ngx_nexus_proxy_account(px->request, px);

    if (px->parsed) {
        nx_llm_req_free(&px->req);
    }

    nx_stream_free(&px->framer);
    nx_buf_free(&px->out);
    nx_buf_free(&px->body);
}


static void
ngx_nexus_proxy_account(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_str_t                 rid;
    ngx_time_t               *tp;
    ngx_nexus_ctx_t          *ctx;
    ngx_nexus_usage_t         ev;
    ngx_nexus_metrics_req_t   m;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    if (ctx == NULL || !ctx->authenticated) {
        return;
    }

    ngx_memzero(&ev, sizeof(ngx_nexus_usage_t));

    if (ngx_nexus_request_id(r, &rid) == NGX_OK) {
        ev.request_id = rid;
    }

    ev.tenant_id = ctx->principal.tenant_id;
    ev.key_id = ctx->principal.key_id;
    ev.key_prefix = ctx->principal.prefix;
    ev.endpoint = px->endpoint;
    ev.model_requested = px->model;

    if (px->cur) {
        ev.model_served = px->cur->served;
        ev.provider = px->cur->provider->name;
    }

    ev.attempts = px->attempts;
    ev.stream = px->parsed && px->req.stream;

    if (px->client_closed || r->connection->error) {
        ev.status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
        px->outcome = "client_closed";

    } else {
        ev.status = r->headers_out.status;
    }

    if (ev.status >= 400 && ngx_strcmp(px->outcome, "ok") == 0) {
        px->outcome = "error";
    }

    ev.outcome.data = (u_char *) px->outcome;
    ev.outcome.len = ngx_strlen(px->outcome);

    if (px->error_code) {
        ev.error_code.data = (u_char *) px->error_code;
        ev.error_code.len = ngx_strlen(px->error_code);
    }

    if (px->st.usage.present) {
        ev.prompt_tokens = px->st.usage.prompt;
        ev.completion_tokens = px->st.usage.completion;
        ev.total_tokens = px->st.usage.total;

    } else if (px->parsed && px->attempts) {
        /* the provider said nothing (a cut stream, a disconnect) */
        ev.estimated = 1;
        ev.prompt_tokens = px->req.prompt_estimate;
        ev.completion_tokens = px->st.completion_bytes
                               ? nx_llm_estimate_tokens(
                                     (size_t) px->st.completion_bytes)
                               : 0;
        ev.total_tokens = ev.prompt_tokens + ev.completion_tokens;
    }

    /* the tokens the usage event records, exactly once */
    ngx_nexus_budget_settle(px, ev.prompt_tokens, ev.completion_tokens);

    ev.latency_ms = ngx_current_msec - px->start;
    /* 0 means "no first token": a token within the first ms counts 1 */
    ev.ttft_ms = px->has_ttft ? ngx_max(px->ttft, 1) : 0;
    ev.bytes_in = r->request_length;
    ev.bytes_out = px->bytes_out;

    tp = ngx_timeofday();
    ev.created_ms = (int64_t) tp->sec * 1000 + tp->msec;

    ngx_nexus_usage_emit(&ev);

    ngx_memzero(&m, sizeof(ngx_nexus_metrics_req_t));

    m.tenant = ctx->principal.tenant;
    m.model = px->model;
    m.provider = ev.provider;
    m.status = ev.status;
    m.duration = ev.latency_ms;
    m.ttft = ev.ttft_ms;
    m.has_ttft = px->has_ttft;
    m.prompt_tokens = ev.prompt_tokens;
    m.completion_tokens = ev.completion_tokens;

    ngx_nexus_metrics_request(&m);
}
