#ifndef CDRIVERSTARTUP_H
#define CDRIVERSTARTUP_H
// What the driver sets before any Swift code runs (a constructor in startup.c).
// Returns the malloc arena limit it set.
int sscd_startup_malloc_arenas(void);
#endif
