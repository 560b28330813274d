
/*
 * Copyright (C) Nexus authors
 *
 * The PII guard: before a request body goes anywhere (a provider, an
 * upstream behind proxy_pass), it is read in the ACCESS phase and scanned
 * for card numbers, SSNs, emails, phones and IBANs (common/nx_pii.c).
 *
 *   block   403 POLICY_DENIED naming the policy and the kinds, never the
 *           values;
 *   redact  the matched letters and digits become '*' in place, so the
 *           length (Content-Length) and the JSON stay valid;
 *   log     a warning naming the kinds, never the values.
 *
 * The body is read the way the mirror module reads it, and preserved for
 * the content phase.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"

#include <nx_pii.h>


#define NGX_NEXUS_PII_MAX_BODY      (1024 * 1024)
#define NGX_NEXUS_PII_MATCHES       64


static void ngx_nexus_pii_body(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_pii_inspect(ngx_http_request_t *r,
    ngx_nexus_loc_conf_t *nlcf);


static ngx_conf_enum_t  ngx_nexus_pii_modes[] = {
    { ngx_string("off"), NGX_NEXUS_PII_OFF },
    { ngx_string("block"), NGX_NEXUS_PII_BLOCK },
    { ngx_string("redact"), NGX_NEXUS_PII_REDACT },
    { ngx_string("log"), NGX_NEXUS_PII_LOG },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_nexus_pii_kinds[] = {
    { ngx_string("card"), NX_PII_CARD },
    { ngx_string("ssn"), NX_PII_SSN },
    { ngx_string("email"), NX_PII_EMAIL },
    { ngx_string("phone"), NX_PII_PHONE },
    { ngx_string("iban"), NX_PII_IBAN },
    { ngx_null_string, 0 }
};


/* nexus_pii_guard off | block | redact | log [kind ...]; */

char *
ngx_nexus_pii_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_str_t        *value;
    ngx_uint_t        i, k;
    ngx_conf_enum_t  *e;

    if (nlcf->pii_mode != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (e = ngx_nexus_pii_modes; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strcmp(e->name.data, value[1].data) == 0)
        {
            break;
        }
    }

    if (e->name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    nlcf->pii_mode = e->value;
    nlcf->pii_kinds = (cf->args->nelts > 2) ? 0 : NX_PII_ALL;

    for (i = 2; i < cf->args->nelts; i++) {
        for (k = 0; ngx_nexus_pii_kinds[k].name.len; k++) {
            if (ngx_strcmp(ngx_nexus_pii_kinds[k].name.data, value[i].data)
                == 0)
            {
                nlcf->pii_kinds |= ngx_nexus_pii_kinds[k].value;
                break;
            }
        }

        if (ngx_nexus_pii_kinds[k].name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid PII kind \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * Called by the access handler once the request may otherwise go on:
 * NGX_OK to go on, NGX_DONE while the body is read or when the request was
 * answered, or an HTTP status.
 */

ngx_int_t
ngx_nexus_pii_check(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx)
{
    ngx_int_t              rc;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (nlcf->pii_mode == NGX_NEXUS_PII_OFF
        || (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        return NGX_OK;
    }

    if (ctx->pii_state) {
        return ctx->pii_status;
    }

    ctx->pii_state = 1;
    ctx->pii_status = NGX_DONE;

    rc = ngx_http_read_client_request_body(r, ngx_nexus_pii_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_nexus_pii_body(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_loc_conf_t  *nlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    rc = ngx_nexus_pii_inspect(r, nlcf);

    if (rc != NGX_DECLINED) {
        /* answered (or failed): the phases must not go on */
        ctx->pii_status = NGX_DONE;
        ngx_http_finalize_request(r, rc);
        return;
    }

    ctx->pii_status = NGX_OK;

    /* the content phase (proxy_pass, a provider) sends the same body */
    r->preserve_body = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * NGX_DECLINED to go on; otherwise the rc of a response already sent (an
 * error response sent successfully returns NGX_OK)
 */

static ngx_int_t
ngx_nexus_pii_inspect(ngx_http_request_t *r, ngx_nexus_loc_conf_t *nlcf)
{
    u_char            *p, *details;
    size_t             n, i;
    unsigned           kinds;
    ngx_str_t          body;
    ngx_buf_t         *b;
    ngx_chain_t       *cl;
    nx_pii_match_t     m[NGX_NEXUS_PII_MATCHES];

    if (ngx_nexus_body_collect(r, &body, NGX_NEXUS_PII_MAX_BODY) != NGX_OK) {
        return ngx_nexus_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "PAYLOAD_TOO_LARGE",
                                    "the request body is too large to be "
                                    "checked for personal data", NULL);
    }

    if (body.len == 0) {
        return NGX_DECLINED;
    }

    n = nx_pii_scan((const char *) body.data, body.len,
                    nlcf->pii_kinds | NX_PII_JSON, m, NGX_NEXUS_PII_MATCHES);

    if (n == 0) {
        return NGX_DECLINED;
    }

    kinds = 0;

    for (i = 0; i < ngx_min(n, NGX_NEXUS_PII_MATCHES); i++) {
        kinds |= m[i].kind;
    }

    details = ngx_pnalloc(r->pool, 128);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(details, "{\"policy\":\"pii_guard\",\"kinds\":[");

    for (i = 0; ngx_nexus_pii_kinds[i].name.len; i++) {
        if (kinds & ngx_nexus_pii_kinds[i].value) {
            p = ngx_sprintf(p, "%s\"%V\"", p[-1] == '[' ? "" : ",",
                            &ngx_nexus_pii_kinds[i].name);
        }
    }

    p = ngx_sprintf(p, "]}%Z");

    switch (nlcf->pii_mode) {

    case NGX_NEXUS_PII_BLOCK:
        return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "POLICY_DENIED",
                                    "the request contains personal data "
                                    "this route does not accept",
                                    (char *) details);

    case NGX_NEXUS_PII_LOG:
        /* the kinds only: a value must never reach a log */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "nexus pii guard: %uz match(es) %s", n, details);
        return NGX_DECLINED;

    default:
        break;
    }

    /* redact: mask the copy, then send the copy instead of the original */

    if (n > NGX_NEXUS_PII_MATCHES) {
        /* more than one pass can hold: mask in rounds */
        while (n) {
            nx_pii_redact((char *) body.data, body.len, m,
                          ngx_min(n, NGX_NEXUS_PII_MATCHES));
            n = nx_pii_scan((const char *) body.data, body.len,
                            nlcf->pii_kinds | NX_PII_JSON, m,
                            NGX_NEXUS_PII_MATCHES);
        }

    } else {
        nx_pii_redact((char *) body.data, body.len, m, n);
    }

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body.data;
    b->last = body.data + body.len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->request_body->buf = b;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "nexus pii guard: redacted %s", details);

    return NGX_DECLINED;
}
