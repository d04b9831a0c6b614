/* A link's table of requests awaiting an answer, keyed by the STAN the switch
 * assigned (DE 11, 1..999999). Open addressing sized at creation, so an
 * insert never allocates. */
#ifndef ATLAS_SW_PENDING_H
#define ATLAS_SW_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sw_pending_kind { SW_PENDING_TXN, SW_PENDING_SAF, SW_PENDING_ADVICE /* advice.c */ };

struct sw_pending;

/* A table for at most capacity entries (NULL on allocation failure). */
struct sw_pending *sw_pending_new(size_t capacity);
void sw_pending_free(struct sw_pending *p);

/* Adds stan → (kind, ptr). -1 when full or stan is already present. */
int sw_pending_put(struct sw_pending *p, uint32_t stan, enum sw_pending_kind kind, void *ptr);
/* Finds stan; returns its pointer and kind, or NULL. */
void *sw_pending_get(const struct sw_pending *p, uint32_t stan, enum sw_pending_kind *kind);
/* Removes stan; returns its pointer (NULL if absent). */
void *sw_pending_del(struct sw_pending *p, uint32_t stan);
size_t sw_pending_count(const struct sw_pending *p);
/* Calls fn on every entry (the table may not be modified meanwhile). */
void sw_pending_each(const struct sw_pending *p,
                     void (*fn)(void *arg, uint32_t stan, enum sw_pending_kind kind, void *ptr),
                     void *arg);

#endif
