/*
 * Copyright (C) Nexus authors
 *
 * Secrets sealed at rest: AES-256-GCM under one master key, bound to what
 * they belong to.  A sealed value is
 *
 *     0x01 | key id (8) | nonce (12) | ciphertext | tag (16)
 *
 * The key id is the first 8 bytes of SHA-256("nexus seal key id" | key),
 * so a value sealed under another key is told apart from a forged one.
 * The additional authenticated data is
 *
 *     "nexus-seal-v1" NUL purpose NUL tenant id (decimal)
 *
 * so a sealed webhook secret copied to another tenant's row, or into a
 * column with another purpose, does not open.
 */

#ifndef NX_SEAL_H
#define NX_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define NX_SEAL_KEY_LEN      32
#define NX_SEAL_KEY_ID_LEN   8
#define NX_SEAL_NONCE_LEN    12
#define NX_SEAL_TAG_LEN      16
#define NX_SEAL_VERSION      1
#define NX_SEAL_OVERHEAD     (1 + NX_SEAL_KEY_ID_LEN + NX_SEAL_NONCE_LEN     \
                              + NX_SEAL_TAG_LEN)

/* a sealed secret is small: a webhook secret, a credential */
#define NX_SEAL_PLAIN_MAX    4096

#define NX_SEAL_OK           0
#define NX_SEAL_EINVAL      -1      /* bad arguments, too long */
#define NX_SEAL_EFORMAT     -2      /* not a sealed value of a known version */
#define NX_SEAL_EKEY        -3      /* sealed under another key */
#define NX_SEAL_EAUTH       -4      /* tampered, or another tenant/purpose */
#define NX_SEAL_ECRYPTO     -5      /* OpenSSL failed (no randomness, ...) */

typedef struct {
    uint8_t  key[NX_SEAL_KEY_LEN];
    uint8_t  id[NX_SEAL_KEY_ID_LEN];
} nx_seal_key_t;

/* Sets up k from NX_SEAL_KEY_LEN raw bytes. 0, or NX_SEAL_EINVAL. */
int nx_seal_key_init(nx_seal_key_t *k, const uint8_t *raw, size_t len);

/*
 * Loads the master key from a file: 32 raw bytes, or 64 hex digits
 * (either case) optionally followed by "\n" or "\r\n".  Reads at most
 * 4 KiB.  Returns 0, or -1 with errbuf describing the problem; the message
 * never contains key material.
 */
int nx_seal_key_load(const char *path, nx_seal_key_t *k, char *errbuf,
    size_t errlen);

void nx_seal_key_wipe(nx_seal_key_t *k);

/* bytes of the sealed form of a plain text of len bytes */
size_t nx_seal_len(size_t len);

/*
 * Seals plain[0..len) into out (nx_seal_len(len) bytes) with a fresh
 * random nonce.  purpose is a short NUL-terminated label ("webhook").
 * Returns NX_SEAL_OK, NX_SEAL_EINVAL or NX_SEAL_ECRYPTO.
 */
int nx_seal(const nx_seal_key_t *k, const char *purpose, int64_t tenant_id,
    const uint8_t *plain, size_t len, uint8_t *out);

/*
 * Opens sealed[0..len) into out, which must hold len - NX_SEAL_OVERHEAD
 * bytes; *outlen is set to the plain text's length.  Never reads past
 * len.  Returns NX_SEAL_OK or a negative NX_SEAL_E* code; on failure out
 * is wiped.
 */
int nx_seal_open(const nx_seal_key_t *k, const char *purpose,
    int64_t tenant_id, const uint8_t *sealed, size_t len, uint8_t *out,
    size_t *outlen);

/* A short fixed message for a NX_SEAL_E* code. */
const char *nx_seal_strerror(int rc);

#endif /* NX_SEAL_H */
