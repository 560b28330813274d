/*
 * Copyright (C) Nexus authors
 *
 * nexusctl: exit codes, verb entry points and the usage helpers that the
 * verbs share with main().
 */

#ifndef NEXUSCTL_H
#define NEXUSCTL_H

#include <stdio.h>


#define CLI_OK           0      /* done */
#define CLI_FAILED       1      /* not found, duplicate, constraint, ... */
#define CLI_USAGE        2      /* bad arguments or configuration */
#define CLI_UNREACHABLE  3      /* PostgreSQL cannot be reached */


/*
 * A verb receives its own argument vector: argv[0] is the verb name,
 * options follow. It returns one of the exit codes above.
 */
typedef int (*cli_verb_pt)(int argc, char **argv);


int cli_migrate(int argc, char **argv);
int cli_create_tenant(int argc, char **argv);
int cli_list_tenants(int argc, char **argv);
int cli_create_key(int argc, char **argv);
int cli_list_keys(int argc, char **argv);
int cli_revoke_key(int argc, char **argv);
int cli_set_limits(int argc, char **argv);
int cli_show_limits(int argc, char **argv);
int cli_set_quota(int argc, char **argv);
int cli_show_quota(int argc, char **argv);
int cli_show_usage(int argc, char **argv);
int cli_set_guardrails(int argc, char **argv);
int cli_show_guardrails(int argc, char **argv);
int cli_set_budget(int argc, char **argv);
int cli_show_budget(int argc, char **argv);
int cli_set_tpm(int argc, char **argv);
int cli_set_models(int argc, char **argv);
int cli_show_models(int argc, char **argv);
int cli_audit(int argc, char **argv);
int cli_set_price(int argc, char **argv);
int cli_show_prices(int argc, char **argv);
int cli_import_prices(int argc, char **argv);
int cli_set_cost_budget(int argc, char **argv);
int cli_show_cost_budget(int argc, char **argv);
int cli_show_credits(int argc, char **argv);
int cli_grant_credits(int argc, char **argv);
int cli_load_plans(int argc, char **argv);
int cli_list_plans(int argc, char **argv);
int cli_set_plan(int argc, char **argv);
int cli_show_plan(int argc, char **argv);

/* Prints "usage: nexusctl <verb> <synopsis>" for one verb. */
void cli_verb_usage(const char *verb, FILE *f);


#endif /* NEXUSCTL_H */
