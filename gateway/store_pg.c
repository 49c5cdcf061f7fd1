/*
 * The PostgreSQL store (CHAT_DATABASE_URL). Two pipelined connections per worker: one for
 * writes, one for reads, so that history and joins never queue behind a commit.
 *
 * Writes are grouped: the send_messages of a loop turn become one call of
 * chat_send_messages() — one round trip, one transaction, one WAL flush — and the next
 * call leaves when the previous one has committed, so calls grow with the load (group
 * commit). Direct messages and user upserts are batched the same way. Acks are built only
 * from the result of that call, i.e. after COMMIT; any failure is UNAVAILABLE.
 *
 * Bounded: a call carries at most CHAT_DB_BATCH rows (the rest wait for the next call, in
 * order), and at most CHAT_DB_MAX_PENDING rows of a kind may wait or be in flight; beyond
 * that a send is refused at once (UNAVAILABLE, "storage busy") instead of queueing for
 * ever when the database is slower than the offered load.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"
#include "settings.h"
#include "store.h"

typedef struct pg_req {
    store_sent_cb cb;
    void *arg;
} pg_req_t;

/* Rows for one call: text[] literals (without the closing brace) and the callback of each
 * row. */
typedef struct pg_rows {
    struct pg_rows *next;
    buf_t col[4];
    pg_req_t *reqs;
    int n, cap;
} pg_rows_t;

/* The calls of one kind waiting to leave, oldest first; one is in flight at a time. */
typedef struct pg_batch {
    const char *sql;
    int ncols;
    int dm;
    pg_rows_t *head, *tail;
    int queued;   /* rows in head..tail */
    int inflight; /* rows in the call in flight (0: none) */
} pg_batch_t;

typedef struct pg_store {
    gw_store_t base;
    pgconn_t *wr, *rd;
    pg_batch_t msgs, dms, users;
} pg_store_t;

static void arr_add(buf_t *b, const char *s, size_t len)
{
    buf_append_char(b, b->len ? ',' : '{');
    if (!s) {
        buf_append_str(b, "NULL");
        return;
    }
    buf_append_char(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '"' && s[i] != '\\') continue;
        buf_append(b, s + run, i - run);
        buf_append_char(b, '\\');
        run = i;
    }
    buf_append(b, s + run, len - run);
    buf_append_char(b, '"');
}

static void fail_sent(store_sent_cb cb, void *arg, int err)
{
    store_sent_t r;
    memset(&r, 0, sizeof r);
    r.err = err;
    cb(arg, &r);
}

static long long num(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : atoll(PQgetvalue(r, row, col));
}

static void rows_free(pg_rows_t *rows)
{
    for (int i = 0; i < 4; i++) buf_free(&rows->col[i]);
    free(rows->reqs);
    free(rows);
}

/* Queue one row; cols[i] NULL is SQL NULL. Only rows with a callback (sends) are refused
 * when the queue is full: user upserts are not worth an error and are bounded by the
 * connections themselves. */
static void batch_add(pg_store_t *s, pg_batch_t *bt, const char *const *cols, const size_t *lens,
                      store_sent_cb cb, void *arg)
{
    if (!pgc_ready(s->wr)) {
        if (cb) fail_sent(cb, arg, STORE_EUNAVAILABLE);
        return;
    }
    if (cb && bt->queued + bt->inflight >= g_cfg.db_max_pending) {
        s->base.w->m->c[MC_DB_BUSY]++;
        fail_sent(cb, arg, STORE_EBUSY);
        return;
    }
    pg_rows_t *t = bt->tail;
    if (!t || t->n >= g_cfg.db_batch) {
        t = calloc(1, sizeof *t);
        if (!t) {
            if (cb) fail_sent(cb, arg, STORE_EINTERNAL);
            return;
        }
        if (bt->tail) bt->tail->next = t;
        else bt->head = t;
        bt->tail = t;
    }
    if (t->n == t->cap) {
        int nc = t->cap ? t->cap * 2 : 64;
        pg_req_t *r = realloc(t->reqs, (size_t)nc * sizeof *r);
        if (!r) {
            if (cb) fail_sent(cb, arg, STORE_EINTERNAL);
            return;
        }
        t->reqs = r;
        t->cap = nc;
    }
    for (int i = 0; i < bt->ncols; i++) arr_add(&t->col[i], cols[i], lens[i]);
    t->reqs[t->n].cb = cb;
    t->reqs[t->n].arg = arg;
    t->n++;
    bt->queued++;
    gw_want_flush(s->base.w);
}

typedef struct batch_call {
    pg_store_t *s;
    pg_batch_t *bt;
    pg_rows_t *rows;
} batch_call_t;

static void on_batch(void *arg, PGresult *res, const char *err)
{
    batch_call_t *bc = arg;
    pg_batch_t *bt = bc->bt;
    pg_rows_t *rows = bc->rows;
    bt->inflight = 0;
    int nres = res ? PQntuples(res) : 0;
    for (int i = 0; i < rows->n; i++) {
        if (!rows->reqs[i].cb) continue;
        store_sent_t r;
        memset(&r, 0, sizeof r);
        r.err = STORE_EUNAVAILABLE;
        if (res && i < nres) {
            /* idx, id, [seq], created_ms, dup, kind, body, [room, err] */
            int c = 1;
            r.id = num(res, i, c++);
            r.seq = bt->dm ? 0 : num(res, i, c++);
            r.created_ms = num(res, i, c++);
            r.dup = PQgetvalue(res, i, c++)[0] == 't';
            r.dup_kind = PQgetvalue(res, i, c++)[0];
            r.dup_body = PQgetisnull(res, i, c) ? NULL : PQgetvalue(res, i, c);
            c++;
            if (!bt->dm) {
                r.dup_room = PQgetisnull(res, i, c) ? NULL : PQgetvalue(res, i, c);
                c++;
            }
            r.err = STORE_OK;
            if (!bt->dm && !PQgetisnull(res, i, c)) r.err = STORE_ENOTFOUND;
            else if (r.id < 0) r.err = STORE_EINTERNAL;
        }
        rows->reqs[i].cb(rows->reqs[i].arg, &r);
    }
    if (!res && rows->n) log_warn("db_batch_failed", "n=%d err=\"%s\"", rows->n, err ? err : "");
    gw_want_flush(bc->s->base.w); /* the next call may leave now */
    rows_free(rows);
    free(bc);
}

static void on_users(void *arg, PGresult *res, const char *err)
{
    batch_call_t *bc = arg;
    bc->bt->inflight = 0;
    gw_want_flush(bc->s->base.w);
    rows_free(bc->rows);
    free(bc);
}

/* Send the oldest waiting call of a kind when none of that kind is in flight. */
static void batch_send(pg_store_t *s, pg_batch_t *bt, pgc_cb cb)
{
    pg_rows_t *rows = bt->head;
    if (!rows || bt->inflight) return;
    bt->head = rows->next;
    if (!bt->head) bt->tail = NULL;
    bt->queued -= rows->n;
    rows->next = NULL;
    if (!rows->n) { /* its first row could not be stored (out of memory) */
        rows_free(rows);
        return;
    }
    const char *vals[4];
    for (int i = 0; i < bt->ncols; i++) {
        buf_append_char(&rows->col[i], '}');
        vals[i] = buf_cstr(&rows->col[i]);
    }
    batch_call_t *bc = calloc(1, sizeof *bc);
    int rc = -1;
    if (bc) {
        bc->s = s;
        bc->bt = bt;
        bc->rows = rows;
        rc = pgc_query(s->wr, bt->sql, bt->ncols, vals, cb, bc);
    }
    if (rc < 0) {
        for (int i = 0; i < rows->n; i++)
            if (rows->reqs[i].cb) fail_sent(rows->reqs[i].cb, rows->reqs[i].arg, STORE_EUNAVAILABLE);
        rows_free(rows);
        free(bc);
        return;
    }
    /* The literals were copied into the connection's output by pgc_query. */
    for (int i = 0; i < bt->ncols; i++) buf_free(&rows->col[i]);
    bt->inflight = rows->n;
}

static void pg_flush(gw_store_t *st)
{
    pg_store_t *s = (pg_store_t *)st;
    batch_send(s, &s->users, on_users);
    batch_send(s, &s->msgs, on_batch);
    batch_send(s, &s->dms, on_batch);
    pgc_flush(s->wr);
    pgc_flush(s->rd);
}

static void pg_user_seen(gw_store_t *st, const char *user_id, const char *username)
{
    pg_store_t *s = (pg_store_t *)st;
    const char *cols[2] = {user_id, username};
    size_t lens[2] = {strlen(user_id), strlen(username)};
    batch_add(s, &s->users, cols, lens, NULL, NULL);
}

static void pg_send_message(gw_store_t *st, const char *room, const char *user_id,
                            const char *username, const char *text, size_t len, const char *cmid,
                            store_sent_cb cb, void *arg)
{
    pg_store_t *s = (pg_store_t *)st;
    const char *cols[4] = {room, user_id, text, *cmid ? cmid : NULL};
    size_t lens[4] = {strlen(room), strlen(user_id), len, strlen(cmid)};
    batch_add(s, &s->msgs, cols, lens, cb, arg);
}

static void pg_send_dm(gw_store_t *st, const char *sender, const char *sender_name,
                       const char *recipient, const char *text, size_t len, const char *cmid,
                       store_sent_cb cb, void *arg)
{
    pg_store_t *s = (pg_store_t *)st;
    const char *cols[4] = {sender, recipient, text, *cmid ? cmid : NULL};
    size_t lens[4] = {strlen(sender), strlen(recipient), len, strlen(cmid)};
    batch_add(s, &s->dms, cols, lens, cb, arg);
}

/* ---- reads ---- */

typedef struct read_call {
    store_list_cb cb;
    void *arg;
    int kind; /* 0 join, 1 history, 2 dm history, 3 range */
} read_call_t;

static int status_err(const char *st)
{
    if (strcmp(st, "ok") == 0) return STORE_OK;
    if (strcmp(st, "forbidden") == 0) return STORE_EFORBIDDEN;
    if (strcmp(st, "not_found") == 0) return STORE_ENOTFOUND;
    return STORE_EINTERNAL;
}

static void on_read(void *arg, PGresult *res, const char *err)
{
    read_call_t *rc = arg;
    store_list_t r;
    memset(&r, 0, sizeof r);
    r.err = STORE_EUNAVAILABLE;
    if (res && PQntuples(res) == 1) {
        switch (rc->kind) {
        case 0: /* status, max_seq, truncated, messages */
            r.err = status_err(PQgetvalue(res, 0, 0));
            r.max_seq = num(res, 0, 1);
            r.truncated = PQgetvalue(res, 0, 2)[0] == 't';
            r.json = PQgetvalue(res, 0, 3);
            break;
        case 1: /* status, has_more, messages */
            r.err = status_err(PQgetvalue(res, 0, 0));
            r.has_more = PQgetvalue(res, 0, 1)[0] == 't';
            r.json = PQgetvalue(res, 0, 2);
            break;
        case 2: /* has_more, messages */
            r.err = STORE_OK;
            r.has_more = PQgetvalue(res, 0, 0)[0] == 't';
            r.json = PQgetvalue(res, 0, 1);
            break;
        default: /* max_seq, messages */
            r.err = STORE_OK;
            r.max_seq = num(res, 0, 0);
            r.json = PQgetvalue(res, 0, 1);
            break;
        }
        if (r.err == STORE_OK && (!r.json || !*r.json)) r.json = "[]";
        if (r.json) r.len = strlen(r.json);
    }
    rc->cb(rc->arg, &r);
    free(rc);
}

static void read_query(pg_store_t *s, int kind, const char *sql, int n, const char *const *vals,
                       store_list_cb cb, void *arg)
{
    read_call_t *rc = malloc(sizeof *rc);
    if (!rc || pgc_query(s->rd, sql, n, vals, on_read, rc) < 0) {
        free(rc);
        store_list_t r;
        memset(&r, 0, sizeof r);
        r.err = STORE_EUNAVAILABLE;
        cb(arg, &r);
        return;
    }
    rc->cb = cb;
    rc->arg = arg;
    rc->kind = kind;
}

static void pg_join(gw_store_t *st, const char *room, const char *user_id, int has_since,
                    int64_t since, store_list_cb cb, void *arg)
{
    char sn[24], cap[16];
    snprintf(sn, sizeof sn, "%lld", (long long)since);
    snprintf(cap, sizeof cap, "%d", SINCE_CAP);
    const char *v[5] = {room, user_id, has_since ? sn : NULL, g_cfg.auto_create_rooms ? "t" : "f", cap};
    read_query((pg_store_t *)st, 0,
               "SELECT status, max_seq, truncated, messages FROM chat_join($1, $2, $3::bigint, $4::boolean, $5::int)",
               5, v, cb, arg);
}

static void pg_history(gw_store_t *st, const char *room, const char *user_id, int has_before,
                       int64_t before, int limit, store_list_cb cb, void *arg)
{
    char b[24], l[16];
    snprintf(b, sizeof b, "%lld", (long long)before);
    snprintf(l, sizeof l, "%d", limit);
    const char *v[4] = {room, user_id, has_before ? b : NULL, l};
    read_query((pg_store_t *)st, 1,
               "SELECT status, has_more, messages FROM chat_history($1, $2, $3::bigint, $4::int)", 4, v,
               cb, arg);
}

static void pg_dm_history(gw_store_t *st, const char *user_id, const char *other, int has_before,
                          int64_t before, int limit, store_list_cb cb, void *arg)
{
    char b[24], l[16];
    snprintf(b, sizeof b, "%lld", (long long)before);
    snprintf(l, sizeof l, "%d", limit);
    const char *v[4] = {user_id, other, has_before ? b : NULL, l};
    read_query((pg_store_t *)st, 2,
               "SELECT has_more, messages FROM chat_dm_history($1, $2, $3::bigint, $4::int)", 4, v, cb, arg);
}

static void pg_range(gw_store_t *st, const char *room, int64_t after, int64_t upto,
                     store_list_cb cb, void *arg)
{
    char a[24], u[24], cap[16];
    snprintf(a, sizeof a, "%lld", (long long)after);
    snprintf(u, sizeof u, "%lld", (long long)upto);
    snprintf(cap, sizeof cap, "%d", SINCE_CAP);
    const char *v[4] = {room, a, u, cap};
    read_query((pg_store_t *)st, 3,
               "SELECT max_seq, messages FROM chat_range($1, $2::bigint, $3::bigint, $4::int)", 4, v, cb, arg);
}

static int pg_ready(gw_store_t *st)
{
    pg_store_t *s = (pg_store_t *)st;
    return pgc_ready(s->wr) && pgc_ready(s->rd);
}

static int pg_inflight(gw_store_t *st)
{
    pg_store_t *s = (pg_store_t *)st;
    return pgc_inflight(s->wr) + pgc_inflight(s->rd) + s->msgs.queued + s->dms.queued;
}

static void batch_free(pg_batch_t *bt)
{
    while (bt->head) {
        pg_rows_t *rows = bt->head;
        bt->head = rows->next;
        for (int i = 0; i < rows->n; i++)
            if (rows->reqs[i].cb) fail_sent(rows->reqs[i].cb, rows->reqs[i].arg, STORE_EUNAVAILABLE);
        rows_free(rows);
    }
    bt->tail = NULL;
    bt->queued = 0;
}

static void pg_free(gw_store_t *st)
{
    pg_store_t *s = (pg_store_t *)st;
    pgc_free(s->wr);
    pgc_free(s->rd);
    batch_free(&s->msgs);
    batch_free(&s->dms);
    batch_free(&s->users);
    free(s);
}

static const store_ops_t pg_ops = {
    pg_user_seen, pg_send_message, pg_send_dm, pg_join,     pg_history, pg_dm_history,
    pg_range,     pg_ready,        pg_inflight, pg_flush,   pg_free,
};

gw_store_t *store_pg_new(gw_worker_t *w, const char *conninfo)
{
    pg_store_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.ops = &pg_ops;
    s->base.w = w;
    s->base.ordered = 1;
    s->msgs.sql = "SELECT idx, id, seq, created_ms, dup, kind, body, room, err "
                  "FROM chat_send_messages($1::text[], $2::text[], $3::text[], $4::text[])";
    s->msgs.ncols = 4;
    s->dms.sql = "SELECT idx, id, created_ms, dup, kind, body "
                 "FROM chat_send_dms($1::text[], $2::text[], $3::text[], $4::text[])";
    s->dms.ncols = 4;
    s->dms.dm = 1;
    s->users.sql = "SELECT chat_seen_users($1::text[], $2::text[])";
    s->users.ncols = 2;
    s->wr = pgc_new(w, conninfo, "write");
    s->rd = pgc_new(w, conninfo, "read");
    if (!s->wr || !s->rd) {
        pg_free(&s->base);
        return NULL;
    }
    return &s->base;
}
