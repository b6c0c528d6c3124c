#include "spool.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static const char hex[] = "0123456789abcdef";

size_t
bh_market_show_name(char *dst, size_t size, const char *name)
{
    size_t len = strlen(name), o = 0, i = 0;
    if (size == 0)
        return 0;
    while (i < len) {
        unsigned char c = (unsigned char)name[i];
        size_t n = bh_utf8_seq(name + i, len - i);
        if (n > 1 || (n == 1 && c >= 0x20 && c != 0x7f)) {
            if (o + n >= size)
                break;
            memcpy(dst + o, name + i, n);
            o += n;
            i += n;
            continue;
        }
        if (o + 4 >= size)
            break;
        dst[o++] = '\\';
        dst[o++] = 'x';
        dst[o++] = hex[c >> 4];
        dst[o++] = hex[c & 15];
        i++;
    }
    dst[o] = '\0';
    return o;
}

void
bh_market_spool_begin(struct bh_market_spool *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->v[i].seen = 0;
}

struct bh_market_spool_entry *
bh_market_spool_find(struct bh_market_spool *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return &s->v[i];
    return NULL;
}

struct bh_market_spool_entry *
bh_market_spool_note(struct bh_market_spool *s, const char *name, const struct stat *st,
                     uint64_t now)
{
    struct bh_market_spool_entry *e = bh_market_spool_find(s, name);
    enum bh_market_spool_kind kind =
        S_ISREG(st->st_mode) ? BH_MARKET_SPOOL_FILE : BH_MARKET_SPOOL_OTHER;
    int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    if (e == NULL) {
        if (strlen(name) >= sizeof(e->name))
            return NULL;
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            struct bh_market_spool_entry *v = realloc(s->v, cap * sizeof(*v));
            if (v == NULL)
                return NULL;
            s->v = v;
            s->cap = cap;
        }
        e = &s->v[s->n++];
        memset(e, 0, sizeof(*e));
        strcpy(e->name, name);
        e->since = now;
    } else {
        int same = e->kind == kind && (e->mode & S_IFMT) == (st->st_mode & S_IFMT) &&
                   e->dev == (uint64_t)st->st_dev && e->ino == (uint64_t)st->st_ino;
        if (same && kind == BH_MARKET_SPOOL_FILE)
            same = e->size == (uint64_t)st->st_size && e->mtime_ns == mtime;
        if (!same) {
            e->since = now;
            e->reported = 0;
        }
    }
    e->kind = kind;
    e->mode = st->st_mode;
    e->dev = (uint64_t)st->st_dev;
    e->ino = (uint64_t)st->st_ino;
    e->size = (uint64_t)st->st_size;
    e->mtime_ns = mtime;
    e->seen = 1;
    return e;
}

void
bh_market_spool_end(struct bh_market_spool *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].seen)
            s->v[k++] = s->v[i];
    s->n = k;
}

int
bh_market_spool_settled(const struct bh_market_spool_entry *e, uint64_t now, uint64_t settle)
{
    return e->kind == BH_MARKET_SPOOL_FILE && now >= e->since && now - e->since >= settle;
}

void
bh_market_spool_free(struct bh_market_spool *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}
