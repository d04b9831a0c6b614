/* BIN routing: the longest prefix (6 to 11 digits) of a PAN that matches a
 * configured route names the issuer and the currency its cards are billed in. Built once from
 * reference data and swapped whole on reload, so lookups never see a half-built table. */
#ifndef ATLAS_SW_ROUTER_H
#define ATLAS_SW_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SW_BIN_MIN 6
#define SW_BIN_MAX 11

struct sw_route {
    char prefix[SW_BIN_MAX + 1]; /* digits, NUL-terminated */
    uint32_t issuer;             /* caller's issuer index */
    int billing_currency;        /* ISO 4217 numeric the cards are billed in; 0 = DE 49's */
    uint32_t card_keys;          /* caller's index + 1 of the route's card keys; 0 = none */
};

/* What a lookup answers: the card's issuer and billing currency. */
struct sw_route_match {
    uint32_t issuer;
    int billing_currency; /* 0: billed in the request's DE 49, nothing to convert */
    uint32_t card_keys;   /* the route's card_keys (0 = none) */
};

struct sw_router;

/* Builds a router from n routes. Fails (-1, reason in err) on a prefix that
 * is not 6..11 digits or a prefix listed twice. On success *out is owned by
 * the caller (sw_router_free). */
__attribute__((warn_unused_result)) int sw_router_build(const struct sw_route *routes, size_t n,
                                                        struct sw_router **out, char *err,
                                                        size_t errcap);

/* Issuer of the longest matching prefix of the len digits at pan, or -1 when
 * no route matches. Never reads past pan[len-1]. */
int64_t sw_router_lookup(const struct sw_router *r, const char *pan, size_t len);

/* The same lookup with the route's billing currency: true and *out, or false when no route
 * matches. */
bool sw_router_match(const struct sw_router *r, const char *pan, size_t len,
                     struct sw_route_match *out);

size_t sw_router_count(const struct sw_router *r);

void sw_router_free(struct sw_router *r);

#endif
