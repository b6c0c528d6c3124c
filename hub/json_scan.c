/*
 * The JSON scanner (see json_scan.h). It reads the text in one pass, checking
 * as it goes; a value the caller does not want is checked and skipped by
 * bh_json_value, iteratively, so that deep nesting costs no stack.
 *
 * Numbers are converted only where the caller records them, exactly as
 * strtod does in the C locale: a mantissa of at most 2^53 with a power of ten
 * of at most 22 is one correctly rounded division or multiplication; anything
 * else goes to strtod_l. Unlike jansson, which refused 1e400 or an integer
 * past 2^63 anywhere in the document, the scanner does not limit the size of
 * numbers it skips.
 */
#include "json_scan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "utf8.h"

void
bh_json_set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (!errstr || errstr_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

void
bh_json_scan_init(struct bh_json_scan *s, const char *name, const char *json, size_t len,
                  char *errstr, size_t errstr_size)
{
    memset(s, 0, sizeof(*s));
    s->name = name;
    s->errstr = errstr;
    s->errstr_size = errstr_size;
    s->base = s->p = json ? json : "";
    s->end = json ? json + len : s->base;
}

void
bh_json_scan_free(struct bh_json_scan *s)
{
    free(s->key.data);
    free(s->nodes);
    if (s->c_locale)
        freelocale(s->c_locale);
}

static int
out_of_memory(struct bh_json_scan *s)
{
    if (s->out_of_memory)
        s->out_of_memory(s);
    else
        bh_json_set_error(s->errstr, s->errstr_size, "%s: out of memory", s->name);
    return -ENOMEM;
}

int
bh_json_syntax(struct bh_json_scan *s, const char *at, const char *fmt, ...)
{
    char what[128];
    size_t line = 1;
    size_t column = 1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    for (const char *c = s->base; c < at && c < s->end; c++) {
        if (*c == '\n') {
            line++;
            column = 1;
        } else if (((unsigned char)*c & 0xc0) != 0x80) {
            column++; /* count characters, not UTF-8 continuation bytes */
        }
    }
    bh_json_set_error(s->errstr, s->errstr_size, "%s:%zu:%zu: not valid JSON: %s", s->name, line,
                      column, what);
    return -EINVAL;
}

int
bh_json_unexpected(struct bh_json_scan *s)
{
    unsigned char c;

    if (s->p >= s->end)
        return bh_json_syntax(s, s->p, "unexpected end of input");
    c = (unsigned char)*s->p;
    if (c > ' ' && c < 0x7f)
        return bh_json_syntax(s, s->p, "unexpected '%c'", c);
    return bh_json_syntax(s, s->p, "unexpected byte 0x%02x", c);
}

int
bh_json_comma_expected(struct bh_json_scan *s, char close)
{
    if (s->p >= s->end)
        return bh_json_unexpected(s);
    if (bh_json_starts_value(*s->p))
        return bh_json_syntax(s, s->p, "',' expected");
    return bh_json_syntax(s, s->p, "',' or '%c' expected", close);
}

static inline bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Appends N bytes to T, keeping it NUL-terminated. */
static int
text_append(struct bh_json_scan *s, struct bh_json_text *t, const char *from, size_t n)
{
    if (t->cap - t->len < n + 1) {
        size_t cap = t->cap ? t->cap : 64;
        char *data;

        while (cap - t->len < n + 1)
            cap *= 2;
        data = realloc(t->data, cap);
        if (!data)
            return out_of_memory(s);
        t->data = data;
        t->cap = cap;
    }
    if (n > 0)
        memcpy(t->data + t->len, from, n);
    t->len += n;
    t->data[t->len] = '\0';
    return 0;
}

int
bh_json_string(struct bh_json_scan *s, struct bh_json_text *dst)
{
    const unsigned char *end = (const unsigned char *)s->end;
    const unsigned char *q = (const unsigned char *)s->p + 1;
    const unsigned char *run = q; /* the bytes from here to Q go to DST as they are */
    int rc;

    if (dst) {
        dst->len = 0;
        rc = text_append(s, dst, NULL, 0);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        char utf8[4];
        size_t n;
        uint32_t cp;
        int len;

        if (q >= end)
            return bh_json_syntax(s, (const char *)q, "unterminated string");
        if (*q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') {
            q++;
            continue;
        }
        if (*q >= 0x80) {
            n = bh_utf8_seq((const char *)q, (size_t)(end - q));
            if (n == 0)
                return bh_json_syntax(s, (const char *)q, "invalid UTF-8 (byte 0x%02x) in a string",
                                      *q);
            q += n;
            continue;
        }
        if (*q < 0x20)
            return bh_json_syntax(s, (const char *)q, "control character 0x%02x in a string", *q);
        if (dst && q > run) {
            rc = text_append(s, dst, (const char *)run, (size_t)(q - run));
            if (rc < 0)
                return rc;
        }
        if (*q == '"')
            break;
        /* an escape */
        if (end - q < 2)
            return bh_json_syntax(s, (const char *)end, "unterminated string");
        len = bh_json_escape(q, end, &cp);
        switch (len) {
        case BH_JSON_ESCAPE_INVALID:
            return bh_json_syntax(s, (const char *)q, "invalid escape in a string");
        case BH_JSON_ESCAPE_HEX:
            return bh_json_syntax(s, (const char *)q, "invalid \\u escape");
        case BH_JSON_ESCAPE_SURROGATE:
            return bh_json_syntax(s, (const char *)q,
                                  "invalid \\u escape: a lone surrogate \\u%04lX",
                                  (unsigned long)cp);
        case BH_JSON_ESCAPE_NUL:
            return bh_json_syntax(s, (const char *)q, "\\u0000 is not allowed");
        }
        q += len;
        run = q;
        if (dst) {
            rc = text_append(s, dst, utf8, bh_utf8_put(utf8, cp));
            if (rc < 0)
                return rc;
        }
    }
    s->p = (const char *)q + 1;
    return 0;
}

/* 10^0 ... 10^22: the powers of ten a double holds exactly. */
static const double exact_powers_of_ten[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* The number from START to END, by strtod in the C locale. */
static int
slow_number(struct bh_json_scan *s, const char *start, const char *end, double *value)
{
    size_t len = (size_t)(end - start);
    char small[64];
    char *copy = len < sizeof(small) ? small : malloc(len + 1);

    if (!s->c_locale)
        s->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!copy || !s->c_locale) {
        if (copy != small)
            free(copy);
        return out_of_memory(s);
    }
    memcpy(copy, start, len);
    copy[len] = '\0';
    *value = strtod_l(copy, NULL, s->c_locale);
    if (copy != small)
        free(copy);
    return 0;
}

/*
 * At a number: checks it and moves past it. With VALUE, *VALUE gets it, as
 * strtod would read it (so possibly infinite).
 */
static int
scan_number(struct bh_json_scan *s, double *value)
{
    const char *start = s->p;
    const char *q = start;
    const char *end = s->end;
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
        return bh_json_syntax(s, start, "invalid number");
    if (*q == '0') {
        if (++q < end && is_digit(*q))
            return bh_json_syntax(s, start, "invalid number (a leading zero)");
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
            return bh_json_syntax(s, start, "invalid number");
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
            return bh_json_syntax(s, start, "invalid number");
        for (; q < end && is_digit(*q); q++) {
            if (e < 100000)
                e = e * 10 + (*q - '0');
        }
        exponent += minus ? -e : e;
    }
    s->p = q;
    if (!value)
        return 0;
    if (!exact || mantissa > (UINT64_C(1) << 53) || exponent < -22 || exponent > 22) {
        if (exact && mantissa == 0)
            *value = negative ? -0.0 : 0.0;
        else
            return slow_number(s, start, q, value);
        return 0;
    }
    /* Both exact: one correctly rounded operation, as strtod rounds. */
    d = (double)mantissa;
    d = exponent < 0 ? d / exact_powers_of_ten[-exponent] : d * exact_powers_of_ten[exponent];
    *value = negative ? -d : d;
    return 0;
}

static int
scan_literal(struct bh_json_scan *s)
{
    static const char *const words[] = {"true", "false", "null"};
    const char *word = words[*s->p == 't' ? 0 : *s->p == 'f' ? 1 : 2];
    size_t len = strlen(word);

    if ((size_t)(s->end - s->p) < len || memcmp(s->p, word, len) != 0)
        return bh_json_syntax(s, s->p, "invalid literal (true, false or null expected)");
    s->p += len;
    return 0;
}

/* At an object's member: reads its key (into s->key) and the ':'. */
static int
scan_key(struct bh_json_scan *s, bool first)
{
    int rc;

    bh_json_skip_space(s);
    if (s->p >= s->end)
        return bh_json_unexpected(s);
    if (*s->p != '"')
        return bh_json_syntax(s, s->p, first ? "string or '}' expected" : "string expected");
    rc = bh_json_string(s, &s->key);
    if (rc < 0)
        return rc;
    bh_json_skip_space(s);
    if (s->p >= s->end || *s->p != ':')
        return s->p >= s->end ? bh_json_unexpected(s) : bh_json_syntax(s, s->p, "':' expected");
    s->p++;
    return 0;
}

/* Appends a node for a value at DEPTH levels into the array being recorded. */
static int
add_node(struct bh_json_scan *s, enum bh_json_node_kind kind, double number, size_t depth)
{
    struct bh_json_node *n;

    if (s->nnodes == s->nodes_cap) {
        size_t cap = s->nodes_cap ? s->nodes_cap * 2 : 256;
        struct bh_json_node *nodes =
            cap < BH_JSON_NO_NODE ? realloc(s->nodes, cap * sizeof(*nodes)) : NULL;

        if (!nodes)
            return out_of_memory(s);
        s->nodes = nodes;
        s->nodes_cap = cap;
    }
    n = &s->nodes[s->nnodes];
    n->number = number;
    n->count = 0;
    n->kind = (uint8_t)kind;
    s->nnodes++;
    n->next = (uint32_t)s->nnodes; /* an array's is set when it closes */
    if (depth > 0)
        s->nodes[s->open[depth - 1]].count++;
    return 0;
}

static int
value(struct bh_json_scan *s, bool record)
{
    char kinds[BH_JSON_MAX_DEPTH]; /* '[' or '{' for each open container */
    size_t depth = 0;
    double number;
    int rc;

    for (;;) {
        /* at a value */
        bh_json_skip_space(s);
        if (s->p >= s->end)
            return bh_json_unexpected(s);
        switch (*s->p) {
        case '[':
            if (depth == BH_JSON_MAX_DEPTH)
                return bh_json_syntax(s, s->p, "nested more than %d deep", BH_JSON_MAX_DEPTH);
            if (record) {
                rc = add_node(s, BH_JSON_ARRAY, 0, depth);
                if (rc < 0)
                    return rc;
                s->open[depth] = (uint32_t)(s->nnodes - 1);
            }
            kinds[depth++] = '[';
            s->p++;
            bh_json_skip_space(s);
            if (s->p < s->end && *s->p == ']') {
                s->p++;
                depth--;
                break;
            }
            continue;
        case '{':
            if (record) {
                rc = add_node(s, BH_JSON_OTHER, 0, depth);
                if (rc == 0)
                    rc = value(s, false);
                if (rc < 0)
                    return rc;
                break;
            }
            if (depth == BH_JSON_MAX_DEPTH)
                return bh_json_syntax(s, s->p, "nested more than %d deep", BH_JSON_MAX_DEPTH);
            kinds[depth++] = '{';
            s->p++;
            bh_json_skip_space(s);
            if (s->p < s->end && *s->p == '}') {
                s->p++;
                depth--;
                break;
            }
            rc = scan_key(s, true);
            if (rc < 0)
                return rc;
            continue;
        case '"':
            rc = bh_json_string(s, NULL);
            if (rc == 0 && record)
                rc = add_node(s, BH_JSON_OTHER, 0, depth);
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
            rc = scan_number(s, record ? &number : NULL);
            if (rc == 0 && record)
                rc = add_node(s, BH_JSON_NUMBER, number, depth);
            if (rc < 0)
                return rc;
            break;
        case 't':
        case 'f':
        case 'n':
            rc = scan_literal(s);
            if (rc == 0 && record)
                rc = add_node(s, BH_JSON_OTHER, 0, depth);
            if (rc < 0)
                return rc;
            break;
        default:
            return bh_json_unexpected(s);
        }
        /* after a value: close what ends here, up to the next value */
        for (;;) {
            if (depth == 0)
                return 0;
            bh_json_skip_space(s);
            if (s->p < s->end && *s->p == ',') {
                s->p++;
                if (kinds[depth - 1] == '{') {
                    rc = scan_key(s, false);
                    if (rc < 0)
                        return rc;
                }
                break;
            }
            if (s->p >= s->end || *s->p != (kinds[depth - 1] == '[' ? ']' : '}'))
                return bh_json_comma_expected(s, kinds[depth - 1] == '[' ? ']' : '}');
            s->p++;
            depth--;
            if (record)
                s->nodes[s->open[depth]].next = (uint32_t)s->nnodes;
        }
    }
}

int
bh_json_value(struct bh_json_scan *s, bool record)
{
    if (record)
        s->nnodes = 0;
    return value(s, record);
}

int
bh_json_next_member(struct bh_json_scan *s, bool *first)
{
    int rc;

    bh_json_skip_space(s);
    if (*first) {
        *first = false;
        s->p++; /* '{' */
        bh_json_skip_space(s);
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return 0;
        }
        rc = scan_key(s, true);
    } else {
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return 0;
        }
        if (s->p >= s->end || *s->p != ',')
            return bh_json_comma_expected(s, '}');
        s->p++;
        rc = scan_key(s, false);
    }
    if (rc < 0)
        return rc;
    bh_json_skip_space(s);
    return 1;
}

int
bh_json_check(struct bh_json_scan *s)
{
    int rc = bh_json_value(s, false);

    if (rc < 0)
        return rc;
    bh_json_skip_space(s);
    if (s->p < s->end)
        return bh_json_syntax(s, s->p, "end of input expected");
    return 0;
}
