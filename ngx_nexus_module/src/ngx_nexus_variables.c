
/*
 * Copyright (C) Nexus authors
 *
 * Variables for log_format and other modules: $nexus_request_id,
 * $nexus_tenant, $nexus_key_prefix, $nexus_key_role.
 */


#include "ngx_nexus_module.h"

#include <nx_name.h>


ngx_int_t ngx_nexus_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_nexus_principal_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#define NGX_NEXUS_VAR_TENANT        0
#define NGX_NEXUS_VAR_PREFIX        1
#define NGX_NEXUS_VAR_ROLE          2


static ngx_http_variable_t  ngx_nexus_vars[] = {

    { ngx_string("nexus_request_id"), NULL, ngx_nexus_request_id_variable,
      0, 0, 0 },

    { ngx_string("nexus_tenant"), NULL, ngx_nexus_principal_variable,
      NGX_NEXUS_VAR_TENANT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("nexus_key_prefix"), NULL, ngx_nexus_principal_variable,
      NGX_NEXUS_VAR_PREFIX, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("nexus_key_role"), NULL, ngx_nexus_principal_variable,
      NGX_NEXUS_VAR_ROLE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_nexus_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_nexus_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_nexus_principal_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char       *role;
    ngx_nexus_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_nexus_module);

    if (ctx == NULL || !ctx->authenticated) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_NEXUS_VAR_TENANT:
        v->data = ctx->principal.tenant.data;
        v->len = ctx->principal.tenant.len;
        break;

    case NGX_NEXUS_VAR_PREFIX:
        v->data = ctx->principal.prefix.data;
        v->len = ctx->principal.prefix.len;
        break;

    default:
        role = nx_role_name((int) ctx->principal.role);
        v->data = (u_char *) role;
        v->len = role ? ngx_strlen(role) : 0;
        break;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
