/*
 * chatctl: the operator's command line.
 *
 *   chatctl token USER [--username NAME] [--ttl SECONDS]     mint a token (HMAC, RSA or EC)
 *
 * Settings come from the same CHAT_* variables as the servers (CHAT_JWT_SECRET, ...).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "jwtauth.h"
#include "migrate.h"

typedef struct ctl_settings {
    char *jwt_alg;
    char *jwt_secret;
    char *jwt_private_key;
    char *username;
    long long ttl;
    char *database_url;
} ctl_settings_t;

static ctl_settings_t S;

#define O(f) offsetof(ctl_settings_t, f)
static const cfg_opt_t opts[] = {
    {"jwt-alg", CFG_STR, O(jwt_alg), "HS256", 0, 0, NULL, "JWT algorithm of the cluster"},
    {"jwt-secret", CFG_STR, O(jwt_secret), NULL, 0, 0, NULL, "HMAC secret (HS*)"},
    {"jwt-private-key", CFG_STR, O(jwt_private_key), NULL, 0, 0, NULL,
     "PEM private key file for RS*/ES* tokens"},
    {"username", CFG_STR, O(username), NULL, 0, 0, NULL, "display name claim (default: the user id)"},
    {"ttl", CFG_INT, O(ttl), "86400", 1, 366LL * 86400, NULL, "token lifetime in seconds"},
    {"database-url", CFG_STR, O(database_url), NULL, 0, 0, NULL, "PostgreSQL connection string"},
};
#undef O

static const char USAGE[] =
    "chatctl: operate a chat cluster\n"
    "usage: chatctl COMMAND [ARGS] [--option value]...\n\n"
    "commands:\n"
    "  token USER            print a signed token for USER (sub claim)\n"
    "  migrate               apply pending schema migrations (safe to run twice or concurrently)\n";

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    if (p) p[n] = '\0';
    fclose(f);
    return p;
}

static int cmd_token(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: chatctl token USER [--username NAME] [--ttl SECONDS]\n");
        return 2;
    }
    const char *user = argv[1];
    const char *key = S.jwt_secret;
    char *pem = NULL;
    if (strncmp(S.jwt_alg, "HS", 2) != 0) {
        if (!*S.jwt_private_key || !(pem = slurp(S.jwt_private_key))) {
            fprintf(stderr, "chatctl: %s tokens need --jwt-private-key FILE (readable PEM)\n", S.jwt_alg);
            return 2;
        }
        key = pem;
    } else if (strlen(key) < 32) {
        fprintf(stderr, "chatctl: CHAT_JWT_SECRET must be set (at least 32 bytes)\n");
        return 2;
    }
    char *tok = jwtauth_mint(S.jwt_alg, key, strlen(key), user, *S.username ? S.username : user,
                             (long long)time(NULL), S.ttl);
    free(pem);
    if (!tok) {
        fprintf(stderr, "chatctl: could not sign a %s token with the given key\n", S.jwt_alg);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

int main(int argc, char **argv)
{
    char *rest[16];
    int nrest = 0;
    char err[512];
    int rc = cfg_load(opts, sizeof opts / sizeof *opts, &S, argc, argv, USAGE, rest, &nrest, err,
                      sizeof err);
    if (rc == CFG_HELP) return 0;
    if (rc != CFG_OK) {
        fprintf(stderr, "chatctl: %s\n", err);
        return 2;
    }
    if (nrest == 0) {
        fputs(USAGE, stderr);
        return 2;
    }
    if (strcmp(rest[0], "token") == 0) return cmd_token(nrest, rest);
    if (strcmp(rest[0], "migrate") == 0) {
        if (!*S.database_url) {
            fprintf(stderr, "chatctl: migrate needs CHAT_DATABASE_URL or --database-url\n");
            return 2;
        }
        return migrate_apply(S.database_url, 1) == 0 ? 0 : 1;
    }
    fprintf(stderr, "chatctl: unknown command '%s' (see --help)\n", rest[0]);
    return 2;
}
