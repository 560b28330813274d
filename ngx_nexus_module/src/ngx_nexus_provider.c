/*
 * Copyright (C) Nexus authors
 *
 * nexus_provider, nexus_model and nexus_max_attempts: the LLM providers
 * of the gateway, over nginx upstream blocks, and which providers serve
 * which model names.  Everything is checked when nginx reads its
 * configuration: unknown providers, duplicate names, and fallback chains
 * that loop back on themselves.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_nexus_module.h"
#include "ngx_nexus_provider.h"
#include "ngx_nexus_proxy.h"


#define NGX_NEXUS_PROVIDER_KEY_MAX  4096


static ngx_int_t ngx_nexus_provider_key_file(ngx_conf_t *cf,
    ngx_nexus_provider_t *p, ngx_str_t *path);
static ngx_int_t ngx_nexus_provider_tls(ngx_conf_t *cf,
    ngx_nexus_provider_t *p, ngx_uint_t verify);
static ngx_nexus_provider_t *ngx_nexus_provider_find(
    ngx_nexus_main_conf_t *nmcf, ngx_str_t *name);


static ngx_conf_enum_t  ngx_nexus_provider_types[] = {
    { ngx_string("openai"), NX_LLM_OPENAI },
    { ngx_string("ollama"), NX_LLM_OLLAMA },
    { ngx_string("anthropic"), NX_LLM_ANTHROPIC },
    { ngx_null_string, 0 }
};


char *
ngx_nexus_provider_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_int_t                  n, rc;
    ngx_url_t                  u;
    ngx_str_t                 *value, s, key_file;
    ngx_uint_t                 i, tls, verify;
    ngx_conf_enum_t           *e;
    ngx_nexus_provider_t      *p, **pp;
    ngx_http_upstream_conf_t  *uc;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid provider name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '_'
              || value[1].data[i] == '-' || value[1].data[i] == '.'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid provider name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_nexus_provider_find(nmcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate provider \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    pp = ngx_array_push(&nmcf->providers);
    if (pp == NULL) {
        return NGX_CONF_ERROR;
    }

    /* each on its own: models and fallbacks point at providers */
    p = ngx_pcalloc(cf->pool, sizeof(ngx_nexus_provider_t));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *pp = p;

    p->name = value[1];
    p->index = nmcf->providers.nelts - 1;
    p->type = NGX_CONF_UNSET_UINT;
    p->weight = 1;

    uc = &p->conf;

    /* what the gateway needs of nginx's upstream machinery */
    uc->connect_timeout = 5000;
    uc->send_timeout = 60000;
    uc->read_timeout = 300000;      /* a model may think for minutes */
    uc->next_upstream_timeout = 0;
    uc->buffer_size = 16384;
    uc->limit_rate = 0;
    uc->buffering = 0;
    uc->request_buffering = 1;
    uc->ignore_client_abort = 0;
    uc->intercept_errors = 0;
    uc->local = NULL;
    uc->socket_keepalive = 0;
    uc->next_upstream_tries = 0;
    uc->next_upstream = NGX_HTTP_UPSTREAM_FT_ERROR
                        |NGX_HTTP_UPSTREAM_FT_TIMEOUT
                        |NGX_HTTP_UPSTREAM_FT_INVALID_HEADER
                        |NGX_HTTP_UPSTREAM_FT_HTTP_500
                        |NGX_HTTP_UPSTREAM_FT_HTTP_502
                        |NGX_HTTP_UPSTREAM_FT_HTTP_503
                        |NGX_HTTP_UPSTREAM_FT_HTTP_504
                        |NGX_HTTP_UPSTREAM_FT_HTTP_429
                        |NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;
    uc->module.data = (u_char *) "nexus";
    uc->module.len = sizeof("nexus") - 1;

    ngx_str_null(&key_file);
    tls = 0;
    verify = 1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "type=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            for (e = ngx_nexus_provider_types; e->name.len; e++) {
                if (e->name.len == s.len
                    && ngx_strncmp(e->name.data, s.data, s.len) == 0)
                {
                    p->type = e->value;
                    break;
                }
            }

            if (e->name.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "upstream=", 9) == 0) {
            ngx_memzero(&u, sizeof(ngx_url_t));

            u.url.data = value[i].data + 9;
            u.url.len = value[i].len - 9;
            u.no_resolve = 1;

            p->upstream = ngx_http_upstream_add(cf, &u, 0);
            if (p->upstream == NULL) {
                return NGX_CONF_ERROR;
            }

            if (p->host.len == 0) {
                p->host = u.url;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "host=", 5) == 0) {
            p->host.data = value[i].data + 5;
            p->host.len = value[i].len - 5;

            if (p->host.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key_file=", 9) == 0) {
            key_file.data = value[i].data + 9;
            key_file.len = value[i].len - 9;

            if (key_file.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "weight=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n < 1 || n > 1000) {
                goto invalid;
            }

            p->weight = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "fallback=", 9) == 0) {
            p->fallback_name.data = value[i].data + 9;
            p->fallback_name.len = value[i].len - 9;

            if (p->fallback_name.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "tls=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (s.len == 2 && ngx_strncmp(s.data, "on", 2) == 0) {
                tls = 1;

            } else if (s.len == 3 && ngx_strncmp(s.data, "off", 3) == 0) {
                tls = 0;

            } else {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "azure_api_version=", 18) == 0) {
            p->azure_version.data = value[i].data + 18;
            p->azure_version.len = value[i].len - 18;

            for (n = 0; n < (ngx_int_t) p->azure_version.len; n++) {
                if (!isalnum(p->azure_version.data[n])
                    && p->azure_version.data[n] != '-')
                {
                    goto invalid;
                }
            }

            if (p->azure_version.len == 0) {
                goto invalid;
            }

            /* a deployment's models are the nexus_model names */
            p->no_discovery = 1;
            continue;
        }

        if (value[i].len == 13
            && ngx_strncmp(value[i].data, "discovery=off", 13) == 0)
        {
            p->no_discovery = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_verify=off", 14) == 0
            && value[i].len == 14)
        {
            verify = 0;
            continue;
        }

        rc = ngx_nexus_param_time(&value[i], "connect_timeout=", 1,
                                  &uc->connect_timeout);
        if (rc == NGX_DECLINED) {
            rc = ngx_nexus_param_time(&value[i], "send_timeout=", 1,
                                      &uc->send_timeout);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_nexus_param_time(&value[i], "read_timeout=", 1,
                                      &uc->read_timeout);
        }

        if (rc == NGX_OK) {
            continue;
        }

        goto invalid;
    }

    if (p->type == NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "provider \"%V\" has no \"type=\"", &p->name);
        return NGX_CONF_ERROR;
    }

    if (p->upstream == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "provider \"%V\" has no \"upstream=\"", &p->name);
        return NGX_CONF_ERROR;
    }

    /* nginx asks the gateway's balancer, which asks p->upstream's */
    uc->upstream = ngx_nexus_proxy_upstream();

    if (key_file.len
        && ngx_nexus_provider_key_file(cf, p, &key_file) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    p->tls = tls;

    if (p->azure_version.len && p->type != NX_LLM_OPENAI) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"azure_api_version=\" needs \"type=openai\"");
        return NGX_CONF_ERROR;
    }

    if (tls && ngx_nexus_provider_tls(cf, p, verify) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    nmcf->zone_needed = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/* the provider's credential: the first line of a file, never logged */

static ngx_int_t
ngx_nexus_provider_key_file(ngx_conf_t *cf, ngx_nexus_provider_t *p,
    ngx_str_t *path)
{
    u_char           *buf, *last;
    ssize_t           n;
    ngx_str_t         name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    name = *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_NEXUS_PROVIDER_KEY_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "provider key file \"%V\" is not a small "
                           "regular file", &name);
        goto failed;
    }

    buf = ngx_pnalloc(cf->pool, NGX_NEXUS_PROVIDER_KEY_MAX + 1);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, buf, NGX_NEXUS_PROVIDER_KEY_MAX, 0);
    if (n == NGX_ERROR) {
        goto failed;
    }

    last = buf;
    while (last < buf + n && *last != '\n' && *last != '\r') {
        if (*last < 0x21 || *last > 0x7e) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "provider key file \"%V\" holds "
                               "characters a header cannot carry", &name);
            goto failed;
        }

        last++;
    }

    if (last == buf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "provider key file \"%V\" is empty", &name);
        goto failed;
    }

    p->key.data = buf;
    p->key.len = last - buf;

    ngx_close_file(file.fd);

    return NGX_OK;

failed:

    ngx_close_file(file.fd);

    return NGX_ERROR;
}


static ngx_int_t
ngx_nexus_provider_tls(ngx_conf_t *cf, ngx_nexus_provider_t *p,
    ngx_uint_t verify)
{
#if (NGX_HTTP_SSL)

    ngx_str_t                  cafile;
    ngx_pool_cleanup_t        *cln;
    ngx_http_complex_value_t  *cv;

    p->conf.ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (p->conf.ssl == NULL) {
        return NGX_ERROR;
    }

    p->conf.ssl->log = cf->log;

    if (ngx_ssl_create(p->conf.ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(p->conf.ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = p->conf.ssl;

    p->conf.ssl_session_reuse = 1;
    p->conf.ssl_server_name = 1;
    p->conf.ssl_verify = verify;

    cv = ngx_pcalloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (cv == NULL) {
        return NGX_ERROR;
    }

    cv->value = p->host;
    p->conf.ssl_name = cv;

    if (verify) {
        ngx_str_set(&cafile, "/etc/ssl/certs/ca-certificates.crt");

        if (ngx_ssl_trusted_certificate(cf, p->conf.ssl, &cafile, 4)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"tls=on\" needs nginx built with SSL");
    return NGX_ERROR;

#endif
}


/* nexus_model NAME PROVIDER [model=SERVED] [weight=N] */

char *
ngx_nexus_model_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_nexus_main_conf_t *nmcf = conf;

    ngx_int_t              n;
    ngx_str_t             *value;
    ngx_uint_t             i;
    ngx_nexus_model_t     *m, *ms;
    ngx_nexus_provider_t  *p;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NX_LLM_MODEL_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid model name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    p = ngx_nexus_provider_find(nmcf, &value[2]);
    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown provider \"%V\" (declare it with "
                           "\"nexus_provider\" first)", &value[2]);
        return NGX_CONF_ERROR;
    }

    ms = nmcf->models.elts;
    for (i = 0; i < nmcf->models.nelts; i++) {
        if (ms[i].provider == p
            && ms[i].name.len == value[1].len
            && ngx_strncmp(ms[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "model \"%V\" is already served by "
                               "provider \"%V\"", &value[1], &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    m = ngx_array_push(&nmcf->models);
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    m->name = value[1];
    m->served = value[1];
    m->provider = p;
    m->weight = p->weight;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "model=", 6) == 0) {
            m->served.data = value[i].data + 6;
            m->served.len = value[i].len - 6;

            if (m->served.len == 0 || m->served.len > NX_LLM_MODEL_MAX) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "weight=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n < 1 || n > 1000) {
                goto invalid;
            }

            m->weight = n;
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


/*
 * After the whole configuration is read: fallbacks resolve to providers,
 * and no chain of fallbacks comes back to where it started (a provider
 * named as its own fallback included).
 */

ngx_int_t
ngx_nexus_providers_init(ngx_conf_t *cf)
{
    ngx_uint_t              i, n;
    ngx_nexus_provider_t  **p, *q;
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_conf_get_module_main_conf(cf, ngx_nexus_module);

    p = nmcf->providers.elts;

    for (i = 0; i < nmcf->providers.nelts; i++) {
        if (p[i]->fallback_name.len == 0) {
            continue;
        }

        p[i]->fallback = ngx_nexus_provider_find(nmcf,
                                                 &p[i]->fallback_name);

        if (p[i]->fallback == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "provider \"%V\" falls back to unknown "
                               "provider \"%V\"",
                               &p[i]->name, &p[i]->fallback_name);
            return NGX_ERROR;
        }
    }

    for (i = 0; i < nmcf->providers.nelts; i++) {
        n = 0;

        for (q = p[i]->fallback; q; q = q->fallback) {
            if (q == p[i] || ++n > nmcf->providers.nelts) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "the fallbacks of provider \"%V\" "
                                   "form a cycle", &p[i]->name);
                return NGX_ERROR;
            }
        }
    }

    if (nmcf->max_attempts == 0 || nmcf->max_attempts > 10) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nexus_max_attempts\" must be from 1 to 10");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A "name=time" parameter: NGX_DECLINED when value is not this one,
 * NGX_ERROR when its time is invalid or under min ms, else NGX_OK.
 */

ngx_int_t
ngx_nexus_param_time(ngx_str_t *value, const char *name, ngx_msec_t min,
    ngx_msec_t *out)
{
    size_t      len;
    ngx_str_t   s;
    ngx_msec_t  ms;

    len = ngx_strlen(name);

    if (value->len < len || ngx_strncmp(value->data, name, len) != 0) {
        return NGX_DECLINED;
    }

    s.data = value->data + len;
    s.len = value->len - len;

    ms = ngx_parse_time(&s, 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms < min) {
        return NGX_ERROR;
    }

    *out = ms;

    return NGX_OK;
}


ngx_nexus_provider_t *
ngx_nexus_provider_by_name(ngx_str_t *name)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_nexus_module);
    if (nmcf == NULL) {
        return NULL;
    }

    return ngx_nexus_provider_find(nmcf, name);
}


static ngx_nexus_provider_t *
ngx_nexus_provider_find(ngx_nexus_main_conf_t *nmcf, ngx_str_t *name)
{
    ngx_uint_t              i;
    ngx_nexus_provider_t  **p;

    p = nmcf->providers.elts;

    for (i = 0; i < nmcf->providers.nelts; i++) {
        if (p[i]->name.len == name->len
            && ngx_strncmp(p[i]->name.data, name->data, name->len) == 0)
        {
            return p[i];
        }
    }

    return NULL;
}
