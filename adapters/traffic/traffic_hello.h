/*
 * The hello line a gateway may send first on a connection (docs/feeds.md,
 * section 4.4):
 *
 *     {"hello": 1, "gateway": "jj-gw-03", "token": "...", "ack": true}
 *
 * "hello" is the protocol version (1, the only one); "gateway" names the
 * sender in logs (optional, at most BH_HELLO_GATEWAY_MAX bytes); "token" is
 * one of the adapter's tokens where auth is token; "ack": true asks for
 * acknowledgement lines. Other members are ignored, so later versions can add
 * some. A line is a hello when it is a JSON object with a "hello" member;
 * any other line is not (it is an event, or a line to dead-letter).
 */
#ifndef BH_TRAFFIC_HELLO_H
#define BH_TRAFFIC_HELLO_H

#include <stdbool.h>
#include <stddef.h>

#define BH_HELLO_GATEWAY_MAX 128
#define BH_HELLO_TOKEN_MAX   512

enum bh_hello_kind {
    BH_HELLO_NOT, /* not a hello line */
    BH_HELLO_OK,  /* a hello, in *H */
    BH_HELLO_BAD, /* a hello that breaks the rules: why in WHY */
};

struct bh_traffic_hello {
    int version;
    bool ack;
    bool has_token;
    char
        gateway[BH_HELLO_GATEWAY_MAX + 1]; /* valid UTF-8, no control characters; "" if not given */
    char token[BH_HELLO_TOKEN_MAX + 1];
    size_t token_len;
};

/*
 * Whether LINE[0..LEN) is a hello. WHY (valid UTF-8) says what is wrong with a
 * BH_HELLO_BAD one.
 */
enum bh_hello_kind bh_traffic_hello_parse(const char *line, size_t len, struct bh_traffic_hello *h,
                                          char *why, size_t why_size);

/* Whether TOKEN[0..LEN) is one of TOKENS[0..N), in time that does not depend on where it differs.
 */
bool bh_traffic_token_ok(const char *token, size_t len, char *const *tokens, size_t n);

#endif
