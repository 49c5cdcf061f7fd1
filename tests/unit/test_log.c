/* log: line format, and that a full stderr pipe drops lines instead of blocking. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int pipe_as_stderr(int p[2])
{
    cr_assert_eq(pipe(p), 0);
    cr_assert_geq(dup2(p[1], STDERR_FILENO), 0);
    return p[0];
}

static size_t drain(int fd, char *out, size_t cap)
{
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, out + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap - 1) n = 0; /* keep only the tail */
    }
    out[n] = '\0';
    return n;
}

Test(log, text_line)
{
    int p[2];
    int rd = pipe_as_stderr(p);
    log_setup(LOG_INFO, 0, "gateway", "a", 1);
    log_write(LOG_INFO, "conn_open", "peer=%s user=%d", "127.0.0.1:5", 7);
    log_write(LOG_DEBUG, "hidden", "x=1");
    char out[4096];
    drain(rd, out, sizeof out);
    cr_assert(strstr(out, " INFO  gateway[a/w1] conn_open peer=127.0.0.1:5 user=7\n"), "%s", out);
    cr_assert_null(strstr(out, "hidden"));
}

Test(log, json_line)
{
    int p[2];
    int rd = pipe_as_stderr(p);
    log_setup(LOG_DEBUG, 1, "broker", "", -1);
    log_write(LOG_WARN, "redis_down", "err=\"connection refused\" n=%d", 3);
    char out[4096];
    drain(rd, out, sizeof out);
    cr_assert(strstr(out, "\"level\":\"warn\",\"component\":\"broker\",\"event\":\"redis_down\","
                          "\"err\":\"connection refused\",\"n\":\"3\"}\n"), "%s", out);
}

Test(log, full_pipe_drops_and_counts_instead_of_blocking, .timeout = 10)
{
    int p[2];
    int rd = pipe_as_stderr(p);
    log_setup(LOG_INFO, 0, "gateway", "", -1);
    /* Nobody reads: a blocking logger would hang here (and the test time out). */
    for (int i = 0; i < 20000; i++) log_write(LOG_INFO, "spam", "i=%d pad=%0200d", i, 0);
    cr_assert_gt(log_dropped(), 0);
    unsigned long dropped = log_dropped();
    char out[1 << 16];
    drain(rd, out, sizeof out);
    log_write(LOG_INFO, "after", "ok=1");
    drain(rd, out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "log_dropped count=%lu\n", dropped);
    cr_assert(strstr(out, want), "%s", out);
    cr_assert(strstr(out, "after ok=1\n"), "%s", out);
    cr_assert_eq(log_dropped(), 0);
}
