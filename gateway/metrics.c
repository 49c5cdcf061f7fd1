#include "metrics.h"

#include <string.h>
#include <sys/mman.h>

static const double bounds[GW_HIST_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                   0.05,   0.1,   0.25,   0.5,   1,    2.5, 5};

gw_metrics_shm_t *metrics_shm_create(void)
{
    void *p = mmap(NULL, sizeof(gw_metrics_shm_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    memset(p, 0, sizeof(gw_metrics_shm_t));
    return p;
}

void metrics_retire(gw_metrics_shm_t *m, int w)
{
    gw_metrics_slot_t *s = &m->slot[w], *r = &m->retired;
    for (int i = 0; i < MC__COUNT; i++) r->c[i] += s->c[i];
    for (int i = 0; i < GW_EV_IN_MAX; i++) r->ev_in[i] += s->ev_in[i];
    for (int i = 0; i < EO__COUNT; i++) r->ev_out[i] += s->ev_out[i];
    for (int i = 0; i < CHAT_ERR__COUNT; i++) r->err[i] += s->err[i];
    for (int h = 0; h < MH__COUNT; h++) {
        for (int b = 0; b < GW_HIST_BUCKETS; b++) r->h[h].buckets[b] += s->h[h].buckets[b];
        r->h[h].count += s->h[h].count;
        r->h[h].sum += s->h[h].sum;
    }
    memset(s, 0, sizeof *s);
}

void metrics_observe(gw_metrics_slot_t *s, enum gw_hist h, double sec)
{
    int b = 0;
    while (b < GW_HIST_BUCKETS - 1 && sec > bounds[b]) b++;
    s->h[h].buckets[b]++;
    s->h[h].count++;
    s->h[h].sum += sec;
}

static const char *const counter_names[MC__COUNT][2] = {
    {"chat_connections_opened_total", "Connections accepted"},
    {"chat_connections_closed_total", "Connections closed"},
    {"chat_auth_failures_total", "Handshakes refused for a missing or invalid token"},
    {"chat_http_requests_total", "Plain HTTP requests served"},
    {"chat_fanout_deliveries_total", "Events queued to a client by fan-out"},
    {"chat_acked_sends_total", "Room messages acknowledged after COMMIT"},
    {"chat_acked_direct_messages_total", "Direct messages acknowledged after COMMIT"},
    {"chat_rate_limited_total", "Events refused by the per-connection rate limit"},
    {"chat_slow_consumers_total", "Clients disconnected at the outbound buffer cap"},
    {"chat_bytes_in_total", "Bytes read from clients"},
    {"chat_bytes_out_total", "Bytes written to clients"},
    {"chat_bus_published_total", "Events handed to the broker"},
    {"chat_bus_received_total", "Events received from the broker"},
    {"chat_gap_fills_total", "Room sequence gaps filled from PostgreSQL"},
    {"chat_db_errors_total", "Failed database round trips"},
    {"chat_db_busy_total", "Sends refused because CHAT_DB_MAX_PENDING writes were waiting for PostgreSQL"},
    {"chat_socketio_handoffs_total", "Socket.IO requests passed to the worker owning the session"},
};

static const char *const gauge_names[MG__COUNT][3] = {
    {"chat_connections", "protocol=\"websocket\"", "Open client connections by protocol"},
    {"chat_connections", "protocol=\"socketio_websocket\"", NULL},
    {"chat_connections", "protocol=\"socketio_polling\"", NULL},
    {"chat_connections", "protocol=\"http\"", NULL},
    {"chat_outbound_queued_bytes", NULL, "Bytes queued for clients, not yet written"},
    {"chat_rooms_local", NULL, "Rooms with members on this instance (summed over workers)"},
    {"chat_broker_up", NULL, "Workers connected to the broker"},
    {"chat_redis_up", NULL, "Workers whose broker reports Redis reachable"},
    {"chat_db_up", NULL, "Workers with a live PostgreSQL connection"},
};

static const char *const out_names[EO__COUNT] = {
    "new_message", "user_joined_room", "user_left_room", "user_typing", "direct_message",
    "user_online", "user_offline", "user-joined", "user-left", "message", "ack", "error", "other"};

static const char *const hist_names[MH__COUNT][2] = {
    {"chat_deliver_latency_seconds", "Send (message timestamp) to queued-for-recipient latency"},
    {"chat_db_latency_seconds", "PostgreSQL round-trip latency"},
    {"chat_redis_latency_seconds", "Broker-reported Redis PING latency"},
};

static void sum_slot(gw_metrics_slot_t *t, const gw_metrics_slot_t *s)
{
    for (int i = 0; i < MC__COUNT; i++) t->c[i] += s->c[i];
    for (int i = 0; i < MG__COUNT; i++) t->g[i] += s->g[i];
    for (int i = 0; i < GW_EV_IN_MAX; i++) t->ev_in[i] += s->ev_in[i];
    for (int i = 0; i < EO__COUNT; i++) t->ev_out[i] += s->ev_out[i];
    for (int i = 0; i < CHAT_ERR__COUNT; i++) t->err[i] += s->err[i];
    for (int h = 0; h < MH__COUNT; h++) {
        for (int b = 0; b < GW_HIST_BUCKETS; b++) t->h[h].buckets[b] += s->h[h].buckets[b];
        t->h[h].count += s->h[h].count;
        t->h[h].sum += s->h[h].sum;
    }
}

void metrics_render(const gw_metrics_shm_t *m, int nworkers, const char *instance,
                    const char *const *in_names, int n_in, buf_t *out)
{
    gw_metrics_slot_t t;
    memset(&t, 0, sizeof t);
    sum_slot(&t, &m->retired);
    for (int w = 0; w < nworkers && w < GW_MAX_WORKERS; w++) sum_slot(&t, &m->slot[w]);

    buf_printf(out, "# HELP chat_info Instance information\n# TYPE chat_info gauge\n"
                    "chat_info{instance=\"%s\",workers=\"%d\"} 1\n", instance, nworkers);
    buf_printf(out, "# HELP chat_draining 1 while the instance drains after SIGTERM\n"
                    "# TYPE chat_draining gauge\nchat_draining %d\n", m->draining ? 1 : 0);
    for (int i = 0; i < MC__COUNT; i++)
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_names[i][0],
                   counter_names[i][1], counter_names[i][0], counter_names[i][0],
                   (unsigned long long)t.c[i]);
    for (int i = 0; i < MG__COUNT; i++) {
        if (gauge_names[i][2])
            buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", gauge_names[i][0], gauge_names[i][2],
                       gauge_names[i][0]);
        if (gauge_names[i][1])
            buf_printf(out, "%s{%s} %lld\n", gauge_names[i][0], gauge_names[i][1], (long long)t.g[i]);
        else
            buf_printf(out, "%s %lld\n", gauge_names[i][0], (long long)t.g[i]);
    }
    buf_append_str(out, "# HELP chat_events_in_total Client events received, by name\n"
                        "# TYPE chat_events_in_total counter\n");
    for (int i = 0; i < n_in && i < GW_EV_IN_MAX; i++)
        buf_printf(out, "chat_events_in_total{event=\"%s\"} %llu\n", in_names[i],
                   (unsigned long long)t.ev_in[i]);
    buf_append_str(out, "# HELP chat_events_out_total Events sent to clients, by name\n"
                        "# TYPE chat_events_out_total counter\n");
    for (int i = 0; i < EO__COUNT; i++)
        buf_printf(out, "chat_events_out_total{event=\"%s\"} %llu\n", out_names[i],
                   (unsigned long long)t.ev_out[i]);
    buf_append_str(out, "# HELP chat_errors_total Error replies, by code\n"
                        "# TYPE chat_errors_total counter\n");
    for (int i = 0; i < CHAT_ERR__COUNT; i++)
        buf_printf(out, "chat_errors_total{code=\"%s\"} %llu\n", chat_err_code((chat_err_t)i),
                   (unsigned long long)t.err[i]);
    for (int h = 0; h < MH__COUNT; h++) {
        const char *n = hist_names[h][0];
        buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", n, hist_names[h][1], n);
        uint64_t cum = 0;
        for (int b = 0; b < GW_HIST_BUCKETS; b++) {
            cum += t.h[h].buckets[b];
            if (b < GW_HIST_BUCKETS - 1)
                buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", n, bounds[b], (unsigned long long)cum);
            else
                buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", n, (unsigned long long)cum);
        }
        buf_printf(out, "%s_sum %.6f\n%s_count %llu\n", n, t.h[h].sum, n,
                   (unsigned long long)t.h[h].count);
    }
}
