/*
 * HTTP/1.1 sender of the end-to-end latency benchmark's fire runs
 * (bench/run-latency.sh, bench/latency_bench.py).
 *
 *   bench_latency_fire HOST:PORT PATH TOKEN BODIES CONNECTIONS RATE SECONDS OUT [PID]
 *
 * Opens CONNECTIONS keep-alive connections to HOST:PORT (IPv4). Request i
 * carries line i (modulo their number) of BODIES, a file of request bodies, one
 * a line. At most one request is in flight on a connection.
 *
 * RATE 0: flat out (closed loop): every connection sends its next request as
 * soon as the answer to the previous one is in.
 * RATE > 0: paced (open loop): request i is due at i / RATE seconds after the
 * start; a timer every millisecond (and every answer) sends the requests that
 * are due, each on an idle connection. A due request that finds no idle
 * connection waits for the next answer: how late requests went out against
 * their schedule is printed (lag), so a sender short of connections shows.
 *
 * It sends for SECONDS, then waits for the answers still due (30 s at most).
 * OUT receives, for each request sent, in order, the wall-clock time
 * (CLOCK_REALTIME, ns, 8 bytes little-endian) taken just before its first byte
 * is handed to the socket: the moment the records of its body are handed to
 * blockhub. Then one line of key=value on stdout:
 *
 *   sent answered events errors seconds eps ans_p50_ms ans_p99_ms lag_p99_ms
 *   lag_max_ms gen_cpu hub_cpu
 *
 * events: the events the answers report accepted ("accepted":N of a 200);
 * eps: those of the answers received within the SECONDS of sending, per
 * second (RATE 0: the rate blockhub took them at); ans_*: the answer's
 * latency, from the first byte written to the answer's last byte read; errors:
 * answers that are not 200 or that list a rejected item; gen_cpu: this
 * program's CPU seconds; hub_cpu: those of process PID, when given.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define DRAIN_MS 30000

struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct gen *g;
    char *buf;
    size_t len, cap;
    uint64_t sent_at; /* uv_hrtime of the request in flight; 0: idle */
    int closing;
};

struct u64s {
    uint64_t *v;
    size_t n, cap;
};

struct gen {
    uv_loop_t *loop;
    struct request *reqs;
    size_t nreqs;
    struct conn *conns;
    int nconns, connected;
    int *idle; /* a stack of idle connections */
    int nidle;
    double rate;
    uint64_t start, stop_at; /* uv_hrtime */
    uint64_t next;           /* the next request to send */
    int sending, finished;
    double seconds;
    uint64_t answered, events, events_in_window, errors;
    struct u64s wall; /* per request sent: CLOCK_REALTIME ns */
    struct u64s ans;  /* answer latencies, ns */
    struct u64s lag;  /* paced: how late each request went out, ns */
    uv_timer_t tick, drain;
    double cpu0, hub0;
    long pid;
    struct sockaddr_in addr;
};

static void
die(const char *what, int err)
{
    fprintf(stderr, "bench_latency_fire: %s: %s\n", what, err ? uv_strerror(err) : "failed");
    exit(1);
}

#include "bench_clock.h"
#include "bench_fire_http.h"

static void
push(struct u64s *a, uint64_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 1 << 16;
        a->v = realloc(a->v, a->cap * sizeof(*a->v));
        if (a->v == NULL)
            die("out of memory", 0);
    }
    a->v[a->n++] = x;
}

static uint64_t
wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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

static void
on_closed(uv_handle_t *h)
{
    (void)h;
}

static void
close_all(struct gen *g)
{
    for (int i = 0; i < g->nconns; i++) {
        struct conn *c = &g->conns[i];
        if (!c->closing) {
            c->closing = 1;
            uv_close((uv_handle_t *)&c->tcp, on_closed);
        }
    }
    if (!uv_is_closing((uv_handle_t *)&g->tick))
        uv_close((uv_handle_t *)&g->tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&g->drain))
        uv_close((uv_handle_t *)&g->drain, NULL);
}

static void on_drain(uv_timer_t *t);

static int
in_flight(const struct gen *g)
{
    return g->connected - g->nidle;
}

/* Sending is over and every answer is in: close. */
static void
maybe_finish(struct gen *g)
{
    if (!g->sending && !g->finished && in_flight(g) == 0) {
        g->finished = 1;
        close_all(g);
    }
}

/* The end of the sending window: the answers still due have DRAIN_MS to come. */
static void
stop_sending(struct gen *g)
{
    g->sending = 0;
    uv_timer_stop(&g->tick);
    uv_timer_start(&g->drain, on_drain, DRAIN_MS, 0);
    maybe_finish(g);
}

static void
on_written(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    free(w);
    if (status < 0 && !c->g->finished)
        die("write", status);
}

static void
send_on(struct conn *c)
{
    struct gen *g = c->g;
    struct request *r = &g->reqs[g->next % g->nreqs];
    uv_buf_t b = uv_buf_init(r->bytes, (unsigned)r->len);
    /* A request of its own for each write: the answer may be read before the callback of the
     * write that asked for it has run (libuv polls again without running the callbacks when
     * one poll returns a full batch of events). */
    uv_write_t *w = malloc(sizeof(*w));
    if (w == NULL)
        die("out of memory", 0);
    w->data = c;
    c->sent_at = uv_hrtime();
    if (g->rate > 0) {
        uint64_t due = g->start + (uint64_t)((double)g->next * 1e9 / g->rate);
        push(&g->lag, c->sent_at > due ? c->sent_at - due : 0);
    }
    push(&g->wall, wall_ns());
    g->next++;
    int rc = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0)
        die("write", rc);
}

/* Paced: every request due by now, each on an idle connection while there is one. */
static void
send_due(struct gen *g)
{
    if (!g->sending)
        return;
    uint64_t now = uv_hrtime();
    if (now >= g->stop_at) {
        stop_sending(g);
        return;
    }
    uint64_t due = (uint64_t)((double)(now - g->start) * g->rate / 1e9) + 1;
    while (g->next < due && g->nidle > 0)
        send_on(&g->conns[g->idle[--g->nidle]]);
}

static void
on_tick(uv_timer_t *t)
{
    send_due(t->data);
}

static void
on_drain(uv_timer_t *t)
{
    struct gen *g = t->data;
    fprintf(stderr, "bench_latency_fire: %d answers still due after %d ms; closing\n", in_flight(g),
            DRAIN_MS);
    g->finished = 1;
    close_all(g);
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

/* One answer complete at the head of c->buf (see bench_fire_http.h). */
static size_t
parse_answer(struct conn *c, int *status, char *body, size_t cap, size_t *blen)
{
    return answer_parse(c->buf, c->len, status, body, cap, blen);
}

static void
on_answer(struct conn *c, int status, char *text)
{
    struct gen *g = c->g;
    uint64_t now = uv_hrtime();
    const char *acc = strstr(text, "\"accepted\":");
    long accepted = acc != NULL ? strtol(acc + 11, NULL, 10) : -1;
    if (status == 200 && accepted >= 0 && strstr(text, "\"rejected\":[]") != NULL) {
        g->answered++;
        g->events += (uint64_t)accepted;
        if (now < g->stop_at)
            g->events_in_window += (uint64_t)accepted;
        push(&g->ans, now - c->sent_at);
    } else if (g->errors++ < 5) {
        fprintf(stderr, "bench_latency_fire: answer %d: %s\n", status, text);
    }
    c->sent_at = 0;
    if (g->sending && g->rate <= 0 && now < g->stop_at) {
        send_on(c);
        return;
    }
    g->idle[g->nidle++] = (int)(c - g->conns);
    if (g->sending && g->rate <= 0)
        stop_sending(g);
    else if (g->sending)
        send_due(g);
    else
        maybe_finish(g);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        if (!c->g->finished)
            die("a connection was closed by the server", (int)nread);
        return;
    }
    c->len += (size_t)nread;
    int status;
    char body[256];
    size_t blen, used;
    while ((used = parse_answer(c, &status, body, sizeof(body) - 1, &blen)) > 0) {
        body[blen] = '\0';
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        on_answer(c, status, body);
    }
}

static void
start_sending(struct gen *g)
{
    g->cpu0 = self_cpu();
    g->hub0 = proc_cpu(g->pid);
    g->sending = 1;
    g->start = uv_hrtime();
    g->stop_at = g->start + (uint64_t)(g->seconds * 1e9);
    if (g->rate > 0)
        uv_timer_start(&g->tick, on_tick, 1, 1);
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    struct gen *g = c->g;
    if (status < 0)
        die("connect", status);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    g->idle[g->nidle++] = (int)(c - g->conns);
    if (++g->connected < g->nconns)
        return;
    start_sending(g);
    if (g->rate > 0) {
        send_due(g);
    } else {
        while (g->nidle > 0)
            send_on(&g->conns[g->idle[--g->nidle]]);
    }
}

static double
pct_ms(struct u64s *a, double p)
{
    if (a->n == 0)
        return 0;
    size_t i = (size_t)(p * (double)a->n);
    if (i >= a->n)
        i = a->n - 1;
    return (double)a->v[i] / 1e6;
}

/* The requests: one per line of FILE, with the head in front of each body. */

int
main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: bench_latency_fire HOST:PORT PATH TOKEN BODIES CONNECTIONS RATE "
                        "SECONDS OUT [PID]\n");
        return 2;
    }
    static struct gen g;
    const char *hostport = argv[1];
    parse_hostport(hostport, &g.addr);
    g.nconns = atoi(argv[5]);
    g.rate = atof(argv[6]);
    g.seconds = atof(argv[7]);
    const char *out = argv[8];
    g.pid = argc > 9 ? atol(argv[9]) : 0;
    if (g.nconns <= 0 || g.rate < 0 || g.seconds <= 0)
        die("CONNECTIONS > 0, RATE >= 0, SECONDS > 0", 0);
    load_requests(&g.reqs, &g.nreqs, argv[4], hostport, argv[2], argv[3]);

    g.loop = uv_default_loop();
    g.conns = calloc((size_t)g.nconns, sizeof(*g.conns));
    g.idle = calloc((size_t)g.nconns, sizeof(*g.idle));
    if (g.conns == NULL || g.idle == NULL)
        die("out of memory", 0);
    uv_timer_init(g.loop, &g.tick);
    uv_timer_init(g.loop, &g.drain);
    g.tick.data = g.drain.data = &g;
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
    /* Connecting, then SECONDS of sending, then the answers still due. */
    uv_run(g.loop, UV_RUN_DEFAULT);
    double gen_cpu = self_cpu() - g.cpu0, hub_cpu = proc_cpu(g.pid) - g.hub0;

    FILE *f = fopen(out, "wb");
    if (f == NULL ||
        (g.wall.n > 0 && fwrite(g.wall.v, sizeof(uint64_t), g.wall.n, f) != g.wall.n) ||
        fclose(f) != 0) {
        perror(out);
        return 1;
    }
    double secs = g.seconds;
    if (g.ans.n > 0)
        qsort(g.ans.v, g.ans.n, sizeof(*g.ans.v), cmp_u64);
    if (g.lag.n > 0)
        qsort(g.lag.v, g.lag.n, sizeof(*g.lag.v), cmp_u64);
    printf("sent=%llu answered=%llu events=%llu errors=%llu seconds=%.3f eps=%.1f "
           "ans_p50_ms=%.3f ans_p99_ms=%.3f lag_p99_ms=%.3f lag_max_ms=%.3f gen_cpu=%.2f "
           "hub_cpu=%.2f\n",
           (unsigned long long)g.wall.n, (unsigned long long)g.answered,
           (unsigned long long)g.events, (unsigned long long)g.errors, secs,
           (double)g.events_in_window / secs, pct_ms(&g.ans, 0.50), pct_ms(&g.ans, 0.99),
           pct_ms(&g.lag, 0.99), g.lag.n ? g.lag.v[g.lag.n - 1] / 1e6 : 0.0, gen_cpu,
           g.pid ? hub_cpu : 0.0);
    for (size_t i = 0; i < g.nreqs; i++)
        free(g.reqs[i].bytes);
    free(g.reqs);
    free(g.wall.v);
    free(g.ans.v);
    free(g.lag.v);
    for (int i = 0; i < g.nconns; i++)
        free(g.conns[i].buf);
    free(g.conns);
    free(g.idle);
    uv_loop_close(g.loop);
    return g.answered == 0 ? 1 : 0;
}
