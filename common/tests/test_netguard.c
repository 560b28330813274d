/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_netguard: address blocks, the classification of the
 * addresses a webhook must not reach, and the allowlist.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "nx_netguard.h"


/* the guard's answer for a textual address, with why in *why */

static int
guard(const char *text, const nx_cidr_t *allow, size_t nallow, char *why,
    size_t whylen)
{
    struct sockaddr_in   sin;
    struct sockaddr_in6  sin6;

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));

    if (inet_pton(AF_INET, text, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        return nx_addr_allowed((struct sockaddr *) &sin, sizeof(sin), allow,
                               nallow, why, whylen);
    }

    assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
    sin6.sin6_family = AF_INET6;

    return nx_addr_allowed((struct sockaddr *) &sin6, sizeof(sin6), allow,
                           nallow, why, whylen);
}


static void
test_classes(void **state)
{
    char    why[128];
    size_t  i;

    static const struct {
        const char  *addr;
        const char  *why;           /* NULL: allowed */
    } cases[] = {
        { "8.8.8.8", NULL },
        { "1.1.1.1", NULL },
        { "100.63.255.255", NULL },
        { "100.128.0.0", NULL },
        { "172.15.255.255", NULL },
        { "172.32.0.0", NULL },
        { "127.0.0.1", "127.0.0.1 is loopback" },
        { "127.0.0.2", "127.0.0.2 is loopback" },
        { "10.1.2.3", "10.1.2.3 is private" },
        { "172.16.0.1", "172.16.0.1 is private" },
        { "172.31.255.255", "172.31.255.255 is private" },
        { "192.168.1.1", "192.168.1.1 is private" },
        { "169.254.169.254", "169.254.169.254 is link-local" },
        { "100.64.0.1", "100.64.0.1 is cgnat" },
        { "100.127.255.255", "100.127.255.255 is cgnat" },
        { "224.0.0.1", "224.0.0.1 is multicast" },
        { "239.255.255.250", "239.255.255.250 is multicast" },
        { "0.0.0.0", "0.0.0.0 is unspecified" },
        { "255.255.255.255", "255.255.255.255 is broadcast" },
        { "240.0.0.1", "240.0.0.1 is reserved" },
        { "192.0.2.1", "192.0.2.1 is documentation" },
        { "198.18.0.1", "198.18.0.1 is reserved" },
        { "2606:4700:4700::1111", NULL },
        { "::1", "::1 is loopback" },
        { "::", ":: is unspecified" },
        { "::ffff:127.0.0.1", "::ffff:127.0.0.1 is ipv4-mapped" },
        { "::ffff:8.8.8.8", "::ffff:8.8.8.8 is ipv4-mapped" },
        { "::127.0.0.1", "::127.0.0.1 is ipv4-embedded" },
        { "64:ff9b::a00:1", "64:ff9b::a00:1 is ipv4-embedded" },
        { "2002:a00:1::1", "2002:a00:1::1 is ipv4-embedded" },
        { "2001::1", "2001::1 is ipv4-embedded" },
        { "fc00::1", "fc00::1 is private" },
        { "fd12:3456::1", "fd12:3456::1 is private" },
        { "fe80::1", "fe80::1 is link-local" },
        { "fec0::1", "fec0::1 is private" },
        { "ff02::1", "ff02::1 is multicast" },
        { "2001:db8::1", "2001:db8::1 is documentation" },
        { "4000::1", "4000::1 is reserved" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].why == NULL) {
            assert_int_equal(guard(cases[i].addr, NULL, 0, why, sizeof(why)),
                             1);
            assert_string_equal(why, "");

        } else {
            assert_int_equal(guard(cases[i].addr, NULL, 0, why, sizeof(why)),
                             0);
            assert_string_equal(why, cases[i].why);
        }
    }
}


static void
test_allowlist(void **state)
{
    int        n;
    char       why[128], err[128];
    nx_cidr_t  allow[NX_CIDR_MAX];

    (void) state;

    n = nx_cidr_list_parse("127.0.0.1/32, 10.0.0.0/8 fd00::/8", allow,
                           NX_CIDR_MAX, err, sizeof(err));
    assert_int_equal(n, 3);

    assert_int_equal(guard("127.0.0.1", allow, n, why, sizeof(why)), 1);
    assert_int_equal(guard("10.200.0.1", allow, n, why, sizeof(why)), 1);
    assert_int_equal(guard("fd00::5", allow, n, why, sizeof(why)), 1);

    /* the rest of loopback stays refused, and so does the mapped form */
    assert_int_equal(guard("127.0.0.2", allow, n, why, sizeof(why)), 0);
    assert_string_equal(why, "127.0.0.2 is loopback");
    assert_int_equal(guard("::ffff:127.0.0.1", allow, n, why, sizeof(why)),
                     0);
    assert_string_equal(why, "::ffff:127.0.0.1 is ipv4-mapped");
    assert_int_equal(guard("169.254.169.254", allow, n, why, sizeof(why)), 0);

    /* an explicit IPv6 block allows the mapped form */
    n = nx_cidr_list_parse("::ffff:127.0.0.1/128", allow, NX_CIDR_MAX, err,
                           sizeof(err));
    assert_int_equal(n, 1);
    assert_int_equal(guard("::ffff:127.0.0.1", allow, n, why, sizeof(why)),
                     1);

    assert_int_equal(nx_cidr_list_parse("", allow, NX_CIDR_MAX, err,
                                        sizeof(err)), 0);
    assert_int_equal(nx_cidr_list_parse(" , ,", allow, NX_CIDR_MAX, err,
                                        sizeof(err)), 0);
    assert_int_equal(nx_cidr_list_parse("127.0.0.1,localhost", allow,
                                        NX_CIDR_MAX, err, sizeof(err)), -1);
    assert_string_equal(err, "invalid address block \"localhost\"");
    assert_int_equal(nx_cidr_list_parse("1.1.1.1,2.2.2.2", allow, 1, err,
                                        sizeof(err)), -1);
}


static void
test_cidr_parse(void **state)
{
    size_t     i;
    nx_cidr_t  c;

    static const char  *good[] = {
        "0.0.0.0/0", "10.0.0.0/8", "192.168.1.0/24", "1.2.3.4", "1.2.3.4/32",
        "::/0", "::1", "fe80::/10", "2001:db8::/32", "::ffff:0:0/96",
        "100.64.0.0/10",
    };

    static const char  *bad[] = {
        "", "10.0.0.1/8", "1.2.3.4/33", "1.2.3.4/", "1.2.3.4/-1",
        "1.2.3.4/08", "2130706433", "0x7f.0.0.1", "127.1", "1.2.3", "::1/129",
        "[::1]", "fe80::1%eth0", "1.2.3.4/1x", "localhost", "1.2.3.4 ",
        "fe80::/8",
    };

    (void) state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(nx_cidr_parse(good[i], strlen(good[i]), &c), 0);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(nx_cidr_parse(bad[i], strlen(bad[i]), &c), -1);
    }

    assert_int_equal(nx_cidr_parse("10.0.0.0/8", 10, &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_true(nx_cidr_match(&c, AF_INET, (const uint8_t *) "\x0a\xff\0\1"));
    assert_false(nx_cidr_match(&c, AF_INET, (const uint8_t *) "\x0b\0\0\1"));
    assert_false(nx_cidr_match(&c, AF_INET6, (const uint8_t *)
                               "\x0a\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"));

    /* an embedded NUL never parses */
    assert_int_equal(nx_cidr_parse("1.2.3.4\0", 8, &c), -1);
}


static void
test_other_families(void **state)
{
    char             why[128];
    struct sockaddr  sa;

    (void) state;

    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;

    assert_int_equal(nx_addr_allowed(&sa, sizeof(sa), NULL, 0, why,
                                     sizeof(why)), 0);
    assert_string_equal(why, "address family 1 is not allowed");
    assert_int_equal(nx_addr_allowed(NULL, 0, NULL, 0, why, sizeof(why)), 0);

    /* a short sockaddr is refused, not read past */
    sa.sa_family = AF_INET6;
    assert_int_equal(nx_addr_allowed(&sa, sizeof(sa), NULL, 0, why,
                                     sizeof(why)), 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_allowlist),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_other_families),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
