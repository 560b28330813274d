/*
 * Copyright (C) Nexus authors
 *
 * API keys: generation from the OpenSSL CSPRNG, strict parsing of the
 * "nx_<prefix>_<secret>" format, the HMAC-SHA256 that is the only form a
 * key is ever stored in, constant-time comparison, and loading of the
 * pepper (the HMAC key) from a file.
 */

/* GNU strerror_r() even when built without -D_GNU_SOURCE (nginx, fuzz) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The hasher keeps the pepper's two HMAC states as SHA256_CTX values, to be
 * copied as structures: OpenSSL 3 marks that API deprecated, and its EVP
 * replacement allocates a context on every copy (nx_key_hasher_run()).
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "nx_key.h"


/* a pepper file is never allowed to make us read more than this */
#define NX_PEPPER_FILE_MAX  4096


static int nx_key_lower_hex(const char *s, size_t len);
static void nx_key_hex_encode(char *dst, const uint8_t *src, size_t len);
static void nx_key_error(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static const char  nx_key_hex_digits[] = "0123456789abcdef";


int
nx_key_generate(const uint8_t *pepper, size_t pepper_len, nx_key_t *out)
{
    char     *p;
    uint8_t   rnd[NX_KEY_PREFIX_LEN / 2 + NX_KEY_SECRET_BYTES];

    if (out == NULL) {
        return -1;
    }

    if (RAND_bytes(rnd, (int) sizeof(rnd)) != 1) {
        OPENSSL_cleanse(rnd, sizeof(rnd));
        OPENSSL_cleanse(out, sizeof(*out));
        return -1;
    }

    p = out->key;
    memcpy(p, "nx_", 3);
    p += 3;
    nx_key_hex_encode(p, rnd, NX_KEY_PREFIX_LEN / 2);
    p += NX_KEY_PREFIX_LEN;
    *p++ = '_';
    nx_key_hex_encode(p, rnd + NX_KEY_PREFIX_LEN / 2, NX_KEY_SECRET_BYTES);
    p += NX_KEY_SECRET_LEN;
    *p = '\0';

    OPENSSL_cleanse(rnd, sizeof(rnd));

    memcpy(out->prefix, out->key + 3, NX_KEY_PREFIX_LEN);
    out->prefix[NX_KEY_PREFIX_LEN] = '\0';

    if (nx_key_hash(pepper, pepper_len, out->key, NX_KEY_LEN, out->hash)
        != 0)
    {
        OPENSSL_cleanse(out, sizeof(*out));
        return -1;
    }

    return 0;
}


int
nx_key_parse(const char *buf, size_t len, char *prefix)
{
    if (buf == NULL || len != NX_KEY_LEN) {
        return -1;
    }

    if (buf[0] != 'n' || buf[1] != 'x' || buf[2] != '_'
        || buf[3 + NX_KEY_PREFIX_LEN] != '_')
    {
        return -1;
    }

    if (nx_key_lower_hex(buf + 3, NX_KEY_PREFIX_LEN) != 0
        || nx_key_lower_hex(buf + 4 + NX_KEY_PREFIX_LEN, NX_KEY_SECRET_LEN)
           != 0)
    {
        return -1;
    }

    if (prefix != NULL) {
        memcpy(prefix, buf + 3, NX_KEY_PREFIX_LEN);
        prefix[NX_KEY_PREFIX_LEN] = '\0';
    }

    return 0;
}


int
nx_key_prefix_valid(const char *s, size_t len)
{
    if (s == NULL || len != NX_KEY_PREFIX_LEN) {
        return -1;
    }

    return nx_key_lower_hex(s, len);
}


/*
 * A pepper outside NX_PEPPER_MIN..NX_PEPPER_MAX is refused: an empty or
 * short pepper is a configuration mistake that would silently weaken every
 * stored hash.
 */

int
nx_key_hash(const uint8_t *pepper, size_t pepper_len, const char *buf,
    size_t len, uint8_t out[NX_HASH_LEN])
{
    unsigned int  mdlen;

    if (pepper == NULL || out == NULL
        || pepper_len < NX_PEPPER_MIN || pepper_len > NX_PEPPER_MAX
        || (buf == NULL && len != 0))
    {
        return -1;
    }

    if (buf == NULL) {
        buf = "";
    }

    mdlen = 0;

    if (HMAC(EVP_sha256(), pepper, (int) pepper_len,
             (const unsigned char *) buf, len, out, &mdlen)
        == NULL || mdlen != NX_HASH_LEN)
    {
        OPENSSL_cleanse(out, NX_HASH_LEN);
        return -1;
    }

    return 0;
}


/*
 * HMAC as RFC 2104 defines it: H((K ^ opad) || H((K ^ ipad) || m)), K the
 * pepper zero-padded to SHA-256's 64-byte block (hashed first if longer).
 */

#define NX_KEY_BLOCK  64

struct nx_key_hasher_s {
    SHA256_CTX  inner;      /* after the block K ^ ipad */
    SHA256_CTX  outer;      /* after the block K ^ opad */
};


nx_key_hasher_t *
nx_key_hasher_new(const uint8_t *pepper, size_t pepper_len)
{
    int               ok;
    size_t            i;
    unsigned char     block[NX_KEY_BLOCK];
    nx_key_hasher_t  *h;

    if (pepper == NULL
        || pepper_len < NX_PEPPER_MIN || pepper_len > NX_PEPPER_MAX)
    {
        return NULL;
    }

    h = calloc(1, sizeof(nx_key_hasher_t));

    if (h == NULL) {
        return NULL;
    }

    memset(block, 0, sizeof(block));

    if (pepper_len > NX_KEY_BLOCK) {
        ok = SHA256(pepper, pepper_len, block) != NULL;

    } else {
        memcpy(block, pepper, pepper_len);
        ok = 1;
    }

    for (i = 0; i < NX_KEY_BLOCK; i++) {
        block[i] ^= 0x36;
    }

    ok = ok && SHA256_Init(&h->inner)
            && SHA256_Update(&h->inner, block, NX_KEY_BLOCK);

    for (i = 0; i < NX_KEY_BLOCK; i++) {
        block[i] ^= 0x36 ^ 0x5c;
    }

    ok = ok && SHA256_Init(&h->outer)
            && SHA256_Update(&h->outer, block, NX_KEY_BLOCK);

    OPENSSL_cleanse(block, sizeof(block));

    if (!ok) {
        nx_key_hasher_free(h);
        return NULL;
    }

    return h;
}


int
nx_key_hasher_run(nx_key_hasher_t *h, const char *buf, size_t len,
    uint8_t out[NX_HASH_LEN])
{
    int            ok;
    SHA256_CTX     work;
    unsigned char  ih[NX_HASH_LEN];

    if (h == NULL || out == NULL || (buf == NULL && len != 0)) {
        return -1;
    }

    work = h->inner;
    ok = SHA256_Update(&work, buf, len) && SHA256_Final(ih, &work);

    work = h->outer;
    ok = ok && SHA256_Update(&work, ih, sizeof(ih)) && SHA256_Final(out, &work);

    OPENSSL_cleanse(&work, sizeof(work));
    OPENSSL_cleanse(ih, sizeof(ih));

    if (!ok) {
        OPENSSL_cleanse(out, NX_HASH_LEN);
        return -1;
    }

    return 0;
}


void
nx_key_hasher_free(nx_key_hasher_t *h)
{
    if (h == NULL) {
        return;
    }

    OPENSSL_cleanse(h, sizeof(nx_key_hasher_t));
    free(h);
}


int
nx_ct_equal(const void *a, const void *b, size_t n)
{
    if (n == 0) {
        return 1;
    }

    return CRYPTO_memcmp(a, b, n) == 0;
}


/*
 * The whole of a small secret file, for the pepper and the seal key: what
 * names it in messages, which never quote the content. A file that fills
 * buf may be larger: the caller decides.
 */

ssize_t
nx_secret_file_read(const char *path, const char *what, unsigned char *buf,
    size_t size, char *errbuf, size_t errlen)
{
    int          fd;
    char         ebuf[128];
    size_t       n;
    ssize_t      r;
    struct stat  st;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        nx_key_error(errbuf, errlen, "%s \"%s\": open: %s", what, path,
                     strerror_r(errno, ebuf, sizeof(ebuf)));
        return -1;
    }

    if (fstat(fd, &st) == -1) {
        nx_key_error(errbuf, errlen, "%s \"%s\": fstat: %s", what, path,
                     strerror_r(errno, ebuf, sizeof(ebuf)));
        (void) close(fd);
        return -1;
    }

    if (S_ISDIR(st.st_mode)) {
        nx_key_error(errbuf, errlen, "%s \"%s\" is a directory", what, path);
        (void) close(fd);
        return -1;
    }

    n = 0;

    while (n < size) {
        r = read(fd, buf + n, size - n);

        if (r == -1) {
            if (errno == EINTR) {
                continue;
            }

            nx_key_error(errbuf, errlen, "%s \"%s\": read: %s", what, path,
                         strerror_r(errno, ebuf, sizeof(ebuf)));
            OPENSSL_cleanse(buf, n);
            (void) close(fd);
            return -1;
        }

        if (r == 0) {
            break;
        }

        n += (size_t) r;
    }

    (void) close(fd);

    return (ssize_t) n;
}


/*
 * The file holds either a hex string, optionally followed by "\n" or
 * "\r\n", or raw bytes. Content that is entirely hex digits is taken as
 * hex (a random raw pepper of 32 bytes or more is all hex digits with
 * negligible probability); anything else is raw and used byte for byte.
 * Messages name the file and sizes, never its content.
 */

int
nx_pepper_load(const char *path, uint8_t *out, size_t outsz, char *errbuf,
    size_t errlen)
{
    int           hi, lo, rc;
    size_t        n, body, plen, i;
    ssize_t       r;
    unsigned char buf[NX_PEPPER_FILE_MAX];

    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }

    if (path == NULL || out == NULL) {
        nx_key_error(errbuf, errlen, "pepper file: no path or buffer");
        return -1;
    }

    r = nx_secret_file_read(path, "pepper file", buf, sizeof(buf), errbuf,
                            errlen);
    if (r == -1) {
        return -1;
    }

    rc = -1;
    n = (size_t) r;

    body = n;

    if (body > 0 && buf[body - 1] == '\n') {
        body--;

        if (body > 0 && buf[body - 1] == '\r') {
            body--;
        }
    }

    for (i = 0; i < body; i++) {
        if (nx_hex_value(buf[i]) < 0) {
            break;
        }
    }

    if (body > 0 && i == body) {

        if (body % 2 != 0) {
            nx_key_error(errbuf, errlen, "pepper file \"%s\": odd number "
                         "of hex digits (%zu)", path, body);
            goto done;
        }

        plen = body / 2;

    } else {
        body = 0;
        plen = n;
    }

    if (plen < NX_PEPPER_MIN || plen > NX_PEPPER_MAX) {
        nx_key_error(errbuf, errlen, "pepper file \"%s\": pepper is %s%zu "
                     "bytes %s, it must be %d..%d bytes", path,
                     n == sizeof(buf) ? "at least " : "", plen,
                     body ? "(hex-decoded)" : "(raw)",
                     NX_PEPPER_MIN, NX_PEPPER_MAX);
        goto done;
    }

    if (plen > outsz) {
        nx_key_error(errbuf, errlen, "pepper file \"%s\": pepper is %zu "
                     "bytes, the buffer holds %zu", path, plen, outsz);
        goto done;
    }

    if (body) {
        for (i = 0; i < plen; i++) {
            hi = nx_hex_value(buf[2 * i]);
            lo = nx_hex_value(buf[2 * i + 1]);
            out[i] = (uint8_t) ((hi << 4) | lo);
        }

    } else {
        memcpy(out, buf, plen);
    }

    rc = (int) plen;

done:

    OPENSSL_cleanse(buf, sizeof(buf));

    return rc;
}


/* 0 if s[0..len) is non-empty lowercase hex, -1 otherwise */

static int
nx_key_lower_hex(const char *s, size_t len)
{
    size_t  i;

    if (len == 0) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return -1;
        }
    }

    return 0;
}


static void
nx_key_hex_encode(char *dst, const uint8_t *src, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        *dst++ = nx_key_hex_digits[src[i] >> 4];
        *dst++ = nx_key_hex_digits[src[i] & 0x0f];
    }
}


/* pepper and seal key files may use either case */

int
nx_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


static void
nx_key_error(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (errbuf == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(errbuf, errlen, fmt, args);
    va_end(args);
}
