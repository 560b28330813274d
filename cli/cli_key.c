/*
 * Copyright (C) Nexus authors
 *
 * nexusctl API keys: create-key, list-keys and revoke-key, and the parsing
 * of --prefix that set-limits and show-limits share.
 *
 * A key is printed once, by create-key, and is stored only as
 * HMAC-SHA256(pepper, key) next to its clear prefix. Neither the key nor
 * its hash appears in any other output or error message: database errors
 * are reported by their primary message only, never their detail, which
 * could quote the row.
 */

#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nx_duration.h>
#include <nx_key.h>
#include <nx_name.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_key.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


#define CLI_PEPPER_ENV     "NEXUS_KEY_PEPPER_FILE"

/* a fresh prefix or hash colliding is rare; three retries are plenty */
#define CLI_KEY_ATTEMPTS   4


typedef struct {
    const char  *tenant;
    const char  *name;
    const char  *role;
    const char  *scopes;        /* NULL: the column default */
    const char  *expires_in;    /* NULL: never expires */
    char         expires_secs[24];
} cli_key_args_t;


static int cli_key_args_check(const char *verb, cli_key_args_t *a);
static int cli_key_pepper(uint8_t *pepper, size_t size, size_t *len);
static int cli_key_insert(PGconn *conn, const cli_tenant_t *t,
    const cli_key_args_t *a, const uint8_t *pepper, size_t pepper_len);
static int cli_key_is_collision(const PGresult *res);
static int cli_key_print(const cli_key_args_t *a, const PGresult *res,
    const nx_key_t *key);
static int cli_key_prefix_arg(const char *arg, char *prefix);


static const struct option  cli_create_key_opts[] = {
    { "tenant",       required_argument,  NULL,  't' },
    { "name",         required_argument,  NULL,  'n' },
    { "role",         required_argument,  NULL,  'r' },
    { "scopes",       required_argument,  NULL,  's' },
    { "expires-in",   required_argument,  NULL,  'e' },
    { NULL,           0,                  NULL,  0 }
};

static const struct option  cli_list_keys_opts[] = {
    { "tenant",       required_argument,  NULL,  't' },
    { NULL,           0,                  NULL,  0 }
};

static const struct option  cli_revoke_key_opts[] = {
    { "prefix",       required_argument,  NULL,  'p' },
    { NULL,           0,                  NULL,  0 }
};


/* the key as the admin API records it: its row, never the key or hash */

#define CLI_KEY_AUDIT_SQL                                                    \
    "SELECT k.tenant_id, json_build_object('id', k.id, 'tenant', t.name,"   \
    " 'name', k.name, 'prefix', k.prefix, 'role', k.role,"                  \
    " 'scopes', k.scopes, 'status', k.status, 'expires_at', k.expires_at,"  \
    " 'created_at', k.created_at, 'revoked_at', k.revoked_at)"              \
    " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"                 \
    " WHERE k.prefix = $1"

static const cli_audit_event_t  cli_key_created = {
    "auth.api_key.created", CLI_KEY_AUDIT_SQL
};

static const cli_audit_event_t  cli_key_revoked = {
    "auth.api_key.revoked", CLI_KEY_AUDIT_SQL
};


/*
 * $1 tenant id, $2 name, $3 prefix, $4 hash (binary), $5 role,
 * $6 lifetime in seconds or NULL, $7 scopes as "a,b" (second form only)
 */

#define CLI_KEY_RETURNING                                                    \
    "RETURNING id, NULLIF(array_to_string(scopes, ','), '') AS scopes, "     \
    CLI_DB_TS("expires_at") " AS expires_at"

static const char  *cli_key_insert_sql[2] = {

    "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, role,"
    " expires_at) "
    "VALUES ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 second') "
    CLI_KEY_RETURNING,

    "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, role,"
    " expires_at, scopes) "
    "VALUES ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 second',"
    " string_to_array($7, ',')) "
    CLI_KEY_RETURNING
};


int
cli_create_key(int argc, char **argv)
{
    int              rc;
    size_t           pepper_len;
    PGconn          *conn;
    uint8_t          pepper[NX_PEPPER_MAX];
    cli_tenant_t     t;
    cli_key_args_t   a;

    memset(&a, 0, sizeof(cli_key_args_t));
    a.role = "reader";

    rc = cli_opt_read(argc, argv, cli_create_key_opts,
                      (void *[]) { &a.tenant, &a.name, &a.role, &a.scopes,
                                   &a.expires_in });
    if (rc != -1) {
        return rc;
    }

    if (cli_key_args_check(argv[0], &a) != 0) {
        return CLI_USAGE;
    }

    rc = cli_key_pepper(pepper, sizeof(pepper), &pepper_len);
    if (rc != CLI_OK) {
        return rc;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        goto done;
    }

    rc = cli_tenant_find(conn, a.tenant, &t);
    if (rc != CLI_OK) {
        goto done;
    }

    if (!t.active) {
        cli_warn("tenant \"%s\" is suspended: the key will not authenticate "
                 "until the tenant is active again", a.tenant);
    }

    rc = cli_key_insert(conn, &t, &a, pepper, pepper_len);

done:

    explicit_bzero(pepper, sizeof(pepper));
    cli_db_close(conn);

    return rc;
}


static int
cli_key_args_check(const char *verb, cli_key_args_t *a)
{
    int64_t  secs;

    if (a->tenant == NULL || a->name == NULL) {
        cli_error("%s: --tenant and --name are required", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (cli_tenant_name_check(a->tenant) != 0) {
        return -1;
    }

    if (nx_key_name_valid(a->name, strlen(a->name)) != 0) {
        cli_error("invalid key name \"%s\": 1 to 128 printable ASCII "
                  "characters", cli_quote(a->name));
        return -1;
    }

    if (nx_role_parse(a->role, strlen(a->role)) < 0) {
        cli_error("invalid role \"%s\": reader, editor or admin",
                  cli_quote(a->role));
        return -1;
    }

    if (a->scopes != NULL && nx_scopes_valid(a->scopes, strlen(a->scopes)) != 0)
    {
        cli_error("invalid scopes \"%s\": a comma-separated list of up to "
                  "32 scopes of a-z 0-9 _ : . * -", cli_quote(a->scopes));
        return -1;
    }

    if (a->expires_in != NULL) {

        if (nx_duration_parse(a->expires_in, strlen(a->expires_in), &secs)
            != 0)
        {
            cli_error("invalid duration \"%s\": a positive number and a "
                      "unit s, m, h, d or w, e.g. 30d",
                      cli_quote(a->expires_in));
            return -1;
        }

        snprintf(a->expires_secs, sizeof(a->expires_secs), "%" PRId64, secs);
    }

    return 0;
}


static int
cli_key_pepper(uint8_t *pepper, size_t size, size_t *len)
{
    int          n;
    char         err[256];
    const char  *path;

    path = getenv(CLI_PEPPER_ENV);

    if (path == NULL || path[0] == '\0') {
        cli_error(CLI_PEPPER_ENV " is not set: create-key needs the key "
                  "pepper");
        return CLI_USAGE;
    }

    err[0] = '\0';

    n = nx_pepper_load(path, pepper, size, err, sizeof(err));

    if (n < 0) {
        cli_error(CLI_PEPPER_ENV ": %s",
                  err[0] ? err : "invalid pepper");
        return CLI_USAGE;
    }

    *len = (size_t) n;

    return CLI_OK;
}


/*
 * Each attempt runs in its own transaction, and the key is printed before
 * COMMIT: if it cannot be written out, the transaction is rolled back, so
 * no key exists that nobody has seen.
 */

static int
cli_key_insert(PGconn *conn, const cli_tenant_t *t, const cli_key_args_t *a,
    const uint8_t *pepper, size_t pepper_len)
{
    int          attempt, rc, n;
    Oid          types[7];
    int          lengths[7], formats[7];
    nx_key_t     key;
    PGresult    *res;
    const char  *values[7];

    memset(types, 0, sizeof(types));
    memset(lengths, 0, sizeof(lengths));
    memset(formats, 0, sizeof(formats));

    values[0] = t->id;
    values[1] = a->name;
    values[4] = a->role;
    values[5] = (a->expires_in != NULL) ? a->expires_secs : NULL;
    values[6] = a->scopes;

    types[3] = CLI_DB_BYTEA_OID;
    lengths[3] = NX_HASH_LEN;
    formats[3] = 1;

    n = (a->scopes != NULL) ? 7 : 6;

    res = NULL;
    rc = CLI_FAILED;

    for (attempt = 0; attempt < CLI_KEY_ATTEMPTS; attempt++) {

        if (nx_key_generate(pepper, pepper_len, &key) != 0) {
            cli_error("cannot generate a key: no randomness available");
            rc = CLI_FAILED;
            goto done;
        }

        values[2] = key.prefix;
        values[3] = (const char *) key.hash;

        rc = cli_db_begin(conn);
        if (rc != CLI_OK) {
            goto done;
        }

        res = PQexecParams(conn, cli_key_insert_sql[n == 7], n, types,
                           values, lengths, formats, 0);

        if (cli_db_ok(res)) {
            break;
        }

        if (!cli_key_is_collision(res)) {

            if (cli_db_state(res, CLI_DB_FOREIGN_KEY_VIOLATION)) {
                /* the tenant was deleted since we looked it up */
                cli_error("tenant \"%s\" not found", a->tenant);
                rc = CLI_FAILED;

            } else {
                rc = cli_db_fail(conn, res, "cannot create key");
            }

            goto done;
        }

        PQclear(res);
        res = NULL;
        cli_db_rollback(conn);
    }

    if (attempt == CLI_KEY_ATTEMPTS) {
        cli_error("cannot create key: %d generated keys collided with "
                  "existing ones", CLI_KEY_ATTEMPTS);
        rc = CLI_FAILED;
        goto done;
    }

    /*
     * Printed before the commit, so that a key nobody saw is never
     * created; audited after printing, because appending to the audit
     * chain locks the tenant's chain head until the commit, and a slow
     * reader of our output must not hold up the gateway's audit writers.
     */
    if (cli_key_print(a, res, &key) != 0) {
        cli_error("the key was not created");
        rc = CLI_FAILED;
        goto done;
    }

    rc = cli_audit_write(conn, &cli_key_created, 1, &values[2]);
    if (rc == CLI_OK) {
        rc = cli_db_commit(conn);
    }

    if (rc != CLI_OK) {
        cli_error("the key printed above was NOT created: do not use it");
    }

done:

    explicit_bzero(&key, sizeof(nx_key_t));
    PQclear(res);
    cli_db_rollback(conn);

    return rc;
}


static int
cli_key_is_collision(const PGresult *res)
{
    const char  *name;

    if (!cli_db_state(res, CLI_DB_UNIQUE_VIOLATION)) {
        return 0;
    }

    name = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

    return name != NULL
           && (strcmp(name, "api_keys_prefix_key") == 0
               || strcmp(name, "api_keys_key_hash_key") == 0);
}


/* The key goes alone on the last line, so "| tail -n 1" captures it. */

static int
cli_key_print(const cli_key_args_t *a, const PGresult *res,
    const nx_key_t *key)
{
    printf("id       %s\n", PQgetvalue(res, 0, 0));
    printf("tenant   %s\n", a->tenant);
    printf("name     %s\n", a->name);
    printf("prefix   %s\n", key->prefix);
    printf("role     %s\n", a->role);
    printf("scopes   %s\n",
           PQgetisnull(res, 0, 1) ? "-" : PQgetvalue(res, 0, 1));
    printf("expires  %s\n",
           PQgetisnull(res, 0, 2) ? "never" : PQgetvalue(res, 0, 2));
    printf("# the key below is shown only once: store it now\n");

    if (cli_flush() != 0) {
        return -1;
    }

    printf("%s\n", key->key);

    return cli_flush();
}


int
cli_list_keys(int argc, char **argv)
{
    int           rc;
    PGconn       *conn;
    PGresult     *res;
    const char   *tenant, *values[1];
    cli_tenant_t  t;

    tenant = NULL;

    rc = cli_opt_read(argc, argv, cli_list_keys_opts,
                      (void *[]) { &tenant });
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

    rc = cli_tenant_find(conn, tenant, &t);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    values[0] = t.id;

    res = cli_db_exec(conn,
              "SELECT id, prefix, name, role,"
              " NULLIF(array_to_string(scopes, ','), '') AS scopes,"
              " CASE WHEN status = 'active' AND expires_at <= now()"
              " THEN 'expired' ELSE status END AS status, "
              CLI_DB_TS("expires_at") " AS expires_at, "
              CLI_DB_TS("last_used_at") " AS last_used_at, "
              CLI_DB_TS("created_at") " AS created_at "
              "FROM api_keys WHERE tenant_id = $1 ORDER BY id",
              1, values);

    if (cli_db_ok(res)) {
        rc = (cli_table_print(res) == 0 && cli_flush() == 0)
             ? CLI_OK : CLI_FAILED;

    } else {
        rc = cli_db_fail(conn, res, "cannot list keys");
    }

    PQclear(res);
    cli_db_close(conn);

    return rc;
}


int
cli_revoke_key(int argc, char **argv)
{
    int          rc;
    char         prefix[NX_KEY_PREFIX_LEN + 1];
    PGconn      *conn;
    PGresult    *res;
    const char  *arg, *values[1];

    arg = NULL;

    rc = cli_opt_read(argc, argv, cli_revoke_key_opts,
                      (void *[]) { &arg });
    if (rc != -1) {
        return rc;
    }

    if (arg == NULL) {
        cli_error("%s: --prefix is required", argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    if (cli_key_prefix_check(arg, prefix) != 0) {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    values[0] = prefix;

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        cli_db_close(conn);
        return rc;
    }

    /* the UPDATE fires the trigger that NOTIFYs every nginx worker */

    res = cli_db_exec(conn,
              "UPDATE api_keys k SET status = 'revoked', revoked_at = now() "
              "FROM tenants t "
              "WHERE k.prefix = $1 AND k.status <> 'revoked'"
              " AND t.id = k.tenant_id "
              "RETURNING t.name",
              1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot revoke key");
        goto done;
    }

    if (PQntuples(res) == 1) {
        rc = cli_audit_commit(conn, &cli_key_revoked, 1, values);

        if (rc == CLI_OK) {
            printf("key %s revoked (tenant %s)\n", prefix,
                   PQgetvalue(res, 0, 0));
            rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
        }

        goto done;
    }

    PQclear(res);
    cli_db_rollback(conn);

    res = cli_db_exec(conn,
              "SELECT " CLI_DB_TS("revoked_at") " FROM api_keys "
              "WHERE prefix = $1",
              1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot revoke key");

    } else if (PQntuples(res) == 0) {
        cli_error("key %s not found", prefix);
        rc = CLI_FAILED;

    } else {
        if (PQgetisnull(res, 0, 0)) {
            printf("key %s already revoked\n", prefix);

        } else {
            printf("key %s already revoked at %s\n", prefix,
                   PQgetvalue(res, 0, 0));
        }

        rc = (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
    }

done:

    PQclear(res);
    cli_db_rollback(conn);
    cli_db_close(conn);

    return rc;
}


int
cli_key_prefix_check(const char *arg, char *prefix)
{
    /* not echoed: an operator may have pasted a whole key */

    if (cli_key_prefix_arg(arg, prefix) != 0) {
        cli_error("invalid key prefix: expected %d hex characters, "
                  "optionally as nx_<prefix>", NX_KEY_PREFIX_LEN);
        return -1;
    }

    return 0;
}


/*
 * Accepts "<prefix>", "nx_<prefix>", "nx_<prefix>_" and a whole key, in
 * either case, and writes the lowercase prefix.
 */

static int
cli_key_prefix_arg(const char *arg, char *prefix)
{
    int     rc;
    size_t  len, i;
    char    buf[NX_KEY_LEN + 1];

    len = strlen(arg);

    if (len > NX_KEY_LEN) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        buf[i] = (char) tolower((unsigned char) arg[i]);
    }

    buf[len] = '\0';

    rc = -1;

    if (nx_key_parse(buf, len, prefix) == 0) {
        rc = 0;
        goto done;
    }

    i = 0;

    if (len >= 3 && memcmp(buf, "nx_", 3) == 0) {
        i = 3;

        if (len == 3 + NX_KEY_PREFIX_LEN + 1 && buf[len - 1] == '_') {
            len--;
        }
    }

    if (nx_key_prefix_valid(buf + i, len - i) == 0) {
        memcpy(prefix, buf + i, NX_KEY_PREFIX_LEN);
        prefix[NX_KEY_PREFIX_LEN] = '\0';
        rc = 0;
    }

done:

    explicit_bzero(buf, sizeof(buf));

    return rc;
}
