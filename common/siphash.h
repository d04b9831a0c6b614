/* SipHash-2-4 (Aumasson & Bernstein): a keyed hash for tables whose keys come
 * from the wire (terminal ids, STANs), so a peer cannot pick colliding keys. */
#ifndef ATLAS_SIPHASH_H
#define ATLAS_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t at_siphash(const uint8_t key[16], const void *data, size_t len);

#endif
