/*
 * Watches: what the join looks for in every department's events (issue 11's
 * "一點布控，全盤響應"). A watch names a value of a field (a plate, a USCC, a
 * device id: any text field of a department's records, by its name) or a set
 * of blocks, optionally one department, and the event times it covers
 * [since, expires). An event counted by the join (a copy never) that matches a
 * watch fires an alert (schemas/block_alert.avsc), produced in the join's
 * transaction: exactly once.
 *
 * Matching costs one hash lookup per watched field and one for the block,
 * whatever the number of watches.
 */
#ifndef BH_JOIN_WATCH_H
#define BH_JOIN_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "join_avro.h"

/* One watch of join.watches, as configured. */
struct bh_join_watch_conf {
    char *department;         /* NULL: every department */
    char *field;              /* type field */
    char *equals;             /* type field */
    struct bh_strlist blocks; /* type blocks */
    char *since;              /* RFC 3339; NULL: from the beginning */
    char *expires;            /* RFC 3339; NULL: never */
};

extern const char bh_join_watch_types[];

/*
 * A watch as a JSON object O ({"type": "field"|"blocks", "field", "equals",
 * "blocks", "department", "since", "expires"}; "name" is allowed and left
 * out) into C, its strings owned; on a refusal *KEY names the key at fault
 * and WHY says why. NOW_SINCE: what a missing "since" becomes (NULL: stays
 * missing). Times and departments are checked by bh_jwatches_new.
 */
struct json_t;
int bh_jwatch_conf_parse(struct json_t *o, struct bh_join_watch_conf *c, const char *now_since,
                         const char **key, char *why, size_t n);
void bh_jwatch_conf_free(struct bh_join_watch_conf *c);
const struct bh_conf_variant *bh_join_watch_variant(const char *type);

struct bh_jwatch {
    const char *name;
    int dept;  /* the input's index; -1: any */
    int field; /* the extra field's index; -1: a blocks watch */
    const char *field_name;
    int64_t since, expires; /* event time, ms: since <= at < expires */
};

struct bh_jwatches;

/*
 * Compile CONF (join.watches) for the inputs DEPTS[0..NDEPTS). ERR names the
 * watch and the reason (an unknown department, a bad time, too many fields).
 */
int bh_jwatches_new(struct bh_jwatches **out, const struct bh_variant_list *conf,
                    const char *const *depts, size_t ndepts, char *err, size_t n);
void bh_jwatches_free(struct bh_jwatches *w);
size_t bh_jwatches_count(const struct bh_jwatches *w);
/* The distinct field names watched, in extra-field order (for bh_jplan_set_extras). */
size_t bh_jwatches_fields(const struct bh_jwatches *w, const char *const **names);

/*
 * Every watch the event (department DEPT, block BLOCK, fields F) matches, to
 * FN with the matched value; stops at FN's first nonzero answer and returns it.
 */
int bh_jwatches_match(const struct bh_jwatches *w, size_t dept, const char *block, size_t block_len,
                      const struct bh_jfields *f,
                      int (*fn)(void *ctx, const struct bh_jwatch *w, const char *value,
                                size_t len),
                      void *ctx);

/* --- alerts (schemas/block_alert.avsc) ------------------------------------------- */

struct bh_jalert_event {
    const char *dept;
    const char *id;
    size_t id_len;
    const char *type;
    size_t type_len;
    int64_t at;
};

struct bh_jalert {
    const char *block;
    size_t block_len;
    const char *block_name; /* NULL: unknown */
    const char *unit;       /* NULL: none */
    int rule;               /* 0: WATCH, 1: RULE */
    const char *name;
    const char *detail;
    size_t detail_len;
    const struct bh_jalert_event *events;
    size_t nevents;
    int64_t detected_at;
};

/*
 * The alert's Avro body (after the framing) onto B; its alert_id is made of
 * the watch or rule, the block and the events' departments and ids.
 */
void bh_jalert_encode(struct bh_jbuf *b, const struct bh_jalert *a);

#endif
