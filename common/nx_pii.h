/*
 * Copyright (C) Nexus authors
 *
 * Detection and masking of personal data in request bodies: payment card
 * numbers, US social security numbers, e-mail addresses, phone numbers and
 * IBANs. One pass, linear time, no allocation, no regular expressions.
 */

#ifndef NX_PII_H
#define NX_PII_H

#include <stddef.h>

typedef enum {
    NX_PII_CARD = 1,
    NX_PII_SSN = 2,
    NX_PII_EMAIL = 4,
    NX_PII_PHONE = 8,
    NX_PII_IBAN = 16
} nx_pii_kind_t;

/* every kind */
#define NX_PII_ALL   0x1f

/*
 * Scan flag: buf is a JSON text. Only the contents of its strings are
 * scanned (string state is tracked from buf[0]), so numbers, literals and
 * structure are never matched and redaction keeps the document valid.
 * Without it every byte is text: a bare JSON number such as 123456789
 * would be found (and masked into invalid JSON).
 */
#define NX_PII_JSON  0x100

/* what nx_pii_redact() writes over each matched letter or digit */
#define NX_PII_MASK  '*'

typedef struct {
    size_t         start;   /* first byte of the match */
    size_t         end;     /* one past its last byte */
    nx_pii_kind_t  kind;
} nx_pii_match_t;

/*
 * Scans buf[0..len) for the kinds set in mask (plus NX_PII_JSON). Writes
 * up to max matches into out, in order and non-overlapping, and returns
 * how many there are, which may exceed max (counting continues; out may
 * be NULL when max is 0). Never reads past len; NUL and non-ASCII bytes
 * are ordinary non-alphanumeric bytes.
 *
 * Tokens. A number-like match (card, SSN, phone) must be bounded by
 * bytes that are not ASCII letters or digits: "A4111111111111111B" (an
 * order id) holds no card, nor do "x123-45-6789" or "0.4111111111111111"
 * (a '.' between digits is a decimal point, on either side). An IBAN is
 * bounded the same way, an e-mail address by bytes that cannot belong to
 * it. A match never splits a run of digits, but may start or end between
 * two separated groups: "Ref 12 4111 1111 1111 1111" holds a card.
 *
 * JSON. The bytes are those of a JSON body, undecoded. A backslash, the
 * byte after it and the hex digits of a \uXXXX escape are never part of a
 * match and always separate tokens: in "Card:\n4111..." the 'n' is not a
 * letter before the card, and "4111\t1111..." is two groups that do not
 * join. Matches contain only ASCII letters, digits and the separators
 * listed below, never a quote or a backslash.
 *
 * Kinds:
 *
 *   card   13-19 digits passing the Luhn check, first digit 2-6 (Visa,
 *          Mastercard, Amex, Discover, JCB, UnionPay, Diners 36). Either
 *          one run of digits, or groups separated by single ' ' or '-'
 *          (mixed is fine) in a printed layout: groups of 4 with a last
 *          group of 1-4 ("4111 1111 1111 1111", 4-4-4-4-3), or 4-6-5 /
 *          4-6-4 (Amex, Diners). Other groupings are not cards, so that
 *          lists of small numbers or of phone numbers are not taken for
 *          one.
 *   ssn    AAA-GG-SSSS with ' ' or '-' separators, or 9 digits in one run;
 *          area 000, 666 and 900-999, group 00 and serial 0000 are
 *          refused. An unseparated 9-digit number is therefore an SSN
 *          unless its area rules it out.
 *   email  local@domain. Local part: 1-64 of [A-Za-z0-9._%+-], not
 *          starting or ending with '.', no "..". Domain: at most 253
 *          bytes, two or more dot-separated labels of letters, digits and
 *          inner hyphens (at most 63 bytes each), the last one 2 or more
 *          letters. A trailing '.' or '-' is punctuation, not domain.
 *          ASCII only.
 *   phone  E.164: '+' and 8-15 digits, the first one 1-9, in groups
 *          separated by single ' ', '-' or '.'; a group after the first
 *          may be parenthesised ("+1 (212) 555-0100", "+44 (0)20 7946
 *          0958", "+14155550100"). North American:
 *          (NXX) NXX-XXXX with N 2-9, written "(212) 555-0100",
 *          "(212)555-0100", "212-555-0100", "212.555.0100" or
 *          "212 555 0100" (any of ' ', '-', '.' at each place), optionally
 *          after "1" and a separator; ten digits in one run are not a
 *          phone (timestamps, ids).
 *   iban   two capital letters, check digits 02-98, then capital letters
 *          and digits for 15-34 characters in all, passing the ISO 7064
 *          mod-97 check; either one run or groups of 4 separated by one
 *          space with a last group of 1-4 ("GB82 WEST 1234 5698 7654 32").
 *
 * Overlaps: the leftmost match wins, then the longest, then the lowest
 * kind bit. Scanning resumes after a match, so candidates inside it are
 * not reported.
 */
size_t nx_pii_scan(const char *buf, size_t len, unsigned mask,
    nx_pii_match_t *out, size_t max);

/*
 * Masks matches in place: each ASCII letter or digit within m[i].start ..
 * m[i].end becomes NX_PII_MASK; separators, '@', '+', '(', ')' and the
 * length are kept. Applied to matches from nx_pii_scan() of the same
 * bytes (with NX_PII_JSON for a JSON document), the result is valid JSON
 * if the input was. Ranges beyond len are clipped.
 */
void nx_pii_redact(char *buf, size_t len, const nx_pii_match_t *m,
    size_t n);

/* "card", "ssn", "email", "phone", "iban"; "unknown" for anything else */
const char *nx_pii_kind_name(nx_pii_kind_t k);

#endif /* NX_PII_H */
