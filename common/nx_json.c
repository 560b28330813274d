/*
 * Copyright (C) Nexus authors
 *
 * JSON helpers: escaping of arbitrary bytes into a JSON string body, the
 * parser's entry points (the parser is nx_json_tree.c), and typed
 * accessors over the yajl tree it builds.
 */

#include <stdlib.h>
#include <string.h>

#include "nx_json.h"


/* saturation for exponents: far beyond any length, far below overflow */
#define NX_JSON_EXP_MAX    1000000000000000LL

#define nx_json_digit(c)   ((c) >= '0' && (c) <= '9')


static size_t nx_json_escape_run(char *dst, const unsigned char *src,
    size_t len);
static int nx_json_decimal_int(const char *r, int64_t *out);


static const char  nx_json_hex[] = "0123456789abcdef";


size_t
nx_json_escape_len(const char *src, size_t len)
{
    if (src == NULL) {
        return 0;
    }

    return nx_json_escape_run(NULL, (const unsigned char *) src, len);
}


size_t
nx_json_escape(char *dst, const char *src, size_t len)
{
    if (dst == NULL || src == NULL) {
        return 0;
    }

    return nx_json_escape_run(dst, (const unsigned char *) src, len);
}


yajl_val
nx_json_parse(const char *buf, size_t len, char *errbuf, size_t errlen)
{
    return nx_json_tree_parse(buf, len, 0, errbuf, errlen);
}


yajl_val
nx_json_parse_strict(const char *buf, size_t len, char *errbuf,
    size_t errlen)
{
    return nx_json_tree_parse(buf, len, 1, errbuf, errlen);
}


/*
 * JSON allows duplicate member names; like JavaScript, Python and Go, the
 * last one wins, so Nexus reads a body the way most upstreams will.
 */

yajl_val
nx_json_get(yajl_val v, const char *name)
{
    size_t  i;

    if (!YAJL_IS_OBJECT(v) || name == NULL) {
        return NULL;
    }

    /* most names differ in their first byte: no call for those */
    for (i = v->u.object.len; i > 0; i--) {
        if (v->u.object.keys[i - 1] != NULL
            && v->u.object.keys[i - 1][0] == name[0]
            && strcmp(v->u.object.keys[i - 1], name) == 0)
        {
            return v->u.object.values[i - 1];
        }
    }

    return NULL;
}


/*
 * The string is NUL-terminated; a value holding "\u0000" ends at its first
 * NUL (member names with "\u0000" are refused by nx_json_parse()).
 */

int
nx_json_string(yajl_val v, const char **out)
{
    if (!YAJL_IS_STRING(v) || v->u.string == NULL || out == NULL) {
        return -1;
    }

    *out = v->u.string;

    return 0;
}


/*
 * yajl's own integer flag misses INT64_MIN and every integral value
 * written with a fraction or an exponent ("2.0", "1e3"), so the number's
 * text is converted here, exactly.
 */

int
nx_json_int(yajl_val v, int64_t *out)
{
    if (!YAJL_IS_NUMBER(v) || v->u.number.r == NULL || out == NULL) {
        return -1;
    }

    return nx_json_decimal_int(v->u.number.r, out);
}


int
nx_json_bool(yajl_val v, int *out)
{
    if (out == NULL) {
        return -1;
    }

    if (YAJL_IS_TRUE(v)) {
        *out = 1;
        return 0;
    }

    if (YAJL_IS_FALSE(v)) {
        *out = 0;
        return 0;
    }

    return -1;
}


/* With dst NULL only counts, so that the two public functions agree. */

static size_t
nx_json_escape_run(char *dst, const unsigned char *src, size_t len)
{
    size_t         i, n, out;
    unsigned char  c;

    out = 0;

    for (i = 0; i < len; /* void */) {
        c = src[i];

        if (c >= 0x80) {
            n = nx_utf8_len(src + i, len - i);

            if (n == 0) {
                if (dst != NULL) {
                    memcpy(dst + out, "\\ufffd", 6);
                }

                out += 6;
                i++;
                continue;
            }

            if (dst != NULL) {
                memcpy(dst + out, src + i, n);
            }

            out += n;
            i += n;
            continue;
        }

        if (c < 0x20) {
            if (dst != NULL) {
                dst[out] = '\\';
                dst[out + 1] = 'u';
                dst[out + 2] = '0';
                dst[out + 3] = '0';
                dst[out + 4] = nx_json_hex[c >> 4];
                dst[out + 5] = nx_json_hex[c & 0x0f];
            }

            out += 6;

        } else if (c == '"' || c == '\\') {
            if (dst != NULL) {
                dst[out] = '\\';
                dst[out + 1] = (char) c;
            }

            out += 2;

        } else {
            if (dst != NULL) {
                dst[out] = (char) c;
            }

            out++;
        }

        i++;
    }

    return out;
}


/*
 * Length of the well-formed UTF-8 sequence at p (Unicode 15, table 3-7:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or 0.
 */

size_t
nx_utf8_len(const unsigned char *p, size_t left)
{
    size_t         n, k;
    unsigned char  c, lo, hi;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;

    } else if (c == 0xe0) {
        n = 3;
        lo = 0xa0;

    } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
        n = 3;

    } else if (c == 0xed) {
        n = 3;
        hi = 0x9f;

    } else if (c == 0xf0) {
        n = 4;
        lo = 0x90;

    } else if (c >= 0xf1 && c <= 0xf3) {
        n = 4;

    } else if (c == 0xf4) {
        n = 4;
        hi = 0x8f;

    } else {
        return 0;
    }

    if (left < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (k = 2; k < n; k++) {
        if (p[k] < 0x80 || p[k] > 0xbf) {
            return 0;
        }
    }

    return n;
}


/*
 * r is a JSON number: -?digits(.digits)?([eE][+-]?digits)?. Its value is
 * D * 10^e where D is the digit string without the point; it is integral
 * when, after dropping D's trailing zeros into e, e is not negative.
 */

static int
nx_json_decimal_int(const char *r, int64_t *out)
{
    int          neg, esign;
    size_t       ilen, flen, n, lead, last, k;
    int64_t      exp, e;
    uint64_t     mag;
    const char  *p, *ip, *fp;

    p = r;
    neg = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }

    ip = p;
    while (nx_json_digit(*p)) {
        p++;
    }

    ilen = (size_t) (p - ip);
    if (ilen == 0) {
        return -1;
    }

    fp = p;
    flen = 0;

    if (*p == '.') {
        fp = ++p;
        while (nx_json_digit(*p)) {
            p++;
        }

        flen = (size_t) (p - fp);
        if (flen == 0) {
            return -1;
        }
    }

    exp = 0;

    if (*p == 'e' || *p == 'E') {
        p++;
        esign = 1;

        if (*p == '+') {
            p++;

        } else if (*p == '-') {
            esign = -1;
            p++;
        }

        if (!nx_json_digit(*p)) {
            return -1;
        }

        while (nx_json_digit(*p)) {
            if (exp < NX_JSON_EXP_MAX) {
                exp = exp * 10 + (*p - '0');
            }

            p++;
        }

        exp *= esign;
    }

    if (*p != '\0') {
        return -1;
    }

#define nx_json_dig(k)  ((k) < ilen ? ip[k] : fp[(k) - ilen])

    n = ilen + flen;

    for (lead = 0; lead < n && nx_json_dig(lead) == '0'; lead++) {
        /* void */
    }

    if (lead == n) {
        *out = 0;
        return 0;
    }

    for (last = n - 1; nx_json_dig(last) == '0'; last--) {
        /* void */
    }

    e = exp - (int64_t) flen + (int64_t) (n - 1 - last);

    if (e < 0 || (int64_t) (last - lead + 1) + e > 19) {
        return -1;
    }

    mag = 0;

    for (k = lead; k <= last; k++) {
        mag = mag * 10 + (uint64_t) (nx_json_dig(k) - '0');
    }

#undef nx_json_dig

    while (e-- > 0) {
        mag *= 10;
    }

    if (neg) {
        if (mag > (uint64_t) INT64_MAX + 1) {
            return -1;
        }

        *out = (mag == (uint64_t) INT64_MAX + 1) ? INT64_MIN
                                                 : -(int64_t) mag;
        return 0;
    }

    if (mag > (uint64_t) INT64_MAX) {
        return -1;
    }

    *out = (int64_t) mag;

    return 0;
}
