/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_netguard: address block lists parse without
 * reading out of bounds, a parsed block matches its own address, and the
 * guard's answer for 4 or 16 bytes of address agrees with the
 * classification and the allowlist.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_netguard.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                  n, i, ok, in;
    char                *s, err[128], why[128];
    nx_cidr_t            list[8];
    struct sockaddr_in   sin;
    struct sockaddr_in6  sin6;

    s = malloc(size + 1);
    if (s == NULL) {
        abort();
    }

    memcpy(s, data, size);
    s[size] = '\0';

    n = nx_cidr_list_parse(s, list, 8, err, sizeof(err));

    if (n < 0) {
        if (err[0] == '\0') {
            abort();
        }
        n = 0;
    }

    for (i = 0; i < n; i++) {
        if (!nx_cidr_match(&list[i], list[i].family, list[i].addr)) {
            abort();
        }
    }

    (void) nx_cidr_parse((const char *) data, size, &list[0]);

    /* the first bytes as an address */

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));

    if (size >= 16) {
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, data, 16);

        ok = nx_addr_allowed((struct sockaddr *) &sin6, sizeof(sin6), list,
                             (size_t) n, why, sizeof(why));

        for (in = 0, i = 0; i < n; i++) {
            in |= nx_cidr_match(&list[i], AF_INET6, data);
        }

        if (ok != (in || nx_addr_class(AF_INET6, data) == NULL)
            || (!ok && why[0] == '\0'))
        {
            abort();
        }
    }

    if (size >= 4) {
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, data, 4);

        ok = nx_addr_allowed((struct sockaddr *) &sin, sizeof(sin), list,
                             (size_t) n, why, sizeof(why));

        for (in = 0, i = 0; i < n; i++) {
            in |= nx_cidr_match(&list[i], AF_INET, data);
        }

        if (ok != (in || nx_addr_class(AF_INET, data) == NULL)
            || (!ok && why[0] == '\0'))
        {
            abort();
        }

        /* loopback and private are never public */
        if ((data[0] == 127 || data[0] == 10) && !in && ok) {
            abort();
        }
    }

    free(s);

    return 0;
}
