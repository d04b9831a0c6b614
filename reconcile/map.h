/* A string → index hash table for atlas-reconcile (identities, request keys, wallets):
 * open addressing, keys copied, grows by doubling. Not for daemons: it allocates per key. */
#ifndef ATLAS_RECON_MAP_H
#define ATLAS_RECON_MAP_H

#include <stdbool.h>
#include <stddef.h>

struct rc_map;

/* NULL when out of memory. */
struct rc_map *rc_map_new(void);
void rc_map_free(struct rc_map *m);

/* True and *v when k is present. */
bool rc_map_get(const struct rc_map *m, const char *k, size_t *v);

/* Inserts k → v unless k is present (then *old, when non-NULL, gets its value and the table
 * is unchanged). Returns 0 inserted, 1 present, -1 out of memory. k is copied. */
__attribute__((warn_unused_result)) int rc_map_put(struct rc_map *m, const char *k, size_t v,
                                                   size_t *old);

size_t rc_map_count(const struct rc_map *m);

#endif
