/*
 * libcurl's multi interface on the hub's loop, shared by the schema registry
 * client (hub/registry.c) and the alerts adapter (adapters/alerts/alerts.c):
 * a uv_poll per socket libcurl opens and a uv_timer for libcurl's timeouts.
 *
 * The owner keeps its CURLM and reads the finished transfers itself
 * (curl_multi_info_read) when told that something progressed. To stop, the
 * owner cleans up its CURLM and then closes the loop glue; it is told once
 * every handle of the glue is closed, and the glue is not touched after.
 */
#ifndef BH_CURL_LOOP_H
#define BH_CURL_LOOP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <uv.h>

/* Called after libcurl acted on a socket or a timeout: transfers may have finished. */
typedef void (*bh_curl_progress_fn)(void *arg);
/* Called once, after bh_curl_loop_close, when the last handle of the glue is closed. */
typedef void (*bh_curl_closed_fn)(void *arg);

struct bh_curl_sock;

struct bh_curl_loop {
    uv_loop_t *loop;
    CURLM *multi;     /* NULL once closing */
    uv_timer_t timer; /* libcurl's timeouts */
    struct bh_curl_sock *socks;
    int open_handles; /* the timer and the sockets' polls */
    bool closing;
    bh_curl_progress_fn progress;
    bh_curl_closed_fn closed;
    void *arg;
};

/* Sets MULTI's socket and timer callbacks to drive it on LOOP; PROGRESS(ARG) is called
 * whenever libcurl has acted. */
void bh_curl_loop_init(struct bh_curl_loop *cl, uv_loop_t *loop, CURLM *multi,
                       bh_curl_progress_fn progress, void *arg);
/* Closes the timer and every socket's poll; CLOSED(ARG) once they are all closed. The
 * owner's CURLM is cleaned up before (no more callbacks from it). */
void bh_curl_loop_close(struct bh_curl_loop *cl, bh_curl_closed_fn closed);

#endif
