/*
 * chatctl: the operator's command line (BRIEF §7). See USAGE below; every command has
 * --help. Settings come from the same CHAT_* variables as the servers (CHAT_JWT_SECRET,
 * CHAT_DATABASE_URL, CHAT_REDIS_URL). A command-line tool: blocking libpq and hiredis are
 * the right tools here (no event loop to stall).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "jwtauth.h"
#include "migrate.h"
#include "envelope.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <signal.h>

typedef struct ctl_settings {
    char *jwt_alg;
    char *jwt_secret;
    char *jwt_private_key;
    char *username;
    long long ttl;
    char *database_url;
    char *redis_url;
    int private_room;
    char *owner;
    long long limit;
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
    {"redis-url", CFG_STR, O(redis_url), "redis://127.0.0.1:6379", 0, 0, NULL, "Redis (for tail)"},
    {"private", CFG_BOOL, O(private_room), "0", 0, 0, NULL, "room create: a private room"},
    {"owner", CFG_STR, O(owner), NULL, 0, 0, NULL, "room create: owner user id (gets the owner role)"},
    {"limit", CFG_INT, O(limit), "50", 1, 100000, NULL, "history: number of messages"},
};
#undef O

static const char USAGE[] =
    "chatctl: operate a chat cluster\n"
    "usage: chatctl COMMAND [ARGS] [--option value]...\n\n"
    "commands:\n"
    "  token USER                    print a signed token for USER (sub claim) [--username --ttl]\n"
    "  migrate                       apply pending schema migrations (safe twice or concurrently)\n"
    "  room create ROOM              create a room [--private] [--owner USER]\n"
    "  room list                     list rooms with their visibility and message count\n"
    "  acl grant ROOM USER ROLE      ROLE: owner, moderator, member or banned\n"
    "  acl revoke ROOM USER          remove USER's row (a private room becomes closed to them)\n"
    "  acl list ROOM                 list a room's ACL\n"
    "  history ROOM                  print the last --limit messages, oldest first\n"
    "  tail ROOM                     print the room's new messages live (through Redis)\n";

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

static PGconn *db(void)
{
    if (!*S.database_url) {
        fprintf(stderr, "chatctl: set CHAT_DATABASE_URL or --database-url\n");
        return NULL;
    }
    PGconn *c = PQconnectdb(S.database_url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "chatctl: cannot connect to the database: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Run one statement; print its rows as aligned columns when `show`. 0 ok, 1 error. */
static int run(PGconn *c, const char *sql, int n, const char *const *params, int show, int *rows)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "chatctl: %s", PQresultErrorMessage(r));
        PQclear(r);
        return 1;
    }
    if (rows) *rows = st == PGRES_TUPLES_OK ? PQntuples(r) : atoi(PQcmdTuples(r));
    if (show && st == PGRES_TUPLES_OK) {
        int nf = PQnfields(r), nt = PQntuples(r);
        int w[16] = {0};
        for (int f = 0; f < nf && f < 16; f++) {
            w[f] = (int)strlen(PQfname(r, f));
            for (int t = 0; t < nt; t++)
                if ((int)strlen(PQgetvalue(r, t, f)) > w[f] && f < nf - 1) w[f] = (int)strlen(PQgetvalue(r, t, f));
        }
        for (int f = 0; f < nf && f < 16; f++) printf("%-*s%s", w[f], PQfname(r, f), f < nf - 1 ? "  " : "\n");
        for (int t = 0; t < nt; t++)
            for (int f = 0; f < nf && f < 16; f++)
                printf("%-*s%s", w[f], PQgetvalue(r, t, f), f < nf - 1 ? "  " : "\n");
    }
    PQclear(r);
    return 0;
}

static int check_room(const char *room)
{
    if (!chat_room_id_valid(room, strlen(room))) {
        fprintf(stderr, "chatctl: invalid room id '%s' (1-64 of A-Z a-z 0-9 _ . : -)\n", room);
        return -1;
    }
    return 0;
}

static int cmd_room(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "list") == 0 && argc == 2) {
        PGconn *c = db();
        if (!c) return 1;
        int rc = run(c,
                     "SELECT r.id AS room, CASE WHEN r.is_private THEN 'private' ELSE 'public' END AS visibility,"
                     " coalesce(r.owner_id, '') AS owner, r.last_seq AS messages, r.created_at::timestamp(0) AS created"
                     " FROM rooms r ORDER BY r.id",
                     0, NULL, 1, NULL);
        PQfinish(c);
        return rc;
    }
    if (argc == 3 && strcmp(argv[1], "create") == 0) {
        if (check_room(argv[2]) < 0) return 2;
        PGconn *c = db();
        if (!c) return 1;
        const char *p[3] = {argv[2], S.private_room ? "t" : "f", *S.owner ? S.owner : NULL};
        int n = 0;
        int rc = run(c, "INSERT INTO rooms (id, is_private, owner_id) VALUES ($1, $2::boolean, $3) ON CONFLICT DO NOTHING",
                     3, p, 0, &n);
        if (!rc && n == 0) {
            fprintf(stderr, "chatctl: room '%s' already exists\n", argv[2]);
            rc = 1;
        }
        if (!rc && *S.owner) {
            const char *q[2] = {argv[2], S.owner};
            rc = run(c, "INSERT INTO room_acl (room_id, user_id, role) VALUES ($1, $2, 'owner') "
                        "ON CONFLICT (room_id, user_id) DO UPDATE SET role = 'owner'", 2, q, 0, NULL);
        }
        if (!rc) printf("created %s room %s\n", S.private_room ? "private" : "public", argv[2]);
        PQfinish(c);
        return rc;
    }
    fprintf(stderr, "usage: chatctl room create ROOM [--private] [--owner USER] | chatctl room list\n");
    return 2;
}

static int cmd_acl(int argc, char **argv)
{
    static const char *roles[] = {"owner", "moderator", "member", "banned"};
    int grant = argc == 5 && strcmp(argv[1], "grant") == 0;
    int revoke = argc == 4 && strcmp(argv[1], "revoke") == 0;
    int list = argc == 3 && strcmp(argv[1], "list") == 0;
    if (!grant && !revoke && !list) {
        fprintf(stderr, "usage: chatctl acl grant ROOM USER ROLE | acl revoke ROOM USER | acl list ROOM\n"
                        "       ROLE: owner, moderator, member, banned\n");
        return 2;
    }
    if (check_room(argv[2]) < 0) return 2;
    if (grant) {
        int ok = 0;
        for (int i = 0; i < 4; i++) ok |= strcmp(argv[4], roles[i]) == 0;
        if (!ok) {
            fprintf(stderr, "chatctl: unknown role '%s' (owner, moderator, member, banned)\n", argv[4]);
            return 2;
        }
    }
    PGconn *c = db();
    if (!c) return 1;
    int rc, n = 0;
    if (list) {
        const char *p[1] = {argv[2]};
        rc = run(c, "SELECT a.user_id AS user, coalesce(u.username, '') AS username, a.role, a.granted_at::timestamp(0) AS granted"
                    " FROM room_acl a LEFT JOIN users u ON u.id = a.user_id WHERE a.room_id = $1 ORDER BY a.role, a.user_id",
                 1, p, 1, NULL);
    } else if (grant) {
        const char *p[3] = {argv[2], argv[3], argv[4]};
        rc = run(c, "INSERT INTO room_acl (room_id, user_id, role) SELECT $1, $2, $3::room_role"
                    " WHERE EXISTS (SELECT 1 FROM rooms WHERE id = $1)"
                    " ON CONFLICT (room_id, user_id) DO UPDATE SET role = excluded.role, granted_at = now()",
                 3, p, 0, &n);
        if (!rc && n == 0) {
            fprintf(stderr, "chatctl: no room '%s' (chatctl room create %s)\n", argv[2], argv[2]);
            rc = 1;
        }
        if (!rc) printf("%s is %s in %s\n", argv[3], argv[4], argv[2]);
    } else {
        const char *p[2] = {argv[2], argv[3]};
        rc = run(c, "DELETE FROM room_acl WHERE room_id = $1 AND user_id = $2", 2, p, 0, &n);
        if (!rc && n == 0) {
            fprintf(stderr, "chatctl: %s has no ACL row in %s\n", argv[3], argv[2]);
            rc = 1;
        }
        if (!rc) printf("revoked %s in %s\n", argv[3], argv[2]);
    }
    PQfinish(c);
    return rc;
}

static int cmd_history(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: chatctl history ROOM [--limit N]\n");
        return 2;
    }
    if (check_room(argv[1]) < 0) return 2;
    PGconn *c = db();
    if (!c) return 1;
    char lim[24];
    snprintf(lim, sizeof lim, "%lld", S.limit);
    const char *p[2] = {argv[1], lim};
    int rc = run(c, "SELECT seq, created_at::timestamp(3) AS created_at, username, body FROM ("
                    " SELECT * FROM room_history WHERE room_id = $1 ORDER BY seq DESC LIMIT $2::int) h ORDER BY seq",
                 2, p, 1, NULL);
    PQfinish(c);
    return rc;
}

static volatile sig_atomic_t g_stop;
static void on_sigint(int s)
{
    (void)s;
    g_stop = 1;
}

static int cmd_tail(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: chatctl tail ROOM [--redis-url URL]\n");
        return 2;
    }
    if (check_room(argv[1]) < 0) return 2;
    char host[256] = "127.0.0.1";
    int port = 6379;
    const char *u = S.redis_url;
    if (strncmp(u, "redis://", 8) == 0) {
        const char *h = strchr(u + 8, '@');
        h = h ? h + 1 : u + 8;
        sscanf(h, "%255[^:/]:%d", host, &port);
    }
    redisContext *rc = redisConnect(host, port);
    if (!rc || rc->err) {
        fprintf(stderr, "chatctl: cannot connect to Redis at %s: %s\n", S.redis_url, rc ? rc->errstr : "out of memory");
        if (rc) redisFree(rc);
        return 1;
    }
    char ch[128];
    snprintf(ch, sizeof ch, "chat:room:%s", argv[1]);
    redisReply *r = redisCommand(rc, "SUBSCRIBE %s", ch);
    if (r) freeReplyObject(r);
    signal(SIGINT, on_sigint);
    fprintf(stderr, "tailing %s (Ctrl-C to stop)\n", argv[1]);
    while (!g_stop) {
        void *reply = NULL;
        if (redisGetReply(rc, &reply) != REDIS_OK) break;
        redisReply *m = reply;
        if (m && m->type == REDIS_REPLY_ARRAY && m->elements == 3 && m->element[2]->type == REDIS_REPLY_STRING) {
            cJSON *j = cJSON_Parse(m->element[2]->str);
            const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "event");
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "text");
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(d, "username");
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "seq");
            if (cJSON_IsString(ev) && strcmp(ev->valuestring, "new_message") == 0 && cJSON_IsString(t)) {
                printf("%5.0f  %s: %s\n", cJSON_IsNumber(s) ? s->valuedouble : 0.0,
                       cJSON_IsString(n) ? n->valuestring : "?", t->valuestring);
            } else {
                printf("%s\n", m->element[2]->str);
            }
            fflush(stdout);
            cJSON_Delete(j);
        }
        if (m) freeReplyObject(m);
    }
    redisFree(rc);
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
    if (strcmp(rest[0], "room") == 0) return cmd_room(nrest, rest);
    if (strcmp(rest[0], "acl") == 0) return cmd_acl(nrest, rest);
    if (strcmp(rest[0], "history") == 0) return cmd_history(nrest, rest);
    if (strcmp(rest[0], "tail") == 0) return cmd_tail(nrest, rest);
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
