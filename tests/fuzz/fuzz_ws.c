/*
 * fuzz_ws: the RFC 6455 frame reader (ws_reader_feed) and the frame encoders.
 *
 * Input: 4 configuration bytes, then the byte stream a peer sent.
 *   byte 0: bit 0 role (0 server: frames must be masked, 1 client), bits 1-2 max_frame,
 *           bits 3-4 max_message, bits 5-7 stop after that many callbacks (0: never)
 *   bytes 1-3: piece sizes for the split feed, used in turn (0: an empty feed)
 *
 * Properties:
 *  - chunking invariance (the reader's key promise): the stream fed whole, byte by byte and
 *    in the pieces above (each piece its own exact-size writable buffer) produces the same
 *    callbacks with the same payloads, the same result, close code and error, and the same
 *    idle state when the result is WS_OK;
 *  - what the callbacks see is legal: data opcodes only in on_message, text is UTF-8, no
 *    message over max_message, control payloads <= 125 bytes, close payloads empty or a
 *    valid code plus a UTF-8 reason; on a protocol error the close code is 1002, 1007 or
 *    1009;
 *  - round trip: the rest of the input, framed by ws_frame_header (fragmented at the piece
 *    sizes, a ping in the middle, a close built by ws_close_payload at the end, masked for
 *    the server role), reads back as exactly that message, ping and close, in both roles;
 *  - ws_frame_header lengths (all three encodings) read back, and ws_mask applied in
 *    pieces at any offset equals ws_mask applied once.
 */
#include "fuzz.h"
#include "utf8.h"
#include "ws.h"

typedef struct rec {
    buf_t log;
    int calls;
    int stop_after;
    uint64_t max_message;
} rec_t;

static int note(rec_t *r, char kind, int op, const uint8_t *d, size_t n)
{
    buf_printf(&r->log, "%c%d:%zu:", kind, op, n);
    buf_append(&r->log, d, n);
    buf_append_char(&r->log, '|');
    r->calls++;
    return r->stop_after && r->calls >= r->stop_after;
}

static int on_message(void *ud, int op, uint8_t *d, size_t n)
{
    rec_t *r = ud;
    FUZZ_CHECK(op == WS_OP_TEXT || op == WS_OP_BINARY);
    FUZZ_CHECK(n <= r->max_message);
    if (op == WS_OP_TEXT) FUZZ_CHECK(utf8_valid(d, n));
    int stop = note(r, 'M', op, d, n);
    /* The data is the callback's to scribble on: anything the reader still relied on
     * afterwards would show up as a mismatch between the runs. */
    if (n) memset(d, 0xA5, n);
    return stop;
}

static int on_control(void *ud, int op, uint8_t *d, size_t n)
{
    rec_t *r = ud;
    FUZZ_CHECK(op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG);
    FUZZ_CHECK(n <= WS_MAX_CONTROL);
    if (op == WS_OP_CLOSE && n) {
        FUZZ_CHECK(n >= 2);
        FUZZ_CHECK(ws_close_code_valid(((unsigned)d[0] << 8) | d[1]));
        FUZZ_CHECK(utf8_valid(d + 2, n - 2));
    }
    return note(r, 'C', op, d, n);
}

static const ws_reader_cb_t CBS = {on_message, on_control};

typedef struct cfg {
    int role;
    uint64_t max_frame, max_message;
    int stop_after;
    uint8_t split[3];
} cfg_t;

typedef struct result {
    int rc;
    uint16_t close_code;
    const char *error;
    int idle;
    buf_t log;
} result_t;

enum { WHOLE, BYTEWISE, PIECES };

/* Feed s[0..n) in the given mode; every piece is a fresh exact-size writable copy. */
static void run(const cfg_t *c, const uint8_t *s, size_t n, int mode, result_t *out)
{
    ws_reader_t rd;
    rec_t r = {BUF_INIT, 0, c->stop_after, c->max_message};
    ws_reader_init(&rd, c->role, c->max_frame, c->max_message);
    int rc = WS_OK;
    size_t pos = 0, k = 0;
    int zeros = 0;
    while (rc == WS_OK && (pos < n || (mode == WHOLE && pos == 0 && n == 0))) {
        size_t piece;
        if (mode == WHOLE) piece = n;
        else if (mode == BYTEWISE) piece = 1;
        else {
            piece = c->split[k++ % 3];
            if (piece == 0 && ++zeros > 3) piece = 1; /* all three zero: go on bytewise */
        }
        if (piece > n - pos) piece = n - pos;
        uint8_t *p = fuzz_dup(s + pos, piece);
        rc = ws_reader_feed(&rd, p, piece, &CBS, &r);
        free(p);
        pos += piece;
        if (mode == WHOLE) break;
    }
    out->rc = rc;
    out->close_code = rc == WS_ERR_PROTOCOL ? rd.close_code : 0;
    out->error = rc == WS_ERR_PROTOCOL ? rd.error : NULL;
    out->idle = ws_reader_idle(&rd);
    out->log = r.log;
    if (rc == WS_ERR_PROTOCOL) {
        FUZZ_CHECK(rd.error != NULL);
        FUZZ_CHECK(rd.close_code == WS_CLOSE_PROTOCOL || rd.close_code == WS_CLOSE_INVALID_DATA ||
                   rd.close_code == WS_CLOSE_TOO_BIG);
    }
    FUZZ_CHECK(rc != WS_ERR_STOPPED || (c->stop_after && r.calls == c->stop_after));
    FUZZ_CHECK(rc != WS_ERR_NOMEM);
    ws_reader_free(&rd);
}

static void same(const result_t *a, const result_t *b)
{
    FUZZ_CHECK(a->rc == b->rc);
    FUZZ_CHECK(a->close_code == b->close_code);
    FUZZ_CHECK((a->error == NULL) == (b->error == NULL));
    if (a->error) FUZZ_CHECK(strcmp(a->error, b->error) == 0);
    FUZZ_CHECK(a->log.len == b->log.len);
    FUZZ_CHECK(a->log.len == 0 || memcmp(a->log.data, b->log.data, a->log.len) == 0);
    if (a->rc == WS_OK) FUZZ_CHECK(a->idle == b->idle);
}

static void check_chunking(const cfg_t *c, const uint8_t *s, size_t n)
{
    result_t whole, bytewise, pieces;
    run(c, s, n, WHOLE, &whole);
    run(c, s, n, BYTEWISE, &bytewise);
    run(c, s, n, PIECES, &pieces);
    same(&whole, &bytewise);
    same(&whole, &pieces);
    buf_free(&whole.log);
    buf_free(&bytewise.log);
    buf_free(&pieces.log);
}

/* Append one frame; masked with `mask` when the reader is a server. */
static void frame(buf_t *b, int role, int fin, int op, const uint8_t *p, size_t n,
                  const uint8_t mask[4])
{
    uint8_t h[WS_MAX_HEADER];
    const uint8_t *m = role == WS_ROLE_SERVER ? mask : NULL;
    size_t hl = ws_frame_header(h, fin, op, n, m);
    buf_append(b, h, hl);
    size_t off = b->len;
    buf_append(b, p, n);
    if (m && n) ws_mask((uint8_t *)b->data + off, n, m, 0);
}

static const uint16_t CLOSE_CODES[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                       1010, 1011, 1012, 1013, 1014, 3000, 4999};

static void check_round_trip(const cfg_t *c, const uint8_t *s, size_t n)
{
    fuzz_in_t in = {s, n};
    uint8_t mask[4];
    for (int i = 0; i < 4; i++) mask[i] = fuzz_u8(&in);
    uint16_t code = CLOSE_CODES[fuzz_u8(&in) % (sizeof CLOSE_CODES / sizeof *CLOSE_CODES)];
    char *reason = fuzz_cstr(&in, 200);
    if (!utf8_valid((const uint8_t *)reason, strlen(reason))) reason[0] = '\0';
    const uint8_t *msg = in.p;
    size_t len = in.n;
    int op = utf8_valid(msg, len) ? WS_OP_TEXT : WS_OP_BINARY;

    uint8_t close[WS_MAX_CONTROL];
    size_t cl = ws_close_payload(close, code, reason);
    size_t rl = strlen(reason);
    FUZZ_CHECK(cl >= 2 && cl <= WS_MAX_CONTROL);
    FUZZ_CHECK((((unsigned)close[0] << 8) | close[1]) == code);
    FUZZ_CHECK(cl - 2 <= rl && memcmp(close + 2, reason, cl - 2) == 0);
    FUZZ_CHECK(rl > WS_MAX_CONTROL - 2 || cl - 2 == rl);
    FUZZ_CHECK(utf8_valid(close + 2, cl - 2));

    for (int role = 0; role < 2; role++) {
        buf_t stream = BUF_INIT, want = BUF_INIT;
        size_t ping = len < WS_MAX_CONTROL ? len : WS_MAX_CONTROL;
        size_t pos = 0, k = 0;
        int first = 1, ping_first = 0;
        do {
            size_t piece = c->split[k++ % 3];
            if (piece > len - pos) piece = len - pos;
            int fin = pos + piece == len;
            frame(&stream, role, fin, first ? op : WS_OP_CONT, msg + pos, piece, mask);
            if (first) {
                /* the ping after the first frame: inside the message when fragmented */
                frame(&stream, role, 1, WS_OP_PING, msg, ping, mask);
                ping_first = !fin;
            }
            first = 0;
            pos += piece;
            if (k > len + 8 && pos < len) { /* all piece sizes zero: finish in one frame */
                frame(&stream, role, 1, WS_OP_CONT, msg + pos, len - pos, mask);
                pos = len;
            }
        } while (pos < len);
        frame(&stream, role, 1, WS_OP_CLOSE, close, cl, mask);

        for (int i = 0; i < 2; i++) {
            if (i == !ping_first) {
                buf_printf(&want, "C%d:%zu:", WS_OP_PING, ping);
                buf_append(&want, msg, ping);
            } else {
                buf_printf(&want, "M%d:%zu:", op, len);
                buf_append(&want, msg, len);
            }
            buf_append_char(&want, '|');
        }
        buf_printf(&want, "C%d:%zu:", WS_OP_CLOSE, cl);
        buf_append(&want, close, cl);
        buf_append_char(&want, '|');

        cfg_t rc = *c;
        rc.role = role;
        rc.max_frame = rc.max_message = UINT64_MAX;
        rc.stop_after = 0;
        for (int mode = WHOLE; mode <= PIECES; mode++) {
            result_t res;
            run(&rc, (const uint8_t *)stream.data, stream.len, mode, &res);
            FUZZ_CHECK(res.rc == WS_OK);
            FUZZ_CHECK(res.idle);
            FUZZ_CHECK(res.log.len == want.len && memcmp(res.log.data, want.data, want.len) == 0);
            buf_free(&res.log);
        }
        buf_free(&stream);
        buf_free(&want);
    }
    free(reason);
}

/* Every length encoding reads back; ws_mask is position-consistent. */
static void check_header_and_mask(const uint8_t *s, size_t n)
{
    fuzz_in_t in = {s, n};
    uint64_t len = fuzz_u64(&in) >> (fuzz_u8(&in) & 63);
    len &= ~(1ull << 63);
    uint8_t mask[4];
    for (int i = 0; i < 4; i++) mask[i] = fuzz_u8(&in);
    for (int role = 0; role < 2; role++) {
        uint8_t h[WS_MAX_HEADER];
        size_t hl = ws_frame_header(h, 1, WS_OP_BINARY, len, role == WS_ROLE_SERVER ? mask : NULL);
        FUZZ_CHECK(hl == 2u + (len >= 126 ? 2u : 0u) + (len > 0xFFFF ? 6u : 0u) + (role == 0 ? 4u : 0u));
        ws_reader_t rd;
        ws_reader_init(&rd, role, UINT64_MAX, UINT64_MAX);
        rec_t r = {BUF_INIT, 0, 0, UINT64_MAX};
        FUZZ_CHECK(ws_reader_feed(&rd, h, hl, &CBS, &r) == WS_OK);
        if (len) {
            FUZZ_CHECK(rd.in_payload && rd.frame_len == len && r.calls == 0);
        } else {
            FUZZ_CHECK(r.calls == 1 && ws_reader_idle(&rd));
        }
        buf_free(&r.log);
        ws_reader_free(&rd);
    }

    /* Mask the rest in pieces starting at an arbitrary stream offset. */
    uint64_t base = fuzz_u8(&in);
    uint8_t *once = fuzz_dup(in.p, in.n), *parts = fuzz_dup(in.p, in.n);
    ws_mask(once, in.n, mask, base);
    size_t pos = 0;
    while (pos < in.n) {
        size_t piece = (size_t)(in.p[pos] % 19) + 1;
        if (piece > in.n - pos) piece = in.n - pos;
        uint8_t *p = fuzz_dup(parts + pos, piece);
        ws_mask(p, piece, mask, base + pos);
        memcpy(parts + pos, p, piece);
        free(p);
        pos += piece;
    }
    FUZZ_CHECK(in.n == 0 || memcmp(once, parts, in.n) == 0);
    for (size_t i = 0; i < in.n; i++) FUZZ_CHECK(once[i] == (in.p[i] ^ mask[(base + i) & 3]));
    free(once);
    free(parts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t frame_limits[4] = {1 << 20, 16, 200, UINT64_MAX};
    static const uint64_t message_limits[4] = {1 << 20, 16, 300, UINT64_MAX};
    fuzz_in_t in = {data, size};
    uint8_t c0 = fuzz_u8(&in);
    cfg_t c;
    c.role = c0 & 1;
    c.max_frame = frame_limits[(c0 >> 1) & 3];
    c.max_message = message_limits[(c0 >> 3) & 3];
    c.stop_after = c0 >> 5;
    for (int i = 0; i < 3; i++) c.split[i] = fuzz_u8(&in);

    /* The stream as given, in the configured role, then in the other role (where it is
     * most likely refused early, still identically). */
    check_chunking(&c, in.p, in.n);
    c.role ^= 1;
    check_chunking(&c, in.p, in.n);
    c.role ^= 1;

    check_round_trip(&c, in.p, in.n);
    check_header_and_mask(in.p, in.n);
    return 0;
}
