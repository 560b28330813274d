/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_pii: detection of cards, SSNs, e-mail addresses,
 * phone numbers and IBANs in raw request bytes, and masking in place.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nx_pii.h"


#define MAX_MATCHES  64
#define BIG          (1024 * 1024)


/* checks the invariants every result must satisfy */

static void
check_matches(const char *buf, size_t len, const nx_pii_match_t *m,
    size_t n)
{
    size_t  i, k;

    for (i = 0; i < n; i++) {
        assert_true(m[i].start < m[i].end);
        assert_true(m[i].end <= len);
        assert_true(i == 0 || m[i - 1].end <= m[i].start);
        assert_string_not_equal(nx_pii_kind_name(m[i].kind), "unknown");

        for (k = m[i].start; k < m[i].end; k++) {
            assert_true(buf[k] != '"' && buf[k] != '\\');
        }
    }
}


/*
 * Scans s[0..len) (from an exactly sized heap copy, so that ASan sees any
 * over-read) and returns the matches as "kind[text] kind[text]".
 */

static char *
scan(const char *s, size_t len, unsigned mask)
{
    char            *buf, *res;
    size_t           n, i, w;
    nx_pii_match_t   m[MAX_MATCHES];

    buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memcpy(buf, s, len);

    n = nx_pii_scan(buf, len, mask, m, MAX_MATCHES);
    assert_true(n <= MAX_MATCHES);
    check_matches(buf, len, m, n);

    /* counting alone gives the same number */
    assert_int_equal(nx_pii_scan(buf, len, mask, NULL, 0), n);

    res = malloc(len * 2 + n * 16 + 1);
    assert_non_null(res);
    w = 0;

    for (i = 0; i < n; i++) {
        w += sprintf(res + w, "%s%s[", i ? " " : "",
                     nx_pii_kind_name(m[i].kind));
        memcpy(res + w, buf + m[i].start, m[i].end - m[i].start);
        w += m[i].end - m[i].start;
        res[w++] = ']';
    }

    res[w] = '\0';
    free(buf);

    return res;
}


static void
expect(const char *s, size_t len, unsigned mask, const char *want)
{
    char  *got;

    got = scan(s, len, mask);

    if (strcmp(got, want) != 0) {
        print_error("scan of \"%.*s\": got \"%s\", want \"%s\"\n",
                    (int) len, s, got, want);
    }

    assert_string_equal(got, want);
    free(got);
}


#define E(s, want)        expect(s, sizeof(s) - 1, NX_PII_ALL, want)
#define EM(s, mask, want) expect(s, sizeof(s) - 1, mask, want)
#define EJ(s, want)       expect(s, sizeof(s) - 1,                          \
                                 NX_PII_ALL | NX_PII_JSON, want)


static void
test_card(void **state)
{
    (void) state;

    E("4111111111111111", "card[4111111111111111]");
    E("card 4111 1111 1111 1111 exp 12/29", "card[4111 1111 1111 1111]");
    E("4111-1111-1111-1111", "card[4111-1111-1111-1111]");
    E("4111 1111-1111 1111", "card[4111 1111-1111 1111]");
    E("it is 4111111111111111.", "card[4111111111111111]");

    /* Amex and Diners layouts, 13 and 19 digits, other networks */
    E("378282246310005", "card[378282246310005]");
    E("3782 822463 10005", "card[3782 822463 10005]");
    E("3622-720627-1667", "card[3622-720627-1667]");
    E("4222222222222", "card[4222222222222]");
    E("4222 2222 2222 2", "card[4222 2222 2222 2]");
    E("4000 0000 0000 0000 006", "card[4000 0000 0000 0000 006]");
    E("5555555555554444", "card[5555555555554444]");
    E("2223 0031 2200 3222", "card[2223 0031 2200 3222]");
    E("6011111111111117", "card[6011111111111117]");
    E("3530111333300000", "card[3530111333300000]");

    /* a JSON array of numbers, a card among other groups */
    E("[4111111111111111,4012888888881881]",
      "card[4111111111111111] card[4012888888881881]");
    E("Ref 12 4111 1111 1111 1111", "card[4111 1111 1111 1111]");
    E("4111 1111 1111 1111 1111", "card[4111 1111 1111 1111]");
    E("(4111111111111111)", "card[4111111111111111]");
    E("4111111111111111-", "card[4111111111111111]");
}


static void
test_card_negative(void **state)
{
    (void) state;

    /* Luhn, IIN, length */
    E("4111111111111112", "");
    E("4111 1111 1111 1112", "");
    E("1111111111111117", "");
    E("7111111111111114", "");
    E("0000000000000000", "");
    E("411111111113", "");
    E("40000000000000000006", "");
    E("2019 2020 2021 2022", "");

    /* inside longer tokens and decimals */
    E("A4111111111111111B", "");
    E("order-A4111111111111111", "");
    E("x4111111111111111", "");
    E("4111111111111111x", "");
    E("0.4111111111111111", "");
    E("4111111111111111.5", "");

    /* separators that are not trivial, layouts that are not printed */
    E("4111  1111 1111 1111", "");
    E("4111_1111_1111_1111", "");
    E("4111.1111.1111.1111", "");
    E("4111/1111/1111/1111", "");
    E("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "");
    E("41 11 11 11 11 11 11 11", "");
    E("411111 1111 111111", "");
    E("41111111 11111111", "");
    E("4111 1111 1111 1111-", "card[4111 1111 1111 1111]");
}


static void
test_ssn(void **state)
{
    (void) state;

    E("123-45-6789", "ssn[123-45-6789]");
    E("123 45 6789", "ssn[123 45 6789]");
    E("123-45 6789", "ssn[123-45 6789]");
    E("123456789", "ssn[123456789]");
    E("SSN: 123-45-6789.", "ssn[123-45-6789]");
    E("(078-05-1120)", "ssn[078-05-1120]");
    E("665-01-0001", "ssn[665-01-0001]");
    E("899-99-9999", "ssn[899-99-9999]");

    /* invalid areas, groups and serials */
    E("000-12-3456", "");
    E("666-12-3456", "");
    E("900-12-3456", "");
    E("999-12-3456", "");
    E("123-00-4567", "");
    E("123-45-0000", "");
    E("000123456", "");
    E("666123456", "");
    E("123004567", "");
    E("123450000", "");

    /* layouts and boundaries */
    E("1234-56-789", "");
    E("123-456-789", "");
    E("12-345-6789", "");
    E("123--45-6789", "");
    E("123-45--6789", "");
    E("12345678", "");
    E("1234567890", "");
    E("123-45-67890", "");
    E("x123-45-6789", "");
    E("123-45-6789x", "");
    E("1.123456789", "");
    E("123456789.5", "");
}


static void
test_email(void **state)
{
    (void) state;

    E("john@example.com", "email[john@example.com]");
    E("x@y.io", "email[x@y.io]");
    E("mail john.smith+tag@mail.example.co.uk now",
      "email[john.smith+tag@mail.example.co.uk]");
    E("a_b%c-d@sub-domain.example.org",
      "email[a_b%c-d@sub-domain.example.org]");
    E("JOHN@EXAMPLE.COM", "email[JOHN@EXAMPLE.COM]");
    E("j0hn@ex4mple.com", "email[j0hn@ex4mple.com]");

    /* punctuation around the address is not part of it */
    E("write to john@example.com.", "email[john@example.com]");
    E("write to john@example.com...", "email[john@example.com]");
    E("<john@example.com>", "email[john@example.com]");
    E("(john@example.com)", "email[john@example.com]");
    E("...john@example.com", "email[john@example.com]");
    E("john@example.com-", "email[john@example.com]");
    E("mailto:john@example.com", "email[john@example.com]");
    E("user=john@example.com", "email[john@example.com]");
    E("a@b@example.com", "email[b@example.com]");
    E("john@example.com@", "email[john@example.com]");

    E("john@localhost", "");
    E("john@example.c", "");
    E("john@example.c0m", "");
    E("john@example.123", "");
    E("john@192.168.0.1", "");
    E("@example.com", "");
    E("john@", "");
    E("john@.example.com", "");
    E("john@-example.com", "");
    E("john@example..com", "");
    E("john..doe@example.com", "");
    E("john.@example.com", "");
    E("jos\xc3\xa9@example.com", "");
}


static void
test_email_limits(void **state)
{
    char    buf[512], want[600];
    size_t  n;

    (void) state;

    /* local part: 64 bytes, then 65 */
    memset(buf, 'l', 64);
    memcpy(buf + 64, "@example.com", 12);
    sprintf(want, "email[%.*s]", 76, buf);
    expect(buf, 76, NX_PII_ALL, want);

    memset(buf, 'l', 65);
    memcpy(buf + 65, "@example.com", 12);
    expect(buf, 77, NX_PII_ALL, "");

    /* a label of 63 bytes, then 64 */
    memcpy(buf, "x@", 2);
    memset(buf + 2, 'a', 63);
    memcpy(buf + 65, ".com", 4);
    sprintf(want, "email[%.*s]", 69, buf);
    expect(buf, 69, NX_PII_ALL, want);

    memset(buf + 2, 'a', 64);
    memcpy(buf + 66, ".com", 4);
    expect(buf, 70, NX_PII_ALL, "");

    /* a domain of 253 bytes, then 254 */
    n = 0;
    memcpy(buf, "x@", 2);
    n = 2;
    memset(buf + n, 'a', 63);
    n += 63;
    buf[n++] = '.';
    memset(buf + n, 'b', 63);
    n += 63;
    buf[n++] = '.';
    memset(buf + n, 'c', 63);
    n += 63;
    buf[n++] = '.';
    memset(buf + n, 'd', 61);
    n += 61;
    assert_int_equal(n - 2, 253);
    sprintf(want, "email[%.*s]", (int) n, buf);
    expect(buf, n, NX_PII_ALL, want);

    buf[n++] = 'd';
    expect(buf, n, NX_PII_ALL, "");
}


static void
test_phone(void **state)
{
    (void) state;

    /* E.164 */
    E("+14155550100", "phone[+14155550100]");
    E("+1 415 555 0100", "phone[+1 415 555 0100]");
    E("+1-415-555-0100", "phone[+1-415-555-0100]");
    E("+1.415.555.0100", "phone[+1.415.555.0100]");
    E("+44 20 7946 0958", "phone[+44 20 7946 0958]");
    E("+1 (212) 555-0100", "phone[+1 (212) 555-0100]");
    E("+44 (0)20 7946 0958", "phone[+44 (0)20 7946 0958]");
    E("+44(0)20 7946 0958", "phone[+44(0)20 7946 0958]");
    E("call +33 1 23 45 67 89.", "phone[+33 1 23 45 67 89]");
    E("+12345678", "phone[+12345678]");
    E("+123456789012345", "phone[+123456789012345]");

    /* North American */
    E("(212) 555-0100", "phone[(212) 555-0100]");
    E("(212)555-0100", "phone[(212)555-0100]");
    E("212-555-0100", "phone[212-555-0100]");
    E("212.555.0100", "phone[212.555.0100]");
    E("212 555 0100", "phone[212 555 0100]");
    E("212-555 0100", "phone[212-555 0100]");
    E("1-800-555-0100", "phone[1-800-555-0100]");
    E("1 (800) 555-0100", "phone[1 (800) 555-0100]");
    E("tel:212-555-0100;", "phone[212-555-0100]");

    E("+1234567", "");
    E("+1234567890123456", "");
    E("+0123456789", "");
    E("+ 14155550100", "");
    E("1+2125550100", "");
    E("x+14155550100", "");
    E("2125550100", "");
    E("112-555-0100", "");
    E("212-155-0100", "");
    E("212-555-010", "");
    E("212-555-01000", "");
    E("212--555-0100", "");
    E("212_555_0100", "");
    E("(212)) 555-0100", "");
    E("x212-555-0100", "");
    E("212-555-0100x", "");
    E("555-0100", "");
}


static void
test_iban(void **state)
{
    (void) state;

    E("GB82 WEST 1234 5698 7654 32", "iban[GB82 WEST 1234 5698 7654 32]");
    E("GB82WEST12345698765432", "iban[GB82WEST12345698765432]");
    E("DE89370400440532013000", "iban[DE89370400440532013000]");
    E("DE89 3704 0044 0532 0130 00", "iban[DE89 3704 0044 0532 0130 00]");
    E("FR1420041010050500013M02606", "iban[FR1420041010050500013M02606]");
    E("NO9386011117947", "iban[NO9386011117947]");
    E("MT84MALT011000012345MTLCAST001S",
      "iban[MT84MALT011000012345MTLCAST001S]");
    E("LC55HEMM000100010012001200023015",
      "iban[LC55HEMM000100010012001200023015]");
    E("IBAN: BE68 5390 0754 7034.", "iban[BE68 5390 0754 7034]");
    E("GB82 WEST 1234 5698 7654 32 thanks",
      "iban[GB82 WEST 1234 5698 7654 32]");

    E("GB82WEST12345698765433", "");
    E("GB82 WEST 1234 5698 7654 33", "");
    E("gb82west12345698765432", "");
    E("GB82west12345698765432", "");
    E("XGB82WEST12345698765432", "");
    E("GB82WEST12345698765432X", "");
    E("GB82WEST12345698765432x", "");
    E("aGB82WEST12345698765432", "");
    E("GB82  WEST 1234 5698 7654 32", "");
    E("GB82 WES T123 4569 8765 432", "");
    E("GB82-WEST-1234-5698-7654-32", "");
    E("GB8 2WEST12345698765432", "");
    E("GB00WEST12345698765432", "");
    E("GB01WEST12345698765432", "");
    E("GB99WEST12345698765432", "");
    E("NO938601111794", "");
}


/* PII in the middle of JSON strings, next to escapes */

static void
test_json_strings(void **state)
{
    (void) state;

    E("{\"content\":\"Card:\\n4111111111111111\\tthanks\"}",
      "card[4111111111111111]");
    E("{\"content\":\"mail:\\njohn@example.com\\n\"}",
      "email[john@example.com]");
    E("\"tel \\\"212-555-0100\\\"\"", "phone[212-555-0100]");
    E("\"\\\\4111111111111111\"", "card[4111111111111111]");
    E("\"\\r\\nGB82WEST12345698765432\"", "iban[GB82WEST12345698765432]");
    E("\"\\u00e9123-45-6789\"", "ssn[123-45-6789]");
    E("\"x\\/john@example.com\\/y\"", "email[john@example.com]");

    /* escapes are not separators, and never part of a match */
    E("\"4111\\t1111\\t1111\\t1111\"", "");
    E("\"4111\\n1111\\n1111\\n1111\"", "");
    E("\"\\u4111111111111111\"", "");
    E("\"\\u0034111111111111111\"", "");
    E("\"john\\u0040example.com\"", "");
    E("\"\\njohn\\n@example.com\"", "");

    /* an escaped backslash before 'n': the 'n' is a letter */
    E("\"x\\\\n4111111111111111\"", "");

    /* a broken \u escape: what follows is text again */
    E("\"\\u12 4111111111111111\"", "card[4111111111111111]");
}


static void
test_json_mode(void **state)
{
    static const char  doc[] =
        "{\"seed\":123456789,\"n\":4111111111111111,\"messages\":"
        "[{\"role\":\"user\",\"content\":\"my ssn is 123-45-6789\"}]}";

    (void) state;

    EJ(doc, "ssn[123-45-6789]");
    E(doc, "ssn[123456789] card[4111111111111111] ssn[123-45-6789]");

    /* member names are strings too */
    EJ("{\"4111111111111111\":1}", "card[4111111111111111]");

    /* quotes end matches, escaped quotes do not end strings */
    EJ("[\"a\\\"b 212-555-0100\",212-555-0100]", "phone[212-555-0100]");
    EJ("[\"4111111111111111\" 4111111111111111]", "card[4111111111111111]");
    EJ("\"john@example.com\"@example.com", "email[john@example.com]");

    /* an unterminated string is scanned to the end */
    EJ("[\"x 4111111111111111", "card[4111111111111111]");

    /* outside strings nothing counts, and a backslash escapes nothing */
    EJ("\\\"4111111111111111\"", "card[4111111111111111]");
    EJ("4111111111111111 \\ 4111111111111111", "");
    EJ("4111111111111111", "");
}


static void
redact_json(const char *doc, unsigned mask, const char *want)
{
    char            *buf, err[128];
    size_t           n, len, i;
    yajl_val         v;
    nx_pii_match_t   m[MAX_MATCHES];

    len = strlen(doc);
    buf = malloc(len + 1);
    assert_non_null(buf);
    memcpy(buf, doc, len + 1);

    n = nx_pii_scan(buf, len, mask, m, MAX_MATCHES);
    assert_true(n <= MAX_MATCHES);
    nx_pii_redact(buf, len, m, n);

    assert_string_equal(buf, want);

    /* letters and digits become the mask, nothing else changes */
    for (i = 0; i < len; i++) {
        if (buf[i] != doc[i]) {
            assert_int_equal(buf[i], NX_PII_MASK);
            assert_true((doc[i] >= '0' && doc[i] <= '9')
                        || (doc[i] >= 'a' && doc[i] <= 'z')
                        || (doc[i] >= 'A' && doc[i] <= 'Z'));
        }
    }

    v = nx_json_parse(doc, len, err, sizeof(err));
    assert_non_null(v);
    nx_json_free(v);

    v = nx_json_parse(buf, len, err, sizeof(err));
    if (v == NULL) {
        print_error("redacted JSON does not parse: %s\n", err);
    }

    assert_non_null(v);
    nx_json_free(v);

    free(buf);
}


static void
test_redact(void **state)
{
    (void) state;

    redact_json(
        "{\"model\":\"m\",\"seed\":123456789,\"messages\":[{\"role\":\"user\","
        "\"content\":\"card 4111 1111-1111 1111,\\nmail john.doe@example.com."
        "\\ttel (212) 555-0100 or +44 20 7946 0958\\n"
        "ssn\\u003a123-45-6789 iban GB82 WEST 1234 5698 7654 32\"}]}",
        NX_PII_ALL | NX_PII_JSON,
        "{\"model\":\"m\",\"seed\":123456789,\"messages\":[{\"role\":\"user\","
        "\"content\":\"card **** ****-**** ****,\\nmail ****.***@*******.***."
        "\\ttel (***) ***-**** or +** ** **** ****\\n"
        "ssn\\u003a***-**-**** iban **** **** **** **** **** **\"}]}");

    /* only the kinds asked for */
    redact_json("[\"4111111111111111 john@example.com\"]",
                NX_PII_EMAIL | NX_PII_JSON,
                "[\"4111111111111111 ****@*******.***\"]");

    /* escapes inside and around matches survive */
    redact_json("[\"\\u00414111111111111111\\u0041\",\"\\\\123456789\"]",
                NX_PII_ALL | NX_PII_JSON,
                "[\"\\u0041****************\\u0041\",\"\\\\*********\"]");

    /* nothing found, nothing changed */
    redact_json("{\"a\":[1,2,3],\"b\":\"hello\"}", NX_PII_ALL | NX_PII_JSON,
                "{\"a\":[1,2,3],\"b\":\"hello\"}");
}


static void
test_redact_edges(void **state)
{
    char            buf[32];
    nx_pii_match_t  m[3];

    (void) state;

    /* ranges are clipped to len, empty and inverted ones do nothing */
    memcpy(buf, "ab-cd ef", 9);
    m[0].start = 0;
    m[0].end = 2;
    m[0].kind = NX_PII_CARD;
    m[1].start = 5;
    m[1].end = 4;
    m[1].kind = NX_PII_CARD;
    m[2].start = 6;
    m[2].end = 100;
    m[2].kind = NX_PII_CARD;

    nx_pii_redact(buf, 7, m, 3);
    assert_string_equal(buf, "**-cd *f");

    nx_pii_redact(buf, 8, NULL, 3);
    nx_pii_redact(NULL, 8, m, 3);
    nx_pii_redact(buf, 8, m, 0);
    assert_string_equal(buf, "**-cd *f");
}


static void
test_overlap(void **state)
{
    (void) state;

    /* the leftmost candidate wins, then the longest */
    E("4111111111111111@example.com", "email[4111111111111111@example.com]");
    EM("4111111111111111@example.com", NX_PII_CARD,
       "card[4111111111111111]");
    E("+1 123-45-6789", "phone[+1 123-45-6789]");
    EM("+1 123-45-6789", NX_PII_SSN, "ssn[123-45-6789]");
    E("1-212-555-0100", "phone[1-212-555-0100]");
    E("123456789@example.com", "email[123456789@example.com]");
    E("+4111111111111111", "card[4111111111111111]");

    /* adjacent and consecutive matches */
    E("123-45-6789 4111111111111111",
      "ssn[123-45-6789] card[4111111111111111]");
    E("4111 1111 1111 1111 4012 8888 8888 1881",
      "card[4111 1111 1111 1111] card[4012 8888 8888 1881]");
    E("john@example.com,jane@example.org",
      "email[john@example.com] email[jane@example.org]");
    E("212-555-0100/212-555-0199",
      "phone[212-555-0100] phone[212-555-0199]");
    E("123-45-6789-987-65-4321", "ssn[123-45-6789]");
}


static void
test_mask(void **state)
{
    static const char  s[] =
        "4111111111111111 123-45-6789 john@example.com 212-555-0100 "
        "DE89370400440532013000";

    (void) state;

    E(s, "card[4111111111111111] ssn[123-45-6789] email[john@example.com] "
         "phone[212-555-0100] iban[DE89370400440532013000]");
    EM(s, NX_PII_CARD, "card[4111111111111111]");
    EM(s, NX_PII_SSN, "ssn[123-45-6789]");
    EM(s, NX_PII_EMAIL, "email[john@example.com]");
    EM(s, NX_PII_PHONE, "phone[212-555-0100]");
    EM(s, NX_PII_IBAN, "iban[DE89370400440532013000]");
    EM(s, NX_PII_CARD | NX_PII_IBAN,
       "card[4111111111111111] iban[DE89370400440532013000]");
    EM(s, 0, "");
    EM(s, NX_PII_JSON, "");
    EM(s, 0x80, "");
}


static void
test_max(void **state)
{
    size_t           n;
    nx_pii_match_t   m[4];

    static const char  s[] =
        "4111111111111111 4012888888881881 5555555555554444 "
        "378282246310005 6011111111111117";

    (void) state;

    memset(m, 0xa5, sizeof(m));

    n = nx_pii_scan(s, sizeof(s) - 1, NX_PII_ALL, m, 2);
    assert_int_equal(n, 5);
    assert_int_equal(m[0].start, 0);
    assert_int_equal(m[0].end, 16);
    assert_int_equal(m[1].start, 17);
    assert_int_equal(m[1].end, 33);
    assert_int_equal(m[1].kind, NX_PII_CARD);

    /* nothing written beyond max */
    assert_int_equal(m[2].start, (size_t) 0xa5a5a5a5a5a5a5a5ULL);
    assert_int_equal(m[3].end, (size_t) 0xa5a5a5a5a5a5a5a5ULL);

    assert_int_equal(nx_pii_scan(s, sizeof(s) - 1, NX_PII_ALL, NULL, 0), 5);
    assert_int_equal(nx_pii_scan(s, sizeof(s) - 1, NX_PII_ALL, NULL, 4), 5);
    assert_int_equal(nx_pii_scan(s, sizeof(s) - 1, NX_PII_ALL, m, 0), 5);
    assert_int_equal(m[0].start, 0);

    n = nx_pii_scan(s, sizeof(s) - 1, NX_PII_ALL, m, 4);
    assert_int_equal(n, 5);
    assert_int_equal(m[3].start, 51);
    assert_int_equal(m[3].end, 66);
}


/* a large buffer of a repeated pattern; returns the number of matches */

static size_t
scan_big(const char *pat, size_t patlen, unsigned mask)
{
    char            *buf;
    size_t           i, n, stored;
    nx_pii_match_t  *m;

    buf = malloc(BIG);
    m = malloc(1024 * sizeof(nx_pii_match_t));
    assert_non_null(buf);
    assert_non_null(m);

    for (i = 0; i < BIG; i++) {
        buf[i] = pat[i % patlen];
    }

    n = nx_pii_scan(buf, BIG, mask, m, 1024);
    stored = n < 1024 ? n : 1024;
    check_matches(buf, BIG, m, stored);

    nx_pii_redact(buf, BIG, m, stored);

    free(m);
    free(buf);

    return n;
}


#define BIGP(pat, mask)  scan_big(pat, sizeof(pat) - 1, mask)


static void
test_large(void **state)
{
    char      *buf;
    size_t     i, n;
    uint32_t   x;

    static const char  seps[] = "0123456789 -.()+@aA\\\"";

    (void) state;

    /* every 20 bytes a card */
    assert_int_equal(BIGP("4111 1111 1111 1111 ", NX_PII_ALL), BIG / 20);
    assert_int_equal(BIGP("4111-1111-1111-1111 ", NX_PII_ALL), BIG / 20);

    /* long runs that never make a match */
    assert_int_equal(BIGP("1", NX_PII_ALL), 0);
    assert_int_equal(BIGP("1 ", NX_PII_ALL), 0);
    assert_int_equal(BIGP("1-", NX_PII_ALL), 0);
    assert_int_equal(BIGP("1234 ", NX_PII_ALL), 0);
    assert_int_equal(BIGP("1.", NX_PII_ALL), 0);
    assert_int_equal(BIGP("+1 ", NX_PII_ALL), 0);
    assert_int_equal(BIGP("(", NX_PII_ALL), 0);
    assert_int_equal(BIGP("a.", NX_PII_ALL), 0);
    assert_int_equal(BIGP("a@", NX_PII_ALL), 0);
    assert_int_equal(BIGP("a-", NX_PII_ALL), 0);
    assert_int_equal(BIGP("GB82 WEST ", NX_PII_ALL), 0);
    assert_int_equal(BIGP("DE89 ", NX_PII_ALL), 0);

    /* only the tail "4111 4111 4111 4111 4" (4-4-4-4-1) is a card */
    assert_int_equal(BIGP("4111 ", NX_PII_ALL), 1);
    assert_int_equal(BIGP("\\u", NX_PII_ALL), 0);
    assert_int_equal(BIGP("\"", NX_PII_ALL | NX_PII_JSON), 0);

    /* the same, as one JSON string */
    assert_int_equal(BIGP("4111 1111 1111 1111 ", NX_PII_ALL | NX_PII_JSON),
                     0);

    /* digits and separators at random (a fixed sequence) */
    buf = malloc(BIG);
    assert_non_null(buf);
    x = 12345;

    for (i = 0; i < BIG; i++) {
        x = x * 1103515245 + 12345;
        buf[i] = seps[(x >> 16) % (sizeof(seps) - 1)];
    }

    n = nx_pii_scan(buf, BIG, NX_PII_ALL, NULL, 0);
    assert_true(n < BIG / 8);
    n = nx_pii_scan(buf, BIG, NX_PII_ALL | NX_PII_JSON, NULL, 0);
    assert_true(n < BIG / 8);

    /* a huge local part before '@', and a huge domain */
    memset(buf, 'a', BIG);
    buf[BIG / 2] = '@';
    assert_int_equal(nx_pii_scan(buf, BIG, NX_PII_ALL, NULL, 0), 0);

    memset(buf, '-', BIG);
    memcpy(buf, "john@e", 6);
    memcpy(buf + BIG - 4, "a.co", 4);
    assert_int_equal(nx_pii_scan(buf, BIG, NX_PII_ALL, NULL, 0), 0);

    free(buf);
}


static void
test_empty(void **state)
{
    nx_pii_match_t  m[1];

    (void) state;

    E("", "");
    E(" ", "");
    EJ("", "");
    assert_int_equal(nx_pii_scan("", 0, NX_PII_ALL, m, 1), 0);
    assert_int_equal(nx_pii_scan(NULL, 0, NX_PII_ALL, m, 1), 0);
    assert_int_equal(nx_pii_scan(NULL, 10, NX_PII_ALL, m, 1), 0);
    assert_int_equal(nx_pii_scan("4111111111111111", 16, NX_PII_ALL, NULL, 1),
                     1);
}


static void
test_len_respected(void **state)
{
    (void) state;

    /* bytes beyond len are never looked at */
    expect("4111111111111111", 15, NX_PII_ALL, "");
    expect("4111111111111111x", 16, NX_PII_ALL, "card[4111111111111111]");
    expect("john@example.com", 15, NX_PII_ALL, "email[john@example.co]");
    expect("john@example.com", 13, NX_PII_ALL, "");
    expect("123-45-6789", 10, NX_PII_ALL, "");
    expect("123-45-67890", 11, NX_PII_ALL, "ssn[123-45-6789]");
    expect("(212) 555-0100", 13, NX_PII_ALL, "");
    expect("+14155550100", 1, NX_PII_ALL, "");
    expect("+14155550100", 2, NX_PII_ALL, "");
    expect("GB82WEST12345698765432", 21, NX_PII_ALL, "");
    expect("GB82", 3, NX_PII_ALL, "");
    expect("a@b.cd", 5, NX_PII_ALL, "");
    expect("212-555-", 8, NX_PII_ALL, "");
    expect("212-", 4, NX_PII_ALL, "");
    expect("1 (", 3, NX_PII_ALL, "");
    expect("+1 (", 4, NX_PII_ALL, "");
}


static void
test_bytes(void **state)
{
    int   c;
    char  buf[32];

    (void) state;

    /* NUL and non-ASCII bytes are boundaries like any punctuation */
    E("\0" "4111111111111111" "\0", "card[4111111111111111]");
    E("\xc3\xa9" "4111111111111111" "\xc3\xa9", "card[4111111111111111]");
    E("\xff" "john@example.com" "\x80", "email[john@example.com]");
    E("4111\0" "1111 1111 1111", "");

    for (c = 0x80; c <= 0xff; c++) {
        buf[0] = (char) c;
        memcpy(buf + 1, "123-45-6789", 11);
        buf[12] = (char) c;
        expect(buf, 13, NX_PII_ALL, "ssn[123-45-6789]");
    }
}


static void
test_kind_name(void **state)
{
    (void) state;

    assert_string_equal(nx_pii_kind_name(NX_PII_CARD), "card");
    assert_string_equal(nx_pii_kind_name(NX_PII_SSN), "ssn");
    assert_string_equal(nx_pii_kind_name(NX_PII_EMAIL), "email");
    assert_string_equal(nx_pii_kind_name(NX_PII_PHONE), "phone");
    assert_string_equal(nx_pii_kind_name(NX_PII_IBAN), "iban");
    assert_string_equal(nx_pii_kind_name((nx_pii_kind_t) 0), "unknown");
    assert_string_equal(nx_pii_kind_name((nx_pii_kind_t) 3), "unknown");
}


/*
 * In a JSON body the scan passes over strings with no digit and no '@'
 * eight bytes at a time: what ends that, at every place in a block, is
 * found, and an escaped quote does not end the string.
 */

static void
test_json_plain_strings(void **state)
{
    int             k;
    char            body[128], pad[24];
    size_t          n;
    nx_pii_match_t  m[4];

    (void) state;

    for (k = 0; k < 20; k++) {
        memset(pad, 'x', k);
        pad[k] = '\0';

        (void) snprintf(body, sizeof(body),
                        "{\"a\":\"%s 4111 1111 1111 1111 yyyyyyyyyy\"}", pad);
        n = nx_pii_scan(body, strlen(body), NX_PII_ALL | NX_PII_JSON, m, 4);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].kind, NX_PII_CARD);
        assert_int_equal(m[0].start, 7 + k);

        (void) snprintf(body, sizeof(body),
                        "{\"a\":\"%s me@example.com yyyyyyyyyy\"}", pad);
        n = nx_pii_scan(body, strlen(body), NX_PII_ALL | NX_PII_JSON, m, 4);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].kind, NX_PII_EMAIL);
        assert_int_equal(m[0].start, 7 + k);

        /* the quote is escaped: the card is still in the string */
        (void) snprintf(body, sizeof(body),
                        "{\"a\":\"%s\\\"zzzzzzzzz 4111 1111 1111 1111\"}",
                        pad);
        n = nx_pii_scan(body, strlen(body), NX_PII_ALL | NX_PII_JSON, m, 4);
        assert_int_equal(n, 1);
        assert_int_equal(m[0].kind, NX_PII_CARD);

        /* and outside strings nothing is looked at */
        (void) snprintf(body, sizeof(body),
                        "{\"%s\":4111111111111111,\"b\":\"zzzzzzzzzz\"}", pad);
        assert_int_equal(nx_pii_scan(body, strlen(body),
                                     NX_PII_ALL | NX_PII_JSON, m, 4), 0);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_card),
        cmocka_unit_test(test_json_plain_strings),
        cmocka_unit_test(test_card_negative),
        cmocka_unit_test(test_ssn),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_email_limits),
        cmocka_unit_test(test_phone),
        cmocka_unit_test(test_iban),
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_redact_edges),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_max),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_len_respected),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_kind_name),
    };

    return cmocka_run_group_tests_name("pii", tests, NULL, NULL);
}
