/*
 * A streaming RFC 4180 reader: comma separator, '"' quoting with '""' as an
 * escaped quote, rows ended by CRLF or LF, quoted fields that hold commas,
 * quotes and line breaks. Bytes go in in chunks of any size (one at a time
 * works); the reader stops after each complete row so the caller can take it,
 * and the rows are the same whatever the chunking.
 *
 * Nothing here knows the text encoding: the structure bytes (quote, comma,
 * CR, LF) are ASCII and every field is kept as the bytes that were given.
 *
 * A row is bounded: past max_row input bytes its fields are no longer kept
 * (BH_MARKET_CSV_TOO_LARGE) but the row is still followed to its end, so a quote that
 * never closes costs max_row bytes of memory, not the rest of the file.
 * Departures from RFC 4180 are flagged on the row, never fatal: a quote inside
 * an unquoted field or text after a closing quote (BH_MARKET_CSV_BAD_QUOTE), a quoted
 * field still open at the end of the input (BH_MARKET_CSV_UNCLOSED).
 */
#ifndef BH_MARKET_CSV_H
#define BH_MARKET_CSV_H

#include <stddef.h>
#include <stdint.h>

#define BH_MARKET_CSV_TOO_LARGE 0x1u
#define BH_MARKET_CSV_BAD_QUOTE 0x2u
#define BH_MARKET_CSV_UNCLOSED  0x4u

struct bh_market_csv {
    size_t max_row;
    char *buf; /* the current row's field bytes, unescaped, back to back */
    size_t len, cap;
    size_t *ends; /* where each field ends in buf */
    size_t nfields, ecap;
    size_t row_bytes;   /* input bytes of the current row so far */
    uint64_t row_lines; /* line feeds consumed by the current row */
    unsigned flags;     /* BH_MARKET_CSV_* of the current row */
    int state;
    int quoted;   /* the current field began with a quote */
    int complete; /* a row is ready: take it, then bh_market_csv_next_row() */
    int blank;    /* the complete row was an empty line */
};

/* 0 or -ENOMEM. MAX_ROW: input bytes of one row that are kept. */
int bh_market_csv_init(struct bh_market_csv *p, size_t max_row);
void bh_market_csv_free(struct bh_market_csv *p);

/*
 * Consume bytes of S up to the end of the next row; returns how many were
 * consumed. When that ends a row, p->complete is set and nothing more is
 * consumed until bh_market_csv_next_row(). A failed allocation is treated like a row
 * over max_row (BH_MARKET_CSV_TOO_LARGE).
 */
size_t bh_market_csv_feed(struct bh_market_csv *p, const char *s, size_t n);

/* End of input: completes a last row that had no line end. Returns p->complete. */
int bh_market_csv_finish(struct bh_market_csv *p);

/* Whether any byte of a row has been seen since the last row ended. */
int bh_market_csv_in_row(const struct bh_market_csv *p);

/* Forget the complete row and start the next one. */
void bh_market_csv_next_row(struct bh_market_csv *p);

/* Field I of the complete row (I < p->nfields); its length in *LEN. */
const char *bh_market_csv_field(const struct bh_market_csv *p, size_t i, size_t *len);

#endif
