/*
 * Copyright (C) Nexus authors
 *
 * Request ids: an incoming X-Request-Id is kept when it is "sane":
 * 1..NX_REQID_MAX characters of [A-Za-z0-9._:-]. Otherwise a new one is
 * generated: "req_" followed by 24 lowercase hex characters.
 */

#ifndef NX_REQID_H
#define NX_REQID_H

#include <stddef.h>
#include <stdint.h>

#define NX_REQID_MAX      128
#define NX_REQID_GEN_LEN  28

/* 1 if buf[0..len) is a sane request id, 0 otherwise. */
int nx_reqid_valid(const char *buf, size_t len);

/*
 * Writes a new id (NX_REQID_GEN_LEN chars, no NUL) into out from 12 bytes
 * of entropy supplied by the caller (so the module can use its own cheap
 * source and tests can be deterministic).
 */
void nx_reqid_format(const uint8_t rnd[12], char out[NX_REQID_GEN_LEN]);

#endif /* NX_REQID_H */
