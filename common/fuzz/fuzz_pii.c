/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_pii: the first byte chooses the kinds (and
 * NX_PII_JSON), the second the number of matches to store, the rest is
 * the body. Every match is checked against plain reference rules for its
 * kind, the list against a full scan, and redaction must keep the length
 * and every byte but the matched letters and digits; a valid JSON
 * document must stay valid once redacted.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nx_pii.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define digit(c)  ((c) >= '0' && (c) <= '9')
#define upper(c)  ((c) >= 'A' && (c) <= 'Z')
#define lower(c)  ((c) >= 'a' && (c) <= 'z')
#define alnum(c)  (digit(c) || upper(c) || lower(c))


/* the letters and digits of s[0..n) into out (at most 64 kept) */

static size_t
alnums(const uint8_t *s, size_t n, char *out)
{
    size_t  i, k;

    for (i = 0, k = 0; i < n; i++) {
        if (alnum(s[i])) {
            if (k < 64) {
                out[k] = (char) s[i];
            }

            k++;
        }
    }

    return k;
}


static int
only(const uint8_t *s, size_t n, const char *extra)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (!digit(s[i]) && strchr(extra, s[i]) == NULL) {
            return 0;
        }
    }

    return 1;
}


static int
ref_luhn(const char *d, size_t n)
{
    size_t    k;
    unsigned  x, sum;

    sum = 0;

    for (k = 0; k < n; k++) {
        x = d[n - 1 - k] - '0';

        if (k % 2) {
            x *= 2;
            x = x > 9 ? x - 9 : x;
        }

        sum += x;
    }

    return sum % 10 == 0;
}


static int
ref_iban(const char *s, size_t n)
{
    size_t    k, c;
    unsigned  r, v;

    r = 0;

    for (k = 0; k < n; k++) {
        c = (k + 4) % n;

        if (digit(s[c])) {
            r = (r * 10 + (s[c] - '0')) % 97;

        } else {
            v = s[c] - 'A' + 10;
            r = (r * 10 + v / 10) % 97;
            r = (r * 10 + v % 10) % 97;
        }
    }

    return r == 1;
}


/*
 * Marks the bytes a JSON escape makes part of itself: the one after a
 * backslash, and the hex digits of \uXXXX. Those may precede a match
 * even when they are letters or digits.
 */

static void
escapes(const uint8_t *buf, size_t len, uint8_t *esc)
{
    size_t  i, k;

    memset(esc, 0, len);

    for (i = 0; i < len; i++) {
        if (buf[i] != '\\' || i + 1 == len) {
            continue;
        }

        esc[++i] = 1;

        if (buf[i] != 'u') {
            continue;
        }

        for (k = 0; k < 4 && i + 1 < len; k++) {
            if (!digit(buf[i + 1])
                && !((buf[i + 1] | 0x20) >= 'a' && (buf[i + 1] | 0x20) <= 'f'))
            {
                break;
            }

            esc[++i] = 1;
        }
    }
}


static void
check_match(const uint8_t *buf, size_t len, const uint8_t *esc,
    const nx_pii_match_t *m)
{
    char            d[64];
    size_t          n, i, at;
    unsigned        area, group, serial;
    const uint8_t  *s;

    s = buf + m->start;
    n = m->end - m->start;

    if (n > 64 + 1 + 253) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\' || s[i] >= 0x80 || s[i] < 0x20) {
            abort();
        }
    }

    /* bounded by non-alphanumeric bytes (or an escape) */
    if (m->start > 0 && alnum(buf[m->start - 1]) && !esc[m->start - 1]) {
        abort();
    }

    if (m->kind != NX_PII_EMAIL
        && ((m->end < len && alnum(buf[m->end])) || !alnum(s[n - 1])))
    {
        abort();
    }

    switch (m->kind) {

    case NX_PII_CARD:
        if (!only(s, n, " -") || !digit(s[0])) {
            abort();
        }

        n = alnums(s, n, d);
        if (n < 13 || n > 19 || d[0] < '2' || d[0] > '6'
            || !ref_luhn(d, n))
        {
            abort();
        }

        break;

    case NX_PII_SSN:
        if (!only(s, n, " -") || alnums(s, n, d) != 9) {
            abort();
        }

        area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
        group = (d[3] - '0') * 10 + (d[4] - '0');
        serial = (d[5] - '0') * 1000 + (d[6] - '0') * 100
                 + (d[7] - '0') * 10 + (d[8] - '0');

        if (area == 0 || area == 666 || area >= 900 || group == 0
            || serial == 0)
        {
            abort();
        }

        break;

    case NX_PII_PHONE:
        if (!only(s, n, " -.()+")) {
            abort();
        }

        if (s[0] == '+') {
            i = alnums(s, n, d);
            if (i < 8 || i > 15 || d[0] == '0'
                || memchr(s + 1, '+', n - 1) != NULL)
            {
                abort();
            }

        } else {
            i = alnums(s, n, d);
            if ((i != 10 && i != 11) || memchr(s, '+', n) != NULL
                || (i == 11 && d[0] != '1')
                || d[i - 10] < '2' || d[i - 7] < '2')
            {
                abort();
            }
        }

        break;

    case NX_PII_IBAN:
        for (i = 0; i < n; i++) {
            if (!digit(s[i]) && !upper(s[i]) && s[i] != ' ') {
                abort();
            }
        }

        i = alnums(s, n, d);
        if (i < 15 || i > 34 || !upper(d[0]) || !upper(d[1])
            || !digit(d[2]) || !digit(d[3]) || !ref_iban(d, i))
        {
            abort();
        }

        break;

    case NX_PII_EMAIL:
        at = n;

        for (i = 0; i < n; i++) {
            if (s[i] == '@') {
                if (at != n) {
                    abort();
                }

                at = i;
                continue;
            }

            if (!alnum(s[i])
                && strchr(at == n ? "._%+-" : ".-", s[i]) == NULL)
            {
                abort();
            }
        }

        if (at == 0 || at > 64 || at + 1 >= n || n - at - 1 > 253
            || s[0] == '.' || s[at - 1] == '.' || !alnum(s[at + 1])
            || !(upper(s[n - 1]) || lower(s[n - 1]))
            || (m->end < len && alnum(buf[m->end])))
        {
            abort();
        }

        break;

    default:
        abort();
    }
}


static void
check(const uint8_t *buf, size_t len, unsigned mask, size_t max)
{
    char            *red, err[128];
    size_t           n, k, i, j;
    uint8_t         *esc;
    yajl_val         v;
    nx_pii_match_t  *all, *some;

    /* every match covers at least 6 bytes */
    all = malloc((len / 6 + 1) * sizeof(nx_pii_match_t));
    some = malloc((max + 1) * sizeof(nx_pii_match_t));
    red = malloc(len ? len : 1);
    esc = malloc(len ? len : 1);
    if (all == NULL || some == NULL || red == NULL || esc == NULL) {
        abort();
    }

    escapes(buf, len, esc);

    n = nx_pii_scan((const char *) buf, len, mask, all, len / 6 + 1);
    if (n > len / 6 + 1) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if (all[i].start >= all[i].end || all[i].end > len
            || (i > 0 && all[i - 1].end > all[i].start)
            || (all[i].kind & mask) == 0)
        {
            abort();
        }

        check_match(buf, len, esc, &all[i]);
    }

    /* a bounded list is a prefix of the full one, with the same count */

    k = nx_pii_scan((const char *) buf, len, mask, some, max);
    if (k != n) {
        abort();
    }

    for (i = 0; i < n && i < max; i++) {
        if (some[i].start != all[i].start || some[i].end != all[i].end
            || some[i].kind != all[i].kind)
        {
            abort();
        }
    }

    if (nx_pii_scan((const char *) buf, len, mask, NULL, 0) != n) {
        abort();
    }

    /* redaction */

    memcpy(red, buf, len);
    nx_pii_redact(red, len, all, n);

    for (i = 0, j = 0; i < len; i++) {
        while (j < n && all[j].end <= i) {
            j++;
        }

        if (j < n && all[j].start <= i && alnum(buf[i])) {
            if (red[i] != NX_PII_MASK) {
                abort();
            }

        } else if ((uint8_t) red[i] != buf[i]) {
            abort();
        }
    }

    if ((mask & NX_PII_JSON) && n > 0) {
        v = nx_json_parse((const char *) buf, len, err, sizeof(err));

        if (v != NULL) {
            nx_json_free(v);

            v = nx_json_parse(red, len, err, sizeof(err));
            if (v == NULL) {
                abort();
            }

            nx_json_free(v);
        }
    }

    free(esc);
    free(red);
    free(some);
    free(all);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t   *buf;
    size_t     len, max;
    unsigned   mask;

    if (size < 2) {
        return 0;
    }

    mask = data[0] & NX_PII_ALL;
    if (data[0] & 0x20) {
        mask |= NX_PII_JSON;
    }

    max = data[1];
    len = size - 2;

    /* an exact copy, so that any over-read hits the redzone */
    buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data + 2, len);

    check(buf, len, mask, max);
    check(buf, len, mask | NX_PII_ALL, max);
    check(buf, len, mask ^ NX_PII_JSON, max);

    free(buf);

    return 0;
}
