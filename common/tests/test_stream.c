/*
 * Copyright (C) Nexus authors
 *
 * Unit tests for nx_stream: the SSE field rules, line ends (a CRLF split
 * between two feeds included), NDJSON lines, the size limit, aborts, and
 * the same events whatever the pieces the input arrives in.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_stream.h"


/* events are written as "[event|data]" into a buffer, to compare */

typedef struct {
    nx_buf_t  out;
    int       count;
    int       stop_at;      /* abort on this event (1-based), 0: never */
    size_t    max_seen;
} collect_t;


static int
collect(void *ud, const char *event, size_t event_len, const char *data,
    size_t len)
{
    collect_t  *c;

    c = ud;
    c->count++;

    assert_non_null(event);
    assert_non_null(data);

    if (event_len + len > c->max_seen) {
        c->max_seen = event_len + len;
    }

    assert_int_equal(nx_buf_append(&c->out, "[", 1), 0);
    assert_int_equal(nx_buf_append(&c->out, event, event_len), 0);
    assert_int_equal(nx_buf_append(&c->out, "|", 1), 0);
    assert_int_equal(nx_buf_append(&c->out, data, len), 0);
    assert_int_equal(nx_buf_append(&c->out, "]", 1), 0);

    return c->count == c->stop_at;
}


static void
collect_init(collect_t *c)
{
    memset(c, 0, sizeof(collect_t));
}


/* feeds s in pieces given by cuts (sorted offsets), then finishes */

static int
run_cuts(int mode, size_t max, const char *p, size_t n, const size_t *cuts,
    size_t ncuts, collect_t *c, size_t *pending)
{
    int          rc;
    size_t       i, from, to;
    nx_stream_t  s;

    nx_stream_init(&s, mode, max);
    from = 0;
    rc = NX_STREAM_OK;

    for (i = 0; i <= ncuts; i++) {
        to = i < ncuts ? cuts[i] : n;
        rc = nx_stream_feed(&s, p + from, to - from, collect, c);
        from = to;

        if (rc != NX_STREAM_OK) {
            break;
        }
    }

    if (rc == NX_STREAM_OK) {
        rc = nx_stream_finish(&s, collect, c);
    }

    if (pending != NULL) {
        *pending = nx_stream_pending(&s);
    }

    nx_stream_free(&s);

    return rc;
}


static int
run(int mode, size_t max, const char *p, collect_t *c)
{
    return run_cuts(mode, max, p, strlen(p), NULL, 0, c, NULL);
}


static void
expect_events(int mode, const char *in, const char *expect)
{
    int        rc;
    collect_t  c;

    collect_init(&c);
    rc = run(mode, 0, in, &c);
    assert_int_equal(rc, NX_STREAM_OK);

    if (strlen(expect) != c.out.len
        || (c.out.len != 0 && memcmp(expect, c.out.data, c.out.len) != 0))
    {
        print_error("got %.*s\nwant %s\n", (int) c.out.len,
                    c.out.data ? c.out.data : "", expect);
        fail();
    }

    nx_buf_free(&c.out);
}


#define SSE(in, expect)     expect_events(NX_STREAM_SSE, in, expect)
#define NDJSON(in, expect)  expect_events(NX_STREAM_NDJSON, in, expect)


static void
test_sse_basic(void **state)
{
    (void) state;

    SSE("data: hello\n\n", "[|hello]");
    SSE("data:hello\n\n", "[|hello]");
    SSE("data:  two spaces\n\n", "[| two spaces]");
    SSE("event: message_start\ndata: {\"a\":1}\n\n",
        "[message_start|{\"a\":1}]");
    SSE("data: a\n\ndata: b\n\n", "[|a][|b]");
    SSE("", "");
    SSE("\n\n\n", "");
}


static void
test_sse_line_ends(void **state)
{
    (void) state;

    SSE("data: a\r\n\r\n", "[|a]");
    SSE("data: a\r\r", "[|a]");
    SSE("data: a\n\r\ndata: b\r\n\n", "[|a][|b]");
    SSE("data: a\r\ndata: b\rdata: c\n\n", "[|a\nb\nc]");

    /* CRLF is one line end, CR CR two, LF CR two */
    SSE("data: a\r\n\r\n\r\n", "[|a]");
    SSE("data: a\r\rdata: b\n\r", "[|a][|b]");
}


static void
test_sse_crlf_split(void **state)
{
    int          rc;
    collect_t    c;
    nx_stream_t  s;

    (void) state;

    collect_init(&c);
    nx_stream_init(&s, NX_STREAM_SSE, 0);

    /* CR at the end of one feed, LF at the start of the next */
    assert_int_equal(nx_stream_feed(&s, "data: a\r", 8, collect, &c), 0);
    assert_int_equal(nx_stream_feed(&s, "\ndata: b\r", 9, collect, &c), 0);
    assert_int_equal(c.count, 0);
    assert_int_equal(nx_stream_feed(&s, "\n", 1, collect, &c), 0);
    assert_int_equal(c.count, 0);
    assert_int_equal(nx_stream_feed(&s, "\r", 1, collect, &c), 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(nx_stream_feed(&s, "\n", 1, collect, &c), 0);
    assert_int_equal(c.count, 1);

    rc = nx_stream_finish(&s, collect, &c);
    assert_int_equal(rc, NX_STREAM_OK);
    assert_int_equal(nx_stream_pending(&s), 0);
    assert_int_equal(c.out.len, 6);
    assert_memory_equal(c.out.data, "[|a\nb]", 6);

    nx_stream_free(&s);
    nx_buf_free(&c.out);
}


static void
test_sse_fields(void **state)
{
    (void) state;

    /* several data lines join with LF, none at the end */
    SSE("data: a\ndata: b\ndata: c\n\n", "[|a\nb\nc]");
    SSE("data\n\n", "[|]");
    SSE("data:\n\n", "[|]");
    SSE("data\ndata\n\n", "[|\n]");
    SSE("data: \n\n", "[|]");

    /* comments and other fields are ignored */
    SSE(": ping\n\n", "");
    SSE(":\ndata: x\n: mid\n\n", "[|x]");
    SSE("id: 7\nretry: 100\nfoo: bar\ndata: x\n\n", "[|x]");
    SSE("Data: x\n\n", "");
    SSE(" data: x\n\n", "");
    SSE("data : x\n\n", "");

    /* events without data are not dispatched; the type resets */
    SSE("event: ping\n\n", "");
    SSE("event: a\n\ndata: x\n\n", "[|x]");
    SSE("event: a\nevent: b\ndata: x\n\n", "[b|x]");
    SSE("event\ndata: x\n\n", "[|x]");
    SSE("event:\ndata: x\n\n", "[|x]");
    SSE("data: x\nevent: late\n\n", "[late|x]");

    /* a value may hold colons */
    SSE("data: a:b: c\n\n", "[|a:b: c]");
}


static void
test_sse_unterminated(void **state)
{
    int        rc;
    size_t     pending;
    collect_t  c;

    (void) state;

    collect_init(&c);
    rc = run_cuts(NX_STREAM_SSE, 0, "data: a\n\ndata: b\n", 17, NULL, 0,
                  &c, &pending);
    assert_int_equal(rc, NX_STREAM_OK);
    assert_int_equal(c.count, 1);
    assert_true(pending > 0);
    nx_buf_free(&c.out);

    collect_init(&c);
    rc = run_cuts(NX_STREAM_SSE, 0, "data: a\n\ndata: b", 16, NULL, 0,
                  &c, &pending);
    assert_int_equal(rc, NX_STREAM_OK);
    assert_int_equal(c.count, 1);
    assert_true(pending > 0);
    nx_buf_free(&c.out);

    /* an empty data line is pending too */
    collect_init(&c);
    rc = run_cuts(NX_STREAM_SSE, 0, "data\n", 5, NULL, 0, &c, &pending);
    assert_int_equal(rc, NX_STREAM_OK);
    assert_int_equal(c.count, 0);
    assert_true(pending > 0);
    nx_buf_free(&c.out);

    collect_init(&c);
    rc = run_cuts(NX_STREAM_SSE, 0, "data: a\n\n: tail\n", 16, NULL, 0,
                  &c, &pending);
    assert_int_equal(rc, NX_STREAM_OK);
    assert_int_equal(pending, 0);
    nx_buf_free(&c.out);
}


static void
test_ndjson(void **state)
{
    (void) state;

    NDJSON("{\"a\":1}\n{\"b\":2}\n", "[|{\"a\":1}][|{\"b\":2}]");
    NDJSON("{\"a\":1}\r\n{\"b\":2}\r\n", "[|{\"a\":1}][|{\"b\":2}]");
    NDJSON("\n\n{\"a\":1}\n\n \t\n\r\n", "[|{\"a\":1}]");

    /* a lone CR is not a line end */
    NDJSON("a\rb\n", "[|a\rb]");

    /* the last line needs no LF */
    NDJSON("{\"a\":1}\n{\"b\":2}", "[|{\"a\":1}][|{\"b\":2}]");
    NDJSON("x\r", "[|x]");

    /* SSE syntax means nothing here */
    NDJSON("data: x\n\n", "[|data: x]");
}


static void
test_ndjson_pending(void **state)
{
    size_t       pending;
    collect_t    c;
    nx_stream_t  s;

    (void) state;

    collect_init(&c);
    nx_stream_init(&s, NX_STREAM_NDJSON, 0);

    assert_int_equal(nx_stream_feed(&s, "{\"a\":1}\n{\"b\"", 13, collect,
                                    &c), 0);
    assert_int_equal(c.count, 1);
    pending = nx_stream_pending(&s);
    assert_int_equal(pending, 5);

    assert_int_equal(nx_stream_finish(&s, collect, &c), 0);
    assert_int_equal(c.count, 2);
    assert_int_equal(nx_stream_pending(&s), 0);

    /* finishing again dispatches nothing */
    assert_int_equal(nx_stream_finish(&s, collect, &c), 0);
    assert_int_equal(c.count, 2);

    nx_stream_free(&s);
    nx_buf_free(&c.out);
}


static void
test_too_long(void **state)
{
    int          rc;
    collect_t    c;
    nx_stream_t  s;

    (void) state;

    /* "data: 12345" is 11 bytes: the limit counts the whole line */
    collect_init(&c);
    rc = run(NX_STREAM_SSE, 11, "data: 12345\n\ndata: 123456\n\n", &c);
    assert_int_equal(rc, NX_STREAM_TOO_LONG);
    assert_int_equal(c.count, 1);
    nx_buf_free(&c.out);

    /* data gathered over lines counts */
    collect_init(&c);
    rc = run(NX_STREAM_SSE, 16, "data: 1234\ndata: 1234\ndata: 12\n\n", &c);
    assert_int_equal(rc, NX_STREAM_TOO_LONG);
    assert_int_equal(c.count, 0);
    nx_buf_free(&c.out);

    /* a long comment line too: it would be buffered */
    collect_init(&c);
    rc = run(NX_STREAM_SSE, 8, ": 345678901234\n", &c);
    assert_int_equal(rc, NX_STREAM_TOO_LONG);
    nx_buf_free(&c.out);

    collect_init(&c);
    rc = run(NX_STREAM_NDJSON, 4, "1234\n12345\n", &c);
    assert_int_equal(rc, NX_STREAM_TOO_LONG);
    assert_int_equal(c.count, 1);
    nx_buf_free(&c.out);

    /* an incomplete line past the limit fails at once, and for good */
    collect_init(&c);
    nx_stream_init(&s, NX_STREAM_NDJSON, 4);
    assert_int_equal(nx_stream_feed(&s, "123", 3, collect, &c), 0);
    assert_int_equal(nx_stream_feed(&s, "45", 2, collect, &c),
                     NX_STREAM_TOO_LONG);
    assert_int_equal(nx_stream_feed(&s, "\n", 1, collect, &c),
                     NX_STREAM_TOO_LONG);
    assert_int_equal(nx_stream_finish(&s, collect, &c), NX_STREAM_TOO_LONG);
    assert_int_equal(c.count, 0);
    nx_stream_free(&s);
    nx_buf_free(&c.out);
}


static void
test_abort(void **state)
{
    int          rc;
    collect_t    c;
    nx_stream_t  s;

    (void) state;

    collect_init(&c);
    c.stop_at = 2;
    nx_stream_init(&s, NX_STREAM_SSE, 0);

    rc = nx_stream_feed(&s, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27,
                        collect, &c);
    assert_int_equal(rc, NX_STREAM_ABORT);
    assert_int_equal(c.count, 2);

    rc = nx_stream_feed(&s, "data: 4\n\n", 9, collect, &c);
    assert_int_equal(rc, NX_STREAM_ABORT);
    assert_int_equal(nx_stream_finish(&s, collect, &c), NX_STREAM_ABORT);
    assert_int_equal(c.count, 2);

    nx_stream_free(&s);
    nx_buf_free(&c.out);

    /* from finish, for the last NDJSON line */
    collect_init(&c);
    c.stop_at = 1;
    nx_stream_init(&s, NX_STREAM_NDJSON, 0);
    assert_int_equal(nx_stream_feed(&s, "x", 1, collect, &c), 0);
    assert_int_equal(nx_stream_finish(&s, collect, &c), NX_STREAM_ABORT);
    nx_stream_free(&s);
    nx_buf_free(&c.out);
}


static const char  openai_stream[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"Hi \\u00e9\xc3\xa9\"},\"finish_reason\":null}]}\r\n\r\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}]}\r\r"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
    "\"completion_tokens\":2,\"total_tokens\":5}}\n\n"
    "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    "data: a\ndata: b\r\ndata: c\rdata\n\n"
    "id: 1\nevent: x\n\n"
    "data: [DONE]\n\n"
    "data: unterminated";


static const char  ollama_stream[] =
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"},"
    "\"done\":false}\n"
    "{\"model\":\"m\",\"message\":{\"content\":\"b\"},\"done\":false}\r\n"
    "\n"
    "{\"model\":\"m\",\"done\":true,\"done_reason\":\"stop\","
    "\"prompt_eval_count\":3,\"eval_count\":2}";


/*
 * Every way of cutting must give the same events and result, and the same
 * pending count when it succeeds.
 */

static void
check_splits(int mode, size_t max, const char *p, size_t n)
{
    int        rc0, rc;
    size_t     i, k, ncuts, pending0, pending, *cuts;
    collect_t  c0, c;

    collect_init(&c0);
    rc0 = run_cuts(mode, max, p, n, NULL, 0, &c0, &pending0);

    cuts = malloc(sizeof(size_t) * (n + 1));
    assert_non_null(cuts);

    /* byte by byte */
    for (i = 0; i + 1 < n; i++) {
        cuts[i] = i + 1;
    }

    collect_init(&c);
    rc = run_cuts(mode, max, p, n, cuts, n > 0 ? n - 1 : 0, &c, &pending);
    assert_int_equal(rc, rc0);
    assert_true(rc != NX_STREAM_OK || pending == pending0);
    assert_int_equal(c.out.len, c0.out.len);
    if (c.out.len) {
        assert_memory_equal(c.out.data, c0.out.data, c.out.len);
    }
    nx_buf_free(&c.out);

    /* random pieces, empty ones included */
    for (k = 0; k < 500; k++) {
        ncuts = 0;

        for (i = 0; i <= n; i++) {
            if (rand() % 7 == 0) {
                cuts[ncuts++] = i;
            }
        }

        collect_init(&c);
        rc = run_cuts(mode, max, p, n, cuts, ncuts, &c, &pending);
        assert_int_equal(rc, rc0);
        assert_true(rc != NX_STREAM_OK || pending == pending0);
        assert_int_equal(c.out.len, c0.out.len);
        if (c.out.len) {
            assert_memory_equal(c.out.data, c0.out.data, c.out.len);
        }
        assert_true(c.max_seen <= (max ? max : SIZE_MAX));
        nx_buf_free(&c.out);
    }

    free(cuts);
    nx_buf_free(&c0.out);
}


static void
test_splits(void **state)
{
    int     rc;
    size_t  max;

    (void) state;

    srand(1);

    check_splits(NX_STREAM_SSE, 0, openai_stream, sizeof(openai_stream) - 1);
    check_splits(NX_STREAM_NDJSON, 0, openai_stream,
                 sizeof(openai_stream) - 1);
    check_splits(NX_STREAM_NDJSON, 0, ollama_stream,
                 sizeof(ollama_stream) - 1);
    check_splits(NX_STREAM_SSE, 0, ollama_stream, sizeof(ollama_stream) - 1);

    /* with limits that fail at various points */
    for (max = 1; max < 200; max += 13) {
        check_splits(NX_STREAM_SSE, max, openai_stream,
                     sizeof(openai_stream) - 1);
        check_splits(NX_STREAM_NDJSON, max, ollama_stream,
                     sizeof(ollama_stream) - 1);
    }

    /* the whole stream, checked once */
    {
        collect_t  c;

        collect_init(&c);
        rc = run(NX_STREAM_SSE, 0, openai_stream, &c);
        assert_int_equal(rc, NX_STREAM_OK);
        assert_int_equal(c.count, 8);
        nx_buf_free(&c.out);
    }
}


static void
test_binary_data(void **state)
{
    int          rc;
    collect_t    c;
    nx_stream_t  s;

    (void) state;

    collect_init(&c);
    nx_stream_init(&s, NX_STREAM_SSE, 0);

    rc = nx_stream_feed(&s, "data: a\0b\n\n", 11, collect, &c);
    assert_int_equal(rc, NX_STREAM_OK);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.out.len, 6);
    assert_memory_equal(c.out.data, "[|a\0b]", 6);

    /* NULL with no bytes is nothing */
    assert_int_equal(nx_stream_feed(&s, NULL, 0, collect, &c), 0);

    nx_stream_free(&s);
    nx_buf_free(&c.out);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_basic),
        cmocka_unit_test(test_sse_line_ends),
        cmocka_unit_test(test_sse_crlf_split),
        cmocka_unit_test(test_sse_fields),
        cmocka_unit_test(test_sse_unterminated),
        cmocka_unit_test(test_ndjson),
        cmocka_unit_test(test_ndjson_pending),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_splits),
        cmocka_unit_test(test_binary_data),
    };

    return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
