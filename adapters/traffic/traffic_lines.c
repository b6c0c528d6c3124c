#include "traffic_lines.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A split line's buffer larger than this is given back once the line is done. */
#define KEEP_ALLOCATED (16 * 1024)

void
bh_traffic_lines_init(struct bh_traffic_lines *l, size_t max_line, size_t keep)
{
    memset(l, 0, sizeof(*l));
    l->max_line = max_line;
    l->keep = keep;
    l->hold = max_line + 1 > keep ? max_line + 1 : keep;
}

void
bh_traffic_lines_free(struct bh_traffic_lines *l)
{
    free(l->buf);
    l->buf = NULL;
    l->len = l->cap = 0;
    l->total = 0;
}

bool
bh_traffic_lines_pending(const struct bh_traffic_lines *l)
{
    return l->total > 0;
}

/* Add K bytes of the current line; what is past HOLD is only counted. */
static int
store(struct bh_traffic_lines *l, const char *p, size_t k)
{
    l->total += k;
    l->last = p[k - 1];
    size_t room = l->hold - l->len;
    if (k > room)
        k = room;
    if (k == 0)
        return 0;
    if (l->len + k > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + k)
            cap *= 2;
        if (cap > l->hold)
            cap = l->hold;
        char *b = realloc(l->buf, cap);
        if (b == NULL)
            return -ENOMEM;
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, p, k);
    l->len += k;
    return 0;
}

static void
clear(struct bh_traffic_lines *l)
{
    l->len = 0;
    l->total = 0;
    l->last = 0;
    if (l->cap > KEEP_ALLOCATED)
        bh_traffic_lines_free(l);
}

static bool
blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    return true;
}

/* One line ended: drop a "\r" before its "\n", skip it if blank, else hand it over. */
static void
emit(struct bh_traffic_lines *l, const char *data, size_t len, uint64_t total, char last,
     bool unterminated, bh_traffic_lines_cb cb, void *arg)
{
    if (total > 0 && last == '\r') {
        total--;
        if (len > total)
            len = (size_t)total;
    }
    l->number++;
    struct bh_traffic_line line = {
        .data = data,
        .len = len,
        .full_len = total,
        .number = l->number,
        .too_long = total > l->max_line,
        .unterminated = unterminated,
    };
    if (!line.too_long && (len == 0 || ((data[0] == ' ' || data[0] == '\t') && blank(data, len))))
        return;
    cb(arg, &line);
}

int
bh_traffic_lines_feed(struct bh_traffic_lines *l, const char *data, size_t n,
                      bh_traffic_lines_cb cb, void *arg)
{
    const char *p = data, *end = data + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return store(l, p, (size_t)(end - p));
        size_t k = (size_t)(nl - p);
        if (l->total == 0) {
            emit(l, p, k, k, k ? p[k - 1] : 0, false, cb, arg); /* whole in this chunk */
        } else {
            int rc = k ? store(l, p, k) : 0;
            if (rc < 0)
                return rc;
            emit(l, l->buf, l->len, l->total, l->last, false, cb, arg);
            clear(l);
        }
        p = nl + 1;
    }
    return 0;
}

void
bh_traffic_lines_finish(struct bh_traffic_lines *l, bh_traffic_lines_cb cb, void *arg)
{
    if (l->total > 0)
        emit(l, l->buf, l->len, l->total, l->last, true, cb, arg);
    clear(l);
}
