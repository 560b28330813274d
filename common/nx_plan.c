/*
 * Copyright (C) Nexus authors
 *
 * Names used by plans and entitlements, and the Idempotency-Key header:
 * the checks shared by the module, nexusctl and their tests.  The SQL
 * CHECK constraints of migrations/0011_plans.sql hold the same rules.
 */

#include <string.h>

#include "nx_plan.h"
#include "nx_name.h"


int
nx_feature_name_valid(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0 || len > NX_FEATURE_NAME_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            continue;
        }

        /* a dot only between two segments */
        if (c == '.' && i > 0 && i < len - 1 && s[i - 1] != '.') {
            continue;
        }

        return -1;
    }

    return 0;
}


int
nx_feature_key_valid(const char *s, size_t len, const char **name)
{
    if (s == NULL || len <= NX_FEATURE_PREFIX_LEN
        || memcmp(s, NX_FEATURE_PREFIX, NX_FEATURE_PREFIX_LEN) != 0)
    {
        return -1;
    }

    if (nx_feature_name_valid(s + NX_FEATURE_PREFIX_LEN,
                              len - NX_FEATURE_PREFIX_LEN)
        != 0)
    {
        return -1;
    }

    if (name != NULL) {
        *name = s + NX_FEATURE_PREFIX_LEN;
    }

    return 0;
}


int
nx_plan_id_valid(const char *s, size_t len)
{
    /* the rule of tenant names */
    return nx_ident_valid(s, len, NX_PLAN_ID_MAX);
}


int
nx_feature_in(const char *list, size_t list_len, const char *name,
    size_t len)
{
    const char  *p, *last, *comma;

    if (len == 0) {
        return 0;
    }

    p = list;
    last = list + list_len;

    while (p < last) {
        comma = memchr(p, ',', last - p);
        if (comma == NULL) {
            comma = last;
        }

        if ((size_t) (comma - p) == len && memcmp(p, name, len) == 0) {
            return 1;
        }

        p = comma + 1;
    }

    return 0;
}


int
nx_idempotency_key_valid(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0 || len > NX_IDEMPOTENCY_KEY_MAX) {
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
