
/*
 * Copyright (C) Nexus authors
 *
 * ABAC policy sets in each worker, and their check on the gateway.
 *
 * A tenant's set is every enabled rule of its policies and of the
 * platform-wide ones (authz_policies), compiled by nx_policy into one tree
 * on the tenant's first request and kept in the worker (an rbtree by
 * tenant id, least recently used dropped past NGX_NEXUS_ABAC_SETS), so a
 * request only evaluates.  Rule ids are made unique across policies by
 * the load query ("<policy id>/<n>"); the policy's name and the rule's own
 * id are kept beside the tree to name the rule that decided.
 *
 * Every change of a policy fires NOTIFY 'a:<tenant id>' ('a:0' for a
 * platform-wide one): the worker drops the tenant's set (every set), and
 * the next request loads it again, so a change holds fleet-wide as soon as
 * the notification arrives.  Whenever the LISTEN connection goes away or
 * comes back every set is dropped, and while nobody listens a set is kept
 * for NGX_NEXUS_ABAC_UNSURE only: a missed notification costs at most
 * that.  A load that was under way when a change arrived answers its
 * request but is not kept.
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_audit.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_abac.h"

#include <nx_name.h>


#define NGX_NEXUS_ABAC_SETS         4096
#define NGX_NEXUS_ABAC_UNSURE       1000
#define NGX_NEXUS_ABAC_RULES        1000


typedef struct {
    int64_t                     policy_id;
    ngx_str_t                   policy;
    ngx_str_t                   rule;
} ngx_nexus_abac_rule_t;


struct ngx_nexus_abac_set_s {
    ngx_rbtree_node_t           node;       /* key: the tenant id */
    ngx_queue_t                 queue;      /* most recently used first */
    nx_policy_t                *policy;     /* NULL: no rules */
    ngx_nexus_abac_rule_t      *rules;
    ngx_uint_t                  nrules;
    ngx_pool_t                 *pool;       /* the set and its names */
    ngx_msec_t                  loaded;
    unsigned                    cached:1;
    unsigned                    broken:1;   /* did not compile: deny */
};


typedef struct {
    ngx_http_request_t         *request;
    int64_t                     tenant_id;
    ngx_uint_t                  epoch;
    ngx_nexus_abac_pt           handler;
    void                       *data;
} ngx_nexus_abac_load_t;


typedef struct {
    ngx_str_t                   model;
    ngx_str_t                   action;
    ngx_uint_t                  stream;
    int64_t                     max_tokens;
    ngx_nexus_abac_done_pt      done;
} ngx_nexus_abac_gw_t;


static void ngx_nexus_abac_start(void);
static ngx_nexus_abac_set_t *ngx_nexus_abac_lookup(int64_t tenant_id);
static void ngx_nexus_abac_free(ngx_nexus_abac_set_t *set);
static void ngx_nexus_abac_flush(void);
static void ngx_nexus_abac_loaded(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static ngx_nexus_abac_set_t *ngx_nexus_abac_compile(ngx_http_request_t *r,
    PGresult *res);
static void ngx_nexus_abac_keep(ngx_nexus_abac_set_t *set,
    int64_t tenant_id);
static void ngx_nexus_abac_cleanup(void *data);
static void ngx_nexus_abac_gateway_loaded(ngx_http_request_t *r, void *data,
    ngx_nexus_abac_set_t *set, ngx_int_t rc);
static ngx_int_t ngx_nexus_abac_gateway_decide(ngx_http_request_t *r,
    ngx_nexus_abac_gw_t *gw, ngx_nexus_abac_set_t *set);
static void ngx_nexus_abac_own(ngx_http_request_t *r, const char *code);


static ngx_uint_t          ngx_nexus_abac_stmt;

/* the worker's sets */
static ngx_uint_t          ngx_nexus_abac_started;
static ngx_rbtree_t        ngx_nexus_abac_tree;
static ngx_rbtree_node_t   ngx_nexus_abac_sentinel;
static ngx_queue_t         ngx_nexus_abac_lru;
static ngx_uint_t          ngx_nexus_abac_nsets;
static ngx_uint_t          ngx_nexus_abac_epoch;
static ngx_uint_t          ngx_nexus_abac_listen;


static ngx_str_t  ngx_nexus_abac_model = ngx_string("model");


ngx_int_t
ngx_nexus_abac_init(ngx_conf_t *cf)
{
    /* one row per rule, in the order of the set compiled from them */
    return ngx_nexus_pg_statement(cf, "nexus_abac_load",
               "SELECT ((e.rule - 'id' - 'name')"
               " || jsonb_build_object('id', p.id || '/' || e.n))::text,"
               " p.id, p.name,"
               " coalesce(e.rule->>'id', e.rule->>'name', '')"
               " FROM authz_policies p"
               " CROSS JOIN LATERAL jsonb_array_elements(p.document)"
               " WITH ORDINALITY AS e(rule, n)"
               " WHERE p.enabled AND jsonb_typeof(e.rule) = 'object'"
               " AND (p.tenant_id = $1::bigint OR p.tenant_id IS NULL)"
               " ORDER BY p.id, e.n LIMIT 1001",
               1, &ngx_nexus_abac_stmt);
}


static void
ngx_nexus_abac_start(void)
{
    if (ngx_nexus_abac_started) {
        return;
    }

    ngx_rbtree_init(&ngx_nexus_abac_tree, &ngx_nexus_abac_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&ngx_nexus_abac_lru);
    ngx_nexus_abac_started = 1;
}


void
ngx_nexus_abac_changed(ngx_cycle_t *cycle, int64_t tenant_id)
{
    ngx_nexus_abac_set_t  *set;

    ngx_nexus_abac_start();
    ngx_nexus_abac_epoch++;

    /* 0: a platform-wide policy; anything unreadable: be safe */
    if (tenant_id <= 0) {
        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "nexus: platform policies changed, every set dropped");
        ngx_nexus_abac_flush();
        return;
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "nexus: policies of tenant %L changed", tenant_id);

    set = ngx_nexus_abac_lookup(tenant_id);
    if (set) {
        ngx_nexus_abac_free(set);
    }
}


void
ngx_nexus_abac_listening(ngx_cycle_t *cycle, ngx_uint_t on)
{
    ngx_nexus_abac_start();

    /* what changed while nobody listened is unknown */
    ngx_nexus_abac_epoch++;
    ngx_nexus_abac_listen = on;
    ngx_nexus_abac_flush();
}


static ngx_nexus_abac_set_t *
ngx_nexus_abac_lookup(int64_t tenant_id)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *node, *sentinel;

    key = (ngx_rbtree_key_t) tenant_id;
    node = ngx_nexus_abac_tree.root;
    sentinel = ngx_nexus_abac_tree.sentinel;

    while (node != sentinel) {
        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        return (ngx_nexus_abac_set_t *) node;
    }

    return NULL;
}


static void
ngx_nexus_abac_free(ngx_nexus_abac_set_t *set)
{
    if (set->cached) {
        ngx_rbtree_delete(&ngx_nexus_abac_tree, &set->node);
        ngx_queue_remove(&set->queue);
        ngx_nexus_abac_nsets--;
    }

    if (set->policy) {
        nx_policy_free(set->policy);
    }

    ngx_destroy_pool(set->pool);
}


static void
ngx_nexus_abac_flush(void)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(&ngx_nexus_abac_lru)) {
        q = ngx_queue_last(&ngx_nexus_abac_lru);
        ngx_nexus_abac_free(ngx_queue_data(q, ngx_nexus_abac_set_t, queue));
    }
}


ngx_int_t
ngx_nexus_abac_get(ngx_http_request_t *r, int64_t tenant_id,
    ngx_nexus_abac_pt handler, void *data, ngx_nexus_abac_set_t **set)
{
    ngx_nexus_ctx_t        *ctx;
    ngx_nexus_abac_set_t   *s;
    ngx_nexus_pg_query_t   *q;
    ngx_nexus_abac_load_t  *ld;

    ngx_nexus_abac_start();

    s = ngx_nexus_abac_lookup(tenant_id);

    if (s != NULL) {
        if (ngx_nexus_abac_listen
            || ngx_current_msec - s->loaded < NGX_NEXUS_ABAC_UNSURE)
        {
            ngx_queue_remove(&s->queue);
            ngx_queue_insert_head(&ngx_nexus_abac_lru, &s->queue);
            *set = s;
            return NGX_OK;
        }

        ngx_nexus_abac_free(s);
    }

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ld = ngx_palloc(r->pool, sizeof(ngx_nexus_abac_load_t));
    if (ld == NULL) {
        return NGX_ERROR;
    }

    ld->request = r;
    ld->tenant_id = tenant_id;
    ld->epoch = ngx_nexus_abac_epoch;
    ld->handler = handler;
    ld->data = data;

    q = ngx_nexus_pg_query(ngx_nexus_abac_stmt, NGX_INT64_LEN + 1);
    if (q == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_nexus_pg_param_int(q, tenant_id);

    q->handler = ngx_nexus_abac_loaded;
    q->data = ld;

    if (ngx_nexus_pg_send(q) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->pgq = q;
    ngx_nexus_wait(r);

    return NGX_AGAIN;
}


static void
ngx_nexus_abac_loaded(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    ngx_connection_t       *c;
    ngx_nexus_ctx_t        *ctx;
    ngx_pool_cleanup_t     *cln;
    ngx_http_request_t     *r;
    ngx_nexus_abac_set_t   *set;
    ngx_nexus_abac_load_t  *ld;

    ld = q->data;
    r = ld->request;
    c = r->connection;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ctx->pgq = NULL;

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "nexus: cannot load policies: %s",
                          PQresultErrorMessage(res));
        }

        ld->handler(r, ld->data, NULL, rc);
        goto done;
    }

    /* another request of the tenant may have loaded it meanwhile */
    set = NULL;

    if (ld->epoch == ngx_nexus_abac_epoch) {
        set = ngx_nexus_abac_lookup(ld->tenant_id);
    }

    if (set == NULL) {
        set = ngx_nexus_abac_compile(r, res);
        if (set == NULL) {
            ld->handler(r, ld->data, NULL, NGX_ERROR);
            goto done;
        }

        if (ld->epoch == ngx_nexus_abac_epoch) {
            ngx_nexus_abac_keep(set, ld->tenant_id);

        } else {
            /* stale already: for this request only */
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                ngx_nexus_abac_free(set);
                ld->handler(r, ld->data, NULL, NGX_ERROR);
                goto done;
            }

            cln->handler = ngx_nexus_abac_cleanup;
            cln->data = set;
        }
    }

    ld->handler(r, ld->data, set, NGX_OK);

done:

    ngx_http_run_posted_requests(c);
}


static ngx_nexus_abac_set_t *
ngx_nexus_abac_compile(ngx_http_request_t *r, PGresult *res)
{
    int                     i, n;
    char                    err[256];
    u_char                 *json, *p;
    size_t                  len;
    ngx_pool_t             *pool;
    nx_policy_opts_t        opts;
    ngx_nexus_abac_set_t   *set;
    ngx_nexus_abac_rule_t  *rule;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    set = ngx_pcalloc(pool, sizeof(ngx_nexus_abac_set_t));
    if (set == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    set->pool = pool;
    set->loaded = ngx_current_msec;

    n = PQntuples(res);

    if (n == 0) {
        return set;
    }

    if (n > NGX_NEXUS_ABAC_RULES || PQnfields(res) != 4) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus: more than %d policy rules apply to a tenant, "
                      "its requests are denied", NGX_NEXUS_ABAC_RULES);
        set->broken = 1;
        return set;
    }

    set->rules = ngx_pcalloc(pool, n * sizeof(ngx_nexus_abac_rule_t));
    if (set->rules == NULL) {
        goto failed;
    }

    set->nrules = n;
    len = 2;

    for (i = 0; i < n; i++) {
        len += PQgetlength(res, i, 0) + 1;

        rule = &set->rules[i];
        rule->policy_id = ngx_atoof((u_char *) PQgetvalue(res, i, 1),
                                    PQgetlength(res, i, 1));
        rule->policy.len = PQgetlength(res, i, 2);
        rule->rule.len = PQgetlength(res, i, 3);

        rule->policy.data = ngx_pnalloc(pool, rule->policy.len + 1);
        rule->rule.data = ngx_pnalloc(pool, rule->rule.len + 1);

        if (rule->policy.data == NULL || rule->rule.data == NULL) {
            goto failed;
        }

        ngx_cpystrn(rule->policy.data, (u_char *) PQgetvalue(res, i, 2),
                    rule->policy.len + 1);
        ngx_cpystrn(rule->rule.data, (u_char *) PQgetvalue(res, i, 3),
                    rule->rule.len + 1);
    }

    json = ngx_alloc(len, r->connection->log);
    if (json == NULL) {
        goto failed;
    }

    p = json;
    *p++ = '[';

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, PQgetvalue(res, i, 0), PQgetlength(res, i, 0));
    }

    *p++ = ']';

    ngx_memzero(&opts, sizeof(nx_policy_opts_t));
    opts.wildcards = nmcf->abac_wildcards ? 1 : 0;

    set->policy = nx_policy_compile((char *) json, p - json, &opts, err,
                                    sizeof(err));
    ngx_free(json);

    if (set->policy == NULL) {
        /* written through the admin API it compiled: the host changed */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus: the policies of a tenant do not compile, its "
                      "requests are denied: %s", err);
        set->broken = 1;
    }

    return set;

failed:

    ngx_destroy_pool(pool);

    return NULL;
}


static void
ngx_nexus_abac_keep(ngx_nexus_abac_set_t *set, int64_t tenant_id)
{
    ngx_queue_t           *q;
    ngx_nexus_abac_set_t  *old;

    old = ngx_nexus_abac_lookup(tenant_id);
    if (old) {
        ngx_nexus_abac_free(old);
    }

    if (ngx_nexus_abac_nsets >= NGX_NEXUS_ABAC_SETS) {
        q = ngx_queue_last(&ngx_nexus_abac_lru);
        ngx_nexus_abac_free(ngx_queue_data(q, ngx_nexus_abac_set_t, queue));
    }

    set->node.key = (ngx_rbtree_key_t) tenant_id;
    ngx_rbtree_insert(&ngx_nexus_abac_tree, &set->node);
    ngx_queue_insert_head(&ngx_nexus_abac_lru, &set->queue);
    ngx_nexus_abac_nsets++;
    set->cached = 1;
}


static void
ngx_nexus_abac_cleanup(void *data)
{
    ngx_nexus_abac_set_t *set = data;

    ngx_nexus_abac_free(set);
}


ngx_int_t
ngx_nexus_abac_decide(ngx_nexus_abac_set_t *set, ngx_str_t *rtype,
    ngx_str_t *action, nx_policy_ctx_t *pctx, ngx_nexus_abac_decision_t *d)
{
    int                     rc;
    nx_policy_decision_t    out;
    ngx_nexus_abac_rule_t  *rule;

    ngx_memzero(d, sizeof(ngx_nexus_abac_decision_t));
    d->effect = NGX_NEXUS_ABAC_DENY;

    if (set->broken) {
        d->error = "the policies do not compile";
        return NGX_ERROR;
    }

    if (set->policy == NULL) {
        return NGX_DECLINED;
    }

    rc = nx_policy_decide(set->policy, (char *) rtype->data, rtype->len,
                          (char *) action->data, action->len, pctx, &out);

    if (out.rule_id != NULL && out.rule < set->nrules) {
        rule = &set->rules[out.rule];
        d->policy = rule->policy;
        d->rule = rule->rule;
    }

    if (rc != 0) {
        d->error = out.error ? out.error : "the evaluation failed";
        return NGX_ERROR;
    }

    if (out.rule_id == NULL) {
        return NGX_DECLINED;
    }

    d->effect = (out.effect == NX_POLICY_ALLOW) ? NGX_NEXUS_ABAC_ALLOW
                                                : NGX_NEXUS_ABAC_DENY;

    return NGX_OK;
}


size_t
ngx_nexus_abac_attrs(ngx_http_request_t *r, nx_policy_attr_t *attrs)
{
    u_char             *p, *last, *comma;
    size_t              n, k;
    const char         *role;
    nx_policy_value_t  *scopes;
    ngx_nexus_ctx_t    *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    n = 0;

#define ngx_nexus_abac_str(nm, s)                                             \
    attrs[n].name = nm;                                                       \
    attrs[n].len = sizeof(nm) - 1;                                            \
    attrs[n].value.type = NX_POLICY_STRING;                                   \
    attrs[n].value.u.str.data = (const char *) (s)->data;                     \
    attrs[n].value.u.str.len = (s)->len;                                      \
    n++

    ngx_nexus_abac_str("principal.tenant", &ctx->principal.tenant);
    ngx_nexus_abac_str("principal.key_prefix", &ctx->principal.prefix);

    role = nx_role_name((int) ctx->principal.role);
    attrs[n].name = "principal.role";
    attrs[n].len = sizeof("principal.role") - 1;
    attrs[n].value.type = NX_POLICY_STRING;
    attrs[n].value.u.str.data = role;
    attrs[n].value.u.str.len = ngx_strlen(role);
    n++;

    attrs[n].name = "principal.platform";
    attrs[n].len = sizeof("principal.platform") - 1;
    attrs[n].value.type = NX_POLICY_BOOL;
    attrs[n].value.u.boolean = ctx->principal.platform ? 1 : 0;
    n++;

    /* the comma-separated scopes as an array */
    p = ctx->principal.scopes.data;
    last = p + ctx->principal.scopes.len;
    k = 0;

    scopes = ngx_palloc(r->pool, (ctx->principal.scopes.len / 2 + 1)
                                 * sizeof(nx_policy_value_t));

    while (scopes != NULL && p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma > p) {
            scopes[k].type = NX_POLICY_STRING;
            scopes[k].u.str.data = (const char *) p;
            scopes[k].u.str.len = comma - p;
            k++;
        }

        p = comma + 1;
    }

    attrs[n].name = "principal.scopes";
    attrs[n].len = sizeof("principal.scopes") - 1;
    attrs[n].value.type = NX_POLICY_ARRAY;
    attrs[n].value.u.arr.items = scopes;
    attrs[n].value.u.arr.n = k;
    n++;

    attrs[n].name = "request.time";
    attrs[n].len = sizeof("request.time") - 1;
    attrs[n].value.type = NX_POLICY_NUMBER;
    attrs[n].value.u.number = (double) ngx_time();
    n++;

    ngx_nexus_abac_str("request.ip", &r->connection->addr_text);

#undef ngx_nexus_abac_str

    return n;
}


/* the gateway */

ngx_int_t
ngx_nexus_abac_gateway(ngx_http_request_t *r, ngx_str_t *model,
    const char *action, ngx_uint_t stream, int64_t max_tokens,
    ngx_nexus_abac_done_pt done)
{
    ngx_int_t              rc;
    ngx_nexus_ctx_t       *ctx;
    ngx_nexus_abac_gw_t   *gw;
    ngx_nexus_abac_set_t  *set;
    ngx_nexus_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);

    if (!nlcf->abac) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    gw = ngx_palloc(r->pool, sizeof(ngx_nexus_abac_gw_t));
    if (gw == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    gw->model = *model;
    gw->action.data = (u_char *) action;
    gw->action.len = ngx_strlen(action);
    gw->stream = stream;
    gw->max_tokens = max_tokens;
    gw->done = done;

    rc = ngx_nexus_abac_get(r, ctx->principal.tenant_id,
                            ngx_nexus_abac_gateway_loaded, gw, &set);

    if (rc == NGX_OK) {
        return ngx_nexus_abac_gateway_decide(r, gw, set);
    }

    if (rc == NGX_AGAIN) {
        /* not NGX_AGAIN: that is also what sending an answer may return */
        return NGX_DONE;
    }

    ngx_nexus_abac_own(r, "DEPENDENCY_UNAVAILABLE");

    return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "DEPENDENCY_UNAVAILABLE",
                                "the policies cannot be checked, try again",
                                NULL);
}


static void
ngx_nexus_abac_gateway_loaded(ngx_http_request_t *r, void *data,
    ngx_nexus_abac_set_t *set, ngx_int_t rc)
{
    ngx_nexus_abac_gw_t *gw = data;

    r->read_event_handler = ngx_http_block_reading;

    if (rc != NGX_OK) {
        /* fail closed */
        ngx_nexus_abac_own(r, "DEPENDENCY_UNAVAILABLE");
        gw->done(r, ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "DEPENDENCY_UNAVAILABLE",
                                         "the policies cannot be checked, "
                                         "try again", NULL));
        return;
    }

    gw->done(r, ngx_nexus_abac_gateway_decide(r, gw, set));
}


static ngx_int_t
ngx_nexus_abac_gateway_decide(ngx_http_request_t *r, ngx_nexus_abac_gw_t *gw,
    ngx_nexus_abac_set_t *set)
{
    u_char                     *details, *p;
    size_t                      n;
    ngx_int_t                   rc;
    nx_policy_ctx_t             pctx;
    nx_policy_attr_t            attrs[16];
    ngx_nexus_ctx_t            *ctx;
    ngx_nexus_loc_conf_t       *nlcf;
    ngx_nexus_abac_decision_t   d;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_nexus_module);
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    n = ngx_nexus_abac_attrs(r, attrs);

    attrs[n].name = "resource.name";
    attrs[n].len = sizeof("resource.name") - 1;
    attrs[n].value.type = NX_POLICY_STRING;
    attrs[n].value.u.str.data = (const char *) gw->model.data;
    attrs[n].value.u.str.len = gw->model.len;
    n++;

    attrs[n].name = "request.stream";
    attrs[n].len = sizeof("request.stream") - 1;
    attrs[n].value.type = NX_POLICY_BOOL;
    attrs[n].value.u.boolean = gw->stream ? 1 : 0;
    n++;

    /* none given: missing, hence null */
    if (gw->max_tokens >= 0) {
        attrs[n].name = "request.max_tokens";
        attrs[n].len = sizeof("request.max_tokens") - 1;
        attrs[n].value.type = NX_POLICY_NUMBER;
        attrs[n].value.u.number = (double) gw->max_tokens;
        n++;
    }

    pctx.attrs = attrs;
    pctx.nattrs = n;
    pctx.lookup = NULL;
    pctx.data = NULL;

    rc = ngx_nexus_abac_decide(set, &ngx_nexus_abac_model, &gw->action,
                               &pctx, &d);

    if (rc == NGX_OK && d.effect == NGX_NEXUS_ABAC_ALLOW) {
        return NGX_DECLINED;
    }

    if (rc == NGX_DECLINED && nlcf->abac_default == NGX_NEXUS_ABAC_ALLOW) {
        return NGX_DECLINED;
    }

    /* names are [A-Za-z0-9_.:-], rule ids visible ASCII without '"', '\' */
    details = ngx_pnalloc(r->pool, sizeof("{\"policy\":\"\",\"rule\":\"\","
                                          "\"reason\":\"evaluation_failed\"}")
                                   + d.policy.len + d.rule.len);
    if (details == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = details;
    *p++ = '{';

    if (d.policy.len) {
        p = ngx_sprintf(p, "\"policy\":\"%V\",\"rule\":\"%V\"",
                        &d.policy, &d.rule);
    } else {
        p = ngx_sprintf(p, "\"policy\":null,\"rule\":null");
    }

    if (rc == NGX_ERROR) {
        p = ngx_sprintf(p, ",\"reason\":\"evaluation_failed\"");

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus: policy evaluation failed, denied: %s",
                      d.error);

    } else if (rc == NGX_DECLINED) {
        p = ngx_sprintf(p, ",\"reason\":\"default_deny\"");
    }

    /* the members alone for the audit log, then the object */
    *p = '\0';

    ngx_nexus_audit_request(r, ctx->principal.tenant_id,
                            "authz.policy.denied", NGX_NEXUS_AUDIT_FAILURE,
                            (char *) details + 1);

    *p++ = '}';
    *p = '\0';

    ngx_nexus_abac_own(r, "POLICY_DENIED");

    return ngx_nexus_send_error(r, NGX_HTTP_FORBIDDEN, "POLICY_DENIED",
                                d.policy.len
                                ? "the request is denied by policy"
                                : "no policy allows the request",
                                (char *) details);
}


/* the gateway answers in the Nexus envelope, not as a provider would */

static void
ngx_nexus_abac_own(ngx_http_request_t *r, const char *code)
{
    ngx_nexus_proxy_t  *px;

    px = ngx_nexus_proxy_get(r);

    if (px) {
        px->sent_own = 1;
        px->error_code = code;
    }
}
