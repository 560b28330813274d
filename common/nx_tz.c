/*
 * Copyright (C) Nexus authors
 *
 * Time zones: fixed offsets, and TZif files (RFC 8536) turned into one
 * sorted table of (UTC instant, offset) transitions.
 *
 * Only the version 2+ data block is read: its 64-bit times cover every
 * instant, the 32-bit block of version 1 ends in 2038. The POSIX TZ string
 * in the footer describes the zone after its last transition ("slim" files
 * stop at the last rule change, "fat" ones in 2037); it is expanded here,
 * year by year up to NX_TZ_YEAR_MAX, so that the lookup never has to know
 * about rules. Only offsets are kept: abbreviations and the isdst flag do
 * not matter for a time-of-day window.
 */

/* strerror_r() as GNU defines it, as in nx_key.c */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nx_tz.h"


#define NX_TZ_FILE_MAX       (256 * 1024)
#define NX_TZ_HEADER_LEN     44

/* RFC 8536: utoff SHOULD be in this range (-24:59:59 .. 25:59:59) */
#define NX_TZ_UTOFF_MIN      (-89999)
#define NX_TZ_UTOFF_MAX      93599

/* where the expansion of a footer rule starts in a file without any
 * transition (and the earliest a file's last transition may move it) */
#define NX_TZ_YEAR_MIN       1800

/* TZ string rule times may be -167..167 hours (RFC 8536, version 3) */
#define NX_TZ_RULE_HOURS     167

#define nx_tz_digit(c)       ((c) >= '0' && (c) <= '9')
#define nx_tz_alpha(c)       (((c) >= 'a' && (c) <= 'z')                      \
                              || ((c) >= 'A' && (c) <= 'Z'))


typedef struct {
    uint32_t                  isutcnt;
    uint32_t                  isstdcnt;
    uint32_t                  leapcnt;
    uint32_t                  timecnt;
    uint32_t                  typecnt;
    uint32_t                  charcnt;
} nx_tz_counts_t;


/* a date of a POSIX TZ rule: "Jn", "n" or "Mm.w.d", and "/time" */

typedef struct {
    char                      kind;       /* 'J', 'D' or 'M' */
    int                       day;        /* J: 1..365, D: 0..365 */
    int                       mon;        /* M: 1..12 */
    int                       week;       /* M: 1..5, 5 is the last */
    int                       wday;       /* M: 0..6, Sunday is 0 */
    int32_t                   time;       /* local seconds after midnight */
} nx_tz_date_t;


typedef struct {
    int32_t                   std_off;    /* seconds east of UTC */
    int32_t                   dst_off;
    unsigned                  dst:1;
    nx_tz_date_t              start;
    nx_tz_date_t              end;
} nx_tz_rule_t;


struct nx_tz_s {
    size_t                    n;
    size_t                    cap;
    int32_t                   off0;       /* before the first transition */
    int64_t                  *at;         /* ascending */
    int32_t                  *off;        /* from at[i] on */
};


static nx_tz_t *nx_tz_alloc(size_t cap, int32_t off0);
static int nx_tz_read(const char *path, unsigned char **buf, size_t *len,
    char *err, size_t errlen);
static uint32_t nx_tz_be32(const unsigned char *p);
static int64_t nx_tz_be64(const unsigned char *p);
static int nx_tz_header(const unsigned char *p, size_t len,
    nx_tz_counts_t *c);
static void nx_tz_add(nx_tz_t *tz, int64_t at, int32_t off);
static void nx_tz_expand(nx_tz_t *tz, const nx_tz_rule_t *r, int64_t y0);
static int64_t nx_tz_rule_day(const nx_tz_date_t *d, int64_t y);
static int nx_tz_rule_parse(const char *s, size_t len, nx_tz_rule_t *r);
static int nx_tz_rule_name(const char **pp, const char *end);
static int nx_tz_rule_hms(const char **pp, const char *end, int hours,
    int32_t *out);
static int nx_tz_rule_num(const char **pp, const char *end, int max,
    int *out);
static int nx_tz_rule_date(const char **pp, const char *end,
    nx_tz_date_t *d);
static int64_t nx_tz_year(int64_t t);
static int nx_tz_leap(int64_t y);
static int nx_tz_fixed_digits(const char *s, size_t n, int *out);
static void nx_tz_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static const int  nx_tz_mdays[12] = {
    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
};


nx_tz_t *
nx_tz_load(const char *dir, const char *name, char *err, size_t errlen)
{
    int             n;
    char            path[4096], ebuf[128];
    size_t          len, flen;
    int32_t         off;
    nx_tz_t        *tz;
    unsigned char  *buf;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    if (name == NULL) {
        nx_tz_error(err, errlen, "no time zone name");
        return NULL;
    }

    len = strlen(name);

    if (nx_tz_parse_offset(name, len, &off) == 0) {
        tz = nx_tz_alloc(0, off);
        if (tz == NULL) {
            nx_tz_error(err, errlen, "out of memory");
        }

        return tz;
    }

    if (!nx_tz_name_valid(name, len)) {
        nx_tz_error(err, errlen, "invalid time zone name");
        return NULL;
    }

    n = snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : NX_TZ_DIR,
                 name);
    if (n < 0 || (size_t) n >= sizeof(path)) {
        nx_tz_error(err, errlen, "time zone \"%s\": path too long", name);
        return NULL;
    }

    if (nx_tz_read(path, &buf, &flen, ebuf, sizeof(ebuf)) != 0) {
        nx_tz_error(err, errlen, "time zone \"%s\": %s", name, ebuf);
        return NULL;
    }

    tz = nx_tz_parse_tzif(buf, flen, ebuf, sizeof(ebuf));

    free(buf);

    if (tz == NULL) {
        nx_tz_error(err, errlen, "time zone \"%s\": %s", name, ebuf);
    }

    return tz;
}


/*
 * The file is read whole, and bounded: real TZif files are a few KiB.
 * Anything but a regular file ("Europe", a device) is an unknown zone.
 */

static int
nx_tz_read(const char *path, unsigned char **buf, size_t *len, char *err,
    size_t errlen)
{
    int             fd;
    char            ebuf[96];
    size_t          n, size;
    ssize_t         r;
    struct stat     st;
    unsigned char  *p;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        if (errno == ENOENT || errno == ENOTDIR) {
            nx_tz_error(err, errlen, "unknown time zone");

        } else {
            nx_tz_error(err, errlen, "open: %s",
                        strerror_r(errno, ebuf, sizeof(ebuf)));
        }

        return -1;
    }

    if (fstat(fd, &st) == -1) {
        nx_tz_error(err, errlen, "fstat: %s",
                    strerror_r(errno, ebuf, sizeof(ebuf)));
        goto failed;
    }

    if (!S_ISREG(st.st_mode)) {
        nx_tz_error(err, errlen, "unknown time zone");
        goto failed;
    }

    if (st.st_size <= 0 || st.st_size > NX_TZ_FILE_MAX) {
        nx_tz_error(err, errlen, "not a TZif file (size %lld)",
                    (long long) st.st_size);
        goto failed;
    }

    size = (size_t) st.st_size;

    p = malloc(size);
    if (p == NULL) {
        nx_tz_error(err, errlen, "out of memory");
        goto failed;
    }

    n = 0;

    while (n < size) {
        r = read(fd, p + n, size - n);

        if (r == -1) {
            if (errno == EINTR) {
                continue;
            }

            nx_tz_error(err, errlen, "read: %s",
                        strerror_r(errno, ebuf, sizeof(ebuf)));
            free(p);
            goto failed;
        }

        if (r == 0) {
            break;
        }

        n += (size_t) r;
    }

    (void) close(fd);

    *buf = p;
    *len = n;

    return 0;

failed:

    (void) close(fd);

    return -1;
}


nx_tz_t *
nx_tz_parse_tzif(const unsigned char *buf, size_t len, char *err,
    size_t errlen)
{
    size_t           i, pos, cap, fl;
    int64_t          t, prev, y0, years;
    int32_t          off, off0;
    uint32_t         k;
    uint64_t         v1, v2;
    nx_tz_t         *tz;
    nx_tz_rule_t     rule;
    nx_tz_counts_t   c;
    const char      *footer, *nl;
    unsigned char    version;
    const unsigned char  *times, *idx, *types;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    if (buf == NULL || nx_tz_header(buf, len, &c) != 0) {
        nx_tz_error(err, errlen, "not a TZif file");
        return NULL;
    }

    version = buf[4];

    if (version == '\0') {
        nx_tz_error(err, errlen, "TZif version 1 is not supported");
        return NULL;
    }

    /* skip the version 1 data block; the counts are below 2^32 each */

    v1 = (uint64_t) c.timecnt * 5 + (uint64_t) c.typecnt * 6 + c.charcnt
         + (uint64_t) c.leapcnt * 8 + c.isstdcnt + c.isutcnt;

    if (v1 > len - NX_TZ_HEADER_LEN
        || nx_tz_header(buf + NX_TZ_HEADER_LEN + v1,
                        len - NX_TZ_HEADER_LEN - (size_t) v1, &c) != 0)
    {
        nx_tz_error(err, errlen, "truncated TZif file");
        return NULL;
    }

    pos = NX_TZ_HEADER_LEN + (size_t) v1 + NX_TZ_HEADER_LEN;

    v2 = (uint64_t) c.timecnt * 9 + (uint64_t) c.typecnt * 6 + c.charcnt
         + (uint64_t) c.leapcnt * 12 + c.isstdcnt + c.isutcnt;

    if (v2 > len - pos) {
        nx_tz_error(err, errlen, "truncated TZif file");
        return NULL;
    }

    if (c.typecnt == 0 || (c.isutcnt != 0 && c.isutcnt != c.typecnt)
        || (c.isstdcnt != 0 && c.isstdcnt != c.typecnt))
    {
        nx_tz_error(err, errlen, "invalid TZif counts");
        return NULL;
    }

    if (c.leapcnt != 0) {
        nx_tz_error(err, errlen, "zones with leap seconds are not supported");
        return NULL;
    }

    times = buf + pos;
    idx = times + (size_t) c.timecnt * 8;
    types = idx + c.timecnt;

    for (k = 0; k < c.typecnt; k++) {
        off = (int32_t) nx_tz_be32(types + (size_t) k * 6);

        if (off < NX_TZ_UTOFF_MIN || off > NX_TZ_UTOFF_MAX) {
            nx_tz_error(err, errlen, "UT offset out of range");
            return NULL;
        }
    }

    prev = INT64_MIN;

    for (k = 0; k < c.timecnt; k++) {
        t = nx_tz_be64(times + (size_t) k * 8);

        if ((k > 0 && t <= prev) || idx[k] >= c.typecnt) {
            nx_tz_error(err, errlen, "invalid TZif transitions");
            return NULL;
        }

        prev = t;
    }

    /* the footer: "\n" TZ string "\n" (absent: no rule after the table) */

    pos += (size_t) v2;
    footer = NULL;
    fl = 0;

    if (pos < len) {
        nl = (buf[pos] == '\n')
             ? memchr(buf + pos + 1, '\n', len - pos - 1) : NULL;

        if (nl == NULL) {
            nx_tz_error(err, errlen, "malformed TZif footer");
            return NULL;
        }

        footer = (const char *) buf + pos + 1;
        fl = (size_t) (nl - footer);
    }

    rule.dst = 0;

    if (fl > 0 && nx_tz_rule_parse(footer, fl, &rule) != 0) {
        nx_tz_error(err, errlen, "unsupported TZ string in TZif footer");
        return NULL;
    }

    off0 = (int32_t) nx_tz_be32(types);

    if (fl > 0 && c.timecnt == 0) {
        /* RFC 8536 3.2: without transitions the TZ string rules */
        off0 = rule.std_off;
    }

    y0 = NX_TZ_YEAR_MIN;

    if (c.timecnt > 0) {
        y0 = nx_tz_year(prev);
        if (y0 < NX_TZ_YEAR_MIN) {
            y0 = NX_TZ_YEAR_MIN;
        }
    }

    years = (rule.dst && y0 <= NX_TZ_YEAR_MAX) ? NX_TZ_YEAR_MAX - y0 + 1 : 0;
    cap = c.timecnt + (size_t) years * 2;

    tz = nx_tz_alloc(cap, off0);
    if (tz == NULL) {
        nx_tz_error(err, errlen, "out of memory");
        return NULL;
    }

    for (i = 0; i < c.timecnt; i++) {
        off = (int32_t) nx_tz_be32(types + (size_t) idx[i] * 6);
        nx_tz_add(tz, nx_tz_be64(times + i * 8), off);
    }

    if (years > 0) {
        nx_tz_expand(tz, &rule, y0);
    }

    return tz;
}


static int
nx_tz_header(const unsigned char *p, size_t len, nx_tz_counts_t *c)
{
    if (len < NX_TZ_HEADER_LEN || memcmp(p, "TZif", 4) != 0) {
        return -1;
    }

    c->isutcnt = nx_tz_be32(p + 20);
    c->isstdcnt = nx_tz_be32(p + 24);
    c->leapcnt = nx_tz_be32(p + 28);
    c->timecnt = nx_tz_be32(p + 32);
    c->typecnt = nx_tz_be32(p + 36);
    c->charcnt = nx_tz_be32(p + 40);

    return 0;
}


static nx_tz_t *
nx_tz_alloc(size_t cap, int32_t off0)
{
    nx_tz_t  *tz;

    /* cap is bounded by the file size and NX_TZ_YEAR_MAX: no overflow */
    tz = malloc(sizeof(nx_tz_t) + cap * (sizeof(int64_t) + sizeof(int32_t)));
    if (tz == NULL) {
        return NULL;
    }

    tz->n = 0;
    tz->cap = cap;
    tz->off0 = off0;
    tz->at = (int64_t *) (tz + 1);
    tz->off = (int32_t *) (tz->at + cap);

    return tz;
}


/*
 * Appends a transition, keeping the table strictly ascending and free of
 * transitions that do not change the offset. A transition at the instant
 * of the previous one replaces it; one before it (only a nonsensical rule
 * produces that) is dropped.
 */

static void
nx_tz_add(nx_tz_t *tz, int64_t at, int32_t off)
{
    int32_t  cur;

    if (tz->n > 0 && at <= tz->at[tz->n - 1]) {
        if (at < tz->at[tz->n - 1]) {
            return;
        }

        tz->n--;
    }

    cur = (tz->n > 0) ? tz->off[tz->n - 1] : tz->off0;

    if (off == cur || tz->n == tz->cap) {
        return;
    }

    tz->at[tz->n] = at;
    tz->off[tz->n] = off;
    tz->n++;
}


/*
 * DST starts at the start date and time, given in standard time, and ends
 * at the end date and time, given in daylight time (POSIX). In the
 * southern hemisphere the end comes first in the calendar year.
 */

static void
nx_tz_expand(nx_tz_t *tz, const nx_tz_rule_t *r, int64_t y0)
{
    int64_t  y, s, e, last;

    last = (tz->n > 0) ? tz->at[tz->n - 1] : INT64_MIN;

    for (y = y0; y <= NX_TZ_YEAR_MAX; y++) {
        s = nx_tz_rule_day(&r->start, y) * 86400 + r->start.time - r->std_off;
        e = nx_tz_rule_day(&r->end, y) * 86400 + r->end.time - r->dst_off;

        if (s < e) {
            if (s > last) {
                nx_tz_add(tz, s, r->dst_off);
            }

            if (e > last) {
                nx_tz_add(tz, e, r->std_off);
            }

        } else {
            if (e > last) {
                nx_tz_add(tz, e, r->std_off);
            }

            if (s > last) {
                nx_tz_add(tz, s, r->dst_off);
            }
        }
    }
}


/* days since the epoch of a rule date in year y */

static int64_t
nx_tz_rule_day(const nx_tz_date_t *d, int64_t y)
{
    int      md, first, day;
    int64_t  jan1, m1;

    jan1 = nx_tz_days(y, 1, 1);

    switch (d->kind) {

    case 'J':
        /* 1..365, February 29 is never counted */
        return jan1 + d->day - 1 + ((nx_tz_leap(y) && d->day >= 60) ? 1 : 0);

    case 'D':
        return jan1 + d->day;

    default: /* 'M' */
        m1 = nx_tz_days(y, d->mon, 1);

        /* 1970-01-01 was a Thursday */
        first = (int) (((m1 % 7) + 7 + 4) % 7);

        md = nx_tz_mdays[d->mon - 1] + ((d->mon == 2 && nx_tz_leap(y)) ? 1 : 0);

        day = 1 + (d->wday - first + 7) % 7 + (d->week - 1) * 7;

        while (day > md) {
            day -= 7;
        }

        return m1 + day - 1;
    }
}


/*
 * std offset [dst [offset] ,start[/time],end[/time]]; a zone with DST but
 * no rule is refused (the POSIX default rule is implementation-defined).
 */

static int
nx_tz_rule_parse(const char *s, size_t len, nx_tz_rule_t *r)
{
    int32_t      off;
    const char  *p, *end;

    p = s;
    end = s + len;

    if (nx_tz_rule_name(&p, end) != 0
        || nx_tz_rule_hms(&p, end, 24, &off) != 0)
    {
        return -1;
    }

    /* POSIX offsets count hours west of Greenwich */
    r->std_off = -off;
    r->dst = 0;

    if (p == end) {
        return 0;
    }

    if (nx_tz_rule_name(&p, end) != 0) {
        return -1;
    }

    r->dst = 1;
    r->dst_off = r->std_off + 3600;

    if (p < end && *p != ',') {
        if (nx_tz_rule_hms(&p, end, 24, &off) != 0) {
            return -1;
        }

        r->dst_off = -off;
    }

    if (p == end || *p++ != ',' || nx_tz_rule_date(&p, end, &r->start) != 0
        || p == end || *p++ != ',' || nx_tz_rule_date(&p, end, &r->end) != 0
        || p != end)
    {
        return -1;
    }

    if (r->std_off < NX_TZ_UTOFF_MIN || r->std_off > NX_TZ_UTOFF_MAX
        || r->dst_off < NX_TZ_UTOFF_MIN || r->dst_off > NX_TZ_UTOFF_MAX)
    {
        return -1;
    }

    return 0;
}


static int
nx_tz_rule_name(const char **pp, const char *end)
{
    size_t       n;
    const char  *p;

    p = *pp;
    n = 0;

    if (p < end && *p == '<') {
        for (p++; p < end && *p != '>'; p++, n++) {
            if (!nx_tz_alpha(*p) && !nx_tz_digit(*p) && *p != '+'
                && *p != '-')
            {
                return -1;
            }
        }

        if (p == end) {
            return -1;
        }

        p++;

    } else {
        while (p < end && nx_tz_alpha(*p)) {
            p++;
            n++;
        }
    }

    if (n < 3) {
        return -1;
    }

    *pp = p;

    return 0;
}


/* [+-]hh[:mm[:ss]] with hh at most hours */

static int
nx_tz_rule_hms(const char **pp, const char *end, int hours, int32_t *out)
{
    int          neg, h, m, s;
    const char  *p;

    p = *pp;
    neg = 0;
    m = 0;
    s = 0;

    if (p < end && (*p == '+' || *p == '-')) {
        neg = (*p == '-');
        p++;
    }

    if (nx_tz_rule_num(&p, end, hours, &h) != 0) {
        return -1;
    }

    if (p < end && *p == ':') {
        p++;

        if (nx_tz_rule_num(&p, end, 59, &m) != 0) {
            return -1;
        }

        if (p < end && *p == ':') {
            p++;

            if (nx_tz_rule_num(&p, end, 59, &s) != 0) {
                return -1;
            }
        }
    }

    *out = (int32_t) (h * 3600 + m * 60 + s) * (neg ? -1 : 1);
    *pp = p;

    return 0;
}


/* 1 to 3 digits, at most max */

static int
nx_tz_rule_num(const char **pp, const char *end, int max, int *out)
{
    int          n, v;
    const char  *p;

    p = *pp;
    v = 0;

    for (n = 0; n < 3 && p < end && nx_tz_digit(*p); n++, p++) {
        v = v * 10 + (*p - '0');
    }

    if (n == 0 || v > max) {
        return -1;
    }

    *out = v;
    *pp = p;

    return 0;
}


static int
nx_tz_rule_date(const char **pp, const char *end, nx_tz_date_t *d)
{
    const char  *p;

    p = *pp;
    d->time = 7200;

    if (p < end && *p == 'J') {
        p++;
        d->kind = 'J';

        if (nx_tz_rule_num(&p, end, 365, &d->day) != 0 || d->day == 0) {
            return -1;
        }

    } else if (p < end && *p == 'M') {
        p++;
        d->kind = 'M';

        if (nx_tz_rule_num(&p, end, 12, &d->mon) != 0 || d->mon == 0
            || p == end || *p++ != '.'
            || nx_tz_rule_num(&p, end, 5, &d->week) != 0 || d->week == 0
            || p == end || *p++ != '.'
            || nx_tz_rule_num(&p, end, 6, &d->wday) != 0)
        {
            return -1;
        }

    } else {
        d->kind = 'D';

        if (nx_tz_rule_num(&p, end, 365, &d->day) != 0) {
            return -1;
        }
    }

    if (p < end && *p == '/') {
        p++;

        if (nx_tz_rule_hms(&p, end, NX_TZ_RULE_HOURS, &d->time) != 0) {
            return -1;
        }
    }

    *pp = p;

    return 0;
}


int
nx_tz_parse_offset(const char *s, size_t len, int32_t *off)
{
    int32_t  h, m, v;

    if (s == NULL || off == NULL) {
        return -1;
    }

    if ((len == 1 && s[0] == 'Z')
        || (len == 3 && (memcmp(s, "UTC", 3) == 0
                         || memcmp(s, "GMT", 3) == 0)))
    {
        *off = 0;
        return 0;
    }

    if (len > 3 && (memcmp(s, "UTC", 3) == 0 || memcmp(s, "GMT", 3) == 0)) {
        s += 3;
        len -= 3;
    }

    /* +HH, +HHMM, +HH:MM */

    if ((len != 3 && len != 5 && len != 6) || (s[0] != '+' && s[0] != '-')
        || !nx_tz_digit(s[1]) || !nx_tz_digit(s[2]))
    {
        return -1;
    }

    h = (s[1] - '0') * 10 + (s[2] - '0');
    m = 0;

    if (len == 6 && s[3] != ':') {
        return -1;
    }

    if (len > 3) {
        if (!nx_tz_digit(s[len - 2]) || !nx_tz_digit(s[len - 1])) {
            return -1;
        }

        m = (s[len - 2] - '0') * 10 + (s[len - 1] - '0');
    }

    v = h * 3600 + m * 60;

    if (m > 59 || v > NX_TZ_FIXED_MAX) {
        return -1;
    }

    *off = (s[0] == '-') ? -v : v;

    return 0;
}


int
nx_tz_parse_timestamp(const char *s, size_t len, double *t)
{
    int      y, mo, d, h, mi, sec, md;
    size_t   i;
    double   frac, scale;
    int32_t  off;

    if (s == NULL || t == NULL || len < 10
        || nx_tz_fixed_digits(s, 4, &y) != 0 || s[4] != '-'
        || nx_tz_fixed_digits(s + 5, 2, &mo) != 0 || s[7] != '-'
        || nx_tz_fixed_digits(s + 8, 2, &d) != 0
        || mo < 1 || mo > 12)
    {
        return -1;
    }

    md = nx_tz_mdays[mo - 1] + ((mo == 2 && nx_tz_leap(y)) ? 1 : 0);

    if (d < 1 || d > md) {
        return -1;
    }

    h = 0;
    mi = 0;
    sec = 0;
    frac = 0;
    off = 0;

    i = 10;

    if (i < len) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') {
            return -1;
        }

        i++;

        if (len - i < 5 || nx_tz_fixed_digits(s + i, 2, &h) != 0
            || s[i + 2] != ':' || nx_tz_fixed_digits(s + i + 3, 2, &mi) != 0)
        {
            return -1;
        }

        i += 5;

        if (i < len && s[i] == ':') {
            if (len - i < 3 || nx_tz_fixed_digits(s + i + 1, 2, &sec) != 0) {
                return -1;
            }

            i += 3;

            if (i < len && s[i] == '.') {
                i++;

                if (i == len || !nx_tz_digit(s[i])) {
                    return -1;
                }

                for (scale = 0.1; i < len && nx_tz_digit(s[i]); i++) {
                    frac += (s[i] - '0') * scale;
                    scale /= 10;
                }
            }
        }

        /* a leap second is counted as the next second, as POSIX does */

        if (h > 23 || mi > 59 || sec > 60 || i == len) {
            return -1;
        }

        if (s[i] == 'Z' || s[i] == 'z') {
            if (i + 1 != len) {
                return -1;
            }

        } else if ((s[i] != '+' && s[i] != '-')
                   || nx_tz_parse_offset(s + i, len - i, &off) != 0)
        {
            return -1;
        }
    }

    *t = (double) (nx_tz_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
                   - off)
         + frac;

    return 0;
}


static int
nx_tz_fixed_digits(const char *s, size_t n, int *out)
{
    size_t  i;
    int     v;

    v = 0;

    for (i = 0; i < n; i++) {
        if (!nx_tz_digit(s[i])) {
            return -1;
        }

        v = v * 10 + (s[i] - '0');
    }

    *out = v;

    return 0;
}


int
nx_tz_name_valid(const char *name, size_t len)
{
    size_t  i;
    char    c;

    if (name == NULL || len == 0 || len > NX_TZ_NAME_MAX || name[0] == '/'
        || name[len - 1] == '/')
    {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = name[i];

        if (nx_tz_alpha(c) || nx_tz_digit(c) || c == '_' || c == '+'
            || c == '-')
        {
            continue;
        }

        /* no empty component: "a//b" */
        if (c == '/' && name[i + 1] != '/') {
            continue;
        }

        return 0;
    }

    /* '.' is outside the set, so ".." cannot name a parent directory */

    return 1;
}


int32_t
nx_tz_offset(const nx_tz_t *tz, int64_t t)
{
    size_t  lo, hi, mid;

    if (tz->n == 0 || t < tz->at[0]) {
        return tz->off0;
    }

    /* at[lo] <= t < at[hi] */

    lo = 0;
    hi = tz->n;

    while (hi - lo > 1) {
        mid = lo + (hi - lo) / 2;

        if (tz->at[mid] <= t) {
            lo = mid;

        } else {
            hi = mid;
        }
    }

    return tz->off[lo];
}


size_t
nx_tz_transitions(const nx_tz_t *tz)
{
    return tz != NULL ? tz->n : 0;
}


void
nx_tz_free(nx_tz_t *tz)
{
    free(tz);
}


static uint32_t
nx_tz_be32(const unsigned char *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
           | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}


static int64_t
nx_tz_be64(const unsigned char *p)
{
    return (int64_t) ((uint64_t) nx_tz_be32(p) << 32 | nx_tz_be32(p + 4));
}


int64_t
nx_tz_days(int64_t y, int m, int d)
{
    int64_t  era, yoe, doy, doe;

    y -= (m <= 2);
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


/* the proleptic Gregorian year of the UTC instant t */

static int64_t
nx_tz_year(int64_t t)
{
    int64_t  z, era, doe, yoe, doy, mp;

    z = t / 86400 - (t % 86400 < 0);
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;

    return yoe + era * 400 + (mp >= 10);
}


static int
nx_tz_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}


static void
nx_tz_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(err, errlen, fmt, args);
    va_end(args);
}
