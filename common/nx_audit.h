/*
 * Copyright (C) Nexus authors
 *
 * Tamper evidence for the audit log: redaction of event metadata, the
 * canonical byte string of a row, the per-tenant HMAC chain over rows,
 * signed checkpoints of the chain's head, and a streaming verifier.
 * Pure logic: no I/O, no clock, no allocation beyond yajl's parse tree.
 *
 * Keys. One master secret yields two keys with HKDF-SHA256 (RFC 5869,
 * empty salt): info "nexus audit chain" for the chain, info "nexus audit
 * checkpoint" for checkpoints (nx_audit_derive_keys). Keys are at least
 * NX_AUDIT_KEY_MIN bytes.
 *
 * Chain. Each tenant has its own chain. seq starts at 1 and has no gaps:
 * the writer assigns seq = head seq + 1 under the same lock with which it
 * reads the head hash (a database sequence would leave gaps on rollback).
 * Writing a row: redact the metadata, fill an nx_audit_row_t, hash it with
 * nx_audit_chain_next() from the head hash (nx_audit_genesis() for the
 * first row) and store the row with its hash.
 *
 *   hash_0 = HMAC-SHA256(chain_key, "nexus-audit-genesis" || be64(tenant))
 *   hash_n = HMAC-SHA256(chain_key, hash_{n-1} || canonical(row_n))
 *
 * Canonical row (nx_audit_canonical): fixed-width integers and
 * length-prefixed strings, so no two rows share an encoding:
 *
 *   "NXAUDIT1" be64(seq) be64(ts) str(request_id) be64(tenant_id)
 *   str(actor) str(event_type) str(outcome) str(metadata)
 *
 * where str(s) = be32(length) || bytes. A NULL string is the empty one.
 * The metadata is hashed byte for byte as stored: store the output of
 * nx_audit_redact() as text, not in a column type that reformats it
 * (jsonb reorders members).
 *
 * Checkpoints: HMAC-SHA256(checkpoint_key, "NXCHKPT1" || be64(tenant_id)
 * || be64(seq) || be64(count) || be64(ts) || hash), where seq is the head
 * row covered, hash its stored chain hash and count the rows from genesis
 * through seq (always seq, as seq has no gaps). A checkpoint of an empty
 * chain has seq 0, count 0 and the genesis hash. A checkpoint also serves
 * as the starting point of verification when older rows were pruned: the
 * pruner writes one at the boundary it pruned up to.
 *
 * What each part proves. Without a key nobody can edit, insert, delete or
 * reorder rows unnoticed, except at the tail: cutting the newest rows
 * leaves a valid chain, which only the latest checkpoint exposes. A holder
 * of the chain key alone can rewrite the chain but not a checkpoint.
 * Checkpoints must therefore be kept where whoever can rewrite the table
 * cannot put back an older one (copied to the ops log, for instance).
 */

#ifndef NX_AUDIT_H
#define NX_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#define NX_AUDIT_HASH_LEN   32
#define NX_AUDIT_KEY_MIN    32
#define NX_AUDIT_MSG_MAX    192
#define NX_AUDIT_REDACTED   "[REDACTED]"


typedef enum {
    NX_AUDIT_OK = 0,
    NX_AUDIT_EDITED,           /* stored hash differs from the content */
    NX_AUDIT_DELETED,          /* a gap in seq */
    NX_AUDIT_REORDERED,        /* seq repeats or steps back; rows swapped */
    NX_AUDIT_TRUNCATED,        /* the log stops short of the checkpoint */
    NX_AUDIT_RESTAMPED,        /* ts out of order beyond the tolerance */
    NX_AUDIT_BAD_CHECKPOINT,   /* invalid MAC or inconsistent checkpoint */
    NX_AUDIT_ERROR             /* misuse or an OpenSSL failure */
} nx_audit_status_t;


typedef struct {
    const char  *data;
    size_t       len;
} nx_audit_str_t;


typedef struct {
    int64_t         seq;
    int64_t         ts;            /* microseconds since the epoch, UTC */
    nx_audit_str_t  request_id;
    int64_t         tenant_id;
    nx_audit_str_t  actor;
    nx_audit_str_t  event_type;
    nx_audit_str_t  outcome;
    nx_audit_str_t  metadata;      /* redacted JSON, as stored */
} nx_audit_row_t;


typedef struct {
    int64_t  tenant_id;
    int64_t  seq;                  /* last row covered; 0: empty chain */
    int64_t  count;                /* rows from genesis through seq */
    int64_t  ts;                   /* when signed, microseconds */
    uint8_t  hash[NX_AUDIT_HASH_LEN];
    uint8_t  mac[NX_AUDIT_HASH_LEN];
} nx_audit_checkpoint_t;


typedef struct {
    const uint8_t                *chain_key;
    size_t                        chain_key_len;
    const uint8_t                *ckpt_key;
    size_t                        ckpt_key_len;
    int64_t                       tenant_id;
    /* where the rows start: NULL for genesis (first row seq 1) */
    const nx_audit_checkpoint_t  *start;
    /* the latest checkpoint, or NULL if none was signed yet */
    const nx_audit_checkpoint_t  *latest;
    /* how far (microseconds) ts may step back between consecutive rows */
    int64_t                       ts_tolerance;
} nx_audit_verify_conf_t;


/*
 * Verifier state; the caller allocates it. After nx_audit_verify_init()
 * every field below "result" may be read: status, seq and msg describe the
 * first problem found, problems counts all of them.
 */
typedef struct {
    const uint8_t          *chain_key;
    size_t                  chain_key_len;
    int64_t                 tenant_id;
    int64_t                 tolerance;

    int64_t                 start_seq;
    int64_t                 last_seq;      /* highest seq seen */
    int64_t                 last_ts;
    unsigned                have_ts:1;
    unsigned                have_latest:1;
    unsigned                reached:1;     /* latest.seq was verified */
    unsigned                pending:1;     /* the row at pend_seq mismatched */
    unsigned                broken:1;      /* NX_AUDIT_ERROR: stop */
    unsigned                ended:1;
    uint8_t                 prev[NX_AUDIT_HASH_LEN];
    int64_t                 ts_seq;        /* the row last_ts is from */
    int64_t                 pend_seq;
    int64_t                 pend_ts;
    uint8_t                 pend_hash[NX_AUDIT_HASH_LEN];
    uint8_t                 pend_prev[NX_AUDIT_HASH_LEN];
    uint8_t                 pend_stored[NX_AUDIT_HASH_LEN];
    int64_t                 gap_lo;        /* first problem's gap [lo, hi) */
    int64_t                 gap_hi;
    nx_audit_checkpoint_t   latest;

    /* result */
    nx_audit_status_t       status;
    int64_t                 seq;
    int64_t                 rows;          /* rows fed */
    int64_t                 problems;
    char                    msg[NX_AUDIT_MSG_MAX];
} nx_audit_verify_t;


/*
 * Redaction. json[0..len) must be a JSON object (nx_json_parse_strict:
 * at most 32 levels, no NUL, no comments, no "\u0000"). Every member whose
 * name is sensitive (nx_audit_sensitive_name), at any depth and inside
 * arrays, has its value, whatever its type, replaced by "[REDACTED]".
 *
 * The output is deterministic: members in their original order
 * (duplicates kept), no whitespace, numbers exactly as written in the
 * input, strings re-escaped minimally (only '"', '\\' and control
 * characters, as \u00XX; other characters as raw UTF-8, invalid UTF-8
 * replaced by U+FFFD). Redacting the output again yields it unchanged.
 *
 * Returns 0 and writes *outlen bytes plus a NUL into out. Returns -1 on
 * invalid input (*outlen = 0), or when out is NULL or smaller than
 * *outlen + 1 (then *outlen is the length needed, at least 2).
 */
int nx_audit_redact(const char *json, size_t len, char *out, size_t outsz,
    size_t *outlen);

/*
 * 1 if a member of this name is redacted. The name is compared ASCII
 * case-insensitively with '-' taken as '_' ("X-Api-Key" is "x_api_key").
 * Sensitive: names ending in "authorization", "token", "secret",
 * "password", "api_key", "apikey", "private_key", "privatekey" or
 * "cookie" (so "access_token", "client_secret", "Proxy-Authorization",
 * "apiKey"; not "tokens" or "token_count"); and "text", "content" or
 * names ending in "_text" or "_content" ("message_content"; not
 * "context" or "content_type").
 */
int nx_audit_sensitive_name(const char *name, size_t len);

/*
 * Writes the canonical encoding of row into buf. Returns 0 with *len the
 * bytes written, or -1: when buf is NULL or bufsz too small (*len is then
 * the size needed), or when a string is longer than UINT32_MAX (*len 0).
 */
int nx_audit_canonical(const nx_audit_row_t *row, unsigned char *buf,
    size_t bufsz, size_t *len);

/* hash_0 of a tenant's chain. Returns 0, or -1 (short key, OpenSSL). */
int nx_audit_genesis(const uint8_t *key, size_t keylen, int64_t tenant_id,
    uint8_t out[NX_AUDIT_HASH_LEN]);

/* out = HMAC-SHA256(key, prev || canonical(row)). Returns 0 or -1. */
int nx_audit_chain_next(const uint8_t *key, size_t keylen,
    const uint8_t prev[NX_AUDIT_HASH_LEN], const nx_audit_row_t *row,
    uint8_t out[NX_AUDIT_HASH_LEN]);

/* The MAC of c (c->mac is ignored). Returns 0 or -1. */
int nx_audit_checkpoint_sign(const uint8_t *key, size_t keylen,
    const nx_audit_checkpoint_t *c, uint8_t out_mac[NX_AUDIT_HASH_LEN]);

/* 0 if c->mac is valid (compared in constant time), -1 otherwise. */
int nx_audit_checkpoint_verify(const uint8_t *key, size_t keylen,
    const nx_audit_checkpoint_t *c);

/*
 * The chain and checkpoint keys from one master secret of at least
 * NX_AUDIT_KEY_MIN bytes. Returns 0, or -1 (both outputs zeroed).
 */
int nx_audit_derive_keys(const uint8_t *master, size_t len,
    uint8_t chain_key[NX_AUDIT_HASH_LEN],
    uint8_t ckpt_key[NX_AUDIT_HASH_LEN]);

/* RFC 5869 HKDF with SHA-256; salt may be NULL (empty). Returns 0 or -1. */
int nx_audit_hkdf_sha256(const uint8_t *salt, size_t saltlen,
    const uint8_t *ikm, size_t ikmlen, const uint8_t *info, size_t infolen,
    uint8_t *out, size_t outlen);

/*
 * Verification of one tenant's rows, fed in seq order with their stored
 * hashes. Each row is checked against the stored hash of the row before
 * it, so one edited row is reported once, and the rows after it still
 * verify. What is reported, at which seq:
 *
 *   EDITED      the stored hash does not match the row: any field edited,
 *               including ts by less than the tolerance, the stored hash
 *               itself (then the next row still verifies), or a row
 *               deleted and the later ones renumbered (then every later
 *               row is reported)
 *   DELETED     the first missing seq of a gap, also before the first row
 *   REORDERED   a repeated seq, a seq stepping back (the row that comes
 *               late), or two adjacent rows whose seqs were exchanged
 *               (each matches the other's place; reported at the first)
 *   RESTAMPED   ts earlier than the previous row's by more than the
 *               tolerance, with or without a valid hash; or a row whose
 *               hash does not match and whose ts is later than the next
 *               row's by more than the tolerance. A restamp within the
 *               tolerance is EDITED.
 *   TRUNCATED   the log ends before the latest checkpoint's seq (at the
 *               first missing seq; fewer rows than the checkpoint's count,
 *               which is its seq), or the stored hash at that seq differs
 *               from the checkpoint's (the log was cut and rewritten)
 *   BAD_CHECKPOINT  a checkpoint's MAC is invalid, it names another
 *               tenant, its count is not its seq, or the two checkpoints
 *               disagree
 *
 * The latest checkpoint is given to nx_audit_verify_init(), not at the
 * end: rows written after it are normal, so its hash is compared as the
 * stream passes its seq. nx_audit_verify_init() checks the checkpoints
 * and returns OK, BAD_CHECKPOINT or ERROR (bad arguments, equal chain and
 * checkpoint keys); the checks go on after BAD_CHECKPOINT, without the
 * latest checkpoint. The keys must stay valid until nx_audit_verify_end().
 * v->msg describes the first problem, e.g. "row 42 was edited: stored
 * hash does not match its content"; v->problems counts all of them.
 */
nx_audit_status_t nx_audit_verify_init(nx_audit_verify_t *v,
    const nx_audit_verify_conf_t *conf);

/* The status of this row: OK or the problem found at it. */
nx_audit_status_t nx_audit_verify_row(nx_audit_verify_t *v,
    const nx_audit_row_t *row, const uint8_t stored[NX_AUDIT_HASH_LEN]);

/* Final checks against the latest checkpoint; returns the first problem
 * of the whole run (v->status), OK if none. */
nx_audit_status_t nx_audit_verify_end(nx_audit_verify_t *v);

/* "ok", "edited", "deleted", "reordered", "truncated", "restamped",
 * "bad_checkpoint", "error". */
const char *nx_audit_status_name(nx_audit_status_t status);

#endif /* NX_AUDIT_H */
