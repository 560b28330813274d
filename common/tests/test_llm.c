/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_llm: request validation (errors and their parameter
 * paths), the error body and the token estimate.
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
        print_error("got  %.*s\nwant %s\n", (int) b->len,
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
    yajl_tree_free(v);

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
    };

    return cmocka_run_group_tests_name("llm", tests, NULL, NULL);
}
