/*
 * procstat: the servers' resources from /proc: CPU time (utime + stime of each process),
 * resident memory (all of it, and the anonymous part alone: the heap and stacks, without
 * the code and libraries mapped from files), and the kernel's TCP socket memory (/proc/net/sockstat).
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
/* Seconds of CPU (user + system) used by the set so far; the user part into *user when
 * not NULL. */
double procset_cpu(const procset_t *s, double *user);
/* Resident memory of the set, KiB, from the /proc/PID/status line `field` ("VmRSS",
 * "RssAnon"); per-process values into each[] when not NULL. */
long procset_mem_kib(const procset_t *s, const char *field, long *each);
/* TCP socket buffer memory in KiB (sockstat "TCP: ... mem N" pages). */
long sockstat_tcp_mem_kib(void);

#endif
