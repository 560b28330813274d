
/*
 * Copyright (C) Nexus authors
 *
 * Circuit breakers: one per provider, shared by the workers of a node.
 *
 * The breakers live in the nexus zone as a list of nodes, one per
 * provider name the node has ever been configured with, so that a reload
 * keeps the state of the providers that remain (matched by name) and old
 * workers still finishing requests write into nodes that stay valid.  A
 * node is a few dozen bytes and is never freed: the list grows only with
 * new provider names.  Each worker maps its providers (by index) to their
 * nodes the first time it needs them; the map lives as long as the
 * worker's cycle.
 *
 * Decisions are nx_breaker.c's, made under the zone's lock; state changes
 * are logged after unlocking.  Without a zone, or when the zone has no
 * room for a node, a provider's breaker stays closed: it is there to help,
 * never to stand in the way.
 *
 * The ops endpoints:
 *   GET  /v1/ops/circuit-breakers                   every provider
 *   GET  /v1/ops/circuit-breakers/{provider}        one
 *   POST /v1/ops/circuit-breakers/{provider}/reset  admin
 *   POST /v1/ops/circuit-breakers/reset-all         admin
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_provider.h"
#include "ngx_nexus_breaker.h"
#include "ngx_nexus_audit.h"


#define NGX_NEXUS_BREAKER_NAME      64
#define NGX_NEXUS_BREAKER_JSON      512     /* one provider's object */


typedef struct ngx_nexus_breaker_node_s  ngx_nexus_breaker_node_t;

struct ngx_nexus_breaker_node_s {
    ngx_nexus_breaker_node_t   *next;
    nx_breaker_t                breaker;
    uint64_t                    opened_ms;  /* when it last opened */
    size_t                      len;
    u_char                      name[NGX_NEXUS_BREAKER_NAME];
};


typedef struct {
    nx_breaker_t                breaker;
    uint64_t                    opened_ms;
    uint32_t                    state;      /* as seen now */
    uint64_t                    retry_ms;
} ngx_nexus_breaker_snap_t;


static ngx_nexus_breaker_node_t *ngx_nexus_breaker_node(
    ngx_nexus_provider_t *p, ngx_slab_pool_t **shpool);
static void ngx_nexus_breaker_forget(void *data);
static void ngx_nexus_breaker_snapshot(ngx_nexus_provider_t *p,
    ngx_nexus_breaker_snap_t *snap);
static void ngx_nexus_breaker_reset(ngx_nexus_provider_t *p);
static u_char *ngx_nexus_breaker_json(u_char *out, ngx_nexus_provider_t *p,
    ngx_nexus_breaker_snap_t *snap);
static ngx_nexus_provider_t *ngx_nexus_breaker_provider(
    ngx_http_request_t *r, ngx_str_t *name);
static ngx_int_t ngx_nexus_breaker_list(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_breaker_one(ngx_http_request_t *r,
    ngx_nexus_provider_t *p);
static ngx_int_t ngx_nexus_breaker_reset_one(ngx_http_request_t *r,
    ngx_nexus_provider_t *p);
static ngx_int_t ngx_nexus_breaker_reset_all(ngx_http_request_t *r);
static ngx_int_t ngx_nexus_breaker_admin(ngx_http_request_t *r);


static const char  *ngx_nexus_breaker_types[] = {
    "openai", "ollama", "anthropic"
};


/* this worker's providers (by index) to their nodes in the zone */
static ngx_nexus_breaker_node_t  **ngx_nexus_breaker_map;
static ngx_uint_t                  ngx_nexus_breaker_nmap;
static ngx_uint_t                  ngx_nexus_breaker_nomem_logged;


/* nexus_breaker [failures=N] [successes=N] [open=TIME]; */

char *
ngx_nexus_breaker_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_uint_t   i;

    /* init_main_conf puts the defaults where a parameter stayed 0 */
    if (nmcf->breaker.failures || nmcf->breaker.successes
        || nmcf->breaker.open_ms)
    {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "failures=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);
            if (n < 1 || n > 1000 || nmcf->breaker.failures) {
                goto invalid;
            }

            nmcf->breaker.failures = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "successes=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);
            if (n < 1 || n > 1000 || nmcf->breaker.successes) {
                goto invalid;
            }

            nmcf->breaker.successes = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "open=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            n = ngx_parse_time(&s, 0);
            if (n == NGX_ERROR || n < 1 || n > 86400000
                || nmcf->breaker.open_ms)
            {
                goto invalid;
            }

            nmcf->breaker.open_ms = n;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * The node of a provider, found (or made) in the zone the first time this
 * worker needs it.  NULL: no zone, or no room in it.
 */

static ngx_nexus_breaker_node_t *
ngx_nexus_breaker_node(ngx_nexus_provider_t *p, ngx_slab_pool_t **shpool)
{
    void                      **slot;
    ngx_cycle_t                *cycle;
    ngx_slab_pool_t            *pool;
    ngx_pool_cleanup_t         *cln;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_nexus_breaker_node_t   *node;

    cycle = (ngx_cycle_t *) ngx_cycle;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);
    if (nmcf == NULL || nmcf->shm_zone == NULL) {
        return NULL;
    }

    pool = ngx_nexus_zone_shpool(nmcf->shm_zone);
    *shpool = pool;

    if (ngx_nexus_breaker_map == NULL) {
        cln = ngx_pool_cleanup_add(cycle->pool, 0);
        if (cln == NULL) {
            return NULL;
        }

        ngx_nexus_breaker_map = ngx_pcalloc(cycle->pool,
                                    (nmcf->providers.nelts + 1)
                                    * sizeof(ngx_nexus_breaker_node_t *));
        if (ngx_nexus_breaker_map == NULL) {
            return NULL;
        }

        ngx_nexus_breaker_nmap = nmcf->providers.nelts;

        /* a new cycle (single process mode reloads) maps afresh */
        cln->handler = ngx_nexus_breaker_forget;
    }

    if (p->index >= ngx_nexus_breaker_nmap) {
        return NULL;
    }

    if (ngx_nexus_breaker_map[p->index]) {
        return ngx_nexus_breaker_map[p->index];
    }

    ngx_shmtx_lock(&pool->mutex);

    slot = ngx_nexus_zone_slot(nmcf->shm_zone, NGX_NEXUS_SLOT_BREAKERS);

    for (node = *slot; node; node = node->next) {
        if (node->len == p->name.len
            && ngx_memcmp(node->name, p->name.data, p->name.len) == 0)
        {
            break;
        }
    }

    if (node == NULL && p->name.len <= NGX_NEXUS_BREAKER_NAME) {
        node = ngx_slab_calloc_locked(pool,
                                      sizeof(ngx_nexus_breaker_node_t));
        if (node) {
            nx_breaker_init(&node->breaker, ngx_current_msec);
            node->len = p->name.len;
            ngx_memcpy(node->name, p->name.data, p->name.len);
            node->next = *slot;
            *slot = node;
        }
    }

    ngx_shmtx_unlock(&pool->mutex);

    if (node == NULL) {
        if (!ngx_nexus_breaker_nomem_logged) {
            ngx_nexus_breaker_nomem_logged = 1;
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "nexus: no room in the zone for the circuit "
                          "breaker of provider \"%V\", it stays closed",
                          &p->name);
        }

        return NULL;
    }

    ngx_nexus_breaker_map[p->index] = node;

    return node;
}


static void
ngx_nexus_breaker_forget(void *data)
{
    ngx_nexus_breaker_map = NULL;
    ngx_nexus_breaker_nmap = 0;
}


ngx_int_t
ngx_nexus_breaker_allow(ngx_nexus_provider_t *p, ngx_msec_t *retry_ms)
{
    int                         ok;
    uint32_t                    before, after;
    uint64_t                    now, retry;
    ngx_slab_pool_t            *shpool;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_nexus_breaker_node_t   *node;

    node = ngx_nexus_breaker_node(p, &shpool);
    if (node == NULL) {
        return NGX_OK;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    now = ngx_current_msec;
    retry = 0;

    ngx_shmtx_lock(&shpool->mutex);

    before = node->breaker.state;
    ok = nx_breaker_allow(&node->breaker, &nmcf->breaker, now);
    after = node->breaker.state;

    if (!ok) {
        retry = nx_breaker_retry_ms(&node->breaker, &nmcf->breaker, now);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (before != after) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "nexus: circuit breaker of provider \"%V\" is "
                      "half-open, a probe goes through", &p->name);
    }

    if (ok) {
        return NGX_OK;
    }

    if (retry_ms) {
        *retry_ms = (retry > 0) ? (ngx_msec_t) retry : 1;
    }

    return NGX_BUSY;
}


void
ngx_nexus_breaker_record(ngx_nexus_provider_t *p, ngx_uint_t outcome)
{
    int                         o;
    uint32_t                    before, after, failures, successes;
    uint64_t                    now;
    ngx_slab_pool_t            *shpool;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_nexus_breaker_node_t   *node;

    switch (outcome) {

    case NGX_NEXUS_ATTEMPT_OK:
    case NGX_NEXUS_ATTEMPT_HTTP_4XX:
        /* the provider answered: a client's mistake is not its failure */
        o = NX_BREAKER_SUCCESS;
        break;

    case NGX_NEXUS_ATTEMPT_ERROR:
    case NGX_NEXUS_ATTEMPT_TIMEOUT:
    case NGX_NEXUS_ATTEMPT_HTTP_5XX:
        o = NX_BREAKER_FAILURE;
        break;

    default:
        /*
         * 429: the provider is up but busy; a client that left first:
         * nothing learned either way
         */
        o = NX_BREAKER_NEUTRAL;
        break;
    }

    node = ngx_nexus_breaker_node(p, &shpool);
    if (node == NULL) {
        return;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    now = ngx_current_msec;

    ngx_shmtx_lock(&shpool->mutex);

    before = node->breaker.state;
    successes = node->breaker.successes + 1;

    nx_breaker_record(&node->breaker, &nmcf->breaker, now, o);

    after = node->breaker.state;
    failures = node->breaker.failures;

    if (before != after && after == NX_BREAKER_OPEN) {
        node->opened_ms = now;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (before == after) {
        return;
    }

    if (after == NX_BREAKER_CLOSED) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "nexus: circuit breaker of provider \"%V\" closed "
                      "after %uD successful probes", &p->name, successes);

    } else if (before == NX_BREAKER_CLOSED) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus: circuit breaker of provider \"%V\" opened "
                      "after %uD consecutive failures for %M ms",
                      &p->name, failures, (ngx_msec_t) nmcf->breaker.open_ms);

    } else {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus: circuit breaker of provider \"%V\" reopened "
                      "for %M ms: its probe failed",
                      &p->name, (ngx_msec_t) nmcf->breaker.open_ms);
    }
}


ngx_int_t
ngx_nexus_breaker_view(ngx_nexus_provider_t *p, nx_breaker_t *b,
    uint32_t *state)
{
    ngx_nexus_breaker_snap_t  snap;

    ngx_nexus_breaker_snapshot(p, &snap);

    *b = snap.breaker;
    *state = snap.state;

    return NGX_OK;
}


static void
ngx_nexus_breaker_snapshot(ngx_nexus_provider_t *p,
    ngx_nexus_breaker_snap_t *snap)
{
    uint64_t                    now;
    ngx_slab_pool_t            *shpool;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_nexus_breaker_node_t   *node;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    now = ngx_current_msec;

    node = ngx_nexus_breaker_node(p, &shpool);

    if (node == NULL) {
        nx_breaker_init(&snap->breaker, now);
        snap->opened_ms = 0;

    } else {
        ngx_shmtx_lock(&shpool->mutex);
        snap->breaker = node->breaker;
        snap->opened_ms = node->opened_ms;
        ngx_shmtx_unlock(&shpool->mutex);
    }

    snap->state = nx_breaker_state(&snap->breaker, &nmcf->breaker, now);
    snap->retry_ms = nx_breaker_retry_ms(&snap->breaker, &nmcf->breaker,
                                         now);
}


static void
ngx_nexus_breaker_reset(ngx_nexus_provider_t *p)
{
    uint32_t                    before;
    ngx_slab_pool_t            *shpool;
    ngx_nexus_breaker_node_t   *node;

    node = ngx_nexus_breaker_node(p, &shpool);
    if (node == NULL) {
        return;
    }

    ngx_shmtx_lock(&shpool->mutex);

    before = node->breaker.state;
    nx_breaker_reset(&node->breaker, ngx_current_msec);

    ngx_shmtx_unlock(&shpool->mutex);

    if (before != NX_BREAKER_CLOSED) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "nexus: circuit breaker of provider \"%V\" closed "
                      "by a reset", &p->name);
    }
}


/*
 * {"provider","type","state","failure_count","success_count",
 *  "opened_count","opened_at","seconds_until_retry"}: at most
 * NGX_NEXUS_BREAKER_JSON bytes (provider names are at most 64 characters
 * of [A-Za-z0-9_.-]: nothing to escape)
 */

static u_char *
ngx_nexus_breaker_json(u_char *out, ngx_nexus_provider_t *p,
    ngx_nexus_breaker_snap_t *snap)
{
    time_t       sec;
    uint64_t     now, wall;
    ngx_tm_t     tm;
    ngx_time_t  *tp;
    const char  *type;

    type = (p->type < 3) ? ngx_nexus_breaker_types[p->type] : "unknown";

    out = ngx_sprintf(out, "{\"provider\":\"%V\",\"type\":\"%s\","
                      "\"state\":\"%s\",\"failure_count\":%uD,"
                      "\"success_count\":%uD,\"opened_count\":%uL,"
                      "\"opened_at\":",
                      &p->name, type, nx_breaker_state_name(snap->state),
                      snap->breaker.failures, snap->breaker.successes,
                      snap->breaker.opened);

    if (snap->state == NX_BREAKER_CLOSED || snap->opened_ms == 0) {
        out = ngx_cpymem(out, "null", 4);

    } else {
        /* the monotonic clock of the breaker, as wall clock time */
        tp = ngx_timeofday();
        now = ngx_current_msec;
        wall = (uint64_t) tp->sec * 1000 + tp->msec;
        wall -= (now > snap->opened_ms) ? now - snap->opened_ms : 0;

        sec = (time_t) (wall / 1000);
        ngx_gmtime(sec, &tm);

        out = ngx_sprintf(out, "\"%4d-%02d-%02dT%02d:%02d:%02d.%03uLZ\"",
                          tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                          tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                          wall % 1000);
    }

    return ngx_sprintf(out, ",\"seconds_until_retry\":%uL}",
                       (snap->retry_ms + 999) / 1000);
}


/* rest: what follows "/v1/ops/circuit-breakers" */

ngx_int_t
ngx_nexus_breaker_ops(ngx_http_request_t *r, ngx_str_t *rest)
{
    ngx_str_t              name;
    ngx_uint_t             reset;
    ngx_nexus_provider_t  *p;

    if (rest->len == 0) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        return ngx_nexus_breaker_list(r);
    }

    if (rest->data[0] != '/' || rest->len == 1) {
        return ngx_nexus_not_found(r);
    }

    name.data = rest->data + 1;
    name.len = rest->len - 1;

    if (name.len == sizeof("reset-all") - 1
        && ngx_strncmp(name.data, "reset-all", name.len) == 0
        && r->method == NGX_HTTP_POST)
    {
        return ngx_nexus_breaker_reset_all(r);
    }

    reset = 0;

    if (name.len > sizeof("/reset") - 1
        && ngx_strncmp(name.data + name.len - 6, "/reset", 6) == 0)
    {
        reset = 1;
        name.len -= 6;
    }

    if (ngx_strlchr(name.data, name.data + name.len, '/') != NULL) {
        return ngx_nexus_not_found(r);
    }

    if (reset) {
        if (r->method != NGX_HTTP_POST) {
            return ngx_nexus_method_not_allowed(r, "POST");
        }

    } else if (name.len == sizeof("reset-all") - 1
               && ngx_strncmp(name.data, "reset-all", name.len) == 0
               && ngx_nexus_breaker_provider(r, &name) == NULL)
    {
        return ngx_nexus_method_not_allowed(r, "POST");

    } else if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    p = ngx_nexus_breaker_provider(r, &name);
    if (p == NULL) {
        return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND, "NOT_FOUND",
                                    "no such provider", NULL);
    }

    return reset ? ngx_nexus_breaker_reset_one(r, p)
                 : ngx_nexus_breaker_one(r, p);
}


static ngx_nexus_provider_t *
ngx_nexus_breaker_provider(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t              i;
    ngx_nexus_provider_t  **p;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    p = nmcf->providers.elts;

    for (i = 0; i < nmcf->providers.nelts; i++) {
        if (p[i]->name.len == name->len
            && ngx_strncmp(p[i]->name.data, name->data, name->len) == 0)
        {
            return p[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_nexus_breaker_list(ngx_http_request_t *r)
{
    u_char                    *json, *out;
    ngx_uint_t                 i, n, count[3];
    ngx_nexus_provider_t     **p;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_breaker_snap_t   snap;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    p = nmcf->providers.elts;
    n = nmcf->providers.nelts;

    json = ngx_pnalloc(r->pool, (n + 1) * (NGX_NEXUS_BREAKER_JSON + 80));
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    count[0] = count[1] = count[2] = 0;

    out = ngx_cpymem(json, "{\"circuit_breakers\":{",
                     sizeof("{\"circuit_breakers\":{") - 1);

    for (i = 0; i < n; i++) {
        ngx_nexus_breaker_snapshot(p[i], &snap);
        count[snap.state]++;

        out = ngx_sprintf(out, "%s\"%V\":", i ? "," : "", &p[i]->name);
        out = ngx_nexus_breaker_json(out, p[i], &snap);
    }

    out = ngx_sprintf(out, "},\"total_count\":%ui,\"open_count\":%ui,"
                      "\"half_open_count\":%ui,\"closed_count\":%ui}",
                      n, count[NX_BREAKER_OPEN], count[NX_BREAKER_HALF_OPEN],
                      count[NX_BREAKER_CLOSED]);

    return ngx_nexus_send_data(r, NGX_HTTP_OK, json, out - json);
}


static ngx_int_t
ngx_nexus_breaker_one(ngx_http_request_t *r, ngx_nexus_provider_t *p)
{
    u_char                    *json, *out;
    ngx_nexus_breaker_snap_t   snap;

    json = ngx_pnalloc(r->pool, NGX_NEXUS_BREAKER_JSON);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_nexus_breaker_snapshot(p, &snap);
    out = ngx_nexus_breaker_json(json, p, &snap);

    return ngx_nexus_send_data(r, NGX_HTTP_OK, json, out - json);
}


/* resets change what every tenant's traffic sees: admins only */

static ngx_int_t
ngx_nexus_breaker_admin(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx == NULL || !ctx->authenticated
        || ctx->principal.role != NGX_NEXUS_ROLE_ADMIN)
    {
        ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                  "{\"required_role\":\"admin\"}");
        return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                    "resetting a circuit breaker requires "
                                    "the admin role",
                                    "{\"required_role\":\"admin\"}");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_breaker_reset_one(ngx_http_request_t *r, ngx_nexus_provider_t *p)
{
    u_char                    *json, *out;
    ngx_int_t                  rc;
    ngx_nexus_breaker_snap_t   snap;

    rc = ngx_nexus_breaker_admin(r);
    if (rc != NGX_OK) {
        return rc;
    }

    json = ngx_pnalloc(r->pool, NGX_NEXUS_BREAKER_JSON + 200);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_nexus_breaker_reset(p);
    ngx_nexus_breaker_snapshot(p, &snap);

    out = ngx_sprintf(json, "{\"success\":true,\"message\":\"Circuit "
                      "breaker for '%V' has been reset\",\"state\":",
                      &p->name);
    out = ngx_nexus_breaker_json(out, p, &snap);
    *out++ = '}';

    return ngx_nexus_send_data(r, NGX_HTTP_OK, json, out - json);
}


static ngx_int_t
ngx_nexus_breaker_reset_all(ngx_http_request_t *r)
{
    u_char                    *json, *out;
    ngx_int_t                  rc;
    ngx_uint_t                 i, n;
    ngx_nexus_provider_t     **p;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_breaker_snap_t   snap;

    rc = ngx_nexus_breaker_admin(r);
    if (rc != NGX_OK) {
        return rc;
    }

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    p = nmcf->providers.elts;
    n = nmcf->providers.nelts;

    json = ngx_pnalloc(r->pool, (n + 1) * (NGX_NEXUS_BREAKER_JSON + 80));
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out = ngx_sprintf(json, "{\"success\":true,\"message\":\"All circuit "
                      "breakers have been reset\",\"reset_count\":%ui,"
                      "\"states\":{", n);

    for (i = 0; i < n; i++) {
        ngx_nexus_breaker_reset(p[i]);
        ngx_nexus_breaker_snapshot(p[i], &snap);

        out = ngx_sprintf(out, "%s\"%V\":", i ? "," : "", &p[i]->name);
        out = ngx_nexus_breaker_json(out, p[i], &snap);
    }

    out = ngx_cpymem(out, "}}", 2);

    return ngx_nexus_send_data(r, NGX_HTTP_OK, json, out - json);
}
