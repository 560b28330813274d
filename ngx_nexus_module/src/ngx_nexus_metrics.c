
/*
 * Copyright (C) Nexus authors
 *
 * Prometheus metrics of the node, in the text exposition format, at a
 * location with nexus_metrics.
 *
 * The counters live in the nexus zone, so that every worker adds to the
 * same numbers and a reload keeps them.  A label set is a node of one
 * rbtree (keyed by a CRC32 of its labels, in a queue in creation order
 * for the scrape), made the first time it is seen; after that an
 * observation is a lookup and a few additions under the zone's lock.
 *
 *   nexus_requests_total{tenant,model,provider,status}
 *   nexus_tokens_total{tenant,model,direction}
 *   nexus_request_duration_seconds{tenant,model}     histogram
 *   nexus_ttft_seconds{tenant,model}                 histogram
 *   nexus_upstream_attempts_total{provider,outcome}
 *   nexus_circuit_state{provider}                    gauge
 *   nexus_circuit_opened_total{provider}
 *   nexus_metrics_series, nexus_metrics_overflow_total
 *
 * Cardinality is bounded: at most NGX_NEXUS_METRICS_SERIES label sets of
 * tenant and model (with or without provider and status).  Beyond that,
 * new ones are counted under tenant="_other", model="_other".  Clients
 * choose model names: a model that no provider served and no nexus_model
 * names is counted as model="_other" from the start, so that made-up
 * names cannot fill the table.  Provider label values come from the
 * configuration, never from clients.
 *
 * A scrape copies the nodes under the lock (a memcpy of at most about a
 * megabyte) and formats the copy after unlocking, so that the workers'
 * hot path never waits for the formatting.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_provider.h"
#include "ngx_nexus_breaker.h"
#include "ngx_nexus_metrics.h"


#define NGX_NEXUS_METRICS_SERIES    2048

#define NGX_NEXUS_METRICS_REQ       0   /* tenant, model, provider, status */
#define NGX_NEXUS_METRICS_TM        1   /* tenant, model */
#define NGX_NEXUS_METRICS_ATTEMPT   2   /* provider */

/* the counters of a node, by kind */
#define NGX_NEXUS_METRICS_BUCKETS   14  /* and +Inf */
#define NGX_NEXUS_METRICS_HIST      (NGX_NEXUS_METRICS_BUCKETS + 3)
#define NGX_NEXUS_METRICS_PROMPT    0
#define NGX_NEXUS_METRICS_COMPL     1
#define NGX_NEXUS_METRICS_DURATION  2
#define NGX_NEXUS_METRICS_TTFT      (2 + NGX_NEXUS_METRICS_HIST)
#define NGX_NEXUS_METRICS_TM_N      (2 + 2 * NGX_NEXUS_METRICS_HIST)

#define NGX_NEXUS_METRICS_PROVIDER  64
#define NGX_NEXUS_METRICS_BUF       32768
#define NGX_NEXUS_METRICS_LINE      2048    /* the longest lines, escaped */


typedef struct {
    ngx_rbtree_node_t           node;       /* key: CRC32 of the labels */
    ngx_queue_t                 queue;
    uint32_t                    size;       /* of the whole node */
    u_char                      kind;
    u_char                      tenant_len;
    u_char                      model_len;
    u_char                      provider_len;
    ngx_uint_t                  status;
    u_char                     *labels;     /* tenant model provider */
    uint64_t                    v[1];       /* counters, then labels */
} ngx_nexus_metrics_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;
    ngx_uint_t                  series;     /* of tenant and model */
    ngx_uint_t                  nodes;
    size_t                      bytes;      /* of every node */
    uint64_t                    overflow;
} ngx_nexus_metrics_sh_t;


typedef struct {
    ngx_uint_t                  kind;
    ngx_str_t                   tenant;
    ngx_str_t                   model;
    ngx_str_t                   provider;
    ngx_uint_t                  status;
    uint32_t                    hash;
} ngx_nexus_metrics_key_t;


typedef struct {
    ngx_http_request_t         *r;
    ngx_chain_t                *first;
    ngx_chain_t               **last;
    ngx_buf_t                  *b;
    off_t                       size;
} ngx_nexus_metrics_out_t;


static ngx_nexus_metrics_sh_t *ngx_nexus_metrics_sh(ngx_shm_zone_t *zone,
    ngx_slab_pool_t *shpool);
static void ngx_nexus_metrics_key(ngx_nexus_metrics_key_t *k,
    ngx_uint_t kind, ngx_str_t *tenant, ngx_str_t *model,
    ngx_str_t *provider, ngx_uint_t status);
static void ngx_nexus_metrics_node_key(ngx_nexus_metrics_node_t *n,
    ngx_nexus_metrics_key_t *k);
static ngx_int_t ngx_nexus_metrics_cmp(ngx_nexus_metrics_key_t *a,
    ngx_nexus_metrics_key_t *b);
static void ngx_nexus_metrics_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_nexus_metrics_node_t *ngx_nexus_metrics_get(
    ngx_nexus_metrics_sh_t *sh, ngx_slab_pool_t *shpool,
    ngx_nexus_metrics_key_t *k, ngx_uint_t bounded);
static ngx_uint_t ngx_nexus_metrics_nv(ngx_uint_t kind);
static void ngx_nexus_metrics_observe(uint64_t *h, ngx_msec_t ms);
static ngx_uint_t ngx_nexus_metrics_known_model(
    ngx_nexus_main_conf_t *nmcf, ngx_str_t *model);

static u_char *ngx_nexus_metrics_room(ngx_nexus_metrics_out_t *out);
static ngx_int_t ngx_nexus_metrics_line(ngx_nexus_metrics_out_t *out,
    u_char *last);
static u_char *ngx_nexus_metrics_escape(u_char *p, u_char *s, size_t len);
static u_char *ngx_nexus_metrics_tm(u_char *p, ngx_nexus_metrics_node_t *n);
static ngx_int_t ngx_nexus_metrics_text(ngx_nexus_metrics_out_t *out,
    const char *text);
static ngx_int_t ngx_nexus_metrics_histogram(ngx_nexus_metrics_out_t *out,
    ngx_nexus_metrics_node_t **nodes, ngx_uint_t n, const char *name,
    ngx_uint_t off);
static ngx_int_t ngx_nexus_metrics_render(ngx_nexus_metrics_out_t *out,
    ngx_nexus_metrics_node_t **nodes, ngx_uint_t n, ngx_uint_t series,
    uint64_t overflow);


/* bucket bounds, in ms and as "le" */
static ngx_msec_t  ngx_nexus_metrics_le_ms[NGX_NEXUS_METRICS_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    120000
};

static const char  *ngx_nexus_metrics_le[NGX_NEXUS_METRICS_BUCKETS + 1] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30", "60", "120", "+Inf"
};

static const char  *ngx_nexus_metrics_outcomes[NGX_NEXUS_ATTEMPT_OUTCOMES] = {
    "ok", "error", "timeout", "http_5xx", "http_429", "http_4xx",
    "breaker_open", "aborted"
};

static ngx_str_t  ngx_nexus_metrics_other = ngx_string("_other");


/* nexus_metrics; */

char *
ngx_nexus_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_nexus_main_conf_t     *nmcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (nlcf->handler != NGX_NEXUS_HANDLER_NONE) {
        return "is duplicate";
    }

    nlcf->handler = NGX_NEXUS_HANDLER_METRICS;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_nexus_metrics_handler;

    nmcf = ngx_http_conf_get_module_main_conf(cf, ngx_nexus_module);
    nmcf->zone_needed = 1;

    return NGX_CONF_OK;
}


static ngx_nexus_metrics_sh_t *
ngx_nexus_metrics_sh(ngx_shm_zone_t *zone, ngx_slab_pool_t *shpool)
{
    void                    **slot;
    ngx_nexus_metrics_sh_t   *sh;

    slot = ngx_nexus_zone_slot(zone, NGX_NEXUS_SLOT_METRICS);

    if (*slot == NULL) {
        sh = ngx_slab_calloc_locked(shpool, sizeof(ngx_nexus_metrics_sh_t));
        if (sh == NULL) {
            return NULL;
        }

        ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                        ngx_nexus_metrics_rbtree_insert);
        ngx_queue_init(&sh->queue);

        *slot = sh;
    }

    return *slot;
}


static void
ngx_nexus_metrics_key(ngx_nexus_metrics_key_t *k, ngx_uint_t kind,
    ngx_str_t *tenant, ngx_str_t *model, ngx_str_t *provider,
    ngx_uint_t status)
{
    uint32_t  hash;
    u_char    sep[2];

    k->kind = kind;
    k->tenant = *tenant;
    k->model = *model;
    k->provider = *provider;
    k->status = status;

    /* an empty label may come as { 0, NULL }: memcpy() wants a pointer */
    if (k->tenant.data == NULL) {
        k->tenant.data = (u_char *) "";
    }

    if (k->model.data == NULL) {
        k->model.data = (u_char *) "";
    }

    if (k->provider.data == NULL) {
        k->provider.data = (u_char *) "";
    }

    sep[0] = (u_char) kind;
    sep[1] = (u_char) status;

    ngx_crc32_init(hash);
    ngx_crc32_update(&hash, sep, 2);
    ngx_crc32_update(&hash, k->tenant.data, k->tenant.len);
    ngx_crc32_update(&hash, (u_char *) "\n", 1);
    ngx_crc32_update(&hash, k->model.data, k->model.len);
    ngx_crc32_update(&hash, (u_char *) "\n", 1);
    ngx_crc32_update(&hash, k->provider.data, k->provider.len);
    ngx_crc32_final(hash);

    k->hash = hash;
}


static void
ngx_nexus_metrics_node_key(ngx_nexus_metrics_node_t *n,
    ngx_nexus_metrics_key_t *k)
{
    k->kind = n->kind;
    k->tenant.data = n->labels;
    k->tenant.len = n->tenant_len;
    k->model.data = n->labels + n->tenant_len;
    k->model.len = n->model_len;
    k->provider.data = k->model.data + n->model_len;
    k->provider.len = n->provider_len;
    k->status = n->status;
    k->hash = (uint32_t) n->node.key;
}


static ngx_int_t
ngx_nexus_metrics_cmp(ngx_nexus_metrics_key_t *a, ngx_nexus_metrics_key_t *b)
{
    ngx_int_t  rc;

    if (a->kind != b->kind) {
        return (a->kind < b->kind) ? -1 : 1;
    }

    if (a->status != b->status) {
        return (a->status < b->status) ? -1 : 1;
    }

    rc = ngx_memn2cmp(a->tenant.data, b->tenant.data, a->tenant.len,
                      b->tenant.len);
    if (rc) {
        return rc;
    }

    rc = ngx_memn2cmp(a->model.data, b->model.data, a->model.len,
                      b->model.len);
    if (rc) {
        return rc;
    }

    return ngx_memn2cmp(a->provider.data, b->provider.data, a->provider.len,
                        b->provider.len);
}


static void
ngx_nexus_metrics_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t        **p;
    ngx_nexus_metrics_key_t    kn, kt;

    ngx_nexus_metrics_node_key((ngx_nexus_metrics_node_t *) node, &kn);

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            ngx_nexus_metrics_node_key((ngx_nexus_metrics_node_t *) temp,
                                       &kt);
            p = (ngx_nexus_metrics_cmp(&kn, &kt) < 0)
                ? &temp->left : &temp->right;
        }

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


static ngx_uint_t
ngx_nexus_metrics_nv(ngx_uint_t kind)
{
    switch (kind) {
    case NGX_NEXUS_METRICS_REQ:
        return 1;
    case NGX_NEXUS_METRICS_TM:
        return NGX_NEXUS_METRICS_TM_N;
    default:
        return NGX_NEXUS_ATTEMPT_OUTCOMES;
    }
}


/*
 * The node of a label set, made if need be; called locked.  A bounded
 * kind is not made once the table holds NGX_NEXUS_METRICS_SERIES label
 * sets: NULL then, as when the zone is full.
 */

static ngx_nexus_metrics_node_t *
ngx_nexus_metrics_get(ngx_nexus_metrics_sh_t *sh, ngx_slab_pool_t *shpool,
    ngx_nexus_metrics_key_t *k, ngx_uint_t bounded)
{
    size_t                     size;
    ngx_int_t                  rc;
    ngx_uint_t                 nv;
    ngx_rbtree_node_t         *node, *sentinel;
    ngx_nexus_metrics_key_t    kn;
    ngx_nexus_metrics_node_t  *n;

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (k->hash < node->key) {
            node = node->left;
            continue;
        }

        if (k->hash > node->key) {
            node = node->right;
            continue;
        }

        ngx_nexus_metrics_node_key((ngx_nexus_metrics_node_t *) node, &kn);

        rc = ngx_nexus_metrics_cmp(k, &kn);

        if (rc == 0) {
            return (ngx_nexus_metrics_node_t *) node;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    if (bounded && sh->series >= NGX_NEXUS_METRICS_SERIES) {
        return NULL;
    }

    nv = ngx_nexus_metrics_nv(k->kind);

    size = offsetof(ngx_nexus_metrics_node_t, v) + nv * sizeof(uint64_t)
           + k->tenant.len + k->model.len + k->provider.len;
    size = ngx_align(size, sizeof(uint64_t));

    n = ngx_slab_alloc_locked(shpool, size);
    if (n == NULL) {
        return NULL;
    }

    ngx_memzero(n, size);

    n->size = size;
    n->kind = (u_char) k->kind;
    n->tenant_len = (u_char) k->tenant.len;
    n->model_len = (u_char) k->model.len;
    n->provider_len = (u_char) k->provider.len;
    n->status = k->status;
    n->labels = (u_char *) &n->v[nv];

    ngx_memcpy(n->labels, k->tenant.data, k->tenant.len);
    ngx_memcpy(n->labels + k->tenant.len, k->model.data, k->model.len);
    ngx_memcpy(n->labels + k->tenant.len + k->model.len, k->provider.data,
               k->provider.len);

    n->node.key = k->hash;
    ngx_rbtree_insert(&sh->rbtree, &n->node);
    ngx_queue_insert_tail(&sh->queue, &n->queue);

    sh->nodes++;
    sh->bytes += size;

    if (k->kind != NGX_NEXUS_METRICS_ATTEMPT) {
        sh->series++;
    }

    return n;
}


/* h: the buckets (the last one +Inf only), the sum in ms, the count */

static void
ngx_nexus_metrics_observe(uint64_t *h, ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_NEXUS_METRICS_BUCKETS; i++) {
        if (ms <= ngx_nexus_metrics_le_ms[i]) {
            break;
        }
    }

    h[i]++;
    h[NGX_NEXUS_METRICS_BUCKETS + 1] += ms;
    h[NGX_NEXUS_METRICS_BUCKETS + 2]++;
}


static ngx_uint_t
ngx_nexus_metrics_known_model(ngx_nexus_main_conf_t *nmcf, ngx_str_t *model)
{
    ngx_uint_t          i;
    ngx_nexus_model_t  *m;

    m = nmcf->models.elts;

    for (i = 0; i < nmcf->models.nelts; i++) {
        if (m[i].name.len == model->len
            && ngx_strncmp(m[i].name.data, model->data, model->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


void
ngx_nexus_metrics_request(const ngx_nexus_metrics_req_t *m)
{
    ngx_str_t                  tenant, model, provider, none;
    ngx_uint_t                 status, folded;
    ngx_slab_pool_t           *shpool;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_metrics_sh_t    *sh;
    ngx_nexus_metrics_key_t    ktm, kreq, kother;
    ngx_nexus_metrics_node_t  *tm, *req;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    if (nmcf == NULL || nmcf->shm_zone == NULL) {
        return;
    }

    tenant = m->tenant;
    model = m->model;
    provider = m->provider;
    status = (m->status < 1000) ? m->status : 0;

    if (tenant.len > NGX_NEXUS_TENANT_MAX) {
        tenant = ngx_nexus_metrics_other;
    }

    if (provider.len > NGX_NEXUS_METRICS_PROVIDER) {
        provider = ngx_nexus_metrics_other;
    }

    /* only names a provider or the configuration vouches for */
    if (model.len > NX_LLM_MODEL_MAX
        || (provider.len == 0 && model.len
            && !ngx_nexus_metrics_known_model(nmcf, &model)))
    {
        model = ngx_nexus_metrics_other;
    }

    ngx_str_null(&none);

    ngx_nexus_metrics_key(&ktm, NGX_NEXUS_METRICS_TM, &tenant, &model, &none,
                          0);
    ngx_nexus_metrics_key(&kreq, NGX_NEXUS_METRICS_REQ, &tenant, &model,
                          &provider, status);

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);
    folded = 0;

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_nexus_metrics_sh(nmcf->shm_zone, shpool);
    if (sh == NULL) {
        goto done;
    }

    tm = ngx_nexus_metrics_get(sh, shpool, &ktm, 1);

    if (tm == NULL) {
        folded = 1;
        ngx_nexus_metrics_key(&kother, NGX_NEXUS_METRICS_TM,
                              &ngx_nexus_metrics_other,
                              &ngx_nexus_metrics_other, &none, 0);
        tm = ngx_nexus_metrics_get(sh, shpool, &kother, 0);
    }

    if (tm) {
        if (m->prompt_tokens > 0) {
            tm->v[NGX_NEXUS_METRICS_PROMPT] += m->prompt_tokens;
        }

        if (m->completion_tokens > 0) {
            tm->v[NGX_NEXUS_METRICS_COMPL] += m->completion_tokens;
        }

        ngx_nexus_metrics_observe(&tm->v[NGX_NEXUS_METRICS_DURATION],
                                  m->duration);

        if (m->has_ttft) {
            ngx_nexus_metrics_observe(&tm->v[NGX_NEXUS_METRICS_TTFT],
                                      m->ttft);
        }
    }

    req = ngx_nexus_metrics_get(sh, shpool, &kreq, 1);

    if (req == NULL) {
        folded = 1;
        ngx_nexus_metrics_key(&kother, NGX_NEXUS_METRICS_REQ,
                              &ngx_nexus_metrics_other,
                              &ngx_nexus_metrics_other, &provider, status);
        req = ngx_nexus_metrics_get(sh, shpool, &kother, 0);
    }

    if (req) {
        req->v[0]++;
    }

    sh->overflow += folded;

done:

    ngx_shmtx_unlock(&shpool->mutex);
}


void
ngx_nexus_metrics_attempt(ngx_nexus_provider_t *p, ngx_uint_t outcome)
{
    ngx_str_t                  none;
    ngx_slab_pool_t           *shpool;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_metrics_sh_t    *sh;
    ngx_nexus_metrics_key_t    k;
    ngx_nexus_metrics_node_t  *n;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);

    if (nmcf == NULL || nmcf->shm_zone == NULL
        || outcome >= NGX_NEXUS_ATTEMPT_OUTCOMES
        || p->name.len > NGX_NEXUS_METRICS_PROVIDER)
    {
        return;
    }

    ngx_str_null(&none);
    ngx_nexus_metrics_key(&k, NGX_NEXUS_METRICS_ATTEMPT, &none, &none,
                          &p->name, 0);

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_nexus_metrics_sh(nmcf->shm_zone, shpool);

    n = sh ? ngx_nexus_metrics_get(sh, shpool, &k, 0) : NULL;

    if (n) {
        n->v[outcome]++;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


ngx_int_t
ngx_nexus_metrics_handler(ngx_http_request_t *r)
{
    u_char                     *copy, *c, *end;
    size_t                      bytes;
    uint64_t                    overflow;
    ngx_int_t                   rc;
    ngx_uint_t                  n, nnodes, series;
    ngx_queue_t                *q;
    ngx_slab_pool_t            *shpool;
    ngx_nexus_metrics_sh_t     *sh;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_nexus_metrics_out_t     out;
    ngx_nexus_metrics_node_t   *node, **nodes;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);
    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    /* how much to copy; it may grow before the copy: the rest waits */
    ngx_shmtx_lock(&shpool->mutex);
    sh = ngx_nexus_metrics_sh(nmcf->shm_zone, shpool);
    bytes = sh ? sh->bytes : 0;
    nnodes = sh ? sh->nodes : 0;
    ngx_shmtx_unlock(&shpool->mutex);

    copy = ngx_palloc(r->pool, bytes + sizeof(uint64_t));
    nodes = ngx_palloc(r->pool, (nnodes + 1) * sizeof(void *));
    if (copy == NULL || nodes == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    c = ngx_align_ptr(copy, sizeof(uint64_t));
    end = c + bytes;
    n = 0;
    series = 0;
    overflow = 0;

    ngx_shmtx_lock(&shpool->mutex);

    if (sh) {
        series = sh->series;
        overflow = sh->overflow;

        for (q = ngx_queue_head(&sh->queue);
             q != ngx_queue_sentinel(&sh->queue) && n < nnodes;
             q = ngx_queue_next(q))
        {
            node = ngx_queue_data(q, ngx_nexus_metrics_node_t, queue);

            if ((size_t) (end - c) < node->size) {
                break;
            }

            ngx_memcpy(c, node, node->size);
            nodes[n] = (ngx_nexus_metrics_node_t *) c;
            nodes[n]->labels = c + (node->labels - (u_char *) node);
            c += node->size;
            n++;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    out.r = r;
    out.first = NULL;
    out.last = &out.first;
    out.b = NULL;
    out.size = 0;

    if (ngx_nexus_metrics_render(&out, nodes, n, series, overflow)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = out.size;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_nexus_add_header(r, "Cache-Control", "no-store") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.b->last_buf = (r == r->main) ? 1 : 0;
    out.b->last_in_chain = 1;

    return ngx_http_output_filter(r, out.first);
}


/* a buffer with room for the longest line */

static u_char *
ngx_nexus_metrics_room(ngx_nexus_metrics_out_t *out)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (out->b && out->b->end - out->b->last >= NGX_NEXUS_METRICS_LINE) {
        return out->b->last;
    }

    b = ngx_create_temp_buf(out->r->pool, NGX_NEXUS_METRICS_BUF);
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(out->r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *out->last = cl;
    out->last = &cl->next;
    out->b = b;

    return b->last;
}


static ngx_int_t
ngx_nexus_metrics_line(ngx_nexus_metrics_out_t *out, u_char *last)
{
    out->size += last - out->b->last;
    out->b->last = last;

    return NGX_OK;
}


/* a label value: backslash, double quote and line feed escaped */

static u_char *
ngx_nexus_metrics_escape(u_char *p, u_char *s, size_t len)
{
    while (len--) {
        switch (*s) {
        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;
        case '"':
            *p++ = '\\';
            *p++ = '"';
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        default:
            *p++ = *s;
            break;
        }

        s++;
    }

    return p;
}


/* tenant="...",model="..." */

static u_char *
ngx_nexus_metrics_tm(u_char *p, ngx_nexus_metrics_node_t *n)
{
    p = ngx_cpymem(p, "tenant=\"", sizeof("tenant=\"") - 1);
    p = ngx_nexus_metrics_escape(p, n->labels, n->tenant_len);
    p = ngx_cpymem(p, "\",model=\"", sizeof("\",model=\"") - 1);
    p = ngx_nexus_metrics_escape(p, n->labels + n->tenant_len,
                                 n->model_len);
    *p++ = '"';

    return p;
}


static ngx_int_t
ngx_nexus_metrics_text(ngx_nexus_metrics_out_t *out, const char *text)
{
    u_char  *p;

    p = ngx_nexus_metrics_room(out);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_nexus_metrics_line(out, ngx_sprintf(p, "%s", text));
}


static ngx_int_t
ngx_nexus_metrics_histogram(ngx_nexus_metrics_out_t *out,
    ngx_nexus_metrics_node_t **nodes, ngx_uint_t n, const char *name,
    ngx_uint_t off)
{
    u_char      *p;
    uint64_t    *h, cum;
    ngx_uint_t   i, j;

    for (i = 0; i < n; i++) {
        if (nodes[i]->kind != NGX_NEXUS_METRICS_TM) {
            continue;
        }

        h = &nodes[i]->v[off];

        /* a label set that never had a first token shows no ttft */
        if (h[NGX_NEXUS_METRICS_BUCKETS + 2] == 0
            && off == NGX_NEXUS_METRICS_TTFT)
        {
            continue;
        }

        cum = 0;

        for (j = 0; j <= NGX_NEXUS_METRICS_BUCKETS; j++) {
            cum += h[j];

            p = ngx_nexus_metrics_room(out);
            if (p == NULL) {
                return NGX_ERROR;
            }

            p = ngx_sprintf(p, "%s_bucket{", name);
            p = ngx_nexus_metrics_tm(p, nodes[i]);
            p = ngx_sprintf(p, ",le=\"%s\"} %uL\n",
                            ngx_nexus_metrics_le[j], cum);

            ngx_nexus_metrics_line(out, p);
        }

        p = ngx_nexus_metrics_room(out);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(p, "%s_sum{", name);
        p = ngx_nexus_metrics_tm(p, nodes[i]);
        p = ngx_sprintf(p, "} %uL.%03uL\n%s_count{",
                        h[NGX_NEXUS_METRICS_BUCKETS + 1] / 1000,
                        h[NGX_NEXUS_METRICS_BUCKETS + 1] % 1000, name);
        p = ngx_nexus_metrics_tm(p, nodes[i]);
        p = ngx_sprintf(p, "} %uL\n", h[NGX_NEXUS_METRICS_BUCKETS + 2]);

        ngx_nexus_metrics_line(out, p);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_metrics_render(ngx_nexus_metrics_out_t *out,
    ngx_nexus_metrics_node_t **nodes, ngx_uint_t n, ngx_uint_t series,
    uint64_t overflow)
{
    u_char                     *p;
    uint32_t                    state;
    ngx_uint_t                  i, j;
    nx_breaker_t                b;
    ngx_nexus_provider_t      **pr;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_nexus_metrics_node_t   *nd, *attempts;

    nmcf = ngx_http_get_module_main_conf(out->r, ngx_nexus_module);

    /* nexus_requests_total */

    if (ngx_nexus_metrics_text(out,
            "# HELP nexus_requests_total Requests answered by the "
            "gateway, by tenant, model requested, provider that served "
            "(\"\" when none) and HTTP status.\n"
            "# TYPE nexus_requests_total counter\n")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        nd = nodes[i];

        if (nd->kind != NGX_NEXUS_METRICS_REQ) {
            continue;
        }

        p = ngx_nexus_metrics_room(out);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, "nexus_requests_total{",
                       sizeof("nexus_requests_total{") - 1);
        p = ngx_nexus_metrics_tm(p, nd);
        p = ngx_cpymem(p, ",provider=\"", sizeof(",provider=\"") - 1);
        p = ngx_nexus_metrics_escape(p,
                                     nd->labels + nd->tenant_len
                                     + nd->model_len, nd->provider_len);
        p = ngx_sprintf(p, "\",status=\"%ui\"} %uL\n", nd->status, nd->v[0]);

        ngx_nexus_metrics_line(out, p);
    }

    /* nexus_tokens_total */

    if (ngx_nexus_metrics_text(out,
            "# HELP nexus_tokens_total Tokens metered, by tenant, model "
            "requested and direction.\n"
            "# TYPE nexus_tokens_total counter\n")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        nd = nodes[i];

        if (nd->kind != NGX_NEXUS_METRICS_TM) {
            continue;
        }

        p = ngx_nexus_metrics_room(out);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, "nexus_tokens_total{",
                       sizeof("nexus_tokens_total{") - 1);
        p = ngx_nexus_metrics_tm(p, nd);
        p = ngx_sprintf(p, ",direction=\"prompt\"} %uL\nnexus_tokens_total{",
                        nd->v[NGX_NEXUS_METRICS_PROMPT]);
        p = ngx_nexus_metrics_tm(p, nd);
        p = ngx_sprintf(p, ",direction=\"completion\"} %uL\n",
                        nd->v[NGX_NEXUS_METRICS_COMPL]);

        ngx_nexus_metrics_line(out, p);
    }

    /* the histograms */

    if (ngx_nexus_metrics_text(out,
            "# HELP nexus_request_duration_seconds Time from the request's "
            "start to its end, by tenant and model requested.\n"
            "# TYPE nexus_request_duration_seconds histogram\n")
        != NGX_OK
        || ngx_nexus_metrics_histogram(out, nodes, n,
                                       "nexus_request_duration_seconds",
                                       NGX_NEXUS_METRICS_DURATION)
           != NGX_OK
        || ngx_nexus_metrics_text(out,
            "# HELP nexus_ttft_seconds Time from the request's start to "
            "the first token sent to the client, by tenant and model "
            "requested.\n"
            "# TYPE nexus_ttft_seconds histogram\n")
           != NGX_OK
        || ngx_nexus_metrics_histogram(out, nodes, n, "nexus_ttft_seconds",
                                       NGX_NEXUS_METRICS_TTFT)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* per provider: the providers of this configuration, zeros included */

    pr = nmcf->providers.elts;

    if (ngx_nexus_metrics_text(out,
            "# HELP nexus_upstream_attempts_total Attempts to reach a "
            "provider, by outcome (breaker_open: skipped, its circuit "
            "was open; aborted: the client left first).\n"
            "# TYPE nexus_upstream_attempts_total counter\n")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < nmcf->providers.nelts; i++) {
        attempts = NULL;

        for (j = 0; j < n; j++) {
            nd = nodes[j];

            if (nd->kind == NGX_NEXUS_METRICS_ATTEMPT
                && nd->provider_len == pr[i]->name.len
                && ngx_memcmp(nd->labels, pr[i]->name.data,
                              pr[i]->name.len) == 0)
            {
                attempts = nd;
                break;
            }
        }

        for (j = 0; j < NGX_NEXUS_ATTEMPT_OUTCOMES; j++) {
            p = ngx_nexus_metrics_room(out);
            if (p == NULL) {
                return NGX_ERROR;
            }

            p = ngx_cpymem(p, "nexus_upstream_attempts_total{provider=\"",
                       sizeof("nexus_upstream_attempts_total{provider=\"")
                       - 1);
            p = ngx_nexus_metrics_escape(p, pr[i]->name.data,
                                         pr[i]->name.len);
            /* an outcome added to the header without a name here */
            p = ngx_sprintf(p, "\",outcome=\"%s\"} %uL\n",
                            ngx_nexus_metrics_outcomes[j]
                            ? ngx_nexus_metrics_outcomes[j] : "other",
                            attempts ? attempts->v[j] : (uint64_t) 0);

            ngx_nexus_metrics_line(out, p);
        }
    }

    if (ngx_nexus_metrics_text(out,
            "# HELP nexus_circuit_state State of a provider's circuit "
            "breaker: 0 closed, 1 open, 2 half-open.\n"
            "# TYPE nexus_circuit_state gauge\n")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < nmcf->providers.nelts; i++) {
        ngx_nexus_breaker_view(pr[i], &b, &state);

        p = ngx_nexus_metrics_room(out);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, "nexus_circuit_state{provider=\"",
                       sizeof("nexus_circuit_state{provider=\"") - 1);
        p = ngx_nexus_metrics_escape(p, pr[i]->name.data, pr[i]->name.len);
        p = ngx_sprintf(p, "\"} %uD\n", state);

        ngx_nexus_metrics_line(out, p);
    }

    if (ngx_nexus_metrics_text(out,
            "# HELP nexus_circuit_opened_total Times a provider's circuit "
            "breaker opened.\n"
            "# TYPE nexus_circuit_opened_total counter\n")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < nmcf->providers.nelts; i++) {
        ngx_nexus_breaker_view(pr[i], &b, &state);

        p = ngx_nexus_metrics_room(out);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, "nexus_circuit_opened_total{provider=\"",
                       sizeof("nexus_circuit_opened_total{provider=\"") - 1);
        p = ngx_nexus_metrics_escape(p, pr[i]->name.data, pr[i]->name.len);
        p = ngx_sprintf(p, "\"} %uL\n", b.opened);

        ngx_nexus_metrics_line(out, p);
    }

    /* the bound itself */

    p = ngx_nexus_metrics_room(out);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p,
            "# HELP nexus_metrics_series Label sets of tenant and model "
            "held (new ones beyond %d count as \"_other\").\n"
            "# TYPE nexus_metrics_series gauge\n"
            "nexus_metrics_series %ui\n"
            "# HELP nexus_metrics_overflow_total Requests counted under "
            "tenant=\"_other\",model=\"_other\" because the label sets "
            "were exhausted.\n"
            "# TYPE nexus_metrics_overflow_total counter\n"
            "nexus_metrics_overflow_total %uL\n",
            NGX_NEXUS_METRICS_SERIES, series, overflow);

    return ngx_nexus_metrics_line(out, p);
}
