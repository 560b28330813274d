/*
 * Copyright (C) Nexus authors
 *
 * Delivery: leased jobs go out as HTTP POSTs through libcurl's multi
 * interface, many at once, so that one slow receiver holds only its own
 * transfers.
 *
 * Each request carries the canonical payload and the X-Notification-*
 * headers; with a secret (sealed in the database, opened here for the
 * request only), X-Notification-Timestamp and X-Notification-Signature:
 * sha256=<hex HMAC(secret, id "." timestamp "." body)>.
 *
 * The SSRF guard: only http and https; no redirects followed; no proxy;
 * and every address curl is about to connect to goes through
 * nx_addr_allowed() in CURLOPT_OPENSOCKETFUNCTION, after resolution, so
 * what is checked is what is connected to.
 *
 * Outcomes: 2xx delivered; 410 gone (the destination is disabled, the job
 * dead-lettered); 3xx a redirect, not followed (dead-lettered); a refused
 * address or scheme blocked (dead-lettered); anything else (another
 * status, a timeout, a connection error) retried after the backoff until
 * notify_max_attempts, then dead-lettered.  At most 1 KiB of the answer
 * is kept.  Finished attempts are recorded in one transaction per turn of
 * the loop; if PostgreSQL is away they wait in memory, and no new job is
 * claimed meanwhile.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/crypto.h>

#include "nx_json.h"
#include "notify.h"


static void notify_start(PGresult *res, int row);
static int notify_headers(notify_transfer_t *t, const char *tenant,
    const char *event_type, const char *headers_json, const uint8_t *secret,
    size_t secret_len);
static int notify_open_secret(notify_transfer_t *t, const char *hex,
    uint8_t *out, size_t *outlen);
static curl_socket_t notify_open_socket(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *address);
static size_t notify_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t notify_header(char *ptr, size_t size, size_t nitems,
    void *userdata);
static void notify_finished(notify_transfer_t *t, CURLcode rc);
static void notify_done_now(notify_transfer_t *t, int outcome,
    const char *error);
static void notify_inflight_remove(notify_transfer_t *t);
static int notify_record_tx(nxw_pg_t *pg, void *arg);
static void notify_body_text(notify_transfer_t *t);
static void notify_transfer_free(notify_transfer_t *t);


typedef struct {
    notify_transfer_t  *t;
    char                dlq_id[24];
} notify_recorded_t;


static CURLM               *notify_multi;
static notify_transfer_t  **notify_inflight_list;
static size_t               notify_ninflight;
static notify_transfer_t   *notify_done_head;
static notify_transfer_t  **notify_done_tail = &notify_done_head;
static size_t               notify_ndone;
static int64_t              notify_record_at;
static int64_t              notify_record_backoff;

static const char  *notify_outcomes[] = {
    "delivered", "failed", "timeout", "error", "blocked", "gone", "redirect"
};


int
notify_deliver_init(void)
{
    notify_multi = curl_multi_init();

    notify_inflight_list = calloc(1024, sizeof(notify_transfer_t *));

    if (notify_multi == NULL || notify_inflight_list == NULL) {
        nxw_log_msg(NXW_LOG_ERROR, "curl_multi_init failed", NULL);
        return -1;
    }

    return 0;
}


size_t
notify_deliver_inflight(void)
{
    return notify_ninflight;
}


size_t
notify_deliver_unrecorded(void)
{
    return notify_ndone;
}


int64_t
notify_deliver_next_due(void)
{
    int64_t    ms;
    PGresult  *res;

    res = nxw_pg_exec(&notify_pg, "notify_next_due", 0, NULL);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        PQclear(res);
        return -1;
    }

    ms = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);

    /* -1 none; a due job (ms <= 0) is claimable now */
    return ms == -1 ? -1 : (ms < 0 ? 0 : ms);
}


/* how many jobs were claimed: 0 also when nothing could be */

int
notify_deliver_claim(void)
{
    int          i, n;
    char         limit[24], per[24], vis[24], max[24], age[24];
    PGresult    *res;
    const char  *values[6];
    int64_t      free_slots;

    /* attempts waiting to be recorded come first */
    if (notify_ndone > 0) {
        return 0;
    }

    free_slots = notify_conf.concurrency - (int64_t) notify_ninflight;

    if (free_slots <= 0) {
        return 0;
    }

    (void) snprintf(limit, sizeof(limit), "%lld", (long long) free_slots);
    (void) snprintf(per, sizeof(per), "%lld",
                    (long long) notify_conf.per_destination);
    (void) snprintf(vis, sizeof(vis), "%lld",
                    (long long) notify_conf.base.visibility_timeout);
    (void) snprintf(max, sizeof(max), "%lld",
                    (long long) notify_conf.max_attempts);
    (void) snprintf(age, sizeof(age), "%lld",
                    (long long) (notify_conf.max_age / 1000));

    values[0] = notify_conf.base.consumer;
    values[1] = limit;
    values[2] = per;
    values[3] = vis;
    values[4] = max;
    values[5] = age;

    res = nxw_pg_exec(&notify_pg, "notify_claim", 6, values);

    if (res == NULL) {
        return 0;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        nxw_log_msg(NXW_LOG_ERROR, "cannot claim jobs",
                    PQresultErrorMessage(res));
        PQclear(res);
        return 0;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        notify_start(res, i);
    }

    PQclear(res);

    return n;
}


/*
 * A claimed row: id, attempt, tenant_id, tenant, destination_id, url,
 * headers, secret (hex), event_type, payload, payload_sha256.
 */

static void
notify_start(PGresult *res, int row)
{
    int                 ok;
    char               *scheme;
    size_t              secret_len;
    uint8_t             secret[NX_SEAL_PLAIN_MAX];
    const uint8_t      *sp;
    CURLU              *u;
    notify_transfer_t  *t;

    t = calloc(1, sizeof(notify_transfer_t));
    if (t == NULL) {
        return;
    }

    (void) snprintf(t->job_id, sizeof(t->job_id), "%s",
                    PQgetvalue(res, row, 0));
    t->attempt = atoi(PQgetvalue(res, row, 1));
    t->tenant_id = PQgetisnull(res, row, 2) ? 0
                                             : atoll(PQgetvalue(res, row, 2));
    t->destination_id = PQgetisnull(res, row, 4)
                        ? 0 : atoll(PQgetvalue(res, row, 4));
    t->url = strdup(PQgetvalue(res, row, 5));
    t->payload = strdup(PQgetvalue(res, row, 9));
    t->payload_len = PQgetlength(res, row, 9);
    (void) snprintf(t->sha, sizeof(t->sha), "%s", PQgetvalue(res, row, 10));
    t->started_ms = nxw_now_ms();
    t->started_mono = nxw_mono_ms();

    if (t->url == NULL || t->payload == NULL) {
        notify_done_now(t, NOTIFY_ERROR, "out of memory");
        return;
    }

    /* only http and https, whatever the URL says */

    ok = 0;
    scheme = NULL;
    u = curl_url();

    if (u != NULL
        && curl_url_set(u, CURLUPART_URL, t->url, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK)
    {
        ok = strcasecmp(scheme, "http") == 0
             || strcasecmp(scheme, "https") == 0;
    }

    if (!ok) {
        (void) snprintf(t->error, sizeof(t->error),
                        "the URL scheme \"%.16s\" is not allowed (http and "
                        "https only)",
                        scheme ? scheme : "?");
        curl_free(scheme);
        curl_url_cleanup(u);
        notify_done_now(t, NOTIFY_BLOCKED, NULL);
        return;
    }

    curl_free(scheme);
    curl_url_cleanup(u);

    /* the secret: the destination's, sealed; or the fallback URLs' */

    sp = NULL;
    secret_len = 0;

    if (t->destination_id != 0) {
        if (!PQgetisnull(res, row, 7)) {
            if (notify_open_secret(t, PQgetvalue(res, row, 7), secret,
                                   &secret_len) != 0)
            {
                notify_done_now(t, NOTIFY_ERROR, NULL);
                return;
            }

            sp = secret;
        }

    } else if (notify_state.fallback_secret != NULL) {
        sp = notify_state.fallback_secret;
        secret_len = notify_state.fallback_secret_len;
    }

    ok = notify_headers(t, PQgetisnull(res, row, 3)
                           ? NULL : PQgetvalue(res, row, 3),
                        PQgetvalue(res, row, 8), PQgetvalue(res, row, 6),
                        sp, secret_len);

    OPENSSL_cleanse(secret, sizeof(secret));

    if (ok != 0) {
        notify_done_now(t, NOTIFY_ERROR, "cannot build the request");
        return;
    }

    t->easy = curl_easy_init();
    if (t->easy == NULL) {
        notify_done_now(t, NOTIFY_ERROR, "curl_easy_init failed");
        return;
    }

    (void) curl_easy_setopt(t->easy, CURLOPT_URL, t->url);
    (void) curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
    (void) curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->payload);
    (void) curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE,
                            (long) t->payload_len);
    (void) curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
    (void) curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    (void) curl_easy_setopt(t->easy, CURLOPT_REDIR_PROTOCOLS_STR,
                            "http,https");
    (void) curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
    (void) curl_easy_setopt(t->easy, CURLOPT_PROXY, "");
    (void) curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETFUNCTION,
                            notify_open_socket);
    (void) curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETDATA, t);
    (void) curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS,
                            (long) notify_conf.timeout);
    (void) curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS,
                            (long) notify_conf.connect_timeout);
    (void) curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    (void) curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, notify_write);
    (void) curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    (void) curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, notify_header);
    (void) curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    (void) curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
    (void) curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);

    if (curl_multi_add_handle(notify_multi, t->easy) != CURLM_OK) {
        notify_done_now(t, NOTIFY_ERROR, "curl_multi_add_handle failed");
        return;
    }

    notify_inflight_list[notify_ninflight++] = t;
}


static int
notify_headers(notify_transfer_t *t, const char *tenant,
    const char *event_type, const char *headers_json, const uint8_t *secret,
    size_t secret_len)
{
    char                line[1200], sig[NX_NOTIFY_SIG_LEN + 1], err[128];
    size_t              i;
    int64_t             ts;
    yajl_val            h, v;
    const char         *name, *value;
    struct curl_slist  *l, *n;

    l = NULL;

#define notify_add(s)                                                        \
    do {                                                                     \
        n = curl_slist_append(l, (s));                                       \
        if (n == NULL) {                                                     \
            goto failed;                                                     \
        }                                                                    \
        l = n;                                                               \
    } while (0)

    notify_add("Content-Type: application/json");
    notify_add("User-Agent: " NOTIFY_USER_AGENT);
    /* no "100 Continue" round trip on larger bodies */
    notify_add("Expect:");

    (void) snprintf(line, sizeof(line), "X-Notification-Id: %s", t->job_id);
    notify_add(line);
    (void) snprintf(line, sizeof(line), "X-Notification-Attempt: %d",
                    t->attempt);
    notify_add(line);
    (void) snprintf(line, sizeof(line), "X-Notification-Event-Type: %s",
                    event_type);
    notify_add(line);

    if (tenant != NULL && tenant[0] != '\0') {
        (void) snprintf(line, sizeof(line), "X-Notification-Tenant-Id: %s",
                        tenant);
        notify_add(line);
    }

    if (secret != NULL) {
        ts = nxw_now_ms() / 1000;

        if (nx_notify_sign(secret, secret_len, t->job_id, ts, t->payload,
                           t->payload_len, sig) != 0)
        {
            goto failed;
        }

        (void) snprintf(line, sizeof(line), "X-Notification-Timestamp: %lld",
                        (long long) ts);
        notify_add(line);
        (void) snprintf(line, sizeof(line), "X-Notification-Signature: %s",
                        sig);
        notify_add(line);
    }

    /* the destination's own headers: checked by the admin API, again here */

    h = nx_json_parse(headers_json, strlen(headers_json), err, sizeof(err));

    if (h != NULL && YAJL_IS_OBJECT(h)) {
        for (i = 0; i < h->u.object.len; i++) {
            name = h->u.object.keys[i];
            v = h->u.object.values[i];

            if (nx_json_string(v, &value) != 0
                || strlen(name) == 0 || strlen(name) > 64
                || strlen(value) > 1024
                || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                "qrstuvwxyz0123456789-") != strlen(name)
                || strpbrk(value, "\r\n") != NULL
                || strncasecmp(name, "x-notification-", 15) == 0
                || strcasecmp(name, "host") == 0
                || strcasecmp(name, "content-type") == 0
                || strcasecmp(name, "content-length") == 0
                || strcasecmp(name, "transfer-encoding") == 0
                || strcasecmp(name, "connection") == 0
                || strcasecmp(name, "expect") == 0)
            {
                continue;
            }

            (void) snprintf(line, sizeof(line), "%s: %s", name, value);
            notify_add(line);
        }
    }

    if (h != NULL) {
        nx_json_free(h);
    }

#undef notify_add

    t->headers = l;
    OPENSSL_cleanse(sig, sizeof(sig));

    return 0;

failed:

    curl_slist_free_all(l);

    return -1;
}


static int
notify_open_secret(notify_transfer_t *t, const char *hex, uint8_t *out,
    size_t *outlen)
{
    int       rc;
    size_t    i, n;
    uint8_t  *sealed;
    unsigned  b;

    if (!notify_state.have_seal) {
        (void) snprintf(t->error, sizeof(t->error), "the destination has a "
                        "secret but the worker has no seal_key_file");
        return -1;
    }

    n = strlen(hex) / 2;

    if (n > NX_SEAL_PLAIN_MAX + NX_SEAL_OVERHEAD) {
        (void) snprintf(t->error, sizeof(t->error), "the destination's "
                        "secret is too long");
        return -1;
    }

    sealed = malloc(n ? n : 1);
    if (sealed == NULL) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
            break;
        }
        sealed[i] = (uint8_t) b;
    }

    rc = nx_seal_open(&notify_state.seal, NOTIFY_SEAL_PURPOSE, t->tenant_id,
                      sealed, n, out, outlen);
    free(sealed);

    if (rc != NX_SEAL_OK) {
        (void) snprintf(t->error, sizeof(t->error), "the destination's "
                        "secret cannot be opened: %s", nx_seal_strerror(rc));
        return -1;
    }

    return 0;
}


/* the SSRF guard: the address about to be connected to, after DNS */

static curl_socket_t
notify_open_socket(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *address)
{
    notify_transfer_t  *t;

    t = clientp;

    if (purpose != CURLSOCKTYPE_IPCXN
        || !nx_addr_allowed(&address->addr, address->addrlen,
                            notify_state.allow, notify_state.nallow, t->why,
                            sizeof(t->why)))
    {
        if (purpose != CURLSOCKTYPE_IPCXN) {
            (void) snprintf(t->why, sizeof(t->why),
                            "only outgoing connections are allowed");
        }

        t->blocked = 1;
        return CURL_SOCKET_BAD;
    }

    return socket(address->family, address->socktype | SOCK_CLOEXEC,
                  address->protocol);
}


/* at most 1 KiB of the answer is kept; the rest is read and dropped */

static size_t
notify_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t              n, room;
    notify_transfer_t  *t;

    t = userdata;
    n = size * nmemb;
    room = NOTIFY_BODY_MAX - t->body_len;

    memcpy(t->body + t->body_len, ptr, n < room ? n : room);
    t->body_len += n < room ? n : room;

    return n;
}


static size_t
notify_header(char *ptr, size_t size, size_t nitems, void *userdata)
{
    size_t              n, len;
    notify_transfer_t  *t;

    t = userdata;
    n = size * nitems;

    if (n > 9 && strncasecmp(ptr, "location:", 9) == 0) {
        ptr += 9;
        len = n - 9;

        while (len > 0 && (*ptr == ' ' || *ptr == '\t')) {
            ptr++;
            len--;
        }

        while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n')) {
            len--;
        }

        if (len >= sizeof(t->location)) {
            len = sizeof(t->location) - 1;
        }

        memcpy(t->location, ptr, len);
        t->location[len] = '\0';
    }

    return n;
}


void
notify_deliver_run(int64_t wait_ms)
{
    int                 running, left;
    CURLMsg            *msg;
    notify_transfer_t  *t;

    if (notify_ninflight == 0) {
        return;
    }

    if (wait_ms > 0) {
        (void) curl_multi_poll(notify_multi, NULL, 0, (int) wait_ms, NULL);
    }

    (void) curl_multi_perform(notify_multi, &running);

    while ((msg = curl_multi_info_read(notify_multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        t = NULL;
        (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                                 (char **) &t);

        if (t == NULL) {
            continue;
        }

        notify_finished(t, msg->data.result);
    }
}


static void
notify_finished(notify_transfer_t *t, CURLcode rc)
{
    long  status;

    status = 0;
    (void) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);

    notify_inflight_remove(t);

    t->http_status = status;

    if (rc == CURLE_OK) {
        if (status >= 200 && status <= 299) {
            notify_done_now(t, NOTIFY_DELIVERED, NULL);
            return;
        }

        if (status == 410) {
            notify_done_now(t, NOTIFY_GONE, "HTTP 410: the receiver is gone; "
                            "the destination is disabled");
            return;
        }

        if (status >= 300 && status <= 399) {
            (void) snprintf(t->error, sizeof(t->error), "HTTP %ld: redirect "
                            "to \"%.255s\" not followed", status,
                            t->location[0] ? t->location : "?");
            notify_done_now(t, NOTIFY_REDIRECT, NULL);
            return;
        }

        (void) snprintf(t->error, sizeof(t->error), "HTTP %ld", status);
        notify_done_now(t, NOTIFY_FAILED, NULL);
        return;
    }

    t->http_status = 0;

    if (t->blocked && (rc == CURLE_COULDNT_CONNECT
                       || rc == CURLE_COULDNT_RESOLVE_HOST))
    {
        (void) snprintf(t->error, sizeof(t->error),
                        "refused by the SSRF guard: %.191s", t->why);
        notify_done_now(t, NOTIFY_BLOCKED, NULL);
        return;
    }

    if (rc == CURLE_UNSUPPORTED_PROTOCOL) {
        notify_done_now(t, NOTIFY_BLOCKED,
                        "the URL scheme is not allowed (http and https "
                        "only)");
        return;
    }

    if (rc == CURLE_OPERATION_TIMEDOUT) {
        (void) snprintf(t->error, sizeof(t->error), "timed out: %.256s",
                        t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
        notify_done_now(t, NOTIFY_TIMEOUT, NULL);
        return;
    }

    (void) snprintf(t->error, sizeof(t->error), "%s",
                    t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
    notify_done_now(t, NOTIFY_ERROR, NULL);
}


/* the outcome is decided; the attempt waits to be recorded */

static void
notify_done_now(notify_transfer_t *t, int outcome, const char *error)
{
    t->outcome = outcome;
    t->duration_ms = nxw_mono_ms() - t->started_mono;

    if (error != NULL) {
        (void) snprintf(t->error, sizeof(t->error), "%s", error);
    }

    if (t->easy != NULL) {
        (void) curl_multi_remove_handle(notify_multi, t->easy);
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
    }

    curl_slist_free_all(t->headers);
    t->headers = NULL;

    notify_body_text(t);

    t->next = NULL;
    *notify_done_tail = t;
    notify_done_tail = &t->next;
    notify_ndone++;
}


static void
notify_inflight_remove(notify_transfer_t *t)
{
    size_t  i;

    for (i = 0; i < notify_ninflight; i++) {
        if (notify_inflight_list[i] == t) {
            notify_inflight_list[i] = notify_inflight_list[--notify_ninflight];
            return;
        }
    }
}


void
notify_deliver_record(void)
{
    int                 rc;
    size_t              i;
    int64_t             now;
    nxw_log_t          *l;
    notify_transfer_t  *t, *next;
    notify_recorded_t  *rec;

    if (notify_ndone == 0) {
        return;
    }

    now = nxw_mono_ms();

    if (now < notify_record_at) {
        return;
    }

    rec = calloc(notify_ndone, sizeof(notify_recorded_t));
    if (rec == NULL) {
        return;
    }

    for (i = 0, t = notify_done_head; t != NULL; t = t->next, i++) {
        rec[i].t = t;
    }

    rc = nxw_pg_transaction(&notify_pg, notify_record_tx, rec, 3);

    if (rc != 0) {
        free(rec);

        notify_record_backoff = notify_record_backoff
                                ? notify_record_backoff * 2 : 100;
        if (notify_record_backoff > 5000) {
            notify_record_backoff = 5000;
        }

        notify_record_at = now + notify_record_backoff;

        l = nxw_log(NXW_LOG_WARN, "cannot record attempts yet; kept in "
                    "memory, no new job is claimed meanwhile");
        nxw_log_int(l, "attempts", (int64_t) notify_ndone);
        nxw_log_end(l);
        return;
    }

    notify_record_backoff = 0;

    for (i = 0; i < notify_ndone; i++) {
        t = rec[i].t;

        l = nxw_log(t->outcome == NOTIFY_DELIVERED ? NXW_LOG_INFO
                                                   : NXW_LOG_WARN,
                    t->outcome == NOTIFY_DELIVERED ? "delivered"
                                                   : "delivery failed");
        nxw_log_str(l, "job_id", t->job_id);
        nxw_log_int(l, "attempt", t->attempt);
        nxw_log_str(l, "outcome", notify_outcomes[t->outcome]);

        if (t->destination_id) {
            nxw_log_int(l, "destination_id", t->destination_id);
        } else {
            nxw_log_str(l, "destination", "fallback");
        }

        if (t->http_status) {
            nxw_log_int(l, "status", t->http_status);
        }

        nxw_log_int(l, "ms", t->duration_ms);

        if (t->outcome != NOTIFY_DELIVERED) {
            nxw_log_str(l, "error", t->error);
        }

        if (rec[i].dlq_id[0]) {
            nxw_log_str(l, "dlq_id", rec[i].dlq_id);
        }

        nxw_log_end(l);

        if (rec[i].dlq_id[0]) {
            notify_dead_stream(t->job_id, t->tenant_id,
                               t->outcome == NOTIFY_GONE ? "gone"
                               : t->outcome == NOTIFY_BLOCKED ? "blocked"
                               : t->outcome == NOTIFY_REDIRECT ? "redirect"
                               : "max_attempts",
                               rec[i].dlq_id);
        }
    }

    for (t = notify_done_head; t != NULL; t = next) {
        next = t->next;
        notify_transfer_free(t);
    }

    notify_done_head = NULL;
    notify_done_tail = &notify_done_head;
    notify_ndone = 0;

    free(rec);
}


static int
notify_record_tx(nxw_pg_t *pg, void *arg)
{
    size_t              i;
    int64_t             delay;
    PGresult           *res;
    const char         *values[14], *status, *reason;
    notify_transfer_t  *t;
    notify_recorded_t  *rec;
    char                attempt[16], started[24], dur[24], code[16],
                        delay_s[24];

    rec = arg;

    for (i = 0; i < notify_ndone; i++) {
        t = rec[i].t;
        rec[i].dlq_id[0] = '\0';

        reason = NULL;
        delay = 0;

        switch (t->outcome) {

        case NOTIFY_DELIVERED:
            status = "delivered";
            break;

        case NOTIFY_GONE:
            status = "dlq";
            reason = "gone";
            break;

        case NOTIFY_BLOCKED:
            status = "dlq";
            reason = "blocked";
            break;

        case NOTIFY_REDIRECT:
            status = "dlq";
            reason = "redirect";
            break;

        default:
            if (t->attempt >= notify_conf.max_attempts) {
                status = "dlq";
                reason = "max_attempts";

            } else {
                status = "retrying";
                delay = nx_notify_backoff(t->job_id, t->attempt,
                                          notify_conf.backoff,
                                          notify_conf.backoff_max);
            }

            break;
        }

        (void) snprintf(attempt, sizeof(attempt), "%d", t->attempt);
        (void) snprintf(started, sizeof(started), "%lld",
                        (long long) t->started_ms);
        (void) snprintf(dur, sizeof(dur), "%lld", (long long) t->duration_ms);
        (void) snprintf(code, sizeof(code), "%ld", t->http_status);
        (void) snprintf(delay_s, sizeof(delay_s), "%lld", (long long) delay);

        values[0] = t->job_id;
        values[1] = notify_conf.base.consumer;
        values[2] = attempt;
        values[3] = started;
        values[4] = dur;
        values[5] = notify_outcomes[t->outcome];
        values[6] = t->http_status ? code : NULL;
        values[7] = t->outcome == NOTIFY_DELIVERED ? NULL : t->error;
        values[8] = t->body_len ? t->body : NULL;
        values[9] = t->sha;
        values[10] = status;
        values[11] = delay_s;
        values[12] = reason;
        values[13] = t->outcome == NOTIFY_GONE ? "t" : "f";

        res = nxw_pg_exec(pg, "notify_finish", 14, values);

        if (res == NULL) {
            return -1;
        }

        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            nxw_log_msg(NXW_LOG_ERROR, "cannot record an attempt",
                        PQresultErrorMessage(res));
            PQclear(res);
            return -1;
        }

        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            (void) snprintf(rec[i].dlq_id, sizeof(rec[i].dlq_id), "%s",
                            PQgetvalue(res, 0, 0));
        }

        PQclear(res);
    }

    return 0;
}


/* the kept answer as text PostgreSQL takes: UTF-8, no NUL, <= 1 KiB */

static void
notify_body_text(notify_transfer_t *t)
{
    size_t          i, k;
    unsigned char  *p;

    p = (unsigned char *) t->body;

    for (i = 0; i < t->body_len; i += k) {
        k = (p[i] < 0x80) ? 1 : nx_utf8_len(p + i, t->body_len - i);

        if (k == 0) {
            p[i] = '?';
            k = 1;

        } else if (k == 1 && p[i] == '\0') {
            p[i] = '?';
        }
    }

    /* room for the terminating NUL: the buffer holds 1024 bytes */
    if (t->body_len == NOTIFY_BODY_MAX) {
        t->body_len--;

        /* not in the middle of a sequence */
        while (t->body_len > 0 && (p[t->body_len] & 0xc0) == 0x80) {
            t->body_len--;
        }
    }

    t->body[t->body_len] = '\0';
}


/* the drain ran out of time: transfers are dropped, their jobs handed back */

void
notify_deliver_abort(void)
{
    notify_transfer_t  *t;

    while (notify_ninflight > 0) {
        t = notify_inflight_list[--notify_ninflight];

        (void) curl_multi_remove_handle(notify_multi, t->easy);
        notify_transfer_free(t);
    }
}


void
notify_deliver_free(void)
{
    notify_transfer_t  *t, *next;

    notify_deliver_abort();

    for (t = notify_done_head; t != NULL; t = next) {
        next = t->next;
        notify_transfer_free(t);
    }

    notify_done_head = NULL;
    notify_done_tail = &notify_done_head;
    notify_ndone = 0;

    if (notify_multi != NULL) {
        (void) curl_multi_cleanup(notify_multi);
        notify_multi = NULL;
    }

    free(notify_inflight_list);
    notify_inflight_list = NULL;
}


static void
notify_transfer_free(notify_transfer_t *t)
{
    if (t->easy != NULL) {
        curl_easy_cleanup(t->easy);
    }

    curl_slist_free_all(t->headers);
    free(t->url);
    free(t->payload);
    free(t);
}
