
/*
 * Copyright (C) Nexus authors
 *
 * ngx_nexus_module: directives, configuration, phase registration and the
 * worker lifecycle.  The work itself lives in the other ngx_nexus_*.c
 * files, one concern each.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_provider.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_discovery.h"
#include "ngx_nexus_breaker.h"
#include "ngx_nexus_metrics.h"
#include "ngx_nexus_usage.h"
#include "ngx_nexus_audit.h"
#include "ngx_nexus_budget.h"
#include "ngx_nexus_admit.h"
#include "ngx_nexus_block.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_cost.h"
#include "ngx_nexus_credits.h"
#include "ngx_nexus_abac.h"
#include "ngx_nexus_idempotency.h"

#include <nx_name.h>


#define NGX_NEXUS_ZONE_DEFAULT      (32 * 1024 * 1024)


static void *ngx_nexus_create_main_conf(ngx_conf_t *cf);
static char *ngx_nexus_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_nexus_create_loc_conf(ngx_conf_t *cf);
static char *ngx_nexus_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_nexus_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_nexus_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_nexus_init_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_nexus_log_handler(ngx_http_request_t *r);
static void ngx_nexus_exit_process(ngx_cycle_t *cycle);

static char *ngx_nexus_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_nexus_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_nexus_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static void ngx_nexus_key_hasher_cleanup(void *data);
static char *ngx_nexus_pepper_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_nexus_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_nexus_health(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_nexus_tenant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_nexus_error(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_nexus_require_scope(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_shm_zone_t *ngx_nexus_add_zone(ngx_conf_t *cf, ngx_str_t *name,
    size_t size);
static void ngx_nexus_cleanup(void *data);


static ngx_conf_enum_t  ngx_nexus_route_classes[] = {
    { ngx_string("run"), NGX_NEXUS_CLASS_RUN },
    { ngx_string("mutation"), NGX_NEXUS_CLASS_MUTATION },
    { ngx_string("read"), NGX_NEXUS_CLASS_READ },
    { ngx_string("ops"), NGX_NEXUS_CLASS_OPS },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_nexus_roles[] = {
    { ngx_string("reader"), NGX_NEXUS_ROLE_READER },
    { ngx_string("editor"), NGX_NEXUS_ROLE_EDITOR },
    { ngx_string("admin"), NGX_NEXUS_ROLE_ADMIN },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_nexus_abac_defaults[] = {
    { ngx_string("deny"), 0 },
    { ngx_string("allow"), 1 },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_nexus_fail_modes[] = {
    { ngx_string("closed"), NGX_NEXUS_FAIL_CLOSED },
    { ngx_string("open"), NGX_NEXUS_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_nexus_commands[] = {

    { ngx_string("nexus_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_nexus_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_nexus_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_nexus_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_key_pepper_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_nexus_pepper_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_seal_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_nexus_seal_key_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_key_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, key_cache_ttl),
      NULL },

    { ngx_string("nexus_key_negative_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, key_negative_ttl),
      NULL },

    { ngx_string("nexus_key_last_used_flush"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, last_used_flush),
      NULL },

    { ngx_string("nexus_provider"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_nexus_provider_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_nexus_model_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_max_attempts"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, max_attempts),
      NULL },

    { ngx_string("nexus_discovery"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_nexus_discovery_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_nexus_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_NEXUS_HANDLER_API,
      NULL },

    { ngx_string("nexus_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_nexus_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_NEXUS_HANDLER_ADMIN,
      NULL },

    { ngx_string("nexus_ops"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_nexus_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_NEXUS_HANDLER_OPS,
      NULL },

    { ngx_string("nexus_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_nexus_health,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_error"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE23,
      ngx_nexus_error,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, auth),
      NULL },

    { ngx_string("nexus_tenant"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_nexus_tenant,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_route_class"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, route_class),
      &ngx_nexus_route_classes },

    { ngx_string("nexus_require_role"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, require_role),
      &ngx_nexus_roles },

    { ngx_string("nexus_require_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_nexus_require_scope,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_pii_guard"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_nexus_pii_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_bulkhead"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_nexus_bulkhead_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_feature"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_nexus_kill_feature_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_nexus_concurrency_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_lease_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, lease_ttl),
      NULL },

    { ngx_string("nexus_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, rate_limit),
      NULL },

    { ngx_string("nexus_rate_limits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_nexus_limit_rates_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_fail_mode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, fail_mode),
      &ngx_nexus_fail_modes },

    { ngx_string("nexus_breaker"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_nexus_breaker_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_nexus_metrics_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_usage_flush"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, usage_flush),
      NULL },

    { ngx_string("nexus_usage_batch"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, usage_batch),
      NULL },

    { ngx_string("nexus_usage_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, usage_queue),
      NULL },

    { ngx_string("nexus_audit_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_nexus_audit_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_audit_flush"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, audit_flush),
      NULL },

    { ngx_string("nexus_audit_checkpoint"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, audit_checkpoint),
      NULL },

    { ngx_string("nexus_token_ceiling"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_nexus_budget_ceiling_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_budget_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, budget_ttl),
      NULL },

    { ngx_string("nexus_admit_block"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_nexus_block_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_cost_degrade_max_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, cost_degrade_tokens),
      NULL },

    { ngx_string("nexus_credit_grant_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_nexus_cost_usd_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, credit_grant_max),
      NULL },

    { ngx_string("nexus_credit_grant_daily"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_nexus_cost_usd_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, credit_grant_daily),
      NULL },

    { ngx_string("nexus_credit_flush"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, credit_flush),
      NULL },

    { ngx_string("nexus_tpm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_nexus_budget_tpm_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nexus_abac"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, abac),
      NULL },

    { ngx_string("nexus_abac_default"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, abac_default),
      &ngx_nexus_abac_defaults },

    { ngx_string("nexus_abac_wildcards"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, abac_wildcards),
      NULL },

    { ngx_string("nexus_acl_admin_bypass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, acl_admin_bypass),
      NULL },

    { ngx_string("nexus_acl_test_hook"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_nexus_loc_conf_t, acl_test_hook),
      NULL },

    { ngx_string("nexus_idempotency_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, idempotency_ttl),
      NULL },

    { ngx_string("nexus_idempotency_lock"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_nexus_main_conf_t, idempotency_lock),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_nexus_module_ctx = {
    ngx_nexus_preconfiguration,            /* preconfiguration */
    ngx_nexus_postconfiguration,           /* postconfiguration */

    ngx_nexus_create_main_conf,            /* create main configuration */
    ngx_nexus_init_main_conf,              /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_nexus_create_loc_conf,             /* create location configuration */
    ngx_nexus_merge_loc_conf               /* merge location configuration */
};


ngx_module_t  ngx_nexus_module = {
    NGX_MODULE_V1,
    &ngx_nexus_module_ctx,                 /* module context */
    ngx_nexus_commands,                    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_nexus_init_process,                /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_nexus_exit_process,                /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_nexus_create_main_conf(ngx_conf_t *cf)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_pcalloc(cf->pool, sizeof(ngx_nexus_main_conf_t));
    if (nmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     nmcf->pg = NULL;
     *     nmcf->redis = NULL;
     *     nmcf->shm_zone = NULL;
     *     nmcf->pepper_len = 0;
     *     nmcf->audit_keys = NULL;
     *     nmcf->used = 0;
     */

    nmcf->key_cache_ttl = NGX_CONF_UNSET_MSEC;
    nmcf->key_negative_ttl = NGX_CONF_UNSET_MSEC;
    nmcf->last_used_flush = NGX_CONF_UNSET_MSEC;
    nmcf->lease_ttl = NGX_CONF_UNSET_MSEC;
    nmcf->request_id_index = NGX_ERROR;
    nmcf->max_attempts = NGX_CONF_UNSET_UINT;
    nmcf->discovery_interval = NGX_CONF_UNSET_MSEC;
    nmcf->discovery_ttl = NGX_CONF_UNSET_MSEC;
    nmcf->usage_flush = NGX_CONF_UNSET_MSEC;
    nmcf->usage_batch = NGX_CONF_UNSET;
    nmcf->usage_queue = NGX_CONF_UNSET;
    nmcf->audit_flush = NGX_CONF_UNSET_MSEC;
    nmcf->audit_checkpoint = NGX_CONF_UNSET_MSEC;
    nmcf->token_ceiling = NGX_CONF_UNSET;
    nmcf->budget_ttl = NGX_CONF_UNSET_MSEC;
    nmcf->block_max = NGX_CONF_UNSET_UINT;
    nmcf->block_window = NGX_CONF_UNSET_MSEC;
    nmcf->cost_degrade_tokens = NGX_CONF_UNSET;
    nmcf->credit_grant_max = NGX_CONF_UNSET;
    nmcf->credit_grant_daily = NGX_CONF_UNSET;
    nmcf->credit_flush = NGX_CONF_UNSET_MSEC;
    nmcf->abac_wildcards = NGX_CONF_UNSET;
    nmcf->idempotency_ttl = NGX_CONF_UNSET_MSEC;
    nmcf->idempotency_lock = NGX_CONF_UNSET_MSEC;

    if (ngx_array_init(&nmcf->providers, cf->pool, 4,
                       sizeof(ngx_nexus_provider_t *)) != NGX_OK
        || ngx_array_init(&nmcf->models, cf->pool, 8,
                          sizeof(ngx_nexus_model_t)) != NGX_OK)
    {
        return NULL;
    }

    return nmcf;
}


static char *
ngx_nexus_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_conf_init_msec_value(nmcf->key_cache_ttl, 60000);
    ngx_conf_init_msec_value(nmcf->key_negative_ttl, 5000);
    ngx_conf_init_msec_value(nmcf->last_used_flush, 10000);
    ngx_conf_init_msec_value(nmcf->lease_ttl, 60000);
    ngx_conf_init_uint_value(nmcf->max_attempts, 3);
    ngx_conf_init_value(nmcf->abac_wildcards, 0);
    ngx_conf_init_msec_value(nmcf->discovery_interval, 30000);
    ngx_conf_init_msec_value(nmcf->discovery_ttl,
                             ngx_max(300000, 3 * nmcf->discovery_interval));

    /* nexus_breaker: 0 where a parameter was not given */
    if (nmcf->breaker.failures == 0) {
        nmcf->breaker.failures = 5;
    }

    if (nmcf->breaker.successes == 0) {
        nmcf->breaker.successes = 2;
    }

    if (nmcf->breaker.open_ms == 0) {
        nmcf->breaker.open_ms = 30000;
    }

    ngx_conf_init_msec_value(nmcf->idempotency_ttl, 24 * 60 * 60 * 1000);
    ngx_conf_init_msec_value(nmcf->idempotency_lock, 60000);

    /* a lock shorter than a query could let a retry run alongside it */
    if (nmcf->idempotency_lock < 1000
        || nmcf->idempotency_ttl < nmcf->idempotency_lock)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_idempotency_lock\" must be at least 1s "
                           "and at most \"nexus_idempotency_ttl\"");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(nmcf->block_max, 0);
    ngx_conf_init_msec_value(nmcf->block_window, 1000);

    if (nmcf->lease_ttl < 300) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_lease_ttl\" must be at least 300ms");
        return NGX_CONF_ERROR;
    }

    if (nmcf->last_used_flush == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_key_last_used_flush\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (ngx_nexus_audit_init_main_conf(cf, nmcf) != NGX_CONF_OK
        || ngx_nexus_budget_init_main_conf(cf, nmcf) != NGX_CONF_OK
        || ngx_nexus_cost_init_main_conf(cf, nmcf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return ngx_nexus_usage_init_main_conf(cf, nmcf);
}


static void *
ngx_nexus_create_loc_conf(ngx_conf_t *cf)
{
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_pcalloc(cf->pool, sizeof(ngx_nexus_loc_conf_t));
    if (nlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     nlcf->handler = NGX_NEXUS_HANDLER_NONE;
     *     nlcf->tenant = { 0, NULL };
     */

    nlcf->auth = NGX_CONF_UNSET;
    nlcf->route_class = NGX_CONF_UNSET_UINT;
    nlcf->rate_limit = NGX_CONF_UNSET;
    nlcf->rates[0] = NGX_CONF_UNSET_UINT;
    nlcf->fail_mode = NGX_CONF_UNSET_UINT;
    nlcf->concurrency[0] = NGX_CONF_UNSET_UINT;
    nlcf->require_role = NGX_CONF_UNSET_UINT;
    nlcf->pii_mode = NGX_CONF_UNSET_UINT;
    nlcf->tpm[0] = NGX_CONF_UNSET;
    nlcf->abac = NGX_CONF_UNSET;
    nlcf->abac_default = NGX_CONF_UNSET_UINT;
    nlcf->acl_admin_bypass = NGX_CONF_UNSET;
    nlcf->acl_test_hook = NGX_CONF_UNSET;

    return nlcf;
}


static char *
ngx_nexus_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_nexus_loc_conf_t *prev = parent;
    ngx_nexus_loc_conf_t *conf = child;

    ngx_nexus_main_conf_t  *nmcf;

    /* handlers are not inherited: they belong to one location */

    switch (conf->handler) {

    case NGX_NEXUS_HANDLER_API:
    case NGX_NEXUS_HANDLER_ADMIN:
    case NGX_NEXUS_HANDLER_OPS:
        /* tenant- and operator-facing handlers always authenticate */
        if (conf->auth == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nexus_auth off\" cannot be used with "
                               "a nexus API handler");
            return NGX_CONF_ERROR;
        }
        conf->auth = 1;
        break;

    case NGX_NEXUS_HANDLER_LIVE:
    case NGX_NEXUS_HANDLER_READY:
    case NGX_NEXUS_HANDLER_ERROR:
    case NGX_NEXUS_HANDLER_METRICS:
        /* no key: operators restrict these with allow and deny */
        ngx_conf_merge_value(conf->auth, 0, 0);
        break;

    default:
        ngx_conf_merge_value(conf->auth, prev->auth, 0);
        break;
    }

    ngx_conf_merge_str_value(conf->tenant, prev->tenant, "");

    /*
     * an ops location is of the ops class unless it says otherwise; where
     * no class is configured at all, the request's method decides at run
     * time (see ngx_nexus_route_class())
     */
    if (conf->route_class == NGX_CONF_UNSET_UINT
        && conf->handler == NGX_NEXUS_HANDLER_OPS)
    {
        conf->route_class = NGX_NEXUS_CLASS_OPS;
    }

    if (conf->route_class == NGX_CONF_UNSET_UINT) {
        conf->route_class = prev->route_class;
    }

    ngx_conf_merge_value(conf->rate_limit, prev->rate_limit, 0);
    ngx_conf_merge_uint_value(conf->fail_mode, prev->fail_mode,
                              NGX_NEXUS_FAIL_CLOSED);

    /* a feature, its kill switch and its entitlement flag go together */
    if (conf->kill_switch.data == NULL) {
        conf->kill_switch = prev->kill_switch;
        conf->feature = prev->feature;
        conf->entitlement = prev->entitlement;
    }

    ngx_conf_merge_uint_value(conf->require_role, prev->require_role,
                              NGX_NEXUS_ROLE_READER);
    ngx_conf_merge_str_value(conf->require_scope, prev->require_scope, "");

    if (conf->pii_mode == NGX_CONF_UNSET_UINT) {
        conf->pii_mode = (prev->pii_mode == NGX_CONF_UNSET_UINT)
                         ? NGX_NEXUS_PII_OFF : prev->pii_mode;
        conf->pii_kinds = prev->pii_kinds;
    }

    if (conf->concurrency[0] == NGX_CONF_UNSET_UINT) {
        conf->concurrency[0] = prev->concurrency[0];
        conf->concurrency[1] = prev->concurrency[1];
    }

    if (conf->rates[0] == NGX_CONF_UNSET_UINT) {
        ngx_memcpy(conf->rates, prev->rates, sizeof(conf->rates));
    }

    if (conf->tpm[0] == NGX_CONF_UNSET) {
        conf->tpm[0] = prev->tpm[0];
        conf->tpm[1] = prev->tpm[1];
    }

    /* the reference's AUTHZ_DEFAULT_DENY: deny unless told otherwise */
    ngx_conf_merge_value(conf->abac, prev->abac, 0);
    ngx_conf_merge_uint_value(conf->abac_default, prev->abac_default, 0);
    ngx_conf_merge_value(conf->acl_admin_bypass, prev->acl_admin_bypass, 0);
    ngx_conf_merge_value(conf->acl_test_hook, prev->acl_test_hook, 0);

    nmcf = ngx_http_conf_get_module_main_conf(cf, ngx_nexus_module);

    if (conf->concurrency[0] != NGX_CONF_UNSET_UINT
        && (conf->concurrency[0] || conf->concurrency[1])
        && nmcf->redis == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_concurrency\" requires \"nexus_redis\"");
        return NGX_CONF_ERROR;
    }

    if (conf->kill_switch.len) {
        nmcf->zone_needed = 1;
        nmcf->kill_switches = 1;
    }

    if (conf->auth == 1) {
        nmcf->used = 1;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_nexus_preconfiguration(ngx_conf_t *cf)
{
    return ngx_nexus_add_variables(cf);
}


static ngx_int_t
ngx_nexus_postconfiguration(ngx_conf_t *cf)
{
    ngx_str_t                   name;
    ngx_http_handler_pt        *h;
    ngx_nexus_main_conf_t      *nmcf;
    ngx_http_core_main_conf_t  *cmcf;

    nmcf = ngx_http_conf_get_module_main_conf(cf, ngx_nexus_module);

    if (ngx_nexus_request_id_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (nmcf->kill_switches && nmcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_feature\" is used but \"nexus_postgres\" "
                           "is not set");
        return NGX_ERROR;
    }

    if ((nmcf->used || nmcf->zone_needed) && nmcf->shm_zone == NULL) {
        ngx_str_set(&name, "nexus");
        nmcf->shm_zone = ngx_nexus_add_zone(cf, &name,
                                            NGX_NEXUS_ZONE_DEFAULT);
        if (nmcf->shm_zone == NULL) {
            return NGX_ERROR;
        }
    }

    if (nmcf->used) {
        if (nmcf->pepper_len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "nexus authentication is enabled but "
                               "\"nexus_key_pepper_file\" is not set");
            return NGX_ERROR;
        }

        if (nmcf->pg == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "nexus authentication is enabled but "
                               "\"nexus_postgres\" is not set");
            return NGX_ERROR;
        }

    }

    if (ngx_nexus_auth_init_statements(cf) != NGX_OK
        || ngx_nexus_admin_init_statements(cf) != NGX_OK
        || ngx_nexus_last_used_init_statements(cf) != NGX_OK
        || ngx_nexus_health_init(cf) != NGX_OK
        || ngx_nexus_limit_init(cf) != NGX_OK
        || ngx_nexus_budget_init(cf) != NGX_OK
        || ngx_nexus_admit_init(cf) != NGX_OK
        || ngx_nexus_block_init(cf) != NGX_OK
        || ngx_nexus_cost_init(cf) != NGX_OK
        || ngx_nexus_credits_init(cf) != NGX_OK
        || ngx_nexus_kill_init(cf) != NGX_OK
        || ngx_nexus_providers_init(cf) != NGX_OK
        || ngx_nexus_proxy_init(cf) != NGX_OK
        || ngx_nexus_usage_init_statements(cf) != NGX_OK
        || ngx_nexus_usage_admin_init_statements(cf) != NGX_OK
        || ngx_nexus_audit_init_statements(cf) != NGX_OK
        || ngx_nexus_audit_api_init_statements(cf) != NGX_OK
        || ngx_nexus_notify_init(cf) != NGX_OK
        || ngx_nexus_workers_init(cf) != NGX_OK
        || ngx_nexus_abac_init(cf) != NGX_OK
        || ngx_nexus_authz_admin_init(cf) != NGX_OK
        || ngx_nexus_acl_init(cf) != NGX_OK
        || ngx_nexus_plan_init_statements(cf) != NGX_OK
        || ngx_nexus_budget_admin_init(cf) != NGX_OK
        || ngx_nexus_idempotency_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_nexus_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_nexus_log_handler;

    return NGX_OK;
}


/* what a request owes once it is answered, whatever the answer */

static ngx_int_t
ngx_nexus_log_handler(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx != NULL && ctx->limit_state == NGX_NEXUS_LIMIT_DEFERRED) {
        ngx_nexus_limit_charge(r, ctx);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_main_conf_t  *nmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);
    if (nmcf == NULL) {
        return NGX_OK;
    }

    ngx_nexus_revoke_init_process(cycle);

    if (ngx_nexus_pg_init_process(cycle, nmcf->pg) != NGX_OK
        || ngx_nexus_redis_init_process(cycle, nmcf->redis) != NGX_OK
        || ngx_nexus_last_used_init_process(cycle) != NGX_OK
        || ngx_nexus_bulkhead_init_process(cycle) != NGX_OK
        || ngx_nexus_discovery_init_process(cycle) != NGX_OK
        || ngx_nexus_usage_init_process(cycle) != NGX_OK
        || ngx_nexus_audit_init_process(cycle) != NGX_OK
        || ngx_nexus_audit_agg_init_process(cycle) != NGX_OK
        || ngx_nexus_credits_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_nexus_exit_process(ngx_cycle_t *cycle)
{
    ngx_nexus_usage_exit_process(cycle);
    ngx_nexus_audit_agg_exit_process(cycle);
    ngx_nexus_audit_exit_process(cycle);
    ngx_nexus_pg_exit_process(cycle);
    ngx_nexus_redis_exit_process(cycle);
}


static char *
ngx_nexus_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    if (nmcf->pg) {
        return "is duplicate";
    }

    nmcf->pg = ngx_pcalloc(cf->pool, sizeof(ngx_nexus_pg_conf_t));
    if (nmcf->pg == NULL) {
        return NGX_CONF_ERROR;
    }

    nmcf->pg->size = 4;
    nmcf->pg->queue = 1024;
    nmcf->pg->connect_timeout = 3000;
    nmcf->pg->query_timeout = 5000;

    return ngx_nexus_pg_conf(cf, nmcf->pg, cf->args->elts, cf->args->nelts);
}


static char *
ngx_nexus_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    if (nmcf->redis) {
        return "is duplicate";
    }

    nmcf->redis = ngx_pcalloc(cf->pool, sizeof(ngx_nexus_redis_conf_t));
    if (nmcf->redis == NULL) {
        return NGX_CONF_ERROR;
    }

    nmcf->redis->size = 2;
    nmcf->redis->timeout = 100;
    nmcf->redis->connect_timeout = 1000;

    return ngx_nexus_redis_conf(cf, nmcf->redis, cf->args->elts,
                                cf->args->nelts);
}


static ngx_shm_zone_t *
ngx_nexus_add_zone(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    void            *kc;
    ngx_shm_zone_t  *shm_zone;

    shm_zone = ngx_shared_memory_add(cf, name, size, &ngx_nexus_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", name);
        return NULL;
    }

    /* the zone's context: see ngx_nexus_keycache_t */
    kc = ngx_pcalloc(cf->pool, 2 * sizeof(void *));
    if (kc == NULL) {
        return NULL;
    }

    shm_zone->init = ngx_nexus_keycache_init_zone;
    shm_zone->data = kc;

    return shm_zone;
}


static char *
ngx_nexus_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (nmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    nmcf->shm_zone = ngx_nexus_add_zone(cf, &value[1], size);
    if (nmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_nexus_pepper_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    int                  n;
    ngx_str_t           *value, path;
    ngx_pool_cleanup_t  *cln;
    char                 err[256];

    if (nmcf->pepper_len) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    n = nx_pepper_load((char *) path.data, nmcf->pepper, sizeof(nmcf->pepper),
                       err, sizeof(err));
    if (n < 0) {
        /* err names the file */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot load key pepper: %s", err);
        return NGX_CONF_ERROR;
    }

    nmcf->pepper_len = n;

    /* every request's key is hashed: the pepper's part is done once here */
    nmcf->key_hasher = nx_key_hasher_new(nmcf->pepper, nmcf->pepper_len);
    if (nmcf->key_hasher == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        nx_key_hasher_free(nmcf->key_hasher);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_nexus_key_hasher_cleanup;
    cln->data = nmcf->key_hasher;

    return NGX_CONF_OK;
}


static void
ngx_nexus_key_hasher_cleanup(void *data)
{
    nx_key_hasher_free(data);
}


static char *
ngx_nexus_handler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (nlcf->handler != NGX_NEXUS_HANDLER_NONE) {
        return "is duplicate";
    }

    nlcf->handler = cmd->offset;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    switch (nlcf->handler) {
    case NGX_NEXUS_HANDLER_API:
        clcf->handler = ngx_nexus_api_handler;
        break;
    case NGX_NEXUS_HANDLER_ADMIN:
        clcf->handler = ngx_nexus_admin_handler;
        break;
    default:
        clcf->handler = ngx_nexus_ops_handler;
        break;
    }

    return NGX_CONF_OK;
}


static char *
ngx_nexus_health(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (nlcf->handler != NGX_NEXUS_HANDLER_NONE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "live") == 0) {
        nlcf->handler = NGX_NEXUS_HANDLER_LIVE;

    } else if (ngx_strcmp(value[1].data, "ready") == 0) {
        nlcf->handler = NGX_NEXUS_HANDLER_READY;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", "
                           "it must be \"live\" or \"ready\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_nexus_health_handler;

    return NGX_CONF_OK;
}


static char *
ngx_nexus_tenant(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_str_t  *value;

    if (nlcf->tenant.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (nx_tenant_name_valid((char *) value[1].data, value[1].len) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid tenant name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    nlcf->tenant = value[1];

    return NGX_CONF_OK;
}


/* nexus_require_scope SCOPE; */

static char *
ngx_nexus_require_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    ngx_str_t  *value;

    if (nlcf->require_scope.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* one scope, no list */
    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, ',')
        || nx_scopes_valid((char *) value[1].data, value[1].len) != 0
        || value[1].len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid scope \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    nlcf->require_scope = value[1];

    return NGX_CONF_OK;
}


/* nexus_error STATUS CODE [MESSAGE]; */

static char *
ngx_nexus_error(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_loc_conf_t *nlcf = conf;

    u_char                    *p;
    ngx_int_t                  status;
    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (nlcf->handler != NGX_NEXUS_HANDLER_NONE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    status = ngx_atoi(value[1].data, value[1].len);
    if (status < 400 || status > 599) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid status \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (p = value[2].data; p < value[2].data + value[2].len; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
              || *p == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid error code \"%V\", it must be "
                               "of [A-Z0-9_]", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    nlcf->handler = NGX_NEXUS_HANDLER_ERROR;
    nlcf->error_status = status;
    nlcf->error_code = value[2];

    if (cf->args->nelts == 4) {
        /* NUL-terminated by the configuration parser */
        nlcf->error_message = value[3];
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_nexus_error_handler;

    return NGX_CONF_OK;
}


/*
 * The per-request context.  Its pool cleanup detaches whatever the request
 * still waits on, so that no callback can reach freed memory.
 */

ngx_nexus_ctx_t *
ngx_nexus_get_ctx(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t     *ctx;
    ngx_pool_cleanup_t  *cln;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_nexus_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_nexus_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_nexus_module);

    return ctx;
}


/*
 * A handler file's own state of the request, zeroed, in place of any
 * earlier handler's; NULL when memory ran out.
 */

void *
ngx_nexus_handler_ctx(ngx_http_request_t *r, size_t size)
{
    void             *p;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NULL;
    }

    p = ngx_pcalloc(r->pool, size);
    if (p == NULL) {
        return NULL;
    }

    ctx->handler_ctx = p;

    return p;
}


static void
ngx_nexus_cleanup(void *data)
{
    ngx_nexus_ctx_t *ctx = data;

    ngx_uint_t  i;

    if (ctx->pgq) {
        ngx_nexus_pg_cancel(ctx->pgq);
        ctx->pgq = NULL;
    }

    for (i = 0; i < 2; i++) {
        if (ctx->rcmd[i]) {
            ngx_nexus_redis_cancel(ctx->rcmd[i]);
            ctx->rcmd[i] = NULL;
        }
    }

    if (ctx->lease) {
        ngx_nexus_lease_release(ctx->lease);
        ctx->lease = NULL;
    }
}


/*
 * A request now waits on a dependency: watch the client so that an abort
 * finalizes the request (and the cleanup above detaches the wait).
 */

void
ngx_nexus_wait(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_test_reading;
}


/* resume a request suspended in a phase handler */

void
ngx_nexus_resume(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* GET and HEAD read; anything else mutates */

ngx_uint_t
ngx_nexus_route_class(ngx_http_request_t *r, ngx_nexus_loc_conf_t *nlcf)
{
    if (nlcf->route_class != NGX_CONF_UNSET_UINT) {
        return nlcf->route_class;
    }

    return (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
           ? NGX_NEXUS_CLASS_READ : NGX_NEXUS_CLASS_MUTATION;
}
