
/*
 * Copyright (C) Nexus authors
 *
 * Idempotency keys.
 *
 * A write (POST, PUT, PATCH, DELETE) that carries Idempotency-Key runs at
 * most once per tenant, method, path and key.  Before the content handler
 * runs, the body is read and hashed and one Redis script takes the key:
 * it records "in progress" with the body's hash and a lock TTL
 * (nexus_idempotency_lock), or finds the key taken.  A key taken with
 * another body is 409 IDEMPOTENCY_KEY_CONFLICT; one still in progress is
 * 409 IDEMPOTENCY_KEY_IN_PROGRESS; one done is answered with the stored
 * response and Idempotent-Replayed: true.  Once the key is ours the
 * handler runs as if nothing happened, and the header and body filters
 * below record its response; when it is complete a second script stores
 * it for nexus_idempotency_ttl (24h).  A 5xx is not stored: the key is
 * released so that the retry runs again.
 *
 * Redis unreachable, or not configured, is 503 IDEMPOTENCY_UNAVAILABLE:
 * a request that cannot be made idempotent is not run at all.
 *
 * A stored response is sealed with AES-256-GCM under a key derived from
 * the pepper, the record's name and the Idempotency-Key itself (which
 * Redis only sees hashed), so a copy of Redis reveals no response, not
 * even the one API key creation returns.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"
#include "ngx_nexus_idempotency.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <nx_plan.h>


#define NGX_NEXUS_IDEM_WAITING          1   /* Redis is asked */
#define NGX_NEXUS_IDEM_ACQUIRED         2   /* the key is ours */
#define NGX_NEXUS_IDEM_CAPTURING        3   /* its response is recorded */
#define NGX_NEXUS_IDEM_DONE             4   /* nothing more to do */

#define NGX_NEXUS_IDEM_RESPONSE_MAX     (1024 * 1024)
#define NGX_NEXUS_IDEM_NONCE            12
#define NGX_NEXUS_IDEM_TAG              16
#define NGX_NEXUS_IDEM_HASH             (2 * SHA256_DIGEST_LENGTH)


typedef struct {
    ngx_uint_t                  state;
    ngx_http_handler_pt         handler;
    ngx_str_t                   key;        /* the header's value */
    ngx_str_t                   rkey;       /* the Redis record */
    ngx_str_t                   owner;      /* the request id */
    u_char                      hash[NGX_NEXUS_IDEM_HASH];  /* the body */
    u_char                      seal[SHA256_DIGEST_LENGTH];

    ngx_uint_t                  status;
    ngx_str_t                   type;
    u_char                     *body;
    size_t                      len;
    size_t                      size;
} ngx_nexus_idem_t;


static ngx_int_t ngx_nexus_idem_header(ngx_http_request_t *r,
    ngx_str_t *key);
static void ngx_nexus_idem_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_idem_prepare(ngx_http_request_t *r,
    ngx_nexus_idem_t *ic, ngx_str_t *body);
static ngx_int_t ngx_nexus_idem_sha256(ngx_str_t *parts, ngx_uint_t n,
    u_char *md);
static void ngx_nexus_idem_begun(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_idem_replay(ngx_http_request_t *r,
    ngx_nexus_idem_t *ic, u_char *sealed, size_t len);
static ngx_int_t ngx_nexus_idem_unavailable(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_idem_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_idem_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_nexus_idem_append(ngx_http_request_t *r,
    ngx_nexus_idem_t *ic, u_char *p, size_t n);
static void ngx_nexus_idem_complete(ngx_http_request_t *r,
    ngx_nexus_idem_t *ic);
static void ngx_nexus_idem_stored(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_idem_seal(ngx_nexus_idem_t *ic, ngx_pool_t *pool,
    u_char *in, size_t n, ngx_str_t *out);
static ngx_int_t ngx_nexus_idem_open(ngx_nexus_idem_t *ic, ngx_pool_t *pool,
    u_char *in, size_t n, ngx_str_t *out);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/*
 * KEYS[1] the record; ARGV: the body's hash, the owner, the lock TTL (ms).
 * Fields: s state (p in progress, d done), f hash, o owner, r response.
 */

static const char  ngx_nexus_idem_begin_lua[] =
    "local v = redis.call('HMGET', KEYS[1], 's', 'f', 'r')\n"
    "if not v[1] then\n"
    "  redis.call('HSET', KEYS[1], 's', 'p', 'f', ARGV[1], 'o', ARGV[2])\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "  return {'new'}\n"
    "end\n"
    "if v[2] ~= ARGV[1] then return {'conflict'} end\n"
    "if v[1] ~= 'd' or not v[3] then return {'pending'} end\n"
    "return {'done', v[3]}\n";

/*
 * KEYS[1] the record; ARGV: the owner, the sealed response ("" releases
 * the key), the TTL (ms).  Only the owner of the lock completes it: once
 * the lock expired, the key may be another request's.
 */

static const char  ngx_nexus_idem_complete_lua[] =
    "if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end\n"
    "if ARGV[2] == '' then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return 1\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 's', 'd', 'r', ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "return 1\n";

static ngx_nexus_redis_script_t  ngx_nexus_idem_begin_script;
static ngx_nexus_redis_script_t  ngx_nexus_idem_complete_script;


ngx_int_t
ngx_nexus_idempotency_init(ngx_conf_t *cf)
{
    if (ngx_nexus_redis_script(cf, &ngx_nexus_idem_begin_script,
                               ngx_nexus_idem_begin_lua)
        != NGX_OK
        || ngx_nexus_redis_script(cf, &ngx_nexus_idem_complete_script,
                                  ngx_nexus_idem_complete_lua)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_nexus_idem_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_nexus_idem_body_filter;

    return NGX_OK;
}


ngx_int_t
ngx_nexus_idempotency(ngx_http_request_t *r, ngx_http_handler_pt handler)
{
    ngx_int_t          rc;
    ngx_str_t          key;
    ngx_nexus_ctx_t   *ctx;
    ngx_nexus_idem_t  *ic;

    if (!(r->method
          & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH|NGX_HTTP_DELETE))
        || r != r->main)
    {
        return NGX_DECLINED;
    }

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->idem) {
        /* the handler again, now that the key is ours */
        return NGX_DECLINED;
    }

    rc = ngx_nexus_idem_header(r, &key);

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR",
                                    "Idempotency-Key must be one header of "
                                    "1 to 128 printable ASCII characters",
                                    "{\"header\":\"Idempotency-Key\","
                                    "\"max_length\":128}");
    }

    if (!ngx_nexus_redis_configured()) {
        return ngx_nexus_idem_unavailable(r);
    }

    if (r->headers_in.content_length_n > NGX_NEXUS_BODY_MAX) {
        return ngx_nexus_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "PAYLOAD_TOO_LARGE",
                                    "the request body is too large", NULL);
    }

    ic = ngx_pcalloc(r->pool, sizeof(ngx_nexus_idem_t));
    if (ic == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ic->state = NGX_NEXUS_IDEM_WAITING;
    ic->handler = handler;
    ic->key = key;
    ctx->idem = ic;

    /* the body is part of what a retry must repeat: read it first */

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_nexus_idem_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


ngx_int_t
ngx_nexus_idempotency_record(ngx_http_request_t *r, ngx_str_t *record,
    ngx_str_t *hash)
{
    ngx_nexus_ctx_t   *ctx;
    ngx_nexus_idem_t  *ic;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ic = (ctx != NULL) ? ctx->idem : NULL;

    if (ic == NULL
        || (ic->state != NGX_NEXUS_IDEM_ACQUIRED
            && ic->state != NGX_NEXUS_IDEM_CAPTURING))
    {
        return NGX_DECLINED;
    }

    *record = ic->rkey;
    hash->data = ic->hash;
    hash->len = NGX_NEXUS_IDEM_HASH;

    return NGX_OK;
}


/* NGX_OK with the key, NGX_DECLINED without one, NGX_ERROR if invalid */

static ngx_int_t
ngx_nexus_idem_header(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Idempotency-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Idempotency-Key",
                               sizeof("Idempotency-Key") - 1) == 0)
        {
            *key = h[i].value;
            n++;
        }
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    if (n > 1 || nx_idempotency_key_valid((char *) key->data, key->len) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_nexus_idem_body_read(ngx_http_request_t *r)
{
    u_char                 ttl[NGX_INT_T_LEN];
    ngx_str_t              body;
    const char            *argv[4];
    size_t                 argvlen[4];
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_idem_t      *ic;
    ngx_nexus_redis_cmd_t  *cmd;
    ngx_nexus_main_conf_t  *nmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);
    ic = ctx->idem;

    if (ngx_nexus_body_collect(r, &body, NGX_NEXUS_BODY_MAX) != NGX_OK) {
        ic->state = NGX_NEXUS_IDEM_DONE;
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                 "PAYLOAD_TOO_LARGE",
                                 "the request body is too large", NULL));
        return;
    }

    if (ngx_nexus_idem_prepare(r, ic, &body) != NGX_OK) {
        ic->state = NGX_NEXUS_IDEM_DONE;
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[0] = (char *) ic->rkey.data;
    argvlen[0] = ic->rkey.len;
    argv[1] = (char *) ic->hash;
    argvlen[1] = NGX_NEXUS_IDEM_HASH;
    argv[2] = (char *) ic->owner.data;
    argvlen[2] = ic->owner.len;
    argv[3] = (char *) ttl;
    argvlen[3] = ngx_sprintf(ttl, "%M", nmcf->idempotency_lock) - ttl;

    cmd = ngx_nexus_redis_eval(&ngx_nexus_idem_begin_script, 1, 4, argv,
                               argvlen);
    if (cmd == NULL) {
        ic->state = NGX_NEXUS_IDEM_DONE;
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cmd->handler = ngx_nexus_idem_begun;
    cmd->data = r;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        ic->state = NGX_NEXUS_IDEM_DONE;
        ngx_http_finalize_request(r, ngx_nexus_idem_unavailable(r));
        return;
    }

    ctx->rcmd[0] = cmd;
    ngx_nexus_wait(r);
}


/*
 * The record:  nx:idem:<tenant id>:<sha256(method \n path \n key)>
 * The hash:    sha256(query string \n body)
 * The sealing key: HMAC-SHA256(pepper, "nexus-idempotency\n" record \n key)
 */

static ngx_int_t
ngx_nexus_idem_prepare(ngx_http_request_t *r, ngx_nexus_idem_t *ic,
    ngx_str_t *body)
{
    u_char                 *p;
    size_t                  len;
    unsigned int            n;
    ngx_str_t               parts[3];
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_main_conf_t  *nmcf;
    u_char                  md[SHA256_DIGEST_LENGTH];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    parts[0] = r->method_name;
    parts[1] = r->uri;
    parts[2] = ic->key;

    if (ngx_nexus_idem_sha256(parts, 3, md) != NGX_OK) {
        return NGX_ERROR;
    }

    len = sizeof("nx:idem::") - 1 + NGX_INT64_LEN + NGX_NEXUS_IDEM_HASH;

    ic->rkey.data = ngx_pnalloc(r->pool, len);
    if (ic->rkey.data == NULL) {
        return NGX_ERROR;
    }

    /* an unauthenticated location has no tenant: 0 */
    p = ngx_sprintf(ic->rkey.data, "nx:idem:%L:",
                    ctx->authenticated ? ctx->principal.tenant_id : 0);
    p = ngx_hex_dump(p, md, SHA256_DIGEST_LENGTH);
    ic->rkey.len = p - ic->rkey.data;

    parts[0] = r->args;
    parts[1] = *body;

    if (ngx_nexus_idem_sha256(parts, 2, md) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_hex_dump(ic->hash, md, SHA256_DIGEST_LENGTH);

    len = sizeof("nexus-idempotency\n\n") - 1 + ic->rkey.len + ic->key.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf(p, "nexus-idempotency\n%V\n%V", &ic->rkey, &ic->key);

    if (HMAC(EVP_sha256(), nmcf->pepper, (int) nmcf->pepper_len, p, len,
             ic->seal, &n)
        == NULL || n != SHA256_DIGEST_LENGTH)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_request_id(r, &ic->owner);
}


/* SHA-256 of the parts joined with "\n" */

static ngx_int_t
ngx_nexus_idem_sha256(ngx_str_t *parts, ngx_uint_t n, u_char *md)
{
    ngx_int_t    rc;
    ngx_uint_t   i;
    EVP_MD_CTX  *c;

    c = EVP_MD_CTX_new();
    if (c == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        if ((i && EVP_DigestUpdate(c, "\n", 1) != 1)
            || (parts[i].len
                && EVP_DigestUpdate(c, parts[i].data, parts[i].len) != 1))
        {
            goto failed;
        }
    }

    if (EVP_DigestFinal_ex(c, md, NULL) == 1) {
        rc = NGX_OK;
    }

failed:

    EVP_MD_CTX_free(c);

    return rc;
}


static void
ngx_nexus_idem_begun(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    redisReply          *s;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_nexus_ctx_t     *ctx;
    ngx_nexus_idem_t    *ic;

    r = cmd->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ic = ctx->idem;

    ctx->rcmd[0] = NULL;
    r->read_event_handler = ngx_http_block_reading;

    ic->state = NGX_NEXUS_IDEM_DONE;

    if (rc != NGX_OK || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 1
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "nexus idempotency: unexpected reply%s%*s",
                          reply->type == REDIS_REPLY_ERROR ? ": " : "",
                          reply->type == REDIS_REPLY_ERROR ? reply->len : 0,
                          reply->str);
        }

        rc = ngx_nexus_idem_unavailable(r);
        goto done;
    }

    s = reply->element[0];

    if (s->len == 3 && ngx_strncmp(s->str, "new", 3) == 0) {
        ic->state = NGX_NEXUS_IDEM_ACQUIRED;
        rc = ic->handler(r);
        goto done;
    }

    if (s->len == 8 && ngx_strncmp(s->str, "conflict", 8) == 0) {
        rc = ngx_nexus_send_error(r, NGX_HTTP_CONFLICT,
                                  "IDEMPOTENCY_KEY_CONFLICT",
                                  "this Idempotency-Key was used with "
                                  "another request body",
                                  "{\"header\":\"Idempotency-Key\"}");
        goto done;
    }

    if (s->len == 7 && ngx_strncmp(s->str, "pending", 7) == 0) {
        if (ngx_nexus_add_header(r, "Retry-After", "1") != NGX_OK) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        rc = ngx_nexus_send_error(r, NGX_HTTP_CONFLICT,
                                  "IDEMPOTENCY_KEY_IN_PROGRESS",
                                  "a request with this Idempotency-Key is "
                                  "in progress",
                                  "{\"header\":\"Idempotency-Key\"}");
        goto done;
    }

    if (s->len == 4 && ngx_strncmp(s->str, "done", 4) == 0
        && reply->elements == 2
        && reply->element[1]->type == REDIS_REPLY_STRING)
    {
        rc = ngx_nexus_idem_replay(r, ic, (u_char *) reply->element[1]->str,
                                   reply->element[1]->len);
        goto done;
    }

    rc = ngx_nexus_idem_unavailable(r);

done:

    if (ic->state != NGX_NEXUS_IDEM_ACQUIRED
        && ic->state != NGX_NEXUS_IDEM_CAPTURING)
    {
        ngx_explicit_memzero(ic->seal, sizeof(ic->seal));
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* stored: "<status>\n<content type>\n<body>" */

static ngx_int_t
ngx_nexus_idem_replay(ngx_http_request_t *r, ngx_nexus_idem_t *ic,
    u_char *sealed, size_t len)
{
    u_char       *p, *last, *nl;
    ngx_int_t     rc, status;
    ngx_str_t     plain;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (ngx_nexus_idem_open(ic, r->pool, sealed, len, &plain) != NGX_OK) {
        /* sealed under another pepper: it cannot be replayed */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "nexus idempotency: a stored response cannot be "
                      "opened");

        return ngx_nexus_send_error(r, NGX_HTTP_CONFLICT,
                                    "IDEMPOTENCY_KEY_CONFLICT",
                                    "the response stored for this "
                                    "Idempotency-Key cannot be replayed",
                                    "{\"header\":\"Idempotency-Key\"}");
    }

    p = plain.data;
    last = p + plain.len;

    nl = (plain.len > 4) ? ngx_strlchr(p + 4, last, '\n') : NULL;
    status = (plain.len > 4 && p[3] == '\n') ? ngx_atoi(p, 3) : NGX_ERROR;

    if (nl == NULL || status < 100 || status > 599) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_nexus_add_header(r, "Idempotent-Replayed", "true") != NGX_OK
        || ngx_nexus_add_header(r, "Cache-Control", "no-store") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = last - (nl + 1);

    r->headers_out.content_type.data = p + 4;
    r->headers_out.content_type.len = nl - (p + 4);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (r->method == NGX_HTTP_HEAD || nl + 1 == last) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = nl + 1;
    b->last = last;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_nexus_idem_unavailable(ngx_http_request_t *r)
{
    return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "IDEMPOTENCY_UNAVAILABLE",
                                "the Idempotency-Key cannot be checked now; "
                                "the request was not run, try again",
                                NULL);
}


/* the response of a request that holds its key is recorded */

static ngx_int_t
ngx_nexus_idem_header_filter(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t   *ctx;
    ngx_nexus_idem_t  *ic;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (r != r->main || ctx == NULL || ctx->idem == NULL) {
        return ngx_http_next_header_filter(r);
    }

    ic = ctx->idem;

    if (ic->state != NGX_NEXUS_IDEM_ACQUIRED) {
        return ngx_http_next_header_filter(r);
    }

    ic->state = NGX_NEXUS_IDEM_CAPTURING;
    ic->status = r->headers_out.status;

    ic->type.len = r->headers_out.content_type.len;
    ic->type.data = ngx_pnalloc(r->pool, ic->type.len + 1);

    if (ic->type.data == NULL
        || ngx_strlchr(r->headers_out.content_type.data,
                       r->headers_out.content_type.data + ic->type.len, '\n'))
    {
        ic->state = NGX_NEXUS_IDEM_DONE;
        return ngx_http_next_header_filter(r);
    }

    if (ic->type.len) {
        ngx_memcpy(ic->type.data, r->headers_out.content_type.data,
                   ic->type.len);
    }

    if (r->header_only) {
        ngx_nexus_idem_complete(r, ic);
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_nexus_idem_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t         *b;
    ngx_chain_t       *cl;
    ngx_nexus_ctx_t   *ctx;
    ngx_nexus_idem_t  *ic;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (r != r->main || ctx == NULL || ctx->idem == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ic = ctx->idem;

    for (cl = in; cl && ic->state == NGX_NEXUS_IDEM_CAPTURING;
         cl = cl->next)
    {
        b = cl->buf;

        if (b->in_file && !ngx_buf_in_memory(b)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "nexus idempotency: a response from a file is "
                          "not stored; the key stays locked");
            ic->state = NGX_NEXUS_IDEM_DONE;
            break;
        }

        if (ngx_buf_in_memory(b) && b->last > b->pos
            && ngx_nexus_idem_append(r, ic, b->pos, b->last - b->pos)
               != NGX_OK)
        {
            ic->state = NGX_NEXUS_IDEM_DONE;
            break;
        }

        if (b->last_buf) {
            ngx_nexus_idem_complete(r, ic);
        }
    }

    return ngx_http_next_body_filter(r, in);
}


static ngx_int_t
ngx_nexus_idem_append(ngx_http_request_t *r, ngx_nexus_idem_t *ic,
    u_char *p, size_t n)
{
    u_char  *body;
    size_t   size;

    if (ic->len + n > NGX_NEXUS_IDEM_RESPONSE_MAX) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "nexus idempotency: a response over %uz bytes is not "
                      "stored; the key stays locked",
                      (size_t) NGX_NEXUS_IDEM_RESPONSE_MAX);
        return NGX_ERROR;
    }

    if (ic->len + n > ic->size) {
        size = ngx_max(2 * ic->size, ngx_max(ic->len + n, 1024));
        size = ngx_min(size, NGX_NEXUS_IDEM_RESPONSE_MAX);

        body = ngx_pnalloc(r->pool, size);
        if (body == NULL) {
            return NGX_ERROR;
        }

        if (ic->len) {
            ngx_memcpy(body, ic->body, ic->len);
        }

        ic->body = body;
        ic->size = size;
    }

    ngx_memcpy(ic->body + ic->len, p, n);
    ic->len += n;

    return NGX_OK;
}


/*
 * Stores the recorded response, or releases the key after a 5xx: nothing
 * waits for the answer, which only the log hears about.
 */

static void
ngx_nexus_idem_complete(ngx_http_request_t *r, ngx_nexus_idem_t *ic)
{
    u_char                 *p;
    u_char                  ttl[NGX_INT_T_LEN];
    ngx_str_t               sealed;
    const char             *argv[4];
    size_t                  argvlen[4];
    ngx_nexus_redis_cmd_t  *cmd;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    ic->state = NGX_NEXUS_IDEM_DONE;

    ngx_str_null(&sealed);

    if (ic->status >= 100 && ic->status < 500) {
        p = ngx_pnalloc(r->pool, sizeof("000\n\n") - 1 + ic->type.len
                                 + ic->len);
        if (p == NULL) {
            return;
        }

        sealed.data = p;
        p = ngx_sprintf(p, "%03ui\n%V\n", ic->status, &ic->type);

        if (ic->len) {
            p = ngx_cpymem(p, ic->body, ic->len);
        }

        if (ngx_nexus_idem_seal(ic, r->pool, sealed.data, p - sealed.data,
                                &sealed)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "nexus idempotency: cannot seal a response");
            return;
        }
    }

    ngx_explicit_memzero(ic->seal, sizeof(ic->seal));

    argv[0] = (char *) ic->rkey.data;
    argvlen[0] = ic->rkey.len;
    argv[1] = (char *) ic->owner.data;
    argvlen[1] = ic->owner.len;
    argv[2] = sealed.len ? (char *) sealed.data : "";
    argvlen[2] = sealed.len;
    argv[3] = (char *) ttl;
    argvlen[3] = ngx_sprintf(ttl, "%M", nmcf->idempotency_ttl) - ttl;

    cmd = ngx_nexus_redis_eval(&ngx_nexus_idem_complete_script, 1, 4, argv,
                               argvlen);
    if (cmd == NULL) {
        return;
    }

    cmd->handler = ngx_nexus_idem_stored;
    cmd->data = NULL;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus idempotency: Redis is unavailable, a response "
                      "is not stored; its key stays locked for %M ms",
                      nmcf->idempotency_lock);
    }
}


static void
ngx_nexus_idem_stored(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    if (rc != NGX_OK || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nexus idempotency: a response is not stored%s%*s",
                      rc == NGX_OK ? ": " : ", Redis did not answer",
                      rc == NGX_OK ? reply->len : 0,
                      rc == NGX_OK ? reply->str : "");
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus idempotency: a key's lock expired before its "
                      "response was complete; the response is not stored");
    }
}


/* nonce | AES-256-GCM(in) | tag, the record's name as associated data */

static ngx_int_t
ngx_nexus_idem_seal(ngx_nexus_idem_t *ic, ngx_pool_t *pool, u_char *in,
    size_t n, ngx_str_t *out)
{
    int               len;
    u_char           *p;
    ngx_int_t         rc;
    EVP_CIPHER_CTX   *c;

    p = ngx_pnalloc(pool, NGX_NEXUS_IDEM_NONCE + n + NGX_NEXUS_IDEM_TAG);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (RAND_bytes(p, NGX_NEXUS_IDEM_NONCE) != 1) {
        return NGX_ERROR;
    }

    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, ic->seal, p) != 1
        || EVP_EncryptUpdate(c, NULL, &len, ic->rkey.data, ic->rkey.len)
           != 1
        || EVP_EncryptUpdate(c, p + NGX_NEXUS_IDEM_NONCE, &len, in, (int) n)
           != 1
        || EVP_EncryptFinal_ex(c, p + NGX_NEXUS_IDEM_NONCE + len, &len) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, NGX_NEXUS_IDEM_TAG,
                               p + NGX_NEXUS_IDEM_NONCE + n)
           != 1)
    {
        goto failed;
    }

    out->data = p;
    out->len = NGX_NEXUS_IDEM_NONCE + n + NGX_NEXUS_IDEM_TAG;
    rc = NGX_OK;

failed:

    EVP_CIPHER_CTX_free(c);

    return rc;
}


static ngx_int_t
ngx_nexus_idem_open(ngx_nexus_idem_t *ic, ngx_pool_t *pool, u_char *in,
    size_t n, ngx_str_t *out)
{
    int               len;
    u_char           *p;
    size_t            plain;
    ngx_int_t         rc;
    EVP_CIPHER_CTX   *c;

    if (n < NGX_NEXUS_IDEM_NONCE + NGX_NEXUS_IDEM_TAG) {
        return NGX_ERROR;
    }

    plain = n - NGX_NEXUS_IDEM_NONCE - NGX_NEXUS_IDEM_TAG;

    p = ngx_pnalloc(pool, plain + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, ic->seal, in) != 1
        || EVP_DecryptUpdate(c, NULL, &len, ic->rkey.data, ic->rkey.len)
           != 1
        || EVP_DecryptUpdate(c, p, &len, in + NGX_NEXUS_IDEM_NONCE,
                             (int) plain)
           != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, NGX_NEXUS_IDEM_TAG,
                               in + NGX_NEXUS_IDEM_NONCE + plain)
           != 1
        || EVP_DecryptFinal_ex(c, p + len, &len) != 1)
    {
        goto failed;
    }

    out->data = p;
    out->len = plain;
    rc = NGX_OK;

failed:

    EVP_CIPHER_CTX_free(c);

    return rc;
}
