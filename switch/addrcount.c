/* Linear probing on a keyed hash of the address, with backward-shift
 * deletion (no tombstones: a table that sees connections come and go for
 * months never degrades). */
#include "addrcount.h"

#include "siphash.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    struct sw_peer_addr addr;
    uint32_t n; /* connections; 0 = empty slot */
};

struct sw_addrcount {
    struct slot *slots;
    size_t mask, used, capacity;
    uint8_t key[16];
};

bool sw_peer_addr_of(const struct sockaddr *sa, socklen_t len, struct sw_peer_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static size_t home(const struct sw_addrcount *c, const struct sw_peer_addr *a)
{
    return (size_t)at_siphash(c->key, a->b, sizeof a->b) & c->mask;
}

struct sw_addrcount *sw_addrcount_new(size_t capacity, const uint8_t key[16])
{
    struct sw_addrcount *c = calloc(1, sizeof *c);
    size_t n = 16;
    while (n < capacity * 2) /* load factor at most 1/2 */
        n <<= 1;
    if (c)
        c->slots = calloc(n, sizeof *c->slots);
    if (!c || !c->slots) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    c->capacity = capacity;
    memcpy(c->key, key, sizeof c->key);
    return c;
}

void sw_addrcount_free(struct sw_addrcount *c)
{
    if (c)
        free(c->slots);
    free(c);
}

/* The slot holding a, or the empty slot where it would go (*found false). */
static size_t find(const struct sw_addrcount *c, const struct sw_peer_addr *a, bool *found)
{
    size_t s = home(c, a);
    while (c->slots[s].n != 0) {
        if (memcmp(&c->slots[s].addr, a, sizeof *a) == 0) {
            *found = true;
            return s;
        }
        s = (s + 1) & c->mask;
    }
    *found = false;
    return s;
}

int sw_addrcount_take(struct sw_addrcount *c, const struct sw_peer_addr *a, uint32_t cap)
{
    bool found;
    size_t s = find(c, a, &found);
    if (found) {
        if (c->slots[s].n >= cap)
            return -1;
        c->slots[s].n++;
        return 0;
    }
    if (cap == 0 || c->used >= c->capacity)
        return -1;
    c->slots[s].addr = *a;
    c->slots[s].n = 1;
    c->used++;
    return 0;
}

void sw_addrcount_drop(struct sw_addrcount *c, const struct sw_peer_addr *a)
{
    bool found;
    size_t hole = find(c, a, &found);
    if (!found || --c->slots[hole].n > 0)
        return;
    /* The address's last connection: empty its slot, then move back every
     * entry after it whose home no longer lies between it and the hole. */
    size_t s = hole;
    for (;;) {
        s = (s + 1) & c->mask;
        if (c->slots[s].n == 0)
            break;
        size_t h = home(c, &c->slots[s].addr);
        bool between = hole <= s ? (h > hole && h <= s) : (h > hole || h <= s);
        if (!between) {
            c->slots[hole] = c->slots[s];
            hole = s;
        }
    }
    c->slots[hole].n = 0;
    c->used--;
}

uint32_t sw_addrcount_get(const struct sw_addrcount *c, const struct sw_peer_addr *a)
{
    bool found;
    size_t s = find(c, a, &found);
    return found ? c->slots[s].n : 0;
}

size_t sw_addrcount_addresses(const struct sw_addrcount *c)
{
    return c->used;
}
