/* Unit tests for common/eio.c: Engine.IO v4 / Socket.IO v5 packets. */
#include <criterion/criterion.h>
#include <string.h>

#include "eio.h"

static int P(const char *s, sio_packet_t *p)
{
    return sio_parse(s, strlen(s), p);
}

Test(eio, engine_packets)
{
    eio_packet_t p;
    cr_assert_eq(eio_parse("2probe", 6, &p), 0);
    cr_assert_eq(p.type, EIO_PING);
    cr_assert_eq(p.len, 5);
    cr_assert_eq(eio_parse("4hello", 6, &p), 0);
    cr_assert_eq(p.type, EIO_MESSAGE);
    cr_assert_eq(eio_parse("bAQID", 5, &p), 0);
    cr_assert(p.binary);
    cr_assert_eq(eio_parse("", 0, &p), -1);
    cr_assert_eq(eio_parse("7", 1, &p), -1);
    cr_assert_eq(eio_parse("x", 1, &p), -1);
}

Test(eio, polling_records)
{
    const char *s = "4a\x1e" "2\x1e" "40/chat,{}";
    size_t n = strlen(s), off = 0, next;
    const char *want[] = {"4a", "2", "40/chat,{}"};
    for (int i = 0; i < 3; i++) {
        size_t l = eio_next_record(s + off, n - off, &next);
        cr_assert_eq(l, strlen(want[i]));
        cr_assert_eq(memcmp(s + off, want[i], l), 0);
        off += next;
    }
    cr_assert_eq(off, n);
}

Test(eio, socketio_packets)
{
    sio_packet_t p;
    cr_assert_eq(P("0/chat,{\"token\":\"x\"}", &p), 0);
    cr_assert_eq(p.type, SIO_CONNECT);
    cr_assert_eq(p.nsp_len, 5);
    cr_assert_eq(memcmp(p.nsp, "/chat", 5), 0);
    cr_assert_eq(p.ack_id, -1);
    cr_assert_eq(p.data_len, 13);

    cr_assert_eq(P("0", &p), 0);
    cr_assert_eq(p.nsp_len, 1);
    cr_assert_eq(p.data_len, 0);

    cr_assert_eq(P("2/chat,12[\"send_message\",{}]", &p), 0);
    cr_assert_eq(p.type, SIO_EVENT);
    cr_assert_eq(p.ack_id, 12);
    cr_assert_eq(p.data[0], '[');

    cr_assert_eq(P("2[\"x\"]", &p), 0);
    cr_assert_eq(p.nsp_len, 1);
    cr_assert_eq(P("3/chat,4[1]", &p), 0);
    cr_assert_eq(p.ack_id, 4);
    cr_assert_eq(P("1/chat,", &p), 0);
    cr_assert_eq(p.type, SIO_DISCONNECT);
    cr_assert_eq(P("51-[\"x\",{\"_placeholder\":true,\"num\":0}]", &p), 0);
    cr_assert_eq(p.type, SIO_BINARY_EVENT);

    const char *bad[] = {"", "7", "x", "2", "2{}", "2/chat,", "1/chat,{}", "0[1]", "5[\"x\"]",
                         "2999999999999999999[\"x\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(P(bad[i], &p), -1, "case %zu '%s'", i, bad[i]);
}

Test(eio, encoders)
{
    buf_t b = BUF_INIT;
    eio_encode_open(&b, "abc", 1, 25000, 20000, 1000000);
    cr_assert_str_eq(buf_cstr(&b), "0{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],"
                                   "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}");
    buf_reset(&b);
    sio_encode_event(&b, "/chat", 5, "new_message", "{\"a\":1}", 7);
    cr_assert_str_eq(buf_cstr(&b), "42/chat,[\"new_message\",{\"a\":1}]");
    buf_reset(&b);
    sio_encode_event(&b, "/", 1, "message", "\"hi\"", 4);
    cr_assert_str_eq(buf_cstr(&b), "42[\"message\",\"hi\"]");
    buf_reset(&b);
    sio_encode_ack(&b, "/chat", 5, 3, "{\"sent\":true}", 13);
    cr_assert_str_eq(buf_cstr(&b), "43/chat,3[{\"sent\":true}]");
    buf_reset(&b);
    sio_encode_connect(&b, "/chat", 5, "s1");
    cr_assert_str_eq(buf_cstr(&b), "40/chat,{\"sid\":\"s1\"}");
    buf_reset(&b);
    sio_encode_connect_error(&b, "/", 1, "Invalid token");
    cr_assert_str_eq(buf_cstr(&b), "44{\"message\":\"Invalid token\"}");
    buf_reset(&b);
    sio_encode_disconnect(&b, "/chat", 5);
    cr_assert_str_eq(buf_cstr(&b), "41/chat,");
    buf_free(&b);
}
