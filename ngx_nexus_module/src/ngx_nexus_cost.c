
/*
 * Copyright (C) Nexus authors
 *
 * The pricing catalog and the tenants' cost settings, in the shared zone.
 *
 * A gateway request of a tenant with a cost budget or credits needs the
 * price of its model and the tenant's settings before Redis is asked to
 * reserve its worst case; a query to PostgreSQL per request would cost a
 * round trip and a connection.  So each worker loads both, in one query,
 * whenever it starts listening for notifications and whenever
 * model_prices or tenant_costs change (NOTIFY 'c:<table>' on nexus_keys,
 * migration 0013), and writes them to the shared zone, as kill switches
 * are.  Answers can arrive out of order (several workers, several
 * connections): each carries PostgreSQL's clock and the zone keeps only
 * the newest.
 *
 * A model's prices are loaded as its current version and every version
 * still to come, so that a version written ahead of its day takes effect
 * on the second, without a reload: a lookup takes the latest version that
 * is not in the future.
 *
 * Until the catalog has been loaded once on a node, nobody there can say
 * whether a tenant's requests cost anything: the lookup says so
 * (NGX_BUSY) and nexus_fail_mode decides, as for any check that cannot be
 * made.
 *
 * GET /v1/self-serve/costs/budget shows a tenant's admin its month: the
 * budget from the zone, the spend from Redis, as the X-Cost-* headers
 * compute them.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_keycache.h"
#include "ngx_nexus_cost.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_audit.h"


#define NGX_NEXUS_COST_DEGRADE      1
#define NGX_NEXUS_COST_UNPRICED     2
#define NGX_NEXUS_COST_CREDITS      4

/* rows loaded at most: beyond, the catalog is refused as a whole */
#define NGX_NEXUS_COST_PRICES_MAX   20000
#define NGX_NEXUS_COST_TENANTS_MAX  200000

/* $1e9 a month in micro-dollars, what tenant_costs accepts */
#define NGX_NEXUS_COST_USD_MAX      1000000000000000LL


typedef struct {
    int64_t                     from_ms;    /* effective from */
    int64_t                     price[2];   /* input, output */
    u_char                      len;
    u_char                      model[NX_LLM_MODEL_MAX];
} ngx_nexus_cost_price_t;


typedef struct {
    int64_t                     tenant_id;
    int64_t                     budget;
    uint16_t                    warn;
    u_char                      flags;
    u_char                      len;
    u_char                      degrade[NX_LLM_MODEL_MAX];
} ngx_nexus_cost_tenant_t;


typedef struct {
    int64_t                     loaded_us;
    ngx_uint_t                  nprices;
    ngx_nexus_cost_price_t     *prices;     /* by model, then from_ms */
    ngx_uint_t                  ntenants;
    ngx_nexus_cost_tenant_t    *tenants;    /* by tenant_id */
} ngx_nexus_cost_sh_t;


static void ngx_nexus_cost_loaded(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static ngx_int_t ngx_nexus_cost_row_price(PGresult *res, int i,
    ngx_nexus_cost_price_t *p);
static ngx_int_t ngx_nexus_cost_row_tenant(PGresult *res, int i,
    ngx_nexus_cost_tenant_t *t);
static void ngx_nexus_cost_store(ngx_cycle_t *cycle,
    ngx_nexus_main_conf_t *nmcf, int64_t loaded,
    ngx_nexus_cost_price_t *prices, ngx_uint_t nprices,
    ngx_nexus_cost_tenant_t *tenants, ngx_uint_t ntenants);
static ngx_uint_t ngx_nexus_cost_price(ngx_nexus_cost_sh_t *sh,
    u_char *model, size_t len, int64_t now_ms, int64_t *price);
static int ngx_nexus_cost_price_cmp(const void *a, const void *b);
static int ngx_nexus_cost_tenant_cmp(const void *a, const void *b);
static int ngx_nexus_cost_model_cmp(const u_char *a, size_t alen,
    const u_char *b, size_t blen);
static void ngx_nexus_cost_view_reply(ngx_http_request_t *r,
    redisReply *reply, ngx_int_t rc);


static ngx_uint_t  ngx_nexus_cost_stmt;

static ngx_nexus_redis_script_t  ngx_nexus_cost_view_script;


/*
 * The month of a tenant's costs, by Redis's clock, as the budget scripts
 * keep it (ngx_nexus_budget.c).  ARGV: cbase ("nx:cost:<tenant id>").
 * Returns the month ("YYYY-MM"), the micro-dollars settled and held, and
 * the ms until the month ends.
 */

static const char  ngx_nexus_cost_view_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    NGX_NEXUS_LUA_CALENDAR
    "local y, m = civil(math.floor(now / 86400000))\n"
    "local mon = string.format('%04d-%02d', y, m)\n"
    "local ny, nm = y, m + 1\n"
    "if nm > 12 then ny, nm = y + 1, 1 end\n"
    "local v = redis.call('HMGET', ARGV[1] .. ':m:' .. mon, 'used', 'res')\n"
    "return {mon, tonumber(v[1]) or 0, tonumber(v[2]) or 0,"
    " days(ny, nm) * 86400000 - now}\n";


/*
 * One row of the clock, then one per price ('p': model, input, output,
 * effective from in ms) and one per tenant ('t': degrade model, tenant
 * id, budget, warn ratio in permille, flags).
 */

static const char  ngx_nexus_cost_sql[] =
    "SELECT 'n', '', (extract(epoch FROM clock_timestamp()) * 1000000)"
    "::bigint, 0::bigint, 0::bigint, 0::bigint"
    " UNION ALL"
    " (SELECT 'p', p.model, p.input_nusd_per_1k, p.output_nusd_per_1k,"
    " (extract(epoch FROM p.effective_from) * 1000)::bigint, 0"
    " FROM model_prices p WHERE p.effective_from > now()"
    " OR p.effective_from = (SELECT max(q.effective_from) FROM model_prices q"
    " WHERE q.model = p.model AND q.effective_from <= now())"
    " LIMIT 20001)"
    " UNION ALL"
    " (SELECT 't', coalesce(c.degrade_model, ''), c.tenant_id,"
    " coalesce(c.monthly_budget_musd, 0), round(c.warn_ratio * 1000)::bigint,"
    " (CASE WHEN c.hard_cap_mode = 'degrade' THEN 1 ELSE 0 END)"
    " + (CASE WHEN c.allow_unpriced THEN 2 ELSE 0 END)"
    " + (CASE WHEN c.credits THEN 4 ELSE 0 END)"
    " FROM tenant_costs c"
    " WHERE c.monthly_budget_musd IS NOT NULL OR c.credits"
    " LIMIT 200001)";


ngx_int_t
ngx_nexus_cost_init(ngx_conf_t *cf)
{
    if (ngx_nexus_redis_script(cf, &ngx_nexus_cost_view_script,
                               ngx_nexus_cost_view_lua)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_pg_statement(cf, "nexus_cost_catalog",
                                  ngx_nexus_cost_sql, 0,
                                  &ngx_nexus_cost_stmt);
}


char *
ngx_nexus_cost_init_main_conf(ngx_conf_t *cf, ngx_nexus_main_conf_t *nmcf)
{
    if (nmcf->cost_degrade_tokens == NGX_CONF_UNSET) {
        nmcf->cost_degrade_tokens = NGX_NEXUS_COST_DEGRADE_TOKENS;
    }

    if (nmcf->cost_degrade_tokens <= 0
        || nmcf->cost_degrade_tokens > 99999999)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_cost_degrade_max_tokens\" must be "
                           "1..99999999");
        return NGX_CONF_ERROR;
    }

    /* the reference's defaults: a grant of at most $1000, $5000 a day */
    if (nmcf->credit_grant_max == NGX_CONF_UNSET) {
        nmcf->credit_grant_max = 1000LL * 1000000;
    }

    if (nmcf->credit_grant_daily == NGX_CONF_UNSET) {
        nmcf->credit_grant_daily = 5000LL * 1000000;
    }

    ngx_conf_init_msec_value(nmcf->credit_flush, 1000);

    return NGX_CONF_OK;
}


/* nexus_credit_grant_max USD; and the like: dollars, to micro-dollars */

char *
ngx_nexus_cost_usd_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    int64_t    *field;
    ngx_str_t  *value;

    field = (int64_t *) (p + cmd->offset);

    if (*field != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (nx_money_parse((char *) value[1].data, value[1].len, NX_MONEY_MICRO,
                       NGX_NEXUS_COST_USD_MAX, field)
        != 0 || *field == 0)
    {
        *field = NGX_CONF_UNSET;
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid amount \"%V\", dollars above 0 with at "
                           "most 6 decimals", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void
ngx_nexus_cost_reload(ngx_cycle_t *cycle)
{
    ngx_nexus_pg_query_t  *q;

    q = ngx_nexus_pg_query(ngx_nexus_cost_stmt, 0);
    if (q == NULL) {
        return;
    }

    q->handler = ngx_nexus_cost_loaded;
    q->data = cycle;

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "nexus: pricing catalog not reloaded, PostgreSQL is "
                      "unavailable; it will be at the next reconnect");
    }
}


static void
ngx_nexus_cost_loaded(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    int                       i, n;
    int64_t                   loaded;
    ngx_uint_t                np, nt;
    ngx_cycle_t              *cycle;
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_cost_price_t   *prices;
    ngx_nexus_cost_tenant_t  *tenants;

    cycle = q->data;

    if (rc != NGX_OK || PQnfields(res) != 6 || PQntuples(res) < 1
        || PQgetvalue(res, 0, 0)[0] != 'n')
    {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "nexus: cannot load the pricing catalog%s%s",
                      res ? ": " : "", res ? PQresultErrorMessage(res) : "");
        return;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_nexus_module);
    if (nmcf->shm_zone == NULL) {
        return;
    }

    loaded = ngx_atoof((u_char *) PQgetvalue(res, 0, 2),
                       PQgetlength(res, 0, 2));

    n = PQntuples(res);
    np = 0;
    nt = 0;

    for (i = 1; i < n; i++) {
        if (PQgetvalue(res, i, 0)[0] == 'p') {
            np++;

        } else {
            nt++;
        }
    }

    if (np > NGX_NEXUS_COST_PRICES_MAX || nt > NGX_NEXUS_COST_TENANTS_MAX) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "nexus: the pricing catalog is too large (at most %d "
                      "prices in effect and %d tenants with costs), kept "
                      "the one loaded before", NGX_NEXUS_COST_PRICES_MAX,
                      NGX_NEXUS_COST_TENANTS_MAX);
        return;
    }

    prices = ngx_alloc((np + 1) * sizeof(ngx_nexus_cost_price_t), cycle->log);
    tenants = ngx_alloc((nt + 1) * sizeof(ngx_nexus_cost_tenant_t),
                        cycle->log);

    if (prices == NULL || tenants == NULL) {
        goto done;
    }

    np = 0;
    nt = 0;

    for (i = 1; i < n; i++) {
        if (PQgetvalue(res, i, 0)[0] == 'p') {
            if (ngx_nexus_cost_row_price(res, i, &prices[np]) == NGX_OK) {
                np++;
            }

        } else if (ngx_nexus_cost_row_tenant(res, i, &tenants[nt]) == NGX_OK)
        {
            nt++;
        }
    }

    ngx_qsort(prices, np, sizeof(ngx_nexus_cost_price_t),
              ngx_nexus_cost_price_cmp);
    ngx_qsort(tenants, nt, sizeof(ngx_nexus_cost_tenant_t),
              ngx_nexus_cost_tenant_cmp);

    ngx_nexus_cost_store(cycle, nmcf, loaded, prices, np, tenants, nt);

done:

    if (prices) {
        ngx_free(prices);
    }

    if (tenants) {
        ngx_free(tenants);
    }
}


static ngx_int_t
ngx_nexus_cost_row_price(PGresult *res, int i, ngx_nexus_cost_price_t *p)
{
    int  len;

    len = PQgetlength(res, i, 1);

    /* the table's CHECK says as much; a longer name is never asked for */
    if (len == 0 || len > NX_LLM_MODEL_MAX) {
        return NGX_DECLINED;
    }

    p->len = (u_char) len;
    ngx_memcpy(p->model, PQgetvalue(res, i, 1), len);

    p->price[0] = ngx_atoof((u_char *) PQgetvalue(res, i, 2),
                            PQgetlength(res, i, 2));
    p->price[1] = ngx_atoof((u_char *) PQgetvalue(res, i, 3),
                            PQgetlength(res, i, 3));

    /* before 1970 is "since always": ngx_atoof() reads no sign */
    p->from_ms = (PQgetvalue(res, i, 4)[0] == '-')
                 ? 0 : ngx_atoof((u_char *) PQgetvalue(res, i, 4),
                                 PQgetlength(res, i, 4));

    if (p->price[0] < 0 || p->price[1] < 0 || p->from_ms < 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_cost_row_tenant(PGresult *res, int i, ngx_nexus_cost_tenant_t *t)
{
    int        len;
    ngx_int_t  warn, flags;

    len = PQgetlength(res, i, 1);

    if (len > NX_LLM_MODEL_MAX) {
        return NGX_DECLINED;
    }

    t->len = (u_char) len;
    ngx_memcpy(t->degrade, PQgetvalue(res, i, 1), len);

    t->tenant_id = ngx_atoof((u_char *) PQgetvalue(res, i, 2),
                             PQgetlength(res, i, 2));
    t->budget = ngx_atoof((u_char *) PQgetvalue(res, i, 3),
                          PQgetlength(res, i, 3));
    warn = ngx_atoi((u_char *) PQgetvalue(res, i, 4),
                    PQgetlength(res, i, 4));
    flags = ngx_atoi((u_char *) PQgetvalue(res, i, 5),
                     PQgetlength(res, i, 5));

    if (t->tenant_id <= 0 || t->budget < 0 || warn <= 0 || warn > 1000
        || flags < 0 || flags > 7)
    {
        return NGX_DECLINED;
    }

    t->warn = (uint16_t) warn;
    t->flags = (u_char) flags;

    return NGX_OK;
}


static void
ngx_nexus_cost_store(ngx_cycle_t *cycle, ngx_nexus_main_conf_t *nmcf,
    int64_t loaded, ngx_nexus_cost_price_t *prices, ngx_uint_t nprices,
    ngx_nexus_cost_tenant_t *tenants, ngx_uint_t ntenants)
{
    void                     **slot;
    ngx_slab_pool_t           *shpool;
    ngx_nexus_cost_sh_t       *sh;
    ngx_nexus_cost_price_t    *p;
    ngx_nexus_cost_tenant_t   *t;

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    ngx_shmtx_lock(&shpool->mutex);

    slot = ngx_nexus_zone_slot(nmcf->shm_zone, NGX_NEXUS_SLOT_COSTS);

    if (*slot == NULL) {
        *slot = ngx_slab_calloc_locked(shpool, sizeof(ngx_nexus_cost_sh_t));
    }

    sh = *slot;

    if (sh == NULL || loaded <= sh->loaded_us) {
        /* no room, or an older answer than the one we have */
        ngx_shmtx_unlock(&shpool->mutex);
        return;
    }

    p = NULL;
    t = NULL;

    if (nprices) {
        p = ngx_slab_alloc_locked(shpool,
                                  nprices * sizeof(ngx_nexus_cost_price_t));
    }

    if (ntenants) {
        t = ngx_slab_alloc_locked(shpool,
                                  ntenants * sizeof(ngx_nexus_cost_tenant_t));
    }

    if ((nprices && p == NULL) || (ntenants && t == NULL)) {
        if (p) {
            ngx_slab_free_locked(shpool, p);
        }

        if (t) {
            ngx_slab_free_locked(shpool, t);
        }

        ngx_shmtx_unlock(&shpool->mutex);

        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "nexus: no room in the zone for the pricing catalog "
                      "(%ui prices, %ui tenants), kept the one before",
                      nprices, ntenants);
        return;
    }

    if (nprices) {
        ngx_memcpy(p, prices, nprices * sizeof(ngx_nexus_cost_price_t));
    }

    if (ntenants) {
        ngx_memcpy(t, tenants, ntenants * sizeof(ngx_nexus_cost_tenant_t));
    }

    if (sh->prices) {
        ngx_slab_free_locked(shpool, sh->prices);
    }

    if (sh->tenants) {
        ngx_slab_free_locked(shpool, sh->tenants);
    }

    sh->loaded_us = loaded;
    sh->prices = p;
    sh->nprices = nprices;
    sh->tenants = t;
    sh->ntenants = ntenants;

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "nexus: pricing catalog reloaded, %ui prices, %ui tenants "
                  "with costs", nprices, ntenants);
}


ngx_int_t
ngx_nexus_cost_lookup(ngx_http_request_t *r, int64_t tenant_id,
    ngx_str_t *model, ngx_nexus_cost_t *c)
{
    u_char                    degrade[NX_LLM_MODEL_MAX];
    size_t                    len;
    int64_t                   now;
    ngx_int_t                 lo, hi, mid;
    ngx_time_t               *tp;
    ngx_slab_pool_t          *shpool;
    ngx_nexus_cost_sh_t      *sh;
    ngx_nexus_main_conf_t    *nmcf;
    ngx_nexus_cost_tenant_t  *t;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (nmcf->shm_zone == NULL) {
        return NGX_DECLINED;
    }

    ngx_memzero(c, sizeof(ngx_nexus_cost_t));

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    ngx_shmtx_lock(&shpool->mutex);

    sh = *ngx_nexus_zone_slot(nmcf->shm_zone, NGX_NEXUS_SLOT_COSTS);

    if (sh == NULL || sh->loaded_us == 0) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_BUSY;
    }

    t = NULL;
    lo = 0;
    hi = (ngx_int_t) sh->ntenants - 1;

    while (lo <= hi) {
        mid = (lo + hi) / 2;

        if (sh->tenants[mid].tenant_id == tenant_id) {
            t = &sh->tenants[mid];
            break;
        }

        if (sh->tenants[mid].tenant_id < tenant_id) {
            lo = mid + 1;

        } else {
            hi = mid - 1;
        }
    }

    if (t == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_DECLINED;
    }

    c->budget = t->budget;
    c->warn = t->warn;
    c->degrade = (t->flags & NGX_NEXUS_COST_DEGRADE) ? 1 : 0;
    c->unpriced = (t->flags & NGX_NEXUS_COST_UNPRICED) ? 1 : 0;
    c->credits = (t->flags & NGX_NEXUS_COST_CREDITS) ? 1 : 0;

    len = t->len;
    ngx_memcpy(degrade, t->degrade, len);

    c->priced = ngx_nexus_cost_price(sh, model->data, model->len, now,
                                     c->price);

    if (c->degrade && len) {
        c->degrade_priced = ngx_nexus_cost_price(sh, degrade, len, now,
                                                 c->degrade_price);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (c->degrade && len) {
        c->degrade_model.data = ngx_pnalloc(r->pool, len);
        if (c->degrade_model.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(c->degrade_model.data, degrade, len);
        c->degrade_model.len = len;

    } else {
        c->degrade = 0;
    }

    return NGX_OK;
}


/* the latest version of a model's price that is in effect at now_ms */

static ngx_uint_t
ngx_nexus_cost_price(ngx_nexus_cost_sh_t *sh, u_char *model, size_t len,
    int64_t now_ms, int64_t *price)
{
    int                      rc;
    ngx_int_t                lo, hi, mid;
    ngx_uint_t               i, found;
    ngx_nexus_cost_price_t  *p;

    if (len == 0 || len > NX_LLM_MODEL_MAX) {
        return 0;
    }

    /* the first version of the model */
    lo = 0;
    hi = (ngx_int_t) sh->nprices;

    while (lo < hi) {
        mid = (lo + hi) / 2;
        p = &sh->prices[mid];

        if (ngx_nexus_cost_model_cmp(p->model, p->len, model, len) < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    found = 0;

    for (i = lo; i < sh->nprices; i++) {
        p = &sh->prices[i];

        rc = ngx_nexus_cost_model_cmp(p->model, p->len, model, len);

        if (rc != 0 || p->from_ms > now_ms) {
            break;
        }

        price[0] = p->price[0];
        price[1] = p->price[1];
        found = 1;
    }

    return found;
}


static int
ngx_nexus_cost_price_cmp(const void *a, const void *b)
{
    int                            rc;
    const ngx_nexus_cost_price_t  *x = a, *y = b;

    rc = ngx_nexus_cost_model_cmp(x->model, x->len, y->model, y->len);

    if (rc != 0) {
        return rc;
    }

    return (x->from_ms > y->from_ms) - (x->from_ms < y->from_ms);
}


static int
ngx_nexus_cost_tenant_cmp(const void *a, const void *b)
{
    const ngx_nexus_cost_tenant_t  *x = a, *y = b;

    return (x->tenant_id > y->tenant_id) - (x->tenant_id < y->tenant_id);
}


static int
ngx_nexus_cost_model_cmp(const u_char *a, size_t alen, const u_char *b,
    size_t blen)
{
    int  rc;

    rc = ngx_memcmp(a, b, ngx_min(alen, blen));

    if (rc != 0) {
        return rc;
    }

    return (alen > blen) - (alen < blen);
}


/*
 * For /readyz: 0 while this node has not loaded the pricing catalog once
 * (gateway calls would be left to nexus_fail_mode), 1 once it has, or
 * when there is nothing to load (no shared zone, no PostgreSQL, no
 * provider).
 */

ngx_uint_t
ngx_nexus_cost_catalog_ready(ngx_http_request_t *r)
{
    ngx_uint_t              ready;
    ngx_slab_pool_t        *shpool;
    ngx_nexus_cost_sh_t    *sh;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (nmcf->shm_zone == NULL || nmcf->pg == NULL
        || nmcf->providers.nelts == 0)
    {
        return 1;
    }

    shpool = ngx_nexus_zone_shpool(nmcf->shm_zone);

    ngx_shmtx_lock(&shpool->mutex);

    sh = *ngx_nexus_zone_slot(nmcf->shm_zone, NGX_NEXUS_SLOT_COSTS);
    ready = (sh != NULL && sh->loaded_us != 0);

    ngx_shmtx_unlock(&shpool->mutex);

    return ready;
}


/*
 * GET /v1/self-serve/costs/budget: the caller's tenant's monthly cost
 * budget, spend, remaining and status, for its admin.  The settings are
 * the zone's, the spend Redis's: one round trip.
 */

ngx_int_t
ngx_nexus_cost_self_serve(ngx_http_request_t *r)
{
    u_char                 *p;
    ngx_int_t               rc;
    const char             *argv[1];
    size_t                  argvlen[1];
    ngx_str_t               none;
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_cost_t       *c;
    ngx_nexus_redis_cmd_t  *cmd;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (ctx->principal.role != NGX_NEXUS_ROLE_ADMIN) {
        ngx_nexus_audit_forbidden(r, "FORBIDDEN",
                                  "{\"required_role\":\"admin\"}");
        return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                    "the cost budget requires the admin "
                                    "role", "{\"required_role\":\"admin\"}");
    }

    ngx_nexus_audit_request(r, ctx->principal.tenant_id,
                            "selfserve.costs.viewed",
                            NGX_NEXUS_AUDIT_SUCCESS, NULL);

    c = ngx_pcalloc(r->pool, sizeof(ngx_nexus_cost_t));
    if (c == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&none);

    rc = ngx_nexus_cost_lookup(r, ctx->principal.tenant_id, &none, c);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_BUSY || !ngx_nexus_redis_configured()) {
        return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "DEPENDENCY_UNAVAILABLE",
                                    "the cost budget cannot be read now, "
                                    "try again", NULL);
    }

    /* NGX_DECLINED: no budget, no credits; c is zeroed, budget 0 */

    ctx->handler_ctx = c;

    p = ngx_pnalloc(r->pool, sizeof("nx:cost:") + NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = (const char *) p;
    argvlen[0] = ngx_sprintf(p, "nx:cost:%L", ctx->principal.tenant_id) - p;

    cmd = ngx_nexus_redis_eval(&ngx_nexus_cost_view_script, 0, 1, argv,
                               argvlen);

    /* the request stays alive until ngx_nexus_cost_view_reply() */
    r->main->count++;

    ngx_nexus_redis_ask(r, cmd, ngx_nexus_cost_view_reply);

    return NGX_DONE;
}


/*
 * The status, as X-Cost-Status between calls: "none" without a budget,
 * "capped" once the spend and what calls in flight hold leave nothing,
 * "warn" once the spend reaches the warn ratio, else "ok".
 */

static void
ngx_nexus_cost_view_reply(ngx_http_request_t *r, redisReply *reply,
    ngx_int_t rc)
{
    u_char            *buf, *p;
    int64_t            spend, held, remaining;
    ngx_str_t          tenant;
    const char        *status;
    ngx_nexus_ctx_t   *ctx;
    ngx_nexus_cost_t  *c;
    u_char             b[NX_MONEY_LEN], s[NX_MONEY_LEN], h[NX_MONEY_LEN];
    u_char             rem[NX_MONEY_LEN];

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    c = ctx->handler_ctx;
    r->read_event_handler = ngx_http_block_reading;

    if (rc != NGX_OK
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || reply->element[1]->type != REDIS_REPLY_INTEGER
        || reply->element[2]->type != REDIS_REPLY_INTEGER
        || reply->element[3]->type != REDIS_REPLY_INTEGER)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "DEPENDENCY_UNAVAILABLE",
                                 "the cost budget cannot be read now, "
                                 "try again", NULL));
        return;
    }

    if (ngx_nexus_json_escape(r->pool, &ctx->principal.tenant, &tenant)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    spend = ngx_max(reply->element[1]->integer, 0);
    held = ngx_max(reply->element[2]->integer, 0);
    remaining = ngx_max(c->budget - spend - held, 0);

    if (c->budget == 0) {
        status = "none";

    } else if (remaining == 0) {
        status = "capped";

    } else if (spend * 1000 >= c->budget * (int64_t) c->warn) {
        status = "warn";

    } else {
        status = "ok";
    }

    nx_money_format((char *) b, c->budget, NX_MONEY_MICRO);
    nx_money_format((char *) s, spend, NX_MONEY_MICRO);
    nx_money_format((char *) h, held, NX_MONEY_MICRO);
    nx_money_format((char *) rem, remaining, NX_MONEY_MICRO);

    buf = ngx_pnalloc(r->pool, tenant.len + 4 * NX_MONEY_LEN
                               + 3 * NGX_INT64_LEN + 320);
    if (buf == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(buf, "{\"tenant\":\"%V\",\"period\":\"month\","
                    "\"month\":\"%*s\",", &tenant,
                    reply->element[0]->len, reply->element[0]->str);

    if (c->budget) {
        p = ngx_sprintf(p, "\"budget_usd\":%s,\"warn_ratio\":%ui.%03ui,"
                        "\"hard_cap_mode\":\"%s\",", b, c->warn / 1000,
                        c->warn % 1000, c->degrade ? "degrade" : "block");

    } else {
        p = ngx_sprintf(p, "\"budget_usd\":null,\"warn_ratio\":null,"
                        "\"hard_cap_mode\":null,");
    }

    p = ngx_sprintf(p, "\"spend_usd\":%s,\"reserved_usd\":%s,", s, h);

    if (c->budget) {
        p = ngx_sprintf(p, "\"remaining_usd\":%s,", rem);

    } else {
        p = ngx_sprintf(p, "\"remaining_usd\":null,");
    }

    p = ngx_sprintf(p, "\"status\":\"%s\",\"resets_in_ms\":%L}", status,
                    ngx_max(reply->element[3]->integer, 0));

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_OK, buf, p - buf));
}
