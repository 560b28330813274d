/*
 * Copyright (C) Nexus authors
 *
 * Stream translation, one upstream event at a time, into what an OpenAI
 * client reads: "data: {chat.completion.chunk}\n\n" events ending with
 * "data: [DONE]\n\n"; native Ollama streams stay NDJSON.
 *
 * Each event is parsed and checked before anything is written or any
 * state changes, so a malformed event leaves both as they were.  openai
 * events pass through as they came: only a raw CR or LF, which in a
 * parsed JSON text can only be white space between tokens, becomes a
 * space, so that one event stays one SSE event (or one NDJSON line).
 */

#include <string.h>

#include "nx_llm_int.h"


#define NX_LLM_EVENT_TYPE_MAX  32


static int nx_llm_stream_openai(nx_llm_stream_t *s, yajl_val root,
    const char *data, size_t len, nx_buf_t *out);
static int nx_llm_stream_ollama(nx_llm_stream_t *s, yajl_val root,
    nx_buf_t *out);
static int nx_llm_stream_native(nx_llm_stream_t *s, yajl_val root,
    const char *data, size_t len, nx_buf_t *out);
static int nx_llm_stream_anthropic(nx_llm_stream_t *s, yajl_val root,
    const char *event, size_t event_len, nx_buf_t *out);
static int nx_llm_put_chunk(nx_llm_stream_t *s, nx_buf_t *out, int role,
    const char *content, size_t clen, const char *finish);
static int nx_llm_put_content(nx_llm_stream_t *s, nx_buf_t *out,
    const char *content, size_t clen);
static int nx_llm_put_end(nx_llm_stream_t *s, nx_buf_t *out,
    const char *finish);
static int nx_llm_put_usage_chunk(nx_llm_stream_t *s, nx_buf_t *out);
static int nx_llm_put_raw(nx_buf_t *out, const char *prefix,
    const char *data, size_t len, const char *suffix);
static void nx_llm_set_finish(nx_llm_stream_t *s, const char *finish);
static void nx_llm_copy(char *dst, size_t size, const char *src);


void
nx_llm_stream_init(nx_llm_stream_t *s, int type, int kind,
    const char *model, const char *id, int64_t created, int include_usage)
{
    memset(s, 0, sizeof(nx_llm_stream_t));

    s->type = type;
    s->kind = kind;
    s->include_usage = include_usage;
    s->created = created;

    nx_llm_copy(s->model, sizeof(s->model), model != NULL ? model : "");
    nx_llm_copy(s->id, sizeof(s->id),
                id != NULL && id[0] != '\0' ? id : "chatcmpl-nexus");
}


int
nx_llm_stream_event(nx_llm_stream_t *s, const char *event,
    size_t event_len, const char *data, size_t len, nx_buf_t *out)
{
    int       rc;
    size_t    start;
    yajl_val  root;

    if (s->done || data == NULL) {
        return -1;
    }

    if (event == NULL) {
        event_len = 0;
    }

    start = out->len;

    if (s->type == NX_LLM_OPENAI && s->kind == NX_LLM_CHAT) {

        /* some OpenAI-compatible servers name their error events */

        if (event_len == 5 && memcmp(event, "error", 5) == 0) {
            return -1;
        }

        if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
            if (nx_buf_append_str(out, "data: [DONE]\n\n") != 0) {
                return -1;
            }

            s->done = 1;
            s->events++;

            return 0;
        }
    }

    root = nx_json_parse(data, len, NULL, 0);

    if (root == NULL) {
        return -1;
    }

    rc = -1;

    if (YAJL_IS_OBJECT(root)) {

        switch (s->type) {

        case NX_LLM_OPENAI:
            if (s->kind == NX_LLM_CHAT) {
                rc = nx_llm_stream_openai(s, root, data, len, out);
            }

            break;

        case NX_LLM_OLLAMA:
            if (s->kind == NX_LLM_CHAT) {
                rc = nx_llm_stream_ollama(s, root, out);

            } else if (s->kind == NX_LLM_OLLAMA_CHAT
                       || s->kind == NX_LLM_OLLAMA_GENERATE)
            {
                rc = nx_llm_stream_native(s, root, data, len, out);
            }

            break;

        case NX_LLM_ANTHROPIC:
            if (s->kind == NX_LLM_CHAT) {
                rc = nx_llm_stream_anthropic(s, root, event, event_len, out);
            }

            break;
        }
    }

    nx_json_free(root);

    if (rc != 0) {
        out->len = start;
        return -1;
    }

    s->events++;

    return 0;
}


int
nx_llm_stream_error(nx_llm_stream_t *s, const char *code,
    const char *message, nx_buf_t *out)
{
    size_t  start, mlen;

    if (message == NULL || message[0] == '\0') {
        message = "The upstream stream ended unexpectedly.";
    }

    mlen = nx_llm_utf8_prefix(message, strlen(message), NX_LLM_MESSAGE_MAX);
    start = out->len;

    if (s->kind == NX_LLM_OLLAMA_CHAT || s->kind == NX_LLM_OLLAMA_GENERATE) {
        if (nx_buf_append_str(out, "{\"error\":") != 0
            || nx_llm_put_str(out, message, mlen) != 0
            || nx_buf_append_str(out, "}\n") != 0)
        {
            out->len = start;
            return -1;
        }

        return 0;
    }

    if (nx_buf_append_str(out, "data: {\"error\":{\"message\":") != 0
        || nx_llm_put_str(out, message, mlen) != 0
        || nx_buf_append_str(out, ",\"type\":\"upstream_error\",\"code\":")
           != 0
        || nx_llm_put_cstr(out, code) != 0
        || nx_buf_append_str(out, "}}\n\n") != 0
        || (!s->done && nx_buf_append_str(out, "data: [DONE]\n\n") != 0))
    {
        out->len = start;
        return -1;
    }

    return 0;
}


/*
 * An OpenAI chunk: passed on, after noting its content, finish_reason and
 * usage.  A usage-only chunk (no choices) goes to the client only when it
 * asked for one.
 */

static int
nx_llm_stream_openai(nx_llm_stream_t *s, yajl_val root, const char *data,
    size_t len, nx_buf_t *out)
{
    size_t        i;
    yajl_val      choices, usage, c, delta;
    const char   *str;

    if (nx_llm_member(root, "error") != NULL) {
        return -1;
    }

    choices = nx_llm_member(root, "choices");

    if (!YAJL_IS_ARRAY(choices)) {
        return -1;
    }

    usage = nx_llm_member(root, "usage");

    if (!YAJL_IS_OBJECT(usage)) {
        usage = NULL;
    }

    if (!(choices->u.array.len == 0 && usage != NULL && !s->include_usage)
        && nx_llm_put_raw(out, "data: ", data, len, "\n\n") != 0)
    {
        return -1;
    }

    if (usage != NULL) {
        nx_llm_usage_openai(usage, &s->usage);
    }

    for (i = 0; i < choices->u.array.len; i++) {
        c = choices->u.array.values[i];
        delta = nx_llm_member(c, "delta");

        if (nx_json_string(nx_llm_member(delta, "content"), &str) == 0) {
            s->completion_bytes += (int64_t) strlen(str);
        }

        if (nx_llm_member(delta, "role") != NULL) {
            s->role_sent = 1;
        }

        if (nx_json_string(nx_llm_member(c, "finish_reason"), &str) == 0) {
            nx_llm_set_finish(s, str);
        }
    }

    return 0;
}


/* an /api/chat line into chunks; the done line ends the stream */

static int
nx_llm_stream_ollama(nx_llm_stream_t *s, yajl_val root, nx_buf_t *out)
{
    int           done;
    const char   *content, *reason;

    if (nx_llm_member(root, "error") != NULL
        || nx_json_bool(nx_llm_member(root, "done"), &done) != 0)
    {
        return -1;
    }

    if (nx_json_string(nx_llm_member(nx_llm_member(root, "message"),
                                     "content"), &content)
        != 0)
    {
        content = "";
    }

    if (nx_llm_put_content(s, out, content, strlen(content)) != 0) {
        return -1;
    }

    if (!done) {
        return 0;
    }

    reason = NULL;
    (void) nx_json_string(nx_llm_member(root, "done_reason"), &reason);

    nx_llm_usage_ollama(root, &s->usage);

    return nx_llm_put_end(s, out, nx_llm_finish_ollama(reason));
}


/* native /api/chat or /api/generate: the line as it came */

static int
nx_llm_stream_native(nx_llm_stream_t *s, yajl_val root, const char *data,
    size_t len, nx_buf_t *out)
{
    int           done;
    const char   *content, *reason;

    if (nx_llm_member(root, "error") != NULL
        || nx_json_bool(nx_llm_member(root, "done"), &done) != 0)
    {
        return -1;
    }

    if (nx_llm_put_raw(out, "", data, len, "\n") != 0) {
        return -1;
    }

    if (nx_json_string(nx_llm_member(nx_llm_member(root, "message"),
                                     "content"), &content) == 0
        || nx_json_string(nx_llm_member(root, "response"), &content) == 0)
    {
        s->completion_bytes += (int64_t) strlen(content);
    }

    if (done) {
        reason = NULL;
        (void) nx_json_string(nx_llm_member(root, "done_reason"), &reason);

        nx_llm_usage_ollama(root, &s->usage);
        nx_llm_set_finish(s, nx_llm_finish_ollama(reason));
        s->done = 1;
    }

    return 0;
}


static int
nx_llm_stream_anthropic(nx_llm_stream_t *s, yajl_val root,
    const char *event, size_t event_len, nx_buf_t *out)
{
    char          type[NX_LLM_EVENT_TYPE_MAX];
    yajl_val      v, u;
    const char   *str;

    /* the data names its type; the SSE event field says the same */

    if (nx_json_string(nx_llm_member(root, "type"), &str) == 0) {
        nx_llm_copy(type, sizeof(type), str);

    } else if (event_len > 0 && event_len < sizeof(type)) {
        memcpy(type, event, event_len);
        type[event_len] = '\0';

    } else {
        return -1;
    }

    if (strcmp(type, "error") == 0) {
        return -1;
    }

    if (strcmp(type, "message_start") == 0) {
        v = nx_llm_member(root, "message");

        if (!YAJL_IS_OBJECT(v)) {
            return -1;
        }

        if (!s->role_sent) {
            /* the chunks carry the message's id from the first one on */

            if (nx_json_string(nx_llm_member(v, "id"), &str) == 0
                && str[0] != '\0' && strlen(str) < sizeof(s->id))
            {
                nx_llm_copy(s->id, sizeof(s->id), str);
            }

            if (nx_llm_put_chunk(s, out, 1, NULL, 0, NULL) != 0) {
                return -1;
            }

            s->role_sent = 1;
        }

        nx_llm_usage_anthropic(nx_llm_member(v, "usage"), &s->usage);

        return 0;
    }

    if (strcmp(type, "content_block_start") == 0) {
        v = nx_llm_member(root, "content_block");

        if (!YAJL_IS_OBJECT(v)) {
            return -1;
        }

        if (nx_json_string(nx_llm_member(v, "type"), &str) != 0
            || strcmp(str, "text") != 0
            || nx_json_string(nx_llm_member(v, "text"), &str) != 0)
        {
            return 0;
        }

        return nx_llm_put_content(s, out, str, strlen(str));
    }

    if (strcmp(type, "content_block_delta") == 0) {
        v = nx_llm_member(root, "delta");

        if (!YAJL_IS_OBJECT(v)) {
            return -1;
        }

        if (nx_json_string(nx_llm_member(v, "type"), &str) != 0
            || strcmp(str, "text_delta") != 0)
        {
            /* thinking, signatures and tool input are not relayed */
            return 0;
        }

        if (nx_json_string(nx_llm_member(v, "text"), &str) != 0) {
            return -1;
        }

        return nx_llm_put_content(s, out, str, strlen(str));
    }

    if (strcmp(type, "message_delta") == 0) {
        v = nx_llm_member(root, "delta");
        u = nx_llm_member(root, "usage");

        if ((v != NULL && !YAJL_IS_OBJECT(v))
            || (u != NULL && !YAJL_IS_OBJECT(u)))
        {
            return -1;
        }

        if (nx_json_string(nx_llm_member(v, "stop_reason"), &str) == 0
            && !s->finished)
        {
            if ((!s->role_sent
                 && nx_llm_put_chunk(s, out, 1, NULL, 0, NULL) != 0)
                || nx_llm_put_chunk(s, out, 0, NULL, 0,
                                    nx_llm_finish_anthropic(str))
                   != 0)
            {
                return -1;
            }

            s->role_sent = 1;
            nx_llm_set_finish(s, nx_llm_finish_anthropic(str));
        }

        nx_llm_usage_anthropic(u, &s->usage);

        return 0;
    }

    if (strcmp(type, "message_stop") == 0) {
        return nx_llm_put_end(s, out, "stop");
    }

    /* ping, content_block_stop, and event types yet to come */

    return 0;
}


/* the end of a translated stream: finish chunk, usage, [DONE] */

static int
nx_llm_put_end(nx_llm_stream_t *s, nx_buf_t *out, const char *finish)
{
    if (!s->role_sent
        && nx_llm_put_chunk(s, out, 1, NULL, 0, NULL) != 0)
    {
        return -1;
    }

    s->role_sent = 1;

    if (!s->finished) {
        if (nx_llm_put_chunk(s, out, 0, NULL, 0, finish) != 0) {
            return -1;
        }

        nx_llm_set_finish(s, finish);
    }

    if ((s->include_usage && nx_llm_put_usage_chunk(s, out) != 0)
        || nx_buf_append_str(out, "data: [DONE]\n\n") != 0)
    {
        return -1;
    }

    s->done = 1;

    return 0;
}


/* text, after the role chunk when it has not gone yet */

static int
nx_llm_put_content(nx_llm_stream_t *s, nx_buf_t *out, const char *content,
    size_t clen)
{
    if (!s->role_sent) {
        if (nx_llm_put_chunk(s, out, 1, NULL, 0, NULL) != 0) {
            return -1;
        }

        s->role_sent = 1;
    }

    if (clen == 0) {
        return 0;
    }

    if (nx_llm_put_chunk(s, out, 0, content, clen, NULL) != 0) {
        return -1;
    }

    s->completion_bytes += (int64_t) clen;

    return 0;
}


/*
 * data: {"id":...,"object":"chat.completion.chunk","created":...,
 *        "model":...,"choices":[{"index":0,"delta":{...},
 *        "logprobs":null,"finish_reason":...}]}
 * with "usage":null too when the client asked for usage, as OpenAI does
 */

static int
nx_llm_put_chunk(nx_llm_stream_t *s, nx_buf_t *out, int role,
    const char *content, size_t clen, const char *finish)
{
    if (nx_buf_append_str(out, "data: {\"id\":") != 0
        || nx_llm_put_cstr(out, s->id) != 0
        || nx_buf_append_str(out, ",\"object\":\"chat.completion.chunk\","
                                  "\"created\":") != 0
        || nx_llm_put_int(out, s->created) != 0
        || nx_buf_append_str(out, ",\"model\":") != 0
        || nx_llm_put_cstr(out, s->model) != 0
        || nx_buf_append_str(out, ",\"choices\":[{\"index\":0,\"delta\":{")
           != 0)
    {
        return -1;
    }

    if (role) {
        if (nx_buf_append_str(out, "\"role\":\"assistant\",\"content\":\"\"")
            != 0)
        {
            return -1;
        }

    } else if (content != NULL) {
        if (nx_buf_append_str(out, "\"content\":") != 0
            || nx_llm_put_str(out, content, clen) != 0)
        {
            return -1;
        }
    }

    if (nx_buf_append_str(out, "},\"logprobs\":null,\"finish_reason\":") != 0
        || nx_llm_put_cstr(out, finish) != 0
        || nx_buf_append_str(out, s->include_usage ? "}],\"usage\":null}\n\n"
                                                   : "}]}\n\n")
           != 0)
    {
        return -1;
    }

    return 0;
}


static int
nx_llm_put_usage_chunk(nx_llm_stream_t *s, nx_buf_t *out)
{
    if (nx_buf_append_str(out, "data: {\"id\":") != 0
        || nx_llm_put_cstr(out, s->id) != 0
        || nx_buf_append_str(out, ",\"object\":\"chat.completion.chunk\","
                                  "\"created\":") != 0
        || nx_llm_put_int(out, s->created) != 0
        || nx_buf_append_str(out, ",\"model\":") != 0
        || nx_llm_put_cstr(out, s->model) != 0
        || nx_buf_append_str(out, ",\"choices\":[],\"usage\":"
                                  "{\"prompt_tokens\":") != 0
        || nx_llm_put_int(out, s->usage.prompt) != 0
        || nx_buf_append_str(out, ",\"completion_tokens\":") != 0
        || nx_llm_put_int(out, s->usage.completion) != 0
        || nx_buf_append_str(out, ",\"total_tokens\":") != 0
        || nx_llm_put_int(out, s->usage.total) != 0
        || nx_buf_append_str(out, "}}\n\n") != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * An event as it came, between prefix and suffix ("data: " and "\n\n" for
 * SSE, "" and "\n" for NDJSON).  The data parsed as JSON, so any CR or LF
 * in it is white space between tokens.
 */

static int
nx_llm_put_raw(nx_buf_t *out, const char *prefix, const char *data,
    size_t len, const char *suffix)
{
    size_t  i, from;

    if (nx_buf_append_str(out, prefix) != 0) {
        return -1;
    }

    from = out->len;

    if (nx_buf_append(out, data, len) != 0) {
        return -1;
    }

    for (i = from; i < out->len; i++) {
        if (out->data[i] == '\n' || out->data[i] == '\r') {
            out->data[i] = ' ';
        }
    }

    return nx_buf_append_str(out, suffix);
}


static void
nx_llm_set_finish(nx_llm_stream_t *s, const char *finish)
{
    s->finished = 1;
    nx_llm_copy(s->finish_reason, sizeof(s->finish_reason), finish);
}


/* src cut to size - 1 bytes, not inside a UTF-8 sequence */

static void
nx_llm_copy(char *dst, size_t size, const char *src)
{
    size_t  n;

    n = nx_llm_utf8_prefix(src, strlen(src), size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}
