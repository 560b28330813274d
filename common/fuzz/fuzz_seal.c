/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_seal: opening arbitrary bytes as a sealed
 * value never reads out of bounds and fails cleanly, and sealing then
 * opening arbitrary bytes gives them back.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_seal.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc;
    size_t          outlen;
    uint8_t        *in, *out, *sealed;
    nx_seal_key_t   k;
    uint8_t         raw[NX_SEAL_KEY_LEN];

    for (outlen = 0; outlen < sizeof(raw); outlen++) {
        raw[outlen] = (uint8_t) outlen;
    }

    if (nx_seal_key_init(&k, raw, sizeof(raw)) != 0) {
        abort();
    }

    /* an exact-size copy, so ASan sees any read past the end */
    in = malloc(size ? size : 1);
    out = malloc(size ? size : 1);
    if (in == NULL || out == NULL) {
        abort();
    }

    memcpy(in, data, size);

    rc = nx_seal_open(&k, "webhook", 42, in, size, out, &outlen);

    if (rc == NX_SEAL_OK) {
        /* only a value sealed with this key opens: the seeds have one */
        if (size < NX_SEAL_OVERHEAD || outlen != size - NX_SEAL_OVERHEAD) {
            abort();
        }

    } else if (rc != NX_SEAL_EFORMAT && rc != NX_SEAL_EKEY
               && rc != NX_SEAL_EAUTH)
    {
        abort();
    }

    if (size <= NX_SEAL_PLAIN_MAX) {
        sealed = malloc(nx_seal_len(size));
        if (sealed == NULL) {
            abort();
        }

        if (nx_seal(&k, "fuzz", (int64_t) size, in, size, sealed)
            != NX_SEAL_OK
            || nx_seal_open(&k, "fuzz", (int64_t) size, sealed,
                            nx_seal_len(size), out, &outlen) != NX_SEAL_OK
            || outlen != size || (size && memcmp(out, in, size) != 0))
        {
            abort();
        }

        free(sealed);
    }

    free(in);
    free(out);

    return 0;
}
