/*
 * The alerts adapter's routes on the admin API (hub/admin.h):
 *
 *   GET /alerts         the alerts kept (a history of the topic, `history` at most,
 *                       of the last `history_for`), oldest first, filtered by
 *                       block, unit, name and since; at most limit of them.
 *   GET /alerts/stream  server-sent events: each alert read after the client
 *                       connected (with since: first the kept ones from then on).
 *
 * The history is read by a consumer of its own (read_committed, no group: it
 * assigns every partition from the offsets of now - history_for), woken on the
 * loop through a pipe. The webhook consumer's group and offsets are not touched.
 */
#ifndef BH_ALERTS_API_H
#define BH_ALERTS_API_H

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bh_component;
struct bh_stats;
struct bh_alerts_api;

/* --- the query string (outside bytes) -------------------------------------------------- */

#define BH_ALERT_QUERY_LIMIT_DEFAULT 1000
#define BH_ALERT_QUERY_LIMIT_MAX     10000

struct bh_alert_query {
    char *block; /* NULL: any */
    char *unit;
    char *name;
    bool has_since;
    int64_t since; /* epoch ms: detected_at >= since */
    int64_t limit;
};

/*
 * Parse the query string Q[0..LEN) (what follows '?', without it) of GET /alerts or
 * /alerts/stream: block, unit, name (exact, percent-decoded, '+' a space, valid UTF-8
 * without NUL), since (RFC 3339 with an offset, or integer epoch ms) and limit (1 to
 * 10000). 0 and *OUT (free it with bh_alert_query_free); else -EINVAL, *KEY the
 * parameter at fault (valid UTF-8, into KEYBUF of KEYSIZE bytes) and the reason in WHY.
 */
int bh_alert_query_parse(const char *q, size_t len, struct bh_alert_query *out, char *keybuf,
                         size_t keysize, char *why, size_t why_size);
void bh_alert_query_free(struct bh_alert_query *q);

/* --- the history and the routes ------------------------------------------------------------ */

/*
 * An alert record as JSON (the webhook body): *OUT, or NULL with -EAGAIN (its writer
 * schema is being fetched: try again later) or another -errno (not an alert: skipped).
 */
typedef int (*bh_alerts_json_fn)(void *arg, const rd_kafka_message_t *m, json_t **out);

struct bh_alerts_api_conf {
    const char *topic;
    int64_t history;     /* alerts kept at most */
    int64_t history_for; /* ms */
    int64_t keep_alive;  /* ms: a comment line to a stream idle that long */
};

/*
 * Start the history consumer and register the routes, unless the process has no admin
 * API or CONF->history is 0 (then *OUT is NULL and 0 is returned). ON_CLOSED(ARG) is
 * called once, on the loop, after bh_alerts_api_stop when everything is closed.
 */
int bh_alerts_api_start(struct bh_alerts_api **out, struct bh_component *c,
                        const struct bh_alerts_api_conf *conf, bh_alerts_json_fn to_json,
                        void (*on_closed)(void *arg), void *arg, char *errstr, size_t errstr_size);
/* Unroute, end every stream, close the consumer (on a worker thread). */
void bh_alerts_api_stop(struct bh_alerts_api *a);
/* After ON_CLOSED: free (streams still being written out are let go without it). */
void bh_alerts_api_free(struct bh_alerts_api *a);
void bh_alerts_api_stats(const struct bh_alerts_api *a, struct bh_stats *out);

#endif
