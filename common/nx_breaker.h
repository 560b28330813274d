/*
 * Copyright (C) Nexus authors
 *
 * A circuit breaker as a pure state machine over a clock the caller
 * passes in, so that the module can keep one per provider in shared
 * memory (under its lock) and tests can drive time.
 *
 *   closed     every request goes; `failures` consecutive failures open it
 *   open       nothing goes for open_ms; then half-open
 *   half-open  one probe at a time; `successes` consecutive successes
 *              close it, a failure opens it again.  A probe that never
 *              reports (its request died) frees its place after open_ms.
 *
 * Outcomes: a 5xx, a connect error or a timeout is a failure; any other
 * answer is a success; NX_BREAKER_NEUTRAL (429, a client that left) does
 * not move the breaker but frees a probe's place.
 */

#ifndef NX_BREAKER_H
#define NX_BREAKER_H

#include <stdint.h>

#define NX_BREAKER_CLOSED       0
#define NX_BREAKER_OPEN         1
#define NX_BREAKER_HALF_OPEN    2

#define NX_BREAKER_SUCCESS      0
#define NX_BREAKER_FAILURE      1
#define NX_BREAKER_NEUTRAL      2

typedef struct {
    uint32_t    failures;       /* to open: 5 */
    uint32_t    successes;      /* to close from half-open: 2 */
    uint64_t    open_ms;        /* 30000 */
} nx_breaker_conf_t;

typedef struct {
    uint32_t    state;
    uint32_t    failures;       /* consecutive, in closed */
    uint32_t    successes;      /* consecutive, in half-open */
    uint32_t    probing;        /* a half-open probe is out */
    uint64_t    changed_ms;     /* when the state last changed */
    uint64_t    probe_ms;       /* when the probe went out */
    uint64_t    opened;         /* times it opened, for metrics */
} nx_breaker_t;

void nx_breaker_init(nx_breaker_t *b, uint64_t now_ms);

/* 1: the request may go (in half-open it becomes the probe); 0: not */
int nx_breaker_allow(nx_breaker_t *b, const nx_breaker_conf_t *conf,
    uint64_t now_ms);

void nx_breaker_record(nx_breaker_t *b, const nx_breaker_conf_t *conf,
    uint64_t now_ms, int outcome);

/* ms until an open breaker lets a probe through (0 when it would now) */
uint64_t nx_breaker_retry_ms(const nx_breaker_t *b,
    const nx_breaker_conf_t *conf, uint64_t now_ms);

/* the state as seen now (open turns half-open when open_ms has passed) */
uint32_t nx_breaker_state(const nx_breaker_t *b,
    const nx_breaker_conf_t *conf, uint64_t now_ms);

const char *nx_breaker_state_name(uint32_t state);

void nx_breaker_reset(nx_breaker_t *b, uint64_t now_ms);

#endif /* NX_BREAKER_H */
