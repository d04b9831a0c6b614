/* The test-vector file reader (see vectors.h). */
#include "vectors.h"

#include <stdio.h>
#include <string.h>

long tv_read(const char *path, struct tv_row *rows, size_t cap, int ncols)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "tv_read: cannot open %s\n", path);
        return -1;
    }
    char line[1024];
    long n = 0;
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || strspn(line, " \t\r\n") == strlen(line))
            continue;
        int got = 0;
        char *save = NULL;
        for (char *tok = strtok_r(line, " \t\r\n", &save); tok;
             tok = strtok_r(NULL, " \t\r\n", &save)) {
            if (got == ncols || got == TV_COLS || strlen(tok) >= TV_FIELD_MAX || (size_t)n >= cap) {
                got = -1;
                break;
            }
            memcpy(rows[n].f[got++], tok, strlen(tok) + 1);
        }
        if (got != ncols) {
            fprintf(stderr, "tv_read: %s:%d: not a row of %d fields (or too many rows)\n", path,
                    lineno, ncols);
            fclose(f);
            return -1;
        }
        n++;
    }
    fclose(f);
    return n;
}
