/*
 * metrics: counters, gauges and histograms shared by the workers of one instance.
 *
 * The master maps one anonymous shared region before forking; each worker owns one slot
 * and is its only writer (aligned 64-bit stores, no locks). /metrics, served by whichever
 * worker gets the request, sums the slots. When a worker dies the master folds its
 * counters into the "retired" slot and clears its gauges, so cluster counters never go
 * backwards. The region also carries the instance-wide `draining` flag.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "envelope.h"

#define GW_MAX_WORKERS 64

enum gw_counter {
    MC_CONN_OPENED,
    MC_CONN_CLOSED,
    MC_AUTH_FAILED,
    MC_HTTP_REQUESTS,
    MC_FANOUT_DELIVERIES,
    MC_ACKED_SENDS,
    MC_ACKED_DMS,
    MC_RATE_LIMITED,
    MC_SLOW_CONSUMERS,
    MC_BYTES_IN,
    MC_BYTES_OUT,
    MC_BUS_PUBLISHED,
    MC_BUS_RECEIVED,
    MC_GAP_FILLS,
    MC_DB_ERRORS,
    MC_DB_BUSY,
    MC_HANDOFFS,
    MC__COUNT
};

enum gw_gauge {
    MG_CONN_RAW,
    MG_CONN_SIO_WS,
    MG_CONN_SIO_POLLING,
    MG_CONN_HTTP,
    MG_OUTBUF_BYTES,
    MG_ROOMS,
    MG_BROKER_UP,
    MG_REDIS_UP,
    MG_DB_UP,
    MG__COUNT
};

/* Events by name: inbound use the dispatch table index (GW_EV_OTHER for unknown). */
#define GW_EV_IN_MAX 16
enum gw_event_out {
    EO_NEW_MESSAGE, EO_USER_JOINED_ROOM, EO_USER_LEFT_ROOM, EO_USER_TYPING, EO_DIRECT_MESSAGE,
    EO_USER_ONLINE, EO_USER_OFFLINE, EO_USER_JOINED, EO_USER_LEFT, EO_MESSAGE, EO_ACK, EO_ERROR,
    EO_OTHER, EO__COUNT
};

enum gw_hist { MH_DELIVER_LATENCY, MH_DB_LATENCY, MH_REDIS_LATENCY, MH__COUNT };
#define GW_HIST_BUCKETS 14 /* see metrics.c for the bounds (seconds) */

typedef struct gw_hist_data {
    uint64_t buckets[GW_HIST_BUCKETS]; /* cumulative is computed at render time */
    uint64_t count;
    double sum;
} gw_hist_data_t;

typedef struct gw_metrics_slot {
    uint64_t c[MC__COUNT];
    int64_t g[MG__COUNT];
    uint64_t ev_in[GW_EV_IN_MAX];
    uint64_t ev_out[EO__COUNT];
    uint64_t err[CHAT_ERR__COUNT];
    gw_hist_data_t h[MH__COUNT];
    int32_t pid;
} gw_metrics_slot_t;

typedef struct gw_metrics_shm {
    volatile int draining;
    volatile int64_t started_at;
    gw_metrics_slot_t retired;
    gw_metrics_slot_t slot[GW_MAX_WORKERS];
} gw_metrics_shm_t;

gw_metrics_shm_t *metrics_shm_create(void);
/* Master: fold a dead worker's counters into `retired` and clear its slot. */
void metrics_retire(gw_metrics_shm_t *m, int worker);
void metrics_observe(gw_metrics_slot_t *s, enum gw_hist h, double seconds);
/* Prometheus text for the whole instance. in_names: the inbound event names by index. */
void metrics_render(const gw_metrics_shm_t *m, int nworkers, const char *instance,
                    const char *const *in_names, int n_in, buf_t *out);

#endif
