/*
 * Copyright (C) Nexus authors
 *
 * Durations such as "30d", "12h", "90m", "45s", "2w" (one integer and one
 * unit; s m h d w). Used by nexusctl --expires-in and the admin API.
 */

#ifndef NX_DURATION_H
#define NX_DURATION_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses buf[0..len) into seconds. Returns 0 and sets *secs on success;
 * -1 for an empty, malformed, zero, negative or overflowing value
 * (limit: 100 years).
 */
int nx_duration_parse(const char *buf, size_t len, int64_t *secs);

#endif /* NX_DURATION_H */
