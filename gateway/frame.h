/*
 * frame: refcounted, immutable output buffers, and the encode-once broadcast.
 *
 * A gw_frame_t holds bytes ready for the wire. For WebSocket frames the header comes first
 * (`hdr` bytes) and the payload follows, so the same frame serves a WebSocket connection
 * (all of it) and an Engine.IO long-polling response (the payload only). A fan-out encodes
 * each event once per wire variant (raw JSON envelope; Socket.IO per namespace) and every
 * recipient's output queue takes a reference; the last reference frees it.
 */
#ifndef GW_FRAME_H
#define GW_FRAME_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_frame {
    uint32_t refs;
    uint32_t len; /* bytes in data */
    uint16_t hdr; /* WebSocket header bytes at the front */
    char data[];
} gw_frame_t;

/* A WebSocket frame (server to client, unmasked) around payload. */
gw_frame_t *frame_ws(int opcode, const void *payload, size_t len);
/* Plain bytes (HTTP responses). */
gw_frame_t *frame_raw(const void *data, size_t len);

static inline gw_frame_t *frame_ref(gw_frame_t *f)
{
    f->refs++;
    return f;
}
void frame_unref(gw_frame_t *f);

/* Wire variants: the raw-WebSocket envelope, then one per Socket.IO namespace. */
enum { GW_VARIANT_RAW = 0, GW_VARIANT_SIO = 1 };
#define GW_NSP_COUNT 4 /* "/", "/chat", "/notifications", "/custom" (conformance) */
#define GW_VARIANTS (1 + GW_NSP_COUNT)

extern const char *const gw_nsp_names[GW_NSP_COUNT];

/* One server-pushed event; `data` is encoded JSON that outlives the bcast. */
typedef struct gw_bcast {
    const char *event;
    const char *data;
    size_t data_len;
    gw_frame_t *v[GW_VARIANTS];
} gw_bcast_t;

static inline void bcast_init(gw_bcast_t *b, const char *event, const char *data, size_t len)
{
    b->event = event;
    b->data = data;
    b->data_len = len;
    for (int i = 0; i < GW_VARIANTS; i++) b->v[i] = NULL;
}

/* The frame for a variant, encoded on first use. NULL when out of memory. The bcast keeps
 * its reference; take your own with frame_ref. */
gw_frame_t *bcast_frame(gw_bcast_t *b, int variant);
void bcast_release(gw_bcast_t *b);

#endif
