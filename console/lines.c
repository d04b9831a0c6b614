/* Line splitter for the console: turns a byte stream read in arbitrary
 * chunks into complete lines with their file offsets, in a fixed buffer.
 * Shared by the follower and the summary so both treat over-long and cut
 * lines the same way. */
#include "con.h"

#include <string.h>

void con_lines_reset(struct con_lines *l)
{
    l->len = 0;
    l->overflow = false;
    l->start = 0;
    l->head_len = 0;
    l->head_off = 0;
}

void con_lines_feed(struct con_lines *l, const char *p, size_t n, int64_t off, con_line_fn fn,
                    void *arg)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (l->len == 0 && !l->overflow)
            l->start = off;
        if (l->overflow) {
            /* The rest of a line already reported as too long. */
            if (nl)
                l->overflow = false;
        } else if (l->len + take > CON_LINE_MAX) {
            fn(arg, l->buf, l->len + take, l->start, "line too long");
            l->len = 0;
            l->overflow = nl == NULL;
        } else {
            memcpy(l->buf + l->len, p, take);
            l->len += take;
            if (nl) {
                l->head_len = l->len < CON_HEAD_KEEP ? l->len : CON_HEAD_KEEP;
                memcpy(l->head, l->buf, l->head_len);
                l->head_off = l->start;
                fn(arg, l->buf, l->len, l->start, NULL);
                l->len = 0;
            }
        }
        size_t step = take + (nl ? 1 : 0);
        p += step;
        n -= step;
        off += (int64_t)step;
    }
}

void con_lines_finish(struct con_lines *l, const char *why, con_line_fn fn, void *arg)
{
    if (l->len > 0)
        fn(arg, l->buf, l->len, l->start, why);
    l->len = 0;
    l->overflow = false;
}
