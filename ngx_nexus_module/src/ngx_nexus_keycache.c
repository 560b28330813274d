
/*
 * Copyright (C) Nexus authors
 *
 * API key cache in the nexus shared zone.
 *
 * Entries are found by key hash (one rbtree) and by prefix (a second
 * rbtree, for eviction on NOTIFY).  An LRU queue gives the oldest entries
 * to reclaim when the zone is full.  The epoch counter grows on every
 * eviction: a lookup that started before an eviction must not put its
 * possibly stale answer back into the cache.
 */


#include "ngx_nexus_keycache.h"


#define NGX_NEXUS_MAX_LISTENERS     64


typedef struct {
    ngx_rbtree_node_t           node;       /* by hash */
    ngx_rbtree_node_t           pnode;      /* by prefix, found entries */
    ngx_queue_t                 lru;
    ngx_msec_t                  expire;
    u_char                      hash[NX_HASH_LEN];
    u_char                      found;
    /* "no such key": the tenant of its prefix when that is a key's */
    int64_t                     tenant_id;
    ngx_nexus_key_data_t        data;       /* only for found entries */
} ngx_nexus_key_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_rbtree_t                prefixes;
    ngx_rbtree_node_t           psentinel;
    ngx_queue_t                 lru;
    uint64_t                    epoch;
    ngx_uint_t                  entries;
    ngx_pid_t                   listeners[NGX_NEXUS_MAX_LISTENERS];
    void                       *slots[NGX_NEXUS_ZONE_SLOTS];
} ngx_nexus_keycache_sh_t;


typedef struct {
    ngx_nexus_keycache_sh_t    *sh;
    ngx_slab_pool_t            *shpool;
} ngx_nexus_keycache_t;


#define ngx_nexus_node_from_pnode(pn)                                         \
    ((ngx_nexus_key_node_t *)                                                 \
        ((u_char *) (pn) - offsetof(ngx_nexus_key_node_t, pnode)))


static void ngx_nexus_keycache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_nexus_key_node_t *ngx_nexus_keycache_find(
    ngx_nexus_keycache_t *kc, const u_char *hash);
static void ngx_nexus_keycache_delete(ngx_nexus_keycache_t *kc,
    ngx_nexus_key_node_t *kn);
static void ngx_nexus_keycache_expire(ngx_nexus_keycache_t *kc,
    ngx_uint_t n);
static void ngx_nexus_keycache_drop(ngx_nexus_keycache_t *kc);
static void ngx_nexus_keycache_put(ngx_shm_zone_t *zone, const u_char *hash,
    ngx_nexus_key_data_t *data, int64_t tenant_id, ngx_msec_t ttl,
    uint64_t epoch);
static ngx_nexus_key_node_t *ngx_nexus_keycache_find_prefix(
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel,
    ngx_rbtree_key_t key, const u_char *prefix);


ngx_int_t
ngx_nexus_keycache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                 len;
    ngx_nexus_keycache_t  *okc = data;
    ngx_nexus_keycache_t  *kc;

    kc = shm_zone->data;

    if (okc) {
        /* a reload keeps the cache and its epoch */
        kc->sh = okc->sh;
        kc->shpool = okc->shpool;
        return NGX_OK;
    }

    kc->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        kc->sh = kc->shpool->data;
        return NGX_OK;
    }

    kc->sh = ngx_slab_alloc(kc->shpool, sizeof(ngx_nexus_keycache_sh_t));
    if (kc->sh == NULL) {
        return NGX_ERROR;
    }

    kc->shpool->data = kc->sh;

    ngx_rbtree_init(&kc->sh->rbtree, &kc->sh->sentinel,
                    ngx_nexus_keycache_rbtree_insert);
    ngx_rbtree_init(&kc->sh->prefixes, &kc->sh->psentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&kc->sh->lru);
    kc->sh->epoch = 1;
    kc->sh->entries = 0;
    ngx_memzero(kc->sh->listeners, sizeof(kc->sh->listeners));
    ngx_memzero(kc->sh->slots, sizeof(kc->sh->slots));

    len = sizeof(" in nexus zone \"\"") + shm_zone->shm.name.len;

    kc->shpool->log_ctx = ngx_slab_alloc(kc->shpool, len);
    if (kc->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(kc->shpool->log_ctx, " in nexus zone \"%V\"%Z",
                &shm_zone->shm.name);

    kc->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_nexus_keycache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t     **p;
    ngx_nexus_key_node_t   *kn, *kt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            kn = (ngx_nexus_key_node_t *) node;
            kt = (ngx_nexus_key_node_t *) temp;

            p = (ngx_memcmp(kn->hash, kt->hash, NX_HASH_LEN) < 0)
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


static ngx_rbtree_key_t
ngx_nexus_keycache_key(const u_char *hash)
{
    ngx_rbtree_key_t  key;

    ngx_memcpy(&key, hash, sizeof(ngx_rbtree_key_t));

    return key;
}


static ngx_nexus_key_node_t *
ngx_nexus_keycache_find(ngx_nexus_keycache_t *kc, const u_char *hash)
{
    ngx_int_t              rc;
    ngx_rbtree_key_t       key;
    ngx_rbtree_node_t     *node, *sentinel;
    ngx_nexus_key_node_t  *kn;

    key = ngx_nexus_keycache_key(hash);

    node = kc->sh->rbtree.root;
    sentinel = kc->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        kn = (ngx_nexus_key_node_t *) node;

        rc = ngx_memcmp(hash, kn->hash, NX_HASH_LEN);

        if (rc == 0) {
            return kn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_nexus_keycache_delete(ngx_nexus_keycache_t *kc, ngx_nexus_key_node_t *kn)
{
    ngx_queue_remove(&kn->lru);
    ngx_rbtree_delete(&kc->sh->rbtree, &kn->node);

    if (kn->found == NGX_NEXUS_KEY_FOUND) {
        ngx_rbtree_delete(&kc->sh->prefixes, &kn->pnode);
    }

    kc->sh->entries--;

    ngx_slab_free_locked(kc->shpool, kn);
}


/* n == 0: reclaim the oldest entry whatever its age */

static void
ngx_nexus_keycache_expire(ngx_nexus_keycache_t *kc, ngx_uint_t n)
{
    ngx_msec_t             now;
    ngx_queue_t           *q;
    ngx_nexus_key_node_t  *kn;
    ngx_uint_t             force;

    now = ngx_current_msec;
    force = (n == 0);

    if (force) {
        n = 1;
    }

    while (n--) {

        if (ngx_queue_empty(&kc->sh->lru)) {
            return;
        }

        q = ngx_queue_last(&kc->sh->lru);
        kn = ngx_queue_data(q, ngx_nexus_key_node_t, lru);

        if (!force && (ngx_msec_int_t) (kn->expire - now) > 0) {
            return;
        }

        ngx_nexus_keycache_delete(kc, kn);
    }
}


ngx_uint_t
ngx_nexus_keycache_lookup(ngx_shm_zone_t *zone, const u_char *hash,
    ngx_nexus_key_data_t *out)
{
    ngx_uint_t             found;
    ngx_nexus_keycache_t  *kc;
    ngx_nexus_key_node_t  *kn;

    kc = zone->data;

    ngx_shmtx_lock(&kc->shpool->mutex);

    kn = ngx_nexus_keycache_find(kc, hash);

    if (kn == NULL) {
        ngx_shmtx_unlock(&kc->shpool->mutex);
        return NGX_NEXUS_KEY_MISS;
    }

    if ((ngx_msec_int_t) (kn->expire - ngx_current_msec) <= 0) {
        ngx_nexus_keycache_delete(kc, kn);
        ngx_shmtx_unlock(&kc->shpool->mutex);
        return NGX_NEXUS_KEY_MISS;
    }

    found = kn->found;

    if (found == NGX_NEXUS_KEY_FOUND) {
        *out = kn->data;

    } else {
        out->tenant_id = kn->tenant_id;
    }

    /* the queue is kept in order of expiry, not of use: entries are not
     * moved on a hit, so the LRU tail is always the first to expire */

    ngx_shmtx_unlock(&kc->shpool->mutex);

    return found;
}


uint64_t
ngx_nexus_keycache_epoch(ngx_shm_zone_t *zone)
{
    uint64_t               epoch;
    ngx_nexus_keycache_t  *kc;

    kc = zone->data;

    ngx_shmtx_lock(&kc->shpool->mutex);
    epoch = kc->sh->epoch;
    ngx_shmtx_unlock(&kc->shpool->mutex);

    return epoch;
}


void
ngx_nexus_keycache_insert(ngx_shm_zone_t *zone, const u_char *hash,
    ngx_nexus_key_data_t *data, ngx_msec_t ttl, uint64_t epoch)
{
    ngx_nexus_keycache_put(zone, hash, data, 0, ttl, epoch);
}


void
ngx_nexus_keycache_insert_unknown(ngx_shm_zone_t *zone, const u_char *hash,
    int64_t tenant_id, ngx_msec_t ttl, uint64_t epoch)
{
    ngx_nexus_keycache_put(zone, hash, NULL, tenant_id, ttl, epoch);
}


/*
 * data == NULL caches "no such key".  Nothing is stored when an eviction
 * happened since the caller read the epoch.
 */

static void
ngx_nexus_keycache_put(ngx_shm_zone_t *zone, const u_char *hash,
    ngx_nexus_key_data_t *data, int64_t tenant_id, ngx_msec_t ttl,
    uint64_t epoch)
{
    size_t                 size;
    ngx_uint_t             tries;
    ngx_queue_t           *q;
    ngx_nexus_keycache_t  *kc;
    ngx_nexus_key_node_t  *kn, *kt;

    if (ttl == 0) {
        return;
    }

    kc = zone->data;

    size = data ? sizeof(ngx_nexus_key_node_t)
                : offsetof(ngx_nexus_key_node_t, data);

    ngx_shmtx_lock(&kc->shpool->mutex);

    if (kc->sh->epoch != epoch) {
        ngx_shmtx_unlock(&kc->shpool->mutex);
        return;
    }

    kn = ngx_nexus_keycache_find(kc, hash);
    if (kn) {
        ngx_nexus_keycache_delete(kc, kn);
    }

    ngx_nexus_keycache_expire(kc, 2);

    for (tries = 0; ; tries++) {
        kn = ngx_slab_alloc_locked(kc->shpool, size);
        if (kn || tries == 16) {
            break;
        }
        ngx_nexus_keycache_expire(kc, 0);
    }

    if (kn == NULL) {
        ngx_shmtx_unlock(&kc->shpool->mutex);
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "nexus zone \"%V\" is full, key not cached",
                      &zone->shm.name);
        return;
    }

    ngx_memcpy(kn->hash, hash, NX_HASH_LEN);
    kn->node.key = ngx_nexus_keycache_key(hash);
    kn->expire = ngx_current_msec + ttl;
    kn->found = data ? NGX_NEXUS_KEY_FOUND : NGX_NEXUS_KEY_UNKNOWN;
    kn->tenant_id = tenant_id;

    ngx_rbtree_insert(&kc->sh->rbtree, &kn->node);

    if (data) {
        kn->data = *data;
        kn->pnode.key = ngx_crc32_short(data->prefix, NX_KEY_PREFIX_LEN);
        ngx_rbtree_insert(&kc->sh->prefixes, &kn->pnode);
    }

    /*
     * keep the queue ordered by expiry: a negative entry (short TTL) goes
     * after the entries that expire later
     */

    if (data || ngx_queue_empty(&kc->sh->lru)) {
        ngx_queue_insert_head(&kc->sh->lru, &kn->lru);

    } else {
        for (q = ngx_queue_last(&kc->sh->lru);
             q != ngx_queue_sentinel(&kc->sh->lru);
             q = ngx_queue_prev(q))
        {
            kt = ngx_queue_data(q, ngx_nexus_key_node_t, lru);
            if ((ngx_msec_int_t) (kt->expire - kn->expire) >= 0) {
                break;
            }
        }

        /* insert after q (which expires no earlier), before older ones */
        ngx_queue_insert_after(q, &kn->lru);
    }

    kc->sh->entries++;

    ngx_shmtx_unlock(&kc->shpool->mutex);
}


/* equal crc32 keys may sit on either side of a node after rotations */

static ngx_nexus_key_node_t *
ngx_nexus_keycache_find_prefix(ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel, ngx_rbtree_key_t key, const u_char *prefix)
{
    ngx_nexus_key_node_t  *kn;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        kn = ngx_nexus_node_from_pnode(node);

        if (ngx_memcmp(kn->data.prefix, prefix, NX_KEY_PREFIX_LEN) == 0) {
            return kn;
        }

        kn = ngx_nexus_keycache_find_prefix(node->left, sentinel, key,
                                            prefix);
        if (kn) {
            return kn;
        }

        node = node->right;
    }

    return NULL;
}


void
ngx_nexus_keycache_evict_prefix(ngx_shm_zone_t *zone, const u_char *prefix,
    size_t len)
{
    ngx_rbtree_key_t       key;
    ngx_nexus_keycache_t  *kc;
    ngx_nexus_key_node_t  *kn;

    if (len != NX_KEY_PREFIX_LEN) {
        ngx_nexus_keycache_flush(zone);
        return;
    }

    kc = zone->data;
    key = ngx_crc32_short((u_char *) prefix, len);

    ngx_shmtx_lock(&kc->shpool->mutex);

    kc->sh->epoch++;

    while ((kn = ngx_nexus_keycache_find_prefix(kc->sh->prefixes.root,
                                                kc->sh->prefixes.sentinel,
                                                key, prefix))
           != NULL)
    {
        ngx_nexus_keycache_delete(kc, kn);
    }

    ngx_shmtx_unlock(&kc->shpool->mutex);
}


void
ngx_nexus_keycache_evict_tenant(ngx_shm_zone_t *zone, int64_t tenant_id)
{
    ngx_queue_t           *q, *next;
    ngx_nexus_keycache_t  *kc;
    ngx_nexus_key_node_t  *kn;

    kc = zone->data;

    ngx_shmtx_lock(&kc->shpool->mutex);

    kc->sh->epoch++;

    for (q = ngx_queue_head(&kc->sh->lru);
         q != ngx_queue_sentinel(&kc->sh->lru);
         q = next)
    {
        next = ngx_queue_next(q);
        kn = ngx_queue_data(q, ngx_nexus_key_node_t, lru);

        if (kn->found == NGX_NEXUS_KEY_FOUND
            && kn->data.tenant_id == tenant_id)
        {
            ngx_nexus_keycache_delete(kc, kn);
        }
    }

    ngx_shmtx_unlock(&kc->shpool->mutex);
}


void
ngx_nexus_keycache_flush(ngx_shm_zone_t *zone)
{
    ngx_nexus_keycache_t  *kc;

    kc = zone->data;

    ngx_shmtx_lock(&kc->shpool->mutex);
    ngx_nexus_keycache_drop(kc);
    ngx_shmtx_unlock(&kc->shpool->mutex);
}


/* drops every entry; the caller holds the lock */

static void
ngx_nexus_keycache_drop(ngx_nexus_keycache_t *kc)
{
    ngx_queue_t           *q;
    ngx_nexus_key_node_t  *kn;

    kc->sh->epoch++;

    while (!ngx_queue_empty(&kc->sh->lru)) {
        q = ngx_queue_head(&kc->sh->lru);
        kn = ngx_queue_data(q, ngx_nexus_key_node_t, lru);
        ngx_nexus_keycache_delete(kc, kn);
    }
}


/*
 * Workers register here while their LISTEN connection is up.  The cache
 * can only have missed a notification while no process of the node was
 * listening, so a worker that starts listening drops the cache only then:
 * a reload, where the old workers listen until the new ones do, keeps it.
 * A crashed worker never deregisters; its pid no longer exists, which is
 * what kill(pid, 0) tells.
 */

void
ngx_nexus_keycache_listening(ngx_shm_zone_t *zone, ngx_uint_t on)
{
    ngx_uint_t             i, others;
    ngx_pid_t             *l;
    ngx_nexus_keycache_t  *kc;

    kc = zone->data;
    l = kc->sh->listeners;
    others = 0;

    ngx_shmtx_lock(&kc->shpool->mutex);

    for (i = 0; i < NGX_NEXUS_MAX_LISTENERS; i++) {

        if (l[i] == ngx_pid) {
            l[i] = 0;
            continue;
        }

        if (l[i] == 0) {
            continue;
        }

        if (kill(l[i], 0) == -1 && ngx_errno == NGX_ESRCH) {
            l[i] = 0;
            continue;
        }

        others++;
    }

    if (on) {
        for (i = 0; i < NGX_NEXUS_MAX_LISTENERS; i++) {
            if (l[i] == 0) {
                l[i] = ngx_pid;
                break;
            }
        }

        if (others == 0 || i == NGX_NEXUS_MAX_LISTENERS) {
            ngx_nexus_keycache_drop(kc);
        }
    }

    ngx_shmtx_unlock(&kc->shpool->mutex);
}


/*
 * The zone is shared with other users (the local rate limiter, the kill
 * switches): its slab pool, and one pointer each in the zone's header.
 */

ngx_slab_pool_t *
ngx_nexus_zone_shpool(ngx_shm_zone_t *zone)
{
    ngx_nexus_keycache_t  *kc;

    kc = zone->data;

    return kc->shpool;
}


void **
ngx_nexus_zone_slot(ngx_shm_zone_t *zone, ngx_uint_t slot)
{
    ngx_nexus_keycache_t  *kc;

    kc = zone->data;

    return &kc->sh->slots[slot];
}
