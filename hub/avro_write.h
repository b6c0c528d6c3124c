/*
 * Avro binary encoding written directly, for the adapters whose records are
 * too many per second for avro-c's generic writer (which walks a value twice,
 * its size and then its bytes, through virtual calls): traffic
 * (adapters/traffic/traffic_avro.c) and market (adapters/market/event.c).
 * Each puts a record's body down field by field in the schema's order with
 * these, and checks at start that its bytes are the ones avro-c writes
 * (bh_avro_write_split), so a schema and a writer that disagree are caught
 * before the first record.
 *
 * Every bh_avro_put_* writes at P, which has room (the caller's bound), and
 * returns the end of what it wrote.
 */
#ifndef BH_AVRO_WRITE_H
#define BH_AVRO_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The most bytes an int or a long takes. */
#define BH_AVRO_LONG_MAX 10

/* int and long: zigzag, then base-128 varint, low group first. */
static inline uint8_t *
bh_avro_put_long(uint8_t *p, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);

    while (z >= 0x80) {
        *p++ = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    *p++ = (uint8_t)z;
    return p;
}

/* double: the IEEE 754 bits, little-endian whatever the host. */
static inline uint8_t *
bh_avro_put_double(uint8_t *p, double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(u >> (8 * i));
    return p;
}

/* string and bytes: the length as a long, then the bytes. */
static inline uint8_t *
bh_avro_put_bytes(uint8_t *p, const void *s, size_t len)
{
    p = bh_avro_put_long(p, (int64_t)len);
    if (len > 0)
        memcpy(p, s, len);
    return p + len;
}

/* ["null", "string"] or ["null", "bytes"]: branch 0 when S is NULL, else branch 1 and S. */
static inline uint8_t *
bh_avro_put_opt_bytes(uint8_t *p, const void *s, size_t len)
{
    p = bh_avro_put_long(p, s != NULL);
    return s != NULL ? bh_avro_put_bytes(p, s, len) : p;
}

/*
 * The check against avro-c: FRAMED[0..LEN) is what bh_encode wrote for a
 * record, BODY[0..N) what the direct writer wrote for the same record. 0 when
 * FRAMED is a framing header of at most CAP bytes followed by exactly BODY:
 * HEADER[0..*HLEN) gets the header, which the writer then puts before each of
 * its bodies. -EPROTO when they differ.
 */
int bh_avro_write_split(const void *framed, size_t len, const void *body, size_t n, uint8_t *header,
                        size_t cap, size_t *hlen);

#endif
