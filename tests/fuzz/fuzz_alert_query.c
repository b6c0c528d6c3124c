/*
 * The query string of GET /alerts and GET /alerts/stream on the admin API
 * (bh_alert_query_parse, adapters/alerts/alerts_api.h): percent-decoding,
 * the filters, since (RFC 3339 or epoch ms) and limit.
 *
 * Oracle (besides no crash, leak or undefined behaviour): a refusal names the
 * parameter at fault, in valid UTF-8, with a reason in valid UTF-8; an answer
 * has filters of valid UTF-8 without NUL, not empty, and a limit from 1 to
 * 10000; written again with every byte percent-encoded, the query parses to
 * the same answer.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/alerts/alerts_api.h"
#include "fuzz_common.h"
#include "utf8.h"

static void
check_filter(const char *what, const char *v)
{
    if (v == NULL)
        return;
    if (v[0] == '\0')
        bh_fuzz_fail("%s: an empty filter taken", what);
    bh_fuzz_check_utf8(what, v, strlen(v));
}

/* KEY=VALUE with every byte of VALUE percent-encoded. */
static size_t
put_param(char *out, const char *key, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = (size_t)sprintf(out, "%s=", key);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        out[w++] = '%';
        out[w++] = hex[*p >> 4];
        out[w++] = hex[*p & 15];
    }
    out[w++] = '&';
    return w;
}

static int
same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bh_alert_query q, again;
    char key[256], why[300];
    if (bh_alert_query_parse((const char *)data, size, &q, key, sizeof(key), why, sizeof(why)) <
        0) {
        bh_fuzz_check_utf8("the key of a refusal", key, strlen(key));
        bh_fuzz_check_why("a refusal", why);
        return 0;
    }
    check_filter("block", q.block);
    check_filter("unit", q.unit);
    check_filter("name", q.name);
    if (q.limit < 1 || q.limit > BH_ALERT_QUERY_LIMIT_MAX)
        bh_fuzz_fail("limit %" PRId64 " taken", q.limit);
    size_t cap = 3 * size + 200;
    char *text = malloc(cap);
    if (text == NULL)
        abort();
    size_t w = 0;
    if (q.block != NULL)
        w += put_param(text + w, "block", q.block);
    if (q.unit != NULL)
        w += put_param(text + w, "unit", q.unit);
    if (q.name != NULL)
        w += put_param(text + w, "name", q.name);
    if (q.has_since)
        w += (size_t)sprintf(text + w, "since=%" PRId64 "&", q.since);
    w += (size_t)sprintf(text + w, "limit=%" PRId64, q.limit);
    if (q.has_since && q.since < 0)
        goto out; /* an RFC 3339 time before 1970: its ms are not a since of its own */
    if (bh_alert_query_parse(text, w, &again, key, sizeof(key), why, sizeof(why)) < 0)
        bh_fuzz_fail("the query written again is refused (%s: %s): %.*s", key, why, (int)w, text);
    if (!same(q.block, again.block) || !same(q.unit, again.unit) || !same(q.name, again.name) ||
        q.has_since != again.has_since || (q.has_since && q.since != again.since) ||
        q.limit != again.limit)
        bh_fuzz_fail("the query written again parses otherwise: %.*s", (int)w, text);
    bh_alert_query_free(&again);
out:
    free(text);
    bh_alert_query_free(&q);
    return 0;
}
