/*
 * Copyright (C) Nexus authors
 *
 * Audit log tamper evidence: metadata redaction into a deterministic JSON
 * form, the canonical encoding of rows, the HMAC-SHA256 chain, signed
 * checkpoints, HKDF key derivation and the streaming verifier. The formats
 * are described in nx_audit.h.
 *
 * HMACs are computed with EVP_MAC so that a row is fed to the MAC piece by
 * piece, straight from the caller's strings: the canonical encoder writes
 * either into a buffer or into a MAC, so the two cannot disagree.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "nx_audit.h"
#include "nx_json.h"


#define NX_AUDIT_ROW_TAG       "NXAUDIT1"
#define NX_AUDIT_CKPT_TAG      "NXCHKPT1"
#define NX_AUDIT_TAG_LEN       8
#define NX_AUDIT_GENESIS       "nexus-audit-genesis"
#define NX_AUDIT_INFO_CHAIN    "nexus audit chain"
#define NX_AUDIT_INFO_CKPT     "nexus audit checkpoint"

/* nx_json_parse() stops at 32 levels; this only guards the recursion */
#define NX_AUDIT_MAX_DEPTH     64

/* RFC 5869: L <= 255 * HashLen */
#define NX_AUDIT_HKDF_MAX      (255 * NX_AUDIT_HASH_LEN)


typedef struct {
    EVP_MAC_CTX  *ctx;
    int           failed;
} nx_audit_mac_t;


/*
 * Where encoded bytes go: into buf (only what fits; pos counts them all)
 * or, when mac is set, into the MAC.
 */
typedef struct {
    unsigned char   *buf;
    size_t           size;
    size_t           pos;
    nx_audit_mac_t  *mac;
    unsigned         overflow:1;
} nx_audit_sink_t;


typedef struct {
    const char  *name;
    size_t       len;
    unsigned     whole_word:1;   /* the name, or a suffix after '_' */
} nx_audit_sensitive_t;


static int nx_audit_mac_init(nx_audit_mac_t *m, const uint8_t *key,
    size_t keylen);
static void nx_audit_mac_update(nx_audit_mac_t *m, const void *p, size_t n);
static int nx_audit_mac_final(nx_audit_mac_t *m,
    uint8_t out[NX_AUDIT_HASH_LEN]);
static void nx_audit_put(nx_audit_sink_t *s, const void *p, size_t n);
static void nx_audit_put_be64(nx_audit_sink_t *s, int64_t v);
static void nx_audit_put_str(nx_audit_sink_t *s, const nx_audit_str_t *str);
static int nx_audit_encode_row(nx_audit_sink_t *s, const nx_audit_row_t *row);
static int nx_audit_str_valid(const nx_audit_str_t *str);
static void nx_audit_put_value(nx_audit_sink_t *s, yajl_val v, int depth);
static void nx_audit_put_json_string(nx_audit_sink_t *s, const char *str);
static unsigned char nx_audit_fold(unsigned char c);
static nx_audit_status_t nx_audit_problem(nx_audit_verify_t *v,
    nx_audit_status_t status, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int nx_audit_upgrade(nx_audit_verify_t *v, nx_audit_status_t from,
    int64_t from_seq, nx_audit_status_t to, int64_t seq, const char *fmt,
    ...)
    __attribute__((format(printf, 6, 7)));
static void nx_audit_vmsg(nx_audit_verify_t *v, const char *fmt,
    va_list args);
static nx_audit_status_t nx_audit_check_start(nx_audit_verify_t *v,
    const nx_audit_verify_conf_t *conf);
static nx_audit_status_t nx_audit_check_latest(nx_audit_verify_t *v,
    const nx_audit_verify_conf_t *conf);
static void nx_audit_accept(nx_audit_verify_t *v, int64_t seq,
    const uint8_t link[NX_AUDIT_HASH_LEN]);
static uint64_t nx_audit_before(int64_t a, int64_t b);


static const char  nx_audit_hex[] = "0123456789abcdef";


#define nx_audit_sensitive_entry(s, w)  { s, sizeof(s) - 1, w }

static const nx_audit_sensitive_t  nx_audit_sensitive[] = {
    nx_audit_sensitive_entry("authorization", 0),
    nx_audit_sensitive_entry("token", 0),
    nx_audit_sensitive_entry("secret", 0),
    nx_audit_sensitive_entry("password", 0),
    nx_audit_sensitive_entry("api_key", 0),
    nx_audit_sensitive_entry("apikey", 0),
    nx_audit_sensitive_entry("private_key", 0),
    nx_audit_sensitive_entry("privatekey", 0),
    nx_audit_sensitive_entry("cookie", 0),
    /* "context", "pretext" and "content_type" stay */
    nx_audit_sensitive_entry("text", 1),
    nx_audit_sensitive_entry("content", 1)
};


static const char  *nx_audit_status_names[] = {
    "ok",
    "edited",
    "deleted",
    "reordered",
    "truncated",
    "restamped",
    "bad_checkpoint",
    "error"
};


/* redaction */

int
nx_audit_redact(const char *json, size_t len, char *out, size_t outsz,
    size_t *outlen)
{
    yajl_val         v;
    nx_audit_sink_t  s;

    if (outlen == NULL) {
        return -1;
    }

    *outlen = 0;

    if (out != NULL && outsz > 0) {
        out[0] = '\0';
    }

    v = nx_json_parse_strict(json, len, NULL, 0);
    if (v == NULL) {
        return -1;
    }

    if (!YAJL_IS_OBJECT(v)) {
        nx_json_free(v);
        return -1;
    }

    memset(&s, 0, sizeof(s));
    s.buf = (unsigned char *) out;
    s.size = out != NULL ? outsz : 0;

    nx_audit_put_value(&s, v, 0);

    nx_json_free(v);

    if (s.overflow) {
        return -1;
    }

    *outlen = s.pos;

    if (out == NULL || s.pos >= outsz) {
        if (out != NULL && outsz > 0) {
            out[0] = '\0';
        }

        return -1;
    }

    out[s.pos] = '\0';

    return 0;
}


int
nx_audit_sensitive_name(const char *name, size_t len)
{
    size_t                       i, k, off;
    const nx_audit_sensitive_t  *e;

    if (name == NULL) {
        return 0;
    }

    for (i = 0; i < sizeof(nx_audit_sensitive) / sizeof(nx_audit_sensitive[0]);
         i++)
    {
        e = &nx_audit_sensitive[i];

        if (len < e->len) {
            continue;
        }

        off = len - e->len;

        for (k = 0; k < e->len; k++) {
            if (nx_audit_fold((unsigned char) name[off + k])
                != (unsigned char) e->name[k])
            {
                break;
            }
        }

        if (k != e->len) {
            continue;
        }

        if (!e->whole_word || off == 0
            || nx_audit_fold((unsigned char) name[off - 1]) == '_')
        {
            return 1;
        }
    }

    return 0;
}


/* ASCII lower case, with '-' as '_' */

static unsigned char
nx_audit_fold(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return (unsigned char) (c | 0x20);
    }

    return c == '-' ? '_' : c;
}


static void
nx_audit_put_value(nx_audit_sink_t *s, yajl_val v, int depth)
{
    size_t       i;
    const char  *key;

    if (depth > NX_AUDIT_MAX_DEPTH) {
        s->overflow = 1;
        return;
    }

    if (v == NULL || YAJL_IS_NULL(v)) {
        nx_audit_put(s, "null", 4);

    } else if (YAJL_IS_TRUE(v)) {
        nx_audit_put(s, "true", 4);

    } else if (YAJL_IS_FALSE(v)) {
        nx_audit_put(s, "false", 5);

    } else if (YAJL_IS_STRING(v)) {
        nx_audit_put_json_string(s, v->u.string);

    } else if (YAJL_IS_NUMBER(v)) {
        /* yajl keeps the number's text, already valid JSON */
        nx_audit_put(s, v->u.number.r, strlen(v->u.number.r));

    } else if (YAJL_IS_OBJECT(v)) {
        nx_audit_put(s, "{", 1);

        for (i = 0; i < v->u.object.len; i++) {
            key = v->u.object.keys[i] != NULL ? v->u.object.keys[i] : "";

            if (i > 0) {
                nx_audit_put(s, ",", 1);
            }

            nx_audit_put_json_string(s, key);
            nx_audit_put(s, ":", 1);

            if (nx_audit_sensitive_name(key, strlen(key))) {
                nx_audit_put(s, "\"" NX_AUDIT_REDACTED "\"",
                             sizeof(NX_AUDIT_REDACTED) + 1);

            } else {
                nx_audit_put_value(s, v->u.object.values[i], depth + 1);
            }
        }

        nx_audit_put(s, "}", 1);

    } else if (YAJL_IS_ARRAY(v)) {
        nx_audit_put(s, "[", 1);

        for (i = 0; i < v->u.array.len; i++) {
            if (i > 0) {
                nx_audit_put(s, ",", 1);
            }

            nx_audit_put_value(s, v->u.array.values[i], depth + 1);
        }

        nx_audit_put(s, "]", 1);

    } else {
        s->overflow = 1;
    }
}


/*
 * Unlike nx_json_escape(), invalid UTF-8 becomes a raw U+FFFD rather than
 * "\ufffd": parsing the output gives back exactly the bytes it was
 * written from, which is what makes redaction idempotent.
 */

static void
nx_audit_put_json_string(nx_audit_sink_t *s, const char *str)
{
    char                  esc[6];
    size_t                i, run, len, n;
    unsigned char         c;
    const unsigned char  *p;

    p = (const unsigned char *) str;
    len = strlen(str);

    nx_audit_put(s, "\"", 1);

    run = 0;

    for (i = 0; i < len; /* void */) {
        c = p[i];

        if (c >= 0x20 && c != '"' && c != '\\') {
            if (c < 0x80) {
                i++;
                continue;
            }

            n = nx_utf8_len(p + i, len - i);
            if (n != 0) {
                i += n;
                continue;
            }
        }

        nx_audit_put(s, p + run, i - run);

        if (c >= 0x80) {
            nx_audit_put(s, "\xef\xbf\xbd", 3);

        } else if (c < 0x20) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = nx_audit_hex[c >> 4];
            esc[5] = nx_audit_hex[c & 0x0f];
            nx_audit_put(s, esc, 6);

        } else {
            esc[0] = '\\';
            esc[1] = (char) c;
            nx_audit_put(s, esc, 2);
        }

        run = ++i;
    }

    nx_audit_put(s, p + run, len - run);
    nx_audit_put(s, "\"", 1);
}


/* canonical rows and the chain */

int
nx_audit_canonical(const nx_audit_row_t *row, unsigned char *buf,
    size_t bufsz, size_t *len)
{
    nx_audit_sink_t  s;

    if (len == NULL) {
        return -1;
    }

    *len = 0;

    if (row == NULL) {
        return -1;
    }

    /* measure first, so that a short buffer is left untouched */

    memset(&s, 0, sizeof(s));

    if (nx_audit_encode_row(&s, row) != 0 || s.overflow) {
        return -1;
    }

    *len = s.pos;

    if (buf == NULL || s.pos > bufsz) {
        return -1;
    }

    s.buf = buf;
    s.size = bufsz;
    s.pos = 0;

    (void) nx_audit_encode_row(&s, row);

    return 0;
}


int
nx_audit_genesis(const uint8_t *key, size_t keylen, int64_t tenant_id,
    uint8_t out[NX_AUDIT_HASH_LEN])
{
    nx_audit_mac_t   m;
    nx_audit_sink_t  s;

    if (out == NULL || nx_audit_mac_init(&m, key, keylen) != 0) {
        return -1;
    }

    memset(&s, 0, sizeof(s));
    s.mac = &m;

    nx_audit_put(&s, NX_AUDIT_GENESIS, sizeof(NX_AUDIT_GENESIS) - 1);
    nx_audit_put_be64(&s, tenant_id);

    return nx_audit_mac_final(&m, out);
}


int
nx_audit_chain_next(const uint8_t *key, size_t keylen,
    const uint8_t prev[NX_AUDIT_HASH_LEN], const nx_audit_row_t *row,
    uint8_t out[NX_AUDIT_HASH_LEN])
{
    nx_audit_mac_t   m;
    nx_audit_sink_t  s;

    if (prev == NULL || row == NULL || out == NULL) {
        return -1;
    }

    if (nx_audit_mac_init(&m, key, keylen) != 0) {
        return -1;
    }

    memset(&s, 0, sizeof(s));
    s.mac = &m;

    nx_audit_put(&s, prev, NX_AUDIT_HASH_LEN);

    if (nx_audit_encode_row(&s, row) != 0) {
        m.failed = 1;
    }

    return nx_audit_mac_final(&m, out);
}


static int
nx_audit_str_valid(const nx_audit_str_t *str)
{
    if (str->data == NULL && str->len != 0) {
        return 0;
    }

    return str->len <= UINT32_MAX;
}


static int
nx_audit_encode_row(nx_audit_sink_t *s, const nx_audit_row_t *row)
{
    if (!nx_audit_str_valid(&row->request_id)
        || !nx_audit_str_valid(&row->actor)
        || !nx_audit_str_valid(&row->event_type)
        || !nx_audit_str_valid(&row->outcome)
        || !nx_audit_str_valid(&row->metadata))
    {
        return -1;
    }

    nx_audit_put(s, NX_AUDIT_ROW_TAG, NX_AUDIT_TAG_LEN);
    nx_audit_put_be64(s, row->seq);
    nx_audit_put_be64(s, row->ts);
    nx_audit_put_str(s, &row->request_id);
    nx_audit_put_be64(s, row->tenant_id);
    nx_audit_put_str(s, &row->actor);
    nx_audit_put_str(s, &row->event_type);
    nx_audit_put_str(s, &row->outcome);
    nx_audit_put_str(s, &row->metadata);

    return 0;
}


static void
nx_audit_put(nx_audit_sink_t *s, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }

    if (s->mac != NULL) {
        nx_audit_mac_update(s->mac, p, n);
        return;
    }

    if (n > (size_t) -1 - s->pos) {
        s->overflow = 1;
        return;
    }

    if (s->buf != NULL && s->pos <= s->size && n <= s->size - s->pos) {
        memcpy(s->buf + s->pos, p, n);
    }

    s->pos += n;
}


static void
nx_audit_put_be64(nx_audit_sink_t *s, int64_t v)
{
    int            i;
    uint64_t       u;
    unsigned char  b[8];

    u = (uint64_t) v;

    for (i = 7; i >= 0; i--) {
        b[i] = (unsigned char) (u & 0xff);
        u >>= 8;
    }

    nx_audit_put(s, b, sizeof(b));
}


static void
nx_audit_put_str(nx_audit_sink_t *s, const nx_audit_str_t *str)
{
    uint32_t       n;
    unsigned char  b[4];

    n = (uint32_t) str->len;

    b[0] = (unsigned char) (n >> 24);
    b[1] = (unsigned char) (n >> 16);
    b[2] = (unsigned char) (n >> 8);
    b[3] = (unsigned char) n;

    nx_audit_put(s, b, sizeof(b));
    nx_audit_put(s, str->data, str->len);
}


/* HMAC-SHA256 through EVP_MAC; a short key is refused */

static int
nx_audit_mac_init(nx_audit_mac_t *m, const uint8_t *key, size_t keylen)
{
    EVP_MAC     *mac;
    OSSL_PARAM   params[2];

    m->ctx = NULL;
    m->failed = 0;

    if (key == NULL || keylen < NX_AUDIT_KEY_MIN) {
        return -1;
    }

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return -1;
    }

    /* the context holds its own reference to mac */
    m->ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);

    if (m->ctx == NULL) {
        return -1;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(m->ctx, key, keylen, params) != 1) {
        EVP_MAC_CTX_free(m->ctx);
        m->ctx = NULL;
        return -1;
    }

    return 0;
}


static void
nx_audit_mac_update(nx_audit_mac_t *m, const void *p, size_t n)
{
    if (m->failed || n == 0) {
        return;
    }

    if (EVP_MAC_update(m->ctx, p, n) != 1) {
        m->failed = 1;
    }
}


static int
nx_audit_mac_final(nx_audit_mac_t *m, uint8_t out[NX_AUDIT_HASH_LEN])
{
    int     rc;
    size_t  n;

    rc = -1;
    n = 0;

    if (!m->failed
        && EVP_MAC_final(m->ctx, out, &n, NX_AUDIT_HASH_LEN) == 1
        && n == NX_AUDIT_HASH_LEN)
    {
        rc = 0;
    }

    EVP_MAC_CTX_free(m->ctx);
    m->ctx = NULL;

    if (rc != 0) {
        OPENSSL_cleanse(out, NX_AUDIT_HASH_LEN);
    }

    return rc;
}


/* checkpoints and keys */

int
nx_audit_checkpoint_sign(const uint8_t *key, size_t keylen,
    const nx_audit_checkpoint_t *c, uint8_t out_mac[NX_AUDIT_HASH_LEN])
{
    nx_audit_mac_t   m;
    nx_audit_sink_t  s;

    if (c == NULL || out_mac == NULL) {
        return -1;
    }

    if (nx_audit_mac_init(&m, key, keylen) != 0) {
        return -1;
    }

    memset(&s, 0, sizeof(s));
    s.mac = &m;

    nx_audit_put(&s, NX_AUDIT_CKPT_TAG, NX_AUDIT_TAG_LEN);
    nx_audit_put_be64(&s, c->tenant_id);
    nx_audit_put_be64(&s, c->seq);
    nx_audit_put_be64(&s, c->count);
    nx_audit_put_be64(&s, c->ts);
    nx_audit_put(&s, c->hash, NX_AUDIT_HASH_LEN);

    return nx_audit_mac_final(&m, out_mac);
}


int
nx_audit_checkpoint_verify(const uint8_t *key, size_t keylen,
    const nx_audit_checkpoint_t *c)
{
    int      rc;
    uint8_t  mac[NX_AUDIT_HASH_LEN];

    if (nx_audit_checkpoint_sign(key, keylen, c, mac) != 0) {
        return -1;
    }

    rc = CRYPTO_memcmp(mac, c->mac, NX_AUDIT_HASH_LEN) == 0 ? 0 : -1;

    OPENSSL_cleanse(mac, sizeof(mac));

    return rc;
}


int
nx_audit_derive_keys(const uint8_t *master, size_t len,
    uint8_t chain_key[NX_AUDIT_HASH_LEN],
    uint8_t ckpt_key[NX_AUDIT_HASH_LEN])
{
    if (chain_key == NULL || ckpt_key == NULL) {
        return -1;
    }

    if (master == NULL || len < NX_AUDIT_KEY_MIN
        || nx_audit_hkdf_sha256(NULL, 0, master, len,
                                (const uint8_t *) NX_AUDIT_INFO_CHAIN,
                                sizeof(NX_AUDIT_INFO_CHAIN) - 1,
                                chain_key, NX_AUDIT_HASH_LEN)
           != 0
        || nx_audit_hkdf_sha256(NULL, 0, master, len,
                                (const uint8_t *) NX_AUDIT_INFO_CKPT,
                                sizeof(NX_AUDIT_INFO_CKPT) - 1,
                                ckpt_key, NX_AUDIT_HASH_LEN)
           != 0)
    {
        OPENSSL_cleanse(chain_key, NX_AUDIT_HASH_LEN);
        OPENSSL_cleanse(ckpt_key, NX_AUDIT_HASH_LEN);
        return -1;
    }

    return 0;
}


int
nx_audit_hkdf_sha256(const uint8_t *salt, size_t saltlen, const uint8_t *ikm,
    size_t ikmlen, const uint8_t *info, size_t infolen, uint8_t *out,
    size_t outlen)
{
    int            rc;
    EVP_KDF       *kdf;
    OSSL_PARAM     params[5], *p;
    EVP_KDF_CTX   *kctx;

    if (ikm == NULL || ikmlen == 0 || out == NULL || outlen == 0
        || outlen > NX_AUDIT_HKDF_MAX
        || (salt == NULL && saltlen != 0) || (info == NULL && infolen != 0))
    {
        return -1;
    }

    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (kdf == NULL) {
        return -1;
    }

    kctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);

    if (kctx == NULL) {
        return -1;
    }

    p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                            (char *) "SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                             (void *) ikm, ikmlen);

    /* an absent salt is HashLen zero bytes (RFC 5869, 2.2) */
    if (saltlen != 0) {
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                 (void *) salt, saltlen);
    }

    if (infolen != 0) {
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                 (void *) info, infolen);
    }

    *p = OSSL_PARAM_construct_end();

    rc = EVP_KDF_derive(kctx, out, outlen, params) == 1 ? 0 : -1;

    EVP_KDF_CTX_free(kctx);

    if (rc != 0) {
        OPENSSL_cleanse(out, outlen);
    }

    return rc;
}


/* the verifier */

nx_audit_status_t
nx_audit_verify_init(nx_audit_verify_t *v, const nx_audit_verify_conf_t *conf)
{
    if (v == NULL) {
        return NX_AUDIT_ERROR;
    }

    memset(v, 0, sizeof(*v));

    if (conf == NULL || conf->chain_key == NULL || conf->ckpt_key == NULL
        || conf->chain_key_len < NX_AUDIT_KEY_MIN
        || conf->ckpt_key_len < NX_AUDIT_KEY_MIN || conf->ts_tolerance < 0)
    {
        v->broken = 1;
        return nx_audit_problem(v, NX_AUDIT_ERROR, 0,
                                "invalid verifier configuration");
    }

    /* distinct keys: whoever may extend the chain cannot sign checkpoints */
    if (conf->chain_key_len == conf->ckpt_key_len
        && CRYPTO_memcmp(conf->chain_key, conf->ckpt_key,
                         conf->chain_key_len)
           == 0)
    {
        v->broken = 1;
        return nx_audit_problem(v, NX_AUDIT_ERROR, 0,
                                "the chain and checkpoint keys must differ");
    }

    v->chain_key = conf->chain_key;
    v->chain_key_len = conf->chain_key_len;
    v->tenant_id = conf->tenant_id;
    v->tolerance = conf->ts_tolerance;

    if (nx_audit_check_start(v, conf) == NX_AUDIT_ERROR) {
        return NX_AUDIT_ERROR;
    }

    v->last_seq = v->start_seq;

    (void) nx_audit_check_latest(v, conf);

    return v->status;
}


/*
 * A start checkpoint that fails its checks is still used, so that the
 * rows after it are verified too; the first problem is reported anyway.
 */

static nx_audit_status_t
nx_audit_check_start(nx_audit_verify_t *v, const nx_audit_verify_conf_t *conf)
{
    const nx_audit_checkpoint_t  *c;

    c = conf->start;

    if (c == NULL) {
        if (nx_audit_genesis(v->chain_key, v->chain_key_len, v->tenant_id,
                             v->prev)
            != 0)
        {
            v->broken = 1;
            return nx_audit_problem(v, NX_AUDIT_ERROR, 0,
                                    "cannot compute the genesis hash");
        }

        return NX_AUDIT_OK;
    }

    v->start_seq = c->seq > 0 ? c->seq : 0;
    memcpy(v->prev, c->hash, NX_AUDIT_HASH_LEN);

    if (c->tenant_id != v->tenant_id) {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the start checkpoint is for tenant %lld, "
                                "not %lld", (long long) c->tenant_id,
                                (long long) v->tenant_id);
    }

    if (nx_audit_checkpoint_verify(conf->ckpt_key, conf->ckpt_key_len, c)
        != 0)
    {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the start checkpoint at row %lld has an "
                                "invalid signature", (long long) c->seq);
    }

    /* seq is gapless from 1, so a chain's row count is its head seq */
    if (c->seq < 0 || c->count != c->seq) {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the start checkpoint at row %lld counts "
                                "%lld rows", (long long) c->seq,
                                (long long) c->count);
    }

    return NX_AUDIT_OK;
}


static nx_audit_status_t
nx_audit_check_latest(nx_audit_verify_t *v,
    const nx_audit_verify_conf_t *conf)
{
    const nx_audit_checkpoint_t  *c;

    c = conf->latest;

    if (c == NULL) {
        return NX_AUDIT_OK;
    }

    if (c->tenant_id != v->tenant_id) {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the checkpoint is for tenant %lld, not %lld",
                                (long long) c->tenant_id,
                                (long long) v->tenant_id);
    }

    if (nx_audit_checkpoint_verify(conf->ckpt_key, conf->ckpt_key_len, c)
        != 0)
    {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the checkpoint at row %lld has an invalid "
                                "signature", (long long) c->seq);
    }

    if (c->seq < 0 || c->count != c->seq) {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the checkpoint at row %lld counts %lld rows",
                                (long long) c->seq, (long long) c->count);
    }

    if (c->seq < v->start_seq) {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the checkpoint at row %lld precedes the "
                                "start at row %lld", (long long) c->seq,
                                (long long) v->start_seq);
    }

    if (c->seq == v->start_seq
        && CRYPTO_memcmp(c->hash, v->prev, NX_AUDIT_HASH_LEN) != 0)
    {
        return nx_audit_problem(v, NX_AUDIT_BAD_CHECKPOINT, c->seq,
                                "the checkpoints disagree at row %lld",
                                (long long) c->seq);
    }

    v->latest = *c;
    v->have_latest = 1;
    v->reached = (c->seq == v->start_seq);

    return NX_AUDIT_OK;
}


/*
 * Each row is checked against the stored hash of the row before it (not
 * against the hash recomputed from it), so a problem is reported where it
 * is and the rows after it still verify.
 */

nx_audit_status_t
nx_audit_verify_row(nx_audit_verify_t *v, const nx_audit_row_t *row,
    const uint8_t stored[NX_AUDIT_HASH_LEN])
{
    int                match, altered;
    int64_t            seq, lo, hi;
    uint64_t           back, ahead;
    uint8_t            h[NX_AUDIT_HASH_LEN], alt[NX_AUDIT_HASH_LEN];
    nx_audit_row_t     moved;
    nx_audit_status_t  st;

    if (v == NULL) {
        return NX_AUDIT_ERROR;
    }

    if (v->broken) {
        return NX_AUDIT_ERROR;
    }

    if (row == NULL || stored == NULL) {
        v->broken = 1;
        return nx_audit_problem(v, NX_AUDIT_ERROR, v->last_seq,
                                "no row or no stored hash");
    }

    v->rows++;
    seq = row->seq;

    if (seq <= v->last_seq) {

        if (seq == v->last_seq && seq > v->start_seq) {
            return nx_audit_problem(v, NX_AUDIT_REORDERED, seq,
                                    "row %lld appears twice",
                                    (long long) seq);
        }

        /* the late row of a gap reported as a deletion: a reordering */
        if (seq >= v->gap_lo && seq < v->gap_hi
            && nx_audit_upgrade(v, NX_AUDIT_DELETED, v->gap_lo,
                                NX_AUDIT_REORDERED, seq,
                                "row %lld comes after row %lld: rows out "
                                "of order", (long long) seq,
                                (long long) v->last_seq))
        {
            return NX_AUDIT_REORDERED;
        }

        return nx_audit_problem(v, NX_AUDIT_REORDERED, seq,
                                "row %lld comes after row %lld",
                                (long long) seq, (long long) v->last_seq);
    }

    /* seq > last_seq >= 0: no overflow */

    if (seq - v->last_seq > 1) {
        lo = v->last_seq + 1;
        hi = seq;

        if (v->status == NX_AUDIT_OK) {
            v->gap_lo = lo;
            v->gap_hi = hi;
        }

        if (hi - lo == 1) {
            st = nx_audit_problem(v, NX_AUDIT_DELETED, lo,
                                  "row %lld is missing: it was deleted",
                                  (long long) lo);

        } else {
            st = nx_audit_problem(v, NX_AUDIT_DELETED, lo,
                                  "rows %lld to %lld are missing: they were "
                                  "deleted", (long long) lo,
                                  (long long) (hi - 1));
        }

        /* the link to the row before cannot be checked: take it as is */

        v->pending = 0;
        v->last_ts = row->ts;
        v->ts_seq = seq;
        v->have_ts = 1;
        nx_audit_accept(v, seq, stored);

        return st;
    }

    if (nx_audit_chain_next(v->chain_key, v->chain_key_len, v->prev, row, h)
        != 0)
    {
        v->broken = 1;
        return nx_audit_problem(v, NX_AUDIT_ERROR, seq,
                                "cannot compute the hash of row %lld",
                                (long long) seq);
    }

    back = v->have_ts ? nx_audit_before(row->ts, v->last_ts) : 0;

    match = (CRYPTO_memcmp(h, stored, NX_AUDIT_HASH_LEN) == 0);
    altered = 0;

    /*
     * Neither this row nor the previous one matches: if this one links to
     * the previous row's recomputed hash, only that stored hash was
     * altered, and this row is intact.
     */

    if (!match && v->pending && v->pend_seq == seq - 1
        && nx_audit_chain_next(v->chain_key, v->chain_key_len, v->pend_hash,
                               row, alt)
           == 0
        && CRYPTO_memcmp(alt, stored, NX_AUDIT_HASH_LEN) == 0)
    {
        (void) nx_audit_upgrade(v, NX_AUDIT_EDITED, seq - 1, NX_AUDIT_EDITED,
                                seq - 1, "row %lld was edited: its stored "
                                "hash was altered", (long long) (seq - 1));
        match = 1;
        altered = 1;
    }

    if (match) {
        st = NX_AUDIT_OK;

        /* the row before did not match and is later than this one */
        if (v->pending && v->pend_seq == seq - 1 && !altered) {
            ahead = nx_audit_before(row->ts, v->pend_ts);

            if (ahead > (uint64_t) v->tolerance) {
                (void) nx_audit_upgrade(v, NX_AUDIT_EDITED, seq - 1,
                                        NX_AUDIT_RESTAMPED, seq - 1,
                                        "row %lld was restamped: its time "
                                        "is %llu us after row %lld's and "
                                        "its hash does not match",
                                        (long long) (seq - 1),
                                        (unsigned long long) ahead,
                                        (long long) seq);
            }
        }

        if (back > (uint64_t) v->tolerance) {
            st = nx_audit_problem(v, NX_AUDIT_RESTAMPED, seq,
                                  "row %lld was restamped: its time is %llu "
                                  "us before row %lld's", (long long) seq,
                                  (unsigned long long) back,
                                  (long long) v->ts_seq);
        }

        v->pending = 0;
        v->last_ts = row->ts;
        v->ts_seq = seq;
        v->have_ts = 1;
        nx_audit_accept(v, seq, stored);

        return st;
    }

    /*
     * The previous row did not match either: if this one is that row's
     * original, the two exchanged their seqs. The next row then links to
     * the hash stored with the previous row.
     */

    if (v->pending && v->pend_seq == seq - 1) {
        moved = *row;
        moved.seq = seq - 1;

        if (nx_audit_chain_next(v->chain_key, v->chain_key_len, v->pend_prev,
                                &moved, alt)
            == 0
            && CRYPTO_memcmp(alt, stored, NX_AUDIT_HASH_LEN) == 0)
        {
            if (!nx_audit_upgrade(v, NX_AUDIT_EDITED, seq - 1,
                                  NX_AUDIT_REORDERED, seq - 1,
                                  "rows %lld and %lld were swapped",
                                  (long long) (seq - 1), (long long) seq))
            {
                (void) nx_audit_upgrade(v, NX_AUDIT_RESTAMPED, seq - 1,
                                        NX_AUDIT_REORDERED, seq - 1,
                                        "rows %lld and %lld were swapped",
                                        (long long) (seq - 1),
                                        (long long) seq);
            }

            v->pending = 0;
            nx_audit_accept(v, seq, v->pend_stored);

            return NX_AUDIT_REORDERED;
        }
    }

    if (back > (uint64_t) v->tolerance) {
        st = nx_audit_problem(v, NX_AUDIT_RESTAMPED, seq,
                              "row %lld was restamped: its time is %llu us "
                              "before row %lld's and its hash does not match",
                              (long long) seq, (unsigned long long) back,
                              (long long) v->ts_seq);

    } else {
        st = nx_audit_problem(v, NX_AUDIT_EDITED, seq,
                              "row %lld was edited: stored hash does not "
                              "match its content", (long long) seq);
    }

    /* its ts is not to be trusted: last_ts stays */

    v->pending = 1;
    v->pend_seq = seq;
    v->pend_ts = row->ts;
    memcpy(v->pend_hash, h, NX_AUDIT_HASH_LEN);
    memcpy(v->pend_prev, v->prev, NX_AUDIT_HASH_LEN);
    memcpy(v->pend_stored, stored, NX_AUDIT_HASH_LEN);
    nx_audit_accept(v, seq, stored);

    return st;
}


nx_audit_status_t
nx_audit_verify_end(nx_audit_verify_t *v)
{
    int64_t                       missing;
    const nx_audit_checkpoint_t  *c;

    if (v == NULL) {
        return NX_AUDIT_ERROR;
    }

    if (v->broken || v->ended) {
        return v->status;
    }

    v->ended = 1;

    if (!v->have_latest) {
        return v->status;
    }

    c = &v->latest;

    /* a checkpoint's count is its seq (checked at init): if the log
     * reaches its seq without gaps, it has as many rows */

    if (v->reached) {
        return v->status;
    }

    if (v->last_seq > c->seq) {
        /* the gap that swallowed it was reported already */
        (void) nx_audit_problem(v, NX_AUDIT_TRUNCATED, c->seq,
                                "row %lld, the checkpoint's head, is missing",
                                (long long) c->seq);
        return v->status;
    }

    missing = c->seq - v->last_seq;

    if (v->last_seq == v->start_seq) {
        (void) nx_audit_problem(v, NX_AUDIT_TRUNCATED, v->last_seq + 1,
                                "the log has no rows after row %lld but the "
                                "checkpoint covers rows through %lld: %lld "
                                "rows were truncated",
                                (long long) v->last_seq, (long long) c->seq,
                                (long long) missing);

    } else {
        (void) nx_audit_problem(v, NX_AUDIT_TRUNCATED, v->last_seq + 1,
                                "the log ends at row %lld but the checkpoint "
                                "covers rows through %lld: %lld rows were "
                                "truncated", (long long) v->last_seq,
                                (long long) c->seq, (long long) missing);
    }

    return v->status;
}


const char *
nx_audit_status_name(nx_audit_status_t status)
{
    if ((unsigned) status
        >= sizeof(nx_audit_status_names) / sizeof(nx_audit_status_names[0]))
    {
        return "unknown";
    }

    return nx_audit_status_names[status];
}


/* link: the hash the next row chains from */

static void
nx_audit_accept(nx_audit_verify_t *v, int64_t seq,
    const uint8_t link[NX_AUDIT_HASH_LEN])
{
    memcpy(v->prev, link, NX_AUDIT_HASH_LEN);
    v->last_seq = seq;

    if (!v->have_latest || seq != v->latest.seq) {
        return;
    }

    v->reached = 1;

    if (CRYPTO_memcmp(link, v->latest.hash, NX_AUDIT_HASH_LEN) != 0) {
        (void) nx_audit_problem(v, NX_AUDIT_TRUNCATED, seq,
                                "row %lld does not match the checkpoint: the "
                                "log was cut back and rewritten after it was "
                                "signed", (long long) seq);
    }
}


/* how far a is before b, 0 if it is not */

static uint64_t
nx_audit_before(int64_t a, int64_t b)
{
    if (a >= b) {
        return 0;
    }

    /* modulo 2^64 the difference is exact, and it fits */
    return (uint64_t) b - (uint64_t) a;
}


static nx_audit_status_t
nx_audit_problem(nx_audit_verify_t *v, nx_audit_status_t status, int64_t seq,
    const char *fmt, ...)
{
    va_list  args;

    v->problems++;

    if (v->status == NX_AUDIT_OK) {
        v->status = status;
        v->seq = seq;

        va_start(args, fmt);
        nx_audit_vmsg(v, fmt, args);
        va_end(args);
    }

    return status;
}


/* rewrites the first problem when it turns out to be a more specific one */

static int
nx_audit_upgrade(nx_audit_verify_t *v, nx_audit_status_t from,
    int64_t from_seq, nx_audit_status_t to, int64_t seq, const char *fmt,
    ...)
{
    va_list  args;

    if (v->status != from || v->seq != from_seq) {
        return 0;
    }

    v->status = to;
    v->seq = seq;

    va_start(args, fmt);
    nx_audit_vmsg(v, fmt, args);
    va_end(args);

    return 1;
}


static void
nx_audit_vmsg(nx_audit_verify_t *v, const char *fmt, va_list args)
{
    (void) vsnprintf(v->msg, sizeof(v->msg), fmt, args);
}
