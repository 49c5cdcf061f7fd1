/*
 * hist: an HdrHistogram-style latency histogram (log-linear buckets, ~0.8% precision)
 * over microseconds, mergeable across processes.
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>

#define HIST_SUB 128   /* sub-buckets per power of two */
#define HIST_EXP 40    /* up to 2^40 us */
#define HIST_SIZE (HIST_SUB * HIST_EXP)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    double sum;
    uint32_t b[HIST_SIZE];
} hist_t;

void hist_init(hist_t *h);
void hist_add(hist_t *h, uint64_t us);
void hist_merge(hist_t *into, const hist_t *from);
/* The value at percentile p (0-100): the upper edge of its bucket. */
uint64_t hist_pct(const hist_t *h, double p);

#endif
