
/*
 * Copyright (C) Nexus authors
 *
 * The admin API of authorization:
 *
 *   GET|POST          /v1/admin/authz/policies
 *   GET|PUT|DELETE    /v1/admin/authz/policies/{id}
 *   POST              /v1/admin/authz/policies/{id}/simulate
 *   GET|POST          /v1/admin/authz/documents/{id}/permissions
 *   DELETE            /v1/admin/authz/documents/{id}/permissions/{grant}
 *
 * and, where nexus_acl_test_hook is on, two routes of nexus_api that let
 * tests drive the document decision order with any key:
 *
 *   GET               /v1/authz/documents/{id}/check?permission=read
 *   POST              /v1/authz/documents/{id}/owner
 *
 * A tenant's admin manages its own tenant's policies and grants; a
 * platform admin any tenant's, and the platform-wide policies (no
 * "tenant").  An editor reaches the grants of a document, and only them
 * (ngx_nexus_authz_admin_role()): the decision order for "share" on the
 * document decides first, in the editor's own tenant, and it may neither
 * grant "owner" nor revoke an owner grant.  A policy is checked with
 * nx_policy before it is written: an invalid one is refused with the JSON
 * path of the error.  PostgreSQL renders the rows as JSON.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"
#include "ngx_nexus_audit.h"
#include "ngx_nexus_abac.h"

#include <nx_json.h>
#include <nx_name.h>
#include <nx_duration.h>
#include <yajl/yajl_gen.h>


#define NGX_NEXUS_AUTHZ_LIST            0
#define NGX_NEXUS_AUTHZ_CREATE          1
#define NGX_NEXUS_AUTHZ_GET             2
#define NGX_NEXUS_AUTHZ_UPDATE          3
#define NGX_NEXUS_AUTHZ_DELETE          4
#define NGX_NEXUS_AUTHZ_SIMULATE        5
#define NGX_NEXUS_AUTHZ_GRANTS          6
#define NGX_NEXUS_AUTHZ_GRANT           7
#define NGX_NEXUS_AUTHZ_REVOKE          8
#define NGX_NEXUS_AUTHZ_NOPS            9

#define NGX_NEXUS_AUTHZ_RULES_MAX       100


typedef struct {
    ngx_uint_t                  op;
    ngx_str_t                   id;         /* policy id, document id */
    ngx_str_t                   grant;      /* grant id */
    ngx_str_t                   body;       /* simulate: the context */

    /* a grant to make, as checked */
    ngx_str_t                   tenant;
    ngx_str_t                   type;
    ngx_str_t                   principal;
    ngx_str_t                   permission;
    ngx_str_t                   at;
    int64_t                     expires;
} ngx_nexus_authz_ctx_t;


static ngx_int_t ngx_nexus_authz_policies(ngx_http_request_t *r,
    ngx_str_t *rest);
static ngx_int_t ngx_nexus_authz_documents(ngx_http_request_t *r,
    ngx_str_t *rest);
static ngx_int_t ngx_nexus_authz_grants_path(ngx_str_t *rest,
    ngx_str_t *doc, ngx_str_t *grant);
static ngx_int_t ngx_nexus_authz_grants(ngx_http_request_t *r,
    ngx_uint_t content);
static void ngx_nexus_authz_shared(ngx_http_request_t *r,
    ngx_nexus_acl_decision_t *d, ngx_int_t rc);
static ngx_int_t ngx_nexus_authz_grants_ask(ngx_http_request_t *r,
    ngx_uint_t content);
static ngx_int_t ngx_nexus_authz_admin_only(ngx_http_request_t *r,
    const char *message);
static ngx_nexus_authz_ctx_t *ngx_nexus_authz_ctx(ngx_http_request_t *r,
    ngx_uint_t op);
static ngx_nexus_pg_query_t *ngx_nexus_authz_prepare(ngx_http_request_t *r,
    ngx_uint_t op, size_t size);
static int64_t ngx_nexus_authz_scope(ngx_http_request_t *r);
static void ngx_nexus_authz_policy_write(ngx_http_request_t *r, yajl_val v);
static ngx_int_t ngx_nexus_authz_name_valid(const char *name);
static ngx_int_t ngx_nexus_authz_document(ngx_http_request_t *r,
    yajl_val v, ngx_uint_t single, ngx_str_t *doc);
static void ngx_nexus_authz_compile_error(ngx_http_request_t *r,
    const char *err, ngx_uint_t single);
static ngx_int_t ngx_nexus_authz_gen(yajl_gen g, yajl_val v,
    ngx_uint_t top);
static void ngx_nexus_authz_simulate_body(ngx_http_request_t *r,
    yajl_val v);
static void ngx_nexus_authz_simulate(ngx_http_request_t *r, PGresult *res);
static const nx_policy_value_t *ngx_nexus_authz_now(void *data,
    const char *name, size_t len);
static void ngx_nexus_authz_grant(ngx_http_request_t *r, yajl_val v);
static void ngx_nexus_authz_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_authz_invalid(ngx_http_request_t *r,
    const char *message);
static ngx_int_t ngx_nexus_authz_id(ngx_str_t *id, ngx_uint_t digits);
static void ngx_nexus_authz_checked(ngx_http_request_t *r,
    ngx_nexus_acl_decision_t *d, ngx_int_t rc);
static void ngx_nexus_authz_owned(ngx_http_request_t *r, int64_t grant_id,
    ngx_int_t rc);


static ngx_uint_t  ngx_nexus_authz_stmts[NGX_NEXUS_AUTHZ_NOPS];


static const char  *ngx_nexus_authz_events[NGX_NEXUS_AUTHZ_NOPS] = {
    NULL,
    "authz.policy.created",
    NULL,
    "authz.policy.updated",
    "authz.policy.deleted",
    NULL,
    NULL,
    "authz.document_acl.granted",
    "authz.document_acl.revoked"
};


#define NGX_NEXUS_POLICY_JSON                                                 \
    "json_build_object('id', p.id,"                                          \
    " 'tenant', (SELECT t.name FROM tenants t WHERE t.id = p.tenant_id),"    \
    " 'name', p.name, 'rules', p.document, 'version', p.version,"            \
    " 'enabled', p.enabled, 'created_by', p.created_by,"                     \
    " 'updated_by', p.updated_by, 'created_at', p.created_at,"               \
    " 'updated_at', p.updated_at)"

#define NGX_NEXUS_GRANT_JSON                                                  \
    "json_build_object('id', a.id, 'document_id', a.document_id,"            \
    " 'tenant', (SELECT t.name FROM tenants t WHERE t.id = a.tenant_id),"    \
    " 'principal_type', a.principal_type, 'principal_id', a.principal_id,"   \
    " 'permission', a.permission, 'expires_at', a.expires_at,"               \
    " 'active', a.expires_at IS NULL OR a.expires_at > now(),"               \
    " 'granted_by', a.granted_by, 'created_at', a.created_at)"

/* $N::bigint = 0: a platform admin, who sees every tenant */
#define NGX_NEXUS_POLICY_SCOPE(n)                                             \
    " AND ($" #n "::bigint = 0 OR p.tenant_id = $" #n "::bigint)"


static const ngx_nexus_pg_sql_t  ngx_nexus_authz_sql[NGX_NEXUS_AUTHZ_NOPS] = {

    { "nexus_authz_list",
      "SELECT coalesce(json_agg(" NGX_NEXUS_POLICY_JSON " ORDER BY p.id),"
      " '[]')::text FROM (SELECT * FROM authz_policies p WHERE true"
      NGX_NEXUS_POLICY_SCOPE(1)
      " ORDER BY p.id LIMIT 1000) p",
      1 },

    /* $2 '': platform-wide, for a platform admin only ($1 = 0) */
    { "nexus_authz_create",
      "INSERT INTO authz_policies AS p (tenant_id, name, document, enabled,"
      " created_by, updated_by)"
      " SELECT t.id, $3, $4::jsonb, $5::boolean, $6, $6"
      " FROM (SELECT NULL::bigint AS id WHERE $2 = '' AND $1::bigint = 0"
      " UNION ALL SELECT id FROM tenants WHERE $2 <> '' AND name = $2"
      " AND ($1::bigint = 0 OR id = $1::bigint)) t"
      " RETURNING " NGX_NEXUS_POLICY_JSON "::text, p.tenant_id",
      6 },

    { "nexus_authz_get",
      "SELECT " NGX_NEXUS_POLICY_JSON "::text, p.tenant_id"
      " FROM authz_policies p WHERE p.id = $1::bigint"
      NGX_NEXUS_POLICY_SCOPE(2),
      2 },

    { "nexus_authz_update",
      "UPDATE authz_policies AS p SET name = $3, document = $4::jsonb,"
      " enabled = $5::boolean, updated_by = $6, version = p.version + 1,"
      " updated_at = now()"
      " WHERE p.id = $1::bigint" NGX_NEXUS_POLICY_SCOPE(2)
      " RETURNING " NGX_NEXUS_POLICY_JSON "::text, p.tenant_id",
      6 },

    { "nexus_authz_delete",
      "DELETE FROM authz_policies AS p WHERE p.id = $1::bigint"
      NGX_NEXUS_POLICY_SCOPE(2)
      " RETURNING " NGX_NEXUS_POLICY_JSON "::text, p.tenant_id",
      2 },

    { "nexus_authz_simulate",
      "SELECT p.document::text, p.id, p.name FROM authz_policies p"
      " WHERE p.id = $1::bigint" NGX_NEXUS_POLICY_SCOPE(2),
      2 },

    { "nexus_authz_grants",
      "SELECT coalesce(json_agg(" NGX_NEXUS_GRANT_JSON " ORDER BY a.id),"
      " '[]')::text FROM (SELECT * FROM document_acl a"
      " WHERE a.document_id = $1"
      " AND ($2::bigint = 0 OR a.tenant_id = $2::bigint)"
      " ORDER BY a.id LIMIT 1000) a",
      2 },

    /*
     * a grant of another tenant's document: the trigger raises 42501; a
     * key grant names a key of the grant's tenant.  The third column says
     * whether the tenant exists (else the key does not)
     */
    { "nexus_authz_grant",
      "WITH t AS (SELECT t.id FROM tenants t WHERE t.name = $1),"
      " g AS (INSERT INTO document_acl AS a (tenant_id, document_id,"
      " principal_type, principal_id, permission, expires_at, granted_by)"
      " SELECT t.id, $2, $3, $4, $5,"
      " CASE WHEN $6 <> '' THEN $6::timestamptz"
      " WHEN $7::bigint > 0 THEN now() + make_interval(secs => $7::bigint)"
      " END, $8"
      " FROM t WHERE $3 <> 'key' OR EXISTS (SELECT 1 FROM api_keys k"
      " WHERE k.tenant_id = t.id AND k.prefix = $4)"
      " ON CONFLICT (document_id, principal_type, principal_id, permission)"
      " DO UPDATE SET expires_at = EXCLUDED.expires_at,"
      " granted_by = EXCLUDED.granted_by, created_at = now()"
      " RETURNING a.*)"
      " SELECT (SELECT " NGX_NEXUS_GRANT_JSON "::text FROM g a),"
      " (SELECT a.tenant_id FROM g a), EXISTS (SELECT 1 FROM t)",
      8 },

    /*
     * $4 true: an owner grant stays (an editor's revocation), and the
     * third column says that it was one
     */
    { "nexus_authz_revoke",
      "WITH g AS (SELECT a.id, a.permission FROM document_acl a"
      " WHERE a.id = $1::bigint AND a.document_id = $2"
      " AND ($3::bigint = 0 OR a.tenant_id = $3::bigint)),"
      " d AS (DELETE FROM document_acl AS a USING g WHERE a.id = g.id"
      " AND NOT ($4::boolean AND g.permission = 'owner') RETURNING a.*)"
      " SELECT (SELECT " NGX_NEXUS_GRANT_JSON "::text FROM d a),"
      " (SELECT a.tenant_id FROM d a),"
      " EXISTS (SELECT 1 FROM g WHERE $4::boolean"
      " AND g.permission = 'owner')",
      4 },
};


ngx_int_t
ngx_nexus_authz_admin_init(ngx_conf_t *cf)
{
    if (ngx_nexus_pg_statements(cf, ngx_nexus_authz_sql, NGX_NEXUS_AUTHZ_NOPS,
                                ngx_nexus_authz_stmts)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* rest: after "admin/" */

ngx_int_t
ngx_nexus_authz_admin(ngx_http_request_t *r, ngx_str_t *rest)
{
    ngx_str_t  s;

    s = *rest;

    if (s.len >= 14 && ngx_strncmp(s.data, "authz/policies", 14) == 0) {
        s.data += 14;
        s.len -= 14;
        return ngx_nexus_authz_policies(r, &s);
    }

    if (s.len > 16 && ngx_strncmp(s.data, "authz/documents/", 16) == 0) {
        s.data += 16;
        s.len -= 16;
        return ngx_nexus_authz_documents(r, &s);
    }

    return ngx_nexus_not_found(r);
}


/* rest: after "authz/policies" */

static ngx_int_t
ngx_nexus_authz_policies(ngx_http_request_t *r, ngx_str_t *rest)
{
    u_char                 *slash;
    ngx_str_t               id;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_authz_ctx_t  *actx;

    if (rest->len == 0) {
        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            q = ngx_nexus_authz_prepare(r, NGX_NEXUS_AUTHZ_LIST, 32);
            if (q == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            (void) ngx_nexus_pg_param_int(q, ngx_nexus_authz_scope(r));

            return ngx_nexus_pg_ask(r, q, 1);
        }

        if (r->method == NGX_HTTP_POST) {
            if (ngx_nexus_authz_ctx(r, NGX_NEXUS_AUTHZ_CREATE) == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_nexus_read_json(r, ngx_nexus_authz_policy_write);
        }

        return ngx_nexus_method_not_allowed(r, "GET, HEAD, POST");
    }

    if (rest->data[0] != '/') {
        return ngx_nexus_not_found(r);
    }

    id.data = rest->data + 1;
    id.len = rest->len - 1;

    slash = ngx_strlchr(id.data, id.data + id.len, '/');

    if (slash != NULL) {
        if ((size_t) (id.data + id.len - slash) != sizeof("/simulate") - 1
            || ngx_strncmp(slash, "/simulate", sizeof("/simulate") - 1) != 0)
        {
            return ngx_nexus_not_found(r);
        }

        id.len = slash - id.data;

        if (ngx_nexus_authz_id(&id, 1) != NGX_OK) {
            return ngx_nexus_not_found(r);
        }

        if (r->method != NGX_HTTP_POST) {
            return ngx_nexus_method_not_allowed(r, "POST");
        }

        actx = ngx_nexus_authz_ctx(r, NGX_NEXUS_AUTHZ_SIMULATE);
        if (actx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        actx->id = id;

        return ngx_nexus_read_json(r, ngx_nexus_authz_simulate_body);
    }

    if (ngx_nexus_authz_id(&id, 1) != NGX_OK) {
        return ngx_nexus_not_found(r);
    }

    if (r->method == NGX_HTTP_PUT) {
        actx = ngx_nexus_authz_ctx(r, NGX_NEXUS_AUTHZ_UPDATE);
        if (actx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        actx->id = id;

        return ngx_nexus_read_json(r, ngx_nexus_authz_policy_write);
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_DELETE)) {
        q = ngx_nexus_authz_prepare(r, (r->method == NGX_HTTP_DELETE)
                                       ? NGX_NEXUS_AUTHZ_DELETE
                                       : NGX_NEXUS_AUTHZ_GET,
                                    id.len + 32);
        if (q == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_nexus_pg_param(q, id.data, id.len);
        (void) ngx_nexus_pg_param_int(q, ngx_nexus_authz_scope(r));

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            ngx_nexus_pg_free(q);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_nexus_pg_ask(r, q, 1);
    }

    return ngx_nexus_method_not_allowed(r, "GET, HEAD, PUT, DELETE");
}


/*
 * The role a request of a nexus_admin location needs, checked in the
 * access phase: admin, except on the grants of a document, which an
 * editor may list, give and revoke where it may share the document (the
 * decision order, in the handler).  Nothing else of /v1/admin/ is an
 * editor's.
 */

ngx_uint_t
ngx_nexus_authz_admin_role(ngx_http_request_t *r)
{
    ngx_str_t  rest, doc, grant;

    if (ngx_nexus_route(r, &rest) != NGX_OK
        || rest.len <= sizeof("admin/authz/documents/") - 1
        || ngx_strncmp(rest.data, "admin/authz/documents/",
                       sizeof("admin/authz/documents/") - 1) != 0)
    {
        return NGX_NEXUS_ROLE_ADMIN;
    }

    rest.data += sizeof("admin/authz/documents/") - 1;
    rest.len -= sizeof("admin/authz/documents/") - 1;

    if (ngx_nexus_authz_grants_path(&rest, &doc, &grant) != NGX_OK) {
        return NGX_NEXUS_ROLE_ADMIN;
    }

    if (grant.len ? (r->method == NGX_HTTP_DELETE)
                  : (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST)))
    {
        return NGX_NEXUS_ROLE_EDITOR;
    }

    return NGX_NEXUS_ROLE_ADMIN;
}


/*
 * rest: after "authz/documents/": "{id}/permissions" (grant->len 0) or
 * "{id}/permissions/{grant}", else NGX_DECLINED
 */

static ngx_int_t
ngx_nexus_authz_grants_path(ngx_str_t *rest, ngx_str_t *doc,
    ngx_str_t *grant)
{
    u_char  *slash, *last;

    last = rest->data + rest->len;

    slash = ngx_strlchr(rest->data, last, '/');
    if (slash == NULL) {
        return NGX_DECLINED;
    }

    doc->data = rest->data;
    doc->len = slash - rest->data;

    if (ngx_nexus_authz_id(doc, 0) != NGX_OK
        || (size_t) (last - slash) < sizeof("/permissions") - 1
        || ngx_strncmp(slash, "/permissions", sizeof("/permissions") - 1)
           != 0)
    {
        return NGX_DECLINED;
    }

    grant->data = slash + sizeof("/permissions") - 1;
    grant->len = last - grant->data;

    if (grant->len == 0) {
        return NGX_OK;
    }

    if (grant->data[0] != '/') {
        return NGX_DECLINED;
    }

    grant->data++;
    grant->len--;

    return ngx_nexus_authz_id(grant, 1) == NGX_OK ? NGX_OK : NGX_DECLINED;
}


/* rest: after "authz/documents/" */

static ngx_int_t
ngx_nexus_authz_documents(ngx_http_request_t *r, ngx_str_t *rest)
{
    ngx_str_t               doc, grant;
    ngx_nexus_authz_ctx_t  *actx;

    if (ngx_nexus_authz_grants_path(rest, &doc, &grant) != NGX_OK) {
        return ngx_nexus_not_found(r);
    }

    if (grant.len) {
        if (r->method != NGX_HTTP_DELETE) {
            return ngx_nexus_method_not_allowed(r, "DELETE");
        }

        actx = ngx_nexus_authz_ctx(r, NGX_NEXUS_AUTHZ_REVOKE);

    } else if (r->method == NGX_HTTP_POST) {
        actx = ngx_nexus_authz_ctx(r, NGX_NEXUS_AUTHZ_GRANT);

    } else if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        actx = ngx_nexus_authz_ctx(r, NGX_NEXUS_AUTHZ_GRANTS);

    } else {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD, POST");
    }

    if (actx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    actx->id = doc;
    actx->grant = grant;

    if (actx->op == NGX_NEXUS_AUTHZ_GRANT) {
        return ngx_nexus_read_json(r, ngx_nexus_authz_grant);
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_authz_grants(r, 1);
}


/*
 * The grants of actx->id: listed, given or revoked at once for an admin;
 * for an editor once the decision order lets it share the document.
 * content: called from the content handler (not a body handler).
 */

static ngx_int_t
ngx_nexus_authz_grants(ngx_http_request_t *r, ngx_uint_t content)
{
    ngx_int_t               rc;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_authz_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;

    if (ctx->principal.role == NGX_NEXUS_ROLE_ADMIN) {
        return ngx_nexus_authz_grants_ask(r, content);
    }

    rc = ngx_nexus_acl_check(r, &actx->id, NGX_NEXUS_ACL_SHARE,
                             ngx_nexus_authz_shared);

    if (rc == NGX_DECLINED) {
        return ngx_nexus_pg_unavailable(r);
    }

    if (rc != NGX_AGAIN) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (content) {
        r->main->count++;
    }

    return NGX_DONE;
}


/*
 * An editor's decision: a denial says which permission was missing, never
 * which step denied, so that another tenant's document looks like one
 * that does not exist
 */

static void
ngx_nexus_authz_shared(ngx_http_request_t *r, ngx_nexus_acl_decision_t *d,
    ngx_int_t rc)
{
    ngx_nexus_ctx_t  *ctx;

    r->read_event_handler = ngx_http_block_reading;

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
            rc == NGX_DECLINED ? ngx_nexus_pg_unavailable(r)
                               : NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (d->allow != NGX_NEXUS_ABAC_ALLOW) {
        ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

        ngx_nexus_audit_request(r, ctx->principal.tenant_id,
                                "authz.document_acl.denied",
                                NGX_NEXUS_AUDIT_FAILURE,
                                "\"code\":\"FORBIDDEN\","
                                "\"details\":{\"permission\":\"share\"}");

        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                 "the key may not share this document",
                                 "{\"permission\":\"share\"}"));
        return;
    }

    rc = ngx_nexus_authz_grants_ask(r, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_authz_grants_ask(ngx_http_request_t *r, ngx_uint_t content)
{
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_authz_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;

    q = ngx_nexus_authz_prepare(r, actx->op,
                                actx->id.len + actx->grant.len
                                + actx->tenant.len + actx->type.len
                                + actx->principal.len + actx->permission.len
                                + actx->at.len + ctx->principal.prefix.len
                                + 128);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (actx->op) {

    case NGX_NEXUS_AUTHZ_GRANTS:
        (void) ngx_nexus_pg_param(q, actx->id.data, actx->id.len);
        (void) ngx_nexus_pg_param_int(q, ngx_nexus_authz_scope(r));
        break;

    case NGX_NEXUS_AUTHZ_GRANT:
        (void) ngx_nexus_pg_param(q, actx->tenant.data, actx->tenant.len);
        (void) ngx_nexus_pg_param(q, actx->id.data, actx->id.len);
        (void) ngx_nexus_pg_param(q, actx->type.data, actx->type.len);
        (void) ngx_nexus_pg_param(q, actx->principal.data,
                                  actx->principal.len);
        (void) ngx_nexus_pg_param(q, actx->permission.data,
                                  actx->permission.len);
        (void) ngx_nexus_pg_param(q, actx->at.data, actx->at.len);
        (void) ngx_nexus_pg_param_int(q, actx->expires);
        (void) ngx_nexus_pg_param(q, ctx->principal.prefix.data,
                                  ctx->principal.prefix.len);
        break;

    default: /* NGX_NEXUS_AUTHZ_REVOKE */
        (void) ngx_nexus_pg_param(q, actx->grant.data, actx->grant.len);
        (void) ngx_nexus_pg_param(q, actx->id.data, actx->id.len);
        (void) ngx_nexus_pg_param_int(q, ngx_nexus_authz_scope(r));
        (void) ngx_nexus_pg_param(q, (u_char *)
            (ctx->principal.role == NGX_NEXUS_ROLE_ADMIN ? "f" : "t"), 1);
        break;
    }

    return ngx_nexus_pg_ask(r, q, content);
}


/* an owner grant is an admin's to give and to take: rbac.forbidden */

static ngx_int_t
ngx_nexus_authz_admin_only(ngx_http_request_t *r, const char *message)
{
    ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                              "{\"required_role\":\"admin\"}");

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN", message,
                                "{\"required_role\":\"admin\"}");
}


/*
 * nexus_acl_test_hook: GET /v1/authz/documents/{id}/check?permission=P
 * and POST /v1/authz/documents/{id}/owner, with any key of the location.
 * rest: after "/v1/".
 */

ngx_int_t
ngx_nexus_authz_hook(ngx_http_request_t *r, ngx_str_t *rest)
{
    u_char                *slash;
    ngx_int_t              rc, perm;
    ngx_str_t              doc, arg;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (!nlcf->acl_test_hook
        || rest->len <= sizeof("authz/documents/") - 1
        || ngx_strncmp(rest->data, "authz/documents/",
                       sizeof("authz/documents/") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    doc.data = rest->data + sizeof("authz/documents/") - 1;
    doc.len = rest->len - (sizeof("authz/documents/") - 1);

    slash = ngx_strlchr(doc.data, doc.data + doc.len, '/');
    if (slash == NULL) {
        return ngx_nexus_not_found(r);
    }

    arg.data = slash;
    arg.len = doc.data + doc.len - slash;
    doc.len = slash - doc.data;

    if (ngx_nexus_authz_id(&doc, 0) != NGX_OK) {
        return ngx_nexus_not_found(r);
    }

    if (arg.len == sizeof("/owner") - 1
        && ngx_strncmp(arg.data, "/owner", arg.len) == 0)
    {
        if (r->method != NGX_HTTP_POST) {
            return ngx_nexus_method_not_allowed(r, "POST");
        }

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_nexus_acl_grant_owner(r, &doc, ngx_nexus_authz_owned);

    } else if (arg.len == sizeof("/check") - 1
               && ngx_strncmp(arg.data, "/check", arg.len) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        if (ngx_http_arg(r, (u_char *) "permission", 10, &arg) != NGX_OK
            || (perm = ngx_nexus_acl_permission(&arg)) == NGX_ERROR
            || perm == NGX_NEXUS_ACL_OWNER)
        {
            return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "VALIDATION_ERROR",
                                        "\"permission\" must be read, write, "
                                        "delete or share", NULL);
        }

        rc = ngx_nexus_acl_check(r, &doc, perm, ngx_nexus_authz_checked);

    } else {
        return ngx_nexus_not_found(r);
    }

    if (rc == NGX_DECLINED) {
        return ngx_nexus_pg_unavailable(r);
    }

    if (rc != NGX_AGAIN) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_nexus_authz_checked(ngx_http_request_t *r, ngx_nexus_acl_decision_t *d,
    ngx_int_t rc)
{
    u_char  *json, *p;

    r->read_event_handler = ngx_http_block_reading;

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "DEPENDENCY_UNAVAILABLE",
                                 "the decision cannot be made, try again",
                                 NULL));
        return;
    }

    json = ngx_pnalloc(r->pool, 128 + d->policy.len + d->rule.len);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(json, "{\"decision\":\"%s\",\"step\":\"%V\"",
                    d->allow ? "allow" : "deny",
                    &ngx_nexus_acl_steps[d->step]);

    if (d->grant_id) {
        p = ngx_sprintf(p, ",\"grant\":%L", d->grant_id);
    }

    if (d->policy.len) {
        p = ngx_sprintf(p, ",\"policy\":\"%V\",\"rule\":\"%V\"", &d->policy,
                        &d->rule);
    }

    *p++ = '}';

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_OK, json, p - json));
}


static void
ngx_nexus_authz_owned(ngx_http_request_t *r, int64_t grant_id, ngx_int_t rc)
{
    u_char  *json, *p;

    r->read_event_handler = ngx_http_block_reading;

    if (rc == NGX_ABORT) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "DOCUMENT_NOT_FOUND",
                                 "no such document", NULL));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "DEPENDENCY_UNAVAILABLE",
                                 "the grant cannot be made, try again",
                                 NULL));
        return;
    }

    json = ngx_pnalloc(r->pool, 64);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(json, "{\"grant\":%L,\"permission\":\"owner\"}",
                    grant_id);

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_CREATED, json, p - json));
}


/* digits: a bigserial id; otherwise a document id, as document_acl says */

static ngx_int_t
ngx_nexus_authz_id(ngx_str_t *id, ngx_uint_t digits)
{
    u_char  *p;

    if (id->len == 0 || id->len > (digits ? 18 : 128)) {
        return NGX_ERROR;
    }

    for (p = id->data; p < id->data + id->len; p++) {
        if (*p >= '0' && *p <= '9') {
            continue;
        }

        if (digits) {
            return NGX_ERROR;
        }

        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || *p == '_' || *p == '.' || *p == ':' || *p == '-'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the tenant r is confined to: 0 for a platform admin (not its editors) */

static int64_t
ngx_nexus_authz_scope(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    return (ctx->principal.platform
            && ctx->principal.role == NGX_NEXUS_ROLE_ADMIN)
           ? 0 : ctx->principal.tenant_id;
}


static ngx_nexus_authz_ctx_t *
ngx_nexus_authz_ctx(ngx_http_request_t *r, ngx_uint_t op)
{
    ngx_nexus_authz_ctx_t  *actx;

    actx = ngx_nexus_handler_ctx(r, sizeof(ngx_nexus_authz_ctx_t));
    if (actx == NULL) {
        return NULL;
    }

    actx->op = op;

    return actx;
}


static ngx_nexus_pg_query_t *
ngx_nexus_authz_prepare(ngx_http_request_t *r, ngx_uint_t op, size_t size)
{
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_authz_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;

    if (actx == NULL || actx->op != op) {
        actx = ngx_nexus_authz_ctx(r, op);
        if (actx == NULL) {
            return NULL;
        }
    }

    q = ngx_nexus_pg_query(ngx_nexus_authz_stmts[op], size);
    if (q == NULL) {
        return NULL;
    }

    q->handler = ngx_nexus_authz_done;
    q->data = r;

    return q;
}


/*
 * POST /policies and PUT /policies/{id}: either the reference's one-rule
 * shape, {"name": "deny-x", "effect": "deny", "resource_type": ...,
 * "action": ..., "priority": ..., "condition_json": {...}}, or a set,
 * {"name": "models", "rules": [{"id": ..., ...}, ...]}; both with
 * "enabled" (default true) and, for a platform admin, "tenant" (none: a
 * platform-wide policy).
 */

static void
ngx_nexus_authz_policy_write(ngx_http_request_t *r, yajl_val v)
{
    ngx_int_t               rc;
    ngx_str_t               doc, tenant;
    yajl_val                f, rules;
    ngx_uint_t              single;
    const char             *name, *s;
    int                     enabled;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_authz_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;

    if (v == NULL || !YAJL_IS_OBJECT(v)) {
        ngx_nexus_authz_invalid(r, "a JSON object with \"name\" is "
                                   "required");
        return;
    }

    if (nx_json_string(nx_json_get(v, "name"), &name) != 0
        || ngx_nexus_authz_name_valid(name) != NGX_OK)
    {
        ngx_nexus_authz_invalid(r, "\"name\" must be 1-128 characters of "
                                   "[A-Za-z0-9_.:-], starting with a "
                                   "letter or digit");
        return;
    }

    enabled = 1;
    f = nx_json_get(v, "enabled");

    if (f != NULL && nx_json_bool(f, &enabled) != 0) {
        ngx_nexus_authz_invalid(r, "\"enabled\" must be a boolean");
        return;
    }

    /* whose: the admin's own tenant, or what a platform admin says */
    tenant = ctx->principal.tenant;
    f = nx_json_get(v, "tenant");

    if (ctx->principal.platform) {
        ngx_str_set(&tenant, "");
    }

    if (f != NULL && !YAJL_IS_NULL(f)) {
        if (nx_json_string(f, &s) != 0
            || nx_tenant_name_valid(s, ngx_strlen(s)) != 0)
        {
            ngx_nexus_authz_invalid(r, "\"tenant\" is not a valid name");
            return;
        }

        tenant.data = (u_char *) s;
        tenant.len = ngx_strlen(s);
    }

    rules = nx_json_get(v, "rules");
    single = (rules == NULL);

    if (!single
        && (!YAJL_IS_ARRAY(rules) || rules->u.array.len == 0
            || rules->u.array.len > NGX_NEXUS_AUTHZ_RULES_MAX))
    {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                 "\"rules\" must be an array of 1-100 rules",
                                 "{\"path\":\"$.rules\"}"));
        return;
    }

    rc = ngx_nexus_authz_document(r, single ? v : rules, single, &doc);
    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    q = ngx_nexus_authz_prepare(r, actx->op,
                                doc.len + ngx_strlen(name) + tenant.len
                                + ctx->principal.prefix.len + 64);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (actx->op == NGX_NEXUS_AUTHZ_CREATE) {
        (void) ngx_nexus_pg_param_int(q, ngx_nexus_authz_scope(r));
        (void) ngx_nexus_pg_param(q, tenant.data, tenant.len);

    } else {
        /* a policy stays with its tenant */
        (void) ngx_nexus_pg_param(q, actx->id.data, actx->id.len);
        (void) ngx_nexus_pg_param_int(q, ngx_nexus_authz_scope(r));
    }

    (void) ngx_nexus_pg_param(q, (u_char *) name, ngx_strlen(name));
    (void) ngx_nexus_pg_param(q, doc.data, doc.len);
    (void) ngx_nexus_pg_param(q, (u_char *) (enabled ? "t" : "f"), 1);
    (void) ngx_nexus_pg_param(q, ctx->principal.prefix.data,
                              ctx->principal.prefix.len);

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_authz_name_valid(const char *name)
{
    size_t  n;

    for (n = 0; name[n]; n++) {
        if ((name[n] >= 'a' && name[n] <= 'z')
            || (name[n] >= 'A' && name[n] <= 'Z')
            || (name[n] >= '0' && name[n] <= '9'))
        {
            continue;
        }

        if (n == 0
            || !(name[n] == '_' || name[n] == '.' || name[n] == ':'
                 || name[n] == '-'))
        {
            return NGX_ERROR;
        }
    }

    return (n >= 1 && n <= 128) ? NGX_OK : NGX_ERROR;
}


/*
 * The set to store, compiled as the workers will compile it: NGX_OK, or
 * NGX_DECLINED when the request was answered 400 (with the path of the
 * error), or NGX_ERROR.
 */

static ngx_int_t
ngx_nexus_authz_document(ngx_http_request_t *r, yajl_val v,
    ngx_uint_t single, ngx_str_t *doc)
{
    char                    err[512];
    size_t                  len;
    yajl_gen                g;
    nx_policy_t            *p;
    nx_policy_opts_t        opts;
    const unsigned char    *buf;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NGX_ERROR;
    }

    /* a single rule is a set of one, without the members of the policy */
    if ((single && yajl_gen_array_open(g) != yajl_gen_status_ok)
        || ngx_nexus_authz_gen(g, v, single) != NGX_OK
        || (single && yajl_gen_array_close(g) != yajl_gen_status_ok)
        || yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
    {
        yajl_gen_free(g);
        return NGX_ERROR;
    }

    doc->data = ngx_pnalloc(r->pool, len);
    if (doc->data == NULL) {
        yajl_gen_free(g);
        return NGX_ERROR;
    }

    ngx_memcpy(doc->data, buf, len);
    doc->len = len;
    yajl_gen_free(g);

    ngx_memzero(&opts, sizeof(nx_policy_opts_t));
    opts.wildcards = nmcf->abac_wildcards ? 1 : 0;

    p = nx_policy_compile((char *) doc->data, doc->len, &opts, err,
                          sizeof(err));
    if (p == NULL) {
        ngx_nexus_authz_compile_error(r, err, single);
        return NGX_DECLINED;
    }

    nx_policy_free(p);

    return NGX_OK;
}


/*
 * nx_policy's "rules[2].condition.all[1].regex: invalid pattern" as
 * {"path": "$.rules[2].condition.all[1].regex", "error": "invalid
 * pattern"}; for a one-rule policy the rule is the body: "$.condition...".
 */

static void
ngx_nexus_authz_compile_error(ngx_http_request_t *r, const char *err,
    ngx_uint_t single)
{
    u_char     *details;
    ngx_str_t   path, msg, epath, emsg;

    msg.data = (u_char *) ngx_strstr(err, ": ");

    if (msg.data == NULL) {
        path.data = (u_char *) "";
        path.len = 0;
        msg.data = (u_char *) err;

    } else {
        path.data = (u_char *) err;
        path.len = msg.data - path.data;
        msg.data += 2;
    }

    msg.len = ngx_strlen(msg.data);

    if (single && path.len >= 8 && ngx_strncmp(path.data, "rules[0]", 8) == 0)
    {
        path.data += 8;
        path.len -= 8;

    } else if (path.len && !single) {
        /* "rules..." is already the body's member */

    } else if (single && path.len == 5) {
        path.len = 0;
    }

    if (ngx_nexus_json_escape(r->pool, &path, &epath) != NGX_OK
        || ngx_nexus_json_escape(r->pool, &msg, &emsg) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    details = ngx_pnalloc(r->pool,
                          sizeof("{\"path\":\"$.\",\"error\":\"\"}")
                          + epath.len + emsg.len);
    if (details == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_sprintf(details, "{\"path\":\"$%s%V\",\"error\":\"%V\"}%Z",
                (epath.len && epath.data[0] != '.' && epath.data[0] != '[')
                ? "." : "",
                &epath, &emsg);

    ngx_http_finalize_request(r,
        ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                             "the policy is invalid", (char *) details));
}


/* v as JSON; top: an object whose policy members are left out */

static ngx_int_t
ngx_nexus_authz_gen(yajl_gen g, yajl_val v, ngx_uint_t top)
{
    size_t       i;
    const char  *key;

    if (YAJL_IS_STRING(v)) {
        return yajl_gen_string(g, (const unsigned char *) v->u.string,
                               ngx_strlen(v->u.string))
               == yajl_gen_status_ok ? NGX_OK : NGX_ERROR;
    }

    if (YAJL_IS_NUMBER(v)) {
        return yajl_gen_number(g, v->u.number.r, ngx_strlen(v->u.number.r))
               == yajl_gen_status_ok ? NGX_OK : NGX_ERROR;
    }

    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        return yajl_gen_bool(g, YAJL_IS_TRUE(v)) == yajl_gen_status_ok
               ? NGX_OK : NGX_ERROR;
    }

    if (YAJL_IS_NULL(v)) {
        return yajl_gen_null(g) == yajl_gen_status_ok ? NGX_OK : NGX_ERROR;
    }

    if (YAJL_IS_ARRAY(v)) {
        if (yajl_gen_array_open(g) != yajl_gen_status_ok) {
            return NGX_ERROR;
        }

        for (i = 0; i < v->u.array.len; i++) {
            if (ngx_nexus_authz_gen(g, v->u.array.values[i], 0) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        return yajl_gen_array_close(g) == yajl_gen_status_ok
               ? NGX_OK : NGX_ERROR;
    }

    if (yajl_gen_map_open(g) != yajl_gen_status_ok) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->u.object.len; i++) {
        key = v->u.object.keys[i];

        if (top && (ngx_strcmp(key, "enabled") == 0
                    || ngx_strcmp(key, "tenant") == 0))
        {
            continue;
        }

        if (yajl_gen_string(g, (const unsigned char *) key, ngx_strlen(key))
            != yajl_gen_status_ok
            || ngx_nexus_authz_gen(g, v->u.object.values[i], 0) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return yajl_gen_map_close(g) == yajl_gen_status_ok ? NGX_OK : NGX_ERROR;
}


/*
 * POST /policies/{id}/simulate {"resource_type": "document", "action":
 * "read", "principal": {...}, "resource": {...}, "request": {...}}: the
 * stored policy alone, enabled or not, decides; request.time is now
 * unless given.
 */

static void
ngx_nexus_authz_simulate_body(ngx_http_request_t *r, yajl_val v)
{
    ngx_int_t               rc;
    const char             *s;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_authz_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;

    if (v == NULL || !YAJL_IS_OBJECT(v)
        || nx_json_string(nx_json_get(v, "resource_type"), &s) != 0
        || nx_json_string(nx_json_get(v, "action"), &s) != 0)
    {
        ngx_nexus_authz_invalid(r, "a JSON object with \"resource_type\" "
                                   "and \"action\" is required");
        return;
    }

    /* the context is parsed again, flat, once the policy is here */
    if (ngx_nexus_body_collect(r, &actx->body, NGX_NEXUS_BODY_MAX)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    q = ngx_nexus_authz_prepare(r, NGX_NEXUS_AUTHZ_SIMULATE,
                                actx->id.len + 32);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, actx->id.data, actx->id.len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_authz_scope(r));

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_nexus_authz_simulate(ngx_http_request_t *r, PGresult *res)
{
    int                     rc;
    char                    err[512];
    u_char                 *json, *p;
    size_t                  len;
    yajl_val                v;
    ngx_str_t               rtype, action, s, e;
    nx_policy_t            *pol;
    nx_policy_ctx_t         pctx;
    nx_policy_doc_t        *doc;
    nx_policy_opts_t        opts;
    ngx_nexus_ctx_t        *ctx;
    nx_policy_decision_t    out;
    const nx_policy_ctx_t  *dctx;
    ngx_nexus_authz_ctx_t  *actx;
    ngx_nexus_main_conf_t  *nmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (PQntuples(res) != 1) {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "POLICY_NOT_FOUND",
                                 "no such policy", NULL));
        return;
    }

    doc = nx_policy_doc_parse((char *) actx->body.data, actx->body.len, err,
                              sizeof(err));
    if (doc == NULL) {
        s.data = (u_char *) err;
        s.len = ngx_strlen(err);

        if (ngx_nexus_json_escape(r->pool, &s, &e) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        json = ngx_pnalloc(r->pool, e.len + sizeof("{\"error\":\"\"}"));
        if (json == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_sprintf(json, "{\"error\":\"%V\"}%Z", &e);

        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                 "the context is invalid", (char *) json));
        return;
    }

    ngx_memzero(&opts, sizeof(nx_policy_opts_t));
    opts.wildcards = nmcf->abac_wildcards ? 1 : 0;

    pol = nx_policy_compile(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0),
                            &opts, err, sizeof(err));
    if (pol == NULL) {
        nx_policy_doc_free(doc);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus: a stored policy does not compile: %s", err);
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_CONFLICT, "POLICY_INVALID",
                                 "the stored policy does not compile on "
                                 "this node", NULL));
        return;
    }

    /* what was checked when the body was read */
    v = nx_json_parse_strict((char *) actx->body.data, actx->body.len, err,
                             sizeof(err));
    if (v == NULL) {
        nx_policy_free(pol);
        nx_policy_doc_free(doc);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) nx_json_string(nx_json_get(v, "resource_type"),
                          (const char **) &rtype.data);
    (void) nx_json_string(nx_json_get(v, "action"),
                          (const char **) &action.data);
    rtype.len = ngx_strlen(rtype.data);
    action.len = ngx_strlen(action.data);

    dctx = nx_policy_doc_ctx(doc);
    pctx = *dctx;
    pctx.lookup = ngx_nexus_authz_now;
    pctx.data = NULL;

    rc = nx_policy_decide(pol, (char *) rtype.data, rtype.len,
                          (char *) action.data, action.len, &pctx, &out);

    len = sizeof("{\"policy\":{\"id\":,\"name\":\"\"},\"decision\":\"allow\","
                 "\"matched\":false,\"rule\":\"\",\"default_applied\":false,"
                 "\"error\":\"\"}")
          + PQgetlength(res, 0, 1) + PQgetlength(res, 0, 2)
          + (out.rule_id ? ngx_strlen(out.rule_id) : 4)
          + (out.error ? nx_json_escape_len(out.error,
                                            ngx_strlen(out.error))
                       : 4);

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        nx_json_free(v);
        nx_policy_free(pol);
        nx_policy_doc_free(doc);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* names are checked on write, rule ids are visible ASCII without '"' */
    p = ngx_sprintf(json, "{\"policy\":{\"id\":%s,\"name\":\"%s\"},"
                    "\"decision\":\"%s\",\"matched\":%s,",
                    PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                    out.effect == NX_POLICY_ALLOW ? "allow" : "deny",
                    out.rule_id ? "true" : "false");

    if (out.rule_id) {
        p = ngx_sprintf(p, "\"rule\":\"%s\",", out.rule_id);
    } else {
        p = ngx_sprintf(p, "\"rule\":null,");
    }

    p = ngx_sprintf(p, "\"default_applied\":%s,",
                    (rc == 0 && out.rule_id == NULL) ? "true" : "false");

    if (rc != 0 && out.error) {
        p = ngx_sprintf(p, "\"error\":\"");
        p += nx_json_escape((char *) p, out.error, ngx_strlen(out.error));
        p = ngx_sprintf(p, "\"}");

    } else {
        p = ngx_sprintf(p, "\"error\":null}");
    }

    nx_json_free(v);
    nx_policy_free(pol);
    nx_policy_doc_free(doc);

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_OK, json, p - json));
}


/* request.time, unless the context has it */

static const nx_policy_value_t *
ngx_nexus_authz_now(void *data, const char *name, size_t len)
{
    static nx_policy_value_t  now;

    if (len != sizeof("request.time") - 1
        || ngx_strncmp(name, "request.time", len) != 0)
    {
        return NULL;
    }

    now.type = NX_POLICY_NUMBER;
    now.u.number = (double) ngx_time();

    return &now;
}


/*
 * POST /documents/{id}/permissions {"principal_type": "key", "principal_id":
 * "<key prefix>", "permission": "read", "expires_in": "1h" or "expires_at":
 * "2030-01-01T00:00:00Z"}; "role" grants name a role, "tenant" grants the
 * grant's tenant itself.  A platform admin may give "tenant".
 */

static void
ngx_nexus_authz_grant(ngx_http_request_t *r, yajl_val v)
{
    u_char                 *c;
    int64_t                 expires;
    ngx_int_t               rc, perm;
    ngx_str_t               at, tenant;
    const char             *type, *id, *s;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_authz_ctx_t  *actx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    actx = ctx->handler_ctx;

    if (v == NULL || !YAJL_IS_OBJECT(v)
        || nx_json_string(nx_json_get(v, "principal_type"), &type) != 0
        || nx_json_string(nx_json_get(v, "principal_id"), &id) != 0
        || nx_json_string(nx_json_get(v, "permission"), &s) != 0)
    {
        ngx_nexus_authz_invalid(r, "\"principal_type\", \"principal_id\" and "
                                   "\"permission\" are required");
        return;
    }

    actx->permission.data = (u_char *) s;
    actx->permission.len = ngx_strlen(s);

    perm = ngx_nexus_acl_permission(&actx->permission);

    if (perm == NGX_ERROR) {
        ngx_nexus_authz_invalid(r, "\"permission\" must be read, write, "
                                   "delete, share or owner");
        return;
    }

    /* a platform admin grants in the name of any tenant */
    tenant = ctx->principal.tenant;

    if (nx_json_get(v, "tenant") != NULL) {
        if (ngx_nexus_authz_scope(r) != 0
            || nx_json_string(nx_json_get(v, "tenant"), &s) != 0
            || nx_tenant_name_valid(s, ngx_strlen(s)) != 0)
        {
            ngx_nexus_authz_invalid(r, "only a platform admin gives "
                                       "\"tenant\", a tenant's name");
            return;
        }

        tenant.data = (u_char *) s;
        tenant.len = ngx_strlen(s);
    }

    if (ngx_strcmp(type, "key") == 0) {
        for (c = (u_char *) id; *c; c++) {
            if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) {
                break;
            }
        }

        if (*c != '\0' || c - (u_char *) id != NX_KEY_PREFIX_LEN) {
            ngx_nexus_authz_invalid(r, "a key is named by its prefix, 12 "
                                       "hexadecimal digits");
            return;
        }

    } else if (ngx_strcmp(type, "role") == 0) {
        if (nx_role_parse(id, ngx_strlen(id)) < 0) {
            ngx_nexus_authz_invalid(r, "a role is \"reader\", \"editor\" or "
                                       "\"admin\"");
            return;
        }

    } else if (ngx_strcmp(type, "tenant") == 0) {
        /* only the keys of the grant's tenant are ever checked against it */
        if (ngx_strlen(id) != tenant.len
            || ngx_strncmp(id, tenant.data, tenant.len) != 0)
        {
            ngx_nexus_authz_invalid(r, "a tenant grant names the tenant of "
                                       "the document");
            return;
        }

    } else {
        ngx_nexus_authz_invalid(r, "\"principal_type\" must be \"key\", "
                                   "\"role\" or \"tenant\"");
        return;
    }

    expires = 0;
    ngx_str_null(&at);

    if (nx_json_get(v, "expires_in") != NULL
        && (nx_json_string(nx_json_get(v, "expires_in"), &s) != 0
            || nx_duration_parse(s, ngx_strlen(s), &expires) != 0))
    {
        ngx_nexus_authz_invalid(r, "\"expires_in\" must be a duration such "
                                   "as \"30d\", \"12h\" or \"90s\"");
        return;
    }

    if (nx_json_get(v, "expires_at") != NULL) {
        if (nx_json_string(nx_json_get(v, "expires_at"), &s) != 0
            || ngx_strlen(s) < 10 || ngx_strlen(s) > 40
            || !(s[0] >= '0' && s[0] <= '9'))
        {
            ngx_nexus_authz_invalid(r, "\"expires_at\" must be an RFC 3339 "
                                       "time");
            return;
        }

        at.data = (u_char *) s;
        at.len = ngx_strlen(s);
    }

    /* an editor who may share may not make owners: that is an admin's */
    if (perm == NGX_NEXUS_ACL_OWNER
        && ctx->principal.role != NGX_NEXUS_ROLE_ADMIN)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_authz_admin_only(r, "only an admin grants owner"));
        return;
    }

    /* the strings live in the body's tree, freed with the request */
    actx->tenant = tenant;
    actx->type.data = (u_char *) type;
    actx->type.len = ngx_strlen(type);
    actx->principal.data = (u_char *) id;
    actx->principal.len = ngx_strlen(id);
    actx->at = at;
    actx->expires = expires;

    rc = ngx_nexus_authz_grants(r, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_nexus_authz_done(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    u_char                 *buf, *members;
    size_t                  len;
    int64_t                 tenant_id;
    ngx_uint_t              status, found;
    const char             *state;
    ngx_http_request_t     *r;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_authz_ctx_t  *actx;

    r = q->data;
    ctx = ngx_nexus_pg_answered(r);
    actx = ctx->handler_ctx;

    if (rc == NGX_DECLINED) {
        rc = ngx_nexus_pg_unavailable(r);
        goto done;
    }

    if (rc == NGX_ERROR) {
        state = ngx_nexus_pg_sqlstate(res);

        if (ngx_strcmp(state, "23505") == 0) {
            rc = ngx_nexus_send_error(r, NGX_HTTP_CONFLICT, "POLICY_EXISTS",
                                      "a policy with this name exists", NULL);
            goto done;
        }

        if (ngx_strcmp(state, "42501") == 0) {
            /* another tenant's document: not one of ours */
            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "DOCUMENT_NOT_FOUND",
                                      "no such document", NULL);
            goto done;
        }

        if (state[0] == '2' && (state[1] == '2' || state[1] == '3')) {
            /* a CHECK, a bad timestamp: what was sent is not acceptable */
            rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR",
                                      "the values are out of range", NULL);
            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus authz query failed: %s",
                      PQresultErrorMessage(res));

        rc = ngx_nexus_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "INTERNAL_ERROR",
                                  "the request could not be completed",
                                  NULL);
        goto done;
    }

    if (actx->op == NGX_NEXUS_AUTHZ_SIMULATE) {
        ngx_nexus_authz_simulate(r, res);
        return;
    }

    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        /* grants and revocations: whether the tenant, an owner grant */
        found = (PQntuples(res) == 1 && PQnfields(res) > 2
                 && PQgetvalue(res, 0, 2)[0] == 't');

        switch (actx->op) {

        case NGX_NEXUS_AUTHZ_GRANT:
            if (found) {
                rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                          "KEY_NOT_FOUND", "no such key",
                                          NULL);
                break;
            }

            /* fall through */

        case NGX_NEXUS_AUTHZ_CREATE:
            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "TENANT_NOT_FOUND", "no such tenant",
                                      NULL);
            break;

        case NGX_NEXUS_AUTHZ_REVOKE:
            if (found) {
                rc = ngx_nexus_authz_admin_only(r, "only an admin revokes "
                                                   "an owner grant");
                break;
            }

            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "GRANT_NOT_FOUND", "no such grant",
                                      NULL);
            break;

        default:
            rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "POLICY_NOT_FOUND", "no such policy",
                                      NULL);
            break;
        }

        goto done;
    }

    len = PQgetlength(res, 0, 0);

    /* the result is freed after this handler: copy it */
    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_memcpy(buf, PQgetvalue(res, 0, 0), len);

    status = (actx->op == NGX_NEXUS_AUTHZ_CREATE
              || actx->op == NGX_NEXUS_AUTHZ_GRANT)
             ? NGX_HTTP_CREATED : NGX_HTTP_OK;

    if (ngx_nexus_authz_events[actx->op] != NULL) {
        /* in the chain of the tenant concerned; the platform's: 0 */
        tenant_id = 0;

        if (PQnfields(res) > 1 && !PQgetisnull(res, 0, 1)) {
            tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                  PQgetlength(res, 0, 1));
        }

        members = ngx_pnalloc(r->pool, len + sizeof("\"result\":"));
        if (members != NULL) {
            ngx_sprintf(members, "\"result\":%*s%Z", len, buf);
            ngx_nexus_audit_request(r, tenant_id,
                                    ngx_nexus_authz_events[actx->op],
                                    NGX_NEXUS_AUDIT_SUCCESS,
                                    (char *) members);
        }
    }

    rc = ngx_nexus_send_data(r, status, buf, len);

done:

    ngx_http_finalize_request(r, rc);
}


static void
ngx_nexus_authz_invalid(ngx_http_request_t *r, const char *message)
{
    ngx_http_finalize_request(r,
        ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                             message, NULL));
}
