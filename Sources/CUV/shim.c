#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include "CUV.h"
int cuv_pthread_equal_self(pthread_t t) { return pthread_equal(t, pthread_self()); }
void cuv_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, 15);
    buf[15] = 0;
    pthread_setname_np(pthread_self(), buf);
}
