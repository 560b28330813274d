/*
 * Copyright (C) Nexus authors
 *
 * nexusctl: the operator's command-line tool. This file holds main(), the
 * usage text and the dispatch to one handler per verb; each verb lives in
 * its own file (cli_migrate.c, cli_tenant.c, cli_key.c, cli_limits.c,
 * cli_quota.c, cli_usage.c, cli_models.c, cli_audit.c, cli_budget.c,
 * cli_cost.c, cli_credits.c, cli_plan.c, cli_guard.c).
 */

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nexusctl.h"
#include "cli_audit.h"
#include "cli_out.h"


typedef struct {
    const char   *name;
    cli_verb_pt   handler;
    const char   *synopsis;
    const char   *summary;
} cli_verb_t;


static void cli_std_fds(void);
static const cli_verb_t *cli_verb_find(const char *name);
static void cli_usage(FILE *f);


static const cli_verb_t  cli_verbs[] = {

    { "migrate", cli_migrate,
      "[--dir DIR]",
      "apply pending database migrations" },

    { "create-tenant", cli_create_tenant,
      "--name NAME [--platform] [--allow-all-models]",
      "create a tenant" },

    { "list-tenants", cli_list_tenants,
      "",
      "list tenants" },

    { "create-key", cli_create_key,
      "--tenant NAME --name NAME [--role reader|editor|admin]\n"
      "                           [--scopes S1,S2] [--expires-in DURATION]",
      "create an API key and print it once" },

    { "list-keys", cli_list_keys,
      "--tenant NAME",
      "list the API keys of a tenant" },

    { "revoke-key", cli_revoke_key,
      "--prefix PREFIX",
      "revoke an API key" },

    { "set-limits", cli_set_limits,
      "(--tenant NAME | --prefix PREFIX) --class CLASS\n"
      "                           --rps N [--burst N]\n"
      "       nexusctl set-limits (--tenant NAME | --prefix PREFIX)"
      " [--class CLASS]\n"
      "                           --clear",
      "set or clear the rate limits of a tenant or a key" },

    { "show-limits", cli_show_limits,
      "(--tenant NAME | --prefix PREFIX)",
      "show the rate limit overrides of a tenant or a key" },

    { "set-quota", cli_set_quota,
      "--tenant NAME [--daily N] [--monthly N]\n"
      "                          [--soft-ratio R] [--mode enforce|observe]\n"
      "                          [--no-daily] [--no-monthly]\n"
      "       nexusctl set-quota --tenant NAME --clear",
      "set or clear the request quota of a tenant" },

    { "show-quota", cli_show_quota,
      "--tenant NAME",
      "show the request quota of a tenant" },

    { "set-budget", cli_set_budget,
      "--prefix PREFIX [--daily N] [--monthly N] [--total N]\n"
      "                           [--no-daily] [--no-monthly] [--no-total]\n"
      "       nexusctl set-budget --prefix PREFIX --clear",
      "set or clear the token budget of a key" },

    { "show-budget", cli_show_budget,
      "--prefix PREFIX",
      "show the token budget and tokens per minute of a key" },

    { "set-tpm", cli_set_tpm,
      "(--tenant NAME | --prefix PREFIX) (--tpm N | --clear)",
      "set or clear the tokens per minute of a tenant or a key" },

    { "set-guardrails", cli_set_guardrails,
      "--tenant NAME [--pii-mode block|redact|log|off]\n"
      "                           [--pii-kinds K1,K2] [--max-prompt-bytes N]\n"
      "                           [--max-tokens N]\n"
      "       nexusctl set-guardrails --tenant NAME --clear",
      "set or clear the request guardrails of a tenant" },

    { "show-guardrails", cli_show_guardrails,
      "--tenant NAME",
      "show the request guardrails of a tenant" },

    { "show-usage", cli_show_usage,
      "--tenant NAME [--period day|month] [--json]",
      "show the usage of a tenant this UTC day or month" },

    { "set-models", cli_set_models,
      "--tenant NAME [--models M1,M2]\n"
      "                           [--allow-all | --no-allow-all]\n"
      "       nexusctl set-models --prefix PREFIX"
      " (--models M1,M2 | --inherit)",
      "set the models a tenant or a key may use" },

    { "show-models", cli_show_models,
      "(--tenant NAME | --prefix PREFIX)",
      "show the models of a tenant or a key" },

    { "set-price", cli_set_price,
      "--model MODEL --input USD --output USD\n"
      "                           [--effective-from TIME]",
      "add a price version of a model (dollars per 1K tokens)" },

    { "show-prices", cli_show_prices,
      "[--model MODEL] [--all]",
      "show the current and scheduled prices (--all: past ones too)" },

    { "import-prices", cli_import_prices,
      "--file FILE",
      "add the prices of a price list such as config/pricing.json" },

    { "set-cost-budget", cli_set_cost_budget,
      "--tenant NAME [--monthly-usd N | --no-budget]\n"
      "                           [--warn-ratio R] [--mode block|degrade]\n"
      "                           [--degrade-model MODEL]\n"
      "                           [--allow-unpriced | --no-allow-unpriced]",
      "set the monthly cost budget of a tenant" },

    { "show-cost-budget", cli_show_cost_budget,
      "--tenant NAME",
      "show the cost budget of a tenant" },

    { "show-credits", cli_show_credits,
      "--tenant NAME [--limit N]",
      "show a tenant's credit ledger as PostgreSQL has it" },

    { "grant-credits", cli_grant_credits,
      "--tenant NAME --amount USD --reason TEXT\n"
      "                           [--url URL] [--key-file FILE]"
      " [--idempotency-key KEY]",
      "grant credits to a tenant through the gateway's admin API" },

    { "audit", cli_audit,
      "verify [--tenant NAME] [--since DURATION|TIME]",
      "verify the audit log's chains and checkpoints" },

    { "load-plans", cli_load_plans,
      "[--file FILE]",
      "replace the plan catalog (default: the built-in one)" },

    { "list-plans", cli_list_plans,
      "",
      "list the plans of the catalog" },

    { "set-plan", cli_set_plan,
      "--tenant NAME (--plan PLAN | --default)",
      "put a tenant on a plan, or back on the default plan" },

    { "show-plan", cli_show_plan,
      "--tenant NAME [--json]",
      "show a tenant's plan and effective features" },

    { NULL, NULL, NULL, NULL }
};


int
main(int argc, char **argv)
{
    const cli_verb_t  *v;

    cli_std_fds();

    /* a closed pipe must fail a write, not kill us mid-transaction */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        cli_usage(stderr);
        return CLI_USAGE;
    }

    if (strcmp(argv[1], "help") == 0
        || strcmp(argv[1], "--help") == 0
        || strcmp(argv[1], "-h") == 0)
    {
        if (argc > 2 && strcmp(argv[1], "help") == 0) {
            v = cli_verb_find(argv[2]);
            if (v == NULL) {
                cli_error("unknown command \"%s\"", cli_quote(argv[2]));
                return CLI_USAGE;
            }

            cli_verb_usage(v->name, stdout);
            return CLI_OK;
        }

        cli_usage(stdout);
        return CLI_OK;
    }

    v = cli_verb_find(argv[1]);
    if (v == NULL) {
        cli_error("unknown command \"%s\" (see \"nexusctl help\")",
                  cli_quote(argv[1]));
        return CLI_USAGE;
    }

    cli_audit_command(v->name);

    return v->handler(argc - 1, argv + 1);
}


void
cli_verb_usage(const char *verb, FILE *f)
{
    const cli_verb_t  *v;

    v = cli_verb_find(verb);
    if (v == NULL) {
        return;
    }

    fprintf(f, "usage: nexusctl %s%s%s\n", v->name,
            v->synopsis[0] ? " " : "", v->synopsis);
}


/*
 * If nexusctl is started with fd 0, 1 or 2 closed, the database socket
 * would take that number and printf() would write into it: a new key
 * would go to the server instead of the operator. Plug the gaps with
 * /dev/null opened read-only, so that writing output fails (and
 * create-key rolls back) rather than silently vanishing.
 */

static void
cli_std_fds(void)
{
    int  fd;

    for (fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1) {
            if (open("/dev/null", O_RDONLY) != fd) {
                _exit(CLI_USAGE);
            }
        }
    }
}


static const cli_verb_t *
cli_verb_find(const char *name)
{
    const cli_verb_t  *v;

    for (v = cli_verbs; v->name != NULL; v++) {
        if (strcmp(v->name, name) == 0) {
            return v;
        }
    }

    return NULL;
}


static void
cli_usage(FILE *f)
{
    const cli_verb_t  *v;

    fprintf(f, "usage: nexusctl <command> [options]\n\ncommands:\n");

    for (v = cli_verbs; v->name != NULL; v++) {
        fprintf(f, "  %-14s %s\n", v->name, v->summary);
    }

    fprintf(f,
        "\n"
        "Run \"nexusctl help <command>\" or \"nexusctl <command> --help\""
        " for its options.\n"
        "\n"
        "environment:\n"
        "  NEXUS_DATABASE_URL      libpq connection string or URI"
        " (required)\n"
        "  NEXUS_KEY_PEPPER_FILE   file holding the key pepper"
        " (create-key)\n"
        "  NEXUS_AUDIT_KEY_FILE    file holding the audit key (audit"
        " verify, and the\n"
        "                          audit events of every write;"
        " --audit-key-file FILE,\n"
        "                          which every command takes, overrides"
        " it)\n"
        "  NEXUS_MIGRATIONS_DIR    migrations directory (migrate)\n"
        "\n"
        "exit status: 0 ok, 1 operation failed, 2 usage or configuration"
        " error,\n"
        "             3 database unreachable\n");
}
