#include "rooms.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "chat.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

/* ---- users ---- */

gw_user_t *user_find(gw_worker_t *w, const char *id)
{
    map_node_t *n = map_get(&w->users, id);
    return n ? map_entry(n, gw_user_t, node) : NULL;
}

gw_user_t *user_attach(gw_sock_t *s, const char *id, const char *username)
{
    gw_worker_t *w = s->w;
    gw_user_t *u = user_find(w, id);
    if (!u) {
        size_t l = strlen(id);
        u = calloc(1, sizeof *u + l + 1);
        if (!u) return NULL;
        memcpy(u->id, id, l + 1);
        if (map_put(&w->users, &u->node, u->id) < 0) {
            free(u);
            return NULL;
        }
        char topic[CHAT_MAX_USER_ID + 8];
        snprintf(topic, sizeof topic, "user:%s", id);
        bus_sub(w->bus, topic);
    }
    /* The newest token's name wins (BRIEF §4: username kept current). */
    if (!u->username || strcmp(u->username, username) != 0) {
        char *n = strdup(username);
        if (n) {
            free(u->username);
            u->username = n;
        }
    }
    if (!u->username) {
        if (!u->socks) {
            map_del(&w->users, &u->node);
            free(u);
        }
        return NULL;
    }
    s->user = u;
    s->unext = u->socks;
    s->uprev = NULL;
    if (u->socks) u->socks->uprev = s;
    u->socks = s;
    u->nsocks++;
    return u;
}

void user_detach(gw_sock_t *s)
{
    gw_user_t *u = s->user;
    if (!u) return;
    if (s->uprev) s->uprev->unext = s->unext;
    else u->socks = s->unext;
    if (s->unext) s->unext->uprev = s->uprev;
    s->unext = s->uprev = NULL;
    u->nsocks--;
    if (u->nsocks == 0) {
        gw_worker_t *w = s->w;
        char topic[CHAT_MAX_USER_ID + 8];
        snprintf(topic, sizeof topic, "user:%s", u->id);
        bus_unsub(w->bus, topic);
        map_del(&w->users, &u->node);
        free(u->username);
        free(u);
        s->user = NULL;
    }
}

/* ---- rooms ---- */

static void on_gap_timer(evutil_socket_t fd, short ev, void *arg);

static gw_room_t *room_find(gw_worker_t *w, const char *id)
{
    map_node_t *n = map_get(&w->rooms, id);
    return n ? map_entry(n, gw_room_t, node) : NULL;
}

static gw_room_t *room_create(gw_worker_t *w, const char *id)
{
    gw_room_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->w = w;
    r->delivered = -1;
    evtimer_assign(&r->gap_ev, w->base, on_gap_timer, r);
    if (map_put(&w->rooms, &r->node, r->id) < 0) {
        free(r);
        return NULL;
    }
    w->m->g[MG_ROOMS]++;
    char topic[CHAT_MAX_ROOM_ID + 8];
    snprintf(topic, sizeof topic, "room:%s", id);
    bus_sub(w->bus, topic);
    return r;
}

static void pending_free(gw_pending_t *p)
{
    bcast_release(&p->b);
    free(p->data);
    free(p);
}

/* Rooms are freed only when nothing refers to them: no member and no store read in flight
 * (gap fills and catch-ups count in r->reads). */
static void room_maybe_free(gw_room_t *r)
{
    if (r->members || r->reads) return;
    gw_worker_t *w = r->w;
    char topic[CHAT_MAX_ROOM_ID + 8];
    snprintf(topic, sizeof topic, "room:%s", r->id);
    bus_unsub(w->bus, topic);
    map_del(&w->rooms, &r->node);
    event_del(&r->gap_ev);
    while (r->pending) {
        gw_pending_t *p = r->pending;
        r->pending = p->next;
        pending_free(p);
    }
    w->m->g[MG_ROOMS]--;
    free(r);
}

gw_member_t *room_member_find(gw_sock_t *s, const char *room_id)
{
    for (gw_member_t *m = s->rooms; m; m = m->snext)
        if (strcmp(m->room->id, room_id) == 0) return m;
    return NULL;
}

gw_member_t *room_member_add(gw_sock_t *s, const char *room_id)
{
    gw_room_t *r = room_find(s->w, room_id);
    if (!r && !(r = room_create(s->w, room_id))) return NULL;
    gw_member_t *m = calloc(1, sizeof *m);
    if (!m) {
        room_maybe_free(r);
        return NULL;
    }
    m->room = r;
    m->sock = s;
    m->state = MS_JOINING;
    m->last_seq = -1;
    m->rnext = r->members;
    if (r->members) r->members->rprev = m;
    r->members = m;
    r->count++;
    m->snext = s->rooms;
    s->rooms = m;
    s->nrooms++;
    return m;
}

void room_member_remove(gw_member_t *m)
{
    gw_room_t *r = m->room;
    gw_sock_t *s = m->sock;
    if (m->rprev) m->rprev->rnext = m->rnext;
    else r->members = m->rnext;
    if (m->rnext) m->rnext->rprev = m->rprev;
    r->count--;
    for (gw_member_t **pp = &s->rooms; *pp; pp = &(*pp)->snext)
        if (*pp == m) {
            *pp = m->snext;
            break;
        }
    s->nrooms--;
    free(m);
    room_maybe_free(r);
}

/* ---- ordered delivery ---- */

static void deliver_to_members(gw_room_t *r, int64_t seq, gw_bcast_t *b)
{
    gw_worker_t *w = r->w;
    for (gw_member_t *m = r->members; m; m = m->rnext) {
        if (m->state != MS_READY || seq <= m->last_seq) continue;
        m->last_seq = seq;
        sock_push(m->sock, b, EO_NEW_MESSAGE);
    }
    (void)w;
}

/* Deliver pending messages that are now next in line. */
static void drain_pending(gw_room_t *r)
{
    while (r->pending && r->pending->seq <= r->delivered + 1) {
        gw_pending_t *p = r->pending;
        r->pending = p->next;
        if (p->seq == r->delivered + 1) {
            deliver_to_members(r, p->seq, &p->b);
            r->delivered = p->seq;
        }
        pending_free(p);
    }
    if (!r->pending && r->gap_armed) {
        event_del(&r->gap_ev);
        r->gap_armed = 0;
    }
}

static void arm_gap(gw_room_t *r, int ms)
{
    if (r->gap_armed || r->gap_inflight) return;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(&r->gap_ev, &tv);
    r->gap_armed = 1;
}

static void add_pending(gw_room_t *r, int64_t seq, const char *data, size_t len)
{
    gw_pending_t **pp = &r->pending;
    size_t n = 0;
    while (*pp && (*pp)->seq < seq) {
        pp = &(*pp)->next;
        n++;
    }
    if (*pp && (*pp)->seq == seq) return; /* duplicate */
    if (n >= GAP_MAX_PENDING) {
        log_error("room_gap_overflow", "room=%s delivered=%lld seq=%lld", r->id,
                  (long long)r->delivered, (long long)seq);
        return;
    }
    gw_pending_t *p = calloc(1, sizeof *p);
    if (!p) return;
    p->seq = seq;
    p->data = malloc(len + 1);
    if (!p->data) {
        free(p);
        return;
    }
    memcpy(p->data, data, len);
    p->data[len] = '\0';
    bcast_init(&p->b, "new_message", p->data, len);
    p->next = *pp;
    *pp = p;
}

static void room_in_order(gw_room_t *r, int64_t seq, const char *data, size_t len)
{
    if (seq <= r->delivered) return;
    int any_ready = 0;
    for (gw_member_t *m = r->members; m && !any_ready; m = m->rnext) any_ready = m->state == MS_READY;
    if (r->delivered < 0 && !any_ready) {
        /* No baseline yet and nobody to deliver to: this message sets it. Joining members
         * are caught up from the store up to it. */
        r->delivered = seq;
        return;
    }
    if (seq == r->delivered + 1 || r->delivered < 0) {
        gw_bcast_t b;
        bcast_init(&b, "new_message", data, len);
        deliver_to_members(r, seq, &b);
        bcast_release(&b);
        r->delivered = seq;
        drain_pending(r);
        return;
    }
    add_pending(r, seq, data, len);
    arm_gap(r, GAP_WAIT_MS);
}

void room_message(gw_worker_t *w, const char *room_id, int64_t seq, const char *data, size_t len)
{
    gw_room_t *r = room_find(w, room_id);
    if (r) room_in_order(r, seq, data, len);
}

/* Deliver each item of a JSON array of messages (store results) in order. */
static void deliver_list(gw_room_t *r, const char *json, size_t len)
{
    cJSON *arr = cJSON_ParseWithLength(json, len);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "seq");
        if (!cJSON_IsNumber(sq)) continue;
        char *s = cJSON_PrintUnformatted(it);
        if (!s) continue;
        room_in_order(r, (int64_t)sq->valuedouble, s, strlen(s));
        free(s);
    }
    cJSON_Delete(arr);
}

static void on_gap_filled(void *arg, const store_list_t *res)
{
    gw_room_t *r = arg;
    r->reads--;
    r->gap_inflight = 0;
    if (res->err == STORE_OK) {
        r->w->m->c[MC_GAP_FILLS]++;
        /* Treat the fetched messages as if they had arrived in order. */
        int64_t before = r->delivered;
        deliver_list(r, res->json, res->len);
        if (r->pending && r->delivered == before && res->max_seq >= r->pending->seq - 1) {
            /* The store has nothing between: the pending head is next (a publisher's seq
             * jumped, e.g. a message deleted by an operator). Skip the hole. */
            log_warn("room_gap_skipped", "room=%s from=%lld to=%lld", r->id,
                     (long long)r->delivered, (long long)r->pending->seq);
            r->delivered = r->pending->seq - 1;
        }
        drain_pending(r);
    }
    if (r->pending) arm_gap(r, res->err == STORE_OK ? GAP_WAIT_MS : 1000);
    room_maybe_free(r);
}

static void on_gap_timer(evutil_socket_t fd, short ev, void *arg)
{
    gw_room_t *r = arg;
    r->gap_armed = 0;
    if (!r->pending || r->gap_inflight) return;
    r->gap_inflight = 1;
    r->reads++;
    r->w->store->ops->range(r->w->store, r->id, r->delivered, r->pending->seq - 1, on_gap_filled, r);
}

/* ---- joining members ---- */

typedef struct catchup {
    gw_room_t *room;
    gw_sock_t *sock;
} catchup_t;

static void member_catch_up(gw_member_t *m);

static void on_catch_up(void *arg, const store_list_t *res)
{
    catchup_t *cu = arg;
    gw_room_t *r = cu->room;
    gw_sock_t *s = cu->sock;
    r->reads--;
    gw_member_t *m = s->closed ? NULL : room_member_find(s, r->id);
    if (m && m->state == MS_CATCHUP) {
        if (res->err != STORE_OK) {
            /* The client has its history; it will see the gap on the next message and can
             * page back. Live messages flow again. */
            log_warn("room_catch_up_failed", "room=%s user=%s", r->id, s->user ? s->user->id : "-");
            m->state = MS_READY;
        } else {
            cJSON *arr = cJSON_ParseWithLength(res->json, res->len);
            const cJSON *it;
            cJSON_ArrayForEach(it, arr)
            {
                const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "seq");
                if (!cJSON_IsNumber(sq) || (int64_t)sq->valuedouble <= m->last_seq) continue;
                char *txt = cJSON_PrintUnformatted(it);
                if (!txt) continue;
                gw_bcast_t b;
                bcast_init(&b, "new_message", txt, strlen(txt));
                sock_push(s, &b, EO_NEW_MESSAGE);
                bcast_release(&b);
                free(txt);
                m->last_seq = (int64_t)sq->valuedouble;
            }
            cJSON_Delete(arr);
            member_catch_up(m);
        }
    }
    sock_unref(s);
    free(cu);
    if (r->pending) arm_gap(r, GAP_WAIT_MS);
    room_maybe_free(r);
}

/* Ready when the member has everything the room delivered; otherwise read the rest. */
static void member_catch_up(gw_member_t *m)
{
    gw_room_t *r = m->room;
    if (r->delivered <= m->last_seq) {
        m->state = MS_READY;
        return;
    }
    catchup_t *cu = malloc(sizeof *cu);
    if (!cu) {
        m->state = MS_READY;
        return;
    }
    m->state = MS_CATCHUP;
    cu->room = r;
    cu->sock = m->sock;
    sock_ref(m->sock);
    r->reads++;
    r->w->store->ops->range(r->w->store, r->id, m->last_seq, r->delivered, on_catch_up, cu);
}

void room_member_joined(gw_member_t *m, int64_t snapshot_seq)
{
    gw_room_t *r = m->room;
    if (m->last_seq < snapshot_seq) m->last_seq = snapshot_seq;
    if (r->delivered < 0) {
        r->delivered = snapshot_seq;
        /* Drop anything pending that the snapshot already covers, deliver what follows. */
        drain_pending(r);
    }
    member_catch_up(m);
}

void room_event(gw_worker_t *w, const char *room_id, gw_bcast_t *b, gw_sock_t *exclude, int eo)
{
    gw_room_t *r = room_find(w, room_id);
    if (!r) return;
    for (gw_member_t *m = r->members; m; m = m->rnext)
        if (m->state == MS_READY && m->sock != exclude) sock_push(m->sock, b, eo);
}

/* ---- resync after an outage ---- */

static void on_resync(void *arg, const store_list_t *res)
{
    gw_room_t *r = arg;
    r->reads--;
    if (res->err == STORE_OK) deliver_list(r, res->json, res->len);
    if (r->pending) arm_gap(r, GAP_WAIT_MS);
    room_maybe_free(r);
}

void rooms_resync(gw_worker_t *w)
{
    for (map_node_t *n = map_first(&w->rooms); n; n = map_next(&w->rooms, n)) {
        gw_room_t *r = map_entry(n, gw_room_t, node);
        if (r->delivered < 0) continue;
        r->reads++;
        w->store->ops->range(w->store, r->id, r->delivered, INT64_MAX, on_resync, r);
    }
}

void rooms_free_all(gw_worker_t *w)
{
    for (map_node_t *n = map_first(&w->rooms), *next; n; n = next) {
        next = map_next(&w->rooms, n);
        gw_room_t *r = map_entry(n, gw_room_t, node);
        while (r->members) room_member_remove(r->members);
    }
}
