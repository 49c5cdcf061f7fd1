/*
 * ws: the RFC 6455 WebSocket codec, with no I/O of its own.
 *
 * ws_reader_t turns bytes into complete messages and control frames. Feed it whatever the
 * socket produced; it keeps the partial frame header and the partial message between calls,
 * so the callbacks fire identically however the bytes were chunked. It enforces the rules a
 * server must enforce (client masking, reserved bits and opcodes, control frame size and
 * FIN, continuation order, the frame and message size limits, UTF-8 of text messages and
 * close reasons, valid close codes) and, on the first violation, stops with the close code
 * to send (1002, 1007 or 1009).
 *
 * The input buffer is unmasked in place, so it must be writable. A message that arrives as
 * one unfragmented frame inside one input chunk is handed to the callback as a pointer into
 * that input (no copy); other messages are assembled in the reader's own buffer, which is
 * released after each message so that an idle connection holds no payload memory.
 */
#ifndef CHAT_WS_H
#define CHAT_WS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_ABNORMAL = 1006,
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_TRY_AGAIN = 1013,
};

enum ws_role {
    WS_ROLE_SERVER = 0, /* peer frames must be masked */
    WS_ROLE_CLIENT = 1, /* peer frames must not be masked */
};

#define WS_MAX_HEADER 14
#define WS_MAX_CONTROL 125

/* Return codes of ws_reader_feed(). */
#define WS_OK 0
#define WS_ERR_PROTOCOL (-1) /* r->close_code and r->error say what to send */
#define WS_ERR_STOPPED (-2)  /* a callback returned non-zero */
#define WS_ERR_NOMEM (-3)

typedef struct ws_reader_cb {
    /* A complete text or binary message. `data` is writable and valid only during the call. */
    int (*on_message)(void *ud, int opcode, uint8_t *data, size_t len);
    /* A ping, pong or close frame (close already validated: empty, or a valid code plus
     * UTF-8 reason). */
    int (*on_control)(void *ud, int opcode, uint8_t *data, size_t len);
} ws_reader_cb_t;

typedef struct ws_reader {
    /* Limits, set before the first feed. */
    uint64_t max_frame;
    uint64_t max_message;
    uint8_t role;
    /* Current frame. */
    uint8_t in_payload;
    uint8_t hdr_len;
    uint8_t opcode;
    uint8_t fin;
    uint8_t mask[4];
    uint8_t hdr[WS_MAX_HEADER];
    uint64_t frame_len;
    uint64_t frame_pos;
    /* Current (possibly fragmented) data message; msg_opcode 0 when none. */
    uint8_t msg_opcode;
    uint32_t utf8;
    uint64_t msg_len;
    buf_t msg;
    /* A control frame split across reads. */
    uint8_t *ctl;
    /* Set on WS_ERR_PROTOCOL. */
    uint16_t close_code;
    const char *error;
} ws_reader_t;

void ws_reader_init(ws_reader_t *r, int role, uint64_t max_frame, uint64_t max_message);
/* Release buffers; the reader can be re-initialised. */
void ws_reader_free(ws_reader_t *r);
/* 1 when the reader holds no partial frame or message (nothing buffered). */
int ws_reader_idle(const ws_reader_t *r);
/*
 * Consume data[0..len). Returns WS_OK when every byte was consumed, WS_ERR_PROTOCOL on a
 * violation (stop reading; send a close with r->close_code), WS_ERR_STOPPED when a callback
 * returned non-zero (the remaining bytes are not consumed), WS_ERR_NOMEM.
 */
int ws_reader_feed(ws_reader_t *r, uint8_t *data, size_t len, const ws_reader_cb_t *cb, void *ud);

/* Encode a frame header into out (WS_MAX_HEADER bytes); mask NULL for server frames.
 * Returns the header length. The caller masks the payload itself when mask is given. */
size_t ws_frame_header(uint8_t *out, int fin, int opcode, uint64_t len, const uint8_t *mask);

/* XOR data with the mask, starting at payload offset `pos`. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t pos);

/* Build a close payload (code + reason truncated to fit 125 bytes on a UTF-8 boundary).
 * Returns its length (0 when code is 0). */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code, const char *reason);

/* 1 when a peer may send this close code (RFC 6455 7.4). */
int ws_close_code_valid(unsigned code);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: out receives 28 chars and a NUL.
 * Returns 0, or -1 when the key is not the base64 encoding of 16 bytes. */
int ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
