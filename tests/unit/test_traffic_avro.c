/*
 * The traffic adapter's direct Avro writer: its bytes are avro-c's for the
 * schema in schemas/, on random records; a schema laid out differently is
 * refused at start.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "adapters/traffic/traffic_avro.h"
#include "record.h"

#define SCHEMA "blockhub.traffic.TrafficEvent"

static char schema_dir[4096];

static const char *
schemas(void)
{
    const char *src = getenv("BH_SOURCE_DIR");
    if (src == NULL)
        fail_msg("BH_SOURCE_DIR is not set (ctest sets it to the source tree)");
    snprintf(schema_dir, sizeof(schema_dir), "%s/schemas", src);
    return schema_dir;
}

static void
random_string(char *buf, size_t *len, size_t max)
{
    static const char *const pieces[] = {"a", "Z", "0", "-", "粤", "\"", "\\", "🚗", " "};
    size_t want = (size_t)rand() % max, n = 0;
    while (n < want) {
        const char *p = pieces[rand() % 9];
        if (n + strlen(p) > max)
            break;
        memcpy(buf + n, p, strlen(p));
        n += strlen(p);
    }
    *len = n;
}

static void
test_bytes_are_avro_c_bytes(void **state)
{
    (void)state;
    struct bh_schemas *set;
    struct bh_encoder *enc;
    char err[512];
    uint8_t frame[16], body[2048];
    size_t frame_len = 0;
    assert_int_equal(bh_schemas_load(&set, schemas(), err, sizeof(err)), 0);
    assert_int_equal(bh_encoder_new(&enc, BH_FRAMING_SINGLE_OBJECT), 0);
    const struct bh_schema *s = bh_schemas_find(set, SCHEMA);
    assert_non_null(s);
    assert_int_equal(bh_traffic_avro_check(s, enc, frame, &frame_len, err, sizeof(err)), 0);
    assert_int_equal(frame_len, 10); /* 0xC3 0x01 and the fingerprint */
    assert_int_equal(frame[0], 0xC3);

    avro_value_t rec;
    assert_int_equal(avro_generic_value_new(s->iface, &rec), 0);
    srand(1795737);
    for (int i = 0; i < 5000; i++) {
        char id[300], dev[40], plate[40], road[200], peer[48], subject[200];
        struct bh_traffic_event ev = {0};
        random_string(id, &ev.event_id.len, sizeof(id)); /* lengths past 63: 2-byte varints */
        random_string(dev, &ev.device.len, sizeof(dev));
        ev.event_id.s = id;
        ev.device.s = dev;
        if (rand() % 3) {
            random_string(plate, &ev.plate.len, sizeof(plate));
            ev.plate.s = plate;
        }
        if (rand() % 3) {
            random_string(road, &ev.road.len, sizeof(road));
            ev.road.s = road;
        }
        ev.type = (enum bh_traffic_type)(rand() % BH_TRAFFIC_TYPE_COUNT);
        ev.lon = (rand() / (double)RAND_MAX - 0.5) * 360;
        ev.lat = (rand() / (double)RAND_MAX - 0.5) * 180;
        ev.severity = 1 + rand() % 5;
        ev.ts = (int64_t)rand() * rand() % 253402300800000LL;
        snprintf(peer, sizeof(peer), "127.0.0.%d:%d", rand() % 256, rand() % 65536);
        struct bh_traffic_extra x = {"440303-017", -(int64_t)rand() * rand(), peer, NULL};
        if (rand() % 2) {
            size_t slen;
            random_string(subject, &slen, sizeof(subject) - 1);
            subject[slen] = '\0';
            x.tls_subject = subject;
        }

        size_t n = bh_traffic_avro_write(body, &ev, &x);
        assert_true(n <= bh_traffic_avro_bound(&ev, &x));
        avro_value_reset(&rec);
        assert_int_equal(bh_rec_string(&rec, "event_id", ev.event_id.s, ev.event_id.len), 0);
        assert_int_equal(bh_rec_cstring(&rec, "block_id", x.block_id), 0);
        assert_int_equal(bh_rec_string(&rec, "device", ev.device.s, ev.device.len), 0);
        assert_int_equal(bh_rec_enum(&rec, "type", bh_traffic_type_names[ev.type]), 0);
        assert_int_equal(bh_rec_double(&rec, "lon", ev.lon), 0);
        assert_int_equal(bh_rec_double(&rec, "lat", ev.lat), 0);
        assert_int_equal(bh_rec_int(&rec, "severity", ev.severity), 0);
        assert_int_equal(bh_rec_long(&rec, "occurred_at", ev.ts), 0);
        assert_int_equal(bh_rec_opt_string(&rec, "plate", ev.plate.s, ev.plate.len), 0);
        assert_int_equal(bh_rec_opt_string(&rec, "road", ev.road.s, ev.road.len), 0);
        assert_int_equal(bh_rec_long(&rec, "received_at", x.received_at), 0);
        assert_int_equal(bh_rec_cstring(&rec, "peer", x.peer), 0);
        assert_int_equal(bh_rec_opt_string(&rec, "tls_subject", x.tls_subject,
                                           x.tls_subject ? strlen(x.tls_subject) : 0),
                         0);
        const void *data;
        size_t len;
        assert_int_equal(bh_encode(enc, s, &rec, &data, &len), 0);
        assert_int_equal(len, frame_len + n);
        assert_memory_equal(data, frame, frame_len);
        assert_memory_equal((const uint8_t *)data + frame_len, body, n);
    }
    avro_value_decref(&rec);
    bh_encoder_free(enc);
    bh_schemas_free(set);
}

/* A copy of the schema with FROM replaced by TO, in a directory of its own. */
static struct bh_schemas *
altered(const char *from, const char *to, char *dir)
{
    char path[4200], err[512];
    snprintf(path, sizeof(path), "%s/traffic_event.avsc", schemas());
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[16384];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *at = strstr(text, from);
    assert_non_null(at);
    strcpy(dir, "/tmp/bh-traffic-avro.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/traffic_event.avsc", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    fclose(f);
    struct bh_schemas *set;
    assert_int_equal(bh_schemas_load(&set, dir, err, sizeof(err)), 0);
    unlink(path);
    rmdir(dir);
    return set;
}

static void
test_other_layouts_refused(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to;
    } changes[] = {
        /* lat before lon */
        {"{\"name\": \"lon\", \"type\": \"double\", \"doc\": \"Longitude as sent (CGCS2000, "
         "treated as "
         "WGS-84).\"},\n    {\"name\": \"lat\", \"type\": \"double\", \"doc\": \"Latitude as "
         "sent.\"},",
         "{\"name\": \"lat\", \"type\": \"double\"},\n    {\"name\": \"lon\", \"type\": "
         "\"double\"},"},
        /* a field renamed */
        {"{\"name\": \"device\"", "{\"name\": \"camera\""},
        /* the enum's symbols in another order */
        {"[\"accident\", \"congestion\"", "[\"congestion\", \"accident\""},
        /* a float is not a double */
        {"{\"name\": \"lat\", \"type\": \"double\"", "{\"name\": \"lat\", \"type\": \"float\""},
        /* the union the other way round */
        {"\"type\": [\"null\", \"string\"], \"default\": null,\n      \"doc\": \"Vehicle",
         "\"type\": [\"string\", \"null\"], \"default\": \"\",\n      \"doc\": \"Vehicle"},
    };
    struct bh_encoder *enc;
    assert_int_equal(bh_encoder_new(&enc, BH_FRAMING_SINGLE_OBJECT), 0);
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        char dir[64], err[512] = "";
        uint8_t frame[16];
        size_t frame_len = 0;
        struct bh_schemas *set = altered(changes[i].from, changes[i].to, dir);
        const struct bh_schema *s = bh_schemas_find(set, SCHEMA);
        assert_non_null(s);
        int rc = bh_traffic_avro_check(s, enc, frame, &frame_len, err, sizeof(err));
        if (rc == 0)
            fail_msg("change %zu was not noticed", i);
        assert_true(strlen(err) > 0);
        bh_schemas_free(set);
    }
    bh_encoder_free(enc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_are_avro_c_bytes),
        cmocka_unit_test(test_other_layouts_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
