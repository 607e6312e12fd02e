// module.cpp: the library's entry point. _PG_init defines the GUCs and, when the library is
// preloaded (shared_preload_libraries), registers the static launcher worker.
extern "C" {
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
}

#include "settings.hpp"

extern "C" {
PG_MODULE_MAGIC;
PGDLLEXPORT void _PG_init(void);
}

namespace squaresync::pg {
void register_launcher();
}

void _PG_init(void) {
    squaresync::pg::define_settings();
    if (process_shared_preload_libraries_in_progress) squaresync::pg::register_launcher();
}
