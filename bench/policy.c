/*
 * Copyright (C) Nexus authors
 *
 * bench/policy: the cost of one ABAC decision (common/nx_policy.c) on a
 * ten-rule set, for a few principals that exercise different operators
 * (deny rules first, a timestamp, a regex, time_between, contains).
 * DESIGN.md's budget is 2 us for 10 rules. Run by `make bench`.
 *
 *   build/bench-policy bench/policy_rules.json [decisions per case]
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nx_policy.h>


static double
bench_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1e9 + ts.tv_nsec;
}


int
main(int argc, char **argv)
{
    FILE                  *f;
    long                   i, n;
    char                  *json, err[512];
    size_t                 len, s, rl, al;
    double                 t0, dt, total;
    nx_policy_t           *p;
    nx_policy_opts_t       opts;
    nx_policy_ctx_t        ctx;
    nx_policy_decision_t   d;
    volatile long          sink;

    static nx_policy_attr_t  a[] = {
        { "principal.role", 14,
          { NX_POLICY_STRING, { .str = { "admin", 5 } } } },
        { "principal.tenant", 16,
          { NX_POLICY_STRING, { .str = { "acme", 4 } } } },
        { "resource.tenant", 15,
          { NX_POLICY_STRING, { .str = { "acme", 4 } } } },
        { "principal.email", 15,
          { NX_POLICY_STRING, { .str = { "ann@corp.example", 16 } } } },
        { "request.time", 12, { NX_POLICY_NUMBER, { .number = 1718442000 } } },
        { "resource.sensitivity", 20,
          { NX_POLICY_STRING, { .str = { "public", 6 } } } },
    };

    static const struct {
        const char  *name, *role, *rtype, *action;
    } cases[] = {
        { "admin reads a document (deny rules first)", "admin", "document",
          "read" },
        { "guest reads a document (timestamp)", "guest", "document", "read" },
        { "editor writes a document (regex)", "editor", "document", "write" },
        { "guest deletes (default, time_between)", "guest", "document",
          "delete" },
        { "admin invokes a model (contains)", "admin", "model", "invoke" },
    };

    if (argc < 2) {
        fprintf(stderr, "usage: %s rules.json [decisions]\n", argv[0]);
        return 2;
    }

    n = (argc > 2) ? atol(argv[2]) : 2000000;

    f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }

    json = malloc(1 << 20);
    len = fread(json, 1, 1 << 20, f);
    fclose(f);

    memset(&opts, 0, sizeof(opts));
    opts.wildcards = 1;

    t0 = bench_now();
    p = nx_policy_compile(json, len, &opts, err, sizeof(err));
    dt = bench_now() - t0;
    free(json);

    if (p == NULL) {
        fprintf(stderr, "compile: %s\n", err);
        return 1;
    }

    printf("policy: compiled %zu rules in %.1f us\n", nx_policy_rules(p),
           dt / 1e3);

    ctx.attrs = a;
    ctx.nattrs = sizeof(a) / sizeof(a[0]);
    ctx.lookup = NULL;
    ctx.data = NULL;

    total = 0;
    sink = 0;

    for (s = 0; s < sizeof(cases) / sizeof(cases[0]); s++) {
        a[0].value.u.str.data = cases[s].role;
        a[0].value.u.str.len = strlen(cases[s].role);
        rl = strlen(cases[s].rtype);
        al = strlen(cases[s].action);

        for (i = 0; i < n / 100; i++) {
            (void) nx_policy_decide(p, cases[s].rtype, rl, cases[s].action,
                                    al, &ctx, &d);
        }

        t0 = bench_now();

        for (i = 0; i < n; i++) {
            (void) nx_policy_decide(p, cases[s].rtype, rl, cases[s].action,
                                    al, &ctx, &d);
            sink += d.effect;
        }

        dt = (bench_now() - t0) / n;
        total += dt;

        printf("policy: %-44s %7.1f ns  %s (%s)\n", cases[s].name, dt,
               d.effect == NX_POLICY_ALLOW ? "allow" : "deny",
               d.rule_id ? d.rule_id : "default");
    }

    printf("policy: mean %.1f ns per decision; budget 2000 ns\n",
           total / (sizeof(cases) / sizeof(cases[0])));

    nx_policy_free(p);

    return 0;
}
