#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "chat.h"
#include "conn.h"
#include "httpd.h"
#include "log.h"
#include "settings.h"
#include "store.h"

/* Compare without leaking the position of the first difference. */
static int key_equal(const char *a, size_t al, const char *b, size_t bl)
{
    unsigned char d = al != bl;
    for (size_t i = 0; i < al; i++) d |= (unsigned char)(a[i] ^ b[i % (bl ? bl : 1)]);
    return d == 0;
}

static int api_key_ok(const http_request_t *req)
{
    const http_header_t *h = http_header_find(req, "Authorization");
    if (!h) return 0;
    size_t l = h->value_len;
    const char *k = jwtauth_strip_bearer(h->value, &l);
    if (k == h->value) return 0;
    return key_equal(k, l, g_cfg.api_key, strlen(g_cfg.api_key));
}

/* Split "/api/<kind>/<id>/<what>" with the id percent-decoded. */
static int parse_path(const http_request_t *req, char *kind, char *id, size_t idsz, char *what)
{
    const char *p = req->path + 5, *end = req->path + req->path_len; /* after "/api/" */
    const char *s1 = memchr(p, '/', (size_t)(end - p));
    if (!s1 || s1 - p > 15) return -1;
    memcpy(kind, p, (size_t)(s1 - p));
    kind[s1 - p] = '\0';
    const char *s2 = memchr(s1 + 1, '/', (size_t)(end - s1 - 1));
    if (!s2 || end - s2 - 1 > 15 || s2 == s1 + 1) return -1;
    memcpy(what, s2 + 1, (size_t)(end - s2 - 1));
    what[end - s2 - 1] = '\0';
    /* Reuse the query decoder: "x=<id>". */
    char tmp[256];
    int n = snprintf(tmp, sizeof tmp, "x=%.*s", (int)(s2 - s1 - 1), s1 + 1);
    if (n < 0 || (size_t)n >= sizeof tmp) return -1;
    int l = http_query_param(tmp, (size_t)n, "x", id, idsz);
    return l > 0 ? 0 : -1;
}

static void publish_event(gw_conn_t *c, const char *topic, const char *body, size_t len, int keep)
{
    gw_worker_t *w = c->w;
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "event");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (!cJSON_IsObject(j) || !cJSON_IsString(ev) || !*ev->valuestring ||
        strlen(ev->valuestring) > CHAT_MAX_EVENT_NAME) {
        cJSON_Delete(j);
        conn_http_error(c, 400, CHAT_ERR_VALIDATION, "body must be {\"event\": string, \"data\": any}",
                        NULL, keep);
        return;
    }
    if (!bus_can_publish(w->bus)) {
        cJSON_Delete(j);
        conn_http_error(c, 503, CHAT_ERR_UNAVAILABLE, "cluster bus unavailable, retry later",
                        "Retry-After: 1\r\n", keep);
        return;
    }
    char *d = data ? cJSON_PrintUnformatted(data) : NULL;
    chat_publish(w, topic, ev->valuestring, d ? d : "null", d ? strlen(d) : 4, NULL, -1);
    log_info("api_publish", "topic=%s event=%s", topic, ev->valuestring);
    free(d);
    cJSON_Delete(j);
    static const char ok[] = "{\"published\":true}";
    conn_http_respond(c, 202, "application/json", ok, sizeof ok - 1, NULL, keep);
}

typedef struct api_op {
    gw_conn_t *c;
    int keep;
} api_op_t;

static void on_history(void *arg, const store_list_t *res)
{
    api_op_t *op = arg;
    gw_conn_t *c = op->c;
    if (c->state == CS_HTTP_PARKED) {
        c->state = CS_HTTP_HEAD;
        if (res->err == STORE_OK) {
            buf_t b = BUF_INIT;
            buf_append_str(&b, "{\"messages\":");
            buf_append(&b, res->json, res->len);
            buf_printf(&b, ",\"hasMore\":%s}", res->has_more ? "true" : "false");
            conn_http_respond(c, 200, "application/json", b.data, b.len,
                              "Cache-Control: no-store\r\n", op->keep);
            buf_free(&b);
        } else if (res->err == STORE_EFORBIDDEN) {
            conn_http_error(c, 403, CHAT_ERR_FORBIDDEN, "not allowed in this room", NULL, op->keep);
        } else if (res->err == STORE_ENOTFOUND) {
            conn_http_error(c, 404, CHAT_ERR_NOT_FOUND, "room not found", NULL, op->keep);
        } else {
            conn_http_error(c, 503, CHAT_ERR_UNAVAILABLE, "storage unavailable, retry later",
                            "Retry-After: 1\r\n", op->keep);
        }
        conn_http_resume(c);
    }
    conn_unref(c);
    free(op);
}

static void room_messages(gw_conn_t *c, const http_request_t *req, const char *room, int keep)
{
    gw_worker_t *w = c->w;
    jwt_identity_t id;
    const char *why = "invalid token";
    if (httpd_authenticate(w, req, &id, &why) < 0) {
        w->m->c[MC_AUTH_FAILED]++;
        conn_http_error(c, 401, CHAT_ERR_UNAUTHORIZED, why, "WWW-Authenticate: Bearer\r\n", keep);
        return;
    }
    if (!httpd_origin_ok(req)) {
        conn_http_error(c, 403, CHAT_ERR_FORBIDDEN, "origin not allowed", NULL, keep);
        return;
    }
    char v[32];
    long long before = 0, limit = CHAT_DEFAULT_PAGE;
    int has_before = 0;
    if (http_query_param(req->query, req->query_len, "before", v, sizeof v) > 0) {
        char *end;
        before = strtoll(v, &end, 10);
        if (*end || before < 1) {
            conn_http_error(c, 400, CHAT_ERR_VALIDATION, "before must be a positive integer", NULL, keep);
            return;
        }
        has_before = 1;
    }
    if (http_query_param(req->query, req->query_len, "limit", v, sizeof v) > 0) {
        char *end;
        limit = strtoll(v, &end, 10);
        if (*end || limit < 1 || limit > CHAT_MAX_PAGE) {
            conn_http_error(c, 400, CHAT_ERR_VALIDATION, "limit must be between 1 and 100", NULL, keep);
            return;
        }
    }
    api_op_t *op = malloc(sizeof *op);
    if (!op) {
        conn_http_error(c, 500, CHAT_ERR_INTERNAL, "out of memory", NULL, 0);
        return;
    }
    op->c = c;
    op->keep = keep;
    conn_ref(c);
    c->state = CS_HTTP_PARKED; /* pipelined requests wait for this answer */
    w->store->ops->history(w->store, room, id.sub, has_before, before, (int)limit, on_history, op);
}

void api_handle(gw_conn_t *c, const http_request_t *req, const char *body, size_t len, int keep)
{
    char kind[16], id[CHAT_MAX_ROOM_ID + 1], what[16];
    if (parse_path(req, kind, id, sizeof id, what) < 0) {
        conn_http_error(c, 404, CHAT_ERR_NOT_FOUND, "not found", NULL, keep);
        return;
    }
    int users = strcmp(kind, "users") == 0, rooms = strcmp(kind, "rooms") == 0;
    if ((!users && !rooms) || (rooms && !chat_room_id_valid(id, strlen(id)))) {
        conn_http_error(c, 404, CHAT_ERR_NOT_FOUND, "not found", NULL, keep);
        return;
    }
    if (strcmp(what, "events") == 0) {
        if (!http_method_is(req, "POST")) {
            conn_http_error(c, 405, CHAT_ERR_VALIDATION, "use POST", "Allow: POST\r\n", keep);
            return;
        }
        if (!*g_cfg.api_key) {
            conn_http_error(c, 404, CHAT_ERR_NOT_FOUND, "the HTTP API is disabled (set CHAT_API_KEY)",
                            NULL, keep);
            return;
        }
        if (!api_key_ok(req)) {
            c->w->m->c[MC_AUTH_FAILED]++;
            conn_http_error(c, 401, CHAT_ERR_UNAUTHORIZED, "invalid API key",
                            "WWW-Authenticate: Bearer\r\n", keep);
            return;
        }
        char topic[CHAT_MAX_ROOM_ID + 8];
        snprintf(topic, sizeof topic, "%s:%s", users ? "user" : "room", id);
        publish_event(c, topic, body, len, keep);
    } else if (rooms && strcmp(what, "messages") == 0) {
        if (!http_method_is(req, "GET")) {
            conn_http_error(c, 405, CHAT_ERR_VALIDATION, "use GET", "Allow: GET\r\n", keep);
            return;
        }
        room_messages(c, req, id, keep);
    } else {
        conn_http_error(c, 404, CHAT_ERR_NOT_FOUND, "not found", NULL, keep);
    }
}
