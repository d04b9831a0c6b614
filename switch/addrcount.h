/* Connections per peer IP address, for a listener's
 * max_connections_per_address: an open-addressing table sized at creation
 * for as many addresses as the listener has connections (so counting a
 * connection never allocates), keyed by a random per-process SipHash key so
 * a peer cannot pick addresses that collide. The port is not part of the
 * key: one host is one address whatever its source ports. */
#ifndef ATLAS_SW_ADDRCOUNT_H
#define ATLAS_SW_ADDRCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv6 address, or an IPv4 one as ::ffff:a.b.c.d, so both count alike. */
struct sw_peer_addr {
    uint8_t b[16];
};

/* Fills out from an accepted peer's address. false for a family that is
 * neither IPv4 nor IPv6 (the caller then does not count it). */
bool sw_peer_addr_of(const struct sockaddr *sa, socklen_t len, struct sw_peer_addr *out);

struct sw_addrcount;

/* A table for up to capacity distinct addresses; key seeds the hash. NULL on
 * allocation failure. */
struct sw_addrcount *sw_addrcount_new(size_t capacity, const uint8_t key[16]);
void sw_addrcount_free(struct sw_addrcount *c);

/* Counts one more connection from a. Returns 0, or -1 when a already has
 * cap connections (cap >= 1) or the table holds capacity addresses: the
 * connection is then refused and nothing is counted. */
__attribute__((warn_unused_result)) int
sw_addrcount_take(struct sw_addrcount *c, const struct sw_peer_addr *a, uint32_t cap);
/* One connection from a ended (a must have been taken). */
void sw_addrcount_drop(struct sw_addrcount *c, const struct sw_peer_addr *a);
/* Connections counted for a (0 when absent). */
uint32_t sw_addrcount_get(const struct sw_addrcount *c, const struct sw_peer_addr *a);
/* Distinct addresses with at least one connection. */
size_t sw_addrcount_addresses(const struct sw_addrcount *c);

#endif
