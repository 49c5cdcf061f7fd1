/* Unit tests for common/buf.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "buf.h"

Test(buf, append_printf_consume)
{
    buf_t b = BUF_INIT;
    cr_assert_str_eq(buf_cstr(&b), "");
    buf_append_str(&b, "hello");
    buf_printf(&b, " %d %s", 42, "x");
    cr_assert_str_eq(buf_cstr(&b), "hello 42 x");
    buf_consume(&b, 6);
    cr_assert_str_eq(buf_cstr(&b), "42 x");
    buf_consume(&b, 100);
    cr_assert_eq(b.len, 0);
    buf_free(&b);
    cr_assert_null(b.data);
}

Test(buf, long_printf_and_growth)
{
    buf_t b = BUF_INIT;
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf_printf(&b, "[%s]", big);
    cr_assert_eq(b.len, 1001);
    cr_assert_eq(b.data[0], '[');
    cr_assert_eq(b.data[1000], ']');
    for (int i = 0; i < 10000; i++) buf_append_char(&b, 'a');
    cr_assert_eq(b.len, 11001);
    cr_assert_geq(b.cap, b.len + 1);
    size_t n;
    char *s = buf_steal(&b, &n);
    cr_assert_eq(n, 11001);
    cr_assert_eq(s[n], '\0');
    cr_assert_null(b.data);
    free(s);
}

Test(buf, reserve_overflow_is_refused)
{
    buf_t b = BUF_INIT;
    cr_assert_eq(buf_reserve(&b, SIZE_MAX - 2), -1);
    buf_free(&b);
}
