
/*
 * Copyright (C) Nexus authors
 *
 * Audit events, chained and written to PostgreSQL in batches.
 *
 * Each worker keeps the events of its requests in memory and sends them
 * every nexus_audit_flush, or as soon as a batch is full, with one call of
 * nexus_audit_append() (migrations/0010_audit_log.sql).  One batch is in
 * flight at a time.  The worker links the rows of the batch to their
 * tenants' chains itself (the HMAC key never leaves nginx), from the chain
 * heads it remembers; PostgreSQL locks those heads and writes the batch
 * only if they are still the heads, else it answers with the current ones
 * and the worker links the same rows again from them.  So every chain has
 * a single writer order across the workers of every node, and a worker
 * that writes alone costs one round trip per batch.
 *
 * A row's time is when its event happened, raised if need be to the time
 * of the row before it in its chain: a chain's times never step back,
 * which lets the verifier call any step back a restamp.
 *
 * As for usage events (ngx_nexus_usage.c): memory is bounded (the oldest
 * waiting event is dropped beyond NGX_NEXUS_AUDIT_QUEUE, and counted); a
 * failed batch goes back to the head of the queue and is sent again,
 * which nexus_audit_append() recognizes by the event id of its first row;
 * a gracefully exiting worker stays alive until its events are written.
 *
 * Worker 0 of each node also signs a checkpoint of every chain head that
 * moved, every nexus_audit_checkpoint.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_audit.h"

#include <nx_audit.h>
#include <nx_audit_batch.h>
#include <nx_json.h>
#include <nx_key.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>


#define NGX_NEXUS_AUDIT_BATCH           200
#define NGX_NEXUS_AUDIT_QUEUE           20000

/* a conflict means another writer made progress: try again at once, a
 * few times, then at the next tick */
#define NGX_NEXUS_AUDIT_CONFLICTS       8

#define NGX_NEXUS_AUDIT_EXIT_TRIES      3

/* heads remembered per worker; all are forgotten beyond that */
#define NGX_NEXUS_AUDIT_HEADS_MAX       10000

/* bytes kept of a redacted metadata object, and of the other strings */
#define NGX_NEXUS_AUDIT_META_MAX        8192
#define NGX_NEXUS_AUDIT_STR_MAX         128
#define NGX_NEXUS_AUDIT_PATH_MAX        512

#define NGX_NEXUS_AUDIT_CKPT_RETRY      (60 * 1000)

#define NGX_NEXUS_AUDIT_HEX_LEN         NX_AUDIT_HEX_LEN

/* "<writer>-<number>" */
#define NGX_NEXUS_AUDIT_ID_LEN          (16 + 1 + NGX_INT64_LEN)


typedef struct {
    ngx_queue_t                 queue;
    int64_t                     tenant_id;
    int64_t                     ts;         /* when it happened, us */
    uint64_t                    number;     /* in this worker */

    /* the link, computed again at each attempt */
    int64_t                     seq;
    int64_t                     chained_ts;
    u_char                      prev[NX_AUDIT_HASH_LEN];
    u_char                      hash[NX_AUDIT_HASH_LEN];

    ngx_str_t                   request_id;
    ngx_str_t                   actor;
    ngx_str_t                   event_type;
    ngx_str_t                   outcome;
    ngx_str_t                   metadata;
    u_char                      data[1];
} ngx_nexus_audit_row_t;


/* a chain head as this worker last knew it */
typedef struct {
    ngx_rbtree_node_t           node;       /* key: tenant id */
    nx_audit_head_t             head;
} ngx_nexus_audit_head_t;


static void ngx_nexus_audit_timer(ngx_event_t *ev);
static void ngx_nexus_audit_arm(void);
static void ngx_nexus_audit_flush(void);
static ngx_int_t ngx_nexus_audit_chain(ngx_uint_t n);
static nx_audit_link_t *ngx_nexus_audit_link(int64_t tenant_id);
static void ngx_nexus_audit_row(ngx_nexus_audit_row_t *row,
    nx_audit_row_t *ar);
static size_t ngx_nexus_audit_id(ngx_nexus_audit_row_t *row, u_char *id);
static void ngx_nexus_audit_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static void ngx_nexus_audit_moved(const char *json, size_t len);
static void ngx_nexus_audit_moved_head(void *data, const nx_audit_head_t *h,
    nx_audit_head_state_t state);
static void ngx_nexus_audit_requeue(void);
static void ngx_nexus_audit_retry(void);
static void ngx_nexus_audit_give_up(ngx_queue_t *queue, ngx_uint_t *n,
    const char *why);
static void ngx_nexus_audit_log_drops(void);
static ngx_nexus_audit_head_t *ngx_nexus_audit_head(int64_t tenant_id,
    ngx_uint_t create);
static void ngx_nexus_audit_forget(void);
static void ngx_nexus_audit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static int64_t ngx_nexus_audit_now(void);
static u_char *ngx_nexus_audit_copy(u_char *p, ngx_str_t *dst,
    const u_char *src, size_t len);
static void ngx_nexus_audit_ckpt_timer(ngx_event_t *ev);
static void ngx_nexus_audit_ckpt_heads(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
static void ngx_nexus_audit_ckpt_done(ngx_nexus_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
static void ngx_nexus_audit_ckpt_arm(ngx_msec_t timer);


static ngx_uint_t    ngx_nexus_audit_append_stmt;
static ngx_uint_t    ngx_nexus_audit_heads_stmt;
static ngx_uint_t    ngx_nexus_audit_ckpt_stmt;

static ngx_uint_t    ngx_nexus_audit_on;
static ngx_msec_t    ngx_nexus_audit_interval;
static ngx_msec_t    ngx_nexus_audit_ckpt_interval;
static u_char        ngx_nexus_audit_chain_key[NX_AUDIT_HASH_LEN];
static u_char        ngx_nexus_audit_ckpt_key[NX_AUDIT_HASH_LEN];

/* event ids: this worker's random id and a counter */
static u_char        ngx_nexus_audit_writer[16];
static uint64_t      ngx_nexus_audit_number;

static ngx_queue_t   ngx_nexus_audit_waiting;
static ngx_uint_t    ngx_nexus_audit_nwaiting;
static ngx_queue_t   ngx_nexus_audit_sent;          /* the batch in flight */
static ngx_uint_t    ngx_nexus_audit_nsent;

static nx_audit_link_t     *ngx_nexus_audit_links;
static ngx_uint_t           ngx_nexus_audit_nlinks;

static ngx_rbtree_t       ngx_nexus_audit_heads;
static ngx_rbtree_node_t  ngx_nexus_audit_sentinel;
static ngx_uint_t         ngx_nexus_audit_nheads;

static ngx_uint_t    ngx_nexus_audit_ndropped;
static ngx_uint_t    ngx_nexus_audit_unlogged;
static ngx_uint_t    ngx_nexus_audit_failing;
static ngx_uint_t    ngx_nexus_audit_conflicts;
static ngx_uint_t    ngx_nexus_audit_exit_tries;

static ngx_event_t   ngx_nexus_audit_ev;
static ngx_event_t   ngx_nexus_audit_ckpt_ev;

/* timers log their connection's fd at debug level: give them one */
static ngx_connection_t  ngx_nexus_audit_conn = { .fd = (ngx_socket_t) -1 };


ngx_int_t
ngx_nexus_audit_init_statements(ngx_conf_t *cf)
{
    if (ngx_nexus_pg_statement(cf, "nexus_audit_append",
            "SELECT nexus_audit_append($1::json)",
            1, &ngx_nexus_audit_append_stmt)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the heads that moved since their last checkpoint */
    if (ngx_nexus_pg_statement(cf, "nexus_audit_heads",
            "SELECT c.tenant_id, c.seq, encode(c.row_hmac, 'hex')"
            " FROM audit_chains c WHERE c.seq > 0 AND NOT EXISTS"
            " (SELECT 1 FROM audit_checkpoints k"
            " WHERE k.tenant_id = c.tenant_id AND k.seq >= c.seq)"
            " ORDER BY c.tenant_id LIMIT 1000",
            0, &ngx_nexus_audit_heads_stmt)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_pg_statement(cf, "nexus_audit_checkpoint",
               "INSERT INTO audit_checkpoints (tenant_id, seq, count,"
               " signed_at, row_hmac, mac)"
               " SELECT c.tenant_id, c.seq, c.seq,"
               " timestamptz 'epoch' + c.ts * interval '1 microsecond',"
               " decode(c.hash, 'hex'), decode(c.mac, 'hex')"
               " FROM json_to_recordset($1::json) AS c (tenant_id bigint,"
               " seq bigint, ts bigint, hash text, mac text)"
               " ON CONFLICT DO NOTHING",
               1, &ngx_nexus_audit_ckpt_stmt);
}


/* nexus_audit_key_file PATH; */

char *
ngx_nexus_audit_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    int         n;
    ngx_str_t  *value, path;
    char        err[256];
    u_char      master[NX_PEPPER_MAX];

    if (nmcf->audit_keys) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the same format as the pepper: raw bytes or hex, 32 bytes at least */
    n = nx_pepper_load((char *) path.data, master, sizeof(master), err,
                       sizeof(err));
    if (n < 0) {
        /* err names the file, never its content */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot load the audit key: %s", err);
        return NGX_CONF_ERROR;
    }

    nmcf->audit_keys = ngx_pnalloc(cf->pool, 2 * NX_AUDIT_HASH_LEN);
    if (nmcf->audit_keys == NULL) {
        ngx_explicit_memzero(master, sizeof(master));
        return NGX_CONF_ERROR;
    }

    if (nx_audit_derive_keys(master, n, nmcf->audit_keys,
                             nmcf->audit_keys + NX_AUDIT_HASH_LEN)
        != 0)
    {
        ngx_explicit_memzero(master, sizeof(master));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot derive the audit keys from \"%V\"",
                           &path);
        return NGX_CONF_ERROR;
    }

    ngx_explicit_memzero(master, sizeof(master));

    return NGX_CONF_OK;
}


char *
ngx_nexus_audit_init_main_conf(ngx_conf_t *cf, ngx_nexus_main_conf_t *nmcf)
{
    ngx_conf_init_msec_value(nmcf->audit_flush, 1000);
    ngx_conf_init_msec_value(nmcf->audit_checkpoint, 300000);

    if (nmcf->audit_flush == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_audit_flush\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (nmcf->audit_checkpoint < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_audit_checkpoint\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    if (nmcf->audit_keys && nmcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_audit_key_file\" requires "
                           "\"nexus_postgres\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_nexus_audit_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_main_conf_t  *nmcf;
    u_char                  rnd[8];

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    ngx_queue_init(&ngx_nexus_audit_waiting);
    ngx_queue_init(&ngx_nexus_audit_sent);
    ngx_rbtree_init(&ngx_nexus_audit_heads, &ngx_nexus_audit_sentinel,
                    ngx_nexus_audit_rbtree_insert);
    ngx_nexus_audit_nwaiting = 0;
    ngx_nexus_audit_nsent = 0;
    ngx_nexus_audit_nheads = 0;
    ngx_nexus_audit_links = NULL;
    ngx_nexus_audit_nlinks = 0;
    ngx_nexus_audit_ndropped = 0;
    ngx_nexus_audit_unlogged = 0;
    ngx_nexus_audit_failing = 0;
    ngx_nexus_audit_conflicts = 0;
    ngx_nexus_audit_exit_tries = 0;
    ngx_nexus_audit_number = 0;

    if (nmcf->audit_keys == NULL || nmcf->pg == NULL) {
        ngx_nexus_audit_on = 0;

        if (nmcf->used && ngx_worker == 0) {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "nexus audit: \"nexus_audit_key_file\" is not "
                          "set, audit events are not recorded");
        }

        return NGX_OK;
    }

    /*
     * event ids must not repeat across workers, nodes and restarts: the
     * worker's own random id, then a counter
     */
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "nexus audit: no randomness for the writer id");
        return NGX_ERROR;
    }

    ngx_hex_dump(ngx_nexus_audit_writer, rnd, sizeof(rnd));

    ngx_memcpy(ngx_nexus_audit_chain_key, nmcf->audit_keys,
               NX_AUDIT_HASH_LEN);
    ngx_memcpy(ngx_nexus_audit_ckpt_key,
               nmcf->audit_keys + NX_AUDIT_HASH_LEN, NX_AUDIT_HASH_LEN);

    ngx_nexus_audit_on = 1;
    ngx_nexus_audit_interval = nmcf->audit_flush;
    ngx_nexus_audit_ckpt_interval = nmcf->audit_checkpoint;

    ngx_memzero(&ngx_nexus_audit_ev, sizeof(ngx_event_t));
    ngx_nexus_audit_ev.handler = ngx_nexus_audit_timer;
    ngx_nexus_audit_ev.log = cycle->log;
    ngx_nexus_audit_ev.data = &ngx_nexus_audit_conn;
    ngx_nexus_audit_ev.cancelable = 1;

    ngx_add_timer(&ngx_nexus_audit_ev, ngx_nexus_audit_interval);

    if (ngx_worker == 0) {
        /* one signer per node is enough; duplicates are ignored in SQL */
        ngx_memzero(&ngx_nexus_audit_ckpt_ev, sizeof(ngx_event_t));
        ngx_nexus_audit_ckpt_ev.handler = ngx_nexus_audit_ckpt_timer;
        ngx_nexus_audit_ckpt_ev.log = cycle->log;
        ngx_nexus_audit_ckpt_ev.data = &ngx_nexus_audit_conn;
        ngx_nexus_audit_ckpt_ev.cancelable = 1;

        ngx_add_timer(&ngx_nexus_audit_ckpt_ev,
                      ngx_nexus_audit_ckpt_interval);
    }

    return NGX_OK;
}


void
ngx_nexus_audit_exit_process(ngx_cycle_t *cycle)
{
    if (!ngx_nexus_audit_on) {
        return;
    }

    ngx_nexus_audit_give_up(&ngx_nexus_audit_sent, &ngx_nexus_audit_nsent,
                            "the worker exited with them in flight");
    ngx_nexus_audit_give_up(&ngx_nexus_audit_waiting,
                            &ngx_nexus_audit_nwaiting,
                            "the worker exited before writing them");

    ngx_nexus_audit_forget();

    if (ngx_nexus_audit_links) {
        ngx_free(ngx_nexus_audit_links);
        ngx_nexus_audit_links = NULL;
    }

    ngx_explicit_memzero(ngx_nexus_audit_chain_key, NX_AUDIT_HASH_LEN);
    ngx_explicit_memzero(ngx_nexus_audit_ckpt_key, NX_AUDIT_HASH_LEN);

    ngx_nexus_audit_on = 0;
}


ngx_uint_t
ngx_nexus_audit_dropped(void)
{
    return ngx_nexus_audit_ndropped;
}


ngx_uint_t
ngx_nexus_audit_queued(void)
{
    return ngx_nexus_audit_nwaiting + ngx_nexus_audit_nsent;
}


void
ngx_nexus_audit_emit(const ngx_nexus_audit_event_t *ev)
{
    u_char                 *p;
    size_t                  mlen, size;
    ngx_uint_t              i;
    ngx_queue_t            *q;
    ngx_nexus_audit_row_t  *row;
    ngx_str_t               str[4];
    u_char                  meta[NGX_NEXUS_AUDIT_META_MAX + 1];

    if (!ngx_nexus_audit_on) {
        return;
    }

    if (ev->metadata.len == 0) {
        mlen = 2;
        ngx_memcpy(meta, "{}", 2);

    } else if (ev->metadata.len > NGX_NEXUS_AUDIT_META_MAX
               || nx_audit_redact((char *) ev->metadata.data,
                                  ev->metadata.len, (char *) meta,
                                  sizeof(meta), &mlen)
                  != 0)
    {
        /* a caller's bug or an outsized object: the event still counts */
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus audit: the metadata of a %s event is not a "
                      "JSON object of at most %d bytes", ev->event_type,
                      NGX_NEXUS_AUDIT_META_MAX);

        mlen = sizeof("{\"metadata\":\"[UNAVAILABLE]\"}") - 1;
        ngx_memcpy(meta, "{\"metadata\":\"[UNAVAILABLE]\"}", mlen);
    }

    str[0] = ev->request_id;
    str[1] = ev->actor;
    str[2].data = (u_char *) ev->event_type;
    str[2].len = ngx_strlen(ev->event_type);
    str[3].data = (u_char *) ev->outcome;
    str[3].len = ngx_strlen(ev->outcome);

    size = offsetof(ngx_nexus_audit_row_t, data) + mlen;

    for (i = 0; i < 4; i++) {
        str[i].len = ngx_min(str[i].len, NGX_NEXUS_AUDIT_STR_MAX);
        size += str[i].len;
    }

    row = ngx_alloc(size, ngx_cycle->log);
    if (row == NULL) {
        ngx_nexus_audit_ndropped++;
        ngx_nexus_audit_unlogged++;
        return;
    }

    row->tenant_id = ev->tenant_id > 0 ? ev->tenant_id : 0;
    row->ts = ngx_nexus_audit_now();
    row->number = ++ngx_nexus_audit_number;

    p = row->data;
    p = ngx_nexus_audit_copy(p, &row->request_id, str[0].data, str[0].len);
    p = ngx_nexus_audit_copy(p, &row->actor, str[1].data, str[1].len);
    p = ngx_nexus_audit_copy(p, &row->event_type, str[2].data, str[2].len);
    p = ngx_nexus_audit_copy(p, &row->outcome, str[3].data, str[3].len);

    /* nx_audit_redact() wrote valid UTF-8 without control characters */
    row->metadata.data = p;
    row->metadata.len = mlen;
    ngx_memcpy(p, meta, mlen);

    if (ngx_nexus_audit_nwaiting + ngx_nexus_audit_nsent
        >= NGX_NEXUS_AUDIT_QUEUE
        && ngx_nexus_audit_nwaiting)
    {
        q = ngx_queue_head(&ngx_nexus_audit_waiting);
        ngx_queue_remove(q);
        ngx_nexus_audit_nwaiting--;
        ngx_free(ngx_queue_data(q, ngx_nexus_audit_row_t, queue));

        ngx_nexus_audit_ndropped++;
        ngx_nexus_audit_unlogged++;
    }

    ngx_queue_insert_tail(&ngx_nexus_audit_waiting, &row->queue);
    ngx_nexus_audit_nwaiting++;

    ngx_nexus_audit_arm();

    if ((ngx_nexus_audit_nwaiting >= NGX_NEXUS_AUDIT_BATCH || ngx_exiting)
        && !ngx_nexus_audit_failing)
    {
        ngx_nexus_audit_flush();
    }
}


ngx_uint_t
ngx_nexus_audit_enabled(void)
{
    return ngx_nexus_audit_on;
}


void
ngx_nexus_audit_request(ngx_http_request_t *r, int64_t tenant_id,
    const char *event_type, const char *outcome, const char *members)
{
    ngx_str_t         actor;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_nexus_module);

    if (ctx && ctx->authenticated) {
        actor = ctx->principal.prefix;

    } else {
        ngx_str_null(&actor);
    }

    ngx_nexus_audit_request_as(r, tenant_id, &actor, event_type, outcome,
                               members);
}


void
ngx_nexus_audit_request_as(ngx_http_request_t *r, int64_t tenant_id,
    ngx_str_t *actor, const char *event_type, const char *outcome,
    const char *members)
{
    ngx_str_t                 id;
    ngx_nexus_audit_event_t   ev;

    if (!ngx_nexus_audit_on) {
        return;
    }

    ngx_memzero(&ev, sizeof(ngx_nexus_audit_event_t));

    if (ngx_nexus_request_id(r, &id) == NGX_OK) {
        ev.request_id = id;
    }

    if (ngx_nexus_audit_meta(r, members, &ev.metadata) != NGX_OK) {
        return;
    }

    ev.actor = *actor;
    ev.tenant_id = tenant_id;
    ev.event_type = event_type;
    ev.outcome = outcome;

    ngx_nexus_audit_emit(&ev);
}


ngx_int_t
ngx_nexus_audit_meta(ngx_http_request_t *r, const char *members,
    ngx_str_t *meta)
{
    u_char  *p;
    size_t   len, plen;

    plen = ngx_min(r->uri.len, NGX_NEXUS_AUDIT_PATH_MAX);

    while (plen && plen < r->uri.len && (r->uri.data[plen] & 0xc0) == 0x80) {
        plen--;
    }

    len = sizeof("{\"method\":\"\",\"path\":\"\",}") - 1
          + nx_json_escape_len((char *) r->method_name.data,
                               ngx_min(r->method_name.len, 32))
          + nx_json_escape_len((char *) r->uri.data, plen)
          + (members ? ngx_strlen(members) : 0);

    meta->data = ngx_pnalloc(r->pool, len);
    if (meta->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(meta->data, "{\"method\":\"",
                   sizeof("{\"method\":\"") - 1);
    p += nx_json_escape((char *) p, (char *) r->method_name.data,
                        ngx_min(r->method_name.len, 32));
    p = ngx_cpymem(p, "\",\"path\":\"", sizeof("\",\"path\":\"") - 1);
    p += nx_json_escape((char *) p, (char *) r->uri.data, plen);
    *p++ = '"';

    if (members && members[0]) {
        *p++ = ',';
        p = ngx_cpymem(p, members, ngx_strlen(members));
    }

    *p++ = '}';

    meta->len = p - meta->data;

    return NGX_OK;
}


void
ngx_nexus_audit_forbidden(ngx_http_request_t *r, const char *code,
    const char *details)
{
    u_char           *members;
    size_t            len;
    ngx_nexus_ctx_t  *ctx;

    if (!ngx_nexus_audit_on) {
        return;
    }

    ctx = ngx_http_get_module_ctx(r->main, ngx_nexus_module);

    len = sizeof("\"code\":\"\",\"details\":") + ngx_strlen(code)
          + (details ? ngx_strlen(details) : 2);

    members = ngx_pnalloc(r->pool, len);
    if (members == NULL) {
        return;
    }

    /* codes are [A-Z_] and details JSON objects written by Nexus */
    (void) ngx_sprintf(members, "\"code\":\"%s\",\"details\":%s%Z", code,
                       details ? details : "{}");

    ngx_nexus_audit_request(r, (ctx && ctx->authenticated)
                               ? ctx->principal.tenant_id : 0,
                            "rbac.forbidden", NGX_NEXUS_AUDIT_FAILURE,
                            (char *) members);
}


static void
ngx_nexus_audit_timer(ngx_event_t *ev)
{
    ngx_nexus_audit_log_drops();

    ngx_nexus_audit_conflicts = 0;
    ngx_nexus_audit_flush();

    if (ngx_exiting && ngx_nexus_audit_nwaiting == 0) {
        /* a failed batch in flight arms the timer again */
        return;
    }

    ngx_nexus_audit_arm();
}


/* the flush timer keeps an exiting worker alive while events wait */

static void
ngx_nexus_audit_arm(void)
{
    ngx_nexus_audit_ev.cancelable = (ngx_nexus_audit_nwaiting == 0);

    if (!ngx_nexus_audit_ev.timer_set) {
        ngx_add_timer(&ngx_nexus_audit_ev, ngx_nexus_audit_interval);
    }
}


static void
ngx_nexus_audit_flush(void)
{
    u_char                 *p, *buf;
    size_t                  size, idlen;
    ngx_uint_t              i, n;
    ngx_queue_t            *q;
    nx_audit_row_t          ar;
    ngx_nexus_pg_query_t   *pq;
    ngx_nexus_audit_row_t  *row;
    u_char                  id[NGX_NEXUS_AUDIT_ID_LEN];

    if (ngx_nexus_audit_nwaiting == 0 || ngx_nexus_audit_nsent) {
        return;
    }

    n = ngx_min(ngx_nexus_audit_nwaiting, NGX_NEXUS_AUDIT_BATCH);

    if (ngx_nexus_audit_chain(n) != NGX_OK) {
        return;
    }

    size = sizeof("{\"heads\":[],\"rows\":[]}");

    size += ngx_nexus_audit_nlinks * (NX_AUDIT_JSON_HEAD_LEN + 1);

    q = ngx_queue_head(&ngx_nexus_audit_waiting);

    for (i = 0; i < n; i++) {
        row = ngx_queue_data(q, ngx_nexus_audit_row_t, queue);
        ngx_nexus_audit_row(row, &ar);
        size += nx_audit_json_row_len(&ar, NGX_NEXUS_AUDIT_ID_LEN) + 1;
        q = ngx_queue_next(q);
    }

    pq = ngx_nexus_pg_query(ngx_nexus_audit_append_stmt, 2 * size);
    if (pq == NULL) {
        return;
    }

    /* built at the end of the query's own memory, then copied as $1 */

    buf = pq->end - size;
    p = ngx_cpymem(buf, "{\"heads\":[", sizeof("{\"heads\":[") - 1);

    for (i = 0; i < ngx_nexus_audit_nlinks; i++) {
        if (i) {
            *p++ = ',';
        }

        p = (u_char *) nx_audit_json_head((char *) p,
                                          &ngx_nexus_audit_links[i]);
    }

    p = ngx_cpymem(p, "],\"rows\":[", sizeof("],\"rows\":[") - 1);

    q = ngx_queue_head(&ngx_nexus_audit_waiting);

    for (i = 0; i < n; i++) {
        row = ngx_queue_data(q, ngx_nexus_audit_row_t, queue);

        if (i) {
            *p++ = ',';
        }

        ngx_nexus_audit_row(row, &ar);
        idlen = ngx_nexus_audit_id(row, id);

        p = (u_char *) nx_audit_json_row((char *) p, &ar, (char *) id, idlen,
                                         row->prev, row->hash);
        q = ngx_queue_next(q);
    }

    p = ngx_cpymem(p, "]}", 2);

    if (ngx_nexus_pg_param(pq, buf, p - buf) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "nexus audit: a batch outgrew its buffer");
        ngx_nexus_pg_free(pq);
        return;
    }

    pq->handler = ngx_nexus_audit_done;

    if (ngx_nexus_pg_send(pq) != NGX_OK) {
        if (!ngx_nexus_audit_failing) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "nexus audit: PostgreSQL is unavailable, "
                          "%ui events wait", ngx_nexus_audit_nwaiting);
        }

        ngx_nexus_audit_retry();
        return;
    }

    for (i = 0; i < n; i++) {
        q = ngx_queue_head(&ngx_nexus_audit_waiting);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&ngx_nexus_audit_sent, q);
    }

    ngx_nexus_audit_nwaiting -= n;
    ngx_nexus_audit_nsent = n;

    ngx_nexus_audit_arm();
}


/*
 * Links the first n waiting rows to their chains, from the heads this
 * worker knows (an unknown chain is taken to be empty): seq, time and
 * hashes of each row, and the heads the batch starts from and ends at.
 */

static ngx_int_t
ngx_nexus_audit_chain(ngx_uint_t n)
{
    ngx_uint_t              i;
    ngx_queue_t            *q;
    nx_audit_row_t          ar;
    nx_audit_link_t        *l;
    ngx_nexus_audit_row_t  *row;

    if (ngx_nexus_audit_links) {
        ngx_free(ngx_nexus_audit_links);
    }

    ngx_nexus_audit_nlinks = 0;
    ngx_nexus_audit_links = ngx_alloc(n * sizeof(nx_audit_link_t),
                                      ngx_cycle->log);
    if (ngx_nexus_audit_links == NULL) {
        return NGX_ERROR;
    }

    q = ngx_queue_head(&ngx_nexus_audit_waiting);

    for (i = 0; i < n; i++) {
        row = ngx_queue_data(q, ngx_nexus_audit_row_t, queue);
        q = ngx_queue_next(q);

        l = ngx_nexus_audit_link(row->tenant_id);
        if (l == NULL) {
            return NGX_ERROR;
        }

        /* from the time it happened, every attempt */
        ngx_nexus_audit_row(row, &ar);
        ar.ts = row->ts;

        if (nx_audit_link_row(l, ngx_nexus_audit_chain_key,
                              NX_AUDIT_HASH_LEN, &ar, row->prev, row->hash)
            != 0)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "nexus audit: cannot compute a row's HMAC");
            return NGX_ERROR;
        }

        row->seq = ar.seq;
        row->chained_ts = ar.ts;
    }

    return NGX_OK;
}


static nx_audit_link_t *
ngx_nexus_audit_link(int64_t tenant_id)
{
    ngx_uint_t               i;
    nx_audit_head_t          empty;
    nx_audit_link_t         *l;
    ngx_nexus_audit_head_t  *h;

    /* a batch touches few chains: a linear scan is cheap */
    for (i = 0; i < ngx_nexus_audit_nlinks; i++) {
        if (ngx_nexus_audit_links[i].from.tenant_id == tenant_id) {
            return &ngx_nexus_audit_links[i];
        }
    }

    l = &ngx_nexus_audit_links[ngx_nexus_audit_nlinks++];

    h = ngx_nexus_audit_head(tenant_id, 0);

    if (h) {
        nx_audit_link_start(l, &h->head);
        return l;
    }

    if (nx_audit_head_empty(&empty, ngx_nexus_audit_chain_key,
                            NX_AUDIT_HASH_LEN, tenant_id)
        != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "nexus audit: cannot compute a genesis hash");
        return NULL;
    }

    nx_audit_link_start(l, &empty);

    return l;
}


/* the row as hashed: its place in its chain as last linked */

static void
ngx_nexus_audit_row(ngx_nexus_audit_row_t *row, nx_audit_row_t *ar)
{
    ar->seq = row->seq;
    ar->ts = row->chained_ts;
    ar->tenant_id = row->tenant_id;
    ar->request_id.data = (char *) row->request_id.data;
    ar->request_id.len = row->request_id.len;
    ar->actor.data = (char *) row->actor.data;
    ar->actor.len = row->actor.len;
    ar->event_type.data = (char *) row->event_type.data;
    ar->event_type.len = row->event_type.len;
    ar->outcome.data = (char *) row->outcome.data;
    ar->outcome.len = row->outcome.len;
    ar->metadata.data = (char *) row->metadata.data;
    ar->metadata.len = row->metadata.len;
}


/* the event id: this worker's random id and the row's number */

static size_t
ngx_nexus_audit_id(ngx_nexus_audit_row_t *row, u_char *id)
{
    return ngx_sprintf(id, "%*s-%uL", sizeof(ngx_nexus_audit_writer),
                       ngx_nexus_audit_writer, row->number)
           - id;
}


static void
ngx_nexus_audit_done(ngx_nexus_pg_query_t *pq, PGresult *res, ngx_int_t rc)
{
    char                    *v;
    size_t                   len;
    ngx_uint_t               i;
    const char              *state;
    nx_audit_link_t         *l;
    ngx_nexus_audit_head_t  *h;

    if (rc == NGX_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        v = PQgetvalue(res, 0, 0);
        len = PQgetlength(res, 0, 0);

        if (v[0] == '[') {
            /* another writer moved a head: link the rows again */
            ngx_nexus_audit_moved(v, len);
            ngx_nexus_audit_requeue();
            ngx_nexus_audit_arm();

            if (++ngx_nexus_audit_conflicts <= NGX_NEXUS_AUDIT_CONFLICTS
                || ngx_exiting)
            {
                ngx_nexus_audit_flush();
            }

            return;
        }

        /* "ok", or "written" by an earlier attempt whose answer was lost */

        for (i = 0; i < ngx_nexus_audit_nlinks; i++) {
            l = &ngx_nexus_audit_links[i];

            h = ngx_nexus_audit_head(l->to.tenant_id, 1);
            if (h == NULL) {
                continue;
            }

            h->head = l->to;
        }

        ngx_nexus_audit_give_up(&ngx_nexus_audit_sent,
                                &ngx_nexus_audit_nsent, NULL);

        if (ngx_nexus_audit_failing) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "nexus audit: events are written again");
            ngx_nexus_audit_failing = 0;
        }

        ngx_nexus_audit_exit_tries = 0;
        ngx_nexus_audit_conflicts = 0;

        if (ngx_nexus_audit_nwaiting >= NGX_NEXUS_AUDIT_BATCH
            || (ngx_exiting && ngx_nexus_audit_nwaiting))
        {
            ngx_nexus_audit_flush();
        }

        return;
    }

    state = ngx_nexus_pg_sqlstate(res);

    if (rc == NGX_ERROR && state[0] == '2'
        && (state[1] == '2' || state[1] == '3'))
    {
        /*
         * a data exception or an integrity violation: the same rows
         * would fail forever, and hold up every event behind them; the
         * heads this worker knows may be wrong, too
         */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nexus audit: PostgreSQL refused a batch of %ui "
                      "events, they are lost: %s",
                      ngx_nexus_audit_nsent, PQresultErrorMessage(res));

        ngx_nexus_audit_give_up(&ngx_nexus_audit_sent,
                                &ngx_nexus_audit_nsent, "");
        ngx_nexus_audit_forget();
        ngx_nexus_audit_flush();
        return;
    }

    if (!ngx_nexus_audit_failing) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus audit: writing %ui events failed, "
                      "they will be sent again%s%s",
                      ngx_nexus_audit_nsent, res ? ": " : "",
                      res ? PQresultErrorMessage(res) : "");
    }

    ngx_nexus_audit_requeue();
    ngx_nexus_audit_retry();
}


/* [{"tenant_id":3,"seq":41,"hash":"<hex>"|null,"ts":...}, ...] */

static void
ngx_nexus_audit_moved(const char *json, size_t len)
{
    if (nx_audit_heads_parse(json, len, ngx_nexus_audit_chain_key,
                             NX_AUDIT_HASH_LEN, ngx_nexus_audit_moved_head,
                             NULL)
        < 0)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nexus audit: unexpected chain heads from "
                      "PostgreSQL");
        ngx_nexus_audit_forget();
    }
}


static void
ngx_nexus_audit_moved_head(void *data, const nx_audit_head_t *head,
    nx_audit_head_state_t state)
{
    ngx_nexus_audit_head_t  *h;

    h = ngx_nexus_audit_head(head->tenant_id, 1);
    if (h == NULL) {
        return;
    }

    if (state == NX_AUDIT_HEAD_OK) {
        h->head = *head;
        return;
    }

    /* forget it: the next attempt learns it again */
    ngx_rbtree_delete(&ngx_nexus_audit_heads, &h->node);
    ngx_nexus_audit_nheads--;
    ngx_free(h);
}


/* the batch in flight goes back to the head of the queue, in its order */

static void
ngx_nexus_audit_requeue(void)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(&ngx_nexus_audit_sent)) {
        q = ngx_queue_last(&ngx_nexus_audit_sent);
        ngx_queue_remove(q);
        ngx_queue_insert_head(&ngx_nexus_audit_waiting, q);
    }

    ngx_nexus_audit_nwaiting += ngx_nexus_audit_nsent;
    ngx_nexus_audit_nsent = 0;
}


static void
ngx_nexus_audit_retry(void)
{
    ngx_nexus_audit_failing = 1;

    if (ngx_exiting) {
        /* an exiting worker's pool does not reconnect */
        if (ngx_nexus_pg_nconnected() == 0
            || ++ngx_nexus_audit_exit_tries >= NGX_NEXUS_AUDIT_EXIT_TRIES)
        {
            ngx_nexus_audit_give_up(&ngx_nexus_audit_waiting,
                                    &ngx_nexus_audit_nwaiting,
                                    "PostgreSQL is unavailable and the "
                                    "worker is exiting");
            return;
        }
    }

    ngx_nexus_audit_arm();
}


/*
 * Frees the rows of a queue.  why == NULL: they were written; otherwise
 * they are lost and counted, and why is logged unless it is empty.
 */

static void
ngx_nexus_audit_give_up(ngx_queue_t *queue, ngx_uint_t *n, const char *why)
{
    ngx_queue_t  *q;

    if (why && *n) {
        ngx_nexus_audit_ndropped += *n;

        if (why[0]) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "nexus audit: %ui events lost: %s", *n, why);
        }
    }

    while (!ngx_queue_empty(queue)) {
        q = ngx_queue_head(queue);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_nexus_audit_row_t, queue));
    }

    *n = 0;
}


static void
ngx_nexus_audit_log_drops(void)
{
    if (ngx_nexus_audit_unlogged == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "nexus audit: %ui events dropped, the queue of %d is "
                  "full (%ui dropped by this worker in all)",
                  ngx_nexus_audit_unlogged, NGX_NEXUS_AUDIT_QUEUE,
                  ngx_nexus_audit_ndropped);

    ngx_nexus_audit_unlogged = 0;
}


static ngx_nexus_audit_head_t *
ngx_nexus_audit_head(int64_t tenant_id, ngx_uint_t create)
{
    ngx_rbtree_key_t         key;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_nexus_audit_head_t  *h;

    key = (ngx_rbtree_key_t) tenant_id;
    node = ngx_nexus_audit_heads.root;
    sentinel = ngx_nexus_audit_heads.sentinel;

    while (node != sentinel) {
        if (key == node->key) {
            return (ngx_nexus_audit_head_t *) node;
        }

        node = (key < node->key) ? node->left : node->right;
    }

    if (!create) {
        return NULL;
    }

    if (ngx_nexus_audit_nheads >= NGX_NEXUS_AUDIT_HEADS_MAX) {
        /* rare: many tenants per worker; a forgotten head is relearnt */
        ngx_nexus_audit_forget();
    }

    h = ngx_alloc(sizeof(ngx_nexus_audit_head_t), ngx_cycle->log);
    if (h == NULL) {
        return NULL;
    }

    ngx_memzero(h, sizeof(ngx_nexus_audit_head_t));
    h->node.key = key;
    h->head.tenant_id = tenant_id;

    ngx_rbtree_insert(&ngx_nexus_audit_heads, &h->node);
    ngx_nexus_audit_nheads++;

    return h;
}


static void
ngx_nexus_audit_forget(void)
{
    ngx_rbtree_node_t  *node;

    while (ngx_nexus_audit_heads.root != ngx_nexus_audit_heads.sentinel) {
        node = ngx_rbtree_min(ngx_nexus_audit_heads.root,
                              ngx_nexus_audit_heads.sentinel);
        ngx_rbtree_delete(&ngx_nexus_audit_heads, node);
        ngx_free(node);
    }

    ngx_nexus_audit_nheads = 0;
}


static void
ngx_nexus_audit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t  **p;

    for ( ;; ) {
        p = (node->key < temp->key) ? &temp->left : &temp->right;

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static int64_t
ngx_nexus_audit_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000000 + (int64_t) tp->msec * 1000;
}


/*
 * The short strings of a row, kept printable ASCII: they are hashed as
 * stored, so they must come back from PostgreSQL byte for byte.
 */

static u_char *
ngx_nexus_audit_copy(u_char *p, ngx_str_t *dst, const u_char *src,
    size_t len)
{
    size_t  i;

    dst->data = p;
    dst->len = len;

    for (i = 0; i < len; i++) {
        *p++ = (src[i] > 0x20 && src[i] < 0x7f) ? src[i] : '?';
    }

    return p;
}


/* checkpoints, worker 0 of each node */

static void
ngx_nexus_audit_ckpt_timer(ngx_event_t *ev)
{
    ngx_nexus_pg_query_t  *pq;

    if (ngx_exiting || !ngx_nexus_audit_on) {
        return;
    }

    pq = ngx_nexus_pg_query(ngx_nexus_audit_heads_stmt, 0);
    if (pq == NULL) {
        ngx_nexus_audit_ckpt_arm(NGX_NEXUS_AUDIT_CKPT_RETRY);
        return;
    }

    pq->handler = ngx_nexus_audit_ckpt_heads;

    if (ngx_nexus_pg_send(pq) != NGX_OK) {
        ngx_nexus_audit_ckpt_arm(ngx_nexus_audit_ckpt_interval);
    }
}


static void
ngx_nexus_audit_ckpt_heads(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    u_char                 *p, *buf;
    size_t                  size;
    ngx_int_t               i, n;
    nx_audit_checkpoint_t   c;
    ngx_nexus_pg_query_t   *pq;
    u_char                  hex[NGX_NEXUS_AUDIT_HEX_LEN + 1];

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "nexus audit: cannot read the chain heads: %s",
                          PQresultErrorMessage(res));
        }

        ngx_nexus_audit_ckpt_arm(ngx_nexus_audit_ckpt_interval);
        return;
    }

    n = PQntuples(res);

    if (n == 0 || PQnfields(res) != 3 || ngx_exiting) {
        ngx_nexus_audit_ckpt_arm(ngx_nexus_audit_ckpt_interval);
        return;
    }

    size = 2 + n * (sizeof("{\"tenant_id\":,\"seq\":,\"ts\":,\"hash\":\"\","
                           "\"mac\":\"\"},")
                    + 3 * NGX_INT64_LEN + 2 * NGX_NEXUS_AUDIT_HEX_LEN);

    pq = ngx_nexus_pg_query(ngx_nexus_audit_ckpt_stmt, 2 * size);
    if (pq == NULL) {
        ngx_nexus_audit_ckpt_arm(NGX_NEXUS_AUDIT_CKPT_RETRY);
        return;
    }

    buf = pq->end - size;
    p = buf;
    *p++ = '[';

    for (i = 0; i < n; i++) {
        ngx_memzero(&c, sizeof(nx_audit_checkpoint_t));

        c.tenant_id = ngx_atoof((u_char *) PQgetvalue(res, i, 0),
                                PQgetlength(res, i, 0));
        c.seq = ngx_atoof((u_char *) PQgetvalue(res, i, 1),
                          PQgetlength(res, i, 1));
        c.count = c.seq;
        c.ts = ngx_nexus_audit_now();

        if (c.tenant_id < 0 || c.seq <= 0
            || nx_audit_hash_unhex(c.hash, PQgetvalue(res, i, 2)) != 0
            || nx_audit_checkpoint_sign(ngx_nexus_audit_ckpt_key,
                                        NX_AUDIT_HASH_LEN, &c, c.mac)
               != 0)
        {
            continue;
        }

        p = ngx_sprintf(p, "%s{\"tenant_id\":%L,\"seq\":%L,\"ts\":%L,"
                        "\"hash\":\"", p == buf + 1 ? "" : ",",
                        c.tenant_id, c.seq, c.ts);
        p = ngx_hex_dump(p, c.hash, NX_AUDIT_HASH_LEN);
        p = ngx_cpymem(p, "\",\"mac\":\"", sizeof("\",\"mac\":\"") - 1);
        p = ngx_hex_dump(p, c.mac, NX_AUDIT_HASH_LEN);
        p = ngx_cpymem(p, "\"}", 2);

        /* a copy outside the database, for whoever checks it later */
        ngx_hex_dump(hex, c.mac, NX_AUDIT_HASH_LEN);
        hex[NGX_NEXUS_AUDIT_HEX_LEN] = '\0';

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "nexus audit: checkpoint of chain %L at row %L, "
                      "head %s, signed at %L, mac %s", c.tenant_id, c.seq,
                      PQgetvalue(res, i, 2), c.ts, hex);
    }

    *p++ = ']';

    if (ngx_nexus_pg_param(pq, buf, p - buf) != NGX_OK) {
        ngx_nexus_pg_free(pq);
        ngx_nexus_audit_ckpt_arm(ngx_nexus_audit_ckpt_interval);
        return;
    }

    pq->handler = ngx_nexus_audit_ckpt_done;

    if (ngx_nexus_pg_send(pq) != NGX_OK) {
        ngx_nexus_audit_ckpt_arm(ngx_nexus_audit_ckpt_interval);
    }
}


static void
ngx_nexus_audit_ckpt_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc)
{
    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus audit: cannot store checkpoints: %s",
                      PQresultErrorMessage(res));
    }

    ngx_nexus_audit_ckpt_arm(ngx_nexus_audit_ckpt_interval);
}


static void
ngx_nexus_audit_ckpt_arm(ngx_msec_t timer)
{
    if (!ngx_exiting && ngx_nexus_audit_on
        && !ngx_nexus_audit_ckpt_ev.timer_set)
    {
        ngx_add_timer(&ngx_nexus_audit_ckpt_ev, timer);
    }
}


ngx_uint_t
ngx_nexus_audit_fired(u_char **pos, u_char *last, ngx_str_t *w, ngx_uint_t n)
{
    u_char      *p, *end;
    ngx_uint_t   i;

    p = *pos;

    if (p >= last) {
        return 0;
    }

    end = ngx_strlchr(p, last, ',');
    if (end == NULL) {
        end = last;
    }

    for (i = 0; i < n; i++) {
        w[i].data = p;

        p = ngx_strlchr(p, end, ' ');
        if (p == NULL) {
            p = end;
        }

        w[i].len = p - w[i].data;

        if (p < end) {
            p++;
        }
    }

    *pos = end + 1;

    return 1;
}
