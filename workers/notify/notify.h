/*
 * Copyright (C) Nexus authors
 *
 * nexus-notify: webhook notifications.  Events come from a Redis stream
 * (nx:events), are routed to a tenant's destinations (notify_intake.c),
 * become jobs in PostgreSQL, and are delivered over HTTP with libcurl's
 * multi interface (notify_deliver.c), each attempt recorded, failures
 * retried with backoff and finally dead-lettered.  notify_main.c is the
 * loop and its cron.
 */

#ifndef NOTIFY_H
#define NOTIFY_H

#include <curl/curl.h>

#include "nx_netguard.h"
#include "nx_notify.h"
#include "nx_seal.h"
#include "nxw.h"


#define NOTIFY_BODY_MAX        1024
#define NOTIFY_FALLBACK_MAX    16
#define NOTIFY_DEAD_STREAM     "nx:notify:dead"
#define NOTIFY_SEAL_PURPOSE    "webhook"
#define NOTIFY_USER_AGENT      "nexus-notify/" NXW_VERSION


typedef struct {
    nxw_conf_t      base;           /* first: the runtime's keys */

    char           *stream;
    char           *group;
    char           *seal_key_file;
    char           *fallback_urls;
    char           *fallback_secret_file;
    char           *allow_cidrs;
    int64_t         concurrency;
    int64_t         per_destination;
    int64_t         batch;
    int64_t         max_attempts;
    int64_t         backoff;
    int64_t         backoff_max;
    int64_t         max_age;
    int64_t         timeout;
    int64_t         connect_timeout;
    int64_t         poll_interval;
} notify_conf_t;


/* what the keys mean once parsed; rebuilt on reload */
typedef struct {
    nx_cidr_t       allow[NX_CIDR_MAX];
    size_t          nallow;
    char           *fallback[NOTIFY_FALLBACK_MAX];
    size_t          nfallback;
    uint8_t        *fallback_secret;
    size_t          fallback_secret_len;
    nx_seal_key_t   seal;
    unsigned        have_seal:1;
} notify_state_t;


#define NOTIFY_DELIVERED   0
#define NOTIFY_FAILED      1        /* a non-2xx answer: retried */
#define NOTIFY_TIMEOUT     2        /* retried */
#define NOTIFY_ERROR       3        /* no answer: retried */
#define NOTIFY_BLOCKED     4        /* the SSRF guard or the scheme: DLQ */
#define NOTIFY_GONE        5        /* 410: DLQ, destination disabled */
#define NOTIFY_REDIRECT    6        /* 3xx, not followed: DLQ */


typedef struct notify_transfer_s  notify_transfer_t;

struct notify_transfer_s {
    notify_transfer_t  *next;       /* in the list of finished transfers */
    CURL               *easy;
    struct curl_slist  *headers;

    char                job_id[40];
    int                 attempt;
    int64_t             tenant_id;
    int64_t             destination_id;     /* 0: a fallback URL */
    char               *url;
    char               *payload;
    size_t              payload_len;
    char                sha[65];

    int64_t             started_ms;         /* wall clock */
    int64_t             started_mono;
    int64_t             duration_ms;

    char                body[NOTIFY_BODY_MAX];
    size_t              body_len;
    char                location[256];
    char                why[192];           /* the guard's refusal */
    char                errbuf[CURL_ERROR_SIZE];

    int                 outcome;
    long                http_status;
    char                error[512];
    unsigned            blocked:1;
};


extern notify_conf_t   notify_conf;
extern notify_state_t  notify_state;
extern nxw_pg_t        notify_pg;
extern nxw_redis_t     notify_redis;


/* notify_intake.c: events into jobs */
int notify_intake_init(void);
void notify_intake(int64_t block_ms);
void notify_intake_reclaim(void);
int notify_intake_busy(void);
void notify_intake_free(void);

/* notify_deliver.c: jobs over HTTP */
int notify_deliver_init(void);
int notify_deliver_claim(void);
void notify_deliver_run(int64_t wait_ms);
void notify_deliver_record(void);
size_t notify_deliver_inflight(void);
size_t notify_deliver_unrecorded(void);
void notify_deliver_abort(void);
void notify_deliver_free(void);
int64_t notify_deliver_next_due(void);

/* notify_main.c */
void notify_dead_stream(const char *job_id, int64_t tenant_id,
    const char *reason, const char *dlq_id);

/* statements (notify_main.c) */
extern const nxw_stmt_t  notify_stmts[];
extern const size_t      notify_nstmts;

#endif /* NOTIFY_H */
