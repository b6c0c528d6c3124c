/*
 * Line framing for a byte stream: "\n" or "\r\n" ends a line.
 *
 * Bytes are fed as they arrive, in chunks of any size. A line that lies whole
 * inside a chunk is handed over in place (no copy); only a line split across
 * chunks is gathered in the framer's own buffer. That buffer never holds more
 * than max(max_line + 1, keep) bytes: of a line longer than max_line only the
 * first KEEP bytes are kept (for its dead letter) and the rest is counted and
 * dropped as it comes, so a line of any length costs bounded memory.
 *
 * Blank lines (nothing, or only spaces and tabs) are skipped, but counted in
 * the line numbers, which are 1-based within the stream.
 */
#ifndef BH_TRAFFIC_LINES_H
#define BH_TRAFFIC_LINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bh_traffic_line {
    const char *data;  /* the line without its terminator; valid during the callback */
    size_t len;        /* bytes at DATA: all of the line, or for a too long one its */
                       /* first min(full_len, keep) bytes at least */
    uint64_t full_len; /* the line's length */
    int64_t number;    /* 1-based line number in the stream */
    bool too_long;     /* full_len > max_line */
    bool unterminated; /* the stream ended before the line's newline */
};

typedef void (*bh_traffic_lines_cb)(void *arg, const struct bh_traffic_line *line);

struct bh_traffic_lines {
    char *buf; /* the part of the current line seen in earlier chunks */
    size_t len, cap;
    size_t max_line, keep, hold; /* hold = max(max_line + 1, keep) */
    uint64_t total;              /* the current line's length so far (len <= total) */
    char last;                   /* its last byte (to strip a "\r" that was not kept) */
    int64_t number;              /* lines ended so far */
};

void bh_traffic_lines_init(struct bh_traffic_lines *l, size_t max_line, size_t keep);
void bh_traffic_lines_free(struct bh_traffic_lines *l);

/*
 * Frame DATA[0..N): CB(ARG, line) for every line it completes. 0, or -ENOMEM
 * when the buffer for a split line cannot grow (the line is then reported as
 * too long, with what could be kept).
 */
int bh_traffic_lines_feed(struct bh_traffic_lines *l, const char *data, size_t n,
                          bh_traffic_lines_cb cb, void *arg);

/* The stream ended: the line it cut off, if any, goes to CB with .unterminated. */
void bh_traffic_lines_finish(struct bh_traffic_lines *l, bh_traffic_lines_cb cb, void *arg);

/* True when part of a line is waiting for its end. */
bool bh_traffic_lines_pending(const struct bh_traffic_lines *l);

#endif
