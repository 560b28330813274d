
/*
 * Copyright (C) Nexus authors
 *
 * The tenant's request guardrails (tenants.guardrails, 0016_guardrails.sql),
 * applied by the gateway to the body of a chat or embeddings request after
 * it is read and before any provider sees it:
 *
 *   max_prompt_bytes  a larger body is refused, 403 POLICY_DENIED
 *                     "max_prompt_size", before it is scanned or parsed;
 *   pii               the body is scanned (common/nx_pii.c) for the
 *                     tenant's kinds: block refuses it, 403 POLICY_DENIED
 *                     "pii" naming the kinds, never the values; redact
 *                     masks the raw bytes in place before they are parsed,
 *                     so that every provider body is built from the mask;
 *                     log lets it through.  Each emits policy.pii_detected
 *                     to the audit log, with the kinds and the action;
 *   max_tokens        a request that asks for more is refused, 403
 *                     POLICY_DENIED "max_tokens"; one that asks for none
 *                     is sent with the cap, so that the cap always holds.
 *
 * Policies block or log; none rewrites what a client asked for except
 * redact, which the tenant chose.  The location's nexus_pii_guard, where
 * configured, has already run in the access phase.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_nexus_module.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_audit.h"

#include <nx_pii.h>


#define NGX_NEXUS_GUARD_MATCHES     64


static ngx_int_t ngx_nexus_guard_pii(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, ngx_str_t *body);
static ngx_int_t ngx_nexus_guard_deny(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, const char *message, u_char *details);


static const char  *ngx_nexus_guard_actions[] = {
    "none", "block", "redact", "log"
};


/*
 * NGX_DECLINED to go on (body possibly masked in place); otherwise the rc
 * of a response already sent
 */

ngx_int_t
ngx_nexus_guard_body(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_str_t *body)
{
    u_char                 *details;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_principal_t  *pr;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    pr = &ctx->principal;

    if (pr->guard_max_prompt && (int64_t) body->len > pr->guard_max_prompt) {
        details = ngx_pnalloc(r->pool, 64);
        if (details == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(details, "{\"policy\":\"max_prompt_size\",\"limit\":%L}%Z",
                    pr->guard_max_prompt);

        return ngx_nexus_guard_deny(r, px, "the request is larger than the "
                                    "tenant's guardrails allow", details);
    }

    if (pr->guard_pii_mode != NGX_NEXUS_PII_OFF && body->len) {
        return ngx_nexus_guard_pii(r, px, body);
    }

    return NGX_DECLINED;
}


/* after nx_llm_parse(): the same contract as ngx_nexus_guard_body() */

ngx_int_t
ngx_nexus_guard_tokens(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    u_char           *details;
    int64_t           cap;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    cap = ctx->principal.guard_max_tokens;

    if (cap == 0 || px->kind == NX_LLM_EMBEDDINGS) {
        return NGX_DECLINED;
    }

    if (px->req.max_tokens <= 0) {
        px->req.max_tokens = cap;
        px->req.max_tokens_forced = 1;
        return NGX_DECLINED;
    }

    if (px->req.max_tokens <= cap) {
        return NGX_DECLINED;
    }

    details = ngx_pnalloc(r->pool, 64);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"policy\":\"max_tokens\",\"limit\":%L}%Z", cap);

    return ngx_nexus_guard_deny(r, px, "the request asks for more tokens "
                                "than the tenant's guardrails allow",
                                details);
}


static ngx_int_t
ngx_nexus_guard_pii(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_str_t *body)
{
    u_char                 *p, *details;
    size_t                  n, i;
    unsigned                kinds, mask;
    ngx_uint_t              mode;
    ngx_nexus_ctx_t        *ctx;
    nx_pii_match_t          m[NGX_NEXUS_GUARD_MATCHES];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    mode = ctx->principal.guard_pii_mode;
    mask = ctx->principal.guard_pii_kinds | NX_PII_JSON;

    n = nx_pii_scan((const char *) body->data, body->len, mask, m,
                    NGX_NEXUS_GUARD_MATCHES);

    if (n == 0) {
        return NGX_DECLINED;
    }

    kinds = 0;

    for (i = 0; i < ngx_min(n, NGX_NEXUS_GUARD_MATCHES); i++) {
        kinds |= m[i].kind;
    }

    /* {"policy":"pii","kinds":[five names],"action":"redact"} */
    details = ngx_pnalloc(r->pool, 160);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(details, "{\"policy\":\"pii\",\"kinds\":[");

    for (i = NX_PII_CARD; i <= NX_PII_IBAN; i <<= 1) {
        if (kinds & i) {
            p = ngx_sprintf(p, "%s\"%s\"", p[-1] == '[' ? "" : ",",
                            nx_pii_kind_name((nx_pii_kind_t) i));
        }
    }

    p = ngx_sprintf(p, "],\"action\":\"%s\"", ngx_nexus_guard_actions[mode]);

    /* the members alone for the audit log, then the object */
    *p = '\0';

    ngx_nexus_audit_request(r, ctx->principal.tenant_id,
                            "policy.pii_detected",
                            mode == NGX_NEXUS_PII_BLOCK
                            ? NGX_NEXUS_AUDIT_FAILURE
                            : NGX_NEXUS_AUDIT_SUCCESS,
                            (char *) details + 1);

    *p++ = '}';
    *p = '\0';

    switch (mode) {

    case NGX_NEXUS_PII_BLOCK:
        return ngx_nexus_guard_deny(r, px, "the request contains personal "
                                    "data the tenant's guardrails do not "
                                    "accept", details);

    case NGX_NEXUS_PII_LOG:
        /* the kinds only: a value must never reach a log */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "nexus guardrails: %uz pii match(es) %s", n, details);
        return NGX_DECLINED;

    default:
        break;
    }

    /* redact: more matches than one pass holds are masked in rounds */

    while (n) {
        nx_pii_redact((char *) body->data, body->len, m,
                      ngx_min(n, NGX_NEXUS_GUARD_MATCHES));

        if (n <= NGX_NEXUS_GUARD_MATCHES) {
            break;
        }

        n = nx_pii_scan((const char *) body->data, body->len, mask, m,
                        NGX_NEXUS_GUARD_MATCHES);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "nexus guardrails: redacted %s", details);

    return NGX_DECLINED;
}


/* the gateway answers in the Nexus envelope, not as a provider would */

static ngx_int_t
ngx_nexus_guard_deny(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    const char *message, u_char *details)
{
    px->sent_own = 1;
    px->error_code = "POLICY_DENIED";

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "POLICY_DENIED",
                                message, (char *) details);
}
