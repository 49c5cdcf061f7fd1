/*
 * The in-memory development store (no CHAT_DATABASE_URL). Keeps, per worker, the last
 * SINCE_CAP + 1 messages of each room and the last MEM_MAX_DMS direct messages; everything
 * is public. It exists so that the gateway runs without PostgreSQL in development and in the
 * conformance modes; the production path is store_pg.c.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "settings.h"
#include "store.h"

#define MEM_RING (SINCE_CAP + 1)
#define MEM_MAX_DMS 10000

typedef struct mem_item {
    int64_t id;
    int64_t seq;
    char *json;
} mem_item_t;

typedef struct mem_room {
    map_node_t node;
    int64_t seq;
    mem_item_t ring[MEM_RING];
    char id[];
} mem_room_t;

typedef struct mem_dm {
    int64_t id;
    char *a, *b; /* sender, recipient */
    char *json;
} mem_dm_t;

typedef struct mem_cmid {
    map_node_t node;
    store_sent_t r;
    char kind;
    char *body;
    char room[CHAT_MAX_ROOM_ID + 1];
    char key[];
} mem_cmid_t;

typedef struct mem_store {
    gw_store_t base;
    int64_t next_id;
    map_t rooms;
    map_t cmids;
    mem_dm_t dms[MEM_MAX_DMS];
    size_t ndms, dm_head;
} mem_store_t;

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static mem_room_t *room_get(mem_store_t *m, const char *id, int create)
{
    map_node_t *n = map_get(&m->rooms, id);
    if (n) return map_entry(n, mem_room_t, node);
    if (!create) return NULL;
    size_t l = strlen(id);
    mem_room_t *r = calloc(1, sizeof *r + l + 1);
    if (!r) return NULL;
    memcpy(r->id, id, l + 1);
    map_put(&m->rooms, &r->node, r->id);
    return r;
}

static mem_cmid_t *cmid_find(mem_store_t *m, const char *user, const char *cmid, char *key)
{
    snprintf(key, 160, "%s\x1f%s", user, cmid);
    map_node_t *n = map_get(&m->cmids, key);
    return n ? map_entry(n, mem_cmid_t, node) : NULL;
}

static void cmid_save(mem_store_t *m, const char *key, const store_sent_t *r, char kind,
                      const char *text, size_t len, const char *room)
{
    size_t l = strlen(key);
    mem_cmid_t *c = malloc(sizeof *c + l + 1);
    if (!c) return;
    memcpy(c->key, key, l + 1);
    c->r = *r;
    c->kind = kind;
    c->body = strndup(text, len);
    snprintf(c->room, sizeof c->room, "%s", room);
    map_put(&m->cmids, &c->node, c->key);
}

static void mem_user_seen(gw_store_t *s, const char *user_id, const char *username)
{
}

static void mem_send_message(gw_store_t *s, const char *room, const char *user_id,
                             const char *username, const char *text, size_t len, const char *cmid,
                             store_sent_cb cb, void *arg)
{
    mem_store_t *m = (mem_store_t *)s;
    char key[160];
    store_sent_t r = {0};
    mem_cmid_t *c = *cmid ? cmid_find(m, user_id, cmid, key) : NULL;
    if (c) {
        r = c->r;
        r.dup = 1;
        r.dup_kind = c->kind;
        r.dup_body = c->body;
        r.dup_room = c->kind == 'r' ? c->room : NULL;
        cb(arg, &r);
        return;
    }
    mem_room_t *rm = room_get(m, room, 1);
    if (!rm) {
        r.err = STORE_EINTERNAL;
        cb(arg, &r);
        return;
    }
    r.id = ++m->next_id;
    r.seq = ++rm->seq;
    r.created_ms = now_ms();
    mem_item_t *it = &rm->ring[r.seq % MEM_RING];
    free(it->json);
    buf_t b = BUF_INIT;
    chat_fmt_room_message(&b, r.id, r.seq, text, len, room, user_id, username, r.created_ms);
    it->id = r.id;
    it->seq = r.seq;
    it->json = buf_steal(&b, NULL);
    if (*cmid) cmid_save(m, key, &r, 'r', text, len, room);
    cb(arg, &r);
}

static void mem_send_dm(gw_store_t *s, const char *sender, const char *sender_name,
                        const char *recipient, const char *text, size_t len, const char *cmid,
                        store_sent_cb cb, void *arg)
{
    mem_store_t *m = (mem_store_t *)s;
    char key[160];
    store_sent_t r = {0};
    mem_cmid_t *c = *cmid ? cmid_find(m, sender, cmid, key) : NULL;
    if (c) {
        r = c->r;
        r.dup = 1;
        r.dup_kind = c->kind;
        r.dup_body = c->body;
        cb(arg, &r);
        return;
    }
    r.id = ++m->next_id;
    r.created_ms = now_ms();
    mem_dm_t *d;
    if (m->ndms < MEM_MAX_DMS) {
        d = &m->dms[(m->dm_head + m->ndms++) % MEM_MAX_DMS];
    } else {
        d = &m->dms[m->dm_head];
        m->dm_head = (m->dm_head + 1) % MEM_MAX_DMS;
        free(d->a);
        free(d->b);
        free(d->json);
    }
    buf_t b = BUF_INIT;
    chat_fmt_direct_message(&b, r.id, text, len, sender, sender_name, recipient, r.created_ms);
    d->id = r.id;
    d->a = strdup(sender);
    d->b = strdup(recipient);
    d->json = buf_steal(&b, NULL);
    if (*cmid) cmid_save(m, key, &r, 'd', text, len, "");
    cb(arg, &r);
}

/* Items with lo < seq <= hi, at most `max` (the newest when newest_first, else the oldest),
 * written oldest first. Returns how many matched in all. */
static int64_t room_slice(mem_room_t *rm, int64_t lo, int64_t hi, int64_t max, int newest,
                          buf_t *b)
{
    int64_t first = rm->seq - MEM_RING + 1;
    if (first < 1) first = 1;
    if (lo + 1 > first) first = lo + 1;
    int64_t last = hi < rm->seq ? hi : rm->seq;
    int64_t total = last >= first ? last - first + 1 : 0;
    if (total > max) {
        if (newest) first = last - max + 1;
        else last = first + max - 1;
    }
    buf_append_char(b, '[');
    for (int64_t q = first; q <= last; q++) {
        mem_item_t *it = &rm->ring[q % MEM_RING];
        if (it->seq != q || !it->json) continue;
        if (b->len > 1) buf_append_char(b, ',');
        buf_append_str(b, it->json);
    }
    buf_append_char(b, ']');
    return total;
}

static void mem_join(gw_store_t *s, const char *room, const char *user_id, int has_since,
                     int64_t since, store_list_cb cb, void *arg)
{
    mem_store_t *m = (mem_store_t *)s;
    store_list_t r = {0};
    mem_room_t *rm = room_get(m, room, g_cfg.auto_create_rooms);
    if (!rm) {
        r.err = STORE_ENOTFOUND;
        cb(arg, &r);
        return;
    }
    buf_t b = BUF_INIT;
    if (has_since) {
        int64_t total = room_slice(rm, since, INT64_MAX, SINCE_CAP, 0, &b);
        r.truncated = total > SINCE_CAP;
    } else {
        room_slice(rm, 0, INT64_MAX, 50, 1, &b);
    }
    r.json = buf_cstr(&b);
    r.len = b.len;
    r.max_seq = rm->seq;
    cb(arg, &r);
    buf_free(&b);
}

static void mem_history(gw_store_t *s, const char *room, const char *user_id, int has_before,
                        int64_t before, int limit, store_list_cb cb, void *arg)
{
    mem_store_t *m = (mem_store_t *)s;
    store_list_t r = {0};
    mem_room_t *rm = room_get(m, room, 0);
    buf_t b = BUF_INIT;
    if (!rm) {
        buf_append_str(&b, "[]");
    } else {
        int64_t hi = has_before ? before - 1 : INT64_MAX;
        int64_t total = room_slice(rm, 0, hi, limit, 1, &b);
        r.has_more = total > limit;
        r.max_seq = rm->seq;
    }
    r.json = buf_cstr(&b);
    r.len = b.len;
    cb(arg, &r);
    buf_free(&b);
}

static void mem_range(gw_store_t *s, const char *room, int64_t after, int64_t upto,
                      store_list_cb cb, void *arg)
{
    mem_store_t *m = (mem_store_t *)s;
    store_list_t r = {0};
    mem_room_t *rm = room_get(m, room, 0);
    buf_t b = BUF_INIT;
    if (rm) room_slice(rm, after, upto, SINCE_CAP, 0, &b);
    else buf_append_str(&b, "[]");
    r.json = buf_cstr(&b);
    r.len = b.len;
    r.max_seq = rm ? rm->seq : 0;
    cb(arg, &r);
    buf_free(&b);
}

static void mem_dm_history(gw_store_t *s, const char *user_id, const char *other, int has_before,
                           int64_t before, int limit, store_list_cb cb, void *arg)
{
    mem_store_t *m = (mem_store_t *)s;
    store_list_t r = {0};
    /* Walk newest to oldest, collect up to limit, then write oldest first. */
    const char *picked[CHAT_MAX_PAGE + 1];
    int n = 0;
    for (size_t k = m->ndms; k-- > 0;) {
        mem_dm_t *d = &m->dms[(m->dm_head + k) % MEM_MAX_DMS];
        if (has_before && d->id >= before) continue;
        int pair = (strcmp(d->a, user_id) == 0 && strcmp(d->b, other) == 0) ||
                   (strcmp(d->a, other) == 0 && strcmp(d->b, user_id) == 0);
        if (!pair) continue;
        if (n == limit) {
            r.has_more = 1;
            break;
        }
        picked[n++] = d->json;
    }
    buf_t b = BUF_INIT;
    buf_append_char(&b, '[');
    for (int i = n - 1; i >= 0; i--) {
        if (b.len > 1) buf_append_char(&b, ',');
        buf_append_str(&b, picked[i]);
    }
    buf_append_char(&b, ']');
    r.json = buf_cstr(&b);
    r.len = b.len;
    cb(arg, &r);
    buf_free(&b);
}

static int mem_ready(gw_store_t *s)
{
    return 1;
}

static int mem_inflight(gw_store_t *s)
{
    return 0;
}

static void mem_flush(gw_store_t *s)
{
}

static void mem_free(gw_store_t *s)
{
    mem_store_t *m = (mem_store_t *)s;
    for (map_node_t *n = map_first(&m->rooms), *next; n; n = next) {
        next = map_next(&m->rooms, n);
        mem_room_t *r = map_entry(n, mem_room_t, node);
        for (int i = 0; i < MEM_RING; i++) free(r->ring[i].json);
        free(r);
    }
    for (map_node_t *n = map_first(&m->cmids), *next; n; n = next) {
        next = map_next(&m->cmids, n);
        mem_cmid_t *c = map_entry(n, mem_cmid_t, node);
        free(c->body);
        free(c);
    }
    for (size_t k = 0; k < m->ndms; k++) {
        mem_dm_t *d = &m->dms[(m->dm_head + k) % MEM_MAX_DMS];
        free(d->a);
        free(d->b);
        free(d->json);
    }
    map_free(&m->rooms);
    map_free(&m->cmids);
    free(m);
}

static const store_ops_t mem_ops = {
    mem_user_seen, mem_send_message, mem_send_dm, mem_join, mem_history,
    mem_dm_history, mem_range, mem_ready, mem_inflight, mem_flush, mem_free,
};

gw_store_t *store_mem_new(gw_worker_t *w)
{
    mem_store_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->base.ops = &mem_ops;
    m->base.w = w;
    return &m->base;
}
