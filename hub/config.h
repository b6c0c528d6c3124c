/*
 * The configuration engine: one declarative table per section describes every
 * key once (type, default, range, description). The same tables drive the YAML
 * parser, the --set overrides, the unknown-key check and the generated config
 * reference (and, later, hot reload).
 *
 * Values land in plain C structs through offsetof(). Every call returns 0 or a
 * negative errno; a refused config leaves an error message in errstr of the
 * form "FILE:LINE:COL: key 'a.b.c': reason" (or "--set a.b=c: reason").
 */
#ifndef BH_CONFIG_H
#define BH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum bh_conf_type {
    BH_CONF_STRING,      /* char *, malloc'd */
    BH_CONF_INT,         /* int64_t, checked against [min, max] */
    BH_CONF_BOOL,        /* bool: true/false/yes/no/on/off */
    BH_CONF_SIZE,        /* uint64_t bytes: "1048576", "512KiB", "1MiB", "2GiB", "10kB"... */
    BH_CONF_DURATION,    /* int64_t milliseconds: "250ms", "5s", "2m", "1h", "7d"; bare = ms */
    BH_CONF_STRING_LIST, /* struct bh_strlist: YAML sequence of scalars */
    BH_CONF_MAP,         /* struct bh_kvlist: free-form mapping of scalar -> scalar */
    BH_CONF_SECTION,     /* nested struct described by .sub, at .offset */
    BH_CONF_VARIANTS,    /* struct bh_variant_list: a sequence of mappings, each with
                          * "name" and "type"; the other keys are described by the
                          * table that .variant returns for that type */
};

#define BH_CONF_REQUIRED 0x1u
/*
 * STRING: the value names a file whose contents matter (a TLS certificate): when bound, the
 * file's identity (device, inode, size, modification and change times) is stored in the
 * struct bh_conf_stamp at .stamp, and bh_conf_equal compares it too, so that a reload sees
 * a file replaced under the same name as a change.
 */
#define BH_CONF_FILE 0x2u

struct bh_conf_stamp {
    int64_t dev, ino, size, mtime_ns, ctime_ns; /* all 0: no such file */
};

struct bh_strlist {
    char **v;
    size_t n;
};

struct bh_kvlist {
    char **k;
    char **v;
    size_t n;
};

struct bh_conf_key;

/* What a variant type parses into: its table and the size of its settings struct. */
struct bh_conf_variant {
    const struct bh_conf_key *keys; /* terminated by a key with name == NULL */
    size_t size;
    const void *user; /* e.g. the adapter type; copied into bh_variant.user */
    /*
     * Optional: a check across the keys of one bound entry (SETTINGS). On
     * refusal it returns -errno, sets *KEY to the name of the key at fault
     * (within the entry; NULL: the entry as a whole) and writes the reason
     * into WHY; the engine adds the position and the key's path.
     */
    int (*check)(const void *settings, const char **key, char *why, size_t why_size);
};

struct bh_variant {
    char *name;
    char *type;
    void *settings; /* calloc'd, variant->size bytes, filled by variant->keys */
    const struct bh_conf_variant *variant;
    const void *user;
    int line; /* where the entry starts in the file (0 if from --set only) */
};

struct bh_variant_list {
    struct bh_variant *v;
    size_t n;
};

struct bh_conf_key {
    const char *name;
    enum bh_conf_type type;
    size_t offset;
    const char *def;  /* default as text, parsed like a YAML value; NULL = none */
    int64_t min, max; /* INT, SIZE, DURATION range when min < max */
    unsigned flags;
    const char *doc;
    const struct bh_conf_key *sub; /* SECTION */
    /* VARIANTS: the table for a type name, or NULL if the type is unknown. */
    const struct bh_conf_variant *(*variant)(const char *type);
    const char *variant_doc; /* VARIANTS: the known type names, for the reference */
    /*
     * Optional: a further check of the bound value at VALUE (a field of this
     * key's type), for the default as well. Returns 0, or -errno with the
     * reason in WHY; the engine adds the position and the key's path.
     */
    int (*check)(const void *value, char *why, size_t why_size);
    size_t stamp; /* BH_CONF_FILE: offset of its struct bh_conf_stamp, beside .offset */
};

/*
 * A check across sections, run once everything is bound: returns 0, or
 * -errno with *KEY set to the dotted path of the key at fault (entries by
 * name: "adapters.fire.topic"; NULL: the file as a whole) and the reason in WHY.
 */
typedef int (*bh_conf_final_check)(const void *out, const char **key, char *why, size_t why_size);

/*
 * Load FILE (may be NULL: defaults and --set only), apply the "a.b.c=value"
 * overrides in sets[0..nsets), then bind everything to OUT through ROOT.
 * A --set path addresses variant entries by name ("adapters.fire.listen") or by
 * index ("adapters.0.listen"). Unknown keys, type errors, values out of range
 * and missing required keys are refused. On failure OUT is left zeroed/freed.
 */
int bh_conf_load(const char *path, const char *const *sets, size_t nsets,
                 const struct bh_conf_key *root, void *out, char *errstr, size_t errstr_size);

/* bh_conf_load, then FINAL (may be NULL) on the result, located like any other refusal. */
int bh_conf_load_checked(const char *path, const char *const *sets, size_t nsets,
                         const struct bh_conf_key *root, bh_conf_final_check final, void *out,
                         char *errstr, size_t errstr_size);

/* Same, from a YAML text held in memory; NAME is used in messages. */
int bh_conf_load_string(const char *name, const char *yaml, size_t len, const char *const *sets,
                        size_t nsets, const struct bh_conf_key *root, void *out, char *errstr,
                        size_t errstr_size);
int bh_conf_load_string_checked(const char *name, const char *yaml, size_t len,
                                const char *const *sets, size_t nsets,
                                const struct bh_conf_key *root, bh_conf_final_check final,
                                void *out, char *errstr, size_t errstr_size);

/* Free everything bh_conf_load allocated inside OUT (not OUT itself). */
void bh_conf_free(const struct bh_conf_key *root, void *out);
/* The string value of key NAME in SETTINGS (bound through KEYS), NULL if KEYS has no
 * string key of that name or it is unset. */
const char *bh_conf_string(const struct bh_conf_key *keys, const void *settings, const char *name);
/* The map of key NAME in SETTINGS (bound through KEYS), NULL if KEYS has no map key of that
 * name. */
const struct bh_kvlist *bh_conf_map(const struct bh_conf_key *keys, const void *settings,
                                    const char *name);
/* Whether two maps hold the same pairs in the same order. */
bool bh_kvlist_equal(const struct bh_kvlist *a, const struct bh_kvlist *b);
/* Whether A and B (both bound through KEYS) hold the same values. */
bool bh_conf_equal(const struct bh_conf_key *keys, const void *a, const void *b);
/* Whether two variant entries have the same name, type and settings. */
bool bh_conf_variant_equal(const struct bh_variant *a, const struct bh_variant *b);

/* Write the Markdown reference of ROOT (every key: path, type, default, range, doc). */
void bh_conf_write_reference(FILE *f, const struct bh_conf_key *root);

/* Parsers shared with other modules (accept the same text as the config). */
int bh_conf_parse_size(const char *text, uint64_t *out);
/*
 * The check of a list of secrets (tokens): none empty, none longer than MAX
 * bytes (0: no limit). 0, or -EINVAL with the reason in WHY.
 */
int bh_conf_check_secrets(const struct bh_strlist *l, size_t max, char *why, size_t why_size);
int bh_conf_parse_duration(const char *text, int64_t *out_ms);

#endif
