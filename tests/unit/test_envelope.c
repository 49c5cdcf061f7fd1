/* Unit tests for common/envelope.c: the JSON envelope and the validation rules of BRIEF §3. */
#include <criterion/criterion.h>
#include <string.h>

#include "envelope.h"

static cJSON *J(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    cr_assert_not_null(j, "bad test JSON %s", s);
    return j;
}

Test(envelope, parse_event_data_id)
{
    env_msg_t m;
    const char *why = NULL;
    const char *s = "{\"event\":\"join_room\",\"data\":{\"roomId\":\"general\"},\"id\":7}";
    cr_assert_eq(env_parse(s, strlen(s), &m, &why), 0);
    cr_assert_str_eq(m.event, "join_room");
    cr_assert_str_eq(m.id, "7");
    cr_assert(cJSON_IsObject(m.data));
    env_free(&m);
    s = "{\"event\":\"typing\",\"id\":\"abc\\\"\"}";
    cr_assert_eq(env_parse(s, strlen(s), &m, &why), 0);
    cr_assert_str_eq(m.id, "\"abc\\\"\"");
    cr_assert_null(m.data);
    env_free(&m);
}

Test(envelope, parse_errors)
{
    const char *bad[] = {"", "{", "[1,2]", "\"x\"", "{\"data\":1}", "{\"event\":5}",
                         "{\"event\":\"\"}", "{\"event\":\"x\",\"id\":1.5}",
                         "{\"event\":\"x\",\"id\":{}}", "nul\x00l"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        env_msg_t m;
        const char *why = NULL;
        cr_assert_eq(env_parse(bad[i], strlen(bad[i]), &m, &why), -1, "case %zu", i);
        cr_assert_not_null(why);
        env_free(&m);
    }
    /* The id is still available for the error reply when the event is missing. */
    env_msg_t m;
    const char *why;
    cr_assert_eq(env_parse("{\"id\":3}", 8, &m, &why), -1);
    cr_assert_str_eq(m.id, "3");
    env_free(&m);
}

Test(envelope, encoders)
{
    buf_t b = BUF_INIT;
    env_encode_event(&b, "new_message", "{\"a\":1}", 7);
    cr_assert_str_eq(buf_cstr(&b), "{\"event\":\"new_message\",\"data\":{\"a\":1}}");
    buf_reset(&b);
    env_encode_ack(&b, "5", "{}", 2);
    cr_assert_str_eq(buf_cstr(&b), "{\"event\":\"ack\",\"id\":5,\"data\":{}}");
    buf_reset(&b);
    env_encode_error(&b, "", CHAT_ERR_VALIDATION, "bad \"x\"");
    cr_assert_str_eq(buf_cstr(&b), "{\"event\":\"error\",\"data\":{\"message\":\"bad \\\"x\\\"\","
                                   "\"code\":\"VALIDATION_ERROR\"}}");
    buf_reset(&b);
    env_encode_error(&b, "9", CHAT_ERR_RATE_LIMITED, "slow down");
    cr_assert(strstr(buf_cstr(&b), "\"id\":9"));
    cr_assert(strstr(buf_cstr(&b), "RATE_LIMITED"));
    buf_free(&b);
    cr_assert_str_eq(chat_err_code(CHAT_ERR_UNKNOWN_EVENT), "UNKNOWN_EVENT");
    cr_assert_str_eq(chat_err_code(CHAT_ERR_PAYLOAD_TOO_LARGE), "PAYLOAD_TOO_LARGE");
}

Test(envelope, json_string_escaping_roundtrips)
{
    const char *s = "quote\" back\\ nl\n tab\t ctl\x01 \xf0\x9f\x98\x80 '); DROP TABLE messages;--";
    buf_t b = BUF_INIT;
    jsonw_cstr(&b, s);
    cJSON *j = cJSON_Parse(buf_cstr(&b));
    cr_assert(cJSON_IsString(j));
    cr_assert_str_eq(j->valuestring, s);
    cJSON_Delete(j);
    buf_free(&b);
}

Test(envelope, user_id_emission)
{
    const char *cases[][2] = {{"42", "42"}, {"0", "0"}, {"007", "\"007\""}, {"abc", "\"abc\""},
                              {"9007199254740991", "9007199254740991"},
                              {"9007199254740992", "\"9007199254740992\""},
                              {"9007199254740993", "\"9007199254740993\""},
                              {"12345678901234567", "\"12345678901234567\""}, {"-1", "\"-1\""}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf_t b = BUF_INIT;
        jsonw_user_id(&b, cases[i][0]);
        cr_assert_str_eq(buf_cstr(&b), cases[i][1]);
        buf_free(&b);
    }
}

Test(envelope, room_ids)
{
    cr_assert(chat_room_id_valid("general", 7));
    cr_assert(chat_room_id_valid("a.b:c-d_e9", 10));
    cr_assert_not(chat_room_id_valid("", 0));
    cr_assert_not(chat_room_id_valid("has space", 9));
    cr_assert_not(chat_room_id_valid("sl/ash", 6));
    cr_assert_not(chat_room_id_valid("\xc3\xa9", 2));
    char long65[66];
    memset(long65, 'a', 65);
    long65[65] = 0;
    cr_assert_not(chat_room_id_valid(long65, 65));
    cr_assert(chat_room_id_valid(long65, 64));
}

Test(envelope, send_message_validation)
{
    req_send_t r;
    const char *why;
    cJSON *j = J("{\"roomId\":\"general\",\"text\":\"hi\",\"clientMsgId\":\"c-1\",\"extra\":1}");
    cr_assert_eq(req_parse_send(j, 1000, &r, &why), 0);
    cr_assert_str_eq(r.room_id, "general");
    cr_assert_eq(r.text_len, 2);
    cr_assert_str_eq(r.client_msg_id, "c-1");
    cJSON_Delete(j);

    const char *bad[] = {
        "{\"roomId\":\"general\",\"text\":\"   \"}", "{\"roomId\":\"general\",\"text\":\"\"}",
        "{\"roomId\":\"general\",\"text\":5}",     "{\"roomId\":\"general\"}",
        "{\"roomId\":\"bad room\",\"text\":\"x\"}", "{\"text\":\"x\"}",
        "{\"roomId\":\"g\",\"text\":\"x\",\"clientMsgId\":{}}", "\"just a string\"", "null",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = J(bad[i]);
        why = NULL;
        cr_assert_eq(req_parse_send(j, 1000, &r, &why), -1, "case %zu", i);
        cr_assert_not_null(why);
        cJSON_Delete(j);
    }
    /* Length is counted in code points: 1000 four-byte characters pass, 1001 do not. */
    buf_t b = BUF_INIT;
    buf_append_str(&b, "{\"roomId\":\"g\",\"text\":\"");
    for (int i = 0; i < 1000; i++) buf_append_str(&b, "\xf0\x9f\x98\x80");
    buf_append_str(&b, "\"}");
    j = J(buf_cstr(&b));
    cr_assert_eq(req_parse_send(j, 1000, &r, &why), 0);
    cr_assert_eq(req_parse_send(j, 999, &r, &why), -1);
    cJSON_Delete(j);
    buf_free(&b);
}

Test(envelope, dm_join_typing_history)
{
    req_send_t s;
    req_join_t jr;
    req_typing_t t;
    req_page_t p;
    const char *why;
    cJSON *j = J("{\"recipientId\":42,\"text\":\"yo\"}");
    cr_assert_eq(req_parse_dm(j, 1000, &s, &why), 0);
    cr_assert_str_eq(s.room_id, "42");
    cJSON_Delete(j);
    j = J("{\"recipientId\":\"u-7\",\"text\":\"yo\"}");
    cr_assert_eq(req_parse_dm(j, 1000, &s, &why), 0);
    cr_assert_str_eq(s.room_id, "u-7");
    cJSON_Delete(j);
    j = J("{\"recipientId\":-3,\"text\":\"yo\"}");
    cr_assert_eq(req_parse_dm(j, 1000, &s, &why), -1);
    cJSON_Delete(j);

    j = J("{\"roomId\":\"r\",\"since\":17}");
    cr_assert_eq(req_parse_join(j, &jr, &why), 0);
    cr_assert(jr.has_since);
    cr_assert_eq(jr.since, 17);
    cJSON_Delete(j);
    j = J("{\"roomId\":\"r\",\"since\":\"x\"}");
    cr_assert_eq(req_parse_join(j, &jr, &why), -1);
    cJSON_Delete(j);

    j = J("{\"roomId\":\"r\",\"isTyping\":true}");
    cr_assert_eq(req_parse_typing(j, &t, &why), 0);
    cr_assert(t.is_typing);
    cJSON_Delete(j);
    j = J("{\"roomId\":\"r\",\"isTyping\":1}");
    cr_assert_eq(req_parse_typing(j, &t, &why), -1);
    cJSON_Delete(j);

    j = J("{\"roomId\":\"r\"}");
    cr_assert_eq(req_parse_history(j, &p, &why), 0);
    cr_assert_eq(p.limit, 50);
    cr_assert_not(p.has_before);
    cJSON_Delete(j);
    j = J("{\"roomId\":\"r\",\"before\":10,\"limit\":100}");
    cr_assert_eq(req_parse_history(j, &p, &why), 0);
    cr_assert_eq(p.before, 10);
    cr_assert_eq(p.limit, 100);
    cJSON_Delete(j);
    const char *badp[] = {"{\"roomId\":\"r\",\"limit\":101}", "{\"roomId\":\"r\",\"limit\":0}",
                          "{\"roomId\":\"r\",\"before\":0}", "{\"roomId\":\"r\",\"before\":1.5}"};
    for (size_t i = 0; i < 4; i++) {
        j = J(badp[i]);
        cr_assert_eq(req_parse_history(j, &p, &why), -1, "case %zu", i);
        cJSON_Delete(j);
    }
    j = J("{\"userId\":5,\"limit\":3}");
    cr_assert_eq(req_parse_dm_history(j, &p, &why), 0);
    cr_assert_str_eq(p.id, "5");
    cJSON_Delete(j);
}

/* Absent optional integers read as 0, never as whatever was in the caller's struct: the
 * store formats `since`/`before` even when unused (valgrind: uninitialised value). */
Test(envelope, absent_optional_integers_are_zero)
{
    req_join_t jr;
    req_page_t p;
    const char *why;
    memset(&jr, 0xAA, sizeof jr);
    memset(&p, 0xAA, sizeof p);
    cJSON *j = J("{\"roomId\":\"r\"}");
    cr_assert_eq(req_parse_join(j, &jr, &why), 0);
    cr_assert_not(jr.has_since);
    cr_assert_eq(jr.since, 0);
    cr_assert_eq(req_parse_history(j, &p, &why), 0);
    cr_assert_not(p.has_before);
    cr_assert_eq(p.before, 0);
    cJSON_Delete(j);
}

Test(envelope, message_shapes)
{
    char ts[32];
    chat_iso8601(1764067130123LL, ts);
    cr_assert_str_eq(ts, "2025-11-25T10:38:50.123Z");
    buf_t b = BUF_INIT;
    chat_fmt_room_message(&b, 5, 2, "hi \"x\"", 6, "general", "42", "alice", 1764067130123LL);
    cr_assert_str_eq(buf_cstr(&b), "{\"id\":5,\"seq\":2,\"text\":\"hi \\\"x\\\"\",\"roomId\":\"general\","
                                   "\"userId\":42,\"username\":\"alice\","
                                   "\"timestamp\":\"2025-11-25T10:38:50.123Z\"}");
    buf_reset(&b);
    chat_fmt_direct_message(&b, 9, "yo", 2, "u1", "Bob", "7", 0);
    cr_assert_str_eq(buf_cstr(&b), "{\"id\":9,\"text\":\"yo\",\"senderId\":\"u1\",\"senderUsername\":"
                                   "\"Bob\",\"recipientId\":7,\"timestamp\":\"1970-01-01T00:00:00.000Z\"}");
    buf_free(&b);
}

Test(envelope, iso8601_roundtrip)
{
    long long samples[] = {0, 1764067130123LL, 951782400000LL /* 2000-02-29 */, 4102444799999LL};
    for (size_t i = 0; i < 4; i++) {
        char ts[32];
        chat_iso8601(samples[i], ts);
        long long back;
        cr_assert_eq(chat_iso8601_parse(ts, strlen(ts), &back), 0, "%s", ts);
        cr_assert_eq(back, samples[i], "%s", ts);
    }
    long long ms;
    cr_assert_eq(chat_iso8601_parse("2026-13-01T00:00:00.000Z", 24, &ms), -1);
    cr_assert_eq(chat_iso8601_parse("2026-01-01 00:00:00.000Z", 24, &ms), -1);
    const char *j = "{\"id\":1,\"timestamp\":\"1970-01-01T00:00:01.500Z\"}";
    cr_assert_eq(chat_message_ts(j, strlen(j)), 1500);
    cr_assert_eq(chat_message_ts("{}", 2), -1);
}

Test(envelope, nul_escapes_are_refused)
{
    cr_assert(json_has_nul("\"a\\u0000b\"", 10));
    cr_assert_not(json_has_nul("\"a\\\\u0000b\"", 11)); /* an escaped backslash, then text */
    cr_assert_not(json_has_nul("\"\\u00001\"", 4));         /* cut short */
    env_msg_t m;
    const char *why;
    const char *s = "{\"event\":\"send_message\",\"data\":{\"text\":\"a\\u0000b\"},\"id\":1}";
    cr_assert_eq(env_parse(s, strlen(s), &m, &why), -1);
    cr_assert_str_eq(m.id, "1");
    env_free(&m);
}
