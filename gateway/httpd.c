#include "httpd.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "api.h"
#include "bus.h"
#include "chat.h"
#include "conn.h"
#include "log.h"
#include "settings.h"
#include "sio.h"
#include "store.h"

/* ---- static files of the web client ---- */

typedef struct static_file {
    char *path; /* URL path, "/app.js" */
    const char *ctype;
    char *data;
    size_t len;
    char etag[32];
} static_file_t;

static static_file_t *g_static;
static size_t g_nstatic;

static const char *ctype_for(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
        {".svg", "image/svg+xml"},             {".png", "image/png"},
        {".ico", "image/x-icon"},              {".txt", "text/plain; charset=utf-8"},
        {".webmanifest", "application/manifest+json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (strcasecmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

static void static_add(const char *fs_path, const char *url)
{
    FILE *f = fopen(fs_path, "rb");
    if (!f) return;
    buf_t b = BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    fclose(f);
    static_file_t *nf = realloc(g_static, (g_nstatic + 1) * sizeof *nf);
    if (!nf) {
        buf_free(&b);
        return;
    }
    g_static = nf;
    static_file_t *s = &g_static[g_nstatic++];
    s->path = strdup(url);
    s->ctype = ctype_for(url);
    s->len = b.len;
    s->data = buf_steal(&b, NULL);
    uint32_t h = map_hash(s->data ? s->data : "");
    snprintf(s->etag, sizeof s->etag, "\"%zx-%08x\"", s->len, h);
}

static void static_scan(const char *dir, const char *prefix, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char fs[1024], url[1024];
        snprintf(fs, sizeof fs, "%s/%s", dir, e->d_name);
        snprintf(url, sizeof url, "%s/%s", prefix, e->d_name);
        struct stat st;
        if (stat(fs, &st) < 0) continue;
        if (S_ISDIR(st.st_mode) && depth < 2) static_scan(fs, url, depth + 1);
        else if (S_ISREG(st.st_mode) && st.st_size < (4 << 20)) static_add(fs, url);
    }
    closedir(d);
}

int httpd_static_load(const char *dir)
{
    if (!dir || !*dir) return 0;
    static_scan(dir, "", 0);
    log_info("static_loaded", "dir=%s files=%zu", dir, g_nstatic);
    return 0;
}

static const char CSP[] =
    "Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'\r\n"
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n";

static int serve_static(gw_conn_t *c, const http_request_t *req, int keep)
{
    char path[256];
    if (req->path_len >= sizeof path) return 0;
    memcpy(path, req->path, req->path_len);
    path[req->path_len] = '\0';
    if (strcmp(path, "/") == 0) strcpy(path, "/index.html");
    for (size_t i = 0; i < g_nstatic; i++) {
        static_file_t *s = &g_static[i];
        if (strcmp(s->path, path) != 0) continue;
        char extra[1024];
        snprintf(extra, sizeof extra, "%sCache-Control: no-cache\r\nETag: %s\r\n", CSP, s->etag);
        const http_header_t *inm = http_header_find(req, "If-None-Match");
        if (inm && inm->value_len == strlen(s->etag) && memcmp(inm->value, s->etag, inm->value_len) == 0) {
            conn_http_respond(c, 304, NULL, NULL, 0, extra, keep);
            return 1;
        }
        int head = http_method_is(req, "HEAD");
        buf_t b = BUF_INIT;
        http_response_head(&b, 200, s->ctype, s->len, extra, keep);
        if (!head) buf_append(&b, s->data, s->len);
        conn_send(c, frame_raw(b.data, b.len));
        buf_free(&b);
        if (!keep) conn_end_after_write(c);
        return 1;
    }
    return 0;
}

/* ---- auth and origin ---- */

int httpd_origin_ok(const http_request_t *req)
{
    const http_header_t *o = http_header_find(req, "Origin");
    const http_header_t *h = http_header_find(req, "Host");
    return http_origin_allowed(o ? o->value : NULL, o ? o->value_len : 0, h ? h->value : NULL,
                               h ? h->value_len : 0, g_cfg.allowed_origins);
}

int httpd_authenticate(gw_worker_t *w, const http_request_t *req, jwt_identity_t *id,
                       const char **why)
{
    char tok[JWT_MAX_TOKEN + 8];
    int n = jwtauth_token_from_request(req, tok, sizeof tok);
    if (n == -2) {
        *why = "token too long";
        return -1;
    }
    if (n <= 0) {
        *why = "token missing";
        return -1;
    }
    return jwtauth_verify(w->auth, tok, (size_t)n, gw_now_ms(w) / 1000, id, why);
}

/* ---- routes ---- */

static void upgrade_raw(gw_conn_t *c, const http_request_t *req)
{
    gw_worker_t *w = c->w;
    const char *key;
    size_t klen;
    if (!httpd_origin_ok(req)) {
        conn_http_error(c, 403, CHAT_ERR_FORBIDDEN, "origin not allowed", NULL, 0);
        return;
    }
    int st = http_ws_check(req, &key, &klen);
    if (st == 426) {
        conn_http_error(c, 426, CHAT_ERR_VALIDATION, "WebSocket version 13 required",
                        "Sec-WebSocket-Version: 13\r\n", 0);
        return;
    }
    char accept[29];
    if (st != 0 || ws_accept_key(key, klen, accept) < 0) {
        conn_http_error(c, 400, CHAT_ERR_VALIDATION, "invalid WebSocket handshake", NULL, 0);
        return;
    }
    if (w->draining) {
        conn_http_error(c, 503, CHAT_ERR_UNAVAILABLE, "server is draining, reconnect elsewhere",
                        "Retry-After: 1\r\n", 0);
        return;
    }
    jwt_identity_t id;
    if (!g_cfg.echo) {
        const char *why = "invalid token";
        if (httpd_authenticate(w, req, &id, &why) < 0) {
            w->m->c[MC_AUTH_FAILED]++;
            log_info("auth_failed", "peer=%s proto=websocket reason=\"%s\"", c->peer, why);
            conn_http_error(c, 401, CHAT_ERR_UNAUTHORIZED, why, NULL, 0);
            return;
        }
    }
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    conn_send(c, frame_raw(resp, (size_t)n));
    if (c->state == CS_DEAD) return;
    conn_start_ws(c, CK_RAW_WS);
    conn_set_gauge(c, MG_CONN_RAW);
    if (g_cfg.echo) return;
    c->sock = chat_sock_open(w, SP_RAW, &id, c, NULL, 0);
    if (!c->sock) {
        conn_ws_close(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    log_info("conn_open", "peer=%s user=%s sid=%s proto=websocket", c->peer, id.sub, c->sock->sid);
}

static void health(gw_conn_t *c, int keep)
{
    static const char body[] = "{\"status\":\"ok\"}";
    conn_http_respond(c, 200, "application/json", body, sizeof body - 1,
                      "Cache-Control: no-store\r\n", keep);
}

static void ready(gw_conn_t *c, int keep)
{
    gw_worker_t *w = c->w;
    int draining = w->draining || w->shm->draining;
    int broker = bus_broker_up(w->bus), redis = bus_redis_up(w->bus), db = store_ready(w->store);
    int ok = !draining && broker && redis && db;
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"ready\":%s,\"broker\":%s,\"redis\":%s,\"database\":%s,\"draining\":%s}",
                     ok ? "true" : "false", broker ? "true" : "false", redis ? "true" : "false",
                     db ? "true" : "false", draining ? "true" : "false");
    conn_http_respond(c, ok ? 200 : 503, "application/json", body, (size_t)n,
                      "Cache-Control: no-store\r\n", keep);
}

static void metrics(gw_conn_t *c, int keep)
{
    gw_worker_t *w = c->w;
    buf_t b = BUF_INIT;
    int n_in;
    const char *const *names = chat_event_names(&n_in);
    metrics_render(w->shm, w->nworkers, g_cfg.instance_id, names, n_in, &b);
    conn_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len,
                      "Cache-Control: no-store\r\n", keep);
    buf_free(&b);
}

static int valid_dev_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

/* POST /dev/token {"username": "alice"}: development only (CHAT_DEV_TOKENS=1). */
static void dev_token(gw_conn_t *c, const http_request_t *req, const char *body, size_t len,
                      int keep)
{
    if (!g_cfg.dev_tokens || strncmp(g_cfg.jwt_alg, "HS", 2) != 0) {
        conn_http_error(c, 404, CHAT_ERR_NOT_FOUND, "not found", NULL, keep);
        return;
    }
    if (!http_method_is(req, "POST")) {
        conn_http_error(c, 405, CHAT_ERR_VALIDATION, "use POST", "Allow: POST\r\n", keep);
        return;
    }
    if (!httpd_origin_ok(req)) {
        conn_http_error(c, 403, CHAT_ERR_FORBIDDEN, "origin not allowed", NULL, keep);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "username");
    if (!cJSON_IsString(u) || !valid_dev_name(u->valuestring)) {
        cJSON_Delete(j);
        conn_http_error(c, 400, CHAT_ERR_VALIDATION,
                        "username must be 1-32 characters of A-Z a-z 0-9 _ - .", NULL, keep);
        return;
    }
    char *tok = jwtauth_mint(g_cfg.jwt_alg, g_cfg.jwt_key_material, strlen(g_cfg.jwt_key_material),
                             u->valuestring, u->valuestring, (long long)time(NULL), 24 * 3600);
    if (!tok) {
        cJSON_Delete(j);
        conn_http_error(c, 500, CHAT_ERR_INTERNAL, "could not mint a token", NULL, keep);
        return;
    }
    buf_t b = BUF_INIT;
    buf_append_str(&b, "{\"token\":");
    jsonw_cstr(&b, tok);
    buf_append_str(&b, ",\"userId\":");
    jsonw_user_id(&b, u->valuestring);
    buf_append_str(&b, ",\"username\":");
    jsonw_cstr(&b, u->valuestring);
    buf_append_char(&b, '}');
    conn_http_respond(c, 200, "application/json", b.data, b.len, "Cache-Control: no-store\r\n", keep);
    buf_free(&b);
    free(tok);
    cJSON_Delete(j);
}

static int path_prefix(const http_request_t *req, const char *p)
{
    size_t l = strlen(p);
    return req->path_len >= l && memcmp(req->path, p, l) == 0;
}

static void route(gw_conn_t *c, const http_request_t *req, const char *body, size_t len)
{
    int keep = http_keep_alive(req) && !c->w->draining;
    if (path_prefix(req, "/socket.io/") || http_path_is(req, "/socket.io") ||
        (g_cfg.conformance && (path_prefix(req, "/engine.io/") || http_path_is(req, "/engine.io")))) {
        sio_http(c, req, body, len);
        return;
    }
    if (http_wants_websocket(req) && (http_path_is(req, "/") || http_path_is(req, "/ws"))) {
        upgrade_raw(c, req);
        return;
    }
    c->w->m->c[MC_HTTP_REQUESTS]++;
    int get = http_method_is(req, "GET") || http_method_is(req, "HEAD");
    if (http_path_is(req, "/healthz") && get) health(c, keep);
    else if (http_path_is(req, "/readyz") && get) ready(c, keep);
    else if (http_path_is(req, "/metrics") && get) metrics(c, keep);
    else if (path_prefix(req, "/api/")) api_handle(c, req, body, len, keep);
    else if (http_path_is(req, "/dev/token")) dev_token(c, req, body, len, keep);
    else if (http_path_is(req, "/ws") && get)
        conn_http_error(c, 426, CHAT_ERR_VALIDATION, "WebSocket upgrade required",
                        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n", keep);
    else if (get && serve_static(c, req, keep)) return;
    else conn_http_error(c, 404, CHAT_ERR_NOT_FOUND, "not found", NULL, keep);
}

void httpd_process(gw_conn_t *c)
{
    while (c->state == CS_HTTP_HEAD || c->state == CS_HTTP_BODY) {
        if (c->in.len == 0) return;
        http_request_t req;
        int hl = http_parse_request(c->in.data, c->in.len, &req, (size_t)g_cfg.max_header_bytes,
                                    (size_t)g_cfg.max_headers);
        if (hl == HTTP_INCOMPLETE) {
            c->state = CS_HTTP_HEAD;
            return;
        }
        if (hl == HTTP_HEAD_TOO_LARGE || hl == HTTP_TOO_MANY_HEADERS) {
            conn_http_error(c, 431, CHAT_ERR_VALIDATION, "request header fields too large", NULL, 0);
            return;
        }
        if (hl < 0) {
            conn_http_error(c, 400, CHAT_ERR_VALIDATION, "malformed HTTP request", NULL, 0);
            return;
        }
        /* A Socket.IO request for another worker's session goes there before its body. */
        if ((path_prefix(&req, "/socket.io/") || path_prefix(&req, "/engine.io/")) && sio_handoff(c, &req))
            return;
        int te = http_transfer_encoding(&req);
        if (te == -1) {
            conn_http_error(c, 501, CHAT_ERR_VALIDATION, "only chunked transfer coding is supported", NULL, 0);
            return;
        }
        if (te == -2) {
            conn_http_error(c, 400, CHAT_ERR_VALIDATION, "Content-Length with Transfer-Encoding", NULL, 0);
            return;
        }
        uint64_t cl = 0;
        if (te == 1) {
            /* Chunked: decode once the whole body is here (bounded like any body). */
            buf_t body = BUF_INIT;
            long used = http_chunked_decode(c->in.data + hl, c->in.len - (size_t)hl, &body,
                                            (size_t)g_cfg.polling_max_payload);
            if (used < 0) {
                buf_free(&body);
                if (used == -2)
                    conn_http_error(c, 413, CHAT_ERR_PAYLOAD_TOO_LARGE, "request body too large", NULL, 0);
                else
                    conn_http_error(c, 400, CHAT_ERR_VALIDATION, "malformed chunked body", NULL, 0);
                return;
            }
            if (used == 0) {
                buf_free(&body);
                c->state = CS_HTTP_BODY;
                return;
            }
            c->state = CS_HTTP_HEAD;
            route(c, &req, body.data ? body.data : "", body.len);
            buf_free(&body);
            conn_request_done(c, (size_t)hl + (size_t)used);
            if (c->state == CS_HTTP_HEAD) conn_arm_timer(c, c->w->tv_handshake);
            continue;
        }
        if (http_content_length(&req, &cl) < 0) {
            conn_http_error(c, 400, CHAT_ERR_VALIDATION, "invalid Content-Length", NULL, 0);
            return;
        }
        if (cl > (uint64_t)g_cfg.polling_max_payload) {
            conn_http_error(c, 413, CHAT_ERR_PAYLOAD_TOO_LARGE, "request body too large", NULL, 0);
            return;
        }
        if (c->in.len < (size_t)hl + cl) {
            if (c->state == CS_HTTP_HEAD) {
                c->state = CS_HTTP_BODY;
                const http_header_t *ex = http_header_find(&req, "Expect");
                if (ex && ex->value_len == 12 && strncasecmp(ex->value, "100-continue", 12) == 0)
                    conn_send(c, frame_raw("HTTP/1.1 100 Continue\r\n\r\n", 25));
            }
            return;
        }
        c->state = CS_HTTP_HEAD;
        route(c, &req, c->in.data + hl, (size_t)cl);
        conn_request_done(c, (size_t)hl + (size_t)cl);
        if (c->state == CS_HTTP_HEAD) conn_arm_timer(c, c->w->tv_handshake);
    }
}
