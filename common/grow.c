/* Arrays that grow by doubling. */
#include "grow.h"

#include <stdlib.h>

int at_grow(void **arr, size_t *cap, size_t n, size_t sz, size_t first)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : first;
    void *g = realloc(*arr, ncap * sz);
    if (!g)
        return -1;
    *arr = g;
    *cap = ncap;
    return 0;
}
