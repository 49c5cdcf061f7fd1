#include "schema.h"

#include "log.h"

int schema_check(const char *conninfo)
{
    log_error("schema_check_failed", "err=\"PostgreSQL storage is not part of this build yet\"");
    return -1;
}
