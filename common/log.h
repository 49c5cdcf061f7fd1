/*
 * log: one line per event on stderr, as text or JSON (CHAT_LOG_FORMAT).
 *
 * A line is an event name followed by key=value pairs: log_write(LOG_INFO, "conn_open",
 * "peer=%s user=%s", ...). Values with spaces are double-quoted by the caller
 * (err="%s"). In JSON mode the pairs become fields. Each line is written with one write(2)
 * so lines from the master, the workers and the broker never interleave.
 *
 * Logging never blocks: when stderr is a full pipe (a stalled collector) the line is dropped
 * and counted, and the next line written is preceded by "log_dropped count=N".
 */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* component: "gateway", "broker", ...; worker: -1 for a master or a single process. */
void log_setup(int level, int json, const char *component, const char *instance, int worker);
void log_set_worker(int worker);
/* Parse "debug|info|warn|error"; -1 when unknown. */
int log_level_parse(const char *s);
int log_enabled(int level);
/* Lines dropped since the last log_dropped note (for tests and metrics). */
unsigned long log_dropped(void);
void log_write(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, ev, __VA_ARGS__); } while (0)
#define log_info(ev, ...) log_write(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_write(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_write(LOG_ERROR, ev, __VA_ARGS__)

#endif
