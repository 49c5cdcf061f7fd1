/*
 * fuzz_envelope: the raw-WebSocket JSON envelope (env_parse) and the per-event request
 * validators (req_parse_*), with the JSON encoders they pair with.
 *
 * The input is one text message. Properties:
 *  - env_parse: 0 with a non-empty event of at most 64 bytes, or -1 with a reason; the id,
 *    when set, is JSON (a number or a string) in both cases; never leaks (env_free);
 *  - every validator, on the envelope's data and on the whole input parsed as JSON, returns
 *    0 with output that obeys its own rules (room ids 1-64 of [A-Za-z0-9_.:-], text valid
 *    UTF-8, not blank and within max_chars, client message ids 1-64 printable UTF-8 bytes,
 *    1 <= limit <= 100, before >= 1, since >= 0), or -1 with a reason; the validators agree
 *    with each other (a valid send has a valid room) and with larger max_chars;
 *  - round trips through the encoders: env_encode_event/ack/error parse back to the same
 *    event, id and data; jsonw_str of any string parses back to it; a validated user id
 *    written by jsonw_user_id validates back to the same id; a message formatted by
 *    chat_fmt_room_message / chat_fmt_direct_message is JSON with the same fields.
 */
#include <cjson/cJSON.h>

#include "envelope.h"
#include "fuzz.h"
#include "utf8.h"

static int printable_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) return 0;
    return utf8_valid((const uint8_t *)s, n);
}

static int blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\n\r\f\v", *s)) return 0;
    return 1;
}

/* The JSON text of a value (compared as text: cJSON_Compare is ambiguous with duplicate
 * keys). Free with cJSON_free. */
static char *print(const cJSON *v)
{
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    if (v && !s) abort();
    return s;
}

static void same_json(const cJSON *a, const cJSON *b)
{
    char *sa = print(a), *sb = print(b);
    FUZZ_CHECK((sa == NULL) == (sb == NULL));
    if (sa) FUZZ_CHECK(strcmp(sa, sb) == 0);
    cJSON_free(sa);
    cJSON_free(sb);
}

/* jsonw_str(s) parses back to s. */
static void check_jsonw(const char *s)
{
    buf_t b = BUF_INIT;
    jsonw_cstr(&b, s);
    cJSON *v = cJSON_ParseWithLength(b.data, b.len);
    FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, s) == 0);
    cJSON_Delete(v);
    buf_free(&b);
}

/*
 * A validated user id survives jsonw_user_id and validation again.
 *
 * Finding 1 of docs/FUZZING.md (fixed; its inputs are in the corpus): the string id
 * "9007199254740992" (2^53) was written as a JSON number, which chat_user_id_from_json
 * refuses (it takes numbers below 2^53 only).
 */
static void check_user_id(const cJSON *v)
{
    char id[CHAT_MAX_USER_ID + 1];
    if (chat_user_id_from_json(v, id) < 0) return;
    FUZZ_CHECK(id[0] && strlen(id) <= CHAT_MAX_USER_ID && printable_utf8(id, strlen(id)));
    buf_t b = BUF_INIT;
    jsonw_user_id(&b, id);
    cJSON *w = cJSON_ParseWithLength(b.data, b.len);
    FUZZ_CHECK(w != NULL);
    char id2[CHAT_MAX_USER_ID + 1];
    FUZZ_CHECK(chat_user_id_from_json(w, id2) == 0);
    FUZZ_CHECK(strcmp(id, id2) == 0);
    cJSON_Delete(w);
    buf_free(&b);
}

static void check_room(const char *room)
{
    FUZZ_CHECK(chat_room_id_valid(room, strlen(room)));
    FUZZ_CHECK(strlen(room) >= 1 && strlen(room) <= CHAT_MAX_ROOM_ID);
}

static void check_send(const req_send_t *s, size_t max_chars)
{
    FUZZ_CHECK(s->text && s->text_len == strlen(s->text));
    FUZZ_CHECK(utf8_valid((const uint8_t *)s->text, s->text_len));
    FUZZ_CHECK(utf8_count((const uint8_t *)s->text, s->text_len) <= max_chars);
    FUZZ_CHECK(!blank(s->text));
    size_t cl = strlen(s->client_msg_id);
    FUZZ_CHECK(cl <= CHAT_MAX_CLIENT_MSG_ID && printable_utf8(s->client_msg_id, cl));
}

static void check_validators(const cJSON *d)
{
    const char *why;
    req_room_t room;
    why = NULL;
    int room_ok = req_parse_room(d, &room, &why) == 0;
    if (room_ok) check_room(room.room_id);
    else FUZZ_CHECK(why != NULL);

    req_join_t join;
    why = NULL;
    if (req_parse_join(d, &join, &why) == 0) {
        FUZZ_CHECK(room_ok && strcmp(join.room_id, room.room_id) == 0);
        FUZZ_CHECK(join.has_since == 0 || (join.has_since == 1 && join.since >= 0));
    } else {
        FUZZ_CHECK(why != NULL);
    }

    static const size_t max_chars[] = {1, 5, 2000};
    int prev_send = 0, prev_dm = 0;
    for (size_t i = 0; i < sizeof max_chars / sizeof *max_chars; i++) {
        req_send_t s;
        why = NULL;
        int ok = req_parse_send(d, max_chars[i], &s, &why) == 0;
        if (ok) {
            FUZZ_CHECK(room_ok && strcmp(s.room_id, room.room_id) == 0);
            check_send(&s, max_chars[i]);
            check_jsonw(s.text);
        } else {
            FUZZ_CHECK(why != NULL);
        }
        FUZZ_CHECK(ok || !prev_send); /* more room never refuses what less accepted */
        prev_send = ok;

        why = NULL;
        ok = req_parse_dm(d, max_chars[i], &s, &why) == 0;
        if (ok) {
            FUZZ_CHECK(s.room_id[0] && strlen(s.room_id) <= CHAT_MAX_USER_ID);
            check_send(&s, max_chars[i]);
        } else {
            FUZZ_CHECK(why != NULL);
        }
        FUZZ_CHECK(ok || !prev_dm);
        prev_dm = ok;
    }

    req_typing_t t;
    why = NULL;
    if (req_parse_typing(d, &t, &why) == 0) {
        FUZZ_CHECK(room_ok && strcmp(t.room_id, room.room_id) == 0);
        FUZZ_CHECK(t.is_typing == 0 || t.is_typing == 1);
    } else {
        FUZZ_CHECK(why != NULL);
    }

    req_page_t p;
    why = NULL;
    if (req_parse_history(d, &p, &why) == 0) {
        FUZZ_CHECK(room_ok && strcmp(p.id, room.room_id) == 0);
        FUZZ_CHECK(p.limit >= 1 && p.limit <= CHAT_MAX_PAGE);
        FUZZ_CHECK(p.has_before == 0 || (p.has_before == 1 && p.before >= 1));
    } else {
        FUZZ_CHECK(why != NULL);
    }
    why = NULL;
    if (req_parse_dm_history(d, &p, &why) == 0) {
        FUZZ_CHECK(p.id[0] && strlen(p.id) <= CHAT_MAX_USER_ID);
        FUZZ_CHECK(p.limit >= 1 && p.limit <= CHAT_MAX_PAGE);
        FUZZ_CHECK(p.has_before == 0 || (p.has_before == 1 && p.before >= 1));
    } else {
        FUZZ_CHECK(why != NULL);
    }

    check_user_id(d);
    if (cJSON_IsObject(d)) {
        check_user_id(cJSON_GetObjectItemCaseSensitive(d, "userId"));
        check_user_id(cJSON_GetObjectItemCaseSensitive(d, "recipientId"));
        check_user_id(cJSON_GetObjectItemCaseSensitive(d, "clientMsgId"));
    }
}

/* m->id is "" or the JSON of a number or a string. */
static void check_id(const env_msg_t *m)
{
    FUZZ_CHECK(memchr(m->id, '\0', sizeof m->id) != NULL);
    if (!m->id[0]) return;
    cJSON *v = cJSON_Parse(m->id);
    FUZZ_CHECK(cJSON_IsNumber(v) || cJSON_IsString(v));
    cJSON_Delete(v);
}

static void check_encoders(const env_msg_t *m)
{
    char *data = print(m->data);
    size_t dl = data ? strlen(data) : 0;
    const char *why = NULL;

    /* event */
    buf_t b = BUF_INIT;
    env_encode_event(&b, m->event, data, dl);
    env_msg_t m2;
    FUZZ_CHECK(env_parse(b.data, b.len, &m2, &why) == 0);
    FUZZ_CHECK(strcmp(m2.event, m->event) == 0 && m2.id[0] == '\0');
    same_json(m->data, m2.data);
    env_free(&m2);
    buf_free(&b);

    /* ack: the id re-encoded by env_parse is JSON that parses to the same id */
    if (m->id[0]) {
        env_encode_ack(&b, m->id, data ? data : "null", data ? dl : 4);
        FUZZ_CHECK(env_parse(b.data, b.len, &m2, &why) == 0);
        FUZZ_CHECK(strcmp(m2.event, "ack") == 0 && strcmp(m2.id, m->id) == 0);
        if (data) same_json(m->data, m2.data);
        env_free(&m2);
        buf_free(&b);
    }

    /* error, with the event name as the message */
    chat_err_t code = (chat_err_t)(strlen(m->event) % (CHAT_ERR__COUNT + 1));
    env_encode_error(&b, m->id, code, m->event);
    FUZZ_CHECK(env_parse(b.data, b.len, &m2, &why) == 0);
    FUZZ_CHECK(strcmp(m2.event, "error") == 0 && strcmp(m2.id, m->id) == 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(m2.data, "message");
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(m2.data, "code");
    FUZZ_CHECK(cJSON_IsString(msg) && strcmp(msg->valuestring, m->event) == 0);
    FUZZ_CHECK(cJSON_IsString(cd) && strcmp(cd->valuestring, chat_err_code(code)) == 0);
    env_free(&m2);
    buf_free(&b);
    cJSON_free(data);
}

/* The live-message shapes, with peer-controlled text and ids. */
static void check_formats(const char *text, const char *room, const char *uid, long long ms)
{
    buf_t b = BUF_INIT;
    chat_fmt_room_message(&b, 7, 8, text, strlen(text), room, uid, "name\"\\", ms);
    cJSON *v = cJSON_ParseWithLength(b.data, b.len);
    FUZZ_CHECK(cJSON_IsObject(v));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "text");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(v, "roomId");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(v, "timestamp");
    FUZZ_CHECK(cJSON_IsString(t) && strcmp(t->valuestring, text) == 0);
    FUZZ_CHECK(cJSON_IsString(r) && strcmp(r->valuestring, room) == 0);
    FUZZ_CHECK(cJSON_IsString(ts) && strlen(ts->valuestring) == 24);
    char id[CHAT_MAX_USER_ID + 1];
    if (uid[0] && strlen(uid) <= CHAT_MAX_USER_ID && printable_utf8(uid, strlen(uid))) {
        FUZZ_CHECK(chat_user_id_from_json(cJSON_GetObjectItemCaseSensitive(v, "userId"), id) == 0);
        FUZZ_CHECK(strcmp(id, uid) == 0);
    }
    cJSON_Delete(v);
    buf_free(&b);

    chat_fmt_direct_message(&b, 9, text, strlen(text), uid, "n", room, ms);
    v = cJSON_ParseWithLength(b.data, b.len);
    FUZZ_CHECK(cJSON_IsObject(v));
    t = cJSON_GetObjectItemCaseSensitive(v, "text");
    FUZZ_CHECK(cJSON_IsString(t) && strcmp(t->valuestring, text) == 0);
    cJSON_Delete(v);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = (char *)fuzz_dup(data, size);
    env_msg_t m;
    const char *why = NULL;
    int rc = env_parse(text, size, &m, &why);
    FUZZ_CHECK(rc == 0 || rc == -1);
    check_id(&m);
    if (rc == 0) {
        FUZZ_CHECK(m.root && m.event && m.event[0] && strlen(m.event) <= CHAT_MAX_EVENT_NAME);
        check_validators(m.data);
        check_encoders(&m);
        check_jsonw(m.event);
        /* peer-controlled strings in the message formats */
        const cJSON *d = m.data;
        const cJSON *tx = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "text") : NULL;
        const cJSON *rm = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "roomId") : NULL;
        if (cJSON_IsString(tx) && cJSON_IsString(rm) &&
            utf8_valid((const uint8_t *)tx->valuestring, strlen(tx->valuestring)))
            check_formats(tx->valuestring, rm->valuestring, m.event,
                          (long long)(size * 1000003ull % 253402300800000ull));
    } else {
        FUZZ_CHECK(why != NULL);
    }
    env_free(&m);

    /* The whole input as a data value (the Socket.IO path hands the validators the event
     * argument directly). */
    cJSON *root = cJSON_ParseWithLength(text, size);
    check_validators(root);
    cJSON_Delete(root);

    /* Any string (up to the first NUL) survives jsonw_str. */
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    check_jsonw(s);
    free(s);
    free(text);
    return 0;
}
