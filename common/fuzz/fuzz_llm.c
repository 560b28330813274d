/*
 * Copyright (C) Nexus authors
 *
 * libFuzzer harness for nx_llm.  The first byte of the input picks a few
 * parameters (a status, whether the client asked for usage); the rest is
 * tried as:
 *
 *   - a request body of each kind; when it validates, the body for each
 *     provider type must be JSON, and when it does not, the error must be
 *     a terminated single line that makes a JSON error body;
 *   - a whole response of each provider type and kind, an error answer,
 *     and a model list;
 *   - a stream, framed the way the module frames it (SSE for openai and
 *     anthropic, NDJSON for ollama), and as one single event, through the
 *     stream translator of each type and kind.
 *
 * Whatever is written where JSON is promised must parse: chat streams
 * are SSE events of JSON or a last [DONE], native streams JSON lines.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nx_llm.h"
#include "nx_stream.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const int  fuzz_types[] = {
    NX_LLM_OPENAI, NX_LLM_OLLAMA, NX_LLM_ANTHROPIC
};

static const int  fuzz_kinds[] = {
    NX_LLM_CHAT, NX_LLM_EMBEDDINGS, NX_LLM_OLLAMA_CHAT,
    NX_LLM_OLLAMA_GENERATE
};


static void
check_json(const char *p, size_t len)
{
    yajl_val  v;

    v = nx_json_parse(p, len, NULL, 0);
    if (v == NULL) {
        abort();
    }

    nx_json_free(v);
}


static void
check_string(const char *s, size_t size)
{
    if (memchr(s, '\0', size) == NULL || strchr(s, '\n') != NULL) {
        abort();
    }
}


static void
check_err(const nx_llm_err_t *err)
{
    nx_buf_t  b = NX_BUF_INIT;

    check_string(err->message, sizeof(err->message));
    check_string(err->param, sizeof(err->param));
    check_string(err->code, sizeof(err->code));

    if (err->message[0] == '\0') {
        abort();
    }

    if (nx_llm_error_json(err, NULL, &b) != 0) {
        abort();
    }

    check_json(b.data, b.len);
    nx_buf_free(&b);
}


/* SSE of the client: JSON events, and [DONE] only as the last */

typedef struct {
    int  done;
} fuzz_sse_t;


static int
check_sse_event(void *ud, const char *event, size_t event_len,
    const char *data, size_t len)
{
    fuzz_sse_t  *c;

    c = ud;

    (void) event;

    if (event_len != 0 || c->done) {
        abort();
    }

    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->done = 1;
        return 0;
    }

    check_json(data, len);

    return 0;
}


static int
check_line(void *ud, const char *event, size_t event_len, const char *data,
    size_t len)
{
    (void) ud;
    (void) event;
    (void) event_len;

    check_json(data, len);

    return 0;
}


static void
check_output(int native, const nx_buf_t *out, int done)
{
    fuzz_sse_t   c;
    nx_stream_t  s;

    if (out->len == 0) {
        return;
    }

    c.done = 0;

    nx_stream_init(&s, native ? NX_STREAM_NDJSON : NX_STREAM_SSE, 0);

    if (nx_stream_feed(&s, out->data, out->len,
                       native ? check_line : check_sse_event, &c)
        != NX_STREAM_OK
        || nx_stream_pending(&s) != 0)
    {
        abort();
    }

    nx_stream_free(&s);

    if (!native && done && !c.done) {
        abort();
    }

    if (native && out->data[out->len - 1] != '\n') {
        abort();
    }
}


typedef struct {
    nx_llm_stream_t  *ls;
    nx_buf_t         *out;
} fuzz_feed_t;


static int
feed_event(void *ud, const char *event, size_t event_len, const char *data,
    size_t len)
{
    int           done, rc;
    size_t        before;
    fuzz_feed_t  *f;

    f = ud;
    before = f->out->len;
    done = f->ls->done;

    rc = nx_llm_stream_event(f->ls, event, event_len, data, len, f->out);

    if (rc != 0 && f->out->len != before) {
        abort();
    }

    if (done && rc == 0) {
        abort();
    }

    return 0;
}


static void
fuzz_stream(int type, int kind, int include_usage, const char *p,
    size_t n)
{
    int              native;
    char            *msg;
    nx_buf_t         out = NX_BUF_INIT;
    nx_stream_t      s;
    fuzz_feed_t      f;
    nx_llm_stream_t  ls;

    native = (kind == NX_LLM_OLLAMA_CHAT || kind == NX_LLM_OLLAMA_GENERATE);

    nx_llm_stream_init(&ls, type, kind, "model \"m\"", "chatcmpl-1", 17,
                       include_usage);

    f.ls = &ls;
    f.out = &out;

    nx_stream_init(&s, type == NX_LLM_OLLAMA ? NX_STREAM_NDJSON
                                             : NX_STREAM_SSE, 1 << 16);
    (void) nx_stream_feed(&s, p, n, feed_event, &f);
    (void) nx_stream_finish(&s, feed_event, &f);
    nx_stream_free(&s);

    check_string(ls.id, sizeof(ls.id));
    check_string(ls.model, sizeof(ls.model));
    check_string(ls.finish_reason, sizeof(ls.finish_reason));

    if (ls.usage.prompt < 0 || ls.usage.completion < 0
        || ls.completion_bytes < 0 || (int64_t) n < ls.completion_bytes)
    {
        abort();
    }

    if (!ls.done && (n & 1)) {
        msg = malloc(n + 1);
        if (msg == NULL) {
            abort();
        }

        memcpy(msg, p, n);
        msg[n] = '\0';

        if (nx_llm_stream_error(&ls, "upstream_truncated", msg, &out) != 0) {
            abort();
        }

        free(msg);
    }

    check_output(native, &out, ls.done);

    /* the whole input as one event, with the whole input as its name */

    nx_llm_stream_init(&ls, type, kind, NULL, NULL, 0, include_usage);
    nx_buf_reset(&out);

    if (nx_llm_stream_event(&ls, p, n > 16 ? 16 : n, p, n, &out) != 0
        && out.len != 0)
    {
        abort();
    }

    check_output(native, &out, ls.done);

    nx_buf_free(&out);
}


static void
model_name(void *ud, const char *name, size_t len)
{
    (void) ud;

    if (len == 0 || len > NX_LLM_MODEL_MAX || memchr(name, '\0', len)) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              status, usage, rc;
    size_t           n, t, k;
    nx_buf_t         out = NX_BUF_INIT;
    const char      *p;
    nx_llm_req_t     req;
    nx_llm_err_t     err;
    nx_llm_usage_t   u;

    if (size == 0) {
        return 0;
    }

    status = 400 + data[0] % 200;
    usage = data[0] & 1;
    p = (const char *) data + 1;
    n = size - 1;

    /* requests */

    for (k = 0; k < sizeof(fuzz_kinds) / sizeof(fuzz_kinds[0]); k++) {
        if (nx_llm_parse(fuzz_kinds[k], p, n, &req, &err) != 0) {
            if (req.tree != NULL) {
                abort();
            }

            check_err(&err);
            nx_llm_req_free(&req);
            continue;
        }

        if (req.prompt_estimate < 1 || req.model[0] == '\0'
            || strlen(req.model) > NX_LLM_MODEL_MAX
            || (req.include_usage && !req.stream)
            || (req.max_tokens < 1 && req.max_tokens != -1))
        {
            abort();
        }

        for (t = 0; t < 3; t++) {
            nx_buf_reset(&out);

            rc = nx_llm_build_request(&req, fuzz_types[t],
                                      (t & 1) ? "served" : NULL,
                                      (int64_t) status, &out, &err);

            if (rc == 0
                && nx_llm_upstream_path(fuzz_types[t], req.kind) == NULL)
            {
                abort();
            }

            if (rc == 0) {
                check_json(out.data, out.len);

            } else {
                if (out.len != 0) {
                    abort();
                }

                check_err(&err);
            }
        }

        nx_llm_req_free(&req);
    }

    /* whole responses, errors and model lists */

    for (t = 0; t < 3; t++) {
        for (k = 0; k < sizeof(fuzz_kinds) / sizeof(fuzz_kinds[0]); k++) {
            nx_buf_reset(&out);

            rc = nx_llm_translate_response(fuzz_types[t], fuzz_kinds[k], p,
                                           n, usage ? "m" : NULL, NULL, 1,
                                           &out, &u);
            if (rc == 0) {
                check_json(out.data, out.len);

                if (u.prompt < 0 || u.completion < 0 || u.total < 0) {
                    abort();
                }

            } else if (out.len != 0 || u.present) {
                abort();
            }
        }

        nx_buf_reset(&out);

        if (nx_llm_translate_error(fuzz_types[t], status, p, n, &out) != 0) {
            abort();
        }

        check_json(out.data, out.len);

        /* 512 bytes of message, 6 bytes at most for each */
        if (out.len > 4096) {
            abort();
        }

        (void) nx_llm_parse_models(fuzz_types[t], p, n, model_name, NULL);
    }

    nx_buf_free(&out);

    /* streams */

    for (t = 0; t < 3; t++) {
        for (k = 0; k < sizeof(fuzz_kinds) / sizeof(fuzz_kinds[0]); k++) {
            fuzz_stream(fuzz_types[t], fuzz_kinds[k], usage, p, n);
        }
    }

    return 0;
}
