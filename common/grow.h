/* Arrays that grow by doubling: the one way a module appends to an array it owns. */
#ifndef ATLAS_GROW_H
#define ATLAS_GROW_H

#include <stddef.h>

/* Makes room in *arr (*cap elements of size sz, n of them used) for one more: nothing while
 * n < *cap, else *arr is reallocated to twice *cap elements (first when *cap is 0) and *cap
 * updated. Returns 0, or -1 when memory runs out (then *arr and *cap are untouched and *arr is
 * still the caller's to free). */
__attribute__((warn_unused_result)) int at_grow(void **arr, size_t *cap, size_t n, size_t sz,
                                                size_t first);

/* The same for a byte buffer that must hold need bytes: nothing while need <= *cap, else *buf is
 * reallocated to the first of first, 2 x first, 4 x first, ... that holds them. 0, or -1 when
 * memory runs out (*buf and *cap untouched). */
__attribute__((warn_unused_result)) int at_grow_bytes(char **buf, size_t *cap, size_t need,
                                                      size_t first);

#endif
