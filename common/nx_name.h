/*
 * Copyright (C) Nexus authors
 *
 * Validation of identifiers chosen by operators.
 *
 * Like nx_scopes_valid(), the two name validators return 0 when the value
 * is valid and -1 otherwise (test with "!= 0", not with "!").
 */

#ifndef NX_NAME_H
#define NX_NAME_H

#include <stddef.h>

/* Tenant names: 1..63 of [a-z0-9_-], starting with [a-z0-9]. */
int nx_tenant_name_valid(const char *s, size_t len);

/* The same rule with another maximum length (plan ids, for one). */
int nx_ident_valid(const char *s, size_t len, size_t max);

/* Key names: 1..128 printable ASCII characters (0x20..0x7e). */
int nx_key_name_valid(const char *s, size_t len);

/* Roles: "reader", "editor" or "admin" (exact, lowercase). Returns the
 * role index 0..2 or -1. nx_role_name() maps an index back to its name,
 * NULL for an index outside 0..2. */
int nx_role_parse(const char *s, size_t len);
const char *nx_role_name(int role);

/*
 * Scopes: a comma-separated list of 0..32 scopes, each 1..64 of
 * [a-z0-9_:.*-]. Returns 0 if valid, -1 otherwise.
 */
int nx_scopes_valid(const char *s, size_t len);

#endif /* NX_NAME_H */
