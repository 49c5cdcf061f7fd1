/*
 * config: table-driven settings from CHAT_* environment variables and --flags.
 *
 * Each program describes its settings once, as a table of cfg_opt_t pointing into its own
 * settings struct. Every option `name` is read from the environment as CHAT_NAME (upper
 * case, '-' becomes '_') and from the command line as --name VALUE or --name=VALUE;
 * flags win over the environment, which wins over the default. --help prints the table.
 * An invalid value is reported with the option's name and the accepted range; nothing is
 * half-applied. Strings are heap copies owned by the settings struct for the life of the
 * process.
 */
#ifndef CHAT_CONFIG_H
#define CHAT_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum cfg_type {
    CFG_STR,  /* char * */
    CFG_INT,  /* long long, within [min, max] */
    CFG_SIZE, /* long long, accepts k/m/g suffixes (powers of 1024) */
    CFG_BOOL, /* int: 1/0, true/false, yes/no, on/off */
    CFG_ENUM, /* int: index into the '|'-separated `choices` */
} cfg_type_t;

typedef struct cfg_opt {
    const char *name;
    cfg_type_t type;
    size_t offset;
    const char *def;
    long long min, max;
    const char *choices;
    const char *help;
} cfg_opt_t;

#define CFG_OK 0
#define CFG_HELP 1   /* --help was printed: exit 0 */
#define CFG_ERROR -1 /* err holds the message: exit 2 */

/* Optional positional arguments (e.g. chatctl subcommands) are returned via rest/nrest
 * when not NULL; otherwise a positional argument is an error. */
int cfg_load(const cfg_opt_t *opts, size_t n, void *settings, int argc, char **argv,
             const char *usage, char **rest, int *nrest, char *err, size_t errlen);

/* Free the strings cfg_load() stored (CFG_STR fields) and set them to NULL. */
void cfg_free(const cfg_opt_t *opts, size_t n, void *settings);

void cfg_print_help(FILE *f, const char *usage, const cfg_opt_t *opts, size_t n);

/* Parse one value for one option into settings; used by cfg_load and tests. */
int cfg_set(const cfg_opt_t *o, void *settings, const char *value, char *err, size_t errlen);

#endif
