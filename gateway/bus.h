/*
 * bus: a worker's link to the per-host chat-broker (BRIEF §2), or, when no broker is
 * configured, the standalone mode where the worker is the whole cluster.
 *
 * The link is a unix-socket connection speaking brkproto. It reconnects on its own (every
 * BUS_RETRY_MS) and, once connected, the chat layer re-sends its interest (every room and
 * user with local sockets) and its connections, so a restarted broker rebuilds its state
 * without any client noticing. Incoming events go to chat_bus_message(); changes of the
 * broker's or Redis's availability go to chat_bus_status().
 */
#ifndef GW_BUS_H
#define GW_BUS_H

#include <stddef.h>

#include "worker.h"

#define BUS_RETRY_MS 250
#define BUS_MAX_OUTBUF (64u << 20) /* a stuck broker: drop the link and resync */
#define BUS_REQUEST_TIMEOUT_MS 3000

gw_bus_t *bus_new(gw_worker_t *w, const char *socket_path);
void bus_free(gw_bus_t *b);

int bus_clustered(const gw_bus_t *b);
int bus_broker_up(const gw_bus_t *b);
int bus_redis_up(const gw_bus_t *b);
/* Events published now will reach the rest of the cluster. */
int bus_can_publish(const gw_bus_t *b);

void bus_sub(gw_bus_t *b, const char *topic);
void bus_unsub(gw_bus_t *b, const char *topic);
void bus_publish(gw_bus_t *b, const char *topic, const char *payload, size_t len);
void bus_conn_up(gw_bus_t *b, const char *user_id, const char *username);
void bus_conn_down(gw_bus_t *b, const char *user_id, const char *rooms);

/* The cluster's online users as a JSON array; json NULL when the broker cannot answer. */
typedef void (*bus_online_cb)(void *arg, const char *json, size_t len);
void bus_online(gw_bus_t *b, bus_online_cb cb, void *arg);

/* Write what was queued during this loop turn (the worker's flush callback). */
void bus_flush(gw_bus_t *b);
/* Fail requests that waited too long (called from the worker's tick). */
void bus_tick(gw_bus_t *b);

#endif
