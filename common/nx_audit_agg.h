/*
 * Copyright (C) Nexus authors
 *
 * Aggregation of repeated audit events, so that a flood (bad keys, a
 * throttled client, a Redis outage let through) costs a few rows a second
 * and not one a request. Pure logic: the caller gives the time, in whole
 * seconds, and writes the events.
 *
 * Events are told apart by (tenant, actor, kind): kind is what else
 * matters, such as the reason of an authentication failure. The first
 * event of a key is written at once (NX_AUDIT_AGG_WRITE); the ones that
 * follow within the same second are counted, and once the second is over
 * nx_audit_agg_due() hands out their count, to be written as one event.
 * A key that keeps being hit thus gets one event at once and then one a
 * second; a key not hit for a whole second is forgotten, and its next hit
 * is written at once again.
 *
 * The table is bounded: at most NX_AUDIT_AGG_KEYS keys of their own. A
 * new key beyond that is folded into the key (tenant 0, no actor, kind),
 * which has the rest of the slots; with no slot left even for that, the
 * event is lost and counted in a->lost.
 */

#ifndef NX_AUDIT_AGG_H
#define NX_AUDIT_AGG_H

#include <stddef.h>
#include <stdint.h>


#define NX_AUDIT_AGG_SLOTS      64
#define NX_AUDIT_AGG_KEYS       32      /* slots for keys of their own */
#define NX_AUDIT_AGG_STR        48      /* bytes of an actor or a kind */


typedef struct {
    int64_t     tenant_id;
    int64_t     sec;        /* the second of the last event written */
    uint64_t    count;      /* hits since the event last written */
    uint8_t     used;
    uint8_t     folded;     /* a hit since the last event was folded */
    uint8_t     actor_len;
    uint8_t     kind_len;
    char        actor[NX_AUDIT_AGG_STR];
    char        kind[NX_AUDIT_AGG_STR];
} nx_audit_agg_slot_t;


typedef struct {
    nx_audit_agg_slot_t  slot[NX_AUDIT_AGG_SLOTS];
    uint64_t             lost;
} nx_audit_agg_t;


typedef enum {
    NX_AUDIT_AGG_WRITE = 0,     /* write this event now */
    NX_AUDIT_AGG_FIRST,         /* counted, the first since the last event
                                   written: keep its details for it */
    NX_AUDIT_AGG_COUNTED,       /* counted */
    NX_AUDIT_AGG_LOST           /* no room: a->lost counts it */
} nx_audit_agg_rc_t;


/*
 * An event of (tenant_id, actor, kind) at second now. *slot is the slot
 * it went to (not for NX_AUDIT_AGG_LOST), whose tenant_id, actor and kind
 * the event is written with: those of the fold if it was folded, which
 * also sets *folded. Actors and kinds longer than NX_AUDIT_AGG_STR are
 * cut.
 */
nx_audit_agg_rc_t nx_audit_agg_hit(nx_audit_agg_t *a, int64_t tenant_id,
    const char *actor, size_t actor_len, const char *kind, size_t kind_len,
    int64_t now, size_t *slot, int *folded);

/*
 * The next slot whose second is over and that counted hits: returns 1
 * with *slot and *count (the hits to write as one event), and the slot
 * starts a new second without hits. Slots whose second is over without
 * hits are freed on the way. Returns 0 when there is none left.
 */
int nx_audit_agg_due(nx_audit_agg_t *a, int64_t now, size_t *slot,
    uint64_t *count);

/* 1 if some slot counted hits that nx_audit_agg_due() will hand out */
int nx_audit_agg_pending(const nx_audit_agg_t *a);


#endif /* NX_AUDIT_AGG_H */
