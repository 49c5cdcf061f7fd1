#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bus.h"
#include "chat.h"
#include "conn.h"
#include "log.h"
#include "rooms.h"
#include "settings.h"
#include "sio.h"
#include "store.h"

#define RBUF_SIZE (64 * 1024)
#define ACCEPT_BATCH 64

int64_t gw_now_ms(gw_worker_t *w)
{
    struct timeval tv;
    event_base_gettimeofday_cached(w->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void gw_random_id(char *out, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char rnd[32];
    if (n > sizeof rnd) n = sizeof rnd;
    if (getrandom(rnd, n, 0) != (ssize_t)n) {
        /* getrandom on Linux >= 3.17 does not fail for small sizes once seeded. */
        for (size_t i = 0; i < n; i++) rnd[i] = (unsigned char)(random() & 0xFF);
    }
    for (size_t i = 0; i < n; i++) out[i] = alphabet[rnd[i] & 63];
    out[n] = '\0';
}

void gw_want_flush(gw_worker_t *w)
{
    if (!event_pending(&w->flush_ev, EV_TIMEOUT, NULL)) event_active(&w->flush_ev, EV_TIMEOUT, 1);
}

static void on_flush(evutil_socket_t fd, short ev, void *arg)
{
    gw_worker_t *w = arg;
    w->store->ops->flush(w->store);
    bus_flush(w->bus);
    sio_flush_polls(w);
    conn_flush_all(w);
    sio_free_closed(w);
}

static void resume_accept(evutil_socket_t fd, short ev, void *arg)
{
    gw_worker_t *w = arg;
    if (w->listen_fd >= 0 && !w->draining) event_add(&w->lev, NULL);
}

static void on_accept(evutil_socket_t fd, short ev, void *arg)
{
    gw_worker_t *w = arg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int c = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == EMFILE || errno == ENFILE) {
                /* The connection stays in the backlog, so the listener stays readable: stop
                 * listening for 100 ms instead of spinning on accept() and the log. */
                log_error("accept_failed", "err=\"%s\" conns=%u", strerror(errno), w->nconns);
                struct timeval tv = {0, 100 * 1000};
                event_del(&w->lev);
                if (event_base_once(w->base, -1, EV_TIMEOUT, resume_accept, w, &tv) < 0) event_add(&w->lev, NULL);
                return;
            }
            if (errno == ECONNABORTED) continue;
            log_warn("accept_failed", "err=\"%s\"", strerror(errno));
            return;
        }
        conn_accept(w, c, (struct sockaddr *)&ss, sl);
    }
}

static void finish_drain(gw_worker_t *w)
{
    if (w->nconns == 0 || gw_now_ms(w) >= w->drain_deadline_ms) {
        if (w->nconns)
            log_warn("drain_deadline", "closing=%u connections", w->nconns);
        event_base_loopexit(w->base, NULL);
    }
}

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    gw_worker_t *w = arg;
    bus_tick(w->bus);
    if (!w->draining) return;
    int64_t now = gw_now_ms(w);
    int64_t half = w->drain_deadline_ms - (g_cfg.drain_seconds * 1000) / 2;
    /* In-flight sends finish (their acks go out) before clients are told to reconnect. */
    if (w->draining == 1 && (w->store->ops->inflight(w->store) == 0 || now >= half)) {
        w->draining = 2;
        log_info("drain_disconnect", "connections=%u", w->nconns);
        sio_close_all(w, "server shutting down");
        conn_close_all(w, WS_CLOSE_GOING_AWAY, "server shutting down, reconnect");
        /* Idle HTTP keep-alive connections hold nothing: close them now. */
        for (gw_conn_t *c = w->conns, *next; c; c = next) {
            next = c->next;
            if (c->state == CS_HTTP_HEAD && c->in.len == 0) conn_close(c, "draining");
        }
    }
    finish_drain(w);
}

static void start_drain(gw_worker_t *w)
{
    if (w->draining) return;
    w->draining = 1;
    w->drain_deadline_ms = gw_now_ms(w) + g_cfg.drain_seconds * 1000;
    if (w->listen_fd >= 0) {
        event_del(&w->lev);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    log_info("drain_start", "connections=%u deadline_s=%lld", w->nconns, g_cfg.drain_seconds);
    struct timeval tv = {0, 100 * 1000};
    event_del(&w->tick_ev);
    event_add(&w->tick_ev, &tv);
    on_tick(-1, 0, w);
}

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
    start_drain(arg);
}

static const struct timeval *common_timeout(struct event_base *b, long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return event_base_init_common_timeout(b, &tv);
}

int worker_run(int index, int nworkers, int listen_fd, gw_metrics_shm_t *shm, int handoff_fd,
               int *peer_fds)
{
    gw_worker_t w;
    memset(&w, 0, sizeof w);
    w.index = index;
    w.nworkers = nworkers;
    w.listen_fd = listen_fd;
    w.shm = shm;
    w.m = &shm->slot[index];
    memset(w.m, 0, sizeof *w.m);
    w.m->pid = (int32_t)getpid();
    w.handoff_fd = handoff_fd;
    w.peer_fds = peer_fds;
    log_set_worker(index);
    signal(SIGPIPE, SIG_IGN);

    char err[256];
    jwtauth_opts_t jo = {g_cfg.jwt_alg, g_cfg.jwt_key_material, strlen(g_cfg.jwt_key_material),
                         g_cfg.jwt_issuer, g_cfg.jwt_audience, g_cfg.jwt_leeway};
    if (!g_cfg.echo && !g_cfg.conformance && !(w.auth = jwtauth_new(&jo, err, sizeof err))) {
        log_error("worker_start_failed", "err=\"%s\"", err);
        return 1;
    }
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    w.base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w.base) {
        log_error("worker_start_failed", "err=\"cannot create the event loop\"");
        return 1;
    }
    w.tv_ping = common_timeout(w.base, g_cfg.ping_interval);
    w.tv_pong = common_timeout(w.base, g_cfg.ping_timeout);
    w.tv_handshake = common_timeout(w.base, g_cfg.handshake_timeout);
    w.tv_linger = common_timeout(w.base, 2000);
    w.rbuf_size = RBUF_SIZE;
    w.rbuf = malloc(RBUF_SIZE);

    /* One priority for every event. The flush is made active by the first callback of a
     * turn that produces output, so it is queued behind every event already active in
     * that turn and runs after them: one write per connection per turn. A lower priority
     * would starve it (and accept, timers, the bus and PostgreSQL): libevent runs
     * lower-priority events only in a turn where no higher-priority event is active, and
     * a socket that is readable at every turn (input faster than the worker parses it)
     * would keep the worker from writing, accepting and timing out anything. */
    event_assign(&w.flush_ev, w.base, -1, 0, on_flush, &w);
    event_assign(&w.tick_ev, w.base, -1, EV_PERSIST, on_tick, &w);
    struct timeval tick = {1, 0};
    event_add(&w.tick_ev, &tick);
    evsignal_assign(&w.sig_ev, w.base, SIGTERM, on_signal, &w);
    event_add(&w.sig_ev, NULL);

    w.store = *g_cfg.database_url ? store_pg_new(&w, g_cfg.database_url) : store_mem_new(&w);
    w.bus = bus_new(&w, g_cfg.broker_socket);
    if (!w.rbuf || !w.store || !w.bus) {
        log_error("worker_start_failed", "err=\"out of memory\"");
        return 1;
    }
    if (handoff_fd >= 0) sio_handoff_init(&w);
    event_assign(&w.lev, w.base, listen_fd, EV_READ | EV_PERSIST, on_accept, &w);
    event_add(&w.lev, NULL);
    log_info("worker_started", "pid=%d listen_fd=%d", (int)getpid(), listen_fd);

    event_base_dispatch(w.base);

    /* Orderly teardown, so leak checkers see a clean exit. */
    for (gw_conn_t *c = w.conns, *next; c; c = next) {
        next = c->next;
        conn_close(c, "worker exit");
    }
    sio_free_all(&w);
    bus_flush(w.bus);
    conn_flush_all(&w);
    rooms_free_all(&w);
    w.store->ops->free(w.store);
    bus_free(w.bus);
    sio_handoff_free(&w);
    map_free(&w.rooms);
    map_free(&w.users);
    map_free(&w.sessions);
    event_del(&w.tick_ev);
    event_del(&w.sig_ev);
    event_del(&w.lev);
    event_base_free(w.base);
    jwtauth_free(w.auth);
    free(w.rbuf);
    log_info("worker_exit", "pid=%d", (int)getpid());
    return 0;
}
