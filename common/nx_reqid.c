/*
 * Copyright (C) Nexus authors
 *
 * Request ids: validation of a client-supplied X-Request-Id and
 * formatting of a generated one.
 */

#include "nx_reqid.h"


/* the characters of a request id: A-Z a-z 0-9 . _ : - */
static const uint8_t  nx_reqid_chars[256] = {
    ['-'] = 1, ['.'] = 1, [':'] = 1, ['_'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1
};


int
nx_reqid_valid(const char *buf, size_t len)
{
    size_t  i;

    if (buf == NULL || len == 0 || len > NX_REQID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!nx_reqid_chars[(unsigned char) buf[i]]) {
            return 0;
        }
    }

    return 1;
}


void
nx_reqid_format(const uint8_t rnd[12], char out[NX_REQID_GEN_LEN])
{
    size_t  i;

    static const char  hex[] = "0123456789abcdef";

    out[0] = 'r';
    out[1] = 'e';
    out[2] = 'q';
    out[3] = '_';

    for (i = 0; i < 12; i++) {
        out[4 + 2 * i] = hex[rnd[i] >> 4];
        out[5 + 2 * i] = hex[rnd[i] & 0x0f];
    }
}
