/*
 * Copyright (C) Nexus authors
 *
 * The address side of the SSRF guard: which destination addresses an
 * outbound webhook may connect to.  nexus-notify asks this for every
 * address curl is about to connect to (CURLOPT_OPENSOCKETFUNCTION), so
 * the check is on the address that is actually used, after resolution,
 * whatever the URL spelled (a name, a decimal IP, an IPv4-mapped IPv6
 * literal).
 *
 * Refused unless an allowlist entry covers the address: loopback,
 * private (RFC 1918, IPv6 unique local and site local), link-local,
 * CGNAT (100.64.0.0/10), multicast, unspecified, broadcast, IPv4-mapped,
 * IPv4-compatible, NAT64, 6to4 and Teredo (which embed IPv4 addresses),
 * documentation, benchmarking and other reserved ranges.  An IPv4-mapped
 * address is matched against the allowlist as IPv6 only: allowing
 * 127.0.0.1 does not allow ::ffff:127.0.0.1.
 */

#ifndef NX_NETGUARD_H
#define NX_NETGUARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NX_CIDR_MAX  64

typedef struct {
    int       family;           /* AF_INET or AF_INET6 */
    unsigned  prefix;           /* bits */
    uint8_t   addr[16];         /* network order, host bits cleared */
} nx_cidr_t;

/*
 * Parses "a.b.c.d[/n]" or an IPv6 address "x::y[/n]" (no brackets, no
 * zone).  Host bits set under the prefix are refused ("10.0.0.1/8").
 * Returns 0, or -1.
 */
int nx_cidr_parse(const char *s, size_t len, nx_cidr_t *out);

/*
 * Parses a list separated by commas and/or spaces into out (at most max
 * entries).  Returns the number of entries, or -1 with a message in err
 * naming the entry that does not parse.
 */
int nx_cidr_list_parse(const char *s, nx_cidr_t *out, size_t max, char *err,
    size_t errlen);

/* 1 when the address (family, 4 or 16 bytes) is in the block */
int nx_cidr_match(const nx_cidr_t *c, int family, const uint8_t *addr);

/*
 * Why the address may not be a webhook's destination: "loopback",
 * "private", "link-local", "cgnat", "multicast", "unspecified",
 * "broadcast", "ipv4-mapped", "ipv4-embedded", "documentation",
 * "reserved"; NULL for a public unicast address.
 */
const char *nx_addr_class(int family, const uint8_t *addr);

/*
 * The guard: 1 when sa may be connected to, 0 when it may not, with why
 * set to e.g. "127.0.0.2 is loopback" (NUL-terminated, whylen bytes).
 * Other address families are refused.
 */
int nx_addr_allowed(const struct sockaddr *sa, size_t salen,
    const nx_cidr_t *allow, size_t nallow, char *why, size_t whylen);

#endif /* NX_NETGUARD_H */
