
/*
 * Copyright (C) Nexus authors
 *
 * Admission blocks (nexus_admit_block): a worker takes many requests'
 * worth of one key's limits and token budget from Redis at once, and
 * admits from them locally, so that most gateway calls make no round trip
 * before their provider is called.
 *
 * A block is taken by the admission script itself (ngx_nexus_admit.c),
 * with nb > 1: nb tokens from the key's and the tenant's request buckets,
 * nb requests' quota units, and one reservation of nb worst cases against
 * the key's token budgets, all or nothing, and only if nf = 4 x nb would
 * fit - a block never takes more than a quarter of what is left, so
 * nodes near a limit fall back to one exact round trip per request.  It
 * is never taken across a quota's hard or soft cap, nor for a request
 * with in-flight caps, tokens per minute, or costs: those stay exact.
 *
 * The first request of a key (by route class and settings: its "shape")
 * is admitted the exact way, and asks for a block in the same write.
 * Later requests draw from the block: a request, its quota units and its
 * worst case in tokens.  Their headers are what one request at a time
 * would have seen on this node.  When a quarter of the block is left the
 * next one is asked for ahead, off the request's path.
 *
 * A block admits for nexus_admit_block's window at most.  Then, or once
 * it is used up, what it did not use is given back - the requests'
 * tokens to the buckets, the quota units - and once the requests it
 * admitted have ended its reservation is settled once with the tokens
 * they actually used.  A node that dies leaves its block's reservation
 * to expire (nexus_budget_ttl), as a request's would, and its unused
 * quota units counted.
 *
 * A bucket keeps a block's tokens counted as held until they are given
 * back (or the window and a grace are over): it does not refill them
 * while the block spends them, so a key is let through no more than its
 * bucket allows over any interval, blocks or not.  Across a fleet, a
 * key's settled tokens and quota units never exceed their caps either,
 * since everything admitted was taken first.  What this trades: what a
 * block holds is not available to other nodes until it is given back,
 * and headers count this node's requests exactly and other nodes' as of
 * the block's take.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_budget.h"
#include "ngx_nexus_admit.h"
#include "ngx_nexus_block.h"


/* a block takes at most 1/SPREAD of what is left */
#define NGX_NEXUS_BLOCK_SPREAD      4
/* how long after its window a block's bucket tokens may still be held */
#define NGX_NEXUS_BLOCK_GRACE       1000
#define NGX_NEXUS_BLOCK_FIRST       4
#define NGX_NEXUS_BLOCK_HASH        256
/* a shape unused this long is forgotten */
#define NGX_NEXUS_BLOCK_IDLE        30000


/* what makes two requests' admissions alike; compared whole */
typedef struct {
    int64_t                     limits[NGX_NEXUS_LIMIT_IDENTITY];
    int64_t                     budget[3];  /* daily, monthly, total */
    int64_t                     key_id;
    int64_t                     parts;      /* 1 limits, 2 a budget */
} ngx_nexus_block_id_t;


struct ngx_nexus_block_shape_s {
    ngx_queue_t                 queue;      /* in its hash bucket */
    uint32_t                    hash;
    ngx_nexus_block_id_t        id;
    u_char                      kbucket[64];    /* the buckets' keys */
    size_t                      kbucket_len;
    u_char                      tbucket[64];
    size_t                      tbucket_len;
    int64_t                     rates[4];   /* key rps, burst, tenant's */
    int64_t                     units;      /* quota units of a request,
                                               0: no quota */
    ngx_nexus_block_t          *cur;        /* admitting */
    ngx_nexus_block_t          *next;       /* taken ahead */
    ngx_uint_t                  n;          /* the next block's size */
    ngx_uint_t                  nblocks;    /* alive or asked for */
    ngx_msec_t                  retry;      /* ask for none before */
    ngx_msec_t                  seen;
    ngx_msec_t                  exact;      /* the last exact admission */
    unsigned                    pending:1;  /* a take in flight */
    unsigned                    quiet:1;    /* its last block went unused */
    unsigned                    reserve:1;  /* a token budget counts */
};


struct ngx_nexus_block_s {
    ngx_nexus_block_shape_t    *shape;
    ngx_event_t                 window;
    ngx_msec_t                  taken;
    ngx_uint_t                  n;
    ngx_uint_t                  admitted;
    ngx_uint_t                  inflight;   /* admitted, not settled */
    int64_t                     pool;       /* tokens reserved */
    int64_t                     drawn;
    int64_t                     used;       /* settled */
    ngx_nexus_limit_reply_t     limits;     /* the take's answer */
    ngx_nexus_budget_share_t    share;
    ngx_nexus_budget_t         *budget;     /* the reservation, or NULL */
    int64_t                     day;
    u_char                      mon[8];
    size_t                      mon_len;
    u_char                     *fired;      /* the take's events */
    size_t                      lfired;     /* the limits', then */
    size_t                      bfired;     /* the budget's */
    unsigned                    open:1;
};


static ngx_nexus_block_shape_t *ngx_nexus_block_shape(
    ngx_nexus_main_conf_t *nmcf, ngx_nexus_block_id_t *id);
static ngx_nexus_block_t *ngx_nexus_block_pick(ngx_nexus_block_shape_t *shape,
    int64_t want, ngx_msec_t window);
static ngx_int_t ngx_nexus_block_member(ngx_http_request_t *r,
    ngx_nexus_proxy_t *px, ngx_nexus_block_t *blk, ngx_uint_t limits);
static void ngx_nexus_block_taken(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_block_parse(ngx_nexus_block_t *blk,
    redisReply *reply);
static void ngx_nexus_block_expire(ngx_event_t *ev);
static void ngx_nexus_block_close(ngx_nexus_block_t *blk,
    ngx_uint_t used_up);
static void ngx_nexus_block_give_back(ngx_nexus_block_t *blk);
static void ngx_nexus_block_given(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static void ngx_nexus_block_free(ngx_nexus_block_t *blk, ngx_uint_t settle);
static ngx_uint_t ngx_nexus_block_may_ask(ngx_nexus_block_shape_t *shape);
static void ngx_nexus_block_sweep(ngx_event_t *ev);


/*
 * KEYS: the key's and the tenant's request buckets, the tenant's daily
 * and monthly quota counters.  ARGV: 1 the requests a block did not use,
 * 2-5 key rps, key burst, tenant rps, tenant burst (0: none), 6 the quota
 * units it did not use, 7 the block's size.  A bucket no longer holds the
 * block's tokens ("hd", see ngx_nexus_admit.c) and gets the unused ones
 * back; a counter that is gone (its period long over) is left alone.
 */

static const char  ngx_nexus_block_back_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local back, n = tonumber(ARGV[1]), tonumber(ARGV[7])\n"
    "local function give(key, rate, burst)\n"
    "  local v = redis.call('HMGET', key, 'tk', 'ts', 'hd', 'hx')\n"
    "  local tk, ts = tonumber(v[1]), tonumber(v[2])\n"
    "  if tk == nil or ts == nil then return end\n"
    "  local hd = tonumber(v[3]) or 0\n"
    "  if now > (tonumber(v[4]) or 0) then hd = 0 end\n"
    "  hd = math.max(0, hd - n)\n"
    "  if now > ts then tk = tk + (now - ts) * rate / 1000 end\n"
    "  tk = math.min(burst - hd, tk + back)\n"
    "  redis.call('HSET', key, 'tk', tostring(tk), 'ts', math.max(now, ts),"
    " 'hd', hd)\n"
    "end\n"
    "if tonumber(ARGV[2]) > 0 then\n"
    "  give(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))\n"
    "  give(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]))\n"
    "end\n"
    "local u = tonumber(ARGV[6])\n"
    "if u > 0 then\n"
    "  for i = 3, 4 do\n"
    "    if redis.call('EXISTS', KEYS[i]) == 1 then\n"
    "      redis.call('DECRBY', KEYS[i], u)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return 1\n";


static ngx_nexus_redis_script_t  ngx_nexus_block_back_script;

static ngx_queue_t               ngx_nexus_block_shapes[NGX_NEXUS_BLOCK_HASH];
static ngx_uint_t                ngx_nexus_block_nshapes;
static ngx_event_t               ngx_nexus_block_sweeper;
static ngx_uint_t                ngx_nexus_block_ready;


ngx_int_t
ngx_nexus_block_init(ngx_conf_t *cf)
{
    return ngx_nexus_redis_script(cf, &ngx_nexus_block_back_script,
                                  ngx_nexus_block_back_lua);
}


/* nexus_admit_block off | SIZE [window=TIME]; */

char *
ngx_nexus_block_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_msec_t   ms;

    if (nmcf->block_max != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            goto invalid;
        }

        nmcf->block_max = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n < 2 || n > 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid block size \"%V\": 2 to 4096 requests",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    nmcf->block_max = n;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "window=", 7) != 0) {
            goto invalid;
        }

        s.data = value[2].data + 7;
        s.len = value[2].len - 7;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms < 10 || ms > 60000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid window \"%V\": 10ms to 60s", &s);
            return NGX_CONF_ERROR;
        }

        nmcf->block_window = ms;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       &value[2]);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_nexus_block_admit(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_uint_t deferred, ngx_nexus_block_shape_t **ask)
{
    ngx_int_t                  rc, lrc, brc;
    ngx_nexus_ctx_t           *ctx;
    ngx_nexus_block_t         *blk;
    ngx_nexus_main_conf_t     *nmcf;
    ngx_nexus_redis_cmd_t     *cmd;
    ngx_nexus_admit_args_t     aa;
    ngx_nexus_block_id_t       id;
    ngx_nexus_block_shape_t   *shape;

    *ask = NULL;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (nmcf->block_max < 2) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    /* what makes two requests alike: all their admission would check */
    ngx_memzero(&id, sizeof(ngx_nexus_block_id_t));

    lrc = deferred ? ngx_nexus_limit_identity(r, ctx, id.limits)
                   : NGX_DECLINED;
    brc = ngx_nexus_budget_identity(px, id.budget);

    /* in-flight caps, costs, TPM: never in a block; nothing: no need */
    if (lrc == NGX_BUSY || brc == NGX_BUSY
        || (lrc == NGX_DECLINED && brc == NGX_DECLINED))
    {
        return NGX_DECLINED;
    }

    id.key_id = ctx->principal.key_id;
    id.parts = (lrc == NGX_OK ? 1 : 0) | (brc == NGX_OK ? 2 : 0);

    shape = ngx_nexus_block_shape(nmcf, &id);
    if (shape == NULL) {
        return NGX_DECLINED;
    }

    blk = ngx_nexus_block_pick(shape, ngx_nexus_budget_want(px),
                               nmcf->block_window);

    if (blk == NULL) {
        /*
         * admitted exactly; a block is asked for with it, unless one is
         * on its way, or Redis refused or failed one lately, or the last
         * one went unused and this request is the first in a window
         */
        if (ngx_nexus_block_may_ask(shape)
            && (!shape->quiet
                || ngx_current_msec - shape->exact < nmcf->block_window))
        {
            shape->quiet = 0;
            *ask = shape;
        }

        shape->exact = ngx_current_msec;

        return NGX_DECLINED;
    }

    if (lrc != NGX_OK && deferred) {
        /* no limit concerns the request */
        ctx->limit_state = NGX_NEXUS_LIMIT_PASSED;
    }

    rc = ngx_nexus_block_member(r, px, blk, lrc == NGX_OK);

    if (rc != NGX_OK) {
        /* answered: the request may be gone */
        return rc;
    }

    /* the next block, ahead, when this one runs low */
    blk = shape->cur;

    if (!ngx_nexus_block_may_ask(shape)
        || (blk && (blk->n - blk->admitted) * 4 > blk->n
            && (blk->pool - blk->drawn) * 4 > blk->pool))
    {
        return NGX_OK;
    }

    if (ngx_nexus_admit_args(r, px, lrc == NGX_OK, &aa) != NGX_OK) {
        return NGX_OK;
    }

    cmd = ngx_nexus_block_ask(shape, px, aa.argv, aa.argvlen);

    if (cmd) {
        blk = cmd->data;

        if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
            ngx_nexus_block_unsent(blk);
        }
    }

    return NGX_OK;
}


/*
 * Whether a block may be asked for: none is on its way or waiting to
 * admit, and Redis did not refuse or fail one lately.
 */

static ngx_uint_t
ngx_nexus_block_may_ask(ngx_nexus_block_shape_t *shape)
{
    return !shape->pending && shape->next == NULL
           && (ngx_msec_int_t) (ngx_current_msec - shape->retry) >= 0;
}


/* the request's shape, found or made (NULL: no memory) */

static ngx_nexus_block_shape_t *
ngx_nexus_block_shape(ngx_nexus_main_conf_t *nmcf, ngx_nexus_block_id_t *id)
{
    u_char                   *p;
    uint32_t                  hash;
    ngx_uint_t                i;
    ngx_queue_t              *q, *head;
    ngx_nexus_block_shape_t  *shape;

    hash = ngx_murmur_hash2((u_char *) id, sizeof(ngx_nexus_block_id_t));

    if (!ngx_nexus_block_ready) {
        ngx_nexus_block_ready = 1;

        for (i = 0; i < NGX_NEXUS_BLOCK_HASH; i++) {
            ngx_queue_init(&ngx_nexus_block_shapes[i]);
        }

        ngx_nexus_block_sweeper.handler = ngx_nexus_block_sweep;
        ngx_nexus_block_sweeper.log = ngx_cycle->log;
        ngx_nexus_block_sweeper.cancelable = 1;
    }

    head = &ngx_nexus_block_shapes[hash % NGX_NEXUS_BLOCK_HASH];

    for (q = ngx_queue_head(head);
         q != ngx_queue_sentinel(head);
         q = ngx_queue_next(q))
    {
        shape = ngx_queue_data(q, ngx_nexus_block_shape_t, queue);

        if (shape->hash == hash
            && ngx_memcmp(&shape->id, id, sizeof(ngx_nexus_block_id_t)) == 0)
        {
            shape->seen = ngx_current_msec;
            return shape;
        }
    }

    shape = ngx_calloc(sizeof(ngx_nexus_block_shape_t), ngx_cycle->log);
    if (shape == NULL) {
        return NULL;
    }

    shape->hash = hash;
    shape->id = *id;

    /* the names of its buckets, for giving back */
    if (id->parts & 1) {
        p = ngx_nexus_limit_bucket(shape->kbucket, 0, id->limits[0],
                                   (ngx_uint_t) id->limits[2]);
        shape->kbucket_len = p - shape->kbucket;

        p = ngx_nexus_limit_bucket(shape->tbucket, 1, id->limits[1],
                                   (ngx_uint_t) id->limits[2]);
        shape->tbucket_len = p - shape->tbucket;

        for (i = 0; i < 4; i++) {
            shape->rates[i] = id->limits[3 + i];
        }

        if (id->limits[7] || id->limits[8]) {
            shape->units = id->limits[11];
        }
    }

    shape->reserve = (id->parts & 2) ? 1 : 0;
    shape->n = ngx_min(NGX_NEXUS_BLOCK_FIRST, nmcf->block_max);
    shape->retry = ngx_current_msec;
    shape->seen = ngx_current_msec;

    ngx_queue_insert_head(head, &shape->queue);
    ngx_nexus_block_nshapes++;

    if (!ngx_nexus_block_sweeper.timer_set) {
        ngx_add_timer(&ngx_nexus_block_sweeper, NGX_NEXUS_BLOCK_IDLE);
    }

    return shape;
}


/* an open block with room for the request, or NULL */

static ngx_nexus_block_t *
ngx_nexus_block_pick(ngx_nexus_block_shape_t *shape, int64_t want,
    ngx_msec_t window)
{
    ngx_nexus_block_t  *blk;

    /*
     * a block is closed once its last request is drawn, or by its timer;
     * and never admits past its window, however late the timer
     */
    while (shape->cur && ngx_current_msec - shape->cur->taken >= window) {
        ngx_nexus_block_close(shape->cur, 0);
    }

    blk = shape->cur;

    if (blk && blk->pool - blk->drawn >= want) {
        return blk;
    }

    /* a larger request than the block's: the next one, or exactly */
    blk = shape->next;

    if (blk && blk->pool - blk->drawn >= want
        && ngx_current_msec - blk->taken < window)
    {
        return blk;
    }

    return NULL;
}


/*
 * A request admitted from the block: the limits' and the budget's answers
 * as one request at a time would have had them on this node.
 */

static ngx_int_t
ngx_nexus_block_member(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_nexus_block_t *blk, ngx_uint_t limits)
{
    int64_t                    after, want;
    ngx_int_t                  rc;
    ngx_str_t                  fired;
    ngx_uint_t                 first;
    ngx_nexus_ctx_t           *ctx;
    ngx_nexus_limit_reply_t    lr;
    ngx_nexus_budget_share_t   share;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    first = (blk->admitted == 0);
    blk->admitted++;

    /* the requests the block still holds after this one */
    after = blk->n - blk->admitted;

    if (blk->shape->reserve) {
        want = ngx_nexus_budget_want(px);
        blk->drawn += want;
        blk->inflight++;

        share = blk->share;
        share.reserved -= blk->pool - blk->drawn;

        if (share.reset_ms > 0) {
            share.reset_ms = ngx_max(share.reset_ms
                                     - (int64_t) (ngx_current_msec
                                                  - blk->taken), 1);
        }

        fired.len = first ? blk->bfired : 0;
        fired.data = fired.len ? blk->fired + blk->lfired : NULL;

        /* from here the request's end settles it into the block */
        ngx_nexus_budget_member(px, blk, &share, &fired);
    }

    rc = NGX_OK;

    if (limits) {
        lr = blk->limits;
        lr.remaining += after;

        if (lr.quota_period) {
            lr.quota_used -= after * blk->shape->units;
            lr.quota_remaining = ngx_max(lr.quota_limit - lr.quota_used, 0);
        }

        lr.fired.data = blk->fired;
        lr.fired.len = first ? blk->lfired : 0;

        rc = ngx_nexus_limit_member(r, ctx, &lr);

        if (rc != NGX_OK && rc != NGX_DONE) {
            ngx_http_finalize_request(r, rc);
            rc = NGX_DONE;
        }
    }

    /* still open until here, whatever became of the request */
    if (after == 0) {
        ngx_nexus_block_close(blk, 1);
    }

    return rc;
}


/* the admission script for a block like the request's, not sent yet */

ngx_nexus_redis_cmd_t *
ngx_nexus_block_ask(ngx_nexus_block_shape_t *shape, ngx_nexus_proxy_t *px,
    const char **argv, size_t *argvlen)
{
    u_char                 *p;
    ngx_str_t               id;
    ngx_nexus_block_t      *blk;
    ngx_nexus_redis_cmd_t  *cmd;
    ngx_nexus_main_conf_t  *nmcf;
    const char             *a[NGX_NEXUS_ADMIT_NARGV];
    size_t                  alen[NGX_NEXUS_ADMIT_NARGV];
    u_char                  nums[3][NGX_INT_T_LEN];

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);

    blk = ngx_calloc(sizeof(ngx_nexus_block_t), ngx_cycle->log);
    if (blk == NULL) {
        return NULL;
    }

    blk->shape = shape;
    blk->n = shape->n;
    shape->nblocks++;

    ngx_memcpy(a, argv, sizeof(a));
    ngx_memcpy(alen, argvlen, sizeof(alen));

    if (shape->reserve) {
        blk->budget = ngx_nexus_budget_detach(px, &id);
        if (blk->budget == NULL) {
            ngx_nexus_block_free(blk, 0);
            return NULL;
        }

        a[NGX_NEXUS_ADMIT_BARG(1)] = (const char *) id.data;
        alen[NGX_NEXUS_ADMIT_BARG(1)] = id.len;
    }

    p = ngx_sprintf(nums[0], "%ui", blk->n);
    a[NGX_NEXUS_ADMIT_NB] = (const char *) nums[0];
    alen[NGX_NEXUS_ADMIT_NB] = p - nums[0];

    p = ngx_sprintf(nums[1], "%ui", blk->n * NGX_NEXUS_BLOCK_SPREAD);
    a[NGX_NEXUS_ADMIT_NB + 1] = (const char *) nums[1];
    alen[NGX_NEXUS_ADMIT_NB + 1] = p - nums[1];

    p = ngx_sprintf(nums[2], "%M", nmcf->block_window + NGX_NEXUS_BLOCK_GRACE);
    a[NGX_NEXUS_ADMIT_NB + 2] = (const char *) nums[2];
    alen[NGX_NEXUS_ADMIT_NB + 2] = p - nums[2];

    cmd = ngx_nexus_redis_eval(&ngx_nexus_admit_script, NGX_NEXUS_ADMIT_NKEYS,
                               NGX_NEXUS_ADMIT_NARGV, a, alen);
    if (cmd == NULL) {
        ngx_nexus_block_free(blk, 0);
        return NULL;
    }

    cmd->handler = ngx_nexus_block_taken;
    cmd->data = blk;

    shape->pending = 1;

    return cmd;
}


/* the take could not be sent: as if never asked, for a window */

void
ngx_nexus_block_unsent(ngx_nexus_block_t *blk)
{
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_block_shape_t  *shape;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);

    shape = blk->shape;
    shape->pending = 0;
    shape->retry = ngx_current_msec + nmcf->block_window;

    ngx_nexus_block_free(blk, 0);
}


static void
ngx_nexus_block_taken(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_nexus_block_t        *blk;
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_block_shape_t  *shape;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);

    blk = cmd->data;
    shape = blk->shape;
    shape->pending = 0;

    if (rc == NGX_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2)
    {
        /* it would not fit: smaller ones, or none for a while */
        if (shape->n <= 2) {
            shape->retry = ngx_current_msec + nmcf->block_window;
        }

        shape->n = ngx_max(shape->n / 2, 2);

        /* nothing was written */
        ngx_nexus_block_free(blk, 0);
        return;
    }

    if (rc != NGX_OK || ngx_nexus_block_parse(blk, reply) != NGX_OK) {

        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "nexus admission block: unexpected answer%s%*s",
                          reply->type == REDIS_REPLY_ERROR ? ": " : "",
                          reply->type == REDIS_REPLY_ERROR ? reply->len : 0,
                          reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        }

        /* it may have been made: its reservation is released if it was */
        shape->retry = ngx_current_msec + nmcf->block_window;

        ngx_nexus_block_free(blk, 1);
        return;
    }

    blk->open = 1;
    blk->taken = ngx_current_msec;

    /*
     * not cancelable: an exiting worker waits for its blocks' windows, and
     * gives back what they did not use
     */
    blk->window.handler = ngx_nexus_block_expire;
    blk->window.data = blk;
    blk->window.log = ngx_cycle->log;

    ngx_add_timer(&blk->window, nmcf->block_window);

    if (blk->budget) {
        ngx_nexus_budget_hold(blk->budget);
    }

    if (shape->cur == NULL) {
        shape->cur = blk;

    } else if (shape->next == NULL) {
        shape->next = blk;

    } else {
        ngx_nexus_block_close(blk, 0);
    }
}


/* the take's answer: {limits, reservation, day, month} */

static ngx_int_t
ngx_nexus_block_parse(ngx_nexus_block_t *blk, redisReply *reply)
{
    ngx_str_t    fired;
    redisReply  *day, *mon;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        return NGX_DECLINED;
    }

    day = reply->element[2];
    mon = reply->element[3];

    if (day->type != REDIS_REPLY_INTEGER
        || mon->type != REDIS_REPLY_STRING || mon->len > sizeof(blk->mon)
        || ngx_nexus_limit_parse(reply->element[0], &blk->limits) != NGX_OK
        || !blk->limits.allowed)
    {
        return NGX_DECLINED;
    }

    ngx_str_null(&fired);

    if (blk->budget) {
        if (ngx_nexus_budget_block_answer(blk->budget, reply, &blk->share,
                                          &fired)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }

        blk->pool = blk->share.want * blk->n;
    }

    blk->day = day->integer;
    blk->mon_len = mon->len;
    ngx_memcpy(blk->mon, mon->str, mon->len);

    /* the events the take fired, for its first request to audit */
    blk->lfired = blk->limits.fired.len;
    blk->bfired = fired.len;

    if (blk->lfired + blk->bfired) {
        blk->fired = ngx_alloc(blk->lfired + blk->bfired, ngx_cycle->log);
        if (blk->fired == NULL) {
            blk->lfired = 0;
            blk->bfired = 0;

        } else {
            /* either may be empty, and then point nowhere */
            if (blk->lfired) {
                ngx_memcpy(blk->fired, blk->limits.fired.data, blk->lfired);
            }

            if (blk->bfired) {
                ngx_memcpy(blk->fired + blk->lfired, fired.data, fired.len);
            }
        }
    }

    ngx_str_null(&blk->limits.fired);

    return NGX_OK;
}


static void
ngx_nexus_block_expire(ngx_event_t *ev)
{
    ngx_nexus_block_close(ev->data, 0);
}


/*
 * No more requests from the block: used up, or its window is over (and
 * the next block's size follows how much of this one was used).  What it
 * holds is given back once its requests have ended.
 */

static void
ngx_nexus_block_close(ngx_nexus_block_t *blk, ngx_uint_t used_up)
{
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_block_shape_t  *shape;

    if (!blk->open) {
        return;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);


    blk->open = 0;
    shape = blk->shape;

    if (blk->window.timer_set) {
        ngx_del_timer(&blk->window);
    }

    if (shape->cur == blk) {
        shape->cur = shape->next;
        shape->next = NULL;

    } else if (shape->next == blk) {
        shape->next = NULL;
    }

    if (used_up) {
        shape->n = ngx_min(blk->n * 2, nmcf->block_max);

    } else if (blk->admitted < 2) {
        /* too few requests to be worth a block: wait for more */
        shape->n = ngx_min(NGX_NEXUS_BLOCK_FIRST, nmcf->block_max);
        shape->quiet = 1;

    } else {
        shape->n = ngx_max(ngx_min(blk->admitted * 2, nmcf->block_max), 2);
    }

    /* the bucket tokens and quota units it did not use: back at once */
    ngx_nexus_block_give_back(blk);

    if (blk->inflight == 0) {
        /* its requests have ended: the reservation settled */
        ngx_nexus_block_free(blk, 1);
    }
}


void
ngx_nexus_block_settle(ngx_nexus_block_t *blk, int64_t tokens)
{
    blk->used += ngx_max(tokens, 0);
    blk->inflight--;

    if (!blk->open && blk->inflight == 0) {
        /* its requests have ended: the reservation settled */
        ngx_nexus_block_free(blk, 1);
    }
}


/*
 * Once it admits no more: the bucket tokens it held (the unused ones back
 * to the buckets) and the quota units it did not use.
 */

static void
ngx_nexus_block_give_back(ngx_nexus_block_t *blk)
{
    u_char                   *p;
    int64_t                   unused;
    ngx_uint_t                i;
    const char               *argv[11];
    size_t                    argvlen[11];
    ngx_nexus_redis_cmd_t    *cmd;
    ngx_nexus_block_shape_t  *shape;
    u_char                    day[64], mon[64];
    u_char                    nums[7][NGX_INT64_LEN];

    shape = blk->shape;
    unused = blk->n - blk->admitted;

    if (shape->rates[0] > 0 || (unused > 0 && shape->units > 0)) {

        argv[0] = (const char *) shape->kbucket;
        argvlen[0] = shape->kbucket_len;
        argv[1] = (const char *) shape->tbucket;
        argvlen[1] = shape->tbucket_len;

        /* the quota's keys, as NGX_NEXUS_LUA_LIMITS names them */
        argv[2] = (const char *) day;
        argvlen[2] = ngx_snprintf(day, sizeof(day), "nx:q:%L:d:%L",
                                  shape->id.limits[1], blk->day)
                     - day;
        argv[3] = (const char *) mon;
        argvlen[3] = ngx_snprintf(mon, sizeof(mon), "nx:q:%L:m:%*s",
                                  shape->id.limits[1], blk->mon_len, blk->mon)
                     - mon;

        p = ngx_sprintf(nums[0], "%L", unused);
        argv[4] = (const char *) nums[0];
        argvlen[4] = p - nums[0];

        for (i = 0; i < 4; i++) {
            p = ngx_sprintf(nums[1 + i], "%L", shape->rates[i]);
            argv[5 + i] = (const char *) nums[1 + i];
            argvlen[5 + i] = p - nums[1 + i];
        }

        p = ngx_sprintf(nums[5], "%L", unused * shape->units);
        argv[9] = (const char *) nums[5];
        argvlen[9] = p - nums[5];

        p = ngx_sprintf(nums[6], "%ui", blk->n);
        argv[10] = (const char *) nums[6];
        argvlen[10] = p - nums[6];

        cmd = ngx_nexus_redis_eval(&ngx_nexus_block_back_script, 4, 11, argv,
                                   argvlen);
        if (cmd) {
            cmd->handler = ngx_nexus_block_given;
            cmd->data = NULL;

            /*
             * if Redis cannot take it, the quota units stay counted and
             * the buckets hold the tokens until the hold ends
             */
            (void) ngx_nexus_redis_send(&cmd, 1);
        }
    }
}


static void
ngx_nexus_block_given(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    if (rc == NGX_OK && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nexus admission block: giving back failed: %*s",
                      reply->len, reply->str);
    }
}


/*
 * The block is over.  settle: its reservation may exist in Redis, and is
 * released with the tokens its requests used (none when it was never
 * answered); else none was made.
 */

static void
ngx_nexus_block_free(ngx_nexus_block_t *blk, ngx_uint_t settle)
{
    if (blk->budget) {
        ngx_nexus_budget_end(blk->budget, blk->used, settle);
    }

    blk->shape->nblocks--;

    if (blk->fired) {
        ngx_free(blk->fired);
    }

    ngx_free(blk);
}


/* shapes without blocks, unused for a while, are forgotten */

static void
ngx_nexus_block_sweep(ngx_event_t *ev)
{
    ngx_uint_t                i;
    ngx_queue_t              *q, *next, *head;
    ngx_nexus_block_shape_t  *shape;

    for (i = 0; i < NGX_NEXUS_BLOCK_HASH; i++) {
        head = &ngx_nexus_block_shapes[i];

        for (q = ngx_queue_head(head);
             q != ngx_queue_sentinel(head);
             q = next)
        {
            next = ngx_queue_next(q);
            shape = ngx_queue_data(q, ngx_nexus_block_shape_t, queue);

            if (shape->nblocks == 0 && !shape->pending
                && ngx_current_msec - shape->seen >= NGX_NEXUS_BLOCK_IDLE
                && (ngx_msec_int_t) (ngx_current_msec - shape->retry) >= 0)
            {
                ngx_queue_remove(q);
                ngx_free(shape);
                ngx_nexus_block_nshapes--;
            }
        }
    }

    if (ngx_nexus_block_nshapes) {
        ngx_add_timer(ev, NGX_NEXUS_BLOCK_IDLE);
    }
}
