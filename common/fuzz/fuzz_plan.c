/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_plan: feature names and keys, plan ids,
 * feature list membership and Idempotency-Key values, checked against
 * straightforward reference rules.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_plan.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
ref_feature(const uint8_t *s, size_t n)
{
    size_t  i;

    if (n < 1 || n > 32 || s[0] == '.' || s[n - 1] == '.') {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
            || s[i] == '_')
        {
            continue;
        }

        if (s[i] == '.' && s[i - 1] != '.') {
            continue;
        }

        return -1;
    }

    return 0;
}


static int
ref_plan(const uint8_t *s, size_t n)
{
    size_t  i;

    if (n < 1 || n > 32) {
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


/* whether the list, split at ",", has an element equal to name */

static int
ref_in(const uint8_t *list, size_t n, const uint8_t *name, size_t len)
{
    size_t  i, start;

    if (len == 0) {
        return 0;
    }

    start = 0;

    for (i = 0; i <= n; i++) {
        if (i < n && list[i] != ',') {
            continue;
        }

        if (i - start == len && memcmp(list + start, name, len) == 0) {
            return 1;
        }

        start = i + 1;
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          idem, key;
    char        *buf;
    size_t       i, cut;
    const char  *name;

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data, size);

    if (nx_feature_name_valid(buf, size) != ref_feature(data, size)) {
        abort();
    }

    key = (size > 8 && memcmp(data, "feature.", 8) == 0)
          ? ref_feature(data + 8, size - 8) : -1;
    name = NULL;

    if (nx_feature_key_valid(buf, size, &name) != key
        || (key == 0 && name != buf + 8))
    {
        abort();
    }

    if (nx_plan_id_valid(buf, size) != ref_plan(data, size)) {
        abort();
    }

    idem = (size >= 1 && size <= 128) ? 0 : -1;
    for (i = 0; idem == 0 && i < size; i++) {
        if (data[i] < 0x20 || data[i] > 0x7e) {
            idem = -1;
        }
    }

    if (nx_idempotency_key_valid(buf, size) != idem) {
        abort();
    }

    /* the first byte says where the list ends and the name begins */
    if (size > 1) {
        cut = 1 + data[0] % size;

        if (nx_feature_in(buf + 1, cut - 1, buf + cut, size - cut)
            != ref_in(data + 1, cut - 1, data + cut, size - cut))
        {
            abort();
        }
    }

    free(buf);

    return 0;
}
