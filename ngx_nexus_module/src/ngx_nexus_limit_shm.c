
/*
 * Copyright (C) Nexus authors
 *
 * Rate limits without Redis: the same two token buckets as the Redis
 * script, kept in the nexus shared zone, so one node's workers share them.
 * Both buckets are read and taken under the zone's lock - both or
 * neither.  Idle buckets are reclaimed from the least recently used end
 * when the zone is short of memory; a reclaimed bucket is simply full
 * again, which is what an idle one would be anyway once refilled.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_limit.h"


#define NGX_NEXUS_BUCKET_KEY    48


typedef struct {
    ngx_rbtree_node_t           node;
    ngx_queue_t                 lru;
    ngx_msec_t                  ts;
    double                      tokens;
    u_char                      len;
    u_char                      key[NGX_NEXUS_BUCKET_KEY];
} ngx_nexus_bucket_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 lru;
} ngx_nexus_limit_sh_t;


static ngx_nexus_limit_sh_t *ngx_nexus_limit_sh(ngx_slab_pool_t *shpool,
    void **slot);
static void ngx_nexus_bucket_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_nexus_bucket_t *ngx_nexus_bucket_get(ngx_slab_pool_t *shpool,
    ngx_nexus_limit_sh_t *sh, u_char *key, size_t len, ngx_uint_t burst,
    ngx_nexus_bucket_t *keep);
static double ngx_nexus_bucket_level(ngx_nexus_bucket_t *b, ngx_msec_t now,
    ngx_uint_t rate, ngx_uint_t burst);
static ngx_int_t ngx_nexus_limit_tokens_buckets(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, int64_t *tpm, ngx_nexus_bucket_t **b,
    double *level);


ngx_int_t
ngx_nexus_limit_local(ngx_shm_zone_t *zone, ngx_nexus_principal_t *pr,
    const char *cls, ngx_uint_t *rates, ngx_nexus_limit_result_t *res)
{
    u_char                *p;
    double                 kt, tt;
    ngx_msec_t             now;
    ngx_slab_pool_t       *shpool;
    ngx_nexus_bucket_t    *kb, *tb;
    ngx_nexus_limit_sh_t  *sh;
    u_char                 kkey[NGX_NEXUS_BUCKET_KEY];
    u_char                 tkey[NGX_NEXUS_BUCKET_KEY];
    size_t                 klen, tlen;

    p = ngx_snprintf(kkey, sizeof(kkey), "k:%L:%s", pr->key_id, cls);
    klen = p - kkey;
    p = ngx_snprintf(tkey, sizeof(tkey), "t:%L:%s", pr->tenant_id, cls);
    tlen = p - tkey;

    shpool = ngx_nexus_zone_shpool(zone);
    now = ngx_current_msec;

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_nexus_limit_sh(shpool,
                            ngx_nexus_zone_slot(zone, NGX_NEXUS_SLOT_LIMITS));
    kb = sh ? ngx_nexus_bucket_get(shpool, sh, kkey, klen, rates[1], NULL)
            : NULL;
    tb = kb ? ngx_nexus_bucket_get(shpool, sh, tkey, tlen, rates[3], kb)
            : NULL;

    if (tb == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_ERROR;
    }

    kt = ngx_nexus_bucket_level(kb, now, rates[0], rates[1]);
    tt = ngx_nexus_bucket_level(tb, now, rates[2], rates[3]);

    res->allowed = 0;
    res->tenant_scope = 0;
    res->retry_ms = 0;

    if (kt < 1) {
        res->retry_ms = (int64_t) ((1 - kt) * 1000 / rates[0]) + 1;

    } else if (tt < 1) {
        res->tenant_scope = 1;
        res->retry_ms = (int64_t) ((1 - tt) * 1000 / rates[2]) + 1;

    } else {
        kt -= 1;
        tt -= 1;
        res->allowed = 1;
    }

    kb->tokens = kt;
    kb->ts = now;
    tb->tokens = tt;
    tb->ts = now;

    res->remaining = res->allowed ? (int64_t) ngx_min(kt, tt) : 0;

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


static ngx_nexus_limit_sh_t *
ngx_nexus_limit_sh(ngx_slab_pool_t *shpool, void **slot)
{
    ngx_nexus_limit_sh_t  *sh;

    if (*slot) {
        return *slot;
    }

    sh = ngx_slab_alloc_locked(shpool, sizeof(ngx_nexus_limit_sh_t));
    if (sh == NULL) {
        return NULL;
    }

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_nexus_bucket_insert);
    ngx_queue_init(&sh->lru);

    *slot = sh;

    return sh;
}


static void
ngx_nexus_bucket_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t   **p;
    ngx_nexus_bucket_t   *b, *bt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            b = (ngx_nexus_bucket_t *) node;
            bt = (ngx_nexus_bucket_t *) temp;

            p = (ngx_memn2cmp(b->key, bt->key, b->len, bt->len) < 0)
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


static ngx_nexus_bucket_t *
ngx_nexus_bucket_get(ngx_slab_pool_t *shpool, ngx_nexus_limit_sh_t *sh,
    u_char *key, size_t len, ngx_uint_t burst, ngx_nexus_bucket_t *keep)
{
    uint32_t             hash;
    ngx_int_t            rc;
    ngx_uint_t           tries;
    ngx_queue_t         *q;
    ngx_rbtree_node_t   *node, *sentinel;
    ngx_nexus_bucket_t  *b;

    hash = ngx_crc32_short(key, len);

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        b = (ngx_nexus_bucket_t *) node;
        rc = ngx_memn2cmp(key, b->key, len, b->len);

        if (rc == 0) {
            ngx_queue_remove(&b->lru);
            ngx_queue_insert_head(&sh->lru, &b->lru);
            return b;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    for (tries = 0; ; tries++) {
        b = ngx_slab_alloc_locked(shpool, sizeof(ngx_nexus_bucket_t));
        if (b || tries == 16 || ngx_queue_empty(&sh->lru)) {
            break;
        }

        /* reclaim the least recently used bucket, never the one in use */
        q = ngx_queue_last(&sh->lru);

        if (keep && q == &keep->lru) {
            break;
        }

        ngx_queue_remove(q);
        b = ngx_queue_data(q, ngx_nexus_bucket_t, lru);
        ngx_rbtree_delete(&sh->rbtree, &b->node);
        ngx_slab_free_locked(shpool, b);
        b = NULL;
    }

    if (b == NULL) {
        return NULL;
    }

    b->node.key = hash;
    b->len = (u_char) len;
    ngx_memcpy(b->key, key, len);
    b->tokens = (double) burst;
    b->ts = ngx_current_msec;

    ngx_rbtree_insert(&sh->rbtree, &b->node);
    ngx_queue_insert_head(&sh->lru, &b->lru);

    return b;
}


static double
ngx_nexus_bucket_level(ngx_nexus_bucket_t *b, ngx_msec_t now,
    ngx_uint_t rate, ngx_uint_t burst)
{
    double  tokens;

    tokens = b->tokens;

    if ((ngx_msec_int_t) (now - b->ts) > 0) {
        tokens += (double) (now - b->ts) * rate / 1000;
    }

    /* a lowered limit takes effect at once */
    return ngx_min(tokens, (double) burst);
}


/*
 * Tokens per minute without Redis (ngx_nexus_budget.c): a bucket for the
 * key ("K:<key id>") and one for its tenant ("T:<tenant id>"), holding
 * tpm[] tokens (0: none) and refilled at tpm[] a minute.  A worst case is
 * taken from both if each holds min(want, tpm), or from neither; debt is
 * allowed, so a settlement may leave a bucket below zero.  Called with
 * the zone unlocked; NGX_ERROR when it has no room for a bucket.
 */

ngx_int_t
ngx_nexus_limit_local_tokens(ngx_shm_zone_t *zone, ngx_nexus_principal_t *pr,
    int64_t *tpm, int64_t want, ngx_nexus_limit_result_t *res)
{
    double               level[2], need;
    ngx_uint_t           i;
    ngx_slab_pool_t     *shpool;
    ngx_nexus_bucket_t  *b[2];

    shpool = ngx_nexus_zone_shpool(zone);

    ngx_shmtx_lock(&shpool->mutex);

    if (ngx_nexus_limit_tokens_buckets(zone, pr, tpm, b, level) != NGX_OK) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_ERROR;
    }

    res->allowed = 1;
    res->tenant_scope = 0;
    res->retry_ms = 0;

    for (i = 0; i < 2; i++) {
        if (b[i] == NULL) {
            continue;
        }

        need = (double) ngx_min(want, tpm[i]);

        if (level[i] < need) {
            res->allowed = 0;
            res->tenant_scope = i;
            res->retry_ms = (int64_t) ((need - level[i]) * 60000 / tpm[i])
                            + 1;
            res->remaining = (int64_t) ngx_max(level[i], 0);
            break;
        }
    }

    for (i = 0; i < 2; i++) {
        if (b[i] == NULL) {
            continue;
        }

        b[i]->tokens = res->allowed ? level[i] - want : level[i];
        b[i]->ts = ngx_current_msec;
    }

    if (res->allowed) {
        /* the one with the fewest tokens left binds */
        i = (b[0] == NULL || (b[1] && b[1]->tokens < b[0]->tokens));
        res->tenant_scope = i;
        res->remaining = (int64_t) ngx_max(b[i]->tokens, 0);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* back: the tokens reserved less those used (negative: an excess) */

void
ngx_nexus_limit_local_tokens_settle(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, int64_t *tpm, int64_t back)
{
    double               level[2];
    ngx_uint_t           i;
    ngx_slab_pool_t     *shpool;
    ngx_nexus_bucket_t  *b[2];

    shpool = ngx_nexus_zone_shpool(zone);

    ngx_shmtx_lock(&shpool->mutex);

    if (ngx_nexus_limit_tokens_buckets(zone, pr, tpm, b, level) == NGX_OK) {

        for (i = 0; i < 2; i++) {
            if (b[i]) {
                b[i]->tokens = ngx_min(level[i] + back, (double) tpm[i]);
                b[i]->ts = ngx_current_msec;
            }
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/* under the zone's lock: the buckets (NULL where tpm is 0), refilled */

static ngx_int_t
ngx_nexus_limit_tokens_buckets(ngx_shm_zone_t *zone, ngx_nexus_principal_t *pr,
    int64_t *tpm, ngx_nexus_bucket_t **b, double *level)
{
    u_char                *p;
    double                 tokens;
    size_t                 len;
    ngx_uint_t             i;
    ngx_msec_t             now;
    ngx_slab_pool_t       *shpool;
    ngx_nexus_limit_sh_t  *sh;
    u_char                 key[NGX_NEXUS_BUCKET_KEY];

    shpool = ngx_nexus_zone_shpool(zone);
    now = ngx_current_msec;

    sh = ngx_nexus_limit_sh(shpool,
                            ngx_nexus_zone_slot(zone, NGX_NEXUS_SLOT_LIMITS));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    b[0] = NULL;
    b[1] = NULL;

    for (i = 0; i < 2; i++) {
        if (tpm[i] <= 0) {
            continue;
        }

        p = ngx_snprintf(key, sizeof(key), "%c:%L", i ? 'T' : 'K',
                         i ? pr->tenant_id : pr->key_id);
        len = p - key;

        b[i] = ngx_nexus_bucket_get(shpool, sh, key, len,
                                    (ngx_uint_t) tpm[i], b[0]);
        if (b[i] == NULL) {
            return NGX_ERROR;
        }

        tokens = b[i]->tokens;

        if ((ngx_msec_int_t) (now - b[i]->ts) > 0) {
            tokens += (double) (now - b[i]->ts) * tpm[i] / 60000;
        }

        /* a lowered limit takes effect at once */
        level[i] = ngx_min(tokens, (double) tpm[i]);
    }

    return NGX_OK;
}
