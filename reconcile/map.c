/* String → index table (map.h): linear probing over a power-of-two array, load at most 1/2. */
#include "map.h"

#include "siphash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char *k; /* NULL = empty */
    size_t v;
    uint64_t h;
};

struct rc_map {
    struct slot *s;
    size_t cap, n;
};

/* A fixed key: the keys come from our own databases and files, not from a peer choosing them. */
static const uint8_t hkey[16] = { 'a', 't', 'l', 'a', 's', '-', 'r', 'e',
                                  'c', 'o', 'n', 'c', 'i', 'l', 'e', '1' };

static uint64_t hash(const char *k)
{
    return at_siphash(hkey, k, strlen(k));
}

struct rc_map *rc_map_new(void)
{
    struct rc_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 1024;
    m->s = calloc(m->cap, sizeof *m->s);
    if (!m->s) {
        free(m);
        return NULL;
    }
    return m;
}

void rc_map_free(struct rc_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->s[i].k);
    free(m->s);
    free(m);
}

static struct slot *find(const struct rc_map *m, const char *k, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        struct slot *s = &m->s[i];
        if (!s->k || (s->h == h && strcmp(s->k, k) == 0))
            return s;
    }
}

bool rc_map_get(const struct rc_map *m, const char *k, size_t *v)
{
    const struct slot *s = find(m, k, hash(k));
    if (!s->k)
        return false;
    *v = s->v;
    return true;
}

static int grow(struct rc_map *m)
{
    struct rc_map bigger = { calloc(m->cap * 2, sizeof(struct slot)), m->cap * 2, m->n };
    if (!bigger.s)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->s[i].k)
            *find(&bigger, m->s[i].k, m->s[i].h) = m->s[i];
    free(m->s);
    *m = bigger;
    return 0;
}

int rc_map_put(struct rc_map *m, const char *k, size_t v, size_t *old)
{
    uint64_t h = hash(k);
    struct slot *s = find(m, k, h);
    if (s->k) {
        if (old)
            *old = s->v;
        return 1;
    }
    if ((m->n + 1) * 2 > m->cap) {
        if (grow(m) != 0)
            return -1;
        s = find(m, k, h);
    }
    s->k = strdup(k);
    if (!s->k)
        return -1;
    s->v = v;
    s->h = h;
    m->n++;
    return 0;
}

size_t rc_map_count(const struct rc_map *m)
{
    return m->n;
}
