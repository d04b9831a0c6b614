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

int at_grow_bytes(char **buf, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : first;
    while (ncap < need)
        ncap *= 2;
    char *g = realloc(*buf, ncap);
    if (!g)
        return -1;
    *buf = g;
    *cap = ncap;
    return 0;
}
