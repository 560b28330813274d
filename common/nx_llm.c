/*
 * Copyright (C) Nexus authors
 *
 * Validation of the requests clients send (OpenAI's chat completions and
 * embeddings, and Ollama's native chat and generate), the OpenAI error
 * body, the token estimate, and the JSON output helpers of nx_llm_int.h.
 *
 * Validation follows OpenAI's answers where it can: the same codes
 * (missing_required_parameter, invalid_type, ...) and parameter paths
 * such as "messages[2].content".  Messages name parameters, never the
 * values the client sent.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nx_llm_int.h"


#define NX_LLM_PATH_MAX  96


static int nx_llm_check_model(yajl_val root, nx_llm_req_t *req,
    nx_llm_err_t *err);
static int nx_llm_parse_chat(yajl_val root, nx_llm_req_t *req,
    nx_llm_err_t *err, size_t *bytes);
static int nx_llm_check_message(yajl_val m, size_t i, nx_llm_err_t *err,
    size_t *bytes);
static int nx_llm_check_content(yajl_val c, const char *role, size_t i,
    nx_llm_err_t *err, size_t *bytes);
static int nx_llm_parse_embeddings(yajl_val root, nx_llm_req_t *req,
    nx_llm_err_t *err, size_t *bytes, size_t *tokens);
static int nx_llm_check_input_array(yajl_val a, const char *path,
    nx_llm_err_t *err, size_t *bytes, size_t *tokens);
static int nx_llm_parse_native(yajl_val root, nx_llm_req_t *req,
    nx_llm_err_t *err, size_t *bytes);
static int nx_llm_opt_int(yajl_val root, const char *name, int64_t min,
    int64_t max, nx_llm_err_t *err, int64_t *out);
static int nx_llm_opt_bool(yajl_val root, const char *name, const char *path,
    nx_llm_err_t *err, int *out);
static int nx_llm_opt_number(yajl_val root, const char *name,
    nx_llm_err_t *err);
static void nx_llm_err_missing(nx_llm_err_t *err, const char *path);
static void nx_llm_err_type(nx_llm_err_t *err, const char *path,
    const char *expected);
static void nx_llm_err_empty(nx_llm_err_t *err, const char *path);
static int nx_llm_put_object(nx_buf_t *b, yajl_val v);


static const char  *nx_llm_roles[] = {
    "system", "developer", "user", "assistant", "tool", "function", NULL
};


int
nx_llm_parse(int kind, const char *body, size_t len, nx_llm_req_t *req,
    nx_llm_err_t *err)
{
    int        rc;
    char       ebuf[128];
    size_t     bytes, tokens;
    int64_t    est;
    yajl_val   root;

    memset(req, 0, sizeof(nx_llm_req_t));
    memset(err, 0, sizeof(nx_llm_err_t));

    req->kind = kind;
    req->max_tokens = -1;
    req->prompt_estimate = 1;

    if (kind < NX_LLM_CHAT || kind > NX_LLM_OLLAMA_GENERATE) {
        nx_llm_err_set(err, NULL, NULL, "Unsupported request kind.");
        return -1;
    }

    root = nx_json_parse_strict(body, len, ebuf, sizeof(ebuf));

    if (root == NULL) {
        /* nx_json's messages never quote the document */
        nx_llm_err_set(err, NULL, "invalid_json",
                       "We could not parse the JSON body of your request "
                       "(%s).", ebuf);
        return -1;
    }

    if (!YAJL_IS_OBJECT(root)) {
        nx_llm_err_set(err, NULL, "invalid_json",
                       "The request body must be a JSON object.");
        nx_json_free(root);
        return -1;
    }

    bytes = 0;
    tokens = 0;

    rc = nx_llm_check_model(root, req, err);

    if (rc == 0) {
        switch (kind) {

        case NX_LLM_CHAT:
            rc = nx_llm_parse_chat(root, req, err, &bytes);
            break;

        case NX_LLM_EMBEDDINGS:
            rc = nx_llm_parse_embeddings(root, req, err, &bytes, &tokens);
            break;

        default:
            rc = nx_llm_parse_native(root, req, err, &bytes);
            break;
        }
    }

    if (rc != 0) {
        nx_json_free(root);
        req->tree = NULL;
        return -1;
    }

    req->tree = root;

    est = nx_llm_estimate_tokens(bytes) + (int64_t) tokens;
    req->prompt_estimate = est > 0 ? est : 1;

    return 0;
}


void
nx_llm_req_free(nx_llm_req_t *req)
{
    if (req->tree != NULL) {
        nx_json_free(req->tree);
        req->tree = NULL;
    }
}


int
nx_llm_error_json(const nx_llm_err_t *err, const char *type, nx_buf_t *out)
{
    size_t  start;

    start = out->len;

    if (nx_buf_append_str(out, "{\"error\":{\"message\":") != 0
        || nx_llm_put_str(out, err->message,
                          strnlen(err->message, sizeof(err->message)))
           != 0
        || nx_buf_append_str(out, ",\"type\":") != 0
        || nx_llm_put_cstr(out, type != NULL ? type
                                             : "invalid_request_error")
           != 0
        || nx_buf_append_str(out, ",\"param\":") != 0
        || nx_llm_put_cstr(out, err->param[0] != '\0' ? err->param : NULL)
           != 0
        || nx_buf_append_str(out, ",\"code\":") != 0
        || nx_llm_put_cstr(out, err->code[0] != '\0' ? err->code : NULL)
           != 0
        || nx_buf_append_str(out, "}}") != 0)
    {
        out->len = start;
        return -1;
    }

    return 0;
}


int64_t
nx_llm_estimate_tokens(size_t bytes)
{
    if (bytes == 0) {
        return 0;
    }

    if (bytes / 4 >= (size_t) INT64_MAX) {
        return INT64_MAX;
    }

    return (int64_t) (bytes / 4) + (bytes % 4 != 0);
}


static int
nx_llm_check_model(yajl_val root, nx_llm_req_t *req, nx_llm_err_t *err)
{
    size_t       n;
    yajl_val     v;
    const char  *s;

    v = nx_llm_member(root, "model");

    if (v == NULL) {
        nx_llm_err_set(err, "model", "missing_required_parameter",
                       "You must provide a model parameter.");
        return -1;
    }

    if (nx_json_string(v, &s) != 0) {
        nx_llm_err_type(err, "model", "a string");
        return -1;
    }

    n = strlen(s);

    if (n == 0) {
        nx_llm_err_empty(err, "model");
        return -1;
    }

    if (n > NX_LLM_MODEL_MAX) {
        nx_llm_err_set(err, "model", "string_above_max_length",
                       "Invalid 'model': string too long; expected at most "
                       "%d bytes.", NX_LLM_MODEL_MAX);
        return -1;
    }

    memcpy(req->model, s, n + 1);

    return 0;
}


static int
nx_llm_parse_chat(yajl_val root, nx_llm_req_t *req, nx_llm_err_t *err,
    size_t *bytes)
{
    int       rc, usage;
    size_t    i;
    int64_t   n, mct, mt;
    yajl_val  msgs, so, opts;

    msgs = nx_llm_member(root, "messages");

    if (msgs == NULL) {
        nx_llm_err_missing(err, "messages");
        return -1;
    }

    if (!YAJL_IS_ARRAY(msgs)) {
        nx_llm_err_type(err, "messages", "an array");
        return -1;
    }

    if (msgs->u.array.len == 0) {
        nx_llm_err_set(err, "messages", "empty_array",
                       "Invalid 'messages': empty array; expected an array "
                       "with at least one element.");
        return -1;
    }

    for (i = 0; i < msgs->u.array.len; i++) {
        if (nx_llm_check_message(msgs->u.array.values[i], i, err, bytes)
            != 0)
        {
            return -1;
        }
    }

    if (nx_llm_opt_bool(root, "stream", "stream", err, &req->stream) < 0) {
        return -1;
    }

    so = nx_llm_member(root, "stream_options");

    if (so != NULL) {
        if (!YAJL_IS_OBJECT(so)) {
            nx_llm_err_type(err, "stream_options", "an object");
            return -1;
        }

        if (!req->stream) {
            nx_llm_err_set(err, "stream_options", "invalid_value",
                           "The 'stream_options' parameter is only allowed "
                           "when 'stream' is enabled.");
            return -1;
        }

        usage = 0;

        if (nx_llm_opt_bool(so, "include_usage",
                            "stream_options.include_usage", err, &usage)
            < 0)
        {
            return -1;
        }

        req->include_usage = usage;
    }

    rc = nx_llm_opt_int(root, "max_completion_tokens", 1, INT64_MAX, err,
                        &mct);
    if (rc < 0) {
        return -1;
    }

    if (rc == 0) {
        mct = -1;
    }

    rc = nx_llm_opt_int(root, "max_tokens", 1, INT64_MAX, err, &mt);
    if (rc < 0) {
        return -1;
    }

    if (rc == 0) {
        mt = -1;
    }

    if (nx_llm_opt_int(root, "n", 1, 128, err, &n) < 0
        || nx_llm_opt_number(root, "temperature", err) != 0
        || nx_llm_opt_number(root, "top_p", err) != 0)
    {
        return -1;
    }

    req->max_tokens = mct > 0 ? mct : mt;

    /* not OpenAI's, but Ollama's clients may send it to /v1 too */

    opts = nx_llm_member(root, "options");

    if (req->max_tokens < 0 && YAJL_IS_OBJECT(opts)
        && nx_json_int(nx_llm_member(opts, "num_predict"), &n) == 0 && n > 0)
    {
        req->max_tokens = n;
    }

    return 0;
}


/* "messages[i]" and what follows, for an error's param */

static const char *
nx_llm_msg_path(char *path, size_t i, const char *what)
{
    snprintf(path, NX_LLM_PATH_MAX, "messages[%zu]%s", i, what);
    return path;
}


static int
nx_llm_check_message(yajl_val m, size_t i, nx_llm_err_t *err, size_t *bytes)
{
    char          path[NX_LLM_PATH_MAX];
    size_t        k;
    yajl_val      v;
    const char   *role, *s;

    if (!YAJL_IS_OBJECT(m)) {
        nx_llm_err_type(err, nx_llm_msg_path(path, i, ""), "an object");
        return -1;
    }

    v = nx_llm_member(m, "role");

    if (v == NULL) {
        nx_llm_err_missing(err, nx_llm_msg_path(path, i, ".role"));
        return -1;
    }

    if (nx_json_string(v, &role) != 0) {
        nx_llm_err_type(err, nx_llm_msg_path(path, i, ".role"), "a string");
        return -1;
    }

    for (k = 0; nx_llm_roles[k] != NULL; k++) {
        if (strcmp(role, nx_llm_roles[k]) == 0) {
            break;
        }
    }

    if (nx_llm_roles[k] == NULL) {
        nx_llm_msg_path(path, i, ".role");
        nx_llm_err_set(err, path, "invalid_value",
                       "Invalid value for '%s': expected one of system, "
                       "developer, user, assistant, tool, function.", path);
        return -1;
    }

    if (nx_llm_check_content(m, role, i, err, bytes) != 0) {
        return -1;
    }

    v = nx_llm_member(m, "name");

    if (v != NULL && nx_json_string(v, &s) != 0) {
        nx_llm_err_type(err, nx_llm_msg_path(path, i, ".name"), "a string");
        return -1;
    }

    if (strcmp(role, "tool") == 0) {
        v = nx_llm_member(m, "tool_call_id");

        if (v == NULL) {
            nx_llm_err_missing(err, nx_llm_msg_path(path, i, ".tool_call_id"));
            return -1;
        }

        if (nx_json_string(v, &s) != 0) {
            nx_llm_err_type(err, nx_llm_msg_path(path, i, ".tool_call_id"),
                            "a string");
            return -1;
        }
    }

    return 0;
}


/*
 * A string, or a non-empty array of parts, each an object with a string
 * type (and a string text for a text part); null or nothing for an
 * assistant message (that may carry tool calls only), null for function.
 */

static int
nx_llm_check_content(yajl_val m, const char *role, size_t i,
    nx_llm_err_t *err, size_t *bytes)
{
    char          path[NX_LLM_PATH_MAX];
    size_t        k;
    yajl_val      c, part, v;
    const char   *s;

    c = nx_json_get(m, "content");

    if (c != NULL && nx_json_string(c, &s) == 0) {
        *bytes += strlen(s);
        return 0;
    }

    /* the path is only for an error, or for parts (less common) */
    nx_llm_msg_path(path, i, ".content");

    if (c == NULL) {
        if (strcmp(role, "assistant") == 0) {
            return 0;
        }

        nx_llm_err_missing(err, path);
        return -1;
    }

    if (YAJL_IS_NULL(c)) {
        if (strcmp(role, "assistant") == 0 || strcmp(role, "function") == 0)
        {
            return 0;
        }

        nx_llm_err_type(err, path, "a string or an array of parts");
        return -1;
    }

    if (!YAJL_IS_ARRAY(c)) {
        nx_llm_err_type(err, path, "a string or an array of parts");
        return -1;
    }

    if (c->u.array.len == 0) {
        nx_llm_err_set(err, path, "empty_array",
                       "Invalid '%s': empty array; expected an array with "
                       "at least one element.", path);
        return -1;
    }

    for (k = 0; k < c->u.array.len; k++) {
        part = c->u.array.values[k];

        if (!YAJL_IS_OBJECT(part)) {
            snprintf(path, sizeof(path), "messages[%zu].content[%zu]", i, k);
            nx_llm_err_type(err, path, "an object");
            return -1;
        }

        snprintf(path, sizeof(path), "messages[%zu].content[%zu].type", i, k);

        v = nx_llm_member(part, "type");

        if (v == NULL) {
            nx_llm_err_missing(err, path);
            return -1;
        }

        if (nx_json_string(v, &s) != 0) {
            nx_llm_err_type(err, path, "a string");
            return -1;
        }

        if (strcmp(s, "text") != 0) {
            continue;
        }

        snprintf(path, sizeof(path), "messages[%zu].content[%zu].text", i, k);

        v = nx_llm_member(part, "text");

        if (v == NULL) {
            nx_llm_err_missing(err, path);
            return -1;
        }

        if (nx_json_string(v, &s) != 0) {
            nx_llm_err_type(err, path, "a string");
            return -1;
        }

        *bytes += strlen(s);
    }

    return 0;
}


/*
 * input: a non-empty string, a non-empty array of non-empty strings or of
 * integers, or a non-empty array of such arrays.
 */

static int
nx_llm_parse_embeddings(yajl_val root, nx_llm_req_t *req, nx_llm_err_t *err,
    size_t *bytes, size_t *tokens)
{
    char          path[NX_LLM_PATH_MAX];
    size_t        k;
    yajl_val      in, e;
    const char   *s;

    (void) req;

    in = nx_llm_member(root, "input");

    if (in == NULL) {
        nx_llm_err_missing(err, "input");
        return -1;
    }

    if (nx_json_string(in, &s) == 0) {
        if (s[0] == '\0') {
            nx_llm_err_empty(err, "input");
            return -1;
        }

        *bytes += strlen(s);
        return 0;
    }

    if (!YAJL_IS_ARRAY(in)) {
        nx_llm_err_type(err, "input", "a string or an array");
        return -1;
    }

    if (in->u.array.len == 0 || !YAJL_IS_ARRAY(in->u.array.values[0])) {
        return nx_llm_check_input_array(in, "input", err, bytes, tokens);
    }

    for (k = 0; k < in->u.array.len; k++) {
        e = in->u.array.values[k];
        snprintf(path, sizeof(path), "input[%zu]", k);

        if (!YAJL_IS_ARRAY(e)) {
            nx_llm_err_type(err, path, "an array");
            return -1;
        }

        if (nx_llm_check_input_array(e, path, err, bytes, tokens) != 0) {
            return -1;
        }
    }

    return 0;
}


/* a non-empty array of non-empty strings, or of integers */

static int
nx_llm_check_input_array(yajl_val a, const char *path, nx_llm_err_t *err,
    size_t *bytes, size_t *tokens)
{
    char          epath[NX_LLM_PATH_MAX];
    size_t        k;
    int64_t       n;
    yajl_val      e;
    const char   *s;

    if (a->u.array.len == 0) {
        nx_llm_err_set(err, path, "empty_array",
                       "Invalid '%s': empty array; expected an array with "
                       "at least one element.", path);
        return -1;
    }

    for (k = 0; k < a->u.array.len; k++) {
        e = a->u.array.values[k];
        snprintf(epath, sizeof(epath), "%s[%zu]", path, k);

        if (YAJL_IS_STRING(a->u.array.values[0])) {
            if (nx_json_string(e, &s) != 0) {
                nx_llm_err_type(err, epath, "a string");
                return -1;
            }

            if (s[0] == '\0') {
                nx_llm_err_empty(err, epath);
                return -1;
            }

            *bytes += strlen(s);
            continue;
        }

        if (nx_json_int(e, &n) != 0 || n < 0) {
            nx_llm_err_type(err, epath, YAJL_IS_NUMBER(a->u.array.values[0])
                                        ? "a non-negative integer"
                                        : "a string or an integer");
            return -1;
        }

        (*tokens)++;
    }

    return 0;
}


/* Ollama's /api/chat and /api/generate, passed through */

static int
nx_llm_parse_native(yajl_val root, nx_llm_req_t *req, nx_llm_err_t *err,
    size_t *bytes)
{
    char          path[NX_LLM_PATH_MAX];
    size_t        i;
    int64_t       n;
    yajl_val      msgs, m, v, opts;
    const char   *s;

    req->stream = 1;

    if (nx_llm_opt_bool(root, "stream", "stream", err, &req->stream) < 0) {
        return -1;
    }

    opts = nx_llm_member(root, "options");

    if (opts != NULL) {
        if (!YAJL_IS_OBJECT(opts)) {
            nx_llm_err_type(err, "options", "an object");
            return -1;
        }

        v = nx_llm_member(opts, "num_predict");

        if (v != NULL && nx_json_int(v, &n) != 0) {
            nx_llm_err_type(err, "options.num_predict", "an integer");
            return -1;
        }

        if (v != NULL && n > 0) {
            req->max_tokens = n;
        }
    }

    if (req->kind == NX_LLM_OLLAMA_GENERATE) {
        v = nx_json_get(root, "prompt");

        if (v == NULL) {
            nx_llm_err_missing(err, "prompt");
            return -1;
        }

        if (nx_json_string(v, &s) != 0) {
            nx_llm_err_type(err, "prompt", "a string");
            return -1;
        }

        *bytes += strlen(s);

        v = nx_llm_member(root, "system");

        if (v != NULL) {
            if (nx_json_string(v, &s) != 0) {
                nx_llm_err_type(err, "system", "a string");
                return -1;
            }

            *bytes += strlen(s);
        }

        return 0;
    }

    msgs = nx_llm_member(root, "messages");

    if (msgs == NULL) {
        nx_llm_err_missing(err, "messages");
        return -1;
    }

    if (!YAJL_IS_ARRAY(msgs)) {
        nx_llm_err_type(err, "messages", "an array");
        return -1;
    }

    for (i = 0; i < msgs->u.array.len; i++) {
        m = msgs->u.array.values[i];

        if (!YAJL_IS_OBJECT(m)) {
            nx_llm_err_type(err, nx_llm_msg_path(path, i, ""), "an object");
            return -1;
        }

        v = nx_llm_member(m, "role");

        if (v == NULL) {
            nx_llm_err_missing(err, nx_llm_msg_path(path, i, ".role"));
            return -1;
        }

        if (nx_json_string(v, &s) != 0) {
            nx_llm_err_type(err, nx_llm_msg_path(path, i, ".role"),
                            "a string");
            return -1;
        }

        v = nx_llm_member(m, "content");

        if (v != NULL) {
            if (nx_json_string(v, &s) != 0) {
                nx_llm_err_type(err, nx_llm_msg_path(path, i, ".content"),
                                "a string");
                return -1;
            }

            *bytes += strlen(s);
        }
    }

    return 0;
}


/* 1 and *out set when present, 0 when absent or null, -1 when invalid */

static int
nx_llm_opt_int(yajl_val root, const char *name, int64_t min, int64_t max,
    nx_llm_err_t *err, int64_t *out)
{
    yajl_val  v;

    v = nx_llm_member(root, name);

    if (v == NULL) {
        return 0;
    }

    if (nx_json_int(v, out) != 0) {
        nx_llm_err_type(err, name, "an integer");
        return -1;
    }

    if (*out < min) {
        nx_llm_err_set(err, name, "integer_below_min_value",
                       "Invalid '%s': integer below minimum value; expected "
                       "a value of at least %lld.", name, (long long) min);
        return -1;
    }

    if (*out > max) {
        nx_llm_err_set(err, name, "integer_above_max_value",
                       "Invalid '%s': integer above maximum value; expected "
                       "a value of at most %lld.", name, (long long) max);
        return -1;
    }

    return 1;
}


static int
nx_llm_opt_bool(yajl_val root, const char *name, const char *path,
    nx_llm_err_t *err, int *out)
{
    yajl_val  v;

    v = nx_llm_member(root, name);

    if (v == NULL) {
        return 0;
    }

    if (nx_json_bool(v, out) != 0) {
        nx_llm_err_type(err, path, "a boolean");
        return -1;
    }

    return 1;
}


static int
nx_llm_opt_number(yajl_val root, const char *name, nx_llm_err_t *err)
{
    yajl_val  v;

    v = nx_llm_member(root, name);

    if (v != NULL && !YAJL_IS_NUMBER(v)) {
        nx_llm_err_type(err, name, "a number");
        return -1;
    }

    return 0;
}


static void
nx_llm_err_missing(nx_llm_err_t *err, const char *path)
{
    nx_llm_err_set(err, path, "missing_required_parameter",
                   "Missing required parameter: '%s'.", path);
}


static void
nx_llm_err_type(nx_llm_err_t *err, const char *path, const char *expected)
{
    nx_llm_err_set(err, path, "invalid_type",
                   "Invalid type for '%s': expected %s.", path, expected);
}


static void
nx_llm_err_empty(nx_llm_err_t *err, const char *path)
{
    nx_llm_err_set(err, path, "empty_string",
                   "Invalid '%s': empty string; expected a non-empty "
                   "string.", path);
}


void
nx_llm_err_set(nx_llm_err_t *err, const char *param, const char *code,
    const char *fmt, ...)
{
    va_list  ap;

    if (err == NULL) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);

    snprintf(err->param, sizeof(err->param), "%s",
             param != NULL ? param : "");
    snprintf(err->code, sizeof(err->code), "%s", code != NULL ? code : "");
}


yajl_val
nx_llm_member(yajl_val v, const char *name)
{
    yajl_val  m;

    m = nx_json_get(v, name);

    return YAJL_IS_NULL(m) ? NULL : m;
}


int
nx_llm_put_str(nx_buf_t *b, const char *s, size_t len)
{
    if (s == NULL) {
        return nx_buf_append(b, "null", 4);
    }

    if (nx_buf_append(b, "\"", 1) != 0
        || nx_buf_append_json(b, s, len) != 0
        || nx_buf_append(b, "\"", 1) != 0)
    {
        return -1;
    }

    return 0;
}


int
nx_llm_put_cstr(nx_buf_t *b, const char *s)
{
    return nx_llm_put_str(b, s, s != NULL ? strlen(s) : 0);
}


int
nx_llm_put_int(nx_buf_t *b, int64_t n)
{
    int   len;
    char  num[24];

    len = snprintf(num, sizeof(num), "%lld", (long long) n);

    return nx_buf_append(b, num, (size_t) len);
}


int
nx_llm_put_value(nx_buf_t *b, yajl_val v)
{
    size_t  i;

    if (v == NULL || YAJL_IS_NULL(v)) {
        return nx_buf_append(b, "null", 4);
    }

    if (YAJL_IS_TRUE(v)) {
        return nx_buf_append(b, "true", 4);
    }

    if (YAJL_IS_FALSE(v)) {
        return nx_buf_append(b, "false", 5);
    }

    if (YAJL_IS_STRING(v)) {
        return nx_llm_put_cstr(b, v->u.string != NULL ? v->u.string : "");
    }

    if (YAJL_IS_NUMBER(v)) {
        /* as written, so that 1e3 or 0.10 reach the upstream unchanged */
        return nx_buf_append_str(b, v->u.number.r != NULL ? v->u.number.r
                                                          : "0");
    }

    if (YAJL_IS_OBJECT(v)) {
        return nx_llm_put_object(b, v);
    }

    if (nx_buf_append(b, "[", 1) != 0) {
        return -1;
    }

    for (i = 0; i < v->u.array.len; i++) {
        if ((i > 0 && nx_buf_append(b, ",", 1) != 0)
            || nx_llm_put_value(b, v->u.array.values[i]) != 0)
        {
            return -1;
        }
    }

    return nx_buf_append(b, "]", 1);
}


static int
nx_llm_put_object(nx_buf_t *b, yajl_val v)
{
    size_t  i;

    if (nx_buf_append(b, "{", 1) != 0) {
        return -1;
    }

    for (i = 0; i < v->u.object.len; i++) {
        if ((i > 0 && nx_buf_append(b, ",", 1) != 0)
            || nx_llm_put_cstr(b, v->u.object.keys[i] != NULL
                                  ? v->u.object.keys[i] : "")
               != 0
            || nx_buf_append(b, ":", 1) != 0
            || nx_llm_put_value(b, v->u.object.values[i]) != 0)
        {
            return -1;
        }
    }

    return nx_buf_append(b, "}", 1);
}


size_t
nx_llm_utf8_prefix(const char *s, size_t len, size_t max)
{
    size_t  n;

    if (len <= max) {
        return len;
    }

    /* back over continuation bytes to the start of the cut sequence */

    n = max;

    while (n > 0 && max - n < 3 && ((unsigned char) s[n] & 0xc0) == 0x80) {
        n--;
    }

    return n;
}
