/*
 * Copyright (C) Nexus authors
 *
 * For the fuzz harnesses: a UTF-8 check written independently of
 * libnexus (decode, then test the code point), to check the library
 * against.
 */

#ifndef FUZZ_UTF8_H
#define FUZZ_UTF8_H

#include <stddef.h>
#include <stdint.h>

static inline int
fuzz_utf8_valid(const uint8_t *s, size_t n)
{
    size_t    i, k, len;
    uint32_t  cp, min;

    for (i = 0; i < n; i += len) {
        if (s[i] < 0x80) {
            len = 1;
            continue;
        }

        if ((s[i] & 0xe0) == 0xc0) {
            len = 2;
            cp = s[i] & 0x1f;
            min = 0x80;

        } else if ((s[i] & 0xf0) == 0xe0) {
            len = 3;
            cp = s[i] & 0x0f;
            min = 0x800;

        } else if ((s[i] & 0xf8) == 0xf0) {
            len = 4;
            cp = s[i] & 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (n - i < len) {
            return 0;
        }

        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = cp << 6 | (s[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}

#endif /* FUZZ_UTF8_H */
