/*
 * utf8: incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, max U+10FFFF).
 *
 * The validator is a DFA over bytes, so a text can be checked in pieces of any size: carry
 * the state from one call to the next. It fails fast: the state becomes UTF8_REJECT at the
 * first byte that cannot start or continue a valid sequence, which is what RFC 6455 asks of
 * a WebSocket endpoint (close with 1007 as soon as the text cannot be valid).
 */
#ifndef CHAT_UTF8_H
#define CHAT_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0u /* at a character boundary: the text so far is valid */
#define UTF8_REJECT 1u /* invalid; stays rejected */

/* Feed n bytes; returns the new state. Any state other than ACCEPT/REJECT means "inside a
 * multi-byte sequence". */
uint32_t utf8_feed(uint32_t state, const uint8_t *s, size_t n);

/* 1 when s[0..n) is complete, valid UTF-8. */
int utf8_valid(const uint8_t *s, size_t n);

/* Number of code points in valid UTF-8 (counts bytes that are not continuation bytes). */
size_t utf8_count(const uint8_t *s, size_t n);

/* Length of the longest prefix of s[0..max) that ends on a character boundary; s valid. */
size_t utf8_truncate(const uint8_t *s, size_t n, size_t max);

#endif
