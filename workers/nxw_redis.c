/*
 * Copyright (C) Nexus authors
 *
 * Redis for the workers: one synchronous hiredis connection (blocking is
 * fine outside nginx), with connect and read timeouts, AUTH and SELECT on
 * connect, and reconnects spaced by an exponential backoff so that a dead
 * Redis costs a bounded wait per loop, never a busy spin.  Also the
 * heartbeat that /v1/ops/health reads.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "nxw.h"


#define NXW_REDIS_TIMEOUT      2000
#define NXW_REDIS_BACKOFF_MIN  100
#define NXW_REDIS_BACKOFF_MAX  5000


static void nxw_redis_failed(nxw_redis_t *r, const char *what);


/*
 * KEYS: nx:hb:<role>, nx:hb:roles.  ARGV: interval, pid, consumer,
 * version, ttl, role.  Redis's clock, so that the module (which reads it
 * with the same clock) computes an age that no host's clock skews.
 */
static const char  nxw_heartbeat_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('HSET', KEYS[1], 'ts', now, 'interval', ARGV[1],"
    " 'pid', ARGV[2], 'consumer', ARGV[3], 'version', ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "redis.call('SADD', KEYS[2], ARGV[6])\n"
    "return now\n";


int
nxw_redis_init(nxw_redis_t *r, const char *url, char *err, size_t errlen)
{
    long         port, db;
    char        *end;
    const char  *p, *at, *host, *colon, *slash;
    size_t       hlen;

    memset(r, 0, sizeof(*r));
    r->port = 6379;
    r->timeout_ms = NXW_REDIS_TIMEOUT;
    r->backoff_ms = NXW_REDIS_BACKOFF_MIN;

    p = url;

    if (strncmp(p, "redis://", 8) == 0) {
        p += 8;
    }

    slash = strchr(p, '/');
    at = strchr(p, '@');

    if (at != NULL && (slash == NULL || at < slash)) {
        /* [user]:password@ */
        colon = memchr(p, ':', at - p);

        if (colon != NULL && at > colon + 1) {
            r->password = strndup(colon + 1, at - colon - 1);
            if (r->password == NULL) {
                goto nomem;
            }
        }

        p = at + 1;
    }

    host = p;
    hlen = strcspn(host, ":/");

    if (hlen == 0 || hlen > 253) {
        (void) snprintf(err, errlen, "redis_url: no host");
        return -1;
    }

    r->host = strndup(host, hlen);
    if (r->host == NULL) {
        goto nomem;
    }

    p = host + hlen;

    if (*p == ':') {
        port = strtol(p + 1, &end, 10);

        if (end == p + 1 || port < 1 || port > 65535
            || (*end != '\0' && *end != '/'))
        {
            (void) snprintf(err, errlen, "redis_url: invalid port");
            return -1;
        }

        r->port = (int) port;
        p = end;
    }

    if (*p == '/' && p[1] != '\0') {
        db = strtol(p + 1, &end, 10);

        if (end == p + 1 || *end != '\0' || db < 0 || db > 1000) {
            (void) snprintf(err, errlen, "redis_url: invalid database");
            return -1;
        }

        r->db = (int) db;

    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        (void) snprintf(err, errlen, "redis_url: unexpected characters "
                        "after the host");
        return -1;
    }

    return 0;

nomem:

    (void) snprintf(err, errlen, "out of memory");
    return -1;
}


int
nxw_redis_ready(nxw_redis_t *r)
{
    struct timeval   tv;
    redisReply      *reply;
    nxw_log_t       *l;

    if (r->ctx != NULL) {
        return 0;
    }

    if (nxw_mono_ms() < r->retry_at) {
        return -1;
    }

    tv.tv_sec = r->timeout_ms / 1000;
    tv.tv_usec = (r->timeout_ms % 1000) * 1000;

    r->ctx = redisConnectWithTimeout(r->host, r->port, tv);

    if (r->ctx == NULL || r->ctx->err) {
        nxw_redis_failed(r, "connect");
        return -1;
    }

    (void) redisSetTimeout(r->ctx, tv);
    (void) redisEnableKeepAlive(r->ctx);

    if (r->password != NULL) {
        reply = redisCommand(r->ctx, "AUTH %s", r->password);

        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            /* the reply names no secret, but say only what failed */
            if (reply != NULL) {
                freeReplyObject(reply);
            }
            nxw_redis_failed(r, "AUTH");
            return -1;
        }

        freeReplyObject(reply);
    }

    if (r->db != 0) {
        reply = redisCommand(r->ctx, "SELECT %d", r->db);

        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            if (reply != NULL) {
                freeReplyObject(reply);
            }
            nxw_redis_failed(r, "SELECT");
            return -1;
        }

        freeReplyObject(reply);
    }

    r->backoff_ms = NXW_REDIS_BACKOFF_MIN;

    if (r->down) {
        r->down = 0;
        l = nxw_log(NXW_LOG_INFO, "Redis is back");
        nxw_log_str(l, "host", r->host);
        nxw_log_int(l, "port", r->port);
        nxw_log_end(l);
    }

    return 0;
}


redisReply *
nxw_redis_argv(nxw_redis_t *r, int argc, const char **argv,
    const size_t *lens, int64_t extra_ms)
{
    int64_t          t;
    redisReply      *reply;
    struct timeval   tv;

    if (nxw_redis_ready(r) != 0) {
        return NULL;
    }

    if (extra_ms > 0) {
        t = r->timeout_ms + extra_ms;
        tv.tv_sec = t / 1000;
        tv.tv_usec = (t % 1000) * 1000;
        (void) redisSetTimeout(r->ctx, tv);
    }

    reply = redisCommandArgv(r->ctx, argc, argv, lens);

    if (reply == NULL) {
        nxw_redis_failed(r, argv[0]);
        return NULL;
    }

    if (extra_ms > 0) {
        tv.tv_sec = r->timeout_ms / 1000;
        tv.tv_usec = (r->timeout_ms % 1000) * 1000;
        (void) redisSetTimeout(r->ctx, tv);
    }

    return reply;
}


redisReply *
nxw_redis_cmd(nxw_redis_t *r, const char *fmt, ...)
{
    va_list      args;
    redisReply  *reply;

    if (nxw_redis_ready(r) != 0) {
        return NULL;
    }

    va_start(args, fmt);
    reply = redisvCommand(r->ctx, fmt, args);
    va_end(args);

    if (reply == NULL) {
        nxw_redis_failed(r, "command");
        return NULL;
    }

    return reply;
}


void
nxw_redis_close(nxw_redis_t *r)
{
    if (r->ctx != NULL) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
}


void
nxw_redis_free(nxw_redis_t *r)
{
    nxw_redis_close(r);
    free(r->host);

    if (r->password != NULL) {
        memset(r->password, 0, strlen(r->password));
        free(r->password);
    }

    memset(r, 0, sizeof(*r));
}


int
nxw_heartbeat(nxw_redis_t *r, const nxw_conf_t *conf)
{
    int          rc;
    char         key[96], interval[24], pid[24], ttl[24];
    const char  *argv[11];
    size_t       lens[11];
    redisReply  *reply;
    int          i;

    (void) snprintf(key, sizeof(key), "nx:hb:%s", conf->role);
    (void) snprintf(interval, sizeof(interval), "%lld",
                    (long long) conf->heartbeat_interval);
    (void) snprintf(pid, sizeof(pid), "%d", (int) getpid());
    (void) snprintf(ttl, sizeof(ttl), "%lld",
                    (long long) conf->heartbeat_ttl);

    argv[0] = "EVAL";
    argv[1] = nxw_heartbeat_lua;
    argv[2] = "2";
    argv[3] = key;
    argv[4] = "nx:hb:roles";
    argv[5] = interval;
    argv[6] = pid;
    argv[7] = conf->consumer;
    argv[8] = NXW_VERSION;
    argv[9] = ttl;
    argv[10] = conf->role;

    for (i = 0; i < 11; i++) {
        lens[i] = strlen(argv[i]);
    }

    reply = nxw_redis_argv(r, 11, argv, lens, 0);
    if (reply == NULL) {
        return -1;
    }

    rc = (reply->type == REDIS_REPLY_INTEGER) ? 0 : -1;

    if (rc != 0) {
        nxw_log_msg(NXW_LOG_WARN, "heartbeat refused by Redis",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : NULL);
    }

    freeReplyObject(reply);

    return rc;
}


static void
nxw_redis_failed(nxw_redis_t *r, const char *what)
{
    nxw_log_t  *l;

    if (!r->down) {
        l = nxw_log(NXW_LOG_ERROR, "Redis is unavailable");
        nxw_log_str(l, "host", r->host);
        nxw_log_int(l, "port", r->port);
        nxw_log_str(l, "during", what);
        nxw_log_str(l, "error", (r->ctx != NULL && r->ctx->errstr[0])
                                ? r->ctx->errstr : "no connection");
        nxw_log_end(l);
        r->down = 1;
    }

    nxw_redis_close(r);

    r->retry_at = nxw_mono_ms() + r->backoff_ms;
    r->backoff_ms *= 2;

    if (r->backoff_ms > NXW_REDIS_BACKOFF_MAX) {
        r->backoff_ms = NXW_REDIS_BACKOFF_MAX;
    }
}
