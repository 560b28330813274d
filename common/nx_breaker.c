/*
 * Copyright (C) Nexus authors
 *
 * The circuit breaker of nx_breaker.h.  An open breaker turns half-open
 * lazily, the first time it is looked at after open_ms: nothing has to
 * run on a timer, and a breaker in shared memory needs no owner.
 *
 * Time is whatever monotonic millisecond clock the caller uses; a clock
 * that appears to go backwards (another process's slightly older
 * reading) counts as no time having passed.
 */

#include "nx_breaker.h"


static uint64_t nx_breaker_elapsed(uint64_t since, uint64_t now_ms);
static void nx_breaker_open(nx_breaker_t *b, uint64_t now_ms);
static void nx_breaker_half_open(nx_breaker_t *b, uint64_t now_ms);
static void nx_breaker_close(nx_breaker_t *b, uint64_t now_ms);


void
nx_breaker_init(nx_breaker_t *b, uint64_t now_ms)
{
    b->state = NX_BREAKER_CLOSED;
    b->failures = 0;
    b->successes = 0;
    b->probing = 0;
    b->changed_ms = now_ms;
    b->probe_ms = 0;
    b->opened = 0;
}


static uint64_t
nx_breaker_elapsed(uint64_t since, uint64_t now_ms)
{
    return (now_ms > since) ? now_ms - since : 0;
}


static void
nx_breaker_open(nx_breaker_t *b, uint64_t now_ms)
{
    b->state = NX_BREAKER_OPEN;
    b->successes = 0;
    b->probing = 0;
    b->changed_ms = now_ms;
    b->opened++;
}


static void
nx_breaker_half_open(nx_breaker_t *b, uint64_t now_ms)
{
    b->state = NX_BREAKER_HALF_OPEN;
    b->successes = 0;
    b->probing = 0;
    b->changed_ms = now_ms;
}


static void
nx_breaker_close(nx_breaker_t *b, uint64_t now_ms)
{
    b->state = NX_BREAKER_CLOSED;
    b->failures = 0;
    b->successes = 0;
    b->probing = 0;
    b->changed_ms = now_ms;
}


int
nx_breaker_allow(nx_breaker_t *b, const nx_breaker_conf_t *conf,
    uint64_t now_ms)
{
    switch (b->state) {

    case NX_BREAKER_CLOSED:
        return 1;

    case NX_BREAKER_OPEN:
        if (nx_breaker_elapsed(b->changed_ms, now_ms) < conf->open_ms) {
            return 0;
        }

        nx_breaker_half_open(b, now_ms);

        /* fall through */

    default:
        /* half-open: one probe at a time, a lost probe expires */
        if (b->probing
            && nx_breaker_elapsed(b->probe_ms, now_ms) < conf->open_ms)
        {
            return 0;
        }

        b->probing = 1;
        b->probe_ms = now_ms;

        return 1;
    }
}


/*
 * In half-open, any outcome is taken as the probe's: a request that went
 * out before the breaker opened and reports late is evidence about the
 * provider too.  While open (the window not yet over), outcomes of such
 * late requests change nothing: the breaker has already decided.
 */

void
nx_breaker_record(nx_breaker_t *b, const nx_breaker_conf_t *conf,
    uint64_t now_ms, int outcome)
{
    uint32_t  need;

    switch (b->state) {

    case NX_BREAKER_CLOSED:
        if (outcome == NX_BREAKER_SUCCESS) {
            b->failures = 0;

        } else if (outcome == NX_BREAKER_FAILURE) {
            b->failures++;

            need = conf->failures ? conf->failures : 1;

            if (b->failures >= need) {
                nx_breaker_open(b, now_ms);
            }
        }

        return;

    case NX_BREAKER_OPEN:
        return;

    default:
        b->probing = 0;

        if (outcome == NX_BREAKER_SUCCESS) {
            b->successes++;

            need = conf->successes ? conf->successes : 1;

            if (b->successes >= need) {
                nx_breaker_close(b, now_ms);
            }

        } else if (outcome == NX_BREAKER_FAILURE) {
            nx_breaker_open(b, now_ms);
        }

        return;
    }
}


uint64_t
nx_breaker_retry_ms(const nx_breaker_t *b, const nx_breaker_conf_t *conf,
    uint64_t now_ms)
{
    uint64_t  elapsed;

    switch (b->state) {

    case NX_BREAKER_OPEN:
        elapsed = nx_breaker_elapsed(b->changed_ms, now_ms);
        return (elapsed < conf->open_ms) ? conf->open_ms - elapsed : 0;

    case NX_BREAKER_HALF_OPEN:
        /* at the latest, when the probe out now loses its place */
        if (!b->probing) {
            return 0;
        }

        elapsed = nx_breaker_elapsed(b->probe_ms, now_ms);
        return (elapsed < conf->open_ms) ? conf->open_ms - elapsed : 0;

    default:
        return 0;
    }
}


uint32_t
nx_breaker_state(const nx_breaker_t *b, const nx_breaker_conf_t *conf,
    uint64_t now_ms)
{
    if (b->state == NX_BREAKER_OPEN
        && nx_breaker_elapsed(b->changed_ms, now_ms) >= conf->open_ms)
    {
        return NX_BREAKER_HALF_OPEN;
    }

    return b->state;
}


const char *
nx_breaker_state_name(uint32_t state)
{
    switch (state) {
    case NX_BREAKER_CLOSED:
        return "closed";
    case NX_BREAKER_OPEN:
        return "open";
    case NX_BREAKER_HALF_OPEN:
        return "half_open";
    default:
        return "unknown";
    }
}


/* back to closed; how many times it opened is history and stays */

void
nx_breaker_reset(nx_breaker_t *b, uint64_t now_ms)
{
    nx_breaker_close(b, now_ms);
}
