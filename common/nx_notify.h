/*
 * Copyright (C) Nexus authors
 *
 * The pure parts of webhook notifications, shared by the module (which
 * validates what the admin API receives) and nexus-notify (which routes
 * and delivers):
 *
 *   - events: the fields of an entry of the event stream, validated;
 *   - routes: the match object of a route, checked and evaluated;
 *   - payloads: the event serialized deterministically (canonical JSON);
 *   - signatures: sha256=<hex HMAC-SHA256(secret, id "." ts "." body)>;
 *   - retries: exponential backoff with a jitter derived from the job id.
 */

#ifndef NX_NOTIFY_H
#define NX_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

/* "sha256=" and 64 hex digits */
#define NX_NOTIFY_SIG_LEN        (7 + 64)

#define NX_NOTIFY_TYPE_MAX       128
#define NX_NOTIFY_SEVERITY_MAX   16
#define NX_NOTIFY_LABEL_MAX      128    /* source, category */
#define NX_NOTIFY_FIELDS_MAX     64
#define NX_NOTIFY_FIELD_NAME_MAX 64
#define NX_NOTIFY_FIELD_MAX      4096
#define NX_NOTIFY_PAYLOAD_MAX    65536
#define NX_NOTIFY_MATCH_VALUES   64


typedef struct {
    const char   *name;
    size_t        name_len;
    const char   *value;
    size_t        value_len;
} nx_notify_field_t;


/*
 * An event, as an entry of the stream carries it (see
 * docs/architecture.md, "Notifications"): every pointer points into the
 * caller's field values, except data, which the parser allocates.
 */
typedef struct {
    const char         *id;             /* the stream entry id */
    char                type[NX_NOTIFY_TYPE_MAX + 1];
    char                severity[NX_NOTIFY_SEVERITY_MAX + 1];
    char                source[NX_NOTIFY_LABEL_MAX + 1];    /* "": none */
    char                category[NX_NOTIFY_LABEL_MAX + 1];  /* "": none */
    int64_t             tenant_id;      /* 0: none (a platform event) */
    int64_t             ts_ms;          /* 0: unknown */
    yajl_val            data;           /* the "payload" object, or NULL */
    nx_notify_field_t   extra[NX_NOTIFY_FIELDS_MAX];
    size_t              nextra;
} nx_notify_event_t;


/*
 * Parses the n field/value pairs of a stream entry.  Known fields: type
 * (required), severity (default "info"), source, category, tenant_id, ts,
 * payload (a JSON object); every other field is kept in extra.  Returns
 * 0, or -1 with a message in err (which never quotes a value).  Free with
 * nx_notify_event_free().
 */
int nx_notify_event_parse(const nx_notify_field_t *fields, size_t n,
    nx_notify_event_t *ev, char *err, size_t errlen);
void nx_notify_event_free(nx_notify_event_t *ev);

/* an event type: 1-128 of [a-z0-9_.-], starting with [a-z0-9] */
int nx_notify_type_valid(const char *s, size_t len);


/*
 * Routes.  A match object has any of the members event_type, severity,
 * source and category; each is a string or an array of 1-64 strings.  A
 * value matches exactly, "*" matches anything, and "prefix.*" matches
 * every value that starts with "prefix.".  A missing member matches
 * anything; source and category, when given, do not match an event that
 * has none.  {} matches every event.
 */
int nx_notify_match_check(yajl_val match, char *err, size_t errlen);
int nx_notify_match(yajl_val match, const nx_notify_event_t *ev);


/*
 * The body sent to receivers: a JSON object with the keys in byte order
 * and no white space,
 *
 *   {"category":..,"data":{..},"event_id":"..","event_type":"..",
 *    "occurred_at":"2024-05-01T12:00:00.123Z","severity":"..",
 *    "source":..,"tenant":"..","tenant_id":N}
 *
 * absent members left out.  data holds the extra fields (a value of
 * digits is a number) and, over them, the members of the "payload"
 * object.  Returns a malloc'd, NUL-terminated string, or NULL.
 */
char *nx_notify_payload(const nx_notify_event_t *ev, const char *tenant,
    size_t *len);

/*
 * Canonical JSON of a parsed value: object keys in byte order (the last
 * of duplicates kept), no white space, strings escaped by nx_json_escape,
 * integers as such, other numbers with 17 significant digits.  Returns a
 * malloc'd, NUL-terminated string, or NULL.
 */
char *nx_json_canonical(yajl_val v, size_t *len);


/*
 * out = "sha256=" hex(HMAC-SHA256(secret, id "." ts "." body)), NUL-
 * terminated.  Returns 0, or -1.
 */
int nx_notify_sign(const uint8_t *secret, size_t secret_len, const char *id,
    int64_t ts, const char *body, size_t body_len,
    char out[NX_NOTIFY_SIG_LEN + 1]);

/* 1 when sig[0..sig_len) is the signature, compared in constant time */
int nx_notify_verify(const uint8_t *secret, size_t secret_len,
    const char *id, int64_t ts, const char *body, size_t body_len,
    const char *sig, size_t sig_len);


/*
 * The delay before the attempt after attempt n (n >= 1) failed:
 * raw = min(max_ms, base_ms * 2^(n-1)), then a deterministic jitter takes
 * off up to a quarter of it: delay = raw - floor(floor(raw / 4) * u / 2^32)
 * where u is the first 4 bytes (big-endian) of SHA-256(job_id ":" n).
 */
int64_t nx_notify_backoff(const char *job_id, int attempt, int64_t base_ms,
    int64_t max_ms);

#endif /* NX_NOTIFY_H */
