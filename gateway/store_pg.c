#include "log.h"
#include "store.h"

gw_store_t *store_pg_new(gw_worker_t *w, const char *conninfo)
{
    log_error("store_failed", "err=\"PostgreSQL storage is not part of this build yet\"");
    return NULL;
}
