/* Linear probing on STAN (a counter, so its low bits spread well) with
 * backward-shift deletion. */
#include "pending.h"

#include <stdlib.h>

struct slot {
    uint32_t stan; /* 0 = empty: STAN 000000 is never assigned */
    uint8_t kind;
    void *ptr;
};

struct sw_pending {
    struct slot *slots;
    size_t mask, count, capacity;
};

static size_t home(const struct sw_pending *p, uint32_t stan)
{
    return (size_t)(stan * 2654435761u) & p->mask;
}

struct sw_pending *sw_pending_new(size_t capacity)
{
    struct sw_pending *p = calloc(1, sizeof *p);
    size_t n = 16;
    while (n < capacity * 2)
        n <<= 1;
    if (p)
        p->slots = calloc(n, sizeof *p->slots);
    if (!p || !p->slots) {
        free(p);
        return NULL;
    }
    p->mask = n - 1;
    p->capacity = capacity;
    return p;
}

void sw_pending_free(struct sw_pending *p)
{
    if (p)
        free(p->slots);
    free(p);
}

static size_t find(const struct sw_pending *p, uint32_t stan, bool *found)
{
    size_t s = home(p, stan);
    while (p->slots[s].stan != 0) {
        if (p->slots[s].stan == stan) {
            *found = true;
            return s;
        }
        s = (s + 1) & p->mask;
    }
    *found = false;
    return s;
}

int sw_pending_put(struct sw_pending *p, uint32_t stan, enum sw_pending_kind kind, void *ptr)
{
    bool found;
    if (stan == 0 || p->count >= p->capacity)
        return -1;
    size_t s = find(p, stan, &found);
    if (found)
        return -1;
    p->slots[s] = (struct slot){ stan, (uint8_t)kind, ptr };
    p->count++;
    return 0;
}

void *sw_pending_get(const struct sw_pending *p, uint32_t stan, enum sw_pending_kind *kind)
{
    bool found;
    size_t s = find(p, stan, &found);
    if (!found)
        return NULL;
    if (kind)
        *kind = (enum sw_pending_kind)p->slots[s].kind;
    return p->slots[s].ptr;
}

void *sw_pending_del(struct sw_pending *p, uint32_t stan)
{
    bool found;
    size_t hole = find(p, stan, &found);
    if (!found)
        return NULL;
    void *ptr = p->slots[hole].ptr;
    size_t s = hole;
    for (;;) {
        s = (s + 1) & p->mask;
        if (p->slots[s].stan == 0)
            break;
        size_t h = home(p, p->slots[s].stan);
        bool between = hole <= s ? (h > hole && h <= s) : (h > hole || h <= s);
        if (!between) {
            p->slots[hole] = p->slots[s];
            hole = s;
        }
    }
    p->slots[hole].stan = 0;
    p->count--;
    return ptr;
}

size_t sw_pending_count(const struct sw_pending *p)
{
    return p->count;
}

void sw_pending_each(const struct sw_pending *p,
                     void (*fn)(void *arg, uint32_t stan, enum sw_pending_kind kind, void *ptr),
                     void *arg)
{
    for (size_t i = 0; i <= p->mask; i++)
        if (p->slots[i].stan != 0)
            fn(arg, p->slots[i].stan, (enum sw_pending_kind)p->slots[i].kind, p->slots[i].ptr);
}
