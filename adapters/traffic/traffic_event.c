/*
 * A traffic line to an event with yajl's callback API (see traffic_event.h
 * for the rules). The callbacks only note, per known field, what kind of
 * value it had and where its text is; every rule is applied afterwards, in
 * the contract's order, so the reason does not depend on key order.
 *
 * Per line, yajl allocates its handle, lexer and buffers; they come from a
 * bump arena that is reset for the next line, so a line costs no malloc.
 * (yajl 2.1 has no call to reset a handle.)
 *
 * yajl checks UTF-8 loosely (it lets overlong forms and surrogates through)
 * and decodes a lone surrogate escape to '?' or to bytes that are not UTF-8,
 * so the line is checked strictly here before yajl reads it (and yajl's own
 * check is switched off), and an escaped string of a known field is decoded
 * here from the line's own bytes. (A flat line, read without yajl, has its
 * strings checked instead: the rest of it is ASCII.)
 *
 * No string of the line may hold U+0000 (written \u0000): not a known
 * field's, not an unknown field's at any depth, not a key. A known field is
 * refused at its turn in the contract's order; a NUL anywhere else, once
 * every field has passed.
 */
#include "traffic_event.h"
#include "traffic_event_test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "json_scan.h"

const char *const bh_traffic_type_names[BH_TRAFFIC_TYPE_COUNT] = {
    "accident",        "congestion",   "ebike_violation", "motorcycle_violation",
    "illegal_parking", "signal_fault", "red_light",
};

enum field {
    F_EVENT_ID,
    F_DEVICE,
    F_TYPE,
    F_LON,
    F_LAT,
    F_SEVERITY,
    F_TS,
    F_PLATE,
    F_ROAD,
    F_NONE
};

static const char *const field_names[F_NONE] = {
    "event_id", "device", "type", "lon", "lat", "severity", "ts", "plate", "road",
};

enum value {
    V_ABSENT,
    V_NULL,
    V_STRING,
    V_NUMBER,
    V_OTHER,      /* boolean, object or array */
    V_BAD_STRING, /* an escape that is not a Unicode scalar value */
    V_NUL_STRING  /* a string that holds U+0000 */
};

struct slot {
    enum value kind;
    int count; /* how many times the key appeared */
    const char *s;
    size_t len;
};

/* A key of the line: its text (in the line or in scratch) and the object it belongs to. */
struct keyref {
    const char *k;
    size_t len;
    uint32_t scope;
};

#define ARENA_SIZE (32 * 1024)
#define ARENA_HDR  16 /* a block's size, keeping blocks 16-byte aligned */

struct bh_traffic_parser {
    bool fast;         /* try the flat-line path first (tests switch it off) */
    size_t fast_lines; /* lines the flat-line path read whole */
    yajl_handle h;
    const char *line;
    size_t len;
    int depth;          /* 1 inside the top-level object */
    enum field current; /* the field whose value comes next (depth 1) */
    bool not_object;
    bool oom;
    bool nul_elsewhere; /* a key or a string outside the known fields holds U+0000 */
    bool nul_in_key;    /* ... and it was a key */
    char nul_key[72];   /* that key, or the top-level key it was under (sanitized, cut) */
    const char *key;    /* the current top-level key (in the line or in scratch) */
    size_t key_len;
    struct slot slots[F_NONE];
    /* every key of the line with its object, to refuse a key seen twice in one object */
    struct keyref *keys;
    size_t nkeys, capkeys;
    uint32_t *table; /* open addressing over keys (index + 1), once a line has many */
    size_t tablecap;
    uint32_t *scopes; /* the object (or 0: an array) of each open container */
    size_t nscopes, capscopes;
    uint32_t next_scope;
    uint64_t key_bits; /* a bit per key seen (key_bit): a key whose bit is clear is new */
    bool dup;
    char dup_key[72]; /* the first key seen twice (sanitized, cut) */
    bool bad_utf8;    /* the flat-line path met a string that is not UTF-8 */
    char *scratch;    /* decoded escaped strings; never longer than the line */
    size_t scratch_cap, scratch_used;
    char *arena; /* yajl's allocations for the current line */
    size_t arena_used, arena_last;
};

/* --- yajl's memory ----------------------------------------------------------- */

static bool
in_arena(const struct bh_traffic_parser *p, const void *ptr)
{
    return (const char *)ptr >= p->arena && (const char *)ptr < p->arena + ARENA_SIZE;
}

static size_t
round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static void *
arena_malloc(void *ctx, size_t size)
{
    struct bh_traffic_parser *p = ctx;
    size_t need = ARENA_HDR + round16(size);
    if (need > ARENA_SIZE - p->arena_used)
        return malloc(size);
    char *blk = p->arena + p->arena_used;
    memcpy(blk, &size, sizeof(size));
    p->arena_last = p->arena_used;
    p->arena_used += need;
    return blk + ARENA_HDR;
}

static void
arena_free(void *ctx, void *ptr)
{
    /* Arena blocks are all given back when the next line starts. */
    if (!in_arena(ctx, ptr))
        free(ptr);
}

static void *
arena_realloc(void *ctx, void *ptr, size_t size)
{
    struct bh_traffic_parser *p = ctx;
    if (ptr == NULL)
        return arena_malloc(ctx, size);
    if (!in_arena(p, ptr))
        return realloc(ptr, size);
    char *blk = (char *)ptr - ARENA_HDR;
    size_t old;
    memcpy(&old, blk, sizeof(old));
    size_t at = (size_t)(blk - p->arena);
    if (at == p->arena_last && ARENA_HDR + round16(size) <= ARENA_SIZE - at) {
        memcpy(blk, &size, sizeof(size));
        p->arena_used = at + ARENA_HDR + round16(size);
        return ptr;
    }
    if (size <= old)
        return ptr;
    void *n = arena_malloc(ctx, size);
    if (n != NULL)
        memcpy(n, ptr, old);
    return n;
}

/* --- escapes ------------------------------------------------------------------ */

/*
 * Decode the body of a JSON string whose syntax yajl has already checked,
 * with the block map's escape decoder (json_scan.h), so that both refuse the
 * same escapes. The output is never longer than the input. V_BAD_STRING for
 * a lone surrogate, V_NUL_STRING for U+0000, else V_STRING.
 */
static enum value
unescape(const char *s, size_t n, char *out, size_t *out_len)
{
    const unsigned char *q = (const unsigned char *)s, *end = q + n;
    size_t o = 0;
    while (q < end) {
        if (*q != '\\') {
            out[o++] = (char)*q++;
            continue;
        }
        uint32_t cp;
        int len = end - q >= 2 ? bh_json_escape(q, end, &cp) : BH_JSON_ESCAPE_INVALID;
        if (len == BH_JSON_ESCAPE_NUL)
            return V_NUL_STRING;
        if (len < 0)
            return V_BAD_STRING;
        q += len;
        o += bh_utf8_put(out + o, cp);
    }
    *out_len = o;
    return V_STRING;
}

/*
 * yajl hands over an escaped string already decoded (its way). Find the
 * string's own bytes in the line instead: the callback comes right after
 * the closing quote, and the opening quote is the nearest one before it
 * that is not escaped (preceded by an even number of backslashes).
 */
static enum value
decode_escaped(struct bh_traffic_parser *p, const char **s, size_t *len)
{
    size_t end = yajl_get_bytes_consumed(p->h);
    if (end == 0 || end > p->len || p->line[end - 1] != '"')
        return V_BAD_STRING;
    size_t close = end - 1, open = close;
    while (open > 0) {
        open--;
        if (p->line[open] != '"')
            continue;
        size_t bs = 0;
        while (open - bs > 0 && p->line[open - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            break;
    }
    char *out = p->scratch + p->scratch_used;
    size_t n;
    enum value kind = unescape(p->line + open + 1, close - open - 1, out, &n);
    if (kind != V_STRING)
        return kind;
    p->scratch_used += n;
    *s = out;
    *len = n;
    return V_STRING;
}

/* --- keys seen twice ---------------------------------------------------------- */

#define KEYS_LINEAR 16 /* up to this many keys a scan; past it a hash table */

static uint32_t
key_hash(uint32_t scope, const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ scope;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return (uint32_t)(h ^ (h >> 32));
}

static bool
same_key(const struct keyref *a, uint32_t scope, const char *k, size_t len)
{
    return a->scope == scope && a->len == len && memcmp(a->k, k, len) == 0;
}

/* Put key I into the table (which has room); true if an equal key is there already. */
static bool
table_put(struct bh_traffic_parser *p, size_t i)
{
    const struct keyref *r = &p->keys[i];
    size_t mask = p->tablecap - 1;
    for (size_t at = key_hash(r->scope, r->k, r->len) & mask;; at = (at + 1) & mask) {
        if (p->table[at] == 0) {
            p->table[at] = (uint32_t)i + 1;
            return false;
        }
        if (same_key(&p->keys[p->table[at] - 1], r->scope, r->k, r->len))
            return true;
    }
}

static bool
table_build(struct bh_traffic_parser *p, size_t want)
{
    size_t cap = 64;
    while (cap < want * 2)
        cap *= 2;
    if (cap > p->tablecap) {
        uint32_t *t = realloc(p->table, cap * sizeof(*t));
        if (t == NULL)
            return false;
        p->table = t;
    }
    p->tablecap = cap;
    memset(p->table, 0, cap * sizeof(*p->table));
    for (size_t i = 0; i + 1 < p->nkeys; i++)
        table_put(p, i);
    return true;
}

/* One of 64 bits for key K of object SCOPE, from its scope, length and end bytes. */
static unsigned
key_bit(uint32_t scope, const char *k, size_t len)
{
    uint32_t h = scope * 0x9E3779B1u ^ (uint32_t)len * 0x85EBCA77u;
    if (len > 0)
        h ^= (uint8_t)k[0] * 0xC2B2AE3Du ^ (uint8_t)k[len - 1] * 0x27D4EB2Fu;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    return (h ^ h >> 13) & 63;
}

/* K is the line's first key seen twice in one object. */
static void
dup_found(struct bh_traffic_parser *p, const char *k, size_t len)
{
    p->dup = true;
    bh_utf8_sanitize(p->dup_key, 65, k, len);
}

/* Note key K of object SCOPE (K stays valid for the line); a second one marks the line. */
static void
key_seen(struct bh_traffic_parser *p, uint32_t scope, const char *k, size_t len)
{
    if (p->dup)
        return;
    if (p->nkeys == p->capkeys) {
        size_t cap = p->capkeys ? p->capkeys * 2 : 32;
        struct keyref *n = realloc(p->keys, cap * sizeof(*n));
        if (n == NULL) {
            p->oom = true;
            return;
        }
        p->keys = n;
        p->capkeys = cap;
    }
    size_t i = p->nkeys++;
    p->keys[i] = (struct keyref){k, len, scope};
    bool twice = false;
    if (p->nkeys <= KEYS_LINEAR) {
        /* Equal keys share their bit: a line's keys rarely do, and then need no scan. */
        uint64_t bit = UINT64_C(1) << key_bit(scope, k, len);
        for (size_t j = 0; (p->key_bits & bit) && j < i && !twice; j++)
            twice = same_key(&p->keys[j], scope, k, len);
        p->key_bits |= bit;
    } else {
        if ((p->nkeys == KEYS_LINEAR + 1 || p->nkeys * 2 > p->tablecap) &&
            !table_build(p, p->nkeys)) {
            p->oom = true;
            return;
        }
        twice = table_put(p, i);
    }
    if (twice)
        dup_found(p, k, len);
}

static void
scope_push(struct bh_traffic_parser *p, uint32_t scope)
{
    if (p->nscopes == p->capscopes) {
        size_t cap = p->capscopes ? p->capscopes * 2 : 16;
        uint32_t *n = realloc(p->scopes, cap * sizeof(*n));
        if (n == NULL) {
            p->oom = true;
            return;
        }
        p->scopes = n;
        p->capscopes = cap;
    }
    p->scopes[p->nscopes++] = scope;
}

/* --- the callbacks ----------------------------------------------------------- */

/* Is key K, of as many bytes as F's name has (LEN, a constant: an inline compare), the field F? */
#define IS_FIELD(k, f, len) (memcmp((k), field_names[f], (len)) == 0)

static enum field
lookup(const unsigned char *k, size_t n)
{
    switch (n) {
    case 2:
        return IS_FIELD(k, F_TS, 2) ? F_TS : F_NONE;
    case 3:
        return IS_FIELD(k, F_LON, 3) ? F_LON : IS_FIELD(k, F_LAT, 3) ? F_LAT : F_NONE;
    case 4:
        return IS_FIELD(k, F_TYPE, 4) ? F_TYPE : IS_FIELD(k, F_ROAD, 4) ? F_ROAD : F_NONE;
    case 5:
        return IS_FIELD(k, F_PLATE, 5) ? F_PLATE : F_NONE;
    case 6:
        return IS_FIELD(k, F_DEVICE, 6) ? F_DEVICE : F_NONE;
    case 8:
        return IS_FIELD(k, F_EVENT_ID, 8)   ? F_EVENT_ID
               : IS_FIELD(k, F_SEVERITY, 8) ? F_SEVERITY
                                            : F_NONE;
    default:
        return F_NONE;
    }
}

/* True if S is text yajl decoded (it had escapes) rather than bytes of the line. */
static bool
decoded(const struct bh_traffic_parser *p, const char *s)
{
    return s < p->line || s >= p->line + p->len;
}

/* The first U+0000 outside the known fields: under the key NAME, or in that key itself. */
static void
nul_found(struct bh_traffic_parser *p, const char *name, size_t len, bool in_key)
{
    if (p->nul_elsewhere)
        return;
    p->nul_elsewhere = true;
    p->nul_in_key = in_key;
    /* at most 64 bytes of it, cut between characters, the NUL itself shown as \x00 */
    bh_utf8_sanitize(p->nul_key, 65, name != NULL ? name : "", name != NULL ? len : 0);
}

/* A value at depth 1 belongs to the current key; deeper ones are ignored. */
static int
note(struct bh_traffic_parser *p, enum value kind, const char *s, size_t len)
{
    if (p->depth == 0) {
        p->not_object = true;
        return 0; /* stop: the line is a bare value */
    }
    if (p->depth > 1 || p->current == F_NONE) {
        /* Only a decoded string can hold a NUL: a raw one is not JSON. */
        if (kind == V_STRING && decoded(p, s) && memchr(s, '\0', len) != NULL)
            nul_found(p, p->key, p->key_len, false);
        return 1;
    }
    struct slot *sl = &p->slots[p->current];
    if (kind == V_STRING && decoded(p, s))
        kind = decode_escaped(p, &s, &len);
    if (sl->count++ == 0) {
        sl->kind = kind;
        sl->s = s;
        sl->len = len;
    }
    return 1;
}

static int
on_null(void *ctx)
{
    return note(ctx, V_NULL, NULL, 0);
}

static int
on_boolean(void *ctx, int b)
{
    (void)b;
    return note(ctx, V_OTHER, NULL, 0);
}

static int
on_number(void *ctx, const char *s, size_t len)
{
    return note(ctx, V_NUMBER, s, len);
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
    return note(ctx, V_STRING, (const char *)s, len);
}

static int
on_start_map(void *ctx)
{
    struct bh_traffic_parser *p = ctx;
    int rc = p->depth == 0 ? 1 : note(p, V_OTHER, NULL, 0);
    p->depth++;
    scope_push(p, ++p->next_scope);
    return rc;
}

static int
on_start_array(void *ctx)
{
    struct bh_traffic_parser *p = ctx;
    int rc = note(p, V_OTHER, NULL, 0);
    p->depth++;
    scope_push(p, 0);
    return rc;
}

static int
on_end(void *ctx)
{
    struct bh_traffic_parser *p = ctx;
    p->depth--;
    if (p->nscopes > 0)
        p->nscopes--;
    return 1;
}

static int
on_map_key(void *ctx, const unsigned char *k, size_t len)
{
    struct bh_traffic_parser *p = ctx;
    const char *key = (const char *)k;
    bool nul = decoded(p, key) && memchr(key, '\0', len) != NULL;
    if (nul)
        nul_found(p, key, len, true);
    if (decoded(p, key)) {
        /* yajl's copy goes with the next string: keep one (never longer than its escaped text) */
        char *copy = p->scratch + p->scratch_used;
        memcpy(copy, key, len);
        p->scratch_used += len;
        key = copy;
    }
    key_seen(p, p->nscopes > 0 ? p->scopes[p->nscopes - 1] : 0, key, len);
    if (p->depth != 1)
        return 1;
    p->current = lookup(k, len);
    p->key = key;
    p->key_len = len;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

/* --- the flat-line path ------------------------------------------------------- */

/*
 * What gateways send is one flat object: string values without escapes,
 * numbers, true, false, null. Such a line is read here in one pass, into the
 * same slots the callbacks fill. At the first thing outside that subset (a
 * nested value, an escape, anything that may not be JSON) it gives up and
 * yajl reads the line instead, so every verdict on unusual input is yajl's.
 */
static const char *
skip_ws(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    return s;
}

#define BYTES(c) (UINT64_C(0x0101010101010101) * (c))

/*
 * Nonzero if one of the 8 bytes of W may end a flat string: a quote, a
 * backslash or a control character (exact for whether there is one; which
 * byte is left to the byte loop).
 */
static inline uint64_t
string_stop(uint64_t w)
{
    uint64_t q = w ^ BYTES('"'), b = w ^ BYTES('\\');
    return (((q - BYTES(1)) & ~q) | ((b - BYTES(1)) & ~b) | ((w - BYTES(0x20)) & ~w)) & BYTES(0x80);
}

/*
 * A string without escapes or control characters; S at its opening quote.
 * Its bytes are read 8 at a time; one with its high bit set makes the string
 * checked as UTF-8 (the rest of a flat line is ASCII): if it is not, the
 * line is refused as not UTF-8 (p->bad_utf8).
 */
static bool
flat_string(struct bh_traffic_parser *p, const char **s, const char *end, const char **out,
            size_t *len)
{
    const char *q = *s + 1;
    uint64_t high = 0;
    while (end - q >= 8) {
        uint64_t w;
        memcpy(&w, q, 8);
        if (string_stop(w))
            break;
        high |= w;
        q += 8;
    }
    while (q < end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
        high |= (unsigned char)*q++;
    if (q == end || *q != '"')
        return false;
    *out = *s + 1;
    *len = (size_t)(q - *out);
    *s = q + 1;
    if ((high & BYTES(0x80)) && !bh_utf8_valid(*out, *len)) {
        p->bad_utf8 = true;
        return false;
    }
    return true;
}

static const char *
digits(const char *s, const char *end)
{
    while (s < end && *s >= '0' && *s <= '9')
        s++;
    return s;
}

/* RFC 8259's number grammar; NULL if S does not start one. */
static const char *
flat_number(const char *s, const char *end)
{
    if (s < end && *s == '-')
        s++;
    if (s == end || *s < '0' || *s > '9')
        return NULL;
    s = *s == '0' ? s + 1 : digits(s, end);
    if (s < end && *s == '.') {
        const char *f = digits(s + 1, end);
        if (f == s + 1)
            return NULL;
        s = f;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        const char *e = digits(s, end);
        if (e == s)
            return NULL;
        s = e;
    }
    return s;
}

static bool
literal(const char **s, const char *end, const char *word, size_t n)
{
    if ((size_t)(end - *s) < n || memcmp(*s, word, n) != 0)
        return false;
    *s += n;
    return true;
}

static bool
flat_value(struct bh_traffic_parser *p, const char **s, const char *end)
{
    const char *v;
    size_t n;
    if (**s == '"')
        return flat_string(p, s, end, &v, &n) && note(p, V_STRING, v, n);
    if (**s == '-' || (**s >= '0' && **s <= '9')) {
        v = *s;
        *s = flat_number(*s, end);
        return *s != NULL && note(p, V_NUMBER, v, (size_t)(*s - v));
    }
    if (literal(s, end, "null", 4))
        return note(p, V_NULL, NULL, 0);
    return (literal(s, end, "true", 4) || literal(s, end, "false", 5)) && note(p, V_OTHER, NULL, 0);
}

/* True if the line was read whole; false: leave it to yajl. */
static bool
flat_line(struct bh_traffic_parser *p)
{
    const char *s = skip_ws(p->line, p->line + p->len), *end = p->line + p->len;
    if (s == end || *s != '{')
        return false;
    p->depth = 1;
    s = skip_ws(s + 1, end);
    if (s < end && *s == '}')
        return skip_ws(s + 1, end) == end;
    for (;;) {
        const char *k;
        size_t kn;
        if (s == end || *s != '"' || !flat_string(p, &s, end, &k, &kn))
            return false;
        s = skip_ws(s, end);
        if (s == end || *s != ':')
            return false;
        s = skip_ws(s + 1, end);
        /* A known key seen twice has its slot counted already; only others need key_seen. */
        p->current = lookup((const unsigned char *)k, kn);
        if (p->current == F_NONE)
            key_seen(p, 1, k, kn);
        else if (p->slots[p->current].count > 0 && !p->dup)
            dup_found(p, k, kn);
        if (s == end || !flat_value(p, &s, end))
            return false;
        s = skip_ws(s, end);
        if (s < end && *s == ',') {
            s = skip_ws(s + 1, end);
            continue;
        }
        return s < end && *s == '}' && skip_ws(s + 1, end) == end;
    }
}

/* --- the rules ----------------------------------------------------------------- */

/*
 * A JSON number's text as the nearest double (HUGE_VAL when out of range).
 * Fast path, exact: with at most 15 significant digits the digits make an
 * integer M < 2^53 and the decimal exponent E is small, so M and 10^|E| are
 * both exact doubles and one IEEE multiplication or division rounds M * 10^E
 * correctly. Anything else goes to strtod.
 */
static double
number(const char *s, size_t len)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = s[0] == '-';
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits += m != 0)
        m = m * 10 + (uint64_t)(s[i] - '0');
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, exp10--, digits += m != 0)
            m = m * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == len && digits <= 15 && exp10 >= -22) {
        double x = exp10 < 0 ? (double)m / pow10[-exp10] : (double)m;
        return s[0] == '-' ? -x : x;
    }
    char buf[128];
    if (len >= sizeof(buf))
        return NAN; /* no longitude needs 128 digits */
    memcpy(buf, s, len);
    buf[len] = '\0';
    return strtod(buf, NULL);
}

/* A JSON number with an integral value: 0, or -ERANGE / -EDOM. */
static int
integer(const char *s, size_t len, int64_t *out)
{
    size_t i = s[0] == '-';
    int64_t v = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    if (i == len) {
        *out = s[0] == '-' ? -v : v;
        return 0;
    }
    double x = number(s, len);
    if (!isfinite(x) || fabs(x) > 9007199254740992.0) /* 2^53: beyond it, not exact */
        return -ERANGE;
    if (x != floor(x))
        return -EDOM;
    *out = (int64_t)x;
    return 0;
}

static const char *
kind_name(enum value v)
{
    switch (v) {
    case V_STRING:
    case V_BAD_STRING:
    case V_NUL_STRING:
        return "a string";
    case V_NUMBER:
        return "a number";
    default:
        return "a boolean, object or array";
    }
}

/* BH_DLQ_REASON_COUNT when field F holds a value of kind WANT (or, if optional, none). */
static enum bh_dlq_reason
check_slot(const struct slot *sl, enum field f, enum value want, bool required, char *why, size_t n)
{
    const char *name = field_names[f];
    if (sl->count > 1) {
        snprintf(why, n, "%s: the key appears %d times", name, sl->count);
        return BH_DLQ_INVALID_FIELD;
    }
    if (sl->kind == V_ABSENT || sl->kind == V_NULL) {
        if (!required)
            return BH_DLQ_REASON_COUNT;
        snprintf(why, n, "%s: is required", name);
        return BH_DLQ_MISSING_FIELD;
    }
    if (sl->kind == V_BAD_STRING) {
        snprintf(why, n, "%s: an escape in the string is not a Unicode character", name);
        return BH_DLQ_INVALID_FIELD;
    }
    if (sl->kind == V_NUL_STRING) {
        snprintf(why, n, "%s: the string holds \\u0000, which no field accepts", name);
        return BH_DLQ_INVALID_FIELD;
    }
    if (sl->kind != want) {
        snprintf(why, n, "%s: must be %s, not %s", name, want == V_STRING ? "a string" : "a number",
                 kind_name(sl->kind));
        return BH_DLQ_INVALID_FIELD;
    }
    if (required && want == V_STRING && sl->len == 0) {
        snprintf(why, n, "%s: is required (the string is empty)", name);
        return BH_DLQ_MISSING_FIELD;
    }
    return BH_DLQ_REASON_COUNT;
}

static enum bh_dlq_reason
get_string(const struct slot *slots, enum field f, bool required, struct bh_traffic_str *out,
           char *why, size_t n)
{
    enum bh_dlq_reason r = check_slot(&slots[f], f, V_STRING, required, why, n);
    bool set = r == BH_DLQ_REASON_COUNT && slots[f].kind == V_STRING;
    out->s = set ? slots[f].s : NULL;
    out->len = set ? slots[f].len : 0;
    return r;
}

static enum bh_dlq_reason
get_type(const struct slot *slots, enum bh_traffic_type *out, char *why, size_t n)
{
    struct bh_traffic_str t;
    enum bh_dlq_reason r = get_string(slots, F_TYPE, true, &t, why, n);
    if (r != BH_DLQ_REASON_COUNT)
        return r;
    for (int i = 0; i < BH_TRAFFIC_TYPE_COUNT; i++) {
        if (bh_traffic_type_names[i][0] == t.s[0] && strlen(bh_traffic_type_names[i]) == t.len &&
            memcmp(bh_traffic_type_names[i], t.s, t.len) == 0) {
            *out = (enum bh_traffic_type)i;
            return r;
        }
    }
    int k = snprintf(why, n, "type: '%.*s' is not one of", (int)bh_utf8_cut(t.s, t.len, 64), t.s);
    for (int i = 0; i < BH_TRAFFIC_TYPE_COUNT && k > 0 && (size_t)k < n; i++)
        k += snprintf(why + k, n - (size_t)k, "%s %s", i ? "," : "", bh_traffic_type_names[i]);
    return BH_DLQ_INVALID_FIELD;
}

static enum bh_dlq_reason
get_coordinate(const struct slot *slots, enum field f, double limit, double *out, char *why,
               size_t n)
{
    enum bh_dlq_reason r = check_slot(&slots[f], f, V_NUMBER, true, why, n);
    if (r != BH_DLQ_REASON_COUNT)
        return r;
    *out = number(slots[f].s, slots[f].len);
    if (!isfinite(*out) || fabs(*out) > limit) {
        snprintf(why, n, "%s: %.*s is not within [-%g, %g]", field_names[f],
                 (int)bh_utf8_cut(slots[f].s, slots[f].len, 64), slots[f].s, limit, limit);
        return BH_DLQ_INVALID_FIELD;
    }
    return r;
}

static enum bh_dlq_reason
get_integer(const struct slot *slots, enum field f, int64_t min, int64_t max, int64_t *out,
            char *why, size_t n)
{
    enum bh_dlq_reason r = check_slot(&slots[f], f, V_NUMBER, true, why, n);
    if (r != BH_DLQ_REASON_COUNT)
        return r;
    int rc = integer(slots[f].s, slots[f].len, out);
    if (rc < 0 || *out < min || *out > max) {
        snprintf(why, n, "%s: %.*s is not an integer from %lld to %lld", field_names[f],
                 (int)bh_utf8_cut(slots[f].s, slots[f].len, 64), slots[f].s, (long long)min,
                 (long long)max);
        return BH_DLQ_INVALID_FIELD;
    }
    return r;
}

static bool
is_heartbeat(const struct slot *sl)
{
    return sl->kind == V_STRING && sl->len == 9 && memcmp(sl->s, "heartbeat", 9) == 0;
}

static enum bh_dlq_reason
apply_rules(const struct slot *s, struct bh_traffic_event *ev, char *why, size_t n)
{
    int64_t severity = 0;
    enum bh_dlq_reason r;
    if ((r = get_string(s, F_EVENT_ID, true, &ev->event_id, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_string(s, F_DEVICE, true, &ev->device, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_type(s, &ev->type, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_coordinate(s, F_LON, 180, &ev->lon, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_coordinate(s, F_LAT, 90, &ev->lat, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_integer(s, F_SEVERITY, 1, 5, &severity, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_integer(s, F_TS, 0, 253402300799999LL, &ev->ts, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_string(s, F_PLATE, false, &ev->plate, why, n)) != BH_DLQ_REASON_COUNT ||
        (r = get_string(s, F_ROAD, false, &ev->road, why, n)) != BH_DLQ_REASON_COUNT)
        return r;
    ev->severity = (int32_t)severity;
    return r;
}

/* --- the parser ---------------------------------------------------------------- */

int
bh_traffic_parser_new(struct bh_traffic_parser **out)
{
    struct bh_traffic_parser *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->arena = malloc(ARENA_SIZE)) == NULL) {
        free(p);
        return -ENOMEM;
    }
    p->fast = true;
    *out = p;
    return 0;
}

void
bh_traffic_parser_set_fast(struct bh_traffic_parser *p, bool fast)
{
    p->fast = fast;
}

size_t
bh_traffic_parser_fast_lines(const struct bh_traffic_parser *p)
{
    return p->fast_lines;
}

void
bh_traffic_parser_free(struct bh_traffic_parser *p)
{
    if (p == NULL)
        return;
    free(p->arena);
    free(p->scratch);
    free(p->keys);
    free(p->table);
    free(p->scopes);
    free(p);
}

/* AT_END: the error came when the line ended (yajl counts from there). */
static void
json_error(struct bh_traffic_parser *p, bool at_end, char *why, size_t n)
{
    unsigned char *e = yajl_get_error(p->h, 0, (const unsigned char *)p->line, p->len);
    size_t at = at_end ? p->len : yajl_get_bytes_consumed(p->h);
    const char *text = e != NULL ? (const char *)e : "unknown error";
    size_t tl = strcspn(text, "\n");
    snprintf(why, n, "not valid JSON (at byte %zu of %zu): %.*s", at, p->len, (int)tl, text);
    if (e != NULL)
        yajl_free_error(p->h, e);
}

static void
reset(struct bh_traffic_parser *p, const char *line, size_t len)
{
    p->line = line;
    p->len = len;
    p->depth = 0;
    p->current = F_NONE;
    p->not_object = false;
    p->nul_elsewhere = false;
    p->key = NULL;
    p->key_len = 0;
    p->scratch_used = 0;
    /* kind and count say whether a slot holds anything (no memset: its setup costs more) */
    for (int f = 0; f < F_NONE; f++) {
        p->slots[f].kind = V_ABSENT;
        p->slots[f].count = 0;
    }
    p->oom = false;
    p->nkeys = 0;
    p->nscopes = 0;
    p->next_scope = 0;
    p->key_bits = 0;
    p->dup = false;
    p->bad_utf8 = false;
}

/* yajl reads the line into the slots: true if it is one JSON object, else WHY says why. */
static bool
yajl_read(struct bh_traffic_parser *p, char *why, size_t n)
{
    static const yajl_alloc_funcs funcs = {arena_malloc, arena_realloc, arena_free, NULL};
    yajl_alloc_funcs afs = funcs;
    afs.ctx = p;
    p->arena_used = p->arena_last = 0;
    p->h = yajl_alloc(&callbacks, &afs, p);
    if (p->h == NULL) {
        snprintf(why, n, "out of memory for the JSON parser");
        return false;
    }
    yajl_config(p->h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(p->h, (const unsigned char *)p->line, p->len);
    bool at_end = st == yajl_status_ok;
    if (at_end)
        st = yajl_complete_parse(p->h);
    bool ok = st == yajl_status_ok && !p->not_object;
    if (p->not_object)
        snprintf(why, n, "not a JSON object");
    else if (!ok)
        json_error(p, at_end, why, n);
    yajl_free(p->h);
    p->h = NULL;
    return ok;
}

enum bh_traffic_kind
bh_traffic_parse(struct bh_traffic_parser *p, const char *line, size_t len,
                 struct bh_traffic_event *ev, enum bh_dlq_reason *reason, char *why,
                 size_t why_size)
{
    /* field by field: a memset of it costs more than these stores */
    ev->event_id = ev->device = ev->plate = ev->road = (struct bh_traffic_str){NULL, 0};
    ev->type = 0;
    ev->lon = ev->lat = 0;
    ev->severity = 0;
    ev->ts = 0;
    why[0] = '\0';
    *reason = BH_DLQ_INVALID_JSON;
    if (len > p->scratch_cap) {
        char *s = realloc(p->scratch, len);
        if (s == NULL) {
            snprintf(why, why_size, "out of memory for a line of %zu bytes", len);
            return BH_TRAFFIC_REJECT;
        }
        p->scratch = s;
        p->scratch_cap = len;
    }
    reset(p, line, len);
    /* The flat-line path checks its strings' UTF-8 (the rest of such a line is ASCII); any other
     * line is checked whole before yajl reads it. */
    if (p->fast && flat_line(p)) {
        p->fast_lines++;
    } else if (p->bad_utf8 || !bh_utf8_valid(line, len)) {
        *reason = BH_DLQ_INVALID_ENCODING;
        snprintf(why, why_size, "the line is not valid UTF-8");
        return BH_TRAFFIC_REJECT;
    } else {
        reset(p, line, len);
        if (!yajl_read(p, why, why_size))
            return BH_TRAFFIC_REJECT;
    }
    if (p->oom) {
        snprintf(why, why_size, "out of memory for a line of %zu bytes", len);
        return BH_TRAFFIC_REJECT;
    }
    if (p->dup) {
        /* One rule with the fire webhook: a key twice in one object is not taken. */
        snprintf(why, why_size, "the key '%s' appears more than once in one object", p->dup_key);
        return BH_TRAFFIC_REJECT;
    }
    if (is_heartbeat(&p->slots[F_TYPE]) && p->slots[F_TYPE].count == 1)
        return BH_TRAFFIC_HEARTBEAT;
    *reason = apply_rules(p->slots, ev, why, why_size);
    if (*reason == BH_DLQ_REASON_COUNT && p->nul_elsewhere) {
        *reason = BH_DLQ_INVALID_FIELD;
        if (p->nul_in_key)
            snprintf(why, why_size, "the key '%s' holds \\u0000, which no key accepts", p->nul_key);
        else
            snprintf(why, why_size, "%s: a string holds \\u0000, which no field accepts",
                     p->nul_key);
    }
    return *reason == BH_DLQ_REASON_COUNT ? BH_TRAFFIC_RECORD : BH_TRAFFIC_REJECT;
}
