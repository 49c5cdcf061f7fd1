#include "utf8.h"

/*
 * States: 0 accept, 1 reject, 2 "one continuation byte left", 3 "two left", 4 "three left",
 * 5 after E0 (next must be A0..BF), 6 after ED (80..9F), 7 after F0 (90..BF),
 * 8 after F4 (80..8F). Written as a switch rather than Hoehrmann's packed table so each
 * rule of RFC 3629 table 3.7 can be read off the code.
 */
static uint32_t step(uint32_t st, uint8_t c)
{
    switch (st) {
    case 0:
        if (c < 0x80) return 0;
        if (c < 0xC2) return 1; /* continuation byte or overlong 2-byte lead */
        if (c < 0xE0) return 2;
        if (c == 0xE0) return 5;
        if (c == 0xED) return 6;
        if (c < 0xF0) return 3;
        if (c == 0xF0) return 7;
        if (c < 0xF4) return 4;
        if (c == 0xF4) return 8;
        return 1;
    case 2:
        return (c >= 0x80 && c <= 0xBF) ? 0 : 1;
    case 3:
        return (c >= 0x80 && c <= 0xBF) ? 2 : 1;
    case 4:
        return (c >= 0x80 && c <= 0xBF) ? 3 : 1;
    case 5:
        return (c >= 0xA0 && c <= 0xBF) ? 2 : 1;
    case 6:
        return (c >= 0x80 && c <= 0x9F) ? 2 : 1;
    case 7:
        return (c >= 0x90 && c <= 0xBF) ? 3 : 1;
    case 8:
        return (c >= 0x80 && c <= 0x8F) ? 3 : 1;
    default:
        return 1;
    }
}

uint32_t utf8_feed(uint32_t state, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n && state != UTF8_REJECT) {
        /* ASCII fast path: eight bytes at a time while at a boundary. */
        if (state == UTF8_ACCEPT) {
            while (i + 8 <= n) {
                uint64_t w;
                __builtin_memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            if (i >= n) break;
        }
        state = step(state, s[i++]);
    }
    return state;
}

int utf8_valid(const uint8_t *s, size_t n)
{
    return utf8_feed(UTF8_ACCEPT, s, n) == UTF8_ACCEPT;
}

size_t utf8_count(const uint8_t *s, size_t n)
{
    size_t cp = 0;
    for (size_t i = 0; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) cp++;
    return cp;
}

size_t utf8_truncate(const uint8_t *s, size_t n, size_t max)
{
    if (n <= max) return n;
    size_t i = max;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    return i;
}
