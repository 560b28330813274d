
/*
 * Copyright (C) Nexus authors
 *
 * Document ACLs and the decision order for a document action, as the
 * reference gives it:
 *
 *   1. tenant boundary   a document of another tenant: deny, whoever asks
 *   2. kill switch       kill.documents on: deny
 *   3. RBAC              read needs a reader, write/delete/share an editor
 *   4. document ACL      an unexpired grant of the permission (or owner)
 *                        to the key, its role or its tenant; an admin has
 *                        one only with nexus_acl_admin_bypass
 *   5. ABAC              the tenant's policies for resource type
 *                        "document": a deny rule denies even a grant, an
 *                        allow rule allows without one
 *   6. default           nexus_abac_default (deny)
 *
 * One query answers steps 1 and 4 (grants are not cached: a revocation or
 * an expiry holds from the next check on); the policies come from the
 * worker's compiled sets (ngx_nexus_abac.c).
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_abac.h"

#include <nx_name.h>


typedef struct {
    ngx_http_request_t         *request;
    ngx_str_t                   document;
    ngx_uint_t                  permission;
    int64_t                     grant_id;
    ngx_nexus_acl_pt            handler;
    ngx_nexus_acl_grant_pt      grant_handler;
    ngx_nexus_acl_decision_t    decision;
} ngx_nexus_acl_ctx_t;


static ngx_nexus_acl_ctx_t *ngx_nexus_acl_ctx(ngx_http_request_t *r,
    ngx_str_t *document_id);
static ngx_int_t ngx_nexus_acl_send(ngx_http_request_t *r,
    ngx_nexus_pg_query_t *q);
static void ngx_nexus_acl_loaded(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_acl_policies(ngx_http_request_t *r, void *data,
    ngx_nexus_abac_set_t *set, ngx_int_t rc);
static void ngx_nexus_acl_decide(ngx_nexus_acl_ctx_t *actx,
    ngx_nexus_abac_set_t *set);
static void ngx_nexus_acl_owned(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);


ngx_str_t  ngx_nexus_acl_permissions[] = {
    ngx_string("read"),
    ngx_string("write"),
    ngx_string("delete"),
    ngx_string("share"),
    ngx_string("owner"),
    ngx_null_string
};


ngx_str_t  ngx_nexus_acl_steps[] = {
    ngx_string("tenant_boundary"),
    ngx_string("kill_switch"),
    ngx_string("rbac"),
    ngx_string("document_acl"),
    ngx_string("abac"),
    ngx_string("default")
};


static ngx_str_t  ngx_nexus_acl_document = ngx_string("document");
static ngx_str_t  ngx_nexus_acl_kill = ngx_string("kill.documents");

static ngx_uint_t  ngx_nexus_acl_check_stmt;
static ngx_uint_t  ngx_nexus_acl_owner_stmt;


ngx_int_t
ngx_nexus_acl_init(ngx_conf_t *cf)
{
    /*
     * the tenant of the document (NULL: no grant names it yet), and the
     * first grant that lets this principal act
     */
    if (ngx_nexus_pg_statement(cf, "nexus_acl_check",
            "SELECT (SELECT a.tenant_id FROM document_acl a"
            " WHERE a.document_id = $1 LIMIT 1),"
            " (SELECT a.id FROM document_acl a WHERE a.document_id = $1"
            " AND a.tenant_id = $2::bigint"
            " AND (a.expires_at IS NULL OR a.expires_at > now())"
            " AND a.permission IN ($6, 'owner')"
            " AND ((a.principal_type = 'key' AND a.principal_id = $3)"
            " OR (a.principal_type = 'role' AND a.principal_id = $4)"
            " OR (a.principal_type = 'tenant' AND a.principal_id = $5))"
            " ORDER BY a.id LIMIT 1)",
            6, &ngx_nexus_acl_check_stmt)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a document of another tenant: the trigger raises 42501 */
    return ngx_nexus_pg_statement(cf, "nexus_acl_owner",
               "INSERT INTO document_acl AS a (tenant_id, document_id,"
               " principal_type, principal_id, permission, granted_by)"
               " VALUES ($1::bigint, $2, 'key', $3, 'owner', $3)"
               " ON CONFLICT (document_id, principal_type, principal_id,"
               " permission) DO UPDATE SET expires_at = NULL"
               " RETURNING a.id",
               3, &ngx_nexus_acl_owner_stmt);
}


ngx_int_t
ngx_nexus_acl_permission(ngx_str_t *name)
{
    ngx_int_t  i;

    for (i = 0; ngx_nexus_acl_permissions[i].len; i++) {
        if (ngx_nexus_acl_permissions[i].len == name->len
            && ngx_strncmp(ngx_nexus_acl_permissions[i].data, name->data,
                           name->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


static ngx_nexus_acl_ctx_t *
ngx_nexus_acl_ctx(ngx_http_request_t *r, ngx_str_t *document_id)
{
    ngx_nexus_acl_ctx_t  *actx;

    actx = ngx_pcalloc(r->pool, sizeof(ngx_nexus_acl_ctx_t));
    if (actx == NULL) {
        return NULL;
    }

    actx->request = r;

    /* the caller's string may not outlive the wait */
    actx->document.len = document_id->len;
    actx->document.data = ngx_pstrdup(r->pool, document_id);
    if (actx->document.data == NULL) {
        return NULL;
    }

    return actx;
}


static ngx_int_t
ngx_nexus_acl_send(ngx_http_request_t *r, ngx_nexus_pg_query_t *q)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        ngx_nexus_pg_free(q);
        return NGX_ERROR;
    }

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        /* PostgreSQL cannot be reached now */
        return NGX_DECLINED;
    }

    ctx->pgq = q;
    ngx_nexus_wait(r);

    return NGX_AGAIN;
}


ngx_int_t
ngx_nexus_acl_check(ngx_http_request_t *r, ngx_str_t *document_id,
    ngx_uint_t permission, ngx_nexus_acl_pt handler)
{
    const char            *role;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_acl_ctx_t   *actx;
    ngx_nexus_pg_query_t  *q;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx == NULL || !ctx->authenticated
        || permission > NGX_NEXUS_ACL_SHARE)
    {
        return NGX_ERROR;
    }

    actx = ngx_nexus_acl_ctx(r, document_id);
    if (actx == NULL) {
        return NGX_ERROR;
    }

    actx->permission = permission;
    actx->handler = handler;

    role = nx_role_name((int) ctx->principal.role);

    q = ngx_nexus_pg_query(ngx_nexus_acl_check_stmt,
                           document_id->len + NGX_INT64_LEN
                           + ctx->principal.prefix.len
                           + ngx_strlen(role) + ctx->principal.tenant.len
                           + ngx_nexus_acl_permissions[permission].len + 6);
    if (q == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_nexus_pg_param(q, document_id->data, document_id->len);
    (void) ngx_nexus_pg_param_int(q, ctx->principal.tenant_id);
    (void) ngx_nexus_pg_param(q, ctx->principal.prefix.data,
                              ctx->principal.prefix.len);
    (void) ngx_nexus_pg_param(q, (u_char *) role, ngx_strlen(role));
    (void) ngx_nexus_pg_param(q, ctx->principal.tenant.data,
                              ctx->principal.tenant.len);
    (void) ngx_nexus_pg_param(q, ngx_nexus_acl_permissions[permission].data,
                              ngx_nexus_acl_permissions[permission].len);

    q->handler = ngx_nexus_acl_loaded;
    q->data = actx;

    return ngx_nexus_acl_send(r, q);
}


static void
ngx_nexus_acl_loaded(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    int64_t                    tenant_id;
    ngx_int_t                  arc;
    ngx_connection_t          *c;
    ngx_nexus_ctx_t           *ctx;
    ngx_http_request_t        *r;
    ngx_nexus_acl_ctx_t       *actx;
    ngx_nexus_abac_set_t      *set;
    ngx_nexus_loc_conf_t      *nlcf;
    ngx_nexus_acl_decision_t  *d;

    actx = q->data;
    r = actx->request;
    c = r->connection;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ctx->pgq = NULL;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);
    d = &actx->decision;

    if (rc != NGX_OK || PQntuples(res) != 1 || PQnfields(res) != 2) {
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "nexus: document ACL query failed: %s",
                          PQresultErrorMessage(res));
        }

        actx->handler(r, NULL, rc == NGX_DECLINED ? NGX_DECLINED : NGX_ERROR);
        goto done;
    }

    d->allow = NGX_NEXUS_ABAC_DENY;

    /* 1. the tenant boundary, which nothing bypasses */

    if (!PQgetisnull(res, 0, 0)) {
        tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                              PQgetlength(res, 0, 0));

        if (tenant_id != ctx->principal.tenant_id) {
            d->step = NGX_NEXUS_ACL_STEP_TENANT;
            actx->handler(r, d, NGX_OK);
            goto done;
        }
    }

    /* 2. the kill switch */

    if (ngx_nexus_kill_active(r, &ngx_nexus_acl_kill)) {
        d->step = NGX_NEXUS_ACL_STEP_KILL;
        actx->handler(r, d, NGX_OK);
        goto done;
    }

    /* 3. the role: reading is for everyone, changing for editors */

    if (actx->permission != NGX_NEXUS_ACL_READ
        && ctx->principal.role < NGX_NEXUS_ROLE_EDITOR)
    {
        d->step = NGX_NEXUS_ACL_STEP_RBAC;
        actx->handler(r, d, NGX_OK);
        goto done;
    }

    /* 4. a grant, remembered until ABAC had its say */

    if (!PQgetisnull(res, 0, 1)) {
        actx->grant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                   PQgetlength(res, 0, 1));

    } else if (nlcf->acl_admin_bypass
               && ctx->principal.role == NGX_NEXUS_ROLE_ADMIN)
    {
        actx->grant_id = -1;
    }

    /* 5. the policies */

    arc = ngx_nexus_abac_get(r, ctx->principal.tenant_id,
                             ngx_nexus_acl_policies, actx, &set);

    if (arc == NGX_OK) {
        ngx_nexus_acl_decide(actx, set);

    } else if (arc != NGX_AGAIN) {
        actx->handler(r, NULL, NGX_ERROR);
    }

done:

    ngx_http_run_posted_requests(c);
}


static void
ngx_nexus_acl_policies(ngx_http_request_t *r, void *data,
    ngx_nexus_abac_set_t *set, ngx_int_t rc)
{
    ngx_nexus_acl_ctx_t *actx = data;

    if (rc != NGX_OK) {
        actx->handler(r, NULL, rc);
        return;
    }

    ngx_nexus_acl_decide(actx, set);
}


static void
ngx_nexus_acl_decide(ngx_nexus_acl_ctx_t *actx, ngx_nexus_abac_set_t *set)
{
    size_t                      n;
    ngx_int_t                   rc;
    nx_policy_ctx_t             pctx;
    nx_policy_attr_t            attrs[16];
    ngx_http_request_t         *r;
    ngx_nexus_loc_conf_t       *nlcf;
    ngx_nexus_abac_decision_t   ad;
    ngx_nexus_acl_decision_t   *d;

    r = actx->request;
    d = &actx->decision;
    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    n = ngx_nexus_abac_attrs(r, attrs);

    attrs[n].name = "resource.id";
    attrs[n].len = sizeof("resource.id") - 1;
    attrs[n].value.type = NX_POLICY_STRING;
    attrs[n].value.u.str.data = (const char *) actx->document.data;
    attrs[n].value.u.str.len = actx->document.len;
    n++;

    attrs[n].name = "resource.acl_granted";
    attrs[n].len = sizeof("resource.acl_granted") - 1;
    attrs[n].value.type = NX_POLICY_BOOL;
    attrs[n].value.u.boolean = actx->grant_id ? 1 : 0;
    n++;

    pctx.attrs = attrs;
    pctx.nattrs = n;
    pctx.lookup = NULL;
    pctx.data = NULL;

    rc = ngx_nexus_abac_decide(set, &ngx_nexus_acl_document,
                               &ngx_nexus_acl_permissions[actx->permission],
                               &pctx, &ad);

    d->policy = ad.policy;
    d->rule = ad.rule;

    if (rc == NGX_ERROR || (rc == NGX_OK && ad.effect == NGX_NEXUS_ABAC_DENY))
    {
        /* deny first: a grant does not outweigh a deny rule */
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "nexus: policy evaluation failed, denied: %s",
                          ad.error);
        }

        d->step = NGX_NEXUS_ACL_STEP_ABAC;
        d->allow = NGX_NEXUS_ABAC_DENY;

    } else if (actx->grant_id) {
        d->step = NGX_NEXUS_ACL_STEP_ACL;
        d->allow = NGX_NEXUS_ABAC_ALLOW;
        d->grant_id = actx->grant_id > 0 ? actx->grant_id : 0;
        ngx_str_null(&d->policy);
        ngx_str_null(&d->rule);

    } else if (rc == NGX_OK) {
        d->step = NGX_NEXUS_ACL_STEP_ABAC;
        d->allow = NGX_NEXUS_ABAC_ALLOW;

    } else {
        d->step = NGX_NEXUS_ACL_STEP_DEFAULT;
        d->allow = nlcf->abac_default ? NGX_NEXUS_ABAC_ALLOW
                                      : NGX_NEXUS_ABAC_DENY;
    }

    actx->handler(r, d, NGX_OK);
}


/*
 * The owner grant a document's creator receives: to r's key, in r's
 * tenant.  handler: NGX_OK with the grant's id, NGX_ABORT when the
 * document is another tenant's, NGX_DECLINED or NGX_ERROR.
 */

ngx_int_t
ngx_nexus_acl_grant_owner(ngx_http_request_t *r, ngx_str_t *document_id,
    ngx_nexus_acl_grant_pt handler)
{
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_acl_ctx_t   *actx;
    ngx_nexus_pg_query_t  *q;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx == NULL || !ctx->authenticated) {
        return NGX_ERROR;
    }

    actx = ngx_nexus_acl_ctx(r, document_id);
    if (actx == NULL) {
        return NGX_ERROR;
    }

    actx->grant_handler = handler;

    q = ngx_nexus_pg_query(ngx_nexus_acl_owner_stmt,
                           NGX_INT64_LEN + document_id->len
                           + ctx->principal.prefix.len + 3);
    if (q == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_nexus_pg_param_int(q, ctx->principal.tenant_id);
    (void) ngx_nexus_pg_param(q, document_id->data, document_id->len);
    (void) ngx_nexus_pg_param(q, ctx->principal.prefix.data,
                              ctx->principal.prefix.len);

    q->handler = ngx_nexus_acl_owned;
    q->data = actx;

    return ngx_nexus_acl_send(r, q);
}


static void
ngx_nexus_acl_owned(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    int64_t               id;
    ngx_connection_t     *c;
    ngx_nexus_ctx_t      *ctx;
    ngx_http_request_t   *r;
    ngx_nexus_acl_ctx_t  *actx;

    actx = q->data;
    r = actx->request;
    c = r->connection;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ctx->pgq = NULL;

    id = 0;

    if (rc == NGX_ERROR
        && ngx_strcmp(ngx_nexus_pg_sqlstate(res), "42501") == 0)
    {
        rc = NGX_ABORT;

    } else if (rc == NGX_OK && PQntuples(res) == 1) {
        id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                       PQgetlength(res, 0, 0));

    } else if (rc != NGX_DECLINED) {
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "nexus: owner grant failed: %s",
                          PQresultErrorMessage(res));
        }

        rc = NGX_ERROR;
    }

    actx->grant_handler(r, id, rc);

    ngx_http_run_posted_requests(c);
}
