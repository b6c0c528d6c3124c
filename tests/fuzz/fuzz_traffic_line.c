/*
 * The traffic stream, from bytes to records: the input is a gateway's
 * stream, framed into lines (bh_traffic_lines, fed in three pieces cut where the
 * input's length says), and every line goes the adapter's way: bh_traffic_parse,
 * the block lookup by coordinates, the direct Avro writer behind the framing
 * header bh_encode uses.
 *
 * Oracle (besides no crash, leak or undefined behaviour):
 *   - every line is a heartbeat, a reject (a dead-letter reason code and a
 *     reason in valid UTF-8), unresolved, or a TrafficEvent record that
 *     decodes with avro-c, holds only valid UTF-8 strings and carries the
 *     line's event_id, device, plate and road;
 *   - the flat-line fast path and yajl give the same answer: the same kind,
 *     the same reason and text, the same event;
 *   - the framer hands out lines that hold no line feed, numbered in order;
 *   - every line is also read as a hello (bh_traffic_hello_parse): a refusal
 *     has a reason in valid UTF-8; a hello taken is version 1, its gateway
 *     valid UTF-8 without control characters and its token within bounds, and
 *     the line is valid UTF-8 for the event parser too.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/traffic/traffic_avro.h"
#include "adapters/traffic/traffic_event_test.h"
#include "adapters/traffic/traffic_hello.h"
#include "adapters/traffic/traffic_lines.h"
#include "fuzz_common.h"
#include "utf8.h"

#define MAX_LINE (64 * 1024)
#define KEEP     4096

static const char *const kinds[] = {"record", "heartbeat", "reject"};

static const struct bh_schema *schema;
static struct bh_traffic_parser *fast, *slow;
static uint8_t frame[16];
static size_t frame_len;
static uint8_t *out;
static size_t out_cap;

static void
free_state(void)
{
    bh_traffic_parser_free(fast);
    bh_traffic_parser_free(slow);
    free(out);
}

static void
init(void)
{
    if (schema != NULL)
        return;
    char err[512];
    schema = bh_fuzz_schema("blockhub.traffic.TrafficEvent");
    bh_fuzz_blocks();
    atexit(free_state);
    if (bh_traffic_parser_new(&fast) < 0 || bh_traffic_parser_new(&slow) < 0)
        bh_fuzz_fail("cannot make the parsers");
    bh_traffic_parser_set_fast(slow, false);
    if (bh_traffic_avro_check(schema, bh_fuzz_encoder(), frame, &frame_len, err, sizeof(err)) < 0)
        bh_fuzz_fail("the traffic writer refuses the schema: %s", err);
}

static int
same_str(const struct bh_traffic_str *a, const struct bh_traffic_str *b)
{
    if ((a->s == NULL) != (b->s == NULL) || a->len != b->len)
        return 0;
    return a->s == NULL || a->len == 0 || memcmp(a->s, b->s, a->len) == 0;
}

static void
check_same_event(int64_t n, const struct bh_traffic_event *a, const struct bh_traffic_event *b)
{
    if (!same_str(&a->event_id, &b->event_id) || !same_str(&a->device, &b->device) ||
        !same_str(&a->plate, &b->plate) || !same_str(&a->road, &b->road) || a->type != b->type ||
        memcmp(&a->lon, &b->lon, sizeof(a->lon)) != 0 ||
        memcmp(&a->lat, &b->lat, sizeof(a->lat)) != 0 || a->severity != b->severity ||
        a->ts != b->ts)
        bh_fuzz_fail("line %lld: the fast path and yajl read different events", (long long)n);
}

/* The record field NAME holds the event's string S (or null when S is absent). */
static void
check_field(avro_value_t *rec, const char *name, const struct bh_traffic_str *s)
{
    size_t len = 0;
    const char *got = bh_fuzz_get_string(rec, name, &len);
    if (s->s == NULL ? got != NULL
                     : got == NULL || len != s->len || (len && memcmp(got, s->s, len) != 0))
        bh_fuzz_fail("the record's %s is not the line's", name);
}

static void
check_record(const struct bh_traffic_event *ev)
{
    const struct bh_block *blk =
        bh_blockmap_resolve(bh_fuzz_blocks(), NULL, 0, true, ev->lon, ev->lat);
    if (blk == NULL)
        return; /* unresolved_block */
    struct bh_traffic_extra x = {blk->id, 1795741387000LL, "127.0.0.1:40000",
                                 ev->severity % 2 ? "CN=jj-gw-03,O=Traffic Police,C=CN" : NULL};
    size_t need = frame_len + bh_traffic_avro_bound(ev, &x);
    if (need > out_cap) {
        uint8_t *p = realloc(out, need);
        if (p == NULL)
            bh_fuzz_fail("out of memory");
        out = p;
        out_cap = need;
    }
    memcpy(out, frame, frame_len);
    size_t body = bh_traffic_avro_write(out + frame_len, ev, &x);
    if (frame_len + body > need)
        bh_fuzz_fail("the writer wrote %zu bytes past its bound of %zu", body,
                     bh_traffic_avro_bound(ev, &x));
    bh_fuzz_emit(out, frame_len + body);
    avro_value_t rec;
    bh_fuzz_check_record("TrafficEvent", out, frame_len + body, schema, &rec);
    check_field(&rec, "event_id", &ev->event_id);
    check_field(&rec, "device", &ev->device);
    check_field(&rec, "plate", &ev->plate);
    check_field(&rec, "road", &ev->road);
    avro_value_decref(&rec);
}

struct stream {
    int64_t last;
};

static void
check_hello(const struct bh_traffic_line *line)
{
    struct bh_traffic_hello h;
    char why[256];
    switch (bh_traffic_hello_parse(line->data, line->len, &h, why, sizeof(why))) {
    case BH_HELLO_NOT:
        return;
    case BH_HELLO_BAD:
        bh_fuzz_check_why("hello refusal", why);
        return;
    case BH_HELLO_OK:
        break;
    }
    if (h.version != 1)
        bh_fuzz_fail("line %lld: a hello of version %d taken", (long long)line->number, h.version);
    size_t glen = strlen(h.gateway);
    if (glen > BH_HELLO_GATEWAY_MAX || h.token_len > BH_HELLO_TOKEN_MAX ||
        (h.has_token && strlen(h.token) > h.token_len))
        bh_fuzz_fail("line %lld: a hello's gateway or token out of bounds",
                     (long long)line->number);
    bh_fuzz_check_utf8("hello gateway", h.gateway, glen);
    for (size_t i = 0; i < glen; i++)
        if ((unsigned char)h.gateway[i] < 0x20 || h.gateway[i] == 0x7f)
            bh_fuzz_fail("line %lld: a hello's gateway holds a control character",
                         (long long)line->number);
    if (bh_utf8_valid(line->data, line->len) < 0)
        bh_fuzz_fail("line %lld: a hello taken from bytes that are not UTF-8",
                     (long long)line->number);
    /* the tokens compare: the hello's own token is one of [token] */
    char *one[1] = {h.token};
    if (h.has_token && h.token_len > 0 && strlen(h.token) == h.token_len &&
        !bh_traffic_token_ok(h.token, h.token_len, one, 1))
        bh_fuzz_fail("line %lld: a token does not match itself", (long long)line->number);
}

static void
on_line(void *arg, const struct bh_traffic_line *line)
{
    struct stream *st = arg;
    if (line->number <= st->last)
        bh_fuzz_fail("line %lld after line %lld", (long long)line->number, (long long)st->last);
    st->last = line->number;
    if (line->len > line->full_len || (!line->too_long && line->len != line->full_len))
        bh_fuzz_fail("line %lld: %zu bytes of %llu", (long long)line->number, line->len,
                     (unsigned long long)line->full_len);
    if (line->len > 0 && memchr(line->data, '\n', line->len) != NULL)
        bh_fuzz_fail("line %lld holds a line feed", (long long)line->number);
    if (line->too_long)
        return; /* too_large, with the first bytes */
    check_hello(line);

    struct bh_traffic_event a, b;
    enum bh_dlq_reason ra = BH_DLQ_REASON_COUNT, rb = BH_DLQ_REASON_COUNT;
    char wa[600], wb[600];
    enum bh_traffic_kind ka =
        bh_traffic_parse(fast, line->data, line->len, &a, &ra, wa, sizeof(wa));
    enum bh_traffic_kind kb =
        bh_traffic_parse(slow, line->data, line->len, &b, &rb, wb, sizeof(wb));
    if (ka != kb)
        bh_fuzz_fail("line %lld: the fast path says %s, yajl says %s", (long long)line->number,
                     kinds[ka], kinds[kb]);
    switch (ka) {
    case BH_TRAFFIC_HEARTBEAT:
        return;
    case BH_TRAFFIC_REJECT:
        bh_fuzz_check_reject("the line's reason", ra, wa);
        if (ra != rb || strcmp(wa, wb) != 0)
            bh_fuzz_fail("line %lld: the fast path says %s (%s), yajl says %s (%s)",
                         (long long)line->number, bh_dlq_reason_code(ra), wa,
                         bh_dlq_reason_code(rb), wb);
        return;
    case BH_TRAFFIC_RECORD:
        check_same_event(line->number, &a, &b);
        if (a.type >= BH_TRAFFIC_TYPE_COUNT || a.severity < 1 || a.severity > 5 || a.ts < 0 ||
            !isfinite(a.lon) || !isfinite(a.lat) || fabs(a.lon) > 180 || fabs(a.lat) > 90 ||
            a.event_id.len == 0 || a.device.len == 0)
            bh_fuzz_fail("line %lld: a record that breaks the contract", (long long)line->number);
        check_record(&a);
        return;
    }
    bh_fuzz_fail("line %lld: kind %d", (long long)line->number, (int)ka);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    struct bh_traffic_lines l;
    struct stream st = {0};
    bh_traffic_lines_init(&l, MAX_LINE, KEEP);
    /* Three pieces, so that lines are also gathered across reads. */
    size_t cut1 = size / 3, cut2 = size - size / 5;
    const char *s = (const char *)data;
    if (bh_traffic_lines_feed(&l, s, cut1, on_line, &st) < 0 ||
        bh_traffic_lines_feed(&l, s + cut1, cut2 - cut1, on_line, &st) < 0 ||
        bh_traffic_lines_feed(&l, s + cut2, size - cut2, on_line, &st) < 0)
        bh_fuzz_fail("the framer ran out of memory");
    bh_traffic_lines_finish(&l, on_line, &st);
    bh_traffic_lines_free(&l);
    return 0;
}
