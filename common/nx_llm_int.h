/*
 * Copyright (C) Nexus authors
 *
 * Helpers shared by the nx_llm_*.c files, not part of the interface of
 * libnexus: JSON output into an nx_buf_t, and error filling.
 *
 * Output is written by hand rather than with yajl_gen: yajl's buffer does
 * not check its allocations, and the gateway must survive running out of
 * memory.  Strings go through nx_json_escape, numbers are copied as the
 * provider or client wrote them, so output is deterministic and valid.
 */

#ifndef NX_LLM_INT_H
#define NX_LLM_INT_H

#include <stddef.h>
#include <stdint.h>

#include "nx_buf.h"
#include "nx_json.h"
#include "nx_llm.h"


/* bytes of a provider's error message that are kept */
#define NX_LLM_MESSAGE_MAX  512


/* "s" escaped, quotes included; null when s is NULL */
int nx_llm_put_str(nx_buf_t *b, const char *s, size_t len);
int nx_llm_put_cstr(nx_buf_t *b, const char *s);
int nx_llm_put_int(nx_buf_t *b, int64_t n);

/* a parsed value written back, compact, members in their order */
int nx_llm_put_value(nx_buf_t *b, yajl_val v);

/* the longest prefix of s[0..len) of at most max bytes that does not cut
 * a UTF-8 sequence */
size_t nx_llm_utf8_prefix(const char *s, size_t len, size_t max);

/* member of an object, NULL when absent or JSON null */
yajl_val nx_llm_member(yajl_val v, const char *name);

/* usage as each provider reports it (nx_llm_response.c) */
void nx_llm_usage_openai(yajl_val usage_obj, nx_llm_usage_t *usage);
void nx_llm_usage_ollama(yajl_val final_obj, nx_llm_usage_t *usage);
void nx_llm_usage_anthropic(yajl_val usage_obj, nx_llm_usage_t *usage);

/* OpenAI's finish_reason for Ollama's done_reason, Anthropic's
 * stop_reason (NULL when absent) */
const char *nx_llm_finish_ollama(const char *done_reason);
const char *nx_llm_finish_anthropic(const char *stop_reason);

void nx_llm_err_set(nx_llm_err_t *err, const char *param, const char *code,
    const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif /* NX_LLM_INT_H */
