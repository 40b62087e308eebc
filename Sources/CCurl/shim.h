// curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call;
// these typed wrappers are the only reason this header exists.
#ifndef IMGFS_CCURL_SHIM_H
#define IMGFS_CCURL_SHIM_H
#include <curl/curl.h>
#include <stdint.h>
#include <sys/socket.h>

static inline CURLcode imgfs_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode imgfs_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode imgfs_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode imgfs_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode imgfs_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode imgfs_curl_setopt_write(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) { return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f); }
static inline CURLcode imgfs_curl_setopt_header(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) { return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f); }
static inline CURLcode imgfs_curl_setopt_read(CURL *h, size_t (*f)(char *, size_t, size_t, void *)) { return curl_easy_setopt(h, CURLOPT_READFUNCTION, f); }
static inline CURLcode imgfs_curl_setopt_seek(CURL *h, int (*f)(void *, curl_off_t, int)) { return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, f); }
/* Background transfers' sockets get a small receive buffer: when such a transfer holds still for a
 * reader's (imgfs's DemandGate), what its sender already has in flight, which TCP bounds by this
 * buffer, is all that still crosses the link ahead of the reader's bytes. */
static int imgfs_receive_buffer_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose) {
    int bytes = (int)(intptr_t)clientp;
    if (purpose == CURLSOCKTYPE_IPCXN) (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    return CURL_SOCKOPT_OK;
}
static inline void imgfs_curl_set_receive_buffer(CURL *h, long bytes) {
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, imgfs_receive_buffer_sockopt);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, (void *)(intptr_t)bytes);
}
static inline CURLcode imgfs_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode imgfs_curl_getinfo_string(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode imgfs_curl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
#endif
