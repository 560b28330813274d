
/*
 * Copyright (C) Nexus authors
 *
 * The audit log: events, their per-worker batch writer that extends the
 * tenants' HMAC chains (common/nx_audit.h) in PostgreSQL, the periodic
 * signed checkpoints, and GET /v1/audit/events.
 */


#ifndef _NGX_NEXUS_AUDIT_H_INCLUDED_
#define _NGX_NEXUS_AUDIT_H_INCLUDED_


#include "ngx_nexus_module.h"


#define NGX_NEXUS_AUDIT_SUCCESS     "success"
#define NGX_NEXUS_AUDIT_FAILURE     "failure"


typedef struct {
    ngx_str_t                   request_id;
    int64_t                     tenant_id;  /* 0: the platform's chain */
    ngx_str_t                   actor;      /* the key prefix, or empty */
    const char                 *event_type;
    const char                 *outcome;
    ngx_str_t                   metadata;   /* a JSON object; empty: {} */
} ngx_nexus_audit_event_t;


/* configuration time */
char *ngx_nexus_audit_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_nexus_audit_init_main_conf(ngx_conf_t *cf,
    ngx_nexus_main_conf_t *nmcf);
ngx_int_t ngx_nexus_audit_init_statements(ngx_conf_t *cf);

/* process */
ngx_int_t ngx_nexus_audit_init_process(ngx_cycle_t *cycle);
void ngx_nexus_audit_exit_process(ngx_cycle_t *cycle);

/*
 * Queues an event; never blocks and never fails the caller.  The metadata
 * is redacted here (nx_audit_redact()): members named like a secret or a
 * text keep their name and lose their value.  Nothing happens without
 * nexus_audit_key_file.
 */
void ngx_nexus_audit_emit(const ngx_nexus_audit_event_t *ev);

/*
 * The next record of the events a Lua script fired, written as
 * "w1 w2 ...,w1 w2 ...": its first n words into w (missing ones empty),
 * *pos moved past it.  Returns 0 once the list is used up.
 */
ngx_uint_t ngx_nexus_audit_fired(u_char **pos, u_char *last, ngx_str_t *w,
    ngx_uint_t n);

/* whether events are recorded (nexus_audit_key_file), in this worker */
ngx_uint_t ngx_nexus_audit_enabled(void);

/*
 * An event about request r: its request id, its key's prefix as the
 * actor, and metadata {"method":..,"path":..} followed by members (JSON
 * object members without the braces, or NULL).
 */
void ngx_nexus_audit_request(ngx_http_request_t *r, int64_t tenant_id,
    const char *event_type, const char *outcome, const char *members);

/* the same with another actor: a key not authenticated, or none */
void ngx_nexus_audit_request_as(ngx_http_request_t *r, int64_t tenant_id,
    ngx_str_t *actor, const char *event_type, const char *outcome,
    const char *members);

/* the metadata of an event about r, in r's pool (see above) */
ngx_int_t ngx_nexus_audit_meta(ngx_http_request_t *r, const char *members,
    ngx_str_t *meta);

/*
 * rbac.forbidden for a 403 about to be sent to r's principal: code is the
 * error code (FORBIDDEN, SCOPE_MISSING), details its details object or
 * NULL.
 */
void ngx_nexus_audit_forbidden(ngx_http_request_t *r, const char *code,
    const char *details);

/*
 * Events that come in floods, aggregated per worker (ngx_nexus_audit_agg.c):
 * the first of a (tenant, actor, kind) at once with a count of 1, then one
 * a second with the count of those in between; kind is what else tells
 * them apart, members as for ngx_nexus_audit_request().
 */
#define NGX_NEXUS_AUDIT_AGG_AUTH        0   /* auth.access.failure */
#define NGX_NEXUS_AUDIT_AGG_LIMITED     1   /* security.rate_limited */
#define NGX_NEXUS_AUDIT_AGG_DEGRADED    2   /* system.rate_limit.degraded */
#define NGX_NEXUS_AUDIT_AGG_N           3

/* the longest metadata of an aggregated event */
#define NGX_NEXUS_AUDIT_AGG_META        8192

ngx_int_t ngx_nexus_audit_agg_init_process(ngx_cycle_t *cycle);
void ngx_nexus_audit_agg_exit_process(ngx_cycle_t *cycle);

void ngx_nexus_audit_aggregate(ngx_http_request_t *r, ngx_uint_t type,
    int64_t tenant_id, ngx_str_t *actor, const char *kind,
    const char *members);

/*
 * auth.access.failure: reason is one of missing, malformed_header,
 * malformed_key, unknown_key, wrong_secret, revoked, expired,
 * tenant_suspended; prefix the presented key's (empty when it was not
 * well formed), tenant_id its tenant's when the prefix is a known key's,
 * else 0.
 */
void ngx_nexus_audit_auth_failure(ngx_http_request_t *r, int64_t tenant_id,
    ngx_str_t *prefix, const char *reason);

/*
 * auth.access.success: a key authenticated against PostgreSQL (a cache
 * miss), with its role; not aggregated, it is once per cache lifetime.
 */
void ngx_nexus_audit_auth_success(ngx_http_request_t *r, int64_t tenant_id,
    ngx_uint_t role);

/*
 * security.rate_limited for a 429 RATE_LIMITED of r's principal: unit
 * "requests" or "tokens_per_minute", scope "api_key" or "tenant".
 */
void ngx_nexus_audit_throttled(ngx_http_request_t *r, const char *unit,
    const char *scope, const char *route_class);

/* events this worker gave up on since it started, and those waiting */
ngx_uint_t ngx_nexus_audit_dropped(void);
ngx_uint_t ngx_nexus_audit_queued(void);

/* GET /v1/audit/events (ngx_nexus_audit_api.c) */
ngx_int_t ngx_nexus_audit_api_init_statements(ngx_conf_t *cf);
ngx_int_t ngx_nexus_audit_api(ngx_http_request_t *r);


#endif /* _NGX_NEXUS_AUDIT_H_INCLUDED_ */
