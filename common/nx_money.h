/*
 * Copyright (C) Nexus authors
 *
 * Money as fixed-point integers, never floating point: amounts (budgets,
 * spend, credit balances) in micro-dollars, prices in nano-dollars per
 * 1K tokens, so that a price of $0.0000375 per 1K tokens is exact.
 * Shared by the module, which prices requests, and nexusctl, which reads
 * and prints prices and budgets.
 */

#ifndef NX_MONEY_H
#define NX_MONEY_H

#include <stddef.h>
#include <stdint.h>


#define NX_MONEY_MICRO          6       /* decimals of an amount */
#define NX_MONEY_NANO           9       /* decimals of a price per 1K */

/* the most a price may be: $10 per 1K tokens, in nano-dollars */
#define NX_MONEY_PRICE_MAX      10000000000LL

/* tokens counted per side of a request: more is a provider's mistake */
#define NX_MONEY_TOKENS_MAX     100000000LL

/* a formatted amount: sign, 19 digits, point, NUL */
#define NX_MONEY_LEN            24


/*
 * Parses a plain non-negative decimal, s[0..len): digits, optionally a
 * point and at most `scale` decimals ("12", "0.0025", ".5" is refused),
 * into an integer in units of 10^-scale.  Returns 0 and sets *out, or -1
 * when s is malformed, has more decimals than scale, or exceeds max.
 */
int nx_money_parse(const char *s, size_t len, int scale, int64_t max,
    int64_t *out);

/*
 * Writes v (in units of 10^-scale) as a decimal with at least two and at
 * most `scale` decimals, trailing zeros dropped: 12500000 at scale 6 is
 * "12.50", 150 at scale 6 is "0.00015".  buf has NX_MONEY_LEN bytes; the
 * result is NUL-terminated and its length returned.
 */
size_t nx_money_format(char *buf, int64_t v, int scale);

/*
 * What prompt and completion tokens cost, in micro-dollars, at prices in
 * nano-dollars per 1K tokens; rounded up, so that no request is free by
 * rounding.  Tokens are clamped to 0..NX_MONEY_TOKENS_MAX and prices to
 * 0..NX_MONEY_PRICE_MAX, which keeps the arithmetic within 64 bits.
 */
int64_t nx_money_cost(int64_t prompt, int64_t completion, int64_t in_price,
    int64_t out_price);


#endif /* NX_MONEY_H */
