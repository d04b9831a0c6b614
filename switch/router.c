/* A decimal trie: one node per digit position, at most 11 deep, so a lookup
 * is at most 11 array reads whatever the number of routes. */
#include "router.h"

#include "grow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_NODE   0 /* node 0 is the root, never a child */
#define NO_ISSUER -1

struct node {
    uint32_t child[10];
    int64_t issuer;
    int billing_currency;
    uint32_t card_keys;
};

struct sw_router {
    struct node *nodes;
    size_t n_nodes, cap, n_routes;
};

static int64_t new_node(struct sw_router *r)
{
    if (at_grow((void **)&r->nodes, &r->cap, r->n_nodes, sizeof *r->nodes, 64) != 0)
        return -1;
    memset(&r->nodes[r->n_nodes], 0, sizeof r->nodes[0]);
    r->nodes[r->n_nodes].issuer = NO_ISSUER;
    return (int64_t)r->n_nodes++;
}

static int insert(struct sw_router *r, const struct sw_route *route, char *err, size_t errcap)
{
    size_t len = strnlen(route->prefix, sizeof route->prefix);
    if (len < SW_BIN_MIN || len > SW_BIN_MAX) {
        snprintf(err, errcap, "BIN prefix must have %d to %d digits (got %zu)", SW_BIN_MIN,
                 SW_BIN_MAX, len);
        return -1;
    }
    uint32_t at = 0;
    for (size_t i = 0; i < len; i++) {
        char c = route->prefix[i];
        if (c < '0' || c > '9') {
            snprintf(err, errcap, "BIN prefix has a non-digit at position %zu", i);
            return -1;
        }
        if (r->nodes[at].child[c - '0'] == NO_NODE) {
            int64_t n = new_node(r);
            if (n < 0) {
                snprintf(err, errcap, "out of memory");
                return -1;
            }
            r->nodes[at].child[c - '0'] = (uint32_t)n;
        }
        at = r->nodes[at].child[c - '0'];
    }
    if (r->nodes[at].issuer != NO_ISSUER) {
        snprintf(err, errcap, "BIN prefix %s listed twice", route->prefix);
        return -1;
    }
    r->nodes[at].issuer = route->issuer;
    r->nodes[at].billing_currency = route->billing_currency;
    r->nodes[at].card_keys = route->card_keys;
    r->n_routes++;
    return 0;
}

int sw_router_build(const struct sw_route *routes, size_t n, struct sw_router **out, char *err,
                    size_t errcap)
{
    struct sw_router *r = calloc(1, sizeof *r);
    if (!r || new_node(r) < 0) {
        snprintf(err, errcap, "out of memory");
        sw_router_free(r);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (insert(r, &routes[i], err, errcap) != 0) {
            sw_router_free(r);
            return -1;
        }
    }
    *out = r;
    return 0;
}

int64_t sw_router_lookup(const struct sw_router *r, const char *pan, size_t len)
{
    struct sw_route_match m;
    return sw_router_match(r, pan, len, &m) ? (int64_t)m.issuer : NO_ISSUER;
}

bool sw_router_match(const struct sw_router *r, const char *pan, size_t len,
                     struct sw_route_match *out)
{
    const struct node *best = NULL;
    uint32_t at = 0;
    for (size_t i = 0; i < len && i < SW_BIN_MAX; i++) {
        char c = pan[i];
        if (c < '0' || c > '9')
            break;
        at = r->nodes[at].child[c - '0'];
        if (at == NO_NODE)
            break;
        if (r->nodes[at].issuer != NO_ISSUER)
            best = &r->nodes[at];
    }
    if (!best)
        return false;
    out->issuer = (uint32_t)best->issuer;
    out->billing_currency = best->billing_currency;
    out->card_keys = best->card_keys;
    return true;
}

size_t sw_router_count(const struct sw_router *r)
{
    return r->n_routes;
}

void sw_router_free(struct sw_router *r)
{
    if (!r)
        return;
    free(r->nodes);
    free(r);
}
