/*
 * Copyright (C) Nexus authors
 *
 * nexusctl plans: load-plans, list-plans, set-plan and show-plan.
 *
 * The plan catalog (features, plans and the features of each plan) is
 * config/plans.json, compiled into nexusctl; load-plans --file loads
 * another file of the same shape. Loading makes the catalog in PostgreSQL
 * equal to the file, in one transaction, and refuses to drop a plan that
 * tenants are on or a feature that has overrides. migrate loads the
 * built-in catalog into an empty one (cli_plans_seed), so a new database
 * has plans at once; an operator's catalog is never overwritten by it.
 *
 * A tenant without a plan of its own is on the default plan. Every change
 * fires the triggers of 0011_plans.sql, which NOTIFY every nginx worker:
 * no reload is needed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nx_json.h>
#include <nx_plan.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_plan.h"
#include "cli_tenant.h"

#include "cli_plans_json.h"


/* what 0011_plans.sql accepts */
#define CLI_PLANS_MAX             32
#define CLI_FEATURES_MAX          64
#define CLI_PLAN_NAME_MAX         64
#define CLI_PLAN_DESC_MAX         256
#define CLI_FEATURES_JOINED_MAX   1024

#define CLI_PLANS_FILE_MAX        (1024 * 1024)


/*
 * $1 is the catalog, checked by cli_plans_check(). The statements run in
 * this order in one transaction: in-use checks, features, the default
 * flag (the unique index allows one default at a time), plans, their
 * features, and last the features that left the catalog.
 */

static const char  cli_plans_in_use_sql[] =
    "SELECT tp.plan_id, count(*) FROM tenant_plans tp"
    " WHERE tp.plan_id NOT IN (SELECT x ->> 'id'"
    " FROM jsonb_array_elements($1::jsonb -> 'plans') x)"
    " GROUP BY tp.plan_id ORDER BY tp.plan_id LIMIT 1";

static const char  cli_features_in_use_sql[] =
    "SELECT o.feature_key, count(*) FROM tenant_feature_overrides o"
    " WHERE o.feature_key NOT IN (SELECT x ->> 'key'"
    " FROM jsonb_array_elements($1::jsonb -> 'features') x)"
    " GROUP BY o.feature_key ORDER BY o.feature_key LIMIT 1";

static const char  *cli_plans_load_sql[] = {

    "INSERT INTO features AS f (key, description, position)"
    " SELECT x ->> 'key', coalesce(x ->> 'description', ''), o"
    " FROM jsonb_array_elements($1::jsonb -> 'features')"
    " WITH ORDINALITY AS e(x, o)"
    " ON CONFLICT (key) DO UPDATE SET description = EXCLUDED.description,"
    " position = EXCLUDED.position",

    "UPDATE plans SET is_default = false"
    " WHERE is_default AND id <> $1::jsonb ->> 'default_plan'",

    "DELETE FROM plans WHERE id NOT IN (SELECT x ->> 'id'"
    " FROM jsonb_array_elements($1::jsonb -> 'plans') x)",

    "INSERT INTO plans AS p (id, name, description, is_default, position)"
    " SELECT x ->> 'id', x ->> 'name', coalesce(x ->> 'description', ''),"
    " x ->> 'id' = $1::jsonb ->> 'default_plan', o"
    " FROM jsonb_array_elements($1::jsonb -> 'plans')"
    " WITH ORDINALITY AS e(x, o)"
    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
    " description = EXCLUDED.description,"
    " is_default = EXCLUDED.is_default, position = EXCLUDED.position,"
    " updated_at = now()",

    "DELETE FROM plan_features pf WHERE NOT EXISTS (SELECT 1"
    " FROM jsonb_array_elements($1::jsonb -> 'plans') x,"
    " jsonb_array_elements_text(x -> 'features') k"
    " WHERE x ->> 'id' = pf.plan_id AND k = pf.feature_key)",

    "INSERT INTO plan_features (plan_id, feature_key)"
    " SELECT x ->> 'id', k FROM jsonb_array_elements($1::jsonb -> 'plans') x,"
    " jsonb_array_elements_text(x -> 'features') k"
    " ON CONFLICT DO NOTHING",

    "DELETE FROM features WHERE key NOT IN (SELECT x ->> 'key'"
    " FROM jsonb_array_elements($1::jsonb -> 'features') x)",

    NULL
};

static const char  cli_plans_count_sql[] =
    "SELECT (SELECT count(*) FROM plans), (SELECT count(*) FROM features),"
    " coalesce((SELECT id FROM plans WHERE is_default), '-')";

static const char  cli_plans_empty_sql[] =
    "SELECT to_regclass('plans') IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM plans)";

static const char  cli_plans_list_sql[] =
    "SELECT p.id, p.name, CASE WHEN p.is_default THEN 'yes' ELSE '' END"
    " AS default,"
    " (SELECT count(*) FROM plan_features pf WHERE pf.plan_id = p.id)"
    " AS features,"
    " (SELECT count(*) FROM tenant_plans tp WHERE tp.plan_id = p.id)"
    " AS tenants"
    " FROM plans p ORDER BY p.position, p.id";

/*
 * The plan of a tenant, as the admin API returns it: plan id, assigned,
 * features and overrides, or the whole document (--json).
 */

static const char  cli_plan_show_sql[] =
    "SELECT nexus_tenant_plan(t.id),"
    " EXISTS (SELECT 1 FROM tenant_plans tp WHERE tp.tenant_id = t.id),"
    " (SELECT string_agg(f, ',' ORDER BY f)"
    " FROM nexus_features(t.id) AS x(f)),"
    " (SELECT string_agg(o.feature_key || '='"
    " || CASE WHEN o.enabled THEN 'on' ELSE 'off' END, ','"
    " ORDER BY o.feature_key) FROM tenant_feature_overrides o"
    " WHERE o.tenant_id = t.id),"
    " nexus_plan_json(t.id)::text"
    " FROM tenants t WHERE t.name = $1";

static const char  cli_plan_set_sql[] =
    "SELECT nexus_plan_assign($1, 0, $2, 'nexusctl') IS NOT NULL";

/* the catalog is the platform's (chain 0); $1 where it came from */
static const cli_audit_event_t  cli_plans_event = {
    "admin.plan_catalog.loaded",
    "SELECT 0, json_build_object('source', $1::text,"
    " 'plans', (SELECT count(*) FROM plans),"
    " 'features', (SELECT count(*) FROM features),"
    " 'default_plan', (SELECT id FROM plans WHERE is_default))"
};

static const cli_audit_event_t  cli_plan_event = {
    "admin.plan.updated",
    CLI_AUDIT_TENANT("'plan_id', nexus_tenant_plan(t.id), 'assigned',"
                     " EXISTS (SELECT 1 FROM tenant_plans tp"
                     " WHERE tp.tenant_id = t.id)")
};


static int cli_plans_read(const char *path, char **buf);
static int cli_plans_check(const char *what, yajl_val v);
static int cli_plans_check_features(const char *what, yajl_val features);
static int cli_plans_check_plans(const char *what, yajl_val plans,
    yajl_val features, const char *def);
static int cli_plans_has_key(yajl_val features, const char *key);
static int cli_plans_load(PGconn *conn, const char *what, const char *json,
    const char *verb, const cli_audit_event_t *ev);
static int cli_plans_in_use(PGconn *conn, const char *json, const char *what,
    const char *sql, const char *fmt);
static int cli_plan_print(PGconn *conn, const char *tenant, int json);


static const struct option  cli_load_plans_opts[] = {
    { "file",       required_argument,  NULL,  'f' },
    { NULL,         0,                  NULL,  0 }
};

static const struct option  cli_list_plans_opts[] = {
    { NULL,         0,                  NULL,  0 }
};

static const struct option  cli_set_plan_opts[] = {
    { "tenant",     required_argument,  NULL,  't' },
    { "plan",       required_argument,  NULL,  'p' },
    { "default",    no_argument,        NULL,  'd' },
    { NULL,         0,                  NULL,  0 }
};

static const struct option  cli_show_plan_opts[] = {
    { "tenant",     required_argument,  NULL,  't' },
    { "json",       no_argument,        NULL,  'j' },
    { NULL,         0,                  NULL,  0 }
};


int
cli_load_plans(int argc, char **argv)
{
    int          rc;
    char        *buf;
    PGconn      *conn;
    const char  *file, *json, *what;

    file = NULL;

    rc = cli_opt_read(argc, argv, cli_load_plans_opts,
                      (void *[]) { &file });
    if (rc != -1) {
        return rc;
    }

    buf = NULL;

    if (file != NULL) {
        if (cli_plans_read(file, &buf) != 0) {
            return CLI_USAGE;
        }

        json = buf;
        what = file;

    } else {
        json = cli_plans_json;
        what = "the built-in catalog";
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        free(buf);
        return rc;
    }

    rc = cli_plans_load(conn, what, json, argv[0], &cli_plans_event);

    cli_db_close(conn);
    free(buf);

    return rc;
}


/*
 * Called by migrate once the migrations are applied: the built-in catalog
 * goes into an empty one, and nothing happens otherwise. Like the
 * migrations, the seed is not in the audit log.
 */

int
cli_plans_seed(PGconn *conn)
{
    int        empty;
    PGresult  *res;

    res = cli_db_exec(conn, cli_plans_empty_sql, 0, NULL);

    if (!cli_db_ok(res)) {
        empty = cli_db_fail(conn, res, "cannot read the plan catalog");
        PQclear(res);
        return empty;
    }

    empty = (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't');

    PQclear(res);

    if (!empty) {
        return CLI_OK;
    }

    return cli_plans_load(conn, "the built-in catalog", cli_plans_json,
                          "migrate", NULL);
}


/* a whole file into a NUL-terminated buffer, at most CLI_PLANS_FILE_MAX */

static int
cli_plans_read(const char *path, char **buf)
{
    FILE         *f;
    char         *p;
    size_t        n;
    struct stat   st;

    f = fopen(path, "r");
    if (f == NULL) {
        cli_error("cannot open \"%s\": %m", cli_quote(path));
        return -1;
    }

    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)
        || st.st_size > CLI_PLANS_FILE_MAX)
    {
        cli_error("\"%s\" is not a regular file of at most 1 MB",
                  cli_quote(path));
        fclose(f);
        return -1;
    }

    p = malloc(st.st_size + 1);
    if (p == NULL) {
        cli_error("out of memory");
        fclose(f);
        return -1;
    }

    n = fread(p, 1, st.st_size, f);

    if (ferror(f) || n != (size_t) st.st_size) {
        cli_error("cannot read \"%s\"", cli_quote(path));
        free(p);
        fclose(f);
        return -1;
    }

    fclose(f);

    p[n] = '\0';
    *buf = p;

    return 0;
}


static int
cli_plans_load(PGconn *conn, const char *what, const char *json,
    const char *verb, const cli_audit_event_t *ev)
{
    int          rc, i;
    char         err[256];
    yajl_val     v;
    PGresult    *res;
    const char  *values[1];

    v = nx_json_parse_strict(json, strlen(json), err, sizeof(err));
    if (v == NULL) {
        cli_error("%s is not valid JSON: %s", what, err);
        return CLI_USAGE;
    }

    rc = cli_plans_check(what, v);

    nx_json_free(v);

    if (rc != 0) {
        return CLI_USAGE;
    }

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        return rc;
    }

    rc = cli_plans_in_use(conn, json, what, cli_plans_in_use_sql,
                          "plan \"%s\" is not in %s but %s tenant(s) are "
                          "on it: move them with set-plan first");
    if (rc != CLI_OK) {
        goto failed;
    }

    rc = cli_plans_in_use(conn, json, what, cli_features_in_use_sql,
                          "feature \"%s\" is not in %s but %s tenant(s) "
                          "have an override of it: remove them first");
    if (rc != CLI_OK) {
        goto failed;
    }

    values[0] = json;

    for (i = 0; cli_plans_load_sql[i] != NULL; i++) {
        res = cli_db_exec(conn, cli_plans_load_sql[i], 1, values);

        if (!cli_db_ok(res)) {
            rc = cli_db_fail(conn, res, "cannot load the plan catalog");
            PQclear(res);
            goto failed;
        }

        PQclear(res);
    }

    res = cli_db_exec(conn, cli_plans_count_sql, 0, NULL);

    if (!cli_db_ok(res) || PQntuples(res) != 1) {
        rc = cli_db_fail(conn, res, "cannot load the plan catalog");
        PQclear(res);
        goto failed;
    }

    /* the features' size is checked at commit (features_bound) */
    rc = (ev != NULL) ? cli_audit_commit(conn, ev, 1, &what)
                      : cli_db_commit(conn);
    if (rc != CLI_OK) {
        PQclear(res);
        cli_db_rollback(conn);
        return rc;
    }

    printf("%s: loaded %s: %s plans, %s features, default plan %s\n",
           verb, what, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
           PQgetvalue(res, 0, 2));

    PQclear(res);

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;

failed:

    cli_db_rollback(conn);

    return rc;
}


static int
cli_plans_in_use(PGconn *conn, const char *json, const char *what,
    const char *sql, const char *fmt)
{
    int          rc;
    PGresult    *res;
    const char  *values[1];

    values[0] = json;

    res = cli_db_exec(conn, sql, 1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot load the plan catalog");
        PQclear(res);
        return rc;
    }

    rc = CLI_OK;

    if (PQntuples(res) == 1) {
        cli_error(fmt, cli_quote(PQgetvalue(res, 0, 0)), what,
                  PQgetvalue(res, 0, 1));
        rc = CLI_FAILED;
    }

    PQclear(res);

    return rc;
}


/*
 * {"default_plan": ID, "features": [{"key", "description"}...],
 *  "plans": [{"id", "name", "description", "features": [KEY...]}...]}
 */

static int
cli_plans_check(const char *what, yajl_val v)
{
    yajl_val     features, plans;
    const char  *def;

    if (!YAJL_IS_OBJECT(v)) {
        cli_error("%s: the catalog must be a JSON object", what);
        return -1;
    }

    if (nx_json_string(nx_json_get(v, "default_plan"), &def) != 0
        || nx_plan_id_valid(def, strlen(def)) != 0)
    {
        cli_error("%s: \"default_plan\" must be a plan id", what);
        return -1;
    }

    features = nx_json_get(v, "features");
    plans = nx_json_get(v, "plans");

    if (cli_plans_check_features(what, features) != 0
        || cli_plans_check_plans(what, plans, features, def) != 0)
    {
        return -1;
    }

    return 0;
}


static int
cli_plans_check_features(const char *what, yajl_val features)
{
    size_t       i, j, joined;
    yajl_val     f, d;
    const char  *key, *s, *other;

    if (features == NULL || !YAJL_IS_ARRAY(features)
        || features->u.array.len == 0
        || features->u.array.len > CLI_FEATURES_MAX)
    {
        cli_error("%s: \"features\" must be an array of 1 to %d features",
                  what, CLI_FEATURES_MAX);
        return -1;
    }

    joined = 0;

    for (i = 0; i < features->u.array.len; i++) {
        f = features->u.array.values[i];

        if (!YAJL_IS_OBJECT(f)
            || nx_json_string(nx_json_get(f, "key"), &key) != 0
            || nx_feature_key_valid(key, strlen(key), NULL) != 0)
        {
            cli_error("%s: feature %zu: \"key\" must be \"feature.\" and "
                      "1 to 32 of a-z 0-9 _ in segments joined by dots",
                      what, i + 1);
            return -1;
        }

        d = nx_json_get(f, "description");

        if (d != NULL
            && (nx_json_string(d, &s) != 0
                || strlen(s) > CLI_PLAN_DESC_MAX))
        {
            cli_error("%s: feature \"%s\": \"description\" must be a "
                      "string of at most %d bytes", what, key,
                      CLI_PLAN_DESC_MAX);
            return -1;
        }

        for (j = 0; j < i; j++) {
            (void) nx_json_string(nx_json_get(features->u.array.values[j],
                                              "key"), &other);

            if (strcmp(other, key) == 0) {
                cli_error("%s: feature \"%s\" appears twice", what, key);
                return -1;
            }
        }

        joined += strlen(key) - NX_FEATURE_PREFIX_LEN + (i ? 1 : 0);
    }

    if (joined > CLI_FEATURES_JOINED_MAX) {
        cli_error("%s: the feature names joined with \",\" must fit in %d "
                  "bytes", what, CLI_FEATURES_JOINED_MAX);
        return -1;
    }

    return 0;
}


static int
cli_plans_check_plans(const char *what, yajl_val plans, yajl_val features,
    const char *def)
{
    size_t       i, j, k;
    yajl_val     p, d, keys;
    const char  *id, *s, *other;
    int          have_default;

    if (plans == NULL || !YAJL_IS_ARRAY(plans) || plans->u.array.len == 0
        || plans->u.array.len > CLI_PLANS_MAX)
    {
        cli_error("%s: \"plans\" must be an array of 1 to %d plans",
                  what, CLI_PLANS_MAX);
        return -1;
    }

    have_default = 0;

    for (i = 0; i < plans->u.array.len; i++) {
        p = plans->u.array.values[i];

        if (!YAJL_IS_OBJECT(p)
            || nx_json_string(nx_json_get(p, "id"), &id) != 0
            || nx_plan_id_valid(id, strlen(id)) != 0)
        {
            cli_error("%s: plan %zu: \"id\" must be 1 to 32 of a-z 0-9 _ -, "
                      "starting with a-z 0-9", what, i + 1);
            return -1;
        }

        if (nx_json_string(nx_json_get(p, "name"), &s) != 0
            || s[0] == '\0' || strlen(s) > CLI_PLAN_NAME_MAX)
        {
            cli_error("%s: plan \"%s\": \"name\" must be a string of 1 to "
                      "%d bytes", what, id, CLI_PLAN_NAME_MAX);
            return -1;
        }

        d = nx_json_get(p, "description");

        if (d != NULL
            && (nx_json_string(d, &s) != 0
                || strlen(s) > CLI_PLAN_DESC_MAX))
        {
            cli_error("%s: plan \"%s\": \"description\" must be a string "
                      "of at most %d bytes", what, id, CLI_PLAN_DESC_MAX);
            return -1;
        }

        for (j = 0; j < i; j++) {
            (void) nx_json_string(nx_json_get(plans->u.array.values[j],
                                              "id"), &other);

            if (strcmp(other, id) == 0) {
                cli_error("%s: plan \"%s\" appears twice", what, id);
                return -1;
            }
        }

        keys = nx_json_get(p, "features");

        if (keys == NULL || !YAJL_IS_ARRAY(keys)) {
            cli_error("%s: plan \"%s\": \"features\" must be an array of "
                      "feature keys", what, id);
            return -1;
        }

        for (j = 0; j < keys->u.array.len; j++) {

            if (nx_json_string(keys->u.array.values[j], &s) != 0
                || !cli_plans_has_key(features, s))
            {
                cli_error("%s: plan \"%s\": feature %zu is not a key of "
                          "\"features\"", what, id, j + 1);
                return -1;
            }

            for (k = 0; k < j; k++) {
                (void) nx_json_string(keys->u.array.values[k], &other);

                if (strcmp(other, s) == 0) {
                    cli_error("%s: plan \"%s\": feature \"%s\" appears "
                              "twice", what, id, s);
                    return -1;
                }
            }
        }

        if (strcmp(id, def) == 0) {
            have_default = 1;
        }
    }

    if (!have_default) {
        cli_error("%s: the default plan \"%s\" is not one of \"plans\"",
                  what, def);
        return -1;
    }

    return 0;
}


static int
cli_plans_has_key(yajl_val features, const char *key)
{
    size_t       i;
    const char  *s;

    for (i = 0; i < features->u.array.len; i++) {
        if (nx_json_string(nx_json_get(features->u.array.values[i], "key"),
                           &s) == 0
            && strcmp(s, key) == 0)
        {
            return 1;
        }
    }

    return 0;
}


int
cli_list_plans(int argc, char **argv)
{
    int        c, rc;
    PGconn    *conn;
    PGresult  *res;

    c = cli_getopt(argc, argv, cli_list_plans_opts);
    if (c != -1) {
        return cli_opt_usage(argv[0], c);
    }

    if (cli_opt_end(argc, argv) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    res = cli_db_exec(conn, cli_plans_list_sql, 0, NULL);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot list plans");

    } else if (cli_table_print(res) != 0 || cli_flush() != 0) {
        rc = CLI_FAILED;

    } else {
        rc = CLI_OK;
    }

    PQclear(res);
    cli_db_close(conn);

    return rc;
}


int
cli_set_plan(int argc, char **argv)
{
    int          rc, def;
    PGconn      *conn;
    PGresult    *res;
    const char  *tenant, *plan, *values[2];

    tenant = NULL;
    plan = NULL;
    def = 0;

    rc = cli_opt_read(argc, argv, cli_set_plan_opts,
                      (void *[]) { &tenant, &plan, &def });
    if (rc != -1) {
        return rc;
    }

    if (tenant == NULL || (plan == NULL) == !def) {
        cli_error("%s: --tenant and one of --plan and --default are "
                  "required", argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    if (cli_tenant_name_check(tenant) != 0) {
        return CLI_USAGE;
    }

    if (plan != NULL && nx_plan_id_valid(plan, strlen(plan)) != 0) {
        cli_error("invalid plan \"%s\": 1 to 32 of a-z 0-9 _ -, starting "
                  "with a-z 0-9", cli_quote(plan));
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    values[0] = tenant;
    values[1] = plan;

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    res = cli_db_exec(conn, cli_plan_set_sql, 2, values);

    if (cli_db_state(res, CLI_DB_FOREIGN_KEY_VIOLATION)) {
        cli_error("plan \"%s\" is not in the catalog (see list-plans)",
                  cli_quote(plan));
        rc = CLI_FAILED;

    } else if (!cli_db_ok(res) || PQntuples(res) != 1) {
        rc = cli_db_fail(conn, res, "cannot set the plan");

    } else if (PQgetvalue(res, 0, 0)[0] != 't') {
        cli_error("tenant \"%s\" not found", tenant);
        rc = CLI_FAILED;

    } else {
        rc = cli_audit_commit(conn, &cli_plan_event, 1, values);

        if (rc == CLI_OK) {
            rc = cli_plan_print(conn, tenant, 0);
        }
    }

    PQclear(res);
    cli_db_rollback(conn);
    cli_db_close(conn);

    return rc;
}


int
cli_show_plan(int argc, char **argv)
{
    int          rc, json;
    PGconn      *conn;
    const char  *tenant;

    tenant = NULL;
    json = 0;

    rc = cli_opt_read(argc, argv, cli_show_plan_opts,
                      (void *[]) { &tenant, &json });
    if (rc != -1) {
        return rc;
    }

    if (cli_tenant_required(argv[0], tenant) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = cli_plan_print(conn, tenant, json);

    cli_db_close(conn);

    return rc;
}


/*
 * plan of tenant T: plan=P assigned=yes|no features=K,K overrides=K=on,...
 * or, with json, the document GET /v1/admin/plans/{tenant} returns.
 */

static int
cli_plan_print(PGconn *conn, const char *tenant, int json)
{
    int          rc;
    PGresult    *res;
    const char  *values[1];

    values[0] = tenant;

    res = cli_db_exec(conn, cli_plan_show_sql, 1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot show the plan");
        PQclear(res);
        return rc;
    }

    if (PQntuples(res) != 1) {
        cli_error("tenant \"%s\" not found", tenant);
        PQclear(res);
        return CLI_FAILED;
    }

    if (json) {
        printf("%s\n", PQgetvalue(res, 0, 4));

    } else {
        printf("plan of tenant %s: plan=%s assigned=%s features=%s "
               "overrides=%s\n", tenant,
               PQgetisnull(res, 0, 0) ? "none" : PQgetvalue(res, 0, 0),
               (PQgetvalue(res, 0, 1)[0] == 't') ? "yes" : "no",
               PQgetisnull(res, 0, 2) ? "none" : PQgetvalue(res, 0, 2),
               PQgetisnull(res, 0, 3) ? "none" : PQgetvalue(res, 0, 3));
    }

    PQclear(res);

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}
