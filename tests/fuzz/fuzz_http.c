/*
 * fuzz_http: the HTTP/1.1 request-head parser and its helpers, and the chunked-body
 * decoder.
 *
 * The input is what a client sent: a request head, possibly followed by a body. Properties:
 *
 * http_parse_request (limits 8192 bytes / 64 headers, as configured by default, and small
 * limits derived from the input):
 *  - the result is a head length within the input and the byte limit, or one of the four
 *    error codes; HTTP_INCOMPLETE only while within the byte limit;
 *  - every view (method, target, path, query, header names and values) lies inside the
 *    head; the method and header names are tokens, the target has no controls or spaces,
 *    path + "?" + query is the target, values have no controls and no surrounding blanks;
 *  - statelessness: the head alone parses to the same views, every proper prefix of it is
 *    HTTP_INCOMPLETE, a byte limit one below the head length gives HTTP_HEAD_TOO_LARGE and a
 *    header limit one below the count gives HTTP_TOO_MANY_HEADERS;
 *  - the helpers (header lookup, tokens, Content-Length, Transfer-Encoding, keep-alive, the
 *    WebSocket checks and accept key, Origin policy, query parameters and cookies at
 *    several output sizes, each an exact-size buffer) stay in bounds, NUL-terminate, and
 *    agree with each other across output sizes.
 *
 * http_chunked_decode (on the whole input, and on the bytes after a parsed head):
 *  - the result is consumed bytes within the input, 0, -1 or -2; the decoded body is never
 *    over the limit;
 *  - statelessness: the consumed bytes alone decode identically; every proper prefix needs
 *    more bytes (0) (finding 2 of docs/FUZZING.md, fixed: the line limits no longer depend
 *    on where the input was cut); the body size as the limit gives the same result, one
 *    byte less gives -2;
 *  - round trip: the input encoded as a chunked body (chunk sizes, hex case, leading zeros,
 *    extensions, bare LF, trailers chosen by the input) decodes to the input.
 *
 * http_response_head / http_status_text: one status line, the blank line only at the end,
 * "Connection: close" exactly when not keep-alive.
 */
#include <ctype.h>
#include <strings.h>

#include "fuzz.h"
#include "http.h"
#include "ws.h"

#define MAX_HEAD 8192
#define MAX_HEADERS 64
#define MAX_BODY (1u << 20)

static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int inside(const char *v, size_t vl, const char *b, size_t bl)
{
    return v >= b && v <= b + bl && vl <= (size_t)(b + bl - v);
}

static void check_views(const http_request_t *q, const char *b, int rc, size_t max_headers)
{
    size_t n = (size_t)rc;
    FUZZ_CHECK(b[n - 1] == '\n');
    FUZZ_CHECK(inside(q->method, q->method_len, b, n) && q->method_len > 0);
    for (size_t i = 0; i < q->method_len; i++) FUZZ_CHECK(is_tchar((unsigned char)q->method[i]));
    FUZZ_CHECK(inside(q->target, q->target_len, b, n) && q->target_len > 0);
    for (size_t i = 0; i < q->target_len; i++) {
        unsigned char c = (unsigned char)q->target[i];
        FUZZ_CHECK(c > 0x20 && c != 0x7F);
    }
    FUZZ_CHECK(q->path == q->target && q->path_len <= q->target_len);
    FUZZ_CHECK(memchr(q->path, '?', q->path_len) == NULL);
    if (q->query) {
        FUZZ_CHECK(q->query == q->path + q->path_len + 1 && q->query[-1] == '?');
        FUZZ_CHECK(q->path_len + 1 + q->query_len == q->target_len);
    } else {
        FUZZ_CHECK(q->path_len == q->target_len && q->query_len == 0);
    }
    FUZZ_CHECK(q->minor_version == 0 || q->minor_version == 1);
    FUZZ_CHECK(q->num_headers <= max_headers && q->num_headers <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < q->num_headers; i++) {
        const http_header_t *h = &q->headers[i];
        FUZZ_CHECK(inside(h->name, h->name_len, b, n) && h->name_len > 0);
        for (size_t j = 0; j < h->name_len; j++) FUZZ_CHECK(is_tchar((unsigned char)h->name[j]));
        FUZZ_CHECK(inside(h->value, h->value_len, b, n));
        for (size_t j = 0; j < h->value_len; j++) {
            unsigned char c = (unsigned char)h->value[j];
            FUZZ_CHECK((c >= 0x20 || c == '\t') && c != 0x7F);
        }
        if (h->value_len) {
            FUZZ_CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            FUZZ_CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
    }
}

/* The same parse, relative to two different buffers. */
static void same_request(const http_request_t *a, const char *ab, const http_request_t *b,
                         const char *bb)
{
#define SAME_VIEW(f, l) FUZZ_CHECK(a->l == b->l && (a->f == NULL) == (b->f == NULL) && \
                                   (a->f == NULL || a->f - ab == b->f - bb))
    SAME_VIEW(method, method_len);
    SAME_VIEW(target, target_len);
    SAME_VIEW(path, path_len);
    SAME_VIEW(query, query_len);
    FUZZ_CHECK(a->minor_version == b->minor_version && a->num_headers == b->num_headers);
    for (size_t i = 0; i < a->num_headers; i++) {
        SAME_VIEW(headers[i].name, headers[i].name_len);
        SAME_VIEW(headers[i].value, headers[i].value_len);
    }
#undef SAME_VIEW
}

static int parse_copy(const char *b, size_t n, http_request_t *q, size_t max_head, size_t max_h,
                      char **copy)
{
    *copy = (char *)fuzz_dup((const uint8_t *)b, n);
    return http_parse_request(*copy, n, q, max_head, max_h);
}

/* A decoded parameter/cookie at several output sizes: in bounds, terminated, consistent. */
typedef int (*getter_fn)(const char *v, size_t vl, const char *name, char *out, size_t outsz);

static void check_getter(getter_fn get, const char *v, size_t vl, const char *name)
{
    static const size_t sizes[] = {1, 2, 8, 64, 4096};
    int prev = 0;
    char *prev_out = NULL;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *out = malloc(sizes[i]);
        if (!out) abort();
        int r = get(v, vl, name, out, sizes[i]);
        FUZZ_CHECK(r == -1 || r == -2 || (r >= 0 && (size_t)r < sizes[i] && (size_t)r <= vl));
        if (r >= 0) FUZZ_CHECK(out[r] == '\0');
        if (i > 0) {
            FUZZ_CHECK((r == -1) == (prev == -1)); /* absence does not depend on the size */
            if (prev >= 0) FUZZ_CHECK(r == prev && memcmp(out, prev_out, (size_t)r) == 0);
        }
        free(prev_out);
        prev_out = out;
        prev = r;
    }
    free(prev_out);
}

static void check_helpers(const http_request_t *q)
{
    static const char *const names[] = {"Host", "Upgrade", "Connection", "Origin", "Cookie",
                                        "Content-Length", "Transfer-Encoding",
                                        "Sec-WebSocket-Key", "Sec-WebSocket-Version"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const http_header_t *h = http_header_find(q, names[i]);
        if (h) {
            FUZZ_CHECK(h >= q->headers && h < q->headers + q->num_headers);
            FUZZ_CHECK(h->name_len == strlen(names[i]) &&
                       strncasecmp(h->name, names[i], h->name_len) == 0);
            FUZZ_CHECK(http_has_token(h->value, h->value_len, "") == 0 ||
                       http_has_token(h->value, h->value_len, "") == 1);
        }
    }
    (void)http_method_is(q, "GET");
    (void)http_path_is(q, "/ws");
    uint64_t cl = 1;
    int c = http_content_length(q, &cl);
    FUZZ_CHECK(c >= -1 && c <= 1);
    if (c == 0) FUZZ_CHECK(cl == 0);
    if (c == 1) FUZZ_CHECK(cl < 1000000000000000ull);
    int te = http_transfer_encoding(q);
    FUZZ_CHECK(te >= -2 && te <= 1);
    if (te != 0) FUZZ_CHECK(c == -1); /* never both: request smuggling */
    int ka = http_keep_alive(q);
    FUZZ_CHECK(ka == 0 || ka == 1);
    int ww = http_wants_websocket(q);
    FUZZ_CHECK(ww == 0 || ww == 1);

    const char *key = NULL;
    size_t key_len = 0;
    int ws = http_ws_check(q, &key, &key_len);
    FUZZ_CHECK(ws == 0 || ws == 400 || ws == 426);
    if (ws == 0) {
        FUZZ_CHECK(ww == 1 && key && key_len == 24);
        char accept[29];
        if (ws_accept_key(key, key_len, accept) == 0) FUZZ_CHECK(strlen(accept) == 28);
    }

    const http_header_t *o = http_header_find(q, "Origin");
    const http_header_t *h = http_header_find(q, "Host");
    static const char *const allowed[] = {NULL, "", "*", "https://chat.example.com",
                                          " http://localhost:3000 , https://a.example ,"};
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        int a = http_origin_allowed(o ? o->value : NULL, o ? o->value_len : 0,
                                    h ? h->value : NULL, h ? h->value_len : 0, allowed[i]);
        FUZZ_CHECK(a == 0 || a == 1);
        if (!o || (allowed[i] && strcmp(allowed[i], "*") == 0)) FUZZ_CHECK(a == 1);
    }

    static const char *const params[] = {"EIO", "transport", "sid", "token", "before", "limit",
                                         "x", ""};
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
        if (q->query) check_getter(http_query_param, q->query, q->query_len, params[i]);
        else FUZZ_CHECK(http_query_param(NULL, 0, params[i], NULL, 0) == -1);
    }
    const http_header_t *ck = http_header_find(q, "Cookie");
    static const char *const cookies[] = {"token", "sid", "io", "a", ""};
    for (size_t i = 0; ck && i < sizeof cookies / sizeof *cookies; i++)
        check_getter(http_cookie_get, ck->value, ck->value_len, cookies[i]);
}

/* Returns the head length or an error code. */
static int check_head(const char *b, size_t n, size_t max_head, size_t max_h, size_t pick)
{
    http_request_t *q = malloc(sizeof *q);
    if (!q) abort();
    int rc = http_parse_request(b, n, q, max_head, max_h);
    FUZZ_CHECK(rc > 0 || rc == HTTP_BAD || rc == HTTP_INCOMPLETE || rc == HTTP_HEAD_TOO_LARGE ||
               rc == HTTP_TOO_MANY_HEADERS);
    if (rc == HTTP_INCOMPLETE) FUZZ_CHECK(n <= max_head);
    if (rc <= 0) {
        free(q);
        return rc;
    }
    FUZZ_CHECK((size_t)rc <= n && (size_t)rc <= max_head);
    check_views(q, b, rc, max_h);
    check_helpers(q);

    http_request_t *q2 = malloc(sizeof *q2);
    if (!q2) abort();
    char *copy;
    /* The head alone. */
    FUZZ_CHECK(parse_copy(b, (size_t)rc, q2, max_head, max_h, &copy) == rc);
    same_request(q, b, q2, copy);
    free(copy);
    /* Proper prefixes: one byte short, and one chosen by the input. */
    size_t cuts[2] = {(size_t)rc - 1, pick % (size_t)rc};
    for (int i = 0; i < 2; i++) {
        FUZZ_CHECK(parse_copy(b, cuts[i], q2, max_head, max_h, &copy) == HTTP_INCOMPLETE);
        free(copy);
    }
    /* Limits just below what this head needs. */
    FUZZ_CHECK(http_parse_request(b, n, q2, (size_t)rc, max_h) == rc);
    FUZZ_CHECK(http_parse_request(b, n, q2, (size_t)rc - 1, max_h) == HTTP_HEAD_TOO_LARGE);
    if (q->num_headers > 0) {
        FUZZ_CHECK(http_parse_request(b, n, q2, max_head, q->num_headers) == rc);
        FUZZ_CHECK(http_parse_request(b, n, q2, max_head, q->num_headers - 1) ==
                   HTTP_TOO_MANY_HEADERS);
    }
    free(q2);
    free(q);
    return rc;
}

static long check_chunked(const char *b, size_t n, size_t max, size_t pick)
{
    buf_t out = BUF_INIT;
    long r = http_chunked_decode(b, n, &out, max);
    FUZZ_CHECK(r >= -2 && r <= (long)n);
    FUZZ_CHECK(out.len <= max);
    if (r <= 0) {
        buf_free(&out);
        return r;
    }
    FUZZ_CHECK(out.len <= (size_t)r);

    buf_t again = BUF_INIT;
    char *copy = (char *)fuzz_dup((const uint8_t *)b, (size_t)r);
    FUZZ_CHECK(http_chunked_decode(copy, (size_t)r, &again, max) == r);
    FUZZ_CHECK(again.len == out.len && (out.len == 0 || memcmp(again.data, out.data, out.len) == 0));
    free(copy);
    size_t cuts[3] = {(size_t)r - 1, pick % (size_t)r, (size_t)r / 2};
    for (int i = 0; i < 3; i++) {
        copy = (char *)fuzz_dup((const uint8_t *)b, cuts[i]);
        long p = http_chunked_decode(copy, cuts[i], &again, max);
        FUZZ_CHECK(p == 0);
        free(copy);
    }
    FUZZ_CHECK(http_chunked_decode(b, n, &again, out.len) == r);
    if (out.len) FUZZ_CHECK(http_chunked_decode(b, n, &again, out.len - 1) == -2);
    buf_free(&again);
    buf_free(&out);
    return r;
}

/* Encode the input as a chunked body, steered by the input; it must decode back. */
static void chunk_line(buf_t *enc, fuzz_in_t *in, uint8_t flags, size_t size, const char *eol)
{
    uint8_t zeros = fuzz_u8(in) % 4; /* leading zeros, within the 15-digit limit */
    for (uint8_t z = 0; z < zeros; z++) buf_append_char(enc, '0');
    buf_printf(enc, flags & 4 ? "%zX" : "%zx", size);
    uint8_t ext = fuzz_u8(in);
    if (ext & 1) buf_append_str(enc, ext & 2 ? " \t" : " ");
    if (ext & 4) buf_printf(enc, ";ext%u=\"v;%u\"", ext, ext >> 3);
    buf_append_str(enc, eol);
}

static void check_chunked_round_trip(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    const char *eol = flags & 1 ? "\n" : "\r\n";
    buf_t enc = BUF_INIT;
    size_t pos = 0;
    while (pos < size) {
        size_t piece = fuzz_u8(&in);
        if (flags & 2) piece *= 16;
        if (piece == 0 || piece > size - pos) piece = size - pos;
        chunk_line(&enc, &in, flags, piece, eol);
        buf_append(&enc, data + pos, piece);
        buf_append_str(&enc, eol);
        pos += piece;
    }
    chunk_line(&enc, &in, flags, 0, eol);
    if (flags & 8) buf_printf(&enc, "X-Trailer: %u%sX-Other:%s", flags, eol, eol);
    buf_append_str(&enc, flags & 16 ? "\n" : "\r\n");

    buf_t out = BUF_INIT;
    char *copy = (char *)fuzz_dup((const uint8_t *)enc.data, enc.len);
    FUZZ_CHECK(http_chunked_decode(copy, enc.len, &out, MAX_BODY) == (long)enc.len);
    FUZZ_CHECK(out.len == size && (size == 0 || memcmp(out.data, data, size) == 0));
    if (size) FUZZ_CHECK(http_chunked_decode(copy, enc.len, &out, size - 1) == -2);
    free(copy);
    /* Every proper prefix needs more (lines here are short), and what follows the body is
     * not consumed. */
    size_t cuts[3] = {enc.len - 1, enc.len / 2, flags % enc.len};
    for (int i = 0; i < 3; i++) {
        copy = (char *)fuzz_dup((const uint8_t *)enc.data, cuts[i]);
        FUZZ_CHECK(http_chunked_decode(copy, cuts[i], &out, MAX_BODY) == 0);
        free(copy);
    }
    size_t total = enc.len;
    buf_append_str(&enc, "GET / HTTP/1.1\r\n");
    FUZZ_CHECK(http_chunked_decode(enc.data, enc.len, &out, MAX_BODY) == (long)total);
    buf_free(&out);
    buf_free(&enc);
}

/* Response heads (server-made, but from request-derived values): well-formed lines. */
static void check_response_head(const uint8_t *data, size_t size)
{
    static const int statuses[] = {101, 200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 408,
                                   409, 413, 415, 426, 429, 431, 500, 501, 503, 599, 0};
    fuzz_in_t in = {data, size};
    uint8_t sel = fuzz_u8(&in);
    int status = statuses[sel % (sizeof statuses / sizeof *statuses)];
    const char *text = http_status_text(status);
    FUZZ_CHECK(text != NULL && !strpbrk(text, "\r\n"));
    buf_t out = BUF_INIT;
    size_t len = fuzz_u32(&in);
    FUZZ_CHECK(http_response_head(&out, status, sel & 1 ? "text/plain" : NULL, len,
                                  sel & 2 ? "X-A: 1\r\n" : NULL, sel & 4) == 0);
    const char *h = buf_cstr(&out);
    FUZZ_CHECK(strncmp(h, "HTTP/1.1 ", 9) == 0 && out.len >= 4);
    FUZZ_CHECK(memcmp(h + out.len - 4, "\r\n\r\n", 4) == 0);
    FUZZ_CHECK(strstr(h, "\r\n\r\n") == h + out.len - 4);
    FUZZ_CHECK(((sel & 4) == 0) == (strstr(h, "Connection: close\r\n") != NULL));
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = (char *)fuzz_dup(data, size);
    size_t pick = size ? data[size - 1] * 31u + data[0] : 0;

    int rc = check_head(b, size, MAX_HEAD, MAX_HEADERS, pick);
    int rc2 = check_head(b, size, size / 2, 4, pick);
    if (rc2 > 0) FUZZ_CHECK(rc2 == rc);

    check_chunked(b, size, MAX_BODY, pick);
    check_chunked(b, size, 64, pick);
    if (rc > 0) check_chunked(b + rc, size - (size_t)rc, MAX_BODY, pick);
    check_chunked_round_trip(data, size);

    check_response_head(data, size);
    free(b);
    return 0;
}
