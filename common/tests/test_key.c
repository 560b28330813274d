/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_key: key generation, parsing, HMAC-SHA256 hashing
 * against RFC 4231 and openssl(1), constant-time comparison and pepper
 * file loading.
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

#include "nx_key.h"


#define GOOD_KEY  "nx_0123456789ab_" \
                  "0123456789abcdef0123456789abcdef" \
                  "0123456789abcdef0123456789abcdef"


static uint8_t  pepper32[32];


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


static int
setup_pepper(void **state)
{
    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(pepper32); i++) {
        pepper32[i] = (uint8_t) i;
    }

    return 0;
}


/* writes data to a new temporary file; the caller unlinks it */

static char *
write_temp(const void *data, size_t len)
{
    int    fd;
    char  *path;

    path = strdup("/tmp/nx_test_pepper_XXXXXX");
    assert_non_null(path);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t) len);
    assert_int_equal(close(fd), 0);

    return path;
}


static int
load_bytes(const void *data, size_t len, uint8_t *out, size_t outsz,
    char *err, size_t errlen)
{
    int    rc;
    char  *path;

    path = write_temp(data, len);
    rc = nx_pepper_load(path, out, outsz, err, errlen);
    unlink(path);
    free(path);

    return rc;
}


static void
test_parse_good(void **state)
{
    char  prefix[NX_KEY_PREFIX_LEN + 1];

    (void) state;

    assert_int_equal(strlen(GOOD_KEY), NX_KEY_LEN);

    memset(prefix, 'x', sizeof(prefix));
    assert_int_equal(nx_key_parse(GOOD_KEY, NX_KEY_LEN, prefix), 0);
    assert_string_equal(prefix, "0123456789ab");

    assert_int_equal(nx_key_parse(GOOD_KEY, NX_KEY_LEN, NULL), 0);
}


static void
test_parse_length(void **state)
{
    char  buf[NX_KEY_LEN + 2];

    (void) state;

    memcpy(buf, GOOD_KEY, NX_KEY_LEN);
    buf[NX_KEY_LEN] = 'a';
    buf[NX_KEY_LEN + 1] = '\0';

    assert_int_equal(nx_key_parse(buf, NX_KEY_LEN + 1, NULL), -1);
    assert_int_equal(nx_key_parse(buf, NX_KEY_LEN - 1, NULL), -1);
    assert_int_equal(nx_key_parse(buf, 0, NULL), -1);
    assert_int_equal(nx_key_parse("", 0, NULL), -1);
    assert_int_equal(nx_key_parse(NULL, 0, NULL), -1);

    /* the trailing byte beyond len is not looked at */
    assert_int_equal(nx_key_parse(buf, NX_KEY_LEN, NULL), 0);
}


static void
test_parse_bad_bytes(void **state)
{
    size_t         i;
    char           buf[NX_KEY_LEN];
    char           prefix[NX_KEY_PREFIX_LEN + 1];
    static const unsigned char  bad[] = {
        '\0', '\t', ' ', 'A', 'F', 'g', 'z', '-', '_', 0x7f, 0x80, 0xc3, 0xff
    };

    (void) state;

    /* every position, every kind of wrong byte */

    for (i = 0; i < NX_KEY_LEN; i++) {
        size_t  b;

        for (b = 0; b < sizeof(bad); b++) {
            memcpy(buf, GOOD_KEY, NX_KEY_LEN);

            if ((unsigned char) buf[i] == bad[b]) {
                continue;
            }

            buf[i] = (char) bad[b];
            memset(prefix, 0, sizeof(prefix));

            assert_int_equal(nx_key_parse(buf, NX_KEY_LEN, prefix), -1);
            assert_string_equal(prefix, "");
        }
    }
}


static void
test_parse_structure(void **state)
{
    (void) state;

    /* upper case hex, wrong tag, misplaced separators */
    assert_int_equal(nx_key_parse("NX_0123456789ab_"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        NX_KEY_LEN, NULL), -1);
    assert_int_equal(nx_key_parse("nx_0123456789AB_"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        NX_KEY_LEN, NULL), -1);
    assert_int_equal(nx_key_parse("nx-0123456789ab_"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        NX_KEY_LEN, NULL), -1);
    assert_int_equal(nx_key_parse("nx_0123456789a_b"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        NX_KEY_LEN, NULL), -1);
    assert_int_equal(nx_key_parse("nx_0123456789abc_"
        "123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        NX_KEY_LEN, NULL), -1);
    assert_int_equal(nx_key_parse("sk_0123456789ab_"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        NX_KEY_LEN, NULL), -1);
}


static void
test_prefix_valid(void **state)
{
    (void) state;

    assert_int_equal(nx_key_prefix_valid("0123456789ab", 12), 0);
    assert_int_equal(nx_key_prefix_valid("abcdefabcdef", 12), 0);
    assert_int_equal(nx_key_prefix_valid("0123456789abc", 13), -1);
    assert_int_equal(nx_key_prefix_valid("0123456789a", 11), -1);
    assert_int_equal(nx_key_prefix_valid("0123456789aB", 12), -1);
    assert_int_equal(nx_key_prefix_valid("0123456789ag", 12), -1);
    assert_int_equal(nx_key_prefix_valid("0123456789a\0", 12), -1);
    assert_int_equal(nx_key_prefix_valid("0123456789a\xff", 12), -1);
    assert_int_equal(nx_key_prefix_valid("", 0), -1);
    assert_int_equal(nx_key_prefix_valid(NULL, 12), -1);

    /* only len bytes count */
    assert_int_equal(nx_key_prefix_valid("0123456789abXYZ", 12), 0);
}


static void
test_hash_rfc4231_case6(void **state)
{
    uint8_t      key[131], out[NX_HASH_LEN], expect[NX_HASH_LEN];
    const char  *data = "Test Using Larger Than Block-Size Key - "
                        "Hash Key First";

    (void) state;

    memset(key, 0xaa, sizeof(key));
    hex_decode("60e431591ee0b67f0d8a26aacbf5b77f"
               "8e0bc6213728c5140546040f0ee37f54", expect);

    assert_int_equal(nx_key_hash(key, sizeof(key), data, strlen(data), out),
                     0);
    assert_memory_equal(out, expect, NX_HASH_LEN);
}


static void
test_hash_rfc4231_case7(void **state)
{
    uint8_t      key[131], out[NX_HASH_LEN], expect[NX_HASH_LEN];
    const char  *data = "This is a test using a larger than block-size key "
                        "and a larger than block-size data. The key needs "
                        "to be hashed before being used by the HMAC "
                        "algorithm.";

    (void) state;

    memset(key, 0xaa, sizeof(key));
    hex_decode("9b09ffa71b942fcb27635fbcd5b0e944"
               "bfdc63644f0713938a7f51535c3a35e2", expect);

    assert_int_equal(nx_key_hash(key, sizeof(key), data, strlen(data), out),
                     0);
    assert_memory_equal(out, expect, NX_HASH_LEN);
}


/*
 * printf 'nx_0123...' | openssl dgst -sha256 -mac HMAC \
 *     -macopt hexkey:000102...1f
 */

static void
test_hash_openssl_cli(void **state)
{
    uint8_t  out[NX_HASH_LEN], expect[NX_HASH_LEN];

    (void) state;

    hex_decode("739d393e73d0e3ddf9d5663c7b22d37d"
               "a5016284ae21c7782e5b0ea99b0f17dd", expect);

    assert_int_equal(nx_key_hash(pepper32, sizeof(pepper32), GOOD_KEY,
                                 NX_KEY_LEN, out), 0);
    assert_memory_equal(out, expect, NX_HASH_LEN);
}


static void
test_hash_pepper_bounds(void **state)
{
    uint8_t  big[NX_PEPPER_MAX + 1], out[NX_HASH_LEN];

    (void) state;

    memset(big, 0x5a, sizeof(big));

    assert_int_equal(nx_key_hash(big, NX_PEPPER_MIN, "k", 1, out), 0);
    assert_int_equal(nx_key_hash(big, NX_PEPPER_MAX, "k", 1, out), 0);
    assert_int_equal(nx_key_hash(big, NX_PEPPER_MIN - 1, "k", 1, out), -1);
    assert_int_equal(nx_key_hash(big, NX_PEPPER_MAX + 1, "k", 1, out), -1);
    assert_int_equal(nx_key_hash(big, 0, "k", 1, out), -1);
    assert_int_equal(nx_key_hash(NULL, 32, "k", 1, out), -1);
    assert_int_equal(nx_key_hash(big, 32, NULL, 1, out), -1);
    assert_int_equal(nx_key_hash(big, 32, NULL, 0, out), 0);
    assert_int_equal(nx_key_hash(big, 32, "k", 1, NULL), -1);
}


/* the hasher gives nx_key_hash's answer for every pepper size and input */

static void
test_hasher_matches_hmac(void **state)
{
    size_t            plen, mlen, i;
    uint8_t           pepper[NX_PEPPER_MAX], a[NX_HASH_LEN], b[NX_HASH_LEN];
    char              msg[300];
    nx_key_hasher_t  *h;

    static const size_t  plens[] = { NX_PEPPER_MIN, 63, 64, 65, 131,
                                     NX_PEPPER_MAX };

    (void) state;

    for (i = 0; i < sizeof(pepper); i++) {
        pepper[i] = (uint8_t) (i * 7 + 3);
    }

    for (i = 0; i < sizeof(msg); i++) {
        msg[i] = (char) ('a' + i % 26);
    }

    for (i = 0; i < sizeof(plens) / sizeof(plens[0]); i++) {
        plen = plens[i];
        h = nx_key_hasher_new(pepper, plen);
        assert_non_null(h);

        for (mlen = 0; mlen <= sizeof(msg); mlen += 37) {
            assert_int_equal(nx_key_hash(pepper, plen, msg, mlen, a), 0);
            assert_int_equal(nx_key_hasher_run(h, msg, mlen, b), 0);
            assert_memory_equal(a, b, NX_HASH_LEN);
        }

        /* again, from the same states: a run leaves them as they were */
        assert_int_equal(nx_key_hasher_run(h, GOOD_KEY, NX_KEY_LEN, a), 0);
        assert_int_equal(nx_key_hasher_run(h, GOOD_KEY, NX_KEY_LEN, b), 0);
        assert_memory_equal(a, b, NX_HASH_LEN);
        assert_int_equal(nx_key_hasher_run(h, NULL, 0, a), 0);
        assert_int_equal(nx_key_hasher_run(h, NULL, 1, a), -1);
        assert_int_equal(nx_key_hasher_run(h, "k", 1, NULL), -1);

        nx_key_hasher_free(h);
    }

    assert_null(nx_key_hasher_new(pepper, NX_PEPPER_MIN - 1));
    assert_null(nx_key_hasher_new(NULL, NX_PEPPER_MIN));
    nx_key_hasher_free(NULL);
}


static void
test_hash_depends_on_everything(void **state)
{
    uint8_t  a[NX_HASH_LEN], b[NX_HASH_LEN], p2[32];

    (void) state;

    memcpy(p2, pepper32, sizeof(p2));
    p2[31] ^= 1;

    assert_int_equal(nx_key_hash(pepper32, 32, "abc", 3, a), 0);
    assert_int_equal(nx_key_hash(pepper32, 32, "abd", 3, b), 0);
    assert_false(nx_ct_equal(a, b, NX_HASH_LEN));

    assert_int_equal(nx_key_hash(p2, 32, "abc", 3, b), 0);
    assert_false(nx_ct_equal(a, b, NX_HASH_LEN));

    /* NUL and high bytes are hashed like any other */
    assert_int_equal(nx_key_hash(pepper32, 32, "ab\0", 3, a), 0);
    assert_int_equal(nx_key_hash(pepper32, 32, "ab\xff", 3, b), 0);
    assert_false(nx_ct_equal(a, b, NX_HASH_LEN));

    assert_int_equal(nx_key_hash(pepper32, 32, "abc", 3, b), 0);
    assert_false(nx_ct_equal(a, b, NX_HASH_LEN));
}


static void
test_generate(void **state)
{
    char      prefix[NX_KEY_PREFIX_LEN + 1];
    size_t    i;
    uint8_t   hash[NX_HASH_LEN];
    nx_key_t  k;

    (void) state;

    memset(&k, 0x55, sizeof(k));
    assert_int_equal(nx_key_generate(pepper32, sizeof(pepper32), &k), 0);

    assert_int_equal(strlen(k.key), NX_KEY_LEN);
    assert_int_equal(strlen(k.prefix), NX_KEY_PREFIX_LEN);
    assert_memory_equal(k.key, "nx_", 3);
    assert_int_equal(k.key[3 + NX_KEY_PREFIX_LEN], '_');

    for (i = 0; i < NX_KEY_LEN; i++) {
        if (i < 3 || i == 3 + NX_KEY_PREFIX_LEN) {
            continue;
        }

        assert_true((k.key[i] >= '0' && k.key[i] <= '9')
                    || (k.key[i] >= 'a' && k.key[i] <= 'f'));
    }

    /* parses, prefix matches, hash is reproducible */
    assert_int_equal(nx_key_parse(k.key, strlen(k.key), prefix), 0);
    assert_string_equal(prefix, k.prefix);
    assert_int_equal(nx_key_prefix_valid(k.prefix, strlen(k.prefix)), 0);

    assert_int_equal(nx_key_hash(pepper32, sizeof(pepper32), k.key,
                                 NX_KEY_LEN, hash), 0);
    assert_memory_equal(hash, k.hash, NX_HASH_LEN);
    assert_true(nx_ct_equal(hash, k.hash, NX_HASH_LEN));
}


static void
test_generate_unique(void **state)
{
    int       i, j;
    nx_key_t  k[16];

    (void) state;

    for (i = 0; i < 16; i++) {
        assert_int_equal(nx_key_generate(pepper32, sizeof(pepper32), &k[i]),
                         0);
    }

    for (i = 0; i < 16; i++) {
        for (j = i + 1; j < 16; j++) {
            assert_string_not_equal(k[i].key, k[j].key);
            assert_string_not_equal(k[i].prefix, k[j].prefix);
            assert_memory_not_equal(k[i].key + 4 + NX_KEY_PREFIX_LEN,
                                    k[j].key + 4 + NX_KEY_PREFIX_LEN,
                                    NX_KEY_SECRET_LEN);
            assert_false(nx_ct_equal(k[i].hash, k[j].hash, NX_HASH_LEN));
        }
    }
}


static void
test_generate_bad_pepper(void **state)
{
    nx_key_t  k;

    (void) state;

    assert_int_equal(nx_key_generate(pepper32, 31, &k), -1);
    assert_int_equal(nx_key_generate(NULL, 32, &k), -1);
    assert_int_equal(nx_key_generate(pepper32, 32, NULL), -1);
}


static void
test_ct_equal(void **state)
{
    (void) state;

    assert_int_equal(nx_ct_equal("abc", "abc", 3), 1);
    assert_int_equal(nx_ct_equal("abc", "abd", 3), 0);
    assert_int_equal(nx_ct_equal("\0bc", "\0bd", 3), 0);
    assert_int_equal(nx_ct_equal("abc", "xbc", 3), 0);
    assert_int_equal(nx_ct_equal("abc", "abd", 2), 1);
    assert_int_equal(nx_ct_equal("a", "b", 0), 1);
    assert_int_equal(nx_ct_equal("\x80\xff", "\x80\xff", 2), 1);
}


static void
test_pepper_hex_newline(void **state)
{
    int          rc;
    char         err[256];
    uint8_t      out[NX_PEPPER_MAX];
    const char  *hex = "000102030405060708090a0b0c0d0e0f"
                       "101112131415161718191a1b1c1d1e1f\n";

    (void) state;

    rc = load_bytes(hex, strlen(hex), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 32);
    assert_memory_equal(out, pepper32, 32);
}


static void
test_pepper_hex_variants(void **state)
{
    int      rc;
    char     hex[2 * NX_PEPPER_MAX + 8], err[256];
    size_t   i;
    uint8_t  out[NX_PEPPER_MAX];

    (void) state;

    /* upper case, CRLF */
    strcpy(hex, "000102030405060708090A0B0C0D0E0F"
                "101112131415161718191A1B1C1D1E1F\r\n");
    rc = load_bytes(hex, strlen(hex), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 32);
    assert_memory_equal(out, pepper32, 32);

    /* no newline */
    rc = load_bytes(hex, 64, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 32);

    /* the largest: 256 bytes in 512 hex digits */
    for (i = 0; i < NX_PEPPER_MAX; i++) {
        snprintf(hex + 2 * i, 3, "%02x", (unsigned) (255 - i));
    }

    strcat(hex, "\n");
    rc = load_bytes(hex, strlen(hex), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, NX_PEPPER_MAX);
    assert_int_equal(out[0], 255);
    assert_int_equal(out[255], 0);

    /* 257 bytes in hex */
    hex[2 * NX_PEPPER_MAX] = '\0';
    strcat(hex, "ab\n");
    rc = load_bytes(hex, strlen(hex), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "257"));
}


static void
test_pepper_raw(void **state)
{
    int      rc;
    char     err[256];
    size_t   i;
    uint8_t  raw[NX_PEPPER_MAX + 1], out[NX_PEPPER_MAX];

    (void) state;

    /* binary, with NUL, newline and high bytes; ends in a newline too */
    for (i = 0; i < sizeof(raw); i++) {
        raw[i] = (uint8_t) (i * 7 + 3);
    }

    raw[0] = 0;
    raw[1] = '\n';
    raw[2] = 0xff;
    raw[39] = '\n';

    rc = load_bytes(raw, 40, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 40);
    assert_memory_equal(out, raw, 40);

    rc = load_bytes(raw, NX_PEPPER_MIN, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, NX_PEPPER_MIN);
    assert_memory_equal(out, raw, NX_PEPPER_MIN);

    rc = load_bytes(raw, NX_PEPPER_MAX, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, NX_PEPPER_MAX);
    assert_memory_equal(out, raw, NX_PEPPER_MAX);

    rc = load_bytes(raw, NX_PEPPER_MAX + 1, out, sizeof(out), err,
                    sizeof(err));
    assert_int_equal(rc, -1);

    rc = load_bytes(raw, NX_PEPPER_MIN - 1, out, sizeof(out), err,
                    sizeof(err));
    assert_int_equal(rc, -1);
}


static void
test_pepper_too_short(void **state)
{
    int          rc;
    char         err[256];
    uint8_t      out[NX_PEPPER_MAX];
    const char  *raw = "SuperSecretPepperValue";
    const char  *hex = "5365637265744865780a0b0c0d0e0f\n";

    (void) state;

    memset(err, 0, sizeof(err));
    rc = load_bytes(raw, strlen(raw), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_true(strlen(err) > 0);
    assert_non_null(strstr(err, "22"));
    assert_null(strstr(err, "Secret"));
    assert_null(strstr(err, "Pepper"));

    /* 15 bytes in hex: neither the digits nor the bytes are shown */
    memset(err, 0, sizeof(err));
    rc = load_bytes(hex, strlen(hex), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "5365"));
    assert_null(strstr(err, "SecretHex"));

    /* empty file */
    rc = load_bytes("", 0, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_true(strlen(err) > 0);
}


static void
test_pepper_odd_hex(void **state)
{
    int          rc;
    char         err[256];
    uint8_t      out[NX_PEPPER_MAX];
    const char  *hex = "000102030405060708090a0b0c0d0e0f"
                       "101112131415161718191a1b1c1d1e1f0\n";

    (void) state;

    rc = load_bytes(hex, strlen(hex), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "odd"));
    assert_null(strstr(err, "0001020304"));
}


static void
test_pepper_too_large_file(void **state)
{
    int      rc;
    char     err[256];
    uint8_t  out[NX_PEPPER_MAX], *big;

    (void) state;

    big = malloc(10000);
    assert_non_null(big);
    memset(big, 'Q', 10000);

    rc = load_bytes(big, 10000, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_null(strstr(err, "QQ"));

    /* a hex file longer than 4 KiB */
    memset(big, 'a', 10000);
    rc = load_bytes(big, 10000, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_null(strstr(err, "aaaa"));

    free(big);
}


static void
test_pepper_small_buffer(void **state)
{
    int      rc;
    char     err[256];
    uint8_t  raw[64], out[48];

    (void) state;

    memset(raw, 0xa5, sizeof(raw));
    memset(out, 0, sizeof(out));

    rc = load_bytes(raw, sizeof(raw), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(out[0], 0);

    rc = load_bytes(raw, 48, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 48);
}


static void
test_pepper_missing(void **state)
{
    int      rc;
    char     err[256];
    uint8_t  out[NX_PEPPER_MAX];

    (void) state;

    memset(err, 0, sizeof(err));
    rc = nx_pepper_load("/nonexistent/nexus/pepper", out, sizeof(out), err,
                        sizeof(err));
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "/nonexistent/nexus/pepper"));
    assert_non_null(strstr(err, "No such file"));

    /* a directory */
    rc = nx_pepper_load("/tmp", out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_true(strlen(err) > 0);

    /* no error buffer, tiny error buffer */
    rc = nx_pepper_load("/nonexistent", out, sizeof(out), NULL, 0);
    assert_int_equal(rc, -1);

    err[0] = 'x';
    err[1] = 'y';
    rc = nx_pepper_load("/nonexistent", out, sizeof(out), err, 1);
    assert_int_equal(rc, -1);
    assert_int_equal(err[0], '\0');
    assert_int_equal(err[1], 'y');
}


static void
test_pepper_then_hash(void **state)
{
    int          rc;
    char         err[256];
    uint8_t      out[NX_PEPPER_MAX], h1[NX_HASH_LEN], h2[NX_HASH_LEN];
    const char  *hex = "000102030405060708090a0b0c0d0e0f"
                       "101112131415161718191a1b1c1d1e1f\n";

    (void) state;

    rc = load_bytes(hex, strlen(hex), out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 32);

    assert_int_equal(nx_key_hash(out, (size_t) rc, GOOD_KEY, NX_KEY_LEN, h1),
                     0);
    assert_int_equal(nx_key_hash(pepper32, 32, GOOD_KEY, NX_KEY_LEN, h2), 0);
    assert_memory_equal(h1, h2, NX_HASH_LEN);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_length),
        cmocka_unit_test(test_parse_bad_bytes),
        cmocka_unit_test(test_parse_structure),
        cmocka_unit_test(test_prefix_valid),
        cmocka_unit_test(test_hash_rfc4231_case6),
        cmocka_unit_test(test_hash_rfc4231_case7),
        cmocka_unit_test(test_hash_openssl_cli),
        cmocka_unit_test(test_hash_pepper_bounds),
        cmocka_unit_test(test_hasher_matches_hmac),
        cmocka_unit_test(test_hash_depends_on_everything),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_generate_unique),
        cmocka_unit_test(test_generate_bad_pepper),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_pepper_hex_newline),
        cmocka_unit_test(test_pepper_hex_variants),
        cmocka_unit_test(test_pepper_raw),
        cmocka_unit_test(test_pepper_too_short),
        cmocka_unit_test(test_pepper_odd_hex),
        cmocka_unit_test(test_pepper_too_large_file),
        cmocka_unit_test(test_pepper_small_buffer),
        cmocka_unit_test(test_pepper_missing),
        cmocka_unit_test(test_pepper_then_hash),
    };

    return cmocka_run_group_tests_name("key", tests, setup_pepper, NULL);
}
