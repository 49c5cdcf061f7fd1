/*
 * chat-broker: the per-host Redis adapter (BRIEF §2).
 *
 * Workers of the local gateway(s) connect over a unix socket (brkproto). The broker keeps
 * which worker wants which topic ("room:<id>", "user:<id>"; "all" is implicit), subscribes
 * to the matching Redis channel "chat:<topic>" only while some local worker is interested,
 * forwards every incoming event to exactly the interested workers, and publishes the
 * workers' events both to the other local workers and to Redis. Redis therefore fans out
 * once per host, not once per worker. It also owns cluster presence (presence.c).
 *
 * Single-threaded, one libevent loop; hiredis async connections through its libevent
 * adapter. The only global is the read-only settings struct.
 */
#ifndef BRK_BROKER_H
#define BRK_BROKER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/async.h>
#include <stdint.h>

#include "buf.h"
#include "map.h"

#define BRK_MAX_WORKERS 256
#define BRK_WORKER_MAX_OUTBUF (64u << 20)

enum { PRES_GLOBAL = 0, PRES_ROOMS = 1, PRES_NONE = 2 };

typedef struct brk_settings {
    char *broker_socket;
    char *redis_url;
    char *instance_id;
    int presence_events;
    long long presence_ttl;
    long long presence_grace;
    int log_level;
    int log_format;
} brk_settings_t;

extern brk_settings_t g_bcfg;

typedef struct broker broker_t;

/* A local worker connection. */
typedef struct brk_worker {
    broker_t *b;
    int fd;
    int slot;   /* bit index in topic interest masks */
    int index;  /* the worker's own index (HELLO) */
    int pid;
    int hello;
    int doomed; /* failed: freed by the reap event */
    uint64_t gen; /* unique per connection: async replies check it */
    struct event rev, wev;
    buf_t in, out;
    map_t users; /* user id -> brk_wuser_t: this worker's connections per user */
    struct brk_worker *next;
} brk_worker_t;

typedef struct brk_wuser {
    map_node_t node;
    uint32_t count;
    char id[];
} brk_wuser_t;

/* A topic some local worker is interested in. */
typedef struct brk_topic {
    map_node_t node;
    uint64_t mask[BRK_MAX_WORKERS / 64];
    uint32_t nworkers;
    uint8_t live; /* Redis confirmed the SUBSCRIBE */
    char name[];
} brk_topic_t;

/* A user with connections on this host. */
typedef struct brk_user {
    map_node_t node;
    uint32_t count;
    uint8_t online_pending; /* ONLINE waits for SUBSCRIBE chat:user:<id> to be in place */
    char *username;
    char id[];
} brk_user_t;

typedef struct brk_redis {
    broker_t *b;
    redisAsyncContext *cmd;
    redisAsyncContext *sub;
    int cmd_ready, sub_ready;
    int up;
    struct event retry_ev;
    int backoff_ms;
    char host[256];
    char ip[256];
    int port;
    char unix_path[256];
    char password[256];
    int db;
    double last_ping_ms;
    struct evdns_base *dns;
} brk_redis_t;

struct broker {
    struct event_base *base;
    int listen_fd;
    struct event lev;
    struct event sig_ev, int_ev;
    struct event tick_ev;
    struct event reap_ev;
    int stopping;
    uint64_t next_gen;
    brk_worker_t *workers;
    brk_worker_t *slots[BRK_MAX_WORKERS];
    map_t topics;
    map_t users;
    brk_redis_t redis;
    char *origin_prefix; /* {"origin":"<id>", : events from this host start with it */
    size_t origin_prefix_len;
    int64_t started_ms;
    int reconciled;
    int64_t last_heartbeat_ms;
};

int64_t brk_now_ms(broker_t *b);

/* workers.c */
int workers_listen(broker_t *b);
void workers_close_all(broker_t *b);
/* Deliver an event to every interested worker except `except` (NULL: none). */
void workers_deliver(broker_t *b, const char *topic, const char *payload, size_t len,
                     brk_worker_t *except);
void workers_status(broker_t *b, brk_worker_t *only);
/* Write what was queued for one worker. */
void workers_kick(brk_worker_t *w);
void workers_reap(broker_t *b);

/* redis.c */
int redis_init(broker_t *b, const char *url);
void redis_free(broker_t *b);
void redis_subscribe(broker_t *b, const char *topic);
void redis_unsubscribe(broker_t *b, const char *topic);
/* PUBLISH chat:<topic> with "origin" added to the payload. */
void redis_publish(broker_t *b, const char *topic, const char *payload, size_t len);
int redis_command_ready(broker_t *b);
/* Send a PING whose round trip is reported to workers as Redis latency. */
void redis_ping(broker_t *b);
/* Incoming Redis message (called by redis.c). */
void broker_redis_message(broker_t *b, const char *channel, size_t clen, const char *payload,
                          size_t plen);
/* Redis became usable again (re-subscribed) or went away. */
void broker_redis_state(broker_t *b, int up);

/* presence.c */
void presence_conn_up(broker_t *b, brk_worker_t *w, const char *uid, const char *name);
void presence_conn_down(broker_t *b, brk_worker_t *w, const char *uid, const char *rooms);
void presence_worker_gone(broker_t *b, brk_worker_t *w);
void presence_online(broker_t *b, brk_worker_t *w, const char *req_id, size_t len);
void presence_tick(broker_t *b);
void presence_redis_up(broker_t *b);
void presence_topic_live(broker_t *b, const char *topic);
void presence_free(broker_t *b);

/* topics */
void topic_add(broker_t *b, brk_worker_t *w, const char *name);
void topic_remove(broker_t *b, brk_worker_t *w, const char *name);
brk_topic_t *topic_find(broker_t *b, const char *name);

#endif
