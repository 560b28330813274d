/*
 * Copyright (C) Nexus authors
 *
 * Model discovery: which model names each provider serves, polled from
 * its model list (/v1/models, or /api/tags for Ollama) by a timer in each
 * worker and kept in the shared zone for every worker of the node.  The
 * workers share the polling: whichever sees a provider due first claims
 * it under the zone's lock.  A list that has not been refreshed for the
 * TTL is dropped: an empty discovery denies, by design.
 *
 * The poll is a small GET over a plain nginx peer connection to the
 * provider's first server, read until the provider closes it.  Providers
 * behind TLS are not polled: their models come from nexus_model entries.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_nexus_module.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_provider.h"
#include "ngx_nexus_discovery.h"


#define NGX_NEXUS_DISCOVERY_BODY_MAX    (1024 * 1024)
#define NGX_NEXUS_DISCOVERY_NAMES_MAX   (64 * 1024)


typedef struct ngx_nexus_disc_s  ngx_nexus_disc_t;

struct ngx_nexus_disc_s {
    ngx_nexus_disc_t       *next;
    u_char                  name[65];
    int64_t                 updated;    /* ms, last good list; 0 never */
    int64_t                 due;        /* ms, next poll */
    size_t                  len;
    u_char                 *names;      /* "a\0b\0" */
    size_t                  cap;
};


typedef struct {
    ngx_nexus_provider_t   *provider;
    ngx_pool_t             *pool;
    ngx_peer_connection_t   pc;
    ngx_buf_t              *request;
    ngx_buf_t              *response;
    ngx_buf_t               names;
    ngx_uint_t              count;
} ngx_nexus_disc_fetch_t;


static ngx_nexus_disc_t *ngx_nexus_disc_find(ngx_shm_zone_t *zone,
    ngx_nexus_provider_t *p, ngx_uint_t create);
static void ngx_nexus_discovery_tick(ngx_event_t *ev);
static void ngx_nexus_discovery_fetch(ngx_cycle_t *cycle,
    ngx_nexus_provider_t *p);
static void ngx_nexus_discovery_write(ngx_event_t *wev);
static void ngx_nexus_discovery_read(ngx_event_t *rev);
static void ngx_nexus_discovery_done(ngx_nexus_disc_fetch_t *f,
    ngx_uint_t ok);
static ngx_int_t ngx_nexus_discovery_parse(ngx_nexus_disc_fetch_t *f);
static void ngx_nexus_discovery_name(void *ud, const char *name, size_t len);
static ngx_uint_t ngx_nexus_discovery_current(ngx_nexus_main_conf_t *nmcf,
    u_char *name);
static int64_t ngx_nexus_discovery_now(void);


static ngx_event_t  ngx_nexus_discovery_timer;
static ngx_connection_t  ngx_nexus_discovery_dummy;


ngx_int_t
ngx_nexus_discovery_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    if (nmcf == NULL || nmcf->providers.nelts == 0 || nmcf->shm_zone == NULL)
    {
        return NGX_OK;
    }

    ngx_nexus_discovery_dummy.fd = (ngx_socket_t) -1;

    ngx_nexus_discovery_timer.handler = ngx_nexus_discovery_tick;
    ngx_nexus_discovery_timer.data = &ngx_nexus_discovery_dummy;
    ngx_nexus_discovery_timer.log = cycle->log;
    ngx_nexus_discovery_timer.cancelable = 1;

    /* the first poll at once: until then no discovered model is served */
    ngx_add_timer(&ngx_nexus_discovery_timer, 10 + ngx_random() % 40);

    return NGX_OK;
}


static void
ngx_nexus_discovery_tick(ngx_event_t *ev)
{
    int64_t                  now;
    ngx_uint_t               i, due;
    ngx_msec_t               wait;
    ngx_slab_pool_t         *shpool;
    ngx_nexus_disc_t        *d;
    ngx_nexus_provider_t   **p;
    ngx_nexus_main_conf_t   *nmcf;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    p = nmcf->providers.elts;
    now = ngx_nexus_discovery_now();

    for (i = 0; i < nmcf->providers.nelts; i++) {

        if (p[i]->tls || p[i]->no_discovery) {
            continue;
        }

        ngx_shmtx_lock(&shpool->mutex);

        d = ngx_nexus_disc_find(nmcf->shm_zone, p[i], 1);

        due = (d != NULL && d->due <= now);

        if (due) {
            /* claimed: the other workers skip it until the next round */
            d->due = now + nmcf->discovery_interval;
        }

        ngx_shmtx_unlock(&shpool->mutex);

        if (due) {
            ngx_nexus_discovery_fetch((ngx_cycle_t *) ngx_cycle, p[i]);
        }
    }

    wait = ngx_min(nmcf->discovery_interval, 1000);

    ngx_add_timer(ev, wait);
}


static void
ngx_nexus_discovery_fetch(ngx_cycle_t *cycle, ngx_nexus_provider_t *p)
{
    ngx_int_t                       rc;
    const char                     *path;
    ngx_pool_t                     *pool;
    ngx_connection_t               *c;
    ngx_nexus_disc_fetch_t         *f;
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers;

    peers = p->upstream->peer.data;

    if (peers == NULL || peers->peer == NULL) {
        return;
    }

    peer = peers->peer;

    pool = ngx_create_pool(4096, cycle->log);
    if (pool == NULL) {
        return;
    }

    f = ngx_pcalloc(pool, sizeof(ngx_nexus_disc_fetch_t));
    if (f == NULL) {
        goto failed;
    }

    f->provider = p;
    f->pool = pool;

    path = (p->type == NX_LLM_OLLAMA) ? "/api/tags" : "/v1/models";

    f->request = ngx_create_temp_buf(pool, 512 + p->host.len + p->key.len);
    if (f->request == NULL) {
        goto failed;
    }

    f->request->last = ngx_sprintf(f->request->last,
                                   "GET %s HTTP/1.1\r\nHost: %V\r\n"
                                   "Accept: application/json\r\n"
                                   "User-Agent: nexus\r\n"
                                   "Connection: close\r\n",
                                   path, &p->host);

    if (p->key.len) {
        if (p->type == NX_LLM_ANTHROPIC) {
            f->request->last = ngx_sprintf(f->request->last,
                                           "x-api-key: %V\r\n", &p->key);
        } else {
            f->request->last = ngx_sprintf(f->request->last,
                                           "Authorization: Bearer %V\r\n",
                                           &p->key);
        }
    }

    if (p->type == NX_LLM_ANTHROPIC) {
        f->request->last = ngx_cpymem(f->request->last,
                                      "anthropic-version: 2023-06-01\r\n",
                                      31);
    }

    f->request->last = ngx_cpymem(f->request->last, "\r\n", 2);

    f->response = ngx_create_temp_buf(pool, 16384);
    if (f->response == NULL) {
        goto failed;
    }

    f->pc.sockaddr = peer->sockaddr;
    f->pc.socklen = peer->socklen;
    f->pc.name = &peer->name;
    f->pc.get = ngx_event_get_peer;
    f->pc.log = cycle->log;
    f->pc.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&f->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "nexus: cannot connect to provider \"%V\" to "
                      "discover its models", &p->name);
        if (f->pc.connection) {
            ngx_close_connection(f->pc.connection);
        }
        goto failed;
    }

    c = f->pc.connection;
    c->data = f;
    c->pool = pool;
    c->read->handler = ngx_nexus_discovery_read;
    c->write->handler = ngx_nexus_discovery_write;

    ngx_add_timer(c->read, p->conf.connect_timeout + 10000);

    if (rc == NGX_OK) {
        ngx_nexus_discovery_write(c->write);
    }

    return;

failed:

    ngx_destroy_pool(pool);
}


static void
ngx_nexus_discovery_write(ngx_event_t *wev)
{
    ssize_t                  n;
    ngx_connection_t        *c;
    ngx_nexus_disc_fetch_t  *f;

    c = wev->data;
    f = c->data;

    while (f->request->pos < f->request->last) {
        n = c->send(c, f->request->pos, f->request->last - f->request->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_nexus_discovery_done(f, 0);
            }
            return;
        }

        if (n <= 0) {
            ngx_nexus_discovery_done(f, 0);
            return;
        }

        f->request->pos += n;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_nexus_discovery_done(f, 0);
    }
}


static void
ngx_nexus_discovery_read(ngx_event_t *rev)
{
    size_t                   size;
    ssize_t                  n;
    ngx_buf_t               *b, *nb;
    ngx_connection_t        *c;
    ngx_nexus_disc_fetch_t  *f;

    c = rev->data;
    f = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "nexus: provider \"%V\" did not list its models in "
                      "time", &f->provider->name);
        ngx_nexus_discovery_done(f, 0);
        return;
    }

    if (f->request->pos < f->request->last) {
        /* still connecting or writing */
        ngx_nexus_discovery_write(c->write);
        if (f->request->pos < f->request->last) {
            return;
        }
    }

    for ( ;; ) {
        b = f->response;

        if (b->last == b->end) {
            size = 2 * (b->end - b->start);

            if (size > NGX_NEXUS_DISCOVERY_BODY_MAX) {
                ngx_log_error(NGX_LOG_WARN, c->log, 0,
                              "nexus: the model list of provider \"%V\" "
                              "is too large", &f->provider->name);
                ngx_nexus_discovery_done(f, 0);
                return;
            }

            nb = ngx_create_temp_buf(f->pool, size);
            if (nb == NULL) {
                ngx_nexus_discovery_done(f, 0);
                return;
            }

            nb->last = ngx_cpymem(nb->pos, b->pos, b->last - b->pos);
            f->response = nb;
            b = nb;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_nexus_discovery_done(f, 0);
            }
            return;
        }

        if (n == 0) {
            ngx_nexus_discovery_done(f, 1);
            return;
        }

        if (n < 0) {
            ngx_nexus_discovery_done(f, 0);
            return;
        }

        b->last += n;
    }
}


static void
ngx_nexus_discovery_done(ngx_nexus_disc_fetch_t *f, ngx_uint_t ok)
{
    size_t                  len;
    ngx_slab_pool_t        *shpool;
    ngx_nexus_disc_t       *d;
    ngx_nexus_main_conf_t  *nmcf;

    if (f->pc.connection) {
        ngx_close_connection(f->pc.connection);
        f->pc.connection = NULL;
    }

    if (ok && ngx_nexus_discovery_parse(f) == NGX_OK) {
        nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_nexus_module);
        shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);
        len = f->names.last - f->names.pos;

        ngx_shmtx_lock(&shpool->mutex);

        d = ngx_nexus_disc_find(nmcf->shm_zone, f->provider, 1);

        if (d != NULL && len > d->cap) {
            if (d->names) {
                ngx_slab_free_locked(shpool, d->names);
            }

            d->cap = 0;
            d->len = 0;
            d->names = ngx_slab_alloc_locked(shpool, len);

            if (d->names) {
                d->cap = len;
            }
        }

        if (d != NULL && (len == 0 || d->names != NULL)) {
            if (len) {
                ngx_memcpy(d->names, f->names.pos, len);
            }

            d->len = len;
            d->updated = ngx_nexus_discovery_now();
        }

        ngx_shmtx_unlock(&shpool->mutex);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "nexus: provider \"%V\" lists %ui models",
                       &f->provider->name, f->count);

    } else {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus: cannot discover the models of provider "
                      "\"%V\"", &f->provider->name);
    }

    ngx_destroy_pool(f->pool);
}


/* status 200, then the body (maybe chunked) as the provider's model list */

static ngx_int_t
ngx_nexus_discovery_parse(ngx_nexus_disc_fetch_t *f)
{
    u_char     *p, *last, *body, *hdr_end, *dst, *q;
    size_t      size;
    ngx_int_t   chunk;

    p = f->response->pos;
    last = f->response->last;

    if (last - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0
        || ngx_strncmp(p + 8, " 200", 4) != 0)
    {
        return NGX_ERROR;
    }

    hdr_end = ngx_strlcasestrn(p, last, (u_char *) "\r\n\r\n", 4 - 1);
    if (hdr_end == NULL) {
        return NGX_ERROR;
    }

    body = hdr_end + 4;

    if (ngx_strlcasestrn(p, hdr_end, (u_char *) "transfer-encoding: chunked",
                         sizeof("transfer-encoding: chunked") - 2)
        != NULL)
    {
        /* de-chunk in place */
        dst = body;
        q = body;

        for ( ;; ) {
            chunk = 0;

            while (q < last && ngx_hextoi(q, 1) != NGX_ERROR) {
                if (chunk > 0x1000000) {
                    return NGX_ERROR;
                }

                chunk = chunk * 16 + ngx_hextoi(q, 1);
                q++;
            }

            while (q < last && *q != '\n') {
                q++;
            }

            if (q == last) {
                return NGX_ERROR;
            }

            q++;

            if (chunk == 0) {
                break;
            }

            if (last - q < chunk + 2) {
                return NGX_ERROR;
            }

            dst = ngx_movemem(dst, q, chunk);
            q += chunk + 2;
        }

        last = dst;
    }

    size = ngx_min((size_t) (last - body), NGX_NEXUS_DISCOVERY_NAMES_MAX);

    f->names.start = ngx_pnalloc(f->pool, size + 1);
    if (f->names.start == NULL) {
        return NGX_ERROR;
    }

    f->names.pos = f->names.start;
    f->names.last = f->names.start;
    f->names.end = f->names.start + size;

    if (nx_llm_parse_models(f->provider->type, (const char *) body,
                            last - body, ngx_nexus_discovery_name, f)
        < 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_nexus_discovery_name(void *ud, const char *name, size_t len)
{
    ngx_nexus_disc_fetch_t *f = ud;

    if (len == 0 || (size_t) (f->names.end - f->names.last) < len + 1) {
        return;
    }

    f->names.last = ngx_cpymem(f->names.last, name, len);
    *f->names.last++ = '\0';
    f->count++;
}


/* the provider's entry; the zone's lock is held */

static ngx_nexus_disc_t *
ngx_nexus_disc_find(ngx_shm_zone_t *zone, ngx_nexus_provider_t *p,
    ngx_uint_t create)
{
    void             **slot;
    ngx_nexus_disc_t  *d;
    ngx_slab_pool_t   *shpool;

    slot = ngx_nexus_zone_slot(zone, NGX_NEXUS_SLOT_MODELS);

    for (d = *slot; d; d = d->next) {
        if (ngx_strlen(d->name) == p->name.len
            && ngx_strncmp(d->name, p->name.data, p->name.len) == 0)
        {
            return d;
        }
    }

    if (!create) {
        return NULL;
    }

    shpool = ngx_nexus_zone_shpool(zone);

    d = ngx_slab_calloc_locked(shpool, sizeof(ngx_nexus_disc_t));
    if (d == NULL) {
        return NULL;
    }

    ngx_memcpy(d->name, p->name.data, ngx_min(p->name.len, 64));
    d->next = *slot;
    *slot = d;

    return d;
}


/* Is model served by p, by the last list it gave within the TTL? */

ngx_uint_t
ngx_nexus_discovery_has(ngx_nexus_provider_t *p, u_char *model, size_t len)
{
    u_char                 *n, *last;
    size_t                  nl;
    ngx_uint_t              found;
    ngx_slab_pool_t        *shpool;
    ngx_nexus_disc_t       *d;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    found = 0;

    ngx_shmtx_lock(&shpool->mutex);

    d = ngx_nexus_disc_find(nmcf->shm_zone, p, 0);

    if (d != NULL && d->updated
        && ngx_nexus_discovery_now() - d->updated
           <= (int64_t) nmcf->discovery_ttl)
    {
        n = d->names;
        last = d->names + d->len;

        while (n < last) {
            nl = ngx_strlen(n);

            if (nl == len && ngx_strncmp(n, model, len) == 0) {
                found = 1;
                break;
            }

            n += nl + 1;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return found;
}


/*
 * Every discovered name of every provider (within the TTL) into an array
 * of ngx_str_t from pool; duplicates are left to the caller.
 */

ngx_int_t
ngx_nexus_discovery_names(ngx_pool_t *pool, ngx_array_t *out)
{
    u_char                 *n, *last;
    size_t                  nl;
    int64_t                 now;
    ngx_str_t              *s;
    ngx_slab_pool_t        *shpool;
    ngx_nexus_disc_t       *d;
    ngx_nexus_main_conf_t  *nmcf;
    void                  **slot;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);
    now = ngx_nexus_discovery_now();

    ngx_shmtx_lock(&shpool->mutex);

    slot = ngx_nexus_zone_slot(nmcf->shm_zone, NGX_NEXUS_SLOT_MODELS);

    for (d = *slot; d; d = d->next) {

        if (d->updated == 0
            || now - d->updated > (int64_t) nmcf->discovery_ttl
            || !ngx_nexus_discovery_current(nmcf, d->name))
        {
            continue;
        }

        n = d->names;
        last = d->names + d->len;

        while (n < last) {
            nl = ngx_strlen(n);

            s = ngx_array_push(out);
            if (s == NULL) {
                ngx_shmtx_unlock(&shpool->mutex);
                return NGX_ERROR;
            }

            s->data = ngx_pnalloc(pool, nl);
            if (s->data == NULL) {
                ngx_shmtx_unlock(&shpool->mutex);
                return NGX_ERROR;
            }

            ngx_memcpy(s->data, n, nl);
            s->len = nl;

            n += nl + 1;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* a provider of this configuration: entries of removed ones linger */

static ngx_uint_t
ngx_nexus_discovery_current(ngx_nexus_main_conf_t *nmcf, u_char *name)
{
    size_t                  len;
    ngx_uint_t              i;
    ngx_nexus_provider_t  **p;

    len = ngx_strlen(name);
    p = nmcf->providers.elts;

    for (i = 0; i < nmcf->providers.nelts; i++) {
        if (p[i]->name.len == len
            && ngx_strncmp(p[i]->name.data, name, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


char *
ngx_nexus_discovery_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_int_t    rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (nmcf->discovery_interval != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        rc = ngx_nexus_param_time(&value[i], "interval=", 100,
                                  &nmcf->discovery_interval);
        if (rc == NGX_DECLINED) {
            rc = ngx_nexus_param_time(&value[i], "ttl=", 100,
                                      &nmcf->discovery_ttl);
        }

        if (rc == NGX_OK) {
            continue;
        }

        goto invalid;
    }

    if (nmcf->discovery_interval == NGX_CONF_UNSET_MSEC) {
        nmcf->discovery_interval = 30000;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static int64_t
ngx_nexus_discovery_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}
