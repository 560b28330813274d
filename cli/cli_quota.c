/*
 * Copyright (C) Nexus authors
 *
 * nexusctl quotas: set-quota and show-quota.
 *
 * A tenant's request quota lives in the quota column of tenants, a jsonb
 * object: {"daily": 1000, "monthly": 20000, "soft_ratio": 0.8,
 * "mode": "enforce"}, every key optional. The values are checked here
 * before the database sees them; the column's CHECK constraint
 * (nexus_quota_valid) holds the same rules. An UPDATE of the column fires
 * the trigger that NOTIFYs every nginx worker, so a change needs no reload.
 */

#include <stdio.h>
#include <string.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


/* what nexus_quota_valid() accepts */
#define CLI_QUOTA_CAP_MAX         999999999999ULL

/*
 * The gateway reads the soft ratio in thousandths (nexus_quota_text), so
 * a finer one is refused rather than silently rounded.
 */
#define CLI_QUOTA_RATIO_DIGITS    3
#define CLI_QUOTA_RATIO_ONE       1000

/* "0.125" and its NUL */
#define CLI_QUOTA_RATIO_LEN       8

/* {"daily": N, "monthly": N, "soft_ratio": 0.125, "mode": "observe"} */
#define CLI_QUOTA_JSON_LEN        128

/* what the gateway assumes for a key that is not set */
#define CLI_QUOTA_RATIO_DEFAULT   "0.8"
#define CLI_QUOTA_MODE_DEFAULT    "enforce"

#define CLI_QUOTA_NMODES          2


/*
 * $1 is the tenant name. Setting removes the keys of $2 (a text[] of our
 * own constants) and merges $3, the fields given; the new quota comes
 * back to be printed. Clearing updates only a row that has a quota, so
 * that a no-op fires no NOTIFY.
 */

#define CLI_QUOTA_COLS                                                       \
    "quota ->> 'daily', quota ->> 'monthly', quota ->> 'soft_ratio', "      \
    "quota ->> 'mode'"

static const char  cli_quota_set_sql[] =
    "UPDATE tenants SET quota = (quota - $2::text[]) || $3::jsonb "
    "WHERE name = $1 RETURNING " CLI_QUOTA_COLS;

static const char  cli_quota_clear_sql[] =
    "UPDATE tenants SET quota = '{}' "
    "WHERE name = $1 AND quota <> '{}' RETURNING 1";

static const char  cli_quota_show_sql[] =
    "SELECT " CLI_QUOTA_COLS " FROM tenants WHERE name = $1";

/* as PATCH /v1/admin/quotas/{tenant} records it */
static const cli_audit_event_t  cli_quota_event = {
    "admin.quota.updated", CLI_AUDIT_TENANT("'quota', t.quota")
};


typedef struct {
    const char          *tenant;
    const char          *daily_arg;
    const char          *monthly_arg;
    const char          *ratio_arg;
    const char          *mode_arg;
    int                  no_daily;
    int                  no_monthly;
    int                  clear;

    unsigned long long   daily;
    unsigned long long   monthly;
    char                 ratio[CLI_QUOTA_RATIO_LEN];
    const char          *mode;
} cli_quota_args_t;


static int cli_quota_set_check(const char *verb, cli_quota_args_t *a);
static int cli_quota_ratio(const char *s, char *ratio);
static int cli_quota_set(PGconn *conn, const cli_quota_args_t *a);
static int cli_quota_clear(PGconn *conn, const cli_quota_args_t *a);
static void cli_quota_print(const char *tenant, const PGresult *res);


static const char  *cli_quota_modes[CLI_QUOTA_NMODES] = {
    "enforce", "observe"
};


static const struct option  cli_set_quota_opts[] = {
    { "tenant",       required_argument,  NULL,  't' },
    { "daily",        required_argument,  NULL,  'd' },
    { "monthly",      required_argument,  NULL,  'm' },
    { "soft-ratio",   required_argument,  NULL,  'r' },
    { "mode",         required_argument,  NULL,  'o' },
    { "no-daily",     no_argument,        NULL,  'D' },
    { "no-monthly",   no_argument,        NULL,  'M' },
    { "clear",        no_argument,        NULL,  'x' },
    { NULL,           0,                  NULL,  0 }
};

static const struct option  cli_show_quota_opts[] = {
    { "tenant",       required_argument,  NULL,  't' },
    { NULL,           0,                  NULL,  0 }
};


int
cli_set_quota(int argc, char **argv)
{
    int               rc;
    PGconn           *conn;
    cli_quota_args_t  a;

    memset(&a, 0, sizeof(cli_quota_args_t));

    rc = cli_opt_read(argc, argv, cli_set_quota_opts,
                      (void *[]) { &a.tenant, &a.daily_arg, &a.monthly_arg,
                                   &a.ratio_arg, &a.mode_arg, &a.no_daily,
                                   &a.no_monthly, &a.clear });
    if (rc != -1) {
        return rc;
    }

    if (cli_tenant_required(argv[0], a.tenant) != 0
        || cli_quota_set_check(argv[0], &a) != 0)
    {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = a.clear ? cli_quota_clear(conn, &a) : cli_quota_set(conn, &a);

    cli_db_close(conn);

    return rc;
}


static int
cli_quota_set_check(const char *verb, cli_quota_args_t *a)
{
    int          i;
    const char  *other;

    if (a->clear) {

        if (a->daily_arg != NULL) {
            other = "--daily";

        } else if (a->monthly_arg != NULL) {
            other = "--monthly";

        } else if (a->ratio_arg != NULL) {
            other = "--soft-ratio";

        } else if (a->mode_arg != NULL) {
            other = "--mode";

        } else if (a->no_daily) {
            other = "--no-daily";

        } else if (a->no_monthly) {
            other = "--no-monthly";

        } else {
            return 0;
        }

        cli_error("%s: --clear cannot be combined with %s", verb, other);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->daily_arg != NULL && a->no_daily) {
        cli_error("%s: --daily cannot be combined with --no-daily", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->monthly_arg != NULL && a->no_monthly) {
        cli_error("%s: --monthly cannot be combined with --no-monthly", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->daily_arg == NULL && a->monthly_arg == NULL
        && a->ratio_arg == NULL && a->mode_arg == NULL
        && !a->no_daily && !a->no_monthly)
    {
        cli_error("%s: one of --daily, --monthly, --soft-ratio, --mode, "
                  "--no-daily, --no-monthly or --clear is required", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->daily_arg != NULL
        && cli_opt_count("daily quota", a->daily_arg, CLI_QUOTA_CAP_MAX,
                         &a->daily) != 0)
    {
        return -1;
    }

    if (a->monthly_arg != NULL
        && cli_opt_count("monthly quota", a->monthly_arg,
                         CLI_QUOTA_CAP_MAX, &a->monthly) != 0)
    {
        return -1;
    }

    if (a->ratio_arg != NULL && cli_quota_ratio(a->ratio_arg, a->ratio) != 0)
    {
        return -1;
    }

    if (a->mode_arg != NULL) {

        for (i = 0; i < CLI_QUOTA_NMODES; i++) {
            if (strcmp(a->mode_arg, cli_quota_modes[i]) == 0) {
                break;
            }
        }

        if (i == CLI_QUOTA_NMODES) {
            cli_error("invalid mode \"%s\": enforce or observe",
                      cli_quote(a->mode_arg));
            return -1;
        }

        /* from here on, the mode is one of ours */
        a->mode = cli_quota_modes[i];
    }

    return 0;
}


/*
 * A decimal above 0 and at most 1, in thousandths: "0.8", "0.75", "1",
 * "1.0", "0.800". Digits, at most one dot with digits on both sides; no
 * sign, exponent or spaces. The JSON number text sent to the database is
 * written here from the digits ("0.8", "1"), never copied from the
 * command line.
 */

static int
cli_quota_ratio(const char *s, char *ratio)
{
    size_t    i, n;
    unsigned  whole, frac, v;

    i = 0;
    whole = 0;
    frac = 0;

    if (s[0] < '0' || s[0] > '9') {
        goto invalid;
    }

    for ( /* void */ ; s[i] >= '0' && s[i] <= '9'; i++) {

        whole = whole * 10 + (unsigned) (s[i] - '0');

        if (whole > 1) {
            goto invalid;
        }
    }

    n = 0;

    if (s[i] == '.') {
        i++;

        if (s[i] < '0' || s[i] > '9') {
            goto invalid;
        }

        for ( /* void */ ; s[i] >= '0' && s[i] <= '9'; i++, n++) {

            if (n < CLI_QUOTA_RATIO_DIGITS) {
                frac = frac * 10 + (unsigned) (s[i] - '0');

            } else if (s[i] != '0') {
                goto invalid;
            }
        }
    }

    if (s[i] != '\0') {
        goto invalid;
    }

    for ( /* void */ ; n < CLI_QUOTA_RATIO_DIGITS; n++) {
        frac *= 10;
    }

    v = whole * CLI_QUOTA_RATIO_ONE + frac;

    if (v == 0 || v > CLI_QUOTA_RATIO_ONE) {
        goto invalid;
    }

    if (v == CLI_QUOTA_RATIO_ONE) {
        memcpy(ratio, "1", sizeof("1"));
        return 0;
    }

    /* "0.800" less its trailing zeros */

    snprintf(ratio, CLI_QUOTA_RATIO_LEN, "0.%03u", v);

    for (n = strlen(ratio); ratio[n - 1] == '0'; n--) {
        ratio[n - 1] = '\0';
    }

    return 0;

invalid:

    cli_error("invalid soft ratio \"%s\": a number above 0 and at most 1, "
              "with up to 3 decimals (such as 0.8)", cli_quote(s));
    return -1;
}


/* The fields given are merged into the quota; the others are kept. */

static int
cli_quota_set(PGconn *conn, const cli_quota_args_t *a)
{
    char         json[CLI_QUOTA_JSON_LEN];
    size_t       n;
    const char  *sep, *values[3];

    /* validated numbers and our own strings: nothing is spliced in */

    n = 0;
    json[n++] = '{';
    sep = "";

    if (a->daily_arg != NULL) {
        n += (size_t) snprintf(json + n, sizeof(json) - n,
                               "%s\"daily\": %llu", sep, a->daily);
        sep = ", ";
    }

    if (a->monthly_arg != NULL) {
        n += (size_t) snprintf(json + n, sizeof(json) - n,
                               "%s\"monthly\": %llu", sep, a->monthly);
        sep = ", ";
    }

    if (a->ratio_arg != NULL) {
        n += (size_t) snprintf(json + n, sizeof(json) - n,
                               "%s\"soft_ratio\": %s", sep, a->ratio);
        sep = ", ";
    }

    if (a->mode_arg != NULL) {
        n += (size_t) snprintf(json + n, sizeof(json) - n,
                               "%s\"mode\": \"%s\"", sep, a->mode);
    }

    snprintf(json + n, sizeof(json) - n, "}");

    values[0] = a->tenant;

    if (a->no_daily && a->no_monthly) {
        values[1] = "{daily,monthly}";

    } else if (a->no_daily) {
        values[1] = "{daily}";

    } else if (a->no_monthly) {
        values[1] = "{monthly}";

    } else {
        values[1] = "{}";
    }

    values[2] = json;

    return cli_audit_row(conn, cli_quota_set_sql, 3, values, "tenant",
                         "cannot set quota", cli_quota_print,
                         &cli_quota_event);
}


static int
cli_quota_clear(PGconn *conn, const cli_quota_args_t *a)
{
    return cli_tenant_clear(conn, cli_quota_clear_sql, a->tenant, "quota",
                            &cli_quota_event);
}


/*
 * One row of CLI_QUOTA_COLS. A quota with no key at all is "none"; a cap
 * that is not set is "none" too, and the soft ratio and the mode that are
 * not set are shown as the gateway's defaults. A valid tenant name needs
 * no quoting.
 */

static void
cli_quota_print(const char *tenant, const PGresult *res)
{
    if (PQgetisnull(res, 0, 0) && PQgetisnull(res, 0, 1)
        && PQgetisnull(res, 0, 2) && PQgetisnull(res, 0, 3))
    {
        printf("quota of tenant %s: none\n", tenant);
        return;
    }

    printf("quota of tenant %s: daily=%s monthly=%s soft_ratio=%s mode=%s\n",
           tenant, cli_db_value(res, 0, "none"),
           cli_db_value(res, 1, "none"),
           cli_db_value(res, 2, CLI_QUOTA_RATIO_DEFAULT),
           cli_db_value(res, 3, CLI_QUOTA_MODE_DEFAULT));
}



int
cli_show_quota(int argc, char **argv)
{
    int               rc;
    cli_quota_args_t  a;

    memset(&a, 0, sizeof(cli_quota_args_t));

    rc = cli_opt_read(argc, argv, cli_show_quota_opts,
                      (void *[]) { &a.tenant });
    if (rc != -1) {
        return rc;
    }

    if (cli_tenant_required(argv[0], a.tenant) != 0) {
        return CLI_USAGE;
    }

    return cli_db_show(cli_quota_show_sql, a.tenant, "tenant", "quota",
                       cli_quota_print);
}
