/*
 * The traffic adapter's mapping of a JSON line to an event: every rule of
 * traffic_event.h (docs/feeds.md, section 4.3), one at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/traffic/traffic_event_test.h"

#define VALID                                                                                      \
    "{\"event_id\": \"JJ-1\", \"device\": \"CAM-LH-0191\", \"type\": \"red_light\", "              \
    "\"lon\": 114.130019, \"lat\": 22.546712, \"severity\": 4, \"ts\": 1795737637000, "            \
    "\"plate\": \"粤B54694\", \"road\": \"深南东路\"}"

struct result {
    enum bh_traffic_kind kind;
    enum bh_dlq_reason reason;
    struct bh_traffic_event ev;
    char why[600];
};

static struct bh_traffic_parser *parser;

static int
setup(void **state)
{
    (void)state;
    return bh_traffic_parser_new(&parser);
}

static int
teardown(void **state)
{
    (void)state;
    bh_traffic_parser_free(parser);
    return 0;
}

static struct result
parse_n(const char *line, size_t len)
{
    struct result r;
    memset(&r, 0, sizeof(r));
    r.reason = BH_DLQ_REASON_COUNT;
    r.kind = bh_traffic_parse(parser, line, len, &r.ev, &r.reason, r.why, sizeof(r.why));
    return r;
}

static struct result
parse(const char *line)
{
    return parse_n(line, strlen(line));
}

/* VALID with field NAME's "name": value replaced by REPLACEMENT ("" drops it). */
static struct result
variant(const char *name, const char *replacement)
{
    char key[32], line[1024];
    snprintf(key, sizeof(key), "\"%s\": ", name);
    const char *at = strstr(VALID, key);
    assert_non_null(at);
    const char *end = at + strlen(key);
    int in_str = 0;
    for (; *end != '\0'; end++) {
        if (in_str) {
            if (*end == '\\')
                end++;
            else if (*end == '"')
                in_str = 0;
            continue;
        }
        if (*end == '"')
            in_str = 1;
        else if (*end == ',' || *end == '}')
            break;
    }
    size_t head = (size_t)(at - VALID);
    if (*replacement == '\0' && *end == ',')
        end += 2; /* drop ", " too */
    else if (*replacement == '\0' && head >= 2)
        head -= 2; /* the last field: drop the ", " before it */
    snprintf(line, sizeof(line), "%.*s%s%s", (int)head, VALID, replacement, end);
    return parse(line);
}

static void
expect_reject(struct result r, enum bh_dlq_reason reason, const char *in_why)
{
    if (r.kind != BH_TRAFFIC_REJECT || r.reason != reason || strstr(r.why, in_why) == NULL)
        fail_msg("want %s mentioning '%s', got kind %d reason %s: %s", bh_dlq_reason_code(reason),
                 in_why, r.kind, bh_dlq_reason_code(r.reason), r.why);
}

static void
assert_str(struct bh_traffic_str s, const char *want)
{
    assert_non_null(s.s);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.s, want, s.len);
}

static void
test_valid(void **state)
{
    (void)state;
    struct result r = parse(VALID);
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_str(r.ev.event_id, "JJ-1");
    assert_str(r.ev.device, "CAM-LH-0191");
    assert_int_equal(r.ev.type, BH_TRAFFIC_RED_LIGHT);
    assert_true(r.ev.lon == 114.130019);
    assert_true(r.ev.lat == 22.546712);
    assert_int_equal(r.ev.severity, 4);
    assert_int_equal(r.ev.ts, 1795737637000LL);
    assert_str(r.ev.plate, "粤B54694"); /* UTF-8, byte for byte */
    assert_str(r.ev.road, "深南东路");
    /* every type of the contract */
    for (int i = 0; i < BH_TRAFFIC_TYPE_COUNT; i++) {
        char t[64];
        snprintf(t, sizeof(t), "\"type\": \"%s\"", bh_traffic_type_names[i]);
        r = variant("type", t);
        assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
        assert_int_equal(r.ev.type, i);
    }
    /* optional fields absent or null */
    r = variant("plate", "");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_null(r.ev.plate.s);
    r = variant("road", "\"road\": null");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_null(r.ev.road.s);
    assert_str(r.ev.plate, "粤B54694");
    /* whitespace anywhere JSON allows it, keys in any order */
    r = parse(" {\t\"ts\":1,\"severity\":1 ,\"lat\":-0.5,\"lon\":-180,\"type\":\"accident\","
              "\"device\":\"d\",\"event_id\":\"e\"}  ");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_true(r.ev.lon == -180 && r.ev.lat == -0.5);
    assert_int_equal(r.ev.ts, 1);
}

static void
test_each_missing_field(void **state)
{
    (void)state;
    static const char *const required[] = {"event_id", "device",   "type", "lon",
                                           "lat",      "severity", "ts"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        char null_value[64];
        expect_reject(variant(required[i], ""), BH_DLQ_MISSING_FIELD, required[i]);
        snprintf(null_value, sizeof(null_value), "\"%s\": null", required[i]);
        expect_reject(variant(required[i], null_value), BH_DLQ_MISSING_FIELD, required[i]);
    }
    expect_reject(variant("event_id", "\"event_id\": \"\""), BH_DLQ_MISSING_FIELD, "event_id");
    expect_reject(variant("device", "\"device\": \"\""), BH_DLQ_MISSING_FIELD, "device");
    /* several problems: the first in the contract's order is reported */
    expect_reject(parse("{\"severity\": 9, \"device\": 5}"), BH_DLQ_MISSING_FIELD, "event_id");
    expect_reject(parse("{\"event_id\": \"x\", \"severity\": 9, \"device\": 5}"),
                  BH_DLQ_INVALID_FIELD, "device");
}

static void
test_each_wrong_type(void **state)
{
    (void)state;
    static const struct {
        const char *field, *value;
    } wrong[] = {
        {"event_id", "\"event_id\": 17"},
        {"event_id", "\"event_id\": {\"a\": 1}"},
        {"device", "\"device\": true"},
        {"device", "\"device\": [\"CAM\"]"},
        {"type", "\"type\": 3"},
        {"lon", "\"lon\": \"114.13\""},
        {"lat", "\"lat\": [22.5]"},
        {"lat", "\"lat\": false"},
        {"severity", "\"severity\": \"4\""},
        {"ts", "\"ts\": {\"ms\": 1}"},
        {"ts", "\"ts\": \"1795737637000\""},
        {"plate", "\"plate\": 12345"},
        {"road", "\"road\": false"},
        {"road", "\"road\": {}"},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "%s: must be a", wrong[i].field);
        expect_reject(variant(wrong[i].field, wrong[i].value), BH_DLQ_INVALID_FIELD, want);
    }
}

static void
test_value_rules(void **state)
{
    (void)state;
    expect_reject(variant("severity", "\"severity\": 0"), BH_DLQ_INVALID_FIELD, "severity: 0");
    expect_reject(variant("severity", "\"severity\": 6"), BH_DLQ_INVALID_FIELD, "severity: 6");
    expect_reject(variant("severity", "\"severity\": -3"), BH_DLQ_INVALID_FIELD, "severity");
    expect_reject(variant("severity", "\"severity\": 2.5"), BH_DLQ_INVALID_FIELD, "severity");
    struct result r = variant("severity", "\"severity\": 5.0"); /* an integral value */
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_int_equal(r.ev.severity, 5);
    r = variant("severity", "\"severity\": 1");
    assert_int_equal(r.ev.severity, 1);

    expect_reject(variant("ts", "\"ts\": 1795737637000.5"), BH_DLQ_INVALID_FIELD, "ts");
    expect_reject(variant("ts", "\"ts\": 1.5"), BH_DLQ_INVALID_FIELD, "ts");
    expect_reject(variant("ts", "\"ts\": -1"), BH_DLQ_INVALID_FIELD, "ts");
    expect_reject(variant("ts", "\"ts\": 253402300800000"), BH_DLQ_INVALID_FIELD, "ts");
    expect_reject(variant("ts", "\"ts\": 99999999999999999999999"), BH_DLQ_INVALID_FIELD, "ts");
    expect_reject(variant("ts", "\"ts\": 1e300"), BH_DLQ_INVALID_FIELD, "ts");
    r = variant("ts", "\"ts\": 1.7957376370e12");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_int_equal(r.ev.ts, 1795737637000LL);
    r = variant("ts", "\"ts\": 253402300799999");
    assert_int_equal(r.ev.ts, 253402300799999LL);

    expect_reject(variant("lon", "\"lon\": 180.000001"), BH_DLQ_INVALID_FIELD, "lon");
    expect_reject(variant("lon", "\"lon\": 1e400"), BH_DLQ_INVALID_FIELD, "lon");
    expect_reject(variant("lat", "\"lat\": -90.5"), BH_DLQ_INVALID_FIELD, "lat");
    r = variant("lat", "\"lat\": 2.2546712e1");
    assert_true(r.ev.lat == 22.546712);

    r = variant("type", "\"type\": \"ufo_sighting\"");
    expect_reject(r, BH_DLQ_INVALID_FIELD, "'ufo_sighting' is not one of accident, congestion");
    expect_reject(variant("type", "\"type\": \"Accident\""), BH_DLQ_INVALID_FIELD, "type");
}

/* Coordinates come out exactly as strtod reads them (the nearest double). */
static void
test_coordinates_are_exact(void **state)
{
    (void)state;
    srand(27);
    for (int i = 0; i < 20000; i++) {
        char lon[64], lat[64], line[256];
        int frac = rand() % 18; /* up to 17 decimals: beyond the fast path too */
        snprintf(lon, sizeof(lon), "%s%d.%0*lld", rand() % 2 ? "-" : "", rand() % 180, frac,
                 (long long)rand() * rand() % 1000000000000000000LL);
        snprintf(lat, sizeof(lat), "%d.%06d", rand() % 90, rand() % 1000000);
        if (frac == 0)
            snprintf(lon, sizeof(lon), "%d", rand() % 180);
        snprintf(line, sizeof(line),
                 "{\"event_id\": \"a\", \"device\": \"d\", \"type\": \"accident\", "
                 "\"lon\": %s, \"lat\": %s, \"severity\": 3, \"ts\": 4}",
                 lon, lat);
        struct result r = parse(line);
        if (r.kind != BH_TRAFFIC_RECORD || r.ev.lon != strtod(lon, NULL) ||
            r.ev.lat != strtod(lat, NULL))
            fail_msg("%s / %s: got %.17g / %.17g (%s)", lon, lat, r.ev.lon, r.ev.lat, r.why);
    }
}

static void
test_unknown_fields_ignored(void **state)
{
    (void)state;
    struct result r = parse(
        "{\"extra\": {\"type\": \"ufo\", \"event_id\": 5, \"deep\": [1, [2, {\"ts\": \"x\"}]]}, "
        "\"event_id\": \"JJ-2\", \"list\": [[], {}, null, true, 1.5e3, \"s\"], "
        "\"device\": \"D\", \"type\": \"congestion\", \"lon\": 114.1, \"lat\": 22.5, "
        "\"nested\": {\"severity\": 99}, \"severity\": 2, \"ts\": 5, \"n\": null, "
        "\"extra2\": 1, \"extra3\": 2}");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_str(r.ev.event_id, "JJ-2");
    assert_int_equal(r.ev.type, BH_TRAFFIC_CONGESTION);
    assert_int_equal(r.ev.severity, 2);
    assert_int_equal(r.ev.ts, 5);
}

static void
test_duplicate_keys_rejected(void **state)
{
    (void)state;
    expect_reject(parse("{\"event_id\": \"a\", \"device\": \"d\", \"type\": \"accident\", "
                        "\"lon\": 114.1, \"lat\": 22.5, \"severity\": 2, \"severity\": 3, "
                        "\"ts\": 5}"),
                  BH_DLQ_INVALID_JSON, "the key 'severity' appears more than once");
    /* also when the two values agree, and for an escaped spelling of the key */
    expect_reject(parse("{\"event_id\": \"a\", \"ev\\u0065nt_id\": \"a\"}"), BH_DLQ_INVALID_JSON,
                  "event_id");
    /* the same rule as the fire webhook: unknown keys and nested objects too */
    const char *good = "\"event_id\": \"a\", \"device\": \"d\", \"type\": \"accident\", "
                       "\"lon\": 114.1, \"lat\": 22.5, \"severity\": 2, \"ts\": 5";
    char line[2048];
    snprintf(line, sizeof(line), "{%s, \"note\": 1, \"note\": 2}", good);
    expect_reject(parse(line), BH_DLQ_INVALID_JSON, "the key 'note'");
    snprintf(line, sizeof(line), "{%s, \"x\": {\"a\": 1, \"b\": [{\"c\": 1, \"c\": 2}]}}", good);
    expect_reject(parse(line), BH_DLQ_INVALID_JSON, "the key 'c'");
    /* the same key in different objects is no duplicate */
    snprintf(line, sizeof(line), "{%s, \"x\": {\"ts\": 1}, \"y\": [{\"ts\": 2}, {\"ts\": 3}]}",
             good);
    assert_int_equal(parse(line).kind, BH_TRAFFIC_RECORD);
    /* many keys: past the scan, the table finds the one seen twice */
    size_t k = (size_t)snprintf(line, sizeof(line), "{%s", good);
    for (int i = 0; i < 40; i++)
        k += (size_t)snprintf(line + k, sizeof(line) - k, ", \"k%d\": %d", i, i);
    snprintf(line + k, sizeof(line) - k, "}");
    assert_int_equal(parse(line).kind, BH_TRAFFIC_RECORD);
    snprintf(line + k, sizeof(line) - k, ", \"k7\": 0}");
    expect_reject(parse(line), BH_DLQ_INVALID_JSON, "the key 'k7'");
}

static void
test_strings_and_escapes(void **state)
{
    (void)state;
    struct result r = variant("plate", "\"plate\": \"\\u7ca4B12345\"");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_str(r.ev.plate, "粤B12345");
    r = variant("event_id", "\"event_id\": \"JJ-\\\"q\\\"\\\\\\/\\t\\n\"");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_str(r.ev.event_id, "JJ-\"q\"\\/\t\n");
    r = variant("road", "\"road\": \"car \\ud83d\\ude97 lane\"");
    assert_str(r.ev.road, "car \xF0\x9F\x9A\x97 lane");
    assert_str(r.ev.event_id, "JJ-1");
    /* keys may be escaped too */
    r = variant("type", "\"\\u0074ype\": \"accident\"");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_int_equal(r.ev.type, BH_TRAFFIC_ACCIDENT);
    /* lone surrogates are not characters */
    expect_reject(variant("plate", "\"plate\": \"\\ud800\""), BH_DLQ_INVALID_FIELD, "plate");
    expect_reject(variant("plate", "\"plate\": \"\\udc00x\""), BH_DLQ_INVALID_FIELD, "plate");
    expect_reject(variant("road", "\"road\": \"\\ud800\\u0041\""), BH_DLQ_INVALID_FIELD, "road");
    /* ... but in a field nobody reads they do no harm */
    r = parse("{\"x\": \"\\ud800\", \"event_id\": \"a\", \"device\": \"d\", \"type\": "
              "\"accident\", \"lon\": 1, \"lat\": 2, \"severity\": 3, \"ts\": 4}");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    /* a raw control character inside a string is not JSON */
    expect_reject(variant("road", "\"road\": \"a\tb\""), BH_DLQ_INVALID_JSON, "JSON");
}

static void
test_encoding(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff",             /* never in UTF-8 */
        "\xC0\x80",         /* overlong NUL */
        "\xE0\x80\xAF",     /* overlong '/' */
        "\xED\xA0\x80",     /* a surrogate */
        "\xF4\x90\x80\x80", /* above U+10FFFF */
        "\xE7\xB2",         /* cut short */
        "\xB2",             /* a continuation byte alone */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "{\"event_id\": \"a\", \"device\": \"d\", \"type\": \"accident\", \"lon\": 1, "
                 "\"lat\": 2, \"severity\": 3, \"ts\": 4, \"road\": \"%s\"}",
                 bad[i]);
        expect_reject(parse(line), BH_DLQ_INVALID_ENCODING, "UTF-8");
        assert_false(bh_utf8_valid(bad[i], strlen(bad[i])));
    }
    static const char good[] = "粤B12345 \xF0\x9F\x9A\x97 \xED\x9F\xBF \xF4\x8F\xBF\xBF";
    assert_true(bh_utf8_valid(good, strlen(good)));
    /* GB18030 bytes for 粤 are not UTF-8 */
    expect_reject(parse("{\"plate\": \"\xD4\xC1"
                        "B12345\"}"),
                  BH_DLQ_INVALID_ENCODING, "UTF-8");
}

static void
test_invalid_json(void **state)
{
    (void)state;
    expect_reject(parse("{\"event_id\":\"JJ-20261127-000026\",\"device\":\"CAM-LH-0001\","
                        "\"type\":\"accident\",\"lon\":114.1"),
                  BH_DLQ_INVALID_JSON, "premature EOF");
    expect_reject(parse("{\"a\": 1} x"), BH_DLQ_INVALID_JSON, "not valid JSON");
    expect_reject(parse("{}{}"), BH_DLQ_INVALID_JSON, "not valid JSON");
    expect_reject(parse("{\"a\": 1,}"), BH_DLQ_INVALID_JSON, "not valid JSON");
    expect_reject(parse("{'a': 1}"), BH_DLQ_INVALID_JSON, "not valid JSON");
    expect_reject(parse("{\"a\": 01}"), BH_DLQ_INVALID_JSON, "not valid JSON");
    expect_reject(parse("{\"a\": NaN}"), BH_DLQ_INVALID_JSON, "not valid JSON");
    expect_reject(parse("[1, 2]"), BH_DLQ_INVALID_JSON, "not a JSON object");
    expect_reject(parse("\"heartbeat\""), BH_DLQ_INVALID_JSON, "not a JSON object");
    expect_reject(parse("42"), BH_DLQ_INVALID_JSON, "not a JSON object");
    expect_reject(parse("null"), BH_DLQ_INVALID_JSON, "not a JSON object");
    expect_reject(parse_n("{\"a\": \"b\0\"}", 11), BH_DLQ_INVALID_JSON, "not valid JSON");
    expect_reject(parse("\x01\x02\x03binary"), BH_DLQ_INVALID_JSON, "not valid JSON");
    /* an empty object is JSON, but not an event */
    expect_reject(parse("{}"), BH_DLQ_MISSING_FIELD, "event_id");
}

static void
test_heartbeat(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"type\":\"heartbeat\",\"ts\":1795737970000}").kind,
                     BH_TRAFFIC_HEARTBEAT);
    assert_int_equal(parse("{\"type\": \"heartbeat\"}").kind, BH_TRAFFIC_HEARTBEAT);
    /* only a whole object is a keep-alive */
    expect_reject(parse("{\"type\":\"heartbeat\""), BH_DLQ_INVALID_JSON, "not valid JSON");
    /* the type must be exactly heartbeat */
    expect_reject(parse("{\"type\":\"Heartbeat\"}"), BH_DLQ_MISSING_FIELD, "event_id");
    expect_reject(parse("{\"x\": {\"type\":\"heartbeat\"}}"), BH_DLQ_MISSING_FIELD, "event_id");
}

static void
test_parser_reuse_keeps_results_apart(void **state)
{
    (void)state;
    /* many lines through one parser, alternating good and bad, with big escaped values */
    static char big[40000]; /* its escapes outgrow yajl's arena: malloc takes over */
    size_t n = (size_t)snprintf(big, sizeof(big), "{\"road\": \"");
    for (int i = 0; i < 5000; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\\u7ca4");
    snprintf(big + n, sizeof(big) - n,
             "\", \"event_id\": \"big\", \"device\": \"d\", \"type\": \"accident\", "
             "\"lon\": 1, \"lat\": 2, \"severity\": 3, \"ts\": 4}");
    for (int round = 0; round < 50; round++) {
        struct result r = parse(big);
        assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
        assert_int_equal(r.ev.road.len, 5000 * 3);
        assert_memory_equal(r.ev.road.s + 14997, "粤", 3);
        expect_reject(parse("{\"event_id\": 1"), BH_DLQ_INVALID_JSON, "JSON");
        r = parse(VALID);
        assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
        assert_str(r.ev.event_id, "JJ-1");
    }
}

/* A line with every required field valid and EXTRA (a ", "-led list of members) added. */
static struct result
with_extra(const char *extra)
{
    char line[2048];
    snprintf(line, sizeof(line),
             "{\"event_id\": \"a\", \"device\": \"d\", \"type\": \"accident\", \"lon\": 1, "
             "\"lat\": 2, \"severity\": 3, \"ts\": 4%s}",
             extra);
    return parse(line);
}

/* \u0000 is refused wherever it is: known fields, unknown ones at any depth, keys. */
static void
test_nul_refused(void **state)
{
    (void)state;
    expect_reject(variant("plate", "\"plate\": \"B\\u0000\""), BH_DLQ_INVALID_FIELD,
                  "plate: the string holds \\u0000");
    expect_reject(variant("event_id", "\"event_id\": \"\\u0000\""), BH_DLQ_INVALID_FIELD,
                  "event_id: the string holds \\u0000");
    expect_reject(variant("road", "\"road\": \"\\u6df1\\u0000\\u5357\""), BH_DLQ_INVALID_FIELD,
                  "road: the string holds \\u0000");
    /* not a type name either (the NUL is what is said, not "not one of") */
    expect_reject(variant("type", "\"type\": \"accident\\u0000\""), BH_DLQ_INVALID_FIELD,
                  "type: the string holds \\u0000");
    /* in a field nobody reads */
    expect_reject(with_extra(", \"note\": \"x\\u0000y\""), BH_DLQ_INVALID_FIELD,
                  "note: a string holds \\u0000, which no field accepts");
    expect_reject(with_extra(", \"extra\": {\"a\": [1, \"\\u0000\"]}"), BH_DLQ_INVALID_FIELD,
                  "extra: a string holds \\u0000");
    /* in a key, top-level or nested: shown escaped */
    expect_reject(with_extra(", \"k\\u0000ey\": 1"), BH_DLQ_INVALID_FIELD,
                  "the key 'k\\x00ey' holds \\u0000");
    expect_reject(with_extra(", \"x\": {\"\\u0000\": 1}"), BH_DLQ_INVALID_FIELD,
                  "the key '\\x00' holds \\u0000");
    /* the fields' own rules come first, in the contract's order */
    expect_reject(parse("{\"note\": \"\\u0000\", \"device\": \"d\"}"), BH_DLQ_MISSING_FIELD,
                  "event_id: is required");
    /* the six characters \u0000 (an escaped backslash) are no NUL */
    struct result r = variant("road", "\"road\": \"\\\\u0000\"");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    assert_str(r.ev.road, "\\u0000");
    r = with_extra(", \"note\": \"\\\\u0000 \\u0001\"");
    assert_int_equal(r.kind, BH_TRAFFIC_RECORD);
    /* a heartbeat stays a heartbeat */
    assert_int_equal(parse("{\"type\": \"heartbeat\", \"x\": \"\\u0000\"}").kind,
                     BH_TRAFFIC_HEARTBEAT);
    /* a raw NUL byte is not JSON at all */
    static const char raw[] = "{\"event_id\": \"a\0b\"}";
    expect_reject(parse_n(raw, sizeof(raw) - 1), BH_DLQ_INVALID_JSON, "JSON");
    /* the same verdicts without the flat-line path */
    bh_traffic_parser_set_fast(parser, false);
    expect_reject(with_extra(", \"note\": \"x\\u0000y\""), BH_DLQ_INVALID_FIELD, "note:");
    expect_reject(variant("plate", "\"plate\": \"B\\u0000\""), BH_DLQ_INVALID_FIELD, "plate:");
    bh_traffic_parser_set_fast(parser, true);
}

/* The sender's text in a reason is cut between characters, never inside one. */
static void
test_why_cut_between_characters(void **state)
{
    (void)state;
    static const char *const chars[] = {"a", "é", "交", "\xF0\x9F\x9A\x97"};
    for (size_t lead = 0; lead < 4; lead++) {
        for (size_t k = 0; k < 4; k++) {
            for (int count = 1; count <= 45; count++) {
                char value[512], member[600];
                size_t n = 0;
                for (size_t i = 0; i < lead; i++)
                    value[n++] = 'x';
                for (int i = 0; i < count; i++) {
                    memcpy(value + n, chars[k], strlen(chars[k]));
                    n += strlen(chars[k]);
                }
                value[n] = '\0';
                snprintf(member, sizeof(member), "\"type\": \"%s\"", value);
                struct result r = variant("type", member);
                expect_reject(r, BH_DLQ_INVALID_FIELD, "is not one of");
                assert_true(bh_utf8_valid(r.why, strlen(r.why)));
                /* the quoted text: the longest whole-character prefix of at most 64 bytes */
                const char *q = strchr(r.why, '\'') + 1;
                size_t w = strlen(chars[k]), shown = (size_t)(strchr(q, '\'') - q);
                size_t want = n <= 64 ? n : lead + (64 - lead) / w * w;
                if (shown != want || memcmp(q, value, shown) != 0)
                    fail_msg("'%s' shown as '%.*s'", value, (int)shown, q);
            }
        }
    }
    /* 40 CJK characters: the first 21 (63 bytes) are shown */
    struct result r = variant("type", "\"type\": \"交通事故交通事故交通事故交通事故交通事故交通事故"
                                      "交通事故交通事故交通事故交通事故\"");
    assert_true(bh_utf8_valid(r.why, strlen(r.why)));
    assert_non_null(strstr(r.why, "'交通事故交通事故交通事故交通事故交通事故交' is not one of"));
}

static int
same_str(struct bh_traffic_str a, struct bh_traffic_str b)
{
    return (a.s == NULL) == (b.s == NULL) && a.len == b.len &&
           (a.s == NULL || memcmp(a.s, b.s, a.len) == 0);
}

/*
 * The flat-line path and yajl agree: kind, reason, detail and every field,
 * on lines mutated at random from valid ones (and from odd valid ones).
 */
static void
test_flat_path_agrees_with_yajl(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        VALID,
        "{\"type\":\"heartbeat\",\"ts\":1795737970000}",
        "{\"event_id\":\"JJ-2\",\"device\":\"D\",\"type\":\"accident\",\"lon\":-114.5e0,"
        "\"lat\":2.25E+1,\"severity\":3,\"ts\":0,\"plate\":null,\"x\":[1,{\"y\":true}]}",
        " {\"event_id\" : \"a\\\"b\" , \"device\":\"d\", \"type\":\"congestion\", \"lon\":0, "
        "\"lat\":-0.0, \"severity\":5, \"ts\":1e3, \"road\":\"\\u8def\", \"f\":false} ",
        "{}",
    };
    static const char alphabet[] = "{}[]\",:\\ \t0123456789.eE+-truefalsnxyz\xE7\xB2\xA4";
    struct bh_traffic_parser *slow;
    assert_int_equal(bh_traffic_parser_new(&slow), 0);
    bh_traffic_parser_set_fast(slow, false);
    size_t fast_before = bh_traffic_parser_fast_lines(parser), records = 0;
    srand(8259);
    for (int i = 0; i < 100000; i++) {
        char line[1024];
        const char *seed = seeds[rand() % (int)(sizeof(seeds) / sizeof(seeds[0]))];
        size_t n = strlen(seed);
        memcpy(line, seed, n);
        for (int m = rand() % 4; m > 0; m--) { /* 0-3 edits: insert, delete or replace */
            size_t at = (size_t)rand() % (n + 1);
            char c = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
            int op = rand() % 3;
            if (op == 0 && n + 1 < sizeof(line)) {
                memmove(line + at + 1, line + at, n - at);
                line[at] = c;
                n++;
            } else if (op == 1 && at < n) {
                memmove(line + at, line + at + 1, n - at - 1);
                n--;
            } else if (at < n) {
                line[at] = c;
            }
        }
        struct result a, b;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        a.kind = bh_traffic_parse(parser, line, n, &a.ev, &a.reason, a.why, sizeof(a.why));
        b.kind = bh_traffic_parse(slow, line, n, &b.ev, &b.reason, b.why, sizeof(b.why));
        if (a.kind != b.kind || a.reason != b.reason || strcmp(a.why, b.why) != 0 ||
            !same_str(a.ev.event_id, b.ev.event_id) || !same_str(a.ev.device, b.ev.device) ||
            !same_str(a.ev.plate, b.ev.plate) || !same_str(a.ev.road, b.ev.road) ||
            a.ev.type != b.ev.type || memcmp(&a.ev.lon, &b.ev.lon, sizeof(double)) != 0 ||
            memcmp(&a.ev.lat, &b.ev.lat, sizeof(double)) != 0 || a.ev.severity != b.ev.severity ||
            a.ev.ts != b.ev.ts)
            fail_msg("disagree on '%.*s': %d/%s '%s' vs %d/%s '%s'", (int)n, line, a.kind,
                     bh_dlq_reason_code(a.reason), a.why, b.kind, bh_dlq_reason_code(b.reason),
                     b.why);
        /* whatever the verdict, the reason and the record's strings are valid UTF-8, NUL-free */
        if (!bh_utf8_valid(a.why, strlen(a.why)))
            fail_msg("reason not UTF-8 for '%.*s'", (int)n, line);
        if (a.kind == BH_TRAFFIC_RECORD) {
            const struct bh_traffic_str *strs[] = {&a.ev.event_id, &a.ev.device, &a.ev.plate,
                                                   &a.ev.road};
            for (size_t k = 0; k < 4; k++)
                if (strs[k]->s != NULL && (!bh_utf8_valid(strs[k]->s, strs[k]->len) ||
                                           memchr(strs[k]->s, '\0', strs[k]->len) != NULL))
                    fail_msg("field %zu of '%.*s' is not clean UTF-8", k, (int)n, line);
        }
        records += a.kind == BH_TRAFFIC_RECORD;
    }
    /* both paths were exercised, and many lines were still good ones */
    size_t fast = bh_traffic_parser_fast_lines(parser) - fast_before;
    assert_true(fast > 20000 && fast < 90000);
    assert_true(records > 10000);
    assert_int_equal(bh_traffic_parser_fast_lines(slow), 0);
    bh_traffic_parser_free(slow);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_each_missing_field),
        cmocka_unit_test(test_each_wrong_type),
        cmocka_unit_test(test_value_rules),
        cmocka_unit_test(test_coordinates_are_exact),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_duplicate_keys_rejected),
        cmocka_unit_test(test_strings_and_escapes),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_parser_reuse_keeps_results_apart),
        cmocka_unit_test(test_flat_path_agrees_with_yajl),
        cmocka_unit_test(test_nul_refused),
        cmocka_unit_test(test_why_cut_between_characters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
