#include "envelope.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

static const char *const err_codes[CHAT_ERR__COUNT] = {
    "UNAUTHORIZED", "FORBIDDEN",   "VALIDATION_ERROR", "NOT_FOUND",     "RATE_LIMITED",
    "PAYLOAD_TOO_LARGE", "UNAVAILABLE", "INTERNAL_ERROR", "UNKNOWN_EVENT",
};

const char *chat_err_code(chat_err_t e)
{
    return (unsigned)e < CHAT_ERR__COUNT ? err_codes[e] : "INTERNAL_ERROR";
}

void jsonw_str(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n + 2);
    buf_append_char(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 6);
        }
        }
    }
    buf_append(b, s + run, n - run);
    buf_append_char(b, '"');
}

void jsonw_cstr(buf_t *b, const char *s)
{
    jsonw_str(b, s, strlen(s));
}

void jsonw_user_id(buf_t *b, const char *uid)
{
    size_t n = strlen(uid);
    int numeric = n > 0 && n <= 16 && !(n > 1 && uid[0] == '0');
    for (size_t i = 0; numeric && i < n; i++)
        if (uid[i] < '0' || uid[i] > '9') numeric = 0;
    /* Numbers up to 2^53 - 1 (exact in a double, accepted back by chat_user_id_from_json);
     * 2^53 = 9007199254740992 has 16 digits: compare as strings of equal length. */
    if (numeric && n == 16 && strcmp(uid, "9007199254740992") >= 0) numeric = 0;
    if (numeric) buf_append(b, uid, n);
    else jsonw_str(b, uid, n);
}

int json_has_nul(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) return 1;
        i++; /* skip the escaped character (an escaped backslash included) */
    }
    return 0;
}

int env_parse(const char *text, size_t len, env_msg_t *m, const char **why)
{
    memset(m, 0, sizeof *m);
    m->root = cJSON_ParseWithLength(text, len);
    if (!m->root) {
        *why = "invalid JSON";
        return -1;
    }
    if (!cJSON_IsObject(m->root)) {
        *why = "message must be a JSON object {event, data, id}";
        return -1;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m->root, "id");
    if (id) {
        if (cJSON_IsNumber(id) && isfinite(id->valuedouble) && id->valuedouble == floor(id->valuedouble) &&
            fabs(id->valuedouble) < 9.007199254740992e15) {
            snprintf(m->id, sizeof m->id, "%.0f", id->valuedouble);
        } else if (cJSON_IsString(id) && strlen(id->valuestring) <= 36) {
            buf_t b = BUF_INIT;
            jsonw_cstr(&b, id->valuestring);
            if (b.len < sizeof m->id) memcpy(m->id, buf_cstr(&b), b.len + 1);
            buf_free(&b);
        }
        if (!m->id[0] && !cJSON_IsNull(id)) {
            *why = "id must be an integer or a short string";
            return -1;
        }
    }
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(m->root, "event");
    if (!cJSON_IsString(ev) || !*ev->valuestring) {
        *why = "event missing";
        return -1;
    }
    if (strlen(ev->valuestring) > CHAT_MAX_EVENT_NAME) {
        *why = "event name too long";
        return -1;
    }
    m->event = ev->valuestring;
    m->data = cJSON_GetObjectItemCaseSensitive(m->root, "data");
    if (json_has_nul(text, len)) {
        /* cJSON strings end at NUL: refuse rather than store a silently cut text. */
        *why = "strings must not contain NUL (\\u0000)";
        return -1;
    }
    return 0;
}

void env_free(env_msg_t *m)
{
    cJSON_Delete(m->root);
    m->root = NULL;
}

void env_encode_event(buf_t *b, const char *event, const char *data_json, size_t data_len)
{
    buf_append_str(b, "{\"event\":");
    jsonw_cstr(b, event);
    if (data_json) {
        buf_append_str(b, ",\"data\":");
        buf_append(b, data_json, data_len);
    }
    buf_append_char(b, '}');
}

void env_encode_ack(buf_t *b, const char *id_json, const char *data_json, size_t data_len)
{
    buf_append_str(b, "{\"event\":\"ack\",\"id\":");
    buf_append_str(b, id_json);
    buf_append_str(b, ",\"data\":");
    buf_append(b, data_json, data_len);
    buf_append_char(b, '}');
}

void env_error_data(buf_t *b, chat_err_t code, const char *message)
{
    buf_append_str(b, "{\"message\":");
    jsonw_cstr(b, message);
    buf_append_str(b, ",\"code\":\"");
    buf_append_str(b, chat_err_code(code));
    buf_append_str(b, "\"}");
}

void env_encode_error(buf_t *b, const char *id_json, chat_err_t code, const char *message)
{
    buf_append_str(b, "{\"event\":\"error\"");
    if (id_json && *id_json) {
        buf_append_str(b, ",\"id\":");
        buf_append_str(b, id_json);
    }
    buf_append_str(b, ",\"data\":");
    env_error_data(b, code, message);
    buf_append_char(b, '}');
}

void chat_iso8601(long long ms, char out[32])
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

int chat_iso8601_parse(const char *s, size_t n, long long *ms)
{
    int f[7] = {0};
    static const int pos[7] = {0, 5, 8, 11, 14, 17, 20};
    static const int len[7] = {4, 2, 2, 2, 2, 2, 3};
    if (n < 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.' || s[23] != 'Z')
        return -1;
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < len[i]; j++) {
            char c = s[pos[i] + j];
            if (c < '0' || c > '9') return -1;
            f[i] = f[i] * 10 + (c - '0');
        }
    if (f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 60) return -1;
    /* Days from civil (Howard Hinnant's algorithm): no timegm, no locale. */
    int y = f[0] - (f[1] <= 2);
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (f[1] + (f[1] > 2 ? -3 : 9)) + 2) / 5 + f[2] - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = (long long)era * 146097 + doe - 719468;
    *ms = ((days * 86400 + f[3] * 3600 + f[4] * 60 + f[5]) * 1000) + f[6];
    return 0;
}

long long chat_message_ts(const char *json, size_t n)
{
    static const char key[] = "\"timestamp\":\"";
    const char *end = json + n;
    for (const char *p = json; p + sizeof key - 1 + 24 <= end; p++) {
        if (*p != '"' || memcmp(p, key, sizeof key - 1) != 0) continue;
        long long ms;
        return chat_iso8601_parse(p + sizeof key - 1, (size_t)(end - p - (sizeof key - 1)), &ms) == 0 ? ms : -1;
    }
    return -1;
}

void chat_fmt_room_message(buf_t *b, long long id, long long seq, const char *text, size_t len,
                           const char *room, const char *user_id, const char *username,
                           long long created_ms)
{
    char ts[32];
    chat_iso8601(created_ms, ts);
    buf_printf(b, "{\"id\":%lld,\"seq\":%lld,\"text\":", id, seq);
    jsonw_str(b, text, len);
    buf_append_str(b, ",\"roomId\":");
    jsonw_cstr(b, room);
    buf_append_str(b, ",\"userId\":");
    jsonw_user_id(b, user_id);
    buf_append_str(b, ",\"username\":");
    jsonw_cstr(b, username);
    buf_printf(b, ",\"timestamp\":\"%s\"}", ts);
}

void chat_fmt_direct_message(buf_t *b, long long id, const char *text, size_t len,
                             const char *sender, const char *sender_name, const char *recipient,
                             long long created_ms)
{
    char ts[32];
    chat_iso8601(created_ms, ts);
    buf_printf(b, "{\"id\":%lld,\"text\":", id);
    jsonw_str(b, text, len);
    buf_append_str(b, ",\"senderId\":");
    jsonw_user_id(b, sender);
    buf_append_str(b, ",\"senderUsername\":");
    jsonw_cstr(b, sender_name);
    buf_append_str(b, ",\"recipientId\":");
    jsonw_user_id(b, recipient);
    buf_printf(b, ",\"timestamp\":\"%s\"}", ts);
}

/* ---- validation ---- */

int chat_room_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > CHAT_MAX_ROOM_ID) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

int chat_user_id_from_json(const cJSON *v, char out[CHAT_MAX_USER_ID + 1])
{
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d) || d < 0 || d != floor(d) || d >= 9.007199254740992e15) return -1;
        snprintf(out, CHAT_MAX_USER_ID + 1, "%.0f", d);
        return 0;
    }
    if (!cJSON_IsString(v)) return -1;
    size_t n = strlen(v->valuestring);
    if (n == 0 || n > CHAT_MAX_USER_ID) return -1;
    if (!utf8_valid((const uint8_t *)v->valuestring, n)) return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v->valuestring[i] < 0x20) return -1;
    memcpy(out, v->valuestring, n + 1);
    return 0;
}

static const cJSON *field(const cJSON *data, const char *name)
{
    return cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, name) : NULL;
}

static int room_field(const cJSON *data, char out[CHAT_MAX_ROOM_ID + 1], const char **why)
{
    const cJSON *v = field(data, "roomId");
    if (!cJSON_IsString(v)) {
        *why = "roomId must be a string";
        return -1;
    }
    size_t n = strlen(v->valuestring);
    if (!chat_room_id_valid(v->valuestring, n)) {
        *why = "roomId must be 1-64 characters of A-Z a-z 0-9 _ . : -";
        return -1;
    }
    memcpy(out, v->valuestring, n + 1);
    return 0;
}

/* An optional integer field; 0 absent (*out keeps the caller's default), 1 present,
 * -1 invalid. */
static int opt_int(const cJSON *data, const char *name, long long min, long long *out)
{
    const cJSON *v = field(data, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > 9.007199254740992e15) return -1;
    *out = (long long)d;
    return 1;
}

static int text_field(const cJSON *data, size_t max_chars, req_send_t *r, const char **why)
{
    const cJSON *v = field(data, "text");
    if (!cJSON_IsString(v)) {
        *why = "text must be a string";
        return -1;
    }
    const char *s = v->valuestring;
    size_t n = strlen(s);
    int blank = 1;
    for (size_t i = 0; i < n && blank; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '\f' &&
            s[i] != '\v')
            blank = 0;
    if (blank) {
        *why = "text must not be empty";
        return -1;
    }
    if (!utf8_valid((const uint8_t *)s, n)) {
        *why = "text is not valid UTF-8";
        return -1;
    }
    if (utf8_count((const uint8_t *)s, n) > max_chars) {
        *why = "text is too long";
        return -1;
    }
    r->text = s;
    r->text_len = n;
    return 0;
}

static int cmid_field(const cJSON *data, req_send_t *r, const char **why)
{
    const cJSON *v = field(data, "clientMsgId");
    r->client_msg_id[0] = '\0';
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) {
        char tmp[CHAT_MAX_USER_ID + 1];
        if (chat_user_id_from_json(v, tmp) < 0) goto bad;
        memcpy(r->client_msg_id, tmp, strlen(tmp) + 1);
        return 0;
    }
    if (!cJSON_IsString(v)) goto bad;
    size_t n = strlen(v->valuestring);
    if (n == 0 || n > CHAT_MAX_CLIENT_MSG_ID) goto bad;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v->valuestring[i] < 0x20) goto bad;
    if (!utf8_valid((const uint8_t *)v->valuestring, n)) goto bad;
    memcpy(r->client_msg_id, v->valuestring, n + 1);
    return 0;
bad:
    *why = "clientMsgId must be a string of 1-64 bytes";
    return -1;
}

int req_parse_room(const cJSON *data, req_room_t *r, const char **why)
{
    return room_field(data, r->room_id, why);
}

int req_parse_join(const cJSON *data, req_join_t *r, const char **why)
{
    if (room_field(data, r->room_id, why) < 0) return -1;
    r->since = 0; /* absent reads as 0: the store formats it even when unused */
    int s = opt_int(data, "since", 0, &r->since);
    if (s < 0) {
        *why = "since must be a non-negative integer";
        return -1;
    }
    r->has_since = s;
    return 0;
}

int req_parse_send(const cJSON *data, size_t max_chars, req_send_t *r, const char **why)
{
    if (room_field(data, r->room_id, why) < 0) return -1;
    if (text_field(data, max_chars, r, why) < 0) return -1;
    return cmid_field(data, r, why);
}

int req_parse_dm(const cJSON *data, size_t max_chars, req_send_t *r, const char **why)
{
    if (chat_user_id_from_json(field(data, "recipientId"), r->room_id) < 0) {
        *why = "recipientId must be a user id (number or string)";
        return -1;
    }
    if (text_field(data, max_chars, r, why) < 0) return -1;
    return cmid_field(data, r, why);
}

int req_parse_typing(const cJSON *data, req_typing_t *r, const char **why)
{
    if (room_field(data, r->room_id, why) < 0) return -1;
    const cJSON *v = field(data, "isTyping");
    if (!cJSON_IsBool(v)) {
        *why = "isTyping must be a boolean";
        return -1;
    }
    r->is_typing = cJSON_IsTrue(v);
    return 0;
}

static int page_common(const cJSON *data, req_page_t *r, const char **why)
{
    r->before = 0; /* absent reads as 0, as for since */
    int b = opt_int(data, "before", 1, &r->before);
    if (b < 0) {
        *why = "before must be a positive integer";
        return -1;
    }
    r->has_before = b;
    long long lim = CHAT_DEFAULT_PAGE;
    if (opt_int(data, "limit", 1, &lim) < 0 || lim > CHAT_MAX_PAGE) {
        *why = "limit must be an integer between 1 and 100";
        return -1;
    }
    r->limit = (int)lim;
    return 0;
}

int req_parse_history(const cJSON *data, req_page_t *r, const char **why)
{
    if (room_field(data, r->id, why) < 0) return -1;
    return page_common(data, r, why);
}

int req_parse_dm_history(const cJSON *data, req_page_t *r, const char **why)
{
    if (chat_user_id_from_json(field(data, "userId"), r->id) < 0) {
        *why = "userId must be a user id (number or string)";
        return -1;
    }
    return page_common(data, r, why);
}
