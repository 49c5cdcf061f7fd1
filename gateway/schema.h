/*
 * schema: the migrations compiled into the binaries, and the start-up check that the
 * database is not behind them (BRIEF §5).
 */
#ifndef GW_SCHEMA_H
#define GW_SCHEMA_H

/* 0 when every embedded migration is applied; otherwise logs which one is missing and
 * returns -1. Runs in the master before forking (blocking libpq is fine there). */
int schema_check(const char *conninfo);

#endif
