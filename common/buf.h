/*
 * buf: a growable byte buffer.
 *
 * The buffer owns `data`; buf_free() releases it and leaves an empty buffer that can be
 * reused. All appenders keep one spare byte so that `data[len]` can be set to NUL by
 * buf_cstr() without another allocation. Growth is capped by the caller's own limits:
 * buf never refuses to grow, so every caller that stores peer-controlled bytes checks its
 * named limit before appending.
 */
#ifndef CHAT_BUF_H
#define CHAT_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

/* Make room for `extra` more bytes (plus the spare NUL byte). 0 or -1 (out of memory). */
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_append_char(buf_t *b, char c);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Drop the first n bytes. */
void buf_consume(buf_t *b, size_t n);
/* NUL-terminate and return data ("" for an empty, never-allocated buffer). */
const char *buf_cstr(buf_t *b);
void buf_reset(buf_t *b);
void buf_free(buf_t *b);
/* Hand the allocation to the caller (who frees it with free()); the buffer becomes empty. */
char *buf_steal(buf_t *b, size_t *len);

#endif
