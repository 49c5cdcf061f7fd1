/*
 * chat-broker main: settings, the event loop, topic interest, and the routing between the
 * local workers and Redis. See broker.h for the role of the process.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"
#include "envelope.h"
#include "log.h"

brk_settings_t g_bcfg;

#define O(f) offsetof(brk_settings_t, f)
static const cfg_opt_t opts[] = {
    {"broker-socket", CFG_STR, O(broker_socket), "/tmp/chat-broker.sock", 0, 0, NULL,
     "unix socket the local gateway workers connect to"},
    {"redis-url", CFG_STR, O(redis_url), "redis://127.0.0.1:6379", 0, 0, NULL,
     "redis://[:password@]host[:port][/db] or unix:///path/to/redis.sock"},
    {"instance-id", CFG_STR, O(instance_id), NULL, 0, 0, NULL,
     "this host's id in Redis (presence, echo suppression); default hostname:socket"},
    {"presence-events", CFG_ENUM, O(presence_events), "global", 0, 0, "global|rooms|none",
     "who receives user_online/user_offline"},
    {"presence-ttl", CFG_INT, O(presence_ttl), "30", 6, 3600, NULL,
     "seconds after which a silent instance's users are offline"},
    {"presence-grace", CFG_INT, O(presence_grace), "3", 0, 60, NULL,
     "seconds after start before this host's presence is reconciled with Redis"},
    {"log-level", CFG_ENUM, O(log_level), "info", 0, 0, "debug|info|warn|error", "log level"},
    {"log-format", CFG_ENUM, O(log_format), "text", 0, 0, "text|json", "log line format"},
};
#undef O

int64_t brk_now_ms(broker_t *b)
{
    struct timeval tv;
    event_base_gettimeofday_cached(b->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- topics ---- */

brk_topic_t *topic_find(broker_t *b, const char *name)
{
    map_node_t *n = map_get(&b->topics, name);
    return n ? map_entry(n, brk_topic_t, node) : NULL;
}

void topic_add(broker_t *b, brk_worker_t *w, const char *name)
{
    brk_topic_t *t = topic_find(b, name);
    if (!t) {
        size_t l = strlen(name);
        t = calloc(1, sizeof *t + l + 1);
        if (!t) return;
        memcpy(t->name, name, l + 1);
        map_put(&b->topics, &t->node, t->name);
        redis_subscribe(b, name);
    }
    uint64_t bit = 1ull << (w->slot % 64);
    if (!(t->mask[w->slot / 64] & bit)) {
        t->mask[w->slot / 64] |= bit;
        t->nworkers++;
    }
}

void topic_remove(broker_t *b, brk_worker_t *w, const char *name)
{
    brk_topic_t *t = topic_find(b, name);
    if (!t) return;
    uint64_t bit = 1ull << (w->slot % 64);
    if (t->mask[w->slot / 64] & bit) {
        t->mask[w->slot / 64] &= ~bit;
        t->nworkers--;
    }
    if (t->nworkers == 0) {
        redis_unsubscribe(b, name);
        map_del(&b->topics, &t->node);
        free(t);
    }
}

/* ---- routing ---- */

void broker_redis_message(broker_t *b, const char *channel, size_t clen, const char *payload,
                          size_t plen)
{
    if (clen < 6 || memcmp(channel, "chat:", 5) != 0 || clen > 200) return;
    /* Our own publications come back through our subscription: the local workers already
     * have them. */
    if (plen >= b->origin_prefix_len && memcmp(payload, b->origin_prefix, b->origin_prefix_len) == 0)
        return;
    char topic[200];
    memcpy(topic, channel + 5, clen - 5);
    topic[clen - 5] = '\0';
    workers_deliver(b, topic, payload, plen, NULL);
}

void broker_redis_state(broker_t *b, int up)
{
    log_info("redis_state", "state=%s", up ? "up" : "down");
    workers_status(b, NULL);
    if (up) presence_redis_up(b);
}

/* ---- loop ---- */

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
    broker_t *b = arg;
    log_info("broker_stop", "signal=%d", (int)sig);
    event_base_loopexit(b->base, NULL);
}

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    broker_t *b = arg;
    presence_tick(b);
    workers_status(b, NULL);
}

int main(int argc, char **argv)
{
    char err[512];
    int rc = cfg_load(opts, sizeof opts / sizeof *opts, &g_bcfg, argc, argv,
                      "chat-broker: the per-host Redis adapter of the chat cluster\n"
                      "usage: chat-broker [--option value]...",
                      NULL, NULL, err, sizeof err);
    if (rc == CFG_HELP) return 0;
    if (rc != CFG_OK) {
        fprintf(stderr, "chat-broker: %s\n", err);
        return 2;
    }
    if (!*g_bcfg.instance_id) {
        char host[128] = "host", id[512];
        gethostname(host, sizeof host - 1);
        snprintf(id, sizeof id, "%s:%s", host, g_bcfg.broker_socket);
        free(g_bcfg.instance_id);
        g_bcfg.instance_id = strdup(id);
    }
    log_setup(g_bcfg.log_level, g_bcfg.log_format == 1, "broker", g_bcfg.instance_id, -1);
    signal(SIGPIPE, SIG_IGN);

    broker_t b;
    memset(&b, 0, sizeof b);
    b.listen_fd = -1;
    b.base = event_base_new();
    if (!b.base) return 1;
    buf_t pre = BUF_INIT;
    buf_append_str(&pre, "{\"origin\":");
    jsonw_cstr(&pre, g_bcfg.instance_id);
    buf_append_char(&pre, ',');
    b.origin_prefix_len = pre.len;
    b.origin_prefix = buf_steal(&pre, NULL);
    b.started_ms = brk_now_ms(&b);

    if (workers_listen(&b) < 0) return 1;
    if (redis_init(&b, g_bcfg.redis_url) < 0) return 2;
    evsignal_assign(&b.sig_ev, b.base, SIGTERM, on_signal, &b);
    evsignal_assign(&b.int_ev, b.base, SIGINT, on_signal, &b);
    event_add(&b.sig_ev, NULL);
    event_add(&b.int_ev, NULL);
    event_assign(&b.tick_ev, b.base, -1, EV_PERSIST, on_tick, &b);
    struct timeval tick = {1, 0};
    event_add(&b.tick_ev, &tick);
    log_info("broker_start", "socket=%s redis=%s pid=%d", g_bcfg.broker_socket, g_bcfg.redis_url,
             (int)getpid());

    event_base_dispatch(b.base);

    b.stopping = 1; /* leave this host's presence in Redis: a restarted broker takes it over */
    workers_close_all(&b);
    presence_free(&b);
    redis_free(&b);
    for (map_node_t *n = map_first(&b.topics), *next; n; n = next) {
        next = map_next(&b.topics, n);
        free(map_entry(n, brk_topic_t, node));
    }
    map_free(&b.topics);
    event_del(&b.sig_ev);
    event_del(&b.int_ev);
    event_del(&b.tick_ev);
    event_base_free(b.base);
    unlink(g_bcfg.broker_socket);
    free(b.origin_prefix);
    cfg_free(opts, sizeof opts / sizeof *opts, &g_bcfg);
    return 0;
}
