/*
 * Copyright (C) Nexus authors
 *
 * Usage summaries: one SQL statement, shared by GET /v1/admin/usage/{tenant}
 * and nexusctl show-usage --json so that both print the same document.
 *
 * Parameters: $1 the tenant's name, $2 the id of the only tenant the caller
 * may see (0: any), $3 the period, "day" or "month" (anything else reads as
 * "day": callers check it first). Periods are the current UTC day or month,
 * by the database's clock. One row, one column, when the tenant exists and
 * may be seen: {"tenant", "period", "start", "end", "requests",
 * "prompt_tokens", "completion_tokens", "total_tokens", "estimated",
 * "models": [{"model", "requests", ...}]}; "model" is the model the client
 * asked for (null where the request named none). No row otherwise.
 */

#ifndef NX_USAGE_H
#define NX_USAGE_H


#define NX_USAGE_PERIOD_LO                                                   \
    "date_trunc(CASE WHEN $3::text = 'month' THEN 'month' ELSE 'day' END,"  \
    " now() AT TIME ZONE 'UTC')"

#define NX_USAGE_PERIOD_LEN                                                  \
    "CASE WHEN $3::text = 'month' THEN interval '1 month'"                   \
    " ELSE interval '1 day' END"

#define NX_USAGE_UTC(ts)                                                     \
    "to_char(" ts ", 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

#define NX_USAGE_SUMS(p)                                                     \
    "'requests', coalesce(sum(" p "requests), 0),"                           \
    " 'prompt_tokens', coalesce(sum(" p "prompt_tokens), 0),"                \
    " 'completion_tokens', coalesce(sum(" p "completion_tokens), 0),"        \
    " 'total_tokens', coalesce(sum(" p "total_tokens), 0),"                  \
    " 'estimated', coalesce(sum(" p "estimated), 0)"

#define NX_USAGE_SQL                                                         \
    "SELECT json_build_object('tenant', t.name,"                             \
    " 'period', CASE WHEN $3::text = 'month' THEN 'month' ELSE 'day' END,"  \
    " 'start', " NX_USAGE_UTC("b.lo") ", 'end', " NX_USAGE_UTC("b.hi") ","   \
    " " NX_USAGE_SUMS("u.") ","                                              \
    " 'models', coalesce(json_agg(json_build_object('model', u.model,"       \
    " 'requests', u.requests, 'prompt_tokens', u.prompt_tokens,"            \
    " 'completion_tokens', u.completion_tokens,"                            \
    " 'total_tokens', u.total_tokens, 'estimated', u.estimated)"            \
    " ORDER BY u.model NULLS LAST) FILTER (WHERE u.requests IS NOT NULL),"   \
    " '[]'))::text"                                                          \
    " FROM tenants t"                                                        \
    " CROSS JOIN (SELECT " NX_USAGE_PERIOD_LO " AS lo,"                      \
    " " NX_USAGE_PERIOD_LO " + " NX_USAGE_PERIOD_LEN " AS hi) b"             \
    " LEFT JOIN LATERAL (SELECT e.model_requested AS model,"                 \
    " count(*) AS requests, sum(e.prompt_tokens) AS prompt_tokens,"         \
    " sum(e.completion_tokens) AS completion_tokens,"                       \
    " sum(e.total_tokens) AS total_tokens,"                                  \
    " count(*) FILTER (WHERE e.estimated) AS estimated"                      \
    " FROM usage_events e WHERE e.tenant_id = t.id"                          \
    " AND e.created_at >= b.lo AT TIME ZONE 'UTC'"                           \
    " AND e.created_at < b.hi AT TIME ZONE 'UTC'"                            \
    " GROUP BY e.model_requested) u ON true"                                 \
    " WHERE t.name = $1 AND ($2::bigint = 0 OR t.id = $2::bigint)"           \
    " GROUP BY t.name, b.lo, b.hi"


#endif /* NX_USAGE_H */
