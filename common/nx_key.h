/*
 * Copyright (C) Nexus authors
 *
 * API key format: "nx_<prefix>_<secret>".
 *   prefix: NX_KEY_PREFIX_LEN lowercase hex characters (random, unique,
 *           stored in clear for display and lookup);
 *   secret: NX_KEY_SECRET_LEN lowercase hex characters encoding
 *           NX_KEY_SECRET_BYTES random bytes.
 * Only HMAC-SHA256(pepper, whole key) is ever stored.
 */

#ifndef NX_KEY_H
#define NX_KEY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NX_KEY_PREFIX_LEN    12
#define NX_KEY_SECRET_BYTES  32
#define NX_KEY_SECRET_LEN    (NX_KEY_SECRET_BYTES * 2)
/* "nx_" + prefix + "_" + secret */
#define NX_KEY_LEN           (3 + NX_KEY_PREFIX_LEN + 1 + NX_KEY_SECRET_LEN)
#define NX_HASH_LEN          32
#define NX_PEPPER_MIN        32
#define NX_PEPPER_MAX        256

typedef struct {
    char     key[NX_KEY_LEN + 1];              /* NUL-terminated */
    char     prefix[NX_KEY_PREFIX_LEN + 1];    /* NUL-terminated */
    uint8_t  hash[NX_HASH_LEN];
} nx_key_t;

/*
 * Generates a new key from the OS CSPRNG (OpenSSL RAND_bytes) and computes
 * its hash. Returns 0 on success, -1 if randomness is unavailable (or the
 * pepper is refused, see nx_key_hash).
 */
int nx_key_generate(const uint8_t *pepper, size_t pepper_len, nx_key_t *out);

/*
 * Checks that buf[0..len) is exactly a well-formed key. Never reads past
 * len; rejects NUL and non-ASCII bytes. On success returns 0 and, when
 * prefix is not NULL, copies the NUL-terminated prefix into it
 * (NX_KEY_PREFIX_LEN + 1 bytes). Returns -1 otherwise.
 */
int nx_key_parse(const char *buf, size_t len, char *prefix);

/* Checks that s[0..len) is a well-formed prefix. 0 if so, -1 otherwise. */
int nx_key_prefix_valid(const char *s, size_t len);

/* out = HMAC-SHA256(pepper, buf[0..len)). Returns 0, or -1 on failure,
 * which includes a pepper outside NX_PEPPER_MIN..NX_PEPPER_MAX bytes. */
int nx_key_hash(const uint8_t *pepper, size_t pepper_len,
    const char *buf, size_t len, uint8_t out[NX_HASH_LEN]);

/*
 * The same HMAC for many keys under one pepper, without redoing the
 * pepper's part each time: the states after the padded pepper's inner and
 * outer blocks are computed once, and each hash starts from copies of
 * them (about a sixth of the one-shot HMAC's time, which fetches the
 * digest and allocates its contexts on every call). A hasher is not
 * thread-safe: it hashes in a context of its own. It holds pepper-derived
 * state: free it with nx_key_hasher_free(), which wipes it.
 */
typedef struct nx_key_hasher_s  nx_key_hasher_t;

/* NULL if the pepper is refused (as by nx_key_hash) or memory runs out. */
nx_key_hasher_t *nx_key_hasher_new(const uint8_t *pepper, size_t pepper_len);
/* As nx_key_hash under the hasher's pepper. */
int nx_key_hasher_run(nx_key_hasher_t *h, const char *buf, size_t len,
    uint8_t out[NX_HASH_LEN]);
void nx_key_hasher_free(nx_key_hasher_t *h);

/* Constant-time comparison of n bytes: 1 if equal, 0 otherwise. */
int nx_ct_equal(const void *a, const void *b, size_t n);

/*
 * Loads a pepper from a file: either raw bytes or a hex string (optionally
 * followed by a newline); hex is decoded. A file whose content (less one
 * trailing "\n" or "\r\n") is all hex digits, either case, is hex. The
 * decoded pepper must be NX_PEPPER_MIN..NX_PEPPER_MAX bytes. Reads at most
 * 4 KiB.
 * Returns the pepper length, or -1 with errbuf (errlen bytes) describing
 * the problem; the error never contains pepper material.
 */
int nx_pepper_load(const char *path, uint8_t *out, size_t outsz,
    char *errbuf, size_t errlen);

/*
 * Reads a small secret file whole into buf[0..size): the bytes read (size
 * when the file may be larger), or -1 with errbuf saying why, naming the
 * file as what (e.g. "pepper file"). Never quotes the content.
 */
ssize_t nx_secret_file_read(const char *path, const char *what,
    unsigned char *buf, size_t size, char *errbuf, size_t errlen);

/* The value of one hex digit, either case, or -1. */
int nx_hex_value(unsigned char c);

#endif /* NX_KEY_H */
