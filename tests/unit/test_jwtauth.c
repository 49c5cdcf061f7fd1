/* Unit tests for common/jwtauth.c: the JWT matrix of issue 2 and BRIEF §4. Tokens are built
 * by hand (base64url + HMAC/RSA from OpenSSL) so malformed claims can be expressed. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <string.h>
#include <time.h>

#include "jwtauth.h"

#define SECRET "0123456789abcdef0123456789abcdef-secret"
#define NOW 1800000000LL

static void b64url(buf_t *b, const void *p, size_t n)
{
    char *tmp = malloc(4 * ((n + 2) / 3) + 1);
    int l = EVP_EncodeBlock((unsigned char *)tmp, p, (int)n);
    for (int i = 0; i < l; i++) {
        if (tmp[i] == '=') break;
        buf_append_char(b, tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i]);
    }
    free(tmp);
}

/* header.payload.HMAC-SHA256(secret) */
static char *hs256(const char *header, const char *payload, const char *secret, size_t slen)
{
    buf_t b = BUF_INIT;
    b64url(&b, header, strlen(header));
    buf_append_char(&b, '.');
    b64url(&b, payload, strlen(payload));
    unsigned char mac[32];
    unsigned int ml = 32;
    HMAC(EVP_sha256(), secret, (int)slen, (const unsigned char *)b.data, b.len, mac, &ml);
    buf_append_char(&b, '.');
    b64url(&b, mac, ml);
    return buf_steal(&b, NULL);
}

static char *claims(const char *extra)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "{\"sub\":\"42\",\"username\":\"alice\"%s%s}", *extra ? "," : "", extra);
    return buf_steal(&b, NULL);
}

static jwtauth_t *hs_auth(void)
{
    char err[256];
    jwtauth_opts_t o = {"HS256", SECRET, strlen(SECRET), NULL, NULL, 0};
    jwtauth_t *a = jwtauth_new(&o, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    return a;
}

static int verify(jwtauth_t *a, const char *tok, jwt_identity_t *id, const char **why)
{
    return jwtauth_verify(a, tok, strlen(tok), NOW, id, why);
}

static const char *HDR = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

Test(jwtauth, valid_hs256)
{
    jwtauth_t *a = hs_auth();
    char *c = claims("\"exp\":1800000100");
    char *t = hs256(HDR, c, SECRET, strlen(SECRET));
    jwt_identity_t id;
    const char *why = NULL;
    cr_assert_eq(verify(a, t, &id, &why), 0, "%s", why);
    cr_assert_str_eq(id.sub, "42");
    cr_assert_str_eq(id.username, "alice");
    /* With a Bearer prefix too. */
    char bearer[2048];
    snprintf(bearer, sizeof bearer, "Bearer %s", t);
    cr_assert_eq(verify(a, bearer, &id, &why), 0);
    free(c);
    free(t);
    jwtauth_free(a);
}

Test(jwtauth, matrix_rejections)
{
    jwtauth_t *a = hs_auth();
    jwt_identity_t id;
    const char *why;
    struct {
        const char *header, *extra, *secret;
        const char *name;
    } cases[] = {
        {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "\"exp\":1800000100", NULL, "alg none"},
        {HDR, "\"exp\":1800000100", "another-secret-that-is-long-enough-xx", "wrong key"},
        {HDR, "\"exp\":1799999999", SECRET, "expired"},
        {HDR, "\"exp\":1800000000", SECRET, "expires now"},
        {HDR, "\"exp\":1800000100,\"nbf\":1800000050", SECRET, "nbf in the future"},
        {HDR, "", SECRET, "exp missing"},
        {HDR, "\"exp\":\"1800000100\"", SECRET, "exp a string"},
        {HDR, "\"exp\":1800000100.5", SECRET, "exp not an integer"},
        {HDR, "\"exp\":1800000100,\"nbf\":\"0\"", SECRET, "nbf a string"},
        {"{\"alg\":\"HS512\",\"typ\":\"JWT\"}", "\"exp\":1800000100", SECRET, "other hmac alg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *c = claims(cases[i].extra);
        char *t;
        if (!cases[i].secret) {
            /* alg:none: header.payload. with an empty signature. */
            buf_t b = BUF_INIT;
            b64url(&b, cases[i].header, strlen(cases[i].header));
            buf_append_char(&b, '.');
            b64url(&b, c, strlen(c));
            buf_append_char(&b, '.');
            t = buf_steal(&b, NULL);
        } else {
            t = hs256(cases[i].header, c, cases[i].secret, strlen(cases[i].secret));
        }
        why = NULL;
        cr_assert_eq(verify(a, t, &id, &why), -1, "case '%s' was accepted", cases[i].name);
        cr_assert_not_null(why);
        free(c);
        free(t);
    }
    jwtauth_free(a);
}

Test(jwtauth, flipped_signature_byte_and_garbage)
{
    jwtauth_t *a = hs_auth();
    char *c = claims("\"exp\":1800000100");
    char *t = hs256(HDR, c, SECRET, strlen(SECRET));
    jwt_identity_t id;
    const char *why;
    size_t n = strlen(t);
    for (size_t pos = n - 10; pos < n; pos++) {
        char *m = strdup(t);
        m[pos] = m[pos] == 'A' ? 'B' : 'A';
        cr_assert_eq(verify(a, m, &id, &why), -1, "flip at %zu accepted", pos);
        free(m);
    }
    const char *junk[] = {"", "a", "a.b", "a.b.c", "....", "Bearer ", "\xff\xfe.x.y"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++)
        cr_assert_eq(verify(a, junk[i], &id, &why), -1);
    free(c);
    free(t);
    jwtauth_free(a);
}

/* Only three non-empty base64url segments reach libjwt: it overflows a zero-byte buffer on
 * an empty segment (valgrind). The refusal happens before decoding: "malformed token". */
Test(jwtauth, malformed_shapes_are_refused_before_libjwt)
{
    jwtauth_t *a = hs_auth();
    char *c = claims("\"exp\":1800000100");
    char *t = hs256(HDR, c, SECRET, strlen(SECRET));
    jwt_identity_t id;
    const char *why = NULL;
    cr_assert_eq(verify(a, t, &id, &why), 0, "%s", why);
    const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
    buf_t b = BUF_INIT;
    const char *shapes[16];
    size_t n = 0;
    char *owned[16];
    /* empty header, empty payload, empty signature, a fourth segment, padding, a space */
    buf_printf(&b, "%s", d1);
    owned[n] = buf_steal(&b, NULL), shapes[n] = owned[n], n++;
    buf_printf(&b, "%.*s.%s", (int)(d1 - t), t, d2);
    owned[n] = buf_steal(&b, NULL), shapes[n] = owned[n], n++;
    buf_printf(&b, "%.*s.", (int)(d2 - t), t);
    owned[n] = buf_steal(&b, NULL), shapes[n] = owned[n], n++;
    buf_printf(&b, "%s.%s", t, d2 + 1);
    owned[n] = buf_steal(&b, NULL), shapes[n] = owned[n], n++;
    buf_printf(&b, "%s=", t);
    owned[n] = buf_steal(&b, NULL), shapes[n] = owned[n], n++;
    buf_printf(&b, "%s ", t);
    owned[n] = buf_steal(&b, NULL), shapes[n] = owned[n], n++;
    buf_printf(&b, "%sAA", t); /* signature of 43+2 = 4k+1 characters: never base64 */
    owned[n] = buf_steal(&b, NULL), shapes[n] = owned[n], n++;
    const char *fixed[] = {"...", "..", ".", "a..b", "x.y.", "\xff\xfe.x.y"};
    size_t nowned = n;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) shapes[n++] = fixed[i];
    for (size_t i = 0; i < n; i++) {
        why = NULL;
        cr_assert_eq(verify(a, shapes[i], &id, &why), -1, "shape %zu accepted: %s", i, shapes[i]);
        cr_assert_str_eq(why, "malformed token", "shape %zu: %s", i, shapes[i]);
    }
    for (size_t i = 0; i < nowned; i++) free(owned[i]);
    free(c);
    free(t);
    jwtauth_free(a);
}

Test(jwtauth, token_of_16k_is_refused)
{
    jwtauth_t *a = hs_auth();
    buf_t pad = BUF_INIT;
    buf_append_str(&pad, "\"exp\":1800000100,\"pad\":\"");
    for (int i = 0; i < 12000; i++) buf_append_char(&pad, 'x');
    buf_append_char(&pad, '"');
    char *c = claims(buf_cstr(&pad));
    char *t = hs256(HDR, c, SECRET, strlen(SECRET));
    cr_assert_gt(strlen(t), 16000);
    jwt_identity_t id;
    const char *why;
    cr_assert_eq(verify(a, t, &id, &why), -1);
    cr_assert_str_eq(why, "token too long");
    free(c);
    free(t);
    buf_free(&pad);
    jwtauth_free(a);
}

Test(jwtauth, constructor_refuses_weak_configuration)
{
    char err[256];
    jwtauth_opts_t o = {"HS256", "short", 5, NULL, NULL, 0};
    cr_assert_null(jwtauth_new(&o, err, sizeof err));
    cr_assert(strstr(err, "32 bytes"));
    o.key = "";
    o.key_len = 0;
    cr_assert_null(jwtauth_new(&o, err, sizeof err));
    o.alg = "none";
    o.key = SECRET;
    o.key_len = strlen(SECRET);
    cr_assert_null(jwtauth_new(&o, err, sizeof err));
    o.alg = "XX999";
    cr_assert_null(jwtauth_new(&o, err, sizeof err));
}

Test(jwtauth, issuer_audience_and_claim_shapes)
{
    char err[256];
    jwtauth_opts_t o = {"HS256", SECRET, strlen(SECRET), "https://issuer", "chat", 0};
    jwtauth_t *a = jwtauth_new(&o, err, sizeof err);
    cr_assert_not_null(a);
    jwt_identity_t id;
    const char *why;
    struct {
        const char *extra;
        int ok;
    } cases[] = {
        {"\"exp\":1800000100,\"iss\":\"https://issuer\",\"aud\":\"chat\"", 1},
        {"\"exp\":1800000100,\"iss\":\"https://issuer\",\"aud\":[\"x\",\"chat\"]", 1},
        {"\"exp\":1800000100,\"iss\":\"https://other\",\"aud\":\"chat\"", 0},
        {"\"exp\":1800000100,\"iss\":\"https://issuer\",\"aud\":\"other\"", 0},
        {"\"exp\":1800000100,\"aud\":\"chat\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *c = claims(cases[i].extra);
        char *t = hs256(HDR, c, SECRET, strlen(SECRET));
        cr_assert_eq(verify(a, t, &id, &why) == 0, cases[i].ok, "case %zu", i);
        free(c);
        free(t);
    }
    jwtauth_free(a);

    a = hs_auth();
    char *t = hs256(HDR, "{\"sub\":7,\"name\":\"Bob B\",\"exp\":1800000100}", SECRET, strlen(SECRET));
    cr_assert_eq(verify(a, t, &id, &why), 0);
    cr_assert_str_eq(id.sub, "7");
    cr_assert_str_eq(id.username, "Bob B");
    free(t);
    t = hs256(HDR, "{\"sub\":\"u-9\",\"exp\":1800000100}", SECRET, strlen(SECRET));
    cr_assert_eq(verify(a, t, &id, &why), 0);
    cr_assert_str_eq(id.username, "u-9");
    free(t);
    t = hs256(HDR, "{\"exp\":1800000100}", SECRET, strlen(SECRET));
    cr_assert_eq(verify(a, t, &id, &why), -1);
    free(t);
    t = hs256(HDR, "[1,2]", SECRET, strlen(SECRET));
    cr_assert_eq(verify(a, t, &id, &why), -1);
    free(t);
    jwtauth_free(a);
}

static void rsa_pems(char **priv, char **pub)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    cr_assert_not_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    *priv = strndup(p, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    n = BIO_get_mem_data(b, &p);
    *pub = strndup(p, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
}

Test(jwtauth, rs256_and_key_confusion)
{
    char *priv, *pub;
    rsa_pems(&priv, &pub);
    char err[256];
    jwtauth_opts_t o = {"RS256", pub, strlen(pub), NULL, NULL, 0};
    jwtauth_t *a = jwtauth_new(&o, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    jwt_identity_t id;
    const char *why;

    char *good = jwtauth_mint("RS256", priv, strlen(priv), "42", "alice", NOW, 600);
    cr_assert_not_null(good);
    cr_assert_eq(verify(a, good, &id, &why), 0, "%s", why);
    cr_assert_str_eq(id.sub, "42");

    /* HS256 signed with the RS256 public key as the HMAC secret. */
    char *c = claims("\"exp\":1800000100");
    char *evil = hs256(HDR, c, pub, strlen(pub));
    cr_assert_eq(verify(a, evil, &id, &why), -1);
    /* And a valid HS256 token is not acceptable to an RS256 verifier either. */
    char *hs = hs256(HDR, c, SECRET, strlen(SECRET));
    cr_assert_eq(verify(a, hs, &id, &why), -1);
    free(c);
    free(evil);
    free(hs);
    free(good);
    free(priv);
    free(pub);
    jwtauth_free(a);
}

Test(jwtauth, mint_then_verify)
{
    jwtauth_t *a = hs_auth();
    char *t = jwtauth_mint("HS256", SECRET, strlen(SECRET), "1001", "carol", NOW, 60);
    jwt_identity_t id;
    const char *why;
    cr_assert_eq(verify(a, t, &id, &why), 0);
    cr_assert_str_eq(id.username, "carol");
    cr_assert_eq(id.exp, NOW + 60);
    cr_assert_eq(jwtauth_verify(a, t, strlen(t), NOW + 61, &id, &why), -1);
    free(t);
    jwtauth_free(a);
}

Test(jwtauth, token_sources_in_order)
{
    http_request_t req;
    char out[256];
    const char *s = "GET /ws?token=Q HTTP/1.1\r\nAuthorization: Bearer H\r\nCookie: Authentication=C\r\n\r\n";
    cr_assert_gt(http_parse_request(s, strlen(s), &req, 8192, 64), 0);
    cr_assert_eq(jwtauth_token_from_request(&req, out, sizeof out), 1);
    cr_assert_str_eq(out, "Q");
    s = "GET /ws HTTP/1.1\r\nAuthorization: Bearer H\r\nCookie: Authentication=C\r\n\r\n";
    http_parse_request(s, strlen(s), &req, 8192, 64);
    cr_assert_eq(jwtauth_token_from_request(&req, out, sizeof out), 1);
    cr_assert_str_eq(out, "H");
    s = "GET /ws HTTP/1.1\r\nCookie: x=1; Authentication=Bearer%20C\r\n\r\n";
    http_parse_request(s, strlen(s), &req, 8192, 64);
    cr_assert_eq(jwtauth_token_from_request(&req, out, sizeof out), 1);
    cr_assert_str_eq(out, "C");
    s = "GET /ws HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n";
    http_parse_request(s, strlen(s), &req, 8192, 64);
    cr_assert_eq(jwtauth_token_from_request(&req, out, sizeof out), -1);
}
