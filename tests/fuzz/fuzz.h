/*
 * Shared by the fuzz harnesses of tests/fuzz: the libFuzzer entry point, the property check
 * macro, exact-size copies (so that AddressSanitizer sees any read past the input) and a
 * small reader that turns the fuzzer's bytes into structured values.
 *
 * Every harness is built twice: as a libFuzzer binary (clang, CHAT_FUZZ=ON) and linked with
 * replay_main.c into a plain program that replays the seed corpus in the unit test suite.
 */
#ifndef CHAT_FUZZ_H
#define CHAT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property violation: say which one, then abort (libFuzzer saves the input as a crash). */
#define FUZZ_CHECK(cond)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* An exact-size heap copy (one spare byte never handed out when n == 0, so the pointer is
 * never NULL). */
static inline uint8_t *fuzz_dup(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    if (!c) abort();
    if (n) memcpy(c, p, n);
    else c[0] = 0;
    return c;
}

/* Consumes structured values from the front of the input; past the end it yields zeros. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in_t;

static inline uint8_t fuzz_u8(fuzz_in_t *in)
{
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t fuzz_u32(fuzz_in_t *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | fuzz_u8(in);
    return v;
}

static inline uint64_t fuzz_u64(fuzz_in_t *in)
{
    uint64_t hi = fuzz_u32(in);
    return (hi << 32) | fuzz_u32(in);
}

/* A view of up to `max` bytes; its length comes from one input byte. */
static inline const uint8_t *fuzz_bytes(fuzz_in_t *in, size_t max, size_t *len)
{
    size_t l = fuzz_u8(in);
    if (max < 255) l %= max + 1;
    if (l > in->n) l = in->n;
    const uint8_t *p = in->p;
    in->p += l;
    in->n -= l;
    *len = l;
    return p;
}

/* A NUL-terminated copy of up to `max` bytes without NULs (free() it). */
static inline char *fuzz_cstr(fuzz_in_t *in, size_t max)
{
    size_t l;
    const uint8_t *p = fuzz_bytes(in, max, &l);
    char *s = malloc(l + 1);
    if (!s) abort();
    size_t o = 0;
    for (size_t i = 0; i < l; i++)
        if (p[i]) s[o++] = (char)p[i];
    s[o] = '\0';
    return s;
}

#endif
