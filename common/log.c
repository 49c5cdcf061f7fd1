#include "log.h"

#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static struct {
    int level;
    int json;
    const char *component;
    const char *instance;
    int worker;
    unsigned long dropped; /* lines not written because stderr was full */
} g_log = {LOG_INFO, 0, "chat", "", -1, 0};

void log_setup(int level, int json, const char *component, const char *instance, int worker)
{
    g_log.level = level;
    g_log.json = json;
    g_log.component = component ? component : "chat";
    g_log.instance = instance ? instance : "";
    g_log.worker = worker;
}

void log_set_worker(int worker)
{
    g_log.worker = worker;
}

int log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    return -1;
}

int log_enabled(int level)
{
    return level >= g_log.level;
}

static void json_str(buf_t *b, const char *s, size_t n)
{
    buf_append_char(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf_append_char(b, '\\');
            buf_append_char(b, (char)c);
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_append_char(b, (char)c);
        }
    }
    buf_append_char(b, '"');
}

/* Turn `k=v k2="v 2"` into JSON fields. Text that is not k=v goes to "msg". */
static void kv_to_json(buf_t *b, const char *s)
{
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ') p++;
        if (*p != '=') {
            buf_append_str(b, ",\"msg\":");
            json_str(b, k, strlen(k));
            return;
        }
        size_t kl = (size_t)(p - k);
        p++;
        const char *v;
        size_t vl;
        if (*p == '"') {
            v = ++p;
            while (*p && *p != '"') p++;
            vl = (size_t)(p - v);
            if (*p) p++;
        } else {
            v = p;
            while (*p && *p != ' ') p++;
            vl = (size_t)(p - v);
        }
        buf_append_char(b, ',');
        json_str(b, k, kl);
        buf_append_char(b, ':');
        json_str(b, v, vl);
    }
}

unsigned long log_dropped(void)
{
    return g_log.dropped;
}

/*
 * stderr is a pipe to a log collector more often than not, and a worker blocked in write(2)
 * on a full pipe would stall every connection it holds. So a line is written only when
 * poll(2) says it fits now (a pipe with room takes a write of up to PIPE_BUF bytes whole;
 * files and terminals are always ready), otherwise it is dropped and counted, and the next
 * line that gets through is preceded by a log_dropped line with the count.
 */
static int stderr_ready(void)
{
    struct pollfd p = {.fd = STDERR_FILENO, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
}

static void emit(const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n > PIPE_BUF ? PIPE_BUF : n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void format_line(buf_t *b, int level, const char *ts, const char *event, const char *msg)
{
    static const char *lv[] = {"debug", "info", "warn", "error"};
    static const char *LV[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if (g_log.json) {
        buf_printf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\"", ts, lv[level],
                   g_log.component);
        if (*g_log.instance) {
            buf_append_str(b, ",\"instance\":");
            json_str(b, g_log.instance, strlen(g_log.instance));
        }
        if (g_log.worker >= 0) buf_printf(b, ",\"worker\":%d", g_log.worker);
        buf_append_str(b, ",\"event\":");
        json_str(b, event, strlen(event));
        kv_to_json(b, msg);
        buf_append_str(b, "}\n");
    } else {
        buf_printf(b, "%s %s %s", ts, LV[level], g_log.component);
        if (*g_log.instance || g_log.worker >= 0) {
            buf_printf(b, "[%s", g_log.instance);
            if (g_log.worker >= 0) buf_printf(b, "%sw%d", *g_log.instance ? "/" : "", g_log.worker);
            buf_append_char(b, ']');
        }
        buf_printf(b, " %s %s\n", event, msg);
    }
}

void log_write(int level, const char *event, const char *fmt, ...)
{
    if (level < g_log.level) return;
    if (level < 0 || level > 3) level = LOG_ERROR;
    if (!stderr_ready()) {
        g_log.dropped++;
        return;
    }

    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    buf_t b = BUF_INIT;
    if (g_log.dropped) {
        char note[48];
        snprintf(note, sizeof note, "count=%lu", g_log.dropped);
        format_line(&b, LOG_WARN, ts, "log_dropped", note);
        g_log.dropped = 0;
    }
    format_line(&b, level, ts, event, msg);
    if (b.data) emit(b.data, b.len);
    buf_free(&b);
}
