#include "traffic_avro.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "avro_write.h"
#include "record.h"

size_t
bh_traffic_avro_bound(const struct bh_traffic_event *ev, const struct bh_traffic_extra *x)
{
    /* 13 fields, none longer than a 10-byte varint plus its string */
    return 13 * BH_AVRO_LONG_MAX + ev->event_id.len + ev->device.len + ev->plate.len +
           ev->road.len + strlen(x->block_id) + strlen(x->peer) +
           (x->tls_subject != NULL ? strlen(x->tls_subject) : 0);
}

size_t
bh_traffic_avro_write(uint8_t *out, const struct bh_traffic_event *ev,
                      const struct bh_traffic_extra *x)
{
    uint8_t *p = out;
    p = bh_avro_put_bytes(p, ev->event_id.s, ev->event_id.len);
    p = bh_avro_put_bytes(p, x->block_id, strlen(x->block_id));
    p = bh_avro_put_bytes(p, ev->device.s, ev->device.len);
    p = bh_avro_put_long(p, ev->type);
    p = bh_avro_put_double(p, ev->lon);
    p = bh_avro_put_double(p, ev->lat);
    p = bh_avro_put_long(p, ev->severity);
    p = bh_avro_put_long(p, ev->ts);
    p = bh_avro_put_opt_bytes(p, ev->plate.s, ev->plate.len);
    p = bh_avro_put_opt_bytes(p, ev->road.s, ev->road.len);
    p = bh_avro_put_long(p, x->received_at);
    p = bh_avro_put_bytes(p, x->peer, strlen(x->peer));
    p = bh_avro_put_opt_bytes(p, x->tls_subject, x->tls_subject ? strlen(x->tls_subject) : 0);
    return (size_t)(p - out);
}

/* The same record through avro-c, field by field by name. */
static int
fill(avro_value_t *r, const struct bh_traffic_event *ev, const struct bh_traffic_extra *x)
{
    int rc = bh_rec_string(r, "event_id", ev->event_id.s, ev->event_id.len);
    rc = rc ?: bh_rec_cstring(r, "block_id", x->block_id);
    rc = rc ?: bh_rec_string(r, "device", ev->device.s, ev->device.len);
    rc = rc ?: bh_rec_enum(r, "type", bh_traffic_type_names[ev->type]);
    rc = rc ?: bh_rec_double(r, "lon", ev->lon);
    rc = rc ?: bh_rec_double(r, "lat", ev->lat);
    rc = rc ?: bh_rec_int(r, "severity", ev->severity);
    rc = rc ?: bh_rec_long(r, "occurred_at", ev->ts);
    rc = rc ?: bh_rec_opt_string(r, "plate", ev->plate.s, ev->plate.len);
    rc = rc ?: bh_rec_opt_string(r, "road", ev->road.s, ev->road.len);
    rc = rc ?: bh_rec_long(r, "received_at", x->received_at);
    rc = rc ?: bh_rec_cstring(r, "peer", x->peer);
    return rc
               ?: bh_rec_opt_string(r, "tls_subject", x->tls_subject,
                                    x->tls_subject ? strlen(x->tls_subject) : 0);
}

int
bh_traffic_avro_check(const struct bh_schema *s, struct bh_encoder *enc, uint8_t *frame,
                      size_t *frame_len, char *errstr, size_t errstr_size)
{
    avro_value_t rec;
    uint8_t body[512];
    int rc = 0;
    if (avro_generic_value_new(s->iface, &rec) != 0) {
        snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
        return -ENOMEM;
    }
    for (int i = 0; i < BH_TRAFFIC_TYPE_COUNT * 2 && rc == 0; i++) {
        const char *plate = i % 2 ? "粤B12345" : NULL, *road = i % 4 >= 2 ? "深南东路" : NULL;
        struct bh_traffic_event ev = {
            .event_id = {"JJ-CHECK-1", strlen("JJ-CHECK-1")},
            .device = {"CAM-粤-0001", strlen("CAM-粤-0001")},
            .plate = {plate, plate ? strlen(plate) : 0},
            .road = {road, road ? strlen(road) : 0},
            .type = (enum bh_traffic_type)(i % BH_TRAFFIC_TYPE_COUNT),
            .lon = 114.130019 + i,
            .lat = -22.546712,
            .severity = 1 + i % 5,
            .ts = 1795737637000LL - i * 86400000LL * 1000,
        };
        struct bh_traffic_extra x = {"440303-017", 1795737637123LL, "[::1]:65535",
                                     i % 3 ? NULL : "CN=交警网关 3,O=Traffic\\, Police,C=CN"};
        const void *data;
        size_t len, hlen, n = bh_traffic_avro_write(body, &ev, &x);
        avro_value_reset(&rec);
        rc = fill(&rec, &ev, &x);
        rc = rc ?: bh_encode(enc, s, &rec, &data, &len);
        if (rc < 0) {
            snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
        } else if (bh_avro_write_split(data, len, body, n, frame, 16, &hlen) < 0 ||
                   (i > 0 && hlen != *frame_len)) {
            snprintf(errstr, errstr_size,
                     "%s (%s) is not the record traffic_avro.c writes: update one or the other",
                     s->name, s->path);
            rc = -EPROTO;
        } else {
            *frame_len = hlen;
        }
    }
    avro_value_decref(&rec);
    return rc;
}
