/* Unit tests for common/brkproto.c: the worker <-> broker framing. */
#include <criterion/criterion.h>
#include <string.h>

#include "brkproto.h"

Test(brkproto, roundtrip_and_partial)
{
    buf_t b = BUF_INIT;
    cr_assert_eq(brk_encode2(&b, BRK_PUB, "room:general", 12, "{\"event\":\"x\"}", 13), 0);
    cr_assert_eq(brk_encode1(&b, BRK_SUB, "user:42", 7), 0);
    cr_assert_eq(brk_encode2(&b, BRK_CONN_DOWN, "42", 2, "", 0), 0);
    size_t total = b.len;
    /* Every strict prefix of the first frame needs more bytes. */
    brk_frame_t fr;
    long first = brk_parse((uint8_t *)b.data, b.len, &fr);
    cr_assert_gt(first, 0);
    for (long i = 0; i < first; i++) cr_assert_eq(brk_parse((uint8_t *)b.data, (size_t)i, &fr), 0);
    brk_parse((uint8_t *)b.data, b.len, &fr);
    cr_assert_eq(fr.type, BRK_PUB);
    cr_assert_eq(fr.nfields, 2);
    cr_assert_eq(fr.f[0].len, 12);
    cr_assert_eq(memcmp(fr.f[1].p, "{\"event\":\"x\"}", 13), 0);
    size_t off = (size_t)first;
    long n = brk_parse((uint8_t *)b.data + off, total - off, &fr);
    cr_assert_eq(fr.type, BRK_SUB);
    off += (size_t)n;
    n = brk_parse((uint8_t *)b.data + off, total - off, &fr);
    cr_assert_eq(fr.type, BRK_CONN_DOWN);
    cr_assert_eq(fr.f[1].len, 0);
    cr_assert_eq(off + (size_t)n, total);
    buf_free(&b);
}

Test(brkproto, malformed_frames)
{
    brk_frame_t fr;
    /* Unknown type. */
    uint8_t t1[] = {0, 0, 0, 1, 99};
    cr_assert_eq(brk_parse(t1, sizeof t1, &fr), -1);
    /* Unknown type seen early even though the frame claims 1 MiB. */
    uint8_t t2[] = {0, 0x10, 0, 0, 77};
    cr_assert_eq(brk_parse(t2, sizeof t2, &fr), -1);
    /* Over the frame limit. */
    uint8_t t3[] = {0x7f, 0xff, 0xff, 0xff, BRK_SUB};
    cr_assert_eq(brk_parse(t3, sizeof t3, &fr), -1);
    /* Field length past the end of the frame. */
    uint8_t t4[] = {0, 0, 0, 6, BRK_SUB, 0, 0, 0, 9, 'x'};
    cr_assert_eq(brk_parse(t4, sizeof t4, &fr), -1);
    /* Wrong field count (SUB takes one). */
    uint8_t t5[] = {0, 0, 0, 11, BRK_SUB, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b'};
    cr_assert_eq(brk_parse(t5, sizeof t5, &fr), -1);
    uint8_t t6[] = {0, 0, 0, 1, BRK_SUB};
    cr_assert_eq(brk_parse(t6, sizeof t6, &fr), -1);
    /* Zero-length frame. */
    uint8_t t7[] = {0, 0, 0, 0};
    cr_assert_eq(brk_parse(t7, sizeof t7, &fr), -1);
    /* Encoding with the wrong arity is refused. */
    buf_t b = BUF_INIT;
    cr_assert_eq(brk_encode1(&b, BRK_PUB, "x", 1), -1);
    cr_assert_eq(b.len, 0);
    buf_free(&b);
}
