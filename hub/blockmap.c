/*
 * The block map: GeoJSON blocks -> GEOS prepared geometries and a grid for
 * point lookups, plus an open-addressing hash table on block id.
 *
 * Parsing. The map is read by a small JSON scanner of its own, in one pass
 * over the text, without building a tree: the members the map uses are
 * picked up as they go by (a feature's block_id, name, geometry type and
 * coordinates), every other value is checked and skipped. A feature's
 * coordinates are kept as a flat list of nodes (arrays and numbers) until the
 * feature's object ends, because GeoJSON members come in any order: its type
 * and block id may follow them. Then the feature is checked and its GEOS
 * geometry built from those numbers, and the nodes are reused for the next.
 * With jansson, feature by feature, parsing the 50,000-block benchmark map
 * (18 MB) took about 720 ms of a 1.0-1.2 s load; this scanner reads and checks
 * it in about 40 ms, and the whole load takes about 0.25 s, half of it in
 * GEOSisValid_r, plus 40 to 60 ms for the lookup grid (bench/RESULTS.md).
 *
 * The scanner is strict JSON (RFC 8259): UTF-8 text whose strings must be
 * valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
 * no control characters in strings, escapes as the grammar has them (paired
 * \u surrogates, and no \u0000, as jansson refuses it), numbers as the
 * grammar has them, nesting at most MAX_DEPTH deep, nothing after the value.
 * A syntax error is reported as "NAME:LINE:COLUMN: not valid JSON: WHAT".
 * Numbers are converted only where the map uses them (coordinates), exactly
 * as strtod does in the C locale: a mantissa of at most 2^53 with a power of
 * ten of at most 22 is one correctly rounded division or multiplication;
 * anything else goes to strtod_l. Unlike jansson, which refused 1e400 or an
 * integer past 2^63 anywhere in the document, the scanner does not limit the
 * size of numbers the map ignores; a coordinate must be a finite double.
 *
 * Loading is strict: any malformed feature refuses the whole map, with a
 * message naming the feature and block, so that a bad reload keeps the old map
 * running. An invalid polygon (GEOSisValid false) is refused rather than
 * repaired with GEOSMakeValid: a repair silently changes which block owns a
 * point, and the people who own the map should fix it at the source. The check
 * is GEOSisValid_r; GEOSisValidDetail_r, which costs the same, runs only for a
 * polygon that fails it, to say why and where.
 *
 * Every data error returns -EINVAL; allocation failure -ENOMEM; a GEOS
 * exception -EIO; a file that cannot be read the errno of the failing call.
 *
 * Blocks are kept sorted by id (byte-wise, as strcmp), so "the smallest id
 * wins" is "the smallest index wins". For the fixed-width ids the department
 * uses, byte order is also numeric order.
 *
 * Point lookups go through a grid built at load time ("the lookup grid"
 * below): most points are answered by reading one cell; a point near a block
 * boundary is tested against the few blocks there, by a point-in-ring test of
 * our own that answers only when its answer is certainly GEOS's, and by GEOS
 * otherwise. On the 50,000-block benchmark map this takes a twelfth to a
 * fifteenth of the time of the plain lookup, which bh_blockmap_locate_slow
 * keeps for the tests and the benchmark: the candidates an STRtree (built on
 * its first call) finds, each tested by GEOSPreparedCovers_r.
 *
 * The plain lookup creates one GEOS point per call, and so does the grid when
 * GEOS decides. Reusing one point by updating its coordinate sequence in place
 * (GEOSGeom_getCoordSeq_r, cast, setXY) does not work with GEOS 3.11: the
 * point caches its envelope when it is created, so the STRtree query keeps
 * using the first position and returns the wrong candidates. The C API has no
 * way to invalidate that cache, so a fresh point it is; it costs an
 * allocation (bench/bench_blockmap.c measures it).
 *
 * Each polygon of a MultiPolygon goes into the STRtree on its own envelope:
 * one envelope around two detached parts would make every query near either
 * part, and every tree node holding it, pay for the empty space between them.
 */
#include "blockmap.h"

#include <errno.h>
#include <fcntl.h>
#include <geos_c.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* As jansson's default: deeper JSON is refused. */
#define MAX_DEPTH 2048

/* Index of no node. */
#define NO_NODE UINT32_MAX

/*
 * The lookup grid (see "the lookup grid" below). What a cell holds, by the top
 * two bits of its A: the block (index + 1) that
 * covers the whole cell, or 0 if none covers any of it; or blocks to test in
 * order, given by their shape records, and then the cell's owner (index + 1,
 * or 0): one (in A, the owner in B), two (A and B, no owner) or a list (at B
 * in map->lists: their number, the records, the owner).
 */
#define CELL_OWNER   0x00000000u
#define CELL_ONE     0x40000000u
#define CELL_TWO     0x80000000u
#define CELL_LIST    0xc0000000u
#define CELL_TAG     0xc0000000u
#define CELL_PAYLOAD 0x3fffffffu
/*
 * About this many cells to a block of average area (but no more than 4 times
 * this many per block, for a map of scattered blocks) ...
 */
#ifndef GRID_CELLS_PER_BLOCK
#define GRID_CELLS_PER_BLOCK 16
#endif
/* ... and at least this many (a small map gets a fine grid for little memory: 512 kB) ... */
#define GRID_MIN_CELLS 65536
/* ... and at most this many (32 MB). */
#define GRID_MAX_CELLS (1u << 22)
/*
 * A block with more positions than this is tested by GEOS (whose point locator
 * indexes the segments) rather than segment by segment. With a warm cache a
 * 64-gon takes 230 ns by rings_cover and 190 ns by GEOS (with its point), an
 * 8-gon 50 and 140 ns; in a lookup the cache is cold, and one prefetched
 * record costs fewer misses than GEOS's chain of structures.
 */
#ifndef RING_TEST_MAX_POSITIONS
#define RING_TEST_MAX_POSITIONS 64
#endif
/*
 * The ring test decides an orientation only if the computed determinant is
 * larger than this times the size of its products; see orientation().
 */
#define ORIENTATION_SAFE 1e-14
/*
 * Shape records start on a multiple of 8 words (a cache line, if the array is
 * so aligned), and the first lines of each are prefetched: the array has that
 * many words to spare at its end. Offsets must fit in CELL_PAYLOAD.
 */
#define SHAPE_ALIGN(words) (((words) + 7) & ~(size_t)7)
#define SHAPE_PREFETCH     24
#define SHAPES_MAX         (CELL_PAYLOAD - SHAPE_PREFETCH - 8)

struct block {
    struct bh_block pub;
    size_t id_len;
    GEOSGeometry *geom;
    const GEOSPreparedGeometry *prep;
    size_t feature;          /* index in the file's features array, for messages */
    size_t id_off, name_off; /* into strings, while loading */
    uint32_t shape, nrings;  /* its shape record in map->shapes, its number of rings */
};

/* A word of a block's shape record: a double, or two uint32_t (see "the lookup grid"). */
union word {
    double d;
    uint32_t u[2];
};

/* A cell of the lookup grid: what A's top two bits (CELL_...) say. */
struct grid_cell {
    uint32_t a, b;
};

struct slot {
    const char *id; /* NULL: empty */
    uint32_t len;
    uint32_t index;
};

struct bh_blockmap {
    GEOSContextHandle_t geos;
    char geos_msg[256];   /* the last GEOS error or notice */
    struct block *blocks; /* sorted by id */
    size_t count;
    struct slot *slots; /* hash table on id */
    size_t slot_mask;
    GEOSSTRtree *tree;
    char *strings; /* every id and name, NUL-terminated */
    double min_lon, min_lat, max_lon, max_lat;
    /* The lookup grid (see "the lookup grid"). */
    union word *shapes;      /* every block's shape record, in index order */
    size_t nshapes;          /* words */
    struct grid_cell *cells; /* grid_cols * grid_rows, row by row from (min_lon, min_lat) */
    uint32_t *lists;         /* the candidate lists of the cells that have one */
    size_t nlists;
    uint32_t grid_cols, grid_rows;
    double grid_cpu;                     /* seconds of CPU its building took */
    double cells_per_lon, cells_per_lat; /* grid_cols / width, grid_rows / height */
};

/* A decoded string: NUL-terminated (JSON text here never holds a NUL). */
struct text {
    char *data;
    size_t len, cap;
};

/*
 * A feature's coordinates, flattened in document order. An array's elements
 * follow it; NEXT skips to the node after the whole array.
 */
enum node_kind { NODE_ARRAY, NODE_NUMBER, NODE_OTHER };

struct node {
    double number;  /* NODE_NUMBER */
    uint32_t count; /* NODE_ARRAY: how many elements */
    uint32_t next;  /* the node after this one and everything in it */
    uint8_t kind;
};

/* What a member's value was. */
enum member { ABSENT, IS_NULL, IS_STRING, IS_OTHER };

/* One feature as read, before it is checked; the strings are in the loader's texts. */
struct feature {
    enum member id, name, type;
    bool geometry_object; /* geometry is an object */
    bool coordinates;     /* ... with coordinates, which are node 0 */
};

/* State while loading one map. */
struct loader {
    struct bh_blockmap *map;
    const char *name;
    char *errstr;
    size_t errstr_size;
    /* the document */
    const char *base;
    const char *p;
    const char *end;
    /* the feature being loaded, for messages: SIZE_MAX when none */
    size_t feature;
    const char *id;
    size_t blocks_cap;
    size_t strings_len, strings_cap;
    double *coords; /* x, y pairs of the ring being read */
    size_t coords_cap;
    size_t shapes_cap;   /* of map->shapes */
    size_t shape;        /* the record of the block being loaded */
    size_t shape_points; /* its positions so far */
    /* the member being read */
    struct text key, id_text, name_text, type_text;
    struct node *nodes;
    size_t nnodes, nodes_cap;
    uint32_t open[MAX_DEPTH]; /* the arrays being recorded, outermost first */
    locale_t c_locale;        /* for strtod_l; 0 until needed */
};

static void set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (!errstr || errstr_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/*
 * "NAME: features[3] (block 440303-004): MESSAGE", as much as is known. Before
 * the id is known, a MESSAGE starting with a space continues the sentence:
 * "NAME: features[3] is not an object".
 */
static void fail(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(struct loader *ld, const char *fmt, ...)
{
    char message[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (ld->feature == SIZE_MAX)
        set_error(ld->errstr, ld->errstr_size, "%s: %s", ld->name, message);
    else if (!ld->id)
        set_error(ld->errstr, ld->errstr_size, "%s: features[%zu]%s%s", ld->name, ld->feature,
                  message[0] == ' ' ? "" : ": ", message);
    else
        set_error(ld->errstr, ld->errstr_size, "%s: features[%zu] (block %s): %s", ld->name,
                  ld->feature, ld->id, message);
}

/* A JSON syntax error at AT in the document: "NAME:LINE:COLUMN: not valid JSON: WHAT". */
static int syntax(struct loader *ld, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
syntax(struct loader *ld, const char *at, const char *fmt, ...)
{
    char what[128];
    size_t line = 1;
    size_t column = 1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    for (const char *c = ld->base; c < at && c < ld->end; c++) {
        if (*c == '\n') {
            line++;
            column = 1;
        } else if (((unsigned char)*c & 0xc0) != 0x80) {
            column++; /* count characters, not UTF-8 continuation bytes */
        }
    }
    set_error(ld->errstr, ld->errstr_size, "%s:%zu:%zu: not valid JSON: %s", ld->name, line, column,
              what);
    return -EINVAL;
}

static void
on_geos_message(const char *message, void *userdata)
{
    struct bh_blockmap *map = userdata;

    snprintf(map->geos_msg, sizeof(map->geos_msg), "%s", message ? message : "(no message)");
}

static uint32_t
hash_id(const char *id, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 16777619u;
    }
    /* FNV-1a leaves the low bits poorly mixed for ids that differ in the last byte. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static int
compare_blocks(const void *pa, const void *pb)
{
    const struct block *a = pa;
    const struct block *b = pb;
    int c = memcmp(a->pub.id, b->pub.id, a->id_len < b->id_len ? a->id_len : b->id_len);

    if (c != 0)
        return c;
    return (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

/* ---- the JSON scanner ---- */

static inline void
skip_space(struct loader *ld)
{
    while (ld->p < ld->end && (*ld->p == ' ' || *ld->p == '\n' || *ld->p == '\r' || *ld->p == '\t'))
        ld->p++;
}

static inline bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether C can start a JSON value. */
static bool
starts_value(char c)
{
    return c == '{' || c == '[' || c == '"' || c == '-' || is_digit(c) || c == 't' || c == 'f' ||
           c == 'n';
}

/* A syntax error at ld->p, saying what is there. */
static int
unexpected(struct loader *ld)
{
    unsigned char c;

    if (ld->p >= ld->end)
        return syntax(ld, ld->p, "unexpected end of input");
    c = (unsigned char)*ld->p;
    if (c > ' ' && c < 0x7f)
        return syntax(ld, ld->p, "unexpected '%c'", c);
    return syntax(ld, ld->p, "unexpected byte 0x%02x", c);
}

/* At what follows an element of an array or object that CLOSE would end. */
static int
comma_expected(struct loader *ld, char close)
{
    if (ld->p >= ld->end)
        return unexpected(ld);
    if (starts_value(*ld->p))
        return syntax(ld, ld->p, "',' expected");
    return syntax(ld, ld->p, "',' or '%c' expected", close);
}

/* Appends N bytes to T, keeping it NUL-terminated. */
static int
text_append(struct loader *ld, struct text *t, const char *s, size_t n)
{
    if (t->cap - t->len < n + 1) {
        size_t cap = t->cap ? t->cap : 64;
        char *data;

        while (cap - t->len < n + 1)
            cap *= 2;
        data = realloc(t->data, cap);
        if (!data) {
            fail(ld, "out of memory");
            return -ENOMEM;
        }
        t->data = data;
        t->cap = cap;
    }
    if (n > 0)
        memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
    return 0;
}

/*
 * The length of the UTF-8 sequence at Q, or 0 if it is not valid UTF-8
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
 */
static size_t
utf8_length(const unsigned char *q, const unsigned char *end)
{
    size_t left = (size_t)(end - q);
    unsigned char c = q[0];
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    size_t n;

    if (c < 0x80)
        return 1;
    if (c < 0xc2 || c > 0xf4)
        return 0;
    n = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (left < n || q[1] < lo || q[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if ((q[i] & 0xc0) != 0x80)
            return 0;
    }
    return n;
}

/* Four hex digits at Q as a number, or -1. */
static long
hex4(const unsigned char *q, const unsigned char *end)
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
 * At the '"' of a string: checks it and moves past it. With DST, DST gets its
 * value, unescaped.
 */
static int
scan_string(struct loader *ld, struct text *dst)
{
    const unsigned char *end = (const unsigned char *)ld->end;
    const unsigned char *q = (const unsigned char *)ld->p + 1;
    const unsigned char *run = q; /* the bytes from here to Q go to DST as they are */
    int rc;

    if (dst) {
        dst->len = 0;
        rc = text_append(ld, dst, NULL, 0);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        const unsigned char *escape = q;
        char utf8[4];
        size_t n = 1;
        long cp;

        if (q >= end)
            return syntax(ld, (const char *)q, "unterminated string");
        if (*q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') {
            q++;
            continue;
        }
        if (*q >= 0x80) {
            n = utf8_length(q, end);
            if (n == 0)
                return syntax(ld, (const char *)q, "invalid UTF-8 (byte 0x%02x) in a string", *q);
            q += n;
            continue;
        }
        if (*q < 0x20)
            return syntax(ld, (const char *)q, "control character 0x%02x in a string", *q);
        if (dst && q > run) {
            rc = text_append(ld, dst, (const char *)run, (size_t)(q - run));
            if (rc < 0)
                return rc;
        }
        if (*q == '"')
            break;
        /* an escape */
        if (end - q < 2)
            return syntax(ld, (const char *)end, "unterminated string");
        switch (q[1]) {
        case '"':
        case '\\':
        case '/':
            utf8[0] = (char)q[1];
            break;
        case 'b':
            utf8[0] = '\b';
            break;
        case 'f':
            utf8[0] = '\f';
            break;
        case 'n':
            utf8[0] = '\n';
            break;
        case 'r':
            utf8[0] = '\r';
            break;
        case 't':
            utf8[0] = '\t';
            break;
        case 'u':
            cp = hex4(q + 2, end);
            if (cp < 0)
                return syntax(ld, (const char *)escape, "invalid \\u escape");
            q += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long low = end - q >= 4 && q[2] == '\\' && q[3] == 'u' ? hex4(q + 4, end) : -1;

                if (low < 0xdc00 || low > 0xdfff)
                    return syntax(ld, (const char *)escape,
                                  "invalid \\u escape: a lone surrogate \\u%04lX", cp);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                q += 6;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return syntax(ld, (const char *)escape,
                              "invalid \\u escape: a lone surrogate \\u%04lX", cp);
            } else if (cp == 0) {
                return syntax(ld, (const char *)escape, "\\u0000 is not allowed");
            }
            if (cp < 0x80) {
                utf8[0] = (char)cp;
            } else if (cp < 0x800) {
                utf8[0] = (char)(0xc0 | cp >> 6);
                utf8[1] = (char)(0x80 | (cp & 0x3f));
                n = 2;
            } else if (cp < 0x10000) {
                utf8[0] = (char)(0xe0 | cp >> 12);
                utf8[1] = (char)(0x80 | (cp >> 6 & 0x3f));
                utf8[2] = (char)(0x80 | (cp & 0x3f));
                n = 3;
            } else {
                utf8[0] = (char)(0xf0 | cp >> 18);
                utf8[1] = (char)(0x80 | (cp >> 12 & 0x3f));
                utf8[2] = (char)(0x80 | (cp >> 6 & 0x3f));
                utf8[3] = (char)(0x80 | (cp & 0x3f));
                n = 4;
            }
            break;
        default:
            return syntax(ld, (const char *)escape, "invalid escape in a string");
        }
        q += 2;
        run = q;
        if (dst) {
            rc = text_append(ld, dst, utf8, n);
            if (rc < 0)
                return rc;
        }
    }
    ld->p = (const char *)q + 1;
    return 0;
}

/* 10^0 ... 10^22: the powers of ten a double holds exactly. */
static const double exact_powers_of_ten[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* The number from START to END, by strtod in the C locale. */
static int
slow_number(struct loader *ld, const char *start, const char *end, double *value)
{
    size_t len = (size_t)(end - start);
    char small[64];
    char *copy = len < sizeof(small) ? small : malloc(len + 1);

    if (!ld->c_locale)
        ld->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!copy || !ld->c_locale) {
        if (copy != small)
            free(copy);
        fail(ld, "out of memory");
        return -ENOMEM;
    }
    memcpy(copy, start, len);
    copy[len] = '\0';
    *value = strtod_l(copy, NULL, ld->c_locale);
    if (copy != small)
        free(copy);
    return 0;
}

/*
 * At a number: checks it and moves past it. With VALUE, *VALUE gets it, as
 * strtod would read it (so possibly infinite).
 */
static int
scan_number(struct loader *ld, double *value)
{
    const char *start = ld->p;
    const char *q = start;
    const char *end = ld->end;
    uint64_t mantissa = 0;
    int digits = 0;    /* significant digits in MANTISSA */
    long exponent = 0; /* of ten, applied to MANTISSA */
    bool exact = true; /* MANTISSA holds every digit */
    bool negative = false;
    double d;

    if (*q == '-') {
        negative = true;
        q++;
    }
    if (q >= end || !is_digit(*q))
        return syntax(ld, start, "invalid number");
    if (*q == '0') {
        if (++q < end && is_digit(*q))
            return syntax(ld, start, "invalid number (a leading zero)");
    } else {
        for (; q < end && is_digit(*q); q++) {
            if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*q - '0');
                digits++;
            } else {
                exact = false;
            }
        }
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || !is_digit(*q))
            return syntax(ld, start, "invalid number");
        for (; q < end && is_digit(*q); q++) {
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
        long e = 0;

        q++;
        if (q < end && (*q == '+' || *q == '-'))
            minus = *q++ == '-';
        if (q >= end || !is_digit(*q))
            return syntax(ld, start, "invalid number");
        for (; q < end && is_digit(*q); q++) {
            if (e < 100000)
                e = e * 10 + (*q - '0');
        }
        exponent += minus ? -e : e;
    }
    ld->p = q;
    if (!value)
        return 0;
    if (!exact || mantissa > (UINT64_C(1) << 53) || exponent < -22 || exponent > 22) {
        if (exact && mantissa == 0)
            *value = negative ? -0.0 : 0.0;
        else
            return slow_number(ld, start, q, value);
        return 0;
    }
    /* Both exact: one correctly rounded operation, as strtod rounds. */
    d = (double)mantissa;
    d = exponent < 0 ? d / exact_powers_of_ten[-exponent] : d * exact_powers_of_ten[exponent];
    *value = negative ? -d : d;
    return 0;
}

static int
scan_literal(struct loader *ld)
{
    static const char *const words[] = {"true", "false", "null"};
    const char *word = words[*ld->p == 't' ? 0 : *ld->p == 'f' ? 1 : 2];
    size_t len = strlen(word);

    if ((size_t)(ld->end - ld->p) < len || memcmp(ld->p, word, len) != 0)
        return syntax(ld, ld->p, "invalid literal (true, false or null expected)");
    ld->p += len;
    return 0;
}

/* At an object's member: reads its key (into ld->key) and the ':'. */
static int
scan_key(struct loader *ld, bool first)
{
    int rc;

    skip_space(ld);
    if (ld->p >= ld->end)
        return unexpected(ld);
    if (*ld->p != '"')
        return syntax(ld, ld->p, first ? "string or '}' expected" : "string expected");
    rc = scan_string(ld, &ld->key);
    if (rc < 0)
        return rc;
    skip_space(ld);
    if (ld->p >= ld->end || *ld->p != ':')
        return ld->p >= ld->end ? unexpected(ld) : syntax(ld, ld->p, "':' expected");
    ld->p++;
    return 0;
}

/* Appends a node for a value at DEPTH levels into the array being recorded. */
static int
add_node(struct loader *ld, enum node_kind kind, double number, size_t depth)
{
    struct node *n;

    if (ld->nnodes == ld->nodes_cap) {
        size_t cap = ld->nodes_cap ? ld->nodes_cap * 2 : 256;
        struct node *nodes = cap < NO_NODE ? realloc(ld->nodes, cap * sizeof(*nodes)) : NULL;

        if (!nodes) {
            fail(ld, "out of memory");
            return -ENOMEM;
        }
        ld->nodes = nodes;
        ld->nodes_cap = cap;
    }
    n = &ld->nodes[ld->nnodes];
    n->number = number;
    n->count = 0;
    n->kind = (uint8_t)kind;
    ld->nnodes++;
    n->next = (uint32_t)ld->nnodes; /* an array's is set when it closes */
    if (depth > 0)
        ld->nodes[ld->open[depth - 1]].count++;
    return 0;
}

/*
 * Checks the JSON value at ld->p and moves past it. With RECORD, the value
 * also goes to ld->nodes: arrays and numbers as they are, anything else as one
 * NODE_OTHER. Iterative, so that deep nesting costs no stack.
 */
static int
parse_value(struct loader *ld, bool record)
{
    char kinds[MAX_DEPTH]; /* '[' or '{' for each open container */
    size_t depth = 0;
    double number;
    int rc;

    for (;;) {
        /* at a value */
        skip_space(ld);
        if (ld->p >= ld->end)
            return unexpected(ld);
        switch (*ld->p) {
        case '[':
            if (depth == MAX_DEPTH)
                return syntax(ld, ld->p, "nested more than %d deep", MAX_DEPTH);
            if (record) {
                rc = add_node(ld, NODE_ARRAY, 0, depth);
                if (rc < 0)
                    return rc;
                ld->open[depth] = (uint32_t)(ld->nnodes - 1);
            }
            kinds[depth++] = '[';
            ld->p++;
            skip_space(ld);
            if (ld->p < ld->end && *ld->p == ']') {
                ld->p++;
                depth--;
                break;
            }
            continue;
        case '{':
            if (record) {
                rc = add_node(ld, NODE_OTHER, 0, depth);
                if (rc == 0)
                    rc = parse_value(ld, false);
                if (rc < 0)
                    return rc;
                break;
            }
            if (depth == MAX_DEPTH)
                return syntax(ld, ld->p, "nested more than %d deep", MAX_DEPTH);
            kinds[depth++] = '{';
            ld->p++;
            skip_space(ld);
            if (ld->p < ld->end && *ld->p == '}') {
                ld->p++;
                depth--;
                break;
            }
            rc = scan_key(ld, true);
            if (rc < 0)
                return rc;
            continue;
        case '"':
            rc = scan_string(ld, NULL);
            if (rc == 0 && record)
                rc = add_node(ld, NODE_OTHER, 0, depth);
            if (rc < 0)
                return rc;
            break;
        case '-':
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9':
            rc = scan_number(ld, record ? &number : NULL);
            if (rc == 0 && record)
                rc = add_node(ld, NODE_NUMBER, number, depth);
            if (rc < 0)
                return rc;
            break;
        case 't':
        case 'f':
        case 'n':
            rc = scan_literal(ld);
            if (rc == 0 && record)
                rc = add_node(ld, NODE_OTHER, 0, depth);
            if (rc < 0)
                return rc;
            break;
        default:
            return unexpected(ld);
        }
        /* after a value: close what ends here, up to the next value */
        for (;;) {
            if (depth == 0)
                return 0;
            skip_space(ld);
            if (ld->p < ld->end && *ld->p == ',') {
                ld->p++;
                if (kinds[depth - 1] == '{') {
                    rc = scan_key(ld, false);
                    if (rc < 0)
                        return rc;
                }
                break;
            }
            if (ld->p >= ld->end || *ld->p != (kinds[depth - 1] == '[' ? ']' : '}'))
                return comma_expected(ld, kinds[depth - 1] == '[' ? ']' : '}');
            ld->p++;
            depth--;
            if (record)
                ld->nodes[ld->open[depth]].next = (uint32_t)ld->nnodes;
        }
    }
}

/*
 * Object members: at the '{', FIRST true, each call reads the next member's
 * key into ld->key and leaves ld->p at its value; 1 for a member, 0 past the
 * '}', or an error.
 */
static int
next_member(struct loader *ld, bool *first)
{
    int rc;

    skip_space(ld);
    if (*first) {
        *first = false;
        ld->p++; /* '{' */
        skip_space(ld);
        if (ld->p < ld->end && *ld->p == '}') {
            ld->p++;
            return 0;
        }
        rc = scan_key(ld, true);
    } else {
        if (ld->p < ld->end && *ld->p == '}') {
            ld->p++;
            return 0;
        }
        if (ld->p >= ld->end || *ld->p != ',')
            return comma_expected(ld, '}');
        ld->p++;
        rc = scan_key(ld, false);
    }
    if (rc < 0)
        return rc;
    skip_space(ld);
    return 1;
}

static bool
key_is(const struct loader *ld, const char *s)
{
    return strcmp(ld->key.data, s) == 0;
}

static bool
at(const struct loader *ld, char c)
{
    return ld->p < ld->end && *ld->p == c;
}

/* A member whose value the map wants as a string: DST gets it, *WHAT what it was. */
static int
read_string_member(struct loader *ld, struct text *dst, enum member *what)
{
    int rc;

    if (at(ld, '"')) {
        *what = IS_STRING;
        return scan_string(ld, dst);
    }
    *what = at(ld, 'n') ? IS_NULL : IS_OTHER; /* 'n' can only be null */
    rc = parse_value(ld, false);
    return rc;
}

/* A feature's "properties" value. A later "properties" member replaces an earlier one. */
static int
read_properties(struct loader *ld, struct feature *f)
{
    bool first = true;
    int rc;

    f->id = f->name = ABSENT;
    if (!at(ld, '{'))
        return parse_value(ld, false);
    while ((rc = next_member(ld, &first)) > 0) {
        if (key_is(ld, "block_id"))
            rc = read_string_member(ld, &ld->id_text, &f->id);
        else if (key_is(ld, "name"))
            rc = read_string_member(ld, &ld->name_text, &f->name);
        else
            rc = parse_value(ld, false);
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* A feature's "geometry" value: its type and its coordinates as nodes. */
static int
read_geometry(struct loader *ld, struct feature *f)
{
    bool first = true;
    int rc;

    f->geometry_object = false;
    f->type = ABSENT;
    f->coordinates = false;
    if (!at(ld, '{'))
        return parse_value(ld, false);
    f->geometry_object = true;
    while ((rc = next_member(ld, &first)) > 0) {
        if (key_is(ld, "type")) {
            rc = read_string_member(ld, &ld->type_text, &f->type);
        } else if (key_is(ld, "coordinates")) {
            ld->nnodes = 0;
            f->coordinates = true;
            rc = parse_value(ld, true);
        } else {
            rc = parse_value(ld, false);
        }
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* At the '{' of a feature: reads it to its end. */
static int
read_feature(struct loader *ld, struct feature *f)
{
    bool first = true;
    int rc;

    memset(f, 0, sizeof(*f));
    while ((rc = next_member(ld, &first)) > 0) {
        if (key_is(ld, "properties"))
            rc = read_properties(ld, f);
        else if (key_is(ld, "geometry"))
            rc = read_geometry(ld, f);
        else
            rc = parse_value(ld, false);
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* ---- geometry ---- */

/* PART is the polygon's index in a MultiPolygon, or -1 for a Polygon. */
static void fail_ring(struct loader *ld, long part, size_t ring, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
fail_ring(struct loader *ld, long part, size_t ring, const char *fmt, ...)
{
    char message[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (part < 0)
        fail(ld, "ring %zu %s", ring, message);
    else
        fail(ld, "polygon %ld ring %zu %s", part, ring, message);
}

/* Makes room for WORDS more words in map->shapes. */
static int
reserve_shapes(struct loader *ld, size_t words)
{
    struct bh_blockmap *map = ld->map;
    int rc = 0;

    if (words > SHAPES_MAX - map->nshapes) {
        rc = -EINVAL;
        fail(ld, "the map has too many positions (more than about %u)", SHAPES_MAX / 2);
        goto out;
    }
    if (ld->shapes_cap - map->nshapes < words) {
        size_t cap = ld->shapes_cap ? ld->shapes_cap : 65536;
        union word *shapes;

        while (cap - map->nshapes < words)
            cap *= 2;
        shapes = realloc(map->shapes, cap * sizeof(*shapes));
        if (!shapes) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        map->shapes = shapes;
        ld->shapes_cap = cap;
    }
out:
    return rc;
}

/* Starts the shape record of the block being loaded (see "the lookup grid"). */
static int
begin_shape(struct loader *ld)
{
    struct bh_blockmap *map = ld->map;
    size_t at = SHAPE_ALIGN(map->nshapes);
    int rc = reserve_shapes(ld, at - map->nshapes + 1);

    if (rc < 0)
        goto out;
    memset(&map->shapes[map->nshapes], 0, (at + 1 - map->nshapes) * sizeof(*map->shapes));
    ld->shape = at;
    ld->shape_points = 0;
    map->nshapes = at + 1;
out:
    return rc;
}

/* Adds the N positions in ld->coords to the block's shape record, as its next ring. */
static int
keep_ring(struct loader *ld, size_t n)
{
    struct bh_blockmap *map = ld->map;
    union word *w;
    int rc = reserve_shapes(ld, 1 + 2 * n);

    if (rc < 0)
        goto out;
    w = &map->shapes[map->nshapes];
    w->u[0] = (uint32_t)n;
    w->u[1] = 0;
    for (size_t i = 0; i < 2 * n; i++)
        w[1 + i].d = ld->coords[i];
    map->shapes[ld->shape].u[1]++;
    ld->shape_points += n;
    map->nshapes += 1 + 2 * n;
out:
    return rc;
}

/* RING is the node of a ring's positions. */
static int
load_ring(struct loader *ld, uint32_t ring, long part, size_t index, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    const struct node *nodes = ld->nodes;
    GEOSCoordSequence *seq;
    uint32_t pos = ring + 1;
    size_t n;
    int rc = -EINVAL;

    *out = NULL;
    if (nodes[ring].kind != NODE_ARRAY) {
        fail_ring(ld, part, index, "is not an array of positions");
        goto out;
    }
    n = nodes[ring].count;
    if (n < 4) {
        fail_ring(ld, part, index, "has %zu positions; a linear ring needs at least 4", n);
        goto out;
    }
    if (n * 2 > ld->coords_cap) {
        size_t cap = n * 2 > 256 ? n * 2 : 256;
        double *coords = realloc(ld->coords, cap * sizeof(*coords));

        if (!coords) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        ld->coords = coords;
        ld->coords_cap = cap;
    }
    for (size_t i = 0; i < n; i++, pos = nodes[pos].next) {
        const struct node *x, *y;

        if (nodes[pos].kind != NODE_ARRAY || nodes[pos].count < 2) {
            fail_ring(ld, part, index, "position %zu is not an array [lon, lat]", i);
            goto out;
        }
        x = &nodes[pos + 1];
        y = &nodes[x->next];
        if (x->kind != NODE_NUMBER || y->kind != NODE_NUMBER) {
            fail_ring(ld, part, index, "position %zu has a coordinate that is not a number", i);
            goto out;
        }
        if (!isfinite(x->number) || !isfinite(y->number)) {
            fail_ring(ld, part, index, "position %zu has a coordinate out of range", i);
            goto out;
        }
        ld->coords[2 * i] = x->number;
        ld->coords[2 * i + 1] = y->number;
    }
    if (ld->coords[0] != ld->coords[2 * n - 2] || ld->coords[1] != ld->coords[2 * n - 1]) {
        fail_ring(ld, part, index, "is not closed (its first and last positions differ)");
        goto out;
    }
    rc = keep_ring(ld, n);
    if (rc < 0)
        goto out;
    rc = -EIO;
    seq = GEOSCoordSeq_copyFromBuffer_r(geos, ld->coords, (unsigned int)n, 0, 0);
    if (!seq) {
        fail_ring(ld, part, index, "is refused by GEOS: %s", ld->map->geos_msg);
        goto out;
    }
    *out = GEOSGeom_createLinearRing_r(geos, seq); /* takes SEQ, even on failure */
    if (!*out) {
        fail_ring(ld, part, index, "is refused by GEOS: %s", ld->map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* RINGS is the node of a GeoJSON Polygon's coordinates: [shell, hole, ...]; NO_NODE if none. */
static int
load_polygon(struct loader *ld, uint32_t rings, long part, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *shell = NULL;
    GEOSGeometry **holes = NULL;
    size_t nholes = 0;
    size_t nrings;
    uint32_t ring;
    int rc = -EINVAL;

    *out = NULL;
    if (rings == NO_NODE || ld->nodes[rings].kind != NODE_ARRAY || ld->nodes[rings].count == 0) {
        if (part < 0)
            fail(ld, "the Polygon has no rings");
        else
            fail(ld, "polygon %ld of the MultiPolygon has no rings", part);
        goto out;
    }
    nrings = ld->nodes[rings].count;
    if (nrings > 1) {
        holes = calloc(nrings - 1, sizeof(*holes));
        if (!holes) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
    }
    ring = rings + 1;
    rc = load_ring(ld, ring, part, 0, &shell);
    if (rc < 0)
        goto out;
    for (size_t r = 1; r < nrings; r++) {
        ring = ld->nodes[ring].next;
        rc = load_ring(ld, ring, part, r, &holes[nholes]);
        if (rc < 0)
            goto out;
        nholes++;
    }
    rc = -EIO;
    *out = GEOSGeom_createPolygon_r(geos, shell, holes, (unsigned int)nholes);
    shell = NULL; /* GEOS owns the rings now, even if it failed */
    nholes = 0;
    if (!*out) {
        fail(ld, "GEOS: %s", ld->map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    if (shell)
        GEOSGeom_destroy_r(geos, shell);
    for (size_t i = 0; i < nholes; i++)
        GEOSGeom_destroy_r(geos, holes[i]);
    free(holes);
    return rc;
}

static int
load_geometry(struct loader *ld, const struct feature *f, GEOSGeometry **out)
{
    GEOSContextHandle_t geos = ld->map->geos;
    uint32_t coords = f->coordinates ? 0 : NO_NODE;
    const char *type = ld->type_text.data;
    GEOSGeometry **parts = NULL;
    size_t nparts = 0;
    size_t n;
    uint32_t part;
    int rc = -EINVAL;

    *out = NULL;
    if (!f->geometry_object) {
        fail(ld, "no geometry object");
        goto out;
    }
    if (f->type != IS_STRING) {
        fail(ld, "the geometry has no type");
        goto out;
    }
    if (strcmp(type, "Polygon") == 0) {
        rc = load_polygon(ld, coords, -1, out);
        goto out;
    }
    if (strcmp(type, "MultiPolygon") != 0) {
        fail(ld, "geometry type %.40s is not supported (only Polygon and MultiPolygon)", type);
        goto out;
    }
    if (coords == NO_NODE || ld->nodes[coords].kind != NODE_ARRAY || ld->nodes[coords].count == 0) {
        fail(ld, "the MultiPolygon has no polygons");
        goto out;
    }
    n = ld->nodes[coords].count;
    parts = calloc(n, sizeof(*parts));
    if (!parts) {
        rc = -ENOMEM;
        fail(ld, "out of memory");
        goto out;
    }
    part = coords + 1;
    for (size_t i = 0; i < n; i++, part = ld->nodes[part].next) {
        rc = load_polygon(ld, part, (long)i, &parts[nparts]);
        if (rc < 0)
            goto out;
        nparts++;
    }
    rc = -EIO;
    *out = GEOSGeom_createCollection_r(geos, GEOS_MULTIPOLYGON, parts, (unsigned int)nparts);
    nparts = 0; /* GEOS owns the polygons now, even if it failed */
    if (!*out) {
        fail(ld, "GEOS: %s", ld->map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < nparts; i++)
        GEOSGeom_destroy_r(geos, parts[i]);
    free(parts);
    return rc;
}

static int
check_valid(struct loader *ld, const GEOSGeometry *geom)
{
    GEOSContextHandle_t geos = ld->map->geos;
    GEOSGeometry *location = NULL;
    char *reason = NULL;
    double x = NAN;
    double y = NAN;
    char valid;
    int rc = 0;

    /* The details cost no more, but are only wanted for a failure. */
    valid = GEOSisValid_r(geos, geom);
    if (valid == 0 && GEOSisValidDetail_r(geos, geom, 0, &reason, &location) == 2)
        valid = 2;
    if (valid == 2) {
        rc = -EIO;
        fail(ld, "GEOS cannot check the polygon: %s", ld->map->geos_msg);
        goto out;
    }
    if (!valid) {
        rc = -EINVAL;
        if (location) {
            GEOSGeomGetX_r(geos, location, &x);
            GEOSGeomGetY_r(geos, location, &y);
        }
        fail(ld, "invalid polygon: %s at %.9g %.9g", reason ? reason : "unknown reason", x, y);
        goto out;
    }
out:
    if (reason)
        GEOSFree_r(geos, reason);
    if (location)
        GEOSGeom_destroy_r(geos, location);
    return rc;
}

/* ---- features ---- */

/* Appends LEN bytes and a NUL to the string arena; *OFF gets where. */
static int
add_string(struct loader *ld, const char *s, size_t len, size_t *off)
{
    struct bh_blockmap *map = ld->map;
    int rc = 0;

    if (ld->strings_cap - ld->strings_len < len + 1) {
        size_t cap = ld->strings_cap ? ld->strings_cap : 4096;
        char *strings;

        while (cap - ld->strings_len < len + 1)
            cap *= 2;
        strings = realloc(map->strings, cap);
        if (!strings) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        map->strings = strings;
        ld->strings_cap = cap;
    }
    memcpy(map->strings + ld->strings_len, s, len);
    map->strings[ld->strings_len + len] = '\0';
    *off = ld->strings_len;
    ld->strings_len += len + 1;
out:
    return rc;
}

/* Adds one block from one feature as read. */
static int
load_feature(struct loader *ld, const struct feature *f)
{
    struct bh_blockmap *map = ld->map;
    struct block *b;
    int rc = -EINVAL;

    if (f->id == ABSENT || f->id == IS_NULL) {
        fail(ld, " has no properties.block_id");
        goto out;
    }
    if (f->id != IS_STRING || ld->id_text.len == 0) {
        fail(ld, "properties.block_id is not a non-empty string");
        goto out;
    }
    ld->id = ld->id_text.data;
    if (ld->id_text.len > UINT32_MAX) {
        fail(ld, "properties.block_id is too long");
        goto out;
    }
    if (f->name == IS_OTHER) {
        fail(ld, "properties.name is not a string");
        goto out;
    }
    if (map->count == ld->blocks_cap) {
        size_t cap = ld->blocks_cap ? ld->blocks_cap * 2 : 256;
        struct block *blocks = realloc(map->blocks, cap * sizeof(*blocks));

        if (!blocks) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        map->blocks = blocks;
        ld->blocks_cap = cap;
    }
    b = &map->blocks[map->count];
    memset(b, 0, sizeof(*b));
    b->feature = ld->feature;
    b->id_len = ld->id_text.len;
    rc = begin_shape(ld);
    if (rc < 0)
        goto out;
    b->shape = (uint32_t)ld->shape;
    rc = load_geometry(ld, f, &b->geom);
    if (rc < 0)
        goto out;
    /* A block with many positions is left to GEOS: its record says it has no rings. */
    b->nrings = map->shapes[b->shape].u[1];
    if (ld->shape_points > RING_TEST_MAX_POSITIONS)
        map->shapes[b->shape].u[1] = 0;
    map->count++; /* from here on bh_blockmap_free owns b->geom */
    rc = check_valid(ld, b->geom);
    if (rc < 0)
        goto out;
    rc = add_string(ld, ld->id_text.data, b->id_len, &b->id_off);
    if (rc < 0)
        goto out;
    rc = add_string(ld, f->name == IS_STRING ? ld->name_text.data : "",
                    f->name == IS_STRING ? ld->name_text.len : 0, &b->name_off);
    if (rc < 0)
        goto out;
    rc = -EIO;
    b->prep = GEOSPrepare_r(map->geos, b->geom);
    if (!b->prep) {
        fail(ld, "GEOS cannot prepare the geometry: %s", map->geos_msg);
        goto out;
    }
    rc = 0;
out:
    ld->id = NULL;
    return rc;
}

/* ---- the top-level object ---- */

/* At the '[' of "features": reads and loads every feature, one at a time. */
static int
load_features(struct loader *ld)
{
    struct feature f;
    int rc = 0;

    ld->p++;
    skip_space(ld);
    if (at(ld, ']')) {
        ld->p++;
        goto out;
    }
    for (ld->feature = 0;; ld->feature++) {
        skip_space(ld);
        if (at(ld, '{')) {
            rc = read_feature(ld, &f);
            if (rc == 0)
                rc = load_feature(ld, &f);
        } else if (at(ld, '[')) {
            rc = parse_value(ld, false);
            if (rc == 0) {
                rc = -EINVAL;
                fail(ld, " is not an object");
            }
        } else if (ld->p < ld->end && starts_value(*ld->p)) {
            rc = -EINVAL;
            fail(ld, " is not an object");
        } else {
            rc = unexpected(ld);
        }
        if (rc < 0)
            goto out;
        skip_space(ld);
        if (at(ld, ']')) {
            ld->p++;
            break;
        }
        if (!at(ld, ',')) {
            rc = comma_expected(ld, ']');
            goto out;
        }
        ld->p++;
    }
out:
    ld->feature = SIZE_MAX;
    return rc;
}

/* The document: an object with "type": "FeatureCollection" and "features": [...]. */
static int
load_document(struct loader *ld)
{
    bool collection = false;
    bool features = false;
    bool first = true;
    int rc;

    skip_space(ld);
    if (!at(ld, '{')) {
        /* Say whether it is JSON at all. */
        rc = parse_value(ld, false);
        if (rc < 0)
            goto out;
        rc = -EINVAL;
        skip_space(ld);
        if (ld->p < ld->end)
            syntax(ld, ld->p, "end of input expected");
        else
            fail(ld, "not a GeoJSON FeatureCollection");
        goto out;
    }
    while ((rc = next_member(ld, &first)) > 0) {
        if (key_is(ld, "features")) {
            rc = -EINVAL;
            if (features) {
                fail(ld, "more than one \"features\" member");
                goto out;
            }
            features = true;
            if (!at(ld, '[')) {
                fail(ld, "the FeatureCollection has no features array");
                goto out;
            }
            rc = load_features(ld);
        } else if (key_is(ld, "type")) {
            collection = at(ld, '"');
            if (collection) {
                rc = scan_string(ld, &ld->type_text);
                collection = rc == 0 && strcmp(ld->type_text.data, "FeatureCollection") == 0;
            } else {
                rc = parse_value(ld, false);
            }
        } else {
            rc = parse_value(ld, false);
        }
        if (rc < 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    rc = -EINVAL;
    skip_space(ld);
    if (ld->p < ld->end) {
        syntax(ld, ld->p, "end of input expected");
        goto out;
    }
    if (!collection) {
        fail(ld, "not a GeoJSON FeatureCollection");
        goto out;
    }
    if (!features) {
        fail(ld, "the FeatureCollection has no features array");
        goto out;
    }
    if (ld->map->count == 0) {
        fail(ld, "the FeatureCollection has no features");
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* ---- indexes ---- */

/* After sorting: points the blocks at their strings, refuses duplicates, fills the hash table. */
static int
build_index(struct loader *ld)
{
    struct bh_blockmap *map = ld->map;
    size_t nslots = 16;
    int rc = 0;

    for (size_t i = 0; i < map->count; i++) {
        map->blocks[i].pub.id = map->strings + map->blocks[i].id_off;
        map->blocks[i].pub.name = map->strings + map->blocks[i].name_off;
    }
    qsort(map->blocks, map->count, sizeof(*map->blocks), compare_blocks);
    for (size_t i = 1; i < map->count; i++) {
        const struct block *a = &map->blocks[i - 1];
        const struct block *b = &map->blocks[i];

        if (compare_blocks(a, b) == 0) {
            rc = -EINVAL;
            fail(ld, "duplicate block_id \"%s\" (features[%zu] and features[%zu])", b->pub.id,
                 a->feature < b->feature ? a->feature : b->feature,
                 a->feature < b->feature ? b->feature : a->feature);
            goto out;
        }
    }
    while (nslots < map->count * 2)
        nslots *= 2;
    map->slots = calloc(nslots, sizeof(*map->slots));
    if (!map->slots) {
        rc = -ENOMEM;
        fail(ld, "out of memory");
        goto out;
    }
    map->slot_mask = nslots - 1;
    for (size_t i = 0; i < map->count; i++) {
        const struct block *b = &map->blocks[i];
        size_t s = hash_id(b->pub.id, b->id_len) & map->slot_mask;

        while (map->slots[s].id)
            s = (s + 1) & map->slot_mask;
        map->slots[s].id = b->pub.id;
        map->slots[s].len = (uint32_t)b->id_len;
        map->slots[s].index = (uint32_t)i;
    }
out:
    return rc;
}

static void
widen_bounds(struct bh_blockmap *map, const GEOSGeometry *g)
{
    double v;

    if (GEOSGeom_getXMin_r(map->geos, g, &v) == 1 && v < map->min_lon)
        map->min_lon = v;
    if (GEOSGeom_getYMin_r(map->geos, g, &v) == 1 && v < map->min_lat)
        map->min_lat = v;
    if (GEOSGeom_getXMax_r(map->geos, g, &v) == 1 && v > map->max_lon)
        map->max_lon = v;
    if (GEOSGeom_getYMax_r(map->geos, g, &v) == 1 && v > map->max_lat)
        map->max_lat = v;
}

static void
find_bounds(struct bh_blockmap *map)
{
    map->min_lon = map->min_lat = INFINITY;
    map->max_lon = map->max_lat = -INFINITY;
    for (size_t i = 0; i < map->count; i++)
        widen_bounds(map, map->blocks[i].geom);
}

/*
 * The STRtree of bh_blockmap_locate_slow, which only the tests and the
 * benchmark use: it is built on their first lookup, not at load (it took
 * about a tenth of the load). 0 or -EIO.
 */
static int
build_tree(struct bh_blockmap *map)
{
    GEOSContextHandle_t geos = map->geos;
    int rc = -EIO;

    map->tree = GEOSSTRtree_create_r(geos, 10);
    if (!map->tree)
        goto out;
    for (size_t i = 0; i < map->count; i++) {
        const GEOSGeometry *g = map->blocks[i].geom;
        /* The item is the index + 1, so that no item is NULL. */
        void *item = (void *)(uintptr_t)(i + 1);
        int parts =
            GEOSGeomTypeId_r(geos, g) == GEOS_MULTIPOLYGON ? GEOSGetNumGeometries_r(geos, g) : 0;

        if (parts <= 0)
            GEOSSTRtree_insert_r(geos, map->tree, g, item);
        for (int p = 0; p < parts; p++)
            GEOSSTRtree_insert_r(geos, map->tree, GEOSGetGeometryN_r(geos, g, p), item);
    }
    rc = 0;
out:
    return rc;
}

/* ---- the lookup grid ---- */

/*
 * bh_blockmap_locate answers from a grid of cells laid over the map's
 * bounding box, built at load time.
 *
 * Building. Blocks are taken in index order (ascending id). Each marks every
 * cell its boundary passes near: a segment marks, row by row, the columns of
 * its part within the row, the row and the columns widened by a margin. Then
 * its interior is scan-converted along the middle line of each row: a cell the
 * block did not mark and whose middle point the block covers holds no point of
 * the block's boundary, and is connected, so it lies wholly inside the block;
 * the block owns it, unless a block with a smaller index already does.
 *
 * The answer in a cell. Let O be the cell's owner, the smallest index covering
 * the whole cell. Any block that did not mark the cell covers all of it or
 * none of it, so it is O, or larger than O, or irrelevant. So the answer for a
 * point in the cell is the first of the blocks that marked the cell with an
 * index below O, in ascending order, that covers the point; else O; else
 * nothing. That is the smallest index covering the point: the rule, with a
 * point on an edge shared by two blocks going to the smaller id as before, and
 * with overlapping blocks (which a map may have) handled the same way. For the
 * department's tiling most cells are owned and have no candidates; a cell on
 * one edge has the two blocks that share it.
 *
 * The margin. A point is placed in a cell by a computation in doubles, so it
 * may lie outside the cell's exact rectangle by a rounding error (a few units
 * in the last place). Cells are marked for their rectangle widened by a
 * margin a million times that, so what a cell says holds for every point
 * looked up in it.
 *
 * A cell is 8 bytes (CELL_...): its owner, or the shape records of one
 * candidate and the owner, or of two candidates (the common case: an edge
 * shared by two blocks), or where its list is. A lookup in an owned cell reads
 * that one cell; on a boundary it reads the cell and the candidates' shape
 * records, which it prefetches together so that their cache misses overlap:
 * on a map far larger than the cache, misses are what a lookup costs.
 *
 * The test against a candidate. A shape record holds the block's rings as
 * they were given to GEOS (a header word: the block's index and its number of
 * rings, or 0 for a block GEOS should test; then for each ring a word with its
 * number of positions and the positions). rings_cover() tests the point
 * against them exactly or says it cannot, and then GEOS decides, through the
 * block's prepared geometry as bh_blockmap_locate_slow does: so the answer is
 * always GEOS's (see rings_cover and orientation).
 *
 * Memory: 8 bytes a cell, about 16 cells a block, the lists, and the shape
 * records (16 bytes a position). For the 50,000-block benchmark map that is
 * 7.8 MB of grid and 9.3 MB of records; for the 121-block world map, whose
 * grid has the minimum of 65,536 cells, 0.5 MB. See bh_blockmap_grid_info
 * and bench/RESULTS.md.
 */

/*
 * A cell while the grid is built: its owner (1 + index, or 0), and the blocks
 * whose boundary comes near it (its candidates), in ascending index: 1 + the
 * first (or 0), 1 + the second (or 0), or if there are more, BUILD_MORE and
 * where the last of them is in gb->more (which holds the second onwards, each
 * with where the one before it is); and 1 + the last, to see whether a block
 * has already noted the cell.
 */
struct build_cell {
    uint32_t owner, first, second, last;
};

#define BUILD_MORE 0x80000000u

struct build_more {
    uint32_t block;
    uint32_t before; /* 1 + where the one before is in gb->more, or 0 */
};

/* Where a block's boundary crosses the middle line of a row. */
struct grid_cross {
    double x;
    uint32_t row;
};

/* State while building the grid. */
struct grid_builder {
    struct bh_blockmap *map;
    struct build_cell *cells;
    struct build_more *more; /* the blocks past a cell's second, in lists from its last */
    size_t nmore, more_cap;
    uint32_t *list; /* one cell's candidates */
    size_t list_cap;
    struct grid_cross *cross; /* one block's */
    size_t ncross, cross_cap;
    double cell_w, cell_h;
    double margin_x, margin_y;
};

/* fmin and fmax without their NaN rules (no NaN gets here), which gcc does not inline. */
static inline double
min2(double a, double b)
{
    return a < b ? a : b;
}

static inline double
max2(double a, double b)
{
    return a > b ? a : b;
}

static inline uint32_t
grid_col(const struct bh_blockmap *map, double x)
{
    double t = (x - map->min_lon) * map->cells_per_lon;

    if (!(t > 0))
        return 0;
    if (t >= (double)map->grid_cols)
        return map->grid_cols - 1;
    return (uint32_t)t;
}

static inline uint32_t
grid_row(const struct bh_blockmap *map, double y)
{
    double t = (y - map->min_lat) * map->cells_per_lat;

    if (!(t > 0))
        return 0;
    if (t >= (double)map->grid_rows)
        return map->grid_rows - 1;
    return (uint32_t)t;
}

/*
 * Chooses the grid's size: GRID_CELLS_PER_BLOCK cells to a block of average
 * area (the area of every ring, over the block count), within the bounds.
 */
static void
grid_size(struct bh_blockmap *map)
{
    double width = map->max_lon - map->min_lon;
    double height = map->max_lat - map->min_lat;
    double most = (double)GRID_CELLS_PER_BLOCK * 4 * (double)map->count;
    double area = 0;
    double cells, side;

    for (size_t i = 0; i < map->count; i++) {
        const union word *w = &map->shapes[map->blocks[i].shape + 1];

        for (uint32_t k = 0; k < map->blocks[i].nrings; k++) {
            const union word *p = w + 1;
            uint32_t n = w->u[0];
            double twice = 0;

            /* The shoelace formula, about the first position to keep the products small. */
            for (uint32_t j = 1; j + 1 < n; j++)
                twice += (p[2 * j].d - p[0].d) * (p[2 * j + 3].d - p[1].d) -
                         (p[2 * j + 2].d - p[0].d) * (p[2 * j + 1].d - p[1].d);
            area += fabs(twice) / 2;
            w = p + 2 * n;
        }
    }
    cells = area > 0 ? width * height / (area / (double)map->count) * GRID_CELLS_PER_BLOCK : 0;
    if (cells > most)
        cells = most;
    if (cells > GRID_MAX_CELLS)
        cells = GRID_MAX_CELLS;
    if (!(cells >= GRID_MIN_CELLS))
        cells = GRID_MIN_CELLS;
    side = sqrt(width * height / cells);
    map->grid_cols = side > 0 && width / side < GRID_MAX_CELLS ? (uint32_t)ceil(width / side) : 1;
    map->grid_rows = side > 0 && height / side < GRID_MAX_CELLS ? (uint32_t)ceil(height / side) : 1;
    if (map->grid_cols < 1)
        map->grid_cols = 1;
    if (map->grid_rows < 1)
        map->grid_rows = 1;
    while ((uint64_t)map->grid_cols * map->grid_rows > GRID_MAX_CELLS) {
        if (map->grid_cols >= map->grid_rows)
            map->grid_cols = (map->grid_cols + 1) / 2;
        else
            map->grid_rows = (map->grid_rows + 1) / 2;
    }
    map->cells_per_lon = width > 0 ? map->grid_cols / width : 0;
    map->cells_per_lat = height > 0 ? map->grid_rows / height : 0;
}

/* Notes that the boundary of block INDEX comes near CELL. */
static inline int
grid_touch(struct loader *ld, struct grid_builder *gb, uint32_t index, uint32_t cell)
{
    struct build_cell *c = &gb->cells[cell];
    int rc = 0;

    if (c->last == index + 1)
        goto out;
    c->last = index + 1;
    if (c->first == 0) {
        c->first = index + 1;
        goto out;
    }
    if (c->second == 0) {
        c->second = index + 1;
        goto out;
    }
    /* A third: the second moves to gb->more too. */
    if (gb->more_cap - gb->nmore < 2) {
        size_t cap = gb->more_cap ? gb->more_cap * 2 : 4096;
        struct build_more *more = NULL;

        if (cap < BUILD_MORE)
            more = realloc(gb->more, cap * sizeof(*more));
        if (!more) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        gb->more = more;
        gb->more_cap = cap;
    }
    if (!(c->second & BUILD_MORE)) {
        gb->more[gb->nmore].block = c->second - 1;
        gb->more[gb->nmore].before = 0;
        c->second = BUILD_MORE | (uint32_t)gb->nmore++;
    }
    gb->more[gb->nmore].block = index;
    gb->more[gb->nmore].before = (c->second & ~BUILD_MORE) + 1;
    c->second = BUILD_MORE | (uint32_t)gb->nmore++;
out:
    return rc;
}

/*
 * Notes every cell that the segment (ax, ay)-(bx, by) of block INDEX passes
 * within the margin of: row by row, the part of the segment within the row
 * (widened by the margin), then the columns of that part (widened again).
 * Also notes where it crosses the middle line of each row, if it does (an
 * edge holds its lower end, so a ring crosses a line an even number of times).
 */
static int
grid_mark_segment(struct loader *ld, struct grid_builder *gb, uint32_t index, double ax, double ay,
                  double bx, double by)
{
    const struct bh_blockmap *map = gb->map;
    uint32_t r0 = grid_row(map, min2(ay, by) - gb->margin_y);
    uint32_t r1 = grid_row(map, max2(ay, by) + gb->margin_y);
    double dx = bx - ax;
    double per_y = ay != by ? 1 / (by - ay) : 0;
    int rc = 0;

    for (uint32_t r = r0; r <= r1; r++) {
        double x0 = min2(ax, bx), x1 = max2(ax, bx);
        double middle = map->min_lat + (r + 0.5) * gb->cell_h;
        uint32_t c0, c1;

        if ((ay > middle) != (by > middle)) {
            if (gb->ncross == gb->cross_cap) {
                size_t cap = gb->cross_cap ? gb->cross_cap * 2 : 256;
                struct grid_cross *cross = realloc(gb->cross, cap * sizeof(*cross));

                if (!cross) {
                    rc = -ENOMEM;
                    fail(ld, "out of memory");
                    goto out;
                }
                gb->cross = cross;
                gb->cross_cap = cap;
            }
            gb->cross[gb->ncross].x = ax + (middle - ay) * per_y * dx;
            gb->cross[gb->ncross].row = r;
            gb->ncross++;
        }
        if (ay != by && r0 != r1) {
            double lo = map->min_lat + r * gb->cell_h - gb->margin_y;
            double hi = map->min_lat + (r + 1) * gb->cell_h + gb->margin_y;
            double t0 = min2(max2((lo - ay) * per_y, 0), 1);
            double t1 = min2(max2((hi - ay) * per_y, 0), 1);

            x0 = ax + t0 * dx;
            x1 = ax + t1 * dx;
            if (x0 > x1) {
                double t = x0;

                x0 = x1;
                x1 = t;
            }
        }
        c0 = grid_col(map, x0 - gb->margin_x);
        c1 = grid_col(map, x1 + gb->margin_x);
        for (uint32_t c = c0; c <= c1; c++) {
            rc = grid_touch(ld, gb, index, r * map->grid_cols + c);
            if (rc < 0)
                goto out;
        }
    }
out:
    return rc;
}

static inline bool
cross_before(const struct grid_cross *a, const struct grid_cross *b)
{
    return a->row < b->row || (a->row == b->row && a->x < b->x);
}

static int
compare_cross(const void *pa, const void *pb)
{
    const struct grid_cross *a = pa, *b = pb;

    return cross_before(a, b) ? -1 : cross_before(b, a);
}

/* By row, then x. */
static void
sort_cross(struct grid_cross *v, size_t n)
{
    if (n > 32) {
        qsort(v, n, sizeof(*v), compare_cross);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        struct grid_cross x = v[i];
        size_t j = i;

        for (; j > 0 && cross_before(&x, &v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/*
 * Block INDEX: notes the cells its boundary comes near, then makes it the
 * owner of every other cell whose middle it covers, unless a block with a
 * smaller index already owns the cell.
 */
static int
grid_block(struct loader *ld, struct grid_builder *gb, uint32_t index)
{
    struct bh_blockmap *map = gb->map;
    const struct block *b = &map->blocks[index];
    const union word *w = &map->shapes[b->shape + 1];
    int rc = 0;

    gb->ncross = 0;
    for (uint32_t k = 0; k < b->nrings; k++) {
        const union word *p = w + 1;
        uint32_t n = w->u[0];

        for (uint32_t j = 0; j + 1 < n; j++) {
            rc = grid_mark_segment(ld, gb, index, p[2 * j].d, p[2 * j + 1].d, p[2 * j + 2].d,
                                   p[2 * j + 3].d);
            if (rc < 0)
                goto out;
        }
        w = p + 2 * n;
    }
    sort_cross(gb->cross, gb->ncross);
    /* In a row, between the 1st and 2nd crossing, the 3rd and 4th...: inside. */
    for (size_t i = 0; i + 1 < gb->ncross; i += 2) {
        const struct grid_cross *from = &gb->cross[i], *to = &gb->cross[i + 1];
        uint32_t c1 = grid_col(map, to->x);

        for (uint32_t c = grid_col(map, from->x); c <= c1; c++) {
            uint32_t cell = from->row * map->grid_cols + c;
            double x = map->min_lon + (c + 0.5) * gb->cell_w;

            if (gb->cells[cell].last != index + 1 && gb->cells[cell].owner == 0 && x > from->x &&
                x < to->x)
                gb->cells[cell].owner = index + 1;
        }
    }
out:
    return rc;
}

/* Cell C's candidates, in gb->list, ascending; *N gets how many. */
static int
grid_candidates(struct loader *ld, struct grid_builder *gb, const struct build_cell *c, uint32_t *n)
{
    uint32_t k = 0;
    int rc = 0;

    *n = 0;
    if (c->first == 0)
        goto out;
    if (!(c->second & BUILD_MORE)) {
        gb->list[0] = c->first - 1;
        gb->list[1] = c->second - 1;
        *n = c->second ? 2 : 1;
        goto out;
    }
    for (uint32_t m = (c->second & ~BUILD_MORE) + 1; m; m = gb->more[m - 1].before)
        k++;
    if (gb->list_cap < k + 1) {
        uint32_t *list = malloc((k + 1) * sizeof(*list));

        if (!list) {
            rc = -ENOMEM;
            fail(ld, "out of memory");
            goto out;
        }
        if (gb->list_cap > 2)
            free(gb->list);
        gb->list = list;
        gb->list_cap = k + 1;
    }
    gb->list[0] = c->first - 1;
    *n = k + 1;
    for (uint32_t m = (c->second & ~BUILD_MORE) + 1; m; m = gb->more[m - 1].before)
        gb->list[k--] = gb->more[m - 1].block;
out:
    return rc;
}

/*
 * Encodes every cell as CELL_... says, from its owner and those of its
 * candidates below the owner (all of them if it has none). The cells become
 * map->cells in place: the 8-byte cell C overwrites half of the 16-byte build
 * cell C / 2, which has been read already. (It is written as uint32_t, the
 * type of the build cells' members, so that the compiler sees the overlap.)
 */
static int
grid_encode(struct loader *ld, struct grid_builder *gb)
{
    struct bh_blockmap *map = gb->map;
    size_t ncells = (size_t)map->grid_cols * map->grid_rows;
    uint32_t *out = (uint32_t *)gb->cells;
    size_t cap = 0;
    int rc = 0;

    for (size_t c = 0; c < ncells; c++) {
        struct build_cell bc = gb->cells[c];
        struct grid_cell cell = {.a = bc.owner, .b = 0};
        uint32_t n;

        rc = grid_candidates(ld, gb, &bc, &n);
        if (rc < 0)
            goto out;
        while (n > 0 && bc.owner != 0 && gb->list[n - 1] + 1 >= bc.owner)
            n--;
        if (n == 1) {
            cell.a = CELL_ONE | map->blocks[gb->list[0]].shape;
            cell.b = bc.owner;
        } else if (n == 2 && bc.owner == 0) {
            cell.a = CELL_TWO | map->blocks[gb->list[0]].shape;
            cell.b = map->blocks[gb->list[1]].shape;
        } else if (n > 0) {
            if (cap - map->nlists < n + 2) {
                uint32_t *lists = NULL;

                cap = cap ? cap * 2 : 4096;
                while (cap - map->nlists < n + 2)
                    cap *= 2;
                if (cap <= UINT32_MAX)
                    lists = realloc(map->lists, cap * sizeof(*lists));
                if (!lists) {
                    rc = -ENOMEM;
                    fail(ld, "out of memory");
                    goto out;
                }
                map->lists = lists;
            }
            map->lists[map->nlists] = n;
            for (uint32_t i = 0; i < n; i++)
                map->lists[map->nlists + 1 + i] = map->blocks[gb->list[i]].shape;
            map->lists[map->nlists + n + 1] = bc.owner;
            cell.a = CELL_LIST;
            cell.b = (uint32_t)map->nlists;
            map->nlists += n + 2;
        }
        out[2 * c] = cell.a;
        out[2 * c + 1] = cell.b;
    }
    /* The cells take half the memory now; if it cannot shrink, it stays as it is. */
    map->cells = realloc(gb->cells, ncells * sizeof(*map->cells));
    if (!map->cells)
        map->cells = (struct grid_cell *)gb->cells;
    gb->cells = NULL;
out:
    return rc;
}

static int
build_grid(struct loader *ld)
{
    struct bh_blockmap *map = ld->map;
    uint32_t list[2];
    struct grid_builder gb = {.map = map, .list = list, .list_cap = 2};
    struct timespec t0, t1;
    union word *shapes;
    int rc = -EINVAL;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    if (map->count >= CELL_PAYLOAD) {
        fail(ld, "the map has too many blocks");
        goto out;
    }
    /* The shape records learn their blocks' indexes, and get room to prefetch past the last. */
    rc = reserve_shapes(ld, SHAPE_PREFETCH);
    if (rc < 0)
        goto out;
    memset(&map->shapes[map->nshapes], 0, SHAPE_PREFETCH * sizeof(*map->shapes));
    for (size_t i = 0; i < map->count; i++)
        map->shapes[map->blocks[i].shape].u[0] = (uint32_t)i;
    grid_size(map);
    gb.cell_w = (map->max_lon - map->min_lon) / map->grid_cols;
    gb.cell_h = (map->max_lat - map->min_lat) / map->grid_rows;
    /*
     * A million times the rounding errors in placing a point in a cell or a
     * segment across cells (a few units in the last place of the coordinates).
     */
    gb.margin_x = 1e-6 * gb.cell_w + 1e-10 * max2(fabs(map->min_lon), fabs(map->max_lon));
    gb.margin_y = 1e-6 * gb.cell_h + 1e-10 * max2(fabs(map->min_lat), fabs(map->max_lat));
    rc = -ENOMEM;
    gb.cells = calloc((size_t)map->grid_cols * map->grid_rows, sizeof(*gb.cells));
    if (!gb.cells) {
        fail(ld, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < map->count; i++) {
        rc = grid_block(ld, &gb, (uint32_t)i);
        if (rc < 0)
            goto out;
    }
    rc = grid_encode(ld, &gb);
    if (rc < 0)
        goto out;
    /* Give back what the shape records grew past their size. */
    shapes = realloc(map->shapes, (map->nshapes + SHAPE_PREFETCH) * sizeof(*shapes));
    if (shapes)
        map->shapes = shapes;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    map->grid_cpu = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
out:
    free(gb.cells);
    free(gb.more);
    if (gb.list != list)
        free(gb.list);
    free(gb.cross);
    return rc;
}

/* ---- public ---- */

static void
loader_free(struct loader *ld)
{
    free(ld->coords);
    free(ld->key.data);
    free(ld->id_text.data);
    free(ld->name_text.data);
    free(ld->type_text.data);
    free(ld->nodes);
    if (ld->c_locale)
        freelocale(ld->c_locale);
}

int
bh_blockmap_load_string(struct bh_blockmap **out, const char *name, const char *json, size_t len,
                        char *errstr, size_t errstr_size)
{
    struct loader ld = {
        .name = name ? name : "block map",
        .errstr = errstr,
        .errstr_size = errstr_size,
        .base = json ? json : "",
        .p = json ? json : "",
        .end = json ? json + len : "",
        .feature = SIZE_MAX,
    };
    struct bh_blockmap *map = NULL;
    int rc = -EINVAL;

    if (!out || (!json && len > 0)) {
        set_error(errstr, errstr_size, "%s: invalid arguments", ld.name);
        goto out;
    }
    *out = NULL;
    rc = -ENOMEM;
    map = calloc(1, sizeof(*map));
    if (!map) {
        set_error(errstr, errstr_size, "%s: out of memory", ld.name);
        goto out;
    }
    ld.map = map;
    map->geos = GEOS_init_r();
    if (!map->geos) {
        set_error(errstr, errstr_size, "%s: GEOS_init_r failed", ld.name);
        goto out;
    }
    GEOSContext_setErrorMessageHandler_r(map->geos, on_geos_message, map);
    GEOSContext_setNoticeMessageHandler_r(map->geos, on_geos_message, map);
    rc = load_document(&ld);
    if (rc < 0)
        goto out;
    rc = build_index(&ld);
    if (rc < 0)
        goto out;
    find_bounds(map);
    rc = build_grid(&ld);
    if (rc < 0)
        goto out;
    *out = map;
    map = NULL;
out:
    loader_free(&ld);
    bh_blockmap_free(map);
    return rc;
}

int
bh_blockmap_check_json(const char *name, const char *json, size_t len, char *errstr,
                       size_t errstr_size)
{
    struct loader ld = {
        .name = name ? name : "block map",
        .errstr = errstr,
        .errstr_size = errstr_size,
        .base = json ? json : "",
        .p = json ? json : "",
        .end = json ? json + len : "",
        .feature = SIZE_MAX,
    };
    int rc = -EINVAL;

    if (!json && len > 0) {
        set_error(errstr, errstr_size, "%s: invalid arguments", ld.name);
        goto out;
    }
    rc = parse_value(&ld, false);
    if (rc < 0)
        goto out;
    skip_space(&ld);
    if (ld.p < ld.end)
        rc = syntax(&ld, ld.p, "end of input expected");
out:
    loader_free(&ld);
    return rc;
}

int
bh_blockmap_load(struct bh_blockmap **out, const char *path, char *errstr, size_t errstr_size)
{
    struct stat st;
    char *buf = NULL;
    char ebuf[128];
    size_t len = 0;
    int fd = -1;
    int rc = -EINVAL;

    if (!out || !path) {
        set_error(errstr, errstr_size, "block map: invalid arguments");
        goto out;
    }
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        set_error(errstr, errstr_size, "%s: %s", path, strerror_r(-rc, ebuf, sizeof(ebuf)));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(errstr, errstr_size, "%s: not a regular file", path);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = -ENOMEM;
        set_error(errstr, errstr_size, "%s: out of memory", path);
        goto out;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            set_error(errstr, errstr_size, "%s: %s", path, strerror_r(-rc, ebuf, sizeof(ebuf)));
            goto out;
        }
        if (r == 0)
            break; /* shrank under us: what is there will fail to parse */
        len += (size_t)r;
    }
    rc = bh_blockmap_load_string(out, path, buf, len, errstr, errstr_size);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

void
bh_blockmap_free(struct bh_blockmap *map)
{
    if (!map)
        return;
    if (map->tree)
        GEOSSTRtree_destroy_r(map->geos, map->tree);
    for (size_t i = 0; i < map->count; i++) {
        if (map->blocks[i].prep)
            GEOSPreparedGeom_destroy_r(map->geos, map->blocks[i].prep);
        GEOSGeom_destroy_r(map->geos, map->blocks[i].geom);
    }
    if (map->geos)
        GEOS_finish_r(map->geos);
    free(map->blocks);
    free(map->slots);
    free(map->strings);
    free(map->shapes);
    free(map->cells);
    free(map->lists);
    free(map);
}

size_t
bh_blockmap_count(const struct bh_blockmap *map)
{
    return map ? map->count : 0;
}

const struct bh_block *
bh_blockmap_at(const struct bh_blockmap *map, size_t index)
{
    if (!map || index >= map->count)
        return NULL;
    return &map->blocks[index].pub;
}

void
bh_blockmap_bounds(const struct bh_blockmap *map, double *min_lon, double *min_lat, double *max_lon,
                   double *max_lat)
{
    *min_lon = map ? map->min_lon : NAN;
    *min_lat = map ? map->min_lat : NAN;
    *max_lon = map ? map->max_lon : NAN;
    *max_lat = map ? map->max_lat : NAN;
}

const struct bh_block *
bh_blockmap_find(const struct bh_blockmap *map, const char *id, size_t len)
{
    size_t s;

    if (!map || !id || len == 0)
        return NULL;
    s = hash_id(id, len) & map->slot_mask;
    for (; map->slots[s].id; s = (s + 1) & map->slot_mask) {
        if (map->slots[s].len == len && memcmp(map->slots[s].id, id, len) == 0)
            return &map->blocks[map->slots[s].index].pub;
    }
    return NULL;
}

struct locate_query {
    const struct bh_blockmap *map;
    const GEOSGeometry *point;
    size_t best; /* index + 1 of the smallest covering block so far; 0 = none */
};

static void
on_candidate(void *item, void *userdata)
{
    struct locate_query *q = userdata;
    size_t index = (size_t)(uintptr_t)item;

    /* Only a smaller id can win, so skip the test for the others (and repeats). */
    if (q->best != 0 && index >= q->best)
        return;
    if (GEOSPreparedCovers_r(q->map->geos, q->map->blocks[index - 1].prep, q->point) == 1)
        q->best = index;
}

/*
 * The plain lookup: the STRtree's candidates, each tested by GEOS. The tree is
 * built on the first call (the map is used from one thread at a time).
 */
const struct bh_block *
bh_blockmap_locate_slow(const struct bh_blockmap *map, double lon, double lat)
{
    struct locate_query q = {.map = map};
    GEOSGeometry *point;

    if (!map || !isfinite(lon) || !isfinite(lat))
        return NULL;
    if (lon < map->min_lon || lon > map->max_lon || lat < map->min_lat || lat > map->max_lat)
        return NULL;
    if (!map->tree && build_tree((struct bh_blockmap *)map) < 0)
        return NULL;
    point = GEOSGeom_createPointFromXY_r(map->geos, lon, lat);
    if (!point)
        return NULL;
    q.point = point;
    GEOSSTRtree_query_r(map->geos, map->tree, point, on_candidate, &q);
    GEOSGeom_destroy_r(map->geos, point);
    return q.best ? &map->blocks[q.best - 1].pub : NULL;
}

/*
 * The orientation of p = (x, y) with respect to the segment a -> b: 1 if p is
 * to its left, -1 if to its right, 0 if too close to call (which includes on
 * its line). The determinant d = l - r is computed in doubles, with an error
 * under 3.4e-16 (|l| + |r|) (Shewchuk, "Adaptive Precision Floating-Point
 * Arithmetic and Fast Robust Geometric Predicates", 1997, orient2d). It is
 * trusted only when it exceeds ORIENTATION_SAFE (1e-14) times
 * |l| + |r| + 2 |u w|, and is far from underflow: then its sign is the exact
 * one, and the exact determinant exceeds 0.96e-14 of that bound. GEOS's
 * orientation test (CGAlgorithmsDD::orientationIndex) then gives the same
 * sign: it answers either from a floating-point filter that is exact when it
 * answers, or from the determinant of b - a and p - b in double-double, whose
 * products are bounded by |l| + |r| + 2 |u w| (p - b is (p - a) - (b - a))
 * and whose error is about 1e-30 of them.
 */
static inline int
orientation(double ax, double ay, double bx, double by, double x, double y)
{
    double u = bx - ax, w = by - ay;
    double l = u * (y - ay), r = w * (x - ax);
    double d = l - r;
    double bound = ORIENTATION_SAFE * (fabs(l) + fabs(r) + 2 * fabs(u * w));

    if (fabs(d) > bound && fabs(d) > 1e-280)
        return d > 0 ? 1 : -1;
    return 0;
}

/*
 * Whether the block of shape record S covers p = (x, y), by its rings: 1 if
 * it does (p is inside or on the boundary), 0 if it does not, -1 if that is
 * too close to call in doubles or the block is left to GEOS (then GEOS
 * decides).
 *
 * A ray from p towards +x crosses the rings an odd number of times iff p is
 * inside (for a valid Polygon or MultiPolygon, counting every ring of every
 * part); an edge counts if one end is above p and the other not, and the ray
 * passes it. That is the ray-crossing test GEOS's point locator makes
 * (RayCrossingCounter), and this one makes the same orientation tests: one
 * for each edge with an end above p and the other not, unless both ends are
 * left of p or p is one of them. Every other test is an exact comparison. So
 * if every orientation decides, both tests compute with exact signs, and both
 * give the exact answer: the same one. A point on the boundary is either found
 * exactly (a vertex, or on a horizontal edge) or lies on the line of an edge
 * with an end above it and one not, which orientation() never decides.
 */
static int
rings_cover(const union word *s, double x, double y)
{
    uint32_t nrings = s[0].u[1];
    const union word *w = s + 1;
    bool inside = false;

    if (nrings == 0)
        return -1;
    for (uint32_t k = 0; k < nrings; k++) {
        const union word *p = w + 1;
        const union word *last = p + 2 * (w->u[0] - 1);

        for (w = last + 2; p < last; p += 2) {
            double ax = p[0].d, ay = p[1].d, bx = p[2].d, by = p[3].d;
            int o;

            if ((ay > y) == (by > y)) {
                /* No crossing; the point can only be on it as a vertex or a horizontal edge. */
                if (ay == y && (ax == x || (by == y && (ax <= x) != (bx < x))))
                    return 1;
                continue;
            }
            if (ax < x && bx < x)
                continue; /* passes left of the point */
            if ((ax == x && ay == y) || (bx == x && by == y))
                return 1;
            o = orientation(ax, ay, bx, by, x, y);
            if (o == 0)
                return -1;
            /* Upward, the ray passes it if the point is to its left; downward, to its right. */
            if ((o > 0) == (by > ay))
                inside = !inside;
        }
    }
    return inside;
}

static inline void
prefetch_shape(const union word *s)
{
    __builtin_prefetch(s);
    __builtin_prefetch(s + 8);
    __builtin_prefetch(s + 16);
}

/*
 * The first of the N blocks of shape records RECORDS (ascending index) that
 * covers (lon, lat), else the block OWNER - 1, else NULL. Their records are
 * fetched all at once, so that their cache misses overlap.
 */
static const struct bh_block *
locate_among(const struct bh_blockmap *map, const uint32_t *records, uint32_t n, uint32_t owner,
             double lon, double lat)
{
    const struct bh_block *found = NULL;
    GEOSGeometry *point = NULL;

    for (uint32_t k = 0; k < n; k++)
        prefetch_shape(&map->shapes[records[k]]);
    for (uint32_t k = 0; k < n; k++) {
        const union word *s = &map->shapes[records[k]];
        int covers = rings_cover(s, lon, lat);

        if (covers < 0) {
            if (!point)
                point = GEOSGeom_createPointFromXY_r(map->geos, lon, lat);
            if (!point)
                goto out;
            covers = GEOSPreparedCovers_r(map->geos, map->blocks[s->u[0]].prep, point) == 1;
        }
        if (covers) {
            found = &map->blocks[s->u[0]].pub;
            goto out;
        }
    }
    if (owner)
        found = &map->blocks[owner - 1].pub;
out:
    if (point)
        GEOSGeom_destroy_r(map->geos, point);
    return found;
}

const struct bh_block *
bh_blockmap_locate(const struct bh_blockmap *map, double lon, double lat)
{
    const struct grid_cell *cell;
    const uint32_t *list;
    uint32_t records[2];

    if (!map || !isfinite(lon) || !isfinite(lat))
        return NULL;
    if (lon < map->min_lon || lon > map->max_lon || lat < map->min_lat || lat > map->max_lat)
        return NULL;
    cell = &map->cells[(size_t)grid_row(map, lat) * map->grid_cols + grid_col(map, lon)];
    switch (cell->a & CELL_TAG) {
    case CELL_ONE:
        records[0] = cell->a & CELL_PAYLOAD;
        return locate_among(map, records, 1, cell->b, lon, lat);
    case CELL_TWO:
        records[0] = cell->a & CELL_PAYLOAD;
        records[1] = cell->b;
        return locate_among(map, records, 2, 0, lon, lat);
    case CELL_LIST:
        list = &map->lists[cell->b];
        return locate_among(map, list + 1, list[0], list[list[0] + 1], lon, lat);
    default:
        return cell->a ? &map->blocks[cell->a - 1].pub : NULL;
    }
}

const struct bh_block *
bh_blockmap_resolve(const struct bh_blockmap *map, const char *grid, size_t grid_len,
                    bool has_point, double lon, double lat)
{
    const struct bh_block *b = NULL;

    if (grid)
        b = bh_blockmap_find(map, grid, grid_len);
    if (!b && has_point)
        b = bh_blockmap_locate(map, lon, lat);
    return b;
}

void
bh_blockmap_grid_info(const struct bh_blockmap *map, struct bh_blockmap_grid_info *info)
{
    size_t ncells;

    memset(info, 0, sizeof(*info));
    if (!map)
        return;
    ncells = (size_t)map->grid_cols * map->grid_rows;
    info->cols = map->grid_cols;
    info->rows = map->grid_rows;
    for (size_t c = 0; c < ncells; c++) {
        const struct grid_cell *cell = &map->cells[c];

        switch (cell->a & CELL_TAG) {
        case CELL_ONE:
            info->list_cells++;
            info->list_entries++;
            break;
        case CELL_TWO:
            info->list_cells++;
            info->list_entries += 2;
            break;
        case CELL_LIST:
            info->list_cells++;
            info->list_entries += map->lists[cell->b];
            break;
        default:
            info->owned_cells += cell->a != 0;
            info->empty_cells += cell->a == 0;
        }
    }
    info->grid_bytes = ncells * sizeof(*map->cells) + map->nlists * sizeof(*map->lists);
    info->rings_bytes = (map->nshapes + SHAPE_PREFETCH) * sizeof(*map->shapes);
    info->build_cpu = map->grid_cpu;
}
