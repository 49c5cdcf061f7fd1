#include "hist.h"

#include <string.h>

void hist_init(hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static int index_of(uint64_t v)
{
    if (v < HIST_SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);       /* >= 7 */
    int shift = msb - 6;                      /* keep 7 significant bits: v >> shift in [64, 127] */
    int idx = shift * (HIST_SUB / 2) + (int)(v >> shift);
    return idx < HIST_SIZE ? idx : HIST_SIZE - 1;
}

static uint64_t upper_of(int idx)
{
    if (idx < HIST_SUB) return (uint64_t)idx;
    int shift = idx / (HIST_SUB / 2) - 1;
    uint64_t sub = (uint64_t)(idx - shift * (HIST_SUB / 2));
    return ((sub + 1) << shift) - 1;
}

void hist_add(hist_t *h, uint64_t us)
{
    h->b[index_of(us)]++;
    h->count++;
    h->sum += (double)us;
    if (us > h->max) h->max = us;
    if (us < h->min) h->min = us;
}

void hist_merge(hist_t *into, const hist_t *from)
{
    for (int i = 0; i < HIST_SIZE; i++) into->b[i] += from->b[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max) into->max = from->max;
    if (from->min < into->min) into->min = from->min;
}

uint64_t hist_pct(const hist_t *h, double p)
{
    if (!h->count) return 0;
    uint64_t want = (uint64_t)((p / 100.0) * (double)h->count + 0.5);
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_SIZE; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t u = upper_of(i);
            return u > h->max ? h->max : u;
        }
    }
    return h->max;
}
