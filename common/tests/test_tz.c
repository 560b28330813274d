/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_tz: fixed offsets, IANA names and their checks, RFC
 * 3339 timestamps, TZif parsing (built in memory: version, truncation, leap
 * seconds, order of transitions, footers with POSIX TZ rules of every
 * form) and, when tzdata is installed, offsets of real zones across DST.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nx_tz.h"


#define BERLIN  "/usr/share/zoneinfo/Europe/Berlin"
#define SYDNEY  "/usr/share/zoneinfo/Australia/Sydney"


typedef struct {
    char                version;
    uint32_t            timecnt;
    const int64_t      *times;
    const uint8_t      *idx;
    uint32_t            typecnt;
    const int32_t      *offs;
    uint32_t            leapcnt;
    const char         *footer;     /* NULL: no footer at all */
} tzif_t;


static unsigned char *
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;

    return p + 4;
}


static unsigned char *
header(unsigned char *p, char version, uint32_t leapcnt, uint32_t timecnt,
    uint32_t typecnt)
{
    memcpy(p, "TZif", 4);
    p[4] = (unsigned char) version;
    memset(p + 5, 0, 15);
    p += 20;

    p = put32(p, 0);            /* isutcnt */
    p = put32(p, 0);            /* isstdcnt */
    p = put32(p, leapcnt);
    p = put32(p, timecnt);
    p = put32(p, typecnt);
    p = put32(p, 1);            /* charcnt */

    return p;
}


/* a TZif image: a minimal version 1 block, then the version 2+ data */

static size_t
build(unsigned char *buf, const tzif_t *z)
{
    uint32_t        i;
    unsigned char  *p;

    p = header(buf, z->version, 0, 0, 1);
    p = put32(p, 0);
    *p++ = 0;
    *p++ = 0;
    *p++ = 0;

    if (z->version == '\0') {
        return (size_t) (p - buf);
    }

    p = header(p, z->version, z->leapcnt, z->timecnt, z->typecnt);

    for (i = 0; i < z->timecnt; i++) {
        p = put32(p, (uint32_t) ((uint64_t) z->times[i] >> 32));
        p = put32(p, (uint32_t) z->times[i]);
    }

    for (i = 0; i < z->timecnt; i++) {
        *p++ = z->idx[i];
    }

    for (i = 0; i < z->typecnt; i++) {
        p = put32(p, (uint32_t) z->offs[i]);
        *p++ = 0;
        *p++ = 0;
    }

    *p++ = 0;

    for (i = 0; i < z->leapcnt; i++) {
        memset(p, 0, 12);
        p += 12;
    }

    if (z->footer != NULL) {
        p += sprintf((char *) p, "\n%s\n", z->footer);
    }

    return (size_t) (p - buf);
}


static nx_tz_t *
parse(const tzif_t *z, char *err, size_t errlen)
{
    size_t          n;
    unsigned char   buf[4096];

    n = build(buf, z);

    return nx_tz_parse_tzif(buf, n, err, errlen);
}


/* a zone from a footer only, as in a "slim" file without transitions */

static nx_tz_t *
rule_zone(const char *footer)
{
    char          err[128];
    int32_t       off0;
    tzif_t        z;
    nx_tz_t      *tz;

    memset(&z, 0, sizeof(z));
    off0 = 0;
    z.version = '2';
    z.typecnt = 1;
    z.offs = &off0;
    z.footer = footer;

    tz = parse(&z, err, sizeof(err));
    if (tz == NULL) {
        fail_msg("footer \"%s\": %s", footer, err);
    }

    return tz;
}


static void
bad_tzif(const tzif_t *z, const char *expect)
{
    char      err[128];
    nx_tz_t  *tz;

    tz = parse(z, err, sizeof(err));
    if (tz != NULL) {
        nx_tz_free(tz);
        fail_msg("footer \"%s\": expected \"%s\"",
                 z->footer != NULL ? z->footer : "", expect);
    }

    if (strcmp(err, expect) != 0) {
        fail_msg("footer \"%s\": \"%s\", expected \"%s\"",
                 z->footer != NULL ? z->footer : "", err, expect);
    }
}


static nx_tz_t *
load(const char *name)
{
    char      err[256];
    nx_tz_t  *tz;

    tz = nx_tz_load(NULL, name, err, sizeof(err));
    if (tz == NULL) {
        fail_msg("load of %s: %s", name, err);
    }

    return tz;
}


static int
have(const char *path)
{
    if (access(path, R_OK) != 0) {
        print_message("skipping: no %s\n", path);
        return 0;
    }

    return 1;
}


static int64_t
ts(const char *s)
{
    double  t;

    if (nx_tz_parse_timestamp(s, strlen(s), &t) != 0) {
        fail_msg("timestamp %s", s);
    }

    return (int64_t) t;
}


static void
test_offsets(void **state)
{
    int32_t  off;

    (void) state;

#define OFF(s, v)  do {                                                       \
        off = 12345;                                                          \
        assert_int_equal(nx_tz_parse_offset(s, sizeof(s) - 1, &off), 0);     \
        assert_int_equal(off, v);                                             \
    } while (0)

#define NOFF(s)  assert_int_equal(nx_tz_parse_offset(s, sizeof(s) - 1, &off), \
                                  -1)

    OFF("UTC", 0);
    OFF("GMT", 0);
    OFF("Z", 0);
    OFF("+00:00", 0);
    OFF("-00:00", 0);
    OFF("+02:00", 7200);
    OFF("-05:30", -19800);
    OFF("+0545", 20700);
    OFF("-03", -10800);
    OFF("+18:00", 64800);
    OFF("-18:00", -64800);
    OFF("UTC+01:00", 3600);
    OFF("GMT-0800", -28800);

    NOFF("");
    NOFF("utc");
    NOFF("+18:01");
    NOFF("+19");
    NOFF("+2");
    NOFF("+02:0");
    NOFF("+02:60");
    NOFF("+02-00");
    NOFF("02:00");
    NOFF("+02:00 ");
    NOFF("UTC+");
    NOFF("UTC+2");
    NOFF("Europe/Berlin");

#undef OFF
#undef NOFF

    assert_int_equal(nx_tz_parse_offset(NULL, 0, &off), -1);
}


static void
test_names(void **state)
{
    (void) state;

#define VALID(s)    assert_int_equal(nx_tz_name_valid(s, sizeof(s) - 1), 1)
#define INVALID(s)  assert_int_equal(nx_tz_name_valid(s, sizeof(s) - 1), 0)

    VALID("Europe/Berlin");
    VALID("America/Argentina/Buenos_Aires");
    VALID("Etc/GMT+5");
    VALID("Etc/GMT-14");
    VALID("EST5EDT");
    VALID("posix/Europe/Berlin");

    INVALID("");
    INVALID("/etc/passwd");
    INVALID("../etc/passwd");
    INVALID("Europe/../../etc/passwd");
    INVALID("..");
    INVALID(".");
    INVALID("Europe/");
    INVALID("Europe//Berlin");
    INVALID("Europe\\Berlin");
    INVALID("Europe/Berlin\n");
    INVALID("Europe/Berlin ");
    INVALID("Europe/Ber lin");
    INVALID("Europe/Berlin\x80");
    INVALID("Europe/Berlin:x");

#undef VALID
#undef INVALID

    assert_int_equal(nx_tz_name_valid("Europe/Berlin", 0), 0);
    assert_int_equal(nx_tz_name_valid(NULL, 3), 0);

    {
        char  longname[NX_TZ_NAME_MAX + 2];

        memset(longname, 'a', sizeof(longname));
        assert_int_equal(nx_tz_name_valid(longname, NX_TZ_NAME_MAX), 1);
        assert_int_equal(nx_tz_name_valid(longname, NX_TZ_NAME_MAX + 1), 0);
    }
}


static void
test_timestamps(void **state)
{
    double  t;

    (void) state;

#define TS(s, v)  do {                                                        \
        t = -1;                                                               \
        assert_int_equal(nx_tz_parse_timestamp(s, sizeof(s) - 1, &t), 0);    \
        assert_true(t == (v));                                                \
    } while (0)

#define NTS(s)  assert_int_equal(nx_tz_parse_timestamp(s, sizeof(s) - 1, &t), \
                                 -1)

    TS("1970-01-01T00:00:00Z", 0);
    TS("1970-01-01", 0);
    TS("2025-01-01T00:00:00Z", 1735689600);
    TS("2025-01-01t00:00:00z", 1735689600);
    TS("2025-01-01 00:00:00Z", 1735689600);
    TS("2025-01-01T00:00Z", 1735689600);
    TS("2025-01-01T02:00:00+02:00", 1735689600);
    TS("2024-12-31T19:00:00-0500", 1735689600);
    TS("2025-01-01T00:00:00.5Z", 1735689600.5);
    TS("2025-01-01T00:00:00.25+00:00", 1735689600.25);
    TS("2024-02-29T12:00:00Z", 1709208000);
    TS("1969-12-31T23:59:59Z", -1);
    TS("1900-01-01", -2208988800.0);
    TS("2000-02-29", 951782400);
    TS("2016-12-31T23:59:60Z", 1483228800);

    NTS("");
    NTS("2025");
    NTS("2025-01-01T00:00:00");
    NTS("2025-01-01T00:00");
    NTS("2025-01-01T");
    NTS("2025-01-01X00:00:00Z");
    NTS("2025-13-01");
    NTS("2025-00-01");
    NTS("2025-02-29");
    NTS("1900-02-29");
    NTS("2025-04-31");
    NTS("2025-01-00");
    NTS("2025-1-01");
    NTS("2025-01-01T24:00:00Z");
    NTS("2025-01-01T23:60:00Z");
    NTS("2025-01-01T23:00:61Z");
    NTS("2025-01-01T00:00:00.Z");
    NTS("2025-01-01T00:00:00Zjunk");
    NTS("2025-01-01T00:00:00+2");
    NTS("2025-01-01T00:00:00UTC");
    NTS("2025-01-01T00:00:00+19:00");
    NTS("+2025-01-01");
    NTS(" 2025-01-01");
    NTS("2025-01-01 ");

#undef TS
#undef NTS

    assert_int_equal(nx_tz_parse_timestamp(NULL, 10, &t), -1);
    assert_int_equal(nx_tz_days(1970, 1, 1), 0);
    assert_int_equal(nx_tz_days(2000, 3, 1), 11017);
    assert_int_equal(nx_tz_days(1969, 12, 31), -1);
}


static void
test_fixed(void **state)
{
    char      err[128];
    nx_tz_t  *tz;

    (void) state;

    tz = nx_tz_load("/nonexistent", "+05:30", err, sizeof(err));
    assert_non_null(tz);
    assert_int_equal(nx_tz_transitions(tz), 0);
    assert_int_equal(nx_tz_offset(tz, 0), 19800);
    assert_int_equal(nx_tz_offset(tz, INT64_MIN), 19800);
    assert_int_equal(nx_tz_offset(tz, INT64_MAX), 19800);
    nx_tz_free(tz);

    tz = nx_tz_load("/nonexistent", "UTC", err, sizeof(err));
    assert_non_null(tz);
    assert_int_equal(nx_tz_offset(tz, 1735689600), 0);
    nx_tz_free(tz);

    /* an IANA name needs the files */
    assert_null(nx_tz_load("/nonexistent", "Europe/Berlin", err,
                           sizeof(err)));
    assert_string_equal(err, "time zone \"Europe/Berlin\": unknown time zone");

    assert_null(nx_tz_load(NULL, "../../etc/passwd", err, sizeof(err)));
    assert_string_equal(err, "invalid time zone name");
    assert_null(nx_tz_load(NULL, NULL, err, sizeof(err)));
    assert_string_equal(err, "no time zone name");

    nx_tz_free(NULL);
    assert_int_equal(nx_tz_transitions(NULL), 0);
}


static void
test_files(void **state)
{
    char      err[256];
    nx_tz_t  *tz;

    (void) state;

    if (!have(BERLIN)) {
        skip();
    }

    /* not TZif files, or not files */
    if (access("/usr/share/zoneinfo/leapseconds", R_OK) == 0) {
        assert_null(nx_tz_load(NULL, "leapseconds", err, sizeof(err)));
        assert_string_equal(err, "time zone \"leapseconds\": not a TZif "
                            "file");
    }

    assert_null(nx_tz_load(NULL, "zone.tab", err, sizeof(err)));
    assert_string_equal(err, "invalid time zone name");

    assert_null(nx_tz_load(NULL, "Europe", err, sizeof(err)));
    assert_string_equal(err, "time zone \"Europe\": unknown time zone");

    assert_null(nx_tz_load(NULL, "Europe/Berlin/x", err, sizeof(err)));
    assert_string_equal(err, "time zone \"Europe/Berlin/x\": unknown time "
                        "zone");

    assert_null(nx_tz_load("/usr/share", "zoneinfo", err, sizeof(err)));
    assert_string_equal(err, "time zone \"zoneinfo\": unknown time zone");

    tz = nx_tz_load("/usr/share/zoneinfo/", "Europe/Berlin", err,
                    sizeof(err));
    assert_non_null(tz);
    nx_tz_free(tz);

    /* "right/" zones count leap seconds: refused */
    if (access("/usr/share/zoneinfo/right/UTC", R_OK) == 0) {
        assert_null(nx_tz_load(NULL, "right/UTC", err, sizeof(err)));
        assert_string_equal(err, "time zone \"right/UTC\": zones with leap "
                            "seconds are not supported");
    }
}


static void
test_berlin(void **state)
{
    nx_tz_t  *tz;

    (void) state;

    if (!have(BERLIN)) {
        skip();
    }

    tz = load("Europe/Berlin");

    assert_true(nx_tz_transitions(tz) > 100);

    /* local mean time before 1893-04-01 (+0:53:28) */
    assert_int_equal(nx_tz_offset(tz, ts("1850-01-01")), 3208);
    assert_int_equal(nx_tz_offset(tz, INT64_MIN), 3208);
    assert_int_equal(nx_tz_offset(tz, ts("1900-01-01")), 3600);

    /* 2025: CEST from 03-30 01:00Z to 10-26 01:00Z */
    assert_int_equal(nx_tz_offset(tz, ts("2025-03-30T00:59:59Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-03-30T01:00:00Z")), 7200);
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-26T00:59:59Z")), 7200);
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-26T01:00:00Z")), 3600);

    /* double summer time in 1947 (+3) */
    assert_int_equal(nx_tz_offset(tz, ts("1947-06-01T00:00:00Z")), 10800);

    /* past the file's table (2037), from the footer rule */
    assert_int_equal(nx_tz_offset(tz, ts("2150-03-29T00:59:59Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2150-03-29T01:00:00Z")), 7200);
    assert_int_equal(nx_tz_offset(tz, ts("2150-07-01T00:00:00Z")), 7200);
    assert_int_equal(nx_tz_offset(tz, ts("2199-12-31T00:00:00Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2200-07-01T00:00:00Z")), 7200);

    /* and after NX_TZ_YEAR_MAX, the last offset stays */
    assert_int_equal(nx_tz_offset(tz, ts("2201-07-01T00:00:00Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, INT64_MAX), 3600);

    nx_tz_free(tz);
}


static void
test_sydney(void **state)
{
    nx_tz_t  *tz;

    (void) state;

    if (!have(SYDNEY)) {
        skip();
    }

    /* southern hemisphere: DST from October to April */
    tz = load("Australia/Sydney");

    assert_int_equal(nx_tz_offset(tz, ts("2025-01-15T00:00:00Z")), 39600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-04-05T15:59:59Z")), 39600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-04-05T16:00:00Z")), 36000);
    assert_int_equal(nx_tz_offset(tz, ts("2025-07-01T00:00:00Z")), 36000);
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-04T15:59:59Z")), 36000);
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-04T16:00:00Z")), 39600);
    assert_int_equal(nx_tz_offset(tz, ts("2120-01-15T00:00:00Z")), 39600);
    assert_int_equal(nx_tz_offset(tz, ts("2120-07-01T00:00:00Z")), 36000);

    nx_tz_free(tz);
}


/* footers alone must give what the full files give, year after year */

static void
compare(const char *name, const char *footer, int64_t from, int64_t to)
{
    int64_t   t;
    nx_tz_t  *file, *rule;

    file = load(name);
    rule = rule_zone(footer);

    for (t = from; t < to; t += 3571) {
        if (nx_tz_offset(file, t) != nx_tz_offset(rule, t)) {
            fail_msg("%s at %lld: file %d, rule %d", name, (long long) t,
                     nx_tz_offset(file, t), nx_tz_offset(rule, t));
        }
    }

    nx_tz_free(rule);
    nx_tz_free(file);
}


static void
test_footer_vs_files(void **state)
{
    (void) state;

    if (!have(BERLIN) || !have(SYDNEY)) {
        skip();
    }

    compare("Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3",
            ts("1997-01-01"), ts("2200-12-31"));
    compare("Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3",
            ts("2009-01-01"), ts("2200-12-31"));
    compare("America/New_York", "EST5EDT,M3.2.0,M11.1.0",
            ts("2008-01-01"), ts("2200-12-31"));
}


static void
test_footer_forms(void **state)
{
    nx_tz_t  *tz;

    (void) state;

    /* no DST: quoted names, offsets with minutes and seconds */
    tz = rule_zone("<+03>-3");
    assert_int_equal(nx_tz_transitions(tz), 0);
    assert_int_equal(nx_tz_offset(tz, 0), 10800);
    nx_tz_free(tz);

    tz = rule_zone("<-0330>3:30");
    assert_int_equal(nx_tz_offset(tz, 0), -12600);
    nx_tz_free(tz);

    tz = rule_zone("XST-5:45:30");
    assert_int_equal(nx_tz_offset(tz, 0), 20730);
    nx_tz_free(tz);

    /* Julian days without Feb 29: J60 is March 1, also in leap years */
    tz = rule_zone("XST0XDT,J60/0,J300/0");
    assert_int_equal(nx_tz_offset(tz, ts("2024-02-29T23:59:59Z")), 0);
    assert_int_equal(nx_tz_offset(tz, ts("2024-03-01T00:00:00Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-03-01T00:00:00Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-02-28T23:59:59Z")), 0);
    /* J300 is October 27; the end is in daylight time */
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-26T22:59:59Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-26T23:00:00Z")), 0);
    nx_tz_free(tz);

    /* zero-based days count Feb 29: 59 is Feb 29 in leap years */
    tz = rule_zone("XST0XDT,59/0,299/0");
    assert_int_equal(nx_tz_offset(tz, ts("2024-02-29T00:00:00Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-02-28T23:59:59Z")), 0);
    assert_int_equal(nx_tz_offset(tz, ts("2025-03-01T00:00:00Z")), 3600);
    nx_tz_free(tz);

    /* an explicit DST offset, and times past 24h and negative (v3) */
    tz = rule_zone("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
    /* (Nuuk: 23:00 local the day before is 01:00Z, as in the EU) */
    assert_int_equal(nx_tz_offset(tz, ts("2025-03-29T12:00:00Z")), -7200);
    assert_int_equal(nx_tz_offset(tz, ts("2025-03-30T00:59:59Z")), -7200);
    assert_int_equal(nx_tz_offset(tz, ts("2025-03-30T01:00:00Z")), -3600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-26T00:59:59Z")), -3600);
    assert_int_equal(nx_tz_offset(tz, ts("2025-10-26T01:00:00Z")), -7200);
    nx_tz_free(tz);

    tz = rule_zone("XST0XDT-2,M3.5.0/167,M10.5.0");
    assert_int_equal(nx_tz_offset(tz, ts("2025-07-01T00:00:00Z")), 7200);
    assert_int_equal(nx_tz_offset(tz, ts("2025-04-05T22:59:59Z")), 0);
    assert_int_equal(nx_tz_offset(tz, ts("2025-04-05T23:00:00Z")), 7200);
    nx_tz_free(tz);

    /* DST all year: "0/0,J365/25" never returns to standard time */
    tz = rule_zone("EST5EDT,0/0,J365/25");
    assert_int_equal(nx_tz_offset(tz, ts("2025-01-01T05:00:00Z")), -14400);
    assert_int_equal(nx_tz_offset(tz, ts("2025-07-01T00:00:00Z")), -14400);
    assert_int_equal(nx_tz_offset(tz, ts("2025-12-31T23:00:00Z")), -14400);
    assert_int_equal(nx_tz_offset(tz, ts("2026-01-01T04:59:59Z")), -14400);
    assert_int_equal(nx_tz_offset(tz, ts("2026-01-01T05:00:00Z")), -14400);
    nx_tz_free(tz);
}


static void
test_footer_errors(void **state)
{
    int32_t       off0;
    tzif_t        z;
    size_t        i;
    static const char  *bad[] = {
        "EST5EDT",                      /* DST without a rule */
        "X5",                           /* name too short */
        "<X>5",
        "<+03",                         /* unterminated */
        "EST",                          /* no offset */
        "EST25",                        /* offset too big */
        "EST5EDT,M3.2.0",               /* one date */
        "EST5EDT,M13.2.0,M11.1.0",
        "EST5EDT,M3.6.0,M11.1.0",
        "EST5EDT,M3.0.0,M11.1.0",
        "EST5EDT,M3.2.7,M11.1.0",
        "EST5EDT,J0,J100",
        "EST5EDT,J366,J100",
        "EST5EDT,366,100",
        "EST5EDT,M3.2.0/168,M11.1.0",
        "EST5EDT,M3.2.0,M11.1.0junk",
        "EST5:60",
        "EST5EDT4:00:60,M3.2.0,M11.1.0",
        "<+0 3>-3",
        NULL
    };

    (void) state;

    off0 = 0;

    for (i = 0; bad[i] != NULL; i++) {
        memset(&z, 0, sizeof(z));
        z.version = '2';
        z.typecnt = 1;
        z.offs = &off0;
        z.footer = bad[i];

        bad_tzif(&z, "unsupported TZ string in TZif footer");
    }
}


static void
test_tzif_errors(void **state)
{
    char            err[128];
    size_t          n, k;
    tzif_t          z;
    nx_tz_t        *tz;
    unsigned char   buf[4096];
    int64_t         times[3] = { 100, 200, 200 };
    uint8_t         idx[3] = { 1, 0, 1 };
    int32_t         offs[2] = { 0, 3600 };

    (void) state;

    memset(&z, 0, sizeof(z));
    z.version = '2';
    z.typecnt = 2;
    z.offs = offs;
    z.timecnt = 2;
    z.times = times;
    z.idx = idx;
    z.footer = "";

    /* a valid base: two transitions, an empty footer */
    tz = parse(&z, err, sizeof(err));
    assert_non_null(tz);
    assert_int_equal(nx_tz_transitions(tz), 2);
    assert_int_equal(nx_tz_offset(tz, 99), 0);
    assert_int_equal(nx_tz_offset(tz, 100), 3600);
    assert_int_equal(nx_tz_offset(tz, 199), 3600);
    assert_int_equal(nx_tz_offset(tz, 200), 0);
    assert_int_equal(nx_tz_offset(tz, INT64_MAX), 0);
    nx_tz_free(tz);

    /* no footer at all is accepted; versions 3 and 4 too */
    z.footer = NULL;
    z.version = '3';
    tz = parse(&z, err, sizeof(err));
    assert_non_null(tz);
    nx_tz_free(tz);

    z.version = '4';
    tz = parse(&z, err, sizeof(err));
    assert_non_null(tz);
    nx_tz_free(tz);

    z.version = '2';
    z.footer = "";

    /*
     * every truncation of a valid file is refused, never read past; but
     * for the one that drops the whole footer: a file without footer is
     * accepted
     */
    n = build(buf, &z);

    for (k = 0; k < n; k++) {
        tz = nx_tz_parse_tzif(buf, k, err, sizeof(err));

        if (k == n - 2) {
            assert_non_null(tz);
            nx_tz_free(tz);
            continue;
        }

        assert_null(tz);
    }

    assert_null(nx_tz_parse_tzif(NULL, 0, err, sizeof(err)));
    assert_string_equal(err, "not a TZif file");

    z.version = '\0';
    bad_tzif(&z, "TZif version 1 is not supported");
    z.version = '2';

    z.timecnt = 3;
    bad_tzif(&z, "invalid TZif transitions");       /* 200 twice */
    times[2] = 150;
    bad_tzif(&z, "invalid TZif transitions");       /* descending */
    times[2] = 300;
    idx[2] = 2;
    bad_tzif(&z, "invalid TZif transitions");       /* no such type */
    idx[2] = 1;

    z.leapcnt = 1;
    bad_tzif(&z, "zones with leap seconds are not supported");
    z.leapcnt = 0;

    z.typecnt = 0;
    z.timecnt = 0;
    bad_tzif(&z, "invalid TZif counts");
    z.typecnt = 2;

    offs[1] = 93600;
    bad_tzif(&z, "UT offset out of range");
    offs[1] = -90000;
    bad_tzif(&z, "UT offset out of range");
    offs[1] = 3600;

    /* the footer must be "\n...\n" */
    n = build(buf, &z);
    buf[n - 1] = 'x';
    assert_null(nx_tz_parse_tzif(buf, n, err, sizeof(err)));
    assert_string_equal(err, "malformed TZif footer");

    z.footer = "";
    n = build(buf, &z);
    buf[n - 2] = 'x';
    assert_null(nx_tz_parse_tzif(buf, n, err, sizeof(err)));
    assert_string_equal(err, "malformed TZif footer");

    memcpy(buf, "TZiF", 4);
    assert_null(nx_tz_parse_tzif(buf, n, err, sizeof(err)));
    assert_string_equal(err, "not a TZif file");

    /* huge counts in the header do not overflow the size checks */
    n = build(buf, &z);
    memset(buf + 44 + 7 + 20, 0xff, 24);
    assert_null(nx_tz_parse_tzif(buf, n, err, sizeof(err)));
    assert_string_equal(err, "truncated TZif file");
}


/* transitions after the table, from the footer, and none that are
 * redundant */

static void
test_tzif_footer_after_table(void **state)
{
    char      err[128];
    tzif_t    z;
    nx_tz_t  *tz;
    int64_t   times[2];
    uint8_t   idx[2] = { 1, 0 };
    int32_t   offs[2] = { 3600, 7200 };

    (void) state;

    /* 2020 as a file would end it, then the Berlin rule */
    times[0] = ts("2020-03-29T01:00:00Z");
    times[1] = ts("2020-10-25T01:00:00Z");

    memset(&z, 0, sizeof(z));
    z.version = '2';
    z.typecnt = 2;
    z.offs = offs;
    z.timecnt = 2;
    z.times = times;
    z.idx = idx;
    z.footer = "CET-1CEST,M3.5.0,M10.5.0/3";

    tz = parse(&z, err, sizeof(err));
    assert_non_null(tz);

    /* 2 + 2 per year from 2021 to NX_TZ_YEAR_MAX */
    assert_int_equal(nx_tz_transitions(tz),
                     2 + 2 * (NX_TZ_YEAR_MAX - 2020));

    assert_int_equal(nx_tz_offset(tz, ts("2019-07-01T00:00:00Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2020-07-01T00:00:00Z")), 7200);
    assert_int_equal(nx_tz_offset(tz, ts("2021-03-28T00:59:59Z")), 3600);
    assert_int_equal(nx_tz_offset(tz, ts("2021-03-28T01:00:00Z")), 7200);
    assert_int_equal(nx_tz_offset(tz, ts("2100-07-01T00:00:00Z")), 7200);

    nx_tz_free(tz);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_berlin),
        cmocka_unit_test(test_sydney),
        cmocka_unit_test(test_footer_vs_files),
        cmocka_unit_test(test_footer_forms),
        cmocka_unit_test(test_footer_errors),
        cmocka_unit_test(test_tzif_errors),
        cmocka_unit_test(test_tzif_footer_after_table),
    };

    return cmocka_run_group_tests_name("tz", tests, NULL, NULL);
}
