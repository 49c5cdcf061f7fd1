#include "jwtauth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <jwt.h>

#include "utf8.h"

struct jwtauth {
    jwt_alg_t alg;
    unsigned char *key;
    size_t key_len;
    char *issuer;
    char *audience;
    long long leeway;
};

static int is_hmac(jwt_alg_t a)
{
    return a == JWT_ALG_HS256 || a == JWT_ALG_HS384 || a == JWT_ALG_HS512;
}

jwtauth_t *jwtauth_new(const jwtauth_opts_t *o, char *err, size_t errlen)
{
    jwtauth_t *a = NULL;
    jwt_alg_t alg = o->alg ? jwt_str_alg(o->alg) : JWT_ALG_INVAL;
    if (alg == JWT_ALG_INVAL || alg == JWT_ALG_NONE) {
        snprintf(err, errlen, "unsupported JWT algorithm '%s'", o->alg ? o->alg : "");
        return NULL;
    }
    if (!o->key || o->key_len == 0) {
        snprintf(err, errlen, "%s", is_hmac(alg) ? "CHAT_JWT_SECRET is empty"
                                                 : "CHAT_JWT_PUBLIC_KEY is empty");
        return NULL;
    }
    if (is_hmac(alg) && o->key_len < 32) {
        snprintf(err, errlen, "CHAT_JWT_SECRET must be at least 32 bytes (got %zu)", o->key_len);
        return NULL;
    }
    if (!(a = calloc(1, sizeof *a))) goto nomem;
    a->alg = alg;
    a->leeway = o->leeway;
    if (!(a->key = malloc(o->key_len + 1))) goto nomem;
    memcpy(a->key, o->key, o->key_len);
    a->key[o->key_len] = '\0';
    a->key_len = o->key_len;
    if (o->issuer && *o->issuer && !(a->issuer = strdup(o->issuer))) goto nomem;
    if (o->audience && *o->audience && !(a->audience = strdup(o->audience))) goto nomem;
    return a;
nomem:
    snprintf(err, errlen, "out of memory");
    jwtauth_free(a);
    return NULL;
}

void jwtauth_free(jwtauth_t *a)
{
    if (!a) return;
    free(a->key);
    free(a->issuer);
    free(a->audience);
    free(a);
}

const char *jwtauth_strip_bearer(const char *t, size_t *len)
{
    if (*len >= 7 && strncasecmp(t, "Bearer ", 7) == 0) {
        t += 7;
        *len -= 7;
        while (*len > 0 && *t == ' ') {
            t++;
            (*len)--;
        }
    }
    return t;
}

/* An integral JSON number that fits a long long; 0 or -1. */
static int json_int(const cJSON *v, long long *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9.007199254740992e15) return -1;
    *out = (long long)d;
    return 0;
}

static int aud_matches(const cJSON *aud, const char *want)
{
    if (cJSON_IsString(aud)) return strcmp(aud->valuestring, want) == 0;
    if (cJSON_IsArray(aud)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, aud)
        {
            if (cJSON_IsString(it) && strcmp(it->valuestring, want) == 0) return 1;
        }
    }
    return 0;
}

static int copy_claim_id(const cJSON *v, char *out, size_t outsz)
{
    if (cJSON_IsString(v)) {
        size_t l = strlen(v->valuestring);
        if (l == 0 || l >= outsz) return -1;
        memcpy(out, v->valuestring, l + 1);
        return 0;
    }
    long long n;
    if (json_int(v, &n) == 0) {
        snprintf(out, outsz, "%lld", n);
        return 0;
    }
    return -1;
}

/*
 * A compact JWS: three base64url segments (RFC 7515: no padding), none empty. libjwt 1.10
 * must not see anything else: given an empty header or payload segment (".x.y", "x..y",
 * "..."), or an empty RS/ES signature, its jwt_b64_decode() writes past a zero-byte
 * allocation (found by valgrind, tests/integration/attacks.test.js).
 */
static int token_shape_ok(const char *t, size_t len)
{
    int dots = 0;
    size_t seg = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch == '.') {
            if (seg == 0 || seg % 4 == 1 || ++dots > 2) return 0;
            seg = 0;
        } else if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                   ch == '-' || ch == '_') {
            seg++;
        } else {
            return 0;
        }
    }
    return dots == 2 && seg > 0 && seg % 4 != 1;
}

int jwtauth_verify(const jwtauth_t *a, const char *token, size_t len, long long now,
                   jwt_identity_t *id, const char **why)
{
    jwt_t *jwt = NULL;
    cJSON *claims = NULL;
    char *tok = NULL, *json = NULL;
    int rc = -1;

    token = jwtauth_strip_bearer(token, &len);
    if (len == 0) {
        *why = "token missing";
        return -1;
    }
    if (len > JWT_MAX_TOKEN) {
        *why = "token too long";
        return -1;
    }
    if (!token_shape_ok(token, len)) {
        *why = "malformed token";
        return -1;
    }
    if (!(tok = malloc(len + 1))) {
        *why = "out of memory";
        return -1;
    }
    memcpy(tok, token, len);
    tok[len] = '\0';

    if (jwt_decode(&jwt, tok, a->key, (int)a->key_len) != 0 || !jwt) {
        *why = "invalid signature or malformed token";
        goto out;
    }
    if (jwt_get_alg(jwt) != a->alg) {
        *why = "algorithm not allowed";
        goto out;
    }
    json = jwt_get_grants_json(jwt, NULL);
    if (!json || !(claims = cJSON_Parse(json)) || !cJSON_IsObject(claims)) {
        *why = "claims are not a JSON object";
        goto out;
    }
    long long exp, nbf;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, "exp");
    if (!v) {
        *why = "exp missing";
        goto out;
    }
    if (json_int(v, &exp) < 0) {
        *why = "exp is not an integer";
        goto out;
    }
    if (now >= exp + a->leeway) {
        *why = "token expired";
        goto out;
    }
    v = cJSON_GetObjectItemCaseSensitive(claims, "nbf");
    if (v) {
        if (json_int(v, &nbf) < 0) {
            *why = "nbf is not an integer";
            goto out;
        }
        if (now + a->leeway < nbf) {
            *why = "token not yet valid";
            goto out;
        }
    }
    if (a->issuer) {
        v = cJSON_GetObjectItemCaseSensitive(claims, "iss");
        if (!cJSON_IsString(v) || strcmp(v->valuestring, a->issuer) != 0) {
            *why = "issuer mismatch";
            goto out;
        }
    }
    if (a->audience) {
        v = cJSON_GetObjectItemCaseSensitive(claims, "aud");
        if (!v || !aud_matches(v, a->audience)) {
            *why = "audience mismatch";
            goto out;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(claims, "sub");
    if (!v || copy_claim_id(v, id->sub, sizeof id->sub) < 0) {
        *why = "sub missing or invalid";
        goto out;
    }
    if (!utf8_valid((const uint8_t *)id->sub, strlen(id->sub))) {
        *why = "sub is not UTF-8";
        goto out;
    }
    const char *name = NULL;
    static const char *name_claims[] = {"username", "preferred_username", "name"};
    for (size_t i = 0; i < 3 && !name; i++) {
        v = cJSON_GetObjectItemCaseSensitive(claims, name_claims[i]);
        if (cJSON_IsString(v) && *v->valuestring &&
            utf8_valid((const uint8_t *)v->valuestring, strlen(v->valuestring)))
            name = v->valuestring;
    }
    if (!name) name = id->sub;
    size_t nl = utf8_truncate((const uint8_t *)name, strlen(name), JWT_MAX_USERNAME);
    memmove(id->username, name, nl);
    id->username[nl] = '\0';
    id->exp = exp;
    rc = 0;
out:
    cJSON_Delete(claims);
    free(json);
    if (jwt) jwt_free(jwt);
    free(tok);
    return rc;
}

int jwtauth_token_from_request(const http_request_t *req, char *out, size_t outsz)
{
    int n = http_query_param(req->query, req->query_len, "token", out, outsz);
    if (n > 0 || n == -2) return n;
    const http_header_t *h = http_header_find(req, "Authorization");
    if (h) {
        size_t l = h->value_len;
        const char *t = jwtauth_strip_bearer(h->value, &l);
        if (t != h->value && l > 0) {
            if (l >= outsz) return -2;
            memcpy(out, t, l);
            out[l] = '\0';
            return (int)l;
        }
    }
    h = http_header_find(req, "Cookie");
    if (h) {
        n = http_cookie_get(h->value, h->value_len, "Authentication", out, outsz);
        if (n > 0) {
            size_t l = (size_t)n;
            const char *t = jwtauth_strip_bearer(out, &l);
            memmove(out, t, l);
            out[l] = '\0';
            return (int)l;
        }
        if (n == -2) return -2;
    }
    return -1;
}

char *jwtauth_mint(const char *alg, const char *key, size_t key_len, const char *sub,
                   const char *username, long long now, long long ttl)
{
    jwt_t *jwt = NULL;
    char *out = NULL;
    jwt_alg_t a = jwt_str_alg(alg);
    if (a == JWT_ALG_INVAL || a == JWT_ALG_NONE || !key_len) return NULL;
    if (jwt_new(&jwt) != 0) return NULL;
    if (jwt_add_grant(jwt, "sub", sub) != 0) goto out;
    if (username && *username && jwt_add_grant(jwt, "username", username) != 0) goto out;
    if (jwt_add_grant_int(jwt, "iat", (long)now) != 0) goto out;
    if (jwt_add_grant_int(jwt, "exp", (long)(now + ttl)) != 0) goto out;
    if (jwt_set_alg(jwt, a, (const unsigned char *)key, (int)key_len) != 0) goto out;
    out = jwt_encode_str(jwt);
out:
    jwt_free(jwt);
    return out;
}
