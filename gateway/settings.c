#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

gw_settings_t g_cfg;

#define O(f) offsetof(gw_settings_t, f)
static const cfg_opt_t gw_opts[] = {
    {"port", CFG_INT, O(port), "3000", 1, 65535, NULL, "public TCP port"},
    {"host", CFG_STR, O(host), "0.0.0.0", 0, 0, NULL, "address to bind"},
    {"workers", CFG_INT, O(workers), "0", 0, 64, NULL, "worker processes (0 = number of CPUs)"},
    {"instance-id", CFG_STR, O(instance_id), NULL, 0, 0, NULL,
     "name of this instance in logs, metrics and Redis (default: hostname-port)"},
    {"jwt-alg", CFG_STR, O(jwt_alg), "HS256", 0, 0, NULL, "pinned JWT algorithm (HS256|HS384|HS512|RS256|ES256...)"},
    {"jwt-secret", CFG_STR, O(jwt_secret), NULL, 0, 0, NULL, "HMAC secret for HS* (at least 32 bytes)"},
    {"jwt-public-key", CFG_STR, O(jwt_public_key), NULL, 0, 0, NULL,
     "PEM public key (text, or a path to a file) for RS*/ES*"},
    {"jwt-issuer", CFG_STR, O(jwt_issuer), NULL, 0, 0, NULL, "required iss claim (empty: not checked)"},
    {"jwt-audience", CFG_STR, O(jwt_audience), NULL, 0, 0, NULL, "required aud claim (empty: not checked)"},
    {"jwt-leeway", CFG_INT, O(jwt_leeway), "0", 0, 300, NULL, "seconds of clock skew allowed for exp/nbf"},
    {"allowed-origins", CFG_STR, O(allowed_origins), NULL, 0, 0, NULL,
     "comma-separated allowed Origins, * for any (empty: same host and localhost)"},
    {"max-message-chars", CFG_INT, O(max_message_chars), "1000", 1, 100000, NULL,
     "maximum message text length in code points"},
    {"max-frame-bytes", CFG_SIZE, O(max_frame_bytes), "64k", 128, 16 << 20, NULL,
     "maximum WebSocket frame payload (close 1009 above)"},
    {"max-message-bytes", CFG_SIZE, O(max_message_bytes), "64k", 128, 16 << 20, NULL,
     "maximum WebSocket message, all fragments (close 1009 above)"},
    {"max-header-bytes", CFG_SIZE, O(max_header_bytes), "8k", 512, 1 << 20, NULL,
     "maximum HTTP request head (431 above)"},
    {"max-headers", CFG_INT, O(max_headers), "64", 8, 64, NULL, "maximum HTTP header count (431 above)"},
    {"max-outbuf", CFG_SIZE, O(max_outbuf), "1m", 4096, 1 << 30, NULL,
     "bytes queued to one client before it is disconnected as a slow consumer"},
    {"max-connections", CFG_INT, O(max_connections), "100000", 1, 10000000, NULL,
     "connections per worker"},
    {"rate-limit", CFG_INT, O(rate_limit), "20", 1, 1000000, NULL, "events per second per connection"},
    {"rate-burst", CFG_INT, O(rate_burst), "40", 1, 1000000, NULL, "token bucket burst"},
    {"ping-interval", CFG_INT, O(ping_interval), "25000", 50, 3600000, NULL, "ms between server pings"},
    {"ping-timeout", CFG_INT, O(ping_timeout), "20000", 50, 3600000, NULL, "ms to wait for a pong"},
    {"handshake-timeout", CFG_INT, O(handshake_timeout), "10000", 100, 600000, NULL,
     "ms allowed for an HTTP request head / idle keep-alive connection"},
    {"polling-max-payload", CFG_SIZE, O(polling_max_payload), "1000000", 1024, 64 << 20, NULL,
     "Engine.IO maxPayload (bytes of one polling POST)"},
    {"presence-events", CFG_ENUM, O(presence_events), "global", 0, 0, "global|rooms|none",
     "who receives user_online/user_offline and user-joined/user-left"},
    {"broker-socket", CFG_STR, O(broker_socket), NULL, 0, 0, NULL,
     "unix socket of the local chat-broker (empty: standalone, one worker, no cluster)"},
    {"database-url", CFG_STR, O(database_url), NULL, 0, 0, NULL,
     "PostgreSQL connection string (empty: in-memory store for development, not durable)"},
    {"db-batch", CFG_INT, O(db_batch), "1000", 1, 100000, NULL,
     "most messages stored by one database call (one transaction)"},
    {"db-max-pending", CFG_INT, O(db_max_pending), "20000", 1, 10000000, NULL,
     "messages (and, apart, direct messages) a worker lets wait for the database; more are refused"},
    {"auto-create-rooms", CFG_BOOL, O(auto_create_rooms), "1", 0, 0, NULL,
     "joining an unknown room creates a public room"},
    {"drain-seconds", CFG_INT, O(drain_seconds), "10", 0, 3600, NULL, "graceful drain limit on SIGTERM"},
    {"api-key", CFG_STR, O(api_key), NULL, 0, 0, NULL, "bearer key of the server-to-user HTTP API (empty: API off)"},
    {"log-level", CFG_ENUM, O(log_level), "info", 0, 0, "debug|info|warn|error", "log level"},
    {"log-format", CFG_ENUM, O(log_format), "text", 0, 0, "text|json", "log line format"},
    {"dev-tokens", CFG_BOOL, O(dev_tokens), "0", 0, 0, NULL,
     "serve POST /dev/token (mints tokens for any user name: development only)"},
    {"conformance", CFG_BOOL, O(conformance), "0", 0, 0, NULL,
     "Engine.IO/Socket.IO test-suite mode: no auth, echo handlers, /custom namespace"},
    {"echo", CFG_BOOL, O(echo), "0", 0, 0, NULL,
     "raw WebSocket echo mode for the Autobahn-style conformance suite (no auth)"},
    {"static-dir", CFG_STR, O(static_dir), "web", 0, 0, NULL, "directory of the demo web client served at /"},
};
#undef O

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            char *p = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (!p) break;
            buf = p;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0) break;
        len += n;
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    return buf;
}

int settings_load(int argc, char **argv)
{
    char err[512];
    int rc = cfg_load(gw_opts, sizeof gw_opts / sizeof *gw_opts, &g_cfg, argc, argv,
                      "chat-gateway: WebSocket and Socket.IO chat gateway (pre-forked workers)\n"
                      "usage: chat-gateway [--option value]...",
                      NULL, NULL, err, sizeof err);
    if (rc == CFG_HELP) return 1;
    if (rc != CFG_OK) {
        fprintf(stderr, "chat-gateway: %s\n", err);
        return -1;
    }
    if (!*g_cfg.instance_id) {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        char id[96];
        snprintf(id, sizeof id, "%s-%lld", host, g_cfg.port);
        free(g_cfg.instance_id);
        g_cfg.instance_id = strdup(id);
    }
    if (g_cfg.ping_timeout >= g_cfg.ping_interval + 60000) {
        fprintf(stderr, "chat-gateway: --ping-timeout is unreasonably long\n");
        return -1;
    }
    /* The conformance suites count every packet: no presence broadcasts there. */
    if (g_cfg.conformance || g_cfg.echo) g_cfg.presence_events = PRESENCE_NONE;
    if (g_cfg.max_message_bytes < g_cfg.max_frame_bytes) g_cfg.max_message_bytes = g_cfg.max_frame_bytes;
    /* One echoed or broadcast message must always fit the outbound queue. */
    if (g_cfg.max_outbuf < 2 * g_cfg.max_message_bytes + 65536) {
        long long want = 2 * g_cfg.max_message_bytes + 65536;
        fprintf(stderr, "chat-gateway: --max-outbuf raised from %lld to %lld (twice --max-message-bytes)\n",
                g_cfg.max_outbuf, want);
        g_cfg.max_outbuf = want;
    }
    int hmac = strncmp(g_cfg.jwt_alg, "HS", 2) == 0;
    if (hmac) {
        g_cfg.jwt_key_material = g_cfg.jwt_secret;
    } else if (strncmp(g_cfg.jwt_public_key, "-----BEGIN", 10) == 0) {
        g_cfg.jwt_key_material = g_cfg.jwt_public_key;
    } else if (*g_cfg.jwt_public_key) {
        g_cfg.jwt_key_material = read_file(g_cfg.jwt_public_key);
        if (!g_cfg.jwt_key_material) {
            fprintf(stderr, "chat-gateway: cannot read CHAT_JWT_PUBLIC_KEY file '%s'\n",
                    g_cfg.jwt_public_key);
            return -1;
        }
    } else {
        g_cfg.jwt_key_material = g_cfg.jwt_public_key;
    }
    return 0;
}
