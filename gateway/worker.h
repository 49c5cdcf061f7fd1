/*
 * worker: the state of one pre-forked gateway worker and the objects it owns.
 *
 * A worker is one libevent loop. It owns every connection it accepted (gw_conn_t), the chat
 * sockets on them (gw_sock_t: one per raw WebSocket, one per Socket.IO namespace), its
 * local room and user indexes, its Engine.IO sessions, its link to the broker and its
 * PostgreSQL connection. Nothing here is shared with other workers except the metrics slot.
 *
 * Lifetimes: a connection is closed with conn_close() from anywhere (even inside its own
 * callbacks); that detaches it at once and parks it on the worker's grave list, and the
 * flush callback, which runs after every I/O callback of the loop turn, frees it. A chat
 * socket is refcounted because asynchronous database replies may outlive it; a closed
 * socket only drops what is sent to it.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>

#include "buf.h"
#include "envelope.h"
#include "frame.h"
#include "jwtauth.h"
#include "map.h"
#include "metrics.h"
#include "ws.h"

typedef struct gw_worker gw_worker_t;
typedef struct gw_conn gw_conn_t;
typedef struct gw_sock gw_sock_t;
typedef struct gw_user gw_user_t;
typedef struct gw_room gw_room_t;
typedef struct gw_member gw_member_t;
typedef struct gw_eio gw_eio_t;
typedef struct gw_bus gw_bus_t;
typedef struct gw_store gw_store_t;

/* An output queue of frame references (a ring), drained by writev. */
typedef struct gw_outq {
    gw_frame_t **q;
    uint32_t head;
    uint32_t count;
    uint32_t cap;
    uint32_t off;   /* bytes of the head frame already written */
    uint64_t bytes; /* bytes not yet written */
    uint8_t payload_only; /* queue of Engine.IO packets: frames without their WS header */
} gw_outq_t;

enum conn_state {
    CS_HTTP_HEAD,  /* reading a request head */
    CS_HTTP_BODY,  /* reading a request body */
    CS_HTTP_PARKED, /* a long-poll GET waiting for packets */
    CS_WS,         /* WebSocket open */
    CS_CLOSING,    /* last bytes queued; close once written */
    CS_LINGER,     /* write side shut; waiting for the peer's FIN */
    CS_DEAD,       /* on the grave list */
};

enum conn_kind { CK_HTTP, CK_RAW_WS, CK_SIO_WS };

#define CF_DIRTY 0x01     /* on the worker's dirty list */
#define CF_WANT_WRITE 0x02 /* write event armed (socket buffer full) */
#define CF_PONG_WAIT 0x04 /* ping sent, waiting for any traffic */
#define CF_COUNTED 0x08   /* counted in a connections gauge */
#define CF_KILL 0x10      /* over the outbound cap: closed by the next flush */

struct gw_conn {
    gw_worker_t *w;
    int fd;
    uint8_t state;
    uint8_t kind;
    uint8_t flags;
    uint8_t gauge;
    uint16_t close_code;
    uint16_t refs; /* asynchronous work that will come back to this connection */
    struct gw_conn *prev, *next; /* the worker's connections */
    struct gw_conn *dirty_next; /* the worker's dirty list */
    struct gw_conn *grave_next; /* the worker's grave list (separate: a closed connection
                                   may still be linked in the dirty list this turn) */
    struct event ev;  /* readable; writable too while CF_WANT_WRITE (conn.c want_write) */
    struct event tev; /* handshake, ping and linger deadlines */
    gw_outq_t out;
    buf_t in;           /* HTTP head and body bytes */
    uint64_t body_need; /* total bytes (head + body) the current request needs */
    ws_reader_t ws;
    gw_sock_t *sock; /* raw WebSocket: its chat socket */
    gw_eio_t *eio;   /* Socket.IO: the session this transport or parked poll serves */
    int64_t opened_ms;
    char peer[48];
};

enum sock_proto { SP_RAW = 0, SP_SIO = 1 };

struct gw_sock {
    gw_worker_t *w;
    gw_user_t *user;
    gw_member_t *rooms; /* memberships, linked by snext */
    gw_conn_t *conn;    /* SP_RAW */
    gw_eio_t *eio;      /* SP_SIO */
    struct gw_sock *unext, *uprev; /* the user's sockets on this worker */
    struct gw_sock *anext, *aprev; /* every socket of the worker */
    uint32_t refs;
    uint8_t proto;
    uint8_t nsp; /* Socket.IO namespace index */
    uint8_t closed;
    uint8_t nrooms;
    uint8_t limited; /* the last event was rate limited (log once per flood) */
    int64_t tokens_milli; /* rate-limit bucket, in thousandths of an event */
    int64_t bucket_ms;
    char sid[24];
};

struct gw_user {
    map_node_t node;
    gw_sock_t *socks;
    uint32_t nsocks;
    char *username;
    char id[];
};

struct gw_member {
    gw_room_t *room;
    gw_sock_t *sock;
    gw_member_t *rprev, *rnext; /* the room's members */
    gw_member_t *snext;         /* the socket's memberships */
    int64_t last_seq;           /* highest seq this member has been given */
    uint8_t state;              /* enum member_state (rooms.h) */
};

/* An Engine.IO session (sio.c): outlives its transports, carries one chat socket per
 * Socket.IO namespace. */
enum eio_transport { ET_POLLING = 0, ET_WEBSOCKET = 1 };
enum eio_mode { EM_SOCKETIO = 0, EM_ECHO = 1 /* conformance: the Engine.IO test suite */ };

struct gw_eio {
    map_node_t node;
    gw_worker_t *w;
    uint8_t mode;
    uint8_t transport;
    uint8_t closed;
    uint8_t upgrading; /* probe done on a WebSocket, waiting for "5" */
    uint8_t pong_wait;
    uint8_t flush_armed;   /* on the worker's eio_flush list */
    uint8_t connected_any; /* a namespace was connected at least once */
    gw_conn_t *ws;    /* the WebSocket transport, once upgraded (or direct) */
    gw_conn_t *probe; /* a WebSocket being probed during an upgrade */
    gw_conn_t *poll;  /* a parked long-poll GET */
    gw_outq_t pq;     /* packets waiting for a GET (payloads of WebSocket frames) */
    gw_sock_t *socks[GW_NSP_COUNT];
    /* One timer per session (an idle session is mostly this): the next of the ping, the
     * pong deadline, the namespace-connect deadline and the conformance "auth" echo. */
    struct event tev;
    char *pending_auth; /* conformance: the auth event to send after the CONNECT ack */
    int64_t ping_at_ms;   /* when the next ping is due (wall clock) */
    int64_t pong_by_ms;   /* while pong_wait: the deadline */
    int64_t connect_by_ms; /* a namespace must be connected by then (0: no deadline) */
    char *hs_token;   /* token of the handshake request (query, header, cookie) */
    char *origin;     /* Origin of the handshake, for CORS answers */
    struct gw_eio *grave_next;
    struct gw_eio *flush_next; /* the worker's eio_flush list: answer the parked GET */
    struct eio_bin *bin; /* conformance: a binary packet being assembled */
    char peer[48];
    char sid[96];
};

/* A message held back by a room until the gap before it is filled. */
typedef struct gw_pending {
    struct gw_pending *next;
    int64_t seq;
    gw_bcast_t b;
    char *data; /* owned copy of b.data */
} gw_pending_t;

struct gw_room {
    map_node_t node;
    gw_member_t *members;
    uint32_t count;
    int64_t delivered; /* highest seq delivered in order on this worker; -1 unknown */
    gw_pending_t *pending; /* out-of-order messages, sorted by seq */
    struct event gap_ev;  /* waits briefly for a missing seq before asking PostgreSQL */
    uint8_t gap_armed;
    uint8_t gap_inflight;
    uint32_t reads; /* store reads in flight that point at this room */
    gw_worker_t *w;
    char id[CHAT_MAX_ROOM_ID + 1];
};

struct gw_worker {
    int index;
    int nworkers;
    struct event_base *base;
    int listen_fd;
    struct event lev;
    struct event flush_ev;
    struct event tick_ev;
    struct event sig_ev;
    gw_conn_t *conns;
    uint32_t nconns;
    gw_conn_t *dirty; /* written in the order they became dirty */
    gw_conn_t *dirty_tail;
    gw_conn_t *grave;
    gw_sock_t *socks;
    uint32_t nsocks;
    map_t rooms;
    map_t users;
    map_t sessions;
    jwtauth_t *auth;
    gw_bus_t *bus;
    gw_store_t *store;
    gw_metrics_shm_t *shm;
    gw_metrics_slot_t *m;
    uint8_t *rbuf;
    size_t rbuf_size;
    int draining;
    int64_t drain_deadline_ms;
    const struct timeval *tv_ping;
    const struct timeval *tv_pong;
    const struct timeval *tv_handshake;
    const struct timeval *tv_linger;
    uint64_t counter;
    gw_eio_t *eio_grave; /* closed sessions, freed by the flush */
    gw_eio_t *eio_flush; /* sessions with packets for their parked GET, answered by the flush */
    int handoff_fd;   /* receives sockets handed over by other workers (SCM_RIGHTS) */
    int *peer_fds;    /* send ends of every worker's handoff socket */
    struct event handoff_ev;
};

/* Milliseconds since the epoch, from the loop's cached time. */
int64_t gw_now_ms(gw_worker_t *w);
/* Ask for the flush callback at the end of this loop turn. */
void gw_want_flush(gw_worker_t *w);
/* A fresh random id (base64url, n chars, n < 24). */
void gw_random_id(char *out, size_t n);

int worker_run(int index, int nworkers, int listen_fd, gw_metrics_shm_t *shm, int handoff_fd,
               int *peer_fds);

#endif
