/*
 * loadgen: the benchmark's load generator (issue 7). libevent, one loop per process,
 * several processes (a process holds at most ~19k descriptors here), speaking the
 * product's raw WebSocket protocol or Socket.IO over WebSocket (which the Node peer speaks
 * too). It mints its own tokens, spreads client source addresses over 127.0.0.0/8 to get
 * past the 64k ports of one address, and runs one scenario open-loop at a fixed rate:
 *
 *   idle     N authenticated connections held open (memory per connection)
 *   fanout   rooms of --room-size members spread over the targets; random members send
 *   dm       direct messages between random users
 *   senders  --connections senders in rooms of --room-size, acks timed (acked sends/s)
 *
 * Every message carries its scheduled send time; receivers compute end-to-end latency
 * from it (open loop: no coordinated omission). Results: one JSON object on stdout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "hist.h"
#include "jwtauth.h"
#include "procstat.h"
#include "ws.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_PROCS 64
#define MAX_TARGETS 16

enum { SC_IDLE, SC_FANOUT, SC_DM, SC_SENDERS };
enum { PROTO_RAW, PROTO_SIO };
enum { PH_CONNECT, PH_JOIN, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };
enum { CS_NEW, CS_CONNECTING, CS_HTTP, CS_SIO_OPEN, CS_SIO_NSP, CS_READY, CS_JOINING, CS_JOINED, CS_DEAD };

static struct opts {
    char targets[MAX_TARGETS][80];
    struct sockaddr_in taddr[MAX_TARGETS];
    int ntargets;
    int proto;
    int scenario;
    const char *secret;
    int connections;
    int room_size;
    double rate;
    double duration;
    double warmup;
    double drain;
    int procs;
    double ramp;
    int sources;
    int text_bytes;
    const char *server_pids;
    const char *nsp;
    const char *label;
    double settle;
    int run_id;
} O = {
    .proto = PROTO_RAW, .scenario = SC_FANOUT, .connections = 100, .room_size = 10, .rate = 100,
    .duration = 10, .warmup = 2, .drain = 3, .procs = 0, .ramp = 4000, .sources = 32,
    .text_bytes = 64, .server_pids = "", .nsp = "/chat", .label = "", .settle = 2,
};

/* Shared with the children: the phase, and their progress. */
typedef struct shared {
    volatile int phase;
    volatile int64_t measure_start_ns;
    struct {
        volatile uint64_t connected, joined, failed, closed;
    } ch[MAX_PROCS];
} shared_t;
static shared_t *S;

/* What a child reports at the end. */
typedef struct result {
    uint64_t sent, acked, ack_errors, expected, delivered, duplicates, out_of_order, dropped;
    uint64_t connected, failed, closed;
    hist_t lat;
    hist_t acklat;
} result_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- clients ---- */

typedef struct pending {
    uint32_t id;
    int64_t sched_ns;
    uint8_t measured;
    uint16_t room_size;
} pending_t;

typedef struct client {
    struct event ev, wev;
    int fd;
    int idx;   /* global index */
    int room;  /* room index */
    int state;
    int target;
    ws_reader_t rd;
    buf_t in;  /* HTTP handshake bytes */
    buf_t out; /* bytes the socket did not take */
    int64_t last_seq;
    uint32_t next_id;
    pending_t *pend;
    uint32_t phead, pcount, pcap;
} client_t;

static struct event_base *B;
static client_t *C; /* this process's clients */
static int NC;
static int ME; /* process index */
static result_t R;
static char **TOKENS;

static void client_close(client_t *c);

static void user_id(int idx, char *out, size_t n)
{
    snprintf(out, n, "%d", 100000000 + idx);
}

static void flush_client(client_t *c)
{
    while (c->out.len) {
        ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                event_add(&c->wev, NULL);
                return;
            }
            client_close(c);
            return;
        }
        buf_consume(&c->out, (size_t)w);
    }
    event_del(&c->wev);
}

static void on_writable(evutil_socket_t fd, short ev, void *arg)
{
    flush_client(arg);
}

static void send_raw(client_t *c, const char *p, size_t n)
{
    if (c->state == CS_DEAD) return;
    if (c->out.len > (8u << 20)) { /* the server is not reading: count, do not grow */
        R.dropped++;
        return;
    }
    buf_append(&c->out, p, n);
    if (!event_pending(&c->wev, EV_WRITE, NULL)) flush_client(c);
}

/* One client text frame, masked with a zero key (valid, and free to apply). */
static void send_text(client_t *c, const char *p, size_t n)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    uint8_t h[WS_MAX_HEADER];
    size_t hl = ws_frame_header(h, 1, WS_OP_TEXT, n, zero);
    buf_t f = BUF_INIT;
    buf_reserve(&f, hl + n);
    buf_append(&f, h, hl);
    buf_append(&f, p, n);
    send_raw(c, f.data, f.len);
    buf_free(&f);
}

static void push_pending(client_t *c, uint32_t id, int64_t sched, int measured, int room_size)
{
    if (c->pcount == c->pcap) {
        uint32_t nc = c->pcap ? c->pcap * 2 : 8;
        pending_t *np = malloc(nc * sizeof *np);
        for (uint32_t i = 0; i < c->pcount; i++) np[i] = c->pend[(c->phead + i) % c->pcap];
        free(c->pend);
        c->pend = np;
        c->phead = 0;
        c->pcap = nc;
    }
    c->pend[(c->phead + c->pcount) % c->pcap] = (pending_t){id, sched, (uint8_t)measured, (uint16_t)room_size};
    c->pcount++;
}

/* Replies usually come back in request order on one connection (the product answers in
 * order), but need not: the peer's handlers run concurrently on a pool of database
 * connections. The oldest pending request is checked first, then the others. */
static void on_reply(client_t *c, uint32_t id, int ok)
{
    for (uint32_t i = 0; i < c->pcount; i++) {
        pending_t p = c->pend[(c->phead + i) % c->pcap];
        if (p.id != id) continue;
        /* Remove entry i, keeping the others in order. */
        for (uint32_t j = i; j > 0; j--)
            c->pend[(c->phead + j) % c->pcap] = c->pend[(c->phead + j - 1) % c->pcap];
        c->phead = (c->phead + 1) % c->pcap;
        c->pcount--;
        if (p.measured) {
            if (ok) {
                R.acked++;
                R.expected += p.room_size;
                int64_t d = now_ns() - p.sched_ns;
                hist_add(&R.acklat, d > 0 ? (uint64_t)(d / 1000) : 0);
            } else {
                R.ack_errors++;
            }
        }
        return;
    }
}

/* "/chat" for the namespace prefix of Socket.IO packets, "" for the main namespace. */
static const char *nsp_prefix(void)
{
    return strcmp(O.nsp, "/") ? O.nsp : "";
}

static void request(client_t *c, const char *event, const char *data, int64_t sched, int measured,
                    int room_size)
{
    uint32_t id = ++c->next_id;
    buf_t b = BUF_INIT;
    if (O.proto == PROTO_RAW)
        buf_printf(&b, "{\"event\":\"%s\",\"data\":%s,\"id\":%u}", event, data, id);
    else
        buf_printf(&b, "42%s%s%u[\"%s\",%s]", nsp_prefix(), *nsp_prefix() ? "," : "", id, event, data);
    if (sched) push_pending(c, id, sched, measured, room_size);
    send_text(c, b.data, b.len);
    buf_free(&b);
}

static void join(client_t *c)
{
    char d[96];
    snprintf(d, sizeof d, "{\"roomId\":\"lg%d-r%d\"}", O.run_id, c->room);
    c->state = CS_JOINING;
    uint32_t id = ++c->next_id;
    buf_t b = BUF_INIT;
    if (O.proto == PROTO_RAW) buf_printf(&b, "{\"event\":\"join_room\",\"data\":%s,\"id\":%u}", d, id);
    else buf_printf(&b, "42%s%s%u[\"join_room\",%s]", nsp_prefix(), *nsp_prefix() ? "," : "", id, d);
    send_text(c, b.data, b.len);
    buf_free(&b);
}

/* Parse "lg:<run>:<phase>:<ns>:" out of a message text. */
static int parse_marker(const char *p, const char *end, int *phase, int64_t *ns)
{
    const char *m = memmem(p, (size_t)(end - p), "\"text\":\"lg:", 11);
    if (!m) return -1;
    m += 11;
    char *e;
    long run = strtol(m, &e, 10);
    if (run != O.run_id || *e != ':') return -1;
    *phase = (int)strtol(e + 1, &e, 10);
    if (*e != ':') return -1;
    *ns = strtoll(e + 1, &e, 10);
    return 0;
}

static void delivered(client_t *c, const char *p, size_t n, int has_seq)
{
    int phase;
    int64_t ns;
    const char *end = p + n;
    if (parse_marker(p, end, &phase, &ns) < 0 || phase != PH_MEASURE) return;
    if (has_seq) {
        const char *s = memmem(p, n, "\"seq\":", 6);
        if (s) {
            long long seq = atoll(s + 6);
            if (seq <= c->last_seq) {
                if (seq == c->last_seq) R.duplicates++;
                else R.out_of_order++;
            }
            if (seq > c->last_seq) c->last_seq = seq;
        }
    }
    R.delivered++;
    int64_t d = now_ns() - ns;
    hist_add(&R.lat, d > 0 ? (uint64_t)(d / 1000) : 0);
}

static int on_message(void *ud, int op, uint8_t *data, size_t len)
{
    client_t *c = ud;
    const char *p = (const char *)data;
    if (op != WS_OP_TEXT) return 0;
    if (O.proto == PROTO_SIO) {
        if (len == 1 && p[0] == '2') { /* Engine.IO ping */
            send_text(c, "3", 1);
            return 0;
        }
        if (c->state == CS_SIO_OPEN && len && p[0] == '0') {
            c->state = CS_SIO_NSP;
            buf_t b = BUF_INIT;
            buf_printf(&b, "40%s%s{\"token\":\"%s\"}", nsp_prefix(), *nsp_prefix() ? "," : "",
                       TOKENS[c - C]);
            send_text(c, b.data, b.len);
            buf_free(&b);
            return 0;
        }
        if (c->state == CS_SIO_NSP && len >= 2 && p[0] == '4' && (p[1] == '0' || p[1] == '4')) {
            if (p[1] == '4') {
                client_close(c);
                return 1;
            }
            c->state = CS_READY;
            S->ch[ME].connected++;
            R.connected++;
            return 0;
        }
        /* 43<nsp>,<id>[...] acks; 42<nsp>,["event",...] events. */
        if (len > 2 && p[0] == '4' && (p[1] == '3' || p[1] == '2')) {
            const char *q = p + 2, *end = p + len;
            if (*q == '/') {
                const char *comma = memchr(q, ',', (size_t)(end - q));
                q = comma ? comma + 1 : end;
            }
            if (p[1] == '3') {
                uint32_t id = (uint32_t)strtoul(q, NULL, 10);
                while (q < end && *q >= '0' && *q <= '9') q++;
                int ok = !(end - q > 9 && memcmp(q, "[{\"error\"", 9) == 0);
                if (c->state == CS_JOINING) {
                    c->state = ok ? CS_JOINED : CS_READY;
                    if (ok) S->ch[ME].joined++;
                    return 0;
                }
                on_reply(c, id, ok);
            } else if (end - q > 15 && memcmp(q, "[\"new_message\"", 14) == 0) {
                delivered(c, q, (size_t)(end - q), 1);
            } else if (end - q > 18 && memcmp(q, "[\"direct_message\"", 17) == 0) {
                delivered(c, q, (size_t)(end - q), 0);
            }
        }
        return 0;
    }
    /* Raw protocol. */
    if (len > 20 && memcmp(p, "{\"event\":\"ack\",\"id\":", 20) == 0) {
        uint32_t id = (uint32_t)strtoul(p + 20, NULL, 10);
        if (c->state == CS_JOINING) {
            c->state = CS_JOINED;
            S->ch[ME].joined++;
            return 0;
        }
        on_reply(c, id, 1);
    } else if (len > 22 && memcmp(p, "{\"event\":\"error\",\"id\":", 22) == 0) {
        uint32_t id = (uint32_t)strtoul(p + 22, NULL, 10);
        if (c->state == CS_JOINING) {
            c->state = CS_READY;
            return 0;
        }
        on_reply(c, id, 0);
    } else if (len > 22 && memcmp(p, "{\"event\":\"new_message\"", 22) == 0) {
        delivered(c, p, len, 1);
    } else if (len > 25 && memcmp(p, "{\"event\":\"direct_message\"", 25) == 0) {
        delivered(c, p, len, 0);
    }
    return 0;
}

static int on_control(void *ud, int op, uint8_t *data, size_t len)
{
    client_t *c = ud;
    if (op == WS_OP_PING) {
        uint8_t h[WS_MAX_HEADER];
        static const uint8_t zero[4] = {0, 0, 0, 0};
        size_t hl = ws_frame_header(h, 1, WS_OP_PONG, len, zero);
        send_raw(c, (char *)h, hl);
        send_raw(c, (char *)data, len);
    } else if (op == WS_OP_CLOSE) {
        client_close(c);
        return 1;
    }
    return 0;
}

static const ws_reader_cb_t CBS = {on_message, on_control};

static void on_read(evutil_socket_t fd, short ev, void *arg)
{
    client_t *c = arg;
    static uint8_t rbuf[256 * 1024];
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            S->ch[ME].failed++;
            R.failed++;
            client_close(c);
            return;
        }
        return;
    }
    ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (c->state < CS_READY) {
            S->ch[ME].failed++;
            R.failed++;
        }
        client_close(c);
        return;
    }
    uint8_t *p = rbuf;
    size_t len = (size_t)n;
    if (c->state == CS_HTTP) {
        buf_append(&c->in, p, len);
        const char *e = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
        if (!e) return;
        if (c->in.len < 12 || memcmp(c->in.data + 9, "101", 3) != 0) {
            S->ch[ME].failed++;
            R.failed++;
            client_close(c);
            return;
        }
        size_t head = (size_t)(e - c->in.data) + 4;
        buf_t rest = c->in;
        c->in = (buf_t)BUF_INIT;
        ws_reader_init(&c->rd, WS_ROLE_CLIENT, 16u << 20, 16u << 20);
        if (O.proto == PROTO_SIO) {
            c->state = CS_SIO_OPEN;
        } else {
            c->state = CS_READY;
            S->ch[ME].connected++;
            R.connected++;
        }
        if (rest.len > head) ws_reader_feed(&c->rd, (uint8_t *)rest.data + head, rest.len - head, &CBS, c);
        buf_free(&rest);
        return;
    }
    if (c->state == CS_DEAD) return;
    if (ws_reader_feed(&c->rd, p, len, &CBS, c) == WS_ERR_PROTOCOL) client_close(c);
}

static void on_connected(evutil_socket_t fd, short ev, void *arg)
{
    client_t *c = arg;
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
    event_del(&c->wev);
    if (err) {
        S->ch[ME].failed++;
        R.failed++;
        client_close(c);
        return;
    }
    c->state = CS_HTTP;
    event_assign(&c->wev, B, c->fd, EV_WRITE, on_writable, c);
    buf_t b = BUF_INIT;
    if (O.proto == PROTO_RAW)
        buf_printf(&b, "GET /ws?token=%s HTTP/1.1\r\n", TOKENS[c - C]);
    else
        buf_printf(&b, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n");
    buf_printf(&b, "Host: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
               O.targets[c->target]);
    send_raw(c, b.data, b.len);
    buf_free(&b);
}

static void client_close(client_t *c)
{
    if (c->state == CS_DEAD) return;
    if (c->state >= CS_READY) {
        S->ch[ME].closed++;
        R.closed++;
    }
    c->state = CS_DEAD;
    event_del(&c->ev);
    event_del(&c->wev);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    buf_free(&c->out);
    buf_free(&c->in);
    ws_reader_free(&c->rd);
}

static void client_open(client_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        S->ch[ME].failed++;
        R.failed++;
        c->state = CS_DEAD;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    /* Source addresses 127.0.x.y spread the connections over many 4-tuple spaces. */
    int k = c->idx % O.sources;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl((127u << 24) | ((uint32_t)(1 + k / 250) << 8) | (uint32_t)(1 + k % 250));
    bind(fd, (struct sockaddr *)&src, sizeof src);
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->target = c->idx % O.ntargets;
    event_assign(&c->ev, B, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wev, B, fd, EV_WRITE, on_connected, c);
    if (connect(fd, (struct sockaddr *)&O.taddr[c->target], sizeof O.taddr[0]) < 0 && errno != EINPROGRESS) {
        S->ch[ME].failed++;
        R.failed++;
        client_close(c);
        return;
    }
    event_add(&c->ev, NULL);
    event_add(&c->wev, NULL);
}

/* ---- the child's timeline ---- */

static int opened;
static int64_t send_t0, sent_in_phase;
static int last_phase = -1;
static double proc_rate;
static uint64_t rng = 88172645463325252ull;

static uint64_t xrand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void send_one(int64_t sched, int phase)
{
    /* A random joined client of this process. */
    for (int tries = 0; tries < 16; tries++) {
        client_t *c = &C[xrand() % (uint64_t)NC];
        if (c->state != CS_JOINED && !(O.scenario == SC_DM && c->state >= CS_READY)) continue;
        char text[512];
        int tl = snprintf(text, sizeof text, "lg:%d:%d:%lld:", O.run_id, phase, (long long)sched);
        while (tl < O.text_bytes && tl < (int)sizeof text - 1) text[tl++] = 'x';
        text[tl] = '\0';
        char data[700];
        int room_size = O.room_size;
        if (O.scenario == SC_DM) {
            char to[32];
            int peer = (int)(xrand() % (uint64_t)O.connections);
            if (peer == c->idx) peer = (peer + 1) % O.connections; /* a DM to oneself reaches no socket */
            user_id(peer, to, sizeof to);
            snprintf(data, sizeof data, "{\"recipientId\":\"%s\",\"text\":\"%s\"}", to, text);
            room_size = 1;
            request(c, "direct_message", data, sched, phase == PH_MEASURE, room_size);
        } else {
            int last = (O.connections + O.room_size - 1) / O.room_size - 1;
            if (c->room == last && O.connections % O.room_size) room_size = O.connections % O.room_size;
            snprintf(data, sizeof data, "{\"roomId\":\"lg%d-r%d\",\"text\":\"%s\"}", O.run_id, c->room, text);
            request(c, "send_message", data, sched, phase == PH_MEASURE, room_size);
        }
        if (phase == PH_MEASURE) R.sent++;
        return;
    }
}

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    int phase = S->phase;
    int64_t now = now_ns();
    /* Open connections at the ramp rate. */
    if (opened < NC) {
        static int64_t ramp_t0;
        if (!ramp_t0) ramp_t0 = now;
        int due = (int)((double)(now - ramp_t0) / 1e9 * (O.ramp / O.procs)) + 1;
        while (opened < NC && opened < due) client_open(&C[opened++]);
    }
    if (phase != last_phase) {
        if (phase == PH_JOIN && O.scenario != SC_IDLE && O.scenario != SC_DM)
            for (int i = 0; i < NC; i++)
                if (C[i].state == CS_READY) join(&C[i]);
        if (phase == PH_WARMUP || phase == PH_MEASURE) {
            send_t0 = now;
            sent_in_phase = 0;
        }
        if (phase == PH_DONE) event_base_loopexit(B, NULL);
        last_phase = phase;
    }
    if ((phase == PH_WARMUP || phase == PH_MEASURE) && O.scenario != SC_IDLE) {
        /* Open loop: every message has its scheduled time, sent or late. Message k is due at
         * send_t0 + k / rate: k + 1 messages are due once that time has come. */
        int64_t due = (int64_t)((double)(now - send_t0) / 1e9 * proc_rate) + 1;
        while (sent_in_phase < due) {
            int64_t sched = send_t0 + (int64_t)((double)sent_in_phase * 1e9 / proc_rate);
            send_one(sched, phase);
            sent_in_phase++;
        }
    }
}

static void child(int me, int fdout)
{
    ME = me;
    signal(SIGPIPE, SIG_IGN);
    /* This process's clients: every procs-th index. */
    for (int i = me; i < O.connections; i += O.procs) NC++;
    C = calloc((size_t)NC, sizeof *C);
    TOKENS = calloc((size_t)NC, sizeof *TOKENS);
    long long t = (long long)time(NULL);
    for (int j = 0, i = me; i < O.connections; i += O.procs, j++) {
        C[j].idx = i;
        C[j].room = i / O.room_size;
        C[j].fd = -1;
        C[j].last_seq = 0;
        char uid[32], name[48];
        user_id(i, uid, sizeof uid);
        snprintf(name, sizeof name, "lg%d", i);
        TOKENS[j] = jwtauth_mint("HS256", O.secret, strlen(O.secret), uid, name, t, 24 * 3600);
    }
    proc_rate = O.rate / O.procs;
    if (proc_rate <= 0) proc_rate = 1;
    rng ^= (uint64_t)(me + 1) * 0x9E3779B97F4A7C15ull;
    hist_init(&R.lat);
    hist_init(&R.acklat);
    B = event_base_new();
    struct event tick;
    event_assign(&tick, B, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 1000};
    event_add(&tick, &tv);
    int drc = event_base_dispatch(B);
    if (S->phase != PH_DONE)
        fprintf(stderr, "loadgen[%d]: event loop ended early (rc %d, phase %d, errno %s)\n", me, drc, S->phase, strerror(errno));
    /* Clients that never became ready: where they got stuck (a diagnostic for the run). */
    int st[CS_DEAD + 1] = {0};
    for (int i = 0; i < NC; i++) st[C[i].state]++;
    if (st[CS_NEW] + st[CS_CONNECTING] + st[CS_HTTP] + st[CS_SIO_OPEN] + st[CS_SIO_NSP])
        fprintf(stderr, "loadgen[%d]: not ready: new %d connecting %d http %d sio-open %d sio-nsp %d\n", me,
                st[CS_NEW], st[CS_CONNECTING], st[CS_HTTP], st[CS_SIO_OPEN], st[CS_SIO_NSP]);
    const char *p = (const char *)&R;
    size_t left = sizeof R;
    while (left) {
        ssize_t w = write(fdout, p, left);
        if (w <= 0) break;
        p += w;
        left -= (size_t)w;
    }
    _exit(0);
}

/* ---- the parent ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --target HOST:PORT[,HOST:PORT] --secret S [options]\n"
            "  --proto raw|sio        raw WebSocket (default) or Socket.IO over WebSocket\n"
            "  --scenario idle|fanout|dm|senders\n"
            "  --connections N --room-size S --rate MSGS_PER_S --duration S --warmup S --drain S\n"
            "  --procs P --ramp CONN_PER_S --sources N --text-bytes B --nsp /chat\n"
            "  --server-pids 1,2,tree:3   server processes for CPU and memory\n"
            "  --label TEXT --settle S\n");
    exit(2);
}

static void wait_until(int (*cond)(void), double timeout)
{
    int64_t t0 = now_ns();
    while (!cond() && (double)(now_ns() - t0) / 1e9 < timeout) usleep(20000);
}

static uint64_t sum_connected(void)
{
    uint64_t n = 0;
    for (int i = 0; i < O.procs; i++) n += S->ch[i].connected + S->ch[i].failed;
    return n;
}
static int all_connected(void)
{
    return sum_connected() >= (uint64_t)O.connections;
}
static uint64_t sum_joined(void)
{
    uint64_t n = 0;
    for (int i = 0; i < O.procs; i++) n += S->ch[i].joined;
    return n;
}
static uint64_t sum_ready(void)
{
    uint64_t n = 0;
    for (int i = 0; i < O.procs; i++) n += S->ch[i].connected - S->ch[i].closed;
    return n;
}
static int all_joined(void)
{
    return sum_joined() >= sum_ready();
}

static void print_hist(const char *name, const hist_t *h)
{
    printf("\"%s\":{\"count\":%llu,\"mean\":%.1f,\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu}",
           name, (unsigned long long)h->count, h->count ? h->sum / (double)h->count : 0.0,
           (unsigned long long)hist_pct(h, 50), (unsigned long long)hist_pct(h, 90),
           (unsigned long long)hist_pct(h, 99), (unsigned long long)hist_pct(h, 99.9),
           (unsigned long long)h->max);
}

int main(int argc, char **argv)
{
    static struct option lo[] = {
        {"target", 1, 0, 't'}, {"proto", 1, 0, 'p'}, {"scenario", 1, 0, 's'}, {"secret", 1, 0, 'k'},
        {"connections", 1, 0, 'n'}, {"room-size", 1, 0, 'r'}, {"rate", 1, 0, 'R'},
        {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'}, {"drain", 1, 0, 'D'}, {"procs", 1, 0, 'P'},
        {"ramp", 1, 0, 'm'}, {"sources", 1, 0, 'S'}, {"text-bytes", 1, 0, 'b'},
        {"server-pids", 1, 0, 'x'}, {"nsp", 1, 0, 'N'}, {"label", 1, 0, 'l'}, {"settle", 1, 0, 'e'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 't': {
            char *copy = strdup(optarg), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && O.ntargets < MAX_TARGETS; t = strtok_r(NULL, ",", &save)) {
                char host[64];
                int port;
                if (sscanf(t, "%63[^:]:%d", host, &port) != 2) usage();
                snprintf(O.targets[O.ntargets], sizeof O.targets[0], "%s:%d", host, port);
                O.taddr[O.ntargets].sin_family = AF_INET;
                O.taddr[O.ntargets].sin_port = htons((uint16_t)port);
                if (inet_pton(AF_INET, host, &O.taddr[O.ntargets].sin_addr) != 1) {
                    fprintf(stderr, "loadgen: %s: numeric IPv4 addresses only\n", host);
                    return 2;
                }
                O.ntargets++;
            }
            free(copy);
            break;
        }
        case 'p': O.proto = strcmp(optarg, "sio") == 0 ? PROTO_SIO : PROTO_RAW; break;
        case 's':
            O.scenario = !strcmp(optarg, "idle") ? SC_IDLE : !strcmp(optarg, "dm") ? SC_DM
                         : !strcmp(optarg, "senders") ? SC_SENDERS : SC_FANOUT;
            break;
        case 'k': O.secret = optarg; break;
        case 'n': O.connections = atoi(optarg); break;
        case 'r': O.room_size = atoi(optarg); break;
        case 'R': O.rate = atof(optarg); break;
        case 'd': O.duration = atof(optarg); break;
        case 'w': O.warmup = atof(optarg); break;
        case 'D': O.drain = atof(optarg); break;
        case 'P': O.procs = atoi(optarg); break;
        case 'm': O.ramp = atof(optarg); break;
        case 'S': O.sources = atoi(optarg); break;
        case 'b': O.text_bytes = atoi(optarg); break;
        case 'x': O.server_pids = optarg; break;
        case 'N': O.nsp = optarg; break;
        case 'l': O.label = optarg; break;
        case 'e': O.settle = atof(optarg); break;
        default: usage();
        }
    }
    if (!O.ntargets || !O.secret || O.connections < 1 || O.room_size < 1 || O.sources < 1 ||
        O.sources > 60000)
        usage();
    if (O.scenario == SC_SENDERS && O.room_size < 1) O.room_size = 1;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int per = (int)rl.rlim_cur - 64;
    if (O.procs <= 0) O.procs = (O.connections + per - 1) / per;
    if (O.procs < 1) O.procs = 1;
    if (O.procs > MAX_PROCS) O.procs = MAX_PROCS;
    if (O.text_bytes > 400) O.text_bytes = 400;
    O.run_id = (int)(now_ns() / 1000 % 100000000);

    procset_t servers = {{0}, 0};
    if (*O.server_pids) procset_parse(&servers, O.server_pids);
    long rss_base = procset_mem_kib(&servers, "VmRSS", NULL);
    long anon_base = procset_mem_kib(&servers, "RssAnon", NULL);
    long sock_base = sockstat_tcp_mem_kib();

    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(S, 0, sizeof *S);
    int pipes[MAX_PROCS];
    pid_t kids[MAX_PROCS];
    for (int i = 0; i < O.procs; i++) {
        int p[2];
        if (pipe(p) < 0) return 1;
        fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
        kids[i] = fork();
        if (kids[i] == 0) {
            close(p[0]);
            child(i, p[1]);
        }
        close(p[1]);
        pipes[i] = p[0];
    }
    int64_t t_start = now_ns();
    wait_until(all_connected, 30 + O.connections / O.ramp * 2);
    double connect_s = (double)(now_ns() - t_start) / 1e9;
    uint64_t connected = 0, failed = 0;
    for (int i = 0; i < O.procs; i++) {
        connected += S->ch[i].connected;
        failed += S->ch[i].failed;
    }
    fprintf(stderr, "loadgen: %llu of %d connected (%llu failed) in %.1f s\n",
            (unsigned long long)connected, O.connections, (unsigned long long)failed, connect_s);

    S->phase = PH_JOIN;
    if (O.scenario == SC_FANOUT || O.scenario == SC_SENDERS) wait_until(all_joined, 60);
    usleep((useconds_t)(O.settle * 1e6));
    long rss_conn = procset_mem_kib(&servers, "VmRSS", NULL);
    long anon_conn = procset_mem_kib(&servers, "RssAnon", NULL);
    long sock_conn = sockstat_tcp_mem_kib();

    double cpu0 = 0, cpu1 = 0, ucpu0 = 0, ucpu1 = 0, measured_s = 0;
    if (O.scenario == SC_IDLE) {
        cpu0 = procset_cpu(&servers, &ucpu0);
        int64_t t0 = now_ns();
        usleep((useconds_t)(O.duration * 1e6));
        cpu1 = procset_cpu(&servers, &ucpu1);
        measured_s = (double)(now_ns() - t0) / 1e9;
    } else {
        S->phase = PH_WARMUP;
        usleep((useconds_t)(O.warmup * 1e6));
        cpu0 = procset_cpu(&servers, &ucpu0);
        int64_t t0 = now_ns();
        S->phase = PH_MEASURE;
        usleep((useconds_t)(O.duration * 1e6));
        S->phase = PH_DRAIN;
        measured_s = (double)(now_ns() - t0) / 1e9;
        usleep((useconds_t)(O.drain * 1e6));
        /* Server CPU over the measured window and the drain: the work of delivering what was
         * sent in the window (counted in `delivered`) ends in the drain. */
        cpu1 = procset_cpu(&servers, &ucpu1);
    }
    long rss_each[PS_MAX];
    long rss_end = procset_mem_kib(&servers, "VmRSS", rss_each);
    S->phase = PH_DONE;

    result_t tot;
    memset(&tot, 0, sizeof tot);
    hist_init(&tot.lat);
    hist_init(&tot.acklat);
    static result_t r;
    for (int i = 0; i < O.procs; i++) {
        char *p = (char *)&r;
        size_t left = sizeof r;
        while (left) {
            ssize_t n = read(pipes[i], p, left);
            if (n <= 0) break;
            p += n;
            left -= (size_t)n;
        }
        waitpid(kids[i], NULL, 0);
        if (left) continue;
        tot.sent += r.sent;
        tot.acked += r.acked;
        tot.ack_errors += r.ack_errors;
        tot.expected += r.expected;
        tot.delivered += r.delivered;
        tot.duplicates += r.duplicates;
        tot.out_of_order += r.out_of_order;
        tot.dropped += r.dropped;
        tot.closed += r.closed;
        hist_merge(&tot.lat, &r.lat);
        hist_merge(&tot.acklat, &r.acklat);
    }
    static const char *scen[] = {"idle", "fanout", "dm", "senders"};
    double cpu = cpu1 - cpu0, ucpu = ucpu1 - ucpu0;
    int64_t lost = (int64_t)tot.expected - (int64_t)tot.delivered;
    printf("{\"label\":\"%s\",\"scenario\":\"%s\",\"proto\":\"%s\",\"targets\":%d,\"connections\":%d,"
           "\"connected\":%llu,\"connect_failed\":%llu,\"closed_during_run\":%llu,\"connect_seconds\":%.2f,"
           "\"room_size\":%d,\"rate\":%.1f,\"duration\":%.2f,\"procs\":%d,"
           "\"sent\":%llu,\"acked\":%llu,\"ack_errors\":%llu,\"expected\":%llu,\"delivered\":%llu,"
           "\"lost\":%lld,\"duplicates\":%llu,\"out_of_order\":%llu,\"client_dropped\":%llu,"
           "\"acked_per_sec\":%.1f,\"deliveries_per_sec\":%.1f,",
           O.label, scen[O.scenario], O.proto == PROTO_SIO ? "socketio" : "raw", O.ntargets, O.connections,
           (unsigned long long)connected, (unsigned long long)failed, (unsigned long long)tot.closed,
           connect_s, O.room_size, O.rate, measured_s, O.procs, (unsigned long long)tot.sent,
           (unsigned long long)tot.acked, (unsigned long long)tot.ack_errors,
           (unsigned long long)tot.expected, (unsigned long long)tot.delivered, (long long)lost,
           (unsigned long long)tot.duplicates, (unsigned long long)tot.out_of_order,
           (unsigned long long)tot.dropped, measured_s > 0 ? (double)tot.acked / measured_s : 0,
           measured_s > 0 ? (double)tot.delivered / measured_s : 0);
    print_hist("latency_us", &tot.lat);
    printf(",");
    print_hist("ack_latency_us", &tot.acklat);
    printf(",\"server\":{\"pids\":%d,\"cpu_seconds\":%.3f,\"cpu_user_seconds\":%.3f,"
           "\"cpu_system_seconds\":%.3f,\"cpu_per_second\":%.3f,"
           "\"deliveries_per_cpu_second\":%.1f,\"rss_kib_base\":%ld,\"rss_kib_connected\":%ld,"
           "\"rss_kib_end\":%ld,\"rss_bytes_per_connection\":%.1f,\"anon_kib_base\":%ld,"
           "\"anon_kib_connected\":%ld,\"anon_bytes_per_connection\":%.1f,\"sockstat_tcp_kib_base\":%ld,"
           "\"sockstat_tcp_kib_connected\":%ld,\"rss_kib_each\":[",
           servers.n, cpu, ucpu, cpu - ucpu, measured_s > 0 ? cpu / measured_s : 0,
           cpu > 0 ? (double)tot.delivered / cpu : 0, rss_base, rss_conn, rss_end,
           connected ? (double)(rss_conn - rss_base) * 1024.0 / (double)connected : 0, anon_base, anon_conn,
           connected ? (double)(anon_conn - anon_base) * 1024.0 / (double)connected : 0, sock_base, sock_conn);
    for (int i = 0; i < servers.n; i++) printf("%s%ld", i ? "," : "", rss_each[i]);
    printf("]}}\n");
    fprintf(stderr, "loadgen: %s %s: sent %llu acked %llu delivered %llu/%llu lost %lld dup %llu "
                    "p50 %llu us p99 %llu us server cpu %.2f s\n",
            scen[O.scenario], O.proto == PROTO_SIO ? "socketio" : "raw", (unsigned long long)tot.sent,
            (unsigned long long)tot.acked, (unsigned long long)tot.delivered,
            (unsigned long long)tot.expected, (long long)lost, (unsigned long long)tot.duplicates,
            (unsigned long long)hist_pct(&tot.lat, 50), (unsigned long long)hist_pct(&tot.lat, 99), cpu);
    return 0;
}
