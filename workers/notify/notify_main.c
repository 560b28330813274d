/*
 * Copyright (C) Nexus authors
 *
 * nexus-notify: configuration, the main loop and its cron.
 *
 *   nexus-notify [-c FILE] [-t]
 *
 * One thread, one loop (after Redis's event loop and serverCron):
 *
 *   intake   events from the stream become jobs (waits in XREADGROUP
 *            BLOCK only when no delivery is in flight)
 *   claim    due jobs are leased and handed to curl, up to the
 *            concurrency
 *   deliver  curl_multi_poll for at most 50 ms while transfers run
 *   record   finished attempts are written, in one transaction per turn
 *   cron     the heartbeat, stream entries and job leases left by dead
 *            workers, the DLQ sweep (expired jobs), SIGHUP
 *
 * The first SIGTERM stops intake and claims, lets the transfers in
 * flight finish for up to shutdown_timeout, hands back the rest, and
 * exits 0; a second exits at once.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nx_json.h"
#include "notify.h"


#define NOTIFY_CRON_MS  500


static int notify_state_build(const notify_conf_t *conf,
    notify_state_t *st, char *err, size_t errlen);
static void notify_state_free(notify_state_t *st);
static int notify_fallback_parse(const char *s, notify_state_t *st,
    char *err, size_t errlen);
static int notify_read_secret(const char *path, notify_state_t *st,
    char *err, size_t errlen);
static void notify_reload(void);
static void notify_cron(int force);
static void notify_sweep(void);
static void notify_release(int handback);
static void notify_usage(void);


notify_conf_t   notify_conf;
notify_state_t  notify_state;
nxw_pg_t        notify_pg;
nxw_redis_t     notify_redis;


static const nxw_option_t  notify_options[] = {

    { "notify_stream", NXW_OPT_STR, "nx:events", 0,
      offsetof(notify_conf_t, stream), 0, 0 },

    { "notify_group", NXW_OPT_STR, "notify", 0,
      offsetof(notify_conf_t, group), 0, 0 },

    { "seal_key_file", NXW_OPT_STR, NULL, 0,
      offsetof(notify_conf_t, seal_key_file), 0, 0 },

    /* webhook URLs often carry a token in the path: never logged */
    { "notify_fallback_urls", NXW_OPT_STR, "",
      NXW_OPT_RELOAD | NXW_OPT_SECRET,
      offsetof(notify_conf_t, fallback_urls), 0, 0 },

    { "notify_fallback_secret_file", NXW_OPT_STR, NULL, NXW_OPT_RELOAD,
      offsetof(notify_conf_t, fallback_secret_file), 0, 0 },

    { "notify_allow_cidrs", NXW_OPT_STR, "", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, allow_cidrs), 0, 0 },

    { "notify_concurrency", NXW_OPT_INT, "32", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, concurrency), 1, 1024 },

    { "notify_per_destination", NXW_OPT_INT, "8", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, per_destination), 1, 1024 },

    { "notify_batch", NXW_OPT_INT, "100", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, batch), 1, 1000 },

    { "notify_max_attempts", NXW_OPT_INT, "5", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, max_attempts), 1, 100 },

    { "notify_backoff", NXW_OPT_MSEC, "500ms", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, backoff), 1, 3600000 },

    { "notify_backoff_max", NXW_OPT_MSEC, "15s", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, backoff_max), 1, 86400000 },

    { "notify_max_age", NXW_OPT_MSEC, "24h", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, max_age), 1000, 30LL * 86400000 },

    { "notify_timeout", NXW_OPT_MSEC, "10s", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, timeout), 100, 600000 },

    { "notify_connect_timeout", NXW_OPT_MSEC, "3s", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, connect_timeout), 100, 60000 },

    { "notify_poll_interval", NXW_OPT_MSEC, "1s", NXW_OPT_RELOAD,
      offsetof(notify_conf_t, poll_interval), 10, 60000 },

    { NULL, 0, NULL, 0, 0, 0, 0 }
};

static const nxw_option_t *const  notify_tables[] = {
    nxw_runtime_options, notify_options, NULL
};


const nxw_stmt_t  notify_stmts[] = {

    NXW_QUEUE_STMT,

    { "notify_routing",
      "SELECT tenant, routes, destinations FROM notify_routing($1::bigint)",
      1 },

    { "notify_insert_job",
      "INSERT INTO notify_jobs (tenant_id, kind, destination_id, url,"
      " route_id, event_id, event_type, severity, payload, payload_sha256,"
      " dedupe_key) VALUES ($1::bigint, $2, $3::bigint, $4, $5::bigint, $6,"
      " $7, $8, $9, $10, $11) ON CONFLICT (dedupe_key) DO NOTHING",
      11 },

    { "notify_claim",
      "SELECT id, attempt, tenant_id, tenant, destination_id, url, headers,"
      " encode(secret_sealed, 'hex'), event_type, payload, payload_sha256"
      " FROM notify_claim($1, $2::integer, $3::integer, $4::integer,"
      " $5::integer, $6::integer)",
      6 },

    { "notify_finish",
      "SELECT notify_finish($1::uuid, $2, $3::integer, $4::bigint,"
      " $5::integer, $6, $7::integer, $8, $9, $10, $11, $12::bigint, $13,"
      " $14::boolean)",
      14 },

    { "notify_sweep",
      "SELECT dlq_id, job_id, tenant_id, reason"
      " FROM notify_sweep($1::integer, $2::integer)",
      2 },

    { "notify_release",
      "SELECT notify_release($1, $2::boolean)",
      2 },

    { "notify_next_due",
      "SELECT coalesce((extract(epoch FROM min(next_attempt_at) - now())"
      " * 1000)::bigint, -1) FROM notify_jobs"
      " WHERE status IN ('queued', 'retrying')",
      0 },
};

const size_t  notify_nstmts = sizeof(notify_stmts) / sizeof(notify_stmts[0]);


static int64_t  notify_next_heartbeat;
static int64_t  notify_next_cron;


int
main(int argc, char **argv)
{
    int         c, test, draining, claimed;
    char        err[512];
    int64_t     deadline, wait, due;
    nxw_log_t  *l;

    test = 0;
    notify_conf.base.role = "notify";
    notify_conf.base.file = getenv("NEXUS_WORKER_CONFIG");

    while ((c = getopt(argc, argv, "c:th")) != -1) {
        switch (c) {
        case 'c':
            notify_conf.base.file = optarg;
            break;
        case 't':
            test = 1;
            break;
        default:
            notify_usage();
            return c == 'h' ? 0 : 2;
        }
    }

    nxw_log_init("notify");

    if (nxw_config_load(notify_tables, &notify_conf, notify_conf.base.file,
                        err, sizeof(err)) != 0)
    {
        nxw_log_msg(NXW_LOG_ERROR, "invalid configuration", err);
        return 2;
    }

    if (notify_conf.base.database_url == NULL
        || notify_conf.base.database_url[0] == '\0')
    {
        nxw_log_msg(NXW_LOG_ERROR, "invalid configuration",
                    "database_url (NEXUS_DATABASE_URL) is required");
        return 2;
    }

    nxw_log_set_level(nxw_log_level(notify_conf.base.log_level));

    if (notify_state_build(&notify_conf, &notify_state, err, sizeof(err))
        != 0)
    {
        nxw_log_msg(NXW_LOG_ERROR, "invalid configuration", err);
        return 2;
    }

    if (nxw_redis_init(&notify_redis, notify_conf.base.redis_url, err,
                       sizeof(err)) != 0)
    {
        nxw_log_msg(NXW_LOG_ERROR, "invalid configuration", err);
        return 2;
    }

    if (test) {
        nxw_config_log(notify_tables, &notify_conf);
        nxw_log_msg(NXW_LOG_INFO, "configuration ok", NULL);
        return 0;
    }

    nxw_signals_init();

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        nxw_log_msg(NXW_LOG_ERROR, "curl_global_init failed", NULL);
        return 1;
    }

    nxw_pg_init(&notify_pg, notify_conf.base.database_url, "notify",
                notify_stmts, notify_nstmts);

    if (notify_intake_init() != 0 || notify_deliver_init() != 0) {
        return 1;
    }

    l = nxw_log(NXW_LOG_INFO, "starting");
    nxw_log_str(l, "consumer", notify_conf.base.consumer);
    nxw_log_str(l, "stream", notify_conf.stream);
    nxw_log_str(l, "version", NXW_VERSION);
    nxw_log_end(l);

    nxw_config_log(notify_tables, &notify_conf);

    if (!notify_state.have_seal) {
        nxw_log_msg(NXW_LOG_WARN, "no seal_key_file: deliveries to "
                    "destinations with a secret will fail", NULL);
    }

    /* leases a previous process of this name left (it crashed) */
    notify_release(0);
    notify_cron(1);

    draining = 0;
    deadline = 0;
    claimed = 0;

    for ( ;; ) {

        if (nxw_hup) {
            nxw_hup = 0;
            notify_reload();
        }

        if (nxw_stop && !draining) {
            draining = 1;
            deadline = nxw_mono_ms() + notify_conf.base.shutdown_timeout;

            l = nxw_log(NXW_LOG_INFO, "draining: no new work; finishing "
                        "what is in flight");
            nxw_log_int(l, "in_flight", (int64_t) notify_deliver_inflight());
            nxw_log_int(l, "timeout_ms", notify_conf.base.shutdown_timeout);
            nxw_log_end(l);
        }

        notify_cron(0);

        wait = 0;

        if (!draining) {
            if (notify_deliver_inflight() == 0
                && notify_deliver_unrecorded() == 0)
            {
                /* idle: wait for events, but not past the next due job */
                wait = notify_conf.base.block;

                if (wait > notify_conf.poll_interval) {
                    wait = notify_conf.poll_interval;
                }

                due = notify_deliver_next_due();

                /*
                 * A job due now that the last claim did not get is held
                 * back (its receiver at its cap, its destination about to
                 * be swept): look again after the poll interval, not at
                 * once, or the loop would spin on PostgreSQL.
                 */
                if (due >= 0 && due < wait && !(due == 0 && claimed == 0)) {
                    wait = due;
                }

                if (notify_next_cron - nxw_mono_ms() < wait) {
                    wait = notify_next_cron - nxw_mono_ms();
                }

                if (wait < 0) {
                    wait = 0;
                }
            }

            notify_intake(wait);
            claimed = notify_deliver_claim();
        }

        notify_deliver_run(notify_deliver_inflight() ? 50 : 0);
        notify_deliver_record();

        if (notify_deliver_inflight() == 0
            && notify_deliver_unrecorded() > 0)
        {
            /* PostgreSQL is away and attempts wait: do not spin */
            nxw_sleep_ms(50);
        }

        if (draining) {
            if (notify_deliver_inflight() == 0
                && notify_deliver_unrecorded() == 0)
            {
                break;
            }

            if (nxw_mono_ms() >= deadline) {
                l = nxw_log(NXW_LOG_WARN, "drain timed out: handing back "
                            "the jobs still in flight");
                nxw_log_int(l, "in_flight",
                            (int64_t) notify_deliver_inflight());
                nxw_log_end(l);

                notify_deliver_abort();
                notify_deliver_record();
                notify_release(1);
                break;
            }
        }
    }

    nxw_log_msg(NXW_LOG_INFO, "stopped", NULL);

    notify_intake_free();
    notify_deliver_free();
    nxw_pg_close(&notify_pg);
    nxw_redis_free(&notify_redis);
    notify_state_free(&notify_state);
    nxw_config_free(notify_tables, &notify_conf);
    curl_global_cleanup();

    return 0;
}


void
notify_dead_stream(const char *job_id, int64_t tenant_id, const char *reason,
    const char *dlq_id)
{
    char         tid[24];
    const char  *argv[14];
    size_t       lens[14];
    redisReply  *reply;
    int          i;

    (void) snprintf(tid, sizeof(tid), "%lld", (long long) tenant_id);

    argv[0] = "XADD";
    argv[1] = NOTIFY_DEAD_STREAM;
    argv[2] = "MAXLEN";
    argv[3] = "~";
    argv[4] = "100000";
    argv[5] = "*";
    argv[6] = "job_id";
    argv[7] = job_id;
    argv[8] = "dlq_id";
    argv[9] = dlq_id;
    argv[10] = "reason";
    argv[11] = reason;
    argv[12] = "tenant_id";
    argv[13] = tid;

    for (i = 0; i < 14; i++) {
        lens[i] = strlen(argv[i]);
    }

    /* best effort: the row in notify_dlq is the record */
    reply = nxw_redis_argv(&notify_redis, 14, argv, lens, 0);

    if (reply != NULL) {
        freeReplyObject(reply);
    }
}


static void
notify_cron(int force)
{
    int64_t      now;
    PGresult    *res;
    const char  *values[2];

    now = nxw_mono_ms();

    if (force || now >= notify_next_heartbeat) {
        if (nxw_heartbeat(&notify_redis, &notify_conf.base) == 0
            || force)
        {
            notify_next_heartbeat = now + notify_conf.base.heartbeat_interval;

        } else {
            /* try again soon, not at every turn */
            notify_next_heartbeat = now + 1000;
        }
    }

    if (!force && now < notify_next_cron) {
        return;
    }

    notify_next_cron = now + NOTIFY_CRON_MS;

    if (!nxw_stop) {
        notify_intake_reclaim();
    }

    /* expired leases of any worker: the attempt counts, as 'lost' */
    values[0] = NULL;
    values[1] = "f";

    res = nxw_pg_exec(&notify_pg, "notify_release", 2, values);
    PQclear(res);

    notify_sweep();
}


static void
notify_sweep(void)
{
    int          i, n;
    char         attempts[24], age[24];
    PGresult    *res;
    nxw_log_t   *l;
    const char  *values[2];

    (void) snprintf(attempts, sizeof(attempts), "%lld",
                    (long long) notify_conf.max_attempts);
    (void) snprintf(age, sizeof(age), "%lld",
                    (long long) (notify_conf.max_age / 1000));

    values[0] = attempts;
    values[1] = age;

    res = nxw_pg_exec(&notify_pg, "notify_sweep", 2, values);

    if (res == NULL) {
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        nxw_log_msg(NXW_LOG_ERROR, "the DLQ sweep failed",
                    PQresultErrorMessage(res));
        PQclear(res);
        return;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        l = nxw_log(NXW_LOG_WARN, "dead-lettered");
        nxw_log_str(l, "job_id", PQgetvalue(res, i, 1));
        nxw_log_str(l, "reason", PQgetvalue(res, i, 3));
        nxw_log_str(l, "dlq_id", PQgetvalue(res, i, 0));
        nxw_log_end(l);

        notify_dead_stream(PQgetvalue(res, i, 1),
                           atoll(PQgetvalue(res, i, 2)),
                           PQgetvalue(res, i, 3), PQgetvalue(res, i, 0));
    }

    PQclear(res);
}


/*
 * handback: this process gives back what it holds (a drain that ran out
 * of time); otherwise takes back what a previous process of the same
 * consumer name held when it died.
 */

static void
notify_release(int handback)
{
    PGresult    *res;
    nxw_log_t   *l;
    const char  *values[2];

    values[0] = notify_conf.base.consumer;
    values[1] = handback ? "t" : "f";

    res = nxw_pg_exec(&notify_pg, "notify_release", 2, values);

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) > 0)
    {
        l = nxw_log(NXW_LOG_WARN, handback ? "handed back jobs in flight"
                                           : "took back jobs a previous "
                                             "process left in flight");
        nxw_log_int(l, "jobs", atoi(PQgetvalue(res, 0, 0)));
        nxw_log_end(l);
    }

    PQclear(res);
}


static void
notify_reload(void)
{
    int             level;
    char            err[512];
    notify_state_t  st;

    nxw_log_msg(NXW_LOG_INFO, "SIGHUP: reloading the configuration", NULL);

    if (nxw_config_reload(notify_tables, &notify_conf, sizeof(notify_conf))
        != 0)
    {
        return;
    }

    level = nxw_log_level(notify_conf.base.log_level);
    if (level >= 0) {
        nxw_log_set_level(level);
    }

    memset(&st, 0, sizeof(st));

    if (notify_state_build(&notify_conf, &st, err, sizeof(err)) != 0) {
        nxw_log_msg(NXW_LOG_ERROR, "reloaded keys are not usable; the "
                    "previous allowlist, fallback URLs and secret stay",
                    err);
        notify_state_free(&st);
        return;
    }

    /* the seal key is not reloaded: keep the one in use */
    st.seal = notify_state.seal;
    st.have_seal = notify_state.have_seal;
    memset(&notify_state.seal, 0, sizeof(notify_state.seal));

    notify_state_free(&notify_state);
    notify_state = st;
}


static int
notify_state_build(const notify_conf_t *conf, notify_state_t *st, char *err,
    size_t errlen)
{
    int  n;

    memset(st, 0, sizeof(*st));

    if (conf->base.visibility_timeout <= conf->timeout + 1000) {
        (void) snprintf(err, errlen, "visibility_timeout must be longer "
                        "than notify_timeout plus 1s");
        return -1;
    }

    if (conf->backoff_max < conf->backoff) {
        (void) snprintf(err, errlen, "notify_backoff_max must not be less "
                        "than notify_backoff");
        return -1;
    }

    n = nx_cidr_list_parse(conf->allow_cidrs ? conf->allow_cidrs : "",
                           st->allow, NX_CIDR_MAX, err, errlen);
    if (n < 0) {
        char  msg[256];

        (void) snprintf(msg, sizeof(msg), "notify_allow_cidrs: %s", err);
        (void) snprintf(err, errlen, "%s", msg);
        return -1;
    }

    st->nallow = (size_t) n;

    if (notify_fallback_parse(conf->fallback_urls ? conf->fallback_urls : "",
                              st, err, errlen) != 0)
    {
        return -1;
    }

    if (conf->fallback_secret_file != NULL
        && conf->fallback_secret_file[0] != '\0'
        && notify_read_secret(conf->fallback_secret_file, st, err, errlen)
           != 0)
    {
        return -1;
    }

    if (conf->seal_key_file != NULL && conf->seal_key_file[0] != '\0') {
        if (nx_seal_key_load(conf->seal_key_file, &st->seal, err, errlen)
            != 0)
        {
            return -1;
        }

        st->have_seal = 1;
    }

    return 0;
}


static void
notify_state_free(notify_state_t *st)
{
    size_t  i;

    for (i = 0; i < st->nfallback; i++) {
        free(st->fallback[i]);
    }

    if (st->fallback_secret != NULL) {
        memset(st->fallback_secret, 0, st->fallback_secret_len);
        free(st->fallback_secret);
    }

    nx_seal_key_wipe(&st->seal);
    memset(st, 0, sizeof(*st));
}


/* a JSON array of URLs, or a list separated by commas or spaces */

static int
notify_fallback_parse(const char *s, notify_state_t *st, char *err,
    size_t errlen)
{
    char         one[2048];
    size_t       i, len;
    yajl_val     v;
    const char  *p, *end, *u;

    while (*s == ' ') {
        s++;
    }

    if (*s == '[') {
        v = nx_json_parse_strict(s, strlen(s), err, errlen);

        if (v == NULL || !YAJL_IS_ARRAY(v)
            || v->u.array.len > NOTIFY_FALLBACK_MAX)
        {
            if (v != NULL) {
                nx_json_free(v);
            }
            (void) snprintf(err, errlen, "notify_fallback_urls must be a "
                            "JSON array of at most 16 URLs");
            return -1;
        }

        for (i = 0; i < v->u.array.len; i++) {
            if (nx_json_string(v->u.array.values[i], &u) != 0
                || (strncasecmp(u, "http://", 7) != 0
                    && strncasecmp(u, "https://", 8) != 0)
                || strlen(u) > 2048)
            {
                nx_json_free(v);
                (void) snprintf(err, errlen, "notify_fallback_urls: each "
                                "must be an http:// or https:// URL");
                return -1;
            }

            st->fallback[st->nfallback++] = strdup(u);
        }

        nx_json_free(v);
        return 0;
    }

    p = s;

    for ( ;; ) {
        while (*p == ',' || *p == ' ') {
            p++;
        }

        if (*p == '\0') {
            return 0;
        }

        end = p + strcspn(p, ", ");
        len = end - p;

        if (len >= sizeof(one) || st->nfallback == NOTIFY_FALLBACK_MAX) {
            (void) snprintf(err, errlen, "notify_fallback_urls: at most 16 "
                            "URLs of at most 2047 bytes");
            return -1;
        }

        memcpy(one, p, len);
        one[len] = '\0';

        if (strncasecmp(one, "http://", 7) != 0
            && strncasecmp(one, "https://", 8) != 0)
        {
            (void) snprintf(err, errlen, "notify_fallback_urls: each must "
                            "be an http:// or https:// URL");
            return -1;
        }

        st->fallback[st->nfallback++] = strdup(one);
        p = end;
    }
}


static int
notify_read_secret(const char *path, notify_state_t *st, char *err,
    size_t errlen)
{
    int      fd;
    ssize_t  n;
    uint8_t  buf[4097];

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        (void) snprintf(err, errlen, "notify_fallback_secret_file \"%s\": "
                        "%s", path, strerror(errno));
        return -1;
    }

    n = read(fd, buf, sizeof(buf));
    (void) close(fd);

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }

    if (n <= 0 || n > 4096) {
        memset(buf, 0, sizeof(buf));
        (void) snprintf(err, errlen, "notify_fallback_secret_file \"%s\" "
                        "must hold 1-4096 bytes", path);
        return -1;
    }

    st->fallback_secret = malloc((size_t) n);
    if (st->fallback_secret == NULL) {
        memset(buf, 0, sizeof(buf));
        return -1;
    }

    memcpy(st->fallback_secret, buf, (size_t) n);
    st->fallback_secret_len = (size_t) n;
    memset(buf, 0, sizeof(buf));

    return 0;
}


static void
notify_usage(void)
{
    (void) fprintf(stderr,
        "usage: nexus-notify [-c FILE] [-t]\n"
        "  -c FILE  configuration file (also NEXUS_WORKER_CONFIG)\n"
        "  -t       check the configuration and exit\n"
        "Every key may also be set as NEXUS_<KEY> in the environment.\n");
}
