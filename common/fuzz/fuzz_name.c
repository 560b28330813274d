/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_name: tenant and key names, roles and scope
 * lists, checked against straightforward reference rules.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_name.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
ref_tenant(const uint8_t *s, size_t n)
{
    size_t  i;

    if (n < 1 || n > 63) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')) {
            continue;
        }

        if (i > 0 && (s[i] == '-' || s[i] == '_')) {
            continue;
        }

        return -1;
    }

    return 0;
}


static int
ref_scopes(const uint8_t *s, size_t n)
{
    size_t  i, start, count;

    if (n == 0) {
        return 0;
    }

    count = 0;
    start = 0;

    for (i = 0; i <= n; i++) {
        if (i < n && s[i] != ',') {
            if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
                  || strchr("_:.*-", s[i]) != NULL) || s[i] == '\0')
            {
                return -1;
            }

            continue;
        }

        if (i - start < 1 || i - start > 64 || ++count > 32) {
            return -1;
        }

        start = i + 1;
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          role, knv;
    char        *buf;
    size_t       i;
    const char  *name;

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data, size);

    if (nx_tenant_name_valid(buf, size) != ref_tenant(data, size)) {
        abort();
    }

    knv = (size >= 1 && size <= 128) ? 0 : -1;
    for (i = 0; knv == 0 && i < size; i++) {
        if (data[i] < 0x20 || data[i] > 0x7e) {
            knv = -1;
        }
    }

    if (nx_key_name_valid(buf, size) != knv) {
        abort();
    }

    if (nx_scopes_valid(buf, size) != ref_scopes(data, size)) {
        abort();
    }

    role = nx_role_parse(buf, size);

    if (role != -1) {
        name = nx_role_name(role);

        if (role < 0 || role > 2 || name == NULL || strlen(name) != size
            || memcmp(name, buf, size) != 0)
        {
            abort();
        }

    } else if ((size == 6 && (memcmp(buf, "reader", 6) == 0
                              || memcmp(buf, "editor", 6) == 0))
               || (size == 5 && memcmp(buf, "admin", 5) == 0))
    {
        abort();
    }

    if (size > 0 && nx_role_name((signed char) data[0]) != NULL
        && ((signed char) data[0] < 0 || (signed char) data[0] > 2))
    {
        abort();
    }

    free(buf);

    return 0;
}
