/*
 * The join's routes on the hub's admin API (hub/admin.h, admin.listen):
 *
 *   GET /blocks/{id}  the block's current view as JSON (the fields of
 *                     block.view), 200 for a block of a partition this
 *                     process owns (all zeros when it has no event yet);
 *                     404 for an id that is not in the block map and has no
 *                     state here; 503 with Retry-After while the partition is
 *                     being restored. For a block of another process: 307 to
 *                     that process's admin URL (its consumer client.id, found
 *                     with DescribeConsumerGroups), 421 when that process has
 *                     no admin URL, 503 "owner unknown" when no member of the
 *                     group has the partition (a rebalance).
 *   GET /join         this process's partitions, counters and state memory.
 *   /watches          the watches: GET, and with join.watches_topic POST and
 *                     DELETE /watches/{name} (join/join_wapi.c).
 *
 * The group's assignment is looked up when a query needs it and is older than
 * OWNERS_FRESH_NS (or a rebalance happened); queries wait for the answer.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "join_int.h"
#include "log.h"

#define OWNERS_FRESH_NS  (2ULL * 1000000000ULL)
#define DESCRIBE_TIMEOUT 5000
#define MAX_ID           256
#define MAX_QUERIES      1000

struct ticket;

/* A query waiting for the group's assignment. */
struct owner_query {
    struct owner_query *next;
    h2o_req_t *req;   /* NULL once h2o released it */
    struct ticket *t; /* the request's dispose hook argument; NULL once released */
    char id[MAX_ID];
    size_t id_len;
    int32_t partition;
};

/* Lives until h2o releases the request, whether or not the query is answered by then. */
struct ticket {
    struct owner_query *q; /* NULL once the query was answered */
};

static void
send_json(h2o_req_t *req, int status, const char *reason, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
    bh_http_send_json(req, status, reason, text ? text : "{}");
    free(text);
    json_decref(body);
}

static void
send_error(h2o_req_t *req, int status, const char *reason, const char *msg)
{
    send_json(req, status, reason, json_pack("{s:s}", "error", msg));
}

/* --- views as JSON ------------------------------------------------------------- */

static json_t *
dept_json(const struct bh_jview_dept *d)
{
    json_t *types = json_object();
    for (size_t t = 0; d != NULL && t < d->ntypes; t++) {
        char name[256];
        size_t len = d->types[t].len < sizeof(name) - 1 ? d->types[t].len : sizeof(name) - 1;
        memcpy(name, d->types[t].name, len);
        name[len] = '\0';
        json_object_set_new(types, name, json_integer(d->types[t].count));
    }
    json_t *o = json_object();
    json_object_set_new(o, "total", json_integer(d ? d->total : 0));
    json_object_set_new(o, "by_type", types);
    json_object_set_new(o, "window_total", json_integer(d ? d->window_total : 0));
    if (d != NULL && d->last_id != NULL) {
        json_object_set_new(o, "last_event_id", json_stringn(d->last_id, d->last_id_len));
        json_object_set_new(o, "last_event_at", json_integer(d->last_at));
    } else {
        json_object_set_new(o, "last_event_id", json_null());
        json_object_set_new(o, "last_event_at", json_null());
    }
    return o;
}

static json_t *
view_json(struct bh_join *j, const struct bh_jview *v, int32_t partition)
{
    const char *names[64];
    int depts[64];
    size_t n = bh_jview_layout_depts(j->layout, names, depts, 64);
    json_t *o = json_object();
    json_object_set_new(o, "block_id", json_stringn(v->block_id, v->block_id_len));
    json_object_set_new(o, "block_name", v->block_name ? json_string(v->block_name) : json_null());
    json_object_set_new(o, "updated_at", v->updated_at ? json_integer(v->updated_at) : json_null());
    json_object_set_new(o, "window_ms", json_integer(v->window_ms));
    for (size_t i = 0; i < n && i < 64; i++)
        json_object_set_new(o, names[i], dept_json(depts[i] >= 0 ? &v->depts[depts[i]] : NULL));
    json_object_set_new(o, "partition", json_integer(partition));
    json_object_set_new(o, "owner", json_string(j->client_id));
    return o;
}

/* --- owners --------------------------------------------------------------------- */

static int
is_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static void
answer_owner(struct bh_join *j, h2o_req_t *req, const char *id, size_t len, int32_t p)
{
    const char *owner = j->owners != NULL ? j->owners[p] : NULL;
    if (owner == NULL) {
        send_json(req, 503, "Service Unavailable",
                  json_pack("{s:s, s:i}", "error", "owner unknown", "partition", (int)p));
        return;
    }
    if (!is_url(owner)) {
        send_json(req, 421, "Misdirected Request",
                  json_pack("{s:s, s:s, s:i}", "error",
                            "the block is owned by another instance that has no admin URL", "owner",
                            owner, "partition", (int)p));
        return;
    }
    /* Ids are plain text (440303-017); anything else is percent-encoded in the URL. */
    size_t olen = strlen(owner);
    char *loc = h2o_mem_alloc_pool(&req->pool, olen + 8 + len * 3 + 1);
    size_t w = (size_t)sprintf(loc, "%s/blocks/", owner);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            loc[w++] = (char)c;
        else
            w += (size_t)sprintf(loc + w, "%%%02X", c);
    }
    loc[w] = '\0';
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc, w);
    send_json(req, 307, "Temporary Redirect",
              json_pack("{s:s, s:s, s:i}", "error", "the block is owned by another instance",
                        "owner", owner, "partition", (int)p));
}

static void
describe(struct bh_join *j)
{
    if (j->describing || j->consumer == NULL)
        return;
    char err[256];
    const char *groups[] = {j->conf->group};
    rd_kafka_AdminOptions_t *o =
        rd_kafka_AdminOptions_new(j->consumer, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_AdminOptions_set_request_timeout(o, DESCRIBE_TIMEOUT, err, sizeof(err));
    rd_kafka_DescribeConsumerGroups(j->consumer, groups, 1, o, j->aq);
    rd_kafka_AdminOptions_destroy(o);
    j->describing = 1;
}

static void
on_query_released(void *arg)
{
    struct ticket *t = arg;
    if (t->q != NULL) {
        t->q->req = NULL;
        t->q->t = NULL;
    }
    free(t);
}

/* The request of Q, detached from Q (NULL if h2o released it); Q can then be freed. */
static h2o_req_t *
take_request(struct owner_query *q)
{
    h2o_req_t *req = q->req;
    if (q->t != NULL)
        q->t->q = NULL;
    q->req = NULL;
    q->t = NULL;
    return req;
}

void
bh_join_http_described(struct bh_join *j, rd_kafka_event_t *ev)
{
    j->describing = 0;
    for (int32_t p = 0; j->owners != NULL && p < j->nparts; p++) {
        free(j->owners[p]);
        j->owners[p] = NULL;
    }
    const rd_kafka_DescribeConsumerGroups_result_t *r =
        rd_kafka_event_DescribeConsumerGroups_result(ev);
    size_t ng = 0;
    const rd_kafka_ConsumerGroupDescription_t **gs =
        r ? rd_kafka_DescribeConsumerGroups_result_groups(r, &ng) : NULL;
    if (rd_kafka_event_error(ev))
        bh_warn("join", "describing group %s: %s", j->conf->group, rd_kafka_event_error_string(ev));
    for (size_t g = 0; g < ng && j->owners != NULL; g++) {
        if (rd_kafka_ConsumerGroupDescription_error(gs[g]) != NULL)
            continue;
        size_t nm = rd_kafka_ConsumerGroupDescription_member_count(gs[g]);
        for (size_t m = 0; m < nm; m++) {
            const rd_kafka_MemberDescription_t *md =
                rd_kafka_ConsumerGroupDescription_member(gs[g], m);
            const rd_kafka_topic_partition_list_t *a =
                rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(md));
            for (int i = 0; a != NULL && i < a->cnt; i++) {
                int32_t p = a->elems[i].partition;
                if (strcmp(a->elems[i].topic, j->inputs[0].c->topic) != 0 || p < 0 ||
                    p >= j->nparts || j->owners[p] != NULL)
                    continue;
                j->owners[p] = strdup(rd_kafka_MemberDescription_client_id(md));
            }
        }
    }
    j->owners_at_ns = bh_join_now_ns();
    struct owner_query *q = j->queries;
    j->queries = NULL;
    while (q != NULL) {
        struct owner_query *next = q->next;
        h2o_req_t *req = take_request(q);
        if (req != NULL)
            answer_owner(j, req, q->id, q->id_len, q->partition);
        free(q);
        q = next;
    }
}

/* --- requests -------------------------------------------------------------------- */

static void
answer_block(struct bh_join *j, h2o_req_t *req, const char *id, size_t len)
{
    if (j->failed || j->stopping || j->parts == NULL) {
        send_error(req, 503, "Service Unavailable",
                   j->failed ? j->failure : "the join is not running");
        return;
    }
    int32_t p = bh_join_partition_of(j, id, len);
    struct part *pt = &j->parts[p];
    const struct bh_block *known = bh_blockmap_find(j->hub->blocks, id, len);
    if (pt->st == PART_LIVE) {
        const struct bh_jblock *b = bh_jstate_block(pt->state, id, len, 0);
        if (b == NULL && known == NULL) {
            send_error(req, 404, "Not Found", "unknown block");
            return;
        }
        struct bh_jview v;
        if (b != NULL) {
            if (bh_join_view_of(j, pt->state, b, &v) < 0) {
                send_error(req, 503, "Service Unavailable", "out of memory");
                return;
            }
        } else {
            memset(&v, 0, sizeof(v));
            memset(j->vdepts, 0, j->ninputs * sizeof(*j->vdepts));
            v.block_id = id;
            v.block_id_len = len;
            v.block_name = known->name;
            v.window_ms = j->conf->window;
            v.depts = j->vdepts;
        }
        send_json(req, 200, "OK", view_json(j, &v, p));
        return;
    }
    if (pt->st == PART_RESTORING) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        send_json(req, 503, "Service Unavailable",
                  json_pack("{s:s, s:i}", "error", "the block's partition is being restored",
                            "partition", (int)p));
        return;
    }
    if (known == NULL) {
        send_error(req, 404, "Not Found", "unknown block");
        return;
    }
    if (j->owners_at_ns != 0 && bh_join_now_ns() - j->owners_at_ns < OWNERS_FRESH_NS) {
        answer_owner(j, req, id, len, p);
        return;
    }
    size_t waiting = 0;
    for (struct owner_query *q = j->queries; q != NULL; q = q->next)
        waiting++;
    if (waiting >= MAX_QUERIES) {
        send_error(req, 503, "Service Unavailable", "too many queries waiting");
        return;
    }
    struct owner_query *q = calloc(1, sizeof(*q));
    struct ticket *t = calloc(1, sizeof(*t));
    if (q == NULL || t == NULL) {
        free(q);
        free(t);
        send_error(req, 503, "Service Unavailable", "out of memory");
        return;
    }
    q->req = req;
    q->t = t;
    t->q = q;
    memcpy(q->id, id, len);
    q->id_len = len;
    q->partition = p;
    q->next = j->queries;
    j->queries = q;
    bh_http_on_dispose(req, on_query_released, t);
    describe(j);
}

static json_t *
status_json(struct bh_join *j)
{
    json_t *live = json_array(), *restoring = json_array();
    struct bh_jstate_usage total = {0};
    for (int32_t p = 0; j->parts != NULL && p < j->nparts; p++) {
        struct part *pt = &j->parts[p];
        if (pt->st == PART_LIVE) {
            json_array_append_new(live, json_integer(p));
            struct bh_jstate_usage u;
            bh_jstate_usage(pt->state, &u);
            total.blocks += u.blocks;
            total.windowed += u.windowed;
            total.staged += u.staged;
            total.bytes += u.bytes;
        } else if (pt->st == PART_RESTORING) {
            json_array_append_new(restoring, json_integer(p));
        }
    }
    const struct join_stats *s = &j->stats;
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:b, s:s?, s:i, s:o, s:o}", "instance", j->instance,
                  "group", j->conf->group, "client_id", j->client_id, "transactional_id", j->txn_id,
                  "running", !j->failed && !j->stopping, "failure", j->failed ? j->failure : NULL,
                  "partition_count", (int)j->nparts, "live", live, "restoring", restoring);
    json_t *st =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "consumed",
                  (json_int_t)s->consumed, "counted", (json_int_t)s->counted, "duplicates",
                  (json_int_t)s->duplicates, "dead_letters", (json_int_t)s->dead_letters, "commits",
                  (json_int_t)s->commits, "aborts", (json_int_t)s->aborts, "producer_restarts",
                  (json_int_t)s->producer_restarts, "restores", (json_int_t)s->restores, "views",
                  (json_int_t)s->views, "changelog_records", (json_int_t)s->changelog_records,
                  "commit_ms_last", (double)s->commit_ns_last / 1e6, "commit_ms_max",
                  (double)s->commit_ns_max / 1e6);
    json_object_set_new(st, "too_late", json_integer((json_int_t)s->too_late));
    json_object_set_new(st, "restores_from_checkpoint", json_integer((json_int_t)s->resumes));
    json_object_set_new(st, "restores_from_changelog", json_integer((json_int_t)s->rebuilds));
    json_object_set_new(st, "changelog_tombstones", json_integer((json_int_t)s->tombstones));
    json_object_set_new(st, "store_writes", json_integer((json_int_t)s->store_writes));
    json_object_set_new(st, "commits_early", json_integer((json_int_t)s->commits_early));
    json_object_set_new(st, "alerts", json_integer((json_int_t)s->alerts));
    json_object_set_new(st, "store_write_ms_last", json_real((double)s->store_ns_last / 1e6));
    json_object_set_new(st, "store_write_ms_max", json_real((double)s->store_ns_max / 1e6));
    json_object_set_new(o, "rules",
                        json_integer(j->rules ? (json_int_t)bh_jrules_count(j->rules) : 0));
    json_object_set_new(o, "watches",
                        json_integer(j->watches ? (json_int_t)bh_jwatches_count(j->watches) : 0));
    json_object_set_new(o, "stats", st);
    struct bh_jstore_usage su = {0};
    if (j->store != NULL)
        bh_jstore_usage(j->store, &su);
    int disk = j->store != NULL && bh_jstore_is_disk(j->store);
    json_t *state =
        json_pack("{s:I, s:I, s:I, s:I, s:f, s:I}", "blocks", (json_int_t)total.blocks,
                  "windowed_events", (json_int_t)total.windowed, "staged_events",
                  (json_int_t)total.staged, "bytes", (json_int_t)total.bytes, "bytes_per_block",
                  total.blocks ? (double)total.bytes / (double)total.blocks : 0.0, "memory_limit",
                  (json_int_t)j->conf->memory_limit);
    json_object_set_new(
        state, "store",
        json_pack("{s:s, s:s?, s:I, s:I, s:I, s:I, s:I}", "kind", disk ? "disk" : "memory", "dir",
                  disk ? j->conf->state_dir : NULL, disk ? "keys_estimate" : "remembered_events",
                  (json_int_t)su.ids, "memory_bytes", (json_int_t)su.bytes, "index_bytes",
                  (json_int_t)su.index_bytes, "disk_bytes", (json_int_t)su.disk_bytes,
                  "cache_bytes", (json_int_t)su.cache_bytes));
    if (disk)
        json_object_set_new(json_object_get(state, "store"), "filters",
                            json_pack("{s:I, s:i, s:I, s:I, s:I}", "bytes",
                                      (json_int_t)su.filter_bytes, "ready", (int)su.filters_ready,
                                      "builds", (json_int_t)su.filter_builds, "lookups_answered",
                                      (json_int_t)su.filter_answered, "lookups_read",
                                      (json_int_t)su.store_lookups));
    json_object_set_new(o, "state", state);
    return o;
}

static void
on_req(void *self, h2o_req_t *req)
{
    struct bh_join *j = self;
    {
        const char *qm = memchr(req->path.base, '?', req->path.len);
        size_t plen = qm ? (size_t)(qm - req->path.base) : req->path.len;
        if (bh_join_watches_http(j, req, req->path.base, plen))
            return;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
        send_error(req, 405, "Method Not Allowed", "only GET is served");
        return;
    }
    const char *path = req->path.base;
    size_t len = req->path.len;
    const char *qm = memchr(path, '?', len);
    if (qm != NULL)
        len = (size_t)(qm - path);
    static const char prefix[] = "/blocks/";
    if (len == 5 && memcmp(path, "/join", 5) == 0) {
        send_json(req, 200, "OK", status_json(j));
        return;
    }
    if (len > sizeof(prefix) - 1 && memcmp(path, prefix, sizeof(prefix) - 1) == 0) {
        char id[MAX_ID];
        ssize_t n = bh_http_unescape(path + sizeof(prefix) - 1, len - (sizeof(prefix) - 1), id,
                                     sizeof(id), 0);
        if (n <= 0 || memchr(id, '/', (size_t)n) != NULL) {
            send_error(req, 400, "Bad Request", "not a block id");
            return;
        }
        answer_block(j, req, id, (size_t)n);
        return;
    }
    send_error(req, 404, "Not Found", "GET /blocks/{id} or GET /join");
    return;
}

/* --- the server ------------------------------------------------------------------ */

int
bh_join_http_start(struct bh_join *j, char *errstr, size_t n)
{
    (void)errstr;
    (void)n;
    j->owners = calloc((size_t)j->nparts, sizeof(*j->owners));
    if (j->owners == NULL)
        return -ENOMEM;
    struct bh_admin *a = j->hub->admin;
    if (a == NULL)
        return 0;
    if (bh_admin_route(a, "/blocks/", on_req, j) < 0 || bh_admin_route(a, "/join", on_req, j) < 0 ||
        bh_admin_route(a, "/watches", on_req, j) < 0 ||
        bh_admin_route(a, "/watches/", on_req, j) < 0)
        return -ENOMEM;
    j->http_on = 1;
    snprintf(j->advertise, sizeof(j->advertise), "%s", bh_admin_url(a));
    return 0;
}

void
bh_join_http_stop(struct bh_join *j)
{
    if (!j->http_on)
        return;
    j->http_on = 0;
    bh_admin_unroute(j->hub->admin, j);
    /* Waiting queries get their answer now. */
    struct owner_query *q = j->queries;
    j->queries = NULL;
    while (q != NULL) {
        struct owner_query *next = q->next;
        h2o_req_t *req = take_request(q);
        if (req != NULL)
            send_error(req, 503, "Service Unavailable", "the join is stopping");
        free(q);
        q = next;
    }
}

void
bh_join_http_free(struct bh_join *j)
{
    bh_join_http_stop(j);
    for (int32_t p = 0; j->owners != NULL && p < j->nparts; p++)
        free(j->owners[p]);
    free(j->owners);
    j->owners = NULL;
}
