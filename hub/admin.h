/*
 * The admin API: one HTTP listener (admin.listen) for the whole process, on
 * the hub's loop, for operators and their tools:
 *
 *   GET  /healthz                     alive (200 while the loop turns)
 *   GET  /readyz                      200 once every component has started and
 *                                     the Kafka cluster answers; else 503 with why
 *   GET  /components                  each component's type, state and counters
 *   POST /components/{name}/pause     stop taking input (never drops; 501 when the
 *   POST /components/{name}/resume    component cannot)
 *   GET  /metrics                     the counters in the Prometheus text format
 *   PUT  /admin/log-level             body: error, warn, info or debug
 *   POST /admin/reload                the config file again (as SIGHUP): 200 with what
 *                                     changed, 400 with why nothing did
 *
 * and what components add with bh_admin_route (the join: GET /blocks/{id},
 * GET /join; the alerts adapter: GET /alerts and the event stream GET /alerts/stream,
 * adapters/alerts/alerts_api.h). With admin.tokens set, every request needs one of them as a
 * bearer token (401 otherwise); without, the API is open and start-up says so.
 */
#ifndef BH_ADMIN_H
#define BH_ADMIN_H

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <stddef.h>

#include "config.h"

struct bh_hub;
struct bh_admin;
struct bh_admin_conf;

/* The keys of the config's admin section (struct bh_admin_conf, hub.h). */
extern const struct bh_conf_key bh_admin_conf_keys[];

/* A route's handler: REQ's path begins with the route's prefix. */
typedef void (*bh_admin_fn)(void *self, h2o_req_t *req);

/* Listen on the hub's admin.listen (the hub's admin stays NULL when unset). */
int bh_admin_start(struct bh_hub *hub, char *errstr, size_t errstr_size);
/* Serve PREFIX (a path, or a path ending in '/' for all below it) with FN(SELF, req). */
int bh_admin_route(struct bh_admin *a, const char *prefix, bh_admin_fn fn, void *self);
/* Forget every route of SELF (before SELF goes away). */
void bh_admin_unroute(struct bh_admin *a, void *self);
/* The API's URL as other processes should use it (admin.advertise, else derived). */
const char *bh_admin_url(const struct bh_admin *a);
/* The port it listens on, as text. */
const char *bh_admin_port(const struct bh_admin *a);
/* A reload's new admin section (its listen address is the same): the tokens apply at once. */
void bh_admin_set_conf(struct bh_admin *a, const struct bh_admin_conf *conf);
/* Stop accepting; requests in flight are answered. */
void bh_admin_stop(struct bh_admin *a);
/* After the loop: close and free. */
void bh_admin_free(struct bh_admin *a);

/* Send BODY (a JSON text) with STATUS; shared by the routes. */
void bh_admin_send_json(h2o_req_t *req, int status, const char *reason, const char *body);

#endif
