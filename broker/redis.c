/*
 * The broker's Redis connections (hiredis async, on libevent through the adapter below): one
 * for commands (PUBLISH, presence scripts) and one in subscribe mode. Either one failing marks Redis
 * down; both are rebuilt with exponential backoff (100 ms .. 2 s), host names resolved
 * with evdns so the loop never blocks, and every topic with local interest re-subscribed
 * before Redis is reported up again.
 */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "broker.h"
#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

static void connect_all(broker_t *b);

/* ---- libevent adapter ----
 * hiredis's own (adapters/libevent.h) registers a one-shot read event, so epoll_ctl removes
 * and re-adds the socket around every read, and it waits for a writable event before every
 * write: three epoll_ctl calls and an extra loop turn per command. This one keeps one
 * persistent read event, and writes what the commands of a loop turn queued once, at the
 * end of that turn (an event made active, no system call). Only a connect in progress or a
 * write that did not finish waits for EV_WRITE. */
typedef struct redis_ev {
    redisAsyncContext *ac;
    struct event *rev, *wev, *flush;
} redis_ev_t;

/* Set while hiredis writes: an addWrite from inside means "not all written". The broker is
 * single-threaded, and the context may be freed by the write, so this is not in it. */
static int g_in_write;

static void ev_read(evutil_socket_t fd, short what, void *arg)
{
    redisAsyncHandleRead(((redis_ev_t *)arg)->ac);
}

static void ev_write(evutil_socket_t fd, short what, void *arg)
{
    g_in_write = 1;
    redisAsyncHandleWrite(((redis_ev_t *)arg)->ac);
    g_in_write = 0;
}

static void ev_add_read(void *p)
{
    event_add(((redis_ev_t *)p)->rev, NULL); /* no system call when already added */
}

static void ev_del_read(void *p)
{
    event_del(((redis_ev_t *)p)->rev);
}

static void ev_add_write(void *p)
{
    redis_ev_t *e = p;
    if (g_in_write || !(e->ac->c.flags & REDIS_CONNECTED)) event_add(e->wev, NULL);
    else event_active(e->flush, EV_WRITE, 1);
}

static void ev_del_write(void *p)
{
    redis_ev_t *e = p;
    event_del(e->wev);
    event_del(e->flush);
}

static void ev_cleanup(void *p)
{
    redis_ev_t *e = p;
    event_free(e->rev);
    event_free(e->wev);
    event_free(e->flush);
    free(e);
}

static int redis_attach(redisAsyncContext *ac, struct event_base *base)
{
    redis_ev_t *e = calloc(1, sizeof *e);
    if (!e) return -1;
    e->ac = ac;
    e->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, ev_read, e);
    e->wev = event_new(base, ac->c.fd, EV_WRITE, ev_write, e);
    e->flush = event_new(base, -1, 0, ev_write, e);
    if (!e->rev || !e->wev || !e->flush) {
        if (e->rev) event_free(e->rev);
        if (e->wev) event_free(e->wev);
        if (e->flush) event_free(e->flush);
        free(e);
        return -1;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    ac->ev.data = e;
    /* Readable (an error) or writable: the non-blocking connect is over. */
    event_add(e->rev, NULL);
    event_add(e->wev, NULL);
    return 0;
}

static int parse_url(brk_redis_t *r, const char *url)
{
    r->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        snprintf(r->unix_path, sizeof r->unix_path, "%s", url + 7);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) return -1;
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        snprintf(r->password, sizeof r->password, "%.*s", (int)(at - pw), pw);
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hend = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb) return -1;
        snprintf(r->host, sizeof r->host, "%.*s", (int)(rb - p - 1), p + 1);
        if (rb + 1 < hend && rb[1] == ':') colon = rb + 1;
    } else {
        colon = memchr(p, ':', (size_t)(hend - p));
        snprintf(r->host, sizeof r->host, "%.*s", (int)((colon ? colon : hend) - p), p);
    }
    if (colon) r->port = atoi(colon + 1);
    if (slash && slash[1]) r->db = atoi(slash + 1);
    if (!r->host[0] || r->port <= 0 || r->port > 65535) return -1;
    return 0;
}

int redis_command_ready(broker_t *b)
{
    return b->redis.cmd && b->redis.cmd_ready;
}

static void set_up(broker_t *b)
{
    brk_redis_t *r = &b->redis;
    int up = r->cmd_ready && r->sub_ready;
    if (up == r->up) return;
    r->up = up;
    if (up) r->backoff_ms = 0;
    broker_redis_state(b, up);
}

static void schedule_retry(broker_t *b)
{
    brk_redis_t *r = &b->redis;
    if (b->stopping || evtimer_pending(&r->retry_ev, NULL)) return;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS) r->backoff_ms = BACKOFF_MAX_MS;
    struct timeval tv = {r->backoff_ms / 1000, (r->backoff_ms % 1000) * 1000};
    evtimer_add(&r->retry_ev, &tv);
}

/* Tear both connections down: they come back together. */
static void reset(broker_t *b, const char *why)
{
    brk_redis_t *r = &b->redis;
    if (r->cmd || r->sub) log_warn("redis_lost", "err=\"%s\"", why);
    if (r->cmd) {
        r->cmd->data = NULL;
        redisAsyncDisconnect(r->cmd);
        r->cmd = NULL;
    }
    if (r->sub) {
        r->sub->data = NULL;
        redisAsyncDisconnect(r->sub);
        r->sub = NULL;
    }
    r->cmd_ready = r->sub_ready = 0;
    for (map_node_t *n = map_first(&b->topics); n; n = map_next(&b->topics, n))
        map_entry(n, brk_topic_t, node)->live = 0;
    set_up(b);
    schedule_retry(b);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    broker_t *b = ac->data;
    if (!b) return; /* we asked for it */
    brk_redis_t *r = &b->redis;
    if (ac == r->cmd) r->cmd = NULL;
    if (ac == r->sub) r->sub = NULL;
    reset(b, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void on_message(redisAsyncContext *ac, void *reply, void *priv)
{
    broker_t *b = ac->data;
    redisReply *rep = reply;
    if (!b || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
    redisReply *kind = rep->element[0];
    if (kind->type != REDIS_REPLY_STRING) return;
    if (strcmp(kind->str, "message") == 0 && rep->element[1]->type == REDIS_REPLY_STRING &&
        rep->element[2]->type == REDIS_REPLY_STRING) {
        broker_redis_message(b, rep->element[1]->str, rep->element[1]->len, rep->element[2]->str,
                             rep->element[2]->len);
    } else if (strcmp(kind->str, "subscribe") == 0 && rep->element[1]->type == REDIS_REPLY_STRING) {
        const char *ch = rep->element[1]->str;
        if (strcmp(ch, "chat:all") == 0) {
            /* chat:all is subscribed last: every earlier SUBSCRIBE is in place. */
            b->redis.sub_ready = 1;
            set_up(b);
        } else if (strncmp(ch, "chat:", 5) == 0) {
            brk_topic_t *t = topic_find(b, ch + 5);
            if (t) {
                t->live = 1;
                presence_topic_live(b, t->name);
            }
        }
    }
}

static void subscribe_raw(broker_t *b, const char *channel)
{
    redisAsyncCommand(b->redis.sub, on_message, NULL, "SUBSCRIBE %s", channel);
}

static void on_sub_ready(broker_t *b)
{
    /* Every topic with local interest, then chat:all, whose confirmation marks the end. */
    char ch[256];
    for (map_node_t *n = map_first(&b->topics); n; n = map_next(&b->topics, n)) {
        brk_topic_t *t = map_entry(n, brk_topic_t, node);
        t->live = 0;
        snprintf(ch, sizeof ch, "chat:%s", t->name);
        subscribe_raw(b, ch);
    }
    subscribe_raw(b, "chat:all");
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    broker_t *b = ac->data;
    redisReply *rep = reply;
    if (!b) return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        reset(b, rep ? rep->str : "AUTH/SELECT failed");
        return;
    }
    if (priv) return; /* not the last setup command */
    if (ac == b->redis.cmd) {
        b->redis.cmd_ready = 1;
        set_up(b);
    } else {
        on_sub_ready(b);
    }
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    broker_t *b = ac->data;
    if (!b) return;
    brk_redis_t *r = &b->redis;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        if (ac == r->cmd) r->cmd = NULL;
        if (ac == r->sub) r->sub = NULL;
        reset(b, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    int is_cmd = ac == r->cmd;
    if (r->password[0]) redisAsyncCommand(ac, on_auth, (void *)1, "AUTH %s", r->password);
    if (is_cmd) redisAsyncCommand(ac, on_auth, NULL, "SELECT %d", r->db);
    else redisAsyncCommand(ac, on_auth, NULL, "PING");
    if (!is_cmd) log_info("redis_connected", "redis=%s", g_bcfg.redis_url);
}

static redisAsyncContext *open_one(broker_t *b)
{
    brk_redis_t *r = &b->redis;
    redisAsyncContext *ac = r->unix_path[0] ? redisAsyncConnectUnix(r->unix_path)
                                            : redisAsyncConnect(r->ip, r->port);
    if (!ac) return NULL;
    if (ac->err) {
        log_warn("redis_connect_failed", "err=\"%s\"", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = b;
    if (redis_attach(ac, b->base) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void open_both(broker_t *b)
{
    brk_redis_t *r = &b->redis;
    r->cmd = open_one(b);
    r->sub = r->cmd ? open_one(b) : NULL;
    if (!r->cmd || !r->sub) reset(b, "cannot create a connection");
}

static void on_resolved(int err, struct evutil_addrinfo *ai, void *arg)
{
    broker_t *b = arg;
    brk_redis_t *r = &b->redis;
    if (err || !ai) {
        log_warn("redis_resolve_failed", "host=%s err=\"%s\"", r->host, evutil_gai_strerror(err));
        schedule_retry(b);
        return;
    }
    if (ai->ai_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, r->ip, sizeof r->ip);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, r->ip, sizeof r->ip);
    evutil_freeaddrinfo(ai);
    open_both(b);
}

static void connect_all(broker_t *b)
{
    brk_redis_t *r = &b->redis;
    if (r->cmd || r->sub) return;
    struct in6_addr tmp;
    if (r->unix_path[0] || inet_pton(AF_INET, r->host, &tmp) == 1 || inet_pton(AF_INET6, r->host, &tmp) == 1) {
        if (!r->unix_path[0]) snprintf(r->ip, sizeof r->ip, "%s", r->host);
        open_both(b);
        return;
    }
    /* A host name: resolve without blocking the loop. */
    if (!r->dns) r->dns = evdns_base_new(b->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!r->dns) {
        schedule_retry(b);
        return;
    }
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    evdns_getaddrinfo(r->dns, r->host, NULL, &hints, on_resolved, b);
}

static void on_retry(evutil_socket_t fd, short ev, void *arg)
{
    connect_all(arg);
}

static void on_ping(redisAsyncContext *ac, void *reply, void *priv)
{
    broker_t *b = ac->data;
    if (!b || !reply) return;
    struct timeval *t0 = priv;
    struct timeval now;
    evutil_gettimeofday(&now, NULL);
    b->redis.last_ping_ms = (double)(now.tv_sec - t0->tv_sec) * 1000.0 + (double)(now.tv_usec - t0->tv_usec) / 1000.0;
}

/* Measured every tick (presence.c calls redis_ping through the tick). */
void redis_ping(broker_t *b)
{
    static struct timeval t0;
    if (!redis_command_ready(b)) return;
    evutil_gettimeofday(&t0, NULL);
    redisAsyncCommand(b->redis.cmd, on_ping, &t0, "PING");
}

int redis_init(broker_t *b, const char *url)
{
    brk_redis_t *r = &b->redis;
    r->b = b;
    if (parse_url(r, url) < 0) {
        log_error("bad_redis_url", "url=%s", url);
        return -1;
    }
    evtimer_assign(&r->retry_ev, b->base, on_retry, b);
    connect_all(b);
    return 0;
}

void redis_free(broker_t *b)
{
    brk_redis_t *r = &b->redis;
    b->stopping = 1;
    event_del(&r->retry_ev);
    if (r->cmd) {
        r->cmd->data = NULL;
        redisAsyncFree(r->cmd);
        r->cmd = NULL;
    }
    if (r->sub) {
        r->sub->data = NULL;
        redisAsyncFree(r->sub);
        r->sub = NULL;
    }
    if (r->dns) evdns_base_free(r->dns, 0);
}

void redis_subscribe(broker_t *b, const char *topic)
{
    if (!b->redis.sub || !b->redis.sub_ready) return; /* on_sub_ready subscribes it later */
    char ch[256];
    snprintf(ch, sizeof ch, "chat:%s", topic);
    subscribe_raw(b, ch);
}

void redis_unsubscribe(broker_t *b, const char *topic)
{
    if (!b->redis.sub || !b->redis.sub_ready) return;
    char ch[256];
    snprintf(ch, sizeof ch, "chat:%s", topic);
    redisAsyncCommand(b->redis.sub, NULL, NULL, "UNSUBSCRIBE %s", ch);
}

void redis_publish(broker_t *b, const char *topic, const char *payload, size_t len)
{
    if (!redis_command_ready(b) || len < 2 || payload[0] != '{') return;
    /* {"origin":"<id>", + the rest of the worker's {"event":..,"data":..} */
    buf_t p = BUF_INIT;
    buf_append(&p, b->origin_prefix, b->origin_prefix_len);
    buf_append(&p, payload + 1, len - 1);
    char ch[256];
    int cl = snprintf(ch, sizeof ch, "chat:%s", topic);
    const char *argv[3] = {"PUBLISH", ch, p.data};
    size_t argvlen[3] = {7, (size_t)cl, p.len};
    redisAsyncCommandArgv(b->redis.cmd, NULL, NULL, 3, argv, argvlen);
    buf_free(&p);
}
