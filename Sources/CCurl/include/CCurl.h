#ifndef CCURL_H
#define CCURL_H
// libcurl is not linked: it and the ~25 libraries it needs (TLS, Kerberos, LDAP, SSH, ...)
// are loaded on the first HTTP request (`ccurl_load`), so a process that never sends one,
// such as a standalone driver, never maps them. curl/curl.h is here for its types and
// constants only: call libcurl through the `ccurl_` functions below, never `curl_` ones
// (those would not link).
#include <curl/curl.h>
#include <stddef.h>

/// Loads libcurl.so.4 and runs curl_global_init, once per process, thread-safely. Returns 0
/// when libcurl is usable, else -1 (every time after the first failure); `ccurl_load_error`
/// then says why. Call every other function below only after this returned 0.
int ccurl_load(void);
/// Why `ccurl_load` failed: the library's name and dlerror()'s text. Empty before a failure.
const char *ccurl_load_error(void);

CURL *ccurl_easy_init(void);
void ccurl_easy_cleanup(CURL *h);
CURLcode ccurl_easy_pause(CURL *h, int bitmask);
const char *ccurl_easy_strerror(CURLcode rc);
CURLM *ccurl_multi_init(void);
CURLMcode ccurl_multi_cleanup(CURLM *m);
CURLMcode ccurl_multi_add_handle(CURLM *m, CURL *h);
CURLMcode ccurl_multi_remove_handle(CURLM *m, CURL *h);
CURLMcode ccurl_multi_socket_action(CURLM *m, curl_socket_t s, int ev_bitmask, int *running_handles);
CURLMsg *ccurl_multi_info_read(CURLM *m, int *msgs_in_queue);
const char *ccurl_multi_strerror(CURLMcode rc);
struct curl_slist *ccurl_slist_append(struct curl_slist *list, const char *line);
void ccurl_slist_free_all(struct curl_slist *list);

// curl_easy_setopt / curl_multi_setopt / curl_easy_getinfo are variadic: typed wrappers for Swift.
CURLcode ccurl_easy_setopt_long(CURL *h, CURLoption o, long v);
CURLcode ccurl_easy_setopt_ptr(CURL *h, CURLoption o, void *v);
CURLcode ccurl_easy_setopt_str(CURL *h, CURLoption o, const char *v);
CURLcode ccurl_easy_setopt_off_t(CURL *h, CURLoption o, long long v);
CURLMcode ccurl_multi_setopt_long(CURLM *h, CURLMoption o, long v);
CURLMcode ccurl_multi_setopt_ptr(CURLM *h, CURLMoption o, void *v);

// Options whose argument is a function pointer or a struct.
CURLMcode ccurl_multi_set_socket_function(CURLM *m, curl_socket_callback f, void *userp);
CURLMcode ccurl_multi_set_timer_function(CURLM *m, curl_multi_timer_callback f, void *userp);
CURLcode ccurl_easy_set_write_function(CURL *h, curl_write_callback f, void *userp);
CURLcode ccurl_easy_set_header_function(CURL *h, curl_write_callback f, void *userp);
/// A blob option (CA bundle, client certificate, key) from memory; libcurl copies the bytes.
CURLcode ccurl_easy_setopt_blob(CURL *h, CURLoption o, const void *data, size_t len);

CURLcode ccurl_easy_getinfo_long(CURL *h, CURLINFO i, long *v);
CURLcode ccurl_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v);

// CURLMsg's union.
static inline int ccurl_msg_is_done(const CURLMsg *m) { return m->msg == CURLMSG_DONE; }
static inline CURLcode ccurl_msg_result(const CURLMsg *m) { return m->data.result; }

// Macros Swift does not import.
static inline int ccurl_pause_cont(void) { return CURLPAUSE_CONT; }
static inline int ccurl_pause_recv(void) { return CURLPAUSE_RECV; }
static inline size_t ccurl_writefunc_pause(void) { return CURL_WRITEFUNC_PAUSE; }
static inline curl_socket_t ccurl_socket_timeout(void) { return CURL_SOCKET_TIMEOUT; }
#endif
