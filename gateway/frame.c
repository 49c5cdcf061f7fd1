#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "eio.h"
#include "envelope.h"
#include "ws.h"

const char *const gw_nsp_names[GW_NSP_COUNT] = {"/", "/chat", "/notifications", "/custom"};

gw_frame_t *frame_ws(int opcode, const void *payload, size_t len)
{
    uint8_t h[WS_MAX_HEADER];
    size_t hl = ws_frame_header(h, 1, opcode, len, NULL);
    gw_frame_t *f = malloc(sizeof *f + hl + len);
    if (!f) return NULL;
    f->refs = 1;
    f->len = (uint32_t)(hl + len);
    f->hdr = (uint16_t)hl;
    memcpy(f->data, h, hl);
    if (len) memcpy(f->data + hl, payload, len);
    return f;
}

gw_frame_t *frame_raw(const void *data, size_t len)
{
    gw_frame_t *f = malloc(sizeof *f + len);
    if (!f) return NULL;
    f->refs = 1;
    f->len = (uint32_t)len;
    f->hdr = 0;
    if (len) memcpy(f->data, data, len);
    return f;
}

void frame_unref(gw_frame_t *f)
{
    if (f && --f->refs == 0) free(f);
}

gw_frame_t *bcast_frame(gw_bcast_t *b, int variant)
{
    if (b->v[variant]) return b->v[variant];
    buf_t p = BUF_INIT;
    if (variant == GW_VARIANT_RAW) {
        env_encode_event(&p, b->event, b->data, b->data_len);
    } else {
        const char *nsp = gw_nsp_names[variant - GW_VARIANT_SIO];
        sio_encode_event(&p, nsp, strlen(nsp), b->event, b->data, b->data_len);
    }
    b->v[variant] = p.data ? frame_ws(WS_OP_TEXT, p.data, p.len) : NULL;
    buf_free(&p);
    return b->v[variant];
}

void bcast_release(gw_bcast_t *b)
{
    for (int i = 0; i < GW_VARIANTS; i++) {
        frame_unref(b->v[i]);
        b->v[i] = NULL;
    }
}
