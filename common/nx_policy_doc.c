/*
 * Copyright (C) Nexus authors
 *
 * Evaluation contexts from JSON documents, for the policy simulate endpoint
 * and for tests: {"principal": {"role": "editor", "groups": ["a", "b"]}}
 * becomes the attributes "principal.role" and "principal.groups".
 *
 * The yajl tree is kept: string values point into it. A first pass counts
 * attributes, array items and name bytes, so that everything else is one
 * allocation.
 */

#include <stdlib.h>
#include <string.h>

#include "nx_json.h"
#include "nx_policy.h"


struct nx_policy_doc_s {
    nx_policy_ctx_t               ctx;
    yajl_val                      root;
};


typedef struct {
    size_t                        nattrs;
    size_t                        nitems;
    size_t                        names;      /* bytes, with NULs */
    size_t                        longest;

    nx_policy_attr_t             *attrs;
    nx_policy_value_t            *items;
    char                         *name;       /* next free byte */
    char                         *path;       /* the name being built */

    char                         *err;
    size_t                        errlen;
} nx_policy_flat_t;


static int nx_policy_doc_count(nx_policy_flat_t *f, yajl_val v, size_t plen);
static int nx_policy_doc_count_value(nx_policy_flat_t *f, yajl_val v);
static void nx_policy_doc_fill(nx_policy_flat_t *f, yajl_val v, size_t plen);
static void nx_policy_doc_value(nx_policy_flat_t *f, yajl_val v,
    nx_policy_value_t *out);
static void nx_policy_doc_error(nx_policy_flat_t *f, const char *msg);


nx_policy_doc_t *
nx_policy_doc_parse(const char *json, size_t len, char *err, size_t errlen)
{
    size_t             size;
    yajl_val           root;
    unsigned char     *mem;
    nx_policy_doc_t   *doc;
    nx_policy_flat_t   f;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    root = nx_json_parse_strict(json, len, err, errlen);
    if (root == NULL) {
        return NULL;
    }

    memset(&f, 0, sizeof(f));
    f.err = err;
    f.errlen = errlen;

    if (!YAJL_IS_OBJECT(root)) {
        nx_policy_doc_error(&f, "expected an object");
        goto failed;
    }

    if (nx_policy_doc_count(&f, root, 0) != 0) {
        goto failed;
    }

    /* the counts are bounded by the document's size: no overflow */

    size = sizeof(nx_policy_doc_t) + f.nattrs * sizeof(nx_policy_attr_t)
           + f.nitems * sizeof(nx_policy_value_t) + f.names + f.longest + 1;

    mem = malloc(size);
    if (mem == NULL) {
        nx_policy_doc_error(&f, "out of memory");
        goto failed;
    }

    doc = (nx_policy_doc_t *) mem;
    mem += sizeof(nx_policy_doc_t);

    f.attrs = (nx_policy_attr_t *) mem;
    mem += f.nattrs * sizeof(nx_policy_attr_t);

    f.items = (nx_policy_value_t *) mem;
    mem += f.nitems * sizeof(nx_policy_value_t);

    f.name = (char *) mem;
    f.path = f.name + f.names;

    doc->root = root;
    doc->ctx.attrs = f.attrs;
    doc->ctx.nattrs = f.nattrs;
    doc->ctx.lookup = NULL;
    doc->ctx.data = NULL;

    f.nattrs = 0;

    nx_policy_doc_fill(&f, root, 0);

    return doc;

failed:

    nx_json_free(root);

    return NULL;
}


const nx_policy_ctx_t *
nx_policy_doc_ctx(const nx_policy_doc_t *doc)
{
    return doc != NULL ? &doc->ctx : NULL;
}


void
nx_policy_doc_free(nx_policy_doc_t *doc)
{
    if (doc == NULL) {
        return;
    }

    nx_json_free(doc->root);
    free(doc);
}


static int
nx_policy_doc_count(nx_policy_flat_t *f, yajl_val v, size_t plen)
{
    size_t    i, len;
    yajl_val  m;

    for (i = 0; i < v->u.object.len; i++) {
        len = plen + (plen > 0) + strlen(v->u.object.keys[i]);
        m = v->u.object.values[i];

        /* the path buffer holds object paths too, even of empty objects */
        if (len > f->longest) {
            f->longest = len;
        }

        if (YAJL_IS_OBJECT(m)) {
            if (nx_policy_doc_count(f, m, len) != 0) {
                return -1;
            }

            continue;
        }

        if (nx_policy_doc_count_value(f, m) != 0) {
            return -1;
        }

        f->nattrs++;
        f->names += len + 1;
    }

    return 0;
}


static int
nx_policy_doc_count_value(nx_policy_flat_t *f, yajl_val v)
{
    size_t  i;

    if (YAJL_IS_OBJECT(v)) {
        nx_policy_doc_error(f, "objects inside arrays are not supported");
        return -1;
    }

    if (YAJL_IS_NUMBER(v) && !(v->u.number.flags & YAJL_NUMBER_DOUBLE_VALID))
    {
        nx_policy_doc_error(f, "number out of range");
        return -1;
    }

    if (!YAJL_IS_ARRAY(v)) {
        return 0;
    }

    f->nitems += v->u.array.len;

    for (i = 0; i < v->u.array.len; i++) {
        if (nx_policy_doc_count_value(f, v->u.array.values[i]) != 0) {
            return -1;
        }
    }

    return 0;
}


/*
 * Members are visited last first: the lookup takes the first attribute of
 * a name, and with duplicate members the last one wins, as in nx_json_get().
 */

static void
nx_policy_doc_fill(nx_policy_flat_t *f, yajl_val v, size_t plen)
{
    size_t             i, klen, len;
    yajl_val           m;
    const char        *key;
    nx_policy_attr_t  *a;

    for (i = v->u.object.len; i > 0; i--) {
        key = v->u.object.keys[i - 1];
        m = v->u.object.values[i - 1];

        klen = strlen(key);
        len = plen;

        if (plen > 0) {
            f->path[len++] = '.';
        }

        memcpy(f->path + len, key, klen);
        len += klen;

        if (YAJL_IS_OBJECT(m)) {
            nx_policy_doc_fill(f, m, len);
            continue;
        }

        a = &f->attrs[f->nattrs++];

        memcpy(f->name, f->path, len);
        f->name[len] = '\0';

        a->name = f->name;
        a->len = len;
        f->name += len + 1;

        nx_policy_doc_value(f, m, &a->value);
    }
}


static void
nx_policy_doc_value(nx_policy_flat_t *f, yajl_val v, nx_policy_value_t *out)
{
    size_t              i, n;
    nx_policy_value_t  *items;

    memset(out, 0, sizeof(nx_policy_value_t));

    if (YAJL_IS_STRING(v)) {
        out->type = NX_POLICY_STRING;
        out->u.str.data = v->u.string;
        out->u.str.len = strlen(v->u.string);

    } else if (YAJL_IS_NUMBER(v)) {
        out->type = NX_POLICY_NUMBER;
        out->u.number = v->u.number.d;

    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        out->type = NX_POLICY_BOOL;
        out->u.boolean = YAJL_IS_TRUE(v);

    } else if (YAJL_IS_ARRAY(v)) {
        n = v->u.array.len;
        items = f->items;
        f->items += n;

        out->type = NX_POLICY_ARRAY;
        out->u.arr.items = items;
        out->u.arr.n = n;

        for (i = 0; i < n; i++) {
            nx_policy_doc_value(f, v->u.array.values[i], &items[i]);
        }

    } else {
        out->type = NX_POLICY_NULL;
    }
}


static void
nx_policy_doc_error(nx_policy_flat_t *f, const char *msg)
{
    size_t  n;

    if (f->err == NULL || f->errlen == 0) {
        return;
    }

    n = strlen(msg);
    if (n >= f->errlen) {
        n = f->errlen - 1;
    }

    memcpy(f->err, msg, n);
    f->err[n] = '\0';
}
