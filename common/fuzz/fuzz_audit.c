/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_audit. The input is redacted as metadata: on
 * success the output must parse (nx_json_parse), match the input member
 * for member with every sensitive value "[REDACTED]", and redact to
 * itself. The same bytes also describe a short chain of rows, which must
 * verify, and one tampering of it, which must be reported as the right
 * problem at the right seq; then random seqs and timestamps are fed to
 * the verifier, which must only survive them.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "nx_audit.h"
#include "nx_json.h"
#include "fuzz_utf8.h"


#define MAX_ROWS   8
#define MAX_FIELD  24
#define TENANT     42


typedef struct {
    const uint8_t  *p;
    size_t          left;
} reader_t;


typedef struct {
    nx_audit_row_t  row;
    char            arena[5 * MAX_FIELD];
    uint8_t         hash[NX_AUDIT_HASH_LEN];
} frow_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static uint8_t  chain_key[NX_AUDIT_HASH_LEN];
static uint8_t  ckpt_key[NX_AUDIT_HASH_LEN];
static int      have_keys;


static int
utf8_valid(const char *str)
{
    return fuzz_utf8_valid((const uint8_t *) str, strlen(str));
}


/* in: the input's tree; out: the parsed output */

static void
same(yajl_val in, yajl_val out)
{
    size_t       i;
    const char  *key;

    if (in == NULL || out == NULL || in->type != out->type) {
        abort();
    }

    if (YAJL_IS_OBJECT(in)) {
        if (in->u.object.len != out->u.object.len) {
            abort();
        }

        for (i = 0; i < in->u.object.len; i++) {
            key = in->u.object.keys[i];

            if (utf8_valid(key) && strcmp(key, out->u.object.keys[i]) != 0) {
                abort();
            }

            if (nx_audit_sensitive_name(out->u.object.keys[i],
                                        strlen(out->u.object.keys[i]))
                != nx_audit_sensitive_name(key, strlen(key)))
            {
                abort();
            }

            if (nx_audit_sensitive_name(key, strlen(key))) {
                if (!YAJL_IS_STRING(out->u.object.values[i])
                    || strcmp(out->u.object.values[i]->u.string,
                              NX_AUDIT_REDACTED)
                       != 0)
                {
                    abort();
                }

                continue;
            }

            same(in->u.object.values[i], out->u.object.values[i]);
        }

    } else if (YAJL_IS_ARRAY(in)) {
        if (in->u.array.len != out->u.array.len) {
            abort();
        }

        for (i = 0; i < in->u.array.len; i++) {
            same(in->u.array.values[i], out->u.array.values[i]);
        }

    } else if (YAJL_IS_STRING(in)) {
        if (utf8_valid(in->u.string)
            && strcmp(in->u.string, out->u.string) != 0)
        {
            abort();
        }

        if (!utf8_valid(out->u.string)) {
            abort();
        }

    } else if (YAJL_IS_NUMBER(in)) {
        if (strcmp(in->u.number.r, out->u.number.r) != 0) {
            abort();
        }
    }
}


static void
fuzz_redact(const uint8_t *data, size_t size)
{
    char          small[16], *out, *again;
    size_t        need, n, n2;
    yajl_val      in, parsed;
    const char   *json;

    json = (const char *) data;
    need = 12345;

    if (nx_audit_redact(json, size, NULL, 0, &need) != -1) {
        abort();
    }

    if (need == 0) {
        /* the input is refused whatever the room */
        n = 12345;
        if (nx_audit_redact(json, size, small, sizeof(small), &n) != -1
            || n != 0 || small[0] != '\0')
        {
            abort();
        }

        in = nx_json_parse_strict(json, size, NULL, 0);
        if (in != NULL && YAJL_IS_OBJECT(in)) {
            abort();
        }

        nx_json_free(in);
        return;
    }

    out = malloc(need + 1);
    again = malloc(need + 1);
    if (out == NULL || again == NULL) {
        abort();
    }

    /* one byte short: refused, with the same length */
    if (nx_audit_redact(json, size, out, need, &n) != -1 || n != need) {
        abort();
    }

    if (nx_audit_redact(json, size, out, need + 1, &n) != 0 || n != need
        || out[n] != '\0' || strlen(out) != n)
    {
        abort();
    }

    parsed = nx_json_parse(out, n, NULL, 0);
    in = nx_json_parse_strict(json, size, NULL, 0);
    if (parsed == NULL || in == NULL || !YAJL_IS_OBJECT(parsed)) {
        abort();
    }

    same(in, parsed);

    /* a fixed point */
    if (nx_audit_redact(out, n, again, need + 1, &n2) != 0 || n2 != n
        || memcmp(out, again, n) != 0)
    {
        abort();
    }

    nx_json_free(in);
    nx_json_free(parsed);
    free(again);
    free(out);
}


static unsigned
next(reader_t *r)
{
    if (r->left == 0) {
        return 0;
    }

    r->left--;

    return *r->p++;
}


static int64_t
next64(reader_t *r)
{
    int       i;
    uint64_t  u;

    u = 0;
    for (i = 0; i < 8; i++) {
        u = u << 8 | next(r);
    }

    return (int64_t) u;
}


static void
fields_of(frow_t *t, nx_audit_str_t *fields[5])
{
    fields[0] = &t->row.request_id;
    fields[1] = &t->row.actor;
    fields[2] = &t->row.event_type;
    fields[3] = &t->row.outcome;
    fields[4] = &t->row.metadata;
}


/* exchanges two rows; each one's strings stay in its arena */

static void
swap_rows(frow_t *a, frow_t *b)
{
    int              f;
    frow_t           t;
    ptrdiff_t        oa[5], ob[5];
    nx_audit_str_t  *fa[5], *fb[5];

    fields_of(a, fa);
    fields_of(b, fb);

    for (f = 0; f < 5; f++) {
        oa[f] = fa[f]->data - a->arena;
        ob[f] = fb[f]->data - b->arena;
    }

    t = *a;
    *a = *b;
    *b = t;

    for (f = 0; f < 5; f++) {
        fa[f]->data = a->arena + ob[f];
        fb[f]->data = b->arena + oa[f];
    }
}


static void
hash_rows(frow_t *rows, int64_t from, int64_t to)
{
    int64_t         i;
    size_t          n;
    unsigned int    mdlen;
    unsigned char   buf[NX_AUDIT_HASH_LEN + 8 * 5 + 5 * MAX_FIELD + 64];
    unsigned char   md[NX_AUDIT_HASH_LEN];
    uint8_t         prev[NX_AUDIT_HASH_LEN];

    if (from == 1) {
        if (nx_audit_genesis(chain_key, sizeof(chain_key), TENANT, prev)
            != 0)
        {
            abort();
        }

    } else {
        memcpy(prev, rows[from - 1].hash, sizeof(prev));
    }

    for (i = from; i <= to; i++) {
        if (nx_audit_chain_next(chain_key, sizeof(chain_key), prev,
                                &rows[i].row, rows[i].hash)
            != 0)
        {
            abort();
        }

        /* the MAC fed piece by piece is the MAC of the canonical bytes */
        memcpy(buf, prev, NX_AUDIT_HASH_LEN);
        if (nx_audit_canonical(&rows[i].row, buf + NX_AUDIT_HASH_LEN,
                               sizeof(buf) - NX_AUDIT_HASH_LEN, &n)
            != 0
            || HMAC(EVP_sha256(), chain_key, sizeof(chain_key), buf,
                    NX_AUDIT_HASH_LEN + n, md, &mdlen)
               == NULL
            || memcmp(md, rows[i].hash, NX_AUDIT_HASH_LEN) != 0)
        {
            abort();
        }

        memcpy(prev, rows[i].hash, sizeof(prev));
    }
}


static void
conf_init(nx_audit_verify_conf_t *conf, const nx_audit_checkpoint_t *c,
    int64_t tol)
{
    memset(conf, 0, sizeof(*conf));
    conf->chain_key = chain_key;
    conf->chain_key_len = sizeof(chain_key);
    conf->ckpt_key = ckpt_key;
    conf->ckpt_key_len = sizeof(ckpt_key);
    conf->tenant_id = TENANT;
    conf->latest = c;
    conf->ts_tolerance = tol;
}


static void
check(const nx_audit_verify_t *v, nx_audit_status_t st, int64_t seq)
{
    if (v->status != st || v->seq != seq || v->msg[0] == '\0'
        || memchr(v->msg, '\0', sizeof(v->msg)) == NULL)
    {
        abort();
    }
}


static nx_audit_status_t
feed(nx_audit_verify_t *v, const nx_audit_verify_conf_t *conf,
    frow_t *rows, const int64_t *order, int64_t n)
{
    int64_t  k;

    (void) nx_audit_verify_init(v, conf);

    for (k = 0; k < n; k++) {
        (void) nx_audit_verify_row(v, &rows[order[k]].row,
                                   rows[order[k]].hash);
    }

    return nx_audit_verify_end(v);
}


static void
fuzz_chain(const uint8_t *data, size_t size)
{
    size_t                  f, len[5], off, k;
    int64_t                 i, j, n, m, tol, order[MAX_ROWS + 1];
    reader_t                r;
    unsigned char          *p;
    nx_audit_str_t         *fields[5];
    nx_audit_verify_t       v;
    nx_audit_checkpoint_t   c;
    nx_audit_verify_conf_t  conf;
    frow_t                  rows[MAX_ROWS + 1];

    r.p = data;
    r.left = size;

    memset(rows, 0, sizeof(rows));

    n = 1 + next(&r) % MAX_ROWS;
    tol = next(&r);

    for (i = 1; i <= n; i++) {
        rows[i].row.seq = i;
        rows[i].row.ts = (i == 1 ? 1000000 : rows[i - 1].row.ts)
                         + (int64_t) next(&r) * 16;
        rows[i].row.tenant_id = TENANT;

        fields_of(&rows[i], fields);

        for (f = 0; f < 5; f++) {
            len[f] = next(&r) % MAX_FIELD;
        }

        /* the five strings are adjacent in the arena */
        for (f = 0, off = 0; f < 5; f++) {
            for (k = 0; k < len[f]; k++) {
                rows[i].arena[off + k] = (char) next(&r);
            }

            fields[f]->data = rows[i].arena + off;
            fields[f]->len = len[f];
            off += len[f];
        }
    }

    hash_rows(rows, 1, n);

    memset(&c, 0, sizeof(c));
    c.tenant_id = TENANT;
    c.seq = n;
    c.count = n;
    c.ts = rows[n].row.ts;
    memcpy(c.hash, rows[n].hash, NX_AUDIT_HASH_LEN);
    if (nx_audit_checkpoint_sign(ckpt_key, sizeof(ckpt_key), &c, c.mac)
        != 0)
    {
        abort();
    }

    conf_init(&conf, &c, tol);

    for (i = 1; i <= n; i++) {
        order[i - 1] = i;
    }

    if (feed(&v, &conf, rows, order, n) != NX_AUDIT_OK || v.problems != 0
        || v.rows != n)
    {
        abort();
    }

    /* one tampering, chosen by the input */

    i = 1 + next(&r) % n;
    m = n;

    switch (next(&r) % 10) {

    case 0:
        /* a field edited */
        f = next(&r) % 6;

        if (f == 5) {
            rows[i].row.tenant_id ^= 1;
            break;
        }

        fields_of(&rows[i], fields);

        if (fields[f]->len == 0) {
            fields[f]->data = "x";
            fields[f]->len = 1;

        } else {
            p = (unsigned char *) fields[f]->data;
            k = next(&r) % fields[f]->len;
            p[k] ^= (unsigned char) (1 + next(&r) % 255);
        }

        break;

    case 1:
        /* one byte moved across the boundary of two adjacent fields */
        fields_of(&rows[i], fields);

        f = next(&r) % 4;

        if (fields[f]->len > 0) {
            fields[f]->len--;
            fields[f + 1]->data--;
            fields[f + 1]->len++;

        } else if (fields[f + 1]->len > 0) {
            fields[f]->len++;
            fields[f + 1]->data++;
            fields[f + 1]->len--;

        } else {
            /* nothing to move: delete the row instead */
            goto deleted;
        }

        break;

    case 2:
    deleted:
        for (j = 1, m = 0; j <= n; j++) {
            if (j != i) {
                order[m++] = j;
            }
        }

        (void) feed(&v, &conf, rows, order, m);
        check(&v, i == n ? NX_AUDIT_TRUNCATED : NX_AUDIT_DELETED, i);
        return;

    case 3:
        /* two rows exchanged their seqs */
        if (i == n) {
            i--;
        }

        if (i == 0) {
            return;
        }

        swap_rows(&rows[i], &rows[i + 1]);
        rows[i].row.seq = i;
        rows[i + 1].row.seq = i + 1;

        (void) feed(&v, &conf, rows, order, n);
        check(&v, NX_AUDIT_REORDERED, i);
        return;

    case 4:
        /* two rows fed in the wrong order */
        if (i == n) {
            i--;
        }

        if (i == 0) {
            return;
        }

        order[i - 1] = i + 1;
        order[i] = i;

        (void) feed(&v, &conf, rows, order, n);
        check(&v, NX_AUDIT_REORDERED, i);
        return;

    case 5:
        /* the tail dropped */
        (void) feed(&v, &conf, rows, order, i - 1);
        check(&v, NX_AUDIT_TRUNCATED, i);
        return;

    case 6:
        /* the checkpoint forged */
        p = (unsigned char *) &c;
        p[next(&r) % sizeof(c)] ^= (unsigned char) (1 + next(&r) % 255);

        (void) feed(&v, &conf, rows, order, n);
        check(&v, NX_AUDIT_BAD_CHECKPOINT, v.seq);
        return;

    case 7:
        /* restamped before the previous row */
        if (i == 1) {
            rows[i].row.ts -= 1;
            break;
        }

        rows[i].row.ts = rows[i - 1].row.ts - tol - 1
                         - (int64_t) next(&r) * 1000;

        (void) feed(&v, &conf, rows, order, n);
        check(&v, NX_AUDIT_RESTAMPED, i);
        return;

    case 8:
        /* restamped after the next row */
        if (i == n) {
            rows[i].row.ts += 1 + next(&r);
            break;
        }

        rows[i].row.ts = rows[i + 1].row.ts + tol + 1
                         + (int64_t) next(&r) * 1000;

        (void) feed(&v, &conf, rows, order, n);
        check(&v, NX_AUDIT_RESTAMPED, i);
        return;

    default:
        /* the stored hash altered */
        rows[i].hash[next(&r) % NX_AUDIT_HASH_LEN] ^= 0x80;

        (void) feed(&v, &conf, rows, order, n);
        check(&v, NX_AUDIT_EDITED, i);

        if (v.problems != (i == n ? 2 : 1)) {
            abort();
        }

        return;
    }

    (void) feed(&v, &conf, rows, order, n);
    check(&v, NX_AUDIT_EDITED, i);

    if (v.problems != 1) {
        abort();
    }
}


/* arbitrary seqs, timestamps and checkpoints: only survival is checked */

static void
fuzz_chaos(const uint8_t *data, size_t size)
{
    int                     k;
    reader_t                r;
    nx_audit_row_t          row;
    nx_audit_verify_t       v;
    nx_audit_checkpoint_t   c;
    nx_audit_verify_conf_t  conf;
    nx_audit_status_t       st;
    uint8_t                 h[NX_AUDIT_HASH_LEN];

    r.p = data;
    r.left = size;

    memset(&c, 0, sizeof(c));
    c.tenant_id = TENANT;
    c.seq = next64(&r);
    c.count = c.seq;
    (void) nx_audit_checkpoint_sign(ckpt_key, sizeof(ckpt_key), &c, c.mac);

    conf_init(&conf, (next(&r) & 1) ? &c : NULL, next64(&r) & INT64_MAX);
    (void) nx_audit_verify_init(&v, &conf);

    memset(&row, 0, sizeof(row));
    row.tenant_id = TENANT;

    for (k = 0; k < 16 && r.left > 0; k++) {
        row.seq = (next(&r) & 1) ? next64(&r) : (int64_t) next(&r);
        row.ts = (next(&r) & 1) ? next64(&r) : (int64_t) next(&r);
        memset(h, (int) next(&r), sizeof(h));

        st = nx_audit_verify_row(&v, &row, h);
        if ((unsigned) st > NX_AUDIT_ERROR) {
            abort();
        }
    }

    st = nx_audit_verify_end(&v);
    if ((unsigned) st > NX_AUDIT_ERROR
        || memchr(v.msg, '\0', sizeof(v.msg)) == NULL
        || (st != NX_AUDIT_OK && v.msg[0] == '\0'))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t  master[NX_AUDIT_KEY_MIN];

    if (!have_keys) {
        memset(master, 0x5a, sizeof(master));
        if (nx_audit_derive_keys(master, sizeof(master), chain_key, ckpt_key)
            != 0)
        {
            abort();
        }

        have_keys = 1;
    }

    fuzz_redact(data, size);
    fuzz_chain(data, size);
    fuzz_chaos(data, size);

    return 0;
}
