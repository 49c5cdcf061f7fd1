/*
 * store: message storage as seen by a worker, asynchronous, with two backends.
 *
 *  - PostgreSQL (store_pg.c, CHAT_DATABASE_URL set): the source of truth. Non-blocking libpq
 *    driven by the worker's loop, writes of one loop turn grouped into one round trip.
 *  - memory (store_mem.c, no database configured): a per-worker development store for the
 *    single-process modes (dev, echo, conformance). Not durable, not shared between workers.
 *
 * Every call takes a callback that is invoked exactly once with the result, possibly
 * before the call returns (memory backend); JSON in results is only valid during the
 * callback. Message lists are JSON arrays, oldest first, items shaped like new_message /
 * direct_message (built by the backend, passed through to clients without re-encoding).
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "worker.h"

enum store_err {
    STORE_OK = 0,
    STORE_EUNAVAILABLE = -1, /* database unreachable or the write failed */
    STORE_EFORBIDDEN = -2,   /* ACL: not allowed */
    STORE_ENOTFOUND = -3,    /* unknown room (and auto-create is off) */
    STORE_EINTERNAL = -4,
    STORE_EBUSY = -5,        /* too many writes waiting for the database: refused, retry */
};

typedef struct store_sent {
    int err;
    int64_t id;
    int64_t seq; /* room messages */
    int64_t created_ms;
    int dup; /* clientMsgId seen before: ids are the original message's */
    char dup_kind;        /* dup: 'r' (room message) or 'd' (direct message) */
    const char *dup_body; /* dup: the original text (valid during the callback) */
    const char *dup_room; /* dup of a room message: its room */
} store_sent_t;

typedef struct store_list {
    int err;
    const char *json; /* JSON array */
    size_t len;
    int has_more;  /* history pages */
    int truncated; /* join with since: more than the cap */
    int64_t max_seq; /* the room's last seq at the time of the read (join) */
} store_list_t;

typedef void (*store_sent_cb)(void *arg, const store_sent_t *r);
typedef void (*store_list_cb)(void *arg, const store_list_t *r);

typedef struct store_ops {
    void (*user_seen)(gw_store_t *s, const char *user_id, const char *username);
    void (*send_message)(gw_store_t *s, const char *room, const char *user_id, const char *username,
                         const char *text, size_t len, const char *cmid, store_sent_cb cb, void *arg);
    void (*send_dm)(gw_store_t *s, const char *sender, const char *sender_name,
                    const char *recipient, const char *text, size_t len, const char *cmid,
                    store_sent_cb cb, void *arg);
    /* ACL check (creating the room when allowed), then the last 50 messages or, with
     * has_since, every message after `since` up to 1000 (truncated when more). */
    void (*join)(gw_store_t *s, const char *room, const char *user_id, int has_since,
                 int64_t since, store_list_cb cb, void *arg);
    /* Up to `limit` messages before seq `before` (has_before 0: the latest). ACL-checked. */
    void (*history)(gw_store_t *s, const char *room, const char *user_id, int has_before,
                    int64_t before, int limit, store_list_cb cb, void *arg);
    void (*dm_history)(gw_store_t *s, const char *user_id, const char *other, int has_before,
                       int64_t before, int limit, store_list_cb cb, void *arg);
    /* Messages with after < seq <= upto (gap fills and catch-up; no ACL: members only). */
    void (*range)(gw_store_t *s, const char *room, int64_t after, int64_t upto, store_list_cb cb,
                  void *arg);
    int (*ready)(gw_store_t *s);
    /* Requests sent and not yet answered (graceful drain waits for 0). */
    int (*inflight)(gw_store_t *s);
    /* End of the loop turn: send what was grouped. */
    void (*flush)(gw_store_t *s);
    void (*free)(gw_store_t *s);
} store_ops_t;

struct gw_store {
    const store_ops_t *ops;
    gw_worker_t *w;
    /* Room seqs are shared by every worker and instance (PostgreSQL): deliveries are put in
     * seq order. The per-worker memory store has no shared seq, so it is not. */
    int ordered;
};

gw_store_t *store_mem_new(gw_worker_t *w);
gw_store_t *store_pg_new(gw_worker_t *w, const char *conninfo);

#define SINCE_CAP 1000

static inline int store_ready(gw_store_t *s)
{
    return s->ops->ready(s);
}

#endif
