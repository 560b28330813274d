
/*
 * Copyright (C) Nexus authors
 *
 * Redis inside an nginx worker.
 *
 * The sockets are nginx's own (ngx_event_connect_peer, c->recv, c->send);
 * hiredis only formats commands and parses replies.  Every connection
 * keeps one FIFO of commands: written in order, answered in order, so any
 * number of requests pipeline on few connections.  Every command has a
 * timer; a command that times out fails and takes its connection down with
 * it (the replies behind it can no longer be trusted to arrive in time),
 * and the connection comes back after a backoff.  A cancelled command
 * stays in the FIFO, detached, until its reply is read and dropped.
 */


#include "ngx_nexus_redis.h"

#include <openssl/sha.h>


#define NGX_NEXUS_REDIS_BACKOFF_MIN   100
#define NGX_NEXUS_REDIS_BACKOFF_MAX   2000
#define NGX_NEXUS_REDIS_MAX_PENDING   4096


typedef enum {
    NGX_NEXUS_REDIS_DOWN = 0,
    NGX_NEXUS_REDIS_BACKOFF,
    NGX_NEXUS_REDIS_CONNECTING,
    NGX_NEXUS_REDIS_READY
} ngx_nexus_redis_state_e;


typedef struct {
    ngx_peer_connection_t       peer;
    ngx_nexus_redis_state_e     state;
    redisReader                *reader;
    ngx_queue_t                 pending;    /* sent or to be sent */
    ngx_queue_t                *cursor;     /* first not fully written */
    ngx_uint_t                  npending;
    ngx_event_t                 timer;      /* connect and backoff */
    ngx_msec_t                  backoff;
    ngx_log_t                  *log;
} ngx_nexus_redis_conn_t;


static void ngx_nexus_redis_connect(ngx_nexus_redis_conn_t *rc);
static void ngx_nexus_redis_connected(ngx_nexus_redis_conn_t *rc);
static void ngx_nexus_redis_fail(ngx_nexus_redis_conn_t *rc,
    const char *what, ngx_err_t err);
static void ngx_nexus_redis_read_handler(ngx_event_t *ev);
static void ngx_nexus_redis_write_handler(ngx_event_t *ev);
static void ngx_nexus_redis_write(ngx_nexus_redis_conn_t *rc);
static void ngx_nexus_redis_reply(ngx_nexus_redis_conn_t *rc,
    redisReply *reply);
static void ngx_nexus_redis_conn_timer(ngx_event_t *ev);
static void ngx_nexus_redis_cmd_timer(ngx_event_t *ev);
static void ngx_nexus_redis_enqueue(ngx_nexus_redis_conn_t *rc,
    ngx_nexus_redis_cmd_t *cmd, ngx_uint_t head);
static void ngx_nexus_redis_deliver(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);
static ngx_nexus_redis_cmd_t *ngx_nexus_redis_alloc(int argc,
    const char **argv, const size_t *argvlen, ngx_uint_t keep);
static ngx_int_t ngx_nexus_redis_setup(ngx_nexus_redis_conn_t *rc,
    const char **argv, size_t *argvlen);
static void ngx_nexus_redis_setup_handler(ngx_nexus_redis_cmd_t *cmd,
    redisReply *reply, ngx_int_t rc);


static ngx_nexus_redis_conf_t  *ngx_nexus_redis_cf;
static ngx_nexus_redis_conn_t  *ngx_nexus_redis_conns;
static ngx_uint_t               ngx_nexus_redis_nconns;


/*
 * nexus_redis host:port [pool=N] [timeout=T] [connect_timeout=T] [db=N]
 *             [password_file=path];
 */

char *
ngx_nexus_redis_conf(ngx_conf_t *cf, ngx_nexus_redis_conf_t *rcf,
    ngx_str_t *value, ngx_uint_t n)
{
    u_char     *p;
    ssize_t     len;
    ngx_fd_t    fd;
    ngx_int_t   num;
    ngx_str_t   s, path;
    ngx_url_t   u;
    ngx_uint_t  i;
    u_char      buf[512];

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid Redis address \"%V\"%s%s", &value[1],
                           u.err ? ": " : "", u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    rcf->addr = u.addrs[0];
    rcf->name = value[1];

    for (i = 2; i < n; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            num = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (num <= 0 || num > 256) {
                goto invalid;
            }
            rcf->size = num;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            num = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (num < 0 || num > 65535) {
                goto invalid;
            }
            rcf->db = num;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;
            rcf->timeout = ngx_parse_time(&s, 0);
            if (rcf->timeout == (ngx_msec_t) NGX_ERROR || rcf->timeout == 0) {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            rcf->connect_timeout = ngx_parse_time(&s, 0);
            if (rcf->connect_timeout == (ngx_msec_t) NGX_ERROR
                || rcf->connect_timeout == 0)
            {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            path.data = value[i].data + 14;
            path.len = value[i].len - 14;

            if (path.len == 0) {
                goto invalid;
            }

            if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
            if (fd == NGX_INVALID_FILE) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                                   ngx_open_file_n " \"%V\" failed", &path);
                return NGX_CONF_ERROR;
            }

            len = ngx_read_fd(fd, buf, sizeof(buf));
            ngx_close_file(fd);

            while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            {
                len--;
            }

            if (len <= 0 || len == (ssize_t) sizeof(buf)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "Redis password file \"%V\" is empty "
                                   "or too long", &path);
                return NGX_CONF_ERROR;
            }

            p = ngx_pnalloc(cf->pool, len);
            if (p == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memcpy(p, buf, len);
            ngx_explicit_memzero(buf, sizeof(buf));

            rcf->password.data = p;
            rcf->password.len = len;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_nexus_redis_script(ngx_conf_t *cf, ngx_nexus_redis_script_t *script,
    const char *body)
{
    u_char  md[SHA_DIGEST_LENGTH];

    script->body.data = (u_char *) body;
    script->body.len = ngx_strlen(body);

    SHA1((const unsigned char *) body, script->body.len, md);
    ngx_hex_dump(script->sha1, md, SHA_DIGEST_LENGTH);

    return NGX_OK;
}


ngx_uint_t
ngx_nexus_redis_configured(void)
{
    return ngx_nexus_redis_cf != NULL;
}


ngx_int_t
ngx_nexus_redis_init_process(ngx_cycle_t *cycle, ngx_nexus_redis_conf_t *rcf)
{
    ngx_uint_t               i;
    ngx_nexus_redis_conn_t  *rc;

    ngx_nexus_redis_cf = rcf;

    if (rcf == NULL) {
        return NGX_OK;
    }

    ngx_nexus_redis_conns = ngx_pcalloc(cycle->pool,
                                  rcf->size * sizeof(ngx_nexus_redis_conn_t));
    if (ngx_nexus_redis_conns == NULL) {
        return NGX_ERROR;
    }

    ngx_nexus_redis_nconns = rcf->size;

    for (i = 0; i < ngx_nexus_redis_nconns; i++) {
        rc = &ngx_nexus_redis_conns[i];

        rc->log = cycle->log;
        rc->backoff = NGX_NEXUS_REDIS_BACKOFF_MIN;
        ngx_queue_init(&rc->pending);
        rc->cursor = &rc->pending;

        rc->timer.handler = ngx_nexus_redis_conn_timer;
        rc->timer.data = rc;
        rc->timer.log = cycle->log;
        rc->timer.cancelable = 1;

        ngx_nexus_redis_connect(rc);
    }

    return NGX_OK;
}


void
ngx_nexus_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t               i;
    ngx_queue_t             *q;
    ngx_nexus_redis_cmd_t   *cmd;
    ngx_nexus_redis_conn_t  *rc;

    if (ngx_nexus_redis_cf == NULL) {
        return;
    }

    for (i = 0; i < ngx_nexus_redis_nconns; i++) {
        rc = &ngx_nexus_redis_conns[i];

        if (rc->timer.timer_set) {
            ngx_del_timer(&rc->timer);
        }

        while (!ngx_queue_empty(&rc->pending)) {
            q = ngx_queue_head(&rc->pending);
            ngx_queue_remove(q);
            cmd = ngx_queue_data(q, ngx_nexus_redis_cmd_t, queue);
            ngx_nexus_redis_free(cmd);
        }

        if (rc->peer.connection) {
            ngx_close_connection(rc->peer.connection);
            rc->peer.connection = NULL;
        }

        if (rc->reader) {
            redisReaderFree(rc->reader);
            rc->reader = NULL;
        }
    }

    ngx_nexus_redis_cf = NULL;
}


static ngx_nexus_redis_cmd_t *
ngx_nexus_redis_alloc(int argc, const char **argv, const size_t *argvlen,
    ngx_uint_t keep)
{
    int                     i, len;
    u_char                 *p;
    size_t                  size;
    ngx_nexus_redis_cmd_t  *cmd;

    if (argc <= 0 || argc > NGX_NEXUS_REDIS_MAX_ARGS) {
        return NULL;
    }

    size = sizeof(ngx_nexus_redis_cmd_t);

    if (keep) {
        size += argc * (sizeof(char *) + sizeof(size_t));
        for (i = 0; i < argc; i++) {
            size += argvlen[i];
        }
    }

    cmd = ngx_alloc(size, ngx_cycle->log);
    if (cmd == NULL) {
        return NULL;
    }

    ngx_memzero(cmd, sizeof(ngx_nexus_redis_cmd_t));

    len = redisFormatCommandArgv(&cmd->buf, argc, argv, argvlen);
    if (len <= 0) {
        ngx_free(cmd);
        return NULL;
    }

    cmd->len = len;

    if (keep) {
        /* arguments are kept to re-send a script as EVAL on NOSCRIPT */
        p = (u_char *) cmd + sizeof(ngx_nexus_redis_cmd_t);
        cmd->argv = (char **) p;
        p += argc * sizeof(char *);
        cmd->argvlen = (size_t *) p;
        p += argc * sizeof(size_t);

        for (i = 0; i < argc; i++) {
            cmd->argv[i] = (char *) p;
            cmd->argvlen[i] = argvlen[i];
            p = ngx_cpymem(p, argv[i], argvlen[i]);
        }

        cmd->argc = argc;
    }

    return cmd;
}


ngx_nexus_redis_cmd_t *
ngx_nexus_redis_command(int argc, const char **argv, const size_t *argvlen)
{
    return ngx_nexus_redis_alloc(argc, argv, argvlen, 0);
}


/* EVALSHA sha1 nkeys args...; argv holds the keys then the other args */

ngx_nexus_redis_cmd_t *
ngx_nexus_redis_eval(ngx_nexus_redis_script_t *s, int nkeys, int argc,
    const char **argv, const size_t *argvlen)
{
    int                     i;
    u_char                  nk[NGX_INT_T_LEN];
    const char             *av[NGX_NEXUS_REDIS_MAX_ARGS];
    size_t                  al[NGX_NEXUS_REDIS_MAX_ARGS];
    ngx_nexus_redis_cmd_t  *cmd;

    if (argc + 3 > NGX_NEXUS_REDIS_MAX_ARGS) {
        return NULL;
    }

    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = (const char *) s->sha1;
    al[1] = 40;
    av[2] = (const char *) nk;
    al[2] = ngx_sprintf(nk, "%d", nkeys) - nk;

    for (i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = argvlen[i];
    }

    cmd = ngx_nexus_redis_alloc(argc + 3, av, al, 1);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->script = s;

    return cmd;
}


void
ngx_nexus_redis_free(ngx_nexus_redis_cmd_t *cmd)
{
    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    if (cmd->buf) {
        redisFreeCommand(cmd->buf);
    }

    ngx_free(cmd);
}


/*
 * Sends the commands back to back on one connection.  Returns NGX_OK when
 * every handler will be called later, or NGX_DECLINED when Redis is known
 * to be unreachable now; the commands are then already freed.
 */

ngx_int_t
ngx_nexus_redis_send(ngx_nexus_redis_cmd_t **cmds, ngx_uint_t n)
{
    ngx_uint_t               i;
    ngx_nexus_redis_conn_t  *rc, *best, *down;

    best = NULL;
    down = NULL;

    for (i = 0; i < ngx_nexus_redis_nconns; i++) {
        rc = &ngx_nexus_redis_conns[i];

        if (rc->state == NGX_NEXUS_REDIS_DOWN) {
            down = rc;
            continue;
        }

        if (rc->state < NGX_NEXUS_REDIS_CONNECTING
            || rc->npending + n > NGX_NEXUS_REDIS_MAX_PENDING)
        {
            continue;
        }

        if (best == NULL
            || (rc->state == NGX_NEXUS_REDIS_READY
                && best->state != NGX_NEXUS_REDIS_READY)
            || (rc->state == best->state && rc->npending < best->npending))
        {
            best = rc;
        }
    }

    if (best == NULL && down) {
        ngx_nexus_redis_connect(down);
        if (down->state == NGX_NEXUS_REDIS_CONNECTING
            || down->state == NGX_NEXUS_REDIS_READY)
        {
            best = down;
        }
    }

    if (best == NULL) {
        for (i = 0; i < n; i++) {
            ngx_nexus_redis_free(cmds[i]);
        }
        return NGX_DECLINED;
    }

    for (i = 0; i < n; i++) {
        ngx_nexus_redis_enqueue(best, cmds[i], 0);
    }

    /*
     * written from a posted event: commands of all requests handled in
     * this event loop iteration go out together, and a handler is never
     * called from inside ngx_nexus_redis_send()
     */
    if (best->state == NGX_NEXUS_REDIS_READY) {
        ngx_post_event(best->peer.connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_nexus_redis_cancel(ngx_nexus_redis_cmd_t *cmd)
{
    cmd->handler = NULL;
    cmd->data = NULL;

    /* the command still guards its connection, but not the worker's exit */
    cmd->timer.cancelable = 1;
}


static void
ngx_nexus_redis_enqueue(ngx_nexus_redis_conn_t *rc,
    ngx_nexus_redis_cmd_t *cmd, ngx_uint_t head)
{
    cmd->conn = rc;
    cmd->sent = 0;

    if (head) {
        /* only before anything was written on a new connection */
        ngx_queue_insert_head(&rc->pending, &cmd->queue);
        rc->cursor = &cmd->queue;

    } else {
        ngx_queue_insert_tail(&rc->pending, &cmd->queue);
        if (rc->cursor == &rc->pending) {
            rc->cursor = &cmd->queue;
        }
    }

    rc->npending++;

    if (!cmd->timer.timer_set) {
        cmd->timer.handler = ngx_nexus_redis_cmd_timer;
        cmd->timer.data = cmd;
        cmd->timer.log = rc->log;
        cmd->timer.cancelable = (cmd->handler == NULL);
        ngx_add_timer(&cmd->timer, ngx_nexus_redis_cf->timeout);
    }
}


static void
ngx_nexus_redis_connect(ngx_nexus_redis_conn_t *rc)
{
    ngx_int_t          n;
    ngx_connection_t  *c;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        rc->state = NGX_NEXUS_REDIS_DOWN;
        return;
    }

    ngx_memzero(&rc->peer, sizeof(ngx_peer_connection_t));

    rc->peer.sockaddr = ngx_nexus_redis_cf->addr.sockaddr;
    rc->peer.socklen = ngx_nexus_redis_cf->addr.socklen;
    rc->peer.name = &ngx_nexus_redis_cf->name;
    rc->peer.get = ngx_event_get_peer;
    rc->peer.log = rc->log;
    rc->peer.log_error = NGX_ERROR_ERR;

    if (rc->reader) {
        redisReaderFree(rc->reader);
    }

    rc->reader = redisReaderCreate();
    if (rc->reader == NULL) {
        ngx_nexus_redis_fail(rc, "reader", 0);
        return;
    }

    n = ngx_event_connect_peer(&rc->peer);

    if (n == NGX_ERROR || n == NGX_BUSY || n == NGX_DECLINED) {
        ngx_nexus_redis_fail(rc, "connect", 0);
        return;
    }

    c = rc->peer.connection;
    c->data = rc;
    c->read->handler = ngx_nexus_redis_read_handler;
    c->write->handler = ngx_nexus_redis_write_handler;
    c->log = rc->log;
    c->read->log = rc->log;
    c->write->log = rc->log;

    rc->state = NGX_NEXUS_REDIS_CONNECTING;

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }
    ngx_add_timer(&rc->timer, ngx_nexus_redis_cf->connect_timeout);

    if (n == NGX_OK) {
        ngx_nexus_redis_connected(rc);
    }
}


static void
ngx_nexus_redis_connected(ngx_nexus_redis_conn_t *rc)
{
    u_char      db[NGX_INT_T_LEN];
    const char *argv[2];
    size_t      argvlen[2];

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    if (rc->backoff > NGX_NEXUS_REDIS_BACKOFF_MIN) {
        ngx_log_error(NGX_LOG_NOTICE, rc->log, 0,
                      "nexus redis connection to %V restored",
                      &ngx_nexus_redis_cf->name);
    }

    rc->backoff = NGX_NEXUS_REDIS_BACKOFF_MIN;
    rc->state = NGX_NEXUS_REDIS_READY;

    /* SELECT, then AUTH, are put in front of whatever queued meanwhile */

    if (ngx_nexus_redis_cf->db) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%ui", ngx_nexus_redis_cf->db) - db;

        if (ngx_nexus_redis_setup(rc, argv, argvlen) != NGX_OK) {
            return;
        }
    }

    if (ngx_nexus_redis_cf->password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (const char *) ngx_nexus_redis_cf->password.data;
        argvlen[1] = ngx_nexus_redis_cf->password.len;

        if (ngx_nexus_redis_setup(rc, argv, argvlen) != NGX_OK) {
            return;
        }
    }

    ngx_nexus_redis_write(rc);
}


/* a two-argument command of the connection's own, sent before any other */

static ngx_int_t
ngx_nexus_redis_setup(ngx_nexus_redis_conn_t *rc, const char **argv,
    size_t *argvlen)
{
    ngx_nexus_redis_cmd_t  *cmd;

    cmd = ngx_nexus_redis_command(2, argv, argvlen);
    if (cmd == NULL) {
        ngx_nexus_redis_fail(rc, argv[0], 0);
        return NGX_ERROR;
    }

    cmd->internal = 1;
    cmd->handler = ngx_nexus_redis_setup_handler;
    cmd->data = rc;
    ngx_nexus_redis_enqueue(rc, cmd, 1);
    cmd->timer.cancelable = 1;

    return NGX_OK;
}


static void
ngx_nexus_redis_setup_handler(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_nexus_redis_conn_t  *conn;

    conn = cmd->data;

    if (rc == NGX_OK && reply->type == REDIS_REPLY_ERROR) {
        /* the error text of a failed AUTH never contains the password */
        ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                      "nexus redis connection setup failed: %*s",
                      (size_t) reply->len, reply->str);
        ngx_nexus_redis_fail(conn, NULL, 0);
    }
}


static void
ngx_nexus_redis_fail(ngx_nexus_redis_conn_t *rc, const char *what,
    ngx_err_t err)
{
    ngx_uint_t              level;
    ngx_queue_t            *q;
    ngx_nexus_redis_cmd_t  *cmd;

    if (what) {
        /* only the first failure of a series is an error worth reading */
        level = (rc->backoff == NGX_NEXUS_REDIS_BACKOFF_MIN) ? NGX_LOG_ERR
                                                             : NGX_LOG_INFO;
        ngx_log_error(level, rc->log, err, "nexus redis %s %V failed", what,
                      &ngx_nexus_redis_cf->name);
    }

    if (rc->peer.connection) {
        ngx_close_connection(rc->peer.connection);
        rc->peer.connection = NULL;
    }

    if (rc->reader) {
        redisReaderFree(rc->reader);
        rc->reader = NULL;
    }

    if (rc->timer.timer_set) {
        ngx_del_timer(&rc->timer);
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        rc->state = NGX_NEXUS_REDIS_DOWN;

    } else {
        rc->state = NGX_NEXUS_REDIS_BACKOFF;
        ngx_add_timer(&rc->timer, rc->backoff);
        rc->backoff = ngx_min(rc->backoff * 2, NGX_NEXUS_REDIS_BACKOFF_MAX);
    }

    /* handlers may send again: the connection is already marked down */

    while (!ngx_queue_empty(&rc->pending)) {
        q = ngx_queue_head(&rc->pending);
        ngx_queue_remove(q);
        rc->npending--;

        cmd = ngx_queue_data(q, ngx_nexus_redis_cmd_t, queue);

        if (cmd->internal) {
            ngx_nexus_redis_free(cmd);
            continue;
        }

        ngx_nexus_redis_deliver(cmd, NULL, NGX_DECLINED);
    }

    rc->cursor = &rc->pending;
    rc->npending = 0;
}


static void
ngx_nexus_redis_conn_timer(ngx_event_t *ev)
{
    ngx_nexus_redis_conn_t  *rc;

    rc = ev->data;

    if (rc->state == NGX_NEXUS_REDIS_CONNECTING) {
        ngx_nexus_redis_fail(rc, "connect", NGX_ETIMEDOUT);
        return;
    }

    if (rc->state == NGX_NEXUS_REDIS_BACKOFF) {
        ngx_nexus_redis_connect(rc);
    }
}


static void
ngx_nexus_redis_cmd_timer(ngx_event_t *ev)
{
    ngx_nexus_redis_cmd_t  *cmd;

    cmd = ev->data;

    ngx_nexus_redis_fail(cmd->conn, "command", NGX_ETIMEDOUT);
}


static void
ngx_nexus_redis_write_handler(ngx_event_t *ev)
{
    int                      err;
    socklen_t                len;
    ngx_connection_t        *c;
    ngx_nexus_redis_conn_t  *rc;

    c = ev->data;
    rc = c->data;

    if (rc->state == NGX_NEXUS_REDIS_CONNECTING) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_nexus_redis_fail(rc, "connect", err);
            return;
        }

        ngx_nexus_redis_connected(rc);
        return;
    }

    ngx_nexus_redis_write(rc);
}


static void
ngx_nexus_redis_write(ngx_nexus_redis_conn_t *rc)
{
    ssize_t                 n;
    ngx_connection_t       *c;
    ngx_nexus_redis_cmd_t  *cmd;

    c = rc->peer.connection;

    while (rc->cursor != &rc->pending) {
        cmd = ngx_queue_data(rc->cursor, ngx_nexus_redis_cmd_t, queue);

        n = c->send(c, (u_char *) cmd->buf + cmd->sent,
                    cmd->len - cmd->sent);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_nexus_redis_fail(rc, "send", 0);
            return;
        }

        cmd->sent += n;

        if (cmd->sent == cmd->len) {
            rc->cursor = ngx_queue_next(rc->cursor);
        }
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_nexus_redis_fail(rc, "send", 0);
    }
}


static void
ngx_nexus_redis_read_handler(ngx_event_t *ev)
{
    ssize_t                  n;
    redisReply              *reply;
    ngx_connection_t        *c;
    ngx_nexus_redis_conn_t  *rc;
    u_char                   buf[16384];

    c = ev->data;
    rc = c->data;

    if (rc->state == NGX_NEXUS_REDIS_CONNECTING) {
        /* the peer spoke first or refused: let the write side decide */
        ngx_nexus_redis_write_handler(c->write);
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_nexus_redis_fail(rc, "connection closed by", 0);
            return;
        }

        if (n == NGX_ERROR) {
            ngx_nexus_redis_fail(rc, "recv from", 0);
            return;
        }

        if (redisReaderFeed(rc->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_nexus_redis_fail(rc, "reply parse from", 0);
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(rc->reader, (void **) &reply)
                != REDIS_OK)
            {
                ngx_nexus_redis_fail(rc, "reply parse from", 0);
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_nexus_redis_reply(rc, reply);

            if (rc->state != NGX_NEXUS_REDIS_READY) {
                /* a handler or the reply itself took the connection down */
                return;
            }
        }

        if (!c->read->ready) {
            break;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_nexus_redis_fail(rc, "recv from", 0);
    }
}


static void
ngx_nexus_redis_reply(ngx_nexus_redis_conn_t *rc, redisReply *reply)
{
    int                     len;
    ngx_queue_t            *q;
    ngx_nexus_redis_cmd_t  *cmd;

    if (ngx_queue_empty(&rc->pending) || rc->cursor == ngx_queue_head(
                                                           &rc->pending))
    {
        freeReplyObject(reply);
        ngx_nexus_redis_fail(rc, "unexpected reply from", 0);
        return;
    }

    q = ngx_queue_head(&rc->pending);
    ngx_queue_remove(q);
    rc->npending--;

    cmd = ngx_queue_data(q, ngx_nexus_redis_cmd_t, queue);

    if (cmd->script && reply->type == REDIS_REPLY_ERROR
        && reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /* the script cache was flushed or this is a new server: EVAL */

        freeReplyObject(reply);
        redisFreeCommand(cmd->buf);
        cmd->buf = NULL;

        cmd->argv[0] = "EVAL";
        cmd->argvlen[0] = 4;
        cmd->argv[1] = (char *) cmd->script->body.data;
        cmd->argvlen[1] = cmd->script->body.len;
        cmd->script = NULL;

        len = redisFormatCommandArgv(&cmd->buf, cmd->argc,
                                     (const char **) cmd->argv,
                                     cmd->argvlen);
        if (len <= 0) {
            cmd->buf = NULL;
            ngx_nexus_redis_deliver(cmd, NULL, NGX_DECLINED);
            return;
        }

        cmd->len = len;

        ngx_nexus_redis_enqueue(rc, cmd, 0);
        ngx_nexus_redis_write(rc);
        return;
    }

    ngx_nexus_redis_deliver(cmd, reply, NGX_OK);
    freeReplyObject(reply);
}


static void
ngx_nexus_redis_deliver(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    cmd->conn = NULL;

    if (cmd->handler) {
        cmd->handler(cmd, reply, rc);
    }

    ngx_nexus_redis_free(cmd);
}


static void
ngx_nexus_redis_asked(ngx_nexus_redis_cmd_t *cmd, redisReply *reply,
    ngx_int_t rc)
{
    ngx_nexus_ctx_t     *ctx;
    ngx_http_request_t  *r;

    r = cmd->data;
    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);
    ctx->rcmd[0] = NULL;

    ctx->redis_reply(r, reply, rc);
}


void
ngx_nexus_redis_ask(ngx_http_request_t *r, ngx_nexus_redis_cmd_t *cmd,
    ngx_nexus_redis_reply_pt reply)
{
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_nexus_module);

    if (cmd != NULL) {
        cmd->handler = ngx_nexus_redis_asked;
        cmd->data = r;
        ctx->redis_reply = reply;

        if (ngx_nexus_redis_send(&cmd, 1) == NGX_OK) {
            ctx->rcmd[0] = cmd;
            ngx_nexus_wait(r);
            return;
        }
    }

    reply(r, NULL, NGX_DECLINED);
}
