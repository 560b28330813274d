
/*
 * Copyright (C) Nexus authors
 *
 * GET /v1/admin/usage/{tenant}?period=day|month: a tenant's usage in the
 * current UTC day or month, from usage_events, in total and by model.
 * Authorized like the quota endpoint: the access phase required an admin
 * key; a tenant's admin reads its own tenant only, a platform admin any.
 * PostgreSQL renders the whole document (common/nx_usage.h), the same one
 * nexusctl show-usage --json prints.
 *
 * GET /v1/self-serve/usage/summary?period=day|month: the same document,
 * of the caller's own tenant, for its admin.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_usage.h"
#include "ngx_nexus_audit.h"

#include <nx_usage.h>


static ngx_int_t ngx_nexus_usage_summary(ngx_http_request_t *r,
    ngx_str_t *tenant, int64_t scope);
static void ngx_nexus_usage_admin_done(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);


static ngx_uint_t  ngx_nexus_usage_admin_stmt;


ngx_int_t
ngx_nexus_usage_admin_init_statements(ngx_conf_t *cf)
{
    return ngx_nexus_pg_statement(cf, "nexus_admin_usage", NX_USAGE_SQL, 3,
                                  &ngx_nexus_usage_admin_stmt);
}


ngx_int_t
ngx_nexus_usage_admin(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    /* a tenant admin asking for another tenant finds no such tenant */
    return ngx_nexus_usage_summary(r, tenant, ctx->principal.platform
                                              ? 0 : ctx->principal.tenant_id);
}


ngx_int_t
ngx_nexus_usage_self_serve(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx->principal.role != NGX_NEXUS_ROLE_ADMIN) {
        ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                  "{\"required_role\":\"admin\"}");
        return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                    "the usage summary requires the admin "
                                    "role", "{\"required_role\":\"admin\"}");
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        ngx_nexus_audit_request(r, ctx->principal.tenant_id,
                                "selfserve.usage.viewed",
                                NGX_NEXUS_AUDIT_SUCCESS, NULL);
    }

    return ngx_nexus_usage_summary(r, &ctx->principal.tenant,
                                   ctx->principal.tenant_id);
}


/* scope: the only tenant the caller may see, 0 any */

static ngx_int_t
ngx_nexus_usage_summary(ngx_http_request_t *r, ngx_str_t *tenant,
    int64_t scope)
{
    ngx_str_t              period;
    ngx_nexus_pg_query_t  *q;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    if (ngx_http_arg(r, (u_char *) "period", 6, &period) != NGX_OK) {
        ngx_str_set(&period, "day");
    }

    if (!(period.len == 3 && ngx_strncmp(period.data, "day", 3) == 0)
        && !(period.len == 5 && ngx_strncmp(period.data, "month", 5) == 0))
    {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR",
                                    "period must be \"day\" or \"month\"",
                                    "{\"param\":\"period\","
                                    "\"allowed\":[\"day\",\"month\"]}");
    }

    q = ngx_nexus_pg_query(ngx_nexus_usage_admin_stmt,
                           tenant->len + NGX_INT64_LEN + period.len + 3);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, tenant->data, tenant->len);
    (void) ngx_nexus_pg_param_int(q, scope);
    (void) ngx_nexus_pg_param(q, period.data, period.len);

    q->handler = ngx_nexus_usage_admin_done;
    q->data = r;

    /* the request stays alive until ngx_nexus_usage_admin_done() */

    return ngx_nexus_pg_ask(r, q, 1);
}


static void
ngx_nexus_usage_admin_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    u_char              *buf;
    size_t               len;
    ngx_http_request_t  *r;

    r = q->data;
    (void) ngx_nexus_pg_answered(r);

    if (rc == NGX_DECLINED) {
        rc = ngx_nexus_pg_unavailable(r);
        goto done;
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus admin usage query failed: %s",
                      PQresultErrorMessage(res));

        rc = ngx_nexus_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "INTERNAL_ERROR",
                                  "the request could not be completed",
                                  NULL);
        goto done;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 1
        || PQgetisnull(res, 0, 0))
    {
        rc = ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "TENANT_NOT_FOUND",
                                  "no such tenant", NULL);
        goto done;
    }

    /* the result is freed after this handler: copy it */

    len = PQgetlength(res, 0, 0);

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_memcpy(buf, PQgetvalue(res, 0, 0), len);

    rc = ngx_nexus_send_data(r, NGX_HTTP_OK, buf, len);

done:

    ngx_http_finalize_request(r, rc);
}
