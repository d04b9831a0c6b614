/* A ring of entries in arrival order (so expiry and eviction are O(1) at the
 * tail) indexed by an open-addressing table with linear probing and
 * backward-shift deletion, keyed by SipHash of the request identity. */
#include "recent.h"

#include "siphash.h"

#include <stdlib.h>
#include <string.h>

struct sw_recent {
    struct sw_recent_txn *ring;
    size_t cap, head, count; /* oldest at head */
    uint32_t *slots;         /* ring index + 1; 0 = empty */
    size_t mask;
    uint64_t window_ms;
    uint64_t horizon_ms; /* see sw_recent_horizon_ms */
    uint8_t key[16];
};

static size_t slot_of(const struct sw_recent *r, const struct sw_req_id *id)
{
    return (size_t)at_siphash(r->key, id, sizeof *id) & r->mask;
}

struct sw_recent *sw_recent_new(size_t capacity, uint64_t window_ms, const uint8_t hash_key[16],
                                uint64_t now_ms)
{
    if (capacity == 0 || capacity > UINT32_MAX / 4)
        return NULL;
    struct sw_recent *r = calloc(1, sizeof *r);
    size_t slots = 1;
    while (slots < capacity * 2) /* load factor <= 1/2 keeps probes short */
        slots <<= 1;
    if (r) {
        r->ring = calloc(capacity, sizeof *r->ring);
        r->slots = calloc(slots, sizeof *r->slots);
    }
    if (!r || !r->ring || !r->slots) {
        sw_recent_free(r);
        return NULL;
    }
    r->cap = capacity;
    r->mask = slots - 1;
    r->window_ms = window_ms;
    r->horizon_ms = now_ms;
    memcpy(r->key, hash_key, 16);
    return r;
}

void sw_recent_free(struct sw_recent *r)
{
    if (!r)
        return;
    free(r->ring);
    free(r->slots);
    free(r);
}

/* Slot holding ring index idx, or the empty slot where id would go. */
static size_t probe(const struct sw_recent *r, const struct sw_req_id *id, bool *found)
{
    size_t s = slot_of(r, id);
    for (;;) {
        uint32_t v = r->slots[s];
        if (v == 0) {
            *found = false;
            return s;
        }
        if (memcmp(&r->ring[v - 1].id, id, sizeof *id) == 0) {
            *found = true;
            return s;
        }
        s = (s + 1) & r->mask;
    }
}

/* Backward-shift deletion: later members of the probe run move up so that no
 * lookup stops early at the hole. */
static void slot_delete(struct sw_recent *r, size_t hole)
{
    size_t s = hole;
    for (;;) {
        s = (s + 1) & r->mask;
        uint32_t v = r->slots[s];
        if (v == 0)
            break;
        size_t home = slot_of(r, &r->ring[v - 1].id);
        /* Move v into the hole if its home is not within (hole, s]. */
        bool between = hole <= s ? (home > hole && home <= s) : (home > hole || home <= s);
        if (!between) {
            r->slots[hole] = v;
            hole = s;
        }
    }
    r->slots[hole] = 0;
}

static void drop_oldest(struct sw_recent *r)
{
    uint64_t inserted = r->ring[r->head].expires_at_ms - r->window_ms;
    if (inserted > r->horizon_ms)
        r->horizon_ms = inserted;
    bool found;
    size_t s = probe(r, &r->ring[r->head].id, &found);
    if (found)
        slot_delete(r, s);
    r->head = (r->head + 1) % r->cap;
    r->count--;
}

static void expire(struct sw_recent *r, uint64_t now_ms)
{
    while (r->count > 0 && r->ring[r->head].expires_at_ms <= now_ms)
        drop_oldest(r);
}

struct sw_recent_txn *sw_recent_insert(struct sw_recent *r, const struct sw_recent_txn *txn,
                                       uint64_t now_ms, struct sw_recent_txn **dup)
{
    bool found;
    expire(r, now_ms);
    size_t s = probe(r, &txn->id, &found);
    if (found) {
        *dup = &r->ring[r->slots[s] - 1];
        return NULL;
    }
    *dup = NULL;
    if (r->count == r->cap) {
        drop_oldest(r);
        s = probe(r, &txn->id, &found); /* the deletion may have moved slots */
    }
    size_t idx = (r->head + r->count) % r->cap;
    r->ring[idx] = *txn;
    r->ring[idx].expires_at_ms = now_ms + r->window_ms;
    r->slots[s] = (uint32_t)idx + 1;
    r->count++;
    return &r->ring[idx];
}

struct sw_recent_txn *sw_recent_find(struct sw_recent *r, const struct sw_req_id *id,
                                     uint64_t now_ms)
{
    bool found;
    size_t s = probe(r, id, &found);
    if (!found)
        return NULL;
    struct sw_recent_txn *t = &r->ring[r->slots[s] - 1];
    return t->expires_at_ms > now_ms ? t : NULL;
}

size_t sw_recent_count(const struct sw_recent *r)
{
    return r->count;
}

uint64_t sw_recent_horizon_ms(const struct sw_recent *r)
{
    return r->horizon_ms;
}
