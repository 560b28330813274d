/*
 * Copyright (C) Nexus authors
 *
 * Whole upstream answers into what an OpenAI client expects: success
 * bodies (Ollama's chat and embed, Anthropic's message, OpenAI's as they
 * are) with the usage they report, and error bodies of any provider in
 * OpenAI's error shape.
 *
 * A provider's error message is passed on, escaped and cut to
 * NX_LLM_MESSAGE_MAX bytes, except for 401 and 403: those are about the
 * gateway's own credentials (OpenAI's message even quotes part of the
 * key), so the client gets a generic message.
 */

#include <string.h>

#include "nx_llm_int.h"


#define NX_LLM_TOKEN_MAX  64


static int nx_llm_response_openai(int kind, yajl_val root,
    nx_llm_usage_t *usage);
static int nx_llm_response_ollama_chat(yajl_val root, const char *model,
    const char *id, int64_t created, nx_buf_t *out, nx_llm_usage_t *usage);
static int nx_llm_response_ollama_embed(yajl_val root, const char *model,
    nx_buf_t *out, nx_llm_usage_t *usage);
static int nx_llm_response_anthropic(yajl_val root, const char *model,
    const char *id, int64_t created, nx_buf_t *out, nx_llm_usage_t *usage);
static int nx_llm_put_head(nx_buf_t *out, const char *id, int64_t created,
    const char *model);
static int nx_llm_put_tail(nx_buf_t *out, const char *finish,
    const nx_llm_usage_t *usage);
static const char *nx_llm_error_type(int status);
static const char *nx_llm_error_message(int status);
static const char *nx_llm_token(yajl_val v);
static const char *nx_llm_param(yajl_val v);


int
nx_llm_translate_response(int type, int kind, const char *body,
    size_t len, const char *model, const char *id, int64_t created,
    nx_buf_t *out, nx_llm_usage_t *usage)
{
    int       rc;
    size_t    start;
    yajl_val  root;

    memset(usage, 0, sizeof(nx_llm_usage_t));

    root = nx_json_parse(body, len, NULL, 0);

    if (root == NULL) {
        return -1;
    }

    if (!YAJL_IS_OBJECT(root) || nx_llm_member(root, "error") != NULL) {
        nx_json_free(root);
        return -1;
    }

    if (id == NULL || id[0] == '\0') {
        id = "chatcmpl-nexus";
    }

    start = out->len;
    rc = -1;

    switch (type) {

    case NX_LLM_OPENAI:
        rc = nx_llm_response_openai(kind, root, usage);

        if (rc == 0) {
            rc = nx_buf_append(out, body, len);
        }

        break;

    case NX_LLM_OLLAMA:
        if (kind == NX_LLM_CHAT) {
            rc = nx_llm_response_ollama_chat(root, model, id, created, out,
                                             usage);

        } else if (kind == NX_LLM_EMBEDDINGS) {
            rc = nx_llm_response_ollama_embed(root, model, out, usage);

        } else if (kind == NX_LLM_OLLAMA_CHAT
                   || kind == NX_LLM_OLLAMA_GENERATE)
        {
            nx_llm_usage_ollama(root, usage);
            rc = nx_buf_append(out, body, len);
        }

        break;

    case NX_LLM_ANTHROPIC:
        if (kind == NX_LLM_CHAT) {
            rc = nx_llm_response_anthropic(root, model, id, created, out,
                                           usage);
        }

        break;
    }

    nx_json_free(root);

    if (rc != 0) {
        out->len = start;
        memset(usage, 0, sizeof(nx_llm_usage_t));
        return -1;
    }

    return 0;
}


int
nx_llm_translate_error(int type, int status, const char *body,
    size_t len, nx_buf_t *out)
{
    int           rc;
    size_t        start, mlen;
    yajl_val      root, e;
    const char   *msg, *etype, *param, *code, *s;

    msg = NULL;
    etype = NULL;
    param = NULL;
    code = NULL;

    root = nx_json_parse(body, len, NULL, 0);

    if (YAJL_IS_OBJECT(root)) {
        e = nx_llm_member(root, "error");

        if (YAJL_IS_OBJECT(e)) {
            /* OpenAI, and Anthropic's {"type":"error","error":{...}} */
            (void) nx_json_string(nx_llm_member(e, "message"), &msg);
            etype = nx_llm_token(nx_llm_member(e, "type"));
            param = nx_llm_param(nx_llm_member(e, "param"));
            code = nx_llm_token(nx_llm_member(e, "code"));

        } else if (nx_json_string(e, &msg) == 0) {
            /* Ollama */

        } else if (nx_json_string(nx_llm_member(root, "message"), &msg)
                   == 0)
        {
            /* vLLM and others: {"object":"error","message":...} */
            etype = nx_llm_token(nx_llm_member(root, "type"));
            code = nx_llm_token(nx_llm_member(root, "code"));

        } else {
            /* FastAPI's {"detail":"..."} */
            (void) nx_json_string(nx_llm_member(root, "detail"), &msg);
        }

        if (nx_json_string(nx_llm_member(root, "type"), &s) == 0
            && strcmp(s, "error") == 0 && etype != NULL)
        {
            /* Anthropic's types that OpenAI has under another name */

            if (strcmp(etype, "api_error") == 0) {
                etype = "server_error";

            } else if (strcmp(etype, "overloaded_error") == 0) {
                etype = "server_error";
                code = code != NULL ? code : "overloaded";

            } else if (strcmp(etype, "request_too_large") == 0) {
                etype = "invalid_request_error";
                code = code != NULL ? code : "request_too_large";
            }
        }
    }

    (void) type;

    if (status == 401 || status == 403 || status == 407) {
        msg = NULL;
        param = NULL;
    }

    if (msg == NULL || msg[0] == '\0') {
        msg = nx_llm_error_message(status);
    }

    if (etype == NULL) {
        etype = nx_llm_error_type(status);
    }

    mlen = nx_llm_utf8_prefix(msg, strlen(msg), NX_LLM_MESSAGE_MAX);

    start = out->len;

    rc = 0;

    if (nx_buf_append_str(out, "{\"error\":{\"message\":") != 0
        || nx_llm_put_str(out, msg, mlen) != 0
        || nx_buf_append_str(out, ",\"type\":") != 0
        || nx_llm_put_cstr(out, etype) != 0
        || nx_buf_append_str(out, ",\"param\":") != 0
        || nx_llm_put_cstr(out, param) != 0
        || nx_buf_append_str(out, ",\"code\":") != 0
        || nx_llm_put_cstr(out, code) != 0
        || nx_buf_append_str(out, "}}") != 0)
    {
        out->len = start;
        rc = -1;
    }

    if (root != NULL) {
        nx_json_free(root);
    }

    return rc;
}


/* {"usage":{"prompt_tokens","completion_tokens","total_tokens"}} */

void
nx_llm_usage_openai(yajl_val u, nx_llm_usage_t *usage)
{
    int64_t  p, c, t;

    if (nx_json_int(nx_llm_member(u, "prompt_tokens"), &p) != 0 || p < 0) {
        return;
    }

    if (nx_json_int(nx_llm_member(u, "completion_tokens"), &c) != 0
        || c < 0)
    {
        c = 0;
    }

    if (nx_json_int(nx_llm_member(u, "total_tokens"), &t) != 0 || t < 0) {
        t = p + c;
    }

    usage->prompt = p;
    usage->completion = c;
    usage->total = t;
    usage->present = 1;
}


/* Ollama's final object: prompt_eval_count, eval_count */

void
nx_llm_usage_ollama(yajl_val root, nx_llm_usage_t *usage)
{
    int64_t  p, c;

    if (nx_json_int(nx_llm_member(root, "eval_count"), &c) != 0 || c < 0) {
        return;
    }

    /* Ollama leaves the prompt count out when its cache held it all */

    if (nx_json_int(nx_llm_member(root, "prompt_eval_count"), &p) != 0
        || p < 0)
    {
        p = 0;
    }

    usage->prompt = p;
    usage->completion = c;
    usage->total = p + c;
    usage->present = 1;
}


/*
 * Anthropic's usage: input_tokens does not count the tokens read from or
 * written to the prompt cache, OpenAI's prompt_tokens does.  Members that
 * are absent leave the count as it was (message_delta may carry only
 * output_tokens).
 */

void
nx_llm_usage_anthropic(yajl_val u, nx_llm_usage_t *usage)
{
    int64_t  n, in;
    int      found;

    if (!YAJL_IS_OBJECT(u)) {
        return;
    }

    in = 0;
    found = 0;

    if (nx_json_int(nx_llm_member(u, "input_tokens"), &n) == 0 && n >= 0) {
        in += n;
        found = 1;
    }

    if (found
        && nx_json_int(nx_llm_member(u, "cache_creation_input_tokens"), &n)
           == 0
        && n >= 0 && n <= INT64_MAX - in)
    {
        in += n;
    }

    if (found
        && nx_json_int(nx_llm_member(u, "cache_read_input_tokens"), &n) == 0
        && n >= 0 && n <= INT64_MAX - in)
    {
        in += n;
    }

    if (found) {
        usage->prompt = in;
        usage->present = 1;
    }

    if (nx_json_int(nx_llm_member(u, "output_tokens"), &n) == 0 && n >= 0) {
        usage->completion = n;
        usage->present = 1;
    }

    usage->total = usage->prompt <= INT64_MAX - usage->completion
                   ? usage->prompt + usage->completion : INT64_MAX;
}


const char *
nx_llm_finish_ollama(const char *done_reason)
{
    if (done_reason != NULL && strcmp(done_reason, "length") == 0) {
        return "length";
    }

    return "stop";
}


const char *
nx_llm_finish_anthropic(const char *stop_reason)
{
    if (stop_reason == NULL) {
        return "stop";
    }

    if (strcmp(stop_reason, "max_tokens") == 0
        || strcmp(stop_reason, "model_context_window_exceeded") == 0)
    {
        return "length";
    }

    if (strcmp(stop_reason, "tool_use") == 0) {
        return "tool_calls";
    }

    if (strcmp(stop_reason, "refusal") == 0) {
        return "content_filter";
    }

    /* end_turn, stop_sequence, pause_turn */

    return "stop";
}


static int
nx_llm_response_openai(int kind, yajl_val root, nx_llm_usage_t *usage)
{
    if (kind == NX_LLM_CHAT) {
        if (!YAJL_IS_ARRAY(nx_llm_member(root, "choices"))) {
            return -1;
        }

    } else if (kind == NX_LLM_EMBEDDINGS) {
        if (!YAJL_IS_ARRAY(nx_llm_member(root, "data"))) {
            return -1;
        }

    } else {
        return -1;
    }

    nx_llm_usage_openai(nx_llm_member(root, "usage"), usage);

    if (kind == NX_LLM_EMBEDDINGS && usage->present) {
        /* embeddings report prompt_tokens and total_tokens only */
        usage->completion = 0;
    }

    return 0;
}


static int
nx_llm_response_ollama_chat(yajl_val root, const char *model,
    const char *id, int64_t created, nx_buf_t *out, nx_llm_usage_t *usage)
{
    yajl_val      msg;
    const char   *content, *reason;

    msg = nx_llm_member(root, "message");

    if (!YAJL_IS_OBJECT(msg)) {
        return -1;
    }

    if (nx_json_string(nx_llm_member(msg, "content"), &content) != 0) {
        content = "";
    }

    if (model == NULL) {
        if (nx_json_string(nx_llm_member(root, "model"), &model) != 0) {
            model = "";
        }
    }

    reason = NULL;
    (void) nx_json_string(nx_llm_member(root, "done_reason"), &reason);

    nx_llm_usage_ollama(root, usage);

    if (nx_llm_put_head(out, id, created, model) != 0
        || nx_buf_append_json(out, content, strlen(content)) != 0
        || nx_llm_put_tail(out, nx_llm_finish_ollama(reason), usage) != 0)
    {
        return -1;
    }

    return 0;
}


static int
nx_llm_response_ollama_embed(yajl_val root, const char *model,
    nx_buf_t *out, nx_llm_usage_t *usage)
{
    size_t    i, k;
    int64_t   n;
    yajl_val  embs, e;

    embs = nx_llm_member(root, "embeddings");

    if (!YAJL_IS_ARRAY(embs)) {
        return -1;
    }

    for (i = 0; i < embs->u.array.len; i++) {
        e = embs->u.array.values[i];

        if (!YAJL_IS_ARRAY(e)) {
            return -1;
        }

        for (k = 0; k < e->u.array.len; k++) {
            if (!YAJL_IS_NUMBER(e->u.array.values[k])) {
                return -1;
            }
        }
    }

    if (model == NULL) {
        if (nx_json_string(nx_llm_member(root, "model"), &model) != 0) {
            model = "";
        }
    }

    if (nx_json_int(nx_llm_member(root, "prompt_eval_count"), &n) == 0
        && n >= 0)
    {
        usage->prompt = n;
        usage->total = n;
        usage->present = 1;
    }

    if (nx_buf_append_str(out, "{\"object\":\"list\",\"data\":[") != 0) {
        return -1;
    }

    for (i = 0; i < embs->u.array.len; i++) {
        if ((i > 0 && nx_buf_append(out, ",", 1) != 0)
            || nx_buf_append_str(out, "{\"object\":\"embedding\",\"index\":")
               != 0
            || nx_llm_put_int(out, (int64_t) i) != 0
            || nx_buf_append_str(out, ",\"embedding\":") != 0
            || nx_llm_put_value(out, embs->u.array.values[i]) != 0
            || nx_buf_append(out, "}", 1) != 0)
        {
            return -1;
        }
    }

    if (nx_buf_append_str(out, "],\"model\":") != 0
        || nx_llm_put_cstr(out, model) != 0
        || nx_buf_append_str(out, ",\"usage\":{\"prompt_tokens\":") != 0
        || nx_llm_put_int(out, usage->prompt) != 0
        || nx_buf_append_str(out, ",\"total_tokens\":") != 0
        || nx_llm_put_int(out, usage->total) != 0
        || nx_buf_append_str(out, "}}") != 0)
    {
        return -1;
    }

    return 0;
}


static int
nx_llm_response_anthropic(yajl_val root, const char *model,
    const char *id, int64_t created, nx_buf_t *out, nx_llm_usage_t *usage)
{
    size_t        i;
    yajl_val      content, block;
    const char   *s, *reason;

    if (nx_json_string(nx_llm_member(root, "type"), &s) != 0
        || strcmp(s, "message") != 0)
    {
        return -1;
    }

    content = nx_llm_member(root, "content");

    if (!YAJL_IS_ARRAY(content)) {
        return -1;
    }

    if (nx_json_string(nx_llm_member(root, "id"), &s) == 0 && s[0] != '\0')
    {
        id = s;
    }

    if (model == NULL) {
        if (nx_json_string(nx_llm_member(root, "model"), &model) != 0) {
            model = "";
        }
    }

    reason = NULL;
    (void) nx_json_string(nx_llm_member(root, "stop_reason"), &reason);

    nx_llm_usage_anthropic(nx_llm_member(root, "usage"), usage);

    if (nx_llm_put_head(out, id, created, model) != 0) {
        return -1;
    }

    /* the text blocks, one after the other; thinking and tools aside */

    for (i = 0; i < content->u.array.len; i++) {
        block = content->u.array.values[i];

        if (nx_json_string(nx_llm_member(block, "type"), &s) != 0
            || strcmp(s, "text") != 0
            || nx_json_string(nx_llm_member(block, "text"), &s) != 0)
        {
            continue;
        }

        if (nx_buf_append_json(out, s, strlen(s)) != 0) {
            return -1;
        }
    }

    return nx_llm_put_tail(out, nx_llm_finish_anthropic(reason), usage);
}


/* a chat.completion up to the opening quote of the content */

static int
nx_llm_put_head(nx_buf_t *out, const char *id, int64_t created,
    const char *model)
{
    if (nx_buf_append_str(out, "{\"id\":") != 0
        || nx_llm_put_cstr(out, id) != 0
        || nx_buf_append_str(out, ",\"object\":\"chat.completion\","
                                  "\"created\":") != 0
        || nx_llm_put_int(out, created) != 0
        || nx_buf_append_str(out, ",\"model\":") != 0
        || nx_llm_put_cstr(out, model) != 0
        || nx_buf_append_str(out, ",\"choices\":[{\"index\":0,\"message\":"
                                  "{\"role\":\"assistant\",\"content\":\"")
           != 0)
    {
        return -1;
    }

    return 0;
}


/* the rest of it, from the closing quote of the content */

static int
nx_llm_put_tail(nx_buf_t *out, const char *finish,
    const nx_llm_usage_t *usage)
{
    if (nx_buf_append_str(out, "\"},\"logprobs\":null,\"finish_reason\":")
        != 0
        || nx_llm_put_cstr(out, finish) != 0
        || nx_buf_append_str(out, "}],\"usage\":{\"prompt_tokens\":") != 0
        || nx_llm_put_int(out, usage->prompt) != 0
        || nx_buf_append_str(out, ",\"completion_tokens\":") != 0
        || nx_llm_put_int(out, usage->completion) != 0
        || nx_buf_append_str(out, ",\"total_tokens\":") != 0
        || nx_llm_put_int(out, usage->total) != 0
        || nx_buf_append_str(out, "}}") != 0)
    {
        return -1;
    }

    return 0;
}


static const char *
nx_llm_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 429:
        return "rate_limit_error";
    }

    if (status >= 500) {
        return "server_error";
    }

    if (status >= 400) {
        return "invalid_request_error";
    }

    return "upstream_error";
}


static const char *
nx_llm_error_message(int status)
{
    switch (status) {
    case 400:
    case 422:
        return "The upstream provider rejected the request.";
    case 401:
    case 403:
    case 407:
        return "The upstream provider refused the gateway's credentials.";
    case 404:
        return "The upstream provider does not serve this model or "
               "endpoint.";
    case 408:
    case 504:
        return "The upstream provider timed out.";
    case 413:
        return "The request is too large for the upstream provider.";
    case 429:
        return "The upstream provider is rate limiting requests; retry "
               "later.";
    case 500:
        return "The upstream provider failed.";
    case 502:
    case 503:
        return "The upstream provider is unavailable.";
    }

    return "The upstream provider returned an error.";
}


/* an identifier-like string (an error type or code), else NULL */

static const char *
nx_llm_token(yajl_val v)
{
    size_t        i;
    const char   *s;

    if (nx_json_string(v, &s) != 0) {
        return NULL;
    }

    for (i = 0; s[i] != '\0'; i++) {
        if (i == NX_LLM_TOKEN_MAX
            || !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
                 || (s[i] >= '0' && s[i] <= '9')
                 || s[i] == '_' || s[i] == '-' || s[i] == '.'))
        {
            return NULL;
        }
    }

    return i > 0 ? s : NULL;
}


/* a parameter path: printable ASCII, short */

static const char *
nx_llm_param(yajl_val v)
{
    size_t        i;
    const char   *s;

    if (nx_json_string(v, &s) != 0) {
        return NULL;
    }

    for (i = 0; s[i] != '\0'; i++) {
        if (i == NX_LLM_TOKEN_MAX || s[i] < 0x20 || s[i] > 0x7e) {
            return NULL;
        }
    }

    return i > 0 ? s : NULL;
}
