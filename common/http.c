#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c)
{
    if (isalnum(c)) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Find the end of the line starting at p; returns pointer to '\n' or NULL. */
static const char *line_end(const char *p, const char *end)
{
    return memchr(p, '\n', (size_t)(end - p));
}

int http_parse_request(const char *buf, size_t len, http_request_t *req, size_t max_head_bytes,
                       size_t max_headers)
{
    const char *p = buf, *end = buf + len;
    if (max_headers > HTTP_MAX_HEADERS) max_headers = HTTP_MAX_HEADERS;
    memset(req, 0, offsetof(http_request_t, headers));

    /* Tolerate empty lines before the request line (RFC 7230 3.5). */
    while (p < end && (*p == '\r' || *p == '\n')) p++;
    if (p == end) return len > max_head_bytes ? HTTP_HEAD_TOO_LARGE : HTTP_INCOMPLETE;

    /* Is the head complete? Look for the blank line first so limits apply early. */
    const char *scan = p, *head_end = NULL;
    for (;;) {
        const char *nl = line_end(scan, end);
        if (!nl) break;
        const char *next = nl + 1;
        if (next < end && *next == '\n') {
            head_end = next + 1;
            break;
        }
        if (next + 1 < end && next[0] == '\r' && next[1] == '\n') {
            head_end = next + 2;
            break;
        }
        if (next >= end || (next + 1 >= end && *next == '\r')) break;
        scan = next;
    }
    if (!head_end) return len > max_head_bytes ? HTTP_HEAD_TOO_LARGE : HTTP_INCOMPLETE;
    if ((size_t)(head_end - buf) > max_head_bytes) return HTTP_HEAD_TOO_LARGE;

    /* Request line: method SP target SP HTTP/1.x */
    const char *nl = line_end(p, head_end);
    const char *le = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
    const char *q = p;
    while (q < le && is_tchar((unsigned char)*q)) q++;
    if (q == p || q >= le || *q != ' ') return HTTP_BAD;
    req->method = p;
    req->method_len = (size_t)(q - p);
    p = q + 1;
    q = p;
    while (q < le && *q != ' ') {
        unsigned char c = (unsigned char)*q;
        if (c <= 0x20 || c == 0x7F) return HTTP_BAD;
        q++;
    }
    if (q == p || q >= le) return HTTP_BAD;
    req->target = p;
    req->target_len = (size_t)(q - p);
    const char *qm = memchr(p, '?', req->target_len);
    req->path = p;
    req->path_len = qm ? (size_t)(qm - p) : req->target_len;
    if (qm) {
        req->query = qm + 1;
        req->query_len = (size_t)(q - qm - 1);
    }
    p = q + 1;
    if (le - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
        return HTTP_BAD;
    req->minor_version = p[7] - '0';
    p = nl + 1;

    /* Header fields. */
    size_t n = 0;
    while (p < head_end) {
        nl = line_end(p, head_end);
        le = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
        if (le == p) break; /* blank line */
        if (*p == ' ' || *p == '\t') return HTTP_BAD; /* obsolete line folding */
        if (n >= max_headers) return HTTP_TOO_MANY_HEADERS;
        q = p;
        while (q < le && is_tchar((unsigned char)*q)) q++;
        if (q == p || q >= le || *q != ':') return HTTP_BAD;
        http_header_t *h = &req->headers[n++];
        h->name = p;
        h->name_len = (size_t)(q - p);
        q++;
        while (q < le && (*q == ' ' || *q == '\t')) q++;
        const char *ve = le;
        while (ve > q && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *c = q; c < ve; c++) {
            unsigned char ch = (unsigned char)*c;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7F) return HTTP_BAD;
        }
        h->value = q;
        h->value_len = (size_t)(ve - q);
        p = nl + 1;
    }
    req->num_headers = n;
    return (int)(head_end - buf);
}

const http_header_t *http_header_find(const http_request_t *req, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0) return h;
    }
    return NULL;
}

int http_has_token(const char *v, size_t vlen, const char *token)
{
    size_t tl = strlen(token);
    const char *p = v, *end = v + vlen;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        const char *s = p;
        while (p < end && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0) return 1;
    }
    return 0;
}

int http_method_is(const http_request_t *req, const char *m)
{
    size_t l = strlen(m);
    return req->method_len == l && memcmp(req->method, m, l) == 0;
}

int http_path_is(const http_request_t *req, const char *p)
{
    size_t l = strlen(p);
    return req->path_len == l && memcmp(req->path, p, l) == 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out; returns length or -2. */
static int pct_decode(const char *s, size_t n, int plus_space, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) return -2;
            int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) return -2;
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (o + 1 >= outsz) return -2;
        out[o++] = c;
    }
    out[o] = '\0';
    return (int)o;
}

int http_query_param(const char *q, size_t qlen, const char *name, char *out, size_t outsz)
{
    if (!q) return -1;
    if (outsz == 0) return -2; /* no room even for the terminator */
    size_t nl = strlen(name);
    const char *p = q, *end = q + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - p) == nl && memcmp(p, name, nl) == 0) {
            if (!eq) {
                out[0] = '\0';
                return 0;
            }
            return pct_decode(eq + 1, (size_t)(pe - eq - 1), 1, out, outsz);
        }
        p = pe + 1;
    }
    return -1;
}

int http_cookie_get(const char *v, size_t vlen, const char *name, char *out, size_t outsz)
{
    if (outsz == 0) return -2;
    size_t nl = strlen(name);
    const char *p = v, *end = v + vlen;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ';')) p++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (eq && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
            const char *vs = eq + 1, *ve = pe;
            while (ve > vs && ve[-1] == ' ') ve--;
            if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
                vs++;
                ve--;
            }
            return pct_decode(vs, (size_t)(ve - vs), 0, out, outsz);
        }
        p = pe;
    }
    return -1;
}

int http_transfer_encoding(const http_request_t *req)
{
    const http_header_t *te = http_header_find(req, "Transfer-Encoding");
    if (!te) return 0;
    if (http_header_find(req, "Content-Length")) return -2;
    return te->value_len == 7 && strncasecmp(te->value, "chunked", 7) == 0 ? 1 : -1;
}

long http_chunked_decode(const char *buf, size_t len, buf_t *out, size_t max)
{
    size_t p = 0;
    buf_reset(out);
    for (;;) {
        /* chunk-size [; ext] CRLF */
        const char *nl = memchr(buf + p, '\n', len - p);
        if (!nl) return len - p > 1024 ? -1 : 0;
        size_t line_end = (size_t)(nl - buf);
        /* The same bound whether the line arrived whole or in pieces. */
        if (line_end - p > 1024) return -1;
        uint64_t size = 0;
        size_t q = p, digits = 0;
        while (q < line_end && isxdigit((unsigned char)buf[q])) {
            if (++digits > 15) return -1;
            int c = buf[q++];
            size = size * 16 + (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        if (digits == 0) return -1;
        while (q < line_end && (buf[q] == ' ' || buf[q] == '\t')) q++;
        if (q < line_end && buf[q] != ';' && !(buf[q] == '\r' && q + 1 == line_end)) return -1;
        p = line_end + 1;
        if (size == 0) {
            /* Trailer fields, then an empty line. */
            for (;;) {
                const char *tl = memchr(buf + p, '\n', len - p);
                if (!tl) return len - p > 8192 ? -1 : 0;
                size_t tle = (size_t)(tl - buf);
                if (tle - p > 8192) return -1;
                int empty = tle == p || (tle == p + 1 && buf[p] == '\r');
                p = tle + 1;
                if (empty) return (long)p;
            }
        }
        if (out->len + size > max) return -2;
        if (len - p < size) return 0;
        buf_append(out, buf + p, (size_t)size);
        p += (size_t)size;
        if (len - p < 1) return 0;
        if (buf[p] == '\r') {
            if (len - p < 2) return 0;
            if (buf[p + 1] != '\n') return -1;
            p += 2;
        } else if (buf[p] == '\n') {
            p += 1;
        } else {
            return -1;
        }
    }
}

int http_content_length(const http_request_t *req, uint64_t *out)
{
    *out = 0;
    if (http_header_find(req, "Transfer-Encoding")) return -1;
    int found = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        if (h->name_len != 14 || strncasecmp(h->name, "Content-Length", 14) != 0) continue;
        if (h->value_len == 0 || h->value_len > 15) return -1;
        uint64_t v = 0;
        for (size_t j = 0; j < h->value_len; j++) {
            if (!isdigit((unsigned char)h->value[j])) return -1;
            v = v * 10 + (uint64_t)(h->value[j] - '0');
        }
        if (found && v != *out) return -1; /* conflicting duplicates: request smuggling */
        *out = v;
        found = 1;
    }
    return found;
}

int http_keep_alive(const http_request_t *req)
{
    const http_header_t *c = http_header_find(req, "Connection");
    if (req->minor_version == 0) return c && http_has_token(c->value, c->value_len, "keep-alive");
    return !(c && http_has_token(c->value, c->value_len, "close"));
}

int http_wants_websocket(const http_request_t *req)
{
    const http_header_t *u = http_header_find(req, "Upgrade");
    return u && http_has_token(u->value, u->value_len, "websocket");
}

int http_ws_check(const http_request_t *req, const char **key, size_t *key_len)
{
    if (!http_method_is(req, "GET") || req->minor_version < 1) return 400;
    const http_header_t *u = http_header_find(req, "Upgrade");
    const http_header_t *c = http_header_find(req, "Connection");
    if (!u || !http_has_token(u->value, u->value_len, "websocket")) return 400;
    if (!c || !http_has_token(c->value, c->value_len, "upgrade")) return 400;
    const http_header_t *v = http_header_find(req, "Sec-WebSocket-Version");
    if (!v || v->value_len != 2 || memcmp(v->value, "13", 2) != 0) return 426;
    const http_header_t *k = http_header_find(req, "Sec-WebSocket-Key");
    if (!k || k->value_len != 24) return 400;
    *key = k->value;
    *key_len = k->value_len;
    return 0;
}

/* Split "scheme://host[:port]" and return the host[:port] view. */
static int origin_hostport(const char *o, size_t ol, const char **hp, size_t *hpl)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < ol; i++)
        if (o[i] == ':' && o[i + 1] == '/' && o[i + 2] == '/') {
            sep = o + i + 3;
            break;
        }
    if (!sep) return -1;
    *hp = sep;
    *hpl = (size_t)(o + ol - sep);
    while (*hpl > 0 && sep[*hpl - 1] == '/') (*hpl)--;
    return 0;
}

static int is_local_host(const char *hp, size_t l)
{
    size_t hl = l;
    if (l > 0 && hp[0] == '[') {
        const char *rb = memchr(hp, ']', l);
        if (!rb) return 0;
        return (size_t)(rb - hp + 1) == 5 && memcmp(hp, "[::1]", 5) == 0;
    }
    const char *colon = memchr(hp, ':', l);
    if (colon) hl = (size_t)(colon - hp);
    return (hl == 9 && strncasecmp(hp, "localhost", 9) == 0) ||
           (hl == 9 && memcmp(hp, "127.0.0.1", 9) == 0);
}

int http_origin_allowed(const char *origin, size_t olen, const char *host, size_t hlen,
                        const char *allowed)
{
    if (!origin) return 1;
    if (allowed && *allowed) {
        const char *p = allowed;
        while (*p) {
            while (*p == ' ' || *p == ',') p++;
            const char *s = p;
            while (*p && *p != ',') p++;
            const char *e = p;
            while (e > s && e[-1] == ' ') e--;
            if (e - s == 1 && *s == '*') return 1;
            if ((size_t)(e - s) == olen && strncasecmp(s, origin, olen) == 0) return 1;
        }
        return 0;
    }
    const char *hp;
    size_t hpl;
    if (origin_hostport(origin, olen, &hp, &hpl) < 0) return 0;
    if (host && hpl == hlen && strncasecmp(hp, host, hlen) == 0) return 1;
    return is_local_host(hp, hpl);
}

const char *http_status_text(int s)
{
    switch (s) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

int http_response_head(buf_t *out, int status, const char *content_type, size_t content_length,
                       const char *extra, int keep_alive)
{
    int r = buf_printf(out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    if (content_type)
        r |= buf_printf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n", content_type,
                        content_length);
    if (!keep_alive) r |= buf_append_str(out, "Connection: close\r\n");
    if (extra) r |= buf_append_str(out, extra);
    r |= buf_append(out, "\r\n", 2);
    return r ? -1 : 0;
}
