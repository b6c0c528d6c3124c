/*
 * libcurl's multi interface on the hub's loop (hub/curl_loop.h).
 */
#include "curl_loop.h"

#include <stdint.h>
#include <stdlib.h>

struct bh_curl_sock {
    uv_poll_t poll;
    struct bh_curl_loop *cl;
    struct bh_curl_sock *next;
    bool closing;
};

/* One handle less: at zero, once closing, the owner is told (and cl is not touched after). */
static void
unref(struct bh_curl_loop *cl)
{
    if (--cl->open_handles > 0 || !cl->closing)
        return;
    cl->closed(cl->arg);
}

static void
on_timer_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void
on_sock_closed(uv_handle_t *h)
{
    struct bh_curl_sock *k = h->data;
    struct bh_curl_loop *cl = k->cl;
    for (struct bh_curl_sock **p = &cl->socks; *p != NULL; p = &(*p)->next) {
        if (*p == k) {
            *p = k->next;
            break;
        }
    }
    free(k);
    unref(cl);
}

static void
close_sock(struct bh_curl_sock *k)
{
    if (k->closing)
        return;
    k->closing = true;
    uv_poll_stop(&k->poll);
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void
on_sock_poll(uv_poll_t *h, int status, int events)
{
    struct bh_curl_sock *k = h->data;
    struct bh_curl_loop *cl = k->cl;
    uv_os_fd_t fd;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    if (cl->multi == NULL || uv_fileno((uv_handle_t *)h, &fd) != 0)
        return;
    curl_multi_socket_action(cl->multi, (curl_socket_t)fd, flags, &running);
    cl->progress(cl->arg);
}

static int
on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct bh_curl_loop *cl = userp;
    struct bh_curl_sock *k = socketp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (k != NULL) {
            curl_multi_assign(cl->multi, fd, NULL);
            close_sock(k);
        }
        return 0;
    }
    if (k == NULL) {
        k = calloc(1, sizeof(*k));
        if (k == NULL)
            return -1;
        if (uv_poll_init_socket(cl->loop, &k->poll, fd) != 0) {
            free(k);
            return -1;
        }
        k->cl = cl;
        k->poll.data = k;
        k->next = cl->socks;
        cl->socks = k;
        cl->open_handles++;
        curl_multi_assign(cl->multi, fd, k);
    }
    int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    uv_poll_start(&k->poll, ev, on_sock_poll);
    return 0;
}

static void
on_curl_timer(uv_timer_t *t)
{
    struct bh_curl_loop *cl = t->data;
    int running;
    if (cl->multi == NULL)
        return;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    cl->progress(cl->arg);
}

static int
on_timer_change(CURLM *m, long timeout_ms, void *userp)
{
    struct bh_curl_loop *cl = userp;
    (void)m;
    if (timeout_ms < 0)
        uv_timer_stop(&cl->timer);
    else
        uv_timer_start(&cl->timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

void
bh_curl_loop_init(struct bh_curl_loop *cl, uv_loop_t *loop, CURLM *multi,
                  bh_curl_progress_fn progress, void *arg)
{
    cl->loop = loop;
    cl->multi = multi;
    cl->socks = NULL;
    cl->closing = false;
    cl->progress = progress;
    cl->closed = NULL;
    cl->arg = arg;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, cl);
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    cl->open_handles = 1;
}

void
bh_curl_loop_close(struct bh_curl_loop *cl, bh_curl_closed_fn closed)
{
    if (cl->closing)
        return;
    cl->closing = true;
    cl->closed = closed;
    cl->multi = NULL;
    for (struct bh_curl_sock *k = cl->socks; k != NULL; k = k->next)
        close_sock(k);
    uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
}
