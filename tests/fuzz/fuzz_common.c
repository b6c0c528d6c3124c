#include "fuzz_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

#ifndef BH_FUZZ_SOURCE_DIR
#define BH_FUZZ_SOURCE_DIR "."
#endif

static struct bh_schemas *schemas;
static struct bh_blockmap *blocks;
static struct bh_encoder *encoder;

/* At exit, so that a leak check sees only what an input leaked. */
static void
free_shared(void)
{
    bh_schemas_free(schemas);
    bh_blockmap_free(blocks);
    bh_encoder_free(encoder);
    schemas = NULL;
    blocks = NULL;
    encoder = NULL;
}

static void
at_exit_once(void)
{
    static int done;
    if (!done++)
        atexit(free_shared);
}

void
bh_fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("blockhub fuzz oracle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

int
bh_fuzz_flag(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

int
bh_fuzz_known(const char *bug)
{
    const char *list = getenv("BH_FUZZ_KNOWN");
    size_t n = strlen(bug);
    while (list != NULL && *list != '\0') {
        size_t k = strcspn(list, ",");
        if (k == n && memcmp(list, bug, n) == 0)
            return 1;
        list += k + (list[k] == ',');
    }
    return 0;
}

const char *
bh_fuzz_source_dir(void)
{
    const char *dir = getenv("BH_SOURCE_DIR");
    return dir != NULL && dir[0] != '\0' ? dir : BH_FUZZ_SOURCE_DIR;
}

const struct bh_schemas *
bh_fuzz_schemas(void)
{
    if (schemas == NULL) {
        char dir[4096], err[512];
        at_exit_once();
        snprintf(dir, sizeof(dir), "%s/schemas", bh_fuzz_source_dir());
        if (bh_schemas_load(&schemas, dir, err, sizeof(err)) < 0)
            bh_fuzz_fail("cannot load the schemas from %s: %s", dir, err);
    }
    return schemas;
}

const struct bh_schema *
bh_fuzz_schema(const char *fullname)
{
    const struct bh_schema *s = bh_schemas_find(bh_fuzz_schemas(), fullname);
    if (s == NULL)
        bh_fuzz_fail("schema %s is not in %s/schemas", fullname, bh_fuzz_source_dir());
    return s;
}

const struct bh_blockmap *
bh_fuzz_blocks(void)
{
    if (blocks == NULL) {
        char path[4096], err[512];
        at_exit_once();
        snprintf(path, sizeof(path), "%s/tests/data/world/blocks.geojson", bh_fuzz_source_dir());
        if (bh_blockmap_load(&blocks, path, err, sizeof(err)) < 0)
            bh_fuzz_fail("cannot load the block map %s: %s", path, err);
    }
    return blocks;
}

struct bh_encoder *
bh_fuzz_encoder(void)
{
    if (encoder != NULL)
        return encoder;
    at_exit_once();
    if (bh_encoder_new(&encoder, BH_FRAMING_SINGLE_OBJECT) < 0)
        bh_fuzz_fail("cannot make an encoder");
    return encoder;
}

/* Up to 48 bytes of S as C escapes, for messages. */
static const char *
shown(const char *s, size_t len, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 48 && o + 5 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}

void
bh_fuzz_check_utf8(const char *what, const char *s, size_t len)
{
    if (s == NULL && len == 0)
        return;
    if (s == NULL)
        bh_fuzz_fail("%s: NULL with length %zu", what, len);
    if (!bh_utf8_valid(s, len)) {
        char buf[256];
        size_t at = 0, n;
        while (at < len && (n = bh_utf8_seq(s + at, len - at)) > 0)
            at += n;
        size_t from = at > 16 ? at - 16 : 0;
        bh_fuzz_fail("%s is not valid UTF-8 (%zu bytes, byte %zu is wrong): ...\"%s\"", what, len,
                     at, shown(s + from, len - from, buf, sizeof(buf)));
    }
}

void
bh_fuzz_check_why(const char *what, const char *why)
{
    if (why == NULL || why[0] == '\0')
        bh_fuzz_fail("%s: no reason given", what);
    bh_fuzz_check_utf8(what, why, strlen(why));
}

void
bh_fuzz_check_reject(const char *what, enum bh_dlq_reason r, const char *why)
{
    if ((int)r < 0 || r >= BH_DLQ_REASON_COUNT)
        bh_fuzz_fail("%s: reason code %d is not one of the dead-letter reasons", what, (int)r);
    bh_fuzz_check_why(what, why);
}

static void
walk(const char *what, avro_value_t *v, int depth)
{
    const char *s;
    size_t size, n;
    avro_value_t sub;
    if (depth > 64)
        bh_fuzz_fail("%s: values nested deeper than 64", what);
    switch (avro_value_get_type(v)) {
    case AVRO_STRING:
        if (avro_value_get_string(v, &s, &size) != 0)
            bh_fuzz_fail("%s: a string that cannot be read", what);
        /* avro-c counts a NUL at the end in the size */
        bh_fuzz_check_utf8(what, s, size > 0 ? size - 1 : 0);
        return;
    case AVRO_RECORD:
    case AVRO_ARRAY:
    case AVRO_MAP:
        n = 0;
        if (avro_value_get_size(v, &n) != 0)
            bh_fuzz_fail("%s: no size", what);
        for (size_t i = 0; i < n; i++) {
            const char *key = NULL;
            if (avro_value_get_by_index(v, i, &sub, &key) != 0)
                bh_fuzz_fail("%s: element %zu cannot be read", what, i);
            if (avro_value_get_type(v) == AVRO_MAP && key != NULL)
                bh_fuzz_check_utf8(what, key, strlen(key));
            walk(what, &sub, depth + 1);
        }
        return;
    case AVRO_UNION:
        if (avro_value_get_current_branch(v, &sub) != 0)
            bh_fuzz_fail("%s: a union without a branch", what);
        walk(what, &sub, depth + 1);
        return;
    default:
        return;
    }
}

void
bh_fuzz_check_value_utf8(const char *what, avro_value_t *v)
{
    walk(what, v, 0);
}

void
bh_fuzz_check_record(const char *what, const void *data, size_t len, const struct bh_schema *want,
                     avro_value_t *out)
{
    const struct bh_schema *got = NULL;
    avro_value_t v;
    int rc = bh_decode(bh_fuzz_schemas(), BH_FRAMING_SINGLE_OBJECT, data, len, &got, &v);
    if (rc < 0)
        bh_fuzz_fail("%s: the record (%zu bytes) does not decode: %s", what, len, strerror(-rc));
    if (got != want)
        bh_fuzz_fail("%s: decoded as %s, not %s", what, got->name, want->name);
    walk(what, &v, 0);
    if (out != NULL)
        *out = v;
    else
        avro_value_decref(&v);
}

const char *
bh_fuzz_get_string(avro_value_t *rec, const char *name, size_t *len)
{
    avro_value_t f, b;
    const char *s;
    size_t size;
    if (avro_value_get_by_name(rec, name, &f, NULL) != 0)
        return NULL;
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, &b) != 0)
            return NULL;
        f = b;
    }
    if (avro_value_get_type(&f) != AVRO_STRING || avro_value_get_string(&f, &s, &size) != 0)
        return NULL;
    *len = size > 0 ? size - 1 : 0;
    return s;
}

void
bh_fuzz_emit(const void *data, size_t len)
{
    const char *dir = getenv("BH_FUZZ_EMIT_DIR");
    if (dir == NULL || dir[0] == '\0')
        return;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)data)[i]) * 1099511628211ULL;
    char path[4200];
    snprintf(path, sizeof(path), "%s/rec-%016llx", dir, (unsigned long long)h);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        bh_fuzz_fail("cannot write %s: %s", path, strerror(errno));
    fwrite(data, 1, len, f);
    fclose(f);
}
