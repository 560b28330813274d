/*
 * Copyright (C) Nexus authors
 *
 * nexusctl and the audit log: the audit key, and the events of the
 * writes nexusctl makes (cli_audit_write.c), chained exactly as the
 * gateway chains its own (common/nx_audit_batch.h).
 */

#ifndef CLI_AUDIT_H
#define CLI_AUDIT_H

#include <stdint.h>

#include <libpq-fe.h>
#include <nx_audit.h>

#include "cli_db.h"


/* the actor of nexusctl's events */
#define CLI_AUDIT_ACTOR         "nexusctl"


/*
 * An event of a write: its type and a query that describes what the
 * write made, run in the write's transaction once it is done. The query
 * returns one row: the id of the tenant whose chain the event goes to (0
 * for the platform's) and the result as a JSON value.
 */
typedef struct {
    const char  *type;
    const char  *sql;
} cli_audit_event_t;


/* $1 a tenant name: its chain, and the tenant's name with the members */
#define CLI_AUDIT_TENANT(members)                                            \
    "SELECT t.id, json_build_object('tenant', t.name, " members ")"          \
    " FROM tenants t WHERE t.name = $1"

/* $1 a key prefix: its tenant's chain, and the key with the members */
#define CLI_AUDIT_KEY(members)                                               \
    "SELECT k.tenant_id, json_build_object('prefix', k.prefix,"              \
    " 'tenant', t.name, " members ") FROM api_keys k"                        \
    " JOIN tenants t ON t.id = k.tenant_id WHERE k.prefix = $1"


/* --audit-key-file, which every verb takes (cli_getopt()), or NULL */
extern const char  *cli_audit_key_path;

/* the verb running, named in the events' metadata; set by main() */
void cli_audit_command(const char *verb);

/*
 * The chain and checkpoint keys from --audit-key-file, else from the file
 * NEXUS_AUDIT_KEY_FILE names. Returns CLI_OK with *found 0 when neither
 * is set, CLI_OK with *found 1 and the keys, or prints why and returns
 * CLI_USAGE (unreadable or invalid key) or CLI_FAILED.
 */
int cli_audit_keys(uint8_t chain_key[NX_AUDIT_HASH_LEN],
    uint8_t ckpt_key[NX_AUDIT_HASH_LEN], int *found);

/*
 * Appends ev to its tenant's chain in conn's open transaction, after the
 * write it records: ev->sql runs with the n values, then the row is
 * linked from the chain's head and written by nexus_audit_append(),
 * linked again if another writer moved the head. Metadata:
 *   {"via":"nexusctl","command":<verb>,"os_user":<name>,
 *    ["sudo_user":<name>,] "result":<what ev->sql returned>}
 * redacted as the gateway redacts its own. Without an audit key the
 * write goes on unaudited and a warning says so. Returns an exit code
 * (after a message): the caller rolls back if it is not CLI_OK.
 */
int cli_audit_write(PGconn *conn, const cli_audit_event_t *ev, int n,
    const char *const *values);

/* row i of a result with an audit row's columns, seq to metadata */
void cli_audit_row_read(PGresult *res, int i, nx_audit_row_t *row);

/* cli_audit_write(), then COMMIT. Returns an exit code. */
int cli_audit_commit(PGconn *conn, const cli_audit_event_t *ev, int n,
    const char *const *values);

/*
 * A write that returns the rows it wrote (RETURNING), audited: BEGIN,
 * sql, and if it returned a row ev (with values[0], the subject, as its
 * $1) and COMMIT, else ROLLBACK: nothing was written. Returns an exit
 * code (a failure reported as what); *res is sql's result when it wrote
 * a row, for the caller to PQclear(), else NULL.
 */
int cli_audit_exec(PGconn *conn, const char *sql, int n,
    const char *const *values, const char *what,
    const cli_audit_event_t *ev, PGresult **res);

/*
 * The same for one row, as cli_db_row() runs a query: no row is
 * "<kind> \"<subject>\" not found", a row is printed by print(subject,
 * res) once committed.
 */
int cli_audit_row(PGconn *conn, const char *sql, int n,
    const char *const *values, const char *kind, const char *what,
    cli_db_print_pt print, const cli_audit_event_t *ev);


#endif /* CLI_AUDIT_H */
