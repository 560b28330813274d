/*
 * Copyright (C) Nexus authors
 *
 * Worker configuration: one table of typed keys (after Redis's config.c).
 * Each key has a default, may be set in the config file ("key value" or
 * "key = value", "#" comments, also after a value, double quotes for
 * values with spaces or "#") and
 * in the environment as NEXUS_<KEY> (which wins over the file), and says
 * whether SIGHUP may change it.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nxw.h"


#define NXW_CONF_LINE_MAX  4096


static int nxw_config_defaults(const nxw_option_t *const *tables, void *conf,
    char *err, size_t errlen);
static int nxw_config_file(const nxw_option_t *const *tables, void *conf,
    const char *file, char *err, size_t errlen);
static int nxw_config_env(const nxw_option_t *const *tables, void *conf,
    char *err, size_t errlen);
static const nxw_option_t *nxw_config_find(const nxw_option_t *const *tables,
    const char *name);
static int nxw_config_set(const nxw_option_t *o, void *conf,
    const char *value, char *err, size_t errlen);
static int nxw_config_same(const nxw_option_t *o, const void *a,
    const void *b);
static void nxw_config_swap(const nxw_option_t *o, void *a, void *b);


#define nxw_conf_field(conf, o, type)                                        \
    ((type *) ((char *) (conf) + (o)->offset))


const nxw_option_t  nxw_runtime_options[] = {

    { "database_url", NXW_OPT_STR, NULL, NXW_OPT_URL,
      offsetof(nxw_conf_t, database_url), 0, 0 },

    { "redis_url", NXW_OPT_STR, "redis://127.0.0.1:6379", NXW_OPT_URL,
      offsetof(nxw_conf_t, redis_url), 0, 0 },

    { "consumer", NXW_OPT_STR, NULL, 0,
      offsetof(nxw_conf_t, consumer), 0, 0 },

    { "log_level", NXW_OPT_STR, "info", NXW_OPT_RELOAD,
      offsetof(nxw_conf_t, log_level), 0, 0 },

    { "heartbeat_interval", NXW_OPT_MSEC, "5s", NXW_OPT_RELOAD,
      offsetof(nxw_conf_t, heartbeat_interval), 100, 3600000 },

    { "heartbeat_ttl", NXW_OPT_MSEC, "60s", NXW_OPT_RELOAD,
      offsetof(nxw_conf_t, heartbeat_ttl), 1000, 86400000 },

    { "shutdown_timeout", NXW_OPT_MSEC, "10s", NXW_OPT_RELOAD,
      offsetof(nxw_conf_t, shutdown_timeout), 0, 3600000 },

    { "visibility_timeout", NXW_OPT_MSEC, "60s", NXW_OPT_RELOAD,
      offsetof(nxw_conf_t, visibility_timeout), 500, 86400000 },

    { "block", NXW_OPT_MSEC, "1s", NXW_OPT_RELOAD,
      offsetof(nxw_conf_t, block), 10, 60000 },

    { "queue_max_attempts", NXW_OPT_INT, "5", NXW_OPT_RELOAD,
      offsetof(nxw_conf_t, queue_max_attempts), 1, 1000 },

    { NULL, 0, NULL, 0, 0, 0, 0 }
};


int
nxw_config_load(const nxw_option_t *const *tables, void *conf,
    const char *file, char *err, size_t errlen)
{
    char         host[128], name[200];
    nxw_conf_t  *base;

    if (nxw_config_defaults(tables, conf, err, errlen) != 0) {
        return -1;
    }

    if (file != NULL
        && nxw_config_file(tables, conf, file, err, errlen) != 0)
    {
        return -1;
    }

    if (nxw_config_env(tables, conf, err, errlen) != 0) {
        return -1;
    }

    /* the runtime's keys come first in every daemon's struct */
    base = conf;

    if (nxw_log_level(base->log_level) < 0) {
        (void) snprintf(err, errlen, "\"log_level\" must be error, warn, "
                        "info or debug");
        return -1;
    }

    if (base->consumer == NULL || base->consumer[0] == '\0') {
        if (gethostname(host, sizeof(host)) != 0) {
            strcpy(host, "localhost");
        }

        host[sizeof(host) - 1] = '\0';
        (void) snprintf(name, sizeof(name), "%s-%s", host,
                        base->role ? base->role : "worker");

        free(base->consumer);
        base->consumer = strdup(name);

        if (base->consumer == NULL) {
            (void) snprintf(err, errlen, "out of memory");
            return -1;
        }
    }

    return 0;
}


int
nxw_config_reload(const nxw_option_t *const *tables, void *conf, size_t size)
{
    int                  rc;
    char                 err[512];
    void                *fresh;
    nxw_log_t           *l;
    const nxw_conf_t    *base;
    const nxw_option_t  *o;
    const nxw_option_t  *const *t;

    base = conf;

    fresh = calloc(1, size);
    if (fresh == NULL) {
        nxw_log_msg(NXW_LOG_ERROR, "reload failed", "out of memory");
        return -1;
    }

    /* the fields that do not come from the tables */
    ((nxw_conf_t *) fresh)->role = base->role;
    ((nxw_conf_t *) fresh)->file = base->file;

    if (nxw_config_load(tables, fresh, base->file, err, sizeof(err)) != 0) {
        nxw_log_msg(NXW_LOG_ERROR, "reload failed, configuration kept", err);
        nxw_config_free(tables, fresh);
        free(fresh);
        return -1;
    }

    rc = 0;

    for (t = tables; *t != NULL; t++) {
        for (o = *t; o->name != NULL; o++) {
            if (nxw_config_same(o, conf, fresh)) {
                continue;
            }

            if (!(o->flags & NXW_OPT_RELOAD)) {
                l = nxw_log(NXW_LOG_WARN, "this key cannot change without "
                            "a restart; it keeps its value");
                nxw_log_str(l, "key", o->name);
                nxw_log_end(l);
                continue;
            }

            nxw_config_swap(o, conf, fresh);

            l = nxw_log(NXW_LOG_INFO, "reloaded");
            nxw_log_str(l, "key", o->name);
            nxw_log_end(l);
        }
    }

    nxw_config_free(tables, fresh);
    free(fresh);

    return rc;
}


void
nxw_config_free(const nxw_option_t *const *tables, void *conf)
{
    char               **s;
    const nxw_option_t  *o;
    const nxw_option_t  *const *t;

    for (t = tables; *t != NULL; t++) {
        for (o = *t; o->name != NULL; o++) {
            if (o->type == NXW_OPT_STR) {
                s = nxw_conf_field(conf, o, char *);
                free(*s);
                *s = NULL;
            }
        }
    }
}


void
nxw_config_log(const nxw_option_t *const *tables, const void *conf)
{
    char                 buf[1024], num[32];
    const char          *v;
    nxw_log_t           *l;
    const nxw_option_t  *o;
    const nxw_option_t  *const *t;

    l = nxw_log(NXW_LOG_INFO, "configuration");

    for (t = tables; *t != NULL; t++) {
        for (o = *t; o->name != NULL; o++) {
            switch (o->type) {

            case NXW_OPT_STR:
                v = *nxw_conf_field(conf, o, char *const);

                if (v == NULL) {
                    v = "";

                } else if ((o->flags & NXW_OPT_SECRET) && v[0] != '\0') {
                    v = "(set)";

                } else if (o->flags & NXW_OPT_URL) {
                    v = nxw_redact_url(v, buf, sizeof(buf));
                }

                nxw_log_str(l, o->name, v);
                break;

            case NXW_OPT_BOOL:
                nxw_log_str(l, o->name,
                            *nxw_conf_field(conf, o, const int64_t)
                            ? "on" : "off");
                break;

            case NXW_OPT_MSEC:
                (void) snprintf(num, sizeof(num), "%lldms",
                               (long long) *nxw_conf_field(conf, o,
                                                           const int64_t));
                nxw_log_str(l, o->name, num);
                break;

            default:
                nxw_log_int(l, o->name,
                            *nxw_conf_field(conf, o, const int64_t));
                break;
            }
        }
    }

    nxw_log_end(l);
}


int
nxw_parse_msec(const char *s, int64_t *out)
{
    char     *end;
    int64_t   unit;
    long long v;

    if (s == NULL || !isdigit((unsigned char) s[0])) {
        return -1;
    }

    errno = 0;
    v = strtoll(s, &end, 10);

    if (errno != 0 || v < 0 || v > 1000000000000LL) {
        return -1;
    }

    if (strcmp(end, "") == 0 || strcmp(end, "ms") == 0) {
        unit = 1;

    } else if (strcmp(end, "s") == 0) {
        unit = 1000;

    } else if (strcmp(end, "m") == 0) {
        unit = 60000;

    } else if (strcmp(end, "h") == 0) {
        unit = 3600000;

    } else if (strcmp(end, "d") == 0) {
        unit = 86400000;

    } else {
        return -1;
    }

    *out = (int64_t) v * unit;

    return 0;
}


const char *
nxw_redact_url(const char *url, char *buf, size_t size)
{
    size_t       n;
    const char  *scheme, *at, *colon, *slash;

    (void) snprintf(buf, size, "%s", url);

    scheme = strstr(url, "://");
    if (scheme == NULL) {
        /* key=value conninfo: mask password=... */
        at = strstr(url, "password=");
        if (at != NULL) {
            n = at - url + 9;
            if (n < size) {
                (void) snprintf(buf + n, size - n, "***");
            }
        }
        return buf;
    }

    scheme += 3;
    slash = strchr(scheme, '/');
    at = strchr(scheme, '@');

    if (at == NULL || (slash != NULL && at > slash)) {
        return buf;
    }

    colon = memchr(scheme, ':', at - scheme);
    if (colon == NULL) {
        return buf;
    }

    n = colon + 1 - url;

    if (n < size) {
        (void) snprintf(buf + n, size - n, "***%s", at);
    }

    return buf;
}


static int
nxw_config_defaults(const nxw_option_t *const *tables, void *conf, char *err,
    size_t errlen)
{
    const nxw_option_t  *o;
    const nxw_option_t  *const *t;

    for (t = tables; *t != NULL; t++) {
        for (o = *t; o->name != NULL; o++) {
            if (o->def != NULL
                && nxw_config_set(o, conf, o->def, err, errlen) != 0)
            {
                return -1;
            }
        }
    }

    return 0;
}


static int
nxw_config_file(const nxw_option_t *const *tables, void *conf,
    const char *file, char *err, size_t errlen)
{
    int                  lineno;
    char                 line[NXW_CONF_LINE_MAX], *p, *key, *value, *end;
    FILE                *f;
    const nxw_option_t  *o;

    f = fopen(file, "re");
    if (f == NULL) {
        (void) snprintf(err, errlen, "cannot open \"%s\": %s", file,
                        strerror(errno));
        return -1;
    }

    lineno = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;

        if (strchr(line, '\n') == NULL && !feof(f)) {
            (void) snprintf(err, errlen, "%s:%d: line too long", file,
                            lineno);
            goto failed;
        }

        p = line;
        while (isspace((unsigned char) *p)) {
            p++;
        }

        if (*p == '\0' || *p == '#') {
            continue;
        }

        key = p;
        while (*p && !isspace((unsigned char) *p) && *p != '=') {
            p++;
        }

        end = p;

        while (isspace((unsigned char) *p) || *p == '=') {
            p++;
        }

        *end = '\0';
        value = p;

        /* a "#" after white space starts a comment, outside quotes */
        if (*value != '"') {
            for (end = value; *end; end++) {
                if (*end == '#' && end > value
                    && (end[-1] == ' ' || end[-1] == '\t'))
                {
                    *end = '\0';
                    break;
                }
            }
        }

        /* the value ends at the line's end, less trailing white space */
        end = value + strlen(value);
        while (end > value && isspace((unsigned char) end[-1])) {
            end--;
        }
        *end = '\0';

        if (end - value >= 2 && value[0] == '"' && end[-1] == '"') {
            value++;
            end[-1] = '\0';
        }

        o = nxw_config_find(tables, key);
        if (o == NULL) {
            (void) snprintf(err, errlen, "%s:%d: unknown key \"%.64s\"", file,
                            lineno, key);
            goto failed;
        }

        if (nxw_config_set(o, conf, value, err, errlen) != 0) {
            /* err names the key; say where */
            char  msg[512];

            (void) snprintf(msg, sizeof(msg), "%s:%d: %s", file, lineno, err);
            (void) snprintf(err, errlen, "%s", msg);
            goto failed;
        }
    }

    (void) fclose(f);

    return 0;

failed:

    (void) fclose(f);

    return -1;
}


static int
nxw_config_env(const nxw_option_t *const *tables, void *conf, char *err,
    size_t errlen)
{
    char                 name[96];
    size_t               i;
    const char          *v;
    const nxw_option_t  *o;
    const nxw_option_t  *const *t;

    for (t = tables; *t != NULL; t++) {
        for (o = *t; o->name != NULL; o++) {
            (void) snprintf(name, sizeof(name), "NEXUS_%s", o->name);

            for (i = 6; name[i]; i++) {
                name[i] = (char) toupper((unsigned char) name[i]);
            }

            v = getenv(name);
            if (v == NULL) {
                continue;
            }

            if (nxw_config_set(o, conf, v, err, errlen) != 0) {
                char  msg[512];

                (void) snprintf(msg, sizeof(msg), "%s: %s", name, err);
                (void) snprintf(err, errlen, "%s", msg);
                return -1;
            }
        }
    }

    return 0;
}


static const nxw_option_t *
nxw_config_find(const nxw_option_t *const *tables, const char *name)
{
    const nxw_option_t  *o;
    const nxw_option_t  *const *t;

    for (t = tables; *t != NULL; t++) {
        for (o = *t; o->name != NULL; o++) {
            if (strcmp(o->name, name) == 0) {
                return o;
            }
        }
    }

    return NULL;
}


static int
nxw_config_set(const nxw_option_t *o, void *conf, const char *value,
    char *err, size_t errlen)
{
    char       *end, **s, *copy;
    int64_t     v;
    long long   n;

    switch (o->type) {

    case NXW_OPT_STR:
        copy = strdup(value);
        if (copy == NULL) {
            (void) snprintf(err, errlen, "out of memory");
            return -1;
        }

        s = nxw_conf_field(conf, o, char *);
        free(*s);
        *s = copy;
        return 0;

    case NXW_OPT_BOOL:
        if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0
            || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
        {
            v = 1;

        } else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0
                   || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
        {
            v = 0;

        } else {
            (void) snprintf(err, errlen, "\"%s\" must be on or off",
                            o->name);
            return -1;
        }

        break;

    case NXW_OPT_MSEC:
        if (nxw_parse_msec(value, &v) != 0) {
            (void) snprintf(err, errlen, "\"%s\" must be a duration such as "
                            "500ms, 15s, 2m or 1h", o->name);
            return -1;
        }

        break;

    default:
        errno = 0;
        n = strtoll(value, &end, 10);

        if (errno != 0 || end == value || *end != '\0') {
            (void) snprintf(err, errlen, "\"%s\" must be an integer",
                            o->name);
            return -1;
        }

        v = n;
        break;
    }

    if ((o->min != 0 || o->max != 0) && (v < o->min || v > o->max)) {
        if (o->type == NXW_OPT_MSEC) {
            (void) snprintf(err, errlen, "\"%s\" must be %lldms to %lldms",
                            o->name, (long long) o->min,
                            (long long) o->max);
        } else {
            (void) snprintf(err, errlen, "\"%s\" must be %lld to %lld",
                            o->name, (long long) o->min,
                            (long long) o->max);
        }
        return -1;
    }

    *nxw_conf_field(conf, o, int64_t) = v;

    return 0;
}


static int
nxw_config_same(const nxw_option_t *o, const void *a, const void *b)
{
    const char  *x, *y;

    if (o->type == NXW_OPT_STR) {
        x = *nxw_conf_field(a, o, char *const);
        y = *nxw_conf_field(b, o, char *const);

        if (x == NULL || y == NULL) {
            return x == y;
        }

        return strcmp(x, y) == 0;
    }

    return *nxw_conf_field(a, o, const int64_t)
           == *nxw_conf_field(b, o, const int64_t);
}


static void
nxw_config_swap(const nxw_option_t *o, void *a, void *b)
{
    char     *s;
    int64_t   v;

    if (o->type == NXW_OPT_STR) {
        s = *nxw_conf_field(a, o, char *);
        *nxw_conf_field(a, o, char *) = *nxw_conf_field(b, o, char *);
        *nxw_conf_field(b, o, char *) = s;
        return;
    }

    v = *nxw_conf_field(a, o, int64_t);
    *nxw_conf_field(a, o, int64_t) = *nxw_conf_field(b, o, int64_t);
    *nxw_conf_field(b, o, int64_t) = v;
}
