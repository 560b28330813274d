/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_notify.  The first byte chooses:
 *   even: the rest is a stream entry, "name\0value\0name\0value..."; a
 *         parsed event's payload must be JSON whose canonical form is
 *         itself, and must stay the same when built twice;
 *   odd:  the rest is a route's match object; a checked match is
 *         evaluated against a fixed event, and the canonical form of any
 *         JSON is a fixed point.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nx_notify.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_canonical_fixed_point(const char *s, size_t len)
{
    char      err[128], *again;
    size_t    alen;
    yajl_val  v;

    v = nx_json_parse(s, len, err, sizeof(err));
    if (v == NULL) {
        abort();
    }

    again = nx_json_canonical(v, &alen);
    if (again == NULL || alen != len || memcmp(again, s, len) != 0) {
        abort();
    }

    free(again);
    nx_json_free(v);
}


static void
fuzz_entry(const char *s, size_t size)
{
    char               err[256], *p1, *p2;
    size_t             n, i, len1, len2;
    const char        *p, *end, *z;
    nx_notify_event_t  ev;

    static nx_notify_field_t  f[NX_NOTIFY_FIELDS_MAX + 16];

    n = 0;
    p = s;
    end = s + size;

    while (p < end && n < sizeof(f) / sizeof(f[0])) {
        z = memchr(p, '\0', end - p);
        if (z == NULL) {
            break;
        }

        f[n].name = p;
        f[n].name_len = z - p;
        p = z + 1;

        z = memchr(p, '\0', end - p);
        f[n].value = p;
        f[n].value_len = (z ? z : end) - p;
        p = z ? z + 1 : end;
        n++;
    }

    if (nx_notify_event_parse(f, n, &ev, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || ev.data != NULL) {
            abort();
        }
        return;
    }

    if (ev.type[0] == '\0' || ev.nextra > NX_NOTIFY_FIELDS_MAX
        || nx_notify_type_valid(ev.type, strlen(ev.type)) != 0)
    {
        abort();
    }

    ev.id = "1-0";

    p1 = nx_notify_payload(&ev, "tenant \"x\"", &len1);
    p2 = nx_notify_payload(&ev, "tenant \"x\"", &len2);

    if (p1 == NULL || p2 == NULL || len1 != len2
        || memcmp(p1, p2, len1) != 0)
    {
        abort();
    }

    fuzz_canonical_fixed_point(p1, len1);

    for (i = 0; i < ev.nextra; i++) {
        if (ev.extra[i].name_len == 0) {
            abort();
        }
    }

    free(p1);
    free(p2);
    nx_notify_event_free(&ev);
}


static void
fuzz_match(const char *s, size_t size)
{
    char               err[256], *c;
    size_t             len;
    yajl_val           m;
    nx_notify_event_t  ev;

    static const nx_notify_field_t  f[] = {
        { "type", 4, "incident.opened", 15 },
        { "severity", 8, "high", 4 },
        { "source", 6, "alerts", 6 },
    };

    m = nx_json_parse(s, size, err, sizeof(err));
    if (m == NULL) {
        return;
    }

    c = nx_json_canonical(m, &len);
    if (c == NULL) {
        abort();
    }

    fuzz_canonical_fixed_point(c, len);
    free(c);

    if (nx_notify_match_check(m, err, sizeof(err)) == 0) {
        if (nx_notify_event_parse(f, 3, &ev, err, sizeof(err)) != 0) {
            abort();
        }

        (void) nx_notify_match(m, &ev);
        nx_notify_event_free(&ev);

    } else if (err[0] == '\0') {
        abort();
    }

    nx_json_free(m);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *s;

    if (size == 0) {
        return 0;
    }

    /* an exact-size copy, so ASan sees any read past the end */
    s = malloc(size - 1 ? size - 1 : 1);
    if (s == NULL) {
        abort();
    }

    memcpy(s, data + 1, size - 1);

    if (data[0] & 1) {
        fuzz_match(s, size - 1);

    } else {
        fuzz_entry(s, size - 1);
    }

    free(s);

    return 0;
}
