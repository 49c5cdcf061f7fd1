/*
 * settings: the gateway's configuration (CHAT_* / --flags), the only global of the process.
 *
 * g_cfg is filled once by settings_load() in the master before any worker is forked and is
 * read-only afterwards; every other piece of state is passed explicitly.
 */
#ifndef GW_SETTINGS_H
#define GW_SETTINGS_H

enum presence_scope { PRESENCE_GLOBAL = 0, PRESENCE_ROOMS = 1, PRESENCE_NONE = 2 };
enum log_format { LOGFMT_TEXT = 0, LOGFMT_JSON = 1 };

typedef struct gw_settings {
    long long port;
    char *host;
    long long workers;
    char *instance_id;
    char *jwt_alg;
    char *jwt_secret;
    char *jwt_public_key;
    char *jwt_issuer;
    char *jwt_audience;
    long long jwt_leeway;
    char *allowed_origins;
    long long max_message_chars;
    long long max_frame_bytes;
    long long max_message_bytes;
    long long max_header_bytes;
    long long max_headers;
    long long max_outbuf;
    long long max_connections;
    long long rate_limit;
    long long rate_burst;
    long long ping_interval;
    long long ping_timeout;
    long long handshake_timeout;
    long long polling_max_payload;
    int presence_events;
    char *broker_socket;
    char *database_url;
    long long db_batch;
    long long db_max_pending;
    int auto_create_rooms;
    long long drain_seconds;
    char *api_key;
    int log_level;
    int log_format;
    int dev_tokens;
    int conformance;
    int echo;
    char *static_dir;
    char *jwt_key_material; /* derived: the secret or the PEM text actually used */
} gw_settings_t;

extern gw_settings_t g_cfg;

/* Load and validate; on error prints to stderr and returns -1; 1 when --help was shown. */
int settings_load(int argc, char **argv);

#endif
