#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "conn.h"
#include "eio.h"
#include "log.h"
#include "rooms.h"
#include "settings.h"
#include "sio.h"
#include "store.h"
#include "utf8.h"

/* ---- sockets ---- */

void sock_ref(gw_sock_t *s)
{
    s->refs++;
}

void sock_unref(gw_sock_t *s)
{
    if (--s->refs == 0) free(s);
}

static void presence_connect(gw_sock_t *s);
static void presence_disconnect(gw_sock_t *s, const char *rooms);

gw_sock_t *chat_sock_open(gw_worker_t *w, int proto, const jwt_identity_t *id, gw_conn_t *conn,
                          gw_eio_t *eio, int nsp)
{
    gw_sock_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->w = w;
    s->refs = 1;
    s->proto = (uint8_t)proto;
    s->nsp = (uint8_t)nsp;
    s->conn = conn;
    s->eio = eio;
    s->tokens_milli = g_cfg.rate_burst * 1000;
    s->bucket_ms = gw_now_ms(w);
    gw_random_id(s->sid, 20);
    if (!user_attach(s, id->sub, id->username)) {
        free(s);
        return NULL;
    }
    s->anext = w->socks;
    if (w->socks) w->socks->aprev = s;
    w->socks = s;
    w->nsocks++;
    w->store->ops->user_seen(w->store, id->sub, id->username);
    presence_connect(s);
    return s;
}

void chat_sock_close(gw_sock_t *s)
{
    if (s->closed) return;
    gw_worker_t *w = s->w;
    s->closed = 1;
    /* The rooms this socket was in, for presence scope "rooms". */
    buf_t rooms = BUF_INIT;
    while (s->rooms) {
        if (rooms.len) buf_append_char(&rooms, ' ');
        buf_append_str(&rooms, s->rooms->room->id);
        room_member_remove(s->rooms);
    }
    presence_disconnect(s, buf_cstr(&rooms));
    buf_free(&rooms);
    user_detach(s);
    if (s->aprev) s->aprev->anext = s->anext;
    else w->socks = s->anext;
    if (s->anext) s->anext->aprev = s->aprev;
    w->nsocks--;
    s->conn = NULL;
    s->eio = NULL;
    sock_unref(s);
}

void sock_send_frame(gw_sock_t *s, gw_frame_t *f)
{
    if (!f) return;
    if (s->closed) {
        frame_unref(f);
    } else if (s->proto == SP_RAW) {
        conn_send(s->conn, f);
    } else {
        sio_send(s->eio, f);
    }
}

void sock_push(gw_sock_t *s, gw_bcast_t *b, int eo)
{
    if (s->closed) return;
    int variant = s->proto == SP_RAW ? GW_VARIANT_RAW : GW_VARIANT_SIO + s->nsp;
    gw_frame_t *f = bcast_frame(b, variant);
    if (!f) return;
    s->w->m->c[MC_FANOUT_DELIVERIES]++;
    s->w->m->ev_out[eo]++;
    sock_send_frame(s, frame_ref(f));
}

/* ---- replies ---- */

void chat_reply(gw_req_t *r, const char *json, size_t len)
{
    gw_sock_t *s = r->sock;
    if (s->closed) return;
    buf_t b = BUF_INIT;
    if (s->proto == SP_RAW) {
        if (!r->id[0]) return;
        env_encode_ack(&b, r->id, json, len);
    } else {
        if (r->ack_id < 0) return;
        const char *nsp = gw_nsp_names[s->nsp];
        sio_encode_ack(&b, nsp, strlen(nsp), r->ack_id, json, len);
    }
    s->w->m->ev_out[EO_ACK]++;
    sock_send_frame(s, frame_ws(WS_OP_TEXT, b.data, b.len));
    buf_free(&b);
}

void chat_fail(gw_req_t *r, chat_err_t code, const char *message)
{
    gw_sock_t *s = r->sock;
    s->w->m->err[code]++;
    /* One line per error; a flood is logged once, when the bucket runs dry. */
    if (code != CHAT_ERR_RATE_LIMITED || !s->limited) {
        int n;
        const char *const *names = chat_event_names(&n);
        log_info("request_error", "user=%s sid=%s request=%s code=%s msg=\"%s\"",
                 s->user ? s->user->id : "-", s->sid, r->ev < n ? names[r->ev] : "-",
                 chat_err_code(code), message);
    }
    if (code == CHAT_ERR_RATE_LIMITED) s->limited = 1;
    if (s->closed) return;
    buf_t b = BUF_INIT;
    s->w->m->ev_out[EO_ERROR]++;
    if (s->proto == SP_RAW) {
        env_encode_error(&b, r->id, code, message);
        sock_send_frame(s, frame_ws(WS_OP_TEXT, b.data, b.len));
    } else {
        /* Socket.IO: an `error` event, and the ack callback (if any) gets {error: ...}. */
        const char *nsp = gw_nsp_names[s->nsp];
        buf_t d = BUF_INIT;
        env_error_data(&d, code, message);
        sio_encode_event(&b, nsp, strlen(nsp), "error", d.data, d.len);
        sock_send_frame(s, frame_ws(WS_OP_TEXT, b.data, b.len));
        if (r->ack_id >= 0) {
            buf_reset(&b);
            buf_t e = BUF_INIT;
            buf_append_str(&e, "{\"error\":");
            buf_append(&e, d.data, d.len);
            buf_append_char(&e, '}');
            sio_encode_ack(&b, nsp, strlen(nsp), r->ack_id, e.data, e.len);
            sock_send_frame(s, frame_ws(WS_OP_TEXT, b.data, b.len));
            buf_free(&e);
        }
        buf_free(&d);
    }
    buf_free(&b);
}

static void reply_empty(gw_req_t *r)
{
    chat_reply(r, "{}", 2);
}

static chat_err_t store_err_code(int err, const char **msg)
{
    *msg = "internal error";
    switch (err) {
    case STORE_EFORBIDDEN:
        *msg = "not allowed in this room";
        return CHAT_ERR_FORBIDDEN;
    case STORE_ENOTFOUND:
        *msg = "room not found";
        return CHAT_ERR_NOT_FOUND;
    case STORE_EUNAVAILABLE:
        *msg = "storage unavailable, retry later";
        return CHAT_ERR_UNAVAILABLE;
    case STORE_EBUSY:
        *msg = "storage busy, retry later";
        return CHAT_ERR_UNAVAILABLE;
    default:
        return CHAT_ERR_INTERNAL;
    }
}

/* A pending request: a copy of the request (holding a socket reference) and owned copies
 * of what the reply and the publish need, since the socket (and its user entry) may be
 * gone when the store answers. */
typedef struct chat_op {
    gw_req_t req;
    char room[CHAT_MAX_ROOM_ID + 1]; /* room id, or the other user of a DM */
    char user_id[CHAT_MAX_USER_ID + 1];
    char username[JWT_MAX_USERNAME + 1];
    int newly;
    int has_since;
    size_t text_len;
    char text[];
} chat_op_t;

static chat_op_t *op_new(gw_req_t *r, const char *text, size_t len)
{
    chat_op_t *op = calloc(1, sizeof *op + len + 1);
    if (!op) {
        chat_fail(r, CHAT_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    op->req = *r;
    sock_ref(r->sock);
    snprintf(op->user_id, sizeof op->user_id, "%s", r->sock->user->id);
    snprintf(op->username, sizeof op->username, "%s", r->sock->user->username);
    if (len) memcpy(op->text, text, len);
    op->text_len = len;
    return op;
}

static void op_free(chat_op_t *op)
{
    sock_unref(op->req.sock);
    free(op);
}

/* ---- publishing ---- */

int chat_eo_index(const char *e)
{
    static const char *const names[EO__COUNT] = {
        "new_message", "user_joined_room", "user_left_room", "user_typing", "direct_message",
        "user_online", "user_offline", "user-joined", "user-left", "message", "ack", "error"};
    for (int i = 0; i < EO_OTHER; i++)
        if (strcmp(names[i], e) == 0) return i;
    return EO_OTHER;
}

static void deliver_local(gw_worker_t *w, const char *topic, gw_bcast_t *b, gw_sock_t *exclude,
                          int64_t seq)
{
    int eo = chat_eo_index(b->event);
    if (strncmp(topic, "room:", 5) == 0) {
        if (seq >= 0) {
            /* Send-to-deliver latency: from the commit timestamp to reaching this worker. */
            long long ts = chat_message_ts(b->data, b->data_len);
            if (ts > 0) {
                double d = (double)(gw_now_ms(w) - ts) / 1000.0;
                metrics_observe(w->m, MH_DELIVER_LATENCY, d > 0 ? d : 0);
            }
        }
        if (seq >= 0 && w->store->ordered) room_message(w, topic + 5, seq, b->data, b->data_len);
        else room_event(w, topic + 5, b, exclude, eo);
    } else if (strncmp(topic, "user:", 5) == 0) {
        gw_user_t *u = user_find(w, topic + 5);
        for (gw_sock_t *s = u ? u->socks : NULL; s; s = s->unext)
            if (s != exclude) sock_push(s, b, eo);
    } else if (strcmp(topic, "all") == 0) {
        for (gw_sock_t *s = w->socks; s; s = s->anext)
            if (s != exclude) sock_push(s, b, eo);
    }
}

void chat_publish(gw_worker_t *w, const char *topic, const char *event, const char *data,
                  size_t len, gw_sock_t *exclude, int64_t seq)
{
    gw_bcast_t b;
    bcast_init(&b, event, data, len);
    deliver_local(w, topic, &b, exclude, seq);
    bcast_release(&b);
    if (!bus_clustered(w->bus)) return;
    /* {"event", "data"}; the broker adds "origin" (its host's id) before publishing to
     * Redis: see docs/ARCHITECTURE.md, "Redis channels and payloads". */
    buf_t p = BUF_INIT;
    buf_append_str(&p, "{\"event\":");
    jsonw_cstr(&p, event);
    buf_append_str(&p, ",\"data\":");
    buf_append(&p, data, len);
    buf_append_char(&p, '}');
    bus_publish(w->bus, topic, p.data, p.len);
    buf_free(&p);
}

void chat_bus_message(gw_worker_t *w, const char *topic, const char *payload, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(payload, len);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "event");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (!cJSON_IsString(ev) || !*ev->valuestring || strlen(ev->valuestring) > CHAT_MAX_EVENT_NAME) {
        log_warn("bus_bad_payload", "topic=%s len=%zu", topic, len);
        cJSON_Delete(j);
        return;
    }
    char *d = data ? cJSON_PrintUnformatted(data) : NULL;
    int64_t seq = -1;
    if (strncmp(topic, "room:", 5) == 0 && strcmp(ev->valuestring, "new_message") == 0) {
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(data, "seq");
        if (cJSON_IsNumber(sq) && sq->valuedouble >= 1) seq = (int64_t)sq->valuedouble;
    }
    gw_bcast_t b;
    bcast_init(&b, ev->valuestring, d ? d : "null", d ? strlen(d) : 4);
    deliver_local(w, topic, &b, NULL, seq);
    bcast_release(&b);
    free(d);
    cJSON_Delete(j);
}

void chat_bus_status(gw_worker_t *w, int up)
{
    log_info("cluster_bus", "state=%s", up ? "up" : "down");
    /* Back from an outage: read what was committed meanwhile. */
    if (up) rooms_resync(w);
}

void chat_bus_resync(gw_worker_t *w)
{
    char topic[CHAT_MAX_ROOM_ID + 8];
    for (map_node_t *n = map_first(&w->rooms); n; n = map_next(&w->rooms, n)) {
        snprintf(topic, sizeof topic, "room:%s", map_entry(n, gw_room_t, node)->id);
        bus_sub(w->bus, topic);
    }
    for (map_node_t *n = map_first(&w->users); n; n = map_next(&w->users, n)) {
        gw_user_t *u = map_entry(n, gw_user_t, node);
        snprintf(topic, sizeof topic, "user:%s", u->id);
        bus_sub(w->bus, topic);
        for (gw_sock_t *s = u->socks; s; s = s->unext) bus_conn_up(w->bus, u->id, u->username);
    }
}

/* ---- presence ---- */

static void user_json(buf_t *b, const gw_user_t *u)
{
    buf_append_str(b, "{\"userId\":");
    jsonw_user_id(b, u->id);
    buf_append_str(b, ",\"username\":");
    jsonw_cstr(b, u->username);
    buf_append_char(b, '}');
}

static void seed004_event(gw_sock_t *s, const char *event, const char *message, gw_sock_t *exclude)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "{\"message\":");
    jsonw_cstr(&b, message);
    buf_append_str(&b, ",\"userId\":");
    jsonw_user_id(&b, s->user->id);
    buf_append_str(&b, ",\"username\":");
    jsonw_cstr(&b, s->user->username);
    buf_append_char(&b, '}');
    chat_publish(s->w, "all", event, b.data, b.len, exclude, -1);
    buf_free(&b);
}

static void presence_connect(gw_sock_t *s)
{
    gw_worker_t *w = s->w;
    if (bus_clustered(w->bus)) {
        /* The broker knows every worker and instance: it decides "first connection". */
        bus_conn_up(w->bus, s->user->id, s->user->username);
    } else if (s->user->nsocks == 1 && g_cfg.presence_events == PRESENCE_GLOBAL) {
        buf_t b = BUF_INIT;
        user_json(&b, s->user);
        chat_publish(w, "all", "user_online", b.data, b.len, NULL, -1);
        buf_free(&b);
    }
    if (g_cfg.presence_events == PRESENCE_GLOBAL)
        seed004_event(s, "user-joined", "A user joined the chat", s);
}

static void presence_disconnect(gw_sock_t *s, const char *rooms)
{
    gw_worker_t *w = s->w;
    if (bus_clustered(w->bus)) {
        bus_conn_down(w->bus, s->user->id, rooms);
    } else if (s->user->nsocks == 1 && g_cfg.presence_events != PRESENCE_NONE) {
        buf_t b = BUF_INIT;
        user_json(&b, s->user);
        if (g_cfg.presence_events == PRESENCE_GLOBAL) {
            chat_publish(w, "all", "user_offline", b.data, b.len, s, -1);
        } else {
            char topic[CHAT_MAX_ROOM_ID + 8];
            const char *p = rooms;
            while (*p) {
                const char *sp = strchr(p, ' ');
                size_t l = sp ? (size_t)(sp - p) : strlen(p);
                snprintf(topic, sizeof topic, "room:%.*s", (int)l, p);
                chat_publish(w, topic, "user_offline", b.data, b.len, s, -1);
                p += l;
                while (*p == ' ') p++;
            }
        }
        buf_free(&b);
    }
    if (g_cfg.presence_events == PRESENCE_GLOBAL)
        seed004_event(s, "user-left", "A user left the chat", s);
}

/* ---- handlers ---- */

static void room_user_event_extra(gw_sock_t *s, const char *room, const char *event,
                                  const char *extra)
{
    buf_t b = BUF_INIT;
    buf_append_str(&b, "{\"roomId\":");
    jsonw_cstr(&b, room);
    buf_append_str(&b, ",\"userId\":");
    jsonw_user_id(&b, s->user->id);
    buf_append_str(&b, ",\"username\":");
    jsonw_cstr(&b, s->user->username);
    if (extra) buf_append_str(&b, extra);
    buf_append_char(&b, '}');
    char topic[CHAT_MAX_ROOM_ID + 8];
    snprintf(topic, sizeof topic, "room:%s", room);
    chat_publish(s->w, topic, event, b.data, b.len, s, -1);
    buf_free(&b);
}

static void room_user_event(gw_sock_t *s, const char *room, const char *event)
{
    room_user_event_extra(s, room, event, NULL);
}

/* Can a write be accepted now? Refused (UNAVAILABLE) while the cluster bus is down, since
 * the message could not be delivered, and while draining, since the client is about to be
 * told to reconnect (its retry, with the same clientMsgId, goes to another instance). */
static int writable(gw_sock_t *s, gw_req_t *r)
{
    if (s->w->draining) {
        chat_fail(r, CHAT_ERR_UNAVAILABLE, "server is draining, reconnect and retry");
        return 0;
    }
    if (!bus_can_publish(s->w->bus)) {
        chat_fail(r, CHAT_ERR_UNAVAILABLE, "cluster bus unavailable, retry later");
        return 0;
    }
    return 1;
}

/* A reply to join_room {since} must fit in the connection's outbound queue: one larger than
 * CHAT_MAX_OUTBUF (1000 long messages are) closed the connection as a slow consumer on
 * every attempt, and the client could never recover. Keep the oldest messages that fit in
 * half the cap (the other half is for live traffic queued meanwhile) and report truncated,
 * as for the count cap: the client continues with since = the last seq it received. The
 * live stream is unaffected (it continues after the snapshot, as with the count cap).
 * Returns -1 when the reply fits as it is, else fills `b` with the array to send and
 * returns 1 when messages were left out, 0 when none were. */
static int join_fit(const store_list_t *res, buf_t *b)
{
    size_t budget = (size_t)g_cfg.max_outbuf / 2;
    if (res->len <= budget) return -1;
    cJSON *arr = cJSON_ParseWithLength(res->json, res->len);
    if (!arr) return -1;
    int dropped = 0;
    buf_append_char(b, '[');
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, arr)
    {
        char *txt = cJSON_PrintUnformatted(it);
        if (!txt) break;
        size_t l = strlen(txt);
        if (n > 0 && b->len + l + 2 > budget) {
            free(txt);
            dropped = 1;
            break;
        }
        if (n++) buf_append_char(b, ',');
        buf_append(b, txt, l);
        free(txt);
    }
    buf_append_char(b, ']');
    cJSON_Delete(arr);
    return dropped;
}

static void on_joined(void *arg, const store_list_t *res)
{
    chat_op_t *op = arg;
    gw_sock_t *s = op->req.sock;
    if (!s->closed) {
        gw_member_t *m = room_member_find(s, op->room);
        if (res->err != STORE_OK) {
            if (m && op->newly && m->state == MS_JOINING) room_member_remove(m);
            const char *msg;
            chat_err_t code = store_err_code(res->err, &msg);
            chat_fail(&op->req, code, msg);
        } else {
            buf_t b = BUF_INIT, fit = BUF_INIT;
            int cut = op->has_since ? join_fit(res, &fit) : -1;
            buf_append_str(&b, "{\"joined\":");
            jsonw_cstr(&b, op->room);
            buf_append_str(&b, ",\"messages\":");
            if (cut >= 0) buf_append(&b, fit.data, fit.len);
            else buf_append(&b, res->json, res->len);
            buf_free(&fit);
            if (op->has_since) buf_printf(&b, ",\"truncated\":%s", cut == 1 || res->truncated ? "true" : "false");
            buf_append_char(&b, '}');
            chat_reply(&op->req, b.data, b.len);
            buf_free(&b);
            if (m && m->state == MS_JOINING) room_member_joined(m, res->max_seq);
            if (m && op->newly) room_user_event(s, op->room, "user_joined_room");
        }
    }
    op_free(op);
}

static void h_join(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    req_join_t q;
    const char *why;
    if (req_parse_join(data, &q, &why) < 0) {
        chat_fail(r, CHAT_ERR_VALIDATION, why);
        return;
    }
    gw_member_t *m = room_member_find(s, q.room_id);
    int newly = m == NULL;
    if (newly) {
        if (s->nrooms >= GW_MAX_ROOMS_PER_SOCK) {
            chat_fail(r, CHAT_ERR_VALIDATION, "too many rooms on this connection");
            return;
        }
        if (!(m = room_member_add(s, q.room_id))) {
            chat_fail(r, CHAT_ERR_INTERNAL, "out of memory");
            return;
        }
    }
    chat_op_t *op = op_new(r, NULL, 0);
    if (!op) {
        if (newly) room_member_remove(m);
        return;
    }
    snprintf(op->room, sizeof op->room, "%s", q.room_id);
    op->newly = newly;
    op->has_since = q.has_since;
    s->w->store->ops->join(s->w->store, q.room_id, s->user->id, q.has_since, q.since, on_joined, op);
}

static void h_leave(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    req_room_t q;
    const char *why;
    if (req_parse_room(data, &q, &why) < 0) {
        chat_fail(r, CHAT_ERR_VALIDATION, why);
        return;
    }
    gw_member_t *m = room_member_find(s, q.room_id);
    int was_ready = m && m->state == MS_READY;
    if (m) room_member_remove(m);
    buf_t b = BUF_INIT;
    buf_append_str(&b, "{\"left\":");
    jsonw_cstr(&b, q.room_id);
    buf_append_char(&b, '}');
    chat_reply(r, b.data, b.len);
    buf_free(&b);
    if (was_ready) room_user_event(s, q.room_id, "user_left_room");
}

static void on_sent(void *arg, const store_sent_t *res)
{
    chat_op_t *op = arg;
    gw_worker_t *w = op->req.sock->w;
    if (res->err != STORE_OK) {
        const char *msg;
        chat_err_t code = store_err_code(res->err, &msg);
        chat_fail(&op->req, code, msg);
        op_free(op);
        return;
    }
    char ack[128];
    int n = res->seq > 0
                ? snprintf(ack, sizeof ack, "{\"sent\":true,\"messageId\":%lld,\"seq\":%lld}",
                           (long long)res->id, (long long)res->seq)
                : snprintf(ack, sizeof ack, "{\"sent\":true,\"messageId\":%lld}", (long long)res->id);
    chat_reply(&op->req, ack, (size_t)n);
    const char *room = op->room, *text = op->text;
    size_t text_len = op->text_len;
    if (res->dup) {
        /* A retry. Publish the original again: if the first attempt's publish was lost
         * (the sender saw UNAVAILABLE after a commit), this delivers it; receivers that
         * have it drop it by seq. Nothing new is ever delivered. */
        if (res->dup_kind != 'r' || !res->dup_body || !res->dup_room || res->seq <= 0 ||
            !w->store->ordered) {
            op_free(op);
            return;
        }
        room = res->dup_room;
        text = res->dup_body;
        text_len = strlen(text);
    } else {
        w->m->c[MC_ACKED_SENDS]++;
    }
    /* Committed: publish whether or not the sender is still connected. */
    buf_t b = BUF_INIT;
    chat_fmt_room_message(&b, res->id, res->seq, text, text_len, room, op->user_id, op->username,
                          res->created_ms);
    char topic[CHAT_MAX_ROOM_ID + 8];
    snprintf(topic, sizeof topic, "room:%s", room);
    chat_publish(w, topic, "new_message", b.data, b.len, NULL, res->seq);
    buf_free(&b);
    op_free(op);
}

static void h_send(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    req_send_t q;
    const char *why;
    if (req_parse_send(data, (size_t)g_cfg.max_message_chars, &q, &why) < 0) {
        chat_fail(r, CHAT_ERR_VALIDATION, why);
        return;
    }
    gw_member_t *m = room_member_find(s, q.room_id);
    if (!m || m->state == MS_JOINING) {
        chat_fail(r, CHAT_ERR_FORBIDDEN, "join the room first (wait for the join_room ack)");
        return;
    }
    if (!writable(s, r)) return;
    chat_op_t *op = op_new(r, q.text, q.text_len);
    if (!op) return;
    snprintf(op->room, sizeof op->room, "%s", q.room_id);
    s->w->store->ops->send_message(s->w->store, q.room_id, op->user_id, op->username, op->text,
                                   op->text_len, q.client_msg_id, on_sent, op);
}

static void h_typing(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    req_typing_t q;
    const char *why;
    if (req_parse_typing(data, &q, &why) < 0) {
        chat_fail(r, CHAT_ERR_VALIDATION, why);
        return;
    }
    gw_member_t *m = room_member_find(s, q.room_id);
    if (!m || m->state == MS_JOINING) {
        chat_fail(r, CHAT_ERR_FORBIDDEN, "join the room first");
        return;
    }
    room_user_event_extra(s, q.room_id, "user_typing", q.is_typing ? ",\"isTyping\":true" : ",\"isTyping\":false");
    reply_empty(r);
}

static void on_dm_sent(void *arg, const store_sent_t *res)
{
    chat_op_t *op = arg;
    gw_sock_t *s = op->req.sock;
    gw_worker_t *w = s->w;
    if (res->err != STORE_OK) {
        const char *msg;
        chat_err_t code = store_err_code(res->err, &msg);
        chat_fail(&op->req, code, msg);
        op_free(op);
        return;
    }
    char ack[96];
    int n = snprintf(ack, sizeof ack, "{\"sent\":true,\"messageId\":%lld}", (long long)res->id);
    chat_reply(&op->req, ack, (size_t)n);
    if (!res->dup) {
        w->m->c[MC_ACKED_DMS]++;
        buf_t b = BUF_INIT;
        chat_fmt_direct_message(&b, res->id, op->text, op->text_len, op->user_id, op->username,
                                op->room, res->created_ms);
        char topic[CHAT_MAX_USER_ID + 8];
        snprintf(topic, sizeof topic, "user:%s", op->room);
        chat_publish(w, topic, "direct_message", b.data, b.len, s->closed ? NULL : s, -1);
        if (strcmp(op->room, op->user_id) != 0) {
            /* The sender's other sockets, anywhere in the cluster. */
            snprintf(topic, sizeof topic, "user:%s", op->user_id);
            chat_publish(w, topic, "direct_message", b.data, b.len, s->closed ? NULL : s, -1);
        }
        buf_free(&b);
    }
    op_free(op);
}

static void h_dm(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    req_send_t q;
    const char *why;
    if (req_parse_dm(data, (size_t)g_cfg.max_message_chars, &q, &why) < 0) {
        chat_fail(r, CHAT_ERR_VALIDATION, why);
        return;
    }
    if (!writable(s, r)) return;
    chat_op_t *op = op_new(r, q.text, q.text_len);
    if (!op) return;
    snprintf(op->room, sizeof op->room, "%s", q.room_id);
    s->w->store->ops->send_dm(s->w->store, op->user_id, op->username, q.room_id, op->text,
                              op->text_len, q.client_msg_id, on_dm_sent, op);
}

static void on_page(void *arg, const store_list_t *res)
{
    chat_op_t *op = arg;
    if (res->err != STORE_OK) {
        const char *msg;
        chat_err_t code = store_err_code(res->err, &msg);
        chat_fail(&op->req, code, msg);
    } else {
        buf_t b = BUF_INIT;
        buf_append_str(&b, "{\"messages\":");
        buf_append(&b, res->json, res->len);
        buf_printf(&b, ",\"hasMore\":%s}", res->has_more ? "true" : "false");
        chat_reply(&op->req, b.data, b.len);
        buf_free(&b);
    }
    op_free(op);
}

static void h_history(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    req_page_t q;
    const char *why;
    if (req_parse_history(data, &q, &why) < 0) {
        chat_fail(r, CHAT_ERR_VALIDATION, why);
        return;
    }
    chat_op_t *op = op_new(r, NULL, 0);
    if (!op) return;
    s->w->store->ops->history(s->w->store, q.id, op->user_id, q.has_before, q.before, q.limit,
                              on_page, op);
}

static void h_dm_history(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    req_page_t q;
    const char *why;
    if (req_parse_dm_history(data, &q, &why) < 0) {
        chat_fail(r, CHAT_ERR_VALIDATION, why);
        return;
    }
    chat_op_t *op = op_new(r, NULL, 0);
    if (!op) return;
    s->w->store->ops->dm_history(s->w->store, op->user_id, q.id, q.has_before, q.before, q.limit,
                                 on_page, op);
}

static void on_online(void *arg, const char *json, size_t len)
{
    chat_op_t *op = arg;
    if (!json) chat_fail(&op->req, CHAT_ERR_UNAVAILABLE, "presence unavailable, retry later");
    else chat_reply(&op->req, json, len);
    op_free(op);
}

static void h_online(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    gw_worker_t *w = s->w;
    if (bus_clustered(w->bus)) {
        chat_op_t *op = op_new(r, NULL, 0);
        if (op) bus_online(w->bus, on_online, op);
        return;
    }
    buf_t b = BUF_INIT;
    buf_append_char(&b, '[');
    for (map_node_t *n = map_first(&w->users); n; n = map_next(&w->users, n)) {
        if (b.len > 1) buf_append_char(&b, ',');
        user_json(&b, map_entry(n, gw_user_t, node));
    }
    buf_append_char(&b, ']');
    chat_reply(r, b.data, b.len);
    buf_free(&b);
}

/* Seed 004: `newMessage` with a string broadcasts `message` to everyone. */
static void h_new_message(gw_sock_t *s, const cJSON *data, gw_req_t *r)
{
    if (!cJSON_IsString(data)) {
        chat_fail(r, CHAT_ERR_VALIDATION, "newMessage data must be a string");
        return;
    }
    const char *t = data->valuestring;
    size_t n = strlen(t);
    int blank = 1;
    for (size_t i = 0; i < n && blank; i++) blank = t[i] == ' ' || (t[i] >= '\t' && t[i] <= '\r');
    if (blank) {
        chat_fail(r, CHAT_ERR_VALIDATION, "message must not be empty");
        return;
    }
    if (utf8_count((const uint8_t *)t, n) > (size_t)g_cfg.max_message_chars) {
        chat_fail(r, CHAT_ERR_VALIDATION, "message is too long");
        return;
    }
    buf_t b = BUF_INIT;
    jsonw_str(&b, t, n);
    chat_publish(s->w, "all", "message", b.data, b.len, NULL, -1);
    buf_free(&b);
    reply_empty(r);
}

/* ---- dispatch ---- */

typedef void (*chat_handler_fn)(gw_sock_t *s, const cJSON *data, gw_req_t *r);

static const struct chat_event {
    const char *name;
    chat_handler_fn fn;
} events[] = {
    {"join_room", h_join},       {"leave_room", h_leave},
    {"send_message", h_send},    {"typing", h_typing},
    {"direct_message", h_dm},    {"history", h_history},
    {"dm_history", h_dm_history}, {"get_online_users", h_online},
    {"newMessage", h_new_message},
};
#define N_EVENTS (int)(sizeof events / sizeof *events)

const char *const *chat_event_names(int *n)
{
    static const char *names[N_EVENTS + 1];
    for (int i = 0; i < N_EVENTS; i++) names[i] = events[i].name;
    names[N_EVENTS] = "unknown";
    *n = N_EVENTS + 1;
    return names;
}

/* Token bucket: CHAT_RATE_LIMIT events/s, bursts of CHAT_RATE_BURST. */
static int rate_take(gw_sock_t *s)
{
    int64_t now = gw_now_ms(s->w);
    int64_t cap = g_cfg.rate_burst * 1000;
    if (now > s->bucket_ms) {
        s->tokens_milli += (now - s->bucket_ms) * g_cfg.rate_limit;
        if (s->tokens_milli > cap) s->tokens_milli = cap;
        s->bucket_ms = now;
    }
    if (s->tokens_milli < 1000) return 0;
    s->tokens_milli -= 1000;
    s->limited = 0;
    return 1;
}

static void dispatch(gw_sock_t *s, const char *event, const cJSON *data, gw_req_t *r)
{
    for (int i = 0; i < N_EVENTS; i++) {
        if (strcmp(events[i].name, event) != 0) continue;
        r->ev = (uint8_t)i;
        s->w->m->ev_in[i]++;
        events[i].fn(s, data, r);
        return;
    }
    s->w->m->ev_in[N_EVENTS]++;
    chat_fail(r, CHAT_ERR_UNKNOWN_EVENT, "unknown event");
}

void chat_raw_message(gw_sock_t *s, const char *text, size_t len)
{
    gw_req_t r = {.sock = s, .ack_id = -1, .ev = N_EVENTS};
    env_msg_t m;
    const char *why = NULL;
    int rc = env_parse(text, len, &m, &why);
    memcpy(r.id, m.id, sizeof r.id);
    if (!rate_take(s)) {
        s->w->m->c[MC_RATE_LIMITED]++;
        chat_fail(&r, CHAT_ERR_RATE_LIMITED, "rate limit exceeded, slow down");
    } else if (rc < 0) {
        chat_fail(&r, CHAT_ERR_VALIDATION, why);
    } else {
        dispatch(s, m.event, m.data, &r);
    }
    env_free(&m);
}

void chat_sio_event(gw_sock_t *s, const char *json, size_t len, long long ack_id)
{
    gw_req_t r = {.sock = s, .ack_id = ack_id, .ev = N_EVENTS};
    if (!rate_take(s)) {
        s->w->m->c[MC_RATE_LIMITED]++;
        chat_fail(&r, CHAT_ERR_RATE_LIMITED, "rate limit exceeded, slow down");
        return;
    }
    cJSON *arr = cJSON_ParseWithLength(json, len);
    const cJSON *ev = cJSON_GetArrayItem(arr, 0);
    if (!cJSON_IsArray(arr) || !cJSON_IsString(ev) || !*ev->valuestring) {
        chat_fail(&r, CHAT_ERR_VALIDATION, "event must be [name, data]");
    } else if (json_has_nul(json, len)) {
        chat_fail(&r, CHAT_ERR_VALIDATION, "strings must not contain NUL (\\u0000)");
    } else if (g_cfg.conformance) {
        sio_conformance_event(s, arr, ack_id);
    } else {
        dispatch(s, ev->valuestring, cJSON_GetArrayItem(arr, 1), &r);
    }
    cJSON_Delete(arr);
}
