/*
 * Rules: what the join looks for across the events of one block over a time
 * window (issue 11), from the config (join.rules), by the departments' own
 * event types, so that no code knows a department:
 *
 *   pair   an event of department A (of types A_TYPES, any when empty) and one
 *          of department B (of B_TYPES) in the same block within WITHIN of each
 *          other (event time): one alert per such pair, when its second event
 *          is counted;
 *   spike  more than MORE_THAN events of DEPARTMENT (of TYPES) in the same
 *          block within WITHIN: one alert when the count goes above, again
 *          only after it fell back to MORE_THAN or fewer.
 *
 * Only counted events reach the rules (a copy never). What a rule remembers
 * of a block (its recent events, at most RULE_KEEP a side, and whether a spike
 * is over) is kept per partition; its changes are written as records of a
 * compacted topic (join.rules_topic) in the join's transactions, and read
 * back when the partition is restored, so that a rule fires once per
 * combination of events, neither again after a restart nor never. Events
 * later than WITHIN behind the newest the rule has seen in the block are not
 * paired or counted.
 */
#ifndef BH_JOIN_RULE_H
#define BH_JOIN_RULE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "join_watch.h"

#define BH_JRULE_KEEP 64 /* events remembered per block, rule and side */

/* One rule of join.rules, as configured. */
struct bh_join_rule_conf {
    char *a_department, *b_department; /* pair */
    struct bh_strlist a_types, b_types;
    char *department; /* spike */
    struct bh_strlist types;
    int64_t more_than;
    int64_t within; /* ms */
};

extern const char bh_join_rule_types[];
const struct bh_conf_variant *bh_join_rule_variant(const char *type);

struct bh_jrules;

int bh_jrules_new(struct bh_jrules **out, const struct bh_variant_list *conf,
                  const char *const *depts, size_t ndepts, int32_t nparts, char *err, size_t n);
void bh_jrules_free(struct bh_jrules *r);
size_t bh_jrules_count(const struct bh_jrules *r);

/* An alert of rule NAME: its events (the one that completed it last) and a detail for people. */
typedef int (*bh_jrule_fire_fn)(void *ctx, const char *name, const struct bh_jalert_event *ev,
                                size_t nev, const char *detail, size_t detail_len);

/*
 * A counted event of department DEPT in BLOCK of partition P: every rule's
 * state of the block is updated and FIRE called for each alert. Returns 0, a
 * negative errno (out of memory), or FIRE's first nonzero answer.
 */
int bh_jrules_apply(struct bh_jrules *r, int32_t p, const char *block, size_t block_len,
                    size_t dept, const char *id, size_t id_len, const char *type, size_t type_len,
                    int64_t at, bh_jrule_fire_fn fire, void *ctx);

/* The states of partition P changed since the last call, to EMIT (key, value). */
int bh_jrules_take_dirty(struct bh_jrules *r, int32_t p,
                         int (*emit)(void *ctx, const char *key, size_t klen, const char *value,
                                     size_t vlen),
                         void *ctx);
/* Forget partition P (before it is restored from the rules topic). */
void bh_jrules_drop(struct bh_jrules *r, int32_t p);
/* A record of the rules topic back into partition P; one of a rule no longer configured, or
 * that does not parse, is skipped (1), else 0; -ENOMEM. */
int bh_jrules_restore(struct bh_jrules *r, int32_t p, const char *key, size_t klen,
                      const char *value, size_t vlen);

#endif
