/*
 * fuzz_utf8: utf8_feed / utf8_valid / utf8_count / utf8_truncate against a reference
 * decoder written from the definitions of RFC 3629, with no tables and no DFA.
 *
 * The input is the text. Properties:
 *  - utf8_valid(s) is 1 exactly when the reference decodes all of s;
 *  - fail fast: feeding byte by byte, the state is UTF8_REJECT exactly from the first byte
 *    after which no continuation could make the text valid, UTF8_ACCEPT exactly at
 *    character boundaries of a valid prefix, and "inside a sequence" otherwise;
 *  - the state does not depend on how the text is split (pieces chosen from the text's own
 *    bytes, and fed from separate exact-size buffers so the 8-byte fast path is checked
 *    for over-reads at every alignment);
 *  - utf8_count is the number of code points and utf8_truncate cuts at the last boundary
 *    at or before the limit, for valid text.
 */
#include "fuzz.h"
#include "utf8.h"

/*
 * The reference. A sequence is classified by its lead byte's bit pattern (0xxxxxxx,
 * 110xxxxx, 1110xxxx, 11110xxx; anything else cannot start one). For m of its n bytes, the
 * code points it can still become form the interval [lo, hi] (remaining payload bits all 0
 * or all 1). The bytes so far can be completed to a valid sequence when that interval
 * meets the valid scalar values of that length: [min_n, 0x10FFFF] minus the surrogates
 * [0xD800, 0xDFFF] (min_n excludes overlong forms).
 */
static int seq_len(uint8_t b, uint32_t *bits)
{
    if ((b & 0x80) == 0x00) { *bits = b; return 1; }
    if ((b & 0xE0) == 0xC0) { *bits = b & 0x1F; return 2; }
    if ((b & 0xF0) == 0xE0) { *bits = b & 0x0F; return 3; }
    if ((b & 0xF8) == 0xF0) { *bits = b & 0x07; return 4; }
    return 0;
}

static int can_complete(uint32_t bits, int m, int n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (n == 1) return 1;
    int rest = 6 * (n - m);
    uint32_t lo = bits << rest, hi = lo | ((1u << rest) - 1);
    uint32_t a = lo > min_cp[n] ? lo : min_cp[n];
    uint32_t b = hi < 0x10FFFF ? hi : 0x10FFFF;
    if (a > b) return 0;
    if (a >= 0xD800 && b <= 0xDFFF) return 0;
    return 1;
}

/*
 * Classify every prefix: st[k] for the prefix s[0..k) is 0 (complete and valid), 2 (valid
 * so far, inside a sequence) or 1 (can no longer be made valid). Returns the number of
 * sequences completed before the first failure (the code point count of valid text).
 */
static size_t reference(const uint8_t *s, size_t n, uint8_t *st)
{
    size_t i = 0, cps = 0;
    st[0] = 0;
    while (i < n) {
        uint32_t bits;
        int len = seq_len(s[i], &bits);
        int m = 1;
        int ok = len > 0 && can_complete(bits, 1, len);
        for (;;) {
            size_t k = i + (size_t)m; /* prefix length after this byte */
            if (!ok) {
                for (; k <= n; k++) st[k] = 1;
                return cps;
            }
            st[k] = m == len ? 0 : 2;
            if (m == len) {
                cps++;
                break;
            }
            if (k == n) return cps; /* the text ends inside the sequence */
            uint8_t c = s[k];
            m++;
            if ((c & 0xC0) != 0x80) {
                ok = 0;
            } else {
                bits = (bits << 6) | (c & 0x3F);
                ok = can_complete(bits, m, len);
            }
        }
        i += (size_t)len;
    }
    return cps;
}

static int same_class(uint32_t state, uint8_t ref)
{
    if (ref == 0) return state == UTF8_ACCEPT;
    if (ref == 1) return state == UTF8_REJECT;
    return state != UTF8_ACCEPT && state != UTF8_REJECT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *s = fuzz_dup(data, size);
    uint8_t *st = malloc(size + 1);
    uint32_t *bytewise = malloc((size + 1) * sizeof *bytewise);
    if (!st || !bytewise) abort();

    size_t cps = reference(s, size, st);
    int valid = st[size] == 0;

    /* Whole. */
    FUZZ_CHECK(utf8_valid(s, size) == valid);
    uint32_t whole = utf8_feed(UTF8_ACCEPT, s, size);
    FUZZ_CHECK(same_class(whole, st[size]));

    /* Byte by byte, each byte from its own one-byte buffer. */
    bytewise[0] = UTF8_ACCEPT;
    for (size_t k = 0; k < size; k++) {
        uint8_t *one = fuzz_dup(s + k, 1);
        bytewise[k + 1] = utf8_feed(bytewise[k], one, 1);
        free(one);
        FUZZ_CHECK(same_class(bytewise[k + 1], st[k + 1]));
    }
    FUZZ_CHECK(bytewise[size] == whole);

    /* Pieces whose sizes come from the text itself (1..16 bytes), each piece its own
     * exact-size buffer; the state at every cut equals the byte-by-byte state there. */
    for (int variant = 0; variant < 2; variant++) {
        uint32_t state = UTF8_ACCEPT;
        size_t pos = 0;
        while (pos < size) {
            uint8_t b = s[pos];
            size_t piece = variant == 0 ? (size_t)(b & 0x0F) + 1 : (size_t)(b >> 4) * 3 + 1;
            if (piece > size - pos) piece = size - pos;
            uint8_t *p = fuzz_dup(s + pos, piece);
            state = utf8_feed(state, p, piece);
            free(p);
            pos += piece;
            FUZZ_CHECK(state == bytewise[pos]);
        }
        FUZZ_CHECK(state == whole);
    }

    /* REJECT is sticky, and an empty feed changes nothing. */
    FUZZ_CHECK(utf8_feed(UTF8_REJECT, s, size) == UTF8_REJECT);
    FUZZ_CHECK(utf8_feed(whole, s, 0) == whole);

    /* Valid text: its code point count, and the text twice (other fast-path alignments)
     * is valid too. */
    if (valid) {
        FUZZ_CHECK(utf8_count(s, size) == cps);
        uint8_t *twice = malloc(2 * size + 1);
        if (!twice) abort();
        memcpy(twice, s, size);
        memcpy(twice + size, s, size);
        FUZZ_CHECK(utf8_valid(twice, 2 * size));
        FUZZ_CHECK(utf8_count(twice, 2 * size) == 2 * cps);
        free(twice);

        /* utf8_truncate at every limit: the longest prefix within max that ends on a
         * boundary. */
        for (size_t max = 0; max <= size + 1; max++) {
            size_t t = utf8_truncate(s, size, max);
            if (size <= max) {
                FUZZ_CHECK(t == size);
                continue;
            }
            FUZZ_CHECK(t <= max);
            FUZZ_CHECK(st[t] == 0);
            for (size_t k = t + 1; k <= max; k++) FUZZ_CHECK(st[k] != 0);
        }
    }

    free(bytewise);
    free(st);
    free(s);
    return 0;
}
