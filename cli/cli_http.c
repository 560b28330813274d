/*
 * Copyright (C) Nexus authors
 *
 * nexusctl's client of the gateway's admin API: one blocking libcurl
 * request at a time (nexusctl may block), a bounded answer, no redirects
 * (they would carry the admin key elsewhere), http and https only.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "nexusctl.h"
#include "cli_http.h"
#include "cli_out.h"


/* an answer larger than this is not one of the admin API's */
#define CLI_HTTP_BODY_MAX       (1024 * 1024)

#define CLI_HTTP_CONNECT_MS     10000L
#define CLI_HTTP_TIMEOUT_MS     30000L

/* a key file holds a key and perhaps a newline */
#define CLI_HTTP_KEY_FILE_MAX   4096


static int cli_http_url(cli_http_t *h, const char *url);
static int cli_http_key(cli_http_t *h, const char *key_file);
static size_t cli_http_write(char *data, size_t size, size_t n, void *arg);
static size_t cli_http_header(char *data, size_t size, size_t n, void *arg);
static const char *cli_http_printable(const char *s, char *buf, size_t size);


int
cli_http_init(cli_http_t *h, const char *url, const char *key_file)
{
    memset(h, 0, sizeof(cli_http_t));

    if (url == NULL) {
        url = getenv("NEXUS_URL");
    }

    if (url == NULL || url[0] == '\0') {
        cli_error("the gateway's URL is required: --url or NEXUS_URL");
        return CLI_USAGE;
    }

    if (cli_http_url(h, url) != 0 || cli_http_key(h, key_file) != 0) {
        cli_http_done(h);
        return CLI_USAGE;
    }

    return CLI_OK;
}


void
cli_http_done(cli_http_t *h)
{
    explicit_bzero(h->key, sizeof(h->key));
}


static int
cli_http_url(cli_http_t *h, const char *url)
{
    size_t       len, skip;
    const char  *host, *end;

    len = strlen(url);

    if (strncasecmp(url, "http://", 7) == 0) {
        skip = 7;

    } else if (strncasecmp(url, "https://", 8) == 0) {
        skip = 8;

    } else {
        cli_error("invalid URL \"%s\": http:// or https://, such as "
                  "http://127.0.0.1:8080", cli_quote(url));
        return -1;
    }

    host = url + skip;
    end = host + strcspn(host, "/?#");

    /* a password in the URL would be in argv, or in logs */
    if (memchr(host, '@', end - host) != NULL) {
        cli_error("invalid URL: credentials in it are not accepted; the "
                  "admin key comes from --key-file or NEXUS_ADMIN_KEY");
        return -1;
    }

    if (end == host || *end == '?' || *end == '#'
        || len >= sizeof(h->url))
    {
        cli_error("invalid URL \"%s\": the gateway's base, such as "
                  "http://127.0.0.1:8080", cli_quote(url));
        return -1;
    }

    while (len > skip && url[len - 1] == '/') {
        len--;
    }

    memcpy(h->url, url, len);
    h->url[len] = '\0';

    return 0;
}


/* the key: a file's content less trailing white space, or the variable's */

static int
cli_http_key(cli_http_t *h, const char *key_file)
{
    int           rc;
    char          buf[CLI_HTTP_KEY_FILE_MAX + 1];
    FILE         *f;
    size_t        len;
    const char   *from;
    struct stat   st;

    rc = -1;

    if (key_file != NULL) {
        from = "the key file";

        f = fopen(key_file, "r");
        if (f == NULL) {
            cli_error("cannot open the key file %s", cli_quote(key_file));
            return -1;
        }

        if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
            cli_error("the key file %s is not a regular file",
                      cli_quote(key_file));
            fclose(f);
            return -1;
        }

        len = fread(buf, 1, sizeof(buf), f);

        if (ferror(f)) {
            cli_error("cannot read the key file %s", cli_quote(key_file));
            fclose(f);
            goto done;
        }

        fclose(f);

    } else {
        from = "NEXUS_ADMIN_KEY";

        if (getenv("NEXUS_ADMIN_KEY") == NULL) {
            cli_error("an admin key is required: --key-file FILE or "
                      "NEXUS_ADMIN_KEY (never on the command line)");
            return -1;
        }

        len = strlen(getenv("NEXUS_ADMIN_KEY"));

        if (len > CLI_HTTP_KEY_FILE_MAX) {
            len = CLI_HTTP_KEY_FILE_MAX + 1;

        } else {
            memcpy(buf, getenv("NEXUS_ADMIN_KEY"), len);
        }
    }

    while (len > 0 && len <= CLI_HTTP_KEY_FILE_MAX
           && isspace((unsigned char) buf[len - 1]))
    {
        len--;
    }

    /* what is wrong is said, never what was found */
    if (len > CLI_HTTP_KEY_FILE_MAX || nx_key_parse(buf, len, NULL) != 0) {
        cli_error("%s does not hold an API key (nx_<12 hex>_<64 hex>)",
                  from);
        goto done;
    }

    memcpy(h->key, buf, len);
    h->key[len] = '\0';
    rc = 0;

done:

    explicit_bzero(buf, sizeof(buf));

    return rc;
}


int
cli_http_request(cli_http_t *h, const char *method, const char *path,
    const char *body, const char *idem_key, cli_http_reply_t *reply)
{
    int                 rc;
    char                url[2048], auth[sizeof(h->key) + 32], idem[160];
    char                err[128];
    CURL               *curl;
    CURLcode            res;
    struct curl_slist  *headers, *l;

    memset(reply, 0, sizeof(cli_http_reply_t));

    if (snprintf(url, sizeof(url), "%s%s", h->url, path) >= (int) sizeof(url))
    {
        cli_error("the URL is too long");
        return CLI_USAGE;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error("cannot initialize libcurl");
        return CLI_FAILED;
    }

    curl = curl_easy_init();
    if (curl == NULL) {
        cli_error("cannot initialize libcurl");
        curl_global_cleanup();
        return CLI_FAILED;
    }

    headers = NULL;
    rc = CLI_FAILED;

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h->key);

    l = curl_slist_append(headers, auth);
    explicit_bzero(auth, sizeof(auth));

    if (l == NULL) {
        goto done;
    }

    headers = l;

    if (body != NULL) {
        l = curl_slist_append(headers, "Content-Type: application/json");
        if (l == NULL) {
            goto done;
        }

        headers = l;
    }

    if (idem_key != NULL) {
        snprintf(idem, sizeof(idem), "Idempotency-Key: %s", idem_key);

        l = curl_slist_append(headers, idem);
        if (l == NULL) {
            goto done;
        }

        headers = l;
    }

    err[0] = '\0';

    (void) curl_easy_setopt(curl, CURLOPT_URL, url);
    (void) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    (void) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    (void) curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    (void) curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    (void) curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                            CLI_HTTP_CONNECT_MS);
    (void) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, CLI_HTTP_TIMEOUT_MS);
    (void) curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    (void) curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
    (void) curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, cli_http_write);
    (void) curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    (void) curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, cli_http_header);
    (void) curl_easy_setopt(curl, CURLOPT_HEADERDATA, reply);

    if (body != NULL) {
        (void) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        (void) curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                                (long) strlen(body));
    }

    res = curl_easy_perform(curl);

    if (res != CURLE_OK) {
        cli_error("no answer from the gateway at %s: %s", cli_quote(h->url),
                  err[0] ? err : curl_easy_strerror(res));
        cli_http_reply_free(reply);
        rc = CLI_UNREACHABLE;
        goto done;
    }

    (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);

    if (reply->body != NULL) {
        reply->json = nx_json_parse(reply->body, reply->len, err,
                                    sizeof(err));
    }

    rc = CLI_OK;

done:

    if (rc == CLI_FAILED) {
        cli_error("out of memory");
    }

    /* libcurl keeps copies of the headers: the key's is cleared first */
    for (l = headers; l != NULL; l = l->next) {
        explicit_bzero(l->data, strlen(l->data));
    }

    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    curl_global_cleanup();

    return rc;
}


static size_t
cli_http_write(char *data, size_t size, size_t n, void *arg)
{
    char              *p;
    cli_http_reply_t  *reply;

    reply = arg;
    n *= size;

    if (reply->len + n > CLI_HTTP_BODY_MAX) {
        return 0;
    }

    p = realloc(reply->body, reply->len + n + 1);
    if (p == NULL) {
        return 0;
    }

    memcpy(p + reply->len, data, n);
    reply->body = p;
    reply->len += n;
    reply->body[reply->len] = '\0';

    return n;
}


static size_t
cli_http_header(char *data, size_t size, size_t n, void *arg)
{
    cli_http_reply_t  *reply;

    reply = arg;
    n *= size;

    if (n >= sizeof("Idempotent-Replayed: true") - 1
        && strncasecmp(data, "Idempotent-Replayed: true",
                       sizeof("Idempotent-Replayed: true") - 1) == 0)
    {
        reply->replayed = 1;
    }

    return n;
}


void
cli_http_reply_free(cli_http_reply_t *reply)
{
    free(reply->body);

    if (reply->json != NULL) {
        nx_json_free(reply->json);
    }

    memset(reply, 0, sizeof(cli_http_reply_t));
}


int
cli_http_fail(const cli_http_reply_t *reply)
{
    char         c[64], m[512];
    yajl_val     e;
    const char  *code, *message;

    e = nx_json_get(reply->json, "error");

    if (nx_json_string(nx_json_get(e, "code"), &code) != 0) {
        code = NULL;
    }

    if (nx_json_string(nx_json_get(e, "message"), &message) != 0) {
        message = "";
    }

    if (code == NULL) {
        cli_error("the gateway answered %ld, not with the admin API's "
                  "envelope: is the URL the gateway's?", reply->status);

    } else {
        cli_error("%s: %s", cli_http_printable(code, c, sizeof(c)),
                  cli_http_printable(message, m, sizeof(m)));
    }

    if (reply->status >= 500
        || (code != NULL
            && strcmp(code, "IDEMPOTENCY_KEY_IN_PROGRESS") == 0))
    {
        return CLI_UNREACHABLE;
    }

    return CLI_FAILED;
}


/* what the gateway said, printable ASCII only and cut to size */

static const char *
cli_http_printable(const char *s, char *buf, size_t size)
{
    size_t  i;

    for (i = 0; s[i] != '\0' && i + 1 < size; i++) {
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    }

    buf[i] = '\0';

    return buf;
}


int
cli_http_idem_key(char *out)
{
    unsigned char  b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return -1;
    }

    /* a version 4 UUID */
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    snprintf(out, CLI_HTTP_IDEM_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
             b[10], b[11], b[12], b[13], b[14], b[15]);

    return 0;
}


const char *
cli_http_member(const cli_http_reply_t *reply, const char *name)
{
    yajl_val     v;
    const char  *s;

    v = nx_json_get(nx_json_get(reply->json, "data"), name);

    if (YAJL_IS_NUMBER(v) && v->u.number.r != NULL) {
        return v->u.number.r;
    }

    return (nx_json_string(v, &s) == 0) ? s : "?";
}
