#ifndef CUV_H
#define CUV_H
#include <uv.h>
#include <signal.h>
#include <pthread.h>

// Wrappers for what Swift cannot import directly (macros, unions).
static inline int cuv_is_closing(const uv_handle_t *h) { return uv_is_closing(h); }
static inline uv_handle_t *cuv_handle(void *h) { return (uv_handle_t *)h; }
static inline uv_stream_t *cuv_stream(void *h) { return (uv_stream_t *)h; }
static inline int cuv_sigterm(void) { return SIGTERM; }
static inline int cuv_sigint(void) { return SIGINT; }
static inline int cuv_eof(void) { return UV_EOF; }
static inline int cuv_eagain(void) { return UV_EAGAIN; }
static inline int cuv_ebusy(void) { return UV_EBUSY; }
static inline int cuv_ecanceled(void) { return UV_ECANCELED; }
// Storage for any stream handle kind, so one Swift class can own pipes and TCP sockets.
typedef union { uv_pipe_t pipe; uv_tcp_t tcp; } cuv_stream_storage;
static inline uv_pipe_t *cuv_as_pipe(cuv_stream_storage *s) { return &s->pipe; }
static inline uv_tcp_t *cuv_as_tcp(cuv_stream_storage *s) { return &s->tcp; }
int cuv_pthread_equal_self(pthread_t t);
void cuv_set_thread_name(const char *name);
#endif
