/*
 * Cluster presence, owned by the brokers (BRIEF §3, issue 3).
 *
 * Redis keys (docs/ARCHITECTURE.md):
 *   chat:presence:instances      ZSET instance -> last heartbeat (Redis TIME, ms)
 *   chat:presence:inst:<inst>    HASH user id -> {"userId","username"} JSON, users with sockets
 *                                on that host (the payload of their user_offline if reaped)
 *   chat:presence:user:<uid>     SET of instances where the user has sockets
 *   chat:online                  HASH user id -> username, everyone online anywhere
 *
 * A user's first socket on a host runs ONLINE; if that made the user's instance set go from
 * empty to one, the user just came online cluster-wide and the script itself publishes
 * user_online. The last socket on a host runs OFFLINE, symmetric. Each script is atomic, so
 * each transition happens once and is announced with it: a broker that dies after sending
 * the script loses nothing. Every broker delivers presence events to its workers from its
 * subscription, like any other host's message. Every broker heartbeats each second and,
 * every few seconds, reaps instances silent for presence_ttl/2: their users go offline
 * (published by the reaping script), well within presence_ttl.
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "brkproto.h"
#include "broker.h"
#include "envelope.h"
#include "log.h"

static const char LUA_NOW[] = "local t = redis.call('TIME') local now = t[1]*1000 + math.floor(t[2]/1000) ";

/* Publishes a presence event to the channels ARGV[first..], inside the script that made the
 * transition: the transition and its event happen together or not at all. Every broker,
 * this one included, delivers it to its workers from its subscription (no origin field). */
#define LUA_ANNOUNCE                                                                               \
    "local function announce(ev, user, first) "                                                    \
    "  local m = '{\"event\":\"' .. ev .. '\",\"data\":' .. user .. '}' "                        \
    "  for i = first, #ARGV do redis.call('PUBLISH', ARGV[i], m) end "                              \
    "end "

/* ARGV: instance, user id, username, user JSON, channels...
 * Also a heartbeat: an instance that dies before its first tick must still be reaped. */
static const char LUA_ONLINE[] = LUA_ANNOUNCE
    "local t = redis.call('TIME') "
    "redis.call('ZADD', 'chat:presence:instances', t[1]*1000 + math.floor(t[2]/1000), ARGV[1]) "
    "redis.call('HSET', 'chat:presence:inst:' .. ARGV[1], ARGV[2], ARGV[4]) "
    "local added = redis.call('SADD', 'chat:presence:user:' .. ARGV[2], ARGV[1]) "
    "redis.call('HSET', 'chat:online', ARGV[2], ARGV[3]) "
    "if added == 1 and redis.call('SCARD', 'chat:presence:user:' .. ARGV[2]) == 1 then "
    "  announce('user_online', ARGV[4], 5) return 1 end "
    "return 0";

/* ARGV: instance, user id, user JSON, channels... */
static const char LUA_OFFLINE[] = LUA_ANNOUNCE
    "redis.call('HDEL', 'chat:presence:inst:' .. ARGV[1], ARGV[2]) "
    "local removed = redis.call('SREM', 'chat:presence:user:' .. ARGV[2], ARGV[1]) "
    "if removed == 1 and redis.call('SCARD', 'chat:presence:user:' .. ARGV[2]) == 0 then "
    "  redis.call('HDEL', 'chat:online', ARGV[2]) announce('user_offline', ARGV[3], 4) return 1 end "
    "return 0";

static const char LUA_HEARTBEAT[] = "redis.call('ZADD', 'chat:presence:instances', now, ARGV[1]) return now";

/* ARGV: this instance, silence in ms, channels... Returns {user id, user JSON, ...}. */
static const char LUA_REAP[] = LUA_ANNOUNCE
    "local dead = redis.call('ZRANGEBYSCORE', 'chat:presence:instances', '-inf', now - tonumber(ARGV[2])) "
    "local out = {} "
    "for _, inst in ipairs(dead) do "
    "  if inst ~= ARGV[1] then "
    "    local users = redis.call('HGETALL', 'chat:presence:inst:' .. inst) "
    "    for i = 1, #users, 2 do "
    "      redis.call('SREM', 'chat:presence:user:' .. users[i], inst) "
    "      if redis.call('SCARD', 'chat:presence:user:' .. users[i]) == 0 then "
    "        redis.call('HDEL', 'chat:online', users[i]) "
    "        local u = users[i+1] "
    "        if string.sub(u, 1, 1) ~= '{' then u = cjson.encode({userId = users[i], username = u}) end "
    "        announce('user_offline', u, 3) "
    "        table.insert(out, users[i]) table.insert(out, users[i+1]) end "
    "    end "
    "    redis.call('DEL', 'chat:presence:inst:' .. inst) "
    "    redis.call('ZREM', 'chat:presence:instances', inst) "
    "  end "
    "end "
    "return out";

static brk_user_t *user_find(broker_t *b, const char *uid)
{
    map_node_t *n = map_get(&b->users, uid);
    return n ? map_entry(n, brk_user_t, node) : NULL;
}

static void user_json(buf_t *j, const char *uid, const char *name)
{
    buf_append_str(j, "{\"userId\":");
    jsonw_user_id(j, uid);
    buf_append_str(j, ",\"username\":");
    jsonw_cstr(j, name);
    buf_append_char(j, '}');
}

/* ---- scripts ---- */

/* Who hears about a transition (CHAT_PRESENCE_EVENTS): chat:all, the rooms the user's last
 * socket was in (a space-separated list; none known for a user coming online or reaped), or
 * nobody. Appends the channel names, NUL-separated, to chans; returns how many. */
static int presence_channels(buf_t *chans, const char *rooms)
{
    if (g_bcfg.presence_events == PRES_GLOBAL) {
        buf_append(chans, "chat:all", sizeof "chat:all");
        return 1;
    }
    if (g_bcfg.presence_events != PRES_ROOMS || !rooms) return 0;
    int n = 0;
    for (const char *p = rooms; *p;) {
        size_t l = strcspn(p, " ");
        if (l && l < 150) {
            buf_append_str(chans, "chat:room:");
            buf_append(chans, p, l);
            buf_append_char(chans, '\0');
            n++;
        }
        p += l;
        p += strspn(p, " ");
    }
    return n;
}

static void on_script(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    if (ac->data && (!r || r->type == REDIS_REPLY_ERROR))
        log_warn("presence_script_failed", "user=%s err=\"%s\"", (char *)priv, r ? r->str : "no reply");
    free(priv);
}

/* EVAL script 0 <fixed args...> <channels...>: the script publishes the event itself. */
static void eval_presence(broker_t *b, redisCallbackFn *cb, void *priv, const char *script,
                          const char **fixed, int nfixed, int announce, const char *rooms)
{
    buf_t chans = BUF_INIT;
    int nch = announce ? presence_channels(&chans, rooms) : 0;
    int argc = 3 + nfixed + nch;
    const char **argv = malloc(sizeof *argv * (size_t)argc);
    size_t *argvlen = malloc(sizeof *argvlen * (size_t)argc);
    if (!argv || !argvlen) {
        free(argv);
        free(argvlen);
        buf_free(&chans);
        free(priv);
        return;
    }
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = "0";
    for (int i = 0; i < nfixed; i++) argv[3 + i] = fixed[i];
    const char *c = chans.data;
    for (int i = 0; i < nch; i++, c += strlen(c) + 1) argv[3 + nfixed + i] = c;
    for (int i = 0; i < argc; i++) argvlen[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(b->redis.cmd, cb, priv, argc, argv, argvlen) != REDIS_OK) free(priv);
    free(argv);
    free(argvlen);
    buf_free(&chans);
}

/* ONLINE or OFFLINE for one user of this host. user: the {"userId","username"} JSON. */
static void run_script(broker_t *b, int online, const char *uid, const char *name, const char *user,
                       const char *rooms)
{
    if (!redis_command_ready(b)) return; /* reconciled when Redis is back */
    const char *fixed[4] = {g_bcfg.instance_id, uid, name, user};
    if (!online) fixed[2] = user;
    eval_presence(b, on_script, strdup(uid), online ? LUA_ONLINE : LUA_OFFLINE, fixed, online ? 4 : 3,
                  1, rooms);
}

static void run_user_script(broker_t *b, int online, const char *uid, const char *name, const char *rooms)
{
    buf_t j = BUF_INIT;
    user_json(&j, uid, name);
    run_script(b, online, uid, name, buf_cstr(&j), rooms);
    buf_free(&j);
}

/* ---- local counts ---- */

void presence_conn_up(broker_t *b, brk_worker_t *w, const char *uid, const char *name)
{
    map_node_t *n = map_get(&w->users, uid);
    brk_wuser_t *wu = n ? map_entry(n, brk_wuser_t, node) : NULL;
    if (!wu) {
        size_t l = strlen(uid);
        if (!(wu = calloc(1, sizeof *wu + l + 1))) return;
        memcpy(wu->id, uid, l + 1);
        map_put(&w->users, &wu->node, wu->id);
    }
    wu->count++;
    brk_user_t *u = user_find(b, uid);
    if (!u) {
        size_t l = strlen(uid);
        if (!(u = calloc(1, sizeof *u + l + 1))) return;
        memcpy(u->id, uid, l + 1);
        map_put(&b->users, &u->node, u->id);
    }
    if (!u->username || strcmp(u->username, name) != 0) {
        free(u->username);
        u->username = strdup(name);
    }
    if (u->count++ != 0) return;
    /* Announce the user only once its messages reach this host: whoever reacts to
     * user_online by sending to the user must not publish before our SUBSCRIBE. */
    char topic[300];
    snprintf(topic, sizeof topic, "user:%s", uid);
    brk_topic_t *t = topic_find(b, topic);
    if (t && !t->live) u->online_pending = 1;
    else run_user_script(b, 1, uid, u->username ? u->username : uid, NULL);
}

void presence_topic_live(broker_t *b, const char *topic)
{
    if (strncmp(topic, "user:", 5) != 0) return;
    brk_user_t *u = user_find(b, topic + 5);
    if (!u || !u->online_pending || !u->count) return;
    u->online_pending = 0;
    run_user_script(b, 1, u->id, u->username ? u->username : u->id, NULL);
}

static void user_release(broker_t *b, const char *uid, uint32_t n, const char *rooms)
{
    brk_user_t *u = user_find(b, uid);
    if (!u) return;
    u->count = u->count > n ? u->count - n : 0;
    if (u->count == 0) {
        if (!b->stopping) run_user_script(b, 0, uid, u->username ? u->username : uid, rooms);
        map_del(&b->users, &u->node);
        free(u->username);
        free(u);
    }
}

void presence_conn_down(broker_t *b, brk_worker_t *w, const char *uid, const char *rooms)
{
    map_node_t *n = map_get(&w->users, uid);
    if (!n) return;
    brk_wuser_t *wu = map_entry(n, brk_wuser_t, node);
    if (--wu->count == 0) {
        map_del(&w->users, &wu->node);
        free(wu);
    }
    user_release(b, uid, 1, rooms);
}

void presence_worker_gone(broker_t *b, brk_worker_t *w)
{
    for (map_node_t *n = map_first(&w->users), *next; n; n = next) {
        next = map_next(&w->users, n);
        brk_wuser_t *wu = map_entry(n, brk_wuser_t, node);
        map_del(&w->users, n);
        user_release(b, wu->id, wu->count, NULL);
        free(wu);
    }
}

/* ---- get_online_users ---- */

typedef struct online_req {
    broker_t *b;
    int slot;
    uint64_t gen;
    char id[24];
} online_req_t;

static void on_online(redisAsyncContext *ac, void *reply, void *priv)
{
    online_req_t *q = priv;
    broker_t *b = q->b;
    redisReply *r = reply;
    brk_worker_t *w = b->slots[q->slot];
    if (ac->data && w && w->gen == q->gen && !w->doomed) {
        buf_t j = BUF_INIT;
        if (r && r->type == REDIS_REPLY_ARRAY) {
            buf_append_char(&j, '[');
            for (size_t i = 0; i + 1 < r->elements; i += 2) {
                if (i) buf_append_char(&j, ',');
                user_json(&j, r->element[i]->str, r->element[i + 1]->str);
            }
            buf_append_char(&j, ']');
        }
        brk_encode2(&w->out, BRK_ONLINE_RESP, q->id, strlen(q->id), j.data ? j.data : "", j.len);
        buf_free(&j);
        workers_kick(w);
    }
    free(q);
}

void presence_online(broker_t *b, brk_worker_t *w, const char *req_id, size_t len)
{
    char id[24];
    snprintf(id, sizeof id, "%.*s", (int)(len < 20 ? len : 20), req_id);
    online_req_t *q = redis_command_ready(b) ? calloc(1, sizeof *q) : NULL;
    if (!q) {
        brk_encode2(&w->out, BRK_ONLINE_RESP, id, strlen(id), "", 0);
        workers_kick(w);
        return;
    }
    q->b = b;
    q->slot = w->slot;
    q->gen = w->gen;
    memcpy(q->id, id, sizeof id);
    redisAsyncCommand(b->redis.cmd, on_online, q, "HGETALL chat:online");
}

/* ---- heartbeat, reaping, reconciliation ---- */

static void on_reaped(redisAsyncContext *ac, void *reply, void *priv)
{
    broker_t *b = ac->data;
    redisReply *r = reply;
    if (!b || !r || r->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i + 1 < r->elements; i += 2) log_info("presence_reaped", "user=%s", r->element[i]->str);
}

/* A script that needs Redis's clock in `now`. */
static void eval_now(broker_t *b, redisCallbackFn *cb, const char *body, const char **fixed, int nfixed,
                     int announce)
{
    buf_t s = BUF_INIT;
    buf_append_str(&s, LUA_NOW);
    buf_append_str(&s, body);
    eval_presence(b, cb, NULL, buf_cstr(&s), fixed, nfixed, announce, NULL);
    buf_free(&s);
}

static void on_reconcile(redisAsyncContext *ac, void *reply, void *priv)
{
    broker_t *b = ac->data;
    redisReply *r = reply;
    if (!b || !r || r->type != REDIS_REPLY_ARRAY) return;
    /* In Redis but not here: gone while we were not looking. */
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (!user_find(b, r->element[i]->str))
            run_script(b, 0, r->element[i]->str, NULL, r->element[i + 1]->str, NULL);
    /* Here: make sure Redis knows (idempotent; emits only real transitions). */
    for (map_node_t *n = map_first(&b->users); n; n = map_next(&b->users, n)) {
        brk_user_t *u = map_entry(n, brk_user_t, node);
        if (!u->online_pending) run_user_script(b, 1, u->id, u->username ? u->username : u->id, NULL);
    }
    b->reconciled = 1;
    log_info("presence_reconciled", "local_users=%zu redis_users=%zu", b->users.count, r->elements / 2);
}

static void reconcile(broker_t *b)
{
    char key[300];
    snprintf(key, sizeof key, "chat:presence:inst:%s", g_bcfg.instance_id);
    const char *argv[2] = {"HGETALL", key};
    size_t argvlen[2] = {7, strlen(key)};
    redisAsyncCommandArgv(b->redis.cmd, on_reconcile, NULL, 2, argv, argvlen);
}

void presence_redis_up(broker_t *b)
{
    /* After a Redis outage (not at start-up, which waits for the workers to re-register
     * during the grace period), align Redis with what this host has now. */
    if (b->reconciled) reconcile(b);
}

void presence_tick(broker_t *b)
{
    if (!redis_command_ready(b)) return;
    int64_t now = brk_now_ms(b);
    const char *self[1] = {g_bcfg.instance_id};
    eval_now(b, NULL, LUA_HEARTBEAT, self, 1, 0);
    redis_ping(b);
    if (!b->reconciled && now - b->started_ms >= g_bcfg.presence_grace * 1000) reconcile(b);
    /* Reap often enough that a dead instance's users are offline within presence_ttl:
     * silent for ttl/2, noticed within ttl/6. */
    int64_t every = g_bcfg.presence_ttl * 1000 / 6;
    if (now - b->last_heartbeat_ms >= every) {
        b->last_heartbeat_ms = now;
        char dead_after[32];
        snprintf(dead_after, sizeof dead_after, "%lld", g_bcfg.presence_ttl * 1000 / 2);
        const char *fixed[2] = {g_bcfg.instance_id, dead_after};
        eval_now(b, on_reaped, LUA_REAP, fixed, 2, 1);
    }
}

void presence_free(broker_t *b)
{
    for (map_node_t *n = map_first(&b->users), *next; n; n = next) {
        next = map_next(&b->users, n);
        brk_user_t *u = map_entry(n, brk_user_t, node);
        free(u->username);
        free(u);
    }
    map_free(&b->users);
}
