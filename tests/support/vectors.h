/* Test-vector files (the .txt files of tests/vectors): one vector per line, its fields separated by
 * white space; lines starting with '#' and blank lines are comments. One reader for every test that
 * walks such a table. */
#ifndef ATLAS_TEST_VECTORS_H
#define ATLAS_TEST_VECTORS_H

#include <stddef.h>

#define TV_COLS      6   /* the most fields a row has */
#define TV_FIELD_MAX 300 /* the longest field, NUL included */

struct tv_row {
    char f[TV_COLS][TV_FIELD_MAX];
};

/* Reads the rows of the vector file at path into rows (room for cap): their count, or -1 (the
 * reason printed) when the file cannot be read, a row has not exactly ncols fields, a field is
 * too long, or there are more than cap rows. */
long tv_read(const char *path, struct tv_row *rows, size_t cap, int ncols);

#endif
