#include "pgconn.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <event2/dns.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PGC_BACKOFF_MIN_MS 100
#define PGC_BACKOFF_MAX_MS 2000
#define PGC_QUERY_TIMEOUT_MS 15000 /* a query older than this: the server is wedged */

typedef struct pgc_pending {
    struct pgc_pending *next;
    pgc_cb cb;
    void *arg;
    PGresult *res;
    int64_t sent_ms;
} pgc_pending_t;

struct pgconn {
    gw_worker_t *w;
    char *conninfo;
    char *name;
    PGconn *pg;
    int state; /* 0 down, 1 resolving, 2 connecting, 3 ready */
    struct event rev, wev, retry_ev, tick_ev;
    int ev_fd;
    int backoff_ms;
    int want_flush;
    pgc_pending_t *head, *tail;
    int inflight;
    struct evdns_base *dns;
    struct evdns_getaddrinfo_request *dns_req;
    char hostaddr[64];
};

static void on_io(evutil_socket_t fd, short ev, void *arg);
static void start_connect(pgconn_t *c);
static void quiet(void *arg, const char *message);

int pgc_ready(const pgconn_t *c)
{
    return c->state == 3;
}

int pgc_inflight(const pgconn_t *c)
{
    return c->inflight;
}

static void fail_all(pgconn_t *c, const char *err)
{
    while (c->head) {
        pgc_pending_t *p = c->head;
        c->head = p->next;
        if (!c->head) c->tail = NULL;
        c->inflight--;
        if (p->res) PQclear(p->res);
        p->cb(p->arg, NULL, err);
        free(p);
    }
}

static void watch(pgconn_t *c, int read, int write)
{
    int fd = PQsocket(c->pg);
    if (fd != c->ev_fd) {
        event_del(&c->rev);
        event_del(&c->wev);
        c->ev_fd = fd;
        if (fd < 0) return;
        event_assign(&c->rev, c->w->base, fd, EV_READ | EV_PERSIST, on_io, c);
        event_assign(&c->wev, c->w->base, fd, EV_WRITE | EV_PERSIST, on_io, c);
    }
    if (read) event_add(&c->rev, NULL);
    else event_del(&c->rev);
    if (write) event_add(&c->wev, NULL);
    else event_del(&c->wev);
}

static void drop(pgconn_t *c, const char *reason)
{
    /* The reason often points into the PGconn about to be finished: copy it first. */
    char why[256];
    snprintf(why, sizeof why, "%s", reason ? reason : "");
    size_t wl = strlen(why);
    while (wl && (why[wl - 1] == '\n' || why[wl - 1] == '\r')) why[--wl] = '\0';
    int was_ready = c->state == 3;
    if (c->pg) {
        event_del(&c->rev);
        event_del(&c->wev);
        c->ev_fd = -1;
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = 0;
    c->w->m->g[MG_DB_UP] = 0;
    if (was_ready) log_warn("db_disconnected", "conn=%s err=\"%s\"", c->name, why);
    fail_all(c, why);
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : PGC_BACKOFF_MIN_MS;
    if (c->backoff_ms > PGC_BACKOFF_MAX_MS) c->backoff_ms = PGC_BACKOFF_MAX_MS;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(&c->retry_ev, &tv);
}

/* Read every complete result; returns -1 when the connection was dropped. */
static int read_results(pgconn_t *c)
{
    if (!PQconsumeInput(c->pg)) {
        drop(c, PQerrorMessage(c->pg));
        return -1;
    }
    int nulls = 0;
    while (c->head && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            /* The end of one query's results; its sync follows. Two in a row: nothing more
             * is available yet. */
            if (++nulls > 1) break;
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            pgc_pending_t *p = c->head;
            c->head = p->next;
            if (!c->head) c->tail = NULL;
            c->inflight--;
            metrics_observe(c->w->m, MH_DB_LATENCY, (double)(gw_now_ms(c->w) - p->sent_ms) / 1000.0);
            if (p->res && PQresultStatus(p->res) != PGRES_FATAL_ERROR &&
                PQresultStatus(p->res) != PGRES_PIPELINE_ABORTED) {
                p->cb(p->arg, p->res, NULL);
            } else {
                const char *e = p->res ? PQresultErrorMessage(p->res) : "no result";
                c->w->m->c[MC_DB_ERRORS]++;
                log_warn("db_query_failed", "conn=%s err=\"%s\"", c->name, e);
                p->cb(p->arg, NULL, e);
            }
            if (p->res) PQclear(p->res);
            free(p);
            if (c->state != 3) return -1; /* a callback dropped us */
        } else if (!c->head->res) {
            c->head->res = r; /* the query's (first) result */
        } else {
            PQclear(r);
        }
    }
    return 0;
}

static void flush_out(pgconn_t *c)
{
    int rc = PQflush(c->pg);
    if (rc < 0) {
        drop(c, PQerrorMessage(c->pg));
        return;
    }
    watch(c, 1, rc == 1);
}

static void on_io(evutil_socket_t fd, short ev, void *arg)
{
    pgconn_t *c = arg;
    if (c->state == 2) {
        PostgresPollingStatusType st = PQconnectPoll(c->pg);
        if (st == PGRES_POLLING_FAILED) {
            drop(c, PQerrorMessage(c->pg));
        } else if (st == PGRES_POLLING_OK) {
            if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
                drop(c, "cannot enter pipeline mode");
                return;
            }
            c->state = 3;
            c->backoff_ms = 0;
            c->w->m->g[MG_DB_UP] = 1;
            log_info("db_connected", "conn=%s", c->name);
            watch(c, 1, 0);
        } else {
            watch(c, st == PGRES_POLLING_READING, st == PGRES_POLLING_WRITING);
        }
        return;
    }
    if (c->state != 3) return;
    if (ev & EV_READ) {
        if (read_results(c) < 0) return;
    }
    flush_out(c);
}

static void on_resolved(int err, struct evutil_addrinfo *ai, void *arg)
{
    pgconn_t *c = arg;
    c->dns_req = NULL;
    if (err || !ai) {
        drop(c, evutil_gai_strerror(err));
        return;
    }
    if (ai->ai_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, c->hostaddr, sizeof c->hostaddr);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, c->hostaddr, sizeof c->hostaddr);
    evutil_freeaddrinfo(ai);
    start_connect(c);
}

/* The host to resolve first, or NULL when libpq will not need DNS (unix socket, numeric
 * address, hostaddr given, or several hosts, which libpq handles itself). */
static char *needs_dns(const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &err);
    if (!o) {
        PQfreemem(err);
        return NULL;
    }
    const char *host = NULL, *hostaddr = NULL;
    for (PQconninfoOption *p = o; p->keyword; p++) {
        if (strcmp(p->keyword, "host") == 0) host = p->val;
        if (strcmp(p->keyword, "hostaddr") == 0) hostaddr = p->val;
    }
    char *out = NULL;
    struct in6_addr tmp;
    if (host && *host && host[0] != '/' && !(hostaddr && *hostaddr) && !strchr(host, ',') &&
        inet_pton(AF_INET, host, &tmp) != 1 && inet_pton(AF_INET6, host, &tmp) != 1)
        out = strdup(host);
    PQconninfoFree(o);
    return out;
}

static void start_connect(pgconn_t *c)
{
    if (!c->hostaddr[0]) {
        char *host = needs_dns(c->conninfo);
        if (host) {
            if (!c->dns) c->dns = evdns_base_new(c->w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
            struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
            c->state = 1;
            c->dns_req = c->dns ? evdns_getaddrinfo(c->dns, host, NULL, &hints, on_resolved, c) : NULL;
            free(host);
            if (!c->dns) drop(c, "cannot start a DNS resolver");
            return;
        }
    }
    const char *keys[5], *vals[5];
    int n = 0;
    keys[n] = "dbname", vals[n++] = c->conninfo;
    if (c->hostaddr[0]) keys[n] = "hostaddr", vals[n++] = c->hostaddr;
    keys[n] = "connect_timeout", vals[n++] = "10";
    keys[n] = "options", vals[n++] = "-c statement_timeout=10000";
    keys[n] = NULL, vals[n] = NULL;
    /* expand_dbname: the conninfo string/URI is the base; the other keys override. */
    c->pg = PQconnectStartParams(keys, vals, 1);
    c->hostaddr[0] = '\0'; /* resolve again next time */
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        drop(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, quiet, NULL);
    c->state = 2;
    c->ev_fd = -1;
    watch(c, 0, 1);
}

static void quiet(void *arg, const char *message)
{
}

static void on_retry(evutil_socket_t fd, short ev, void *arg)
{
    start_connect(arg);
}

/* A wedged server (stopped process, black-holed network) must not hold requests forever. */
static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    pgconn_t *c = arg;
    if (c->state == 3 && c->head && gw_now_ms(c->w) - c->head->sent_ms > PGC_QUERY_TIMEOUT_MS)
        drop(c, "query timeout");
}

pgconn_t *pgc_new(gw_worker_t *w, const char *conninfo, const char *name)
{
    pgconn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->w = w;
    c->conninfo = strdup(conninfo);
    c->name = strdup(name);
    c->ev_fd = -1;
    evtimer_assign(&c->retry_ev, w->base, on_retry, c);
    event_assign(&c->tick_ev, w->base, -1, EV_PERSIST, on_tick, c);
    struct timeval tv = {1, 0};
    event_add(&c->tick_ev, &tv);
    start_connect(c);
    return c;
}

void pgc_free(pgconn_t *c)
{
    if (!c) return;
    if (c->dns_req) evdns_getaddrinfo_cancel(c->dns_req);
    if (c->pg) {
        event_del(&c->rev);
        event_del(&c->wev);
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = 0;
    fail_all(c, "shutting down");
    event_del(&c->retry_ev);
    event_del(&c->tick_ev);
    if (c->dns) evdns_base_free(c->dns, 1);
    free(c->conninfo);
    free(c->name);
    free(c);
}

int pgc_query(pgconn_t *c, const char *sql, int nparams, const char *const *values, pgc_cb cb,
              void *arg)
{
    if (c->state != 3) return -1;
    pgc_pending_t *p = calloc(1, sizeof *p);
    if (!p) return -1;
    if (!PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0) ||
        !PQpipelineSync(c->pg)) {
        free(p);
        drop(c, PQerrorMessage(c->pg));
        return -1;
    }
    p->cb = cb;
    p->arg = arg;
    p->sent_ms = gw_now_ms(c->w);
    if (c->tail) c->tail->next = p;
    else c->head = p;
    c->tail = p;
    c->inflight++;
    if (!c->want_flush) {
        c->want_flush = 1;
        gw_want_flush(c->w);
    }
    return 0;
}

void pgc_flush(pgconn_t *c)
{
    if (!c->want_flush) return;
    c->want_flush = 0;
    if (c->state == 3) flush_out(c);
}
