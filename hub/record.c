#include "record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static int
field(avro_value_t *rec, const char *name, avro_value_t *out)
{
    return avro_value_get_by_name(rec, name, out, NULL) == 0 ? 0 : -ENOENT;
}

/* The value to write into: the field itself, or the non-null branch of a union. */
static int
target(avro_value_t *rec, const char *name, avro_value_t *out)
{
    avro_value_t f;
    if (field(rec, name, &f) < 0)
        return -ENOENT;
    if (avro_value_get_type(&f) != AVRO_UNION) {
        *out = f;
        return 0;
    }
    return avro_value_set_branch(&f, 1, out) == 0 ? 0 : -EINVAL;
}

static int
set_string(avro_value_t *v, const char *s, size_t len)
{
    /* avro-c counts the NUL in a string's size and expects it there. */
    char stack[256];
    size_t need = len + 1;
    int clean = bh_utf8_valid(s, len) && memchr(s, '\0', len) == NULL;
    if (!clean)
        need = bh_utf8_sanitized_size(s, len); /* invalid bytes become \xNN */
    char *buf = need <= sizeof(stack) ? stack : malloc(need);
    if (buf == NULL)
        return -ENOMEM;
    if (clean) {
        memcpy(buf, s, len);
        buf[len] = '\0';
    } else {
        len = bh_utf8_sanitize(buf, need, s, len);
    }
    int rc = avro_value_set_string_len(v, buf, len + 1) == 0 ? 0 : -EINVAL;
    if (buf != stack)
        free(buf);
    return rc;
}

int
bh_rec_string(avro_value_t *rec, const char *name, const char *s, size_t len)
{
    avro_value_t v;
    int rc = target(rec, name, &v);
    return rc < 0 ? rc : set_string(&v, s, len);
}

int
bh_rec_cstring(avro_value_t *rec, const char *name, const char *s)
{
    return bh_rec_string(rec, name, s, strlen(s));
}

int
bh_rec_null(avro_value_t *rec, const char *name)
{
    avro_value_t f, branch;
    if (field(rec, name, &f) < 0)
        return -ENOENT;
    return avro_value_set_branch(&f, 0, &branch) == 0 && avro_value_set_null(&branch) == 0
               ? 0
               : -EINVAL;
}

int
bh_rec_opt_string(avro_value_t *rec, const char *name, const char *s, size_t len)
{
    return s == NULL ? bh_rec_null(rec, name) : bh_rec_string(rec, name, s, len);
}

int
bh_rec_long(avro_value_t *rec, const char *name, int64_t x)
{
    avro_value_t v;
    int rc = target(rec, name, &v);
    return rc < 0 ? rc : avro_value_set_long(&v, x) == 0 ? 0 : -EINVAL;
}

int
bh_rec_opt_long(avro_value_t *rec, const char *name, bool present, int64_t x)
{
    return present ? bh_rec_long(rec, name, x) : bh_rec_null(rec, name);
}

int
bh_rec_int(avro_value_t *rec, const char *name, int32_t x)
{
    avro_value_t v;
    int rc = target(rec, name, &v);
    return rc < 0 ? rc : avro_value_set_int(&v, x) == 0 ? 0 : -EINVAL;
}

int
bh_rec_double(avro_value_t *rec, const char *name, double x)
{
    avro_value_t v;
    int rc = target(rec, name, &v);
    return rc < 0 ? rc : avro_value_set_double(&v, x) == 0 ? 0 : -EINVAL;
}

int
bh_rec_bool(avro_value_t *rec, const char *name, bool x)
{
    avro_value_t v;
    int rc = target(rec, name, &v);
    return rc < 0 ? rc : avro_value_set_boolean(&v, x) == 0 ? 0 : -EINVAL;
}

int
bh_rec_bytes(avro_value_t *rec, const char *name, const void *p, size_t len)
{
    avro_value_t v;
    int rc = target(rec, name, &v);
    return rc < 0 ? rc : avro_value_set_bytes(&v, (void *)p, len) == 0 ? 0 : -EINVAL;
}

int
bh_rec_enum(avro_value_t *rec, const char *name, const char *symbol)
{
    avro_value_t v;
    int rc = target(rec, name, &v);
    if (rc < 0)
        return rc;
    int idx = avro_schema_enum_get_by_name(avro_value_get_schema(&v), symbol);
    if (idx < 0)
        return -EINVAL;
    return avro_value_set_enum(&v, idx) == 0 ? 0 : -EINVAL;
}

int
bh_rec_sub(avro_value_t *rec, const char *name, avro_value_t *sub)
{
    return target(rec, name, sub);
}

int
bh_rec_null_unset(avro_value_t *rec)
{
    size_t n = 0;
    int rc = avro_value_get_size(rec, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        avro_value_t f, branch;
        int disc;
        if (avro_value_get_by_index(rec, i, &f, NULL) != 0)
            return -EINVAL;
        if (avro_value_get_type(&f) != AVRO_UNION)
            continue;
        if (avro_value_get_discriminant(&f, &disc) == 0 && disc >= 0)
            continue;
        avro_schema_t u = avro_value_get_schema(&f);
        avro_schema_t first = avro_schema_union_branch(u, 0);
        if (first == NULL || !is_avro_null(first))
            continue;
        if (avro_value_set_branch(&f, 0, &branch) != 0 || avro_value_set_null(&branch) != 0)
            rc = -EINVAL;
    }
    return rc;
}
