#ifndef CCURL_H
#define CCURL_H
#include <curl/curl.h>
// curl_easy_setopt / curl_multi_setopt are variadic macros: typed wrappers for Swift.
static inline CURLcode ccurl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLMcode ccurl_multi_setopt_long(CURLM *h, CURLMoption o, long v) { return curl_multi_setopt(h, o, v); }
static inline CURLMcode ccurl_multi_setopt_ptr(CURLM *h, CURLMoption o, void *v) { return curl_multi_setopt(h, o, v); }
#endif
