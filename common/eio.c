#include "eio.h"

#include <string.h>

#include "envelope.h"

int eio_parse(const char *s, size_t n, eio_packet_t *p)
{
    memset(p, 0, sizeof *p);
    if (n == 0) return -1;
    if (s[0] == 'b') {
        p->binary = 1;
        p->type = EIO_MESSAGE;
        p->data = s + 1;
        p->len = n - 1;
        return 0;
    }
    if (s[0] < '0' || s[0] > '6') return -1;
    p->type = s[0] - '0';
    p->data = s + 1;
    p->len = n - 1;
    return 0;
}

size_t eio_next_record(const char *s, size_t n, size_t *next)
{
    const char *sep = memchr(s, EIO_RECORD_SEP, n);
    if (!sep) {
        *next = n;
        return n;
    }
    *next = (size_t)(sep - s) + 1;
    return (size_t)(sep - s);
}

int sio_parse(const char *s, size_t n, sio_packet_t *p)
{
    size_t i = 0;
    memset(p, 0, sizeof *p);
    p->ack_id = -1;
    p->nsp = "/";
    p->nsp_len = 1;
    if (n == 0 || s[0] < '0' || s[0] > '6') return -1;
    p->type = s[i++] - '0';

    if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) {
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == start || i >= n || s[i] != '-') return -1;
        i++;
    }
    if (i < n && s[i] == '/') {
        size_t start = i;
        while (i < n && s[i] != ',') i++;
        p->nsp = s + start;
        p->nsp_len = i - start;
        if (p->nsp_len > SIO_MAX_NSP) return -1;
        if (i < n) i++; /* the comma */
    }
    if (i < n && s[i] >= '0' && s[i] <= '9') {
        long long id = 0;
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (i - start >= 15) return -1;
            id = id * 10 + (s[i] - '0');
            i++;
        }
        p->ack_id = id;
    }
    p->data = s + i;
    p->data_len = n - i;

    /* Shape rules of socket.io-parser's isPayloadValid(), checked loosely here (the JSON
     * itself is parsed by the caller). */
    switch (p->type) {
    case SIO_CONNECT:
        if (p->data_len && p->data[0] != '{') return -1;
        break;
    case SIO_DISCONNECT:
        if (p->data_len) return -1;
        break;
    case SIO_EVENT:
    case SIO_ACK:
        if (!p->data_len || p->data[0] != '[') return -1;
        break;
    case SIO_CONNECT_ERROR:
        if (!p->data_len) return -1;
        break;
    default:
        break;
    }
    return 0;
}

void eio_encode_open(buf_t *b, const char *sid, int allow_upgrade, long long ping_interval,
                     long long ping_timeout, long long max_payload)
{
    buf_append_str(b, "0{\"sid\":");
    jsonw_cstr(b, sid);
    buf_printf(b,
               ",\"upgrades\":%s,\"pingInterval\":%lld,\"pingTimeout\":%lld,\"maxPayload\":%lld}",
               allow_upgrade ? "[\"websocket\"]" : "[]", ping_interval, ping_timeout,
               max_payload);
}

static void nsp_prefix(buf_t *b, const char *nsp, size_t nsp_len)
{
    if (nsp_len > 1 || (nsp_len == 1 && nsp[0] != '/')) {
        buf_append(b, nsp, nsp_len);
        buf_append_char(b, ',');
    }
}

void sio_encode_event(buf_t *b, const char *nsp, size_t nsp_len, const char *event,
                      const char *data_json, size_t data_len)
{
    buf_append(b, "42", 2);
    nsp_prefix(b, nsp, nsp_len);
    buf_append_char(b, '[');
    jsonw_cstr(b, event);
    if (data_json) {
        buf_append_char(b, ',');
        buf_append(b, data_json, data_len);
    }
    buf_append_char(b, ']');
}

void sio_encode_ack(buf_t *b, const char *nsp, size_t nsp_len, long long ack_id,
                    const char *data_json, size_t data_len)
{
    buf_append(b, "43", 2);
    nsp_prefix(b, nsp, nsp_len);
    buf_printf(b, "%lld[", ack_id);
    buf_append(b, data_json, data_len);
    buf_append_char(b, ']');
}

void sio_encode_connect(buf_t *b, const char *nsp, size_t nsp_len, const char *sid)
{
    buf_append(b, "40", 2);
    nsp_prefix(b, nsp, nsp_len);
    buf_append_str(b, "{\"sid\":");
    jsonw_cstr(b, sid);
    buf_append_char(b, '}');
}

void sio_encode_connect_error(buf_t *b, const char *nsp, size_t nsp_len, const char *message)
{
    buf_append(b, "44", 2);
    nsp_prefix(b, nsp, nsp_len);
    buf_append_str(b, "{\"message\":");
    jsonw_cstr(b, message);
    buf_append_char(b, '}');
}

void sio_encode_disconnect(buf_t *b, const char *nsp, size_t nsp_len)
{
    buf_append(b, "41", 2);
    nsp_prefix(b, nsp, nsp_len);
}
