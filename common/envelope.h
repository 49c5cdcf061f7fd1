/*
 * envelope: the JSON side of the chat protocol, with no I/O.
 *
 *  - parsing the raw-WebSocket envelope {"event": E, "data": D, "id": N};
 *  - the per-event request validators of BRIEF §3 (room ids, message text, user ids,
 *    paging), which both wire protocols share;
 *  - the error codes, and encoders for raw-WebSocket events, acks and errors;
 *  - JSON string writing helpers used by every encoder.
 *
 * Views returned by the validators (text, clientMsgId) point into the parsed cJSON tree and
 * live as long as it does.
 */
#ifndef CHAT_ENVELOPE_H
#define CHAT_ENVELOPE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "buf.h"

#define CHAT_MAX_ROOM_ID 64
#define CHAT_MAX_USER_ID 64
#define CHAT_MAX_CLIENT_MSG_ID 64
#define CHAT_MAX_EVENT_NAME 64
#define CHAT_MAX_PAGE 100
#define CHAT_DEFAULT_PAGE 50

typedef enum chat_err {
    CHAT_ERR_UNAUTHORIZED,
    CHAT_ERR_FORBIDDEN,
    CHAT_ERR_VALIDATION,
    CHAT_ERR_NOT_FOUND,
    CHAT_ERR_RATE_LIMITED,
    CHAT_ERR_PAYLOAD_TOO_LARGE,
    CHAT_ERR_UNAVAILABLE,
    CHAT_ERR_INTERNAL,
    CHAT_ERR_UNKNOWN_EVENT,
    CHAT_ERR__COUNT
} chat_err_t;

const char *chat_err_code(chat_err_t e);

/* ---- JSON writing ---- */

/* Append s[0..n) as a JSON string literal (s must be valid UTF-8). */
void jsonw_str(buf_t *b, const char *s, size_t n);
void jsonw_cstr(buf_t *b, const char *s);
/* A user id: a JSON number when it is all digits (no leading zero) below 2^53, else a
 * string (BRIEF §4). */
void jsonw_user_id(buf_t *b, const char *uid);

/* ---- message shapes shared by live events and history (BRIEF §3) ---- */

/* "2026-11-25T10:38:50.123Z" (the shape of JavaScript's Date#toISOString). */
void chat_iso8601(long long ms, char out[32]);
/* Parse that shape back ("YYYY-MM-DDTHH:MM:SS.mmmZ"); 0 or -1. */
int chat_iso8601_parse(const char *s, size_t n, long long *ms);
/* The "timestamp" of a message JSON, in ms since the epoch; -1 when absent. */
long long chat_message_ts(const char *json, size_t n);
/* {"id","seq","text","roomId","userId","username","timestamp"} */
void chat_fmt_room_message(buf_t *b, long long id, long long seq, const char *text, size_t len,
                           const char *room, const char *user_id, const char *username,
                           long long created_ms);
/* {"id","text","senderId","senderUsername","recipientId","timestamp"} */
void chat_fmt_direct_message(buf_t *b, long long id, const char *text, size_t len,
                             const char *sender, const char *sender_name, const char *recipient,
                             long long created_ms);

/* ---- the raw-WebSocket envelope ---- */

typedef struct env_msg {
    cJSON *root;
    const char *event;
    const cJSON *data; /* NULL when absent */
    char id[48];       /* the request id re-encoded as JSON, "" when absent */
} env_msg_t;

/*
 * Parse a text message. Returns 0, or -1 with *why ("invalid JSON", "event missing", ...);
 * on -1 m->id is still set when the id could be read, so the error can carry it.
 * env_free() must be called in both cases.
 */
int env_parse(const char *text, size_t len, env_msg_t *m, const char **why);
void env_free(env_msg_t *m);
/* 1 when JSON text contains the escape \u0000 (a NUL inside a string). */
int json_has_nul(const char *s, size_t n);

/* {"event":E,"data":DATA} — data_json is already-encoded JSON (NULL = omit data). */
void env_encode_event(buf_t *b, const char *event, const char *data_json, size_t data_len);
/* {"event":"ack","id":ID,"data":DATA} */
void env_encode_ack(buf_t *b, const char *id_json, const char *data_json, size_t data_len);
/* {"event":"error","id":ID,"data":{"message":M,"code":C}} — id_json NULL or "" omits id. */
void env_encode_error(buf_t *b, const char *id_json, chat_err_t code, const char *message);
/* {"message":M,"code":C} */
void env_error_data(buf_t *b, chat_err_t code, const char *message);

/* ---- request validation (BRIEF §3) ---- */

int chat_room_id_valid(const char *s, size_t n);
/* A user id given as a JSON number (integer >= 0) or a non-empty string of printable UTF-8,
 * at most CHAT_MAX_USER_ID bytes. */
int chat_user_id_from_json(const cJSON *v, char out[CHAT_MAX_USER_ID + 1]);

typedef struct req_room {
    char room_id[CHAT_MAX_ROOM_ID + 1];
} req_room_t;

typedef struct req_join {
    char room_id[CHAT_MAX_ROOM_ID + 1];
    int has_since;
    long long since;
} req_join_t;

typedef struct req_send {
    char room_id[CHAT_MAX_ROOM_ID + 1]; /* or the recipient id for direct messages */
    const char *text;
    size_t text_len;
    char client_msg_id[CHAT_MAX_CLIENT_MSG_ID + 1]; /* "" when absent */
} req_send_t;

typedef struct req_typing {
    char room_id[CHAT_MAX_ROOM_ID + 1];
    int is_typing;
} req_typing_t;

typedef struct req_page {
    char id[CHAT_MAX_ROOM_ID + 1]; /* roomId or userId */
    int has_before;
    long long before;
    int limit;
} req_page_t;

/* Each returns 0, or -1 with *why naming the field; max_chars is CHAT_MAX_MESSAGE_CHARS. */
int req_parse_room(const cJSON *data, req_room_t *r, const char **why);
int req_parse_join(const cJSON *data, req_join_t *r, const char **why);
int req_parse_send(const cJSON *data, size_t max_chars, req_send_t *r, const char **why);
int req_parse_dm(const cJSON *data, size_t max_chars, req_send_t *r, const char **why);
int req_parse_typing(const cJSON *data, req_typing_t *r, const char **why);
int req_parse_history(const cJSON *data, req_page_t *r, const char **why);
int req_parse_dm_history(const cJSON *data, req_page_t *r, const char **why);

#endif
