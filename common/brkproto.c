#include "brkproto.h"

#include <string.h>

static const struct {
    const char *name;
    int arity;
} types[BRK__MAX] = {
    [BRK_HELLO] = {"HELLO", 2},          [BRK_SUB] = {"SUB", 1},
    [BRK_UNSUB] = {"UNSUB", 1},          [BRK_PUB] = {"PUB", 2},
    [BRK_MSG] = {"MSG", 2},              [BRK_CONN_UP] = {"CONN_UP", 2},
    [BRK_CONN_DOWN] = {"CONN_DOWN", 2},  [BRK_ONLINE_REQ] = {"ONLINE_REQ", 1},
    [BRK_ONLINE_RESP] = {"ONLINE_RESP", 2}, [BRK_STATUS] = {"STATUS", 1},
};

int brk_arity(int type)
{
    if (type <= 0 || type >= BRK__MAX || !types[type].name) return -1;
    return types[type].arity;
}

const char *brk_type_name(int type)
{
    return brk_arity(type) < 0 ? "?" : types[type].name;
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

long brk_parse(const uint8_t *buf, size_t len, brk_frame_t *fr)
{
    if (len < 4) return 0;
    uint32_t flen = rd32(buf);
    if (flen < 1 || flen > BRK_MAX_FRAME) return -1;
    if (len - 4 < flen) {
        /* Reject an unknown type as soon as it is visible, not after 16 MiB. */
        if (len >= 5 && brk_arity(buf[4]) < 0) return -1;
        return 0;
    }
    const uint8_t *p = buf + 5, *end = buf + 4 + flen;
    fr->type = buf[4];
    int arity = brk_arity(fr->type);
    if (arity < 0) return -1;
    fr->nfields = 0;
    while (p < end) {
        if (fr->nfields >= arity || end - p < 4) return -1;
        uint32_t l = rd32(p);
        p += 4;
        if ((size_t)(end - p) < l) return -1;
        fr->f[fr->nfields].p = (const char *)p;
        fr->f[fr->nfields].len = l;
        fr->nfields++;
        p += l;
    }
    if (fr->nfields != arity) return -1;
    return (long)(4 + flen);
}

int brk_encode(buf_t *out, int type, int nfields, const brk_field_t *f)
{
    if (brk_arity(type) != nfields) return -1;
    size_t total = 1;
    for (int i = 0; i < nfields; i++) total += 4 + (size_t)f[i].len;
    if (total > BRK_MAX_FRAME) return -1;
    if (buf_reserve(out, 4 + total) < 0) return -1;
    uint8_t *p = (uint8_t *)out->data + out->len;
    wr32(p, (uint32_t)total);
    p[4] = (uint8_t)type;
    p += 5;
    for (int i = 0; i < nfields; i++) {
        wr32(p, f[i].len);
        if (f[i].len) memcpy(p + 4, f[i].p, f[i].len);
        p += 4 + f[i].len;
    }
    out->len += 4 + total;
    return 0;
}

int brk_encode1(buf_t *out, int type, const char *a, size_t alen)
{
    brk_field_t f[1] = {{a, (uint32_t)alen}};
    return brk_encode(out, type, 1, f);
}

int brk_encode2(buf_t *out, int type, const char *a, size_t alen, const char *b, size_t blen)
{
    brk_field_t f[2] = {{a, (uint32_t)alen}, {b, (uint32_t)blen}};
    return brk_encode(out, type, 2, f);
}
