/*
 * Copyright (C) Nexus authors
 *
 * ABAC policy engine: a JSON policy set is compiled once into a tree, then
 * evaluated per request with no allocation, no I/O and no locks.
 *
 * A policy set is a JSON array of rules:
 *
 *   [{"id": "r1", "effect": "deny", "priority": 200,
 *     "resource_type": "document", "action": "read",
 *     "condition": {"eq": [{"var": "resource.labels.sensitivity"}, "high"]}},
 *    ...]
 *
 * "id" (unique), "effect" ("allow" or "deny"), "resource_type" and
 * "action" are required; ids, types and actions are 1 to 128 visible ASCII
 * characters other than '"' and '\\' (safe in logs and headers). "*" as a
 * type or action is a wildcard when the set is compiled with wildcards, and
 * makes a rule that never applies otherwise. "priority" (integer, default
 * 0), "condition" (default true) and "description" (ignored) are optional;
 * any other member is an error, so that a misspelt "condition" never yields
 * an unconditional rule. "name" and "condition_json", the reference's
 * spellings, stand for "id" and "condition" (a rule may not use both).
 *
 * Decision (nx_policy_decide()): among the rules for the resource type and
 * action, any deny rule whose condition holds denies; otherwise the allow
 * rule of highest priority whose condition holds allows; otherwise the
 * default applies (deny unless compiled with default_allow). Rules of equal
 * priority are tried in id order (bytewise), so the rule reported is
 * deterministic; deny rules are tried in the same order, so the deny
 * reported is the one of highest priority.
 *
 * Conditions are JSON: true, false, or an object with exactly one operator:
 *
 *   {"all": [c, ...]}          every condition holds (true when empty)
 *   {"any": [c, ...]}          some condition holds (false when empty)
 *   {"not": c}                 also {"not": [c]}
 *   {"eq": [a, b]}             same type and value; arrays element-wise;
 *   {"ne": [a, b]}             numbers compare numerically (1 == 1.0); no
 *                              conversions: "1" is not 1, null is only null
 *   {"in": [a, b]}             b is an array with an element equal to a
 *   {"contains": [a, b]}       a is a string containing the string b, or an
 *                              array with an element equal to b
 *   {"starts_with": [a, b]}    a and b are strings, a begins with b
 *   {"gt": [a, b]}, "gte",     numbers; a string that is an RFC 3339
 *   "lt", "lte"                timestamp ("2025-01-31T12:00:00Z") or date
 *                              ("2025-01-31", UTC midnight) counts as its
 *                              epoch seconds, so times compare with each
 *                              other and with epoch numbers; any other
 *                              operand makes the comparison false
 *   {"regex": [a, "pat"]}      a is a string matched by the PCRE2 pattern
 *                              (UTF-8, unanchored: use ^ and $), compiled
 *                              with the set; see the limits below
 *   {"time_between": ["09:00", "17:30", "Europe/Berlin"]}
 *                              the request time (the variable
 *                              opts->time_var, "request.time" by default: a
 *                              number of UTC epoch seconds or an RFC 3339
 *                              string) is at or after the start and before
 *                              the end in that zone's local time; a start
 *                              after the end spans midnight; "24:00" may
 *                              end a window; seconds are optional
 *                              ("09:00:30"); the zone defaults to UTC. The
 *                              time may be given first instead:
 *                              [{"var": "t"}, "09:00", "17:30", "UTC"] or,
 *                              as in NexusRAG,
 *                              [{"var": "t"}, {"start": "09:00",
 *                                "end": "18:00", "tz": "Europe/Berlin"}]
 *
 * Operands a and b are literals (string, number, true, false, null, or an
 * array of those) or {"var": "principal.role"}: a path of segments of
 * [A-Za-z0-9_-] joined by '.', at most 128 bytes, looked up in the
 * evaluation context. A variable missing from the context is null: eq with
 * null holds, ne with any other value holds, gt/in/contains/regex/
 * time_between do not. A literal that can never satisfy its operator (a
 * non-array as the right side of "in", a string that is no timestamp in
 * "gt") is a compile error.
 *
 * Zones are "UTC", fixed offsets ("+02:00", "-0530") or IANA names read
 * from TZif files at compile time (see nx_tz.h); a zone is loaded once per
 * set however many conditions name it.
 *
 * Regex: a match may take at most opts->match_limit steps of PCRE2 (default
 * NX_POLICY_MATCH_LIMIT) and opts->heap_kib KiB of backtracking memory
 * (default NX_POLICY_HEAP_KIB; twice that is reserved at compile time by a
 * set with any regex, so that matching never allocates). A match that hits
 * a limit stops the decision: it fails closed (deny, rc -1, out->error).
 *
 * Documents deeper than 32 levels are refused by the JSON parser; that
 * bounds the nesting of conditions, and the recursion of the evaluator.
 */

#ifndef NX_POLICY_H
#define NX_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define NX_POLICY_ID_MAX        128
#define NX_POLICY_VAR_MAX       128
#define NX_POLICY_PATTERN_MAX   4096
#define NX_POLICY_TIME_VAR      "request.time"

#define NX_POLICY_MATCH_LIMIT   20000
#define NX_POLICY_HEAP_KIB      256

/* nx_policy_decision_t.rule when the default applied */
#define NX_POLICY_NO_RULE       ((size_t) -1)


typedef struct nx_policy_s        nx_policy_t;
typedef struct nx_policy_doc_s    nx_policy_doc_t;
typedef struct nx_policy_value_s  nx_policy_value_t;

typedef enum {
    NX_POLICY_NULL = 0,
    NX_POLICY_BOOL,
    NX_POLICY_NUMBER,
    NX_POLICY_STRING,
    NX_POLICY_ARRAY
} nx_policy_type_t;

/* A value of the context. Strings need not be NUL-terminated. */

struct nx_policy_value_s {
    nx_policy_type_t              type;
    union {
        int                       boolean;
        double                    number;
        struct {
            const char           *data;
            size_t                len;
        }                         str;
        struct {
            const nx_policy_value_t  *items;
            size_t                    n;
        }                         arr;
    }                             u;
};

typedef struct {
    const char                   *name;       /* "principal.role" */
    size_t                        len;
    nx_policy_value_t             value;
} nx_policy_attr_t;

/* Returns the value of a variable, or NULL when it is missing. */
typedef const nx_policy_value_t *(*nx_policy_lookup_pt)(void *data,
    const char *name, size_t len);

/*
 * The evaluation context: a flat array of attributes, searched first (the
 * first entry of a name wins), then the optional callback. Every variable
 * is looked up at most once per decision. Nothing is copied: the values
 * must live until nx_policy_decide() returns.
 */
typedef struct {
    const nx_policy_attr_t       *attrs;
    size_t                        nattrs;
    nx_policy_lookup_pt           lookup;
    void                         *data;
} nx_policy_ctx_t;

typedef struct {
    unsigned                      default_allow:1;
    unsigned                      wildcards:1;  /* honour "*" in rules */
    const char                   *time_var;     /* NULL: "request.time" */
    const char                   *tzdir;        /* NULL: NX_TZ_DIR */
    uint32_t                      match_limit;  /* 0: default */
    uint32_t                      heap_kib;     /* 0: default; min 20 */
} nx_policy_opts_t;

typedef enum {
    NX_POLICY_DENY = 0,
    NX_POLICY_ALLOW
} nx_policy_effect_t;

typedef struct {
    nx_policy_effect_t            effect;
    const char                   *rule_id;    /* NULL: the default */
    size_t                        rule;       /* index in the set's array */
    const char                   *error;      /* NULL unless rc -1 */
} nx_policy_decision_t;


/*
 * Compiles a policy set of len bytes (opts NULL: all defaults). Returns
 * NULL on error, with err naming the offending node, e.g.
 * "rules[2].condition.all[1].regex: invalid pattern: missing closing
 * parenthesis at offset 3". Everything is freed on error.
 */
nx_policy_t *nx_policy_compile(const char *json, size_t len,
    const nx_policy_opts_t *opts, char *err, size_t errlen);

/*
 * Compiles a single condition (for the simulate endpoint and tests); error
 * paths start with "condition". Evaluate it with nx_policy_eval().
 */
nx_policy_t *nx_policy_compile_condition(const char *json, size_t len,
    const nx_policy_opts_t *opts, char *err, size_t errlen);

/*
 * Decides for a resource type and action (not NUL-terminated). Returns 0
 * with the decision in out; -1 when the decision failed (a regex limit, bad
 * arguments): out then says deny, names the rule being evaluated if any,
 * and out->error says why.
 *
 * The set is read-only during evaluation except for the regex scratch
 * memory it owns: call it from one thread at a time (as an nginx worker
 * does); compile a set per thread otherwise.
 */
int nx_policy_decide(const nx_policy_t *p, const char *resource_type,
    size_t resource_type_len, const char *action, size_t action_len,
    const nx_policy_ctx_t *ctx, nx_policy_decision_t *out);

/*
 * Evaluates a set made by nx_policy_compile_condition(): 1 true, 0 false,
 * -1 on error (a regex limit, or p is a rule set).
 */
int nx_policy_eval(const nx_policy_t *p, const nx_policy_ctx_t *ctx);

/* Number of rules (0 for a condition). */
size_t nx_policy_rules(const nx_policy_t *p);

/* The i-th distinct variable the set reads, NULL past the end: a caller
 * may build only the attributes a set needs. */
const char *nx_policy_var(const nx_policy_t *p, size_t i);

void nx_policy_free(nx_policy_t *p);

/*
 * A context from a JSON object, for the simulate endpoint and tests:
 * nested objects flatten into dotted names ({"principal": {"role": "x"}}
 * gives "principal.role"), arrays of scalars (or of arrays) become array
 * values; objects inside arrays are refused.
 */
nx_policy_doc_t *nx_policy_doc_parse(const char *json, size_t len,
    char *err, size_t errlen);
const nx_policy_ctx_t *nx_policy_doc_ctx(const nx_policy_doc_t *doc);
void nx_policy_doc_free(nx_policy_doc_t *doc);

#endif /* NX_POLICY_H */
