/*
 * Copyright (C) Nexus authors
 *
 * nexusctl talking to the gateway's admin API, for what only the gateway
 * can do (a credit grant changes a balance kept in Redis, under caps the
 * gateway enforces).  The gateway's base URL comes from --url or
 * NEXUS_URL; the admin key from --key-file or NEXUS_ADMIN_KEY, never
 * from the command line, which any user of the host can read.
 */

#ifndef CLI_HTTP_H
#define CLI_HTTP_H

#include <stddef.h>

#include <nx_json.h>
#include <nx_key.h>


/* an Idempotency-Key nexusctl makes: a UUID */
#define CLI_HTTP_IDEM_LEN   36


typedef struct {
    char          url[1024];            /* without a trailing "/" */
    char          key[NX_KEY_LEN + 1];
} cli_http_t;


typedef struct {
    long          status;
    char         *body;                 /* NUL-terminated */
    size_t        len;
    yajl_val      json;                 /* NULL if the body is not JSON */
    int           replayed;             /* Idempotent-Replayed: true */
} cli_http_reply_t;


/*
 * The base URL (http:// or https://, no credentials in it) and the admin
 * key, from the options given (NULL: not given) or the environment.
 * Returns CLI_OK, or prints why and returns CLI_USAGE.  The key is never
 * printed, whatever is wrong with it.
 */
int cli_http_init(cli_http_t *h, const char *url, const char *key_file);

/* Forgets the key. */
void cli_http_done(cli_http_t *h);

/*
 * Sends method path (after the base URL) with a JSON body and an
 * Idempotency-Key (either may be NULL).  CLI_OK with *reply for any
 * answer, or CLI_UNREACHABLE after printing why there was none.
 */
int cli_http_request(cli_http_t *h, const char *method, const char *path,
    const char *body, const char *idem_key, cli_http_reply_t *reply);

void cli_http_reply_free(cli_http_reply_t *reply);

/*
 * For an answer that is not a success: prints the gateway's error code
 * and message, and returns the exit code: CLI_UNREACHABLE when trying
 * again may work (a 5xx, a request still in progress), CLI_FAILED
 * otherwise.
 */
int cli_http_fail(const cli_http_reply_t *reply);

/* A new random Idempotency-Key: CLI_HTTP_IDEM_LEN + 1 bytes. 0 or -1. */
int cli_http_idem_key(char *out);

/* The text of a member of data, a number or a string, or "?". */
const char *cli_http_member(const cli_http_reply_t *reply, const char *name);


#endif /* CLI_HTTP_H */
