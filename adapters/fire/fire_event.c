#include "fire_event.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_write.h"
#include "json_scan.h"
#include "record.h"
#include "timefmt.h"
#include "utf8.h"

static const char *const field_names[BH_FIRE_NSTR] = {
    "id", "category", "unit", "building_id", "grid_code", "level", "description", "occurred_at"};

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Room for N items in B. */
static int
items_room(struct bh_fire_body *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 16;
    while (cap < n)
        cap *= 2;
    struct bh_fire_item *items = realloc(b->items, cap * sizeof(*items));
    if (items == NULL)
        return -ENOMEM;
    b->items = items;
    b->cap = cap;
    return 0;
}

void
bh_fire_body_clear(struct bh_fire_body *b)
{
    json_decref(b->root);
    b->root = NULL;
    b->n = 0;
}

void
bh_fire_body_free(struct bh_fire_body *b)
{
    bh_fire_body_clear(b);
    free(b->items);
    free(b->arena);
    if (b->c_locale)
        freelocale(b->c_locale);
    memset(b, 0, sizeof(*b));
}

/* --- the body, by the scanner ------------------------------------------------ */

/*
 * Every function here returns 0, or -1 for "not taken on here": the body then
 * goes to jansson, which answers for it (an error of the body, an item
 * refused) exactly as it always has. So the scanner only ever accepts what
 * jansson (JSON_REJECT_DUPLICATES, no JSON_ALLOW_NUL) accepts, with the same
 * values; it may hand over more than it needs to.
 */
#define SCAN_DEPTH 16 /* deeper nesting goes to jansson */
#define SCAN_KEYS  32 /* so do objects with more members (the duplicate check is quadratic) */

struct scan {
    const unsigned char *p, *end;
    struct bh_fire_body *b;
    size_t body_len;
    char *arena; /* NULL until the first string with an escape */
    size_t alen;
};

struct key {
    const unsigned char *s;
    size_t len;
};

static inline void
ws(struct scan *s)
{
    while (s->p < s->end && is_space((char)*s->p))
        s->p++;
}

static inline bool
digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * The rest of a string from Q on (START is past its '"'), decoded into the
 * arena: the decoded text is never longer than its JSON, so an arena as long
 * as the body holds every string of it.
 */
static int
string_escaped(struct scan *s, const unsigned char *start, const unsigned char *q, const char **v,
               size_t *len)
{
    const unsigned char *end = s->end;
    if (s->arena == NULL) {
        if (s->b->arena_cap < s->body_len) {
            char *a = realloc(s->b->arena, s->body_len);
            if (a == NULL)
                return -1;
            s->b->arena = a;
            s->b->arena_cap = s->body_len;
        }
        s->arena = s->b->arena;
    }
    char *out = s->arena + s->alen;
    size_t n = (size_t)(q - start);
    memcpy(out, start, n);
    for (;;) {
        if (q >= end)
            return -1;
        unsigned char c = *q;
        if (c == '"')
            break;
        if (c == '\\') {
            uint32_t cp;
            if (end - q < 2)
                return -1;
            int l = bh_json_escape(q, end, &cp);
            if (l < 0)
                return -1; /* \u0000 too: jansson refuses the item */
            n += bh_utf8_put(out + n, cp);
            q += l;
        } else if (c >= 0x80) {
            size_t k = bh_utf8_seq((const char *)q, (size_t)(end - q));
            if (k == 0)
                return -1;
            memcpy(out + n, q, k);
            n += k;
            q += k;
        } else if (c < 0x20) {
            return -1;
        } else {
            out[n++] = (char)c;
            q++;
        }
    }
    s->alen += n;
    if (v != NULL) {
        *v = out;
        *len = n;
    }
    s->p = q + 1;
    return 0;
}

/* At a '"': checks the string and moves past it; *V / *LEN get its value. Keys take no escapes. */
static int
scan_string(struct scan *s, const char **v, size_t *len, bool escapes)
{
    const unsigned char *start = s->p + 1, *q = start, *end = s->end;
    for (;;) {
        if (q >= end)
            return -1;
        unsigned char c = *q;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            q++;
            continue;
        }
        if (c == '"')
            break;
        if (c >= 0x80) {
            size_t n = bh_utf8_seq((const char *)q, (size_t)(end - q));
            if (n == 0)
                return -1;
            q += n;
            continue;
        }
        if (c == '\\' && escapes)
            return string_escaped(s, start, q, v, len);
        return -1;
    }
    if (v != NULL) {
        *v = (const char *)start;
        *len = (size_t)(q - start);
    }
    s->p = q + 1;
    return 0;
}

/* 10^0 ... 10^22: the powers of ten a double holds exactly. */
static const double exact_tens[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * At a number: checks it and moves past it; with VALUE, *VALUE gets what
 * jansson's json_number_value would: an integer converted from int64, a real
 * as strtod reads it. Integers past 18 digits and reals that might overflow
 * (jansson refuses both when out of range) are handed over.
 */
static int
scan_number(struct scan *s, double *value)
{
    const unsigned char *start = s->p, *q = start, *end = s->end;
    uint64_t mantissa = 0;
    int digits = 0, int_digits = 0;
    long exponent = 0, explicit_exp = 0;
    bool exact = true, negative = false, integer = true;

    if (*q == '-') {
        negative = true;
        q++;
    }
    if (q >= end || !digit(*q))
        return -1;
    if (*q == '0') {
        if (++q < end && digit(*q))
            return -1;
    } else {
        for (; q < end && digit(*q); q++, int_digits++) {
            if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*q - '0');
                digits++;
            } else {
                exact = false;
            }
        }
    }
    if (q < end && *q == '.') {
        integer = false;
        if (++q >= end || !digit(*q))
            return -1;
        for (; q < end && digit(*q); q++) {
            if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*q - '0');
                digits += mantissa != 0; /* leading zeros are not significant */
                exponent--;
            } else if (*q != '0') {
                exact = false;
            }
        }
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        bool minus = false;
        integer = false;
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            minus = *q++ == '-';
        if (q >= end || !digit(*q))
            return -1;
        for (; q < end && digit(*q); q++)
            if (explicit_exp < 100000)
                explicit_exp = explicit_exp * 10 + (*q - '0');
        if (minus)
            explicit_exp = -explicit_exp;
        exponent += explicit_exp;
    }
    s->p = q;
    if (integer) {
        if (int_digits > 18)
            return -1; /* perhaps past int64: jansson's "too big integer" */
        if (value != NULL) {
            int64_t v = (int64_t)mantissa;
            *value = (double)(negative ? -v : v); /* -0 is the integer 0 */
        }
        return 0;
    }
    if (int_digits + explicit_exp > 300)
        return -1; /* perhaps an overflow: jansson's "real number overflow" */
    if (value == NULL)
        return 0;
    if (!exact || mantissa > (UINT64_C(1) << 53) || exponent < -22 || exponent > 22) {
        if (exact && mantissa == 0) {
            *value = negative ? -0.0 : 0.0;
            return 0;
        }
        char copy[64];
        size_t len = (size_t)(q - start);
        if (len >= sizeof(copy))
            return -1;
        if (!s->b->c_locale)
            s->b->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (!s->b->c_locale)
            return -1;
        memcpy(copy, start, len);
        copy[len] = '\0';
        *value = strtod_l(copy, NULL, s->b->c_locale);
        return 0;
    }
    /* Both exact: one correctly rounded operation, as strtod rounds. */
    double d = (double)mantissa;
    d = exponent < 0 ? d / exact_tens[-exponent] : d * exact_tens[exponent];
    *value = negative ? -d : d;
    return 0;
}

static int
scan_literal(struct scan *s)
{
    const char *word = *s->p == 't' ? "true" : *s->p == 'f' ? "false" : "null";
    size_t len = strlen(word);
    if ((size_t)(s->end - s->p) < len || memcmp(s->p, word, len) != 0)
        return -1;
    s->p += len;
    return 0;
}

/* At a member: its key (not seen before in KEYS), the ':' and the space before the value. */
static int
scan_key(struct scan *s, struct key *keys, size_t *nkeys, const char **k, size_t *klen)
{
    if (s->p >= s->end || *s->p != '"' || *nkeys == SCAN_KEYS || scan_string(s, k, klen, false) < 0)
        return -1;
    for (size_t i = 0; i < *nkeys; i++)
        if (keys[i].len == *klen && memcmp(keys[i].s, *k, *klen) == 0)
            return -1; /* a duplicate: jansson refuses the item */
    keys[*nkeys].s = (const unsigned char *)*k;
    keys[*nkeys].len = *klen;
    ++*nkeys;
    ws(s);
    if (s->p >= s->end || *s->p != ':')
        return -1;
    s->p++;
    ws(s);
    return s->p < s->end ? 0 : -1;
}

/* After a member or an element: 1 at the next one, 0 past CLOSE. */
static int
scan_next(struct scan *s, char close)
{
    ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p == ',') {
        s->p++;
        ws(s);
        return s->p < s->end ? 1 : -1;
    }
    if (*s->p == close) {
        s->p++;
        return 0;
    }
    return -1;
}

static int scan_value(struct scan *s, int depth);

/* At a '{' or a '[' (nested DEPTH deep): the whole object or array. */
static int
scan_container(struct scan *s, int depth)
{
    struct key keys[SCAN_KEYS];
    size_t nkeys = 0;
    const char *k;
    size_t klen;
    char close = *s->p == '{' ? '}' : ']';
    int rc;
    if (depth >= SCAN_DEPTH)
        return -1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    do {
        if (close == '}' && scan_key(s, keys, &nkeys, &k, &klen) < 0)
            return -1;
        if (scan_value(s, depth + 1) < 0)
            return -1;
    } while ((rc = scan_next(s, close)) == 1);
    return rc;
}

/* At a value (S->p before the end): checks it and moves past it. */
static int
scan_value(struct scan *s, int depth)
{
    if (s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '{':
    case '[':
        return scan_container(s, depth);
    case '"':
        return scan_string(s, NULL, NULL, true);
    case 't':
    case 'f':
    case 'n':
        return scan_literal(s);
    default:
        return *s->p == '-' || digit(*s->p) ? scan_number(s, NULL) : -1;
    }
}

/* A string member: PRESENT with its value, ABSENT for null, OTHER for another type. */
static int
scan_field(struct scan *s, struct bh_fire_fields *f, int k)
{
    if (*s->p == '"') {
        f->str[k].kind = BH_FIRE_PRESENT;
        return scan_string(s, &f->str[k].s, &f->str[k].len, true);
    }
    f->str[k].kind = *s->p == 'n' ? BH_FIRE_ABSENT : BH_FIRE_OTHER;
    return scan_value(s, 1);
}

/* "lng" or "lat" of the location: a number, or something else. */
static int
scan_coordinate(struct scan *s, uint8_t *kind, double *value)
{
    if (*s->p == '-' || digit(*s->p)) {
        *kind = BH_FIRE_PRESENT;
        return scan_number(s, value);
    }
    *kind = BH_FIRE_OTHER;
    return scan_value(s, 2);
}

static int
scan_location(struct scan *s, struct bh_fire_fields *f)
{
    struct key keys[SCAN_KEYS];
    size_t nkeys = 0;
    const char *k;
    size_t klen;
    int rc;
    if (*s->p != '{') {
        f->location = *s->p == 'n' ? BH_FIRE_ABSENT : BH_FIRE_OTHER;
        return scan_value(s, 1);
    }
    f->location = BH_FIRE_PRESENT;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    do {
        if (scan_key(s, keys, &nkeys, &k, &klen) < 0)
            return -1;
        if (klen == 3 && memcmp(k, "lng", 3) == 0)
            rc = scan_coordinate(s, &f->lng, &f->lng_value);
        else if (klen == 3 && memcmp(k, "lat", 3) == 0)
            rc = scan_coordinate(s, &f->lat, &f->lat_value);
        else
            rc = scan_value(s, 2);
        if (rc < 0)
            return -1;
    } while ((rc = scan_next(s, '}')) == 1);
    return rc;
}

/* Which field a key names: a string field, BH_FIRE_NSTR for location, -1 for none. */
static int
field_of(const char *k, size_t len)
{
    for (int i = 0; i < BH_FIRE_NSTR; i++)
        if (len == strlen(field_names[i]) && memcmp(k, field_names[i], len) == 0)
            return i;
    return len == 8 && memcmp(k, "location", 8) == 0 ? BH_FIRE_NSTR : -1;
}

/* At an item's '{': its fields. */
static int
scan_event(struct scan *s, struct bh_fire_fields *f)
{
    struct key keys[SCAN_KEYS];
    size_t nkeys = 0;
    const char *k;
    size_t klen;
    int rc;
    memset(f, 0, sizeof(*f));
    f->is_object = 1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    do {
        if (scan_key(s, keys, &nkeys, &k, &klen) < 0)
            return -1;
        int field = field_of(k, klen);
        if (field < 0)
            rc = scan_value(s, 1);
        else if (field == BH_FIRE_NSTR)
            rc = scan_location(s, f);
        else
            rc = scan_field(s, f, field);
        if (rc < 0)
            return -1;
    } while ((rc = scan_next(s, '}')) == 1);
    return rc;
}

/* At an item: what it is, and its bytes. */
static int
scan_item(struct scan *s, struct bh_fire_item *it)
{
    it->raw = (const char *)s->p;
    it->refused = BH_DLQ_REASON_COUNT;
    int rc;
    if (*s->p == '{') {
        rc = scan_event(s, &it->f);
    } else {
        memset(&it->f, 0, sizeof(it->f)); /* not an object */
        rc = scan_value(s, 1);
    }
    it->raw_len = (size_t)((const char *)s->p - it->raw);
    return rc;
}

static int
scan_body(struct scan *s, size_t max_items)
{
    struct bh_fire_body *b = s->b;
    const char *body = (const char *)s->p;
    int rc = 0;
    ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p == '{') {
        if (items_room(b, 1) < 0 || scan_item(s, &b->items[0]) < 0)
            return -1;
        b->items[0].raw = body; /* a single object's bytes are the whole body */
        b->items[0].raw_len = s->body_len;
        b->n = 1;
    } else if (*s->p == '[') {
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == ']')
            s->p++;
        else
            do {
                if (s->p >= s->end || b->n == max_items || items_room(b, b->n + 1) < 0 ||
                    scan_item(s, &b->items[b->n]) < 0)
                    return -1;
                b->n++;
            } while ((rc = scan_next(s, ']')) == 1);
        if (rc < 0)
            return -1;
    } else {
        return -1;
    }
    ws(s);
    return s->p == s->end ? 0 : -1;
}

int
bh_fire_body_parse(const char *body, size_t len, size_t max_items, struct bh_fire_body *out,
                   char *why, size_t why_size)
{
    bh_fire_body_clear(out);
    if (body != NULL && len > 0) {
        struct scan s = {
            (const unsigned char *)body, (const unsigned char *)body + len, out, len, NULL, 0};
        if (scan_body(&s, max_items) == 0) {
            out->by_jansson = 0;
            return 0;
        }
        bh_fire_body_clear(out);
    }
    return bh_fire_body_parse_jansson(body, len, max_items, out, why, why_size);
}

/* --- the body, by jansson ---------------------------------------------------- */

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
}

/* A string member of O: its kind and value. */
static void
json_field(json_t *o, const char *name, struct bh_fire_fields *f, int k)
{
    json_t *v = json_object_get(o, name);
    if (v == NULL || json_is_null(v)) {
        f->str[k].kind = BH_FIRE_ABSENT;
    } else if (!json_is_string(v)) {
        f->str[k].kind = BH_FIRE_OTHER;
    } else {
        f->str[k].kind = BH_FIRE_PRESENT;
        f->str[k].s = json_string_value(v);
        f->str[k].len = json_string_length(v);
    }
}

static void
json_coordinate(json_t *loc, const char *name, uint8_t *kind, double *value)
{
    json_t *v = json_object_get(loc, name);
    *kind = json_is_number(v) ? BH_FIRE_PRESENT : BH_FIRE_OTHER;
    if (*kind == BH_FIRE_PRESENT)
        *value = json_number_value(v);
}

/* The fields of the item O. */
static void
json_fields(json_t *o, struct bh_fire_fields *f)
{
    memset(f, 0, sizeof(*f));
    if (!json_is_object(o))
        return;
    f->is_object = 1;
    for (int k = 0; k < BH_FIRE_NSTR; k++)
        json_field(o, field_names[k], f, k);
    json_t *loc = json_object_get(o, "location");
    if (loc == NULL || json_is_null(loc)) {
        f->location = BH_FIRE_ABSENT;
    } else if (!json_is_object(loc)) {
        f->location = BH_FIRE_OTHER;
    } else {
        f->location = BH_FIRE_PRESENT;
        json_coordinate(loc, "lng", &f->lng, &f->lng_value);
        json_coordinate(loc, "lat", &f->lat, &f->lat_value);
    }
}

int
bh_fire_body_parse_jansson(const char *body, size_t len, size_t max_items, struct bh_fire_body *out,
                           char *why, size_t why_size)
{
    json_error_t e;
    int lenient = 0;
    bh_fire_body_clear(out);
    out->by_jansson = 1;
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
    if (items_room(out, n ? n : 1) < 0) {
        json_decref(root);
        snprintf(why, why_size, "out of memory");
        return 503;
    }
    out->root = root;
    out->n = n;
    if (json_is_object(root)) {
        out->items[0].raw = body;
        out->items[0].raw_len = len;
    } else if (element_spans(body, len, out->items, n) != n) {
        /* Not expected for a body jansson accepted: keep the whole body as each item's bytes. */
        for (size_t i = 0; i < n; i++) {
            out->items[i].raw = body;
            out->items[i].raw_len = len;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct bh_fire_item *it = &out->items[i];
        it->refused = BH_DLQ_REASON_COUNT;
        if (lenient)
            check_strict(it);
        if (it->refused == BH_DLQ_REASON_COUNT)
            json_fields(json_is_object(root) ? root : json_array_get(root, i), &it->f);
        else
            memset(&it->f, 0, sizeof(it->f));
    }
    return 0;
}

/* --- validation ------------------------------------------------------------ */

/* In the schema's order of symbols (the adapter checks its records against avro-c's at start). */
static const char *const categories[] = {"alarm",     "hazard", "inspection",
                                         "rectified", "drill",  NULL};
static const char *const levels[] = {"low", "medium", "high", "critical", NULL};

/* The index of S[0..LEN) in LIST, or -1. */
static int
in_list(const char *s, size_t len, const char *const *list)
{
    for (int i = 0; list[i] != NULL; i++)
        if (strlen(list[i]) == len && memcmp(s, list[i], len) == 0)
            return i;
    return -1;
}

static enum bh_dlq_reason
check_string(const struct bh_fire_fields *f, int k, int required, const char **s, size_t *len,
             char *why, size_t n)
{
    const char *name = field_names[k];
    *s = NULL;
    *len = 0;
    if (f->str[k].kind == BH_FIRE_OTHER) {
        snprintf(why, n, "%s: must be a string", name);
        return BH_DLQ_INVALID_FIELD;
    }
    if (f->str[k].kind == BH_FIRE_PRESENT) {
        *s = f->str[k].s;
        *len = f->str[k].len;
    }
    if (required && (*s == NULL || *len == 0)) {
        snprintf(why, n, "%s: is required", name);
        return BH_DLQ_MISSING_FIELD;
    }
    if (*s != NULL && memchr(*s, '\0', *len) != NULL) {
        snprintf(why, n, "%s: holds \\u0000", name);
        return BH_DLQ_INVALID_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

/* The sender's text S quoted into a reason: at most 64 bytes, cut between characters. */
#define QUOTE(s, len) (int)bh_utf8_cut((s), (len), 64), (s)

static enum bh_dlq_reason
check_symbol(const struct bh_fire_fields *f, int k, const char *const *allowed, const char **s,
             int *index, char *why, size_t n)
{
    size_t len;
    enum bh_dlq_reason r = check_string(f, k, 1, s, &len, why, n);
    if (r != BH_DLQ_REASON_COUNT)
        return r;
    if ((*index = in_list(*s, len, allowed)) < 0) {
        int w = snprintf(why, n, "%s: '%.*s' is not one of", field_names[k], QUOTE(*s, len));
        for (size_t i = 0; allowed[i] != NULL && w > 0 && (size_t)w < n; i++)
            w += snprintf(why + w, n - (size_t)w, "%s %s", i ? "," : "", allowed[i]);
        return BH_DLQ_INVALID_FIELD;
    }
    *s = allowed[*index]; /* NUL-terminated, as the sender's may not be */
    return BH_DLQ_REASON_COUNT;
}

enum bh_dlq_reason
bh_fire_validate(const struct bh_fire_fields *f, struct bh_fire_event *ev, char *why, size_t n)
{
    enum bh_dlq_reason r;
    memset(ev, 0, sizeof(*ev));
    if (!f->is_object) {
        snprintf(why, n, "an event must be a JSON object");
        return BH_DLQ_INVALID_JSON;
    }
    if ((r = check_string(f, BH_FIRE_ID, 1, &ev->id, &ev->id_len, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = check_symbol(f, BH_FIRE_CATEGORY, categories, &ev->category, &ev->category_index, why,
                          n)) != BH_DLQ_REASON_COUNT ||
        (r = check_string(f, BH_FIRE_UNIT, 1, &ev->unit, &ev->unit_len, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_string(f, BH_FIRE_BUILDING_ID, 0, &ev->building_id, &ev->building_id_len, why,
                          n)) != BH_DLQ_REASON_COUNT ||
        (r = check_string(f, BH_FIRE_GRID_CODE, 0, &ev->grid_code, &ev->grid_code_len, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_symbol(f, BH_FIRE_LEVEL, levels, &ev->level, &ev->level_index, why, n)) !=
            BH_DLQ_REASON_COUNT ||
        (r = check_string(f, BH_FIRE_DESCRIPTION, 0, &ev->description, &ev->description_len, why,
                          n)) != BH_DLQ_REASON_COUNT)
        return r;

    if (f->location != BH_FIRE_ABSENT) {
        if (f->location != BH_FIRE_PRESENT || f->lng != BH_FIRE_PRESENT ||
            f->lat != BH_FIRE_PRESENT) {
            snprintf(why, n, "location: must be {\"lng\": number, \"lat\": number}");
            return BH_DLQ_INVALID_FIELD;
        }
        ev->lng = f->lng_value;
        ev->lat = f->lat_value;
        if (!isfinite(ev->lng) || !isfinite(ev->lat) || fabs(ev->lng) > 180 || fabs(ev->lat) > 90) {
            snprintf(why, n, "location: (%g, %g) is not a longitude/latitude", ev->lng, ev->lat);
            return BH_DLQ_INVALID_FIELD;
        }
        ev->has_location = 1;
    }

    const char *t;
    size_t tlen;
    if ((r = check_string(f, BH_FIRE_OCCURRED_AT, 1, &t, &tlen, why, n)) != BH_DLQ_REASON_COUNT)
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

size_t
bh_fire_avro_bound(const struct bh_fire_event *ev, const char *block_id, const char *subject)
{
    /* 13 fields and a union's branch, none longer than a 10-byte varint plus its string */
    return 14 * BH_AVRO_LONG_MAX + 16 + ev->id_len + strlen(block_id) + ev->unit_len +
           ev->building_id_len + ev->grid_code_len + ev->description_len +
           (subject != NULL ? strlen(subject) : 0);
}

size_t
bh_fire_avro_write(uint8_t *out, const struct bh_fire_event *ev, const char *block_id, int64_t now,
                   const char *subject)
{
    uint8_t *p = out;
    p = bh_avro_put_bytes(p, ev->id, ev->id_len);
    p = bh_avro_put_bytes(p, block_id, strlen(block_id));
    p = bh_avro_put_long(p, ev->category_index);
    p = bh_avro_put_bytes(p, ev->unit, ev->unit_len);
    p = bh_avro_put_opt_bytes(p, ev->building_id, ev->building_id_len);
    p = bh_avro_put_opt_bytes(p, ev->grid_code, ev->grid_code_len);
    p = bh_avro_put_long(p, ev->has_location != 0);
    if (ev->has_location) {
        p = bh_avro_put_double(p, ev->lng);
        p = bh_avro_put_double(p, ev->lat);
    }
    p = bh_avro_put_long(p, ev->level_index);
    p = bh_avro_put_opt_bytes(p, ev->description, ev->description_len);
    p = bh_avro_put_long(p, ev->occurred_at);
    p = bh_avro_put_long(p, ev->offset_min);
    p = bh_avro_put_long(p, now);
    p = bh_avro_put_opt_bytes(p, subject, subject != NULL ? strlen(subject) : 0);
    return (size_t)(p - out);
}

/* --- the answer ------------------------------------------------------------ */

size_t
bh_fire_reject_bound(const char *code, const char *reason)
{
    return 64 + strlen(code) + 6 * strlen(reason);
}

/* S as a JSON string, escaped as jansson's dump escapes (no slash, no non-ASCII escaped). */
static char *
put_json_string(char *p, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    *p++ = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *p++ = (char)c;
            break;
        case '\b':
            *p++ = 'b';
            break;
        case '\f':
            *p++ = 'f';
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        default:
            memcpy(p, "u00", 3);
            p[3] = hex[c >> 4];
            p[4] = hex[c & 15];
            p += 5;
        }
    }
    *p++ = '"';
    return p;
}

size_t
bh_fire_reject_json(char *out, size_t index, const char *code, const char *reason)
{
    char *p = out + sprintf(out, "{\"index\":%zu,\"code\":", index);
    p = put_json_string(p, code);
    if (bh_utf8_valid(reason, strlen(reason))) {
        memcpy(p, ",\"reason\":", 10);
        p = put_json_string(p + 10, reason);
    }
    *p++ = '}';
    return (size_t)(p - out);
}
