
/*
 * Copyright (C) Nexus authors
 *
 * Request ids.  A sane incoming X-Request-Id is kept, anything else is
 * replaced by a new id; either way the id is cached in the request's
 * variables (which, unlike module contexts, survive internal redirects)
 * and sent back on every response by the header filter below.
 */


#include "ngx_nexus_module.h"

#include <nx_reqid.h>


static ngx_int_t ngx_nexus_request_id_header_filter(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static ngx_str_t  ngx_nexus_request_id_name = ngx_string("nexus_request_id");


ngx_int_t
ngx_nexus_request_id_init(ngx_conf_t *cf)
{
    ngx_nexus_main_conf_t  *nmcf;

    nmcf = ngx_http_conf_get_module_main_conf(cf, ngx_nexus_module);

    nmcf->request_id_index = ngx_http_get_variable_index(cf,
                                                 &ngx_nexus_request_id_name);
    if (nmcf->request_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_nexus_request_id_header_filter;

    return NGX_OK;
}


/* the get handler of $nexus_request_id */

ngx_int_t
ngx_nexus_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char            *p;
    uint32_t           rnd[3];
    ngx_uint_t         i;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-Request-Id") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Request-Id",
                               sizeof("X-Request-Id") - 1) == 0
            && nx_reqid_valid((char *) h[i].value.data, h[i].value.len))
        {
            v->data = h[i].value.data;
            v->len = h[i].value.len;
            goto done;
        }
    }

    p = ngx_pnalloc(r->pool, NX_REQID_GEN_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* uniqueness, not secrecy, is what a request id needs */
    rnd[0] = (uint32_t) ngx_random() ^ (uint32_t) ngx_pid << 16;
    rnd[1] = (uint32_t) ngx_random() ^ (uint32_t) r->connection->number;
    rnd[2] = (uint32_t) ngx_random() ^ (uint32_t) ngx_current_msec;

    nx_reqid_format((uint8_t *) rnd, (char *) p);

    v->data = p;
    v->len = NX_REQID_GEN_LEN;

done:

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_nexus_request_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_nexus_main_conf_t      *nmcf;
    ngx_http_variable_value_t  *v;

    nmcf = ngx_http_get_module_main_conf(r, ngx_nexus_module);

    v = ngx_http_get_indexed_variable(r->main, nmcf->request_id_index);
    if (v == NULL || v->not_found) {
        return NGX_ERROR;
    }

    id->data = v->data;
    id->len = v->len;

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_request_id_header_filter(ngx_http_request_t *r)
{
    ngx_str_t         id;
    ngx_table_elt_t  *h;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_nexus_request_id(r, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Request-Id");
    h->value = id;
    h->lowcase_key = NULL;

    return ngx_http_next_header_filter(r);
}
