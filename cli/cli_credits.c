/*
 * Copyright (C) Nexus authors
 *
 * nexusctl grant-credits: a credit grant, through the gateway's admin API
 * (POST /v1/admin/credits/{tenant}/grant).
 *
 * A balance lives in Redis, where every node admits calls against it and
 * deducts what they cost; the gateway enforces the cap of a grant and the
 * daily cap of an admin key in the same Lua script as the grant, appends
 * the ledger entry and writes the audit event.  So nexusctl does not grant
 * anything itself: it asks the gateway with an admin key, and the grant is
 * exactly the endpoint's, caps, ledger and audit event included.
 *
 * Every grant carries an Idempotency-Key, made here and printed, or given
 * with --idempotency-key: retried with the same key, a grant is answered
 * again and never made twice (for nexus_idempotency_ttl, 24 hours).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nx_json.h>
#include <nx_money.h>
#include <nx_plan.h>

#include "nexusctl.h"
#include "cli_http.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_tenant.h"


/* what the endpoint accepts as a reason */
#define CLI_CREDITS_REASON_MIN    10
#define CLI_CREDITS_REASON_MAX    500


static const struct option  cli_grant_credits_opts[] = {
    { "tenant",           required_argument,  NULL,  'n' },
    { "amount",           required_argument,  NULL,  'a' },
    { "reason",           required_argument,  NULL,  'r' },
    { "url",              required_argument,  NULL,  'u' },
    { "key-file",         required_argument,  NULL,  'k' },
    { "idempotency-key",  required_argument,  NULL,  'i' },
    { NULL,               0,                  NULL,  0 }
};


/*
 * grant-credits --tenant T --amount USD --reason TEXT [--url URL]
 *     [--key-file FILE] [--idempotency-key KEY]
 */

int
cli_grant_credits(int argc, char **argv)
{
    int                c, rc;
    char              *body, *p, path[128], key[CLI_HTTP_IDEM_LEN + 1];
    size_t             len;
    int64_t            amount;
    cli_http_t         h;
    const char        *tenant, *amount_arg, *reason, *url, *key_file;
    const char        *idem;
    cli_http_reply_t   reply;

    tenant = NULL;
    amount_arg = NULL;
    reason = NULL;
    url = NULL;
    key_file = NULL;
    idem = NULL;

    while ((c = cli_getopt(argc, argv, cli_grant_credits_opts)) != -1) {

        switch (c) {

        case 'n':
            tenant = optarg;
            break;

        case 'a':
            amount_arg = optarg;
            break;

        case 'r':
            reason = optarg;
            break;

        case 'u':
            url = optarg;
            break;

        case 'k':
            key_file = optarg;
            break;

        case 'i':
            idem = optarg;
            break;

        default:
            return cli_opt_usage(argv[0], c);
        }
    }

    if (cli_opt_end(argc, argv) != 0
        || cli_tenant_required(argv[0], tenant) != 0)
    {
        return CLI_USAGE;
    }

    if (amount_arg == NULL || reason == NULL) {
        cli_error("%s: --amount and --reason are required", argv[0]);
        cli_verb_usage(argv[0], stderr);
        return CLI_USAGE;
    }

    /* the gateway checks them again, with its caps */

    if (nx_money_parse(amount_arg, strlen(amount_arg), NX_MONEY_MICRO,
                       INT64_MAX / 4, &amount)
        != 0 || amount == 0)
    {
        cli_error("invalid amount \"%s\": dollars above 0, with at most 6 "
                  "decimals", cli_quote(amount_arg));
        return CLI_USAGE;
    }

    if (strlen(reason) < CLI_CREDITS_REASON_MIN
        || strlen(reason) > CLI_CREDITS_REASON_MAX)
    {
        cli_error("%s: --reason must say why, in 10 to 500 characters",
                  argv[0]);
        return CLI_USAGE;
    }

    if (idem != NULL && nx_idempotency_key_valid(idem, strlen(idem)) != 0) {
        cli_error("invalid idempotency key: 1 to 128 printable ASCII "
                  "characters");
        return CLI_USAGE;
    }

    rc = cli_http_init(&h, url, key_file);
    if (rc != CLI_OK) {
        return rc;
    }

    if (idem == NULL) {
        if (cli_http_idem_key(key) != 0) {
            cli_error("no randomness for an idempotency key");
            cli_http_done(&h);
            return CLI_FAILED;
        }

        idem = key;

        /* said first: a grant cut short is retried with it */
        cli_error("grant-credits: idempotency key %s (to retry this grant "
                  "safely: --idempotency-key %s)", idem, idem);
    }

    /* an amount checked above, a reason escaped, a valid tenant name */

    len = sizeof("{\"amount_usd\":\"\",\"reason\":\"\"}") + strlen(amount_arg)
          + nx_json_escape_len(reason, strlen(reason));

    body = malloc(len);
    if (body == NULL) {
        cli_error("out of memory");
        cli_http_done(&h);
        return CLI_FAILED;
    }

    p = body + snprintf(body, len, "{\"amount_usd\":\"%s\",\"reason\":\"",
                        amount_arg);
    p += nx_json_escape(p, reason, strlen(reason));
    snprintf(p, len - (p - body), "\"}");

    snprintf(path, sizeof(path), "/v1/admin/credits/%s/grant", tenant);

    rc = cli_http_request(&h, "POST", path, body, idem, &reply);

    free(body);
    cli_http_done(&h);

    if (rc != CLI_OK) {
        cli_error("grant-credits: the grant may or may not have been made: "
                  "retry with --idempotency-key %s", idem);
        return rc;
    }

    if (reply.status != 200) {
        rc = cli_http_fail(&reply);

        if (rc == CLI_UNREACHABLE) {
            cli_error("grant-credits: retry with --idempotency-key %s",
                      idem);
        }

        cli_http_reply_free(&reply);
        return rc;
    }

    printf("granted $%s to tenant %s: balance $%s -> $%s, transaction %s%s\n",
           cli_http_member(&reply, "amount_usd"), tenant,
           cli_http_member(&reply, "balance_before_usd"),
           cli_http_member(&reply, "balance_after_usd"),
           cli_http_member(&reply, "transaction_id"),
           reply.replayed ? " (a retry: granted once, earlier)" : "");

    printf("granted today by this key: $%s of $%s\n",
           cli_http_member(&reply, "granted_today_usd"),
           cli_http_member(&reply, "daily_limit_usd"));

    cli_http_reply_free(&reply);

    return (cli_flush() == 0) ? CLI_OK : CLI_FAILED;
}
