#include "bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "brkproto.h"
#include "chat.h"
#include "log.h"

typedef struct bus_req {
    struct bus_req *next;
    uint32_t id;
    int64_t sent_ms;
    bus_online_cb cb;
    void *arg;
} bus_req_t;

struct gw_bus {
    gw_worker_t *w;
    char *path;
    int fd;
    int connected;
    int redis_up;
    struct event rev, wev, retry_ev;
    buf_t out;
    buf_t in;
    bus_req_t *reqs;
    uint32_t next_req;
    int64_t down_since_ms;
    int dirty;
};

static void bus_connect(gw_bus_t *b);

int bus_clustered(const gw_bus_t *b)
{
    return b->path != NULL;
}

int bus_broker_up(const gw_bus_t *b)
{
    return !b->path || b->connected;
}

int bus_redis_up(const gw_bus_t *b)
{
    return !b->path || (b->connected && b->redis_up);
}

int bus_can_publish(const gw_bus_t *b)
{
    return bus_redis_up(b);
}

static void fail_requests(gw_bus_t *b, int only_expired)
{
    int64_t now = gw_now_ms(b->w);
    bus_req_t **pp = &b->reqs;
    while (*pp) {
        bus_req_t *r = *pp;
        if (!only_expired || now - r->sent_ms > BUS_REQUEST_TIMEOUT_MS) {
            *pp = r->next;
            r->cb(r->arg, NULL, 0);
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

void bus_tick(gw_bus_t *b)
{
    fail_requests(b, 1);
}

static void set_status(gw_bus_t *b, int connected, int redis_up)
{
    int was = bus_can_publish(b);
    gw_metrics_slot_t *m = b->w->m;
    m->g[MG_BROKER_UP] = connected;
    m->g[MG_REDIS_UP] = connected && redis_up;
    if (connected && !b->connected)
        log_info("broker_connected", "socket=%s", b->path);
    else if (!connected && b->connected)
        log_warn("broker_disconnected", "socket=%s", b->path);
    b->connected = connected;
    b->redis_up = redis_up;
    int now = bus_can_publish(b);
    if (!now && was) b->down_since_ms = gw_now_ms(b->w);
    if (now != was) chat_bus_status(b->w, now);
}

static void disconnect(gw_bus_t *b, const char *why)
{
    if (b->fd >= 0) {
        event_del(&b->rev);
        event_del(&b->wev);
        close(b->fd);
        b->fd = -1;
        if (b->connected)
            log_warn("broker_link_lost", "socket=%s reason=\"%s\"", b->path, why);
    }
    buf_free(&b->out);
    buf_free(&b->in);
    set_status(b, 0, 0);
    fail_requests(b, 0);
    struct timeval tv = {0, BUS_RETRY_MS * 1000};
    evtimer_add(&b->retry_ev, &tv);
}

static void flush_out(gw_bus_t *b)
{
    while (b->out.len) {
        ssize_t n = send(b->fd, b->out.data, b->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(&b->wev, NULL);
                return;
            }
            disconnect(b, strerror(errno));
            return;
        }
        buf_consume(&b->out, (size_t)n);
    }
    event_del(&b->wev);
    if (b->out.cap > (1u << 20)) buf_free(&b->out);
}

/* Frames are written at the end of the loop turn (bus_flush), many per send(). */
static void queue(gw_bus_t *b)
{
    if (b->out.len > BUS_MAX_OUTBUF) {
        disconnect(b, "broker is not reading (outbound limit)");
        return;
    }
    if (!b->dirty) {
        b->dirty = 1;
        gw_want_flush(b->w);
    }
}

void bus_flush(gw_bus_t *b)
{
    if (!b->dirty) return;
    b->dirty = 0;
    if (b->fd >= 0) flush_out(b);
}

static void handle_frame(gw_bus_t *b, const brk_frame_t *fr)
{
    switch (fr->type) {
    case BRK_MSG: {
        char topic[160];
        if (fr->f[0].len >= sizeof topic) return;
        memcpy(topic, fr->f[0].p, fr->f[0].len);
        topic[fr->f[0].len] = '\0';
        b->w->m->c[MC_BUS_RECEIVED]++;
        chat_bus_message(b->w, topic, fr->f[1].p, fr->f[1].len);
        break;
    }
    case BRK_STATUS: {
        int up = fr->f[0].len >= 2 && memcmp(fr->f[0].p, "up", 2) == 0;
        /* "up <ms>" carries the broker's last Redis PING latency. */
        if (up && fr->f[0].len > 3) {
            char tmp[32];
            size_t l = fr->f[0].len - 3 < sizeof tmp - 1 ? fr->f[0].len - 3 : sizeof tmp - 1;
            memcpy(tmp, fr->f[0].p + 3, l);
            tmp[l] = '\0';
            double ms = atof(tmp);
            if (ms > 0) metrics_observe(b->w->m, MH_REDIS_LATENCY, ms / 1000.0);
        }
        if (up != b->redis_up) set_status(b, 1, up);
        break;
    }
    case BRK_ONLINE_RESP: {
        uint32_t id = 0;
        for (uint32_t i = 0; i < fr->f[0].len; i++) id = id * 10 + (uint32_t)(fr->f[0].p[i] - '0');
        for (bus_req_t **pp = &b->reqs; *pp; pp = &(*pp)->next) {
            bus_req_t *r = *pp;
            if (r->id != id) continue;
            *pp = r->next;
            r->cb(r->arg, fr->f[1].len ? fr->f[1].p : NULL, fr->f[1].len);
            free(r);
            break;
        }
        break;
    }
    default:
        log_warn("broker_unexpected_frame", "type=%s", brk_type_name(fr->type));
        break;
    }
}

static void on_read(evutil_socket_t fd, short ev, void *arg)
{
    gw_bus_t *b = arg;
    char tmp[65536];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n == 0) {
        disconnect(b, "broker closed the connection");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) disconnect(b, strerror(errno));
        return;
    }
    if (buf_append(&b->in, tmp, (size_t)n) < 0) {
        disconnect(b, "out of memory");
        return;
    }
    size_t off = 0;
    while (b->fd >= 0) {
        brk_frame_t fr;
        long r = brk_parse((const uint8_t *)b->in.data + off, b->in.len - off, &fr);
        if (r == 0) break;
        if (r < 0) {
            disconnect(b, "malformed frame from broker");
            return;
        }
        handle_frame(b, &fr);
        off += (size_t)r;
    }
    if (b->fd >= 0) buf_consume(&b->in, off);
    if (b->in.len == 0 && b->in.cap > 65536) buf_free(&b->in);
}

static void on_write(evutil_socket_t fd, short ev, void *arg)
{
    flush_out(arg);
}

static void on_retry(evutil_socket_t fd, short ev, void *arg)
{
    bus_connect(arg);
}

static void bus_connect(gw_bus_t *b)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        disconnect(b, strerror(errno));
        return;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", b->path);
    /* A unix-socket connect completes or fails at once (EAGAIN: backlog full, retry). */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        if (b->down_since_ms == 0 || gw_now_ms(b->w) - b->down_since_ms > 5000) {
            log_debug("broker_connect_failed", "socket=%s err=\"%s\"", b->path, strerror(e));
        }
        struct timeval tv = {0, BUS_RETRY_MS * 1000};
        evtimer_add(&b->retry_ev, &tv);
        return;
    }
    b->fd = fd;
    event_assign(&b->rev, b->w->base, fd, EV_READ | EV_PERSIST, on_read, b);
    event_assign(&b->wev, b->w->base, fd, EV_WRITE | EV_PERSIST, on_write, b);
    event_add(&b->rev, NULL);
    char idx[16], pid[16];
    int il = snprintf(idx, sizeof idx, "%d", b->w->index);
    int pl = snprintf(pid, sizeof pid, "%d", (int)getpid());
    brk_encode2(&b->out, BRK_HELLO, idx, (size_t)il, pid, (size_t)pl);
    set_status(b, 1, 0); /* Redis state arrives in the broker's first STATUS */
    chat_bus_resync(b->w);
    queue(b);
}

gw_bus_t *bus_new(gw_worker_t *w, const char *path)
{
    gw_bus_t *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->w = w;
    b->fd = -1;
    evtimer_assign(&b->retry_ev, w->base, on_retry, b);
    if (path && *path) {
        b->path = strdup(path);
        b->down_since_ms = 1;
        bus_connect(b);
    } else {
        w->m->g[MG_BROKER_UP] = 1;
        w->m->g[MG_REDIS_UP] = 1;
    }
    return b;
}

void bus_free(gw_bus_t *b)
{
    if (!b) return;
    if (b->fd >= 0) {
        flush_out(b);
        event_del(&b->rev);
        event_del(&b->wev);
        close(b->fd);
    }
    event_del(&b->retry_ev);
    fail_requests(b, 0);
    buf_free(&b->out);
    buf_free(&b->in);
    free(b->path);
    free(b);
}

static int linked(gw_bus_t *b)
{
    return b->path && b->fd >= 0;
}

void bus_sub(gw_bus_t *b, const char *topic)
{
    if (!linked(b)) return;
    brk_encode1(&b->out, BRK_SUB, topic, strlen(topic));
    queue(b);
}

void bus_unsub(gw_bus_t *b, const char *topic)
{
    if (!linked(b)) return;
    brk_encode1(&b->out, BRK_UNSUB, topic, strlen(topic));
    queue(b);
}

void bus_publish(gw_bus_t *b, const char *topic, const char *payload, size_t len)
{
    if (!linked(b)) return;
    brk_encode2(&b->out, BRK_PUB, topic, strlen(topic), payload, len);
    b->w->m->c[MC_BUS_PUBLISHED]++;
    queue(b);
}

void bus_conn_up(gw_bus_t *b, const char *user_id, const char *username)
{
    if (!linked(b)) return;
    brk_encode2(&b->out, BRK_CONN_UP, user_id, strlen(user_id), username, strlen(username));
    queue(b);
}

void bus_conn_down(gw_bus_t *b, const char *user_id, const char *rooms)
{
    if (!linked(b)) return;
    brk_encode2(&b->out, BRK_CONN_DOWN, user_id, strlen(user_id), rooms, strlen(rooms));
    queue(b);
}

void bus_online(gw_bus_t *b, bus_online_cb cb, void *arg)
{
    if (!linked(b) || !b->connected) {
        cb(arg, NULL, 0);
        return;
    }
    bus_req_t *r = calloc(1, sizeof *r);
    if (!r) {
        cb(arg, NULL, 0);
        return;
    }
    r->id = ++b->next_req;
    r->sent_ms = gw_now_ms(b->w);
    r->cb = cb;
    r->arg = arg;
    r->next = b->reqs;
    b->reqs = r;
    char id[16];
    int l = snprintf(id, sizeof id, "%u", r->id);
    brk_encode1(&b->out, BRK_ONLINE_REQ, id, (size_t)l);
    queue(b);
}
