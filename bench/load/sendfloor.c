/*
 * sendfloor: what one delivery costs the kernel on this machine, with no chat server at all
 * (issue 7, docs/BENCHMARKS.md "The floor").
 *
 * A delivery, for any server that keeps one TCP connection per client, is at least one
 * write of one small frame on one socket. This tool measures that write and nothing else:
 * it opens --connections loopback TCP connections, forks a reader that drains them with
 * epoll on --reader-cpu (as the load generator does), and from --writer-cpu writes one
 * --size-byte frame to --burst consecutive connections, --rate bursts a second, for
 * --seconds: the shape of a room fan-out. The writer's own CPU time (user + system, from
 * getrusage) divided by the writes is the floor: on loopback it includes the receiving
 * half of TCP and waking the reader, which the kernel runs in the sender's system call,
 * exactly as it does for the servers under test.
 *
 * One JSON object on stdout:
 *   {"writes", "seconds", "user_s", "sys_s", "us_per_write", "connections", "burst", "size"}
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity */
#endif
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct {
    int connections, burst, rate, size, writer_cpu, reader_cpu;
    double seconds;
} o = {1000, 100, 100, 150, -1, -1, 5.0};

static void die(const char *what)
{
    fprintf(stderr, "sendfloor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void pin(int cpu)
{
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double tv_s(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

/* The reader: drain every connection until it has all the bytes, or the writer is gone. */
static void reader(const int *fds, int n, long long want)
{
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fds[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e) < 0) die("epoll_ctl");
    }
    struct epoll_event ev[512];
    char buf[65536];
    long long got = 0;
    while (got < want) {
        int k = epoll_wait(ep, ev, 512, 10000);
        if (k == 0) break; /* the writer stopped early */
        for (int i = 0; i < k; i++) {
            ssize_t r = read(ev[i].data.fd, buf, sizeof buf);
            if (r > 0) got += r;
            else if (r == 0) return;
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: sendfloor [--connections N] [--burst N] [--rate BURSTS/S] [--size BYTES]\n"
                    "                 [--seconds S] [--writer-cpu C] [--reader-cpu C]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"connections", 1, 0, 'c'}, {"burst", 1, 0, 'b'},      {"rate", 1, 0, 'r'},       {"size", 1, 0, 'z'},
        {"seconds", 1, 0, 's'},     {"writer-cpu", 1, 0, 'w'}, {"reader-cpu", 1, 0, 'R'}, {0, 0, 0, 0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (ch) {
        case 'c': o.connections = atoi(optarg); break;
        case 'b': o.burst = atoi(optarg); break;
        case 'r': o.rate = atoi(optarg); break;
        case 'z': o.size = atoi(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'w': o.writer_cpu = atoi(optarg); break;
        case 'R': o.reader_cpu = atoi(optarg); break;
        default: usage();
        }
    }
    if (o.connections < 1 || o.burst < 1 || o.burst > o.connections || o.rate < 1 || o.size < 1 ||
        o.size > 65536 || o.seconds <= 0)
        usage();

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0)
        die("listen");
    int *cli = calloc((size_t)o.connections, sizeof *cli), *srv = calloc((size_t)o.connections, sizeof *srv);
    if (!cli || !srv) die("calloc");
    int one = 1;
    for (int i = 0; i < o.connections; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        srv[i] = accept(l, NULL, NULL);
        if (srv[i] < 0) die("accept");
        /* As the gateway (and Node's ws) set on every client connection. */
        setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    close(l);

    long long bursts = (long long)(o.seconds * o.rate);
    long long writes = bursts * o.burst;
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        pin(o.reader_cpu);
        for (int i = 0; i < o.connections; i++) close(srv[i]);
        reader(cli, o.connections, writes * o.size);
        _exit(0);
    }
    for (int i = 0; i < o.connections; i++) close(cli[i]);
    pin(o.writer_cpu);
    char *frame = malloc((size_t)o.size);
    if (!frame) die("malloc");
    memset(frame, 'x', (size_t)o.size);
    frame[0] = (char)0x81; /* a WebSocket text frame header, for the look of it */

    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now();
    int next = 0;
    for (long long k = 0; k < bursts; k++) {
        for (int j = 0; j < o.burst; j++) {
            struct iovec v = {frame, (size_t)o.size};
            if (writev(srv[next], &v, 1) != o.size) die("writev");
            next = (next + 1) % o.connections;
        }
        /* Open loop: burst k+1 leaves at its scheduled time. */
        double due = t0 + (double)(k + 1) / o.rate, wait = due - now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    double t1 = now();
    getrusage(RUSAGE_SELF, &r1);
    for (int i = 0; i < o.connections; i++) close(srv[i]);
    waitpid(pid, NULL, 0);
    double us = tv_s(r1.ru_utime) - tv_s(r0.ru_utime), ss = tv_s(r1.ru_stime) - tv_s(r0.ru_stime);
    printf("{\"writes\":%lld,\"seconds\":%.3f,\"user_s\":%.3f,\"sys_s\":%.3f,\"us_per_write\":%.3f,"
           "\"connections\":%d,\"burst\":%d,\"size\":%d}\n",
           writes, t1 - t0, us, ss, (us + ss) * 1e6 / (double)writes, o.connections, o.burst, o.size);
    return 0;
}
