/*
 * Copyright (C) Nexus authors
 *
 * Detection of personal data in request bodies, and masking in place.
 *
 * nx_pii_scan() walks the bytes once, left to right, keeping only a few
 * flags: whether it is inside a JSON string (NX_PII_JSON), inside a JSON
 * escape, and whether the previous byte ends a token. Where a token may
 * start, each enabled kind has a matcher that looks ahead a bounded
 * distance (at most 19 digits for a card, 34 characters for an IBAN, 64 +
 * 253 bytes for an e-mail address) and returns the end of its longest
 * match there. Nothing backtracks, so the scan is linear in len with a
 * small constant, whatever the input.
 *
 * Matchers only ever consume ASCII letters, digits and a few separators,
 * never a backslash or a quote. Since the escaped bytes of a JSON string
 * all follow a backslash, a match that starts outside an escape cannot
 * reach one, and masking letters and digits cannot break the JSON.
 */

#include <stdint.h>
#include <string.h>

#include "nx_pii.h"


#define NX_PII_CARD_MIN    13
#define NX_PII_CARD_MAX    19
#define NX_PII_E164_MIN    8
#define NX_PII_E164_MAX    15
#define NX_PII_IBAN_MIN    15
#define NX_PII_IBAN_MAX    34
#define NX_PII_LOCAL_MAX   64
#define NX_PII_DOMAIN_MAX  253
#define NX_PII_LABEL_MAX   63

/* far below UINT64_MAX / 100 */
#define NX_PII_MOD97_CAP   10000000000000000ULL

/* escape states besides 1..4, the hex digits of \uXXXX still to come */
#define NX_PII_ESC_NONE    0
#define NX_PII_ESC_SLASH   5

#define nx_pii_digit(c)    ((c) >= '0' && (c) <= '9')
#define nx_pii_upper(c)    ((c) >= 'A' && (c) <= 'Z')
#define nx_pii_alpha(c)    (((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'z')
#define nx_pii_alnum(c)    (nx_pii_digit(c) || nx_pii_alpha(c))
#define nx_pii_xdigit(c)   (nx_pii_digit(c)                                  \
                            || (((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'f'))
#define nx_pii_local(c)    (nx_pii_alnum(c) || (c) == '.' || (c) == '_'      \
                            || (c) == '%' || (c) == '+' || (c) == '-')
#define nx_pii_card_sep(c) ((c) == ' ' || (c) == '-')
#define nx_pii_tel_sep(c)  ((c) == ' ' || (c) == '-' || (c) == '.')


static size_t nx_pii_card(const unsigned char *p, size_t len, size_t i);
static size_t nx_pii_ssn(const unsigned char *p, size_t len, size_t i);
static size_t nx_pii_email(const unsigned char *p, size_t len, size_t i);
static size_t nx_pii_plain_string(const unsigned char *p, size_t len,
    size_t i);
static size_t nx_pii_e164(const unsigned char *p, size_t len, size_t i);
static size_t nx_pii_nanp(const unsigned char *p, size_t len, size_t i);
static size_t nx_pii_iban(const unsigned char *p, size_t len, size_t i);
static size_t nx_pii_digits(const unsigned char *p, size_t len, size_t i,
    size_t limit);
static int nx_pii_num_end(const unsigned char *p, size_t len, size_t i);
static uint64_t nx_pii_mod97(uint64_t r, unsigned char c);


size_t
nx_pii_scan(const char *buf, size_t len, unsigned mask, nx_pii_match_t *out,
    size_t max)
{
    int                   json, instr, esc, brk, word, num;
    size_t                i, n, e, end, at;
    const unsigned char  *q;
    unsigned              kind;
    unsigned char         c;
    const unsigned char  *p;

    if (buf == NULL || (mask & NX_PII_ALL) == 0) {
        return 0;
    }

    if (out == NULL) {
        max = 0;
    }

    p = (const unsigned char *) buf;
    json = (mask & NX_PII_JSON) != 0;
    instr = !json;
    esc = NX_PII_ESC_NONE;

    /* the previous byte ends an alphanumeric token, an e-mail local part */
    brk = 1;
    word = 0;

    n = 0;
    i = 0;
    at = SIZE_MAX;      /* not looked for yet */

    while (i < len) {
        c = p[i];

        if (!instr) {
            /* between JSON strings: structure, numbers and literals */
            if (c == '"') {
                instr = 1;

                /* a string without a digit or an '@' holds no match */
                e = nx_pii_plain_string(p, len, i + 1);

                if (e != 0) {
                    /* as its closing quote would leave the scan */
                    instr = 0;
                    brk = 1;
                    word = 0;
                    i = e;
                }
            }

            i++;
            continue;
        }

        if (esc == NX_PII_ESC_SLASH) {
            esc = (c == 'u') ? 4 : NX_PII_ESC_NONE;
            goto separate;
        }

        if (esc != NX_PII_ESC_NONE) {
            if (nx_pii_xdigit(c)) {
                esc--;
                goto separate;
            }

            /* a broken \u escape: the byte is text again */
            esc = NX_PII_ESC_NONE;
        }

        if (c == '\\') {
            esc = NX_PII_ESC_SLASH;
            goto separate;
        }

        if (json && c == '"') {
            instr = 0;
            goto separate;
        }

        end = 0;
        kind = 0;

        /* no number starts right after a decimal point */
        num = brk && !(i >= 2 && p[i - 1] == '.' && nx_pii_digit(p[i - 2]));

        /* in kind order, so that on equal length the lowest bit wins */

        if (num && nx_pii_digit(c)) {
            if (mask & NX_PII_CARD) {
                e = nx_pii_card(p, len, i);
                if (e > end) {
                    end = e;
                    kind = NX_PII_CARD;
                }
            }

            if (mask & NX_PII_SSN) {
                e = nx_pii_ssn(p, len, i);
                if (e > end) {
                    end = e;
                    kind = NX_PII_SSN;
                }
            }
        }

        if (!word && c != '.' && nx_pii_local(c) && (mask & NX_PII_EMAIL)) {
            /* no address without an '@' ahead: find the next one once */
            if (at == SIZE_MAX || at < i) {
                q = memchr(p + i, '@', len - i);
                at = q ? (size_t) (q - p) : len;
            }

            e = at < len ? nx_pii_email(p, len, i) : 0;
            if (e > end) {
                end = e;
                kind = NX_PII_EMAIL;
            }
        }

        if (num && (mask & NX_PII_PHONE)) {
            e = 0;

            if (c == '+') {
                e = nx_pii_e164(p, len, i);

            } else if (c == '(' || nx_pii_digit(c)) {
                e = nx_pii_nanp(p, len, i);
            }

            if (e > end) {
                end = e;
                kind = NX_PII_PHONE;
            }
        }

        if (brk && nx_pii_upper(c) && (mask & NX_PII_IBAN)) {
            e = nx_pii_iban(p, len, i);
            if (e > end) {
                end = e;
                kind = NX_PII_IBAN;
            }
        }

        if (end != 0) {
            if (n < max) {
                out[n].start = i;
                out[n].end = end;
                out[n].kind = (nx_pii_kind_t) kind;
            }

            n++;

            /*
             * a match holds no backslash or quote, so the escape and string
             * states are unchanged; it ends with a letter or digit
             */
            i = end;
            brk = 0;
            word = 1;
            continue;
        }

        brk = !nx_pii_alnum(c);

        if (!nx_pii_local(c)) {
            word = 0;

        } else if (c != '.') {
            /* leading dots are punctuation, not part of a local part */
            word = 1;
        }

        i++;

        /*
         * the rest of a run of letters and digits starts nothing: every
         * detector starts after a break, or (e-mail) outside a word
         */
        if (!brk) {
            while (i < len && nx_pii_alnum(p[i])) {
                i++;
            }
        }

        continue;

    separate:

        brk = 1;
        word = 0;
        i++;
    }

    return n;
}


/*
 * The index of the quote that closes the JSON string whose text starts at
 * p[i], when nothing in it can start or hold a match: every kind needs a
 * digit (a card, an SSN, a phone number, an IBAN's check digits) or an
 * '@' (an e-mail address). 0 when one is there, or the string does not
 * end. An escape is its backslash and the byte after it, as the scan
 * reads it: "\"" does not end the string, and the digits of "\u0041"
 * count.
 */

static size_t
nx_pii_plain_string(const unsigned char *p, size_t len, size_t i)
{
    uint64_t       w, q, b, a, d;
    unsigned char  c;

    while (i < len) {

        /*
         * eight bytes at a time while none is a quote, a backslash, an '@'
         * or a digit: (x - 0x01..) & ~x & 0x80.. is not zero exactly when
         * a byte of x is zero, and with 0x0a.. when one is below 10
         */
        while (len - i >= 8) {
            memcpy(&w, p + i, 8);

            q = w ^ 0x2222222222222222ULL;
            b = w ^ 0x5c5c5c5c5c5c5c5cULL;
            a = w ^ 0x4040404040404040ULL;
            d = w ^ 0x3030303030303030ULL;

            if ((((q - 0x0101010101010101ULL) & ~q)
                 | ((b - 0x0101010101010101ULL) & ~b)
                 | ((a - 0x0101010101010101ULL) & ~a)
                 | ((d - 0x0a0a0a0a0a0a0a0aULL) & ~d))
                & 0x8080808080808080ULL)
            {
                break;
            }

            i += 8;
        }

        if (i == len) {
            break;
        }

        c = p[i];

        if (c == '"') {
            return i;
        }

        if (c == '\\') {
            i += 2;
            continue;
        }

        if (nx_pii_digit(c) || c == '@') {
            return 0;
        }

        i++;
    }

    return 0;
}


void
nx_pii_redact(char *buf, size_t len, const nx_pii_match_t *m, size_t n)
{
    size_t         i, k, end;
    unsigned char  c;

    if (buf == NULL || m == NULL) {
        return;
    }

    for (i = 0; i < n; i++) {
        end = m[i].end < len ? m[i].end : len;

        for (k = m[i].start; k < end; k++) {
            c = (unsigned char) buf[k];

            if (nx_pii_alnum(c)) {
                buf[k] = NX_PII_MASK;
            }
        }
    }
}


const char *
nx_pii_kind_name(nx_pii_kind_t k)
{
    switch (k) {
    case NX_PII_CARD:
        return "card";
    case NX_PII_SSN:
        return "ssn";
    case NX_PII_EMAIL:
        return "email";
    case NX_PII_PHONE:
        return "phone";
    case NX_PII_IBAN:
        return "iban";
    default:
        return "unknown";
    }
}


/*
 * Card numbers: groups of digits, longest candidate wins. The Luhn sum is
 * kept for both parities as digits arrive from the left: with n digits,
 * those at 0-based index k with k % 2 == n % 2 are the doubled ones.
 */

static size_t
nx_pii_card(const unsigned char *p, size_t len, size_t i)
{
    int       all4;
    size_t    j, g, g0, g1, total, groups, best;
    unsigned  d, dbl, sum[2];

    if (p[i] < '2' || p[i] > '6') {
        return 0;
    }

    j = i;
    total = 0;
    groups = 0;
    g0 = 0;
    g1 = 0;
    all4 = 1;
    best = 0;
    sum[0] = 0;
    sum[1] = 0;

    for ( ;; ) {
        for (g = 0; j < len && nx_pii_digit(p[j]); g++, j++) {
            if (total + g == NX_PII_CARD_MAX) {
                /* a run too long to be (or to end) a card */
                return best;
            }

            d = p[j] - '0';
            dbl = d < 5 ? 2 * d : 2 * d - 9;

            /* sum[x] doubles the digits whose index has parity x */
            sum[(total + g) % 2] += dbl;
            sum[(total + g + 1) % 2] += d;
        }

        total += g;
        groups++;

        if (groups == 1) {
            g0 = g;

        } else if (groups == 2) {
            g1 = g;
        }

        if (total >= NX_PII_CARD_MIN
            && (groups == 1
                || (all4 && g <= 4)
                || (groups == 3 && g0 == 4 && g1 == 6 && (g == 4 || g == 5)))
            && sum[total % 2] % 10 == 0
            && nx_pii_num_end(p, len, j))
        {
            best = j;
        }

        all4 = all4 && g == 4;

        if (!all4 && !(groups == 2 && g0 == 4 && g1 == 6)) {
            /* no printed layout goes on from here */
            break;
        }

        if (j + 1 < len && nx_pii_card_sep(p[j]) && nx_pii_digit(p[j + 1])) {
            j++;
            continue;
        }

        break;
    }

    return best;
}


static size_t
nx_pii_ssn(const unsigned char *p, size_t len, size_t i)
{
    size_t    j, g;
    unsigned  area, group, serial;

    j = i;
    g = nx_pii_digits(p, len, j, 9);

    if (g == 9) {
        j += 9;

    } else if (g == 3) {
        j += 3;

        if (j + 1 >= len || !nx_pii_card_sep(p[j])
            || nx_pii_digits(p, len, j + 1, 2) != 2)
        {
            return 0;
        }

        j += 3;

        if (j + 1 >= len || !nx_pii_card_sep(p[j])
            || nx_pii_digits(p, len, j + 1, 4) != 4)
        {
            return 0;
        }

        j += 5;

    } else {
        return 0;
    }

    if (!nx_pii_num_end(p, len, j)) {
        return 0;
    }

    /* the nine digits, wherever the separators were */
    p += i;

    area = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');

    if (g == 9) {
        group = (p[3] - '0') * 10 + (p[4] - '0');
        serial = (p[5] - '0') * 1000 + (p[6] - '0') * 100
                 + (p[7] - '0') * 10 + (p[8] - '0');

    } else {
        group = (p[4] - '0') * 10 + (p[5] - '0');
        serial = (p[7] - '0') * 1000 + (p[8] - '0') * 100
                 + (p[9] - '0') * 10 + (p[10] - '0');
    }

    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
    {
        return 0;
    }

    return j;
}


/*
 * E-mail addresses, from the first byte of a local part. The domain is
 * read label by label and ends where no label can go on, so a sentence's
 * full stop or a dash after the address is left out.
 */

static size_t
nx_pii_email(const unsigned char *p, size_t len, size_t i)
{
    int     alpha;
    size_t  j, k, h, d, start, end, labels, tld;

    for (j = i; j < len && nx_pii_local(p[j]); j++) {
        if (j - i == NX_PII_LOCAL_MAX) {
            return 0;
        }

        if (p[j] == '.' && j + 1 < len && p[j + 1] == '.') {
            return 0;
        }
    }

    if (j == len || p[j] != '@' || p[j - 1] == '.') {
        return 0;
    }

    d = j + 1;
    k = d;
    labels = 0;
    alpha = 0;
    tld = 0;
    end = 0;

    while (k < len && nx_pii_alnum(p[k])) {
        start = k;
        alpha = 1;

        /* letters and digits, with hyphens only between them */

        for ( ;; ) {
            for ( /* void */ ; k < len && nx_pii_alnum(p[k]); k++) {
                if (k - d >= NX_PII_DOMAIN_MAX) {
                    return 0;
                }

                if (!nx_pii_alpha(p[k])) {
                    alpha = 0;
                }
            }

            for (h = k; h < len && p[h] == '-'; h++) {
                if (h - d >= NX_PII_DOMAIN_MAX) {
                    return 0;
                }
            }

            if (h == k || h == len || !nx_pii_alnum(p[h])) {
                break;
            }

            alpha = 0;
            k = h;
        }

        if (k - start > NX_PII_LABEL_MAX) {
            return 0;
        }

        labels++;
        tld = k - start;
        end = k;

        if (k + 1 < len && p[k] == '.' && nx_pii_alnum(p[k + 1])) {
            k++;
            continue;
        }

        break;
    }

    if (labels < 2 || !alpha || tld < 2) {
        return 0;
    }

    return end;
}


/* "+<digits>" with separators, a group after the first in parentheses */

static size_t
nx_pii_e164(const unsigned char *p, size_t len, size_t i)
{
    int     paren;
    size_t  j, g, total, best;

    j = i + 1;

    if (j == len || p[j] < '1' || p[j] > '9') {
        return 0;
    }

    total = 0;
    best = 0;

    for ( ;; ) {
        paren = 0;

        if (p[j] == '(') {
            paren = 1;
            j++;
        }

        g = nx_pii_digits(p, len, j, NX_PII_E164_MAX - total);

        if (g == 0 || total + g > NX_PII_E164_MAX) {
            break;
        }

        j += g;
        total += g;

        if (paren) {
            if (j == len || p[j] != ')') {
                break;
            }

            j++;

        } else if (total >= NX_PII_E164_MIN && nx_pii_num_end(p, len, j)) {
            best = j;
        }

        if (j < len && nx_pii_tel_sep(p[j])) {
            j++;

        } else if (!paren && (j == len || p[j] != '(')) {
            break;
        }

        if (j == len || !(nx_pii_digit(p[j]) || (p[j] == '(' && !paren))) {
            break;
        }
    }

    return best;
}


/* [1 ](NXX) NXX-XXXX and NXX-NXX-XXXX, any of ' ', '-', '.' as separators */

static size_t
nx_pii_nanp(const unsigned char *p, size_t len, size_t i)
{
    size_t  j;

    j = i;

    if (p[j] == '1' && j + 2 < len && nx_pii_tel_sep(p[j + 1])) {
        j += 2;
    }

    if (p[j] == '(') {
        j++;

        if (nx_pii_digits(p, len, j, 3) != 3 || p[j] < '2'
            || j + 3 == len || p[j + 3] != ')')
        {
            return 0;
        }

        j += 4;

        if (j < len && nx_pii_tel_sep(p[j])) {
            j++;
        }

    } else {
        if (nx_pii_digits(p, len, j, 3) != 3 || p[j] < '2'
            || j + 3 == len || !nx_pii_tel_sep(p[j + 3]))
        {
            return 0;
        }

        j += 4;
    }

    if (nx_pii_digits(p, len, j, 3) != 3 || p[j] < '2'
        || j + 3 == len || !nx_pii_tel_sep(p[j + 3]))
    {
        return 0;
    }

    j += 4;

    if (nx_pii_digits(p, len, j, 4) != 4) {
        return 0;
    }

    j += 4;

    return nx_pii_num_end(p, len, j) ? j : 0;
}


/*
 * IBANs: one run or groups of 4. The mod-97 check moves the first four
 * characters to the end; the remainder of the rest is kept as it grows,
 * and finished with those four at each candidate end.
 */

static size_t
nx_pii_iban(const unsigned char *p, size_t len, size_t i)
{
    int       all4;
    size_t    j, g, k, total, groups, best;
    uint64_t  r, head;
    unsigned  check;

    if (len - i < 4 || !nx_pii_upper(p[i + 1]) || !nx_pii_digit(p[i + 2])
        || !nx_pii_digit(p[i + 3]))
    {
        return 0;
    }

    check = (p[i + 2] - '0') * 10 + (p[i + 3] - '0');

    if (check < 2 || check > 98) {
        return 0;
    }

    j = i;
    total = 0;
    groups = 0;
    all4 = 1;
    best = 0;
    r = 0;

    for ( ;; ) {
        for (g = 0;
             j < len && (nx_pii_upper(p[j]) || nx_pii_digit(p[j]));
             g++, j++)
        {
            if (total + g == NX_PII_IBAN_MAX) {
                return best;
            }

            if (total + g >= 4) {
                r = nx_pii_mod97(r, p[j]);
            }
        }

        total += g;
        groups++;

        if (total >= NX_PII_IBAN_MIN
            && (groups == 1 || (all4 && g <= 4))
            && nx_pii_num_end(p, len, j))
        {
            head = r;

            for (k = 0; k < 4; k++) {
                head = nx_pii_mod97(head, p[i + k]);
            }

            if (head % 97 == 1) {
                best = j;
            }
        }

        all4 = all4 && g == 4;

        if (all4 && j + 1 < len && p[j] == ' '
            && (nx_pii_upper(p[j + 1]) || nx_pii_digit(p[j + 1])))
        {
            j++;
            continue;
        }

        break;
    }

    return best;
}


/* the number of digits at p[i..], counting no further than limit + 1 */

static size_t
nx_pii_digits(const unsigned char *p, size_t len, size_t i, size_t limit)
{
    size_t  k;

    for (k = 0; i + k < len && k <= limit && nx_pii_digit(p[i + k]); k++) {
        /* void */
    }

    return k;
}


/* a number-like match may end before p[i]: not alphanumeric, no decimals */

static int
nx_pii_num_end(const unsigned char *p, size_t len, size_t i)
{
    if (i == len) {
        return 1;
    }

    if (nx_pii_alnum(p[i])) {
        return 0;
    }

    return !(p[i] == '.' && i + 1 < len && nx_pii_digit(p[i + 1]));
}


/*
 * Appends a character of an IBAN to r, a number congruent to what came
 * before modulo 97: a digit, or a letter as 10..35. Reducing only when r
 * grows large keeps the division off the common path.
 */

static uint64_t
nx_pii_mod97(uint64_t r, unsigned char c)
{
    if (r >= NX_PII_MOD97_CAP) {
        r %= 97;
    }

    if (nx_pii_digit(c)) {
        return r * 10 + (c - '0');
    }

    return r * 100 + (c - 'A' + 10);
}
