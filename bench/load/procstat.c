#include "procstat.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void add(procset_t *s, int pid)
{
    for (int i = 0; i < s->n; i++)
        if (s->pids[i] == pid) return;
    if (s->n < PS_MAX) s->pids[s->n++] = pid;
}

static int ppid_of(int pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    if (!rp) return -1;
    int ppid = -1;
    char st;
    if (sscanf(rp + 2, "%c %d", &st, &ppid) != 2) return -1;
    return ppid;
}

static void add_tree(procset_t *s, int root)
{
    add(s, root);
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    int found = 1;
    /* Repeat until no new descendant appears (children listed before parents). */
    while (found) {
        found = 0;
        rewinddir(d);
        while ((e = readdir(d))) {
            if (!isdigit((unsigned char)e->d_name[0])) continue;
            int pid = atoi(e->d_name), pp = ppid_of(pid), known = 0, in = 0;
            for (int i = 0; i < s->n; i++) {
                if (s->pids[i] == pid) known = 1;
                if (s->pids[i] == pp) in = 1;
            }
            if (in && !known) {
                add(s, pid);
                found = 1;
            }
        }
    }
    closedir(d);
}

void procset_parse(procset_t *s, const char *spec)
{
    char *copy = strdup(spec), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strncmp(t, "tree:", 5) == 0) add_tree(s, atoi(t + 5));
        else if (atoi(t) > 0) add(s, atoi(t));
    }
    free(copy);
}

double procset_cpu(const procset_t *s, double *user)
{
    long tck = sysconf(_SC_CLK_TCK);
    double total = 0, utotal = 0;
    for (int i = 0; i < s->n; i++) {
        char p[64], buf[1024];
        snprintf(p, sizeof p, "/proc/%d/stat", s->pids[i]);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (!rp) continue;
        unsigned long ut = 0, st = 0;
        /* fields after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
         * majflt cmajflt utime(14) stime(15) */
        if (sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2) {
            total += (double)(ut + st) / (double)tck;
            utotal += (double)ut / (double)tck;
        }
    }
    if (user) *user = utotal;
    return total;
}

long procset_mem_kib(const procset_t *s, const char *field, long *each)
{
    long total = 0;
    size_t fl = strlen(field);
    for (int i = 0; i < s->n; i++) {
        char p[64], line[256];
        long v = 0;
        snprintf(p, sizeof p, "/proc/%d/status", s->pids[i]);
        FILE *f = fopen(p, "r");
        if (f) {
            while (fgets(line, sizeof line, f)) {
                if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
                    v = atol(line + fl + 1);
                    break;
                }
            }
            fclose(f);
        }
        if (each) each[i] = v;
        total += v;
    }
    return total;
}

long sockstat_tcp_mem_kib(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    if (!f) return -1;
    char line[256];
    long pages = -1;
    while (fgets(line, sizeof line, f)) {
        char *m = strstr(line, "TCP:");
        char *mem = m ? strstr(line, " mem ") : NULL;
        if (mem) pages = atol(mem + 5);
    }
    fclose(f);
    return pages < 0 ? -1 : pages * (sysconf(_SC_PAGESIZE) / 1024);
}
