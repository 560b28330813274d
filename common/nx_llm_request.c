/*
 * Copyright (C) Nexus authors
 *
 * The request body each provider type gets, built from a validated
 * OpenAI-shaped (or native Ollama) request, and the path it goes to.
 *
 * openai     the client's object, members in their order, with "model"
 *            replaced and, for a stream, stream_options.include_usage set;
 *            the members the gateway decides on (model, stream,
 *            stream_options) are written once, where they last appear,
 *            since the gateway read the last one (nx_json_get)
 *   ollama     /api/chat and /api/embed bodies; native bodies as sent,
 *            with the model replaced
 *   anthropic  /v1/messages: system and developer messages gathered into
 *            "system", runs of messages of one role merged into one
 *            message of text blocks, stop into stop_sequences
 *
 * Tool calls and content other than text are refused for ollama and
 * anthropic: their shapes differ and a half translation would mislead.
 */

#include <stdio.h>
#include <string.h>

#include "nx_llm_int.h"


#define NX_LLM_PATH_MAX             96

/* Anthropic's max_tokens when neither the client nor the config gave one */
#define NX_LLM_ANTHROPIC_MAX_TOKENS  4096


static int nx_llm_build_openai(const nx_llm_req_t *req, const char *model,
    nx_buf_t *out);
static int nx_llm_put_stream_options(yajl_val so, nx_buf_t *out);
static int nx_llm_check_plain(const nx_llm_req_t *req, int type,
    nx_llm_err_t *err);
static int nx_llm_build_ollama_chat(const nx_llm_req_t *req,
    const char *model, nx_buf_t *out, nx_llm_err_t *err);
static int nx_llm_build_ollama_embed(const nx_llm_req_t *req,
    const char *model, nx_buf_t *out, nx_llm_err_t *err);
static int nx_llm_build_anthropic(const nx_llm_req_t *req, const char *model,
    int64_t max_tokens_default, nx_buf_t *out, nx_llm_err_t *err);
static int nx_llm_put_joined(nx_buf_t *out, yajl_val content,
    const char *sep);
static int nx_llm_put_blocks(nx_buf_t *out, yajl_val content, int *first);
static int nx_llm_has_text(yajl_val content);
static int nx_llm_put_stop(yajl_val root, const char *name, int *first,
    nx_buf_t *out, nx_llm_err_t *err);
static int nx_llm_put_member(nx_buf_t *out, int *first, const char *name);
static size_t nx_llm_last(yajl_val obj, const char *name);
static int nx_llm_non_empty(yajl_val v);
static const char *nx_llm_role(yajl_val m);


const char *
nx_llm_upstream_path(int type, int kind)
{
    switch (type) {

    case NX_LLM_OPENAI:
        if (kind == NX_LLM_CHAT) {
            return "/v1/chat/completions";
        }

        if (kind == NX_LLM_EMBEDDINGS) {
            return "/v1/embeddings";
        }

        break;

    case NX_LLM_OLLAMA:
        switch (kind) {
        case NX_LLM_CHAT:
        case NX_LLM_OLLAMA_CHAT:
            return "/api/chat";
        case NX_LLM_EMBEDDINGS:
            return "/api/embed";
        case NX_LLM_OLLAMA_GENERATE:
            return "/api/generate";
        }

        break;

    case NX_LLM_ANTHROPIC:
        if (kind == NX_LLM_CHAT) {
            return "/v1/messages";
        }

        break;
    }

    return NULL;
}


/*
 * On failure nothing is appended; err->message is empty when memory ran
 * out, and says why otherwise.
 */

int
nx_llm_build_request(const nx_llm_req_t *req, int type,
    const char *served_model, int64_t max_tokens_default, nx_buf_t *out,
    nx_llm_err_t *err)
{
    int          rc;
    size_t       start;
    const char  *model;

    memset(err, 0, sizeof(nx_llm_err_t));

    if (req->tree == NULL || !YAJL_IS_OBJECT(req->tree)) {
        nx_llm_err_set(err, NULL, NULL, "No valid request to send.");
        return -1;
    }

    if (nx_llm_upstream_path(type, req->kind) == NULL) {
        nx_llm_err_set(err, NULL, "unsupported_endpoint",
                       "This endpoint is not available for the provider of "
                       "this model.");
        return -1;
    }

    model = served_model != NULL && served_model[0] != '\0' ? served_model
                                                            : req->model;
    start = out->len;

    if (type == NX_LLM_OPENAI
        || req->kind == NX_LLM_OLLAMA_CHAT
        || req->kind == NX_LLM_OLLAMA_GENERATE)
    {
        rc = nx_llm_build_openai(req, model, out);

    } else if (type == NX_LLM_OLLAMA && req->kind == NX_LLM_EMBEDDINGS) {
        rc = nx_llm_build_ollama_embed(req, model, out, err);

    } else if (type == NX_LLM_OLLAMA) {
        rc = nx_llm_build_ollama_chat(req, model, out, err);

    } else {
        rc = nx_llm_build_anthropic(req, model, max_tokens_default, out,
                                    err);
    }

    if (rc != 0) {
        out->len = start;
        return -1;
    }

    return 0;
}


/*
 * The body nx_llm_build_request() would build says exactly what the
 * client's says, so the client's bytes can go as they are: an OpenAI
 * chat or embeddings call to an openai provider, for the model the client
 * named, not a stream (a stream is asked for usage), with nothing forced,
 * and with no member of those the build rewrites (model, stream,
 * stream_options) given twice, where an upstream reading the first of
 * two would see another request than the one Nexus checked.
 */

int
nx_llm_build_verbatim(const nx_llm_req_t *req, int type,
    const char *served_model)
{
    int          seen;
    size_t       i;
    const char  *key, *model, *sent;

    if (type != NX_LLM_OPENAI
        || (req->kind != NX_LLM_CHAT && req->kind != NX_LLM_EMBEDDINGS)
        || req->stream || req->max_tokens_forced
        || req->tree == NULL || !YAJL_IS_OBJECT(req->tree))
    {
        return 0;
    }

    /*
     * the model the build would write, against the one in the body: not
     * req->model, which a caller may have changed (a degraded request)
     */
    model = served_model != NULL && served_model[0] != '\0' ? served_model
                                                            : req->model;

    if (nx_json_string(nx_json_get(req->tree, "model"), &sent) != 0
        || strcmp(model, sent) != 0)
    {
        return 0;
    }

    seen = 0;

    for (i = 0; i < req->tree->u.object.len; i++) {
        key = req->tree->u.object.keys[i];

        if (key[0] != 'm' && key[0] != 's') {
            continue;
        }

        if (strcmp(key, "model") == 0) {
            if (seen & 1) {
                return 0;
            }

            seen |= 1;

        } else if (strcmp(key, "stream") == 0) {
            if (seen & 2) {
                return 0;
            }

            seen |= 2;

        } else if (strcmp(key, "stream_options") == 0) {
            if (seen & 4) {
                return 0;
            }

            seen |= 4;
        }
    }

    return 1;
}


/* the client's body, model replaced; also native Ollama bodies */

static int
nx_llm_build_openai(const nx_llm_req_t *req, const char *model,
    nx_buf_t *out)
{
    int          first, usage, forced;
    size_t       i, last_model, last_stream, last_so;
    yajl_val     root;
    const char  *key, *mt_name;

    root = req->tree;
    first = 1;

    /* a capped chat: the client's limits are replaced by ours */
    forced = req->max_tokens_forced && req->max_tokens > 0
             && req->kind == NX_LLM_CHAT;
    mt_name = "max_tokens";

    /* only an OpenAI stream is asked for usage */
    usage = req->stream && req->kind == NX_LLM_CHAT;

    last_model = nx_llm_last(root, "model");
    last_stream = nx_llm_last(root, "stream");
    last_so = nx_llm_last(root, "stream_options");

    if (nx_buf_append(out, "{", 1) != 0) {
        return -1;
    }

    for (i = 0; i < root->u.object.len; i++) {
        key = root->u.object.keys[i];

        if (strcmp(key, "model") == 0) {
            if (i != last_model) {
                continue;
            }

            if (nx_llm_put_member(out, &first, "model") != 0
                || nx_llm_put_cstr(out, model) != 0)
            {
                return -1;
            }

            continue;
        }

        if ((strcmp(key, "stream") == 0 && i != last_stream)
            || (strcmp(key, "stream_options") == 0 && i != last_so))
        {
            continue;
        }

        if (forced && (strcmp(key, "max_tokens") == 0
                       || strcmp(key, "max_completion_tokens") == 0))
        {
            /* the name a newer model insists on is kept */
            if (key[4] == 'c') {
                mt_name = "max_completion_tokens";
            }

            continue;
        }

        if (nx_llm_put_member(out, &first, key) != 0) {
            return -1;
        }

        if (usage && i == last_so) {
            if (nx_llm_put_stream_options(root->u.object.values[i], out)
                != 0)
            {
                return -1;
            }

            continue;
        }

        if (nx_llm_put_value(out, root->u.object.values[i]) != 0) {
            return -1;
        }
    }

    if (usage && last_so == (size_t) -1) {
        if (nx_llm_put_member(out, &first, "stream_options") != 0
            || nx_llm_put_stream_options(NULL, out) != 0)
        {
            return -1;
        }
    }

    if (forced
        && (nx_llm_put_member(out, &first, mt_name) != 0
            || nx_llm_put_int(out, req->max_tokens) != 0))
    {
        return -1;
    }

    return nx_buf_append(out, "}", 1);
}


/* the client's stream_options, with include_usage true */

static int
nx_llm_put_stream_options(yajl_val so, nx_buf_t *out)
{
    int     first;
    size_t  i;

    first = 1;

    if (nx_buf_append(out, "{", 1) != 0) {
        return -1;
    }

    if (YAJL_IS_OBJECT(so)) {
        for (i = 0; i < so->u.object.len; i++) {
            if (strcmp(so->u.object.keys[i], "include_usage") == 0) {
                continue;
            }

            if (nx_llm_put_member(out, &first, so->u.object.keys[i]) != 0
                || nx_llm_put_value(out, so->u.object.values[i]) != 0)
            {
                return -1;
            }
        }
    }

    if (nx_llm_put_member(out, &first, "include_usage") != 0
        || nx_buf_append_str(out, "true}") != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * What ollama and anthropic cannot take from an OpenAI chat request: tool
 * calls, content parts other than text, several choices; and anthropic
 * has no JSON mode.
 */

static int
nx_llm_check_plain(const nx_llm_req_t *req, int type, nx_llm_err_t *err)
{
    char          path[NX_LLM_PATH_MAX];
    size_t        i, k;
    int64_t       n;
    yajl_val      root, msgs, m, c, part, rf;
    const char   *role, *s;

    root = req->tree;

    if (nx_llm_non_empty(nx_llm_member(root, "tools"))
        || nx_llm_non_empty(nx_llm_member(root, "functions")))
    {
        nx_llm_err_set(err, nx_llm_member(root, "tools") != NULL
                            ? "tools" : "functions",
                       "unsupported_parameter",
                       "Tool calls are not supported by the provider of "
                       "this model.");
        return -1;
    }

    if (nx_json_int(nx_llm_member(root, "n"), &n) == 0 && n != 1) {
        nx_llm_err_set(err, "n", "unsupported_value",
                       "Only one choice (n=1) is supported by the provider "
                       "of this model.");
        return -1;
    }

    rf = nx_llm_member(root, "response_format");

    if (rf != NULL) {
        s = NULL;
        (void) nx_json_string(nx_llm_member(rf, "type"), &s);

        if (s == NULL
            || (strcmp(s, "text") != 0
                && (type == NX_LLM_ANTHROPIC
                    || (strcmp(s, "json_object") != 0
                        && strcmp(s, "json_schema") != 0))))
        {
            nx_llm_err_set(err, "response_format", "unsupported_value",
                           "This response_format is not supported by the "
                           "provider of this model.");
            return -1;
        }
    }

    msgs = nx_llm_member(root, "messages");

    for (i = 0; i < msgs->u.array.len; i++) {
        m = msgs->u.array.values[i];
        role = nx_llm_role(m);

        if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0) {
            snprintf(path, sizeof(path), "messages[%zu].role", i);
            nx_llm_err_set(err, path, "unsupported_value",
                           "Tool messages are not supported by the provider "
                           "of this model.");
            return -1;
        }

        if (nx_llm_non_empty(nx_llm_member(m, "tool_calls"))
            || nx_llm_member(m, "function_call") != NULL)
        {
            snprintf(path, sizeof(path), "messages[%zu].%s", i,
                     nx_llm_member(m, "function_call") != NULL
                     ? "function_call" : "tool_calls");
            nx_llm_err_set(err, path, "unsupported_parameter",
                           "Tool calls are not supported by the provider of "
                           "this model.");
            return -1;
        }

        c = nx_llm_member(m, "content");

        if (!YAJL_IS_ARRAY(c)) {
            continue;
        }

        for (k = 0; k < c->u.array.len; k++) {
            part = c->u.array.values[k];

            if (nx_json_string(nx_llm_member(part, "type"), &s) == 0
                && strcmp(s, "text") == 0)
            {
                continue;
            }

            snprintf(path, sizeof(path), "messages[%zu].content[%zu].type",
                     i, k);
            nx_llm_err_set(err, path, "unsupported_value",
                           "Only text content is supported by the provider "
                           "of this model.");
            return -1;
        }
    }

    return 0;
}


static int
nx_llm_build_ollama_chat(const nx_llm_req_t *req, const char *model,
    nx_buf_t *out, nx_llm_err_t *err)
{
    int           ofirst;
    size_t        i;
    int64_t       seed;
    yajl_val      root, msgs, m, v, rf;
    const char   *role, *s;

    if (nx_llm_check_plain(req, NX_LLM_OLLAMA, err) != 0) {
        return -1;
    }

    root = req->tree;
    msgs = nx_llm_member(root, "messages");

    if (nx_buf_append_str(out, "{\"model\":") != 0
        || nx_llm_put_cstr(out, model) != 0
        || nx_buf_append_str(out, ",\"messages\":[") != 0)
    {
        return -1;
    }

    for (i = 0; i < msgs->u.array.len; i++) {
        m = msgs->u.array.values[i];
        role = nx_llm_role(m);

        if (strcmp(role, "developer") == 0) {
            role = "system";
        }

        if ((i > 0 && nx_buf_append(out, ",", 1) != 0)
            || nx_buf_append_str(out, "{\"role\":") != 0
            || nx_llm_put_cstr(out, role) != 0
            || nx_buf_append_str(out, ",\"content\":") != 0
            || nx_llm_put_joined(out, nx_llm_member(m, "content"), "\n")
               != 0
            || nx_buf_append(out, "}", 1) != 0)
        {
            return -1;
        }
    }

    /* Ollama streams unless told not to */

    if (nx_buf_append_str(out, req->stream ? "],\"stream\":true"
                                           : "],\"stream\":false")
        != 0)
    {
        return -1;
    }

    rf = nx_llm_member(root, "response_format");

    if (rf != NULL
        && nx_json_string(nx_llm_member(rf, "type"), &s) == 0
        && strcmp(s, "text") != 0)
    {
        if (strcmp(s, "json_object") == 0) {
            v = NULL;

        } else {
            v = nx_llm_member(nx_llm_member(rf, "json_schema"), "schema");

            if (!YAJL_IS_OBJECT(v)) {
                nx_llm_err_set(err, "response_format.json_schema.schema",
                               "invalid_value",
                               "A JSON schema object is required.");
                return -1;
            }
        }

        if (nx_buf_append_str(out, ",\"format\":") != 0
            || (v == NULL ? nx_buf_append_str(out, "\"json\"")
                          : nx_llm_put_value(out, v))
               != 0)
        {
            return -1;
        }
    }

    if (nx_buf_append_str(out, ",\"options\":{") != 0) {
        return -1;
    }

    ofirst = 1;

    if (req->max_tokens > 0) {
        if (nx_llm_put_member(out, &ofirst, "num_predict") != 0
            || nx_llm_put_int(out, req->max_tokens) != 0)
        {
            return -1;
        }
    }

    v = nx_llm_member(root, "temperature");

    if (v != NULL
        && (nx_llm_put_member(out, &ofirst, "temperature") != 0
            || nx_llm_put_value(out, v) != 0))
    {
        return -1;
    }

    v = nx_llm_member(root, "top_p");

    if (v != NULL
        && (nx_llm_put_member(out, &ofirst, "top_p") != 0
            || nx_llm_put_value(out, v) != 0))
    {
        return -1;
    }

    if (nx_llm_put_stop(root, "stop", &ofirst, out, err) != 0) {
        return -1;
    }

    v = nx_llm_member(root, "seed");

    if (v != NULL) {
        if (nx_json_int(v, &seed) != 0) {
            nx_llm_err_set(err, "seed", "invalid_type",
                           "Invalid type for 'seed': expected an integer.");
            return -1;
        }

        if (nx_llm_put_member(out, &ofirst, "seed") != 0
            || nx_llm_put_int(out, seed) != 0)
        {
            return -1;
        }
    }

    /* an empty options object is still valid */

    return nx_buf_append_str(out, "}}");
}


static int
nx_llm_build_ollama_embed(const nx_llm_req_t *req, const char *model,
    nx_buf_t *out, nx_llm_err_t *err)
{
    yajl_val      root, in, v;
    const char   *s;

    root = req->tree;
    in = nx_llm_member(root, "input");

    if (YAJL_IS_ARRAY(in) && !YAJL_IS_STRING(in->u.array.values[0])) {
        nx_llm_err_set(err, "input", "unsupported_value",
                       "The provider of this model takes text input, not "
                       "token arrays.");
        return -1;
    }

    v = nx_llm_member(root, "encoding_format");

    if (v != NULL
        && (nx_json_string(v, &s) != 0 || strcmp(s, "float") != 0))
    {
        nx_llm_err_set(err, "encoding_format", "unsupported_value",
                       "The provider of this model returns float "
                       "embeddings only.");
        return -1;
    }

    if (nx_llm_member(root, "dimensions") != NULL) {
        nx_llm_err_set(err, "dimensions", "unsupported_parameter",
                       "The provider of this model does not take "
                       "'dimensions'.");
        return -1;
    }

    if (nx_buf_append_str(out, "{\"model\":") != 0
        || nx_llm_put_cstr(out, model) != 0
        || nx_buf_append_str(out, ",\"input\":") != 0
        || nx_llm_put_value(out, in) != 0
        || nx_buf_append(out, "}", 1) != 0)
    {
        return -1;
    }

    return 0;
}


static int
nx_llm_build_anthropic(const nx_llm_req_t *req, const char *model,
    int64_t max_tokens_default, nx_buf_t *out, nx_llm_err_t *err)
{
    int           first, bfirst, sys;
    size_t        i, kept;
    int64_t       max;
    yajl_val      root, msgs, m, c, v;
    const char   *role, *last;

    if (nx_llm_check_plain(req, NX_LLM_ANTHROPIC, err) != 0) {
        return -1;
    }

    root = req->tree;
    msgs = nx_llm_member(root, "messages");

    max = req->max_tokens > 0 ? req->max_tokens
        : max_tokens_default > 0 ? max_tokens_default
        : NX_LLM_ANTHROPIC_MAX_TOKENS;

    if (nx_buf_append_str(out, "{\"model\":") != 0
        || nx_llm_put_cstr(out, model) != 0
        || nx_buf_append_str(out, ",\"max_tokens\":") != 0
        || nx_llm_put_int(out, max) != 0)
    {
        return -1;
    }

    /* system and developer messages, wherever they are, in order */

    sys = 0;

    for (i = 0; i < msgs->u.array.len; i++) {
        m = msgs->u.array.values[i];
        role = nx_llm_role(m);
        c = nx_llm_member(m, "content");

        if ((strcmp(role, "system") != 0 && strcmp(role, "developer") != 0)
            || !nx_llm_has_text(c))
        {
            continue;
        }

        if ((sys ? nx_buf_append_json(out, "\n\n", 2)
                 : nx_buf_append_str(out, ",\"system\":\""))
            != 0)
        {
            return -1;
        }

        /* joined inside one string: the quotes are written around it */

        if (YAJL_IS_STRING(c)) {
            if (nx_buf_append_json(out, c->u.string, strlen(c->u.string))
                != 0)
            {
                return -1;
            }

        } else {
            if (nx_llm_put_joined(out, c, NULL) != 0) {
                return -1;
            }
        }

        sys = 1;
    }

    if (sys && nx_buf_append(out, "\"", 1) != 0) {
        return -1;
    }

    /*
     * user and assistant messages; consecutive ones of one role become
     * one message, as the Messages API wants roles to alternate, and
     * messages without text are left out
     */

    if (nx_buf_append_str(out, ",\"messages\":[") != 0) {
        return -1;
    }

    last = NULL;
    kept = 0;
    bfirst = 1;

    for (i = 0; i < msgs->u.array.len; i++) {
        m = msgs->u.array.values[i];
        role = nx_llm_role(m);
        c = nx_llm_member(m, "content");

        if ((strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)
            || !nx_llm_has_text(c))
        {
            continue;
        }

        if (last == NULL || strcmp(last, role) != 0) {
            if ((kept > 0 && nx_buf_append_str(out, "]},") != 0)
                || nx_buf_append_str(out, "{\"role\":") != 0
                || nx_llm_put_cstr(out, role) != 0
                || nx_buf_append_str(out, ",\"content\":[") != 0)
            {
                return -1;
            }

            last = role;
            kept++;
            bfirst = 1;
        }

        if (nx_llm_put_blocks(out, c, &bfirst) != 0) {
            return -1;
        }
    }

    if (kept == 0) {
        nx_llm_err_set(err, "messages", "invalid_value",
                       "The provider of this model needs at least one user "
                       "or assistant message with text.");
        return -1;
    }

    if (nx_buf_append_str(out, "]}]") != 0) {
        return -1;
    }

    first = 0;

    if (req->stream && nx_buf_append_str(out, ",\"stream\":true") != 0) {
        return -1;
    }

    v = nx_llm_member(root, "temperature");

    if (v != NULL
        && (nx_llm_put_member(out, &first, "temperature") != 0
            || nx_llm_put_value(out, v) != 0))
    {
        return -1;
    }

    v = nx_llm_member(root, "top_p");

    if (v != NULL
        && (nx_llm_put_member(out, &first, "top_p") != 0
            || nx_llm_put_value(out, v) != 0))
    {
        return -1;
    }

    if (nx_llm_put_stop(root, "stop_sequences", &first, out, err) != 0) {
        return -1;
    }

    return nx_buf_append(out, "}", 1);
}


/*
 * The text of a content (a string, or the text parts of an array joined
 * with sep) as a JSON string; with sep NULL, escaped without quotes and
 * joined with LF.  null or nothing is "".
 */

static int
nx_llm_put_joined(nx_buf_t *out, yajl_val content, const char *sep)
{
    int           quoted, any;
    size_t        k;
    const char   *s;

    quoted = (sep != NULL);

    if (sep == NULL) {
        sep = "\n";
    }

    if (quoted && nx_buf_append(out, "\"", 1) != 0) {
        return -1;
    }

    if (nx_json_string(content, &s) == 0) {
        if (nx_buf_append_json(out, s, strlen(s)) != 0) {
            return -1;
        }

    } else if (YAJL_IS_ARRAY(content)) {
        any = 0;

        for (k = 0; k < content->u.array.len; k++) {
            if (nx_json_string(nx_llm_member(content->u.array.values[k],
                                             "text"), &s)
                != 0)
            {
                continue;
            }

            if ((any && nx_buf_append_json(out, sep, strlen(sep)) != 0)
                || nx_buf_append_json(out, s, strlen(s)) != 0)
            {
                return -1;
            }

            any = 1;
        }
    }

    if (quoted && nx_buf_append(out, "\"", 1) != 0) {
        return -1;
    }

    return 0;
}


/* the non-empty texts of a content as Anthropic text blocks */

static int
nx_llm_put_blocks(nx_buf_t *out, yajl_val content, int *first)
{
    size_t        k, n;
    yajl_val      t;
    const char   *s;

    n = YAJL_IS_ARRAY(content) ? content->u.array.len : 1;

    for (k = 0; k < n; k++) {
        t = YAJL_IS_ARRAY(content)
            ? nx_llm_member(content->u.array.values[k], "text") : content;

        if (nx_json_string(t, &s) != 0 || s[0] == '\0') {
            continue;
        }

        if ((!*first && nx_buf_append(out, ",", 1) != 0)
            || nx_buf_append_str(out, "{\"type\":\"text\",\"text\":") != 0
            || nx_llm_put_cstr(out, s) != 0
            || nx_buf_append(out, "}", 1) != 0)
        {
            return -1;
        }

        *first = 0;
    }

    return 0;
}


static int
nx_llm_has_text(yajl_val content)
{
    size_t        k;
    const char   *s;

    if (nx_json_string(content, &s) == 0) {
        return s[0] != '\0';
    }

    if (!YAJL_IS_ARRAY(content)) {
        return 0;
    }

    for (k = 0; k < content->u.array.len; k++) {
        if (nx_json_string(nx_llm_member(content->u.array.values[k], "text"),
                           &s)
            == 0
            && s[0] != '\0')
        {
            return 1;
        }
    }

    return 0;
}


/* OpenAI's stop (a string or an array of strings) as an array */

static int
nx_llm_put_stop(yajl_val root, const char *name, int *first, nx_buf_t *out,
    nx_llm_err_t *err)
{
    size_t    k;
    yajl_val  stop;

    stop = nx_llm_member(root, "stop");

    if (stop == NULL) {
        return 0;
    }

    if (YAJL_IS_ARRAY(stop)) {
        for (k = 0; k < stop->u.array.len; k++) {
            if (!YAJL_IS_STRING(stop->u.array.values[k])) {
                break;
            }
        }

        if (k == stop->u.array.len) {
            if (k == 0) {
                return 0;
            }

            return nx_llm_put_member(out, first, name) != 0
                   || nx_llm_put_value(out, stop) != 0 ? -1 : 0;
        }

    } else if (YAJL_IS_STRING(stop)) {
        return nx_llm_put_member(out, first, name) != 0
               || nx_buf_append(out, "[", 1) != 0
               || nx_llm_put_value(out, stop) != 0
               || nx_buf_append(out, "]", 1) != 0 ? -1 : 0;
    }

    nx_llm_err_set(err, "stop", "invalid_type",
                   "Invalid type for 'stop': expected a string or an array "
                   "of strings.");
    return -1;
}


/* ,"name": (without the comma for the first member) */

static int
nx_llm_put_member(nx_buf_t *out, int *first, const char *name)
{
    if (!*first && nx_buf_append(out, ",", 1) != 0) {
        return -1;
    }

    *first = 0;

    if (nx_llm_put_cstr(out, name) != 0 || nx_buf_append(out, ":", 1) != 0) {
        return -1;
    }

    return 0;
}


/* the index of the last member called name, (size_t) -1 when none */

static size_t
nx_llm_last(yajl_val obj, const char *name)
{
    size_t  i;

    for (i = obj->u.object.len; i > 0; i--) {
        if (strcmp(obj->u.object.keys[i - 1], name) == 0) {
            return i - 1;
        }
    }

    return (size_t) -1;
}


static int
nx_llm_non_empty(yajl_val v)
{
    if (v == NULL) {
        return 0;
    }

    return !YAJL_IS_ARRAY(v) || v->u.array.len > 0;
}


/* the role of a validated message */

static const char *
nx_llm_role(yajl_val m)
{
    const char  *role;

    if (nx_json_string(nx_llm_member(m, "role"), &role) != 0) {
        return "";
    }

    return role;
}
