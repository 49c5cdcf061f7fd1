/*
 * brkproto: the framing of the worker <-> chat-broker unix-socket protocol, with no I/O.
 *
 * A frame is
 *     u32 length (big endian; the bytes after these four) | u8 type | fields
 * and each field is
 *     u32 length (big endian) | bytes.
 * Each type has a fixed number of fields (brk_arity), checked by the parser, so a handler
 * can index fields without further checks. docs/ARCHITECTURE.md lists the types and fields.
 */
#ifndef CHAT_BRKPROTO_H
#define CHAT_BRKPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define BRK_MAX_FRAME (16u << 20) /* one frame never exceeds 16 MiB */
#define BRK_MAX_FIELDS 4

enum brk_type {
    BRK_HELLO = 1,       /* w->b: worker index, pid */
    BRK_SUB = 2,         /* w->b: topic ("room:<id>" | "user:<id>") */
    BRK_UNSUB = 3,       /* w->b: topic */
    BRK_PUB = 4,         /* w->b: topic, payload (JSON, the Redis message) */
    BRK_MSG = 5,         /* b->w: topic, payload */
    BRK_CONN_UP = 6,     /* w->b: user id, username */
    BRK_CONN_DOWN = 7,   /* w->b: user id, rooms (space-separated; for presence scope rooms) */
    BRK_ONLINE_REQ = 8,  /* w->b: request id */
    BRK_ONLINE_RESP = 9, /* b->w: request id, JSON array of {userId, username} or "" on error */
    BRK_STATUS = 10,     /* b->w: "up" | "down" (Redis reachable and subscriptions in place) */
    BRK__MAX = 11
};

typedef struct brk_field {
    const char *p;
    uint32_t len;
} brk_field_t;

typedef struct brk_frame {
    uint8_t type;
    uint8_t nfields;
    brk_field_t f[BRK_MAX_FIELDS];
} brk_frame_t;

/* Number of fields of a type, -1 for an unknown type. */
int brk_arity(int type);

/*
 * Parse one frame from buf[0..len). Returns the frame's total size (> 0), 0 when more bytes
 * are needed, -1 when malformed (unknown type, wrong field count, lengths that do not add
 * up, over BRK_MAX_FRAME). Fields are views into buf.
 */
long brk_parse(const uint8_t *buf, size_t len, brk_frame_t *fr);

/* Append a frame; nfields must match the type's arity. 0 or -1. */
int brk_encode(buf_t *out, int type, int nfields, const brk_field_t *f);
int brk_encode1(buf_t *out, int type, const char *a, size_t alen);
int brk_encode2(buf_t *out, int type, const char *a, size_t alen, const char *b, size_t blen);

const char *brk_type_name(int type);

#endif
