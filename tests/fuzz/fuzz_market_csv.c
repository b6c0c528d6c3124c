/*
 * A market spool file, from bytes to records: split into reads and line
 * segments as the adapter reads a file, decoded to UTF-8 (bh_market_decoder), cut
 * into RFC 4180 rows (bh_market_csv), the header mapped by column name and every
 * data row checked by the rules of docs/feeds.md, section 5.3 (USCC, the
 * closed lists, the fine, the coordinates, the time), resolved to a block and
 * written by the market writer.
 *
 * The adapter's own row rules are internal to market.c; this target applies
 * the same rules through the same helpers (uscc.h, decimal.h, fields.h,
 * event.h).
 *
 * The input starts with four control bytes:
 *   [0] bits 0-1: the encoding (GB18030, GB18030, UTF-8, GBK)
 *       bits 2-3: max_row (256, 1024, 64 KiB, 1 MiB)
 *       bit 4:    a decoder output buffer of 8 to 39 bytes instead of ample room
 *   [1..3] the sizes of the reads, in turn (1 to 256 bytes each)
 * and the file follows.
 *
 * Oracle (besides no crash, leak or undefined behaviour):
 *   - everything the decoder writes is valid UTF-8, and the same whether the
 *     file comes in the chosen reads or in one piece;
 *   - the rows are the same whatever the reads (csv.h's promise);
 *   - every data row is a reject with a reason, unresolved, or a
 *     MarketEvent record that decodes with avro-c, holds only valid UTF-8
 *     strings and carries the row's record id;
 *   - a coordinate reads as strtod reads it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/market/csv.h"
#include "adapters/market/decimal.h"
#include "adapters/market/decode.h"
#include "adapters/market/event.h"
#include "adapters/market/fields.h"
#include "adapters/market/uscc.h"
#include "fuzz_common.h"
#include "utf8.h"

#define FINE_DIGITS 12 /* decimal(14, 2) */

enum col { C_ID, C_USCC, C_NAME, C_TYPE, C_OUTCOME, C_FINE, C_ADDR, C_GRID, C_LON, C_LAT, C_TIME };
#define NCOL 11

static const char *const col_names[NCOL] = {
    "记录编号", "统一社会信用代码", "主体名称", "事项类型", "处理结果", "罚没金额",
    "经营地址", "网格编码",         "经度",     "纬度",     "发生时间"};
static const int col_required[NCOL] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1};

static const char *const event_types[] = {
    "日常检查",           "专项检查",       "行政处罚", "许可变更",
    "电动自行车销售登记", "摩托车销售登记", "投诉举报", NULL};
static const char *const outcomes[] = {"合格",   "责令整改", "罚款", "吊销许可",
                                       "已登记", "已受理",   NULL};

static const char *const encodings[4] = {"GB18030", "GB18030", "UTF-8", "GBK"};
static const size_t max_rows[4] = {256, 1024, 64 * 1024, 1024 * 1024};

static const struct bh_schema *schema;
static struct bh_market_writer *writer;
static struct bh_market_decoder decoders[4][2];

/* A growable byte buffer. */
struct buf {
    char *p;
    size_t len, cap;
};

static void
put(struct buf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            bh_fuzz_fail("out of memory");
        b->p = p;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void
put_size(struct buf *b, uint64_t v)
{
    put(b, &v, sizeof(v));
}

/* One pass over the file: decoding, rows, and (for the adapter's pass) the records. */
struct pass {
    struct bh_market_decoder *dec;
    struct bh_market_csv csv;
    struct buf text; /* everything decoded */
    struct buf rows; /* every row, as a trace */
    size_t invalid;  /* invalid stretches the decoder reported */
    int at_start;
    int records; /* map rows to records (the adapter's pass) */
    int header_done, header_bad, bad_encoding;
    int col[NCOL];
    size_t nheader;
    int64_t row, lines;
    int stepped_around; /* the decoder wrote invalid UTF-8, a known bug (BH_FUZZ_KNOWN) */
};

static int known_utf8_bug;

static void
free_state(void)
{
    bh_market_writer_free(writer);
    for (int e = 0; e < 4; e++)
        for (int k = 0; k < 2; k++)
            bh_market_decoder_close(&decoders[e][k]);
}

static void
init(void)
{
    if (schema != NULL)
        return;
    char err[512];
    schema = bh_fuzz_schema("blockhub.market.MarketEvent");
    bh_fuzz_blocks();
    bh_fuzz_encoder();
    known_utf8_bug = bh_fuzz_known("market-decoder-utf8");
    atexit(free_state);
    if (bh_market_writer_new(&writer, bh_fuzz_schemas(), schema, bh_fuzz_encoder(), err,
                             sizeof(err)) < 0)
        bh_fuzz_fail("the market writer refuses the schema: %s", err);
    for (int e = 0; e < 4; e++)
        for (int k = 0; k < 2; k++)
            if (bh_market_decoder_open(&decoders[e][k], encodings[e]) < 0)
                bh_fuzz_fail("iconv does not know %s", encodings[e]);
}

static int
in_list(const char *s, size_t len, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strlen(*list) == len && memcmp(s, *list, len) == 0)
            return 1;
    return 0;
}

static void
reject(struct pass *p, enum bh_dlq_reason r, const char *why)
{
    (void)p;
    bh_fuzz_check_reject("a market row's reason", r, why);
}

/* The header row: column name to field index, by the adapter's rules. */
static void
header(struct pass *p)
{
    const struct bh_market_csv *c = &p->csv;
    p->header_done = 1;
    p->header_bad = 1;
    if (p->bad_encoding) {
        reject(p, BH_DLQ_INVALID_HEADER, "the header does not decode");
        return;
    }
    if ((c->flags & (BH_MARKET_CSV_TOO_LARGE | BH_MARKET_CSV_UNCLOSED | BH_MARKET_CSV_BAD_QUOTE)) ||
        c->blank) {
        reject(p, BH_DLQ_INVALID_HEADER, "the header row is empty or not RFC 4180");
        return;
    }
    for (int k = 0; k < NCOL; k++)
        p->col[k] = -1;
    p->nheader = c->nfields;
    for (size_t i = 0; i < c->nfields; i++) {
        size_t len;
        const char *s = bh_market_csv_field(c, i, &len);
        while (len > 0 && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        for (int k = 0; k < NCOL; k++) {
            if (strlen(col_names[k]) != len || memcmp(col_names[k], s, len) != 0)
                continue;
            if (p->col[k] >= 0) {
                reject(p, BH_DLQ_INVALID_HEADER, "a column appears twice");
                return;
            }
            p->col[k] = (int)i;
        }
    }
    for (int k = 0; k < NCOL; k++) {
        if (col_required[k] && p->col[k] < 0) {
            reject(p, BH_DLQ_INVALID_HEADER, "a required column is missing");
            return;
        }
    }
    if ((p->col[C_LON] < 0) != (p->col[C_LAT] < 0)) {
        reject(p, BH_DLQ_INVALID_HEADER, "经度 and 纬度 come together");
        return;
    }
    p->header_bad = 0;
}

/* A coordinate as bh_market_parse_coord reads it is the double strtod reads. */
static void
check_coord(const char *s, size_t len, double v)
{
    char text[64];
    if (len >= sizeof(text))
        bh_fuzz_fail("a coordinate of %zu characters was read", len);
    memcpy(text, s, len);
    text[len] = '\0';
    double want = strtod(text, NULL);
    if (memcmp(&want, &v, sizeof(v)) != 0)
        bh_fuzz_fail("coordinate '%s' read as %.17g, strtod reads %.17g", text, v, want);
}

static void
data_row(struct pass *p, int64_t line)
{
    const struct bh_market_csv *c = &p->csv;
    const char *v[NCOL] = {0};
    size_t len[NCOL] = {0};
    if (p->bad_encoding) {
        reject(p, BH_DLQ_INVALID_ENCODING, "bytes that do not decode");
        return;
    }
    if (c->flags & BH_MARKET_CSV_TOO_LARGE) {
        reject(p, BH_DLQ_TOO_LARGE, "the row is longer than max_row_bytes");
        return;
    }
    if (c->flags & (BH_MARKET_CSV_UNCLOSED | BH_MARKET_CSV_BAD_QUOTE) || c->nfields != p->nheader) {
        reject(p, BH_DLQ_INVALID_CSV, "not RFC 4180, or not as many fields as the header");
        return;
    }
    for (int k = 0; k < NCOL; k++) {
        if (p->col[k] >= 0)
            v[k] = bh_market_csv_field(c, (size_t)p->col[k], &len[k]);
        if (len[k] == 0)
            v[k] = NULL;
        if (col_required[k] && v[k] == NULL) {
            reject(p, BH_DLQ_MISSING_FIELD, "a required field is empty");
            return;
        }
    }
    char expected;
    int64_t fen = 0, at;
    double lon = 0, lat = 0;
    int has_point = 0;
    if (bh_market_uscc_check(v[C_USCC], len[C_USCC], &expected) < 0 ||
        !in_list(v[C_TYPE], len[C_TYPE], event_types) ||
        !in_list(v[C_OUTCOME], len[C_OUTCOME], outcomes) ||
        (v[C_FINE] != NULL &&
         bh_market_decimal_parse_fen(v[C_FINE], len[C_FINE], FINE_DIGITS, &fen) < 0)) {
        reject(p, BH_DLQ_INVALID_FIELD, "a field breaks its rule");
        return;
    }
    if (v[C_LON] != NULL || v[C_LAT] != NULL) {
        if (v[C_LON] == NULL || v[C_LAT] == NULL ||
            bh_market_parse_coord(v[C_LON], len[C_LON], 180, &lon) < 0 ||
            bh_market_parse_coord(v[C_LAT], len[C_LAT], 90, &lat) < 0) {
            reject(p, BH_DLQ_INVALID_FIELD, "not a longitude/latitude pair");
            return;
        }
        check_coord(v[C_LON], len[C_LON], lon);
        check_coord(v[C_LAT], len[C_LAT], lat);
        has_point = 1;
    }
    if (bh_market_parse_time(v[C_TIME], len[C_TIME], &at) < 0) {
        reject(p, BH_DLQ_INVALID_FIELD, "not a time of either layout");
        return;
    }
    const struct bh_block *blk =
        bh_blockmap_resolve(bh_fuzz_blocks(), v[C_GRID], len[C_GRID], has_point, lon, lat);
    if (blk == NULL)
        return; /* unresolved_block */
    static const char file[] = "scjg_20261127_0800.csv";
    const struct bh_market_event ev = {
        .record_id = {v[C_ID], len[C_ID]},
        .block_id = {blk->id, strlen(blk->id)},
        .uscc = {v[C_USCC], len[C_USCC]},
        .business_name = {v[C_NAME], len[C_NAME]},
        .event_type = {v[C_TYPE], len[C_TYPE]},
        .outcome = {v[C_OUTCOME], len[C_OUTCOME]},
        .has_fine = v[C_FINE] != NULL,
        .fine_fen = fen,
        .address = {v[C_ADDR], len[C_ADDR]},
        .grid_code = {v[C_GRID], len[C_GRID]},
        .has_location = has_point,
        .lon = lon,
        .lat = lat,
        .occurred_at = at,
        .source_file = {file, sizeof(file) - 1},
        .source_row = p->row,
        .source_line = line,
    };
    const void *data;
    size_t n;
    if (bh_market_writer_encode(writer, &ev, &data, &n) < 0)
        bh_fuzz_fail("the market writer failed");
    bh_fuzz_emit(data, n);
    avro_value_t rec;
    bh_fuzz_check_record("MarketEvent", data, n, schema, &rec);
    size_t idlen = 0;
    const char *id = bh_fuzz_get_string(&rec, "record_id", &idlen);
    if (id == NULL || idlen != len[C_ID] || memcmp(id, v[C_ID], idlen) != 0)
        bh_fuzz_fail("the record's record_id is not the row's");
    avro_value_decref(&rec);
}

/* A complete row: into the trace, and through the rules in the adapter's pass. */
static void
row_done(struct pass *p)
{
    struct bh_market_csv *c = &p->csv;
    put_size(&p->rows, c->flags);
    put_size(&p->rows, (uint64_t)c->blank);
    put_size(&p->rows, c->row_lines);
    if (!(c->flags & BH_MARKET_CSV_TOO_LARGE)) { /* a too long row keeps no fields */
        put_size(&p->rows, c->nfields);
        for (size_t i = 0; i < c->nfields; i++) {
            size_t len;
            const char *s = bh_market_csv_field(c, i, &len);
            put_size(&p->rows, len);
            put(&p->rows, s, len);
        }
    }
    int64_t line = p->lines + 1;
    p->lines += (int64_t)c->row_lines;
    if (p->records && !p->header_done) {
        header(p);
    } else if (p->records && !p->header_bad && (!c->blank || p->bad_encoding)) {
        p->row++;
        data_row(p, line);
    }
    bh_market_csv_next_row(c);
    p->bad_encoding = 0;
}

static void
parse(struct pass *p, const char *s, size_t n)
{
    if (p->stepped_around)
        return;
    if (n > 0 && known_utf8_bug && !bh_utf8_valid(s, n)) {
        p->stepped_around = 1;
        return;
    }
    if (n > 0)
        bh_fuzz_check_utf8("the decoder's output", s, n);
    put(&p->text, s, n);
    if (p->at_start && n > 0) {
        p->at_start = 0;
        if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
            s += 3, n -= 3;
    }
    while (n > 0) {
        size_t k = bh_market_csv_feed(&p->csv, s, n);
        s += k;
        n -= k;
        if (p->csv.complete)
            row_done(p);
        else if (k == 0)
            bh_fuzz_fail("the CSV reader takes nothing of %zu bytes", n);
    }
}

/* Decode SEG[0..N) and parse what comes out, with ROOM bytes of output at a time. */
static void
segment(struct pass *p, const char *seg, size_t n, size_t room, int final)
{
    /* The room is the end of one buffer: a write past it is past the buffer (ASan). */
    static char *buf;
    static size_t cap;
    if (room > cap) {
        free(buf);
        cap = room > 4096 ? room : 4096;
        if ((buf = malloc(cap)) == NULL)
            bh_fuzz_fail("out of memory");
    }
    char *out = buf + cap - room;
    const char *in = seg;
    size_t inlen = n;
    for (int spins = 0;; spins++) {
        char *o = out;
        size_t left = room;
        const char *was = in;
        int rc = bh_market_decoder_run(p->dec, &in, &inlen, &o, &left, final);
        if (rc == BH_DECODE_INVALID) {
            p->bad_encoding = 1;
            p->invalid++;
        } else if (rc != 0 && rc != -E2BIG) {
            bh_fuzz_fail("the decoder returned %d", rc);
        }
        parse(p, out, (size_t)(o - out));
        if (rc == 0)
            break;
        if (in == was && o == out && spins > 16)
            bh_fuzz_fail("the decoder makes no progress (rc %d, %zu bytes left)", rc, inlen);
    }
}

static void
finish(struct pass *p)
{
    if (bh_market_csv_finish(&p->csv))
        row_done(p);
}

static void
pass_init(struct pass *p, struct bh_market_decoder *dec, size_t max_row, int records)
{
    memset(p, 0, sizeof(*p));
    p->dec = dec;
    p->at_start = 1;
    p->records = records;
    bh_market_decoder_reset(dec);
    if (bh_market_csv_init(&p->csv, max_row) < 0)
        bh_fuzz_fail("out of memory");
}

static void
pass_free(struct pass *p)
{
    bh_market_csv_free(&p->csv);
    free(p->text.p);
    free(p->rows.p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 4)
        return 0;
    unsigned ctl = data[0];
    int enc = (int)(ctl & 3);
    size_t max_row = max_rows[(ctl >> 2) & 3];
    const char *file = (const char *)data + 4;
    size_t len = size - 4;
    size_t reads[3] = {1u + data[1], 1u + data[2], 1u + data[3]};

    /* The adapter's way: reads, each cut after every line feed. */
    struct pass a, b;
    pass_init(&a, &decoders[enc][0], max_row, 1);
    size_t off = 0;
    for (int r = 0; off < len; r++) {
        size_t end = off + reads[r % 3] < len ? off + reads[r % 3] : len;
        while (off < end) {
            const char *nl = memchr(file + off, '\n', end - off);
            size_t seg_end = nl != NULL ? (size_t)(nl - file) + 1 : end;
            size_t n = seg_end - off;
            size_t room = (ctl & 0x10) ? 8u + (size_t)(data[1] ^ data[3]) % 32 : 4 * (n + 8) + 16;
            segment(&a, file + off, n, room, seg_end == len);
            off = seg_end;
        }
    }
    if (len == 0)
        segment(&a, file, 0, 64, 1);
    finish(&a);

    /* In one piece, with room for all of it. */
    pass_init(&b, &decoders[enc][1], max_row, 0);
    segment(&b, file, len, 4 * (len + 8) + 16, 1);
    finish(&b);

    if (a.stepped_around || b.stepped_around) {
        pass_free(&a);
        pass_free(&b);
        return 0;
    }
    if (a.text.len != b.text.len || (a.text.len && memcmp(a.text.p, b.text.p, a.text.len) != 0))
        bh_fuzz_fail("the decoder's text depends on the reads (%zu bytes in pieces, %zu whole)",
                     a.text.len, b.text.len);
    if (a.rows.len != b.rows.len || (a.rows.len && memcmp(a.rows.p, b.rows.p, a.rows.len) != 0))
        bh_fuzz_fail("the rows depend on the reads");
    pass_free(&a);
    pass_free(&b);
    return 0;
}
