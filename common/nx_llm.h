/*
 * Copyright (C) Nexus authors
 *
 * The LLM wire formats the gateway speaks, as pure functions: validation
 * of OpenAI-shaped requests, the request body for each provider type, and
 * the translation of each provider's answers (whole bodies and stream
 * events) back into OpenAI's shapes, with the usage they report.
 *
 *   openai     any OpenAI-compatible server: bodies pass through; the
 *              model is replaced by the served name, and a stream asks for
 *              stream_options.include_usage
 *   ollama     /api/chat (NDJSON) and /api/embed
 *   anthropic  /v1/messages (SSE events message_start, content_block_*,
 *              message_delta, message_stop, ping, error)
 *
 * Strings passed in need not be NUL-terminated.  Output goes to nx_buf_t
 * buffers, appended.  No function keeps a pointer to its input.
 */

#ifndef NX_LLM_H
#define NX_LLM_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>
#include "nx_buf.h"

/* provider types */
#define NX_LLM_OPENAI           0
#define NX_LLM_OLLAMA           1
#define NX_LLM_ANTHROPIC        2

/* request kinds */
#define NX_LLM_CHAT             0   /* /v1/chat/completions */
#define NX_LLM_EMBEDDINGS       1   /* /v1/embeddings */
#define NX_LLM_OLLAMA_CHAT      2   /* native /api/chat, passed through */
#define NX_LLM_OLLAMA_GENERATE  3   /* native /api/generate, passed through */

#define NX_LLM_MODEL_MAX        128

/*
 * A client error in OpenAI's shape:
 *   {"error":{"message":...,"type":"invalid_request_error",
 *             "param":...|null,"code":...|null}}
 * message never quotes the client's values.
 */
typedef struct {
    char        message[200];
    char        param[64];      /* "" when none: "messages[2].content" */
    char        code[48];       /* "" when none */
} nx_llm_err_t;

typedef struct {
    int         kind;
    yajl_val    tree;           /* the parsed body, freed by _req_free */
    char        model[NX_LLM_MODEL_MAX + 1];
    int         stream;         /* "stream": true (native Ollama: absent
                                   means true, as in Ollama) */
    int         include_usage;  /* the client asked for usage chunks */
    int64_t     max_tokens;     /* max_completion_tokens, else max_tokens,
                                   else options.num_predict; -1 when none */
    int64_t     prompt_estimate;/* estimated prompt tokens (>= 1) */
    int         max_tokens_forced;  /* set by the caller: the upstream
                                   body says max_tokens, whatever the
                                   client sent (a capped request) */
} nx_llm_req_t;

/*
 * Parses and validates a request body of the given kind.  Chat: model a
 * non-empty string of at most NX_LLM_MODEL_MAX bytes; messages a non-empty
 * array of objects with a string role among system, developer, user,
 * assistant, tool (function too) and a content that is a string, an array
 * of parts, or null where OpenAI allows it; stream a boolean; max_tokens
 * and max_completion_tokens positive integers; n, temperature, top_p of
 * the right types; stream_options an object, only with stream.
 * Embeddings: model, and input a non-empty string or a non-empty array of
 * strings or of integers, or an array of such arrays.  Native Ollama:
 * model, and messages (chat) or prompt (generate).
 * Returns 0, or -1 with err filled.
 */
int nx_llm_parse(int kind, const char *body, size_t len, nx_llm_req_t *req,
    nx_llm_err_t *err);
void nx_llm_req_free(nx_llm_req_t *req);

/* the error body, {"error":{...}}, for err */
int nx_llm_error_json(const nx_llm_err_t *err, const char *type,
    nx_buf_t *out);

/*
 * 1 when the body nx_llm_build_request() would build for this provider
 * type and served model says exactly what the client's body says, so the
 * client's bytes may be sent as they are; 0 when it must be built.
 */
int nx_llm_build_verbatim(const nx_llm_req_t *req, int type,
    const char *served_model);

/*
 * The upstream request body for one provider type, for the served model
 * name.  max_tokens_default is used where the provider needs a max and
 * the client gave none (Anthropic's max_tokens).  Ollama: OpenAI options
 * map to options.{num_predict,temperature,top_p,stop,seed}; Anthropic:
 * system and developer messages become "system", stop becomes
 * stop_sequences.  A stream sent to an openai provider always asks for
 * stream_options.include_usage.  Returns 0, or -1 (out of memory, or a
 * request this provider type cannot take: err filled).
 */
int nx_llm_build_request(const nx_llm_req_t *req, int type,
    const char *served_model, int64_t max_tokens_default, nx_buf_t *out,
    nx_llm_err_t *err);

/* The upstream path for a kind at a provider type, e.g. "/api/chat";
 * NULL when the type does not serve the kind. */
const char *nx_llm_upstream_path(int type, int kind);

typedef struct {
    int64_t     prompt;
    int64_t     completion;
    int64_t     total;
    int         present;        /* the provider reported it */
} nx_llm_usage_t;

/*
 * A whole successful upstream body (non-stream) into the OpenAI body the
 * client gets: chat.completion, or the embeddings list.  For the openai
 * type out receives the body unchanged.  id and created are used where
 * the provider gives none (Ollama).  Fills usage.  Returns 0, or -1 when
 * the body is not what the provider type sends.
 */
int nx_llm_translate_response(int type, int kind, const char *body,
    size_t len, const char *model, const char *id, int64_t created,
    nx_buf_t *out, nx_llm_usage_t *usage);

/*
 * A provider's error answer (any status) into OpenAI's error shape, so
 * the client sees the same shape whichever provider failed.  The message
 * is the provider's when it has one, else a generic one for the status.
 */
int nx_llm_translate_error(int type, int status, const char *body,
    size_t len, nx_buf_t *out);

/*
 * Stream translation.  The module frames the upstream bytes with
 * nx_stream (SSE for openai and anthropic, NDJSON for ollama) and passes
 * each event here; the client's bytes are appended to out:
 *
 *   chat (any type)      "data: {chunk}\n\n" ... "data: [DONE]\n\n", the
 *                        chat.completion.chunk shape of OpenAI; the first
 *                        chunk carries delta.role "assistant"; the last
 *                        one a finish_reason; then, when the client asked
 *                        for it, a usage chunk with empty choices
 *   native ollama        each NDJSON line unchanged, with "\n"
 *
 * When the client did not ask for usage, a usage-only chunk from an
 * openai provider is not forwarded (the module asked for it).
 */
typedef struct {
    int             type;
    int             kind;
    int             include_usage;
    char            id[64];
    char            model[NX_LLM_MODEL_MAX + 1];
    int64_t         created;
    int             role_sent;
    int             finished;       /* a finish_reason (or Ollama done) */
    int             done;           /* the stream ended cleanly: [DONE],
                                       message_stop, or Ollama's done
                                       line; [DONE] was written */
    char            finish_reason[24];
    nx_llm_usage_t  usage;
    int64_t         completion_bytes;   /* of content, for an estimate */
    int64_t         events;
} nx_llm_stream_t;

void nx_llm_stream_init(nx_llm_stream_t *s, int type, int kind,
    const char *model, const char *id, int64_t created, int include_usage);

/*
 * One upstream event.  Returns 0, or -1 when it is malformed (not JSON,
 * not the provider's shape, an event after the end, or an error event
 * from the provider); nothing is appended then.
 */
int nx_llm_stream_event(nx_llm_stream_t *s, const char *event,
    size_t event_len, const char *data, size_t len, nx_buf_t *out);

/*
 * The explicit end of a broken stream: for chat, an SSE event
 *   data: {"error":{"message":...,"type":"upstream_error","code":code}}
 * followed by "data: [DONE]\n\n"; for native Ollama an NDJSON line
 *   {"error":"..."}.
 */
int nx_llm_stream_error(nx_llm_stream_t *s, const char *code,
    const char *message, nx_buf_t *out);

/*
 * Model names from a provider's model list: /v1/models
 * ({"data":[{"id":...}]}) for openai and anthropic, /api/tags
 * ({"models":[{"name":...}]}) for ollama.  cb is called once per name;
 * names longer than NX_LLM_MODEL_MAX are skipped.  Returns the count, or
 * -1 when the body is not a model list.
 */
typedef void (*nx_llm_model_pt)(void *ud, const char *name, size_t len);
int nx_llm_parse_models(int type, const char *body, size_t len,
    nx_llm_model_pt cb, void *ud);

/* {"object":"list","data":[{"id":n,"object":"model","created":c,
 *  "owned_by":owner}...]} for names[0..n) */
int nx_llm_models_json(const char *const *names, const size_t *lens,
    size_t n, int64_t created, const char *owner, nx_buf_t *out);

/* /api/tags shape ({"models":[{"name":...,"model":...}...]}) */
int nx_llm_tags_json(const char *const *names, const size_t *lens,
    size_t n, nx_buf_t *out);

/* A token estimate for text: about 4 bytes per token, at least 1 for
 * non-empty text. */
int64_t nx_llm_estimate_tokens(size_t bytes);

#endif /* NX_LLM_H */
