/*
 * fuzz_eio: Engine.IO v4 / Socket.IO v5 packet parsing (eio_parse, eio_next_record,
 * sio_parse) and the encoders of eio.h.
 *
 * The input is read three ways: as one packet (a WebSocket text frame), as a long-polling
 * payload (records separated by 0x1E, each an Engine.IO packet, each message a Socket.IO
 * packet), and as the fields of packets to encode. Properties:
 *  - eio_parse accepts exactly a non-empty packet starting with '0'..'6' or 'b', and its
 *    data is the rest of the packet;
 *  - eio_next_record splits the payload into records that contain no separator, cover the
 *    payload exactly (record, separator, record, ...) and always make progress;
 *  - sio_parse: on success the type is 0..6, the namespace is "/" or a view of at most 64
 *    bytes of the input starting with '/' and without ',', the ack id is -1 or below 10^15,
 *    the data is the tail of the input, and socket.io-parser's shape rules hold (CONNECT
 *    data empty or an object, DISCONNECT without data, EVENT/ACK an array, CONNECT_ERROR
 *    with data); binary types need an attachment count;
 *  - a parsed EVENT/ACK/CONNECT/DISCONNECT/CONNECT_ERROR packet re-encodes (with the
 *    encoders, where they express it) and parses back to the same fields;
 *  - round trips from fields chosen by the input: sio_encode_event/ack/connect/
 *    connect_error/disconnect and eio_encode_open produce an Engine.IO message that parses
 *    back to the namespace, ack id, event name, JSON data, sid and message given.
 */
#include <cjson/cJSON.h>

#include "eio.h"
#include "fuzz.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void check_eio(const char *s, size_t n, eio_packet_t *p, int rc)
{
    int ok = n > 0 && (s[0] == 'b' || (s[0] >= '0' && s[0] <= '6'));
    FUZZ_CHECK((rc == 0) == ok);
    if (rc != 0) return;
    FUZZ_CHECK(p->data == s + 1 && p->len == n - 1);
    FUZZ_CHECK(p->binary == (s[0] == 'b'));
    FUZZ_CHECK(p->binary ? p->type == EIO_MESSAGE : p->type == s[0] - '0');
}

/* Parses a Socket.IO packet and checks its fields; returns sio_parse's result. */
static int check_sio(const char *s, size_t n, sio_packet_t *p)
{
    int rc = sio_parse(s, n, p);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) return rc;
    FUZZ_CHECK(n > 0 && p->type >= 0 && p->type <= 6 && p->type == s[0] - '0');
    FUZZ_CHECK(p->nsp_len >= 1 && p->nsp_len <= SIO_MAX_NSP && p->nsp[0] == '/');
    if (p->nsp >= s && p->nsp < s + n) { /* given in the packet */
        FUZZ_CHECK(p->nsp > s && p->nsp_len <= (size_t)(s + n - p->nsp));
        FUZZ_CHECK(memchr(p->nsp, ',', p->nsp_len) == NULL);
    } else { /* the default */
        FUZZ_CHECK(p->nsp_len == 1);
    }
    FUZZ_CHECK(p->ack_id >= -1 && p->ack_id < 1000000000000000LL);
    FUZZ_CHECK(p->data >= s && p->data + p->data_len == s + n);
    switch (p->type) {
    case SIO_CONNECT: FUZZ_CHECK(p->data_len == 0 || p->data[0] == '{'); break;
    case SIO_DISCONNECT: FUZZ_CHECK(p->data_len == 0); break;
    case SIO_EVENT:
    case SIO_ACK: FUZZ_CHECK(p->data_len > 0 && p->data[0] == '['); break;
    case SIO_CONNECT_ERROR: FUZZ_CHECK(p->data_len > 0); break;
    default: FUZZ_CHECK(n >= 3 && is_digit(s[1]) && memchr(s, '-', n)); break;
    }
    return 0;
}

static void expect_sio(const buf_t *b, int type, const char *nsp, size_t nsp_len, long long ack,
                       sio_packet_t *out)
{
    eio_packet_t e;
    FUZZ_CHECK(eio_parse(b->data, b->len, &e) == 0 && e.type == EIO_MESSAGE && !e.binary);
    FUZZ_CHECK(check_sio(e.data, e.len, out) == 0);
    FUZZ_CHECK(out->type == type && out->ack_id == ack);
    if (nsp_len == 0 || (nsp_len == 1 && nsp[0] == '/')) {
        FUZZ_CHECK(out->nsp_len == 1 && out->nsp[0] == '/');
    } else {
        FUZZ_CHECK(out->nsp_len == nsp_len && memcmp(out->nsp, nsp, nsp_len) == 0);
    }
}

/* A parsed packet written again by the encoders reads back the same. */
static void check_reencode(const sio_packet_t *p)
{
    buf_t b = BUF_INIT;
    sio_packet_t q;
    switch (p->type) {
    case SIO_ACK: {
        if (p->ack_id < 0 || p->data_len < 2 || p->data[p->data_len - 1] != ']') return;
        sio_encode_ack(&b, p->nsp, p->nsp_len, p->ack_id, p->data + 1, p->data_len - 2);
        expect_sio(&b, SIO_ACK, p->nsp, p->nsp_len, p->ack_id, &q);
        FUZZ_CHECK(q.data_len == p->data_len && memcmp(q.data, p->data, p->data_len) == 0);
        break;
    }
    case SIO_DISCONNECT:
        if (p->ack_id >= 0) return;
        sio_encode_disconnect(&b, p->nsp, p->nsp_len);
        expect_sio(&b, SIO_DISCONNECT, p->nsp, p->nsp_len, -1, &q);
        break;
    case SIO_EVENT: {
        /* ["name", ARG] with exactly one argument: the shape sio_encode_event writes. */
        if (p->ack_id >= 0) return;
        cJSON *a = cJSON_ParseWithLength(p->data, p->data_len);
        int n = cJSON_GetArraySize(a);
        const cJSON *name = cJSON_GetArrayItem(a, 0);
        if (cJSON_IsArray(a) && (n == 1 || n == 2) && cJSON_IsString(name)) {
            char *arg = n == 2 ? cJSON_PrintUnformatted(cJSON_GetArrayItem(a, 1)) : NULL;
            sio_encode_event(&b, p->nsp, p->nsp_len, name->valuestring, arg, arg ? strlen(arg) : 0);
            expect_sio(&b, SIO_EVENT, p->nsp, p->nsp_len, -1, &q);
            cJSON *a2 = cJSON_ParseWithLength(q.data, q.data_len);
            char *s1 = cJSON_PrintUnformatted(a), *s2 = cJSON_PrintUnformatted(a2);
            FUZZ_CHECK(s1 && s2 && strcmp(s1, s2) == 0);
            cJSON_free(s1);
            cJSON_free(s2);
            cJSON_free(arg);
            cJSON_Delete(a2);
        }
        cJSON_Delete(a);
        break;
    }
    default:
        return;
    }
    buf_free(&b);
}

/* Namespace from the input: "/" plus bytes other than ',' and NUL. */
static size_t take_nsp(fuzz_in_t *in, char *nsp)
{
    size_t l;
    const uint8_t *p = fuzz_bytes(in, SIO_MAX_NSP - 1, &l);
    size_t o = 0;
    nsp[o++] = '/';
    for (size_t i = 0; i < l; i++)
        if (p[i] != ',' && p[i] != 0) nsp[o++] = (char)p[i];
    nsp[o] = '\0';
    return o;
}

static void check_encoders(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    char nsp[SIO_MAX_NSP + 1];
    size_t nl = take_nsp(&in, nsp);
    if (fuzz_u8(&in) & 1) nl = 1; /* the default namespace, omitted on the wire */
    long long ack = (long long)(fuzz_u64(&in) % 1000000000000000ull);
    char *event = fuzz_cstr(&in, 80);
    char *sid = fuzz_cstr(&in, 40);
    /* JSON data: the next bytes if they are JSON, else none. */
    size_t jl;
    const uint8_t *jp = fuzz_bytes(&in, 255, &jl);
    cJSON *j = cJSON_ParseWithLength((const char *)jp, jl);
    char *json = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    size_t json_len = json ? strlen(json) : 0;

    buf_t b = BUF_INIT;
    sio_packet_t q;

    sio_encode_event(&b, nsp, nl, event, json, json_len);
    expect_sio(&b, SIO_EVENT, nsp, nl, -1, &q);
    cJSON *a = cJSON_ParseWithLength(q.data, q.data_len);
    FUZZ_CHECK(cJSON_IsArray(a) && cJSON_GetArraySize(a) == (json ? 2 : 1));
    FUZZ_CHECK(cJSON_IsString(cJSON_GetArrayItem(a, 0)) &&
               strcmp(cJSON_GetArrayItem(a, 0)->valuestring, event) == 0);
    if (json) {
        char *arg = cJSON_PrintUnformatted(cJSON_GetArrayItem(a, 1));
        FUZZ_CHECK(arg && strcmp(arg, json) == 0);
        cJSON_free(arg);
    }
    cJSON_Delete(a);
    buf_reset(&b);

    sio_encode_ack(&b, nsp, nl, ack, json ? json : "", json_len);
    expect_sio(&b, SIO_ACK, nsp, nl, ack, &q);
    FUZZ_CHECK(q.data_len == json_len + 2 && q.data[0] == '[' && q.data[q.data_len - 1] == ']');
    FUZZ_CHECK(json_len == 0 || memcmp(q.data + 1, json, json_len) == 0);
    buf_reset(&b);

    sio_encode_connect(&b, nsp, nl, sid);
    expect_sio(&b, SIO_CONNECT, nsp, nl, -1, &q);
    cJSON *o = cJSON_ParseWithLength(q.data, q.data_len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "sid");
    FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, sid) == 0);
    cJSON_Delete(o);
    buf_reset(&b);

    sio_encode_connect_error(&b, nsp, nl, event);
    expect_sio(&b, SIO_CONNECT_ERROR, nsp, nl, -1, &q);
    o = cJSON_ParseWithLength(q.data, q.data_len);
    v = cJSON_GetObjectItemCaseSensitive(o, "message");
    FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, event) == 0);
    cJSON_Delete(o);
    buf_reset(&b);

    sio_encode_disconnect(&b, nsp, nl);
    expect_sio(&b, SIO_DISCONNECT, nsp, nl, -1, &q);
    buf_reset(&b);

    long long iv = (long long)(fuzz_u32(&in)), to = (long long)(fuzz_u32(&in));
    long long mp = (long long)(fuzz_u64(&in) >> 1);
    int up = fuzz_u8(&in) & 1;
    eio_encode_open(&b, sid, up, iv, to, mp);
    eio_packet_t e;
    FUZZ_CHECK(eio_parse(b.data, b.len, &e) == 0 && e.type == EIO_OPEN);
    o = cJSON_ParseWithLength(e.data, e.len);
    v = cJSON_GetObjectItemCaseSensitive(o, "sid");
    FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, sid) == 0);
    v = cJSON_GetObjectItemCaseSensitive(o, "upgrades");
    FUZZ_CHECK(cJSON_IsArray(v) && cJSON_GetArraySize(v) == up);
    v = cJSON_GetObjectItemCaseSensitive(o, "pingInterval");
    FUZZ_CHECK(cJSON_IsNumber(v) && v->valuedouble == (double)iv);
    v = cJSON_GetObjectItemCaseSensitive(o, "pingTimeout");
    FUZZ_CHECK(cJSON_IsNumber(v) && v->valuedouble == (double)to);
    v = cJSON_GetObjectItemCaseSensitive(o, "maxPayload");
    FUZZ_CHECK(cJSON_IsNumber(v) && v->valuedouble == (double)mp);
    cJSON_Delete(o);

    buf_free(&b);
    cJSON_free(json);
    free(event);
    free(sid);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = (char *)fuzz_dup(data, size);
    eio_packet_t e;
    sio_packet_t p;

    /* One packet (a WebSocket frame); its message as Socket.IO; the input as Socket.IO. */
    check_eio(s, size, &e, eio_parse(s, size, &e));
    if (size && check_sio(s, size, &p) == 0) check_reencode(&p);
    if (size > 1 && check_sio(s + 1, size - 1, &p) == 0) check_reencode(&p);

    /* A polling payload: records, each from its own exact-size copy. */
    size_t off = 0, covered = 0, records = 0;
    while (off < size) {
        size_t next = 0;
        size_t l = eio_next_record(s + off, size - off, &next);
        FUZZ_CHECK(l <= size - off && memchr(s + off, EIO_RECORD_SEP, l) == NULL);
        if (l == size - off) FUZZ_CHECK(next == l); /* the last record */
        else FUZZ_CHECK(next == l + 1 && s[off + l] == EIO_RECORD_SEP);
        FUZZ_CHECK(next > 0);
        char *rec = (char *)fuzz_dup((const uint8_t *)s + off, l);
        int rc = eio_parse(rec, l, &e);
        check_eio(rec, l, &e, rc);
        if (rc == 0 && e.type == EIO_MESSAGE && !e.binary && check_sio(e.data, e.len, &p) == 0)
            check_reencode(&p);
        free(rec);
        covered += next;
        off += next;
        records++;
    }
    FUZZ_CHECK(covered == size && records <= size);

    check_encoders(data, size);
    free(s);
    return 0;
}
