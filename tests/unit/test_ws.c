/* Unit tests for common/ws.c: the RFC 6455 codec. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

/* Records every callback as text so whole runs can be compared. */
typedef struct rec {
    buf_t log;
    int stop_after; /* stop after this many messages (0 = never) */
    int messages;
} rec_t;

static int on_msg(void *ud, int op, uint8_t *d, size_t n)
{
    rec_t *r = ud;
    buf_printf(&r->log, "M%d:%zu:", op, n);
    buf_append(&r->log, d, n);
    buf_append_char(&r->log, '|');
    r->messages++;
    return r->stop_after && r->messages >= r->stop_after;
}

static int on_ctl(void *ud, int op, uint8_t *d, size_t n)
{
    rec_t *r = ud;
    buf_printf(&r->log, "C%d:%zu:", op, n);
    buf_append(&r->log, d, n);
    buf_append_char(&r->log, '|');
    return 0;
}

static const ws_reader_cb_t cbs = {on_msg, on_ctl};
static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Append one client frame (masked) to b. */
static void frame(buf_t *b, int fin, int rsv, int op, const void *payload, size_t n, int masked)
{
    uint8_t h[WS_MAX_HEADER];
    size_t hl = ws_frame_header(h, fin, op, n, masked ? MASK : NULL);
    h[0] |= (uint8_t)(rsv << 4);
    buf_append(b, h, hl);
    size_t off = b->len;
    buf_append(b, payload, n);
    if (masked) ws_mask((uint8_t *)b->data + off, n, MASK, 0);
}

static void cframe(buf_t *b, int fin, int op, const char *s)
{
    frame(b, fin, 0, op, s, strlen(s), 1);
}

/* Feed `in` split at the given chunk size (0 = whole); returns the rc; log in r. */
static int run(const buf_t *in, size_t chunk, rec_t *r, ws_reader_t *rd, uint64_t max_frame,
               uint64_t max_msg)
{
    uint8_t *copy = malloc(in->len + 1);
    memcpy(copy, in->data, in->len);
    ws_reader_init(rd, WS_ROLE_SERVER, max_frame, max_msg);
    memset(r, 0, sizeof *r);
    int rc = WS_OK;
    size_t pos = 0;
    if (chunk == 0) chunk = in->len ? in->len : 1;
    while (pos < in->len && rc == WS_OK) {
        size_t n = in->len - pos < chunk ? in->len - pos : chunk;
        rc = ws_reader_feed(rd, copy + pos, n, &cbs, r);
        pos += n;
    }
    free(copy);
    return rc;
}

static int expect_close(buf_t *in, uint16_t code)
{
    rec_t r;
    ws_reader_t rd;
    for (size_t chunk = 0; chunk <= 3; chunk++) {
        int rc = run(in, chunk, &r, &rd, 1 << 20, 1 << 20);
        cr_assert_eq(rc, WS_ERR_PROTOCOL, "chunk %zu: rc %d", chunk, rc);
        cr_assert_eq(rd.close_code, code, "chunk %zu: close %u, want %u (%s)", chunk,
                     rd.close_code, code, rd.error);
        ws_reader_free(&rd);
        buf_free(&r.log);
    }
    return 0;
}

Test(ws, accept_key_rfc_example)
{
    char out[29];
    cr_assert_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws, accept_key_rejects_bad_keys)
{
    char out[29];
    cr_assert_eq(ws_accept_key("short", 5, out), -1);
    cr_assert_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=x", 24, out), -1);
    cr_assert_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", 22, out), -1);
}

Test(ws, rfc_masked_hello)
{
    uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    buf_t in = BUF_INIT;
    buf_append(&in, f, sizeof f);
    rec_t r;
    ws_reader_t rd;
    cr_assert_eq(run(&in, 0, &r, &rd, 100, 100), WS_OK);
    cr_assert_str_eq(buf_cstr(&r.log), "M1:5:Hello|");
    cr_assert(ws_reader_idle(&rd));
    ws_reader_free(&rd);
    buf_free(&r.log);
    buf_free(&in);
}

Test(ws, fragmented_with_interleaved_ping)
{
    buf_t in = BUF_INIT;
    cframe(&in, 0, WS_OP_TEXT, "Hel");
    cframe(&in, 1, WS_OP_PING, "p");
    cframe(&in, 0, WS_OP_CONT, "l");
    cframe(&in, 1, WS_OP_CONT, "o");
    rec_t r;
    ws_reader_t rd;
    cr_assert_eq(run(&in, 0, &r, &rd, 100, 100), WS_OK);
    cr_assert_str_eq(buf_cstr(&r.log), "C9:1:p|M1:5:Hello|");
    ws_reader_free(&rd);
    buf_free(&r.log);
    buf_free(&in);
}

Test(ws, empty_frames_and_binary)
{
    buf_t in = BUF_INIT;
    cframe(&in, 1, WS_OP_TEXT, "");
    frame(&in, 1, 0, WS_OP_BINARY, "\x00\xff\x01", 3, 1);
    cframe(&in, 0, WS_OP_TEXT, "");
    cframe(&in, 1, WS_OP_CONT, "x");
    cframe(&in, 1, WS_OP_PONG, "");
    rec_t r;
    ws_reader_t rd;
    cr_assert_eq(run(&in, 1, &r, &rd, 100, 100), WS_OK);
    cr_assert_eq(r.log.len, strlen("M1:0:|M2:3:") + 3 + strlen("|M1:1:x|C10:0:|"));
    cr_assert_eq(memcmp(r.log.data, "M1:0:|M2:3:\x00\xff\x01|M1:1:x|C10:0:|", r.log.len), 0);
    ws_reader_free(&rd);
    buf_free(&r.log);
    buf_free(&in);
}

Test(ws, unmasked_client_frame_is_1002)
{
    buf_t in = BUF_INIT;
    frame(&in, 1, 0, WS_OP_TEXT, "hi", 2, 0);
    expect_close(&in, WS_CLOSE_PROTOCOL);
    buf_free(&in);
}

Test(ws, reserved_bits_are_1002)
{
    for (int rsv = 1; rsv <= 7; rsv++) {
        buf_t in = BUF_INIT;
        frame(&in, 1, rsv, WS_OP_TEXT, "hi", 2, 1);
        expect_close(&in, WS_CLOSE_PROTOCOL);
        buf_free(&in);
    }
}

Test(ws, reserved_opcodes_are_1002)
{
    int ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        buf_t in = BUF_INIT;
        frame(&in, 1, 0, ops[i], "", 0, 1);
        expect_close(&in, WS_CLOSE_PROTOCOL);
        buf_free(&in);
    }
}

Test(ws, control_frame_rules)
{
    char big[126];
    memset(big, 'a', sizeof big);
    buf_t in = BUF_INIT;
    frame(&in, 1, 0, WS_OP_PING, big, 126, 1);
    expect_close(&in, WS_CLOSE_PROTOCOL);
    buf_reset(&in);
    frame(&in, 0, 0, WS_OP_PING, "x", 1, 1);
    expect_close(&in, WS_CLOSE_PROTOCOL);
    buf_reset(&in);
    /* 125 bytes is the maximum and is fine, even split across reads. */
    frame(&in, 1, 0, WS_OP_PING, big, 125, 1);
    rec_t r;
    ws_reader_t rd;
    cr_assert_eq(run(&in, 7, &r, &rd, 100, 100), WS_OK);
    cr_assert_eq(r.log.len, strlen("C9:125:|") + 125);
    ws_reader_free(&rd);
    buf_free(&r.log);
    buf_free(&in);
}

Test(ws, continuation_order_rules)
{
    buf_t in = BUF_INIT;
    cframe(&in, 1, WS_OP_CONT, "x");
    expect_close(&in, WS_CLOSE_PROTOCOL);
    buf_reset(&in);
    cframe(&in, 0, WS_OP_TEXT, "a");
    cframe(&in, 1, WS_OP_TEXT, "b");
    expect_close(&in, WS_CLOSE_PROTOCOL);
    buf_free(&in);
}

Test(ws, size_limits_are_1009)
{
    rec_t r;
    ws_reader_t rd;
    buf_t in = BUF_INIT;
    char p[200];
    memset(p, 'x', sizeof p);
    frame(&in, 1, 0, WS_OP_TEXT, p, 101, 1);
    cr_assert_eq(run(&in, 0, &r, &rd, 100, 1000), WS_ERR_PROTOCOL);
    cr_assert_eq(rd.close_code, WS_CLOSE_TOO_BIG);
    ws_reader_free(&rd);
    buf_free(&r.log);
    /* Many small fragments adding up past the message limit. */
    buf_reset(&in);
    cframe(&in, 0, WS_OP_TEXT, "0123456789");
    for (int i = 0; i < 20; i++) cframe(&in, 0, WS_OP_CONT, "0123456789");
    cframe(&in, 1, WS_OP_CONT, "x");
    cr_assert_eq(run(&in, 3, &r, &rd, 100, 150), WS_ERR_PROTOCOL);
    cr_assert_eq(rd.close_code, WS_CLOSE_TOO_BIG);
    /* Rejected at the header of the fragment that crosses the limit, before buffering it. */
    cr_assert_leq(rd.msg.len, 150);
    ws_reader_free(&rd);
    buf_free(&r.log);
    buf_free(&in);
}

Test(ws, length_with_top_bit_is_1002)
{
    uint8_t f[] = {0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    buf_t in = BUF_INIT;
    buf_append(&in, f, sizeof f);
    expect_close(&in, WS_CLOSE_PROTOCOL);
    buf_free(&in);
}

Test(ws, invalid_utf8_is_1007_and_fails_fast)
{
    buf_t in = BUF_INIT;
    frame(&in, 1, 0, WS_OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 14, 1);
    expect_close(&in, WS_CLOSE_INVALID_DATA);
    /* Fail fast: the first fragment is already invalid; the message never completes. */
    buf_reset(&in);
    frame(&in, 0, 0, WS_OP_TEXT, "ok\xff", 3, 1);
    rec_t r;
    ws_reader_t rd;
    cr_assert_eq(run(&in, 0, &r, &rd, 100, 100), WS_ERR_PROTOCOL);
    cr_assert_eq(rd.close_code, WS_CLOSE_INVALID_DATA);
    ws_reader_free(&rd);
    buf_free(&r.log);
    /* A truncated sequence at the end of the message. */
    buf_reset(&in);
    frame(&in, 0, 0, WS_OP_TEXT, "a\xe2\x82", 3, 1);
    frame(&in, 1, 0, WS_OP_CONT, "", 0, 1);
    expect_close(&in, WS_CLOSE_INVALID_DATA);
    buf_free(&in);
}

Test(ws, utf8_split_across_fragments_is_fine)
{
    buf_t in = BUF_INIT;
    frame(&in, 0, 0, WS_OP_TEXT, "\xe2", 1, 1);
    frame(&in, 0, 0, WS_OP_CONT, "\x82", 1, 1);
    frame(&in, 1, 0, WS_OP_CONT, "\xac\xf0\x9f\x98\x80", 5, 1);
    rec_t r;
    ws_reader_t rd;
    cr_assert_eq(run(&in, 1, &r, &rd, 100, 100), WS_OK);
    cr_assert_str_eq(buf_cstr(&r.log), "M1:7:\xe2\x82\xac\xf0\x9f\x98\x80|");
    ws_reader_free(&rd);
    buf_free(&r.log);
    buf_free(&in);
}

Test(ws, close_frame_validation)
{
    buf_t in = BUF_INIT;
    frame(&in, 1, 0, WS_OP_CLOSE, "\x03", 1, 1);
    expect_close(&in, WS_CLOSE_PROTOCOL);
    unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        buf_reset(&in);
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        frame(&in, 1, 0, WS_OP_CLOSE, p, 2, 1);
        expect_close(&in, WS_CLOSE_PROTOCOL);
    }
    buf_reset(&in);
    frame(&in, 1, 0, WS_OP_CLOSE, "\x03\xe8\xff", 3, 1);
    expect_close(&in, WS_CLOSE_INVALID_DATA);
    unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        buf_reset(&in);
        uint8_t p[4] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i], 'o', 'k'};
        frame(&in, 1, 0, WS_OP_CLOSE, p, 4, 1);
        rec_t r;
        ws_reader_t rd;
        cr_assert_eq(run(&in, 1, &r, &rd, 100, 100), WS_OK, "code %u", good[i]);
        cr_assert_eq(r.log.len, strlen("C8:4:") + 4 + 1);
        ws_reader_free(&rd);
        buf_free(&r.log);
    }
    buf_free(&in);
}

Test(ws, callback_stop_leaves_rest_unconsumed)
{
    buf_t in = BUF_INIT;
    cframe(&in, 1, WS_OP_TEXT, "one");
    cframe(&in, 1, WS_OP_TEXT, "two");
    ws_reader_t rd;
    ws_reader_init(&rd, WS_ROLE_SERVER, 100, 100);
    rec_t r = {BUF_INIT, 1, 0};
    cr_assert_eq(ws_reader_feed(&rd, (uint8_t *)in.data, in.len, &cbs, &r), WS_ERR_STOPPED);
    cr_assert_str_eq(buf_cstr(&r.log), "M1:3:one|");
    ws_reader_free(&rd);
    buf_free(&r.log);
    buf_free(&in);
}

Test(ws, header_encoding_roundtrip_all_length_forms)
{
    size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        size_t n = lens[i];
        uint8_t *payload = malloc(n + 1);
        for (size_t j = 0; j < n; j++) payload[j] = (uint8_t)('a' + j % 26);
        /* Server frame parsed by a client-role reader. */
        buf_t in = BUF_INIT;
        uint8_t h[WS_MAX_HEADER];
        size_t hl = ws_frame_header(h, 1, WS_OP_TEXT, n, NULL);
        cr_assert_eq(hl, n < 126 ? 2u : n <= 65535 ? 4u : 10u);
        buf_append(&in, h, hl);
        buf_append(&in, payload, n);
        ws_reader_t rd;
        ws_reader_init(&rd, WS_ROLE_CLIENT, 1 << 20, 1 << 20);
        rec_t r = {BUF_INIT, 0, 0};
        cr_assert_eq(ws_reader_feed(&rd, (uint8_t *)in.data, in.len, &cbs, &r), WS_OK);
        cr_assert_eq(r.messages, 1);
        char head[32];
        int hn = snprintf(head, sizeof head, "M1:%zu:", n);
        cr_assert_eq(memcmp(r.log.data, head, (size_t)hn), 0);
        cr_assert_eq(memcmp(r.log.data + hn, payload, n), 0);
        /* A client-role reader refuses masked frames. */
        buf_reset(&in);
        frame(&in, 1, 0, WS_OP_TEXT, payload, n, 1);
        ws_reader_free(&rd);
        ws_reader_init(&rd, WS_ROLE_CLIENT, 1 << 20, 1 << 20);
        cr_assert_eq(ws_reader_feed(&rd, (uint8_t *)in.data, in.len, &cbs, &r), WS_ERR_PROTOCOL);
        ws_reader_free(&rd);
        buf_free(&r.log);
        buf_free(&in);
        free(payload);
    }
}

Test(ws, close_payload_truncates_on_utf8_boundary)
{
    uint8_t out[WS_MAX_CONTROL];
    char reason[300];
    size_t o = 0;
    while (o + 2 < sizeof reason - 1) {
        reason[o++] = '\xc3';
        reason[o++] = '\xa9';
    }
    reason[o] = '\0';
    size_t n = ws_close_payload(out, 1001, reason);
    cr_assert_leq(n, WS_MAX_CONTROL);
    cr_assert_eq(out[0], 0x03);
    cr_assert_eq(out[1], 0xE9);
    cr_assert_eq((n - 2) % 2, 0);
    cr_assert_eq(ws_close_payload(out, 0, "x"), 0);
}

/* The same events whatever the chunking: a long stream of mixed frames fed whole, byte by
 * byte and at many random split points. */
Test(ws, chunking_invariance)
{
    srand(1234);
    buf_t in = BUF_INIT;
    for (int i = 0; i < 200; i++) {
        int kind = rand() % 5;
        char p[300];
        size_t n = (size_t)(rand() % 280);
        for (size_t j = 0; j < n; j++) p[j] = (char)('A' + rand() % 26);
        if (kind == 0) {
            frame(&in, 1, 0, WS_OP_TEXT, p, n, 1);
        } else if (kind == 1) {
            frame(&in, 0, 0, WS_OP_BINARY, p, n / 2, 1);
            frame(&in, 1, 0, WS_OP_PING, p, n % 126, 1);
            frame(&in, 1, 0, WS_OP_CONT, p, n - n / 2, 1);
        } else if (kind == 2) {
            frame(&in, 1, 0, WS_OP_PONG, p, n % 126, 1);
        } else {
            frame(&in, 0, 0, WS_OP_TEXT, "\xf0\x9f", 2, 1);
            frame(&in, 1, 0, WS_OP_CONT, "\x98\x80", 2, 1);
        }
    }
    rec_t whole;
    ws_reader_t rd;
    cr_assert_eq(run(&in, 0, &whole, &rd, 1 << 20, 1 << 20), WS_OK);
    ws_reader_free(&rd);
    size_t chunks[] = {1, 2, 3, 5, 7, 13, 64, 1000};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        rec_t r;
        cr_assert_eq(run(&in, chunks[c], &r, &rd, 1 << 20, 1 << 20), WS_OK);
        cr_assert_eq(r.log.len, whole.log.len, "chunk %zu", chunks[c]);
        cr_assert_eq(memcmp(r.log.data, whole.log.data, r.log.len), 0, "chunk %zu", chunks[c]);
        cr_assert(ws_reader_idle(&rd));
        ws_reader_free(&rd);
        buf_free(&r.log);
    }
    buf_free(&whole.log);
    buf_free(&in);
}
