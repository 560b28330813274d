/*
 * Copyright (C) Nexus authors
 *
 * The writer's side of the audit chains: linking rows to a head, the
 * batch of nexus_audit_append() and the heads it answers with.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "nx_audit_batch.h"
#include "nx_json.h"
#include "nx_key.h"


#define NX_AUDIT_INT_LEN    20      /* "-9223372036854775808" */


static char *nx_audit_put_hex(char *p, const uint8_t *b, size_t n);
static char *nx_audit_put_lit(char *p, const char *s);
static char *nx_audit_put_esc(char *p, const nx_audit_str_t *s);


int
nx_audit_head_empty(nx_audit_head_t *h, const uint8_t *key, size_t keylen,
    int64_t tenant_id)
{
    memset(h, 0, sizeof(nx_audit_head_t));
    h->tenant_id = tenant_id;

    return nx_audit_genesis(key, keylen, tenant_id, h->hash);
}


void
nx_audit_link_start(nx_audit_link_t *l, const nx_audit_head_t *from)
{
    l->from = *from;
    l->to = *from;
}


int
nx_audit_link_row(nx_audit_link_t *l, const uint8_t *key, size_t keylen,
    nx_audit_row_t *row, uint8_t prev[NX_AUDIT_HASH_LEN],
    uint8_t hash[NX_AUDIT_HASH_LEN])
{
    row->seq = l->to.seq + 1;

    if (row->ts < l->to.ts) {
        row->ts = l->to.ts;
    }

    memcpy(prev, l->to.hash, NX_AUDIT_HASH_LEN);

    if (nx_audit_chain_next(key, keylen, prev, row, hash) != 0) {
        return -1;
    }

    l->to.seq = row->seq;
    l->to.ts = row->ts;
    memcpy(l->to.hash, hash, NX_AUDIT_HASH_LEN);

    return 0;
}


char *
nx_audit_json_head(char *p, const nx_audit_link_t *l)
{
    p += sprintf(p, "{\"tenant_id\":%" PRId64 ",\"seq\":%" PRId64
                 ",\"hash\":\"", l->from.tenant_id, l->from.seq);

    /* an empty chain has no head row: its hash is NULL in SQL */
    if (l->from.seq) {
        p = nx_audit_put_hex(p, l->from.hash, NX_AUDIT_HASH_LEN);
    }

    return nx_audit_put_lit(p, "\"}");
}


size_t
nx_audit_json_row_len(const nx_audit_row_t *row, size_t idlen)
{
    return sizeof("{\"event_id\":\"\",\"tenant_id\":,\"seq\":,\"ts\":,"
                  "\"request_id\":\"\",\"actor\":\"\",\"event_type\":\"\","
                  "\"outcome\":\"\",\"metadata\":\"\",\"prev\":\"\","
                  "\"hash\":\"\"}") - 1
           + 6 * idlen + 3 * NX_AUDIT_INT_LEN
           + 2 * NX_AUDIT_HEX_LEN
           + nx_json_escape_len(row->request_id.data, row->request_id.len)
           + nx_json_escape_len(row->actor.data, row->actor.len)
           + nx_json_escape_len(row->event_type.data, row->event_type.len)
           + nx_json_escape_len(row->outcome.data, row->outcome.len)
           + nx_json_escape_len(row->metadata.data, row->metadata.len);
}


/* the names are those of json_to_recordset() in nexus_audit_append() */

char *
nx_audit_json_row(char *p, const nx_audit_row_t *row, const char *id,
    size_t idlen, const uint8_t prev[NX_AUDIT_HASH_LEN],
    const uint8_t hash[NX_AUDIT_HASH_LEN])
{
    nx_audit_str_t  s;

    s.data = id;
    s.len = idlen;

    p = nx_audit_put_lit(p, "{\"event_id\":\"");
    p = nx_audit_put_esc(p, &s);
    p += sprintf(p, "\",\"tenant_id\":%" PRId64 ",\"seq\":%" PRId64
                 ",\"ts\":%" PRId64 ",\"request_id\":\"",
                 row->tenant_id, row->seq, row->ts);
    p = nx_audit_put_esc(p, &row->request_id);
    p = nx_audit_put_lit(p, "\",\"actor\":\"");
    p = nx_audit_put_esc(p, &row->actor);
    p = nx_audit_put_lit(p, "\",\"event_type\":\"");
    p = nx_audit_put_esc(p, &row->event_type);
    p = nx_audit_put_lit(p, "\",\"outcome\":\"");
    p = nx_audit_put_esc(p, &row->outcome);
    p = nx_audit_put_lit(p, "\",\"metadata\":\"");
    p = nx_audit_put_esc(p, &row->metadata);
    p = nx_audit_put_lit(p, "\",\"prev\":\"");
    p = nx_audit_put_hex(p, prev, NX_AUDIT_HASH_LEN);
    p = nx_audit_put_lit(p, "\",\"hash\":\"");
    p = nx_audit_put_hex(p, hash, NX_AUDIT_HASH_LEN);

    return nx_audit_put_lit(p, "\"}");
}


int
nx_audit_heads_parse(const char *json, size_t len, const uint8_t *key,
    size_t keylen, nx_audit_head_pt handler, void *data)
{
    int                     n;
    size_t                  i;
    yajl_val                v, e, hash;
    const char             *hex;
    nx_audit_head_t         h;
    nx_audit_head_state_t   state;

    v = nx_json_parse(json, len, NULL, 0);

    if (v == NULL || !YAJL_IS_ARRAY(v)) {
        if (v != NULL) {
            nx_json_free(v);
        }

        return -1;
    }

    n = 0;

    for (i = 0; i < v->u.array.len; i++) {
        e = v->u.array.values[i];

        memset(&h, 0, sizeof(nx_audit_head_t));

        if (nx_json_int(nx_json_get(e, "tenant_id"), &h.tenant_id) != 0
            || nx_json_int(nx_json_get(e, "seq"), &h.seq) != 0
            || nx_json_int(nx_json_get(e, "ts"), &h.ts) != 0
            || h.tenant_id < 0 || h.seq < 0 || h.ts < 0)
        {
            continue;
        }

        hash = nx_json_get(e, "hash");
        state = NX_AUDIT_HEAD_OK;

        if (h.seq == 0 || hash == NULL || YAJL_IS_NULL(hash)) {
            /* emptied behind the writer's back: from genesis again */
            if (nx_audit_head_empty(&h, key, keylen, h.tenant_id) != 0) {
                state = NX_AUDIT_HEAD_BAD;
            }

        } else if (nx_json_string(hash, &hex) != 0
                   || nx_audit_hash_unhex(h.hash, hex) != 0)
        {
            state = NX_AUDIT_HEAD_BAD;
        }

        handler(data, &h, state);
        n++;
    }

    nx_json_free(v);

    return n;
}


static char *
nx_audit_put_hex(char *p, const uint8_t *b, size_t n)
{
    size_t  i;

    static const char  hex[] = "0123456789abcdef";

    for (i = 0; i < n; i++) {
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 0x0f];
    }

    return p;
}


static char *
nx_audit_put_lit(char *p, const char *s)
{
    size_t  n;

    n = strlen(s);
    memcpy(p, s, n);

    return p + n;
}


static char *
nx_audit_put_esc(char *p, const nx_audit_str_t *s)
{
    if (s->len == 0) {
        return p;
    }

    return p + nx_json_escape(p, s->data, s->len);
}


int
nx_audit_hash_unhex(uint8_t dst[NX_AUDIT_HASH_LEN], const char *src)
{
    size_t  i;
    int     hi, lo;

    if (strlen(src) != NX_AUDIT_HEX_LEN) {
        return -1;
    }

    for (i = 0; i < NX_AUDIT_HASH_LEN; i++) {
        hi = nx_hex_value((unsigned char) src[2 * i]);
        lo = nx_hex_value((unsigned char) src[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return -1;
        }

        dst[i] = (uint8_t) (hi << 4 | lo);
    }

    return 0;
}
