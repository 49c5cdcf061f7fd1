/*
 * http: an HTTP/1.1 request-head parser and the small helpers the gateway needs around it
 * (header lookup, token lists, query parameters, cookies, the WebSocket upgrade checks,
 * Origin policy, response heads).
 *
 * Like picohttpparser, the parser is stateless and allocation-free: it is given everything
 * received so far, and either reports that more is needed or fills `http_request_t` with
 * views (pointer + length) into the caller's buffer. The caller keeps that buffer alive and
 * unchanged for as long as it uses the views.
 */
#ifndef CHAT_HTTP_H
#define CHAT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HTTP_MAX_HEADERS 64

typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} http_header_t;

typedef struct http_request {
    const char *method;
    size_t method_len;
    const char *target; /* the request-target as sent */
    size_t target_len;
    const char *path; /* target up to '?' */
    size_t path_len;
    const char *query; /* after '?', or NULL */
    size_t query_len;
    int minor_version;
    size_t num_headers;
    http_header_t headers[HTTP_MAX_HEADERS];
} http_request_t;

/* Results of http_parse_request() other than a positive head length. */
#define HTTP_BAD (-1)                /* malformed: answer 400 */
#define HTTP_INCOMPLETE (-2)         /* need more bytes */
#define HTTP_HEAD_TOO_LARGE (-3)     /* over max_head_bytes: answer 431 */
#define HTTP_TOO_MANY_HEADERS (-4)   /* over max_headers: answer 431 */

/*
 * Parse a request head from buf[0..len). Returns the head length (through the blank line)
 * or one of the negative codes above. max_headers is capped at HTTP_MAX_HEADERS.
 */
int http_parse_request(const char *buf, size_t len, http_request_t *req, size_t max_head_bytes,
                       size_t max_headers);

/* Case-insensitive header lookup; NULL when absent. */
const http_header_t *http_header_find(const http_request_t *req, const char *name);

/* 1 when a comma-separated header value contains `token` (case-insensitive). */
int http_has_token(const char *v, size_t vlen, const char *token);

/* 1 when the method is exactly `m`. */
int http_method_is(const http_request_t *req, const char *m);

/* 1 when the path equals `p`. */
int http_path_is(const http_request_t *req, const char *p);

/*
 * Find query parameter `name` and percent-decode its value ('+' is a space) into out.
 * Returns the decoded length, -1 when absent, -2 when it does not fit or is badly encoded.
 */
int http_query_param(const char *q, size_t qlen, const char *name, char *out, size_t outsz);

/* Find cookie `name` in a Cookie header value; returns length, -1 absent, -2 too long. The
 * value is percent-decoded (browsers' document.cookie convention). */
int http_cookie_get(const char *v, size_t vlen, const char *name, char *out, size_t outsz);

/* Content-Length: 0 when absent (and *out = 0), 1 when valid, -1 when invalid or when a
 * Transfer-Encoding is present (chunked bodies are not accepted). */
int http_content_length(const http_request_t *req, uint64_t *out);

/* Transfer-Encoding: 0 none, 1 exactly "chunked", -1 anything else (answer 501), -2 when
 * Content-Length is present as well (answer 400: request smuggling). */
int http_transfer_encoding(const http_request_t *req);

/*
 * Decode a complete chunked body from buf[0..len) into out (trailers are skipped).
 * Returns the number of encoded bytes consumed once the last chunk and the trailer section
 * have arrived, 0 when more bytes are needed, -1 when malformed, -2 when the decoded body
 * would exceed max. Stateless: call again with more bytes (out is reset each call).
 */
long http_chunked_decode(const char *buf, size_t len, buf_t *out, size_t max);

/* 1 when the connection may be kept open after the response. */
int http_keep_alive(const http_request_t *req);

/* 1 when the request asks for a WebSocket upgrade (Upgrade: websocket). */
int http_wants_websocket(const http_request_t *req);

/*
 * Check a WebSocket upgrade request (RFC 6455 4.2.1). Returns 0 and the key view when it is
 * valid, 400 when malformed, 426 when the version is not 13 (answer with
 * "Sec-WebSocket-Version: 13").
 */
int http_ws_check(const http_request_t *req, const char **key, size_t *key_len);

/*
 * Origin policy against cross-site WebSocket hijacking. `allowed` is a comma-separated list
 * of exact origins ("https://chat.example.com"), "*" for any; when empty, an origin is
 * allowed when its host[:port] equals the Host header or its host is localhost, 127.0.0.1
 * or [::1]. A request without Origin is allowed (non-browser clients carry no victim
 * cookies). Returns 1 when allowed.
 */
int http_origin_allowed(const char *origin, size_t olen, const char *host, size_t hlen,
                        const char *allowed);

const char *http_status_text(int status);

/* Append "HTTP/1.1 <status> <text>\r\n" plus Content-Type/Content-Length (when
 * content_type is not NULL) and `extra` (complete header lines, may be NULL) and the blank
 * line. */
int http_response_head(buf_t *out, int status, const char *content_type, size_t content_length,
                       const char *extra, int keep_alive);

#endif
