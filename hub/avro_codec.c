#include "avro_codec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CRC64_AVRO_EMPTY      0xc15d213aa4d7a795ULL
#define SINGLE_OBJECT_HEADER  10
#define CONFLUENT_HEADER      5
#define ENCODER_INITIAL_BYTES 1024
#define SCHEMA_FILE_MAX_BYTES (16 * 1024 * 1024)

struct bh_schemas {
    struct bh_schema *items;
    size_t count;
};

struct bh_encoder {
    enum bh_framing framing;
    char *buf;
    size_t cap;
    avro_writer_t writer; /* memory writer, re-pointed at buf on every call */
};

/* Growable NUL-terminated output for the canonical form. */
struct strbuf {
    char *p;
    size_t len;
    size_t cap;
};

/* State of one Parsing Canonical Form transformation. */
struct canon {
    struct strbuf out;
    char **names; /* full names defined so far, in order of definition */
    size_t nnames;
    size_t names_cap;
    char *errstr;
    size_t errstr_size;
};

/*
 * CRC-64-AVRO lookup table: entry i is the spec's initFPTable() value, i.e. i
 * shifted right eight times through the polynomial EMPTY. The unit test
 * recomputes it bit by bit.
 */
static const uint64_t crc64_table[256] = {
    0x0000000000000000ULL, 0x2cf1cba6b75351faULL, 0x59e3974d6ea6a3f4ULL, 0x75125cebd9f5f20eULL,
    0xb3c72e9add4d47e8ULL, 0x9f36e53c6a1e1612ULL, 0xea24b9d7b3ebe41cULL, 0xc6d5727104b8b5e6ULL,
    0xe5341f40f335c0fbULL, 0xc9c5d4e644669101ULL, 0xbcd7880d9d93630fULL, 0x902643ab2ac032f5ULL,
    0x56f331da2e788713ULL, 0x7a02fa7c992bd6e9ULL, 0x0f10a69740de24e7ULL, 0x23e16d31f78d751dULL,
    0x48d27cf4afc4ceddULL, 0x6423b75218979f27ULL, 0x1131ebb9c1626d29ULL, 0x3dc0201f76313cd3ULL,
    0xfb15526e72898935ULL, 0xd7e499c8c5dad8cfULL, 0xa2f6c5231c2f2ac1ULL, 0x8e070e85ab7c7b3bULL,
    0xade663b45cf10e26ULL, 0x8117a812eba25fdcULL, 0xf405f4f93257add2ULL, 0xd8f43f5f8504fc28ULL,
    0x1e214d2e81bc49ceULL, 0x32d0868836ef1834ULL, 0x47c2da63ef1aea3aULL, 0x6b3311c55849bbc0ULL,
    0x91a4f9e95f899dbaULL, 0xbd55324fe8dacc40ULL, 0xc8476ea4312f3e4eULL, 0xe4b6a502867c6fb4ULL,
    0x2263d77382c4da52ULL, 0x0e921cd535978ba8ULL, 0x7b80403eec6279a6ULL, 0x57718b985b31285cULL,
    0x7490e6a9acbc5d41ULL, 0x58612d0f1bef0cbbULL, 0x2d7371e4c21afeb5ULL, 0x0182ba427549af4fULL,
    0xc757c83371f11aa9ULL, 0xeba60395c6a24b53ULL, 0x9eb45f7e1f57b95dULL, 0xb24594d8a804e8a7ULL,
    0xd976851df04d5367ULL, 0xf5874ebb471e029dULL, 0x809512509eebf093ULL, 0xac64d9f629b8a169ULL,
    0x6ab1ab872d00148fULL, 0x464060219a534575ULL, 0x33523cca43a6b77bULL, 0x1fa3f76cf4f5e681ULL,
    0x3c429a5d0378939cULL, 0x10b351fbb42bc266ULL, 0x65a10d106dde3068ULL, 0x4950c6b6da8d6192ULL,
    0x8f85b4c7de35d474ULL, 0xa3747f616966858eULL, 0xd666238ab0937780ULL, 0xfa97e82c07c0267aULL,
    0xa1f3b1a7f6bc745fULL, 0x8d027a0141ef25a5ULL, 0xf81026ea981ad7abULL, 0xd4e1ed4c2f498651ULL,
    0x12349f3d2bf133b7ULL, 0x3ec5549b9ca2624dULL, 0x4bd7087045579043ULL, 0x6726c3d6f204c1b9ULL,
    0x44c7aee70589b4a4ULL, 0x68366541b2dae55eULL, 0x1d2439aa6b2f1750ULL, 0x31d5f20cdc7c46aaULL,
    0xf700807dd8c4f34cULL, 0xdbf14bdb6f97a2b6ULL, 0xaee31730b66250b8ULL, 0x8212dc9601310142ULL,
    0xe921cd535978ba82ULL, 0xc5d006f5ee2beb78ULL, 0xb0c25a1e37de1976ULL, 0x9c3391b8808d488cULL,
    0x5ae6e3c98435fd6aULL, 0x7617286f3366ac90ULL, 0x03057484ea935e9eULL, 0x2ff4bf225dc00f64ULL,
    0x0c15d213aa4d7a79ULL, 0x20e419b51d1e2b83ULL, 0x55f6455ec4ebd98dULL, 0x79078ef873b88877ULL,
    0xbfd2fc8977003d91ULL, 0x9323372fc0536c6bULL, 0xe6316bc419a69e65ULL, 0xcac0a062aef5cf9fULL,
    0x3057484ea935e9e5ULL, 0x1ca683e81e66b81fULL, 0x69b4df03c7934a11ULL, 0x454514a570c01bebULL,
    0x839066d47478ae0dULL, 0xaf61ad72c32bfff7ULL, 0xda73f1991ade0df9ULL, 0xf6823a3fad8d5c03ULL,
    0xd563570e5a00291eULL, 0xf9929ca8ed5378e4ULL, 0x8c80c04334a68aeaULL, 0xa0710be583f5db10ULL,
    0x66a47994874d6ef6ULL, 0x4a55b232301e3f0cULL, 0x3f47eed9e9ebcd02ULL, 0x13b6257f5eb89cf8ULL,
    0x788534ba06f12738ULL, 0x5474ff1cb1a276c2ULL, 0x2166a3f7685784ccULL, 0x0d976851df04d536ULL,
    0xcb421a20dbbc60d0ULL, 0xe7b3d1866cef312aULL, 0x92a18d6db51ac324ULL, 0xbe5046cb024992deULL,
    0x9db12bfaf5c4e7c3ULL, 0xb140e05c4297b639ULL, 0xc452bcb79b624437ULL, 0xe8a377112c3115cdULL,
    0x2e7605602889a02bULL, 0x0287cec69fdaf1d1ULL, 0x7795922d462f03dfULL, 0x5b64598bf17c5225ULL,
    0xc15d213aa4d7a795ULL, 0xedacea9c1384f66fULL, 0x98beb677ca710461ULL, 0xb44f7dd17d22559bULL,
    0x729a0fa0799ae07dULL, 0x5e6bc406cec9b187ULL, 0x2b7998ed173c4389ULL, 0x0788534ba06f1273ULL,
    0x24693e7a57e2676eULL, 0x0898f5dce0b13694ULL, 0x7d8aa9373944c49aULL, 0x517b62918e179560ULL,
    0x97ae10e08aaf2086ULL, 0xbb5fdb463dfc717cULL, 0xce4d87ade4098372ULL, 0xe2bc4c0b535ad288ULL,
    0x898f5dce0b136948ULL, 0xa57e9668bc4038b2ULL, 0xd06cca8365b5cabcULL, 0xfc9d0125d2e69b46ULL,
    0x3a487354d65e2ea0ULL, 0x16b9b8f2610d7f5aULL, 0x63abe419b8f88d54ULL, 0x4f5a2fbf0fabdcaeULL,
    0x6cbb428ef826a9b3ULL, 0x404a89284f75f849ULL, 0x3558d5c396800a47ULL, 0x19a91e6521d35bbdULL,
    0xdf7c6c14256bee5bULL, 0xf38da7b29238bfa1ULL, 0x869ffb594bcd4dafULL, 0xaa6e30fffc9e1c55ULL,
    0x50f9d8d3fb5e3a2fULL, 0x7c0813754c0d6bd5ULL, 0x091a4f9e95f899dbULL, 0x25eb843822abc821ULL,
    0xe33ef64926137dc7ULL, 0xcfcf3def91402c3dULL, 0xbadd610448b5de33ULL, 0x962caaa2ffe68fc9ULL,
    0xb5cdc793086bfad4ULL, 0x993c0c35bf38ab2eULL, 0xec2e50de66cd5920ULL, 0xc0df9b78d19e08daULL,
    0x060ae909d526bd3cULL, 0x2afb22af6275ecc6ULL, 0x5fe97e44bb801ec8ULL, 0x7318b5e20cd34f32ULL,
    0x182ba427549af4f2ULL, 0x34da6f81e3c9a508ULL, 0x41c8336a3a3c5706ULL, 0x6d39f8cc8d6f06fcULL,
    0xabec8abd89d7b31aULL, 0x871d411b3e84e2e0ULL, 0xf20f1df0e77110eeULL, 0xdefed65650224114ULL,
    0xfd1fbb67a7af3409ULL, 0xd1ee70c110fc65f3ULL, 0xa4fc2c2ac90997fdULL, 0x880de78c7e5ac607ULL,
    0x4ed895fd7ae273e1ULL, 0x62295e5bcdb1221bULL, 0x173b02b01444d015ULL, 0x3bcac916a31781efULL,
    0x60ae909d526bd3caULL, 0x4c5f5b3be5388230ULL, 0x394d07d03ccd703eULL, 0x15bccc768b9e21c4ULL,
    0xd369be078f269422ULL, 0xff9875a13875c5d8ULL, 0x8a8a294ae18037d6ULL, 0xa67be2ec56d3662cULL,
    0x859a8fdda15e1331ULL, 0xa96b447b160d42cbULL, 0xdc791890cff8b0c5ULL, 0xf088d33678abe13fULL,
    0x365da1477c1354d9ULL, 0x1aac6ae1cb400523ULL, 0x6fbe360a12b5f72dULL, 0x434ffdaca5e6a6d7ULL,
    0x287cec69fdaf1d17ULL, 0x048d27cf4afc4cedULL, 0x719f7b249309bee3ULL, 0x5d6eb082245aef19ULL,
    0x9bbbc2f320e25affULL, 0xb74a095597b10b05ULL, 0xc25855be4e44f90bULL, 0xeea99e18f917a8f1ULL,
    0xcd48f3290e9addecULL, 0xe1b9388fb9c98c16ULL, 0x94ab6464603c7e18ULL, 0xb85aafc2d76f2fe2ULL,
    0x7e8fddb3d3d79a04ULL, 0x527e16156484cbfeULL, 0x276c4afebd7139f0ULL, 0x0b9d81580a22680aULL,
    0xf10a69740de24e70ULL, 0xddfba2d2bab11f8aULL, 0xa8e9fe396344ed84ULL, 0x8418359fd417bc7eULL,
    0x42cd47eed0af0998ULL, 0x6e3c8c4867fc5862ULL, 0x1b2ed0a3be09aa6cULL, 0x37df1b05095afb96ULL,
    0x143e7634fed78e8bULL, 0x38cfbd924984df71ULL, 0x4ddde17990712d7fULL, 0x612c2adf27227c85ULL,
    0xa7f958ae239ac963ULL, 0x8b08930894c99899ULL, 0xfe1acfe34d3c6a97ULL, 0xd2eb0445fa6f3b6dULL,
    0xb9d81580a22680adULL, 0x9529de261575d157ULL, 0xe03b82cdcc802359ULL, 0xccca496b7bd372a3ULL,
    0x0a1f3b1a7f6bc745ULL, 0x26eef0bcc83896bfULL, 0x53fcac5711cd64b1ULL, 0x7f0d67f1a69e354bULL,
    0x5cec0ac051134056ULL, 0x701dc166e64011acULL, 0x050f9d8d3fb5e3a2ULL, 0x29fe562b88e6b258ULL,
    0xef2b245a8c5e07beULL, 0xc3daeffc3b0d5644ULL, 0xb6c8b317e2f8a44aULL, 0x9a3978b155abf5b0ULL,
};

static const char *const primitives[] = {"null",  "boolean", "int",   "long",
                                         "float", "double",  "bytes", "string"};

static void set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* avro-c returns 0 or a positive errno. */
static int
avro_errno(int rc)
{
    return rc > 0 ? -rc : rc;
}

uint64_t
bh_crc64_avro(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t fp = CRC64_AVRO_EMPTY;

    for (size_t i = 0; i < len; i++)
        fp = (fp >> 8) ^ crc64_table[(fp ^ p[i]) & 0xff];
    return fp;
}

/* ---- Parsing Canonical Form ---- */

static int
sb_reserve(struct strbuf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int
sb_put(struct strbuf *b, const char *s, size_t n)
{
    int rc = sb_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int
sb_puts(struct strbuf *b, const char *s)
{
    return sb_put(b, s, strlen(s));
}

/* The escape JSON needs for byte CH, or NULL if it stands for itself. */
static const char *
json_escape(unsigned char ch, char tmp[8])
{
    switch (ch) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        if (ch >= 0x20)
            return NULL;
        snprintf(tmp, 8, "\\u%04x", ch);
        return tmp;
    }
}

/*
 * S (N bytes of UTF-8, as jansson decoded it) as a JSON string literal: every
 * character as itself ([STRINGS]) except those JSON requires to be escaped.
 */
static int
sb_put_string(struct strbuf *b, const char *s, size_t n)
{
    size_t start = 0;
    char tmp[8];
    int rc = sb_put(b, "\"", 1);

    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *esc = json_escape((unsigned char)s[i], tmp);
        if (!esc)
            continue;
        rc = sb_put(b, s + start, i - start);
        if (rc == 0)
            rc = sb_puts(b, esc);
        start = i + 1;
    }
    if (rc == 0)
        rc = sb_put(b, s + start, n - start);
    if (rc == 0)
        rc = sb_put(b, "\"", 1);
    return rc;
}

static int
sb_put_json_string(struct strbuf *b, const json_t *str)
{
    return sb_put_string(b, json_string_value(str), json_string_length(str));
}

static bool
is_primitive(const char *type)
{
    for (size_t i = 0; i < sizeof(primitives) / sizeof(primitives[0]); i++) {
        if (strcmp(type, primitives[i]) == 0)
            return true;
    }
    return false;
}

static const char *
find_name(const struct canon *c, const char *fullname)
{
    for (size_t i = 0; i < c->nnames; i++) {
        if (strcmp(c->names[i], fullname) == 0)
            return c->names[i];
    }
    return NULL;
}

/*
 * Full name of NAME seen in namespace NS (NS_LEN bytes; 0 is the null
 * namespace): a name with a dot is already full. *out is malloc'd.
 */
static int
qualify(const char *name, const char *ns, size_t ns_len, char **out)
{
    int n;

    if (ns_len == 0 || strchr(name, '.'))
        n = asprintf(out, "%s", name);
    else
        n = asprintf(out, "%.*s.%s", (int)ns_len, ns, name);
    if (n < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* A type given by name: a primitive, or a named type defined earlier. */
static int
canon_reference(struct canon *c, const char *ref, const char *ns, size_t ns_len)
{
    char *full = NULL;
    int rc;

    if (is_primitive(ref)) {
        rc = sb_put_string(&c->out, ref, strlen(ref));
        goto out;
    }
    rc = qualify(ref, ns, ns_len, &full);
    if (rc < 0)
        goto out;
    if (!find_name(c, full)) {
        set_error(c->errstr, c->errstr_size,
                  "unknown type \"%s\" (not a primitive, not defined before)", full);
        rc = -EINVAL;
        goto out;
    }
    rc = sb_put_string(&c->out, full, strlen(full));
out:
    free(full);
    return rc;
}

/*
 * [FULLNAMES] Record the full name of named type NODE, defined in namespace
 * NS. *fullname points into c->names and lives as long as C.
 */
static int
define_name(struct canon *c, const json_t *node, const char *type, const char *ns, size_t ns_len,
            const char **fullname)
{
    const json_t *name = json_object_get(node, "name");
    const json_t *space = json_object_get(node, "namespace");
    char *full = NULL;
    int rc;

    if (!json_is_string(name) || json_string_length(name) == 0) {
        set_error(c->errstr, c->errstr_size, "%s schema without a \"name\" string", type);
        rc = -EINVAL;
        goto out;
    }
    if (json_is_string(space)) {
        /* An explicit namespace replaces the enclosing one; "" is the null namespace. */
        ns = json_string_value(space);
        ns_len = json_string_length(space);
    } else if (space && !json_is_null(space)) {
        set_error(c->errstr, c->errstr_size, "%s \"%s\": \"namespace\" is not a string", type,
                  json_string_value(name));
        rc = -EINVAL;
        goto out;
    }
    rc = qualify(json_string_value(name), ns, ns_len, &full);
    if (rc < 0)
        goto out;
    if (find_name(c, full)) {
        set_error(c->errstr, c->errstr_size, "type \"%s\" is defined twice", full);
        rc = -EINVAL;
        goto out;
    }
    if (c->nnames == c->names_cap) {
        size_t cap = c->names_cap ? c->names_cap * 2 : 8;
        char **names = realloc(c->names, cap * sizeof(*names));
        if (!names) {
            rc = -ENOMEM;
            goto out;
        }
        c->names = names;
        c->names_cap = cap;
    }
    c->names[c->nnames++] = full;
    *fullname = full;
    full = NULL;
    rc = 0;
out:
    free(full);
    return rc;
}

/* [ORDER] Every named type starts {"name":FULLNAME,"type":TYPE. */
static int
canon_named_start(struct canon *c, const char *fullname, const char *type)
{
    int rc = sb_puts(&c->out, "{\"name\":");
    if (rc == 0)
        rc = sb_put_string(&c->out, fullname, strlen(fullname));
    if (rc == 0)
        rc = sb_puts(&c->out, ",\"type\":");
    if (rc == 0)
        rc = sb_put_string(&c->out, type, strlen(type));
    return rc;
}

/* Namespace of FULLNAME (everything before its last dot) for the types nested in it. */
static size_t
namespace_len(const char *fullname)
{
    const char *dot = strrchr(fullname, '.');
    return dot ? (size_t)(dot - fullname) : 0;
}

static int canon_schema(struct canon *c, const json_t *node, const char *ns, size_t ns_len);

static int
canon_record(struct canon *c, const json_t *node, const char *ns, size_t ns_len)
{
    const json_t *fields = json_object_get(node, "fields");
    const char *full = NULL;
    int rc;

    /* Defined before its fields so that a field can refer to the record itself. */
    rc = define_name(c, node, "record", ns, ns_len, &full);
    if (rc < 0)
        goto out;
    if (!json_is_array(fields)) {
        set_error(c->errstr, c->errstr_size, "record \"%s\" without a \"fields\" array", full);
        rc = -EINVAL;
        goto out;
    }
    /* "error" (a record declared in a protocol) canonicalizes as "record", as in Java. */
    rc = canon_named_start(c, full, "record");
    if (rc == 0)
        rc = sb_puts(&c->out, ",\"fields\":[");
    for (size_t i = 0; rc == 0 && i < json_array_size(fields); i++) {
        const json_t *field = json_array_get(fields, i);
        const json_t *name = json_object_get(field, "name");
        const json_t *type = json_object_get(field, "type");
        if (!json_is_string(name) || !type) {
            set_error(c->errstr, c->errstr_size,
                      "record \"%s\": field %zu needs a \"name\" string and a \"type\"", full, i);
            rc = -EINVAL;
            goto out;
        }
        rc = sb_puts(&c->out, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = sb_put_json_string(&c->out, name);
        if (rc == 0)
            rc = sb_puts(&c->out, ",\"type\":");
        if (rc == 0)
            rc = canon_schema(c, type, full, namespace_len(full));
        if (rc == 0)
            rc = sb_put(&c->out, "}", 1);
    }
    if (rc == 0)
        rc = sb_puts(&c->out, "]}");
out:
    return rc;
}

static int
canon_enum(struct canon *c, const json_t *node, const char *ns, size_t ns_len)
{
    const json_t *symbols = json_object_get(node, "symbols");
    const char *full = NULL;
    int rc;

    rc = define_name(c, node, "enum", ns, ns_len, &full);
    if (rc < 0)
        goto out;
    if (!json_is_array(symbols)) {
        set_error(c->errstr, c->errstr_size, "enum \"%s\" without a \"symbols\" array", full);
        rc = -EINVAL;
        goto out;
    }
    rc = canon_named_start(c, full, "enum");
    if (rc == 0)
        rc = sb_puts(&c->out, ",\"symbols\":[");
    for (size_t i = 0; rc == 0 && i < json_array_size(symbols); i++) {
        const json_t *symbol = json_array_get(symbols, i);
        if (!json_is_string(symbol)) {
            set_error(c->errstr, c->errstr_size, "enum \"%s\": symbol %zu is not a string", full,
                      i);
            rc = -EINVAL;
            goto out;
        }
        if (i)
            rc = sb_put(&c->out, ",", 1);
        if (rc == 0)
            rc = sb_put_json_string(&c->out, symbol);
    }
    if (rc == 0)
        rc = sb_puts(&c->out, "]}");
out:
    return rc;
}

/* [INTEGERS] size as a plain decimal, whether written 16 or "016". */
static int
fixed_size(const json_t *size, long long *out)
{
    if (json_is_integer(size)) {
        *out = json_integer_value(size);
        return *out < 0 ? -EINVAL : 0;
    }
    if (!json_is_string(size))
        return -EINVAL;
    const char *s = json_string_value(size);
    if (*s == '\0' || strspn(s, "0123456789") != json_string_length(size))
        return -EINVAL;
    errno = 0;
    *out = strtoll(s, NULL, 10);
    return errno ? -EINVAL : 0;
}

static int
canon_fixed(struct canon *c, const json_t *node, const char *ns, size_t ns_len)
{
    const char *full = NULL;
    char digits[32];
    long long size;
    int rc;

    rc = define_name(c, node, "fixed", ns, ns_len, &full);
    if (rc < 0)
        goto out;
    if (fixed_size(json_object_get(node, "size"), &size) < 0) {
        set_error(c->errstr, c->errstr_size,
                  "fixed \"%s\" without a \"size\" that is a non-negative integer", full);
        rc = -EINVAL;
        goto out;
    }
    snprintf(digits, sizeof(digits), ",\"size\":%lld}", size);
    rc = canon_named_start(c, full, "fixed");
    if (rc == 0)
        rc = sb_puts(&c->out, digits);
out:
    return rc;
}

/* array (ATTR "items") or map (ATTR "values"). */
static int
canon_container(struct canon *c, const json_t *node, const char *type, const char *attr,
                const char *ns, size_t ns_len)
{
    const json_t *inner = json_object_get(node, attr);
    int rc;

    if (!inner) {
        set_error(c->errstr, c->errstr_size, "%s schema without \"%s\"", type, attr);
        rc = -EINVAL;
        goto out;
    }
    rc = sb_puts(&c->out, "{\"type\":");
    if (rc == 0)
        rc = sb_put_string(&c->out, type, strlen(type));
    if (rc == 0)
        rc = sb_put(&c->out, ",\"", 2);
    if (rc == 0)
        rc = sb_puts(&c->out, attr);
    if (rc == 0)
        rc = sb_put(&c->out, "\":", 2);
    if (rc == 0)
        rc = canon_schema(c, inner, ns, ns_len);
    if (rc == 0)
        rc = sb_put(&c->out, "}", 1);
out:
    return rc;
}

static int
canon_union(struct canon *c, const json_t *node, const char *ns, size_t ns_len)
{
    int rc = sb_put(&c->out, "[", 1);

    for (size_t i = 0; rc == 0 && i < json_array_size(node); i++) {
        if (i)
            rc = sb_put(&c->out, ",", 1);
        if (rc == 0)
            rc = canon_schema(c, json_array_get(node, i), ns, ns_len);
    }
    if (rc == 0)
        rc = sb_put(&c->out, "]", 1);
    return rc;
}

/*
 * [STRIP] Only the attributes below are ever read, so everything else (doc,
 * aliases, default, order, logicalType, ...) is dropped; [PRIMITIVES] an object
 * whose type is a primitive becomes that primitive's name.
 */
static int
canon_object(struct canon *c, const json_t *node, const char *ns, size_t ns_len)
{
    const json_t *type = json_object_get(node, "type");
    const char *t;

    if (!json_is_string(type)) {
        set_error(c->errstr, c->errstr_size, "schema object without a \"type\" string");
        return -EINVAL;
    }
    t = json_string_value(type);
    if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0)
        return canon_record(c, node, ns, ns_len);
    if (strcmp(t, "enum") == 0)
        return canon_enum(c, node, ns, ns_len);
    if (strcmp(t, "fixed") == 0)
        return canon_fixed(c, node, ns, ns_len);
    if (strcmp(t, "array") == 0)
        return canon_container(c, node, "array", "items", ns, ns_len);
    if (strcmp(t, "map") == 0)
        return canon_container(c, node, "map", "values", ns, ns_len);
    /* A primitive, or {"type":"Name"} naming a type defined earlier. */
    return canon_reference(c, t, ns, ns_len);
}

static int
canon_schema(struct canon *c, const json_t *node, const char *ns, size_t ns_len)
{
    switch (json_typeof(node)) {
    case JSON_STRING:
        return canon_reference(c, json_string_value(node), ns, ns_len);
    case JSON_ARRAY:
        return canon_union(c, node, ns, ns_len);
    case JSON_OBJECT:
        return canon_object(c, node, ns, ns_len);
    default:
        set_error(c->errstr, c->errstr_size, "a schema must be a JSON string, object or array");
        return -EINVAL;
    }
}

int
bh_avro_schema_parse(const char *json, size_t len, avro_schema_t *out, char *errstr,
                     size_t errstr_size)
{
    char *canonical = NULL;
    int rc = bh_avro_canonical_form(json, len, &canonical, errstr, errstr_size);
    if (rc < 0)
        return rc;
    if (avro_schema_from_json_length(canonical, strlen(canonical), out) != 0) {
        set_error(errstr, errstr_size, "%s", avro_strerror());
        rc = -EINVAL;
    }
    free(canonical);
    return rc;
}

int
bh_avro_canonical_form(const char *json, size_t len, char **out, char *errstr, size_t errstr_size)
{
    struct canon c = {.errstr = errstr, .errstr_size = errstr_size};
    json_t *root = NULL;
    json_error_t jerr;
    int rc;

    if (!json || !out) {
        set_error(errstr, errstr_size, "bh_avro_canonical_form: missing argument");
        rc = -EINVAL;
        goto out;
    }
    *out = NULL;
    /* JSON_DECODE_ANY: a schema may be a bare string such as "int". */
    root = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        set_error(errstr, errstr_size, "schema is not valid JSON (line %d, column %d): %s",
                  jerr.line, jerr.column, jerr.text);
        rc = -EINVAL;
        goto out;
    }
    rc = canon_schema(&c, root, NULL, 0);
    if (rc < 0)
        goto out;
    *out = c.out.p;
    c.out.p = NULL;
out:
    if (rc == -ENOMEM)
        set_error(errstr, errstr_size, "out of memory");
    json_decref(root);
    free(c.out.p);
    for (size_t i = 0; i < c.nnames; i++)
        free(c.names[i]);
    free(c.names);
    return rc;
}

/* ---- Schema sets ---- */

static int
is_schema_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    /* Like the shell's *.avsc: hidden files are not matched. */
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".avsc") == 0;
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* The whole of regular file PATH, NUL-terminated; *len excludes the NUL. */
static int
read_text(const char *path, char **text_out, size_t *len_out, char *errstr, size_t errstr_size)
{
    char *text = NULL;
    size_t size, got = 0;
    struct stat st;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        set_error(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(errstr, errstr_size, "%s: not a regular file", path);
        rc = -EINVAL;
        goto out;
    }
    if (st.st_size > SCHEMA_FILE_MAX_BYTES) {
        set_error(errstr, errstr_size, "%s: larger than %d bytes", path, SCHEMA_FILE_MAX_BYTES);
        rc = -EFBIG;
        goto out;
    }
    size = (size_t)st.st_size;
    text = malloc(size + 1);
    if (!text) {
        set_error(errstr, errstr_size, "%s: out of memory", path);
        rc = -ENOMEM;
        goto out;
    }
    while (got < size) {
        ssize_t n = read(fd, text + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            set_error(errstr, errstr_size, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    text[got] = '\0';
    *text_out = text;
    *len_out = got;
    text = NULL;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(text);
    return rc;
}

/* Fill S (zeroed) from DIR/FILE. On failure S may be partly filled; free_schema cleans up. */
static int
load_one(struct bh_schema *s, const char *dir, const char *file, char *errstr, size_t errstr_size)
{
    char cerr[512] = "";
    const char *name, *space;
    size_t len = 0;
    int rc;

    s->registry_id = -1;
    if (asprintf(&s->path, "%s/%s", dir, file) < 0) {
        s->path = NULL;
        rc = -ENOMEM;
        set_error(errstr, errstr_size, "%s: out of memory", file);
        goto out;
    }
    rc = read_text(s->path, &s->text, &len, errstr, errstr_size);
    if (rc < 0)
        goto out;
    rc = avro_schema_from_json_length(s->text, len, &s->schema);
    if (rc != 0) {
        /* avro-c has already released whatever it built. */
        s->schema = NULL;
        set_error(errstr, errstr_size, "%s: not a valid Avro schema: %s", s->path, avro_strerror());
        rc = -EINVAL;
        goto out;
    }
    name = avro_schema_name(s->schema);
    if (!name) {
        set_error(errstr, errstr_size,
                  "%s: the top-level schema must be a named type (record, enum or fixed)", s->path);
        rc = -EINVAL;
        goto out;
    }
    space = avro_schema_namespace(s->schema);
    if (space && *space)
        rc = asprintf(&s->name, "%s.%s", space, name);
    else
        rc = asprintf(&s->name, "%s", name);
    if (rc < 0) {
        s->name = NULL;
        set_error(errstr, errstr_size, "%s: out of memory", s->path);
        rc = -ENOMEM;
        goto out;
    }
    rc = bh_avro_canonical_form(s->text, len, &s->canonical, cerr, sizeof(cerr));
    if (rc < 0) {
        set_error(errstr, errstr_size, "%s: %s", s->path, cerr);
        goto out;
    }
    s->fingerprint = bh_crc64_avro(s->canonical, strlen(s->canonical));
    s->iface = avro_generic_class_from_schema(s->schema);
    if (!s->iface) {
        set_error(errstr, errstr_size, "%s: cannot build a value class: %s", s->path,
                  avro_strerror());
        rc = -EINVAL;
        goto out;
    }
    rc = 0;
out:
    return rc;
}

static void
free_schema(struct bh_schema *s)
{
    if (s->iface)
        avro_value_iface_decref(s->iface);
    if (s->schema)
        avro_schema_decref(s->schema);
    free(s->name);
    free(s->path);
    free(s->text);
    free(s->canonical);
}

/* Refuse LAST if an earlier schema of SET has the same full name or fingerprint. */
static int
check_unique(const struct bh_schemas *set, const struct bh_schema *last, char *errstr,
             size_t errstr_size)
{
    for (size_t i = 0; i < set->count; i++) {
        const struct bh_schema *s = &set->items[i];
        if (s == last)
            continue;
        if (strcmp(s->name, last->name) == 0) {
            set_error(errstr, errstr_size, "%s: schema %s is already defined in %s", last->path,
                      last->name, s->path);
            return -EEXIST;
        }
        if (s->fingerprint == last->fingerprint) {
            set_error(errstr, errstr_size, "%s: fingerprint %016llx of %s collides with %s in %s",
                      last->path, (unsigned long long)last->fingerprint, last->name, s->name,
                      s->path);
            return -EEXIST;
        }
    }
    return 0;
}

int
bh_schemas_load(struct bh_schemas **out, const char *dir, char *errstr, size_t errstr_size)
{
    struct bh_schemas *set = NULL;
    struct dirent **ents = NULL;
    int n = 0;
    int rc;

    if (!out || !dir) {
        set_error(errstr, errstr_size, "bh_schemas_load: missing argument");
        rc = -EINVAL;
        goto out;
    }
    *out = NULL;
    n = scandir(dir, &ents, is_schema_file, by_name);
    if (n < 0) {
        rc = -errno;
        set_error(errstr, errstr_size, "schema directory %s: %s", dir, strerror(errno));
        n = 0;
        goto out;
    }
    set = calloc(1, sizeof(*set));
    if (set)
        set->items = calloc(n ? (size_t)n : 1, sizeof(*set->items));
    if (!set || !set->items) {
        set_error(errstr, errstr_size, "schema directory %s: out of memory", dir);
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct bh_schema *s = &set->items[set->count++];
        rc = load_one(s, dir, ents[i]->d_name, errstr, errstr_size);
        if (rc == 0)
            rc = check_unique(set, s, errstr, errstr_size);
        if (rc < 0)
            goto out;
    }
    *out = set;
    set = NULL;
    rc = 0;
out:
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    bh_schemas_free(set);
    return rc;
}

const struct bh_schema *
bh_schemas_find(const struct bh_schemas *set, const char *fullname)
{
    if (!set || !fullname)
        return NULL;
    for (size_t i = 0; i < set->count; i++) {
        if (strcmp(set->items[i].name, fullname) == 0)
            return &set->items[i];
    }
    return NULL;
}

const struct bh_schema *
bh_schemas_find_fingerprint(const struct bh_schemas *set, uint64_t fp)
{
    if (!set)
        return NULL;
    for (size_t i = 0; i < set->count; i++) {
        if (set->items[i].fingerprint == fp)
            return &set->items[i];
    }
    return NULL;
}

static const struct bh_schema *
find_registry_id(const struct bh_schemas *set, int32_t id)
{
    for (size_t i = 0; id >= 0 && i < set->count; i++) {
        if (set->items[i].registry_id == id)
            return &set->items[i];
    }
    return NULL;
}

const struct bh_schema *
bh_schemas_find_registry_id(const struct bh_schemas *set, int32_t id)
{
    return find_registry_id(set, id);
}

int
bh_schemas_set_registry_id(struct bh_schemas *set, const char *fullname, int32_t id)
{
    const struct bh_schema *found, *other;

    if (!set || !fullname || id < -1)
        return -EINVAL;
    found = bh_schemas_find(set, fullname);
    if (!found)
        return -ENOENT;
    other = find_registry_id(set, id);
    if (other && other != found)
        return -EEXIST;
    set->items[found - set->items].registry_id = id;
    return 0;
}

size_t
bh_schemas_count(const struct bh_schemas *set)
{
    return set ? set->count : 0;
}

const struct bh_schema *
bh_schemas_at(const struct bh_schemas *set, size_t i)
{
    return set && i < set->count ? &set->items[i] : NULL;
}

void
bh_schemas_free(struct bh_schemas *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        free_schema(&set->items[i]);
    free(set->items);
    free(set);
}

/* ---- Framing, encoding, decoding ---- */

static size_t
header_size(enum bh_framing framing)
{
    return framing == BH_FRAMING_CONFLUENT ? CONFLUENT_HEADER : SINGLE_OBJECT_HEADER;
}

static bool
framing_valid(enum bh_framing framing)
{
    return framing == BH_FRAMING_SINGLE_OBJECT || framing == BH_FRAMING_CONFLUENT;
}

int
bh_encoder_new(struct bh_encoder **out, enum bh_framing framing)
{
    struct bh_encoder *e = NULL;
    int rc;

    if (!out || !framing_valid(framing)) {
        rc = -EINVAL;
        goto out;
    }
    *out = NULL;
    e = calloc(1, sizeof(*e));
    if (!e) {
        rc = -ENOMEM;
        goto out;
    }
    e->framing = framing;
    e->cap = ENCODER_INITIAL_BYTES;
    e->buf = calloc(1, e->cap); /* zeroed: avro_writer_memory takes a const char * */
    if (e->buf)
        e->writer = avro_writer_memory(e->buf, (int64_t)e->cap);
    if (!e->buf || !e->writer) {
        rc = -ENOMEM;
        goto out;
    }
    *out = e;
    e = NULL;
    rc = 0;
out:
    bh_encoder_free(e);
    return rc;
}

void
bh_encoder_free(struct bh_encoder *e)
{
    if (!e)
        return;
    if (e->writer)
        avro_writer_free(e->writer);
    free(e->buf);
    free(e);
}

static int
encoder_reserve(struct bh_encoder *e, size_t need)
{
    size_t cap = e->cap;
    char *buf;

    if (need <= e->cap)
        return 0;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    buf = realloc(e->buf, cap);
    if (!buf)
        return -ENOMEM;
    e->buf = buf;
    e->cap = cap;
    return 0;
}

static void
write_header(unsigned char *p, enum bh_framing framing, const struct bh_schema *s)
{
    if (framing == BH_FRAMING_CONFLUENT) {
        uint32_t id = (uint32_t)s->registry_id;
        p[0] = 0x00;
        for (int i = 0; i < 4; i++)
            p[1 + i] = (unsigned char)(id >> (24 - 8 * i));
    } else {
        p[0] = 0xC3;
        p[1] = 0x01;
        for (int i = 0; i < 8; i++)
            p[2 + i] = (unsigned char)(s->fingerprint >> (8 * i));
    }
}

int
bh_encode(struct bh_encoder *e, const struct bh_schema *s, avro_value_t *value, const void **data,
          size_t *len)
{
    avro_schema_t vschema;
    size_t hdr, body;
    int rc;

    if (!e || !s || !value || !value->iface || !data || !len) {
        rc = -EINVAL;
        goto out;
    }
    vschema = avro_value_get_schema(value);
    if (vschema != s->schema && !avro_schema_equal(vschema, s->schema)) {
        rc = -EINVAL;
        goto out;
    }
    if (e->framing == BH_FRAMING_CONFLUENT && s->registry_id < 0) {
        rc = -EINVAL;
        goto out;
    }
    hdr = header_size(e->framing);
    rc = avro_errno(avro_value_sizeof(value, &body));
    if (rc < 0)
        goto out;
    if (body > (size_t)INT64_MAX - hdr) {
        rc = -EOVERFLOW;
        goto out;
    }
    rc = encoder_reserve(e, hdr + body);
    if (rc < 0)
        goto out;
    write_header((unsigned char *)e->buf, e->framing, s);
    avro_writer_memory_set_dest(e->writer, e->buf + hdr, (int64_t)body);
    rc = avro_errno(avro_value_write(e->writer, value));
    if (rc < 0)
        goto out;
    if ((size_t)avro_writer_tell(e->writer) != body) {
        rc = -EIO; /* avro_value_sizeof and avro_value_write disagree */
        goto out;
    }
    *data = e->buf;
    *len = hdr + body;
out:
    return rc;
}

int
bh_decode(const struct bh_schemas *set, enum bh_framing framing, const void *data, size_t len,
          const struct bh_schema **schema, avro_value_t *value_out)
{
    const unsigned char *p = data;
    const struct bh_schema *s = NULL;
    avro_reader_t reader = NULL;
    avro_value_t value = {0};
    size_t hdr;
    char extra;
    int rc;

    if (!set || (!data && len) || !value_out || !framing_valid(framing)) {
        rc = -EINVAL;
        goto out;
    }
    hdr = header_size(framing);
    if (len < hdr) {
        rc = -EBADMSG;
        goto out;
    }
    if (framing == BH_FRAMING_CONFLUENT) {
        uint32_t id = 0;
        if (p[0] != 0x00) {
            rc = -EBADMSG;
            goto out;
        }
        for (int i = 0; i < 4; i++)
            id = id << 8 | p[1 + i];
        s = id <= INT32_MAX ? find_registry_id(set, (int32_t)id) : NULL;
    } else {
        uint64_t fp = 0;
        if (p[0] != 0xC3 || p[1] != 0x01) {
            rc = -EBADMSG;
            goto out;
        }
        for (int i = 0; i < 8; i++)
            fp |= (uint64_t)p[2 + i] << (8 * i);
        s = bh_schemas_find_fingerprint(set, fp);
    }
    if (!s) {
        rc = -ENOENT;
        goto out;
    }
    reader = avro_reader_memory((const char *)p + hdr, (int64_t)(len - hdr));
    if (!reader) {
        rc = -ENOMEM;
        goto out;
    }
    rc = avro_errno(avro_generic_value_new(s->iface, &value));
    if (rc < 0)
        goto out;
    rc = avro_errno(avro_value_read(reader, &value));
    if (rc < 0) {
        rc = rc == -ENOMEM ? rc : -EBADMSG; /* truncated or malformed body */
        goto out;
    }
    /* Bytes left after the value: not an encoding of this schema. */
    if (avro_read(reader, &extra, 1) == 0) {
        rc = -EBADMSG;
        goto out;
    }
    if (schema)
        *schema = s;
    *value_out = value;
    value.self = NULL;
    rc = 0;
out:
    if (value.self)
        avro_value_decref(&value);
    if (reader)
        avro_reader_free(reader);
    return rc;
}
