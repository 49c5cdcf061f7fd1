#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void env_name(const char *name, char *out, size_t outsz)
{
    size_t o = 0;
    const char *pre = "CHAT_";
    while (*pre && o + 1 < outsz) out[o++] = *pre++;
    for (const char *p = name; *p && o + 1 < outsz; p++)
        out[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[o] = '\0';
}

static int enum_index(const char *choices, const char *v)
{
    int idx = 0;
    size_t vl = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == vl && strncasecmp(p, v, l) == 0) return idx;
        idx++;
        if (!e) break;
        p = e + 1;
    }
    return -1;
}

int cfg_set(const cfg_opt_t *o, void *settings, const char *v, char *err, size_t errlen)
{
    char *field = (char *)settings + o->offset;
    switch (o->type) {
    case CFG_STR: {
        char *dup = strdup(v);
        if (!dup) {
            snprintf(err, errlen, "out of memory");
            return CFG_ERROR;
        }
        free(*(char **)field);
        *(char **)field = dup;
        return CFG_OK;
    }
    case CFG_INT:
    case CFG_SIZE: {
        errno = 0;
        char *end;
        long long x = strtoll(v, &end, 10);
        if (end == v || errno) goto bad_int;
        if (o->type == CFG_SIZE && *end) {
            long long mul = 1;
            switch (tolower((unsigned char)*end)) {
            case 'k': mul = 1024; break;
            case 'm': mul = 1024 * 1024; break;
            case 'g': mul = 1024LL * 1024 * 1024; break;
            default: goto bad_int;
            }
            end++;
            if (*end == 'b' || *end == 'B') end++;
            if (x > o->max / mul) goto bad_int;
            x *= mul;
        }
        if (*end) goto bad_int;
        if (x < o->min || x > o->max) goto bad_int;
        *(long long *)field = x;
        return CFG_OK;
    bad_int:
        snprintf(err, errlen, "invalid value '%s' for --%s: expected an integer in [%lld, %lld]%s",
                 v, o->name, o->min, o->max, o->type == CFG_SIZE ? " (k/m/g suffix allowed)" : "");
        return CFG_ERROR;
    }
    case CFG_BOOL: {
        static const char *yes[] = {"1", "true", "yes", "on"};
        static const char *no[] = {"0", "false", "no", "off", ""};
        for (size_t i = 0; i < 4; i++)
            if (strcasecmp(v, yes[i]) == 0) {
                *(int *)field = 1;
                return CFG_OK;
            }
        for (size_t i = 0; i < 5; i++)
            if (strcasecmp(v, no[i]) == 0) {
                *(int *)field = 0;
                return CFG_OK;
            }
        snprintf(err, errlen, "invalid value '%s' for --%s: expected 1/0, true/false, yes/no",
                 v, o->name);
        return CFG_ERROR;
    }
    case CFG_ENUM: {
        int i = enum_index(o->choices, v);
        if (i < 0) {
            snprintf(err, errlen, "invalid value '%s' for --%s: expected one of %s", v, o->name,
                     o->choices);
            return CFG_ERROR;
        }
        *(int *)field = i;
        return CFG_OK;
    }
    }
    return CFG_ERROR;
}

void cfg_free(const cfg_opt_t *opts, size_t n, void *settings)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type != CFG_STR) continue;
        char **f = (char **)((char *)settings + opts[i].offset);
        free(*f);
        *f = NULL;
    }
}

void cfg_print_help(FILE *f, const char *usage, const cfg_opt_t *opts, size_t n)
{
    if (usage) fprintf(f, "%s\n\n", usage);
    fprintf(f, "Options (each also read from the environment variable shown):\n");
    for (size_t i = 0; i < n; i++) {
        const cfg_opt_t *o = &opts[i];
        char env[96];
        env_name(o->name, env, sizeof env);
        const char *kind = o->type == CFG_BOOL   ? "BOOL"
                           : o->type == CFG_ENUM ? o->choices
                           : o->type == CFG_STR  ? "STR"
                                                 : "N";
        fprintf(f, "  --%s %s  (%s)\n      %s", o->name, kind, env, o->help);
        if (o->def && *o->def) fprintf(f, " [default: %s]", o->def);
        fprintf(f, "\n");
    }
}

static const cfg_opt_t *find_opt(const cfg_opt_t *opts, size_t n, const char *name, size_t nl)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == nl && strncmp(opts[i].name, name, nl) == 0) return &opts[i];
    return NULL;
}

int cfg_load(const cfg_opt_t *opts, size_t n, void *settings, int argc, char **argv,
             const char *usage, char **rest, int *nrest, char *err, size_t errlen)
{
    if (nrest) *nrest = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cfg_print_help(stdout, usage, opts, n);
            return CFG_HELP;
        }
    for (size_t i = 0; i < n; i++) {
        const char *v = opts[i].def ? opts[i].def : "";
        if (cfg_set(&opts[i], settings, v, err, errlen) != CFG_OK) return CFG_ERROR;
        char env[96];
        env_name(opts[i].name, env, sizeof env);
        const char *ev = getenv(env);
        if (ev && cfg_set(&opts[i], settings, ev, err, errlen) != CFG_OK) {
            size_t l = strlen(err);
            snprintf(err + l, errlen - l, " (from %s)", env);
            return CFG_ERROR;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (rest) {
                rest[(*nrest)++] = argv[i];
                continue;
            }
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return CFG_ERROR;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const cfg_opt_t *o = find_opt(opts, n, a, nl);
        if (!o) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nl, a);
            return CFG_ERROR;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (o->type == CFG_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0 ||
                                            enum_index("0|1|true|false|yes|no|on|off",
                                                       argv[i + 1]) < 0)) {
            v = "1"; /* a bare boolean flag */
        } else {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "option --%s needs a value", o->name);
                return CFG_ERROR;
            }
            v = argv[++i];
        }
        if (cfg_set(o, settings, v, err, errlen) != CFG_OK) return CFG_ERROR;
    }
    return CFG_OK;
}
