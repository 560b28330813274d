
/*
 * Copyright (C) Nexus authors
 *
 * Types shared by the files of ngx_nexus_module: configuration, the
 * per-request context and the principal an API key resolves to.
 */


#ifndef _NGX_NEXUS_MODULE_H_INCLUDED_
#define _NGX_NEXUS_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <nx_key.h>
#include <nx_breaker.h>
#include <nx_seal.h>


#define NGX_NEXUS_HANDLER_NONE          0
#define NGX_NEXUS_HANDLER_API           1
#define NGX_NEXUS_HANDLER_ADMIN         2
#define NGX_NEXUS_HANDLER_OPS           3
#define NGX_NEXUS_HANDLER_LIVE          4
#define NGX_NEXUS_HANDLER_READY         5
#define NGX_NEXUS_HANDLER_ERROR         6
#define NGX_NEXUS_HANDLER_METRICS       7

#define NGX_NEXUS_CLASS_RUN             0
#define NGX_NEXUS_CLASS_MUTATION        1
#define NGX_NEXUS_CLASS_READ            2
#define NGX_NEXUS_CLASS_OPS             3

#define NGX_NEXUS_PII_OFF               0
#define NGX_NEXUS_PII_BLOCK             1
#define NGX_NEXUS_PII_REDACT            2
#define NGX_NEXUS_PII_LOG               3

#define NGX_NEXUS_FAIL_CLOSED           0
#define NGX_NEXUS_FAIL_OPEN             1

#define NGX_NEXUS_ROLE_READER           0
#define NGX_NEXUS_ROLE_EDITOR           1
#define NGX_NEXUS_ROLE_ADMIN            2

/* rate limit overrides: 4 route classes x key rps, key burst, tenant rps,
 * tenant burst; 0 where none is set */
#define NGX_NEXUS_LIMITS                16

#define NGX_NEXUS_TENANT_MAX            63
#define NGX_NEXUS_SCOPES_MAX            255
#define NGX_NEXUS_MODELS_MAX            2000
#define NGX_NEXUS_FEATURES_MAX          1024

/* a presented key is never longer than this: anything longer is invalid */
#define NGX_NEXUS_TOKEN_MAX             256


typedef struct ngx_nexus_pg_pool_s     ngx_nexus_pg_pool_t;
typedef struct ngx_nexus_pg_query_s    ngx_nexus_pg_query_t;
typedef struct ngx_nexus_redis_pool_s  ngx_nexus_redis_pool_t;
typedef struct ngx_nexus_redis_cmd_s   ngx_nexus_redis_cmd_t;


typedef struct {
    ngx_event_t                 renew;
    ngx_str_t                   keys[2];
    ngx_str_t                   id;
    ngx_msec_t                  ttl;
    unsigned                    held:1;
} ngx_nexus_lease_t;
struct yajl_val_s;
struct redisReply;

/* a parsed JSON request body (yajl_val), or NULL for an empty body */
typedef void (*ngx_nexus_body_pt)(ngx_http_request_t *r,
    struct yajl_val_s *v);


typedef struct {
    ngx_str_t                   conninfo;   /* hostaddr resolved */
    ngx_uint_t                  size;
    ngx_uint_t                  queue;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  query_timeout;
} ngx_nexus_pg_conf_t;


typedef struct {
    ngx_addr_t                  addr;
    ngx_str_t                   name;       /* host:port, for logs */
    ngx_uint_t                  size;
    ngx_msec_t                  timeout;
    ngx_msec_t                  connect_timeout;
    ngx_uint_t                  db;
    ngx_str_t                   password;
} ngx_nexus_redis_conf_t;


typedef struct {
    ngx_nexus_pg_conf_t        *pg;
    ngx_nexus_redis_conf_t     *redis;
    ngx_shm_zone_t             *shm_zone;

    u_char                      pepper[NX_PEPPER_MAX];
    size_t                      pepper_len;
    nx_key_hasher_t            *key_hasher;     /* HMAC under the pepper */

    ngx_msec_t                  key_cache_ttl;
    ngx_msec_t                  key_negative_ttl;
    ngx_msec_t                  last_used_flush;
    ngx_msec_t                  lease_ttl;

    ngx_int_t                   request_id_index;

    ngx_uint_t                  bulkhead[4];    /* by route class */

    ngx_array_t                 providers;      /* ngx_nexus_provider_t * */
    ngx_array_t                 models;         /* nexus_model entries */
    nx_breaker_conf_t           breaker;        /* nexus_breaker */
    ngx_uint_t                  max_attempts;   /* nexus_max_attempts */
    ngx_msec_t                  discovery_interval;
    ngx_msec_t                  discovery_ttl;
    nx_seal_key_t              *seal_key;       /* nexus_seal_key_file */

    unsigned                    used:1;     /* a location uses nexus */
    unsigned                    zone_needed:1;
    unsigned                    kill_switches:1;

    ngx_msec_t                  usage_flush;    /* nexus_usage_flush */
    ngx_int_t                   usage_batch;    /* nexus_usage_batch */
    ngx_int_t                   usage_queue;    /* nexus_usage_queue */

    u_char                     *audit_keys;     /* chain key, checkpoint
                                                   key; NULL: no audit */
    ngx_msec_t                  audit_flush;    /* nexus_audit_flush */
    ngx_msec_t                  audit_checkpoint;

    ngx_int_t                   token_ceiling;  /* nexus_token_ceiling */
    ngx_array_t                *token_ceilings; /* ... model=NAME */
    ngx_msec_t                  budget_ttl;     /* nexus_budget_ttl */
    ngx_uint_t                  block_max;      /* nexus_admit_block */
    ngx_msec_t                  block_window;   /* ... window= */

    ngx_int_t                   cost_degrade_tokens;
                                        /* nexus_cost_degrade_max_tokens */
    int64_t                     credit_grant_max;   /* micro-dollars */
    int64_t                     credit_grant_daily;
    ngx_msec_t                  credit_flush;   /* nexus_credit_flush */
    ngx_flag_t                  abac_wildcards; /* nexus_abac_wildcards */

    ngx_msec_t                  idempotency_ttl;    /* nexus_idempotency_ttl */
    ngx_msec_t                  idempotency_lock;   /* ..._lock */
} ngx_nexus_main_conf_t;


typedef struct {
    ngx_uint_t                  handler;
    ngx_flag_t                  auth;
    ngx_str_t                   tenant;
    ngx_uint_t                  route_class;
    ngx_uint_t                  error_status;   /* nexus_error */
    ngx_str_t                   error_code;
    ngx_str_t                   error_message;
    ngx_flag_t                  rate_limit;
    ngx_uint_t                  rates[4];       /* nexus_rate_limits */
    ngx_uint_t                  fail_mode;
    ngx_str_t                   kill_switch;    /* "kill.<feature>" */
    ngx_str_t                   feature;        /* nexus_feature */
    ngx_flag_t                  entitlement;    /* ... entitlement=on */
    ngx_uint_t                  concurrency[2]; /* key, tenant */
    ngx_uint_t                  require_role;   /* nexus_require_role */
    ngx_str_t                   require_scope;  /* nexus_require_scope */
    ngx_uint_t                  pii_mode;       /* nexus_pii_guard */
    ngx_uint_t                  pii_kinds;
    int64_t                     tpm[2];         /* nexus_tpm: key, tenant */
    ngx_flag_t                  abac;           /* nexus_abac */
    ngx_uint_t                  abac_default;   /* nexus_abac_default */
    ngx_flag_t                  acl_admin_bypass;
    ngx_flag_t                  acl_test_hook;  /* nexus_acl_test_hook */
} ngx_nexus_loc_conf_t;


typedef struct {
    int64_t                     key_id;
    int64_t                     tenant_id;
    time_t                      expires_at;     /* 0: never */
    ngx_uint_t                  role;
    ngx_str_t                   tenant;
    ngx_str_t                   prefix;
    ngx_str_t                   scopes;         /* comma-separated */
    ngx_str_t                   models;         /* "*", or names with ","
                                                   (see 0005_models.sql) */
    ngx_str_t                   features;       /* effective feature names
                                                   with "," (0011_plans) */
    uint32_t                    limits[NGX_NEXUS_LIMITS];
    int64_t                     quota[2];       /* daily, monthly; 0 none */
    ngx_uint_t                  quota_soft;     /* permille */
    int64_t                     budget[3];      /* tokens: daily, monthly,
                                                   total; 0 none */
    int64_t                     tpm[2];         /* key, tenant; 0 none */
    int64_t                     guard_max_prompt;   /* tenant guardrails */
    int64_t                     guard_max_tokens;   /* (0016); 0 none */
    ngx_uint_t                  guard_pii_mode;     /* NGX_NEXUS_PII_* */
    ngx_uint_t                  guard_pii_kinds;    /* nx_pii_kind_t bits */
    unsigned                    quota_observe:1;
    unsigned                    platform:1;
} ngx_nexus_principal_t;


#define NGX_NEXUS_AUTH_NONE         0
#define NGX_NEXUS_AUTH_WAITING      1
#define NGX_NEXUS_AUTH_DONE         2
#define NGX_NEXUS_LIMIT_PASSED      3
#define NGX_NEXUS_LIMIT_DEFERRED    4   /* to the gateway call's admission */


typedef struct {
    ngx_nexus_principal_t       principal;
    unsigned                    authenticated:1;

    ngx_uint_t                  auth_state;
    ngx_int_t                   auth_status;    /* HTTP status or NGX_OK */
    const char                 *auth_code;
    const char                 *auth_message;
    const char                 *auth_reason;    /* a refusal, audited */
    int64_t                     auth_tenant_id; /* the refused key's */
    uint64_t                    auth_epoch;
    u_char                      key_hash[NX_HASH_LEN];
    u_char                      key_prefix[NX_KEY_PREFIX_LEN];

    ngx_uint_t                  limit_state;
    ngx_int_t                   limit_status;   /* NGX_OK, 429, DECLINED */
    int64_t                     limit_retry_ms;
    int64_t                     limit_remaining;
    unsigned                    limit_tenant_scope:1;
    unsigned                    bulkhead_done:1;
    unsigned                    limit_concurrency:1;
    unsigned                    pii_state:1;
    ngx_int_t                   pii_status;
    unsigned                    limit_quota:1;
    unsigned                    quota_warn:1;
    ngx_uint_t                  quota_period;   /* 0 none, 1 day, 2 month */
    int64_t                     quota_limit;
    int64_t                     quota_used;
    int64_t                     quota_remaining;
    ngx_nexus_lease_t          *lease;

    /* dependencies this request is waiting on, cancelled on cleanup */
    ngx_nexus_pg_query_t       *pgq;
    ngx_nexus_redis_cmd_t      *rcmd[2];
    void                      (*redis_reply)(ngx_http_request_t *r,
                                    struct redisReply *reply, ngx_int_t rc);

    /* content handlers' own state */
    void                       *handler_ctx;
    void                       *proxy;          /* ngx_nexus_proxy_t */
    ngx_nexus_body_pt           body_handler;
    ngx_int_t                   pending;

    void                       *idem;           /* ngx_nexus_idempotency.c */
} ngx_nexus_ctx_t;


ngx_nexus_ctx_t *ngx_nexus_get_ctx(ngx_http_request_t *r);
void *ngx_nexus_handler_ctx(ngx_http_request_t *r, size_t size);
void ngx_nexus_resume(ngx_http_request_t *r);
void ngx_nexus_wait(ngx_http_request_t *r);

ngx_int_t ngx_nexus_access_handler(ngx_http_request_t *r);
ngx_int_t ngx_nexus_api_handler(ngx_http_request_t *r);
ngx_int_t ngx_nexus_admin_handler(ngx_http_request_t *r);
ngx_int_t ngx_nexus_ops_handler(ngx_http_request_t *r);
ngx_int_t ngx_nexus_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_nexus_health_ready(ngx_http_request_t *r);
ngx_int_t ngx_nexus_error_handler(ngx_http_request_t *r);

ngx_int_t ngx_nexus_route(ngx_http_request_t *r, ngx_str_t *rest);
ngx_uint_t ngx_nexus_api_gateway_call(ngx_http_request_t *r);
ngx_int_t ngx_nexus_gateway_handler(ngx_http_request_t *r, ngx_str_t *rest,
    ngx_uint_t native);
ngx_int_t ngx_nexus_not_found(ngx_http_request_t *r);
ngx_int_t ngx_nexus_method_not_allowed(ngx_http_request_t *r,
    const char *allow);

ngx_int_t ngx_nexus_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_nexus_request_id(ngx_http_request_t *r, ngx_str_t *id);
ngx_int_t ngx_nexus_request_id_init(ngx_conf_t *cf);

ngx_int_t ngx_nexus_auth_init_statements(ngx_conf_t *cf);
ngx_int_t ngx_nexus_admin_init_statements(ngx_conf_t *cf);
/* the only tenant an admin request may concern: 0 for a platform admin */
int64_t ngx_nexus_admin_scope(ngx_http_request_t *r);
ngx_int_t ngx_nexus_health_init(ngx_conf_t *cf);

ngx_int_t ngx_nexus_last_used_init_process(ngx_cycle_t *cycle);
void ngx_nexus_last_used_touch(int64_t key_id);
ngx_int_t ngx_nexus_last_used_init_statements(ngx_conf_t *cf);

void ngx_nexus_revoke_init_process(ngx_cycle_t *cycle);

ngx_int_t ngx_nexus_kill_init(ngx_conf_t *cf);
char *ngx_nexus_kill_feature_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_nexus_kill_reload(ngx_cycle_t *cycle);
ngx_int_t ngx_nexus_kill_check(ngx_http_request_t *r);
ngx_uint_t ngx_nexus_kill_active(ngx_http_request_t *r, ngx_str_t *name);

/* the role a nexus_admin request needs (ngx_nexus_authz.c) */
ngx_uint_t ngx_nexus_authz_admin_role(ngx_http_request_t *r);

/* plans and entitlements (ngx_nexus_plan.c) */
ngx_int_t ngx_nexus_plan_init_statements(ngx_conf_t *cf);
ngx_int_t ngx_nexus_plan_check(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx);
ngx_int_t ngx_nexus_plan_admin(ngx_http_request_t *r, ngx_str_t *rest);
ngx_int_t ngx_nexus_plan_self_serve(ngx_http_request_t *r);

/* budgets and prices over HTTP (ngx_nexus_budget_admin.c) */
ngx_int_t ngx_nexus_budget_admin_init(ngx_conf_t *cf);
ngx_int_t ngx_nexus_budget_admin_costs(ngx_http_request_t *r,
    ngx_str_t *rest);
ngx_int_t ngx_nexus_budget_admin_key(ngx_http_request_t *r, ngx_str_t *id);

char *ngx_nexus_bulkhead_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_nexus_bulkhead_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_nexus_bulkhead_enter(ngx_http_request_t *r, ngx_uint_t cls);

ngx_uint_t ngx_nexus_route_class(ngx_http_request_t *r,
    ngx_nexus_loc_conf_t *nlcf);

char *ngx_nexus_pii_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_nexus_pii_check(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx);

ngx_int_t ngx_nexus_limit_init(ngx_conf_t *cf);
ngx_uint_t ngx_nexus_auth_has_scope(ngx_str_t *scopes, ngx_str_t *scope);
ngx_int_t ngx_nexus_auth_missing_scope(ngx_http_request_t *r,
    ngx_str_t *scope);
char *ngx_nexus_concurrency_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_nexus_lease_release(ngx_nexus_lease_t *lease);
ngx_int_t ngx_nexus_limit(ngx_http_request_t *r, ngx_nexus_ctx_t *ctx);
char *ngx_nexus_limit_rates_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* notifications (ngx_nexus_notify.c) and worker heartbeats */
char *ngx_nexus_seal_key_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_nexus_notify_init(ngx_conf_t *cf);
ngx_int_t ngx_nexus_notify_admin(ngx_http_request_t *r, ngx_str_t *rest);
ngx_int_t ngx_nexus_notify_ops(ngx_http_request_t *r);
ngx_int_t ngx_nexus_workers_init(ngx_conf_t *cf);


extern ngx_module_t  ngx_nexus_module;


#endif /* _NGX_NEXUS_MODULE_H_INCLUDED_ */
