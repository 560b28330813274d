/*
 * Copyright (C) Nexus authors
 *
 * nexusctl's own audit events: every verb that writes appends one to the
 * chain of the tenant it changed (0: the platform's, for the price list
 * and the plan catalog), in the transaction of the write, so that a change
 * is never committed without its event.
 *
 * The row is chained as the gateway's workers chain theirs (common/
 * nx_audit_batch.h): the head is read, the row linked from it with the
 * audit key, which never reaches the database, and nexus_audit_append()
 * (0010_audit_log.sql) writes it if the head did not move meanwhile, else
 * answers with the current head, from which the row is linked again. The
 * function locks the head's row, and the lock is held to our COMMIT: the
 * second attempt cannot be overtaken. Writers of the same chain wait for
 * nexusctl's COMMIT, one round trip.
 *
 * The key comes from --audit-key-file or NEXUS_AUDIT_KEY_FILE, as for
 * audit verify. Without either, the write is made and a warning says it
 * is not in the audit log.
 */

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <nx_audit.h>
#include <nx_audit_batch.h>
#include <nx_json.h>
#include <nx_key.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_out.h"


#define CLI_AUDIT_KEY_ENV       "NEXUS_AUDIT_KEY_FILE"

/* the head moves at most once: the first attempt locks it */
#define CLI_AUDIT_ATTEMPTS      3

#define CLI_AUDIT_USER_MAX      64


typedef struct {
    int          loaded;        /* the key was looked for */
    int          on;
    const char  *command;
    uint8_t      chain_key[NX_AUDIT_HASH_LEN];
} cli_audit_state_t;


static char *cli_audit_metadata(const char *result, size_t *len);
static char *cli_audit_user(char *p, const char *name, const char *value);
static int cli_audit_head(PGconn *conn, int64_t tenant_id,
    nx_audit_head_t *head);
static int cli_audit_append(PGconn *conn, nx_audit_row_t *row,
    nx_audit_head_t *head, const char *id);
static void cli_audit_moved(void *data, const nx_audit_head_t *h,
    nx_audit_head_state_t state);
static int64_t cli_audit_now(void);


const char  *cli_audit_key_path;

static cli_audit_state_t  cli_audit_st;


void
cli_audit_command(const char *verb)
{
    cli_audit_st.command = verb;
}


int
cli_audit_keys(uint8_t chain_key[NX_AUDIT_HASH_LEN],
    uint8_t ckpt_key[NX_AUDIT_HASH_LEN], int *found)
{
    int          n;
    char         err[256];
    const char  *path, *from;
    uint8_t      master[NX_PEPPER_MAX];

    *found = 0;

    path = cli_audit_key_path;
    from = "--audit-key-file";

    if (path == NULL) {
        path = getenv(CLI_AUDIT_KEY_ENV);
        from = CLI_AUDIT_KEY_ENV;
    }

    if (path == NULL || path[0] == '\0') {
        return CLI_OK;
    }

    err[0] = '\0';

    /* the format of nexus_audit_key_file: the pepper's */
    n = nx_pepper_load(path, master, sizeof(master), err, sizeof(err));

    if (n < 0) {
        cli_error("%s: %s", from, err[0] ? err : "invalid key");
        return CLI_USAGE;
    }

    n = nx_audit_derive_keys(master, (size_t) n, chain_key, ckpt_key);

    explicit_bzero(master, sizeof(master));

    if (n != 0) {
        cli_error("cannot derive the audit keys");
        return CLI_FAILED;
    }

    *found = 1;

    return CLI_OK;
}


int
cli_audit_write(PGconn *conn, const cli_audit_event_t *ev, int n,
    const char *const *values)
{
    int               rc;
    char             *meta, *p;
    size_t            len, i;
    uint8_t           ckpt_key[NX_AUDIT_HASH_LEN], rnd[8];
    PGresult         *res;
    nx_audit_row_t    row;
    nx_audit_head_t   head;
    char              id[sizeof("cli--1") + 2 * sizeof(rnd)];

    if (!cli_audit_st.loaded) {
        rc = cli_audit_keys(cli_audit_st.chain_key, ckpt_key,
                            &cli_audit_st.on);
        explicit_bzero(ckpt_key, sizeof(ckpt_key));

        if (rc != CLI_OK) {
            return rc;
        }

        cli_audit_st.loaded = 1;
    }

    if (!cli_audit_st.on) {
        cli_warn("no audit key (--audit-key-file or " CLI_AUDIT_KEY_ENV
                 "): this change is not recorded in the audit log");
        return CLI_OK;
    }

    res = cli_db_exec(conn, ev->sql, n, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot describe the change for the "
                         "audit log");
        PQclear(res);
        return rc;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 2
        || PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1))
    {
        cli_error("cannot describe the change for the audit log");
        PQclear(res);
        return CLI_FAILED;
    }

    memset(&row, 0, sizeof(row));
    row.tenant_id = atoll(PQgetvalue(res, 0, 0));

    meta = cli_audit_metadata(PQgetvalue(res, 0, 1), &len);

    PQclear(res);

    if (meta == NULL) {
        return CLI_FAILED;
    }

    /* event ids never repeat: a random writer id, as a worker's */
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        cli_error("no randomness for the audit event's id");
        free(meta);
        return CLI_FAILED;
    }

    p = id + sprintf(id, "cli-");

    for (i = 0; i < sizeof(rnd); i++) {
        p += sprintf(p, "%02x", rnd[i]);
    }

    memcpy(p, "-1", sizeof("-1"));

    row.actor.data = CLI_AUDIT_ACTOR;
    row.actor.len = sizeof(CLI_AUDIT_ACTOR) - 1;
    row.event_type.data = ev->type;
    row.event_type.len = strlen(ev->type);
    row.outcome.data = "success";
    row.outcome.len = sizeof("success") - 1;
    row.metadata.data = meta;
    row.metadata.len = len;

    rc = cli_audit_head(conn, row.tenant_id, &head);

    if (rc == CLI_OK) {
        rc = cli_audit_append(conn, &row, &head, id);
    }

    free(meta);

    return rc;
}


int
cli_audit_commit(PGconn *conn, const cli_audit_event_t *ev, int n,
    const char *const *values)
{
    int  rc;

    rc = cli_audit_write(conn, ev, n, values);

    if (rc == CLI_OK) {
        rc = cli_db_commit(conn);
    }

    return rc;
}


int
cli_audit_exec(PGconn *conn, const char *sql, int n,
    const char *const *values, const char *what,
    const cli_audit_event_t *ev, PGresult **res)
{
    int        rc;
    PGresult  *r;

    *res = NULL;

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        return rc;
    }

    r = cli_db_exec(conn, sql, n, values);

    if (!cli_db_ok(r)) {
        rc = cli_db_fail(conn, r, what);

    } else if (PQntuples(r) != 0) {
        rc = cli_audit_commit(conn, ev, 1, values);

        if (rc == CLI_OK) {
            *res = r;
            return rc;
        }
    }

    PQclear(r);
    cli_db_rollback(conn);

    return rc;
}


int
cli_audit_row(PGconn *conn, const char *sql, int n,
    const char *const *values, const char *kind, const char *what,
    cli_db_print_pt print, const cli_audit_event_t *ev)
{
    int        rc;
    PGresult  *res;

    rc = cli_audit_exec(conn, sql, n, values, what, ev, &res);

    if (rc != CLI_OK) {
        return rc;
    }

    if (res == NULL) {
        cli_error("%s \"%s\" not found", kind, values[0]);
        return CLI_FAILED;
    }

    print(values[0], res);
    PQclear(res);

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}


/* the metadata, redacted: a malloc()ed string */

static char *
cli_audit_metadata(const char *result, size_t *len)
{
    char          *raw, *out, *p;
    size_t         size, need;
    const char    *sudo, *command;
    struct passwd *pw;
    char           uid[24];

    pw = getpwuid(getuid());

    if (pw == NULL) {
        snprintf(uid, sizeof(uid), "%u", (unsigned) getuid());
    }

    sudo = getenv("SUDO_USER");

    size = sizeof("{\"via\":\"nexusctl\",\"command\":\"\",\"os_user\":\"\","
                  "\"sudo_user\":\"\",\"result\":}")
           + 6 * (CLI_AUDIT_USER_MAX * 2 + 32) + strlen(result);

    raw = malloc(size);
    if (raw == NULL) {
        cli_error("out of memory");
        return NULL;
    }

    p = raw + sprintf(raw, "{\"via\":\"nexusctl\",\"command\":\"");
    command = cli_audit_st.command ? cli_audit_st.command : "";
    p += nx_json_escape(p, command, strnlen(command, 32));
    p = cli_audit_user(p, "os_user", pw ? pw->pw_name : uid);

    if (sudo != NULL && sudo[0] != '\0') {
        p = cli_audit_user(p, "sudo_user", sudo);
    }

    p += sprintf(p, "\",\"result\":%s}", result);

    /* the size first, then the redacted copy */
    need = 0;
    (void) nx_audit_redact(raw, p - raw, NULL, 0, &need);

    out = (need > 0) ? malloc(need + 1) : NULL;

    if (out == NULL
        || nx_audit_redact(raw, p - raw, out, need + 1, len) != 0)
    {
        cli_error("cannot write the audit event: its metadata is not a "
                  "JSON object");
        free(raw);
        free(out);
        return NULL;
    }

    free(raw);

    return out;
}


/* ",\"<name>\":\"<value>" of a user name, escaped and cut */

static char *
cli_audit_user(char *p, const char *name, const char *value)
{
    p += sprintf(p, "\",\"%s\":\"", name);

    return p + nx_json_escape(p, value, strnlen(value, CLI_AUDIT_USER_MAX));
}


static int cli_audit_key_matches(PGconn *conn, const char *tid,
    const nx_audit_head_t *head);


static int
cli_audit_head(PGconn *conn, int64_t tenant_id, nx_audit_head_t *head)
{
    int          rc;
    char         tid[24];
    PGresult    *res;
    const char  *values[1];

    if (nx_audit_head_empty(head, cli_audit_st.chain_key, NX_AUDIT_HASH_LEN,
                            tenant_id)
        != 0)
    {
        cli_error("cannot compute the audit chain's genesis");
        return CLI_FAILED;
    }

    snprintf(tid, sizeof(tid), "%lld", (long long) tenant_id);
    values[0] = tid;

    res = cli_db_exec(conn, "SELECT seq, ts_us, encode(row_hmac, 'hex')"
                      " FROM audit_chains WHERE tenant_id = $1::bigint",
                      1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot read the audit chain");
        PQclear(res);
        return rc;
    }

    /* no row, or seq 0: an empty chain */
    if (PQntuples(res) == 1 && atoll(PQgetvalue(res, 0, 0)) > 0) {
        head->seq = atoll(PQgetvalue(res, 0, 0));
        head->ts = atoll(PQgetvalue(res, 0, 1));

        if (nx_audit_hash_unhex(head->hash, PQgetvalue(res, 0, 2)) != 0) {
            cli_error("the audit chain's head is not readable");
            PQclear(res);
            return CLI_FAILED;
        }

        PQclear(res);

        return cli_audit_key_matches(conn, tid, head);
    }

    PQclear(res);

    return CLI_OK;
}


/*
 * Before the chain is extended, its head row must check out under our
 * key: a row linked with another key (a wrong --audit-key-file) would
 * stay in the log as tampering for good, as `audit verify` would report.
 */

static int
cli_audit_key_matches(PGconn *conn, const char *tid,
    const nx_audit_head_t *head)
{
    int             i, n, found;
    char            seq[24];
    uint8_t         prev[NX_AUDIT_HASH_LEN], hash[NX_AUDIT_HASH_LEN];
    PGresult       *res;
    const char     *values[2];
    nx_audit_row_t  row;

    if (nx_audit_genesis(cli_audit_st.chain_key, NX_AUDIT_HASH_LEN,
                         head->tenant_id, prev)
        != 0)
    {
        cli_error("cannot compute the audit chain's genesis");
        return CLI_FAILED;
    }

    snprintf(seq, sizeof(seq), "%lld", (long long) head->seq);
    values[0] = tid;
    values[1] = seq;

    res = cli_db_exec(conn, "SELECT seq,"
                      " (extract(epoch FROM created_at) * 1000000)::bigint,"
                      " coalesce(request_id, ''), tenant_id,"
                      " coalesce(actor, ''), event_type, outcome,"
                      " metadata::text, encode(row_hmac, 'hex')"
                      " FROM audit_events WHERE tenant_id = $1::bigint"
                      " AND seq BETWEEN $2::bigint - 1 AND $2::bigint"
                      " ORDER BY seq, id",
                      2, values);

    if (!cli_db_ok(res)) {
        n = cli_db_fail(conn, res, "cannot read the audit chain");
        PQclear(res);
        return n;
    }

    n = PQntuples(res);
    found = 0;

    for (i = 0; i < n; i++) {
        if (atoll(PQgetvalue(res, i, 0)) != head->seq) {
            if (nx_audit_hash_unhex(prev, PQgetvalue(res, i, 8)) != 0) {
                break;
            }

            continue;
        }

        /* its seq is the head's: column 0 said so just above */
        cli_audit_row_read(res, i, &row);

        found = nx_audit_chain_next(cli_audit_st.chain_key,
                                    NX_AUDIT_HASH_LEN, prev, &row, hash)
                    == 0
                && nx_ct_equal(hash, head->hash, NX_AUDIT_HASH_LEN);
        break;
    }

    PQclear(res);

    if (!found) {
        cli_error("the audit log's last row does not check out under this "
                  "audit key: the key is not the one the gateway writes "
                  "with, or the log was changed (run 'nexusctl audit "
                  "verify'); nothing was written");
        return CLI_USAGE;
    }

    return CLI_OK;
}


static int
cli_audit_append(PGconn *conn, nx_audit_row_t *row, nx_audit_head_t *head,
    const char *id)
{
    int               rc, attempt, bad;
    char             *batch, *p;
    size_t            size;
    int64_t           ts;
    PGresult         *res;
    const char       *v, *values[1];
    nx_audit_link_t   l;
    uint8_t           prev[NX_AUDIT_HASH_LEN], hash[NX_AUDIT_HASH_LEN];

    ts = cli_audit_now();

    size = sizeof("{\"heads\":[],\"rows\":[]}") + NX_AUDIT_JSON_HEAD_LEN
           + nx_audit_json_row_len(row, strlen(id));

    batch = malloc(size);
    if (batch == NULL) {
        cli_error("out of memory");
        return CLI_FAILED;
    }

    rc = CLI_FAILED;

    for (attempt = 0; attempt < CLI_AUDIT_ATTEMPTS; attempt++) {

        row->ts = ts;
        nx_audit_link_start(&l, head);

        if (nx_audit_link_row(&l, cli_audit_st.chain_key, NX_AUDIT_HASH_LEN,
                              row, prev, hash)
            != 0)
        {
            cli_error("cannot compute the audit event's HMAC");
            break;
        }

        p = batch + sprintf(batch, "{\"heads\":[");
        p = nx_audit_json_head(p, &l);
        p += sprintf(p, "],\"rows\":[");
        p = nx_audit_json_row(p, row, id, strlen(id), prev, hash);
        p += sprintf(p, "]}");

        values[0] = batch;

        res = cli_db_exec(conn, "SELECT nexus_audit_append($1::json)", 1,
                          values);

        if (!cli_db_ok(res) || PQntuples(res) != 1) {
            rc = cli_db_fail(conn, res, "cannot write the audit event");
            PQclear(res);
            break;
        }

        v = PQgetvalue(res, 0, 0);

        if (v[0] != '[') {
            /* "ok", or "written" */
            rc = CLI_OK;
            PQclear(res);
            break;
        }

        /* another writer moved the head: from the one it made */
        bad = 0;

        if (nx_audit_heads_parse(v, strlen(v), cli_audit_st.chain_key,
                                 NX_AUDIT_HASH_LEN, cli_audit_moved, head)
            != 1)
        {
            bad = 1;
        }

        PQclear(res);

        if (bad || head->tenant_id != row->tenant_id) {
            cli_error("cannot write the audit event: unexpected chain "
                      "head from PostgreSQL");
            break;
        }
    }

    if (attempt == CLI_AUDIT_ATTEMPTS) {
        cli_error("cannot write the audit event: its chain keeps moving");
    }

    free(batch);

    return rc;
}


static void
cli_audit_moved(void *data, const nx_audit_head_t *h,
    nx_audit_head_state_t state)
{
    nx_audit_head_t  *head = data;

    if (state == NX_AUDIT_HEAD_OK) {
        *head = *h;

    } else {
        /* not readable: nothing to link from */
        head->tenant_id = -1;
    }
}


static int64_t
cli_audit_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
