/*
 * blockhub.market.MarketEvent: the validated row, and the writer of its Avro
 * record.
 *
 * The writer puts the Avro body down directly (varints, strings, the decimal,
 * the point) in the order of the schema's fields, found by name when it is
 * made: a schema with a field it does not know, or of another shape, is
 * refused at start. At start it also encodes probe events and checks them
 * against avro-c (the framing header bh_encode writes, and a decode/re-encode
 * round trip), so the bytes are the ones the generic encoder would give, at a
 * fraction of its cost per row.
 */
#ifndef BH_MARKET_EVENT_H
#define BH_MARKET_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "avro_codec.h"

struct bh_text {
    const char *s; /* NULL: absent (optional fields) */
    size_t len;
};

struct bh_market_event {
    struct bh_text record_id, block_id, uscc, business_name, event_type, outcome;
    struct bh_text address, grid_code, source_file;
    int has_fine, has_location;
    int64_t fine_fen;
    double lon, lat;
    int64_t occurred_at; /* UTC epoch ms */
    int64_t source_row, source_line;
};

struct bh_market_writer;

/* For schema S of SET, framed as ENC frames it. 0 or a negative errno with ERRSTR. */
int bh_market_writer_new(struct bh_market_writer **out, const struct bh_schemas *set,
                         const struct bh_schema *s, struct bh_encoder *enc, char *errstr,
                         size_t errstr_size);
void bh_market_writer_free(struct bh_market_writer *w);

/* The framed record; *DATA stays valid until the next call. 0 or -ENOMEM. */
int bh_market_writer_encode(struct bh_market_writer *w, const struct bh_market_event *ev,
                            const void **data, size_t *len);

#endif
