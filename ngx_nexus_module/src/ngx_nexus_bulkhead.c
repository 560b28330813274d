
/*
 * Copyright (C) Nexus authors
 *
 * Bulkheads: at most N requests of a route class in flight on this node,
 * so that one class (long runs, say) cannot take every connection and
 * starve the others.  Over the limit: 503 SERVICE_BUSY.
 *
 * Each worker counts its own requests in its process slot of the shared
 * zone; the node's total is the sum of the slots.  A worker that crashes
 * is respawned into the same slot, which it resets, so a crash leaks
 * nothing; old workers finishing their requests after a reload keep
 * counting in their own slots until they exit.  The check and the
 * increment happen under the zone's lock, so the limit is exact.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_reply.h"


typedef struct {
    ngx_pid_t                   pid;
    ngx_uint_t                  count[4];
} ngx_nexus_bulkhead_slot_t;


typedef struct {
    ngx_uint_t                  nslots;     /* highest slot used + 1 */
    ngx_nexus_bulkhead_slot_t   slot[NGX_MAX_PROCESSES];
} ngx_nexus_bulkhead_sh_t;


typedef struct {
    ngx_nexus_bulkhead_sh_t    *sh;
    ngx_slab_pool_t            *shpool;
    ngx_uint_t                  cls;
} ngx_nexus_bulkhead_lease_t;


static ngx_nexus_bulkhead_sh_t *ngx_nexus_bulkhead_sh(ngx_shm_zone_t *zone,
    ngx_slab_pool_t *shpool);
static void ngx_nexus_bulkhead_release(void *data);


static const char  *ngx_nexus_bulkhead_classes[] = {
    "run", "mutation", "read", "ops"
};


/* nexus_bulkhead CLASS N; */

char *
ngx_nexus_bulkhead_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    for (i = 0; i < 4; i++) {
        if (ngx_strcmp(value[1].data, ngx_nexus_bulkhead_classes[i]) == 0) {
            break;
        }
    }

    if (i == 4) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid route class \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (nmcf->bulkhead[i]) {
        return "is duplicate";
    }

    n = ngx_atoi(value[2].data, value[2].len);
    if (n <= 0 || n > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid limit \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    nmcf->bulkhead[i] = n;
    nmcf->zone_needed = 1;

    return NGX_CONF_OK;
}


/* a (re)started worker owns its slot afresh */

ngx_int_t
ngx_nexus_bulkhead_init_process(ngx_cycle_t *cycle)
{
    ngx_slab_pool_t          *shpool;
    ngx_nexus_bulkhead_sh_t  *sh;
    ngx_nexus_main_conf_t    *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    if (nmcf->shm_zone == NULL || ngx_process_slot < 0
        || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return NGX_OK;
    }

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_nexus_bulkhead_sh(nmcf->shm_zone, shpool);

    if (sh) {
        ngx_memzero(&sh->slot[ngx_process_slot],
                    sizeof(ngx_nexus_bulkhead_slot_t));
        sh->slot[ngx_process_slot].pid = ngx_pid;

        if ((ngx_uint_t) ngx_process_slot >= sh->nslots) {
            sh->nslots = ngx_process_slot + 1;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


static ngx_nexus_bulkhead_sh_t *
ngx_nexus_bulkhead_sh(ngx_shm_zone_t *zone, ngx_slab_pool_t *shpool)
{
    void  **slot;

    slot = ngx_nexus_zone_slot(zone, NGX_NEXUS_SLOT_BULKHEADS);

    if (*slot == NULL) {
        *slot = ngx_slab_calloc_locked(shpool,
                                       sizeof(ngx_nexus_bulkhead_sh_t));
    }

    return *slot;
}


/*
 * NGX_DECLINED when the request may go on (and then holds its place until
 * it is freed), NGX_DONE when it was answered 503.
 */

ngx_int_t
ngx_nexus_bulkhead_enter(ngx_http_request_t *r, ngx_uint_t cls)
{
    ngx_uint_t                   i, total, limit;
    ngx_slab_pool_t             *shpool;
    ngx_pool_cleanup_t          *cln;
    ngx_nexus_bulkhead_sh_t     *sh;
    ngx_nexus_main_conf_t       *nmcf;
    ngx_nexus_bulkhead_lease_t  *lease;
    u_char                      *details;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);
    limit = nmcf->bulkhead[cls];

    if (limit == 0 || nmcf->shm_zone == NULL || ngx_process_slot < 0
        || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_nexus_bulkhead_lease_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_nexus_bulkhead_sh(nmcf->shm_zone, shpool);

    total = 0;

    if (sh) {
        for (i = 0; i < sh->nslots; i++) {
            if (sh->slot[i].pid) {
                total += sh->slot[i].count[cls];
            }
        }

        if (total >= limit) {
            /*
             * before refusing, drop the counts of workers that are gone
             * (killed at worker_shutdown_timeout with requests in flight)
             */
            total = 0;

            for (i = 0; i < sh->nslots; i++) {
                if (sh->slot[i].pid == 0) {
                    continue;
                }

                if (sh->slot[i].pid != ngx_pid
                    && kill(sh->slot[i].pid, 0) == -1
                    && ngx_errno == NGX_ESRCH)
                {
                    ngx_memzero(&sh->slot[i],
                                sizeof(ngx_nexus_bulkhead_slot_t));
                    continue;
                }

                total += sh->slot[i].count[cls];
            }
        }

        if (total < limit) {
            sh->slot[ngx_process_slot].count[cls]++;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (sh == NULL || total < limit) {
        lease = cln->data;
        lease->sh = sh;
        lease->shpool = shpool;
        lease->cls = cls;
        cln->handler = sh ? ngx_nexus_bulkhead_release : NULL;
        return NGX_DECLINED;
    }

    details = ngx_pnalloc(r->pool, 64);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"route_class\":\"%s\",\"limit\":%ui}%Z",
                ngx_nexus_bulkhead_classes[cls], limit);

    ngx_http_finalize_request(r,
        ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE, "SERVICE_BUSY",
                             "too many requests of this kind in flight "
                             "on this node", (char *) details));

    return NGX_DONE;
}


static void
ngx_nexus_bulkhead_release(void *data)
{
    ngx_nexus_bulkhead_lease_t *lease = data;

    ngx_uint_t  *count;

    ngx_shmtx_lock(&lease->shpool->mutex);

    count = &lease->sh->slot[ngx_process_slot].count[lease->cls];

    /* a reset slot (this worker restarted) has nothing to give back */
    if (*count) {
        (*count)--;
    }

    ngx_shmtx_unlock(&lease->shpool->mutex);
}
