#include "csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_FIELD,  /* at the start of a field */
    S_PLAIN,  /* inside an unquoted field */
    S_QUOTED, /* inside a quoted field */
    S_QUOTE2, /* a quote inside a quoted field: an escape or the closing quote */
    S_CR,     /* a CR outside quotes: a line end if LF follows */
};

int
bh_market_csv_init(struct bh_market_csv *p, size_t max_row)
{
    memset(p, 0, sizeof(*p));
    p->max_row = max_row;
    p->cap = max_row < 4096 ? max_row : 4096;
    p->ecap = 32;
    p->buf = malloc(p->cap ? p->cap : 1);
    p->ends = malloc(p->ecap * sizeof(*p->ends));
    if (p->buf == NULL || p->ends == NULL) {
        bh_market_csv_free(p);
        return -ENOMEM;
    }
    return 0;
}

void
bh_market_csv_free(struct bh_market_csv *p)
{
    free(p->buf);
    free(p->ends);
    p->buf = NULL;
    p->ends = NULL;
}

/* Whether the row still keeps its bytes; flags it when it stops doing so. */
static int
keeping(struct bh_market_csv *p)
{
    if (p->row_bytes <= p->max_row)
        return 1;
    p->flags |= BH_MARKET_CSV_TOO_LARGE;
    return 0;
}

static void
append(struct bh_market_csv *p, const char *s, size_t n)
{
    if (!keeping(p))
        return;
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        while (cap < p->len + n)
            cap *= 2;
        if (cap > p->max_row)
            cap = p->max_row;
        char *b = cap >= p->len + n ? realloc(p->buf, cap) : NULL;
        if (b == NULL) {
            p->row_bytes = p->max_row + 1; /* out of memory: the row is too large for us */
            p->flags |= BH_MARKET_CSV_TOO_LARGE;
            return;
        }
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
}

static void
end_field(struct bh_market_csv *p)
{
    if (!keeping(p))
        return;
    if (p->nfields == p->ecap) {
        size_t *e = realloc(p->ends, p->ecap * 2 * sizeof(*e));
        if (e == NULL) {
            p->row_bytes = p->max_row + 1;
            p->flags |= BH_MARKET_CSV_TOO_LARGE;
            return;
        }
        p->ends = e;
        p->ecap *= 2;
    }
    p->ends[p->nfields++] = p->len;
    p->quoted = 0;
}

static void
end_row(struct bh_market_csv *p)
{
    /* An empty line: no separator, no quote, no byte of data. */
    p->blank = p->nfields == 0 && p->len == 0 && !p->quoted;
    end_field(p);
    p->complete = 1;
}

/* Bytes that end a run of field data: 1 in a quoted field, 2 in an unquoted one. */
static const unsigned char stops[256] = {['"'] = 3, ['\n'] = 3, [','] = 2, ['\r'] = 2};

/* Bytes of S before the first one that matters in state PLAIN (or QUOTED). */
static size_t
run(const char *s, size_t n, int quoted)
{
    unsigned char mask = quoted ? 1 : 2;
    size_t i = 0;
    while (i < n && !(stops[(unsigned char)s[i]] & mask))
        i++;
    return i;
}

size_t
bh_market_csv_feed(struct bh_market_csv *p, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !p->complete) {
        if (p->state == S_PLAIN || p->state == S_QUOTED) {
            size_t k = run(s + i, n - i, p->state == S_QUOTED);
            if (k > 0) {
                p->row_bytes += k;
                append(p, s + i, k);
                i += k;
                continue;
            }
        }
        char c = s[i++];
        p->row_bytes++;
        if (c == '\n')
            p->row_lines++;
        switch (p->state) {
        case S_CR:
            if (c == '\n') {
                end_row(p);
                break;
            }
            append(p, "\r", 1); /* a CR alone is data, and C the next byte of the field */
            p->state = S_PLAIN;
            /* fall through */
        case S_FIELD:
        case S_PLAIN:
            if (c == ',') {
                end_field(p);
                p->state = S_FIELD;
            } else if (c == '\n') {
                end_row(p);
            } else if (c == '\r') {
                p->state = S_CR;
            } else if (c == '"' && p->state == S_FIELD) {
                p->state = S_QUOTED;
                p->quoted = 1;
            } else {
                if (c == '"')
                    p->flags |= BH_MARKET_CSV_BAD_QUOTE;
                append(p, &c, 1);
                p->state = S_PLAIN;
            }
            break;
        case S_QUOTED:
            if (c == '"')
                p->state = S_QUOTE2;
            else
                append(p, &c, 1);
            break;
        case S_QUOTE2:
            if (c == '"') {
                append(p, &c, 1);
                p->state = S_QUOTED;
            } else if (c == ',') {
                end_field(p);
                p->state = S_FIELD;
            } else if (c == '\n') {
                end_row(p);
            } else if (c == '\r') {
                p->state = S_CR;
            } else {
                p->flags |= BH_MARKET_CSV_BAD_QUOTE; /* text after the closing quote */
                append(p, &c, 1);
                p->state = S_PLAIN;
            }
            break;
        }
    }
    return i;
}

int
bh_market_csv_finish(struct bh_market_csv *p)
{
    if (p->complete || p->row_bytes == 0)
        return p->complete;
    if (p->state == S_QUOTED)
        p->flags |= BH_MARKET_CSV_UNCLOSED;
    if (p->state == S_CR)
        append(p, "\r", 1);
    end_row(p);
    p->blank = 0;
    return 1;
}

int
bh_market_csv_in_row(const struct bh_market_csv *p)
{
    return p->row_bytes > 0 && !p->complete;
}

void
bh_market_csv_next_row(struct bh_market_csv *p)
{
    p->len = 0;
    p->nfields = 0;
    p->row_bytes = 0;
    p->row_lines = 0;
    p->flags = 0;
    p->state = S_FIELD;
    p->quoted = 0;
    p->complete = 0;
    p->blank = 0;
}

const char *
bh_market_csv_field(const struct bh_market_csv *p, size_t i, size_t *len)
{
    size_t start = i == 0 ? 0 : p->ends[i - 1];
    *len = p->ends[i] - start;
    return p->buf + start;
}
