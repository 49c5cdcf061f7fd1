/*
 * Engine.IO v4 / Socket.IO v5 for a worker (BRIEF §3, issue 5).
 *
 * Sessions. A session starts with a long-polling handshake (GET without sid) or directly
 * on a WebSocket, and lives in the worker's session map under its id:
 *     <instance>-<W><20 random chars>
 * where W names the owning worker (one base64url character) and the instance prefix lets
 * a load balancer route by sid (deploy/haproxy.cfg). A polling request that the kernel
 * handed to another worker is passed to the owner with SCM_RIGHTS, together with the
 * bytes already read (sio_handoff), before its body is read.
 *
 * Transports. Polling: one parked GET at most (a second one closes the session, as the
 * reference server does), POST bodies of packets separated by 0x1E answered "ok".
 * Packets for the client queue in `pq` and are written to the parked GET at the end of
 * the loop turn. Upgrade: a WebSocket with the sid answers "2probe" with "3probe", any
 * GET meanwhile gets a noop ("6"), "5" switches the transport and flushes the queue.
 *
 * Heartbeat: the server pings every pingInterval and closes the session when the pong does
 * not come within pingTimeout. Until a namespace is connected, the session is closed after
 * CHAT_HANDSHAKE_TIMEOUT (the reference server's connectTimeout).
 *
 * Socket.IO: namespaces "/", "/chat", "/notifications" carry the full chat event set (each
 * connected namespace is one chat socket); CONNECT authenticates with auth.token, else the
 * handshake request's token. Binary packets are refused (the session is closed with a
 * clear reason); in conformance mode they are echoed, as the official test suite expects.
 */
#include "sio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "chat.h"
#include "conn.h"
#include "eio.h"
#include "httpd.h"
#include "log.h"
#include "settings.h"

#define SIO_SID_RANDOM 20
#define HANDOFF_MAX (256 * 1024)

static void session_close(gw_eio_t *e, const char *why, int client_initiated);
static void on_timer(evutil_socket_t fd, short ev, void *arg);
static void handle_eio(gw_eio_t *e, gw_conn_t *via, const char *p, size_t n, int binary);

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static long long ping_interval(void)
{
    return g_cfg.conformance ? 300 : g_cfg.ping_interval;
}

static long long ping_timeout(void)
{
    return g_cfg.conformance ? 200 : g_cfg.ping_timeout;
}

static long long max_payload(void)
{
    return g_cfg.conformance ? 1000000 : g_cfg.polling_max_payload;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void arm(gw_eio_t *e, long long ms)
{
    if (ms < 0) ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(&e->tev, &tv);
}

/* Conformance: a binary packet's header and its attachments, until all have arrived. */
struct eio_bin {
    buf_t head;
    int expect;
    int have;
    gw_frame_t *parts[8];
};

/* Arm the session's timer for the earliest of its deadlines. */
static void rearm(gw_eio_t *e)
{
    if (e->pending_auth) {
        arm(e, 5); /* see sio_connect */
        return;
    }
    int64_t due = e->pong_wait ? e->pong_by_ms : e->ping_at_ms;
    if (!e->connected_any && e->connect_by_ms && e->connect_by_ms < due) due = e->connect_by_ms;
    arm(e, due - wall_ms());
}

/* ---- session ids ---- */

/* The worker index a sid names, -1 when it is not one of this instance's. */
static int sid_worker(const char *sid, size_t n)
{
    size_t il = strlen(g_cfg.instance_id);
    if (n != il + 2 + SIO_SID_RANDOM || memcmp(sid, g_cfg.instance_id, il) != 0 || sid[il] != '-')
        return -1;
    const char *p = strchr(B64URL, sid[il + 1]);
    return p && sid[il + 1] ? (int)(p - B64URL) : -1;
}

static gw_eio_t *session_find(gw_worker_t *w, const char *sid)
{
    map_node_t *n = map_get(&w->sessions, sid);
    return n ? map_entry(n, gw_eio_t, node) : NULL;
}

static gw_eio_t *session_new(gw_worker_t *w, int mode, const char *peer)
{
    gw_eio_t *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->w = w;
    e->mode = (uint8_t)mode;
    e->pq.payload_only = 1;
    snprintf(e->peer, sizeof e->peer, "%s", peer);
    char rnd[SIO_SID_RANDOM + 1];
    gw_random_id(rnd, SIO_SID_RANDOM);
    snprintf(e->sid, sizeof e->sid, "%s-%c%s", g_cfg.instance_id, B64URL[w->index & 63], rnd);
    if (map_put(&w->sessions, &e->node, e->sid) < 0) {
        free(e);
        return NULL;
    }
    evtimer_assign(&e->tev, w->base, on_timer, e);
    int64_t now = wall_ms();
    e->ping_at_ms = now + ping_interval();
    /* A namespace must be connected in time (the reference server's connectTimeout). */
    if (e->mode == EM_SOCKETIO) e->connect_by_ms = now + (g_cfg.conformance ? 1000 : g_cfg.handshake_timeout);
    rearm(e);
    return e;
}

static void bin_free(gw_eio_t *e)
{
    if (!e->bin) return;
    buf_free(&e->bin->head);
    for (int i = 0; i < e->bin->have; i++) frame_unref(e->bin->parts[i]);
    free(e->bin);
    e->bin = NULL;
}

static void session_free(gw_eio_t *e)
{
    event_del(&e->tev);
    free(e->pending_auth);
    if (e->flush_armed) { /* closed after it was queued, in the same turn: unlink it */
        gw_eio_t **pp = &e->w->eio_flush;
        while (*pp && *pp != e) pp = &(*pp)->flush_next;
        if (*pp) *pp = e->flush_next;
    }
    outq_clear(&e->pq);
    bin_free(e);
    free(e->hs_token);
    free(e->origin);
    free(e);
}

/* Closed sessions are freed at the end of the loop turn (never in their own callbacks). */
void sio_free_closed(gw_worker_t *w)
{
    while (w->eio_grave) {
        gw_eio_t *e = w->eio_grave;
        w->eio_grave = e->grave_next;
        session_free(e);
    }
}

/* ---- HTTP helpers ---- */

static void cors_headers(const http_request_t *req, buf_t *h)
{
    const http_header_t *o = http_header_find(req, "Origin");
    if (!o) return;
    buf_append_str(h, "Access-Control-Allow-Origin: ");
    buf_append(h, o->value, o->value_len);
    buf_append_str(h, "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n");
}

static void eio_error(gw_conn_t *c, const http_request_t *req, int status, int code, const char *msg)
{
    buf_t h = BUF_INIT, b = BUF_INIT;
    if (req) cors_headers(req, &h);
    buf_printf(&b, "{\"code\":%d,\"message\":", code);
    jsonw_cstr(&b, msg);
    buf_append_char(&b, '}');
    conn_http_respond(c, status, "application/json", b.data, b.len, buf_cstr(&h),
                      req ? http_keep_alive(req) : 0);
    buf_free(&h);
    buf_free(&b);
}

/* Answer a parked or current GET with bytes (an open packet, queued packets, "6", "1"). */
static void poll_respond(gw_conn_t *c, const char *origin, const char *body, size_t len)
{
    buf_t h = BUF_INIT;
    if (origin) {
        buf_append_str(&h, "Access-Control-Allow-Origin: ");
        buf_append_str(&h, origin);
        buf_append_str(&h, "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n");
    }
    buf_append_str(&h, "Cache-Control: no-store\r\n");
    int parked = c->state == CS_HTTP_PARKED;
    if (parked) c->state = CS_HTTP_HEAD;
    conn_http_respond(c, 200, "text/plain; charset=UTF-8", body, len, buf_cstr(&h), 1);
    buf_free(&h);
    if (parked) conn_http_resume(c);
}

/* ---- sending ---- */

static void flush_poll(gw_eio_t *e)
{
    gw_conn_t *c = e->poll;
    if (!c || !e->pq.count) return;
    e->poll = NULL;
    c->eio = NULL;
    buf_t b = BUF_INIT;
    outq_drain_payloads(&e->pq, &b);
    poll_respond(c, e->origin, b.data, b.len);
    buf_free(&b);
}

/* Answer the parked GETs that have packets now: once per loop turn, however many packets
 * a session got in it (called by the worker's flush, before the connections are written). */
void sio_flush_polls(gw_worker_t *w)
{
    while (w->eio_flush) {
        gw_eio_t *e = w->eio_flush;
        w->eio_flush = e->flush_next;
        e->flush_next = NULL;
        e->flush_armed = 0;
        if (!e->closed) flush_poll(e);
    }
}

void sio_send(gw_eio_t *e, gw_frame_t *f)
{
    if (!f) return;
    if (!e || e->closed) {
        frame_unref(f);
        return;
    }
    if (e->transport == ET_WEBSOCKET && e->ws) {
        conn_send(e->ws, f);
        return;
    }
    if (e->pq.bytes + (f->len - f->hdr) > (uint64_t)g_cfg.max_outbuf || outq_push(&e->pq, f) < 0) {
        frame_unref(f);
        e->w->m->c[MC_SLOW_CONSUMERS]++;
        /* Closing here could run inside a fan-out loop: the heartbeat closes it next. */
        e->pong_wait = 2;
        arm(e, 0);
        return;
    }
    if (e->poll && !e->flush_armed) {
        e->flush_armed = 1;
        e->flush_next = e->w->eio_flush;
        e->w->eio_flush = e;
        gw_want_flush(e->w);
    }
}

static void send_packet(gw_eio_t *e, const char *p, size_t n)
{
    sio_send(e, frame_ws(WS_OP_TEXT, p, n));
}

/* ---- closing ---- */

static void detach_conn(gw_conn_t *c)
{
    if (c) c->eio = NULL;
}

static void session_close(gw_eio_t *e, const char *why, int client_initiated)
{
    if (e->closed) return;
    gw_worker_t *w = e->w;
    e->closed = 1;
    log_debug("eio_close", "peer=%s sid=%s reason=\"%s\"", e->peer, e->sid, why);
    for (int i = 0; i < GW_NSP_COUNT; i++) {
        gw_sock_t *s = e->socks[i];
        if (!s) continue;
        e->socks[i] = NULL;
        log_info("conn_close", "peer=%s user=%s sid=%s proto=socketio nsp=%s reason=\"%s\"", e->peer,
                 s->user ? s->user->id : "-", s->sid, gw_nsp_names[i], why);
        chat_sock_close(s);
    }
    map_del(&w->sessions, &e->node);
    event_del(&e->tev);
    if (e->poll) {
        /* The parked GET ends with a close packet (server) or a noop (client's own close). */
        gw_conn_t *c = e->poll;
        e->poll = NULL;
        c->eio = NULL;
        poll_respond(c, e->origin, client_initiated ? "6" : "1", 1);
    }
    if (e->ws) {
        gw_conn_t *c = e->ws;
        e->ws = NULL;
        detach_conn(c);
        if (!client_initiated) conn_send(c, frame_ws(WS_OP_TEXT, "1", 1));
        conn_ws_close(c, w->draining ? WS_CLOSE_GOING_AWAY : WS_CLOSE_NORMAL, why);
    }
    if (e->probe) {
        gw_conn_t *c = e->probe;
        e->probe = NULL;
        detach_conn(c);
        conn_ws_close(c, WS_CLOSE_NORMAL, why);
    }
    e->grave_next = w->eio_grave;
    w->eio_grave = e;
    gw_want_flush(w);
}

void sio_transport_closed(gw_eio_t *e, gw_conn_t *c)
{
    if (!e) return;
    if (e->poll == c) e->poll = NULL; /* the client gave up a long poll: it will poll again */
    if (e->probe == c) e->probe = NULL;
    if (e->ws == c) {
        e->ws = NULL;
        session_close(e, "transport close", 1);
    }
}

/* ---- heartbeat ---- */

static void on_timer(evutil_socket_t fd, short ev, void *arg)
{
    gw_eio_t *e = arg;
    if (e->closed) return;
    if (e->pending_auth) {
        char *p = e->pending_auth;
        e->pending_auth = NULL;
        send_packet(e, p, strlen(p));
        free(p);
        rearm(e);
        return;
    }
    if (e->pong_wait == 2) {
        session_close(e, "outbound buffer limit", 0);
        return;
    }
    int64_t now = wall_ms();
    if (!e->connected_any && e->connect_by_ms && now >= e->connect_by_ms) {
        session_close(e, "no namespace connected in time", 0);
        return;
    }
    if (e->pong_wait) {
        if (now >= e->pong_by_ms) {
            log_info("ping_timeout", "peer=%s sid=%s", e->peer, e->sid);
            session_close(e, "ping timeout", 0);
            return;
        }
    } else if (now >= e->ping_at_ms) {
        /* Deadlines from the schedule, not from when the timer fired: no drift. */
        e->pong_wait = 1;
        e->pong_by_ms = e->ping_at_ms + ping_timeout();
        send_packet(e, "2", 1);
    }
    rearm(e);
}

/* The session missed its pong deadline (its timer may not have fired yet). */
static int pong_overdue(gw_eio_t *e)
{
    if (e->pong_wait == 1 && wall_ms() >= e->pong_by_ms) {
        session_close(e, "ping timeout", 0);
        return 1;
    }
    return 0;
}


/* ---- Socket.IO ---- */

static int nsp_index(const char *nsp, size_t n)
{
    for (int i = 0; i < GW_NSP_COUNT; i++) {
        if (i == 3 && !g_cfg.conformance) continue;           /* /custom: conformance only */
        if (g_cfg.conformance && (i == 1 || i == 2)) continue; /* the suites know "/" and "/custom" */
        if (strlen(gw_nsp_names[i]) == n && memcmp(gw_nsp_names[i], nsp, n) == 0) return i;
    }
    return -1;
}

static void send_connect_error(gw_eio_t *e, const char *nsp, size_t nl, const char *msg, const char *why)
{
    buf_t b = BUF_INIT;
    if (why) {
        /* {"message": M, "data": {"code", "reason"}}: socket.io-client gives err.data. */
        buf_append_str(&b, "44");
        if (nl > 1) {
            buf_append(&b, nsp, nl);
            buf_append_char(&b, ',');
        }
        buf_append_str(&b, "{\"message\":");
        jsonw_cstr(&b, msg);
        buf_append_str(&b, ",\"data\":{\"code\":\"UNAUTHORIZED\",\"reason\":");
        jsonw_cstr(&b, why);
        buf_append_str(&b, "}}");
    } else {
        sio_encode_connect_error(&b, nsp, nl, msg);
    }
    send_packet(e, b.data, b.len);
    buf_free(&b);
}

static void sio_connect(gw_eio_t *e, const sio_packet_t *p)
{
    gw_worker_t *w = e->w;
    int ns = nsp_index(p->nsp, p->nsp_len);
    if (ns < 0) {
        send_connect_error(e, p->nsp, p->nsp_len, "Invalid namespace", NULL);
        return;
    }
    cJSON *auth = p->data_len ? cJSON_ParseWithLength(p->data, p->data_len) : NULL;
    if (p->data_len && !cJSON_IsObject(auth)) {
        cJSON_Delete(auth);
        session_close(e, "invalid CONNECT payload", 0);
        return;
    }
    if (e->socks[ns]) {
        /* Already connected: confirm again. */
        buf_t b = BUF_INIT;
        sio_encode_connect(&b, p->nsp, p->nsp_len, e->socks[ns]->sid);
        send_packet(e, b.data, b.len);
        buf_free(&b);
        cJSON_Delete(auth);
        return;
    }
    jwt_identity_t id;
    memset(&id, 0, sizeof id);
    if (g_cfg.conformance) {
        snprintf(id.sub, sizeof id.sub, "conformance-%s", e->sid + strlen(e->sid) - 8);
        snprintf(id.username, sizeof id.username, "conformance");
    } else {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(auth, "token");
        const char *tok = cJSON_IsString(t) && *t->valuestring ? t->valuestring : e->hs_token;
        const char *why = "token missing";
        if (!tok || jwtauth_verify(w->auth, tok, strlen(tok), gw_now_ms(w) / 1000, &id, &why) < 0) {
            w->m->c[MC_AUTH_FAILED]++;
            log_info("auth_failed", "peer=%s proto=socketio nsp=%.*s reason=\"%s\"", e->peer,
                     (int)p->nsp_len, p->nsp, why);
            send_connect_error(e, p->nsp, p->nsp_len, tok ? "Invalid token" : "Authentication required", why);
            cJSON_Delete(auth);
            return;
        }
    }
    if (w->draining) {
        send_connect_error(e, p->nsp, p->nsp_len, "Server is draining, reconnect", NULL);
        cJSON_Delete(auth);
        return;
    }
    gw_sock_t *s = chat_sock_open(w, SP_SIO, &id, NULL, e, ns);
    if (!s) {
        send_connect_error(e, p->nsp, p->nsp_len, "Internal error", NULL);
        cJSON_Delete(auth);
        return;
    }
    e->socks[ns] = s;
    e->connected_any = 1;
    buf_t b = BUF_INIT;
    sio_encode_connect(&b, p->nsp, p->nsp_len, s->sid);
    send_packet(e, b.data, b.len);
    log_info("conn_open", "peer=%s user=%s sid=%s proto=socketio nsp=%s transport=%s", e->peer,
             id.sub, s->sid, gw_nsp_names[ns], e->transport == ET_WEBSOCKET ? "websocket" : "polling");
    if (g_cfg.conformance) {
        /* The suites' server emits the handshake auth back. The suite reads one message per
         * await, so a frame sharing a TCP segment with the CONNECT ack would be missed:
         * it leaves a few milliseconds later. */
        buf_reset(&b);
        char *a = auth ? cJSON_PrintUnformatted(auth) : NULL;
        sio_encode_event(&b, p->nsp, p->nsp_len, "auth", a ? a : "{}", a ? strlen(a) : 2);
        free(a);
        free(e->pending_auth);
        e->pending_auth = strdup(buf_cstr(&b));
        rearm(e);
    }
    buf_free(&b);
    cJSON_Delete(auth);
}

/* Conformance mode: the official test suite's echo handlers. */
void sio_conformance_event(gw_sock_t *s, const cJSON *arr, long long ack_id)
{
    const cJSON *ev = cJSON_GetArrayItem(arr, 0);
    const char *nsp = gw_nsp_names[s->nsp];
    buf_t b = BUF_INIT;
    if (strcmp(ev->valuestring, "message") == 0) {
        cJSON *copy = cJSON_Duplicate(arr, 1);
        cJSON_ReplaceItemInArray(copy, 0, cJSON_CreateString("message-back"));
        char *txt = cJSON_PrintUnformatted(copy);
        buf_append(&b, "42", 2);
        if (s->nsp) {
            buf_append_str(&b, nsp);
            buf_append_char(&b, ',');
        }
        buf_append_str(&b, txt);
        free(txt);
        cJSON_Delete(copy);
    } else if (strcmp(ev->valuestring, "message-with-ack") == 0 && ack_id >= 0) {
        cJSON *copy = cJSON_Duplicate(arr, 1);
        cJSON_DeleteItemFromArray(copy, 0);
        char *txt = cJSON_PrintUnformatted(copy);
        /* sio_encode_ack wraps in [..]: strip the array's own brackets. */
        sio_encode_ack(&b, nsp, strlen(nsp), ack_id, txt + 1, strlen(txt) - 2);
        free(txt);
        cJSON_Delete(copy);
    }
    if (b.len) sock_send_frame(s, frame_ws(WS_OP_TEXT, b.data, b.len));
    buf_free(&b);
}

/* Conformance: echo a binary packet and its attachments (message-back / ack). */
static void conformance_binary_done(gw_eio_t *e)
{
    struct eio_bin *bn = e->bin;
    const char *h = buf_cstr(&bn->head);
    buf_t out = BUF_INIT;
    sio_packet_t p;
    if (sio_parse(h, bn->head.len, &p) == 0) {
        /* The header is "5<n>-[nsp,][id][...]": keep attachments, rename or ack. */
        const char *dash = strchr(h, '-');
        buf_append_char(&out, '4');
        if (p.type == SIO_BINARY_EVENT && p.ack_id < 0) {
            buf_append(&out, h, (size_t)(dash - h + 1));
            if (p.nsp_len > 1) {
                buf_append(&out, p.nsp, p.nsp_len);
                buf_append_char(&out, ',');
            }
            cJSON *arr = cJSON_ParseWithLength(p.data, p.data_len);
            cJSON_ReplaceItemInArray(arr, 0, cJSON_CreateString("message-back"));
            char *t = cJSON_PrintUnformatted(arr);
            buf_append_str(&out, t ? t : "[]");
            free(t);
            cJSON_Delete(arr);
        } else {
            buf_append_char(&out, '6');
            buf_append(&out, h + 1, (size_t)(dash - h));
            if (p.nsp_len > 1) {
                buf_append(&out, p.nsp, p.nsp_len);
                buf_append_char(&out, ',');
            }
            buf_printf(&out, "%lld", p.ack_id);
            cJSON *arr = cJSON_ParseWithLength(p.data, p.data_len);
            cJSON_DeleteItemFromArray(arr, 0);
            char *t = cJSON_PrintUnformatted(arr);
            buf_append_str(&out, t ? t : "[]");
            free(t);
            cJSON_Delete(arr);
        }
        send_packet(e, out.data, out.len);
        for (int i = 0; i < bn->have; i++) {
            gw_frame_t *f = bn->parts[i];
            bn->parts[i] = NULL;
            sio_send(e, f);
        }
        bn->have = 0;
    }
    bin_free(e);
    buf_free(&out);
}

static void handle_sio(gw_eio_t *e, const char *d, size_t n)
{
    sio_packet_t p;
    if (sio_parse(d, n, &p) < 0) {
        session_close(e, "malformed Socket.IO packet", 0);
        return;
    }
    switch (p.type) {
    case SIO_CONNECT:
        sio_connect(e, &p);
        return;
    case SIO_DISCONNECT: {
        int ns = nsp_index(p.nsp, p.nsp_len);
        if (ns >= 0 && e->socks[ns]) {
            gw_sock_t *s = e->socks[ns];
            e->socks[ns] = NULL;
            log_info("conn_close", "peer=%s user=%s sid=%s proto=socketio nsp=%s reason=\"client disconnect\"",
                     e->peer, s->user ? s->user->id : "-", s->sid, gw_nsp_names[ns]);
            chat_sock_close(s);
        }
        return;
    }
    case SIO_EVENT: {
        int ns = nsp_index(p.nsp, p.nsp_len);
        gw_sock_t *s = ns >= 0 ? e->socks[ns] : NULL;
        if (!s) return; /* not connected to that namespace: ignored, as the reference does */
        chat_sio_event(s, p.data, p.data_len, p.ack_id);
        return;
    }
    case SIO_ACK:
        return; /* the server never asks for acks */
    case SIO_BINARY_EVENT:
    case SIO_BINARY_ACK:
        if (g_cfg.conformance) {
            const char *q = d + 1;
            int count = atoi(q);
            if (count <= 0 || count > 8) {
                session_close(e, "bad attachment count", 0);
                return;
            }
            bin_free(e);
            e->bin = calloc(1, sizeof *e->bin);
            if (!e->bin || buf_append(&e->bin->head, d, n) < 0) {
                session_close(e, "out of memory", 0);
                return;
            }
            e->bin->expect = count;
            return;
        }
        session_close(e, "binary Socket.IO packets are not supported", 0);
        return;
    default:
        session_close(e, "unexpected Socket.IO packet", 0);
        return;
    }
}

/* ---- Engine.IO packets (from either transport) ---- */

static void handle_eio(gw_eio_t *e, gw_conn_t *via, const char *p, size_t n, int binary)
{
    if (e->closed) return;
    if (binary) {
        /* A binary message (WebSocket binary frame or polling "b" + base64 already decoded
         * by the caller is not supported outside conformance). */
        if (e->mode == EM_ECHO) {
            gw_frame_t *f = via && via->kind == CK_SIO_WS ? frame_ws(WS_OP_BINARY, p, n) : NULL;
            if (!f) { /* polling: echo the "b..." packet text as received */
                send_packet(e, p, n);
            } else {
                sio_send(e, f);
            }
            return;
        }
        if (g_cfg.conformance && e->bin && e->bin->expect > e->bin->have) {
            gw_frame_t *f = via && via->kind == CK_SIO_WS ? frame_ws(WS_OP_BINARY, p, n) : frame_ws(WS_OP_TEXT, p, n);
            e->bin->parts[e->bin->have++] = f;
            if (e->bin->have == e->bin->expect) conformance_binary_done(e);
            return;
        }
        session_close(e, "binary payloads are not supported", 0);
        return;
    }
    eio_packet_t pk;
    if (eio_parse(p, n, &pk) < 0) {
        session_close(e, "malformed Engine.IO packet", 0);
        return;
    }
    if (pk.binary) {
        handle_eio(e, via, p, n, 1);
        return;
    }
    switch (pk.type) {
    case EIO_PING:
        /* The probe of an upgrade. */
        if (via && via == e->probe && pk.len == 5 && memcmp(pk.data, "probe", 5) == 0) {
            conn_send(via, frame_ws(WS_OP_TEXT, "3probe", 6));
            e->upgrading = 1;
            if (e->poll) {
                gw_conn_t *c = e->poll;
                e->poll = NULL;
                c->eio = NULL;
                poll_respond(c, e->origin, "6", 1);
            }
        } else {
            session_close(e, "unexpected ping", 0);
        }
        return;
    case EIO_PONG:
        if (e->pong_wait == 1) {
            e->pong_wait = 0;
            e->ping_at_ms = wall_ms() + ping_interval();
            rearm(e);
        }
        return;
    case EIO_CLOSE:
        session_close(e, "client close", 1);
        return;
    case EIO_UPGRADE:
        if (via && via == e->probe) {
            e->probe = NULL;
            e->ws = via;
            e->transport = ET_WEBSOCKET;
            e->upgrading = 0;
            conn_set_gauge(via, MG_CONN_SIO_WS);
            /* Whatever waited for a poll goes on the WebSocket now. */
            gw_frame_t *f;
            while ((f = outq_take(&e->pq))) conn_send(via, f);
        } else {
            session_close(e, "unexpected upgrade", 0);
        }
        return;
    case EIO_NOOP:
        return;
    case EIO_MESSAGE:
        if (e->mode == EM_ECHO) {
            send_packet(e, p, n);
            return;
        }
        handle_sio(e, pk.data, pk.len);
        return;
    default:
        session_close(e, "unexpected Engine.IO packet", 0);
        return;
    }
}

void sio_ws_packet(gw_eio_t *e, gw_conn_t *c, char *data, size_t len)
{
    handle_eio(e, c, data, len, 0);
}

/* A binary WebSocket frame on a session transport (conformance echo only). */
void sio_ws_binary(gw_eio_t *e, gw_conn_t *c, char *data, size_t len)
{
    handle_eio(e, c, data, len, 1);
}

/* ---- HTTP entry ---- */

typedef struct eio_query {
    int transport; /* -1 invalid */
    char sid[96];
    int has_sid;
    int ok_version;
} eio_query_t;

static void read_query(const http_request_t *req, eio_query_t *q)
{
    char v[32];
    memset(q, 0, sizeof *q);
    q->ok_version = http_query_param(req->query, req->query_len, "EIO", v, sizeof v) == 1 && v[0] == '4';
    int tl = http_query_param(req->query, req->query_len, "transport", v, sizeof v);
    q->transport = tl > 0 && strcmp(v, "polling") == 0 ? ET_POLLING
                   : tl > 0 && strcmp(v, "websocket") == 0 ? ET_WEBSOCKET
                                                            : -1;
    q->has_sid = http_query_param(req->query, req->query_len, "sid", q->sid, sizeof q->sid) > 0;
}

static int is_engine_path(const http_request_t *req)
{
    return g_cfg.conformance && req->path_len >= 9 && memcmp(req->path, "/engine.io", 10 > req->path_len ? req->path_len : 10) == 0;
}

static void remember_handshake(gw_eio_t *e, const http_request_t *req)
{
    char tok[JWT_MAX_TOKEN + 8];
    if (jwtauth_token_from_request(req, tok, sizeof tok) > 0) e->hs_token = strdup(tok);
    const http_header_t *o = http_header_find(req, "Origin");
    if (o) e->origin = strndup(o->value, o->value_len);
}

static void open_packet(gw_eio_t *e, buf_t *b, int upgrades)
{
    eio_encode_open(b, e->sid, upgrades, ping_interval(), ping_timeout(), max_payload());
}

static void polling_handshake(gw_conn_t *c, const http_request_t *req, int mode)
{
    gw_worker_t *w = c->w;
    if (w->draining) {
        eio_error(c, req, 503, 3, "Server is draining");
        return;
    }
    gw_eio_t *e = session_new(w, mode, c->peer);
    if (!e) {
        eio_error(c, req, 500, 3, "Internal error");
        return;
    }
    remember_handshake(e, req);
    buf_t b = BUF_INIT;
    open_packet(e, &b, 1);
    poll_respond(c, e->origin, b.data, b.len);
    buf_free(&b);
}

static void polling_get(gw_conn_t *c, const http_request_t *req, gw_eio_t *e)
{
    if (e->transport == ET_WEBSOCKET) {
        eio_error(c, req, 400, 3, "Bad request");
        return;
    }
    if (e->upgrading) {
        poll_respond(c, e->origin, "6", 1);
        return;
    }
    if (e->poll) {
        /* Two pending polls: the protocol forbids it; close the session like the reference. */
        eio_error(c, req, 400, 3, "Overlapping poll requests");
        session_close(e, "overlapping poll requests", 0);
        return;
    }
    if (e->pq.count) {
        buf_t b = BUF_INIT;
        outq_drain_payloads(&e->pq, &b);
        poll_respond(c, e->origin, b.data, b.len);
        buf_free(&b);
        return;
    }
    /* Park until there is something to send (a ping at worst). */
    e->poll = c;
    c->eio = e;
    c->state = CS_HTTP_PARKED;
    conn_set_gauge(c, MG_CONN_SIO_POLLING);
    event_del(&c->tev);
}

static void polling_post(gw_conn_t *c, const http_request_t *req, gw_eio_t *e, const char *body,
                         size_t len)
{
    if (e->transport == ET_WEBSOCKET) {
        eio_error(c, req, 400, 3, "Bad request");
        return;
    }
    buf_t h = BUF_INIT;
    cors_headers(req, &h);
    int keep = http_keep_alive(req);
    /* Validate every packet before acting on any (a bad payload closes the session). */
    size_t off = 0;
    while (off < len) {
        size_t next, l = eio_next_record(body + off, len - off, &next);
        eio_packet_t pk;
        if (eio_parse(body + off, l, &pk) < 0) {
            conn_http_respond(c, 400, "application/json", "{\"code\":3,\"message\":\"Bad request\"}", 34,
                              buf_cstr(&h), keep);
            buf_free(&h);
            session_close(e, "malformed polling payload", 0);
            return;
        }
        off += next;
    }
    conn_http_respond(c, 200, "text/html", "ok", 2, buf_cstr(&h), keep);
    buf_free(&h);
    off = 0;
    while (off < len && !e->closed) {
        size_t next, l = eio_next_record(body + off, len - off, &next);
        handle_eio(e, c, body + off, l, 0);
        off += next;
    }
}

static void websocket_open(gw_conn_t *c, const http_request_t *req, const eio_query_t *q, int mode)
{
    gw_worker_t *w = c->w;
    const char *key;
    size_t klen;
    char accept[29];
    int st = http_ws_check(req, &key, &klen);
    if (st == 426) {
        conn_http_error(c, 426, CHAT_ERR_VALIDATION, "WebSocket version 13 required",
                        "Sec-WebSocket-Version: 13\r\n", 0);
        return;
    }
    if (st != 0 || ws_accept_key(key, klen, accept) < 0) {
        eio_error(c, req, 400, 3, "Bad request");
        return;
    }
    gw_eio_t *e = NULL;
    int refuse = 0;
    if (q->has_sid) {
        e = session_find(w, q->sid);
        if (!e || e->closed || e->mode != mode) {
            eio_error(c, req, 400, 1, "Session ID unknown");
            return;
        }
        /* Already upgraded or upgrading: like the reference server, accept the WebSocket
         * and close it at once; the session keeps its transport. */
        refuse = e->transport == ET_WEBSOCKET || e->probe != NULL;
    } else if (w->draining) {
        eio_error(c, req, 503, 3, "Server is draining");
        return;
    }
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    conn_send(c, frame_raw(resp, (size_t)n));
    if (c->state == CS_DEAD) return;
    conn_start_ws(c, CK_SIO_WS);
    conn_set_gauge(c, MG_CONN_SIO_WS);
    if (refuse) {
        conn_ws_close(c, WS_CLOSE_POLICY, "session already has a WebSocket");
        return;
    }
    if (e) {
        e->probe = c;
        c->eio = e;
        return;
    }
    if (!(e = session_new(w, mode, c->peer))) {
        conn_ws_close(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    remember_handshake(e, req);
    e->transport = ET_WEBSOCKET;
    e->ws = c;
    c->eio = e;
    buf_t b = BUF_INIT;
    open_packet(e, &b, 0);
    conn_send(c, frame_ws(WS_OP_TEXT, b.data, b.len));
    buf_free(&b);
}

void sio_http(gw_conn_t *c, const http_request_t *req, const char *body, size_t len)
{
    c->w->m->c[MC_HTTP_REQUESTS]++;
    int mode = is_engine_path(req) ? EM_ECHO : EM_SOCKETIO;
    if (http_method_is(req, "OPTIONS")) {
        /* CORS preflight. */
        if (!httpd_origin_ok(req)) {
            conn_http_error(c, 403, CHAT_ERR_FORBIDDEN, "origin not allowed", NULL, http_keep_alive(req));
            return;
        }
        buf_t h = BUF_INIT;
        cors_headers(req, &h);
        buf_append_str(&h, "Access-Control-Allow-Methods: GET, POST\r\n"
                           "Access-Control-Allow-Headers: content-type\r\nAccess-Control-Max-Age: 86400\r\n");
        conn_http_respond(c, 204, NULL, NULL, 0, buf_cstr(&h), http_keep_alive(req));
        buf_free(&h);
        return;
    }
    if (!httpd_origin_ok(req)) {
        eio_error(c, req, 403, 4, "Forbidden: origin not allowed");
        return;
    }
    eio_query_t q;
    read_query(req, &q);
    if (!q.ok_version) {
        eio_error(c, req, 400, 5, "Unsupported protocol version");
        return;
    }
    if (q.transport < 0) {
        eio_error(c, req, 400, 0, "Transport unknown");
        return;
    }
    if (q.transport == ET_WEBSOCKET) {
        if (!http_wants_websocket(req)) {
            eio_error(c, req, 400, 3, "Bad request");
            return;
        }
        websocket_open(c, req, &q, mode);
        return;
    }
    int get = http_method_is(req, "GET"), post = http_method_is(req, "POST");
    if (!q.has_sid) {
        if (!get) {
            eio_error(c, req, 400, 2, "Bad handshake method");
            return;
        }
        polling_handshake(c, req, mode);
        return;
    }
    gw_eio_t *e = session_find(c->w, q.sid);
    if (!e || e->closed || e->mode != mode || pong_overdue(e)) {
        eio_error(c, req, 400, 1, "Session ID unknown");
        return;
    }
    if (get) polling_get(c, req, e);
    else if (post) polling_post(c, req, e, body, len);
    else eio_error(c, req, 400, 2, "Bad request method");
}

/* ---- handing requests to the worker that owns the session ---- */

int sio_handoff(gw_conn_t *c, const http_request_t *req)
{
    gw_worker_t *w = c->w;
    if (w->nworkers < 2 || w->handoff_fd < 0 || !req->query) return 0;
    char sid[96];
    if (http_query_param(req->query, req->query_len, "sid", sid, sizeof sid) <= 0) return 0;
    int owner = sid_worker(sid, strlen(sid));
    if (owner < 0 || owner == w->index || owner >= w->nworkers) return 0;
    if (c->in.len > HANDOFF_MAX - 64) return 0; /* too big to pass: answered here (400) */
    /* [peer 48 bytes][bytes read so far], and the descriptor. */
    char peer[48];
    memset(peer, 0, sizeof peer);
    snprintf(peer, sizeof peer, "%s", c->peer);
    struct iovec iov[2] = {{peer, sizeof peer}, {c->in.data, c->in.len}};
    char ctl[CMSG_SPACE(sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &c->fd, sizeof(int));
    if (sendmsg(w->peer_fds[owner], &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        log_warn("handoff_failed", "peer=%s to=w%d err=\"%s\"", c->peer, owner, strerror(errno));
        return 0;
    }
    /* The owner has its own descriptor now; ours goes away with the connection. */
    w->m->c[MC_HANDOFFS]++;
    conn_close(c, "handed to the session's worker");
    return 1;
}

static void on_handoff(evutil_socket_t fd, short ev, void *arg)
{
    gw_worker_t *w = arg;
    for (int k = 0; k < 32; k++) {
        static char buf[HANDOFF_MAX];
        struct iovec iov = {buf, sizeof buf};
        char ctl[CMSG_SPACE(sizeof(int))];
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) return;
        int cfd = -1;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
                memcpy(&cfd, CMSG_DATA(cm), sizeof(int));
        if (cfd < 0 || n < 48) {
            if (cfd >= 0) close(cfd);
            continue;
        }
        char peer[48];
        memcpy(peer, buf, 48);
        peer[47] = '\0';
        conn_adopt(w, cfd, peer, buf + 48, (size_t)n - 48);
    }
}

void sio_handoff_init(gw_worker_t *w)
{
    event_assign(&w->handoff_ev, w->base, w->handoff_fd, EV_READ | EV_PERSIST, on_handoff, w);
    event_add(&w->handoff_ev, NULL);
}

void sio_handoff_free(gw_worker_t *w)
{
    if (w->handoff_fd >= 0) event_del(&w->handoff_ev);
}

/* ---- worker-wide ---- */

void sio_close_all(gw_worker_t *w, const char *reason)
{
    /* A Socket.IO DISCONNECT would stop socket.io-client from reconnecting ("io server
     * disconnect"); closing the Engine.IO transport makes it reconnect, elsewhere. */
    for (map_node_t *n = map_first(&w->sessions), *next; n; n = next) {
        next = map_next(&w->sessions, n);
        session_close(map_entry(n, gw_eio_t, node), reason, 0);
    }
}

void sio_free_all(gw_worker_t *w)
{
    sio_close_all(w, "worker exit");
    sio_free_closed(w);
}
