#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "utf8.h"

void ws_reader_init(ws_reader_t *r, int role, uint64_t max_frame, uint64_t max_message)
{
    memset(r, 0, sizeof *r);
    r->role = (uint8_t)role;
    r->max_frame = max_frame;
    r->max_message = max_message;
}

void ws_reader_free(ws_reader_t *r)
{
    buf_free(&r->msg);
    free(r->ctl);
    r->ctl = NULL;
}

int ws_reader_idle(const ws_reader_t *r)
{
    return !r->in_payload && r->hdr_len == 0 && r->msg_opcode == 0 && r->msg.cap == 0;
}

static int fail(ws_reader_t *r, uint16_t code, const char *why)
{
    r->close_code = code;
    r->error = why;
    return WS_ERR_PROTOCOL;
}

static int is_control(int op)
{
    return op >= 0x8;
}

int ws_close_code_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999) return 1;
    switch (code) {
    case 1000: case 1001: case 1002: case 1003: case 1007: case 1008:
    case 1009: case 1010: case 1011: case 1012: case 1013: case 1014:
        return 1;
    default:
        return 0;
    }
}

/* Header bytes needed once the first two are known. */
static size_t header_need(const uint8_t *h)
{
    size_t need = 2;
    uint8_t l7 = h[1] & 0x7F;
    if (l7 == 126) need += 2;
    else if (l7 == 127) need += 8;
    if (h[1] & 0x80) need += 4;
    return need;
}

/* Validate a complete header and set up the frame state. */
static int start_frame(ws_reader_t *r)
{
    const uint8_t *h = r->hdr;
    uint8_t fin = h[0] >> 7;
    uint8_t rsv = (h[0] >> 4) & 0x7;
    uint8_t op = h[0] & 0xF;
    uint8_t masked = h[1] >> 7;
    uint8_t l7 = h[1] & 0x7F;
    uint64_t len;
    size_t p = 2;

    if (rsv) return fail(r, WS_CLOSE_PROTOCOL, "reserved bits set");
    if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY && op != WS_OP_CLOSE &&
        op != WS_OP_PING && op != WS_OP_PONG)
        return fail(r, WS_CLOSE_PROTOCOL, "reserved opcode");
    if (r->role == WS_ROLE_SERVER && !masked)
        return fail(r, WS_CLOSE_PROTOCOL, "client frame not masked");
    if (r->role == WS_ROLE_CLIENT && masked)
        return fail(r, WS_CLOSE_PROTOCOL, "server frame masked");
    if (l7 == 126) {
        len = ((uint64_t)h[2] << 8) | h[3];
        p = 4;
    } else if (l7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | h[2 + i];
        p = 10;
        if (len >> 63) return fail(r, WS_CLOSE_PROTOCOL, "frame length has the top bit set");
    } else {
        len = l7;
    }
    if (is_control(op)) {
        if (!fin) return fail(r, WS_CLOSE_PROTOCOL, "fragmented control frame");
        if (len > WS_MAX_CONTROL) return fail(r, WS_CLOSE_PROTOCOL, "control frame too long");
    } else {
        if (op == WS_OP_CONT && !r->msg_opcode)
            return fail(r, WS_CLOSE_PROTOCOL, "continuation without a message");
        if (op != WS_OP_CONT && r->msg_opcode)
            return fail(r, WS_CLOSE_PROTOCOL, "new message inside a fragmented message");
        if (len > r->max_frame) return fail(r, WS_CLOSE_TOO_BIG, "frame too big");
        uint64_t so_far = op == WS_OP_CONT ? r->msg_len : 0;
        if (len > r->max_message || so_far > r->max_message - len)
            return fail(r, WS_CLOSE_TOO_BIG, "message too big");
        if (op != WS_OP_CONT) {
            r->msg_opcode = op;
            r->msg_len = 0;
            r->utf8 = 0;
        }
    }
    if (masked) memcpy(r->mask, h + p, 4);
    else memset(r->mask, 0, 4);
    r->opcode = op;
    r->fin = fin;
    r->frame_len = len;
    r->frame_pos = 0;
    r->in_payload = 1;
    r->hdr_len = 0;
    return WS_OK;
}

static int deliver_control(ws_reader_t *r, uint8_t *data, size_t len, const ws_reader_cb_t *cb,
                           void *ud)
{
    if (r->opcode == WS_OP_CLOSE && len > 0) {
        if (len == 1) return fail(r, WS_CLOSE_PROTOCOL, "close payload of one byte");
        unsigned code = ((unsigned)data[0] << 8) | data[1];
        if (!ws_close_code_valid(code)) return fail(r, WS_CLOSE_PROTOCOL, "invalid close code");
        if (!utf8_valid(data + 2, len - 2))
            return fail(r, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
    }
    if (cb->on_control && cb->on_control(ud, r->opcode, data, len)) return WS_ERR_STOPPED;
    return WS_OK;
}

static int finish_message(ws_reader_t *r, uint8_t *data, size_t len, const ws_reader_cb_t *cb,
                          void *ud)
{
    int op = r->msg_opcode;
    r->msg_opcode = 0;
    r->msg_len = 0;
    if (op == WS_OP_TEXT && r->utf8 != UTF8_ACCEPT)
        return fail(r, WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
    int stop = cb->on_message ? cb->on_message(ud, op, data, len) : 0;
    buf_free(&r->msg);
    return stop ? WS_ERR_STOPPED : WS_OK;
}

int ws_reader_feed(ws_reader_t *r, uint8_t *data, size_t len, const ws_reader_cb_t *cb, void *ud)
{
    size_t i = 0;
    for (;;) {
        if (!r->in_payload) {
            /* Collect the header; two bytes first, then as many as they announce. */
            while (r->hdr_len < 2 && i < len) r->hdr[r->hdr_len++] = data[i++];
            if (r->hdr_len < 2) return WS_OK;
            size_t need = header_need(r->hdr);
            while (r->hdr_len < need && i < len) r->hdr[r->hdr_len++] = data[i++];
            if (r->hdr_len < need) return WS_OK;
            int rc = start_frame(r);
            if (rc != WS_OK) return rc;
        }

        uint64_t left = r->frame_len - r->frame_pos;
        size_t avail = len - i;
        size_t chunk = left < avail ? (size_t)left : avail;
        uint8_t *p = data + i;
        if (r->role == WS_ROLE_SERVER) ws_mask(p, chunk, r->mask, r->frame_pos);

        if (is_control(r->opcode)) {
            if (chunk == left && r->frame_pos == 0) {
                /* Whole control frame in this chunk. */
                i += chunk;
                r->in_payload = 0;
                int rc = deliver_control(r, p, chunk, cb, ud);
                if (rc != WS_OK) return rc;
            } else {
                if (!r->ctl && !(r->ctl = malloc(WS_MAX_CONTROL))) return WS_ERR_NOMEM;
                memcpy(r->ctl + r->frame_pos, p, chunk);
                r->frame_pos += chunk;
                i += chunk;
                if (r->frame_pos < r->frame_len) return WS_OK;
                r->in_payload = 0;
                int rc = deliver_control(r, r->ctl, (size_t)r->frame_len, cb, ud);
                free(r->ctl);
                r->ctl = NULL;
                if (rc != WS_OK) return rc;
            }
        } else {
            if (r->msg_opcode == WS_OP_TEXT) {
                r->utf8 = utf8_feed(r->utf8, p, chunk);
                if (r->utf8 == UTF8_REJECT)
                    return fail(r, WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
            }
            r->frame_pos += chunk;
            r->msg_len += chunk;
            i += chunk;
            int frame_done = r->frame_pos == r->frame_len;
            if (frame_done) r->in_payload = 0;
            if (frame_done && r->fin && r->msg.len == 0 && chunk == r->frame_len) {
                /* Zero-copy: the whole message is this one chunk. */
                int rc = finish_message(r, p, chunk, cb, ud);
                if (rc != WS_OK) return rc;
            } else {
                if (buf_append(&r->msg, p, chunk) < 0) return WS_ERR_NOMEM;
                if (frame_done && r->fin) {
                    int rc = finish_message(r, (uint8_t *)r->msg.data, r->msg.len, cb, ud);
                    if (rc != WS_OK) return rc;
                } else if (!frame_done) {
                    return WS_OK;
                }
            }
        }
        if (i >= len) return WS_OK;
    }
}

size_t ws_frame_header(uint8_t *out, int fin, int opcode, uint64_t len, const uint8_t *mask)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0xF));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = m | (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int s = 56; s >= 0; s -= 8) out[n++] = (uint8_t)(len >> s);
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t pos)
{
    size_t i = 0;
    unsigned off = (unsigned)(pos & 3);
    /* Align to the mask so the word loop can use a fixed 64-bit key. */
    while (i < len && off != 0) {
        data[i++] ^= mask[off];
        off = (off + 1) & 3;
    }
    uint8_t k8[8] = {mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]};
    uint64_t k;
    memcpy(&k, k8, 8);
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        w ^= k;
        memcpy(data + i, &w, 8);
    }
    for (unsigned j = 0; i < len; i++, j++) data[i] ^= mask[j & 3];
}

size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code, const char *reason)
{
    if (code == 0) return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    size_t rl = reason ? strlen(reason) : 0;
    rl = utf8_truncate((const uint8_t *)reason, rl, WS_MAX_CONTROL - 2);
    if (rl) memcpy(out + 2, reason, rl);
    return 2 + rl;
}

int ws_accept_key(const char *key, size_t key_len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    /* The key must be base64 of exactly 16 bytes: 22 chars then "==". */
    if (key_len != 24 || key[22] != '=' || key[23] != '=') return -1;
    unsigned char raw[18];
    if (EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18) return -1;
    char cat[24 + sizeof guid];
    memcpy(cat, key, 24);
    memcpy(cat + 24, guid, sizeof guid - 1);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, 24 + sizeof guid - 1, sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
    out[28] = '\0';
    return 0;
}
