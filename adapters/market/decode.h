/*
 * Text decoding to UTF-8 with iconv, one chunk at a time.
 *
 * glibc's iconv stops on bytes that are not valid in the source encoding with
 * EILSEQ and the input left on them, and on a sequence cut by the end of the
 * buffer with EINVAL. The decoder keeps such a cut sequence (at most a few
 * bytes) and completes it with the start of the next chunk, and it skips
 * invalid bytes one at a time, reporting each, so that decoding goes on right
 * after them (//IGNORE is not used: glibc then drops valid bytes too).
 *
 * From UTF-8 the text is checked without iconv: glibc's UTF-8 decoder takes
 * 5- and 6-byte forms and values past U+10FFFF, which are not UTF-8 (RFC
 * 3629) and would reach the Avro strings. Only what hub/utf8.h calls valid
 * passes; every other byte is reported and skipped the same way.
 *
 * From GB18030 and GBK (CP936) the common characters do not go through iconv
 * either: at the first open of such a decoder in the process, iconv is asked
 * once for every two-byte sequence (lead 0x81-0xFE, trail 0x40-0x7E or
 * 0x80-0xFE) and its answers are kept in a table shared by all decoders of
 * that encoding. ASCII and the sequences of the table are decoded in a tight
 * loop; everything else (four-byte sequences, sequences iconv refuses, a
 * sequence cut by the end of the input) goes through iconv as before, so the
 * output and the invalid bytes reported are those of iconv alone.
 */
#ifndef BH_MARKET_DECODE_H
#define BH_MARKET_DECODE_H

#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>

struct bh_market_gb_table;

struct bh_market_decoder {
    iconv_t cd;
    /* two-byte sequences as iconv decodes them; NULL: all through iconv (the tests set it so) */
    const struct bh_market_gb_table *table;
    char carry[8]; /* the start of a sequence cut at the end of the last chunk */
    size_t ncarry;
    bool utf8; /* from UTF-8: checked by blockhub's own rules, not iconv's */
};

/*
 * From ENCODING (an iconv name: GB18030, UTF-8...) to UTF-8. 0, -EINVAL (iconv
 * does not know it) or -ENOTSUP (not ASCII-compatible, such as UTF-16: the
 * ASCII bytes must stand for themselves).
 */
int bh_market_decoder_open(struct bh_market_decoder *d, const char *encoding);
void bh_market_decoder_close(struct bh_market_decoder *d);
/* Forget any carried bytes (before reading from another position). */
void bh_market_decoder_reset(struct bh_market_decoder *d);

#define BH_DECODE_INVALID 1

/*
 * Decode from *IN (*INLEN bytes) into *OUT (*OUTLEFT bytes of room; 4 bytes
 * per input byte plus 16 always suffice), advancing all four. Returns:
 *   0                  everything was consumed; a cut sequence at the end is
 *                      carried to the next call, unless FINAL;
 *   BH_DECODE_INVALID  bytes that are not valid were skipped (*in is just
 *                      after them); call again for the rest;
 *   -E2BIG             *OUT is full.
 */
int bh_market_decoder_run(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out,
                          size_t *outleft, bool final);

#endif
