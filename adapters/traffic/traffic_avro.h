/*
 * A blockhub.traffic.TrafficEvent record (schemas/traffic_event.avsc) in Avro
 * binary encoding, written straight from the event: avro-c's generic writer
 * walks a value twice (its size, then its bytes) through virtual calls, and
 * cost more than parsing the line. The field order and types are those of the
 * schema; bh_traffic_avro_check proves at start that the bytes are the ones
 * avro-c writes for the loaded schema, and takes the framing (single-object
 * or Confluent header) from bh_encode, so framing stays the hub's business.
 */
#ifndef BH_TRAFFIC_AVRO_H
#define BH_TRAFFIC_AVRO_H

#include <stddef.h>
#include <stdint.h>

#include "avro_codec.h"
#include "traffic_event.h"

/* What the record carries besides the event. */
struct bh_traffic_extra {
    const char *block_id;
    int64_t received_at;
    const char *peer;
    const char *tls_subject; /* NULL: none */
};

/* Most bytes the body of EV's record can take. */
size_t bh_traffic_avro_bound(const struct bh_traffic_event *ev, const struct bh_traffic_extra *x);

/* Write the body into OUT (bh_traffic_avro_bound bytes at least); returns its length. */
size_t bh_traffic_avro_write(uint8_t *out, const struct bh_traffic_event *ev,
                             const struct bh_traffic_extra *x);

/*
 * Encode sample records both ways (every event type, optional fields null and
 * set) and compare: 0 when the bodies agree, with the framing header that
 * bh_encode puts before a body in FRAME[0..*FRAME_LEN) (at most 16 bytes);
 * -EPROTO with a message in ERRSTR when they differ.
 */
int bh_traffic_avro_check(const struct bh_schema *s, struct bh_encoder *enc, uint8_t *frame,
                          size_t *frame_len, char *errstr, size_t errstr_size);

#endif
