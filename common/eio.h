/*
 * eio: Engine.IO v4 and Socket.IO v5 packet codecs, with no I/O.
 *
 * Engine.IO packets are one type digit followed by data: 0 open, 1 close, 2 ping, 3 pong,
 * 4 message, 5 upgrade, 6 noop. Over WebSocket each frame is one packet; over HTTP
 * long-polling a payload is packets joined by the record separator 0x1E, and binary
 * packets are "b" + base64 (this server does not accept binary: see the README).
 *
 * A Socket.IO packet travels inside an Engine.IO message ("4..."):
 *   <type>[<attachments>-][<namespace>,][<ack id>][<JSON>]
 * with types 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT,
 * 6 BINARY_ACK. The encoders below include the leading Engine.IO '4'.
 */
#ifndef CHAT_EIO_H
#define CHAT_EIO_H

#include <stddef.h>

#include "buf.h"

enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
};

enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
};

#define EIO_RECORD_SEP '\x1e'
#define SIO_MAX_NSP 64

/* One Engine.IO packet view. */
typedef struct eio_packet {
    int type;
    int binary; /* "b"-prefixed base64 payload in polling */
    const char *data;
    size_t len;
} eio_packet_t;

/* Parse one Engine.IO packet (a WebSocket text frame or one polling record).
 * Returns 0 or -1 (empty or unknown type). */
int eio_parse(const char *s, size_t n, eio_packet_t *p);

/*
 * Split a polling payload: returns the number of bytes of the next record starting at
 * s[0..n) (up to, not including, the separator) and sets *next to the offset of the
 * record after it (n when it was the last one).
 */
size_t eio_next_record(const char *s, size_t n, size_t *next);

typedef struct sio_packet {
    int type;
    const char *nsp; /* "/" when absent */
    size_t nsp_len;
    long long ack_id; /* -1 when absent */
    const char *data; /* the JSON payload, may be empty */
    size_t data_len;
} sio_packet_t;

/* Parse a Socket.IO packet (the Engine.IO message payload). 0 or -1 (malformed). Binary
 * packet types parse (so the caller can refuse them by type), attachments are skipped. */
int sio_parse(const char *s, size_t n, sio_packet_t *p);

/* 0{"sid":...,"upgrades":[...],"pingInterval":..,"pingTimeout":..,"maxPayload":..} */
void eio_encode_open(buf_t *b, const char *sid, int allow_upgrade, long long ping_interval,
                     long long ping_timeout, long long max_payload);

/* 42<nsp,>["event",DATA] (data_json NULL: no argument) */
void sio_encode_event(buf_t *b, const char *nsp, size_t nsp_len, const char *event,
                      const char *data_json, size_t data_len);
/* 43<nsp,><id>[DATA] */
void sio_encode_ack(buf_t *b, const char *nsp, size_t nsp_len, long long ack_id,
                    const char *data_json, size_t data_len);
/* 40<nsp,>{"sid":SID} */
void sio_encode_connect(buf_t *b, const char *nsp, size_t nsp_len, const char *sid);
/* 44<nsp,>{"message":M} */
void sio_encode_connect_error(buf_t *b, const char *nsp, size_t nsp_len, const char *message);
/* 41<nsp,> */
void sio_encode_disconnect(buf_t *b, const char *nsp, size_t nsp_len);

#endif
