/*
 * Copyright (C) Nexus authors
 *
 * Model lists: the names a provider serves, read from its /v1/models or
 * /api/tags answer, and the lists the gateway answers with in OpenAI's
 * and Ollama's shapes.
 */

#include <string.h>

#include "nx_llm_int.h"


static int nx_llm_model_name_ok(const char *name, size_t len);


/*
 * Entries that are not objects, or whose name is missing, empty, longer
 * than NX_LLM_MODEL_MAX or holds control characters, are skipped: a
 * provider's list must not put odd names into the gateway's.
 */

int
nx_llm_parse_models(int type, const char *body, size_t len,
    nx_llm_model_pt cb, void *ud)
{
    int           count;
    size_t        i, n;
    yajl_val      root, list, e;
    const char   *name;

    root = nx_json_parse_strict(body, len, NULL, 0);

    if (root == NULL) {
        return -1;
    }

    list = nx_llm_member(root, type == NX_LLM_OLLAMA ? "models" : "data");

    if (!YAJL_IS_OBJECT(root) || !YAJL_IS_ARRAY(list)) {
        nx_json_free(root);
        return -1;
    }

    count = 0;

    for (i = 0; i < list->u.array.len; i++) {
        e = list->u.array.values[i];

        if (type == NX_LLM_OLLAMA) {
            if (nx_json_string(nx_llm_member(e, "name"), &name) != 0
                && nx_json_string(nx_llm_member(e, "model"), &name) != 0)
            {
                continue;
            }

        } else if (nx_json_string(nx_llm_member(e, "id"), &name) != 0) {
            continue;
        }

        n = strlen(name);

        if (!nx_llm_model_name_ok(name, n)) {
            continue;
        }

        if (cb != NULL) {
            cb(ud, name, n);
        }

        count++;
    }

    nx_json_free(root);

    return count;
}


int
nx_llm_models_json(const char *const *names, const size_t *lens,
    size_t n, int64_t created, const char *owner, nx_buf_t *out)
{
    size_t  i, start;

    start = out->len;

    if (owner == NULL) {
        owner = "nexus";
    }

    if (nx_buf_append_str(out, "{\"object\":\"list\",\"data\":[") != 0) {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        if ((i > 0 && nx_buf_append(out, ",", 1) != 0)
            || nx_buf_append_str(out, "{\"id\":") != 0
            || nx_llm_put_str(out, names[i], lens[i]) != 0
            || nx_buf_append_str(out, ",\"object\":\"model\",\"created\":")
               != 0
            || nx_llm_put_int(out, created) != 0
            || nx_buf_append_str(out, ",\"owned_by\":") != 0
            || nx_llm_put_cstr(out, owner) != 0
            || nx_buf_append(out, "}", 1) != 0)
        {
            goto failed;
        }
    }

    if (nx_buf_append_str(out, "]}") != 0) {
        goto failed;
    }

    return 0;

failed:

    out->len = start;

    return -1;
}


int
nx_llm_tags_json(const char *const *names, const size_t *lens,
    size_t n, nx_buf_t *out)
{
    size_t  i, start;

    start = out->len;

    if (nx_buf_append_str(out, "{\"models\":[") != 0) {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        if ((i > 0 && nx_buf_append(out, ",", 1) != 0)
            || nx_buf_append_str(out, "{\"name\":") != 0
            || nx_llm_put_str(out, names[i], lens[i]) != 0
            || nx_buf_append_str(out, ",\"model\":") != 0
            || nx_llm_put_str(out, names[i], lens[i]) != 0
            || nx_buf_append(out, "}", 1) != 0)
        {
            goto failed;
        }
    }

    if (nx_buf_append_str(out, "]}") != 0) {
        goto failed;
    }

    return 0;

failed:

    out->len = start;

    return -1;
}


static int
nx_llm_model_name_ok(const char *name, size_t len)
{
    size_t  i;

    if (len == 0 || len > NX_LLM_MODEL_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}
