/*
 * Copyright (C) Nexus authors
 *
 * The writer's side of the audit chains (nx_audit.h): linking new rows to
 * a chain's head, and the batch that nexus_audit_append() takes
 * (migrations/0010_audit_log.sql) and the heads it answers with when
 * another writer moved them. Shared by every writer: the module's workers
 * and nexusctl. Pure logic: no I/O, no clock.
 *
 * A writer remembers a head per chain (nx_audit_head_t: genesis for a
 * chain it knows nothing of), links its rows from it (nx_audit_link_row),
 * and sends them with the heads it started from:
 *
 *   {"heads":[{"tenant_id":3,"seq":41,"hash":"<hex>"}, ...],
 *    "rows":[{"event_id":..,"tenant_id":3,"seq":42,"ts":..,
 *             "request_id":..,"actor":..,"event_type":..,"outcome":..,
 *             "metadata":"<JSON text>","prev":"<hex>","hash":"<hex>"},
 *            ...]}
 *
 * The function writes the rows only if those are still the heads; else
 * it answers with the current ones (nx_audit_heads_parse), from which the
 * writer links the same rows again.
 */

#ifndef NX_AUDIT_BATCH_H
#define NX_AUDIT_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "nx_audit.h"


#define NX_AUDIT_HEX_LEN        (2 * NX_AUDIT_HASH_LEN)

/* bytes of nx_audit_json_head(), at most */
#define NX_AUDIT_JSON_HEAD_LEN                                               \
    (sizeof("{\"tenant_id\":,\"seq\":,\"hash\":\"\"}") + 2 * 20               \
     + NX_AUDIT_HEX_LEN)


/* a chain's head: its last row, or seq 0 and the genesis hash if empty */
typedef struct {
    int64_t  tenant_id;
    int64_t  seq;
    int64_t  ts;                   /* the last row's time, us; 0 if empty */
    uint8_t  hash[NX_AUDIT_HASH_LEN];
} nx_audit_head_t;


/* one chain of a batch: the head it starts from, the head it makes */
typedef struct {
    nx_audit_head_t  from;
    nx_audit_head_t  to;
} nx_audit_link_t;


/* h = the head of tenant_id's empty chain. Returns 0, or -1 (short key). */
int nx_audit_head_empty(nx_audit_head_t *h, const uint8_t *key,
    size_t keylen, int64_t tenant_id);

/* A batch's chain starts at the head given. */
void nx_audit_link_start(nx_audit_link_t *l, const nx_audit_head_t *from);

/*
 * Links row (row->tenant_id must be the chain's) after l's current head:
 * row->seq is the next seq, row->ts is raised to the head's time if it is
 * earlier (a chain's times never step back), prev is the head's hash and
 * hash the row's; the row becomes l's head. Returns 0, or -1 (OpenSSL, a
 * string too long).
 */
int nx_audit_link_row(nx_audit_link_t *l, const uint8_t *key, size_t keylen,
    nx_audit_row_t *row, uint8_t prev[NX_AUDIT_HASH_LEN],
    uint8_t hash[NX_AUDIT_HASH_LEN]);

/*
 * A member of "heads": the head l starts from, "hash" empty for an empty
 * chain. Writes at most NX_AUDIT_JSON_HEAD_LEN bytes and returns the end.
 */
char *nx_audit_json_head(char *p, const nx_audit_link_t *l);

/* Bytes nx_audit_json_row() writes for row and an event id of idlen. */
size_t nx_audit_json_row_len(const nx_audit_row_t *row, size_t idlen);

/* A member of "rows". Returns the end of what was written. */
char *nx_audit_json_row(char *p, const nx_audit_row_t *row,
    const char *id, size_t idlen, const uint8_t prev[NX_AUDIT_HASH_LEN],
    const uint8_t hash[NX_AUDIT_HASH_LEN]);


/* what nx_audit_heads_parse() found of one head */
typedef enum {
    NX_AUDIT_HEAD_OK = 0,          /* h is the head (genesis if empty) */
    NX_AUDIT_HEAD_BAD              /* h->tenant_id only: its hash is not
                                      readable, the head must be learnt
                                      again */
} nx_audit_head_state_t;

typedef void (*nx_audit_head_pt)(void *data, const nx_audit_head_t *h,
    nx_audit_head_state_t state);

/*
 * The answer of nexus_audit_append() when heads moved:
 *   [{"tenant_id":3,"seq":41,"hash":"<hex>"|null,"ts":<us>}, ...]
 * handler is called for each element with a tenant_id, seq and ts that
 * are integers of at least 0; an empty chain (seq 0 or hash null) gets
 * the genesis hash from key. Elements without them are skipped. Returns
 * the number of heads passed to handler, or -1 if json is not an array.
 */
int nx_audit_heads_parse(const char *json, size_t len, const uint8_t *key,
    size_t keylen, nx_audit_head_pt handler, void *data);

/*
 * A hash as PostgreSQL's encode(..., 'hex') writes it: exactly
 * NX_AUDIT_HEX_LEN hex digits. Returns 0, or -1 (dst is then unchanged
 * or partly written).
 */
int nx_audit_hash_unhex(uint8_t dst[NX_AUDIT_HASH_LEN], const char *src);


#endif /* NX_AUDIT_BATCH_H */
