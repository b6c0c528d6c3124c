/* The admin API (admin.h): one listener, the hub's own endpoints, and the routes of components. */
#include "admin.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlq.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "utf8.h"

#define MAX_ROUTES 16
#define MAX_NAME   200

struct route {
    char prefix[64];
    size_t len;
    bh_admin_fn fn;
    void *self;
};

struct bh_admin {
    struct bh_hub *hub;
    const struct bh_admin_conf *conf;
    struct bh_http http;
    bool listening;
    struct route routes[MAX_ROUTES];
    size_t nroutes;
    char url[300];
};

void
bh_admin_send_json(h2o_req_t *req, int status, const char *reason, const char *body)
{
    bh_http_send_json(req, status, reason, body);
}

static void
send_json(h2o_req_t *req, int status, const char *reason, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (text != NULL)
        bh_http_send_json(req, status, reason, text);
    else
        bh_http_send_error(req, 500, "Internal Server Error", "the answer could not be built");
    free(text);
    json_decref(body);
}

static void
send_text(h2o_req_t *req, const char *type, const char *text, size_t len)
{
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_send_inline(req, text, len);
}

/* --- who may ask ------------------------------------------------------------- */

static bool
authorized(const struct bh_admin *a, h2o_req_t *req)
{
    if (a->conf->tokens.n == 0)
        return true;
    return bh_http_bearer_ok(req, &a->conf->tokens);
}

/* --- the hub's endpoints ------------------------------------------------------ */

static const char *
state_of(const struct bh_hub *hub, const struct bh_component *c)
{
    if (c->failed)
        return "failed";
    if (c->stopped)
        return "stopped";
    if (hub->stopping)
        return "stopping";
    if (!hub->ready)
        return "starting";
    return c->paused ? "paused" : "running";
}

static struct bh_component *
find_component(struct bh_hub *hub, const char *name, size_t len)
{
    for (size_t i = 0; i < hub->ncomponents; i++) {
        struct bh_component *c = hub->components[i];
        if (strlen(c->name) == len && memcmp(c->name, name, len) == 0)
            return c;
    }
    return NULL;
}

static json_t *
component_json(const struct bh_hub *hub, const struct bh_component *c)
{
    struct bh_stats st;
    bh_component_stats(c, &st);
    json_t *counters = json_object();
    for (size_t i = 0; counters != NULL && i < st.n; i++) {
        char key[128];
        if (st.v[i].label != NULL)
            snprintf(key, sizeof(key), "%s{%s=%s}", st.v[i].name, st.v[i].label,
                     st.v[i].label_value);
        else
            snprintf(key, sizeof(key), "%s", st.v[i].name);
        json_object_set_new(counters, key, json_integer((json_int_t)st.v[i].value));
    }
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:b, s:o*}", "name", c->name, "type", c->type->name, "state",
                  state_of(hub, c), "can_pause", c->type->pause != NULL, "counters", counters);
    /* The producer it publishes through: the hub's, or its own with the properties it overrides. */
    if (j != NULL && c->kafka != NULL) {
        const struct bh_kvlist *own = bh_component_kafka_properties(c);
        json_t *props = json_object();
        for (size_t i = 0; props != NULL && i < own->n; i++)
            json_object_set_new(props, own->k[i], json_string(own->v[i]));
        json_object_set_new(j, "producer",
                            json_pack("{s:s, s:s, s:o*}", "kind", "own", "bootstrap",
                                      bh_kafka_bootstrap(c->kafka), "kafka_properties", props));
    } else if (j != NULL && c->type != NULL && hub->kafka != NULL) {
        json_object_set_new(
            j, "producer",
            json_pack("{s:s, s:s}", "kind", "hub", "bootstrap", bh_kafka_bootstrap(hub->kafka)));
    }
    return j;
}

static void
get_components(struct bh_admin *a, h2o_req_t *req)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < a->hub->ncomponents; i++)
        json_array_append_new(list, component_json(a->hub, a->hub->components[i]));
    send_json(req, 200, "OK", json_pack("{s:o*}", "components", list));
}

/* POST /components/{name}/pause|resume; REST is what follows "/components/". */
static void
post_component(struct bh_admin *a, h2o_req_t *req, const char *rest, size_t len)
{
    const char *slash = memrchr(rest, '/', len);
    if (slash == NULL || slash == rest) {
        bh_http_send_error(req, 404, "Not Found", "POST /components/{name}/pause or /resume");
        return;
    }
    size_t nlen = (size_t)(slash - rest);
    const char *verb = slash + 1;
    size_t vlen = len - nlen - 1;
    bool pause = vlen == 5 && memcmp(verb, "pause", 5) == 0;
    bool resume = vlen == 6 && memcmp(verb, "resume", 6) == 0;
    char name[MAX_NAME];
    snprintf(name, sizeof(name), "%.*s", (int)(nlen < MAX_NAME - 1 ? nlen : MAX_NAME - 1), rest);
    struct bh_component *c = find_component(a->hub, rest, nlen);
    if (!pause && !resume) {
        bh_http_send_error(req, 404, "Not Found", "POST /components/{name}/pause or /resume");
        return;
    }
    if (c == NULL) {
        char msg[MAX_NAME + 40];
        snprintf(msg, sizeof(msg), "no component named '%s'", name);
        bh_http_send_error(req, 404, "Not Found", msg);
        return;
    }
    if (a->hub->stopping || c->stopped) {
        bh_http_send_error(req, 409, "Conflict", "the component is stopping");
        return;
    }
    int rc = pause ? bh_component_pause(c) : bh_component_resume(c);
    if (rc == -ENOTSUP) {
        char msg[MAX_NAME + 80];
        snprintf(msg, sizeof(msg), "a %s component cannot be paused", c->type->name);
        bh_http_send_error(req, 501, "Not Implemented", msg);
        return;
    }
    if (rc < 0) {
        bh_http_send_error(req, 409, "Conflict", strerror(-rc));
        return;
    }
    bh_info("admin", "%s %s", c->name, pause ? "paused" : "resumed");
    send_json(req, 200, "OK", component_json(a->hub, c));
}

/* The Prometheus name of a component counter: blockhub_component_NAME[_total]. */
static void
metric_name(char *buf, size_t n, const struct bh_stat *s)
{
    snprintf(buf, n, "blockhub_component_%s%s", s->name, s->gauge ? "" : "_total");
}

/* A label value: backslash, double quote and line feed escaped. */
static void
put_label(h2o_buffer_t **out, const char *v)
{
    for (; *v != '\0'; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        size_t len = esc != NULL ? strlen(esc) : 1;
        h2o_iovec_t room = h2o_buffer_reserve(out, len);
        if (room.base == NULL)
            return;
        memcpy(room.base, esc != NULL ? esc : v, len);
        (*out)->size += len;
    }
}

static void
put(h2o_buffer_t **out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    h2o_iovec_t room = h2o_buffer_reserve(out, len);
    if (room.base == NULL)
        return;
    memcpy(room.base, line, len);
    (*out)->size += len;
}

static void
get_metrics(struct bh_admin *a, h2o_req_t *req)
{
    struct bh_hub *hub = a->hub;
    size_t n = hub->ncomponents;
    struct bh_stats *st = calloc(n ? n : 1, sizeof(*st));
    if (st == NULL) {
        bh_http_send_error(req, 503, "Service Unavailable", "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        bh_component_stats(hub->components[i], &st[i]);
    h2o_buffer_t *out;
    h2o_buffer_init(&out, &h2o_socket_buffer_prototype);
    put(&out,
        "# HELP blockhub_up 1 while the process runs\n# TYPE blockhub_up gauge\nblockhub_up 1\n");
    put(&out,
        "# HELP blockhub_ready 1 once every component has started and the cluster answers\n"
        "# TYPE blockhub_ready gauge\nblockhub_ready %d\n",
        hub->ready && !hub->stopping && hub->kafka != NULL && bh_kafka_reachable(hub->kafka));
    if (hub->kafka != NULL) {
        put(&out,
            "# HELP blockhub_kafka_in_flight messages handed to the producer and not yet reported\n"
            "# TYPE blockhub_kafka_in_flight gauge\nblockhub_kafka_in_flight %zu\n",
            bh_kafka_in_flight(hub->kafka));
        put(&out,
            "# HELP blockhub_kafka_producer_restarts_total producers replaced after a fatal "
            "error\n# TYPE blockhub_kafka_producer_restarts_total counter\n"
            "blockhub_kafka_producer_restarts_total %u\n",
            bh_kafka_restarts(hub->kafka));
    }
    put(&out,
        "# HELP blockhub_reloads_total config reloads by outcome\n"
        "# TYPE blockhub_reloads_total counter\n"
        "blockhub_reloads_total{outcome=\"applied\"} %" PRIu64 "\n"
        "blockhub_reloads_total{outcome=\"refused\"} %" PRIu64 "\n",
        hub->reloads_applied, hub->reloads_refused);
    if (hub->registry != NULL) {
        struct bh_registry_stats rs;
        bh_registry_stats(hub->registry, &rs);
        put(&out,
            "# HELP blockhub_schema_registry_up 1 while the schema registry answers (publishing "
            "goes on with cached ids when it does not)\n"
            "# TYPE blockhub_schema_registry_up gauge\nblockhub_schema_registry_up %d\n",
            rs.reachable ? 1 : 0);
        put(&out,
            "# HELP blockhub_schema_registry_requests_total requests sent to the schema registry\n"
            "# TYPE blockhub_schema_registry_requests_total counter\n"
            "blockhub_schema_registry_requests_total %" PRIu64 "\n",
            rs.requests);
        put(&out,
            "# HELP blockhub_schema_registry_failures_total requests with no answer or a 5xx\n"
            "# TYPE blockhub_schema_registry_failures_total counter\n"
            "blockhub_schema_registry_failures_total %" PRIu64 "\n",
            rs.failures);
        put(&out,
            "# HELP blockhub_schema_registry_cached_schemas schemas known by registry id\n"
            "# TYPE blockhub_schema_registry_cached_schemas gauge\n"
            "blockhub_schema_registry_cached_schemas %" PRIu64 "\n",
            rs.cached);
    }
    /* Each metric once, with its samples of every component that has it. */
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < st[i].n; k++) {
            const struct bh_stat *s = &st[i].v[k];
            bool seen = false;
            for (size_t pi = 0; pi <= i && !seen; pi++)
                for (size_t pk = 0; pk < (pi == i ? k : st[pi].n) && !seen; pk++)
                    seen = strcmp(st[pi].v[pk].name, s->name) == 0;
            if (seen)
                continue;
            char name[128];
            metric_name(name, sizeof(name), s);
            put(&out, "# HELP %s %s\n# TYPE %s %s\n", name, s->help, name,
                s->gauge ? "gauge" : "counter");
            for (size_t j = i; j < n; j++) {
                for (size_t e = 0; e < st[j].n; e++) {
                    const struct bh_stat *x = &st[j].v[e];
                    if (strcmp(x->name, s->name) != 0)
                        continue;
                    put(&out, "%s{component=\"", name);
                    put_label(&out, hub->components[j]->name);
                    put(&out, "\",type=\"");
                    put_label(&out, hub->components[j]->type->name);
                    if (x->label != NULL) {
                        put(&out, "\",%s=\"", x->label);
                        put_label(&out, x->label_value);
                    }
                    put(&out, "\"} %" PRIu64 "\n", x->value);
                }
            }
        }
    }
    free(st);
    /* Dead letters by reason, and the latency from Kafka's hands to its acknowledgement. */
    put(&out, "# HELP blockhub_dead_letters_total dead letters by component and reason\n"
              "# TYPE blockhub_dead_letters_total counter\n");
    for (size_t i = 0; i < n; i++) {
        const struct bh_component *c = hub->components[i];
        for (int r = 0; r < BH_DLQ_REASON_COUNT; r++) {
            if (c->dead_by_reason[r] == 0)
                continue;
            put(&out, "blockhub_dead_letters_total{component=\"");
            put_label(&out, c->name);
            put(&out, "\",reason=\"%s\"} %" PRIu64 "\n", bh_dlq_reason_code((enum bh_dlq_reason)r),
                c->dead_by_reason[r]);
        }
    }
    put(&out, "# HELP blockhub_ack_latency_seconds from handing a record or dead letter to "
              "Kafka to its acknowledgement\n# TYPE blockhub_ack_latency_seconds histogram\n");
    for (size_t i = 0; i < n; i++) {
        const struct bh_component *c = hub->components[i];
        uint64_t cum = 0;
        for (size_t b = 0; b < BH_ACK_BUCKETS; b++) {
            cum += c->ack_buckets[b];
            put(&out, "blockhub_ack_latency_seconds_bucket{component=\"");
            put_label(&out, c->name);
            if (b < BH_ACK_BUCKETS - 1)
                put(&out, "\",le=\"%g\"} %" PRIu64 "\n", bh_ack_bounds_ms[b] / 1000.0, cum);
            else
                put(&out, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
        }
        put(&out, "blockhub_ack_latency_seconds_sum{component=\"");
        put_label(&out, c->name);
        put(&out, "\"} %.6f\n", (double)c->ack_sum_us / 1e6);
        put(&out, "blockhub_ack_latency_seconds_count{component=\"");
        put_label(&out, c->name);
        put(&out, "\"} %" PRIu64 "\n", cum);
    }
    if (hub->kafka != NULL) {
        struct bh_kafka_broker b[16];
        size_t nb = bh_kafka_brokers(hub->kafka, b, 16);
        put(&out, "# HELP blockhub_kafka_broker_up 1 while the producer's connection to the "
                  "broker is up\n# TYPE blockhub_kafka_broker_up gauge\n");
        for (size_t i = 0; i < nb; i++)
            put(&out, "blockhub_kafka_broker_up{broker=\"%d\"} %d\n", b[i].id, b[i].up);
        put(&out, "# HELP blockhub_kafka_broker_rtt_seconds average request round trip (the "
                  "latest statistics window)\n# TYPE blockhub_kafka_broker_rtt_seconds gauge\n");
        for (size_t i = 0; i < nb; i++)
            put(&out, "blockhub_kafka_broker_rtt_seconds{broker=\"%d\"} %.6f\n", b[i].id,
                (double)b[i].rtt_avg_us / 1e6);
        put(&out, "# HELP blockhub_kafka_broker_request_errors_total produce requests that "
                  "failed\n# TYPE blockhub_kafka_broker_request_errors_total counter\n");
        for (size_t i = 0; i < nb; i++)
            put(&out, "blockhub_kafka_broker_request_errors_total{broker=\"%d\"} %" PRIu64 "\n",
                b[i].id, b[i].tx_errors);
    }
    h2o_iovec_t body = h2o_strdup(&req->pool, out->bytes, out->size);
    h2o_buffer_dispose(&out);
    send_text(req, "text/plain; version=0.0.4; charset=utf-8", body.base, body.len);
}

static void
get_readyz(struct bh_admin *a, h2o_req_t *req)
{
    struct bh_hub *hub = a->hub;
    const char *why = NULL;
    char buf[MAX_NAME + 60];
    if (hub->stopping)
        why = "shutting down";
    else if (!hub->ready)
        why = "starting";
    else if (hub->kafka == NULL || !bh_kafka_reachable(hub->kafka))
        why = "no Kafka broker answers";
    for (size_t i = 0; why == NULL && i < hub->ncomponents; i++) {
        if (hub->components[i]->failed || hub->components[i]->stopped) {
            snprintf(buf, sizeof(buf), "component '%s' has %s", hub->components[i]->name,
                     hub->components[i]->failed ? "failed" : "stopped");
            why = buf;
        }
    }
    if (why != NULL) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        send_json(req, 503, "Service Unavailable",
                  json_pack("{s:s, s:s}", "status", "not ready", "why", why));
        return;
    }
    send_json(req, 200, "OK", json_pack("{s:s}", "status", "ready"));
}

static void
put_log_level(h2o_req_t *req)
{
    char level[16];
    size_t len = req->entity.len;
    const char *p = req->entity.base;
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' '))
        len--;
    /* A bare name, or {"level": NAME}. */
    json_t *o = len > 0 && p[0] == '{' ? json_loadb(p, len, 0, NULL) : NULL;
    const char *name = o != NULL ? json_string_value(json_object_get(o, "level")) : NULL;
    if (name != NULL)
        snprintf(level, sizeof(level), "%s", name);
    else
        snprintf(level, sizeof(level), "%.*s", (int)(len < sizeof(level) ? len : 0), p);
    json_decref(o);
    enum bh_log_level l;
    if (bh_log_level_parse(level, &l) < 0) {
        bh_http_send_error(req, 400, "Bad Request", "the level is one of error, warn, info, debug");
        return;
    }
    bh_log_set_level(l);
    bh_info("admin", "log level now %s", level);
    send_json(req, 200, "OK", json_pack("{s:s}", "level", level));
}

static void
post_reload(struct bh_admin *a, h2o_req_t *req)
{
    char changes[1000], err[4096];
    if (a->hub->reload == NULL) {
        bh_http_send_error(req, 501, "Not Implemented", "no reload here");
        return;
    }
    int rc = a->hub->reload(a->hub, changes, sizeof(changes), err, sizeof(err));
    if (rc < 0) {
        bh_error("hub", "reload refused: %s", err);
        bh_http_send_error(req, rc == -ESHUTDOWN ? 409 : 400,
                           rc == -ESHUTDOWN ? "Conflict" : "Bad Request", err);
        return;
    }
    char clean[1000];
    bh_utf8_sanitize(clean, sizeof(clean), changes, strlen(changes));
    send_json(req, 200, "OK", json_pack("{s:s}", "changes", clean));
}

static bool
method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static void
not_allowed(h2o_req_t *req, const char *allow)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    bh_http_send_error(req, 405, "Method Not Allowed", "method not allowed here");
}

static int
on_req(h2o_handler_t *h, h2o_req_t *req)
{
    struct bh_admin *a = bh_http_self(h);
    const char *path = req->path_normalized.base;
    size_t len = req->path_normalized.len;
    if (!authorized(a, req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer"));
        bh_http_send_error(req, 401, "Unauthorized", "a valid bearer token is required");
        return 0;
    }
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(path, lit, len) == 0)
    if (IS("/healthz")) {
        if (method_is(req, "GET") || method_is(req, "HEAD"))
            send_json(req, 200, "OK", json_pack("{s:s}", "status", "alive"));
        else
            not_allowed(req, "GET");
        return 0;
    }
    if (IS("/readyz")) {
        if (method_is(req, "GET") || method_is(req, "HEAD"))
            get_readyz(a, req);
        else
            not_allowed(req, "GET");
        return 0;
    }
    if (IS("/components")) {
        if (method_is(req, "GET"))
            get_components(a, req);
        else
            not_allowed(req, "GET");
        return 0;
    }
    if (len > 12 && memcmp(path, "/components/", 12) == 0) {
        if (method_is(req, "POST"))
            post_component(a, req, path + 12, len - 12);
        else
            not_allowed(req, "POST");
        return 0;
    }
    if (IS("/metrics")) {
        if (method_is(req, "GET"))
            get_metrics(a, req);
        else
            not_allowed(req, "GET");
        return 0;
    }
    if (IS("/admin/reload")) {
        if (method_is(req, "POST"))
            post_reload(a, req);
        else
            not_allowed(req, "POST");
        return 0;
    }
    if (IS("/admin/log-level")) {
        if (method_is(req, "PUT"))
            put_log_level(req);
        else
            not_allowed(req, "PUT");
        return 0;
    }
#undef IS
    for (size_t i = 0; i < a->nroutes; i++) {
        const struct route *r = &a->routes[i];
        bool dir = r->prefix[r->len - 1] == '/';
        if (dir ? (len > r->len && memcmp(path, r->prefix, r->len) == 0)
                : (len == r->len && memcmp(path, r->prefix, len) == 0)) {
            r->fn(r->self, req);
            return 0;
        }
    }
    bh_http_send_error(req, 404, "Not Found", "no such endpoint");
    return 0;
}

/* --- the server ---------------------------------------------------------------- */

int
bh_admin_start(struct bh_hub *hub, char *errstr, size_t n)
{
    const struct bh_admin_conf *c = &hub->conf->admin;
    hub->admin = NULL;
    if (c->listen == NULL || c->listen[0] == '\0')
        return 0;
    struct bh_admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->hub = hub;
    a->conf = c;
    int rc = bh_http_init(&a->http, hub->loop, c->listen, 4096, errstr, n);
    if (rc == 0)
        rc = bh_http_handle(&a->http, "/", on_req, a);
    if (rc == 0 && bh_tls_conf_enabled(&c->tls))
        rc = bh_http_set_tls(&a->http, &c->tls, errstr, n);
    if (rc == 0)
        rc = bh_http_listen(&a->http, errstr, n);
    if (rc < 0) {
        if (bh_http_free(&a->http) == 0)
            free(a);
        return rc;
    }
    a->listening = true;
    if (c->advertise != NULL && c->advertise[0] != '\0') {
        snprintf(a->url, sizeof(a->url), "%s", c->advertise);
    } else {
        /* A wildcard address tells others nothing: give the host name instead. */
        const char *colon = strrchr(a->http.bound, ':');
        char host[128] = "localhost";
        if (strncmp(a->http.bound, "0.0.0.0:", 8) == 0 || strncmp(a->http.bound, "[::]:", 5) == 0)
            gethostname(host, sizeof(host) - 1);
        else
            snprintf(host, sizeof(host), "%.*s", (int)(colon - a->http.bound), a->http.bound);
        snprintf(a->url, sizeof(a->url), "%s://%s%s", bh_http_is_tls(&a->http) ? "https" : "http",
                 host, colon);
    }
    hub->admin = a;
    bh_info("admin", "admin API on %s://%s (advertised as %s)%s",
            bh_http_is_tls(&a->http) ? "https" : "http", a->http.bound, a->url,
            c->tokens.n > 0 ? "" : "; no admin.tokens: anyone who reaches it may use it");
    return 0;
}

int
bh_admin_route(struct bh_admin *a, const char *prefix, bh_admin_fn fn, void *self)
{
    size_t len = strlen(prefix);
    if (a == NULL || a->nroutes == MAX_ROUTES || len == 0 || len >= sizeof(a->routes[0].prefix))
        return -EINVAL;
    struct route *r = &a->routes[a->nroutes++];
    memcpy(r->prefix, prefix, len + 1);
    r->len = len;
    r->fn = fn;
    r->self = self;
    return 0;
}

void
bh_admin_unroute(struct bh_admin *a, void *self)
{
    if (a == NULL)
        return;
    size_t k = 0;
    for (size_t i = 0; i < a->nroutes; i++)
        if (a->routes[i].self != self)
            a->routes[k++] = a->routes[i];
    a->nroutes = k;
}

const char *
bh_admin_url(const struct bh_admin *a)
{
    return a != NULL ? a->url : NULL;
}

const char *
bh_admin_port(const struct bh_admin *a)
{
    const char *colon = strrchr(a->http.bound, ':');
    return colon != NULL ? colon + 1 : a->http.bound;
}

void
bh_admin_set_conf(struct bh_admin *a, const struct bh_admin_conf *conf)
{
    if (a == NULL)
        return;
    a->conf = conf;
    if (bh_http_is_tls(&a->http) && bh_tls_conf_enabled(&conf->tls)) {
        /* New connections get the files as they are now (checked with the config). */
        char err[400];
        if (bh_http_set_tls(&a->http, &conf->tls, err, sizeof(err)) < 0)
            bh_error("admin", "admin.%s; the running certificate stays", err);
    }
}

void
bh_admin_stop(struct bh_admin *a)
{
    if (a == NULL || !a->listening)
        return;
    a->listening = false;
    bh_http_stop(&a->http);
}

void
bh_admin_free(struct bh_admin *a)
{
    if (a == NULL)
        return;
    a->nroutes = 0;
    if (bh_http_free(&a->http) == 0)
        free(a);
    /* else a connection never closed: h2o keeps it; the process is exiting. */
}

#define AKEY(f) offsetof(struct bh_admin_conf, f)

static int
check_tokens(const void *value, char *why, size_t why_size)
{
    return bh_conf_check_secrets(value, 0, why, why_size);
}

const struct bh_conf_key bh_admin_conf_keys[] = {
    {.name = "listen",
     .type = BH_CONF_STRING,
     .offset = AKEY(listen),
     .check = bh_conf_check_listen,
     .doc = "Address of the admin HTTP API (health, readiness, components, pause and resume, "
            "metrics, log level, and the join's GET /blocks/{id} and GET /join); unset: none."},
    {.name = "advertise",
     .type = BH_CONF_STRING,
     .offset = AKEY(advertise),
     .doc = "The admin API's URL as other join processes should give it out (default: "
            "http:// and the bound address, the host name for a wildcard address)."},
    {.name = "tokens",
     .type = BH_CONF_STRING_LIST,
     .offset = AKEY(tokens),
     .check = check_tokens,
     .doc = "Bearer tokens of the admin API; unset: the API is open to whoever reaches it."},
    {.name = "tls",
     .type = BH_CONF_SECTION,
     .offset = AKEY(tls),
     .sub = bh_tls_conf_keys,
     .doc = "HTTPS on the admin API (cert_file and key_file turn it on; with client_ca_file, "
            "clients show a certificate of that CA). The files are read again on a reload; "
            "turning TLS on or off takes a restart."},
    {0},
};
