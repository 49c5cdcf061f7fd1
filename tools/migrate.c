#include "migrate.h"

#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

/* An arbitrary constant shared by every runner: pg_advisory_xact_lock(MIGRATE_LOCK). */
#define MIGRATE_LOCK "7345120991"

static const char CREATE_TABLE[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";

static int exec_ok(PGconn *c, const char *sql, char *err, int errlen)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) snprintf(err, (size_t)errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static int applied(PGconn *c, const char *name)
{
    const char *params[1] = {name};
    PGresult *r = PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL,
                               params, NULL, NULL, 0);
    int yes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(r);
    return yes;
}

static void quiet(void *arg, const char *message)
{
}

static PGconn *open_db(const char *conninfo, char *err, int errlen)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, (size_t)errlen, "cannot connect to the database: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

int migrate_apply(const char *conninfo, int verbose)
{
    char err[1024];
    PGconn *c = open_db(conninfo, err, sizeof err);
    if (!c) {
        fprintf(stderr, "%s", err);
        return -1;
    }
    int rc = 0, done = 0;
    for (int i = 0; i < chat_migrations_count && rc == 0; i++) {
        const migration_t *m = &chat_migrations[i];
        /* One transaction per migration; the lock serialises concurrent runners and is
         * released at COMMIT. */
        if (exec_ok(c, "BEGIN", err, sizeof err) < 0 ||
            exec_ok(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", err, sizeof err) < 0 ||
            exec_ok(c, CREATE_TABLE, err, sizeof err) < 0) {
            rc = -1;
            break;
        }
        if (applied(c, m->name)) {
            exec_ok(c, "COMMIT", err, sizeof err);
            continue;
        }
        const char *params[1] = {m->name};
        PGresult *r;
        if (exec_ok(c, m->sql, err, sizeof err) < 0) {
            fprintf(stderr, "migration %s failed: %s", m->name, err);
            exec_ok(c, "ROLLBACK", err, sizeof err);
            rc = -1;
            break;
        }
        r = PQexecParams(c, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, NULL, params,
                         NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) snprintf(err, sizeof err, "%s", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok || exec_ok(c, "COMMIT", err, sizeof err) < 0) {
            fprintf(stderr, "migration %s failed: %s", m->name, err);
            exec_ok(c, "ROLLBACK", err, sizeof err);
            rc = -1;
            break;
        }
        done++;
        if (verbose) printf("applied %s\n", m->name);
    }
    if (rc < 0 && err[0]) fprintf(stderr, "migrate: %s", err);
    if (rc == 0 && verbose) printf("schema up to date (%d applied now, %d total)\n", done, chat_migrations_count);
    PQfinish(c);
    return rc;
}

int migrate_check(const char *conninfo, char *err, int errlen)
{
    PGconn *c = open_db(conninfo, err, errlen);
    if (!c) return -1;
    PGresult *r = PQexec(c, "SELECT version FROM schema_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, (size_t)errlen, "the database has no schema_migrations table: run `chatctl migrate` (first missing migration: %s)",
                 chat_migrations_count ? chat_migrations[0].name : "?");
        PQclear(r);
        PQfinish(c);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < chat_migrations_count && rc == 0; i++) {
        int found = 0;
        for (int j = 0; j < PQntuples(r) && !found; j++)
            found = strcmp(PQgetvalue(r, j, 0), chat_migrations[i].name) == 0;
        if (!found) {
            snprintf(err, (size_t)errlen, "the database schema is behind: migration %s is not applied (run `chatctl migrate`)",
                     chat_migrations[i].name);
            rc = -1;
        }
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}
