/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_reqid: validation of arbitrary ids, and the
 * generated form from the first 12 bytes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_reqid.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            v;
    char           out[NX_REQID_GEN_LEN];
    size_t         i;
    unsigned char  c;

    v = nx_reqid_valid((const char *) data, size);

    if (v != 0 && v != 1) {
        abort();
    }

    if (v == 1) {
        if (size == 0 || size > NX_REQID_MAX) {
            abort();
        }

        for (i = 0; i < size; i++) {
            c = data[i];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                  || (c >= '0' && c <= '9') || c == '.' || c == '_'
                  || c == ':' || c == '-'))
            {
                abort();
            }
        }
    }

    if (size >= 12) {
        nx_reqid_format(data, out);

        if (memcmp(out, "req_", 4) != 0
            || nx_reqid_valid(out, sizeof(out)) != 1)
        {
            abort();
        }
    }

    return 0;
}
