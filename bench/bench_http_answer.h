/*
 * Reading h2o's HTTP/1.1 answers in the fire load generators (bench_fire_load.c and
 * bench_latency_fire.c): the status, the body by Content-Length or chunks. Header-only;
 * include it after the file's own die(const char *what, int err), which it calls on an
 * answer it cannot read.
 */
#ifndef BH_BENCH_HTTP_ANSWER_H
#define BH_BENCH_HTTP_ANSWER_H

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The end of a chunked body starting at P (before END), or NULL if more is to come; its
 * data, up to CAP bytes, into OUT (*OLEN). */
static const char *
answer_dechunk(const char *p, const char *end, char *out, size_t cap, size_t *olen)
{
    *olen = 0;
    for (;;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (eol == NULL)
            return NULL;
        char *stop;
        unsigned long size = strtoul(p, &stop, 16);
        if (stop == p)
            die("a malformed chunk", 0);
        p = eol + 2;
        if ((size_t)(end - p) < size + 2)
            return NULL;
        if (size == 0)
            return p + 2; /* no trailers from h2o */
        size_t n = size < cap - *olen ? size : cap - *olen;
        memcpy(out + *olen, p, n);
        *olen += n;
        p += size + 2;
    }
}

/* One answer complete at the head of BUF (LEN bytes read): its length, or 0 if more is to
 * come. Its status goes to STATUS, the first CAP bytes of its body to BODY (*BLEN). */
static size_t
answer_parse(const char *buf, size_t len, int *status, char *body, size_t cap, size_t *blen)
{
    if (len < 12)
        return 0;
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    if (strncmp(buf, "HTTP/1.", 7) != 0)
        die("not an HTTP/1 answer", 0);
    *status = atoi(buf + 9);
    long clen = -1;
    int chunked = 0;
    for (const char *p = buf; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        if (eol - p >= 26 && strncasecmp(p, "transfer-encoding: chunked", 26) == 0)
            chunked = 1;
        p = eol + 2;
    }
    if (chunked) {
        const char *done = answer_dechunk(buf + head, buf + len, body, cap, blen);
        return done == NULL ? 0 : (size_t)(done - buf);
    }
    if (clen < 0)
        die("an answer with neither Content-Length nor chunks", 0);
    if (len < head + (size_t)clen)
        return 0;
    *blen = (size_t)clen < cap ? (size_t)clen : cap;
    memcpy(body, buf + head, *blen);
    return head + (size_t)clen;
}

#endif
