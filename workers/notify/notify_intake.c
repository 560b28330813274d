/*
 * Copyright (C) Nexus authors
 *
 * Intake: entries of the event stream become delivery jobs.
 *
 * For a batch of entries: each is parsed (common/nx_notify.c); its
 * tenant's routes are read; the first enabled route that matches (in
 * priority order) gives the targets, its destinations in order; else the
 * tenant's enabled destinations; else the global fallback URLs.  The jobs of the whole
 * batch are inserted in one transaction (a job's dedupe key is the entry
 * id and the target, so inserting twice is harmless), and only then are
 * the entries acknowledged.  A batch that fails for a transient reason is
 * kept and tried again after a backoff, without being read again (so
 * Redis's delivery count keeps counting crashes, not outages).  An entry
 * that does not parse, names no tenant that exists, or was delivered more
 * than queue_max_attempts times is dead-lettered.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "nx_json.h"
#include "notify.h"


#define NOTIFY_TARGETS_MAX  32


typedef struct {
    int64_t          tenant_id;
    char            *tenant;        /* NULL: no such tenant */
    yajl_val         routes;
    yajl_val         destinations;
} notify_routing_t;


typedef struct {
    int64_t          destination_id;    /* 0: a fallback URL */
    const char      *url;
    int64_t          route_id;
} notify_target_t;


typedef struct {
    char            *values[11];
} notify_job_row_t;


typedef struct {
    notify_job_row_t  *rows;
    size_t             n;
    size_t             cap;
} notify_job_rows_t;


static int notify_process(nxw_batch_t *b);
static int notify_event(const nxw_entry_t *e, notify_routing_t **cache,
    size_t *ncache, notify_job_rows_t *rows, int *dead);
static notify_routing_t *notify_routing(int64_t tenant_id,
    notify_routing_t **cache, size_t *ncache);
static size_t notify_targets(const nx_notify_event_t *ev,
    const notify_routing_t *rt, notify_target_t *out);
static yajl_val notify_destination(const notify_routing_t *rt, int64_t id);
static int notify_add_row(notify_job_rows_t *rows,
    const nx_notify_event_t *ev, const notify_target_t *t,
    const char *payload, const char *sha);
static int notify_insert_rows(nxw_pg_t *pg, void *arg);
static void notify_rows_free(notify_job_rows_t *rows);
static void notify_cache_free(notify_routing_t *cache, size_t n);
static void notify_sha256_hex(const char *s, size_t len, char out[65]);


static nxw_queue_t   notify_queue;
static nxw_batch_t   notify_held;
static int           notify_holding;
static int64_t       notify_retry_at;
static int64_t       notify_retry_ms;
static int64_t       notify_next_reclaim;


int
notify_intake_init(void)
{
    nxw_queue_init(&notify_queue, &notify_conf.base, notify_conf.stream,
                   notify_conf.group);

    return notify_queue.dead ? 0 : -1;
}


int
notify_intake_busy(void)
{
    return notify_holding;
}


void
notify_intake(int64_t block_ms)
{
    int64_t      now;
    nxw_batch_t  b;

    now = nxw_mono_ms();

    if (notify_holding) {
        if (now < notify_retry_at) {
            if (block_ms > 0) {
                nxw_sleep_ms(notify_retry_at - now < block_ms
                             ? notify_retry_at - now : block_ms);
            }
            return;
        }

        if (notify_process(&notify_held) == 0) {
            nxw_batch_free(&notify_held);
            notify_holding = 0;
            notify_retry_ms = 0;

        } else {
            notify_retry_ms = notify_retry_ms ? notify_retry_ms * 2 : 100;
            if (notify_retry_ms > 5000) {
                notify_retry_ms = 5000;
            }
            notify_retry_at = nxw_mono_ms() + notify_retry_ms;
        }

        return;
    }

    /* the queue's timeouts follow SIGHUP */
    notify_queue.visibility_ms = notify_conf.base.visibility_timeout;
    notify_queue.max_attempts = notify_conf.base.queue_max_attempts;

    if (nxw_queue_read(&notify_redis, &notify_queue,
                       (size_t) notify_conf.batch, block_ms, &b)
        != 0)
    {
        /* Redis is down: do not spin while idle */
        nxw_sleep_ms(block_ms);
        return;
    }

    if (b.n == 0) {
        nxw_batch_free(&b);
        return;
    }

    if (notify_process(&b) == 0) {
        nxw_batch_free(&b);
        return;
    }

    notify_held = b;
    notify_holding = 1;
    notify_retry_ms = 100;
    notify_retry_at = nxw_mono_ms() + notify_retry_ms;
}


/* entries another consumer took and did not acknowledge in time */

void
notify_intake_reclaim(void)
{
    int64_t      now;
    nxw_batch_t  b;

    now = nxw_mono_ms();

    if (notify_holding || now < notify_next_reclaim) {
        return;
    }

    notify_next_reclaim = now + notify_conf.base.visibility_timeout / 2;

    if (nxw_queue_reclaim(&notify_redis, &notify_queue,
                          (size_t) notify_conf.batch, &b)
        != 0)
    {
        return;
    }

    if (b.n > 0 && notify_process(&b) != 0) {
        notify_held = b;
        notify_holding = 1;
        notify_retry_ms = 100;
        notify_retry_at = nxw_mono_ms() + notify_retry_ms;
        return;
    }

    /* more may wait behind this page: look again at the next turn */
    if (strcmp(notify_queue.cursor, "0-0") != 0) {
        notify_next_reclaim = now;
    }

    nxw_batch_free(&b);
}


void
notify_intake_free(void)
{
    if (notify_holding) {
        nxw_batch_free(&notify_held);
        notify_holding = 0;
    }

    nxw_queue_free(&notify_queue);
}


/* 0: every entry is done with; -1: try the batch again later */

static int
notify_process(nxw_batch_t *b)
{
    int                 rc, dead;
    size_t              i, nack, ncache;
    const char        **ids;
    nxw_log_t          *l;
    notify_routing_t   *cache;
    notify_job_rows_t   rows;

    memset(&rows, 0, sizeof(rows));
    cache = NULL;
    ncache = 0;
    nack = 0;
    rc = -1;

    ids = calloc(b->n, sizeof(char *));
    if (ids == NULL) {
        return -1;
    }

    for (i = 0; i < b->n; i++) {
        dead = 0;

        if (notify_event(&b->entries[i], &cache, &ncache, &rows, &dead)
            != 0)
        {
            goto done;
        }

        if (!dead) {
            ids[nack++] = b->entries[i].id;
        }
    }

    if (rows.n > 0) {
        rc = nxw_pg_transaction(&notify_pg, notify_insert_rows, &rows, 3);

        if (rc != 0) {
            rc = -1;
            goto done;
        }
    }

    /* the jobs are committed: now the entries may go */
    if (nxw_queue_ack(&notify_redis, &notify_queue, ids, nack) != 0) {
        rc = -1;
        goto done;
    }

    l = nxw_log(NXW_LOG_DEBUG, "events routed");
    nxw_log_int(l, "events", (int64_t) b->n);
    nxw_log_int(l, "jobs", (int64_t) rows.n);
    nxw_log_end(l);

    rc = 0;

done:

    free(ids);
    notify_rows_free(&rows);
    notify_cache_free(cache, ncache);

    return rc;
}


/*
 * One entry: its jobs are added to rows, or it is dead-lettered (*dead).
 * -1 when something transient failed.
 */

static int
notify_event(const nxw_entry_t *e, notify_routing_t **cache, size_t *ncache,
    notify_job_rows_t *rows, int *dead)
{
    int                 rc;
    char                err[256], reason[320], *payload, sha[65];
    size_t              i, n, len;
    nxw_log_t          *l;
    notify_target_t     targets[NOTIFY_TARGETS_MAX];
    notify_routing_t   *rt;
    nx_notify_event_t  *ev;
    nx_notify_field_t   fields[NX_NOTIFY_FIELDS_MAX + 16];

    if (e->deliveries > notify_conf.base.queue_max_attempts) {
        *dead = 1;
        return nxw_queue_dead(&notify_redis, &notify_pg, &notify_queue, e,
                              "max_attempts");
    }

    if (e->nfields > sizeof(fields) / sizeof(fields[0])) {
        *dead = 1;
        return nxw_queue_dead(&notify_redis, &notify_pg, &notify_queue, e,
                              "invalid: too many fields");
    }

    for (i = 0; i < e->nfields; i++) {
        fields[i].name = e->fields[i].name;
        fields[i].name_len = e->fields[i].name_len;
        fields[i].value = e->fields[i].value;
        fields[i].value_len = e->fields[i].value_len;
    }

    ev = malloc(sizeof(nx_notify_event_t));
    if (ev == NULL) {
        return -1;
    }

    if (nx_notify_event_parse(fields, e->nfields, ev, err, sizeof(err))
        != 0)
    {
        free(ev);
        (void) snprintf(reason, sizeof(reason), "invalid: %s", err);
        *dead = 1;
        return nxw_queue_dead(&notify_redis, &notify_pg, &notify_queue, e,
                              reason);
    }

    ev->id = e->id;
    rc = -1;
    payload = NULL;

    if (ev->tenant_id > 0) {
        rt = notify_routing(ev->tenant_id, cache, ncache);

        if (rt == NULL) {
            goto done;
        }

        if (rt->tenant == NULL) {
            *dead = 1;
            rc = nxw_queue_dead(&notify_redis, &notify_pg, &notify_queue, e,
                                "unknown_tenant");
            goto done;
        }

    } else {
        rt = NULL;
    }

    n = notify_targets(ev, rt, targets);

    if (n == 0) {
        l = nxw_log(NXW_LOG_INFO, "no destination for an event");
        nxw_log_str(l, "event_id", e->id);
        nxw_log_str(l, "event_type", ev->type);
        nxw_log_int(l, "tenant_id", ev->tenant_id);
        nxw_log_end(l);
        rc = 0;
        goto done;
    }

    payload = nx_notify_payload(ev, rt ? rt->tenant : NULL, &len);
    if (payload == NULL) {
        goto done;
    }

    notify_sha256_hex(payload, len, sha);

    for (i = 0; i < n; i++) {
        if (notify_add_row(rows, ev, &targets[i], payload, sha) != 0) {
            goto done;
        }
    }

    rc = 0;

done:

    free(payload);
    nx_notify_event_free(ev);
    free(ev);

    return rc;
}


/* the tenant's routing, read once per batch; NULL on a database failure */

static notify_routing_t *
notify_routing(int64_t tenant_id, notify_routing_t **cache, size_t *ncache)
{
    char               id[24], err[128];
    size_t             i;
    PGresult          *res;
    const char        *values[1];
    notify_routing_t  *rt, *c;

    for (i = 0; i < *ncache; i++) {
        if ((*cache)[i].tenant_id == tenant_id) {
            return &(*cache)[i];
        }
    }

    (void) snprintf(id, sizeof(id), "%lld", (long long) tenant_id);
    values[0] = id;

    res = nxw_pg_exec(&notify_pg, "notify_routing", 1, values);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res != NULL) {
            nxw_log_msg(NXW_LOG_ERROR, "cannot read the routes",
                        PQresultErrorMessage(res));
        }
        PQclear(res);
        return NULL;
    }

    c = realloc(*cache, (*ncache + 1) * sizeof(notify_routing_t));
    if (c == NULL) {
        PQclear(res);
        return NULL;
    }

    *cache = c;
    rt = &c[(*ncache)++];
    memset(rt, 0, sizeof(*rt));
    rt->tenant_id = tenant_id;

    if (PQntuples(res) == 1) {
        rt->tenant = strdup(PQgetvalue(res, 0, 0));
        rt->routes = nx_json_parse(PQgetvalue(res, 0, 1),
                                   PQgetlength(res, 0, 1), err, sizeof(err));
        rt->destinations = nx_json_parse(PQgetvalue(res, 0, 2),
                                         PQgetlength(res, 0, 2), err,
                                         sizeof(err));

        if (rt->tenant == NULL || rt->routes == NULL
            || rt->destinations == NULL)
        {
            PQclear(res);
            (*ncache)--;
            free(rt->tenant);
            if (rt->routes) {
                nx_json_free(rt->routes);
            }
            if (rt->destinations) {
                nx_json_free(rt->destinations);
            }
            return NULL;
        }
    }

    PQclear(res);

    return rt;
}


static size_t
notify_targets(const nx_notify_event_t *ev, const notify_routing_t *rt,
    notify_target_t *out)
{
    int         enabled;
    size_t      i, k, j, n;
    int64_t     id, rid;
    yajl_val    route, ids, d;
    const char *url;

    n = 0;

    if (rt != NULL && YAJL_IS_ARRAY(rt->routes)) {

        /*
         * The first route that matches takes the event, to all of its
         * destinations: a disabled one gets a job too, which goes to the
         * DLQ as destination_disabled (and can be replayed once it is
         * enabled again), rather than the event going elsewhere.
         */

        for (i = 0; i < rt->routes->u.array.len && n == 0; i++) {
            route = rt->routes->u.array.values[i];

            if (!nx_notify_match(nx_json_get(route, "match"), ev)) {
                continue;
            }

            ids = nx_json_get(route, "destinations");

            if (nx_json_int(nx_json_get(route, "id"), &rid) != 0
                || ids == NULL || !YAJL_IS_ARRAY(ids))
            {
                continue;
            }

            for (k = 0; k < ids->u.array.len && n < NOTIFY_TARGETS_MAX; k++) {
                if (nx_json_int(ids->u.array.values[k], &id) != 0) {
                    continue;
                }

                d = notify_destination(rt, id);

                /* a destination deleted since the route was written */
                if (d == NULL
                    || nx_json_string(nx_json_get(d, "url"), &url) != 0)
                {
                    continue;
                }

                for (j = 0; j < n && out[j].destination_id != id; j++) {
                    /* void */
                }

                if (j < n) {
                    continue;
                }

                out[n].destination_id = id;
                out[n].url = url;
                out[n].route_id = rid;
                n++;
            }
        }

        if (n > 0) {
            return n;
        }

        /* no route: every enabled destination of the tenant */

        for (i = 0; YAJL_IS_ARRAY(rt->destinations)
                    && i < rt->destinations->u.array.len
                    && n < NOTIFY_TARGETS_MAX; i++)
        {
            d = rt->destinations->u.array.values[i];

            if (nx_json_int(nx_json_get(d, "id"), &id) != 0
                || nx_json_bool(nx_json_get(d, "enabled"), &enabled) != 0
                || !enabled
                || nx_json_string(nx_json_get(d, "url"), &url) != 0)
            {
                continue;
            }

            out[n].destination_id = id;
            out[n].url = url;
            out[n].route_id = 0;
            n++;
        }

        if (n > 0) {
            return n;
        }
    }

    /* last, the global fallback URLs */

    for (i = 0; i < notify_state.nfallback; i++) {
        out[n].destination_id = 0;
        out[n].url = notify_state.fallback[i];
        out[n].route_id = 0;
        n++;
    }

    return n;
}


static yajl_val
notify_destination(const notify_routing_t *rt, int64_t id)
{
    size_t    i;
    int64_t   v;
    yajl_val  d;

    if (!YAJL_IS_ARRAY(rt->destinations)) {
        return NULL;
    }

    for (i = 0; i < rt->destinations->u.array.len; i++) {
        d = rt->destinations->u.array.values[i];

        if (nx_json_int(nx_json_get(d, "id"), &v) == 0 && v == id) {
            return d;
        }
    }

    return NULL;
}


static int
notify_add_row(notify_job_rows_t *rows, const nx_notify_event_t *ev,
    const notify_target_t *t, const char *payload, const char *sha)
{
    char              num[24], *key;
    size_t            len;
    notify_job_row_t  *r, *grown;

    if (rows->n == rows->cap) {
        rows->cap = rows->cap ? rows->cap * 2 : 64;
        grown = realloc(rows->rows, rows->cap * sizeof(notify_job_row_t));
        if (grown == NULL) {
            return -1;
        }
        rows->rows = grown;
    }

    r = &rows->rows[rows->n++];
    memset(r, 0, sizeof(*r));

    if (ev->tenant_id > 0) {
        (void) snprintf(num, sizeof(num), "%lld", (long long) ev->tenant_id);
        r->values[0] = strdup(num);
    }

    r->values[1] = strdup(t->destination_id ? "destination" : "fallback");

    if (t->destination_id) {
        (void) snprintf(num, sizeof(num), "%lld",
                        (long long) t->destination_id);
        r->values[2] = strdup(num);
    }

    r->values[3] = strdup(t->url);

    if (t->route_id) {
        (void) snprintf(num, sizeof(num), "%lld", (long long) t->route_id);
        r->values[4] = strdup(num);
    }

    r->values[5] = strdup(ev->id);
    r->values[6] = strdup(ev->type);
    r->values[7] = strdup(ev->severity);
    r->values[8] = strdup(payload);
    r->values[9] = strdup(sha);

    len = strlen(ev->id) + strlen(t->url) + 32;
    key = malloc(len);

    if (key != NULL) {
        if (t->destination_id) {
            (void) snprintf(key, len, "%s:d:%lld", ev->id,
                            (long long) t->destination_id);
        } else {
            (void) snprintf(key, len, "%s:u:%s", ev->id, t->url);
        }
    }

    r->values[10] = key;

    if (r->values[1] == NULL || r->values[3] == NULL || r->values[5] == NULL
        || r->values[6] == NULL || r->values[7] == NULL
        || r->values[8] == NULL || r->values[9] == NULL || key == NULL)
    {
        return -1;
    }

    return 0;
}


static int
notify_insert_rows(nxw_pg_t *pg, void *arg)
{
    size_t              i;
    PGresult           *res;
    notify_job_rows_t  *rows;

    rows = arg;

    for (i = 0; i < rows->n; i++) {
        res = nxw_pg_exec(pg, "notify_insert_job", 11,
                          (const char *const *) rows->rows[i].values);

        if (res == NULL) {
            return -1;
        }

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* the batch is kept and tried again; the log says why */
            nxw_log_msg(NXW_LOG_ERROR, "cannot insert a job",
                        PQresultErrorMessage(res));
            PQclear(res);
            return -1;
        }

        PQclear(res);
    }

    return 0;
}


static void
notify_rows_free(notify_job_rows_t *rows)
{
    size_t  i, k;

    for (i = 0; i < rows->n; i++) {
        for (k = 0; k < 11; k++) {
            free(rows->rows[i].values[k]);
        }
    }

    free(rows->rows);
    memset(rows, 0, sizeof(*rows));
}


static void
notify_cache_free(notify_routing_t *cache, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free(cache[i].tenant);

        if (cache[i].routes != NULL) {
            nx_json_free(cache[i].routes);
        }

        if (cache[i].destinations != NULL) {
            nx_json_free(cache[i].destinations);
        }
    }

    free(cache);
}


static void
notify_sha256_hex(const char *s, size_t len, char out[65])
{
    size_t         i;
    unsigned int   n;
    unsigned char  md[EVP_MAX_MD_SIZE];

    static const char  hex[] = "0123456789abcdef";

    if (EVP_Digest(s, len, md, &n, EVP_sha256(), NULL) != 1) {
        n = 0;
        memset(md, 0, 32);
    }

    for (i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }

    out[64] = '\0';
}
