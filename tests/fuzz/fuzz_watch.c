/*
 * A watch as the join takes it from outside: the body of POST /watches and
 * the value of a record of join.watches_topic (any producer may write there),
 * a JSON object. It is parsed (bh_jwatch_conf_parse) and compiled for the
 * departments of the example config (bh_jwatches_new); a compiled watch is
 * then matched against an event made of its own values, and the alert it
 * fires is encoded as the join encodes it.
 *
 * Oracle (besides no crash, leak or undefined behaviour): a refusal names a
 * key or gives a reason of valid UTF-8; a watch that compiles matches an
 * event of its department (or any), at its since, with its value (field) or
 * in its first block (blocks), and not one a millisecond before since; the
 * alert decodes with avro-c as blockhub.alert.BlockAlert with valid UTF-8
 * strings whenever the watch's strings are valid UTF-8 (JSON text is).
 *
 * The same bytes are also read back as records of join.rules_topic (what the
 * rules remembered of a block: bh_jrules_restore): as a block's record ("R2",
 * block C) and as states of the first format ("R1", block B) of a pair rule
 * and a spike rule; an event is then applied to each block and the states
 * written again, which must read back; an alert it fires has events with
 * their department and id.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "join_rule.h"
#include "join_watch.h"
#include "timefmt.h"
#include "utf8.h"

#define NDEPTS 3

static const char *const depts[NDEPTS] = {"market", "traffic", "fire"};

struct hits {
    int n;
};

static int
fired(void *ctx, const struct bh_jwatch *x, const char *value, size_t len)
{
    struct hits *h = ctx;
    if (strcmp(x->name, "fuzz") != 0 || (len > 0 && value == NULL))
        bh_fuzz_fail("a match of another watch");
    h->n++;
    return 0;
}

static int
rule_fired(void *ctx, const char *name, const struct bh_jalert_event *ev, size_t nev,
           const char *detail, size_t dlen)
{
    (void)ctx;
    if (nev == 0 || nev > BH_JRULE_KEEP || !bh_utf8_valid(detail, dlen))
        bh_fuzz_fail("rule %s fired %zu events", name, nev);
    for (size_t i = 0; i < nev; i++)
        if (ev[i].dept == NULL || ev[i].id == NULL)
            bh_fuzz_fail("rule %s: an event without its department or id", name);
    return 0;
}

static int
rule_state(void *ctx, const char *key, size_t klen, const char *value, size_t vlen)
{
    /* what is written reads back, and is written again the same */
    struct bh_jrules *r = ctx;
    if (vlen < 2 || memcmp(value, "R2", 2) != 0)
        bh_fuzz_fail("a rule state without its tag");
    if (bh_jrules_restore(r, 0, key, klen, value, vlen) != 0)
        bh_fuzz_fail("a rule state written does not read back");
    return 0;
}

/* The input as what a pair rule and a spike rule remembered of a block, then an event. */
static void
rules(const uint8_t *data, size_t size)
{
    static struct bh_join_rule_conf pair = {.a_department = "market",
                                            .b_department = "market",
                                            .within = 3600000},
                                    spike = {
                                        .department = "market", .more_than = 2, .within = 3600000};
    static struct bh_variant v[2] = {{.name = "p", .type = "pair", .settings = &pair},
                                     {.name = "s", .type = "spike", .settings = &spike}};
    struct bh_variant_list l = {v, 2};
    struct bh_jrules *r = NULL;
    char err[300];
    if (bh_jrules_new(&r, &l, depts, NDEPTS, 1, err, sizeof(err)) < 0)
        bh_fuzz_fail("rules: %s", err);
    static const char kp[] = "B\x1fp", ks[] = "B\x1fs";
    bh_jrules_restore(r, 0, kp, sizeof(kp) - 1, (const char *)data, size);
    bh_jrules_restore(r, 0, ks, sizeof(ks) - 1, (const char *)data, size);
    bh_jrules_restore(r, 0, "C", 1, (const char *)data, size);
    bh_jrules_apply(r, 0, "B", 1, 0, "E-9", 3, "t", 1, 1795738500000, rule_fired, NULL);
    bh_jrules_apply(r, 0, "C", 1, 0, "E-8", 3, "t", 1, 1795738500000, rule_fired, NULL);
    bh_jrules_take_dirty(r, 0, rule_state, r);
    bh_jrules_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rules(data, size);
    json_t *o = json_loadb((const char *)data, size, 0, NULL);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    struct bh_join_watch_conf c;
    const char *key = NULL;
    char why[400] = "";
    if (bh_jwatch_conf_parse(o, &c, "2026-12-07T00:00:00Z", &key, why, sizeof(why)) < 0) {
        if (key == NULL)
            bh_fuzz_fail("a refusal without a key");
        bh_fuzz_check_why("a refusal", why);
        json_decref(o);
        return 0;
    }
    struct bh_variant v = {.name = "fuzz", .type = c.field ? "field" : "blocks", .settings = &c};
    struct bh_variant_list l = {&v, 1};
    struct bh_jwatches *w = NULL;
    if (bh_jwatches_new(&w, &l, depts, NDEPTS, why, sizeof(why)) < 0) {
        bh_fuzz_check_why("a watch refused", why);
        bh_jwatch_conf_free(&c);
        json_decref(o);
        return 0;
    }
    /* An event the watch must match: its department, its since, its value or first block. */
    int64_t since = 0;
    int off = 0;
    if (bh_parse_rfc3339(c.since, strlen(c.since), &since, &off) < 0)
        bh_fuzz_fail("since %s compiled but does not parse", c.since);
    size_t dept = 0;
    for (size_t d = 0; d < NDEPTS; d++)
        if (c.department != NULL && strcmp(c.department, depts[d]) == 0)
            dept = d;
    struct bh_jfields f;
    memset(&f, 0, sizeof(f));
    f.id = "E-1";
    f.id_len = 3;
    f.type = "t";
    f.type_len = 1;
    f.at = since;
    const char *block = c.blocks.n > 0 ? c.blocks.v[0] : "440303-017";
    if (c.field != NULL) {
        f.extra[0] = c.equals;
        f.extra_len[0] = strlen(c.equals);
    }
    struct hits hits = {0};
    int expired = 0;
    if (c.expires != NULL) {
        int64_t exp = 0;
        if (bh_parse_rfc3339(c.expires, strlen(c.expires), &exp, &off) < 0)
            bh_fuzz_fail("expires %s compiled but does not parse", c.expires);
        expired = exp <= since;
    }
    bh_jwatches_match(w, dept, block, strlen(block), &f, fired, &hits);
    if (hits.n != (expired ? 0 : 1))
        bh_fuzz_fail("a watch fired %d times on its own event (expired %d)", hits.n, expired);
    f.at = since - 1;
    hits.n = 0;
    if (since > INT64_MIN)
        bh_jwatches_match(w, dept, block, strlen(block), &f, fired, &hits);
    if (hits.n != 0)
        bh_fuzz_fail("a watch fired on an event before its since");
    /* The alert, as the join encodes it. */
    const struct bh_schema *as = bh_fuzz_schema("blockhub.alert.BlockAlert");
    struct bh_jalert_event ev = {depts[dept], f.id, f.id_len, f.type, f.type_len, since};
    const char *detail = c.field ? c.equals : block;
    struct bh_jalert a = {.block = block,
                          .block_len = strlen(block),
                          .block_name = NULL,
                          .unit = c.department,
                          .rule = 0,
                          .name = "fuzz",
                          .detail = detail,
                          .detail_len = strlen(detail),
                          .events = &ev,
                          .nevents = 1,
                          .detected_at = since};
    struct bh_jbuf b = {0};
    bh_jbuf_header(&b, as->fingerprint);
    bh_jalert_encode(&b, &a);
    if (!b.oom && bh_utf8_valid(block, strlen(block)) && bh_utf8_valid(detail, strlen(detail)) &&
        (c.department == NULL || bh_utf8_valid(c.department, strlen(c.department))))
        bh_fuzz_check_record("an alert", b.p, b.len, as, NULL);
    bh_jbuf_free(&b);
    bh_jwatches_free(w);
    bh_jwatch_conf_free(&c);
    json_decref(o);
    return 0;
}
