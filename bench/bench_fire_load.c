/*
 * HTTP/1.1 load generator for the fire benchmark (bench/run-fire.sh).
 *
 *   bench_fire_load HOST:PORT PATH TOKEN BODIES CONNECTIONS WARMUP SECONDS [PID]
 *
 * Opens CONNECTIONS keep-alive connections to HOST:PORT (IPv4) and keeps one
 * POST in flight on each (closed loop: the next request of a connection goes
 * out when the answer to the previous one is in). BODIES is a file of request
 * bodies, one a line; the requests take them in turn across all connections.
 * After WARMUP seconds it counts for SECONDS seconds: the answers received in
 * that window, the events they report accepted ("accepted":N of the 200
 * body), and each answer's latency, from the request's first byte handed to
 * the socket to the answer's last byte read. Then it closes the connections
 * and prints one line of key=value:
 *
 *   requests events seconds rps eps p50_ms p99_ms p999_ms max_ms errors
 *   gen_cpu hub_cpu
 *
 * errors counts answers that are not 200 or that list a rejected item (the
 * first few are printed on stderr); gen_cpu is this program's CPU seconds in
 * the window (near SECONDS means the generator itself was the limit), hub_cpu
 * the CPU seconds of process PID (all its threads, /proc/PID/stat) in the
 * window, when PID is given.
 *
 * One thread, libuv: it needs no more than one core's share to stay ahead of
 * the server, which run-fire.sh checks against the nullhttp adapter.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct gen *g;
    char *buf;
    size_t len, cap;
    uint64_t sent_at; /* ns; 0: nothing in flight */
    int closing;
};

struct gen {
    uv_loop_t *loop;
    struct request *reqs;
    size_t nreqs, next;
    struct conn *conns;
    int nconns, connected;
    int measuring, done;
    uint64_t requests, events, errors;
    uint32_t *lat_us;
    size_t nlat, caplat;
    uint64_t t0, t1;
    double cpu0, cpu1, hub0, hub1;
    long pid;
    struct sockaddr_in addr;
};

static void
die(const char *what, int err)
{
    fprintf(stderr, "bench_fire_load: %s: %s\n", what, err ? uv_strerror(err) : "failed");
    exit(1);
}

#include "bench_clock.h"
#include "bench_fire_http.h"

/* utime + stime of PID, all threads, in seconds; 0 if it cannot be read. */
static double
proc_cpu(long pid)
{
    char path[64], text[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void send_next(struct conn *c);

static void
on_closed(uv_handle_t *h)
{
    (void)h;
}

static void
conn_close(struct conn *c)
{
    if (!c->closing) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct conn *c = h->data;
    (void)suggested;
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap);
        if (c->buf == NULL)
            die("out of memory", 0);
    }
    *out = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* BODY: the answer's first bytes, BLEN of them, with room for a NUL after. */
static void
record(struct gen *g, uint64_t ns, int status, char *body, size_t blen)
{
    char *text = body;
    text[blen] = '\0';
    const char *acc = strstr(text, "\"accepted\":");
    long accepted = acc != NULL ? strtol(acc + 11, NULL, 10) : -1;
    int ok = status == 200 && accepted >= 0 && strstr(text, "\"rejected\":[]") != NULL;
    if (!g->measuring)
        return;
    if (!ok) {
        if (g->errors++ < 5)
            fprintf(stderr, "bench_fire_load: answer %d: %s\n", status, text);
        return;
    }
    g->requests++;
    g->events += (uint64_t)accepted;
    if (g->nlat == g->caplat) {
        g->caplat = g->caplat ? g->caplat * 2 : 1 << 16;
        g->lat_us = realloc(g->lat_us, g->caplat * sizeof(*g->lat_us));
        if (g->lat_us == NULL)
            die("out of memory", 0);
    }
    uint64_t us = ns / 1000;
    g->lat_us[g->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* One answer complete at the head of c->buf (see bench_fire_http.h). */
static size_t
parse_answer(struct conn *c, int *status, char *body, size_t cap, size_t *blen)
{
    return answer_parse(c->buf, c->len, status, body, cap, blen);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct gen *g = c->g;
    (void)buf;
    if (nread < 0) {
        if (!g->done)
            die("a connection was closed by the server", (int)nread);
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    int status;
    char body[256];
    size_t blen, used;
    while ((used = parse_answer(c, &status, body, sizeof(body) - 1, &blen)) > 0) {
        uint64_t now = uv_hrtime();
        record(g, now - c->sent_at, status, body, blen);
        c->sent_at = 0;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        if (!g->done)
            send_next(c);
    }
}

static void
on_written(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    free(w);
    if (status < 0 && !c->g->done)
        die("write", status);
}

static void
send_next(struct conn *c)
{
    struct gen *g = c->g;
    struct request *r = &g->reqs[g->next++ % g->nreqs];
    uv_buf_t b = uv_buf_init(r->bytes, (unsigned)r->len);
    /* A request of its own per write: the answer can be read before the callback of the
     * write that sent its request has run, and the next write must not reuse that one. */
    uv_write_t *w = malloc(sizeof(*w));
    if (w == NULL)
        die("write", UV_ENOMEM);
    w->data = c;
    c->sent_at = uv_hrtime();
    int rc = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0)
        die("write", rc);
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0)
        die("connect", status);
    uv_tcp_nodelay(&c->tcp, 1);
    c->g->connected++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    send_next(c);
}

static void
on_window_start(uv_timer_t *t)
{
    struct gen *g = t->data;
    g->measuring = 1;
    g->t0 = uv_hrtime();
    g->cpu0 = self_cpu();
    g->hub0 = proc_cpu(g->pid);
}

static void
on_window_end(uv_timer_t *t)
{
    struct gen *g = t->data;
    g->t1 = uv_hrtime();
    g->cpu1 = self_cpu();
    g->hub1 = proc_cpu(g->pid);
    g->measuring = 0;
    g->done = 1;
    for (int i = 0; i < g->nconns; i++)
        conn_close(&g->conns[i]);
    uv_close((uv_handle_t *)t, NULL);
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double
pct_ms(const struct gen *g, double p)
{
    if (g->nlat == 0)
        return 0;
    size_t i = (size_t)(p * (double)g->nlat);
    if (i >= g->nlat)
        i = g->nlat - 1;
    return g->lat_us[i] / 1000.0;
}

/* The requests: one per line of FILE, with the head in front of each body. */

int
main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: bench_fire_load HOST:PORT PATH TOKEN BODIES CONNECTIONS WARMUP "
                        "SECONDS [PID]\n");
        return 2;
    }
    static struct gen g;
    const char *hostport = argv[1];
    parse_hostport(hostport, &g.addr);
    g.nconns = atoi(argv[5]);
    double warmup = atof(argv[6]), seconds = atof(argv[7]);
    g.pid = argc > 8 ? atol(argv[8]) : 0;
    if (g.nconns <= 0 || warmup < 0 || seconds <= 0)
        die("CONNECTIONS > 0, WARMUP >= 0, SECONDS > 0", 0);
    load_requests(&g.reqs, &g.nreqs, argv[4], hostport, argv[2], argv[3]);

    g.loop = uv_default_loop();
    g.conns = calloc((size_t)g.nconns, sizeof(*g.conns));
    if (g.conns == NULL)
        die("out of memory", 0);
    for (int i = 0; i < g.nconns; i++) {
        struct conn *c = &g.conns[i];
        c->g = &g;
        uv_tcp_init(g.loop, &c->tcp);
        c->tcp.data = c;
        c->connect.data = c;
        int rc =
            uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&g.addr, on_connected);
        if (rc < 0)
            die("connect", rc);
    }
    uv_timer_t start, end;
    uv_timer_init(g.loop, &start);
    uv_timer_init(g.loop, &end);
    start.data = end.data = &g;
    uv_timer_start(&start, on_window_start, (uint64_t)(warmup * 1000), 0);
    uv_timer_start(&end, on_window_end, (uint64_t)((warmup + seconds) * 1000), 0);
    uv_run(g.loop, UV_RUN_DEFAULT); /* until the window closed every connection */
    uv_close((uv_handle_t *)&start, NULL);
    uv_run(g.loop, UV_RUN_DEFAULT);

    double secs = (double)(g.t1 - g.t0) / 1e9;
    qsort(g.lat_us, g.nlat, sizeof(*g.lat_us), cmp_u32);
    printf("requests=%llu events=%llu seconds=%.3f rps=%.1f eps=%.1f p50_ms=%.3f p99_ms=%.3f "
           "p999_ms=%.3f max_ms=%.3f errors=%llu gen_cpu=%.2f hub_cpu=%.2f\n",
           (unsigned long long)g.requests, (unsigned long long)g.events, secs,
           (double)g.requests / secs, (double)g.events / secs, pct_ms(&g, 0.50), pct_ms(&g, 0.99),
           pct_ms(&g, 0.999), g.nlat ? g.lat_us[g.nlat - 1] / 1000.0 : 0.0,
           (unsigned long long)g.errors, g.cpu1 - g.cpu0, g.pid ? g.hub1 - g.hub0 : 0.0);
    for (size_t i = 0; i < g.nreqs; i++)
        free(g.reqs[i].bytes);
    free(g.reqs);
    free(g.lat_us);
    for (int i = 0; i < g.nconns; i++)
        free(g.conns[i].buf);
    free(g.conns);
    uv_loop_close(g.loop);
    return g.errors > 0 && g.requests == 0 ? 1 : 0;
}
