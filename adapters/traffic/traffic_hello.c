/*
 * The hello line (traffic_hello.h), read with the strict JSON scanner: the
 * line must be one JSON object, and its members are taken as they come.
 */
#include "traffic_hello.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"
#include "utf8.h"

static bool
value_is(const char *v, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - v) == n && memcmp(v, word, n) == 0;
}

/* A string member's value into DST (at most MAX bytes, no control characters). */
static int
take_string(struct bh_json_scan *s, struct bh_json_text *tmp, const char *key, char *dst,
            size_t max, size_t *len, char *why, size_t why_size)
{
    if (!bh_json_at(s, '"')) {
        snprintf(why, why_size, "hello: \"%s\" is not a string", key);
        return -1;
    }
    if (bh_json_string(s, tmp) < 0)
        return -2;
    if (tmp->len > max) {
        snprintf(why, why_size, "hello: \"%s\" is %zu bytes, more than %zu", key, tmp->len, max);
        return -1;
    }
    for (size_t i = 0; i < tmp->len; i++) {
        if ((unsigned char)tmp->data[i] < 0x20 || tmp->data[i] == 0x7f) {
            snprintf(why, why_size, "hello: \"%s\" holds a control character", key);
            return -1;
        }
    }
    memcpy(dst, tmp->data, tmp->len);
    dst[tmp->len] = '\0';
    if (len != NULL)
        *len = tmp->len;
    return 0;
}

enum bh_hello_kind
bh_traffic_hello_parse(const char *line, size_t len, struct bh_traffic_hello *h, char *why,
                       size_t why_size)
{
    char err[256];
    struct bh_json_scan s;
    struct bh_json_text tmp = {0};
    bool first = true, seen_hello = false, seen[4] = {false};
    enum bh_hello_kind kind = BH_HELLO_NOT;
    int rc;

    memset(h, 0, sizeof(*h));
    why[0] = '\0';
    /* Cheap refusal of the lines that are events: a hello names "hello". */
    if (len == 0 || memmem(line, len, "\"hello\"", 7) == NULL)
        return BH_HELLO_NOT;
    if (bh_utf8_valid(line, len) < 0)
        return BH_HELLO_NOT;
    bh_json_scan_init(&s, "hello", line, len, err, sizeof(err));
    bh_json_skip_space(&s);
    if (!bh_json_at(&s, '{'))
        goto out;
    /* Is it one object at all? Only then is it read member by member. */
    if (bh_json_check(&s) < 0)
        goto out;
    s.p = s.base;
    bh_json_skip_space(&s);
    while ((rc = bh_json_next_member(&s, &first)) == 1) {
        const char *v = s.p;
        int k = bh_json_key_is(&s, "hello")     ? 0
                : bh_json_key_is(&s, "gateway") ? 1
                : bh_json_key_is(&s, "token")   ? 2
                : bh_json_key_is(&s, "ack")     ? 3
                                                : -1;
        if (k >= 0 && seen[k]) {
            snprintf(why, why_size, "hello: \"%s\" is given twice", s.key.data);
            kind = BH_HELLO_BAD;
            goto out;
        }
        if (k >= 0)
            seen[k] = true;
        if (k == 1 || k == 2) {
            bool gw = k == 1;
            int r = take_string(&s, &tmp, gw ? "gateway" : "token", gw ? h->gateway : h->token,
                                gw ? BH_HELLO_GATEWAY_MAX : BH_HELLO_TOKEN_MAX,
                                gw ? NULL : &h->token_len, why, why_size);
            if (r < 0) {
                if (r == -2)
                    snprintf(why, why_size, "hello: %s", err);
                kind = BH_HELLO_BAD;
                seen_hello = true; /* reported as a bad hello only if it is one */
                goto check_hello;
            }
            h->has_token |= !gw;
            continue;
        }
        if (bh_json_value(&s, false) < 0)
            goto out; /* checked above: does not happen */
        if (k == 0) {
            seen_hello = true;
            h->version = value_is(v, s.p, "1") ? 1 : -1;
        } else if (k == 3) {
            if (value_is(v, s.p, "true")) {
                h->ack = true;
            } else if (!value_is(v, s.p, "false")) {
                snprintf(why, why_size, "hello: \"ack\" is neither true nor false");
                kind = BH_HELLO_BAD;
                seen_hello = true;
                goto check_hello;
            }
        }
    }
    if (rc < 0)
        goto out;
    if (!seen_hello)
        goto out;
    if (h->version != 1) {
        snprintf(why, why_size, "hello: the version is not 1 (the only one this blockhub speaks)");
        kind = BH_HELLO_BAD;
        goto out;
    }
    kind = BH_HELLO_OK;
    goto out;
check_hello:
    /* A bad member: a hello only if "hello" is a member at all. */
    if (!seen[0]) {
        s.p = s.base;
        first = true;
        bh_json_skip_space(&s);
        bool named = false;
        while (bh_json_next_member(&s, &first) == 1) {
            named |= bh_json_key_is(&s, "hello");
            if (bh_json_value(&s, false) < 0)
                break;
        }
        if (!named) {
            kind = BH_HELLO_NOT;
            why[0] = '\0';
        }
    }
out:
    free(tmp.data);
    bh_json_scan_free(&s);
    if (kind != BH_HELLO_OK)
        memset(h->token, 0, sizeof(h->token));
    return kind;
}

bool
bh_traffic_token_ok(const char *token, size_t len, char *const *tokens, size_t n)
{
    bool ok = false;
    for (size_t t = 0; t < n; t++) {
        const char *want = tokens[t];
        size_t wlen = strlen(want);
        unsigned char diff = wlen != len || len == 0;
        for (size_t k = 0; k < len; k++)
            diff |= (unsigned char)(token[k] ^ want[k < wlen ? k : 0]);
        ok |= diff == 0;
    }
    return ok;
}
