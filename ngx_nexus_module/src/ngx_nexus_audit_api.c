
/*
 * Copyright (C) Nexus authors
 *
 * GET /v1/audit/events: the audit log, newest first, one page at a time.
 *
 *   ?event_type=rbac.forbidden&outcome=failure&actor=<key prefix|nexusctl>
 *   &since=<RFC 3339>&until=<RFC 3339>&tenant=<name>&limit=1..200
 *   &cursor=<next_cursor of the page before>
 *
 * Admin keys only.  A tenant's admin reads its own tenant's events; a
 * platform admin reads every tenant's, or one tenant's with tenant=.  The
 * cursor is opaque to clients: the (time, id) of the last row of the page
 * before, in base64url.  PostgreSQL builds the query with the filters
 * given (nexus_audit_events() in migrations/0010_audit_log.sql) and
 * renders the items.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_audit.h"

#include <nx_json.h>
#include <nx_key.h>
#include <nx_name.h>


#define NGX_NEXUS_AUDIT_API_LIMIT       50
#define NGX_NEXUS_AUDIT_API_LIMIT_MAX   200

/* "<ts>.<id>": two int64 and a dot */
#define NGX_NEXUS_AUDIT_CURSOR_MAX      (2 * NGX_INT64_LEN + 1)


typedef struct {
    const char                 *name;
    ngx_uint_t                  kind;
} ngx_nexus_audit_filter_t;


#define NGX_NEXUS_AUDIT_F_TYPE          0
#define NGX_NEXUS_AUDIT_F_OUTCOME       1
#define NGX_NEXUS_AUDIT_F_ACTOR         2
#define NGX_NEXUS_AUDIT_F_TIME          3
#define NGX_NEXUS_AUDIT_F_TENANT        4


static ngx_int_t ngx_nexus_audit_api_arg(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_nexus_audit_api_valid(ngx_str_t *v, ngx_uint_t kind);
static ngx_int_t ngx_nexus_audit_api_cursor(ngx_http_request_t *r,
    ngx_str_t *cursor, int64_t *ts, int64_t *id);
static ngx_int_t ngx_nexus_audit_api_invalid(ngx_http_request_t *r,
    const char *param, const char *message);
static void ngx_nexus_audit_api_done(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);


static ngx_uint_t  ngx_nexus_audit_api_stmt;


/* the filters passed through to SQL, checked here first */

static ngx_nexus_audit_filter_t  ngx_nexus_audit_filters[] = {
    { "event_type", NGX_NEXUS_AUDIT_F_TYPE },
    { "outcome", NGX_NEXUS_AUDIT_F_OUTCOME },
    { "actor", NGX_NEXUS_AUDIT_F_ACTOR },
    { "since", NGX_NEXUS_AUDIT_F_TIME },
    { "until", NGX_NEXUS_AUDIT_F_TIME },
    { "tenant", NGX_NEXUS_AUDIT_F_TENANT },
    { NULL, 0 }
};


static const char  *ngx_nexus_audit_filter_errors[] = {
    "event_type must be 1-64 characters of [a-z0-9_.]",
    "outcome must be \"success\" or \"failure\"",
    "actor must be a key prefix (12 hexadecimal digits) or \"nexusctl\"",
    "since and until must be RFC 3339 times, "
    "such as 2024-05-01T12:00:00Z",
    "tenant must be a tenant name"
};


ngx_int_t
ngx_nexus_audit_api_init_statements(ngx_conf_t *cf)
{
    return ngx_nexus_pg_statement(cf, "nexus_audit_events",
               "SELECT * FROM nexus_audit_events($1::json)",
               1, &ngx_nexus_audit_api_stmt);
}


ngx_int_t
ngx_nexus_audit_api(ngx_http_request_t *r)
{
    u_char                    *p, *json;
    size_t                     len;
    int64_t                    after_ts, after_id;
    ngx_int_t                  limit;
    ngx_str_t                  v, values[6];
    ngx_uint_t                 i;
    ngx_nexus_ctx_t           *ctx;
    ngx_nexus_pg_query_t      *q;
    ngx_nexus_audit_filter_t  *f;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx->principal.role != NGX_NEXUS_ROLE_ADMIN) {
        ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                  "{\"required_role\":\"admin\"}");
        return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                    "the audit log requires the admin role",
                                    "{\"required_role\":\"admin\"}");
    }

    limit = NGX_NEXUS_AUDIT_API_LIMIT;

    if (ngx_nexus_audit_api_arg(r, "limit", &v) == NGX_OK) {
        limit = (v.len > 0 && v.len <= 3) ? ngx_atoi(v.data, v.len)
                                          : NGX_ERROR;

        if (limit < 1 || limit > NGX_NEXUS_AUDIT_API_LIMIT_MAX) {
            return ngx_nexus_audit_api_invalid(r, "limit",
                                               "limit must be an integer "
                                               "from 1 to 200");
        }
    }

    after_id = 0;
    after_ts = 0;

    if (ngx_nexus_audit_api_arg(r, "cursor", &v) == NGX_OK
        && ngx_nexus_audit_api_cursor(r, &v, &after_ts, &after_id) != NGX_OK)
    {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "INVALID_CURSOR",
                                    "the cursor is not one this endpoint "
                                    "returned", "{\"param\":\"cursor\"}");
    }

    len = sizeof("{\"scope\":,\"after_ts\":,\"after_id\":,\"limit\":}")
          + 3 * NGX_INT64_LEN + 8;

    for (i = 0, f = ngx_nexus_audit_filters; f->name; i++, f++) {
        ngx_str_null(&values[i]);

        if (ngx_nexus_audit_api_arg(r, f->name, &values[i]) != NGX_OK) {
            continue;
        }

        if (ngx_nexus_audit_api_valid(&values[i], f->kind) != NGX_OK) {
            return ngx_nexus_audit_api_invalid(r, f->name,
                                  ngx_nexus_audit_filter_errors[f->kind]);
        }

        /* checked: nothing to escape */
        len += sizeof(",\"\":\"\"") + ngx_strlen(f->name) + values[i].len;
    }

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a tenant's admin sees its own tenant only; a platform admin all */

    if (ctx->principal.platform) {
        p = ngx_cpymem(json, "{\"scope\":null", sizeof("{\"scope\":null") - 1);

    } else {
        p = ngx_sprintf(json, "{\"scope\":%L", ctx->principal.tenant_id);
    }

    p = ngx_sprintf(p, ",\"limit\":%i", limit);

    if (after_id) {
        p = ngx_sprintf(p, ",\"after_ts\":%L,\"after_id\":%L", after_ts,
                        after_id);
    }

    for (i = 0, f = ngx_nexus_audit_filters; f->name; i++, f++) {
        if (values[i].data) {
            p = ngx_sprintf(p, ",\"%s\":\"%V\"", f->name, &values[i]);
        }
    }

    *p++ = '}';

    q = ngx_nexus_pg_query(ngx_nexus_audit_api_stmt, p - json + 1);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, json, p - json);

    q->handler = ngx_nexus_audit_api_done;
    q->data = r;

    /* the request stays alive until ngx_nexus_audit_api_done() */

    return ngx_nexus_pg_ask(r, q, 1);
}


/* a query argument, URL-decoded; NGX_DECLINED when absent */

static ngx_int_t
ngx_nexus_audit_api_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char     *dst;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(r->pool, raw.len + 1);
    if (value->data == NULL) {
        value->len = 0;
        return NGX_OK;
    }

    dst = value->data;
    ngx_unescape_uri(&dst, &raw.data, raw.len, 0);
    value->len = dst - value->data;

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_audit_api_valid(ngx_str_t *v, ngx_uint_t kind)
{
    u_char  *p, c;

    switch (kind) {

    case NGX_NEXUS_AUDIT_F_OUTCOME:
        return ((v->len == 7 && ngx_strncmp(v->data, "success", 7) == 0)
                || (v->len == 7 && ngx_strncmp(v->data, "failure", 7) == 0))
               ? NGX_OK : NGX_ERROR;

    case NGX_NEXUS_AUDIT_F_TENANT:
        return nx_tenant_name_valid((char *) v->data, v->len) == 0
               ? NGX_OK : NGX_ERROR;

    case NGX_NEXUS_AUDIT_F_ACTOR:
        /* the actor of nexusctl's own events */
        if (v->len == sizeof("nexusctl") - 1
            && ngx_strncmp(v->data, "nexusctl", v->len) == 0)
        {
            return NGX_OK;
        }

        if (v->len != NX_KEY_PREFIX_LEN) {
            return NGX_ERROR;
        }
        break;

    default:
        if (v->len == 0 || v->len > 64) {
            return NGX_ERROR;
        }
        break;
    }

    for (p = v->data; p < v->data + v->len; p++) {
        c = *p;

        switch (kind) {

        case NGX_NEXUS_AUDIT_F_TYPE:
            if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                || c == '_' || c == '.')
            {
                continue;
            }
            return NGX_ERROR;

        case NGX_NEXUS_AUDIT_F_ACTOR:
            if ((c >= 'a' && c <= 'f') || (c >= '0' && c <= '9')) {
                continue;
            }
            return NGX_ERROR;

        default: /* NGX_NEXUS_AUDIT_F_TIME: PostgreSQL parses the rest */
            if ((c >= '0' && c <= '9') || c == '-' || c == ':' || c == '.'
                || c == '+' || c == ' ' || c == 'T' || c == 't'
                || c == 'Z' || c == 'z')
            {
                continue;
            }
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* base64url("<ts>.<id>"), ts in microseconds, id > 0 */

static ngx_int_t
ngx_nexus_audit_api_cursor(ngx_http_request_t *r, ngx_str_t *cursor,
    int64_t *ts, int64_t *id)
{
    u_char     *dot, *p, *digits;
    ngx_str_t   s;
    u_char      buf[NGX_NEXUS_AUDIT_CURSOR_MAX];

    if (cursor->len == 0
        || ngx_base64_decoded_length(cursor->len) > sizeof(buf))
    {
        return NGX_ERROR;
    }

    s.data = buf;

    if (ngx_decode_base64url(&s, cursor) != NGX_OK) {
        return NGX_ERROR;
    }

    dot = ngx_strlchr(s.data, s.data + s.len, '.');
    if (dot == NULL) {
        return NGX_ERROR;
    }

    digits = (s.data < dot && s.data[0] == '-') ? s.data + 1 : s.data;

    for (p = digits; p < s.data + s.len; p++) {
        if (p != dot && (*p < '0' || *p > '9')) {
            return NGX_ERROR;
        }
    }

    if (dot == digits || dot - digits > 18 || s.data + s.len - dot - 1 < 1
        || s.data + s.len - dot - 1 > 18)
    {
        return NGX_ERROR;
    }

    *ts = ngx_atoof(digits, dot - digits);
    *id = ngx_atoof(dot + 1, s.data + s.len - dot - 1);

    if (digits != s.data) {
        *ts = -*ts;
    }

    return *id > 0 ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_nexus_audit_api_invalid(ngx_http_request_t *r, const char *param,
    const char *message)
{
    u_char  *details;

    details = ngx_pnalloc(r->pool, sizeof("{\"param\":\"\"}") + 16);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"param\":\"%s\"}%Z", param);

    return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                                message, (char *) details);
}


static void
ngx_nexus_audit_api_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    u_char              *buf, *p;
    size_t               len;
    ngx_str_t            cursor, plain;
    const char          *state;
    ngx_http_request_t  *r;
    u_char               tmp[NGX_NEXUS_AUDIT_CURSOR_MAX];

    r = q->data;
    (void) ngx_nexus_pg_answered(r);

    if (rc == NGX_DECLINED) {
        rc = ngx_nexus_pg_unavailable(r);
        goto done;
    }

    if (rc == NGX_ERROR) {
        state = ngx_nexus_pg_sqlstate(res);

        /* a since or until that PostgreSQL cannot read as a time */
        if (ngx_strncmp(state, "2200", 4) == 0) {
            rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR",
                                      ngx_nexus_audit_filter_errors[
                                          NGX_NEXUS_AUDIT_F_TIME],
                                      "{\"params\":[\"since\",\"until\"]}");
            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus audit events query failed: %s",
                      PQresultErrorMessage(res));

        rc = ngx_nexus_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "INTERNAL_ERROR",
                                  "the request could not be completed",
                                  NULL);
        goto done;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 4 || PQgetisnull(res, 0, 0))
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_str_null(&cursor);

    if (PQgetvalue(res, 0, 1)[0] == 't' && !PQgetisnull(res, 0, 2)
        && !PQgetisnull(res, 0, 3))
    {
        plain.data = tmp;
        plain.len = ngx_snprintf(tmp, sizeof(tmp), "%s.%s",
                                 PQgetvalue(res, 0, 2),
                                 PQgetvalue(res, 0, 3))
                    - tmp;

        cursor.data = ngx_pnalloc(r->pool,
                                  ngx_base64_encoded_length(plain.len));
        if (cursor.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        ngx_encode_base64url(&cursor, &plain);
    }

    len = PQgetlength(res, 0, 0);

    /* the longer of the two endings below, and the cursor's quotes */
    buf = ngx_pnalloc(r->pool, len + cursor.len + 2
                               + sizeof("{\"items\":,\"page\":{"
                                        "\"next_cursor\":null,"
                                        "\"has_more\":false}}"));
    if (buf == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    p = ngx_cpymem(buf, "{\"items\":", sizeof("{\"items\":") - 1);
    p = ngx_cpymem(p, PQgetvalue(res, 0, 0), len);

    if (cursor.len) {
        p = ngx_sprintf(p, ",\"page\":{\"next_cursor\":\"%V\","
                        "\"has_more\":true}}", &cursor);

    } else {
        p = ngx_cpymem(p, ",\"page\":{\"next_cursor\":null,"
                       "\"has_more\":false}}",
                       sizeof(",\"page\":{\"next_cursor\":null,"
                              "\"has_more\":false}}") - 1);
    }

    rc = ngx_nexus_send_data(r, NGX_HTTP_OK, buf, p - buf);

done:

    ngx_http_finalize_request(r, rc);
}
