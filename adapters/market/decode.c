#include "decode.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"

/* --- the two-byte table of GB18030 and GBK ---------------------------------- */

#define GB_LEADS  126 /* 0x81-0xFE */
#define GB_TRAILS 191 /* 0x40-0xFE (iconv refuses 0x7F: no entry) */

/* A two-byte sequence as iconv decodes it: LEN bytes of UTF-8, 0 if iconv does not (alone). */
struct gb_entry {
    unsigned char utf8[3];
    unsigned char len;
};

struct bh_market_gb_table {
    struct gb_entry e[GB_LEADS * GB_TRAILS];
};

/* One table per converter (CP936 is GBK in glibc), built at its first open, then shared. */
static struct bh_market_gb_table gb_tables[2];
static bool gb_built[2];
static pthread_mutex_t gb_lock = PTHREAD_MUTEX_INITIALIZER;

static int
gb_slot(const char *encoding)
{
    if (strcasecmp(encoding, "GB18030") == 0)
        return 0;
    if (strcasecmp(encoding, "GBK") == 0 || strcasecmp(encoding, "CP936") == 0)
        return 1;
    return -1;
}

/*
 * Ask CD about every two-byte sequence on its own. Only one character of at
 * most 3 bytes made of both bytes goes into the table: whatever else iconv
 * answers is left to iconv when the sequence comes.
 */
static void
gb_build(struct bh_market_gb_table *t, iconv_t cd)
{
    for (unsigned lead = 0; lead < GB_LEADS; lead++) {
        for (unsigned trail = 0; trail < GB_TRAILS; trail++) {
            struct gb_entry *e = &t->e[lead * GB_TRAILS + trail];
            char seq[2] = {(char)(0x81 + lead), (char)(0x40 + trail)}, utf8[16];
            char *in = seq, *o = utf8;
            size_t inlen = sizeof(seq), left = sizeof(utf8);
            size_t r = iconv(cd, &in, &inlen, &o, &left);
            iconv(cd, NULL, NULL, NULL, NULL);
            size_t n = (size_t)(o - utf8);
            e->len = 0;
            if (r == (size_t)-1 || inlen != 0 || n == 0 || n > sizeof(e->utf8) ||
                bh_utf8_seq(utf8, n) != n)
                continue;
            memcpy(e->utf8, utf8, n);
            e->len = (unsigned char)n;
        }
    }
}

/* The entry of the two-byte sequence at S (N bytes left), NULL if the table has none. */
static inline const struct gb_entry *
gb_entry(const struct bh_market_gb_table *t, const unsigned char *s, size_t n)
{
    if (n < 2)
        return NULL;
    unsigned lead = s[0] - 0x81u, trail = s[1] - 0x40u;
    if (lead >= GB_LEADS || trail >= GB_TRAILS)
        return NULL;
    const struct gb_entry *e = &t->e[lead * GB_TRAILS + trail];
    return e->len > 0 ? e : NULL;
}

int
bh_market_decoder_open(struct bh_market_decoder *d, const char *encoding)
{
    memset(d, 0, sizeof(*d));
    d->cd = iconv_open("UTF-8", encoding);
    if (d->cd == (iconv_t)-1)
        return -EINVAL;
    /* Every ASCII byte must stand for itself (the CSV structure is read on the raw bytes). */
    char ascii[127], out[sizeof(ascii) * 4];
    for (size_t i = 0; i < sizeof(ascii); i++)
        ascii[i] = (char)(i + 1);
    char *in = ascii, *o = out;
    size_t inlen = sizeof(ascii), left = sizeof(out);
    size_t r = iconv(d->cd, &in, &inlen, &o, &left);
    iconv(d->cd, NULL, NULL, NULL, NULL);
    if (r == (size_t)-1 || inlen != 0 || (size_t)(o - out) != sizeof(ascii) ||
        memcmp(out, ascii, sizeof(ascii)) != 0) {
        bh_market_decoder_close(d);
        return -ENOTSUP;
    }
    d->utf8 = strcasecmp(encoding, "UTF-8") == 0 || strcasecmp(encoding, "UTF8") == 0;
    int slot = gb_slot(encoding);
    if (slot >= 0) {
        pthread_mutex_lock(&gb_lock);
        if (!gb_built[slot]) {
            gb_build(&gb_tables[slot], d->cd);
            gb_built[slot] = true;
        }
        pthread_mutex_unlock(&gb_lock);
        d->table = &gb_tables[slot];
    }
    return 0;
}

void
bh_market_decoder_close(struct bh_market_decoder *d)
{
    if (d->cd != (iconv_t)-1 && d->cd != NULL)
        iconv_close(d->cd);
    d->cd = (iconv_t)-1;
}

void
bh_market_decoder_reset(struct bh_market_decoder *d)
{
    d->ncarry = 0;
    iconv(d->cd, NULL, NULL, NULL, NULL);
}

/*
 * Finish the sequence held in the carry with the first bytes of *IN. A
 * sequence is at most 4 bytes in GB18030 and UTF-8, so the carry plus a few
 * input bytes either completes it, proves it invalid, or takes all the input.
 */
static int
complete_carry(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out,
               size_t *outleft, bool final)
{
    char tmp[sizeof(d->carry) * 2];
    size_t take = *inlen < sizeof(d->carry) ? *inlen : sizeof(d->carry);
    memcpy(tmp, d->carry, d->ncarry);
    memcpy(tmp + d->ncarry, *in, take);
    size_t have = d->ncarry + take;
    char *p = tmp;
    size_t left = have;
    size_t r = iconv(d->cd, &p, &left, out, outleft);
    int err = r == (size_t)-1 ? errno : 0;
    size_t used = have - left; /* bytes of tmp converted */
    if (err == E2BIG && used == 0)
        return -E2BIG;
    if (used >= d->ncarry) {
        /* the carried sequence is done; continue in the input itself */
        *in += used - d->ncarry;
        *inlen -= used - d->ncarry;
        d->ncarry = 0;
        return 0;
    }
    if (used > 0) { /* only part of the carry converted: keep the rest */
        memmove(d->carry, d->carry + used, d->ncarry - used);
        d->ncarry -= used;
        return 0;
    }
    if (err == EINVAL && !final && take == *inlen && have < sizeof(d->carry)) {
        /* still cut: the input was shorter than the sequence */
        memcpy(d->carry + d->ncarry, *in, take);
        d->ncarry = have;
        *in += take;
        *inlen -= take;
        return 0;
    }
    if (err == EINVAL && final && take == *inlen) {
        /* still cut, and the input ends: the whole cut sequence goes */
        *in += take;
        *inlen -= take;
        d->ncarry = 0;
        return BH_DECODE_INVALID;
    }
    /* invalid at the first carried byte: skip it, keep the others */
    memmove(d->carry, d->carry + 1, d->ncarry - 1);
    d->ncarry--;
    iconv(d->cd, NULL, NULL, NULL, NULL);
    return BH_DECODE_INVALID;
}

/* How many of S's first MAX bytes are ASCII before the first that is not: 8 at a time while
 * no byte of a word has its top bit. */
static size_t
ascii_len(const unsigned char *s, size_t max)
{
    size_t n = 0;
    for (uint64_t w; n + 8 <= max; n += 8) {
        memcpy(&w, s + n, 8);
        if (w & 0x8080808080808080u)
            break;
    }
    while (n < max && s[n] < 0x80)
        n++;
    return n;
}

/* ASCII bytes at a character boundary stand for themselves (checked at open): copied. */
static void
copy_ascii(const char **in, size_t *inlen, char **out, size_t *outleft)
{
    size_t n = ascii_len((const unsigned char *)*in, *inlen < *outleft ? *inlen : *outleft);
    memcpy(*out, *in, n);
    *in += n;
    *inlen -= n;
    *out += n;
    *outleft -= n;
}

/* iconv over *IN: 0, -E2BIG, -EINVAL (a sequence cut at the end), or an invalid byte skipped. */
static int
convert(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out, size_t *outleft)
{
    char *p = (char *)*in;
    size_t r = iconv(d->cd, &p, inlen, out, outleft);
    *in = p;
    if (r != (size_t)-1)
        return 0;
    if (errno == E2BIG || errno == EINVAL)
        return -errno;
    (*in)++; /* EILSEQ: skip the first byte that does not decode */
    (*inlen)--;
    iconv(d->cd, NULL, NULL, NULL, NULL);
    return BH_DECODE_INVALID;
}

/* --- from UTF-8 ------------------------------------------------------------ */

/* The length of the sequence lead byte C starts (2 to 4), 0 if it starts none. */
static size_t
utf8_lead(unsigned char c)
{
    return c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
}

/* Whether S[0..N) (N under the sequence's length) can still become a valid sequence. */
static bool
utf8_prefix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0 || utf8_lead(s[0]) <= n)
        return false;
    for (size_t i = 1; i < n; i++) {
        unsigned lo = 0x80, hi = 0xBF;
        if (i == 1) {
            lo = s[0] == 0xE0 ? 0xA0 : s[0] == 0xF0 ? 0x90 : 0x80;
            hi = s[0] == 0xED ? 0x9F : s[0] == 0xF4 ? 0x8F : 0xBF;
        }
        if (s[i] < lo || s[i] > hi)
            return false;
    }
    return true;
}

/* Write sequence S (N bytes) out; -E2BIG without room. */
static int
put(const char *s, size_t n, char **out, size_t *outleft)
{
    if (*outleft < n)
        return -E2BIG;
    memcpy(*out, s, n);
    *out += n;
    *outleft -= n;
    return 0;
}

/* The carried start of a sequence, completed with the first bytes of *IN. */
static int
utf8_carry(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out, size_t *outleft,
           bool final)
{
    size_t need = utf8_lead((unsigned char)d->carry[0]);
    char tmp[sizeof(d->carry)];
    size_t have = d->ncarry, take = 0;
    memcpy(tmp, d->carry, have);
    if (need > have) {
        take = need - have < *inlen ? need - have : *inlen;
        memcpy(tmp + have, *in, take);
        have += take;
    }
    if (need > 0 && have == need && bh_utf8_seq(tmp, have) == need) {
        int rc = put(tmp, need, out, outleft);
        if (rc < 0)
            return rc;
        *in += take;
        *inlen -= take;
        d->ncarry = 0;
        return 0;
    }
    if (need > 0 && have < need && utf8_prefix(tmp, have)) { /* all of the input, still cut */
        *in += take;
        *inlen -= take;
        if (final) {
            d->ncarry = 0;
            return BH_DECODE_INVALID;
        }
        memcpy(d->carry, tmp, have);
        d->ncarry = have;
        return 0;
    }
    /* invalid at the first carried byte: skip it, keep the others */
    memmove(d->carry, d->carry + 1, d->ncarry - 1);
    d->ncarry--;
    return BH_DECODE_INVALID;
}

static int
utf8_run(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out, size_t *outleft,
         bool final)
{
    while (d->ncarry > 0) {
        if (*inlen == 0 && !final)
            return 0;
        int rc = utf8_carry(d, in, inlen, out, outleft, final);
        if (rc != 0)
            return rc;
    }
    while (*inlen > 0) {
        copy_ascii(in, inlen, out, outleft);
        if (*inlen == 0)
            break;
        if (*outleft == 0)
            return -E2BIG;
        if ((unsigned char)(*in)[0] < 0x80)
            continue;
        size_t n = bh_utf8_seq(*in, *inlen);
        if (n > 0) {
            int rc = put(*in, n, out, outleft);
            if (rc < 0)
                return rc;
            *in += n;
            *inlen -= n;
            continue;
        }
        if (utf8_prefix(*in, *inlen)) { /* cut by the end of the input */
            if (final) {
                *in += *inlen;
                *inlen = 0;
                return BH_DECODE_INVALID;
            }
            memcpy(d->carry, *in, *inlen);
            d->ncarry = *inlen;
            *in += *inlen;
            *inlen = 0;
            return 0;
        }
        (*in)++; /* not UTF-8: skip the byte */
        (*inlen)--;
        return BH_DECODE_INVALID;
    }
    return 0;
}

/* --- through iconv ---------------------------------------------------------- */

/*
 * Only the stretch from the first to a little past the last non-ASCII byte
 * goes through iconv (no sequence of an ASCII-compatible encoding reaches 3
 * bytes past its last non-ASCII byte); the ASCII around it is copied. In the
 * CSV rows of the market feed that is half of the bytes.
 */
static int
iconv_run(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out, size_t *outleft,
          bool final)
{
    copy_ascii(in, inlen, out, outleft);
    if (*inlen == 0)
        return 0;
    if (*outleft == 0)
        return -E2BIG;
    size_t last = *inlen; /* just after the last non-ASCII byte (the first one is) */
    while ((unsigned char)(*in)[last - 1] < 0x80)
        last--;
    size_t n = last + 3 < *inlen ? last + 3 : *inlen;
    size_t rest = *inlen - n;
    int rc = convert(d, in, &n, out, outleft);
    if (rc == -EINVAL && rest > 0) { /* not the real end after all: give iconv the rest */
        n += rest;
        rest = 0;
        rc = convert(d, in, &n, out, outleft);
    }
    *inlen = n + rest;
    if (rc == 0) {
        copy_ascii(in, inlen, out, outleft); /* the rest is ASCII */
        return *inlen == 0 ? 0 : -E2BIG;
    }
    if (rc != -EINVAL)
        return rc;
    /* a sequence cut at the end of the input */
    if (!final && *inlen < sizeof(d->carry)) {
        memcpy(d->carry, *in, *inlen);
        d->ncarry = *inlen;
        *in += *inlen;
        *inlen = 0;
        return 0;
    }
    *in += *inlen;
    *inlen = 0;
    return BH_DECODE_INVALID;
}

/* --- GB18030 and GBK by the table ------------------------------------------- */

/* ASCII and the table's sequences, up to the first other byte or a full *OUT. */
static void
gb_copy(const struct bh_market_gb_table *t, const char **in, size_t *inlen, char **out,
        size_t *outleft)
{
    const unsigned char *s = (const unsigned char *)*in, *end = s + *inlen;
    unsigned char *o = (unsigned char *)*out, *oend = o + *outleft;
    while (s < end && o < oend) {
        if (s[0] < 0x80) { /* an ASCII run */
            size_t max =
                (size_t)(end - s) < (size_t)(oend - o) ? (size_t)(end - s) : (size_t)(oend - o);
            size_t k = ascii_len(s, max);
            memcpy(o, s, k);
            s += k;
            o += k;
            continue;
        }
        const struct gb_entry *e = gb_entry(t, s, (size_t)(end - s));
        if (e == NULL || (size_t)(oend - o) < e->len)
            break;
        if (oend - o >= 4) {
            memcpy(o, e, 4); /* the byte after the character is within the room, overwritten next */
        } else {
            o[0] = e->utf8[0];
            if (e->len > 1)
                o[1] = e->utf8[1];
            if (e->len > 2)
                o[2] = e->utf8[2];
        }
        o += e->len;
        s += 2;
    }
    *inlen -= (size_t)(s - (const unsigned char *)*in);
    *outleft -= (size_t)(o - (unsigned char *)*out);
    *in = (const char *)s;
    *out = (char *)o;
}

/*
 * What the table does not know goes through iconv one character at a time
 * (4 bytes hold any); within the last 4 bytes of the input, where a
 * sequence may be cut, the rest goes through iconv_run.
 */
static int
gb_run(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out, size_t *outleft,
       bool final)
{
    for (;;) {
        gb_copy(d->table, in, inlen, out, outleft);
        if (*inlen == 0)
            return 0;
        const unsigned char *s = (const unsigned char *)*in;
        if (*outleft == 0 || s[0] < 0x80 || gb_entry(d->table, s, *inlen) != NULL)
            return -E2BIG;
        if (*inlen < 4)
            return iconv_run(d, in, inlen, out, outleft, final);
        size_t n = 4;
        int rc = convert(d, in, &n, out, outleft);
        *inlen -= 4 - n;
        if (rc == -EINVAL) /* not from 4 bytes of GB18030: the rest goes through iconv_run */
            return iconv_run(d, in, inlen, out, outleft, final);
        if (rc != 0)
            return rc;
    }
}

int
bh_market_decoder_run(struct bh_market_decoder *d, const char **in, size_t *inlen, char **out,
                      size_t *outleft, bool final)
{
    if (d->utf8)
        return utf8_run(d, in, inlen, out, outleft, final);
    while (d->ncarry > 0) {
        if (*inlen == 0 && !final)
            return 0;
        int rc = complete_carry(d, in, inlen, out, outleft, final);
        if (rc != 0)
            return rc;
    }
    if (d->table != NULL)
        return gb_run(d, in, inlen, out, outleft, final);
    return iconv_run(d, in, inlen, out, outleft, final);
}
