/*
 * Copyright (C) Nexus authors
 *
 * Names used by plans and entitlements, and the Idempotency-Key header.
 *
 * A feature is named "name" in nginx.conf (nexus_feature tts;) and
 * "feature.name" in the plan catalog and the API (feature_key).  Like
 * nx_name.h, the validators return 0 when the value is valid and -1
 * otherwise.
 */

#ifndef NX_PLAN_H
#define NX_PLAN_H

#include <stddef.h>


#define NX_FEATURE_NAME_MAX     32
#define NX_FEATURE_PREFIX       "feature."
#define NX_FEATURE_PREFIX_LEN   (sizeof(NX_FEATURE_PREFIX) - 1)
#define NX_FEATURE_KEY_MAX      (NX_FEATURE_PREFIX_LEN + NX_FEATURE_NAME_MAX)

#define NX_PLAN_ID_MAX          32

#define NX_IDEMPOTENCY_KEY_MAX  128


/*
 * Feature names: 1..32 characters, segments of [a-z0-9_] joined by single
 * dots ("tts", "identity.sso", "retrieval.gcp_vertex").
 */
int nx_feature_name_valid(const char *s, size_t len);

/*
 * Feature keys: "feature." followed by a valid name.  On success *name
 * (if not NULL) points at the name inside s.
 */
int nx_feature_key_valid(const char *s, size_t len, const char **name);

/* Plan ids: 1..32 of [a-z0-9_-], starting with [a-z0-9]. */
int nx_plan_id_valid(const char *s, size_t len);

/*
 * Whether list, names joined with ",", holds name.  Returns 1 or 0.
 */
int nx_feature_in(const char *list, size_t list_len, const char *name,
    size_t len);

/* Idempotency keys: 1..128 printable ASCII characters (0x20..0x7e). */
int nx_idempotency_key_valid(const char *s, size_t len);


#endif /* NX_PLAN_H */
