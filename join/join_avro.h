/*
 * Avro binary for the join stage, without avro-c's generic values on the hot
 * path (they cost microseconds a record; the join reads and writes hundreds of
 * thousands a second).
 *
 * - A field plan (struct bh_jplan) pulls the event id, the type and the event
 *   time out of a department record by field name, skipping the fields before
 *   them and not reading the ones after. It is compiled once per writer schema
 *   (found by the single-object fingerprint), so no code knows a department.
 * - A growable output buffer (struct bh_jbuf) and a reader (struct bh_jreader)
 *   for the join's own records (the view and its changelog), whose layouts are
 *   the .avsc files in schemas/; the unit tests decode what is written here
 *   with avro-c against those files.
 * - The view layout (struct bh_jview_layout): the BlockView schema's fields in
 *   their order, department records mapped to configured departments by field
 *   name.
 *
 * Every call returns 0 or a negative errno.
 */
#ifndef BH_JOIN_AVRO_H
#define BH_JOIN_AVRO_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#define BH_SINGLE_OBJECT_HEADER 10 /* 0xC3 0x01 + 8-byte little-endian fingerprint */
#define BH_CONFLUENT_HEADER     5  /* 0x00 + 4-byte big-endian registry id */

/* --- output ---------------------------------------------------------------- */

struct bh_jbuf {
    uint8_t *p;
    size_t len;
    size_t cap;
    int oom; /* set once an allocation failed; everything after is dropped */
};

void bh_jbuf_reset(struct bh_jbuf *b);
void bh_jbuf_free(struct bh_jbuf *b);
/* Room for MORE bytes; 0, or -ENOMEM (and b->oom set). */
int bh_jbuf_reserve(struct bh_jbuf *b, size_t more);
/* The single-object header for a schema of fingerprint FP. */
void bh_jbuf_header(struct bh_jbuf *b, uint64_t fp);
/* The Confluent wire-format header for registry id ID. */
void bh_jbuf_confluent_header(struct bh_jbuf *b, int32_t id);
void bh_jbuf_string(struct bh_jbuf *b, const void *s, size_t len);
void bh_jbuf_raw(struct bh_jbuf *b, const void *s, size_t len);

/* A long, zigzag varint (inline: the changelog writes several per event). */
static inline void
bh_jbuf_long(struct bh_jbuf *b, int64_t v)
{
    if (b->cap - b->len < 10 && bh_jbuf_reserve(b, 10) < 0)
        return;
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    uint8_t *p = b->p + b->len;
    while (z >= 0x80) {
        *p++ = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    *p++ = (uint8_t)z;
    b->len = (size_t)(p - b->p);
}

/* --- input ----------------------------------------------------------------- */

struct bh_jreader {
    const uint8_t *p;
    const uint8_t *end;
    int bad; /* set on truncated or malformed input */
};

int64_t bh_jread_long(struct bh_jreader *r);
/* A string or bytes: *S points into the input (not NUL-terminated). */
void bh_jread_string(struct bh_jreader *r, const char **s, size_t *len);
/* The fingerprint of a single-object header; -EBADMSG if DATA has none. */
int bh_jread_header(const void *data, size_t len, uint64_t *fp);
/*
 * The writer schema a department record names: single-object (*FP, *ID = -1)
 * or the Confluent wire format (*ID). Returns the header's length, or -EBADMSG.
 */
int bh_jread_frame(const void *data, size_t len, uint64_t *fp, int32_t *id);

/* --- department records ---------------------------------------------------- */

struct bh_jplan;

#define BH_JPLAN_EXTRAS 16 /* fields a plan extracts besides the id, type and time */

/* What a plan extracts from one record. Strings point into the input. */
struct bh_jfields {
    const char *id;
    size_t id_len;
    const char *type; /* the symbol's name for an enum */
    size_t type_len;
    int32_t type_symbol; /* the enum symbol's index, -1 for a string */
    int64_t at;          /* event time, ms */
    /* The fields asked for with bh_jplan_set_extras, as text; NULL: absent or null. */
    const char *extra[BH_JPLAN_EXTRAS];
    size_t extra_len[BH_JPLAN_EXTRAS];
};

/*
 * Compile the plan for RECORD (a record schema): ID_FIELD must be a string,
 * TYPE_FIELD a string or an enum, TIME_FIELD a long. ERRSTR says which field is
 * missing or of the wrong type.
 */
int bh_jplan_new(struct bh_jplan **out, avro_schema_t record, const char *id_field,
                 const char *type_field, const char *time_field, char *errstr, size_t errstr_size);
/*
 * The same, resolved against READER (the reader schema's JSON text, or NULL):
 * a field the writer lacks is taken from the reader's default for it (a
 * reader that added the field with a default reads the older records). The
 * writer's other fields are skipped as they come, whatever the reader has.
 */
int bh_jplan_new_resolved(struct bh_jplan **out, avro_schema_t record, const char *reader,
                          const char *id_field, const char *type_field, const char *time_field,
                          char *errstr, size_t errstr_size);
void bh_jplan_free(struct bh_jplan *p);
/*
 * Also extract the fields NAMES[0..N) of RECORD (the plan's schema; at most
 * BH_JPLAN_EXTRAS in all, in the order asked) into extra[i] as text: a string, a union of null and
 * a string (NULL when null), or an enum (its symbol). A field RECORD lacks, or of another type, is
 * always NULL. -E2BIG for too many, -ENOMEM.
 */
int bh_jplan_set_extras(struct bh_jplan *p, avro_schema_t record, const char *const *names,
                        size_t n);
/* Number of enum symbols of the type field (0 for a string type). */
size_t bh_jplan_symbols(const struct bh_jplan *p);
const char *bh_jplan_symbol(const struct bh_jplan *p, size_t i);
/*
 * Extract from an Avro body (after the framing). -EBADMSG on malformed input,
 * an id or a string type that is not valid UTF-8 included.
 */
int bh_jplan_read(const struct bh_jplan *p, const void *body, size_t len, struct bh_jfields *out);

/* --- the view layout ------------------------------------------------------- */

struct bh_jview_layout;

/*
 * From the BlockView schema: block_id (string), block_name (["null","string"]),
 * updated_at (long), window_ms (long, optional), and any number of department
 * fields, each a record of total (long), by_type (map of long), window_total
 * (long), last_event_id (["null","string"]) and last_event_at (["null","long"]).
 * A department field is filled from DEPTS[i] when its name is DEPTS[i]; one
 * with no configured department is written empty. A configured department
 * without a field in the schema is refused.
 */
int bh_jview_layout_new(struct bh_jview_layout **out, avro_schema_t view, const char *const *depts,
                        size_t ndepts, char *errstr, size_t errstr_size);
void bh_jview_layout_free(struct bh_jview_layout *l);
/*
 * The department fields of the view in schema order: NAMES[i] (valid while the
 * schema lives) filled from configured department DEPTS[i] (-1: none). Returns
 * how many there are (only CAP are stored).
 */
size_t bh_jview_layout_depts(const struct bh_jview_layout *l, const char **names, int *depts,
                             size_t cap);

struct bh_jview_type {
    const char *name;
    size_t len;
    int64_t count;
};

/* One department's part of a view. */
struct bh_jview_dept {
    int64_t total;
    int64_t window_total;
    const struct bh_jview_type *types;
    size_t ntypes;
    const char *last_id; /* NULL: no event yet */
    size_t last_id_len;
    int64_t last_at;
};

struct bh_jview {
    const char *block_id;
    size_t block_id_len;
    const char *block_name; /* NULL when the block map does not know the block */
    int64_t updated_at;
    int64_t window_ms;
    const struct bh_jview_dept *depts; /* indexed like the layout's DEPTS */
};

/* Append the view's Avro body (no header) to B. */
void bh_jview_encode(const struct bh_jview_layout *l, const struct bh_jview *v, struct bh_jbuf *b);

#endif
