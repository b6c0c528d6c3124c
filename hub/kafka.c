#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "lograte.h"
#include "utf8.h"

/* The same client report is logged at most once in this long; copies are counted. */
#define LOG_WINDOW_MS 10000

struct bh_kafka {
    uint64_t served_at; /* uv_hrtime() when serve() last began: the delivery reports' clock */
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_t *mock_rk; /* owns the embedded mock cluster */
    rd_kafka_mock_cluster_t *mock;
    rd_kafka_queue_t *mainq;
    int pipefd[2];
    uv_poll_t poll;
    char *bootstrap;
    int partitions;
    int replication;
    int create_timeout_ms;
    size_t in_flight;
    uint64_t produced;  /* messages taken by bh_kafka_produce (diverted ones not) */
    size_t max_message; /* message.max.bytes of the producer */
    int closing;        /* handles still closing after bh_kafka_close */
    int fatal;
    unsigned restarts;
    rd_kafka_conf_t *template; /* to make a new producer after a fatal error */
    /* bh_kafka_divert: messages go to this producer's open transaction instead */
    rd_kafka_t *divert;
    void (*divert_take)(void *arg, struct bh_delivery *d);
    void *divert_arg;
    /* Topic handles of the current producer: a name lookup per message costs. */
    struct {
        char *name;
        rd_kafka_topic_t *rkt;
    } topics[16];
    size_t ntopics;
    uv_timer_t restart;
    /* Repeated client reports: rate-limited, the count reported by the timer. */
    struct bh_lograte lograte;
    uv_timer_t lograte_timer;
    /* Is the cluster reachable: from librdkafka's statistics (brokers UP), else from errors. */
    int stats_seen;
    int brokers_up;
    int all_down;
    struct bh_kafka_broker brokers[16]; /* from the latest statistics */
    size_t nbrokers;
    /* The first authentication failure the client reported (SASL refused): "" if none. */
    char auth_error[512];
};

static void on_restart(uv_timer_t *t);

/* Properties blockhub relies on: a config may repeat them but not change them. */
static const struct {
    const char *name;
    const char *value;
} pinned[] = {
    {"enable.idempotence", "true"},
    {"acks", "all"},
    {"partitioner", "murmur2_random"},
};

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct bh_kafka *k = opaque;
    struct bh_delivery *d = m->_private;
    (void)rk;
    k->in_flight--;
    if (d != NULL)
        d->cb(d, m->err, m->partition, m->offset);
}

static void
log_repeated(int level, const char *component, const char *text, unsigned long n, void *arg)
{
    (void)arg;
    bh_log((enum bh_log_level)level, component, "%s (repeated %lu times)", text, n);
}

static void
on_lograte_timer(uv_timer_t *t)
{
    struct bh_kafka *k = t->data;
    int64_t next = bh_lograte_flush(&k->lograte, uv_now(k->loop), log_repeated, NULL);
    if (next >= 0)
        uv_timer_start(&k->lograte_timer, on_lograte_timer, (uint64_t)next + 1, 0);
}

/* One report of the client (on the loop thread), rate-limited by its text without timings. */
static void
log_client(struct bh_kafka *k, int level, const char *component, const char *text)
{
    char key[BH_LOGRATE_TEXT];
    unsigned long dropped;
    if (level == BH_LOG_DEBUG) {
        bh_log(BH_LOG_DEBUG, component, "%s", text);
        return;
    }
    bh_lograte_kafka_key(text, key, sizeof(key));
    uv_update_time(k->loop);
    if (!bh_lograte_check(&k->lograte, level, component, key, text, uv_now(k->loop), &dropped)) {
        if (!uv_is_active((uv_handle_t *)&k->lograte_timer))
            uv_timer_start(&k->lograte_timer, on_lograte_timer, LOG_WINDOW_MS, 0);
        return;
    }
    if (dropped > 0)
        log_repeated(level, component, text, dropped, NULL);
    else
        bh_log((enum bh_log_level)level, component, "%s", text);
}

static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct bh_kafka *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        bh_error("kafka", "fatal producer error %s: %s; making a new producer",
                 rd_kafka_err2name(orig), buf);
        /* Not from inside the producer's own callback: on the next loop turn. */
        if (!k->fatal)
            uv_timer_start(&k->restart, on_restart, 0, 0);
        k->fatal = 1;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        k->all_down = 1;
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION && k->auth_error[0] == '\0')
        snprintf(k->auth_error, sizeof(k->auth_error), "%s", reason);
    /* Transport errors while a broker is away are expected and retried: warnings. */
    char text[BH_LOGRATE_TEXT];
    snprintf(text, sizeof(text), "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    log_client(k, bh_lograte_kafka_error_level(err), "kafka", text);
}

/* librdkafka's statistics (statistics.interval.ms): how many brokers are up. */
static int
on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    struct bh_kafka *k = opaque;
    (void)rk;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = json_object_get(root, "brokers");
    const char *name;
    json_t *b;
    int up = 0;
    size_t nb = 0;
    json_object_foreach(brokers, name, b)
    {
        json_int_t id = json_integer_value(json_object_get(b, "nodeid"));
        const char *state = json_string_value(json_object_get(b, "state"));
        if (id >= 0 && state != NULL && strcmp(state, "UP") == 0)
            up++;
        if (id >= 0 && nb < sizeof(k->brokers) / sizeof(k->brokers[0])) {
            struct bh_kafka_broker *o = &k->brokers[nb++];
            snprintf(o->name, sizeof(o->name), "%s", name);
            o->id = (int32_t)id;
            o->up = state != NULL && strcmp(state, "UP") == 0;
            o->rtt_avg_us = json_integer_value(json_object_get(json_object_get(b, "rtt"), "avg"));
            o->tx_errors = (uint64_t)json_integer_value(json_object_get(b, "txerrs"));
            o->tx_retries = (uint64_t)json_integer_value(json_object_get(b, "txretries"));
        }
    }
    if (brokers != NULL) {
        k->nbrokers = nb;
        k->stats_seen = 1;
        k->brokers_up = up;
        if (up > 0)
            k->all_down = 0;
    }
    json_decref(root);
    return 0; /* librdkafka frees JSON */
}

size_t
bh_kafka_brokers(const struct bh_kafka *k, struct bh_kafka_broker *out, size_t cap)
{
    size_t n = k->nbrokers < cap ? k->nbrokers : cap;
    memcpy(out, k->brokers, n * sizeof(*out));
    return n;
}

int
bh_kafka_reachable(const struct bh_kafka *k)
{
    return k->stats_seen ? k->brokers_up > 0 : !k->all_down;
}

static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    struct bh_kafka *k = rd_kafka_opaque(rk);
    char text[BH_LOGRATE_TEXT];
    snprintf(text, sizeof(text), "%s: %s", fac, buf);
    log_client(k, bh_lograte_kafka_log_level(level, fac), "librdkafka", text);
}

/* Serve the main queue until it is empty: the pipe is written only on the
 * empty -> non-empty transition, so a partial drain would stall. */
static void
serve(struct bh_kafka *k)
{
    k->served_at = uv_hrtime();
    while (rd_kafka_poll(k->rk, 0) > 0)
        ;
}

/*
 * The authentication failure K's producer reported, or NULL. Its errors come
 * through the main queue: served here when that runs no delivery report
 * (nothing in flight), as before the loop runs, so a blocking wait sees them.
 */
static const char *
auth_failure(struct bh_kafka *k)
{
    if (k->auth_error[0] == '\0' && k->rk != NULL && k->in_flight == 0)
        serve(k);
    return k->auth_error[0] != '\0' ? k->auth_error : NULL;
}

static int
auth_refused(struct bh_kafka *k, const char *who, char *errstr, size_t errstr_size)
{
    snprintf(errstr, errstr_size,
             "%s: authentication failed at %s: %s (check kafka.properties: security.protocol, "
             "sasl.mechanisms, sasl.username, sasl.password)",
             who, k->bootstrap, k->auth_error);
    return -EACCES;
}

int
bh_kafka_auth_failed(struct bh_kafka *k, int wait_ms, char *errstr, size_t errstr_size)
{
    uint64_t deadline = uv_hrtime() / 1000000 + (uint64_t)(wait_ms > 0 ? wait_ms : 0);
    while (auth_failure(k) == NULL) {
        if (uv_hrtime() / 1000000 >= deadline)
            return 0;
        usleep(50 * 1000);
    }
    return auth_refused(k, "kafka", errstr, errstr_size);
}

static void
on_readable(uv_poll_t *h, int status, int events)
{
    struct bh_kafka *k = h->data;
    char buf[256];
    (void)status;
    (void)events;
    while (read(k->pipefd[0], buf, sizeof(buf)) > 0)
        ;
    serve(k);
}

static int
set_prop(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
         size_t errstr_size)
{
    char err[256];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka.properties.%s: %s", name, err);
        return -EINVAL;
    }
    return 0;
}

/* The bootstrap servers RK was made with, for error texts. */
static const char *
bootstrap_of(rd_kafka_t *rk, char *buf, size_t size)
{
    size_t len = size;
    buf[0] = '\0';
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "bootstrap.servers", buf, &len) != RD_KAFKA_CONF_OK)
        buf[0] = '\0';
    buf[size - 1] = '\0'; /* a longer list is cut */
    return buf;
}

int
bh_conf_check_topic(const void *value, char *why, size_t why_size)
{
    const char *topic = *(char *const *)value;
    size_t n = topic != NULL ? strlen(topic) : 0;
    size_t ok = topic != NULL ? strspn(topic, "abcdefghijklmnopqrstuvwxyz"
                                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                              : 0;
    if (n == 0 || n > 249 || ok != n || strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0) {
        char shown[80];
        bh_utf8_sanitize(shown, 68, topic != NULL ? topic : "", n);
        snprintf(why, why_size,
                 "'%s' is not a Kafka topic name (1-249 characters of a-z A-Z 0-9 . _ -)", shown);
        return -EINVAL;
    }
    return 0;
}

int
bh_kafka_check_properties(const struct bh_kvlist *props, char *why, size_t why_size)
{
    int rc = 0;
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; rc == 0 && props != NULL && i < props->n; i++) {
        const char *name = props->k[i], *value = props->v[i];
        for (size_t p = 0; p < sizeof(pinned) / sizeof(pinned[0]); p++) {
            if (strcmp(name, pinned[p].name) == 0 && strcmp(value, pinned[p].value) != 0) {
                snprintf(why, why_size, "blockhub requires %s=%s (got '%s')", name, pinned[p].value,
                         value);
                rc = -EINVAL;
            }
        }
        if (rc == 0 && strcmp(name, "bootstrap.servers") == 0) {
            snprintf(why, why_size, "set the brokers with kafka.brokers, not %s", name);
            rc = -EINVAL;
        }
        if (rc == 0 && rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            snprintf(why, why_size, "%s: %s", name, err);
            rc = -EINVAL;
        }
    }
    rd_kafka_conf_destroy(conf);
    return rc;
}

/*
 * librdkafka's table of properties (rd_kafka_conf_properties_show), read once:
 * lines "name | C/P | range | default | importance | description", C/P being
 * C, P or * (both). A name in both the global and the topic table gets both
 * scopes. Kept until the process ends; the names point into the text.
 */
struct scope_entry {
    const char *name;
    int scope; /* enum bh_kafka_scope */
};
static struct {
    char *text;
    struct scope_entry *v;
    size_t n;
} scopes;
static pthread_once_t scopes_once = PTHREAD_ONCE_INIT;

static char *
trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *end = '\0';
    return s;
}

static void
scope_add(const char *name, int scope)
{
    for (size_t i = 0; i < scopes.n; i++) {
        if (strcmp(scopes.v[i].name, name) == 0) {
            scopes.v[i].scope |= scope;
            return;
        }
    }
    void *v = realloc(scopes.v, (scopes.n + 1) * sizeof(*scopes.v));
    if (v == NULL)
        return;
    scopes.v = v;
    scopes.v[scopes.n].name = name;
    scopes.v[scopes.n].scope = scope;
    scopes.n++;
}

static void
load_scopes(void)
{
    size_t len = 0;
    FILE *f = open_memstream(&scopes.text, &len);
    if (f == NULL) {
        bh_error("kafka", "open_memstream: %s", strerror(errno));
        return;
    }
    rd_kafka_conf_properties_show(f);
    if (fclose(f) != 0 || scopes.text == NULL) {
        bh_error("kafka", "reading librdkafka's properties: %s", strerror(errno));
        return;
    }
    for (char *line = scopes.text, *next; *line != '\0'; line = next) {
        char *nl = strchr(line, '\n');
        next = nl != NULL ? nl + 1 : line + strlen(line);
        char *bar1 = memchr(line, '|', (size_t)(next - line));
        char *bar2 = bar1 != NULL ? memchr(bar1 + 1, '|', (size_t)(next - bar1 - 1)) : NULL;
        if (bar2 == NULL)
            continue;
        char *name = trim(line, bar1);
        const char *cp = trim(bar1 + 1, bar2);
        int scope = strcmp(cp, "P") == 0   ? BH_KAFKA_SCOPE_PRODUCER
                    : strcmp(cp, "C") == 0 ? BH_KAFKA_SCOPE_CONSUMER
                    : strcmp(cp, "*") == 0 ? BH_KAFKA_SCOPE_BOTH
                                           : BH_KAFKA_SCOPE_UNKNOWN;
        if (*name != '\0' && scope != BH_KAFKA_SCOPE_UNKNOWN)
            scope_add(name, scope);
    }
    if (scopes.n == 0)
        bh_error("kafka", "librdkafka's table of properties has no scopes");
}

enum bh_kafka_scope
bh_kafka_property_scope(const char *name)
{
    pthread_once(&scopes_once, load_scopes);
    for (size_t i = 0; i < scopes.n; i++)
        if (strcmp(scopes.v[i].name, name) == 0)
            return (enum bh_kafka_scope)scopes.v[i].scope;
    return BH_KAFKA_SCOPE_UNKNOWN;
}

int
bh_kafka_partition_counts(rd_kafka_t *rk, const char *const *topics, size_t n, int *counts,
                          int timeout_ms, const char *who, char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    /* All topics: asking for one by name may make a broker auto-create it. */
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char bootstrap[512];
        snprintf(errstr, errstr_size, "%s: metadata from %s: %s", who,
                 bootstrap_of(rk, bootstrap, sizeof(bootstrap)), rd_kafka_err2str(e));
        return -ETIMEDOUT;
    }
    for (size_t i = 0; i < n; i++) {
        counts[i] = 0;
        for (int t = 0; t < md->topic_cnt; t++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[t];
            if (strcmp(mt->topic, topics[i]) == 0 && mt->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                counts[i] = mt->partition_cnt;
                break;
            }
        }
    }
    rd_kafka_metadata_destroy(md);
    return 0;
}

int
bh_kafka_check_partitions(struct bh_kafka *k, const char *const *topics, size_t n, int timeout_ms,
                          char *errstr, size_t errstr_size)
{
    int *counts = calloc(n > 0 ? n : 1, sizeof(*counts));
    if (counts == NULL)
        return -ENOMEM;
    int rc = bh_kafka_partition_counts(k->rk, topics, n, counts, timeout_ms, "kafka", errstr,
                                       errstr_size);
    if (rc == 0) {
        errstr[0] = '\0';
        if (bh_kafka_partition_mismatches(topics, counts, n, k->partitions, 1, errstr,
                                          errstr_size) > 0)
            rc = -EINVAL;
    }
    free(counts);
    return rc;
}

size_t
bh_kafka_partition_mismatches(const char *const *topics, const int *counts, size_t n,
                              int partitions, size_t max, char *err, size_t errlen)
{
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        if (counts[i] == 0 || counts[i] == partitions)
            continue;
        size_t len = strnlen(err, errlen);
        if (found++ < max && len + 2 < errlen)
            snprintf(err + len, errlen - len,
                     "%stopic %s has %d partitions but kafka.partitions is %d: records keyed by "
                     "block would not be co-partitioned with the other topics",
                     len ? "\n" : "", topics[i], counts[i], partitions);
    }
    return found;
}

static int
start_mock(struct bh_kafka *k, char *errstr, size_t errstr_size)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (k->mock_rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "embedded kafka: %s", err);
        return -EINVAL;
    }
    /*
     * The mock cluster's thread takes the calling thread's signal mask, and unlike
     * rd_kafka_new, librdkafka does not block signals for it: a SIGTERM the kernel hands
     * to that thread interrupts its poll, which ends the thread and frees its queue while
     * the cluster is still in use. It is started with every signal blocked.
     */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    k->mock = rd_kafka_mock_cluster_new(k->mock_rk, 1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (k->mock == NULL) {
        snprintf(errstr, errstr_size, "embedded kafka: cannot start the mock cluster");
        return -EINVAL;
    }
    k->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(k->mock));
    bh_warn("kafka",
            "kafka.brokers is 'embedded': in-process mock Kafka cluster at %s; it keeps "
            "nothing and is only for trying blockhub out: point kafka.brokers at a real "
            "cluster for anything else",
            k->bootstrap);
    return 0;
}

/* A producer from the template, its main queue waking the loop through the pipe. */
static int
make_producer(struct bh_kafka *k, char *errstr, size_t errstr_size)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(k->template);
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (k->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka: %.480s", err);
        return -EINVAL;
    }
    rd_kafka_set_log_queue(k->rk, NULL);
    k->mainq = rd_kafka_queue_get_main(k->rk);
    rd_kafka_queue_io_event_enable(k->mainq, k->pipefd[1], "1", 1);
    return 0;
}

/* The producer's handle of TOPIC, made on first use; NULL when the table is full. */
static rd_kafka_topic_t *
topic_handle(struct bh_kafka *k, const char *topic)
{
    for (size_t i = 0; i < k->ntopics; i++)
        if (k->topics[i].name == topic || strcmp(k->topics[i].name, topic) == 0)
            return k->topics[i].rkt;
    if (k->ntopics == sizeof(k->topics) / sizeof(k->topics[0]))
        return NULL;
    char *name = strdup(topic);
    rd_kafka_topic_t *rkt = name ? rd_kafka_topic_new(k->rk, topic, NULL) : NULL;
    if (rkt == NULL) {
        free(name);
        return NULL;
    }
    k->topics[k->ntopics].name = name;
    k->topics[k->ntopics].rkt = rkt;
    k->ntopics++;
    return rkt;
}

/* Fail what the old producer still holds (its trackers hear an error), then drop it. */
static void
drop_producer(struct bh_kafka *k)
{
    for (size_t i = 0; i < k->ntopics; i++) {
        rd_kafka_topic_destroy(k->topics[i].rkt);
        free(k->topics[i].name);
    }
    k->ntopics = 0;
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(k->rk, 100);
    serve(k);
    rd_kafka_queue_io_event_enable(k->mainq, -1, NULL, 0);
    rd_kafka_queue_destroy(k->mainq);
    rd_kafka_destroy(k->rk);
    k->mainq = NULL;
    k->rk = NULL;
}

/*
 * After a fatal error an idempotent producer refuses everything (librdkafka
 * 2.0.x reaches this state after some broker disconnects). Whatever it held
 * fails (senders get 503 and resend), and a new producer takes its place.
 */
static void
on_restart(uv_timer_t *t)
{
    struct bh_kafka *k = t->data;
    char err[512];
    drop_producer(k);
    if (make_producer(k, err, sizeof(err)) < 0) {
        bh_error("kafka", "cannot make a new producer: %s; retrying in 1 s", err);
        uv_timer_start(&k->restart, on_restart, 1000, 0);
        return;
    }
    k->in_flight = 0;
    k->fatal = 0;
    k->restarts++;
    bh_warn("kafka", "new producer in place (%u since start)", k->restarts);
    serve(k);
}

int
bh_kafka_new(struct bh_kafka **out, uv_loop_t *loop, const struct bh_kafka_conf *c, char *errstr,
             size_t errstr_size)
{
    int rc = -EINVAL;
    rd_kafka_conf_t *conf = NULL;
    struct bh_kafka *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return -ENOMEM;
    k->loop = loop;
    bh_lograte_init(&k->lograte, LOG_WINDOW_MS);
    k->pipefd[0] = k->pipefd[1] = -1;
    k->partitions = c->partitions > 0 ? c->partitions : 1;
    k->replication = c->replication;
    k->create_timeout_ms = c->create_timeout_ms > 0 ? c->create_timeout_ms : 10000;

    if (strcmp(c->brokers, "embedded") == 0) {
        rc = start_mock(k, errstr, errstr_size);
        if (rc < 0)
            goto out;
    } else {
        k->bootstrap = strdup(c->brokers);
    }

    conf = rd_kafka_conf_new();
    rc = set_prop(conf, "bootstrap.servers", k->bootstrap, errstr, errstr_size);
    if (rc == 0)
        rc = set_prop(conf, "linger.ms", "5", errstr, errstr_size);
    if (rc == 0)
        rc = set_prop(conf, "log.queue", "true", errstr, errstr_size);
    if (rc == 0) /* for readiness: the brokers that are up (kafka.properties may change it) */
        rc = set_prop(conf, "statistics.interval.ms", "5000", errstr, errstr_size);
    for (size_t i = 0; rc == 0 && c->properties != NULL && i < c->properties->n; i++) {
        const char *name = c->properties->k[i], *value = c->properties->v[i];
        for (size_t p = 0; p < sizeof(pinned) / sizeof(pinned[0]); p++) {
            if (strcmp(name, pinned[p].name) == 0 && strcmp(value, pinned[p].value) != 0) {
                snprintf(errstr, errstr_size,
                         "kafka.properties.%s: blockhub requires %s=%s (got '%s')", name, name,
                         pinned[p].value, value);
                rc = -EINVAL;
            }
        }
        /* kafka.properties serve the join's consumers too; this producer would warn of theirs. */
        if (rc == 0 && bh_kafka_property_scope(name) != BH_KAFKA_SCOPE_CONSUMER)
            rc = set_prop(conf, name, value, errstr, errstr_size);
    }
    for (size_t p = 0; rc == 0 && p < sizeof(pinned) / sizeof(pinned[0]); p++)
        rc = set_prop(conf, pinned[p].name, pinned[p].value, errstr, errstr_size);
    if (rc < 0)
        goto out;
    {
        char v[32];
        size_t vlen = sizeof(v);
        k->max_message = 1000000;
        if (rd_kafka_conf_get(conf, "message.max.bytes", v, &vlen) == RD_KAFKA_CONF_OK)
            k->max_message = (size_t)strtoull(v, NULL, 10);
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    k->template = conf;
    conf = NULL;

    if (pipe2(k->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        rc = -errno;
        snprintf(errstr, errstr_size, "kafka: pipe: %s", strerror(errno));
        goto out;
    }
    rc = make_producer(k, errstr, errstr_size);
    if (rc < 0)
        goto out;
    rc = uv_poll_init(loop, &k->poll, k->pipefd[0]);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "kafka: uv_poll_init: %s", uv_strerror(rc));
        goto out;
    }
    uv_timer_init(loop, &k->restart);
    k->restart.data = k;
    uv_timer_init(loop, &k->lograte_timer);
    uv_unref((uv_handle_t *)&k->lograte_timer); /* a pending count keeps nothing running */
    k->lograte_timer.data = k;
    k->poll.data = k;
    uv_poll_start(&k->poll, UV_READABLE, on_readable);
    /* Anything queued before the fd was attached would never wake us. */
    serve(k);
    *out = k;
    return 0;
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (k->template != NULL)
        rd_kafka_conf_destroy(k->template);
    if (k->mainq != NULL)
        rd_kafka_queue_destroy(k->mainq);
    if (k->rk != NULL)
        rd_kafka_destroy(k->rk);
    if (k->mock != NULL)
        rd_kafka_mock_cluster_destroy(k->mock);
    if (k->mock_rk != NULL)
        rd_kafka_destroy(k->mock_rk);
    for (int i = 0; i < 2; i++)
        if (k->pipefd[i] >= 0)
            close(k->pipefd[i]);
    free(k->bootstrap);
    free(k);
    return rc;
}

const char *const bh_kafka_compacted[] = {"cleanup.policy", "compact", NULL};

int
bh_kafka_create_topics(rd_kafka_t *rk, const struct bh_kafka_new_topic *topics, size_t n,
                       const struct bh_kafka_create_opts *o, char *errstr, size_t errstr_size)
{
    int rc = 0;
    char err[256];
    if (n == 0)
        return 0;
    rd_kafka_NewTopic_t **nt = calloc(n, sizeof(*nt));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    if (nt == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rd_kafka_AdminOptions_set_request_timeout(opt, o->timeout_ms, err, sizeof(err));
    if (o->validate_only)
        rd_kafka_AdminOptions_set_validate_only(opt, 1, err, sizeof(err));
    if (errstr_size > 0)
        errstr[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        nt[i] =
            rd_kafka_NewTopic_new(topics[i].name, o->partitions, o->replication, err, sizeof(err));
        for (size_t c = 0; nt[i] != NULL && topics[i].config != NULL && topics[i].config[c] != NULL;
             c += 2) {
            rd_kafka_resp_err_t e =
                rd_kafka_NewTopic_set_config(nt[i], topics[i].config[c], topics[i].config[c + 1]);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                snprintf(err, sizeof(err), "%s=%s: %s", topics[i].config[c],
                         topics[i].config[c + 1], rd_kafka_err2str(e));
                rd_kafka_NewTopic_destroy(nt[i]);
                nt[i] = NULL;
            }
        }
        if (nt[i] == NULL) {
            snprintf(errstr, errstr_size, "%s: topic %s: %s", o->who, topics[i].name, err);
            rc = -EINVAL;
            goto out;
        }
    }
    rd_kafka_CreateTopics(rk, nt, n, opt, q);
    if (o->client == NULL) {
        ev = rd_kafka_queue_poll(q, o->timeout_ms + 2000);
    } else {
        /* A refused authentication ends the wait: the cluster will not answer. */
        uint64_t deadline = uv_hrtime() / 1000000 + (uint64_t)o->timeout_ms + 2000;
        while ((ev = rd_kafka_queue_poll(q, 100)) == NULL) {
            if (auth_failure(o->client) != NULL) {
                rc = auth_refused(o->client, o->who, errstr, errstr_size);
                goto out;
            }
            if (uv_hrtime() / 1000000 >= deadline)
                break;
        }
    }
    if (ev == NULL || rd_kafka_event_error(ev)) {
        /* The cluster did not answer: not a reason to refuse, it may come later. */
        char bootstrap[512];
        snprintf(errstr, errstr_size, "%s: creating topics at %s: %s", o->who,
                 bootstrap_of(rk, bootstrap, sizeof(bootstrap)),
                 ev ? rd_kafka_event_error_string(ev) : "timed out");
        rc = -ETIMEDOUT;
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (!o->validate_only)
                bh_info(o->who, "created topic %s (%d partitions)",
                        rd_kafka_topic_result_name(res[i]), o->partitions);
        } else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && o->validate_only) {
            size_t len = strlen(errstr);
            if (len + 2 < errstr_size)
                snprintf(errstr + len, errstr_size - len, "%stopic %s cannot be created: %s",
                         len ? "\n" : "", rd_kafka_topic_result_name(res[i]),
                         rd_kafka_topic_result_error_string(res[i]));
            rc = -EINVAL;
        } else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            snprintf(errstr, errstr_size, "%s: creating topic %s: %s", o->who,
                     rd_kafka_topic_result_name(res[i]),
                     rd_kafka_topic_result_error_string(res[i]));
            rc = -EINVAL;
            goto out;
        }
    }
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    for (size_t i = 0; nt != NULL && i < n; i++)
        if (nt[i] != NULL)
            rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    return rc;
}

int
bh_kafka_ensure_topics(struct bh_kafka *k, const char *const *topics, size_t n, char *errstr,
                       size_t errstr_size)
{
    if (k->mock == NULL) {
        const struct bh_kafka_create_opts o = {.partitions = k->partitions,
                                               .replication = k->replication,
                                               .timeout_ms = k->create_timeout_ms,
                                               .who = "kafka",
                                               .client = k};
        struct bh_kafka_new_topic *nt = calloc(n > 0 ? n : 1, sizeof(*nt));
        if (nt == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            nt[i].name = topics[i];
        int rc = bh_kafka_create_topics(k->rk, nt, n, &o, errstr, errstr_size);
        free(nt);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(k->mock, topics[i], k->partitions, 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "embedded kafka: creating topic %s: %s", topics[i],
                     rd_kafka_err2str(e));
            return -EINVAL;
        }
    }
    return 0;
}

void
bh_kafka_divert(struct bh_kafka *k, rd_kafka_t *rk, void (*take)(void *arg, struct bh_delivery *d),
                void *arg)
{
    k->divert = rk;
    k->divert_take = take;
    k->divert_arg = arg;
}

/* bh_kafka_produce while diverted: into the other producer's transaction, the tracker to TAKE. */
static int
produce_diverted(struct bh_kafka *k, const char *topic, const void *key, size_t keylen,
                 const void *value, size_t len, rd_kafka_headers_t *hdrs, struct bh_delivery *d)
{
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->divert, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        if (d != NULL)
            k->divert_take(k->divert_arg, d);
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return -ENOBUFS;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return -EMSGSIZE;
    default: /* the transaction is in an error state: the caller aborts it */
        return -EIO;
    }
}

int
bh_kafka_produce(struct bh_kafka *k, const char *topic, const void *key, size_t keylen,
                 const void *value, size_t len, rd_kafka_headers_t *hdrs, struct bh_delivery *d)
{
    if (k->divert != NULL)
        return produce_diverted(k, topic, key, keylen, value, len, hdrs, d);
    if (k->fatal)
        return -ESHUTDOWN;
    rd_kafka_resp_err_t e;
    rd_kafka_topic_t *rkt = topic_handle(k, topic);
    if (rkt == NULL)
        e = rd_kafka_producev(k->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                              RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    else
        e = rd_kafka_producev(k->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                              RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        k->in_flight++;
        k->produced++;
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return -ENOBUFS;
    case RD_KAFKA_RESP_ERR__FATAL:
        return -ESHUTDOWN;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return -EMSGSIZE;
    default:
        bh_warn("kafka", "produce to %s: %s", topic, rd_kafka_err2str(e));
        return -EINVAL;
    }
}

uint64_t
bh_kafka_served_at(const struct bh_kafka *k)
{
    return k->served_at;
}

size_t
bh_kafka_max_message(const struct bh_kafka *k)
{
    return k->max_message;
}

rd_kafka_t *
bh_kafka_handle(struct bh_kafka *k)
{
    return k->rk;
}

unsigned
bh_kafka_restarts(const struct bh_kafka *k)
{
    return k->restarts;
}

uint64_t
bh_kafka_produced(const struct bh_kafka *k)
{
    return k->produced;
}

size_t
bh_kafka_in_flight(const struct bh_kafka *k)
{
    return k->in_flight;
}

const char *
bh_kafka_bootstrap(const struct bh_kafka *k)
{
    return k->bootstrap;
}

int
bh_kafka_is_embedded(const struct bh_kafka *k)
{
    return k->mock != NULL;
}

/* Every handle closes with this; the last one frees (libuv runs close callbacks in any order). */
static void
on_handle_closed(uv_handle_t *h)
{
    struct bh_kafka *k = h->data;
    if (--k->closing > 0)
        return;
    close(k->pipefd[0]);
    close(k->pipefd[1]);
    free(k->bootstrap);
    free(k);
}

size_t
bh_kafka_close(struct bh_kafka *k, int timeout_ms)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(k->rk, timeout_ms);
    serve(k);
    size_t left = k->in_flight;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        bh_error("kafka", "flush: %zu message(s) not delivered within %d ms", left, timeout_ms);
    /* Whatever is left fails now, so every tracker hears its result once. */
    drop_producer(k);
    rd_kafka_conf_destroy(k->template);
    /* The counts of repeated reports not yet told. */
    bh_lograte_flush_all(&k->lograte, log_repeated, NULL);
    uv_timer_stop(&k->restart);
    uv_timer_stop(&k->lograte_timer);
    k->closing = 3;
    uv_close((uv_handle_t *)&k->restart, on_handle_closed);
    uv_close((uv_handle_t *)&k->lograte_timer, on_handle_closed);
    if (k->mock != NULL)
        rd_kafka_mock_cluster_destroy(k->mock);
    if (k->mock_rk != NULL)
        rd_kafka_destroy(k->mock_rk);
    uv_poll_stop(&k->poll);
    uv_close((uv_handle_t *)&k->poll, on_handle_closed);
    return left;
}

int
bh_kafka_conf_set(rd_kafka_conf_t *c, const char *name, const char *value, char *errstr, size_t n)
{
    char err[256];
    if (rd_kafka_conf_set(c, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, n, "kafka property %s: %s", name, err);
        return -EINVAL;
    }
    return 0;
}

rd_kafka_conf_t *
bh_kafka_consumer_conf(struct bh_kafka *k, const struct bh_kvlist *props, const char *const *pinned,
                       int no_group, char *errstr, size_t n)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc = bh_kafka_conf_set(c, "bootstrap.servers", bh_kafka_bootstrap(k), errstr, n);
    for (size_t i = 0; rc == 0 && i < props->n; i++)
        if (bh_kafka_property_scope(props->k[i]) != BH_KAFKA_SCOPE_PRODUCER &&
            !(no_group && strcmp(props->k[i], "group.id") == 0))
            rc = bh_kafka_conf_set(c, props->k[i], props->v[i], errstr, n);
    for (size_t i = 0; rc == 0 && pinned[i] != NULL; i += 2)
        rc = bh_kafka_conf_set(c, pinned[i], pinned[i + 1], errstr, n);
    if (rc < 0) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}
