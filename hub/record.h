/*
 * Filling Avro records by field name through the avro_value_t interface.
 * Each returns 0 or a negative errno (-ENOENT for a field the schema lacks).
 * Strings are given with their length, without a NUL: the helpers add the
 * trailing NUL that avro-c counts in a string's size.
 */
#ifndef BH_RECORD_H
#define BH_RECORD_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int bh_rec_string(avro_value_t *rec, const char *field, const char *s, size_t len);
int bh_rec_cstring(avro_value_t *rec, const char *field, const char *s);
/* A ["null", "string"] union: S == NULL sets null. */
int bh_rec_opt_string(avro_value_t *rec, const char *field, const char *s, size_t len);
int bh_rec_long(avro_value_t *rec, const char *field, int64_t v);
int bh_rec_opt_long(avro_value_t *rec, const char *field, bool present, int64_t v);
int bh_rec_int(avro_value_t *rec, const char *field, int32_t v);
int bh_rec_double(avro_value_t *rec, const char *field, double v);
int bh_rec_bool(avro_value_t *rec, const char *field, bool v);
int bh_rec_bytes(avro_value_t *rec, const char *field, const void *p, size_t len);
/* An enum field set by symbol name; -EINVAL if not a symbol. */
int bh_rec_enum(avro_value_t *rec, const char *field, const char *symbol);
/* The record inside a field (or inside the non-null branch of a ["null", record] union). */
int bh_rec_sub(avro_value_t *rec, const char *field, avro_value_t *sub);
/* A ["null", ...] union set to null. */
int bh_rec_null(avro_value_t *rec, const char *field);
/*
 * Every field of REC that a writer does not know: each ["null", ...] union no
 * branch of which is chosen is set to null, its usual default. A later version
 * of a schema that adds such an optional field is then written as it should
 * be by a writer that fills only the fields it knows.
 */
int bh_rec_null_unset(avro_value_t *rec);

#endif
