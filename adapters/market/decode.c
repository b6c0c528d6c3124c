#include "decode.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"

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

/* ASCII bytes at a character boundary stand for themselves (checked at open): copied. */
static void
copy_ascii(const char **in, size_t *inlen, char **out, size_t *outleft)
{
    size_t n = 0, max = *inlen < *outleft ? *inlen : *outleft;
    while (n < max && (unsigned char)(*in)[n] < 0x80)
        n++;
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
