/*
 * The configuration engine.
 *
 * A load runs in three steps:
 *   1. the YAML text is parsed with libyaml's document API and converted into
 *      a small generic tree (mapping / sequence / scalar, each with its origin:
 *      file position, --set text or built-in default);
 *   2. each --set KEY=VALUE is applied onto that tree (creating or replacing the
 *      node at KEY; the tables are consulted only to know where a path enters a
 *      VARIANTS list or a free-form MAP);
 *   3. the tree is bound to the caller's struct by walking the key tables.
 *
 * Anything the tables do not describe is refused, and any refusal frees what
 * was bound so far and zeroes every field the tables describe.
 *
 * Decisions worth knowing:
 *   - YAML aliases are refused, at the alias, by an event pass before the
 *     document is loaded (and again while converting: the document API resolves
 *     an alias to the same node, so every node must be reached exactly once).
 *     No alias loop or "billion laughs" expansion can reach the tree.
 *   - Duplicate keys in any mapping are refused, naming both lines.
 *   - A plain null scalar (empty, "~", "null") means "not set": the default
 *     applies, and a required key is still missing.
 *   - Nesting deeper than MAX_DEPTH levels is refused, and so is a second
 *     YAML document in the stream.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_DEPTH     64
#define MAX_FILE_SIZE (16u << 20)
#define PATH_LEN      512

enum node_kind { NODE_SCALAR, NODE_SEQ, NODE_MAP };

enum origin { FROM_FILE, FROM_SET, FROM_DEFAULT };

struct node;

struct pair {
    struct node *key;
    struct node *value;
};

struct node {
    enum node_kind kind;
    enum origin origin;
    const char *set; /* FROM_SET: the whole "KEY=VALUE" text */
    int line, col;   /* FROM_FILE: 1-based position */
    bool flow;       /* collection written in flow style ([...] / {...}) */
    /* NODE_SCALAR */
    char *text;
    size_t len;
    bool plain;
    /* NODE_SEQ */
    struct node **items;
    size_t nitems;
    /* NODE_MAP */
    struct pair *pairs;
    size_t npairs;
};

struct ctx {
    const char *file; /* name used in messages */
    char *err;
    size_t errsz;
    int nerrors; /* binding goes on past a refused key: every problem is listed, one a line */
    /* YAML conversion state */
    yaml_document_t *doc;
    unsigned char *seen;
    enum origin origin;
    const char *set;
    char path[PATH_LEN];
};

/* ---------------------------------------------------------------- errors -- */

static int
vfail_at(struct ctx *c, enum origin origin, const char *set, int line, int col, int rc,
         const char *fmt, va_list ap)
{
    int w;

    if (!c->err || c->errsz == 0)
        return rc;
    /* A later problem goes on a line of its own after the earlier ones. */
    size_t at = c->nerrors++ > 0 ? strlen(c->err) : 0;
    if (at > 0 && at + 2 < c->errsz)
        c->err[at++] = '\n';
    else if (at > 0)
        return rc; /* no room left: the first ones are listed */
    char *err = c->err + at;
    size_t errsz = c->errsz - at;
    if (origin == FROM_SET)
        w = snprintf(err, errsz, "--set %s: ", set ? set : "");
    else if (origin == FROM_DEFAULT)
        w = snprintf(err, errsz, "%s: built-in default: ", c->file);
    else if (line > 0)
        w = snprintf(err, errsz, "%s:%d:%d: ", c->file, line, col);
    else
        w = snprintf(err, errsz, "%s: ", c->file);
    if (w < 0)
        w = 0;
    size_t off = (size_t)w < errsz ? (size_t)w : errsz - 1;
    vsnprintf(err + off, errsz - off, fmt, ap);
    return rc;
}

static int __attribute__((format(printf, 7, 8)))
fail_at(struct ctx *c, enum origin origin, const char *set, int line, int col, int rc,
        const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail_at(c, origin, set, line, col, rc, fmt, ap);
    va_end(ap);
    return rc;
}

/* An error located at node N (NULL: the file as a whole). */
static int __attribute__((format(printf, 4, 5)))
fail(struct ctx *c, const struct node *n, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (n)
        vfail_at(c, n->origin, n->set, n->line, n->col, rc, fmt, ap);
    else
        vfail_at(c, FROM_FILE, NULL, 0, 0, rc, fmt, ap);
    va_end(ap);
    return rc;
}

static int
clamp_int(size_t v)
{
    return v >= (size_t)INT_MAX ? INT_MAX : (int)v;
}

/* ------------------------------------------------------------------ tree -- */

static void
node_free(struct node *n)
{
    if (!n)
        return;
    free(n->text);
    if (n->items) {
        for (size_t i = 0; i < n->nitems; i++)
            node_free(n->items[i]);
        free(n->items);
    }
    if (n->pairs) {
        for (size_t i = 0; i < n->npairs; i++) {
            node_free(n->pairs[i].key);
            node_free(n->pairs[i].value);
        }
        free(n->pairs);
    }
    free(n);
}

static struct node *
node_new(enum node_kind kind, enum origin origin, const char *set, int line, int col)
{
    struct node *n = calloc(1, sizeof(*n));

    if (!n)
        return NULL;
    n->kind = kind;
    n->origin = origin;
    n->set = set;
    n->line = line;
    n->col = col;
    return n;
}

static struct node *
scalar_new(const char *text, size_t len, enum origin origin, const char *set)
{
    struct node *n = node_new(NODE_SCALAR, origin, set, 0, 0);

    if (!n)
        return NULL;
    n->text = malloc(len + 1);
    if (!n->text) {
        free(n);
        return NULL;
    }
    memcpy(n->text, text, len);
    n->text[len] = '\0';
    n->len = len;
    n->plain = true;
    return n;
}

/* A plain empty, "~" or "null" scalar: treated as "not set". */
static bool
is_null(const struct node *n)
{
    if (!n || n->kind != NODE_SCALAR || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
           strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

static bool
scalar_eq(const struct node *n, const char *s, size_t len)
{
    return n && n->kind == NODE_SCALAR && n->len == len && memcmp(n->text, s, len) == 0;
}

static struct pair *
find_pair(const struct node *map, const char *key, size_t len)
{
    if (!map || map->kind != NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->npairs; i++) {
        if (scalar_eq(map->pairs[i].key, key, len))
            return &map->pairs[i];
    }
    return NULL;
}

static struct node *
lookup(const struct node *map, const char *key)
{
    struct pair *p = find_pair(map, key, strlen(key));

    return p ? p->value : NULL;
}

static const char *
kind_name(const struct node *n)
{
    switch (n->kind) {
    case NODE_MAP:
        return "a mapping";
    case NODE_SEQ:
        return "a list";
    default:
        return "a scalar";
    }
}

/* ---------------------------------------------------------- YAML -> tree -- */

static void
path_append(char *path, const char *fmt, const char *s, size_t len)
{
    size_t cur = strlen(path);

    if (cur + 1 >= PATH_LEN)
        return;
    snprintf(path + cur, PATH_LEN - cur, fmt, (int)(len > INT_MAX ? INT_MAX : len), s);
}

/* Label of a sequence item for messages: "[name]" when it has a name, else "[i]". */
static void
item_label(struct ctx *c, yaml_node_t *yn, size_t i)
{
    char idx[32];

    if (yn && yn->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = yn->data.mapping.pairs.start; p < yn->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
                continue;
            if (k->data.scalar.length != 4 || memcmp(k->data.scalar.value, "name", 4) != 0)
                continue;
            if (memchr(v->data.scalar.value, '\0', v->data.scalar.length))
                break;
            path_append(c->path, "[%.*s]", (const char *)v->data.scalar.value,
                        v->data.scalar.length);
            return;
        }
    }
    snprintf(idx, sizeof(idx), "%zu", i);
    path_append(c->path, "[%.*s]", idx, strlen(idx));
}

struct keyref {
    const struct node *key;
    size_t idx;
};

static int
keyref_cmp(const void *a, const void *b)
{
    const struct keyref *x = a, *y = b;
    size_t n = x->key->len < y->key->len ? x->key->len : y->key->len;
    int r = memcmp(x->key->text, y->key->text, n);

    if (r)
        return r;
    if (x->key->len != y->key->len)
        return x->key->len < y->key->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Refuse a mapping with the same key twice; sorts, so large mappings stay cheap. */
static int
check_duplicates(struct ctx *c, const struct node *map)
{
    struct keyref *refs = NULL;
    const struct keyref *first = NULL, *second = NULL;
    int rc = 0;

    if (map->npairs < 2)
        goto out;
    refs = calloc(map->npairs, sizeof(*refs));
    if (!refs) {
        rc = fail(c, NULL, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < map->npairs; i++) {
        refs[i].key = map->pairs[i].key;
        refs[i].idx = i;
    }
    qsort(refs, map->npairs, sizeof(*refs), keyref_cmp);
    for (size_t i = 1; i < map->npairs; i++) {
        if (refs[i].key->len != refs[i - 1].key->len ||
            memcmp(refs[i].key->text, refs[i - 1].key->text, refs[i].key->len) != 0)
            continue;
        if (!second || refs[i].idx < second->idx) {
            first = &refs[i - 1];
            second = &refs[i];
        }
    }
    if (second) {
        const char *dot = c->path[0] ? "." : "";
        if (first->key->origin == FROM_FILE && first->key->line > 0)
            rc = fail(c, second->key, -EINVAL, "duplicate key '%s%s%s' (first defined at line %d)",
                      c->path, dot, second->key->text, first->key->line);
        else
            rc = fail(c, second->key, -EINVAL, "duplicate key '%s%s%s'", c->path, dot,
                      second->key->text);
    }
out:
    free(refs);
    return rc;
}

static int
convert(struct ctx *c, int id, int depth, struct node **out)
{
    yaml_node_t *yn = yaml_document_get_node(c->doc, id);
    struct node *n = NULL;
    int rc = 0, line = 0, col = 0;

    *out = NULL;
    if (!yn) {
        rc = fail_at(c, c->origin, c->set, 0, 0, -EINVAL, "invalid YAML node reference");
        goto out;
    }
    line = clamp_int(yn->start_mark.line + 1);
    col = clamp_int(yn->start_mark.column + 1);
    if (c->seen[id - 1]) {
        rc = fail_at(c, c->origin, c->set, line, col, -EINVAL, "YAML aliases are not supported");
        goto out;
    }
    c->seen[id - 1] = 1;
    if (depth >= MAX_DEPTH) {
        rc = fail_at(c, c->origin, c->set, line, col, -EINVAL, "nesting deeper than %d levels",
                     MAX_DEPTH);
        goto out;
    }

    switch (yn->type) {
    case YAML_SCALAR_NODE: {
        const char *v = (const char *)yn->data.scalar.value;
        size_t len = yn->data.scalar.length;
        if (memchr(v, '\0', len)) {
            rc = fail_at(c, c->origin, c->set, line, col, -EINVAL, "NUL bytes are not allowed");
            goto out;
        }
        n = scalar_new(v, len, c->origin, c->set);
        if (!n)
            break;
        n->line = line;
        n->col = col;
        n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        break;
    }
    case YAML_SEQUENCE_NODE: {
        size_t cnt = (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
        size_t plen = strlen(c->path);
        n = node_new(NODE_SEQ, c->origin, c->set, line, col);
        if (!n)
            break;
        n->flow = yn->data.sequence.style == YAML_FLOW_SEQUENCE_STYLE;
        n->items = calloc(cnt ? cnt : 1, sizeof(*n->items));
        if (!n->items) {
            rc = fail(c, NULL, -ENOMEM, "out of memory");
            goto out;
        }
        n->nitems = cnt;
        for (size_t i = 0; i < cnt; i++) {
            yaml_node_item_t item = yn->data.sequence.items.start[i];
            item_label(c, yaml_document_get_node(c->doc, item), i);
            rc = convert(c, item, depth + 1, &n->items[i]);
            c->path[plen] = '\0';
            if (rc)
                goto out;
        }
        break;
    }
    case YAML_MAPPING_NODE: {
        size_t cnt = (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
        size_t plen = strlen(c->path);
        n = node_new(NODE_MAP, c->origin, c->set, line, col);
        if (!n)
            break;
        n->flow = yn->data.mapping.style == YAML_FLOW_MAPPING_STYLE;
        n->pairs = calloc(cnt ? cnt : 1, sizeof(*n->pairs));
        if (!n->pairs) {
            rc = fail(c, NULL, -ENOMEM, "out of memory");
            goto out;
        }
        n->npairs = cnt;
        for (size_t i = 0; i < cnt; i++) {
            yaml_node_pair_t *p = &yn->data.mapping.pairs.start[i];
            yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
            if (kn && kn->type != YAML_SCALAR_NODE) {
                rc = fail_at(c, c->origin, c->set, clamp_int(kn->start_mark.line + 1),
                             clamp_int(kn->start_mark.column + 1), -EINVAL,
                             "mapping keys must be scalars");
                goto out;
            }
            rc = convert(c, p->key, depth + 1, &n->pairs[i].key);
            if (rc)
                goto out;
            path_append(c->path, c->path[0] ? ".%.*s" : "%.*s", n->pairs[i].key->text,
                        n->pairs[i].key->len);
            rc = convert(c, p->value, depth + 1, &n->pairs[i].value);
            c->path[plen] = '\0';
            if (rc)
                goto out;
        }
        rc = check_duplicates(c, n);
        break;
    }
    default:
        rc = fail_at(c, c->origin, c->set, line, col, -EINVAL, "empty YAML node");
        goto out;
    }
    if (!n && !rc)
        rc = fail(c, NULL, -ENOMEM, "out of memory");
out:
    if (rc) {
        node_free(n);
        n = NULL;
    }
    *out = n;
    return rc;
}

/* Turn a libyaml parser error into a message with a position. */
static int
yaml_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";

    if (p->error == YAML_MEMORY_ERROR)
        return fail(c, NULL, -ENOMEM, "out of memory");
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset: turn it into line:col. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (p->problem_value != -1)
            return fail_at(c, c->origin, c->set, clamp_int(line), clamp_int(col), -EINVAL,
                           "invalid YAML input: %s (#%X)", problem, (unsigned)p->problem_value);
        return fail_at(c, c->origin, c->set, clamp_int(line), clamp_int(col), -EINVAL,
                       "invalid YAML input: %s", problem);
    }
    int line = clamp_int(p->problem_mark.line + 1);
    int col = clamp_int(p->problem_mark.column + 1);
    if (p->context)
        return fail_at(c, c->origin, c->set, line, col, -EINVAL,
                       "YAML syntax error: %s (%s at line %d, column %d)", problem, p->context,
                       clamp_int(p->context_mark.line + 1), clamp_int(p->context_mark.column + 1));
    return fail_at(c, c->origin, c->set, line, col, -EINVAL, "YAML syntax error: %s", problem);
}

/*
 * A first pass over the events, stopping early: refuses aliases (at the alias
 * itself), nesting deeper than MAX_DEPTH and a second document. Stopping at the
 * depth limit matters: libyaml rescans its whole flow-level stack for every
 * token, so a long run of '[' costs quadratic time if it is parsed to the end.
 */
static int
precheck(struct ctx *c, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_parser = false, have_event = false, done = false;
    int rc = 0, depth = 0, docs = 0;

    if (!yaml_parser_initialize(&parser)) {
        rc = fail(c, NULL, -ENOMEM, "out of memory");
        goto out;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = yaml_error(c, &parser, text, len);
            goto out;
        }
        have_event = true;
        int line = clamp_int(ev.start_mark.line + 1), col = clamp_int(ev.start_mark.column + 1);
        switch (ev.type) {
        case YAML_ALIAS_EVENT:
            rc =
                fail_at(c, c->origin, c->set, line, col, -EINVAL, "YAML aliases are not supported");
            goto out;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                rc = fail_at(c, c->origin, c->set, line, col, -EINVAL,
                             "more than one YAML document");
                goto out;
            }
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth >= MAX_DEPTH) {
                rc = fail_at(c, c->origin, c->set, line, col, -EINVAL,
                             "nesting deeper than %d levels", MAX_DEPTH);
                goto out;
            }
            if (ev.type != YAML_SCALAR_EVENT)
                depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        have_event = false;
    }
out:
    if (have_event)
        yaml_event_delete(&ev);
    if (have_parser)
        yaml_parser_delete(&parser);
    return rc;
}

/*
 * Parse TEXT[0..len) as a single YAML document into a tree; *out is NULL for an
 * empty stream. Nodes get c->origin / c->set.
 */
static int
parse_yaml(struct ctx *c, const char *text, size_t len, struct node **out)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_parser = false, have_doc = false;
    int rc = 0;

    *out = NULL;
    if (len == 0)
        goto out;
    rc = precheck(c, text, len);
    if (rc)
        goto out;
    if (!yaml_parser_initialize(&parser)) {
        rc = fail(c, NULL, -ENOMEM, "out of memory");
        goto out;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_error(c, &parser, text, len);
        goto out;
    }
    have_doc = true;
    if (!yaml_document_get_root_node(&doc))
        goto out;
    c->seen = calloc((size_t)(doc.nodes.top - doc.nodes.start), 1);
    if (!c->seen) {
        rc = fail(c, NULL, -ENOMEM, "out of memory");
        goto out;
    }
    c->doc = &doc;
    rc = convert(c, 1, 0, out);
out:
    free(c->seen);
    c->seen = NULL;
    c->doc = NULL;
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    return rc;
}

/*
 * The value of a --set or a built-in default. Text starting with [ { " or ' is
 * parsed as one YAML flow node (so lists and quoted strings work); anything else
 * is a plain scalar taken verbatim (trimmed), so "a: b" or "x#y" need no quoting.
 */
static int
parse_value(struct ctx *c, const char *text, enum origin origin, const char *set, const char *path,
            size_t pathlen, struct node **out)
{
    const char *p = text;
    size_t len;
    struct node *n = NULL;
    int rc = 0;

    *out = NULL;
    c->origin = origin;
    c->set = set;
    snprintf(c->path, sizeof(c->path), "%.*s", (int)(pathlen < PATH_LEN ? pathlen : PATH_LEN - 1),
             path);
    while (*p == ' ' || *p == '\t')
        p++;
    len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len > 0 && (*p == '[' || *p == '{' || *p == '"' || *p == '\'')) {
        rc = parse_yaml(c, p, len, &n);
        if (rc)
            goto out;
        if (!n || (n->kind != NODE_SCALAR && !n->flow)) {
            rc = fail_at(c, origin, set, 0, 0, -EINVAL,
                         "the value must be a single YAML flow value (scalar, [list] or {map})");
            goto out;
        }
    } else {
        n = scalar_new(p, len, origin, set);
        if (!n) {
            rc = fail(c, NULL, -ENOMEM, "out of memory");
            goto out;
        }
    }
out:
    if (rc) {
        node_free(n);
        n = NULL;
    }
    *out = n;
    return rc;
}

/* ------------------------------------------------------------ --set KEY=V -- */

static const struct bh_conf_key *
find_key(const struct bh_conf_key *table, const char *name, size_t len)
{
    if (!table)
        return NULL;
    for (const struct bh_conf_key *k = table; k->name; k++) {
        if (strlen(k->name) == len && memcmp(k->name, name, len) == 0)
            return k;
    }
    return NULL;
}

/* Set KEY (len bytes) in MAP to VALUE (consumed). */
static int
set_pair(struct ctx *c, struct node *map, const char *set, const char *key, size_t len,
         struct node *value)
{
    struct pair *p = find_pair(map, key, len);
    struct pair *grown;
    struct node *kn;

    if (p) {
        node_free(p->value);
        p->value = value;
        return 0;
    }
    kn = scalar_new(key, len, FROM_SET, set);
    grown = kn ? realloc(map->pairs, (map->npairs + 1) * sizeof(*map->pairs)) : NULL;
    if (!grown) {
        node_free(kn);
        node_free(value);
        return fail(c, NULL, -ENOMEM, "out of memory");
    }
    map->pairs = grown;
    map->pairs[map->npairs].key = kn;
    map->pairs[map->npairs].value = value;
    map->npairs++;
    return 0;
}

/* The child KEY of MAP as a collection of KIND, created when absent or null. */
static int
descend(struct ctx *c, struct node *map, const char *set, const char *key, size_t len,
        enum node_kind kind, size_t pathlen, struct node **out)
{
    struct pair *p = find_pair(map, key, len);
    struct node *n;
    int rc;

    *out = NULL;
    if (p && !is_null(p->value)) {
        if (p->value->kind == NODE_SCALAR)
            return fail_at(c, FROM_SET, set, 0, 0, -EINVAL, "'%.*s' is a scalar, not a mapping",
                           (int)pathlen, set);
        *out = p->value;
        return 0;
    }
    n = node_new(kind, FROM_SET, set, 0, 0);
    if (!n)
        return fail(c, NULL, -ENOMEM, "out of memory");
    rc = set_pair(c, map, set, key, len, n);
    if (rc)
        return rc;
    *out = n;
    return 0;
}

/* The entry of a sequence named COMP (by its "name" value) or at index COMP. */
static struct node **
find_entry(struct node *seq, const char *comp, size_t len)
{
    size_t idx = 0;

    for (size_t i = 0; i < seq->nitems; i++) {
        if (scalar_eq(lookup(seq->items[i], "name"), comp, len))
            return &seq->items[i];
    }
    for (size_t i = 0; i < len; i++) {
        if (comp[i] < '0' || comp[i] > '9' || idx > (SIZE_MAX - 9) / 10)
            return NULL;
        idx = idx * 10 + (size_t)(comp[i] - '0');
    }
    return len > 0 && idx < seq->nitems ? &seq->items[idx] : NULL;
}

static int
apply_set(struct ctx *c, struct node *root, const struct bh_conf_key *table, const char *set)
{
    const char *eq = strchr(set, '=');
    const struct bh_conf_key *tab = table, *vk = NULL;
    struct node *cur = root, *value = NULL;
    const char *p = set;
    int rc = 0, depth = 0;

    if (!eq || eq == set) {
        rc = fail_at(c, FROM_SET, set, 0, 0, -EINVAL, "expected KEY=VALUE");
        goto out;
    }
    rc = parse_value(c, eq + 1, FROM_SET, set, set, (size_t)(eq - set), &value);
    if (rc)
        goto out;
    for (;;) {
        const char *end = memchr(p, '.', (size_t)(eq - p));
        bool last = end == NULL;
        size_t len;
        if (last)
            end = eq;
        len = (size_t)(end - p);
        if (len == 0) {
            rc = fail_at(c, FROM_SET, set, 0, 0, -EINVAL, "empty key component");
            goto out;
        }
        if (++depth > MAX_DEPTH) {
            rc = fail_at(c, FROM_SET, set, 0, 0, -EINVAL, "key nested deeper than %d levels",
                         MAX_DEPTH);
            goto out;
        }
        if (cur->kind == NODE_MAP) {
            const struct bh_conf_key *k = find_key(tab, p, len);
            struct node *child;
            if (k && k->type == BH_CONF_MAP && !last) {
                /* Free-form map: the rest of the path is one key ("bootstrap.servers"). */
                if (end + 1 == eq) {
                    rc = fail_at(c, FROM_SET, set, 0, 0, -EINVAL, "empty key component");
                    goto out;
                }
                rc = descend(c, cur, set, p, len, NODE_MAP, (size_t)(end - set), &child);
                if (rc)
                    goto out;
                if (child->kind != NODE_MAP) {
                    rc = fail_at(c, FROM_SET, set, 0, 0, -EINVAL, "'%.*s' is not a mapping",
                                 (int)(end - set), set);
                    goto out;
                }
                rc = set_pair(c, child, set, end + 1, (size_t)(eq - end - 1), value);
                value = NULL;
                goto out;
            }
            if (last) {
                rc = set_pair(c, cur, set, p, len, value);
                value = NULL;
                goto out;
            }
            rc =
                descend(c, cur, set, p, len, k && k->type == BH_CONF_VARIANTS ? NODE_SEQ : NODE_MAP,
                        (size_t)(end - set), &child);
            if (rc)
                goto out;
            cur = child;
            tab = k && k->type == BH_CONF_SECTION ? k->sub : NULL;
            vk = k && k->type == BH_CONF_VARIANTS ? k : NULL;
        } else {
            struct node **slot = find_entry(cur, p, len);
            if (!slot) {
                rc = fail_at(c, FROM_SET, set, 0, 0, -ENOENT, "no entry '%.*s' in '%.*s'", (int)len,
                             p, (int)(p - 1 - set), set);
                goto out;
            }
            if (last) {
                node_free(*slot);
                *slot = value;
                value = NULL;
                goto out;
            }
            cur = *slot;
            if (cur->kind == NODE_SCALAR) {
                rc = fail_at(c, FROM_SET, set, 0, 0, -EINVAL, "'%.*s' is a scalar, not a mapping",
                             (int)(end - set), set);
                goto out;
            }
            tab = NULL;
            if (vk && vk->variant && cur->kind == NODE_MAP) {
                const struct node *ty = lookup(cur, "type");
                const struct bh_conf_variant *v =
                    ty && ty->kind == NODE_SCALAR ? vk->variant(ty->text) : NULL;
                tab = v ? v->keys : NULL;
            }
            vk = NULL;
        }
        p = end + 1;
    }
out:
    node_free(value);
    return rc;
}

/* --------------------------------------------------------------- binding -- */

static void *
field(void *base, const struct bh_conf_key *k)
{
    return (char *)base + k->offset;
}

static void
clear_fields(const struct bh_conf_key *table, void *base, bool release, int depth)
{
    if (!table || !base || depth > MAX_DEPTH)
        return;
    for (const struct bh_conf_key *k = table; k->name; k++) {
        void *f = field(base, k);
        switch (k->type) {
        case BH_CONF_STRING:
            if (release)
                free(*(char **)f);
            *(char **)f = NULL;
            break;
        case BH_CONF_INT:
        case BH_CONF_DURATION:
            *(int64_t *)f = 0;
            break;
        case BH_CONF_BOOL:
            *(bool *)f = false;
            break;
        case BH_CONF_SIZE:
            *(uint64_t *)f = 0;
            break;
        case BH_CONF_STRING_LIST: {
            struct bh_strlist *l = f;
            if (release && l->v) {
                for (size_t i = 0; i < l->n; i++)
                    free(l->v[i]);
                free(l->v);
            }
            memset(l, 0, sizeof(*l));
            break;
        }
        case BH_CONF_MAP: {
            struct bh_kvlist *m = f;
            if (release) {
                for (size_t i = 0; m->k && m->v && i < m->n; i++) {
                    free(m->k[i]);
                    free(m->v[i]);
                }
                free(m->k);
                free(m->v);
            }
            memset(m, 0, sizeof(*m));
            break;
        }
        case BH_CONF_SECTION:
            clear_fields(k->sub, f, release, depth + 1);
            break;
        case BH_CONF_VARIANTS: {
            struct bh_variant_list *l = f;
            if (release && l->v) {
                for (size_t i = 0; i < l->n; i++) {
                    struct bh_variant *e = &l->v[i];
                    free(e->name);
                    free(e->type);
                    if (e->settings && e->variant)
                        clear_fields(e->variant->keys, e->settings, true, depth + 1);
                    free(e->settings);
                }
                free(l->v);
            }
            memset(l, 0, sizeof(*l));
            break;
        }
        }
    }
}

static int
type_error(struct ctx *c, const struct node *n, const char *path, const char *want)
{
    if (n->kind == NODE_SCALAR)
        return fail(c, n, -EINVAL, "key '%s': expected %s, got '%.64s'", path, want, n->text);
    return fail(c, n, -EINVAL, "key '%s': expected %s, got %s", path, want, kind_name(n));
}

static int
parse_int(const char *text, int64_t *out)
{
    const char *p = text;
    char *end;
    long long v;

    if (*p == '+' || *p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = (int64_t)v;
    return 0;
}

static int
parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static bool
has_range(const struct bh_conf_key *k)
{
    return k->min < k->max;
}

static int
range_error(struct ctx *c, const struct node *n, const char *path, const struct bh_conf_key *k)
{
    return fail(c, n, -ERANGE, "key '%s': %.64s is out of range [%" PRId64 ", %" PRId64 "]", path,
                n->text, k->min, k->max);
}

static int
bind_number(struct ctx *c, const struct bh_conf_key *k, const struct node *n, void *dst,
            const char *path)
{
    static const char *const want[] = {
        [BH_CONF_INT] = "an integer",
        [BH_CONF_SIZE] = "a size (e.g. 4096, 512KiB, 10MB, 2GiB)",
        [BH_CONF_DURATION] = "a duration (e.g. 250ms, 5s, 2m, 1h, 7d)",
    };
    int64_t v = 0;
    uint64_t u = 0;
    int rc;

    if (n->kind != NODE_SCALAR)
        return type_error(c, n, path, want[k->type]);
    if (k->type == BH_CONF_INT)
        rc = parse_int(n->text, &v);
    else if (k->type == BH_CONF_SIZE)
        rc = bh_conf_parse_size(n->text, &u);
    else
        rc = bh_conf_parse_duration(n->text, &v);
    if (rc == -ERANGE)
        return fail(c, n, -ERANGE, "key '%s': %.64s is too %s", path, n->text,
                    n->text[0] == '-' ? "small" : "large");
    if (rc)
        return type_error(c, n, path, want[k->type]);
    if (k->type == BH_CONF_SIZE) {
        if (has_range(k) && (u > (uint64_t)INT64_MAX || (int64_t)u < k->min || (int64_t)u > k->max))
            return range_error(c, n, path, k);
        *(uint64_t *)dst = u;
        return 0;
    }
    if (has_range(k) && (v < k->min || v > k->max))
        return range_error(c, n, path, k);
    *(int64_t *)dst = v;
    return 0;
}

static int
bind_strlist(struct ctx *c, const struct node *n, struct bh_strlist *l, const char *path)
{
    if (n->kind != NODE_SEQ)
        return type_error(c, n, path, "a list of strings");
    l->v = calloc(n->nitems ? n->nitems : 1, sizeof(*l->v));
    if (!l->v)
        return fail(c, NULL, -ENOMEM, "out of memory");
    l->n = n->nitems;
    for (size_t i = 0; i < n->nitems; i++) {
        const struct node *it = n->items[i];
        if (it->kind != NODE_SCALAR)
            return fail(c, it, -EINVAL, "key '%s[%zu]': expected a string, got %s", path, i,
                        kind_name(it));
        l->v[i] = strdup(it->text);
        if (!l->v[i])
            return fail(c, NULL, -ENOMEM, "out of memory");
    }
    return 0;
}

static int
bind_kvlist(struct ctx *c, const struct node *n, struct bh_kvlist *m, const char *path)
{
    size_t cnt = n->npairs ? n->npairs : 1;

    if (n->kind != NODE_MAP)
        return type_error(c, n, path, "a mapping");
    m->k = calloc(cnt, sizeof(*m->k));
    m->v = calloc(cnt, sizeof(*m->v));
    if (!m->k || !m->v)
        return fail(c, NULL, -ENOMEM, "out of memory");
    m->n = n->npairs;
    for (size_t i = 0; i < n->npairs; i++) {
        const struct pair *p = &n->pairs[i];
        if (p->value->kind != NODE_SCALAR)
            return fail(c, p->value, -EINVAL, "key '%s.%s': expected a scalar, got %s", path,
                        p->key->text, kind_name(p->value));
        m->k[i] = strdup(p->key->text);
        m->v[i] = strdup(p->value->text);
        if (!m->k[i] || !m->v[i])
            return fail(c, NULL, -ENOMEM, "out of memory");
    }
    return 0;
}

static int bind_mapping(struct ctx *c, const struct bh_conf_key *table, const struct node *map,
                        void *base, const char *prefix, bool variant_entry, int depth);

/* The name of variant entry IT, checked: a non-empty scalar. */
static int
entry_name(struct ctx *c, const struct node *it, const char *path, size_t i,
           const struct node **out)
{
    char epath[PATH_LEN];
    const struct node *nm;

    *out = NULL;
    snprintf(epath, sizeof(epath), "%s[%zu]", path, i);
    if (it->kind != NODE_MAP)
        return type_error(c, it, epath, "a mapping");
    nm = lookup(it, "name");
    if (!nm || is_null(nm))
        return fail(c, it, -EINVAL, "key '%s': missing 'name'", epath);
    if (nm->kind != NODE_SCALAR || nm->len == 0) {
        snprintf(epath, sizeof(epath), "%s[%zu].name", path, i);
        return type_error(c, nm, epath, "a non-empty string");
    }
    *out = nm;
    return 0;
}

/* Every entry has a valid name, and no two the same (sorted: large lists stay cheap). */
static int
check_entry_names(struct ctx *c, const struct node *seq, const char *path)
{
    struct keyref *refs = NULL;
    const struct keyref *first = NULL, *second = NULL;
    int rc = 0;

    refs = calloc(seq->nitems ? seq->nitems : 1, sizeof(*refs));
    if (!refs) {
        rc = fail(c, NULL, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < seq->nitems; i++) {
        rc = entry_name(c, seq->items[i], path, i, &refs[i].key);
        if (rc)
            goto out;
        refs[i].idx = i;
    }
    qsort(refs, seq->nitems, sizeof(*refs), keyref_cmp);
    for (size_t i = 1; i < seq->nitems; i++) {
        if (strcmp(refs[i].key->text, refs[i - 1].key->text) != 0)
            continue;
        if (!second || refs[i].idx < second->idx) {
            first = &refs[i - 1];
            second = &refs[i];
        }
    }
    if (second) {
        const struct node *prev = seq->items[first->idx];
        const char *name = second->key->text;
        if (prev->origin == FROM_FILE && prev->line > 0)
            rc = fail(c, second->key, -EINVAL,
                      "key '%s[%s].name': duplicate name '%s' (first at line %d)", path, name, name,
                      prev->line);
        else
            rc = fail(c, second->key, -EINVAL, "key '%s[%s].name': duplicate name '%s'", path, name,
                      name);
    }
out:
    free(refs);
    return rc;
}

static int
bind_variants(struct ctx *c, const struct bh_conf_key *k, const struct node *n,
              struct bh_variant_list *l, const char *path, int depth)
{
    char epath[PATH_LEN], tpath[PATH_LEN + 8];
    int rc;

    if (n->kind != NODE_SEQ)
        return type_error(c, n, path, "a list of entries");
    rc = check_entry_names(c, n, path);
    if (rc)
        return rc;
    l->v = calloc(n->nitems ? n->nitems : 1, sizeof(*l->v));
    if (!l->v)
        return fail(c, NULL, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n->nitems; i++) {
        const struct node *it = n->items[i];
        const struct node *nm = lookup(it, "name");
        const struct node *ty = lookup(it, "type");
        const struct bh_conf_variant *v;
        struct bh_variant *e;

        snprintf(epath, sizeof(epath), "%s[%s]", path, nm->text);
        if (!ty || is_null(ty))
            return fail(c, it, -EINVAL, "key '%s': missing 'type'", epath);
        if (ty->kind != NODE_SCALAR) {
            snprintf(tpath, sizeof(tpath), "%s.type", epath);
            return type_error(c, ty, tpath, "a type name");
        }
        v = k->variant ? k->variant(ty->text) : NULL;
        if (!v)
            return fail(c, ty, -EINVAL, "key '%s.type': unknown type '%.64s' (known types: %s)",
                        epath, ty->text,
                        k->variant_doc && *k->variant_doc ? k->variant_doc : "none");
        e = &l->v[l->n++];
        e->variant = v;
        e->user = v->user;
        e->line = it->origin == FROM_FILE ? it->line : 0;
        e->name = strdup(nm->text);
        e->type = strdup(ty->text);
        e->settings = calloc(1, v->size ? v->size : 1);
        if (!e->name || !e->type || !e->settings)
            return fail(c, NULL, -ENOMEM, "out of memory");
        rc = bind_mapping(c, v->keys, it, e->settings, epath, true, depth + 1);
        if (rc)
            return rc;
        if (v->check) {
            const char *key = NULL;
            char why[512] = "";
            rc = v->check(e->settings, &key, why, sizeof(why));
            if (rc) {
                const struct node *at = key ? lookup(it, key) : NULL;
                return fail(c, at ? at : it, rc < 0 ? rc : -EINVAL, "key '%s%s%s': %s", epath,
                            key ? "." : "", key ? key : "", why[0] ? why : "refused");
            }
        }
    }
    return 0;
}

static int
bind_value(struct ctx *c, const struct bh_conf_key *k, const struct node *n, void *dst,
           const char *path, int depth)
{
    switch (k->type) {
    case BH_CONF_STRING:
        if (n->kind != NODE_SCALAR)
            return type_error(c, n, path, "a string");
        *(char **)dst = strdup(n->text);
        if (!*(char **)dst)
            return fail(c, NULL, -ENOMEM, "out of memory");
        return 0;
    case BH_CONF_BOOL:
        if (n->kind != NODE_SCALAR || parse_bool(n->text, dst) != 0)
            return type_error(c, n, path, "a boolean (true/false/yes/no/on/off)");
        return 0;
    case BH_CONF_INT:
    case BH_CONF_SIZE:
    case BH_CONF_DURATION:
        return bind_number(c, k, n, dst, path);
    case BH_CONF_STRING_LIST:
        return bind_strlist(c, n, dst, path);
    case BH_CONF_MAP:
        return bind_kvlist(c, n, dst, path);
    case BH_CONF_SECTION:
        if (n->kind != NODE_MAP)
            return type_error(c, n, path, "a mapping");
        return bind_mapping(c, k->sub, n, dst, path, false, depth + 1);
    case BH_CONF_VARIANTS:
        return bind_variants(c, k, n, dst, path, depth);
    }
    return fail(c, n, -EINVAL, "key '%s': unsupported key type %d", path, (int)k->type);
}

/* The key's own check of its bound value, located at N. */
static int
run_check(struct ctx *c, const struct bh_conf_key *k, const struct node *n, const void *dst,
          const char *path)
{
    char why[512] = "";
    if (!k->check)
        return 0;
    int rc = k->check(dst, why, sizeof(why));
    if (rc == 0)
        return 0;
    return fail(c, n, rc < 0 ? rc : -EINVAL, "key '%s': %s", path, why[0] ? why : "refused");
}

static int
bind_key(struct ctx *c, const struct bh_conf_key *k, const struct node *n, void *dst,
         const char *path, int depth)
{
    struct node *def = NULL;
    int rc = 0;

    if (n) {
        rc = bind_value(c, k, n, dst, path, depth);
        if (rc == 0)
            rc = run_check(c, k, n, dst, path);
        goto out;
    }
    if (k->flags & BH_CONF_REQUIRED) {
        rc = fail(c, NULL, -EINVAL, "key '%s' is required", path);
        goto out;
    }
    if (k->type == BH_CONF_SECTION) {
        /* Absent section: its own defaults and required keys still apply. */
        rc = bind_mapping(c, k->sub, NULL, dst, path, false, depth + 1);
        goto out;
    }
    if (!k->def)
        goto out;
    rc = parse_value(c, k->def, FROM_DEFAULT, NULL, path, strlen(path), &def);
    if (rc || is_null(def))
        goto out;
    rc = bind_value(c, k, def, dst, path, depth);
    if (rc == 0)
        rc = run_check(c, k, def, dst, path);
out:
    node_free(def);
    return rc;
}

/* The identity of file PATH into OUT (zeroes if PATH is NULL or cannot be read). */
static void
stamp_file(const char *path, struct bh_conf_stamp *out)
{
    struct stat st;
    memset(out, 0, sizeof(*out));
    if (path == NULL || stat(path, &st) != 0)
        return;
    out->dev = (int64_t)st.st_dev;
    out->ino = (int64_t)st.st_ino;
    out->size = (int64_t)st.st_size;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

static int
bind_mapping(struct ctx *c, const struct bh_conf_key *table, const struct node *map, void *base,
             const char *prefix, bool variant_entry, int depth)
{
    char path[PATH_LEN];
    const char *dot = prefix[0] ? "." : "";

    if (depth > MAX_DEPTH)
        return fail(c, map, -EINVAL, "key '%s': configuration tables nest too deep", prefix);
    /* Every problem of the mapping is reported; the first one's code is returned. */
    int first = 0;
    for (size_t i = 0; map && i < map->npairs; i++) {
        const struct node *key = map->pairs[i].key;
        if (variant_entry && (strcmp(key->text, "name") == 0 || strcmp(key->text, "type") == 0))
            continue;
        if (!find_key(table, key->text, key->len)) {
            int rc = fail(c, key, -EINVAL, "unknown key '%s%s%s'", prefix, dot, key->text);
            first = first ? first : rc;
        }
    }
    for (const struct bh_conf_key *k = table; k && k->name; k++) {
        const struct node *n = lookup(map, k->name);
        int rc;
        if (is_null(n))
            n = NULL;
        snprintf(path, sizeof(path), "%s%s%s", prefix, dot, k->name);
        rc = bind_key(c, k, n, field(base, k), path, depth);
        if (rc == -ENOMEM)
            return rc;
        if (k->type == BH_CONF_STRING && (k->flags & BH_CONF_FILE))
            stamp_file(*(char **)field(base, k),
                       (struct bh_conf_stamp *)(void *)((char *)base + k->stamp));
        first = first ? first : rc;
    }
    return first;
}

/* ------------------------------------------------------------ public API -- */

/* The node of a dotted KEY ("dead_letter.topic", "adapters.fire.listen"), NULL if absent. */
static const struct node *
locate(struct node *tree, const char *key)
{
    struct node *cur = tree;
    const char *p = key;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (cur->kind == NODE_MAP) {
            struct pair *pr = find_pair(cur, p, len);
            cur = pr ? pr->value : NULL;
        } else if (cur->kind == NODE_SEQ) {
            struct node **e = find_entry(cur, p, len);
            cur = e ? *e : NULL;
        } else {
            return NULL;
        }
        p += len;
        if (*p == '.')
            p++;
    }
    return cur;
}

int
bh_conf_load_string_checked(const char *name, const char *yaml, size_t len, const char *const *sets,
                            size_t nsets, const struct bh_conf_key *root, bh_conf_final_check final,
                            void *out, char *errstr, size_t errstr_size)
{
    struct ctx c = {.file = name ? name : "config", .err = errstr, .errsz = errstr_size};
    struct node *tree = NULL;
    int rc = 0;

    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!root || !out || (!yaml && len) || (!sets && nsets)) {
        rc = fail(&c, NULL, -EINVAL, "invalid arguments");
        goto out;
    }
    clear_fields(root, out, false, 0);
    c.origin = FROM_FILE;
    rc = parse_yaml(&c, yaml, len, &tree);
    if (rc)
        goto out;
    if (tree && is_null(tree)) {
        node_free(tree);
        tree = NULL;
    }
    if (tree && tree->kind != NODE_MAP) {
        rc =
            fail(&c, tree, -EINVAL, "expected a mapping at the top level, got %s", kind_name(tree));
        goto out;
    }
    if (!tree) {
        tree = node_new(NODE_MAP, FROM_FILE, NULL, 0, 0);
        if (!tree) {
            rc = fail(&c, NULL, -ENOMEM, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < nsets; i++) {
        if (!sets[i]) {
            rc = fail(&c, NULL, -EINVAL, "invalid arguments");
            goto out;
        }
        rc = apply_set(&c, tree, root, sets[i]);
        if (rc)
            goto out;
    }
    rc = bind_mapping(&c, root, tree, out, "", false, 0);
    /* The final check also runs after refused keys (it sees them unset), so that its
     * problems are listed with theirs. */
    if (rc != -ENOMEM && final) {
        const char *key = NULL;
        char why[512] = "";
        int frc = final(out, &key, why, sizeof(why));
        if (frc) {
            const struct node *at = key ? locate(tree, key) : NULL;
            if (key)
                frc = fail(&c, at, frc < 0 ? frc : -EINVAL, "key '%s': %s", key,
                           why[0] ? why : "refused");
            else
                frc = fail(&c, NULL, frc < 0 ? frc : -EINVAL, "%s", why[0] ? why : "refused");
            rc = rc ? rc : frc;
        }
    }
out:
    node_free(tree);
    if (rc && root && out)
        clear_fields(root, out, true, 0);
    return rc;
}

int
bh_conf_load_string(const char *name, const char *yaml, size_t len, const char *const *sets,
                    size_t nsets, const struct bh_conf_key *root, void *out, char *errstr,
                    size_t errstr_size)
{
    return bh_conf_load_string_checked(name, yaml, len, sets, nsets, root, NULL, out, errstr,
                                       errstr_size);
}

/* Read a whole file (at most MAX_FILE_SIZE bytes). */
static int
read_file(const char *path, char **out, size_t *out_len)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd, rc = 0;

    *out = NULL;
    *out_len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nbuf;
            if (cap >= MAX_FILE_SIZE) {
                rc = -EFBIG;
                goto out;
            }
            if (ncap > MAX_FILE_SIZE)
                ncap = MAX_FILE_SIZE;
            nbuf = realloc(buf, ncap);
            if (!nbuf) {
                rc = -ENOMEM;
                goto out;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

int
bh_conf_load_checked(const char *path, const char *const *sets, size_t nsets,
                     const struct bh_conf_key *root, bh_conf_final_check final, void *out,
                     char *errstr, size_t errstr_size)
{
    char *text = NULL;
    size_t len = 0;
    int rc = 0;

    if (path) {
        rc = read_file(path, &text, &len);
        if (rc) {
            if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "%s: %s", path,
                         rc == -EFBIG ? "file too large" : strerror(-rc));
            if (root && out)
                clear_fields(root, out, false, 0);
            goto out;
        }
    }
    rc = bh_conf_load_string_checked(path ? path : "config", text, len, sets, nsets, root, final,
                                     out, errstr, errstr_size);
out:
    free(text);
    return rc;
}

int
bh_conf_load(const char *path, const char *const *sets, size_t nsets,
             const struct bh_conf_key *root, void *out, char *errstr, size_t errstr_size)
{
    return bh_conf_load_checked(path, sets, nsets, root, NULL, out, errstr, errstr_size);
}

void
bh_conf_free(const struct bh_conf_key *root, void *out)
{
    clear_fields(root, out, true, 0);
}

const char *
bh_conf_string(const struct bh_conf_key *keys, const void *settings, const char *name)
{
    for (const struct bh_conf_key *k = keys; k != NULL && k->name != NULL; k++)
        if (k->type == BH_CONF_STRING && strcmp(k->name, name) == 0)
            return *(char *const *)((const char *)settings + k->offset);
    return NULL;
}

const struct bh_kvlist *
bh_conf_map(const struct bh_conf_key *keys, const void *settings, const char *name)
{
    for (const struct bh_conf_key *k = keys; k != NULL && k->name != NULL; k++)
        if (k->type == BH_CONF_MAP && strcmp(k->name, name) == 0)
            return (const struct bh_kvlist *)((const char *)settings + k->offset);
    return NULL;
}

static bool
str_equal(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool
bh_kvlist_equal(const struct bh_kvlist *a, const struct bh_kvlist *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!str_equal(a->k[i], b->k[i]) || !str_equal(a->v[i], b->v[i]))
            return false;
    return true;
}

bool
bh_conf_equal(const struct bh_conf_key *keys, const void *a, const void *b)
{
    for (const struct bh_conf_key *k = keys; k->name != NULL; k++) {
        const char *x = (const char *)a + k->offset, *y = (const char *)b + k->offset;
        switch (k->type) {
        case BH_CONF_STRING:
            if (!str_equal(*(char *const *)x, *(char *const *)y))
                return false;
            if ((k->flags & BH_CONF_FILE) &&
                memcmp((const char *)a + k->stamp, (const char *)b + k->stamp,
                       sizeof(struct bh_conf_stamp)) != 0)
                return false;
            break;
        case BH_CONF_INT:
        case BH_CONF_DURATION:
            if (*(const int64_t *)x != *(const int64_t *)y)
                return false;
            break;
        case BH_CONF_SIZE:
            if (*(const uint64_t *)x != *(const uint64_t *)y)
                return false;
            break;
        case BH_CONF_BOOL:
            if (*(const bool *)x != *(const bool *)y)
                return false;
            break;
        case BH_CONF_STRING_LIST: {
            const struct bh_strlist *l = (const void *)x, *m = (const void *)y;
            if (l->n != m->n)
                return false;
            for (size_t i = 0; i < l->n; i++)
                if (!str_equal(l->v[i], m->v[i]))
                    return false;
            break;
        }
        case BH_CONF_MAP:
            if (!bh_kvlist_equal((const void *)x, (const void *)y))
                return false;
            break;
        case BH_CONF_SECTION:
            if (!bh_conf_equal(k->sub, x, y))
                return false;
            break;
        case BH_CONF_VARIANTS: {
            const struct bh_variant_list *l = (const void *)x, *m = (const void *)y;
            if (l->n != m->n)
                return false;
            for (size_t i = 0; i < l->n; i++)
                if (!bh_conf_variant_equal(&l->v[i], &m->v[i]))
                    return false;
            break;
        }
        }
    }
    return true;
}

bool
bh_conf_variant_equal(const struct bh_variant *a, const struct bh_variant *b)
{
    return str_equal(a->name, b->name) && str_equal(a->type, b->type) && a->variant == b->variant &&
           bh_conf_equal(a->variant->keys, a->settings, b->settings);
}

/* ----------------------------------------------------------- value parsers -- */

struct unit {
    const char *name;
    uint64_t mult;
};

/* Digits, optional blanks, then one of UNITS (the first, "", when none). */
static int
parse_with_unit(const char *text, const struct unit *units, size_t nunits, uint64_t limit,
                uint64_t *out)
{
    const char *p = text;
    uint64_t v = 0;
    bool overflow = false;

    if (!text || *p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    if (*p == ' ') {
        /* Blanks may separate the number from a unit, but not end the text. */
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return -EINVAL;
    }
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        if (overflow || v > limit / units[i].mult)
            return -ERANGE;
        *out = v * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

int
bh_conf_parse_size(const char *text, uint64_t *out)
{
    static const struct unit units[] = {
        {"", 1},
        {"B", 1},
        {"K", 1ull << 10},
        {"KiB", 1ull << 10},
        {"kB", 1000ull},
        {"M", 1ull << 20},
        {"MiB", 1ull << 20},
        {"MB", 1000000ull},
        {"G", 1ull << 30},
        {"GiB", 1ull << 30},
        {"GB", 1000000000ull},
        {"T", 1ull << 40},
        {"TiB", 1ull << 40},
        {"TB", 1000000000000ull},
    };
    uint64_t v;
    int rc = parse_with_unit(text, units, sizeof(units) / sizeof(units[0]), UINT64_MAX, &v);

    if (rc == 0 && out)
        *out = v;
    return rc;
}

int
bh_conf_parse_duration(const char *text, int64_t *out_ms)
{
    static const struct unit units[] = {
        {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t v;
    int rc = parse_with_unit(text, units, sizeof(units) / sizeof(units[0]), INT64_MAX, &v);

    if (rc == 0 && out_ms)
        *out_ms = (int64_t)v;
    return rc;
}

/* -------------------------------------------------------------- reference -- */

static const char *
type_label(enum bh_conf_type t)
{
    switch (t) {
    case BH_CONF_STRING:
        return "string";
    case BH_CONF_INT:
        return "integer";
    case BH_CONF_BOOL:
        return "boolean";
    case BH_CONF_SIZE:
        return "size";
    case BH_CONF_DURATION:
        return "duration";
    case BH_CONF_STRING_LIST:
        return "list of strings";
    case BH_CONF_MAP:
        return "map";
    case BH_CONF_SECTION:
        return "section";
    case BH_CONF_VARIANTS:
        return "list of entries";
    }
    return "?";
}

/* Text inside a Markdown table cell: '|' escaped, line breaks flattened. */
static void
md_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}

static void
write_row(FILE *f, const char *path, const char *type, const char *def, bool required,
          const char *range, const char *doc, const char *doc_extra)
{
    fputs("| `", f);
    md_text(f, path);
    fprintf(f, "` | %s | ", type);
    if (def) {
        fputc('`', f);
        md_text(f, def);
        fputc('`', f);
    } else if (required) {
        fputs("*required*", f);
    }
    fputs(" | ", f);
    md_text(f, range);
    fputs(" | ", f);
    md_text(f, doc);
    if (doc_extra) {
        if (doc && *doc)
            fputc(' ', f);
        md_text(f, doc_extra);
    }
    fputs(" |\n", f);
}

static void
write_key_row(FILE *f, const char *path, const struct bh_conf_key *k)
{
    char range[96] = "";
    char extra[512] = "";

    if (has_range(k) &&
        (k->type == BH_CONF_INT || k->type == BH_CONF_SIZE || k->type == BH_CONF_DURATION))
        snprintf(range, sizeof(range), "[%" PRId64 ", %" PRId64 "]%s", k->min, k->max,
                 k->type == BH_CONF_SIZE       ? " bytes"
                 : k->type == BH_CONF_DURATION ? " ms"
                                               : "");
    if (k->type == BH_CONF_VARIANTS)
        snprintf(extra, sizeof(extra), "Types: %s.",
                 k->variant_doc && *k->variant_doc ? k->variant_doc : "none");
    write_row(f, path, type_label(k->type), k->def, (k->flags & BH_CONF_REQUIRED) != 0, range,
              k->doc, extra[0] ? extra : NULL);
}

static void
write_section(FILE *f, const struct bh_conf_key *table, const char *prefix, const char *heading,
              const char *vtype, int depth)
{
    char path[PATH_LEN];
    const char *dot = prefix[0] ? "." : "";
    bool any = vtype != NULL;

    if (depth > MAX_DEPTH)
        return;
    fputs("### ", f); /* nested under the reader's own "## ..." heading */
    md_text(f, heading);
    fputs("\n\n", f);
    for (const struct bh_conf_key *k = table; k && k->name; k++)
        any = any || k->type != BH_CONF_SECTION;
    if (any)
        fputs("| key | type | default | range | description |\n|---|---|---|---|---|\n", f);
    if (vtype) {
        char tdoc[160];
        snprintf(path, sizeof(path), "%s.name", prefix);
        write_row(f, path, "string", NULL, true, "",
                  "Unique name of the entry (--set addresses it by this name).", NULL);
        snprintf(path, sizeof(path), "%s.type", prefix);
        snprintf(tdoc, sizeof(tdoc), "Entry type: %s.", vtype);
        write_row(f, path, "string", NULL, true, "", tdoc, NULL);
    }
    for (const struct bh_conf_key *k = table; k && k->name; k++) {
        if (k->type == BH_CONF_SECTION)
            continue;
        snprintf(path, sizeof(path), "%s%s%s", prefix, dot, k->name);
        write_key_row(f, path, k);
    }
    fputc('\n', f);
    for (const struct bh_conf_key *k = table; k && k->name; k++) {
        snprintf(path, sizeof(path), "%s%s%s", prefix, dot, k->name);
        if (k->type == BH_CONF_SECTION)
            write_section(f, k->sub, path, path, NULL, depth + 1);
        if (k->type != BH_CONF_VARIANTS || !k->variant || !k->variant_doc)
            continue;
        /* One table per known type, from the space-separated variant_doc. */
        for (const char *p = k->variant_doc; *p;) {
            char tname[128], vheading[PATH_LEN + 160], vprefix[PATH_LEN + 2];
            size_t n = strcspn(p, " \t\n");
            const struct bh_conf_variant *v;
            if (n == 0) {
                p++;
                continue;
            }
            snprintf(tname, sizeof(tname), "%.*s", (int)(n < 127 ? n : 127), p);
            p += n;
            v = k->variant(tname);
            if (!v)
                continue;
            snprintf(vheading, sizeof(vheading), "%s (type: %s)", path, tname);
            snprintf(vprefix, sizeof(vprefix), "%s[]", path);
            write_section(f, v->keys, vprefix, vheading, tname, depth + 1);
        }
    }
}

void
bh_conf_write_reference(FILE *f, const struct bh_conf_key *root)
{
    if (!f || !root)
        return;
    write_section(f, root, "", "Top level", NULL, 0);
}

int
bh_conf_check_secrets(const struct bh_strlist *l, size_t max, char *why, size_t why_size)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i][0] == '\0') {
            snprintf(why, why_size, "token %zu is empty", i);
            return -EINVAL;
        }
        if (max > 0 && strlen(l->v[i]) > max) {
            snprintf(why, why_size, "token %zu is longer than %zu bytes", i, max);
            return -EINVAL;
        }
    }
    return 0;
}
