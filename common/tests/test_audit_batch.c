/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_audit_batch: rows linked from a head verify with
 * nx_audit's verifier, times never step back, a batch linked again from
 * moved heads continues them, the JSON of a batch parses back to what was
 * linked, and the heads nexus_audit_append() answers with are read.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_audit.h"
#include "nx_audit_batch.h"
#include "nx_json.h"


#define TENANT  7
#define T0      INT64_C(1700000000000000)


static uint8_t  key[NX_AUDIT_HASH_LEN];


static nx_audit_row_t
row_of(int64_t tenant, int64_t ts, const char *type)
{
    nx_audit_row_t  r;

    memset(&r, 0, sizeof(r));
    r.tenant_id = tenant;
    r.ts = ts;
    r.request_id.data = "req_1";
    r.request_id.len = 5;
    r.actor.data = "nexusctl";
    r.actor.len = 8;
    r.event_type.data = type;
    r.event_type.len = strlen(type);
    r.outcome.data = "success";
    r.outcome.len = 7;
    r.metadata.data = "{\"via\":\"nexusctl\",\"q\":\"a\\\"b\"}";
    r.metadata.len = strlen(r.metadata.data);

    return r;
}


static int
setup(void **state)
{
    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(key); i++) {
        key[i] = (uint8_t) (0x40 + i);
    }

    return 0;
}


static void
test_link_verifies(void **state)
{
    int                     i;
    nx_audit_row_t          rows[5];
    nx_audit_head_t         h;
    nx_audit_link_t         l;
    nx_audit_verify_t       v;
    nx_audit_verify_conf_t  vc;
    uint8_t                 prev[5][NX_AUDIT_HASH_LEN];
    uint8_t                 hash[5][NX_AUDIT_HASH_LEN];
    uint8_t                 ckpt[NX_AUDIT_HASH_LEN];

    (void) state;

    assert_int_equal(nx_audit_head_empty(&h, key, sizeof(key), TENANT), 0);
    assert_int_equal(h.seq, 0);
    assert_int_equal(h.tenant_id, TENANT);

    nx_audit_link_start(&l, &h);

    /* the third row happened "earlier": it is stamped with the second's */
    for (i = 0; i < 5; i++) {
        rows[i] = row_of(TENANT, T0 + (i == 2 ? -5 : i) * 1000, "x.y");
        assert_int_equal(nx_audit_link_row(&l, key, sizeof(key), &rows[i],
                                           prev[i], hash[i]), 0);
        assert_int_equal(rows[i].seq, i + 1);
    }

    assert_int_equal(rows[2].ts, rows[1].ts);
    assert_memory_equal(prev[0], h.hash, NX_AUDIT_HASH_LEN);
    assert_memory_equal(prev[3], hash[2], NX_AUDIT_HASH_LEN);
    assert_int_equal(l.from.seq, 0);
    assert_int_equal(l.to.seq, 5);
    assert_int_equal(l.to.ts, rows[4].ts);
    assert_memory_equal(l.to.hash, hash[4], NX_AUDIT_HASH_LEN);

    memset(ckpt, 0x11, sizeof(ckpt));
    memset(&vc, 0, sizeof(vc));
    vc.chain_key = key;
    vc.chain_key_len = sizeof(key);
    vc.ckpt_key = ckpt;
    vc.ckpt_key_len = sizeof(ckpt);
    vc.tenant_id = TENANT;

    assert_int_equal(nx_audit_verify_init(&v, &vc), NX_AUDIT_OK);

    for (i = 0; i < 5; i++) {
        assert_int_equal(nx_audit_verify_row(&v, &rows[i], hash[i]),
                         NX_AUDIT_OK);
    }

    assert_int_equal(nx_audit_verify_end(&v), NX_AUDIT_OK);
}


/* another writer wrote in between: the same row linked from its head */

static void
test_link_again(void **state)
{
    nx_audit_row_t   a, b;
    nx_audit_head_t  h;
    nx_audit_link_t  l, m;
    uint8_t          pa[NX_AUDIT_HASH_LEN], ha[NX_AUDIT_HASH_LEN];
    uint8_t          pb[NX_AUDIT_HASH_LEN], hb[NX_AUDIT_HASH_LEN];
    uint8_t          pb2[NX_AUDIT_HASH_LEN], hb2[NX_AUDIT_HASH_LEN];

    (void) state;

    assert_int_equal(nx_audit_head_empty(&h, key, sizeof(key), TENANT), 0);

    /* ours, from the empty chain */
    b = row_of(TENANT, T0, "mine");
    nx_audit_link_start(&m, &h);
    assert_int_equal(nx_audit_link_row(&m, key, sizeof(key), &b, pb, hb), 0);

    /* theirs got there first, later in time */
    a = row_of(TENANT, T0 + 9000, "theirs");
    nx_audit_link_start(&l, &h);
    assert_int_equal(nx_audit_link_row(&l, key, sizeof(key), &a, pa, ha), 0);

    /* ours again, from their head: seq 2, their time, their hash */
    b = row_of(TENANT, T0, "mine");
    nx_audit_link_start(&m, &l.to);
    assert_int_equal(nx_audit_link_row(&m, key, sizeof(key), &b, pb2, hb2),
                     0);

    assert_int_equal(b.seq, 2);
    assert_int_equal(b.ts, T0 + 9000);
    assert_memory_equal(pb2, ha, NX_AUDIT_HASH_LEN);
    assert_memory_not_equal(hb2, hb, NX_AUDIT_HASH_LEN);
    assert_int_equal(m.from.seq, 1);
}


static void
test_json(void **state)
{
    char             *buf, *p, hex[NX_AUDIT_HEX_LEN + 1];
    size_t            len;
    yajl_val          v, row, head;
    const char       *s;
    int64_t           n;
    nx_audit_row_t    r;
    nx_audit_head_t   h;
    nx_audit_link_t   l;
    uint8_t           prev[NX_AUDIT_HASH_LEN], hash[NX_AUDIT_HASH_LEN];
    uint8_t           back[NX_AUDIT_HASH_LEN];

    (void) state;

    assert_int_equal(nx_audit_head_empty(&h, key, sizeof(key), TENANT), 0);
    nx_audit_link_start(&l, &h);

    r = row_of(TENANT, T0, "auth.api_key.created");
    assert_int_equal(nx_audit_link_row(&l, key, sizeof(key), &r, prev, hash),
                     0);

    len = sizeof("{\"heads\":[],\"rows\":[]}") + 2 * NX_AUDIT_JSON_HEAD_LEN
          + nx_audit_json_row_len(&r, 9);
    buf = malloc(len);
    assert_non_null(buf);

    p = buf + sprintf(buf, "{\"heads\":[");
    p = nx_audit_json_head(p, &l);
    p += sprintf(p, "],\"rows\":[");
    p = nx_audit_json_row(p, &r, "cli-ab\"c1", 9, prev, hash);
    p += sprintf(p, "]}");

    assert_true((size_t) (p - buf) < len);

    v = nx_json_parse(buf, p - buf, NULL, 0);
    assert_non_null(v);

    head = nx_json_get(v, "heads")->u.array.values[0];
    assert_int_equal(nx_json_int(nx_json_get(head, "seq"), &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(nx_json_string(nx_json_get(head, "hash"), &s), 0);
    assert_string_equal(s, "");

    row = nx_json_get(v, "rows")->u.array.values[0];
    assert_int_equal(nx_json_string(nx_json_get(row, "event_id"), &s), 0);
    assert_string_equal(s, "cli-ab\"c1");
    assert_int_equal(nx_json_int(nx_json_get(row, "seq"), &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(nx_json_int(nx_json_get(row, "ts"), &n), 0);
    assert_int_equal(n, T0);
    assert_int_equal(nx_json_string(nx_json_get(row, "metadata"), &s), 0);
    assert_string_equal(s, r.metadata.data);
    assert_int_equal(nx_json_string(nx_json_get(row, "actor"), &s), 0);
    assert_string_equal(s, "nexusctl");
    assert_int_equal(nx_json_string(nx_json_get(row, "hash"), &s), 0);
    assert_int_equal(nx_audit_hash_unhex(back, s), 0);
    assert_memory_equal(back, hash, NX_AUDIT_HASH_LEN);
    assert_int_equal(nx_json_string(nx_json_get(row, "prev"), &s), 0);
    assert_int_equal(nx_audit_hash_unhex(back, s), 0);
    assert_memory_equal(back, prev, NX_AUDIT_HASH_LEN);

    nx_json_free(v);

    /* a head that is not empty carries its hash */
    nx_audit_link_start(&l, &l.to);
    p = nx_audit_json_head(buf, &l);
    *p = '\0';
    assert_true(strlen(buf) < NX_AUDIT_JSON_HEAD_LEN);
    memcpy(hex, strstr(buf, "\"hash\":\"") + 8, NX_AUDIT_HEX_LEN);
    hex[NX_AUDIT_HEX_LEN] = '\0';
    assert_int_equal(nx_audit_hash_unhex(back, hex), 0);
    assert_memory_equal(back, hash, NX_AUDIT_HASH_LEN);

    free(buf);
}


typedef struct {
    int              n;
    nx_audit_head_t  h[8];
    int              state[8];
} heads_t;


static void
collect(void *data, const nx_audit_head_t *h, nx_audit_head_state_t state)
{
    heads_t  *hs = data;

    hs->h[hs->n] = *h;
    hs->state[hs->n] = state;
    hs->n++;
}


static void
test_heads_parse(void **state)
{
    char             json[512];
    heads_t          hs;
    nx_audit_head_t  empty;
    uint8_t          want[NX_AUDIT_HASH_LEN];

    (void) state;

    memset(want, 0xab, sizeof(want));
    memset(&hs, 0, sizeof(hs));

    snprintf(json, sizeof(json),
             "[{\"tenant_id\":3,\"seq\":41,\"hash\":\"%s\",\"ts\":99},"
             "{\"tenant_id\":4,\"seq\":0,\"hash\":null,\"ts\":0},"
             "{\"tenant_id\":5,\"seq\":2,\"hash\":\"zz\",\"ts\":1},"
             "{\"tenant_id\":-1,\"seq\":2,\"hash\":null,\"ts\":1},"
             "{\"seq\":2},"
             "7]",
             "abababababababababababababababababababababababababababababab"
             "abab");

    assert_int_equal(nx_audit_heads_parse(json, strlen(json), key,
                                          sizeof(key), collect, &hs), 3);

    assert_int_equal(hs.h[0].tenant_id, 3);
    assert_int_equal(hs.h[0].seq, 41);
    assert_int_equal(hs.h[0].ts, 99);
    assert_int_equal(hs.state[0], NX_AUDIT_HEAD_OK);
    assert_memory_equal(hs.h[0].hash, want, NX_AUDIT_HASH_LEN);

    assert_int_equal(nx_audit_head_empty(&empty, key, sizeof(key), 4), 0);
    assert_int_equal(hs.h[1].tenant_id, 4);
    assert_int_equal(hs.h[1].seq, 0);
    assert_int_equal(hs.state[1], NX_AUDIT_HEAD_OK);
    assert_memory_equal(hs.h[1].hash, empty.hash, NX_AUDIT_HASH_LEN);

    assert_int_equal(hs.h[2].tenant_id, 5);
    assert_int_equal(hs.state[2], NX_AUDIT_HEAD_BAD);

    assert_int_equal(nx_audit_heads_parse("ok", 2, key, sizeof(key), collect,
                                          &hs), -1);
    assert_int_equal(nx_audit_heads_parse("{}", 2, key, sizeof(key), collect,
                                          &hs), -1);
    assert_int_equal(nx_audit_heads_parse("[]", 2, key, sizeof(key), collect,
                                          &hs), 0);
}


static void
test_unhex(void **state)
{
    uint8_t  h[NX_AUDIT_HASH_LEN];

    (void) state;

    assert_int_equal(nx_audit_hash_unhex(h, ""), -1);
    assert_int_equal(nx_audit_hash_unhex(h, "00"), -1);
    assert_int_equal(nx_audit_hash_unhex(h,
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g"),
        -1);
    assert_int_equal(nx_audit_hash_unhex(h,
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
        0);
    assert_int_equal(h[0], 0);
    assert_int_equal(h[31], 0x1f);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_link_verifies),
        cmocka_unit_test(test_link_again),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_heads_parse),
        cmocka_unit_test(test_unhex),
    };

    return cmocka_run_group_tests_name("audit_batch", tests, setup, NULL);
}
