
/*
 * Copyright (C) Nexus authors
 *
 * The API key cache in the shared zone: what a key hash resolved to, for
 * every worker of a node, with a TTL, a short negative TTL, and eviction
 * by prefix or tenant when PostgreSQL announces a change.
 */


#ifndef _NGX_NEXUS_KEYCACHE_H_INCLUDED_
#define _NGX_NEXUS_KEYCACHE_H_INCLUDED_


#include "ngx_nexus_module.h"


#define NGX_NEXUS_ZONE_SLOTS        8
#define NGX_NEXUS_SLOT_LIMITS       0
#define NGX_NEXUS_SLOT_KILLS        1
#define NGX_NEXUS_SLOT_BULKHEADS    2
#define NGX_NEXUS_SLOT_BREAKERS     3
#define NGX_NEXUS_SLOT_METRICS      4
#define NGX_NEXUS_SLOT_MODELS       5
#define NGX_NEXUS_SLOT_COSTS        6

#define NGX_NEXUS_KEY_MISS          0
#define NGX_NEXUS_KEY_FOUND         1
#define NGX_NEXUS_KEY_UNKNOWN       2   /* cached "no such key" */


typedef struct {
    int64_t                     key_id;
    int64_t                     tenant_id;
    int64_t                     expires_at;     /* ms since epoch, 0 never */
    u_char                      prefix[NX_KEY_PREFIX_LEN];
    u_char                      tenant_len;
    u_char                      scopes_len;
    u_char                      role;
    u_char                      revoked;
    u_char                      tenant_suspended;
    u_char                      platform;
    u_char                      tenant[NGX_NEXUS_TENANT_MAX];
    u_char                      scopes[NGX_NEXUS_SCOPES_MAX];
    uint32_t                    limits[NGX_NEXUS_LIMITS];
    int64_t                     quota[2];       /* daily, monthly; 0 none */
    uint16_t                    quota_soft;     /* permille */
    u_char                      quota_observe;
    int64_t                     budget[3];      /* daily, monthly, total */
    int64_t                     tpm[2];         /* key, tenant */
    int64_t                     guard[2];       /* max_prompt_bytes,
                                                   max_tokens; 0 none */
    u_char                      guard_pii_mode;
    u_char                      guard_pii_kinds;
    uint16_t                    models_len;
    u_char                      models[NGX_NEXUS_MODELS_MAX];
    uint16_t                    features_len;
    u_char                      features[NGX_NEXUS_FEATURES_MAX];
} ngx_nexus_key_data_t;


ngx_int_t ngx_nexus_keycache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

/*
 * NGX_NEXUS_KEY_FOUND with *out, NGX_NEXUS_KEY_UNKNOWN ("no such key",
 * with out->tenant_id the tenant of its prefix when that is a key's, or
 * 0) or NGX_NEXUS_KEY_MISS.
 */
ngx_uint_t ngx_nexus_keycache_lookup(ngx_shm_zone_t *zone,
    const u_char *hash, ngx_nexus_key_data_t *out);
uint64_t ngx_nexus_keycache_epoch(ngx_shm_zone_t *zone);
void ngx_nexus_keycache_insert(ngx_shm_zone_t *zone, const u_char *hash,
    ngx_nexus_key_data_t *data, ngx_msec_t ttl, uint64_t epoch);
void ngx_nexus_keycache_insert_unknown(ngx_shm_zone_t *zone,
    const u_char *hash, int64_t tenant_id, ngx_msec_t ttl, uint64_t epoch);

void ngx_nexus_keycache_evict_prefix(ngx_shm_zone_t *zone,
    const u_char *prefix, size_t len);
void ngx_nexus_keycache_evict_tenant(ngx_shm_zone_t *zone,
    int64_t tenant_id);
void ngx_nexus_keycache_flush(ngx_shm_zone_t *zone);
void ngx_nexus_keycache_listening(ngx_shm_zone_t *zone, ngx_uint_t on);

ngx_slab_pool_t *ngx_nexus_zone_shpool(ngx_shm_zone_t *zone);
void **ngx_nexus_zone_slot(ngx_shm_zone_t *zone, ngx_uint_t slot);


#endif /* _NGX_NEXUS_KEYCACHE_H_INCLUDED_ */
