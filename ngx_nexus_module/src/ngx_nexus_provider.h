/*
 * Copyright (C) Nexus authors
 *
 * LLM providers (nexus_provider) and what is kept about them: the circuit
 * breaker of each (shared by the workers of a node), the metrics of the
 * requests they serve, and the usage event of every gateway request.
 */


#ifndef _NGX_NEXUS_PROVIDER_H_INCLUDED_
#define _NGX_NEXUS_PROVIDER_H_INCLUDED_


#include "ngx_nexus_module.h"

#include <nx_llm.h>
#include <nx_breaker.h>


typedef struct ngx_nexus_provider_s  ngx_nexus_provider_t;

struct ngx_nexus_provider_s {
    ngx_str_t                       name;
    ngx_uint_t                      index;      /* in nmcf->providers */
    ngx_uint_t                      tls;
    ngx_uint_t                      no_discovery;   /* discovery=off */
    ngx_str_t                       azure_version;  /* azure_api_version= */
    ngx_uint_t                      type;       /* NX_LLM_OPENAI ... */
    ngx_uint_t                      weight;
    ngx_http_upstream_srv_conf_t   *upstream;
    ngx_str_t                       host;       /* Host header */
    ngx_str_t                       key;        /* key_file: a secret */
    ngx_str_t                       fallback_name;
    ngx_nexus_provider_t           *fallback;
    ngx_http_upstream_conf_t        conf;       /* timeouts, buffers */
};


/* nexus_model NAME PROVIDER [model=SERVED] [weight=N]: one target each */
typedef struct {
    ngx_str_t                       name;       /* what clients ask for */
    ngx_str_t                       served;     /* what the provider gets */
    ngx_nexus_provider_t           *provider;
    ngx_uint_t                      weight;
} ngx_nexus_model_t;


char *ngx_nexus_provider_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_nexus_model_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_nexus_providers_init(ngx_conf_t *cf);
ngx_nexus_provider_t *ngx_nexus_provider_by_name(ngx_str_t *name);
ngx_int_t ngx_nexus_param_time(ngx_str_t *value, const char *name,
    ngx_msec_t min, ngx_msec_t *out);


/* outcomes of one upstream attempt, for metrics and the breaker */
#define NGX_NEXUS_ATTEMPT_OK            0
#define NGX_NEXUS_ATTEMPT_ERROR         1   /* connect error, reset */
#define NGX_NEXUS_ATTEMPT_TIMEOUT       2
#define NGX_NEXUS_ATTEMPT_HTTP_5XX      3
#define NGX_NEXUS_ATTEMPT_HTTP_429      4
#define NGX_NEXUS_ATTEMPT_HTTP_4XX      5   /* other 4xx: not a failure */
#define NGX_NEXUS_ATTEMPT_OPEN          6   /* skipped: breaker open */
#define NGX_NEXUS_ATTEMPT_ABORTED       7   /* the client left first:
                                               neither success nor failure */
#define NGX_NEXUS_ATTEMPT_OUTCOMES      8


/*
 * Circuit breakers (ngx_nexus_breaker.c), one per provider in the shared
 * zone.  allow returns NGX_OK, or NGX_BUSY with *retry_ms set when the
 * breaker is open (or half-open with its probe out).  record takes an
 * NGX_NEXUS_ATTEMPT_* outcome.
 */
ngx_int_t ngx_nexus_breaker_allow(ngx_nexus_provider_t *p,
    ngx_msec_t *retry_ms);
void ngx_nexus_breaker_record(ngx_nexus_provider_t *p, ngx_uint_t outcome);


/* Metrics (ngx_nexus_metrics.c), aggregated per node in the shared zone */
typedef struct {
    ngx_str_t                       tenant;
    ngx_str_t                       model;      /* as requested */
    ngx_str_t                       provider;   /* "" when none served */
    ngx_uint_t                      status;     /* HTTP status sent */
    ngx_msec_t                      duration;   /* request start to end */
    ngx_msec_t                      ttft;       /* to first token byte */
    unsigned                        has_ttft:1;
    int64_t                         prompt_tokens;
    int64_t                         completion_tokens;
} ngx_nexus_metrics_req_t;

void ngx_nexus_metrics_request(const ngx_nexus_metrics_req_t *m);
void ngx_nexus_metrics_attempt(ngx_nexus_provider_t *p,
    ngx_uint_t outcome);


/*
 * Usage events (ngx_nexus_usage.c): exactly one per gateway request,
 * batched to PostgreSQL.  emit copies what it needs.
 */
typedef struct {
    ngx_str_t                       request_id;
    int64_t                         tenant_id;
    int64_t                         key_id;
    ngx_str_t                       key_prefix;
    ngx_str_t                       endpoint;   /* chat, embeddings, ... */
    ngx_str_t                       model_requested;
    ngx_str_t                       model_served;
    ngx_str_t                       provider;
    ngx_uint_t                      attempts;
    ngx_uint_t                      status;     /* HTTP status sent */
    ngx_str_t                       outcome;    /* ok, upstream_truncated,
                                                   client_closed, error */
    ngx_str_t                       error_code;
    int64_t                         prompt_tokens;
    int64_t                         completion_tokens;
    int64_t                         total_tokens;
    unsigned                        estimated:1;
    unsigned                        stream:1;
    ngx_msec_t                      latency_ms;
    ngx_msec_t                      ttft_ms;    /* 0: none */
    off_t                           bytes_in;
    off_t                           bytes_out;
    int64_t                         created_ms; /* ms since the epoch */
} ngx_nexus_usage_t;

void ngx_nexus_usage_emit(const ngx_nexus_usage_t *ev);


#endif /* _NGX_NEXUS_PROVIDER_H_INCLUDED_ */
