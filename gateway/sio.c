/* Engine.IO / Socket.IO: this first slice of the gateway speaks the raw WebSocket protocol
 * only; requests under /socket.io/ get a clear 501 until the Socket.IO module lands
 * (issue 5). */
#include "sio.h"

#include "conn.h"

void sio_http(gw_conn_t *c, const http_request_t *req, const char *body, size_t len)
{
    conn_http_error(c, 501, CHAT_ERR_UNAVAILABLE, "Socket.IO transport not available in this build",
                    NULL, 0);
}

void sio_ws_packet(gw_eio_t *e, gw_conn_t *c, char *data, size_t len)
{
}

void sio_transport_closed(gw_eio_t *e, gw_conn_t *c)
{
}

void sio_send(gw_eio_t *e, gw_frame_t *f)
{
    frame_unref(f);
}

void sio_conformance_event(gw_sock_t *s, const cJSON *arr, long long ack_id)
{
}

void sio_close_all(gw_worker_t *w, const char *reason)
{
}

void sio_free_all(gw_worker_t *w)
{
}

void sio_handoff_init(gw_worker_t *w)
{
}

void sio_handoff_free(gw_worker_t *w)
{
}
