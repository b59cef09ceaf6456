#ifndef CCURL_H
#define CCURL_H
#include <curl/curl.h>
#include <stddef.h>
// curl_easy_setopt / curl_multi_setopt / curl_easy_getinfo are variadic: typed wrappers for Swift.
static inline CURLcode ccurl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_off_t(CURL *h, CURLoption o, long long v) { return curl_easy_setopt(h, o, (curl_off_t)v); }
static inline CURLMcode ccurl_multi_setopt_long(CURLM *h, CURLMoption o, long v) { return curl_multi_setopt(h, o, v); }
static inline CURLMcode ccurl_multi_setopt_ptr(CURLM *h, CURLMoption o, void *v) { return curl_multi_setopt(h, o, v); }

// Options whose argument is a function pointer or a struct.
static inline CURLMcode ccurl_multi_set_socket_function(CURLM *m, curl_socket_callback f, void *userp) {
  CURLMcode rc = curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f);
  return rc != CURLM_OK ? rc : curl_multi_setopt(m, CURLMOPT_SOCKETDATA, userp);
}
static inline CURLMcode ccurl_multi_set_timer_function(CURLM *m, curl_multi_timer_callback f, void *userp) {
  CURLMcode rc = curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, f);
  return rc != CURLM_OK ? rc : curl_multi_setopt(m, CURLMOPT_TIMERDATA, userp);
}
static inline CURLcode ccurl_easy_set_write_function(CURL *h, curl_write_callback f, void *userp) {
  CURLcode rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f);
  return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_WRITEDATA, userp);
}
static inline CURLcode ccurl_easy_set_header_function(CURL *h, curl_write_callback f, void *userp) {
  CURLcode rc = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f);
  return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_HEADERDATA, userp);
}
/// A blob option (CA bundle, client certificate, key) from memory; libcurl copies the bytes.
static inline CURLcode ccurl_easy_setopt_blob(CURL *h, CURLoption o, const void *data, size_t len) {
  struct curl_blob blob = { (void *)data, len, CURL_BLOB_COPY };
  return curl_easy_setopt(h, o, &blob);
}

static inline CURLcode ccurl_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccurl_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }

// CURLMsg's union.
static inline int ccurl_msg_is_done(const CURLMsg *m) { return m->msg == CURLMSG_DONE; }
static inline CURLcode ccurl_msg_result(const CURLMsg *m) { return m->data.result; }

// Macros Swift does not import.
static inline CURLcode ccurl_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT); }
static inline int ccurl_pause_cont(void) { return CURLPAUSE_CONT; }
static inline int ccurl_pause_recv(void) { return CURLPAUSE_RECV; }
static inline size_t ccurl_writefunc_pause(void) { return CURL_WRITEFUNC_PAUSE; }
static inline curl_socket_t ccurl_socket_timeout(void) { return CURL_SOCKET_TIMEOUT; }
#endif
