/*
 * The schema registry client (hub/registry.h): libcurl's multi interface on
 * the hub's loop.
 */
#include "registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_loop.h"
#include "log.h"
#include "utf8.h"

#define KEY(type, field) offsetof(struct type, field)
#define MAX_BODY         (8u << 20) /* the most of an answer kept: a schema is far smaller */
#define RETRY_FIRST_MS   200
#define RETRY_MAX_MS     5000
#define FETCH_RETRY_MS   1000

static int
check_url(const void *value, char *why, size_t n)
{
    const char *s = *(char *const *)value;
    if (s == NULL)
        return 0;
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
        snprintf(why, n, "'%s' is not an http:// or https:// URL", s);
        return -EINVAL;
    }
    return 0;
}

static int
check_strategy(const void *value, char *why, size_t n)
{
    enum bh_subject_strategy s;
    const char *v = *(char *const *)value;
    if (v != NULL && bh_subject_strategy_parse(v, &s) < 0) {
        snprintf(why, n, "'%s' is not topic, record or topic_record", v);
        return -EINVAL;
    }
    return 0;
}

static int
check_framing(const void *value, char *why, size_t n)
{
    const char *v = *(char *const *)value;
    if (v != NULL && strcmp(v, "confluent") != 0 && strcmp(v, "single_object") != 0) {
        snprintf(why, n, "'%s' is not confluent or single_object", v);
        return -EINVAL;
    }
    return 0;
}

const struct bh_conf_key bh_registry_conf_keys[] = {
    {.name = "url",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, url),
     .check = check_url,
     .doc = "Base URL of a Confluent-compatible schema registry (e.g. "
            "http://registry:8081, or .../apis/ccompat/v7). Unset: no registry, records "
            "are Avro single-object encoded."},
    {.name = "subject_strategy",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, subject_strategy),
     .def = "topic",
     .check = check_strategy,
     .doc = "Subject of a topic's schema: topic (<topic>-value, TopicNameStrategy), record "
            "(the record's full name, RecordNameStrategy) or topic_record "
            "(<topic>-<record>, TopicRecordNameStrategy)."},
    {.name = "framing",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, framing),
     .def = "confluent",
     .check = check_framing,
     .doc = "With a url: confluent (0x00, 4-byte schema id, body: what registry-aware "
            "clients read) or single_object (registered all the same, framed as without a "
            "registry)."},
    {.name = "username",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, username),
     .doc = "Basic authentication user."},
    {.name = "password",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, password),
     .doc = "Basic authentication password."},
    {.name = "bearer_token",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, bearer_token),
     .doc = "Sent as Authorization: Bearer TOKEN."},
    {.name = "ca_file",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, ca_file),
     .doc = "PEM file of the certificate authorities to trust for https (default: the "
            "system's)."},
    {.name = "cert_file",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, cert_file),
     .doc = "PEM client certificate, for a registry that asks for one."},
    {.name = "key_file",
     .type = BH_CONF_STRING,
     .offset = KEY(bh_registry_conf, key_file),
     .doc = "PEM private key of cert_file."},
    {.name = "insecure",
     .type = BH_CONF_BOOL,
     .offset = KEY(bh_registry_conf, insecure),
     .def = "false",
     .doc = "Do not verify the registry's certificate or host name (tests only)."},
    {.name = "wait",
     .type = BH_CONF_DURATION,
     .offset = KEY(bh_registry_conf, wait),
     .def = "60s",
     .min = 0,
     .max = 3600000,
     .doc = "How long start-up asks again (with backoff) a registry that does not answer, "
            "before it exits with an error."},
    {.name = "timeout",
     .type = BH_CONF_DURATION,
     .offset = KEY(bh_registry_conf, timeout),
     .def = "15s",
     .min = 100,
     .max = 600000,
     .doc = "How long one request to the registry may take."},
    {.name = "probe_interval",
     .type = BH_CONF_DURATION,
     .offset = KEY(bh_registry_conf, probe_interval),
     .def = "10s",
     .min = 100,
     .max = 3600000,
     .doc = "How often a running hub checks that the registry answers (logs and "
            "/metrics); publishing never waits for it."},
    {0},
};

int
bh_subject_strategy_parse(const char *s, enum bh_subject_strategy *out)
{
    if (strcmp(s, "topic") == 0 || strcmp(s, "TopicNameStrategy") == 0)
        *out = BH_SUBJECT_TOPIC;
    else if (strcmp(s, "record") == 0 || strcmp(s, "RecordNameStrategy") == 0)
        *out = BH_SUBJECT_RECORD;
    else if (strcmp(s, "topic_record") == 0 || strcmp(s, "TopicRecordNameStrategy") == 0)
        *out = BH_SUBJECT_TOPIC_RECORD;
    else
        return -EINVAL;
    return 0;
}

void
bh_registry_subject(enum bh_subject_strategy s, const char *topic, const char *schema_name,
                    char *out, size_t n)
{
    switch (s) {
    case BH_SUBJECT_RECORD:
        snprintf(out, n, "%s", schema_name);
        break;
    case BH_SUBJECT_TOPIC_RECORD:
        snprintf(out, n, "%s-%s", topic, schema_name);
        break;
    default:
        snprintf(out, n, "%s-value", topic);
        break;
    }
}

/* --- transport ------------------------------------------------------------- */

struct req;
typedef void (*req_done)(struct req *q, long status);

struct req {
    struct bh_registry *r;
    CURL *easy;
    struct curl_slist *hdrs;
    char *post;
    char *body;
    size_t len, cap;
    CURLcode cc;
    char errbuf[CURL_ERROR_SIZE];
    req_done done;
    void *arg;
    struct req *next;
};

enum cache_state { C_OK, C_FETCHING, C_MISSING, C_FAILED };

struct cache_entry {
    int32_t id;
    enum cache_state st;
    char *text;
    uint64_t retry_at; /* C_FAILED: loop time (ms) of the next try */
};

struct bh_registry {
    uv_loop_t *loop;
    CURLM *multi;
    struct bh_curl_loop curl; /* drives multi on the loop */
    uv_timer_t retry;         /* resolve's backoff */
    uv_timer_t probe;
    int open_handles; /* freed when the last closes (curl's glue counts as one) */
    bool freeing;
    char *url;
    const struct bh_registry_conf *conf;
    struct req *inflight;
    struct cache_entry *cache;
    size_t ncache, capcache;
    bool reachable;
    bool probe_busy;
    uint64_t requests, failures;
    char last_error[300];
};

static void check_done(struct bh_registry *r);

static void
maybe_free(struct bh_registry *r)
{
    if (!r->freeing || r->open_handles > 0)
        return;
    for (size_t i = 0; i < r->ncache; i++)
        free(r->cache[i].text);
    free(r->cache);
    free(r->url);
    free(r);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct bh_registry *r = h->data;
    r->open_handles--;
    maybe_free(r);
}

/* The glue's timer and sockets' polls are all closed. */
static void
on_curl_closed(void *arg)
{
    struct bh_registry *r = arg;
    r->open_handles--;
    maybe_free(r);
}

static void
on_curl_progress(void *arg)
{
    check_done(arg);
}

static size_t
on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct req *q = userp;
    size_t n = size * nmemb;
    if (q->len + n + 1 > MAX_BODY)
        return 0; /* too large: the transfer fails */
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < q->len + n + 1)
            cap *= 2;
        char *b = realloc(q->body, cap);
        if (b == NULL)
            return 0;
        q->body = b;
        q->cap = cap;
    }
    memcpy(q->body + q->len, data, n);
    q->len += n;
    q->body[q->len] = '\0';
    return n;
}

static void
req_free(struct req *q)
{
    if (q->easy != NULL)
        curl_easy_cleanup(q->easy);
    curl_slist_free_all(q->hdrs);
    free(q->post);
    free(q->body);
    free(q);
}

static void
unlink_req(struct bh_registry *r, struct req *q)
{
    for (struct req **p = &r->inflight; *p != NULL; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            return;
        }
    }
}

/* An answer that says the registry is there (anything but no answer or a 5xx). */
static bool
answered(const struct req *q, long status)
{
    return q->cc == CURLE_OK && status > 0 && status < 500;
}

static void
note_result(struct bh_registry *r, struct req *q, long status)
{
    if (answered(q, status))
        return;
    r->failures++;
    if (q->cc != CURLE_OK)
        snprintf(r->last_error, sizeof(r->last_error), "%s",
                 q->errbuf[0] ? q->errbuf : curl_easy_strerror(q->cc));
    else
        snprintf(r->last_error, sizeof(r->last_error), "HTTP %ld", status);
}

static void
check_done(struct bh_registry *r)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct req *q = NULL;
        long status = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        q->cc = m->data.result;
        curl_multi_remove_handle(r->multi, m->easy_handle);
        unlink_req(r, q);
        note_result(r, q, status);
        q->done(q, q->cc == CURLE_OK ? status : 0);
        req_free(q);
    }
}

/* METHOD PATH (under the base URL), with JSON as the body when not NULL. */
static int
request(struct bh_registry *r, const char *method, const char *path, const char *json,
        req_done done, void *arg)
{
    const struct bh_registry_conf *c = r->conf;
    struct req *q = calloc(1, sizeof(*q));
    char url[2048], auth[1200];
    if (q == NULL)
        return -ENOMEM;
    q->r = r;
    q->done = done;
    q->arg = arg;
    q->easy = curl_easy_init();
    snprintf(url, sizeof(url), "%s%s", r->url, path);
    q->hdrs = curl_slist_append(NULL, "Accept: application/vnd.schemaregistry.v1+json, "
                                      "application/vnd.schemaregistry+json, application/json");
    if (json != NULL)
        q->hdrs =
            curl_slist_append(q->hdrs, "Content-Type: application/vnd.schemaregistry.v1+json");
    if (c->bearer_token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->bearer_token);
        q->hdrs = curl_slist_append(q->hdrs, auth);
    }
    if (q->easy == NULL || q->hdrs == NULL || (json != NULL && (q->post = strdup(json)) == NULL)) {
        req_free(q);
        return -ENOMEM;
    }
    CURL *e = q->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->timeout < 5000 ? c->timeout : 5000));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    if (q->post != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->post);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(q->post));
    }
    if (c->username != NULL) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, c->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, c->password != NULL ? c->password : "");
    }
    if (c->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->cert_file != NULL)
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file != NULL)
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (curl_multi_add_handle(r->multi, e) != CURLM_OK) {
        req_free(q);
        return -ENOMEM;
    }
    q->next = r->inflight;
    r->inflight = q;
    r->requests++;
    return 0;
}

int
bh_registry_new(struct bh_registry **out, uv_loop_t *loop, const struct bh_registry_conf *c,
                char *errstr, size_t errstr_size)
{
    static int global;
    if (!global) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(errstr, errstr_size, "libcurl cannot start");
            return -ENOMEM;
        }
        global = 1;
    }
    struct bh_registry *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->url = strdup(c->url)) == NULL || (r->multi = curl_multi_init()) == NULL) {
        if (r != NULL)
            free(r->url);
        free(r);
        snprintf(errstr, errstr_size, "out of memory");
        return -ENOMEM;
    }
    size_t n = strlen(r->url);
    while (n > 0 && r->url[n - 1] == '/')
        r->url[--n] = '\0';
    r->loop = loop;
    r->conf = c;
    r->reachable = true;
    bh_curl_loop_init(&r->curl, loop, r->multi, on_curl_progress, r);
    uv_timer_init(loop, &r->retry);
    uv_timer_init(loop, &r->probe);
    r->retry.data = r->probe.data = r;
    r->open_handles = 3; /* curl's glue, retry and probe */
    *out = r;
    return 0;
}

void
bh_registry_free(struct bh_registry *r)
{
    if (r == NULL)
        return;
    while (r->inflight != NULL) {
        struct req *q = r->inflight;
        r->inflight = q->next;
        curl_multi_remove_handle(r->multi, q->easy);
        req_free(q);
    }
    curl_multi_cleanup(r->multi);
    r->multi = NULL;
    r->freeing = true;
    r->retry.data = r; /* a resolve's while it ran */
    bh_curl_loop_close(&r->curl, on_curl_closed);
    uv_close((uv_handle_t *)&r->retry, on_handle_closed);
    uv_close((uv_handle_t *)&r->probe, on_handle_closed);
}

const char *
bh_registry_url(const struct bh_registry *r)
{
    return r->url;
}

/* --- answers ---------------------------------------------------------------- */

/* The registry's own words from an error answer ({"error_code":..,"message":..}). */
static void
answer_message(const struct req *q, long status, char *out, size_t n)
{
    if (q->cc != CURLE_OK) {
        snprintf(out, n, "%s", q->errbuf[0] ? q->errbuf : curl_easy_strerror(q->cc));
        return;
    }
    json_t *j = q->body != NULL ? json_loads(q->body, 0, NULL) : NULL;
    const char *msg = j != NULL ? json_string_value(json_object_get(j, "message")) : NULL;
    char raw[300];
    bh_utf8_sanitize(raw, sizeof(raw),
                     msg       ? msg
                     : q->body ? q->body
                               : "",
                     msg       ? strlen(msg)
                     : q->body ? q->len
                               : 0);
    snprintf(out, n, "HTTP %ld: %s", status, raw);
    json_decref(j);
}

static int
error_code(const struct req *q)
{
    json_t *j = q->body != NULL ? json_loads(q->body, 0, NULL) : NULL;
    int code = j != NULL ? (int)json_integer_value(json_object_get(j, "error_code")) : 0;
    json_decref(j);
    return code;
}

/* --- resolving at start ------------------------------------------------------ */

static void
ignore_answer(struct req *q, long status)
{
    (void)q;
    (void)status;
}

/*
 * S_REASON: the check said no without saying why (some registries give no
 * messages, even verbose): registering the schema makes the registry refuse
 * it under the same rule with its reason (409), and nothing is registered.
 */
enum step { S_LOOKUP, S_COMPAT, S_MODE, S_REASON, S_REGISTER, S_RELOOKUP, S_DONE };

struct resolve;

/* One item on its way: its steps run one after the other; the items run side by side. */
struct task {
    struct resolve *s;
    struct bh_registry_item *it;
    enum step step;
    bool busy; /* a request is out */
    char compat_messages[1500];
    char mode[64];
};

struct resolve {
    struct bh_registry *r;
    struct task *tasks;
    size_t n, left;
    bool reg;
    bool finished;
    int rc;
    char *err;
    size_t errn;
    uint64_t deadline;
    uint64_t backoff;
    char last_problem[300];
};

static void task_next(struct task *t);

static void resolve_fail(struct resolve *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
resolve_fail(struct resolve *s, int rc, const char *fmt, ...)
{
    va_list ap;
    if (s->finished)
        return;
    va_start(ap, fmt);
    vsnprintf(s->err, s->errn, fmt, ap);
    va_end(ap);
    s->rc = rc;
    s->finished = true;
}

static void
on_retry(uv_timer_t *timer)
{
    struct resolve *s = timer->data;
    for (size_t i = 0; i < s->n && !s->finished; i++)
        if (s->tasks[i].step != S_DONE && !s->tasks[i].busy)
            task_next(&s->tasks[i]);
}

/* No answer (or a 5xx): ask again after the backoff, unless the wait is over. */
static void
resolve_later(struct resolve *s, const struct req *q, long status)
{
    answer_message(q, status, s->last_problem, sizeof(s->last_problem));
    if (uv_is_active((uv_handle_t *)&s->r->retry))
        return; /* one retry asks again for every item waiting */
    uint64_t now = uv_now(s->r->loop);
    if (now + s->backoff > s->deadline) {
        resolve_fail(s, -ETIMEDOUT,
                     "schema_registry.url: %s did not answer within schema_registry.wait "
                     "(%.1f s): %s",
                     s->r->url, (double)s->r->conf->wait / 1000.0, s->last_problem);
        return;
    }
    bh_warn("registry", "%s: %s; asking again in %.1f s", s->r->url, s->last_problem,
            (double)s->backoff / 1000.0);
    s->r->retry.data = s;
    uv_timer_start(&s->r->retry, on_retry, s->backoff, 0);
    s->backoff = s->backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->backoff * 2;
}

static char *
schema_body(const struct bh_schema *sc)
{
    json_t *o = json_pack("{s:s, s:s}", "schema", sc->text, "schemaType", "AVRO");
    char *out = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return out;
}

static void
task_done(struct task *t)
{
    t->step = S_DONE;
    if (--t->s->left == 0)
        t->s->finished = true;
}

static void
on_resolve_answer(struct req *q, long status)
{
    struct task *t = q->arg;
    struct resolve *s = t->s;
    struct bh_registry_item *it = t->it;
    t->busy = false;
    if (s->finished)
        return;
    if (!answered(q, status) || status == 408 || status == 429) {
        resolve_later(s, q, status);
        return;
    }
    s->backoff = RETRY_FIRST_MS;
    json_t *j = q->body != NULL ? json_loads(q->body, 0, NULL) : NULL;
    char msg[400];
    answer_message(q, status, msg, sizeof(msg));
    switch (t->step) {
    case S_LOOKUP:
    case S_RELOOKUP:
        if (status == 200 && json_is_integer(json_object_get(j, "id"))) {
            it->id = (int32_t)json_integer_value(json_object_get(j, "id"));
            it->version = json_is_integer(json_object_get(j, "version"))
                              ? (int32_t)json_integer_value(json_object_get(j, "version"))
                              : -1;
            task_done(t);
        } else if (status == 404 && t->step == S_LOOKUP) {
            /* 40401 no such subject: register; 40403 a new schema for it: check first */
            if (!s->reg)
                task_done(t);
            else
                t->step = error_code(q) == 40401 ? S_REGISTER : S_COMPAT;
        } else {
            resolve_fail(s, -EIO, "schema %s: looking it up under subject %s: %s", it->schema->name,
                         it->subject, msg);
        }
        break;
    case S_COMPAT:
        if (status == 200) {
            if (json_is_true(json_object_get(j, "is_compatible"))) {
                t->step = S_REGISTER;
                break;
            }
            /* what the registry says is wrong, then the subject's mode for the error */
            json_t *ms = json_object_get(j, "messages"), *m;
            size_t k;
            t->compat_messages[0] = '\0';
            json_array_foreach(ms, k, m)
            {
                const char *txt = json_string_value(m);
                char one[400];
                if (txt == NULL)
                    continue;
                bh_utf8_sanitize(one, sizeof(one), txt, strlen(txt));
                size_t len = strlen(t->compat_messages);
                snprintf(t->compat_messages + len, sizeof(t->compat_messages) - len, "%s%s",
                         len ? "; " : "", one);
            }
            t->step = S_MODE;
        } else if (status == 404) {
            t->step = S_REGISTER; /* the subject has no version yet */
        } else {
            resolve_fail(s, -EINVAL,
                         "schema %s (%s): the registry refused to check it under %s: %s",
                         it->schema->name, it->schema->path, it->subject, msg);
        }
        break;
    case S_MODE: {
        const char *mode = json_string_value(json_object_get(j, "compatibilityLevel"));
        if (mode == NULL)
            mode = json_string_value(json_object_get(j, "compatibility"));
        snprintf(t->mode, sizeof(t->mode), "%s",
                 status == 200 && mode != NULL ? mode : "(unknown)");
        if (t->compat_messages[0] == '\0') {
            t->step = S_REASON;
            break;
        }
        resolve_fail(s, -EINVAL,
                     "schema %s (%s) is not compatible with subject %s under its mode %s: %s; "
                     "nothing is published with it",
                     it->schema->name, it->schema->path, it->subject, t->mode, t->compat_messages);
        break;
    }
    case S_REASON:
        if (status == 200)
            bh_warn("registry",
                    "subject %s: the registry said %s is not compatible, then registered it",
                    it->subject, it->schema->name);
        resolve_fail(s, -EINVAL,
                     "schema %s (%s) is not compatible with subject %s under its mode %s: %s; "
                     "nothing is published with it",
                     it->schema->name, it->schema->path, it->subject, t->mode,
                     status == 200 ? "the registry gave no reason" : msg);
        break;
    case S_REGISTER:
        if (status == 200 && json_is_integer(json_object_get(j, "id"))) {
            bh_info("registry", "schema %s registered under %s: id %" PRId64, it->schema->name,
                    it->subject, (int64_t)json_integer_value(json_object_get(j, "id")));
            t->step = S_RELOOKUP; /* for its version */
        } else {
            resolve_fail(s, -EINVAL, "schema %s (%s): the registry refused it under subject %s: %s",
                         it->schema->name, it->schema->path, it->subject, msg);
        }
        break;
    case S_DONE:
        break;
    }
    json_decref(j);
    if (!s->finished && t->step != S_DONE)
        task_next(t);
}

static void
task_next(struct task *t)
{
    struct resolve *s = t->s;
    struct bh_registry_item *it = t->it;
    char *subj = curl_escape(it->subject, 0), path[1200];
    char *body = NULL;
    const char *method = "POST";
    int rc = subj != NULL ? 0 : -ENOMEM;
    switch (t->step) {
    case S_LOOKUP:
    case S_RELOOKUP:
        snprintf(path, sizeof(path), "/subjects/%s", subj ? subj : "");
        break;
    case S_COMPAT:
        snprintf(path, sizeof(path), "/compatibility/subjects/%s/versions/latest?verbose=true",
                 subj ? subj : "");
        break;
    case S_MODE:
        snprintf(path, sizeof(path), "/config/%s?defaultToGlobal=true", subj ? subj : "");
        method = "GET";
        break;
    case S_REGISTER:
    case S_REASON:
        snprintf(path, sizeof(path), "/subjects/%s/versions", subj ? subj : "");
        break;
    case S_DONE:
        curl_free(subj);
        return;
    }
    if (rc == 0 && t->step != S_MODE && (body = schema_body(it->schema)) == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = request(s->r, method, path, body, on_resolve_answer, t);
    if (rc < 0)
        resolve_fail(s, rc, "schema registry: out of memory");
    else
        t->busy = true;
    curl_free(subj);
    free(body);
}

int
bh_registry_resolve(struct bh_registry *r, struct bh_registry_item *items, size_t n,
                    bool do_register, char *errstr, size_t errstr_size)
{
    struct resolve s = {.r = r,
                        .n = n,
                        .left = n,
                        .reg = do_register,
                        .err = errstr,
                        .errn = errstr_size,
                        .backoff = RETRY_FIRST_MS,
                        .finished = n == 0};
    s.tasks = calloc(n ? n : 1, sizeof(*s.tasks));
    if (s.tasks == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return -ENOMEM;
    }
    uv_update_time(r->loop);
    s.deadline = uv_now(r->loop) + (uint64_t)r->conf->wait;
    for (size_t i = 0; i < n; i++) {
        items[i].id = -1;
        items[i].version = -1;
        s.tasks[i] = (struct task){.s = &s, .it = &items[i], .step = S_LOOKUP};
    }
    for (size_t i = 0; i < n && !s.finished; i++)
        task_next(&s.tasks[i]);
    while (!s.finished)
        uv_run(r->loop, UV_RUN_ONCE);
    uv_timer_stop(&r->retry);
    /* A failure leaves the others' requests out: they must not call back into S. */
    for (struct req *q = r->inflight; q != NULL; q = q->next)
        if (q->done == on_resolve_answer)
            q->done = ignore_answer;
    free(s.tasks);
    if (s.rc < 0)
        return s.rc;
    for (size_t i = 0; i < n; i++) {
        if (items[i].id >= 0)
            bh_registry_cache_put(r, items[i].id, items[i].schema->text);
    }
    r->reachable = true;
    return 0;
}

/* --- writer schemas by id ------------------------------------------------------ */

static struct cache_entry *
cache_find(struct bh_registry *r, int32_t id)
{
    for (size_t i = 0; i < r->ncache; i++)
        if (r->cache[i].id == id)
            return &r->cache[i];
    return NULL;
}

static struct cache_entry *
cache_add(struct bh_registry *r, int32_t id)
{
    if (r->ncache == r->capcache) {
        size_t cap = r->capcache ? r->capcache * 2 : 16;
        struct cache_entry *c = realloc(r->cache, cap * sizeof(*c));
        if (c == NULL)
            return NULL;
        r->cache = c;
        r->capcache = cap;
    }
    struct cache_entry *e = &r->cache[r->ncache++];
    memset(e, 0, sizeof(*e));
    e->id = id;
    return e;
}

int
bh_registry_cache_put(struct bh_registry *r, int32_t id, const char *text)
{
    struct cache_entry *e = cache_find(r, id);
    if (e == NULL && (e = cache_add(r, id)) == NULL)
        return -ENOMEM;
    char *t = strdup(text);
    if (t == NULL)
        return -ENOMEM;
    free(e->text);
    e->text = t;
    e->st = C_OK;
    return 0;
}

static void
on_fetched(struct req *q, long status)
{
    struct bh_registry *r = q->r;
    int32_t id = (int32_t)(intptr_t)q->arg;
    struct cache_entry *e = cache_find(r, id);
    if (e == NULL || e->st != C_FETCHING)
        return;
    json_t *j = status == 200 && q->body != NULL ? json_loads(q->body, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(j, "schema"));
    if (text != NULL && (e->text = strdup(text)) != NULL) {
        e->st = C_OK;
        bh_info("registry", "writer schema id %" PRId32 " fetched", id);
    } else if (status == 404) {
        e->st = C_MISSING;
        bh_warn("registry", "the registry has no schema of id %" PRId32, id);
    } else {
        char msg[300];
        answer_message(q, status, msg, sizeof(msg));
        e->st = C_FAILED;
        e->retry_at = uv_now(r->loop) + FETCH_RETRY_MS;
        bh_warn("registry", "cannot fetch the schema of id %" PRId32 ": %s", id, msg);
    }
    json_decref(j);
}

int
bh_registry_schema_text(struct bh_registry *r, int32_t id, const char **text)
{
    struct cache_entry *e = cache_find(r, id);
    if (e != NULL && e->st == C_OK) {
        *text = e->text;
        return 0;
    }
    if (e != NULL && e->st == C_MISSING)
        return -ENOENT;
    if (e != NULL && (e->st == C_FETCHING || uv_now(r->loop) < e->retry_at))
        return -EAGAIN;
    if (e == NULL && (e = cache_add(r, id)) == NULL)
        return -ENOMEM;
    char path[64];
    snprintf(path, sizeof(path), "/schemas/ids/%" PRId32, id);
    e->st = C_FETCHING;
    if (request(r, "GET", path, NULL, on_fetched, (void *)(intptr_t)id) < 0) {
        e->st = C_FAILED;
        e->retry_at = uv_now(r->loop) + FETCH_RETRY_MS;
    }
    return -EAGAIN;
}

/* --- the probe -------------------------------------------------------------------- */

static void
on_probed(struct req *q, long status)
{
    struct bh_registry *r = q->r;
    bool up = answered(q, status);
    r->probe_busy = false;
    if (up != r->reachable) {
        if (up)
            bh_info("registry", "%s answers again", r->url);
        else
            bh_warn("registry",
                    "%s does not answer (%s): publishing goes on with the %zu cached schema "
                    "ids; schemas new to the hub cannot be resolved until it is back",
                    r->url, r->last_error, r->ncache);
    }
    r->reachable = up;
}

static void
on_probe(uv_timer_t *t)
{
    struct bh_registry *r = t->data;
    if (r->probe_busy)
        return;
    r->probe_busy = request(r, "GET", "/config", NULL, on_probed, NULL) == 0;
}

void
bh_registry_probe_start(struct bh_registry *r)
{
    uint64_t every = (uint64_t)r->conf->probe_interval;
    uv_timer_start(&r->probe, on_probe, every, every);
    uv_unref((uv_handle_t *)&r->probe);
}

void
bh_registry_stats(const struct bh_registry *r, struct bh_registry_stats *out)
{
    out->reachable = r->reachable;
    out->requests = r->requests;
    out->failures = r->failures;
    out->cached = 0;
    for (size_t i = 0; i < r->ncache; i++)
        out->cached += r->cache[i].st == C_OK;
    snprintf(out->last_error, sizeof(out->last_error), "%s", r->last_error);
}
