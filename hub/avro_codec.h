/*
 * Avro schemas and encoding.
 *
 * Schemas are loaded once from the schemas directory (every *.avsc). Each keeps
 * its original text (avro-c's own JSON output drops defaults, docs and logical
 * types), its Parsing Canonical Form and its CRC-64-AVRO fingerprint, computed
 * here as the Avro specification defines them.
 *
 * Every record blockhub publishes is framed: Avro single-object encoding
 * (0xC3 0x01, 8-byte little-endian fingerprint, body) today; the Confluent wire
 * format (0x00, 4-byte big-endian registry id, body) once a registry assigns ids.
 * The framing is the seam the registry client plugs into.
 *
 * Every call returns 0 or a negative errno.
 */
#ifndef BH_AVRO_CODEC_H
#define BH_AVRO_CODEC_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

struct bh_schema {
    char *name;           /* full name, e.g. "blockhub.fire.FireEvent" */
    char *path;           /* file it came from */
    char *text;           /* the file's text, unchanged */
    char *canonical;      /* Parsing Canonical Form */
    uint64_t fingerprint; /* CRC-64-AVRO of canonical */
    int32_t registry_id;  /* -1 until a schema registry assigns one */
    avro_schema_t schema;
    avro_value_iface_t *iface; /* generic value interface for this schema */
};

struct bh_schemas;

/* Load every *.avsc under DIR (not recursive). A file that does not parse is refused. */
int bh_schemas_load(struct bh_schemas **out, const char *dir, char *errstr, size_t errstr_size);
/* By full name; NULL if absent. */
const struct bh_schema *bh_schemas_find(const struct bh_schemas *set, const char *fullname);
const struct bh_schema *bh_schemas_find_fingerprint(const struct bh_schemas *set, uint64_t fp);
/* The schema a registry gave ID (bh_schemas_set_registry_id); NULL if none. */
const struct bh_schema *bh_schemas_find_registry_id(const struct bh_schemas *set, int32_t id);
/*
 * Record the id a schema registry assigned to FULLNAME (-1 clears it); needed
 * before encoding with BH_FRAMING_CONFLUENT. -ENOENT if no such schema, -EEXIST
 * if another schema has ID. Not synchronised: call before encoders use SET.
 */
int bh_schemas_set_registry_id(struct bh_schemas *set, const char *fullname, int32_t id);
size_t bh_schemas_count(const struct bh_schemas *set);
const struct bh_schema *bh_schemas_at(const struct bh_schemas *set, size_t i);
void bh_schemas_free(struct bh_schemas *set);

/* Parsing Canonical Form of a schema given as JSON text. *out is malloc'd. */
int bh_avro_canonical_form(const char *json, size_t len, char **out, char *errstr,
                           size_t errstr_size);
/*
 * A schema from outside (a registry's answer), parsed by avro-c only once its
 * Parsing Canonical Form is made here: avro-c's own parser leaks on some
 * malformed schemas, and the canonical form it is given is well-formed.
 */
int bh_avro_schema_parse(const char *json, size_t len, avro_schema_t *out, char *errstr,
                         size_t errstr_size);
/* CRC-64-AVRO (the Rabin fingerprint of the Avro specification). */
uint64_t bh_crc64_avro(const void *data, size_t len);

enum bh_framing {
    BH_FRAMING_SINGLE_OBJECT, /* 0xC3 0x01 + 8-byte LE fingerprint */
    BH_FRAMING_CONFLUENT,     /* 0x00 + 4-byte BE registry id (needs registry_id >= 0) */
};

/* A reusable output buffer; one per thread. */
struct bh_encoder;
int bh_encoder_new(struct bh_encoder **out, enum bh_framing framing);
void bh_encoder_free(struct bh_encoder *e);
/*
 * Frame and encode VALUE (a record of schema S). *data points into the
 * encoder's buffer and stays valid until the next call on E.
 */
int bh_encode(struct bh_encoder *e, const struct bh_schema *s, avro_value_t *value,
              const void **data, size_t *len);
/*
 * Reverse of bh_encode for tests and tools: finds the schema by the header.
 * SCHEMA may be NULL. -EBADMSG for short input, a wrong magic byte, or a body
 * that is truncated, malformed or followed by extra bytes; -ENOENT if no schema
 * of SET has the fingerprint or registry id. Free *value_out with avro_value_decref.
 */
int bh_decode(const struct bh_schemas *set, enum bh_framing framing, const void *data, size_t len,
              const struct bh_schema **schema, avro_value_t *value_out);

#endif
