/*
 * Copyright (C) Nexus authors
 *
 * The ABAC policy engine (the language is described in nx_policy.h):
 * compilation of a JSON policy set into a tree, and its evaluation.
 *
 * Compilation copies everything it keeps (ids, variable names, literals)
 * into an arena owned by the set, so the yajl tree is freed at once and a
 * set is freed by walking a few blocks. Rules are sorted once, deny before
 * allow, then by descending priority, then by id: a decision is the first
 * rule of that order that applies and holds.
 *
 * Variables are interned: every distinct path gets an index, and a
 * decision resolves each index at most once, in a cache on its stack.
 *
 * Regular expressions run in PCRE2's interpreter, whose backtracking
 * frames live in the match data block and grow, by allocating a vector of
 * twice the size and copying, up to the heap limit. The match data of a
 * set allocates through nx_policy_heap_alloc(), which hands out two blocks
 * reserved at compile time (old and new vector of one growth step), so an
 * evaluation never calls malloc() and never uses more than the limit.
 */

/* memmem() even when built without -D_GNU_SOURCE (nginx, fuzz) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH  8
#include <pcre2.h>

#include "nx_json.h"
#include "nx_policy.h"
#include "nx_tz.h"


#define NX_POLICY_NOVAR        UINT32_MAX
#define NX_POLICY_VAR_CACHE    64
#define NX_POLICY_BLOCK_SIZE   8192
#define NX_POLICY_PATH_LEN     512
#define NX_POLICY_MSG_LEN      256
#define NX_POLICY_HEAP_MIN     20         /* PCRE2's first frame vector */
#define NX_POLICY_HEAP_MAX     (64 * 1024)

#define nx_policy_align(n)     (((n) + 15) & ~(size_t) 15)
#define nx_policy_digit(c)     ((c) >= '0' && (c) <= '9')


typedef enum {
    NX_POLICY_OP_TRUE = 0,
    NX_POLICY_OP_FALSE,
    NX_POLICY_OP_ALL,
    NX_POLICY_OP_ANY,
    NX_POLICY_OP_NOT,
    NX_POLICY_OP_EQ,
    NX_POLICY_OP_NE,
    NX_POLICY_OP_IN,
    NX_POLICY_OP_CONTAINS,
    NX_POLICY_OP_STARTS_WITH,
    NX_POLICY_OP_GT,
    NX_POLICY_OP_GTE,
    NX_POLICY_OP_LT,
    NX_POLICY_OP_LTE,
    NX_POLICY_OP_REGEX,
    NX_POLICY_OP_TIME_BETWEEN
} nx_policy_op_t;


typedef struct nx_policy_node_s   nx_policy_node_t;
typedef struct nx_policy_block_s  nx_policy_block_t;
typedef struct nx_policy_code_s   nx_policy_code_t;
typedef struct nx_policy_zone_s   nx_policy_zone_t;


/* an operand: a literal, or variable number var */

typedef struct {
    nx_policy_value_t             lit;
    uint32_t                      var;
    unsigned                      timed:1;    /* lit is a timestamp: time */
    double                        time;
} nx_policy_opnd_t;


struct nx_policy_node_s {
    nx_policy_op_t                op;

    union {
        struct {
            nx_policy_node_t    **kids;
            size_t                n;
        }                         list;

        nx_policy_node_t         *kid;

        struct {
            nx_policy_opnd_t      a;
            nx_policy_opnd_t      b;
        }                         cmp;

        struct {
            nx_policy_opnd_t      a;
            pcre2_code           *re;
        }                         rx;

        struct {
            nx_policy_opnd_t      t;
            int32_t               start;      /* seconds after midnight */
            int32_t               end;        /* exclusive, up to 86400 */
            const nx_tz_t        *tz;
        }                         tb;
    }                             u;
};


typedef struct {
    const char                   *id;
    const char                   *rtype;
    size_t                        rtype_len;
    const char                   *action;
    size_t                        action_len;
    int64_t                       priority;
    size_t                        index;      /* in the source array */
    nx_policy_node_t             *cond;       /* NULL: true */
    unsigned                      deny:1;
    unsigned                      any_rtype:1;
    unsigned                      any_action:1;
    unsigned                      inert:1;    /* "*" without wildcards */
} nx_policy_rule_t;


typedef struct {
    const char                   *name;
    size_t                        len;
} nx_policy_var_t;


struct nx_policy_block_s {
    nx_policy_block_t            *next;
    size_t                        size;
    size_t                        used;
};


struct nx_policy_code_s {
    nx_policy_code_t             *next;
    pcre2_code                   *re;
};


struct nx_policy_zone_s {
    nx_policy_zone_t             *next;
    const char                   *name;
    nx_tz_t                      *tz;
};


typedef struct {
    unsigned char                *block[2];
    size_t                        size;
    unsigned                      busy[2];
    unsigned                      armed;
} nx_policy_heap_t;


struct nx_policy_s {
    nx_policy_rule_t             *rules;
    size_t                        nrules;
    nx_policy_node_t             *cond;
    unsigned                      condition:1;
    unsigned                      default_allow:1;

    nx_policy_var_t              *vars;
    size_t                        nvars;

    nx_policy_block_t            *blocks;
    nx_policy_code_t             *codes;
    nx_policy_zone_t             *zones;

    pcre2_general_context        *gctx;
    pcre2_match_context          *mctx;
    pcre2_match_data             *md;
    nx_policy_heap_t              heap;
};


/* compilation state */

typedef struct {
    nx_policy_t                  *p;
    int                           wildcards;
    uint32_t                      match_limit;
    uint32_t                      heap_kib;
    const char                   *tzdir;
    const char                   *time_var;

    nx_policy_var_t              *vars;       /* malloc()ed while compiling */
    size_t                        nvars;
    size_t                        vcap;

    char                         *err;
    size_t                        errlen;
    size_t                        plen;
    char                          path[NX_POLICY_PATH_LEN];
} nx_policy_cc_t;


/* evaluation state, on the stack */

typedef struct {
    const nx_policy_t            *p;
    const nx_policy_ctx_t        *ctx;
    const char                   *error;
    const nx_policy_value_t      *cache[NX_POLICY_VAR_CACHE];
} nx_policy_ev_t;


typedef struct {
    const char                   *name;
    nx_policy_op_t                op;
} nx_policy_opname_t;


static nx_policy_t *nx_policy_compile_doc(const char *json, size_t len,
    const nx_policy_opts_t *opts, int condition, char *err, size_t errlen);
static int nx_policy_cc_rules(nx_policy_cc_t *cc, yajl_val v);
static int nx_policy_cc_rule(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_rule_t *r);
static int nx_policy_cc_name(nx_policy_cc_t *cc, yajl_val v,
    const char *member, int *any, const char **s, size_t *len);
static int nx_policy_cc_dups(nx_policy_cc_t *cc, nx_policy_rule_t *rules,
    size_t n);
static nx_policy_node_t *nx_policy_cc_cond(nx_policy_cc_t *cc, yajl_val v);
static int nx_policy_cc_op(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_node_t *n);
static int nx_policy_cc_list(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_node_t *n);
static int nx_policy_cc_pair(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_node_t *n);
static int nx_policy_cc_regex(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_node_t *n);
static int nx_policy_cc_time(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_node_t *n);
static int nx_policy_cc_clock(nx_policy_cc_t *cc, yajl_val v, int end,
    int32_t *secs);
static int nx_policy_cc_zone(nx_policy_cc_t *cc, yajl_val v,
    const nx_tz_t **tz);
static int nx_policy_cc_opnd(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_opnd_t *o);
static int nx_policy_cc_scalar(nx_policy_cc_t *cc, yajl_val v,
    nx_policy_value_t *lit);
static int nx_policy_cc_var(nx_policy_cc_t *cc, const char *name,
    uint32_t *idx);
static int nx_policy_cc_scratch(nx_policy_cc_t *cc);
static int nx_policy_cc_strdup(nx_policy_cc_t *cc, const char *s,
    size_t len, const char **out);
static void *nx_policy_cc_alloc(nx_policy_cc_t *cc, size_t size);
static size_t nx_policy_cc_push(nx_policy_cc_t *cc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void nx_policy_cc_pop(nx_policy_cc_t *cc, size_t len);
static void nx_policy_cc_fail(nx_policy_cc_t *cc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int nx_policy_printable(const char *s, size_t len, size_t max);
static int nx_policy_var_valid(const char *s, size_t len);
static void *nx_policy_alloc(nx_policy_t *p, size_t size);
static int nx_policy_rule_cmp(const void *a, const void *b);
static int nx_policy_id_cmp(const void *a, const void *b);
static void *nx_policy_heap_alloc(PCRE2_SIZE size, void *data);
static void nx_policy_heap_free(void *ptr, void *data);

static int nx_policy_eval_node(nx_policy_ev_t *ev, const nx_policy_node_t *n);
static int nx_policy_eval_order(nx_policy_ev_t *ev,
    const nx_policy_node_t *n);
static int nx_policy_eval_regex(nx_policy_ev_t *ev,
    const nx_policy_node_t *n);
static int nx_policy_eval_time(nx_policy_ev_t *ev,
    const nx_policy_node_t *n);
static int nx_policy_number(nx_policy_ev_t *ev, const nx_policy_opnd_t *o,
    double *d);
static const nx_policy_value_t *nx_policy_opnd(nx_policy_ev_t *ev,
    const nx_policy_opnd_t *o);
static const nx_policy_value_t *nx_policy_lookup(const nx_policy_ctx_t *ctx,
    const nx_policy_var_t *var);
static int nx_policy_value_eq(const nx_policy_value_t *a,
    const nx_policy_value_t *b);
static int nx_policy_member(const nx_policy_value_t *arr,
    const nx_policy_value_t *v);
static void nx_policy_ev_init(nx_policy_ev_t *ev, const nx_policy_t *p,
    const nx_policy_ctx_t *ctx);


static const nx_policy_opname_t  nx_policy_ops[] = {
    { "all",           NX_POLICY_OP_ALL },
    { "any",           NX_POLICY_OP_ANY },
    { "not",           NX_POLICY_OP_NOT },
    { "eq",            NX_POLICY_OP_EQ },
    { "ne",            NX_POLICY_OP_NE },
    { "in",            NX_POLICY_OP_IN },
    { "contains",      NX_POLICY_OP_CONTAINS },
    { "starts_with",   NX_POLICY_OP_STARTS_WITH },
    { "gt",            NX_POLICY_OP_GT },
    { "gte",           NX_POLICY_OP_GTE },
    { "lt",            NX_POLICY_OP_LT },
    { "lte",           NX_POLICY_OP_LTE },
    { "regex",         NX_POLICY_OP_REGEX },
    { "time_between",  NX_POLICY_OP_TIME_BETWEEN },
    { NULL,            NX_POLICY_OP_TRUE }
};


/* "name" and "condition_json" are the reference's spellings of "id" and
 * "condition"; a rule may use either, not both */
static const char  *nx_policy_rule_members[] = {
    "id", "effect", "priority", "resource_type", "action", "condition",
    "description", "name", "condition_json", NULL
};


static const nx_policy_value_t  nx_policy_null;


nx_policy_t *
nx_policy_compile(const char *json, size_t len, const nx_policy_opts_t *opts,
    char *err, size_t errlen)
{
    return nx_policy_compile_doc(json, len, opts, 0, err, errlen);
}


nx_policy_t *
nx_policy_compile_condition(const char *json, size_t len,
    const nx_policy_opts_t *opts, char *err, size_t errlen)
{
    return nx_policy_compile_doc(json, len, opts, 1, err, errlen);
}


static nx_policy_t *
nx_policy_compile_doc(const char *json, size_t len,
    const nx_policy_opts_t *opts, int condition, char *err, size_t errlen)
{
    char                     jerr[128];
    yajl_val                 root;
    nx_policy_t             *p;
    nx_policy_cc_t           cc;
    static nx_policy_opts_t  defaults;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    if (opts == NULL) {
        opts = &defaults;
    }

    memset(&cc, 0, sizeof(cc));
    cc.err = err;
    cc.errlen = errlen;
    cc.wildcards = opts->wildcards;
    cc.match_limit = opts->match_limit ? opts->match_limit
                                       : NX_POLICY_MATCH_LIMIT;
    cc.heap_kib = opts->heap_kib ? opts->heap_kib : NX_POLICY_HEAP_KIB;
    cc.tzdir = opts->tzdir;
    cc.time_var = opts->time_var ? opts->time_var : NX_POLICY_TIME_VAR;

    if (cc.heap_kib < NX_POLICY_HEAP_MIN) {
        cc.heap_kib = NX_POLICY_HEAP_MIN;
    }

    if (cc.heap_kib > NX_POLICY_HEAP_MAX) {
        cc.heap_kib = NX_POLICY_HEAP_MAX;
    }

    (void) nx_policy_cc_push(&cc, "%s", condition ? "condition" : "rules");

    if (!nx_policy_var_valid(cc.time_var, strlen(cc.time_var))) {
        nx_policy_cc_fail(&cc, "invalid time variable in the options");
        return NULL;
    }

    root = nx_json_parse_strict(json, len, jerr, sizeof(jerr));
    if (root == NULL) {
        nx_policy_cc_fail(&cc, "invalid JSON: %s", jerr);
        return NULL;
    }

    p = calloc(1, sizeof(nx_policy_t));
    if (p == NULL) {
        nx_policy_cc_fail(&cc, "out of memory");
        nx_json_free(root);
        return NULL;
    }

    cc.p = p;
    p->condition = condition ? 1 : 0;
    p->default_allow = opts->default_allow ? 1 : 0;

    if (condition) {
        p->cond = nx_policy_cc_cond(&cc, root);
        if (p->cond == NULL) {
            goto failed;
        }

    } else if (nx_policy_cc_rules(&cc, root) != 0) {
        goto failed;
    }

    if (cc.nvars > 0) {
        p->vars = nx_policy_cc_alloc(&cc, cc.nvars * sizeof(nx_policy_var_t));
        if (p->vars == NULL) {
            goto failed;
        }

        memcpy(p->vars, cc.vars, cc.nvars * sizeof(nx_policy_var_t));
        p->nvars = cc.nvars;
    }

    free(cc.vars);
    nx_json_free(root);

    return p;

failed:

    free(cc.vars);
    nx_json_free(root);
    nx_policy_free(p);

    return NULL;
}


static int
nx_policy_cc_rules(nx_policy_cc_t *cc, yajl_val v)
{
    size_t             i, n, k;
    nx_policy_t       *p;
    nx_policy_rule_t  *rules;

    if (!YAJL_IS_ARRAY(v)) {
        nx_policy_cc_fail(cc, "expected an array of rules");
        return -1;
    }

    p = cc->p;
    n = v->u.array.len;

    if (n == 0) {
        return 0;
    }

    rules = nx_policy_cc_alloc(cc, n * sizeof(nx_policy_rule_t));
    if (rules == NULL) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        k = nx_policy_cc_push(cc, "[%zu]", i);

        rules[i].index = i;

        if (nx_policy_cc_rule(cc, v->u.array.values[i], &rules[i]) != 0) {
            return -1;
        }

        nx_policy_cc_pop(cc, k);
    }

    if (nx_policy_cc_dups(cc, rules, n) != 0) {
        return -1;
    }

    /* rules with a wildcard the set does not honour can never apply */

    for (i = 0, k = 0; i < n; i++) {
        if (!rules[i].inert) {
            rules[k++] = rules[i];
        }
    }

    qsort(rules, k, sizeof(nx_policy_rule_t), nx_policy_rule_cmp);

    p->rules = rules;
    p->nrules = k;

    return 0;
}


static int
nx_policy_cc_rule(nx_policy_cc_t *cc, yajl_val v, nx_policy_rule_t *r)
{
    int          any;
    size_t       i, k, j;
    yajl_val     m;
    const char  *s, *key;

    if (!YAJL_IS_OBJECT(v)) {
        nx_policy_cc_fail(cc, "expected a rule object");
        return -1;
    }

    for (i = 0; i < v->u.object.len; i++) {
        key = v->u.object.keys[i];

        for (j = 0; nx_policy_rule_members[j] != NULL; j++) {
            if (strcmp(key, nx_policy_rule_members[j]) == 0) {
                break;
            }
        }

        if (nx_policy_rule_members[j] == NULL) {
            if (nx_policy_printable(key, strlen(key), 64)) {
                nx_policy_cc_fail(cc, "unknown member \"%s\"", key);

            } else {
                nx_policy_cc_fail(cc, "unknown member");
            }

            return -1;
        }
    }

    /* id */

    m = nx_json_get(v, "id");

    if (m != NULL && nx_json_get(v, "name") != NULL) {
        nx_policy_cc_fail(cc, "both \"id\" and \"name\"");
        return -1;
    }

    if (m == NULL) {
        m = nx_json_get(v, "name");
    }

    if (m == NULL) {
        nx_policy_cc_fail(cc, "missing \"id\"");
        return -1;
    }

    k = nx_policy_cc_push(cc, ".id");

    if (nx_json_string(m, &s) != 0
        || !nx_policy_printable(s, strlen(s), NX_POLICY_ID_MAX))
    {
        nx_policy_cc_fail(cc, "expected a string of 1 to %d visible ASCII "
                          "characters other than '\"' and '\\'",
                          NX_POLICY_ID_MAX);
        return -1;
    }

    if (nx_policy_cc_strdup(cc, s, strlen(s), &r->id) != 0) {
        return -1;
    }

    nx_policy_cc_pop(cc, k);

    /* effect */

    m = nx_json_get(v, "effect");

    if (m == NULL) {
        nx_policy_cc_fail(cc, "missing \"effect\"");
        return -1;
    }

    k = nx_policy_cc_push(cc, ".effect");

    if (nx_json_string(m, &s) != 0
        || (strcmp(s, "allow") != 0 && strcmp(s, "deny") != 0))
    {
        nx_policy_cc_fail(cc, "expected \"allow\" or \"deny\"");
        return -1;
    }

    r->deny = (s[0] == 'd');

    nx_policy_cc_pop(cc, k);

    /* priority */

    r->priority = 0;

    m = nx_json_get(v, "priority");

    if (m != NULL) {
        k = nx_policy_cc_push(cc, ".priority");

        if (nx_json_int(m, &r->priority) != 0) {
            nx_policy_cc_fail(cc, "expected an integer");
            return -1;
        }

        nx_policy_cc_pop(cc, k);
    }

    /* resource_type, action */

    if (nx_policy_cc_name(cc, v, "resource_type", &any, &r->rtype,
                          &r->rtype_len)
        != 0)
    {
        return -1;
    }

    r->any_rtype = (any && cc->wildcards);
    r->inert = (any && !cc->wildcards);

    if (nx_policy_cc_name(cc, v, "action", &any, &r->action, &r->action_len)
        != 0)
    {
        return -1;
    }

    r->any_action = (any && cc->wildcards);
    r->inert |= (any && !cc->wildcards);

    /* description: free text, not kept */

    m = nx_json_get(v, "description");

    if (m != NULL && !YAJL_IS_STRING(m)) {
        k = nx_policy_cc_push(cc, ".description");
        nx_policy_cc_fail(cc, "expected a string");
        return -1;
    }

    /* condition */

    r->cond = NULL;

    m = nx_json_get(v, "condition");

    if (m != NULL && nx_json_get(v, "condition_json") != NULL) {
        nx_policy_cc_fail(cc, "both \"condition\" and \"condition_json\"");
        return -1;
    }

    if (m == NULL) {
        m = nx_json_get(v, "condition_json");
    }

    if (m != NULL) {
        k = nx_policy_cc_push(cc, ".condition");

        r->cond = nx_policy_cc_cond(cc, m);
        if (r->cond == NULL) {
            return -1;
        }

        nx_policy_cc_pop(cc, k);
    }

    return 0;
}


static int
nx_policy_cc_name(nx_policy_cc_t *cc, yajl_val v, const char *member,
    int *any, const char **s, size_t *len)
{
    size_t       k;
    yajl_val     m;
    const char  *str;

    m = nx_json_get(v, member);

    if (m == NULL) {
        nx_policy_cc_fail(cc, "missing \"%s\"", member);
        return -1;
    }

    k = nx_policy_cc_push(cc, ".%s", member);

    if (nx_json_string(m, &str) != 0
        || !nx_policy_printable(str, strlen(str), NX_POLICY_ID_MAX))
    {
        nx_policy_cc_fail(cc, "expected a string of 1 to %d visible ASCII "
                          "characters other than '\"' and '\\'",
                          NX_POLICY_ID_MAX);
        return -1;
    }

    *len = strlen(str);
    *any = (*len == 1 && str[0] == '*');

    if (nx_policy_cc_strdup(cc, str, *len, s) != 0) {
        return -1;
    }

    nx_policy_cc_pop(cc, k);

    return 0;
}


static int
nx_policy_cc_dups(nx_policy_cc_t *cc, nx_policy_rule_t *rules, size_t n)
{
    size_t              i;
    nx_policy_rule_t  **byid;

    byid = malloc(n * sizeof(nx_policy_rule_t *));
    if (byid == NULL) {
        nx_policy_cc_fail(cc, "out of memory");
        return -1;
    }

    for (i = 0; i < n; i++) {
        byid[i] = &rules[i];
    }

    qsort(byid, n, sizeof(nx_policy_rule_t *), nx_policy_id_cmp);

    for (i = 1; i < n; i++) {
        if (strcmp(byid[i - 1]->id, byid[i]->id) == 0) {
            (void) nx_policy_cc_push(cc, "[%zu].id", byid[i]->index);
            nx_policy_cc_fail(cc, "duplicate id \"%s\" (also rules[%zu])",
                              byid[i]->id, byid[i - 1]->index);
            free(byid);
            return -1;
        }
    }

    free(byid);

    return 0;
}


static nx_policy_node_t *
nx_policy_cc_cond(nx_policy_cc_t *cc, yajl_val v)
{
    size_t             i, k;
    const char        *name;
    nx_policy_node_t  *n;

    n = nx_policy_cc_alloc(cc, sizeof(nx_policy_node_t));
    if (n == NULL) {
        return NULL;
    }

    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        n->op = YAJL_IS_TRUE(v) ? NX_POLICY_OP_TRUE : NX_POLICY_OP_FALSE;
        return n;
    }

    if (!YAJL_IS_OBJECT(v)) {
        nx_policy_cc_fail(cc, "expected a condition object");
        return NULL;
    }

    if (v->u.object.len != 1) {
        nx_policy_cc_fail(cc, "expected one operator, found %zu members",
                          v->u.object.len);
        return NULL;
    }

    name = v->u.object.keys[0];

    for (i = 0; nx_policy_ops[i].name != NULL; i++) {
        if (strcmp(name, nx_policy_ops[i].name) == 0) {
            break;
        }
    }

    if (nx_policy_ops[i].name == NULL) {
        if (nx_policy_printable(name, strlen(name), 64)) {
            nx_policy_cc_fail(cc, "unknown operator \"%s\"", name);

        } else {
            nx_policy_cc_fail(cc, "unknown operator");
        }

        return NULL;
    }

    n->op = nx_policy_ops[i].op;

    k = nx_policy_cc_push(cc, ".%s", name);

    if (nx_policy_cc_op(cc, v->u.object.values[0], n) != 0) {
        return NULL;
    }

    nx_policy_cc_pop(cc, k);

    return n;
}


static int
nx_policy_cc_op(nx_policy_cc_t *cc, yajl_val v, nx_policy_node_t *n)
{
    size_t  k;

    switch (n->op) {

    case NX_POLICY_OP_ALL:
    case NX_POLICY_OP_ANY:
        return nx_policy_cc_list(cc, v, n);

    case NX_POLICY_OP_NOT:
        if (!YAJL_IS_ARRAY(v)) {
            n->u.kid = nx_policy_cc_cond(cc, v);
            return n->u.kid != NULL ? 0 : -1;
        }

        if (v->u.array.len != 1) {
            nx_policy_cc_fail(cc, "expected a condition or an array of one");
            return -1;
        }

        k = nx_policy_cc_push(cc, "[0]");

        n->u.kid = nx_policy_cc_cond(cc, v->u.array.values[0]);
        if (n->u.kid == NULL) {
            return -1;
        }

        nx_policy_cc_pop(cc, k);

        return 0;

    case NX_POLICY_OP_REGEX:
        return nx_policy_cc_regex(cc, v, n);

    case NX_POLICY_OP_TIME_BETWEEN:
        return nx_policy_cc_time(cc, v, n);

    default:
        return nx_policy_cc_pair(cc, v, n);
    }
}


static int
nx_policy_cc_list(nx_policy_cc_t *cc, yajl_val v, nx_policy_node_t *n)
{
    size_t  i, k;

    if (!YAJL_IS_ARRAY(v)) {
        nx_policy_cc_fail(cc, "expected an array of conditions");
        return -1;
    }

    n->u.list.n = v->u.array.len;
    n->u.list.kids = NULL;

    if (n->u.list.n == 0) {
        return 0;
    }

    n->u.list.kids = nx_policy_cc_alloc(cc,
                                        n->u.list.n
                                        * sizeof(nx_policy_node_t *));
    if (n->u.list.kids == NULL) {
        return -1;
    }

    for (i = 0; i < n->u.list.n; i++) {
        k = nx_policy_cc_push(cc, "[%zu]", i);

        n->u.list.kids[i] = nx_policy_cc_cond(cc, v->u.array.values[i]);
        if (n->u.list.kids[i] == NULL) {
            return -1;
        }

        nx_policy_cc_pop(cc, k);
    }

    return 0;
}


/*
 * Two operands. A literal that can never satisfy the operator is refused,
 * as it is almost certainly a mistake that would silently never match.
 */

static int
nx_policy_cc_pair(nx_policy_cc_t *cc, yajl_val v, nx_policy_node_t *n)
{
    int                i;
    size_t             k;
    nx_policy_opnd_t  *o;

    if (!YAJL_IS_ARRAY(v) || v->u.array.len != 2) {
        nx_policy_cc_fail(cc, "expected an array of two operands");
        return -1;
    }

    for (i = 0; i < 2; i++) {
        o = (i == 0) ? &n->u.cmp.a : &n->u.cmp.b;

        k = nx_policy_cc_push(cc, "[%d]", i);

        if (nx_policy_cc_opnd(cc, v->u.array.values[i], o) != 0) {
            return -1;
        }

        if (o->var != NX_POLICY_NOVAR) {
            nx_policy_cc_pop(cc, k);
            continue;
        }

        switch (n->op) {

        case NX_POLICY_OP_IN:
            if (i == 1 && o->lit.type != NX_POLICY_ARRAY) {
                nx_policy_cc_fail(cc, "expected an array or a variable");
                return -1;
            }

            break;

        case NX_POLICY_OP_CONTAINS:
            if (i == 0 && o->lit.type != NX_POLICY_STRING
                && o->lit.type != NX_POLICY_ARRAY)
            {
                nx_policy_cc_fail(cc, "expected a string, an array or a "
                                  "variable");
                return -1;
            }

            if (i == 1 && n->u.cmp.a.var == NX_POLICY_NOVAR
                && n->u.cmp.a.lit.type == NX_POLICY_STRING
                && o->lit.type != NX_POLICY_STRING)
            {
                nx_policy_cc_fail(cc, "expected a string or a variable");
                return -1;
            }

            break;

        case NX_POLICY_OP_STARTS_WITH:
            if (o->lit.type != NX_POLICY_STRING) {
                nx_policy_cc_fail(cc, "expected a string or a variable");
                return -1;
            }

            break;

        case NX_POLICY_OP_GT:
        case NX_POLICY_OP_GTE:
        case NX_POLICY_OP_LT:
        case NX_POLICY_OP_LTE:
            if (o->lit.type == NX_POLICY_STRING
                && nx_tz_parse_timestamp(o->lit.u.str.data, o->lit.u.str.len,
                                         &o->time)
                   == 0)
            {
                o->timed = 1;
                break;
            }

            if (o->lit.type != NX_POLICY_NUMBER) {
                nx_policy_cc_fail(cc, "expected a number, an RFC 3339 "
                                  "timestamp or a variable");
                return -1;
            }

            break;

        default:
            break;
        }

        nx_policy_cc_pop(cc, k);
    }

    return 0;
}


static int
nx_policy_cc_regex(nx_policy_cc_t *cc, yajl_val v, nx_policy_node_t *n)
{
    int                errcode;
    char               msg[160];
    size_t             k, plen;
    yajl_val           pat;
    PCRE2_SIZE         erroff;
    const char        *s;
    nx_policy_code_t  *code;

    if (!YAJL_IS_ARRAY(v) || v->u.array.len != 2) {
        nx_policy_cc_fail(cc, "expected an array of an operand and a "
                          "pattern");
        return -1;
    }

    k = nx_policy_cc_push(cc, "[0]");

    if (nx_policy_cc_opnd(cc, v->u.array.values[0], &n->u.rx.a) != 0) {
        return -1;
    }

    if (n->u.rx.a.var == NX_POLICY_NOVAR
        && n->u.rx.a.lit.type != NX_POLICY_STRING)
    {
        nx_policy_cc_fail(cc, "expected a string or a variable");
        return -1;
    }

    nx_policy_cc_pop(cc, k);

    pat = v->u.array.values[1];

    if (nx_json_string(pat, &s) != 0) {
        k = nx_policy_cc_push(cc, "[1]");
        nx_policy_cc_fail(cc, "expected a pattern string");
        return -1;
    }

    plen = strlen(s);

    if (plen > NX_POLICY_PATTERN_MAX) {
        k = nx_policy_cc_push(cc, "[1]");
        nx_policy_cc_fail(cc, "pattern longer than %d bytes",
                          NX_POLICY_PATTERN_MAX);
        return -1;
    }

    if (nx_policy_cc_scratch(cc) != 0) {
        return -1;
    }

    code = nx_policy_cc_alloc(cc, sizeof(nx_policy_code_t));
    if (code == NULL) {
        return -1;
    }

    /*
     * Subjects come from requests and need not be valid UTF-8: with
     * MATCH_INVALID_UTF they are matched, not refused; \C could split a
     * character.
     */

    n->u.rx.re = pcre2_compile((PCRE2_SPTR) s, plen,
                               PCRE2_UTF | PCRE2_MATCH_INVALID_UTF
                               | PCRE2_NEVER_BACKSLASH_C,
                               &errcode, &erroff, NULL);

    if (n->u.rx.re == NULL) {
        if (pcre2_get_error_message(errcode, (PCRE2_UCHAR *) msg,
                                    sizeof(msg))
            < 0)
        {
            (void) snprintf(msg, sizeof(msg), "error %d", errcode);
        }

        nx_policy_cc_fail(cc, "invalid pattern: %s at offset %zu", msg,
                          (size_t) erroff);
        return -1;
    }

    code->re = n->u.rx.re;
    code->next = cc->p->codes;
    cc->p->codes = code;

    return 0;
}


/*
 * ["09:00", "17:30"], ["09:00", "17:30", "Europe/Berlin"], or the same
 * with a time operand (a variable or a number) in front; or a time
 * operand and {"start": ..., "end": ..., "tz": ...}.
 */

static int
nx_policy_cc_time(nx_policy_cc_t *cc, yajl_val v, nx_policy_node_t *n)
{
    size_t     i, j, base, nargs;
    yajl_val   first, win, z;
    uint32_t   idx;

    base = cc->plen;

    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0) {
        nx_policy_cc_fail(cc, "expected [start, end, zone]");
        return -1;
    }

    first = v->u.array.values[0];
    i = 0;

    if (YAJL_IS_NUMBER(first)
        || (YAJL_IS_OBJECT(first) && nx_json_get(first, "var") != NULL))
    {
        j = nx_policy_cc_push(cc, "[0]");

        if (nx_policy_cc_opnd(cc, first, &n->u.tb.t) != 0) {
            return -1;
        }

        nx_policy_cc_pop(cc, j);
        i = 1;

    } else {
        memset(&n->u.tb.t, 0, sizeof(nx_policy_opnd_t));

        if (nx_policy_cc_var(cc, cc->time_var, &idx) != 0) {
            return -1;
        }

        n->u.tb.t.var = idx;
    }

    nargs = v->u.array.len - i;

    if (nargs == 1 && YAJL_IS_OBJECT(v->u.array.values[i])) {
        win = v->u.array.values[i];

        (void) nx_policy_cc_push(cc, "[%zu]", i);

        for (j = 0; j < win->u.object.len; j++) {
            if (strcmp(win->u.object.keys[j], "start") != 0
                && strcmp(win->u.object.keys[j], "end") != 0
                && strcmp(win->u.object.keys[j], "tz") != 0)
            {
                nx_policy_cc_fail(cc, "expected only \"start\", \"end\" and "
                                  "\"tz\"");
                return -1;
            }
        }

        if (nx_json_get(win, "start") == NULL
            || nx_json_get(win, "end") == NULL)
        {
            nx_policy_cc_fail(cc, "missing \"start\" or \"end\"");
            return -1;
        }

        j = nx_policy_cc_push(cc, ".start");
        if (nx_policy_cc_clock(cc, nx_json_get(win, "start"), 0,
                               &n->u.tb.start)
            != 0)
        {
            return -1;
        }

        nx_policy_cc_pop(cc, j);

        j = nx_policy_cc_push(cc, ".end");
        if (nx_policy_cc_clock(cc, nx_json_get(win, "end"), 1, &n->u.tb.end)
            != 0)
        {
            return -1;
        }

        nx_policy_cc_pop(cc, j);

        j = nx_policy_cc_push(cc, ".tz");
        if (nx_policy_cc_zone(cc, nx_json_get(win, "tz"), &n->u.tb.tz) != 0) {
            return -1;
        }

    } else if (nargs == 2 || nargs == 3) {
        j = nx_policy_cc_push(cc, "[%zu]", i);
        if (nx_policy_cc_clock(cc, v->u.array.values[i], 0, &n->u.tb.start)
            != 0)
        {
            return -1;
        }

        nx_policy_cc_pop(cc, j);

        j = nx_policy_cc_push(cc, "[%zu]", i + 1);
        if (nx_policy_cc_clock(cc, v->u.array.values[i + 1], 1,
                               &n->u.tb.end)
            != 0)
        {
            return -1;
        }

        nx_policy_cc_pop(cc, j);

        z = (nargs == 3) ? v->u.array.values[i + 2] : NULL;

        j = nx_policy_cc_push(cc, "[%zu]", i + 2);
        if (nx_policy_cc_zone(cc, z, &n->u.tb.tz) != 0) {
            return -1;
        }

    } else {
        nx_policy_cc_fail(cc, "expected [start, end, zone]");
        return -1;
    }

    nx_policy_cc_pop(cc, base);

    if (n->u.tb.start == n->u.tb.end) {
        nx_policy_cc_fail(cc, "empty window: start equals end");
        return -1;
    }

    return 0;
}


/* "HH:MM" or "HH:MM:SS", 00:00 to 23:59:59; "24:00" ends a day */

static int
nx_policy_cc_clock(nx_policy_cc_t *cc, yajl_val v, int end, int32_t *secs)
{
    int          h, m, s;
    size_t       len;
    const char  *str;

    if (nx_json_string(v, &str) != 0) {
        goto invalid;
    }

    len = strlen(str);

    if ((len != 5 && len != 8) || !nx_policy_digit(str[0])
        || !nx_policy_digit(str[1]) || str[2] != ':'
        || !nx_policy_digit(str[3]) || !nx_policy_digit(str[4]))
    {
        goto invalid;
    }

    h = (str[0] - '0') * 10 + (str[1] - '0');
    m = (str[3] - '0') * 10 + (str[4] - '0');
    s = 0;

    if (len == 8) {
        if (str[5] != ':' || !nx_policy_digit(str[6])
            || !nx_policy_digit(str[7]))
        {
            goto invalid;
        }

        s = (str[6] - '0') * 10 + (str[7] - '0');
    }

    if (m > 59 || s > 59 || h > 24 || (h == 24 && (!end || m || s))) {
        goto invalid;
    }

    *secs = h * 3600 + m * 60 + s;

    return 0;

invalid:

    nx_policy_cc_fail(cc, "expected a time \"HH:MM\" or \"HH:MM:SS\"%s",
                      end ? " (or \"24:00\")" : "");

    return -1;
}


/* a zone, loaded once per set; v NULL: UTC */

static int
nx_policy_cc_zone(nx_policy_cc_t *cc, yajl_val v, const nx_tz_t **tz)
{
    char               msg[NX_POLICY_MSG_LEN];
    const char        *name;
    nx_policy_zone_t  *z;

    name = "UTC";

    if (v != NULL && nx_json_string(v, &name) != 0) {
        nx_policy_cc_fail(cc, "expected a time zone name");
        return -1;
    }

    for (z = cc->p->zones; z != NULL; z = z->next) {
        if (strcmp(z->name, name) == 0) {
            *tz = z->tz;
            return 0;
        }
    }

    z = nx_policy_cc_alloc(cc, sizeof(nx_policy_zone_t));
    if (z == NULL || nx_policy_cc_strdup(cc, name, strlen(name), &z->name)
                     != 0)
    {
        return -1;
    }

    z->tz = nx_tz_load(cc->tzdir, name, msg, sizeof(msg));
    if (z->tz == NULL) {
        nx_policy_cc_fail(cc, "%s", msg);
        return -1;
    }

    z->next = cc->p->zones;
    cc->p->zones = z;

    *tz = z->tz;

    return 0;
}


static int
nx_policy_cc_opnd(nx_policy_cc_t *cc, yajl_val v, nx_policy_opnd_t *o)
{
    size_t              i, k, n;
    const char         *name;
    nx_policy_value_t  *items;

    memset(o, 0, sizeof(nx_policy_opnd_t));
    o->var = NX_POLICY_NOVAR;

    if (YAJL_IS_OBJECT(v)) {
        if (v->u.object.len != 1 || strcmp(v->u.object.keys[0], "var") != 0) {
            nx_policy_cc_fail(cc, "expected a literal or {\"var\": ...}");
            return -1;
        }

        k = nx_policy_cc_push(cc, ".var");

        if (nx_json_string(v->u.object.values[0], &name) != 0
            || !nx_policy_var_valid(name, strlen(name)))
        {
            nx_policy_cc_fail(cc, "expected a path such as "
                              "\"principal.role\" (segments of "
                              "[A-Za-z0-9_-] joined by '.', at most %d "
                              "bytes)", NX_POLICY_VAR_MAX);
            return -1;
        }

        if (nx_policy_cc_var(cc, name, &o->var) != 0) {
            return -1;
        }

        nx_policy_cc_pop(cc, k);

        return 0;
    }

    if (!YAJL_IS_ARRAY(v)) {
        return nx_policy_cc_scalar(cc, v, &o->lit);
    }

    n = v->u.array.len;

    o->lit.type = NX_POLICY_ARRAY;
    o->lit.u.arr.n = n;
    o->lit.u.arr.items = NULL;

    if (n == 0) {
        return 0;
    }

    items = nx_policy_cc_alloc(cc, n * sizeof(nx_policy_value_t));
    if (items == NULL) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        k = nx_policy_cc_push(cc, "[%zu]", i);

        if (nx_policy_cc_scalar(cc, v->u.array.values[i], &items[i]) != 0) {
            return -1;
        }

        nx_policy_cc_pop(cc, k);
    }

    o->lit.u.arr.items = items;

    return 0;
}


static int
nx_policy_cc_scalar(nx_policy_cc_t *cc, yajl_val v, nx_policy_value_t *lit)
{
    const char  *s;

    memset(lit, 0, sizeof(nx_policy_value_t));

    if (nx_json_string(v, &s) == 0) {
        lit->type = NX_POLICY_STRING;
        lit->u.str.len = strlen(s);
        return nx_policy_cc_strdup(cc, s, lit->u.str.len, &lit->u.str.data);
    }

    if (YAJL_IS_NUMBER(v)) {
        if (!(v->u.number.flags & YAJL_NUMBER_DOUBLE_VALID)
            || !isfinite(v->u.number.d))
        {
            nx_policy_cc_fail(cc, "number out of range");
            return -1;
        }

        lit->type = NX_POLICY_NUMBER;
        lit->u.number = v->u.number.d;
        return 0;
    }

    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        lit->type = NX_POLICY_BOOL;
        lit->u.boolean = YAJL_IS_TRUE(v);
        return 0;
    }

    if (YAJL_IS_NULL(v)) {
        lit->type = NX_POLICY_NULL;
        return 0;
    }

    nx_policy_cc_fail(cc, "expected a string, a number, true, false or "
                      "null");

    return -1;
}


static int
nx_policy_cc_var(nx_policy_cc_t *cc, const char *name, uint32_t *idx)
{
    size_t            i, len, cap;
    nx_policy_var_t  *vars;

    len = strlen(name);

    for (i = 0; i < cc->nvars; i++) {
        if (cc->vars[i].len == len && memcmp(cc->vars[i].name, name, len) == 0)
        {
            *idx = (uint32_t) i;
            return 0;
        }
    }

    if (cc->nvars == cc->vcap) {
        cap = cc->vcap ? cc->vcap * 2 : 16;

        if (cap >= NX_POLICY_NOVAR) {
            nx_policy_cc_fail(cc, "too many variables");
            return -1;
        }

        vars = realloc(cc->vars, cap * sizeof(nx_policy_var_t));
        if (vars == NULL) {
            nx_policy_cc_fail(cc, "out of memory");
            return -1;
        }

        cc->vars = vars;
        cc->vcap = cap;
    }

    if (nx_policy_cc_strdup(cc, name, len, &cc->vars[cc->nvars].name) != 0) {
        return -1;
    }

    cc->vars[cc->nvars].len = len;
    *idx = (uint32_t) cc->nvars++;

    return 0;
}


/* The match context and match data of the set, created with its first
 * regex. */

static int
nx_policy_cc_scratch(nx_policy_cc_t *cc)
{
    nx_policy_t  *p;

    p = cc->p;

    if (p->md != NULL) {
        return 0;
    }

    p->heap.size = (size_t) cc->heap_kib * 1024;

    /* until armed, the allocator is malloc(): for the contexts themselves */

    p->gctx = pcre2_general_context_create(nx_policy_heap_alloc,
                                           nx_policy_heap_free, &p->heap);
    if (p->gctx == NULL) {
        goto nomem;
    }

    p->mctx = pcre2_match_context_create(p->gctx);
    if (p->mctx == NULL) {
        goto nomem;
    }

    (void) pcre2_set_match_limit(p->mctx, cc->match_limit);
    (void) pcre2_set_heap_limit(p->mctx, cc->heap_kib);

    p->md = pcre2_match_data_create(1, p->gctx);
    if (p->md == NULL) {
        goto nomem;
    }

    p->heap.block[0] = malloc(p->heap.size);
    p->heap.block[1] = malloc(p->heap.size);

    if (p->heap.block[0] == NULL || p->heap.block[1] == NULL) {
        goto nomem;
    }

    p->heap.armed = 1;

    return 0;

nomem:

    nx_policy_cc_fail(cc, "out of memory");

    return -1;
}


static void *
nx_policy_heap_alloc(PCRE2_SIZE size, void *data)
{
    int                i;
    nx_policy_heap_t  *h;

    h = data;

    if (!h->armed) {
        return malloc(size);
    }

    for (i = 0; i < 2; i++) {
        if (!h->busy[i] && size <= h->size) {
            h->busy[i] = 1;
            return h->block[i];
        }
    }

    return NULL;
}


static void
nx_policy_heap_free(void *ptr, void *data)
{
    int                i;
    nx_policy_heap_t  *h;

    h = data;

    if (ptr == NULL) {
        return;
    }

    for (i = 0; i < 2; i++) {
        if (ptr == h->block[i]) {
            h->busy[i] = 0;
            return;
        }
    }

    free(ptr);
}


static int
nx_policy_cc_strdup(nx_policy_cc_t *cc, const char *s, size_t len,
    const char **out)
{
    char  *d;

    d = nx_policy_cc_alloc(cc, len + 1);
    if (d == NULL) {
        return -1;
    }

    memcpy(d, s, len);
    d[len] = '\0';

    *out = d;

    return 0;
}


static void *
nx_policy_cc_alloc(nx_policy_cc_t *cc, size_t size)
{
    void  *ptr;

    ptr = nx_policy_alloc(cc->p, size);
    if (ptr == NULL) {
        nx_policy_cc_fail(cc, "out of memory");
        return NULL;
    }

    memset(ptr, 0, size);

    return ptr;
}


/* bump allocation from the set's blocks; everything goes at once */

static void *
nx_policy_alloc(nx_policy_t *p, size_t size)
{
    size_t              bsize, head;
    unsigned char      *ptr;
    nx_policy_block_t  *b;

    head = nx_policy_align(sizeof(nx_policy_block_t));

    if (size > ((size_t) -1) / 2 - head) {
        return NULL;
    }

    size = nx_policy_align(size);
    b = p->blocks;

    if (b == NULL || b->size - b->used < size) {
        bsize = head + size;
        if (bsize < NX_POLICY_BLOCK_SIZE) {
            bsize = NX_POLICY_BLOCK_SIZE;
        }

        b = malloc(bsize);
        if (b == NULL) {
            return NULL;
        }

        b->size = bsize;
        b->used = head;
        b->next = p->blocks;
        p->blocks = b;
    }

    ptr = (unsigned char *) b + b->used;
    b->used += size;

    return ptr;
}


static size_t
nx_policy_cc_push(nx_policy_cc_t *cc, const char *fmt, ...)
{
    int      n;
    size_t   old;
    va_list  args;

    old = cc->plen;

    va_start(args, fmt);
    n = vsnprintf(cc->path + old, sizeof(cc->path) - old, fmt, args);
    va_end(args);

    if (n > 0) {
        cc->plen += (size_t) n;

        if (cc->plen >= sizeof(cc->path)) {
            cc->plen = sizeof(cc->path) - 1;
        }
    }

    return old;
}


static void
nx_policy_cc_pop(nx_policy_cc_t *cc, size_t len)
{
    cc->plen = len;
    cc->path[len] = '\0';
}


static void
nx_policy_cc_fail(nx_policy_cc_t *cc, const char *fmt, ...)
{
    char     msg[NX_POLICY_MSG_LEN];
    va_list  args;

    if (cc->err == NULL || cc->errlen == 0) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    (void) snprintf(cc->err, cc->errlen, "%s: %s", cc->path, msg);
}


/* 1 to max visible ASCII characters, without '"' and '\\': ids and names
 * are safe to quote in messages, logs and headers */

static int
nx_policy_printable(const char *s, size_t len, size_t max)
{
    size_t  i;

    if (len == 0 || len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\') {
            return 0;
        }
    }

    return 1;
}


static int
nx_policy_var_valid(const char *s, size_t len)
{
    size_t  i;
    char    c;

    if (len == 0 || len > NX_POLICY_VAR_MAX || s[0] == '.'
        || s[len - 1] == '.')
    {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || nx_policy_digit(c) || c == '_' || c == '-')
        {
            continue;
        }

        if (c == '.' && s[i + 1] != '.') {
            continue;
        }

        return 0;
    }

    return 1;
}


static int
nx_policy_rule_cmp(const void *a, const void *b)
{
    int                      c;
    const nx_policy_rule_t  *x, *y;

    x = a;
    y = b;

    if (x->deny != y->deny) {
        return x->deny ? -1 : 1;
    }

    if (x->priority != y->priority) {
        return x->priority > y->priority ? -1 : 1;
    }

    c = strcmp(x->id, y->id);
    if (c != 0) {
        return c;
    }

    return (x->index > y->index) - (x->index < y->index);
}


static int
nx_policy_id_cmp(const void *a, const void *b)
{
    int                      c;
    const nx_policy_rule_t  *x, *y;

    x = *(const nx_policy_rule_t * const *) a;
    y = *(const nx_policy_rule_t * const *) b;

    c = strcmp(x->id, y->id);
    if (c != 0) {
        return c;
    }

    return (x->index > y->index) - (x->index < y->index);
}


void
nx_policy_free(nx_policy_t *p)
{
    nx_policy_code_t   *c;
    nx_policy_zone_t   *z;
    nx_policy_block_t  *b, *next;

    if (p == NULL) {
        return;
    }

    /* the match data first: its frames are in the heap blocks */

    if (p->md != NULL) {
        pcre2_match_data_free(p->md);
    }

    if (p->mctx != NULL) {
        pcre2_match_context_free(p->mctx);
    }

    if (p->gctx != NULL) {
        pcre2_general_context_free(p->gctx);
    }

    free(p->heap.block[0]);
    free(p->heap.block[1]);

    for (c = p->codes; c != NULL; c = c->next) {
        pcre2_code_free(c->re);
    }

    for (z = p->zones; z != NULL; z = z->next) {
        nx_tz_free(z->tz);
    }

    for (b = p->blocks; b != NULL; b = next) {
        next = b->next;
        free(b);
    }

    free(p);
}


size_t
nx_policy_rules(const nx_policy_t *p)
{
    return p != NULL ? p->nrules : 0;
}


const char *
nx_policy_var(const nx_policy_t *p, size_t i)
{
    if (p == NULL || i >= p->nvars) {
        return NULL;
    }

    return p->vars[i].name;
}


/* evaluation: no allocation from here on */

int
nx_policy_decide(const nx_policy_t *p, const char *resource_type,
    size_t resource_type_len, const char *action, size_t action_len,
    const nx_policy_ctx_t *ctx, nx_policy_decision_t *out)
{
    int                      m;
    size_t                   i;
    nx_policy_ev_t           ev;
    const nx_policy_rule_t  *r;

    if (out == NULL) {
        return -1;
    }

    out->effect = NX_POLICY_DENY;
    out->rule_id = NULL;
    out->rule = NX_POLICY_NO_RULE;
    out->error = NULL;

    if (p == NULL || p->condition
        || (resource_type == NULL && resource_type_len != 0)
        || (action == NULL && action_len != 0))
    {
        out->error = "invalid arguments";
        return -1;
    }

    nx_policy_ev_init(&ev, p, ctx);

    for (i = 0; i < p->nrules; i++) {
        r = &p->rules[i];

        if (!r->any_rtype
            && (r->rtype_len != resource_type_len
                || memcmp(r->rtype, resource_type, resource_type_len) != 0))
        {
            continue;
        }

        if (!r->any_action
            && (r->action_len != action_len
                || memcmp(r->action, action, action_len) != 0))
        {
            continue;
        }

        m = (r->cond == NULL) ? 1 : nx_policy_eval_node(&ev, r->cond);

        if (ev.error != NULL) {
            out->rule_id = r->id;
            out->rule = r->index;
            out->error = ev.error;
            return -1;
        }

        if (m) {
            out->effect = r->deny ? NX_POLICY_DENY : NX_POLICY_ALLOW;
            out->rule_id = r->id;
            out->rule = r->index;
            return 0;
        }
    }

    out->effect = p->default_allow ? NX_POLICY_ALLOW : NX_POLICY_DENY;

    return 0;
}


int
nx_policy_eval(const nx_policy_t *p, const nx_policy_ctx_t *ctx)
{
    int             m;
    nx_policy_ev_t  ev;

    if (p == NULL || !p->condition) {
        return -1;
    }

    nx_policy_ev_init(&ev, p, ctx);

    m = nx_policy_eval_node(&ev, p->cond);

    return (ev.error != NULL) ? -1 : m;
}


static void
nx_policy_ev_init(nx_policy_ev_t *ev, const nx_policy_t *p,
    const nx_policy_ctx_t *ctx)
{
    size_t  i, n;

    ev->p = p;
    ev->ctx = ctx;
    ev->error = NULL;

    n = (p->nvars < NX_POLICY_VAR_CACHE) ? p->nvars : NX_POLICY_VAR_CACHE;

    for (i = 0; i < n; i++) {
        ev->cache[i] = NULL;
    }
}


/*
 * Returns 1 or 0. An error (ev->error) makes every node above return 0
 * at once; the caller looks at ev->error, not at the value.
 */

static int
nx_policy_eval_node(nx_policy_ev_t *ev, const nx_policy_node_t *n)
{
    int                       r;
    size_t                    i;
    const nx_policy_value_t  *a, *b;

    switch (n->op) {

    case NX_POLICY_OP_TRUE:
        return 1;

    case NX_POLICY_OP_FALSE:
        return 0;

    case NX_POLICY_OP_ALL:
        for (i = 0; i < n->u.list.n; i++) {
            if (!nx_policy_eval_node(ev, n->u.list.kids[i])) {
                return 0;
            }
        }

        return 1;

    case NX_POLICY_OP_ANY:
        for (i = 0; i < n->u.list.n; i++) {
            if (nx_policy_eval_node(ev, n->u.list.kids[i])) {
                return 1;
            }

            if (ev->error != NULL) {
                return 0;
            }
        }

        return 0;

    case NX_POLICY_OP_NOT:
        r = nx_policy_eval_node(ev, n->u.kid);
        return (ev->error != NULL) ? 0 : !r;

    case NX_POLICY_OP_EQ:
    case NX_POLICY_OP_NE:
        r = nx_policy_value_eq(nx_policy_opnd(ev, &n->u.cmp.a),
                               nx_policy_opnd(ev, &n->u.cmp.b));
        return (n->op == NX_POLICY_OP_EQ) ? r : !r;

    case NX_POLICY_OP_IN:
        return nx_policy_member(nx_policy_opnd(ev, &n->u.cmp.b),
                                nx_policy_opnd(ev, &n->u.cmp.a));

    case NX_POLICY_OP_CONTAINS:
        a = nx_policy_opnd(ev, &n->u.cmp.a);
        b = nx_policy_opnd(ev, &n->u.cmp.b);

        if (a->type == NX_POLICY_ARRAY) {
            return nx_policy_member(a, b);
        }

        if (a->type != NX_POLICY_STRING || b->type != NX_POLICY_STRING) {
            return 0;
        }

        if (b->u.str.len == 0) {
            return 1;
        }

        return a->u.str.len >= b->u.str.len
               && memmem(a->u.str.data, a->u.str.len, b->u.str.data,
                         b->u.str.len)
                  != NULL;

    case NX_POLICY_OP_STARTS_WITH:
        a = nx_policy_opnd(ev, &n->u.cmp.a);
        b = nx_policy_opnd(ev, &n->u.cmp.b);

        return a->type == NX_POLICY_STRING && b->type == NX_POLICY_STRING
               && a->u.str.len >= b->u.str.len
               && (b->u.str.len == 0
                   || memcmp(a->u.str.data, b->u.str.data, b->u.str.len)
                      == 0);

    case NX_POLICY_OP_GT:
    case NX_POLICY_OP_GTE:
    case NX_POLICY_OP_LT:
    case NX_POLICY_OP_LTE:
        return nx_policy_eval_order(ev, n);

    case NX_POLICY_OP_REGEX:
        return nx_policy_eval_regex(ev, n);

    case NX_POLICY_OP_TIME_BETWEEN:
        return nx_policy_eval_time(ev, n);
    }

    return 0;
}


static int
nx_policy_eval_order(nx_policy_ev_t *ev, const nx_policy_node_t *n)
{
    double  x, y;

    if (nx_policy_number(ev, &n->u.cmp.a, &x) != 0
        || nx_policy_number(ev, &n->u.cmp.b, &y) != 0)
    {
        return 0;
    }

    switch (n->op) {
    case NX_POLICY_OP_GT:
        return x > y;
    case NX_POLICY_OP_GTE:
        return x >= y;
    case NX_POLICY_OP_LT:
        return x < y;
    default:
        return x <= y;
    }
}


static int
nx_policy_eval_regex(nx_policy_ev_t *ev, const nx_policy_node_t *n)
{
    int                       rc;
    const char               *s;
    const nx_policy_value_t  *v;

    v = nx_policy_opnd(ev, &n->u.rx.a);

    if (v->type != NX_POLICY_STRING) {
        return 0;
    }

    s = (v->u.str.data != NULL) ? v->u.str.data : "";

    rc = pcre2_match(n->u.rx.re, (PCRE2_SPTR) s, v->u.str.len, 0, 0,
                     ev->p->md, ev->p->mctx);

    if (rc >= 0) {
        return 1;
    }

    if (rc == PCRE2_ERROR_NOMATCH) {
        return 0;
    }

    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT
        || rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_NOMEMORY)
    {
        ev->error = "regex match limit exceeded";

    } else {
        ev->error = "regex match failed";
    }

    return 0;
}


static int
nx_policy_eval_time(nx_policy_ev_t *ev, const nx_policy_node_t *n)
{
    double   d;
    int64_t  t, sod;

    if (nx_policy_number(ev, &n->u.tb.t, &d) != 0) {
        return 0;
    }

    /* about 300000 years either way; also refuses NaN */

    if (!(d > -1e13 && d < 1e13)) {
        return 0;
    }

    t = (int64_t) d;
    if ((double) t > d) {
        t--;
    }

    sod = (t + nx_tz_offset(n->u.tb.tz, t)) % 86400;
    if (sod < 0) {
        sod += 86400;
    }

    if (n->u.tb.start < n->u.tb.end) {
        return sod >= n->u.tb.start && sod < n->u.tb.end;
    }

    /* the window spans midnight */

    return sod >= n->u.tb.start || sod < n->u.tb.end;
}


/* a number, or the epoch seconds of a timestamp string */

static int
nx_policy_number(nx_policy_ev_t *ev, const nx_policy_opnd_t *o, double *d)
{
    const nx_policy_value_t  *v;

    if (o->timed) {
        *d = o->time;
        return 0;
    }

    v = nx_policy_opnd(ev, o);

    if (v->type == NX_POLICY_NUMBER) {
        *d = v->u.number;
        return 0;
    }

    if (v->type == NX_POLICY_STRING && v->u.str.data != NULL) {
        return nx_tz_parse_timestamp(v->u.str.data, v->u.str.len, d);
    }

    return -1;
}


static const nx_policy_value_t *
nx_policy_opnd(nx_policy_ev_t *ev, const nx_policy_opnd_t *o)
{
    const nx_policy_value_t  *v;

    if (o->var == NX_POLICY_NOVAR) {
        return &o->lit;
    }

    if (o->var < NX_POLICY_VAR_CACHE) {
        v = ev->cache[o->var];

        if (v == NULL) {
            v = nx_policy_lookup(ev->ctx, &ev->p->vars[o->var]);
            ev->cache[o->var] = v;
        }

        return v;
    }

    return nx_policy_lookup(ev->ctx, &ev->p->vars[o->var]);
}


static const nx_policy_value_t *
nx_policy_lookup(const nx_policy_ctx_t *ctx, const nx_policy_var_t *var)
{
    size_t                    i;
    const nx_policy_attr_t   *a;
    const nx_policy_value_t  *v;

    if (ctx == NULL) {
        return &nx_policy_null;
    }

    for (i = 0; i < ctx->nattrs; i++) {
        a = &ctx->attrs[i];

        if (a->len == var->len && a->name != NULL
            && memcmp(a->name, var->name, var->len) == 0)
        {
            return &a->value;
        }
    }

    if (ctx->lookup != NULL) {
        v = ctx->lookup(ctx->data, var->name, var->len);
        if (v != NULL) {
            return v;
        }
    }

    return &nx_policy_null;
}


static int
nx_policy_value_eq(const nx_policy_value_t *a, const nx_policy_value_t *b)
{
    size_t  i;

    if (a->type != b->type) {
        return 0;
    }

    switch (a->type) {

    case NX_POLICY_NULL:
        return 1;

    case NX_POLICY_BOOL:
        return !a->u.boolean == !b->u.boolean;

    case NX_POLICY_NUMBER:
        return a->u.number == b->u.number;

    case NX_POLICY_STRING:
        return a->u.str.len == b->u.str.len
               && (a->u.str.len == 0
                   || memcmp(a->u.str.data, b->u.str.data, a->u.str.len)
                      == 0);

    case NX_POLICY_ARRAY:
        if (a->u.arr.n != b->u.arr.n) {
            return 0;
        }

        for (i = 0; i < a->u.arr.n; i++) {
            if (!nx_policy_value_eq(&a->u.arr.items[i], &b->u.arr.items[i])) {
                return 0;
            }
        }

        return 1;
    }

    return 0;
}


static int
nx_policy_member(const nx_policy_value_t *arr, const nx_policy_value_t *v)
{
    size_t  i;

    if (arr->type != NX_POLICY_ARRAY) {
        return 0;
    }

    for (i = 0; i < arr->u.arr.n; i++) {
        if (nx_policy_value_eq(&arr->u.arr.items[i], v)) {
            return 1;
        }
    }

    return 0;
}
