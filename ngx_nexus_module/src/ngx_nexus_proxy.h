/*
 * Copyright (C) Nexus authors
 *
 * The gateway's proxy: one client request, sent through nginx's upstream
 * machinery to a list of candidate providers in turn, its answer
 * translated into OpenAI's shapes as it streams back.
 */


#ifndef _NGX_NEXUS_PROXY_H_INCLUDED_
#define _NGX_NEXUS_PROXY_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_provider.h"

#include <nx_stream.h>


#define NGX_NEXUS_PROXY_NONE        0   /* no upstream answer yet */
#define NGX_NEXUS_PROXY_STREAM      1   /* 2xx stream: translated live */
#define NGX_NEXUS_PROXY_BODY        2   /* 2xx body: held, translated */
#define NGX_NEXUS_PROXY_ERROR       3   /* non-2xx: held, translated */

/* the most a held (non-stream) answer may weigh */
#define NGX_NEXUS_PROXY_BODY_MAX    (16 * 1024 * 1024)


typedef struct {
    ngx_nexus_provider_t           *provider;
    ngx_str_t                       served;     /* model name it gets */
    ngx_str_t                       body;       /* the request body for
                                                   its type */
} ngx_nexus_candidate_t;


typedef struct {
    ngx_http_request_t             *request;

    ngx_uint_t                      kind;       /* NX_LLM_CHAT ... */
    ngx_str_t                       endpoint;   /* for usage events */
    nx_llm_req_t                    req;
    unsigned                        parsed:1;
    ngx_str_t                       client_body;    /* as parsed (after
                                                   redaction) */
    ngx_str_t                       model;      /* as requested */

    ngx_nexus_candidate_t          *cands;
    ngx_uint_t                      ncands;
    ngx_uint_t                      next;       /* next candidate */
    ngx_nexus_candidate_t          *cur;        /* this attempt's */
    ngx_uint_t                      attempts;
    ngx_uint_t                      max_attempts;
    ngx_uint_t                      att_status; /* HTTP status, or 0 */
    ngx_msec_t                      retry_ms;   /* all breakers open */

    void                           *inner_data;
    ngx_event_get_peer_pt           inner_get;
    ngx_event_free_peer_pt          inner_free;

    ngx_msec_t                      start;
    ngx_msec_t                      ttft;
    int64_t                         created;    /* unix time */
    u_char                          id[40];     /* chatcmpl-... */

    /* the upstream answer */
    ngx_http_status_t               status;
    ngx_uint_t                      mode;
    off_t                           length;     /* body left, or -1 */
    ngx_http_chunked_t              chunked;
    nx_stream_t                     framer;
    nx_llm_stream_t                 st;
    nx_buf_t                        out;
    nx_buf_t                        body;
    ngx_str_t                       reply;      /* a replaced answer */
    off_t                           bytes_out;

    void                           *budget;     /* ngx_nexus_budget_t */

    const char                     *outcome;    /* for usage events */
    const char                     *error_code;

    unsigned                        started:1;  /* upstream begun */
    unsigned                        ours:1;     /* header from upstream */
    unsigned                        chunked_body:1;
    unsigned                        conn_close:1;
    unsigned                        ended:1;    /* body framing done */
    unsigned                        held:1;
    unsigned                        released:1;
    unsigned                        replace:1;
    unsigned                        has_ttft:1;
    unsigned                        client_closed:1;
    unsigned                        broken:1;   /* malformed upstream */
    unsigned                        sent_own:1; /* answered here */
} ngx_nexus_proxy_t;


ngx_int_t ngx_nexus_proxy_init(ngx_conf_t *cf);
ngx_http_upstream_srv_conf_t *ngx_nexus_proxy_upstream(void);

ngx_nexus_proxy_t *ngx_nexus_proxy_create(ngx_http_request_t *r,
    ngx_uint_t kind, const char *endpoint);
ngx_nexus_proxy_t *ngx_nexus_proxy_get(ngx_http_request_t *r);

/* sends the request to px->cands; returns what a content handler does */
void ngx_nexus_proxy_start(ngx_http_request_t *r, ngx_nexus_proxy_t *px);

ngx_int_t ngx_nexus_proxy_error_json(ngx_pool_t *pool, const char *message,
    const char *type, const char *code, ngx_str_t *out);

/*
 * Sends the request to model instead, its output capped at max_tokens
 * (-1: as asked): a cost budget's degrade mode.  NGX_OK, NGX_DECLINED
 * when no provider serves model for this key, NGX_BUSY when none of them
 * can take the request, NGX_ERROR.  (ngx_nexus_gateway.c)
 */
ngx_int_t ngx_nexus_gateway_retarget(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, ngx_str_t *model, int64_t max_tokens);

/*
 * The tenant's guardrails (ngx_nexus_guard.c): on the raw body before it
 * is parsed (its size, personal data, masked in place for redact), then
 * on the parsed request (max_tokens).  NGX_DECLINED to go on, otherwise
 * the rc of a response already sent.
 */
ngx_int_t ngx_nexus_guard_body(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_str_t *body);
ngx_int_t ngx_nexus_guard_tokens(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);

/* an OpenAI-shaped error as the whole response */
ngx_int_t ngx_nexus_proxy_send_json(ngx_http_request_t *r,
    ngx_uint_t status, u_char *json, size_t len);


#endif /* _NGX_NEXUS_PROXY_H_INCLUDED_ */
