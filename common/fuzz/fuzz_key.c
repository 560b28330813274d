/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_key: key and prefix parsing, hashing, and the
 * pepper file decoder (fed through a memfd).
 */

/* memfd_create() */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nx_key.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int  memfd = -1;


static int
lower_hex(const char *s, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


static void
fuzz_pepper(const uint8_t *data, size_t size)
{
    int      rc;
    char     path[64], err[256];
    uint8_t  out[NX_PEPPER_MAX], h[NX_HASH_LEN];

    if (memfd == -1) {
        memfd = memfd_create("nx_fuzz_pepper", MFD_CLOEXEC);
        if (memfd == -1) {
            abort();
        }
    }

    if (ftruncate(memfd, 0) != 0
        || pwrite(memfd, data, size, 0) != (ssize_t) size)
    {
        abort();
    }

    snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);

    err[0] = 'x';
    rc = nx_pepper_load(path, out, (size_t) (data[0] ? data[0] + 16 : 256),
                        err, sizeof(err));

    if (rc == -1) {
        if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL) {
            abort();
        }

        return;
    }

    if (rc < NX_PEPPER_MIN || rc > NX_PEPPER_MAX) {
        abort();
    }

    if (nx_key_hash(out, (size_t) rc, "k", 1, h) != 0) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                     prefix[NX_KEY_PREFIX_LEN + 1];
    uint8_t                  h1[NX_HASH_LEN], h2[NX_HASH_LEN];
    const char              *s;

    static const uint8_t     pepper[32] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    static nx_key_hasher_t  *hasher;

    s = (const char *) data;

    memset(prefix, 0, sizeof(prefix));

    if (nx_key_parse(s, size, prefix) == 0) {
        if (size != NX_KEY_LEN || memcmp(s, "nx_", 3) != 0
            || s[3 + NX_KEY_PREFIX_LEN] != '_'
            || !lower_hex(s + 3, NX_KEY_PREFIX_LEN)
            || !lower_hex(s + 4 + NX_KEY_PREFIX_LEN, NX_KEY_SECRET_LEN)
            || strlen(prefix) != NX_KEY_PREFIX_LEN
            || memcmp(prefix, s + 3, NX_KEY_PREFIX_LEN) != 0
            || nx_key_prefix_valid(prefix, NX_KEY_PREFIX_LEN) != 0)
        {
            abort();
        }

    } else if (prefix[0] != '\0') {
        abort();
    }

    if (nx_key_prefix_valid(s, size) == 0
        && (size != NX_KEY_PREFIX_LEN || !lower_hex(s, size)))
    {
        abort();
    }

    if (hasher == NULL) {
        hasher = nx_key_hasher_new(pepper, sizeof(pepper));
    }

    /* the precomputed hasher agrees with the one-shot HMAC */
    if (nx_key_hash(pepper, sizeof(pepper), s, size, h1) != 0
        || nx_key_hasher_run(hasher, s, size, h2) != 0
        || !nx_ct_equal(h1, h2, NX_HASH_LEN))
    {
        abort();
    }

    if (nx_ct_equal(s, s + size / 2, size / 2)
        != (memcmp(s, s + size / 2, size / 2) == 0))
    {
        abort();
    }

    if (size > 0) {
        fuzz_pepper(data, size);
    }

    return 0;
}
