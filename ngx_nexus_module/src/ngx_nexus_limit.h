
/*
 * Copyright (C) Nexus authors
 *
 * Rate limits: the decision shared by the Redis and the local paths.
 */


#ifndef _NGX_NEXUS_LIMIT_H_INCLUDED_
#define _NGX_NEXUS_LIMIT_H_INCLUDED_


#include "ngx_nexus_module.h"


/*
 * Lua: civil(day number) -> year, month and days(year, month) -> the day
 * number of the month's first day (proleptic Gregorian, UTC), shared by
 * the scripts that count quotas and the one that reads them.
 */
#define NGX_NEXUS_LUA_CALENDAR                                                \
    "local function civil(z)\n"                                               \
    "  z = z + 719468\n"                                                      \
    "  local era = math.floor(z / 146097)\n"                                  \
    "  local doe = z - era * 146097\n"                                        \
    "  local yoe = math.floor((doe - math.floor(doe / 1460)"                  \
    " + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)\n"         \
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4)"                    \
    " - math.floor(yoe / 100))\n"                                             \
    "  local mp = math.floor((5 * doy + 2) / 153)\n"                          \
    "  local m = mp < 10 and mp + 3 or mp - 9\n"                              \
    "  local y = yoe + era * 400\n"                                           \
    "  if m <= 2 then y = y + 1 end\n"                                        \
    "  return y, m\n"                                                         \
    "end\n"                                                                   \
    "local function days(y, m)\n"                                             \
    "  if m <= 2 then y = y - 1 end\n"                                        \
    "  local era = math.floor(y / 400)\n"                                     \
    "  local yoe = y - era * 400\n"                                           \
    "  local mp = m > 2 and m - 3 or m + 9\n"                                 \
    "  local doy = math.floor((153 * mp + 2) / 5)\n"                          \
    "  return era * 146097 + yoe * 365 + math.floor(yoe / 4)"                 \
    " - math.floor(yoe / 100) + doy - 719468\n"                               \
    "end\n"


typedef struct {
    unsigned                    allowed:1;
    unsigned                    tenant_scope:1;
    int64_t                     retry_ms;
    int64_t                     remaining;
} ngx_nexus_limit_result_t;


/*
 * The two buckets in the shared zone (no nexus_redis): rates[] is key rps,
 * key burst, tenant rps, tenant burst.  NGX_ERROR when the zone has no
 * room even after reclaiming idle buckets.
 */
ngx_int_t ngx_nexus_limit_local(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, const char *cls, ngx_uint_t *rates,
    ngx_nexus_limit_result_t *res);


/*
 * Tokens per minute in the shared zone (no nexus_redis): tpm[] is the
 * key's and the tenant's (0: none).  The first takes a worst case from
 * both buckets or neither (NGX_ERROR: no room in the zone); the second
 * gives back what was not used (a negative back charges an excess).
 */
ngx_int_t ngx_nexus_limit_local_tokens(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, int64_t *tpm, int64_t want,
    ngx_nexus_limit_result_t *res);
void ngx_nexus_limit_local_tokens_settle(ngx_shm_zone_t *zone,
    ngx_nexus_principal_t *pr, int64_t *tpm, int64_t back);


#endif /* _NGX_NEXUS_LIMIT_H_INCLUDED_ */
