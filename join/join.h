/*
 * The join stage: reads the department topics and publishes every block's
 * view (docs/feeds.md, "What blockhub publishes"; schemas/block_view.avsc) to the
 * compacted view topic, exactly once, spread over a consumer group.
 *
 * How it works, in one place:
 *   - Inputs: one per department (config join.inputs: name = department,
 *     topic, and the names of the id, type and time fields, so no code knows a
 *     department). Records are single-object Avro keyed by block id; a plan
 *     per writer schema pulls out the three fields.
 *   - Co-partitioning: every input topic, the view topic and the state
 *     changelog have the same partition count, checked at start (the join
 *     refuses to start, naming the topics and their counts) and on every
 *     rebalance (the join stops with an error). With the range assignor a
 *     member gets the same partition numbers of every input, so all of a
 *     block's events reach the one member that holds its state.
 *   - Consumer: librdkafka's high-level consumer, read_committed, no
 *     auto-commit, served from the loop through its queue's I/O event (no
 *     polling timer), in bounded batches per loop turn.
 *   - State: join/join_state.h, one table per assigned partition, restored on
 *     every assignment while the partition's inputs are paused, and dropped on
 *     revoke. The remembered events (for dedup, join.dedup_retention of event
 *     time) live in the local store (join/join_store.h: RocksDB in
 *     join.state_dir, or memory); the compacted state changelog stays the
 *     source of truth: a restore loads the partition's blocks from the store
 *     and reads the changelog (read_committed, to its end) from the store's
 *     checkpoint on, or from its beginning when the store has nothing usable.
 *     An event older than the retention is dead-lettered as too_late.
 *   - Exactly once: a transactional producer (transactional.id = prefix +
 *     instance id). Every commit interval: begin; for every changed block its
 *     view (at most one per block per interval) and its changelog records,
 *     produced in slices per loop turn while input waits; the consumed
 *     offsets (EOS v2: the consumer's group metadata); commit; then, on the
 *     same thread, the commit's store writes (every so often with the
 *     remembered events of the commits since the last such flush, and the
 *     checkpoints: where each partition's changelog records of it ended,
 *     from the delivery reports). The blocking transaction calls run on a
 *     thread of the join's own so the loop (which the adapters share) never
 *     waits on Kafka. An abortable error aborts (its store writes are
 *     dropped) and restores every partition (store and changelog) with the
 *     consumer rewound to the last commit; a fatal one also replaces the
 *     producer. On revoke the open work is committed, with a flush, before
 *     the partitions go (a posted job: the loop does not wait for it).
 *   - Queries: GET /blocks/{id} on admin.listen (join/join_http.c).
 *
 * Inputs that cannot be used (no key, a key on the wrong partition, an
 * unknown schema, a record without the configured fields) go to the
 * dead-letter topic and are skipped.
 */
#ifndef BH_JOIN_H
#define BH_JOIN_H

#include <stddef.h>

#include "config.h"
#include "hub.h"

/* The config tables of the join and admin sections (for hub_conf.c). */
extern const struct bh_conf_key bh_join_conf_keys[];
/* The join.inputs entry table for TYPE ("avro"); NULL for another type. */
const struct bh_conf_variant *bh_join_input_variant(const char *type);
extern const char bh_join_input_types[];

/* The join as a component of the hub (hub/component.h): its settings are the
 * hub config's join section, its name "join". */
extern const struct bh_component_type bh_join_type;

#endif
