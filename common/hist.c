/* Log-linear histogram: bucket index = (power, sub-bucket). Values below 128
 * are exact (power 0 holds 0..127 linearly). */
#include "hist.h"

#include <string.h>

static unsigned bucket_of(uint64_t v)
{
    if (v < AT_HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned power = msb - AT_HIST_SUB_BITS + 1;       /* 1.. */
    unsigned sub = (unsigned)(v >> (power - 1)) & (AT_HIST_SUB - 1);
    /* v >> (power-1) lies in [SUB, 2*SUB): its top bit is implicit. */
    return power * AT_HIST_SUB + sub;
}

/* Lowest and highest value mapping to bucket b. */
static uint64_t bucket_low(unsigned b)
{
    unsigned power = b / AT_HIST_SUB, sub = b % AT_HIST_SUB;
    if (power == 0)
        return sub;
    return (uint64_t)(AT_HIST_SUB + sub) << (power - 1);
}

static uint64_t bucket_high(unsigned b)
{
    unsigned power = b / AT_HIST_SUB;
    if (power == 0)
        return bucket_low(b);
    return bucket_low(b) + ((uint64_t)1 << (power - 1)) - 1;
}

void at_hist_reset(struct at_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void at_hist_record(struct at_hist *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum = (h->sum + v < h->sum) ? UINT64_MAX : h->sum + v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void at_hist_merge(struct at_hist *dst, const struct at_hist *src)
{
    for (unsigned i = 0; i < AT_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum = (dst->sum + src->sum < dst->sum) ? UINT64_MAX : dst->sum + src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t at_hist_quantile(const struct at_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < AT_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = bucket_high(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

uint64_t at_hist_count_le(const struct at_hist *h, uint64_t limit)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < AT_HIST_BUCKETS; i++) {
        if (bucket_low(i) > limit)
            break;
        n += h->buckets[i];
    }
    return n;
}
