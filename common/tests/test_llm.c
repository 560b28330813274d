/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_llm: request validation (errors and their parameter
 * paths), the error body, the token estimate, the request body for each
 * provider type, the translation of whole responses and errors, and of
 * streams (framed with nx_stream, as the module does); model lists.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nx_llm.h"
#include "nx_stream.h"


/* helpers */

static void
parse_ok(int kind, const char *body, nx_llm_req_t *req)
{
    int           rc;
    nx_llm_err_t  err;

    rc = nx_llm_parse(kind, body, strlen(body), req, &err);
    if (rc != 0) {
        print_error("parse of %s failed: %s (%s)\n", body, err.message,
                    err.param);
    }

    assert_int_equal(rc, 0);
    assert_non_null(req->tree);
}


static void
parse_bad(int kind, const char *body, const char *param, const char *code)
{
    int           rc;
    nx_llm_req_t  req;
    nx_llm_err_t  err;

    rc = nx_llm_parse(kind, body, strlen(body), &req, &err);
    if (rc == 0) {
        print_error("parse of %s succeeded\n", body);
    }

    assert_int_equal(rc, -1);
    assert_null(req.tree);
    assert_true(strlen(err.message) > 0);

    if (strcmp(err.param, param) != 0 || strcmp(err.code, code) != 0) {
        print_error("%s: got param \"%s\" code \"%s\" (%s)\n", body,
                    err.param, err.code, err.message);
        fail();
    }

    /* freeing a failed request is harmless */
    nx_llm_req_free(&req);
}


/* a valid JSON document, returned parsed */

static yajl_val
json_ok(const char *p, size_t len)
{
    char      ebuf[128];
    yajl_val  v;

    v = nx_json_parse(p, len, ebuf, sizeof(ebuf));
    if (v == NULL) {
        print_error("not JSON (%s): %.*s\n", ebuf, (int) len, p);
    }

    assert_non_null(v);

    return v;
}


static void
buf_is(const nx_buf_t *b, const char *expect)
{
    if (b->len != strlen(expect)
        || (b->len != 0 && memcmp(b->data, expect, b->len) != 0))
    {
        fprintf(stderr, "got  %.*s\nwant %s\n", (int) b->len,
                b->data != NULL ? b->data : "", expect);
        fail();
    }
}


#define CHAT  NX_LLM_CHAT
#define EMB   NX_LLM_EMBEDDINGS
#define OCHAT NX_LLM_OLLAMA_CHAT
#define OGEN  NX_LLM_OLLAMA_GENERATE


/* validation */

static void
test_parse_chat_ok(void **state)
{
    nx_llm_req_t  req;

    (void) state;

    parse_ok(CHAT, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"Hello there, how are you?\"}]}", &req);
    assert_string_equal(req.model, "gpt-4o");
    assert_int_equal(req.kind, CHAT);
    assert_int_equal(req.stream, 0);
    assert_int_equal(req.include_usage, 0);
    assert_int_equal(req.max_tokens, -1);
    assert_int_equal(req.prompt_estimate, 7);     /* 25 bytes */
    nx_llm_req_free(&req);
    assert_null(req.tree);
    nx_llm_req_free(&req);

    parse_ok(CHAT, "{\"model\":\"m\",\"stream\":true,\"stream_options\":"
             "{\"include_usage\":true},\"max_tokens\":100,"
             "\"max_completion_tokens\":50,\"n\":1,\"temperature\":0.5,"
             "\"top_p\":1,\"messages\":["
             "{\"role\":\"system\",\"content\":\"abcd\"},"
             "{\"role\":\"developer\",\"content\":\"abcd\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
             "\"text\":\"abcd\"},{\"type\":\"image_url\",\"image_url\":"
             "{\"url\":\"https://x/y.png\"}}]},"
             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
             "{\"role\":\"assistant\"},"
             "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"ab\"},"
             "{\"role\":\"function\",\"name\":\"f\",\"content\":null}]}",
             &req);
    assert_int_equal(req.stream, 1);
    assert_int_equal(req.include_usage, 1);
    assert_int_equal(req.max_tokens, 50);
    assert_int_equal(req.prompt_estimate, 4);     /* 14 bytes */
    nx_llm_req_free(&req);

    /* nulls are as good as absent */
    parse_ok(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"\"}],\"stream\":null,\"stream_options\":null,"
             "\"max_tokens\":null,\"n\":null,\"temperature\":null}", &req);
    assert_int_equal(req.stream, 0);
    assert_int_equal(req.max_tokens, -1);
    assert_int_equal(req.prompt_estimate, 1);
    nx_llm_req_free(&req);

    parse_ok(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"x\"}],\"max_tokens\":7e1,\"stream\":true}", &req);
    assert_int_equal(req.max_tokens, 70);
    assert_int_equal(req.stream, 1);
    assert_int_equal(req.include_usage, 0);
    nx_llm_req_free(&req);

    parse_ok(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"x\"}],\"stream\":true,\"stream_options\":{}}",
             &req);
    assert_int_equal(req.include_usage, 0);
    nx_llm_req_free(&req);
}


static void
test_parse_chat_errors(void **state)
{
    char  body[512];

    (void) state;

    parse_bad(CHAT, "", "", "invalid_json");
    parse_bad(CHAT, "{\"model\":", "", "invalid_json");
    parse_bad(CHAT, "[1]", "", "invalid_json");
    parse_bad(CHAT, "\"x\"", "", "invalid_json");
    parse_bad(CHAT, "{\"model\":\"m\\u0000\",\"messages\":[]}", "",
              "invalid_json");

    parse_bad(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
              "model", "missing_required_parameter");
    parse_bad(CHAT, "{\"model\":null}", "model",
              "missing_required_parameter");
    parse_bad(CHAT, "{\"model\":7}", "model", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"\"}", "model", "empty_string");

    memset(body, 0, sizeof(body));
    strcpy(body, "{\"model\":\"");
    memset(body + 10, 'a', 129);
    strcat(body, "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    parse_bad(CHAT, body, "model", "string_above_max_length");

    parse_bad(CHAT, "{\"model\":\"m\"}", "messages",
              "missing_required_parameter");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":{}}", "messages",
              "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages",
              "empty_array");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"x\"},\"hi\"]}", "messages[1]", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
              "messages[0].role", "missing_required_parameter");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":1,"
              "\"content\":\"x\"}]}", "messages[0].role", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"x\"},{\"role\":\"robot\",\"content\":\"x\"}]}",
              "messages[1].role", "invalid_value");

    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
              "messages[0].content", "missing_required_parameter");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":null}]}", "messages[0].content", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},"
              "{\"role\":\"user\",\"content\":5}]}", "messages[2].content",
              "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":[]}]}", "messages[0].content", "empty_array");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":[\"x\"]}]}", "messages[0].content[0]",
              "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":[{\"text\":\"x\"}]}]}",
              "messages[0].content[0].type", "missing_required_parameter");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":[{\"type\":\"text\",\"text\":\"x\"},"
              "{\"type\":\"text\"}]}]}", "messages[0].content[1].text",
              "missing_required_parameter");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":[{\"type\":\"text\",\"text\":[]}]}]}",
              "messages[0].content[0].text", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"x\",\"name\":1}]}", "messages[0].name",
              "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\","
              "\"content\":\"x\"}]}", "messages[0].tool_call_id",
              "missing_required_parameter");

#define MSGS  "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"

    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":1}", "stream",
              "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":\"true\"}",
              "stream", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"stream_options\":"
              "{\"include_usage\":true}}", "stream_options", "invalid_value");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":false,"
              "\"stream_options\":{}}", "stream_options", "invalid_value");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":true,"
              "\"stream_options\":true}", "stream_options", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":true,"
              "\"stream_options\":{\"include_usage\":1}}",
              "stream_options.include_usage", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":0}",
              "max_tokens", "integer_below_min_value");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1.5}",
              "max_tokens", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":\"5\"}",
              "max_tokens", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"max_completion_tokens\":-1}",
              "max_completion_tokens", "integer_below_min_value");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":0}", "n",
              "integer_below_min_value");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"n\":129}", "n",
              "integer_above_max_value");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"temperature\":\"hot\"}",
              "temperature", "invalid_type");
    parse_bad(CHAT, "{\"model\":\"m\"," MSGS ",\"top_p\":true}", "top_p",
              "invalid_type");
}


static void
test_parse_no_client_values(void **state)
{
    int           rc;
    nx_llm_req_t  req;
    nx_llm_err_t  err;

    static const char  *bodies[] = {
        "{\"model\":\"SECRET\",\"messages\":[{\"role\":\"SECRET\","
        "\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\"}],\"max_tokens\":\"SECRET\"}",
        "{\"model\":\"m\",\"messages\":\"SECRET\"}",
        "{\"model\":\"SECRET\" \"SECRET\"}",
        "SECRET",
        "{\"model\":\"m\",\"input\":[\"SECRET\",7]}",
        NULL
    };

    (void) state;

    for (rc = 0; bodies[rc] != NULL; rc++) {
        assert_int_equal(nx_llm_parse(rc < 5 ? CHAT : EMB, bodies[rc],
                                      strlen(bodies[rc]), &req, &err), -1);
        assert_null(strstr(err.message, "SECRET"));
        assert_null(strstr(err.message, "secret"));
        assert_null(strchr(err.message, '\n'));
    }
}


static void
test_parse_embeddings(void **state)
{
    nx_llm_req_t  req;

    (void) state;

    parse_ok(EMB, "{\"model\":\"e\",\"input\":\"12345678\"}", &req);
    assert_int_equal(req.prompt_estimate, 2);
    assert_int_equal(req.stream, 0);
    assert_int_equal(req.max_tokens, -1);
    nx_llm_req_free(&req);

    parse_ok(EMB, "{\"model\":\"e\",\"input\":[\"1234\",\"5678\",\"9\"]}",
             &req);
    assert_int_equal(req.prompt_estimate, 3);
    nx_llm_req_free(&req);

    parse_ok(EMB, "{\"model\":\"e\",\"input\":[1,2,3,4,5]}", &req);
    assert_int_equal(req.prompt_estimate, 5);
    nx_llm_req_free(&req);

    parse_ok(EMB, "{\"model\":\"e\",\"input\":[[1,2],[3]]}", &req);
    assert_int_equal(req.prompt_estimate, 3);
    nx_llm_req_free(&req);

    parse_ok(EMB, "{\"model\":\"e\",\"input\":[[\"ab\"],[\"cd\"]]}", &req);
    assert_int_equal(req.prompt_estimate, 1);
    nx_llm_req_free(&req);

    parse_bad(EMB, "{\"model\":\"e\"}", "input",
              "missing_required_parameter");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":null}", "input",
              "missing_required_parameter");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":\"\"}", "input",
              "empty_string");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[]}", "input", "empty_array");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":5}", "input", "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":{}}", "input", "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[\"a\",\"\"]}", "input[1]",
              "empty_string");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[\"a\",1]}", "input[1]",
              "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[1,\"a\"]}", "input[1]",
              "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[1,-2]}", "input[1]",
              "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[1.5]}", "input[0]",
              "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[true]}", "input[0]",
              "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[[1],2]}", "input[1]",
              "invalid_type");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[[1],[]]}", "input[1]",
              "empty_array");
    parse_bad(EMB, "{\"model\":\"e\",\"input\":[[1],[1,\"a\"]]}",
              "input[1][1]", "invalid_type");
    parse_bad(EMB, "{\"input\":\"x\"}", "model",
              "missing_required_parameter");
}


static void
test_parse_native(void **state)
{
    nx_llm_req_t  req;

    (void) state;

    parse_ok(OCHAT, "{\"model\":\"llama3\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"12345\"}]}", &req);
    assert_int_equal(req.stream, 1);
    assert_int_equal(req.max_tokens, -1);
    assert_int_equal(req.prompt_estimate, 2);
    assert_string_equal(req.model, "llama3");
    nx_llm_req_free(&req);

    parse_ok(OCHAT, "{\"model\":\"llama3\",\"messages\":[],\"stream\":false,"
             "\"options\":{\"num_predict\":64,\"temperature\":0.1}}", &req);
    assert_int_equal(req.stream, 0);
    assert_int_equal(req.max_tokens, 64);
    assert_int_equal(req.prompt_estimate, 1);
    nx_llm_req_free(&req);

    parse_ok(OCHAT, "{\"model\":\"l\",\"messages\":[{\"role\":\"x\","
             "\"images\":[\"aGk=\"]}],\"options\":{\"num_predict\":-1}}",
             &req);
    assert_int_equal(req.max_tokens, -1);
    nx_llm_req_free(&req);

    parse_ok(OGEN, "{\"model\":\"l\",\"prompt\":\"1234\",\"system\":\"5678\","
             "\"stream\":true}", &req);
    assert_int_equal(req.stream, 1);
    assert_int_equal(req.prompt_estimate, 2);
    assert_int_equal(req.kind, OGEN);
    nx_llm_req_free(&req);

    parse_ok(OGEN, "{\"model\":\"l\",\"prompt\":\"\"}", &req);
    nx_llm_req_free(&req);

    parse_bad(OCHAT, "{\"model\":\"l\"}", "messages",
              "missing_required_parameter");
    parse_bad(OCHAT, "{\"model\":\"l\",\"messages\":{}}", "messages",
              "invalid_type");
    parse_bad(OCHAT, "{\"model\":\"l\",\"messages\":[1]}", "messages[0]",
              "invalid_type");
    parse_bad(OCHAT, "{\"model\":\"l\",\"messages\":[{\"content\":\"x\"}]}",
              "messages[0].role", "missing_required_parameter");
    parse_bad(OCHAT, "{\"model\":\"l\",\"messages\":[{\"role\":\"user\","
              "\"content\":[]}]}", "messages[0].content", "invalid_type");
    parse_bad(OCHAT, "{\"model\":\"l\",\"messages\":[],\"stream\":\"no\"}",
              "stream", "invalid_type");
    parse_bad(OCHAT, "{\"model\":\"l\",\"messages\":[],\"options\":[]}",
              "options", "invalid_type");
    parse_bad(OCHAT, "{\"model\":\"l\",\"messages\":[],\"options\":"
              "{\"num_predict\":\"9\"}}", "options.num_predict",
              "invalid_type");
    parse_bad(OGEN, "{\"model\":\"l\"}", "prompt",
              "missing_required_parameter");
    parse_bad(OGEN, "{\"model\":\"l\",\"prompt\":null}", "prompt",
              "invalid_type");
    parse_bad(OGEN, "{\"model\":\"l\",\"prompt\":\"x\",\"system\":1}",
              "system", "invalid_type");
    parse_bad(OGEN, "{\"prompt\":\"x\"}", "model",
              "missing_required_parameter");
}


static void
test_parse_kind(void **state)
{
    nx_llm_req_t  req;
    nx_llm_err_t  err;

    (void) state;

    assert_int_equal(nx_llm_parse(9, "{}", 2, &req, &err), -1);
    assert_null(req.tree);
    assert_true(strlen(err.message) > 0);
    assert_int_equal(nx_llm_parse(-1, "{}", 2, &req, &err), -1);
}


static void
test_error_json(void **state)
{
    nx_buf_t      b = NX_BUF_INIT;
    nx_llm_err_t  err;
    yajl_val      v;

    (void) state;

    memset(&err, 0, sizeof(err));
    strcpy(err.message, "Missing \"x\"");
    strcpy(err.param, "messages[2].content");
    strcpy(err.code, "invalid_type");

    assert_int_equal(nx_llm_error_json(&err, NULL, &b), 0);
    buf_is(&b, "{\"error\":{\"message\":\"Missing \\\"x\\\"\","
           "\"type\":\"invalid_request_error\","
           "\"param\":\"messages[2].content\",\"code\":\"invalid_type\"}}");

    nx_buf_reset(&b);
    err.param[0] = '\0';
    err.code[0] = '\0';
    assert_int_equal(nx_llm_error_json(&err, "server_error", &b), 0);
    buf_is(&b, "{\"error\":{\"message\":\"Missing \\\"x\\\"\","
           "\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    v = json_ok(b.data, b.len);
    nx_json_free(v);

    /* appended */
    assert_int_equal(nx_llm_error_json(&err, "t", &b), 0);
    assert_true(b.len > 100);

    nx_buf_free(&b);
}


static void
test_estimate(void **state)
{
    (void) state;

    assert_int_equal(nx_llm_estimate_tokens(0), 0);
    assert_int_equal(nx_llm_estimate_tokens(1), 1);
    assert_int_equal(nx_llm_estimate_tokens(4), 1);
    assert_int_equal(nx_llm_estimate_tokens(5), 2);
    assert_int_equal(nx_llm_estimate_tokens(4000), 1000);
    assert_true(nx_llm_estimate_tokens(SIZE_MAX) > 0);
}


/* request bodies */

static void
build_ok(int kind, const char *body, int type, const char *served,
    int64_t def, const char *expect)
{
    int           rc;
    nx_buf_t      b = NX_BUF_INIT;
    yajl_val      v;
    nx_llm_req_t  req;
    nx_llm_err_t  err;

    parse_ok(kind, body, &req);

    rc = nx_llm_build_request(&req, type, served, def, &b, &err);
    if (rc != 0) {
        print_error("build failed: %s (%s)\n", err.message, err.param);
    }

    assert_int_equal(rc, 0);
    buf_is(&b, expect);

    v = json_ok(b.data, b.len);
    nx_json_free(v);

    nx_buf_free(&b);
    nx_llm_req_free(&req);
}


static void
build_bad(int kind, const char *body, int type, const char *param,
    const char *code)
{
    int           rc;
    nx_buf_t      b = NX_BUF_INIT;
    nx_llm_req_t  req;
    nx_llm_err_t  err;

    parse_ok(kind, body, &req);

    assert_int_equal(nx_buf_append_str(&b, "kept"), 0);

    rc = nx_llm_build_request(&req, type, "served", 100, &b, &err);
    assert_int_equal(rc, -1);
    buf_is(&b, "kept");
    assert_true(strlen(err.message) > 0);

    if (strcmp(err.param, param) != 0 || strcmp(err.code, code) != 0) {
        print_error("%s: got param \"%s\" code \"%s\" (%s)\n", body,
                    err.param, err.code, err.message);
        fail();
    }

    nx_buf_free(&b);
    nx_llm_req_free(&req);
}


#define USER_HI  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"


/* the same JSON value, member for member */

static int
json_same(yajl_val a, yajl_val b)
{
    size_t  i;

    if (a->type != b->type) {
        return 0;
    }

    switch (a->type) {

    case yajl_t_string:
        return strcmp(a->u.string, b->u.string) == 0;

    case yajl_t_number:
        return strcmp(a->u.number.r, b->u.number.r) == 0;

    case yajl_t_object:
        if (a->u.object.len != b->u.object.len) {
            return 0;
        }

        for (i = 0; i < a->u.object.len; i++) {
            if (strcmp(a->u.object.keys[i], b->u.object.keys[i]) != 0
                || !json_same(a->u.object.values[i], b->u.object.values[i]))
            {
                return 0;
            }
        }

        return 1;

    case yajl_t_array:
        if (a->u.array.len != b->u.array.len) {
            return 0;
        }

        for (i = 0; i < a->u.array.len; i++) {
            if (!json_same(a->u.array.values[i], b->u.array.values[i])) {
                return 0;
            }
        }

        return 1;

    default:
        return 1;
    }
}


/*
 * Whether the client's bytes may go as they are; when they may, the body
 * the build makes must be the client's, value for value.
 */

static void
verbatim_is(int kind, const char *body, int type, const char *served,
    int expect)
{
    nx_buf_t      b = NX_BUF_INIT;
    yajl_val      built, sent;
    nx_llm_req_t  req;
    nx_llm_err_t  err;

    parse_ok(kind, body, &req);

    if (nx_llm_build_verbatim(&req, type, served) != expect) {
        print_error("%s: verbatim should be %d\n", body, expect);
        fail();
    }

    if (expect) {
        assert_int_equal(nx_llm_build_request(&req, type, served, 0, &b,
                                              &err), 0);
        built = json_ok(b.data, b.len);
        sent = json_ok(body, strlen(body));
        assert_true(json_same(built, sent));
        nx_json_free(built);
        nx_json_free(sent);
        nx_buf_free(&b);
    }

    nx_llm_req_free(&req);
}


static void
test_build_verbatim(void **state)
{
    nx_llm_req_t  req;

    (void) state;

    verbatim_is(CHAT, "{\"model\":\"a\"," USER_HI "}", NX_LLM_OPENAI, "a", 1);
    verbatim_is(CHAT, "{\"model\":\"a\"," USER_HI ",\"max_tokens\":9,"
                "\"temperature\":0.5,\"x\":[1,{\"y\":null}],\"x\":2}",
                NX_LLM_OPENAI, "a", 1);
    verbatim_is(CHAT, "{\"model\":\"a\",\"stream\":false," USER_HI "}",
                NX_LLM_OPENAI, NULL, 1);
    verbatim_is(NX_LLM_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"hi\"}",
                NX_LLM_OPENAI, "e", 1);

    /* the served name differs, or the provider speaks another language */
    verbatim_is(CHAT, "{\"model\":\"a\"," USER_HI "}", NX_LLM_OPENAI, "b", 0);
    verbatim_is(CHAT, "{\"model\":\"a\"," USER_HI "}", NX_LLM_OLLAMA, "a", 0);
    verbatim_is(CHAT, "{\"model\":\"a\"," USER_HI "}", NX_LLM_ANTHROPIC, "a",
                0);

    /* a stream is asked for usage */
    verbatim_is(CHAT, "{\"model\":\"a\",\"stream\":true," USER_HI "}",
                NX_LLM_OPENAI, "a", 0);

    /* a member the build keeps one of, given twice */
    verbatim_is(CHAT, "{\"model\":\"b\",\"model\":\"a\"," USER_HI "}",
                NX_LLM_OPENAI, "a", 0);
    verbatim_is(CHAT, "{\"model\":\"a\",\"stream\":true,\"stream\":false,"
                USER_HI "}", NX_LLM_OPENAI, "a", 0);
    verbatim_is(CHAT, "{\"model\":\"a\",\"stream\":false,\"stream\":false,"
                USER_HI "}", NX_LLM_OPENAI, "a", 0);

    /* a capped request */
    parse_ok(CHAT, "{\"model\":\"a\"," USER_HI "}", &req);
    req.max_tokens = 5;
    req.max_tokens_forced = 1;
    assert_int_equal(nx_llm_build_verbatim(&req, NX_LLM_OPENAI, "a"), 0);
    nx_llm_req_free(&req);

    /* a request sent to another model (degraded): the body's is not it */
    parse_ok(CHAT, "{\"model\":\"a\"," USER_HI "}", &req);
    memcpy(req.model, "cheap", sizeof("cheap"));
    assert_int_equal(nx_llm_build_verbatim(&req, NX_LLM_OPENAI, NULL), 0);
    assert_int_equal(nx_llm_build_verbatim(&req, NX_LLM_OPENAI, "cheap"), 0);
    assert_int_equal(nx_llm_build_verbatim(&req, NX_LLM_OPENAI, "a"), 1);
    nx_llm_req_free(&req);
}


/* a request the caller capped: max_tokens replaced, or added */

static void
build_forced(const char *body, int type, int64_t cap, const char *expect)
{
    nx_buf_t      b = NX_BUF_INIT;
    nx_llm_req_t  req;
    nx_llm_err_t  err;

    parse_ok(CHAT, body, &req);

    req.max_tokens = cap;
    req.max_tokens_forced = 1;

    assert_int_equal(nx_llm_build_request(&req, type, "cheap", 0, &b, &err),
                     0);
    buf_is(&b, expect);

    nx_buf_free(&b);
    nx_llm_req_free(&req);
}


static void
test_build_forced(void **state)
{
    (void) state;

    build_forced("{\"model\":\"a\"," USER_HI ",\"max_tokens\":900}",
                 NX_LLM_OPENAI, 64,
                 "{\"model\":\"cheap\"," USER_HI ",\"max_tokens\":64}");

    build_forced("{\"model\":\"a\"," USER_HI "}", NX_LLM_OPENAI, 64,
                 "{\"model\":\"cheap\"," USER_HI ",\"max_tokens\":64}");

    /* both sent: one left, under the name a newer model insists on */
    build_forced("{\"max_tokens\":5,\"model\":\"a\",\"max_completion_tokens\""
                 ":900," USER_HI "}", NX_LLM_OPENAI, 64,
                 "{\"model\":\"cheap\"," USER_HI ","
                 "\"max_completion_tokens\":64}");

    build_forced("{\"model\":\"a\"," USER_HI ",\"max_tokens\":900}",
                 NX_LLM_OLLAMA, 64,
                 "{\"model\":\"cheap\"," USER_HI ",\"stream\":false,"
                 "\"options\":{\"num_predict\":64}}");
}


static void
test_build_openai(void **state)
{
    (void) state;

    build_ok(CHAT, "{\"model\":\"alias\"," USER_HI ",\"temperature\":0.70,"
             "\"max_tokens\":1e3,\"x\":{\"y\":[1,true,null,"
             "\"\\/\\u00e9\\n\"]}}",
             NX_LLM_OPENAI, "gpt-4o", 0,
             "{\"model\":\"gpt-4o\"," USER_HI ",\"temperature\":0.70,"
             "\"max_tokens\":1e3,\"x\":{\"y\":[1,true,null,"
             "\"/\xc3\xa9\\u000a\"]}}");

    /* a stream asks for usage, whatever the client said */
    build_ok(CHAT, "{\"stream\":true,\"model\":\"a\"," USER_HI "}",
             NX_LLM_OPENAI, "b", 0,
             "{\"stream\":true,\"model\":\"b\"," USER_HI ","
             "\"stream_options\":{\"include_usage\":true}}");

    build_ok(CHAT, "{\"model\":\"a\",\"stream_options\":{\"include_usage\":"
             "false,\"x\":1},\"stream\":true," USER_HI "}",
             NX_LLM_OPENAI, "b", 0,
             "{\"model\":\"b\",\"stream_options\":{\"x\":1,"
             "\"include_usage\":true},\"stream\":true," USER_HI "}");

    build_ok(CHAT, "{\"model\":\"a\",\"stream_options\":null,\"stream\":true,"
             USER_HI "}", NX_LLM_OPENAI, "b", 0,
             "{\"model\":\"b\",\"stream_options\":{\"include_usage\":true},"
             "\"stream\":true," USER_HI "}");

    /* no stream: stream_options as sent */
    build_ok(CHAT, "{\"model\":\"a\",\"stream\":false,"
             "\"stream_options\":null," USER_HI "}", NX_LLM_OPENAI, "b", 0,
             "{\"model\":\"b\",\"stream\":false,\"stream_options\":null,"
             USER_HI "}");

    /* the members the gateway decided on are sent once, the last */
    build_ok(CHAT, "{\"model\":\"cheap\",\"stream\":false," USER_HI ","
             "\"model\":\"other\",\"stream\":true}", NX_LLM_OPENAI, "s", 0,
             "{" USER_HI ",\"model\":\"s\",\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true}}");

    /* no served name: the client's */
    build_ok(CHAT, "{\"model\":\"a\"," USER_HI "}", NX_LLM_OPENAI, NULL, 0,
             "{\"model\":\"a\"," USER_HI "}");
    build_ok(CHAT, "{\"model\":\"a\"," USER_HI "}", NX_LLM_OPENAI, "", 0,
             "{\"model\":\"a\"," USER_HI "}");

    build_ok(EMB, "{\"input\":[\"a\",\"b\"],\"model\":\"e\","
             "\"encoding_format\":\"base64\"}", NX_LLM_OPENAI,
             "text-embedding-3-small", 0,
             "{\"input\":[\"a\",\"b\"],\"model\":\"text-embedding-3-small\","
             "\"encoding_format\":\"base64\"}");

    build_bad(OCHAT, "{\"model\":\"l\",\"messages\":[]}", NX_LLM_OPENAI, "",
              "unsupported_endpoint");
    build_bad(OGEN, "{\"model\":\"l\",\"prompt\":\"\"}", NX_LLM_ANTHROPIC, "",
              "unsupported_endpoint");
    build_bad(EMB, "{\"model\":\"e\",\"input\":\"x\"}", NX_LLM_ANTHROPIC, "",
              "unsupported_endpoint");
}


static void
test_build_ollama(void **state)
{
    (void) state;

    build_ok(CHAT, "{\"model\":\"a\",\"messages\":["
             "{\"role\":\"developer\",\"content\":\"be brief\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
             "\"text\":\"one\"},{\"type\":\"text\",\"text\":\"two\"}]},"
             "{\"role\":\"assistant\",\"content\":null},"
             "{\"role\":\"user\",\"content\":\"three\",\"name\":\"bob\"}],"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
             "\"max_tokens\":20,\"temperature\":0.2,\"top_p\":0.9,"
             "\"stop\":\"END\",\"seed\":42,\"response_format\":"
             "{\"type\":\"json_object\"},\"user\":\"u1\"}",
             NX_LLM_OLLAMA, "llama3.2:1b", 0,
             "{\"model\":\"llama3.2:1b\",\"messages\":["
             "{\"role\":\"system\",\"content\":\"be brief\"},"
             "{\"role\":\"user\",\"content\":\"one\\u000atwo\"},"
             "{\"role\":\"assistant\",\"content\":\"\"},"
             "{\"role\":\"user\",\"content\":\"three\"}],\"stream\":true,"
             "\"format\":\"json\",\"options\":{\"num_predict\":20,"
             "\"temperature\":0.2,\"top_p\":0.9,\"stop\":[\"END\"],"
             "\"seed\":42}}");

    /* Ollama streams by default: false is said */
    build_ok(CHAT, "{\"model\":\"a\"," USER_HI ",\"stop\":[\"x\",\"y\"],"
             "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
             "{\"name\":\"n\",\"schema\":{\"type\":\"object\"}}}}",
             NX_LLM_OLLAMA, "m", 0,
             "{\"model\":\"m\"," USER_HI ",\"stream\":false,"
             "\"format\":{\"type\":\"object\"},"
             "\"options\":{\"stop\":[\"x\",\"y\"]}}");

    build_ok(CHAT, "{\"model\":\"a\"," USER_HI ",\"tools\":[],"
             "\"response_format\":{\"type\":\"text\"},\"n\":1,\"stop\":[]}",
             NX_LLM_OLLAMA, "m", 0,
             "{\"model\":\"m\"," USER_HI ",\"stream\":false,"
             "\"options\":{}}");

    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"tools\":[{\"type\":"
              "\"function\",\"function\":{\"name\":\"f\"}}]}", NX_LLM_OLLAMA,
              "tools", "unsupported_parameter");
    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"functions\":[{}]}",
              NX_LLM_OLLAMA, "functions", "unsupported_parameter");
    build_bad(CHAT, "{\"model\":\"a\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":"
              "[{\"id\":\"t\"}]},{\"role\":\"tool\",\"tool_call_id\":\"t\","
              "\"content\":\"r\"}]}", NX_LLM_OLLAMA,
              "messages[1].tool_calls", "unsupported_parameter");
    build_bad(CHAT, "{\"model\":\"a\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"x\"},{\"role\":\"tool\",\"tool_call_id\":\"t\","
              "\"content\":\"r\"}]}", NX_LLM_OLLAMA, "messages[1].role",
              "unsupported_value");
    build_bad(CHAT, "{\"model\":\"a\",\"messages\":[{\"role\":\"user\","
              "\"content\":[{\"type\":\"text\",\"text\":\"x\"},{\"type\":"
              "\"image_url\",\"image_url\":{\"url\":\"u\"}}]}]}",
              NX_LLM_OLLAMA, "messages[0].content[1].type",
              "unsupported_value");
    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"n\":2}", NX_LLM_OLLAMA,
              "n", "unsupported_value");
    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"stop\":5}",
              NX_LLM_OLLAMA, "stop", "invalid_type");
    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"stop\":[\"a\",1]}",
              NX_LLM_OLLAMA, "stop", "invalid_type");
    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"seed\":1.5}",
              NX_LLM_OLLAMA, "seed", "invalid_type");
    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"response_format\":"
              "{\"type\":\"xml\"}}", NX_LLM_OLLAMA, "response_format",
              "unsupported_value");
    build_bad(CHAT, "{\"model\":\"a\"," USER_HI ",\"response_format\":"
              "{\"type\":\"json_schema\"}}", NX_LLM_OLLAMA,
              "response_format.json_schema.schema", "invalid_value");

    build_ok(EMB, "{\"model\":\"e\",\"input\":\"hello\"}", NX_LLM_OLLAMA,
             "nomic-embed-text", 0,
             "{\"model\":\"nomic-embed-text\",\"input\":\"hello\"}");
    build_ok(EMB, "{\"model\":\"e\",\"input\":[\"a\",\"b\"],"
             "\"encoding_format\":\"float\",\"user\":\"u\"}", NX_LLM_OLLAMA,
             "n", 0, "{\"model\":\"n\",\"input\":[\"a\",\"b\"]}");
    build_bad(EMB, "{\"model\":\"e\",\"input\":[1,2]}", NX_LLM_OLLAMA,
              "input", "unsupported_value");
    build_bad(EMB, "{\"model\":\"e\",\"input\":[[\"a\"]]}", NX_LLM_OLLAMA,
              "input", "unsupported_value");
    build_bad(EMB, "{\"model\":\"e\",\"input\":\"a\",\"encoding_format\":"
              "\"base64\"}", NX_LLM_OLLAMA, "encoding_format",
              "unsupported_value");
    build_bad(EMB, "{\"model\":\"e\",\"input\":\"a\",\"dimensions\":8}",
              NX_LLM_OLLAMA, "dimensions", "unsupported_parameter");

    /* native bodies pass, the model replaced */
    build_ok(OCHAT, "{\"model\":\"alias\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\",\"images\":[\"aGk=\"]}],\"keep_alive\":\"5m\","
             "\"options\":{\"num_ctx\":4096}}", NX_LLM_OLLAMA, "llama3", 0,
             "{\"model\":\"llama3\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\",\"images\":[\"aGk=\"]}],\"keep_alive\":\"5m\","
             "\"options\":{\"num_ctx\":4096}}");
    build_ok(OGEN, "{\"prompt\":\"hi\",\"model\":\"alias\",\"stream\":false,"
             "\"raw\":true}", NX_LLM_OLLAMA, "llama3", 0,
             "{\"prompt\":\"hi\",\"model\":\"llama3\",\"stream\":false,"
             "\"raw\":true}");
}


static void
test_build_anthropic(void **state)
{
    (void) state;

    build_ok(CHAT, "{\"model\":\"claude\",\"messages\":["
             "{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":\"one\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
             "\"text\":\"two\"},{\"type\":\"text\",\"text\":\"\"}]},"
             "{\"role\":\"developer\",\"content\":[{\"type\":\"text\","
             "\"text\":\"Say \\\"hi\\\".\"},{\"type\":\"text\","
             "\"text\":\"Only.\"}]},"
             "{\"role\":\"assistant\",\"content\":\"three\"},"
             "{\"role\":\"assistant\",\"content\":null},"
             "{\"role\":\"user\",\"content\":\"\"},"
             "{\"role\":\"assistant\",\"content\":\"four\"},"
             "{\"role\":\"user\",\"content\":\"five\"}],"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
             "\"temperature\":0.5,\"top_p\":1,\"stop\":\"STOP\","
             "\"user\":\"u\"}",
             NX_LLM_ANTHROPIC, "claude-3-5-haiku-latest", 1024,
             "{\"model\":\"claude-3-5-haiku-latest\",\"max_tokens\":1024,"
             "\"system\":\"Be brief.\\u000a\\u000aSay \\\"hi\\\"."
             "\\u000aOnly.\","
             "\"messages\":["
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
             "\"text\":\"one\"},{\"type\":\"text\",\"text\":\"two\"}]},"
             "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
             "\"text\":\"three\"},{\"type\":\"text\",\"text\":\"four\"}]},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
             "\"text\":\"five\"}]}],"
             "\"stream\":true,\"temperature\":0.5,\"top_p\":1,"
             "\"stop_sequences\":[\"STOP\"]}");

    /* the client's max wins; without any, a fixed one */
    build_ok(CHAT, "{\"model\":\"c\"," USER_HI ",\"max_completion_tokens\":7,"
             "\"stop\":[\"a\",\"b\"]}", NX_LLM_ANTHROPIC, "s", 1024,
             "{\"model\":\"s\",\"max_tokens\":7,\"messages\":[{\"role\":"
             "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
             "\"stop_sequences\":[\"a\",\"b\"]}");
    build_ok(CHAT, "{\"model\":\"c\"," USER_HI "}", NX_LLM_ANTHROPIC, "s", 0,
             "{\"model\":\"s\",\"max_tokens\":4096,\"messages\":[{\"role\":"
             "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}");

    build_bad(CHAT, "{\"model\":\"c\",\"messages\":[{\"role\":\"system\","
              "\"content\":\"x\"}]}", NX_LLM_ANTHROPIC, "messages",
              "invalid_value");
    build_bad(CHAT, "{\"model\":\"c\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"\"}]}", NX_LLM_ANTHROPIC, "messages",
              "invalid_value");
    build_bad(CHAT, "{\"model\":\"c\"," USER_HI ",\"response_format\":"
              "{\"type\":\"json_object\"}}", NX_LLM_ANTHROPIC,
              "response_format", "unsupported_value");
    build_bad(CHAT, "{\"model\":\"c\",\"messages\":[{\"role\":\"user\","
              "\"content\":\"x\"},{\"role\":\"function\",\"name\":\"f\","
              "\"content\":\"r\"}]}", NX_LLM_ANTHROPIC, "messages[1].role",
              "unsupported_value");
    build_bad(CHAT, "{\"model\":\"c\",\"messages\":[{\"role\":\"assistant\","
              "\"function_call\":{\"name\":\"f\"}}]}", NX_LLM_ANTHROPIC,
              "messages[0].function_call", "unsupported_parameter");
    build_bad(CHAT, "{\"model\":\"c\"," USER_HI ",\"tools\":[{}]}",
              NX_LLM_ANTHROPIC, "tools", "unsupported_parameter");
}


static void
test_upstream_path(void **state)
{
    (void) state;

    assert_string_equal(nx_llm_upstream_path(NX_LLM_OPENAI, CHAT),
                        "/v1/chat/completions");
    assert_string_equal(nx_llm_upstream_path(NX_LLM_OPENAI, EMB),
                        "/v1/embeddings");
    assert_null(nx_llm_upstream_path(NX_LLM_OPENAI, OCHAT));
    assert_null(nx_llm_upstream_path(NX_LLM_OPENAI, OGEN));

    assert_string_equal(nx_llm_upstream_path(NX_LLM_OLLAMA, CHAT),
                        "/api/chat");
    assert_string_equal(nx_llm_upstream_path(NX_LLM_OLLAMA, EMB),
                        "/api/embed");
    assert_string_equal(nx_llm_upstream_path(NX_LLM_OLLAMA, OCHAT),
                        "/api/chat");
    assert_string_equal(nx_llm_upstream_path(NX_LLM_OLLAMA, OGEN),
                        "/api/generate");

    assert_string_equal(nx_llm_upstream_path(NX_LLM_ANTHROPIC, CHAT),
                        "/v1/messages");
    assert_null(nx_llm_upstream_path(NX_LLM_ANTHROPIC, EMB));
    assert_null(nx_llm_upstream_path(NX_LLM_ANTHROPIC, OCHAT));
    assert_null(nx_llm_upstream_path(NX_LLM_ANTHROPIC, OGEN));

    assert_null(nx_llm_upstream_path(7, CHAT));
    assert_null(nx_llm_upstream_path(NX_LLM_OPENAI, 9));
}


/* whole responses */

static void
response_ok(int type, int kind, const char *body, const char *model,
    const char *expect, int64_t prompt, int64_t completion, int64_t total,
    int present)
{
    int             rc;
    nx_buf_t        b = NX_BUF_INIT;
    yajl_val        v;
    nx_llm_usage_t  u;

    rc = nx_llm_translate_response(type, kind, body, strlen(body), model,
                                   "chatcmpl-gw1", 1700000000, &b, &u);
    assert_int_equal(rc, 0);
    buf_is(&b, expect != NULL ? expect : body);

    v = json_ok(b.data, b.len);
    nx_json_free(v);

    assert_int_equal(u.present, present);
    assert_int_equal(u.prompt, prompt);
    assert_int_equal(u.completion, completion);
    assert_int_equal(u.total, total);

    nx_buf_free(&b);
}


static void
response_bad(int type, int kind, const char *body)
{
    nx_buf_t        b = NX_BUF_INIT;
    nx_llm_usage_t  u;

    assert_int_equal(nx_buf_append_str(&b, "kept"), 0);
    assert_int_equal(nx_llm_translate_response(type, kind, body,
                                               strlen(body), "m", "id", 1,
                                               &b, &u), -1);
    buf_is(&b, "kept");
    assert_int_equal(u.present, 0);
    nx_buf_free(&b);
}


static const char  openai_completion[] =
    "{\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion\","
    "\"created\":1700000001,\"model\":\"mock-small\",\"choices\":[{"
    "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
    "\"mock reply to: hi\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
    "\"total_tokens\":7},\"system_fingerprint\":\"fp_mock\"}";


static void
test_response_openai(void **state)
{
    (void) state;

    response_ok(NX_LLM_OPENAI, CHAT, openai_completion, "alias", NULL,
                3, 4, 7, 1);
    response_ok(NX_LLM_OPENAI, CHAT, "{\"choices\":[]}", NULL, NULL,
                0, 0, 0, 0);
    response_ok(NX_LLM_OPENAI, CHAT, "{\"choices\":[],\"usage\":"
                "{\"prompt_tokens\":2,\"completion_tokens\":3}}", NULL, NULL,
                2, 3, 5, 1);
    response_ok(NX_LLM_OPENAI, EMB, "{\"object\":\"list\",\"data\":[{"
                "\"object\":\"embedding\",\"index\":0,\"embedding\":[0.1]}],"
                "\"model\":\"e\",\"usage\":{\"prompt_tokens\":4,"
                "\"total_tokens\":4}}", NULL, NULL, 4, 0, 4, 1);

    response_bad(NX_LLM_OPENAI, CHAT, "{\"id\": \"mock\", this is not json");
    response_bad(NX_LLM_OPENAI, CHAT, "");
    response_bad(NX_LLM_OPENAI, CHAT, "[]");
    response_bad(NX_LLM_OPENAI, CHAT, "{\"data\":[]}");
    response_bad(NX_LLM_OPENAI, EMB, "{\"choices\":[]}");
    response_bad(NX_LLM_OPENAI, CHAT, "{\"choices\":[],\"error\":"
                 "{\"message\":\"x\"}}");
    response_bad(NX_LLM_OPENAI, OCHAT, "{\"choices\":[]}");
}


static void
test_response_ollama(void **state)
{
    (void) state;

    response_ok(NX_LLM_OLLAMA, CHAT,
                "{\"model\":\"llama3\",\"created_at\":\"2024-01-01T00:00:00Z\","
                "\"message\":{\"role\":\"assistant\",\"content\":"
                "\"Hi \\\"there\\\"\\n\"},\"done\":true,\"done_reason\":"
                "\"length\",\"total_duration\":5,\"prompt_eval_count\":5,"
                "\"eval_count\":2}", "alias",
                "{\"id\":\"chatcmpl-gw1\",\"object\":\"chat.completion\","
                "\"created\":1700000000,\"model\":\"alias\",\"choices\":[{"
                "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                "\"Hi \\\"there\\\"\\u000a\"},\"logprobs\":null,"
                "\"finish_reason\":\"length\"}],\"usage\":{"
                "\"prompt_tokens\":5,\"completion_tokens\":2,"
                "\"total_tokens\":7}}", 5, 2, 7, 1);

    /* no model given: the provider's; no counts: zeros, not present */
    response_ok(NX_LLM_OLLAMA, CHAT,
                "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\"},"
                "\"done\":true,\"done_reason\":\"stop\"}", NULL,
                "{\"id\":\"chatcmpl-gw1\",\"object\":\"chat.completion\","
                "\"created\":1700000000,\"model\":\"llama3\",\"choices\":[{"
                "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                "\"\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0,"
                "\"total_tokens\":0}}", 0, 0, 0, 0);

    /* a cached prompt has no prompt_eval_count */
    response_ok(NX_LLM_OLLAMA, CHAT,
                "{\"message\":{\"content\":\"x\"},\"done\":true,"
                "\"eval_count\":1}", "m",
                "{\"id\":\"chatcmpl-gw1\",\"object\":\"chat.completion\","
                "\"created\":1700000000,\"model\":\"m\",\"choices\":[{"
                "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                "\"x\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                "\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":1,"
                "\"total_tokens\":1}}", 0, 1, 1, 1);

    response_bad(NX_LLM_OLLAMA, CHAT, "{\"error\":\"model not found\"}");
    response_bad(NX_LLM_OLLAMA, CHAT, "{\"done\":true}");
    response_bad(NX_LLM_OLLAMA, CHAT, "{\"message\":\"x\"}");

    response_ok(NX_LLM_OLLAMA, EMB,
                "{\"model\":\"nomic\",\"embeddings\":[[0.5,-1e-3],[2]],"
                "\"total_duration\":1000,\"prompt_eval_count\":4}", "alias",
                "{\"object\":\"list\",\"data\":["
                "{\"object\":\"embedding\",\"index\":0,"
                "\"embedding\":[0.5,-1e-3]},"
                "{\"object\":\"embedding\",\"index\":1,\"embedding\":[2]}],"
                "\"model\":\"alias\",\"usage\":{\"prompt_tokens\":4,"
                "\"total_tokens\":4}}", 4, 0, 4, 1);
    response_ok(NX_LLM_OLLAMA, EMB, "{\"embeddings\":[]}", NULL,
                "{\"object\":\"list\",\"data\":[],\"model\":\"\","
                "\"usage\":{\"prompt_tokens\":0,\"total_tokens\":0}}",
                0, 0, 0, 0);

    response_bad(NX_LLM_OLLAMA, EMB, "{\"embeddings\":[[\"x\"]]}");
    response_bad(NX_LLM_OLLAMA, EMB, "{\"embeddings\":[1]}");
    response_bad(NX_LLM_OLLAMA, EMB, "{\"embedding\":[1]}");

    /* native: as it came, with the counts read */
    response_ok(NX_LLM_OLLAMA, OCHAT,
                "{\"model\":\"l\",\"message\":{\"role\":\"assistant\","
                "\"content\":\"x\"},\"done\":true,\"prompt_eval_count\":9,"
                "\"eval_count\":1}", "alias", NULL, 9, 1, 10, 1);
    response_ok(NX_LLM_OLLAMA, OGEN,
                "{\"model\":\"l\",\"response\":\"x\",\"done\":true,"
                "\"context\":[1,2,3]}", "alias", NULL, 0, 0, 0, 0);
    response_bad(NX_LLM_OLLAMA, OGEN, "{\"error\":\"boom\"}");
}


static void
test_response_anthropic(void **state)
{
    (void) state;

    response_ok(NX_LLM_ANTHROPIC, CHAT,
                "{\"id\":\"msg_mock_1\",\"type\":\"message\",\"role\":"
                "\"assistant\",\"model\":\"claude\",\"content\":[{\"type\":"
                "\"text\",\"text\":\"mock reply\"}],\"stop_reason\":"
                "\"end_turn\",\"stop_sequence\":null,\"usage\":{"
                "\"input_tokens\":3,\"output_tokens\":2}}", "alias",
                "{\"id\":\"msg_mock_1\",\"object\":\"chat.completion\","
                "\"created\":1700000000,\"model\":\"alias\",\"choices\":[{"
                "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                "\"mock reply\"},\"logprobs\":null,\"finish_reason\":"
                "\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
                "\"completion_tokens\":2,\"total_tokens\":5}}", 3, 2, 5, 1);

    /* text blocks joined, others skipped; cache tokens are prompt */
    response_ok(NX_LLM_ANTHROPIC, CHAT,
                "{\"type\":\"message\",\"model\":\"claude\",\"content\":["
                "{\"type\":\"thinking\",\"thinking\":\"hmm\"},"
                "{\"type\":\"text\",\"text\":\"a\"},"
                "{\"type\":\"tool_use\",\"id\":\"t\"},"
                "{\"type\":\"text\",\"text\":\"b\"}],\"stop_reason\":"
                "\"max_tokens\",\"usage\":{\"input_tokens\":3,"
                "\"cache_creation_input_tokens\":10,"
                "\"cache_read_input_tokens\":100,\"output_tokens\":2}}", NULL,
                "{\"id\":\"chatcmpl-gw1\",\"object\":\"chat.completion\","
                "\"created\":1700000000,\"model\":\"claude\",\"choices\":[{"
                "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                "\"ab\"},\"logprobs\":null,\"finish_reason\":\"length\"}],"
                "\"usage\":{\"prompt_tokens\":113,\"completion_tokens\":2,"
                "\"total_tokens\":115}}", 113, 2, 115, 1);

    response_bad(NX_LLM_ANTHROPIC, CHAT, "{\"type\":\"error\",\"error\":"
                 "{\"type\":\"api_error\",\"message\":\"x\"}}");
    response_bad(NX_LLM_ANTHROPIC, CHAT, "{\"type\":\"message\"}");
    response_bad(NX_LLM_ANTHROPIC, CHAT, "{\"content\":[]}");
    response_bad(NX_LLM_ANTHROPIC, EMB, "{\"type\":\"message\","
                 "\"content\":[]}");
}


/* error answers */

static void
error_is(int type, int status, const char *body, const char *expect)
{
    nx_buf_t  b = NX_BUF_INIT;
    yajl_val  v;

    assert_int_equal(nx_llm_translate_error(type, status, body,
                                            body != NULL ? strlen(body) : 0,
                                            &b), 0);
    buf_is(&b, expect);

    v = json_ok(b.data, b.len);
    nx_json_free(v);

    nx_buf_free(&b);
}


static void
test_translate_error(void **state)
{
    char        *big;
    size_t       i;
    nx_buf_t     b = NX_BUF_INIT;
    yajl_val     v;
    const char  *msg;

    (void) state;

    error_is(NX_LLM_OPENAI, 404,
             "{\"error\":{\"message\":\"The model 'missing-x' does not "
             "exist\",\"type\":\"invalid_request_error\",\"param\":null,"
             "\"code\":\"model_not_found\"}}",
             "{\"error\":{\"message\":\"The model 'missing-x' does not "
             "exist\",\"type\":\"invalid_request_error\",\"param\":null,"
             "\"code\":\"model_not_found\"}}");

    error_is(NX_LLM_OPENAI, 400,
             "{\"error\":{\"message\":\"bad\",\"type\":\"invalid request\","
             "\"param\":\"messages[0].content\",\"code\":7}}",
             "{\"error\":{\"message\":\"bad\",\"type\":"
             "\"invalid_request_error\",\"param\":\"messages[0].content\","
             "\"code\":null}}");

    error_is(NX_LLM_OLLAMA, 404, "{\"error\":\"model \\\"x\\\" not found, "
             "try pulling it first\"}",
             "{\"error\":{\"message\":\"model \\\"x\\\" not found, try "
             "pulling it first\",\"type\":\"invalid_request_error\","
             "\"param\":null,\"code\":null}}");

    error_is(NX_LLM_ANTHROPIC, 529, "{\"type\":\"error\",\"error\":{\"type\":"
             "\"overloaded_error\",\"message\":\"Overloaded\"}}",
             "{\"error\":{\"message\":\"Overloaded\",\"type\":"
             "\"server_error\",\"param\":null,\"code\":\"overloaded\"}}");
    error_is(NX_LLM_ANTHROPIC, 500, "{\"type\":\"error\",\"error\":{\"type\":"
             "\"api_error\",\"message\":\"mock upstream failure\"}}",
             "{\"error\":{\"message\":\"mock upstream failure\",\"type\":"
             "\"server_error\",\"param\":null,\"code\":null}}");
    error_is(NX_LLM_ANTHROPIC, 429, "{\"type\":\"error\",\"error\":{\"type\":"
             "\"rate_limit_error\",\"message\":\"slow down\"}}",
             "{\"error\":{\"message\":\"slow down\",\"type\":"
             "\"rate_limit_error\",\"param\":null,\"code\":null}}");

    /* vLLM's shape */
    error_is(NX_LLM_OPENAI, 400, "{\"object\":\"error\",\"message\":\"too "
             "long\",\"type\":\"BadRequestError\",\"param\":null,"
             "\"code\":400}",
             "{\"error\":{\"message\":\"too long\",\"type\":"
             "\"BadRequestError\",\"param\":null,\"code\":null}}");
    error_is(NX_LLM_OPENAI, 422, "{\"detail\":\"Not Found\"}",
             "{\"error\":{\"message\":\"Not Found\",\"type\":"
             "\"invalid_request_error\",\"param\":null,\"code\":null}}");

    /* nothing usable: a message for the status */
    error_is(NX_LLM_OPENAI, 502, "<html>Bad Gateway</html>",
             "{\"error\":{\"message\":\"The upstream provider is "
             "unavailable.\",\"type\":\"server_error\",\"param\":null,"
             "\"code\":null}}");
    error_is(NX_LLM_OLLAMA, 500, NULL,
             "{\"error\":{\"message\":\"The upstream provider failed.\","
             "\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    error_is(NX_LLM_OLLAMA, 429, "{\"error\":\"\"}",
             "{\"error\":{\"message\":\"The upstream provider is rate "
             "limiting requests; retry later.\",\"type\":"
             "\"rate_limit_error\",\"param\":null,\"code\":null}}");
    error_is(NX_LLM_OPENAI, 418, "{}",
             "{\"error\":{\"message\":\"The upstream provider returned an "
             "error.\",\"type\":\"invalid_request_error\",\"param\":null,"
             "\"code\":null}}");

    /* about the gateway's key: never the provider's words */
    error_is(NX_LLM_OPENAI, 401, "{\"error\":{\"message\":\"Incorrect API "
             "key provided: sk-abc***xyz\",\"type\":\"invalid_request_error\","
             "\"param\":null,\"code\":\"invalid_api_key\"}}",
             "{\"error\":{\"message\":\"The upstream provider refused the "
             "gateway's credentials.\",\"type\":\"invalid_request_error\","
             "\"param\":null,\"code\":\"invalid_api_key\"}}");

    /* a long message is cut, on a character boundary */
    big = malloc(4000);
    assert_non_null(big);
    strcpy(big, "{\"error\":\"");
    for (i = 0; i < 1000; i++) {
        strcat(big, "\xc3\xa9");        /* 2 bytes each */
    }
    strcat(big, "\\n\"}");

    assert_int_equal(nx_llm_translate_error(NX_LLM_OLLAMA, 500, big,
                                            strlen(big), &b), 0);
    v = json_ok(b.data, b.len);
    msg = NULL;
    assert_int_equal(nx_json_string(nx_json_get(nx_json_get(v, "error"),
                                                 "message"), &msg), 0);
    assert_int_equal(strlen(msg), 512);
    nx_json_free(v);
    nx_buf_reset(&b);

    /* one byte more in front: the cut falls inside a character */
    memmove(big + 11, big + 10, strlen(big + 10) + 1);
    big[10] = 'x';
    assert_int_equal(nx_llm_translate_error(NX_LLM_OLLAMA, 500, big,
                                            strlen(big), &b), 0);
    v = json_ok(b.data, b.len);
    assert_int_equal(nx_json_string(nx_json_get(nx_json_get(v, "error"),
                                                 "message"), &msg), 0);
    assert_int_equal(strlen(msg), 511);
    nx_json_free(v);

    free(big);
    nx_buf_free(&b);
}


/* streams */

typedef struct {
    nx_llm_stream_t  *ls;
    nx_buf_t         *out;
    int               failed;     /* events refused */
} feed_t;


static int
feed_event(void *ud, const char *event, size_t event_len, const char *data,
    size_t len)
{
    feed_t  *f;

    f = ud;

    if (nx_llm_stream_event(f->ls, event, event_len, data, len, f->out)
        != 0)
    {
        f->failed++;
    }

    return 0;
}


/* frames an upstream stream and translates every event */

static int
translate_stream(nx_llm_stream_t *ls, int mode, const char *in,
    nx_buf_t *out)
{
    feed_t       f;
    nx_stream_t  st;

    f.ls = ls;
    f.out = out;
    f.failed = 0;

    nx_stream_init(&st, mode, 1 << 20);
    assert_int_equal(nx_stream_feed(&st, in, strlen(in), feed_event, &f), 0);
    assert_int_equal(nx_stream_finish(&st, feed_event, &f), 0);
    nx_stream_free(&st);

    return f.failed;
}


/* every SSE event of out must be JSON or [DONE]; returns their count */

typedef struct {
    int  count;
    int  done;
} check_t;


static int
check_event(void *ud, const char *event, size_t event_len, const char *data,
    size_t len)
{
    check_t   *c;
    yajl_val   v;

    c = ud;
    c->count++;

    assert_int_equal(event_len, 0);
    (void) event;

    assert_int_equal(c->done, 0);

    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->done = 1;
        return 0;
    }

    v = json_ok(data, len);
    nx_json_free(v);

    return 0;
}


static int
check_sse(const nx_buf_t *out)
{
    check_t      c;
    nx_stream_t  st;

    memset(&c, 0, sizeof(c));
    nx_stream_init(&st, NX_STREAM_SSE, 0);
    assert_int_equal(nx_stream_feed(&st, out->data, out->len, check_event,
                                    &c), 0);
    assert_int_equal(nx_stream_pending(&st), 0);
    nx_stream_free(&st);

    return c.count;
}


/* the chunk the translators write, for expectations */

static const char *
chunk(const char *id, const char *model, const char *delta,
    const char *finish, int usage_null)
{
    static char  buf[8][512];
    static int   k;
    char        *p;

    p = buf[k++ % 8];
    snprintf(p, 512, "data: {\"id\":\"%s\",\"object\":"
             "\"chat.completion.chunk\",\"created\":1700000000,"
             "\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{%s},"
             "\"logprobs\":null,\"finish_reason\":%s}]%s}\n\n", id, model,
             delta, finish, usage_null ? ",\"usage\":null" : "");

    return p;
}


/* appends s, keeping the buffer a C string */

static void
expect_append(nx_buf_t *b, const char *s)
{
    assert_int_equal(nx_buf_append(b, s, strlen(s) + 1), 0);
    b->len--;
}


#define ROLE    "\"role\":\"assistant\",\"content\":\"\""
#define EV(s)   s, strlen(s)


static const char  openai_sse[] =
    "data: {\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"mock-small\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"mock-small\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"mock\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"mock-small\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\" reply\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"mock-small\",\"choices\":[{\"index\":0,"
    "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}],"
    "\"usage\":null}\n\n";

static const char  openai_usage_sse[] =
    "data: {\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"mock-small\",\"choices\":[],\"usage\":{"
    "\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n";

static const char  done_sse[] = "data: [DONE]\n\n";


static void
test_stream_openai(void **state)
{
    char             *in;
    nx_buf_t          out = NX_BUF_INIT, want = NX_BUF_INIT;
    nx_llm_stream_t   ls;

    (void) state;

    in = malloc(sizeof(openai_sse) + sizeof(openai_usage_sse)
                + sizeof(done_sse));
    assert_non_null(in);
    strcpy(in, openai_sse);
    strcat(in, openai_usage_sse);
    strcat(in, done_sse);

    /* the client asked for usage: everything as it came */
    nx_llm_stream_init(&ls, NX_LLM_OPENAI, CHAT, "alias", "gw", 1700000000,
                       1);
    assert_int_equal(translate_stream(&ls, NX_STREAM_SSE, in, &out), 0);
    buf_is(&out, in);
    assert_int_equal(ls.done, 1);
    assert_int_equal(ls.finished, 1);
    assert_string_equal(ls.finish_reason, "length");
    assert_int_equal(ls.usage.present, 1);
    assert_int_equal(ls.usage.prompt, 3);
    assert_int_equal(ls.usage.completion, 2);
    assert_int_equal(ls.usage.total, 5);
    assert_int_equal(ls.role_sent, 1);
    assert_int_equal(ls.completion_bytes, 10);
    assert_int_equal(ls.events, 6);

    /* and a second [DONE], or anything after it, is refused */
    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "[DONE]", 6, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"choices\":[]}", 14,
                                         &out), -1);
    assert_int_equal(out.len, 0);

    /* it did not: the usage chunk the gateway asked for is dropped */
    nx_llm_stream_init(&ls, NX_LLM_OPENAI, CHAT, "alias", "gw", 1700000000,
                       0);
    nx_buf_reset(&out);
    assert_int_equal(translate_stream(&ls, NX_STREAM_SSE, in, &out), 0);
    expect_append(&want, openai_sse);
    expect_append(&want, done_sse);
    buf_is(&out, want.data);
    assert_int_equal(ls.usage.present, 1);
    assert_int_equal(ls.usage.total, 5);
    assert_int_equal(ls.done, 1);
    assert_int_equal(check_sse(&out), 5);

    free(in);
    nx_buf_free(&want);
    nx_buf_free(&out);
}


static void
test_stream_openai_odd(void **state)
{
    nx_buf_t         out = NX_BUF_INIT;
    nx_llm_stream_t  ls;

    (void) state;

    nx_llm_stream_init(&ls, NX_LLM_OPENAI, CHAT, "m", NULL, 1, 0);

    /* a JSON text over two data lines stays one event */
    assert_int_equal(translate_stream(&ls, NX_STREAM_SSE,
                                      "data: {\"choices\":\r\n"
                                      "data: []}\n\n", &out), 0);
    buf_is(&out, "data: {\"choices\": []}\n\n");

    /* refused, with nothing written */
    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"id\": \"broken\", "
                                         "not json", 24, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{}", 2, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "[]", 2, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"choices\":{}}", 14,
                                         &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"error\":{\"message"
                                         "\":\"overloaded\"}}", 33, &out),
                     -1);
    assert_int_equal(nx_llm_stream_event(&ls, "error", 5, "{\"choices\":[]}",
                                         14, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "", 0, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, NULL, 0, &out), -1);
    assert_int_equal(out.len, 0);
    assert_int_equal(ls.done, 0);
    assert_int_equal(ls.events, 1);

    /* usage on a chunk with choices is noted, and the chunk goes on */
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, EV("{\"choices\":[{"
                                         "\"finish_reason\":\"stop\"}],"
                                         "\"usage\":{\"prompt_tokens\":1,"
                                         "\"completion_tokens\":1}}"),
                                         &out), 0);
    assert_true(out.len > 0);
    assert_int_equal(ls.usage.total, 2);
    assert_int_equal(ls.finished, 1);
    assert_int_equal(ls.done, 0);

    /* embeddings do not stream */
    nx_llm_stream_init(&ls, NX_LLM_OPENAI, EMB, "m", NULL, 1, 0);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"choices\":[]}", 14,
                                         &out), -1);

    nx_buf_free(&out);
}


static const char  ollama_ndjson[] =
    "{\"model\":\"llama3\",\"created_at\":\"2024-01-01T00:00:00Z\","
    "\"message\":{\"role\":\"assistant\",\"content\":\"mock\"},"
    "\"done\":false}\n"
    "{\"model\":\"llama3\",\"created_at\":\"2024-01-01T00:00:00Z\","
    "\"message\":{\"role\":\"assistant\",\"content\":\" \\\"reply\\\"\"},"
    "\"done\":false}\n"
    "{\"model\":\"llama3\",\"created_at\":\"2024-01-01T00:00:00Z\","
    "\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
    "\"done_reason\":\"length\",\"total_duration\":3000000,"
    "\"prompt_eval_count\":4,\"eval_count\":2}\n";


static void
test_stream_ollama(void **state)
{
    nx_buf_t         out = NX_BUF_INIT, want = NX_BUF_INIT;
    nx_llm_stream_t  ls;

    (void) state;

    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, CHAT, "alias", "chatcmpl-gw",
                       1700000000, 1);
    assert_int_equal(translate_stream(&ls, NX_STREAM_NDJSON, ollama_ndjson,
                                      &out), 0);

    expect_append(&want, chunk("chatcmpl-gw", "alias", ROLE, "null", 1));
    expect_append(&want, chunk("chatcmpl-gw", "alias",
                               "\"content\":\"mock\"", "null", 1));
    expect_append(&want, chunk("chatcmpl-gw", "alias",
                               "\"content\":\" \\\"reply\\\"\"", "null", 1));
    expect_append(&want, chunk("chatcmpl-gw", "alias", "", "\"length\"", 1));
    expect_append(&want, "data: {\"id\":\"chatcmpl-gw\",\"object\":"
                  "\"chat.completion.chunk\",\"created\":1700000000,"
                  "\"model\":\"alias\",\"choices\":[],\"usage\":{"
                  "\"prompt_tokens\":4,\"completion_tokens\":2,"
                  "\"total_tokens\":6}}\n\n");
    expect_append(&want, done_sse);
    buf_is(&out, want.data);
    assert_int_equal(check_sse(&out), 6);

    assert_int_equal(ls.done, 1);
    assert_int_equal(ls.finished, 1);
    assert_string_equal(ls.finish_reason, "length");
    assert_int_equal(ls.usage.present, 1);
    assert_int_equal(ls.usage.prompt, 4);
    assert_int_equal(ls.usage.completion, 2);
    assert_int_equal(ls.completion_bytes, 12);
    assert_int_equal(ls.events, 3);

    /* after the done line, nothing */
    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"done\":true}", 13,
                                         &out), -1);

    /* no usage asked for: no usage chunk, no usage member */
    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, CHAT, "alias", "chatcmpl-gw",
                       1700000000, 0);
    nx_buf_reset(&out);
    nx_buf_reset(&want);
    assert_int_equal(translate_stream(&ls, NX_STREAM_NDJSON,
                                      "{\"message\":{\"content\":\"x\"},"
                                      "\"done\":true,\"done_reason\":"
                                      "\"stop\"}", &out), 0);
    expect_append(&want, chunk("chatcmpl-gw", "alias", ROLE, "null", 0));
    expect_append(&want, chunk("chatcmpl-gw", "alias", "\"content\":\"x\"",
                               "null", 0));
    expect_append(&want, chunk("chatcmpl-gw", "alias", "", "\"stop\"", 0));
    expect_append(&want, done_sse);
    buf_is(&out, want.data);
    assert_int_equal(ls.usage.present, 0);

    /* refused */
    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, CHAT, "m", NULL, 1, 1);
    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"model\": "
                                         "\"broken\", not json", 28, &out),
                     -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"error\":\"boom\"}",
                                         16, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"message\":{}}", 14,
                                         &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"done\":\"no\"}", 13,
                                         &out), -1);
    assert_int_equal(out.len, 0);
    assert_int_equal(ls.role_sent, 0);

    nx_buf_free(&want);
    nx_buf_free(&out);
}


static void
test_stream_native(void **state)
{
    nx_buf_t         out = NX_BUF_INIT;
    nx_llm_stream_t  ls;

    (void) state;

    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, OCHAT, "alias", NULL, 1, 1);
    assert_int_equal(translate_stream(&ls, NX_STREAM_NDJSON, ollama_ndjson,
                                      &out), 0);
    buf_is(&out, ollama_ndjson);
    assert_int_equal(ls.done, 1);
    assert_int_equal(ls.finished, 1);
    assert_string_equal(ls.finish_reason, "length");
    assert_int_equal(ls.usage.prompt, 4);
    assert_int_equal(ls.usage.completion, 2);
    assert_int_equal(ls.usage.total, 6);
    assert_int_equal(ls.completion_bytes, 12);

    /* CRLF lines come out with LF */
    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, OGEN, "alias", NULL, 1, 0);
    nx_buf_reset(&out);
    assert_int_equal(translate_stream(&ls, NX_STREAM_NDJSON,
                                      "{\"response\":\"ab\",\"done\":false}\r\n"
                                      "{\"response\":\"\",\"done\":true,"
                                      "\"context\":[1],\"eval_count\":1}\r\n",
                                      &out), 0);
    buf_is(&out, "{\"response\":\"ab\",\"done\":false}\n"
           "{\"response\":\"\",\"done\":true,\"context\":[1],"
           "\"eval_count\":1}\n");
    assert_int_equal(ls.done, 1);
    assert_int_equal(ls.usage.completion, 1);
    assert_int_equal(ls.completion_bytes, 2);
    assert_string_equal(ls.finish_reason, "stop");

    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, OGEN, "alias", NULL, 1, 0);
    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"error\":\"x\"}", 13,
                                         &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"response\":\"x\"}",
                                         16, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "nope", 4, &out), -1);
    assert_int_equal(out.len, 0);

    nx_buf_free(&out);
}


static const char  anthropic_sse[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock_7\","
    "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\","
    "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,"
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"mock\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,"
    "\"delta\":{\"type\":\"text_delta\",\"text\":\" reply\\n\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"end_turn\",\"stop_sequence\":null},\"usage\":{"
    "\"output_tokens\":2}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";


static void
test_stream_anthropic(void **state)
{
    nx_buf_t         out = NX_BUF_INIT, want = NX_BUF_INIT;
    nx_llm_stream_t  ls;

    (void) state;

    nx_llm_stream_init(&ls, NX_LLM_ANTHROPIC, CHAT, "alias", "chatcmpl-gw",
                       1700000000, 1);
    assert_int_equal(translate_stream(&ls, NX_STREAM_SSE, anthropic_sse,
                                      &out), 0);

    expect_append(&want, chunk("msg_mock_7", "alias", ROLE, "null", 1));
    expect_append(&want, chunk("msg_mock_7", "alias",
                               "\"content\":\"mock\"", "null", 1));
    expect_append(&want, chunk("msg_mock_7", "alias",
                               "\"content\":\" reply\\u000a\"", "null", 1));
    expect_append(&want, chunk("msg_mock_7", "alias", "", "\"stop\"", 1));
    expect_append(&want, "data: {\"id\":\"msg_mock_7\",\"object\":"
                  "\"chat.completion.chunk\",\"created\":1700000000,"
                  "\"model\":\"alias\",\"choices\":[],\"usage\":{"
                  "\"prompt_tokens\":3,\"completion_tokens\":2,"
                  "\"total_tokens\":5}}\n\n");
    expect_append(&want, done_sse);
    buf_is(&out, want.data);
    assert_int_equal(check_sse(&out), 6);

    assert_int_equal(ls.done, 1);
    assert_int_equal(ls.finished, 1);
    assert_string_equal(ls.finish_reason, "stop");
    assert_int_equal(ls.usage.present, 1);
    assert_int_equal(ls.usage.prompt, 3);
    assert_int_equal(ls.usage.completion, 2);
    assert_int_equal(ls.usage.total, 5);
    assert_int_equal(ls.completion_bytes, 11);
    assert_int_equal(ls.events, 8);

    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_event(&ls, "message_stop", 12,
                                         "{\"type\":\"message_stop\"}", 23,
                                         &out), -1);
    assert_int_equal(out.len, 0);

    nx_buf_free(&want);
    nx_buf_free(&out);
}


static void
test_stream_anthropic_odd(void **state)
{
    nx_buf_t         out = NX_BUF_INIT, want = NX_BUF_INIT;
    nx_llm_stream_t  ls;

    (void) state;

    /*
     * max_tokens is "length"; thinking and unknown events are skipped;
     * the type may come from the event field alone; text before
     * message_start still gets its role chunk first
     */
    nx_llm_stream_init(&ls, NX_LLM_ANTHROPIC, CHAT, "m", "gw", 1700000000,
                       0);
    assert_int_equal(translate_stream(&ls, NX_STREAM_SSE,
        "event: content_block_delta\n"
        "data: {\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n"
        "data: {\"type\":\"content_block_delta\",\"delta\":"
        "{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n"
        "data: {\"type\":\"content_block_start\",\"content_block\":"
        "{\"type\":\"text\",\"text\":\"b\"}}\n\n"
        "data: {\"type\":\"brand_new_event\"}\n\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
        "\"max_tokens\"},\"usage\":{\"output_tokens\":9}}\n\n"
        "data: {\"type\":\"message_stop\"}\n\n", &out), 0);

    expect_append(&want, chunk("gw", "m", ROLE, "null", 0));
    expect_append(&want, chunk("gw", "m", "\"content\":\"a\"", "null", 0));
    expect_append(&want, chunk("gw", "m", "\"content\":\"b\"", "null", 0));
    expect_append(&want, chunk("gw", "m", "", "\"length\"", 0));
    expect_append(&want, done_sse);
    buf_is(&out, want.data);
    assert_string_equal(ls.finish_reason, "length");
    assert_int_equal(ls.usage.completion, 9);
    assert_int_equal(ls.usage.prompt, 0);
    assert_int_equal(ls.done, 1);

    /* a stop without message_delta still finishes */
    nx_llm_stream_init(&ls, NX_LLM_ANTHROPIC, CHAT, "m", "gw", 1700000000,
                       0);
    nx_buf_reset(&out);
    nx_buf_reset(&want);
    assert_int_equal(translate_stream(&ls, NX_STREAM_SSE,
        "data: {\"type\":\"message_stop\"}\n\n", &out), 0);
    expect_append(&want, chunk("gw", "m", ROLE, "null", 0));
    expect_append(&want, chunk("gw", "m", "", "\"stop\"", 0));
    expect_append(&want, done_sse);
    buf_is(&out, want.data);

    /* refused */
    nx_llm_stream_init(&ls, NX_LLM_ANTHROPIC, CHAT, "m", "gw", 1, 0);
    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_event(&ls, "error", 5,
                                         "{\"type\":\"error\",\"error\":{"
                                         "\"type\":\"overloaded_error\","
                                         "\"message\":\"Overloaded\"}}", 77,
                                         &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "content_block_delta", 19,
                                         "{\"type\": not json", 17, &out),
                     -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"index\":0}", 11,
                                         &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"type\":"
                                         "\"content_block_delta\","
                                         "\"delta\":{\"type\":\"text_delta\"}}",
                                         62, &out), -1);
    assert_int_equal(nx_llm_stream_event(&ls, "", 0, "{\"type\":"
                                         "\"message_start\"}", 24, &out),
                     -1);
    assert_int_equal(out.len, 0);
    assert_int_equal(ls.role_sent, 0);

    /* ping writes nothing */
    assert_int_equal(nx_llm_stream_event(&ls, "ping", 4, "{\"type\": "
                                         "\"ping\"}", 16, &out), 0);
    assert_int_equal(out.len, 0);

    nx_buf_free(&want);
    nx_buf_free(&out);
}


static void
test_stream_error(void **state)
{
    nx_buf_t         out = NX_BUF_INIT;
    nx_llm_stream_t  ls;

    (void) state;

    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, CHAT, "m", NULL, 1, 0);
    assert_int_equal(nx_llm_stream_error(&ls, "upstream_truncated",
                                         "The upstream \"stream\" broke.",
                                         &out), 0);
    buf_is(&out, "data: {\"error\":{\"message\":\"The upstream \\\"stream\\\" "
           "broke.\",\"type\":\"upstream_error\",\"code\":"
           "\"upstream_truncated\"}}\n\ndata: [DONE]\n\n");
    assert_int_equal(check_sse(&out), 2);

    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_error(&ls, NULL, NULL, &out), 0);
    buf_is(&out, "data: {\"error\":{\"message\":\"The upstream stream ended "
           "unexpectedly.\",\"type\":\"upstream_error\",\"code\":null}}\n\n"
           "data: [DONE]\n\n");

    nx_llm_stream_init(&ls, NX_LLM_OLLAMA, OCHAT, "m", NULL, 1, 0);
    nx_buf_reset(&out);
    assert_int_equal(nx_llm_stream_error(&ls, "x", "timed out", &out), 0);
    buf_is(&out, "{\"error\":\"timed out\"}\n");

    nx_buf_free(&out);
}


/* model lists */

static void
collect_model(void *ud, const char *name, size_t len)
{
    nx_buf_t  *b;

    b = ud;

    assert_int_equal(nx_buf_append(b, name, len), 0);
    assert_int_equal(nx_buf_append(b, ";", 2), 0);
    b->len--;
}


static void
models_are(int type, const char *body, int count, const char *names)
{
    nx_buf_t  b = NX_BUF_INIT;

    assert_int_equal(nx_llm_parse_models(type, body, strlen(body),
                                         collect_model, &b), count);
    buf_is(&b, names);
    nx_buf_free(&b);
}


static void
test_parse_models(void **state)
{
    char  body[512];

    (void) state;

    models_are(NX_LLM_OPENAI, "{\"object\":\"list\",\"data\":["
               "{\"id\":\"mock-small\",\"object\":\"model\",\"created\":1,"
               "\"owned_by\":\"nexus-mock\"},{\"id\":\"mock-large\"}]}", 2,
               "mock-small;mock-large;");
    models_are(NX_LLM_ANTHROPIC, "{\"data\":[{\"type\":\"model\",\"id\":"
               "\"claude-3-5-haiku-latest\",\"display_name\":\"Claude\"}],"
               "\"has_more\":false,\"first_id\":null}", 1,
               "claude-3-5-haiku-latest;");
    models_are(NX_LLM_OLLAMA, "{\"models\":[{\"name\":\"llama3:latest\","
               "\"model\":\"llama3:latest\",\"size\":1,\"details\":{}},"
               "{\"model\":\"only-model:7b\"}]}", 2,
               "llama3:latest;only-model:7b;");

    /* odd entries are skipped */
    memset(body, 0, sizeof(body));
    strcpy(body, "{\"data\":[1,{},{\"id\":7},{\"id\":\"\"},"
           "{\"id\":\"a\\tb\"},{\"id\":\"ok\"},{\"id\":\"");
    memset(body + strlen(body), 'x', 129);
    strcat(body, "\"}]}");
    models_are(NX_LLM_OPENAI, body, 1, "ok;");

    models_are(NX_LLM_OPENAI, "{\"data\":[]}", 0, "");

    /* not a list */
    models_are(NX_LLM_OPENAI, "{\"models\":[{\"name\":\"x\"}]}", -1, "");
    models_are(NX_LLM_OLLAMA, "{\"data\":[{\"id\":\"x\"}]}", -1, "");
    models_are(NX_LLM_OPENAI, "{\"data\":{}}", -1, "");
    models_are(NX_LLM_OPENAI, "[]", -1, "");
    models_are(NX_LLM_OPENAI, "<html>", -1, "");
    models_are(NX_LLM_OPENAI, "{\"data\":[{\"id\":\"a\\u0000b\"}]}", -1, "");

    /* without a callback, a count */
    assert_int_equal(nx_llm_parse_models(NX_LLM_OPENAI,
                                         EV("{\"data\":[{\"id\":\"a\"}]}"),
                                         NULL, NULL), 1);
}


static void
test_models_json(void **state)
{
    nx_buf_t      b = NX_BUF_INIT;
    yajl_val      v;
    const char   *names[] = { "gpt-4o", "llama \"3\"" };
    size_t        lens[] = { 6, 9 };

    (void) state;

    assert_int_equal(nx_llm_models_json(names, lens, 2, 1700000000,
                                        "acme", &b), 0);
    buf_is(&b, "{\"object\":\"list\",\"data\":["
           "{\"id\":\"gpt-4o\",\"object\":\"model\",\"created\":1700000000,"
           "\"owned_by\":\"acme\"},"
           "{\"id\":\"llama \\\"3\\\"\",\"object\":\"model\","
           "\"created\":1700000000,\"owned_by\":\"acme\"}]}");
    v = json_ok(b.data, b.len);
    nx_json_free(v);

    nx_buf_reset(&b);
    assert_int_equal(nx_llm_models_json(names, lens, 1, 0, NULL, &b), 0);
    buf_is(&b, "{\"object\":\"list\",\"data\":[{\"id\":\"gpt-4o\","
           "\"object\":\"model\",\"created\":0,\"owned_by\":\"nexus\"}]}");

    nx_buf_reset(&b);
    assert_int_equal(nx_llm_models_json(NULL, NULL, 0, 0, NULL, &b), 0);
    buf_is(&b, "{\"object\":\"list\",\"data\":[]}");

    nx_buf_reset(&b);
    assert_int_equal(nx_llm_tags_json(names, lens, 2, &b), 0);
    buf_is(&b, "{\"models\":[{\"name\":\"gpt-4o\",\"model\":\"gpt-4o\"},"
           "{\"name\":\"llama \\\"3\\\"\",\"model\":\"llama \\\"3\\\"\"}]}");
    v = json_ok(b.data, b.len);
    nx_json_free(v);

    nx_buf_reset(&b);
    assert_int_equal(nx_llm_tags_json(NULL, NULL, 0, &b), 0);
    buf_is(&b, "{\"models\":[]}");

    nx_buf_free(&b);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_chat_ok),
        cmocka_unit_test(test_parse_chat_errors),
        cmocka_unit_test(test_parse_no_client_values),
        cmocka_unit_test(test_parse_embeddings),
        cmocka_unit_test(test_parse_native),
        cmocka_unit_test(test_parse_kind),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_build_openai),
        cmocka_unit_test(test_build_forced),
        cmocka_unit_test(test_build_verbatim),
        cmocka_unit_test(test_build_ollama),
        cmocka_unit_test(test_build_anthropic),
        cmocka_unit_test(test_upstream_path),
        cmocka_unit_test(test_response_openai),
        cmocka_unit_test(test_response_ollama),
        cmocka_unit_test(test_response_anthropic),
        cmocka_unit_test(test_translate_error),
        cmocka_unit_test(test_stream_openai),
        cmocka_unit_test(test_stream_openai_odd),
        cmocka_unit_test(test_stream_ollama),
        cmocka_unit_test(test_stream_native),
        cmocka_unit_test(test_stream_anthropic),
        cmocka_unit_test(test_stream_anthropic_odd),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_parse_models),
        cmocka_unit_test(test_models_json),
    };

    return cmocka_run_group_tests_name("llm", tests, NULL, NULL);
}
