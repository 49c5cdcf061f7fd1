#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "chat.h"
#include "httpd.h"
#include "log.h"
#include "settings.h"
#include "eio.h"
#include "sio.h"

#define CONN_IOV_MAX 64

/* ---- output queue ---- */

int outq_push(gw_outq_t *q, gw_frame_t *f)
{
    if (q->count == q->cap) {
        uint32_t ncap = q->cap ? q->cap * 2 : 4;
        gw_frame_t **nq = malloc(ncap * sizeof *nq);
        if (!nq) return -1;
        for (uint32_t i = 0; i < q->count; i++) nq[i] = q->q[(q->head + i) % q->cap];
        free(q->q);
        q->q = nq;
        q->head = 0;
        q->cap = ncap;
    }
    q->q[(q->head + q->count) % q->cap] = f;
    q->count++;
    q->bytes += q->payload_only ? f->len - f->hdr : f->len;
    return 0;
}

static gw_frame_t *outq_pop(gw_outq_t *q)
{
    gw_frame_t *f = q->q[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->off = 0;
    if (q->count == 0) {
        /* An idle connection keeps no queue memory. */
        free(q->q);
        q->q = NULL;
        q->cap = q->head = 0;
    }
    return f;
}

gw_frame_t *outq_take(gw_outq_t *q)
{
    if (!q->count) return NULL;
    gw_frame_t *f = outq_pop(q);
    q->bytes -= q->payload_only ? f->len - f->hdr : f->len;
    return f;
}

void outq_clear(gw_outq_t *q)
{
    while (q->count) frame_unref(outq_pop(q));
    q->bytes = 0;
    q->off = 0;
}

void outq_drain_payloads(gw_outq_t *q, buf_t *b)
{
    int first = 1;
    while (q->count) {
        gw_frame_t *f = outq_pop(q);
        if (!first) buf_append_char(b, EIO_RECORD_SEP);
        buf_append(b, f->data + f->hdr, f->len - f->hdr);
        first = 0;
        frame_unref(f);
    }
    q->bytes = 0;
}

/* ---- lifecycle ---- */

static void on_read(evutil_socket_t fd, short ev, void *arg);
static void on_io(evutil_socket_t fd, short ev, void *arg);
static void on_timer(evutil_socket_t fd, short ev, void *arg);

void conn_arm_timer(gw_conn_t *c, const struct timeval *tv)
{
    event_add(&c->tev, tv);
}

void conn_set_gauge(gw_conn_t *c, int gauge)
{
    if (c->flags & CF_COUNTED) c->w->m->g[c->gauge]--;
    c->gauge = (uint8_t)gauge;
    c->w->m->g[gauge]++;
    c->flags |= CF_COUNTED;
}

static gw_conn_t *conn_new(gw_worker_t *w, int fd, const char *peer)
{
    gw_conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->w = w;
    c->fd = fd;
    c->state = CS_HTTP_HEAD;
    c->kind = CK_HTTP;
    c->opened_ms = gw_now_ms(w);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    event_assign(&c->ev, w->base, fd, EV_READ | EV_PERSIST, on_io, c);
    evtimer_assign(&c->tev, w->base, on_timer, c);
    event_add(&c->ev, NULL);
    conn_arm_timer(c, w->tv_handshake);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    w->m->c[MC_CONN_OPENED]++;
    conn_set_gauge(c, MG_CONN_HTTP);
    return c;
}

static void format_peer(const struct sockaddr *sa, char *out, size_t outsz)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
        snprintf(out, outsz, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
        snprintf(out, outsz, "[%s]:%d", ip, port);
    } else {
        snprintf(out, outsz, "unix");
    }
}

void conn_accept(gw_worker_t *w, int fd, const struct sockaddr *sa, socklen_t salen)
{
    char peer[48];
    format_peer(sa, peer, sizeof peer);
    if (w->nconns >= (uint32_t)g_cfg.max_connections) {
        log_warn("conn_refused", "peer=%s reason=\"connection limit %lld reached\"", peer,
                 g_cfg.max_connections);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!conn_new(w, fd, peer)) {
        log_error("conn_refused", "peer=%s reason=\"out of memory\"", peer);
        close(fd);
    }
}

void conn_adopt(gw_worker_t *w, int fd, const char *peer, const void *data, size_t len)
{
    gw_conn_t *c = conn_new(w, fd, peer);
    if (!c) {
        close(fd);
        return;
    }
    if (len && buf_append(&c->in, data, len) < 0) {
        conn_close(c, "out of memory");
        return;
    }
    httpd_process(c);
}

static void detach(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    event_del(&c->ev);
    event_del(&c->tev);
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    w->nconns--;
}

void conn_close(gw_conn_t *c, const char *why)
{
    if (c->state == CS_DEAD) return;
    gw_worker_t *w = c->w;
    int was_ws = c->kind != CK_HTTP;
    c->state = CS_DEAD;
    detach(c);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    w->m->g[MG_OUTBUF_BYTES] -= (int64_t)c->out.bytes;
    outq_clear(&c->out);
    if (c->flags & CF_COUNTED) w->m->g[c->gauge]--;
    c->flags &= (uint8_t)~CF_COUNTED;
    w->m->c[MC_CONN_CLOSED]++;
    if (c->sock) {
        log_info("conn_close", "peer=%s user=%s sid=%s proto=websocket reason=\"%s\"", c->peer,
                 c->sock->user ? c->sock->user->id : "-", c->sock->sid, why);
        chat_sock_close(c->sock);
        c->sock = NULL;
    } else if (was_ws || c->eio) {
        log_debug("conn_close", "peer=%s reason=\"%s\"", c->peer, why);
    }
    if (c->eio) {
        sio_transport_closed(c->eio, c);
        c->eio = NULL;
    }
    ws_reader_free(&c->ws);
    buf_free(&c->in);
    /* Free at the end of the loop turn, never inside a callback of this connection. */
    c->grave_next = w->grave;
    w->grave = c;
    gw_want_flush(w);
}

void conn_close_all(gw_worker_t *w, uint16_t code, const char *reason)
{
    for (gw_conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CS_WS) conn_ws_close(c, code, reason);
    }
}

/* Begin the end: write what is queued, shut the write side, wait for the peer's FIN. */
static void start_linger(gw_conn_t *c)
{
    c->state = CS_LINGER;
    shutdown(c->fd, SHUT_WR);
    conn_arm_timer(c, c->w->tv_linger);
}

/* ---- writing ---- */

/* One event per connection for both directions (a struct event is 128 bytes, and most
 * connections are idle): writability is asked for only while the socket buffer is full,
 * which is rare, by re-assigning the event with EV_WRITE added or removed. */
static void want_write(gw_conn_t *c, int on)
{
    if (!!(c->flags & CF_WANT_WRITE) == !!on) return;
    if (on) c->flags |= CF_WANT_WRITE;
    else c->flags &= (uint8_t)~CF_WANT_WRITE;
    event_del(&c->ev);
    event_assign(&c->ev, c->w->base, c->fd, (short)(EV_READ | EV_PERSIST | (on ? EV_WRITE : 0)), on_io, c);
    event_add(&c->ev, NULL);
}

static void mark_dirty(gw_conn_t *c)
{
    if (!(c->flags & CF_DIRTY) && !(c->flags & CF_WANT_WRITE)) {
        gw_worker_t *w = c->w;
        c->flags |= CF_DIRTY;
        c->dirty_next = NULL;
        if (w->dirty) w->dirty_tail->dirty_next = c;
        else w->dirty = c;
        w->dirty_tail = c;
        gw_want_flush(w);
    }
}

/* Over the cap (or out of memory): the connection is closed by the flush at the end of
 * this loop turn, not here, because conn_send runs inside fan-out loops over room members
 * that closing would modify. */
static void doom(gw_conn_t *c, size_t frame)
{
    log_debug("outbuf_full", "peer=%s queued=%llu frame=%zu", c->peer, (unsigned long long)c->out.bytes, frame);
    want_write(c, 0);
    c->flags |= CF_KILL;
    mark_dirty(c);
}

int conn_send(gw_conn_t *c, gw_frame_t *f)
{
    if (!f) return -1;
    if (c->state == CS_DEAD || c->state == CS_LINGER || (c->flags & CF_KILL)) {
        frame_unref(f);
        return -1;
    }
    if (c->out.bytes + f->len > (uint64_t)g_cfg.max_outbuf || outq_push(&c->out, f) < 0) {
        size_t fl = f->len;
        frame_unref(f);
        doom(c, fl);
        return -1;
    }
    c->w->m->g[MG_OUTBUF_BYTES] += f->len;
    mark_dirty(c);
    return 0;
}

int conn_send_text(gw_conn_t *c, const char *p, size_t n)
{
    return conn_send(c, frame_ws(WS_OP_TEXT, p, n));
}

/* Write as much as the socket takes; returns 0, or -1 when the connection was closed. */
static int conn_write(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    while (c->out.count) {
        struct iovec iov[CONN_IOV_MAX];
        int n = 0;
        size_t want = 0;
        for (uint32_t i = 0; i < c->out.count && n < CONN_IOV_MAX; i++) {
            gw_frame_t *f = c->out.q[(c->out.head + i) % c->out.cap];
            size_t off = i == 0 ? c->out.off : 0;
            iov[n].iov_base = f->data + off;
            iov[n].iov_len = f->len - off;
            want += iov[n].iov_len;
            n++;
        }
        ssize_t r = writev(c->fd, iov, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want_write(c, 1);
                return 0;
            }
            log_info("conn_write_error", "peer=%s err=\"%s\"", c->peer, strerror(errno));
            conn_close(c, "write error");
            return -1;
        }
        w->m->c[MC_BYTES_OUT] += (uint64_t)r;
        w->m->g[MG_OUTBUF_BYTES] -= r;
        c->out.bytes -= (uint64_t)r;
        size_t left = (size_t)r;
        while (left && c->out.count) {
            gw_frame_t *f = c->out.q[c->out.head];
            size_t rest = f->len - c->out.off;
            if (left >= rest) {
                left -= rest;
                frame_unref(outq_pop(&c->out));
            } else {
                c->out.off += (uint32_t)left;
                left = 0;
            }
        }
        if ((size_t)r < want) {
            want_write(c, 1);
            return 0;
        }
    }
    want_write(c, 0);
    if (c->state == CS_CLOSING) start_linger(c);
    return 0;
}

static void on_io(evutil_socket_t fd, short ev, void *arg)
{
    gw_conn_t *c = arg;
    if ((ev & EV_WRITE) && (conn_write(c) < 0 || c->state == CS_DEAD)) return;
    if (ev & EV_READ) on_read(fd, ev, arg);
}

void conn_flush_all(gw_worker_t *w)
{
    /* New connections may be marked dirty while flushing (a close cascades): loop. */
    while (w->dirty) {
        gw_conn_t *list = w->dirty;
        w->dirty = w->dirty_tail = NULL;
        while (list) {
            gw_conn_t *c = list;
            list = c->dirty_next;
            c->dirty_next = NULL;
            c->flags &= (uint8_t)~CF_DIRTY;
            if (c->state == CS_DEAD) continue;
            if (c->flags & CF_KILL) {
                c->w->m->c[MC_SLOW_CONSUMERS]++;
                log_warn("slow_consumer", "peer=%s user=%s queued=%llu limit=%lld", c->peer,
                         c->sock && c->sock->user ? c->sock->user->id : "-",
                         (unsigned long long)c->out.bytes, g_cfg.max_outbuf);
                conn_close(c, "outbound buffer limit");
            } else if (!(c->flags & CF_WANT_WRITE)) {
                conn_write(c);
            }
        }
    }
    while (w->grave) {
        gw_conn_t *c = w->grave;
        w->grave = c->grave_next;
        if (c->refs == 0) free(c); /* else the last conn_unref frees it */
    }
}

void conn_ref(gw_conn_t *c)
{
    c->refs++;
}

void conn_unref(gw_conn_t *c)
{
    if (--c->refs == 0 && c->state == CS_DEAD) {
        /* Still on the grave list? Then the flush will free it. */
        for (gw_conn_t *g = c->w->grave; g; g = g->grave_next)
            if (g == c) return;
        free(c);
    }
}

/* ---- WebSocket ---- */

void conn_ws_close(gw_conn_t *c, uint16_t code, const char *reason)
{
    if (c->state != CS_WS && c->state != CS_HTTP_PARKED) return;
    uint8_t p[WS_MAX_CONTROL];
    size_t n = ws_close_payload(p, code, reason);
    c->close_code = code;
    conn_send(c, frame_ws(WS_OP_CLOSE, p, n));
    if (c->state == CS_DEAD) return;
    c->state = CS_CLOSING;
    conn_arm_timer(c, c->w->tv_linger);
    if (c->sock) {
        log_info("conn_closing", "peer=%s user=%s code=%u reason=\"%s\"", c->peer,
                 c->sock->user ? c->sock->user->id : "-", code, reason ? reason : "");
        chat_sock_close(c->sock);
        c->sock = NULL;
    }
    if (c->eio) {
        sio_transport_closed(c->eio, c);
        c->eio = NULL;
    }
}

static int on_ws_message(void *ud, int op, uint8_t *data, size_t len)
{
    gw_conn_t *c = ud;
    if (c->kind == CK_SIO_WS) {
        if (!c->eio) return 1;
        if (op != WS_OP_TEXT) sio_ws_binary(c->eio, c, (char *)data, len);
        else sio_ws_packet(c->eio, c, (char *)data, len);
    } else if (g_cfg.echo) {
        conn_send(c, frame_ws(op, data, len));
    } else if (op != WS_OP_TEXT) {
        conn_ws_close(c, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
    } else if (c->sock) {
        chat_raw_message(c->sock, (const char *)data, len);
    }
    return c->state != CS_WS;
}

static int on_ws_control(void *ud, int op, uint8_t *data, size_t len)
{
    gw_conn_t *c = ud;
    if (op == WS_OP_PING) {
        conn_send(c, frame_ws(WS_OP_PONG, data, len));
    } else if (op == WS_OP_CLOSE) {
        /* Echo the peer's code (RFC 6455 5.5.1), then close once it is written. */
        uint16_t code = len >= 2 ? (uint16_t)((data[0] << 8) | data[1]) : 0;
        uint8_t p[WS_MAX_CONTROL];
        size_t n = ws_close_payload(p, code, NULL);
        conn_send(c, frame_ws(WS_OP_CLOSE, p, n));
        if (c->state == CS_DEAD) return 1;
        if (c->sock) {
            log_info("conn_close", "peer=%s user=%s sid=%s proto=websocket reason=\"client close %u\"",
                     c->peer, c->sock->user ? c->sock->user->id : "-", c->sock->sid, code);
            chat_sock_close(c->sock);
            c->sock = NULL;
        }
        if (c->eio) {
            sio_transport_closed(c->eio, c);
            c->eio = NULL;
        }
        c->state = CS_CLOSING;
        conn_arm_timer(c, c->w->tv_linger);
    }
    return c->state != CS_WS;
}

static const ws_reader_cb_t ws_cbs = {on_ws_message, on_ws_control};

static void ws_feed(gw_conn_t *c, uint8_t *data, size_t n)
{
    if (c->flags & CF_PONG_WAIT) {
        c->flags &= (uint8_t)~CF_PONG_WAIT;
        if (c->kind == CK_RAW_WS) conn_arm_timer(c, c->w->tv_ping);
    }
    int rc = ws_reader_feed(&c->ws, data, n, &ws_cbs, c);
    if (rc == WS_ERR_PROTOCOL) {
        log_info("ws_protocol_error", "peer=%s code=%u err=\"%s\"", c->peer, c->ws.close_code,
                 c->ws.error);
        conn_ws_close(c, c->ws.close_code, c->ws.error);
    } else if (rc == WS_ERR_NOMEM) {
        conn_close(c, "out of memory");
    }
}

void conn_start_ws(gw_conn_t *c, int kind)
{
    c->state = CS_WS;
    c->kind = (uint8_t)kind;
    ws_reader_init(&c->ws, WS_ROLE_SERVER, (uint64_t)g_cfg.max_frame_bytes,
                   (uint64_t)g_cfg.max_message_bytes);
    if (kind == CK_RAW_WS) conn_arm_timer(c, c->w->tv_ping);
    else event_del(&c->tev); /* Engine.IO sessions run their own ping timer */
}

/* ---- reading ---- */

static void on_read(evutil_socket_t fd, short ev, void *arg)
{
    gw_conn_t *c = arg;
    gw_worker_t *w = c->w;
    ssize_t n = recv(fd, w->rbuf, w->rbuf_size, 0);
    if (n == 0) {
        conn_close(c, c->state == CS_LINGER ? "closed" : "peer closed the connection");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        log_info("conn_read_error", "peer=%s err=\"%s\"", c->peer, strerror(errno));
        conn_close(c, "read error");
        return;
    }
    w->m->c[MC_BYTES_IN] += (uint64_t)n;
    switch (c->state) {
    case CS_WS:
        ws_feed(c, w->rbuf, (size_t)n);
        break;
    case CS_HTTP_HEAD:
    case CS_HTTP_BODY:
    case CS_HTTP_PARKED:
        if (c->in.len + (size_t)n > (size_t)(g_cfg.max_header_bytes + g_cfg.polling_max_payload) + 4096) {
            conn_http_error(c, 413, CHAT_ERR_PAYLOAD_TOO_LARGE, "request too large", NULL, 0);
            return;
        }
        if (buf_append(&c->in, w->rbuf, (size_t)n) < 0) {
            conn_close(c, "out of memory");
            return;
        }
        if (c->state != CS_HTTP_PARKED) httpd_process(c);
        break;
    default:
        break; /* closing: discard until the peer's FIN */
    }
}

static void on_timer(evutil_socket_t fd, short ev, void *arg)
{
    gw_conn_t *c = arg;
    switch (c->state) {
    case CS_HTTP_HEAD:
    case CS_HTTP_BODY:
        conn_close(c, c->in.len ? "request timeout" : "idle timeout");
        break;
    case CS_WS:
        if (c->kind != CK_RAW_WS) break;
        if (c->flags & CF_PONG_WAIT) {
            log_info("ping_timeout", "peer=%s user=%s", c->peer,
                     c->sock && c->sock->user ? c->sock->user->id : "-");
            conn_close(c, "ping timeout");
            break;
        }
        c->flags |= CF_PONG_WAIT;
        conn_send(c, frame_ws(WS_OP_PING, NULL, 0));
        conn_arm_timer(c, c->w->tv_pong);
        break;
    default:
        conn_close(c, "close timeout");
        break;
    }
}

/* ---- HTTP replies ---- */

void conn_http_respond(gw_conn_t *c, int status, const char *ctype, const char *body, size_t len,
                       const char *extra, int keep_alive)
{
    buf_t b = BUF_INIT;
    http_response_head(&b, status, ctype, len, extra, keep_alive);
    if (len) buf_append(&b, body, len);
    conn_send(c, frame_raw(b.data, b.len));
    buf_free(&b);
    if (!keep_alive) conn_end_after_write(c);
}

void conn_end_after_write(gw_conn_t *c)
{
    if (c->state == CS_DEAD || c->state == CS_LINGER || c->state == CS_CLOSING) return;
    c->state = CS_CLOSING;
    conn_arm_timer(c, c->w->tv_linger);
    if (c->out.count == 0) start_linger(c);
}

void conn_http_error(gw_conn_t *c, int status, chat_err_t code, const char *message,
                     const char *extra, int keep_alive)
{
    buf_t b = BUF_INIT;
    env_error_data(&b, code, message);
    conn_http_respond(c, status, "application/json", b.data, b.len, extra, keep_alive);
    buf_free(&b);
}

void conn_http_resume(gw_conn_t *c)
{
    if (c->state != CS_HTTP_PARKED && c->state != CS_HTTP_HEAD) return;
    c->state = CS_HTTP_HEAD;
    c->eio = NULL;
    conn_set_gauge(c, MG_CONN_HTTP);
    conn_arm_timer(c, c->w->tv_handshake);
    if (c->in.len) httpd_process(c);
}

/* Called by httpd after a request was answered: drop it from the input, and hand any bytes
 * that followed an upgrade to the frame reader. */
void conn_request_done(gw_conn_t *c, size_t consumed)
{
    if (c->state == CS_DEAD) return;
    buf_consume(&c->in, consumed);
    if (c->state == CS_WS) {
        if (c->in.len) {
            buf_t rest = c->in;
            c->in = (buf_t)BUF_INIT;
            ws_feed(c, (uint8_t *)rest.data, rest.len);
            buf_free(&rest);
        } else {
            buf_free(&c->in);
        }
    } else if (c->in.len == 0) {
        buf_free(&c->in);
    }
}
