/*
 * jwtauth: JWT verification as BRIEF §4 specifies, on top of libjwt 1.10.
 *
 * libjwt 1.10 verifies the signature with whatever algorithm the token's header names and
 * checks no claim at all. So: the algorithm is pinned by configuration and compared with
 * jwt_get_alg() after decoding (this is what stops "alg":"none" and the HS256-signed-with-
 * the-RSA-public-key confusion); an empty key is refused at construction; `exp` is required
 * and must be an integer; `nbf`, `iss` and `aud` are checked here. No I/O: the caller passes
 * the current time.
 */
#ifndef CHAT_JWTAUTH_H
#define CHAT_JWTAUTH_H

#include <stddef.h>

#include "http.h"

#define JWT_MAX_TOKEN 8192   /* longer tokens are refused before any decoding */
#define JWT_MAX_SUB 64       /* bytes of `sub` */
#define JWT_MAX_USERNAME 128 /* bytes of the display name (truncated on a UTF-8 boundary) */

typedef struct jwtauth jwtauth_t;

typedef struct jwtauth_opts {
    const char *alg;      /* "HS256", "HS384", "HS512", "RS256", "ES256", ... */
    const char *key;      /* HMAC secret, or PEM public key for RS/ES */
    size_t key_len;
    const char *issuer;   /* NULL or "" = not checked */
    const char *audience; /* NULL or "" = not checked */
    long long leeway;     /* seconds of clock skew tolerated for exp/nbf */
} jwtauth_opts_t;

typedef struct jwt_identity {
    char sub[JWT_MAX_SUB + 1];
    char username[JWT_MAX_USERNAME + 1];
    long long exp;
} jwt_identity_t;

/* NULL with a message in err for an unknown algorithm, an empty key, or an HMAC secret
 * shorter than 32 bytes. */
jwtauth_t *jwtauth_new(const jwtauth_opts_t *o, char *err, size_t errlen);
void jwtauth_free(jwtauth_t *a);

/*
 * Verify a compact JWT (an optional "Bearer " prefix is accepted). Returns 0 and fills id,
 * or -1 with *why set to a short reason for logs ("expired", "algorithm not allowed", ...).
 */
int jwtauth_verify(const jwtauth_t *a, const char *token, size_t len, long long now,
                   jwt_identity_t *id, const char **why);

/* Strip an optional, case-insensitive "Bearer " prefix. */
const char *jwtauth_strip_bearer(const char *t, size_t *len);

/*
 * The token of an HTTP request, in the order of BRIEF §4 after Socket.IO's auth.token:
 * ?token=, Authorization: Bearer, cookie Authentication. Returns its length (copied into
 * out, NUL-terminated), -1 when there is none, -2 when it is longer than outsz - 1.
 */
int jwtauth_token_from_request(const http_request_t *req, char *out, size_t outsz);

/*
 * Mint a token (development tokens, chatctl, tests): sub, username, exp = now + ttl.
 * HMAC algorithms take the secret; RS/ES take a PEM private key. Returns a malloc'd
 * string or NULL.
 */
char *jwtauth_mint(const char *alg, const char *key, size_t key_len, const char *sub,
                   const char *username, long long now, long long ttl);

#endif
