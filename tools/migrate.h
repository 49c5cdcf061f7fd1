/*
 * migrate: the schema migrations compiled into the binaries, the runner behind
 * `chatctl migrate`, and the check the gateway master runs before forking.
 *
 * This is start-up and command-line code: it uses blocking libpq and never runs on an
 * event loop (the gateway calls it in the master, before any worker exists).
 */
#ifndef CHAT_MIGRATE_H
#define CHAT_MIGRATE_H

typedef struct migration {
    const char *name; /* "0001_init" */
    const char *sql;
} migration_t;

extern const migration_t chat_migrations[];
extern const int chat_migrations_count;

/*
 * Apply every pending migration in order, each in its own transaction, under a
 * transaction-level advisory lock so that two runners (two instances starting at once)
 * take turns and the second finds nothing to do. Prints one line per applied migration
 * when verbose. 0, or -1 with the error printed to stderr.
 */
int migrate_apply(const char *conninfo, int verbose);

/* 0 when the database has every embedded migration; -1 (naming the first missing one, or
 * the connection error) otherwise. */
int migrate_check(const char *conninfo, char *err, int errlen);

#endif
