/* Unit tests for common/http.c. Inputs are placed right before an unreadable page so that
 * any over-read crashes (the picohttpparser habit). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http.h"

static char *guarded(const char *s, size_t n, void **map, size_t *maplen)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (n + pg - 1) / pg + 1;
    *maplen = (pages + 1) * pg;
    char *m = mmap(NULL, *maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    mprotect(m + pages * pg, pg, PROT_NONE);
    char *p = m + pages * pg - n;
    memcpy(p, s, n);
    *map = m;
    return p;
}

static int parse(const char *s, http_request_t *req)
{
    void *map;
    size_t ml;
    size_t n = strlen(s);
    char *p = guarded(s, n, &map, &ml);
    int r = http_parse_request(p, n, req, 8192, 64);
    /* Views must point into the buffer; keep the mapping (tests are short-lived). */
    (void)ml;
    return r;
}

static const char *UPGRADE = "GET /ws?token=abc%2Bdef&x=1 HTTP/1.1\r\n"
                             "Host: localhost:3000\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: keep-alive, Upgrade\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "Origin: http://localhost:3000\r\n"
                             "\r\n";

Test(http, parses_upgrade_request)
{
    http_request_t req;
    int n = parse(UPGRADE, &req);
    cr_assert_eq(n, (int)strlen(UPGRADE));
    cr_assert(http_method_is(&req, "GET"));
    cr_assert(http_path_is(&req, "/ws"));
    cr_assert_eq(req.minor_version, 1);
    cr_assert_eq(req.num_headers, 6);
    const char *key;
    size_t kl;
    cr_assert_eq(http_ws_check(&req, &key, &kl), 0);
    cr_assert_eq(kl, 24);
    char tok[64];
    cr_assert_eq(http_query_param(req.query, req.query_len, "token", tok, sizeof tok), 7);
    cr_assert_str_eq(tok, "abc+def");
    cr_assert_eq(http_query_param(req.query, req.query_len, "nope", tok, sizeof tok), -1);
    cr_assert_eq(http_query_param(req.query, req.query_len, "token", tok, 4), -2);
}

Test(http, every_prefix_is_incomplete)
{
    size_t n = strlen(UPGRADE);
    for (size_t i = 0; i < n; i++) {
        http_request_t req;
        void *map;
        size_t ml;
        char *p = guarded(UPGRADE, i, &map, &ml);
        cr_assert_eq(http_parse_request(p, i, &req, 8192, 64), HTTP_INCOMPLETE, "prefix %zu", i);
        munmap(map, ml);
    }
}

Test(http, bare_lf_and_leading_blank_lines)
{
    http_request_t req;
    const char *s = "\r\nGET / HTTP/1.0\nHost: x\n\n";
    cr_assert_eq(parse(s, &req), (int)strlen(s));
    cr_assert_eq(req.minor_version, 0);
    cr_assert_eq(http_keep_alive(&req), 0);
}

Test(http, malformed_requests_are_bad)
{
    const char *bad[] = {
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET /\r\n\r\n",
        "G@T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        "GET /a\x7f HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        http_request_t req;
        cr_assert_eq(parse(bad[i], &req), HTTP_BAD, "case %zu", i);
    }
}

Test(http, limits_give_431)
{
    http_request_t req;
    buf_t b = BUF_INIT;
    buf_append_str(&b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 65; i++) buf_printf(&b, "X-H%d: v\r\n", i);
    buf_append_str(&b, "\r\n");
    cr_assert_eq(http_parse_request(b.data, b.len, &req, 1 << 20, 64), HTTP_TOO_MANY_HEADERS);
    cr_assert_eq(http_parse_request(b.data, b.len, &req, 100, 64), HTTP_HEAD_TOO_LARGE);
    /* Incomplete but already over the limit: no need to wait for the rest. */
    cr_assert_eq(http_parse_request(b.data, 200, &req, 100, 64), HTTP_HEAD_TOO_LARGE);
    buf_free(&b);
}

Test(http, ws_check_status_codes)
{
    http_request_t req;
    const char *v12 = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    const char *nokey = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n";
    const char *post = "POST /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const char *noconn = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const char *key;
    size_t kl;
    parse(v12, &req);
    cr_assert_eq(http_ws_check(&req, &key, &kl), 426);
    parse(nokey, &req);
    cr_assert_eq(http_ws_check(&req, &key, &kl), 400);
    parse(post, &req);
    cr_assert_eq(http_ws_check(&req, &key, &kl), 400);
    parse(noconn, &req);
    cr_assert_eq(http_ws_check(&req, &key, &kl), 400);
    cr_assert(http_wants_websocket(&req));
}

Test(http, tokens_cookies_content_length)
{
    cr_assert(http_has_token("keep-alive, Upgrade", 19, "upgrade"));
    cr_assert_not(http_has_token("keep-alive, Upgrades", 20, "upgrade"));
    char out[64];
    const char *c = "a=1; Authentication=Bearer%20tok.en; b=2";
    cr_assert_eq(http_cookie_get(c, strlen(c), "Authentication", out, sizeof out), 13);
    cr_assert_str_eq(out, "Bearer tok.en");
    cr_assert_eq(http_cookie_get(c, strlen(c), "missing", out, sizeof out), -1);

    http_request_t req;
    uint64_t cl;
    parse("POST /x HTTP/1.1\r\nContent-Length: 12\r\n\r\n", &req);
    cr_assert_eq(http_content_length(&req, &cl), 1);
    cr_assert_eq(cl, 12);
    parse("POST /x HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n", &req);
    cr_assert_eq(http_content_length(&req, &cl), -1);
    parse("POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &req);
    cr_assert_eq(http_content_length(&req, &cl), -1);
    parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &req);
    cr_assert_eq(http_content_length(&req, &cl), -1);
    parse("GET /x HTTP/1.1\r\n\r\n", &req);
    cr_assert_eq(http_content_length(&req, &cl), 0);
    cr_assert(http_keep_alive(&req));
}

Test(http, origin_policy)
{
    const char *host = "chat.example.com";
    size_t hl = strlen(host);
    /* Default: same host, or localhost. */
    cr_assert(http_origin_allowed(NULL, 0, host, hl, ""));
    cr_assert(http_origin_allowed("https://chat.example.com", 24, host, hl, ""));
    cr_assert(http_origin_allowed("http://localhost:5173", 21, host, hl, ""));
    cr_assert(http_origin_allowed("http://127.0.0.1:8080", 21, host, hl, ""));
    cr_assert(http_origin_allowed("http://[::1]:8080", 17, host, hl, ""));
    cr_assert_not(http_origin_allowed("https://evil.example", 20, host, hl, ""));
    cr_assert_not(http_origin_allowed("https://localhost.evil.com", 26, host, hl, ""));
    cr_assert_not(http_origin_allowed("null", 4, host, hl, ""));
    /* Explicit list. */
    const char *list = "https://a.example, https://b.example";
    cr_assert(http_origin_allowed("https://b.example", 17, host, hl, list));
    cr_assert_not(http_origin_allowed("https://chat.example.com", 24, host, hl, list));
    cr_assert(http_origin_allowed("https://evil.example", 20, host, hl, "*"));
}

Test(http, response_head)
{
    buf_t b = BUF_INIT;
    http_response_head(&b, 404, "application/json", 2, "X-A: b\r\n", 0);
    cr_assert_str_eq(buf_cstr(&b), "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 2\r\nConnection: close\r\nX-A: b\r\n\r\n");
    buf_free(&b);
}

Test(http, chunked_bodies)
{
    buf_t out = BUF_INIT;
    const char *ok = "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
    long n = http_chunked_decode(ok, strlen(ok), &out, 1000);
    cr_assert_eq(n, (long)strlen(ok) - 4);
    cr_assert_eq(out.len, 23);
    cr_assert_eq(memcmp(out.data, "Wikipedia in\r\n\r\nchunks.", 23), 0);
    /* Every strict prefix needs more. */
    for (size_t i = 0; i < strlen(ok) - 4; i++)
        cr_assert_eq(http_chunked_decode(ok, i, &out, 1000), 0, "prefix %zu", i);
    cr_assert_eq(http_chunked_decode(ok, strlen(ok), &out, 10), -2);
    const char *bad[] = {"z\r\n", "4\r\nWikiXX0\r\n\r\n", "\r\n", "10000000000000000\r\n"};
    for (size_t i = 0; i < 4; i++) cr_assert_eq(http_chunked_decode(bad[i], strlen(bad[i]), &out, 1000), -1, "case %zu", i);
    http_request_t req;
    const char *r1 = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    http_parse_request(r1, strlen(r1), &req, 8192, 64);
    cr_assert_eq(http_transfer_encoding(&req), 1);
    const char *r2 = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    http_parse_request(r2, strlen(r2), &req, 8192, 64);
    cr_assert_eq(http_transfer_encoding(&req), -1);
    const char *r3 = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
    http_parse_request(r3, strlen(r3), &req, 8192, 64);
    cr_assert_eq(http_transfer_encoding(&req), -2);
    buf_free(&out);
}

Test(http, chunk_line_limits_do_not_depend_on_arrival)
{
    /* A 2000-byte chunk extension: refused whether or not its line end has arrived. */
    char line[2100];
    memset(line, 'a', sizeof line);
    memcpy(line, "5;x=", 4);
    memcpy(line + 2000, "\r\nhello\r\n0\r\n\r\n", 14);
    buf_t out = BUF_INIT;
    cr_assert_eq(http_chunked_decode(line, 1500, &out, 1000), -1);
    cr_assert_eq(http_chunked_decode(line, 2014, &out, 1000), -1);
    /* So is a 9000-byte trailer line. */
    size_t tn = 3 + 9000 + 4;
    char *t = malloc(tn);
    memcpy(t, "0\r\n", 3);
    memset(t + 3, 'b', 9000);
    memcpy(t + 3 + 9000, "\r\n\r\n", 4);
    cr_assert_eq(http_chunked_decode(t, 8500, &out, 1000), -1);
    cr_assert_eq(http_chunked_decode(t, tn, &out, 1000), -1);
    free(t);
    buf_free(&out);
}

Test(http, zero_sized_output_buffers)
{
    char o[1] = {'x'};
    cr_assert_eq(http_query_param("a=1&b", 5, "b", o, 0), -2);
    cr_assert_eq(http_query_param("a=1&b", 5, "a", o, 0), -2);
    cr_assert_eq(http_cookie_get("sid=abc", 7, "sid", o, 0), -2);
    cr_assert_eq(o[0], 'x');
}
