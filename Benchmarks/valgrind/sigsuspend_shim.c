// Preloaded into the driver under valgrind (Benchmarks/pair_cost.py --mode callgrind).
// valgrind 3.19 (Debian 12) edits the signal mask sigsuspend(2) is given in place, and
// libdispatch's main thread (Swift's async main) passes one that lives in read-only
// memory, so valgrind itself faults. This passes a copy on the stack instead.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>

int sigsuspend(const sigset_t *mask) {
  static int (*real)(const sigset_t *);
  sigset_t copy = *mask;
  if (!real) real = (int (*)(const sigset_t *))dlsym(RTLD_NEXT, "sigsuspend");
  return real(&copy);
}
