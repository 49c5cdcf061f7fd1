/*
 * pgconn: one non-blocking libpq connection driven by a worker's libevent loop, in pipeline
 * mode. Queries are queued with pgc_query(); each is followed by a sync point, so a failing
 * query fails alone, and results come back in order to each query's callback.
 *
 * Connecting never blocks the loop: host names are resolved with evdns first and libpq
 * gets the address (hostaddr), then PQconnectPoll is driven by socket readiness. A lost
 * connection fails every pending query (callback with res NULL) and reconnects with
 * backoff; while it is down, pgc_query() refuses at once (the callback is not called),
 * so callers answer UNAVAILABLE instead of queueing unboundedly.
 */
#ifndef GW_PGCONN_H
#define GW_PGCONN_H

#include <libpq-fe.h>

#include "worker.h"

typedef struct pgconn pgconn_t;

/* res is NULL when the query failed (err says why); the result is freed after the call. */
typedef void (*pgc_cb)(void *arg, PGresult *res, const char *err);

pgconn_t *pgc_new(gw_worker_t *w, const char *conninfo, const char *name);
void pgc_free(pgconn_t *c);
int pgc_ready(const pgconn_t *c);
int pgc_inflight(const pgconn_t *c);
/* Queue a query with text parameters. 0, or -1 when not connected (cb not called). */
int pgc_query(pgconn_t *c, const char *sql, int nparams, const char *const *values, pgc_cb cb,
              void *arg);
/* Send what was queued (called at the end of the loop turn). */
void pgc_flush(pgconn_t *c);

#endif
