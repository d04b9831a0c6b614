/* The vector files of tests/vectors (tests/support/vectors.h) as the unit tests read them: a file
 * that cannot be read, or that holds another number of rows than the test expects, fails the
 * test. Include after <cmocka.h>. */
#ifndef ATLAS_UNIT_TEST_VECTORS_H
#define ATLAS_UNIT_TEST_VECTORS_H

#include <stddef.h>

#include "vectors.h"

/* The rows of ncols fields of the vector file at path into rows (room for cap): there must be
 * want of them. Returns want. */
static inline size_t read_rows(const char *path, struct tv_row *rows, size_t cap, int ncols,
                               size_t want)
{
    long n = tv_read(path, rows, cap, ncols);
    assert_true(n >= 0);
    assert_int_equal(n, want);
    return want;
}

#endif
