/*
 * Copyright (C) Nexus authors
 *
 * Time zones for the policy engine: fixed offsets ("UTC", "+02:00") and
 * IANA zones read from TZif files (version 2 or later, 64-bit data) when a
 * policy is compiled. A zone is then a sorted table of UTC transitions, so
 * that finding the offset at an instant is a binary search: no I/O, no
 * allocation, no locale or libc time zone state.
 */

#ifndef NX_TZ_H
#define NX_TZ_H

#include <stddef.h>
#include <stdint.h>

#define NX_TZ_DIR        "/usr/share/zoneinfo"
#define NX_TZ_NAME_MAX   255

/* the footer rule of a TZif file is expanded into transitions up to here */
#define NX_TZ_YEAR_MAX   2200

/* offsets of fixed zones, in seconds: at most 18 hours either way */
#define NX_TZ_FIXED_MAX  (18 * 3600)

typedef struct nx_tz_s  nx_tz_t;

/*
 * Loads a zone by name: "UTC", "GMT" and "Z" are UTC; "+HH:MM", "-HH:MM",
 * "+HHMM" and "+HH" (also with "UTC" in front: "UTC+02:00") are fixed
 * offsets; anything else is an IANA name read from dir/name (dir NULL:
 * NX_TZ_DIR). IANA names are 1 to NX_TZ_NAME_MAX characters of
 * [A-Za-z0-9_+/-], neither absolute nor with empty components. Returns
 * NULL and fills err on error; the message quotes the name only when it
 * passed that check.
 */
nx_tz_t *nx_tz_load(const char *dir, const char *name, char *err,
    size_t errlen);

/*
 * Builds a zone from a TZif image of len bytes. Version 1 files and files
 * with leap seconds ("right/" zones) are refused.
 */
nx_tz_t *nx_tz_parse_tzif(const unsigned char *buf, size_t len, char *err,
    size_t errlen);

/* Parses a fixed offset as nx_tz_load() accepts it; 0 or -1. */
int nx_tz_parse_offset(const char *s, size_t len, int32_t *off);

/* Returns 1 when name is acceptable as an IANA zone name. */
int nx_tz_name_valid(const char *name, size_t len);

/*
 * Seconds east of UTC in effect at the UTC instant t (seconds since the
 * epoch). After NX_TZ_YEAR_MAX the offset of the last transition stays.
 */
int32_t nx_tz_offset(const nx_tz_t *tz, int64_t t);

/*
 * Parses an RFC 3339 timestamp, "2025-03-30T01:30:00Z" (also with a
 * fraction, a lowercase "t"/"z", a space for the "T", an offset "+02:00"
 * or "+0200", and without seconds), or a plain date "2025-03-30" (UTC
 * midnight), into seconds since the epoch. Years 0000-9999; a date-time
 * without an offset is refused, local time being ambiguous. 0 or -1.
 */
int nx_tz_parse_timestamp(const char *s, size_t len, double *t);

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12). */
int64_t nx_tz_days(int64_t y, int m, int d);

/* Number of transitions in the table (0 for fixed zones). */
size_t nx_tz_transitions(const nx_tz_t *tz);

void nx_tz_free(nx_tz_t *tz);

#endif /* NX_TZ_H */
