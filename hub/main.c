/*
 * blockhub: the daemon. Loads the config, the schemas and the block map,
 * connects the Kafka producer to the loop, starts every component (each
 * configured adapter, then the join when enabled) through the component
 * interface, and runs until SIGTERM/SIGINT. Shutdown stops intake, lets in-flight work
 * finish, flushes Kafka and exits 0; exit 1 if anything was left undelivered.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "http.h"
#include "hub.h"
#include "join.h"
#include "log.h"
#include "notify.h"

#define DEAD_LETTER_SCHEMA "blockhub.DeadLetter"
#define MAX_TOPICS         64

static struct bh_hub hub;
static struct bh_hub_conf conf;
static uv_signal_t sigterm, sigint, sighup;
static uv_timer_t watchdog;     /* WATCHDOG=1 to the service manager while the loop turns */
static uv_timer_t finish_timer; /* the flush, on the turn after the last component stopped */
static int exit_code;

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: blockhub --config FILE [--set key.path=value ...]\n"
        "       blockhub check --config FILE        check the config (and the cluster) and exit;\n"
        "                                           every problem is listed (also --check)\n"
        "       blockhub schemas --config FILE      each schema: file, fingerprint, canonical "
        "form,\n"
        "                                           topics, subjects, registry id and version\n"
        "       blockhub --config-reference         print every config key (Markdown)\n"
        "\n"
        "--set overrides any config value; adapters are addressed by name or index:\n"
        "  --set kafka.brokers=127.0.0.1:9092 --set adapters.fire.listen=:8080\n");
}

/* A relative path in the config is taken from the config file's directory. */
static int
resolve_path(char **p, const char *config_path)
{
    if (*p == NULL || (*p)[0] == '/' || config_path == NULL)
        return 0;
    char dirbuf[PATH_MAX], out[PATH_MAX];
    snprintf(dirbuf, sizeof(dirbuf), "%s", config_path);
    int n = snprintf(out, sizeof(out), "%s/%s", dirname(dirbuf), *p);
    if (n < 0 || (size_t)n >= sizeof(out))
        return -ENAMETOOLONG;
    char *copy = strdup(out);
    if (copy == NULL)
        return -ENOMEM;
    free(*p);
    *p = copy;
    return 0;
}

/* The signal handlers stay: a second SIGTERM while exiting must not kill us. */
static void
finish(uv_timer_t *t)
{
    struct bh_hub *h = t->data;
    for (size_t i = 0; i < h->ncomponents; i++)
        if (h->components[i]->failed)
            exit_code = 1;
    size_t left = 0;
    /* The adapters' own producers first: embedded, the hub's owns the cluster they use. */
    for (size_t i = 0; i < h->ncomponents; i++) {
        struct bh_component *c = h->components[i];
        if (c->kafka == NULL)
            continue;
        bh_info(c->name, "intake stopped; flushing %zu message(s) in flight on its producer",
                bh_kafka_in_flight(c->kafka));
        left += bh_component_close_kafka(c, (int)h->conf->kafka.flush_timeout);
    }
    bh_info("hub", "intake stopped; flushing %zu message(s) in flight",
            bh_kafka_in_flight(h->kafka));
    left += bh_kafka_close(h->kafka, (int)h->conf->kafka.flush_timeout);
    h->kafka = NULL;
    if (left > 0)
        exit_code = 1;
    bh_info("hub", "stopped%s", left ? " with undelivered messages" : "");
    bh_admin_stop(h->admin);
    bh_registry_free(h->registry);
    h->registry = NULL;
    uv_stop(h->loop);
}

/* The last component may say it stopped from inside a Kafka delivery
 * callback: the producer is flushed and closed on the next turn of the loop,
 * outside of librdkafka. */
static void
on_all_stopped(struct bh_hub *h)
{
    finish_timer.data = h;
    uv_timer_start(&finish_timer, finish, 0, 0);
}

static void
report_open(uv_handle_t *h, void *arg)
{
    (void)arg;
    bh_error("hub", "at exit a %s handle is still %s", uv_handle_type_name(uv_handle_get_type(h)),
             uv_is_closing(h) ? "closing" : "open");
}

/* Every handle is closed by its owner before this; the close callbacks run
 * here, and the loop must then close with nothing left: each handle left is
 * logged as an error, and a debug build aborts, so that the sanitized suite
 * catches a leaked handle. */
static int
close_loop(uv_loop_t *loop)
{
    for (int i = 0; i < 100 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(loop);
    if (rc != 0)
        uv_walk(loop, report_open, NULL);
    /* (handles an HTTP server had to leave, logged by it, are not blockhub's leak) */
    assert(rc == 0 || bh_http_left_open() > 0);
    return rc;
}

static void
on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (hub.on_all_stopped == NULL)
        return;
    static int requested;
    if (requested++) {
        bh_warn("hub", "shutdown already in progress");
        return;
    }
    bh_info("hub", "%s: shutting down", strsignal(signum));
    bh_notify("STOPPING=1");
    hub.stopping = true;
    if (hub.running == 0) {
        hub.on_all_stopped(&hub);
        return;
    }
    for (size_t i = 0; i < hub.ncomponents; i++)
        bh_component_stop(hub.components[i]);
}

static struct bh_kafka_conf
kafka_conf(const struct bh_hub_conf *cf)
{
    return (struct bh_kafka_conf){
        .brokers = cf->kafka.brokers,
        .properties = &cf->kafka.properties,
        .partitions = (int)cf->kafka.partitions,
        .replication = (int)cf->kafka.replication,
        .create_timeout_ms = (int)cf->kafka.create_timeout,
    };
}

/* The components of the config, not started: the adapters in their order, then the join. */
static int
setup_components(void)
{
    const struct bh_hub_conf *cf = hub.conf;
    size_t n = cf->adapters.n + (cf->join.enabled ? 1 : 0);
    hub.components = calloc(n ? n : 1, sizeof(*hub.components));
    if (hub.components == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        hub.components[i] = calloc(1, sizeof(**hub.components));
        if (hub.components[i] == NULL)
            return -ENOMEM;
    }
    for (size_t i = 0; i < cf->adapters.n; i++) {
        const struct bh_variant *v = &cf->adapters.v[i];
        *hub.components[i] = (struct bh_component){.type = bh_adapter_type_find(v->type),
                                                   .hub = &hub,
                                                   .name = v->name,
                                                   .settings = v->settings};
    }
    if (cf->join.enabled)
        *hub.components[cf->adapters.n] = (struct bh_component){
            .type = &bh_join_type, .hub = &hub, .name = "join", .settings = &cf->join};
    hub.ncomponents = n;
    return 0;
}

/* The topics the adapters publish to (the dead-letter topic first when WITH_DLQ). */
static int
collect_topics(const char **topics, size_t *n, int with_dlq)
{
    if (with_dlq)
        topics[(*n)++] = conf.dead_letter.topic;
    for (size_t i = 0; i < hub.ncomponents; i++) {
        const char *t[9];
        bh_component_topics(hub.components[i], t, 9);
        for (size_t k = 0; t[k] != NULL && *n < MAX_TOPICS; k++) {
            int dup = 0;
            for (size_t j = 0; j < *n; j++)
                dup |= strcmp(topics[j], t[k]) == 0;
            if (!dup)
                topics[(*n)++] = t[k];
        }
    }
    return 0;
}

/*
 * Every (topic, schema) pair records are published with: the dead letters,
 * each adapter's topics with its type's schema, the join's view. Subjects
 * are named by STRATEGY. Returns how many (at most CAP).
 */
static size_t
registry_items(const struct bh_hub_conf *cf, enum bh_subject_strategy strategy,
               struct bh_registry_item *items, size_t cap)
{
    size_t n = 0;
    const struct bh_schema *dls = bh_schemas_find(hub.schemas, DEAD_LETTER_SCHEMA);
    if (dls != NULL)
        items[n++] = (struct bh_registry_item){.topic = cf->dead_letter.topic, .schema = dls};
    for (size_t i = 0; i <= cf->adapters.n && n < cap; i++) {
        const char *t[9] = {NULL};
        const struct bh_schema *s = NULL;
        if (i == cf->adapters.n) {
            if (cf->join.enabled) {
                s = bh_schemas_find(hub.schemas, cf->join.view_schema);
                t[0] = cf->join.view_topic;
            }
        } else {
            const struct bh_variant *v = &cf->adapters.v[i];
            struct bh_component c = {.type = bh_adapter_type_find(v->type),
                                     .hub = &hub,
                                     .name = v->name,
                                     .settings = v->settings};
            if (c.type == NULL)
                continue;
            s = c.type->schema ? bh_schemas_find(hub.schemas, c.type->schema) : NULL;
            bh_component_topics(&c, t, 9);
        }
        for (size_t k = 0; s != NULL && t[k] != NULL && n < cap; k++) {
            int dup = 0;
            for (size_t j = 0; j < n; j++)
                dup |= strcmp(items[j].topic, t[k]) == 0 && items[j].schema == s;
            if (!dup)
                items[n++] = (struct bh_registry_item){.topic = t[k], .schema = s};
        }
    }
    /* The join's alerts, when it has watches. */
    const struct bh_schema *as =
        cf->join.enabled && (cf->join.watches.n > 0 || cf->join.rules.n > 0 ||
                             (cf->join.watches_topic != NULL && cf->join.watches_topic[0] != '\0'))
            ? bh_schemas_find(hub.schemas, cf->join.alert_schema)
            : NULL;
    if (as != NULL && n < cap)
        items[n++] = (struct bh_registry_item){.topic = cf->join.alerts_topic, .schema = as};
    for (size_t i = 0; i < n; i++)
        bh_registry_subject(strategy, items[i].topic, items[i].schema->name, items[i].subject,
                            sizeof(items[i].subject));
    return n;
}

/* The subjects resolved at start: a reload may publish under these only. */
static char (*resolved_subjects)[400];
static size_t nresolved_subjects;

/*
 * With a registry, a reload that would publish under a subject start did not
 * resolve (a new topic) is refused: resolving takes the loop's time, and the
 * records would have no id. The new topic takes a restart.
 */
static int
subjects_known(const struct bh_hub_conf *nc, char *err, size_t n)
{
    struct bh_registry_item items[MAX_TOPICS + 2];
    enum bh_subject_strategy strategy = BH_SUBJECT_TOPIC;
    if (hub.registry == NULL)
        return 0;
    bh_subject_strategy_parse(nc->schema_registry.subject_strategy, &strategy);
    size_t ni = registry_items(nc, strategy, items, MAX_TOPICS + 2);
    for (size_t i = 0; i < ni; i++) {
        bool known = false;
        for (size_t k = 0; k < nresolved_subjects && !known; k++)
            known = strcmp(resolved_subjects[k], items[i].subject) == 0;
        if (!known) {
            snprintf(err, n,
                     "schema_registry: %s on topic %s would be published under subject %s, "
                     "which was not resolved at start; a new topic takes a restart",
                     items[i].schema->name, items[i].topic, items[i].subject);
            return -EINVAL;
        }
    }
    return 0;
}

/*
 * With a registry: every schema published is looked up or registered, and
 * its id recorded (one id a schema: the registry gives the same id to the
 * same schema under every subject). DO_REGISTER false only looks up (blockhub
 * schemas). ITEMS gets what was found.
 */
static int
resolve_schemas(struct bh_registry_item *items, size_t *nitems, bool do_register, char *err,
                size_t errlen)
{
    const struct bh_registry_conf *rc = &conf.schema_registry;
    enum bh_subject_strategy strategy = BH_SUBJECT_TOPIC;
    bh_subject_strategy_parse(rc->subject_strategy, &strategy);
    *nitems = registry_items(&conf, strategy, items, *nitems);
    bh_info("registry", "resolving %zu schema(s) with %s", *nitems, rc->url);
    int r = bh_registry_resolve(hub.registry, items, *nitems, do_register, err, errlen);
    if (r < 0 || !do_register)
        return r;
    for (size_t i = 0; i < *nitems; i++) {
        const struct bh_registry_item *it = &items[i];
        for (size_t k = 0; k < i; k++) {
            if (items[k].schema == it->schema && items[k].id != it->id) {
                snprintf(err, errlen,
                         "schema %s has id %" PRId32 " under %s but %" PRId32
                         " under %s: blockhub needs one id a schema (a registry that gives "
                         "ids per subject is not supported)",
                         it->schema->name, items[k].id, items[k].subject, it->id, it->subject);
                return -EINVAL;
            }
        }
        int e = bh_schemas_set_registry_id(hub.schemas, it->schema->name, it->id);
        if (e < 0 && e != -EEXIST) {
            snprintf(err, errlen, "schema %s: cannot record its id: %s", it->schema->name,
                     strerror(-e));
            return e;
        }
        bh_info("registry", "%s on %s: subject %s, id %" PRId32 ", version %" PRId32,
                it->schema->name, it->topic, it->subject, it->id, it->version);
    }
    free(resolved_subjects);
    resolved_subjects = calloc(*nitems ? *nitems : 1, sizeof(*resolved_subjects));
    if (resolved_subjects == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < *nitems; i++)
        memcpy(resolved_subjects[i], items[i].subject, sizeof(items[i].subject));
    nresolved_subjects = *nitems;
    return 0;
}

/*
 * Everything start-up would refuse that the config alone decides, run as the
 * config's last check (so --check and start refuse the same things, at their
 * key): the schemas and the block map load, every adapter's schema is there,
 * no department topic is the dead-letter topic. What it loads, start keeps.
 */
static const char *config_file;
static const char **set_args; /* the --set overrides, for every load */
static size_t nset_args;

/* What a config's last check loads: start (or a reload) keeps it. */
static struct loaded {
    struct bh_schemas *schemas;
    const struct bh_schema *dls;
    struct bh_blockmap *blocks;
} * into;

static int
final_check(const void *out, const char **key, char *why, size_t n)
{
    struct bh_hub_conf *cf = (struct bh_hub_conf *)out;
    int rc;
    if (resolve_path(&cf->blocks.map, config_file) < 0) {
        *key = "blocks.map";
        snprintf(why, n, "the path is too long");
        return -ENAMETOOLONG;
    }
    if (resolve_path(&cf->schemas.dir, config_file) < 0) {
        *key = "schemas.dir";
        snprintf(why, n, "the path is too long");
        return -ENAMETOOLONG;
    }
    if (resolve_path(&cf->join.state_dir, config_file) < 0) {
        *key = "join.state_dir";
        snprintf(why, n, "the path is too long");
        return -ENAMETOOLONG;
    }
    const char *tkey = NULL;
    rc = bh_tls_conf_check(&cf->admin.tls, &tkey, why, n);
    if (rc < 0) {
        static char admin_key[64];
        snprintf(admin_key, sizeof(admin_key), "admin.%s", tkey != NULL ? tkey : "tls");
        *key = admin_key;
        return rc;
    }
    /* After refused keys too (the engine lists every problem): what they left unset is skipped. */
    if (cf->schemas.dir == NULL || cf->dead_letter.topic == NULL)
        goto map;
    *key = "schemas.dir";
    rc = bh_schemas_load(&into->schemas, cf->schemas.dir, why, n);
    if (rc < 0)
        return rc;
    into->dls = bh_schemas_find(into->schemas, DEAD_LETTER_SCHEMA);
    if (into->dls == NULL) {
        snprintf(why, n, "schema %s not found in %s", DEAD_LETTER_SCHEMA, cf->schemas.dir);
        return -ENOENT;
    }
    for (size_t i = 0; i < cf->adapters.n; i++) {
        const struct bh_component_type *t = bh_adapter_type_find(cf->adapters.v[i].type);
        if (t != NULL && t->schema != NULL && bh_schemas_find(into->schemas, t->schema) == NULL) {
            snprintf(why, n, "schema %s of adapter '%s' not found in %s", t->schema,
                     cf->adapters.v[i].name, cf->schemas.dir);
            return -ENOENT;
        }
    }
    for (size_t i = 0; i < cf->adapters.n; i++) {
        const struct bh_component_type *t = bh_adapter_type_find(cf->adapters.v[i].type);
        struct bh_component a = {
            .type = t, .name = cf->adapters.v[i].name, .settings = cf->adapters.v[i].settings};
        const char *topics[9];
        if (t == NULL)
            continue;
        bh_component_topics(&a, topics, 9);
        for (size_t k = 0; topics[k] != NULL; k++) {
            if (strcmp(topics[k], cf->dead_letter.topic) == 0) {
                *key = "dead_letter.topic";
                snprintf(why, n,
                         "'%s' is also the topic of adapter '%s': dead letters and records "
                         "would mix",
                         topics[k], a.name);
                return -EINVAL;
            }
        }
    }
map:
    *key = "blocks.map";
    if (cf->blocks.map == NULL)
        return 0;
    return bh_blockmap_load(&into->blocks, cf->blocks.map, why, n);
}

/* --- reload ---------------------------------------------------------------------- */

/*
 * What a reload replaced stays allocated until the process exits: components,
 * records in flight and dead letters may point into an old config or block map.
 */
static struct retired {
    struct bh_hub_conf *conf;
    struct bh_blockmap *blocks;
    struct retired *next;
} * graveyard;
static uv_timer_t retire_timer; /* components a reload stopped: destroyed on a later turn */
static bool cycling;            /* a kafka change: every component drains, then a new producer */

static void
free_components(void)
{
    for (size_t i = 0; i < hub.ncomponents; i++)
        free(hub.components[i]);
    free(hub.components);
    hub.components = NULL;
    hub.ncomponents = 0;
}

static int
add_component(struct bh_component *c)
{
    struct bh_component **v = realloc(hub.components, (hub.ncomponents + 1) * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    hub.components = v;
    hub.components[hub.ncomponents++] = c;
    return 0;
}

/* Create C's topics if missing, then start it; on failure it is logged and freed. */
static int
start_new(struct bh_component *c, char *err, size_t n)
{
    const char *topics[9];
    size_t nt = bh_component_topics(c, topics, 9);
    int rc = nt > 0 ? bh_kafka_ensure_topics(hub.kafka, topics, nt, err, n) : 0;
    if (rc == -ETIMEDOUT)
        rc = 0; /* as at start: requests get 503 until Kafka answers */
    char cerr[400];
    if (rc == 0 && (rc = bh_component_start(c, cerr, sizeof(cerr))) < 0)
        snprintf(err, n, "adapter '%s' (%s): %s", c->name, c->type->name, cerr);
    return rc;
}

/* Components a reload stopped: destroyed, and their successors started. */
/*
 * Every component has drained for a kafka change: the producer is flushed and
 * replaced by one of the new settings, and the components start again from
 * the new config.
 */
static void
cycle_producer(void)
{
    char err[1024];
    for (size_t i = 0; i < hub.ncomponents; i++)
        bh_component_destroy(hub.components[i]);
    free_components();
    size_t left = bh_kafka_close(hub.kafka, (int)hub.conf->kafka.flush_timeout);
    hub.kafka = NULL;
    if (left > 0)
        bh_error("hub", "reload: %zu message(s) not delivered by the old producer", left);
    struct bh_kafka_conf kc = kafka_conf(hub.conf);
    const char *topics[MAX_TOPICS];
    size_t ntopics = 0;
    int rc = bh_kafka_new(&hub.kafka, hub.loop, &kc, err, sizeof(err));
    if (rc == 0)
        rc = setup_components();
    if (rc == 0) {
        collect_topics(topics, &ntopics, 1);
        rc = bh_kafka_ensure_topics(hub.kafka, topics, ntopics, err, sizeof(err));
        if (rc == -ETIMEDOUT)
            rc = 0; /* as at start: requests get 503 until Kafka answers */
    }
    for (size_t i = 0; rc == 0 && i < hub.ncomponents; i++) {
        char cerr[400];
        if (bh_component_start(hub.components[i], cerr, sizeof(cerr)) < 0)
            bh_error("hub", "reload: %s not started: %s", hub.components[i]->name, cerr);
    }
    cycling = false;
    if (rc < 0) {
        /* Nothing to carry the records: stop as a failed start would. */
        bh_error("hub", "reload: no new producer: %s; exiting",
                 rc == -ENOMEM ? "out of memory" : err);
        exit_code = 1;
        hub.stopping = true;
        bh_admin_stop(hub.admin);
        uv_stop(hub.loop);
        return;
    }
    bh_info("hub", "reload: a new producer (%s); %zu component(s) started again",
            bh_kafka_bootstrap(hub.kafka), hub.ncomponents);
}

static void
on_retire_timer(uv_timer_t *t)
{
    (void)t;
    if (cycling) {
        for (size_t i = 0; i < hub.ncomponents; i++)
            if (!hub.components[i]->stopped)
                return; /* the last one's stop comes back here */
        if (!hub.stopping)
            cycle_producer();
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < hub.ncomponents; i++) {
        struct bh_component *c = hub.components[i];
        if (!c->retiring || !c->stopped || hub.stopping) {
            hub.components[k++] = c;
            continue;
        }
        const struct bh_variant *v = c->successor;
        bool restart = c->restart;
        bh_component_destroy(c);
        if (restart) {
            *c = (struct bh_component){
                .type = &bh_join_type, .hub = &hub, .name = "join", .settings = &hub.conf->join};
            char err[600];
            if (start_new(c, err, sizeof(err)) < 0) {
                bh_error("hub", "reload: the join not started again: %s", err);
                free(c);
                continue;
            }
            bh_info("hub", "reload: join started again with its new settings");
            hub.components[k++] = c;
            continue;
        }
        if (v == NULL) {
            bh_info("hub", "reload: %s closed", c->name);
            free(c);
            continue;
        }
        *c = (struct bh_component){.type = bh_adapter_type_find(v->type),
                                   .hub = &hub,
                                   .name = v->name,
                                   .settings = v->settings};
        char err[600];
        if (start_new(c, err, sizeof(err)) < 0) {
            bh_error("hub", "reload: %s not started again: %s", v->name, err);
            free(c);
            continue;
        }
        bh_info("hub", "reload: %s started again with its new settings", c->name);
        hub.components[k++] = c;
    }
    hub.ncomponents = k;
}

static void
on_retired(struct bh_hub *h, struct bh_component *c)
{
    (void)c;
    uv_timer_start(&retire_timer, on_retire_timer, 0, 0); /* not from inside its callbacks */
    (void)h;
}

/* Sections a running process cannot take: their change is refused, naming them. */
static int
restart_only(const struct bh_hub_conf *old, const struct bh_hub_conf *nc, char *err, size_t n)
{
    static const char *const sections[] = {"schemas", "dead_letter", "schema_registry"};
    char list[200] = "";
    for (const struct bh_conf_key *k = bh_hub_conf_keys; k->name != NULL; k++) {
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
            if (k->type == BH_CONF_SECTION && strcmp(k->name, sections[i]) == 0 &&
                !bh_conf_equal(k->sub, (const char *)old + k->offset,
                               (const char *)nc + k->offset)) {
                size_t len = strlen(list);
                snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "", k->name);
            }
        }
    }
    if (!(old->admin.listen == NULL
              ? nc->admin.listen == NULL
              : nc->admin.listen != NULL && strcmp(old->admin.listen, nc->admin.listen) == 0)) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof(list) - len, "%sadmin.listen", len ? ", " : "");
    }
    if (bh_tls_conf_enabled(&old->admin.tls) != bh_tls_conf_enabled(&nc->admin.tls)) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof(list) - len, "%sadmin.tls (on or off)", len ? ", " : "");
    }
    if (list[0] == '\0')
        return 0;
    snprintf(err, n, "%s changed: that takes a restart; nothing was changed", list);
    return -EINVAL;
}

/* The "listen" setting of an adapter entry, NULL when its type has none. */
static const char *
listen_of(const struct bh_component_type *t, const void *settings)
{
    return t != NULL ? bh_conf_string(t->conf.keys, settings, "listen") : NULL;
}

/*
 * A listen address of the new config that no running adapter holds must be
 * free: tried with a bind now, so that a reload is refused whole instead of
 * failing half-way when the adapter starts.
 */
static int
addresses_free(const struct bh_hub *h, const struct bh_hub_conf *nc, char *err, size_t n)
{
    for (size_t i = 0; i < nc->adapters.n; i++) {
        const struct bh_variant *v = &nc->adapters.v[i];
        const char *addr = listen_of(bh_adapter_type_find(v->type), v->settings);
        bool held = false;
        for (size_t k = 0; addr != NULL && k < h->ncomponents && !held; k++) {
            const char *cur = listen_of(h->components[k]->type, h->components[k]->settings);
            held = cur != NULL && strcmp(cur, addr) == 0 && !h->components[k]->stopped;
        }
        if (addr == NULL || held)
            continue;
        struct sockaddr_storage ss;
        if (bh_parse_listen(addr, &ss) < 0)
            continue; /* the config's check refused it already */
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        int rc = fd < 0 ? -errno : 0;
        if (rc == 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (rc == 0 && bind(fd, (struct sockaddr *)&ss,
                            ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                     : sizeof(struct sockaddr_in)) < 0)
            rc = -errno;
        if (fd >= 0)
            close(fd);
        if (rc < 0) {
            snprintf(err, n, "adapters.%s.listen: %s: %s; nothing was changed", v->name, addr,
                     strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* The keys of the top-level section NAME. */
static const struct bh_conf_key *
section_keys(const char *name)
{
    for (const struct bh_conf_key *k = bh_hub_conf_keys; k->name != NULL; k++)
        if (k->type == BH_CONF_SECTION && strcmp(k->name, name) == 0)
            return k->sub;
    return NULL;
}

static const struct bh_variant *
entry_named(const struct bh_hub_conf *c, const char *name)
{
    for (size_t i = 0; i < c->adapters.n; i++)
        if (strcmp(c->adapters.v[i].name, name) == 0)
            return &c->adapters.v[i];
    return NULL;
}

static void
note(char *buf, size_t n, const char *fmt, const char *name)
{
    size_t len = strlen(buf);
    if (len < n)
        snprintf(buf + len, n - len, fmt, len ? ", " : "", name);
}

/*
 * The config file again (with the same --set overrides), checked in full
 * first: a refused one changes nothing. Then per component: one whose entry
 * did not change is not touched; a changed one takes its new settings when it
 * can (its reload hook), else it is drained and replaced; a removed one is
 * drained and closed; an added one starts. The block map is swapped at once:
 * each record resolves against the old map or the new one. admin.tokens and
 * log.level apply at once.
 */
static int
reload(struct bh_hub *h, char *changes, size_t cn, char *err, size_t n)
{
    changes[0] = '\0';
    if (h->stopping) {
        snprintf(err, n, "shutting down");
        return -ESHUTDOWN;
    }
    struct bh_hub_conf *nc = calloc(1, sizeof(*nc));
    struct retired *r = calloc(1, sizeof(*r));
    struct loaded l = {0};
    enum bh_log_level level = BH_LOG_INFO;
    int rc = nc != NULL && r != NULL ? 0 : -ENOMEM;
    if (rc == 0) {
        into = &l;
        rc = bh_conf_load_checked(config_file, set_args, nset_args, bh_hub_conf_keys, final_check,
                                  nc, err, n);
        into = NULL;
    }
    if (rc == 0 && bh_log_level_parse(nc->log.level, &level) < 0) {
        snprintf(err, n, "log.level: '%s' is not error, warn, info or debug", nc->log.level);
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = restart_only(h->conf, nc, err, n);
    if (rc == 0)
        rc = subjects_known(nc, err, n);
    if (rc == 0)
        rc = addresses_free(h, nc, err, n);
    bh_schemas_free(l.schemas); /* schemas.dir did not change: the loaded ones stay */
    if (rc < 0) {
        h->reloads_refused++;
        bh_blockmap_free(l.blocks);
        if (nc != NULL)
            bh_conf_free(bh_hub_conf_keys, nc);
        free(nc);
        free(r);
        return rc;
    }
    /* Checked: from here on it is applied. */
    h->reloads_applied++;
    bool kafka_changed = !bh_conf_equal(section_keys("kafka"), &h->conf->kafka, &nc->kafka);
    bool join_changed = !bh_conf_equal(section_keys("join"), &h->conf->join, &nc->join);
    r->conf = (struct bh_hub_conf *)h->conf;
    r->blocks = h->blocks;
    r->next = graveyard;
    graveyard = r;
    h->blocks = l.blocks;
    h->conf = nc;
    bh_log_set_level(level);
    bh_log_set_json(strcmp(nc->log.format, "json") == 0);
    bh_admin_set_conf(h->admin, &nc->admin);
    if (kafka_changed || (join_changed && (!nc->join.enabled || !h->conf->join.enabled))) {
        /* A new producer (or the join added or removed): everything drains, then starts
         * again from the new config on a new producer (cycle_producer). */
        note(changes, cn, "%s%s",
             kafka_changed ? "kafka changed: every component drained and "
                             "started again on a new producer"
                           : "the join added or removed: every component "
                             "drained and started again");
        note(changes, cn, "%s%s", "block map swapped");
        cycling = true;
        for (size_t i = 0; i < h->ncomponents; i++) {
            h->components[i]->retiring = true;
            bh_component_stop(h->components[i]);
        }
        uv_timer_start(&retire_timer, on_retire_timer, 0, 0);
        bh_info("hub", "reload: %s", changes);
        return 0;
    }
    size_t before = h->ncomponents;
    for (size_t i = 0; i < before; i++) {
        struct bh_component *c = h->components[i];
        if (c->type == &bh_join_type && join_changed && !c->retiring && !c->stopped) {
            /* The join has no reload hook: it commits, stops and starts again. */
            c->retiring = true;
            c->restart = true;
            note(changes, cn, "%s%s replaced", c->name);
            bh_component_stop(c);
            continue;
        }
        if (c->type == &bh_join_type || c->retiring || c->stopped)
            continue;
        const struct bh_variant *v = entry_named(nc, c->name);
        const struct bh_component_type *t = v != NULL ? bh_adapter_type_find(v->type) : NULL;
        if (v != NULL && t == c->type && bh_conf_equal(t->conf.keys, c->settings, v->settings)) {
            c->name = v->name; /* unchanged: not touched */
            continue;
        }
        char why[300];
        /* New producer properties take a new producer: the adapter is replaced. */
        const struct bh_kvlist *np =
            v != NULL && t == c->type
                ? bh_conf_map(t->conf.keys, v->settings, BH_KAFKA_PROPERTIES_NAME)
                : NULL;
        bool same_producer = np == NULL || bh_kvlist_equal(np, bh_component_kafka_properties(c));
        if (v != NULL && t == c->type && same_producer &&
            bh_component_reload(c, v->settings, why, sizeof(why)) == 0) {
            c->name = v->name;
            c->settings = v->settings;
            note(changes, cn, "%s%s reloaded", c->name);
            continue;
        }
        c->retiring = true;
        c->successor = v;
        note(changes, cn, v != NULL ? "%s%s replaced" : "%s%s removed", c->name);
        bh_component_stop(c);
    }
    for (size_t i = 0; i < nc->adapters.n; i++) {
        const struct bh_variant *v = &nc->adapters.v[i];
        bool known = false;
        for (size_t k = 0; k < before && !known; k++)
            known = strcmp(h->components[k]->name, v->name) == 0;
        if (known)
            continue;
        struct bh_component *c = calloc(1, sizeof(*c));
        if (c == NULL || add_component(c) < 0) {
            free(c);
            bh_error("hub", "reload: %s not added: out of memory", v->name);
            continue;
        }
        *c = (struct bh_component){.type = bh_adapter_type_find(v->type),
                                   .hub = h,
                                   .name = v->name,
                                   .settings = v->settings};
        char aerr[600];
        if (start_new(c, aerr, sizeof(aerr)) < 0) {
            bh_error("hub", "reload: %s", aerr);
            h->ncomponents--;
            free(c);
            note(changes, cn, "%s%s not started (see the log)", v->name);
            continue;
        }
        note(changes, cn, "%s%s added", v->name);
    }
    note(changes, cn, "%s%s", "block map swapped");
    bh_info("hub", "reload: %s", changes);
    return 0;
}

static void
on_sighup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    char changes[1000], err[4096];
    bh_notify("RELOADING=1");
    if (hub.reload(&hub, changes, sizeof(changes), err, sizeof(err)) < 0)
        bh_error("hub", "reload refused: %s", err);
    bh_notify("READY=1");
}

static void
on_watchdog(uv_timer_t *t)
{
    (void)t;
    bh_notify("WATCHDOG=1");
}

static int
start(char *err, size_t errlen)
{
    int rc;
    const char *topics[MAX_TOPICS];
    size_t ntopics = 0;

    hub.loop = uv_default_loop();
    hub.conf = &conf;
    bh_info("hub", "%zu schemas from %s", bh_schemas_count(hub.schemas), conf.schemas.dir);
    bh_info("hub", "%zu blocks from %s", bh_blockmap_count(hub.blocks), conf.blocks.map);
    rc = setup_components();
    if (rc < 0)
        return rc;
    hub.framing = BH_FRAMING_SINGLE_OBJECT;
    if (conf.schema_registry.url != NULL) {
        struct bh_registry_item items[MAX_TOPICS + 2];
        size_t nitems = MAX_TOPICS + 2;
        rc = bh_registry_new(&hub.registry, hub.loop, &conf.schema_registry, err, errlen);
        if (rc == 0)
            rc = resolve_schemas(items, &nitems, true, err, errlen);
        if (rc < 0)
            return rc;
        if (strcmp(conf.schema_registry.framing, "confluent") == 0)
            hub.framing = BH_FRAMING_CONFLUENT;
        bh_registry_probe_start(hub.registry);
    }
    rc = bh_encoder_new(&hub.encoder, hub.framing);
    if (rc < 0)
        return rc;

    struct bh_kafka_conf kc = kafka_conf(&conf);
    rc = bh_kafka_new(&hub.kafka, hub.loop, &kc, err, errlen);
    if (rc < 0)
        return rc;
    collect_topics(topics, &ntopics, 1);
    rc = bh_kafka_ensure_topics(hub.kafka, topics, ntopics, err, errlen);
    if (rc == -ETIMEDOUT) {
        bh_warn("hub", "%s; starting anyway: requests get 503 until Kafka acknowledges", err);
    } else if (rc < 0) {
        return rc;
    } else {
        /* The topics keyed by block (all but the dead-letter topic) must be co-partitioned. */
        rc = bh_kafka_check_partitions(hub.kafka, topics + 1, ntopics - 1,
                                       (int)conf.kafka.create_timeout, err, errlen);
        if (rc == -ETIMEDOUT)
            bh_warn("hub", "%s; partition counts not checked", err);
        else if (rc < 0)
            return rc;
    }

    /* Before the components: the join puts its routes on it. */
    char aerr[300];
    rc = bh_admin_start(&hub, aerr, sizeof(aerr));
    if (rc < 0) {
        snprintf(err, errlen, "admin.listen: %s", aerr);
        return rc;
    }
    for (size_t i = 0; i < hub.ncomponents; i++) {
        struct bh_component *c = hub.components[i];
        char cerr[400];
        rc = bh_component_start(c, cerr, sizeof(cerr));
        if (rc < 0) {
            if (c->type == &bh_join_type)
                snprintf(err, errlen, "%s", cerr);
            else
                snprintf(err, errlen, "adapter '%s' (%s): %s", c->name, c->type->name, cerr);
            return rc;
        }
    }
    uv_timer_init(hub.loop, &finish_timer);
    uv_timer_init(hub.loop, &retire_timer);
    hub.on_all_stopped = on_all_stopped;
    hub.on_retired = on_retired;
    hub.reload = reload;
    hub.ready = true;
    return 0;
}

/*
 * --check with a reachable cluster: the department topics that exist must
 * have kafka.partitions partitions. -EINVAL refuses; another error means the
 * cluster was not checked (embedded, or not reachable).
 */
static int
check_cluster(char *err, size_t errlen)
{
    const char *topics[MAX_TOPICS];
    size_t ntopics = 0;
    if (strcmp(conf.kafka.brokers, "embedded") == 0) {
        snprintf(err, errlen, "the embedded cluster keeps nothing");
        return -ENOENT;
    }
    hub.loop = uv_default_loop();
    hub.conf = &conf;
    struct bh_kafka_conf kc = kafka_conf(&conf);
    int rc = bh_kafka_new(&hub.kafka, hub.loop, &kc, err, errlen);
    if (rc < 0)
        return rc == -EINVAL ? -EIO : rc;
    rc = setup_components();
    /* Every topic keyed by block: the departments', and the join's inputs, view and changelog. */
    if (rc == 0) {
        collect_topics(topics, &ntopics, 0);
        for (size_t i = 0; conf.join.enabled && i < conf.join.inputs.n; i++) {
            const struct bh_join_input_conf *in = conf.join.inputs.v[i].settings;
            bool dup = false;
            for (size_t k = 0; k < ntopics; k++)
                dup |= strcmp(topics[k], in->topic) == 0;
            if (!dup && ntopics < MAX_TOPICS - 3)
                topics[ntopics++] = in->topic;
        }
        if (conf.join.enabled) {
            topics[ntopics++] = conf.join.view_topic;
            topics[ntopics++] = conf.join.state_topic;
            if (conf.join.watches.n > 0 || conf.join.rules.n > 0 ||
                (conf.join.watches_topic != NULL && conf.join.watches_topic[0] != '\0'))
                topics[ntopics++] = conf.join.alerts_topic;
            if (conf.join.rules.n > 0 && ntopics < MAX_TOPICS)
                topics[ntopics++] = conf.join.rules_topic;
        }
    }
    int counts[MAX_TOPICS] = {0};
    /* Asked a second at a time: no metadata because the cluster refused our credentials is a
     * config error, refused as soon as the client says so. */
    uint64_t end = uv_hrtime() / 1000000 + conf.kafka.create_timeout;
    while (rc == 0) {
        uint64_t now = uv_hrtime() / 1000000;
        int slice = end > now + 1000 ? 1000 : end > now ? (int)(end - now) : 1;
        rc = bh_kafka_partition_counts(bh_kafka_handle(hub.kafka), topics, ntopics, counts, slice,
                                       "kafka", err, errlen);
        if (rc != -ETIMEDOUT)
            break;
        if (bh_kafka_auth_failed(hub.kafka, 100, err, errlen) < 0) {
            rc = -EINVAL;
            break;
        }
        if (uv_hrtime() / 1000000 >= end)
            break;
        rc = 0;
    }
    if (rc == 0) {
        /* Every problem, one a line: counts that differ, topics that could not be created. */
        err[0] = '\0';
        struct bh_kafka_new_topic absent[MAX_TOPICS + 1];
        size_t nabsent = 0;
        absent[nabsent++] = (struct bh_kafka_new_topic){.name = conf.dead_letter.topic};
        for (size_t i = 0; i < ntopics; i++)
            if (counts[i] == 0)
                absent[nabsent++] = (struct bh_kafka_new_topic){.name = topics[i]};
        bh_kafka_partition_mismatches(topics, counts, ntopics, (int)conf.kafka.partitions, ntopics,
                                      err, errlen);
        char cerr[2048] = "";
        const struct bh_kafka_create_opts o = {.partitions = (int)conf.kafka.partitions,
                                               .replication = (int)conf.kafka.replication,
                                               .timeout_ms = (int)conf.kafka.create_timeout,
                                               .who = "kafka",
                                               .validate_only = true};
        int crc = bh_kafka_create_topics(bh_kafka_handle(hub.kafka), absent, nabsent, &o, cerr,
                                         sizeof(cerr));
        size_t len = strlen(err);
        if (crc < 0 && crc != -ETIMEDOUT && len + 2 < errlen)
            snprintf(err + len, errlen - len, "%s%s", len ? "\n" : "", cerr);
        rc = err[0] != '\0' ? -EINVAL : 0;
        if (rc == 0 && crc == -ETIMEDOUT) {
            snprintf(err, errlen, "%s", cerr);
            rc = -ETIMEDOUT;
        }
    }
    bh_kafka_close(hub.kafka, 0);
    hub.kafka = NULL;
    uv_run(hub.loop, UV_RUN_NOWAIT); /* the producer's handles finish closing */
    free_components();
    return rc;
}

/*
 * blockhub schemas: each schema with its file, fingerprint and Parsing
 * Canonical Form, the topics and subjects it is published on, and with a
 * registry the id and version it has there (looked up, never registered).
 */
static int
print_schemas(void)
{
    char err[4096];
    struct bh_registry_item items[MAX_TOPICS + 2];
    size_t nitems = MAX_TOPICS + 2;
    enum bh_subject_strategy strategy = BH_SUBJECT_TOPIC;
    int rc = 0;
    hub.loop = uv_default_loop();
    hub.conf = &conf;
    if (setup_components() < 0)
        return 1;
    if (conf.schema_registry.url != NULL) {
        rc = bh_registry_new(&hub.registry, hub.loop, &conf.schema_registry, err, sizeof(err));
        if (rc == 0)
            rc = resolve_schemas(items, &nitems, false, err, sizeof(err));
        if (rc < 0)
            fprintf(stderr, "blockhub: schema registry: %s\n", err);
    } else {
        bh_subject_strategy_parse(conf.schema_registry.subject_strategy, &strategy);
        nitems = registry_items(&conf, strategy, items, nitems);
    }
    for (size_t i = 0; i < bh_schemas_count(hub.schemas); i++) {
        const struct bh_schema *s = bh_schemas_at(hub.schemas, i);
        printf("%s\n  file:        %s\n  fingerprint: %016" PRIx64 " (CRC-64-AVRO)\n"
               "  canonical:   %s\n",
               s->name, s->path, s->fingerprint, s->canonical);
        int published = 0;
        for (size_t k = 0; k < nitems; k++) {
            if (items[k].schema != s)
                continue;
            published = 1;
            printf("  topic:       %s\n    subject:   %s\n", items[k].topic, items[k].subject);
            if (conf.schema_registry.url == NULL)
                continue;
            if (rc < 0)
                printf("    registry:  not asked (%s)\n", err);
            else if (items[k].id < 0)
                printf("    registry:  not registered under this subject\n");
            else
                printf("    registry:  id %" PRId32 ", version %" PRId32 "\n", items[k].id,
                       items[k].version);
        }
        if (!published)
            printf("  topic:       none (internal, or no component publishes it)\n");
    }
    bh_registry_free(hub.registry);
    hub.registry = NULL;
    for (int i = 0; i < 10; i++)
        uv_run(hub.loop, UV_RUN_NOWAIT);
    free_components();
    return rc < 0 ? 1 : 0;
}

/* "blockhub: config refused: WHY", or with several problems one a line under a count. */
static void
print_refused(const char *err)
{
    if (strchr(err, '\n') == NULL) {
        fprintf(stderr, "blockhub: config refused: %s\n", err);
        return;
    }
    size_t count = 1;
    for (const char *p = err; (p = strchr(p, '\n')) != NULL; p++)
        count++;
    fprintf(stderr, "blockhub: config refused: %zu problems:\n", count);
    for (const char *p = err; *p != '\0';) {
        const char *e = strchr(p, '\n');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        fprintf(stderr, "  %.*s\n", (int)len, p);
        p += len + (e != NULL);
    }
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"check", no_argument, NULL, 'k'},        {"config-reference", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    const char **sets = calloc((size_t)argc, sizeof(*sets));
    size_t nsets = 0;
    int check = 0, schemas = 0, c;
    char err[4096];
    /* "blockhub check --config FILE" is "blockhub --config FILE --check". */
    if (argc > 1 && (strcmp(argv[1], "check") == 0 || strcmp(argv[1], "schemas") == 0)) {
        check = strcmp(argv[1], "check") == 0;
        schemas = !check;
        argv[1] = argv[0];
        argv++;
        argc--;
    }

    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            sets[nsets++] = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'r':
            bh_conf_write_reference(stdout, bh_hub_conf_keys);
            free(sets);
            return 0;
        case 'h':
            usage(stdout);
            free(sets);
            return 0;
        default:
            usage(stderr);
            free(sets);
            return 2;
        }
    }
    if (config_path == NULL || optind != argc) {
        usage(stderr);
        free(sets);
        return 2;
    }
    config_file = config_path;
    set_args = sets;
    nset_args = nsets;
    struct loaded first = {0};
    into = &first;
    int rc = bh_conf_load_checked(config_path, sets, nsets, bh_hub_conf_keys, final_check, &conf,
                                  err, sizeof(err));
    into = NULL;
    hub.schemas = first.schemas;
    hub.dead_letter_schema = first.dls;
    hub.blocks = first.blocks;
    if (rc < 0) {
        free(sets);
        print_refused(err);
        return 2;
    }
    enum bh_log_level level;
    if (bh_log_level_parse(conf.log.level, &level) < 0) {
        fprintf(stderr,
                "blockhub: config refused: log.level: '%s' is not error, warn, info or "
                "debug\n",
                conf.log.level);
        return 2;
    }
    bh_log_set_level(level);
    bh_log_set_json(strcmp(conf.log.format, "json") == 0);
    if (schemas) {
        rc = print_schemas();
        bh_blockmap_free(hub.blocks);
        bh_schemas_free(hub.schemas);
        bh_conf_free(bh_hub_conf_keys, &conf);
        return rc;
    }
    if (check) {
        rc = check_cluster(err, sizeof(err));
        if (rc == -EINVAL) {
            print_refused(err);
            return 2;
        }
        if (rc < 0)
            printf("kafka not checked: %s\n", err);
        printf("config OK: %s\n", config_path);
        bh_blockmap_free(hub.blocks);
        bh_schemas_free(hub.schemas);
        bh_conf_free(bh_hub_conf_keys, &conf);
        return 0;
    }

    /* A peer that resets a connection we write to must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    rc = start(err, sizeof(err));
    if (rc < 0) {
        bh_error("hub", "cannot start: %s", err);
        return 1;
    }
    uv_signal_init(hub.loop, &sigterm);
    uv_signal_init(hub.loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_init(hub.loop, &sighup);
    uv_signal_start(&sighup, on_sighup, SIGHUP);
    bh_info("hub", "ready: %zu adapter(s)%s, kafka %s", conf.adapters.n,
            conf.join.enabled ? ", join" : "", bh_kafka_bootstrap(hub.kafka));
    /* Every listener accepts and the producer is up: the service manager may go on. */
    bh_notify("READY=1\nSTATUS=running");
    uv_timer_init(hub.loop, &watchdog);
    uint64_t every = bh_notify_watchdog_ms() / 2;
    if (every > 0)
        uv_timer_start(&watchdog, on_watchdog, every, every);
    if (hub.ncomponents == 0)
        bh_warn("hub", "no adapters configured");

    uv_run(hub.loop, UV_RUN_DEFAULT);

    bh_registry_free(hub.registry); /* when the loop stopped before finish() */
    hub.registry = NULL;
    uv_close((uv_handle_t *)&finish_timer, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sighup, NULL);
    uv_close((uv_handle_t *)&retire_timer, NULL);
    uv_close((uv_handle_t *)&watchdog, NULL);
    /* The close callbacks of what the parts closed while stopping run before they are freed. */
    for (int i = 0; i < 10; i++)
        uv_run(hub.loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < hub.ncomponents; i++)
        bh_component_destroy(hub.components[i]);
    free_components();
    bh_admin_free(hub.admin);
    bh_encoder_free(hub.encoder);
    bh_blockmap_free(hub.blocks);
    bh_schemas_free(hub.schemas);
    free(resolved_subjects);
    close_loop(hub.loop);
    return exit_code;
}
