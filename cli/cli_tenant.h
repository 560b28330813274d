/*
 * Copyright (C) Nexus authors
 *
 * nexusctl tenants: what other verbs need to know about them.
 */

#ifndef CLI_TENANT_H
#define CLI_TENANT_H

#include <libpq-fe.h>

#include "cli_audit.h"


typedef struct {
    char  id[24];               /* bigint as text, as PostgreSQL prints it */
    int   active;               /* status = 'active' */
} cli_tenant_t;


/*
 * Validates the tenant name given with --tenant and finds the tenant.
 * Returns CLI_OK and fills t, or prints why and returns the exit code:
 * CLI_USAGE for an invalid name, CLI_FAILED for an unknown tenant,
 * CLI_FAILED or CLI_UNREACHABLE if the query failed.
 */
int cli_tenant_find(PGconn *conn, const char *name, cli_tenant_t *t);

/* Validates a tenant name; prints why and returns -1 if it is invalid. */
int cli_tenant_name_check(const char *name);

/*
 * A verb's --tenant, which it requires: given and a valid name.  Returns
 * 0, or prints why (with the verb's usage when it is missing) and -1.
 */
int cli_tenant_required(const char *verb, const char *name);

/*
 * Clears a tenant setting with sql ($1 the tenant, a row back when there
 * was something to clear), with its audit event ev (cli_audit.h), and
 * prints "<what> of tenant T: cleared", or ": none" when the tenant had
 * none.  Returns the exit code.
 */
int cli_tenant_clear(PGconn *conn, const char *sql, const char *name,
    const char *what, const cli_audit_event_t *ev);


#endif /* CLI_TENANT_H */
