/*
 * Copyright (C) Nexus authors
 *
 * The runtime every Nexus worker daemon (nexus-<role>) is built on:
 *
 *   config     one table of typed keys with defaults, read from a file and
 *              the environment; SIGHUP re-reads it and applies the keys
 *              that may change (nxw_config.c)
 *   log        JSON lines on stderr (nxw_log.c)
 *   signals    handlers only set flags; the first SIGTERM drains, a second
 *              exits at once (nxw_signal.c)
 *   redis      a synchronous hiredis connection with reconnect and
 *              backoff, the heartbeat (nxw_redis.c)
 *   queue      Redis Streams consumer groups: XREADGROUP BLOCK, XACK,
 *              XAUTOCLAIM, an attempt counter and dead letters
 *              (nxw_queue.c)
 *   pg         libpq with prepared statements, reconnect and retries of
 *              transient errors (nxw_pg.c)
 *
 * Workers are single-threaded and blocking calls are fine here: they are
 * not nginx.  Every wait is bounded so that signals are seen promptly.
 */

#ifndef NXW_H
#define NXW_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>


#define NXW_VERSION  "1"


/* time */

int64_t nxw_now_ms(void);           /* wall clock, ms since 1970 */
int64_t nxw_mono_ms(void);          /* monotonic, ms */
void nxw_sleep_ms(int64_t ms);


/* config */

typedef enum {
    NXW_OPT_STR = 0,
    NXW_OPT_INT,
    NXW_OPT_MSEC,                   /* "500ms", "15s", "2m", "1h", "1500" */
    NXW_OPT_BOOL                    /* on/off, true/false, yes/no, 1/0 */
} nxw_opt_type_t;

#define NXW_OPT_RELOAD  0x01        /* SIGHUP may change it */
#define NXW_OPT_SECRET  0x02        /* never logged (nor its URL password) */
#define NXW_OPT_URL     0x04        /* logged with its password masked */

typedef struct {
    const char      *name;          /* file key; env NEXUS_<NAME> */
    nxw_opt_type_t   type;
    const char      *def;           /* default, as text; NULL: none */
    unsigned         flags;
    size_t           offset;        /* into the daemon's config struct */
    int64_t          min;
    int64_t          max;
} nxw_option_t;

/*
 * The keys every daemon has.  A daemon's config struct starts with an
 * nxw_conf_t, so that these offsets hold for it too.
 */
typedef struct {
    char        *database_url;
    char        *redis_url;
    char        *consumer;          /* default: <hostname>-<role> */
    char        *log_level;
    int64_t      heartbeat_interval;
    int64_t      heartbeat_ttl;
    int64_t      shutdown_timeout;
    int64_t      visibility_timeout;
    int64_t      block;
    int64_t      queue_max_attempts;
    const char  *role;
    const char  *file;              /* the config file, or NULL */
} nxw_conf_t;

extern const nxw_option_t  nxw_runtime_options[];

/*
 * tables: NULL-terminated list of option tables (each ending with a NULL
 * name).  Defaults, then the file (if any), then the environment.
 * Returns 0, or -1 with err set; conf is then partly filled (free it).
 */
int nxw_config_load(const nxw_option_t *const *tables, void *conf,
    const char *file, char *err, size_t errlen);

/*
 * SIGHUP: loads into a fresh struct of size bytes; on success copies the
 * keys that may change into conf and logs those that changed and those
 * that cannot change without a restart.  Returns 0, or -1 (conf kept).
 */
int nxw_config_reload(const nxw_option_t *const *tables, void *conf,
    size_t size);

void nxw_config_free(const nxw_option_t *const *tables, void *conf);

/* one log line with every key's effective value, secrets left out */
void nxw_config_log(const nxw_option_t *const *tables, const void *conf);

int nxw_parse_msec(const char *s, int64_t *out);

/* url with the password of its userinfo replaced by "***", into buf */
const char *nxw_redact_url(const char *url, char *buf, size_t size);


/* log */

#define NXW_LOG_ERROR   0
#define NXW_LOG_WARN    1
#define NXW_LOG_INFO    2
#define NXW_LOG_DEBUG   3

typedef struct nxw_log_s  nxw_log_t;

void nxw_log_init(const char *role);
int nxw_log_level(const char *name);        /* -1: unknown */
void nxw_log_set_level(int level);

/*
 * A line: nxw_log() starts it (NULL when the level is off; the other
 * calls accept NULL), fields are added, nxw_log_end() writes it with one
 * write(2).  Never pass a secret.
 */
nxw_log_t *nxw_log(int level, const char *msg);
void nxw_log_str(nxw_log_t *l, const char *key, const char *value);
void nxw_log_strn(nxw_log_t *l, const char *key, const char *value,
    size_t n);
void nxw_log_int(nxw_log_t *l, const char *key, int64_t value);
void nxw_log_end(nxw_log_t *l);

/* a one-line message with an optional "error" field */
void nxw_log_msg(int level, const char *msg, const char *error);


/* signals */

extern volatile sig_atomic_t  nxw_stop;     /* SIGTERM or SIGINT seen */
extern volatile sig_atomic_t  nxw_hup;      /* SIGHUP seen */

void nxw_signals_init(void);


/* Redis */

typedef struct {
    redisContext    *ctx;
    char            *host;
    int              port;
    int              db;
    char            *password;
    int64_t          timeout_ms;
    int64_t          retry_at;      /* monotonic: no connect before */
    int64_t          backoff_ms;
    unsigned         down:1;        /* logged as down */
} nxw_redis_t;

/* redis://[:password@]host[:port][/db], or host:port */
int nxw_redis_init(nxw_redis_t *r, const char *url, char *err,
    size_t errlen);

/* connected (connecting now unless in backoff): 0, or -1 */
int nxw_redis_ready(nxw_redis_t *r);

/*
 * One command; the reply (which may be an error reply) or NULL when the
 * connection failed (it is then closed, and retried after a backoff).
 * extra_ms widens the read timeout (a BLOCK).
 */
redisReply *nxw_redis_argv(nxw_redis_t *r, int argc, const char **argv,
    const size_t *lens, int64_t extra_ms);
redisReply *nxw_redis_cmd(nxw_redis_t *r, const char *fmt, ...);

void nxw_redis_close(nxw_redis_t *r);
void nxw_redis_free(nxw_redis_t *r);

/*
 * The heartbeat: HSET nx:hb:<role> ts <Redis time, ms> interval <ms> pid
 * consumer version, PEXPIRE ttl, SADD nx:hb:roles <role>.  0, or -1.
 */
int nxw_heartbeat(nxw_redis_t *r, const nxw_conf_t *conf);


/* PostgreSQL */

typedef struct {
    const char  *name;
    const char  *sql;
    int          nparams;
} nxw_stmt_t;

typedef struct {
    PGconn            *conn;
    char              *url;
    const char        *role;
    const nxw_stmt_t  *stmts;
    size_t             nstmts;
    int64_t            retry_at;
    int64_t            backoff_ms;
    unsigned           down:1;
} nxw_pg_t;

void nxw_pg_init(nxw_pg_t *pg, const char *url, const char *role,
    const nxw_stmt_t *stmts, size_t nstmts);

/* connected, statements prepared (connecting now unless in backoff) */
int nxw_pg_ready(nxw_pg_t *pg);

/*
 * Runs a prepared statement.  Returns the result, or NULL when the
 * connection is gone (closed; reconnected later).  The caller checks the
 * status and PQclear()s.
 */
PGresult *nxw_pg_exec(nxw_pg_t *pg, const char *stmt, int n,
    const char *const *values);
int nxw_pg_command(nxw_pg_t *pg, const char *sql);     /* 0, or -1 */

/* the result failed for a reason that a retry may cure */
int nxw_pg_transient(nxw_pg_t *pg, PGresult *res);

/*
 * fn inside BEGIN ... COMMIT, retried up to tries times with a backoff
 * (50 ms doubling) while the failure is transient.  fn returns 0, -1
 * (transient: roll back and retry) or -2 (permanent: roll back, give up).
 * Returns 0, -1 (still failing: try again later) or -2.
 */
int nxw_pg_transaction(nxw_pg_t *pg, int (*fn)(nxw_pg_t *pg, void *arg),
    void *arg, int tries);

void nxw_pg_close(nxw_pg_t *pg);


/* queues: Redis Streams consumer groups */

typedef struct {
    const char  *name;
    size_t       name_len;
    const char  *value;
    size_t       value_len;
} nxw_field_t;

typedef struct {
    char          id[48];
    int64_t       deliveries;       /* reads by the group, this one too */
    nxw_field_t  *fields;
    size_t        nfields;
} nxw_entry_t;

typedef struct {
    redisReply   *reply;            /* owns the strings */
    nxw_entry_t  *entries;
    size_t        n;
    nxw_field_t  *fields;
} nxw_batch_t;

typedef struct {
    const char  *role;
    const char  *stream;
    const char  *group;
    const char  *consumer;
    char        *dead;              /* <stream>:dead */
    int64_t      visibility_ms;
    int64_t      max_attempts;
    char         cursor[48];        /* XAUTOCLAIM's next start */
    unsigned     history:1;         /* own pending entries read first */
    unsigned     group_ok:1;
} nxw_queue_t;

/* a daemon that uses a queue has this among its statements */
#define NXW_QUEUE_STMT                                                       \
    { "nxw_dead_letter",                                                     \
      "INSERT INTO worker_dead_letters (role, stream, entry_id, fields,"     \
      " reason, attempts) VALUES ($1, $2, $3, $4::jsonb, $5, $6::integer)"   \
      " ON CONFLICT (stream, entry_id) DO NOTHING", 6 }

void nxw_queue_init(nxw_queue_t *q, const nxw_conf_t *conf,
    const char *stream, const char *group);

/*
 * Takes up to count entries: first this consumer's own pending entries
 * (after a restart), then new ones, waiting up to block_ms (0: no wait).
 * Returns 0 (b->n may be 0), or -1 when Redis failed.
 */
int nxw_queue_read(nxw_redis_t *r, nxw_queue_t *q, size_t count,
    int64_t block_ms, nxw_batch_t *b);

/* XAUTOCLAIM: entries idle longer than the visibility timeout */
int nxw_queue_reclaim(nxw_redis_t *r, nxw_queue_t *q, size_t count,
    nxw_batch_t *b);

int nxw_queue_ack(nxw_redis_t *r, nxw_queue_t *q, const char *const *ids,
    size_t n);

/*
 * The entry goes to the dead-letter stream and worker_dead_letters, then
 * is acknowledged.  Returns 0, or -1 (nothing lost: it stays pending).
 */
int nxw_queue_dead(nxw_redis_t *r, nxw_pg_t *pg, nxw_queue_t *q,
    const nxw_entry_t *e, const char *reason);

void nxw_batch_free(nxw_batch_t *b);

void nxw_queue_free(nxw_queue_t *q);

#endif /* NXW_H */
