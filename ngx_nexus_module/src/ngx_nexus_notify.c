
/*
 * Copyright (C) Nexus authors
 *
 * Webhook notifications, the module's side (nexus-notify delivers):
 *
 *   GET|POST     /v1/admin/notifications/destinations
 *   PATCH        /v1/admin/notifications/destinations/{id}
 *   GET|POST     /v1/admin/notifications/routes
 *   PATCH|DELETE /v1/admin/notifications/routes/{id}
 *   GET          /v1/admin/notifications/jobs[?status=&tenant=&limit=]
 *   GET          /v1/admin/notifications/jobs/{id}/attempts
 *   POST         /v1/admin/notifications/jobs/{id}/retry-now
 *   GET          /v1/admin/notifications/dlq[?tenant=&limit=]
 *   POST         /v1/admin/notifications/dlq/{id}/replay
 *   POST         /v1/admin/notifications/events       an event, XADDed
 *   GET          /v1/ops/notifications                 the summary
 *
 * and nexus_seal_key_file, the key that seals destination secrets.
 *
 * Like the rest of the admin API: the access phase required the admin
 * role; a tenant's admin sees and changes its own tenant only (the scope
 * is a parameter of every statement); PostgreSQL renders the JSON.  A
 * secret is sealed here (AES-256-GCM, the tenant id bound as AAD) before
 * it is sent to PostgreSQL, and no answer ever contains it: only
 * has_secret.  Header values whose names look like credentials are
 * answered as "[REDACTED]".
 */


#include "ngx_nexus_module.h"
#include "ngx_nexus_pg.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_reply.h"
#include "ngx_nexus_body.h"

#include <nx_json.h>
#include <nx_name.h>
#include <nx_notify.h>
#include <nx_seal.h>


#define NGX_NEXUS_NOTIFY_STREAM     "nx:events"
#define NGX_NEXUS_NOTIFY_PURPOSE    "webhook"
#define NGX_NEXUS_NOTIFY_URL_MAX    2048
#define NGX_NEXUS_NOTIFY_HEADERS    32
#define NGX_NEXUS_NOTIFY_DESTS      32
#define NGX_NEXUS_NOTIFY_LIMIT      1000

#define NGX_NEXUS_NOTIFY_TENANT         0
#define NGX_NEXUS_NOTIFY_DEST_LIST      1
#define NGX_NEXUS_NOTIFY_DEST_CREATE    2
#define NGX_NEXUS_NOTIFY_DEST_UPDATE    3
#define NGX_NEXUS_NOTIFY_ROUTE_LIST     4
#define NGX_NEXUS_NOTIFY_ROUTE_CREATE   5
#define NGX_NEXUS_NOTIFY_ROUTE_UPDATE   6
#define NGX_NEXUS_NOTIFY_ROUTE_DELETE   7
#define NGX_NEXUS_NOTIFY_JOB_LIST       8
#define NGX_NEXUS_NOTIFY_JOB_ATTEMPTS   9
#define NGX_NEXUS_NOTIFY_JOB_RETRY      10
#define NGX_NEXUS_NOTIFY_DLQ_LIST       11
#define NGX_NEXUS_NOTIFY_DLQ_REPLAY     12
#define NGX_NEXUS_NOTIFY_OPS            13
#define NGX_NEXUS_NOTIFY_NOPS           14

/* what waits for the tenant's id */
#define NGX_NEXUS_NOTIFY_THEN_CREATE    1
#define NGX_NEXUS_NOTIFY_THEN_UPDATE    2
#define NGX_NEXUS_NOTIFY_THEN_EVENT     3


typedef struct {
    ngx_uint_t                  op;
    ngx_uint_t                  then;
    ngx_str_t                   id;         /* from the path */
    ngx_str_t                   tenant;     /* a tenant's name */
    ngx_str_t                   json;       /* a patch, or the ops summary */
    ngx_str_t                   name;
    ngx_str_t                   url;
    ngx_str_t                   headers;
    ngx_str_t                   secret;     /* plain, until sealed */
    ngx_str_t                   event_type;
    ngx_str_t                   severity;
    ngx_str_t                   source;
    ngx_str_t                   category;
    ngx_str_t                   data;
    unsigned                    enabled:1;
    unsigned                    enabled_set:1;
    unsigned                    create:1;
    unsigned                    has_secret:1;
    unsigned                    platform_event:1;
} ngx_nexus_notify_ctx_t;


static ngx_int_t ngx_nexus_notify_id(ngx_str_t *s, ngx_uint_t uuid);
static ngx_nexus_notify_ctx_t *ngx_nexus_notify_ctx(ngx_http_request_t *r);
static ngx_nexus_pg_query_t *ngx_nexus_notify_prepare(ngx_http_request_t *r,
    ngx_uint_t op, size_t size);
static void ngx_nexus_notify_done(ngx_nexus_pg_query_t *q, PGresult *res,
    ngx_int_t rc);
static ngx_int_t ngx_nexus_notify_result(ngx_http_request_t *r,
    ngx_nexus_notify_ctx_t *nctx, PGresult *res);
static void ngx_nexus_notify_invalid(ngx_http_request_t *r,
    const char *message);
static ngx_int_t ngx_nexus_notify_arg(ngx_http_request_t *r, ngx_str_t *tenant,
    ngx_str_t *status, int64_t *limit, ngx_int_t *rc);
static ngx_int_t ngx_nexus_notify_list(ngx_http_request_t *r, ngx_uint_t op);
static void ngx_nexus_notify_dest_body(ngx_http_request_t *r, yajl_val v);
static ngx_int_t ngx_nexus_notify_dest_fields(ngx_http_request_t *r,
    yajl_val v, ngx_nexus_notify_ctx_t *nctx, ngx_uint_t create);
static ngx_int_t ngx_nexus_notify_lookup(ngx_http_request_t *r,
    ngx_uint_t then);
static ngx_int_t ngx_nexus_notify_dest_write(ngx_http_request_t *r,
    int64_t tenant_id);
static ngx_int_t ngx_nexus_notify_seal(ngx_http_request_t *r,
    int64_t tenant_id, ngx_str_t *hex);
static void ngx_nexus_notify_route_body(ngx_http_request_t *r, yajl_val v);
static ngx_int_t ngx_nexus_notify_by_id(ngx_http_request_t *r, ngx_uint_t op);
static void ngx_nexus_notify_event_body(ngx_http_request_t *r, yajl_val v);
static ngx_int_t ngx_nexus_notify_event_send(ngx_http_request_t *r,
    int64_t tenant_id);
static void ngx_nexus_notify_event_done(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static void ngx_nexus_notify_ops_redis(ngx_http_request_t *r);
static void ngx_nexus_notify_ops_reply(ngx_http_request_t *r,
    redisReply *reply, ngx_int_t rc);
static ngx_int_t ngx_nexus_notify_string(yajl_val v, size_t min, size_t max,
    ngx_str_t *out);
static ngx_int_t ngx_nexus_notify_url_valid(ngx_str_t *url);
static ngx_int_t ngx_nexus_notify_header_name(const char *name);
static ngx_int_t ngx_nexus_notify_canonical(ngx_http_request_t *r,
    yajl_val v, ngx_str_t *out);


static ngx_uint_t                ngx_nexus_notify_stmts[NGX_NEXUS_NOTIFY_NOPS];
static ngx_nexus_redis_script_t  ngx_nexus_notify_ops_script;


#define NGX_NEXUS_DEST_JSON                                                   \
    "json_build_object('id', d.id, 'tenant', t.name, 'name', d.name,"        \
    " 'url', d.url, 'headers_json', (SELECT coalesce(jsonb_object_agg(h.k,"  \
    " CASE WHEN lower(h.k) ~ '(auth|token|secret|key|password|cookie|"       \
    "signature|session)' THEN to_jsonb('[REDACTED]'::text) ELSE h.v END),"   \
    " '{}'::jsonb) FROM jsonb_each(d.headers) AS h(k, v)),"                  \
    " 'has_secret', d.secret_sealed IS NOT NULL, 'enabled', d.enabled,"      \
    " 'disabled_reason', d.disabled_reason, 'disabled_at', d.disabled_at,"   \
    " 'created_at', d.created_at, 'updated_at', d.updated_at)"

#define NGX_NEXUS_ROUTE_JSON                                                  \
    "json_build_object('id', r.id, 'tenant', t.name, 'name', r.name,"        \
    " 'enabled', r.enabled, 'priority', r.priority, 'match_json', r.match,"  \
    " 'destinations_json', (SELECT coalesce(json_agg(json_build_object("     \
    "'destination_id', x.id) ORDER BY x.o), '[]') FROM"                      \
    " unnest(r.destination_ids) WITH ORDINALITY AS x(id, o)),"               \
    " 'created_at', r.created_at, 'updated_at', r.updated_at)"

#define NGX_NEXUS_JOB_JSON                                                    \
    "json_build_object('id', j.id, 'tenant', t.name, 'kind', j.kind,"        \
    " 'destination_id', j.destination_id,"                                   \
    " 'url', CASE WHEN j.kind = 'destination' THEN j.url END,"               \
    " 'route_id', j.route_id, 'event_id', j.event_id,"                       \
    " 'event_type', j.event_type, 'severity', j.severity,"                   \
    " 'status', j.status, 'attempts', j.attempts,"                           \
    " 'next_attempt_at', j.next_attempt_at, 'last_status', j.last_status,"   \
    " 'last_error', j.last_error, 'payload_sha256', j.payload_sha256,"       \
    " 'replay_of', j.replay_of, 'created_at', j.created_at,"                 \
    " 'updated_at', j.updated_at, 'delivered_at', j.delivered_at)"

/* a fallback receiver's answer is the platform's, not the tenant's */
#define NGX_NEXUS_ATTEMPT_JSON                                                \
    "json_build_object('attempt', a.attempt, 'started_at', a.started_at,"    \
    " 'duration_ms', a.duration_ms, 'outcome', a.outcome,"                   \
    " 'http_status', a.http_status, 'error', a.error,"                       \
    " 'response_body', CASE WHEN j.kind = 'destination'"                     \
    " OR $2::bigint = 0 THEN a.response_body END,"                           \
    " 'payload_sha256', a.payload_sha256, 'worker', a.worker)"

#define NGX_NEXUS_DLQ_JSON                                                    \
    "json_build_object('id', q.id, 'job_id', q.job_id, 'tenant', t.name,"    \
    " 'reason', q.reason, 'last_error', q.last_error,"                       \
    " 'event_type', j.event_type, 'destination_id', j.destination_id,"       \
    " 'attempts', j.attempts, 'created_at', q.created_at,"                   \
    " 'replayed_at', q.replayed_at, 'replay_job_id', q.replay_job_id)"

/* "" means none: the pool's parameters cannot be NULL */
#define NGX_NEXUS_SCOPE(n)                                                    \
    "($" #n "::bigint = 0 OR %s = $" #n "::bigint)"


static const ngx_nexus_pg_sql_t  ngx_nexus_notify_sql[NGX_NEXUS_NOTIFY_NOPS] = {

    /* $1 name or '', $2 scope, $3 destination id or 0 */
    { "nexus_notify_tenant",
      "SELECT t.id FROM tenants t"
      " WHERE (($3::bigint = 0 AND t.name = $1)"
      " OR ($3::bigint <> 0 AND t.id = (SELECT d.tenant_id"
      " FROM notify_destinations d WHERE d.id = $3::bigint)))"
      " AND ($2::bigint = 0 OR t.id = $2::bigint)",
      3 },

    /* $1 scope, $2 tenant or '' */
    { "nexus_notify_dest_list",
      "SELECT coalesce(json_agg(" NGX_NEXUS_DEST_JSON " ORDER BY d.id),"
      " '[]')::text FROM notify_destinations d"
      " JOIN tenants t ON t.id = d.tenant_id"
      " WHERE ($1::bigint = 0 OR d.tenant_id = $1::bigint)"
      " AND ($2 = '' OR t.name = $2)",
      2 },

    /* $1 scope, $2 tenant, $3 name, $4 url, $5 headers, $6 sealed hex,
     * $7 enabled */
    { "nexus_notify_dest_create",
      "WITH t AS (SELECT id, name FROM tenants WHERE name = $2"
      " AND ($1::bigint = 0 OR id = $1::bigint)),"
      " d AS (INSERT INTO notify_destinations (tenant_id, name, url,"
      " headers, secret_sealed, enabled)"
      " SELECT t.id, NULLIF($3, ''), $4, $5::jsonb,"
      " CASE WHEN $6 = '' THEN NULL ELSE decode($6, 'hex') END,"
      " $7::boolean FROM t RETURNING *)"
      " SELECT (SELECT " NGX_NEXUS_DEST_JSON "::text FROM d"
      " JOIN t ON t.id = d.tenant_id), EXISTS (SELECT 1 FROM t)",
      7 },

    /* $1 id, $2 scope, $3 patch: url, name, headers, secret (hex or
     * null), enabled */
    { "nexus_notify_dest_update",
      "WITH p AS (SELECT $3::jsonb AS j),"
      " d AS (UPDATE notify_destinations d SET"
      " url = coalesce(p.j->>'url', d.url),"
      " name = CASE WHEN p.j ? 'name' THEN p.j->>'name' ELSE d.name END,"
      " headers = coalesce(p.j->'headers', d.headers),"
      " secret_sealed = CASE WHEN p.j ? 'secret'"
      " THEN decode(p.j->>'secret', 'hex') ELSE d.secret_sealed END,"
      " enabled = coalesce((p.j->>'enabled')::boolean, d.enabled),"
      " disabled_reason = CASE WHEN (p.j->>'enabled')::boolean THEN NULL"
      " WHEN NOT (p.j->>'enabled')::boolean AND d.enabled THEN 'admin'"
      " ELSE d.disabled_reason END,"
      " disabled_at = CASE WHEN (p.j->>'enabled')::boolean THEN NULL"
      " WHEN NOT (p.j->>'enabled')::boolean AND d.enabled THEN now()"
      " ELSE d.disabled_at END,"
      " updated_at = now() FROM p"
      " WHERE d.id = $1::bigint"
      " AND ($2::bigint = 0 OR d.tenant_id = $2::bigint) RETURNING d.*)"
      " SELECT " NGX_NEXUS_DEST_JSON "::text FROM d"
      " JOIN tenants t ON t.id = d.tenant_id",
      3 },

    /* $1 scope, $2 tenant or '' */
    { "nexus_notify_route_list",
      "SELECT coalesce(json_agg(" NGX_NEXUS_ROUTE_JSON
      " ORDER BY t.name, r.priority, r.id), '[]')::text"
      " FROM notify_routes r JOIN tenants t ON t.id = r.tenant_id"
      " WHERE ($1::bigint = 0 OR r.tenant_id = $1::bigint)"
      " AND ($2 = '' OR t.name = $2)",
      2 },

    /* $1 scope, $2 tenant, $3 name, $4 enabled, $5 priority, $6 match,
     * $7 destination ids "1,2,3" (distinct) */
    { "nexus_notify_route_create",
      "WITH t AS (SELECT id, name FROM tenants WHERE name = $2"
      " AND ($1::bigint = 0 OR id = $1::bigint)),"
      " ids AS (SELECT string_to_array($7, ',')::bigint[] AS a),"
      " ok AS (SELECT t.id FROM t, ids WHERE (SELECT count(*)"
      " FROM notify_destinations x WHERE x.tenant_id = t.id"
      " AND x.id = ANY (ids.a)) = cardinality(ids.a)),"
      " r AS (INSERT INTO notify_routes (tenant_id, name, enabled,"
      " priority, match, destination_ids)"
      " SELECT ok.id, $3, $4::boolean, $5::integer, $6::jsonb, ids.a"
      " FROM ok, ids RETURNING *)"
      " SELECT (SELECT " NGX_NEXUS_ROUTE_JSON "::text FROM r"
      " JOIN t ON t.id = r.tenant_id), EXISTS (SELECT 1 FROM t)",
      7 },

    /* $1 id, $2 scope, $3 patch: name, enabled, priority, match,
     * destinations (an array of distinct ids) */
    { "nexus_notify_route_update",
      "WITH p AS (SELECT $3::jsonb AS j),"
      " r0 AS (SELECT r.* FROM notify_routes r WHERE r.id = $1::bigint"
      " AND ($2::bigint = 0 OR r.tenant_id = $2::bigint)),"
      " ids AS (SELECT CASE WHEN p.j ? 'destinations' THEN ARRAY(SELECT"
      " jsonb_array_elements_text(p.j->'destinations')::bigint) END AS a"
      " FROM p),"
      " ok AS (SELECT r0.id FROM r0, ids WHERE ids.a IS NULL"
      " OR (SELECT count(*) FROM notify_destinations x"
      " WHERE x.tenant_id = r0.tenant_id AND x.id = ANY (ids.a))"
      " = cardinality(ids.a)),"
      " r AS (UPDATE notify_routes r SET"
      " name = coalesce(p.j->>'name', r.name),"
      " enabled = coalesce((p.j->>'enabled')::boolean, r.enabled),"
      " priority = coalesce((p.j->>'priority')::integer, r.priority),"
      " match = coalesce(p.j->'match', r.match),"
      " destination_ids = coalesce(ids.a, r.destination_ids),"
      " updated_at = now() FROM p, ids, ok WHERE r.id = ok.id RETURNING r.*)"
      " SELECT (SELECT " NGX_NEXUS_ROUTE_JSON "::text FROM r"
      " JOIN tenants t ON t.id = r.tenant_id), EXISTS (SELECT 1 FROM r0)",
      3 },

    /* $1 id, $2 scope */
    { "nexus_notify_route_delete",
      "WITH r AS (DELETE FROM notify_routes r WHERE r.id = $1::bigint"
      " AND ($2::bigint = 0 OR r.tenant_id = $2::bigint) RETURNING r.*)"
      " SELECT " NGX_NEXUS_ROUTE_JSON "::text FROM r"
      " JOIN tenants t ON t.id = r.tenant_id",
      2 },

    /* $1 scope, $2 status or '', $3 tenant or '', $4 limit */
    { "nexus_notify_job_list",
      "SELECT coalesce(json_agg(" NGX_NEXUS_JOB_JSON
      " ORDER BY j.seq DESC), '[]')::text"
      " FROM (SELECT j.* FROM notify_jobs j"
      " LEFT JOIN tenants t ON t.id = j.tenant_id"
      " WHERE ($1::bigint = 0 OR j.tenant_id = $1::bigint)"
      " AND ($2 = '' OR j.status = $2) AND ($3 = '' OR t.name = $3)"
      " ORDER BY j.seq DESC LIMIT $4::integer) j"
      " LEFT JOIN tenants t ON t.id = j.tenant_id",
      4 },

    /* $1 job id, $2 scope */
    { "nexus_notify_job_attempts",
      "SELECT json_build_object('job', " NGX_NEXUS_JOB_JSON ","
      " 'attempts', (SELECT coalesce(json_agg(" NGX_NEXUS_ATTEMPT_JSON
      " ORDER BY a.attempt, a.id), '[]') FROM notify_attempts a"
      " WHERE a.job_id = j.id))::text"
      " FROM notify_jobs j LEFT JOIN tenants t ON t.id = j.tenant_id"
      " WHERE j.id = $1::uuid AND ($2::bigint = 0 OR j.tenant_id = $2::bigint)",
      2 },

    /* $1 job id, $2 scope */
    { "nexus_notify_job_retry",
      "WITH j AS (UPDATE notify_jobs j SET next_attempt_at = now(),"
      " updated_at = now() WHERE j.id = $1::uuid"
      " AND ($2::bigint = 0 OR j.tenant_id = $2::bigint)"
      " AND j.status IN ('queued', 'retrying') RETURNING j.*)"
      " SELECT (SELECT " NGX_NEXUS_JOB_JSON "::text FROM j"
      " LEFT JOIN tenants t ON t.id = j.tenant_id),"
      " (SELECT x.status FROM notify_jobs x WHERE x.id = $1::uuid"
      " AND ($2::bigint = 0 OR x.tenant_id = $2::bigint))",
      2 },

    /* $1 scope, $2 tenant or '', $3 limit */
    { "nexus_notify_dlq_list",
      "SELECT coalesce(json_agg(" NGX_NEXUS_DLQ_JSON
      " ORDER BY q.id DESC), '[]')::text"
      " FROM (SELECT q.* FROM notify_dlq q"
      " LEFT JOIN tenants t ON t.id = q.tenant_id"
      " WHERE ($1::bigint = 0 OR q.tenant_id = $1::bigint)"
      " AND ($2 = '' OR t.name = $2)"
      " ORDER BY q.id DESC LIMIT $3::integer) q"
      " JOIN notify_jobs j ON j.id = q.job_id"
      " LEFT JOIN tenants t ON t.id = q.tenant_id",
      3 },

    /* $1 DLQ id, $2 scope: a new job, with a new id, for the same payload
     * and target; once per entry */
    { "nexus_notify_dlq_replay",
      "WITH q AS (SELECT q.* FROM notify_dlq q WHERE q.id = $1::bigint"
      " AND ($2::bigint = 0 OR q.tenant_id = $2::bigint) FOR UPDATE),"
      " j AS (INSERT INTO notify_jobs (tenant_id, kind, destination_id, url,"
      " route_id, event_id, event_type, severity, payload, payload_sha256,"
      " replay_of) SELECT o.tenant_id, o.kind, o.destination_id, o.url,"
      " o.route_id, o.event_id, o.event_type, o.severity, o.payload,"
      " o.payload_sha256, q.id FROM q JOIN notify_jobs o ON o.id = q.job_id"
      " WHERE q.replayed_at IS NULL RETURNING *),"
      " u AS (UPDATE notify_dlq x SET replayed_at = now(),"
      " replay_job_id = j.id FROM j WHERE x.id = j.replay_of)"
      " SELECT (SELECT " NGX_NEXUS_JOB_JSON "::text FROM j"
      " LEFT JOIN tenants t ON t.id = j.tenant_id),"
      " EXISTS (SELECT 1 FROM q), (SELECT q.replay_job_id::text FROM q)",
      2 },

    { "nexus_notify_ops",
      "SELECT json_build_object("
      " 'jobs', (SELECT json_build_object("
      " 'queued', count(*) FILTER (WHERE status = 'queued'),"
      " 'delivering', count(*) FILTER (WHERE status = 'delivering'),"
      " 'retrying', count(*) FILTER (WHERE status = 'retrying'),"
      " 'delivered', count(*) FILTER (WHERE status = 'delivered'),"
      " 'dlq', count(*) FILTER (WHERE status = 'dlq')) FROM notify_jobs),"
      " 'oldest_waiting_s', (SELECT round(extract(epoch FROM"
      " now() - min(created_at))::numeric, 3) FROM notify_jobs"
      " WHERE status IN ('queued', 'retrying')),"
      " 'dlq', (SELECT json_build_object('open',"
      " count(*) FILTER (WHERE replayed_at IS NULL), 'total', count(*))"
      " FROM notify_dlq),"
      " 'destinations', (SELECT json_build_object("
      " 'enabled', count(*) FILTER (WHERE enabled),"
      " 'disabled', count(*) FILTER (WHERE NOT enabled))"
      " FROM notify_destinations),"
      " 'last_hour', (SELECT json_build_object('attempts', count(*),"
      " 'delivered', count(*) FILTER (WHERE outcome = 'delivered'),"
      " 'failed', count(*) FILTER (WHERE outcome <> 'delivered'),"
      " 'p95_ms', percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms))"
      " FROM notify_attempts WHERE started_at > now() - interval '1 hour')"
      ")::text",
      0 },
};


/*
 * The intake side, for /v1/ops/notifications: the notify group's pending
 * entries and lag on the event stream, and the dead letters.
 * KEYS: nx:events, nx:events:dead, nx:notify:dead.  ARGV: the group.
 */
static const char  ngx_nexus_notify_ops_lua[] =
    "local pending, lag = -1, -1\n"
    "local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])\n"
    "if ok then\n"
    "  for _, g in ipairs(groups) do\n"
    "    local h = {}\n"
    "    for i = 1, #g, 2 do h[g[i]] = g[i + 1] end\n"
    "    if h['name'] == ARGV[1] then\n"
    "      pending = tonumber(h['pending']) or -1\n"
    "      lag = tonumber(h['lag']) or -1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {redis.call('XLEN', KEYS[1]), pending, lag,"
    " redis.call('XLEN', KEYS[2]), redis.call('XLEN', KEYS[3])}\n";


ngx_int_t
ngx_nexus_notify_init(ngx_conf_t *cf)
{
    if (ngx_nexus_redis_script(cf, &ngx_nexus_notify_ops_script,
                               ngx_nexus_notify_ops_lua)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_nexus_pg_statements(cf, ngx_nexus_notify_sql,
                                   NGX_NEXUS_NOTIFY_NOPS, ngx_nexus_notify_stmts);
}


/* nexus_seal_key_file path; */

char *
ngx_nexus_seal_key_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    char        err[256];
    ngx_str_t  *value, path;

    if (nmcf->seal_key) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    nmcf->seal_key = ngx_pcalloc(cf->pool, sizeof(nx_seal_key_t));
    if (nmcf->seal_key == NULL) {
        return NGX_CONF_ERROR;
    }

    if (nx_seal_key_load((char *) path.data, nmcf->seal_key, err,
                         sizeof(err))
        != 0)
    {
        /* err names the file, never its content */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_nexus_notify_admin(ngx_http_request_t *r, ngx_str_t *rest)
{
    u_char                  *p, *last;
    ngx_str_t                path, id, tail;
    ngx_nexus_notify_ctx_t  *nctx;

    /* "notifications/<what>[/<id>[/<action>]]" */

    if (rest->len < 14 || rest->data[13] != '/') {
        return ngx_nexus_not_found(r);
    }

    path.data = rest->data + 14;
    path.len = rest->len - 14;

    p = ngx_strlchr(path.data, path.data + path.len, '/');
    last = path.data + path.len;

    ngx_str_null(&id);
    ngx_str_null(&tail);

    if (p != NULL) {
        id.data = p + 1;
        id.len = last - p - 1;
        path.len = p - path.data;

        p = ngx_strlchr(id.data, last, '/');

        if (p != NULL) {
            tail.data = p + 1;
            tail.len = last - p - 1;
            id.len = p - id.data;
        }
    }

    nctx = ngx_nexus_notify_ctx(r);
    if (nctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

#define ngx_nexus_is(s, lit)                                                  \
    ((s).len == sizeof(lit) - 1 && ngx_strncmp((s).data, lit, (s).len) == 0)

    if (ngx_nexus_is(path, "destinations")) {

        if (id.data == NULL) {
            if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
                return ngx_nexus_notify_list(r, NGX_NEXUS_NOTIFY_DEST_LIST);
            }

            if (r->method == NGX_HTTP_POST) {
                nctx->op = NGX_NEXUS_NOTIFY_DEST_CREATE;
                return ngx_nexus_read_json(r, ngx_nexus_notify_dest_body);
            }

            return ngx_nexus_method_not_allowed(r, "GET, HEAD, POST");
        }

        if (tail.data != NULL || ngx_nexus_notify_id(&id, 0) != NGX_OK) {
            return ngx_nexus_not_found(r);
        }

        if (r->method != NGX_HTTP_PATCH) {
            return ngx_nexus_method_not_allowed(r, "PATCH");
        }

        nctx->id = id;
        nctx->op = NGX_NEXUS_NOTIFY_DEST_UPDATE;
        return ngx_nexus_read_json(r, ngx_nexus_notify_dest_body);
    }

    if (ngx_nexus_is(path, "routes")) {

        if (id.data == NULL) {
            if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
                return ngx_nexus_notify_list(r, NGX_NEXUS_NOTIFY_ROUTE_LIST);
            }

            if (r->method == NGX_HTTP_POST) {
                nctx->op = NGX_NEXUS_NOTIFY_ROUTE_CREATE;
                return ngx_nexus_read_json(r, ngx_nexus_notify_route_body);
            }

            return ngx_nexus_method_not_allowed(r, "GET, HEAD, POST");
        }

        if (tail.data != NULL || ngx_nexus_notify_id(&id, 0) != NGX_OK) {
            return ngx_nexus_not_found(r);
        }

        nctx->id = id;

        if (r->method == NGX_HTTP_PATCH) {
            nctx->op = NGX_NEXUS_NOTIFY_ROUTE_UPDATE;
            return ngx_nexus_read_json(r, ngx_nexus_notify_route_body);
        }

        if (r->method == NGX_HTTP_DELETE) {
            return ngx_nexus_notify_by_id(r, NGX_NEXUS_NOTIFY_ROUTE_DELETE);
        }

        return ngx_nexus_method_not_allowed(r, "PATCH, DELETE");
    }

    if (ngx_nexus_is(path, "jobs")) {

        if (id.data == NULL) {
            if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
                return ngx_nexus_notify_list(r, NGX_NEXUS_NOTIFY_JOB_LIST);
            }

            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        if (ngx_nexus_notify_id(&id, 1) != NGX_OK) {
            return ngx_nexus_not_found(r);
        }

        nctx->id = id;

        if (ngx_nexus_is(tail, "attempts")) {
            if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
                return ngx_nexus_method_not_allowed(r, "GET, HEAD");
            }

            return ngx_nexus_notify_by_id(r, NGX_NEXUS_NOTIFY_JOB_ATTEMPTS);
        }

        if (ngx_nexus_is(tail, "retry-now")) {
            if (r->method != NGX_HTTP_POST) {
                return ngx_nexus_method_not_allowed(r, "POST");
            }

            return ngx_nexus_notify_by_id(r, NGX_NEXUS_NOTIFY_JOB_RETRY);
        }

        return ngx_nexus_not_found(r);
    }

    if (ngx_nexus_is(path, "dlq")) {

        if (id.data == NULL) {
            if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
                return ngx_nexus_notify_list(r, NGX_NEXUS_NOTIFY_DLQ_LIST);
            }

            return ngx_nexus_method_not_allowed(r, "GET, HEAD");
        }

        if (ngx_nexus_notify_id(&id, 0) != NGX_OK
            || !ngx_nexus_is(tail, "replay"))
        {
            return ngx_nexus_not_found(r);
        }

        if (r->method != NGX_HTTP_POST) {
            return ngx_nexus_method_not_allowed(r, "POST");
        }

        nctx->id = id;
        return ngx_nexus_notify_by_id(r, NGX_NEXUS_NOTIFY_DLQ_REPLAY);
    }

    if (ngx_nexus_is(path, "events") && id.data == NULL) {
        if (r->method != NGX_HTTP_POST) {
            return ngx_nexus_method_not_allowed(r, "POST");
        }

        return ngx_nexus_read_json(r, ngx_nexus_notify_event_body);
    }

#undef ngx_nexus_is

    return ngx_nexus_not_found(r);
}


/* GET /v1/ops/notifications (the access phase required a platform admin) */

ngx_int_t
ngx_nexus_notify_ops(ngx_http_request_t *r)
{
    ngx_nexus_pg_query_t  *q;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_nexus_method_not_allowed(r, "GET, HEAD");
    }

    q = ngx_nexus_notify_prepare(r, NGX_NEXUS_NOTIFY_OPS, 0);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_pg_ask(r, q, 1);
}


/* a decimal id of 1-18 digits, or (uuid) a job id */

static ngx_int_t
ngx_nexus_notify_id(ngx_str_t *s, ngx_uint_t uuid)
{
    size_t  i;

    if (uuid) {
        if (s->len != 36) {
            return NGX_ERROR;
        }

        for (i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (s->data[i] != '-') {
                    return NGX_ERROR;
                }
                continue;
            }

            if (!((s->data[i] >= '0' && s->data[i] <= '9')
                  || (s->data[i] >= 'a' && s->data[i] <= 'f')
                  || (s->data[i] >= 'A' && s->data[i] <= 'F')))
            {
                return NGX_ERROR;
            }
        }

        return NGX_OK;
    }

    if (s->len == 0 || s->len > 18 || s->data[0] == '0') {
        return NGX_ERROR;
    }

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_nexus_notify_ctx_t *
ngx_nexus_notify_ctx(ngx_http_request_t *r)
{
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_nexus_get_ctx(r);
    if (ctx == NULL) {
        return NULL;
    }

    if (ctx->handler_ctx == NULL) {
        nctx = ngx_pcalloc(r->pool, sizeof(ngx_nexus_notify_ctx_t));
        if (nctx == NULL) {
            return NULL;
        }

        ctx->handler_ctx = nctx;
    }

    return ctx->handler_ctx;
}


static ngx_nexus_pg_query_t *
ngx_nexus_notify_prepare(ngx_http_request_t *r, ngx_uint_t op, size_t size)
{
    ngx_nexus_pg_query_t    *q;
    ngx_nexus_notify_ctx_t  *nctx;

    nctx = ngx_nexus_notify_ctx(r);
    if (nctx == NULL) {
        return NULL;
    }

    nctx->op = op;

    q = ngx_nexus_pg_query(ngx_nexus_notify_stmts[op], size + 128);
    if (q == NULL) {
        return NULL;
    }

    q->handler = ngx_nexus_notify_done;
    q->data = r;

    return q;
}


static void
ngx_nexus_notify_done(ngx_nexus_pg_query_t *q, PGresult *res, ngx_int_t rc)
{
    const char              *state;
    ngx_http_request_t      *r;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_notify_ctx_t  *nctx;

    r = q->data;
    ctx = ngx_nexus_pg_answered(r);
    nctx = ctx->handler_ctx;

    if (rc == NGX_DECLINED) {
        rc = ngx_nexus_pg_unavailable(r);
        goto done;
    }

    if (rc == NGX_ERROR) {
        state = ngx_nexus_pg_sqlstate(res);

        if (ngx_strcmp(state, "23505") == 0) {
            rc = ngx_nexus_send_error(r, NGX_HTTP_CONFLICT, "ROUTE_EXISTS",
                                      "the tenant has a route of this name",
                                      NULL);
            goto done;
        }

        if (ngx_strncmp(state, "22", 2) == 0
            || ngx_strncmp(state, "23", 2) == 0)
        {
            /* data or constraint: what was sent is not acceptable */
            rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "VALIDATION_ERROR",
                                      "the values are out of range", NULL);
            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nexus notifications query failed: %s",
                      PQresultErrorMessage(res));

        rc = ngx_nexus_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "INTERNAL_ERROR",
                                  "the request could not be completed",
                                  NULL);
        goto done;
    }

    rc = ngx_nexus_notify_result(r, nctx, res);

    if (rc == NGX_DONE) {
        /* another step is under way */
        return;
    }

done:

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_nexus_notify_result(ngx_http_request_t *r, ngx_nexus_notify_ctx_t *nctx,
    PGresult *res)
{
    u_char      *p;
    size_t       len;
    int64_t      tenant_id;
    ngx_int_t    rc;
    const char  *v;
    u_char       details[128];

    switch (nctx->op) {

    case NGX_NEXUS_NOTIFY_TENANT:
        if (PQntuples(res) != 1) {
            ngx_explicit_memzero(nctx->secret.data, nctx->secret.len);

            if (nctx->then == NGX_NEXUS_NOTIFY_THEN_UPDATE) {
                return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "DESTINATION_NOT_FOUND",
                                            "no such destination", NULL);
            }

            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "TENANT_NOT_FOUND", "no such tenant",
                                        NULL);
        }

        tenant_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                              PQgetlength(res, 0, 0));

        if (nctx->then == NGX_NEXUS_NOTIFY_THEN_EVENT) {
            rc = ngx_nexus_notify_event_send(r, tenant_id);

        } else {
            rc = ngx_nexus_notify_dest_write(r, tenant_id);
        }

        return rc;

    case NGX_NEXUS_NOTIFY_DEST_CREATE:
    case NGX_NEXUS_NOTIFY_ROUTE_CREATE:
        if (PQntuples(res) == 1 && PQnfields(res) == 2
            && !PQgetisnull(res, 0, 0))
        {
            return ngx_nexus_pg_reply(r, NGX_HTTP_CREATED, res);
        }

        if (PQntuples(res) == 1 && PQnfields(res) == 2
            && PQgetvalue(res, 0, 1)[0] == 't')
        {
            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "DESTINATION_NOT_FOUND",
                                        "a destination of the route is not "
                                        "one of the tenant's", NULL);
        }

        return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                    "TENANT_NOT_FOUND", "no such tenant",
                                    NULL);

    case NGX_NEXUS_NOTIFY_ROUTE_UPDATE:
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            return ngx_nexus_pg_reply(r, NGX_HTTP_OK, res);
        }

        if (PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't') {
            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "DESTINATION_NOT_FOUND",
                                        "a destination of the route is not "
                                        "one of the tenant's", NULL);
        }

        /* fall through */

    case NGX_NEXUS_NOTIFY_ROUTE_DELETE:
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "ROUTE_NOT_FOUND", "no such route",
                                        NULL);
        }

        return ngx_nexus_pg_reply(r, NGX_HTTP_OK, res);

    case NGX_NEXUS_NOTIFY_DEST_UPDATE:
        if (PQntuples(res) != 1) {
            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "DESTINATION_NOT_FOUND",
                                        "no such destination", NULL);
        }

        return ngx_nexus_pg_reply(r, NGX_HTTP_OK, res);

    case NGX_NEXUS_NOTIFY_JOB_ATTEMPTS:
        if (PQntuples(res) != 1) {
            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "JOB_NOT_FOUND", "no such job",
                                        NULL);
        }

        return ngx_nexus_pg_reply(r, NGX_HTTP_OK, res);

    case NGX_NEXUS_NOTIFY_JOB_RETRY:
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            return ngx_nexus_pg_reply(r, NGX_HTTP_OK, res);
        }

        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "JOB_NOT_FOUND", "no such job",
                                        NULL);
        }

        /* statuses are a fixed set of words: no escaping */
        v = PQgetvalue(res, 0, 1);
        len = ngx_min(ngx_strlen(v), 16);
        ngx_sprintf(details, "{\"status\":\"%*s\"}%Z", len, v);

        return ngx_nexus_send_error(r, NGX_HTTP_CONFLICT,
                                    "JOB_NOT_RETRYABLE",
                                    "only a queued or retrying job can be "
                                    "retried now; replay a dead letter "
                                    "instead", (char *) details);

    case NGX_NEXUS_NOTIFY_DLQ_REPLAY:
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            return ngx_nexus_pg_reply(r, NGX_HTTP_CREATED, res);
        }

        if (PQntuples(res) != 1 || PQgetvalue(res, 0, 1)[0] != 't') {
            return ngx_nexus_send_error(r, NGX_HTTP_NOT_FOUND,
                                        "DLQ_NOT_FOUND",
                                        "no such dead letter", NULL);
        }

        p = details;

        if (!PQgetisnull(res, 0, 2) && PQgetlength(res, 0, 2) == 36) {
            /* a uuid: no escaping */
            p = ngx_sprintf(details, "{\"replay_job_id\":\"%s\"}%Z",
                            PQgetvalue(res, 0, 2));
        }

        return ngx_nexus_send_error(r, NGX_HTTP_CONFLICT,
                                    "DLQ_ALREADY_REPLAYED",
                                    "this dead letter was replayed already",
                                    p != details ? (char *) details : NULL);

    case NGX_NEXUS_NOTIFY_OPS:
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        len = PQgetlength(res, 0, 0);

        nctx->json.data = ngx_pnalloc(r->pool, len);
        if (nctx->json.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(nctx->json.data, PQgetvalue(res, 0, 0), len);
        nctx->json.len = len;

        ngx_nexus_notify_ops_redis(r);
        return NGX_DONE;

    default:
        /* the lists */
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_nexus_pg_reply(r, NGX_HTTP_OK, res);
    }
}


static void
ngx_nexus_notify_invalid(ngx_http_request_t *r, const char *message)
{
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nctx = ctx->handler_ctx;

    if (nctx != NULL && nctx->secret.len) {
        ngx_explicit_memzero(nctx->secret.data, nctx->secret.len);
    }

    ngx_http_finalize_request(r,
        ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                             message, NULL));
}


/*
 * ?tenant=, ?status=, ?limit=.  NGX_OK, or NGX_DECLINED with the error
 * sent and its rc in *rc.
 */

static ngx_int_t
ngx_nexus_notify_arg(ngx_http_request_t *r, ngx_str_t *tenant,
    ngx_str_t *status, int64_t *limit, ngx_int_t *rc)
{
    ngx_int_t    n;
    ngx_str_t    v;
    const char  *msg;

    ngx_str_null(tenant);

    if (ngx_http_arg(r, (u_char *) "tenant", 6, tenant) == NGX_OK
        && nx_tenant_name_valid((char *) tenant->data, tenant->len) != 0)
    {
        msg = "\"tenant\" is not a valid tenant name";
        goto invalid;
    }

    if (status != NULL) {
        ngx_str_null(status);

        if (ngx_http_arg(r, (u_char *) "status", 6, status) == NGX_OK
            && !((status->len == 6
                  && ngx_strncmp(status->data, "queued", 6) == 0)
                 || (status->len == 10
                     && ngx_strncmp(status->data, "delivering", 10) == 0)
                 || (status->len == 8
                     && ngx_strncmp(status->data, "retrying", 8) == 0)
                 || (status->len == 9
                     && ngx_strncmp(status->data, "delivered", 9) == 0)
                 || (status->len == 3
                     && ngx_strncmp(status->data, "dlq", 3) == 0)))
        {
            msg = "\"status\" must be queued, delivering, retrying, "
                  "delivered or dlq";
            goto invalid;
        }
    }

    if (limit != NULL) {
        *limit = 100;

        if (ngx_http_arg(r, (u_char *) "limit", 5, &v) == NGX_OK) {
            n = (v.len > 0 && v.len <= 4) ? ngx_atoi(v.data, v.len)
                                          : NGX_ERROR;

            if (n == NGX_ERROR || n < 1 || n > NGX_NEXUS_NOTIFY_LIMIT) {
                msg = "\"limit\" must be 1-1000";
                goto invalid;
            }

            *limit = n;
        }
    }

    return NGX_OK;

invalid:

    *rc = ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST, "VALIDATION_ERROR",
                               msg, NULL);
    return NGX_DECLINED;
}


static ngx_int_t
ngx_nexus_notify_list(ngx_http_request_t *r, ngx_uint_t op)
{
    int64_t                limit;
    ngx_int_t              rc;
    ngx_str_t              tenant, status;
    ngx_nexus_pg_query_t  *q;

    if (ngx_nexus_notify_arg(r, &tenant,
                             op == NGX_NEXUS_NOTIFY_JOB_LIST ? &status : NULL,
                             (op == NGX_NEXUS_NOTIFY_JOB_LIST
                              || op == NGX_NEXUS_NOTIFY_DLQ_LIST)
                             ? &limit : NULL, &rc)
        != NGX_OK)
    {
        return rc;
    }

    q = ngx_nexus_notify_prepare(r, op, 64 + tenant.len);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    if (op == NGX_NEXUS_NOTIFY_JOB_LIST) {
        (void) ngx_nexus_pg_param(q, status.data, status.len);
    }

    (void) ngx_nexus_pg_param(q, tenant.data, tenant.len);

    if (op == NGX_NEXUS_NOTIFY_JOB_LIST || op == NGX_NEXUS_NOTIFY_DLQ_LIST) {
        (void) ngx_nexus_pg_param_int(q, limit);
    }

    return ngx_nexus_pg_ask(r, q, 1);
}


/*
 * POST destinations {"tenant", "url", "name", "headers_json", "secret",
 * "enabled"}; PATCH destinations/{id}, the same but "tenant", any subset,
 * "secret": null to remove it.
 */

static void
ngx_nexus_notify_dest_body(ngx_http_request_t *r, yajl_val v)
{
    ngx_int_t                rc;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nctx = ctx->handler_ctx;

    if (v == NULL) {
        ngx_nexus_notify_invalid(r, "a JSON object is required");
        return;
    }

    nctx->create = (nctx->op == NGX_NEXUS_NOTIFY_DEST_CREATE);

    if (ngx_nexus_notify_dest_fields(r, v, nctx, nctx->create) != NGX_OK)
    {
        /* answered */
        return;
    }

    if (nctx->has_secret && nctx->secret.len) {
        /* sealing needs the tenant's id: the principal's, or looked up */
        if (nctx->create
            && nctx->tenant.len == ctx->principal.tenant.len
            && ngx_strncmp(nctx->tenant.data, ctx->principal.tenant.data,
                           nctx->tenant.len) == 0)
        {
            rc = ngx_nexus_notify_dest_write(r, ctx->principal.tenant_id);

        } else {
            rc = ngx_nexus_notify_lookup(r, nctx->create
                                            ? NGX_NEXUS_NOTIFY_THEN_CREATE
                                            : NGX_NEXUS_NOTIFY_THEN_UPDATE);
        }

    } else {
        rc = ngx_nexus_notify_dest_write(r, 0);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_notify_dest_fields(ngx_http_request_t *r, yajl_val v,
    ngx_nexus_notify_ctx_t *nctx, ngx_uint_t create)
{
    size_t            i;
    yajl_val          f, h;
    ngx_str_t         value;
    const char       *key;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    nctx->enabled = 1;

    for (i = 0; i < v->u.object.len; i++) {
        key = v->u.object.keys[i];

        if (ngx_strcmp(key, "tenant") != 0 && ngx_strcmp(key, "url") != 0
            && ngx_strcmp(key, "name") != 0
            && ngx_strcmp(key, "headers_json") != 0
            && ngx_strcmp(key, "secret") != 0
            && ngx_strcmp(key, "enabled") != 0)
        {
            ngx_nexus_notify_invalid(r, "a destination has tenant, url, "
                                        "name, headers_json, secret and "
                                        "enabled only");
            return NGX_ERROR;
        }
    }

    f = nx_json_get(v, "tenant");

    if (f != NULL) {
        if (!create) {
            ngx_nexus_notify_invalid(r, "a destination cannot move to "
                                        "another tenant");
            return NGX_ERROR;
        }

        if (ngx_nexus_notify_string(f, 1, NGX_NEXUS_TENANT_MAX, &nctx->tenant)
            != NGX_OK
            || nx_tenant_name_valid((char *) nctx->tenant.data,
                                    nctx->tenant.len) != 0)
        {
            ngx_nexus_notify_invalid(r, "\"tenant\" is not a valid tenant "
                                        "name");
            return NGX_ERROR;
        }

    } else {
        nctx->tenant = ctx->principal.tenant;
    }

    f = nx_json_get(v, "url");

    if (f != NULL || create) {
        if (ngx_nexus_notify_string(f, 1, NGX_NEXUS_NOTIFY_URL_MAX,
                                    &nctx->url) != NGX_OK
            || ngx_nexus_notify_url_valid(&nctx->url) != NGX_OK)
        {
            ngx_nexus_notify_invalid(r, "\"url\" must be an http:// or "
                                        "https:// URL of at most 2048 "
                                        "characters");
            return NGX_ERROR;
        }
    }

    f = nx_json_get(v, "name");

    if (f != NULL && !YAJL_IS_NULL(f)
        && (ngx_nexus_notify_string(f, 1, 128, &nctx->name) != NGX_OK
            || nx_key_name_valid((char *) nctx->name.data, nctx->name.len)
               != 0))
    {
        ngx_nexus_notify_invalid(r, "\"name\" must be 1-128 printable "
                                    "ASCII characters");
        return NGX_ERROR;
    }

    h = nx_json_get(v, "headers_json");

    if (h != NULL) {
        if (!YAJL_IS_OBJECT(h)
            || h->u.object.len > NGX_NEXUS_NOTIFY_HEADERS)
        {
            goto bad_headers;
        }

        for (i = 0; i < h->u.object.len; i++) {
            if (ngx_nexus_notify_header_name(h->u.object.keys[i]) != NGX_OK
                || ngx_nexus_notify_string(h->u.object.values[i], 0, 1024,
                                           &value) != NGX_OK
                || ngx_strlchr(value.data, value.data + value.len, '\r')
                || ngx_strlchr(value.data, value.data + value.len, '\n'))
            {
                goto bad_headers;
            }
        }

        if (ngx_nexus_notify_canonical(r, h, &nctx->headers) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return NGX_ERROR;
        }

    } else if (create) {
        ngx_str_set(&nctx->headers, "{}");
    }

    f = nx_json_get(v, "secret");

    if (f != NULL) {
        nctx->has_secret = 1;

        if (!YAJL_IS_NULL(f)) {
            if (ngx_nexus_notify_string(f, 1, NX_SEAL_PLAIN_MAX,
                                        &nctx->secret)
                != NGX_OK)
            {
                ngx_nexus_notify_invalid(r, "\"secret\" must be a string "
                                            "of 1-4096 bytes, or null");
                return NGX_ERROR;
            }

            if (ngx_nexus_notify_seal(r, 0, NULL) != NGX_OK) {
                /* answered: no seal key */
                return NGX_ERROR;
            }
        }
    }

    f = nx_json_get(v, "enabled");

    if (f != NULL) {
        if (!YAJL_IS_TRUE(f) && !YAJL_IS_FALSE(f)) {
            ngx_nexus_notify_invalid(r, "\"enabled\" must be a boolean");
            return NGX_ERROR;
        }

        nctx->enabled = YAJL_IS_TRUE(f);
        nctx->enabled_set = 1;
    }

    return NGX_OK;

bad_headers:

    ngx_nexus_notify_invalid(r, "\"headers_json\" must be an object of at "
                                "most 32 headers: names of [A-Za-z0-9-], "
                                "not Host, Content-Type, Content-Length, "
                                "Transfer-Encoding, Connection, Expect or "
                                "X-Notification-*; string values without "
                                "line breaks, at most 1024 bytes");
    return NGX_ERROR;
}


static ngx_int_t
ngx_nexus_notify_lookup(ngx_http_request_t *r, ngx_uint_t then)
{
    ngx_nexus_pg_query_t    *q;
    ngx_nexus_notify_ctx_t  *nctx;

    nctx = ngx_nexus_notify_ctx(r);

    q = ngx_nexus_notify_prepare(r, NGX_NEXUS_NOTIFY_TENANT,
                                 nctx->tenant.len + nctx->id.len + 32);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nctx->then = then;

    if (then == NGX_NEXUS_NOTIFY_THEN_UPDATE) {
        (void) ngx_nexus_pg_param(q, (u_char *) "", 0);

    } else {
        (void) ngx_nexus_pg_param(q, nctx->tenant.data, nctx->tenant.len);
    }

    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    if (then == NGX_NEXUS_NOTIFY_THEN_UPDATE) {
        (void) ngx_nexus_pg_param(q, nctx->id.data, nctx->id.len);

    } else {
        (void) ngx_nexus_pg_param(q, (u_char *) "0", 1);
    }

    return ngx_nexus_pg_ask(r, q, 0);
}


/*
 * Seals nctx->secret for tenant_id into hex, then wipes the plain text.
 * With hex == NULL, only checks that a seal key is configured.
 */

static ngx_int_t
ngx_nexus_notify_seal(ngx_http_request_t *r, int64_t tenant_id,
    ngx_str_t *hex)
{
    u_char                  *sealed;
    size_t                   len;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_main_conf_t   *nmcf;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nctx = ctx->handler_ctx;
    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    if (nmcf->seal_key == NULL) {
        ngx_explicit_memzero(nctx->secret.data, nctx->secret.len);
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "SEAL_KEY_NOT_CONFIGURED",
                                 "destination secrets need "
                                 "nexus_seal_key_file", NULL));
        return NGX_ERROR;
    }

    if (hex == NULL) {
        return NGX_OK;
    }

    len = nx_seal_len(nctx->secret.len);

    sealed = ngx_pnalloc(r->pool, len);
    hex->data = ngx_pnalloc(r->pool, 2 * len);

    if (sealed == NULL || hex->data == NULL
        || nx_seal(nmcf->seal_key, NGX_NEXUS_NOTIFY_PURPOSE, tenant_id,
                   nctx->secret.data, nctx->secret.len, sealed)
           != NX_SEAL_OK)
    {
        ngx_explicit_memzero(nctx->secret.data, nctx->secret.len);
        return NGX_ERROR;
    }

    ngx_explicit_memzero(nctx->secret.data, nctx->secret.len);

    hex->len = ngx_hex_dump(hex->data, sealed, len) - hex->data;

    return NGX_OK;
}


/* the INSERT or UPDATE, once the secret (if any) is sealed */

static ngx_int_t
ngx_nexus_notify_dest_write(ngx_http_request_t *r, int64_t tenant_id)
{
    u_char                  *p, *json;
    size_t                   len;
    ngx_str_t                hex, esc;
    ngx_nexus_pg_query_t    *q;
    ngx_nexus_notify_ctx_t  *nctx;

    nctx = ngx_nexus_notify_ctx(r);
    ngx_str_null(&hex);

    if (nctx->has_secret && nctx->secret.len
        && ngx_nexus_notify_seal(r, tenant_id, &hex) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (nctx->create) {
        q = ngx_nexus_notify_prepare(r, NGX_NEXUS_NOTIFY_DEST_CREATE,
                                     nctx->tenant.len + nctx->name.len
                                     + nctx->url.len + nctx->headers.len
                                     + hex.len + 64);
        if (q == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));
        (void) ngx_nexus_pg_param(q, nctx->tenant.data, nctx->tenant.len);
        (void) ngx_nexus_pg_param(q, nctx->name.data, nctx->name.len);
        (void) ngx_nexus_pg_param(q, nctx->url.data, nctx->url.len);
        (void) ngx_nexus_pg_param(q, nctx->headers.data, nctx->headers.len);
        (void) ngx_nexus_pg_param(q, hex.data, hex.len);
        (void) ngx_nexus_pg_param(q, (u_char *) (nctx->enabled ? "t" : "f"),
                                  1);

        return ngx_nexus_pg_ask(r, q, 0);
    }

    /* the patch, rebuilt from checked values: url and name escaped */

    len = 2 + 6 * (nctx->url.len + nctx->name.len) + nctx->headers.len
          + hex.len + 128;

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = json;
    *p++ = '{';

    if (nctx->url.len) {
        if (ngx_nexus_json_escape(r->pool, &nctx->url, &esc) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        p = ngx_sprintf(p, "\"url\":\"%V\",", &esc);
    }

    if (nctx->name.len) {
        if (ngx_nexus_json_escape(r->pool, &nctx->name, &esc) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        p = ngx_sprintf(p, "\"name\":\"%V\",", &esc);
    }

    if (nctx->headers.len) {
        p = ngx_sprintf(p, "\"headers\":%V,", &nctx->headers);
    }

    if (nctx->has_secret) {
        if (hex.len) {
            p = ngx_sprintf(p, "\"secret\":\"%V\",", &hex);
        } else {
            p = ngx_cpymem(p, "\"secret\":null,", 14);
        }
    }

    if (nctx->enabled_set) {
        p = ngx_sprintf(p, "\"enabled\":%s,",
                        nctx->enabled ? "true" : "false");
    }

    if (p[-1] == ',') {
        p--;
    }

    *p++ = '}';

    q = ngx_nexus_notify_prepare(r, NGX_NEXUS_NOTIFY_DEST_UPDATE,
                                 nctx->id.len + (p - json) + 32);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, nctx->id.data, nctx->id.len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));
    (void) ngx_nexus_pg_param(q, json, p - json);

    return ngx_nexus_pg_ask(r, q, 0);
}


/*
 * POST routes {"tenant", "name", "enabled", "priority", "match_json",
 * "destinations_json": [{"destination_id": N}, ...]}; PATCH routes/{id},
 * the same but "tenant", any subset.
 */

static void
ngx_nexus_notify_route_body(ngx_http_request_t *r, yajl_val v)
{
    u_char                  *p, *json, *ids;
    char                     err[128];
    size_t                   i, k, n;
    int64_t                  priority, id, seen[NGX_NEXUS_NOTIFY_DESTS];
    ngx_int_t                rc, create;
    yajl_val                 f, m, e;
    ngx_str_t                tenant, name, match, esc;
    const char              *key;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_pg_query_t    *q;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nctx = ctx->handler_ctx;
    create = (nctx->op == NGX_NEXUS_NOTIFY_ROUTE_CREATE);

    if (v == NULL) {
        ngx_nexus_notify_invalid(r, "a JSON object is required");
        return;
    }

    for (i = 0; i < v->u.object.len; i++) {
        key = v->u.object.keys[i];

        if (ngx_strcmp(key, "tenant") != 0 && ngx_strcmp(key, "name") != 0
            && ngx_strcmp(key, "enabled") != 0
            && ngx_strcmp(key, "priority") != 0
            && ngx_strcmp(key, "match_json") != 0
            && ngx_strcmp(key, "destinations_json") != 0)
        {
            ngx_nexus_notify_invalid(r, "a route has tenant, name, enabled, "
                                        "priority, match_json and "
                                        "destinations_json only");
            return;
        }
    }

    tenant = ctx->principal.tenant;
    f = nx_json_get(v, "tenant");

    if (f != NULL
        && (!create
            || ngx_nexus_notify_string(f, 1, NGX_NEXUS_TENANT_MAX, &tenant)
               != NGX_OK
            || nx_tenant_name_valid((char *) tenant.data, tenant.len) != 0))
    {
        ngx_nexus_notify_invalid(r, create ? "\"tenant\" is not a valid "
                                             "tenant name"
                                           : "a route cannot move to "
                                             "another tenant");
        return;
    }

    ngx_str_null(&name);
    f = nx_json_get(v, "name");

    if ((f != NULL || create)
        && (ngx_nexus_notify_string(f, 1, 128, &name) != NGX_OK
            || nx_key_name_valid((char *) name.data, name.len) != 0))
    {
        ngx_nexus_notify_invalid(r, "\"name\" must be 1-128 printable ASCII "
                                    "characters");
        return;
    }

    priority = 100;
    f = nx_json_get(v, "priority");

    if (f != NULL
        && (nx_json_int(f, &priority) != 0 || priority < 0
            || priority > 1000000))
    {
        ngx_nexus_notify_invalid(r, "\"priority\" must be an integer of "
                                    "0-1000000 (lower first)");
        return;
    }

    f = nx_json_get(v, "enabled");

    if (f != NULL && !YAJL_IS_TRUE(f) && !YAJL_IS_FALSE(f)) {
        ngx_nexus_notify_invalid(r, "\"enabled\" must be a boolean");
        return;
    }

    ngx_str_null(&match);
    m = nx_json_get(v, "match_json");

    if (m != NULL || create) {
        if (m == NULL) {
            ngx_str_set(&match, "{}");

        } else if (nx_notify_match_check(m, err, sizeof(err)) != 0) {
            ngx_nexus_notify_invalid(r, "\"match_json\" must be an object "
                                        "of event_type, severity, source "
                                        "and category, each a string or an "
                                        "array of 1-64 strings of 1-128 "
                                        "characters");
            return;

        } else if (ngx_nexus_notify_canonical(r, m, &match) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    /* destinations_json: [{"destination_id": 1}, 2, "3"] in order */

    n = 0;
    f = nx_json_get(v, "destinations_json");

    if (f != NULL || create) {
        if (f == NULL || !YAJL_IS_ARRAY(f) || f->u.array.len == 0
            || f->u.array.len > NGX_NEXUS_NOTIFY_DESTS)
        {
            goto bad_destinations;
        }

        for (i = 0; i < f->u.array.len; i++) {
            e = f->u.array.values[i];

            if (YAJL_IS_OBJECT(e)) {
                e = nx_json_get(e, "destination_id");
            }

            if (e != NULL && YAJL_IS_STRING(e)) {
                p = (u_char *) e->u.string;
                id = (ngx_strlen(p) > 0 && ngx_strlen(p) <= 18)
                     ? ngx_atoof(p, ngx_strlen(p)) : NGX_ERROR;

            } else if (e == NULL || nx_json_int(e, &id) != 0) {
                id = NGX_ERROR;
            }

            if (id <= 0) {
                goto bad_destinations;
            }

            for (k = 0; k < n && seen[k] != id; k++) {
                /* void */
            }

            if (k == n) {
                seen[n++] = id;
            }
        }
    }

    if (create) {
        ids = ngx_pnalloc(r->pool, n * (NGX_INT64_LEN + 1) + 1);
        if (ids == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        p = ids;

        for (i = 0; i < n; i++) {
            p = ngx_sprintf(p, "%s%L", i ? "," : "", seen[i]);
        }

        q = ngx_nexus_notify_prepare(r, NGX_NEXUS_NOTIFY_ROUTE_CREATE,
                                     tenant.len + name.len + match.len
                                     + (p - ids) + 64);
        if (q == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        f = nx_json_get(v, "enabled");

        (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));
        (void) ngx_nexus_pg_param(q, tenant.data, tenant.len);
        (void) ngx_nexus_pg_param(q, name.data, name.len);
        (void) ngx_nexus_pg_param(q, (u_char *) (f && YAJL_IS_FALSE(f)
                                                 ? "f" : "t"), 1);
        (void) ngx_nexus_pg_param_int(q, priority);
        (void) ngx_nexus_pg_param(q, match.data, match.len);
        (void) ngx_nexus_pg_param(q, ids, p - ids);

        rc = ngx_nexus_pg_ask(r, q, 0);

        if (rc != NGX_DONE) {
            ngx_http_finalize_request(r, rc);
        }

        return;
    }

    /* the patch, rebuilt from checked values */

    esc.len = 0;

    if (name.len
        && ngx_nexus_json_escape(r->pool, &name, &esc) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    json = ngx_pnalloc(r->pool, 128 + esc.len + match.len
                                + n * (NGX_INT64_LEN + 1));
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = json;
    *p++ = '{';

    if (esc.len) {
        p = ngx_sprintf(p, "\"name\":\"%V\",", &esc);
    }

    f = nx_json_get(v, "enabled");

    if (f != NULL) {
        p = ngx_sprintf(p, "\"enabled\":%s,",
                        YAJL_IS_TRUE(f) ? "true" : "false");
    }

    if (nx_json_get(v, "priority") != NULL) {
        p = ngx_sprintf(p, "\"priority\":%L,", priority);
    }

    if (match.len) {
        p = ngx_sprintf(p, "\"match\":%V,", &match);
    }

    if (n) {
        p = ngx_cpymem(p, "\"destinations\":[", 16);

        for (i = 0; i < n; i++) {
            p = ngx_sprintf(p, "%s%L", i ? "," : "", seen[i]);
        }

        p = ngx_cpymem(p, "],", 2);
    }

    if (p[-1] == ',') {
        p--;
    }

    *p++ = '}';

    q = ngx_nexus_notify_prepare(r, NGX_NEXUS_NOTIFY_ROUTE_UPDATE,
                                 nctx->id.len + (p - json) + 32);
    if (q == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_nexus_pg_param(q, nctx->id.data, nctx->id.len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));
    (void) ngx_nexus_pg_param(q, json, p - json);

    rc = ngx_nexus_pg_ask(r, q, 0);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    return;

bad_destinations:

    ngx_nexus_notify_invalid(r, "\"destinations_json\" must be an array of "
                                "1-32 destinations, each "
                                "{\"destination_id\": N} or N");
}


/*
 * An operation on one object by its id, no body: routes/{id} (DELETE),
 * jobs/{id}/attempts, jobs/{id}/retry-now, dlq/{id}/replay
 */

static ngx_int_t
ngx_nexus_notify_by_id(ngx_http_request_t *r, ngx_uint_t op)
{
    ngx_nexus_pg_query_t    *q;
    ngx_nexus_notify_ctx_t  *nctx;

    nctx = ngx_nexus_notify_ctx(r);

    q = ngx_nexus_notify_prepare(r, op, nctx->id.len + 32);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_nexus_pg_param(q, nctx->id.data, nctx->id.len);
    (void) ngx_nexus_pg_param_int(q, ngx_nexus_admin_scope(r));

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        ngx_nexus_pg_free(q);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_nexus_pg_ask(r, q, 1);
}


/*
 * POST events {"event_type", "severity", "source", "category", "tenant",
 * "data": {...}}: appended to nx:events as a producer in the gateway
 * would, checked first by the parser nexus-notify uses.  "tenant": null
 * (platform admins) makes a platform event, for the fallback URLs.
 */

static void
ngx_nexus_notify_event_body(ngx_http_request_t *r, yajl_val v)
{
    size_t                   i;
    ngx_int_t                rc;
    yajl_val                 f;
    const char              *key;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nctx = ngx_nexus_notify_ctx(r);

    if (nctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (v == NULL) {
        ngx_nexus_notify_invalid(r, "a JSON object with \"event_type\" is "
                                    "required");
        return;
    }

    for (i = 0; i < v->u.object.len; i++) {
        key = v->u.object.keys[i];

        if (ngx_strcmp(key, "event_type") != 0
            && ngx_strcmp(key, "severity") != 0
            && ngx_strcmp(key, "source") != 0
            && ngx_strcmp(key, "category") != 0
            && ngx_strcmp(key, "tenant") != 0
            && ngx_strcmp(key, "data") != 0)
        {
            ngx_nexus_notify_invalid(r, "an event has event_type, severity, "
                                        "source, category, tenant and data "
                                        "only");
            return;
        }
    }

    if (ngx_nexus_notify_string(nx_json_get(v, "event_type"), 1,
                                NX_NOTIFY_TYPE_MAX, &nctx->event_type)
        != NGX_OK)
    {
        ngx_nexus_notify_invalid(r, "\"event_type\" is required: 1-128 of "
                                    "[a-z0-9_.-], starting with [a-z0-9]");
        return;
    }

    f = nx_json_get(v, "severity");
    if (f != NULL
        && ngx_nexus_notify_string(f, 1, NX_NOTIFY_SEVERITY_MAX,
                                   &nctx->severity) != NGX_OK)
    {
        ngx_nexus_notify_invalid(r, "\"severity\" must be 1-16 of [a-z]");
        return;
    }

    f = nx_json_get(v, "source");
    if (f != NULL
        && ngx_nexus_notify_string(f, 1, NX_NOTIFY_LABEL_MAX, &nctx->source)
           != NGX_OK)
    {
        ngx_nexus_notify_invalid(r, "\"source\" must be 1-128 of "
                                    "[A-Za-z0-9_.:/-]");
        return;
    }

    f = nx_json_get(v, "category");
    if (f != NULL
        && ngx_nexus_notify_string(f, 1, NX_NOTIFY_LABEL_MAX,
                                   &nctx->category) != NGX_OK)
    {
        ngx_nexus_notify_invalid(r, "\"category\" must be 1-128 of "
                                    "[A-Za-z0-9_.:/-]");
        return;
    }

    f = nx_json_get(v, "data");
    if (f != NULL) {
        if (!YAJL_IS_OBJECT(f)) {
            ngx_nexus_notify_invalid(r, "\"data\" must be a JSON object");
            return;
        }

        if (ngx_nexus_notify_canonical(r, f, &nctx->data) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    f = nx_json_get(v, "tenant");

    if (f != NULL && YAJL_IS_NULL(f)) {
        if (!ctx->principal.platform) {
            ngx_nexus_notify_invalid(r, "only a platform admin can send a "
                                        "platform event (\"tenant\": null)");
            return;
        }

        nctx->platform_event = 1;
        rc = ngx_nexus_notify_event_send(r, 0);

    } else if (f != NULL) {
        if (ngx_nexus_notify_string(f, 1, NGX_NEXUS_TENANT_MAX, &nctx->tenant)
            != NGX_OK
            || nx_tenant_name_valid((char *) nctx->tenant.data,
                                    nctx->tenant.len) != 0)
        {
            ngx_nexus_notify_invalid(r, "\"tenant\" is not a valid tenant "
                                        "name");
            return;
        }

        rc = ngx_nexus_notify_lookup(r, NGX_NEXUS_NOTIFY_THEN_EVENT);

    } else {
        rc = ngx_nexus_notify_event_send(r, ctx->principal.tenant_id);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_nexus_notify_event_send(ngx_http_request_t *r, int64_t tenant_id)
{
    int                      argc, i;
    char                     err[256];
    u_char                   tid[NGX_INT64_LEN + 1], ts[NGX_INT64_LEN + 1];
    ngx_str_t                rid;
    ngx_time_t              *tp;
    const char              *argv[NGX_NEXUS_REDIS_MAX_ARGS];
    size_t                   lens[NGX_NEXUS_REDIS_MAX_ARGS];
    ngx_nexus_ctx_t         *ctx;
    nx_notify_event_t       *ev;
    nx_notify_field_t        fields[12];
    ngx_nexus_redis_cmd_t   *cmd;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nctx = ctx->handler_ctx;

    if (!ngx_nexus_redis_configured()) {
        return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "DEPENDENCY_UNAVAILABLE",
                                    "events need nexus_redis", NULL);
    }

    tp = ngx_timeofday();

    argc = 0;

#define ngx_nexus_arg(s, n)                                                   \
    do { argv[argc] = (const char *) (s); lens[argc] = (n); argc++; }         \
    while (0)

    ngx_nexus_arg("XADD", 4);
    ngx_nexus_arg(NGX_NEXUS_NOTIFY_STREAM,
                  sizeof(NGX_NEXUS_NOTIFY_STREAM) - 1);
    ngx_nexus_arg("MAXLEN", 6);
    ngx_nexus_arg("~", 1);
    ngx_nexus_arg("100000", 6);
    ngx_nexus_arg("*", 1);

    /* the fields, from argv[6] on, in pairs */
    ngx_nexus_arg("type", 4);
    ngx_nexus_arg(nctx->event_type.data, nctx->event_type.len);

    if (tenant_id > 0) {
        ngx_nexus_arg("tenant_id", 9);
        ngx_nexus_arg(tid, ngx_sprintf(tid, "%L", tenant_id) - tid);
    }

    if (nctx->severity.len) {
        ngx_nexus_arg("severity", 8);
        ngx_nexus_arg(nctx->severity.data, nctx->severity.len);
    }

    if (nctx->source.len) {
        ngx_nexus_arg("source", 6);
        ngx_nexus_arg(nctx->source.data, nctx->source.len);
    }

    if (nctx->category.len) {
        ngx_nexus_arg("category", 8);
        ngx_nexus_arg(nctx->category.data, nctx->category.len);
    }

    ngx_nexus_arg("ts", 2);
    ngx_nexus_arg(ts, ngx_sprintf(ts, "%T%03M", tp->sec, tp->msec) - ts);

    if (nctx->data.len) {
        ngx_nexus_arg("payload", 7);
        ngx_nexus_arg(nctx->data.data, nctx->data.len);
    }

    if (ngx_nexus_request_id(r, &rid) == NGX_OK && rid.len) {
        ngx_nexus_arg("request_id", 10);
        ngx_nexus_arg(rid.data, rid.len);
    }

#undef ngx_nexus_arg

    /* the worker's own check: what it would dead-letter is refused here */

    for (i = 6; i < argc; i += 2) {
        fields[(i - 6) / 2].name = argv[i];
        fields[(i - 6) / 2].name_len = lens[i];
        fields[(i - 6) / 2].value = argv[i + 1];
        fields[(i - 6) / 2].value_len = lens[i + 1];
    }

    ev = ngx_palloc(r->pool, sizeof(nx_notify_event_t));
    if (ev == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (nx_notify_event_parse(fields, (argc - 6) / 2, ev, err, sizeof(err))
        != 0)
    {
        return ngx_nexus_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "VALIDATION_ERROR", err, NULL);
    }

    nx_notify_event_free(ev);

    cmd = ngx_nexus_redis_command(argc, argv, lens);
    if (cmd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cmd->handler = ngx_nexus_notify_event_done;
    cmd->data = r;

    if (ngx_nexus_redis_send(&cmd, 1) != NGX_OK) {
        return ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "DEPENDENCY_UNAVAILABLE",
                                    "Redis is unavailable, try again", NULL);
    }

    ctx->rcmd[0] = cmd;
    ngx_nexus_wait(r);

    return NGX_DONE;
}


static void
ngx_nexus_notify_event_done(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    u_char              *json, *p;
    ngx_http_request_t  *r;
    ngx_nexus_ctx_t     *ctx;

    r = cmd->data;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ctx->rcmd[0] = NULL;
    r->read_event_handler = ngx_http_block_reading;

    if (rc != NGX_OK || reply->type != REDIS_REPLY_STRING
        || reply->len == 0 || reply->len > 40)
    {
        ngx_http_finalize_request(r,
            ngx_nexus_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "DEPENDENCY_UNAVAILABLE",
                                 "Redis is unavailable, try again", NULL));
        return;
    }

    json = ngx_pnalloc(r->pool, 96 + reply->len);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* a stream id: digits and a dash */
    p = ngx_sprintf(json, "{\"event_id\":\"%*s\",\"stream\":\""
                    NGX_NEXUS_NOTIFY_STREAM "\"}",
                    reply->len, reply->str);

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_ACCEPTED, json, p - json));
}


static void
ngx_nexus_notify_ops_redis(ngx_http_request_t *r)
{
    const char             *argv[4];
    size_t                  lens[4];
    ngx_nexus_redis_cmd_t  *cmd;

    if (ngx_nexus_redis_configured()) {
        argv[0] = NGX_NEXUS_NOTIFY_STREAM;
        lens[0] = sizeof(NGX_NEXUS_NOTIFY_STREAM) - 1;
        argv[1] = NGX_NEXUS_NOTIFY_STREAM ":dead";
        lens[1] = sizeof(NGX_NEXUS_NOTIFY_STREAM ":dead") - 1;
        argv[2] = "nx:notify:dead";
        lens[2] = sizeof("nx:notify:dead") - 1;
        argv[3] = "notify";
        lens[3] = 6;

        cmd = ngx_nexus_redis_eval(&ngx_nexus_notify_ops_script, 3, 4, argv,
                                   lens);

        ngx_nexus_redis_ask(r, cmd, ngx_nexus_notify_ops_reply);
        return;
    }

    /* the queue's side is unknown: answer with PostgreSQL's alone */
    ngx_nexus_notify_ops_reply(r, NULL, NGX_DECLINED);
}



static void
ngx_nexus_notify_ops_reply(ngx_http_request_t *r, redisReply *reply,
    ngx_int_t rc)
{
    u_char                  *buf, *p;
    int64_t                  v[5];
    ngx_uint_t               i;
    ngx_nexus_ctx_t         *ctx;
    ngx_nexus_notify_ctx_t  *nctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    nctx = ctx->handler_ctx;
    r->read_event_handler = ngx_http_block_reading;

    buf = ngx_pnalloc(r->pool, nctx->json.len + 256);
    if (buf == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* {...PostgreSQL's...} + ,"queue":{...} */
    p = ngx_cpymem(buf, nctx->json.data, nctx->json.len - 1);

    if (rc == NGX_OK && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 5)
    {
        for (i = 0; i < 5; i++) {
            v[i] = reply->element[i]->type == REDIS_REPLY_INTEGER
                   ? (int64_t) reply->element[i]->integer : -1;
        }

        p = ngx_sprintf(p, ",\"queue\":{\"stream\":\""
                        NGX_NEXUS_NOTIFY_STREAM "\",\"length\":%L,"
                        "\"pending\":%L,\"lag\":%L,\"dead_letters\":%L,"
                        "\"dlq_stream\":%L}}",
                        v[0], v[1], v[2], v[3], v[4]);

    } else {
        p = ngx_cpymem(p, ",\"queue\":null}", 14);
    }

    ngx_http_finalize_request(r,
        ngx_nexus_send_data(r, NGX_HTTP_OK, buf, p - buf));
}


/* a JSON string of min..max bytes (no NUL: the body parser refused it) */

static ngx_int_t
ngx_nexus_notify_string(yajl_val v, size_t min, size_t max, ngx_str_t *out)
{
    const char  *s;
    size_t       len;

    if (nx_json_string(v, &s) != 0) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);

    if (len < min || len > max) {
        return NGX_ERROR;
    }

    out->data = (u_char *) s;
    out->len = len;

    return NGX_OK;
}


/* http:// or https://, a host, visible ASCII only */

static ngx_int_t
ngx_nexus_notify_url_valid(ngx_str_t *url)
{
    size_t   i, skip;
    u_char  *p;

    p = url->data;

    if (url->len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        skip = 7;

    } else if (url->len > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        skip = 8;

    } else {
        return NGX_ERROR;
    }

    if (p[skip] == '/' || p[skip] == '?' || p[skip] == '#') {
        return NGX_ERROR;
    }

    for (i = 0; i < url->len; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_notify_header_name(const char *name)
{
    size_t  i, len;

    static const char  *reserved[] = {
        "host", "content-type", "content-length", "transfer-encoding",
        "connection", "expect", NULL
    };

    len = ngx_strlen(name);

    if (len == 0 || len > 64
        || ngx_strncasecmp((u_char *) name, (u_char *) "x-notification-",
                           15) == 0)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (!((name[i] >= 'a' && name[i] <= 'z')
              || (name[i] >= 'A' && name[i] <= 'Z')
              || (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; reserved[i]; i++) {
        if (ngx_strcasecmp((u_char *) name, (u_char *) reserved[i]) == 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* canonical JSON text of v, copied into the request's pool */

static ngx_int_t
ngx_nexus_notify_canonical(ngx_http_request_t *r, yajl_val v, ngx_str_t *out)
{
    char    *s;
    size_t   len;

    s = nx_json_canonical(v, &len);
    if (s == NULL) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, len);
    out->len = len;
    free(s);

    return NGX_OK;
}
