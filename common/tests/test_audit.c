/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_audit: metadata redaction, the canonical row encoding,
 * the HMAC chain (cross-checked against one-shot HMAC), HKDF against
 * RFC 5869, checkpoints, and the verifier over a 1000-row chain with each
 * kind of tampering.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "nx_audit.h"
#include "nx_json.h"


#define NROWS      1000
#define TENANT     7
#define T0         INT64_C(1700000000000000)
#define SECOND     INT64_C(1000000)
#define TOLERANCE  (5 * SECOND)

#define S(lit)     { lit, sizeof(lit) - 1 }


typedef struct {
    nx_audit_row_t  row;
    char            reqid[32];
    char            meta[96];
    uint8_t         hash[NX_AUDIT_HASH_LEN];
} trow_t;


static uint8_t  chain_key[NX_AUDIT_HASH_LEN];
static uint8_t  ckpt_key[NX_AUDIT_HASH_LEN];

/* base[1..NROWS] is a valid chain; work[] is what a test tampers with */
static trow_t   base[NROWS + 1];
static trow_t   work[NROWS + 1];

static const char  *events[] = {
    "auth.access.success", "run.invoked", "documents.deleted",
    "rbac.forbidden", "security.rate_limited", "quota.hard_cap_blocked"
};


/* helpers */

static void
hex_decode(const char *hex, uint8_t *out)
{
    size_t        i;
    unsigned int  b;

    for (i = 0; hex[2 * i] != '\0'; i++) {
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (uint8_t) b;
    }
}


static nx_audit_str_t
str(const char *s)
{
    nx_audit_str_t  r;

    r.data = s;
    r.len = strlen(s);

    return r;
}


/* redacts s (asserting success) into a static buffer */

static const char *
redact_ok(const char *s)
{
    size_t       n;
    static char  out[4096];

    n = 12345;
    if (nx_audit_redact(s, strlen(s), out, sizeof(out), &n) != 0) {
        print_error("redaction of %s failed\n", s);
        fail();
    }

    assert_int_equal(n, strlen(out));

    return out;
}


#define REDACT(in, expect)  assert_string_equal(redact_ok(in), expect)


static void
redact_bad(const char *s, size_t len)
{
    size_t  n;
    char    out[256];

    n = 12345;
    memset(out, 'x', sizeof(out));
    assert_int_equal(nx_audit_redact(s, len, out, sizeof(out), &n), -1);
    assert_int_equal(n, 0);
    assert_int_equal(out[0], '\0');
}


#define REDACT_BAD(s)  redact_bad(s, sizeof(s) - 1)


static void
make_row(trow_t *t, int64_t i)
{
    nx_audit_row_t  *r;

    r = &t->row;
    memset(t, 0, sizeof(*t));

    snprintf(t->reqid, sizeof(t->reqid), "req_%024lld", (long long) i);
    snprintf(t->meta, sizeof(t->meta),
             "{\"n\":%lld,\"route\":\"/v1/run\",\"token\":\"[REDACTED]\"}",
             (long long) i);

    r->seq = i;

    /* one second apart, and every 97th row 2 s early (clock jitter) */
    r->ts = T0 + i * SECOND - (i % 97 == 0 ? 3 * SECOND : 0);

    r->request_id = str(t->reqid);
    r->tenant_id = TENANT;
    r->actor = str(i % 3 == 0 ? "key:0123456789ab" : "user:42");
    r->event_type = str(events[i % (sizeof(events) / sizeof(events[0]))]);
    r->outcome = str(i % 5 == 0 ? "failure" : "success");
    r->metadata = str(t->meta);
}


/* (re)computes the stored hashes of rows[from..to] */

static void
rechain(trow_t *rows, int64_t from, int64_t to)
{
    int64_t  i;
    uint8_t  prev[NX_AUDIT_HASH_LEN];

    if (from == 1) {
        assert_int_equal(nx_audit_genesis(chain_key, sizeof(chain_key),
                                          TENANT, prev), 0);
    } else {
        memcpy(prev, rows[from - 1].hash, sizeof(prev));
    }

    for (i = from; i <= to; i++) {
        assert_int_equal(nx_audit_chain_next(chain_key, sizeof(chain_key),
                                             prev, &rows[i].row,
                                             rows[i].hash), 0);
        memcpy(prev, rows[i].hash, sizeof(prev));
    }
}


/* the strings of a row point into its trow_t: copy them along */

static void
copy_rows(void)
{
    int64_t  i;

    for (i = 1; i <= NROWS; i++) {
        work[i] = base[i];
        work[i].row.request_id.data = work[i].reqid;
        work[i].row.metadata.data = work[i].meta;
    }
}


static void
make_ckpt(nx_audit_checkpoint_t *c, const trow_t *rows, int64_t seq)
{
    memset(c, 0, sizeof(*c));
    c->tenant_id = TENANT;
    c->seq = seq;
    c->count = seq;
    c->ts = T0 + (seq + 10) * SECOND;

    if (seq == 0) {
        assert_int_equal(nx_audit_genesis(chain_key, sizeof(chain_key),
                                          TENANT, c->hash), 0);
    } else {
        memcpy(c->hash, rows[seq].hash, NX_AUDIT_HASH_LEN);
    }

    assert_int_equal(nx_audit_checkpoint_sign(ckpt_key, sizeof(ckpt_key), c,
                                              c->mac), 0);
}


static void
conf_init(nx_audit_verify_conf_t *conf, const nx_audit_checkpoint_t *start,
    const nx_audit_checkpoint_t *latest)
{
    memset(conf, 0, sizeof(*conf));
    conf->chain_key = chain_key;
    conf->chain_key_len = sizeof(chain_key);
    conf->ckpt_key = ckpt_key;
    conf->ckpt_key_len = sizeof(ckpt_key);
    conf->tenant_id = TENANT;
    conf->start = start;
    conf->latest = latest;
    conf->ts_tolerance = TOLERANCE;
}


/* feeds rows[order[0..n)] (or rows[first..last] when order is NULL) */

static nx_audit_status_t
run(nx_audit_verify_t *v, const nx_audit_verify_conf_t *conf,
    const trow_t *rows, const int64_t *order, int64_t first, int64_t last)
{
    int64_t  i, k;

    (void) nx_audit_verify_init(v, conf);

    if (order != NULL) {
        for (k = 0; k < last; k++) {
            i = order[k];
            (void) nx_audit_verify_row(v, &rows[i].row, rows[i].hash);
        }

    } else {
        for (i = first; i <= last; i++) {
            (void) nx_audit_verify_row(v, &rows[i].row, rows[i].hash);
        }
    }

    return nx_audit_verify_end(v);
}


/* runs work[1..NROWS] against a checkpoint at NROWS */

static nx_audit_status_t
run_work(nx_audit_verify_t *v)
{
    nx_audit_checkpoint_t   c;
    nx_audit_verify_conf_t  conf;

    make_ckpt(&c, base, NROWS);
    conf_init(&conf, NULL, &c);

    return run(v, &conf, work, NULL, 1, NROWS);
}


static void
expect(const nx_audit_verify_t *v, nx_audit_status_t st, int64_t seq,
    const char *msg)
{
    if (v->status != st || v->seq != seq
        || (msg != NULL && strcmp(v->msg, msg) != 0))
    {
        print_error("expected %s at %lld, got %s at %lld: %s\n",
                    nx_audit_status_name(st), (long long) seq,
                    nx_audit_status_name(v->status), (long long) v->seq,
                    v->msg);
        fail();
    }
}


static int
setup(void **state)
{
    int64_t  i;
    uint8_t  master[32];

    (void) state;

    for (i = 0; i < 32; i++) {
        master[i] = (uint8_t) (0xa0 + i);
    }

    if (nx_audit_derive_keys(master, sizeof(master), chain_key, ckpt_key)
        != 0)
    {
        return -1;
    }

    for (i = 1; i <= NROWS; i++) {
        make_row(&base[i], i);
    }

    rechain(base, 1, NROWS);

    for (i = 1; i <= NROWS; i++) {
        base[i].row.request_id.data = base[i].reqid;
        base[i].row.metadata.data = base[i].meta;
    }

    return 0;
}


/* redaction */

static void
test_redact_basic(void **state)
{
    (void) state;

    REDACT("{}", "{}");
    REDACT(" { } ", "{}");
    REDACT("{\"a\":1,\"token\":\"abc\",\"b\":\"x\"}",
           "{\"a\":1,\"token\":\"[REDACTED]\",\"b\":\"x\"}");
    REDACT("{\"api_key\":\"nx_0123\",\"authorization\":\"Bearer x\","
           "\"token\":\"t\",\"secret\":\"s\",\"password\":\"p\","
           "\"text\":\"hello\",\"content\":\"world\",\"tenant\":3}",
           "{\"api_key\":\"[REDACTED]\",\"authorization\":\"[REDACTED]\","
           "\"token\":\"[REDACTED]\",\"secret\":\"[REDACTED]\","
           "\"password\":\"[REDACTED]\",\"text\":\"[REDACTED]\","
           "\"content\":\"[REDACTED]\",\"tenant\":3}");
}


static void
test_redact_depth(void **state)
{
    (void) state;

    REDACT("{\"a\":{\"b\":{\"c\":{\"d\":{\"password\":\"p\",\"e\":5}}}}}",
           "{\"a\":{\"b\":{\"c\":{\"d\":{\"password\":\"[REDACTED]\","
           "\"e\":5}}}}}");

    /* arrays of objects, arrays of arrays of objects */
    REDACT("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
           "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
           "\"text\":\"yo\"}]}]}",
           "{\"messages\":[{\"role\":\"user\",\"content\":\"[REDACTED]\"},"
           "{\"role\":\"assistant\",\"content\":\"[REDACTED]\"}]}");
    REDACT("{\"x\":[[{\"secret\":1}],[],[[{\"ok\":true,\"token\":null}]]]}",
           "{\"x\":[[{\"secret\":\"[REDACTED]\"}],[],[[{\"ok\":true,"
           "\"token\":\"[REDACTED]\"}]]]}");

    /* 32 levels are fine, the deepest member redacted */
    REDACT("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"token\":\"t\"}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}",
           "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
           "{\"token\":\"[REDACTED]\"}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}");
}


static void
test_redact_case(void **state)
{
    (void) state;

    REDACT("{\"API_KEY\":1,\"Authorization\":2,\"ToKeN\":3,\"SECRET\":4,"
           "\"Password\":5,\"TEXT\":6,\"Content\":7}",
           "{\"API_KEY\":\"[REDACTED]\",\"Authorization\":\"[REDACTED]\","
           "\"ToKeN\":\"[REDACTED]\",\"SECRET\":\"[REDACTED]\","
           "\"Password\":\"[REDACTED]\",\"TEXT\":\"[REDACTED]\","
           "\"Content\":\"[REDACTED]\"}");

    /* header spellings */
    REDACT("{\"X-Api-Key\":\"k\",\"Proxy-Authorization\":\"b\","
           "\"Set-Cookie\":\"s\",\"X-Auth-Token\":\"t\"}",
           "{\"X-Api-Key\":\"[REDACTED]\","
           "\"Proxy-Authorization\":\"[REDACTED]\","
           "\"Set-Cookie\":\"[REDACTED]\",\"X-Auth-Token\":\"[REDACTED]\"}");
}


static void
test_redact_names(void **state)
{
    size_t  i;

    static const char  *yes[] = {
        "api_key", "apikey", "apiKey", "x_api_key", "api-key",
        "authorization", "proxy_authorization", "token", "access_token",
        "refresh_token", "accessToken", "csrftoken", "secret",
        "client_secret", "clientSecret", "password", "db_password",
        "new-password", "text", "prompt_text", "TEXT", "content",
        "message_content", "private_key", "privateKey", "cookie",
        "set-cookie"
    };

    static const char  *no[] = {
        "", "tokens", "token_count", "prompt_tokens", "max_tokens",
        "secrets_count", "password_changed_at", "context", "content_type",
        "content-length", "pretext", "texts", "subtext", "contents",
        "key", "key_prefix", "api_key_id", "keys", "tenant", "request_id",
        "actor", "tok", "en", "toke", "passwords", "Authorizations"
    };

    (void) state;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!nx_audit_sensitive_name(yes[i], strlen(yes[i]))) {
            print_error("%s should be sensitive\n", yes[i]);
            fail();
        }
    }

    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (nx_audit_sensitive_name(no[i], strlen(no[i]))) {
            print_error("%s should not be sensitive\n", no[i]);
            fail();
        }
    }

    /* only len bytes are looked at */
    assert_int_equal(nx_audit_sensitive_name("tokens", 5), 1);
    assert_int_equal(nx_audit_sensitive_name("token", 4), 0);
    assert_int_equal(nx_audit_sensitive_name(NULL, 0), 0);
}


static void
test_redact_value_types(void **state)
{
    (void) state;

    /* whatever the value, it goes, and nothing inside it is kept */
    REDACT("{\"token\":{\"a\":1,\"b\":[2]},\"secret\":[1,{\"x\":2}],"
           "\"password\":null,\"text\":12.5,\"content\":false,"
           "\"api_key\":\"\"}",
           "{\"token\":\"[REDACTED]\",\"secret\":\"[REDACTED]\","
           "\"password\":\"[REDACTED]\",\"text\":\"[REDACTED]\","
           "\"content\":\"[REDACTED]\",\"api_key\":\"[REDACTED]\"}");
}


static void
test_redact_intact(void **state)
{
    (void) state;

    /* numbers exactly as written, every type kept */
    REDACT("{\"i\":-0,\"f\":1.50,\"e\":1E+3,\"big\":"
           "123456789012345678901234567890,\"huge\":1e999,\"t\":true,"
           "\"f2\":false,\"n\":null,\"s\":\"x\",\"a\":[],\"o\":{},"
           "\"token_count\":17,\"key_prefix\":\"0123456789ab\"}",
           "{\"i\":-0,\"f\":1.50,\"e\":1E+3,\"big\":"
           "123456789012345678901234567890,\"huge\":1e999,\"t\":true,"
           "\"f2\":false,\"n\":null,\"s\":\"x\",\"a\":[],\"o\":{},"
           "\"token_count\":17,\"key_prefix\":\"0123456789ab\"}");

    /* duplicate members are all kept, in order, each redacted */
    REDACT("{\"a\":1,\"token\":\"x\",\"a\":2,\"Token\":\"y\"}",
           "{\"a\":1,\"token\":\"[REDACTED]\",\"a\":2,"
           "\"Token\":\"[REDACTED]\"}");
}


static void
test_redact_deterministic(void **state)
{
    size_t       i, n1, n2;
    char         a[512], b[512];
    const char  *out;

    static const char  *same[] = {
        "{\"a\":[1,2,{\"token\":\"x\"}],\"b\":\"\\u00e9\"}",
        " {\n\t\"a\" : [ 1 , 2 , { \"token\" : \"y\" } ] ,\r\n"
        " \"b\":\"\xc3\xa9\" } ",
        "{\"a\":[1,2,{\"token\":{\"deep\":[1,2,3]}}],\"\\u0062\":\"\\u00E9\"}"
    };

    (void) state;

    out = redact_ok(same[0]);
    strcpy(a, out);
    assert_string_equal(a, "{\"a\":[1,2,{\"token\":\"[REDACTED]\"}],"
                           "\"b\":\"\xc3\xa9\"}");

    for (i = 1; i < sizeof(same) / sizeof(same[0]); i++) {
        assert_string_equal(redact_ok(same[i]), a);
    }

    /* twice the same output, and the output is a fixed point */
    assert_int_equal(nx_audit_redact(a, strlen(a), b, sizeof(b), &n1), 0);
    assert_string_equal(a, b);
    assert_int_equal(nx_audit_redact(b, n1, a, sizeof(a), &n2), 0);
    assert_int_equal(n1, n2);
    assert_string_equal(a, b);
}


static void
test_redact_escaping(void **state)
{
    size_t       n;
    char         again[256];
    const char  *out;

    (void) state;

    /* minimal escapes; "\/" and "\u" forms decoded */
    REDACT("{\"q\":\"a\\\"b\\\\c\\/d\\n\\t\\u0001\\u001f\x7f\"}",
           "{\"q\":\"a\\\"b\\\\c/d\\u000a\\u0009\\u0001\\u001f\x7f\"}");
    REDACT("{\"e\":\"\\ud83d\\ude00 \\u00e9\\u20ac\"}",
           "{\"e\":\"\xf0\x9f\x98\x80 \xc3\xa9\xe2\x82\xac\"}");

    /* member names are escaped too, and matched after decoding */
    REDACT("{\"a\\\"b\":1,\"\\u0074oken\":\"t\",\"x\\ny\":2}",
           "{\"a\\\"b\":1,\"token\":\"[REDACTED]\",\"x\\u000ay\":2}");

    /* UTF-8 that is not well formed is not JSON: refused, never mangled */
    assert_int_equal(nx_audit_redact("{\"s\":\"a\xc0\x80z\"}", 12, again,
                                     sizeof(again), &n), -1);
    assert_int_equal(nx_audit_redact("{\"t\":\"\xed\xa0\x80\"}", 11, again,
                                     sizeof(again), &n), -1);

    /* a lone surrogate decodes to U+FFFD */
    out = redact_ok("{\"s\":\"\\udc00\"}");
    assert_string_equal(out, "{\"s\":\"\xef\xbf\xbd\"}");
}


static void
test_redact_errors(void **state)
{
    char  out[64];

    (void) state;

    REDACT_BAD("");
    REDACT_BAD("   ");
    REDACT_BAD("[]");
    REDACT_BAD("[{\"token\":1}]");
    REDACT_BAD("\"token\"");
    REDACT_BAD("42");
    REDACT_BAD("null");
    REDACT_BAD("{");
    REDACT_BAD("{\"a\":}");
    REDACT_BAD("{\"a\":1}x");
    REDACT_BAD("{\"a\":1}{}");
    REDACT_BAD("{'a':1}");
    REDACT_BAD("{\"a\":1 /* c */}");
    REDACT_BAD("{\"a\":\"x\\u0000y\"}");
    REDACT_BAD("{\"a\":\"x\0y\"}");
    REDACT_BAD("{\"a\":01}");
    REDACT_BAD("{\"a\":\"\xff\"}");

    /* 33 levels */
    REDACT_BAD("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
               "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
               "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
               "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
               "{}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}");

    redact_bad(NULL, 0);
    redact_bad(NULL, 5);

    assert_int_equal(nx_audit_redact("{}", 2, out, sizeof(out), NULL), -1);
}


static void
test_redact_buffer(void **state)
{
    size_t       n, need;
    char         out[64];
    const char  *in = "{\"token\":1,\"a\":\"b\"}";
    const char  *expect = "{\"token\":\"[REDACTED]\",\"a\":\"b\"}";

    (void) state;

    /* size query */
    need = 0;
    assert_int_equal(nx_audit_redact(in, strlen(in), NULL, 0, &need), -1);
    assert_int_equal(need, strlen(expect));

    /* no room for the NUL */
    memset(out, 'x', sizeof(out));
    assert_int_equal(nx_audit_redact(in, strlen(in), out, need, &n), -1);
    assert_int_equal(n, need);
    assert_int_equal(out[0], '\0');

    assert_int_equal(nx_audit_redact(in, strlen(in), out, 1, &n), -1);
    assert_int_equal(n, need);

    /* exactly enough */
    memset(out, 'x', sizeof(out));
    assert_int_equal(nx_audit_redact(in, strlen(in), out, need + 1, &n), 0);
    assert_int_equal(n, need);
    assert_string_equal(out, expect);
    assert_int_equal(out[need + 1], 'x');

    /* the input need not be NUL-terminated */
    assert_int_equal(nx_audit_redact("{}garbage", 2, out, sizeof(out), &n),
                     0);
    assert_string_equal(out, "{}");
}


/* canonical encoding */

static void
test_canonical_layout(void **state)
{
    size_t          n;
    unsigned char   buf[128];
    nx_audit_row_t  r;

    static const unsigned char  expect[] =
        "NXAUDIT1"
        "\x00\x00\x00\x00\x00\x00\x00\x01"
        "\xff\xff\xff\xff\xff\xff\xff\xfe"
        "\x00\x00\x00\x01" "r"
        "\x00\x00\x00\x00\x00\x00\x01\x03"
        "\x00\x00\x00\x02" "ab"
        "\x00\x00\x00\x00"
        "\x00\x00\x00\x01" "o"
        "\x00\x00\x00\x02" "{}";

    (void) state;

    memset(&r, 0, sizeof(r));
    r.seq = 1;
    r.ts = -2;
    r.request_id = str("r");
    r.tenant_id = 259;
    r.actor = str("ab");
    r.event_type.data = NULL;
    r.event_type.len = 0;
    r.outcome = str("o");
    r.metadata = str("{}");

    assert_int_equal(nx_audit_canonical(&r, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, sizeof(expect) - 1);
    assert_memory_equal(buf, expect, n);

    /* NULL and empty strings encode alike */
    r.event_type = str("");
    assert_int_equal(nx_audit_canonical(&r, buf, sizeof(buf), &n), 0);
    assert_memory_equal(buf, expect, n);
}


static void
encode(const nx_audit_row_t *r, unsigned char *buf, size_t *n)
{
    assert_int_equal(nx_audit_canonical(r, buf, 512, n), 0);
}


static void
test_canonical_unambiguous(void **state)
{
    size_t           i, j, k, na, nb, ncut;
    const char      *full = "a|b|c";
    unsigned char    a[512], b[512];
    unsigned char    enc[6][512];
    size_t           len[6];
    nx_audit_row_t   r, t;
    nx_audit_str_t  *f[5];

    (void) state;

    memset(&r, 0, sizeof(r));
    r.seq = 5;
    r.ts = 6;
    r.tenant_id = 7;

    /* "a|b" + "c" against "a" + "b|c" */
    t = r;
    t.actor = str("a|b");
    t.event_type = str("c");
    encode(&t, a, &na);
    t.actor = str("a");
    t.event_type = str("b|c");
    encode(&t, b, &nb);
    assert_int_equal(na, nb);
    assert_true(memcmp(a, b, na) != 0);

    /* the same bytes cut at every place between two adjacent fields */
    f[0] = &t.request_id;
    f[1] = &t.actor;
    f[2] = &t.event_type;
    f[3] = &t.outcome;
    f[4] = &t.metadata;

    for (k = 0; k < 4; k++) {
        for (ncut = 0; ncut <= strlen(full); ncut++) {
            t = r;
            f[k]->data = full;
            f[k]->len = ncut;
            f[k + 1]->data = full + ncut;
            f[k + 1]->len = strlen(full) - ncut;
            encode(&t, enc[ncut], &len[ncut]);
        }

        for (i = 0; i <= strlen(full); i++) {
            for (j = i + 1; j <= strlen(full); j++) {
                assert_int_equal(len[i], len[j]);
                assert_true(memcmp(enc[i], enc[j], len[i]) != 0);
            }
        }
    }

    /* the integers are fixed-width: seq 1 ts 23 against seq 12 ts 3 */
    t = r;
    t.seq = 1;
    t.ts = 23;
    encode(&t, a, &na);
    t.seq = 12;
    t.ts = 3;
    encode(&t, b, &nb);
    assert_true(na != nb || memcmp(a, b, na) != 0);

    /* a string's bytes cannot pass for a length prefix */
    t = r;
    t.actor.data = "\0\0\0\0";
    t.actor.len = 4;
    encode(&t, a, &na);
    t = r;
    t.event_type.data = "\0\0\0\0";
    t.event_type.len = 4;
    encode(&t, b, &nb);
    assert_true(memcmp(a, b, na) != 0);
}


static void
test_canonical_buffer(void **state)
{
    size_t          n, need;
    unsigned char   buf[256];
    nx_audit_row_t  r;

    (void) state;

    r = base[1].row;

    need = 0;
    assert_int_equal(nx_audit_canonical(&r, NULL, 0, &need), -1);
    assert_true(need > 8);

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(nx_audit_canonical(&r, buf, need - 1, &n), -1);
    assert_int_equal(n, need);
    assert_int_equal(buf[0], 'x');

    assert_int_equal(nx_audit_canonical(&r, buf, need, &n), 0);
    assert_int_equal(n, need);
    assert_int_equal(buf[need], 'x');

    /* a string with no data, or too long to encode: not even read */
    r.actor.data = NULL;
    r.actor.len = 3;
    assert_int_equal(nx_audit_canonical(&r, buf, sizeof(buf), &n), -1);
    assert_int_equal(n, 0);

    r.actor.data = "x";
    r.actor.len = (size_t) UINT32_MAX + 1;
    assert_int_equal(nx_audit_canonical(&r, buf, sizeof(buf), &n), -1);
    assert_int_equal(n, 0);

    assert_int_equal(nx_audit_canonical(NULL, buf, sizeof(buf), &n), -1);
    assert_int_equal(nx_audit_canonical(&base[1].row, buf, sizeof(buf), NULL),
                     -1);
}


/* the chain */

static void
test_chain_matches_hmac(void **state)
{
    size_t          n;
    unsigned int    mdlen;
    unsigned char   in[512], md[32];
    uint8_t         h[NX_AUDIT_HASH_LEN], prev[NX_AUDIT_HASH_LEN];
    int64_t         i;

    static const unsigned char  genesis[] =
        "nexus-audit-genesis" "\x00\x00\x00\x00\x00\x00\x00\x07";

    (void) state;

    /* hash_0 */
    assert_int_equal(nx_audit_genesis(chain_key, sizeof(chain_key), TENANT,
                                      h), 0);
    assert_non_null(HMAC(EVP_sha256(), chain_key, sizeof(chain_key), genesis,
                         sizeof(genesis) - 1, md, &mdlen));
    assert_memory_equal(h, md, 32);
    memcpy(prev, h, 32);

    /* hash_n = HMAC(key, hash_{n-1} || canonical(row_n)) */
    for (i = 1; i <= 50; i++) {
        memcpy(in, prev, 32);
        assert_int_equal(nx_audit_canonical(&base[i].row, in + 32,
                                            sizeof(in) - 32, &n), 0);
        assert_non_null(HMAC(EVP_sha256(), chain_key, sizeof(chain_key), in,
                             32 + n, md, &mdlen));
        assert_memory_equal(base[i].hash, md, 32);

        assert_int_equal(nx_audit_chain_next(chain_key, sizeof(chain_key),
                                             prev, &base[i].row, h), 0);
        assert_memory_equal(h, md, 32);
        memcpy(prev, h, 32);
    }

    /* each tenant starts elsewhere */
    assert_int_equal(nx_audit_genesis(chain_key, sizeof(chain_key),
                                      TENANT + 1, h), 0);
    assert_int_equal(nx_audit_genesis(chain_key, sizeof(chain_key), TENANT,
                                      prev), 0);
    assert_true(memcmp(h, prev, 32) != 0);

    /* short keys and missing arguments are refused */
    assert_int_equal(nx_audit_genesis(chain_key, 31, TENANT, h), -1);
    assert_int_equal(nx_audit_genesis(NULL, 32, TENANT, h), -1);
    assert_int_equal(nx_audit_chain_next(chain_key, 31, prev, &base[1].row,
                                         h), -1);
    assert_int_equal(nx_audit_chain_next(chain_key, 32, NULL, &base[1].row,
                                         h), -1);
    assert_int_equal(nx_audit_chain_next(chain_key, 32, prev, NULL, h), -1);
}


/* keys */

static void
test_hkdf_rfc5869(void **state)
{
    uint8_t  ikm[80], salt[80], info[80], okm[82], expect[82];
    size_t   i;

    (void) state;

    /* test case 1 */
    memset(ikm, 0x0b, 22);
    for (i = 0; i < 13; i++) {
        salt[i] = (uint8_t) i;
    }

    for (i = 0; i < 10; i++) {
        info[i] = (uint8_t) (0xf0 + i);
    }

    hex_decode("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4"
               "c5bf34007208d5b887185865", expect);
    assert_int_equal(nx_audit_hkdf_sha256(salt, 13, ikm, 22, info, 10, okm,
                                          42), 0);
    assert_memory_equal(okm, expect, 42);

    /* test case 2: longer inputs, output beyond one block */
    for (i = 0; i < 80; i++) {
        ikm[i] = (uint8_t) i;
        salt[i] = (uint8_t) (0x60 + i);
        info[i] = (uint8_t) (0xb0 + i);
    }

    hex_decode("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19af"
               "a97c59045a99cac7827271cb41c65e590e09da3275600c2f09b836779"
               "3a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87", expect);
    assert_int_equal(nx_audit_hkdf_sha256(salt, 80, ikm, 80, info, 80, okm,
                                          82), 0);
    assert_memory_equal(okm, expect, 82);

    /* test case 3: no salt, no info */
    memset(ikm, 0x0b, 22);
    hex_decode("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c73"
               "8d2d9d201395faa4b61a96c8", expect);
    assert_int_equal(nx_audit_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, okm, 42),
                     0);
    assert_memory_equal(okm, expect, 42);

    assert_int_equal(nx_audit_hkdf_sha256(NULL, 0, NULL, 0, NULL, 0, okm, 42),
                     -1);
    assert_int_equal(nx_audit_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, okm, 0),
                     -1);
    assert_int_equal(nx_audit_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, okm,
                                          255 * 32 + 1), -1);
}


static void
test_derive_keys(void **state)
{
    uint8_t  master[64], a[32], b[32], c[32], d[32];

    (void) state;

    memset(master, 0x42, sizeof(master));

    assert_int_equal(nx_audit_derive_keys(master, 32, a, b), 0);
    assert_true(memcmp(a, b, 32) != 0);

    /* deterministic, and exactly HKDF with the documented labels */
    assert_int_equal(nx_audit_derive_keys(master, 32, c, d), 0);
    assert_memory_equal(a, c, 32);
    assert_memory_equal(b, d, 32);

    assert_int_equal(nx_audit_hkdf_sha256(NULL, 0, master, 32,
                                          (const uint8_t *) "nexus audit chain",
                                          17, c, 32), 0);
    assert_memory_equal(a, c, 32);
    assert_int_equal(nx_audit_hkdf_sha256(NULL, 0, master, 32,
                                          (const uint8_t *)
                                          "nexus audit checkpoint", 22, d, 32),
                     0);
    assert_memory_equal(b, d, 32);

    /* another master, other keys */
    assert_int_equal(nx_audit_derive_keys(master, 64, c, d), 0);
    assert_true(memcmp(a, c, 32) != 0);

    /* a short master is refused and nothing is left behind */
    memset(c, 0x55, 32);
    memset(d, 0x55, 32);
    assert_int_equal(nx_audit_derive_keys(master, 31, c, d), -1);
    memset(a, 0, 32);
    assert_memory_equal(c, a, 32);
    assert_memory_equal(d, a, 32);
    assert_int_equal(nx_audit_derive_keys(NULL, 32, c, d), -1);
}


/* checkpoints */

static void
test_checkpoint(void **state)
{
    size_t                  i;
    nx_audit_checkpoint_t   c, t;
    unsigned char          *p;

    (void) state;

    make_ckpt(&c, base, 500);
    assert_int_equal(nx_audit_checkpoint_verify(ckpt_key, 32, &c), 0);

    /* any byte of any field, the MAC included (no padding) */
    assert_int_equal(sizeof(c), 4 * sizeof(int64_t) + 2 * 32);

    for (i = 0; i < sizeof(c); i++) {
        t = c;
        p = (unsigned char *) &t;
        p[i] ^= 0x01;
        assert_int_equal(nx_audit_checkpoint_verify(ckpt_key, 32, &t), -1);
    }

    /* the chain key is not the checkpoint key */
    assert_int_equal(nx_audit_checkpoint_verify(chain_key, 32, &c), -1);

    t = c;
    assert_int_equal(nx_audit_checkpoint_sign(chain_key, 32, &t, t.mac), 0);
    assert_int_equal(nx_audit_checkpoint_verify(ckpt_key, 32, &t), -1);

    assert_int_equal(nx_audit_checkpoint_verify(ckpt_key, 31, &c), -1);
    assert_int_equal(nx_audit_checkpoint_verify(ckpt_key, 32, NULL), -1);
}


/* the verifier */

static void
test_verify_clean(void **state)
{
    int64_t                 i;
    nx_audit_verify_t       v;
    nx_audit_checkpoint_t   c, s;
    nx_audit_verify_conf_t  conf;

    (void) state;

    make_ckpt(&c, base, NROWS);
    conf_init(&conf, NULL, &c);
    assert_int_equal(nx_audit_verify_init(&v, &conf), NX_AUDIT_OK);

    for (i = 1; i <= NROWS; i++) {
        assert_int_equal(nx_audit_verify_row(&v, &base[i].row, base[i].hash),
                         NX_AUDIT_OK);
    }

    assert_int_equal(nx_audit_verify_end(&v), NX_AUDIT_OK);
    assert_int_equal(v.rows, NROWS);
    assert_int_equal(v.problems, 0);
    assert_string_equal(v.msg, "");

    /* rows after the checkpoint are fine */
    make_ckpt(&c, base, 800);
    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS), NX_AUDIT_OK);

    /* no checkpoint yet, or one of the empty chain */
    conf_init(&conf, NULL, NULL);
    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS), NX_AUDIT_OK);
    make_ckpt(&c, base, 0);
    conf_init(&conf, NULL, &c);
    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS), NX_AUDIT_OK);
    assert_int_equal(run(&v, &conf, base, NULL, 1, 0), NX_AUDIT_OK);

    /* pruned up to a start checkpoint */
    make_ckpt(&s, base, 400);
    make_ckpt(&c, base, NROWS);
    conf_init(&conf, &s, &c);
    assert_int_equal(run(&v, &conf, base, NULL, 401, NROWS), NX_AUDIT_OK);
    assert_int_equal(v.rows, NROWS - 400);

    /* jitter within the tolerance only */
    conf_init(&conf, NULL, &c);
    conf.ts_tolerance = 0;
    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS),
                     NX_AUDIT_RESTAMPED);
    expect(&v, NX_AUDIT_RESTAMPED, 97, "row 97 was restamped: its time is "
           "2000000 us before row 96's");
    assert_int_equal(v.problems, NROWS / 97);
}


static void
test_verify_edit(void **state)
{
    int                     i;
    nx_audit_verify_t       v;
    nx_audit_verify_conf_t  conf;

    (void) state;

    for (i = 0; i < 8; i++) {
        copy_rows();

        switch (i) {
        case 0:
            work[42].row.actor = str("user:43");
            break;
        case 1:
            work[42].meta[5] = '9';
            break;
        case 2:
            work[42].row.event_type = str("auth.access.failure");
            break;
        case 3:
            work[42].row.outcome = str("denied");
            break;
        case 4:
            work[42].reqid[4] = 'X';
            break;
        case 5:
            work[42].row.tenant_id = TENANT + 1;
            break;
        case 6:
            /* a restamp within the tolerance cannot be told apart */
            work[42].row.ts += 1;
            break;
        default:
            work[42].row.metadata.len--;
            break;
        }

        assert_int_equal(run_work(&v), NX_AUDIT_EDITED);
        expect(&v, NX_AUDIT_EDITED, 42,
               "row 42 was edited: stored hash does not match its content");
        assert_int_equal(v.problems, 1);
    }

    /* the stored hash edited instead: the next row is still fine */
    copy_rows();
    work[42].hash[0] ^= 1;
    assert_int_equal(run_work(&v), NX_AUDIT_EDITED);
    expect(&v, NX_AUDIT_EDITED, 42,
           "row 42 was edited: its stored hash was altered");
    assert_int_equal(v.problems, 1);

    /* ... unless the row was edited as well */
    work[42].row.outcome = str("x");
    assert_int_equal(run_work(&v), NX_AUDIT_EDITED);
    expect(&v, NX_AUDIT_EDITED, 42,
           "row 42 was edited: stored hash does not match its content");
    assert_int_equal(v.problems, 2);

    /* each verify_row call says which row failed */
    copy_rows();
    work[700].row.actor = str("root");
    conf_init(&conf, NULL, NULL);
    assert_int_equal(nx_audit_verify_init(&v, &conf), NX_AUDIT_OK);

    for (i = 1; i <= NROWS; i++) {
        assert_int_equal(nx_audit_verify_row(&v, &work[i].row, work[i].hash),
                         i == 700 ? NX_AUDIT_EDITED : NX_AUDIT_OK);
    }

    /* two edits: the first is reported, both counted */
    copy_rows();
    work[10].row.actor = str("x");
    work[20].row.actor = str("y");
    assert_int_equal(run_work(&v), NX_AUDIT_EDITED);
    expect(&v, NX_AUDIT_EDITED, 10, NULL);
    assert_int_equal(v.problems, 2);
}


static void
test_verify_delete(void **state)
{
    int64_t                 i, n, order[NROWS];
    nx_audit_verify_t       v;
    nx_audit_verify_conf_t  conf;
    nx_audit_checkpoint_t   c;

    (void) state;

    make_ckpt(&c, base, NROWS);
    conf_init(&conf, NULL, &c);

    /* one row */
    for (i = 1, n = 0; i <= NROWS; i++) {
        if (i != 500) {
            order[n++] = i;
        }
    }

    assert_int_equal(run(&v, &conf, base, order, 0, n), NX_AUDIT_DELETED);
    expect(&v, NX_AUDIT_DELETED, 500, "row 500 is missing: it was deleted");
    assert_int_equal(v.problems, 1);

    /* a run of rows */
    for (i = 1, n = 0; i <= NROWS; i++) {
        if (i < 500 || i > 509) {
            order[n++] = i;
        }
    }

    assert_int_equal(run(&v, &conf, base, order, 0, n), NX_AUDIT_DELETED);
    expect(&v, NX_AUDIT_DELETED, 500,
           "rows 500 to 509 are missing: they were deleted");

    /* the first rows */
    assert_int_equal(run(&v, &conf, base, NULL, 2, NROWS), NX_AUDIT_DELETED);
    expect(&v, NX_AUDIT_DELETED, 1, "row 1 is missing: it was deleted");
    assert_int_equal(run(&v, &conf, base, NULL, 401, NROWS),
                     NX_AUDIT_DELETED);
    expect(&v, NX_AUDIT_DELETED, 1,
           "rows 1 to 400 are missing: they were deleted");

    /* a deletion hidden by renumbering the later rows: an edit */
    copy_rows();
    for (i = 500; i < NROWS; i++) {
        work[i] = base[i + 1];
        work[i].row.request_id.data = work[i].reqid;
        work[i].row.metadata.data = work[i].meta;
        work[i].row.seq = i;
    }

    assert_int_equal(run(&v, &conf, work, NULL, 1, NROWS - 1),
                     NX_AUDIT_EDITED);
    expect(&v, NX_AUDIT_EDITED, 500, NULL);
}


static void
test_verify_reorder(void **state)
{
    int64_t                 i, n, order[NROWS + 1];
    nx_audit_verify_t       v;
    nx_audit_verify_conf_t  conf;
    nx_audit_checkpoint_t   c;

    (void) state;

    make_ckpt(&c, base, NROWS);
    conf_init(&conf, NULL, &c);

    /* rows 500 and 501 come in the wrong order */
    for (i = 1; i <= NROWS; i++) {
        order[i - 1] = i == 500 ? 501 : i == 501 ? 500 : i;
    }

    assert_int_equal(run(&v, &conf, base, order, 0, NROWS),
                     NX_AUDIT_REORDERED);
    expect(&v, NX_AUDIT_REORDERED, 500,
           "row 500 comes after row 501: rows out of order");
    assert_int_equal(v.problems, 1);

    /* a row repeated */
    for (i = 1, n = 0; i <= NROWS; i++) {
        order[n++] = i;
        if (i == 300) {
            order[n++] = i;
        }
    }

    assert_int_equal(run(&v, &conf, base, order, 0, n), NX_AUDIT_REORDERED);
    expect(&v, NX_AUDIT_REORDERED, 300, "row 300 appears twice");
    assert_int_equal(v.problems, 1);

    /* a step back */
    for (i = 1, n = 0; i <= NROWS; i++) {
        order[n++] = i;
        if (i == 300) {
            order[n++] = 200;
        }
    }

    assert_int_equal(run(&v, &conf, base, order, 0, n), NX_AUDIT_REORDERED);
    expect(&v, NX_AUDIT_REORDERED, 200, "row 200 comes after row 300");

    /* two rows that exchanged their seqs in the table */
    copy_rows();
    work[500] = base[501];
    work[500].row.request_id.data = work[500].reqid;
    work[500].row.metadata.data = work[500].meta;
    work[500].row.seq = 500;
    work[501] = base[500];
    work[501].row.request_id.data = work[501].reqid;
    work[501].row.metadata.data = work[501].meta;
    work[501].row.seq = 501;

    assert_int_equal(run_work(&v), NX_AUDIT_REORDERED);
    expect(&v, NX_AUDIT_REORDERED, 500, "rows 500 and 501 were swapped");
    assert_int_equal(v.problems, 1);
}


static void
test_verify_truncate(void **state)
{
    int64_t                 i, n, order[NROWS];
    nx_audit_verify_t       v;
    nx_audit_verify_conf_t  conf;
    nx_audit_checkpoint_t   c;
    char                    meta[NROWS + 1][8];

    (void) state;

    make_ckpt(&c, base, NROWS);
    conf_init(&conf, NULL, &c);

    /* the tail dropped */
    assert_int_equal(run(&v, &conf, base, NULL, 1, 900), NX_AUDIT_TRUNCATED);
    expect(&v, NX_AUDIT_TRUNCATED, 901, "the log ends at row 900 but the "
           "checkpoint covers rows through 1000: 100 rows were truncated");
    assert_int_equal(v.problems, 1);

    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS - 1),
                     NX_AUDIT_TRUNCATED);
    expect(&v, NX_AUDIT_TRUNCATED, NROWS, NULL);

    /* everything dropped */
    assert_int_equal(run(&v, &conf, base, NULL, 1, 0), NX_AUDIT_TRUNCATED);
    expect(&v, NX_AUDIT_TRUNCATED, 1, NULL);

    /* cut back to 900 and rewritten by a holder of the chain key */
    copy_rows();
    for (i = 901; i <= NROWS; i++) {
        snprintf(meta[i], sizeof(meta[i]), "{}");
        work[i].row.metadata = str(meta[i]);
    }

    rechain(work, 901, NROWS);

    assert_int_equal(run(&v, &conf, work, NULL, 1, NROWS),
                     NX_AUDIT_TRUNCATED);
    expect(&v, NX_AUDIT_TRUNCATED, NROWS, "row 1000 does not match the "
           "checkpoint: the log was cut back and rewritten after it was "
           "signed");

    /* the checkpoint's own row deleted, later rows kept */
    make_ckpt(&c, base, 800);

    for (i = 1, n = 0; i <= NROWS; i++) {
        if (i != 800) {
            order[n++] = i;
        }
    }

    assert_int_equal(run(&v, &conf, base, order, 0, n), NX_AUDIT_DELETED);
    expect(&v, NX_AUDIT_DELETED, 800, NULL);
    assert_int_equal(v.problems, 2);
}


static void
test_verify_restamp(void **state)
{
    int64_t            i;
    nx_audit_verify_t  v;

    (void) state;

    /* an hour back */
    copy_rows();
    work[500].row.ts -= 3600 * SECOND;
    assert_int_equal(run_work(&v), NX_AUDIT_RESTAMPED);
    expect(&v, NX_AUDIT_RESTAMPED, 500, "row 500 was restamped: its time is "
           "3599000000 us before row 499's and its hash does not match");
    assert_int_equal(v.problems, 1);

    /* an hour ahead: seen at the next row */
    copy_rows();
    work[500].row.ts += 3600 * SECOND;
    assert_int_equal(run_work(&v), NX_AUDIT_RESTAMPED);
    expect(&v, NX_AUDIT_RESTAMPED, 500, "row 500 was restamped: its time is "
           "3599000000 us after row 501's and its hash does not match");
    assert_int_equal(v.problems, 1);

    /* the last row ahead: nothing after it to compare with */
    copy_rows();
    work[NROWS].row.ts += 3600 * SECOND;
    assert_int_equal(run_work(&v), NX_AUDIT_EDITED);
    expect(&v, NX_AUDIT_EDITED, NROWS, NULL);

    /* back, and the chain recomputed by a holder of the chain key */
    copy_rows();
    work[500].row.ts -= 3600 * SECOND;
    rechain(work, 500, NROWS);
    assert_int_equal(run_work(&v), NX_AUDIT_RESTAMPED);
    expect(&v, NX_AUDIT_RESTAMPED, 500, "row 500 was restamped: its time is "
           "3599000000 us before row 499's");
    assert_int_equal(v.problems, 2);

    /* all rows restamped by the same amount and rechained: only the
     * checkpoint tells */
    copy_rows();
    for (i = 1; i <= NROWS; i++) {
        work[i].row.ts += 60 * SECOND;
    }

    rechain(work, 1, NROWS);
    assert_int_equal(run_work(&v), NX_AUDIT_TRUNCATED);
    expect(&v, NX_AUDIT_TRUNCATED, NROWS, NULL);
}


static void
test_verify_checkpoint(void **state)
{
    nx_audit_verify_t       v;
    nx_audit_verify_conf_t  conf;
    nx_audit_checkpoint_t   c, s;

    (void) state;

    /* forged: a field changed without the key */
    make_ckpt(&c, base, NROWS);
    c.seq = 900;
    c.count = 900;
    memcpy(c.hash, base[900].hash, 32);
    conf_init(&conf, NULL, &c);
    assert_int_equal(nx_audit_verify_init(&v, &conf),
                     NX_AUDIT_BAD_CHECKPOINT);
    expect(&v, NX_AUDIT_BAD_CHECKPOINT, 900,
           "the checkpoint at row 900 has an invalid signature");

    /* the rows are still checked; the verdict stays the first problem */
    assert_int_equal(run(&v, &conf, base, NULL, 1, 900),
                     NX_AUDIT_BAD_CHECKPOINT);
    assert_int_equal(v.problems, 1);

    /* signed with the chain key */
    make_ckpt(&c, base, NROWS);
    assert_int_equal(nx_audit_checkpoint_sign(chain_key, 32, &c, c.mac), 0);
    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS),
                     NX_AUDIT_BAD_CHECKPOINT);

    /* another tenant's */
    make_ckpt(&c, base, NROWS);
    c.tenant_id = TENANT + 1;
    assert_int_equal(nx_audit_checkpoint_sign(ckpt_key, 32, &c, c.mac), 0);
    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS),
                     NX_AUDIT_BAD_CHECKPOINT);
    expect(&v, NX_AUDIT_BAD_CHECKPOINT, NROWS,
           "the checkpoint is for tenant 8, not 7");

    /* signed, but its count is wrong */
    make_ckpt(&c, base, NROWS);
    c.count = NROWS + 1;
    assert_int_equal(nx_audit_checkpoint_sign(ckpt_key, 32, &c, c.mac), 0);
    assert_int_equal(run(&v, &conf, base, NULL, 1, NROWS),
                     NX_AUDIT_BAD_CHECKPOINT);

    /* a forged start checkpoint */
    make_ckpt(&s, base, 400);
    make_ckpt(&c, base, NROWS);
    s.hash[3] ^= 1;
    conf_init(&conf, &s, &c);
    assert_int_equal(run(&v, &conf, base, NULL, 401, NROWS),
                     NX_AUDIT_BAD_CHECKPOINT);
    expect(&v, NX_AUDIT_BAD_CHECKPOINT, 400,
           "the start checkpoint at row 400 has an invalid signature");

    /* start and latest that disagree, or in the wrong order */
    make_ckpt(&s, base, 400);
    make_ckpt(&c, base, 300);
    assert_int_equal(nx_audit_verify_init(&v, &conf),
                     NX_AUDIT_BAD_CHECKPOINT);
    make_ckpt(&c, base, 400);
    memcpy(c.hash, base[401].hash, 32);
    assert_int_equal(nx_audit_checkpoint_sign(ckpt_key, 32, &c, c.mac), 0);
    assert_int_equal(nx_audit_verify_init(&v, &conf),
                     NX_AUDIT_BAD_CHECKPOINT);
    expect(&v, NX_AUDIT_BAD_CHECKPOINT, 400,
           "the checkpoints disagree at row 400");
}


static void
test_verify_misuse(void **state)
{
    uint8_t                 h[32];
    nx_audit_verify_t       v;
    nx_audit_verify_conf_t  conf;

    (void) state;

    memset(h, 0, sizeof(h));

    conf_init(&conf, NULL, NULL);
    conf.ckpt_key = chain_key;
    assert_int_equal(nx_audit_verify_init(&v, &conf), NX_AUDIT_ERROR);
    expect(&v, NX_AUDIT_ERROR, 0, "the chain and checkpoint keys must differ");
    assert_int_equal(nx_audit_verify_row(&v, &base[1].row, base[1].hash),
                     NX_AUDIT_ERROR);
    assert_int_equal(nx_audit_verify_end(&v), NX_AUDIT_ERROR);

    conf_init(&conf, NULL, NULL);
    conf.chain_key_len = 16;
    assert_int_equal(nx_audit_verify_init(&v, &conf), NX_AUDIT_ERROR);

    conf_init(&conf, NULL, NULL);
    conf.ts_tolerance = -1;
    assert_int_equal(nx_audit_verify_init(&v, &conf), NX_AUDIT_ERROR);

    assert_int_equal(nx_audit_verify_init(&v, NULL), NX_AUDIT_ERROR);
    assert_int_equal(nx_audit_verify_init(NULL, &conf), NX_AUDIT_ERROR);
    assert_int_equal(nx_audit_verify_row(NULL, &base[1].row, h),
                     NX_AUDIT_ERROR);
    assert_int_equal(nx_audit_verify_end(NULL), NX_AUDIT_ERROR);

    conf_init(&conf, NULL, NULL);
    assert_int_equal(nx_audit_verify_init(&v, &conf), NX_AUDIT_OK);
    assert_int_equal(nx_audit_verify_row(&v, NULL, h), NX_AUDIT_ERROR);
    assert_int_equal(nx_audit_verify_row(&v, &base[1].row, base[1].hash),
                     NX_AUDIT_ERROR);

    /* extreme seqs and timestamps are just numbers */
    assert_int_equal(nx_audit_verify_init(&v, &conf), NX_AUDIT_OK);
    work[1] = base[1];
    work[1].row.seq = INT64_MAX;
    work[1].row.ts = INT64_MIN;
    assert_int_equal(nx_audit_verify_row(&v, &work[1].row, h),
                     NX_AUDIT_DELETED);
    work[1].row.ts = INT64_MAX;
    assert_int_equal(nx_audit_verify_row(&v, &work[1].row, h),
                     NX_AUDIT_REORDERED);
    work[1].row.seq = INT64_MIN;
    assert_int_equal(nx_audit_verify_row(&v, &work[1].row, h),
                     NX_AUDIT_REORDERED);
    assert_int_equal(nx_audit_verify_end(&v), NX_AUDIT_DELETED);

    assert_string_equal(nx_audit_status_name(NX_AUDIT_OK), "ok");
    assert_string_equal(nx_audit_status_name(NX_AUDIT_BAD_CHECKPOINT),
                        "bad_checkpoint");
    assert_string_equal(nx_audit_status_name((nx_audit_status_t) 99),
                        "unknown");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_basic),
        cmocka_unit_test(test_redact_depth),
        cmocka_unit_test(test_redact_case),
        cmocka_unit_test(test_redact_names),
        cmocka_unit_test(test_redact_value_types),
        cmocka_unit_test(test_redact_intact),
        cmocka_unit_test(test_redact_deterministic),
        cmocka_unit_test(test_redact_escaping),
        cmocka_unit_test(test_redact_errors),
        cmocka_unit_test(test_redact_buffer),
        cmocka_unit_test(test_canonical_layout),
        cmocka_unit_test(test_canonical_unambiguous),
        cmocka_unit_test(test_canonical_buffer),
        cmocka_unit_test(test_chain_matches_hmac),
        cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_derive_keys),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_verify_clean),
        cmocka_unit_test(test_verify_edit),
        cmocka_unit_test(test_verify_delete),
        cmocka_unit_test(test_verify_reorder),
        cmocka_unit_test(test_verify_truncate),
        cmocka_unit_test(test_verify_restamp),
        cmocka_unit_test(test_verify_checkpoint),
        cmocka_unit_test(test_verify_misuse),
    };

    return cmocka_run_group_tests_name("audit", tests, setup, NULL);
}
