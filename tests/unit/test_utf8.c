/* Unit tests for common/utf8.c, checked against a decoding reference implementation. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Reference: decode code points and check the RFC 3629 rules explicitly. */
static int ref_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i];
        size_t len;
        uint32_t min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; c &= 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; c &= 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; c &= 0x07; min = 0x10000; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

Test(utf8, known_cases)
{
    cr_assert(utf8_valid((const uint8_t *)"", 0));
    cr_assert(utf8_valid((const uint8_t *)"plain ascii", 11));
    cr_assert(utf8_valid((const uint8_t *)"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11));
    cr_assert(utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4));      /* U+1F600 */
    cr_assert(utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));      /* U+10FFFF */
    cr_assert_not(utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));  /* > U+10FFFF */
    cr_assert_not(utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));      /* surrogate */
    cr_assert_not(utf8_valid((const uint8_t *)"\xc0\xaf", 2));          /* overlong */
    cr_assert_not(utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));      /* overlong */
    cr_assert_not(utf8_valid((const uint8_t *)"\xf0\x80\x80\xaf", 4));  /* overlong */
    cr_assert_not(utf8_valid((const uint8_t *)"\x80", 1));
    cr_assert_not(utf8_valid((const uint8_t *)"\xfe", 1));
    cr_assert_not(utf8_valid((const uint8_t *)"\xe2\x82", 2));          /* truncated */
}

Test(utf8, fail_fast_state)
{
    uint32_t st = utf8_feed(UTF8_ACCEPT, (const uint8_t *)"\xce\xba\xed", 3);
    cr_assert_neq(st, UTF8_REJECT);
    st = utf8_feed(st, (const uint8_t *)"\xa0", 1);
    cr_assert_eq(st, UTF8_REJECT, "surrogate must fail at its second byte");
    cr_assert_eq(utf8_feed(st, (const uint8_t *)"a", 1), UTF8_REJECT);
}

Test(utf8, random_against_reference_any_split)
{
    srand(99);
    static const uint8_t alphabet[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                       0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xef, 0xf0,
                                       0xf1, 0xf3, 0xf4, 0xf5, 0xff};
    uint8_t s[16];
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = (size_t)(rand() % 9);
        for (size_t i = 0; i < n; i++) s[i] = alphabet[rand() % sizeof alphabet];
        int want = ref_valid(s, n);
        cr_assert_eq(utf8_valid(s, n), want, "iter %d", iter);
        size_t cut = n ? (size_t)rand() % (n + 1) : 0;
        uint32_t st = utf8_feed(UTF8_ACCEPT, s, cut);
        st = utf8_feed(st, s + cut, n - cut);
        cr_assert_eq(st == UTF8_ACCEPT, want, "split iter %d", iter);
    }
}

Test(utf8, count_and_truncate)
{
    const uint8_t *s = (const uint8_t *)"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    cr_assert_eq(utf8_count(s, 10), 4);
    cr_assert_eq(utf8_truncate(s, 10, 2), 1);
    cr_assert_eq(utf8_truncate(s, 10, 3), 3);
    cr_assert_eq(utf8_truncate(s, 10, 9), 6);
    cr_assert_eq(utf8_truncate(s, 10, 50), 10);
}
