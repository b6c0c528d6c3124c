/*
 * A strict JSON scanner (RFC 8259) that reads text in one pass without
 * building a tree, and the JSON string escapes it decodes.
 *
 * The block map is read with it (hub/blockmap_load.c): the caller walks the
 * objects it cares about member by member (bh_json_next_member), takes the
 * strings it wants (bh_json_string), and lets bh_json_value check and skip
 * everything else, or record an array of numbers as a flat list of nodes (a
 * GeoJSON feature's coordinates). The traffic adapter, which leaves the syntax
 * to yajl, decodes escaped strings with bh_json_escape, so that both refuse
 * the same escapes the same way.
 *
 * What the scanner accepts: UTF-8 text whose strings are valid UTF-8 (no
 * overlong forms, surrogates or code points past U+10FFFF), no control
 * characters in strings, escapes as the grammar has them (paired \u
 * surrogates, and no \u0000, as jansson refuses it), numbers as the grammar
 * has them, nesting at most BH_JSON_MAX_DEPTH deep. A syntax error is
 * reported as "NAME:LINE:COLUMN: not valid JSON: WHAT", and the calls return
 * -EINVAL; -ENOMEM when memory runs out.
 */
#ifndef BH_JSON_SCAN_H
#define BH_JSON_SCAN_H

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* As jansson's default: deeper JSON is refused. */
#define BH_JSON_MAX_DEPTH 2048

/* Index of no node. */
#define BH_JSON_NO_NODE UINT32_MAX

/* --- escapes -------------------------------------------------------------- */

/* What bh_json_escape returns for an escape it refuses. */
enum {
    BH_JSON_ESCAPE_INVALID = -1,   /* not one of JSON's escapes */
    BH_JSON_ESCAPE_HEX = -2,       /* \u without four hex digits */
    BH_JSON_ESCAPE_SURROGATE = -3, /* a \u surrogate without its other half */
    BH_JSON_ESCAPE_NUL = -4,       /* \u0000 */
};

/* Four hex digits at Q as a number, or -1 (also when fewer than four bytes are left before END). */
static inline long
bh_json_hex4(const unsigned char *q, const unsigned char *end)
{
    long v = 0;

    if (end - q < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = q[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/*
 * The escape at Q (Q[0] is the backslash, and Q[1] is before END): *CP gets
 * the character it stands for, and the result is the escape's length (2, 6,
 * or 12 for a surrogate pair); or a BH_JSON_ESCAPE_... refusal, with the lone
 * surrogate in *CP for BH_JSON_ESCAPE_SURROGATE. A character is always a
 * Unicode scalar value, never U+0000.
 */
static inline int
bh_json_escape(const unsigned char *q, const unsigned char *end, uint32_t *cp)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k;
    long high, low;

    if (q[1] != 'u') {
        k = q[1] != '\0' ? strchr(from, q[1]) : NULL;
        if (!k)
            return BH_JSON_ESCAPE_INVALID;
        *cp = (unsigned char)to[k - from];
        return 2;
    }
    high = bh_json_hex4(q + 2, end);
    if (high < 0)
        return BH_JSON_ESCAPE_HEX;
    *cp = (uint32_t)high;
    if (high >= 0xd800 && high <= 0xdbff) {
        low = end - q >= 8 && q[6] == '\\' && q[7] == 'u' ? bh_json_hex4(q + 8, end) : -1;
        if (low < 0xdc00 || low > 0xdfff)
            return BH_JSON_ESCAPE_SURROGATE;
        *cp = (uint32_t)(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00));
        return 12;
    }
    if (high >= 0xdc00 && high <= 0xdfff)
        return BH_JSON_ESCAPE_SURROGATE;
    if (high == 0)
        return BH_JSON_ESCAPE_NUL;
    return 6;
}

/* --- the scanner ---------------------------------------------------------- */

/* A decoded string: NUL-terminated (JSON text here never holds a NUL). */
struct bh_json_text {
    char *data;
    size_t len, cap;
};

/*
 * A recorded value, flattened in document order. An array's elements follow
 * it; NEXT skips to the node after the whole array.
 */
enum bh_json_node_kind { BH_JSON_ARRAY, BH_JSON_NUMBER, BH_JSON_OTHER };

struct bh_json_node {
    double number;  /* BH_JSON_NUMBER */
    uint32_t count; /* BH_JSON_ARRAY: how many elements */
    uint32_t next;  /* the node after this one and everything in it */
    uint8_t kind;
};

struct bh_json_scan {
    const char *name; /* of the text, in messages */
    char *errstr;
    size_t errstr_size;
    const char *base; /* the text */
    const char *p;    /* where the scanner is */
    const char *end;
    struct bh_json_text key; /* the member's key, after bh_json_next_member */
    /* the value bh_json_value recorded last */
    struct bh_json_node *nodes;
    size_t nnodes, nodes_cap;
    uint32_t open[BH_JSON_MAX_DEPTH]; /* the arrays being recorded, outermost first */
    locale_t c_locale;                /* for strtod_l; 0 until needed */
    /*
     * Says "out of memory" in ERRSTR, as the caller words its messages; when
     * NULL, the message is "NAME: out of memory".
     */
    void (*out_of_memory)(struct bh_json_scan *s);
};

/* SIZE bytes of JSON at JSON (NULL when SIZE is 0), named NAME in messages. */
void bh_json_scan_init(struct bh_json_scan *s, const char *name, const char *json, size_t len,
                       char *errstr, size_t errstr_size);
void bh_json_scan_free(struct bh_json_scan *s);

/* ERRSTR gets the message, if there is an ERRSTR. */
void bh_json_set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A syntax error at AT: "NAME:LINE:COLUMN: not valid JSON: WHAT". Returns -EINVAL. */
int bh_json_syntax(struct bh_json_scan *s, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A syntax error at s->p, saying what is there. */
int bh_json_unexpected(struct bh_json_scan *s);
/* At what follows an element of an array or object that CLOSE would end. */
int bh_json_comma_expected(struct bh_json_scan *s, char close);

static inline void
bh_json_skip_space(struct bh_json_scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Whether the next byte is C. */
static inline bool
bh_json_at(const struct bh_json_scan *s, char c)
{
    return s->p < s->end && *s->p == c;
}

/* Whether C can start a JSON value. */
static inline bool
bh_json_starts_value(char c)
{
    return c == '{' || c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' ||
           c == 'f' || c == 'n';
}

/* Whether the key bh_json_next_member read is KEY. */
static inline bool
bh_json_key_is(const struct bh_json_scan *s, const char *key)
{
    return strcmp(s->key.data, key) == 0;
}

/* At the '"' of a string: checks it and moves past it. With DST, DST gets its value, unescaped. */
int bh_json_string(struct bh_json_scan *s, struct bh_json_text *dst);

/*
 * Checks the JSON value at s->p and moves past it. With RECORD, the value
 * also goes to s->nodes (from node 0): arrays and numbers as they are (a
 * number as strtod reads it in the C locale, so possibly infinite), anything
 * else as one BH_JSON_OTHER.
 */
int bh_json_value(struct bh_json_scan *s, bool record);

/*
 * Object members: at the '{', FIRST true, each call reads the next member's
 * key into s->key and leaves s->p at its value; 1 for a member, 0 past the
 * '}', or an error.
 */
int bh_json_next_member(struct bh_json_scan *s, bool *first);

/* The whole text is one JSON value (and white space). */
int bh_json_check(struct bh_json_scan *s);

#endif
