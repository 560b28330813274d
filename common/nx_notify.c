/*
 * Copyright (C) Nexus authors
 *
 * Webhook notifications, the parts without I/O: stream entries parsed
 * into events, route matching, the canonical payload, signatures and the
 * retry schedule.  See nx_notify.h.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>

#include "nx_json.h"
#include "nx_notify.h"


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;
} nx_notify_buf_t;


typedef struct {
    const char  *key;
    yajl_val     value;             /* or NULL: text below */
    const char  *text;              /* a string value, not yet escaped */
    size_t       text_len;
    int          number;            /* text is a JSON number */
    size_t       order;             /* for "the last duplicate wins" */
    char        *owned;             /* a key made valid UTF-8 */
} nx_notify_member_t;


static int nx_notify_reserve(nx_notify_buf_t *b, size_t n);
static void nx_notify_put(nx_notify_buf_t *b, const void *p, size_t n);
static void nx_notify_puts(nx_notify_buf_t *b, const char *s);
static char *nx_notify_sanitize(const char *s, size_t n, size_t *outlen);
static void nx_notify_put_string(nx_notify_buf_t *b, const char *s,
    size_t n);
static void nx_notify_put_value(nx_notify_buf_t *b, yajl_val v);
static void nx_notify_put_members(nx_notify_buf_t *b,
    nx_notify_member_t *m, size_t n);
static int nx_notify_member_cmp(const void *a, const void *b);
static int nx_notify_copy(char *dst, size_t max, const char *s, size_t n,
    int (*valid)(const char *, size_t));
static int nx_notify_severity_valid(const char *s, size_t len);
static int nx_notify_label_valid(const char *s, size_t len);
static int nx_notify_name_valid(const char *s, size_t len);
static int nx_notify_utf8(const char *s, size_t len);
static int nx_notify_digits(const char *s, size_t len, int64_t *out);
static int nx_notify_integer(const char *s, size_t len);
static int nx_notify_value_check(yajl_val v);
static int nx_notify_value_match(yajl_val v, const char *s);
static int nx_notify_pattern(const char *pattern, const char *s);
static void nx_notify_err(char *err, size_t errlen, const char *msg);


static const char  nx_notify_hex[] = "0123456789abcdef";


int
nx_notify_type_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > NX_NOTIFY_TYPE_MAX
        || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
    {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '_' || s[i] == '.' || s[i] == '-'))
        {
            return -1;
        }
    }

    return 0;
}


int
nx_notify_event_parse(const nx_notify_field_t *fields, size_t n,
    nx_notify_event_t *ev, char *err, size_t errlen)
{
    char                      errbuf[128];
    size_t                    i;
    const char               *name, *value;
    size_t                    nlen, vlen;
    const nx_notify_field_t  *f;

    memset(ev, 0, sizeof(*ev));
    strcpy(ev->severity, "info");

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    for (i = 0; i < n; i++) {
        f = &fields[i];
        name = f->name;
        nlen = f->name_len;
        value = f->value;
        vlen = f->value_len;

        if (name == NULL || value == NULL) {
            nx_notify_err(err, errlen, "a field without a name or value");
            goto failed;
        }

#define nx_notify_is(s)  (nlen == sizeof(s) - 1 && memcmp(name, s, nlen) == 0)

        if (nx_notify_is("type")) {
            if (nx_notify_copy(ev->type, NX_NOTIFY_TYPE_MAX, value, vlen,
                               nx_notify_type_valid) != 0)
            {
                nx_notify_err(err, errlen, "\"type\" must be 1-128 of "
                              "[a-z0-9_.-], starting with [a-z0-9]");
                goto failed;
            }
            continue;
        }

        if (nx_notify_is("severity")) {
            if (nx_notify_copy(ev->severity, NX_NOTIFY_SEVERITY_MAX, value,
                               vlen, nx_notify_severity_valid) != 0)
            {
                nx_notify_err(err, errlen,
                              "\"severity\" must be 1-16 of [a-z]");
                goto failed;
            }
            continue;
        }

        if (nx_notify_is("source") || nx_notify_is("category")) {
            if (nx_notify_copy(name[0] == 's' ? ev->source : ev->category,
                               NX_NOTIFY_LABEL_MAX, value, vlen,
                               nx_notify_label_valid) != 0)
            {
                nx_notify_err(err, errlen, "\"source\" and \"category\" "
                              "must be 1-128 of [A-Za-z0-9_.:/-]");
                goto failed;
            }
            continue;
        }

        if (nx_notify_is("tenant_id")) {
            if (nx_notify_digits(value, vlen, &ev->tenant_id) != 0) {
                nx_notify_err(err, errlen, "\"tenant_id\" must be a "
                              "tenant's numeric id");
                goto failed;
            }
            continue;
        }

        if (nx_notify_is("ts")) {
            if (nx_notify_digits(value, vlen, &ev->ts_ms) != 0) {
                nx_notify_err(err, errlen,
                              "\"ts\" must be milliseconds since 1970");
                goto failed;
            }
            continue;
        }

        if (nx_notify_is("payload")) {
            if (ev->data != NULL || vlen > NX_NOTIFY_PAYLOAD_MAX) {
                nx_notify_err(err, errlen, "\"payload\" is repeated or "
                              "larger than 64 KiB");
                goto failed;
            }

            ev->data = nx_json_parse_strict(value, vlen, errbuf,
                                            sizeof(errbuf));

            if (ev->data == NULL || !YAJL_IS_OBJECT(ev->data)) {
                nx_notify_err(err, errlen,
                              "\"payload\" must be a JSON object");
                goto failed;
            }
            continue;
        }

#undef nx_notify_is

        if (nx_notify_name_valid(name, nlen) != 0
            || vlen > NX_NOTIFY_FIELD_MAX
            || ev->nextra == NX_NOTIFY_FIELDS_MAX
            || nx_notify_utf8(value, vlen) != 0)
        {
            nx_notify_err(err, errlen, "extra fields must be at most 64, "
                          "named by 1-64 of [A-Za-z0-9_.-], and at most "
                          "4096 bytes of UTF-8 each");
            goto failed;
        }

        ev->extra[ev->nextra++] = *f;
    }

    if (ev->type[0] == '\0') {
        nx_notify_err(err, errlen, "\"type\" is missing");
        goto failed;
    }

    return 0;

failed:

    nx_notify_event_free(ev);

    return -1;
}


void
nx_notify_event_free(nx_notify_event_t *ev)
{
    if (ev->data != NULL) {
        nx_json_free(ev->data);
        ev->data = NULL;
    }
}


int
nx_notify_match_check(yajl_val match, char *err, size_t errlen)
{
    size_t       i;
    const char  *key;

    if (match == NULL || !YAJL_IS_OBJECT(match)) {
        nx_notify_err(err, errlen, "the match must be a JSON object");
        return -1;
    }

    for (i = 0; i < match->u.object.len; i++) {
        key = match->u.object.keys[i];

        if (strcmp(key, "event_type") != 0 && strcmp(key, "severity") != 0
            && strcmp(key, "source") != 0 && strcmp(key, "category") != 0)
        {
            nx_notify_err(err, errlen, "a match has only event_type, "
                          "severity, source and category");
            return -1;
        }

        if (nx_notify_value_check(match->u.object.values[i]) != 0) {
            nx_notify_err(err, errlen, "each match value must be a string "
                          "or an array of 1-64 strings of 1-128 characters");
            return -1;
        }
    }

    return 0;
}


int
nx_notify_match(yajl_val match, const nx_notify_event_t *ev)
{
    size_t       i;
    yajl_val     v;
    const char  *key, *s;

    if (match == NULL || !YAJL_IS_OBJECT(match)) {
        return 0;
    }

    for (i = 0; i < match->u.object.len; i++) {
        key = match->u.object.keys[i];
        v = match->u.object.values[i];

        if (strcmp(key, "event_type") == 0) {
            s = ev->type;

        } else if (strcmp(key, "severity") == 0) {
            s = ev->severity;

        } else if (strcmp(key, "source") == 0) {
            s = ev->source;

        } else if (strcmp(key, "category") == 0) {
            s = ev->category;

        } else {
            return 0;
        }

        if (s[0] == '\0' || !nx_notify_value_match(v, s)) {
            return 0;
        }
    }

    return 1;
}


char *
nx_notify_payload(const nx_notify_event_t *ev, const char *tenant,
    size_t *len)
{
    char                 when[96], *names, *p;
    size_t               i, n, nl, total;
    time_t               secs;
    struct tm            tm;
    nx_notify_buf_t      b;
    nx_notify_member_t  *m;

    memset(&b, 0, sizeof(b));

    nx_notify_puts(&b, "{");

    if (ev->category[0]) {
        nx_notify_puts(&b, "\"category\":");
        nx_notify_put_string(&b, ev->category, strlen(ev->category));
        nx_notify_puts(&b, ",");
    }

    /*
     * data: the extra fields, then the payload's members over them; the
     * fields' names are not NUL-terminated, so they are copied
     */

    total = ev->nextra + (ev->data ? ev->data->u.object.len : 0);
    nl = 0;

    for (i = 0; i < ev->nextra; i++) {
        nl += ev->extra[i].name_len + 1;
    }

    m = calloc(total ? total : 1, sizeof(nx_notify_member_t));
    names = malloc(nl ? nl : 1);

    if (m == NULL || names == NULL) {
        free(m);
        free(names);
        free(b.data);
        return NULL;
    }

    n = 0;
    p = names;

    for (i = 0; i < ev->nextra; i++) {
        memcpy(p, ev->extra[i].name, ev->extra[i].name_len);
        p[ev->extra[i].name_len] = '\0';

        m[n].key = p;
        m[n].text = ev->extra[i].value;
        m[n].text_len = ev->extra[i].value_len;
        m[n].number = nx_notify_integer(ev->extra[i].value,
                                        ev->extra[i].value_len);
        m[n].order = n;
        n++;

        p += ev->extra[i].name_len + 1;
    }

    if (ev->data) {
        for (i = 0; i < ev->data->u.object.len; i++) {
            m[n].key = ev->data->u.object.keys[i];
            m[n].value = ev->data->u.object.values[i];
            m[n].order = n;
            n++;
        }
    }

    nx_notify_puts(&b, "\"data\":");
    nx_notify_put_members(&b, m, n);

    free(names);
    free(m);

    if (ev->id != NULL) {
        nx_notify_puts(&b, ",\"event_id\":");
        nx_notify_put_string(&b, ev->id, strlen(ev->id));
    }

    nx_notify_puts(&b, ",\"event_type\":");
    nx_notify_put_string(&b, ev->type, strlen(ev->type));

    if (ev->ts_ms > 0) {
        secs = (time_t) (ev->ts_ms / 1000);

        if (gmtime_r(&secs, &tm) != NULL && tm.tm_year + 1900 <= 9999) {
            (void) snprintf(when, sizeof(when),
                            "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                            tm.tm_hour, tm.tm_min, tm.tm_sec,
                            (int) (ev->ts_ms % 1000));

            nx_notify_puts(&b, ",\"occurred_at\":\"");
            nx_notify_puts(&b, when);
            nx_notify_puts(&b, "\"");
        }
    }

    nx_notify_puts(&b, ",\"severity\":");
    nx_notify_put_string(&b, ev->severity, strlen(ev->severity));

    if (ev->source[0]) {
        nx_notify_puts(&b, ",\"source\":");
        nx_notify_put_string(&b, ev->source, strlen(ev->source));
    }

    if (tenant != NULL) {
        nx_notify_puts(&b, ",\"tenant\":");
        nx_notify_put_string(&b, tenant, strlen(tenant));
    }

    if (ev->tenant_id > 0) {
        (void) snprintf(when, sizeof(when), ",\"tenant_id\":%" PRId64,
                        ev->tenant_id);
        nx_notify_puts(&b, when);
    }

    nx_notify_puts(&b, "}");
    nx_notify_put(&b, "", 1);

    if (b.failed) {
        free(b.data);
        return NULL;
    }

    if (len != NULL) {
        *len = b.len - 1;
    }

    return b.data;
}


char *
nx_json_canonical(yajl_val v, size_t *len)
{
    nx_notify_buf_t  b;

    memset(&b, 0, sizeof(b));

    nx_notify_put_value(&b, v);
    nx_notify_put(&b, "", 1);

    if (b.failed) {
        free(b.data);
        return NULL;
    }

    if (len != NULL) {
        *len = b.len - 1;
    }

    return b.data;
}


int
nx_notify_sign(const uint8_t *secret, size_t secret_len, const char *id,
    int64_t ts, const char *body, size_t body_len,
    char out[NX_NOTIFY_SIG_LEN + 1])
{
    int            n;
    char           tsbuf[24];
    size_t         i, outl;
    EVP_MAC       *mac;
    EVP_MAC_CTX   *ctx;
    OSSL_PARAM     params[2];
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (secret == NULL || id == NULL || (body == NULL && body_len > 0)) {
        return -1;
    }

    n = snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return -1;
    }

    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);

    if (ctx == NULL) {
        return -1;
    }

    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *) "SHA256",
                                                 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(ctx, secret, secret_len, params) != 1
        || EVP_MAC_update(ctx, (const unsigned char *) id, strlen(id)) != 1
        || EVP_MAC_update(ctx, (const unsigned char *) ".", 1) != 1
        || EVP_MAC_update(ctx, (const unsigned char *) tsbuf, (size_t) n)
           != 1
        || EVP_MAC_update(ctx, (const unsigned char *) ".", 1) != 1
        || (body_len > 0
            && EVP_MAC_update(ctx, (const unsigned char *) body, body_len)
               != 1)
        || EVP_MAC_final(ctx, md, &outl, sizeof(md)) != 1
        || outl != 32)
    {
        EVP_MAC_CTX_free(ctx);
        return -1;
    }

    EVP_MAC_CTX_free(ctx);

    memcpy(out, "sha256=", 7);

    for (i = 0; i < outl; i++) {
        out[7 + 2 * i] = nx_notify_hex[md[i] >> 4];
        out[7 + 2 * i + 1] = nx_notify_hex[md[i] & 0x0f];
    }

    out[NX_NOTIFY_SIG_LEN] = '\0';

    OPENSSL_cleanse(md, sizeof(md));

    return 0;
}


int
nx_notify_verify(const uint8_t *secret, size_t secret_len, const char *id,
    int64_t ts, const char *body, size_t body_len, const char *sig,
    size_t sig_len)
{
    char  want[NX_NOTIFY_SIG_LEN + 1];

    if (sig == NULL || sig_len != NX_NOTIFY_SIG_LEN) {
        return 0;
    }

    if (nx_notify_sign(secret, secret_len, id, ts, body, body_len, want)
        != 0)
    {
        return 0;
    }

    return CRYPTO_memcmp(want, sig, NX_NOTIFY_SIG_LEN) == 0;
}


int64_t
nx_notify_backoff(const char *job_id, int attempt, int64_t base_ms,
    int64_t max_ms)
{
    int            i, n;
    char           buf[256];
    int64_t        raw;
    uint32_t       u;
    unsigned int   mdlen;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (base_ms < 1) {
        base_ms = 1;
    }

    if (max_ms < base_ms) {
        max_ms = base_ms;
    }

    if (attempt < 1) {
        attempt = 1;
    }

    raw = base_ms;

    for (i = 1; i < attempt && raw < max_ms; i++) {
        raw = (raw > INT64_MAX / 2) ? max_ms : raw * 2;
    }

    if (raw > max_ms) {
        raw = max_ms;
    }

    n = snprintf(buf, sizeof(buf), "%s:%d", job_id ? job_id : "", attempt);
    if (n < 0 || (size_t) n >= sizeof(buf)) {
        n = (int) sizeof(buf) - 1;
    }

    if (EVP_Digest(buf, (size_t) n, md, &mdlen, EVP_sha256(), NULL) != 1) {
        return raw;
    }

    u = (uint32_t) md[0] << 24 | (uint32_t) md[1] << 16
        | (uint32_t) md[2] << 8 | (uint32_t) md[3];

    /* raw / 4 * u: below 2^62 for any raw under 2^62 */
    return raw - (int64_t) (((uint64_t) (raw / 4) * u) >> 32);
}


/* output */

static int
nx_notify_reserve(nx_notify_buf_t *b, size_t n)
{
    char    *d;
    size_t   cap;

    if (b->failed) {
        return -1;
    }

    if (b->len + n <= b->cap) {
        return 0;
    }

    cap = b->cap ? b->cap : 256;

    while (cap < b->len + n) {
        cap *= 2;
    }

    d = realloc(b->data, cap);
    if (d == NULL) {
        b->failed = 1;
        return -1;
    }

    b->data = d;
    b->cap = cap;

    return 0;
}


static void
nx_notify_put(nx_notify_buf_t *b, const void *p, size_t n)
{
    if (nx_notify_reserve(b, n) != 0) {
        return;
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;
}


static void
nx_notify_puts(nx_notify_buf_t *b, const char *s)
{
    nx_notify_put(b, s, strlen(s));
}


/*
 * Invalid UTF-8 (which yajl lets through, in a key or from an escaped lone
 * surrogate) becomes U+FFFD itself, byte by byte, rather than the escape
 * "\ufffd", so that the output is its own canonical form.  A malloc'd,
 * NUL-terminated copy, or NULL.
 */

static char *
nx_notify_sanitize(const char *s, size_t n, size_t *outlen)
{
    char    *clean, *p;
    size_t   i, k;

    clean = malloc(3 * n + 1);
    if (clean == NULL) {
        return NULL;
    }

    p = clean;

    for (i = 0; i < n; i += k) {
        k = ((unsigned char) s[i] < 0x80)
            ? 1 : nx_utf8_len((const unsigned char *) s + i, n - i);

        if (k == 0) {
            memcpy(p, "\xef\xbf\xbd", 3);
            p += 3;
            k = 1;
            continue;
        }

        memcpy(p, s + i, k);
        p += k;
    }

    *p = '\0';
    *outlen = p - clean;

    return clean;
}


static void
nx_notify_put_string(nx_notify_buf_t *b, const char *s, size_t n)
{
    char    *clean;
    size_t   len;

    if (nx_notify_utf8(s, n) != 0) {
        clean = nx_notify_sanitize(s, n, &len);
        if (clean == NULL) {
            b->failed = 1;
            return;
        }

        nx_notify_put_string(b, clean, len);
        free(clean);
        return;
    }

    if (nx_notify_reserve(b, nx_json_escape_len(s, n) + 2) != 0) {
        return;
    }

    b->data[b->len++] = '"';
    b->len += nx_json_escape(b->data + b->len, s, n);
    b->data[b->len++] = '"';
}


static void
nx_notify_put_value(nx_notify_buf_t *b, yajl_val v)
{
    char                 num[40];
    size_t               i, n;
    nx_notify_member_t  *m;

    if (v == NULL || YAJL_IS_NULL(v)) {
        nx_notify_puts(b, "null");
        return;
    }

    if (YAJL_IS_TRUE(v)) {
        nx_notify_puts(b, "true");
        return;
    }

    if (YAJL_IS_FALSE(v)) {
        nx_notify_puts(b, "false");
        return;
    }

    if (YAJL_IS_STRING(v)) {
        nx_notify_put_string(b, v->u.string, strlen(v->u.string));
        return;
    }

    if (YAJL_IS_NUMBER(v)) {
        if (YAJL_IS_INTEGER(v)) {
            (void) snprintf(num, sizeof(num), "%lld", v->u.number.i);

        } else if ((v->u.number.flags & YAJL_NUMBER_DOUBLE_VALID)
                   && v->u.number.d == v->u.number.d
                   && v->u.number.d - v->u.number.d == 0)
        {
            (void) snprintf(num, sizeof(num), "%.17g", v->u.number.d);

        } else {
            /* out of every range: its text is the best rendering */
            nx_notify_puts(b, v->u.number.r);
            return;
        }

        nx_notify_puts(b, num);
        return;
    }

    if (YAJL_IS_ARRAY(v)) {
        nx_notify_puts(b, "[");

        for (i = 0; i < v->u.array.len; i++) {
            if (i) {
                nx_notify_puts(b, ",");
            }
            nx_notify_put_value(b, v->u.array.values[i]);
        }

        nx_notify_puts(b, "]");
        return;
    }

    /* an object */

    n = v->u.object.len;

    m = calloc(n ? n : 1, sizeof(nx_notify_member_t));
    if (m == NULL) {
        b->failed = 1;
        return;
    }

    for (i = 0; i < n; i++) {
        m[i].key = v->u.object.keys[i];
        m[i].value = v->u.object.values[i];
        m[i].order = i;
    }

    nx_notify_put_members(b, m, n);

    free(m);
}


/*
 * Sorted by key, the last of equal keys kept; m is reordered.  Keys are
 * compared as they are written out, so invalid UTF-8 is replaced first.
 */

static void
nx_notify_put_members(nx_notify_buf_t *b, nx_notify_member_t *m, size_t n)
{
    size_t  i, len, first;

    for (i = 0; i < n; i++) {
        len = strlen(m[i].key);

        if (nx_notify_utf8(m[i].key, len) != 0) {
            m[i].owned = nx_notify_sanitize(m[i].key, len, &len);
            if (m[i].owned == NULL) {
                b->failed = 1;
                goto done;
            }

            m[i].key = m[i].owned;
        }
    }

    qsort(m, n, sizeof(nx_notify_member_t), nx_notify_member_cmp);

    nx_notify_puts(b, "{");

    first = 1;

    for (i = 0; i < n; i++) {
        if (i + 1 < n && strcmp(m[i].key, m[i + 1].key) == 0) {
            continue;
        }

        if (!first) {
            nx_notify_puts(b, ",");
        }

        first = 0;

        nx_notify_put_string(b, m[i].key, strlen(m[i].key));
        nx_notify_puts(b, ":");

        if (m[i].value != NULL) {
            nx_notify_put_value(b, m[i].value);

        } else if (m[i].number) {
            nx_notify_put(b, m[i].text, m[i].text_len);

        } else {
            nx_notify_put_string(b, m[i].text, m[i].text_len);
        }
    }

    nx_notify_puts(b, "}");

done:

    for (i = 0; i < n; i++) {
        free(m[i].owned);
        m[i].owned = NULL;
    }
}


static int
nx_notify_member_cmp(const void *a, const void *b)
{
    int                        rc;
    const nx_notify_member_t  *x = a, *y = b;

    rc = strcmp(x->key, y->key);
    if (rc != 0) {
        return rc;
    }

    return (x->order > y->order) - (x->order < y->order);
}


/* input */

static int
nx_notify_copy(char *dst, size_t max, const char *s, size_t n,
    int (*valid)(const char *, size_t))
{
    if (n > max || valid(s, n) != 0) {
        return -1;
    }

    memcpy(dst, s, n);
    dst[n] = '\0';

    return 0;
}


static int
nx_notify_severity_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > NX_NOTIFY_SEVERITY_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < 'a' || s[i] > 'z') {
            return -1;
        }
    }

    return 0;
}


static int
nx_notify_label_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > NX_NOTIFY_LABEL_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.'
              || s[i] == ':' || s[i] == '/' || s[i] == '-'))
        {
            return -1;
        }
    }

    return 0;
}


static int
nx_notify_name_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > NX_NOTIFY_FIELD_NAME_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.'
              || s[i] == '-'))
        {
            return -1;
        }
    }

    return 0;
}


static int
nx_notify_utf8(const char *s, size_t len)
{
    size_t  i, n;

    for (i = 0; i < len; i += n) {
        n = ((unsigned char) s[i] < 0x80)
            ? 1 : nx_utf8_len((const unsigned char *) s + i, len - i);

        if (n == 0) {
            return -1;
        }
    }

    return 0;
}


/* 1-18 decimal digits, no sign, no leading zero (but "0") */

static int
nx_notify_digits(const char *s, size_t len, int64_t *out)
{
    size_t   i;
    int64_t  v;

    if (len == 0 || len > 18 || (len > 1 && s[0] == '0')) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        v = v * 10 + (s[i] - '0');
    }

    *out = v;

    return 0;
}


/* -?(0|[1-9][0-9]{0,17}): a value that is sent as a JSON number */

static int
nx_notify_integer(const char *s, size_t len)
{
    int64_t  v;

    if (len > 0 && s[0] == '-') {
        return len > 1 && s[1] != '0' && nx_notify_digits(s + 1, len - 1, &v)
                                         == 0;
    }

    return nx_notify_digits(s, len, &v) == 0;
}


static int
nx_notify_value_check(yajl_val v)
{
    size_t  i, len;

    if (YAJL_IS_STRING(v)) {
        len = strlen(v->u.string);
        return (len >= 1 && len <= 128) ? 0 : -1;
    }

    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0
        || v->u.array.len > NX_NOTIFY_MATCH_VALUES)
    {
        return -1;
    }

    for (i = 0; i < v->u.array.len; i++) {
        if (!YAJL_IS_STRING(v->u.array.values[i])) {
            return -1;
        }

        len = strlen(v->u.array.values[i]->u.string);

        if (len < 1 || len > 128) {
            return -1;
        }
    }

    return 0;
}


static int
nx_notify_value_match(yajl_val v, const char *s)
{
    size_t  i;

    if (YAJL_IS_STRING(v)) {
        return nx_notify_pattern(v->u.string, s);
    }

    if (YAJL_IS_ARRAY(v)) {
        for (i = 0; i < v->u.array.len; i++) {
            if (YAJL_IS_STRING(v->u.array.values[i])
                && nx_notify_pattern(v->u.array.values[i]->u.string, s))
            {
                return 1;
            }
        }
    }

    return 0;
}


static int
nx_notify_pattern(const char *pattern, const char *s)
{
    size_t  plen;

    if (strcmp(pattern, "*") == 0) {
        return 1;
    }

    plen = strlen(pattern);

    if (plen >= 2 && pattern[plen - 1] == '*' && pattern[plen - 2] == '.') {
        /* "quota.*": "quota." and something after it */
        return strncmp(pattern, s, plen - 1) == 0 && s[plen - 1] != '\0';
    }

    return strcmp(pattern, s) == 0;
}


static void
nx_notify_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0) {
        (void) snprintf(err, errlen, "%s", msg);
    }
}
