/*
 * fuzz_brkproto: the worker <-> broker frame parser (brk_parse) and encoders.
 *
 * The input is read as a stream of frames, as a worker or the broker reads its socket, and
 * as the fields of frames to encode. Properties:
 *  - brk_parse returns a frame size within the remaining bytes, 0 (more needed: then the
 *    announced length is valid and not all there) or -1 (then the length is out of range,
 *    the type unknown, or the fields do not add up);
 *  - a parsed frame has a known type, exactly brk_arity(type) fields, each a view inside
 *    the frame; and the encoding is canonical: brk_encode of the parsed fields gives back
 *    the frame byte for byte;
 *  - incremental reading: proper prefixes of a frame need more bytes (0; all of them up to
 *    40 bytes, then the middle one and the last 8), and a frame parses the same in an
 *    exact-size buffer of its own as inside the stream;
 *  - round trip: frames encoded from input-chosen types and fields (brk_encode,
 *    brk_encode1, brk_encode2; wrong field counts and unknown types refused) parse back to
 *    the same type and fields, one after the other.
 */
#include "brkproto.h"
#include "fuzz.h"

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void same_frame(const brk_frame_t *a, const uint8_t *ab, const brk_frame_t *b,
                       const uint8_t *bb)
{
    FUZZ_CHECK(a->type == b->type && a->nfields == b->nfields);
    for (int i = 0; i < a->nfields; i++) {
        FUZZ_CHECK(a->f[i].len == b->f[i].len);
        FUZZ_CHECK((const uint8_t *)a->f[i].p - ab == (const uint8_t *)b->f[i].p - bb);
    }
}

/* One step of the stream reader at s[0..n). Returns the frame size or 0/-1. */
static long check_frame(const uint8_t *s, size_t n)
{
    brk_frame_t fr;
    memset(&fr, 0, sizeof fr);
    long r = brk_parse(s, n, &fr);
    FUZZ_CHECK(r >= -1 && r <= (long)n);
    if (r == 0) {
        if (n >= 4) {
            uint32_t flen = rd32(s);
            FUZZ_CHECK(flen >= 1 && flen <= BRK_MAX_FRAME && n - 4 < flen);
            if (n >= 5) FUZZ_CHECK(brk_arity(s[4]) >= 0);
        }
        return 0;
    }
    if (r < 0) {
        FUZZ_CHECK(n >= 4);
        return -1;
    }
    FUZZ_CHECK(r >= 5 && (uint32_t)(r - 4) == rd32(s) && (uint32_t)r - 4 <= BRK_MAX_FRAME);
    FUZZ_CHECK(fr.type == s[4] && brk_arity(fr.type) == fr.nfields);
    FUZZ_CHECK(fr.nfields <= BRK_MAX_FIELDS);
    FUZZ_CHECK(strcmp(brk_type_name(fr.type), "?") != 0);
    const uint8_t *at = s + 5;
    for (int i = 0; i < fr.nfields; i++) {
        /* Fields are consecutive: length, bytes, length, bytes... */
        FUZZ_CHECK((const uint8_t *)fr.f[i].p == at + 4 && rd32(at) == fr.f[i].len);
        at += 4 + fr.f[i].len;
    }
    FUZZ_CHECK(at == s + r);

    /* Canonical: encoding the fields gives the frame back. */
    buf_t b = BUF_INIT;
    FUZZ_CHECK(brk_encode(&b, fr.type, fr.nfields, fr.f) == 0);
    FUZZ_CHECK(b.len == (size_t)r && memcmp(b.data, s, (size_t)r) == 0);
    buf_free(&b);

    /* Incremental: every prefix needs more; the frame alone parses the same. */
    for (long k = 0; k < r; k++) {
        if (k > 40 && k < r - 8 && k != r / 2) continue; /* bounded work on long frames */
        uint8_t *p = fuzz_dup(s, (size_t)k);
        brk_frame_t x;
        FUZZ_CHECK(brk_parse(p, (size_t)k, &x) == 0);
        free(p);
    }
    uint8_t *alone = fuzz_dup(s, (size_t)r);
    brk_frame_t y;
    FUZZ_CHECK(brk_parse(alone, (size_t)r, &y) == r);
    same_frame(&fr, s, &y, alone);
    free(alone);
    return r;
}

static void check_encode(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    buf_t out = BUF_INIT;
    brk_frame_t want[8];
    int nframes = 0;
    while (nframes < 8 && in.n > 0) {
        uint8_t sel = fuzz_u8(&in);
        int type = sel % (BRK__MAX + 2); /* includes 0 and unknown types */
        int arity = brk_arity(type);
        int nf = (sel & 0x80) ? (sel >> 4) % 5 : arity; /* sometimes a wrong count */
        brk_field_t f[BRK_MAX_FIELDS];
        for (int i = 0; i < BRK_MAX_FIELDS; i++) {
            size_t l;
            f[i].p = (const char *)fuzz_bytes(&in, 255, &l);
            f[i].len = (uint32_t)l;
        }
        size_t before = out.len;
        int rc;
        if (nf == 1 && (sel & 0x40)) rc = brk_encode1(&out, type, f[0].p, f[0].len);
        else if (nf == 2 && (sel & 0x40)) rc = brk_encode2(&out, type, f[0].p, f[0].len, f[1].p, f[1].len);
        else rc = brk_encode(&out, type, nf < 0 ? 0 : nf, f);
        if (arity < 0 || nf != arity) {
            FUZZ_CHECK(rc == -1 && out.len == before);
            continue;
        }
        FUZZ_CHECK(rc == 0);
        want[nframes].type = (uint8_t)type;
        want[nframes].nfields = (uint8_t)nf;
        memcpy(want[nframes].f, f, sizeof f);
        nframes++;
    }

    /* Read them back as a stream. */
    uint8_t *s = fuzz_dup((const uint8_t *)out.data, out.len);
    size_t off = 0;
    for (int i = 0; i < nframes; i++) {
        brk_frame_t fr;
        long r = check_frame(s + off, out.len - off);
        FUZZ_CHECK(r > 0);
        FUZZ_CHECK(brk_parse(s + off, out.len - off, &fr) == r);
        FUZZ_CHECK(fr.type == want[i].type && fr.nfields == want[i].nfields);
        for (int j = 0; j < fr.nfields; j++)
            FUZZ_CHECK(fr.f[j].len == want[i].f[j].len &&
                       (fr.f[j].len == 0 || memcmp(fr.f[j].p, want[i].f[j].p, fr.f[j].len) == 0));
        off += (size_t)r;
    }
    FUZZ_CHECK(off == out.len);
    free(s);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *s = fuzz_dup(data, size);
    size_t off = 0;
    for (;;) {
        long r = check_frame(s + off, size - off);
        if (r <= 0) break;
        off += (size_t)r;
    }
    for (int t = -1; t <= BRK__MAX + 1; t++) FUZZ_CHECK(brk_type_name(t) != NULL);
    free(s);
    check_encode(data, size);
    return 0;
}
