/*
 * What the join takes from a schema registry: the answer to GET
 * /schemas/ids/{id} (a JSON body whose "schema" is a writer schema's text),
 * then a record framed for it. The schema goes through bh_avro_schema_parse,
 * as in the join. The input is the answer, a NUL byte, and the
 * record. The writer schema is parsed, a field plan is compiled for each
 * department of the example config, resolved against the hub's own schema of
 * the same name (its defaults fill fields the writer lacks), and the record
 * is read with it after its framing (bh_jread_frame).
 *
 * Oracle (besides no crash, leak or undefined behaviour): a plan that reads
 * a record gives an id and a type of valid UTF-8, of the lengths the body
 * holds or the reader's defaults; a frame's header is 5 or 10 bytes.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "join_avro.h"

#define NDEPTS 3

static const char *const id_fields[NDEPTS] = {"record_id", "event_id", "event_id"};
static const char *const type_fields[NDEPTS] = {"event_type", "type", "category"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct bh_schemas *set = bh_fuzz_schemas();
    const uint8_t *nul = memchr(data, 0, size);
    size_t alen = nul != NULL ? (size_t)(nul - data) : size;
    const uint8_t *rec = nul != NULL ? nul + 1 : data + size;
    size_t rlen = size - (size_t)(rec - data);

    json_t *answer = json_loadb((const char *)data, alen, 0, NULL);
    const char *text = json_string_value(json_object_get(answer, "schema"));
    size_t tlen = json_string_length(json_object_get(answer, "schema"));
    avro_schema_t writer = NULL;
    char perr[300];
    if (text == NULL || bh_avro_schema_parse(text, tlen, &writer, perr, sizeof(perr)) < 0) {
        json_decref(answer);
        return 0;
    }
    const struct bh_schema *reader = NULL;
    if (is_avro_record(writer)) {
        char full[512];
        const char *ns = avro_schema_namespace(writer);
        snprintf(full, sizeof(full), "%s%s%s", ns ? ns : "", ns ? "." : "",
                 avro_schema_name(writer));
        reader = bh_schemas_find(set, full);
    }
    uint64_t fp;
    int32_t id;
    int hdr = bh_jread_frame(rec, rlen, &fp, &id);
    if (hdr >= 0 && hdr != BH_CONFLUENT_HEADER && hdr != BH_SINGLE_OBJECT_HEADER)
        bh_fuzz_fail("a frame header of %d bytes", hdr);
    for (int d = 0; d < NDEPTS; d++) {
        struct bh_jplan *plan = NULL;
        char err[300];
        if (bh_jplan_new_resolved(&plan, writer, reader != NULL ? reader->text : NULL, id_fields[d],
                                  type_fields[d], "occurred_at", err, sizeof(err)) < 0) {
            bh_fuzz_check_why("a plan refused", err);
            continue;
        }
        struct bh_jfields f;
        const uint8_t *body = hdr >= 0 ? rec + hdr : rec;
        size_t blen = hdr >= 0 ? rlen - (size_t)hdr : rlen;
        if (bh_jplan_read(plan, body, blen, &f) == 0) {
            bh_fuzz_check_utf8("the id", f.id, f.id_len);
            if (f.type_symbol < 0)
                bh_fuzz_check_utf8("the type", f.type, f.type_len);
        }
        bh_jplan_free(plan);
    }
    avro_schema_decref(writer);
    json_decref(answer);
    return 0;
}
