/*
 * conn: one TCP connection of a worker: reading, the HTTP request loop, the WebSocket
 * framing, the output queue and its cap, timers, and closing.
 *
 * Output: conn_send() appends a frame reference to the queue and marks the connection
 * dirty; the worker's flush callback, at the end of the loop turn, writes every dirty
 * connection with one writev. A connection whose queue would pass CHAT_MAX_OUTBUF is closed
 * as a slow consumer instead: memory stays bounded whatever a client does.
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <sys/socket.h>

#include "http.h"
#include "worker.h"

void conn_accept(gw_worker_t *w, int fd, const struct sockaddr *sa, socklen_t salen);
/* Take over a socket another worker accepted, with the bytes it already read. */
void conn_adopt(gw_worker_t *w, int fd, const char *peer, const void *data, size_t len);

/* Queue one reference of f (the caller's reference is consumed). -1 when the connection is
 * closing or was just closed as a slow consumer. */
int conn_send(gw_conn_t *c, gw_frame_t *f);
/* Queue a text frame built from p. */
int conn_send_text(gw_conn_t *c, const char *p, size_t n);
/* Start the closing handshake: queue a close frame, then close once written. */
void conn_ws_close(gw_conn_t *c, uint16_t code, const char *reason);
/* Close now (queued output is dropped). Safe inside the connection's own callbacks. */
void conn_close(gw_conn_t *c, const char *why);

/* Asynchronous work (a database read) that will come back to the connection holds a
 * reference; a closed connection is freed when the last one is dropped. */
void conn_ref(gw_conn_t *c);
void conn_unref(gw_conn_t *c);

/* HTTP replies. keep_alive 0 closes the connection once the reply is written. */
void conn_http_respond(gw_conn_t *c, int status, const char *ctype, const char *body, size_t len,
                       const char *extra_headers, int keep_alive);
/* {"message":M,"code":C} with the status, and Connection: close for 4xx/5xx handshakes. */
void conn_http_error(gw_conn_t *c, int status, chat_err_t code, const char *message,
                     const char *extra_headers, int keep_alive);
/* Close the connection once its queued output is written. */
void conn_end_after_write(gw_conn_t *c);
/* A parked long-poll request finished: go back to reading requests (and run any that were
 * pipelined behind it). */
void conn_http_resume(gw_conn_t *c);
/* httpd: the current request (head + body, `consumed` bytes) was handled. */
void conn_request_done(gw_conn_t *c, size_t consumed);

/* Switch to WebSocket after the 101 response was queued; `rest` is what followed the
 * request head (fed to the frame reader). */
void conn_start_ws(gw_conn_t *c, int kind);
void conn_set_gauge(gw_conn_t *c, int gauge);

void conn_arm_timer(gw_conn_t *c, const struct timeval *tv);

/* The worker's flush callback: write dirty connections, then free the grave list. */
void conn_flush_all(gw_worker_t *w);
/* Close every connection (worker exit). */
void conn_close_all(gw_worker_t *w, uint16_t code, const char *reason);

/* Output-queue primitives, shared with the Engine.IO polling queue. */
int outq_push(gw_outq_t *q, gw_frame_t *f);
void outq_clear(gw_outq_t *q);
/* Remove and return the oldest frame (the caller owns its reference); NULL when empty. */
gw_frame_t *outq_take(gw_outq_t *q);
/* Move every queued payload into b, separated by the Engine.IO record separator. */
void outq_drain_payloads(gw_outq_t *q, buf_t *b);

#endif
