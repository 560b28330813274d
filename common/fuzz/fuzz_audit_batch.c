/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_audit_heads_parse(), the reader of the heads
 * nexus_audit_append() answers with. Every head handed out must have a
 * tenant, seq and time of at least 0; an empty chain's must be genesis.
 * The input is also used as the metadata of a row, whose batch JSON must
 * fit nx_audit_json_row_len() and parse back to the same metadata.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_audit.h"
#include "nx_audit_batch.h"
#include "nx_json.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static uint8_t  key[NX_AUDIT_HASH_LEN];


static void
check_head(void *data, const nx_audit_head_t *h, nx_audit_head_state_t state)
{
    nx_audit_head_t  empty;

    (void) data;

    if (h->tenant_id < 0 || h->seq < 0 || h->ts < 0) {
        abort();
    }

    if (state == NX_AUDIT_HEAD_OK && h->seq == 0) {
        if (nx_audit_head_empty(&empty, key, sizeof(key), h->tenant_id) != 0
            || memcmp(empty.hash, h->hash, NX_AUDIT_HASH_LEN) != 0)
        {
            abort();
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char            *buf, *end;
    size_t           len;
    yajl_val         v;
    const char      *s;
    nx_audit_row_t   row;
    uint8_t          prev[NX_AUDIT_HASH_LEN], hash[NX_AUDIT_HASH_LEN];

    memset(key, 0x5a, sizeof(key));

    (void) nx_audit_heads_parse((const char *) data, size, key, sizeof(key),
                                check_head, NULL);

    /* the bytes as a row's metadata and actor, rendered for the batch */

    if (size > 4096 || memchr(data, '\0', size) != NULL) {
        return 0;
    }

    memset(&row, 0, sizeof(row));
    memset(prev, 1, sizeof(prev));
    memset(hash, 2, sizeof(hash));
    row.seq = 1;
    row.metadata.data = (const char *) data;
    row.metadata.len = size;
    row.actor.data = (const char *) data;
    row.actor.len = size < 12 ? size : 12;

    len = nx_audit_json_row_len(&row, 3);

    buf = malloc(len + 1);
    if (buf == NULL) {
        return 0;
    }

    end = nx_audit_json_row(buf, &row, "a-1", 3, prev, hash);

    if ((size_t) (end - buf) > len) {
        abort();
    }

    v = nx_json_parse(buf, end - buf, NULL, 0);

    if (v == NULL || nx_json_string(nx_json_get(v, "metadata"), &s) != 0) {
        abort();
    }

    nx_json_free(v);
    free(buf);

    return 0;
}
