/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_seal: AES-256-GCM sealing with the tenant and the
 * purpose bound as additional data, a known answer computed with Node's
 * crypto module, tampering, another key, truncation, and key files.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nx_seal.h"


/* key 00..1f, nonce 00..0b, "webhook", tenant 42, "whsec_test" (Node) */
#define KAT_SEALED                                                           \
    "01f025d978da7da9c6000102030405060708090a0b306aa57ea6bab67efe35103dfa"   \
    "3271ed05c1115470347b0fbbfe"


static nx_seal_key_t  key1, key2;


static size_t
hex_decode(const char *hex, uint8_t *out)
{
    size_t        i;
    unsigned int  b;

    for (i = 0; hex[2 * i] != '\0'; i++) {
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (uint8_t) b;
    }

    return i;
}


static int
setup(void **state)
{
    size_t   i;
    uint8_t  raw[NX_SEAL_KEY_LEN];

    (void) state;

    for (i = 0; i < sizeof(raw); i++) {
        raw[i] = (uint8_t) i;
    }

    assert_int_equal(nx_seal_key_init(&key1, raw, sizeof(raw)), 0);

    raw[0] = 0xff;
    assert_int_equal(nx_seal_key_init(&key2, raw, sizeof(raw)), 0);

    return 0;
}


static char *
write_tmp(const void *data, size_t len)
{
    int    fd;
    char  *path;

    path = strdup("/tmp/nx_seal_test.XXXXXX");
    assert_non_null(path);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t) len);
    close(fd);

    return path;
}


static void
test_known_answer(void **state)
{
    size_t   n, outlen;
    uint8_t  sealed[128], out[128];

    (void) state;

    n = hex_decode(KAT_SEALED, sealed);
    assert_int_equal(n, nx_seal_len(10));

    assert_int_equal(nx_seal_open(&key1, "webhook", 42, sealed, n, out,
                                  &outlen), NX_SEAL_OK);
    assert_int_equal(outlen, 10);
    assert_memory_equal(out, "whsec_test", 10);
}


static void
test_round_trip(void **state)
{
    size_t   outlen, len;
    uint8_t  sealed[256], sealed2[256], out[256];

    static const char  secret[] = "s3cr3t-with-some-length-0123456789";

    (void) state;

    len = sizeof(secret) - 1;

    assert_int_equal(nx_seal(&key1, "webhook", 7, (const uint8_t *) secret,
                             len, sealed), NX_SEAL_OK);
    assert_int_equal(sealed[0], NX_SEAL_VERSION);
    assert_memory_equal(sealed + 1, key1.id, NX_SEAL_KEY_ID_LEN);

    /* no plain text in the sealed form */
    assert_null(memmem(sealed, nx_seal_len(len), "s3cr3t", 6));

    assert_int_equal(nx_seal_open(&key1, "webhook", 7, sealed,
                                  nx_seal_len(len), out, &outlen),
                     NX_SEAL_OK);
    assert_int_equal(outlen, len);
    assert_memory_equal(out, secret, len);

    /* a fresh nonce each time */
    assert_int_equal(nx_seal(&key1, "webhook", 7, (const uint8_t *) secret,
                             len, sealed2), NX_SEAL_OK);
    assert_memory_not_equal(sealed, sealed2, nx_seal_len(len));

    /* the empty secret seals too */
    assert_int_equal(nx_seal(&key1, "webhook", 7, NULL, 0, sealed),
                     NX_SEAL_OK);
    assert_int_equal(nx_seal_open(&key1, "webhook", 7, sealed,
                                  NX_SEAL_OVERHEAD, out, &outlen),
                     NX_SEAL_OK);
    assert_int_equal(outlen, 0);
}


static void
test_binding(void **state)
{
    size_t   outlen;
    uint8_t  sealed[64], out[64];

    (void) state;

    assert_int_equal(nx_seal(&key1, "webhook", 7, (const uint8_t *) "abc", 3,
                             sealed), NX_SEAL_OK);

    /* another tenant, another purpose, another key */
    assert_int_equal(nx_seal_open(&key1, "webhook", 8, sealed,
                                  nx_seal_len(3), out, &outlen),
                     NX_SEAL_EAUTH);
    assert_int_equal(nx_seal_open(&key1, "provider", 7, sealed,
                                  nx_seal_len(3), out, &outlen),
                     NX_SEAL_EAUTH);
    assert_int_equal(nx_seal_open(&key1, "webhook", -7, sealed,
                                  nx_seal_len(3), out, &outlen),
                     NX_SEAL_EAUTH);
    assert_int_equal(nx_seal_open(&key2, "webhook", 7, sealed,
                                  nx_seal_len(3), out, &outlen),
                     NX_SEAL_EKEY);
    assert_int_equal(outlen, 0);

    /* a purpose is required */
    assert_int_equal(nx_seal(&key1, "", 7, (const uint8_t *) "abc", 3,
                             sealed), NX_SEAL_EINVAL);
    assert_int_equal(nx_seal(&key1, NULL, 7, (const uint8_t *) "abc", 3,
                             sealed), NX_SEAL_EINVAL);
}


static void
test_tamper(void **state)
{
    size_t   i, n, outlen;
    uint8_t  sealed[64], out[64];

    (void) state;

    n = nx_seal_len(5);
    assert_int_equal(nx_seal(&key1, "webhook", 1, (const uint8_t *) "hello",
                             5, sealed), NX_SEAL_OK);

    for (i = 0; i < n; i++) {
        sealed[i] ^= 0x01;

        assert_int_not_equal(nx_seal_open(&key1, "webhook", 1, sealed, n, out,
                                          &outlen), NX_SEAL_OK);
        assert_int_equal(outlen, 0);

        sealed[i] ^= 0x01;
    }

    assert_int_equal(nx_seal_open(&key1, "webhook", 1, sealed, n, out,
                                  &outlen), NX_SEAL_OK);

    /* truncated anywhere, or extended */
    for (i = 0; i < n; i++) {
        assert_int_not_equal(nx_seal_open(&key1, "webhook", 1, sealed, i, out,
                                          &outlen), NX_SEAL_OK);
    }

    sealed[n] = 0;
    assert_int_equal(nx_seal_open(&key1, "webhook", 1, sealed, n + 1, out,
                                  &outlen), NX_SEAL_EAUTH);

    sealed[0] = 2;
    assert_int_equal(nx_seal_open(&key1, "webhook", 1, sealed, n, out,
                                  &outlen), NX_SEAL_EFORMAT);
}


static void
test_limits(void **state)
{
    uint8_t  *big, *sealed;

    (void) state;

    big = calloc(1, NX_SEAL_PLAIN_MAX + 1);
    sealed = calloc(1, nx_seal_len(NX_SEAL_PLAIN_MAX + 1));
    assert_non_null(big);
    assert_non_null(sealed);

    assert_int_equal(nx_seal(&key1, "webhook", 1, big, NX_SEAL_PLAIN_MAX,
                             sealed), NX_SEAL_OK);
    assert_int_equal(nx_seal(&key1, "webhook", 1, big, NX_SEAL_PLAIN_MAX + 1,
                             sealed), NX_SEAL_EINVAL);

    assert_int_equal(nx_seal_key_init(&key2, big, 16), NX_SEAL_EINVAL);

    free(big);
    free(sealed);
}


static void
test_key_files(void **state)
{
    char           *path, err[256], line[80];
    size_t          i;
    nx_seal_key_t   k;
    unsigned char   raw[NX_SEAL_KEY_LEN];

    static const char  hex[] =
        "000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f";

    (void) state;

    path = write_tmp(hex, sizeof(hex) - 1);
    assert_int_equal(nx_seal_key_load(path, &k, err, sizeof(err)), 0);
    assert_memory_equal(k.key, key1.key, NX_SEAL_KEY_LEN);
    assert_memory_equal(k.id, key1.id, NX_SEAL_KEY_ID_LEN);
    unlink(path);
    free(path);

    memcpy(line, hex, sizeof(hex) - 1);
    memcpy(line + sizeof(hex) - 1, "\r\n", 2);
    path = write_tmp(line, sizeof(hex) + 1);
    assert_int_equal(nx_seal_key_load(path, &k, err, sizeof(err)), 0);
    assert_memory_equal(k.key, key1.key, NX_SEAL_KEY_LEN);
    unlink(path);
    free(path);

    for (i = 0; i < sizeof(raw); i++) {
        raw[i] = (unsigned char) (0xe0 + i);
    }

    path = write_tmp(raw, sizeof(raw));
    assert_int_equal(nx_seal_key_load(path, &k, err, sizeof(err)), 0);
    assert_memory_equal(k.key, raw, NX_SEAL_KEY_LEN);
    unlink(path);
    free(path);

    /* 32 hex digits: a 16-byte key, refused; the message shows no key */
    path = write_tmp(hex, 32);
    assert_int_equal(nx_seal_key_load(path, &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "64 hex digits"));
    assert_null(strstr(err, "0001020304"));
    unlink(path);
    free(path);

    path = write_tmp("zz", 2);
    assert_int_equal(nx_seal_key_load(path, &k, err, sizeof(err)), -1);
    unlink(path);
    free(path);

    assert_int_equal(nx_seal_key_load("/nonexistent/seal.key", &k, err,
                                      sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/seal.key"));

    assert_int_equal(nx_seal_key_load("/tmp", &k, err, sizeof(err)), -1);

    nx_seal_key_wipe(&k);
    for (i = 0; i < sizeof(k.key); i++) {
        assert_int_equal(k.key[i], 0);
    }

    assert_string_equal(nx_seal_strerror(NX_SEAL_EKEY),
                        "sealed under another key");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_binding),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_key_files),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
