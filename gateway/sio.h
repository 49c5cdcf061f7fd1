/*
 * sio: Engine.IO v4 sessions and Socket.IO v5 namespaces (BRIEF §3) for a worker.
 *
 * A session (gw_eio_t) outlives its transports: it starts on HTTP long-polling or directly
 * on a WebSocket, may upgrade from polling to WebSocket, and carries up to one chat socket
 * per namespace. The session id names the worker that owns it, so a polling request that
 * the kernel gave to another worker is handed to the owner with SCM_RIGHTS.
 */
#ifndef GW_SIO_H
#define GW_SIO_H

#include <cjson/cJSON.h>

#include "http.h"
#include "worker.h"

/* An HTTP request under /socket.io/ (handshake, poll, post, or WebSocket upgrade). */
void sio_http(gw_conn_t *c, const http_request_t *req, const char *body, size_t len);
/* A text frame on a session's WebSocket transport. */
void sio_ws_packet(gw_eio_t *e, gw_conn_t *c, char *data, size_t len);
/* A binary frame on a session's WebSocket (echoed in conformance mode, else refused). */
void sio_ws_binary(gw_eio_t *e, gw_conn_t *c, char *data, size_t len);
/* Before its body is read: hand a request for another worker's session to that worker.
 * 1 when handed off (the connection is gone from this worker). */
int sio_handoff(gw_conn_t *c, const http_request_t *req);
/* Answer the parked long-poll GETs that got packets during this loop turn (the worker's
 * flush, before the connections are written). */
void sio_flush_polls(gw_worker_t *w);
/* Free sessions closed during this loop turn (the worker's flush). */
void sio_free_closed(gw_worker_t *w);
/* A transport connection of the session went away. */
void sio_transport_closed(gw_eio_t *e, gw_conn_t *c);
/* Queue a frame (a WebSocket frame whose payload is one Engine.IO packet) to a session. */
void sio_send(gw_eio_t *e, gw_frame_t *f);
/* Conformance mode: the test suites' echo handlers. */
void sio_conformance_event(gw_sock_t *s, const cJSON *arr, long long ack_id);
/* Drain: tell every session to reconnect elsewhere. */
void sio_close_all(gw_worker_t *w, const char *reason);
void sio_free_all(gw_worker_t *w);
void sio_handoff_init(gw_worker_t *w);
void sio_handoff_free(gw_worker_t *w);

#endif
