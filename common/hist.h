/* Log-linear latency histogram (HdrHistogram-style): values are bucketed by
 * power of two, each power split into 128 linear sub-buckets, so any recorded
 * value is reproduced within 1/128 (< 0.8 %) relative error. Fixed size, no
 * allocation after init, mergeable. Used by the load harness (percentiles)
 * and by switchd's /metrics (Prometheus buckets derived at render time). */
#ifndef ATLAS_HIST_H
#define ATLAS_HIST_H

#include <stdint.h>

#define AT_HIST_SUB_BITS 7 /* 128 sub-buckets per power of two */
#define AT_HIST_SUB      (1u << AT_HIST_SUB_BITS)
#define AT_HIST_POWERS   (64 - AT_HIST_SUB_BITS)
#define AT_HIST_BUCKETS  ((AT_HIST_POWERS + 1) * AT_HIST_SUB)

struct at_hist {
    uint64_t count;
    uint64_t sum; /* saturating */
    uint64_t min, max;
    uint64_t buckets[AT_HIST_BUCKETS];
};

void at_hist_reset(struct at_hist *h);
void at_hist_record(struct at_hist *h, uint64_t value);
/* Adds every count of src into dst. */
void at_hist_merge(struct at_hist *dst, const struct at_hist *src);
/* The value at quantile q (0..1): the highest value equivalent to the bucket
 * holding the q-th recorded value (never under-reports). 0 when empty. */
uint64_t at_hist_quantile(const struct at_hist *h, double q);
/* How many recorded values are <= limit (exact at bucket boundaries, an
 * upper-bound count otherwise: a bucket straddling limit counts if its lowest
 * value is <= limit). */
uint64_t at_hist_count_le(const struct at_hist *h, uint64_t limit);

#endif
