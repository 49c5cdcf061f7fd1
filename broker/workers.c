/*
 * The broker's side of the worker connections: a unix-socket server speaking brkproto.
 * Frames are dispatched through a table {type, handler}; brk_parse has already checked each
 * frame's field count.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "brkproto.h"
#include "broker.h"
#include "log.h"

static void on_read(evutil_socket_t fd, short ev, void *arg);
static void on_write(evutil_socket_t fd, short ev, void *arg);

static void worker_free(brk_worker_t *w)
{
    broker_t *b = w->b;
    presence_worker_gone(b, w);
    /* Drop its interest in every topic. */
    for (map_node_t *n = map_first(&b->topics), *next; n; n = next) {
        next = map_next(&b->topics, n);
        brk_topic_t *t = map_entry(n, brk_topic_t, node);
        if (t->mask[w->slot / 64] & (1ull << (w->slot % 64))) topic_remove(b, w, t->name);
    }
    event_del(&w->rev);
    event_del(&w->wev);
    close(w->fd);
    b->slots[w->slot] = NULL;
    for (brk_worker_t **pp = &b->workers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    buf_free(&w->in);
    buf_free(&w->out);
    map_free(&w->users);
    free(w);
}

/* Workers are never freed where they fail (often deep inside a fan-out loop over the
 * worker list): they are marked and freed by the reap event at a safe point. */
static void drop(brk_worker_t *w, const char *why)
{
    if (w->doomed) return;
    log_info("worker_disconnected", "index=%d pid=%d reason=\"%s\"", w->index, w->pid, why);
    w->doomed = 1;
    event_del(&w->rev);
    event_del(&w->wev);
    event_active(&w->b->reap_ev, EV_TIMEOUT, 1);
}

void workers_reap(broker_t *b)
{
    for (brk_worker_t *w = b->workers, *next; w; w = next) {
        next = w->next;
        if (w->doomed) {
            worker_free(w);
            next = b->workers; /* freeing may have emitted events: start over */
        }
    }
}

static void on_reap(evutil_socket_t fd, short ev, void *arg)
{
    workers_reap(arg);
}

/* Returns -1 when the worker is being dropped. */
static int flush_out(brk_worker_t *w)
{
    if (w->doomed) return -1;
    while (w->out.len) {
        ssize_t n = send(w->fd, w->out.data, w->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(&w->wev, NULL);
                return 0;
            }
            drop(w, strerror(errno));
            return -1;
        }
        buf_consume(&w->out, (size_t)n);
    }
    event_del(&w->wev);
    if (w->out.cap > (1u << 20)) buf_free(&w->out);
    return 0;
}

static void on_write(evutil_socket_t fd, short ev, void *arg)
{
    flush_out(arg);
}

/* Queue a frame; the write happens at once if the socket takes it. A worker that stops
 * reading (stopped, wedged) is dropped at BRK_WORKER_MAX_OUTBUF: it reconnects and resyncs. */
static void queued(brk_worker_t *w)
{
    if (w->out.len > BRK_WORKER_MAX_OUTBUF) {
        drop(w, "worker is not reading (outbound limit)");
        return;
    }
    if (!event_pending(&w->wev, EV_WRITE, NULL)) flush_out(w);
}

void workers_kick(brk_worker_t *w)
{
    queued(w);
}

void workers_deliver(broker_t *b, const char *topic, const char *payload, size_t len,
                     brk_worker_t *except)
{
    int all = strcmp(topic, "all") == 0;
    brk_topic_t *t = all ? NULL : topic_find(b, topic);
    if (!all && !t) return;
    for (brk_worker_t *w = b->workers, *next; w; w = next) {
        next = w->next;
        if (w == except || !w->hello || w->doomed) continue;
        if (!all && !(t->mask[w->slot / 64] & (1ull << (w->slot % 64)))) continue;
        brk_encode2(&w->out, BRK_MSG, topic, strlen(topic), payload, len);
        queued(w);
    }
}

static void status_one(broker_t *b, brk_worker_t *w)
{
    char st[32];
    int n = b->redis.up ? snprintf(st, sizeof st, "up %.3f", b->redis.last_ping_ms)
                        : snprintf(st, sizeof st, "down");
    brk_encode1(&w->out, BRK_STATUS, st, (size_t)n);
    queued(w);
}

void workers_status(broker_t *b, brk_worker_t *only)
{
    if (only) {
        status_one(b, only);
        return;
    }
    for (brk_worker_t *w = b->workers, *next; w; w = next) {
        next = w->next;
        if (w->hello && !w->doomed) status_one(b, w);
    }
}

/* ---- frame handlers ---- */

static void copy_field(const brk_field_t *f, char *out, size_t outsz)
{
    size_t l = f->len < outsz - 1 ? f->len : outsz - 1;
    memcpy(out, f->p, l);
    out[l] = '\0';
}

static int h_hello(broker_t *b, brk_worker_t *w, const brk_frame_t *fr)
{
    char tmp[32];
    copy_field(&fr->f[0], tmp, sizeof tmp);
    w->index = atoi(tmp);
    copy_field(&fr->f[1], tmp, sizeof tmp);
    w->pid = atoi(tmp);
    w->hello = 1;
    log_info("worker_connected", "index=%d pid=%d slot=%d", w->index, w->pid, w->slot);
    workers_status(b, w);
    return 0;
}

static int h_sub(broker_t *b, brk_worker_t *w, const brk_frame_t *fr)
{
    char topic[200];
    if (fr->f[0].len >= sizeof topic || fr->f[0].len == 0) return -1;
    copy_field(&fr->f[0], topic, sizeof topic);
    if (fr->type == BRK_SUB) topic_add(b, w, topic);
    else topic_remove(b, w, topic);
    return 0;
}

static int h_pub(broker_t *b, brk_worker_t *w, const brk_frame_t *fr)
{
    char topic[200];
    if (fr->f[0].len >= sizeof topic || fr->f[0].len == 0) return -1;
    copy_field(&fr->f[0], topic, sizeof topic);
    workers_deliver(b, topic, fr->f[1].p, fr->f[1].len, w);
    redis_publish(b, topic, fr->f[1].p, fr->f[1].len);
    return 0;
}

static int h_conn_up(broker_t *b, brk_worker_t *w, const brk_frame_t *fr)
{
    char uid[128], name[256];
    if (fr->f[0].len == 0 || fr->f[0].len >= sizeof uid) return -1;
    copy_field(&fr->f[0], uid, sizeof uid);
    copy_field(&fr->f[1], name, sizeof name);
    presence_conn_up(b, w, uid, name);
    return 0;
}

static int h_conn_down(broker_t *b, brk_worker_t *w, const brk_frame_t *fr)
{
    char uid[128];
    if (fr->f[0].len == 0 || fr->f[0].len >= sizeof uid) return -1;
    copy_field(&fr->f[0], uid, sizeof uid);
    char *rooms = strndup(fr->f[1].p, fr->f[1].len);
    presence_conn_down(b, w, uid, rooms ? rooms : "");
    free(rooms);
    return 0;
}

static int h_online(broker_t *b, brk_worker_t *w, const brk_frame_t *fr)
{
    presence_online(b, w, fr->f[0].p, fr->f[0].len);
    return 0;
}

static const struct {
    int type;
    int (*fn)(broker_t *b, brk_worker_t *w, const brk_frame_t *fr);
} handlers[] = {
    {BRK_HELLO, h_hello},       {BRK_SUB, h_sub},           {BRK_UNSUB, h_sub},
    {BRK_PUB, h_pub},           {BRK_CONN_UP, h_conn_up},   {BRK_CONN_DOWN, h_conn_down},
    {BRK_ONLINE_REQ, h_online},
};

static void on_read(evutil_socket_t fd, short ev, void *arg)
{
    brk_worker_t *w = arg;
    broker_t *b = w->b;
    char tmp[65536];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n == 0) {
        drop(w, "closed");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) drop(w, strerror(errno));
        return;
    }
    if (buf_append(&w->in, tmp, (size_t)n) < 0) {
        drop(w, "out of memory");
        return;
    }
    size_t off = 0;
    while (!w->doomed) {
        brk_frame_t fr;
        long r = brk_parse((const uint8_t *)w->in.data + off, w->in.len - off, &fr);
        if (r == 0) break;
        int rc = -1;
        if (r > 0) {
            for (size_t i = 0; i < sizeof handlers / sizeof *handlers; i++)
                if (handlers[i].type == fr.type) {
                    rc = handlers[i].fn(b, w, &fr);
                    break;
                }
        }
        if (w->doomed) return;
        if (rc < 0) {
            log_warn("worker_protocol_error", "index=%d pid=%d type=%s", w->index, w->pid,
                     r > 0 ? brk_type_name(fr.type) : "?");
            drop(w, "protocol error");
            return;
        }
        off += (size_t)r;
    }
    buf_consume(&w->in, off);
    if (w->in.len == 0 && w->in.cap > 65536) buf_free(&w->in);
}

static void on_accept(evutil_socket_t fd, short ev, void *arg)
{
    broker_t *b = arg;
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept_failed", "err=\"%s\"", strerror(errno));
            return;
        }
        int slot = -1;
        for (int i = 0; i < BRK_MAX_WORKERS && slot < 0; i++)
            if (!b->slots[i]) slot = i;
        brk_worker_t *w = slot >= 0 ? calloc(1, sizeof *w) : NULL;
        if (!w) {
            log_error("worker_refused", "reason=\"%s\"", slot < 0 ? "too many workers" : "out of memory");
            close(c);
            continue;
        }
        w->b = b;
        w->fd = c;
        w->slot = slot;
        w->index = -1;
        w->gen = ++b->next_gen;
        b->slots[slot] = w;
        event_assign(&w->rev, b->base, c, EV_READ | EV_PERSIST, on_read, w);
        event_assign(&w->wev, b->base, c, EV_WRITE | EV_PERSIST, on_write, w);
        event_add(&w->rev, NULL);
        w->next = b->workers;
        b->workers = w;
    }
}

int workers_listen(broker_t *b)
{
    const char *path = g_bcfg.broker_socket;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        log_error("broker_listen_failed", "socket=%s err=\"path too long\"", path);
        return -1;
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("broker_listen_failed", "err=\"%s\"", strerror(errno));
        return -1;
    }
    unlink(path); /* a previous broker's socket: we are its replacement */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || listen(fd, 256) < 0) {
        log_error("broker_listen_failed", "socket=%s err=\"%s\"", path, strerror(errno));
        close(fd);
        return -1;
    }
    b->listen_fd = fd;
    event_assign(&b->reap_ev, b->base, -1, 0, on_reap, b);
    event_assign(&b->lev, b->base, fd, EV_READ | EV_PERSIST, on_accept, b);
    event_add(&b->lev, NULL);
    return 0;
}

void workers_close_all(broker_t *b)
{
    for (brk_worker_t *w = b->workers; w; w = w->next) flush_out(w);
    while (b->workers) worker_free(b->workers);
    event_del(&b->reap_ev);
    if (b->listen_fd >= 0) {
        event_del(&b->lev);
        close(b->listen_fd);
    }
}
