/* Unit tests for the configuration engine (hub/config.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

/* ------------------------------------------------------------ test tables -- */

struct tls_conf {
    bool enabled;
    char *cert;
};

struct retry_conf {
    int64_t max;
};

struct alpha_conf {
    int64_t port;
    char *host;
    bool fast;
};

struct beta_conf {
    uint64_t buffer;
    int64_t linger;
    struct bh_strlist topics;
    struct bh_kvlist props;
    struct retry_conf retry;
};

struct root_conf {
    char *name;
    int64_t workers;
    bool debug;
    uint64_t max_body;
    int64_t timeout;
    int64_t offset;
    struct bh_strlist tokens;
    struct bh_kvlist props;
    struct tls_conf tls;
    struct bh_variant_list adapters;
};

static const struct bh_conf_key tls_keys[] = {
    {.name = "enabled",
     .type = BH_CONF_BOOL,
     .offset = offsetof(struct tls_conf, enabled),
     .def = "no",
     .doc = "Serve TLS."},
    {.name = "cert",
     .type = BH_CONF_STRING,
     .offset = offsetof(struct tls_conf, cert),
     .doc = "Certificate file | PEM."},
    {0},
};

static const struct bh_conf_key retry_keys[] = {
    {.name = "max",
     .type = BH_CONF_INT,
     .offset = offsetof(struct retry_conf, max),
     .def = "3",
     .min = 0,
     .max = 10,
     .doc = "Retries."},
    {0},
};

static const struct bh_conf_key alpha_keys[] = {
    {.name = "port",
     .type = BH_CONF_INT,
     .offset = offsetof(struct alpha_conf, port),
     .def = "8080",
     .min = 1,
     .max = 65535,
     .doc = "Port."},
    {.name = "host",
     .type = BH_CONF_STRING,
     .offset = offsetof(struct alpha_conf, host),
     .def = "localhost",
     .doc = "Host."},
    {.name = "fast",
     .type = BH_CONF_BOOL,
     .offset = offsetof(struct alpha_conf, fast),
     .def = "on",
     .doc = "Go fast."},
    {0},
};

static const struct bh_conf_key beta_keys[] = {
    {.name = "buffer",
     .type = BH_CONF_SIZE,
     .offset = offsetof(struct beta_conf, buffer),
     .def = "64KiB",
     .doc = "Buffer."},
    {.name = "linger",
     .type = BH_CONF_DURATION,
     .offset = offsetof(struct beta_conf, linger),
     .def = "10ms",
     .doc = "Linger."},
    {.name = "topics",
     .type = BH_CONF_STRING_LIST,
     .offset = offsetof(struct beta_conf, topics),
     .doc = "Topics."},
    {.name = "props",
     .type = BH_CONF_MAP,
     .offset = offsetof(struct beta_conf, props),
     .doc = "Client properties."},
    {.name = "retry",
     .type = BH_CONF_SECTION,
     .offset = offsetof(struct beta_conf, retry),
     .sub = retry_keys,
     .doc = "Retry policy."},
    {0},
};

static const int alpha_user = 1, beta_user = 2;

static const struct bh_conf_variant alpha_variant = {
    .keys = alpha_keys, .size = sizeof(struct alpha_conf), .user = &alpha_user};
static const struct bh_conf_variant beta_variant = {
    .keys = beta_keys, .size = sizeof(struct beta_conf), .user = &beta_user};

static const struct bh_conf_variant *
test_variant(const char *type)
{
    if (strcmp(type, "alpha") == 0)
        return &alpha_variant;
    if (strcmp(type, "beta") == 0)
        return &beta_variant;
    return NULL;
}

static const struct bh_conf_key root_keys[] = {
    {.name = "name",
     .type = BH_CONF_STRING,
     .offset = offsetof(struct root_conf, name),
     .def = "blockhub",
     .doc = "Instance name."},
    {.name = "workers",
     .type = BH_CONF_INT,
     .offset = offsetof(struct root_conf, workers),
     .def = "4",
     .min = 1,
     .max = 64,
     .doc = "Worker threads."},
    {.name = "debug",
     .type = BH_CONF_BOOL,
     .offset = offsetof(struct root_conf, debug),
     .def = "false",
     .doc = "Debug mode."},
    {.name = "max_body",
     .type = BH_CONF_SIZE,
     .offset = offsetof(struct root_conf, max_body),
     .def = "1MiB",
     .min = 1024,
     .max = 1073741824,
     .doc = "Largest body."},
    {.name = "timeout",
     .type = BH_CONF_DURATION,
     .offset = offsetof(struct root_conf, timeout),
     .def = "5s",
     .min = 1,
     .max = 3600000,
     .doc = "Timeout."},
    {.name = "offset",
     .type = BH_CONF_INT,
     .offset = offsetof(struct root_conf, offset),
     .doc = "Any integer."},
    {.name = "tokens",
     .type = BH_CONF_STRING_LIST,
     .offset = offsetof(struct root_conf, tokens),
     .def = "[x, y]",
     .doc = "Tokens."},
    {.name = "props",
     .type = BH_CONF_MAP,
     .offset = offsetof(struct root_conf, props),
     .doc = "Properties."},
    {.name = "tls",
     .type = BH_CONF_SECTION,
     .offset = offsetof(struct root_conf, tls),
     .sub = tls_keys,
     .doc = "TLS."},
    {.name = "adapters",
     .type = BH_CONF_VARIANTS,
     .offset = offsetof(struct root_conf, adapters),
     .variant = test_variant,
     .variant_doc = "alpha beta",
     .doc = "Adapters."},
    {0},
};

/* A table with required keys, one of them nested. */
struct strict_conf {
    char *id;
    struct tls_conf sec;
};

static const struct bh_conf_key strict_sec_keys[] = {
    {.name = "enabled", .type = BH_CONF_BOOL, .offset = offsetof(struct tls_conf, enabled)},
    {.name = "cert",
     .type = BH_CONF_STRING,
     .offset = offsetof(struct tls_conf, cert),
     .flags = BH_CONF_REQUIRED},
    {0},
};

static const struct bh_conf_key strict_keys[] = {
    {.name = "id",
     .type = BH_CONF_STRING,
     .offset = offsetof(struct strict_conf, id),
     .flags = BH_CONF_REQUIRED},
    {.name = "sec",
     .type = BH_CONF_SECTION,
     .offset = offsetof(struct strict_conf, sec),
     .sub = strict_sec_keys},
    {0},
};

/* ---------------------------------------------------------------- helpers -- */

static char err[1024];

static int
load_sets(const char *yaml, const char *const *sets, size_t nsets, struct root_conf *c)
{
    memset(c, 0, sizeof(*c));
    err[0] = '\0';
    return bh_conf_load_string("t.yaml", yaml, strlen(yaml), sets, nsets, root_keys, c, err,
                               sizeof(err));
}

static int
load(const char *yaml, struct root_conf *c)
{
    return load_sets(yaml, NULL, 0, c);
}

static void
assert_err_contains(const char *want)
{
    if (!strstr(err, want))
        fail_msg("error message\n  '%s'\ndoes not contain\n  '%s'", err, want);
}

static bool
is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i])
            return false;
    }
    return true;
}

/* Loading must fail with a message containing WANT, and leave OUT zeroed. */
static void
expect_fail_sets(const char *yaml, const char *const *sets, size_t nsets, const char *want)
{
    struct root_conf c;
    int rc = load_sets(yaml, sets, nsets, &c);
    if (rc >= 0)
        fail_msg("expected failure (want '%s') for:\n%s", want, yaml);
    assert_err_contains(want);
    assert_true(is_zero(&c, sizeof(c)));
}

static void
expect_fail(const char *yaml, const char *want)
{
    expect_fail_sets(yaml, NULL, 0, want);
}

static void
check_defaults(const struct root_conf *c)
{
    assert_string_equal(c->name, "blockhub");
    assert_int_equal(c->workers, 4);
    assert_false(c->debug);
    assert_int_equal(c->max_body, 1048576);
    assert_int_equal(c->timeout, 5000);
    assert_int_equal(c->offset, 0);
    assert_int_equal(c->tokens.n, 2);
    assert_string_equal(c->tokens.v[0], "x");
    assert_string_equal(c->tokens.v[1], "y");
    assert_int_equal(c->props.n, 0);
    assert_false(c->tls.enabled);
    assert_null(c->tls.cert);
    assert_int_equal(c->adapters.n, 0);
}

static const char full_doc[] = "name: hub-1\n"                         /* 1 */
                               "workers: 8\n"                          /* 2 */
                               "debug: yes\n"                          /* 3 */
                               "max_body: 2MiB\n"                      /* 4 */
                               "timeout: 2m\n"                         /* 5 */
                               "offset: -42\n"                         /* 6 */
                               "tokens: [a, b, c]\n"                   /* 7 */
                               "props:\n"                              /* 8 */
                               "  bootstrap.servers: \"k1:9092,k2\"\n" /* 9 */
                               "  acks: all\n"                         /* 10 */
                               "tls:\n"                                /* 11 */
                               "  enabled: on\n"                       /* 12 */
                               "  cert: /etc/cert.pem\n"               /* 13 */
                               "adapters:\n"                           /* 14 */
                               "  - name: fire\n"                      /* 15 */
                               "    type: alpha\n"                     /* 16 */
                               "    port: 9000\n"                      /* 17 */
                               "  - name: ice\n"                       /* 18 */
                               "    type: beta\n"                      /* 19 */
                               "    buffer: 1GB\n"                     /* 20 */
                               "    topics: [t1, t2]\n"                /* 21 */
                               "    props: {linger.ms: \"5\"}\n"       /* 22 */
                               "    retry:\n"                          /* 23 */
                               "      max: 7\n";                       /* 24 */

/* ------------------------------------------------------------------ tests -- */

static void
test_defaults_empty(void **state)
{
    (void)state;
    const char *docs[] = {"", "# only a comment\n", "---\n", "~\n", "\n\n"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct root_conf c;
        int rc = load(docs[i], &c);
        if (rc)
            fail_msg("doc %zu: %s", i, err);
        check_defaults(&c);
        bh_conf_free(root_keys, &c);
    }
}

static void
test_defaults_no_file(void **state)
{
    (void)state;
    struct root_conf c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(bh_conf_load(NULL, NULL, 0, root_keys, &c, err, sizeof(err)), 0);
    check_defaults(&c);
    bh_conf_free(root_keys, &c);

    /* Also through load_string with no text at all. */
    assert_int_equal(bh_conf_load_string("mem", NULL, 0, NULL, 0, root_keys, &c, err, sizeof(err)),
                     0);
    check_defaults(&c);
    bh_conf_free(root_keys, &c);
}

static void
test_all_types(void **state)
{
    (void)state;
    struct root_conf c;
    int rc = load(full_doc, &c);
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(c.name, "hub-1");
    assert_int_equal(c.workers, 8);
    assert_true(c.debug);
    assert_int_equal(c.max_body, 2 * 1048576);
    assert_int_equal(c.timeout, 120000);
    assert_int_equal(c.offset, -42);
    assert_int_equal(c.tokens.n, 3);
    assert_string_equal(c.tokens.v[2], "c");
    assert_int_equal(c.props.n, 2);
    assert_string_equal(c.props.k[0], "bootstrap.servers");
    assert_string_equal(c.props.v[0], "k1:9092,k2");
    assert_string_equal(c.props.k[1], "acks");
    assert_string_equal(c.props.v[1], "all");
    assert_true(c.tls.enabled);
    assert_string_equal(c.tls.cert, "/etc/cert.pem");

    assert_int_equal(c.adapters.n, 2);
    struct bh_variant *a = &c.adapters.v[0], *b = &c.adapters.v[1];
    assert_string_equal(a->name, "fire");
    assert_string_equal(a->type, "alpha");
    assert_ptr_equal(a->variant, &alpha_variant);
    assert_ptr_equal(a->user, &alpha_user);
    assert_int_equal(a->line, 15);
    struct alpha_conf *as = a->settings;
    assert_int_equal(as->port, 9000);
    assert_string_equal(as->host, "localhost"); /* default */
    assert_true(as->fast);                      /* default "on" */

    assert_string_equal(b->name, "ice");
    assert_string_equal(b->type, "beta");
    assert_ptr_equal(b->user, &beta_user);
    assert_int_equal(b->line, 18);
    struct beta_conf *bs = b->settings;
    assert_int_equal(bs->buffer, 1000000000ull);
    assert_int_equal(bs->linger, 10); /* default */
    assert_int_equal(bs->topics.n, 2);
    assert_string_equal(bs->topics.v[1], "t2");
    assert_int_equal(bs->props.n, 1);
    assert_string_equal(bs->props.k[0], "linger.ms");
    assert_string_equal(bs->props.v[0], "5");
    assert_int_equal(bs->retry.max, 7);

    bh_conf_free(root_keys, &c);
    /* bh_conf_free zeroes what it freed, so a second call is harmless. */
    assert_true(is_zero(&c, sizeof(c)));
    bh_conf_free(root_keys, &c);
}

static void
test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, full_doc, strlen(full_doc)), (ssize_t)strlen(full_doc));
    close(fd);

    struct root_conf c;
    memset(&c, 0, sizeof(c));
    const char *sets[] = {"workers=9"};
    int rc = bh_conf_load(path, sets, 1, root_keys, &c, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(c.workers, 9);
    assert_int_equal(c.adapters.n, 2);
    bh_conf_free(root_keys, &c);

    /* Messages name the file. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("name: a\nbogus: 1\n", f);
    fclose(f);
    assert_true(bh_conf_load(path, NULL, 0, root_keys, &c, err, sizeof(err)) < 0);
    char want[128];
    snprintf(want, sizeof(want), "%s:2:1: unknown key 'bogus'", path);
    assert_err_contains(want);
    assert_true(is_zero(&c, sizeof(c)));
    unlink(path);

    assert_int_equal(bh_conf_load(path, NULL, 0, root_keys, &c, err, sizeof(err)), -ENOENT);
    assert_err_contains("No such file or directory");
    assert_true(bh_conf_load("/", NULL, 0, root_keys, &c, err, sizeof(err)) < 0);
    assert_true(is_zero(&c, sizeof(c)));
}

static void
test_bool(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool want;
    } cases[] = {
        {"true", true}, {"false", false}, {"yes", true},  {"no", false},
        {"on", true},   {"off", false},   {"TRUE", true}, {"Off", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char doc[64];
        struct root_conf c;
        snprintf(doc, sizeof(doc), "debug: %s\n", cases[i].text);
        assert_int_equal(load(doc, &c), 0);
        assert_int_equal(c.debug, cases[i].want);
        bh_conf_free(root_keys, &c);
    }
    expect_fail("name: x\ndebug: maybe\n",
                "t.yaml:2:8: key 'debug': expected a boolean (true/false/yes/no/on/off), got "
                "'maybe'");
    expect_fail("debug: 1\n", "key 'debug': expected a boolean");
    expect_fail("debug: [true]\n", "t.yaml:1:8: key 'debug': expected a boolean "
                                   "(true/false/yes/no/on/off), got a list");
}

static void
test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t want;
    } ok[] = {
        {"0", 0},
        {"1048576", 1048576},
        {"1B", 1},
        {"512KiB", 512 * 1024},
        {"1MiB", 1048576},
        {"2GiB", 2147483648ull},
        {"10kB", 10000},
        {"3MB", 3000000},
        {"4GB", 4000000000ull},
        {"1K", 1024},
        {"1M", 1048576},
        {"1G", 1073741824},
        {"1TiB", 1099511627776ull},
        {"10 MiB", 10485760},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 0;
        if (bh_conf_parse_size(ok[i].text, &v) != 0)
            fail_msg("'%s' refused", ok[i].text);
        assert_int_equal(v, ok[i].want);
    }
    static const char *const bad[] = {"",     "-1",    "+1",  "1.5MiB", "1 MiB x", "MiB",
                                      "1mib", "1KB",   "1Kb", "12abc",  " 1",      "1x",
                                      "0x10", "1MiB ", "1 ",  "1e3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        if (bh_conf_parse_size(bad[i], &v) != -EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(v, 7);
    }
    uint64_t v;
    assert_int_equal(bh_conf_parse_size("18446744073709551616", &v), -ERANGE);
    assert_int_equal(bh_conf_parse_size("17179869184GiB", &v), -ERANGE);
    assert_int_equal(bh_conf_parse_size("99999999999999999999999999999", &v), -ERANGE);
    assert_int_equal(bh_conf_parse_size(NULL, &v), -EINVAL);
}

static void
test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"250", 250},
        {"250ms", 250},
        {"5s", 5000},
        {"2m", 120000},
        {"1h", 3600000},
        {"7d", 604800000},
        {"3 s", 3000},
        {"9223372036854775807", INT64_MAX},
        {"9223372036854775807ms", INT64_MAX},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = 0;
        if (bh_conf_parse_duration(ok[i].text, &v) != 0)
            fail_msg("'%s' refused", ok[i].text);
        assert_int_equal(v, ok[i].want);
    }
    static const char *const bad[] = {"",   "-5s",  "5x",    "5 weeks", "1.5s", "s",
                                      "5S", "5sec", "1h30m", " 5s",     "5us",  "0x5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 7;
        if (bh_conf_parse_duration(bad[i], &v) != -EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(v, 7);
    }
    int64_t v;
    assert_int_equal(bh_conf_parse_duration("9223372036854775808", &v), -ERANGE);
    assert_int_equal(bh_conf_parse_duration("106751991167301d", &v), -ERANGE);
    assert_int_equal(bh_conf_parse_duration("99999999999999999999999h", &v), -ERANGE);
}

static void
test_int(void **state)
{
    (void)state;
    struct root_conf c;
    assert_int_equal(load("offset: -9223372036854775808\nworkers: +64\n", &c), 0);
    assert_int_equal(c.offset, INT64_MIN);
    assert_int_equal(c.workers, 64);
    bh_conf_free(root_keys, &c);

    expect_fail("name: a\nworkers: 100\n",
                "t.yaml:2:10: key 'workers': 100 is out of range [1, 64]");
    expect_fail("workers: 0\n", "t.yaml:1:10: key 'workers': 0 is out of range [1, 64]");
    expect_fail("workers: -3\n", "key 'workers': -3 is out of range [1, 64]");
    expect_fail("workers: 4x\n", "t.yaml:1:10: key 'workers': expected an integer, got '4x'");
    expect_fail("workers: 4.0\n", "key 'workers': expected an integer, got '4.0'");
    expect_fail("workers: ' 4'\n", "key 'workers': expected an integer");
    expect_fail("offset: 99999999999999999999\n",
                "t.yaml:1:9: key 'offset': 99999999999999999999 is too large");
    expect_fail("offset: -99999999999999999999\n", "key 'offset': -99999999999999999999 is too "
                                                   "small");
    expect_fail("tls:\n  enabled: true\nadapters:\n  - name: b\n    type: beta\n    retry:\n"
                "      max: 11\n",
                "t.yaml:7:12: key 'adapters[b].retry.max': 11 is out of range [0, 10]");
}

static void
test_size_duration_errors(void **state)
{
    (void)state;
    expect_fail("max_body: 10\n", "t.yaml:1:11: key 'max_body': 10 is out of range [1024, "
                                  "1073741824]");
    expect_fail("max_body: 2GiB\n", "key 'max_body': 2GiB is out of range");
    expect_fail("max_body: 16EiB\n", "key 'max_body': expected a size");
    expect_fail("max_body: 99999999999GiB\n", "t.yaml:1:11: key 'max_body': 99999999999GiB is "
                                              "too large");
    expect_fail("max_body: -1\n", "key 'max_body': expected a size (e.g. 4096, 512KiB, 10MB, "
                                  "2GiB), got '-1'");
    expect_fail("timeout: -5s\n", "t.yaml:1:10: key 'timeout': expected a duration (e.g. "
                                  "250ms, 5s, 2m, 1h, 7d), got '-5s'");
    expect_fail("timeout: 2h\n", "t.yaml:1:10: key 'timeout': 2h is out of range [1, 3600000]");
    expect_fail("timeout: 0\n", "key 'timeout': 0 is out of range");
    expect_fail("timeout: {a: 1}\n", "key 'timeout': expected a duration (e.g. 250ms, 5s, 2m, "
                                     "1h, 7d), got a mapping");
    expect_fail("adapters:\n- name: b\n  type: beta\n  buffer: 12 parsecs\n",
                "t.yaml:4:11: key 'adapters[b].buffer': expected a size");

    struct root_conf c;
    assert_int_equal(load("max_body: 1GiB\ntimeout: 1h\n", &c), 0);
    assert_int_equal(c.max_body, 1073741824);
    assert_int_equal(c.timeout, 3600000);
    bh_conf_free(root_keys, &c);
}

static void
test_unknown_keys(void **state)
{
    (void)state;
    expect_fail("name: a\nworkers: 2\nnope: 1\n", "t.yaml:3:1: unknown key 'nope'");
    expect_fail("tls:\n  enabled: true\n  nope: 1\n", "t.yaml:3:3: unknown key 'tls.nope'");
    expect_fail("adapters:\n  - name: fire\n    type: alpha\n    colour: red\n",
                "t.yaml:4:5: unknown key 'adapters[fire].colour'");
    /* A key of the other variant type is unknown here. */
    expect_fail("adapters:\n  - name: fire\n    type: alpha\n    buffer: 1\n",
                "t.yaml:4:5: unknown key 'adapters[fire].buffer'");
    expect_fail("adapters:\n  - name: ice\n    type: beta\n    retry:\n      maxx: 1\n",
                "t.yaml:5:7: unknown key 'adapters[ice].retry.maxx'");
}

static void
test_type_errors(void **state)
{
    (void)state;
    expect_fail("tls: yes\n", "t.yaml:1:6: key 'tls': expected a mapping, got 'yes'");
    expect_fail("tls: [a]\n", "t.yaml:1:6: key 'tls': expected a mapping, got a list");
    expect_fail("name: {a: b}\n", "t.yaml:1:7: key 'name': expected a string, got a mapping");
    expect_fail("name: [a]\n", "key 'name': expected a string, got a list");
    expect_fail("workers: [1]\n", "t.yaml:1:10: key 'workers': expected an integer, got a list");
    expect_fail("tokens: a\n", "t.yaml:1:9: key 'tokens': expected a list of strings, got 'a'");
    expect_fail("tokens:\n  - a\n  - [b]\n",
                "t.yaml:3:5: key 'tokens[1]': expected a string, got a list");
    expect_fail("props: a\n", "t.yaml:1:8: key 'props': expected a mapping, got 'a'");
    expect_fail("props:\n  a: 1\n  b: {c: d}\n",
                "t.yaml:3:6: key 'props.b': expected a scalar, got a mapping");
    expect_fail("adapters: {name: a}\n",
                "t.yaml:1:11: key 'adapters': expected a list of entries, got a mapping");
    expect_fail("adapters:\n  - fire\n", "t.yaml:2:5: key 'adapters[0]': expected a mapping, "
                                         "got 'fire'");
}

static void
test_required(void **state)
{
    (void)state;
    struct strict_conf s;
    int rc;

    memset(&s, 0, sizeof(s));
    rc = bh_conf_load_string("s.yaml", "sec:\n  cert: c\n", strlen("sec:\n  cert: c\n"), NULL, 0,
                             strict_keys, &s, err, sizeof(err));
    assert_int_equal(rc, -EINVAL);
    assert_err_contains("s.yaml: key 'id' is required");
    assert_true(is_zero(&s, sizeof(s)));

    /* A required key inside an absent section is still required. */
    rc = bh_conf_load_string("s.yaml", "id: x\n", strlen("id: x\n"), NULL, 0, strict_keys, &s, err,
                             sizeof(err));
    assert_int_equal(rc, -EINVAL);
    assert_err_contains("s.yaml: key 'sec.cert' is required");
    assert_true(is_zero(&s, sizeof(s)));

    /* A null value does not satisfy a required key. */
    const char *nulled = "id:\nsec: {cert: c}\n";
    rc = bh_conf_load_string("s.yaml", nulled, strlen(nulled), NULL, 0, strict_keys, &s, err,
                             sizeof(err));
    assert_int_equal(rc, -EINVAL);
    assert_err_contains("s.yaml: key 'id' is required");

    /* Satisfied by --set alone. */
    const char *sets[] = {"id=abc", "sec.cert=/c.pem"};
    rc = bh_conf_load_string("s.yaml", "", 0, sets, 2, strict_keys, &s, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(s.id, "abc");
    assert_string_equal(s.sec.cert, "/c.pem");
    bh_conf_free(strict_keys, &s);
}

static void
test_variant_errors(void **state)
{
    (void)state;
    expect_fail("adapters:\n  - type: alpha\n", "t.yaml:2:5: key 'adapters[0]': missing 'name'");
    expect_fail("adapters:\n  - name: a\n    type: alpha\n  - name: [x]\n    type: alpha\n",
                "t.yaml:4:11: key 'adapters[1].name': expected a non-empty string, got a list");
    expect_fail("adapters:\n  - name: ''\n    type: alpha\n",
                "key 'adapters[0].name': expected a non-empty string, got ''");
    expect_fail("adapters:\n  - name: fire\n", "t.yaml:2:5: key 'adapters[fire]': missing "
                                               "'type'");
    expect_fail("adapters:\n"
                "  - name: fire\n"
                "    type: alpha\n"
                "  - name: fire\n"
                "    type: beta\n",
                "t.yaml:4:11: key 'adapters[fire].name': duplicate name 'fire' (first at line "
                "2)");
    expect_fail("adapters:\n  - name: fire\n    type: gamma\n",
                "t.yaml:3:11: key 'adapters[fire].type': unknown type 'gamma' (known types: "
                "alpha beta)");
    expect_fail("adapters:\n  - name: fire\n    type: {a: 1}\n",
                "t.yaml:3:11: key 'adapters[fire].type': expected a type name, got a mapping");
}

static void
test_yaml_syntax_error(void **state)
{
    (void)state;
    expect_fail("name: a\ntokens: [a, b\nworkers: 3\n",
                "t.yaml:3:8: YAML syntax error: did not find expected ',' or ']' (while "
                "parsing a flow sequence at line 2, column 9)");
    expect_fail("name: a\n  workers: 2\n",
                "t.yaml:2:10: YAML syntax error: mapping values are not allowed in this context");
    expect_fail("name: \"abc\n", "t.yaml:2:1: YAML syntax error: found unexpected end of stream");
    expect_fail("name: a\n\tworkers: 2\n", "t.yaml:2:1: YAML syntax error: found a tab "
                                           "character that violates indentation");
    expect_fail("name: \xff\n", "t.yaml:1:7: invalid YAML input: invalid leading UTF-8 octet");
}

static void
test_not_mapping(void **state)
{
    (void)state;
    expect_fail("- a\n- b\n", "t.yaml:1:1: expected a mapping at the top level, got a list");
    expect_fail("hello\n", "t.yaml:1:1: expected a mapping at the top level, got a scalar");
    expect_fail("\n\n'~'\n", "t.yaml:3:1: expected a mapping at the top level, got a scalar");
}

static void
test_duplicate_keys(void **state)
{
    (void)state;
    expect_fail("name: a\nworkers: 2\nname: b\n",
                "t.yaml:3:1: duplicate key 'name' (first defined at line 1)");
    expect_fail("tls:\n  enabled: true\n  cert: c\n  enabled: false\n",
                "t.yaml:4:3: duplicate key 'tls.enabled' (first defined at line 2)");
    expect_fail("adapters:\n  - name: fire\n    type: alpha\n    port: 1\n    port: 2\n",
                "t.yaml:5:5: duplicate key 'adapters[fire].port' (first defined at line 4)");
    expect_fail("props: {a: 1, b: 2, a: 3}\n",
                "t.yaml:1:21: duplicate key 'props.a' (first defined at line 1)");
    /* Even under a key that is unknown: the document itself is invalid. */
    expect_fail("zzz:\n  k: 1\n  k: 2\n", "t.yaml:3:3: duplicate key 'zzz.k' (first defined at "
                                          "line 2)");
}

static void
test_aliases(void **state)
{
    (void)state;
    expect_fail("name: &n hub\nworkers: 1\ntls:\n  cert: *n\n",
                "t.yaml:4:9: YAML aliases are not supported");
    /* A loop: the alias points at its own ancestor. */
    expect_fail("tokens: &a [x, *a]\n", "t.yaml:1:16: YAML aliases are not supported");
    expect_fail("props: &m {a: *m}\n", "t.yaml:1:15: YAML aliases are not supported");
    /* Billion laughs: refused at the first reuse, nothing is expanded. */
    expect_fail("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n",
                "t.yaml:2:8: YAML aliases are not supported");
    /* Refused as an alias before libyaml would complain that it is undefined. */
    expect_fail("name: *undefined\n", "t.yaml:1:7: YAML aliases are not supported");
    /* An anchor that is never aliased is harmless. */
    struct root_conf c;
    assert_int_equal(load("name: &n hub\n", &c), 0);
    assert_string_equal(c.name, "hub");
    bh_conf_free(root_keys, &c);
}

static void
test_deep_nesting(void **state)
{
    (void)state;
    size_t n = 100000;
    char *doc = malloc(2 * n + 16);
    assert_non_null(doc);

    /* [[[[...]]]] */
    strcpy(doc, "tokens: ");
    memset(doc + 8, '[', n);
    memset(doc + 8 + n, ']', n);
    doc[8 + 2 * n] = '\0';
    expect_fail(doc, "nesting deeper than 64 levels");

    /* {a: {a: {a: ...}}} */
    size_t len = 0;
    for (size_t i = 0; i < 2000; i++)
        len += (size_t)sprintf(doc + len, "{a: ");
    strcpy(doc + len, "1");
    len++;
    memset(doc + len, '}', 2000);
    doc[len + 2000] = '\0';
    /* Keys count as a level: the 64th mapping's key "a" (column 4 * 63 + 2) is too deep. */
    expect_fail(doc, "t.yaml:1:254: nesting deeper than 64 levels");

    /* Unclosed deep nesting: refused at the limit, quickly (libyaml alone would
     * take quadratic time to reach the end and report the syntax error). */
    memset(doc, '[', n);
    doc[n] = '\0';
    expect_fail(doc, "t.yaml:1:65: nesting deeper than 64 levels");
    memset(doc, '{', n);
    expect_fail(doc, "t.yaml:1:65: nesting deeper than 64 levels");
    free(doc);

    /* Exactly at the limit is fine for the parser; the binder then refuses the type. */
    expect_fail("tokens: [[[[[[[[[[x]]]]]]]]]]\n", "key 'tokens[0]': expected a string, got a "
                                                   "list");
}

static void
test_nul_bytes(void **state)
{
    (void)state;
    struct root_conf c;
    static const char raw[] = "name: a\0b\n";
    memset(&c, 0, sizeof(c));
    assert_true(bh_conf_load_string("t.yaml", raw, sizeof(raw) - 1, NULL, 0, root_keys, &c, err,
                                    sizeof(err)) < 0);
    assert_err_contains("t.yaml:1:8: invalid YAML input: control characters are not allowed");
    assert_true(is_zero(&c, sizeof(c)));

    expect_fail("name: \"a\\0b\"\n", "t.yaml:1:7: NUL bytes are not allowed");
    expect_fail("\"a\\0b\": 1\n", "t.yaml:1:1: NUL bytes are not allowed");
    const char *sets[] = {"name=\"x\\0y\""};
    expect_fail_sets("", sets, 1, "--set name=\"x\\0y\": NUL bytes are not allowed");
}

static void
test_multiple_documents(void **state)
{
    (void)state;
    expect_fail("name: a\n---\nname: b\n", "t.yaml:2:1: more than one YAML document");
    expect_fail("name: a\n---\nname: b\n---\n[\n", "t.yaml:2:1: more than one YAML document");
    expect_fail("name: a\n---\n[\n", "t.yaml:2:1: more than one YAML document");
    /* An explicit end marker with nothing after it is one document. */
    struct root_conf c;
    assert_int_equal(load("---\nname: a\n...\n", &c), 0);
    assert_string_equal(c.name, "a");
    bh_conf_free(root_keys, &c);
}

static void
test_complex_keys(void **state)
{
    (void)state;
    expect_fail("? [a, b]\n: 1\n", "t.yaml:1:3: mapping keys must be scalars");
    expect_fail("props: {{a: 1}: 2}\n", "t.yaml:1:9: mapping keys must be scalars");
}

static void
test_set_overrides(void **state)
{
    (void)state;
    struct root_conf c;
    const char *sets[] = {
        "workers=16",                               /* plain key */
        "tls.cert=/override.pem",                   /* nested */
        "adapters.fire.port=9100",                  /* variant by name */
        "adapters.1.buffer=2MiB",                   /* variant by index */
        "adapters.ice.retry.max=9",                 /* nested inside a variant */
        "adapters.fire.host=example.org",           /* creating a key absent from the file */
        "adapters.ice.props.bootstrap.servers=k:1", /* MAP key with dots, created */
        "adapters.ice.props.linger.ms=7",           /* MAP key with dots, replaced */
        "tokens=[p, 'q r', \"s,t\"]",               /* flow list */
        "props={x: 1}",                             /* flow mapping replaces the map */
        "name= spaced out # not a comment ",        /* plain values are verbatim, trimmed */
        "debug=off",
        "timeout=",   /* empty: back to the default */
        "workers=17", /* a later --set wins */
    };
    int rc = load_sets(full_doc, sets, sizeof(sets) / sizeof(sets[0]), &c);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(c.workers, 17);
    assert_string_equal(c.tls.cert, "/override.pem");
    assert_true(c.tls.enabled);
    assert_string_equal(c.name, "spaced out # not a comment");
    assert_false(c.debug);
    assert_int_equal(c.timeout, 5000);
    assert_int_equal(c.tokens.n, 3);
    assert_string_equal(c.tokens.v[0], "p");
    assert_string_equal(c.tokens.v[1], "q r");
    assert_string_equal(c.tokens.v[2], "s,t");
    assert_int_equal(c.props.n, 1);
    assert_string_equal(c.props.k[0], "x");
    assert_string_equal(c.props.v[0], "1");

    struct alpha_conf *as = c.adapters.v[0].settings;
    assert_int_equal(as->port, 9100);
    assert_string_equal(as->host, "example.org");
    assert_int_equal(c.adapters.v[0].line, 15);
    struct beta_conf *bs = c.adapters.v[1].settings;
    assert_int_equal(bs->buffer, 2 * 1048576);
    assert_int_equal(bs->retry.max, 9);
    assert_int_equal(bs->props.n, 2);
    assert_string_equal(bs->props.k[0], "linger.ms");
    assert_string_equal(bs->props.v[0], "7");
    assert_string_equal(bs->props.k[1], "bootstrap.servers");
    assert_string_equal(bs->props.v[1], "k:1");
    bh_conf_free(root_keys, &c);
}

static void
test_set_without_file(void **state)
{
    (void)state;
    struct root_conf c;
    const char *sets[] = {"tls.enabled=yes", "tls.cert=c", "props.a.b=1", "offset=-1"};
    int rc = load_sets("", sets, 4, &c);
    if (rc)
        fail_msg("%s", err);
    assert_true(c.tls.enabled);
    assert_string_equal(c.tls.cert, "c");
    assert_int_equal(c.props.n, 1);
    assert_string_equal(c.props.k[0], "a.b");
    assert_int_equal(c.offset, -1);
    assert_int_equal(c.workers, 4);
    bh_conf_free(root_keys, &c);

    /* Renaming an entry, then addressing it by its new name. */
    const char *ren[] = {"adapters.fire.name=blaze", "adapters.blaze.port=1"};
    rc = load_sets(full_doc, ren, 2, &c);
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(c.adapters.v[0].name, "blaze");
    assert_int_equal(((struct alpha_conf *)c.adapters.v[0].settings)->port, 1);
    bh_conf_free(root_keys, &c);

    /* Replacing a whole entry: its line is no longer a file line. */
    const char *whole[] = {"adapters.0={name: f2, type: beta, buffer: 1K}"};
    rc = load_sets(full_doc, whole, 1, &c);
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(c.adapters.v[0].type, "beta");
    assert_int_equal(c.adapters.v[0].line, 0);
    assert_int_equal(((struct beta_conf *)c.adapters.v[0].settings)->buffer, 1024);
    bh_conf_free(root_keys, &c);
}

static void
set_fail(const char *yaml, const char *set, const char *want)
{
    const char *sets[] = {set};
    expect_fail_sets(yaml, sets, 1, want);
}

static void
test_set_errors(void **state)
{
    (void)state;
    set_fail(full_doc, "workers=lots",
             "--set workers=lots: key 'workers': expected an integer, got 'lots'");
    set_fail(full_doc, "workers=1000",
             "--set workers=1000: key 'workers': 1000 is out of range "
             "[1, 64]");
    set_fail(full_doc, "tls=[a]", "--set tls=[a]: key 'tls': expected a mapping, got a list");
    set_fail(full_doc, "nosuch=1", "--set nosuch=1: unknown key 'nosuch'");
    set_fail(full_doc, "tls.nosuch.deeper=1",
             "--set tls.nosuch.deeper=1: unknown key "
             "'tls.nosuch'");
    set_fail(full_doc, "adapters.fire.nosuch=1",
             "--set adapters.fire.nosuch=1: unknown key 'adapters[fire].nosuch'");
    set_fail(full_doc, "adapters.smoke.port=1",
             "--set adapters.smoke.port=1: no entry 'smoke' in 'adapters'");
    set_fail(full_doc, "adapters.2.port=1",
             "--set adapters.2.port=1: no entry '2' in "
             "'adapters'");
    set_fail("", "adapters.fire.port=1",
             "--set adapters.fire.port=1: no entry 'fire' in "
             "'adapters'");
    set_fail(full_doc, "adapters.fire.type=gamma",
             "--set adapters.fire.type=gamma: key 'adapters[fire].type': unknown type 'gamma' "
             "(known types: alpha beta)");
    set_fail(full_doc, "adapters.ice.name=fire",
             "--set adapters.ice.name=fire: key 'adapters[fire].name': duplicate name 'fire' "
             "(first at line 15)");
    set_fail(full_doc, "name.first=a", "--set name.first=a: 'name' is a scalar, not a mapping");
    set_fail(full_doc, "adapters.fire.port.x=1",
             "--set adapters.fire.port.x=1: "
             "'adapters.fire.port' is a scalar, not a "
             "mapping");
    set_fail(full_doc, "workers", "--set workers: expected KEY=VALUE");
    set_fail(full_doc, "=5", "--set =5: expected KEY=VALUE");
    set_fail(full_doc, "tls..cert=a", "--set tls..cert=a: empty key component");
    set_fail(full_doc, "tls.=a", "--set tls.=a: empty key component");
    set_fail(full_doc, "props.=a", "--set props.=a: empty key component");
    set_fail(full_doc, "tokens=[a, b",
             "--set tokens=[a, b: YAML syntax error: did not find "
             "expected ',' or ']'");
    set_fail(full_doc, "tokens=[a] b", "--set tokens=[a] b: YAML syntax error");
    set_fail(full_doc, "tokens=[a, &x b, *x]",
             "--set tokens=[a, &x b, *x]: YAML aliases are "
             "not supported");
    set_fail(full_doc, "props={a: 1, a: 2}", "--set props={a: 1, a: 2}: duplicate key 'props.a'");
    set_fail(full_doc, "name=\"a\": b",
             "--set name=\"a\": b: the value must be a single YAML "
             "flow value");
    set_fail(full_doc, "tokens=[a]\n---\n[b]", "more than one YAML document");

    /* The error keeps the first bad --set, and nothing is applied. */
    const char *two[] = {"workers=2", "debug=perhaps"};
    expect_fail_sets(full_doc, two, 2, "--set debug=perhaps: key 'debug': expected a boolean");

    /* Deep --set paths are bounded. */
    char deep[1024] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "a.");
    strcat(deep, "b=1");
    set_fail("", deep, "key nested deeper than 64 levels");
}

static void
test_failure_zeroes_out(void **state)
{
    (void)state;
    struct root_conf c;
    /* The caller's garbage is never freed, only zeroed; everything bound before
     * the failing key (strings, lists, the first adapter) is freed. */
    const char *sets[] = {"adapters.ice.retry.max=99"};
    memset(&c, 0xa5, sizeof(c));
    int rc = bh_conf_load_string("t.yaml", full_doc, strlen(full_doc), sets, 1, root_keys, &c, err,
                                 sizeof(err));
    assert_int_equal(rc, -ERANGE);
    assert_err_contains("key 'adapters[ice].retry.max': 99 is out of range [0, 10]");
    assert_null(c.name);
    assert_int_equal(c.workers, 0);
    assert_false(c.debug);
    assert_int_equal(c.max_body, 0);
    assert_int_equal(c.timeout, 0);
    assert_int_equal(c.offset, 0);
    assert_null(c.tokens.v);
    assert_int_equal(c.tokens.n, 0);
    assert_null(c.props.k);
    assert_null(c.props.v);
    assert_int_equal(c.props.n, 0);
    assert_false(c.tls.enabled);
    assert_null(c.tls.cert);
    assert_null(c.adapters.v);
    assert_int_equal(c.adapters.n, 0);
}

static void
test_reference(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    bh_conf_write_reference(f, root_keys);
    fclose(f);

    static const char *const want[] = {
        "### Top level",
        "| key | type | default | range | description |",
        "| `name` | string | `blockhub` |  | Instance name. |",
        "| `workers` | integer | `4` | [1, 64] | Worker threads. |",
        "| `debug` | boolean | `false` |",
        "| `max_body` | size | `1MiB` | [1024, 1073741824] bytes |",
        "| `timeout` | duration | `5s` | [1, 3600000] ms |",
        "| `offset` | integer |",
        "| `tokens` | list of strings | `[x, y]` |",
        "| `props` | map |",
        "| `adapters` | list of entries |  |  | Adapters. Types: alpha beta. |",
        "### tls",
        "| `tls.enabled` | boolean | `no` |",
        "| `tls.cert` | string |  |  | Certificate file \\| PEM. |",
        "### adapters (type: alpha)",
        "| `adapters[].name` | string | *required* |",
        "| `adapters[].type` | string | *required* |  | Entry type: alpha. |",
        "| `adapters[].port` | integer | `8080` | [1, 65535] | Port. |",
        "| `adapters[].host` |",
        "| `adapters[].fast` |",
        "### adapters (type: beta)",
        "| `adapters[].buffer` | size | `64KiB` |",
        "| `adapters[].linger` | duration | `10ms` |",
        "| `adapters[].topics` |",
        "| `adapters[].props` |",
        "### adapters[].retry",
        "| `adapters[].retry.max` | integer | `3` | [0, 10] | Retries. |",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(buf, want[i]))
            fail_msg("reference lacks '%s':\n%s", want[i], buf);
    }
    /* Sections get their own table, not a row. */
    assert_null(strstr(buf, "| `tls` |"));
    /* The alpha table comes before the beta one. */
    assert_true(strstr(buf, "(type: alpha)") < strstr(buf, "(type: beta)"));
    free(buf);

    /* Required keys are marked. */
    f = open_memstream(&buf, &len);
    bh_conf_write_reference(f, strict_keys);
    fclose(f);
    assert_non_null(strstr(buf, "| `id` | string | *required* |"));
    assert_non_null(strstr(buf, "| `sec.cert` | string | *required* |"));
    free(buf);
}

static void
test_load_string_api(void **state)
{
    (void)state;
    struct root_conf c;
    memset(&c, 0, sizeof(c));
    /* LEN is honoured: the text after it is not read. */
    const char *doc = "workers: 3\nbogus: 1\n";
    assert_int_equal(
        bh_conf_load_string("mem.yaml", doc, 11, NULL, 0, root_keys, &c, err, sizeof(err)), 0);
    assert_int_equal(c.workers, 3);
    bh_conf_free(root_keys, &c);

    /* NAME is used in messages. */
    assert_true(bh_conf_load_string("inline", doc, strlen(doc), NULL, 0, root_keys, &c, err,
                                    sizeof(err)) < 0);
    assert_err_contains("inline:2:1: unknown key 'bogus'");

    /* No error buffer, or a tiny one: still safe. */
    assert_true(bh_conf_load_string("inline", doc, strlen(doc), NULL, 0, root_keys, &c, NULL, 0) <
                0);
    char small[8];
    assert_true(bh_conf_load_string("inline", doc, strlen(doc), NULL, 0, root_keys, &c, small,
                                    sizeof(small)) < 0);
    assert_int_equal(strlen(small), 7);

    /* Bad arguments. */
    assert_int_equal(bh_conf_load_string("x", NULL, 5, NULL, 0, root_keys, &c, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(bh_conf_load_string("x", "", 0, NULL, 1, root_keys, &c, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(bh_conf_load_string("x", "", 0, NULL, 0, NULL, &c, err, sizeof(err)), -EINVAL);
}

/* Large lists and maps: duplicate checks sort, so these stay fast. */
static void
test_large_inputs(void **state)
{
    (void)state;
    size_t cap = 4 << 20, len = 0;
    char *doc = malloc(cap);
    struct root_conf c;
    assert_non_null(doc);

    len += (size_t)sprintf(doc + len, "adapters:\n");
    for (int i = 0; i < 20000; i++)
        len += (size_t)sprintf(doc + len, "- {name: a%d, type: %s}\n", i, i % 2 ? "beta" : "alpha");
    assert_int_equal(load(doc, &c), 0);
    assert_int_equal(c.adapters.n, 20000);
    assert_string_equal(c.adapters.v[19999].name, "a19999");
    assert_int_equal(c.adapters.v[19999].line, 20001);
    bh_conf_free(root_keys, &c);
    sprintf(doc + len, "- {name: a5, type: alpha}\n");
    expect_fail(doc, "t.yaml:20002:10: key 'adapters[a5].name': duplicate name 'a5' (first at "
                     "line 7)");

    len = (size_t)sprintf(doc, "props:\n");
    for (int i = 0; i < 50000; i++)
        len += (size_t)sprintf(doc + len, "  k%d: v%d\n", i, i);
    assert_int_equal(load(doc, &c), 0);
    assert_int_equal(c.props.n, 50000);
    assert_string_equal(c.props.k[49999], "k49999");
    assert_string_equal(c.props.v[49999], "v49999");
    bh_conf_free(root_keys, &c);
    sprintf(doc + len, "  k123: again\n");
    expect_fail(doc, "t.yaml:50002:3: duplicate key 'props.k123' (first defined at line 125)");
    free(doc);
}

/* Malformed or hostile documents: each must be refused with a message, never crash. */
static void
test_fuzz_malformed(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "[",
        "]",
        "{",
        "}",
        "{a: 1",
        "a: [1, 2",
        "a: {b: 1, c",
        "a: 'unterminated",
        "a: \"unterminated",
        "a: \"bad escape \\q\"",
        "a: b: c",
        "a:\n- b\n c: d",
        ": no key",
        "- list at top",
        "scalar at top",
        "'quoted at top'",
        "\"\"",
        "!!binary aGVsbG8=",
        "!!map [a]",
        "%YAML 1.1\n%YAML 1.1\n---\na: 1",
        "%TAG ! !foo\n%TAG ! !foo\n---\na: 1",
        "%YAML 2.0\n---\na: 1",
        "a: 1\n---\nb: 2",
        "&a a: *a",
        "a: &x 1\nb: *x",
        "a: *nope",
        "a: &a [*a]",
        "? a\n? a\n",
        "? [x]: y",
        "a: |\n  text\n bad",
        "a: >\n\tb",
        "\ta: 1",
        "a: 1\n\tb: 2",
        "a:\n  - b\n  -c: d\n e",
        "name: [a, b]",
        "workers: 1e10",
        "workers: 0x10",
        "workers: '12",
        "max_body: 1 GiBB",
        "timeout: forever",
        "tokens: {a: b}",
        "tls: [1, 2]",
        "tls:\n  enabled: maybe",
        "adapters: 1",
        "adapters:\n  - 1\n  - 2",
        "adapters:\n  - {}",
        "adapters:\n  - {name: a}",
        "adapters:\n  - {name: a, type: x}",
        "adapters:\n  - {name: a, type: alpha}\n  - {name: a, type: alpha}",
        "adapters:\n  - {name: a, type: alpha, port: 0}",
        "adapters:\n  - {name: a, type: beta, retry: 5}",
        "props:\n  a: [1]",
        "\xef\xbb\xbf\xef\xbb\xbf a: 1",
        "a: \xc3\x28",
        "a: \xed\xa0\x80",
        "\x01\x02\x03",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct root_conf c;
        int rc = load(docs[i], &c);
        if (rc >= 0)
            fail_msg("document %zu accepted:\n%s", i, docs[i]);
        if (err[0] == '\0')
            fail_msg("document %zu: no message", i);
        assert_true(is_zero(&c, sizeof(c)));
    }
}

/* Random byte mutations of a valid document: any outcome but a crash or a leak. */
static void
test_fuzz_mutations(void **state)
{
    (void)state;
    static const char alphabet[] = "[]{}:,-?&*!|>'\"#%@` \t\n\\.0123456789abcnameypt~\x00\xff";
    size_t base = strlen(full_doc);
    char *doc = malloc(base + 64);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    size_t accepted = 0;
    assert_non_null(doc);

    for (int iter = 0; iter < 4000; iter++) {
        size_t len = base;
        memcpy(doc, full_doc, base);
        int nmut = 1 + iter % 6;
        for (int m = 0; m < nmut; m++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            size_t pos = (size_t)(seed % len);
            char ch = alphabet[(seed >> 32) % (sizeof(alphabet) - 1)];
            switch ((seed >> 48) % 3) {
            case 0: /* replace */
                doc[pos] = ch;
                break;
            case 1: /* insert */
                if (len + 1 < base + 64) {
                    memmove(doc + pos + 1, doc + pos, len - pos);
                    doc[pos] = ch;
                    len++;
                }
                break;
            default: /* delete */
                if (len > 1) {
                    memmove(doc + pos, doc + pos + 1, len - pos - 1);
                    len--;
                }
                break;
            }
        }
        struct root_conf c;
        memset(&c, 0, sizeof(c));
        err[0] = '\0';
        int rc = bh_conf_load_string("fuzz", doc, len, NULL, 0, root_keys, &c, err, sizeof(err));
        if (rc == 0) {
            accepted++;
            bh_conf_free(root_keys, &c);
        } else {
            assert_true(rc < 0);
            assert_true(err[0] != '\0');
            assert_true(is_zero(&c, sizeof(c)));
        }
    }
    free(doc);
    /* Some mutations are harmless (inside a value), most are not. */
    assert_true(accepted > 0);
    assert_true(accepted < 4000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_empty),
        cmocka_unit_test(test_defaults_no_file),
        cmocka_unit_test(test_all_types),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_size_duration_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_variant_errors),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_not_mapping),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_multiple_documents),
        cmocka_unit_test(test_complex_keys),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_set_without_file),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_failure_zeroes_out),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_load_string_api),
        cmocka_unit_test(test_large_inputs),
        cmocka_unit_test(test_fuzz_malformed),
        cmocka_unit_test(test_fuzz_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
