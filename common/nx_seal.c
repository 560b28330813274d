/*
 * Copyright (C) Nexus authors
 *
 * AES-256-GCM sealing of secrets at rest (see nx_seal.h for the format).
 * Shared by the module, which seals what the admin API receives, and the
 * workers, which open it just before use.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "nx_key.h"
#include "nx_seal.h"


#define NX_SEAL_FILE_MAX   4096
#define NX_SEAL_AAD_MAX    (sizeof("nexus-seal-v1") + 64 + 1 + 21)
#define NX_SEAL_PURPOSE_MAX  64


static int nx_seal_aad(const char *purpose, int64_t tenant_id,
    unsigned char *aad);
static void nx_seal_error(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


int
nx_seal_key_init(nx_seal_key_t *k, const uint8_t *raw, size_t len)
{
    unsigned int   mdlen;
    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned char  buf[sizeof("nexus seal key id") - 1 + NX_SEAL_KEY_LEN];

    static const char  label[] = "nexus seal key id";

    if (k == NULL || raw == NULL || len != NX_SEAL_KEY_LEN) {
        return NX_SEAL_EINVAL;
    }

    memcpy(buf, label, sizeof(label) - 1);
    memcpy(buf + sizeof(label) - 1, raw, NX_SEAL_KEY_LEN);

    if (EVP_Digest(buf, sizeof(buf), md, &mdlen, EVP_sha256(), NULL) != 1) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return NX_SEAL_ECRYPTO;
    }

    memcpy(k->key, raw, NX_SEAL_KEY_LEN);
    memcpy(k->id, md, NX_SEAL_KEY_ID_LEN);
    OPENSSL_cleanse(md, sizeof(md));
    OPENSSL_cleanse(buf, sizeof(buf));

    return NX_SEAL_OK;
}


void
nx_seal_key_wipe(nx_seal_key_t *k)
{
    if (k != NULL) {
        OPENSSL_cleanse(k, sizeof(*k));
    }
}


int
nx_seal_key_load(const char *path, nx_seal_key_t *k, char *errbuf,
    size_t errlen)
{
    int            rc, hi, lo;
    size_t         n, body, i;
    ssize_t        r;
    unsigned char  buf[NX_SEAL_FILE_MAX], raw[NX_SEAL_KEY_LEN];

    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }

    if (path == NULL || k == NULL) {
        nx_seal_error(errbuf, errlen, "seal key file: no path");
        return -1;
    }

    r = nx_secret_file_read(path, "seal key file", buf, sizeof(buf), errbuf,
                            errlen);
    if (r == -1) {
        return -1;
    }

    rc = -1;
    n = (size_t) r;

    if (n == sizeof(buf)) {
        nx_seal_error(errbuf, errlen, "seal key file \"%s\" is too large",
                      path);
        goto done;
    }

    if (n == NX_SEAL_KEY_LEN) {
        /* 32 raw bytes; 32 hex digits would be a 16-byte key: refused */
        for (i = 0; i < n && nx_hex_value(buf[i]) >= 0; i++) {
            /* void */
        }

        if (i < n) {
            rc = nx_seal_key_init(k, buf, n);
            goto done;
        }
    }

    body = n;

    if (body > 0 && buf[body - 1] == '\n') {
        body--;
        if (body > 0 && buf[body - 1] == '\r') {
            body--;
        }
    }

    if (body != 2 * NX_SEAL_KEY_LEN) {
        nx_seal_error(errbuf, errlen, "seal key file \"%s\" must hold 32 "
                      "raw bytes or 64 hex digits", path);
        goto done;
    }

    for (i = 0; i < NX_SEAL_KEY_LEN; i++) {
        hi = nx_hex_value(buf[2 * i]);
        lo = nx_hex_value(buf[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            nx_seal_error(errbuf, errlen, "seal key file \"%s\" must hold 32 "
                          "raw bytes or 64 hex digits", path);
            goto done;
        }

        raw[i] = (unsigned char) (hi << 4 | lo);
    }

    rc = nx_seal_key_init(k, raw, NX_SEAL_KEY_LEN);

done:

    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(raw, sizeof(raw));

    return rc == NX_SEAL_OK ? 0 : -1;
}


size_t
nx_seal_len(size_t len)
{
    return len + NX_SEAL_OVERHEAD;
}


int
nx_seal(const nx_seal_key_t *k, const char *purpose, int64_t tenant_id,
    const uint8_t *plain, size_t len, uint8_t *out)
{
    int              n, aadlen, rc;
    uint8_t         *nonce, *ct;
    EVP_CIPHER_CTX  *ctx;
    unsigned char    aad[NX_SEAL_AAD_MAX];

    if (k == NULL || out == NULL || (plain == NULL && len > 0)
        || len > NX_SEAL_PLAIN_MAX)
    {
        return NX_SEAL_EINVAL;
    }

    aadlen = nx_seal_aad(purpose, tenant_id, aad);
    if (aadlen < 0) {
        return NX_SEAL_EINVAL;
    }

    out[0] = NX_SEAL_VERSION;
    memcpy(out + 1, k->id, NX_SEAL_KEY_ID_LEN);
    nonce = out + 1 + NX_SEAL_KEY_ID_LEN;
    ct = nonce + NX_SEAL_NONCE_LEN;

    /* a random 96-bit nonce: far below 2^32 seals per key in practice */
    if (RAND_bytes(nonce, NX_SEAL_NONCE_LEN) != 1) {
        return NX_SEAL_ECRYPTO;
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return NX_SEAL_ECRYPTO;
    }

    rc = NX_SEAL_ECRYPTO;

    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, nonce) != 1
        || EVP_EncryptUpdate(ctx, NULL, &n, aad, aadlen) != 1)
    {
        goto done;
    }

    if (len > 0 && EVP_EncryptUpdate(ctx, ct, &n, plain, (int) len) != 1) {
        goto done;
    }

    if (EVP_EncryptFinal_ex(ctx, ct + len, &n) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, NX_SEAL_TAG_LEN,
                               ct + len) != 1)
    {
        goto done;
    }

    rc = NX_SEAL_OK;

done:

    EVP_CIPHER_CTX_free(ctx);

    if (rc != NX_SEAL_OK) {
        OPENSSL_cleanse(out, nx_seal_len(len));
    }

    return rc;
}


int
nx_seal_open(const nx_seal_key_t *k, const char *purpose, int64_t tenant_id,
    const uint8_t *sealed, size_t len, uint8_t *out, size_t *outlen)
{
    int              n, aadlen, rc;
    size_t           ctlen;
    const uint8_t   *nonce, *ct, *tag;
    EVP_CIPHER_CTX  *ctx;
    unsigned char    aad[NX_SEAL_AAD_MAX], tagbuf[NX_SEAL_TAG_LEN];

    if (outlen != NULL) {
        *outlen = 0;
    }

    if (k == NULL || sealed == NULL || outlen == NULL
        || (out == NULL && len > NX_SEAL_OVERHEAD))
    {
        return NX_SEAL_EINVAL;
    }

    if (len < NX_SEAL_OVERHEAD || sealed[0] != NX_SEAL_VERSION) {
        return NX_SEAL_EFORMAT;
    }

    ctlen = len - NX_SEAL_OVERHEAD;

    if (ctlen > NX_SEAL_PLAIN_MAX) {
        return NX_SEAL_EFORMAT;
    }

    if (CRYPTO_memcmp(sealed + 1, k->id, NX_SEAL_KEY_ID_LEN) != 0) {
        return NX_SEAL_EKEY;
    }

    aadlen = nx_seal_aad(purpose, tenant_id, aad);
    if (aadlen < 0) {
        return NX_SEAL_EINVAL;
    }

    nonce = sealed + 1 + NX_SEAL_KEY_ID_LEN;
    ct = nonce + NX_SEAL_NONCE_LEN;
    tag = ct + ctlen;

    /* the tag must be writable for OpenSSL's ctrl */
    memcpy(tagbuf, tag, NX_SEAL_TAG_LEN);

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return NX_SEAL_ECRYPTO;
    }

    rc = NX_SEAL_ECRYPTO;

    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, nonce) != 1
        || EVP_DecryptUpdate(ctx, NULL, &n, aad, aadlen) != 1)
    {
        goto done;
    }

    if (ctlen > 0
        && EVP_DecryptUpdate(ctx, out, &n, ct, (int) ctlen) != 1)
    {
        goto done;
    }

    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, NX_SEAL_TAG_LEN,
                            tagbuf) != 1)
    {
        goto done;
    }

    if (EVP_DecryptFinal_ex(ctx, out != NULL ? out + ctlen : tagbuf, &n)
        != 1)
    {
        rc = NX_SEAL_EAUTH;
        goto done;
    }

    *outlen = ctlen;
    rc = NX_SEAL_OK;

done:

    EVP_CIPHER_CTX_free(ctx);

    if (rc != NX_SEAL_OK && out != NULL && ctlen > 0) {
        OPENSSL_cleanse(out, ctlen);
    }

    return rc;
}


const char *
nx_seal_strerror(int rc)
{
    switch (rc) {
    case NX_SEAL_OK:
        return "ok";
    case NX_SEAL_EINVAL:
        return "invalid arguments";
    case NX_SEAL_EFORMAT:
        return "not a sealed value";
    case NX_SEAL_EKEY:
        return "sealed under another key";
    case NX_SEAL_EAUTH:
        return "does not authenticate";
    default:
        return "cryptographic failure";
    }
}


/* "nexus-seal-v1" NUL purpose NUL tenant id: -1 for a bad purpose */

static int
nx_seal_aad(const char *purpose, int64_t tenant_id, unsigned char *aad)
{
    int     n;
    size_t  plen;

    static const char  label[] = "nexus-seal-v1";

    if (purpose == NULL) {
        return -1;
    }

    plen = strlen(purpose);

    if (plen == 0 || plen > NX_SEAL_PURPOSE_MAX) {
        return -1;
    }

    memcpy(aad, label, sizeof(label));          /* with its NUL */
    memcpy(aad + sizeof(label), purpose, plen + 1);

    n = snprintf((char *) aad + sizeof(label) + plen + 1, 22, "%" PRId64,
                 tenant_id);

    return (int) (sizeof(label) + plen + 1) + n;
}



static void
nx_seal_error(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (errbuf == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(errbuf, errlen, fmt, args);
    va_end(args);
}
