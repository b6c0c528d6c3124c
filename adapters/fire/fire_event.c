#include "fire_event.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "timefmt.h"
#include "utf8.h"

/* --- the body -------------------------------------------------------------- */

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The byte span of each element of the JSON array BODY (already known to be
 * valid JSON), so a dead letter carries the sender's own bytes rather than a
 * re-encoding. Returns the count found; spans past CAP are not stored.
 */
static size_t
element_spans(const char *body, size_t len, struct bh_fire_item *items, size_t cap)
{
    size_t i = 0, n = 0, start = 0;
    int depth = 0, in_string = 0, have_start = 0;
    while (i < len && body[i] != '[')
        i++;
    for (i++; i < len; i++) {
        char c = body[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (is_space(c))
            continue;
        if (depth == 0 && (c == ',' || c == ']')) {
            if (have_start) {
                size_t end = i;
                while (end > start && is_space(body[end - 1]))
                    end--;
                if (n < cap) {
                    items[n].raw = body + start;
                    items[n].raw_len = end - start;
                }
                n++;
            }
            have_start = 0;
            if (c == ']')
                break;
            continue;
        }
        if (!have_start) {
            start = i;
            have_start = 1;
        }
        if (c == '"')
            in_string = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
    }
    return n;
}

/* A parse error as text for a sender: valid UTF-8 whatever jansson quoted. */
static void
parse_error(const json_error_t *e, char *why, size_t why_size)
{
    char text[sizeof(e->text) * 4 + 1];
    bh_utf8_sanitize(text, sizeof(text), e->text, strnlen(e->text, sizeof(e->text)));
    char raw[sizeof(text) + 64];
    snprintf(raw, sizeof(raw), "malformed JSON at line %d column %d: %s", e->line, e->column, text);
    size_t cut = bh_utf8_cut(raw, strlen(raw), why_size ? why_size - 1 : 0);
    if (why_size > 0) {
        memcpy(why, raw, cut);
        why[cut] = '\0';
    }
}

/* An item that parsed leniently but breaks a strict rule: refuse it by itself. */
static void
check_strict(struct bh_fire_item *it)
{
    json_error_t e;
    json_t *v = json_loadb(it->raw, it->raw_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (v != NULL) {
        json_decref(v);
        return;
    }
    if (json_error_code(&e) == json_error_null_character) {
        it->refused = BH_DLQ_INVALID_FIELD;
        snprintf(it->why, sizeof(it->why), "a string holds \\u0000, which no field accepts");
    } else {
        it->refused = BH_DLQ_INVALID_JSON;
        parse_error(&e, it->why, sizeof(it->why));
    }
    it->value = NULL;
}

int
bh_fire_body_parse(const char *body, size_t len, size_t max_items, struct bh_fire_body *out,
                   char *why, size_t why_size)
{
    json_error_t e;
    int lenient = 0;
    memset(out, 0, sizeof(*out));
    if (body == NULL || len == 0) {
        snprintf(why, why_size, "empty body");
        return 400;
    }
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (root == NULL && (json_error_code(&e) == json_error_duplicate_key ||
                         json_error_code(&e) == json_error_null_character)) {
        /* Find out item by item which ones break the rule; the others flow on. */
        root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        lenient = 1;
    }
    if (root == NULL) {
        parse_error(&e, why, why_size);
        return 400;
    }
    size_t n;
    if (json_is_object(root)) {
        n = 1;
    } else if (json_is_array(root)) {
        n = json_array_size(root);
    } else {
        json_decref(root);
        snprintf(why, why_size, "the body must be an event object or an array");
        return 400;
    }
    if (n > max_items) {
        json_decref(root);
        snprintf(why, why_size, "%zu events exceed the limit of %zu per request", n, max_items);
        return 413;
    }
    out->items = calloc(n ? n : 1, sizeof(*out->items));
    if (out->items == NULL) {
        json_decref(root);
        snprintf(why, why_size, "out of memory");
        return 503;
    }
    out->root = root;
    out->n = n;
    if (json_is_object(root)) {
        out->items[0].value = root;
        out->items[0].raw = body;
        out->items[0].raw_len = len;
    } else if (element_spans(body, len, out->items, n) == n) {
        for (size_t i = 0; i < n; i++)
            out->items[i].value = json_array_get(root, i);
    } else {
        /* Not expected for a body jansson accepted: keep the whole body as each item's bytes. */
        for (size_t i = 0; i < n; i++) {
            out->items[i].value = json_array_get(root, i);
            out->items[i].raw = body;
            out->items[i].raw_len = len;
        }
    }
    for (size_t i = 0; i < n; i++) {
        out->items[i].refused = BH_DLQ_REASON_COUNT;
        if (lenient)
            check_strict(&out->items[i]);
    }
    return 0;
}

void
bh_fire_body_free(struct bh_fire_body *b)
{
    json_decref(b->root);
    free(b->items);
    memset(b, 0, sizeof(*b));
}

/* --- validation ------------------------------------------------------------ */

static const char *const categories[] = {"alarm",     "hazard", "inspection",
                                         "rectified", "drill",  NULL};
static const char *const levels[] = {"low", "medium", "high", "critical", NULL};

static int
in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* A string field: 0 ok, 1 absent (or null), -1 wrong type. */
static int
get_string(json_t *o, const char *name, const char **s, size_t *len)
{
    json_t *v = json_object_get(o, name);
    *s = NULL;
    *len = 0;
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_string(v))
        return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static enum bh_dlq_reason
check_string(json_t *o, const char *name, int required, const char **s, size_t *len, char *why,
             size_t n)
{
    int rc = get_string(o, name, s, len);
    if (rc < 0) {
        snprintf(why, n, "%s: must be a string", name);
        return BH_DLQ_INVALID_FIELD;
    }
    if (required && (rc == 1 || *len == 0)) {
        snprintf(why, n, "%s: is required", name);
        return BH_DLQ_MISSING_FIELD;
    }
    if (rc == 0 && memchr(*s, '\0', *len) != NULL) {
        snprintf(why, n, "%s: holds \\u0000", name);
        return BH_DLQ_INVALID_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

/* The sender's text S quoted into a reason: at most 64 bytes, cut between characters. */
#define QUOTE(s, len) (int)bh_utf8_cut((s), (len), 64), (s)

static enum bh_dlq_reason
check_symbol(json_t *o, const char *name, const char *const *allowed, const char **s, char *why,
             size_t n)
{
    size_t len;
    enum bh_dlq_reason r = check_string(o, name, 1, s, &len, why, n);
    if (r != BH_DLQ_REASON_COUNT)
        return r;
    if (!in_list(*s, allowed)) {
        int k = snprintf(why, n, "%s: '%.*s' is not one of", name, QUOTE(*s, len));
        for (size_t i = 0; allowed[i] != NULL && k > 0 && (size_t)k < n; i++)
            k += snprintf(why + k, n - (size_t)k, "%s %s", i ? "," : "", allowed[i]);
        return BH_DLQ_INVALID_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

enum bh_dlq_reason
bh_fire_validate(json_t *o, struct bh_fire_event *ev, char *why, size_t n)
{
    enum bh_dlq_reason r;
    memset(ev, 0, sizeof(*ev));
    if (!json_is_object(o)) {
        snprintf(why, n, "an event must be a JSON object");
        return BH_DLQ_INVALID_JSON;
    }
    if ((r = check_string(o, "id", 1, &ev->id, &ev->id_len, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = check_symbol(o, "category", categories, &ev->category, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "unit", 1, &ev->unit, &ev->unit_len, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "building_id", 0, &ev->building_id, &ev->building_id_len, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "grid_code", 0, &ev->grid_code, &ev->grid_code_len, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_symbol(o, "level", levels, &ev->level, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = check_string(o, "description", 0, &ev->description, &ev->description_len, why, n)) !=
            BH_DLQ_REASON_COUNT)
        return r;

    json_t *loc = json_object_get(o, "location");
    if (loc != NULL && !json_is_null(loc)) {
        json_t *lng = json_object_get(loc, "lng"), *lat = json_object_get(loc, "lat");
        if (!json_is_object(loc) || !json_is_number(lng) || !json_is_number(lat)) {
            snprintf(why, n, "location: must be {\"lng\": number, \"lat\": number}");
            return BH_DLQ_INVALID_FIELD;
        }
        ev->lng = json_number_value(lng);
        ev->lat = json_number_value(lat);
        if (!isfinite(ev->lng) || !isfinite(ev->lat) || fabs(ev->lng) > 180 || fabs(ev->lat) > 90) {
            snprintf(why, n, "location: (%g, %g) is not a longitude/latitude", ev->lng, ev->lat);
            return BH_DLQ_INVALID_FIELD;
        }
        ev->has_location = 1;
    }

    const char *t;
    size_t tlen;
    if ((r = check_string(o, "occurred_at", 1, &t, &tlen, why, n)) != BH_DLQ_REASON_COUNT)
        return r;
    if (bh_parse_rfc3339(t, tlen, &ev->occurred_at, &ev->offset_min) < 0) {
        snprintf(why, n, "occurred_at: '%.*s' is not an RFC 3339 time with offset", QUOTE(t, tlen));
        return BH_DLQ_INVALID_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

/* --- the record ------------------------------------------------------------ */

int
bh_fire_fill(avro_value_t *r, const struct bh_fire_event *ev, const char *block_id, int64_t now)
{
    avro_value_t loc;
    avro_value_reset(r);
    int rc = bh_rec_string(r, "event_id", ev->id, ev->id_len);
    rc = rc ?: bh_rec_cstring(r, "block_id", block_id);
    rc = rc ?: bh_rec_enum(r, "category", ev->category);
    rc = rc ?: bh_rec_string(r, "unit", ev->unit, ev->unit_len);
    rc = rc ?: bh_rec_opt_string(r, "building_id", ev->building_id, ev->building_id_len);
    rc = rc ?: bh_rec_opt_string(r, "grid_code", ev->grid_code, ev->grid_code_len);
    if (ev->has_location) {
        rc = rc ?: bh_rec_sub(r, "location", &loc);
        rc = rc ?: bh_rec_double(&loc, "lng", ev->lng);
        rc = rc ?: bh_rec_double(&loc, "lat", ev->lat);
    } else {
        rc = rc ?: bh_rec_null(r, "location");
    }
    rc = rc ?: bh_rec_enum(r, "level", ev->level);
    rc = rc ?: bh_rec_opt_string(r, "description", ev->description, ev->description_len);
    rc = rc ?: bh_rec_long(r, "occurred_at", ev->occurred_at);
    rc = rc ?: bh_rec_int(r, "occurred_offset_min", ev->offset_min);
    rc = rc ?: bh_rec_long(r, "received_at", now);
    rc = rc ?: bh_rec_null_unset(r); /* optional fields of a later schema version */
    return rc;
}
