/*
 * api: the small HTTP API of BRIEF §3.
 *
 *   POST /api/users/:id/events   {event, data}   Authorization: Bearer $CHAT_API_KEY
 *   POST /api/rooms/:id/events   {event, data}   Authorization: Bearer $CHAT_API_KEY
 *   GET  /api/rooms/:id/messages?before=&limit=  the user's JWT; room ACLs apply
 *
 * Events are delivered cluster-wide like any other publish. Errors are JSON
 * {"message", "code"} with a matching status.
 */
#ifndef GW_API_H
#define GW_API_H

#include "http.h"
#include "worker.h"

void api_handle(gw_conn_t *c, const http_request_t *req, const char *body, size_t len, int keep);

#endif
