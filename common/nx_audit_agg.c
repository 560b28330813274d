/*
 * Copyright (C) Nexus authors
 *
 * Aggregation of repeated audit events: first at once, then one a second
 * with the count, in a bounded table.
 */

#include <string.h>

#include "nx_audit_agg.h"


static int nx_audit_agg_live(const nx_audit_agg_slot_t *s, int64_t now);
static int nx_audit_agg_match(const nx_audit_agg_slot_t *s,
    int64_t tenant_id, const char *actor, size_t actor_len,
    const char *kind, size_t kind_len);


nx_audit_agg_rc_t
nx_audit_agg_hit(nx_audit_agg_t *a, int64_t tenant_id, const char *actor,
    size_t actor_len, const char *kind, size_t kind_len, int64_t now,
    size_t *slot, int *folded)
{
    size_t                i, own, free_slot;
    nx_audit_agg_slot_t  *s;

    *folded = 0;

    if (actor_len > NX_AUDIT_AGG_STR) {
        actor_len = NX_AUDIT_AGG_STR;
    }

    if (kind_len > NX_AUDIT_AGG_STR) {
        kind_len = NX_AUDIT_AGG_STR;
    }

    for ( ;; ) {
        own = 0;
        free_slot = NX_AUDIT_AGG_SLOTS;

        for (i = 0; i < NX_AUDIT_AGG_SLOTS; i++) {
            s = &a->slot[i];

            if (s->used
                && nx_audit_agg_match(s, tenant_id, actor, actor_len, kind,
                                      kind_len))
            {
                *slot = i;

                if (!nx_audit_agg_live(s, now)) {
                    /* not hit for a whole second: a first event again */
                    s->sec = now;
                    s->folded = (uint8_t) *folded;
                    return NX_AUDIT_AGG_WRITE;
                }

                if (s->count++ == 0) {
                    s->folded = (uint8_t) *folded;
                    return NX_AUDIT_AGG_FIRST;
                }

                s->folded |= (uint8_t) *folded;
                return NX_AUDIT_AGG_COUNTED;
            }

            if (!nx_audit_agg_live(s, now)) {
                if (free_slot == NX_AUDIT_AGG_SLOTS) {
                    free_slot = i;
                }

                continue;
            }

            if (s->tenant_id != 0 || s->actor_len != 0) {
                own++;
            }
        }

        if (tenant_id == 0 && actor_len == 0) {
            /* the fold itself may take any slot */
            break;
        }

        if (own < NX_AUDIT_AGG_KEYS) {
            break;
        }

        tenant_id = 0;
        actor_len = 0;
        *folded = 1;
    }

    if (free_slot == NX_AUDIT_AGG_SLOTS) {
        a->lost++;
        return NX_AUDIT_AGG_LOST;
    }

    s = &a->slot[free_slot];

    s->used = 1;
    s->tenant_id = tenant_id;
    s->sec = now;
    s->count = 0;
    s->folded = (uint8_t) *folded;
    s->actor_len = (uint8_t) actor_len;
    s->kind_len = (uint8_t) kind_len;

    if (actor_len) {
        memcpy(s->actor, actor, actor_len);
    }

    if (kind_len) {
        memcpy(s->kind, kind, kind_len);
    }

    *slot = free_slot;

    return NX_AUDIT_AGG_WRITE;
}


int
nx_audit_agg_due(nx_audit_agg_t *a, int64_t now, size_t *slot,
    uint64_t *count)
{
    size_t                i;
    nx_audit_agg_slot_t  *s;

    for (i = 0; i < NX_AUDIT_AGG_SLOTS; i++) {
        s = &a->slot[i];

        if (!s->used || s->sec >= now) {
            continue;
        }

        if (s->count == 0) {
            s->used = 0;
            continue;
        }

        *slot = i;
        *count = s->count;

        s->count = 0;
        s->sec = now;

        return 1;
    }

    return 0;
}


int
nx_audit_agg_pending(const nx_audit_agg_t *a)
{
    size_t  i;

    for (i = 0; i < NX_AUDIT_AGG_SLOTS; i++) {
        if (a->slot[i].used && a->slot[i].count) {
            return 1;
        }
    }

    return 0;
}


/* a slot in use that still counts: its second, or hits not handed out */

static int
nx_audit_agg_live(const nx_audit_agg_slot_t *s, int64_t now)
{
    return s->used && (s->sec >= now || s->count != 0);
}


static int
nx_audit_agg_match(const nx_audit_agg_slot_t *s, int64_t tenant_id,
    const char *actor, size_t actor_len, const char *kind, size_t kind_len)
{
    return s->tenant_id == tenant_id
           && s->actor_len == actor_len && s->kind_len == kind_len
           && (actor_len == 0 || memcmp(s->actor, actor, actor_len) == 0)
           && (kind_len == 0 || memcmp(s->kind, kind, kind_len) == 0);
}
