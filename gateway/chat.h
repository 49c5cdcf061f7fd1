/*
 * chat: the product's event set (BRIEF §3) on top of either wire protocol.
 *
 * A chat socket (gw_sock_t) is one authenticated client endpoint: a raw WebSocket, or one
 * namespace of a Socket.IO session. Requests are dispatched through a table
 * {name, handler}; every request that carries an id (raw) or an ack callback (Socket.IO)
 * gets exactly one reply. Server pushes go through chat_publish(), which delivers to local
 * sockets at once and hands the event to the bus for the rest of the cluster.
 */
#ifndef GW_CHAT_H
#define GW_CHAT_H

#include <stdint.h>

#include "worker.h"

#define GW_MAX_ROOMS_PER_SOCK 100

/* One client request awaiting its reply. Holds a reference on the socket. */
typedef struct gw_req {
    gw_sock_t *sock;
    char id[48];       /* raw: the request id as JSON, "" when absent */
    long long ack_id;  /* Socket.IO: the ack id, -1 when absent */
    uint8_t ev;        /* index in the event table (metrics) */
} gw_req_t;

gw_sock_t *chat_sock_open(gw_worker_t *w, int proto, const jwt_identity_t *id, gw_conn_t *conn,
                          gw_eio_t *eio, int nsp);
/* Detach from rooms and presence; the socket is freed when its last reference goes. */
void chat_sock_close(gw_sock_t *s);
void sock_ref(gw_sock_t *s);
void sock_unref(gw_sock_t *s);

/* A text message from a raw WebSocket client. */
void chat_raw_message(gw_sock_t *s, const char *text, size_t len);
/* A Socket.IO EVENT: `json` is the ["event", data...] array. */
void chat_sio_event(gw_sock_t *s, const char *json, size_t len, long long ack_id);

/* Reply to a request (data is encoded JSON) or fail it with an error code. */
void chat_reply(gw_req_t *r, const char *json, size_t len);
void chat_fail(gw_req_t *r, chat_err_t code, const char *message);

/* Push one event to one socket (encoded for its protocol, shared via the bcast). */
void sock_push(gw_sock_t *s, gw_bcast_t *b, int eo);
/* Send a frame to one socket (the caller's reference is consumed). */
void sock_send_frame(gw_sock_t *s, gw_frame_t *f);

/*
 * Publish an event to a topic ("room:<id>", "user:<id>", "all"): local sockets now, the
 * rest of the cluster through the broker. `seq` >= 0 marks an ordered room message.
 */
void chat_publish(gw_worker_t *w, const char *topic, const char *event, const char *data,
                  size_t len, gw_sock_t *exclude, int64_t seq);

/* From the bus: an event published elsewhere; availability changes; (re)connected. */
void chat_bus_message(gw_worker_t *w, const char *topic, const char *payload, size_t len);
void chat_bus_status(gw_worker_t *w, int up);
void chat_bus_resync(gw_worker_t *w);

/* Event names by table index (metrics). */
const char *const *chat_event_names(int *n);

/* Map an outbound event name to its metrics index. */
int chat_eo_index(const char *event);

#endif
