/*
 * Copyright (C) Nexus authors
 *
 * nexusctl audit verify: checks every tenant's audit chain (or one) with
 * nx_audit's verifier, and names the first row that was edited, deleted,
 * reordered, truncated or restamped.
 *
 * Everything is read in one REPEATABLE READ transaction, so the gateway
 * may go on writing: rows and checkpoints are those of one snapshot. Rows
 * are fed in seq order, from genesis or, with --since, from the last
 * checkpoint signed before that time; the latest checkpoint proves that
 * nothing was cut from the tail before it was signed. The chain head that
 * nexus_audit_append() keeps is not signed, but it is compared too: a log
 * cut after the latest checkpoint and left at that is caught by it.
 * Times may not step back at all (tolerance 0): the writer never stamps a
 * row earlier than the row before it in its chain.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nx_audit.h>
#include <nx_audit_batch.h>
#include <nx_duration.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


#define CLI_AUDIT_FETCH       "1000"


typedef struct {
    uint8_t   chain_key[NX_AUDIT_HASH_LEN];
    uint8_t   ckpt_key[NX_AUDIT_HASH_LEN];
    char      since[24];        /* microseconds as text, "" for none */
} cli_audit_conf_t;


static int cli_audit_verify(int argc, char **argv);
static int cli_audit_since(PGconn *conn, const char *arg,
    cli_audit_conf_t *conf);
static int cli_audit_chain(PGconn *conn, const cli_audit_conf_t *conf,
    const char *tenant_id, const char *name, long long head, int *bad);
static int cli_audit_checkpoint(PGconn *conn, const char *sql,
    const char *tenant_id, const char *since, nx_audit_checkpoint_t *c,
    int *found);
static int cli_audit_rows(PGconn *conn, nx_audit_verify_t *v,
    const char *tenant_id, long long from);
static void cli_audit_report(PGconn *conn, nx_audit_verify_t *v,
    const char *tenant_id, const char *who, const nx_audit_checkpoint_t *c,
    int from_checkpoint, long long head);


static const struct option  cli_audit_verify_opts[] = {
    { "tenant",     required_argument,  NULL,  't' },
    { "since",      required_argument,  NULL,  's' },
    { NULL,         0,                  NULL,  0 }
};


/* the chains there are: a head, rows or checkpoints make one */

static const char  cli_audit_chains_sql[] =
    "SELECT c.tenant_id, t.name, coalesce(h.seq, 0)"
    " FROM (SELECT tenant_id FROM audit_chains"
    " UNION SELECT DISTINCT tenant_id FROM audit_events"
    " UNION SELECT DISTINCT tenant_id FROM audit_checkpoints) c"
    " LEFT JOIN audit_chains h ON h.tenant_id = c.tenant_id"
    " LEFT JOIN tenants t ON t.id = c.tenant_id"
    " WHERE $1::bigint IS NULL OR c.tenant_id = $1::bigint"
    " ORDER BY c.tenant_id";

#define CLI_AUDIT_CKPT_COLUMNS                                               \
    "SELECT seq, count, (extract(epoch FROM signed_at) * 1000000)::bigint,"  \
    " encode(row_hmac, 'hex'), encode(mac, 'hex') FROM audit_checkpoints"    \
    " WHERE tenant_id = $1::bigint"

static const char  cli_audit_latest_sql[] =
    CLI_AUDIT_CKPT_COLUMNS " AND $2::bigint IS NULL"
    " ORDER BY seq DESC LIMIT 1";

static const char  cli_audit_start_sql[] =
    CLI_AUDIT_CKPT_COLUMNS
    " AND signed_at <= timestamptz 'epoch'"
    " + $2::bigint * interval '1 microsecond'"
    " ORDER BY seq DESC LIMIT 1";

static const char  cli_audit_rows_sql[] =
    "DECLARE nexus_audit_rows NO SCROLL CURSOR FOR"
    " SELECT seq, (extract(epoch FROM created_at) * 1000000)::bigint,"
    " coalesce(request_id, ''), tenant_id, coalesce(actor, ''), event_type,"
    " outcome, metadata::text, encode(row_hmac, 'hex')"
    " FROM audit_events WHERE tenant_id = $1::bigint AND seq > $2::bigint"
    " ORDER BY seq, id";


int
cli_audit(int argc, char **argv)
{
    if (argc < 2) {
        cli_error("audit: a subcommand is required");
        cli_verb_usage("audit", stderr);
        return CLI_USAGE;
    }

    if (strcmp(argv[1], "verify") == 0) {
        /* the subcommand's argv[0]: what its messages are prefixed with */
        argv[1] = (char *) "audit verify";
        return cli_audit_verify(argc - 1, argv + 1);
    }

    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli_verb_usage("audit", stdout);
        return CLI_OK;
    }

    cli_error("audit: unknown subcommand \"%s\"", cli_quote(argv[1]));
    cli_verb_usage("audit", stderr);

    return CLI_USAGE;
}


/* argv[0] is "verify" */

static int
cli_audit_verify(int argc, char **argv)
{
    int                c, rc, bad, nbad, nchains;
    PGconn            *conn;
    PGresult          *res;
    const char        *tenant, *since, *values[1];
    cli_tenant_t       t;
    cli_audit_conf_t   conf;

    tenant = NULL;
    since = NULL;

    while ((c = cli_getopt(argc, argv, cli_audit_verify_opts)) != -1) {

        switch (c) {

        case 't':
            tenant = optarg;
            break;

        case 's':
            since = optarg;
            break;

        default:
            return cli_opt_usage("audit", c);
        }
    }

    if (optind < argc) {
        cli_error("%s: unexpected argument \"%s\"", argv[0],
                  cli_quote(argv[optind]));
        cli_verb_usage("audit", stderr);
        return CLI_USAGE;
    }

    if (tenant != NULL && cli_tenant_name_check(tenant) != 0) {
        return CLI_USAGE;
    }

    memset(&conf, 0, sizeof(conf));

    rc = cli_audit_keys(conf.chain_key, conf.ckpt_key, &c);
    if (rc != CLI_OK) {
        return rc;
    }

    if (!c) {
        cli_error("NEXUS_AUDIT_KEY_FILE is not set: audit verify needs the "
                  "audit key (or --audit-key-file)");
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        goto done;
    }

    values[0] = NULL;

    if (tenant != NULL) {
        rc = cli_tenant_find(conn, tenant, &t);
        if (rc != CLI_OK) {
            goto done;
        }

        values[0] = t.id;
    }

    /* one snapshot: the writers go on, the verifier sees a fixed log */
    res = cli_db_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                      0, NULL);
    rc = cli_db_ok(res) ? CLI_OK : cli_db_fail(conn, res, "BEGIN");
    PQclear(res);

    if (rc != CLI_OK) {
        goto done;
    }

    if (since != NULL) {
        rc = cli_audit_since(conn, since, &conf);
        if (rc != CLI_OK) {
            goto done;
        }
    }

    res = cli_db_exec(conn, cli_audit_chains_sql, 1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot list the audit chains");
        PQclear(res);
        goto done;
    }

    nchains = PQntuples(res);
    nbad = 0;
    rc = CLI_OK;

    for (c = 0; c < nchains; c++) {
        bad = 0;

        rc = cli_audit_chain(conn, &conf, PQgetvalue(res, c, 0),
                             PQgetisnull(res, c, 1) ? NULL
                                                    : PQgetvalue(res, c, 1),
                             atoll(PQgetvalue(res, c, 2)), &bad);
        if (rc != CLI_OK) {
            break;
        }

        nbad += bad;
    }

    PQclear(res);

    if (rc == CLI_OK) {
        if (nchains == 0) {
            printf("no audit events%s\n", tenant ? " for this tenant" : "");

        } else {
            printf("%d chain%s verified: %d ok, %d with problems\n", nchains,
                   nchains == 1 ? "" : "s", nchains - nbad, nbad);
        }

        rc = (cli_flush() != 0 || nbad) ? CLI_FAILED : CLI_OK;
    }

done:

    explicit_bzero(&conf, sizeof(conf));

    if (conn != NULL) {
        cli_db_close(conn);
    }

    return rc;
}


/* --since: a duration back from now ("7d") or a time PostgreSQL reads */

static int
cli_audit_since(PGconn *conn, const char *arg, cli_audit_conf_t *conf)
{
    int          rc;
    char         ago[32];
    int64_t      secs;
    PGresult    *res;
    const char  *values[2];

    values[0] = arg;
    values[1] = NULL;

    if (nx_duration_parse(arg, strlen(arg), &secs) == 0) {
        snprintf(ago, sizeof(ago), "%lld", (long long) secs);
        values[0] = NULL;
        values[1] = ago;
    }

    res = cli_db_exec(conn,
                      "SELECT (extract(epoch FROM coalesce($1::timestamptz,"
                      " now() - $2::bigint * interval '1 second'))"
                      " * 1000000)::bigint",
                      2, values);

    if (cli_db_ok(res) && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        snprintf(conf->since, sizeof(conf->since), "%s",
                 PQgetvalue(res, 0, 0));
        rc = CLI_OK;

    } else if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR
               && PQstatus(conn) == CONNECTION_OK)
    {
        cli_error("invalid --since \"%s\": a duration such as 7d, or a time "
                  "such as 2024-05-01T00:00:00Z", cli_quote(arg));
        rc = CLI_USAGE;

    } else {
        rc = cli_db_fail(conn, res, "cannot read --since");
    }

    PQclear(res);

    return rc;
}


/* verifies one chain; *bad = 1 if it has a problem */

static int
cli_audit_chain(PGconn *conn, const cli_audit_conf_t *conf,
    const char *tenant_id, const char *name, long long head, int *bad)
{
    int                     rc, have_start, have_latest;
    char                    who[128];
    nx_audit_verify_t       v;
    nx_audit_checkpoint_t   start, latest;
    nx_audit_verify_conf_t  vc;

    if (strcmp(tenant_id, "0") == 0) {
        snprintf(who, sizeof(who), "platform (chain 0)");

    } else if (name == NULL) {
        snprintf(who, sizeof(who), "tenant id %s (deleted)", tenant_id);

    } else {
        snprintf(who, sizeof(who), "tenant %s (id %s)", cli_quote(name),
                 tenant_id);
    }

    have_start = 0;

    if (conf->since[0]) {
        rc = cli_audit_checkpoint(conn, cli_audit_start_sql, tenant_id,
                                  conf->since, &start, &have_start);
        if (rc != CLI_OK) {
            return rc;
        }
    }

    rc = cli_audit_checkpoint(conn, cli_audit_latest_sql, tenant_id, NULL,
                              &latest, &have_latest);
    if (rc != CLI_OK) {
        return rc;
    }

    memset(&vc, 0, sizeof(vc));
    vc.chain_key = conf->chain_key;
    vc.chain_key_len = NX_AUDIT_HASH_LEN;
    vc.ckpt_key = conf->ckpt_key;
    vc.ckpt_key_len = NX_AUDIT_HASH_LEN;
    vc.tenant_id = atoll(tenant_id);
    vc.start = have_start ? &start : NULL;
    vc.latest = have_latest ? &latest : NULL;
    vc.ts_tolerance = 0;

    if (nx_audit_verify_init(&v, &vc) == NX_AUDIT_ERROR) {
        cli_error("%s: %s", who, v.msg);
        return CLI_FAILED;
    }

    rc = cli_audit_rows(conn, &v, tenant_id, have_start ? start.seq : 0);
    if (rc != CLI_OK) {
        return rc;
    }

    (void) nx_audit_verify_end(&v);

    cli_audit_report(conn, &v, tenant_id, who, have_latest ? &latest : NULL,
                     have_start, head);

    *bad = (v.status != NX_AUDIT_OK || v.last_seq < head);

    return CLI_OK;
}


static int
cli_audit_checkpoint(PGconn *conn, const char *sql, const char *tenant_id,
    const char *since, nx_audit_checkpoint_t *c, int *found)
{
    int          rc;
    PGresult    *res;
    const char  *values[2];

    *found = 0;
    memset(c, 0, sizeof(nx_audit_checkpoint_t));

    values[0] = tenant_id;
    values[1] = since;

    res = cli_db_exec(conn, sql, 2, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot read the audit checkpoints");
        PQclear(res);
        return rc;
    }

    if (PQntuples(res) == 1) {
        c->tenant_id = atoll(tenant_id);
        c->seq = atoll(PQgetvalue(res, 0, 0));
        c->count = atoll(PQgetvalue(res, 0, 1));
        c->ts = atoll(PQgetvalue(res, 0, 2));

        /* a mangled hash or MAC fails the MAC check: zeros will do */
        (void) nx_audit_hash_unhex(c->hash, PQgetvalue(res, 0, 3));
        (void) nx_audit_hash_unhex(c->mac, PQgetvalue(res, 0, 4));
        *found = 1;
    }

    PQclear(res);

    return CLI_OK;
}


static int
cli_audit_rows(PGconn *conn, nx_audit_verify_t *v, const char *tenant_id,
    long long from)
{
    int              i, n, rc;
    char             after[24];
    PGresult        *res;
    const char      *values[2];
    nx_audit_row_t   row;
    uint8_t          stored[NX_AUDIT_HASH_LEN];

    snprintf(after, sizeof(after), "%lld", from);
    values[0] = tenant_id;
    values[1] = after;

    res = cli_db_exec(conn, cli_audit_rows_sql, 2, values);
    rc = cli_db_ok(res) ? CLI_OK
                        : cli_db_fail(conn, res, "cannot read the audit log");
    PQclear(res);

    if (rc != CLI_OK) {
        return rc;
    }

    for ( ;; ) {
        res = cli_db_exec(conn, "FETCH " CLI_AUDIT_FETCH
                          " FROM nexus_audit_rows", 0, NULL);

        if (!cli_db_ok(res)) {
            rc = cli_db_fail(conn, res, "cannot read the audit log");
            PQclear(res);
            return rc;
        }

        n = PQntuples(res);

        for (i = 0; i < n; i++) {
            cli_audit_row_read(res, i, &row);

            if (nx_audit_hash_unhex(stored, PQgetvalue(res, i, 8)) != 0) {
                /* not even a hash: it cannot match */
                memset(stored, 0, sizeof(stored));
            }

            (void) nx_audit_verify_row(v, &row, stored);
        }

        PQclear(res);

        if (n == 0) {
            break;
        }
    }

    res = cli_db_exec(conn, "CLOSE nexus_audit_rows", 0, NULL);
    rc = cli_db_ok(res) ? CLI_OK
                        : cli_db_fail(conn, res, "cannot read the audit log");
    PQclear(res);

    return rc;
}


/*
 * One line per chain:
 *   tenant acme (id 3): ok: rows 1 to 12, signed through row 10
 *   tenant acme (id 3): edited at row 7 (event id 42): row 7 was edited:
 *       stored hash does not match its content; 1 problem in all
 */

static void
cli_audit_report(PGconn *conn, nx_audit_verify_t *v, const char *tenant_id,
    const char *who, const nx_audit_checkpoint_t *c, int from_checkpoint,
    long long head)
{
    char         seq[24], ids[64];
    PGresult    *res;
    const char  *values[2];
    int          i;

    if (v->status == NX_AUDIT_OK && v->last_seq < head) {
        /* no checkpoint covers the cut, but the chain head remembers */
        printf("%s: truncated at row %lld: the log ends at row %lld but the "
               "chain head is row %lld: %lld rows were cut after the "
               "latest checkpoint\n", who, (long long) v->last_seq + 1,
               (long long) v->last_seq, head, head - (long long) v->last_seq);
        return;
    }

    if (v->status == NX_AUDIT_OK) {
        printf("%s: ok: ", who);

        if (v->last_seq == v->start_seq) {
            printf("no rows");

        } else {
            printf("rows %lld to %lld", (long long) v->start_seq + 1,
                   (long long) v->last_seq);
        }

        if (from_checkpoint) {
            printf(", from the checkpoint at row %lld",
                   (long long) v->start_seq);
        }

        if (c != NULL) {
            printf(", signed through row %lld\n", (long long) c->seq);

        } else {
            printf(", no checkpoint yet\n");
        }

        return;
    }

    /* which rows of the table hold that seq now, if any */

    ids[0] = '\0';
    snprintf(seq, sizeof(seq), "%lld", (long long) v->seq);
    values[0] = tenant_id;
    values[1] = seq;

    res = cli_db_exec(conn, "SELECT id FROM audit_events"
                      " WHERE tenant_id = $1::bigint AND seq = $2::bigint"
                      " ORDER BY id LIMIT 3", 2, values);

    if (cli_db_ok(res)) {
        for (i = 0; i < PQntuples(res); i++) {
            snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%s",
                     i ? ", " : " (event id ", PQgetvalue(res, i, 0));
        }

        if (ids[0]) {
            snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), ")");
        }
    }

    PQclear(res);

    printf("%s: %s at row %lld%s: %s; %lld problem%s in all\n", who,
           nx_audit_status_name(v->status), (long long) v->seq, ids, v->msg,
           (long long) v->problems, v->problems == 1 ? "" : "s");
}


/*
 * Row i of a result whose columns are an audit row's, in the chain's
 * order: seq, ts (ms), request_id, tenant_id, actor, event_type, outcome,
 * metadata; the strings point into res.
 */

void
cli_audit_row_read(PGresult *res, int i, nx_audit_row_t *row)
{
    row->seq = atoll(PQgetvalue(res, i, 0));
    row->ts = atoll(PQgetvalue(res, i, 1));
    row->request_id.data = PQgetvalue(res, i, 2);
    row->request_id.len = PQgetlength(res, i, 2);
    row->tenant_id = atoll(PQgetvalue(res, i, 3));
    row->actor.data = PQgetvalue(res, i, 4);
    row->actor.len = PQgetlength(res, i, 4);
    row->event_type.data = PQgetvalue(res, i, 5);
    row->event_type.len = PQgetlength(res, i, 5);
    row->outcome.data = PQgetvalue(res, i, 6);
    row->outcome.len = PQgetlength(res, i, 6);
    row->metadata.data = PQgetvalue(res, i, 7);
    row->metadata.len = PQgetlength(res, i, 7);
}
