
/*
 * Copyright (C) Nexus authors
 *
 * Revocation.  PostgreSQL triggers NOTIFY nexus_keys on every change that
 * can alter an authentication decision; each worker LISTENs and evicts the
 * named key (or tenant) from the shared cache, so a revoked key stops
 * working on every worker of every node as soon as the notification
 * arrives.  Whenever the LISTEN connection is (re)established the whole
 * cache is dropped: notifications sent while nobody listened are lost.
 * The same channel carries kill switches ('x:') and ABAC policies ('a:'), prices ('c:').
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_cost.h"
#include "ngx_nexus_abac.h"


static void ngx_nexus_revoke_notify(ngx_cycle_t *cycle, const char *channel,
    const char *payload);
static void ngx_nexus_revoke_listening(ngx_cycle_t *cycle, ngx_uint_t on);


void
ngx_nexus_revoke_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_pg_listen_handler(ngx_nexus_revoke_notify,
                                ngx_nexus_revoke_listening);
}


static void
ngx_nexus_revoke_notify(ngx_cycle_t *cycle, const char *channel,
    const char *payload)
{
    size_t                  len;
    int64_t                 tenant_id;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    if (nmcf->shm_zone == NULL || ngx_strcmp(channel, "nexus_keys") != 0) {
        return;
    }

    len = ngx_strlen(payload);

    if (len > 2 && payload[0] == 'k' && payload[1] == ':') {
        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "nexus: key %s changed, evicted from cache",
                      payload + 2);
        ngx_nexus_keycache_evict_prefix(nmcf->shm_zone,
                                        (const u_char *) payload + 2,
                                        len - 2);
        return;
    }

    if (len > 2 && payload[0] == 'x' && payload[1] == ':') {
        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "nexus: kill switch %s changed", payload + 2);
        ngx_nexus_kill_reload(cycle);
        return;
    }

    if (len > 2 && payload[0] == 'c' && payload[1] == ':') {
        /* the pricing catalog or a tenant's cost settings */
        ngx_nexus_cost_reload(cycle);
        return;
    }

    if (len > 2 && payload[0] == 'a' && payload[1] == ':') {
        /* 'a:0': a platform-wide policy, which every tenant's set holds */
        ngx_nexus_abac_changed(cycle, ngx_atoof((u_char *) payload + 2,
                                                len - 2));
        return;
    }

    if (len > 2 && payload[0] == 't' && payload[1] == ':') {
        tenant_id = ngx_atoof((u_char *) payload + 2, len - 2);

        if (tenant_id > 0) {
            ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                          "nexus: tenant %L changed, its keys evicted",
                          tenant_id);
            ngx_nexus_keycache_evict_tenant(nmcf->shm_zone, tenant_id);
            return;
        }
    }

    if (len > 2 && payload[0] == 'p' && payload[1] == ':') {
        /* the plan catalog: any tenant's features may have changed */
        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "nexus: plan catalog changed, key cache dropped");
        ngx_nexus_keycache_flush(nmcf->shm_zone);
        return;
    }

    /* something we do not understand: be safe */
    ngx_nexus_keycache_flush(nmcf->shm_zone);
}


static void
ngx_nexus_revoke_listening(ngx_cycle_t *cycle, ngx_uint_t on)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);

    if (nmcf->shm_zone) {
        ngx_nexus_keycache_listening(nmcf->shm_zone, on);
    }

    /* so may a policy, in both directions */
    ngx_nexus_abac_listening(cycle, on);

    /* a kill switch may have changed while this worker did not listen */
    if (on) {
        ngx_nexus_kill_reload(cycle);
        ngx_nexus_cost_reload(cycle);
    }
}
