/*
 * Copyright (C) Nexus authors
 *
 * nexusctl guardrails: set-guardrails and show-guardrails.
 *
 * A tenant's request guardrails live in the guardrails column of tenants,
 * a jsonb object (0016_guardrails.sql):
 * {"pii": {"mode": "redact", "kinds": ["card", "ssn"]},
 *  "max_prompt_bytes": 65536, "max_tokens": 1024}, every key optional.
 * The values are checked here before the database sees them; the column's
 * CHECK constraint (nexus_guardrails_valid) holds the same rules. An
 * UPDATE of the column fires the trigger that NOTIFYs every nginx worker,
 * so a change needs no reload.
 */

#include <stdio.h>
#include <string.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


/* what nexus_guardrails_valid() accepts */
#define CLI_GUARD_BYTES_MAX       9999999999ULL
#define CLI_GUARD_TOKENS_MAX      999999999ULL

#define CLI_GUARD_NKINDS          5
#define CLI_GUARD_NMODES          4

/* {"mode": "redact", "kinds": ["card", "ssn", "email", "phone", "iban"]} */
#define CLI_GUARD_JSON_LEN        128


/*
 * $1 is the tenant name. Setting removes the keys of $2 (a text[] of our
 * own constants), merges $3 (the limits given) and merges $4 (the pii
 * members given) into the pii object; the new guardrails come back to be
 * printed. Clearing updates only a row that has guardrails, so that a
 * no-op fires no NOTIFY.
 */

#define CLI_GUARD_COLS                                                       \
    "guardrails #>> '{pii,mode}', "                                         \
    "(SELECT string_agg(v, ',') FROM "                                      \
    "jsonb_array_elements_text(guardrails #> '{pii,kinds}') AS e(v)), "     \
    "guardrails ->> 'max_prompt_bytes', guardrails ->> 'max_tokens'"

static const char  cli_guard_set_sql[] =
    "UPDATE tenants SET guardrails = (guardrails - $2::text[]) || $3::jsonb"
    " || CASE WHEN $4::jsonb = '{}' THEN '{}'::jsonb"
    " ELSE jsonb_build_object('pii',"
    " coalesce(guardrails -> 'pii', '{}') || $4::jsonb) END "
    "WHERE name = $1 RETURNING " CLI_GUARD_COLS;

static const char  cli_guard_clear_sql[] =
    "UPDATE tenants SET guardrails = '{}' "
    "WHERE name = $1 AND guardrails <> '{}' RETURNING 1";

static const char  cli_guard_show_sql[] =
    "SELECT " CLI_GUARD_COLS " FROM tenants WHERE name = $1";

static const cli_audit_event_t  cli_guard_event = {
    "admin.guardrails.updated", CLI_AUDIT_TENANT("'guardrails', t.guardrails")
};


typedef struct {
    const char          *tenant;
    const char          *mode_arg;
    const char          *kinds_arg;
    const char          *bytes_arg;
    const char          *tokens_arg;
    int                  clear;

    const char          *mode;
    unsigned             kinds;
    unsigned long long   bytes;
    unsigned long long   tokens;
} cli_guard_args_t;


static int cli_guard_set_check(const char *verb, cli_guard_args_t *a);
static int cli_guard_kinds(const char *s, unsigned *kinds);
static int cli_guard_set(PGconn *conn, const cli_guard_args_t *a);
static int cli_guard_clear(PGconn *conn, const cli_guard_args_t *a);
static void cli_guard_print(const char *tenant, const PGresult *res);


/* "off" removes the pii guardrail; it is not a mode the column holds */
static const char  *cli_guard_modes[CLI_GUARD_NMODES] = {
    "block", "redact", "log", "off"
};

/* the order of nx_pii_kind_t's bits */
static const char  *cli_guard_kind_names[CLI_GUARD_NKINDS] = {
    "card", "ssn", "email", "phone", "iban"
};


static const struct option  cli_set_guard_opts[] = {
    { "tenant",            required_argument,  NULL,  't' },
    { "pii-mode",          required_argument,  NULL,  'm' },
    { "pii-kinds",         required_argument,  NULL,  'k' },
    { "max-prompt-bytes",  required_argument,  NULL,  'b' },
    { "max-tokens",        required_argument,  NULL,  'n' },
    { "clear",             no_argument,        NULL,  'x' },
    { NULL,                0,                  NULL,  0 }
};

static const struct option  cli_show_guard_opts[] = {
    { "tenant",            required_argument,  NULL,  't' },
    { NULL,                0,                  NULL,  0 }
};


int
cli_set_guardrails(int argc, char **argv)
{
    int               rc;
    PGconn           *conn;
    cli_guard_args_t  a;

    memset(&a, 0, sizeof(cli_guard_args_t));

    rc = cli_opt_read(argc, argv, cli_set_guard_opts,
                      (void *[]) { &a.tenant, &a.mode_arg, &a.kinds_arg,
                                   &a.bytes_arg, &a.tokens_arg, &a.clear });
    if (rc != -1) {
        return rc;
    }

    if (cli_tenant_required(argv[0], a.tenant) != 0
        || cli_guard_set_check(argv[0], &a) != 0)
    {
        return CLI_USAGE;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        return rc;
    }

    rc = a.clear ? cli_guard_clear(conn, &a) : cli_guard_set(conn, &a);

    cli_db_close(conn);

    return rc;
}


static int
cli_guard_set_check(const char *verb, cli_guard_args_t *a)
{
    int  i;

    if (a->clear) {

        if (a->mode_arg != NULL || a->kinds_arg != NULL
            || a->bytes_arg != NULL || a->tokens_arg != NULL)
        {
            cli_error("%s: --clear cannot be combined with other "
                      "guardrails", verb);
            cli_verb_usage(verb, stderr);
            return -1;
        }

        return 0;
    }

    if (a->mode_arg == NULL && a->kinds_arg == NULL
        && a->bytes_arg == NULL && a->tokens_arg == NULL)
    {
        cli_error("%s: one of --pii-mode, --pii-kinds, --max-prompt-bytes, "
                  "--max-tokens or --clear is required", verb);
        cli_verb_usage(verb, stderr);
        return -1;
    }

    if (a->mode_arg != NULL) {

        for (i = 0; i < CLI_GUARD_NMODES; i++) {
            if (strcmp(a->mode_arg, cli_guard_modes[i]) == 0) {
                break;
            }
        }

        if (i == CLI_GUARD_NMODES) {
            cli_error("invalid pii mode \"%s\": block, redact, log or off",
                      cli_quote(a->mode_arg));
            return -1;
        }

        /* from here on, the mode is one of ours */
        a->mode = cli_guard_modes[i];

        if (strcmp(a->mode, "off") == 0 && a->kinds_arg != NULL) {
            cli_error("%s: --pii-mode off cannot be combined with "
                      "--pii-kinds", verb);
            return -1;
        }
    }

    if (a->kinds_arg != NULL && cli_guard_kinds(a->kinds_arg, &a->kinds) != 0)
    {
        return -1;
    }

    if (a->bytes_arg != NULL
        && cli_opt_count("max prompt bytes", a->bytes_arg,
                         CLI_GUARD_BYTES_MAX, &a->bytes) != 0)
    {
        return -1;
    }

    if (a->tokens_arg != NULL
        && cli_opt_count("max tokens", a->tokens_arg, CLI_GUARD_TOKENS_MAX,
                         &a->tokens) != 0)
    {
        return -1;
    }

    return 0;
}


/* "card,ssn": names of cli_guard_kind_names, at least one, as a bitmask */

static int
cli_guard_kinds(const char *s, unsigned *kinds)
{
    int          i;
    size_t       len;
    const char  *p, *comma;

    *kinds = 0;

    for (p = s; /* void */ ; p = comma + 1) {
        comma = strchr(p, ',');
        len = (comma != NULL) ? (size_t) (comma - p) : strlen(p);

        for (i = 0; i < CLI_GUARD_NKINDS; i++) {
            if (strlen(cli_guard_kind_names[i]) == len
                && strncmp(p, cli_guard_kind_names[i], len) == 0)
            {
                break;
            }
        }

        if (i == CLI_GUARD_NKINDS) {
            cli_error("invalid pii kinds \"%s\": names from card, ssn, "
                      "email, phone, iban separated by ','", cli_quote(s));
            return -1;
        }

        *kinds |= 1u << i;

        if (comma == NULL) {
            return 0;
        }
    }
}


/* The fields given are merged into the guardrails; the others are kept. */

static int
cli_guard_set(PGconn *conn, const cli_guard_args_t *a)
{
    int          i;
    char         top[CLI_GUARD_JSON_LEN], pii[CLI_GUARD_JSON_LEN];
    size_t       n;
    const char  *sep, *values[4];

    /* validated numbers and our own strings: nothing is spliced in */

    n = 0;
    top[n++] = '{';
    sep = "";

    if (a->bytes_arg != NULL) {
        n += (size_t) snprintf(top + n, sizeof(top) - n,
                               "%s\"max_prompt_bytes\": %llu", sep, a->bytes);
        sep = ", ";
    }

    if (a->tokens_arg != NULL) {
        n += (size_t) snprintf(top + n, sizeof(top) - n,
                               "%s\"max_tokens\": %llu", sep, a->tokens);
    }

    snprintf(top + n, sizeof(top) - n, "}");

    n = 0;
    pii[n++] = '{';
    sep = "";

    if (a->mode != NULL && strcmp(a->mode, "off") != 0) {
        n += (size_t) snprintf(pii + n, sizeof(pii) - n, "\"mode\": \"%s\"",
                               a->mode);
        sep = ", ";
    }

    if (a->kinds_arg != NULL) {
        n += (size_t) snprintf(pii + n, sizeof(pii) - n, "%s\"kinds\": [",
                               sep);
        sep = "";

        for (i = 0; i < CLI_GUARD_NKINDS; i++) {
            if (a->kinds & (1u << i)) {
                n += (size_t) snprintf(pii + n, sizeof(pii) - n, "%s\"%s\"",
                                       sep, cli_guard_kind_names[i]);
                sep = ", ";
            }
        }

        n += (size_t) snprintf(pii + n, sizeof(pii) - n, "]");
    }

    snprintf(pii + n, sizeof(pii) - n, "}");

    values[0] = a->tenant;
    values[1] = (a->mode != NULL && strcmp(a->mode, "off") == 0)
                ? "{pii}" : "{}";
    values[2] = top;
    values[3] = pii;

    return cli_audit_row(conn, cli_guard_set_sql, 4, values, "tenant",
                         "cannot set guardrails", cli_guard_print,
                         &cli_guard_event);
}


static int
cli_guard_clear(PGconn *conn, const cli_guard_args_t *a)
{
    return cli_tenant_clear(conn, cli_guard_clear_sql, a->tenant,
                            "guardrails", &cli_guard_event);
}


/*
 * One row of CLI_GUARD_COLS. A pii guardrail without kinds checks every
 * kind. A valid tenant name needs no quoting.
 */

static void
cli_guard_print(const char *tenant, const PGresult *res)
{
    if (PQgetisnull(res, 0, 0) && PQgetisnull(res, 0, 2)
        && PQgetisnull(res, 0, 3))
    {
        printf("guardrails of tenant %s: none\n", tenant);
        return;
    }

    printf("guardrails of tenant %s: pii_mode=%s pii_kinds=%s "
           "max_prompt_bytes=%s max_tokens=%s\n",
           tenant, cli_db_value(res, 0, "off"),
           PQgetisnull(res, 0, 0) ? "none" : cli_db_value(res, 1, "all"),
           cli_db_value(res, 2, "none"), cli_db_value(res, 3, "none"));
}



int
cli_show_guardrails(int argc, char **argv)
{
    int               rc;
    cli_guard_args_t  a;

    memset(&a, 0, sizeof(cli_guard_args_t));

    rc = cli_opt_read(argc, argv, cli_show_guard_opts,
                      (void *[]) { &a.tenant });
    if (rc != -1) {
        return rc;
    }

    if (cli_tenant_required(argv[0], a.tenant) != 0) {
        return CLI_USAGE;
    }

    return cli_db_show(cli_guard_show_sql, a.tenant, "tenant", "guardrails",
                       cli_guard_print);
}
