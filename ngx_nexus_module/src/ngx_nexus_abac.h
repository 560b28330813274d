
/*
 * Copyright (C) Nexus authors
 *
 * ABAC in the module: each worker's compiled policy sets (one per tenant,
 * platform-wide policies included), their evaluation, the admin API of
 * policies and document ACLs, and the document decision order.
 */


#ifndef _NGX_NEXUS_ABAC_H_INCLUDED_
#define _NGX_NEXUS_ABAC_H_INCLUDED_


#include "ngx_nexus_module.h"

#include <nx_policy.h>


#define NGX_NEXUS_ABAC_DENY         0
#define NGX_NEXUS_ABAC_ALLOW        1

/* the document permissions, in the order of NGX_NEXUS_ACL_* */
#define NGX_NEXUS_ACL_READ          0
#define NGX_NEXUS_ACL_WRITE         1
#define NGX_NEXUS_ACL_DELETE        2
#define NGX_NEXUS_ACL_SHARE         3
#define NGX_NEXUS_ACL_OWNER         4

/* the step of the decision order that decided */
#define NGX_NEXUS_ACL_STEP_TENANT   0
#define NGX_NEXUS_ACL_STEP_KILL     1
#define NGX_NEXUS_ACL_STEP_RBAC     2
#define NGX_NEXUS_ACL_STEP_ACL      3
#define NGX_NEXUS_ACL_STEP_ABAC     4
#define NGX_NEXUS_ACL_STEP_DEFAULT  5


typedef struct ngx_nexus_abac_set_s  ngx_nexus_abac_set_t;


typedef struct {
    ngx_uint_t                  effect;     /* NGX_NEXUS_ABAC_* */
    ngx_str_t                   policy;     /* empty: no rule applied */
    ngx_str_t                   rule;
    const char                 *error;      /* the evaluation failed */
} ngx_nexus_abac_decision_t;


/*
 * rc NGX_OK with the tenant's set (never NULL), NGX_DECLINED when
 * PostgreSQL could not be asked in time, NGX_ERROR otherwise.  The set is
 * only valid until the handler returns.
 */
typedef void (*ngx_nexus_abac_pt)(ngx_http_request_t *r, void *data,
    ngx_nexus_abac_set_t *set, ngx_int_t rc);


typedef struct {
    ngx_uint_t                  allow;      /* NGX_NEXUS_ABAC_* */
    ngx_uint_t                  step;       /* NGX_NEXUS_ACL_STEP_* */
    ngx_str_t                   policy;     /* the ABAC rule, if one */
    ngx_str_t                   rule;
    int64_t                     grant_id;   /* the ACL grant, if one */
} ngx_nexus_acl_decision_t;

/* rc NGX_OK with a decision, or NGX_DECLINED/NGX_ERROR as above */
typedef void (*ngx_nexus_acl_pt)(ngx_http_request_t *r,
    ngx_nexus_acl_decision_t *d, ngx_int_t rc);

typedef void (*ngx_nexus_acl_grant_pt)(ngx_http_request_t *r,
    int64_t grant_id, ngx_int_t rc);


/* configuration */
ngx_int_t ngx_nexus_abac_init(ngx_conf_t *cf);
ngx_int_t ngx_nexus_authz_admin_init(ngx_conf_t *cf);
ngx_int_t ngx_nexus_acl_init(ngx_conf_t *cf);

/* NOTIFY 'a:<tenant id>' and the listener's state (ngx_nexus_revoke.c) */
void ngx_nexus_abac_changed(ngx_cycle_t *cycle, int64_t tenant_id);
void ngx_nexus_abac_listening(ngx_cycle_t *cycle, ngx_uint_t on);

/*
 * The compiled set of a tenant.  NGX_OK: *set is the cached one, use it
 * at once.  NGX_AGAIN: the set is being loaded and handler will be called
 * (the request waits in ctx->pgq).  NGX_ERROR: nothing was sent.
 */
ngx_int_t ngx_nexus_abac_get(ngx_http_request_t *r, int64_t tenant_id,
    ngx_nexus_abac_pt handler, void *data, ngx_nexus_abac_set_t **set);

/*
 * Evaluates a set: NGX_OK when a rule decided (d says which and how),
 * NGX_DECLINED when none applies (the caller's default decides),
 * NGX_ERROR when the evaluation failed (d->error; deny).
 */
ngx_int_t ngx_nexus_abac_decide(ngx_nexus_abac_set_t *set, ngx_str_t *rtype,
    ngx_str_t *action, nx_policy_ctx_t *pctx,
    ngx_nexus_abac_decision_t *d);

/*
 * The attributes of r's principal and request (principal.tenant,
 * principal.key_prefix, principal.role, principal.scopes, request.time,
 * request.ip); returns how many of attrs (at least 8) were filled.
 */
size_t ngx_nexus_abac_attrs(ngx_http_request_t *r, nx_policy_attr_t *attrs);

/*
 * The gateway's check once the model resolved: NGX_DECLINED allowed (go
 * on), NGX_DONE when the tenant's set is being loaded (then done runs
 * later with NGX_DECLINED, or with the rc of the answer sent), anything
 * else the rc of the answer sent (403 POLICY_DENIED, 503) to finalize the
 * request with.
 */
typedef void (*ngx_nexus_abac_done_pt)(ngx_http_request_t *r, ngx_int_t rc);

ngx_int_t ngx_nexus_abac_gateway(ngx_http_request_t *r, ngx_str_t *model,
    const char *action, ngx_uint_t stream, int64_t max_tokens,
    ngx_nexus_abac_done_pt done);

/* /v1/admin/authz/..., rest after "admin/" */
ngx_int_t ngx_nexus_authz_admin(ngx_http_request_t *r, ngx_str_t *rest);

/* nexus_acl_test_hook's routes of nexus_api; NGX_DECLINED: not one */
ngx_int_t ngx_nexus_authz_hook(ngx_http_request_t *r, ngx_str_t *rest);

/*
 * The decision order for a document action of r's principal: tenant
 * boundary, kill switch (kill.documents), RBAC, document ACL, ABAC
 * (resource_type "document"), default.  Asynchronous: NGX_AGAIN and
 * handler runs later, NGX_DECLINED when PostgreSQL cannot be reached now,
 * or NGX_ERROR.
 */
ngx_int_t ngx_nexus_acl_check(ngx_http_request_t *r, ngx_str_t *document_id,
    ngx_uint_t permission, ngx_nexus_acl_pt handler);

/*
 * the owner grant of a new document to r's key; NGX_AGAIN, NGX_DECLINED or
 * NGX_ERROR as above
 */
ngx_int_t ngx_nexus_acl_grant_owner(ngx_http_request_t *r,
    ngx_str_t *document_id, ngx_nexus_acl_grant_pt handler);

ngx_int_t ngx_nexus_acl_permission(ngx_str_t *name);
extern ngx_str_t  ngx_nexus_acl_permissions[];
extern ngx_str_t  ngx_nexus_acl_steps[];


#endif /* _NGX_NEXUS_ABAC_H_INCLUDED_ */
