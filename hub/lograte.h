/*
 * A limiter of repeated log lines.
 *
 * A line is written at most once per window for the same key (level, component
 * and text, or a key the caller derives from the text, such as the text without
 * a timing detail that changes from copy to copy). Copies that arrive within the window
 * are counted, not written; the count is reported once, either on the next
 * copy written after the window ("TEXT (repeated K times)") or, if none comes,
 * by bh_lograte_flush() once the window is over. Every line written so carries
 * the number of copies left out since that key was last written.
 *
 * At most BH_LOGRATE_SLOTS keys are followed at once; a new key while every
 * slot is in use is written as it comes (never lost, only not limited).
 * Keys and texts longer than BH_LOGRATE_TEXT bytes are compared and kept cut
 * to that length.
 *
 * Time is the caller's (milliseconds of a monotonic clock): the unit is pure,
 * not thread-safe; one limiter per thread or a lock around it.
 */
#ifndef BH_LOGRATE_H
#define BH_LOGRATE_H

#include <stddef.h>
#include <stdint.h>

#define BH_LOGRATE_SLOTS 64
#define BH_LOGRATE_TEXT  512
#define BH_LOGRATE_COMP  32

struct bh_lograte_slot {
    int used;
    int level;
    char component[BH_LOGRATE_COMP];
    uint64_t since_ms;     /* when the key was last written */
    unsigned long dropped; /* copies not written since */
    char key[BH_LOGRATE_TEXT];
    char text[BH_LOGRATE_TEXT]; /* the latest copy, for the summary */
};

struct bh_lograte {
    uint64_t window_ms;
    struct bh_lograte_slot slots[BH_LOGRATE_SLOTS];
};

void bh_lograte_init(struct bh_lograte *r, uint64_t window_ms);

/*
 * One line of LEVEL, COMPONENT and TEXT at NOW_MS; KEY (NULL: TEXT) says which
 * lines of a level and component are copies of each other. Returns 1 if the line is to be written
 * now, with *DROPPED the copies left out since the key was last written (0: none; write " (repeated
 * K times)" after the text when K > 0); 0 if it is left out.
 */
int bh_lograte_check(struct bh_lograte *r, int level, const char *component, const char *key,
                     const char *text, uint64_t now_ms, unsigned long *dropped);

typedef void (*bh_lograte_emit)(int level, const char *component, const char *text,
                                unsigned long dropped, void *arg);

/*
 * Reports every key whose window is over with copies left out: EMIT gets the
 * latest copy's text and the count, and the key's window starts again at
 * NOW_MS (so a storm yields one summary per window). Keys whose window is over
 * with nothing left out are forgotten. Returns the milliseconds until the next
 * summary may be due (a key with copies left out), or -1 if none is pending.
 */
int64_t bh_lograte_flush(struct bh_lograte *r, uint64_t now_ms, bh_lograte_emit emit, void *arg);

/* Reports every key with copies left out now, window over or not, and forgets all keys. */
void bh_lograte_flush_all(struct bh_lograte *r, bh_lograte_emit emit, void *arg);

/*
 * librdkafka's reports, as blockhub logs them. What the client retries by
 * itself (a broker refusing or dropping connections, request timeouts, every
 * broker down for a while) is a warning; an error is what needs an operator:
 * a fatal error, failed authentication or TLS, missing authorization, a
 * configuration the cluster refuses.
 */

/* The level of an error the client reports to its error callback (ERR: rd_kafka_resp_err_t). */
int bh_lograte_kafka_error_level(int err);

/*
 * The level of one of the client's own log lines (SYSLOG_LEVEL 0-7, FAC its
 * facility). Its "FAIL" lines are debug: each is also reported to the error
 * callback, with the error code that says what it is.
 */
int bh_lograte_kafka_log_level(int syslog_level, const char *fac);

/*
 * The rate-limiting key of a client line TEXT, into KEY (SIZE bytes): the
 * text without its trailing timing detail, " (after 12ms in state CONNECT,
 * 3 identical error(s) suppressed)" or " (after 60012ms, timeout #0)", which
 * differs between copies of the same report.
 */
void bh_lograte_kafka_key(const char *text, char *key, size_t size);

#endif
