/*
 * The nullhttp adapter: the HTTP layer's ceiling, for bench/run-fire.sh.
 *
 * It serves POSTs on PATH at LISTEN with the hub's h2o server (hub/http.c),
 * the very server the fire adapter uses, and answers each one at once with
 * the answer fire gives for one accepted event: 200 and
 * {"accepted":1,"rejected":[]}. It reads no header, parses no body and
 * produces nothing, so a load generator pointed at it measures what the HTTP
 * layer and the loop cost alone; the gap to fire is fire's own work (checks,
 * JSON, block lookup, Avro, Kafka and the wait for its acknowledgement).
 *
 * Test only: it lives in tests/adapters/ and is linked into
 * blockhub_test_adapters, never into blockhub. Its schema (nullhttp.avsc, in
 * this folder) is declared because every adapter type names one; nothing is
 * ever encoded with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "hub.h"
#include "log.h"

#define SCHEMA "blockhub.test.NullHttp"

/* Byte for byte what fire answers when the one event of a request was accepted. */
static const char ANSWER[] = "{\"accepted\":1,\"rejected\":[]}";

struct nullhttp_conf {
    char *listen;
    char *path;
};

struct nullhttp {
    struct bh_component *c;
    const struct nullhttp_conf *conf;
    struct bh_http http;
    uint64_t answered;
};

static int
on_req(h2o_handler_t *h, h2o_req_t *req)
{
    struct nullhttp *n = bh_http_self(h);
    const char *path = n->conf->path;
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, path, strlen(path)))
        return -1; /* h2o answers 404 */
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        bh_http_send_json(req, 405, "Method Not Allowed", "{\"error\":\"only POST is accepted\"}");
        return 0;
    }
    n->answered++;
    bh_http_send_json(req, 200, "OK", ANSWER);
    return 0;
}

static int
start(struct bh_component *c, char *errstr, size_t errstr_size)
{
    const struct nullhttp_conf *conf = c->settings;
    struct nullhttp *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    n->c = c;
    n->conf = conf;
    int rc = bh_http_init(&n->http, c->hub->loop, conf->listen, 1024 * 1024, errstr, errstr_size);
    if (rc == 0)
        rc = bh_http_handle(&n->http, conf->path, on_req, n);
    if (rc == 0)
        rc = bh_http_listen(&n->http, errstr, errstr_size);
    if (rc < 0) {
        if (bh_http_free(&n->http) == 0)
            free(n);
        return rc; /* else h2o still holds n */
    }
    c->priv = n;
    bh_info(c->name, "null answers on http://%s%s (no Kafka work)", n->http.bound, conf->path);
    return 0;
}

/* Every request is answered as it comes: nothing is in flight to wait for. */
static void
stop(struct bh_component *c)
{
    struct nullhttp *n = c->priv;
    bh_http_stop(&n->http);
    bh_component_stopped(c);
}

static void
destroy(struct bh_component *c)
{
    struct nullhttp *n = c->priv;
    if (n == NULL)
        return;
    c->priv = NULL;
    if (bh_http_free(&n->http) == 0)
        free(n);
    /* else a connection never closed: h2o keeps n; the process is exiting. */
}

static void
stats(const struct bh_component *c, struct bh_stats *out)
{
    const struct nullhttp *n = c->priv;
    if (n != NULL)
        bh_stats_add(out, "answered", "POSTs answered 200", false, n->answered);
}

#define KEY(field) offsetof(struct nullhttp_conf, field)

static const struct bh_conf_key nullhttp_keys[] = {
    {.name = "listen",
     .type = BH_CONF_STRING,
     .offset = KEY(listen),
     .def = "127.0.0.1:8081",
     .check = bh_conf_check_listen,
     .doc = "Address and port of the listener (host:port, [v6]:port, :port)."},
    {.name = "path",
     .type = BH_CONF_STRING,
     .offset = KEY(path),
     .def = "/v1/null/events",
     .doc = "Path the POSTs go to."},
    {0},
};

const struct bh_component_type bh_adapter_type_nullhttp = {
    .name = "nullhttp",
    .doc = "Test only: answers every POST as fire answers one accepted event, doing no Kafka work.",
    .schema = SCHEMA,
    .conf = {.keys = nullhttp_keys, .size = sizeof(struct nullhttp_conf)},
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .stats = stats,
};
