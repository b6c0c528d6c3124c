/*
 * What the fire load generators (bench_fire_load.c and bench_latency_fire.c)
 * share: the server's address from HOST:PORT, the POST requests made from a
 * file of bodies, and reading h2o's HTTP/1.1 answers (the status, the body by
 * Content-Length or chunks). Header-only; include it after the file's own
 * die(const char *what, int err), which it calls on what it cannot use.
 */
#ifndef BH_BENCH_FIRE_HTTP_H
#define BH_BENCH_FIRE_HTTP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

struct request {
    char *bytes; /* head and body */
    size_t len;
};

/* HOSTPORT ("127.0.0.1:8080") into ADDR. */
static void
parse_hostport(const char *hostport, struct sockaddr_in *addr)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
        die("HOST:PORT expected", 0);
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    int rc = uv_ip4_addr(host, atoi(colon + 1), addr);
    if (rc < 0)
        die(hostport, rc);
}

/* One POST to PATH on HOSTPORT with TOKEN for each non-empty line of FILE (a JSON body),
 * into *REQS (*NREQS of them). */
static void
load_requests(struct request **reqs, size_t *nreqs, const char *file, const char *hostport,
              const char *path, const char *token)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        perror(file);
        exit(1);
    }
    char *line = NULL;
    size_t cap = 0, have = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        if (*nreqs == have) {
            have = have ? have * 2 : 1024;
            *reqs = realloc(*reqs, have * sizeof(**reqs));
            if (*reqs == NULL)
                die("out of memory", 0);
        }
        char head[512];
        int hl = snprintf(head, sizeof(head),
                          "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                          "Content-Type: application/json\r\nContent-Length: %zd\r\n\r\n",
                          path, hostport, token, n);
        if (hl < 0 || (size_t)hl >= sizeof(head))
            die("request head too long", 0);
        struct request *r = &(*reqs)[(*nreqs)++];
        r->len = (size_t)hl + (size_t)n;
        r->bytes = malloc(r->len);
        if (r->bytes == NULL)
            die("out of memory", 0);
        memcpy(r->bytes, head, (size_t)hl);
        memcpy(r->bytes + hl, line, (size_t)n);
    }
    free(line);
    fclose(f);
    if (*nreqs == 0)
        die("no bodies in the file", 0);
}

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
