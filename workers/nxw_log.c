/*
 * Copyright (C) Nexus authors
 *
 * Worker logs: one JSON object per line on stderr (systemd's journal, or
 * whatever the daemon's stderr is), written with a single write(2) so
 * that lines never interleave:
 *
 *   {"ts":"2024-05-01T12:00:00.123Z","level":"info","role":"notify",
 *    "pid":4242,"msg":"delivered","job_id":"...","status":200}
 *
 * Values are escaped with nx_json_escape() and cut at 1 KiB; a line is
 * at most 8 KiB.  Callers never pass secrets: URLs are logged by host, a
 * destination by id.  Also the clocks.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nx_json.h"
#include "nxw.h"


#define NXW_LOG_LINE_MAX   8192
#define NXW_LOG_VALUE_MAX  1024
/* ",\"truncated\":true}\n" */
#define NXW_LOG_TAIL       32


struct nxw_log_s {
    char     buf[NXW_LOG_LINE_MAX];
    size_t   len;
    int      full;
};


static int nxw_log_room(nxw_log_t *l, size_t need);
static void nxw_log_raw(nxw_log_t *l, const char *s, size_t n);
static void nxw_log_escaped(nxw_log_t *l, const char *s, size_t n);


static const char  *nxw_log_role = "worker";
static int          nxw_log_max = NXW_LOG_INFO;
static nxw_log_t    nxw_log_line;

static const char  *nxw_log_names[] = { "error", "warn", "info", "debug" };


int64_t
nxw_now_ms(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


int64_t
nxw_mono_ms(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


void
nxw_sleep_ms(int64_t ms)
{
    struct timespec  ts;

    if (ms <= 0) {
        return;
    }

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;

    /* a signal cuts the sleep short: the caller's loop sees its flag */
    (void) nanosleep(&ts, NULL);
}


void
nxw_log_init(const char *role)
{
    nxw_log_role = role;
}


int
nxw_log_level(const char *name)
{
    int  i;

    for (i = 0; i < 4; i++) {
        if (strcmp(name, nxw_log_names[i]) == 0) {
            return i;
        }
    }

    return -1;
}


void
nxw_log_set_level(int level)
{
    nxw_log_max = level;
}


nxw_log_t *
nxw_log(int level, const char *msg)
{
    int         n;
    char        head[160];
    time_t      secs;
    int64_t     now;
    struct tm   tm;
    nxw_log_t  *l;

    if (level > nxw_log_max) {
        return NULL;
    }

    l = &nxw_log_line;
    l->len = 0;
    l->full = 0;

    now = nxw_now_ms();
    secs = (time_t) (now / 1000);
    (void) gmtime_r(&secs, &tm);

    n = snprintf(head, sizeof(head),
                 "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\","
                 "\"level\":\"%s\",\"role\":\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int) (now % 1000),
                 nxw_log_names[level]);

    nxw_log_raw(l, head, (size_t) n);
    nxw_log_escaped(l, nxw_log_role, strlen(nxw_log_role));

    n = snprintf(head, sizeof(head), "\",\"pid\":%d,\"msg\":\"",
                 (int) getpid());
    nxw_log_raw(l, head, (size_t) n);

    /* messages are short constants: a long one is cut */
    nxw_log_escaped(l, msg, strnlen(msg, NXW_LOG_VALUE_MAX));
    nxw_log_raw(l, "\"", 1);

    return l;
}


void
nxw_log_str(nxw_log_t *l, const char *key, const char *value)
{
    if (value == NULL) {
        return;
    }

    nxw_log_strn(l, key, value, strlen(value));
}


void
nxw_log_strn(nxw_log_t *l, const char *key, const char *value, size_t n)
{
    size_t  need;

    if (l == NULL) {
        return;
    }

    if (n > NXW_LOG_VALUE_MAX) {
        n = NXW_LOG_VALUE_MAX;
    }

    need = 2 + nx_json_escape_len(key, strlen(key)) + 3
           + nx_json_escape_len(value, n) + 1;

    if (nxw_log_room(l, need) != 0) {
        return;
    }

    nxw_log_raw(l, ",\"", 2);
    nxw_log_escaped(l, key, strlen(key));
    nxw_log_raw(l, "\":\"", 3);
    nxw_log_escaped(l, value, n);
    nxw_log_raw(l, "\"", 1);
}


void
nxw_log_int(nxw_log_t *l, const char *key, int64_t value)
{
    int   n;
    char  num[32];

    if (l == NULL) {
        return;
    }

    n = snprintf(num, sizeof(num), "\":%" PRId64, value);

    if (nxw_log_room(l, 2 + nx_json_escape_len(key, strlen(key)) + n) != 0)
    {
        return;
    }

    nxw_log_raw(l, ",\"", 2);
    nxw_log_escaped(l, key, strlen(key));
    nxw_log_raw(l, num, (size_t) n);
}


void
nxw_log_end(nxw_log_t *l)
{
    size_t   off;
    ssize_t  n;

    static const char  cut[] = ",\"truncated\":true";

    if (l == NULL) {
        return;
    }

    /* room for these was kept by nxw_log_room() */
    if (l->full) {
        memcpy(l->buf + l->len, cut, sizeof(cut) - 1);
        l->len += sizeof(cut) - 1;
    }

    memcpy(l->buf + l->len, "}\n", 2);
    l->len += 2;

    off = 0;

    while (off < l->len) {
        n = write(STDERR_FILENO, l->buf + off, l->len - off);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }

        off += (size_t) n;
    }

    l->len = 0;
}


void
nxw_log_msg(int level, const char *msg, const char *error)
{
    nxw_log_t  *l;

    l = nxw_log(level, msg);
    nxw_log_str(l, "error", error);
    nxw_log_end(l);
}


/*
 * A field of need bytes fits, with room kept for the end of the line; a
 * field that does not is left out and the line marked as truncated.
 */

static int
nxw_log_room(nxw_log_t *l, size_t need)
{
    if (l->len + need + NXW_LOG_TAIL > sizeof(l->buf)) {
        l->full = 1;
        return -1;
    }

    return 0;
}


static void
nxw_log_raw(nxw_log_t *l, const char *s, size_t n)
{
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}


static void
nxw_log_escaped(nxw_log_t *l, const char *s, size_t n)
{
    l->len += nx_json_escape(l->buf + l->len, s, n);
}
