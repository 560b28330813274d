/*
 * Copyright (C) Nexus authors
 *
 * Work queues on Redis Streams consumer groups.
 *
 *   take       XREADGROUP GROUP <group> <consumer> COUNT n BLOCK ms
 *              STREAMS <stream> >, after reading this consumer's own
 *              pending entries (ID 0) once at start: what a previous
 *              process of the same name took and did not finish
 *   finish     XACK, only once the effect is durable (the caller commits
 *              first); an entry handled twice must be harmless
 *   reclaim    XAUTOCLAIM <stream> <group> <consumer> <visibility ms>:
 *              entries that another consumer took and has not acked in
 *              time (it died) become ours
 *   attempts   Redis counts deliveries per entry; an entry read more than
 *              max_attempts times (one that crashes every worker, say) is
 *              not handled again but dead-lettered
 *   dead       XADD <stream>:dead, a worker_dead_letters row, then XACK
 *
 * The group is created at ID 0 with MKSTREAM when it is missing, so the
 * first worker also takes what producers wrote before it ever ran.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nxw.h"


static int nxw_queue_group(nxw_redis_t *r, nxw_queue_t *q);
static int nxw_queue_entries(nxw_redis_t *r, nxw_queue_t *q,
    redisReply *list, nxw_batch_t *b, int counted);
static void nxw_queue_counts(nxw_redis_t *r, nxw_queue_t *q,
    nxw_batch_t *b);
static char *nxw_queue_fields_json(const nxw_entry_t *e);


void
nxw_queue_init(nxw_queue_t *q, const nxw_conf_t *conf, const char *stream,
    const char *group)
{
    size_t  len;

    memset(q, 0, sizeof(*q));

    q->role = conf->role;
    q->stream = stream;
    q->group = group;
    q->consumer = conf->consumer;
    q->visibility_ms = conf->visibility_timeout;
    q->max_attempts = conf->queue_max_attempts;
    q->history = 1;
    strcpy(q->cursor, "0-0");

    len = strlen(stream) + sizeof(":dead");
    q->dead = malloc(len);
    if (q->dead != NULL) {
        (void) snprintf(q->dead, len, "%s:dead", stream);
    }
}


void
nxw_queue_free(nxw_queue_t *q)
{
    free(q->dead);
    q->dead = NULL;
}


int
nxw_queue_read(nxw_redis_t *r, nxw_queue_t *q, size_t count,
    int64_t block_ms, nxw_batch_t *b)
{
    int          i, argc, history;
    char         cnt[24], blk[24];
    const char  *argv[12];
    size_t       lens[12];
    redisReply  *reply;

    memset(b, 0, sizeof(*b));

    if (nxw_queue_group(r, q) != 0) {
        return -1;
    }

    (void) snprintf(cnt, sizeof(cnt), "%zu", count);
    (void) snprintf(blk, sizeof(blk), "%lld", (long long) block_ms);

    history = q->history;

    argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = q->group;
    argv[argc++] = q->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = cnt;

    if (!history && block_ms > 0) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blk;
    }

    argv[argc++] = "STREAMS";
    argv[argc++] = q->stream;
    argv[argc++] = history ? "0" : ">";

    for (i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }

    reply = nxw_redis_argv(r, argc, argv, lens, history ? 0 : block_ms);
    if (reply == NULL) {
        return -1;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            /* the stream was deleted: made again next time */
            q->group_ok = 0;
        }

        nxw_log_msg(NXW_LOG_ERROR, "XREADGROUP failed", reply->str);
        freeReplyObject(reply);
        return -1;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        /* nil: BLOCK timed out */
        freeReplyObject(reply);

        if (history) {
            q->history = 0;
        }
        return 0;
    }

    /* [[stream, [[id, [f, v, ...]], ...]]] */
    if (reply->element[0]->type != REDIS_REPLY_ARRAY
        || reply->element[0]->elements != 2
        || reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
    {
        freeReplyObject(reply);
        nxw_log_msg(NXW_LOG_ERROR, "XREADGROUP: unexpected reply", NULL);
        return -1;
    }

    b->reply = reply;

    if (nxw_queue_entries(r, q, reply->element[0]->element[1], b, !history)
        != 0)
    {
        nxw_batch_free(b);
        return -1;
    }

    if (history) {
        if (reply->element[0]->element[1]->elements == 0) {
            q->history = 0;

        } else {
            nxw_queue_counts(r, q, b);
        }
    }

    return 0;
}


int
nxw_queue_reclaim(nxw_redis_t *r, nxw_queue_t *q, size_t count,
    nxw_batch_t *b)
{
    char          idle[24], cnt[24];
    const char   *argv[8];
    size_t        lens[8];
    redisReply   *reply, *next;
    nxw_log_t    *l;
    int           i;

    memset(b, 0, sizeof(*b));

    if (nxw_queue_group(r, q) != 0) {
        return -1;
    }

    (void) snprintf(idle, sizeof(idle), "%lld", (long long) q->visibility_ms);
    (void) snprintf(cnt, sizeof(cnt), "%zu", count);

    argv[0] = "XAUTOCLAIM";
    argv[1] = q->stream;
    argv[2] = q->group;
    argv[3] = q->consumer;
    argv[4] = idle;
    argv[5] = q->cursor;
    argv[6] = "COUNT";
    argv[7] = cnt;

    for (i = 0; i < 8; i++) {
        lens[i] = strlen(argv[i]);
    }

    reply = nxw_redis_argv(r, 8, argv, lens, 0);
    if (reply == NULL) {
        return -1;
    }

    /* [next start, [[id, [f, v, ...]], ...], [deleted ids]] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        nxw_log_msg(NXW_LOG_ERROR, "XAUTOCLAIM failed",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : NULL);
        freeReplyObject(reply);
        return -1;
    }

    next = reply->element[0];
    (void) snprintf(q->cursor, sizeof(q->cursor), "%.*s", (int) next->len,
                    next->str);

    b->reply = reply;

    if (nxw_queue_entries(r, q, reply->element[1], b, 0) != 0) {
        nxw_batch_free(b);
        return -1;
    }

    if (b->n > 0) {
        nxw_queue_counts(r, q, b);

        l = nxw_log(NXW_LOG_WARN, "reclaimed entries from a consumer that "
                    "did not finish them in time");
        nxw_log_str(l, "stream", q->stream);
        nxw_log_int(l, "entries", (int64_t) b->n);
        nxw_log_end(l);
    }

    return 0;
}


int
nxw_queue_ack(nxw_redis_t *r, nxw_queue_t *q, const char *const *ids,
    size_t n)
{
    int          rc;
    size_t       i;
    const char **argv;
    size_t      *lens;
    redisReply  *reply;

    if (n == 0) {
        return 0;
    }

    argv = calloc(n + 3, sizeof(char *));
    lens = calloc(n + 3, sizeof(size_t));

    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return -1;
    }

    argv[0] = "XACK";
    argv[1] = q->stream;
    argv[2] = q->group;

    for (i = 0; i < n; i++) {
        argv[3 + i] = ids[i];
    }

    for (i = 0; i < n + 3; i++) {
        lens[i] = strlen(argv[i]);
    }

    reply = nxw_redis_argv(r, (int) (n + 3), argv, lens, 0);

    free(argv);
    free(lens);

    if (reply == NULL) {
        return -1;
    }

    rc = (reply->type == REDIS_REPLY_INTEGER) ? 0 : -1;

    if (rc != 0) {
        nxw_log_msg(NXW_LOG_ERROR, "XACK failed",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : NULL);
    }

    freeReplyObject(reply);

    return rc;
}


int
nxw_queue_dead(nxw_redis_t *r, nxw_pg_t *pg, nxw_queue_t *q,
    const nxw_entry_t *e, const char *reason)
{
    int          rc;
    char        *json, attempts[24];
    size_t       i, argc;
    PGresult    *res;
    nxw_log_t   *l;
    const char  *values[6], **argv, *id;
    size_t      *lens;
    redisReply  *reply;

    json = nxw_queue_fields_json(e);
    if (json == NULL || q->dead == NULL) {
        free(json);
        return -1;
    }

    (void) snprintf(attempts, sizeof(attempts), "%lld",
                    (long long) e->deliveries);

    /* the row first: the stream copy is for tools that watch it */

    values[0] = q->role;
    values[1] = q->stream;
    values[2] = e->id;
    values[3] = json;
    values[4] = reason;
    values[5] = attempts;

    res = nxw_pg_exec(pg, "nxw_dead_letter", 6, values);
    free(json);

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        nxw_log_msg(NXW_LOG_ERROR, "cannot record a dead letter",
                    res ? PQresultErrorMessage(res) : "no connection");
        PQclear(res);
        return -1;
    }

    PQclear(res);

    argc = 0;
    argv = calloc(14 + 2 * e->nfields, sizeof(char *));
    lens = calloc(14 + 2 * e->nfields, sizeof(size_t));

    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return -1;
    }

#define nxw_arg(s, n)  do { argv[argc] = (s); lens[argc] = (n); argc++; }     \
                       while (0)

    nxw_arg("XADD", 4);
    nxw_arg(q->dead, strlen(q->dead));
    nxw_arg("MAXLEN", 6);
    nxw_arg("~", 1);
    nxw_arg("100000", 6);
    nxw_arg("*", 1);
    nxw_arg("dead_entry_id", 13);
    nxw_arg(e->id, strlen(e->id));
    nxw_arg("dead_reason", 11);
    nxw_arg(reason, strlen(reason));
    nxw_arg("dead_attempts", 13);
    nxw_arg(attempts, strlen(attempts));

    for (i = 0; i < e->nfields; i++) {
        nxw_arg(e->fields[i].name, e->fields[i].name_len);
        nxw_arg(e->fields[i].value, e->fields[i].value_len);
    }

#undef nxw_arg

    reply = nxw_redis_argv(r, (int) argc, argv, lens, 0);

    free(argv);
    free(lens);

    if (reply == NULL) {
        return -1;
    }

    freeReplyObject(reply);

    id = e->id;
    rc = nxw_queue_ack(r, q, &id, 1);

    l = nxw_log(NXW_LOG_WARN, "dead-lettered a queue entry");
    nxw_log_str(l, "stream", q->stream);
    nxw_log_str(l, "entry_id", e->id);
    nxw_log_str(l, "reason", reason);
    nxw_log_int(l, "attempts", e->deliveries);
    nxw_log_end(l);

    return rc;
}


void
nxw_batch_free(nxw_batch_t *b)
{
    if (b->reply != NULL) {
        freeReplyObject(b->reply);
    }

    free(b->entries);
    free(b->fields);

    memset(b, 0, sizeof(*b));
}


static int
nxw_queue_group(nxw_redis_t *r, nxw_queue_t *q)
{
    redisReply  *reply;

    if (q->group_ok) {
        return 0;
    }

    reply = nxw_redis_cmd(r, "XGROUP CREATE %s %s 0 MKSTREAM", q->stream,
                          q->group);
    if (reply == NULL) {
        return -1;
    }

    if (reply->type == REDIS_REPLY_ERROR
        && strncmp(reply->str, "BUSYGROUP", 9) != 0)
    {
        nxw_log_msg(NXW_LOG_ERROR, "XGROUP CREATE failed", reply->str);
        freeReplyObject(reply);
        return -1;
    }

    freeReplyObject(reply);
    q->group_ok = 1;

    return 0;
}


/*
 * [[id, [f, v, ...]], ...] into b.  An entry whose fields are nil was
 * deleted (the stream was trimmed) while pending: acknowledged, skipped.
 */

static int
nxw_queue_entries(nxw_redis_t *r, nxw_queue_t *q, redisReply *list,
    nxw_batch_t *b, int counted)
{
    size_t        i, k, nf;
    redisReply   *e, *f;
    nxw_entry_t  *en;
    const char   *id;

    nf = 0;

    for (i = 0; i < list->elements; i++) {
        e = list->element[i];

        if (e->type == REDIS_REPLY_ARRAY && e->elements == 2
            && e->element[1]->type == REDIS_REPLY_ARRAY)
        {
            nf += e->element[1]->elements / 2;
        }
    }

    b->entries = calloc(list->elements ? list->elements : 1,
                        sizeof(nxw_entry_t));
    b->fields = calloc(nf ? nf : 1, sizeof(nxw_field_t));

    if (b->entries == NULL || b->fields == NULL) {
        return -1;
    }

    nf = 0;

    for (i = 0; i < list->elements; i++) {
        e = list->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[0]->type != REDIS_REPLY_STRING
            || e->element[0]->len >= sizeof(en->id))
        {
            continue;
        }

        f = e->element[1];

        if (f->type != REDIS_REPLY_ARRAY) {
            id = e->element[0]->str;
            (void) nxw_queue_ack(r, q, &id, 1);
            continue;
        }

        en = &b->entries[b->n++];
        memcpy(en->id, e->element[0]->str, e->element[0]->len);
        en->id[e->element[0]->len] = '\0';
        en->deliveries = counted ? 1 : 0;
        en->fields = &b->fields[nf];

        for (k = 0; k + 1 < f->elements; k += 2) {
            if (f->element[k]->type != REDIS_REPLY_STRING
                || f->element[k + 1]->type != REDIS_REPLY_STRING)
            {
                continue;
            }

            b->fields[nf].name = f->element[k]->str;
            b->fields[nf].name_len = f->element[k]->len;
            b->fields[nf].value = f->element[k + 1]->str;
            b->fields[nf].value_len = f->element[k + 1]->len;
            nf++;
            en->nfields++;
        }
    }

    return 0;
}


/* the delivery counts of entries read again: XPENDING, pipelined */

static void
nxw_queue_counts(nxw_redis_t *r, nxw_queue_t *q, nxw_batch_t *b)
{
    size_t       i;
    redisReply  *reply;
    void        *p;

    if (nxw_redis_ready(r) != 0) {
        return;
    }

    for (i = 0; i < b->n; i++) {
        (void) redisAppendCommand(r->ctx, "XPENDING %s %s %s %s 1",
                                  q->stream, q->group, b->entries[i].id,
                                  b->entries[i].id);
    }

    for (i = 0; i < b->n; i++) {
        if (redisGetReply(r->ctx, &p) != REDIS_OK) {
            nxw_redis_close(r);
            return;
        }

        reply = p;

        /* [[id, consumer, idle, deliveries]] */
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1
            && reply->element[0]->type == REDIS_REPLY_ARRAY
            && reply->element[0]->elements == 4
            && reply->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        {
            b->entries[i].deliveries = reply->element[0]->element[3]->integer;
        }

        freeReplyObject(reply);
    }
}


/* {"name":"value",...} for jsonb: NUL bytes become U+FFFD */

static char *
nxw_queue_fields_json(const nxw_entry_t *e)
{
    char    *out, *p, *tmp;
    size_t   i, j, k, len, n, max;

    len = 3;
    max = 1;

    for (i = 0; i < e->nfields; i++) {
        len += 6 * (e->fields[i].name_len + e->fields[i].value_len) + 6;

        if (e->fields[i].name_len > max) {
            max = e->fields[i].name_len;
        }

        if (e->fields[i].value_len > max) {
            max = e->fields[i].value_len;
        }
    }

    out = malloc(len);
    tmp = malloc(max);

    if (out == NULL || tmp == NULL) {
        free(out);
        free(tmp);
        return NULL;
    }

    p = out;
    *p++ = '{';

    for (i = 0; i < e->nfields; i++) {
        if (i) {
            *p++ = ',';
        }

        for (k = 0; k < 2; k++) {
            const char  *s = k ? e->fields[i].value : e->fields[i].name;

            n = k ? e->fields[i].value_len : e->fields[i].name_len;
            memcpy(tmp, s, n);

            /* jsonb refuses \u0000 */
            for (j = 0; j < n; j++) {
                if (tmp[j] == '\0') {
                    tmp[j] = '?';
                }
            }

            *p++ = '"';
            p += nx_json_escape(p, tmp, n);
            *p++ = '"';

            if (k == 0) {
                *p++ = ':';
            }
        }
    }

    *p++ = '}';
    *p = '\0';

    free(tmp);

    return out;
}
