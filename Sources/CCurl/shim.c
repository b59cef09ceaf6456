#include "CCurl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

// The libcurl functions CurlHTTP uses, looked up once by `load`. Their types come from
// curl/curl.h, so a call through the table is checked like a direct call.
#define CCURL_FUNCTIONS(X)                                                                              \
  X(global_init) X(easy_init) X(easy_cleanup) X(easy_setopt) X(easy_getinfo) X(easy_pause)              \
  X(easy_strerror) X(multi_init) X(multi_cleanup) X(multi_setopt) X(multi_add_handle)                   \
  X(multi_remove_handle) X(multi_socket_action) X(multi_info_read) X(multi_strerror) X(slist_append)    \
  X(slist_free_all)

static struct {
#define CCURL_FIELD(name) __typeof__(curl_##name) *name;
  CCURL_FUNCTIONS(CCURL_FIELD)
#undef CCURL_FIELD
} curl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
// Written only inside `load`, read after pthread_once returned: no lock needed.
static char load_error[512];

static void load(void) {
  const char *name = "libcurl.so.4";
  // Test-only: the integration tests point this at a missing library, or one without
  // libcurl's symbols, to check how a driver without a usable libcurl fails its requests.
  const char *override = getenv("CCURL_TEST_LIBRARY");
  if (override != NULL && override[0] != '\0') name = override;

  void *library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (library == NULL) {
    snprintf(load_error, sizeof load_error, "libcurl (%s) could not be loaded: %s", name, dlerror());
    return;
  }
#define CCURL_LOOKUP(fn)                                                                                \
  *(void **)&curl.fn = dlsym(library, "curl_" #fn);                                                      \
  if (curl.fn == NULL) {                                                                                  \
    snprintf(load_error, sizeof load_error, "libcurl (%s) could not be loaded: %s", name, dlerror());    \
    dlclose(library);                                                                                     \
    return;                                                                                               \
  }
  CCURL_FUNCTIONS(CCURL_LOOKUP)
#undef CCURL_LOOKUP

  CURLcode rc = curl.global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    snprintf(load_error, sizeof load_error, "libcurl (%s) could not be initialized: curl_global_init: %s", name,
             curl.easy_strerror(rc));
  }
}

int ccurl_load(void) {
  pthread_once(&load_once, load);
  return load_error[0] == '\0' ? 0 : -1;
}

const char *ccurl_load_error(void) {
  pthread_once(&load_once, load);
  return load_error;
}

CURL *ccurl_easy_init(void) { return curl.easy_init(); }
void ccurl_easy_cleanup(CURL *h) { curl.easy_cleanup(h); }
CURLcode ccurl_easy_pause(CURL *h, int bitmask) { return curl.easy_pause(h, bitmask); }
const char *ccurl_easy_strerror(CURLcode rc) { return curl.easy_strerror(rc); }
CURLM *ccurl_multi_init(void) { return curl.multi_init(); }
CURLMcode ccurl_multi_cleanup(CURLM *m) { return curl.multi_cleanup(m); }
CURLMcode ccurl_multi_add_handle(CURLM *m, CURL *h) { return curl.multi_add_handle(m, h); }
CURLMcode ccurl_multi_remove_handle(CURLM *m, CURL *h) { return curl.multi_remove_handle(m, h); }
CURLMcode ccurl_multi_socket_action(CURLM *m, curl_socket_t s, int ev_bitmask, int *running_handles) {
  return curl.multi_socket_action(m, s, ev_bitmask, running_handles);
}
CURLMsg *ccurl_multi_info_read(CURLM *m, int *msgs_in_queue) { return curl.multi_info_read(m, msgs_in_queue); }
const char *ccurl_multi_strerror(CURLMcode rc) { return curl.multi_strerror(rc); }
struct curl_slist *ccurl_slist_append(struct curl_slist *list, const char *line) { return curl.slist_append(list, line); }
void ccurl_slist_free_all(struct curl_slist *list) { curl.slist_free_all(list); }

CURLcode ccurl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl.easy_setopt(h, o, v); }
CURLcode ccurl_easy_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl.easy_setopt(h, o, v); }
CURLcode ccurl_easy_setopt_str(CURL *h, CURLoption o, const char *v) { return curl.easy_setopt(h, o, v); }
CURLcode ccurl_easy_setopt_off_t(CURL *h, CURLoption o, long long v) { return curl.easy_setopt(h, o, (curl_off_t)v); }
CURLMcode ccurl_multi_setopt_long(CURLM *h, CURLMoption o, long v) { return curl.multi_setopt(h, o, v); }
CURLMcode ccurl_multi_setopt_ptr(CURLM *h, CURLMoption o, void *v) { return curl.multi_setopt(h, o, v); }

CURLMcode ccurl_multi_set_socket_function(CURLM *m, curl_socket_callback f, void *userp) {
  CURLMcode rc = curl.multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f);
  return rc != CURLM_OK ? rc : curl.multi_setopt(m, CURLMOPT_SOCKETDATA, userp);
}
CURLMcode ccurl_multi_set_timer_function(CURLM *m, curl_multi_timer_callback f, void *userp) {
  CURLMcode rc = curl.multi_setopt(m, CURLMOPT_TIMERFUNCTION, f);
  return rc != CURLM_OK ? rc : curl.multi_setopt(m, CURLMOPT_TIMERDATA, userp);
}
CURLcode ccurl_easy_set_write_function(CURL *h, curl_write_callback f, void *userp) {
  CURLcode rc = curl.easy_setopt(h, CURLOPT_WRITEFUNCTION, f);
  return rc != CURLE_OK ? rc : curl.easy_setopt(h, CURLOPT_WRITEDATA, userp);
}
CURLcode ccurl_easy_set_header_function(CURL *h, curl_write_callback f, void *userp) {
  CURLcode rc = curl.easy_setopt(h, CURLOPT_HEADERFUNCTION, f);
  return rc != CURLE_OK ? rc : curl.easy_setopt(h, CURLOPT_HEADERDATA, userp);
}
CURLcode ccurl_easy_setopt_blob(CURL *h, CURLoption o, const void *data, size_t len) {
  struct curl_blob blob = {(void *)data, len, CURL_BLOB_COPY};
  return curl.easy_setopt(h, o, &blob);
}

CURLcode ccurl_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl.easy_getinfo(h, i, v); }
CURLcode ccurl_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v) { return curl.easy_getinfo(h, i, v); }
