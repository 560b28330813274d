/*
 * Copyright (C) Nexus authors
 *
 * The OpenAI-compatible endpoints of nexus_api: POST /v1/chat/completions,
 * POST /v1/embeddings, GET /v1/models; and the Ollama-native ones:
 * POST /api/chat, POST /api/generate, GET /api/tags (anything else under
 * /api/ is refused: pulling or deleting models is not a tenant's call).
 *
 * A request is validated, its model checked against the key's effective
 * set (its allowlist intersected with what the providers serve), and the
 * candidate providers are put in order: the model's targets by weight,
 * then their fallbacks.  A model outside the set and a model that does
 * not exist get the same 403, byte for byte.  Where nexus_abac is on, the
 * tenant's ABAC policies then decide on the resolved model (resource type
 * "model", action "chat" or "embeddings") before any provider sees it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_nexus_module.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_discovery.h"
#include "ngx_nexus_admit.h"
#include "ngx_nexus_abac.h"


static ngx_int_t ngx_nexus_gateway_call(ngx_http_request_t *r,
    ngx_uint_t kind, const char *endpoint, const char *scope);
static void ngx_nexus_gateway_body(ngx_http_request_t *r);
static void ngx_nexus_gateway_policy_done(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_nexus_gateway_start(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_gateway_candidates(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px);
static ngx_int_t ngx_nexus_gateway_bodies(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, nx_llm_err_t *err);
static void ngx_nexus_gateway_add(ngx_nexus_proxy_t *px,
    ngx_nexus_provider_t *p, ngx_str_t *served);
static ngx_uint_t ngx_nexus_gateway_allowed(ngx_str_t *models,
    ngx_str_t *model);
static ngx_int_t ngx_nexus_gateway_models(ngx_http_request_t *r,
    ngx_uint_t tags);
static ngx_int_t ngx_nexus_gateway_forbidden(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_gateway_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *message, const char *type,
    const char *code);
static int ngx_nexus_gateway_cmp(const void *a, const void *b);


/* one body for "no such model" and "not yours": nothing to enumerate */
static u_char  ngx_nexus_gateway_no_model[] =
    "{\"error\":{\"message\":\"The model does not exist or you do not have "
    "access to it.\",\"type\":\"invalid_request_error\",\"param\":"
    "\"model\",\"code\":\"model_not_found\"}}";


/* rest: after "/v1/" (native 0) or after "/api/" (native 1) */

ngx_int_t
ngx_nexus_gateway_handler(ngx_http_request_t *r, ngx_str_t *rest,
    ngx_uint_t native)
{
    if (native) {
        if (rest->len == 4 && ngx_strncmp(rest->data, "chat", 4) == 0) {
            return ngx_nexus_gateway_call(r, NX_LLM_OLLAMA_CHAT,
                                          "ollama_chat", "chat");
        }

        if (rest->len == 8 && ngx_strncmp(rest->data, "generate", 8) == 0) {
            return ngx_nexus_gateway_call(r, NX_LLM_OLLAMA_GENERATE,
                                          "ollama_generate", "chat");
        }

        if (rest->len == 4 && ngx_strncmp(rest->data, "tags", 4) == 0) {
            return ngx_nexus_gateway_models(r, 1);
        }

        return ngx_nexus_gateway_error(r, NGX_HTTP_FORBIDDEN,
                                       "this Ollama endpoint is not "
                                       "available through the gateway",
                                       "invalid_request_error",
                                       "endpoint_forbidden");
    }

    if (rest->len == sizeof("chat/completions") - 1
        && ngx_strncmp(rest->data, "chat/completions", rest->len) == 0)
    {
        return ngx_nexus_gateway_call(r, NX_LLM_CHAT, "chat", "chat");
    }

    if (rest->len == sizeof("embeddings") - 1
        && ngx_strncmp(rest->data, "embeddings", rest->len) == 0)
    {
        return ngx_nexus_gateway_call(r, NX_LLM_EMBEDDINGS, "embeddings",
                                      "embeddings");
    }

    if (rest->len == sizeof("models") - 1
        && ngx_strncmp(rest->data, "models", rest->len) == 0)
    {
        return ngx_nexus_gateway_models(r, 0);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_nexus_gateway_call(ngx_http_request_t *r, ngx_uint_t kind,
    const char *endpoint, const char *scope)
{
    ngx_int_t                  rc;
    ngx_str_t                  s;
    ngx_nexus_ctx_t           *ctx;
    ngx_nexus_proxy_t         *px;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (r->method != NGX_HTTP_POST) {
        return ngx_nexus_method_not_allowed(r, "POST");
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    s.data = (u_char *) scope;
    s.len = ngx_strlen(scope);

    if (!ngx_nexus_auth_has_scope(&ctx->principal.scopes, &s)) {
        return ngx_nexus_auth_missing_scope(r, &s);
    }

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (nmcf->providers.nelts == 0) {
        return ngx_nexus_gateway_forbidden(r);
    }

    px = ngx_nexus_proxy_create(r, kind, endpoint);
    if (px == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->client_max_body_size
        && r->headers_in.content_length_n > clcf->client_max_body_size)
    {
        return ngx_nexus_gateway_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "the request body is too large",
                                       "invalid_request_error",
                                       "request_too_large");
    }

    rc = ngx_http_read_client_request_body(r, ngx_nexus_gateway_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_nexus_gateway_body(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    nx_buf_t                   json = NX_BUF_INIT;
    ngx_str_t                  body;
    nx_llm_err_t               err;
    ngx_nexus_proxy_t         *px;
    ngx_http_core_loc_conf_t  *clcf;

    px = ngx_nexus_proxy_get(r);

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ngx_nexus_body_collect(r, &body,
                               clcf->client_max_body_size
                               ? (size_t) clcf->client_max_body_size
                               : NGX_NEXUS_PROXY_BODY_MAX)
        != NGX_OK)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_gateway_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "the request body is too large",
                                    "invalid_request_error",
                                    "request_too_large"));
        return;
    }

    /* the tenant's guardrails; redact masks body in place before parsing */
    rc = ngx_nexus_guard_body(r, px, &body);

    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (nx_llm_parse(px->kind, (const char *) body.data, body.len, &px->req,
                     &err)
        != 0)
    {
        if (nx_llm_error_json(&err, "invalid_request_error", &json) != 0) {
            nx_buf_free(&json);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        body.data = ngx_pnalloc(r->pool, json.len);
        if (body.data == NULL) {
            nx_buf_free(&json);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(body.data, json.data, json.len);
        body.len = json.len;
        nx_buf_free(&json);

        px->error_code = "invalid_request";

        ngx_http_finalize_request(r,
            ngx_nexus_proxy_send_json(r, NGX_HTTP_BAD_REQUEST, body.data,
                                      body.len));
        return;
    }

    px->parsed = 1;
    px->client_body = body;
    px->model.data = (u_char *) px->req.model;
    px->model.len = ngx_strlen(px->req.model);

    rc = ngx_nexus_guard_tokens(r, px);

    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    rc = ngx_nexus_gateway_candidates(r, px);

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r, ngx_nexus_gateway_forbidden(r));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* NGX_DONE: the tenant's policies are being loaded */
    rc = ngx_nexus_abac_gateway(r, &px->model,
                                px->kind == NX_LLM_EMBEDDINGS ? "embeddings"
                                                              : "chat",
                                px->req.stream, px->req.max_tokens,
                                ngx_nexus_gateway_policy_done);

    if (rc == NGX_DONE) {
        return;
    }

    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_nexus_gateway_start(r, px);
}


static void
ngx_nexus_gateway_policy_done(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_nexus_gateway_start(r, ngx_nexus_proxy_get(r));
}


static void
ngx_nexus_gateway_start(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_int_t     rc;
    nx_buf_t      json = NX_BUF_INIT;
    ngx_str_t     body;
    nx_llm_err_t  err;

    rc = ngx_nexus_gateway_bodies(r, px, &err);

    if (rc == NGX_OK) {
        /* NGX_AGAIN: Redis's answer starts the proxy, or refuses */
        if (ngx_nexus_admit(r, px) == NGX_OK) {
            ngx_nexus_proxy_start(r, px);
        }

        return;
    }

    if (rc != NGX_BUSY) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* no candidate's type can take this request: the client's to change */
    if (nx_llm_error_json(&err, "invalid_request_error", &json) != 0) {
        nx_buf_free(&json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    body.data = ngx_pnalloc(r->pool, json.len);
    if (body.data == NULL) {
        nx_buf_free(&json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(body.data, json.data, json.len);
    body.len = json.len;
    nx_buf_free(&json);

    px->error_code = "invalid_request";

    ngx_http_finalize_request(r,
        ngx_nexus_proxy_send_json(r, NGX_HTTP_BAD_REQUEST, body.data,
                                  body.len));
}


/*
 * The providers that may serve px->model for this key, in the order to
 * try them; NGX_DECLINED when none (not allowed, or unknown).
 */

static ngx_int_t
ngx_nexus_gateway_candidates(ngx_http_request_t *r, ngx_nexus_proxy_t *px)
{
    ngx_uint_t               i, j, n, total, pick, w;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_model_t       *m, **targets, *t;
    ngx_nexus_provider_t   **p, *fb;
    ngx_nexus_main_conf_t   *nmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (!ngx_nexus_gateway_allowed(&ctx->principal.models, &px->model)) {
        return NGX_DECLINED;
    }

    n = nmcf->models.nelts + nmcf->providers.nelts;

    /* every provider at most once, fallbacks included */
    px->cands = ngx_pcalloc(r->pool, n * sizeof(ngx_nexus_candidate_t));
    targets = ngx_pcalloc(r->pool, n * sizeof(ngx_nexus_model_t *));

    if (px->cands == NULL || targets == NULL) {
        return NGX_ERROR;
    }

    /* configured targets of the name: an alias, or a pinned model */
    m = nmcf->models.elts;
    n = 0;
    total = 0;

    for (i = 0; i < nmcf->models.nelts; i++) {
        if (m[i].name.len == px->model.len
            && ngx_strncmp(m[i].name.data, px->model.data, px->model.len)
               == 0
            && nx_llm_upstream_path(m[i].provider->type, px->kind) != NULL)
        {
            targets[n++] = &m[i];
            total += m[i].weight;
        }
    }

    /* otherwise: every provider that lists the model */
    if (n == 0) {
        p = nmcf->providers.elts;

        for (i = 0; i < nmcf->providers.nelts; i++) {
            if (nx_llm_upstream_path(p[i]->type, px->kind) == NULL
                || !ngx_nexus_discovery_has(p[i], px->model.data,
                                            px->model.len))
            {
                continue;
            }

            t = ngx_pcalloc(r->pool, sizeof(ngx_nexus_model_t));
            if (t == NULL) {
                return NGX_ERROR;
            }

            t->name = px->model;
            t->served = px->model;
            t->provider = p[i];
            t->weight = p[i]->weight;

            targets[n++] = t;
            total += t->weight;
        }
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    /* the first by weight, at random; the others by weight, heaviest first */
    pick = ngx_random() % total;
    w = 0;

    for (i = 0; i < n; i++) {
        w += targets[i]->weight;
        if (pick < w) {
            break;
        }
    }

    t = targets[0];
    targets[0] = targets[i];
    targets[i] = t;

    for (i = 1; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            if (targets[j]->weight > targets[i]->weight) {
                t = targets[i];
                targets[i] = targets[j];
                targets[j] = t;
            }
        }
    }

    for (i = 0; i < n; i++) {
        ngx_nexus_gateway_add(px, targets[i]->provider, &targets[i]->served);
    }

    /* then the fallbacks of each, in order, with the same model name */
    for (i = 0; i < n; i++) {
        for (fb = targets[i]->provider->fallback; fb; fb = fb->fallback) {
            if (nx_llm_upstream_path(fb->type, px->kind) != NULL) {
                ngx_nexus_gateway_add(px, fb, &px->model);
            }
        }
    }

    return NGX_OK;
}


/*
 * The request body for each candidate's provider type, built once per
 * type and served model.  A candidate that cannot take the request (tools
 * for Ollama, say) is dropped; when none can, NGX_BUSY and err says why.
 */

static ngx_int_t
ngx_nexus_gateway_bodies(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    nx_llm_err_t *err)
{
    u_char                 *served;
    nx_buf_t                body = NX_BUF_INIT;
    ngx_uint_t              i, k, n;
    nx_llm_err_t            e;
    ngx_nexus_candidate_t  *c;

    ngx_memzero(err, sizeof(nx_llm_err_t));
    n = 0;

    for (i = 0; i < px->ncands; i++) {
        c = &px->cands[i];

        /* the body of a kept candidate of the same type and model serves */
        for (k = 0; k < n; k++) {
            if (px->cands[k].provider->type == c->provider->type
                && px->cands[k].served.len == c->served.len
                && ngx_strncmp(px->cands[k].served.data, c->served.data,
                               c->served.len)
                   == 0)
            {
                break;
            }
        }

        if (k < n) {
            c->body = px->cands[k].body;
            px->cands[n++] = *c;
            continue;
        }

        served = ngx_pnalloc(r->pool, c->served.len + 1);
        if (served == NULL) {
            return NGX_ERROR;
        }

        ngx_cpystrn(served, c->served.data, c->served.len + 1);

        /* nothing to change: the client's bytes go as they came */
        if (nx_llm_build_verbatim(&px->req, c->provider->type,
                                  (const char *) served))
        {
            c->body = px->client_body;
            px->cands[n++] = *c;
            continue;
        }

        ngx_memzero(&e, sizeof(nx_llm_err_t));
        nx_buf_reset(&body);

        if (nx_llm_build_request(&px->req, c->provider->type,
                                 (const char *) served, 4096, &body, &e)
            != 0)
        {
            if (e.message[0] == '\0') {
                nx_buf_free(&body);
                return NGX_ERROR;
            }

            if (err->message[0] == '\0') {
                *err = e;
            }

            continue;
        }

        c->body.data = ngx_pnalloc(r->pool, body.len);
        if (c->body.data == NULL) {
            nx_buf_free(&body);
            return NGX_ERROR;
        }

        ngx_memcpy(c->body.data, body.data, body.len);
        c->body.len = body.len;

        px->cands[n++] = *c;
    }

    nx_buf_free(&body);

    px->ncands = n;

    return n ? NGX_OK : NGX_BUSY;
}


/*
 * A tenant at its cost budget's cap, in degrade mode: the request goes to
 * the tenant's degrade model instead, with its output capped.  The model
 * is checked and routed like one the client named (the key's effective
 * set, then nexus_model targets or discovered providers), and the answer
 * names it.  Called once the reservation of the degraded request is held,
 * before the first attempt.
 */

ngx_int_t
ngx_nexus_gateway_retarget(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_str_t *model, int64_t max_tokens)
{
    ngx_int_t     rc;
    nx_llm_err_t  err;

    if (model->len == 0 || model->len > NX_LLM_MODEL_MAX) {
        return NGX_DECLINED;
    }

    /* px->model points here */
    ngx_memcpy(px->req.model, model->data, model->len);
    px->req.model[model->len] = '\0';
    px->model.len = model->len;

    if (max_tokens > 0) {
        px->req.max_tokens = max_tokens;
        px->req.max_tokens_forced = 1;
    }

    px->ncands = 0;

    rc = ngx_nexus_gateway_candidates(r, px);

    if (rc == NGX_OK) {
        rc = ngx_nexus_gateway_bodies(r, px, &err);
    }

    return rc;
}


static void
ngx_nexus_gateway_add(ngx_nexus_proxy_t *px, ngx_nexus_provider_t *p,
    ngx_str_t *served)
{
    ngx_uint_t  i;

    for (i = 0; i < px->ncands; i++) {
        if (px->cands[i].provider == p) {
            return;
        }
    }

    px->cands[px->ncands].provider = p;
    px->cands[px->ncands].served = *served;
    px->ncands++;
}


/*
 * the key's set: "*" for every model, else names joined with ","; the
 * same list form as scopes (a model name never is "*")
 */

static ngx_uint_t
ngx_nexus_gateway_allowed(ngx_str_t *models, ngx_str_t *model)
{
    return ngx_nexus_auth_has_scope(models, model);
}


/* GET /v1/models (OpenAI's list) or /api/tags: the key's effective set */

static ngx_int_t
ngx_nexus_gateway_models(ngx_http_request_t *r, ngx_uint_t tags)
{
    u_char                  *json;
    size_t                  *lens;
    nx_buf_t                 out = NX_BUF_INIT;
    ngx_int_t                rc;
    ngx_str_t               *s;
    ngx_uint_t               i, n;
    ngx_array_t              names;
    const char             **ptrs;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_model_t       *m;
    ngx_nexus_main_conf_t   *nmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (ngx_array_init(&names, r->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    m = nmcf->models.elts;

    for (i = 0; i < nmcf->models.nelts; i++) {
        s = ngx_array_push(&names);
        if (s == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *s = m[i].name;
    }

    if (nmcf->providers.nelts
        && ngx_nexus_discovery_names(r->pool, &names) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s = names.elts;

    ngx_qsort(s, names.nelts, sizeof(ngx_str_t), ngx_nexus_gateway_cmp);

    ptrs = ngx_palloc(r->pool, (names.nelts + 1) * sizeof(char *));
    lens = ngx_palloc(r->pool, (names.nelts + 1) * sizeof(size_t));
    if (ptrs == NULL || lens == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    for (i = 0; i < names.nelts; i++) {
        if (i > 0 && s[i].len == s[i - 1].len
            && ngx_strncmp(s[i].data, s[i - 1].data, s[i].len) == 0)
        {
            continue;
        }

        if (!ngx_nexus_gateway_allowed(&ctx->principal.models, &s[i])) {
            continue;
        }

        ptrs[n] = (const char *) s[i].data;
        lens[n] = s[i].len;
        n++;
    }

    rc = tags ? nx_llm_tags_json(ptrs, lens, n, &out)
              : nx_llm_models_json(ptrs, lens, n, 1700000000, "nexus", &out);

    if (rc != 0) {
        nx_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json = ngx_pnalloc(r->pool, out.len);
    if (json == NULL) {
        nx_buf_free(&out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(json, out.data, out.len);
    n = out.len;
    nx_buf_free(&out);

    return ngx_nexus_proxy_send_json(r, NGX_HTTP_OK, json, n);
}


static ngx_int_t
ngx_nexus_gateway_forbidden(ngx_http_request_t *r)
{
    ngx_nexus_proxy_t  *px;

    px = ngx_nexus_proxy_get(r);
    if (px) {
        px->error_code = "model_not_found";
    }

    return ngx_nexus_proxy_send_json(r, NGX_HTTP_FORBIDDEN,
                                     ngx_nexus_gateway_no_model,
                                     sizeof(ngx_nexus_gateway_no_model) - 1);
}


static ngx_int_t
ngx_nexus_gateway_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message, const char *type, const char *code)
{
    ngx_str_t           json;
    ngx_nexus_proxy_t  *px;

    px = ngx_nexus_proxy_get(r);
    if (px) {
        px->error_code = code;
    }

    if (ngx_nexus_proxy_error_json(r->pool, message, type, code, &json)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_proxy_send_json(r, status, json.data, json.len);
}


static int
ngx_nexus_gateway_cmp(const void *a, const void *b)
{
    const ngx_str_t  *x = a, *y = b;
    ngx_int_t         rc;

    rc = ngx_strncmp(x->data, y->data, ngx_min(x->len, y->len));

    if (rc != 0) {
        return (int) rc;
    }

    return (int) x->len - (int) y->len;
}
