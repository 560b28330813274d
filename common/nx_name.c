/*
 * Copyright (C) Nexus authors
 *
 * Validation of identifiers chosen by operators: tenant names, key names,
 * roles and scope lists. Like nx_scopes_valid(), the validators return 0
 * when the value is valid and -1 otherwise.
 */

#include <string.h>

#include "nx_name.h"


#define NX_TENANT_NAME_MAX  63
#define NX_KEY_NAME_MAX     128
#define NX_SCOPES_MAX       32
#define NX_SCOPE_LEN_MAX    64


static int nx_scope_char(unsigned char c);


static const char  *const nx_roles[] = { "reader", "editor", "admin" };


int
nx_tenant_name_valid(const char *s, size_t len)
{
    return nx_ident_valid(s, len, NX_TENANT_NAME_MAX);
}


int
nx_ident_valid(const char *s, size_t len, size_t max)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0 || len > max) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            continue;
        }

        if (i > 0 && (c == '_' || c == '-')) {
            continue;
        }

        return -1;
    }

    return 0;
}


int
nx_key_name_valid(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0 || len > NX_KEY_NAME_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c < 0x20 || c > 0x7e) {
            return -1;
        }
    }

    return 0;
}


int
nx_role_parse(const char *s, size_t len)
{
    int  i;

    if (s == NULL) {
        return -1;
    }

    for (i = 0; i < (int) (sizeof(nx_roles) / sizeof(nx_roles[0])); i++) {
        if (strlen(nx_roles[i]) == len && memcmp(nx_roles[i], s, len) == 0) {
            return i;
        }
    }

    return -1;
}


const char *
nx_role_name(int role)
{
    if (role < 0 || role >= (int) (sizeof(nx_roles) / sizeof(nx_roles[0]))) {
        return NULL;
    }

    return nx_roles[role];
}


int
nx_scopes_valid(const char *s, size_t len)
{
    size_t  i, n, scopes;

    if (len == 0) {
        return 0;
    }

    if (s == NULL) {
        return -1;
    }

    scopes = 1;
    n = 0;

    for (i = 0; i < len; i++) {

        if (s[i] == ',') {
            if (n == 0 || ++scopes > NX_SCOPES_MAX) {
                return -1;
            }

            n = 0;
            continue;
        }

        if (!nx_scope_char((unsigned char) s[i]) || ++n > NX_SCOPE_LEN_MAX) {
            return -1;
        }
    }

    /* "a," ends with an empty scope */
    return n == 0 ? -1 : 0;
}


static int
nx_scope_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
           || c == '_' || c == ':' || c == '.' || c == '*' || c == '-';
}
