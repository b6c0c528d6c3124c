/*
 * What blockhub's fuzz targets share: the schemas and the block map of the
 * source tree, loaded once per process, and the checks every oracle makes.
 *
 * A check that fails prints what it saw and aborts, so libFuzzer keeps the
 * input as a crash and the corpus driver (driver.c) fails its test.
 *
 * The source tree is BH_SOURCE_DIR when set (ctest sets it), else the tree
 * the target was built from.
 */
#ifndef BH_FUZZ_COMMON_H
#define BH_FUZZ_COMMON_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "avro_codec.h"
#include "blockmap.h"
#include "dlq.h"

void bh_fuzz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

const char *bh_fuzz_source_dir(void);
/* The schemas of schemas/ and the block map of tests/data/world/ (abort if they do not load). */
const struct bh_schemas *bh_fuzz_schemas(void);
const struct bh_schema *bh_fuzz_schema(const char *fullname);
const struct bh_blockmap *bh_fuzz_blocks(void);
/* One encoder per process, single-object framing. */
struct bh_encoder *bh_fuzz_encoder(void);

/* WHAT is valid UTF-8 (a NUL byte counts as a character). */
void bh_fuzz_check_utf8(const char *what, const char *s, size_t len);
/* A reason given to a sender or a dead letter: not empty, valid UTF-8. */
void bh_fuzz_check_why(const char *what, const char *why);
/* A rejection: a reason code of the closed list and a reason text. */
void bh_fuzz_check_reject(const char *what, enum bh_dlq_reason r, const char *why);

/*
 * A framed record as blockhub publishes it: it decodes with avro-c against
 * the schemas, as schema WANT, with nothing left over, and every string in
 * it (map keys too) is valid UTF-8. The decoded value goes to *OUT when OUT
 * is not NULL (free it with avro_value_decref), else it is freed here.
 */
void bh_fuzz_check_record(const char *what, const void *data, size_t len,
                          const struct bh_schema *want, avro_value_t *out);
/* Every string in V (and under it) is valid UTF-8. */
void bh_fuzz_check_value_utf8(const char *what, avro_value_t *v);
/* The string field NAME of record REC (the non-null branch of a union), or NULL. */
const char *bh_fuzz_get_string(avro_value_t *rec, const char *name, size_t *len);

/*
 * With BH_FUZZ_EMIT_DIR set, DATA is written there as a file of its own
 * (named by a hash of its bytes): the records the adapters' targets encode
 * become seeds for the join's target.
 */
void bh_fuzz_emit(const void *data, size_t len);

/* Whether the environment variable NAME is set to something other than "" or "0". */
int bh_fuzz_flag(const char *name);

/*
 * Whether BH_FUZZ_KNOWN (a comma-separated list) names the known bug BUG: a
 * long run can then step around a bug already reported and look for others.
 * The suite never sets it.
 */
int bh_fuzz_known(const char *bug);

#endif
