
/*
 * Copyright (C) Nexus authors
 *
 * The admission of a gateway call: its limits and its budget's
 * reservation, in one Redis round trip.
 */


#ifndef _NGX_NEXUS_ADMIT_H_INCLUDED_
#define _NGX_NEXUS_ADMIT_H_INCLUDED_


#include "ngx_nexus_module.h"
#include "ngx_nexus_proxy.h"
#include "ngx_nexus_redis.h"
#include "ngx_nexus_limit.h"
#include "ngx_nexus_budget.h"


/*
 * The admission script's KEYS (the reservation's, then the limits') and
 * ARGV (the same, then the block's size nb, the size it must fit nf and
 * how long it may hold bucket tokens nhold: 1, 1 and 0 for one request):
 * where each part sits in its argv[].
 */
#define NGX_NEXUS_ADMIT_NKEYS                                                 \
    (NGX_NEXUS_BUDGET_NKEYS + NGX_NEXUS_LIMIT_NKEYS)
#define NGX_NEXUS_ADMIT_NARGV                                                 \
    (NGX_NEXUS_BUDGET_NARGV + NGX_NEXUS_LIMIT_NARGV + 3)

/* the limits' KEYS[i], the reservation's ARGV[i], the limits' ARGV[i] */
#define NGX_NEXUS_ADMIT_LKEY(i)     (NGX_NEXUS_BUDGET_NKEYS + (i) - 1)
#define NGX_NEXUS_ADMIT_BARG(i)     (NGX_NEXUS_ADMIT_NKEYS + (i) - 1)
#define NGX_NEXUS_ADMIT_LARG(i)                                               \
    (NGX_NEXUS_ADMIT_NKEYS + NGX_NEXUS_BUDGET_NARGV                           \
     - NGX_NEXUS_BUDGET_NKEYS + (i) - 1)
#define NGX_NEXUS_ADMIT_NB          (NGX_NEXUS_ADMIT_NARGV - 3)


/* the admission's KEYS and ARGV, and the strings they point to */
typedef struct {
    const char                 *argv[NGX_NEXUS_ADMIT_NARGV];
    size_t                      argvlen[NGX_NEXUS_ADMIT_NARGV];
    ngx_nexus_limit_call_t      lc;
    ngx_nexus_budget_call_t     bc;
    ngx_int_t                   limits;     /* NGX_OK: in them */
    ngx_int_t                   reserve;    /* NGX_OK: in them */
} ngx_nexus_admit_args_t;


/*
 * After the body is parsed and the candidates are known: NGX_OK to call
 * the provider now; NGX_AGAIN while Redis answers (the answer then starts
 * the proxy or refuses); NGX_DONE when the request was answered (and
 * finalized) here.
 */
ngx_int_t ngx_nexus_admit(ngx_http_request_t *r, ngx_nexus_proxy_t *px);

ngx_int_t ngx_nexus_admit_init(ngx_conf_t *cf);

/* the script's KEYS and ARGV for one request; limits: with its limits */
ngx_int_t ngx_nexus_admit_args(ngx_http_request_t *r, ngx_nexus_proxy_t *px,
    ngx_uint_t limits, ngx_nexus_admit_args_t *aa);


/* the script, for the blocks that are taken with it (ngx_nexus_block.c) */
extern ngx_nexus_redis_script_t  ngx_nexus_admit_script;


#endif /* _NGX_NEXUS_ADMIT_H_INCLUDED_ */
