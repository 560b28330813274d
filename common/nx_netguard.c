/*
 * Copyright (C) Nexus authors
 *
 * SSRF guard, address side: CIDR allowlists and the classification of
 * IPv4 and IPv6 destination addresses (see nx_netguard.h).
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "nx_netguard.h"


typedef struct {
    uint8_t      addr[16];
    unsigned     prefix;
    const char  *why;
} nx_netguard_range_t;


static int nx_netguard_in(const uint8_t *addr, const uint8_t *net,
    unsigned prefix);


/* the order matters where ranges nest: the first match names the class */

static const nx_netguard_range_t  nx_netguard_v4[] = {
    { { 0, 0, 0, 0 }, 8, "unspecified" },
    { { 10, 0, 0, 0 }, 8, "private" },
    { { 100, 64, 0, 0 }, 10, "cgnat" },
    { { 127, 0, 0, 0 }, 8, "loopback" },
    { { 169, 254, 0, 0 }, 16, "link-local" },
    { { 172, 16, 0, 0 }, 12, "private" },
    { { 192, 0, 0, 0 }, 24, "reserved" },
    { { 192, 0, 2, 0 }, 24, "documentation" },
    { { 192, 88, 99, 0 }, 24, "reserved" },
    { { 192, 168, 0, 0 }, 16, "private" },
    { { 198, 18, 0, 0 }, 15, "reserved" },
    { { 198, 51, 100, 0 }, 24, "documentation" },
    { { 203, 0, 113, 0 }, 24, "documentation" },
    { { 224, 0, 0, 0 }, 4, "multicast" },
    { { 255, 255, 255, 255 }, 32, "broadcast" },
    { { 240, 0, 0, 0 }, 4, "reserved" },
};

static const nx_netguard_range_t  nx_netguard_v6[] = {
    { { 0 }, 128, "unspecified" },
    { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128, "loopback" },
    { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff }, 96, "ipv4-mapped" },
    /* IPv4-translated (RFC 2765) and IPv4-compatible (deprecated) */
    { { 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0 }, 96, "ipv4-mapped" },
    { { 0 }, 96, "ipv4-embedded" },
    { { 0, 0x64, 0xff, 0x9b }, 96, "ipv4-embedded" },          /* NAT64 */
    { { 0, 0x64, 0xff, 0x9b, 0, 1 }, 48, "ipv4-embedded" },    /* local */
    { { 0x20, 0x01, 0, 0 }, 32, "ipv4-embedded" },             /* Teredo */
    { { 0x20, 0x02 }, 16, "ipv4-embedded" },                   /* 6to4 */
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32, "documentation" },
    { { 0x20, 0x01, 0, 0x02, 0, 0 }, 48, "reserved" },         /* bench */
    { { 0x01, 0, 0, 0, 0, 0, 0, 0 }, 64, "reserved" },         /* discard */
    { { 0xfc }, 7, "private" },                                /* ULA */
    { { 0xfe, 0x80 }, 10, "link-local" },
    { { 0xfe, 0xc0 }, 10, "private" },                         /* site */
    { { 0xff }, 8, "multicast" },
};


int
nx_cidr_parse(const char *s, size_t len, nx_cidr_t *out)
{
    char            buf[64], *slash;
    size_t          i, alen;
    uint8_t         mask;
    unsigned        prefix, max, bits;
    struct in_addr  a4;
    struct in6_addr a6;

    if (len == 0 || len >= sizeof(buf)) {
        return -1;
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    if (memchr(buf, '\0', len) != NULL) {
        return -1;
    }

    memset(out, 0, sizeof(*out));

    slash = strchr(buf, '/');
    if (slash != NULL) {
        *slash++ = '\0';
    }

    /* inet_pton, unlike inet_aton, takes only dotted quads */
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        out->family = AF_INET;
        memcpy(out->addr, &a4, 4);
        max = 32;
        alen = 4;

    } else if (inet_pton(AF_INET6, buf, &a6) == 1) {
        out->family = AF_INET6;
        memcpy(out->addr, &a6, 16);
        max = 128;
        alen = 16;

    } else {
        return -1;
    }

    prefix = max;

    if (slash != NULL) {
        if (*slash == '\0' || strlen(slash) > 3
            || (slash[0] == '0' && slash[1] != '\0'))
        {
            return -1;
        }

        prefix = 0;

        for (i = 0; slash[i]; i++) {
            if (slash[i] < '0' || slash[i] > '9') {
                return -1;
            }
            prefix = prefix * 10 + (slash[i] - '0');
        }

        if (prefix > max) {
            return -1;
        }
    }

    out->prefix = prefix;

    /* host bits must be clear: "10.0.0.1/8" is probably a mistake */
    for (i = 0; i < alen; i++) {
        bits = (prefix > 8 * i) ? prefix - 8 * i : 0;
        mask = (bits == 0) ? 0 : (bits >= 8) ? 0xff
                                             : (uint8_t) (0xff << (8 - bits));

        if (out->addr[i] & (uint8_t) ~mask) {
            return -1;
        }
    }

    return 0;
}


int
nx_cidr_list_parse(const char *s, nx_cidr_t *out, size_t max, char *err,
    size_t errlen)
{
    size_t       n, len;
    const char  *p, *end;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    n = 0;
    p = s;

    for ( ;; ) {
        while (*p == ',' || *p == ' ' || *p == '\t') {
            p++;
        }

        if (*p == '\0') {
            return (int) n;
        }

        end = p;
        while (*end && *end != ',' && *end != ' ' && *end != '\t') {
            end++;
        }

        len = end - p;

        if (n == max) {
            if (err != NULL && errlen > 0) {
                (void) snprintf(err, errlen, "more than %zu entries", max);
            }
            return -1;
        }

        if (nx_cidr_parse(p, len, &out[n]) != 0) {
            if (err != NULL && errlen > 0) {
                (void) snprintf(err, errlen, "invalid address block \"%.*s\"",
                                (int) (len > 64 ? 64 : len), p);
            }
            return -1;
        }

        n++;
        p = end;
    }
}


int
nx_cidr_match(const nx_cidr_t *c, int family, const uint8_t *addr)
{
    if (c->family != family) {
        return 0;
    }

    return nx_netguard_in(addr, c->addr, c->prefix);
}


const char *
nx_addr_class(int family, const uint8_t *addr)
{
    size_t  i;

    if (family == AF_INET) {
        for (i = 0; i < sizeof(nx_netguard_v4) / sizeof(nx_netguard_v4[0]);
             i++)
        {
            if (nx_netguard_in(addr, nx_netguard_v4[i].addr,
                               nx_netguard_v4[i].prefix))
            {
                return nx_netguard_v4[i].why;
            }
        }

        return NULL;
    }

    if (family == AF_INET6) {
        for (i = 0; i < sizeof(nx_netguard_v6) / sizeof(nx_netguard_v6[0]);
             i++)
        {
            if (nx_netguard_in(addr, nx_netguard_v6[i].addr,
                               nx_netguard_v6[i].prefix))
            {
                return nx_netguard_v6[i].why;
            }
        }

        /* only global unicast, 2000::/3, is routed on the Internet */
        if ((addr[0] & 0xe0) != 0x20) {
            return "reserved";
        }

        return NULL;
    }

    return "reserved";
}


int
nx_addr_allowed(const struct sockaddr *sa, size_t salen,
    const nx_cidr_t *allow, size_t nallow, char *why, size_t whylen)
{
    int             family;
    char            text[INET6_ADDRSTRLEN];
    size_t          i;
    const char     *cls;
    const uint8_t  *addr;

    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }

    if (sa == NULL) {
        return 0;
    }

    family = sa->sa_family;

    if (family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
        addr = (const uint8_t *)
                   &((const struct sockaddr_in *) sa)->sin_addr;

    } else if (family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
        addr = (const uint8_t *)
                   &((const struct sockaddr_in6 *) sa)->sin6_addr;

    } else {
        if (why != NULL && whylen > 0) {
            (void) snprintf(why, whylen, "address family %d is not allowed",
                            family);
        }
        return 0;
    }

    for (i = 0; i < nallow; i++) {
        if (nx_cidr_match(&allow[i], family, addr)) {
            return 1;
        }
    }

    cls = nx_addr_class(family, addr);

    if (cls == NULL) {
        return 1;
    }

    if (why != NULL && whylen > 0) {
        if (inet_ntop(family, addr, text, sizeof(text)) == NULL) {
            strcpy(text, "?");
        }

        (void) snprintf(why, whylen, "%s is %s", text, cls);
    }

    return 0;
}


static int
nx_netguard_in(const uint8_t *addr, const uint8_t *net, unsigned prefix)
{
    unsigned  bytes, bits;

    bytes = prefix / 8;
    bits = prefix % 8;

    if (memcmp(addr, net, bytes) != 0) {
        return 0;
    }

    if (bits == 0) {
        return 1;
    }

    return ((addr[bytes] ^ net[bytes]) & (uint8_t) (0xff << (8 - bits)))
           == 0;
}
