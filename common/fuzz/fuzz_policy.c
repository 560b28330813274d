/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_policy and nx_tz. Every input is tried as:
 *
 *   - a policy set; when it compiles, decisions for a few resource types
 *     and actions against a fixed context must be well formed;
 *   - a single condition, evaluated against the same context;
 *   - a JSON context, against a fixed policy set that reads many kinds of
 *     variables;
 *   - a TZif image, a timestamp and a fixed offset.
 *
 * Compilation must never crash nor leak, error messages must be
 * terminated single lines, and evaluation must stay in bounds.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_policy.h"
#include "nx_tz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  fixed_set[] =
    "[{\"id\": \"d1\", \"effect\": \"deny\", \"priority\": 5,"
    "  \"resource_type\": \"document\", \"action\": \"*\","
    "  \"condition\": {\"any\": ["
    "    {\"eq\": [{\"var\": \"resource.labels.sensitivity\"}, \"high\"]},"
    "    {\"regex\": [{\"var\": \"principal.email\"}, \"^(a+)+$\"]},"
    "    {\"not\": {\"time_between\": [\"06:00\", \"22:00\", \"+01:00\"]}}]}},"
    " {\"id\": \"a1\", \"effect\": \"allow\", \"priority\": 10,"
    "  \"resource_type\": \"*\", \"action\": \"read\","
    "  \"condition\": {\"all\": ["
    "    {\"in\": [{\"var\": \"principal.role\"}, [\"reader\", \"admin\"]]},"
    "    {\"contains\": [{\"var\": \"principal.groups\"}, \"staff\"]},"
    "    {\"starts_with\": [{\"var\": \"principal.email\"}, \"a\"]},"
    "    {\"gte\": [{\"var\": \"request.time\"}, \"2020-01-01\"]},"
    "    {\"lt\": [{\"var\": \"request.tokens\"}, 1e6]},"
    "    {\"ne\": [{\"var\": \"principal.tenant\"}, null]},"
    "    {\"eq\": [{\"var\": \"principal.tags\"}, [1, \"x\", true]]}]}},"
    " {\"id\": \"a2\", \"effect\": \"allow\","
    "  \"resource_type\": \"document\", \"action\": \"write\"}]";


static const nx_policy_value_t  groups[] = {
    { NX_POLICY_STRING, { .str = { "staff", 5 } } },
    { NX_POLICY_NUMBER, { .number = 7 } },
    { NX_POLICY_NULL,   { .boolean = 0 } },
};


static const nx_policy_attr_t  attrs[] = {
    { "principal.role", 14, { NX_POLICY_STRING, { .str = { "admin", 5 } } } },
    { "principal.email", 15,
      { NX_POLICY_STRING, { .str = { "aaaaaaaaaaaaaaaaaaaaaaaa!", 25 } } } },
    { "principal.groups", 16,
      { NX_POLICY_ARRAY, { .arr = { groups, 3 } } } },
    { "principal.mfa", 13, { NX_POLICY_BOOL, { .boolean = 1 } } },
    { "request.time", 12, { NX_POLICY_NUMBER, { .number = 1718442000 } } },
    { "request.tokens", 14, { NX_POLICY_NUMBER, { .number = 512.5 } } },
    { "resource.created", 16,
      { NX_POLICY_STRING, { .str = { "2024-06-15T09:00:00+02:00", 25 } } } },
    { "resource.type", 13, { NX_POLICY_STRING, { .str = { "document", 8 } } } },
    { "resource.owner", 14, { NX_POLICY_NULL, { .boolean = 0 } } },
};


static const char  *pairs[][2] = {
    { "document", "read" },
    { "document", "write" },
    { "corpus", "delete" },
    { "*", "*" },
    { "", "" },
};


/* unknown names: the name itself, so that var-to-var comparisons vary */

static const nx_policy_value_t *
lookup(void *data, const char *name, size_t len)
{
    nx_policy_value_t  *v;

    v = data;

    if (len % 3 == 0) {
        return NULL;
    }

    v->type = NX_POLICY_STRING;
    v->u.str.data = name;
    v->u.str.len = len;

    return v;
}


static void
check_error(const char *err, size_t errlen)
{
    if (memchr(err, '\0', errlen) == NULL || err[0] == '\0'
        || strchr(err, '\n') != NULL)
    {
        abort();
    }
}


static void
check_decision(const nx_policy_t *p, int rc, const nx_policy_decision_t *d)
{
    if (rc == -1) {
        if (d->effect != NX_POLICY_DENY || d->error == NULL) {
            abort();
        }

        return;
    }

    if (rc != 0 || d->error != NULL
        || (d->effect != NX_POLICY_DENY && d->effect != NX_POLICY_ALLOW))
    {
        abort();
    }

    if ((d->rule_id == NULL) != (d->rule == NX_POLICY_NO_RULE)) {
        abort();
    }

    if (d->rule_id != NULL && strlen(d->rule_id) > NX_POLICY_ID_MAX) {
        abort();
    }

    (void) p;
}


static void
try_set(const uint8_t *data, size_t size, const nx_policy_ctx_t *ctx)
{
    int                    rc;
    char                   err[256];
    size_t                 i;
    nx_policy_t           *p;
    nx_policy_opts_t       opts;
    nx_policy_decision_t   d;

    memset(&opts, 0, sizeof(opts));
    opts.wildcards = size & 1;
    opts.default_allow = (size >> 1) & 1;

    memset(err, 'x', sizeof(err));

    p = nx_policy_compile((const char *) data, size, &opts, err,
                          sizeof(err));
    if (p == NULL) {
        check_error(err, sizeof(err));
        return;
    }

    for (i = 0; nx_policy_var(p, i) != NULL; i++) {
        /* void */
    }

    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        rc = nx_policy_decide(p, pairs[i][0], strlen(pairs[i][0]),
                              pairs[i][1], strlen(pairs[i][1]), ctx, &d);
        check_decision(p, rc, &d);

        if (d.rule != NX_POLICY_NO_RULE && d.rule >= size) {
            abort();
        }
    }

    if (nx_policy_eval(p, ctx) != -1) {
        abort();
    }

    nx_policy_free(p);
}


static void
try_condition(const uint8_t *data, size_t size, const nx_policy_ctx_t *ctx)
{
    int           r, r2;
    char          err[256];
    nx_policy_t  *p;

    memset(err, 'x', sizeof(err));

    p = nx_policy_compile_condition((const char *) data, size, NULL, err,
                                    sizeof(err));
    if (p == NULL) {
        check_error(err, sizeof(err));
        return;
    }

    r = nx_policy_eval(p, ctx);
    if (r < -1 || r > 1) {
        abort();
    }

    /* evaluation has no state: the same again */
    r2 = nx_policy_eval(p, ctx);
    if (r2 != r) {
        abort();
    }

    (void) nx_policy_eval(p, NULL);

    if (nx_policy_rules(p) != 0) {
        abort();
    }

    nx_policy_free(p);
}


static void
try_context(const uint8_t *data, size_t size)
{
    int                     rc;
    char                    err[256];
    size_t                  i, j;
    nx_policy_doc_t        *doc;
    nx_policy_decision_t    d;
    const nx_policy_ctx_t  *ctx;
    static nx_policy_t     *p;

    if (p == NULL) {
        p = nx_policy_compile(fixed_set, sizeof(fixed_set) - 1, NULL, err,
                              sizeof(err));
        if (p == NULL) {
            abort();
        }
    }

    memset(err, 'x', sizeof(err));

    doc = nx_policy_doc_parse((const char *) data, size, err, sizeof(err));
    if (doc == NULL) {
        check_error(err, sizeof(err));
        return;
    }

    ctx = nx_policy_doc_ctx(doc);

    for (i = 0; i < ctx->nattrs; i++) {
        if (ctx->attrs[i].name == NULL
            || strlen(ctx->attrs[i].name) != ctx->attrs[i].len)
        {
            abort();
        }

        if (ctx->attrs[i].value.type == NX_POLICY_STRING) {
            for (j = 0; j < ctx->attrs[i].value.u.str.len; j++) {
                if (ctx->attrs[i].value.u.str.data[j] == '\0') {
                    abort();
                }
            }
        }
    }

    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        rc = nx_policy_decide(p, pairs[i][0], strlen(pairs[i][0]),
                              pairs[i][1], strlen(pairs[i][1]), ctx, &d);
        check_decision(p, rc, &d);
    }

    nx_policy_doc_free(doc);
}


static void
try_tz(const uint8_t *data, size_t size)
{
    char      err[128];
    double    t;
    int32_t   off;
    size_t    n;
    int64_t   at;
    nx_tz_t  *tz;

    memset(err, 'x', sizeof(err));

    tz = nx_tz_parse_tzif(data, size, err, sizeof(err));

    if (tz == NULL) {
        check_error(err, sizeof(err));

    } else {
        n = nx_tz_transitions(tz);

        for (at = -4000000000LL; at < 8000000000LL; at += 86400 * 97) {
            off = nx_tz_offset(tz, at);

            if (off < -89999 || off > 93599) {
                abort();
            }
        }

        (void) nx_tz_offset(tz, INT64_MIN);
        (void) nx_tz_offset(tz, INT64_MAX);
        (void) n;

        nx_tz_free(tz);
    }

    if (nx_tz_parse_timestamp((const char *) data, size, &t) == 0
        && !(t > -1e12 && t < 1e12))
    {
        abort();
    }

    if (nx_tz_parse_offset((const char *) data, size, &off) == 0
        && (off < -NX_TZ_FIXED_MAX || off > NX_TZ_FIXED_MAX))
    {
        abort();
    }

    (void) nx_tz_name_valid((const char *) data, size);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nx_policy_ctx_t    ctx;
    nx_policy_value_t  scratch;

    memset(&ctx, 0, sizeof(ctx));
    ctx.attrs = attrs;
    ctx.nattrs = sizeof(attrs) / sizeof(attrs[0]);
    ctx.lookup = lookup;
    ctx.data = &scratch;

    try_set(data, size, &ctx);
    try_condition(data, size, &ctx);
    try_context(data, size);
    try_tz(data, size);

    return 0;
}
