/*
 * chat-gateway master: reads the configuration, checks the database schema, binds one
 * listening socket per worker (SO_REUSEPORT, so the kernel spreads connections), forks the
 * workers and supervises them: a worker that dies is re-forked at once (its metrics folded
 * into the retired slot), SIGTERM becomes a graceful drain of every worker. The master
 * holds no client connection and runs no event loop; it waits for signals.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"
#include "jwtauth.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "settings.h"
#include "sio.h"
#include "worker.h"

typedef struct child {
    pid_t pid;
    int listen_fd;
    struct timespec started;
} child_t;

static int bind_listener(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    char port[16];
    snprintf(port, sizeof port, "%lld", g_cfg.port);
    int rc = getaddrinfo(*g_cfg.host ? g_cfg.host : NULL, port, &hints, &ai);
    if (rc != 0) {
        log_error("bind_failed", "host=%s err=\"%s\"", g_cfg.host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("bind_failed", "err=\"%s\"", strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        log_error("bind_failed", "host=%s port=%lld err=\"%s\"", g_cfg.host, g_cfg.port,
                  strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static pid_t spawn(int index, int n, child_t *kids, gw_metrics_shm_t *shm, int *handoff)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork_failed", "worker=%d err=\"%s\"", index, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the master, which drains the workers */
        for (int i = 0; i < n; i++)
            if (i != index) close(kids[i].listen_fd);
        int *peers = NULL;
        int inbox = -1;
        if (handoff) {
            peers = malloc((size_t)n * sizeof *peers);
            for (int i = 0; i < n; i++) {
                peers[i] = handoff[2 * i + 1];
                if (i != index) close(handoff[2 * i]);
            }
            inbox = handoff[2 * index];
        }
        int rc = worker_run(index, n, kids[index].listen_fd, shm, inbox, peers);
        free(peers);
        exit(rc); /* not _exit: LeakSanitizer checks at exit */
    }
    kids[index].pid = pid;
    clock_gettime(CLOCK_MONOTONIC, &kids[index].started);
    return pid;
}

static double since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
    int rc = settings_load(argc, argv);
    if (rc == 1) return 0;
    if (rc < 0) return 2;
    log_setup(g_cfg.log_level, g_cfg.log_format == LOGFMT_JSON, "gateway", g_cfg.instance_id, -1);

    if (!g_cfg.echo && !g_cfg.conformance) {
        char err[256];
        jwtauth_opts_t jo = {g_cfg.jwt_alg, g_cfg.jwt_key_material, strlen(g_cfg.jwt_key_material),
                             g_cfg.jwt_issuer, g_cfg.jwt_audience, g_cfg.jwt_leeway};
        jwtauth_t *a = jwtauth_new(&jo, err, sizeof err);
        if (!a) {
            fprintf(stderr, "chat-gateway: %s\n", err);
            return 2;
        }
        jwtauth_free(a);
    }
    if (*g_cfg.database_url) {
        char err[512];
        if (migrate_check(g_cfg.database_url, err, sizeof err) < 0) {
            log_error("schema_check_failed", "err=\"%s\"", err);
            fprintf(stderr, "chat-gateway: %s\n", err);
            return 3;
        }
    }

    int n = (int)g_cfg.workers;
    if (n == 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > GW_MAX_WORKERS) n = GW_MAX_WORKERS;
    if (n > 1 && !*g_cfg.broker_socket) {
        log_warn("standalone_single_worker",
                 "reason=\"no --broker-socket: workers cannot share rooms, using 1 worker\"");
        n = 1;
    }
    if (*g_cfg.database_url == '\0' && !g_cfg.echo && !g_cfg.conformance)
        log_warn("memory_store", "reason=\"no --database-url: messages are kept in memory only\"");

    /* Every connection is a descriptor: use all the hard limit allows. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (long long)rl.rlim_cur < g_cfg.max_connections + 64) {
        /* Refuse connections cleanly at the cap rather than meet EMFILE in accept(); 64
         * descriptors stay free for the listener, the loop, the broker and PostgreSQL. */
        long long cap = (long long)rl.rlim_cur > 128 ? (long long)rl.rlim_cur - 64 : (long long)rl.rlim_cur / 2;
        log_info("fd_limit", "limit=%llu max_connections=%lld reason=\"each worker holds at most limit-64 connections\"",
                 (unsigned long long)rl.rlim_cur, cap);
        g_cfg.max_connections = cap > 0 ? cap : 1;
    }

    httpd_static_load(g_cfg.static_dir);
    gw_metrics_shm_t *shm = metrics_shm_create();
    if (!shm) {
        log_error("start_failed", "err=\"cannot map shared memory\"");
        return 1;
    }
    shm->started_at = (int64_t)time(NULL);
    child_t kids[GW_MAX_WORKERS];
    memset(kids, 0, sizeof kids);
    for (int i = 0; i < n; i++)
        if ((kids[i].listen_fd = bind_listener()) < 0) return 1;
    /* One handoff socket pair per worker: Socket.IO requests reach their session's owner. */
    int handoff[2 * GW_MAX_WORKERS];
    for (int i = 0; i < n; i++)
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, &handoff[2 * i]) < 0) {
            log_error("start_failed", "err=\"socketpair: %s\"", strerror(errno));
            return 1;
        }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    log_info("gateway_start", "port=%lld workers=%d broker=%s database=%s pid=%d", g_cfg.port, n,
             *g_cfg.broker_socket ? g_cfg.broker_socket : "none",
             *g_cfg.database_url ? "postgresql" : "memory", (int)getpid());
    for (int i = 0; i < n; i++)
        if (spawn(i, n, kids, shm, handoff) < 0) return 1;

    int draining = 0;
    struct timespec drain_start = {0, 0};
    for (;;) {
        struct timespec tick = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!draining) {
                draining = 1;
                shm->draining = 1;
                clock_gettime(CLOCK_MONOTONIC, &drain_start);
                log_info("gateway_drain", "signal=%s workers=%d deadline_s=%lld",
                         sig == SIGTERM ? "TERM" : "INT", n, g_cfg.drain_seconds);
                for (int i = 0; i < n; i++)
                    if (kids[i].pid > 0) kill(kids[i].pid, SIGTERM);
                /* Stop accepting: once the workers close theirs too, connection attempts
                 * are refused at once (the load balancer retries elsewhere) instead of
                 * queueing in a backlog nobody reads. */
                for (int i = 0; i < n; i++) close(kids[i].listen_fd);
            } else if (sig == SIGINT) {
                log_warn("gateway_kill", "reason=\"second interrupt\"");
                for (int i = 0; i < n; i++)
                    if (kids[i].pid > 0) kill(kids[i].pid, SIGKILL);
            }
        }
        /* Reap. */
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0) break;
            for (int i = 0; i < n; i++) {
                if (kids[i].pid != pid) continue;
                kids[i].pid = 0;
                metrics_retire(shm, i);
                if (!draining) {
                    if (WIFSIGNALED(status))
                        log_error("worker_died", "worker=%d pid=%d signal=%d", i, (int)pid,
                                  WTERMSIG(status));
                    else
                        log_error("worker_died", "worker=%d pid=%d status=%d", i, (int)pid,
                                  WEXITSTATUS(status));
                    /* Crash loop guard that still re-forks within a second. */
                    if (since(&kids[i].started) < 1.0) usleep(500 * 1000);
                    spawn(i, n, kids, shm, handoff);
                }
            }
        }
        if (draining) {
            int alive = 0;
            for (int i = 0; i < n; i++) alive += kids[i].pid > 0;
            if (!alive) break;
            if (since(&drain_start) > (double)g_cfg.drain_seconds + 3.0) {
                log_warn("gateway_kill", "reason=\"drain deadline\" alive=%d", alive);
                for (int i = 0; i < n; i++)
                    if (kids[i].pid > 0) kill(kids[i].pid, SIGKILL);
            }
        }
    }
    log_info("gateway_exit", "pid=%d", (int)getpid());
    return 0;
}
