/* Unit tests for common/config.c. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

typedef struct s {
    long long port;
    long long outbuf;
    int verbose;
    int fmt;
    char *name;
} s_t;

static const cfg_opt_t opts[] = {
    {"port", CFG_INT, offsetof(s_t, port), "3000", 1, 65535, NULL, "port"},
    {"max-outbuf", CFG_SIZE, offsetof(s_t, outbuf), "1m", 1024, 1LL << 30, NULL, "outbuf"},
    {"verbose", CFG_BOOL, offsetof(s_t, verbose), "0", 0, 0, NULL, "verbose"},
    {"log-format", CFG_ENUM, offsetof(s_t, fmt), "text", 0, 0, "text|json", "format"},
    {"instance-id", CFG_STR, offsetof(s_t, name), NULL, 0, 0, NULL, "name"},
};
#define N (sizeof opts / sizeof *opts)

static int load(s_t *s, int argc, char **argv, char *err)
{
    static s_t prev; /* strings of the previous load are freed on the next one */
    cfg_free(opts, N, &prev);
    memset(s, 0, sizeof *s);
    int rc = cfg_load(opts, N, s, argc, argv, "usage", NULL, NULL, err, 256);
    prev = *s;
    return rc;
}

Test(config, defaults_env_flags)
{
    s_t s;
    char err[256];
    unsetenv("CHAT_PORT");
    setenv("CHAT_MAX_OUTBUF", "64k", 1);
    setenv("CHAT_INSTANCE_ID", "from-env", 1);
    char *argv[] = {"prog", "--port", "4000", "--log-format=json", "--verbose"};
    cr_assert_eq(load(&s, 5, argv, err), CFG_OK, "%s", err);
    cr_assert_eq(s.port, 4000);
    cr_assert_eq(s.outbuf, 65536);
    cr_assert_eq(s.verbose, 1);
    cr_assert_eq(s.fmt, 1);
    cr_assert_str_eq(s.name, "from-env");
    unsetenv("CHAT_MAX_OUTBUF");
    unsetenv("CHAT_INSTANCE_ID");
}

Test(config, invalid_values_are_clear_errors)
{
    s_t s;
    char err[256];
    char *a1[] = {"prog", "--port", "70000"};
    cr_assert_eq(load(&s, 3, a1, err), CFG_ERROR);
    cr_assert(strstr(err, "--port"), "%s", err);
    char *a2[] = {"prog", "--port", "12abc"};
    cr_assert_eq(load(&s, 3, a2, err), CFG_ERROR);
    char *a3[] = {"prog", "--log-format", "xml"};
    cr_assert_eq(load(&s, 3, a3, err), CFG_ERROR);
    cr_assert(strstr(err, "text|json"));
    char *a4[] = {"prog", "--nope"};
    cr_assert_eq(load(&s, 2, a4, err), CFG_ERROR);
    char *a5[] = {"prog", "--port"};
    cr_assert_eq(load(&s, 2, a5, err), CFG_ERROR);
    setenv("CHAT_PORT", "zero", 1);
    char *a6[] = {"prog"};
    cr_assert_eq(load(&s, 1, a6, err), CFG_ERROR);
    cr_assert(strstr(err, "CHAT_PORT"), "%s", err);
    unsetenv("CHAT_PORT");
    char *a7[] = {"prog", "--max-outbuf", "5x"};
    cr_assert_eq(load(&s, 3, a7, err), CFG_ERROR);
}

Test(config, help_and_positional)
{
    s_t s;
    char err[256];
    char *a1[] = {"prog", "stray"};
    cr_assert_eq(load(&s, 2, a1, err), CFG_ERROR);
    char *rest[4];
    int nrest;
    char *a2[] = {"prog", "history", "--port", "1", "general"};
    memset(&s, 0, sizeof s);
    cr_assert_eq(cfg_load(opts, N, &s, 5, a2, "u", rest, &nrest, err, sizeof err), CFG_OK);
    cr_assert_eq(nrest, 2);
    cr_assert_str_eq(rest[1], "general");
    cfg_free(opts, N, &s);
}
