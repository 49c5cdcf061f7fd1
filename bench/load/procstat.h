/*
 * procstat: the servers' resources from /proc: CPU time (utime + stime of each process),
 * resident memory, and the kernel's TCP socket memory (/proc/net/sockstat).
 */
#ifndef LG_PROCSTAT_H
#define LG_PROCSTAT_H

#include <stddef.h>

#define PS_MAX 256

typedef struct procset {
    int pids[PS_MAX];
    int n;
} procset_t;

/* Add pids from "1,2,3"; "tree:PID" adds PID and all its descendants. */
void procset_parse(procset_t *s, const char *spec);
/* Seconds of CPU (user + system) used by the set so far. */
double procset_cpu(const procset_t *s);
/* Resident memory of the set, KiB; per-process values into rss[] when not NULL. */
long procset_rss_kib(const procset_t *s, long *rss);
/* TCP socket buffer memory in KiB (sockstat "TCP: ... mem N" pages). */
long sockstat_tcp_mem_kib(void);

#endif
