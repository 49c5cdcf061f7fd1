/*
 * httpd: the plain-HTTP side of a worker: the request loop of a connection and the routes
 * (WebSocket upgrade, Socket.IO, health, metrics, the HTTP API, development tokens and the
 * demo web client's static files).
 */
#ifndef GW_HTTPD_H
#define GW_HTTPD_H

#include "http.h"
#include "worker.h"

/* Run every complete request buffered on the connection. */
void httpd_process(gw_conn_t *c);

/* Load the static files of the web client (before forking; shared copy-on-write). */
int httpd_static_load(const char *dir);

/* Verify the request's token for a WebSocket handshake or API call. 0, or -1 with *why. */
int httpd_authenticate(gw_worker_t *w, const http_request_t *req, jwt_identity_t *id,
                       const char **why);

/* 1 when the request's Origin is allowed (CHAT_ALLOWED_ORIGINS, BRIEF §4). */
int httpd_origin_ok(const http_request_t *req);

#endif
