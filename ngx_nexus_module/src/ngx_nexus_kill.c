
/*
 * Copyright (C) Nexus authors
 *
 * Kill switches: a feature turned off for the whole fleet at once.
 *
 * A location names its feature (nexus_feature chat;), which is also what
 * a tenant's plan must include (ngx_nexus_plan.c).  The enabled
 * switches live in PostgreSQL (kill_switches); each change fires NOTIFY
 * 'x:<name>', on which every worker reloads the set and writes it to the
 * shared zone.  The set is also reloaded whenever a worker starts
 * listening, so a missed notification is healed at the next reconnect.
 * A request for a killed feature is answered 503 KILL_SWITCH_ACTIVE
 * before it is even authenticated, as the decision order asks.
 *
 * Results of reloads can complete out of order (several workers, several
 * connections): each carries PostgreSQL's clock, and the zone keeps only
 * the newest.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_reply.h"

#include <nx_plan.h>


#define NGX_NEXUS_KILL_MAX      64
#define NGX_NEXUS_KILL_NAME     40


typedef struct {
    int64_t                     loaded_us;
    ngx_uint_t                  n;
    u_char                      len[NGX_NEXUS_KILL_MAX];
    u_char                      name[NGX_NEXUS_KILL_MAX][NGX_NEXUS_KILL_NAME];
} ngx_nexus_kill_sh_t;


static void ngx_nexus_kill_loaded(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static ngx_nexus_kill_sh_t *ngx_nexus_kill_sh(ngx_shm_zone_t *zone,
    ngx_slab_pool_t *shpool);


static ngx_uint_t  ngx_nexus_kill_stmt;


ngx_int_t
ngx_nexus_kill_init(ngx_conf_t *cf)
{
    return ngx_nexus_pg_statement(cf, "nexus_kill_switches",
               "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)"
               "::bigint, coalesce(string_agg(name, ',' ORDER BY name), '')"
               " FROM (SELECT name FROM kill_switches WHERE enabled"
               " ORDER BY name LIMIT 64) k",
               0, &ngx_nexus_kill_stmt);
}


/*
 * nexus_feature NAME [entitlement=on|off];
 *
 * The entitlement check itself lives in ngx_nexus_plan.c: an
 * authenticated request needs NAME among its tenant's features.
 */

char *
ngx_nexus_kill_feature_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_str_t  *value;

    if (nlcf->kill_switch.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (nx_feature_name_valid((char *) value[1].data, value[1].len) != 0) {
        goto invalid;
    }

    nlcf->entitlement = 1;

    if (cf->args->nelts == 3) {

        if (ngx_strcmp(value[2].data, "entitlement=off") == 0) {
            nlcf->entitlement = 0;

        } else if (ngx_strcmp(value[2].data, "entitlement=on") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    nlcf->feature = value[1];
    nlcf->kill_switch.len = sizeof("kill.") - 1 + value[1].len;
    nlcf->kill_switch.data = ngx_pnalloc(cf->pool, nlcf->kill_switch.len);
    if (nlcf->kill_switch.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(nlcf->kill_switch.data, "kill.%V", &value[1]);

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid feature name \"%V\", it must be 1-32 "
                       "characters of [a-z0-9_], dots between them",
                       &value[1]);
    return NGX_CONF_ERROR;
}


/* called on NOTIFY 'x:<name>' and whenever a worker starts listening */

void
ngx_nexus_kill_reload(ngx_cycle_t *cycle)
{
    ngx_nexus_pg_query_t  *q;

    q = ngx_nexus_pg_query(ngx_nexus_kill_stmt, 0);
    if (q == NULL) {
        return;
    }

    q->handler = ngx_nexus_kill_loaded;
    q->data = cycle;

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "nexus: kill switches not reloaded, PostgreSQL is "
                      "unavailable; they will be at the next reconnect");
    }
}


static ngx_nexus_kill_sh_t *
ngx_nexus_kill_sh(ngx_shm_zone_t *zone, ngx_slab_pool_t *shpool)
{
    void  **slot;

    slot = ngx_nexus_zone_slot(zone, NGX_NEXUS_SLOT_KILLS);

    if (*slot == NULL) {
        *slot = ngx_slab_calloc_locked(shpool, sizeof(ngx_nexus_kill_sh_t));
    }

    return *slot;
}


static void
ngx_nexus_kill_loaded(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    u_char                 *p, *last, *comma;
    int64_t                 loaded;
    ngx_cycle_t            *cycle;
    ngx_slab_pool_t        *shpool;
    ngx_nexus_kill_sh_t    *sh;
    ngx_nexus_main_conf_t  *nmcf;

    cycle = q->data;

    if (rc != NGX_OK || PQntuples(res) != 1 || PQnfields(res) != 2) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "nexus: cannot load kill switches%s%s",
                      res ? ": " : "", res ? PQresultErrorMessage(res) : "");
        return;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);
    if (nmcf->shm_zone == NULL) {
        return;
    }

    loaded = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                       PQgetlength(res, 0, 0));

    p = (u_char *) PQgetvalue(res, 0, 1);
    last = p + PQgetlength(res, 0, 1);

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_nexus_kill_sh(nmcf->shm_zone, shpool);

    if (sh == NULL || loaded <= sh->loaded_us) {
        /* no room, or an older answer than the one we have */
        ngx_shmtx_unlock(&shpool->mutex);
        return;
    }

    sh->loaded_us = loaded;
    sh->n = 0;

    while (p < last && sh->n < NGX_NEXUS_KILL_MAX) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma - p <= NGX_NEXUS_KILL_NAME) {
            sh->len[sh->n] = (u_char) (comma - p);
            ngx_memcpy(sh->name[sh->n], p, comma - p);
            sh->n++;
        }

        p = comma + 1;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "nexus: kill switches reloaded");
}


/* whether the switch name ("kill.<feature>") is on */

ngx_uint_t
ngx_nexus_kill_active(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t              i, killed;
    ngx_slab_pool_t        *shpool;
    ngx_nexus_kill_sh_t    *sh;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (nmcf->shm_zone == NULL) {
        return 0;
    }

    sh = *ngx_nexus_zone_slot(nmcf->shm_zone, NGX_NEXUS_SLOT_KILLS);

    /* the common case, nothing killed, needs no lock */
    if (sh == NULL || sh->n == 0) {
        return 0;
    }

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);
    killed = 0;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < sh->n; i++) {
        if (sh->len[i] == name->len
            && ngx_memcmp(sh->name[i], name->data, name->len) == 0)
        {
            killed = 1;
            break;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return killed;
}


/*
 * NGX_DECLINED when the location's feature runs, NGX_DONE when the
 * request was answered 503.
 */

ngx_int_t
ngx_nexus_kill_check(ngx_http_request_t *r)
{
    ngx_nexus_loc_conf_t  *nlcf;
    u_char                *details;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (nlcf->kill_switch.len == 0
        || !ngx_nexus_kill_active(r, &nlcf->kill_switch))
    {
        return NGX_DECLINED;
    }

    details = ngx_pnalloc(r->pool, sizeof("{\"switch\":\"\"}")
                                   + nlcf->kill_switch.len);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(details, "{\"switch\":\"%V\"}%Z", &nlcf->kill_switch);

    ngx_http_finalize_request(r,
        ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "KILL_SWITCH_ACTIVE",
                             "this feature is switched off", (char *) details));

    return NGX_DONE;
}
