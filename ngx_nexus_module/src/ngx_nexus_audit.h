
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
 * An event about request r: its request id, its key's prefix as the
 * actor, and metadata {"method":..,"path":..} followed by members (JSON
 * object members without the braces, or NULL).
 */
/*
 * The next record of the events a Lua script fired, written as
 * "w1 w2 ...,w1 w2 ...": its first n words into w (missing ones empty),
 * *pos moved past it.  Returns 0 once the list is used up.
 */
ngx_uint_t ngx_nexus_audit_fired(u_char **pos, u_char *last, ngx_str_t *w,
    ngx_uint_t n);

void ngx_nexus_audit_request(ngx_http_request_t *r, int64_t tenant_id,
    const char *event_type, const char *outcome, const char *members);

/*
 * rbac.forbidden for a 403 about to be sent to r's principal: code is the
 * error code (FORBIDDEN, SCOPE_MISSING), details its details object or
 * NULL.
 */
void ngx_nexus_audit_forbidden(ngx_http_request_t *r, const char *code,
    const char *details);

/* events this worker gave up on since it started, and those waiting */
ngx_uint_t ngx_nexus_audit_dropped(void);
ngx_uint_t ngx_nexus_audit_queued(void);

/* GET /v1/audit/events (ngx_nexus_audit_api.c) */
ngx_int_t ngx_nexus_audit_api_init_statements(ngx_conf_t *cf);
ngx_int_t ngx_nexus_audit_api(ngx_http_request_t *r);


#endif /* _NGX_NEXUS_AUDIT_H_INCLUDED_ */
