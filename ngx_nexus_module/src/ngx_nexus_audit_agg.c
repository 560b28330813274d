
/*
 * Copyright (C) Nexus authors
 *
 * Audit events that can come in floods, aggregated per worker: failed
 * authentications, requests refused by a rate limit, and requests let
 * through without their limits when Redis is down (nexus_fail_mode open);
 * and, beside them, the successful authentication's, which is not.
 *
 * The table is common/nx_audit_agg.h: the first event of a (tenant,
 * actor, kind) is written at once with "count":1; the ones that follow
 * within the same second are counted, and when the second is over a timer
 * writes one event with their count and the details (request id, method,
 * path, members) of the first of them.  A flood of bad keys thus costs a
 * few events a second per worker, whatever its rate, and nothing is
 * asked of PostgreSQL on the request path.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_audit.h"

#include <nx_audit_agg.h>
#include <nx_json.h>
#include <nx_name.h>


typedef struct {
    const char                 *event_type;
    const char                 *outcome;
    const char                 *count;      /* the member that counts */
} ngx_nexus_audit_agg_type_t;


/* the details of the first event counted since the last one written */
typedef struct {
    ngx_str_t                   request_id;
    ngx_str_t                   metadata;   /* a JSON object */
    u_char                      data[1];
} ngx_nexus_audit_agg_first_t;


typedef struct {
    nx_audit_agg_t                agg;
    ngx_nexus_audit_agg_first_t  *first[NX_AUDIT_AGG_SLOTS];
    uint64_t                      lost_logged;
} ngx_nexus_audit_agg_table_t;


static void ngx_nexus_audit_agg_keep(ngx_http_request_t *r,
    ngx_nexus_audit_agg_table_t *t, size_t slot, const char *members);
static void ngx_nexus_audit_agg_timer(ngx_event_t *ev);
static void ngx_nexus_audit_agg_write(ngx_uint_t type,
    ngx_nexus_audit_agg_table_t *t, size_t slot, uint64_t count);
static void ngx_nexus_audit_agg_arm(void);
static u_char *ngx_nexus_audit_client(ngx_http_request_t *r,
    const char *name, const char *value);


static ngx_nexus_audit_agg_type_t  ngx_nexus_audit_agg_types[] = {
    { "auth.access.failure", NGX_NEXUS_AUDIT_FAILURE, "count" },
    { "security.rate_limited", NGX_NEXUS_AUDIT_FAILURE, "count" },
    { "system.rate_limit.degraded", NGX_NEXUS_AUDIT_FAILURE,
      "requests_allowed" },
};


static ngx_nexus_audit_agg_table_t  *ngx_nexus_audit_agg_tables;
static ngx_event_t                   ngx_nexus_audit_agg_ev;

/* timers log their connection's fd at debug level: give them one */
static ngx_connection_t  ngx_nexus_audit_agg_conn = {
    .fd = (ngx_socket_t) -1
};


ngx_int_t
ngx_nexus_audit_agg_init_process(ngx_cycle_t *cycle)
{
    ngx_nexus_audit_agg_tables = NULL;

    if (!ngx_nexus_audit_enabled()) {
        return NGX_OK;
    }

    ngx_nexus_audit_agg_tables = ngx_calloc(
        NGX_NEXUS_AUDIT_AGG_N * sizeof(ngx_nexus_audit_agg_table_t),
        cycle->log);
    if (ngx_nexus_audit_agg_tables == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&ngx_nexus_audit_agg_ev, sizeof(ngx_event_t));
    ngx_nexus_audit_agg_ev.handler = ngx_nexus_audit_agg_timer;
    ngx_nexus_audit_agg_ev.log = cycle->log;
    ngx_nexus_audit_agg_ev.data = &ngx_nexus_audit_agg_conn;

    return NGX_OK;
}


void
ngx_nexus_audit_agg_exit_process(ngx_cycle_t *cycle)
{
    size_t                        i;
    ngx_uint_t                    n;
    ngx_nexus_audit_agg_table_t  *t;

    if (ngx_nexus_audit_agg_tables == NULL) {
        return;
    }

    for (n = 0; n < NGX_NEXUS_AUDIT_AGG_N; n++) {
        t = &ngx_nexus_audit_agg_tables[n];

        for (i = 0; i < NX_AUDIT_AGG_SLOTS; i++) {
            if (t->first[i]) {
                ngx_free(t->first[i]);
            }
        }
    }

    ngx_free(ngx_nexus_audit_agg_tables);
    ngx_nexus_audit_agg_tables = NULL;
}


void
ngx_nexus_audit_aggregate(ngx_http_request_t *r, ngx_uint_t type,
    int64_t tenant_id, ngx_str_t *actor, const char *kind,
    const char *members)
{
    int                            folded;
    u_char                        *m;
    size_t                         slot, len;
    ngx_str_t                      who;
    nx_audit_agg_rc_t              rc;
    nx_audit_agg_slot_t           *s;
    ngx_nexus_audit_agg_type_t    *at;
    ngx_nexus_audit_agg_table_t   *t;

    if (ngx_nexus_audit_agg_tables == NULL) {
        return;
    }

    t = &ngx_nexus_audit_agg_tables[type];
    at = &ngx_nexus_audit_agg_types[type];

    rc = nx_audit_agg_hit(&t->agg, tenant_id, (char *) actor->data,
                          actor->len, kind, ngx_strlen(kind), ngx_time(),
                          &slot, &folded);

    switch (rc) {

    case NX_AUDIT_AGG_WRITE:
        s = &t->agg.slot[slot];

        len = ngx_strlen(members) + sizeof(",\"folded\":true,\"\":1")
              + ngx_strlen(at->count);

        m = ngx_pnalloc(r->pool, len);
        if (m == NULL) {
            return;
        }

        (void) ngx_sprintf(m, "%s%s,\"%s\":1%Z", members,
                           folded ? ",\"folded\":true" : "", at->count);

        who.data = (u_char *) s->actor;
        who.len = s->actor_len;

        ngx_nexus_audit_request_as(r, s->tenant_id, &who, at->event_type,
                                   at->outcome, (char *) m);
        return;

    case NX_AUDIT_AGG_FIRST:
        ngx_nexus_audit_agg_keep(r, t, slot, members);
        ngx_nexus_audit_agg_arm();
        return;

    default:
        /* counted, or lost and counted in the table: logged by the timer */
        return;
    }
}


/* the details of the first event counted, for the event written later */

static void
ngx_nexus_audit_agg_keep(ngx_http_request_t *r,
    ngx_nexus_audit_agg_table_t *t, size_t slot, const char *members)
{
    ngx_str_t                     id, meta;
    ngx_nexus_audit_agg_first_t  *f;

    if (ngx_nexus_request_id(r, &id) != NGX_OK) {
        ngx_str_null(&id);
    }

    if (ngx_nexus_audit_meta(r, members, &meta) != NGX_OK) {
        return;
    }

    if (t->first[slot]) {
        ngx_free(t->first[slot]);
    }

    f = ngx_alloc(offsetof(ngx_nexus_audit_agg_first_t, data) + id.len
                  + meta.len, ngx_cycle->log);

    t->first[slot] = f;

    if (f == NULL) {
        return;
    }

    f->request_id.data = f->data;
    f->request_id.len = id.len;
    f->metadata.data = ngx_cpymem(f->data, id.data, id.len);
    f->metadata.len = meta.len;
    ngx_memcpy(f->metadata.data, meta.data, meta.len);
}


static void
ngx_nexus_audit_agg_timer(ngx_event_t *ev)
{
    size_t                        slot;
    time_t                        now;
    uint64_t                      count;
    ngx_uint_t                    n;
    ngx_nexus_audit_agg_table_t  *t;

    now = ngx_time();

    for (n = 0; n < NGX_NEXUS_AUDIT_AGG_N; n++) {
        t = &ngx_nexus_audit_agg_tables[n];

        while (nx_audit_agg_due(&t->agg, now, &slot, &count)) {
            ngx_nexus_audit_agg_write(n, t, slot, count);
        }

        if (t->agg.lost != t->lost_logged) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "nexus audit: %uL %s events not recorded, too "
                          "many different ones at once",
                          t->agg.lost - t->lost_logged,
                          ngx_nexus_audit_agg_types[n].event_type);

            t->lost_logged = t->agg.lost;
        }
    }

    ngx_nexus_audit_agg_arm();
}


/* one event for count hits: the first one's details, and the count */

static void
ngx_nexus_audit_agg_write(ngx_uint_t type, ngx_nexus_audit_agg_table_t *t,
    size_t slot, uint64_t count)
{
    u_char                       *p;
    ngx_nexus_audit_event_t       ev;
    nx_audit_agg_slot_t          *s;
    ngx_nexus_audit_agg_first_t  *f;
    ngx_nexus_audit_agg_type_t   *at;
    u_char                        meta[NGX_NEXUS_AUDIT_AGG_META];

    s = &t->agg.slot[slot];
    f = t->first[slot];
    at = &ngx_nexus_audit_agg_types[type];

    ngx_memzero(&ev, sizeof(ngx_nexus_audit_event_t));

    p = meta;

    if (f && f->metadata.len < sizeof(meta) - 64) {
        ev.request_id = f->request_id;

        /* the object less its closing brace */
        p = ngx_cpymem(p, f->metadata.data, f->metadata.len - 1);
        *p++ = ',';

    } else {
        *p++ = '{';
    }

    if (s->folded) {
        p = ngx_cpymem(p, "\"folded\":true,",
                       sizeof("\"folded\":true,") - 1);
    }

    p = ngx_sprintf(p, "\"%s\":%uL}", at->count, count);

    ev.tenant_id = s->tenant_id;
    ev.actor.data = (u_char *) s->actor;
    ev.actor.len = s->actor_len;
    ev.event_type = at->event_type;
    ev.outcome = at->outcome;
    ev.metadata.data = meta;
    ev.metadata.len = p - meta;

    ngx_nexus_audit_emit(&ev);

    if (f) {
        ngx_free(f);
        t->first[slot] = NULL;
    }
}


/*
 * At the next second, while counts wait.  Not cancelable: an exiting
 * worker writes its counts before it goes, at most a second later.
 */

static void
ngx_nexus_audit_agg_arm(void)
{
    ngx_uint_t   n;
    ngx_time_t  *tp;

    if (ngx_nexus_audit_agg_ev.timer_set) {
        return;
    }

    for (n = 0; n < NGX_NEXUS_AUDIT_AGG_N; n++) {
        if (nx_audit_agg_pending(&ngx_nexus_audit_agg_tables[n].agg)) {
            break;
        }
    }

    if (n == NGX_NEXUS_AUDIT_AGG_N) {
        return;
    }

    tp = ngx_timeofday();

    ngx_add_timer(&ngx_nexus_audit_agg_ev, 1000 - tp->msec + 1);
}


void
ngx_nexus_audit_auth_failure(ngx_http_request_t *r, int64_t tenant_id,
    ngx_str_t *prefix, const char *reason)
{
    u_char  *members;

    if (ngx_nexus_audit_agg_tables == NULL) {
        return;
    }

    /* reasons are Nexus's own words */
    members = ngx_nexus_audit_client(r, "reason", reason);

    if (members) {
        ngx_nexus_audit_aggregate(r, NGX_NEXUS_AUDIT_AGG_AUTH, tenant_id,
                                  prefix, reason, (char *) members);
    }
}


void
ngx_nexus_audit_auth_success(ngx_http_request_t *r, int64_t tenant_id,
    ngx_uint_t role)
{
    u_char  *members;

    if (!ngx_nexus_audit_enabled()) {
        return;
    }

    members = ngx_nexus_audit_client(r, "role", nx_role_name((int) role));

    if (members) {
        ngx_nexus_audit_request(r, tenant_id, "auth.access.success",
                                NGX_NEXUS_AUDIT_SUCCESS, (char *) members);
    }
}


/* "<name>":"<value>","client":"<address>", in r's pool */

static u_char *
ngx_nexus_audit_client(ngx_http_request_t *r, const char *name,
    const char *value)
{
    u_char     *members, *p;
    ngx_str_t  *addr;

    addr = &r->connection->addr_text;

    members = ngx_pnalloc(r->pool, sizeof("\"\":\"\",\"client\":\"\"")
                                   + ngx_strlen(name) + ngx_strlen(value)
                                   + nx_json_escape_len((char *) addr->data,
                                                        addr->len));
    if (members == NULL) {
        return NULL;
    }

    p = ngx_sprintf(members, "\"%s\":\"%s\",\"client\":\"", name, value);
    p += nx_json_escape((char *) p, (char *) addr->data, addr->len);
    *p++ = '"';
    *p = '\0';

    return members;
}


void
ngx_nexus_audit_throttled(ngx_http_request_t *r, const char *unit,
    const char *scope, const char *route_class)
{
    u_char           *p;
    ngx_nexus_ctx_t  *ctx;
    u_char            kind[64], members[128];

    if (ngx_nexus_audit_agg_tables == NULL) {
        return;
    }

    ctx = ngx_http_get_module_ctx(r->main, ngx_nexus_module);

    /* units, scopes and classes are Nexus's own short words */
    p = ngx_snprintf(kind, sizeof(kind) - 1, "%s/%s/%s", unit, scope,
                     route_class);
    *p = '\0';

    p = ngx_snprintf(members, sizeof(members) - 1,
                     "\"unit\":\"%s\",\"scope\":\"%s\","
                     "\"route_class\":\"%s\"", unit, scope, route_class);
    *p = '\0';

    ngx_nexus_audit_aggregate(r, NGX_NEXUS_AUDIT_AGG_LIMITED,
                              ctx->principal.tenant_id,
                              &ctx->principal.prefix, (char *) kind,
                              (char *) members);
}
