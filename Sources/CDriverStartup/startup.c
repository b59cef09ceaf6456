#include "CDriverStartup.h"
#include <malloc.h>

// glibc gives each thread that allocates an arena of its own (up to 8 per core), and the
// loop, libuv's thread pool, the Swift runtime's threads and libcurl's resolver all
// allocate. Measured with the load harness (1 000 volumes): ~36 MiB resident with the
// default, ~27 MiB with two arenas, for a driver whose work is on one loop thread. Set in
// a constructor because by the time `main` runs, the runtime's threads have arenas.
static const int arenas = 2;

__attribute__((constructor)) static void sscd_startup(void) { mallopt(M_ARENA_MAX, arenas); }

int sscd_startup_malloc_arenas(void) { return arenas; }
